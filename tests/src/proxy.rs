//! A loopback TCP forwarder that counts what clients send: tests that promise a number of round
//! trips to a server (an object store's LISTs per prefetch window, say) count the requests on
//! the wire instead of trusting the client's own bookkeeping.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What each connection's client sent, in the order the connections came.
type Sent = Arc<Mutex<Vec<Vec<u8>>>>;

/// Forwards every connection made to [`CountingProxy::port`] to `127.0.0.1:upstream`, keeping
/// the bytes each client sent.
pub struct CountingProxy {
    port: u16,
    sent: Sent,
}

impl CountingProxy {
    /// Listens on a free loopback port; runs until the test process ends.
    pub fn start(upstream: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent: Sent = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&sent);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let index = {
                    let mut all = record.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let record = Arc::clone(&record);
                std::thread::spawn(move || pump(client, server, Some((record, index))));
                std::thread::spawn(move || pump(s2, c2, None));
            }
        });
        CountingProxy { port, sent }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many connections clients made so far.
    pub fn connections(&self) -> usize {
        self.sent.lock().unwrap().len()
    }

    /// How many times `needle` occurs in what clients sent so far (each connection's bytes
    /// searched whole, so a needle split between two reads is found).
    pub fn count(&self, needle: &str) -> usize {
        let needle = needle.as_bytes();
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|bytes| bytes.windows(needle.len()).filter(|w| *w == needle).count())
            .sum()
    }
}

/// Copies `from` to `to` until either end closes, recording the bytes when asked.
fn pump(mut from: TcpStream, mut to: TcpStream, record: Option<(Sent, usize)>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((sent, index)) = &record {
            sent.lock().unwrap()[*index].extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

//! Free TCP ports on 127.0.0.1 for PostgreSQL servers and rsync daemons.
//!
//! A port is found by binding `127.0.0.1:0` and is then remembered in a process-wide set, so
//! two tests running in parallel threads never get the same one, even after the probing socket
//! is closed and before the server binds it. Ports are never given back: a restarted daemon
//! reuses its own port, and a test process needs only a few dozen.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

/// Returns a port on 127.0.0.1 that was free a moment ago and that no other test in this
/// process has been given.
pub fn free_port() -> u16 {
    static TAKEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut taken = TAKEN.lock().unwrap_or_else(|poison| poison.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0")
            .port();
        if taken.insert(port) {
            return port;
        }
    }
    panic!("no free TCP port on 127.0.0.1 after 100 attempts");
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn is_listening(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

//! A TLS front for a plain-HTTP server on loopback: stunnel (Debian's `stunnel4`) accepting TLS
//! on its own port of 127.0.0.1 and forwarding to the backend, with a certificate issued by a
//! throwaway certificate authority made with the `openssl` program. This is how the tests (and
//! the bench) reach Garage, whose S3 API speaks plain HTTP, over `https://`: the CA file is what
//! `--s3-ca-file` is given, and a client that does not trust it is refused.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::port::{free_port, is_listening};
use crate::procs::{OutputWithin, EXTERNAL_TIMEOUT};
use crate::{poll_until, PgTempDir};

/// How long stunnel may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running stunnel in front of one backend port; stopped when dropped.
pub struct TlsFront {
    dir: PgTempDir,
    port: u16,
    child: Child,
}

impl TlsFront {
    /// Starts a TLS front for `127.0.0.1:backend_port` and waits until it listens.
    pub fn start(label: &str, backend_port: u16) -> TlsFront {
        let dir = PgTempDir::new(&format!("{label}-tls"));
        let d = dir.path();
        make_certificates(d);
        let port = free_port();
        let config = d.join("stunnel.conf");
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\noutput = {}\n[s3]\naccept = 127.0.0.1:{port}\n\
                 connect = 127.0.0.1:{backend_port}\ncert = {}\nkey = {}\n",
                d.join("stunnel.log").display(),
                d.join("server.pem").display(),
                d.join("server.key").display()
            ),
        )
        .expect("writing the stunnel configuration");
        let child = Command::new(stunnel_program())
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting stunnel4 (apt-get install stunnel4)");
        let mut front = TlsFront { dir, port, child };
        let ready = poll_until(READY_TIMEOUT, || {
            if let Ok(Some(status)) = front.child.try_wait() {
                return Some(Err(status));
            }
            is_listening(port).then_some(Ok(()))
        });
        match ready {
            Some(Ok(())) => front,
            Some(Err(status)) => panic!("stunnel exited with {status}\n{}", front.log()),
            None => panic!("stunnel does not listen on {port}\n{}", front.log()),
        }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The port it accepts TLS on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// stunnel's process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The PEM file of the certificate authority that issued the server's certificate (readable
    /// by the PostgreSQL user).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// stunnel's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stunnel.log")).unwrap_or_default()
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// stunnel from PATH (Debian installs it as `stunnel4`).
fn stunnel_program() -> &'static str {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    if on_path("stunnel4") {
        "stunnel4"
    } else {
        "stunnel"
    }
}

/// In `dir`: a CA (`ca.pem`), a server certificate it issued for 127.0.0.1 and `localhost`
/// (`server.pem`, `server.key`: a self-signed certificate alone would be a CA used as an end
/// entity, which rustls refuses; pgBackRest matches only DNS names), and a client certificate
/// with the common name [`CLIENT_CN`] (`client.pem`, `client.key`).
pub fn make_certificates(dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints = CA:FALSE\nkeyUsage = digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )
    .expect("writing the certificate extensions");
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints = CA:FALSE\nkeyUsage = digitalSignature\n\
         extendedKeyUsage = clientAuth\n",
    )
    .expect("writing the certificate extensions");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    openssl(
        dir,
        &["req", "-x509", "-nodes", "-days", "2"],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=pitr test CA",
        ],
    );
    issue(dir, "server", "/CN=127.0.0.1");
    issue(dir, "client", &format!("/CN={CLIENT_CN}"));
}

/// A key (`STEM.key`) and a certificate (`STEM.pem`) for `subject` in `dir`, issued by the CA
/// there with the extensions in `STEM.ext`.
fn issue(dir: &Path, stem: &str, subject: &str) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let (key, csr) = (format!("{stem}.key"), format!("{stem}.csr"));
    let (ext, pem) = (format!("{stem}.ext"), format!("{stem}.pem"));
    openssl(
        dir,
        &["req", "-nodes"],
        &ec,
        &["-keyout", &key, "-out", &csr, "-subj", subject],
    );
    openssl(
        dir,
        &["x509", "-req", "-days", "2", "-in", &csr],
        &[],
        &[
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    );
}

/// The common name of the client certificate [`make_certificates`] issues.
pub const CLIENT_CN: &str = "pitr-client";

fn openssl(dir: &Path, a: &[&str], b: &[&str], c: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(a)
        .args(b)
        .args(c)
        .output_within(EXTERNAL_TIMEOUT)
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        a.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

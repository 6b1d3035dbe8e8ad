//! pgBackRest's own repository server on loopback: `pgbackrest server` speaking its TLS
//! protocol, the remote repository that pgBackRest users archive to (`repo1-host-type=tls`).
//! The remote part's pgBackRest async contender pushes to it, so that pitr's remote archiving
//! is compared with pgBackRest's remote archiving, not with its S3 client.
//!
//! Facts this rests on (pgBackRest 2.45): the server does not read `repo1-path` itself; each
//! connection is served by a process that reads the configuration file the client names in
//! `repo1-host-config`, so the client names the server's file. The client matches `repo1-host`
//! against the certificate's DNS names only (not IP addresses), hence `localhost`. The server
//! does not daemonize; it runs as the PostgreSQL user (it writes the repository) and is stopped
//! when this is dropped. `stanza-create` runs on the client side.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use pitr_tests::port::{free_port, is_listening};
use pitr_tests::{pg_user, poll_until, tls};

/// A running `pgbackrest server` with its certificates and configuration in `dir`.
pub struct PgbackrestTlsRepo {
    dir: PathBuf,
    port: u16,
    child: Child,
}

impl PgbackrestTlsRepo {
    /// Starts the server with its repository under `dir` (owned by the PostgreSQL user) and
    /// waits until it listens.
    pub fn start(dir: &Path) -> Result<PgbackrestTlsRepo> {
        tls::make_certificates(dir);
        for f in [
            "ca.pem",
            "server.pem",
            "server.key",
            "client.pem",
            "client.key",
        ] {
            pg_user().chown(&dir.join(f));
        }
        for sub in ["repo", "log", "lock"] {
            pg_user().create_dir(&dir.join(sub), 0o700);
        }
        let port = free_port();
        let d = dir.display();
        pg_user().write_file(
            &dir.join("server.conf"),
            format!(
                "[global]\nrepo1-path={d}/repo\nlog-path={d}/log\nlock-path={d}/lock\n\
                 log-level-console=warn\nlog-level-file=off\n\
                 tls-server-address=localhost\ntls-server-port={port}\n\
                 tls-server-ca-file={d}/ca.pem\ntls-server-cert-file={d}/server.pem\n\
                 tls-server-key-file={d}/server.key\ntls-server-auth={}=bench\n",
                tls::CLIENT_CN
            )
            .as_bytes(),
        );
        let child = pg_user()
            .command("pgbackrest")
            .arg(format!("--config={d}/server.conf"))
            .arg("server")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pgbackrest server")?;
        let mut repo = PgbackrestTlsRepo {
            dir: dir.to_path_buf(),
            port,
            child,
        };
        let ready = poll_until(Duration::from_secs(20), || {
            if let Ok(Some(status)) = repo.child.try_wait() {
                return Some(Err(status));
            }
            is_listening(port).then_some(Ok(()))
        });
        match ready {
            Some(Ok(())) => Ok(repo),
            Some(Err(status)) => anyhow::bail!("pgbackrest server exited with {status}"),
            None => anyhow::bail!("pgbackrest server does not listen on {port}"),
        }
    }

    /// The `[global]` lines of a client of this repository at `repo_path` (relative to
    /// nothing: an absolute path on the server's side).
    pub fn client_repo(&self, repo_path: &str) -> String {
        let d = self.dir.display();
        format!(
            "repo1-host=localhost\nrepo1-host-type=tls\nrepo1-host-port={}\n\
             repo1-host-config={d}/server.conf\nrepo1-host-ca-file={d}/ca.pem\n\
             repo1-host-cert-file={d}/client.pem\nrepo1-host-key-file={d}/client.key\n\
             repo1-path={repo_path}\n",
            self.port
        )
    }

    /// The process started for the server (a `runuser` in front of it when the bench runs as
    /// root).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's repository directory (each measurement uses a path of its own below it).
    pub fn repo_dir(&self) -> PathBuf {
        self.dir.join("repo")
    }
}

impl Drop for PgbackrestTlsRepo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

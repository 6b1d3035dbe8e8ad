//! A throwaway rsync daemon serving one writable module, standing in for a standby's
//! `wal_archive` module of the runbook.
//!
//! The daemon runs in the foreground (`--no-detach`) on its own port of 127.0.0.1; as root it
//! writes files as the [`pg_user`](crate::pg_user) (`uid`/`gid` in the module). Tests stop it
//! to simulate an unreachable standby and start it again on the same port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::user::{pg_user, PgTempDir};
use crate::{poll_until, port};

/// How long the daemon may take to accept connections or to stop accepting them.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running (or stopped) `rsync --daemon` with one module.
pub struct RsyncDaemon {
    root: PgTempDir,
    module: String,
    dir: PathBuf,
    config: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl RsyncDaemon {
    /// Writes the configuration and starts the daemon with module `module` (path: a fresh
    /// directory owned by the PostgreSQL test user, writable, not chrooted).
    pub fn start(module: &str) -> RsyncDaemon {
        RsyncDaemon::start_labeled("rsyncd", module)
    }

    /// [`RsyncDaemon::start`] with the daemon's temp dir named after `label` (the demo names
    /// them after its hosts, `db2-wal_archive`, so that the paths it prints say whose they are).
    pub fn start_labeled(label: &str, module: &str) -> RsyncDaemon {
        let root = PgTempDir::new(label);
        let dir = root.subdir(module);
        let user = pg_user();
        let owner = if user.switch {
            format!("uid = {}\ngid = {}\n", user.uid, user.gid)
        } else {
            String::new()
        };
        let config = root.path().join("rsyncd.conf");
        // `socket options` as the shipped examples/rsyncd.conf sets it (README, "pitr-archive").
        let text = format!(
            "pid file = {pid}\nlog file = {log}\nuse chroot = false\nsocket options = TCP_NODELAY\n{owner}\n\
             [{module}]\npath = {path}\nread only = false\nlist = yes\nuse chroot = false\n{owner}",
            pid = root.path().join("rsyncd.pid").display(),
            log = root.path().join("rsyncd.log").display(),
            path = dir.display(),
        );
        std::fs::write(&config, text).expect("writing rsyncd.conf");
        let mut daemon = RsyncDaemon {
            root,
            module: module.to_owned(),
            dir,
            config,
            port: port::free_port(),
            child: None,
        };
        daemon.start_again();
        daemon
    }

    /// Starts the daemon (again) on the same port; waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "rsync daemon already running");
        // A previous daemon's pid file would make rsync refuse to start.
        let _ = std::fs::remove_file(self.root.path().join("rsyncd.pid"));
        let rsync = which_rsync();
        let child = Command::new(&rsync)
            .arg("--daemon")
            .arg("--no-detach")
            .arg(format!("--config={}", self.config.display()))
            .arg(format!("--port={}", self.port))
            .arg("--address=127.0.0.1")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} --daemon: {e}", rsync.display()));
        self.child = Some(child);
        let port = self.port;
        let ready = poll_until(READY_TIMEOUT, || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
            {
                return Some(Err(status));
            }
            port::is_listening(port).then_some(Ok(()))
        });
        match ready {
            Some(Ok(())) => {}
            Some(Err(status)) => {
                self.child = None;
                panic!(
                    "rsync daemon on port {port} exited with {status}\n--- log\n{}",
                    self.log()
                );
            }
            None => panic!(
                "rsync daemon on port {port} not accepting connections after {READY_TIMEOUT:?}\n\
                 --- log\n{}",
                self.log()
            ),
        }
    }

    /// Kills the daemon and waits until its port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().expect("waiting for rsync daemon");
        }
        let port = self.port;
        poll_until(READY_TIMEOUT, || (!port::is_listening(port)).then_some(()))
            .unwrap_or_else(|| panic!("port {port} still accepts connections after stop"));
    }

    /// `rsync://127.0.0.1:PORT/MODULE`.
    pub fn url(&self) -> String {
        format!("rsync://127.0.0.1:{}/{}", self.port, self.module)
    }

    /// The module's directory on disk.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The daemon's process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's log file contents.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("rsyncd.log")).unwrap_or_default()
    }
}

/// The `rsync` program; panics with the install command when it is missing.
fn which_rsync() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("rsync"))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("rsync not found on PATH; run `cargo xtask test` (it installs it) or `apt-get install rsync`")
    })
}

impl Drop for RsyncDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

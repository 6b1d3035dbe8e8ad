//! Clusters made from other clusters, and what a test needs to drive a standby.
//!
//! [`Cluster::base_backup`] runs `pg_basebackup` (as the PostgreSQL user) of a running cluster
//! into a new cluster with its own port, socket directory and log; [`Cluster::clone_stopped`]
//! copies a stopped data directory the same way, so that two standbys can start from one base
//! backup. The rest are small helpers around recovery: signal files, `postgresql.conf`
//! additions and reloads, [`Cluster::try_start`] for a server expected not to come up,
//! promotion, replay positions and row counts.

use std::cell::Cell;
use std::path::Path;
use std::time::Duration;

use super::{check, conf_quote, Cluster, ClusterOpts, PG_CTL_TIMEOUT_SECS};
use crate::procs::OutputWithin;
use crate::user::{pg_user, PgTempDir};
use crate::{pg_program, poll_until, port};

/// `recovery.signal`: archive recovery, which ends (and promotes) when restore_command says a
/// file is not available.
pub const RECOVERY_SIGNAL: &str = "recovery.signal";
/// `standby.signal`: standby mode, which never ends by itself.
pub const STANDBY_SIGNAL: &str = "standby.signal";

impl Cluster {
    /// Takes a base backup of this running cluster with `pg_basebackup -X WAL_METHOD -c fast`
    /// into a new cluster `name` (not started). The copy keeps this cluster's configuration
    /// with its own port, socket directory and log appended, then `archive_mode = off` (a
    /// standby that is promoted must not archive into this cluster's archive unless the test
    /// says so), then `opts`' settings. `-X none` makes the new cluster depend on the WAL
    /// archive for everything after the backup's checkpoint; pg_basebackup then waits until
    /// the backup's last segment is archived.
    pub fn base_backup(&self, name: &str, wal_method: &str, opts: ClusterOpts) -> Cluster {
        let root = PgTempDir::new(name);
        let data = root.path().join("data");
        let out = pg_user()
            .command(pg_program("pg_basebackup"))
            .arg("-D")
            .arg(&data)
            .args(["-X", wal_method, "-c", "fast", "--no-sync", "-h"])
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port().to_string())
            .args(["-U", "postgres"])
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .expect("running pg_basebackup");
        check(
            &format!("pg_basebackup of cluster {} into {name}", self.name),
            out,
        );
        Cluster::adopt(name, root, self.same_server(opts))
    }

    /// Copies this cluster's data directory (the server must be stopped, or never started
    /// since a base backup) into a new cluster `name`, configured as [`Cluster::base_backup`]
    /// does.
    pub fn clone_stopped(&self, name: &str, opts: ClusterOpts) -> Cluster {
        assert!(
            !self.is_running() && !self.data.join("postmaster.pid").exists(),
            "cluster {} must be stopped to be cloned",
            self.name
        );
        let root = PgTempDir::new(name);
        let data = root.path().join("data");
        let out = std::process::Command::new("cp")
            .arg("-a")
            .arg(&self.data)
            .arg(&data)
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .expect("running cp -a");
        check(&format!("cp -a of cluster {}", self.name), out);
        Cluster::adopt(name, root, self.same_server(opts))
    }

    /// `opts`, running this cluster's server version unless they name another.
    fn same_server(&self, mut opts: ClusterOpts) -> ClusterOpts {
        if opts.server_bindir.is_none() {
            opts.server_bindir = Some(self.server_bin.clone());
        }
        opts
    }

    /// A [`Cluster`] for the data directory `ROOT/data` copied from another cluster: gives it
    /// a port, a socket directory and a log, and appends the settings.
    pub fn adopt(name: &str, root: PgTempDir, opts: ClusterOpts) -> Cluster {
        let user = pg_user();
        let data = root.path().join("data");
        let sock = root.subdir("sock");
        let log = root.path().join("server.log");
        user.write_file(&log, b"");
        let port = port::free_port();
        let cluster = Cluster {
            name: name.to_owned(),
            root,
            data,
            sock,
            log,
            port,
            running: Cell::new(false),
            server_bin: opts
                .server_bindir
                .clone()
                .unwrap_or_else(|| crate::pg_bindir().to_path_buf()),
        };
        let mut settings = vec![
            ("port".to_owned(), port.to_string()),
            (
                "unix_socket_directories".to_owned(),
                cluster.sock.display().to_string(),
            ),
            ("archive_mode".to_owned(), "off".to_owned()),
        ];
        settings.extend(opts.settings);
        cluster.append_conf(
            &settings
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        cluster
    }

    /// Appends `name = 'value'` lines to `postgresql.conf` (later lines win); takes effect at
    /// the next start or [`Cluster::reload`] for settings that allow it.
    pub fn append_conf(&self, settings: &[(&str, &str)]) {
        let path = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        text.push_str("\n# pitr-tests\n");
        for (key, value) in settings {
            text.push_str(&format!("{key} = {}\n", conf_quote(value)));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Creates an empty signal file ([`RECOVERY_SIGNAL`] or [`STANDBY_SIGNAL`]) in the data
    /// directory, owned by the PostgreSQL user.
    pub fn write_signal(&self, file: &str) {
        pg_user().write_file(&self.data.join(file), b"");
    }

    /// Whether `DATA/file` exists (a signal file, `backup_label`, ...).
    pub fn has_file(&self, file: &str) -> bool {
        self.data.join(file).exists()
    }

    /// `pg_ctl -w start`, returning pg_ctl's output instead of panicking when the server does
    /// not come up (for servers that must refuse to start). A server that did come up counts
    /// as running, so that dropping the cluster stops it.
    pub fn try_start(&self) -> Result<(), String> {
        self.try_start_within(PG_CTL_TIMEOUT_SECS)
    }

    /// [`Cluster::try_start`] with pg_ctl's wait limited to `timeout_secs`.
    pub fn try_start_within(&self, timeout_secs: &str) -> Result<(), String> {
        let out = pg_user()
            .command(self.pg_ctl())
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", timeout_secs, "start"])
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .expect("running pg_ctl start");
        if out.status.success() {
            self.running.set(true);
            return Ok(());
        }
        // pg_ctl may give up waiting while the server runs on: let Drop stop it.
        if self.data.join("postmaster.pid").exists() {
            self.running.set(true);
        }
        Err(format!(
            "{}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// Whether a postmaster runs on this data directory (`pg_ctl status`).
    pub fn server_alive(&self) -> bool {
        pg_user()
            .command(self.pg_ctl())
            .arg("-D")
            .arg(&self.data)
            .arg("status")
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .expect("running pg_ctl status")
            .status
            .success()
    }

    /// Records that the server is gone by itself (it refused to start or shut down on a FATAL
    /// error), so that the cluster is not stopped again.
    pub fn mark_stopped(&self) {
        self.running.set(false);
    }

    /// `pg_ctl reload`.
    pub fn reload(&self) {
        let out = pg_user()
            .command(self.pg_ctl())
            .arg("-D")
            .arg(&self.data)
            .arg("reload")
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .expect("running pg_ctl reload");
        check(&format!("pg_ctl reload of cluster {}", self.name), out);
    }

    /// `pg_ctl -w promote` (standby mode's failover).
    pub fn promote(&self) {
        let out = pg_user()
            .command(self.pg_ctl())
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "promote"])
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .expect("running pg_ctl promote");
        if !out.status.success() {
            panic!(
                "pg_ctl promote of cluster {} failed: {}\n{}\n--- server log\n{}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr),
                super::tail(&self.server_log(), 40)
            );
        }
    }

    /// `pg_is_in_recovery()`.
    pub fn is_in_recovery(&self) -> bool {
        self.psql("SELECT pg_is_in_recovery()") == "t"
    }

    /// Waits until the server has left recovery (promoted); panics with the log after
    /// `timeout`. A server that cannot be queried (still starting up, or shutting down) counts
    /// as not promoted yet.
    pub fn wait_promoted(&self, timeout: Duration) {
        let done = poll_until(timeout, || {
            (self.try_psql("SELECT pg_is_in_recovery()").as_deref() == Ok("f")).then_some(())
        });
        if done.is_none() {
            panic!(
                "cluster {} still in recovery after {timeout:?}\n--- server log (tail)\n{}",
                self.name,
                super::tail(&self.server_log(), 40)
            );
        }
    }

    /// Writes a small WAL record and switches to a new segment; returns the name of the
    /// segment just completed and the LSN `pg_switch_wal()` returned (the end of the switch
    /// record, inside that segment).
    pub fn switch_wal_at(&self) -> (String, String) {
        self.psql("SELECT pg_logical_emit_message(false, 'pitr-tests', 'switch')");
        let row = self.psql("SELECT pg_walfile_name(lsn) || '|' || lsn FROM pg_switch_wal() lsn");
        let (segment, lsn) = row
            .split_once('|')
            .unwrap_or_else(|| panic!("unexpected pg_switch_wal row {row:?}"));
        (segment.to_owned(), lsn.to_owned())
    }

    /// Whether this server (a standby) has replayed WAL up to `lsn`
    /// (`pg_last_wal_replay_lsn() >= lsn`); false while it cannot be queried.
    pub fn has_replayed(&self, lsn: &str) -> bool {
        self.try_psql(&format!(
            "SELECT coalesce(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false)"
        ))
        .as_deref()
            == Ok("t")
    }

    /// Waits until this standby has replayed up to `lsn`; panics with its replay position and
    /// log after `timeout`.
    pub fn wait_replayed(&self, lsn: &str, timeout: Duration) {
        if poll_until(timeout, || self.has_replayed(lsn).then_some(())).is_none() {
            let at = self
                .try_psql("SELECT pg_last_wal_replay_lsn()")
                .unwrap_or_else(|e| e);
            panic!(
                "cluster {} has not replayed up to {lsn} within {timeout:?} (replayed up to \
                 {at})\n--- server log (tail)\n{}",
                self.name,
                super::tail(&self.server_log(), 40)
            );
        }
    }

    /// `SELECT count(*) FROM table`.
    pub fn count_rows(&self, table: &str) -> u64 {
        let n = self.psql(&format!("SELECT count(*) FROM {table}"));
        n.parse()
            .unwrap_or_else(|e| panic!("count(*) of {table} gave {n:?}: {e}"))
    }

    /// Runs `pgbench -n -f SCRIPT -t TRANSACTIONS -c CLIENTS` with `script` as the
    /// transaction (one committed transaction per run of the script and client).
    pub fn pgbench_script(&self, script: &str, transactions: u32, clients: u32) {
        let path = self.root.path().join("pgbench-script.sql");
        pg_user().write_file(&path, script.as_bytes());
        let out = self
            .pgbench_command()
            .arg("-n")
            .arg("-f")
            .arg(&path)
            .args(["-t", &transactions.to_string()])
            .args(["-c", &clients.to_string(), "postgres"])
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .expect("running pgbench");
        check(&format!("pgbench -f on cluster {}", self.name), out);
    }

    /// The length of the server log so far: pass it to [`Cluster::server_log_since`] to see
    /// only what is logged afterwards.
    pub fn server_log_len(&self) -> usize {
        self.server_log().len()
    }

    /// The server log from byte `offset` on.
    pub fn server_log_since(&self, offset: usize) -> String {
        let log = self.server_log();
        log.get(offset..).unwrap_or_default().to_owned()
    }

    /// The path of `file` in the data directory.
    pub fn data_path(&self, file: impl AsRef<Path>) -> std::path::PathBuf {
        self.data.join(file)
    }
}

//! A throwaway PostgreSQL cluster per test (the postgresfixture pattern).
//!
//! [`Cluster::init`] runs initdb into a fresh temp dir owned by the [`pg_user`](crate::pg_user),
//! gives the server its own port on 127.0.0.1 and its own socket directory, and appends the
//! caller's settings to `postgresql.conf`. [`Cluster::start`] / [`Cluster::stop`] use
//! `pg_ctl -w`; dropping a running cluster stops it with `-m immediate` and never panics. The
//! helpers run psql and pgbench over the Unix socket as the `postgres` database user.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::procs::OutputWithin;
use crate::user::{pg_user, PgTempDir};
use crate::{pg_bindir, pg_program, poll_until, port};

pub mod standby;

/// How long `pg_ctl -w` may wait for a start or a stop.
const PG_CTL_TIMEOUT_SECS: &str = "60";

/// Settings and initdb options for [`Cluster::init`], built with chained calls.
#[derive(Debug, Clone, Default)]
pub struct ClusterOpts {
    wal_segsize_mb: Option<u32>,
    settings: Vec<(String, String)>,
    server_bindir: Option<PathBuf>,
}

impl ClusterOpts {
    /// Default options: 16 MiB segments and the harness's small-server settings.
    pub fn new() -> ClusterOpts {
        ClusterOpts::default()
    }

    /// `initdb --wal-segsize MB`.
    pub fn wal_segsize_mb(mut self, mb: u32) -> ClusterOpts {
        self.wal_segsize_mb = Some(mb);
        self
    }

    /// Runs the server programs (`initdb`, `pg_ctl`, `postgres`) from `dir` instead of
    /// [`pg_bindir`] (another major version: see [`crate::pg_major_bindir`]). The client
    /// programs stay PostgreSQL 15's.
    pub fn server_bindir(mut self, dir: &Path) -> ClusterOpts {
        self.server_bindir = Some(dir.to_path_buf());
        self
    }

    /// Appends `name = 'value'` to `postgresql.conf` (quoted and escaped here; every GUC
    /// accepts a quoted value). Later settings override earlier ones and the harness defaults.
    pub fn set(mut self, name: &str, value: &str) -> ClusterOpts {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// The counters of `pg_stat_archiver`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiverStats {
    /// Number of WAL files archived successfully.
    pub archived_count: u64,
    /// Name of the last WAL file archived successfully (empty when none).
    pub last_archived_wal: String,
    /// Number of failed `archive_command` runs.
    pub failed_count: u64,
    /// Name of the WAL file of the last failure (empty when none).
    pub last_failed_wal: String,
}

/// One initdb'ed data directory with its port, socket directory and server log.
pub struct Cluster {
    name: String,
    root: PgTempDir,
    data: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    port: u16,
    running: Cell<bool>,
    /// Where `initdb`, `pg_ctl` and `postgres` come from.
    server_bin: PathBuf,
}

/// Quotes `value` as a `postgresql.conf` string literal.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Panics with the command line, status and output when `out` is a failure.
fn check(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Cluster {
    /// Runs initdb (`-A trust -U postgres`, C locale, UTF-8) into a new temp dir and writes
    /// the configuration; the server is not started. `name` labels the temp dir and messages.
    pub fn init(name: &str, opts: ClusterOpts) -> Cluster {
        let user = pg_user();
        let root = PgTempDir::new(name);
        let data = root.path().join("data");
        let sock = root.subdir("sock");
        let log = root.path().join("server.log");
        user.write_file(&log, b"");
        let port = port::free_port();

        let server_bin = opts
            .server_bindir
            .clone()
            .unwrap_or_else(|| pg_bindir().to_path_buf());
        let mut initdb = user.command(server_bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale"])
            .arg("--no-sync");
        if let Some(mb) = opts.wal_segsize_mb {
            initdb.arg(format!("--wal-segsize={mb}"));
        }
        check(
            &format!("initdb for cluster {name}"),
            initdb
                .output_within(crate::procs::EXTERNAL_TIMEOUT)
                .expect("running initdb"),
        );

        let mut conf = String::from("\n# pitr-tests harness\n");
        let defaults = [
            ("listen_addresses", "127.0.0.1".to_owned()),
            ("port", port.to_string()),
            ("unix_socket_directories", sock.display().to_string()),
            ("shared_buffers", "16MB".to_owned()),
            ("max_connections", "20".to_owned()),
            ("max_wal_size", "256MB".to_owned()),
            // The tests check archiving, not the server's own durability: skipping its fsyncs
            // keeps pgbench fast on a shared machine. pitr's own writes still fsync.
            ("fsync", "off".to_owned()),
            ("autovacuum", "off".to_owned()),
            ("log_line_prefix", "%m [%p] ".to_owned()),
        ];
        for (key, value) in defaults
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(opts.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            conf.push_str(&format!("{key} = {}\n", conf_quote(value)));
        }
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).expect("reading postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&conf_path, text).expect("writing postgresql.conf");

        Cluster {
            name: name.to_owned(),
            root,
            data,
            sock,
            log,
            port,
            running: Cell::new(false),
            server_bin,
        }
    }

    /// `pg_ctl` of this cluster's server version.
    fn pg_ctl(&self) -> PathBuf {
        self.server_bin.join("pg_ctl")
    }

    /// `pg_ctl -w start`; panics with the server log when the server does not come up.
    pub fn start(&self) {
        let out = pg_user()
            .command(self.pg_ctl())
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "start"])
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .expect("running pg_ctl start");
        if !out.status.success() {
            panic!(
                "pg_ctl start of cluster {} failed: {}\n{}\n--- server log\n{}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.server_log()
            );
        }
        self.running.set(true);
    }

    /// `pg_ctl -w -m fast stop` (a clean shutdown: with archive_mode on, the server switches
    /// to a new segment and archives the last one before it exits).
    pub fn stop(&self) {
        self.pg_ctl_stop("fast");
    }

    /// `pg_ctl -w -m immediate stop`: a crash, without a shutdown checkpoint.
    pub fn crash(&self) {
        self.pg_ctl_stop("immediate");
    }

    fn pg_ctl_stop(&self, mode: &str) {
        let out = pg_user()
            .command(self.pg_ctl())
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "-m", mode, "stop"])
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .expect("running pg_ctl stop");
        self.running.set(false);
        if !out.status.success() {
            panic!(
                "pg_ctl stop -m {mode} of cluster {} failed: {}\n{}\n--- server log\n{}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.server_log()
            );
        }
    }

    /// Whether [`Cluster::start`] ran and no stop since.
    pub fn is_running(&self) -> bool {
        self.running.get()
    }

    fn psql_command(&self) -> std::process::Command {
        let mut cmd = pg_user().command(pg_program("psql"));
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.sock)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", "postgres"]);
        cmd
    }

    /// Runs one SQL statement with psql (its own transaction) and returns its trimmed,
    /// unaligned output, or psql's stderr when it fails.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        self.try_psql_session(&[sql])
    }

    /// Runs one SQL statement with psql; panics when it fails. `psql -c "A; B"` would run
    /// A and B in one transaction, so send one statement per call.
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql)
            .unwrap_or_else(|e| panic!("psql on cluster {} failed for {sql:?}: {e}", self.name))
    }

    /// Runs several statements in one session (`psql -c A -c B`), each in its own
    /// transaction: needed for `pg_backup_start()` / `pg_backup_stop()`.
    pub fn try_psql_session(&self, statements: &[&str]) -> Result<String, String> {
        let mut cmd = self.psql_command();
        for sql in statements {
            cmd.arg("-c").arg(sql);
        }
        let out = cmd
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .expect("running psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Like [`Cluster::try_psql_session`], panicking on failure.
    pub fn psql_session(&self, statements: &[&str]) -> String {
        self.try_psql_session(statements).unwrap_or_else(|e| {
            panic!(
                "psql session on cluster {} failed for {statements:?}: {e}",
                self.name
            )
        })
    }

    fn pgbench_command(&self) -> std::process::Command {
        let mut cmd = pg_user().command(pg_program("pgbench"));
        cmd.arg("-h")
            .arg(&self.sock)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres"]);
        cmd
    }

    /// `pgbench -i -s SCALE` (quiet).
    pub fn pgbench_init(&self, scale: u32) {
        let out = self
            .pgbench_command()
            .args(["-i", "-q", "-s", &scale.to_string(), "postgres"])
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .expect("running pgbench -i");
        check(&format!("pgbench -i on cluster {}", self.name), out);
    }

    /// `pgbench -n -t TRANSACTIONS -c CLIENTS` (each client runs `transactions`).
    pub fn pgbench(&self, transactions: u32, clients: u32) {
        let out = self
            .pgbench_command()
            .args(["-n", "-t", &transactions.to_string()])
            .args(["-c", &clients.to_string(), "postgres"])
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .expect("running pgbench");
        check(&format!("pgbench on cluster {}", self.name), out);
    }

    /// Writes a small WAL record and switches to a new segment; returns the name of the
    /// segment just completed (`pg_walfile_name(pg_switch_wal())`). The record guarantees that
    /// every call completes a new segment (a switch with nothing written is a no-op).
    pub fn switch_wal(&self) -> String {
        self.psql("SELECT pg_logical_emit_message(false, 'pitr-tests', 'switch')");
        self.psql("SELECT pg_walfile_name(pg_switch_wal())")
    }

    /// The current row of `pg_stat_archiver`.
    pub fn archiver_stats(&self) -> ArchiverStats {
        let row = self.psql(
            "SELECT archived_count, coalesce(last_archived_wal, ''), failed_count, \
             coalesce(last_failed_wal, '') FROM pg_stat_archiver",
        );
        let fields: Vec<&str> = row.split('|').collect();
        assert_eq!(fields.len(), 4, "unexpected pg_stat_archiver row {row:?}");
        ArchiverStats {
            archived_count: fields[0].parse().expect("archived_count"),
            last_archived_wal: fields[1].to_owned(),
            failed_count: fields[2].parse().expect("failed_count"),
            last_failed_wal: fields[3].to_owned(),
        }
    }

    /// Waits until PostgreSQL has archived the WAL file `wal` (its `.done` status file
    /// exists, or `pg_stat_archiver.last_archived_wal` has reached it); panics after
    /// `timeout` with the archiver's counters and the end of the server log.
    pub fn wait_archived(&self, wal: &str, timeout: Duration) {
        let done = self
            .data
            .join("pg_wal/archive_status")
            .join(format!("{wal}.done"));
        let reached = poll_until(timeout, || {
            if done.exists() {
                return Some(());
            }
            let last = self.archiver_stats().last_archived_wal;
            // Segment names of one timeline sort in WAL order; history and backup files are
            // only matched exactly.
            let same_kind = last.len() == 24 && wal.len() == 24;
            (last == wal || (same_kind && last.as_str() >= wal)).then_some(())
        });
        if reached.is_none() {
            let stats = if self.is_running() {
                format!("{:?}", self.archiver_stats())
            } else {
                "server not running".to_owned()
            };
            panic!(
                "cluster {}: {wal} not archived within {timeout:?}; {stats}\n--- server log \
                 (tail)\n{}",
                self.name,
                tail(&self.server_log(), 40)
            );
        }
    }

    fn status_files(&self, suffix: &str) -> Vec<String> {
        let dir = self.data.join("pg_wal/archive_status");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|entry| entry.expect("archive_status entry").file_name())
            .filter_map(|name| name.to_str()?.strip_suffix(suffix).map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    /// Names of the WAL files PostgreSQL considers archived (`pg_wal/archive_status/*.done`,
    /// segments and `.history`/`.backup` files), sorted.
    pub fn done_segments(&self) -> Vec<String> {
        self.status_files(".done")
    }

    /// Names of the WAL files still waiting for `archive_command`
    /// (`pg_wal/archive_status/*.ready`), sorted.
    pub fn ready_segments(&self) -> Vec<String> {
        self.status_files(".ready")
    }

    /// The server log written by `pg_ctl -l` (where `archive_command`'s stderr lands).
    pub fn server_log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The data directory (absolute).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// `DATA/pg_wal`.
    pub fn wal_dir(&self) -> PathBuf {
        self.data.join("pg_wal")
    }

    /// The bytes of `pg_wal/NAME`.
    pub fn wal_file(&self, name: &str) -> Vec<u8> {
        let path = self.wal_dir().join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// The Unix socket directory (absolute).
    pub fn socket_dir(&self) -> &Path {
        &self.sock
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir holding the data dir, socket dir and log; a test may create its own
    /// subdirectories here (they go away with the cluster).
    pub fn root(&self) -> &PgTempDir {
        &self.root
    }

    /// The database system identifier, from `pg_control_system()` while the server runs,
    /// else from `pg_controldata`.
    pub fn system_identifier(&self) -> String {
        if self.is_running() {
            return self.psql("SELECT system_identifier FROM pg_control_system()");
        }
        let out = pg_user()
            .command(pg_program("pg_controldata"))
            .env("LC_ALL", "C")
            .arg(&self.data)
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .expect("running pg_controldata");
        let out = check("pg_controldata", out);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("Database system identifier:"))
            .map(|v| v.trim().to_owned())
            .expect("no system identifier in pg_controldata output")
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- cluster {} (data {}), server log tail:\n{}",
                self.name,
                self.data.display(),
                tail(&self.server_log(), 30)
            );
        }
        if self.running.get() {
            // Errors are ignored on purpose: Drop must never panic, and a server that is
            // already gone is what we want.
            let _ = pg_user()
                .command(self.pg_ctl())
                .arg("-D")
                .arg(&self.data)
                .args(["-w", "-t", PG_CTL_TIMEOUT_SECS, "-m", "immediate", "stop"])
                .output_within(crate::procs::EXTERNAL_TIMEOUT);
            self.running.set(false);
        }
    }
}

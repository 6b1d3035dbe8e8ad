//! `pitr-tests`: the harness behind the integration tests that run the pitr binaries against a
//! real PostgreSQL server.
//!
//! The tests themselves live in one integration binary (`tests/it/main.rs`, STYLE.md §5); this
//! library gives them [`Cluster`] (initdb, `pg_ctl -w`, psql, pgbench), [`Tool`] (run one of our
//! binaries and assert on its exit status and log lines), [`RsyncDaemon`] (a throwaway rsync
//! daemon with a `wal_archive` module), [`GarageCluster`] (a throwaway 3-node Garage cluster, the
//! S3 server of the object-storage tests) and [`ArchiveDir`] (listing and decompressing archived
//! WAL). The suite runs as root in CI, and PostgreSQL refuses root, so everything the server
//! touches runs as, and is owned by, an unprivileged [`PgUser`]. Every wait polls with a
//! deadline ([`wait_until`]); nothing sleeps blindly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod archive_dir;
pub mod cluster;
pub mod garage;
pub mod pitr_util;
pub mod port;
pub mod procs;
pub mod proxy;
pub mod rsyncd;
pub mod tls;
pub mod tool;
pub mod user;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use archive_dir::ArchiveDir;
pub use cluster::{Cluster, ClusterOpts};
pub use garage::GarageCluster;
pub use rsyncd::RsyncDaemon;
pub use tls::TlsFront;
pub use tool::{CmdResult, RunningTool, Tool};
pub use user::{pg_user, PgTempDir, PgUser};

/// The directory holding the PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`,
/// `psql`, `pgbench`): `PG_BINDIR`, else `pg_config --bindir` when that directory has an
/// `initdb`, else Debian's `/usr/lib/postgresql/15/bin`.
///
/// Panics when `initdb` is not there: a missing PostgreSQL must fail the suite, never skip it.
pub fn pg_bindir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("PG_BINDIR")
            .map(PathBuf::from)
            .or_else(|| {
                use procs::OutputWithin as _;
                let out = Command::new("pg_config")
                    .arg("--bindir")
                    .output_within(procs::EXTERNAL_TIMEOUT)
                    .ok()?;
                let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
                (out.status.success() && dir.join("initdb").is_file()).then_some(dir)
            })
            .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
        assert!(
            dir.join("initdb").is_file(),
            "PostgreSQL server binaries not found in {}; run `cargo xtask test` (it installs \
             them) or set PG_BINDIR",
            dir.display()
        );
        dir
    })
}

/// The path of one PostgreSQL program (`psql`, `pg_ctl`, ...) in [`pg_bindir`].
pub fn pg_program(name: &str) -> PathBuf {
    let path = pg_bindir().join(name);
    assert!(
        path.is_file(),
        "PostgreSQL program {} not found; run `cargo xtask test` (it installs PostgreSQL) or set \
         PG_BINDIR",
        path.display()
    );
    path
}

/// The bin directory of PostgreSQL `major`'s server programs (`initdb`, `pg_ctl`, `postgres`),
/// from `PITR_TEST_PG<major>_BINDIR`, which `cargo xtask test` sets after fetching them.
///
/// Panics when it is not set or holds no `postgres`: a missing version must fail the test,
/// never skip it.
pub fn pg_major_bindir(major: u32) -> PathBuf {
    let var = format!("PITR_TEST_PG{major}_BINDIR");
    let dir = std::env::var_os(&var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the tests with `cargo xtask test`, which fetches PostgreSQL {major}")
    });
    assert!(
        dir.join("postgres").is_file(),
        "{var}={} holds no postgres program",
        dir.display()
    );
    dir
}

/// The directory holding our binaries (`pitr-archive`, ...): `PITR_BIN_DIR`, else two levels
/// above this test executable (`target/debug/deps/it-HASH` → `target/debug`).
pub fn pitr_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| match std::env::var_os("PITR_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            exe.parent()
                .and_then(Path::parent)
                .expect("test executable has no grandparent directory")
                .to_path_buf()
        }
    })
}

/// The path of one of our binaries, e.g. `pitr_bin("pitr-archive")`.
///
/// Panics with the command to run when the binary has not been built.
pub fn pitr_bin(name: &str) -> PathBuf {
    let path = pitr_bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found; run `cargo build --workspace` or `cargo xtask test` (or set PITR_BIN_DIR)",
        path.display()
    );
    path
}

/// Polls `cond` every 50 ms until it returns `Some`, and panics with `what` once `timeout` has
/// passed. The single place where the harness waits.
pub fn wait_until<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = cond() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Like [`wait_until`], but returns `None` on timeout instead of panicking, so the caller can
/// add its own diagnostics (a server log, a listing) to the failure.
pub fn poll_until<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = cond() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The entry names in pitr-archive's `--state-dir`, sorted, without the archive-ahead worker's
/// lock file (it stays, as every lock file does): the records and states left.
pub fn archive_state_names(dir: &Path) -> Vec<String> {
    let mut names = dir_names(dir);
    names.retain(|n| n != ".ahead-worker.lock");
    names
}

/// The entry names in `dir`, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// `pitr-backup` connected to `cluster` over its Unix socket as the PostgreSQL user, with a
/// fast checkpoint and a generous deadline.
pub fn backup_tool(cluster: &Cluster) -> Tool {
    Tool::new("pitr-backup")
        .as_pg_user()
        .arg("--data-dir")
        .arg(cluster.data_dir())
        .arg("--host")
        .arg(cluster.socket_dir())
        .arg("--port")
        .arg(cluster.port().to_string())
        .args(["--username", "postgres", "--fast-checkpoint"])
        .timeout(std::time::Duration::from_secs(240))
}

/// Runs `pgbench -T seconds -c 2` against `cluster` in the background (output discarded); the
/// caller waits for the child.
pub fn pgbench_load(cluster: &Cluster, seconds: u32) -> std::process::Child {
    pg_user()
        .command(pg_program("pgbench"))
        .arg("-h")
        .arg(cluster.socket_dir())
        .arg("-p")
        .arg(cluster.port().to_string())
        .args([
            "-U",
            "postgres",
            "-n",
            "-c",
            "2",
            "-T",
            &seconds.to_string(),
            "postgres",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting pgbench")
}

//! Helpers for the point-in-time recovery scenarios: a data directory restored by
//! `pitr-restore --from-backup` adopted as a [`Cluster`] with its own port, socket directory
//! and log; the timeline a server writes on; WAL positions of archived file names as
//! `pg_archivecleanup` compares them; byte counts formatted as pitr logs them.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::{pg_user, Cluster, ClusterOpts, PgTempDir, Tool};

/// Runs `restore` (a `pitr-restore --from-backup ...` command line without
/// `--target-data-dir`) into `ROOT/data` of a new temp dir, checks that the directory it made
/// belongs to the PostgreSQL user with mode 0700 (pitr-restore gives it the owner of its
/// parent when run as root), and adopts it as cluster `name` (not started): its own port,
/// socket directory and log, `archive_mode = off`, then `opts`' settings. The restored
/// `postgresql.auto.conf` (recovery settings) still wins over what is appended here.
pub fn restore_backup(name: &str, restore: Tool, opts: ClusterOpts) -> Cluster {
    let root = PgTempDir::new(name);
    let data = root.path().join("data");
    let out = restore.arg("--target-data-dir").arg(&data).succeeds();
    // Every file it wrote was fsynced before it said it was done.
    out.stderr_contains(&format!(
        " : LOG : synced {} files to disk\n",
        regular_files(&data)
    ));
    let meta = std::fs::metadata(&data)
        .unwrap_or_else(|e| panic!("stat of restored {}: {e}", data.display()));
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "mode of restored {}",
        data.display()
    );
    assert_eq!(
        (meta.uid(), meta.gid()),
        (pg_user().uid, pg_user().gid),
        "owner of restored {}",
        data.display()
    );
    Cluster::adopt(name, root, opts)
}

/// How many regular files the tree at `dir` holds (links not followed).
fn regular_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap())
        .map(|e| {
            let kind = e.file_type().unwrap();
            if kind.is_dir() {
                regular_files(&e.path())
            } else {
                usize::from(kind.is_file())
            }
        })
        .sum()
}

/// The timeline the (running, promoted) server writes WAL on, from the name of its current
/// WAL file.
pub fn current_timeline(cluster: &Cluster) -> u32 {
    let name = cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    u32::from_str_radix(&name[..8], 16)
        .unwrap_or_else(|e| panic!("timeline of WAL file {name:?}: {e}"))
}

/// The position part (log and segment, timeline left out) of an archived segment, `.partial`
/// or `.backup` file name, as `pg_archivecleanup` compares them; `None` for `.history` files,
/// hidden files and anything else.
pub fn wal_position(name: &str) -> Option<&str> {
    let head = name.get(..24)?;
    head.bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then(|| &head[8..])
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock before 1970");
    i64::try_from(d.as_secs()).expect("time fits i64")
}

/// A byte count as pitr logs it: `512 B`, `1.5 KiB`, `16.0 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_sizes() {
        assert_eq!(
            wal_position("00000002000000000000000A.zst"),
            Some("000000000000000A")
        );
        assert_eq!(
            wal_position("000000010000000000000003.00000028.backup.zst"),
            Some("0000000000000003")
        );
        assert_eq!(wal_position("00000002.history.zst"), None);
        assert_eq!(wal_position(".pitr-cleanup.lock"), None);
        assert_eq!(human(1000), "1000 B");
        assert_eq!(human(1536), "1.5 KiB");
    }
}

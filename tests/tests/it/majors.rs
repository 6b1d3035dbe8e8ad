//! The other PostgreSQL majors pitr supports (13, 14, 16, 17, 18), each on its real server
//! (PostgreSQL 15 is every other test's): archiving with pitr-archive (their pg_control and WAL page formats), a base
//! backup with pitr-backup (before 15: `pg_start_backup`/`pg_stop_backup` in non-exclusive
//! mode) and a point-in-time restore with `pitr-restore --from-backup` (no settings the older
//! server does not know). On 13 and 18 the restore pauses at its target and the runbook's
//! query for that major (section 5) must say so before recovery is resumed. The server
//! programs come from `cargo xtask test` (npm packages); psql and pgbench are PostgreSQL 15's.

use std::time::Duration;

use pitr_tests::pitr_util::restore_backup;
use pitr_tests::{
    backup_tool, pg_major_bindir, pitr_bin, poll_until, Cluster, ClusterOpts, PgTempDir, Tool,
};

const TIMEOUT: Duration = Duration::from_secs(90);

/// How the restore ends at its target.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AtTarget {
    /// `--target-action promote`.
    Promote,
    /// `--target-action pause`: the runbook's pause-state query for this major must answer
    /// (docs/runbook.md section 5), then `pg_wal_replay_resume()` ends recovery.
    PauseThenResume,
}

/// The runbook's query (section 5) telling whether recovery has paused at its target, and its
/// answer when it has: PostgreSQL 13 has no `pg_get_wal_replay_pause_state()`.
fn pause_query(major: u32) -> (&'static str, &'static str) {
    if major < 14 {
        ("SELECT pg_is_wal_replay_paused()", "t")
    } else {
        ("SELECT pg_get_wal_replay_pause_state()", "paused")
    }
}

/// Backup, more changes, a restore point, more changes; then a restore to the restore point
/// must hold exactly the rows written before it.
fn backup_and_restore_to_a_restore_point_on(major: u32, at_target: AtTarget) {
    let bindir = pg_major_bindir(major);
    let work = PgTempDir::new(&format!("pg{major}-work"));
    let archive = work.subdir("archive");
    let backups = work.subdir("backups");
    let xlogs = work.path().join("xlogs");
    let command = format!(
        "{} --dst-local zstd={} --dst-backup {} %p",
        pitr_bin("pitr-archive").display(),
        archive.display(),
        xlogs.display()
    );
    let primary = Cluster::init(
        &format!("pg{major}-primary"),
        ClusterOpts::new()
            .server_bindir(&bindir)
            .wal_segsize_mb(1)
            .set("archive_mode", "on")
            .set("archive_command", &command)
            .set("wal_keep_size", "64MB"),
    );
    primary.start();
    let version: u32 = primary.psql("SHOW server_version_num").parse().unwrap();
    assert_eq!(version / 10_000, major, "server_version_num {version}");
    primary.psql("CREATE TABLE t (id int PRIMARY KEY, phase text NOT NULL)");
    primary.psql("INSERT INTO t SELECT g, 'before backup' FROM generate_series(1, 1000) g");

    // Odd majors (13: pg_stop_backup, 17: pg_backup_stop) take the set without WAL of
    // its own, which makes the server wait for the archive; the restore then reads all its WAL
    // from the archive.
    let skip_xlogs = major % 2 == 1;
    let mut backup = backup_tool(&primary)
        .arg("--dst-local")
        .arg(format!("zstd={}", backups.display()));
    backup = match skip_xlogs {
        true => backup.arg("--skip-xlogs"),
        false => backup.arg("--xlogs").arg(&xlogs),
    };
    let backup = backup.succeeds();
    backup.stderr_lacks("ERROR").stderr_lacks("WARNING");
    assert_eq!(
        backup
            .stderr()
            .contains("pg_backup_stop waits for the backup's WAL to be archived"),
        skip_xlogs,
        "{backup}"
    );

    primary.psql("INSERT INTO t SELECT g, 'after backup' FROM generate_series(1001, 1500) g");
    primary.psql("SELECT pg_create_restore_point('pitr-major-target')");
    primary.psql("INSERT INTO t SELECT g, 'after target' FROM generate_series(1501, 1600) g");
    let last = primary.switch_wal();
    primary.wait_archived(&last, TIMEOUT);

    let restore = Tool::new("pitr-restore")
        .arg("--from-backup")
        .arg(&backups)
        .arg("--source")
        .arg(format!("zstd={}", archive.display()))
        .args(["--poll-interval", "0.2"])
        .args(["--target-name", "pitr-major-target"])
        .args([
            "--target-action",
            match at_target {
                AtTarget::Promote => "promote",
                AtTarget::PauseThenResume => "pause",
            },
        ]);
    let restored = restore_backup(
        &format!("pg{major}-restored"),
        restore,
        ClusterOpts::new().server_bindir(&bindir),
    );
    let auto = std::fs::read_to_string(restored.data_path("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains("recovery_target_name = 'pitr-major-target'"),
        "{auto}"
    );
    if major < 15 {
        // An older server refuses to start on a parameter it does not know.
        assert!(!auto.contains("recovery_prefetch"), "{auto}");
    }
    restored.start();
    if at_target == AtTarget::PauseThenResume {
        let (query, paused) = pause_query(major);
        let answer = poll_until(TIMEOUT, || {
            let answer = restored.try_psql(query).ok()?;
            (answer == paused).then_some(answer)
        });
        assert_eq!(
            answer.as_deref(),
            Some(paused),
            "{query} never answered {paused}; server log:\n{}",
            restored.server_log()
        );
        if major < 14 {
            // Why the runbook gives PostgreSQL 13 its own query.
            assert!(restored
                .try_psql("SELECT pg_get_wal_replay_pause_state()")
                .is_err_and(|e| e.contains("does not exist")));
        }
        assert!(restored.is_in_recovery());
        assert_eq!(
            restored.psql("SELECT count(*) FROM t WHERE phase = 'after target'"),
            "0"
        );
        restored.psql("SELECT pg_wal_replay_resume()");
    }
    restored.wait_promoted(TIMEOUT);
    restored.psql("INSERT INTO t VALUES (2001, 'written after recovery')");
    assert!(
        restored
            .server_log()
            .contains("recovery stopping at restore point \"pitr-major-target\""),
        "no stop at the restore point in the server log:\n{}",
        restored.server_log()
    );
    assert_eq!(
        restored.psql("SELECT count(*), max(id), count(DISTINCT phase) FROM t WHERE id <= 1600"),
        "1500|1500|2"
    );
    assert_eq!(
        restored.psql("SELECT count(*) FROM t WHERE phase = 'after target'"),
        "0"
    );
}

#[test]
fn postgresql_13_backup_archive_and_restore() {
    backup_and_restore_to_a_restore_point_on(13, AtTarget::PauseThenResume);
}

#[test]
fn postgresql_14_backup_archive_and_restore() {
    backup_and_restore_to_a_restore_point_on(14, AtTarget::Promote);
}

#[test]
fn postgresql_16_backup_archive_and_restore() {
    backup_and_restore_to_a_restore_point_on(16, AtTarget::Promote);
}

#[test]
fn postgresql_17_backup_archive_and_restore() {
    backup_and_restore_to_a_restore_point_on(17, AtTarget::Promote);
}

#[test]
fn postgresql_18_backup_archive_and_restore() {
    backup_and_restore_to_a_restore_point_on(18, AtTarget::PauseThenResume);
}

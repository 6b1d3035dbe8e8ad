//! `pitr-cleanup` form 1 (`archive_cleanup_command ... %r`): what it removes (by position,
//! timeline ignored, `.history` kept), the pause trigger, `--dry-run`, the lock that keeps two
//! cleanups apart, and bad input with exact messages and statuses (0 done, 2 error, 3 usage,
//! 4 busy).

use std::path::Path;

use pitr_tests::{ArchiveDir, PgTempDir, Tool};

/// An archive holding (empty stand-ins for) these files.
fn archive_with(files: &[&str]) -> (PgTempDir, ArchiveDir) {
    let tmp = PgTempDir::new("cleanup");
    let dir = tmp.subdir("archive");
    for f in files {
        std::fs::write(dir.join(f), vec![0u8; 1000]).unwrap();
    }
    let archive = ArchiveDir::new(&dir);
    (tmp, archive)
}

pub(crate) const FILES: &[&str] = &[
    "000000010000000000000001.zst",
    "000000010000000000000002.gz",
    "000000010000000000000002.00000028.backup.zst",
    "00000001.history",
    "00000002.history.zst",
    "000000010000000000000003.partial.zst",
    "000000020000000000000003.zst",
    "000000020000000000000004.zst",
    "000000020000000000000005",
    ".pitr-cluster",
    "unrelated.txt",
];

fn cleanup(archive: &ArchiveDir) -> Tool {
    Tool::new("pitr-cleanup")
        .arg("--archive")
        .arg(format!("zstd={}", archive.path().display()))
}

fn names(archive: &ArchiveDir) -> Vec<String> {
    let mut n = archive.all_names();
    n.sort();
    n
}

#[test]
fn cleanup_removes_wal_older_than_r_by_position_and_keeps_history() {
    let (_tmp, archive) = archive_with(FILES);
    let out = cleanup(&archive).arg("000000020000000000000004").succeeds();
    out.stderr_contains(&format!(
        "LOG : 5 WAL files older than 000000020000000000000004 removed from {}, 4.9 KiB",
        archive.path().display()
    ));
    assert_eq!(
        names(&archive),
        [
            ".pitr-cleanup.lock",
            ".pitr-cluster",
            "00000001.history",
            "00000002.history.zst",
            "000000020000000000000004.zst",
            "000000020000000000000005",
            "unrelated.txt",
        ]
    );
    // Nothing older is left: a second run removes nothing and says so.
    cleanup(&archive)
        .arg("000000020000000000000004")
        .succeeds()
        .stderr_contains("LOG : 0 WAL files older than 000000020000000000000004 removed");
}

#[test]
fn cleanup_dry_run_lists_files_with_sizes_and_removes_nothing() {
    let (_tmp, archive) = archive_with(FILES);
    let before = names(&archive);
    let out = cleanup(&archive)
        .args(["--dry-run", "000000010000000000000003"])
        .succeeds();
    for f in [
        "000000010000000000000001.zst",
        "000000010000000000000002.gz",
        "000000010000000000000002.00000028.backup.zst",
    ] {
        out.stderr_contains(&format!(
            "(dry-run) would remove WAL file {} (1000 B)",
            archive.path().join(f).display()
        ));
    }
    out.stderr_lacks("000000010000000000000003.partial.zst (")
        .stderr_contains("3 WAL files older than 000000010000000000000003 would be removed");
    let mut after = names(&archive);
    after.retain(|n| n != ".pitr-cleanup.lock");
    assert_eq!(after, before);
}

#[test]
fn cleanup_removes_nothing_while_the_pause_trigger_exists() {
    let (tmp, archive) = archive_with(FILES);
    let trigger = tmp.path().join("backup-running");
    std::fs::write(&trigger, b"1234\n").unwrap();
    let before = names(&archive);
    cleanup(&archive)
        .arg("--removal-pause-trigger")
        .arg(&trigger)
        .arg("000000020000000000000005")
        .succeeds()
        .stderr_contains(&format!(
            "removal pause trigger {} exists; not removing anything",
            trigger.display()
        ));
    assert_eq!(names(&archive), before);
    std::fs::remove_file(&trigger).unwrap();
    cleanup(&archive)
        .arg("--removal-pause-trigger")
        .arg(&trigger)
        .arg("000000020000000000000005")
        .succeeds();
    assert!(!archive.path().join("000000020000000000000004.zst").exists());
}

#[test]
fn cleanup_exits_4_while_another_cleanup_holds_the_lock() {
    let (_tmp, archive) = archive_with(FILES);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(archive.path().join(".pitr-cleanup.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    let before = names(&archive);
    cleanup(&archive)
        .arg("000000020000000000000005")
        .run()
        .failure_with_status(4)
        .stderr_contains(&format!(
            "ERROR : another pitr-cleanup is working on {} (lock {})",
            archive.path().display(),
            archive.path().join(".pitr-cleanup.lock").display()
        ))
        .stderr_contains(" : HINT : ");
    assert_eq!(names(&archive), before);
    drop(lock);
    // The other tests of this process fork children, and a child between fork and exec holds a
    // copy of every descriptor, the lock's too, for a moment: poll until the lock is free.
    let freed = pitr_tests::wait_until(
        "pitr-cleanup to get the released lock",
        std::time::Duration::from_secs(10),
        || {
            let r = cleanup(&archive).arg("000000020000000000000005").run();
            (r.code() != Some(4)).then_some(r)
        },
    );
    freed.success();
}

#[test]
fn cleanup_bad_input_is_refused_with_exact_messages() {
    let (_tmp, archive) = archive_with(FILES);
    let before = names(&archive);
    Tool::new("pitr-cleanup")
        .arg("000000010000000000000003")
        .run()
        .failure_with_status(3)
        .stderr_contains("FATAL : no --archive given")
        .stderr_contains(" : HINT : ");
    cleanup(&archive)
        .run()
        .failure_with_status(3)
        .stderr_contains("FATAL : neither %r nor --backup-dir given");
    cleanup(&archive)
        .arg("pg_wal/000000010000000000000003")
        .run()
        .failure_with_status(3)
        .stderr_contains("FATAL : \"pg_wal/000000010000000000000003\" is not a WAL file name");
    cleanup(&archive)
        .arg("00000002.history")
        .run()
        .failure_with_status(3)
        .stderr_contains("FATAL : \"00000002.history\" is a history file, not a WAL segment");
    cleanup(&archive)
        .args(["000000010000000000000003", "000000010000000000000004"])
        .run()
        .failure_with_status(3)
        .stderr_contains("FATAL : too many arguments");
    cleanup(&archive)
        .args(["--keep-days", "3", "000000010000000000000003"])
        .run()
        .failure_with_status(3)
        .stderr_contains("FATAL : --keep-days and --keep-count need --backup-dir");
    Tool::new("pitr-cleanup")
        .args(["--archive", "lz5=/srv/wal", "000000010000000000000003"])
        .run()
        .failure_with_status(3)
        .stderr_contains("FATAL : --archive lz5=/srv/wal: unknown codec \"lz5\"");
    const HINT: &str = " : HINT : give the WAL archive directory that pitr-archive writes to\n";
    let missing = Path::new("/nonexistent/pitr/archive");
    Tool::new("pitr-cleanup")
        .arg("--archive")
        .arg(missing)
        .arg("000000010000000000000003")
        .run()
        .failure_with_status(2)
        .stderr_contains("ERROR : archive /nonexistent/pitr/archive does not exist\n")
        .stderr_contains(HINT);
    // A file where the archive directory should be is told apart from a missing directory.
    let file = archive.path().join("unrelated.txt");
    Tool::new("pitr-cleanup")
        .arg("--archive")
        .arg(&file)
        .arg("000000010000000000000003")
        .run()
        .failure_with_status(2)
        .stderr_contains(&format!(
            "ERROR : archive {} is not a directory\n",
            file.display()
        ))
        .stderr_contains(HINT);
    Tool::new("pitr-cleanup")
        .arg("--bogus")
        .run()
        .failure_with_status(3)
        .stderr_contains("FATAL : Unrecognized argument: --bogus");
    assert_eq!(names(&archive), before);
}

/// An rsync daemon killed while it receives a WAL file (a standby that crashes mid-transfer)
/// leaves rsync's temporary `.NAME.XXXXXX` in its module directory for good; pitr-cleanup on
/// that directory removes it once nothing has written to it for an hour (the test hook makes
/// that now), leaves it before, and never touches the archived files.
#[test]
fn cleanup_removes_the_temp_file_of_an_rsync_daemon_killed_mid_transfer() {
    use std::time::Duration;

    let mut daemon = pitr_tests::RsyncDaemon::start("wal_archive");
    let kept = "000000010000000000000008.gz";
    std::fs::write(daemon.dir().join(kept), vec![1u8; 1000]).unwrap();
    let src = PgTempDir::new("rsync-src");
    let name = "000000010000000000000009.gz";
    std::fs::write(src.path().join(name), vec![7u8; 4 << 20]).unwrap();
    // A slow transfer (256 KiB/s of 4 MiB), so that the daemon is caught in the middle of it.
    let mut client = std::process::Command::new("rsync")
        .arg("--bwlimit=256")
        .arg(src.path().join(name))
        .arg(format!("{}/", daemon.url()))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!(".{name}.");
    let temp = pitr_tests::wait_until(
        "rsync's temporary file in the module directory",
        Duration::from_secs(30),
        || {
            pitr_tests::dir_names(daemon.dir())
                .into_iter()
                .find(|n| n.starts_with(&prefix))
        },
    );
    // The daemon and the processes serving the transfer, killed as a crash kills them.
    let port = format!("--port={}", daemon.port());
    let serving = pitr_tests::procs::processes_matching(&["--daemon", &port]);
    assert!(serving.len() >= 2, "{serving:?}");
    for p in &serving {
        // SAFETY: kill() sends SIGKILL to an rsync daemon process this test started.
        unsafe { libc::kill(p.pid as libc::pid_t, libc::SIGKILL) };
    }
    client.wait().unwrap();
    daemon.stop();
    let left = pitr_tests::dir_names(daemon.dir());
    assert!(left.contains(&temp), "{left:?}");
    assert!(!left.iter().any(|n| n == name), "{left:?}");

    let sweep = || {
        Tool::new("pitr-cleanup")
            .as_pg_user()
            .arg("--archive")
            .arg(daemon.dir())
            .arg("000000010000000000000001")
    };
    // Younger than an hour: it may be a live transfer's, so it stays.
    sweep().succeeds();
    assert!(pitr_tests::dir_names(daemon.dir()).contains(&temp));
    let dry = sweep()
        .arg("--dry-run")
        .env("PITR_TEST_STALE_TEMP_SECS", "0")
        .succeeds();
    dry.stderr_line_with(&[
        "LOG : (dry-run) would remove ",
        &temp,
        "an rsync transfer's temporary file unchanged for 0 s",
    ]);
    assert!(pitr_tests::dir_names(daemon.dir()).contains(&temp));
    let swept = sweep().env("PITR_TEST_STALE_TEMP_SECS", "0").succeeds();
    swept.stderr_line_with(&[
        "LOG : removed ",
        &temp,
        "an rsync transfer's temporary file unchanged for 0 s",
    ]);
    assert_eq!(
        pitr_tests::dir_names(daemon.dir()),
        [".pitr-cleanup.lock", kept]
    );
}

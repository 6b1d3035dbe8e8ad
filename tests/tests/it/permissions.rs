//! No permission traps (issue 15): a hand-run as root of a binary that works on a data
//! directory is refused with a HINT naming its owner and leaves nothing behind there; the
//! commands that legitimately run as root (cron retention, monitoring) give what they create
//! to the owner of the directory they create it in, so that the server's own calls, made as
//! its user, still succeed afterwards.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use pitr_tests::user::is_root;
use pitr_tests::{pg_user, pitr_bin, ArchiveDir, Cluster, ClusterOpts, PgTempDir, Tool};

/// How long archiving may take (debug builds, a shared machine).
const TIMEOUT: Duration = Duration::from_secs(120);

/// The owner of `path`.
fn owner_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .uid()
}

#[test]
fn root_hand_runs_are_refused_or_leave_nothing_the_servers_user_cannot_use() {
    assert!(
        is_root(),
        "this test shows what a hand-run as root does: run the suite as root (CI does)"
    );
    let owner = &pg_user().name;
    let work = PgTempDir::new("perm-work");
    let archive = work.subdir("archive");
    let state = work.subdir("monitor-state");
    let log = work.path().join("archive.log");
    let cluster = Cluster::init(
        "perm",
        ClusterOpts::new()
            .wal_segsize_mb(1)
            .set("wal_keep_size", "64MB")
            .set("archive_mode", "on")
            .set(
                "archive_command",
                &format!(
                    "{} --log {} --dst-local {} %p",
                    pitr_bin("pitr-archive").display(),
                    log.display(),
                    archive.display()
                ),
            ),
    );
    cluster.start();
    let segment = cluster.switch_wal();
    cluster.wait_archived(&segment, TIMEOUT);
    let data = cluster.data_dir();
    let refusal = |tool: &str| {
        format!(
            "{tool} runs as root (uid 0), but the data directory {} belongs to {owner} (uid {})",
            data.display(),
            pg_user().uid
        )
    };
    let hint = |tool: &str| {
        format!(
            " : HINT : run it as the user PostgreSQL runs as, as the server's own calls do: \
             runuser -u {owner} -- {tool} ..."
        )
    };

    // pitr-archive by hand, as PostgreSQL would call it: refused, nothing sent.
    let by_hand = work.path().join("by-hand");
    Tool::new("pitr-archive")
        .current_dir(data)
        .arg("--dst-local")
        .arg(&by_hand)
        .arg(format!("pg_wal/{segment}"))
        .run()
        .failure_with_status(3)
        .stderr_contains(&format!(
            "pitr-archive : FATAL : {}",
            refusal("pitr-archive")
        ))
        .stderr_contains(&hint("pitr-archive"));
    assert!(!by_hand.exists(), "{} was created", by_hand.display());

    // pitr-restore by hand: refused with a status that never promotes; no prefetch spool,
    // nothing in pg_wal.
    Tool::new("pitr-restore")
        .arg("--data-dir")
        .arg(data)
        .arg("--source")
        .arg(&archive)
        .args([segment.as_str(), "pg_wal/RECOVERYXLOG"])
        .run()
        .failure_with_status(127)
        .stderr_contains(&refusal("pitr-restore"))
        .stderr_contains(&hint("pitr-restore"));
    for left in ["RECOVERYXLOG", ".pitr-prefetch"] {
        assert!(!cluster.wal_dir().join(left).exists(), "pg_wal/{left} left");
    }

    // pitr-backup by hand: refused before it creates its WAL directory.
    let xlogs = work.path().join("backup-xlogs");
    let backups = work.subdir("backups");
    Tool::new("pitr-backup")
        .arg("--data-dir")
        .arg(data)
        .arg("--host")
        .arg(cluster.socket_dir())
        .arg("--port")
        .arg(cluster.port().to_string())
        .args(["--username", "postgres"])
        .arg("--xlogs")
        .arg(&xlogs)
        .arg("--dst-local")
        .arg(&backups)
        .run()
        .failure_with_status(3)
        .stderr_contains(&refusal("pitr-backup"))
        .stderr_contains(&hint("pitr-backup"));
    assert!(!xlogs.exists(), "--xlogs {} was created", xlogs.display());
    assert!(pitr_tests::dir_names(&backups).is_empty());

    // The server's own archiver goes on as before.
    let next = cluster.switch_wal();
    cluster.wait_archived(&next, TIMEOUT);
    ArchiveDir::new(&archive).assert_holds(&next, &cluster.wal_file(&next));

    // Retention from root's cron, then archive_cleanup_command as the server's user: the lock
    // file the root run created belongs to the archive's owner.
    let cleanup = |tool: Tool| {
        tool.arg("--archive").arg(&archive).arg(&next).succeeds();
    };
    cleanup(Tool::new("pitr-cleanup"));
    let lock = archive.join(".pitr-cleanup.lock");
    assert_eq!(owner_of(&lock), pg_user().uid, "{}", lock.display());
    assert!(ArchiveDir::new(&archive).file_for(&segment).is_none());
    cleanup(Tool::new("pitr-cleanup").as_pg_user());

    // The errors check from root's cron, then from the server's user's: the state files the
    // root run wrote belong to the state directory's owner.
    let template = log.display().to_string();
    let errors = |tool: Tool| {
        tool.args(["--check", "errors", "--log", &template, "--state-dir"])
            .arg(&state)
            .succeeds();
    };
    errors(Tool::new("pitr-monitor"));
    for name in pitr_tests::dir_names(&state) {
        assert_eq!(owner_of(&state.join(&name)), pg_user().uid, "{name}");
    }
    errors(Tool::new("pitr-monitor").as_pg_user());
    cluster.stop();
}

/// Issue "A DBA's first day" (item 1): a dated `--log` whose directories a root run makes
/// first. Retention from root's cron creates them below a directory of the server's user, and
/// gives them and the file to that user; the server's own archive call, as its user, then logs
/// into the same file instead of failing with "cannot open log file".
#[test]
fn dated_log_directories_made_by_root_stay_writable_by_the_servers_user() {
    assert!(
        is_root(),
        "this test shows what a hand-run as root does: run the suite as root (CI does)"
    );
    let work = PgTempDir::new("perm-log");
    let logs = work.subdir("plog");
    let archive = work.subdir("archive");
    let template = format!("{}/y-^Y/d-^Y-^m-^d/x.log", logs.display());
    let cluster = Cluster::init("perm-log", ClusterOpts::new().set("wal_keep_size", "64MB"));
    cluster.start();
    cluster.psql("CREATE TABLE filler AS SELECT generate_series(1, 1000) AS i");
    let segment = cluster.switch_wal();

    Tool::new("pitr-cleanup")
        .args(["--log", &template, "--archive"])
        .arg(&archive)
        .arg("000000010000000000000001")
        .succeeds();
    // The one directory per level the template names, each given to the owner of `logs`.
    let year = single_entry(&logs);
    let day = single_entry(&year);
    let file = single_entry(&day);
    assert_eq!(file.file_name().unwrap_or_default(), "x.log");
    for path in [&year, &day, &file] {
        assert_eq!(owner_of(path), pg_user().uid, "{}", path.display());
    }

    Tool::new("pitr-archive")
        .as_pg_user()
        .args(["--log", &template, "--data-dir"])
        .arg(cluster.data_dir())
        .arg("--dst-local")
        .arg(&archive)
        .arg(format!("pg_wal/{segment}"))
        .succeeds();
    ArchiveDir::new(&archive).assert_holds(&segment, &cluster.wal_file(&segment));
    let again = single_entry(&single_entry(&single_entry(&logs)));
    assert_eq!(again, file, "another log file");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    let messages: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(" : LOG : ").map(|(_, m)| m))
        .collect();
    assert_eq!(
        messages,
        [
            format!(
                "0 WAL files older than 000000010000000000000001 removed from {}, 0 B",
                archive.display()
            ),
            format!("Segment pg_wal/{segment} successfully sent to all destinations."),
        ],
        "{text}"
    );
    cluster.stop();
}

/// The one entry of directory `dir`, as a path.
fn single_entry(dir: &Path) -> std::path::PathBuf {
    match pitr_tests::dir_names(dir).as_slice() {
        [one] => dir.join(one),
        other => panic!("{} holds {other:?}, not one entry", dir.display()),
    }
}

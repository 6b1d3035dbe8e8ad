//! The seed runbook's OmniPITR command lines, run as written with only the program and the
//! paths changed (issue 15, "Migration without rewriting"): an archive_command with `-l -s -db
//! -dr gzip=rsync://… -t -v "%p"` against a real rsync daemon, a backup-master line `-D -l -x
//! -dl gzip=… -t --pid-file -v` whose `-x` is the archive's `-db`, and a warm spare whose
//! restore_command is `-l -s gzip=… -f -p -t -ep hang -pp … -r -v %f %p`, where `-r` must not
//! take `%f` (OmniPITR issue #39), and omnipitr-monitor's `-l -c -s` reading the archive's log.
//! Two-dash spellings (`--dl`, as Getopt::Long took them) work too. Each checks what happened,
//! not only the exit status.

use std::path::Path;
use std::time::Duration;

use pitr_tests::cluster::standby::RECOVERY_SIGNAL;
use pitr_tests::{
    pg_program, pitr_bin, poll_until, ArchiveDir, Cluster, ClusterOpts, PgTempDir, RsyncDaemon,
    Tool,
};

/// How long a step waits for archiving or replay (debug builds, a shared machine).
const TIMEOUT: Duration = Duration::from_secs(120);

/// The table the load writes.
const TABLE: &str = "rows";

/// One round of load: rows committed, then the segment switched (so they are archived).
/// Returns the completed segment and the LSN of the switch.
fn load_round(primary: &Cluster, transactions: u32) -> (String, String) {
    primary.pgbench_script(
        &format!("INSERT INTO {TABLE} (payload) VALUES (repeat('x', 200));\n"),
        transactions,
        2,
    );
    primary.switch_wal_at()
}

/// The text of a log file written by a tool run as PostgreSQL's user.
fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The base names of the files in `dir` that hold WAL older than `redo`.
fn older_than(dir: &ArchiveDir, redo: &str) -> Vec<String> {
    dir.names()
        .into_iter()
        .filter(|n| n.len() >= 24 && n[..24] < *redo && !n.contains(".history"))
        .collect()
}

#[test]
fn the_seed_runbooks_omnipitr_lines_run_as_written() {
    let work = PgTempDir::new("omnipitr-lines");
    let state = work.subdir("archive-state");
    let tmp = work.subdir("tmp");
    let xlogs = work.path().join("backup-xlogs");
    let backups = work.subdir("backups");
    let rsyncd = RsyncDaemon::start("wal_archive");
    let archive_log = work.path().join("archive.log");

    // omnipitr-archive -l … -s … -db … -dr gzip=rsync://slave/wal_archive -t … -v "%p"
    let archive_command = format!(
        "{} -l {} -s {} -db {} -dr gzip={} -t {} -v \"%p\"",
        pitr_bin("pitr-archive").display(),
        archive_log.display(),
        state.display(),
        xlogs.display(),
        rsyncd.url(),
        tmp.display()
    );
    let primary = Cluster::init(
        "omnipitr-lines-primary",
        ClusterOpts::new()
            .wal_segsize_mb(1)
            .set("archive_mode", "on")
            .set("archive_command", &archive_command)
            .set("wal_keep_size", "64MB")
            // The backup line asks for no fast checkpoint: keep the spread one short.
            .set("checkpoint_timeout", "30s"),
    );
    primary.start();
    primary.psql(&format!(
        "CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, payload text)"
    ));
    let (segment, _) = load_round(&primary, 100);
    primary.wait_archived(&segment, TIMEOUT);
    let archive = ArchiveDir::new(rsyncd.dir());
    let done = primary.done_segments();
    assert!(done.contains(&segment), "{segment} not in {done:?}");
    for wal in &done {
        archive.assert_holds(wal, &primary.wal_file(wal));
    }
    assert!(
        archive.names().iter().all(|n| n.ends_with(".gz")),
        "gzip= was not applied: {:?}",
        archive.names()
    );
    let log = read_log(&archive_log);
    assert!(log.contains("Called with parameters: -l "), "{log}");
    // The line names the WAL file as PostgreSQL gave it (%p), as OmniPITR's did.
    assert!(
        log.contains(&format!(
            " : LOG : Segment pg_wal/{segment} successfully sent to all destinations."
        )),
        "{log}"
    );
    assert!(!log.contains("WARNING"), "{log}");

    dropped_refused_and_mistyped(&primary, &work, &segment);
    monitor_lines(&primary, &work, &archive_log);
    backup_master_line(&primary, &work, &xlogs, &backups, &tmp);
    warm_spare_line(&primary, &work, &rsyncd, &tmp);
}

/// The spellings pitr dropped are ignored with one WARNING naming them; an option it does not
/// support, and a typo, are usage errors whose HINT says what to write instead.
fn dropped_refused_and_mistyped(primary: &Cluster, work: &PgTempDir, segment: &str) {
    let by_hand = work.subdir("by-hand");
    let result = Tool::new("pitr-archive")
        .as_pg_user()
        .current_dir(primary.data_dir())
        .args(["-nn", "--gp", "/usr/bin/pigz", "--dl"])
        .arg(&by_hand)
        .arg(format!("./pg_wal/{segment}"))
        .succeeds();
    result.stderr_line_with(&[&format!(
        " : LOG : Segment ./pg_wal/{segment} successfully sent to all destinations."
    )]);
    let warnings: Vec<&str> = result
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains(" : WARNING : "))
        .collect();
    assert_eq!(warnings.len(), 1, "{result}");
    assert!(
        warnings[0].ends_with(
            " : WARNING : ignoring OmniPITR options pitr-archive does not need: -nn, --gp"
        ),
        "{result}"
    );
    ArchiveDir::new(&by_hand).assert_holds(segment, &primary.wal_file(segment));

    Tool::new("pitr-backup")
        .args(["-D", "/srv/data", "-dd", "postgres@standby:/srv/backups"])
        .run()
        .failure_with_status(3)
        .stderr_contains("option -dd is not supported")
        .stderr_contains("HINT : use --dst-pipe");
    Tool::new("pitr-restore")
        .args(["-s", "/srv/wal", "-h", "/bin/true", "-r", "%f", "%p"])
        .run()
        .failure_with_status(127)
        .stderr_contains(" : FATAL : option -h is not supported\n")
        .stderr_contains(
            " : HINT : OmniPITR's -h (--pre-removal-processing) ran a command before each \
             removal; pitr-restore runs none: to keep a copy of each WAL file, give pitr-archive \
             another destination (--dst-local, --dst-remote or --dst-pipe), or leave out \
             --remove-unneeded (-r) so that nothing is removed; for help, run pitr-restore \
             --help\n",
        );
    // --from-backup has no --data-dir: OmniPITR's -D is refused there, not mistranslated.
    Tool::new("pitr-restore")
        .args([
            "--from-backup",
            "/srv/backups",
            "-D",
            "/srv/data",
            "--target-data-dir",
        ])
        .args(["/srv/new", "-s", "/srv/wal"])
        .run()
        .failure_with_status(3)
        .stderr_contains(" : FATAL : option -D is not an option of pitr-restore --from-backup\n")
        .stderr_contains(
            " : HINT : -D (--data-dir) is the restore_command's data directory; the one \
             --from-backup creates is --target-data-dir NEW\n",
        );
    Tool::new("pitr-archive")
        .args(["--dst-locl", "/srv/wal", "pg_wal/000000010000000000000001"])
        .run()
        .failure_with_status(3)
        .stderr_contains("Unrecognized argument: --dst-locl")
        .stderr_contains("HINT : did you mean `--dst-local`? run pitr-archive --help for usage");
}

/// omnipitr-monitor's lines: `-l LOG -c last-archive-age -s STATE` reads the archive's log,
/// `-c archive-queue -h -p -U -pp psql` asks the server (`-pp` ignored with a WARNING), and `-?`
/// prints the help.
fn monitor_lines(primary: &Cluster, work: &PgTempDir, archive_log: &Path) {
    let state = work.subdir("monitor-state");
    let age = Tool::new("pitr-monitor")
        .arg("-l")
        .arg(archive_log)
        .args(["-c", "last-archive-age", "-s"])
        .arg(&state)
        .args(["--output", "omnipitr"])
        .succeeds();
    let secs: f64 = age
        .stdout()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("not a number: {:?}: {e}", age.stdout()));
    assert!((0.0..600.0).contains(&secs), "{secs}");
    let queue = Tool::new("pitr-monitor")
        .args(["-c", "archive-queue", "-h"])
        .arg(primary.socket_dir())
        .args(["-p", &primary.port().to_string(), "-U", "postgres", "-pp"])
        .args(["/usr/bin/psql", "--output", "omnipitr"])
        .succeeds();
    assert!(
        queue.stdout().trim().parse::<u64>().is_ok(),
        "{}",
        queue.stdout()
    );
    queue.stderr_line_with(&[
        " : WARNING : --psql-path is ignored: pitr-monitor talks to the server itself",
    ]);
    let help = Tool::new("pitr-monitor").arg("-?").succeeds();
    assert!(
        help.stdout().starts_with("Usage: pitr-monitor --check"),
        "{}",
        help.stdout()
    );
    assert!(
        help.stdout()
            .contains("\n  -pp               --psql-path\n"),
        "{}",
        help.stdout()
    );
}

/// `pitr-backup -D DATA` as cron runs it: as the server's user, connecting through the libpq
/// environment.
fn cron_backup(primary: &Cluster) -> Tool {
    Tool::new("pitr-backup")
        .as_pg_user()
        .env("PGHOST", primary.socket_dir())
        .env("PGPORT", primary.port().to_string())
        .env("PGUSER", "postgres")
        .arg("-D")
        .arg(primary.data_dir())
}

/// omnipitr-backup-master -D … -l … -x … -dl gzip=… -t … --pid-file … -v, connecting as cron
/// would, through the environment: the set is made with the WAL the archiver put into `-x`.
fn backup_master_line(
    primary: &Cluster,
    work: &PgTempDir,
    xlogs: &Path,
    backups: &Path,
    tmp: &Path,
) {
    let backup_log = work.path().join("backup.log");
    primary.psql("CHECKPOINT");
    cron_backup(primary)
        .arg("-l")
        .arg(&backup_log)
        .arg("-x")
        .arg(xlogs)
        .arg("-dl")
        .arg(format!("gzip={}", backups.display()))
        .arg("-t")
        .arg(tmp)
        .arg("--pid-file")
        .arg(work.path().join("backup.pid"))
        .arg("-v")
        .timeout(Duration::from_secs(300))
        .succeeds();
    assert!(!xlogs.exists(), "-x {} left behind", xlogs.display());
    let files = pitr_tests::dir_names(backups);
    assert_eq!(files.len(), 4, "{files:?}");
    for kind in ["data", "xlog", "sha256", "meta"] {
        assert!(
            files
                .iter()
                .any(|f| f.contains(&format!("-{kind}-")) && f.ends_with(".tar.gz")),
            "no gzip {kind} file in {files:?}"
        );
    }
    let xlog = files
        .iter()
        .find(|f| f.contains("-xlog-"))
        .expect("xlog file");
    let size = std::fs::metadata(backups.join(xlog))
        .expect("xlog file")
        .len();
    assert!(
        size > 100,
        "{xlog} is {size} bytes: the WAL from -x is missing"
    );
    let log = read_log(&backup_log);
    assert!(log.contains("backup complete"), "{log}");

    // Cron lines carry both -x and -sx: OmniPITR ignored -x then, and so does pitr, saying so.
    let skipped = work.subdir("backups-sx");
    let result = cron_backup(primary)
        .arg("-x")
        .arg(xlogs)
        .arg("-sx")
        .arg("-dl")
        .arg(&skipped)
        .arg("--fast-checkpoint")
        .timeout(Duration::from_secs(300))
        .succeeds();
    result.stderr_line_with(&[
        " : WARNING : --skip-xlogs given: ignoring --xlogs ",
        &xlogs.display().to_string(),
    ]);
    assert!(
        !xlogs.exists(),
        "-x {} was created with -sx",
        xlogs.display()
    );
    let files = pitr_tests::dir_names(&skipped);
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(!files.iter().any(|f| f.contains("-xlog-")), "{files:?}");
}

/// A warm spare whose restore_command is omnipitr-restore's line: it replays what the primary
/// archives, and `-r` (without a value, before `-v %f %p`) removes what its restartpoint no
/// longer needs.
fn warm_spare_line(primary: &Cluster, work: &PgTempDir, rsyncd: &RsyncDaemon, tmp: &Path) {
    let restore_log = work.path().join("restore.log");
    // omnipitr-restore -l … -s gzip=… -f … -p … -t … -ep hang -pp … -r -v %f %p
    let restore_command = format!(
        "{} -l {} -s gzip={} -f {} -p {} -t {} -ep hang -pp {} -r -v %f %p",
        pitr_bin("pitr-restore").display(),
        restore_log.display(),
        rsyncd.dir().display(),
        work.path().join("finish.trigger").display(),
        work.path().join("removal.pause").display(),
        tmp.display(),
        pg_program("pg_controldata").display()
    );
    let spare = primary.base_backup(
        "omnipitr-lines-spare",
        "none",
        ClusterOpts::new()
            .set("restore_command", &restore_command)
            .set("recovery_prefetch", "off"),
    );
    spare.write_signal(RECOVERY_SIGNAL);
    spare.start();
    assert!(spare.is_in_recovery(), "the warm spare is not in recovery");
    load_round(primary, 50);
    primary.psql("CHECKPOINT");
    let (segment, lsn) = load_round(primary, 50);
    primary.wait_archived(&segment, TIMEOUT);
    spare.wait_replayed(&lsn, TIMEOUT);
    assert_eq!(spare.count_rows(TABLE), primary.count_rows(TABLE));
    let log = read_log(&restore_log);
    assert!(log.contains(&segment), "{log}");
    assert!(!log.contains("FATAL"), "{log}");

    // A restartpoint moves the REDO location; -r then removes older segments while waiting.
    spare.psql("CHECKPOINT");
    let redo = spare.psql("SELECT redo_wal_file FROM pg_control_checkpoint()");
    let archive = ArchiveDir::new(rsyncd.dir());
    let old = older_than(&archive, &redo);
    assert!(
        !old.is_empty(),
        "nothing archived before {redo}: {:?}",
        archive.names()
    );
    let (segment, lsn) = load_round(primary, 10);
    primary.wait_archived(&segment, TIMEOUT);
    spare.wait_replayed(&lsn, TIMEOUT);
    let removed = poll_until(TIMEOUT, || {
        (older_than(&archive, &redo).len() < old.len()).then_some(())
    });
    assert!(
        removed.is_some(),
        "-r removed nothing before {redo}: {:?}\n{}",
        archive.names(),
        read_log(&restore_log)
    );
}

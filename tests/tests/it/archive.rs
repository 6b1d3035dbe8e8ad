//! `pitr-archive` against PostgreSQL 15: delivery to local, rsync and pipe destinations through
//! a real `archive_command`, retries after an unreachable standby, duplicate and foreign WAL,
//! a kill -9 in the middle of a write, and the error cases with their exact messages and exit
//! statuses (0 success, 2 error that PostgreSQL retries, 3 usage error, 4 pid file held).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pitr_tests::archive_dir::{FileStamp, CLUSTER_MARKER};
use pitr_tests::user::{is_root, set_mode};
use pitr_tests::{
    pg_user, pitr_bin, poll_until, wait_until, ArchiveDir, Cluster, ClusterOpts, PgTempDir,
    RsyncDaemon, Tool,
};

/// How long a test waits for PostgreSQL's archiver. Generous: the binaries under test are
/// usually debug builds, and gzip in a debug build is slow.
const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// A segment name the tests use for files that do not exist or are fakes.
const MISSING_SEGMENT: &str = "000000010000000000000007";

/// Settings of a cluster whose `pg_wal` files the test compares with the archive: keep them.
fn keep_wal() -> ClusterOpts {
    ClusterOpts::new().set("wal_keep_size", "1GB")
}

/// A cluster whose `archive_command` is the three-destination setup of the runbook.
///
/// It uses 1 MiB segments: the tests then run many archive calls on little data (gzip in a
/// debug build manages only a few MiB/s), and pitr-archive must read the segment size from
/// the WAL rather than assume 16 MiB.
fn three_destination_cluster(name: &str, command: &str) -> Cluster {
    Cluster::init(
        name,
        keep_wal()
            .wal_segsize_mb(1)
            .set("archive_mode", "on")
            .set("archive_command", command),
    )
}

/// A cluster archiving with `command`: pgbench's tables, then `rounds` rounds of transactions,
/// a segment switch after each; waits for the last switched segment to be archived, checks that
/// no call failed, and stops the cluster. Returns it and the switched segments.
fn archive_switched_segments(name: &str, command: &str, rounds: usize) -> (Cluster, Vec<String>) {
    let cluster = three_destination_cluster(name, command);
    cluster.start();
    cluster.pgbench_init(1);
    let mut switched = vec![cluster.switch_wal()];
    for _ in 0..rounds {
        cluster.pgbench(200, 2);
        switched.push(cluster.switch_wal());
    }
    cluster.wait_archived(switched.last().expect("a segment"), ARCHIVE_TIMEOUT);
    assert_eq!(
        cluster.archiver_stats().failed_count,
        0,
        "archive_command failed:\n{}",
        cluster.server_log()
    );
    cluster.stop();
    (cluster, switched)
}

/// `pitr-archive --data-dir DATA`, run as the PostgreSQL user (as `archive_command` is).
fn archive(cluster: &Cluster) -> Tool {
    Tool::new("pitr-archive")
        .as_pg_user()
        .arg("--data-dir")
        .arg(cluster.data_dir())
}

/// `pg_wal/NAME`, the form of `%p`.
fn wal_path(name: &str) -> String {
    format!("pg_wal/{name}")
}

/// A started cluster (archive_mode off, 16 MiB segments) with one completed segment; returns
/// the segment name.
pub(crate) fn cluster_with_segment(name: &str) -> (Cluster, String) {
    cluster_with_segment_opts(name, keep_wal())
}

/// [`cluster_with_segment`] with other options.
fn cluster_with_segment_opts(name: &str, opts: ClusterOpts) -> (Cluster, String) {
    let cluster = Cluster::init(name, opts);
    cluster.start();
    cluster.psql("CREATE TABLE filler AS SELECT generate_series(1, 1000) AS i");
    let segment = cluster.switch_wal();
    (cluster, segment)
}

/// Every regular file below `dir`, as paths relative to it, sorted.
fn files_below(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(path.strip_prefix(root).expect("below root").to_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// The WAL file name an archived file stands for (`X.zst` → `X`).
fn wal_name_of(archived: &str) -> &str {
    archived
        .strip_suffix(".zst")
        .or_else(|| archived.strip_suffix(".gz"))
        .unwrap_or(archived)
}

/// Asserts that every WAL file PostgreSQL marked `.done` is in each of `dirs`, byte-identical
/// to `pg_wal/NAME` once decompressed and with the same mtime (seconds), and that the archives
/// hold nothing else.
fn assert_archives_match_pg_wal(cluster: &Cluster, dirs: &[&ArchiveDir]) -> Vec<String> {
    let done = cluster.done_segments();
    assert!(!done.is_empty(), "no WAL file was archived");
    for name in &done {
        let bytes = cluster.wal_file(name);
        let mtime = FileStamp::of(&cluster.wal_dir().join(name)).mtime;
        for dir in dirs {
            dir.assert_holds(name, &bytes);
            let archived = dir.path_for(name);
            assert_eq!(
                FileStamp::of(&archived).mtime,
                mtime,
                "mtime of {} differs from pg_wal/{name}",
                archived.display()
            );
        }
    }
    for dir in dirs {
        let archived: BTreeSet<String> = dir
            .names()
            .iter()
            .map(|n| wal_name_of(n).to_owned())
            .collect();
        assert_eq!(
            archived,
            done.iter().cloned().collect(),
            "{} holds other files than those PostgreSQL marked done",
            dir.path().display()
        );
    }
    done
}

/// The `archive_command` of the three-destination setup of the runbook: two compressed local
/// copies and an uncompressed rsync daemon module, with a state dir.
fn three_destination_command(a: &Path, b: &Path, remote: &str, state: &Path) -> String {
    format!(
        "{bin} --dst-local zstd={a} --dst-local gzip={b} --dst-remote {remote} --state-dir \
         {state} %p",
        bin = pitr_bin("pitr-archive").display(),
        a = a.display(),
        b = b.display(),
        state = state.display(),
    )
}

#[test]
fn archive_command_delivers_every_wal_file_to_all_destinations() {
    let rsyncd = RsyncDaemon::start("wal_archive");
    let work = PgTempDir::new("three-dest");
    let (a, b, state) = (
        work.subdir("zstd"),
        work.subdir("gzip"),
        work.subdir("state"),
    );
    let command = three_destination_command(&a, &b, &rsyncd.url(), &state);
    let cluster = three_destination_cluster("three-dest", &command);
    cluster.start();
    cluster.pgbench_init(1);
    let mut switched = vec![cluster.switch_wal()];
    for _ in 0..2 {
        cluster.pgbench(200, 2);
        switched.push(cluster.switch_wal());
    }
    // A base backup leaves a `.backup` history file to archive too.
    cluster.psql_session(&[
        "SELECT pg_backup_start('pitr-tests', true)",
        "SELECT lsn FROM pg_backup_stop(false)",
    ]);
    switched.push(cluster.switch_wal());
    cluster.wait_archived(switched.last().expect("a segment"), ARCHIVE_TIMEOUT);
    assert!(
        cluster.server_log().contains(&format!(
            "LOG : Segment pg_wal/{} successfully sent to all destinations.",
            switched[0]
        )),
        "no success line for {} in the server log:\n{}",
        switched[0],
        cluster.server_log()
    );

    // A clean shutdown archives the last segment; after it the pg_wal files are stable.
    cluster.stop();
    assert_eq!(
        cluster.ready_segments(),
        Vec::<String>::new(),
        "WAL left unarchived at shutdown"
    );
    let dirs = [
        ArchiveDir::new(&a),
        ArchiveDir::new(&b),
        ArchiveDir::new(rsyncd.dir()),
    ];
    let done = assert_archives_match_pg_wal(&cluster, &dirs.iter().collect::<Vec<_>>());
    for dir in &dirs {
        assert!(
            dir.all_names().iter().any(|n| n == CLUSTER_MARKER),
            "no {CLUSTER_MARKER} marker in {}",
            dir.path().display()
        );
    }
    for name in &switched {
        assert!(done.contains(name), "{name} not marked done: {done:?}");
    }
    assert!(
        done.iter().any(|n| n.ends_with(".backup")),
        "no .backup file archived: {done:?}"
    );
    let leftovers: Vec<PathBuf> = files_below(&state)
        .into_iter()
        .filter(|p| {
            done.iter()
                .any(|d| p.to_string_lossy().contains(d.as_str()))
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "the state dir still holds entries for archived files: {leftovers:?}"
    );
}

#[test]
fn archive_command_delivers_to_two_rsync_daemons_in_parallel() {
    // The runbook's primary: one rsync daemon module per standby, different codecs, sent in
    // parallel (each remote destination stages in a scratch directory of its own).
    let standby1 = RsyncDaemon::start_labeled("standby1", "wal_archive");
    let standby2 = RsyncDaemon::start_labeled("standby2", "wal_archive");
    let work = PgTempDir::new("two-remote");
    let state = work.subdir("state");
    let command = format!(
        "{bin} --dst-remote zstd={one} --dst-remote {two} --state-dir {state} %p",
        bin = pitr_bin("pitr-archive").display(),
        one = standby1.url(),
        two = standby2.url(),
        state = state.display(),
    );
    let (cluster, switched) = archive_switched_segments("two-remote", &command, 3);
    assert_eq!(cluster.ready_segments(), Vec::<String>::new());
    let (one, two) = (
        ArchiveDir::new(standby1.dir()),
        ArchiveDir::new(standby2.dir()),
    );
    let done = assert_archives_match_pg_wal(&cluster, &[&one, &two]);
    for name in &switched {
        assert!(done.contains(name), "{name} not marked done: {done:?}");
        assert_eq!(one.file_for(name), Some(format!("{name}.zst")));
        assert_eq!(two.file_for(name), Some(name.clone()));
    }
}

#[test]
fn rsync_destinations_of_one_codec_share_a_staged_copy_and_no_other_does() {
    // Destinations of the same codec and level upload one staged copy; a destination with the
    // same extension at another level gets its own (its bytes differ, its promise is its level).
    let daemons = ["a", "b", "c"].map(|l| RsyncDaemon::start_labeled(l, "wal_archive"));
    let work = PgTempDir::new("shared-stage");
    let state = work.subdir("state");
    let command = format!(
        "{bin} --dst-remote zstd={a} --dst-remote zstd={b} --dst-remote zstd:9={c} --state-dir {state} %p",
        bin = pitr_bin("pitr-archive").display(),
        a = daemons[0].url(),
        b = daemons[1].url(),
        c = daemons[2].url(),
        state = state.display(),
    );
    let (cluster, switched) = archive_switched_segments("shared-stage", &command, 1);
    let dirs = daemons.each_ref().map(|d| ArchiveDir::new(d.dir()));
    let done = assert_archives_match_pg_wal(&cluster, &[&dirs[0], &dirs[1], &dirs[2]]);
    for name in &switched {
        assert!(done.contains(name), "{name} not marked done: {done:?}");
        let [a, b, c] = dirs
            .each_ref()
            .map(|d| std::fs::read(d.path_for(name)).expect("read"));
        assert_eq!(
            a, b,
            "{name}: the two zstd:2 destinations hold different bytes"
        );
        assert_ne!(a, c, "{name}: the zstd:9 destination holds the zstd:2 copy");
    }
}

#[test]
fn archive_command_retries_only_the_unreachable_destination() {
    let mut rsyncd = RsyncDaemon::start("wal_archive");
    let work = PgTempDir::new("retry");
    let (a, b, state) = (
        work.subdir("zstd"),
        work.subdir("gzip"),
        work.subdir("state"),
    );
    let command = three_destination_command(&a, &b, &rsyncd.url(), &state);
    let cluster = three_destination_cluster("retry", &command);
    cluster.start();
    let first = cluster.switch_wal();
    cluster.wait_archived(&first, ARCHIVE_TIMEOUT);
    let state_before = files_below(&state);

    rsyncd.stop();
    let failed_before = cluster.archiver_stats().failed_count;
    cluster.psql("CREATE TABLE filler AS SELECT generate_series(1, 10000) AS i");
    let stuck = cluster.switch_wal();
    wait_until(
        "archive_command to fail while the rsync daemon is down",
        ARCHIVE_TIMEOUT,
        || {
            let stats = cluster.archiver_stats();
            (stats.failed_count > failed_before && stats.last_failed_wal == stuck).then_some(())
        },
    );
    let (dir_a, dir_b, remote) = (
        ArchiveDir::new(&a),
        ArchiveDir::new(&b),
        ArchiveDir::new(rsyncd.dir()),
    );
    let stamp_a = dir_a.stamp(&format!("{stuck}.zst"));
    let stamp_b = dir_b.stamp(&format!("{stuck}.gz"));
    assert_eq!(
        remote.file_for(&stuck),
        None,
        "{stuck} reached the stopped daemon"
    );
    let state_during = files_below(&state);
    assert!(
        !state_during.is_empty() && state_during != state_before,
        "the state dir records nothing for {stuck}: {state_during:?}"
    );

    // PostgreSQL retries a failed archive_command three times, a second apart.
    wait_until(
        "a retry of the failed archive_command",
        ARCHIVE_TIMEOUT,
        || (cluster.archiver_stats().failed_count >= failed_before + 2).then_some(()),
    );
    wait_until(
        "a LOG line saying the state dir lists a destination as done",
        Duration::from_secs(10),
        || {
            cluster
                .server_log()
                .lines()
                .any(|l| l.contains("LOG : ") && l.contains("according to the state dir"))
                .then_some(())
        },
    );
    assert_eq!(
        dir_a.stamp(&format!("{stuck}.zst")),
        stamp_a,
        "local zstd copy rewritten on retry"
    );
    assert_eq!(
        dir_b.stamp(&format!("{stuck}.gz")),
        stamp_b,
        "local gzip copy rewritten on retry"
    );

    rsyncd.start_again();
    // After three failures the archiver sleeps until new WAL is ready (or a minute passes):
    // the next segment wakes it, and the backlog drains in order.
    let next = cluster.switch_wal();
    cluster.wait_archived(&next, ARCHIVE_TIMEOUT);
    assert_eq!(
        dir_a.stamp(&format!("{stuck}.zst")),
        stamp_a,
        "local zstd copy rewritten"
    );
    assert_eq!(
        dir_b.stamp(&format!("{stuck}.gz")),
        stamp_b,
        "local gzip copy rewritten"
    );

    cluster.stop();
    let done = assert_archives_match_pg_wal(&cluster, &[&dir_a, &dir_b, &remote]);
    assert!(done.contains(&stuck));
    assert_eq!(
        files_below(&state),
        state_before,
        "the state dir was not cleaned up after full success"
    );
}

#[test]
fn archive_accepts_duplicate_with_identical_content() {
    let (cluster, segment) = cluster_with_segment("dup-same");
    let dest = cluster.root().subdir("archive");
    let dir = ArchiveDir::new(&dest);
    let run = || {
        archive(&cluster)
            .arg("--dst-local")
            .arg(format!("zstd={}", dest.display()))
            .arg(wal_path(&segment))
            .run()
    };
    run().success().stderr_contains(&format!(
        "LOG : Segment pg_wal/{segment} successfully sent to all destinations."
    ));
    dir.assert_holds(&segment, &cluster.wal_file(&segment));
    assert_eq!(
        dir.stamp(&format!("{segment}.zst")).mtime,
        FileStamp::of(&cluster.wal_dir().join(&segment)).mtime,
        "archived mtime differs from the segment's"
    );
    let stamp = dir.stamp(&format!("{segment}.zst"));

    let again = run();
    again.success();
    again.stderr_line_with(&[
        "WARNING : ",
        &format!("{segment} is already archived in"),
        "with identical content",
    ]);
    assert_eq!(
        dir.stamp(&format!("{segment}.zst")),
        stamp,
        "archived file rewritten"
    );
    assert_eq!(dir.names(), vec![format!("{segment}.zst")]);
}

#[test]
fn archive_skips_the_xlogs_dir_of_a_backup_that_is_gone() {
    let (cluster, segment) = cluster_with_segment("xlogs-gone");
    let dest = cluster.root().subdir("archive");
    let xlogs = cluster.root().subdir("xlogs");
    let run = || {
        archive(&cluster)
            .arg("--dst-local")
            .arg(dest.display().to_string())
            .arg("--dst-backup")
            .arg(&xlogs)
            .arg(wal_path(&segment))
            .run()
    };
    // The marker of a pitr-backup that runs (here: this test process) gets the WAL.
    pg_user().write_file(
        &xlogs.join(".pitr-backup-xlogs"),
        format!("{}\n", std::process::id()).as_bytes(),
    );
    run().success();
    ArchiveDir::new(&xlogs).assert_holds(&segment, &cluster.wal_file(&segment));
    std::fs::remove_file(xlogs.join(&segment)).expect("removing the delivered copy");

    // The marker of one killed with -9 (a process that has exited) does not: nobody would
    // read it, and the directory would grow until the next backup.
    let mut gone = std::process::Command::new("true")
        .spawn()
        .expect("running true");
    let pid = gone.id();
    gone.wait().expect("waiting for true");
    pg_user().write_file(
        &xlogs.join(".pitr-backup-xlogs"),
        format!("{pid}\n").as_bytes(),
    );
    let result = run();
    result.success();
    result.stderr_line_with(&[
        "WARNING : ",
        &format!("not sending {segment} to --dst-backup {}", xlogs.display()),
        &format!("the pitr-backup that created it (pid {pid}) is gone"),
    ]);
    assert_eq!(
        ArchiveDir::new(&xlogs).names(),
        vec![".pitr-backup-xlogs".to_owned()],
        "WAL (or a temp file) written into the xlogs dir of a backup that is gone"
    );
    ArchiveDir::new(&dest).assert_holds(&segment, &cluster.wal_file(&segment));
}

#[test]
fn archive_compares_content_not_compressed_bytes() {
    // 1 MiB segments: zstd level 19 is slow, and this test is about content, not size.
    let (cluster, segment) = cluster_with_segment_opts("dup-level", keep_wal().wal_segsize_mb(1));
    let dest = cluster.root().subdir("archive");
    let dir = ArchiveDir::new(&dest);
    archive(&cluster)
        .arg("--dst-local")
        .arg(format!("zstd:1={}", dest.display()))
        .arg(wal_path(&segment))
        .succeeds();
    let stored = dir.raw(&format!("{segment}.zst"));
    let mut level19 = Vec::new();
    zstd::stream::copy_encode(cluster.wal_file(&segment).as_slice(), &mut level19, 19)
        .expect("zstd level 19");
    assert_ne!(
        stored, level19,
        "zstd levels 1 and 19 gave the same bytes: the test proves nothing"
    );
    // Level 19 gives other compressed bytes for the same content: still a duplicate.
    let again = archive(&cluster)
        .arg("--dst-local")
        .arg(format!("zstd:19={}", dest.display()))
        .arg(wal_path(&segment))
        .run();
    again.success();
    again.stderr_line_with(&[
        "WARNING : ",
        &format!("{segment} is already archived in"),
        "with identical content",
    ]);
    assert_eq!(dir.raw(&format!("{segment}.zst")), stored);
}

/// Asserts the exact "different content" error for `wal` in destination `dest` (as given on the
/// command line), followed by a HINT line.
fn assert_different_content_error(result: &pitr_tests::CmdResult, wal: &str, dest: &str) {
    result.failure_with_status(2);
    let line = result.stderr_line_with(&[
        "ERROR : ",
        &format!(
            "{wal} is already archived in {dest} with different content; the archived file was \
             left untouched"
        ),
    ]);
    let next = result
        .stderr_lines()
        .get(line + 1)
        .copied()
        .unwrap_or_default();
    assert!(
        next.contains(" : HINT : "),
        "expected a HINT line after the error\n{result}"
    );
}

/// Overwrites a few bytes in the middle of `path`, keeping its size and its first page (whose
/// header identifies the segment).
fn corrupt_middle(path: &Path) {
    let mut bytes = std::fs::read(path).expect("reading the segment");
    let at = bytes.len() / 2;
    for b in &mut bytes[at..at + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(path, bytes).expect("rewriting the segment");
}

#[test]
fn archive_refuses_duplicate_with_different_content() {
    let (cluster, segment) = cluster_with_segment("dup-diff");
    let dest = cluster.root().subdir("archive");
    let dir = ArchiveDir::new(&dest);
    archive(&cluster)
        .arg("--dst-local")
        .arg(&dest)
        .arg(wal_path(&segment))
        .succeeds();
    let stored = dir.raw(&segment);
    let stamp = dir.stamp(&segment);

    // The server no longer needs the completed segment; stop it so nothing else touches it.
    cluster.stop();
    corrupt_middle(&cluster.wal_dir().join(&segment));
    let result = archive(&cluster)
        .arg("--dst-local")
        .arg(&dest)
        .arg(wal_path(&segment))
        .run();
    assert_different_content_error(&result, &segment, &dest.display().to_string());
    assert_eq!(dir.raw(&segment), stored, "archived bytes changed");
    assert_eq!(dir.stamp(&segment), stamp, "archived file replaced");
    assert_eq!(dir.names(), vec![segment]);
}

#[test]
fn archive_refuses_duplicate_with_different_content_when_compressed() {
    let (cluster, segment) = cluster_with_segment("dup-diff-zstd");
    let dest = cluster.root().subdir("archive");
    let dir = ArchiveDir::new(&dest);
    let target = format!("zstd={}", dest.display());
    archive(&cluster)
        .arg("--dst-local")
        .arg(&target)
        .arg(wal_path(&segment))
        .succeeds();
    let name = format!("{segment}.zst");
    let stored = dir.raw(&name);

    cluster.stop();
    corrupt_middle(&cluster.wal_dir().join(&segment));
    let result = archive(&cluster)
        .arg("--dst-local")
        .arg(&target)
        .arg(wal_path(&segment))
        .run();
    result.failure_with_status(2);
    result.stderr_line_with(&[
        "ERROR : ",
        &format!("{segment} is already archived in"),
        "with different content; the archived file was left untouched",
    ]);
    assert_eq!(dir.raw(&name), stored, "archived bytes changed");
    assert_eq!(dir.names(), vec![name]);
}

#[test]
fn r0001_history_file_is_never_overwritten() {
    let cluster = Cluster::init("history", ClusterOpts::new());
    let dest = cluster.root().subdir("archive");
    let dir = ArchiveDir::new(&dest);
    let history = "00000002.history";
    let original = b"1\t0/3000000\tno recovery target specified\n";
    let path = cluster.wal_dir().join(history);
    pg_user().write_file(&path, original);
    let run = || {
        archive(&cluster)
            .arg("--dst-local")
            .arg(&dest)
            .arg(wal_path(history))
            .run()
    };
    run().success();
    dir.assert_holds(history, original);

    pg_user().write_file(&path, b"1\t0/4000000\tbefore 2026-01-01 00:00:00+00\n");
    assert_different_content_error(&run(), history, &dest.display().to_string());
    assert_eq!(dir.raw(history), original, "history file overwritten");

    pg_user().write_file(&path, original);
    run().success().stderr_contains("with identical content");
    assert_eq!(dir.names(), vec![history.to_owned()]);
}

/// The state files in pitr-archive's `--state-dir` that record some destination as holding
/// their file, read with pitr-archive's own parser (`DeliveryState`), sorted. A call that
/// delivered nothing may keep a state for its retry, but one that names no destination.
pub(crate) fn archive_states_naming_a_destination(dir: &Path) -> Vec<String> {
    pitr_tests::archive_state_names(dir)
        .into_iter()
        .filter(|name| {
            name.strip_suffix(".state").is_some_and(|wal| {
                let state = pitr_common::state::DeliveryState::load(dir, wal).unwrap_or_else(|e| {
                    panic!("reading the state of {wal} in {}: {e}", dir.display())
                });
                !state.is_empty()
            })
        })
        .collect()
}

/// A destination that holds another database system's WAL refuses a segment, in every location
/// kind that has a cluster marker: a local directory, and an rsync daemon taking the call's
/// batch (`--state-dir`, archive-ahead on by default for rsync), whose marker comes with the run
/// that looks for the batch's names. Nothing is written there, and no record is made. (Object
/// stores: `s3_archive_refuses_segment_of_another_database_system`.)
#[test]
fn archive_refuses_segment_of_another_database_system() {
    let (first, first_segment) = cluster_with_segment("sysid-first");
    let second = Cluster::init("sysid-second", keep_wal());
    second.start();
    // Two switches, so that the second cluster's segment has another name than the first's
    // and the refusal can only come from the system identifier.
    second.switch_wal();
    let second_segment = second.switch_wal();
    assert_ne!(first_segment, second_segment);
    let (first_id, second_id) = (first.system_identifier(), second.system_identifier());
    assert_ne!(
        first_id, second_id,
        "initdb gave two clusters the same system identifier"
    );

    let rsyncd = RsyncDaemon::start("wal_archive");
    let local = first.root().subdir("archive");
    let kinds: [(&str, Vec<String>, ArchiveDir); 2] = [
        (
            "local directory",
            vec!["--dst-local".into(), local.display().to_string()],
            ArchiveDir::new(&local),
        ),
        (
            "rsync daemon",
            vec!["--dst-remote".into(), format!("zstd={}", rsyncd.url())],
            ArchiveDir::new(rsyncd.dir()),
        ),
    ];
    for (i, (kind, dest, dir)) in kinds.into_iter().enumerate() {
        let states = [&first, &second].map(|c| c.root().subdir(&format!("state-{i}")));
        archive(&first)
            .args(&dest)
            .arg("--state-dir")
            .arg(&states[0])
            .arg(wal_path(&first_segment))
            .succeeds();
        let before = dir.all_names();
        assert!(
            before.iter().any(|n| n == CLUSTER_MARKER),
            "{kind}: no marker"
        );

        let result = archive(&second)
            .args(&dest)
            .arg("--state-dir")
            .arg(&states[1])
            .arg(wal_path(&second_segment))
            .run();
        result.failure_with_status(2);
        result.stderr_line_with(&[&format!("is from database system {second_id} but")]);
        result.stderr_line_with(&[&format!("holds WAL of database system {first_id}")]);
        assert_eq!(
            dir.all_names(),
            before,
            "{kind}: something was written for the foreign segment"
        );
        assert_eq!(
            archive_states_naming_a_destination(&states[1]),
            Vec::<String>::new(),
            "{kind}: the refused call recorded a destination as holding a file"
        );
    }
}

#[test]
fn archive_killed_mid_write_leaves_no_partial_file() {
    let (cluster, segment) = cluster_with_segment("kill9");
    let dest = cluster.root().subdir("archive");
    let dir = ArchiveDir::new(&dest);
    let tool = archive(&cluster)
        .arg("--dst-local")
        .arg(&dest)
        .arg(wal_path(&segment));
    let mut running = tool.clone().env("PITR_TEST_WRITE_DELAY_MS", "200").spawn();
    let temp_prefix = format!(".{segment}.pitr-tmp.");
    let seen = poll_until(Duration::from_secs(30), || {
        if dir.all_names().iter().any(|n| n.starts_with(&temp_prefix)) {
            return Some(true);
        }
        running.has_exited().then_some(false)
    });
    match seen {
        Some(true) => {}
        Some(false) => panic!(
            "pitr-archive exited before its temp file {temp_prefix}PID appeared (does it honour \
             PITR_TEST_WRITE_DELAY_MS?)\n{}",
            running.wait()
        ),
        None => panic!(
            "no temp file {temp_prefix}PID in {} within 30 s: {:?}",
            dest.display(),
            dir.all_names()
        ),
    }
    running.kill();
    let killed = running.wait();
    assert_eq!(
        killed.signal(),
        Some(9),
        "pitr-archive was not killed mid-write\n{killed}"
    );
    assert!(
        !dest.join(&segment).exists(),
        "a final {segment} exists after kill -9 mid-write: {:?}",
        dir.all_names()
    );
    let leftover = killed_temp(&dir, &temp_prefix);

    // pitr-cleanup sweeps the temp file of a writer that is gone, once it is an hour old (the
    // test hook makes "an hour" now); a younger one, or a live writer's, stays.
    let sweep = || {
        Tool::new("pitr-cleanup")
            .as_pg_user()
            .arg("--archive")
            .arg(&dest)
            .arg("000000010000000000000001")
    };
    sweep().succeeds();
    assert!(dir.all_names().contains(&leftover), "{:?}", dir.all_names());
    let swept = sweep().env("PITR_TEST_STALE_TEMP_SECS", "0").succeeds();
    swept.stderr_line_with(&["LOG : removed ", &leftover, "left by a writer that is gone"]);
    assert!(
        !dir.all_names().contains(&leftover),
        "{:?}",
        dir.all_names()
    );

    tool.run().success();
    dir.assert_holds(&segment, &cluster.wal_file(&segment));
}

/// The one temp file named `prefix*` in `dir`.
fn killed_temp(dir: &ArchiveDir, prefix: &str) -> String {
    let temps: Vec<String> = dir
        .all_names()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    assert_eq!(temps.len(), 1, "{temps:?}");
    temps[0].clone()
}

#[test]
fn archive_pipe_destination_gets_name_and_compressed_stream() {
    let (cluster, segment) = cluster_with_segment("pipe");
    let received = cluster.root().subdir("received");
    let script = cluster.root().path().join("receive.sh");
    pg_user().write_file(
        &script,
        format!("#!/bin/sh\nexec cat > '{}'/\"$1\"\n", received.display()).as_bytes(),
    );
    set_mode(&script, 0o755);
    archive(&cluster)
        .arg("--dst-pipe")
        .arg(format!("zstd={}", script.display()))
        .arg(wal_path(&segment))
        .succeeds();
    let dir = ArchiveDir::new(&received);
    assert_eq!(dir.names(), vec![format!("{segment}.zst")]);
    dir.assert_holds(&segment, &cluster.wal_file(&segment));
}

/// Without --state-dir a retry sends to every destination again, so a pipe (which cannot
/// compare) and --dst-backup: the backup collection goes first and alone, and when it fails
/// the pipe never had the file; the retry sends it there once. (Both used to go at once, and
/// the retry piped the segment a second time.)
#[test]
fn archive_backup_collection_failing_first_keeps_a_pipe_from_getting_the_file_twice() {
    let (cluster, segment) = cluster_with_segment("pipe-backup");
    let received = cluster.root().subdir("received");
    let script = cluster.root().path().join("receive.sh");
    pg_user().write_file(
        &script,
        format!(
            "#!/bin/sh\necho \"$1\" >> '{0}/calls'\nexec cat > '{0}'/\"$1\"\n",
            received.display()
        )
        .as_bytes(),
    );
    set_mode(&script, 0o755);
    // pitr-backup's collection directory, which the PostgreSQL user cannot write to.
    let xlogs = cluster.root().path().join("xlogs");
    std::fs::create_dir(&xlogs).unwrap();
    set_mode(&xlogs, if is_root() { 0o755 } else { 0o555 });
    let run = || {
        archive(&cluster)
            .arg("--dst-pipe")
            .arg(format!("zstd={}", script.display()))
            .arg("--dst-backup")
            .arg(&xlogs)
            .arg(wal_path(&segment))
            .run()
    };
    let r = run();
    r.failure_with_status(2);
    r.stderr_line_with(&[" : ERROR : cannot send ", "(backup collection)"]);
    assert!(
        !received.join("calls").exists(),
        "the pipe ran although the call failed\n{r}"
    );
    // Writable (as pitr-backup makes it): the retry sends to both, to the pipe once.
    pg_user().chown(&xlogs);
    run().success();
    assert_eq!(
        std::fs::read_to_string(received.join("calls")).unwrap(),
        format!("{segment}.zst\n")
    );
    ArchiveDir::new(&xlogs).assert_holds(&segment, &cluster.wal_file(&segment));
}

#[test]
fn archive_exits_4_while_another_instance_holds_the_pid_file() {
    let cluster = Cluster::init("pidfile", ClusterOpts::new());
    let dest = cluster.root().subdir("archive");
    let pid_file = cluster.root().subdir("run").join("pitr-archive.pid");
    let segment = "000000010000000000000001";
    let mut holder = pg_user()
        .command("sleep")
        .arg("60")
        .spawn()
        .expect("spawning sleep");
    pg_user().write_file(&pid_file, format!("{}\n", holder.id()).as_bytes());
    let run = || {
        archive(&cluster)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--dst-local")
            .arg(&dest)
            .arg(wal_path(segment))
            .run()
    };
    let result = run();
    let _ = holder.kill();
    let _ = holder.wait();
    result.failure_with_status(4);
    ArchiveDir::new(&dest).assert_empty();

    // Its holder is gone: the stale pid file is replaced and the run goes ahead.
    run().success();
    ArchiveDir::new(&dest).assert_holds(segment, &cluster.wal_file(segment));
}

/// An initdb'ed data dir (server not started; its first segment is a real WAL file) and an
/// empty destination directory owned by the PostgreSQL user.
fn scratch(name: &str) -> (Cluster, PathBuf) {
    let cluster = Cluster::init(name, ClusterOpts::new());
    let dest = cluster.root().subdir("archive");
    (cluster, dest)
}

/// The first segment initdb wrote.
const FIRST_SEGMENT: &str = "000000010000000000000001";

#[test]
fn archive_without_wal_file_is_a_usage_error() {
    let (cluster, dest) = scratch("no-wal");
    archive(&cluster)
        .arg("--dst-local")
        .arg(&dest)
        .run()
        .failure_with_status(3)
        .stderr_contains("FATAL : no WAL file given");
    ArchiveDir::new(&dest).assert_empty();
}

#[test]
fn archive_with_two_wal_files_is_a_usage_error() {
    let (cluster, dest) = scratch("two-wal");
    archive(&cluster)
        .arg("--dst-local")
        .arg(&dest)
        .arg(wal_path(FIRST_SEGMENT))
        .arg(wal_path("000000010000000000000002"))
        .run()
        .failure_with_status(3)
        .stderr_contains("FATAL : more than one WAL file given");
    ArchiveDir::new(&dest).assert_empty();
}

#[test]
fn archive_of_missing_wal_file_fails_naming_it() {
    let (cluster, dest) = scratch("missing");
    let result = archive(&cluster)
        .arg("--dst-local")
        .arg(&dest)
        .arg(wal_path(MISSING_SEGMENT))
        .run();
    result.failure_with_status(2);
    result.stderr_line_with(&[&wal_path(MISSING_SEGMENT), "No such file or directory"]);
    ArchiveDir::new(&dest).assert_empty();
}

#[test]
fn archive_of_non_wal_name_is_a_usage_error() {
    let (cluster, dest) = scratch("not-wal");
    pg_user().write_file(&cluster.wal_dir().join("foo"), b"not WAL");
    archive(&cluster)
        .arg("--dst-local")
        .arg(&dest)
        .arg("pg_wal/foo")
        .run()
        .failure_with_status(3)
        .stderr_contains("\"foo\" is not a WAL file name");
    ArchiveDir::new(&dest).assert_empty();
}

#[test]
fn archive_with_unknown_codec_is_a_usage_error() {
    let (cluster, dest) = scratch("codec");
    archive(&cluster)
        .arg("--dst-local")
        .arg(format!("lz5={}", dest.display()))
        .arg(wal_path(FIRST_SEGMENT))
        .run()
        .failure_with_status(3)
        .stderr_contains("unknown codec \"lz5\"");
    ArchiveDir::new(&dest).assert_empty();
}

#[test]
fn archive_with_two_destinations_requires_state_dir() {
    let (cluster, dest) = scratch("no-state");
    let other = cluster.root().subdir("other");
    archive(&cluster)
        .arg("--dst-local")
        .arg(&dest)
        .arg("--dst-local")
        .arg(&other)
        .arg(wal_path(FIRST_SEGMENT))
        .run()
        .failure_with_status(3)
        .stderr_contains("more than one destination but no --state-dir");
    ArchiveDir::new(&dest).assert_empty();
    ArchiveDir::new(&other).assert_empty();
}

/// `--archive-ahead` asked for without the state dir its records live in is a usage error,
/// not archive-ahead silently off; `--archive-ahead 0` needs none.
#[test]
fn archive_ahead_without_state_dir_is_a_usage_error() {
    let (cluster, dest) = scratch("ahead-no-state");
    for ahead in ["16", "64MB"] {
        archive(&cluster)
            .arg("--dst-local")
            .arg(format!("zstd={}", dest.display()))
            .args(["--archive-ahead", ahead])
            .arg(wal_path(FIRST_SEGMENT))
            .run()
            .failure_with_status(3)
            .stderr_contains(&format!(
                " : FATAL : --archive-ahead {ahead} but no --state-dir\n"
            ))
            .stderr_contains(
                " : HINT : give --state-dir DIR: each segment delivered ahead is recorded there",
            );
        ArchiveDir::new(&dest).assert_empty();
    }
    archive(&cluster)
        .arg("--dst-local")
        .arg(format!("zstd={}", dest.display()))
        .args(["--archive-ahead", "0"])
        .arg(wal_path(FIRST_SEGMENT))
        .run()
        .success();
    assert_eq!(
        ArchiveDir::new(&dest).names(),
        [format!("{FIRST_SEGMENT}.zst")]
    );
}

#[test]
fn archive_to_unwritable_destination_fails() {
    let (cluster, _) = scratch("unwritable");
    // Root may write anywhere, so the tool runs as the PostgreSQL user against a directory it
    // can read but not write: root-owned 0755, or (not root) its own 0555.
    let parent = tempfile::Builder::new()
        .prefix("pitr-test-unwritable-")
        .tempdir()
        .expect("temp dir");
    set_mode(parent.path(), 0o755);
    let dest = parent.path().join("archive");
    std::fs::create_dir(&dest).expect("mkdir");
    set_mode(&dest, if is_root() { 0o755 } else { 0o555 });
    let archive_status = ArchiveDir::new(cluster.wal_dir().join("archive_status"));
    let status_before = archive_status.all_names();

    let result = archive(&cluster)
        .arg("--dst-local")
        .arg(&dest)
        .arg(wal_path(FIRST_SEGMENT))
        .run();
    set_mode(&dest, 0o755);
    result.failure_with_status(2);
    let at = result.stderr_line_with(&[
        " : ERROR : cannot send ",
        &dest.display().to_string(),
        "Permission denied",
    ]);
    // The destination's ERROR is followed by what to do about it.
    assert!(
        result.stderr_lines()[at + 1].ends_with(
            " : HINT : give the user running this program (PostgreSQL's user for \
             archive_command and restore_command) access to the path named above"
        ),
        "{result}"
    );
    ArchiveDir::new(&dest).assert_empty();
    assert_eq!(
        archive_status.all_names(),
        status_before,
        "pitr-archive touched archive_status"
    );
}

#[test]
fn archive_refuses_wal_file_of_wrong_size() {
    let (cluster, dest) = scratch("short");
    let name = "000000010000000000000009";
    // The start of a real segment with its page address moved to segment 9: only the size
    // tells it from a genuine segment 9.
    let mut head = cluster.wal_file(FIRST_SEGMENT)[..1000].to_vec();
    let pageaddr: u64 = 9 * 16 * 1024 * 1024;
    head[8..16].copy_from_slice(&pageaddr.to_le_bytes());
    pg_user().write_file(&cluster.wal_dir().join(name), &head);
    let result = archive(&cluster)
        .arg("--dst-local")
        .arg(&dest)
        .arg(wal_path(name))
        .run();
    result.failure_with_status(2);
    result.stderr_line_with(&[name, "size"]);
    ArchiveDir::new(&dest).assert_empty();
}

/// Defect 2 of issue 12: after `SEG.zst` was archived, a different `SEG` was refused as
/// `zstd=` but accepted as `gzip=` or `none=` in the same directory, and a restore from
/// `gzip=` then handed over the conflicting copy. The duplicate rule is per WAL name across
/// every stored form, in local directories and rsync destinations alike; the same content in
/// another form is no conflict.
#[test]
fn r12_2_different_content_in_another_stored_form_is_refused() {
    let (cluster, segment) = cluster_with_segment("r12-2");
    let local = cluster.root().subdir("archive");
    let rsyncd = RsyncDaemon::start("wal_archive");
    let places = [local.display().to_string(), rsyncd.url()];
    for (first, place) in [("zstd", &places[0]), ("none", &places[1])] {
        archive(&cluster)
            .arg(if place.starts_with("rsync:") {
                "--dst-remote"
            } else {
                "--dst-local"
            })
            .arg(format!("{first}={place}"))
            .arg(wal_path(&segment))
            .succeeds();
    }
    let local_names = ArchiveDir::new(&local).names();
    let remote_names = ArchiveDir::new(rsyncd.dir()).names();
    assert_eq!(local_names, vec![format!("{segment}.zst")]);
    assert_eq!(remote_names, vec![segment.clone()]);
    let local_before = ArchiveDir::new(&local).raw(&local_names[0]);
    let remote_before = ArchiveDir::new(rsyncd.dir()).raw(&remote_names[0]);

    // The same content in another form is the same WAL file: accepted, nothing more written
    // where the name is already held.
    for codec in ["gzip", "none"] {
        archive(&cluster)
            .arg("--dst-local")
            .arg(format!("{codec}={}", local.display()))
            .arg(wal_path(&segment))
            .succeeds();
    }
    assert_eq!(ArchiveDir::new(&local).names(), local_names);

    cluster.stop();
    corrupt_middle(&cluster.wal_dir().join(&segment));
    for (codec, place, existing) in [
        ("gzip", &places[0], format!("{segment}.zst")),
        ("none", &places[0], format!("{segment}.zst")),
        ("zstd", &places[1], segment.clone()),
        ("gzip", &places[1], segment.clone()),
    ] {
        let remote = place.starts_with("rsync:");
        let result = archive(&cluster)
            .arg(if remote {
                "--dst-remote"
            } else {
                "--dst-local"
            })
            .arg(format!("{codec}={place}"))
            .arg(wal_path(&segment))
            .run();
        result.failure_with_status(2);
        let line = result.stderr_line_with(&[
            "ERROR : ",
            &format!("{segment} is already archived in "),
            place.as_str(),
            &format!(
                "with different content (as {existing}); the archived file was left untouched"
            ),
        ]);
        assert!(
            result.stderr_lines()[line + 1].contains(" : HINT : "),
            "no HINT\n{result}"
        );
    }
    assert_eq!(ArchiveDir::new(&local).names(), local_names);
    assert_eq!(ArchiveDir::new(rsyncd.dir()).names(), remote_names);
    assert_eq!(ArchiveDir::new(&local).raw(&local_names[0]), local_before);
    assert_eq!(
        ArchiveDir::new(rsyncd.dir()).raw(&remote_names[0]),
        remote_before
    );
}

/// Defect 6 of issue 12: pitr-archive failed (an ERROR for monitoring) when pitr-backup
/// removed its `--dst-backup` directory while the segment was being written into it. A
/// vanished collection directory is simply not used: exit 0, no ERROR, the archive has it.
#[test]
fn r12_6_dst_backup_removed_mid_delivery_is_not_an_error() {
    let (cluster, segment) = cluster_with_segment("r12-6");
    let dest = cluster.root().subdir("archive");
    let xlogs = cluster.root().subdir("xlogs");
    pg_user().write_file(
        &xlogs.join(".pitr-backup-xlogs"),
        format!("{}\n", std::process::id()).as_bytes(),
    );
    let running = archive(&cluster)
        .env("PITR_TEST_WRITE_DELAY_MS", "300")
        .arg("--dst-local")
        .arg(&dest)
        .arg("--dst-backup")
        .arg(&xlogs)
        .arg(wal_path(&segment))
        .spawn();
    let temp_prefix = format!(".{segment}.pitr-tmp.");
    wait_until(
        "a temp file in --dst-backup",
        Duration::from_secs(60),
        || {
            pitr_tests::dir_names(&xlogs)
                .iter()
                .any(|n| n.starts_with(&temp_prefix))
                .then_some(())
        },
    );
    // What pitr-backup does when its WAL collection is over.
    std::fs::remove_dir_all(&xlogs).expect("removing --dst-backup");
    let result = running.wait();
    result.success().stderr_lacks("ERROR");
    result.stderr_line_with(&[
        "LOG : ",
        "was removed by its pitr-backup while",
        "not needed any more",
    ]);
    assert!(!xlogs.exists(), "--dst-backup was made again");
    ArchiveDir::new(&dest).assert_holds(&segment, &cluster.wal_file(&segment));
}

/// The line after line `line` of `result`'s stderr, which must be a HINT.
fn assert_hint_after(result: &pitr_tests::CmdResult, line: usize) {
    let next = result
        .stderr_lines()
        .get(line + 1)
        .copied()
        .unwrap_or_default();
    assert!(
        next.contains(" : HINT : "),
        "no HINT line after the error\n{result}"
    );
}

/// A `--log` file that cannot be opened (its directory full, read-only, or here a file) is a
/// WARNING, and the lines go to stderr: the call still archives (exit 0), and pitr-restore
/// still restores. Both failed the call before (2 and 126), which stopped archiving, and a
/// standby's recovery, until the log directory was fixed.
#[test]
fn a_log_file_that_cannot_be_opened_is_a_warning_and_the_call_goes_on() {
    let (cluster, segment) = cluster_with_segment("log-unopenable");
    let dest = cluster.root().subdir("archive");
    let blocker = cluster.root().path().join("not-a-dir");
    pg_user().write_file(&blocker, b"");
    let log = blocker.join("pitr-^Y-^m-^d.log");
    let log_arg = log.display().to_string();
    let said = |r: &pitr_tests::CmdResult| {
        r.stderr_line_with(&[
            " : WARNING : cannot create log directory ",
            "; logging to stderr instead",
        ]);
    };
    let r = Tool::new("pitr-archive")
        .as_pg_user()
        .current_dir(cluster.data_dir())
        .args(["--log", &log_arg, "--dst-local"])
        .arg(format!("zstd={}", dest.display()))
        .arg(wal_path(&segment))
        .run();
    r.success();
    said(&r);
    r.stderr_contains(&format!("Segment {} successfully sent", wal_path(&segment)));
    assert!(dest.join(format!("{segment}.zst")).is_file());

    let r = Tool::new("pitr-restore")
        .as_pg_user()
        .current_dir(cluster.data_dir())
        .args(["--log", &log_arg, "--source"])
        .arg(format!("zstd={}", dest.display()))
        .args([segment.as_str(), "pg_wal/RECOVERYXLOG"])
        .run();
    r.success();
    said(&r);
    assert_eq!(
        std::fs::read(cluster.data_path("pg_wal/RECOVERYXLOG")).unwrap(),
        cluster.wal_file(&segment)
    );
}

/// Defect 7 of issue 12 (pitr-archive's part): errors without a HINT, and two wrong statuses.
/// A missing or unreadable WAL file, a missing data dir, a garbage or short pg_control and a
/// busy pid file each get one ERROR line naming the path and a HINT; a `--pid-file` in a
/// missing directory is an ordinary error (2), not "busy" (4), and `--log ""` a usage error
/// (3), not 2.
#[test]
fn r12_7_archive_errors_name_the_path_and_give_a_hint() {
    let (cluster, segment) = cluster_with_segment("r12-7");
    let dest = cluster.root().subdir("archive");
    let work = cluster.root().subdir("r12-7-work");
    let run = |data_dir: &Path, extra: &[&str], wal: &str| {
        Tool::new("pitr-archive")
            .as_pg_user()
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .arg("--dst-local")
            .arg(&dest)
            .arg(wal)
            .run()
    };
    let data = cluster.data_dir().to_path_buf();
    let missing_wal = "pg_wal/0000000100000000000000FE";
    let r = run(&data, &[], missing_wal);
    r.failure_with_status(2);
    let l = r.stderr_line_with(&["ERROR : ", "0000000100000000000000FE"]);
    assert_hint_after(&r, l);

    let unreadable = work.join(&segment);
    std::fs::write(&unreadable, cluster.wal_file(&segment)).unwrap();
    // Written by the test's user, mode 000: the PostgreSQL user cannot read it.
    set_mode(&unreadable, 0o000);
    let r = run(&data, &[], &unreadable.display().to_string());
    r.failure_with_status(2);
    let l = r.stderr_line_with(&["ERROR : ", &unreadable.display().to_string()]);
    assert_hint_after(&r, l);

    let nowhere = work.join("no-such-data-dir");
    let r = run(&nowhere, &[], &wal_path(&segment));
    assert!(matches!(r.code(), Some(2 | 3)), "{r}");
    let l = r.stderr_line_with(&["ERROR : ", &nowhere.display().to_string()]);
    assert_hint_after(&r, l);

    for (what, content) in [
        ("garbage", vec![0x41u8; 8192]),
        ("short", b"pg_control".to_vec()),
    ] {
        let fake = work.join(format!("{what}-data"));
        pg_user().create_dir(&fake, 0o700);
        pg_user().create_dir(&fake.join("global"), 0o700);
        pg_user().create_dir(&fake.join("pg_wal"), 0o700);
        pg_user().write_file(&fake.join("PG_VERSION"), b"15\n");
        pg_user().write_file(&fake.join("global/pg_control"), &content);
        pg_user().write_file(
            &fake.join("pg_wal").join(&segment),
            &cluster.wal_file(&segment),
        );
        let r = run(&fake, &[], &wal_path(&segment));
        r.failure_with_status(2);
        let l = r.stderr_line_with(&["ERROR : ", "pg_control"]);
        assert_hint_after(&r, l);
    }

    let pid_file = work.join("archive.pid");
    pg_user().write_file(&pid_file, format!("{}\n", std::process::id()).as_bytes());
    let r = run(
        &data,
        &["--pid-file", &pid_file.display().to_string()],
        &wal_path(&segment),
    );
    r.failure_with_status(4);
    let l = r.stderr_line_with(&["ERROR : ", &pid_file.display().to_string()]);
    assert_hint_after(&r, l);

    let lost_pid = work.join("no-such-dir/archive.pid");
    let r = run(
        &data,
        &["--pid-file", &lost_pid.display().to_string()],
        &wal_path(&segment),
    );
    // Not "another instance runs" (4): an ordinary error with a HINT, as any unwritable file.
    r.failure_with_status(2);
    let l = r.stderr_line_with(&["ERROR : ", &lost_pid.display().to_string()]);
    assert_hint_after(&r, l);

    let r = run(&data, &["--log", ""], &wal_path(&segment));
    r.failure_with_status(3);
    r.stderr_contains("--log");
    assert!(
        ArchiveDir::new(&dest).names().is_empty(),
        "something archived"
    );
}

/// Found by `cargo xtask faults` (archive-kill): an rsync daemon reports every name of a
/// `--files-from` list as vanished when the source is a directory below the module, so every
/// call to `rsync://host/module/sub` failed once the cluster marker existed there. Two
/// segments and a repeated call into a subdirectory of a module.
#[test]
fn faults_rsync_daemon_subdirectory_takes_every_call() {
    let (cluster, first) = cluster_with_segment("rsync-sub");
    cluster.psql("INSERT INTO filler SELECT generate_series(1, 1000)");
    let second = cluster.switch_wal();
    let rsyncd = RsyncDaemon::start("wal_archive");
    let sub = rsyncd.dir().join("db1");
    pg_user().create_dir(&sub, 0o700);
    let target = format!("gzip={}/db1", rsyncd.url());
    for segment in [&first, &second, &second] {
        archive(&cluster)
            .arg("--dst-remote")
            .arg(&target)
            .arg(wal_path(segment))
            .succeeds();
    }
    let dir = ArchiveDir::new(&sub);
    dir.assert_holds(&first, &cluster.wal_file(&first));
    dir.assert_holds(&second, &cluster.wal_file(&second));
}

/// An absolute `%p` inside a data directory's `pg_wal` names the data directory: pitr-archive
/// run by hand from elsewhere, without `--data-dir`, checks the segment against that
/// cluster's pg_control (the bench archives by hand this way).
#[test]
fn archive_finds_the_data_directory_of_an_absolute_wal_path() {
    let (cluster, segment) = cluster_with_segment("abs-wal");
    let dest = cluster.root().subdir("archive");
    let absolute = cluster.wal_dir().join(&segment);
    Tool::new("pitr-archive")
        .as_pg_user()
        .current_dir("/")
        .arg("--dst-local")
        .arg(format!("zstd={}", dest.display()))
        .arg(&absolute)
        .succeeds();
    ArchiveDir::new(&dest).assert_holds(&segment, &cluster.wal_file(&segment));
}

/// A cluster whose archiver always fails (`archive_command = false`), so that every segment
/// stays `.ready`, with `n` segments completed; returns them, oldest first.
pub(crate) fn ready_backlog(name: &str, n: usize) -> (Cluster, Vec<String>) {
    let cluster = Cluster::init(
        name,
        keep_wal()
            .wal_segsize_mb(1)
            .set("archive_mode", "on")
            .set("archive_command", "false"),
    );
    cluster.start();
    cluster.psql("CREATE TABLE filler (i int)");
    let segments: Vec<String> = (0..n)
        .map(|_| {
            cluster.psql("INSERT INTO filler SELECT generate_series(1, 1000)");
            cluster.switch_wal()
        })
        .collect();
    let ready = cluster.ready_segments();
    for s in &segments {
        assert!(ready.contains(s), "{s} is not ready: {ready:?}");
    }
    (cluster, segments)
}

/// Issue 14, archive-ahead: the call for segment 1, with segments ready after it, hands itself
/// and them to a worker it starts, which delivers them in batches of `--archive-ahead` to the
/// rsync destination and records each, stopping at the first segment not ready; the call
/// answers from the worker's record of its own segment. A record whose content line differs
/// from the file, or that names none, is not trusted (the segment is delivered again, found
/// identical); a call
/// answered from a record needs no destination at all (the daemon is stopped), and one whose
/// segment the worker found already archived with identical content logs SPEC's warning. A call that
/// failed (the daemon down) delivers its retry's batch itself, records the segments after it,
/// and starts no worker. The archive ends up with every segment, byte for byte, and the state
/// dir empty.
#[test]
fn archive_ahead_delivers_ready_segments_in_batches_and_answers_from_its_records() {
    let (cluster, s) = ready_backlog("ahead-hand", 8);
    let mut rsyncd = RsyncDaemon::start("wal_archive");
    let state = cluster.root().subdir("archive-state");
    let target = format!("zstd={}", rsyncd.url());
    let tool = |segment: &str| remote_ahead(&cluster, &state, &target, 2, segment);
    let call = |segment: &str| tool(segment).succeeds();
    let archived = ArchiveDir::new(rsyncd.dir());
    // The last three are not ready yet, as if PostgreSQL were still writing them.
    for seg in &s[5..] {
        hold_back(&cluster, seg);
    }
    // The fourth is there already, uncompressed and identical: success, and the warning SPEC
    // asks for comes with PostgreSQL's call for it, answered from the record.
    std::fs::write(rsyncd.dir().join(&s[3]), cluster.wal_file(&s[3])).unwrap();

    // The worker's batches, the asked segment first (it holds the call's stderr until it
    // ends); the call answers from the worker's record.
    let first = call(&s[0]);
    for (a, b, n) in [(&s[0], &s[1], "2 segments"), (&s[2], &s[3], "2 segments")] {
        first.stderr_line_with(&[&format!(
            " : LOG : delivered ahead with {}: {n} ({a} to {b}), recorded in the state dir",
            s[0]
        )]);
    }
    first.stderr_line_with(&[&format!(
        " : LOG : {} was delivered by the archive-ahead worker; its record matches the file",
        s[0]
    )]);
    let before = pitr_common::wal::WalFileName::parse(&s[0])
        .unwrap()
        .position_before()
        .unwrap();
    first.stderr_line_with(&[&format!(
        " : LOG : archive-ahead worker: delivered and recorded 5 segments after {before} in "
    )]);
    wait_for_ahead_worker(&state);
    for seg in &s[..5] {
        archived.assert_holds(seg, &cluster.wal_file(seg));
    }
    assert!(
        archived.file_for(&s[5]).is_none(),
        "{} sent before it was ready",
        s[5]
    );
    assert!(
        !state.join(format!("{}.state", s[0])).exists(),
        "the asked segment's record outlived its call"
    );
    let record = state.join(format!("{}.state", s[1]));
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(text.contains(&format!("ahead-of {}\n", s[0])), "{text}");
    assert!(text.contains("content 1048576 "), "{text}");

    // A record for other content is worth nothing: delivered again, found identical there.
    let tampered: String = text
        .lines()
        .map(|l| match l.strip_prefix("content 1048576 ") {
            Some(_) => "content 1048576 00000000".to_string(),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&record, tampered + "\n").unwrap();
    let again = call(&s[1]);
    again.stderr_contains(&format!(
        "WARNING : the delivery record of {} in {} is for other content",
        s[1],
        state.display()
    ));
    again.stderr_line_with(&[
        &format!("WARNING : {} is already archived in ", s[1]),
        &rsyncd.url(),
        " with identical content; not sent again",
    ]);

    // A record made ahead that names no content is worth nothing either.
    let record = state.join(format!("{}.state", s[2]));
    let text = std::fs::read_to_string(&record).unwrap();
    let contentless: String = text
        .lines()
        .filter(|l| !l.starts_with("content "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&record, contentless).unwrap();
    let again = call(&s[2]);
    again.stderr_contains(&format!(
        "WARNING : the delivery record of {} in {} names no content; delivering it again",
        s[2],
        state.display()
    ));
    again.stderr_line_with(&[
        &format!("WARNING : {} is already archived in ", s[2]),
        &rsyncd.url(),
        " with identical content; not sent again",
    ]);

    // Answered from the records alone: no destination is asked.
    rsyncd.stop();
    for seg in &s[3..5] {
        let answered = call(seg);
        answered
            .stderr_contains(&format!(
                " : LOG : {seg} was delivered ahead with {}; its record matches the file",
                s[0]
            ))
            .stderr_contains(&format!(
                " : LOG : Segment pg_wal/{seg} successfully sent to all destinations."
            ));
        let warned = format!(" : WARNING : {seg} is already archived in ");
        if *seg == s[3] {
            answered.stderr_line_with(&[
                &warned,
                &rsyncd.url(),
                " with identical content; not sent again",
            ]);
        } else {
            answered.stderr_lacks(&warned);
        }
    }
    assert_eq!(
        pitr_tests::archive_state_names(&state),
        Vec::<String>::new()
    );

    // With the daemon down the next call fails, its worker's delivery and its own; its retry,
    // the daemon back, delivers its batch itself and starts no worker (nothing is ready after
    // the batch).
    let_go(&cluster, &s[5]);
    let_go(&cluster, &s[6]);
    tool(&s[5])
        .run()
        .failure_with_status(2)
        .stderr_contains("archive-ahead worker: 2 deliveries failed; ending");
    wait_for_ahead_worker(&state);
    assert!(state.join(format!("{}.state", s[5])).exists());
    rsyncd.start_again();
    let retry = call(&s[5]);
    retry.stderr_line_with(&[&format!(
        " : LOG : delivered ahead with {}: 1 segment ({} to {}), recorded in the state dir",
        s[5], s[6], s[6]
    )]);
    retry.stderr_lacks("archive-ahead worker");
    call(&s[6]).stderr_contains(&format!(
        " : LOG : {} was delivered ahead with {}; its record matches the file",
        s[6], s[5]
    ));
    // Once ready, the last one is its own call's: nothing was recorded.
    let_go(&cluster, &s[7]);
    call(&s[7]).stderr_contains(&format!(
        " : LOG : Segment pg_wal/{} successfully sent to all destinations.",
        s[7]
    ));
    assert_eq!(
        pitr_tests::archive_state_names(&state),
        Vec::<String>::new()
    );
    for seg in &s {
        archived.assert_holds(seg, &cluster.wal_file(seg));
    }
}

/// Issue 14, "up to --archive-ahead K files or bytes": a size is counted in segments of the
/// cluster's size (1 MB here), at least one. `--archive-ahead 5MB` makes batches of five, and a
/// value that is neither a count nor a size is a usage error naming it.
#[test]
fn archive_ahead_as_a_size_makes_batches_of_that_much_wal() {
    let (cluster, s) = ready_backlog("ahead-size", 12);
    let rsyncd = RsyncDaemon::start("wal_archive");
    let state = cluster.root().subdir("archive-state");
    let target = format!("zstd={}", rsyncd.url());
    let call = |ahead: &str, segment: &str| {
        archive(&cluster)
            .arg("--state-dir")
            .arg(&state)
            .args(["--dst-remote", &target, "--archive-ahead", ahead])
            .arg(wal_path(segment))
    };
    call("12XB", &s[0])
        .run()
        .failure_with_status(3)
        .stderr_contains(
            " : FATAL : Error parsing option '--archive-ahead' with value '12XB': '12XB' is \
             neither a number of segments nor a size (128MB, 1GB; units kB, MB, GB, TB)",
        );
    assert_eq!(pitr_tests::dir_names(rsyncd.dir()), Vec::<String>::new());

    let first = call("5MB", &s[0]).succeeds();
    for (a, b, n) in [(0, 4, 5), (5, 9, 5), (10, 11, 2)] {
        first.stderr_line_with(&[&format!(
            " : LOG : delivered ahead with {}: {n} segments ({} to {}), recorded in the state dir",
            s[0], s[a], s[b]
        )]);
    }
    wait_for_ahead_worker(&state);
    let archived = ArchiveDir::new(rsyncd.dir());
    for seg in &s {
        archived.assert_holds(seg, &cluster.wal_file(seg));
    }
    for seg in &s[1..] {
        call("5MB", seg).succeeds().stderr_contains(&format!(
            " : LOG : {seg} was delivered ahead with {}; its record matches the file",
            s[0]
        ));
    }
    assert_eq!(
        pitr_tests::archive_state_names(&state),
        Vec::<String>::new()
    );
}

/// Regression (`cargo xtask faults`, archive-ahead, "SIGKILL to the archive-ahead worker, once
/// the call is done": `000000010000000000000005.state` left once every segment was archived).
/// PostgreSQL calls again for a segment archived before, with the records of the segments after
/// it still there (their calls have not come). The call handed over to a worker that started
/// after those records, and took the next segment along itself: both sent it, and the worker's
/// record of it came after that segment's call had been answered. Now such a call does not hand
/// over: it delivers its segment and the next one not recorded itself, and the worker it starts
/// takes the rest, after its batch. Every record is consumed by its call.
#[test]
fn faults_archive_ahead_call_with_records_after_its_segment_delivers_itself() {
    let (cluster, s) = ready_backlog("ahead-records-after", 8);
    let rsyncd = RsyncDaemon::start("wal_archive");
    let state = cluster.root().subdir("archive-state");
    let target = format!("zstd={}", rsyncd.url());
    let call = |segment: &str| remote_ahead(&cluster, &state, &target, 4, segment).succeeds();
    for seg in &s[4..] {
        hold_back(&cluster, seg);
    }
    // The worker delivers the first four; the records of the three after the asked one stay.
    call(&s[0]);
    wait_for_ahead_worker(&state);
    assert_eq!(
        pitr_tests::archive_state_names(&state),
        s[1..4]
            .iter()
            .map(|n| format!("{n}.state"))
            .collect::<Vec<_>>()
    );
    for seg in &s[4..] {
        let_go(&cluster, seg);
    }
    // The first one again, as after a crash before PostgreSQL marked it done.
    let again = call(&s[0]);
    again.stderr_line_with(&[&format!(
        " : LOG : delivered ahead with {}: 1 segment ({} to {}), recorded in the state dir",
        s[0], s[4], s[4]
    )]);
    again.stderr_line_with(&[&format!(
        " : LOG : archive-ahead worker: delivered and recorded 3 segments after {} in ",
        s[4]
    )]);
    wait_for_ahead_worker(&state);
    for seg in &s[1..] {
        call(seg).stderr_contains(&format!(
            " : LOG : {seg} was delivered ahead with {}; its record matches the file",
            s[0]
        ));
    }
    assert_eq!(
        pitr_tests::archive_state_names(&state),
        Vec::<String>::new()
    );
    let archived = ArchiveDir::new(rsyncd.dir());
    for seg in &s {
        archived.assert_holds(seg, &cluster.wal_file(seg));
    }
}

/// Waits (with a deadline) until no archive-ahead worker holds the lock in `state`.
pub(crate) fn wait_for_ahead_worker(state: &Path) {
    let lock = state.join(".ahead-worker.lock");
    wait_until(
        "the archive-ahead worker to end",
        Duration::from_secs(60),
        || {
            (!lock.exists()
                || pitr_common::lock::try_lock(&lock)
                    .expect("the worker's lock file")
                    .is_some())
            .then_some(())
        },
    );
}

/// A call for `segment` with `--state-dir state --archive-ahead ahead` to the remote `target`.
fn remote_ahead(
    cluster: &Cluster,
    state: &Path,
    target: &str,
    ahead: usize,
    segment: &str,
) -> Tool {
    ahead_call(cluster, state, ["--dst-remote", target], ahead, segment)
}

/// A call for `segment` with `--state-dir state --archive-ahead ahead` and the destination
/// option `dst` (`["--dst-local", "zstd=DIR"]`).
fn ahead_call(
    cluster: &Cluster,
    state: &Path,
    dst: [&str; 2],
    ahead: usize,
    segment: &str,
) -> Tool {
    archive(cluster)
        .arg("--state-dir")
        .arg(state)
        .args(dst)
        .args(["--archive-ahead", &ahead.to_string()])
        .arg(wal_path(segment))
}

/// Takes `segment`'s `.ready` away (renamed `.not-yet`), as if PostgreSQL were still writing it.
fn hold_back(cluster: &Cluster, segment: &str) {
    rename_status(cluster, segment, "ready", "not-yet");
}

/// Gives back what [`hold_back`] took: `segment` is ready.
fn let_go(cluster: &Cluster, segment: &str) {
    rename_status(cluster, segment, "not-yet", "ready");
}

/// Renames `segment`'s status file from `.from` to `.to`.
fn rename_status(cluster: &Cluster, segment: &str, from: &str, to: &str) {
    let status = cluster.wal_dir().join("archive_status");
    std::fs::rename(
        status.join(format!("{segment}.{from}")),
        status.join(format!("{segment}.{to}")),
    )
    .unwrap();
}

/// A call for `segment` with `--state-dir state --archive-ahead 1` to the zstd directory `dest`.
fn local_ahead_1(cluster: &Cluster, state: &Path, dest: &Path, segment: &str) -> Tool {
    let dst = format!("zstd={}", dest.display());
    ahead_call(cluster, state, ["--dst-local", &dst], 1, segment)
}

/// Found by `cargo xtask faults` (archive-ahead): a call killed while saving a record left
/// `.NAME.state.pitr-tmp.PID` in the state dir for good. The next full call removes the
/// temporary file of a writer that is gone, and leaves a live writer's alone.
#[test]
fn faults_archive_ahead_killed_while_saving_a_record_leaves_no_temp_file() {
    let (cluster, s) = ready_backlog("ahead-tmp", 3);
    let state = cluster.root().subdir("archive-state");
    let dest = cluster.root().subdir("archive");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    let dead = state.join(format!(".{}.state.pitr-tmp.{gone}", s[1]));
    let live = state.join(format!(".{}.state.pitr-tmp.{}", s[2], std::process::id()));
    for t in [&dead, &live] {
        pg_user().write_file(t, b"local zstd:3 /elsewhere\n");
    }
    archive(&cluster)
        .arg("--state-dir")
        .arg(&state)
        .args(["--archive-ahead", "2", "--dst-local"])
        .arg(format!("zstd={}", dest.display()))
        .arg(wal_path(&s[0]))
        .succeeds();
    let mut left = pitr_tests::archive_state_names(&state);
    left.sort();
    let mut expected = vec![
        live.file_name().unwrap().to_string_lossy().into_owned(),
        format!("{}.state", s[1]),
        format!("{}.state", s[2]),
    ];
    expected.sort();
    assert_eq!(left, expected);
    for seg in &s {
        ArchiveDir::new(&dest).assert_holds(seg, &cluster.wal_file(seg));
    }
}

/// Found by `cargo xtask faults` (archive-ahead, SIGKILL to the archive-ahead worker): a worker
/// killed while saving a record left `.NAME.state.pitr-tmp.PID` in the state dir, and when every
/// call after it was answered from records (the next worker delivering the rest), no full call
/// came to sweep it. A call answered from a record sweeps the temporary files of writers that
/// are gone too.
#[test]
fn faults_archive_ahead_worker_killed_while_saving_a_record_leaves_no_temp_file() {
    let (cluster, s) = ready_backlog("ahead-worker-tmp", 5);
    let state = cluster.root().subdir("archive-state");
    let dest = cluster.root().subdir("archive");
    hold_back(&cluster, &s[4]);
    let call = |segment: &str| local_ahead_1(&cluster, &state, &dest, segment).succeeds();
    // The call takes s1 along; its worker s2 and s3.
    call(&s[0]);
    wait_for_ahead_worker(&state);
    let records: Vec<String> = s[1..4].iter().map(|n| format!("{n}.state")).collect();
    assert_eq!(pitr_tests::archive_state_names(&state), records);
    // A writer killed while saving; then s4 is ready and the next call, answered from its
    // record, starts a worker for it.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    let dead = state.join(format!(".{}.state.pitr-tmp.{gone}", s[3]));
    pg_user().write_file(&dead, b"local zstd:3 /elsewhere\n");
    let_go(&cluster, &s[4]);
    call(&s[1]).stderr_contains(&format!(
        " : LOG : {} was delivered ahead with {}; its record matches the file",
        s[1], s[0]
    ));
    wait_for_ahead_worker(&state);
    assert!(!dead.exists(), "{} was left", dead.display());
    let records: Vec<String> = s[2..5].iter().map(|n| format!("{n}.state")).collect();
    assert_eq!(pitr_tests::archive_state_names(&state), records);
    for seg in &s {
        ArchiveDir::new(&dest).assert_holds(seg, &cluster.wal_file(seg));
    }
}

/// Found by `cargo xtask faults` (archive-ahead, in CI): a call that came right after the call
/// that started the archive-ahead worker, before the worker's process had taken its lock, saw
/// no worker and delivered its segment (and the next, ahead) itself; the worker then delivered
/// them too and recorded them after their calls had been answered, and those records were left
/// in the state dir. The starting call takes the lock and writes the status, and hands the held
/// lock to the worker: the next call, however soon, waits for the worker's record.
#[test]
fn faults_archive_ahead_call_right_after_the_worker_starts_is_answered_from_its_record() {
    let (cluster, s) = ready_backlog("ahead-worker-gap", 4);
    let state = cluster.root().subdir("archive-state");
    let dest = cluster.root().subdir("archive");
    let call = |segment: &str| local_ahead_1(&cluster, &state, &dest, segment);
    // s0's call takes s1 along and starts no worker: nothing after s1 is ready yet.
    hold_back(&cluster, &s[2]);
    hold_back(&cluster, &s[3]);
    call(&s[0]).succeeds();
    wait_for_ahead_worker(&state);
    assert_eq!(
        pitr_tests::archive_state_names(&state),
        vec![format!("{}.state", s[1])]
    );
    let_go(&cluster, &s[2]);
    let_go(&cluster, &s[3]);
    // s1's call is answered from its record and starts the worker for s2 and s3; s2's call
    // comes the moment s1's has exited, as PostgreSQL's archiver's does.
    let mut first = call(&s[1]).spawn();
    first.wait_for_exit();
    let second = call(&s[2]).run();
    second.success();
    second.stderr_contains(&format!(
        " : LOG : {} was delivered ahead with {}; its record matches the file",
        s[2], s[1]
    ));
    first.wait().success().stderr_contains(&format!(
        " : LOG : archive-ahead worker: delivered and recorded 2 segments after {} in ",
        s[1]
    ));
    wait_for_ahead_worker(&state);
    call(&s[3]).succeeds().stderr_contains(&format!(
        " : LOG : {} was delivered ahead with {}; its record matches the file",
        s[3], s[1]
    ));
    wait_for_ahead_worker(&state);
    assert_eq!(
        pitr_tests::archive_state_names(&state),
        Vec::<String>::new()
    );
    for seg in &s {
        ArchiveDir::new(&dest).assert_holds(seg, &cluster.wal_file(seg));
    }
}

/// The archiver's log `log` of a 12-segment backlog drained with archive-ahead: at least 8
/// calls were answered from records, and none failed.
pub(crate) fn assert_most_calls_answered_from_records(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap();
    let answered = text
        .lines()
        .filter(|l| l.contains(" was delivered ahead with "))
        .count();
    assert!(
        answered >= 8,
        "{answered} calls answered from records\n{text}"
    );
    // The first call hands its segment and the backlog to the worker it starts, which
    // delivers them.
    assert!(
        text.contains(" : LOG : archive-ahead worker: delivered and recorded "),
        "no archive-ahead worker delivered anything\n{text}"
    );
    assert!(!text.contains(" : ERROR : "), "{text}");
}

/// The log of a drain shows the backlog delivered as one batch that ends with `last`.
pub(crate) fn assert_one_batch_up_to(log: &Path, last: &str) {
    let text = std::fs::read_to_string(log).unwrap();
    let batches: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" : LOG : delivered ahead with ") && l.contains(" segments ("))
        .collect();
    assert_eq!(batches.len(), 1, "{batches:#?}");
    assert!(
        batches[0].ends_with(&format!(" to {last}), recorded in the state dir")),
        "{}",
        batches[0]
    );
}

/// Issue 14 with PostgreSQL's own archiver draining a backlog into an rsync daemon with the
/// default archive-ahead: every segment arrives byte for byte, most calls are answered from
/// records, and nothing is left in the state dir.
#[test]
fn archive_ahead_drains_a_backlog_through_postgresqls_archiver() {
    let (cluster, segments) = ready_backlog("ahead-pg", 12);
    let rsyncd = RsyncDaemon::start("wal_archive");
    let state = cluster.root().subdir("archive-state");
    let log = cluster.root().path().join("archive.log");
    cluster.append_conf(&[(
        "archive_command",
        &format!(
            "{} --log {} --state-dir {} --dst-remote gzip={} %p",
            pitr_bin("pitr-archive").display(),
            log.display(),
            state.display(),
            rsyncd.url()
        ),
    )]);
    cluster.reload();
    let last = segments.last().unwrap();
    cluster.wait_archived(last, Duration::from_secs(180));
    let archived = ArchiveDir::new(rsyncd.dir());
    for seg in &segments {
        archived.assert_holds(seg, &cluster.wal_file(seg));
    }
    assert_most_calls_answered_from_records(&log);
    // The default is 128MB of WAL: one batch of all twelve 1 MB segments (eight segments,
    // the default before it was a size, would have made two).
    assert_one_batch_up_to(&log, last);
    wait_until(
        "the last record to be removed",
        Duration::from_secs(30),
        || {
            pitr_tests::archive_state_names(&state)
                .is_empty()
                .then_some(())
        },
    );
}

/// Found by the fault campaign (bad-input, "config file with an option missing its value"): a
/// `--log` line without a value in a --config-file took the next command-line option as its
/// value, and pitr-archive logged into a file named `--dst-local` in the data directory. An
/// option followed by another option is a usage error now, on the command line too.
#[test]
fn faults_config_option_without_value_takes_no_other_option() {
    let (cluster, segment) = cluster_with_segment("novalue");
    let conf = cluster.root().path().join("novalue.conf");
    pg_user().write_file(&conf, b"--log\n");
    let dest = cluster.root().subdir("dest");
    let before = pitr_tests::dir_names(cluster.data_dir());
    archive(&cluster)
        .arg("--config-file")
        .arg(&conf)
        .arg("--dst-local")
        .arg(&dest)
        .arg(wal_path(&segment))
        .run()
        .failure_with_status(3)
        .stderr_contains(
            " : FATAL : --log has no value: the argument after it is the option --dst-local",
        )
        .stderr_contains(" : HINT : give --log its value right after it");
    assert_eq!(pitr_tests::dir_names(cluster.data_dir()), before);
    assert_eq!(pitr_tests::dir_names(&dest), Vec::<String>::new());
}

/// The message of a log line (what follows `: LEVEL : `) and the pid it names.
fn message_and_pid<'a>(line: &'a str, level: &str) -> (&'a str, &'a str) {
    let (head, message) = line
        .split_once(&format!(" : {level} : "))
        .unwrap_or_else(|| panic!("not a {level} line: {line}"));
    let pid = head.split(" : ").nth(1).unwrap_or_default();
    (message, pid)
}

/// Issue "A DBA's first day" (item 2): a `--temp-dir` where pitr-archive's per-call scratch
/// directory cannot be made fails only the rsync destination, which stages its files there:
/// the local copy is written, the error names the directory with the system's reason and a
/// HINT names --temp-dir, and nothing reaches the daemon. The next call, with a usable
/// --temp-dir, delivers to rsync only: the state dir says the local copy is done.
#[test]
fn a_name_that_appears_in_an_rsync_destination_during_the_upload_is_compared_not_replaced() {
    // The name is not there when the call looks, and is there when its upload runs (another
    // archiver won the race): rsync skips it, and the call compares what is there with its own.
    let (cluster, segment) = cluster_with_segment("appeared");
    let rsyncd = RsyncDaemon::start("wal_archive");
    let work = PgTempDir::new("appeared");
    let ours = std::fs::read(cluster.data_dir().join("pg_wal").join(&segment)).expect("read");
    let mut theirs = ours.clone();
    theirs[100] ^= 0xff;
    let plant = work.path().join("plant");
    // An rsync that, for the upload run only, first puts `plant` where the upload goes.
    let wrapper = work.path().join("rsync-racing");
    pg_user().write_file(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" --ignore-existing \"*) cat {plant} > {dest} ;; esac\nexec rsync \"$@\"\n",
            plant = plant.display(),
            dest = rsyncd.dir().join(&segment).display()
        )
        .as_bytes(),
    );
    set_mode(&wrapper, 0o755);
    let call = || {
        archive(&cluster)
            .arg("--rsync-path")
            .arg(&wrapper)
            .arg("--dst-remote")
            .arg(rsyncd.url())
            .arg(wal_path(&segment))
            .run()
    };
    pg_user().write_file(&plant, &theirs);
    let r = call();
    r.failure_with_status(2).stderr_contains(&format!(
        "{segment} is already archived in {} with different content; the archived file was left untouched",
        rsyncd.url()
    ));
    assert_eq!(
        std::fs::read(rsyncd.dir().join(&segment)).expect("read"),
        theirs
    );
    // The same content appearing is the same file: success, with a warning.
    std::fs::remove_file(rsyncd.dir().join(&segment)).expect("remove");
    pg_user().write_file(&plant, &ours);
    call().success().stderr_contains(&format!(
        "{segment} is already archived in {} with identical content; not sent again",
        rsyncd.url()
    ));
    assert_eq!(
        std::fs::read(rsyncd.dir().join(&segment)).expect("read"),
        ours
    );
}

#[test]
fn unusable_temp_dir_fails_only_the_rsync_destination() {
    let (cluster, segment) = cluster_with_segment("temp-dir");
    let rsyncd = RsyncDaemon::start("wal_archive");
    let local = cluster.root().subdir("archive");
    let state = cluster.root().subdir("state");
    let usable = cluster.root().subdir("tmp");
    let missing = cluster.root().path().join("no-such-temp-dir");
    let call = |temp_dir: &Path| {
        archive(&cluster)
            .arg("--temp-dir")
            .arg(temp_dir)
            .arg("--state-dir")
            .arg(&state)
            .arg("--dst-local")
            .arg(&local)
            .arg("--dst-remote")
            .arg(rsyncd.url())
            .arg(wal_path(&segment))
            .run()
    };
    let r = call(&missing);
    r.failure_with_status(2);
    let lines = r.stderr_lines();
    let at = r.stderr_line_with(&[" : ERROR : cannot send "]);
    let (message, pid) = message_and_pid(lines[at], "ERROR");
    assert_eq!(
        message,
        format!(
            "cannot send {segment} to {}: cannot create scratch directory {}/.pitr-archive.{pid}.0: \
             No such file or directory (os error 2)",
            rsyncd.url(),
            missing.display()
        ),
        "{r}"
    );
    assert_eq!(
        message_and_pid(lines.get(at + 1).copied().unwrap_or_default(), "HINT").0,
        "rsync destinations stage their files in --temp-dir (default: $TMPDIR, else /tmp); give \
         a directory the PostgreSQL user can write",
        "{r}"
    );
    r.stderr_contains(&format!(
        " : ERROR : pg_wal/{segment} was not archived to 1 of 2 destinations\n"
    ));
    let local_dir = ArchiveDir::new(&local);
    assert_eq!(local_dir.raw(&segment), cluster.wal_file(&segment));
    let local_stamp = local_dir.stamp(&segment);
    let remote = ArchiveDir::new(rsyncd.dir());
    assert_eq!(
        remote.all_names(),
        Vec::<String>::new(),
        "the daemon got files"
    );
    assert!(!missing.exists(), "{} was created", missing.display());

    let r = call(&usable);
    r.success().stderr_contains(&format!(
        " : LOG : {segment} already sent to {} according to the state dir; skipping\n",
        local.display()
    ));
    assert_eq!(
        local_dir.stamp(&segment),
        local_stamp,
        "local copy sent again"
    );
    remote.assert_holds(&segment, &cluster.wal_file(&segment));
    assert_eq!(pitr_tests::dir_names(&usable), Vec::<String>::new());
    assert_eq!(
        pitr_tests::archive_state_names(&state),
        Vec::<String>::new()
    );
}

//! `pitr-restore` as PostgreSQL 15's `restore_command`: a warm spare (`recovery.signal`, a
//! restore_command that waits) follows a primary that archives with pitr-archive, finishes
//! smartly or at once on its trigger, stops cleanly on a fast shutdown, holds segments back
//! with `--recovery-delay`, removes what its restartpoints no longer need, refuses damaged or
//! foreign segments until they are repaired, and stops recovery (instead of promoting) on a
//! mistyped command or a missing archive; a standby (`standby.signal`,
//! `--streaming-replication`) follows the archive and is promoted with `pg_ctl promote`; a
//! standby follows the new timeline of a promoted one. The exit statuses (0 restored, 1 not
//! available, 126 error that stops recovery, 127 usage) and the prefetch spool are also
//! checked on the binary directly.
//!
//! Every server uses 1 MiB WAL segments and `--poll-interval 0.2`, so that the scenarios run
//! on little WAL and wait little.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pitr_tests::archive_dir::{FileStamp, CLUSTER_MARKER};
use pitr_tests::cluster::standby::{RECOVERY_SIGNAL, STANDBY_SIGNAL};
use pitr_tests::procs::{processes_matching, wait_no_process_matching, OutputWithin, Process};
use pitr_tests::{
    pg_user, pitr_bin, poll_until, wait_until, ArchiveDir, Cluster, ClusterOpts, GarageCluster,
    PgTempDir, RsyncDaemon, Tool,
};

/// How long a test waits for archiving, replay or promotion. Generous: the binaries are debug
/// builds and the machine is shared.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(90);

/// The table the load writes: one row per committed transaction.
pub(crate) const TABLE: &str = "rows";

/// The pgbench transaction of the load.
const LOAD: &str = "INSERT INTO rows (payload) VALUES (repeat('x', 200));\n";

/// WAL segment size of every cluster here, in MiB.
const SEG_MB: u32 = 1;

/// A primary that archives with pitr-archive, and a scratch directory for archives, feeds
/// and trigger files.
struct Setup {
    work: PgTempDir,
    archive: PathBuf,
    primary: Cluster,
}

impl Setup {
    /// A started primary whose `archive_command` is
    /// `pitr-archive --dst-local zstd=WORK/archive %p`, with the load table created.
    fn local(name: &str) -> Setup {
        let work = PgTempDir::new(name);
        let archive = work.subdir("archive");
        let command = format!(
            "{} --dst-local zstd={} %p",
            pitr_bin("pitr-archive").display(),
            archive.display()
        );
        let primary = start_primary(&format!("{name}-primary"), &command);
        Setup {
            work,
            archive,
            primary,
        }
    }

    /// `--source zstd=ARCHIVE`.
    fn source(&self) -> String {
        format!("--source zstd={}", self.archive.display())
    }

    /// A path in the work dir for a trigger file (not created).
    fn trigger(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }
}

/// A started primary with 1 MiB segments, archiving with `archive_command`, and the load
/// table.
pub(crate) fn start_primary(name: &str, archive_command: &str) -> Cluster {
    let primary = Cluster::init(
        name,
        ClusterOpts::new()
            .wal_segsize_mb(SEG_MB)
            .set("archive_mode", "on")
            .set("archive_command", archive_command)
            .set("wal_keep_size", "64MB"),
    );
    primary.start();
    primary.psql(&format!(
        "CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, payload text)"
    ));
    primary
}

/// `restore_command` running pitr-restore with `args` and a short poll interval.
pub(crate) fn restore_command(args: &str) -> String {
    format!(
        "{} --poll-interval 0.2 {args} %f %p",
        pitr_bin("pitr-restore").display()
    )
}

/// A warm spare of the runbook, not started: a base backup of `primary` taken with
/// `-X none` (so every WAL file after the backup's checkpoint comes from the archive),
/// `recovery.signal`, `recovery_prefetch = off` and pitr-restore with `args` as
/// restore_command; `extra` settings come last.
pub(crate) fn warm_spare(
    primary: &Cluster,
    name: &str,
    args: &str,
    extra: &[(&str, &str)],
) -> Cluster {
    let mut opts = ClusterOpts::new()
        .set("restore_command", &restore_command(args))
        .set("recovery_prefetch", "off");
    for (key, value) in extra {
        opts = opts.set(key, value);
    }
    let spare = primary.base_backup(name, "none", opts);
    spare.write_signal(RECOVERY_SIGNAL);
    spare
}

/// What one round of load left behind.
pub(crate) struct Round {
    /// The segment the round's switch completed.
    pub(crate) segment: String,
    /// The LSN `pg_switch_wal()` returned.
    pub(crate) lsn: String,
    /// Rows in the table after the round.
    pub(crate) rows: u64,
}

/// One round of load: two pgbench clients commit `transactions` rows each, then the segment
/// is switched (so the rows are archived).
pub(crate) fn load_round(primary: &Cluster, transactions: u32) -> Round {
    primary.pgbench_script(LOAD, transactions, 2);
    let (segment, lsn) = primary.switch_wal_at();
    Round {
        segment,
        lsn,
        rows: primary.count_rows(TABLE),
    }
}

/// SIGKILLs processes a failed test left behind (they would poll forever).
fn kill_all(processes: &[Process]) {
    for p in processes {
        // SAFETY: kill has no memory-safety preconditions; the pid came from /proc.
        unsafe { libc::kill(p.pid as libc::pid_t, libc::SIGKILL) };
    }
}

/// The segment after `name` for [`SEG_MB`] segments.
fn next_segment(name: &str) -> String {
    assert_eq!(name.len(), 24, "{name:?} is not a segment name");
    let tli = &name[..8];
    let log = u32::from_str_radix(&name[8..16], 16).expect("hex log");
    let seg = u32::from_str_radix(&name[16..24], 16).expect("hex seg");
    let per_log = 0x1_0000_0000_u64 / (u64::from(SEG_MB) << 20);
    let (log, seg) = if u64::from(seg) + 1 == per_log {
        (log + 1, 0)
    } else {
        (log, seg + 1)
    };
    format!("{tli}{log:08X}{seg:08X}")
}

/// The WAL file name an archived file stands for (`X.zst` → `X`).
fn wal_name_of(archived: &str) -> &str {
    archived
        .strip_suffix(".zst")
        .or_else(|| archived.strip_suffix(".gz"))
        .unwrap_or(archived)
}

/// Copies archived files from `from` to `to` (the standby's source), each through a hidden
/// temp name and a rename, keeping its mtime and giving it to the PostgreSQL user; only the
/// files whose WAL name passes `keep` and that `to` does not hold yet. Returns their names.
fn feed(from: &Path, to: &Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut copied = Vec::new();
    for name in ArchiveDir::new(from).names() {
        if name.starts_with('.') || !keep(wal_name_of(&name)) || to.join(&name).exists() {
            continue;
        }
        let mtime = std::fs::metadata(from.join(&name))
            .and_then(|m| m.modified())
            .expect("mtime");
        let bytes = std::fs::read(from.join(&name)).expect("read");
        place_with_mtime(&to.join(&name), &bytes, Some(mtime));
        copied.push(name);
    }
    copied
}

/// Writes `bytes` to `path` through a hidden temp name and a rename, so that pitr-restore
/// never sees a partial file, and gives it to the PostgreSQL user.
fn place(path: &Path, bytes: &[u8]) {
    place_with_mtime(path, bytes, None);
}

/// [`place`], setting the file's mtime before it appears under its name.
fn place_with_mtime(path: &Path, bytes: &[u8], mtime: Option<std::time::SystemTime>) {
    let name = path.file_name().expect("file name").to_string_lossy();
    let temp = path.with_file_name(format!(".{name}.feeding"));
    pg_user().write_file(&temp, bytes);
    if let Some(mtime) = mtime {
        std::fs::File::options()
            .write(true)
            .open(&temp)
            .and_then(|f| f.set_modified(mtime))
            .expect("setting the mtime");
    }
    std::fs::rename(&temp, path).expect("renaming into the feed");
}

/// `keep` for [`feed`]: WAL files up to and including segment `last` (history files too).
fn up_to(last: &str) -> impl Fn(&str) -> bool + '_ {
    move |wal: &str| wal.get(..24).is_none_or(|prefix| prefix <= last)
}

/// Waits until the server log, from byte `since`, has a line holding every fragment; returns
/// that line. Panics with the log's tail after `timeout`.
fn wait_log(cluster: &Cluster, since: usize, fragments: &[&str], timeout: Duration) -> String {
    let found = poll_until(timeout, || {
        cluster
            .server_log_since(since)
            .lines()
            .find(|l| fragments.iter().all(|f| l.contains(f)))
            .map(str::to_owned)
    });
    found.unwrap_or_else(|| {
        panic!(
            "no server log line with all of {fragments:?} within {timeout:?}\n--- server log \
             (tail)\n{}",
            pitr_tests::cluster::tail(&cluster.server_log_since(since), 40)
        )
    })
}

/// Asserts that the server log has a line holding every fragment.
fn assert_log_line(cluster: &Cluster, fragments: &[&str]) {
    let log = cluster.server_log();
    assert!(
        log.lines().any(|l| fragments.iter().all(|f| l.contains(f))),
        "no server log line with all of {fragments:?}\n--- server log (tail)\n{}",
        pitr_tests::cluster::tail(&log, 40)
    );
}

/// The warm spare of the runbook, from its start to a smart finish: it follows the primary
/// through several rounds of load, and once its trigger exists it replays what is archived
/// and promotes with exactly the primary's archived rows, not the ones committed after.
/// Returns the promoted spare.
pub(crate) fn follow_and_finish_smartly(
    primary: &Cluster,
    name: &str,
    source: &str,
    trigger: &Path,
) -> Cluster {
    let spare = warm_spare(
        primary,
        name,
        &format!("{source} --finish-trigger {}", trigger.display()),
        &[],
    );
    spare.start();
    assert!(spare.is_in_recovery(), "the warm spare is not in recovery");
    let mut last = None;
    for _ in 0..3 {
        last = Some(load_round(primary, 100));
    }
    let last = last.expect("a round");
    primary.wait_archived(&last.segment, TIMEOUT);
    spare.wait_replayed(&last.lsn, TIMEOUT);
    assert_eq!(spare.count_rows(TABLE), last.rows);
    let next = next_segment(&last.segment);
    wait_log(&spare, 0, &["LOG : waiting for", &next], TIMEOUT);

    // Committed, but never archived (no switch): the spare must not have these.
    primary.pgbench_script(LOAD, 20, 2);
    assert!(primary.count_rows(TABLE) > last.rows);

    pg_user().write_file(trigger, b"");
    spare.wait_promoted(TIMEOUT);
    assert_eq!(
        spare.count_rows(TABLE),
        last.rows,
        "the promoted spare does not hold exactly the archived rows"
    );
    assert_log_line(
        &spare,
        &[&format!(
            "Got finish request: {next} is not in the archive; ending recovery"
        )],
    );
    spare.psql(&format!("INSERT INTO {TABLE} (payload) VALUES ('after')"));
    spare
}

#[test]
fn warm_spare_follows_the_primary_and_finishes_smartly() {
    let setup = Setup::local("warm-zstd");
    follow_and_finish_smartly(
        &setup.primary,
        "warm-zstd-spare",
        &setup.source(),
        &setup.trigger("finish.trigger"),
    );
}

#[test]
fn warm_spare_fed_by_rsync_with_gzip_follows_and_finishes_smartly() {
    let rsyncd = RsyncDaemon::start("wal_archive");
    let command = format!(
        "{} --dst-remote gzip={} %p",
        pitr_bin("pitr-archive").display(),
        rsyncd.url()
    );
    let primary = start_primary("warm-gzip-primary", &command);
    let work = PgTempDir::new("warm-gzip");
    follow_and_finish_smartly(
        &primary,
        "warm-gzip-spare",
        &format!("--source gzip={}", rsyncd.dir().display()),
        &work.path().join("finish.trigger"),
    );
    let names = ArchiveDir::new(rsyncd.dir()).names();
    assert!(
        names.iter().any(|n| n.ends_with(".gz")) && names.iter().all(|n| n.ends_with(".gz")),
        "the rsync-fed archive does not hold gzip files only: {names:?}"
    );
}

#[test]
fn warm_spare_finish_now_leaves_archived_segments_unreplayed() {
    let setup = Setup::local("finish-now");
    let source = setup.work.subdir("feed");
    let trigger = setup.trigger("finish.trigger");
    let spare = warm_spare(
        &setup.primary,
        "finish-now-spare",
        &format!(
            "--source zstd={} --finish-trigger {}",
            source.display(),
            trigger.display()
        ),
        &[],
    );
    // What the base backup needs; the rest is fed by hand.
    feed(&setup.archive, &source, |_| true);
    spare.start();
    let rounds: Vec<Round> = (0..3).map(|_| load_round(&setup.primary, 100)).collect();
    setup.primary.wait_archived(&rounds[2].segment, TIMEOUT);
    for pair in rounds.windows(2) {
        assert_eq!(
            pair[1].segment,
            next_segment(&pair[0].segment),
            "a round of load filled more than one segment; the test assumes one"
        );
    }
    assert!(rounds[1].rows < rounds[2].rows);

    feed(&setup.archive, &source, up_to(&rounds[0].segment));
    spare.wait_replayed(&rounds[0].lsn, TIMEOUT);
    // Hold replay: the spare takes the next segment but replays nothing of it yet.
    spare.psql("SELECT pg_wal_replay_pause()");
    let fed = feed(&setup.archive, &source, |_| true);
    assert!(
        fed.iter().any(|n| n.starts_with(&rounds[2].segment)),
        "{fed:?}"
    );
    wait_until("replay paused on the spare", TIMEOUT, || {
        (spare.psql("SELECT pg_get_wal_replay_pause_state()") == "paused").then_some(())
    });
    wait_log(
        &spare,
        0,
        &[&format!("Segment {} restored", rounds[1].segment)],
        TIMEOUT,
    );

    // Segment 3 is in the archive (and likely prefetched): NOW must leave it alone.
    pg_user().write_file(&trigger, b"NOW\n");
    spare.psql("SELECT pg_wal_replay_resume()");
    spare.wait_promoted(TIMEOUT);
    assert_eq!(
        spare.count_rows(TABLE),
        rounds[1].rows,
        "the spare did not stop right after the segment it was replaying"
    );
    assert_log_line(
        &spare,
        &[&format!(
            "Got immediate finish request: not restoring {}, ending recovery",
            rounds[2].segment
        )],
    );
    assert_eq!(setup.primary.count_rows(TABLE), rounds[2].rows);
}

#[test]
fn fast_shutdown_of_a_waiting_warm_spare_leaves_no_pitr_restore_behind() {
    let setup = Setup::local("fast-stop");
    let spare = warm_spare(&setup.primary, "fast-stop-spare", &setup.source(), &[]);
    spare.start();
    let round = load_round(&setup.primary, 50);
    setup.primary.wait_archived(&round.segment, TIMEOUT);
    spare.wait_replayed(&round.lsn, TIMEOUT);
    let next = next_segment(&round.segment);
    wait_log(&spare, 0, &["LOG : waiting for", &next], TIMEOUT);

    // The restore_command's command line (and its prefetch worker's) names the archive.
    let archive = setup.archive.display().to_string();
    let pattern = ["pitr-restore", archive.as_str()];
    let waiting = processes_matching(&pattern);
    assert!(
        waiting.iter().any(|p| p.cmdline.contains(&next)),
        "no pitr-restore waiting for {next}: {waiting:?}"
    );

    let started = Instant::now();
    spare.stop();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "pg_ctl stop -m fast took {took:?}"
    );
    let left = wait_no_process_matching(&pattern, Duration::from_secs(10));
    kill_all(&left);
    assert!(
        left.is_empty(),
        "pitr-restore processes left running after the server stopped: {left:?}"
    );
}

#[test]
fn standby_mode_follows_the_archive_and_promotes_with_pg_ctl_promote() {
    let setup = Setup::local("standby-mode");
    let standby = setup.primary.base_backup(
        "standby-mode-standby",
        "none",
        ClusterOpts::new()
            .set(
                "restore_command",
                &restore_command(&format!("--streaming-replication {}", setup.source())),
            )
            // PostgreSQL retries every wal_retrieve_retry_interval when the archive has
            // nothing new; the default 5 s would slow the test down.
            .set("wal_retrieve_retry_interval", "200ms"),
    );
    standby.write_signal(STANDBY_SIGNAL);
    standby.start();
    let mut last = None;
    for _ in 0..3 {
        last = Some(load_round(&setup.primary, 100));
    }
    let last = last.expect("a round");
    setup.primary.wait_archived(&last.segment, TIMEOUT);
    standby.wait_replayed(&last.lsn, TIMEOUT);
    assert_eq!(standby.count_rows(TABLE), last.rows);
    assert!(standby.is_in_recovery());
    let log = standby.server_log();
    assert!(
        !log.contains("LOG : waiting for"),
        "pitr-restore waited in standby mode\n{}",
        pitr_tests::cluster::tail(&log, 40)
    );
    assert!(
        log.contains("pitr-restore : LOG : Segment"),
        "nothing restored by pitr-restore\n{}",
        pitr_tests::cluster::tail(&log, 40)
    );

    standby.promote();
    assert!(!standby.is_in_recovery());
    assert_eq!(standby.count_rows(TABLE), last.rows);
    standby.psql(&format!("INSERT INTO {TABLE} (payload) VALUES ('after')"));
}

#[test]
fn recovery_delay_holds_back_a_truncate_until_a_finish_now() {
    /// The delay: long enough to check the standby and touch the trigger after the
    /// TRUNCATE's segment is archived, even on a busy machine.
    const DELAY: u64 = 20;
    let setup = Setup::local("delay");
    let trigger = setup.trigger("finish.trigger");
    let base = format!("{} --finish-trigger {}", setup.source(), trigger.display());
    // Start without a delay, so that the base backup's segments need not age first.
    let standby = warm_spare(&setup.primary, "delay-standby", &base, &[]);
    standby.start();
    let delayed = restore_command(&format!("{base} --verbose --recovery-delay {DELAY}"));
    standby.append_conf(&[("restore_command", &delayed)]);
    standby.reload();
    wait_until("the reloaded restore_command", TIMEOUT, || {
        standby
            .psql("SHOW restore_command")
            .contains("--recovery-delay")
            .then_some(())
    });
    // The call already waiting runs the old command: it takes the next segment at once.
    let (first, first_lsn) = setup.primary.switch_wal_at();
    standby.wait_replayed(&first_lsn, TIMEOUT);
    let next = next_segment(&first);
    wait_log(
        &standby,
        0,
        &["Called with parameters", "--recovery-delay", &next],
        TIMEOUT,
    );

    // Rows committed now reach the standby only once their segment is DELAY seconds old.
    let round = load_round(&setup.primary, 50);
    let switched = Instant::now();
    assert_eq!(round.segment, next);
    let too_fresh = format!("{next} found, but it is too fresh");
    let held = poll_until(TIMEOUT, || {
        if standby.server_log().contains(&too_fresh) {
            return Some(true);
        }
        standby.has_replayed(&round.lsn).then_some(false)
    });
    assert_eq!(
        held,
        Some(true),
        "{next} was not held back (replayed: {}) after {:?}",
        standby.has_replayed(&round.lsn),
        switched.elapsed()
    );
    standby.wait_replayed(&round.lsn, TIMEOUT + Duration::from_secs(DELAY));
    let took = switched.elapsed();
    assert!(
        took >= Duration::from_secs(DELAY - 2),
        "{next} was replayed {took:?} after it was archived, before the {DELAY} s delay"
    );
    assert_eq!(standby.count_rows(TABLE), round.rows);
    let repeats = standby
        .server_log()
        .lines()
        .filter(|l| l.contains(&too_fresh))
        .count();
    assert!(
        repeats <= 2,
        "the wait for {next} was logged {repeats} times in {DELAY} s: a waiting condition is \
         logged when it changes, and once a minute while it lasts"
    );

    // The operator's mistake: caught within the window.
    setup.primary.psql(&format!("TRUNCATE {TABLE}"));
    let (truncate, _) = setup.primary.switch_wal_at();
    let truncated = Instant::now();
    setup.primary.wait_archived(&truncate, TIMEOUT);
    let archived = ArchiveDir::new(&setup.archive).path_for(&truncate);
    assert_eq!(
        FileStamp::of(&archived).mtime,
        FileStamp::of(&setup.primary.wal_dir().join(&truncate)).mtime,
        "the archived {truncate} does not keep the WAL file's mtime"
    );
    wait_log(
        &standby,
        0,
        &[&format!("{truncate} found, but it is too fresh")],
        TIMEOUT,
    );
    assert_eq!(standby.count_rows(TABLE), round.rows);
    pg_user().write_file(&trigger, b"NOW\n");
    standby.wait_promoted(TIMEOUT);
    let window = truncated.elapsed();
    assert!(
        window < Duration::from_secs(DELAY),
        "the finish came {window:?} after the TRUNCATE, outside the {DELAY} s window: the \
         test proves nothing"
    );
    assert_eq!(
        standby.count_rows(TABLE),
        round.rows,
        "the TRUNCATE reached the promoted standby"
    );
    assert_eq!(setup.primary.count_rows(TABLE), 0);
}

/// Load on `primary`, a checkpoint there replayed by `standby`, then a CHECKPOINT on the
/// standby: it makes a restart point, and its REDO location moves forward. Returns the REDO
/// WAL file.
fn make_restartpoint(primary: &Cluster, standby: &Cluster) -> String {
    for _ in 0..2 {
        load_round(primary, 50);
    }
    primary.psql("CHECKPOINT");
    let round = load_round(primary, 50);
    primary.wait_archived(&round.segment, TIMEOUT);
    standby.wait_replayed(&round.lsn, TIMEOUT);
    standby.psql("CHECKPOINT");
    standby.psql("SELECT redo_wal_file FROM pg_control_checkpoint()")
}

/// The archived WAL files among `names` (hidden files left out) before `wal` by position.
fn archived_before(names: &[String], wal: &str) -> Vec<String> {
    names
        .iter()
        .filter(|n| !n.starts_with('.') && wal_name_of(n).get(..24).is_some_and(|p| p < wal))
        .cloned()
        .collect()
}

#[test]
fn remove_unneeded_follows_restartpoints_pauses_on_trigger_and_keeps_history() {
    let setup = Setup::local("remove");
    let pause = setup.trigger("removal.pause");
    pg_user().write_file(&pause, b"");
    let history = "00000007.history";
    pg_user().write_file(
        &setup.archive.join(history),
        b"1\t0/9000000\tno recovery target specified\n",
    );
    let standby = warm_spare(
        &setup.primary,
        "remove-standby",
        &format!(
            "{} --remove-unneeded --removal-pause-trigger {}",
            setup.source(),
            pause.display()
        ),
        &[],
    );
    standby.start();
    let redo = make_restartpoint(&setup.primary, &standby);
    let archive = ArchiveDir::new(&setup.archive);
    let unneeded = |names: &[String]| archived_before(names, &redo);
    let old = unneeded(&archive.names());
    assert!(
        old.len() >= 3,
        "too few archived files before the REDO file {redo}: {:?}",
        archive.names()
    );

    // A call that starts now sees the new REDO location and the pause trigger.
    let since = standby.server_log_len();
    let round = load_round(&setup.primary, 10);
    setup.primary.wait_archived(&round.segment, TIMEOUT);
    standby.wait_replayed(&round.lsn, TIMEOUT);
    let paused = format!(
        "removal pause trigger {} exists; not removing any old segments",
        pause.display()
    );
    let seen = poll_until(TIMEOUT, || {
        if unneeded(&archive.names()) != old {
            return Some(false);
        }
        standby
            .server_log_since(since)
            .contains(&paused)
            .then_some(true)
    });
    let still = unneeded(&archive.names());
    assert_eq!(still, old, "files removed while the pause trigger existed");
    assert_eq!(
        seen,
        Some(true),
        "no {paused:?} in the log\n{}",
        pitr_tests::cluster::tail(&standby.server_log_since(since), 40)
    );

    // A directory whose cluster marker names another database system is never cleaned: the
    // source might be another cluster's archive. With the pause trigger gone and the marker
    // replaced, the waiting calls say so and remove nothing.
    let marker = setup.archive.join(CLUSTER_MARKER);
    let ours = std::fs::read(&marker).expect("the archive's cluster marker");
    pg_user().write_file(&marker, b"system_identifier = 12345\n");
    let since = standby.server_log_len();
    std::fs::remove_file(&pause).expect("removing the pause trigger");
    let refused = format!(
        "ERROR : not removing old segments from {}: {} says the archive holds WAL of database \
         system 12345, not ",
        setup.archive.display(),
        marker.display()
    );
    let seen = poll_until(TIMEOUT, || {
        if unneeded(&archive.names()) != old {
            return Some(false);
        }
        standby
            .server_log_since(since)
            .contains(&refused)
            .then_some(true)
    });
    assert_eq!(
        unneeded(&archive.names()),
        old,
        "files removed from an archive marked as another system's"
    );
    assert_eq!(
        seen,
        Some(true),
        "no {refused:?} in the log\n{}",
        pitr_tests::cluster::tail(&standby.server_log_since(since), 40)
    );

    // Our marker back, but the archive read-only for the PostgreSQL user: removal fails, which
    // is an ERROR in the log (once per call), never the end of recovery.
    pg_user().write_file(&marker, &ours);
    let since = standby.server_log_len();
    let writable = std::fs::metadata(&setup.archive).unwrap().permissions();
    std::fs::set_permissions(
        &setup.archive,
        std::os::unix::fs::PermissionsExt::from_mode(0o555),
    )
    .unwrap();
    let cannot = format!(
        "ERROR : cannot remove old segments from {}: removing ",
        setup.archive.display()
    );
    let seen = poll_until(TIMEOUT, || {
        standby
            .server_log_since(since)
            .contains(&cannot)
            .then_some(())
    });
    assert!(
        seen.is_some(),
        "no {cannot:?} in the log\n{}",
        pitr_tests::cluster::tail(&standby.server_log_since(since), 40)
    );
    assert_log_line(
        &standby,
        &[
            "HINT : the user PostgreSQL runs as needs write access to",
            "for --remove-unneeded; recovery goes on",
        ],
    );
    assert_eq!(unneeded(&archive.names()), old);
    assert!(standby.is_in_recovery());
    assert!(
        !standby
            .server_log_since(since)
            .contains("could not restore file"),
        "{}",
        pitr_tests::cluster::tail(&standby.server_log_since(since), 40)
    );
    std::fs::set_permissions(&setup.archive, writable).unwrap();

    // Writable again: the next waiting call cleans up.
    wait_until(
        "the standby to remove the archived files older than its REDO file",
        TIMEOUT,
        || unneeded(&archive.names()).is_empty().then_some(()),
    );
    let names = archive.names();
    assert!(
        names.contains(&history.to_owned()),
        "{history} removed: {names:?}"
    );
    assert!(
        names.iter().any(|n| wal_name_of(n) == redo),
        "the REDO file {redo} itself was removed: {names:?}"
    );
    assert_log_line(
        &standby,
        &["removed, as it is too old", &format!("older than {redo}")],
    );

    // What is left is enough to start again.
    standby.stop();
    standby.start();
    assert!(standby.is_in_recovery());
    assert_eq!(standby.count_rows(TABLE), round.rows);
}

/// OmniPITR's `-r %r %f %p`, as the seed writes it. PostgreSQL's `%r` is all zeros for every
/// history file and for every segment asked for before redo starts ("remove nothing"), and
/// later the restart point's file, before which archived files go. The zeros used to be
/// refused as no WAL file name (status 127), which stopped the server at its first call.
#[test]
fn remove_unneeded_with_percent_r_takes_zeros_as_nothing_then_follows_the_restart_point() {
    let setup = Setup::local("remove-r");
    let standby = warm_spare(
        &setup.primary,
        "remove-r-standby",
        &format!("{} -r %r", setup.source()),
        &[],
    );
    standby.start();
    let redo = make_restartpoint(&setup.primary, &standby);
    let archive = ArchiveDir::new(&setup.archive);
    let older = |names: &[String]| archived_before(names, &redo);
    assert!(
        older(&archive.names()).len() >= 3,
        "too few archived files before the restart point's {redo}: {:?}",
        archive.names()
    );
    // The next call waits with %r = the restart point's file and removes what is older.
    let round = load_round(&setup.primary, 10);
    setup.primary.wait_archived(&round.segment, TIMEOUT);
    wait_until(
        "the standby to remove the archived files older than its restart point",
        TIMEOUT,
        || older(&archive.names()).is_empty().then_some(()),
    );
    standby.wait_replayed(&round.lsn, TIMEOUT);
    assert_eq!(standby.count_rows(TABLE), round.rows);
    assert!(
        archive.names().iter().any(|n| wal_name_of(n) == redo),
        "the restart point's file {redo} itself was removed: {:?}",
        archive.names()
    );
    assert_log_line(
        &standby,
        &["removed, as it is too old", &format!("older than {redo}")],
    );
    // What the server asked with zeros was answered, never refused.
    assert!(
        !standby.server_log().contains("could not restore file"),
        "{}",
        pitr_tests::cluster::tail(&standby.server_log(), 40)
    );

    // Without %r the oldest file needed is pg_control's REDO, but not while backup_label is
    // there: until recovery has read it, pg_control is the one copied with the base backup,
    // whose REDO may be past where recovery starts. A removal pass before the first hand-over
    // (--remove-before) in a fresh base backup removes nothing; once recovery has taken the
    // label (renamed backup_label.old), it removes what is older than the REDO.
    load_round(&setup.primary, 50);
    let copy = setup
        .primary
        .base_backup("remove-r-copy", "none", ClusterOpts::new());
    let round = load_round(&setup.primary, 10);
    setup.primary.wait_archived(&round.segment, TIMEOUT);
    let copy_redo = {
        let label = std::fs::read_to_string(copy.data_path("backup_label")).unwrap();
        let start = label
            .lines()
            .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
            .unwrap();
        start
            .rsplit_once("(file ")
            .unwrap()
            .1
            .trim_end_matches(')')
            .to_owned()
    };
    let older_than_copy = |names: &[String]| archived_before(names, &copy_redo);
    let before = older_than_copy(&archive.names());
    assert!(!before.is_empty(), "nothing archived before {copy_redo}");
    let pass = || {
        Tool::new("pitr-restore")
            .as_pg_user()
            .arg("--data-dir")
            .arg(copy.data_dir())
            .args(["--source", &format!("zstd={}", setup.archive.display())])
            .args([
                "--remove-unneeded",
                "--remove-before",
                "--remove-at-a-time",
                "100",
            ])
            // A standby's call: a missing file is answered at once.
            .arg("--streaming-replication")
            .args(["0000000100000000000000FF", "pg_wal/RECOVERYXLOG"])
            .run()
    };
    pass().failure_with_status(1);
    assert_eq!(older_than_copy(&archive.names()), before);
    std::fs::rename(
        copy.data_path("backup_label"),
        copy.data_path("backup_label.old"),
    )
    .unwrap();
    pass().failure_with_status(1);
    assert_eq!(older_than_copy(&archive.names()), Vec::<String>::new());
}

/// Flips 64 bytes in the middle of `bytes`.
fn flipped(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = out.len() / 2;
    for b in &mut out[at..at + 64] {
        *b ^= 0x5a;
    }
    out
}

/// A segment called `name` from another database system: a second cluster switches WAL until
/// it completes a segment of that name.
fn foreign_segment(name: &str) -> Vec<u8> {
    let other = Cluster::init(
        "foreign",
        ClusterOpts::new()
            .wal_segsize_mb(SEG_MB)
            .set("wal_keep_size", "64MB"),
    );
    other.start();
    let segment = wait_until("the other cluster to reach the segment", TIMEOUT, || {
        let done = other.switch_wal();
        assert!(
            done.as_str() <= name,
            "the other cluster went past {name} ({done})"
        );
        (done == name).then_some(done)
    });
    let bytes = other.wal_file(&segment);
    other.stop();
    bytes
}

/// A warm spare never hands over, nor ends recovery on, a damaged or foreign archived segment:
/// pitr-restore logs the refusal and checks the file again while it stays the same, for
/// `REFUSED_GRACE` (10 s), then exits 126 and PostgreSQL stops, recovery.signal kept, nothing
/// promoted (SPEC: on a warm spare any doubt about the archive exits 126). Once the file is
/// repaired the spare starts again and goes on. A file replaced within the grace (a copy still
/// being written under its final name) is checked again and restored by the same call.
#[test]
fn damaged_or_foreign_archived_segment_stops_a_warm_spare_until_repaired() {
    let setup = Setup::local("damaged");
    let source = setup.work.subdir("feed");
    let spare = warm_spare(
        &setup.primary,
        "damaged-spare",
        &format!("--source zstd={}", source.display()),
        &[],
    );
    feed(&setup.archive, &source, |_| true);
    spare.start();
    let before = spare.count_rows(TABLE);
    let round = load_round(&setup.primary, 100);
    setup.primary.wait_archived(&round.segment, TIMEOUT);
    let name = round.segment.clone();
    let archive = ArchiveDir::new(&setup.archive);
    let good = archive.raw(&format!("{name}.zst"));
    let previous = archive.raw(
        &archive
            .file_for(&archive_previous(&archive, &name))
            .expect("the previous segment's archived file"),
    );
    let zst = source.join(format!("{name}.zst"));
    let raw = source.join(&name);
    let truncated = good[..good.len() / 2].to_vec();
    let cases: Vec<(&str, &Path, Vec<u8>, &str)> = vec![
        (
            "flipped bytes",
            zst.as_path(),
            flipped(&good),
            "cannot be decompressed",
        ),
        (
            "another database system's segment",
            raw.as_path(),
            foreign_segment(&name),
            "is from database system",
        ),
        (
            "truncated",
            zst.as_path(),
            truncated.clone(),
            "cannot be decompressed",
        ),
        (
            "the previous segment under this name",
            zst.as_path(),
            previous,
            "but its name says",
        ),
    ];
    // Where the log of the server running now starts.
    let mut started = 0;
    for (what, path, bytes, why) in cases {
        wait_log(&spare, started, &["LOG : waiting for", &name], TIMEOUT);
        let since = spare.server_log_len();
        place(path, &bytes);
        let refusal = [
            "ERROR : ",
            &format!("archived {name} is not usable, not restoring it"),
            &path.display().to_string(),
            why,
        ];
        let line = wait_log(&spare, since, &refusal, TIMEOUT);
        let pid = log_pid(&line);
        // The same call checks the unchanged file until the grace is over, then stops recovery.
        wait_until("the refused spare to stop", TIMEOUT, || {
            (!spare.server_alive()).then_some(())
        });
        spare.mark_stopped();
        let log = spare.server_log_since(since);
        let fatal = log
            .lines()
            .find(|l| {
                l.contains("pitr-restore : FATAL : ") && refusal[1..].iter().all(|f| l.contains(f))
            })
            .unwrap_or_else(|| {
                panic!("{what}: no pitr-restore FATAL line with {refusal:?}\n{log}")
            });
        assert_eq!(
            log_pid(fatal),
            pid,
            "{what}: another call stopped recovery\n{log}"
        );
        assert!(
            log.lines()
                .any(|l| l.contains("pitr-restore : HINT : ")
                    && l.contains("start the server again")),
            "{what}: no HINT after the FATAL line\n{log}"
        );
        assert!(
            log.lines().any(|l| l.contains("FATAL:")
                && l.contains("could not restore file")
                && l.contains("command not executable")),
            // PostgreSQL's words for status 126.
            "{what}: PostgreSQL did not stop recovery on status 126\n{log}"
        );
        assert!(
            spare.has_file(RECOVERY_SIGNAL),
            "{what}: recovery.signal is gone"
        );
        assert!(
            !spare.has_file("pg_wal/00000002.history"),
            "{what}: the spare switched to a new timeline"
        );
        // Repaired (here: the bad file taken away), the spare starts and waits again, having
        // replayed nothing of the bad file.
        std::fs::remove_file(path).expect("removing the bad file");
        started = spare.server_log_len();
        spare.start();
        assert!(
            spare.is_in_recovery(),
            "{what}: the restarted spare left recovery"
        );
        assert_eq!(
            spare.count_rows(TABLE),
            before,
            "the spare replayed a segment with {what}"
        );
    }

    // A file replaced within the grace: the waiting call refuses the half-written copy, checks
    // the new one and restores it.
    let waiting = wait_log(&spare, started, &["LOG : waiting for", &name], TIMEOUT);
    let since = spare.server_log_len();
    let pid = log_pid(&waiting);
    place(&zst, &truncated);
    wait_log(
        &spare,
        since,
        &[
            &format!(" : {pid} : pitr-restore : ERROR : "),
            &format!("archived {name} is not usable"),
        ],
        TIMEOUT,
    );
    std::fs::remove_file(&zst).expect("removing the half-written copy");
    feed(&setup.archive, &source, |_| true);
    spare.wait_replayed(&round.lsn, TIMEOUT);
    assert_eq!(spare.count_rows(TABLE), round.rows);
    assert!(spare.is_in_recovery());
    assert_log_line(
        &spare,
        &[
            &format!(" : {pid} : pitr-restore : "),
            &format!("LOG : Segment {name} restored"),
        ],
    );
}

/// `--streaming-replication` in a warm spare's restore_command (recovery.signal, no
/// standby.signal: OmniPITR's `-sr` carried over, or `--from-backup --streaming-replication`
/// without `--standby`): there status 1 ends recovery, so an archive in doubt must still stop
/// the server (126), not promote it at the damaged segment. Before, the option alone decided,
/// and the spare promoted with the rows after the damage lost.
#[test]
fn streaming_replication_option_in_a_warm_spare_still_stops_on_a_damaged_segment() {
    let setup = Setup::local("sr-spare");
    let source = setup.work.subdir("feed");
    let spare = warm_spare(
        &setup.primary,
        "sr-spare-spare",
        &format!("--streaming-replication --source zstd={}", source.display()),
        &[],
    );
    let round = load_round(&setup.primary, 100);
    setup.primary.wait_archived(&round.segment, TIMEOUT);
    feed(&setup.archive, &source, |_| true);
    let zst = source.join(format!("{}.zst", round.segment));
    let good = std::fs::read(&zst).expect("the archived segment");
    place(&zst, &flipped(&good));
    // The spare may or may not reach consistency before it asks for the damaged segment: the
    // outcome is what counts.
    let since = spare.server_log_len();
    let _ = spare.try_start();
    wait_until("the spare to stop on the damaged segment", TIMEOUT, || {
        (!spare.server_alive()).then_some(())
    });
    spare.mark_stopped();
    let log = spare.server_log_since(since);
    assert!(
        !log.contains("archive recovery complete") && !log.contains("selected new timeline"),
        "the spare ended recovery at the damaged segment\n{log}"
    );
    assert!(
        spare.has_file(RECOVERY_SIGNAL),
        "recovery.signal is gone\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("pitr-restore : WARNING : ")
            && l.contains("--streaming-replication is overruled")),
        "no WARNING that the option was overruled\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("pitr-restore : FATAL : ")
            && l.contains(&format!("archived {} is not usable", round.segment))),
        "no FATAL refusal\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("FATAL:")
            && l.contains("could not restore file")
            && l.contains("command not executable")),
        "PostgreSQL did not stop recovery on status 126\n{log}"
    );
    // Found by the fault campaign (damage, run 22 of seed 547197): a repair that removes the
    // damaged copy before it writes the good one. The file the waiting call refused is gone
    // for a moment, which is not the end of the archive: status 1 there ended the spare's
    // recovery before the segment and lost its rows. The call waits for the new copy.
    let since = spare.server_log_len();
    let _ = spare.try_start();
    let refusal = format!("ERROR : archived {} is not usable", round.segment);
    wait_until(
        "the restarted spare to refuse the file again",
        TIMEOUT,
        || {
            spare
                .server_log_since(since)
                .contains(&refusal)
                .then_some(())
        },
    );
    std::fs::remove_file(&zst).unwrap();
    let waiting = format!("pitr-restore : LOG : waiting for {}", round.segment);
    let seen = poll_until(TIMEOUT, || {
        let log = spare.server_log_since(since);
        if log.contains("archive recovery complete") || !spare.server_alive() {
            return Some(false);
        }
        log.contains(&waiting).then_some(true)
    });
    assert_eq!(
        seen,
        Some(true),
        "the call did not wait for the removed file\n{}",
        pitr_tests::cluster::tail(&spare.server_log_since(since), 40)
    );
    // Written back good, the same call restores it and the spare replays every row (then,
    // with --streaming-replication, it ends recovery at the end of the archive).
    place(&zst, &good);
    spare.wait_replayed(&round.lsn, TIMEOUT);
    assert_eq!(spare.count_rows(TABLE), round.rows);
}

/// The pid in a pitr log line (`DATE TIME ZONE : PID : TOOL : LEVEL : message`).
fn log_pid(line: &str) -> u32 {
    line.split(" : ")
        .nth(1)
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in log line {line:?}"))
}

/// The archived segment just before `name` (the archive holds it: segments are archived in
/// order).
fn archive_previous(archive: &ArchiveDir, name: &str) -> String {
    archive
        .names()
        .iter()
        .map(|n| wal_name_of(n).to_owned())
        .filter(|n| n.len() == 24 && n.as_str() < name)
        .max()
        .unwrap_or_else(|| panic!("no segment before {name} in {:?}", archive.names()))
}

/// Starts `spare` expecting recovery to stop: pg_ctl fails, the server is gone, it did not
/// promote (`recovery.signal` is still there, no new timeline) and its log has pitr-restore's
/// FATAL line with `reason` and PostgreSQL's own FATAL.
pub(crate) fn assert_refuses_recovery(spare: &Cluster, reason: &str) {
    let since = spare.server_log_len();
    let started = spare.try_start();
    assert!(
        started.is_err(),
        "the server started with a broken restore_command\n{}",
        pitr_tests::cluster::tail(&spare.server_log(), 40)
    );
    wait_until("the refused server to exit", TIMEOUT, || {
        (!spare.server_alive()).then_some(())
    });
    spare.mark_stopped();
    let log = spare.server_log_since(since);
    assert!(
        log.lines()
            .any(|l| l.contains("pitr-restore : FATAL : ") && l.contains(reason)),
        "no pitr-restore FATAL line with {reason:?}\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("FATAL:") && l.contains("could not restore file")),
        "PostgreSQL did not stop recovery on the restore_command's status\n{log}"
    );
    assert!(spare.has_file(RECOVERY_SIGNAL), "recovery.signal is gone");
    assert!(
        !spare.has_file("pg_wal/00000002.history"),
        "the server switched to a new timeline"
    );
}

#[test]
fn mistyped_restore_command_or_missing_archive_stops_recovery_instead_of_promoting() {
    let setup = Setup::local("typo");
    let spare = warm_spare(
        &setup.primary,
        "typo-spare",
        &format!("--sorce zstd={}", setup.archive.display()),
        &[],
    );
    assert_refuses_recovery(&spare, "--sorce");

    let missing = setup.work.path().join("no-such-archive");
    spare.append_conf(&[(
        "restore_command",
        &restore_command(&format!("--source zstd={}", missing.display())),
    )]);
    assert_refuses_recovery(&spare, &format!("cannot read source {}", missing.display()));

    // Nothing was damaged: with the command fixed, recovery goes on.
    spare.append_conf(&[("restore_command", &restore_command(&setup.source()))]);
    spare.start();
    assert!(spare.is_in_recovery());
    assert_eq!(spare.count_rows(TABLE), setup.primary.count_rows(TABLE));
}

#[test]
fn promoted_standby_starts_a_timeline_that_a_second_standby_follows() {
    let setup = Setup::local("timeline");
    let trigger = setup.trigger("finish.trigger");
    // A archives after its promotion, with the primary's archive_command (same archive).
    let a = warm_spare(
        &setup.primary,
        "timeline-a",
        &format!("{} --finish-trigger {}", setup.source(), trigger.display()),
        &[("archive_mode", "on")],
    );
    // B starts later from the same base backup, without a trigger, on the latest timeline.
    let b = a.clone_stopped(
        "timeline-b",
        ClusterOpts::new()
            .set("restore_command", &restore_command(&setup.source()))
            .set("recovery_target_timeline", "latest"),
    );
    a.start();
    let round = load_round(&setup.primary, 100);
    setup.primary.wait_archived(&round.segment, TIMEOUT);
    a.wait_replayed(&round.lsn, TIMEOUT);

    // Failover: the primary is gone, everything it committed is archived.
    setup.primary.stop();
    assert_eq!(setup.primary.ready_segments(), Vec::<String>::new());
    pg_user().write_file(&trigger, b"");
    a.wait_promoted(TIMEOUT);
    assert_eq!(a.count_rows(TABLE), round.rows);
    a.wait_archived("00000002.history", TIMEOUT);
    a.pgbench_script(LOAD, 100, 2);
    a.psql("CHECKPOINT");
    let (segment, lsn) = a.switch_wal_at();
    assert!(
        segment.starts_with("00000002"),
        "{segment} is not on timeline 2"
    );
    a.wait_archived(&segment, TIMEOUT);
    let rows = a.count_rows(TABLE);
    assert!(rows > round.rows);
    let archive = ArchiveDir::new(&setup.archive);
    assert!(archive.file_for("00000002.history").is_some());

    b.start();
    b.wait_replayed(&lsn, TIMEOUT);
    assert!(b.is_in_recovery());
    assert_eq!(b.count_rows(TABLE), rows, "B lacks the rows of timeline 2");
    b.psql("CHECKPOINT");
    assert_eq!(
        b.psql("SELECT timeline_id FROM pg_control_checkpoint()"),
        "2",
        "B's restartpoint is not on timeline 2"
    );
    assert_log_line(&b, &["pitr-restore : LOG : ", "00000002.history"]);
}

// ---- The binary on its own (the data dir only provides pg_control). ----

/// pitr-restore run as the PostgreSQL user from the data dir of `cluster`, as the startup
/// process runs it; a call that waits instead of answering fails the test after 20 s.
fn restore(cluster: &Cluster) -> Tool {
    restore_polling(cluster, "0.2")
}

/// [`restore`] with another `--poll-interval`.
fn restore_polling(cluster: &Cluster, seconds: &str) -> Tool {
    Tool::new("pitr-restore")
        .as_pg_user()
        .current_dir(cluster.data_dir())
        .timeout(Duration::from_secs(20))
        .args(["--poll-interval", seconds])
}

/// An initdb'ed cluster (never started) and an empty archive directory.
fn scratch(name: &str) -> (Cluster, PathBuf) {
    let cluster = Cluster::init(
        name,
        ClusterOpts::new()
            .wal_segsize_mb(SEG_MB)
            .set("wal_keep_size", "64MB"),
    );
    let archive = cluster.root().subdir("archive");
    (cluster, archive)
}

/// A complete segment of `cluster` (started for it, stopped again): one PostgreSQL would
/// archive. The segment being written when a server stops is not one: its WAL ends part-way,
/// and pitr-restore refuses it as PostgreSQL would find it ending early.
fn completed_segment(cluster: &Cluster) -> String {
    cluster.start();
    let (segment, _) = cluster.switch_wal_at();
    cluster.stop();
    segment
}

/// The segment an initdb'ed cluster writes to: the first in `pg_wal` (initdb leaves
/// recycled segments after it, whose headers carry their old names).
fn current_segment(cluster: &Cluster) -> String {
    ArchiveDir::new(cluster.wal_dir())
        .names()
        .into_iter()
        .filter(|n| n.len() == 24)
        .min()
        .expect("a segment in pg_wal")
}

/// `%p` as PostgreSQL passes it for segments.
const RECOVERYXLOG: &str = "pg_wal/RECOVERYXLOG";

#[test]
fn restore_exits_1_at_once_for_a_missing_history_file() {
    let (cluster, archive) = scratch("no-history");
    let started = Instant::now();
    restore(&cluster)
        .arg("--source")
        .arg(format!("zstd={}", archive.display()))
        .args(["00000002.history", "pg_wal/RECOVERYHISTORY"])
        .run()
        .failure_with_status(1)
        .stderr_contains("LOG : requested history file 00000002.history is not in the archive");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!cluster.data_path("pg_wal/RECOVERYHISTORY").exists());
}

#[test]
fn restore_exits_1_at_once_for_a_missing_segment_in_standby_mode() {
    let (cluster, archive) = scratch("no-segment");
    restore(&cluster)
        .arg("--streaming-replication")
        .arg("--source")
        .arg(format!("zstd={}", archive.display()))
        .args(["000000010000000000000005", RECOVERYXLOG])
        .run()
        .failure_with_status(1)
        .stderr_lacks("ERROR");
    assert!(!cluster.data_path(RECOVERYXLOG).exists());
}

#[test]
fn restore_usage_error_exits_127_with_a_fatal_line() {
    let (cluster, archive) = scratch("usage");
    restore(&cluster)
        .arg("--sorce")
        .arg(format!("zstd={}", archive.display()))
        .args(["000000010000000000000001", RECOVERYXLOG])
        .run()
        .failure_with_status(127)
        .stderr_line_with(&["pitr-restore : FATAL : ", "--sorce"]);
    restore(&cluster)
        .arg("--source")
        .arg(&archive)
        .arg("000000010000000000000001")
        .run()
        .failure_with_status(127)
        .stderr_line_with(&[
            "pitr-restore : FATAL : ",
            "the WAL file name and the destination path were not both given",
        ]);
}

#[test]
fn restore_exits_126_when_the_source_directory_is_missing() {
    let (cluster, archive) = scratch("no-source");
    let missing = archive.join("missing");
    let result = restore(&cluster)
        .arg("--source")
        .arg(format!("zstd={}", missing.display()))
        .args(["000000010000000000000001", RECOVERYXLOG])
        .run();
    result.failure_with_status(126);
    let line = result.stderr_line_with(&[
        "pitr-restore : FATAL : ",
        &format!("cannot read source {}", missing.display()),
    ]);
    assert!(
        result.stderr_lines()[line + 1].contains(" : HINT : "),
        "no HINT line\n{result}"
    );
}

#[test]
fn restore_finish_trigger_now_exits_1_even_for_an_archived_segment() {
    let (cluster, archive) = scratch("finish");
    let first = completed_segment(&cluster);
    let first = first.as_str();
    Tool::new("pitr-archive")
        .as_pg_user()
        .current_dir(cluster.data_dir())
        .arg("--dst-local")
        .arg(format!("zstd={}", archive.display()))
        .arg(format!("pg_wal/{first}"))
        .succeeds();
    let trigger = cluster.root().path().join("finish.trigger");
    let run = |wal: &str| {
        restore(&cluster)
            .arg("--source")
            .arg(format!("zstd={}", archive.display()))
            .arg("--finish-trigger")
            .arg(&trigger)
            .args([wal, RECOVERYXLOG])
            .run()
    };

    pg_user().write_file(&trigger, b"NOW\n");
    run(first).failure_with_status(1).stderr_contains(&format!(
        "Got immediate finish request: not restoring {first}, ending recovery"
    ));
    assert!(!cluster.data_path(RECOVERYXLOG).exists());

    // But a timeline history file is still answered truthfully: a promoting server picks its
    // new timeline by asking for history files until one is missing, and "missing" for an
    // archived one made it take a timeline another server already has.
    let history = "00000002.history";
    let text = b"1\t0/3000000\tno recovery target specified\n";
    pg_user().write_file(&cluster.data_path(format!("pg_wal/{history}")), text);
    Tool::new("pitr-archive")
        .as_pg_user()
        .current_dir(cluster.data_dir())
        .arg("--dst-local")
        .arg(format!("zstd={}", archive.display()))
        .arg(format!("pg_wal/{history}"))
        .succeeds();
    std::fs::remove_file(cluster.data_path(format!("pg_wal/{history}"))).unwrap();
    run(history).success();
    assert_eq!(
        std::fs::read(cluster.data_path(RECOVERYXLOG)).expect("restored history file"),
        text
    );
    std::fs::remove_file(cluster.data_path(RECOVERYXLOG)).unwrap();
    run("00000003.history")
        .failure_with_status(1)
        .stderr_contains("requested history file 00000003.history is not in the archive");

    // A smart finish still restores what is archived, and ends at the first missing file.
    pg_user().write_file(&trigger, b"");
    run(first)
        .success()
        .stderr_contains(&format!("Segment {first} restored"));
    assert_eq!(
        std::fs::read(cluster.data_path(RECOVERYXLOG)).expect("restored file"),
        cluster.wal_file(first)
    );
    let second = next_segment(first);
    run(&second)
        .failure_with_status(1)
        .stderr_contains(&format!(
            "Got finish request: {second} is not in the archive; ending recovery"
        ));
}

#[test]
fn restore_exits_when_the_server_that_called_it_is_gone() {
    let (cluster, archive) = scratch("orphan");
    // Only a running server's call waits for a missing segment.
    cluster.start();
    let wanted = "000000010000000000000042";
    let log = cluster.root().path().join("restore.log");
    // A shell stands in for the startup process; `; true` keeps it from exec'ing.
    let line = format!(
        "{} --poll-interval 0.2 --source zstd={} {wanted} {RECOVERYXLOG} 2>{}; true",
        pitr_bin("pitr-restore").display(),
        archive.display(),
        log.display()
    );
    let mut caller = pg_user()
        .command("sh")
        .arg("-c")
        .arg(&line)
        .current_dir(cluster.data_dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning sh");
    let archive_arg = format!("zstd={}", archive.display());
    let pattern = ["pitr-restore", archive_arg.as_str(), wanted];
    wait_until("pitr-restore to wait for the segment", TIMEOUT, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.contains(&format!("LOG : waiting for {wanted}"))
            && processes_matching(&pattern)
                .iter()
                .any(|p| !p.cmdline.starts_with("sh ")))
        .then_some(())
    });
    // SIGKILL: the shell dies without passing anything on; pitr-restore is orphaned.
    caller.kill().expect("killing the caller");
    caller.wait().expect("reaping the caller");
    let left = wait_no_process_matching(&pattern, Duration::from_secs(10));
    kill_all(&left);
    assert!(
        left.is_empty(),
        "pitr-restore outlived its caller: {left:?}"
    );
    let text = std::fs::read_to_string(&log).expect("restore log");
    assert!(
        text.contains(&format!(
            "LOG : the server that asked for {wanted} is gone; exiting"
        )),
        "{text}"
    );
    assert!(!cluster.data_path(RECOVERYXLOG).exists());
}

#[test]
fn restore_refuses_a_damaged_segment_logging_it_once_while_it_waits() {
    let (cluster, archive) = scratch("damaged-once");
    let segment = current_segment(&cluster);
    Tool::new("pitr-archive")
        .as_pg_user()
        .current_dir(cluster.data_dir())
        .arg("--dst-local")
        .arg(format!("zstd={}", archive.display()))
        .arg(format!("pg_wal/{segment}"))
        .succeeds();
    let stored = archive.join(format!("{segment}.zst"));
    let good = std::fs::read(&stored).expect("archived segment");
    std::fs::write(&stored, flipped(&good)).expect("damaging the archived segment");
    let log = cluster.root().path().join("restore.log");
    let mut running = restore_polling(&cluster, "0.05")
        .arg("--log")
        .arg(&log)
        .arg("--source")
        .arg(format!("zstd={}", archive.display()))
        .args([segment.as_str(), RECOVERYXLOG])
        .spawn();
    let refusals = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("archived {segment} is not usable")))
            .count()
    };
    wait_until("the refusal in the log", TIMEOUT, || {
        assert!(!running.has_exited(), "pitr-restore exited before refusing");
        (refusals() > 0).then_some(())
    });
    // 40 polls in 2 s: the refusal must not come back on each of them.
    let repeated = poll_until(Duration::from_secs(2), || (refusals() > 1).then_some(()));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        repeated.is_none(),
        "the same refusal is logged on every poll\n{text}"
    );
    assert!(
        text.contains(" : HINT : replace the archived file with a good copy"),
        "{text}"
    );
    assert!(
        !running.has_exited(),
        "pitr-restore gave up on the damaged segment\n{text}"
    );
    // SIGUSR1 means "finish now".
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(running.pid() as libc::pid_t, libc::SIGUSR1) };
    let result = running.wait();
    result.failure_with_status(1);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains(&format!(
            "Got immediate finish request: not restoring {segment}, ending recovery"
        )),
        "{text}"
    );
    assert!(!cluster.data_path(RECOVERYXLOG).exists());
}

/// A stopped cluster whose archive (zstd) holds `count` completed segments; returns them.
fn archived_segments(name: &str, count: usize) -> (PgTempDir, PathBuf, Cluster, Vec<String>) {
    let work = PgTempDir::new(name);
    let archive = work.subdir("archive");
    let command = format!(
        "{} --dst-local zstd={} %p",
        pitr_bin("pitr-archive").display(),
        archive.display()
    );
    let cluster = start_primary(&format!("{name}-cluster"), &command);
    let segments: Vec<String> = (0..count)
        .map(|_| {
            cluster.pgbench_script(LOAD, 20, 1);
            cluster.switch_wal()
        })
        .collect();
    cluster.wait_archived(segments.last().expect("a segment"), TIMEOUT);
    cluster.stop();
    (work, archive, cluster, segments)
}

#[test]
fn restore_prefetches_the_next_segment_and_hands_it_over() {
    let (_work, archive, cluster, segments) = archived_segments("prefetch", 3);
    // Prefetching is for a running server's startup process (pg_rewind calls with it down).
    cluster.start();
    let source = format!("zstd={}", archive.display());
    let spool = cluster.data_path("pg_wal/.pitr-prefetch");
    // What a pitr-restore killed while writing %p leaves in pg_wal (PostgreSQL never removes
    // it): the worker removes it once its writer is gone, and leaves a live writer's alone.
    let mut gone = std::process::Command::new("true")
        .spawn()
        .expect("running true");
    let dead = gone.id();
    gone.wait().expect("waiting for true");
    let dead_temp = cluster.data_path(format!("pg_wal/.RECOVERYXLOG.pitr-tmp.{dead}"));
    let live_temp = cluster.data_path(format!(
        "pg_wal/.RECOVERYXLOG.pitr-tmp.{}",
        std::process::id()
    ));
    pg_user().write_file(&dead_temp, b"partial");
    pg_user().write_file(&live_temp, b"partial");
    restore(&cluster)
        .arg("--source")
        .arg(&source)
        .args([&segments[0], RECOVERYXLOG])
        .run()
        .success()
        .stderr_contains(&format!("LOG : Segment {} restored", segments[0]));
    wait_until(
        "the next segment in the prefetch spool",
        Duration::from_secs(10),
        || spool.join(&segments[1]).is_file().then_some(()),
    );
    assert!(
        !dead_temp.exists(),
        "{} left in pg_wal",
        dead_temp.display()
    );
    assert!(
        live_temp.exists(),
        "a live writer's {} removed",
        live_temp.display()
    );
    std::fs::remove_file(&live_temp).unwrap();
    let archived = ArchiveDir::new(&archive);
    restore(&cluster)
        .arg("--source")
        .arg(&source)
        .args([&segments[1], RECOVERYXLOG])
        .run()
        .success()
        .stderr_contains(&format!(
            "LOG : Segment {} restored (prefetched)",
            segments[1]
        ));
    assert_eq!(
        std::fs::read(cluster.data_path(RECOVERYXLOG)).expect("restored file"),
        archived.wal_content(&segments[1])
    );
}

#[test]
fn restore_discards_a_foreign_file_in_the_prefetch_spool() {
    let (_work, archive, cluster, segments) = archived_segments("spool", 3);
    cluster.start();
    let source = format!("zstd={}", archive.display());
    let spool = cluster.data_path("pg_wal/.pitr-prefetch");
    pg_user().create_dir(&spool, 0o700);
    // A spool filled during this boot of the machine, as the prefetch worker marks it.
    let boot = std::fs::read("/proc/sys/kernel/random/boot_id").expect("the kernel's boot id");
    pg_user().write_file(&spool.join(".boot_id"), &boot);
    let archived = ArchiveDir::new(&archive);
    let wanted = &segments[1];
    let good = archived.wal_content(wanted);
    // The next segment under this name, and this segment from another database system
    // (its header's system identifier changed).
    let mut other_system = good.clone();
    other_system[24] ^= 0xff;
    let planted = [
        (
            "a misnamed segment",
            archived.wal_content(&segments[2]),
            "but its name says",
        ),
        (
            "another system's segment",
            other_system,
            "is from database system",
        ),
    ];
    for (what, bytes, why) in planted {
        pg_user().write_file(&spool.join(wanted), &bytes);
        let result = restore(&cluster)
            .arg("--source")
            .arg(&source)
            .args([wanted.as_str(), RECOVERYXLOG])
            .run();
        result.success();
        result.stderr_line_with(&[
            "WARNING : ",
            &format!("discarding prefetched {wanted}"),
            why,
        ]);
        result
            .stderr_contains(&format!("LOG : Segment {wanted} restored"))
            .stderr_lacks("(prefetched)");
        assert_eq!(
            std::fs::read(cluster.data_path(RECOVERYXLOG)).expect("restored file"),
            good,
            "{what} was handed over"
        );
        assert!(!spool.join(wanted).exists(), "{what} left in the spool");
    }

    // A spool of another boot: its files were not fsynced and a crash may have torn them, so
    // even a misnamed one is not looked at; the archive's copy is restored.
    pg_user().write_file(&spool.join(".boot_id"), b"another-boot\n");
    pg_user().write_file(&spool.join(wanted), &archived.wal_content(&segments[2]));
    let result = restore(&cluster)
        .arg("--source")
        .arg(&source)
        .args([wanted.as_str(), RECOVERYXLOG])
        .run();
    result.success();
    result
        .stderr_contains(&format!("LOG : Segment {wanted} restored"))
        .stderr_lacks("(prefetched)")
        .stderr_lacks("discarding prefetched");
    assert_eq!(
        std::fs::read(cluster.data_path(RECOVERYXLOG)).expect("restored file"),
        good,
        "a spooled file of another boot was handed over"
    );

    // A checked copy that cannot be handed over (here the spool cannot be written; the worker
    // also removes copies it takes for passed, between a call's check and its rename): the
    // call restores the file from the archive. It stopped recovery with 126 before, a
    // standby's too.
    pg_user().write_file(&spool.join(".boot_id"), &boot);
    pg_user().write_file(&spool.join(wanted), &good);
    std::fs::remove_file(cluster.data_path(RECOVERYXLOG)).unwrap();
    pitr_tests::user::set_mode(&spool, 0o500);
    let result = restore(&cluster)
        .arg("--source")
        .arg(&source)
        .args([wanted.as_str(), RECOVERYXLOG])
        .run();
    pitr_tests::user::set_mode(&spool, 0o700);
    result.success();
    result.stderr_line_with(&[
        "WARNING : ",
        &format!("cannot hand over prefetched {wanted}: "),
        "; restoring it from the archive",
    ]);
    result
        .stderr_contains(&format!("LOG : Segment {wanted} restored"))
        .stderr_lacks("(prefetched)");
    assert_eq!(
        std::fs::read(cluster.data_path(RECOVERYXLOG)).expect("restored file"),
        good
    );
}

// ---- Regression tests of the defects of issue 12 (named after them). ----

/// A scratch cluster with a full segment in `pg_wal` (every byte of it record data, no switch
/// padding), stopped again: returns the cluster and the segment's name.
pub(crate) fn full_segment(name: &str) -> (Cluster, String) {
    let cluster = Cluster::init(
        name,
        ClusterOpts::new()
            .wal_segsize_mb(SEG_MB)
            .set("wal_keep_size", "64MB"),
    );
    cluster.start();
    cluster.psql("CREATE TABLE filler (payload text)");
    let first = cluster.psql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())");
    // About 4 MiB of WAL: the segment after `first` is written from its first byte to its last.
    cluster
        .psql("INSERT INTO filler SELECT repeat(md5(i::text), 6) FROM generate_series(1, 12000) i");
    let full = next_segment(&first);
    cluster.switch_wal_at();
    cluster.stop();
    (cluster, full)
}

/// `bytes` with `len` bytes overwritten at `at`.
pub(crate) fn overwritten(bytes: &[u8], at: usize, len: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (i, b) in out[at..at + len].iter_mut().enumerate() {
        *b = [0xde, 0xad, 0xbe, 0xef][i % 4];
    }
    out
}

/// `bytes` in the stored form `codec` (`none`, `gzip`, `zstd`) and that form's file name.
fn stored(codec: &str, name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    use std::io::Write;
    match codec {
        "none" => (name.to_owned(), bytes.to_vec()),
        "gzip" => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(bytes).unwrap();
            (format!("{name}.gz"), enc.finish().unwrap())
        }
        "zstd" => (format!("{name}.zst"), zstd::encode_all(bytes, 1).unwrap()),
        other => panic!("no codec {other}"),
    }
}

/// The files pitr-restore may have left in `pg_wal` under a temporary name.
fn temps_in(cluster: &Cluster) -> Vec<String> {
    ArchiveDir::new(cluster.wal_dir())
        .all_names()
        .into_iter()
        .filter(|n| n.contains(".pitr-tmp."))
        .collect()
}

/// Where r12_1 keeps its archived copies: a directory, or a prefix of a Garage bucket (the
/// store and the `--config-file` that reaches it).
enum Place<'a> {
    Dir(PathBuf),
    S3 {
        garage: &'a GarageCluster,
        store: Box<pitr_common::objstore::Store>,
        prefix: String,
        config: PathBuf,
    },
}

impl Place<'_> {
    /// The location argument for `codec`.
    fn location(&self, codec: &str) -> String {
        match self {
            Place::Dir(dir) => format!("{codec}={}", dir.display()),
            Place::S3 { garage, prefix, .. } => {
                format!("{codec}=s3://{}/{prefix}", garage.bucket())
            }
        }
    }

    /// `tool` given the settings this place needs.
    fn configured(&self, tool: Tool) -> Tool {
        match self {
            Place::Dir(_) => tool,
            Place::S3 { config, .. } => tool.arg("--config-file").arg(config),
        }
    }

    /// How pitr names `file` here in messages.
    fn shown(&self, file: &str) -> String {
        match self {
            Place::Dir(dir) => dir.join(file).display().to_string(),
            Place::S3 { garage, prefix, .. } => {
                format!("s3://{}/{prefix}/{file}", garage.bucket())
            }
        }
    }

    /// Archives `name` of `cluster` with pitr-archive, uncompressed.
    fn archive(&self, cluster: &Cluster, name: &str) {
        let dst = match self {
            Place::Dir(_) => "--dst-local",
            Place::S3 { .. } => "--dst-remote",
        };
        self.configured(Tool::new("pitr-archive"))
            .as_pg_user()
            .current_dir(cluster.data_dir())
            .arg(dst)
            .arg(self.location("none"))
            .arg(format!("pg_wal/{name}"))
            .succeeds();
    }

    /// Damages `file`, which pitr-archive wrote, in place: its content becomes `bad`, and what
    /// pitr recorded with it (the CRC-32C of `good`) stays, as with bit rot.
    fn damage(&self, file: &str, good: &[u8], bad: &[u8]) {
        match self {
            Place::Dir(dir) => {
                let path = dir.join(file);
                let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                if bad.len() < good.len() {
                    f.set_len(bad.len() as u64).unwrap();
                }
                use std::os::unix::fs::FileExt;
                f.write_all_at(bad, 0).unwrap();
                f.sync_all().unwrap();
            }
            Place::S3 { store, .. } => {
                let crc = pitr_common::walcrc::of(good);
                store
                    .put_after_look(file, bad.to_vec().into(), Instant::now(), Some(crc))
                    .unwrap();
            }
        }
    }

    /// Stores `bytes` as `file` the way another tool would (no digest recorded). In a store the
    /// cluster marker comes first, from pitr-archive's own run for `name` (whose copy goes).
    fn put_foreign(&self, cluster: &Cluster, name: &str, file: &str, bytes: &[u8]) {
        match self {
            Place::Dir(dir) => pg_user().write_file(&dir.join(file), bytes),
            Place::S3 { store, .. } => {
                self.archive(cluster, name);
                store.delete(name).unwrap();
                store.put_new(file, bytes.to_vec()).unwrap();
            }
        }
    }
}

/// Defect 1 of issue 12: a damaged plain segment was handed to PostgreSQL (only its first page
/// header and size were checked), and a warm spare promoted early. Now every stored form is
/// checked whole, in a directory and in an object store alike: a page header or a record's
/// data damaged in the middle, or a truncation, is refused for plain files pitr-archive wrote
/// (which carry a CRC-32C: an extended attribute, or the object's `pitr-crc32c` metadata),
/// plain files copied by other tools (no digest: every WAL record's CRC is checked), gzip and
/// zstd (damaged before compression, so that the codec's own checksum is of no help).
#[test]
fn r12_1_damaged_segment_is_refused_in_every_stored_form() {
    let (cluster, name) = full_segment("r12-1");
    let good = cluster.wal_file(&name);
    let seg = good.len();
    assert_eq!(seg, (SEG_MB as usize) << 20);
    // 16 bytes inside records: the alignment padding between two records (at most 7 bytes,
    // read by nobody, PostgreSQL included) cannot hold them all.
    let damages: Vec<(&str, Vec<u8>)> = vec![
        (
            "a page header at the middle",
            overwritten(&good, seg / 2, 4),
        ),
        ("a record's data", overwritten(&good, seg / 2 + 3000, 16)),
        (
            "a record's data near the end",
            overwritten(&good, seg - 40, 16),
        ),
        ("truncation", good[..seg / 2].to_vec()),
    ];
    let work = cluster.root().subdir("r12-1-work");
    let garage = GarageCluster::start();
    let config = garage.pitr_config(&work);
    let mut case = 0;
    for kind in ["directory", "object store"] {
        for form in ["none by pitr-archive", "none by cp", "gzip", "zstd"] {
            let codec = form.split(' ').next().unwrap();
            let place = |case: usize| match kind {
                "directory" => {
                    let dir = work.join(format!("case-{case}"));
                    pg_user().create_dir(&dir, 0o700);
                    Place::Dir(dir)
                }
                _ => Place::S3 {
                    garage: &garage,
                    store: Box::new(crate::s3::store(&garage, &format!("r12-1/case-{case}"))),
                    prefix: format!("r12-1/case-{case}"),
                    config: config.clone(),
                },
            };
            for (what, bad) in &damages {
                // The record that continues into the next segment is verified only through the
                // digest pitr-archive records (docs/walcheck.md, "What is still undetectable").
                if what.contains("near the end") && form != "none by pitr-archive" {
                    continue;
                }
                case += 1;
                let place = place(case);
                let file = if form == "none by pitr-archive" {
                    // The real thing: pitr-archive writes it (with its digest), then the bytes
                    // go bad where they are stored.
                    place.archive(&cluster, &name);
                    place.damage(&name, &good, bad);
                    name.clone()
                } else {
                    let (file, bytes) = stored(codec, &name, bad);
                    place.put_foreign(&cluster, &name, &file, &bytes);
                    file
                };
                let result = place
                    .configured(restore(&cluster))
                    .arg("--streaming-replication")
                    .arg("--source")
                    .arg(place.location(codec))
                    .args([name.as_str(), RECOVERYXLOG])
                    .run();
                let case_name = format!("{kind}, {form}, {what}");
                assert_eq!(
                    result.code(),
                    Some(1),
                    "{case_name}: not refused with status 1\n{result}"
                );
                result.stderr_line_with(&[
                    "pitr-restore : ERROR : ",
                    &format!("archived {name} is not usable, not restoring it"),
                    &place.shown(&file),
                ]);
                result.stderr_line_with(&["pitr-restore : HINT : "]);
                assert!(
                    !cluster.data_path(RECOVERYXLOG).exists(),
                    "{case_name}: %p written\n{result}"
                );
                assert_eq!(temps_in(&cluster), Vec::<String>::new(), "{case_name}");
            }
            // The same form undamaged is restored, byte for byte.
            case += 1;
            let place = place(case);
            if form == "none by pitr-archive" {
                place.archive(&cluster, &name);
            } else {
                let (file, bytes) = stored(codec, &name, &good);
                place.put_foreign(&cluster, &name, &file, &bytes);
            }
            place
                .configured(restore(&cluster))
                .arg("--streaming-replication")
                .arg("--source")
                .arg(place.location(codec))
                .args([name.as_str(), RECOVERYXLOG])
                .succeeds();
            assert!(
                std::fs::read(cluster.data_path(RECOVERYXLOG)).unwrap() == good,
                "{kind}, {form}: restored bytes differ"
            );
            std::fs::remove_file(cluster.data_path(RECOVERYXLOG)).unwrap();
        }
    }
}

/// Defect 5 of issue 12: a killed pitr-restore left its 16 MiB temporary file in pg_wal, and
/// with `--prefetch 0` nothing removed it; a fast shutdown's SIGTERM was not handled. The next
/// call removes the temporary files of dead writers (a live writer's stays), and a SIGTERM ends
/// a waiting call at once, leaving nothing.
#[test]
fn r12_5_restore_temp_files_of_dead_calls_are_removed_and_sigterm_is_handled() {
    let (cluster, name) = full_segment("r12-5");
    let dir = cluster.root().subdir("r12-5-archive");
    pg_user().write_file(&dir.join(&name), &cluster.wal_file(&name));
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let dead_temp = cluster.data_path(format!("pg_wal/.RECOVERYXLOG.pitr-tmp.{dead}"));
    let live_temp = cluster.data_path(format!(
        "pg_wal/.RECOVERYXLOG.pitr-tmp.{}",
        std::process::id()
    ));
    pg_user().write_file(&dead_temp, &vec![0u8; (SEG_MB as usize) << 20]);
    pg_user().write_file(&live_temp, b"partial");
    restore(&cluster)
        .args(["--prefetch", "0", "--source"])
        .arg(format!("none={}", dir.display()))
        .args([name.as_str(), RECOVERYXLOG])
        .succeeds();
    assert!(!dead_temp.exists(), "a dead call's temp file is left");
    assert!(live_temp.exists(), "a live writer's temp file was removed");
    std::fs::remove_file(&live_temp).unwrap();
    std::fs::remove_file(cluster.data_path(RECOVERYXLOG)).unwrap();

    // A warm spare's call waiting for the next segment, ended by a fast shutdown's SIGTERM
    // (only a running server's call waits).
    cluster.start();
    let missing = next_segment(&name);
    let running = restore(&cluster)
        .args(["--prefetch", "0", "--source"])
        .arg(format!("none={}", dir.display()))
        .args([missing.as_str(), RECOVERYXLOG])
        .spawn();
    wait_until("the call to wait", TIMEOUT, || {
        running
            .stderr_so_far()
            .contains(&format!("waiting for {missing}"))
            .then_some(())
    });
    // SAFETY: kill(2) on a child we started.
    assert_eq!(
        unsafe { libc::kill(running.pid() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let result = running.wait();
    assert_ne!(result.code(), Some(0), "{result}");
    assert!(!cluster.data_path(RECOVERYXLOG).exists());
    assert_eq!(temps_in(&cluster), Vec::<String>::new());
}

/// Defect 9 of issue 12: in standby mode a missing archive directory (an NFS unmount) exited
/// 126, and PostgreSQL shut down a standby that could have kept streaming. A standby never
/// promotes on 1: there the answer is an ERROR with a HINT and 1; a warm spare keeps 126.
#[test]
fn r12_9_standby_mode_with_a_missing_archive_exits_1_and_keeps_streaming() {
    let (cluster, archive) = scratch("r12-9");
    let missing = archive.join("unmounted");
    let result = restore(&cluster)
        .arg("--streaming-replication")
        .arg("--source")
        .arg(format!("zstd={}", missing.display()))
        .args(["000000010000000000000005", RECOVERYXLOG])
        .run();
    result.failure_with_status(1);
    let line =
        result.stderr_line_with(&["pitr-restore : ERROR : ", &missing.display().to_string()]);
    assert!(
        result.stderr_lines()[line + 1..]
            .iter()
            .any(|l| l.contains(" : HINT : ") && l.contains("keeps streaming")),
        "no HINT saying the standby keeps streaming\n{result}"
    );
    restore(&cluster)
        .arg("--source")
        .arg(format!("zstd={}", missing.display()))
        .args(["000000010000000000000005", RECOVERYXLOG])
        .run()
        .failure_with_status(126);
}

/// `host=SOCKET port=PORT user=postgres` of `cluster`.
fn conninfo(cluster: &Cluster) -> String {
    format!(
        "host={} port={} user=postgres dbname=postgres",
        cluster.socket_dir().display(),
        cluster.port()
    )
}

/// Defect 8 of issue 12: `pg_rewind --restore-target-wal` runs the target's `restore_command`
/// from its own working directory with an absolute `%p`; pitr-restore defaulted `--data-dir`
/// to `.` and exited 126. The restore_command `--from-backup` writes now names the data
/// directory, and pitr-restore finds it from an absolute `%p` too. A real pg_rewind of an old
/// primary whose WAL since the divergence is only in the archive.
#[test]
fn r12_8_pg_rewind_restore_target_wal_runs_pitr_restore() {
    let work = PgTempDir::new("r12-8");
    let archive = work.subdir("archive");
    let a = Cluster::init(
        "r12-8-a",
        ClusterOpts::new()
            .wal_segsize_mb(SEG_MB)
            .set("archive_mode", "on")
            .set(
                "archive_command",
                &format!(
                    "{} --dst-local zstd={} %p",
                    pitr_bin("pitr-archive").display(),
                    archive.display()
                ),
            )
            .set("wal_log_hints", "on")
            .set("wal_keep_size", "0")
            .set("min_wal_size", "2MB")
            .set("max_wal_size", "4MB"),
    );
    a.start();
    a.psql(&format!(
        "CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, payload text)"
    ));
    a.pgbench_script(LOAD, 50, 1);
    let b = a.base_backup(
        "r12-8-b",
        "stream",
        ClusterOpts::new().set("primary_conninfo", &conninfo(&a)),
    );
    b.write_signal(STANDBY_SIGNAL);
    b.start();
    let (_, lsn) = a.switch_wal_at();
    b.wait_replayed(&lsn, TIMEOUT);
    b.promote();
    b.wait_promoted(TIMEOUT);
    b.pgbench_script(LOAD, 20, 1);
    let rows_b = b.count_rows(TABLE);

    // A diverges, then writes and checkpoints on until the WAL of the divergence has left its
    // pg_wal (archived first): pg_rewind must fetch it through restore_command.
    let mut last = String::new();
    for _ in 0..12 {
        a.pgbench_script(LOAD, 200, 1);
        last = a.switch_wal();
        a.psql("CHECKPOINT");
    }
    a.wait_archived(&last, TIMEOUT);
    a.psql("CHECKPOINT");
    a.stop();
    // The restore_command pitr-restore --from-backup writes: --data-dir absolute.
    let restore_command = format!(
        "{} --data-dir {} --source zstd={} %f %p",
        pitr_bin("pitr-restore").canonicalize().unwrap().display(),
        a.data_dir().display(),
        archive.display()
    );
    a.append_conf(&[("restore_command", &restore_command)]);
    // With the server down (as under pg_rewind), a segment not in the archive is answered 1
    // at once: pitr-restore waited for it, and held pg_rewind for good.
    let absent = "0000000100000000000000F0";
    let target = a.data_path("pg_wal/RECOVERYXLOG");
    let line = restore_command
        .replace("%f", absent)
        .replace("%p", &target.display().to_string());
    let out = pg_user()
        .command("sh")
        .current_dir(work.path())
        .args(["-c", &line])
        .output_within(pitr_tests::procs::EXTERNAL_TIMEOUT)
        .expect("running the restore_command");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "LOG : {absent} is not in the archive; no server runs in {}, so not waiting for it\n",
            a.data_dir().display()
        )),
        "{said}"
    );
    assert!(!target.exists());
    let out = pg_user()
        .command(pitr_tests::pg_program("pg_rewind"))
        .current_dir(work.path())
        .arg("--target-pgdata")
        .arg(a.data_dir())
        .arg("--source-server")
        .arg(conninfo(&b))
        .arg("--restore-target-wal")
        .output_within(pitr_tests::procs::EXTERNAL_TIMEOUT)
        .expect("running pg_rewind");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "pg_rewind failed: {}\n{text}",
        out.status
    );
    assert!(
        text.contains("pitr-restore : LOG : Segment ") && text.contains(" restored"),
        "pg_rewind did not need pitr-restore (the test's WAL churn is too small)\n{text}"
    );
    assert!(!text.contains("ERROR") && !text.contains("FATAL"), "{text}");

    // The rewound A follows B: pg_rewind copied B's configuration, so A gets its own port back.
    a.append_conf(&[
        ("port", &a.port().to_string()),
        (
            "unix_socket_directories",
            &a.socket_dir().display().to_string(),
        ),
        ("primary_conninfo", &conninfo(&b)),
    ]);
    a.write_signal(STANDBY_SIGNAL);
    a.start();
    let (_, lsn) = b.switch_wal_at();
    a.wait_replayed(&lsn, TIMEOUT);
    assert_eq!(a.count_rows(TABLE), rows_b);
}

/// Defect 7 of issue 12 (pitr-restore's part): a bad `%p` and `--from-backup` errors had no
/// HINT. Each is one line naming the path, then a HINT: a bad `%p` is FATAL and stops recovery
/// (126); a `--from-backup` run by hand on a missing backup directory or a directory without
/// a set is an ERROR (2). (A non-empty target: pitr::pitr_from_backup_and_retention_refuse_bad_input_and_change_nothing.)
#[test]
fn r12_7_restore_errors_name_the_path_and_give_a_hint() {
    let (cluster, name) = full_segment("r12-7r");
    let dir = cluster.root().subdir("r12-7r-archive");
    pg_user().write_file(&dir.join(&name), &cluster.wal_file(&name));
    let lost = cluster.root().path().join("no-such-dir/RECOVERYXLOG");
    let lost_text = lost.display().to_string();
    let r = restore(&cluster)
        .arg("--source")
        .arg(format!("none={}", dir.display()))
        .args([name.as_str(), lost_text.as_str()])
        .run();
    r.failure_with_status(126);
    let l = r.stderr_line_with(&["pitr-restore : FATAL : ", &lost_text]);
    assert!(
        r.stderr_lines()[l + 1].contains(" : HINT : "),
        "no HINT\n{r}"
    );

    let target = cluster.root().path().join("restored");
    let missing_backups = cluster.root().path().join("no-backups");
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![
                "--from-backup".into(),
                missing_backups.display().to_string(),
                "--target-data-dir".into(),
                target.display().to_string(),
            ],
            missing_backups.display().to_string(),
        ),
        (
            vec![
                "--from-backup".into(),
                dir.display().to_string(),
                "--target-data-dir".into(),
                target.display().to_string(),
            ],
            dir.display().to_string(),
        ),
    ];
    for (args, path) in cases {
        let r = Tool::new("pitr-restore")
            .as_pg_user()
            .args(&args)
            .arg("--source")
            .arg(format!("none={}", dir.display()))
            .run();
        // 2 for what is wrong on disk, 3 for what is wrong on the command line.
        r.failure_with_status(2);
        let l = r.stderr_line_with(&["pitr-restore : ERROR : ", &path]);
        assert!(
            r.stderr_lines()[l + 1].contains(" : HINT : "),
            "no HINT\n{r}"
        );
        assert!(!target.exists(), "{} created\n{r}", target.display());
    }
}

/// The "recovery_prefetch is on" WARNING reads the setting as the server does: a warm spare
/// whose `recovery_prefetch = off` sits in a file of an `include_dir` gets no false WARNING;
/// one that leaves the default gets it, with its HINT, once per call.
#[test]
fn recovery_prefetch_warning_follows_the_servers_includes() {
    let work = PgTempDir::new("prefetch-warning");
    let archive = work.subdir("archive");
    let cluster = Cluster::init("prefetch-warning", ClusterOpts::new().wal_segsize_mb(1));
    // Only a running server's call waits for a missing segment.
    cluster.start();
    // Each wait is one pitr-restore call for a missing segment; `says` is a --verbose line it
    // must print on the way.
    let waits_for = |expect_warning: bool, says: Option<&str>| {
        let missing = "000000010000000000000042";
        let running = Tool::new("pitr-restore")
            .as_pg_user()
            .args(["--verbose", "--poll-interval", "0.2", "--prefetch", "0"])
            .arg("--data-dir")
            .arg(cluster.data_dir())
            .arg("--source")
            .arg(&archive)
            .args([missing, RECOVERYXLOG])
            .spawn();
        wait_until("the call to wait", TIMEOUT, || {
            running
                .stderr_so_far()
                .contains(&format!("waiting for {missing}"))
                .then_some(())
        });
        let stderr = running.stderr_so_far();
        drop(running);
        let warned = stderr.contains(" : WARNING : recovery_prefetch is on (the default)");
        assert_eq!(warned, expect_warning, "{stderr}");
        if expect_warning {
            assert!(
                stderr.contains(" : HINT : set recovery_prefetch = off in postgresql.conf"),
                "{stderr}"
            );
        }
        if let Some(line) = says {
            assert!(stderr.contains(line), "{line:?} not in {stderr}");
        }
    };
    waits_for(true, None);
    let conf_d = cluster.data_path("conf.d");
    pg_user().create_dir(&conf_d, 0o700);
    let spare_conf = conf_d.join("10-warm-spare.conf");
    pg_user().write_file(&spare_conf, b"recovery_prefetch = off\n");
    cluster.append_conf(&[("include_dir", "conf.d")]);
    waits_for(false, None);

    // Debian's layout: the server was started with a configuration file outside the data
    // directory, which postmaster.opts names; what that file says counts, and the server's
    // command line beats every file.
    let etc = work.subdir("etc");
    let outside = etc.join("postgresql.conf");
    pg_user().write_file(&outside, b"recovery_prefetch = on\n");
    let opts = cluster.data_path("postmaster.opts");
    let started_with = |args: &str| {
        pg_user().write_file(
            &opts,
            format!(
                "/usr/lib/postgresql/15/bin/postgres \"-D\" \"{}\" {args}\n",
                cluster.data_dir().display()
            )
            .as_bytes(),
        )
    };
    let config_arg = format!("\"-c\" \"config_file={}\"", outside.display());
    started_with(&config_arg);
    waits_for(true, None);
    started_with(&format!("{config_arg} \"-c\" \"recovery_prefetch=off\""));
    waits_for(false, None);

    // A file the server reads cannot be read here: the server is asked (SHOW), off while it
    // reads conf.d, then the default once that file is gone and the server has reloaded. (A
    // call waits only while a server runs, so there is always one to ask.)
    cluster.psql("SELECT pg_reload_conf()");
    wait_until("the server to read conf.d", TIMEOUT, || {
        (cluster.psql("SHOW recovery_prefetch").trim() == "off").then_some(())
    });
    started_with("\"-c\" \"config_file=/nonexistent/postgresql.conf\"");
    waits_for(
        false,
        Some(
            "/nonexistent/postgresql.conf cannot be read; the server says recovery_prefetch = off",
        ),
    );
    std::fs::remove_file(&spare_conf).unwrap();
    cluster.psql("SELECT pg_reload_conf()");
    wait_until("the server to reload", TIMEOUT, || {
        (cluster.psql("SHOW recovery_prefetch").trim() == "try").then_some(())
    });
    waits_for(
        true,
        Some(
            "/nonexistent/postgresql.conf cannot be read; the server says recovery_prefetch = try",
        ),
    );

    // A standby set up to stream whose restore_command waits (no --streaming-replication, as
    // OmniPITR's command lines without -sr): it never streams while the call waits. Said, with
    // a HINT.
    started_with("");
    pg_user().write_file(&cluster.data_path("standby.signal"), b"");
    cluster.append_conf(&[("primary_conninfo", "host=127.0.0.1 port=1")]);
    let streaming = "WARNING : this server is a standby with a primary_conninfo, but pitr-restore waits for each segment the archive does not have yet";
    waits_for(true, Some(streaming));
    waits_for(
        true,
        Some("HINT : add --streaming-replication to restore_command"),
    );
    std::fs::remove_file(cluster.data_path("standby.signal")).unwrap();
    cluster.stop();
}

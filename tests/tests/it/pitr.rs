//! Point-in-time recovery end to end, against real PostgreSQL 15 (issue 5): a primary archives
//! with pitr-archive (zstd, local directory) and is backed up with pitr-backup; then
//! `pitr-restore --from-backup` restores the set into a new data directory and the server,
//! started as the operator would, recovers to a time, a restore point, a transaction id, a WAL
//! location or the backup's consistent state, across a timeline switch, or follows the
//! primary as a warm spare until its finish trigger fails it over. Around it, pitr-cleanup:
//! retention of backup sets and WAL (form 2) with faked backup ages, and
//! `archive_cleanup_command` (`%r`) on a standby, which pauses while a standby backup runs.
//! Bad input to both forms is refused with exact messages and statuses, changing nothing.
//!
//! The drill follows pgBackRest's: a `status` table holds one marker row that is updated
//! before each target; every target is captured right after its update commits, more changes
//! and WAL switches follow, and each restore must show exactly that target's marker.
//!
//! Every cluster uses 1 MiB WAL segments so that the scenarios run on little WAL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pitr_tests::cluster::standby::RECOVERY_SIGNAL;
use pitr_tests::cluster::standby::STANDBY_SIGNAL;
use pitr_tests::pitr_util::{current_timeline, human, restore_backup, unix_now, wal_position};
use pitr_tests::procs::OutputWithin;
use pitr_tests::{
    pg_user, pitr_bin, wait_until, ArchiveDir, Cluster, ClusterOpts, CmdResult, PgTempDir,
    RsyncDaemon, Tool,
};

/// How long a test waits for archiving, replay or promotion. Generous: the binaries are debug
/// builds and the machine is shared.
const TIMEOUT: Duration = Duration::from_secs(90);

/// WAL segment size of every cluster here, in MiB.
const SEG_MB: u32 = 1;

/// The lock file pitr-cleanup keeps in the archive directory.
const CLEANUP_LOCK: &str = ".pitr-cleanup.lock";

/// A primary archiving with `pitr-archive --dst-local zstd=ARCHIVE --dst-backup XLOGS`, with
/// the `status` marker table and a `filler` table, and a directory for backup sets.
struct Drill {
    work: PgTempDir,
    archive: PathBuf,
    backups: PathBuf,
    xlogs: PathBuf,
    primary: Cluster,
}

impl Drill {
    fn new(name: &str) -> Drill {
        let work = PgTempDir::new(&format!("{name}-work"));
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
            &format!("{name}-primary"),
            ClusterOpts::new()
                .wal_segsize_mb(SEG_MB)
                .set("archive_mode", "on")
                .set("archive_command", &command)
                .set("wal_keep_size", "64MB"),
        );
        primary.start();
        primary.psql("CREATE TABLE status (marker text NOT NULL)");
        primary.psql("INSERT INTO status VALUES ('initial')");
        primary.psql("CREATE TABLE filler (id serial PRIMARY KEY, payload text)");
        Drill {
            work,
            archive,
            backups,
            xlogs,
            primary,
        }
    }

    /// `pitr-backup` of the primary into `BACKUPS` (zstd), its WAL collected in `--xlogs`.
    fn backup(&self) -> Tool {
        pitr_tests::backup_tool(&self.primary)
            .arg("--dst-local")
            .arg(format!("zstd={}", self.backups.display()))
            .arg("--xlogs")
            .arg(&self.xlogs)
    }

    /// Sets the marker (one committed transaction).
    fn set_marker(&self, value: &str) {
        self.primary
            .psql(&format!("UPDATE status SET marker = '{value}'"));
    }

    /// More changes after a target, and a WAL switch.
    fn churn(&self) {
        self.primary.psql(
            "INSERT INTO filler (payload) SELECT repeat('x', 200) FROM generate_series(1, 300)",
        );
        self.primary.switch_wal();
    }

    /// Switches WAL and waits until the completed segment is archived: everything written so
    /// far is then in the archive.
    fn archive_all(&self) {
        let segment = self.primary.switch_wal();
        self.primary.wait_archived(&segment, TIMEOUT);
    }

    /// `pitr-restore --from-backup BACKUPS --source zstd=ARCHIVE --poll-interval 0.2`.
    fn restore_tool(&self) -> Tool {
        from_backup(&self.backups, &self.archive)
    }

    /// Restores with `args` into a new cluster `name` (not started).
    fn restore(&self, name: &str, args: &[&str], opts: ClusterOpts) -> Cluster {
        restore_backup(name, self.restore_tool().args(args), opts)
    }

    /// The `Key: value` lines of the meta file `name` in BACKUPS.
    fn meta(&self, name: &str) -> Vec<(String, String)> {
        meta_lines(&self.backups.join(name))
    }

    /// The one meta file in BACKUPS.
    fn only_meta(&self) -> String {
        let metas: Vec<String> = pitr_tests::dir_names(&self.backups)
            .into_iter()
            .filter(|n| n.contains("-meta-"))
            .collect();
        assert_eq!(metas.len(), 1, "{metas:?}");
        metas[0].clone()
    }
}

/// The data file of the one backup set of `d`.
fn data_file_of(d: &Drill) -> String {
    meta_value(&d.meta(&d.only_meta()), "Data-File")
}

/// `pitr-restore --from-backup DIR --source zstd=ARCHIVE --poll-interval 0.2`, run as root
/// (the target directory gets the owner of its parent).
fn from_backup(backups: &Path, archive: &Path) -> Tool {
    Tool::new("pitr-restore")
        .arg("--from-backup")
        .arg(backups)
        .arg("--source")
        .arg(format!("zstd={}", archive.display()))
        .args(["--poll-interval", "0.2"])
}

/// The `Key: value` lines of a meta file.
fn meta_lines(path: &Path) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let (k, v) = l
                .split_once(": ")
                .unwrap_or_else(|| panic!("bad meta line {l:?} in {}", path.display()));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn meta_value(meta: &[(String, String)], key: &str) -> String {
    meta.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {key} in meta {meta:?}"))
}

/// The marker of a restored server.
fn marker(c: &Cluster) -> String {
    c.psql("SELECT marker FROM status")
}

/// Starts a restored server, waits until it has left recovery and checks its marker and the
/// line PostgreSQL logged when it stopped at the target.
fn assert_recovers_to(c: &Cluster, expected: &str, stop_line: &str) {
    c.start();
    c.wait_promoted(TIMEOUT);
    let log = c.server_log();
    assert!(
        log.contains(stop_line),
        "expected {stop_line:?} in the server log of the restore to {expected:?}:\n{log}"
    );
    assert_eq!(marker(c), expected, "marker after recovery");
}

/// The restored `postgresql.auto.conf`.
fn auto_conf(c: &Cluster) -> String {
    std::fs::read_to_string(c.data_path("postgresql.auto.conf")).unwrap()
}

#[test]
fn pitr_drill_restores_to_time_name_xid_lsn_and_immediate() {
    let d = Drill::new("pitr-drill");
    d.set_marker("at backup");
    d.churn();
    d.backup().succeeds();
    let meta = d.meta(&d.only_meta());
    let finished: i64 = meta_value(&meta, "Finished-epoch").parse().unwrap();
    // Finished-epoch is in whole seconds and a target time must come after it.
    wait_until(
        "the clock to pass the backup's end",
        Duration::from_secs(5),
        || (unix_now() > finished).then_some(()),
    );

    d.set_marker("time target");
    let time = d.primary.psql("SELECT clock_timestamp()");
    d.churn();
    d.set_marker("named target");
    d.primary
        .psql("SELECT pg_create_restore_point('drill point')");
    d.churn();
    let xid = d.primary.psql(
        "WITH u AS (UPDATE status SET marker = 'xid target' RETURNING 1) \
         SELECT txid_current() FROM u",
    );
    d.churn();
    d.set_marker("lsn target");
    let lsn = d.primary.psql("SELECT pg_current_wal_lsn()");
    d.churn();
    d.set_marker("end of archive");
    d.archive_all();

    // Typed in the work directory with relative paths: the restore_command it writes holds
    // them absolute, since PostgreSQL runs it in the data directory.
    let work = d.archive.parent().unwrap();
    let c = restore_backup(
        "pitr-drill-xid",
        Tool::new("pitr-restore")
            .current_dir(work)
            .arg("--from-backup")
            .arg(&d.backups)
            .arg("--source")
            .arg(format!(
                "zstd={}",
                d.archive.file_name().unwrap().to_string_lossy()
            ))
            .args([
                "--poll-interval",
                "0.2",
                "--finish-trigger",
                "finish.trigger",
            ])
            .args(["--target-xid", &xid, "--target-action", "promote"]),
        ClusterOpts::new(),
    );
    assert!(c.has_file(RECOVERY_SIGNAL) && !c.has_file(STANDBY_SIGNAL));
    let conf = auto_conf(&c);
    for line in [
        format!("recovery_target_xid = '{xid}'"),
        "recovery_target_action = 'promote'".to_owned(),
        "recovery_prefetch = 'off'".to_owned(),
        // The source keeps its codec (written with the default level).
        // --data-dir, absolute: the command also works from another working directory
        // (pg_rewind --restore-target-wal).
        format!(
            "restore_command = '{} --data-dir {} --source zstd:2={} --finish-trigger {} \
             --poll-interval 0.2 --no-wait %f %p'",
            pitr_bin("pitr-restore").canonicalize().unwrap().display(),
            c.data_dir().display(),
            d.archive.display(),
            work.join("finish.trigger").display()
        ),
    ] {
        assert!(conf.contains(&line), "no {line:?} in:\n{conf}");
    }
    assert_recovers_to(
        &c,
        "xid target",
        &format!("recovery stopping after commit of transaction {xid},"),
    );
    drop(c);

    // The copy keeps the primary's archive_command, and says so before anyone starts it; the
    // extraction says what it reads.
    let root = PgTempDir::new("pitr-drill-time");
    let data = root.path().join("data");
    let r = d
        .restore_tool()
        .args(["--target-time", &time, "--target-action", "promote"])
        .arg("--target-data-dir")
        .arg(&data)
        .succeeds();
    r.stderr_line_with(&[
        " : WARNING : the restored ",
        " keeps archive_mode on and archive_command '",
        "': once recovery ends, this copy archives its WAL there, beside the primary's",
    ]);
    r.stderr_contains(
        " : HINT : before starting a copy that is not to replace the primary, set archive_mode = off",
    );
    r.stderr_line_with(&[" : LOG : extracting ", &data_file_of(&d), " into "]);
    let c = Cluster::adopt("pitr-drill-time", root, ClusterOpts::new());
    assert_recovers_to(&c, "time target", "recovery stopping before commit");
    drop(c);

    let c = d.restore(
        "pitr-drill-name",
        &["--target-name", "drill point", "--target-action", "promote"],
        ClusterOpts::new(),
    );
    assert_recovers_to(
        &c,
        "named target",
        "recovery stopping at restore point \"drill point\"",
    );
    drop(c);

    let c = d.restore(
        "pitr-drill-lsn",
        &["--target-lsn", &lsn, "--target-action", "promote"],
        ClusterOpts::new(),
    );
    assert_recovers_to(
        &c,
        "lsn target",
        "recovery stopping after WAL location (LSN)",
    );
    drop(c);

    let c = d.restore(
        "pitr-drill-immediate",
        &["--target-immediate", "--target-action", "promote"],
        ClusterOpts::new(),
    );
    assert_recovers_to(
        &c,
        "at backup",
        "recovery stopping after reaching consistency",
    );
}

#[test]
fn pitr_restore_disables_recovery_settings_left_in_postgresql_conf() {
    // A server once recovered by hand keeps its recovery settings in postgresql.conf; outside
    // recovery PostgreSQL ignores them, and every backup carries them. Restored as they are, a
    // stale target plus ours makes PostgreSQL refuse to start ("multiple recovery targets").
    // A file postgresql.conf includes from the data directory carries another one: a target
    // of another kind, which with ours makes the server refuse to start as well.
    let d = Drill::new("pitr-stale-conf");
    let conf_d = d.primary.data_dir().join("conf.d");
    pg_user().create_dir(&conf_d, 0o700);
    pg_user().write_file(
        &conf_d.join("recovered.conf"),
        b"recovery_target_xid = '1'\n",
    );
    d.primary.append_conf(&[
        ("recovery_target_name", "an old restore point"),
        ("recovery_target_action", "shutdown"),
        ("include_dir", "conf.d"),
    ]);
    d.set_marker("at backup");
    d.backup().succeeds();
    d.churn();
    d.set_marker("after backup");
    d.archive_all();

    let restore = d
        .restore_tool()
        .args(["--target-immediate", "--target-action", "promote"]);
    let out = restore
        .clone()
        .arg("--target-data-dir")
        .arg(d.work.path().join("probe"))
        .run();
    out.success();
    for (file, line) in [
        (
            "postgresql.conf",
            "recovery_target_name = 'an old restore point'",
        ),
        ("postgresql.conf", "recovery_target_action = 'shutdown'"),
        ("conf.d/recovered.conf", "recovery_target_xid = '1'"),
    ] {
        out.stderr_line_with(&[
            "WARNING : ",
            &format!("{file}: commented out"),
            line,
            "a setting of an earlier recovery",
        ]);
    }

    let c = d.restore(
        "pitr-stale-conf-restored",
        &["--target-immediate", "--target-action", "promote"],
        ClusterOpts::new(),
    );
    let conf = std::fs::read_to_string(c.data_path("postgresql.conf")).unwrap();
    assert!(
        conf.contains("# disabled by pitr-restore --from-backup: recovery_target_name = 'an old restore point'"),
        "{conf}"
    );
    let included = std::fs::read_to_string(c.data_path("conf.d/recovered.conf")).unwrap();
    assert_eq!(
        included,
        "# disabled by pitr-restore --from-backup: recovery_target_xid = '1'\n"
    );
    assert_recovers_to(
        &c,
        "at backup",
        "recovery stopping after reaching consistency",
    );
}

#[test]
fn pitr_restore_fetches_a_backup_set_from_an_rsync_daemon() {
    let d = Drill::new("pitr-rsync-set");
    d.set_marker("first backup");
    d.backup().succeeds();
    // Set names carry the start time in seconds: the second set must start in a later one.
    let finished: i64 = meta_value(&d.meta(&d.only_meta()), "Finished-epoch")
        .parse()
        .unwrap();
    wait_until(
        "the clock to pass the first backup's end",
        Duration::from_secs(5),
        || (unix_now() > finished).then_some(()),
    );
    d.churn();
    d.set_marker("second backup");
    d.backup().succeeds();
    d.churn();
    d.set_marker("after backups");
    d.archive_all();
    // The backup host's module holds both sets (copied as pitr-backup --dst-remote would).
    let rsyncd = RsyncDaemon::start("backups");
    for name in pitr_tests::dir_names(&d.backups) {
        std::fs::copy(d.backups.join(&name), rsyncd.dir().join(&name)).unwrap();
    }
    let latest_data = pitr_tests::dir_names(&d.backups)
        .into_iter()
        .filter(|n| n.contains("-data-"))
        .max()
        .unwrap();

    let root = PgTempDir::new("pitr-rsync-set-restored");
    let data = root.path().join("data");
    let out = Tool::new("pitr-restore")
        .arg("--from-backup")
        .arg(rsyncd.url())
        .arg("--source")
        .arg(format!("zstd={}", d.archive.display()))
        .args(["--poll-interval", "0.2", "--target-immediate"])
        .args(["--target-action", "promote", "--target-data-dir"])
        .arg(&data)
        .succeeds();
    out.stderr_line_with(&["LOG : fetching backup set", &latest_data]);
    // Nothing of the fetched copy is left beside the new data directory.
    assert_eq!(pitr_tests::dir_names(root.path()), ["data"]);
    let c = Cluster::adopt("pitr-rsync-set-restored", root, ClusterOpts::new());
    assert_recovers_to(
        &c,
        "second backup",
        "recovery stopping after reaching consistency",
    );

    // A damaged set on the remote side is refused by its digests, and leaves nothing behind.
    let data_in_module = rsyncd.dir().join(&latest_data);
    let mut bytes = std::fs::read(&data_in_module).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data_in_module, &bytes).unwrap();
    let work = PgTempDir::new("pitr-rsync-set-damaged");
    let refused = Tool::new("pitr-restore")
        .arg("--from-backup")
        .arg(rsyncd.url())
        .arg("--source")
        .arg(format!("zstd={}", d.archive.display()))
        .arg("--target-data-dir")
        .arg(work.path().join("data"))
        .run();
    refused.failure_with_status(2);
    refused.stderr_line_with(&["ERROR : ", &latest_data]);
    assert_eq!(pitr_tests::dir_names(work.path()), Vec::<String>::new());
}

#[test]
fn pitr_restore_across_a_timeline_switch_with_target_timeline() {
    let d = Drill::new("pitr-tl");
    d.set_marker("at backup");
    d.backup().succeeds();
    d.set_marker("fork");
    d.primary.psql("SELECT pg_create_restore_point('fork')");
    d.churn();
    d.set_marker("timeline 1 end");
    d.archive_all();

    // Restore to the fork and promote: timeline 2, archiving into the same archive.
    let tl2 = d.restore(
        "pitr-tl-2",
        &["--target-name", "fork", "--target-action", "promote"],
        ClusterOpts::new().set("archive_mode", "on"),
    );
    assert_recovers_to(&tl2, "fork", "recovery stopping at restore point \"fork\"");
    assert_eq!(current_timeline(&tl2), 2);
    let archive = ArchiveDir::new(&d.archive);
    wait_until("00000002.history in the archive", TIMEOUT, || {
        archive.file_for("00000002.history")
    });
    tl2.psql("UPDATE status SET marker = 'timeline 2 named'");
    tl2.psql("SELECT pg_create_restore_point('on timeline 2')");
    tl2.psql("INSERT INTO filler (payload) SELECT repeat('y', 200) FROM generate_series(1, 300)");
    tl2.switch_wal();
    tl2.psql("UPDATE status SET marker = 'timeline 2 end'");
    let segment = tl2.switch_wal();
    assert!(segment.starts_with("00000002"), "{segment}");
    tl2.wait_archived(&segment, TIMEOUT);
    // The promoted server is the new primary: back it up too.
    let tl2_backups = d.work.subdir("tl2-backups");
    pitr_tests::backup_tool(&tl2)
        .arg("--dst-local")
        .arg(format!("zstd={}", tl2_backups.display()))
        .arg("--wal-source")
        .arg(format!("zstd={}", d.archive.display()))
        .succeeds();
    tl2.stop();

    // Its backup restores with a target of another kind than the one that made timeline 2.
    let c = restore_backup(
        "pitr-tl-2-backup",
        from_backup(&tl2_backups, &d.archive).args([
            "--target-immediate",
            "--target-action",
            "promote",
        ]),
        ClusterOpts::new(),
    );
    // The backed-up postgresql.auto.conf still held the target that made timeline 2.
    assert!(
        auto_conf(&c)
            .contains("# disabled by pitr-restore --from-backup: recovery_target_name = 'fork'"),
        "{}",
        auto_conf(&c)
    );
    assert_recovers_to(
        &c,
        "timeline 2 end",
        "recovery stopping after reaching consistency",
    );
    drop(c);

    // A target on timeline 2, reached through the history file.
    let c = d.restore(
        "pitr-tl-named",
        &[
            "--target-name",
            "on timeline 2",
            "--target-timeline",
            "latest",
            "--target-action",
            "promote",
        ],
        ClusterOpts::new(),
    );
    assert!(auto_conf(&c).contains("recovery_target_timeline = 'latest'"));
    assert_recovers_to(
        &c,
        "timeline 2 named",
        "recovery stopping at restore point \"on timeline 2\"",
    );
    assert_eq!(current_timeline(&c), 3);
    drop(c);

    // No target: the whole of timeline 2, ended by the finish trigger.
    let trigger = d.work.path().join("finish");
    std::fs::write(&trigger, b"").unwrap();
    let trigger_arg = trigger.display().to_string();
    let c = d.restore(
        "pitr-tl-latest",
        &[
            "--target-timeline",
            "latest",
            "--finish-trigger",
            &trigger_arg,
        ],
        ClusterOpts::new(),
    );
    assert_recovers_to(&c, "timeline 2 end", "archive recovery complete");
    assert_eq!(current_timeline(&c), 3);
    drop(c);

    // The backup's own timeline: what timeline 1 went on to.
    let c = d.restore(
        "pitr-tl-current",
        &[
            "--target-timeline",
            "current",
            "--finish-trigger",
            &trigger_arg,
        ],
        ClusterOpts::new(),
    );
    assert_recovers_to(&c, "timeline 1 end", "archive recovery complete");
}

/// What pgbench changed: history rows and the balance sum.
fn pgbench_state(c: &Cluster) -> String {
    c.psql(
        "SELECT (SELECT count(*) FROM pgbench_history) || ' ' || \
                (SELECT sum(abalance) FROM pgbench_accounts)",
    )
}

#[test]
fn pitr_backup_bootstraps_a_warm_standby_that_fails_over_on_its_finish_trigger() {
    let d = Drill::new("pitr-warm");
    d.primary.pgbench_init(1);
    d.backup().succeeds();
    let trigger = d.work.path().join("finish");
    let trigger_arg = trigger.display().to_string();
    let standby = d.restore(
        "pitr-warm-standby",
        &["--finish-trigger", &trigger_arg],
        ClusterOpts::new(),
    );
    assert!(standby.has_file(RECOVERY_SIGNAL) && !standby.has_file(STANDBY_SIGNAL));
    let conf = auto_conf(&standby);
    assert!(conf.contains("recovery_prefetch = 'off'"), "{conf}");
    assert!(
        conf.contains(&format!(
            "--finish-trigger {trigger_arg} --poll-interval 0.2 %f %p'"
        )),
        "{conf}"
    );
    assert!(!conf.contains("recovery_target"), "{conf}");

    standby.start();
    assert!(standby.is_in_recovery());
    // It follows the primary under load: rows written after the backup show up while pgbench
    // still runs.
    let mut load = pitr_tests::pgbench_load(&d.primary, 10);
    let mut last_switch = Instant::now();
    wait_until(
        "the warm standby to replay pgbench rows during the load",
        TIMEOUT,
        || {
            if last_switch.elapsed() > Duration::from_secs(1) {
                d.primary.switch_wal();
                last_switch = Instant::now();
            }
            let rows = standby
                .try_psql("SELECT count(*) FROM pgbench_history")
                .ok()?;
            (rows.parse::<u64>().ok()? > 0).then_some(())
        },
    );
    assert!(
        load.try_wait().unwrap().is_none(),
        "pgbench ended before the standby replayed any of its rows"
    );
    assert!(standby.is_in_recovery());
    let status = pitr_tests::procs::wait_within(
        &mut load,
        pitr_tests::procs::EXTERNAL_TIMEOUT,
        "pgbench".as_ref(),
    )
    .unwrap();
    assert!(status.success(), "pgbench failed: {status}");

    // Failover: everything the primary wrote is archived, then the trigger ends recovery
    // once the archive is replayed.
    let expected = pgbench_state(&d.primary);
    d.archive_all();
    std::fs::write(&trigger, b"").unwrap();
    standby.wait_promoted(TIMEOUT);
    assert_eq!(pgbench_state(&standby), expected);
    assert_eq!(current_timeline(&standby), 2);
    standby.psql("INSERT INTO pgbench_history (tid, bid, aid, delta) VALUES (1, 1, 1, 0)");

    // The nightly backup of the new primary: 00000002.history was archived at the promotion,
    // so its --xlogs directory never sees it; the set takes it from pg_wal, with no WARNING.
    // (The harness starts restored copies with archive_mode off: the new primary archives
    // with the old one's archive_command now.)
    d.primary.stop();
    standby.stop();
    standby.append_conf(&[("archive_mode", "on")]);
    standby.start();
    let after = d.work.subdir("backups-after-failover");
    pitr_tests::backup_tool(&standby)
        .arg("--dst-local")
        .arg(&after)
        .arg("--xlogs")
        .arg(&d.xlogs)
        .succeeds()
        .stderr_lacks("WARNING");
    let xlog = pitr_tests::dir_names(&after)
        .into_iter()
        .find(|n| n.contains("-xlog-"))
        .expect("the set's WAL archive");
    let file = std::fs::File::open(after.join(&xlog)).unwrap();
    let reader: Box<dyn std::io::Read> = if xlog.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(file).unwrap())
    } else {
        assert!(xlog.ends_with(".tar"), "{xlog}");
        Box::new(file)
    };
    let entries: Vec<String> = tar::Archive::new(reader)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        entries.contains(&"pg_wal/00000002.history".to_string()),
        "{entries:?}"
    );
    standby.stop();
}

/// One backup set of the retention fixture.
#[derive(Debug, Clone)]
struct SetFiles {
    /// File names: data, xlog, sha256, meta.
    files: Vec<String>,
    /// The meta file's name.
    meta: String,
    /// `Min-Xlog`.
    min_xlog: String,
}

/// The archived names whose position is before `min` (what pg_archivecleanup removes).
fn wal_below(names: &[String], min: &str) -> Vec<String> {
    let min = wal_position(min).unwrap();
    names
        .iter()
        .filter(|n| wal_position(n).is_some_and(|p| p < min))
        .cloned()
        .collect()
}

/// `a` without the names in `b`.
fn minus(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|n| !b.contains(n)).cloned().collect()
}

/// Copies directory `from` to `to` with `cp -a` (owners and times kept).
fn copy_dir(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output_within(pitr_tests::procs::EXTERNAL_TIMEOUT)
        .unwrap();
    assert!(
        out.status.success(),
        "cp -a {} {}: {}",
        from.display(),
        to.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `pitr-cleanup --backup-dir B --archive zstd=A --verbose`, as the PostgreSQL user (cron's).
fn retention(backups: &Path, archive: &Path) -> Tool {
    Tool::new("pitr-cleanup")
        .as_pg_user()
        .arg("--backup-dir")
        .arg(backups)
        .arg("--archive")
        .arg(format!("zstd={}", archive.display()))
        .arg("--verbose")
}

/// The `(path, size)` of every file a cleanup run says it removed (or, dry, would remove).
fn removal_lines(out: &CmdResult) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = out
        .stderr_lines()
        .iter()
        .filter_map(|l| {
            let (_, msg) = l.split_once(" : LOG : ")?;
            let rest = msg
                .strip_prefix("(dry-run) would remove backup file ")
                .or_else(|| msg.strip_prefix("(dry-run) would remove WAL file "))
                .or_else(|| msg.strip_prefix("removed backup file "))
                .or_else(|| msg.strip_prefix("Segment "))?;
            let rest = rest.strip_suffix(')')?;
            let (path, size) = rest.rsplit_once(" (")?;
            let path = path.strip_suffix(" removed").unwrap_or(path);
            Some((path.to_owned(), size.to_owned()))
        })
        .collect();
    v.sort();
    v
}

/// Three backup sets of one primary, their `Started-epoch` faked to 40, 25 and 12 days ago,
/// with WAL archived before, between and after them, and a restore point after the last.
struct RetentionFixture {
    drill: Drill,
    sets: Vec<SetFiles>,
    /// Names in the archive (a `.history` file included).
    archive_names: Vec<String>,
    /// `clock_timestamp()` after the marker was set to "between sets 2 and 3".
    time_after_set2: String,
}

const DAY: i64 = 86_400;

/// Rewrites the `Started-epoch` line of the meta file `path` in place: the meta file is the
/// source of truth for a set's age.
fn set_started(path: &Path, epoch: i64) {
    let text = std::fs::read_to_string(path).unwrap();
    let started: i64 = meta_value(&meta_lines(path), "Started-epoch")
        .parse()
        .unwrap();
    let faked = text.replace(
        &format!("Started-epoch: {started}\n"),
        &format!("Started-epoch: {epoch}\n"),
    );
    assert_ne!(faked, text);
    std::fs::write(path, faked).unwrap();
}

/// Rewrites the `System-Identifier` line of the meta file `path` in place: the set is then
/// another database system's.
fn set_system(path: &Path, system_identifier: u64) {
    let text = std::fs::read_to_string(path).unwrap();
    let ours = meta_value(&meta_lines(path), "System-Identifier");
    let faked = text.replace(
        &format!("System-Identifier: {ours}\n"),
        &format!("System-Identifier: {system_identifier}\n"),
    );
    assert_ne!(faked, text);
    std::fs::write(path, faked).unwrap();
}

impl RetentionFixture {
    fn new() -> RetentionFixture {
        let d = Drill::new("pitr-keep");
        d.churn();
        let mut sets = Vec::new();
        let mut time_after_set2 = String::new();
        for (i, age_days) in [(1, 40), (2, 25), (3, 12)] {
            d.set_marker(&format!("set {i}"));
            d.backup()
                .arg("--filename-template")
                .arg(format!("set{i}-__FILETYPE__.tar__CEXT__"))
                .succeeds();
            let files: Vec<String> = ["data", "xlog", "sha256", "meta"]
                .iter()
                .map(|t| format!("set{i}-{t}.tar.zst"))
                .collect();
            let meta = files[3].clone();
            let path = d.backups.join(&meta);
            set_started(&path, unix_now() - age_days * DAY);
            let min_xlog = meta_value(&meta_lines(&path), "Min-Xlog");
            let finished: i64 = meta_value(&meta_lines(&path), "Finished-epoch")
                .parse()
                .unwrap();
            sets.push(SetFiles {
                files,
                meta,
                min_xlog,
            });
            d.churn();
            if i == 2 {
                // A time after set 2 ended (in whole seconds) and before set 3 started.
                wait_until(
                    "the clock to pass the backup's end",
                    Duration::from_secs(5),
                    || (unix_now() > finished).then_some(()),
                );
                d.set_marker("between sets 2 and 3");
                time_after_set2 = d.primary.psql("SELECT clock_timestamp()");
            }
            d.churn();
        }
        d.set_marker("after the last backup");
        d.primary
            .psql("SELECT pg_create_restore_point('after sets')");
        d.churn();
        d.archive_all();
        // A clean shutdown archives one more segment; then the archive no longer changes.
        d.primary.stop();
        // A timeline history file, which retention must keep whatever its age (timeline 1
        // never has one, so no recovery here reads it).
        let history = d.archive.join("00000001.history");
        pg_user().write_file(&history, b"fixture\n");
        assert_eq!(pitr_tests::dir_names(&d.backups).len(), 12);
        let archive_names = pitr_tests::dir_names(&d.archive);
        assert!(
            sets[0].min_xlog < sets[1].min_xlog && sets[1].min_xlog < sets[2].min_xlog,
            "{sets:?}"
        );
        RetentionFixture {
            drill: d,
            sets,
            archive_names,
            time_after_set2,
        }
    }

    /// A copy of the backup directory and the archive for one scenario.
    fn copy(&self, label: &str) -> (PathBuf, PathBuf) {
        let b = self.drill.work.path().join(format!("{label}-backups"));
        let a = self.drill.work.path().join(format!("{label}-archive"));
        copy_dir(&self.drill.backups, &b);
        copy_dir(&self.drill.archive, &a);
        (b, a)
    }

    /// The backup files and the WAL a run keeping `kept` (indexes of sets) must remove.
    fn expected_removal(&self, kept: &[usize]) -> (Vec<String>, Vec<String>) {
        let oldest = kept.iter().min().copied().unwrap();
        let backup_files: Vec<String> = (0..self.sets.len())
            .filter(|i| !kept.contains(i))
            .flat_map(|i| self.sets[i].files.clone())
            .collect();
        let wal = wal_below(&self.archive_names, &self.sets[oldest].min_xlog);
        (backup_files, wal)
    }

    /// Checks that exactly `gone_b` went from the copy `b` of the backup directory and
    /// `gone_a` from the copy `a` of the archive (its lock aside), nothing else.
    fn assert_removed(
        &self,
        (b, a): (&Path, &Path),
        gone_b: &[String],
        gone_a: &[String],
        label: &str,
        out: &CmdResult,
    ) {
        assert_eq!(
            pitr_tests::dir_names(b),
            minus(&pitr_tests::dir_names(&self.drill.backups), gone_b),
            "{label}: backup files left\n{out}"
        );
        let mut left = pitr_tests::dir_names(a);
        left.retain(|n| n != CLEANUP_LOCK);
        assert_eq!(
            left,
            minus(&self.archive_names, gone_a),
            "{label}: archive left\n{out}"
        );
    }

    /// Runs retention with `args` on a fresh copy and checks that exactly the sets not in
    /// `kept` and the WAL before the oldest kept set's `Min-Xlog` went, nothing else.
    fn check(&self, label: &str, args: &[&str], kept: &[usize]) -> CmdResult {
        self.check_after(label, |_| {}, args, kept)
    }

    /// [`Self::check`], after `prepare` has changed the copy of the backup directory.
    fn check_after(
        &self,
        label: &str,
        prepare: impl FnOnce(&Path),
        args: &[&str],
        kept: &[usize],
    ) -> CmdResult {
        let (b, a) = self.copy(label);
        prepare(&b);
        let out = retention(&b, &a).args(args).succeeds();
        let (gone_b, gone_a) = self.expected_removal(kept);
        assert!(!gone_a.is_empty(), "{label}: the scenario removes no WAL");
        self.assert_removed((&b, &a), &gone_b, &gone_a, label, &out);
        assert!(pitr_tests::dir_names(&a).contains(&"00000001.history".to_owned()));
        // What it said it removed is what went.
        let mut said: Vec<String> = removal_lines(&out).into_iter().map(|(p, _)| p).collect();
        said.sort();
        let mut gone: Vec<String> = gone_b
            .iter()
            .map(|n| b.join(n).display().to_string())
            .chain(gone_a.iter().map(|n| a.join(n).display().to_string()))
            .collect();
        gone.sort();
        assert_eq!(said, gone, "{label}: removal log lines\n{out}");
        out
    }
}

#[test]
fn pitr_retention_removes_old_sets_and_their_wal_and_keeps_the_newest() {
    let f = RetentionFixture::new();

    // 40 and 25 days old against 30 days: the oldest set goes.
    f.check("days30", &["--keep-days", "30"], &[1, 2]);
    // Only the newest by count.
    f.check("count1", &["--keep-count", "1"], &[2]);
    // Every set is older than a day: the newest survives anyway.
    f.check("days1", &["--keep-days", "1"], &[2]);
    // Days and count together keep the union.
    f.check(
        "days20count2",
        &["--keep-days", "20", "--keep-count", "2"],
        &[1, 2],
    );

    // WAL positions need not follow start times: a backup of a standby replaying an hour
    // behind (`--recovery-delay`) starts after the primary's at an earlier position. Set 2,
    // restamped to have started after set 3, is the newest; keeping two keeps sets 2 and 3,
    // and the WAL from set 2's Min-Xlog stays (cutting at the oldest-started kept set's, set
    // 3's, removed the WAL set 2 needs).
    f.check_after(
        "later-start-earlier-wal",
        |b| set_started(&b.join(&f.sets[1].meta), unix_now() - 5 * DAY),
        &["--keep-count", "2"],
        &[1, 2],
    );

    // A damaged newest set (its data file is not the size its meta file says) is not valid:
    // the newest valid one is kept, and so is everything newer than it.
    {
        let (b, a) = f.copy("damaged");
        let data = b.join(&f.sets[2].files[0]);
        let mut bytes = std::fs::read(&data).unwrap();
        bytes.push(0);
        std::fs::write(&data, bytes).unwrap();
        let out = retention(&b, &a).args(["--keep-count", "1"]).succeeds();
        out.stderr_contains(&format!(
            "WARNING : backup set {} is not valid: {} is ",
            b.join(&f.sets[2].meta).display(),
            f.sets[2].files[0]
        ));
        let (gone_b, gone_a) = f.expected_removal(&[1, 2]);
        f.assert_removed((&b, &a), &gone_b, &gone_a, "damaged", &out);
    }

    // A backup directory two clusters share: retention applies to the sets of the archive's
    // database system only, and leaves the other system's alone, with a WARNING. Keeping one
    // set removed an older set of the other system (set 1 here) before; a newer one (set 3)
    // made the run refuse to remove anything.
    for (label, foreign, kept_ours, gone) in [("shared-older", 0, 2, 1), ("shared-newer", 2, 1, 0)]
    {
        let (b, a) = f.copy(label);
        let meta = b.join(&f.sets[foreign].meta);
        let sysid = meta_value(&meta_lines(&meta), "System-Identifier");
        set_system(&meta, 12345);
        let out = retention(&b, &a).args(["--keep-count", "1"]).succeeds();
        out.stderr_contains(&format!(
            " : WARNING : backup set {} is of database system 12345, not {sysid}, the one this \
             retention applies to; it is left alone\n",
            meta.display()
        ))
        .stderr_contains("1 backup sets removed");
        let gone_a = wal_below(&f.archive_names, &f.sets[kept_ours].min_xlog);
        f.assert_removed((&b, &a), &f.sets[gone].files, &gone_a, label, &out);
    }

    // A meta file that cannot be read: its set is left alone, and a WARNING says so.
    {
        let (b, a) = f.copy("unreadable-meta");
        let bad = b.join("other-meta.tar.zst");
        std::fs::write(&bad, b"Min-Xlog: not a WAL file name\n").unwrap();
        retention(&b, &a)
            .args(["--keep-count", "3"])
            .succeeds()
            .stderr_contains(&format!(
                " : WARNING : {} looks like a backup set's meta file but cannot be read (",
                bad.display()
            ))
            .stderr_contains("); its set is left alone\n");
        assert!(bad.exists());
    }

    // An archive whose cluster marker names another database system: retention removes
    // nothing (no set, no WAL), and neither does form 1 run in this cluster's data directory,
    // as PostgreSQL runs archive_cleanup_command. With the right marker back, form 1 removes.
    {
        let (b, a) = f.copy("foreign-archive");
        let marker = a.join(".pitr-cluster");
        let ours = std::fs::read(&marker).unwrap();
        pg_user().write_file(&marker, b"system_identifier = 12345\n");
        let sysid = meta_value(&meta_lines(&b.join(&f.sets[2].meta)), "System-Identifier");
        let refused = format!(
            " : ERROR : not removing anything from {}: it is not the archive of database system \
             {sysid}: {} says the archive holds WAL of database system 12345, not {sysid}\n",
            a.display(),
            marker.display()
        );
        let hint = " : HINT : point --archive at this cluster's archive, the one its \
                    archive_command writes to\n";
        let before_b = pitr_tests::dir_names(&b);
        let archive_names = || {
            let mut left = pitr_tests::dir_names(&a);
            left.retain(|n| n != CLEANUP_LOCK);
            left
        };
        retention(&b, &a)
            .args(["--keep-count", "1"])
            .run()
            .failure_with_status(2)
            .stderr_contains(&refused)
            .stderr_contains(hint);
        let form1 = || {
            Tool::new("pitr-cleanup")
                .as_pg_user()
                .current_dir(f.drill.primary.data_dir())
                .arg("--archive")
                .arg(format!("zstd={}", a.display()))
                .arg(&f.sets[2].min_xlog)
        };
        form1()
            .run()
            .failure_with_status(2)
            .stderr_contains(&refused)
            .stderr_contains(hint);
        assert_eq!(pitr_tests::dir_names(&b), before_b);
        assert_eq!(archive_names(), f.archive_names);
        pg_user().write_file(&marker, &ours);
        form1().succeeds();
        assert_eq!(
            archive_names(),
            minus(
                &f.archive_names,
                &wal_below(&f.archive_names, &f.sets[2].min_xlog)
            )
        );
    }

    // No valid set at all: exit 2, nothing removed.
    {
        let (b, a) = f.copy("invalid");
        for s in &f.sets {
            std::fs::remove_file(b.join(&s.files[2])).unwrap();
        }
        let before_b = pitr_tests::dir_names(&b);
        let out = retention(&b, &a).args(["--keep-days", "1"]).run();
        out.failure_with_status(2)
            .stderr_contains(&format!(
                "ERROR : no valid backup set in {}; nothing removed",
                b.display()
            ))
            .stderr_contains(" : HINT : ");
        assert_eq!(pitr_tests::dir_names(&b), before_b);
        let mut left = pitr_tests::dir_names(&a);
        left.retain(|n| n != CLEANUP_LOCK);
        assert_eq!(left, f.archive_names);
    }

    // While a standby backup holds the removal pause trigger, retention removes nothing.
    {
        let (b, a) = f.copy("paused");
        let pause = f.drill.work.path().join("pause");
        std::fs::write(&pause, b"pitr-backup 1\n").unwrap();
        retention(&b, &a)
            .args(["--keep-count", "1", "--removal-pause-trigger"])
            .arg(&pause)
            .succeeds()
            .stderr_contains(&format!(
                "removal pause trigger {} exists; not removing anything",
                pause.display()
            ));
        assert_eq!(
            pitr_tests::dir_names(&b),
            pitr_tests::dir_names(&f.drill.backups)
        );
        assert_eq!(pitr_tests::dir_names(&a), f.archive_names);
    }

    // A standby backup that creates the pause trigger while the sets are being removed: the
    // WAL stays (the trigger was read once, at the start, and the WAL from the cut went).
    {
        let (b, a) = f.copy("paused-meanwhile");
        let pause = f.drill.work.path().join("pause-meanwhile");
        let running = retention(&b, &a)
            .args(["--keep-count", "1", "--removal-pause-trigger"])
            .arg(&pause)
            .env("PITR_TEST_REMOVE_DELAY_MS", "300")
            .spawn();
        wait_until("the first backup file removed", TIMEOUT, || {
            running
                .stderr_so_far()
                .contains("LOG : removed backup file ")
                .then_some(())
        });
        std::fs::write(&pause, b"pitr-backup 1\n").unwrap();
        let out = running.wait();
        out.success();
        out.stderr_contains(&format!(
            "removal pause trigger {} exists; not removing WAL\n",
            pause.display()
        ));
        let (gone_b, _) = f.expected_removal(&[2]);
        f.assert_removed((&b, &a), &gone_b, &[], "paused-meanwhile", &out);
    }

    // On the real directories: a dry run lists, with sizes, exactly what the real run then
    // removes, and removes nothing.
    let d = &f.drill;
    let (gone_b, gone_a) = f.expected_removal(&[1, 2]);
    let sizes: Vec<(String, String)> = {
        let mut v: Vec<(String, String)> = gone_b
            .iter()
            .map(|n| d.backups.join(n))
            .chain(gone_a.iter().map(|n| d.archive.join(n)))
            .map(|p| {
                let size = std::fs::metadata(&p).unwrap().len();
                (p.display().to_string(), human(size))
            })
            .collect();
        v.sort();
        v
    };
    let all_backups = pitr_tests::dir_names(&d.backups);
    let dry = retention(&d.backups, &d.archive)
        .args(["--keep-days", "30", "--dry-run"])
        .succeeds();
    dry.stderr_contains("1 backup sets would be removed");
    assert_eq!(removal_lines(&dry), sizes, "{dry}");
    assert_eq!(pitr_tests::dir_names(&d.backups).len(), 12);
    let mut left = pitr_tests::dir_names(&d.archive);
    left.retain(|n| n != CLEANUP_LOCK);
    assert_eq!(left, f.archive_names);
    let real = retention(&d.backups, &d.archive)
        .args(["--keep-days", "30"])
        .succeeds();
    real.stderr_contains("1 backup sets removed");
    assert_eq!(removal_lines(&real), sizes, "{real}");
    assert_eq!(
        pitr_tests::dir_names(&d.backups),
        minus(&all_backups, &gone_b)
    );
    let mut left = pitr_tests::dir_names(&d.archive);
    left.retain(|n| n != CLEANUP_LOCK);
    assert_eq!(left, minus(&f.archive_names, &gone_a));

    // The oldest kept set still restores to a point after every set.
    let c = d.restore(
        "pitr-keep-restored",
        &[
            "--backup",
            &f.sets[1].meta,
            "--target-name",
            "after sets",
            "--target-action",
            "promote",
        ],
        ClusterOpts::new(),
    );
    assert_recovers_to(
        &c,
        "after the last backup",
        "recovery stopping at restore point \"after sets\"",
    );
    assert_restored_from(&c, &f.sets[1]);
    drop(c);

    // A target time picks the latest set that ended before it: set 2, not set 3.
    let c = d.restore(
        "pitr-keep-by-time",
        &[
            "--target-time",
            &f.time_after_set2,
            "--target-action",
            "promote",
        ],
        ClusterOpts::new(),
    );
    assert_recovers_to(
        &c,
        "between sets 2 and 3",
        "recovery stopping before commit",
    );
    assert_restored_from(&c, &f.sets[1]);
}

/// The restored (and recovered) server came from `set`: its backup label starts in the set's
/// `Min-Xlog`.
fn assert_restored_from(c: &Cluster, set: &SetFiles) {
    let label = std::fs::read_to_string(c.data_path("backup_label.old")).unwrap();
    assert!(
        label.contains(&format!("(file {})", set.min_xlog)),
        "not restored from {}:\n{label}",
        set.meta
    );
}

/// A checkpoint on the primary, archived and replayed by `standby`, then a CHECKPOINT on
/// the standby (a restartpoint, which runs archive_cleanup_command). Returns the archive's
/// names (without the lock file) just before the restartpoint, and the restartpoint's REDO
/// WAL file (PostgreSQL's `%r`).
fn restartpoint(d: &Drill, standby: &Cluster) -> (Vec<String>, String) {
    d.primary.psql("CHECKPOINT");
    d.primary
        .psql("INSERT INTO filler (payload) SELECT repeat('z', 200) FROM generate_series(1, 300)");
    let (segment, lsn) = d.primary.switch_wal_at();
    d.primary.wait_archived(&segment, TIMEOUT);
    standby.wait_replayed(&lsn, TIMEOUT);
    let mut before = pitr_tests::dir_names(&d.archive);
    before.retain(|n| n != CLEANUP_LOCK);
    standby.psql("CHECKPOINT");
    let redo = standby.psql("SELECT redo_wal_file FROM pg_control_checkpoint()");
    (before, redo)
}

/// The number of files below `dir`.
fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn archive_now(d: &Drill) -> Vec<String> {
    let mut v = pitr_tests::dir_names(&d.archive);
    v.retain(|n| n != CLEANUP_LOCK);
    v
}

#[test]
fn pitr_archive_cleanup_command_follows_restartpoints_and_pauses_for_a_standby_backup() {
    let d = Drill::new("pitr-acc");
    d.churn();
    d.backup().succeeds();
    let pause = d.work.path().join("standby-backup-running");
    let command = format!(
        "{} --archive zstd={} --removal-pause-trigger {} %r",
        pitr_bin("pitr-cleanup").display(),
        d.archive.display(),
        pause.display()
    );
    let standby = d.restore(
        "pitr-acc-standby",
        &["--standby"],
        ClusterOpts::new()
            .set("archive_cleanup_command", &command)
            .set("wal_retrieve_retry_interval", "200ms"),
    );
    assert!(standby.has_file(STANDBY_SIGNAL) && !standby.has_file(RECOVERY_SIGNAL));
    assert!(auto_conf(&standby).contains("--streaming-replication %f %p'"));
    standby.start();

    // Each restartpoint removes what is older than its REDO file.
    for round in 0..2 {
        let (before, redo) = restartpoint(&d, &standby);
        let gone = wal_below(&before, &redo);
        assert!(!gone.is_empty(), "round {round}: nothing older than {redo}");
        assert_eq!(archive_now(&d), minus(&before, &gone), "round {round}");
    }

    // A backup of the standby creates the pause trigger: restartpoints meanwhile remove
    // nothing, and the backup finds every segment it needs.
    // Slowed down so that it lasts about six seconds, long enough for a restartpoint.
    let delay_ms = (6_000 / count_files(standby.data_dir()).max(1))
        .clamp(2, 50)
        .to_string();
    let backups2 = d.work.subdir("standby-backups");
    let running = pitr_tests::backup_tool(&standby)
        .env("PITR_TEST_COPY_DELAY_MS", &delay_ms)
        .arg("--dst-local")
        .arg(format!("zstd={}", backups2.display()))
        .arg("--wal-source")
        .arg(format!("zstd={}", d.archive.display()))
        .arg("--removal-pause-trigger")
        .arg(&pause)
        .spawn();
    wait_until(
        "the standby backup to create its pause trigger",
        TIMEOUT,
        || pause.exists().then_some(()),
    );
    let log_from = standby.server_log_len();
    let (before, redo) = restartpoint(&d, &standby);
    assert!(
        pause.exists(),
        "the standby backup ended before the restartpoint: the pause was not tested"
    );
    assert!(!wal_below(&before, &redo).is_empty(), "{redo}");
    assert_eq!(archive_now(&d), before, "removed while paused");
    let log = standby.server_log_since(log_from);
    assert!(
        log.contains(&format!(
            "removal pause trigger {} exists; not removing anything",
            pause.display()
        )),
        "{log}"
    );
    let result = running.wait();
    result.success();
    assert!(!pause.exists(), "pause trigger left behind\n{result}");
    assert_eq!(pitr_tests::dir_names(&backups2).len(), 4, "{result}");
    let m = meta_lines(
        &backups2.join(
            pitr_tests::dir_names(&backups2)
                .into_iter()
                .find(|n| n.contains("-meta-"))
                .unwrap(),
        ),
    );
    assert_eq!(meta_value(&m, "Backup-From"), "standby");

    // Once the backup is done, the next restartpoint catches up.
    let (before, redo) = restartpoint(&d, &standby);
    let gone = wal_below(&before, &redo);
    assert!(!gone.is_empty());
    assert_eq!(archive_now(&d), minus(&before, &gone));
}

#[test]
fn pitr_from_backup_and_retention_refuse_bad_input_and_change_nothing() {
    let d = Drill::new("pitr-bad");
    d.set_marker("at backup");
    d.backup().succeeds();
    let meta_name = d.only_meta();
    let meta = d.meta(&meta_name);
    let finished: i64 = meta_value(&meta, "Finished-epoch").parse().unwrap();
    let data_file = meta_value(&meta, "Data-File");
    d.archive_all();
    let backups_before = pitr_tests::dir_names(&d.backups);
    let archive_before = pitr_tests::dir_names(&d.archive);
    let target = d.work.path().join("new-data");
    let restore = || d.restore_tool().arg("--target-data-dir").arg(&target);
    let unchanged = |r: &CmdResult| {
        assert!(!target.exists(), "target directory created\n{r}");
        assert_eq!(pitr_tests::dir_names(&d.backups), backups_before, "{r}");
        assert_eq!(pitr_tests::dir_names(&d.archive), archive_before, "{r}");
    };

    // A target directory that is not empty.
    let busy = d.work.subdir("busy");
    std::fs::write(busy.join("PG_VERSION"), b"15\n").unwrap();
    let r = d.restore_tool().arg("--target-data-dir").arg(&busy).run();
    r.failure_with_status(2)
        .stderr_contains(&format!(
            "ERROR : target data directory {} is not empty",
            busy.display()
        ))
        .stderr_contains(" : HINT : ")
        // Checked first: no digest is read for a restore that cannot happen.
        .stderr_lacks("digest of")
        .stderr_lacks("restoring backup set");
    assert_eq!(pitr_tests::dir_names(&busy), ["PG_VERSION"]);
    assert_eq!(std::fs::read(busy.join("PG_VERSION")).unwrap(), b"15\n");
    unchanged(&r);

    // An unknown set.
    let r = restore().args(["--backup", "nosuch-meta.tar.zst"]).run();
    r.failure_with_status(2).stderr_contains(&format!(
        "ERROR : no backup set named nosuch-meta.tar.zst in {}",
        d.backups.display()
    ));
    unchanged(&r);

    // A target time in the future.
    let future = d.primary.psql(
        "SELECT to_char(now() AT TIME ZONE 'UTC' + interval '1 hour', 'YYYY-MM-DD HH24:MI:SS')",
    );
    let r = restore()
        .args(["--target-time", &format!("{future}+00")])
        .run();
    r.failure_with_status(2).stderr_contains(&format!(
        "ERROR : target time {future}.000000+00:00 is in the future"
    ));
    unchanged(&r);

    // A target time before the backup ended: no set qualifies, or the named one is too new.
    let past = d.primary.psql(&format!(
        "SELECT to_char(to_timestamp({}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
        finished - 60
    ));
    let r = restore().args(["--target-time", &format!("{past}Z")]).run();
    r.failure_with_status(2).stderr_contains(&format!(
        "ERROR : no backup set in {} ended before the target time {past}.000000+00:00",
        d.backups.display()
    ));
    unchanged(&r);
    // A time without an offset is local time on its own date: the offset in force then, not
    // the one in force now. TZ has a one-day daylight saving period (+02) far from today
    // (+01), and the target falls on that day.
    let doy: u32 = d
        .primary
        .psql("SELECT extract(doy FROM now())::int")
        .parse()
        .unwrap();
    let (tz, day) = if doy < 180 {
        ("STD-1DST-2,J300/0,J301/0", "2000-10-27")
    } else {
        ("STD-1DST-2,J100/0,J101/0", "2000-04-10")
    };
    let r = restore()
        .env("TZ", tz)
        .args(["--target-time", &format!("{day} 12:00:00")])
        .run();
    r.failure_with_status(2).stderr_contains(&format!(
        "ERROR : no backup set in {} ended before the target time {day} 12:00:00.000000+02:00",
        d.backups.display()
    ));
    unchanged(&r);
    // Times in messages are ISO 8601 with a zone, never a bare epoch.
    let ended = d.primary.psql(&format!(
        "SELECT to_char(to_timestamp({finished}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')"
    ));
    let r = restore()
        .env("TZ", "UTC")
        .args(["--backup", &meta_name, "--target-time", &format!("{past}Z")])
        .run();
    r.failure_with_status(2).stderr_contains(&format!(
        "ERROR : target time {past}.000000+00:00 is before the end of backup {} (it ended at {ended} +0000)",
        d.backups.join(&meta_name).display()
    ));
    unchanged(&r);

    // Usage errors: 3.
    for (args, message) in [
        (
            vec!["--target-xid", "5", "--target-name", "x"],
            "FATAL : more than one recovery target given",
        ),
        (
            vec!["--target-action", "promote"],
            "FATAL : --target-action without a recovery target",
        ),
        (
            vec!["--target-time", "yesterday"],
            "FATAL : --target-time \"yesterday\" is not a time",
        ),
        (
            vec!["--standby", "--target-immediate"],
            "FATAL : --standby with a recovery target",
        ),
        (
            vec!["--target-timeline", "sideways"],
            "FATAL : Error parsing option '--target-timeline' with value 'sideways': \"sideways\" is not latest, current or a timeline number",
        ),
    ] {
        let r = restore().args(&args).run();
        r.failure_with_status(3).stderr_contains(message);
        unchanged(&r);
    }
    let r = d.restore_tool().run();
    r.failure_with_status(3)
        .stderr_contains("FATAL : --from-backup needs --target-data-dir");
    unchanged(&r);
    let r = Tool::new("pitr-restore")
        .arg("--from-backup")
        .arg(d.work.path().join("nowhere"))
        .arg("--target-data-dir")
        .arg(&target)
        .arg("--source")
        .arg(&d.archive)
        .run();
    r.failure_with_status(2).stderr_contains(&format!(
        "ERROR : backup directory {} is not a directory",
        d.work.path().join("nowhere").display()
    ));
    unchanged(&r);

    // A damaged data archive fails its digest check before anything is extracted.
    let damaged = d.work.path().join("damaged-backups");
    copy_dir(&d.backups, &damaged);
    let path = damaged.join(&data_file);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let r = from_backup(&damaged, &d.archive)
        .arg("--target-data-dir")
        .arg(&target)
        .run();
    r.failure_with_status(2)
        .stderr_contains(&format!(
            "ERROR : backup set {} failed its digest check",
            damaged.join(&meta_name).display()
        ))
        .stderr_contains(&format!(
            "{} does not match its SHA-256 digest",
            path.display()
        ))
        .stderr_contains("nothing was extracted");
    unchanged(&r);
    // A failure after extraction started (the replacement postgresql.conf is missing) takes
    // back what was extracted: a directory it created is gone, an empty one stays empty.
    let missing_conf = d.work.path().join("no-such-postgresql.conf");
    let r = restore().arg("--postgresql-conf").arg(&missing_conf).run();
    r.failure_with_status(2)
        .stderr_contains(&missing_conf.display().to_string());
    unchanged(&r);
    let empty_target = d.work.subdir("empty-target");
    let r = d
        .restore_tool()
        .arg("--target-data-dir")
        .arg(&empty_target)
        .arg("--postgresql-conf")
        .arg(&missing_conf)
        .run();
    r.failure_with_status(2);
    assert_eq!(
        pitr_tests::dir_names(&empty_target),
        Vec::<String>::new(),
        "{r}"
    );

    // The intact set still restores (and the refusals above left nothing in the way).
    let c = restore_backup(
        "pitr-bad-restored",
        d.restore_tool()
            .args(["--target-immediate", "--target-action", "promote"]),
        ClusterOpts::new(),
    );
    assert_recovers_to(
        &c,
        "at backup",
        "recovery stopping after reaching consistency",
    );
    drop(c);

    // Retention (form 2): usage errors exit 3, other errors 2, nothing removed.
    let empty = d.work.subdir("no-backups");
    let cleanup = |args: &[&str]| {
        Tool::new("pitr-cleanup")
            .as_pg_user()
            .arg("--archive")
            .arg(format!("zstd={}", d.archive.display()))
            .args(args)
            .run()
    };
    let b = d.backups.display().to_string();
    for (args, status, message) in [
        (
            vec!["--backup-dir", b.as_str()],
            3,
            "FATAL : --backup-dir needs --keep-days or --keep-count",
        ),
        (
            vec!["--backup-dir", b.as_str(), "--keep-days", "0"],
            3,
            "FATAL : --keep-days and --keep-count must be at least 1",
        ),
        (
            vec!["--backup-dir", b.as_str(), "--keep-count", "0"],
            3,
            "FATAL : --keep-days and --keep-count must be at least 1",
        ),
        (
            vec![
                "--backup-dir",
                b.as_str(),
                "--keep-days",
                "1",
                "000000010000000000000003",
            ],
            3,
            "FATAL : %r and --backup-dir given together",
        ),
    ] {
        let r = cleanup(&args);
        r.failure_with_status(status).stderr_contains(message);
        unchanged(&r);
    }
    let nowhere = d.work.path().join("nowhere");
    let r = cleanup(&[
        "--backup-dir",
        &nowhere.display().to_string(),
        "--keep-days",
        "1",
    ]);
    r.failure_with_status(2).stderr_contains(&format!(
        "ERROR : backup directory {} does not exist",
        nowhere.display()
    ));
    let r = cleanup(&[
        "--backup-dir",
        &empty.display().to_string(),
        "--keep-count",
        "1",
    ]);
    r.failure_with_status(2).stderr_contains(&format!(
        "ERROR : no valid backup set in {}; nothing removed",
        empty.display()
    ));
    let mut left = pitr_tests::dir_names(&d.archive);
    left.retain(|n| n != CLEANUP_LOCK);
    assert_eq!(left, archive_before);
    assert_eq!(pitr_tests::dir_names(&d.backups), backups_before);
}

/// A restore point made before the latest backup cannot be reached from that set, and
/// `--from-backup` takes the latest set for `--target-name` (only a `--target-time` tells which
/// set reaches its target). The copy then replayed to the end of the archive and waited there
/// for the next segment, open read-only and showing the data written after the restore point
/// as if it were at it. A point-in-time copy's restore_command now has `--no-wait`: a missing
/// segment is the end of the archive, and PostgreSQL stops with "recovery ended before
/// configured recovery target was reached".
#[test]
fn a_target_the_chosen_set_cannot_reach_stops_the_copy_instead_of_leaving_it_open_past_it() {
    let d = Drill::new("pitr-unreachable");
    d.set_marker("at the restore point");
    d.primary
        .psql("SELECT pg_create_restore_point('before the backup')");
    d.churn();
    d.backup().succeeds();
    d.set_marker("after the backup");
    d.archive_all();

    let c = d.restore(
        "pitr-unreachable-copy",
        &[
            "--target-name",
            "before the backup",
            "--target-action",
            "promote",
        ],
        ClusterOpts::new(),
    );
    assert!(
        auto_conf(&c).contains(" --no-wait %f %p'"),
        "{}",
        auto_conf(&c)
    );
    // pg_ctl may see the server up (read-only, once consistent) before recovery fails.
    let _ = c.try_start();
    wait_until(
        "the copy to stop at the end of the archive",
        TIMEOUT,
        || (!c.data_dir().join("postmaster.pid").exists()).then_some(()),
    );
    let log = c.server_log();
    assert!(
        log.contains("FATAL:  recovery ended before configured recovery target was reached"),
        "{log}"
    );
    assert!(
        log.contains(
            "is not in the archive; a point-in-time restore does not wait for it (--no-wait)"
        ),
        "{log}"
    );
}

/// A data directory restored in one place and copied to another keeps the restore_command
/// written for the first, whose `--data-dir` names it. pitr-restore wrote `%p` there;
/// PostgreSQL, running in the copy, did not find it, took the file as missing, and the copy (a
/// warm spare) promoted at the end of its own pg_wal without the archive's WAL. The call now
/// fails with 126, naming both directories, and the copy stops instead.
#[test]
fn a_copied_data_directory_is_refused_by_the_restore_command_of_the_original() {
    let d = Drill::new("pitr-moved");
    d.backup().succeeds();
    d.set_marker("after the backup");
    d.churn();
    d.archive_all();
    let origin = d.restore("pitr-moved-origin", &[], ClusterOpts::new());
    let copy = origin.clone_stopped("pitr-moved-copy", ClusterOpts::new());
    let _ = copy.try_start();
    wait_until("the copy to stop", TIMEOUT, || {
        (!copy.data_dir().join("postmaster.pid").exists()).then_some(())
    });
    let log = copy.server_log();
    assert!(
        log.contains(" : FATAL : restore_command runs in the data directory ")
            && log.contains(&format!(
                " but its --data-dir is {}: %p would be written there",
                origin.data_dir().display()
            )),
        "{log}"
    );
    assert!(!origin.data_dir().join("pg_wal/RECOVERYXLOG").exists());
}

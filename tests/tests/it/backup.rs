//! pitr-backup against real PostgreSQL 15 clusters: backups of a primary under pgbench load and
//! of a hot standby, restored by extracting the archives (with the tar, zstd and flate2 crates,
//! independently of pitr-common) into an empty directory that must start as a server, pass
//! `pg_verifybackup`, and hold the primary's rows; tablespaces; digests checked with
//! `sha256sum -c`; interruption by SIGTERM and SIGKILL; the lock; bad input; and memory that
//! does not grow with the number of files.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pitr_tests::cluster::standby::STANDBY_SIGNAL;
use pitr_tests::procs::OutputWithin;
use pitr_tests::{
    pg_program, pg_user, pitr_bin, wait_until, Cluster, ClusterOpts, CmdResult, PgTempDir,
    RsyncDaemon, Tool,
};

/// A primary archiving with pitr-archive into `archive`, and copying WAL into `xlogs` while a
/// backup runs (`--dst-backup`), plus a `backups` destination.
pub(crate) struct Primary {
    pub(crate) cluster: Cluster,
    pub(crate) work: PgTempDir,
    pub(crate) archive: PathBuf,
    pub(crate) xlogs: PathBuf,
    pub(crate) backups: PathBuf,
}

impl Primary {
    fn new(name: &str) -> Primary {
        Primary::with_opts(name, ClusterOpts::new())
    }

    fn with_opts(name: &str, opts: ClusterOpts) -> Primary {
        Primary::archiving_also(name, opts, |_| String::new())
    }

    /// A primary whose archive_command also gets the options `extra` returns for the work
    /// directory (another destination, say).
    pub(crate) fn archiving_also(
        name: &str,
        opts: ClusterOpts,
        extra: impl FnOnce(&Path) -> String,
    ) -> Primary {
        let work = PgTempDir::new(&format!("{name}-work"));
        let archive = work.subdir("archive");
        let backups = work.subdir("backups");
        let xlogs = work.path().join("xlogs");
        let command = format!(
            "{} {} --dst-local {} --dst-backup {} %p",
            pitr_bin("pitr-archive").display(),
            extra(work.path()),
            archive.display(),
            xlogs.display()
        );
        let cluster = Cluster::init(
            name,
            opts.set("archive_mode", "on")
                .set("archive_command", &command)
                .set("wal_keep_size", "512MB"),
        );
        cluster.start();
        Primary {
            cluster,
            work,
            archive,
            xlogs,
            backups,
        }
    }

    /// `pitr-backup` for this primary, run as the PostgreSQL user, with the connection and data
    /// directory options.
    pub(crate) fn backup(&self) -> Tool {
        pitr_tests::backup_tool(&self.cluster)
    }

    /// A backup into `backups` (zstd) with `--xlogs` and the removal pause trigger `trigger`.
    fn backup_with_xlogs(&self, trigger: &Path) -> Tool {
        self.backup()
            .arg("--dst-local")
            .arg(format!("zstd={}", self.backups.display()))
            .arg("--xlogs")
            .arg(&self.xlogs)
            .arg("--removal-pause-trigger")
            .arg(trigger)
    }
}

/// Waits until the running pitr-backup has ended backup mode on the server (it then waits for
/// its WAL).
fn wait_for_backup_stop(running: &pitr_tests::RunningTool) {
    wait_until(
        "the backup to end backup mode",
        Duration::from_secs(120),
        || {
            running
                .stderr_so_far()
                .contains("LOG : pg_backup_stop returned")
                .then_some(())
        },
    );
}

/// The names in `dir` that are not hidden.
fn visible_names(dir: &Path) -> Vec<String> {
    pitr_tests::dir_names(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// The `Key: value` lines of the one meta file in `dir`.
fn meta(dir: &Path) -> Vec<(String, String)> {
    let metas: Vec<String> = pitr_tests::dir_names(dir)
        .into_iter()
        .filter(|n| n.contains("-meta-") && !n.starts_with('.'))
        .collect();
    assert_eq!(
        metas.len(),
        1,
        "one meta file expected in {}: {metas:?}",
        dir.display()
    );
    let text = std::fs::read_to_string(dir.join(&metas[0])).unwrap();
    text.lines()
        .map(|l| {
            let (k, v) = l
                .split_once(": ")
                .unwrap_or_else(|| panic!("bad meta line {l:?}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn meta_value(meta: &[(String, String)], key: &str) -> Option<String> {
    meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// Runs `sha256sum -c` on the set's digest file in `dir`.
fn sha256sum_check(dir: &Path) {
    let m = meta(dir);
    let digest = meta_value(&m, "Digest-File").expect("Digest-File in meta");
    let out = Command::new("sha256sum")
        .arg("-c")
        .arg(&digest)
        .current_dir(dir)
        .output_within(pitr_tests::procs::EXTERNAL_TIMEOUT)
        .expect("running sha256sum");
    assert!(
        out.status.success(),
        "sha256sum -c {digest} in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let expected = 1 + usize::from(meta_value(&m, "Xlog-File").is_some());
    assert_eq!(text.matches(": OK").count(), expected, "{text}");
}

/// Extracts one archive (decompressing by its extension) into `into`.
fn unpack(archive: &Path, into: &Path) {
    let file = std::fs::File::open(archive)
        .unwrap_or_else(|e| panic!("opening {}: {e}", archive.display()));
    let name = archive.to_string_lossy();
    let reader: Box<dyn Read> = if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(file).unwrap())
    } else if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(true);
    tar.unpack(into)
        .unwrap_or_else(|e| panic!("extracting {}: {e}", archive.display()));
}

/// Gives everything under `path` to the PostgreSQL user.
fn chown_tree(path: &Path) {
    pg_user().chown(path);
    if std::fs::symlink_metadata(path).unwrap().is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path());
        }
    }
}

/// Extracts the set in `dir` (data, then WAL) into a new cluster's data directory; checks it
/// with `pg_verifybackup` before anything touches it; `adjust` may rearrange the files
/// (tablespaces) before the cluster is configured.
fn restore_set(dir: &Path, name: &str, adjust: impl FnOnce(&Path)) -> Cluster {
    let m = meta(dir);
    let root = PgTempDir::new(name);
    let data = root.subdir("data");
    unpack(&dir.join(meta_value(&m, "Data-File").unwrap()), &data);
    if let Some(x) = meta_value(&m, "Xlog-File") {
        unpack(&dir.join(x), &data);
    }
    chown_tree(&data);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(data.join("backup_label").is_file(), "no backup_label");
    assert!(data.join("backup_manifest").is_file(), "no backup_manifest");
    assert!(!data.join("postmaster.pid").exists());
    assert!(data.join("pg_wal/archive_status").is_dir());
    let out = pg_user()
        .command(pg_program("pg_verifybackup"))
        .arg(&data)
        .output_within(pitr_tests::procs::EXTERNAL_TIMEOUT)
        .expect("running pg_verifybackup");
    assert!(
        out.status.success(),
        "pg_verifybackup {} failed: {}\n{}{}",
        data.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    adjust(&data);
    Cluster::adopt(name, root, ClusterOpts::new())
}

/// The pgbench invariant: every transaction moves the same delta into an account, a teller, a
/// branch and the history, so on any consistent snapshot the four sums agree.
fn assert_pgbench_consistent(c: &Cluster) {
    let sums = c.psql(
        "SELECT (SELECT sum(abalance) FROM pgbench_accounts) || ' ' || \
                (SELECT sum(tbalance) FROM pgbench_tellers) || ' ' || \
                (SELECT sum(bbalance) FROM pgbench_branches) || ' ' || \
                (SELECT coalesce(sum(delta), 0) FROM pgbench_history)",
    );
    let v: Vec<&str> = sums.split(' ').collect();
    assert!(
        v.len() == 4 && v.iter().all(|x| *x == v[0]),
        "pgbench sums differ (accounts, tellers, branches, history): {sums}"
    );
}

/// Sessions of pitr-backup still open on the server.
fn backup_sessions(c: &Cluster) -> u64 {
    c.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pitr-backup'")
        .parse()
        .unwrap()
}

/// The server is not left in backup mode: no pitr-backup session remains, and a backup can
/// be started and stopped at once.
fn assert_not_in_backup(c: &Cluster) {
    wait_until(
        "the pitr-backup session to end",
        Duration::from_secs(20),
        || (backup_sessions(c) == 0).then_some(()),
    );
    let out = c.psql_session(&[
        "SELECT pg_backup_start('check', true) IS NOT NULL",
        "SELECT lsn IS NOT NULL FROM pg_backup_stop(false)",
    ]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["t", "t"], "{out}");
}

/// No file of a set under a final name (hidden temporary files may remain after SIGKILL).
fn assert_no_final_files(dir: &Path) {
    let visible: Vec<String> = pitr_tests::dir_names(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(
        visible.is_empty(),
        "files under final names in {}: {visible:?}",
        dir.display()
    );
}

#[test]
fn backup_of_primary_under_load_restores_and_verifies() {
    let p = Primary::new("bk-load");
    p.cluster.pgbench_init(2);
    p.cluster.psql("CREATE TABLE marker (v text)");
    p.cluster
        .psql("INSERT INTO marker VALUES ('before backup')");
    let before = p.cluster.count_rows("pgbench_history");
    let mut load = pitr_tests::pgbench_load(&p.cluster, 6);
    // The load is running once it has committed something.
    wait_until("pgbench to commit", Duration::from_secs(30), || {
        (p.cluster.count_rows("pgbench_history") > before).then_some(())
    });
    let result = p
        .backup()
        .arg("--dst-local")
        .arg(format!("zstd={}", p.backups.display()))
        .arg("--xlogs")
        .arg(&p.xlogs)
        .succeeds();
    pitr_tests::procs::wait_within(
        &mut load,
        pitr_tests::procs::EXTERNAL_TIMEOUT,
        "pgbench".as_ref(),
    )
    .expect("waiting for pgbench");
    result.stderr_contains("pg_backup_start returned");
    result.stderr_contains("backup complete");
    assert!(!p.xlogs.exists(), "--xlogs left behind");
    let after = p.cluster.count_rows("pgbench_history");

    let files = pitr_tests::dir_names(&p.backups);
    assert_eq!(files.len(), 4, "{files:?}");
    for t in ["data", "xlog", "sha256", "meta"] {
        assert!(
            files
                .iter()
                .any(|f| f.contains(&format!("-{t}-")) && f.ends_with(".tar.zst")),
            "no {t} file in {files:?}"
        );
    }
    let m = meta(&p.backups);
    assert_eq!(meta_value(&m, "Backup-From").as_deref(), Some("primary"));
    assert_eq!(
        meta_value(&m, "System-Identifier").unwrap(),
        p.cluster.system_identifier()
    );
    for key in [
        "Min-Xlog",
        "Started-epoch",
        "Timezone",
        "Hostname",
        "Stop-Xlog",
        "Start-LSN",
        "Stop-LSN",
        "Timeline",
        "Label",
        "PostgreSQL-Version",
        "Data-Size",
        "Xlog-Size",
        "Finished-epoch",
    ] {
        assert!(meta_value(&m, key).is_some(), "no {key} in meta {m:?}");
    }
    sha256sum_check(&p.backups);

    let restored = restore_set(&p.backups, "bk-load-restored", |_| {});
    restored.start();
    assert_eq!(restored.psql("SELECT v FROM marker"), "before backup");
    assert_eq!(restored.count_rows("pgbench_accounts"), 200_000);
    assert_pgbench_consistent(&restored);
    let n = restored.count_rows("pgbench_history");
    assert!(
        (before..=after).contains(&n),
        "restored history rows {n} not within [{before}, {after}]"
    );
}

#[test]
fn backup_gzip_to_rsync_pipe_and_local_matches_primary() {
    let p = Primary::new("bk-gzip");
    p.cluster.pgbench_init(1);
    p.cluster.pgbench(200, 2);
    let daemon = RsyncDaemon::start("backups");
    let piped = p.work.subdir("piped");
    let script = p.work.path().join("pipe.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nexec cat > '{}'/\"$1\"\n", piped.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.cluster.switch_wal();
    p.backup()
        .arg("--dst-remote")
        .arg(format!("gzip={}", daemon.url()))
        .arg("--dst-local")
        .arg(format!("gzip={}", p.backups.display()))
        .arg("--dst-pipe")
        .arg(format!("zstd={}", script.display()))
        .arg("--wal-source")
        .arg(&p.archive)
        // gzip's members compressed on three threads, written in order, whatever the CPUs.
        .args(["--compress-threads", "3"])
        .succeeds();
    let history = p.cluster.count_rows("pgbench_history");
    let balance = p.cluster.psql("SELECT sum(abalance) FROM pgbench_accounts");

    // Both gzip destinations hold the same bytes (one compression per codec).
    assert_eq!(
        pitr_tests::dir_names(daemon.dir()),
        pitr_tests::dir_names(&p.backups)
    );
    for name in pitr_tests::dir_names(&p.backups) {
        let same = std::fs::read(daemon.dir().join(&name)).unwrap()
            == std::fs::read(p.backups.join(&name)).unwrap();
        assert!(
            same,
            "{name} differs between the rsync and the local destination"
        );
    }
    assert!(pitr_tests::dir_names(&piped)
        .iter()
        .all(|n| n.ends_with(".tar.zst")));
    for dir in [daemon.dir(), p.backups.as_path(), piped.as_path()] {
        assert_eq!(
            pitr_tests::dir_names(dir).len(),
            4,
            "{}: {:?}",
            dir.display(),
            pitr_tests::dir_names(dir)
        );
        sha256sum_check(dir);
    }
    for (i, dir) in [daemon.dir(), piped.as_path()].into_iter().enumerate() {
        let restored = restore_set(dir, &format!("bk-gzip-restored{i}"), |_| {});
        restored.start();
        assert_eq!(restored.count_rows("pgbench_history"), history);
        assert_eq!(
            restored.psql("SELECT sum(abalance) FROM pgbench_accounts"),
            balance
        );
    }
}

/// A backup of a hot standby of `p` (named `name`-…) taking its WAL as `wal` says, while the
/// primary keeps writing and switching segments: the backup talks to the standby only, pauses
/// removals with its trigger while it runs, and the restored set starts with the rows of a
/// moment between the backup's start and its end. Returns the standby, still running.
pub(crate) fn back_up_hot_standby(p: &Primary, name: &str, wal: &[OsString]) -> Cluster {
    p.cluster.pgbench_init(1);
    p.cluster.psql("CREATE TABLE marker (v text)");
    p.cluster
        .psql("INSERT INTO marker VALUES ('before backup')");
    let conninfo = format!(
        "host={} port={} user=postgres",
        p.cluster.socket_dir().display(),
        p.cluster.port()
    );
    let standby = p.cluster.base_backup(
        &format!("{name}-standby"),
        "stream",
        ClusterOpts::new().set("primary_conninfo", &conninfo),
    );
    standby.write_signal(STANDBY_SIGNAL);
    standby.start();
    let (_, lsn) = p.cluster.switch_wal_at();
    standby.wait_replayed(&lsn, Duration::from_secs(60));
    let before = p.cluster.count_rows("pgbench_history");
    let trigger = p.work.path().join("pause-removal");

    // The primary keeps writing and switching segments, so that the standby's stop segment
    // reaches the archive; the standby backup itself talks to the standby only.
    let mut load = pitr_tests::pgbench_load(&p.cluster, 4);
    let done = Arc::new(AtomicBool::new(false));
    let saw_trigger = Arc::new(AtomicBool::new(false));
    // The trigger lives while the backup copies and waits for WAL; it is watched on its own,
    // a read every millisecond, so that no psql round trip hides a short-lived one.
    let watcher = {
        let done = Arc::clone(&done);
        let saw = Arc::clone(&saw_trigger);
        let trigger = trigger.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if std::fs::read(&trigger).is_ok_and(|t| t.starts_with(b"pitr-backup ")) {
                    saw.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let switcher = {
        let done = Arc::clone(&done);
        let sock = p.cluster.socket_dir().to_path_buf();
        let port = p.cluster.port();
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let _ = pg_user()
                    .command(pg_program("psql"))
                    .arg("-h")
                    .arg(&sock)
                    .args(["-p", &port.to_string(), "-U", "postgres", "-X", "-q"])
                    .args(["-c", "SELECT pg_logical_emit_message(false, 'x', 'y')"])
                    .args(["-c", "SELECT pg_switch_wal()"])
                    .output_within(pitr_tests::procs::EXTERNAL_TIMEOUT);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let result = pitr_tests::backup_tool(&standby)
        .arg("--dst-local")
        .arg(format!("zstd={}", p.backups.display()))
        .args(wal)
        .arg("--removal-pause-trigger")
        .arg(&trigger)
        .run();
    done.store(true, Ordering::SeqCst);
    switcher.join().unwrap();
    watcher.join().unwrap();
    pitr_tests::procs::wait_within(
        &mut load,
        pitr_tests::procs::EXTERNAL_TIMEOUT,
        "pgbench".as_ref(),
    )
    .unwrap();
    result.success();
    assert!(
        saw_trigger.load(Ordering::SeqCst),
        "the pause trigger was never seen"
    );
    assert!(!trigger.exists(), "the pause trigger was left behind");
    let after = p.cluster.count_rows("pgbench_history");
    let m = meta(&p.backups);
    assert_eq!(meta_value(&m, "Backup-From").as_deref(), Some("standby"));
    sha256sum_check(&p.backups);

    let restored = restore_set(&p.backups, &format!("{name}-restored"), |_| {});
    restored.start();
    assert!(!restored.is_in_recovery());
    assert_eq!(restored.psql("SELECT v FROM marker"), "before backup");
    assert_pgbench_consistent(&restored);
    let n = restored.count_rows("pgbench_history");
    assert!(
        (before..=after).contains(&n),
        "restored history rows {n} not within [{before}, {after}]"
    );

    standby
}

#[test]
fn backup_of_hot_standby_needs_no_primary_connection() {
    let p = Primary::new("bk-sb-primary");
    let standby = back_up_hot_standby(
        &p,
        "bk-sb",
        &[OsString::from("--wal-source"), p.archive.clone().into()],
    );

    // Without --removal-pause-trigger, a standby's backup from the archive warns that the
    // standby's own cleanup may take the WAL it needs (its stop segment comes once the primary
    // switches).
    let running = pitr_tests::backup_tool(&standby)
        .arg("--dst-local")
        .arg(p.work.subdir("no-trigger"))
        .arg("--wal-source")
        .arg(&p.archive)
        .spawn();
    wait_for_backup_stop(&running);
    let (segment, _) = p.cluster.switch_wal_at();
    p.cluster.wait_archived(&segment, Duration::from_secs(60));
    running
        .wait()
        .success()
        .stderr_contains(&format!(
            " : WARNING : backing up a standby without --removal-pause-trigger: WAL this backup \
             needs may be removed from {} (pitr-restore --remove-unneeded, \
             archive_cleanup_command) before it is copied\n",
            p.archive.display()
        ))
        .stderr_contains(
            " : HINT : give the trigger file the standby's pitr-restore and pitr-cleanup use \
             (--removal-pause-trigger)\n",
        );

    // A standby with hot_standby = off accepts no connection: the HINT says which setting.
    standby.stop();
    standby.append_conf(&[("hot_standby", "off")]);
    standby.start();
    pitr_tests::backup_tool(&standby)
        .arg("--dst-local")
        .arg(p.work.subdir("no-hot-standby"))
        .arg("--skip-xlogs")
        .run()
        .failure_with_status(2)
        .stderr_contains("the database system is not accepting connections")
        .stderr_contains(
            " : HINT : the server is starting up or shutting down, or it is a standby with \
             hot_standby = off: a standby is backed up and checked over a connection, so set \
             hot_standby = on in its postgresql.conf and restart it (or back up the primary)",
        );
    standby.stop();
}

#[test]
fn backup_with_tablespace_restores_it() {
    let p = Primary::new("bk-ts");
    let ts = p.work.subdir("tablespace");
    p.cluster.psql(&format!(
        "CREATE TABLESPACE extra LOCATION '{}'",
        ts.display()
    ));
    p.cluster.psql("CREATE TABLE far (id int) TABLESPACE extra");
    p.cluster
        .psql("INSERT INTO far SELECT generate_series(1, 5000)");
    let oid = p
        .cluster
        .psql("SELECT oid FROM pg_tablespace WHERE spcname = 'extra'");
    p.backup()
        .arg("--dst-local")
        .arg(p.backups.display().to_string())
        .arg("--xlogs")
        .arg(&p.xlogs)
        .succeeds();
    sha256sum_check(&p.backups);
    let relocated = p.work.path().join("relocated");
    let restored = restore_set(&p.backups, "bk-ts-restored", |data| {
        // The layout: the tablespace's contents under pg_tblspc/<oid>/ and its original
        // location in tablespace_map. Restoring elsewhere moves the directory and rewrites
        // the map; PostgreSQL makes the symbolic link at startup.
        let map = std::fs::read_to_string(data.join("tablespace_map")).unwrap();
        assert_eq!(map.trim(), format!("{oid} {}", ts.display()));
        let inside = data.join("pg_tblspc").join(&oid);
        assert!(inside.is_dir());
        std::fs::rename(&inside, &relocated).unwrap();
        std::fs::write(
            data.join("tablespace_map"),
            format!("{oid} {}\n", relocated.display()),
        )
        .unwrap();
        pg_user().chown(&data.join("tablespace_map"));
    });
    restored.start();
    assert_eq!(restored.count_rows("far"), 5000);
    let link = std::fs::read_link(restored.data_dir().join("pg_tblspc").join(&oid)).unwrap();
    assert_eq!(link, relocated);
    drop(restored);

    // pitr-restore --from-backup does the same with --tablespace-mapping. A failure after the
    // tablespace was moved into place (here a --postgresql-conf that does not exist) takes it
    // back, so that the same command, corrected, works.
    let mapped = p.work.path().join("mapped");
    let root = PgTempDir::new("bk-ts-from-backup");
    let data = root.path().join("data");
    let from_backup = || {
        Tool::new("pitr-restore")
            .arg("--from-backup")
            .arg(&p.backups)
            .arg("--source")
            .arg(&p.archive)
            .arg("--tablespace-mapping")
            .arg(format!("{}={}", ts.display(), mapped.display()))
            .arg("--target-data-dir")
            .arg(&data)
    };
    from_backup()
        .arg("--postgresql-conf")
        .arg(p.work.path().join("missing.conf"))
        .run()
        .failure_with_status(2)
        .stderr_contains("missing.conf");
    assert!(
        !mapped.exists(),
        "the tablespace was left at {}",
        mapped.display()
    );
    assert!(
        !data.exists() || pitr_tests::dir_names(&data).is_empty(),
        "{:?}",
        pitr_tests::dir_names(&data)
    );
    from_backup().succeeds();
    assert_eq!(
        std::fs::read_to_string(data.join("tablespace_map"))
            .unwrap()
            .trim(),
        format!("{oid} {}", mapped.display())
    );
    let restored = Cluster::adopt("bk-ts-from-backup", root, ClusterOpts::new());
    restored.start();
    assert_eq!(restored.count_rows("far"), 5000);
    let link = std::fs::read_link(restored.data_dir().join("pg_tblspc").join(&oid)).unwrap();
    assert_eq!(link, mapped);
}

/// Starts a slowed-down backup and waits until it is copying: its temporary data file, its
/// `--xlogs` directory and its removal pause trigger exist (pitr-backup opens the data file
/// first, then makes the other two) and its session is connected.
fn start_slow_backup(p: &Primary, trigger: &Path) -> pitr_tests::RunningTool {
    let running = p
        .backup()
        .env("PITR_TEST_COPY_DELAY_MS", "30")
        .args(["--progress-interval", "1"])
        .arg("--dst-local")
        .arg(format!("zstd={}", p.backups.display()))
        .arg("--xlogs")
        .arg(&p.xlogs)
        .arg("--removal-pause-trigger")
        .arg(trigger)
        .spawn();
    wait_until(
        "the backup to start copying",
        Duration::from_secs(60),
        || {
            (pitr_tests::dir_names(&p.backups)
                .iter()
                .any(|n| n.contains(".pitr-tmp."))
                && p.xlogs.is_dir()
                && trigger.exists()
                && backup_sessions(&p.cluster) == 1)
                .then_some(())
        },
    );
    running
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child we started.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill {pid} {sig}");
}

#[test]
fn backup_interrupted_by_sigterm_cleans_up() {
    let p = Primary::new("bk-term");
    let trigger = p.work.path().join("pause");
    let running = start_slow_backup(&p, &trigger);
    assert!(trigger.exists());
    // A progress line (--progress-interval 1) first: the signal then hits a backup in the
    // middle of its copy.
    wait_until("a progress line", Duration::from_secs(30), || {
        running
            .stderr_so_far()
            .contains("LOG : progress: ")
            .then_some(())
    });
    signal(running.pid(), libc::SIGTERM);
    let result = running.wait();
    result
        .failure_with_status(2)
        .stderr_contains("interrupted by a signal")
        .stderr_contains("LOG : progress: ");
    assert_eq!(
        pitr_tests::dir_names(&p.backups),
        Vec::<String>::new(),
        "partial outputs left"
    );
    assert!(!p.xlogs.exists(), "--xlogs left behind");
    assert!(!trigger.exists(), "pause trigger left behind");
    assert_not_in_backup(&p.cluster);
    p.backup()
        .arg("--dst-local")
        .arg(p.backups.display().to_string())
        .arg("--xlogs")
        .arg(&p.xlogs)
        .arg("--removal-pause-trigger")
        .arg(&trigger)
        .succeeds();
    assert_eq!(pitr_tests::dir_names(&p.backups).len(), 4);
}

/// Whether process `pid` has a handler for `sig` (SigCgt of `/proc/PID/status`).
fn catches(pid: u32, sig: i32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())?;
    Some(mask & (1u64 << (sig - 1)) != 0)
}

/// Found by `cargo xtask faults` (backup-kill: "killed with SIGTERM after 2 ms ... ended with
/// signal 15 instead of an error status"): pitr-backup caught SIGTERM only once its run had
/// begun, so a signal while it read its options killed it by the default action. The handler is
/// now the first thing main installs: here pitr-backup waits for its --config-file (a FIFO), is
/// sent SIGTERM meanwhile, and must end with status 2, having started nothing.
#[test]
fn backup_sigterm_while_it_reads_its_options_is_an_error_status() {
    use std::os::unix::fs::OpenOptionsExt;
    let p = Primary::new("bk-term-early");
    let fifo = p.work.path().join("backup.conf");
    let c_fifo = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o644) }, 0, "mkfifo");
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let trigger = p.work.path().join("pause");
    let running = p
        .backup()
        .arg("--config-file")
        .arg(&fifo)
        .arg("--dst-local")
        .arg(format!("zstd={}", p.backups.display()))
        .arg("--xlogs")
        .arg(&p.xlogs)
        .arg("--removal-pause-trigger")
        .arg(&trigger)
        .spawn();
    let pid = running.pid();
    wait_until(
        "pitr-backup to catch SIGTERM while it waits for its --config-file",
        Duration::from_secs(30),
        || (catches(pid, libc::SIGTERM) == Some(true)).then_some(()),
    );
    signal(pid, libc::SIGTERM);
    // Now give it its options: the FIFO opens for writing once pitr-backup has it open for
    // reading (ENXIO before).
    let mut writer = wait_until(
        "pitr-backup to open its --config-file",
        Duration::from_secs(30),
        || {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
                .ok()
        },
    );
    std::io::Write::write_all(&mut writer, b"--progress-interval 1\n").expect("write the FIFO");
    drop(writer);
    running
        .wait()
        .failure_with_status(2)
        .stderr_contains("interrupted by a signal");
    assert_eq!(
        pitr_tests::dir_names(&p.backups),
        Vec::<String>::new(),
        "nothing written"
    );
    assert!(!p.xlogs.exists(), "--xlogs left behind");
    assert!(!trigger.exists(), "pause trigger left behind");
    assert_not_in_backup(&p.cluster);
}

#[test]
fn backup_killed_by_sigkill_next_run_recovers() {
    let p = Primary::new("bk-kill");
    let trigger = p.work.path().join("pause");
    let mut running = start_slow_backup(&p, &trigger);
    running.kill();
    let result = running.wait();
    assert_eq!(result.signal(), Some(libc::SIGKILL));
    assert_no_final_files(&p.backups);
    // The session died with the process, so the server aborted the backup by itself.
    assert_not_in_backup(&p.cluster);
    assert!(
        p.xlogs.exists(),
        "kill -9 leaves --xlogs: the next run must cope"
    );
    let next = p.backup_with_xlogs(&trigger).succeeds();
    next.stderr_contains("left behind by an interrupted pitr-backup");
    assert!(!p.xlogs.exists());
    assert!(!trigger.exists());
    let visible = visible_names(&p.backups);
    assert_eq!(visible.len(), 4, "{visible:?}");
    sha256sum_check(&p.backups);
}

/// Found by `cargo xtask faults` (backup-kill, in CI: "killed with SIGKILL (to the group) after
/// 6 ms ... the next backup failed with exit 2: --xlogs ... already exists"): pitr-backup made
/// `--xlogs` and then wrote its marker into it, so a kill between the two left a directory the
/// next run could not tell from someone else's. It is now made under `.NAME.pitr-tmp.PID`
/// with its marker and renamed into place. Here the leftovers of killed runs at each step
/// (the directory in the making, one being removed, the trigger's temporary file) lie beside
/// `--xlogs` and the trigger: the next backup removes those of dead processes, keeps one of a
/// live process, and succeeds.
#[test]
fn faults_backup_killed_while_making_xlogs_is_swept_by_the_next_run() {
    let p = Primary::new("bk-kill-mkdir");
    let trigger = p.work.path().join("pause");
    let dead = {
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait for true");
        pid
    };
    let making = p.work.path().join(format!(".xlogs.pitr-tmp.{dead}"));
    pg_user().create_dir(&making, 0o700);
    pg_user().write_file(
        &making.join(".pitr-backup-xlogs"),
        format!("{dead}\n").as_bytes(),
    );
    let removing = p.work.path().join(format!(".xlogs.removing.{dead}"));
    pg_user().create_dir(&removing, 0o700);
    pg_user().write_file(&removing.join("000000010000000000000001"), b"wal");
    let trigger_tmp = p.work.path().join(format!(".pause.pitr-tmp.{dead}"));
    pg_user().write_file(&trigger_tmp, b"pitr-backup 1");
    // A live process's directory in the making is not touched.
    let live = p
        .work
        .path()
        .join(format!(".xlogs.pitr-tmp.{}", std::process::id()));
    pg_user().create_dir(&live, 0o700);

    let r = p.backup_with_xlogs(&trigger).succeeds();
    for left in [&making, &removing, &trigger_tmp] {
        r.stderr_contains(&format!(
            "removing {} left behind by an interrupted pitr-backup (process {dead})",
            left.display()
        ));
        assert!(!left.exists(), "{} left behind", left.display());
    }
    assert!(live.is_dir(), "a live process's directory was removed");
    assert!(!p.xlogs.exists(), "--xlogs left behind");
    assert!(!trigger.exists(), "pause trigger left behind");
    let hidden: Vec<String> = pitr_tests::dir_names(p.work.path())
        .into_iter()
        .filter(|n| n.starts_with(".xlogs") || n.starts_with(".pause"))
        .collect();
    assert_eq!(
        hidden,
        vec![format!(".xlogs.pitr-tmp.{}", std::process::id())]
    );
    let visible = visible_names(&p.backups);
    assert_eq!(visible.len(), 4, "{visible:?}");
    sha256sum_check(&p.backups);
}

#[test]
fn second_backup_of_one_cluster_is_busy() {
    let p = Primary::new("bk-lock");
    let trigger = p.work.path().join("pause");
    let running = start_slow_backup(&p, &trigger);
    let other = p.work.subdir("other");
    p.backup()
        .arg("--dst-local")
        .arg(other.display().to_string())
        .arg("--skip-xlogs")
        .run()
        .failure_with_status(4)
        .stderr_contains("another pitr-backup of");
    assert_eq!(pitr_tests::dir_names(&other), Vec::<String>::new());
    signal(running.pid(), libc::SIGTERM);
    running.wait().failure_with_status(2);
}

#[test]
fn backup_refuses_bad_input_and_leaves_nothing() {
    let p = Primary::new("bk-bad");
    let dst = || {
        vec![
            "--dst-local".to_string(),
            p.backups.display().to_string(),
            "--xlogs".to_string(),
            p.xlogs.display().to_string(),
        ]
    };
    let check_clean = |r: &CmdResult| {
        r.failure_with_status(2);
        assert_eq!(
            pitr_tests::dir_names(&p.backups),
            Vec::<String>::new(),
            "{r}"
        );
        assert!(!p.xlogs.exists(), "{r}");
        assert_not_in_backup(&p.cluster);
    };

    // Unreachable server.
    let free = pitr_tests::port::free_port();
    let r = Tool::new("pitr-backup")
        .as_pg_user()
        .arg("--data-dir")
        .arg(p.cluster.data_dir())
        .args(["--host", "127.0.0.1", "--port", &free.to_string()])
        .args(dst())
        .run();
    r.stderr_contains("cannot connect to the database server at 127.0.0.1:");
    r.stderr_contains("HINT : check that the server runs");
    check_clean(&r);

    // A data directory that is not this server's.
    let other = Cluster::init("bk-bad-other", ClusterOpts::new());
    let r = Tool::new("pitr-backup")
        .as_pg_user()
        .arg("--data-dir")
        .arg(other.data_dir())
        .arg("--host")
        .arg(p.cluster.socket_dir())
        .arg("--port")
        .arg(p.cluster.port().to_string())
        .args(["--username", "postgres"])
        .args(dst())
        .run();
    r.stderr_contains("belongs to database system");
    check_clean(&r);

    // An unwritable destination (owned by root, mode 0755; pitr-backup runs as the
    // PostgreSQL user).
    if pitr_tests::user::is_root() {
        let locked = p.work.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
        let r = p
            .backup()
            .arg("--dst-local")
            .arg(&locked)
            .arg("--xlogs")
            .arg(&p.xlogs)
            .run();
        r.stderr_contains("cannot write to destination");
        check_clean(&r);
        assert_eq!(pitr_tests::dir_names(&locked), Vec::<String>::new());
    }

    // An existing output name: refused before anything is written, the file untouched.
    let template = ["--filename-template", "fixed-__FILETYPE__.tar__CEXT__"];
    p.backup().args(template).args(dst()).succeeds();
    let first: Vec<(String, Vec<u8>)> = pitr_tests::dir_names(&p.backups)
        .into_iter()
        .map(|n| {
            let b = std::fs::read(p.backups.join(&n)).unwrap();
            (n, b)
        })
        .collect();
    let r = p.backup().args(template).args(dst()).run();
    r.failure_with_status(2)
        .stderr_contains("fixed-data.tar already exists in");
    let again: Vec<(String, Vec<u8>)> = pitr_tests::dir_names(&p.backups)
        .into_iter()
        .map(|n| {
            let b = std::fs::read(p.backups.join(&n)).unwrap();
            (n, b)
        })
        .collect();
    assert_eq!(first, again);
    assert!(!p.xlogs.exists());
    assert_not_in_backup(&p.cluster);

    // WAL that never arrives: the data archive already written is removed again.
    let empty_archive = p.work.subdir("empty-archive");
    let fresh = p.work.subdir("fresh");
    let r = p
        .backup()
        .arg("--dst-local")
        .arg(&fresh)
        .arg("--wal-source")
        .arg(&empty_archive)
        .args(["--wal-timeout", "2"])
        .run();
    // The data file never got its final name (nothing is committed before the set is whole),
    // so there is nothing to remove and nothing left.
    r.failure_with_status(2)
        .stderr_contains("did not appear in")
        .stderr_lacks("removed partial output");
    assert_eq!(pitr_tests::dir_names(&fresh), Vec::<String>::new());
    assert_not_in_backup(&p.cluster);

    // A WAL source marked as another cluster's archive: refused before any WAL is read (a
    // `.history` file from it would go into the set unchecked), nothing written.
    let foreign = p.work.subdir("foreign-archive");
    std::fs::write(
        foreign.join(".pitr-cluster"),
        b"system_identifier = 12345\n",
    )
    .unwrap();
    let r = p
        .backup()
        .arg("--dst-local")
        .arg(&fresh)
        .arg("--wal-source")
        .arg(&foreign)
        .run();
    r.failure_with_status(2)
        .stderr_contains(&format!(
            " : ERROR : the WAL source {} is not this cluster's: {} says the archive holds WAL \
             of database system 12345, not ",
            foreign.display(),
            foreign.join(".pitr-cluster").display()
        ))
        .stderr_contains(
            " : HINT : give --wal-source the archive this cluster's archive_command writes to",
        );
    assert_eq!(pitr_tests::dir_names(&fresh), Vec::<String>::new());
    assert_not_in_backup(&p.cluster);

    // --skip-xlogs with archiving stuck: the set would have no WAL anywhere. The server waits
    // for the archive (pg_backup_stop(true)) up to --wal-timeout, then the backup fails and
    // writes nothing. (It used to stop without waiting and commit a set whose WAL was never
    // archived, which retention then counted as the newest valid one.)
    p.cluster.psql("ALTER SYSTEM SET archive_command = 'false'");
    p.cluster.psql("SELECT pg_reload_conf()");
    let stuck = p.work.subdir("stuck");
    let r = p
        .backup()
        .arg("--dst-local")
        .arg(&stuck)
        .args(["--skip-xlogs", "--wal-timeout", "3"])
        .run();
    r.failure_with_status(2)
        .stderr_contains(
            " : ERROR : the server did not archive the WAL this backup needs within 3 s \
             (--skip-xlogs: the set has no WAL of its own, so pg_backup_stop waits for the \
             archive)\n",
        )
        .stderr_contains(" : HINT : check that archiving works (pg_stat_archiver, the server log)");
    assert_eq!(pitr_tests::dir_names(&stuck), Vec::<String>::new());
    assert_not_in_backup(&p.cluster);
    // Archiving back: the same backup waits for it and succeeds.
    p.cluster.psql("ALTER SYSTEM RESET archive_command");
    p.cluster.psql("SELECT pg_reload_conf()");
    p.backup()
        .arg("--dst-local")
        .arg(&stuck)
        .args(["--skip-xlogs", "--wal-timeout", "60"])
        .succeeds()
        .stderr_contains("pg_backup_stop waits for the backup's WAL to be archived (--skip-xlogs)");
    assert_eq!(visible_names(&stuck).len(), 3);

    // Usage errors exit 3.
    Tool::new("pitr-backup")
        .args([
            "--data-dir",
            "/nonexistent",
            "--skip-xlogs",
            "--dst-local",
            "/tmp",
        ])
        .run()
        .failure_with_status(3);
    Tool::new("pitr-backup")
        .as_pg_user()
        .arg("--data-dir")
        .arg(p.cluster.data_dir())
        .args(["--dst-local", "/tmp", "--skip-xlogs"])
        .args(["--filename-template", "no-type.tar"])
        .run()
        .failure_with_status(3)
        .stderr_contains("__FILETYPE__");
}

/// Peak resident memory (VmHWM, KiB) of a backup of a data directory holding `files` extra
/// small files.
fn peak_rss_with_files(p: &Primary, files: usize) -> u64 {
    let dir = p.cluster.data_dir().join("pitr_many_files");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir(&dir).unwrap();
    for i in 0..files {
        std::fs::write(
            dir.join(format!("file-{i:06}")),
            format!("{i}\n").repeat(10),
        )
        .unwrap();
    }
    chown_tree(&dir);
    let out = p.work.subdir(&format!("rss-{files}"));
    let mut running = p
        .backup()
        .arg("--dst-local")
        .arg(format!("zstd={}", out.display()))
        .arg("--skip-xlogs")
        // zstd's own workers take buffers from a pool that grows with how far the reader gets
        // ahead of them, which scheduling decides (58-70 MiB from one run to the next here):
        // one thread keeps the compressor's memory fixed, so what is compared is the cost of
        // the files.
        .args(["--compress-threads", "1"])
        .spawn();
    let status = format!("/proc/{}/status", running.pid());
    let mut peak = 0;
    while !running.has_exited() {
        if let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    running.wait().success();
    assert!(peak > 0, "no VmHWM reading");
    peak
}

#[test]
fn backup_memory_does_not_grow_with_file_count() {
    let p = Primary::new("bk-rss");
    let small = peak_rss_with_files(&p, 5_000);
    let large = peak_rss_with_files(&p, 50_000);
    eprintln!("peak RSS: {small} KiB with 5,000 files, {large} KiB with 50,000 files");
    assert!(
        // 2 MiB for 45,000 more files: 46 bytes each, less than a list of their names.
        large <= small + 2048,
        "peak RSS grew from {small} KiB (5,000 files) to {large} KiB (50,000 files)"
    );
}

/// Hidden files pitr-backup or pitr-cleanup may leave in a backup directory: temporary files
/// and the records of a set being written or removed.
fn hidden_leftovers(dir: &Path) -> Vec<String> {
    pitr_tests::dir_names(dir)
        .into_iter()
        .filter(|n| n.contains(".pitr-tmp.") || n.starts_with(".pitr-set."))
        .collect()
}

/// Defect 3 of issue 12: the data file was renamed into place before WAL collection, which can
/// wait up to `--wal-timeout`; a kill -9 there left set files under final names with no meta
/// file, which nothing ever removed. Now no final name appears before the set is whole, and
/// the next pitr-backup removes the hidden files the killed one left (once they are an hour
/// old, which the test hook makes at once).
#[test]
fn r12_3_backup_killed_while_waiting_for_wal_leaves_no_final_names() {
    let p = Primary::new("r12-3");
    // A stuck archiver: the backup's last segment never arrives, so the backup waits for it.
    p.cluster.psql("ALTER SYSTEM SET archive_command = 'false'");
    p.cluster.psql("SELECT pg_reload_conf()");
    let mut running = p
        .backup()
        .args(["--wal-timeout", "600"])
        .arg("--dst-local")
        .arg(format!("zstd={}", p.backups.display()))
        .arg("--xlogs")
        .arg(&p.xlogs)
        .spawn();
    wait_for_backup_stop(&running);
    running.kill();
    let killed = running.wait();
    assert_eq!(killed.signal(), Some(libc::SIGKILL), "{killed}");
    assert_no_final_files(&p.backups);

    p.cluster.psql("ALTER SYSTEM RESET archive_command");
    p.cluster.psql("SELECT pg_reload_conf()");
    // The hook makes the killed backup's temp file old enough to be swept at once.
    p.backup()
        .env("PITR_TEST_STALE_TEMP_SECS", "0")
        .arg("--dst-local")
        .arg(format!("zstd={}", p.backups.display()))
        .arg("--xlogs")
        .arg(&p.xlogs)
        .succeeds();
    let visible = visible_names(&p.backups);
    assert_eq!(visible.len(), 4, "{visible:?}");
    assert_eq!(hidden_leftovers(&p.backups), Vec::<String>::new());
    sha256sum_check(&p.backups);
}

/// Defect 4 of issue 12: a pitr-cleanup killed after removing a set's meta file left the
/// set's other files forever (cleanup finds sets through their meta files). Now the removal is
/// recorded first, and the next run finishes it.
#[test]
fn r12_4_cleanup_killed_mid_set_is_finished_by_the_next_run() {
    let p = Primary::new("r12-4");
    // Two backups may start in the same second: names of their own keep them apart, and
    // sort them as cleanup does when their start times are equal.
    for i in 0..2 {
        p.backup()
            .arg("--filename-template")
            .arg(format!("set{i}-__FILETYPE__-^Y^m^d-^H^M^S.tar__CEXT__"))
            .arg("--dst-local")
            .arg(format!("zstd={}", p.backups.display()))
            .arg("--xlogs")
            .arg(&p.xlogs)
            .succeeds();
    }
    let sets = pitr_tests::dir_names(&p.backups);
    assert_eq!(sets.len(), 8, "{sets:?}");
    let retention = || {
        Tool::new("pitr-cleanup")
            .as_pg_user()
            .arg("--backup-dir")
            .arg(&p.backups)
            .arg("--archive")
            .arg(&p.archive)
            .args(["--keep-count", "1"])
    };
    let mut running = retention().env("PITR_TEST_REMOVE_DELAY_MS", "5000").spawn();
    wait_until(
        "the first set's meta file to be removed",
        Duration::from_secs(60),
        || {
            running
                .stderr_so_far()
                .lines()
                .any(|l| l.contains("LOG : removed backup file ") && l.contains("-meta-"))
                .then_some(())
        },
    );
    running.kill();
    let killed = running.wait();
    assert_eq!(killed.signal(), Some(libc::SIGKILL), "{killed}");
    let half = pitr_tests::dir_names(&p.backups);
    assert!(
        half.iter().filter(|n| !n.starts_with('.')).count() > 4,
        "the kill came too late to leave a half-removed set: {half:?}"
    );

    let next = retention().succeeds();
    next.stderr_contains("the interrupted removing of backup set");
    let visible = visible_names(&p.backups);
    assert_eq!(visible.len(), 4, "{visible:?}");
    let mut metas: Vec<&String> = sets.iter().filter(|n| n.contains("-meta-")).collect();
    metas.sort();
    assert!(
        visible.contains(metas[1]),
        "the newest set went: {visible:?}"
    );
    assert!(
        !visible.contains(metas[0]),
        "the oldest set stayed: {visible:?}"
    );
    assert_eq!(hidden_leftovers(&p.backups), Vec::<String>::new());
    sha256sum_check(&p.backups);
}

/// A hot standby backed up while it follows a timeline switch upstream: its primary is a
/// standby itself, promoted while the backup runs (a failover above a cascading standby). The
/// backup starts on timeline 1 and ends on timeline 2. pitr-backup named every segment on the
/// start's timeline and waited for ones that never come (the segment holding the switch and
/// those after it exist on timeline 2 only); it now takes timeline 1's segments up to the
/// switch and timeline 2's from the segment holding it, as recovery reads them, with
/// `00000002.history`, and its manifest lists both ranges, the newest first, as PostgreSQL's
/// does. `pitr-restore --from-backup` restores it to a restore point made after the switch,
/// with the row written there, and the server is promoted onto timeline 3.
#[test]
fn backup_of_a_standby_that_follows_a_timeline_switch_takes_each_segment_from_its_timeline() {
    let p = Primary::new("bk-tli-primary");
    p.cluster.psql("CREATE TABLE marker (v text)");
    p.cluster
        .psql("INSERT INTO marker VALUES ('before backup')");
    let conninfo = |c: &Cluster| {
        format!(
            "host={} port={} user=postgres",
            c.socket_dir().display(),
            c.port()
        )
    };
    // The middle standby archives into the primary's archive once it is promoted.
    let middle = p.cluster.base_backup(
        "bk-tli-middle",
        "stream",
        ClusterOpts::new()
            .set("primary_conninfo", &conninfo(&p.cluster))
            .set("archive_mode", "on"),
    );
    middle.write_signal(STANDBY_SIGNAL);
    middle.start();
    let lower = p.cluster.base_backup(
        "bk-tli-lower",
        "stream",
        ClusterOpts::new().set("primary_conninfo", &conninfo(&middle)),
    );
    lower.write_signal(STANDBY_SIGNAL);
    lower.start();
    let timeout = Duration::from_secs(60);
    let (_, lsn) = p.cluster.switch_wal_at();
    lower.wait_replayed(&lsn, timeout);

    let hold = p.work.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let running = pitr_tests::backup_tool(&lower)
        .env("PITR_TEST_BACKUP_HOLD", &hold)
        .arg("--dst-local")
        .arg(format!("zstd={}", p.backups.display()))
        .arg("--wal-source")
        .arg(&p.archive)
        .args(["--wal-timeout", "60"])
        .spawn();
    wait_until("the backup to hold before its stop", timeout, || {
        running
            .stderr_so_far()
            .contains(" : LOG : holding before pg_backup_stop while ")
            .then_some(())
    });
    // The failover: the old primary stops, the middle standby takes timeline 2, the lower one
    // follows it; a restartpoint moves the lower one's minimum recovery point (where its
    // backup stops) onto timeline 2.
    p.cluster.stop();
    middle.promote();
    middle.wait_promoted(timeout);
    middle.psql("INSERT INTO marker VALUES ('after switch')");
    middle.psql("SELECT pg_create_restore_point('after-switch')");
    middle.psql("CHECKPOINT");
    let (_, lsn) = middle.switch_wal_at();
    lower.wait_replayed(&lsn, timeout);
    lower.psql("CHECKPOINT");
    std::fs::remove_file(&hold).unwrap();
    wait_for_backup_stop(&running);
    // The stop segment reaches the archive once the new primary switches.
    let (segment, _) = middle.switch_wal_at();
    middle.wait_archived(&segment, timeout);
    let done = running.wait();
    done.success().stderr_contains(
        " : LOG : the standby followed a switch to timeline 2 during the backup; its WAL from ",
    );

    // Each segment from its timeline: timeline 1's before the segment holding the switch,
    // timeline 2's from it on.
    let history = std::fs::read_to_string(middle.wal_dir().join("00000002.history")).unwrap();
    let switch = pitr_common::history::parse_history(&history).unwrap()[0].switch;
    let seg_size = pitr_common::wal::SegSize::DEFAULT;
    let switch_segno = switch.segno(seg_size).0;
    let m = meta(&p.backups);
    let min = meta_value(&m, "Min-Xlog").unwrap();
    let stop = meta_value(&m, "Stop-Xlog").unwrap();
    assert!(stop.starts_with("00000002"), "Stop-Xlog {stop}");
    let segno = |name: &str| {
        pitr_common::wal::WalFileName::parse(name)
            .unwrap()
            .segno(seg_size)
            .unwrap()
            .0
    };
    let expected: Vec<String> = (segno(&min)..=segno(&stop))
        .map(|n| {
            let tli = if n < switch_segno { 1 } else { 2 };
            pitr_common::wal::WalFileName::segment(
                pitr_common::wal::Timeline(tli),
                pitr_common::wal::SegNo(n),
                seg_size,
            )
            .to_string()
        })
        .chain(["00000002.history".to_string()])
        .collect();
    let unpacked = p.work.subdir("unpacked");
    unpack(
        &p.backups.join(meta_value(&m, "Xlog-File").unwrap()),
        &unpacked,
    );
    let mut held = pitr_tests::dir_names(&unpacked.join("pg_wal"));
    held.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(held, expected_sorted);
    assert!(
        expected.iter().any(|n| n.starts_with("00000001")),
        "the backup began after the switch: {expected:?}"
    );

    let restored = pitr_tests::pitr_util::restore_backup(
        "bk-tli-restored",
        Tool::new("pitr-restore")
            .arg("--from-backup")
            .arg(&p.backups)
            .arg("--source")
            .arg(&p.archive)
            .args([
                "--target-name",
                "after-switch",
                "--target-action",
                "promote",
            ]),
        ClusterOpts::new(),
    );
    let manifest = std::fs::read_to_string(restored.data_dir().join("backup_manifest")).unwrap();
    let ranges = &manifest[manifest.find("\"WAL-Ranges\"").unwrap()..];
    let tl2 = ranges.find("{ \"Timeline\": 2, \"Start-LSN\": \"").unwrap();
    let tl1 = ranges.find("{ \"Timeline\": 1, \"Start-LSN\": \"").unwrap();
    assert!(tl2 < tl1, "{ranges}");
    assert!(
        ranges.contains(&format!("\"End-LSN\": \"{switch}\" }}")),
        "{ranges}"
    );
    restored.start();
    restored.wait_promoted(timeout);
    assert_eq!(
        restored.psql("SELECT string_agg(v, ',' ORDER BY v) FROM marker"),
        "after switch,before backup"
    );
    // Promoted at the target on timeline 2: timeline 3.
    assert_eq!(
        restored.psql("SELECT timeline_id FROM pg_control_checkpoint()"),
        "3"
    );
}

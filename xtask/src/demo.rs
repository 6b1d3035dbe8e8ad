//! `cargo xtask demo`: the runbook (docs/runbook.md) played on throwaway clusters, narrated.
//!
//! Three "hosts" on loopback, db1, db2 and db3, each with what the runbook gives a database
//! host: a PostgreSQL data directory, an rsync daemon module `wal_archive` (its WAL archive), an
//! rsync daemon module `backups` (base backups pushed to it), and a directory for pitr's state,
//! triggers and the WAL a running backup collects. db1 starts as the primary, db2 is the warm
//! spare to fail over to (its archive pruned by pitr-restore), db3 the warm spare that keeps
//! the WAL archive for point-in-time restores and runs retention. The steps: set up, archive,
//! base backup, bootstrap both standbys from it, traffic, failover to db2, db3 onto timeline 2,
//! rebuild db1 as a standby of db2, retention, a point-in-time restore of a dropped table, and
//! a delayed standby on db3 (`--recovery-delay`) that undoes a `TRUNCATE`, pitr-monitor's
//! `info` and `verify` of db3's archive, and the object-store variant: the primary also
//! archives to a 3-node Garage cluster, a backup goes only there, and a fourth server, db4, is
//! bootstrapped from it as a warm spare reading the store. docs/runbook.md says
//! below each command block which step runs it (checked by a test in `runbook.rs`).
//! Each step prints the pitr commands it runs (paths under the scratch dir as `$DEMO`) and what
//! it checked; the end is `PASS` (exit 0) or `FAIL` (exit 1).
//!
//! It reuses the integration tests' harness (`pitr-tests`: [`Cluster`], [`RsyncDaemon`],
//! [`PgTempDir`], ...), which runs PostgreSQL as an unprivileged user when we are root. The
//! harness panics on failures and the workspace aborts on panic, so cleanup does not rely on
//! unwinding: see [`crate::scratch`]. The demo's own checks return errors.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use argh::FromArgs;
use pitr_tests::cluster::tail;
use pitr_tests::procs::OutputWithin;
use pitr_tests::{
    pg_program, pg_user, poll_until, ArchiveDir, Cluster, ClusterOpts, CmdResult, PgTempDir,
    RsyncDaemon, Tool,
};

use crate::{cargo, deps, garage, project_root, scratch, target_dir};

/// How long any one wait of the demo may take (archiving, replay, promotion).
const TIMEOUT: Duration = Duration::from_secs(120);

/// The table the point-in-time restore brings back, and its row count.
const TABLE: &str = "customers";
const TABLE_ROWS: u64 = 1000;

/// The delayed standby's `--recovery-delay` in seconds (the runbook's is an hour), and the
/// table whose truncation it holds back, with its row count.
const RECOVERY_DELAY: u64 = 20;
const DELAYED_TABLE: &str = "orders";
const DELAYED_ROWS: u64 = 500;

/// Run the runbook's scenario (archive, backup, two standbys, failover, rebuild of the old
/// primary, retention, point-in-time restore, delayed standby, a standby from object storage)
/// on throwaway clusters and check every step.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "demo",
    note = "Needs what `cargo xtask test` needs (PostgreSQL 15 server programs from PG_BINDIR, \
            default /usr/lib/postgresql/15/bin, rsync, and Garage, built once per machine into \
            ~/.cache/pitr), and installs them the same way on Debian as root. Builds the binaries (debug), runs everything on 127.0.0.1 under \
            one scratch directory, and removes it at the end, also on failure or Ctrl-C. \
            Prints PASS and exits 0, or FAIL and exits 1."
)]
pub struct DemoArgs {}

/// Builds, runs the scenario, prints PASS or FAIL.
pub fn run(_args: &DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    // First, while this is the only thread: every thread started later inherits the mask.
    let signals = scratch::block_signals()?;
    let root = project_root();

    println!("xtask: checking for PostgreSQL 15 server programs and rsync");
    let deps = deps::ensure()?;
    println!(
        "xtask: checking for Garage {} (the object-store step)",
        garage::VERSION
    );
    let garage = garage::ensure()?;
    crate::run(
        Command::new(cargo())
            .current_dir(&root)
            .args(["build", "--workspace", "--bins"]),
    )?;
    let bin_dir = target_dir(&root).join("debug");

    let scratch = scratch::Scratch::create("demo")?;
    // Still one thread: the harness reads these, and TMPDIR puts every temp dir it makes (and
    // the binaries' scratch files) inside the scratch directory.
    env::set_var("PG_BINDIR", &deps.pg_bindir);
    env::set_var("PITR_BIN_DIR", &bin_dir);
    env::set_var("TMPDIR", scratch.path());
    env::set_var(garage::ENV_VAR, &garage);
    scratch::install(signals)?;

    let mut demo = Demo {
        bin_dir,
        root: scratch.path().to_path_buf(),
        step: 0,
        checks: 0,
        step_started: Instant::now(),
    };
    println!(
        "\ndemo: scratch directory {} (shown as $DEMO); binaries from {}",
        demo.root.display(),
        demo.bin_dir.display()
    );
    let outcome = demo.scenario();
    demo.finish_step();
    let elapsed = started.elapsed().as_secs_f64();
    // The clusters and daemons are dropped by now; the scratch directory goes next.
    drop(scratch);
    match outcome {
        Ok(()) => {
            println!(
                "\ndemo: PASS ({} steps, {} checks, {elapsed:.0} s)",
                demo.step, demo.checks
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!(
                "\ndemo: FAIL in step {} after {} checks ({elapsed:.0} s): {e:#}",
                demo.step, demo.checks
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// One database host of the runbook, without its server (which changes during the demo).
struct Host {
    name: &'static str,
    /// rsync module `wal_archive`: this host's WAL archive, which the primary pushes into.
    wal: RsyncDaemon,
    /// rsync module `backups`: base backups of the primary are pushed into it.
    backups: RsyncDaemon,
    /// pitr's directory on the host: archive state, triggers, the WAL of a running backup.
    work: PgTempDir,
}

impl Host {
    fn new(name: &'static str) -> Host {
        let work = PgTempDir::new(&format!("{name}-pitr"));
        work.subdir("archive-state");
        Host {
            name,
            wal: RsyncDaemon::start_labeled(&format!("{name}-rsyncd"), "wal_archive"),
            backups: RsyncDaemon::start_labeled(&format!("{name}-rsyncd"), "backups"),
            work,
        }
    }

    /// The WAL archive directory (what the `wal_archive` module serves).
    fn archive(&self) -> &Path {
        self.wal.dir()
    }

    /// The directory the `backups` module serves.
    fn backup_dir(&self) -> &Path {
        self.backups.dir()
    }

    fn state_dir(&self) -> PathBuf {
        self.work.path().join("archive-state")
    }

    /// pitr-archive's `--dst-backup` and pitr-backup's `--xlogs` (exists only during a backup).
    fn xlogs(&self) -> PathBuf {
        self.work.path().join("backup-xlogs")
    }

    fn finish_trigger(&self) -> PathBuf {
        self.work.path().join("finish.trigger")
    }

    fn pause_trigger(&self) -> PathBuf {
        self.work.path().join("removal-pause.trigger")
    }
}

/// The scenario's state: where things are, and the counters it prints.
struct Demo {
    bin_dir: PathBuf,
    root: PathBuf,
    step: usize,
    checks: usize,
    step_started: Instant,
}

impl Demo {
    // ---- Narration ----

    fn begin_step(&mut self, title: &str) {
        self.finish_step();
        self.step += 1;
        self.step_started = Instant::now();
        scratch::set_step(&format!("step {} ({title})", self.step));
        println!("\n== step {}: {title}", self.step);
    }

    fn finish_step(&self) {
        if self.step > 0 {
            println!(
                "   (step {} took {:.1} s)",
                self.step,
                self.step_started.elapsed().as_secs_f64()
            );
        }
    }

    fn note(&self, text: &str) {
        for line in self.show(text).lines() {
            println!("   {line}");
        }
    }

    /// Prints `ok: what`, or fails the demo with `what` and `detail`.
    fn check(&mut self, ok: bool, what: &str, detail: impl FnOnce() -> String) -> Result<()> {
        if !ok {
            bail!("check failed: {what}\n{}", detail());
        }
        self.checks += 1;
        println!("   ok: {what}");
        Ok(())
    }

    /// Checks that `actual == expected`, printing both.
    fn check_eq<T: PartialEq + std::fmt::Debug>(
        &mut self,
        what: &str,
        actual: T,
        expected: T,
    ) -> Result<()> {
        let ok = actual == expected;
        self.check(ok, &format!("{what}: {actual:?}"), || {
            format!("expected {expected:?}")
        })
    }

    /// `text` with the binaries' directory left out and the scratch directory as `$DEMO`.
    fn show(&self, text: &str) -> String {
        text.replace(&format!("{}/", self.bin_dir.display()), "")
            .replace(&format!("{}/", pitr_tests::pg_bindir().display()), "")
            .replace(&self.root.display().to_string(), "$DEMO")
    }

    // ---- Running things ----

    /// The path of one of our binaries.
    fn bin(&self, name: &str) -> String {
        self.bin_dir.join(name).display().to_string()
    }

    /// Runs one of our binaries as the PostgreSQL user, printing its command line and, with
    /// `echo`, the log lines it wrote; a non-zero exit fails the demo with its output.
    fn pitr(&self, name: &str, args: &[String], echo: bool) -> Result<CmdResult> {
        println!("   $ {name} {}", self.show(&args.join(" ")));
        let result = Tool::new(name)
            .as_pg_user()
            .args(args)
            .timeout(Duration::from_secs(300))
            .run();
        if result.code() != Some(0) {
            bail!("{name} failed\n{}", self.show(&result.to_string()));
        }
        if echo {
            for line in result.stderr().lines().chain(result.stdout().lines()) {
                println!("     | {}", self.show(strip_log_prefix(line)));
            }
        }
        Ok(result)
    }

    /// Runs `script` with bash as the PostgreSQL user, printing it.
    fn shell(&self, script: &str, cwd: &Path) -> Result<String> {
        println!("   $ {}", self.show(script));
        let out = pg_user()
            .command("bash")
            .args(["-o", "pipefail", "-c", script])
            .current_dir(cwd)
            .output_within(pitr_tests::procs::EXTERNAL_TIMEOUT)
            .context("running bash")?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "{} failed ({})\n{stdout}{}",
                self.show(script),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(stdout)
    }

    /// `archive_command` for `from`: pitr-archive pushing to the `wal_archive` modules of the
    /// two other hosts, with `from`'s state dir and backup WAL directory.
    fn archive_command(&self, from: &Host, to: [&Host; 2]) -> String {
        self.archive_command_also(from, to, "")
    }

    /// [`Demo::archive_command`] with the options `extra` (another destination) too.
    fn archive_command_also(&self, from: &Host, to: [&Host; 2], extra: &str) -> String {
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!("{extra} ")
        };
        format!(
            "{} {extra}--state-dir {} --dst-remote zstd={} --dst-remote zstd={} --dst-backup {} %p",
            self.bin("pitr-archive"),
            from.state_dir().display(),
            to[0].wal.url(),
            to[1].wal.url(),
            from.xlogs().display()
        )
    }

    /// pitr-backup of the primary `pg` on `host`, pushed to the `backups` modules of `to`.
    fn backup(&self, pg: &Cluster, host: &Host, to: [&Host; 2]) -> Result<CmdResult> {
        let args = vec![
            "--data-dir".to_owned(),
            pg.data_dir().display().to_string(),
            "--host".to_owned(),
            pg.socket_dir().display().to_string(),
            "--port".to_owned(),
            pg.port().to_string(),
            "--username".to_owned(),
            "postgres".to_owned(),
            "--dst-remote".to_owned(),
            format!("zstd={}", to[0].backups.url()),
            "--dst-remote".to_owned(),
            format!("zstd={}", to[1].backups.url()),
            "--xlogs".to_owned(),
            host.xlogs().display().to_string(),
            "--fast-checkpoint".to_owned(),
        ];
        self.pitr("pitr-backup", &args, true)
    }

    /// `pitr-restore --from-backup` of the latest set in `host`'s backup directory into
    /// `target` (which must not exist), recovering from `host`'s archive with `extra` options.
    fn restore_backup(&self, host: &Host, target: &Path, extra: &[String]) -> Result<CmdResult> {
        let mut args = vec![
            "--from-backup".to_owned(),
            format!("zstd={}", host.backup_dir().display()),
            "--target-data-dir".to_owned(),
            target.display().to_string(),
            "--source".to_owned(),
            format!("zstd={}", host.archive().display()),
        ];
        args.extend_from_slice(extra);
        self.pitr("pitr-restore", &args, true)
    }

    /// Traffic on the primary: `pgbench` commits, then a WAL switch; waits until the segment
    /// is archived everywhere and every standby in `standbys` has replayed it. Returns the
    /// primary's pgbench_history row count and the LSN of the switch.
    fn traffic(
        &self,
        primary: &Cluster,
        standbys: &[&Cluster],
        transactions: u32,
    ) -> (u64, String) {
        self.note(&format!(
            "pgbench: {transactions} transactions on each of 2 clients"
        ));
        primary.pgbench(transactions, 2);
        let (segment, lsn) = primary.switch_wal_at();
        primary.wait_archived(&segment, TIMEOUT);
        for standby in standbys {
            standby.wait_replayed(&lsn, TIMEOUT);
        }
        (primary.count_rows("pgbench_history"), lsn)
    }

    /// Prints the size of `host`'s archive and backup directory.
    fn show_sizes(&self, host: &Host) {
        let (wal_files, wal_bytes) = dir_usage(host.archive());
        let (backup_files, backup_bytes) = dir_usage(host.backup_dir());
        println!(
            "   {}: wal_archive {wal_files} files, {}; backups {backup_files} files, {}",
            host.name,
            human(wal_bytes),
            human(backup_bytes)
        );
    }

    // ---- The scenario ----

    fn scenario(&mut self) -> Result<()> {
        self.begin_step("three hosts: rsync daemons with modules wal_archive and backups");
        let db1 = Host::new("db1");
        let db2 = Host::new("db2");
        let db3 = Host::new("db3");
        for host in [&db1, &db2, &db3] {
            self.note(&format!(
                "{}: {} serves {}\n     {} serves {}",
                host.name,
                host.wal.url(),
                host.archive().display(),
                host.backups.url(),
                host.backup_dir().display()
            ));
        }

        // The PostgreSQL server of each host: pg1 on db1, and so on.
        self.begin_step("db1 is the primary: it archives every WAL segment to db2 and db3");
        let archive_command = self.archive_command(&db1, [&db2, &db3]);
        self.note(&format!("archive_command = '{archive_command}'"));
        let pg1 = Cluster::init(
            "db1",
            ClusterOpts::new()
                .set("wal_level", "replica")
                .set("archive_mode", "on")
                .set("archive_timeout", "60")
                .set("archive_command", &archive_command),
        );
        pg1.start();
        self.note("pgbench -i -s 1 (100,000 accounts)");
        pg1.pgbench_init(1);
        let segment = pg1.switch_wal();
        pg1.wait_archived(&segment, TIMEOUT);
        for host in [&db2, &db3] {
            let held = ArchiveDir::new(host.archive()).file_for(&segment);
            self.check(
                held.is_some(),
                &format!(
                    "{} holds {}",
                    host.name,
                    held.as_deref().unwrap_or(&segment)
                ),
                || format!("{:?}", ArchiveDir::new(host.archive()).all_names()),
            )?;
        }
        let stats = pg1.archiver_stats();
        self.check(
            stats.failed_count == 0,
            &format!(
                "pg_stat_archiver: archived_count {}, failed_count {}",
                stats.archived_count, stats.failed_count
            ),
            || tail(&pg1.server_log(), 30),
        )?;

        self.begin_step("base backup of db1 with pitr-backup, pushed to db2 and db3");
        self.backup(&pg1, &db1, [&db2, &db3])?;
        self.check(
            !db1.xlogs().exists(),
            "--xlogs directory removed",
            String::new,
        )?;
        for host in [&db2, &db3] {
            let sets = backup_sets(host.backup_dir())?;
            self.check_eq(
                &format!("backup sets in {}'s backups", host.name),
                sets.len(),
                1,
            )?;
            self.note(&sets[0].describe());
        }
        let digest = backup_sets(db2.backup_dir())?[0].digest_file.clone();
        let verified = self.shell(&format!("sha256sum -c {digest}"), db2.backup_dir())?;
        self.check(
            verified.lines().count() == 2 && verified.lines().all(|l| l.ends_with(": OK")),
            "sha256sum -c: data and WAL archives OK",
            || verified.clone(),
        )?;

        self.begin_step("bootstrap db2 and db3 as warm spares with pitr-restore --from-backup");
        let pg2_root = PgTempDir::new("db2");
        self.restore_backup(
            &db2,
            &pg2_root.path().join("data"),
            &[
                "--finish-trigger".to_owned(),
                db2.finish_trigger().display().to_string(),
                "--remove-unneeded".to_owned(),
                "--removal-pause-trigger".to_owned(),
                db2.pause_trigger().display().to_string(),
            ],
        )?;
        let pg3_root = PgTempDir::new("db3");
        self.restore_backup(
            &db3,
            &pg3_root.path().join("data"),
            &[
                "--finish-trigger".to_owned(),
                db3.finish_trigger().display().to_string(),
            ],
        )?;
        // Each standby's own settings (the harness appends them to postgresql.conf): its port
        // and socket directory, and the archive_command it needs once it is promoted
        // (archive_mode = on archives nothing during recovery).
        let pg2 = Cluster::adopt(
            "db2",
            pg2_root,
            ClusterOpts::new()
                .set("archive_mode", "on")
                .set("archive_command", &self.archive_command(&db2, [&db1, &db3])),
        );
        let pg3 = Cluster::adopt(
            "db3",
            pg3_root,
            ClusterOpts::new()
                .set("archive_mode", "on")
                .set("archive_command", &self.archive_command(&db3, [&db1, &db2])),
        );
        self.note("db2 and db3: own port, archive_command towards the other hosts, pg_ctl start");
        pg2.start();
        pg3.start();
        for (name, pg) in [("db2", &pg2), ("db3", &pg3)] {
            self.check(
                pg.is_in_recovery(),
                &format!("{name} is in recovery (warm spare)"),
                String::new,
            )?;
            self.check_eq(
                &format!("{name} pgbench_accounts rows"),
                pg.count_rows("pgbench_accounts"),
                100_000,
            )?;
        }

        self.begin_step("traffic on db1; db2 and db3 follow through their archives");
        let (rows, _) = self.traffic(&pg1, &[&pg2, &pg3], 300);
        self.note(&format!("db1: {rows} pgbench_history rows"));
        for (name, pg) in [("db2", &pg2), ("db3", &pg3)] {
            self.check_eq(
                &format!("{name} pgbench_history rows"),
                pg.count_rows("pgbench_history"),
                rows,
            )?;
            let restored = count_lines(&pg.server_log(), "pitr-restore : LOG : Segment");
            self.check(
                restored > 0,
                &format!("{name}'s server log has {restored} 'pitr-restore : LOG : Segment ... restored' lines"),
                String::new,
            )?;
        }
        let stats = pg1.archiver_stats();
        self.note(&format!(
            "pg_stat_archiver on db1: archived_count {}, last_archived_wal {}, failed_count {}",
            stats.archived_count, stats.last_archived_wal, stats.failed_count
        ));
        for (name, pg) in [("db2", &pg2), ("db3", &pg3)] {
            let replay = pg.psql(
                "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), \
                 pg_last_xact_replay_timestamp()",
            );
            self.note(&format!(
                "{name}: pg_is_in_recovery | pg_last_wal_replay_lsn | pg_last_xact_replay_timestamp = {replay}"
            ));
        }
        for host in [&db2, &db3] {
            self.show_sizes(host);
        }
        self.check_no_errors(&[("db1", &pg1), ("db2", &pg2), ("db3", &pg3)])?;

        self.begin_step("failover: db1 goes down, db2 finishes recovery (finish trigger)");
        pg1.stop();
        self.note("db1 stopped (pg_ctl stop -m fast: it archives its last segment first)");
        self.check(
            pg1.ready_segments().is_empty(),
            "db1 has no WAL left to archive",
            || format!("{:?}", pg1.ready_segments()),
        )?;
        self.shell(
            &format!("touch {}", db2.finish_trigger().display()),
            Path::new("/"),
        )?;
        pg2.wait_promoted(TIMEOUT);
        self.check(
            !pg2.is_in_recovery(),
            "db2 left recovery: it is the primary now",
            String::new,
        )?;
        self.check_eq(
            "db2 pgbench_history rows (nothing lost)",
            pg2.count_rows("pgbench_history"),
            rows,
        )?;
        let timeline = pg2.psql("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)");
        self.check_eq("db2 writes WAL on timeline", timeline.as_str(), "00000002")?;
        self.shell(
            &format!("rm {}", db2.finish_trigger().display()),
            Path::new("/"),
        )?;
        pg2.wait_archived("00000002.history", TIMEOUT);
        for host in [&db1, &db3] {
            let held = ArchiveDir::new(host.archive()).file_for("00000002.history");
            self.check(
                held.is_some(),
                &format!("db2 archives to {}: 00000002.history arrived", host.name),
                || format!("{:?}", ArchiveDir::new(host.archive()).all_names()),
            )?;
        }

        self.begin_step("db3 follows the new primary onto timeline 2 (restart)");
        let (rows, lsn) = self.traffic(&pg2, &[], 200);
        self.note("db3: pg_ctl restart (a warm spare reads the new timeline's history at start)");
        pg3.stop();
        pg3.start();
        pg3.wait_replayed(&lsn, TIMEOUT);
        self.check_eq(
            "db3 pgbench_history rows",
            pg3.count_rows("pgbench_history"),
            rows,
        )?;
        pg3.psql("CHECKPOINT");
        self.check_eq(
            "db3's restartpoint timeline",
            pg3.psql("SELECT timeline_id FROM pg_control_checkpoint()")
                .as_str(),
            "2",
        )?;

        self.begin_step("rebuild db1 as a standby of db2 from a new base backup");
        self.backup(&pg2, &db2, [&db1, &db3])?;
        let old_data = pg1.root().path().join("data.old");
        fs::rename(pg1.data_dir(), &old_data).context("moving db1's data directory aside")?;
        self.note(
            "db1's old data directory moved aside to data.old (its postgresql.conf is reused)",
        );
        self.restore_backup(
            &db1,
            pg1.data_dir(),
            &[
                "--finish-trigger".to_owned(),
                db1.finish_trigger().display().to_string(),
                "--remove-unneeded".to_owned(),
                "--removal-pause-trigger".to_owned(),
                db1.pause_trigger().display().to_string(),
                "--postgresql-conf".to_owned(),
                old_data.join("postgresql.conf").display().to_string(),
            ],
        )?;
        pg1.start();
        self.check(
            pg1.is_in_recovery(),
            "db1 is in recovery (warm spare of db2)",
            String::new,
        )?;
        let (rows, _) = self.traffic(&pg2, &[&pg1, &pg3], 200);
        for (name, pg) in [("db1", &pg1), ("db3", &pg3)] {
            self.check_eq(
                &format!("{name} pgbench_history rows"),
                pg.count_rows("pgbench_history"),
                rows,
            )?;
        }
        pg1.psql("CHECKPOINT");
        self.check_eq(
            "db1's restartpoint timeline",
            pg1.psql("SELECT timeline_id FROM pg_control_checkpoint()")
                .as_str(),
            "2",
        )?;

        self.begin_step("retention on db3: pitr-cleanup --keep-count 1");
        let before = backup_sets(db3.backup_dir())?;
        self.check_eq("backup sets on db3 before", before.len(), 2)?;
        let kept = before[1].clone();
        self.show_sizes(&db3);
        // A restartpoint, so that db3 itself needs nothing older than the newest backup.
        pg3.psql("CHECKPOINT");
        let cleanup_args = |dry_run: bool| {
            let mut args = vec![
                "--backup-dir".to_owned(),
                db3.backup_dir().display().to_string(),
                "--archive".to_owned(),
                format!("zstd={}", db3.archive().display()),
                "--keep-count".to_owned(),
                "1".to_owned(),
            ];
            args.push(if dry_run { "--dry-run" } else { "--verbose" }.to_owned());
            args
        };
        let listed = ArchiveDir::new(db3.archive()).names();
        self.pitr("pitr-cleanup", &cleanup_args(true), true)?;
        // (WAL keeps arriving meanwhile: compare what was there before.)
        let still_there = |names: &[String]| {
            names
                .iter()
                .filter(|n| db3.archive().join(n).exists())
                .count()
        };
        self.check(
            still_there(&listed) == listed.len() && backup_sets(db3.backup_dir())?.len() == 2,
            "--dry-run removed nothing",
            String::new,
        )?;
        self.pitr("pitr-cleanup", &cleanup_args(false), true)?;
        let after = backup_sets(db3.backup_dir())?;
        self.check_eq(
            "backup sets on db3 after",
            after
                .iter()
                .map(|s| s.meta_file.clone())
                .collect::<Vec<_>>(),
            vec![kept.meta_file.clone()],
        )?;
        let gone = before[0]
            .files()
            .into_iter()
            .filter(|f| !db3.backup_dir().join(f).exists())
            .count();
        self.check_eq(
            "files of the older set removed",
            gone,
            before[0].files().len(),
        )?;
        let remaining = ArchiveDir::new(db3.archive()).names();
        let oldest = remaining
            .iter()
            .filter(|n| is_segment(n))
            .min_by_key(|n| position(n))
            .cloned()
            .unwrap_or_default();
        self.check(
            remaining
                .iter()
                .filter(|n| is_segment(n))
                .all(|n| position(n) >= position(&kept.min_xlog)),
            &format!(
                "{} WAL files removed; the oldest segment left, {oldest}, is not before the kept \
                 set's Min-Xlog {}",
                listed.len() - still_there(&listed),
                kept.min_xlog
            ),
            || format!("{remaining:?}"),
        )?;
        self.check(
            remaining.iter().any(|n| n.starts_with("00000002.history")),
            "00000002.history kept",
            || format!("{remaining:?}"),
        )?;
        self.show_sizes(&db3);
        pg3.stop();
        pg3.start();
        self.check(
            pg3.is_in_recovery(),
            "db3 restarts from what retention left",
            String::new,
        )?;

        self.begin_step("point-in-time restore of a dropped table (on db3)");
        pg2.psql(&format!(
            "CREATE TABLE {TABLE} AS SELECT g AS id, 'customer ' || g AS name \
             FROM generate_series(1, {TABLE_ROWS}) g"
        ));
        pg2.psql("SELECT pg_create_restore_point('before-drop')");
        // A time between the table's commit and the DROP's, with an explicit offset.
        let target_time = pg2.psql(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
        );
        std::thread::sleep(Duration::from_millis(50));
        pg2.psql(&format!("DROP TABLE {TABLE}"));
        self.note(&format!(
            "on db2: CREATE TABLE {TABLE} ({TABLE_ROWS} rows); \
             pg_create_restore_point('before-drop'); at {target_time}: DROP TABLE {TABLE}"
        ));
        let segment = pg2.switch_wal();
        pg2.wait_archived(&segment, TIMEOUT);

        let by_name_root = PgTempDir::new("pitr-by-name");
        self.restore_backup(
            &db3,
            &by_name_root.path().join("data"),
            &["--target-name".to_owned(), "before-drop".to_owned()],
        )?;
        let by_name = Cluster::adopt("pitr-by-name", by_name_root, ClusterOpts::new());
        self.note("scratch server: own port, archive_mode = off, pg_ctl start");
        by_name.start();
        self.wait_paused(&by_name)?;
        self.check_eq(
            &format!("restored to 'before-drop': {TABLE} rows"),
            by_name.count_rows(TABLE),
            TABLE_ROWS,
        )?;
        self.shell(
            &format!(
                "{} -h {} -p {} -U postgres -t {TABLE} postgres | {} -X -q -v ON_ERROR_STOP=1 -h {} -p {} -U postgres -d postgres",
                pg_program("pg_dump").display(),
                by_name.socket_dir().display(),
                by_name.port(),
                pg_program("psql").display(),
                pg2.socket_dir().display(),
                pg2.port()
            ),
            Path::new("/"),
        )?;
        self.check_eq(
            &format!("{TABLE} is back on the primary db2: rows"),
            pg2.count_rows(TABLE),
            TABLE_ROWS,
        )?;
        drop(by_name);

        // Stopped by time, recovery ends just before the DROP's commit, after its lock: paused
        // there, the table would stay locked. Promoting (with archive_mode = off, so the
        // scratch server's new timeline never reaches an archive) releases it.
        let by_time_root = PgTempDir::new("pitr-by-time");
        self.restore_backup(
            &db3,
            &by_time_root.path().join("data"),
            &[
                "--target-time".to_owned(),
                target_time.clone(),
                "--target-action".to_owned(),
                "promote".to_owned(),
            ],
        )?;
        let by_time = Cluster::adopt("pitr-by-time", by_time_root, ClusterOpts::new());
        by_time.start();
        by_time.wait_promoted(TIMEOUT);
        self.check(
            !by_time.is_in_recovery(),
            "recovery reached the target time and promoted (recovery_target_action = promote)",
            String::new,
        )?;
        self.note_stop(&by_time);
        self.check_eq(
            &format!("restored to {target_time}: {TABLE} rows"),
            by_time.count_rows(TABLE),
            TABLE_ROWS,
        )?;
        drop(by_time);

        let (_, lsn) = pg2.switch_wal_at();
        for (name, pg) in [("db1", &pg1), ("db3", &pg3)] {
            pg.wait_replayed(&lsn, TIMEOUT);
            self.check_eq(
                &format!("{name} replayed the restored table: rows"),
                pg.count_rows(TABLE),
                TABLE_ROWS,
            )?;
        }
        for host in [&db1, &db2, &db3] {
            let names = ArchiveDir::new(host.archive()).all_names();
            self.check(
                !names.iter().any(|n| n.starts_with("00000003.history")),
                &format!(
                    "no timeline 3 in {}'s archive (the scratch servers archived nothing)",
                    host.name
                ),
                || format!("{names:?}"),
            )?;
        }
        self.check_no_errors(&[("db1", &pg1), ("db2", &pg2), ("db3", &pg3)])?;
        for host in [&db1, &db2, &db3] {
            self.show_sizes(host);
        }

        self.delayed_standby(&db3, &pg2, [("db1", &pg1), ("db3", &pg3)])?;
        for host in [&db1, &db2, &db3] {
            let names = ArchiveDir::new(host.archive()).all_names();
            self.check(
                !names.iter().any(|n| n.starts_with("00000003.history")),
                &format!(
                    "no timeline 3 in {}'s archive (the delayed standby archived nothing)",
                    host.name
                ),
                || format!("{names:?}"),
            )?;
        }
        self.begin_step("monitoring db3's archive: pitr-monitor info and verify");
        let (_, lsn) = pg2.switch_wal_at();
        pg3.wait_replayed(&lsn, TIMEOUT);
        let locations = [
            "--backup-dir".to_owned(),
            db3.backup_dir().display().to_string(),
            "--archive".to_owned(),
            format!("zstd={}", db3.archive().display()),
        ];
        let info = self.monitor("info", &locations)?;
        let summary = info.stdout().lines().next().unwrap_or_default().to_owned();
        self.check(
            summary.starts_with("OK - 1 backup set in 1 location")
                && summary.contains(" on timeline 2)"),
            "info: the backup set kept by retention, recoverable on timeline 2",
            || info.stdout().to_owned(),
        )?;
        self.check(
            info.stdout().contains(", timelines 1, 2, ")
                || info.stdout().contains(", timelines 2, "),
            "info: the archive's timelines are listed",
            || info.stdout().to_owned(),
        )?;
        self.verify_clean(
            &locations,
            "verify: no gap, damaged file or duplicate from the kept backup's start on",
        )?;
        self.check_no_errors(&[("db1", &pg1), ("db2", &pg2), ("db3", &pg3)])?;
        self.object_storage(&db2, [&db1, &db3], &pg2)?;
        Ok(())
    }

    /// `pitr-monitor --check CHECK` with the `locations` options, echoed.
    fn monitor(&self, check: &str, locations: &[String]) -> Result<CmdResult> {
        let mut args = vec!["--check".to_owned(), check.to_owned()];
        args.extend(locations.iter().cloned());
        self.pitr("pitr-monitor", &args, true)
    }

    /// Checks that `pitr-monitor --check verify` finds no problem in `locations`.
    fn verify_clean(&mut self, locations: &[String], what: &str) -> Result<()> {
        let verify = self.monitor("verify", locations)?;
        self.check(
            verify.stdout().starts_with("OK - archive ")
                && verify.stdout().contains("no problem found"),
            what,
            || verify.stdout().to_owned(),
        )
    }

    /// The runbook's object-store variant: the primary (db2 by now) also archives to a 3-node
    /// Garage cluster, a backup goes only there, and db4, a warm spare bootstrapped from that
    /// backup with its restore_command on the store, follows the primary; pitr-monitor reads
    /// the store as it reads directories.
    fn object_storage(&mut self, host: &Host, to: [&Host; 2], primary: &Cluster) -> Result<()> {
        self.begin_step("db2 also archives to Garage (S3); db4 is bootstrapped from S3 alone");
        let garage = pitr_tests::GarageCluster::start();
        let config = garage.pitr_config(host.work.path());
        let wal = format!("s3://{}/db2/wal", garage.bucket());
        let backups = format!("s3://{}/db2/backups", garage.bucket());
        self.note(&format!(
            "Garage: 3 nodes, replication factor 3, endpoint {}; {} holds
     --s3-endpoint, --s3-region and --s3-key-file (no secret on any command line)",
            garage.endpoint(),
            config.display()
        ));
        let command = self.archive_command_also(
            host,
            to,
            &format!("--config-file {} --dst-remote zstd={wal}", config.display()),
        );
        self.note(&format!(
            "ALTER SYSTEM SET archive_command = '{command}'; reload"
        ));
        primary.psql(&format!("ALTER SYSTEM SET archive_command = '{command}'"));
        primary.psql("SELECT pg_reload_conf()");
        // A segment archived after the reload went to the store too (pitr-archive succeeds only
        // when every destination holds it): switch until one is archived with the new command.
        let failed_before = primary.archiver_stats().failed_count;
        let segment = primary.switch_wal();
        primary.wait_archived(&segment, TIMEOUT);
        // The store's archive starts on this timeline: its history files are sent by hand, once,
        // as to any new destination (pitr-monitor verify would report them missing).
        let mut histories: Vec<PathBuf> = fs::read_dir(primary.wal_dir())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "history"))
            .collect();
        histories.sort();
        for history in &histories {
            let mut args = vec![
                "--config-file".to_owned(),
                config.display().to_string(),
                "--dst-remote".to_owned(),
                format!("zstd={wal}"),
            ];
            args.push(history.display().to_string());
            self.pitr("pitr-archive", &args, true)?;
        }
        let stats = primary.archiver_stats();
        self.check(
            stats.failed_count == failed_before,
            &format!(
                "{segment} archived to db1, db3 and {wal}: pg_stat_archiver failed_count {}",
                stats.failed_count
            ),
            || tail(&primary.server_log(), 30),
        )?;

        let config_args = ["--config-file".to_owned(), config.display().to_string()];
        let mut args = config_args.to_vec();
        args.extend([
            "--data-dir".to_owned(),
            primary.data_dir().display().to_string(),
            "--host".to_owned(),
            primary.socket_dir().display().to_string(),
            "--port".to_owned(),
            primary.port().to_string(),
            "--username".to_owned(),
            "postgres".to_owned(),
            "--dst-remote".to_owned(),
            format!("zstd={backups}"),
            "--xlogs".to_owned(),
            host.xlogs().display().to_string(),
            "--fast-checkpoint".to_owned(),
        ]);
        self.pitr("pitr-backup", &args, true)?;

        let root = PgTempDir::new("db4");
        let mut args = config_args.to_vec();
        args.extend([
            "--from-backup".to_owned(),
            format!("zstd={backups}"),
            "--target-data-dir".to_owned(),
            root.path().join("data").display().to_string(),
            "--source".to_owned(),
            format!("zstd={wal}"),
        ]);
        self.pitr("pitr-restore", &args, true)?;
        let pg4 = Cluster::adopt("db4", root, ClusterOpts::new());
        pg4.start();
        self.check(
            pg4.is_in_recovery(),
            "db4 is in recovery (warm spare)",
            String::new,
        )?;
        let (rows, _) = self.traffic(primary, &[&pg4], 100);
        self.check_eq(
            "db4 pgbench_history rows",
            pg4.count_rows("pgbench_history"),
            rows,
        )?;
        let restored = count_lines(&pg4.server_log(), "pitr-restore : LOG : Segment");
        self.check(
            restored > 0,
            &format!("db4's server log has {restored} 'pitr-restore : LOG : Segment ... restored' lines, from the store"),
            String::new,
        )?;

        let mut locations = config_args.to_vec();
        locations.extend([
            "--backup-dir".to_owned(),
            backups.clone(),
            "--archive".to_owned(),
            format!("zstd={wal}"),
        ]);
        let info = self.monitor("info", &locations)?;
        self.check(
            info.stdout().starts_with("OK - 1 backup set in 1 location"),
            &format!("info: the one backup set in {backups}, recoverable through {wal}"),
            || info.stdout().to_owned(),
        )?;
        self.verify_clean(
            &locations,
            "verify: the store's archive has no gap or damaged file from the backup's start on",
        )?;
        self.check_no_errors(&[("db2", primary), ("db4", &pg4)])?;
        pg4.stop();
        // The primary goes back to its rsync-only archive_command before Garage goes away.
        primary.psql("ALTER SYSTEM RESET archive_command");
        primary.psql("SELECT pg_reload_conf()");
        Ok(())
    }

    /// The runbook's delayed standby (section 2.4) on db3: restored from db3's backups with
    /// `--recovery-delay`, it replays a segment only once the segment is that old; a
    /// `TRUNCATE` on the primary is then undone from it with a `NOW` finish and `pg_dump`.
    fn delayed_standby(
        &mut self,
        db3: &Host,
        primary: &Cluster,
        standbys: [(&str, &Cluster); 2],
    ) -> Result<()> {
        self.begin_step(&format!(
            "a delayed standby on db3 (--recovery-delay {RECOVERY_DELAY}) holds back a TRUNCATE"
        ));
        let trigger = db3.work.path().join("delayed-finish.trigger");
        let root = PgTempDir::new("db3-delayed");
        let data = root.path().join("data");
        self.restore_backup(
            db3,
            &data,
            &[
                "--finish-trigger".to_owned(),
                trigger.display().to_string(),
                "--recovery-delay".to_owned(),
                RECOVERY_DELAY.to_string(),
            ],
        )?;
        // Its own port and socket directory, archive_mode = off (the harness's defaults).
        let delayed = Cluster::adopt("db3-delayed", root, ClusterOpts::new());
        self.note("delayed standby: own port, archive_mode = off, pg_ctl start");
        delayed.start();
        self.check(
            delayed.is_in_recovery(),
            "the delayed standby is in recovery",
            String::new,
        )?;

        primary.psql(&format!(
            "CREATE TABLE {DELAYED_TABLE} AS SELECT g AS id, 'order ' || g AS item \
             FROM generate_series(1, {DELAYED_ROWS}) g"
        ));
        let (segment, _) = primary.switch_wal_at();
        let switched = Instant::now();
        self.note(&format!(
            "on the primary db2: CREATE TABLE {DELAYED_TABLE} ({DELAYED_ROWS} rows), WAL switch"
        ));
        primary.wait_archived(&segment, TIMEOUT);
        let appeared = poll_until(TIMEOUT, || {
            (delayed
                .try_psql(&format!(
                    "SELECT to_regclass('{DELAYED_TABLE}') IS NOT NULL"
                ))
                .as_deref()
                == Ok("t"))
            .then(|| switched.elapsed())
        });
        let Some(appeared) = appeared else {
            bail!(
                "the delayed standby never replayed {segment}\n{}",
                tail(&delayed.server_log(), 30)
            );
        };
        // The archived copy keeps the segment's mtime, which is at most a moment before the
        // switch; allow for a whole second of timestamp truncation.
        self.check(
            appeared.as_secs_f64() >= RECOVERY_DELAY as f64 - 1.5,
            &format!(
                "the delayed standby replayed {DELAYED_TABLE} {:.1} s after the WAL switch \
                 (delay {RECOVERY_DELAY} s)",
                appeared.as_secs_f64()
            ),
            String::new,
        )?;
        let lag = delayed
            .psql("SELECT round(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 1)");
        self.note(&format!(
            "delayed standby: now() - pg_last_xact_replay_timestamp() = {lag} s"
        ));
        self.check(
            lag.parse::<f64>()
                .is_ok_and(|lag| lag >= RECOVERY_DELAY as f64 - 1.5),
            &format!("its replay lags at least the delay: {lag} s"),
            String::new,
        )?;

        primary.psql(&format!("TRUNCATE {DELAYED_TABLE}"));
        let (segment, truncated_at) = primary.switch_wal_at();
        self.note(&format!(
            "on the primary db2: TRUNCATE {DELAYED_TABLE}, WAL switch ({segment})"
        ));
        self.shell(&format!("echo NOW > {}", trigger.display()), Path::new("/"))?;
        delayed.wait_promoted(TIMEOUT);
        self.check(
            !delayed.is_in_recovery(),
            "the delayed standby is open (finish trigger NOW)",
            String::new,
        )?;
        self.check_eq(
            &format!("{DELAYED_TABLE} rows on the delayed standby"),
            delayed.count_rows(DELAYED_TABLE),
            DELAYED_ROWS,
        )?;
        primary.wait_archived(&segment, TIMEOUT);
        let (db3_name, db3_pg) = standbys[1];
        db3_pg.wait_replayed(&truncated_at, TIMEOUT);
        self.check_eq(
            &format!("{DELAYED_TABLE} rows on {db3_name} (the TRUNCATE reached it)"),
            db3_pg.count_rows(DELAYED_TABLE),
            0,
        )?;

        self.shell(
            &format!(
                "{} -h {} -p {} -U postgres --data-only -t {DELAYED_TABLE} postgres | {} -X -q -v ON_ERROR_STOP=1 -h {} -p {} -U postgres -d postgres",
                pg_program("pg_dump").display(),
                delayed.socket_dir().display(),
                delayed.port(),
                pg_program("psql").display(),
                primary.socket_dir().display(),
                primary.port()
            ),
            Path::new("/"),
        )?;
        self.check_eq(
            &format!("{DELAYED_TABLE} is back on the primary db2: rows"),
            primary.count_rows(DELAYED_TABLE),
            DELAYED_ROWS,
        )?;
        let (_, lsn_back) = primary.switch_wal_at();
        for (name, pg) in standbys {
            pg.wait_replayed(&lsn_back, TIMEOUT);
            self.check_eq(
                &format!("{name} replayed the restored rows: {DELAYED_TABLE} rows"),
                pg.count_rows(DELAYED_TABLE),
                DELAYED_ROWS,
            )?;
        }

        self.note("delayed standby: pg_ctl stop -m fast, then remove it and its trigger");
        delayed.stop();
        self.shell(
            &format!("rm -r {} {}", data.display(), trigger.display()),
            Path::new("/"),
        )?;
        self.check(
            !data.exists() && !trigger.exists(),
            "the delayed standby and its trigger are gone",
            String::new,
        )?;
        drop(delayed);
        Ok(())
    }

    /// Checks that no server log holds an ERROR or FATAL line of pitr-archive or pitr-restore
    /// (the runbook's monitoring grep).
    fn check_no_errors(&mut self, servers: &[(&str, &Cluster)]) -> Result<()> {
        for (name, pg) in servers {
            let log = pg.server_log();
            let errors: Vec<&str> = log.lines().filter(|l| is_error_line(l)).collect();
            self.check(
                errors.is_empty(),
                &format!(
                    "{name}'s server log has no pitr-archive/pitr-restore ERROR or FATAL line"
                ),
                || errors.join("\n"),
            )?;
        }
        Ok(())
    }

    /// Waits until a point-in-time restore has reached its target and paused there.
    fn wait_paused(&mut self, cluster: &Cluster) -> Result<()> {
        let paused = poll_until(TIMEOUT, || {
            (cluster
                .try_psql("SELECT pg_get_wal_replay_pause_state()")
                .as_deref()
                == Ok("paused"))
            .then_some(())
        });
        let log = cluster.server_log();
        self.check(
            paused.is_some(),
            "recovery reached the target and paused (recovery_target_action = pause)",
            || tail(&log, 30),
        )?;
        self.note_stop(cluster);
        Ok(())
    }

    /// Prints the server's "recovery stopping ..." log line.
    fn note_stop(&self, cluster: &Cluster) {
        let log = cluster.server_log();
        if let Some(line) = log.lines().find(|l| l.contains("recovery stopping")) {
            self.note(&format!("server log: {}", after_prefix(line)));
        }
    }
}

/// One backup set in a backup directory, from its meta file.
#[derive(Debug, Clone)]
struct SetInfo {
    meta_file: String,
    data_file: String,
    xlog_file: Option<String>,
    digest_file: String,
    min_xlog: String,
    stop_xlog: String,
    timeline: String,
    data_size: u64,
    xlog_size: u64,
}

impl SetInfo {
    fn files(&self) -> Vec<String> {
        let mut files = vec![
            self.meta_file.clone(),
            self.data_file.clone(),
            self.digest_file.clone(),
        ];
        files.extend(self.xlog_file.clone());
        files
    }

    fn describe(&self) -> String {
        format!(
            "{}: data {}, WAL {} ({} to {}, timeline {})",
            self.meta_file,
            human(self.data_size),
            human(self.xlog_size),
            self.min_xlog,
            self.stop_xlog,
            self.timeline
        )
    }
}

/// The backup sets in `dir` (by their meta files), oldest first.
fn backup_sets(dir: &Path) -> Result<Vec<SetInfo>> {
    let mut sets = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.starts_with('.') || !name.contains("-meta-") {
            continue;
        }
        let path = dir.join(&name);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
                .map(str::to_owned)
        };
        let need = |key: &str| get(key).with_context(|| format!("no {key} in {}", path.display()));
        let number = |key: &str| -> Result<u64> {
            need(key)?
                .parse()
                .with_context(|| format!("{key} in {}", path.display()))
        };
        sets.push((
            number("Started-epoch")?,
            SetInfo {
                data_file: need("Data-File")?,
                xlog_file: get("Xlog-File"),
                digest_file: need("Digest-File")?,
                min_xlog: need("Min-Xlog")?,
                stop_xlog: need("Stop-Xlog")?,
                timeline: need("Timeline")?,
                data_size: number("Data-Size")?,
                xlog_size: number("Xlog-Size").unwrap_or(0),
                meta_file: name,
            },
        ));
    }
    sets.sort_by(|a, b| (a.0, &a.1.meta_file).cmp(&(b.0, &b.1.meta_file)));
    Ok(sets.into_iter().map(|(_, set)| set).collect())
}

/// Whether an archived file's name is a WAL segment (24 hex digits and a codec extension, if
/// any; not a `.backup` or `.partial` file).
fn is_segment(name: &str) -> bool {
    let (stem, ext) = name.split_once('.').unwrap_or((name, ""));
    stem.len() == 24
        && stem.bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(ext, "" | "zst" | "gz")
}

/// A segment name's position without its timeline (log and segment number), which is how
/// pg_archivecleanup and pitr-cleanup compare.
fn position(name: &str) -> &str {
    name.get(8..24).unwrap_or(name)
}

/// Number of files (not hidden) directly in `dir`, and their total size.
fn dir_usage(dir: &Path) -> (usize, u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return (0, 0);
    };
    entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| e.metadata().ok())
        .filter(fs::Metadata::is_file)
        .fold((0, 0), |(n, bytes), m| (n + 1, bytes + m.len()))
}

/// Whether a log line is an ERROR or FATAL of pitr-archive or pitr-restore.
fn is_error_line(line: &str) -> bool {
    ["pitr-archive", "pitr-restore"].iter().any(|program| {
        ["ERROR", "FATAL"]
            .iter()
            .any(|level| line.contains(&format!("{program} : {level} : ")))
    })
}

fn count_lines(text: &str, fragment: &str) -> usize {
    text.lines().filter(|l| l.contains(fragment)).count()
}

/// A log line of ours (`DATE TIME ZONE : PID : PROGRAM : LEVEL : message`) as `LEVEL : message`;
/// other lines unchanged.
fn strip_log_prefix(line: &str) -> &str {
    let parts: Vec<&str> = line.splitn(4, " : ").collect();
    if parts.len() == 4 && parts[0].len() >= 19 && parts[1].bytes().all(|b| b.is_ascii_digit()) {
        parts[3]
    } else {
        line
    }
}

/// A server log line without the harness's `log_line_prefix` (`%m [%p] `).
fn after_prefix(line: &str) -> &str {
    line.split_once("] ").map_or(line, |(_, rest)| rest)
}

/// Bytes as KiB, MiB or GiB with one decimal.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_prefix_is_stripped_from_our_lines_only() {
        assert_eq!(
            strip_log_prefix(
                "2026-11-25 02:43:15.123456 +0000 : 4242 : pitr-cleanup : LOG : removed x"
            ),
            "LOG : removed x"
        );
        assert_eq!(strip_log_prefix("plain line"), "plain line");
    }

    #[test]
    fn error_lines_are_those_of_archive_and_restore() {
        assert!(is_error_line(
            "2026-11-25 04:39:36.274594 +0000 : 10457 : pitr-archive : ERROR : cannot send"
        ));
        assert!(is_error_line("... : 1 : pitr-restore : FATAL : x"));
        assert!(!is_error_line("... : 1 : pitr-restore : HINT : x"));
        assert!(!is_error_line(
            "... : 1 : pitr-restore : LOG : Segment x restored"
        ));
        assert!(!is_error_line("... : 1 : pitr-backup : ERROR : x"));
    }

    #[test]
    fn segments_are_compared_without_their_timeline() {
        assert!(is_segment("000000020000000000000005.zst"));
        assert!(is_segment("000000010000000000000005"));
        assert!(!is_segment("00000002.history.zst"));
        assert!(!is_segment("000000010000000000000003.00000028.backup.zst"));
        assert!(position("000000010000000000000006.zst") > position("000000020000000000000005"));
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn backup_sets_are_read_from_meta_files_oldest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, epoch) in [("h-meta-2.tar.zst", 200), ("h-meta-1.tar.zst", 100)] {
            fs::write(
                dir.path().join(name),
                format!(
                    "Min-Xlog: 000000010000000000000002\nStarted-epoch: {epoch}\n\
                     Stop-Xlog: 000000010000000000000003\nTimeline: 1\nData-File: d{epoch}\n\
                     Data-Size: 10\nXlog-File: x{epoch}\nXlog-Size: 5\nDigest-File: s{epoch}\n"
                ),
            )
            .expect("write");
        }
        fs::write(dir.path().join(".h-meta-3.tar.zst.pitr-tmp.1"), "partial").expect("write");
        let sets = backup_sets(dir.path()).expect("sets");
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].meta_file, "h-meta-1.tar.zst");
        assert_eq!(
            sets[0].files(),
            ["h-meta-1.tar.zst", "d100", "s100", "x100"]
        );
    }
}

//! pitr-backup killed with SIGKILL or SIGTERM, also while WAL collection waits on a stuck
//! archiver.
//!
//! The cluster archives with pitr-archive into a WAL archive and, while a backup runs, into
//! its `--xlogs` directory (`--dst-backup`); its `archive_command` fails while a "stuck" flag
//! file exists, which holds the backup in WAL collection. A run starts a backup (with a
//! removal pause trigger and a scratch directory of its own; in zstd, or in every other pair of
//! runs in gzip on two threads, whose members are compressed side by side) and
//! - kills it after a delay drawn from 0 to 110 % of a measured backup, or
//! - makes the archiver stuck, waits until the backup logs that it collects WAL, and kills it
//!   up to 1.5 s later.
//!
//! After SIGTERM the backup must be gone without a trace (SPEC: partial outputs removed, no
//! `--xlogs` left, exit non-zero). After SIGKILL only hidden temp files, `--xlogs` and the
//! trigger may remain (ARCHITECTURE), and the next backup and pitr-cleanup must remove them.
//! Counted as left behind: set files under final names without a meta file, hidden files,
//! `--xlogs`, the trigger, hidden names beside either of them and scratch files that are still
//! there after the next backup and a pitr-cleanup retention run that keeps every valid set.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use pitr_tests::{poll_until, Cluster, ClusterOpts};

use super::runner::{self, Call, Ctx, Target};
use super::{Bad, Tally};

const NAME: &str = "backup-kill";

struct Env {
    cluster: Cluster,
    backups: PathBuf,
    archive: PathBuf,
    xlogs: PathBuf,
    trigger: PathBuf,
    stuck: PathBuf,
    temp: PathBuf,
    out: PathBuf,
}

impl Env {
    /// A backup into `--dst-local CODEC=BACKUPS`; gzip compresses on two threads (its members
    /// side by side, written in order), whatever the CPUs.
    fn backup(&self, ctx: &Ctx, label: &str, codec: &str) -> Call {
        let call = Call::new(ctx, "pitr-backup");
        let call = if codec == "gzip" {
            call.args(["--compress-threads", "2"])
        } else {
            call
        };
        call.arg("--data-dir")
            .arg(self.cluster.data_dir())
            .arg("--host")
            .arg(self.cluster.socket_dir())
            .arg("--port")
            .arg(self.cluster.port().to_string())
            .args(["--username", "postgres", "--fast-checkpoint"])
            .arg("--dst-local")
            .arg(format!("{codec}={}", self.backups.display()))
            .arg("--xlogs")
            .arg(&self.xlogs)
            .arg("--removal-pause-trigger")
            .arg(&self.trigger)
            .arg("--temp-dir")
            .arg(&self.temp)
            .args(["--wal-timeout", "60", "--filename-template"])
            .arg(format!("__HOSTNAME__-__FILETYPE__-{label}.tar__CEXT__"))
    }

    fn cleanup(&self, ctx: &Ctx) -> Call {
        Call::new(ctx, "pitr-cleanup")
            .env("PITR_TEST_STALE_TEMP_SECS", "0")
            .arg("--backup-dir")
            .arg(&self.backups)
            .arg("--archive")
            .arg(format!("zstd={}", self.archive.display()))
            .args(["--keep-days", "3650", "--keep-count", "1000"])
    }

    /// The hidden names beside `--xlogs` and the trigger (`.xlogs.…`, `.pause.trigger.…`): the
    /// directory in the making, one being removed, the trigger's temporary file.
    fn beside(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for path in [&self.xlogs, &self.trigger] {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                continue;
            };
            let prefix = format!(".{}.", name.to_string_lossy());
            for n in runner::names(parent) {
                if n.starts_with(&prefix) {
                    v.push(parent.join(n));
                }
            }
        }
        v
    }

    /// What a killed backup may have left: (set files without a meta file, hidden files,
    /// whether --xlogs, the trigger exist, scratch entries).
    fn leftovers(&self) -> Vec<String> {
        let mut v = Vec::new();
        let names = runner::names(&self.backups);
        let members = set_members(&self.backups);
        for n in &names {
            if n.starts_with('.') {
                if n != ".pitr-cleanup.lock" {
                    v.push(format!("hidden {n}"));
                }
            } else if !members.contains(n) {
                v.push(format!("{n} (no meta file)"));
            }
        }
        if self.xlogs.exists() {
            v.push(format!("--xlogs {}", self.xlogs.display()));
        }
        if self.trigger.exists() {
            v.push(format!("trigger {}", self.trigger.display()));
        }
        for n in self.beside() {
            v.push(format!("beside {}", n.display()));
        }
        for n in runner::names(&self.temp) {
            v.push(format!("--temp-dir entry {n}"));
        }
        v
    }
}

/// The files that belong to a set with a meta file: every meta file and what it names.
fn set_members(dir: &Path) -> BTreeSet<String> {
    let mut members = BTreeSet::new();
    for n in runner::names(dir) {
        let Ok(text) = fs::read_to_string(dir.join(&n)) else {
            continue;
        };
        if !text.contains("Data-File: ") {
            continue;
        }
        members.insert(n.clone());
        for key in ["Data-File: ", "Xlog-File: ", "Digest-File: "] {
            if let Some(v) = text.lines().find_map(|l| l.strip_prefix(key)) {
                members.insert(v.trim().to_owned());
            }
        }
    }
    members
}

pub fn run(ctx: &Ctx, tally: &mut Tally) -> Result<()> {
    let base = ctx.dir(NAME);
    let sub = |n: &str| {
        let p = base.join(n);
        runner::pg_dir(&p);
        p
    };
    let (backups, archive, state, temp) =
        (sub("backups"), sub("archive"), sub("state"), sub("temp"));
    let xlogs = base.join("xlogs");
    let trigger = base.join("pause.trigger");
    let stuck = base.join("stuck");
    let command = format!(
        "test ! -e {} && {} --dst-local zstd={} --dst-backup {} --state-dir {} %p",
        stuck.display(),
        ctx.bin("pitr-archive").display(),
        archive.display(),
        xlogs.display(),
        state.display()
    );
    let cluster = Cluster::init(
        "backup-kill",
        ClusterOpts::new()
            .wal_segsize_mb(1)
            .set("archive_mode", "on")
            .set("archive_command", &command),
    );
    cluster.start();
    cluster.pgbench_init(1);
    let env = Env {
        cluster,
        backups,
        archive,
        xlogs,
        trigger,
        stuck,
        temp,
        out: base.join("out"),
    };

    let mut times = Vec::new();
    for i in 0..2 {
        let done = env
            .backup(ctx, &format!("measure{i}"), "zstd")
            .run(&env.out, Duration::from_secs(300))?;
        anyhow::ensure!(done.ok(), "measuring pitr-backup: {}", done.stderr);
        times.push(done.elapsed);
    }
    let measured = runner::median(&mut times);
    tally.note(ctx.show(&format!(
        "command line: {}",
        env.backup(ctx, "LABEL", "zstd").line()
    )));
    tally.note(format!(
        "a backup (pgbench scale 1, 1 MiB segments, zstd) takes {:.2} s",
        measured.as_secs_f64()
    ));
    tally.note(
        "runs 2, 3, 6, 7, … (and their next backups) use --dst-local gzip=… --compress-threads 2"
            .to_string(),
    );

    for run in ctx.runs(6, 24) {
        let repro = ctx.repro(NAME, run);
        let mut rng = ctx.rng(NAME, run);
        // Every other run waits on a stuck archiver, so that the quick form has some too.
        let stuck = run % 2 == 1;
        let sig = if rng.chance(0.5) {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        let target = if sig == libc::SIGKILL && rng.chance(0.5) {
            Target::Group
        } else {
            Target::Process
        };
        let fraction = rng.unit() * 1.1;
        let late = Duration::from_millis(rng.below(1500));
        let sig_name = if sig == libc::SIGKILL {
            "SIGKILL"
        } else {
            "SIGTERM"
        };
        let label = format!("r{run}");
        // Every other pair of runs backs up in gzip on two threads, so that both codecs meet
        // both kinds of kill, stuck or not.
        let codec = if (run / 2) % 2 == 1 { "gzip" } else { "zstd" };
        let call = env.backup(ctx, &label, codec);
        let when = if stuck {
            format!(
                "while WAL collection waits on a stuck archiver, {:.0} ms into the wait",
                late.as_secs_f64() * 1000.0
            )
        } else {
            format!(
                "after {:.0} ms of ~{:.0} ms",
                measured.mul_f64(fraction).as_secs_f64() * 1000.0,
                measured.as_secs_f64() * 1000.0
            )
        };
        // The command line is the same for every run but the template's label: it is in the
        // notes once.
        let what = format!(
            "pitr-backup {codec} (run {label}) killed with {sig_name} (to the {}) {when}",
            target.name()
        );
        tally.run();
        if stuck {
            pitr_tests::pg_user().write_file(&env.stuck, b"");
        }
        let mut running = call.spawn(&env.out)?;
        if stuck {
            let waiting = poll_until(Duration::from_secs(120), || {
                (running.stderr_so_far().contains("collecting WAL") || running.exited())
                    .then_some(())
            });
            if waiting.is_none() {
                tally.note(format!(
                    "run {run}: the backup never reached WAL collection"
                ));
            }
            runner::pause(late);
        } else {
            runner::pause(measured.mul_f64(fraction));
        }
        // A SIGTERM that arrives before pitr-backup's main installed its handler gets the
        // default action, death by the signal, before anything was started: that is not a
        // wrong status. Whether the handler was there is read just before the signal is sent.
        let handled = sig != libc::SIGTERM || running.catches(sig) != Some(false);
        let hit = running.signal(sig, target);
        let done = running.wait_timeout(Duration::from_secs(120))?;
        runner::wait_group_gone(done.pgid, Duration::from_secs(30));
        let _ = fs::remove_file(&env.stuck);
        tally.killed(hit, &done, &what, &repro);
        if done.timed_out {
            tally.bad(
                Bad::NotRecovered,
                format!("{what}: it did not end within 120 s of the signal"),
                &repro,
            );
        }
        let interrupted = hit && !done.ok();
        if sig == libc::SIGTERM && hit && done.ok() {
            // Finished before it could react: fine. A killed one that says 0 is not.
            tally.info("SIGTERM arrived as the backup finished (exit 0)", 1);
        }
        if sig == libc::SIGTERM && interrupted {
            if !handled && done.signal() == Some(libc::SIGTERM) {
                tally.info(
                    "SIGTERM arrived before pitr-backup installed its handler (death by the signal, nothing started)",
                    1,
                );
            } else if done.code() == Some(0) || done.signal().is_some() {
                tally.bad(
                    Bad::WrongStatus,
                    format!(
                        "{what}: ended with {} instead of an error status",
                        done.status_text()
                    ),
                    &repro,
                );
            }
            let left = env.leftovers();
            if !left.is_empty() {
                tally.bad_n(
                    Bad::LeftBehind,
                    left.len() as u64,
                    format!("{what}: left right after SIGTERM: {}", left.join(", ")),
                    &repro,
                );
            }
        } else if interrupted {
            let left = env.leftovers();
            let final_names: Vec<&String> = left
                .iter()
                .filter(|l| l.ends_with("(no meta file)"))
                .collect();
            tally.info(
                "set files under final names without a meta file right after SIGKILL",
                final_names.len() as u64,
            );
        }

        // The next backup, then retention that keeps every valid set.
        let next = env
            .backup(ctx, &format!("{label}-next"), codec)
            .run(&env.out, Duration::from_secs(300))?;
        if next.panicked() {
            tally.bad(
                Bad::Panic,
                format!("{what}; next backup: {}", next.first_error()),
                &repro,
            );
        } else if !next.ok() {
            tally.bad(
                Bad::NotRecovered,
                format!(
                    "{what}; the next backup failed with {}: {}",
                    next.status_text(),
                    next.first_error()
                ),
                &repro,
            );
        }
        let sweep = env.cleanup(ctx).run(&env.out, Duration::from_secs(60))?;
        if sweep.panicked() {
            tally.bad(
                Bad::Panic,
                format!("pitr-cleanup: {}", sweep.first_error()),
                &repro,
            );
        }
        let left = env.leftovers();
        if !left.is_empty() {
            tally.bad_n(
                Bad::LeftBehind,
                left.len() as u64,
                format!(
                    "{what}; still there after the next backup and pitr-cleanup: {}",
                    left.join(", ")
                ),
                &repro,
            );
        }
        // A clean slate for the next run: only complete sets stay, and not too many of them.
        for l in &left {
            if let Some(name) = l.strip_suffix(" (no meta file)") {
                let _ = fs::remove_file(env.backups.join(name));
            } else if let Some(name) = l.strip_prefix("hidden ") {
                let _ = fs::remove_file(env.backups.join(name));
            }
        }
        let _ = fs::remove_dir_all(&env.xlogs);
        for p in env.beside() {
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
        let _ = fs::remove_file(&env.trigger);
        for n in runner::names(&env.temp) {
            let p = env.temp.join(n);
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
        for n in runner::names(&env.backups) {
            if !n.starts_with('.') {
                let _ = fs::remove_file(env.backups.join(n));
            }
        }
    }
    Ok(())
}

//! pitr-archive killed with SIGKILL at random points of a call.
//!
//! Each destination setup (every codec to a local directory, to a loopback `rsync --daemon`
//! and to a pipe program, and two destinations at once with a state dir) is measured first:
//! the median of three complete calls. A run then archives one real 16 MiB segment and kills
//! the call after a delay drawn uniformly from 0 to 115 % of that median, so kills land in
//! start-up, compression, the writes, the fsyncs and the renames alike, sometimes after the
//! end (no fault injected). The kill goes to the process alone (its rsync or pipe children
//! live on, as after the OOM killer) or to its whole process group. Sometimes the destination
//! is new, so the kill can hit the first write of the cluster marker.
//!
//! Then: a file under its final name must hold exactly the segment's bytes (a pipe program
//! that writes on end of input is not ours to judge: its partial files are only counted); the
//! retry (the same call, as PostgreSQL makes it) must exit 0 and leave every destination with
//! exactly the segment's bytes and no state file; after pitr-cleanup (with the test hook that
//! makes an hour-old temp file stale at once) no hidden file but the cluster marker and the
//! cleanup lock may remain, and the scratch directory must be empty.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use pitr_tests::{ClusterOpts, RsyncDaemon};

use super::runner::{self, Call, Ctx, Target};
use super::{Bad, Tally};

const NAME: &str = "archive-kill";

/// Where one destination of a setup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Local,
    Rsync,
    Pipe,
}

/// A codec by its spelling in a location and its extension.
#[derive(Debug, Clone, Copy)]
struct Codec {
    name: &'static str,
    ext: &'static str,
}

const NONE: Codec = Codec {
    name: "none",
    ext: "",
};
const GZIP: Codec = Codec {
    name: "gzip",
    ext: ".gz",
};
const ZSTD: Codec = Codec {
    name: "zstd",
    ext: ".zst",
};

/// The destination setups a run picks from.
const SETUPS: &[&[(Kind, Codec)]] = &[
    &[(Kind::Local, NONE)],
    &[(Kind::Local, GZIP)],
    &[(Kind::Local, ZSTD)],
    &[(Kind::Rsync, NONE)],
    &[(Kind::Rsync, GZIP)],
    &[(Kind::Rsync, ZSTD)],
    &[(Kind::Pipe, NONE)],
    &[(Kind::Pipe, ZSTD)],
    &[(Kind::Local, ZSTD), (Kind::Rsync, ZSTD)],
    &[(Kind::Local, GZIP), (Kind::Pipe, NONE)],
    &[(Kind::Local, NONE), (Kind::Local, ZSTD)],
    &[(Kind::Rsync, GZIP), (Kind::Local, ZSTD)],
];

/// One destination of a setup, with the directory its files land in.
struct Dest {
    kind: Kind,
    codec: Codec,
    /// Where the files end up (the local dir, the daemon's module subdir, the pipe's dir).
    dir: PathBuf,
    /// The option and value given to pitr-archive.
    option: (&'static str, String),
}

struct Setup {
    index: usize,
    dests: Vec<Dest>,
    state_dir: PathBuf,
    temp_dir: PathBuf,
    /// The median duration of a complete call.
    measured: Option<Duration>,
}

impl Setup {
    fn describe(&self) -> String {
        self.dests
            .iter()
            .map(|d| format!("{:?} {}", d.kind, d.codec.name).to_lowercase())
            .collect::<Vec<_>>()
            .join(" + ")
    }

    fn call(&self, ctx: &Ctx, data: &Path, segment: &str) -> Call {
        let mut call = Call::new(ctx, "pitr-archive").cwd(data);
        for d in &self.dests {
            call = call.arg(d.option.0).arg(&d.option.1);
        }
        if self.dests.len() > 1 {
            call = call.arg("--state-dir").arg(&self.state_dir);
        }
        call.arg("--temp-dir")
            .arg(&self.temp_dir)
            .arg(format!("pg_wal/{segment}"))
    }

    /// Removes every stored form of `segment` (and, with `fresh`, the cluster marker) from the
    /// destinations, and the state file: the next call is a first delivery.
    fn forget(&self, segment: &str, fresh: bool) {
        for d in &self.dests {
            for ext in ["", ".gz", ".zst"] {
                let _ = fs::remove_file(d.dir.join(format!("{segment}{ext}")));
            }
            if fresh {
                let _ = fs::remove_file(d.dir.join(".pitr-cluster"));
            }
        }
        let _ = fs::remove_file(self.state_dir.join(format!("{segment}.state")));
    }
}

pub fn run(ctx: &Ctx, tally: &mut Tally) -> Result<()> {
    // Quick: 1 MiB segments, so that CI's run stays short; full: PostgreSQL's 16 MiB.
    let (cluster, segments) = runner::cluster_with_segments(
        "archive-kill",
        ClusterOpts::new().wal_segsize_mb(ctx.pick(1, 16)),
        1,
        6,
    );
    let segments: Vec<String> = segments.into_iter().rev().take(6).collect();
    anyhow::ensure!(
        segments.len() >= 3,
        "pgbench -i made only {} segments",
        segments.len()
    );
    let data = cluster.data_dir().to_path_buf();
    let rsyncd = RsyncDaemon::start("wal_archive");
    let base = ctx.dir(NAME);

    let mut setups: Vec<Setup> = SETUPS
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let dests = spec
                .iter()
                .enumerate()
                .map(|(j, (kind, codec))| {
                    let label = format!("s{i}-{j}");
                    Ok(match kind {
                        Kind::Local => {
                            let dir = base.join(&label);
                            runner::pg_dir(&dir);
                            let value = format!("{}={}", codec.name, dir.display());
                            Dest {
                                kind: *kind,
                                codec: *codec,
                                dir,
                                option: ("--dst-local", value),
                            }
                        }
                        Kind::Rsync => {
                            let dir = rsyncd.dir().join(&label);
                            runner::pg_dir(&dir);
                            let value = format!("{}={}/{label}", codec.name, rsyncd.url());
                            Dest {
                                kind: *kind,
                                codec: *codec,
                                dir,
                                option: ("--dst-remote", value),
                            }
                        }
                        Kind::Pipe => {
                            let dir = base.join(&label);
                            runner::pg_dir(&dir);
                            let program = write_pipe_program(&base, &label, &dir)?;
                            let value = format!("{}={}", codec.name, program.display());
                            Dest {
                                kind: *kind,
                                codec: *codec,
                                dir,
                                option: ("--dst-pipe", value),
                            }
                        }
                    })
                })
                .collect::<Result<Vec<Dest>>>()?;
            let state_dir = base.join(format!("s{i}-state"));
            let temp_dir = base.join(format!("s{i}-tmp"));
            runner::pg_dir(&state_dir);
            runner::pg_dir(&temp_dir);
            Ok(Setup {
                index: i,
                dests,
                state_dir,
                temp_dir,
                measured: None,
            })
        })
        .collect::<Result<Vec<Setup>>>()?;

    let mut bytes = std::collections::HashMap::new();
    for s in &segments {
        bytes.insert(
            s.clone(),
            fs::read(data.join("pg_wal").join(s)).context("reading a segment")?,
        );
    }
    let out = base.join("out");

    for run in ctx.runs(40, 240) {
        let repro = ctx.repro(NAME, run);
        let mut rng = ctx.rng(NAME, run);
        let setup_index = rng.index(setups.len());
        let segment = rng.choose(&segments).clone();
        let target = if rng.chance(0.5) {
            Target::Process
        } else {
            Target::Group
        };
        let fresh = rng.chance(0.15);
        let fraction = rng.unit() * 1.15;
        let setup = &mut setups[setup_index];
        let expected = &bytes[&segment];

        if setup.measured.is_none() {
            let mut times = Vec::new();
            for _ in 0..ctx.pick(2, 3) {
                setup.forget(&segment, false);
                let done = setup
                    .call(ctx, &data, &segment)
                    .run(&out, Duration::from_secs(120))?;
                anyhow::ensure!(
                    done.ok(),
                    "measuring {}: {}\n{}",
                    setup.describe(),
                    done.status_text(),
                    done.stderr
                );
                times.push(done.elapsed);
            }
            let m = runner::median(&mut times);
            tally.note(format!(
                "setup {} ({}): a call takes {:.0} ms (median)",
                setup.index,
                setup.describe(),
                m.as_secs_f64() * 1000.0
            ));
            setup.measured = Some(m);
        }
        let measured = setup.measured.unwrap_or_default();
        let delay = measured.mul_f64(fraction);
        setup.forget(&segment, fresh);
        let call = setup.call(ctx, &data, &segment);
        let what = format!(
            "{} of {segment} ({}), SIGKILL to the {} after {:.1} ms of ~{:.0} ms{}",
            call.line(),
            setup.describe(),
            target.name(),
            delay.as_secs_f64() * 1000.0,
            measured.as_secs_f64() * 1000.0,
            if fresh { ", new destination" } else { "" }
        );
        let what = ctx.show(&what);
        tally.run();
        let mut running = call.spawn(&out)?;
        runner::pause(delay);
        let hit = running.signal(libc::SIGKILL, target);
        let killed = running.wait_timeout(Duration::from_secs(120))?;
        if !runner::wait_group_gone(killed.pgid, Duration::from_secs(60)) {
            tally.bad(
                Bad::LeftBehind,
                format!("{what}: its children still ran 60 s after the kill"),
                &repro,
            );
        }
        if hit && killed.signal() == Some(libc::SIGKILL) {
            tally.fault();
        } else if killed.panicked() {
            tally.bad(
                Bad::Panic,
                format!("{what}: {}", killed.first_error()),
                &repro,
            );
        } else if !killed.ok() {
            tally.bad(
                Bad::NotRecovered,
                format!(
                    "{what}: the call ended before the kill with {}: {}",
                    killed.status_text(),
                    killed.first_error()
                ),
                &repro,
            );
        }

        // What a reader sees right after the kill.
        for d in &setup.dests {
            let final_path = d.dir.join(format!("{segment}{}", d.codec.ext));
            if !final_path.exists() {
                continue;
            }
            let good = runner::decode(&final_path).is_ok_and(|b| &b == expected);
            if !good {
                if d.kind == Kind::Pipe {
                    tally.info("pipe program: partial file written after the kill", 1);
                } else {
                    tally.bad(
                        Bad::Corrupt,
                        format!(
                            "{what}: {} under its final name does not hold the segment's bytes \
                             after the kill",
                            ctx.show(&final_path.display().to_string())
                        ),
                        &repro,
                    );
                }
            }
        }
        let temps_after_kill: usize = setup
            .dests
            .iter()
            .filter(|d| d.kind != Kind::Pipe)
            .map(|d| hidden_leftovers(&d.dir).len())
            .sum();
        tally.info(
            "hidden files in a destination right after the kill",
            temps_after_kill as u64,
        );

        // The retry, as PostgreSQL makes it.
        let retry = call.run(&out, Duration::from_secs(120))?;
        if retry.panicked() {
            tally.bad(
                Bad::Panic,
                format!("{what}; retry: {}", retry.first_error()),
                &repro,
            );
        } else if !retry.ok() {
            tally.bad(
                Bad::NotRecovered,
                format!(
                    "{what}; the retry failed with {}: {}",
                    retry.status_text(),
                    retry.first_error()
                ),
                &repro,
            );
        } else {
            for d in &setup.dests {
                let final_path = d.dir.join(format!("{segment}{}", d.codec.ext));
                match runner::decode(&final_path) {
                    Ok(b) if &b == expected => {}
                    Ok(b) => tally.bad(
                        Bad::Corrupt,
                        format!(
                            "{what}; after a successful retry {} holds {} bytes that differ \
                             from the segment",
                            ctx.show(&final_path.display().to_string()),
                            b.len()
                        ),
                        &repro,
                    ),
                    Err(e) => tally.bad(
                        Bad::Lost,
                        format!("{what}; the retry exited 0 but {}: {e:#}", d.kind_name()),
                        &repro,
                    ),
                }
            }
            if setup.state_dir.join(format!("{segment}.state")).exists() {
                tally.bad(
                    Bad::LeftBehind,
                    format!("{what}; the state file stayed after a successful retry"),
                    &repro,
                );
            }
        }

        // What stays once pitr-cleanup has swept the temp files of writers that are gone.
        for d in setup.dests.iter().filter(|d| d.kind != Kind::Pipe) {
            let before = hidden_leftovers(&d.dir);
            if before.is_empty() {
                continue;
            }
            let sweep = Call::new(ctx, "pitr-cleanup")
                .env("PITR_TEST_STALE_TEMP_SECS", "0")
                .arg("--archive")
                .arg(&d.dir)
                .arg("000000010000000000000001")
                .run(&out, Duration::from_secs(60))?;
            if sweep.panicked() {
                tally.bad(
                    Bad::Panic,
                    format!("pitr-cleanup: {}", sweep.first_error()),
                    &repro,
                );
            }
            let after = hidden_leftovers(&d.dir);
            tally.info(
                "hidden files removed by the retry or pitr-cleanup",
                before.len().saturating_sub(after.len()) as u64,
            );
            if !after.is_empty() {
                tally.bad_n(
                    Bad::LeftBehind,
                    after.len() as u64,
                    format!(
                        "{what}; left in {} after the retry and pitr-cleanup: {}",
                        ctx.show(&d.dir.display().to_string()),
                        after.join(", ")
                    ),
                    &repro,
                );
                for name in &after {
                    let _ = fs::remove_file(d.dir.join(name));
                }
            }
        }
        // The scratch directories of calls that are gone (`TEMP/pitr-archive/PID`).
        let scratch_left: Vec<(String, u64)> = runner::snapshot(&setup.temp_dir)
            .iter()
            .filter(|(p, st)| st.dir && p.components().count() == 2)
            .map(|(p, _)| {
                let bytes = runner::snapshot(&setup.temp_dir.join(p))
                    .values()
                    .filter(|s| !s.dir)
                    .map(|s| s.len)
                    .sum();
                (p.display().to_string(), bytes)
            })
            .collect();
        if !scratch_left.is_empty() {
            tally.bad_n(
                Bad::LeftBehind,
                scratch_left.len() as u64,
                format!(
                    "{what}; the scratch directory of the killed call stays in --temp-dir, and \
                     nothing removes it: {}",
                    scratch_left
                        .iter()
                        .map(|(p, b)| format!("{p} ({b} bytes)"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &repro,
            );
            for (p, _) in &scratch_left {
                let _ = fs::remove_dir_all(setup.temp_dir.join(p));
            }
        }
        let state_left: Vec<String> = runner::names(&setup.state_dir)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        if !state_left.is_empty() {
            tally.bad_n(
                Bad::LeftBehind,
                state_left.len() as u64,
                format!(
                    "{what}; hidden files left in --state-dir: {}",
                    state_left.join(", ")
                ),
                &repro,
            );
            for name in &state_left {
                let _ = fs::remove_file(setup.state_dir.join(name));
            }
        }
    }
    drop(cluster);
    Ok(())
}

impl Dest {
    fn kind_name(&self) -> String {
        format!(
            "the {} {} destination does not hold it",
            format!("{:?}", self.kind).to_lowercase(),
            self.codec.name
        )
    }
}

/// Hidden files in `dir` other than the cluster marker and the cleanup lock: temp files of a
/// killed writer (ours or rsync's).
fn hidden_leftovers(dir: &Path) -> Vec<String> {
    runner::names(dir)
        .into_iter()
        .filter(|n| n.starts_with('.') && n != ".pitr-cluster" && n != ".pitr-cleanup.lock")
        .collect()
}

/// A pipe program as the README suggests one (`cat > DIR/$1`): it writes what it reads under
/// the final name in `dir`.
fn write_pipe_program(base: &Path, label: &str, dir: &Path) -> Result<PathBuf> {
    let path = base.join(format!("pipe-{label}"));
    fs::write(
        &path,
        format!("#!/bin/sh\nset -e\ncat > '{}'/\"$1\"\n", dir.display()),
    )?;
    pitr_tests::pg_user().chown(&path);
    pitr_tests::user::set_mode(&path, 0o755);
    Ok(path)
}

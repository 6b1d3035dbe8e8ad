//! pitr-restore killed with SIGKILL or SIGTERM, prefetch on and off.
//!
//! A stopped cluster's data directory plays the recovering server: pitr-restore runs in it as
//! PostgreSQL runs restore_command (`%f %p` with `%p` = `pg_wal/RECOVERYXLOG`, which PostgreSQL
//! removes before each call). Three kinds of run:
//! - **restoring**: a present segment, killed after a delay drawn from 0 to 115 % of the
//!   measured call (decoding, the write of the temp file, the rename);
//! - **waiting**: a segment not in the archive yet, killed while pitr-restore polls (SIGTERM
//!   is what a fast shutdown sends);
//! - **prefetch worker**: after a call hands a segment over, the detached worker filling
//!   `pg_wal/.pitr-prefetch` is killed.
//!
//! Then `%p` must be absent or hold exactly the segment; the next call (PostgreSQL asks again
//! after a restart) must exit 0 and hand over exactly the segment; once it and any prefetch
//! worker are done, no temp file (`.RECOVERYXLOG.pitr-tmp.PID`, a spool temp file) may remain
//! in `pg_wal`: PostgreSQL never removes them, and a full pg_wal stops the server.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use pitr_tests::ClusterOpts;

use super::runner::{self, Call, Ctx, Target};
use super::{Bad, Tally};

const NAME: &str = "restore-kill";
const CODECS: [(&str, &str); 3] = [("none", ""), ("gzip", ".gz"), ("zstd", ".zst")];
const XLOG: &str = "pg_wal/RECOVERYXLOG";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Restoring,
    Waiting,
    Worker,
}

pub fn run(ctx: &Ctx, tally: &mut Tally) -> Result<()> {
    let (cluster, segments) = runner::cluster_with_segments(
        "restore-kill",
        ClusterOpts::new().wal_segsize_mb(ctx.pick(1, 16)),
        1,
        6,
    );
    let segments: Vec<String> = segments.into_iter().rev().take(6).collect::<Vec<_>>();
    anyhow::ensure!(segments.len() >= 3, "too few segments");
    let base = ctx.dir(NAME);
    let out = base.join("out");
    let mut archives = Vec::new();
    for (codec, _) in CODECS {
        let dir = base.join(format!("archive-{codec}"));
        runner::pg_dir(&dir);
        for s in &segments {
            let done = Call::new(ctx, "pitr-archive")
                .cwd(cluster.data_dir())
                .arg("--dst-local")
                .arg(format!("{codec}={}", dir.display()))
                .arg(format!("pg_wal/{s}"))
                .run(&out, Duration::from_secs(120))?;
            anyhow::ensure!(done.ok(), "archiving {s}: {}", done.stderr);
        }
        archives.push(dir);
    }
    let mut bytes = std::collections::HashMap::new();
    for s in &segments {
        bytes.insert(s.clone(), fs::read(cluster.wal_dir().join(s))?);
    }
    // The server stays up, as under a real restore_command: only a running server's calls wait
    // for a missing segment and start a prefetch worker.
    let data = cluster.data_dir().to_path_buf();
    let pg_wal = data.join("pg_wal");
    // A segment name no archive holds: far after the others.
    let missing = "0000000100000000000000F0";

    let call = |codec: usize, prefetch: u32, wanted: &str| {
        Call::new(ctx, "pitr-restore")
            .cwd(&data)
            .arg("--source")
            .arg(format!("{}={}", CODECS[codec].0, archives[codec].display()))
            .args(["--poll-interval", "0.1", "--prefetch"])
            .arg(prefetch.to_string())
            .arg(wanted)
            .arg(XLOG)
    };
    let mut measured = std::collections::HashMap::new();
    for run in ctx.runs(12, 60) {
        let repro = ctx.repro(NAME, run);
        let mut rng = ctx.rng(NAME, run);
        let codec = rng.index(CODECS.len());
        let prefetch = if rng.chance(0.5) { 0 } else { 4 };
        let phase = match rng.below(10) {
            0..=5 => Phase::Restoring,
            6..=7 => Phase::Waiting,
            _ if prefetch > 0 => Phase::Worker,
            _ => Phase::Waiting,
        };
        let sig = if rng.chance(0.5) {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        };
        let segment = rng.choose(&segments).clone();
        let fraction = rng.unit() * 1.15;
        reset(&pg_wal);

        let key = (codec, prefetch);
        if let std::collections::hash_map::Entry::Vacant(e) = measured.entry(key) {
            let mut times = Vec::new();
            for s in segments.iter().take(3) {
                reset(&pg_wal);
                let done = call(codec, prefetch, s).run(&out, Duration::from_secs(60))?;
                anyhow::ensure!(done.ok(), "measuring pitr-restore: {}", done.stderr);
                times.push(done.elapsed);
                wait_worker_gone(&data);
            }
            let m = runner::median(&mut times);
            tally.note(format!(
                "{} with --prefetch {prefetch}: a call takes {:.0} ms (median of 3)",
                CODECS[codec].0,
                m.as_secs_f64() * 1000.0
            ));
            e.insert(m);
            reset(&pg_wal);
        }
        let d = measured[&key];
        let (wanted, delay) = match phase {
            Phase::Restoring => (segment.clone(), d.mul_f64(fraction)),
            Phase::Waiting => (missing.to_owned(), Duration::from_millis(rng.below(600))),
            Phase::Worker => (segment.clone(), Duration::from_millis(rng.below(400))),
        };
        let c = call(codec, prefetch, &wanted);
        let sig_name = if sig == libc::SIGKILL {
            "SIGKILL"
        } else {
            "SIGTERM"
        };
        let what = ctx.show(&format!(
            "{} ({phase:?}), {sig_name} after {:.1} ms",
            c.line(),
            delay.as_secs_f64() * 1000.0
        ));
        tally.run();
        let hit = match phase {
            Phase::Worker => {
                let done = c.run(&out, Duration::from_secs(60))?;
                if !done.ok() {
                    tally.bad(
                        Bad::NotRecovered,
                        format!("{what}: the call failed: {}", done.first_error()),
                        &repro,
                    );
                }
                runner::pause(delay);
                let workers = worker_pids(&data);
                for pid in &workers {
                    runner::kill_pid(*pid, sig);
                }
                wait_worker_gone(&data);
                !workers.is_empty()
            }
            _ => {
                let mut running = c.spawn(&out)?;
                runner::pause(delay);
                let hit = running.signal(sig, Target::Process);
                let done = running.wait_timeout(Duration::from_secs(60))?;
                if done.panicked() {
                    tally.bad(
                        Bad::Panic,
                        format!("{what}: {}", done.first_error()),
                        &repro,
                    );
                }
                if phase == Phase::Waiting && !hit {
                    tally.bad(
                        Bad::WrongStatus,
                        format!(
                            "{what}: pitr-restore did not wait for a missing segment ({})",
                            done.status_text()
                        ),
                        &repro,
                    );
                }
                hit
            }
        };
        if hit {
            tally.fault();
        }
        // What PostgreSQL would find in pg_wal right after the kill.
        let xlog = data.join(XLOG);
        if xlog.exists() && phase != Phase::Worker {
            let good =
                phase == Phase::Restoring && fs::read(&xlog).is_ok_and(|b| b == bytes[&segment]);
            if !good {
                tally.bad(
                    Bad::Corrupt,
                    format!("{what}: %p exists and does not hold the segment"),
                    &repro,
                );
            }
        }
        let temps = temp_files(&pg_wal);
        tally.info(
            "temp files in pg_wal right after the kill",
            temps.len() as u64,
        );
        wait_worker_gone(&data);

        // PostgreSQL asks again (after a restart, for the segment it still needs).
        let _ = fs::remove_file(&xlog);
        let again = call(codec, prefetch, &segment).run(&out, Duration::from_secs(60))?;
        if again.panicked() {
            tally.bad(
                Bad::Panic,
                format!("{what}; next call: {}", again.first_error()),
                &repro,
            );
        } else if !again.ok() {
            tally.bad(
                Bad::NotRecovered,
                format!(
                    "{what}; the next call failed with {}: {}",
                    again.status_text(),
                    again.first_error()
                ),
                &repro,
            );
        } else if !fs::read(&xlog).is_ok_and(|b| b == bytes[&segment]) {
            tally.bad(
                Bad::Corrupt,
                format!("{what}; the next call exited 0 but %p does not hold the segment"),
                &repro,
            );
        }
        wait_worker_gone(&data);
        let left = temp_files(&pg_wal);
        if !left.is_empty() {
            let size: u64 = left
                .iter()
                .filter_map(|n| fs::metadata(pg_wal.join(n)).ok())
                .map(|m| m.len())
                .sum();
            tally.bad_n(
                Bad::LeftBehind,
                left.len() as u64,
                format!(
                    "{what}; left in pg_wal after the next call{}: {} ({} bytes)",
                    if prefetch > 0 {
                        " and its prefetch worker"
                    } else {
                        ""
                    },
                    left.join(", "),
                    size
                ),
                &repro,
            );
        }
    }
    drop(cluster);
    Ok(())
}

/// Empties pg_wal of what the previous run left (as root): `%p`, temp files, the spool.
fn reset(pg_wal: &Path) {
    for name in runner::names(pg_wal) {
        if name == "RECOVERYXLOG" || name.contains(".pitr-tmp.") {
            let _ = fs::remove_file(pg_wal.join(&name));
        }
    }
    let _ = fs::remove_dir_all(pg_wal.join(".pitr-prefetch"));
}

/// Temp files of pitr-restore in pg_wal and in the prefetch spool.
fn temp_files(pg_wal: &Path) -> Vec<String> {
    let mut v: Vec<String> = runner::names(pg_wal)
        .into_iter()
        .filter(|n| n.contains(".pitr-tmp."))
        .collect();
    let spool = pg_wal.join(".pitr-prefetch");
    v.extend(
        runner::names(&spool)
            .into_iter()
            .filter(|n| n.contains(".pitr-tmp."))
            .map(|n| format!(".pitr-prefetch/{n}")),
    );
    v
}

fn worker_pids(data: &Path) -> Vec<u32> {
    let d = data.display().to_string();
    runner::pids_matching(&["pitr-restore", "--prefetch-worker"])
        .into_iter()
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/cwd"))
                .is_ok_and(|cwd| cwd.display().to_string() == d)
                || fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&d))
        })
        .collect()
}

/// Waits (up to 60 s) until no prefetch worker runs for `data`.
fn wait_worker_gone(data: &Path) {
    let _ = pitr_tests::poll_until(Duration::from_secs(60), || {
        worker_pids(data).is_empty().then_some(())
    });
}

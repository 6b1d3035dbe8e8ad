//! pitr-cleanup killed in the middle of retention.
//!
//! Five real backup sets of one cluster (pitr-backup, WAL from the archive) are made once and
//! their meta files dated back so that retention (`--keep-days 3`) removes the three oldest and
//! their WAL. A complete run on a copy gives the expected end state. Each run copies the
//! backup directory and the archive (hard links), runs retention and kills it with SIGKILL
//! after a delay drawn from 0 to 115 % of a measured run; then retention runs again to the
//! end. Counted: a set whose meta file is still there while its other files are gone (a
//! half-removed set taken for a whole one), files the second run leaves that a complete run
//! removes (a set's files left forever once its meta file went), and files of kept sets or
//! WAL they need that are gone.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use pitr_tests::{Cluster, ClusterOpts};

use super::runner::{self, Call, Ctx, Target};
use super::{Bad, Tally};

const NAME: &str = "cleanup-kill";

pub fn run(ctx: &Ctx, tally: &mut Tally) -> Result<()> {
    let base = ctx.dir(NAME);
    let master_b = base.join("backups");
    let master_a = base.join("archive");
    runner::pg_dir(&master_b);
    runner::pg_dir(&master_a);
    let out = base.join("out");
    let cluster = Cluster::init(
        "cleanup-kill",
        ClusterOpts::new()
            .wal_segsize_mb(1)
            .set("archive_mode", "on")
            .set(
                "archive_command",
                &format!(
                    "{} --dst-local zstd={} %p",
                    ctx.bin("pitr-archive").display(),
                    master_a.display()
                ),
            ),
    );
    cluster.start();
    cluster.pgbench_init(1);
    for i in 0..5 {
        cluster.pgbench(200, 2);
        let done = Call::new(ctx, "pitr-backup")
            .arg("--data-dir")
            .arg(cluster.data_dir())
            .arg("--host")
            .arg(cluster.socket_dir())
            .arg("--port")
            .arg(cluster.port().to_string())
            .args(["--username", "postgres", "--fast-checkpoint"])
            .arg("--dst-local")
            .arg(format!("zstd={}", master_b.display()))
            .arg("--wal-source")
            .arg(format!("zstd={}", master_a.display()))
            .arg("--filename-template")
            .arg(format!("__HOSTNAME__-__FILETYPE__-set{i}.tar__CEXT__"))
            .run(&out, Duration::from_secs(300))?;
        anyhow::ensure!(done.ok(), "backup {i}: {}", done.stderr);
    }
    let last = cluster.switch_wal();
    cluster.wait_archived(&last, Duration::from_secs(120));
    cluster.stop();
    // Date the sets back: set i started 10 - 2i days ago (set 4, the newest, two days ago).
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    for name in runner::names(&master_b) {
        let path = master_b.join(&name);
        let text = fs::read_to_string(&path).unwrap_or_default();
        let Some(i) = (0..5).find(|i| name.contains(&format!("-meta-set{i}"))) else {
            continue;
        };
        let started = now - (10 - 2 * i) * 86_400;
        let new: String = text
            .lines()
            .map(|l| {
                if l.starts_with("Started-epoch: ") {
                    format!("Started-epoch: {started}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        runner::put_as_pg(&path, new.as_bytes())?;
    }

    let copy = |dir: &Path, from: &Path| -> Result<()> {
        let _ = fs::remove_dir_all(dir);
        runner::pg_dir(dir);
        for n in runner::names(from) {
            fs::hard_link(from.join(&n), dir.join(&n)).with_context(|| format!("linking {n}"))?;
        }
        Ok(())
    };
    let run_b = base.join("run-backups");
    let run_a = base.join("run-archive");
    // A killed run's own temporary record is another host's to the next run until it is stale
    // (an hour): stale at once here, as the campaign's next run must leave nothing behind.
    let retention = || {
        Call::new(ctx, "pitr-cleanup")
            .env("PITR_TEST_STALE_TEMP_SECS", "0")
            .arg("--backup-dir")
            .arg(&run_b)
            .arg("--archive")
            .arg(format!("zstd={}", run_a.display()))
            .args(["--keep-days", "3"])
    };

    // The expected end state and the duration of a complete run.
    let mut times = Vec::new();
    let mut expected = (BTreeSet::new(), BTreeSet::new());
    for _ in 0..3 {
        copy(&run_b, &master_b)?;
        copy(&run_a, &master_a)?;
        let done = retention().run(&out, Duration::from_secs(60))?;
        anyhow::ensure!(done.ok(), "measuring pitr-cleanup: {}", done.stderr);
        times.push(done.elapsed);
        expected = (listing(&run_b), listing(&run_a));
    }
    let measured = runner::median(&mut times);
    let removed_sets = runner::names(&master_b).len() - expected.0.len();
    tally.note(format!(
        "5 sets, retention removes {removed_sets} of their files and {} of {} archived files; a \
         run takes {:.1} ms",
        runner::names(&master_a).len() - expected.1.len(),
        runner::names(&master_a).len(),
        measured.as_secs_f64() * 1000.0
    ));
    // Each set: its meta file and the files it names.
    let sets: Vec<(String, Vec<String>)> = runner::names(&master_b)
        .into_iter()
        .filter(|n| n.contains("-meta-"))
        .map(|meta| {
            let text = fs::read_to_string(master_b.join(&meta)).unwrap_or_default();
            let files = ["Data-File: ", "Xlog-File: ", "Digest-File: "]
                .iter()
                .filter_map(|key| text.lines().find_map(|l| l.strip_prefix(key)))
                .map(|f| f.trim().to_owned())
                .collect();
            (meta, files)
        })
        .collect();

    for run in ctx.runs(8, 30) {
        let repro = ctx.repro(NAME, run);
        let mut rng = ctx.rng(NAME, run);
        let delay = measured.mul_f64(rng.unit() * 1.15);
        copy(&run_b, &master_b)?;
        copy(&run_a, &master_a)?;
        let call = retention();
        let what = ctx.show(&format!(
            "{} killed (SIGKILL) after {:.2} ms of ~{:.2} ms",
            call.line(),
            delay.as_secs_f64() * 1000.0,
            measured.as_secs_f64() * 1000.0
        ));
        tally.run();
        let mut running = call.spawn(&out)?;
        runner::pause(delay);
        let hit = running.signal(libc::SIGKILL, Target::Process);
        let done = running.wait_timeout(Duration::from_secs(60))?;
        tally.killed(hit, &done, &what, &repro);
        // Right after the kill: no set may keep its meta file without its other files.
        let mut half = 0;
        for (meta, files) in &sets {
            let present: Vec<&String> = files.iter().filter(|f| run_b.join(f).exists()).collect();
            if run_b.join(meta).exists() {
                for f in files.iter().filter(|f| !run_b.join(f).exists()) {
                    tally.bad(
                        Bad::Corrupt,
                        format!("{what}: {meta} is still there but {f} is gone"),
                        &repro,
                    );
                }
            } else if !present.is_empty() {
                half += 1;
            }
        }
        tally.info(
            "sets whose meta file went first, right after the kill",
            half as u64,
        );

        let again = retention().run(&out, Duration::from_secs(60))?;
        if again.panicked() {
            tally.bad(
                Bad::Panic,
                format!("{what}; next run: {}", again.first_error()),
                &repro,
            );
        } else if !again.ok() {
            tally.bad(
                Bad::NotRecovered,
                format!("{what}; the next run failed: {}", again.first_error()),
                &repro,
            );
        }
        let (b, a) = (listing(&run_b), listing(&run_a));
        let extra: Vec<String> = b.difference(&expected.0).cloned().collect();
        if !extra.is_empty() {
            tally.bad_n(
                Bad::LeftBehind,
                extra.len() as u64,
                format!(
                    "{what}; the next run leaves files a complete run removes: {}",
                    extra.join(", ")
                ),
                &repro,
            );
        }
        let missing: Vec<String> = expected
            .0
            .difference(&b)
            .chain(expected.1.difference(&a))
            .cloned()
            .collect();
        if !missing.is_empty() {
            tally.bad_n(
                Bad::Lost,
                missing.len() as u64,
                format!("{what}; gone although kept: {}", missing.join(", ")),
                &repro,
            );
        }
        let extra_wal: Vec<String> = a.difference(&expected.1).cloned().collect();
        if !extra_wal.is_empty() {
            tally.info(
                "archived files a complete run would have removed",
                extra_wal.len() as u64,
            );
        }
    }
    Ok(())
}

/// The names in `dir` but the cleanup lock.
fn listing(dir: &Path) -> BTreeSet<String> {
    runner::names(dir)
        .into_iter()
        .filter(|n| n != ".pitr-cleanup.lock")
        .collect()
}

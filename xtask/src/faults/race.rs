//! Races: two pitr-archive calls for one segment at once, two clusters into one empty
//! archive at once, and pitr-cleanup while a backup runs.
//!
//! - **One segment, two calls** into one directory, started together: the same content (both
//!   must succeed, and the archive holds the segment) or different content (a copy of the
//!   segment with one byte of a record changed, as a diverged old primary would send: at most
//!   one may succeed, and every stored form of that name must hold what the winner sent).
//!   The two calls use the same codec or different ones: `SEG`, `SEG.gz` and `SEG.zst` are
//!   one name (SPEC, "the duplicate rule is per WAL name across all stored forms").
//! - **Two clusters, one empty archive**: each archives a segment into the same new
//!   directory at once; exactly one cluster may own it (its cluster marker), and no file of
//!   the other may be stored.
//! - **Cleanup during a backup**: pitr-cleanup removes WAL (`%r` = the newest segment) in a
//!   loop while pitr-backup takes its WAL from that archive; with the backup's removal pause
//!   trigger the backup must succeed; without it, it may fail, but a set it completes must
//!   hold every segment it names. Retention on the backup directory runs alongside too: it
//!   must not take a running backup's files.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use pitr_tests::{Cluster, ClusterOpts};

use super::runner::{self, Call, Ctx, Done};
use super::{Bad, Tally};

const NAME: &str = "race";
const CODECS: [(&str, &str); 3] = [("none", ""), ("gzip", ".gz"), ("zstd", ".zst")];

pub fn run(ctx: &Ctx, tally: &mut Tally) -> Result<()> {
    let base = ctx.dir(NAME);
    let out = base.join("out");
    let (one, segs_one) = runner::cluster_with_segments(
        "race-one",
        ClusterOpts::new().wal_segsize_mb(ctx.pick(1, 16)),
        1,
        2,
    );
    let (two, segs_two) = runner::cluster_with_segments(
        "race-two",
        ClusterOpts::new().wal_segsize_mb(ctx.pick(1, 16)),
        1,
        1,
    );
    anyhow::ensure!(!segs_one.is_empty() && !segs_two.is_empty(), "no segments");

    // A second "data directory" holding a diverged copy of a segment (one record byte changed,
    // headers intact) with the same pg_control.
    let segment = segs_one[segs_one.len() - 1].clone();
    let original = fs::read(one.wal_dir().join(&segment))?;
    let diverged_dir = base.join("diverged");
    runner::pg_dir(&diverged_dir);
    runner::pg_dir(&diverged_dir.join("global"));
    runner::pg_dir(&diverged_dir.join("pg_wal"));
    runner::copy_as_pg(
        &one.data_dir().join("global/pg_control"),
        &diverged_dir.join("global/pg_control"),
    )?;
    runner::copy_as_pg(
        &one.data_dir().join("PG_VERSION"),
        &diverged_dir.join("PG_VERSION"),
    )?;
    let mut diverged = original.clone();
    let at = diverged.len() / 3 + 100;
    diverged[at] ^= 0x55;
    runner::put_as_pg(&diverged_dir.join("pg_wal").join(&segment), &diverged)?;

    let archive = |data: &Path, codec: &str, dir: &Path, seg: &str| {
        Call::new(ctx, "pitr-archive")
            .cwd(data)
            .arg("--dst-local")
            .arg(format!("{codec}={}", dir.display()))
            .arg(format!("pg_wal/{seg}"))
    };

    // 1. One segment, two calls.
    let mut run = 0u64;
    for same in [true, false] {
        for (a, b) in [(2, 2), (1, 1), (0, 0), (2, 1), (0, 2), (1, 0)] {
            for rep in 0..ctx.pick(1u64, 4) {
                let this = run;
                run += 1;
                if ctx.only_run.is_some_and(|r| r != this) {
                    continue;
                }
                let repro = ctx.repro(NAME, this);
                let dir = ctx.dir(&format!("race/seg-{this}"));
                // Half the time the destination is new, so the cluster marker races too.
                if rep % 2 == 1 {
                    let first = archive(one.data_dir(), CODECS[a].0, &dir, &segs_one[0])
                        .run(&out, Duration::from_secs(60))?;
                    anyhow::ensure!(first.ok(), "{}", first.stderr);
                }
                let data_b = if same {
                    one.data_dir().to_path_buf()
                } else {
                    diverged_dir.clone()
                };
                let ca = archive(one.data_dir(), CODECS[a].0, &dir, &segment);
                let cb = archive(&data_b, CODECS[b].0, &dir, &segment);
                let what = ctx.show(&format!(
                    "{} and, at once, {} ({})",
                    ca.line(),
                    cb.line(),
                    if same {
                        "same content"
                    } else {
                        "different content"
                    }
                ));
                tally.run();
                tally.fault();
                let (ra, rb) = together(&ca, &cb, &out)?;
                for r in [&ra, &rb] {
                    if r.panicked() {
                        tally.bad(Bad::Panic, format!("{what}: {}", r.first_error()), &repro);
                    }
                }
                let stored = stored_forms(&dir, &segment);
                if same {
                    if !(ra.ok() && rb.ok()) {
                        tally.bad(
                            Bad::WrongStatus,
                            format!(
                                "{what}: a call failed although the content is identical: {} / {}",
                                ra.first_error(),
                                rb.first_error()
                            ),
                            &repro,
                        );
                    }
                    for (name, content) in &stored {
                        if content.as_deref() != Some(original.as_slice()) {
                            tally.bad(
                                Bad::Corrupt,
                                format!("{what}: {name} does not hold the segment"),
                                &repro,
                            );
                        }
                    }
                } else {
                    let winners: Vec<&[u8]> = [(&ra, &original), (&rb, &diverged)]
                        .iter()
                        .filter(|(r, _)| r.ok())
                        .map(|(_, c)| c.as_slice())
                        .collect();
                    if winners.len() > 1 {
                        tally.bad(
                            Bad::Lost,
                            format!(
                                "{what}: both calls exited 0; the archive now holds two different \
                                 {segment} ({})",
                                stored
                                    .iter()
                                    .map(|(n, _)| n.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            &repro,
                        );
                    }
                    for (name, content) in &stored {
                        let matches_winner = winners.iter().any(|w| content.as_deref() == Some(*w));
                        if !matches_winner && !winners.is_empty() {
                            tally.bad(
                                Bad::Corrupt,
                                format!("{what}: {name} does not hold what the call that succeeded sent"),
                                &repro,
                            );
                        }
                    }
                    if winners.is_empty() {
                        tally.bad(
                            Bad::NotRecovered,
                            format!(
                                "{what}: neither call succeeded: {} / {}",
                                ra.first_error(),
                                rb.first_error()
                            ),
                            &repro,
                        );
                    }
                }
                let temps: Vec<String> = runner::names(&dir)
                    .into_iter()
                    .filter(|n| n.contains(".pitr-tmp."))
                    .collect();
                if !temps.is_empty() {
                    tally.bad_n(
                        Bad::LeftBehind,
                        temps.len() as u64,
                        format!("{what}: temp files left: {}", temps.join(", ")),
                        &repro,
                    );
                }
                let _ = fs::remove_dir_all(&dir);
            }
        }
    }

    // 2. Two clusters into one empty archive.
    for rep in 0..ctx.pick(4u64, 12) {
        let this = run;
        run += 1;
        if ctx.only_run.is_some_and(|r| r != this) {
            continue;
        }
        let repro = ctx.repro(NAME, this);
        let codec = CODECS[usize::try_from(rep % 3).unwrap_or(0)].0;
        let dir = ctx.dir(&format!("race/two-{this}"));
        let ca = archive(one.data_dir(), codec, &dir, &segs_one[0]);
        let cb = archive(two.data_dir(), codec, &dir, &segs_two[0]);
        let what = ctx.show(&format!(
            "{} and, at once, {} (another cluster)",
            ca.line(),
            cb.line()
        ));
        tally.run();
        tally.fault();
        let (ra, rb) = together(&ca, &cb, &out)?;
        for r in [&ra, &rb] {
            if r.panicked() {
                tally.bad(Bad::Panic, format!("{what}: {}", r.first_error()), &repro);
            }
        }
        if ra.ok() && rb.ok() {
            tally.bad(
                Bad::Corrupt,
                format!("{what}: both clusters' segments were accepted into one archive"),
                &repro,
            );
        } else if !ra.ok() && !rb.ok() {
            tally.bad(
                Bad::NotRecovered,
                format!(
                    "{what}: neither was accepted: {} / {}",
                    ra.first_error(),
                    rb.first_error()
                ),
                &repro,
            );
        }
        let marker = fs::read_to_string(dir.join(".pitr-cluster")).unwrap_or_default();
        for (name, content) in stored_forms(&dir, &segs_one[0])
            .into_iter()
            .chain(stored_forms(&dir, &segs_two[0]))
        {
            let sysid = content.as_deref().and_then(sysid_of);
            if sysid.is_none_or(|s| !marker.contains(&format!("= {s}"))) {
                tally.bad(
                    Bad::Corrupt,
                    format!(
                        "{what}: {name} is not of the cluster the marker names ({})",
                        marker.trim()
                    ),
                    &repro,
                );
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
    drop(two);
    drop(one);

    // 3. Cleanup during a backup.
    cleanup_during_backup(ctx, tally, &mut run, &out)?;
    Ok(())
}

/// Starts both calls, then waits for both.
fn together(a: &Call, b: &Call, out: &Path) -> Result<(Done, Done)> {
    let ra = a.spawn(out)?;
    let rb = b.spawn(out)?;
    Ok((
        ra.wait_timeout(Duration::from_secs(120))?,
        rb.wait_timeout(Duration::from_secs(120))?,
    ))
}

/// Every stored form of `wal` in `dir` and its decoded content (`None` when it does not
/// decode).
fn stored_forms(dir: &Path, wal: &str) -> Vec<(String, Option<Vec<u8>>)> {
    CODECS
        .iter()
        .map(|(_, ext)| format!("{wal}{ext}"))
        .filter(|n| dir.join(n).exists())
        .map(|n| {
            let c = runner::decode(&dir.join(&n)).ok();
            (n, c)
        })
        .collect()
}

/// The system identifier in a segment's long page header.
fn sysid_of(segment: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(segment.get(24..32)?.try_into().ok()?))
}

fn cleanup_during_backup(ctx: &Ctx, tally: &mut Tally, run: &mut u64, out: &Path) -> Result<()> {
    let base = ctx.dir("race/backup");
    let archive = base.join("archive");
    let backups = base.join("backups");
    runner::pg_dir(&archive);
    runner::pg_dir(&backups);
    let trigger = base.join("pause.trigger");
    let cluster = Cluster::init(
        "race-backup",
        ClusterOpts::new()
            .wal_segsize_mb(1)
            .set("archive_mode", "on")
            .set("archive_timeout", "1")
            .set(
                "archive_command",
                &format!(
                    "{} --dst-local zstd={} %p",
                    ctx.bin("pitr-archive").display(),
                    archive.display()
                ),
            ),
    );
    cluster.start();
    cluster.pgbench_init(1);
    for with_trigger in [true, false] {
        for rep in 0..ctx.pick(1u64, 3) {
            let this = *run;
            *run += 1;
            if ctx.only_run.is_some_and(|r| r != this) {
                continue;
            }
            let repro = ctx.repro(NAME, this);
            let template = format!("__HOSTNAME__-__FILETYPE__-race{this}.tar__CEXT__");
            let mut backup = Call::new(ctx, "pitr-backup")
                .arg("--data-dir")
                .arg(cluster.data_dir())
                .arg("--host")
                .arg(cluster.socket_dir())
                .arg("--port")
                .arg(cluster.port().to_string())
                .args(["--username", "postgres", "--fast-checkpoint"])
                .arg("--dst-local")
                .arg(format!("zstd={}", backups.display()))
                .arg("--wal-source")
                .arg(format!("zstd={}", archive.display()))
                .args(["--wal-timeout", "20", "--filename-template"])
                .arg(&template);
            if with_trigger {
                backup = backup.arg("--removal-pause-trigger").arg(&trigger);
            }
            let what =
                ctx.show(&format!(
                "{} while pitr-cleanup removes WAL up to the newest segment and runs retention \
                 in a loop ({} pause trigger, try {rep})",
                backup.line(),
                if with_trigger { "with the" } else { "without a" }
            ));
            tally.run();
            tally.fault();
            let mut running = backup.spawn(out)?;
            let mut cleanups = 0;
            while !running.exited() {
                let newest = runner::names(&archive)
                    .into_iter()
                    .filter(|n| n.len() >= 24 && runner::is_segment_name(&n[..24]))
                    .max()
                    .map(|n| n[..24].to_owned());
                let Some(newest) = newest else {
                    runner::pause(Duration::from_millis(20));
                    continue;
                };
                let mut c = Call::new(ctx, "pitr-cleanup")
                    .arg("--archive")
                    .arg(format!("zstd={}", archive.display()));
                if with_trigger {
                    c = c.arg("--removal-pause-trigger").arg(&trigger);
                }
                let r = c.arg(&newest).run(out, Duration::from_secs(60))?;
                if r.panicked() {
                    tally.bad(
                        Bad::Panic,
                        format!("{what}: pitr-cleanup: {}", r.first_error()),
                        &repro,
                    );
                }
                let r = Call::new(ctx, "pitr-cleanup")
                    .arg("--backup-dir")
                    .arg(&backups)
                    .arg("--archive")
                    .arg(format!("zstd={}", archive.display()))
                    .args(["--keep-count", "1", "--keep-days", "1"])
                    .run(out, Duration::from_secs(60))?;
                if r.panicked() {
                    tally.bad(
                        Bad::Panic,
                        format!("{what}: pitr-cleanup retention: {}", r.first_error()),
                        &repro,
                    );
                }
                cleanups += 1;
            }
            let done = running.wait_timeout(Duration::from_secs(300))?;
            tally.info("pitr-cleanup runs during backups", cleanups);
            if done.panicked() {
                tally.bad(
                    Bad::Panic,
                    format!("{what}: {}", done.first_error()),
                    &repro,
                );
            }
            if with_trigger && !done.ok() {
                tally.bad(
                    Bad::NotRecovered,
                    format!(
                        "{what}: the backup failed although WAL removal was paused: {}",
                        done.first_error()
                    ),
                    &repro,
                );
            }
            if done.ok() {
                if let Err(e) = check_set(&backups, &format!("race{this}")) {
                    tally.bad(
                        Bad::Lost,
                        format!("{what}: the set it completed: {e:#}"),
                        &repro,
                    );
                }
            } else {
                tally.info(
                    "backups that failed because their WAL was removed (no trigger)",
                    1,
                );
            }
            if trigger.exists() {
                tally.bad(
                    Bad::LeftBehind,
                    format!("{what}: the pause trigger stayed"),
                    &repro,
                );
                let _ = fs::remove_file(&trigger);
            }
        }
    }
    Ok(())
}

/// Checks that the set whose names contain `tag` is whole: a meta file, its data and xlog
/// files, and every segment from Min-Xlog to Stop-Xlog in the xlog tar.
fn check_set(dir: &Path, tag: &str) -> Result<()> {
    let meta_name = runner::names(dir)
        .into_iter()
        .find(|n| n.contains(tag) && n.contains("-meta-"))
        .context("no meta file")?;
    let meta = fs::read_to_string(dir.join(&meta_name))?;
    let get = |k: &str| {
        meta.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_owned())
            .with_context(|| format!("no {k} in {meta_name}"))
    };
    let (min, stop) = (get("Min-Xlog: ")?, get("Stop-Xlog: ")?);
    let xlog: PathBuf = dir.join(get("Xlog-File: ")?);
    anyhow::ensure!(
        dir.join(get("Data-File: ")?).exists(),
        "its data file is gone"
    );
    let tar_bytes = runner::decode(&xlog)?;
    let mut names = BTreeSet::new();
    let mut ar = tar::Archive::new(tar_bytes.as_slice());
    for e in ar.entries()? {
        let mut e = e?;
        let path = e.path()?.display().to_string();
        let mut sink = Vec::new();
        e.read_to_end(&mut sink)?;
        if let Some(n) = path.strip_prefix("pg_wal/") {
            names.insert(n.to_owned());
        }
    }
    anyhow::ensure!(names.contains(&min), "{} lacks {min}", xlog.display());
    anyhow::ensure!(names.contains(&stop), "{} lacks {stop}", xlog.display());
    Ok(())
}

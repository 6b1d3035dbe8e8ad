//! Archive-ahead under faults: the call for the first of a backlog of `.ready` segments hands
//! it and the next ones to the archive-ahead worker it starts (`--archive-ahead 4`, two rsync
//! zstd destinations sharing one staged copy and a local gzip one, `--state-dir`) and waits for
//! the worker's record of its segment; a retry delivers its own batch. Every other pair of runs
//! adds a zstd destination in the test Garage cluster (S3 without conditional writes, where the
//! worker keeps up to six batches on the wire instead of two). Hit while the batches are under way:
//!
//! - SIGKILL to pitr-archive (the process alone, or its group with the rsync children) after a
//!   delay drawn from 0 to 115 % of a measured first call;
//! - or the first rsync destination dies mid-batch: its daemon and every connection it serves are
//!   killed after such a delay, and it comes back for the calls that follow;
//! - or SIGKILL to the archive-ahead worker while the call waits for it (after such a delay;
//!   the call then delivers its segment itself);
//! - or, once the call is done, SIGKILL to the archive-ahead worker it started, after a delay
//!   drawn from 0 to 115 % of a measured worker run (the segments after the first batch).
//!
//! Sometimes, too, a segment is rewritten in `pg_wal` after its record was made (one byte of
//! record data changed, headers intact, so it still passes the page checks): its call must send
//! it again or refuse it, never acknowledge it from the stale record. Then every segment is
//! archived as PostgreSQL would, one call each in order, repeating a call that fails as
//! PostgreSQL retries. At the end each destination must hold every segment byte for byte and the
//! state dir no record: 0 lost (acknowledged but missing), 0 corrupt under a final name.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use pitr_tests::{ClusterOpts, GarageCluster, RsyncDaemon};

use super::runner::{self, Call, Ctx, Target};
use super::s3::Prefix;
use super::{Bad, Tally};

const NAME: &str = "archive-ahead";

/// How many segments a call takes along.
const AHEAD: usize = 4;

/// The destinations: where their files land and the extension of each. The two rsync
/// daemons take the same codec, so every batch goes through the staged copy they share. The
/// object store is one of them in the runs that use it.
struct Dests {
    rsync_dir: PathBuf,
    rsync2_dir: PathBuf,
    local_dir: PathBuf,
    s3: Prefix,
}

/// One destination's copy of a segment: where it is, for messages, and its bytes decoded
/// (`Ok(None)`: not there).
struct Copy {
    place: String,
    content: Result<Option<Vec<u8>>>,
}

impl Dests {
    fn files(&self, segment: &str) -> [PathBuf; 3] {
        [
            self.rsync_dir.join(format!("{segment}.zst")),
            self.rsync2_dir.join(format!("{segment}.zst")),
            self.local_dir.join(format!("{segment}.gz")),
        ]
    }

    /// Every copy of `segment`: the three directories', and the object store's `with_s3`.
    fn copies(&self, segment: &str, with_s3: bool) -> Vec<Copy> {
        let mut v: Vec<Copy> = self
            .files(segment)
            .into_iter()
            .map(|f| Copy {
                place: f.display().to_string(),
                content: if f.exists() {
                    runner::decode(&f).map(Some)
                } else {
                    Ok(None)
                },
            })
            .collect();
        if with_s3 {
            let name = format!("{segment}.zst");
            v.push(Copy {
                place: format!("s3 object {S3_PREFIX}/{name}"),
                content: self.s3.get(&name).and_then(|b| {
                    b.map(|b| runner::decode_bytes(&b, ".zst", &name))
                        .transpose()
                }),
            });
        }
        v
    }

    /// Removes the copies of `segment` that hold `content` (the object store's too `with_s3`).
    fn remove_holding(&self, segment: &str, content: &[u8], with_s3: bool) -> Result<()> {
        for f in self.files(segment) {
            if runner::decode(&f).ok().as_deref() == Some(content) {
                fs::remove_file(&f)
                    .with_context(|| format!("removing the rewritten copy {}", f.display()))?;
            }
        }
        let name = format!("{segment}.zst");
        if with_s3 {
            if let Some(b) = self.s3.get(&name)? {
                if runner::decode_bytes(&b, ".zst", &name).ok().as_deref() == Some(content) {
                    self.s3.remove(&name)?;
                }
            }
        }
        Ok(())
    }

    /// Empties the destinations (the cluster markers stay).
    fn clear(&self) -> Result<()> {
        for dir in [&self.rsync_dir, &self.rsync2_dir, &self.local_dir] {
            for name in runner::names(dir) {
                if name != ".pitr-cluster" {
                    let _ = fs::remove_file(dir.join(name));
                }
            }
        }
        for name in self.s3.names()? {
            if name != ".pitr-cluster" {
                self.s3.remove(&name)?;
            }
        }
        Ok(())
    }
}

/// Where the runs with an object store put the segments, in the test Garage cluster's bucket.
const S3_PREFIX: &str = "faults-ahead/wal";

pub fn run(ctx: &Ctx, tally: &mut Tally) -> Result<()> {
    let want = ctx.pick(AHEAD + 3, AHEAD * 2 + 3);
    let (cluster, segments) = runner::cluster_with_segments(
        NAME,
        ClusterOpts::new().wal_segsize_mb(ctx.pick(1, 16)),
        1,
        want,
    );
    // The server is not needed any more: pitr-archive reads pg_wal and pg_control, and the
    // status files are ours to set.
    cluster.stop();
    let segments: Vec<String> = segments.into_iter().rev().take(want).rev().collect();
    let data = cluster.data_dir().to_path_buf();
    let status = data.join("pg_wal/archive_status");
    runner::pg_dir(&status);
    let mut bytes = std::collections::HashMap::new();
    for s in &segments {
        bytes.insert(
            s.clone(),
            fs::read(data.join("pg_wal").join(s)).context("reading a segment")?,
        );
    }
    let mut rsyncd = RsyncDaemon::start("wal_archive");
    // The second standby: never killed.
    let rsyncd2 = RsyncDaemon::start("wal_archive");
    let garage = GarageCluster::start();
    let base = ctx.dir(NAME);
    let dests = Dests {
        rsync_dir: rsyncd.dir().to_path_buf(),
        rsync2_dir: rsyncd2.dir().to_path_buf(),
        local_dir: base.join("local"),
        s3: Prefix::new(&garage, S3_PREFIX)?,
    };
    let s3_config = garage.pitr_config(&base);
    let s3_url = format!("s3://{}/{S3_PREFIX}", garage.bucket());
    // Runs 2, 3, 6, 7, … add the object store (the count and the size alternate every run).
    let with_s3 = |run: u64| run % 4 >= 2;
    runner::pg_dir(&dests.local_dir);
    let state = base.join("state");
    let temp = base.join("tmp");
    runner::pg_dir(&state);
    runner::pg_dir(&temp);
    let out = base.join("out");
    let state_arg = state.display().to_string();
    let workers = || runner::pids_matching(&["--ahead-worker", &state_arg]);
    // Waits until the workers started so far are gone (killing them first when `kill`).
    let workers_gone = |kill: bool| -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let live = workers();
            if live.is_empty() {
                return Ok(());
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "archive-ahead workers {live:?} still run after 120 s"
            );
            if kill {
                for pid in live {
                    runner::kill_pid(pid, libc::SIGKILL);
                }
            }
            runner::pause(Duration::from_millis(5));
        }
    };
    let url = rsyncd.url();
    let url2 = rsyncd2.url();
    // Runs alternate the count and the size that makes it (`4`, and `4MB` of 1 MB segments or
    // `64MB` of 16 MB ones): every outcome the campaign checks holds for both forms.
    let ahead_as = |run: u64| {
        if run % 2 == 1 {
            format!("{}MB", AHEAD * ctx.pick(1, 16))
        } else {
            AHEAD.to_string()
        }
    };
    let call = |segment: &str, ahead: &str, s3: bool| {
        let c = Call::new(ctx, "pitr-archive");
        let c = if s3 {
            c.arg("--config-file")
                .arg(&s3_config)
                .arg("--dst-remote")
                .arg(format!("zstd={s3_url}"))
        } else {
            c
        };
        c.cwd(&data)
            .arg("--state-dir")
            .arg(&state)
            .arg("--temp-dir")
            .arg(&temp)
            .arg("--archive-ahead")
            .arg(ahead)
            .arg("--dst-remote")
            .arg(format!("zstd={url}"))
            .arg("--dst-remote")
            .arg(format!("zstd={url2}"))
            .arg("--dst-local")
            .arg(format!("gzip={}", dests.local_dir.display()))
            .arg(format!("pg_wal/{segment}"))
    };
    // PostgreSQL's view: every segment ready, none archived yet.
    let reset = || -> Result<()> {
        workers_gone(true)?;
        dests.clear()?;
        for name in runner::names(&state) {
            let _ = fs::remove_file(state.join(name));
        }
        for s in &segments {
            let _ = fs::remove_file(status.join(format!("{s}.done")));
            runner::put_as_pg(&status.join(format!("{s}.ready")), b"")?;
        }
        Ok(())
    };

    // The first call, and the worker it starts, measured without and with the object store
    // (whose creates pause before they look again).
    let mut measured = [Duration::ZERO; 2];
    let mut measured_worker = [Duration::ZERO; 2];
    for s3 in [false, true] {
        let mut times = Vec::new();
        let mut worker_times = Vec::new();
        for _ in 0..3 {
            reset()?;
            let done = call(&segments[0], &ahead_as(0), s3).run(&out, Duration::from_secs(120))?;
            anyhow::ensure!(
                done.ok(),
                "measuring the first call: {}\n{}",
                done.status_text(),
                done.stderr
            );
            times.push(done.elapsed);
            let t = std::time::Instant::now();
            workers_gone(false)?;
            worker_times.push(t.elapsed());
        }
        measured[usize::from(s3)] = runner::median(&mut times);
        measured_worker[usize::from(s3)] = runner::median(&mut worker_times);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    tally.note(format!(
        "{} segments of {} MiB; the first call (answered once the worker it starts has \
         delivered a batch of {AHEAD}) takes {:.0} ms (median), the worker after it {:.0} ms; \
         with the object store {:.0} and {:.0} ms",
        segments.len(),
        ctx.pick(1, 16),
        ms(measured[0]),
        ms(measured_worker[0]),
        ms(measured[1]),
        ms(measured_worker[1])
    ));

    for run in ctx.runs(30, 200) {
        let repro = ctx.repro(NAME, run);
        let mut rng = ctx.rng(NAME, run);
        let daemon_dies = rng.chance(0.25);
        let worker_dies = !daemon_dies && rng.chance(0.3);
        let worker_dies_first = !daemon_dies && !worker_dies && rng.chance(0.4);
        let target = if rng.chance(0.5) {
            Target::Process
        } else {
            Target::Group
        };
        let fraction = rng.unit() * 1.15;
        // The segment rewritten after its record was made, if any.
        let rewrite = rng.chance(0.3).then(|| 1 + rng.index(segments.len() - 1));
        let s3 = with_s3(run);
        let measured = measured[usize::from(s3)];
        let delay = if worker_dies {
            measured_worker[usize::from(s3)].mul_f64(fraction)
        } else {
            measured.mul_f64(fraction)
        };
        reset()?;
        let ahead = ahead_as(run);
        let first = call(&segments[0], &ahead, s3);
        let what = ctx.show(&format!(
            "{} ({}, after {:.1} ms of ~{:.0} ms)",
            first.line(),
            if daemon_dies {
                "the rsync daemon and its connections killed".to_string()
            } else if worker_dies {
                "SIGKILL to the archive-ahead worker, once the call is done".to_string()
            } else if worker_dies_first {
                "SIGKILL to the archive-ahead worker, while the call waits for it".to_string()
            } else {
                format!("SIGKILL to the {}", target.name())
            },
            delay.as_secs_f64() * 1000.0,
            measured.as_secs_f64() * 1000.0
        ));
        tally.run();
        let mut running = first.spawn(&out)?;
        let (hit, done) = if worker_dies {
            // The call ends first (it starts the worker as it exits); then the worker is hit.
            let done = running.wait_timeout(Duration::from_secs(120))?;
            runner::pause(delay);
            let live = workers();
            for &pid in &live {
                runner::kill_pid(pid, libc::SIGKILL);
            }
            (!live.is_empty(), done)
        } else {
            runner::pause(delay);
            let hit = if daemon_dies {
                let port = format!("--port={}", rsyncd.port());
                let serving = runner::pids_matching(&["--daemon", &port]);
                rsyncd.stop();
                for pid in serving {
                    runner::kill_pid(pid, libc::SIGKILL);
                }
                !running.exited()
            } else if worker_dies_first {
                let live = workers();
                for &pid in &live {
                    runner::kill_pid(pid, libc::SIGKILL);
                }
                !live.is_empty() && !running.exited()
            } else {
                running.signal(libc::SIGKILL, target)
            };
            (hit, running.wait_timeout(Duration::from_secs(120))?)
        };
        if daemon_dies {
            rsyncd.start_again();
        }
        tally.killed(hit, &done, &what, &repro);
        if done.ok() && (daemon_dies || worker_dies_first) && hit {
            // Exit 0 is fine only if every destination holds the asked segment.
            check_holds(
                &dests,
                s3,
                &segments[0],
                &bytes[&segments[0]],
                tally,
                &what,
                &repro,
            );
        }
        if !runner::wait_group_gone(done.pgid, Duration::from_secs(60)) {
            tally.bad(
                Bad::LeftBehind,
                format!("{what}: its children still ran 60 s after the kill"),
                &repro,
            );
        }
        // A reader right after the fault: whatever is under a final name is whole.
        for seg in &segments {
            for copy in dests.copies(seg, s3) {
                let whole = match &copy.content {
                    Ok(None) => true,
                    Ok(Some(b)) => b == &bytes[seg],
                    Err(_) => false,
                };
                if !whole {
                    tally.bad(
                        Bad::Corrupt,
                        format!(
                            "{what}: {} under its final name does not hold the segment",
                            ctx.show(&copy.place)
                        ),
                        &repro,
                    );
                }
            }
        }

        // A segment rewritten in pg_wal after its record was made (and after the worker that
        // may be delivering the ones after the call's batch is done reading them).
        workers_gone(false)?;
        let rewritten = rewrite
            .map(|k| segments[k].clone())
            .filter(|s| state.join(format!("{s}.state")).exists());
        let mut changed = Vec::new();
        if let Some(s) = &rewritten {
            changed = bytes[s].clone();
            let at = changed.len() / 2 + 123;
            changed[at] ^= 0x5a;
            fs::write(data.join("pg_wal").join(s), &changed)?;
            tally.fault();
        }

        // PostgreSQL's calls, in order, each repeated until it succeeds.
        for seg in &segments {
            let mut attempts = 0;
            loop {
                attempts += 1;
                let r = call(seg, &ahead, s3).run(&out, Duration::from_secs(120))?;
                if r.panicked() {
                    tally.bad(
                        Bad::Panic,
                        format!("{what}; {seg}: {}", r.first_error()),
                        &repro,
                    );
                    break;
                }
                if rewritten.as_ref() == Some(seg) && attempts == 1 {
                    // Other content than what is archived: refused, never acknowledged.
                    if r.ok() {
                        tally.bad(
                            Bad::Lost,
                            format!(
                                "{what}; {seg} was rewritten in pg_wal after its record was \
                                 made, and its call exited 0 (the archive holds other content)"
                            ),
                            &repro,
                        );
                    } else if !r.stderr.contains("different content") {
                        tally.bad(
                            Bad::NotRecovered,
                            format!(
                                "{what}; rewritten {seg} refused, but not as different content: {}",
                                r.first_error()
                            ),
                            &repro,
                        );
                    }
                    // The repair, once the DBA has found that the archived copy is the
                    // right one: the segment put back in pg_wal, and the rewritten file
                    // removed from a destination that lacked the segment and took it (each
                    // destination decides alone, SPEC: one failing destination does not stop
                    // delivery to the others).
                    fs::write(data.join("pg_wal").join(seg), &bytes[seg])?;
                    dests.remove_holding(seg, &changed, s3)?;
                    continue;
                }
                if r.ok() {
                    check_holds(&dests, s3, seg, &bytes[seg], tally, &what, &repro);
                    let ready = status.join(format!("{seg}.ready"));
                    fs::rename(&ready, status.join(format!("{seg}.done")))
                        .with_context(|| format!("marking {seg} done"))?;
                    break;
                }
                if attempts >= 3 {
                    tally.bad(
                        Bad::NotRecovered,
                        format!(
                            "{what}; the call for {seg} failed 3 times: {}",
                            r.first_error()
                        ),
                        &repro,
                    );
                    break;
                }
            }
        }
        workers_gone(false)?;
        let mut left: Vec<String> = runner::names(&state);
        left.retain(|n| n != ".ahead-worker.lock");
        if !left.is_empty() {
            tally.bad_n(
                Bad::LeftBehind,
                left.len() as u64,
                format!(
                    "{what}; left in --state-dir once every segment was archived: {}",
                    left.join(", ")
                ),
                &repro,
            );
        }
        if let Some(s) = &rewritten {
            fs::write(data.join("pg_wal").join(s), &bytes[s])?;
        }
    }
    drop(cluster);
    Ok(())
}

/// Counts a loss when a destination lacks `segment` (or holds other bytes) after a call for it
/// exited 0 (the object store's copy too `with_s3`).
fn check_holds(
    dests: &Dests,
    with_s3: bool,
    segment: &str,
    expected: &[u8],
    tally: &mut Tally,
    what: &str,
    repro: &str,
) {
    for copy in dests.copies(segment, with_s3) {
        match copy.content {
            Ok(Some(b)) if b == expected => {}
            Ok(Some(_)) => tally.bad(
                Bad::Corrupt,
                format!(
                    "{what}; {segment} acknowledged, but {} holds other bytes",
                    copy.place
                ),
                repro,
            ),
            Ok(None) => tally.bad(
                Bad::Lost,
                format!(
                    "{what}; {segment} acknowledged, but {} is missing",
                    copy.place
                ),
                repro,
            ),
            Err(e) => tally.bad(
                Bad::Lost,
                format!("{what}; {segment} acknowledged, but {}: {e:#}", copy.place),
                repro,
            ),
        }
    }
}

//! Full disks: a small tmpfs (mounted here, as root) filled up to a random amount of free
//! space below what the write needs, then emptied again.
//!
//! - **archive** into a full destination (each codec, sometimes a new destination so the
//!   cluster marker needs room too);
//! - **restore** into a full `pg_wal` (the data directory's `pg_wal` is the tmpfs), prefetch on
//!   and off;
//! - **backup** into a full destination.
//!
//! A call that fails must exit with its error status (2; for restore_command never 1–125,
//! which would promote a warm spare) with a HINT, leave nothing under a final name and no temp
//! file (it was not killed: it can clean up), and, for a backup, no `--xlogs` and no trigger.
//! A call that succeeds must have written everything. Once the space returns, the same call
//! must succeed.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pitr_tests::procs::{OutputWithin, EXTERNAL_TIMEOUT};
use pitr_tests::{pg_user, Cluster, ClusterOpts};

use super::runner::{self, Call, Ctx, Done};
use super::{Bad, Tally};

const NAME: &str = "disk-full";
const CODECS: [(&str, &str); 3] = [("none", ""), ("gzip", ".gz"), ("zstd", ".zst")];
const FILLER: &str = ".faults-filler";

/// A tmpfs mounted for the campaign; unmounted when dropped (and by the scratch sweep if the
/// run dies).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, bytes: u64) -> Result<Tmpfs> {
        runner::pg_dir(path);
        let user = pg_user();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!(
                "size={bytes},mode=0700,uid={},gid={}",
                user.uid, user.gid
            ))
            .arg("tmpfs")
            .arg(path)
            .output_within(EXTERNAL_TIMEOUT)
            .context("running mount")?;
        if !out.status.success() {
            bail!(
                "mount -t tmpfs on {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    fn free(&self) -> u64 {
        let Ok(c) = CString::new(self.path.as_os_str().as_encoded_bytes()) else {
            return 0;
        };
        // SAFETY: statvfs is plain data; zeroed is a valid value that statvfs overwrites.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid path, `st` a valid out pointer.
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return 0;
        }
        st.f_bavail * st.f_frsize
    }

    /// Fills the file system until `free` bytes are left (4 KiB granularity).
    fn fill_to(&self, free: u64) -> Result<()> {
        self.empty_filler();
        let now = self.free();
        let want = now.saturating_sub(free);
        if want > 0 {
            let f = self.path.join(FILLER);
            let file = fs::File::create(&f)?;
            use std::io::Write;
            let mut w = std::io::BufWriter::new(file);
            let chunk = vec![0u8; 1 << 16];
            let mut left = want;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if w.write_all(&chunk[..n]).is_err() {
                    break;
                }
                left -= n as u64;
            }
            let _ = w.flush();
        }
        Ok(())
    }

    fn empty_filler(&self) {
        let _ = fs::remove_file(self.path.join(FILLER));
    }

    /// Every entry but the filler.
    fn names(&self) -> Vec<String> {
        runner::names(&self.path)
            .into_iter()
            .filter(|n| n != FILLER)
            .collect()
    }

    fn clear(&self) {
        for n in runner::names(&self.path) {
            let p = self.path.join(n);
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        crate::scratch::unmount_below(&self.path);
    }
}

/// Checks a failed call: its status is one of `statuses`, it says what to do, it was not a
/// panic. Returns false when it was a panic (the rest is moot).
fn check_failure(tally: &mut Tally, done: &Done, statuses: &[i32], what: &str, repro: &str) {
    if done.panicked() {
        tally.bad(Bad::Panic, format!("{what}: {}", done.first_error()), repro);
        return;
    }
    if !done.code().is_some_and(|c| statuses.contains(&c)) {
        tally.bad(
            Bad::WrongStatus,
            format!(
                "{what}: {} where {statuses:?} is expected: {}",
                done.status_text(),
                done.first_error()
            ),
            repro,
        );
    }
    if !done.has_hint() {
        tally.bad(
            Bad::NoHint,
            format!("{what}: no HINT: {}", done.first_error()),
            repro,
        );
    }
}

pub fn run(ctx: &Ctx, tally: &mut Tally) -> Result<()> {
    let base = ctx.dir(NAME);
    let out = base.join("out");
    let (cluster, segments) = runner::cluster_with_segments(
        "disk-full",
        ClusterOpts::new().wal_segsize_mb(ctx.pick(4, 16)),
        1,
        3,
    );
    let segments: Vec<String> = segments.into_iter().rev().take(3).collect();
    let data = cluster.data_dir().to_path_buf();
    // Stored sizes per codec, from archives on an ordinary disk (also the restore sources).
    let mut archives = Vec::new();
    for (codec, _) in CODECS {
        let dir = base.join(format!("archive-{codec}"));
        runner::pg_dir(&dir);
        for s in &segments {
            let d = Call::new(ctx, "pitr-archive")
                .cwd(&data)
                .arg("--dst-local")
                .arg(format!("{codec}={}", dir.display()))
                .arg(format!("pg_wal/{s}"))
                .run(&out, Duration::from_secs(120))?;
            anyhow::ensure!(d.ok(), "{}", d.stderr);
        }
        archives.push(dir);
    }
    let mut originals = std::collections::HashMap::new();
    for s in &segments {
        originals.insert(s.clone(), fs::read(data.join("pg_wal").join(s))?);
    }
    let seg_size = originals.values().next().map_or(0, Vec::len) as u64;

    // ---- archive into a full destination.
    let fs_dest = Tmpfs::mount(&base.join("tmpfs-archive"), 48 << 20)?;
    let mut run = 0u64;
    for _ in 0..ctx.pick(8, 30) {
        let this = run;
        run += 1;
        if ctx.only_run.is_some_and(|r| r != this) {
            continue;
        }
        let repro = ctx.repro(NAME, this);
        let mut rng = ctx.rng(NAME, this);
        let codec = rng.index(3);
        let seg = rng.choose(&segments).clone();
        let fresh = rng.chance(0.3);
        let stored = fs::metadata(archives[codec].join(format!("{seg}{}", CODECS[codec].1)))?.len();
        let free = rng.below(stored + stored / 5);
        fs_dest.clear();
        if !fresh {
            fs::copy(
                archives[codec].join(".pitr-cluster"),
                fs_dest.path.join(".pitr-cluster"),
            )?;
            pg_user().chown(&fs_dest.path.join(".pitr-cluster"));
        }
        fs_dest.fill_to(free)?;
        let call = Call::new(ctx, "pitr-archive")
            .cwd(&data)
            .arg("--dst-local")
            .arg(format!("{}={}", CODECS[codec].0, fs_dest.path.display()))
            .arg(format!("pg_wal/{seg}"));
        let what = ctx.show(&format!(
            "{} with {free} bytes free for a {stored}-byte file{}",
            call.line(),
            if fresh { " (new destination)" } else { "" }
        ));
        tally.run();
        tally.fault();
        let done = call.run(&out, Duration::from_secs(120))?;
        let final_path = fs_dest.path.join(format!("{seg}{}", CODECS[codec].1));
        if done.ok() {
            tally.info("archive calls that fit (exit 0)", 1);
            if !runner::decode(&final_path).is_ok_and(|b| b == originals[&seg]) {
                tally.bad(
                    Bad::Lost,
                    format!("{what}: exit 0 but the archive does not hold the segment"),
                    &repro,
                );
            }
        } else {
            check_failure(tally, &done, &[2], &what, &repro);
            if final_path.exists() {
                tally.bad(
                    Bad::Corrupt,
                    format!("{what}: {} exists after the failure", final_path.display()),
                    &repro,
                );
            }
            let left: Vec<String> = fs_dest
                .names()
                .into_iter()
                .filter(|n| n.starts_with('.') && n != ".pitr-cluster")
                .collect();
            if !left.is_empty() {
                tally.bad_n(
                    Bad::LeftBehind,
                    left.len() as u64,
                    format!("{what}: left: {}", left.join(", ")),
                    &repro,
                );
            }
            if fresh
                && fs_dest.path.join(".pitr-cluster").exists()
                && fs::read_to_string(fs_dest.path.join(".pitr-cluster"))
                    .map_or(true, |t| !t.contains("system_identifier = "))
            {
                tally.bad(
                    Bad::Corrupt,
                    format!("{what}: a partial cluster marker"),
                    &repro,
                );
            }
        }
        fs_dest.empty_filler();
        let retry = call.run(&out, Duration::from_secs(120))?;
        if !retry.ok() || !runner::decode(&final_path).is_ok_and(|b| b == originals[&seg]) {
            tally.bad(
                Bad::NotRecovered,
                format!(
                    "{what}; once space returned the retry gave {}: {}",
                    retry.status_text(),
                    retry.first_error()
                ),
                &repro,
            );
        }
    }
    drop(fs_dest);

    // ---- restore into a full pg_wal.
    let rdata = base.join("restore-data");
    runner::pg_dir(&rdata);
    runner::pg_dir(&rdata.join("global"));
    runner::copy_as_pg(&data.join("PG_VERSION"), &rdata.join("PG_VERSION"))?;
    runner::copy_as_pg(
        &data.join("global/pg_control"),
        &rdata.join("global/pg_control"),
    )?;
    let pg_wal = Tmpfs::mount(&rdata.join("pg_wal"), 40 << 20)?;
    for _ in 0..ctx.pick(8, 30) {
        let this = run;
        run += 1;
        if ctx.only_run.is_some_and(|r| r != this) {
            continue;
        }
        let repro = ctx.repro(NAME, this);
        let mut rng = ctx.rng(NAME, this);
        let codec = rng.index(3);
        let seg = rng.choose(&segments).clone();
        let prefetch = if rng.chance(0.5) { 0 } else { 4 };
        let free = rng.below(seg_size + seg_size / 10);
        pg_wal.clear();
        pg_wal.fill_to(free)?;
        let call = Call::new(ctx, "pitr-restore")
            .cwd(&rdata)
            .arg("--source")
            .arg(format!("{}={}", CODECS[codec].0, archives[codec].display()))
            .args(["--poll-interval", "0.2", "--prefetch"])
            .arg(prefetch.to_string())
            .arg(&seg)
            .arg("pg_wal/RECOVERYXLOG");
        let what = ctx.show(&format!("{} with {free} bytes free in pg_wal", call.line()));
        tally.run();
        tally.fault();
        let done = call.run(&out, Duration::from_secs(8))?;
        wait_workers(&rdata);
        let xlog = rdata.join("pg_wal/RECOVERYXLOG");
        if done.ok() {
            tally.info("restore calls that fit (exit 0)", 1);
            if !fs::read(&xlog).is_ok_and(|b| b == originals[&seg]) {
                tally.bad(
                    Bad::Corrupt,
                    format!("{what}: exit 0 but %p does not hold the segment"),
                    &repro,
                );
            }
        } else if done.timed_out {
            tally.info("restore calls that kept waiting on a full pg_wal", 1);
        } else {
            check_failure(tally, &done, &[126], &what, &repro);
            if xlog.exists() {
                tally.bad(
                    Bad::Corrupt,
                    format!("{what}: %p exists after the failure"),
                    &repro,
                );
            }
        }
        let left: Vec<String> = pg_wal
            .names()
            .into_iter()
            .filter(|n| n.contains(".pitr-tmp."))
            .collect();
        if !left.is_empty() && !done.timed_out {
            tally.bad_n(
                Bad::LeftBehind,
                left.len() as u64,
                format!("{what}: left in pg_wal: {}", left.join(", ")),
                &repro,
            );
        }
        let spool = rdata.join("pg_wal/.pitr-prefetch");
        for n in runner::names(&spool) {
            if n.contains(".pitr-tmp.") {
                tally.bad(
                    Bad::LeftBehind,
                    format!("{what}: prefetch temp file left: {n}"),
                    &repro,
                );
            } else if runner::is_segment_name(&n) {
                let good = originals
                    .get(&n)
                    .is_none_or(|o| fs::read(spool.join(&n)).is_ok_and(|b| &b == o));
                if !good {
                    tally.bad(
                        Bad::Corrupt,
                        format!("{what}: spooled {n} is not the segment"),
                        &repro,
                    );
                }
            }
        }
        pg_wal.empty_filler();
        let _ = fs::remove_file(&xlog);
        let retry = call.run(&out, Duration::from_secs(60))?;
        wait_workers(&rdata);
        if !retry.ok() || !fs::read(&xlog).is_ok_and(|b| b == originals[&seg]) {
            tally.bad(
                Bad::NotRecovered,
                format!(
                    "{what}; once space returned: {}: {}",
                    retry.status_text(),
                    retry.first_error()
                ),
                &repro,
            );
        }
    }
    drop(pg_wal);
    drop(cluster);

    // ---- backup into a full destination.
    backup_full(ctx, tally, &mut run, &base, &out)?;
    Ok(())
}

fn wait_workers(data: &Path) {
    let d = data.display().to_string();
    let _ = pitr_tests::poll_until(Duration::from_secs(60), || {
        runner::pids_matching(&["--prefetch-worker"])
            .into_iter()
            .find(|p| {
                fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c.display().to_string() == d)
            })
            .is_none()
            .then_some(())
    });
}

fn backup_full(ctx: &Ctx, tally: &mut Tally, run: &mut u64, base: &Path, out: &Path) -> Result<()> {
    let xlogs = base.join("xlogs");
    let trigger = base.join("pause.trigger");
    let backup_archive = base.join("backup-archive");
    runner::pg_dir(&backup_archive);
    let cluster = Cluster::init(
        "disk-full-backup",
        ClusterOpts::new()
            .wal_segsize_mb(1)
            .set("archive_mode", "on")
            .set(
                "archive_command",
                &format!(
                    "{} --dst-local zstd={} --dst-backup {} %p",
                    ctx.bin("pitr-archive").display(),
                    backup_archive.display(),
                    xlogs.display()
                ),
            ),
    );
    cluster.start();
    cluster.pgbench_init(1);
    let dest = Tmpfs::mount(&base.join("tmpfs-backup"), 64 << 20)?;
    let call = |label: &str| {
        Call::new(ctx, "pitr-backup")
            .arg("--data-dir")
            .arg(cluster.data_dir())
            .arg("--host")
            .arg(cluster.socket_dir())
            .arg("--port")
            .arg(cluster.port().to_string())
            .args(["--username", "postgres", "--fast-checkpoint"])
            .arg("--dst-local")
            .arg(format!("zstd={}", dest.path.display()))
            .arg("--xlogs")
            .arg(&xlogs)
            .arg("--removal-pause-trigger")
            .arg(&trigger)
            .args(["--wal-timeout", "60", "--filename-template"])
            .arg(format!("__HOSTNAME__-__FILETYPE__-{label}.tar__CEXT__"))
    };
    let first = call("size").run(out, Duration::from_secs(300))?;
    anyhow::ensure!(first.ok(), "sizing backup: {}", first.stderr);
    let total: u64 = dest
        .names()
        .iter()
        .filter_map(|n| fs::metadata(dest.path.join(n)).ok())
        .map(|m| m.len())
        .sum();
    tally.note(format!("a backup set takes {total} bytes"));
    tally.note(ctx.show(&format!("backup command line: {}", call("LABEL").line())));
    for _ in 0..ctx.pick(3, 12) {
        let this = *run;
        *run += 1;
        if ctx.only_run.is_some_and(|r| r != this) {
            continue;
        }
        let repro = ctx.repro(NAME, this);
        let mut rng = ctx.rng(NAME, this);
        let free = rng.below(total);
        dest.clear();
        dest.fill_to(free)?;
        let c = call(&format!("r{this}"));
        let what = ctx.show(&format!(
            "{} with {free} bytes free for a {total}-byte set",
            c.line()
        ));
        tally.run();
        tally.fault();
        let done = c.run(out, Duration::from_secs(300))?;
        if done.ok() {
            tally.info("backups that fit (exit 0)", 1);
        } else {
            check_failure(tally, &done, &[2], &what, &repro);
            let left = dest.names();
            if !left.is_empty() {
                tally.bad_n(
                    Bad::LeftBehind,
                    left.len() as u64,
                    format!("{what}: left in the destination: {}", left.join(", ")),
                    &repro,
                );
            }
            for (p, label) in [(&xlogs, "--xlogs"), (&trigger, "the pause trigger")] {
                if p.exists() {
                    tally.bad(Bad::LeftBehind, format!("{what}: {label} left"), &repro);
                }
            }
        }
        dest.clear();
        let _ = fs::remove_dir_all(&xlogs);
        let _ = fs::remove_file(&trigger);
        let again = call(&format!("r{this}-again")).run(out, Duration::from_secs(300))?;
        let meta = dest.names().iter().any(|n| n.contains("-meta-"));
        if !again.ok() || !meta {
            tally.bad(
                Bad::NotRecovered,
                format!(
                    "{what}; once space returned: {}: {}",
                    again.status_text(),
                    again.first_error()
                ),
                &repro,
            );
        }
    }
    drop(dest);
    Ok(())
}

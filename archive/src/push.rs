//! Delivering one WAL file to every destination.
//!
//! The file is read once into memory and checked (name, size and WAL page header, database
//! system against pg_control). It is delivered to the destinations still missing it, up to
//! `--parallel-jobs` at a time, and compressed at most once per codec, only when a destination
//! needs the bytes. One failing destination does not stop the others; the run succeeds only
//! when every destination durably holds the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use anyhow::Context;
use pitr_common::compress::Codec;
use pitr_common::dest::{self, Payload, PutOptions, PutOutcome};
use pitr_common::exit::{self, Failure};
use pitr_common::pidfile::PidFile;
use pitr_common::state::DeliveryState;
use pitr_common::walpage::LongPageHeader;
use pitr_common::{controldata, fs, log_error, log_info, log_verbose, log_warning, pg};

use crate::args::{Config, Destination};

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log_warning!("cannot remove scratch directory {}: {e}", self.0.display());
            }
        }
    }
}

/// The database system the WAL file must belong to, from pg_control, when the data directory
/// has one.
fn cluster_system_identifier(data_dir: &Path) -> anyhow::Result<Option<u64>> {
    if !data_dir.join(pg::PG_CONTROL).is_file() {
        return Ok(None);
    }
    let cd = controldata::read(data_dir, None)
        .with_context(|| format!("reading pg_control of {}", data_dir.display()))?;
    Ok(Some(cd.system_identifier))
}

/// Reads (maps) and checks the WAL file; returns its bytes, mtime and database system (when
/// known).
fn read_wal(cfg: &Config) -> anyhow::Result<(fs::FileBytes, std::time::SystemTime, Option<u64>)> {
    let name = cfg.wal_name.to_string();
    let meta = std::fs::metadata(&cfg.wal_path)
        .map_err(|e| anyhow::Error::from(fs::IoError::new("reading WAL file", &cfg.wal_path, e)))?;
    if !meta.is_file() {
        return Err(Failure::new(format!(
            "WAL file {} is not a regular file",
            cfg.wal_path.display()
        ))
        .into());
    }
    let bytes = fs::map_or_read(&cfg.wal_path)?;
    let mtime = meta
        .modified()
        .map_err(|e| fs::IoError::new("reading the mtime of", &cfg.wal_path, e))?;
    let cluster = cluster_system_identifier(&cfg.data_dir)?;
    if !cfg.wal_name.has_wal_pages() {
        return Ok((bytes, mtime, cluster));
    }
    let bad_header = |e: pitr_common::walpage::Error| -> anyhow::Error {
        Failure::new(format!("refusing {}: {e}", cfg.wal_path.display()))
            .hint("this is not a complete WAL segment of this name; do not archive it by hand")
            .into()
    };
    let len = bytes.len() as u64;
    if pitr_common::wal::check_segment_size(len).is_err() {
        return Err(Failure::new(format!(
            "refusing {}: {name} is {len} bytes, which is not a WAL segment size",
            cfg.wal_path.display()
        ))
        .hint("a WAL segment is a power of two from 1 MiB to 1 GiB long; this file is damaged or not WAL")
        .into());
    }
    let header = LongPageHeader::parse(&name, &bytes).map_err(bad_header)?;
    header
        .check(&cfg.wal_name, bytes.len() as u64, cluster)
        .map_err(|e| match e {
            pitr_common::walpage::Error::ForeignSystem { found, expected, .. } => Failure::new(
                format!(
                    "{name} is from database system {found} but the cluster in {} is database system {expected}",
                    cfg.data_dir.display()
                ),
            )
            .hint("archive_command must archive only this cluster's own WAL")
            .into(),
            other => bad_header(other),
        })?;
    Ok((bytes, mtime, Some(header.system_identifier)))
}

/// Threads for compressing one segment: every core. PostgreSQL archives one segment at a
/// time, so the other cores are otherwise idle while the archiver waits for us.
fn compress_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs one archive call.
pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let _pid_file = match &cfg.pid_file {
        Some(p) => Some(
            PidFile::acquire(p, "pitr-archive")
                .map_err(|e| anyhow::Error::from(Failure::new(e.to_string()).status(exit::BUSY)))?,
        ),
        None => None,
    };
    let name = cfg.wal_name.to_string();
    let (plain, mtime, sysid) = read_wal(cfg)?;

    let mut state = match &cfg.state_dir {
        Some(dir) => Some(DeliveryState::load(dir, &name)?),
        None => None,
    };
    let pending: Vec<&Destination> = cfg
        .destinations
        .iter()
        .filter(|d| {
            if d.backup {
                // A --dst-backup directory left by a pitr-backup killed with -9 stays until the
                // next backup removes it; nobody will read what we would add.
                if let Some(pid) =
                    pitr_common::backupset::xlogs_owner_gone(Path::new(&d.location.target))
                {
                    log_warning!(
                        "not sending {name} to --dst-backup {}: the pitr-backup that created it (pid {pid}) is gone",
                        d.location.target
                    );
                    log_warning!("HINT: the next pitr-backup removes the directory; remove it by hand if no backup is planned");
                    return false;
                }
            }
            let done = state
                .as_ref()
                .is_some_and(|s| s.is_delivered(&d.location.key()));
            if done {
                log_info!(
                    "{name} already sent to {} according to the state dir; skipping",
                    d.location
                );
            }
            !done
        })
        .collect();

    // Compress once per codec, on demand: the first delivery that needs a codec's bytes
    // computes them, deliveries with other codecs run (and compress) in parallel, and a
    // destination that already holds the file costs no compression at all.
    let mut codecs: Vec<Codec> = pending.iter().map(|d| d.location.codec).collect();
    codecs.sort_by_key(|c| c.to_string());
    codecs.dedup();
    let compressed: HashMap<Codec, OnceLock<Result<Vec<u8>, String>>> =
        codecs.iter().map(|c| (*c, OnceLock::new())).collect();
    let compressed_for = |c: Codec| -> anyhow::Result<&[u8]> {
        if c == Codec::None {
            return Ok(&plain);
        }
        let cell = compressed
            .get(&c)
            .ok_or_else(|| anyhow::anyhow!("no compression slot for {c}"))?;
        let r = cell.get_or_init(|| {
            let t = Instant::now();
            let r = c
                .compress_parallel(&plain, compress_threads())
                .map_err(|e| e.to_string());
            log_verbose!(
                "Timer [Compressing {name} with {c}] took: {:.3}s",
                t.elapsed().as_secs_f64()
            );
            r
        });
        match r {
            Ok(v) => Ok(v.as_slice()),
            Err(e) => Err(anyhow::anyhow!("compressing {name} with {c}: {e}")),
        }
    };

    let scratch = if pending
        .iter()
        .any(|d| d.location.kind == pitr_common::location::Kind::Remote)
    {
        let dir = cfg
            .temp_dir
            .join("pitr-archive")
            .join(std::process::id().to_string());
        std::fs::create_dir_all(&dir)
            .map_err(|e| fs::IoError::new("creating scratch directory", &dir, e))?;
        Some(Scratch(dir))
    } else {
        None
    };
    let opts = PutOptions {
        rsync_path: cfg.rsync_path.clone(),
        scratch_dir: scratch
            .as_ref()
            .map(|s| s.0.clone())
            .unwrap_or_else(|| cfg.temp_dir.clone()),
        write_delay: cfg.write_delay,
    };

    // Deliver, up to parallel_jobs at a time. Each remote destination stages its files (the
    // cluster marker, the WAL file, an existing copy to compare) in a scratch subdirectory of
    // its own: the names are fixed, and two rsync destinations run in parallel.
    let queue = Mutex::new(pending.iter().copied().enumerate());
    let results: Mutex<Vec<(&Destination, anyhow::Result<PutOutcome>)>> = Mutex::new(Vec::new());
    let workers = cfg.parallel_jobs.min(pending.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some((index, d)) = next else { break };
                let t = Instant::now();
                let (opts, staged) = match scratch.as_ref() {
                    Some(dir) if d.location.kind == pitr_common::location::Kind::Remote => {
                        let sub = dir.0.join(index.to_string());
                        let made = std::fs::create_dir_all(&sub).map_err(|e| {
                            anyhow::Error::from(fs::IoError::new(
                                "creating scratch directory",
                                &sub,
                                e,
                            ))
                        });
                        let own = PutOptions {
                            scratch_dir: sub,
                            ..opts.clone()
                        };
                        (own, made)
                    }
                    _ => (opts.clone(), Ok(())),
                };
                let codec = d.location.codec;
                let stored = || compressed_for(codec);
                let payload = Payload {
                    wal_name: &name,
                    plain: &plain,
                    stored: &stored,
                    mtime: Some(mtime),
                };
                let r = staged
                    .and_then(|()| match sysid {
                        Some(id) => dest::check_cluster(&d.location, &name, id, &opts),
                        None => Ok(()),
                    })
                    .and_then(|()| dest::put(&d.location, &payload, &opts));
                log_verbose!(
                    "Sending {} to {} ended in {:.6}s",
                    cfg.wal_arg,
                    d.location,
                    t.elapsed().as_secs_f64()
                );
                if let Ok(mut r2) = results.lock() {
                    r2.push((d, r));
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a delivery thread panicked"))?;

    let mut failed = 0usize;
    for (d, r) in results {
        match r {
            Ok(PutOutcome::Stored) => {
                if let Some(s) = state.as_mut() {
                    s.mark_delivered(d.location.key());
                }
            }
            Ok(PutOutcome::AlreadyIdentical) => {
                log_warning!(
                    "{name} is already archived in {} with identical content; not sent again",
                    d.location
                );
                if let Some(s) = state.as_mut() {
                    s.mark_delivered(d.location.key());
                }
            }
            Err(e) => {
                failed += 1;
                let what = if d.backup { " (backup collection)" } else { "" };
                log_error!("cannot send {name} to {}{what}: {e:#}", d.location);
                if let Some(h) = pitr_common::exit::find_failure(&e).and_then(Failure::hint_text) {
                    log_error!("HINT: {h}");
                }
            }
        }
    }
    drop(scratch);

    if failed > 0 {
        if let Some(s) = &state {
            s.save()
                .context("saving the delivery state (the next retry resends everything)")?;
        }
        return Err(Failure::new(format!(
            "{} was not archived to {failed} of {} destinations",
            cfg.wal_arg,
            cfg.destinations.len()
        ))
        .hint("PostgreSQL calls archive_command again; fix the destination named above")
        .into());
    }
    if let Some(s) = &state {
        s.remove()?;
    }
    log_verbose!(
        "Timer [Segment delivery] took: {:.3}s",
        started.elapsed().as_secs_f64()
    );
    log_info!(
        "Segment {} successfully sent to all destinations.",
        cfg.wal_arg
    );
    Ok(ExitCode::SUCCESS)
}

//! Delivering one WAL file to every destination, in the steps of ARCHITECTURE.md's
//! "pitr-archive": map and check the file, pick the destinations still missing it, compress
//! once per codec on demand, deliver up to `--parallel-jobs` at a time, record the outcome.
//! One failing destination does not stop the others; the run succeeds only when every
//! destination durably holds the file.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use anyhow::Context;
use pitr_common::compress::Codec;
use pitr_common::dest::{self, Payload, PutOptions, PutOutcome};
use pitr_common::exit::Failure;
use pitr_common::location::Target;
use pitr_common::state::DeliveryState;
use pitr_common::tempname::ScratchDir;
use pitr_common::{
    controldata, fs, log_error, log_hint, log_info, log_verbose, log_warning, walpage,
};

use crate::args::{Config, Destination};

/// The WAL file of this call, mapped and checked.
struct WalFile {
    bytes: fs::FileBytes,
    mtime: SystemTime,
    /// The database system it belongs to, when known (segments, or a data directory with
    /// pg_control).
    sysid: Option<u64>,
}

/// The database system the WAL file must belong to, from pg_control: a data directory without
/// one is the wrong directory, and WAL is never archived unchecked.
fn cluster_system_identifier(data_dir: &Path) -> anyhow::Result<Option<u64>> {
    let cd = controldata::read(data_dir, None).map_err(|e| {
        anyhow::Error::from(e).context(
            Failure::new(format!("cannot read pg_control of {}", data_dir.display())).hint(
                "run pitr-archive as archive_command (the data directory is its working directory) or give --data-dir",
            ),
        )
    })?;
    Ok(Some(cd.system_identifier))
}

/// Step 2: maps the WAL file and checks it: name, size and page header, database system
/// against pg_control.
fn read_wal(cfg: &Config) -> anyhow::Result<WalFile> {
    let meta = std::fs::metadata(&cfg.wal_path).map_err(|e| {
        anyhow::Error::from(fs::IoError::new("reading WAL file", &cfg.wal_path, e)).context(
            Failure::new(format!("cannot read WAL file {}", cfg.wal_arg)).hint(
                "archive_command gets %p relative to the data directory: run it from there or give --data-dir",
            ),
        )
    })?;
    if !meta.is_file() {
        return Err(Failure::new(format!(
            "WAL file {} is not a regular file",
            cfg.wal_path.display()
        ))
        .hint("pass PostgreSQL's %p")
        .into());
    }
    let bytes = fs::map_or_read(&cfg.wal_path).map_err(|e| {
        anyhow::Error::from(e).context(
            Failure::new(format!("cannot read WAL file {}", cfg.wal_path.display())).hint(
                "archive_command runs as the PostgreSQL user: the WAL file must be readable by it",
            ),
        )
    })?;
    let mtime = meta
        .modified()
        .map_err(|e| fs::IoError::new("reading the mtime of", &cfg.wal_path, e))?;
    let cluster = cluster_system_identifier(&cfg.data_dir)?;
    let header = walpage::verify(&cfg.wal_name, &bytes, bytes.len() as u64, cluster)
        .map_err(|e| refusal(cfg, e))?;
    Ok(WalFile {
        bytes,
        mtime,
        sysid: header.map(|h| h.system_identifier).or(cluster),
    })
}

fn refusal(cfg: &Config, e: walpage::Error) -> anyhow::Error {
    match e {
        walpage::Error::ForeignSystem { name, found, expected } => Failure::new(format!(
            "{name} is from database system {found} but the cluster in {} is database system {expected}",
            cfg.data_dir.display()
        ))
        .hint("archive_command must archive only this cluster's own WAL")
        .into(),
        other => Failure::new(format!("refusing {}: {other}", cfg.wal_path.display()))
            .hint("this is not a complete WAL segment of this name; do not archive it by hand")
            .into(),
    }
}

/// Step 3: the destinations still missing the file: not recorded in the state dir, and not a
/// `--dst-backup` directory whose pitr-backup is gone.
fn pending<'a>(cfg: &'a Config, state: Option<&DeliveryState>) -> Vec<&'a Destination> {
    let name = cfg.wal_name;
    cfg.destinations
        .iter()
        .filter(|d| {
            if let (true, Target::Dir(dir)) = (d.backup, &d.location.target) {
                // A --dst-backup directory left by a pitr-backup killed with -9 stays until the
                // next backup removes it; nobody will read what we would add.
                if let Some(pid) = pitr_common::backupset::xlogs_owner_gone(dir) {
                    log_warning!(
                        "not sending {name} to --dst-backup {}: the pitr-backup that created it (pid {pid}) is gone",
                        dir.display()
                    );
                    log_hint!("the next pitr-backup removes the directory; remove it by hand if no backup is planned");
                    return false;
                }
            }
            let done = state.is_some_and(|s| s.is_delivered(&d.location.key()));
            if done {
                log_info!(
                    "{name} already sent to {} according to the state dir; skipping",
                    d.location
                );
            }
            !done
        })
        .collect()
}

/// The file compressed once per codec, on demand: the first delivery that needs a codec's bytes
/// computes them on every core, deliveries with other codecs run (and compress) in parallel,
/// and a destination that already holds the file costs no compression at all.
struct Compressed<'a> {
    plain: &'a [u8],
    name: String,
    cells: HashMap<Codec, OnceLock<Result<Vec<u8>, String>>>,
}

impl<'a> Compressed<'a> {
    fn new(plain: &'a [u8], name: String, destinations: &[&Destination]) -> Self {
        let cells = destinations
            .iter()
            .map(|d| (d.location.codec, OnceLock::new()))
            .collect();
        Compressed { plain, name, cells }
    }

    fn get(&self, c: Codec) -> anyhow::Result<&[u8]> {
        if c == Codec::None {
            return Ok(self.plain);
        }
        let cell = self
            .cells
            .get(&c)
            .ok_or_else(|| anyhow::anyhow!("no compression slot for {c}"))?;
        let r = cell.get_or_init(|| {
            let t = Instant::now();
            // Every core: PostgreSQL archives one segment at a time, so the other cores are
            // otherwise idle while the archiver waits for us.
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let r = c
                .compress_parallel(self.plain, threads)
                .map_err(|e| e.to_string());
            log_verbose!(
                "Timer [Compressing {} with {c}] took: {:.3}s",
                self.name,
                t.elapsed().as_secs_f64()
            );
            r
        });
        match r {
            Ok(v) => Ok(v.as_slice()),
            Err(e) => Err(anyhow::anyhow!("compressing {} with {c}: {e}", self.name)),
        }
    }
}

/// One destination's outcome.
type Outcome<'a> = (&'a Destination, anyhow::Result<PutOutcome>);

/// Step 4: delivers to `pending`, up to `--parallel-jobs` at a time. Each rsync destination
/// stages its files (the cluster marker, the WAL file, an existing copy to compare) in a
/// subdirectory of a private scratch directory; a scratch directory that cannot be made fails
/// only the destinations that need one.
fn deliver_all<'a>(
    cfg: &Config,
    pending: &[&'a Destination],
    wal: &WalFile,
    compressed: &Compressed<'_>,
) -> Vec<Outcome<'a>> {
    let needs_scratch = |d: &Destination| matches!(d.location.target, Target::Rsync(_));
    let scratch = pending
        .iter()
        .any(|d| needs_scratch(d))
        .then(|| ScratchDir::create(&cfg.temp_dir, "pitr-archive"));
    let name = cfg.wal_name.to_string();
    let queue = Mutex::new(pending.iter().copied().enumerate());
    let results: Mutex<Vec<Outcome<'a>>> = Mutex::new(Vec::new());
    let workers = cfg.parallel_jobs.min(pending.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some((index, d)) = next else { break };
                let t = Instant::now();
                let scratch_dir = match (&scratch, needs_scratch(d)) {
                    (Some(Ok(dir)), true) => dir.subdir(&index.to_string()).map_err(Into::into),
                    (Some(Err(e)), true) => Err(anyhow::anyhow!("{e:#}")),
                    _ => Ok(cfg.temp_dir.clone()),
                };
                let codec = d.location.codec;
                let stored = || compressed.get(codec);
                let payload = Payload {
                    wal_name: &name,
                    plain: &wal.bytes,
                    stored: &stored,
                    mtime: Some(wal.mtime),
                };
                let r = scratch_dir.and_then(|scratch_dir| {
                    let opts = PutOptions {
                        rsync: cfg.rsync.clone(),
                        scratch_dir,
                        write_delay: cfg.write_delay,
                        s3: cfg.s3.clone(),
                    };
                    dest::deliver(&d.location, &payload, wal.sysid, &opts)
                });
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
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Step 5: logs each outcome and records the successful ones in the state; returns how many
/// destinations failed.
fn record(cfg: &Config, results: Vec<Outcome<'_>>, state: &mut Option<DeliveryState>) -> usize {
    let name = cfg.wal_name;
    let mut failed = 0usize;
    for (d, r) in results {
        match r {
            Ok(outcome) => {
                if outcome == PutOutcome::AlreadyIdentical {
                    log_warning!(
                        "{name} is already archived in {} with identical content; not sent again",
                        d.location
                    );
                }
                if let Some(s) = state.as_mut() {
                    s.mark_delivered(d.location.key());
                }
            }
            // pitr-backup removed its collection directory while we wrote into it: the backup
            // is over and needs nothing more (ARCHITECTURE.md: a vanished --dst-backup is
            // simply not used).
            Err(_) if d.backup && d.location.as_dir().is_some_and(|p| !p.exists()) => {
                log_info!(
                    "--dst-backup {} was removed by its pitr-backup while {name} was being sent; not needed any more",
                    d.location
                );
            }
            Err(e) => {
                failed += 1;
                let what = if d.backup { " (backup collection)" } else { "" };
                log_error!("cannot send {name} to {}{what}: {e:#}", d.location);
                if let Some(h) = pitr_common::exit::find_failure(&e).and_then(Failure::hint_text) {
                    log_hint!("{h}");
                }
            }
        }
    }
    failed
}

/// Runs one archive call.
pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let wal = read_wal(cfg)?;
    let mut state = match &cfg.state_dir {
        Some(dir) => Some(DeliveryState::load(dir, &cfg.wal_name.to_string())?),
        None => None,
    };
    let pending = pending(cfg, state.as_ref());
    let compressed = Compressed::new(&wal.bytes, cfg.wal_name.to_string(), &pending);
    let results = deliver_all(cfg, &pending, &wal, &compressed);
    let failed = record(cfg, results, &mut state);
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

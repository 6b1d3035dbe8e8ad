//! The archive-ahead worker: after a call that delivered its segment, a background process
//! (this binary again, with `--ahead-worker`, in a session of its own) goes on delivering the
//! segments PostgreSQL has marked ready after the newest one recorded, batch after batch, and
//! records each one as a call ahead does. PostgreSQL's calls for them are then answered from
//! the records while the worker delivers the next batch: the round trips of batch k+1 overlap
//! the answers of batch k, and the worker compresses batch k+1 while batch k is on the wire.
//!
//! One worker per state dir (a lock). It writes where it stands into the state dir (its status
//! file: every segment after `after` that is ready is its business), so that a call for a
//! segment the worker is about to deliver waits for its record instead of sending the same
//! segment beside it, and a call for one the worker has passed without a record (a failed
//! delivery) does its own delivery at once. It ends when nothing after its position is ready,
//! at the first segment it cannot read or check (that segment's own call decides), and at the
//! first delivery that fails (the failing segment's call reports it, with its exit status).
//! ARCHITECTURE.md "Archive-ahead" gives the crash analysis: the records are the same records.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pitr_common::compress::Codec;
use pitr_common::fs::{self, Replace};
use pitr_common::location::Target;
use pitr_common::objstore::Settings;
use pitr_common::process::Program;
use pitr_common::state::{self, DeliveryState};
use pitr_common::wal::{WalFileName, WalKind};
use pitr_common::{lock, log_info, log_verbose, log_warning};

use crate::args::Config;
use crate::push::{self, Compressed, Item};

/// The worker's lock in the state dir: held while a worker runs.
pub const LOCK_FILE: &str = ".ahead-worker.lock";

/// The worker's status in the state dir: `after NAME`, the segment after which every ready
/// segment is the worker's to deliver.
pub const STATUS_FILE: &str = ".ahead-worker";

/// The environment variable through which a call hands the worker it starts the worker's lock,
/// already held (the number of the open lock file): a call that comes right after sees the
/// worker running even before the worker's process has started.
const LOCK_FD_ENV: &str = "PITR_ARCHIVE_AHEAD_WORKER_LOCK_FD";

/// How long a call waits for the worker to record its segment before delivering it itself (a
/// worker stuck on a destination that does not answer must not hold PostgreSQL's archiving).
const WAIT_LIMIT: Duration = Duration::from_secs(120);

/// How often a waiting call looks again.
const WAIT_POLL: Duration = Duration::from_millis(2);

/// Whether a worker holds the state dir's lock now.
fn running(dir: &Path) -> bool {
    let path = dir.join(LOCK_FILE);
    path.exists() && matches!(lock::try_lock(&path), Ok(None))
}

/// The position of the worker that runs now, if one does: a call's own batch stops there (the
/// segments after it are the worker's, and a call sending one beside it would leave the
/// worker's record of it behind once its call had been answered).
pub fn running_position(dir: &Path) -> Option<WalFileName> {
    if running(dir) {
        read_status(dir)
    } else {
        None
    }
}

/// The worker's position: every ready segment after it is the worker's to deliver.
fn read_status(dir: &Path) -> Option<WalFileName> {
    let text = std::fs::read_to_string(dir.join(STATUS_FILE)).ok()?;
    parse_status(&text)
}

fn parse_status(text: &str) -> Option<WalFileName> {
    let name = text.strip_prefix("after ")?.trim_end();
    WalFileName::parse(name).ok()
}

/// Writes the worker's position durably.
fn write_status(dir: &Path, after: &WalFileName) -> anyhow::Result<()> {
    let path = dir.join(STATUS_FILE);
    fs::write_durable(&path, Replace::Allow, None, |f| {
        Ok(fs::write_all(
            f,
            &path,
            format!("after {after}\n").as_bytes(),
        )?)
    })
}

/// Where a worker starts: after `floor` (the asked segment, or the position just before it
/// when the call hands its own segment over), or after the newest segment recorded ahead (those
/// up to it are recorded, or were archived since), or after `batch`, the last segment of the
/// batch that the starting call is delivering itself.
fn frontier(
    dir: &Path,
    floor: &WalFileName,
    batch: Option<WalFileName>,
) -> anyhow::Result<WalFileName> {
    let recorded = state::newest_ahead_record(dir)?;
    Ok([recorded, batch]
        .into_iter()
        .flatten()
        .fold(*floor, |a, b| a.max(b)))
}

/// Waits while a live worker is about to record `name` (at most [`WAIT_LIMIT`]); returns whether
/// a record of it exists now. Returns at once when no worker runs, or the worker's position is
/// at or past `name` (it will not deliver it: the call does).
pub fn wait_for(dir: &Path, name: &WalFileName) -> bool {
    if name.kind != WalKind::Segment {
        return false;
    }
    let record = DeliveryState::path_for(dir, &name.to_string());
    let start = Instant::now();
    loop {
        if record.exists() {
            break;
        }
        if !running(dir) {
            break;
        }
        if read_status(dir).is_some_and(|after| after >= *name) {
            break;
        }
        if start.elapsed() > WAIT_LIMIT {
            log_warning!(
                "the archive-ahead worker has not recorded {name} after {}s; delivering it here",
                WAIT_LIMIT.as_secs()
            );
            break;
        }
        std::thread::sleep(WAIT_POLL);
    }
    let found = record.exists();
    if start.elapsed() > WAIT_POLL {
        log_verbose!(
            "waited {:.3}s for the archive-ahead worker ({})",
            start.elapsed().as_secs_f64(),
            if found {
                "it recorded the segment"
            } else {
                "no record"
            }
        );
    }
    found
}

/// Starts the worker after a successful call, unless one runs or nothing after the newest
/// record is ready. Failing to start it costs speed, not correctness: it is logged and ignored.
pub fn start_if_needed(cfg: &Config) {
    start(
        cfg,
        Place::After {
            floor: cfg.wal_name,
            batch: None,
        },
    );
}

/// Hands the asked segment itself, with the backlog after it, to a worker started here: a call
/// that finds segments ready after its own delivers nothing itself and waits for the worker's
/// record of its segment (the caller's [`wait_for`]), so that every segment of a backlog goes
/// through the worker's pipeline (batch k+1 compressed while batch k is on the wire) and
/// PostgreSQL's next calls, answered from records, run beside it instead of after a long first
/// call. Returns whether a worker was started from the asked segment; when not (a worker runs,
/// no backlog, no state dir, not a segment), the call goes on as before.
pub fn hand_over(cfg: &Config) -> bool {
    if cfg.state_dir.is_none() || cfg.archive_ahead.is_off() {
        return false;
    }
    let Some(floor) = cfg.wal_name.position_before() else {
        return false;
    };
    // One segment alone goes straight out: a worker would cost a process and a wait.
    if crate::ahead::next_ready(
        &cfg.data_dir,
        &cfg.wal_name,
        crate::ahead::AheadLimit::Segments(1),
    )
    .is_empty()
    {
        return false;
    }
    start(cfg, Place::Exactly(floor))
}

/// Starts the worker at the start of a call's delivery of its batch, ending with `last`, for
/// the ready segments after it: the worker compresses its first batch while the call's is on
/// the wire, instead of after the call. Only a call's first attempt does this (a retry, which
/// follows a failure, starts the worker when it has succeeded).
pub fn start_after_batch(cfg: &Config, last: &WalFileName) {
    start(
        cfg,
        Place::After {
            floor: cfg.wal_name,
            batch: Some(*last),
        },
    );
}

/// Where a starting call puts the worker.
#[derive(Debug, Clone, Copy)]
enum Place {
    /// After `floor`, or after `batch` (the call's own batch), or after the newest record,
    /// whichever is last.
    After {
        floor: WalFileName,
        batch: Option<WalFileName>,
    },
    /// Right after this position and nowhere else: a call handing its own segment over. When a
    /// record newer than the position exists, no worker: the call delivers its segment and
    /// batch itself, and a worker past its segment would send the same segments beside it
    /// (found by `cargo xtask faults`: a call for a segment archived before, with records left
    /// after it, handed over to a worker that started after those records while the call took
    /// the next segment along itself; the worker's record of it came after that segment's call
    /// had been answered, and stayed).
    Exactly(WalFileName),
}

/// Starts a worker at `place`; returns whether one was started.
fn start(cfg: &Config, place: Place) -> bool {
    let Some(dir) = cfg.state_dir.as_deref() else {
        return false;
    };
    if cfg.archive_ahead.is_off() || cfg.wal_name.kind != WalKind::Segment {
        return false;
    }
    let Some(guard) = claim(dir, &cfg.data_dir, place) else {
        return false;
    };
    let spawned = std::env::current_exe()
        .map_err(|e| format!("cannot find our own binary: {e}"))
        .and_then(|exe| {
            let mut cmd = Program::new(exe);
            cmd.args(std::env::args_os().skip(1));
            cmd.arg("--ahead-worker");
            cmd.env(LOCK_FD_ENV, guard.as_fd().as_raw_fd().to_string());
            cmd.inherit_fd(guard.as_fd());
            cmd.spawn_detached().map_err(|e| e.to_string())
        });
    let started = match spawned {
        Ok(_) => true,
        Err(e) => {
            log_warning!("cannot start the archive-ahead worker: {e}");
            if let Err(e) = fs::remove_file_if_exists(&dir.join(STATUS_FILE)) {
                log_warning!("{e}");
            }
            false
        }
    };
    // The worker holds the lock now; this process lets go of its copy.
    drop(guard);
    started
}

/// Takes the worker's place for a call, with the worker to start at `place`: its lock, and its
/// status (the position it will start from), before the worker's process exists, so that
/// PostgreSQL's next call, however soon it comes, finds the worker running and waits for its
/// record. Without this, a call in the gap between starting the worker and the worker taking
/// its lock delivered segments that the worker then delivered too, and the worker's records of
/// them outlived their calls. `None` when a worker runs, nothing after the position is ready,
/// or (`Place::Exactly`) the position would not be the one asked for.
fn claim(dir: &Path, data_dir: &Path, place: Place) -> Option<lock::LockGuard> {
    // A worker runs (the common case while a backlog drains): nothing to list.
    if running(dir) {
        return None;
    }
    let position = || -> anyhow::Result<Option<WalFileName>> {
        Ok(match place {
            Place::After { floor, batch } => Some(frontier(dir, &floor, batch)?),
            Place::Exactly(floor) => (frontier(dir, &floor, None)? == floor).then_some(floor),
        })
    };
    // Nothing ready after the position: no worker, and no lock file made for nothing (looked
    // at again once the lock is held).
    let nothing_to_do = |after: &WalFileName| {
        crate::ahead::next_ready(data_dir, after, crate::ahead::AheadLimit::Segments(1)).is_empty()
    };
    if position().map_or(true, |p| p.is_none_or(|after| nothing_to_do(&after))) {
        remove_stale_status(dir);
        return None;
    }
    let guard = match lock::try_lock(&dir.join(LOCK_FILE)) {
        Ok(Some(g)) => g,
        Ok(None) => return None,
        Err(e) => {
            log_warning!("not starting the archive-ahead worker: {e}");
            return None;
        }
    };
    let after = match position() {
        Ok(Some(a)) => a,
        Ok(None) => return None,
        Err(e) => {
            log_warning!("not starting the archive-ahead worker: {e:#}");
            return None;
        }
    };
    if nothing_to_do(&after) {
        drop(guard);
        remove_stale_status(dir);
        return None;
    }
    if let Err(e) = write_status(dir, &after) {
        log_warning!("not starting the archive-ahead worker: {e:#}");
        return None;
    }
    Some(guard)
}

/// Removes the status file a killed worker left, when no worker runs: it is read only while a
/// worker holds the lock, and every start writes it afresh, so a stale one misleads nobody, but
/// it should not stay in the state dir for good.
fn remove_stale_status(dir: &Path) {
    let status = dir.join(STATUS_FILE);
    if !status.exists() {
        return;
    }
    if let Ok(Some(_no_worker)) = lock::try_lock(&dir.join(LOCK_FILE)) {
        if let Err(e) = fs::remove_file_if_exists(&status) {
            log_warning!("{e}");
        }
    }
}

/// The worker's lock and where it starts: the lock its call handed down with the position the
/// call wrote, or (started by hand) a lock taken here and the position from the records.
fn take_lock(cfg: &Config, dir: &Path) -> anyhow::Result<Option<(lock::LockGuard, WalFileName)>> {
    let path = dir.join(LOCK_FILE);
    let handed = std::env::var(LOCK_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<std::os::fd::RawFd>().ok());
    if let Some(fd) = handed {
        if let Some(g) = lock::adopt(&path, fd)? {
            // The position the call wrote under the lock: after its batch, after its asked
            // segment, or just before it when the call handed its own segment over.
            let floor = read_status(dir).unwrap_or(cfg.wal_name);
            return Ok(Some((g, frontier(dir, &floor, None)?)));
        }
    }
    match lock::try_lock(&path)? {
        Some(g) => Ok(Some((g, frontier(dir, &cfg.wal_name, None)?))),
        None => Ok(None),
    }
}

/// A batch read, checked and compressed, ready to be delivered.
struct Prepared<'c> {
    /// The worker's position before this batch.
    after: WalFileName,
    items: Vec<Item<'c>>,
    states: Vec<Option<DeliveryState>>,
    /// Each item's bytes per codec its destinations use.
    bytes: Vec<HashMap<Codec, Result<Vec<u8>, String>>>,
}

/// The worker: see the module documentation.
pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let Some(dir) = cfg
        .state_dir
        .as_deref()
        .filter(|_| !cfg.archive_ahead.is_off())
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let Some((_guard, start)) = take_lock(cfg, dir)? else {
        log_verbose!("another archive-ahead worker is running; leaving it to it");
        return Ok(ExitCode::SUCCESS);
    };
    let sysid = push::cluster_system_identifier(&cfg.data_dir)?;
    write_status(dir, &start)?;
    let started = Instant::now();
    let (tx, rx) = mpsc::sync_channel::<Prepared<'_>>(0);
    let delivered = std::thread::scope(|s| {
        s.spawn(move || prepare(cfg, dir, start, sysid, &tx));
        deliver(cfg, dir, rx)
    });
    if let Err(e) = fs::remove_file_if_exists(&dir.join(STATUS_FILE)) {
        log_warning!("{e}");
    }
    if delivered > 0 {
        log_info!(
            "archive-ahead worker: delivered and recorded {delivered} segment{} after {start} in {:.3}s",
            if delivered == 1 { "" } else { "s" },
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The first stage: the next batch of ready segments after the position, read, checked and
/// compressed, handed to the delivering stage (one batch in hand while one is delivered). Ends
/// when nothing is left, at a segment that cannot be read or checked, or when the delivering
/// stage stops.
fn prepare<'c>(
    cfg: &'c Config,
    dir: &Path,
    start: WalFileName,
    sysid: Option<u64>,
    tx: &mpsc::SyncSender<Prepared<'c>>,
) {
    let mut after = start;
    loop {
        let names = crate::ahead::next_ready(&cfg.data_dir, &after, cfg.archive_ahead);
        let Some(&last) = names.last() else {
            return;
        };
        let mut items = Vec::new();
        let mut states = Vec::new();
        let mut stop = false;
        for name in names {
            match push::ahead_item(cfg, dir, name, sysid) {
                Ok(Some((item, state))) => {
                    items.push(item);
                    states.push(Some(state));
                }
                Ok(None) => {}
                Err(e) => {
                    log_warning!(
                        "archive-ahead worker: not delivering {name}: {e:#}; PostgreSQL's own call for it decides"
                    );
                    stop = true;
                    break;
                }
            }
        }
        let bytes = push::compress_batch(&items);
        if !items.is_empty() {
            let batch = Prepared {
                after,
                items,
                states,
                bytes,
            };
            if tx.send(batch).is_err() {
                return;
            }
        }
        if stop {
            return;
        }
        after = last;
    }
}

/// How many batches the delivering stage has on the wire at once: a batch's time is mostly
/// waiting (rsync's runs, an object store's requests), so a second one overlaps it.
const DELIVERING: usize = 2;

/// How many with an object store that has no conditional writes, at most. There every create
/// pauses for twice the time from its look to its PUT's answer before it looks again
/// (`Store::put_new`), which under load is most of a batch's time, and with two batches on the
/// wire both were in that pause at once for a second or more with the cores idle (profiled,
/// Garage over https, mixed set). The pause holds a batch's memory, not the cores, so more
/// batches overlap it, within [`ON_WIRE_BYTES`]. Measured there (README, "More batches on
/// the wire"): on the mixed set three, four and six on the wire drained alike (medians 125, 123
/// and 125 MiB/s), two at 104; on pgbench WAL, whose copies are a twelfth of the WAL, two 198,
/// three 235, four 270 and six 307.
const DELIVERING_PAUSING: usize = 6;

/// The compressed bytes on the wire, a batch's own included, within which a batch beyond the
/// first [`DELIVERING`] goes: depth for small copies without more memory for large ones. The
/// first two always go, so no batch waits longer than with two on the wire, and on the wire
/// there are at most two batches or this many bytes, whichever is more (with the default
/// 128MB batches, the bound of two). 192 MB lets three batches of the mixed set's copies (about
/// 40 % of 128 MB of WAL each) go, and six of pgbench WAL's.
const ON_WIRE_BYTES: u64 = 192 << 20;

/// How many threads deliver for `destinations`: [`DELIVERING_PAUSING`] when one is an object
/// store written without conditional writes (`s3`), else [`DELIVERING`].
fn delivering(destinations: &[crate::args::Destination], s3: Option<&Settings>) -> usize {
    let pausing = s3.is_some_and(|s| !s.if_none_match)
        && destinations
            .iter()
            .any(|d| matches!(d.location.target, Target::S3(_)));
    if pausing {
        DELIVERING_PAUSING
    } else {
        DELIVERING
    }
}

/// What is on the wire: batches and their compressed bytes.
#[derive(Debug, Default)]
struct OnWire {
    batches: usize,
    bytes: u64,
}

impl OnWire {
    /// Whether a batch of `size` compressed bytes may go on the wire now.
    fn may_take(&self, size: u64) -> bool {
        self.batches < DELIVERING || self.bytes.saturating_add(size) <= ON_WIRE_BYTES
    }
}

/// The compressed bytes of a prepared batch.
fn batch_bytes(batch: &Prepared<'_>) -> u64 {
    batch
        .bytes
        .iter()
        .flat_map(|codecs| codecs.values())
        .map(|b| b.as_ref().map_or(0, |b| b.len() as u64))
        .sum()
}

/// The second stage: delivers the prepared batches, [`delivering`] at a time, and records them;
/// returns how many segments it recorded. Stops taking batches at the first failed delivery
/// (the worker's position stays before that batch, so the failing segment's own call delivers
/// it and reports what failed).
fn deliver(cfg: &Config, dir: &Path, rx: mpsc::Receiver<Prepared<'_>>) -> usize {
    let rx = Mutex::new(rx);
    // The positions before the batches on the wire: the status names the oldest.
    let on_wire: Mutex<BTreeSet<WalFileName>> = Mutex::new(BTreeSet::new());
    let stop = AtomicBool::new(false);
    let recorded = AtomicUsize::new(0);
    let wire = Mutex::new(OnWire::default());
    let freed = Condvar::new();
    std::thread::scope(|s| {
        for _ in 0..delivering(&cfg.destinations, cfg.s3.as_ref()) {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    // A batch goes on the wire while the channel is still held, so that the
                    // batches register in the order they were prepared. Registered after the
                    // one behind it, a batch would write its own position as the status while
                    // the earlier batch's segments were not yet recorded, and the call for one
                    // of them would read "the worker is past it" and deliver it beside the
                    // worker, whose record of it then outlives the call.
                    let taken = match rx.lock() {
                        Ok(r) => r.recv().ok().filter(|_| !stop.load(Ordering::SeqCst)).and_then(
                            |batch| {
                                // Still holding the channel: the batches go in order.
                                let size = batch_bytes(&batch);
                                let mut on = wire.lock().unwrap_or_else(PoisonError::into_inner);
                                while !on.may_take(size) {
                                    on = freed.wait(on).unwrap_or_else(PoisonError::into_inner);
                                }
                                // A delivery that failed meanwhile ends the worker: no batch
                                // goes after it.
                                if stop.load(Ordering::SeqCst) {
                                    return None;
                                }
                                on.batches += 1;
                                on.bytes += size;
                                drop(on);
                                let status = on_wire.lock().map(|mut w| {
                                    w.insert(batch.after);
                                    log_verbose!(
                                        "archive-ahead worker: the batch after {} is on the wire ({} at once)",
                                        batch.after,
                                        w.len()
                                    );
                                    w.first().map(|oldest| write_status(dir, oldest))
                                });
                                Some((batch, status, size))
                            },
                        ),
                        Err(_) => None,
                    };
                    let Some((batch, status, size)) = taken else { break };
                    let after = batch.after;
                    let off_wire = || {
                        let mut on = wire.lock().unwrap_or_else(PoisonError::into_inner);
                        on.batches -= 1;
                        on.bytes -= size;
                        freed.notify_all();
                    };
                    if let Ok(Some(Err(e))) = status {
                        log_warning!("archive-ahead worker: {e:#}; ending");
                        stop.store(true, Ordering::SeqCst);
                        off_wire();
                        break;
                    }
                    let failed = deliver_batch(cfg, batch, &recorded);
                    if let Ok(mut w) = on_wire.lock() {
                        w.remove(&after);
                    }
                    off_wire();
                    if failed > 0 {
                        log_warning!(
                            "archive-ahead worker: {failed} deliveries failed; ending (each segment's own call delivers it)"
                        );
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    recorded.into_inner()
}

/// Delivers one batch and records it; returns how many deliveries failed.
fn deliver_batch(cfg: &Config, mut batch: Prepared<'_>, recorded: &AtomicUsize) -> usize {
    let compressed: Vec<Compressed<'_>> = batch
        .items
        .iter()
        .zip(std::mem::take(&mut batch.bytes))
        .map(|(it, b)| Compressed::ready(&it.wal.bytes, it.name.to_string(), b))
        .collect();
    let results = push::deliver_all(cfg, &batch.items, &compressed);
    drop(compressed);
    let failed = push::record(&batch.items, results, &mut batch.states, false);
    let saved = push::save_ahead(cfg, &batch.items, &mut batch.states);
    recorded.fetch_add(saved, Ordering::SeqCst);
    failed.ahead
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn more_batches_on_the_wire_only_where_creates_pause() {
        use pitr_common::location::{Location, Opt};
        let dest = |spec: &str| crate::args::Destination {
            location: Location::parse(Opt::DstRemote, spec).unwrap(),
            backup: false,
        };
        let (rsync, s3) = (
            dest("zstd=rsync://127.0.0.1:873/wal_archive"),
            dest("zstd=s3://wal-bucket/db1/wal"),
        );
        let plain = Settings::default();
        let conditional = Settings {
            if_none_match: true,
            ..Settings::default()
        };
        assert_eq!(delivering(std::slice::from_ref(&rsync), None), 2);
        assert_eq!(delivering(std::slice::from_ref(&rsync), Some(&plain)), 2);
        assert_eq!(delivering(std::slice::from_ref(&s3), Some(&conditional)), 2);
        assert_eq!(delivering(std::slice::from_ref(&s3), Some(&plain)), 6);
        assert_eq!(delivering(&[rsync, s3], Some(&plain)), 6);
    }

    #[test]
    fn a_batch_beyond_the_second_goes_while_the_bytes_on_the_wire_allow() {
        const MB: u64 = 1 << 20;
        let on = |batches, bytes| OnWire { batches, bytes };
        // The first two always go, whatever their size.
        assert!(on(0, 0).may_take(300 * MB));
        assert!(on(1, 300 * MB).may_take(300 * MB));
        // Beyond them, within 192 MB on the wire.
        assert!(on(2, 102 * MB).may_take(51 * MB));
        assert!(!on(3, 153 * MB).may_take(51 * MB));
        assert!(on(5, 53 * MB).may_take(11 * MB));
        assert!(on(2, 192 * MB - 1).may_take(1));
        assert!(!on(2, 192 * MB).may_take(1));
        assert!(!on(2, 256 * MB).may_take(1));
    }

    fn after(floor: WalFileName, batch: Option<WalFileName>) -> Place {
        Place::After { floor, batch }
    }

    /// Segment `n` of timeline 1.
    fn name(n: u32) -> WalFileName {
        WalFileName::parse(&format!("0000000100000000000000{n:02X}")).unwrap()
    }

    /// An empty state dir, and a data dir whose segments `ready` are marked ready.
    fn state_and_ready(
        ready: std::ops::RangeInclusive<u32>,
    ) -> (tempfile::TempDir, tempfile::TempDir) {
        let state = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let status = data.path().join("pg_wal/archive_status");
        std::fs::create_dir_all(&status).unwrap();
        for n in ready {
            std::fs::write(status.join(format!("{}.ready", name(n))), "").unwrap();
        }
        (state, data)
    }

    #[test]
    fn the_status_names_the_workers_position() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_status(d.path()), None);
        let at = WalFileName::parse("000000010000000000000007").unwrap();
        write_status(d.path(), &at).unwrap();
        assert_eq!(read_status(d.path()), Some(at));
        assert_eq!(parse_status("after junk\n"), None);
        assert_eq!(parse_status("000000010000000000000007\n"), None);
    }

    #[test]
    fn a_call_does_not_wait_without_a_worker() {
        let d = tempfile::tempdir().unwrap();
        let name = WalFileName::parse("000000010000000000000007").unwrap();
        assert!(!wait_for(d.path(), &name));
        // A record is the answer, worker or not.
        std::fs::write(
            DeliveryState::path_for(d.path(), &name.to_string()),
            "content 16 00000000\nahead-of 000000010000000000000006\n",
        )
        .unwrap();
        assert!(wait_for(d.path(), &name));
    }

    #[test]
    fn the_worker_is_running_for_the_next_call_before_its_process_starts() {
        let state = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let status = data.path().join("pg_wal/archive_status");
        std::fs::create_dir_all(&status).unwrap();
        let asked = WalFileName::parse("000000010000000000000007").unwrap();
        let next = WalFileName::parse("000000010000000000000008").unwrap();
        // Nothing ready after the asked segment: no worker, no lock file, no status.
        assert!(claim(state.path(), data.path(), after(asked, None)).is_none());
        assert!(!state.path().join(LOCK_FILE).exists());
        assert_eq!(read_status(state.path()), None);
        // The next one ready: the call holds the lock and names the position, so the next
        // call waits for the worker's record (a record from it ends the wait).
        std::fs::write(status.join(format!("{next}.ready")), "").unwrap();
        // ... but recorded already (delivered ahead by the call): still nothing to do.
        let record = DeliveryState::path_for(state.path(), &next.to_string());
        std::fs::write(&record, format!("content 16 00000000\nahead-of {asked}\n")).unwrap();
        assert!(claim(state.path(), data.path(), after(asked, None)).is_none());
        assert!(!state.path().join(LOCK_FILE).exists());
        std::fs::remove_file(&record).unwrap();
        let held = claim(state.path(), data.path(), after(asked, None)).unwrap();
        assert!(running(state.path()));
        assert_eq!(read_status(state.path()), Some(asked));
        // A second call does not start a second worker.
        assert!(claim(state.path(), data.path(), after(asked, None)).is_none());
        let record = DeliveryState::path_for(state.path(), &next.to_string());
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::write(record, "content 16 00000000\nahead-of x\n").unwrap();
        });
        let t = Instant::now();
        assert!(wait_for(state.path(), &next));
        assert!(t.elapsed() >= Duration::from_millis(50));
        writer.join().unwrap();
        drop(held);
        assert!(!running(state.path()));
        // The worker killed before it removed its status: the next call with nothing to start
        // removes it; it leaves a live worker's alone.
        std::fs::remove_file(status.join(format!("{next}.ready"))).unwrap();
        let live = lock::try_lock(&state.path().join(LOCK_FILE))
            .unwrap()
            .unwrap();
        assert!(claim(state.path(), data.path(), after(asked, None)).is_none());
        assert_eq!(read_status(state.path()), Some(asked));
        drop(live);
        assert!(claim(state.path(), data.path(), after(asked, None)).is_none());
        assert_eq!(read_status(state.path()), None);
    }

    #[test]
    fn a_worker_started_with_a_calls_batch_starts_after_it() {
        let (state, data) = state_and_ready(8..=10);
        // The call for 7 delivers 8 and 9 itself: the worker's are those after 9.
        let held = claim(state.path(), data.path(), after(name(7), Some(name(9)))).unwrap();
        assert_eq!(read_status(state.path()), Some(name(9)));
        drop(held);
        // Nothing ready after the batch: no worker.
        assert!(claim(state.path(), data.path(), after(name(7), Some(name(10)))).is_none());
        // A record newer than the batch wins.
        std::fs::write(
            DeliveryState::path_for(state.path(), &name(9).to_string()),
            format!("content 16 00000000\nahead-of {}\n", name(7)),
        )
        .unwrap();
        let held = claim(state.path(), data.path(), after(name(7), Some(name(8)))).unwrap();
        assert_eq!(read_status(state.path()), Some(name(9)));
        drop(held);
    }

    #[test]
    fn a_call_that_hands_its_segment_over_waits_for_the_workers_record_of_it() {
        let (state, data) = state_and_ready(7..=9);
        let floor = name(7).position_before().unwrap();
        let held = claim(state.path(), data.path(), Place::Exactly(floor)).unwrap();
        // The worker's first batch starts with the asked segment itself.
        let from = read_status(state.path()).unwrap();
        assert_eq!(from, name(6));
        assert_eq!(
            crate::ahead::next_ready(data.path(), &from, crate::ahead::AheadLimit::Segments(8)),
            [name(7), name(8), name(9)]
        );
        // The call waits for the worker's record of its segment, and gets it.
        let record = DeliveryState::path_for(state.path(), &name(7).to_string());
        let asked = name(7);
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::write(record, format!("content 16 00000000\nahead-of {asked}\n")).unwrap();
        });
        assert!(wait_for(state.path(), &name(7)));
        writer.join().unwrap();
        // A worker that ends without the record (a failed delivery) lets the call deliver.
        std::fs::remove_file(DeliveryState::path_for(state.path(), &name(7).to_string())).unwrap();
        drop(held);
        assert!(!wait_for(state.path(), &name(7)));
        // A record newer than the asked segment (left by calls that have not come yet): no
        // hand-over, no worker past the call's segment; the call delivers it and its batch.
        std::fs::write(
            DeliveryState::path_for(state.path(), &name(8).to_string()),
            format!("content 16 00000000\nahead-of {}\n", name(6)),
        )
        .unwrap();
        assert!(claim(state.path(), data.path(), Place::Exactly(floor)).is_none());
        assert!(!running(state.path()));
        assert!(!wait_for(state.path(), &name(7)));
    }

    #[test]
    fn a_call_waits_for_a_live_worker_before_its_position_only() {
        let d = tempfile::tempdir().unwrap();
        let _held = lock::try_lock(&d.path().join(LOCK_FILE)).unwrap().unwrap();
        let before = WalFileName::parse("000000010000000000000005").unwrap();
        let name = WalFileName::parse("000000010000000000000007").unwrap();
        // The worker has passed it without a record: the call delivers it.
        write_status(d.path(), &name).unwrap();
        assert!(running(d.path()));
        assert!(!wait_for(d.path(), &name));
        // The worker is before it: the call waits for its record.
        write_status(d.path(), &before).unwrap();
        let record = DeliveryState::path_for(d.path(), &name.to_string());
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::write(record, "content 16 00000000\nahead-of x\n").unwrap();
        });
        let t = Instant::now();
        assert!(wait_for(d.path(), &name));
        assert!(t.elapsed() >= Duration::from_millis(50));
        writer.join().unwrap();
    }
}

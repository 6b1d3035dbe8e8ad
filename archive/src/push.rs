//! Delivering one WAL file to every destination, in the steps of ARCHITECTURE.md's
//! "pitr-archive": map and check the file, pick the destinations still missing it (a record of
//! a delivery ahead may say none is), pick the ready segments to deliver ahead, compress once
//! per codec on demand, deliver each destination's batch up to `--parallel-jobs` at a time,
//! record the outcome. One failing destination does not stop the others; the run succeeds only
//! when every destination durably holds the file PostgreSQL asked for. A segment delivered
//! ahead that fails somewhere is a WARNING: its own call sends it again.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use pitr_common::compress::Codec;
use pitr_common::dest::{self, Body, Payload, PutOptions, PutOutcome, SharedStage};
use pitr_common::exit::Failure;
use pitr_common::location::Target;
use pitr_common::state::{self, Content, DeliveryState};
use pitr_common::tempname::{self, ScratchDir};
use pitr_common::wal::WalFileName;
use pitr_common::{
    controldata, fs, log_error, log_hint, log_info, log_verbose, log_warning, pg, walpage,
};

use crate::args::{Config, Destination};

/// The WAL file of this call, mapped and checked.
pub(crate) struct WalFile {
    pub(crate) bytes: fs::FileBytes,
    mtime: SystemTime,
    /// The database system it belongs to, when known (segments, or a data directory with
    /// pg_control).
    pub(crate) sysid: Option<u64>,
}

/// The database system the WAL file must belong to, from pg_control: a data directory without
/// one is the wrong directory, and WAL is never archived unchecked.
pub(crate) fn cluster_system_identifier(data_dir: &Path) -> anyhow::Result<Option<u64>> {
    let cd = controldata::read(data_dir, None).map_err(|e| {
        anyhow::Error::from(e).context(
            Failure::new(format!("cannot read pg_control of {}", data_dir.display())).hint(
                "run pitr-archive as archive_command (the data directory is its working directory) or give --data-dir",
            ),
        )
    })?;
    Ok(Some(cd.system_identifier))
}

/// Step 2: maps the WAL file PostgreSQL asked for and checks it: name, size and page header,
/// database system against pg_control.
fn read_wal(cfg: &Config) -> anyhow::Result<WalFile> {
    let cluster = cluster_system_identifier(&cfg.data_dir)?;
    read_wal_file(cfg, &cfg.wal_path, &cfg.wal_arg, &cfg.wal_name, cluster)
}

/// Maps the WAL file `name` at `path` (shown as `shown`) and checks it against `cluster`.
pub(crate) fn read_wal_file(
    cfg: &Config,
    path: &Path,
    shown: &str,
    name: &WalFileName,
    cluster: Option<u64>,
) -> anyhow::Result<WalFile> {
    let meta = std::fs::metadata(path).map_err(|e| {
        anyhow::Error::from(fs::IoError::new("reading WAL file", path, e)).context(
            Failure::new(format!("cannot read WAL file {shown}")).hint(
                "archive_command gets %p relative to the data directory: run it from there or give --data-dir",
            ),
        )
    })?;
    if !meta.is_file() {
        return Err(
            Failure::new(format!("WAL file {} is not a regular file", path.display()))
                .hint("pass PostgreSQL's %p")
                .into(),
        );
    }
    let bytes = fs::map_or_read(path).map_err(|e| {
        anyhow::Error::from(e).context(
            Failure::new(format!("cannot read WAL file {}", path.display())).hint(
                "archive_command runs as the PostgreSQL user: the WAL file must be readable by it",
            ),
        )
    })?;
    let mtime = meta
        .modified()
        .map_err(|e| fs::IoError::new("reading the mtime of", path, e))?;
    let header = walpage::verify(name, &bytes, bytes.len() as u64, cluster)
        .map_err(|e| refusal(cfg, path, e))?;
    Ok(WalFile {
        bytes,
        mtime,
        sysid: header.map(|h| h.system_identifier).or(cluster),
    })
}

fn refusal(cfg: &Config, path: &Path, e: walpage::Error) -> anyhow::Error {
    match e {
        walpage::Error::ForeignSystem { name, found, expected } => Failure::new(format!(
            "{name} is from database system {found} but the cluster in {} is database system {expected}",
            cfg.data_dir.display()
        ))
        .hint("archive_command must archive only this cluster's own WAL")
        .into(),
        other => Failure::new(format!("refusing {}: {other}", path.display()))
            .hint("this is not a complete WAL segment of this name; do not archive it by hand")
            .into(),
    }
}

/// Step 3: the destinations still missing `name`: not recorded in its state, and not a
/// `--dst-backup` directory whose pitr-backup is gone. `asked` says whether PostgreSQL asked
/// for it (only then are the skips logged).
pub(crate) fn pending<'a>(
    cfg: &'a Config,
    name: &WalFileName,
    state: Option<&DeliveryState>,
    asked: bool,
) -> Vec<&'a Destination> {
    cfg.destinations
        .iter()
        .filter(|d| {
            if let (true, Target::Dir(dir)) = (d.backup, &d.location.target) {
                // A --dst-backup directory left by a pitr-backup killed with -9 stays until the
                // next backup removes it; nobody will read what we would add.
                if let Some(pid) = pitr_common::backupset::xlogs_owner_gone(dir) {
                    if asked {
                        log_warning!(
                            "not sending {name} to --dst-backup {}: the pitr-backup that created it (pid {pid}) is gone",
                            dir.display()
                        );
                        log_hint!("the next pitr-backup removes the directory; remove it by hand if no backup is planned");
                    }
                    return false;
                }
            }
            let done = state.is_some_and(|s| s.is_delivered(&d.location.key()));
            if done && asked {
                log_info!(
                    "{name} already sent to {} according to the state dir; skipping",
                    d.location
                );
            }
            !done
        })
        .collect()
}

/// The state of `name` in the state dir, for `content`: a record made for other content is
/// worth nothing (WARNING) and is forgotten; whatever is saved later names `content`.
pub(crate) fn load_state(
    dir: &Path,
    name: &WalFileName,
    content: Content,
) -> anyhow::Result<DeliveryState> {
    let mut s = DeliveryState::load(dir, &name.to_string())?;
    match s.content() {
        Some(recorded) if recorded != content && !s.is_empty() => {
            log_warning!(
                "the delivery record of {name} in {} is for other content ({recorded}) than the file in pg_wal ({content}); delivering it again",
                dir.display()
            );
            s.clear();
        }
        // A record made ahead is trusted for one content only; one without its content line
        // (hand-made, or damaged) names none. (An old retry state of PostgreSQL's own call,
        // which never had one, still counts.)
        None if s.ahead_of().is_some() => {
            log_warning!(
                "the delivery record of {name} in {} names no content; delivering it again",
                dir.display()
            );
            s.clear();
        }
        _ => {}
    }
    s.set_content(content);
    Ok(s)
}

/// One WAL file this call delivers: the one PostgreSQL asked for (always first) or one ahead.
pub(crate) struct Item<'c> {
    pub(crate) name: WalFileName,
    /// How messages name it: `%p` as given, `pg_wal/NAME` for one ahead.
    pub(crate) shown: String,
    pub(crate) wal: WalFile,
    pub(crate) pending: Vec<&'c Destination>,
}

/// Step 3b: the segments marked ready after the asked one that some destination still lacks,
/// mapped and checked, with their states; a segment that cannot be read or checked is left to
/// its own call.
fn ahead_items<'c>(cfg: &'c Config, sysid: Option<u64>) -> Vec<(Item<'c>, DeliveryState)> {
    let Some(dir) = cfg
        .state_dir
        .as_deref()
        .filter(|_| !cfg.archive_ahead.is_off())
    else {
        return Vec::new();
    };
    match state::sweep_ahead_records(dir, &cfg.wal_name) {
        Ok(0) => {}
        Ok(n) => log_verbose!(
            "removed {n} leftover records (of segments delivered ahead and archived since, or half-written by a killed call)"
        ),
        Err(e) => log_warning!("cannot sweep the records of {}: {e}", dir.display()),
    }
    let mut items = Vec::new();
    let worker = crate::worker::running_position(dir);
    for name in crate::ahead::next_ready(&cfg.data_dir, &cfg.wal_name, cfg.archive_ahead) {
        if worker.is_some_and(|w| name > w) {
            log_verbose!("not delivering {name} ahead: the archive-ahead worker has it");
            break;
        }
        match ahead_item(cfg, dir, name, sysid) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => {}
            Err(e) => log_verbose!("not delivering {name} ahead: {e:#}"),
        }
    }
    items
}

/// The ready segment `name` (in `pg_wal`) mapped and checked, with its state in `dir`, when some
/// destination still lacks it; `None` when every destination holds it.
pub(crate) fn ahead_item<'c>(
    cfg: &'c Config,
    dir: &Path,
    name: WalFileName,
    sysid: Option<u64>,
) -> anyhow::Result<Option<(Item<'c>, DeliveryState)>> {
    let shown = format!("{}/{name}", pg::PG_WAL);
    let path = cfg.data_dir.join(&shown);
    let wal = read_wal_file(cfg, &path, &shown, &name, sysid)?;
    let state = load_state(dir, &name, Content::of(&wal.bytes))?;
    let pending = pending(cfg, &name, Some(&state), false);
    Ok((!pending.is_empty()).then(|| {
        (
            Item {
                name,
                shown,
                wal,
                pending,
            },
            state,
        )
    }))
}

/// The file compressed once per codec, on demand: the first delivery that needs a codec's bytes
/// computes them on every core, deliveries with other codecs run (and compress) in parallel,
/// and a destination that already holds the file costs no compression at all.
pub(crate) struct Compressed<'a> {
    plain: &'a [u8],
    name: String,
    cells: HashMap<Codec, OnceLock<Result<bytes::Bytes, String>>>,
}

impl<'a> Compressed<'a> {
    fn new(plain: &'a [u8], name: String, destinations: &[&Destination]) -> Self {
        let cells = destinations
            .iter()
            .map(|d| (d.location.codec, OnceLock::new()))
            .collect();
        Compressed { plain, name, cells }
    }

    /// The file with its bytes already computed for each codec (the archive-ahead worker
    /// compresses a batch while the one before it is delivered).
    pub(crate) fn ready(
        plain: &'a [u8],
        name: String,
        computed: HashMap<Codec, Result<Vec<u8>, String>>,
    ) -> Self {
        let cells = computed
            .into_iter()
            .map(|(c, r)| (c, OnceLock::from(r.map(bytes::Bytes::from))))
            .collect();
        Compressed { plain, name, cells }
    }

    fn get(&self, c: Codec) -> anyhow::Result<Body<'_>> {
        if c == Codec::None {
            return Ok(Body::Borrowed(self.plain));
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
                .map(bytes::Bytes::from)
                .map_err(|e| e.to_string());
            log_verbose!(
                "Timer [Compressing {} with {c}] took: {:.3}s",
                self.name,
                t.elapsed().as_secs_f64()
            );
            r
        });
        match r {
            Ok(v) => Ok(Body::Shared(v)),
            Err(e) => Err(anyhow::anyhow!("compressing {} with {c}: {e}", self.name)),
        }
    }
}

/// Each item's bytes for every codec its destinations use, each codec compressing the whole
/// batch on every core at once (`Codec::compress_parallel_many`: every segment cut into the
/// pieces a single call would cut it into, the pieces of all the batch's segments sharing the
/// threads, so no core waits at the end of each segment).
pub(crate) fn compress_batch(items: &[Item<'_>]) -> Vec<HashMap<Codec, Result<Vec<u8>, String>>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut bytes: Vec<HashMap<Codec, Result<Vec<u8>, String>>> =
        items.iter().map(|_| HashMap::new()).collect();
    let codecs: HashSet<Codec> = items
        .iter()
        .flat_map(|it| it.pending.iter().map(|d| d.location.codec))
        .filter(|c| *c != Codec::None)
        .collect();
    for codec in codecs {
        let wanted: Vec<usize> = (0..items.len())
            .filter(|&i| items[i].pending.iter().any(|d| d.location.codec == codec))
            .collect();
        let inputs: Vec<&[u8]> = wanted.iter().map(|&i| &items[i].wal.bytes[..]).collect();
        let t = Instant::now();
        let out = codec.compress_parallel_many(&inputs, threads);
        log_verbose!(
            "Timer [Compressing {} segments with {codec}] took: {:.3}s",
            inputs.len(),
            t.elapsed().as_secs_f64()
        );
        for (&i, r) in wanted.iter().zip(out) {
            bytes[i].insert(codec, r.map_err(|e| e.to_string()));
        }
    }
    bytes
}

/// One delivery's outcome: the item's index, the destination, what happened.
pub(crate) type Outcome<'a> = (usize, &'a Destination, anyhow::Result<PutOutcome>);

/// Step 4: delivers each destination's batch (the items missing there, the asked one first), up
/// to `--parallel-jobs` destinations at a time. Each rsync destination stages its files (the
/// cluster marker, the WAL files, existing copies to compare) in a subdirectory of a private
/// scratch directory; a scratch directory that cannot be made fails only the destinations
/// that need one.
pub(crate) fn deliver_all<'a>(
    cfg: &'a Config,
    items: &[Item<'a>],
    compressed: &[Compressed<'_>],
) -> Vec<Outcome<'a>> {
    deliver_to(cfg, items, compressed, None)
}

/// [`deliver_all`], to the `--dst-backup` destinations only (`backup` `Some(true)`), to the
/// others only (`Some(false)`) or to all (`None`).
fn deliver_to<'a>(
    cfg: &'a Config,
    items: &[Item<'a>],
    compressed: &[Compressed<'_>],
    backup: Option<bool>,
) -> Vec<Outcome<'a>> {
    let wanted = |d: &Destination| -> Vec<usize> {
        (0..items.len())
            .filter(|&i| items[i].pending.iter().any(|p| std::ptr::eq(*p, d)))
            .collect()
    };
    let batches: Vec<(&'a Destination, Vec<usize>)> = cfg
        .destinations
        .iter()
        .filter(|d| backup.is_none_or(|b| d.backup == b))
        .map(|d| (d, wanted(d)))
        .filter(|(_, idx)| !idx.is_empty())
        .collect();
    let needs_scratch = |d: &Destination| matches!(d.location.target, Target::Rsync(_));
    let scratch = batches
        .iter()
        .any(|(d, _)| needs_scratch(d))
        .then(|| ScratchDir::create(&cfg.temp_dir, "pitr-archive"));
    // The rsync destinations upload the same staged copies (one per codec).
    let shared_stage = match &scratch {
        Some(Ok(dir)) => Some(std::sync::Arc::new(SharedStage::new(
            dir.path().join("staged"),
        ))),
        _ => None,
    };
    let names: Vec<String> = items.iter().map(|it| it.name.to_string()).collect();
    let queue = Mutex::new(batches.iter().enumerate());
    let results: Mutex<Vec<Outcome<'a>>> = Mutex::new(Vec::new());
    let workers = cfg.parallel_jobs.min(batches.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some((index, (d, idx))) = next else { break };
                let t = Instant::now();
                let scratch_dir = match (&scratch, needs_scratch(d)) {
                    (Some(Ok(dir)), true) => dir
                        .subdir(&index.to_string())
                        .map_err(|e| scratch_failure(&e)),
                    (Some(Err(e)), true) => Err(scratch_failure(e)),
                    _ => Ok(cfg.temp_dir.clone()),
                };
                let codec = d.location.codec;
                let stored: Vec<_> = idx
                    .iter()
                    .map(|&i| move || compressed[i].get(codec))
                    .collect();
                let payloads: Vec<Payload<'_>> = idx
                    .iter()
                    .zip(&stored)
                    .map(|(&i, stored)| Payload {
                        wal_name: &names[i],
                        plain: &items[i].wal.bytes,
                        stored,
                        mtime: Some(items[i].wal.mtime),
                    })
                    .collect();
                let outcomes = match scratch_dir {
                    Ok(scratch_dir) => {
                        let opts = PutOptions {
                            rsync: cfg.rsync.clone(),
                            scratch_dir,
                            shared_stage: shared_stage.clone(),
                            write_delay: cfg.write_delay,
                            s3: cfg.s3.clone(),
                            stores: cfg.stores.clone(),
                        };
                        dest::deliver_batch(&d.location, &payloads, items[idx[0]].wal.sysid, &opts)
                    }
                    // Each of the batch's files fails with the same message and HINT.
                    Err(e) => idx.iter().map(|_| Err(e.clone().into())).collect(),
                };
                log_verbose!(
                    "Sending {} to {} ended in {:.6}s",
                    idx.iter()
                        .map(|&i| items[i].shown.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    d.location,
                    t.elapsed().as_secs_f64()
                );
                if let Ok(mut r) = results.lock() {
                    r.extend(idx.iter().zip(outcomes).map(|(&i, o)| (i, *d, o)));
                }
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// Why an rsync destination gets nothing when its scratch directory cannot be made: the
/// directory, the system's reason, and where scratch directories go.
fn scratch_failure(e: &fs::IoError) -> Failure {
    Failure::new(format!(
        "cannot create scratch directory {}: {}",
        e.path.display(),
        e.source
    ))
    .hint(
        "rsync destinations stage their files in --temp-dir (default: $TMPDIR, else /tmp); give a directory the PostgreSQL user can write",
    )
}

/// Step 5: logs each outcome and records the successful ones in the states; returns how many
/// deliveries failed: of the file PostgreSQL asked for (item 0, when `asked_first`), and of
/// files ahead.
pub(crate) fn record(
    items: &[Item<'_>],
    results: Vec<Outcome<'_>>,
    states: &mut [Option<DeliveryState>],
    asked_first: bool,
) -> Failed {
    let mut failed = Failed::default();
    for (i, d, r) in results {
        let name = &items[i].name;
        let asked = i == 0 && asked_first;
        match r {
            Ok(outcome) => {
                if outcome == PutOutcome::AlreadyIdentical {
                    let line = format!(
                        "{name} is already archived in {} with identical content; not sent again",
                        d.location
                    );
                    if asked {
                        log_warning!("{line}");
                    } else {
                        // Warned of by the call PostgreSQL makes for it, from the record.
                        log_verbose!("{line}");
                    }
                }
                if let Some(s) = states[i].as_mut() {
                    if outcome == PutOutcome::AlreadyIdentical && !asked {
                        s.mark_identical(d.location.key());
                    }
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
            Err(e) if asked => {
                failed.asked += 1;
                let what = if d.backup { " (backup collection)" } else { "" };
                log_error!("cannot send {name} to {}{what}: {e:#}", d.location);
                if let Some(h) = pitr_common::cli::hint_for(&e) {
                    log_hint!("{h}");
                }
            }
            Err(e) => {
                failed.ahead += 1;
                log_warning!(
                    "cannot send {name} ahead to {}: {e:#}; PostgreSQL's own call for it sends it again",
                    d.location
                );
            }
        }
    }
    failed
}

/// How many deliveries of a batch failed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Failed {
    /// Of the file PostgreSQL asked for.
    pub(crate) asked: usize,
    /// Of files delivered ahead.
    pub(crate) ahead: usize,
}

/// Step 6: the records of the segments delivered ahead, durably; one that cannot be saved only
/// costs its own call a delivery. Returns how many were recorded.
pub(crate) fn save_ahead(
    cfg: &Config,
    items: &[Item<'_>],
    states: &mut [Option<DeliveryState>],
) -> usize {
    let asked = cfg.wal_name.to_string();
    let mut done = Vec::new();
    for (it, s) in items.iter().zip(states.iter_mut()) {
        let Some(s) = s.as_mut().filter(|s| !s.is_empty()) else {
            continue;
        };
        s.set_ahead_of(&asked);
        match s.save() {
            Ok(()) => done.push(it.name.to_string()),
            Err(e) => log_warning!(
                "cannot record {} as delivered ahead: {e:#}; PostgreSQL's own call for it sends it again",
                it.name
            ),
        }
    }
    if let (Some(first), Some(last)) = (done.first(), done.last()) {
        log_info!(
            "delivered ahead with {asked}: {} segment{} ({first} to {last}), recorded in the state dir",
            done.len(),
            if done.len() == 1 { "" } else { "s" }
        );
    }
    done.len()
}

/// Runs one archive call.
pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let wal = read_wal(cfg)?;
    let content = Content::of(&wal.bytes);
    // A retry (PostgreSQL calls again after a failure) finds the state its failed call saved.
    let retry = cfg
        .state_dir
        .as_deref()
        .is_some_and(|dir| DeliveryState::path_for(dir, &cfg.wal_name.to_string()).exists());
    let mut state = match &cfg.state_dir {
        Some(dir) => Some(load_state(dir, &cfg.wal_name, content)?),
        None => None,
    };
    let mut pending = pending(cfg, &cfg.wal_name, state.as_ref(), true);
    // A first attempt with a backlog behind it hands its own segment to a worker started from
    // it, and waits for the record below like the calls after it.
    let handed = !pending.is_empty()
        && !retry
        && state.as_ref().is_some_and(|s| s.ahead_of().is_none())
        && crate::worker::hand_over(cfg);
    // The archive-ahead worker may be delivering this segment right now, or about to: its
    // record is then the answer (one delivery, not two racing ones).
    if let (false, Some(dir), Some(s)) = (pending.is_empty(), &cfg.state_dir, &state) {
        if s.ahead_of().is_none()
            && !cfg.archive_ahead.is_off()
            && crate::worker::wait_for(dir, &cfg.wal_name)
        {
            let reloaded = load_state(dir, &cfg.wal_name, content)?;
            pending = self::pending(cfg, &cfg.wal_name, Some(&reloaded), true);
            state = Some(reloaded);
        }
    }
    if let (true, Some(s)) = (pending.is_empty(), &state) {
        if answer_from_record(cfg, s)? {
            return Ok(success(cfg, started));
        }
    }
    let sysid = wal.sysid;
    let mut items = vec![Item {
        name: cfg.wal_name,
        shown: cfg.wal_arg.clone(),
        wal,
        pending,
    }];
    let mut states = vec![state];
    // Only a call that has something to send takes others along: the calls answered from
    // records stay instant, and the worker started below takes the segments after the batch.
    if !items[0].pending.is_empty() {
        for (item, state) in ahead_items(cfg, sysid) {
            items.push(item);
            states.push(Some(state));
        }
    }
    let compressed: Vec<Compressed<'_>> = match items.last() {
        Some(last) if items.len() > 1 => {
            // A backlog: the worker takes what follows the batch from now on, and the batch is
            // compressed as one job, as the worker's are.
            // Not after a failure: a retry, or a call whose worker gave its segment back.
            if !retry && !handed {
                crate::worker::start_after_batch(cfg, &last.name);
            }
            items
                .iter()
                .zip(compress_batch(&items))
                .map(|(it, b)| Compressed::ready(&it.wal.bytes, it.name.to_string(), b))
                .collect()
        }
        _ => items
            .iter()
            .map(|it| Compressed::new(&it.wal.bytes, it.name.to_string(), &it.pending))
            .collect(),
    };
    let results = match cfg.state_dir {
        Some(_) => deliver_all(cfg, &items, &compressed),
        None => backup_collection_first(cfg, &items, &compressed),
    };
    drop(compressed);
    let failed = record(&items, results, &mut states, true).asked;
    save_ahead(cfg, &items[1..], &mut states[1..]);
    let state = states.swap_remove(0);
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
    crate::worker::start_if_needed(cfg);
    Ok(success(cfg, started))
}

/// Delivers to `--dst-backup` first and alone, then, if that went, to the other destinations.
/// Without `--state-dir` a retry sends to every destination again: with the backup collection
/// (a local directory, which compares) failing after a destination without a compare step (a
/// pipe) had the file, the retry would send it there twice. One destination and
/// `--dst-backup` need no state dir, as in OmniPITR while no backup runs.
fn backup_collection_first<'a>(
    cfg: &'a Config,
    items: &[Item<'a>],
    compressed: &[Compressed<'_>],
) -> Vec<Outcome<'a>> {
    let mut results = deliver_to(cfg, items, compressed, Some(true));
    // A vanished collection directory is not a failure (see `record`).
    let backup_failed = results
        .iter()
        .any(|(_, d, r)| r.is_err() && d.location.as_dir().is_none_or(Path::exists));
    if !backup_failed {
        results.extend(deliver_to(cfg, items, compressed, Some(false)));
    }
    results
}

/// Answers the call from the record of a delivery ahead, when `s` is one (it matched the file
/// and names every destination): logs it, removes it, sweeps killed writers' temporary files and
/// starts the worker if there is a backlog. Returns whether the call is answered.
fn answer_from_record(cfg: &Config, s: &DeliveryState) -> anyhow::Result<bool> {
    let Some(by) = s.ahead_of() else {
        return Ok(false);
    };
    let how = if by == cfg.wal_name.to_string() {
        "by the archive-ahead worker".to_string()
    } else {
        format!("ahead with {by}")
    };
    let content = s.content().map(|c| c.to_string()).unwrap_or_default();
    log_info!(
        "{} was delivered {how}; its record matches the file ({content})",
        cfg.wal_name
    );
    // SPEC: the same name already archived with identical content is success, logged as a
    // warning, by the call for it even when the finding was made ahead.
    for key in s.identical() {
        if let Some(d) = cfg.destinations.iter().find(|d| d.location.key() == key) {
            log_warning!(
                "{} is already archived in {} with identical content; not sent again",
                cfg.wal_name,
                d.location
            );
        }
    }
    s.remove()?;
    sweep_killed_writers(cfg);
    crate::worker::start_if_needed(cfg);
    Ok(true)
}

/// Removes from the state dir the temporary files of writers that were killed (a worker killed
/// while saving a record or its status; a full call sweeps them with the records): when every
/// call after it is answered from records, no full call comes to sweep them. The worker these
/// calls start needs the same, and gets it from them.
fn sweep_killed_writers(cfg: &Config) {
    let Some(dir) = cfg.state_dir.as_deref() else {
        return;
    };
    match tempname::sweep_stale(dir, Duration::ZERO, false) {
        Ok(swept) if !swept.is_empty() => log_verbose!(
            "removed {} temporary files of killed writers from {}",
            swept.len(),
            dir.display()
        ),
        Ok(_) => {}
        Err(e) => log_warning!("cannot sweep the temporary files of {}: {e}", dir.display()),
    }
}

/// The end of a successful call: OmniPITR's line, which log monitors grep for.
fn success(cfg: &Config, started: Instant) -> ExitCode {
    log_verbose!(
        "Timer [Segment delivery] took: {:.3}s",
        started.elapsed().as_secs_f64()
    );
    log_info!(
        "Segment {} successfully sent to all destinations.",
        cfg.wal_arg
    );
    ExitCode::SUCCESS
}

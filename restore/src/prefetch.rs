//! Prefetch: the next segments decompressed and verified ahead of PostgreSQL's requests.
//!
//! After handing a segment over, pitr-restore starts a background worker (this binary again,
//! with `--prefetch-worker`, in a session of its own) that fills `pg_wal/.pitr-prefetch` with the
//! next `--prefetch` segments: each decompressed fully, verified like any restored file, and
//! written (temp name, rename) under its own name with the archived file's mtime. The next request then
//! only checks the spooled copy's size and page header (against the name asked for and this
//! cluster) and renames it into `%p`. The spool is inside `pg_wal`, so the rename never crosses
//! file systems, and `pg_basebackup` and pitr-backup never copy it.
//!
//! Bounded: one worker at a time (a lock), at most `--prefetch` files, and each worker first
//! removes what is stale (other timelines, positions already passed, leftovers of killed
//! workers). A spooled file that fails its check is removed and never handed over.
//!
//! Spooled files are not fsynced: a 16 MiB fsync per segment would cost more than the
//! decompression it saves. Instead the spool belongs to one boot of the machine: its `.boot_id`
//! file (written durably before any segment) holds the kernel's boot id, and a spool from
//! another boot, whose unsynced files a crash may have torn, is never read, only emptied. Within
//! one boot the page cache is the file's content, complete once renamed. Where the kernel has
//! no boot id, the worker fsyncs every file as before.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use pitr_common::fs::{self, IoError, Replace, Unsynced};
use pitr_common::process::Program;
use pitr_common::wal::{SegSize, WalFileName, WalKind};
use pitr_common::{lock, log_verbose, log_warning, pg, signal, source, tempname, walpage};

use crate::args::Config;

mod pool;

/// Name of the spool directory inside pg_wal.
pub const SPOOL_DIR: &str = ".pitr-prefetch";
const LOCK_FILE: &str = ".lock";
const BOOT_FILE: &str = ".boot_id";
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// This boot of the machine, as the kernel names it; `None` where it cannot be read.
fn current_boot() -> Option<String> {
    let id = std::fs::read_to_string(BOOT_ID_PATH).ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// The prefetch spool of one data directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// The spool of `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Spool {
            dir: data_dir.join(pg::PG_WAL).join(SPOOL_DIR),
        }
    }

    fn path(&self, name: &WalFileName) -> PathBuf {
        self.dir.join(name.to_string())
    }

    /// Whether a file named `name` is in the spool (checked or not).
    fn has(&self, name: &WalFileName) -> bool {
        self.path(name).exists()
    }

    #[cfg(test)]
    fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether unsynced spooled files can be trusted: the spool was filled during this boot.
    /// Without a boot id every spooled file was fsynced.
    fn filled_this_boot(&self, boot: Option<&str>) -> bool {
        match boot {
            None => true,
            Some(b) => {
                std::fs::read_to_string(self.dir.join(BOOT_FILE)).is_ok_and(|text| text.trim() == b)
            }
        }
    }

    /// If a spooled copy of `name` exists and passes its check, its mtime; a copy that fails
    /// is removed and reported. A spool from another boot counts as empty.
    pub fn take(
        &self,
        name: &WalFileName,
        seg_size: SegSize,
        sysid: u64,
    ) -> anyhow::Result<Option<SystemTime>> {
        self.take_in_boot(name, seg_size, sysid, current_boot().as_deref())
    }

    fn take_in_boot(
        &self,
        name: &WalFileName,
        seg_size: SegSize,
        sysid: u64,
        boot: Option<&str>,
    ) -> anyhow::Result<Option<SystemTime>> {
        let path = self.path(name);
        if !self.filled_this_boot(boot) {
            return Ok(None);
        }
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IoError::new("examining", &path, e).into()),
        };
        let check = || -> anyhow::Result<SystemTime> {
            if meta.len() != seg_size.bytes() {
                anyhow::bail!("{} is {} bytes, not {seg_size}", path.display(), meta.len());
            }
            let mut head = [0u8; walpage::LONG_HEADER_LEN];
            let mut f = fs::open(&path)?;
            std::io::Read::read_exact(&mut f, &mut head)
                .map_err(|e| IoError::new("reading", &path, e))?;
            walpage::verify(name, &head, meta.len(), Some(sysid))?;
            Ok(meta
                .modified()
                .map_err(|e| IoError::new("reading the mtime of", &path, e))?)
        };
        match check() {
            Ok(mtime) => Ok(Some(mtime)),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// The live worker writing `name` into the spool right now, if any: its temporary file
    /// `.NAME.pitr-tmp.PID` with a live PID.
    fn writer_of(&self, name: &WalFileName) -> Option<u32> {
        let want = name.to_string();
        std::fs::read_dir(&self.dir)
            .ok()?
            .filter_map(Result::ok)
            .find_map(|ent| {
                let fname = ent.file_name();
                let t = tempname::parse(fname.to_str()?)?;
                (t.base == want && signal::process_alive(t.pid)).then_some(t.pid)
            })
    }

    /// Waits while a live worker writes `name` (at most `limit`), so that a call arriving while
    /// its segment is being prefetched takes the worker's copy instead of decoding the same
    /// segment a second time beside it (on two cores that doubled the work and slowed replay
    /// below no prefetch at all). Returns whether it waited.
    pub fn wait_for_writer(&self, name: &WalFileName, limit: Duration) -> bool {
        let Some(pid) = self.writer_of(name) else {
            return false;
        };
        let path = self.path(name);
        let tmp = tempname::of_writer(&path, pid);
        let start = Instant::now();
        while tmp.exists()
            && !path.exists()
            && signal::process_alive(pid)
            && start.elapsed() < limit
        {
            std::thread::sleep(WRITER_POLL);
        }
        log_verbose!(
            "waited {:.3}s for the prefetch worker writing {name}",
            start.elapsed().as_secs_f64()
        );
        true
    }

    /// Whether a prefetch worker holds the spool's lock now.
    fn worker_running(&self) -> bool {
        let path = self.dir.join(LOCK_FILE);
        path.exists() && matches!(lock::try_lock(&path), Ok(None))
    }

    /// Moves the spooled `name` to `target`.
    pub fn hand_over(&self, name: &WalFileName, target: &Path) -> anyhow::Result<()> {
        let path = self.path(name);
        match std::fs::rename(&path, target) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let data = fs::read(&path)?;
                let mut f = fs::DurableFile::create(target, Replace::Allow)?
                    .unsynced(Unsynced::RestoredWal);
                f.write_bytes(&data)?;
                f.commit(None)?;
                fs::remove_file_if_exists(&path)?;
                Ok(())
            }
            Err(e) => Err(IoError::new("renaming into place", target, e).into()),
        }
    }
}

/// Starts the background worker for the segments after the one just handed over. Failing to
/// start it costs speed, not correctness: it is logged and ignored.
pub fn start_worker(cfg: &Config, spool: &Spool) {
    // A live worker moves its window by itself as segments are taken; starting another only for
    // it to find the lock taken cost a process per segment.
    if spool.worker_running() {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            log_warning!("cannot start the prefetch worker: cannot find our own binary: {e}");
            return;
        }
    };
    let mut cmd = Program::new(exe);
    cmd.args(cfg.handed_on.worker_args(&cfg.wanted));
    if let Err(e) = cmd.spawn_detached() {
        log_warning!(
            "cannot start the prefetch worker for {}: {e}",
            spool.dir.display()
        );
    }
}

/// Removes stale spool entries: other timelines, positions at or before `after`, or beyond the
/// window, and temporary files of killed workers.
fn clean(dir: &Path, after: &WalFileName, window: u64, seg_size: SegSize) -> anyhow::Result<()> {
    let after_no = after.segno(seg_size)?.0;
    let rd = std::fs::read_dir(dir).map_err(|e| IoError::new("listing", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| IoError::new("listing", dir, e))?;
        let fname = ent.file_name().to_string_lossy().into_owned();
        if fname == LOCK_FILE || fname == BOOT_FILE {
            continue;
        }
        let keep = match WalFileName::parse(&fname) {
            Ok(w) if w.kind == WalKind::Segment && w.timeline == after.timeline => w
                .segno(seg_size)
                .map(|n| n.0 > after_no && n.0 <= after_no + window)
                .unwrap_or(false),
            _ => false,
        };
        if !keep {
            fs::remove_file_if_exists(&ent.path())?;
        }
    }
    Ok(())
}

/// Makes the spool this boot's: a spool from another boot (or of unknown boot) is emptied,
/// then the boot id is written durably, before any unsynced segment relies on it.
fn claim_for_boot(spool: &Spool, boot: Option<&str>) -> anyhow::Result<()> {
    let Some(b) = boot else { return Ok(()) };
    if spool.filled_this_boot(Some(b)) {
        return Ok(());
    }
    let rd = std::fs::read_dir(&spool.dir).map_err(|e| IoError::new("listing", &spool.dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| IoError::new("listing", &spool.dir, e))?;
        if ent.file_name() != LOCK_FILE {
            fs::remove_file_if_exists(&ent.path())?;
        }
    }
    let path = spool.dir.join(BOOT_FILE);
    fs::write_durable(&path, Replace::Allow, None, |f| {
        Ok(fs::write_all(f, &path, format!("{b}\n").as_bytes())?)
    })
}

/// Decoding threads of the worker: all cores but one. The worker runs while PostgreSQL's
/// startup process replays, which needs a core of its own (on two cores, decoding on both slowed
/// replay more than it sped up the spool, which stays ahead on one).
fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// The worker: fills the spool with the segments after `cfg.wanted`, and keeps the window
/// moving while PostgreSQL takes them. It ends when nothing has been taken for
/// [`WORKER_IDLE`], at the first segment not archived yet, or on an error: one worker for a
/// whole replay, where one per window paid its start and left a gap at every window's end.
/// From directories it decodes one segment at a time on all cores but replay's, and once the
/// window is full it watches the spool and fills it again when the first segment is taken;
/// from an object store, bound by round trips, it keeps several fetches in flight all the time
/// ([`pool`]).
pub fn run_worker(cfg: &Config) -> anyhow::Result<ExitCode> {
    let spool = Spool::new(&cfg.data_dir);
    std::fs::create_dir_all(&spool.dir)
        .map_err(|e| IoError::new("creating prefetch spool", &spool.dir, e))?;
    let Some(_guard) = lock::try_lock(&spool.dir.join(LOCK_FILE))? else {
        log_verbose!("another prefetch worker is running; leaving it to it");
        return Ok(ExitCode::SUCCESS);
    };
    let control = crate::fetch::read_control(cfg)?;
    let boot = current_boot();
    claim_for_boot(&spool, boot.as_deref())?;
    // A pitr-restore killed while writing `%p` leaves `.RECOVERYXLOG.pitr-tmp.PID` (16 MiB) in
    // pg_wal, which PostgreSQL never removes; its writer is gone once its PID is.
    let pg_wal = cfg.data_dir.join(pg::PG_WAL);
    for p in tempname::stale(&pg_wal, std::time::Duration::ZERO)? {
        fs::remove_file_if_exists(&p)?;
        log_verbose!(
            "removed {}, left by a pitr-restore that is gone",
            p.display()
        );
    }
    let sources = source::Sources::open(&cfg.sources, cfg.s3.as_ref())?;
    let filler = Filler {
        spool: &spool,
        sources: &sources,
        seg_size: control.wal_segment_size,
        sysid: control.system_identifier,
        window: u64::from(cfg.prefetch),
        boot: boot.as_deref(),
    };
    let mut after = cfg.wanted;
    if sources.has_store() {
        clean(&spool.dir, &after, filler.window, filler.seg_size)?;
        pool::run(&filler, after)?;
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        clean(&spool.dir, &after, filler.window, filler.seg_size)?;
        if !filler.fill(&after)? {
            return Ok(ExitCode::SUCCESS);
        }
        match filler.wait_for_progress(&after, WORKER_IDLE)? {
            Some(taken) => after = taken,
            None => {
                log_verbose!("prefetch worker: nothing taken after {after} for a while; ending");
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

/// What the worker fills the spool with, set up once.
struct Filler<'a> {
    spool: &'a Spool,
    sources: &'a source::Sources,
    seg_size: SegSize,
    sysid: u64,
    window: u64,
    boot: Option<&'a str>,
}

impl Filler<'_> {
    /// The window's names after `after`, in order.
    fn window_after(&self, after: &WalFileName) -> anyhow::Result<Vec<WalFileName>> {
        let mut names = Vec::new();
        let mut name = *after;
        for _ in 0..self.window {
            name = name.next(self.seg_size)?;
            names.push(name);
        }
        Ok(names)
    }

    /// Fills the window after `after` with what is not spooled yet, up to the first segment not
    /// archived, one segment at a time decoded on all cores but replay's (a directory is bound
    /// by decoding, which must leave replay a core). Returns whether the whole window is
    /// spooled (the worker may go on).
    fn fill(&self, after: &WalFileName) -> anyhow::Result<bool> {
        let mut names = self.window_after(after)?;
        names.retain(|n| !self.spool.has(n));
        if names.is_empty() {
            return Ok(true);
        }
        let hits = match self.sources.find_many(&names) {
            Ok(hits) => hits,
            Err(e) => {
                log_verbose!("not prefetching after {after}: {e}");
                return Ok(false);
            }
        };
        let wanted = names.len();
        let found: Vec<(WalFileName, source::Hit)> = names
            .into_iter()
            .zip(hits)
            .map_while(|(name, hit)| hit.map(|h| (name, h)))
            .collect();
        let threads = worker_threads();
        for hit in &found {
            if !self.fetch(hit, threads)? {
                return Ok(false);
            }
        }
        Ok(found.len() == wanted)
    }

    /// Fetches one segment into the spool; `Ok(false)` when it cannot be used (the foreground
    /// call meets it, logs it and refuses it).
    fn fetch(
        &self,
        (name, found): &(WalFileName, source::Hit),
        threads: usize,
    ) -> anyhow::Result<bool> {
        let opts = source::RestoreOptions {
            mtime: Some(found.mtime()),
            unsynced: self.boot.is_some().then_some(Unsynced::BootScopedSpool),
            threads,
        };
        match self
            .sources
            .restore_verified(found, name, self.sysid, &self.spool.path(name), opts)
        {
            Ok(()) => {
                log_verbose!("prefetched {name}");
                Ok(true)
            }
            Err(source::Error::Write(e)) => {
                Err(anyhow::Error::from(e).context(format!("prefetching {name}")))
            }
            Err(e) => {
                log_verbose!("not prefetching {name}: {e}");
                Ok(false)
            }
        }
    }

    /// Waits (at most `idle`) until PostgreSQL has taken the first segment of the full window
    /// after `after`, and returns the last of the window's leading segments that are gone from
    /// the spool: the window then moves past it. `None` when nothing was taken in time.
    fn wait_for_progress(
        &self,
        after: &WalFileName,
        idle: Duration,
    ) -> anyhow::Result<Option<WalFileName>> {
        let names = self.window_after(after)?;
        let Some(first) = names.first() else {
            return Ok(None);
        };
        let start = Instant::now();
        while self.spool.has(first) {
            if start.elapsed() >= idle {
                return Ok(None);
            }
            std::thread::sleep(PROGRESS_POLL);
        }
        let taken = names
            .iter()
            .take_while(|n| !self.spool.has(n))
            .last()
            .copied();
        Ok(taken)
    }
}

/// How long a worker with a full window waits for PostgreSQL to take a segment before it ends
/// (the next call starts another): replay of one segment takes far less, and a standby that has
/// caught up or a server that stopped should not keep a worker.
const WORKER_IDLE: Duration = Duration::from_secs(2);

/// How often a worker with a full window looks whether PostgreSQL took a segment.
const PROGRESS_POLL: Duration = Duration::from_millis(2);

/// How often a call waiting for the worker's copy of its segment looks again.
const WRITER_POLL: Duration = Duration::from_millis(2);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn size() -> SegSize {
        SegSize::new(1 << 20).unwrap()
    }

    /// What the worker leaves: `data` under `path` with `mtime`, unsynced.
    fn write_unsynced(path: &Path, data: &[u8], mtime: SystemTime) -> anyhow::Result<()> {
        let mut f =
            fs::DurableFile::create(path, Replace::Allow)?.unsynced(Unsynced::BootScopedSpool);
        f.write_bytes(data)?;
        f.commit(Some(mtime))?;
        Ok(())
    }

    /// Sources of one plain directory, as the worker opens them.
    pub(super) fn dir_sources(dir: &Path) -> source::Sources {
        let loc = pitr_common::location::Location::dir(pitr_common::compress::Codec::None, dir);
        source::Sources::open(&[loc], None).unwrap()
    }

    /// A filler of `spool` from `sources` with `window`: 1 MiB segments of system 7.
    pub(super) fn filler<'a>(
        spool: &'a Spool,
        sources: &'a source::Sources,
        window: u64,
    ) -> Filler<'a> {
        Filler {
            spool,
            sources,
            seg_size: size(),
            sysid: 7,
            window,
            boot: None,
        }
    }

    /// A spool (its directory made) in a new temporary data directory.
    pub(super) fn new_spool() -> (tempfile::TempDir, Spool) {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::new(d.path());
        std::fs::create_dir_all(&spool.dir).unwrap();
        (d, spool)
    }

    fn seg(name: &WalFileName, sysid: u64) -> Vec<u8> {
        let mut b = walpage::fake_header(name, size(), sysid);
        b.resize(size().as_usize(), 1);
        b
    }

    #[test]
    fn take_checks_and_discards() {
        let (d, spool) = new_spool();
        claim_for_boot(&spool, current_boot().as_deref()).unwrap();
        let n = WalFileName::parse("000000010000000000000005").unwrap();
        assert!(spool.take(&n, size(), 7).unwrap().is_none());
        std::fs::write(spool.path(&n), seg(&n, 7)).unwrap();
        assert!(spool.take(&n, size(), 7).unwrap().is_some());
        let target = d.path().join("RECOVERYXLOG");
        spool.hand_over(&n, &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), seg(&n, 7));
        // Foreign: discarded.
        std::fs::write(spool.path(&n), seg(&n, 8)).unwrap();
        assert!(spool.take(&n, size(), 7).is_err());
        assert!(!spool.path(&n).exists());
        // Misnamed: discarded.
        let m = WalFileName::parse("000000010000000000000006").unwrap();
        std::fs::write(spool.path(&m), seg(&n, 7)).unwrap();
        assert!(spool.take(&m, size(), 7).is_err());
        assert!(!spool.path(&m).exists());
    }

    #[test]
    fn a_spool_of_another_boot_is_never_read_and_is_emptied_by_the_worker() {
        let (_d, spool) = new_spool();
        let n = WalFileName::parse("000000010000000000000005").unwrap();
        claim_for_boot(&spool, Some("boot-a")).unwrap();
        assert_eq!(
            std::fs::read_to_string(spool.dir.join(BOOT_FILE)).unwrap(),
            "boot-a\n"
        );
        let mtime = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        write_unsynced(&spool.path(&n), &seg(&n, 7), mtime).unwrap();
        assert_eq!(
            spool.take_in_boot(&n, size(), 7, Some("boot-a")).unwrap(),
            Some(mtime)
        );
        // After a reboot the same, valid-looking file is not handed over...
        assert_eq!(
            spool.take_in_boot(&n, size(), 7, Some("boot-b")).unwrap(),
            None
        );
        // ...and the next worker empties the spool before writing anything.
        std::fs::write(spool.dir.join(LOCK_FILE), b"").unwrap();
        claim_for_boot(&spool, Some("boot-b")).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&spool.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [BOOT_FILE, LOCK_FILE]);
        // A spool without a boot file (older pitr-restore, fsynced files) counts as another
        // boot's when the kernel has a boot id, and as trusted when it has none.
        std::fs::remove_file(spool.dir.join(BOOT_FILE)).unwrap();
        write_unsynced(&spool.path(&n), &seg(&n, 7), mtime).unwrap();
        assert_eq!(
            spool.take_in_boot(&n, size(), 7, Some("boot-b")).unwrap(),
            None
        );
        assert!(spool.take_in_boot(&n, size(), 7, None).unwrap().is_some());
    }

    #[test]
    fn a_call_waits_for_the_worker_writing_its_segment_and_not_for_a_dead_one() {
        let (d, spool) = new_spool();
        claim_for_boot(&spool, current_boot().as_deref()).unwrap();
        let n = WalFileName::parse("000000010000000000000005").unwrap();
        let other = WalFileName::parse("000000010000000000000006").unwrap();
        // Nobody writes it: no wait.
        assert!(!spool.wait_for_writer(&n, Duration::from_secs(5)));
        // A writer that is gone (a worker killed mid-write): its temp file is no reason to wait.
        // (No process has this PID: Linux's pid_max is at most 2^22.)
        let dead_pid = i32::MAX as u32;
        let dead_tmp = tempname::of_writer(&spool.path(&n), dead_pid);
        std::fs::write(&dead_tmp, b"partial").unwrap();
        assert!(!spool.wait_for_writer(&n, Duration::from_secs(5)));
        std::fs::remove_file(&dead_tmp).unwrap();
        // A live writer of another segment: no wait either.
        let live_tmp_other = tempname::for_path(&spool.path(&other));
        std::fs::write(&live_tmp_other, b"partial").unwrap();
        assert!(!spool.wait_for_writer(&n, Duration::from_secs(5)));
        std::fs::remove_file(&live_tmp_other).unwrap();
        // A live writer of this segment: the call waits until the copy is in place, then takes it.
        let tmp = tempname::for_path(&spool.path(&n));
        std::fs::write(&tmp, seg(&n, 7)).unwrap();
        let (final_path, tmp2) = (spool.path(&n), tmp.clone());
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            std::fs::rename(&tmp2, &final_path).unwrap();
        });
        let t = Instant::now();
        assert!(spool.wait_for_writer(&n, Duration::from_secs(30)));
        assert!(t.elapsed() >= Duration::from_millis(200));
        writer.join().unwrap();
        assert!(spool.take(&n, size(), 7).unwrap().is_some());
        spool.hand_over(&n, &d.path().join("RECOVERYXLOG")).unwrap();
        // A writer that never finishes is waited for only up to the limit.
        std::fs::write(&tmp, b"partial").unwrap();
        let t = Instant::now();
        assert!(spool.wait_for_writer(&n, Duration::from_millis(100)));
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert!(spool.take(&n, size(), 7).unwrap().is_none());
    }

    #[test]
    fn the_worker_moves_its_window_when_postgresql_takes_segments_and_ends_when_idle() {
        let (_d, spool) = new_spool();
        let archive = tempfile::tempdir().unwrap();
        let sources = dir_sources(archive.path());
        let filler = filler(&spool, &sources, 3);
        let after = WalFileName::parse("000000010000000000000005").unwrap();
        let window = filler.window_after(&after).unwrap();
        assert_eq!(
            window.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "000000010000000000000006",
                "000000010000000000000007",
                "000000010000000000000008"
            ]
        );
        for n in &window {
            std::fs::write(spool.path(n), b"").unwrap();
        }
        // Nothing taken: the worker ends after the idle time.
        let t = Instant::now();
        assert_eq!(
            filler
                .wait_for_progress(&after, Duration::from_millis(100))
                .unwrap(),
            None
        );
        assert!(t.elapsed() >= Duration::from_millis(100));
        // PostgreSQL takes two (renamed away by the calls): the window moves past the second.
        let taken: Vec<PathBuf> = window[..2].iter().map(|n| spool.path(n)).collect();
        let taker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            for p in taken.iter().rev() {
                std::fs::remove_file(p).unwrap();
            }
        });
        assert_eq!(
            filler
                .wait_for_progress(&after, Duration::from_secs(30))
                .unwrap(),
            Some(window[1])
        );
        taker.join().unwrap();
        // The next fill wants the two after the one still spooled; none is archived, so the
        // worker stops there.
        assert!(!filler.fill(&window[1]).unwrap());
        assert!(spool.path(&window[2]).exists());
    }

    #[test]
    fn clean_keeps_only_the_window() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "000000010000000000000004",
            "000000010000000000000005",
            "000000010000000000000006",
            "000000010000000000000009",
            "000000020000000000000006",
            ".000000010000000000000007.pitr-tmp.99",
            ".lock",
        ] {
            std::fs::write(d.path().join(f), b"").unwrap();
        }
        let after = WalFileName::parse("000000010000000000000005").unwrap();
        clean(d.path(), &after, 3, size()).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".lock", "000000010000000000000006"]);
    }
}

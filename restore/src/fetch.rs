//! Restoring one WAL file for PostgreSQL: wait for it, verify it, hand it over.
//!
//! The steps of one call (ARCHITECTURE.md, "pitr-restore"), once per `--poll-interval` until
//! one ends the call: an immediate finish (trigger containing `NOW`, or SIGUSR1) exits 1; a
//! verified copy in the prefetch spool is renamed into `%p`; otherwise the sources are searched,
//! the file is decompressed, verified and written to `%p` through a temporary name. A missing
//! file exits 1 when it is a `.history` file, in standby mode, or while finishing; otherwise we
//! wait, removing unneeded segments if asked, and exit when the server that called us is gone.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use pitr_common::controldata::{self, ControlData};
use pitr_common::exit::{self, Failure};
use pitr_common::fs::{IoError, Unsynced};
use pitr_common::wal::{SegSize, WalKind};
use pitr_common::{log_error, log_hint, log_info, log_verbose, log_warning, pg, pgconf, signal};
use pitr_common::{source, tempname};

use crate::args::Config;
use crate::{prefetch, remove};

/// How a finish was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Keep replaying what is in the archive; end at the first missing file.
    Smart,
    /// End now.
    Now,
}

fn finish_requested(cfg: &Config) -> Option<Finish> {
    if signal::usr1_received() {
        return Some(Finish::Now);
    }
    let trigger = cfg.finish_trigger.as_ref()?;
    match std::fs::read(trigger) {
        Ok(content) => {
            let text = String::from_utf8_lossy(&content);
            if text.trim() == "NOW" {
                Some(Finish::Now)
            } else {
                Some(Finish::Smart)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            // It exists but cannot be read: the operator asked for a finish; be smart about it.
            log_warning!(
                "finish trigger {} exists but cannot be read ({e}); finishing smartly",
                trigger.display()
            );
            Some(Finish::Smart)
        }
    }
}

fn not_available(msg: &str) -> anyhow::Result<ExitCode> {
    log_info!("{msg}");
    Ok(ExitCode::from(exit::NOT_FOUND))
}

/// Reads pg_control; it is needed for the system identifier and the segment size. Failure is
/// fatal for recovery (126), never "end of archive".
pub fn read_control(cfg: &Config) -> anyhow::Result<ControlData> {
    controldata::read(&cfg.data_dir, cfg.pgcontroldata.as_deref()).map_err(|e| {
        anyhow::Error::from(e).context(
            Failure::new(format!(
                "cannot read pg_control of {}",
                cfg.data_dir.display()
            ))
            .hint("run pitr-restore from the data directory (PostgreSQL does) or give --data-dir")
            .status(exit::RESTORE_FATAL),
        )
    })
}

/// Whether the server that called us is gone: our parent changed (we were orphaned), or the
/// postmaster named in postmaster.pid no longer exists.
struct CallerWatch {
    parent: u32,
    postmaster: Option<u32>,
}

impl CallerWatch {
    fn new(data_dir: &Path) -> Self {
        // A single-user backend writes its pid negated.
        let postmaster = std::fs::read_to_string(data_dir.join(pg::POSTMASTER_PID))
            .ok()
            .and_then(|t| {
                t.lines()
                    .next()
                    .and_then(|l| l.trim().trim_start_matches('-').parse().ok())
            });
        CallerWatch {
            parent: signal::parent_pid(),
            postmaster,
        }
    }

    fn gone(&self) -> bool {
        signal::parent_pid() != self.parent
            || self.postmaster.is_some_and(|p| !signal::process_alive(p))
    }

    /// Whether a live server owns the data directory. Only its startup process asks for one
    /// segment after another; a caller with the server down (pg_rewind --restore-target-wal)
    /// rewrites pg_wal itself, and a prefetch worker there would race it.
    fn server_running(&self) -> bool {
        self.postmaster.is_some_and(signal::process_alive)
    }
}

/// Logs a waiting condition when it changes, and again every minute while it lasts.
struct Quiet {
    last: Option<(String, Instant)>,
}

impl Quiet {
    fn say(&mut self, error: bool, msg: String) {
        self.say_as(error, msg.clone(), msg);
    }

    /// Like [`Quiet::say`] for an error with its HINT line; the pair is one message.
    fn say_hinted(&mut self, msg: String, hint: &str) {
        let key = format!("{msg}\n{hint}");
        if self.due(&key) {
            log_error!("{msg}");
            log_hint!("{hint}");
            self.last = Some((key, Instant::now()));
        }
    }

    /// Whether a message with `key` is due: new, or repeated after a minute.
    fn due(&self, key: &str) -> bool {
        match &self.last {
            Some((k, at)) => k != key || at.elapsed() >= Duration::from_secs(60),
            None => true,
        }
    }

    /// Like [`Quiet::say`], but a repeat is recognised by `key` rather than by the message, so
    /// that a message carrying a countdown is not logged on every poll.
    fn say_as(&mut self, error: bool, key: String, msg: String) {
        if self.due(&key) {
            if error {
                log_error!("{msg}");
            } else {
                log_info!("{msg}");
            }
            self.last = Some((key, Instant::now()));
        }
    }
}

/// A warm spare waits in restore_command; PostgreSQL 15+'s WAL read-ahead then asks for the
/// next segment before replaying the current one, and a fresh standby never gets consistent.
/// The setting is read as the server decides it ([`pgconf::lookup`]: its command line, the
/// configuration file it was started with, includes followed, `postgresql.auto.conf`); when a
/// file it reads cannot be read here, the server itself is asked (`SHOW`), and when it cannot
/// answer either, nothing is said: a false warning is worse than none.
fn warn_if_recovery_prefetch_on(data_dir: &Path) {
    // Before 15 there is no read-ahead (and no such setting to suggest).
    if pg::major_version(data_dir).is_ok_and(|m| m < 15) {
        return;
    }
    let value = match pgconf::lookup(data_dir, "recovery_prefetch") {
        pgconf::Lookup::Set(value) => value,
        pgconf::Lookup::Default => "try".to_owned(),
        pgconf::Lookup::Unreadable(path) => match show(data_dir, "recovery_prefetch") {
            Ok(value) => {
                log_verbose!(
                    "{} cannot be read; the server says recovery_prefetch = {value}",
                    path.display()
                );
                value
            }
            Err(e) => {
                log_verbose!(
                    "cannot tell whether recovery_prefetch is on: {} cannot be read and the server cannot be asked ({e:#})",
                    path.display()
                );
                return;
            }
        },
    };
    if pgconf::is_off(&value) {
        return;
    }
    log_warning!(
        "recovery_prefetch is on (the default): while pitr-restore waits for the next segment, PostgreSQL's WAL read-ahead stalls replay of the current one"
    );
    log_hint!(
        "set recovery_prefetch = off in postgresql.conf for a warm spare, or use standby.signal with --streaming-replication"
    );
}

/// A standby set up to stream (`standby.signal` and a `primary_conninfo`) whose
/// restore_command waits for missing segments never streams: PostgreSQL turns to the primary
/// only once restore_command has answered. OmniPITR's command lines without `-sr` do this.
fn warn_if_streaming_standby(data_dir: &Path) {
    if !data_dir.join(pg::STANDBY_SIGNAL).exists() {
        return;
    }
    match pgconf::lookup(data_dir, "primary_conninfo") {
        pgconf::Lookup::Set(v) if !v.trim().is_empty() => {}
        _ => return,
    }
    log_warning!(
        "this server is a standby with a primary_conninfo, but pitr-restore waits for each segment the archive does not have yet: the server does not stream while it waits"
    );
    log_hint!(
        "add --streaming-replication to restore_command: a missing segment is then answered at once, and the server streams it"
    );
}

/// Asks the running server of `data_dir` for a setting, through the socket (or address) and
/// port its `postmaster.pid` records, as the data directory's owner (who runs us).
fn show(data_dir: &Path, parameter: &str) -> anyhow::Result<String> {
    let pid_file = data_dir.join(pg::POSTMASTER_PID);
    let text =
        std::fs::read_to_string(&pid_file).map_err(|e| IoError::new("reading", &pid_file, e))?;
    let lines: Vec<&str> = text.lines().collect();
    let port = lines
        .get(3)
        .and_then(|p| p.trim().parse::<u16>().ok())
        .ok_or_else(|| anyhow::anyhow!("{} names no port", pid_file.display()))?;
    let host = match (
        lines.get(4).map(|l| l.trim()),
        lines.get(5).map(|l| l.trim()),
    ) {
        (Some(socket), _) if !socket.is_empty() => socket.to_owned(),
        (_, Some("*")) | (_, Some("")) | (_, None) => "127.0.0.1".to_owned(),
        (_, Some(listen)) => listen.split(',').next().unwrap_or(listen).trim().to_owned(),
    };
    // libpq's default role is the login name (the data directory's owner, who runs us); a
    // cluster made with `initdb -U postgres` by another login has only `postgres`.
    let mut roles = vec![pg::user_name(pg::effective_uid())];
    if let Some(role) = std::env::var("PGUSER").ok().filter(|r| !r.is_empty()) {
        roles.insert(0, role);
    }
    roles.push("postgres".to_owned());
    roles.dedup();
    let mut last = None;
    let mut client = None;
    for user in roles {
        let connection = pitr_common::pgconn::Connection {
            host: host.clone(),
            port,
            user,
            dbname: "postgres".to_owned(),
            password: std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()),
        };
        match connection.connect("pitr-restore") {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut client) = client else {
        return Err(last.unwrap_or_else(|| anyhow::anyhow!("no role to connect as")));
    };
    let row = client
        .query_one(&format!("SHOW {parameter}"), &[])
        .map_err(|e| anyhow::anyhow!("SHOW {parameter}: {}", pitr_common::pgconn::message(&e)))?;
    Ok(row.try_get::<_, String>(0)?)
}

/// How long a call waits for the prefetch worker to finish writing the segment it asks for
/// before fetching it itself: well beyond one segment's decoding and a store's round trip, short
/// of what PostgreSQL would notice.
const WORKER_WAIT_LIMIT: Duration = Duration::from_secs(10);

/// How long a warm spare goes on checking an archived file it refused (damaged, foreign, of a
/// codec pitr cannot read) while the file stays the same, before it stops recovery (126). A
/// file some tool is still writing under its final name (`cp` in an `archive_command`, a copy
/// by hand) changes meanwhile, and is checked again from the start once it does.
pub(crate) const REFUSED_GRACE: Duration = Duration::from_secs(10);

/// The archived file a call refused, and since when it has been that same file.
#[derive(Debug, Default)]
pub(crate) struct Refused {
    last: Option<(String, Instant)>,
}

impl Refused {
    /// Records a refusal of the file identified by `file` (its location and modification time,
    /// which a write changes; or the error naming a file of a codec pitr cannot read) at `now`;
    /// returns how long the same file has been refused.
    pub(crate) fn refused(&mut self, file: String, now: Instant) -> Duration {
        match &self.last {
            Some((f, since)) if *f == file => now.saturating_duration_since(*since),
            _ => {
                self.last = Some((file, now));
                Duration::ZERO
            }
        }
    }

    /// Whether this call refused a file at all.
    pub(crate) fn any(&self) -> bool {
        self.last.is_some()
    }
}

/// What one call works with, set up once.
struct Call<'a> {
    cfg: &'a Config,
    sysid: u64,
    seg_size: SegSize,
    target: PathBuf,
    name: String,
    started: Instant,
    watch: CallerWatch,
    quiet: Quiet,
    refused: Refused,
    spool: prefetch::Spool,
    warned_prefetch: bool,
    sources: source::Sources,
}

/// What one look at the spool or the archive found.
enum Look {
    /// The call is over with this status.
    Done(ExitCode),
    /// Nothing to hand over yet: wait and look again.
    Wait,
    /// Not in the archive.
    Missing,
}

impl<'a> Call<'a> {
    /// Step 1: the sources must be readable, pg_control must be; a temporary `%p` left by a
    /// killed pitr-restore goes, and ours goes with us if a shutdown signal ends this call.
    fn prepare(cfg: &'a Config) -> anyhow::Result<Self> {
        crate::args::check_sources(&cfg.sources, cfg.doubt_is_not_found())?;
        let sources = source::Sources::open(&cfg.sources, cfg.s3.as_ref())
            .map_err(|e| unreadable_archive(cfg, &cfg.wanted.to_string(), e))?;
        let control = read_control(cfg)?;
        let target = cfg
            .target
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no %p given"))?;
        signal::remove_on_fatal_signal(&tempname::for_path(&target));
        sweep_dead_temps(&target);
        Ok(Call {
            cfg,
            sysid: control.system_identifier,
            seg_size: control.wal_segment_size,
            target,
            name: cfg.wanted.to_string(),
            started: Instant::now(),
            watch: CallerWatch::new(&cfg.data_dir),
            quiet: Quiet { last: None },
            refused: Refused::default(),
            spool: prefetch::Spool::new(&cfg.data_dir),
            warned_prefetch: false,
            sources,
        })
    }

    /// Prefetching applies to segments asked for by a running server (see
    /// [`CallerWatch::server_running`]).
    fn prefetching(&self) -> bool {
        self.cfg.wanted.kind == WalKind::Segment
            && self.cfg.prefetch > 0
            && self.watch.server_running()
    }

    fn too_fresh(&mut self, mtime: SystemTime, finishing: bool) -> bool {
        let Some(delay) = self.cfg.recovery_delay.filter(|_| !finishing) else {
            return false;
        };
        let age = SystemTime::now()
            .duration_since(mtime)
            .unwrap_or(Duration::ZERO);
        if age >= delay {
            return false;
        }
        let left = delay - age;
        let key = format!("{} is too fresh", self.name);
        let msg = format!(
            "{} found, but it is too fresh: waiting {}s more (--recovery-delay)",
            self.name,
            left.as_secs()
        );
        self.quiet.say_as(false, key, msg);
        true
    }

    fn restored(&self, how: &str) -> anyhow::Result<ExitCode> {
        if self.prefetching() {
            prefetch::start_worker(self.cfg, &self.spool);
        }
        log_info!("Segment {} restored{how}", self.name);
        log_verbose!(
            "Timer [restore {}] took: {:.3}s",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
        Ok(ExitCode::SUCCESS)
    }

    /// Step 2: a verified copy prepared by the prefetch worker is handed over with a rename.
    fn look_in_spool(&mut self, finishing: bool) -> anyhow::Result<Option<Look>> {
        if !self.prefetching() {
            return Ok(None);
        }
        let mut taken = self.spool.take(&self.cfg.wanted, self.seg_size, self.sysid);
        // A segment the worker is writing now is waited for: from a directory a second decode
        // beside the worker's costs a core that replay needs, and from an object store a second
        // fetch costs a round trip that the worker's, already under way, saves.
        if matches!(taken, Ok(None))
            && self
                .spool
                .wait_for_writer(&self.cfg.wanted, WORKER_WAIT_LIMIT)
        {
            taken = self.spool.take(&self.cfg.wanted, self.seg_size, self.sysid);
        }
        match taken {
            Ok(Some(mtime)) => {
                if self.too_fresh(mtime, finishing) {
                    return Ok(Some(Look::Wait));
                }
                // The worker may have removed the copy since (it removes what it takes for
                // passed); any failure falls back to the archive, which restores the file or
                // answers with the status its own failure calls for.
                if let Err(e) = self.spool.hand_over(&self.cfg.wanted, &self.target) {
                    log_warning!(
                        "cannot hand over prefetched {}: {e:#}; restoring it from the archive",
                        self.name
                    );
                    return Ok(None);
                }
                Ok(Some(Look::Done(self.restored(" (prefetched)")?)))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                log_warning!("discarding prefetched {}: {e:#}", self.name);
                Ok(None)
            }
        }
    }

    /// Step 3: the sources, every stored form; a found file is verified into `%p`. A damaged or
    /// foreign file is never handed over ([`Call::refuse`]): a warm spare stops recovery (126)
    /// once the file has stayed the same for [`REFUSED_GRACE`], a standby answers 1.
    fn look_in_archive(&mut self, finishing: bool) -> anyhow::Result<Look> {
        let found = match self.sources.find(&self.cfg.wanted) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(Look::Missing),
            Err(e @ source::Error::Unsupported { .. }) => {
                let file = format!("{e}");
                let refusal = format!("cannot restore {}: {e}", self.name);
                return self.refuse(
                    file,
                    refusal,
                    "store it with a codec pitr reads (zstd, gzip or none)",
                );
            }
            Err(e) => return Err(unreadable_archive(self.cfg, &self.name, e)),
        };
        if self.too_fresh(found.mtime(), finishing) {
            return Ok(Look::Wait);
        }
        // From an object store the worker starts now, before this call's own fetch: its first
        // lookups and GETs then overlap this round trip instead of following it (the spool
        // missed, so no worker is ahead of this segment). From a directory it starts after, so
        // that this call's decoding has every core.
        if self.prefetching() && self.sources.has_store() {
            prefetch::start_worker(self.cfg, &self.spool);
        }
        let opts = source::RestoreOptions {
            unsynced: Some(Unsynced::RestoredWal),
            ..source::RestoreOptions::default()
        };
        match self.sources.restore_verified(&found, &self.cfg.wanted, self.sysid, &self.target, opts) {
            Ok(()) => Ok(Look::Done(self.restored("")?)),
            Err(source::Error::Write(e)) => Err(anyhow::Error::from(e).context(
                Failure::new(format!("cannot write {} for PostgreSQL", self.target.display()))
                    .hint("free space in pg_wal (a full pg_wal stops the server) and check its permissions; recovery stops rather than ending early")
                    .status(exit::RESTORE_FATAL),
            )),
            Err(
                e @ (source::Error::Store(_)
                | source::Error::Foreign { .. }
                | source::Error::BadMarker { .. }),
            ) => {
                Err(unreadable_archive(self.cfg, &self.name, e))
            }
            Err(e) => {
                let refusal = format!("archived {} is not usable, not restoring it: {e:#}", self.name);
                self.refuse(format!("{found:?}"), refusal, "replace the archived file with a good copy")
            }
        }
    }

    /// An archived file that must not be handed over (`refusal` says why, `fix` how to mend
    /// it; `file` identifies it as found: location and modification time, or the error naming
    /// it). A standby, which never promotes on a failed restore_command, gets 1 and retries.
    /// A warm spare, where 1 would end recovery at the wrong point, logs the ERROR and checks
    /// again while the file stays the same, for up to [`REFUSED_GRACE`] (a copy still being
    /// written under its final name changes, and starts the wait again), then stops recovery:
    /// exit 126, the server shuts down and promotes nothing.
    fn refuse(&mut self, file: String, refusal: String, fix: &str) -> anyhow::Result<Look> {
        if self.cfg.doubt_is_not_found() {
            log_error!("{refusal}");
            log_hint!("{fix}; the standby retries it");
            return Ok(Look::Done(ExitCode::from(exit::NOT_FOUND)));
        }
        if self.refused.refused(file, Instant::now()) >= REFUSED_GRACE {
            return Err(Failure::new(refusal)
                .hint(format!(
                    "{fix}, then start the server again; recovery stops rather than ending early"
                ))
                .status(exit::RESTORE_FATAL)
                .into());
        }
        // One message with its HINT, so that Quiet sees the same condition on every poll (two
        // alternating messages were each logged every poll).
        self.quiet.say_hinted(
            refusal,
            &format!(
                "{fix}; pitr-restore checks it again, and stops recovery if it stays so for {} s",
                REFUSED_GRACE.as_secs()
            ),
        );
        Ok(Look::Wait)
    }

    /// Step 4: a missing file. Ends the call (exit 1) for a `.history` file, while finishing,
    /// in a point-in-time restore (`--no-wait`), in standby mode, or with no server running;
    /// otherwise we wait.
    fn missing(&mut self, finishing: bool) -> Option<anyhow::Result<ExitCode>> {
        let name = &self.name;
        if self.cfg.wanted.kind == WalKind::History {
            return Some(not_available(&format!(
                "requested history file {name} is not in the archive"
            )));
        }
        if finishing {
            return Some(not_available(&format!(
                "Got finish request: {name} is not in the archive; ending recovery"
            )));
        }
        if self.cfg.no_wait && !self.refused.any() {
            log_info!(
                "{name} is not in the archive; a point-in-time restore does not wait for it (--no-wait)"
            );
            return Some(Ok(ExitCode::from(exit::NOT_FOUND)));
        }
        // A file this call refused and that is gone now is being replaced (a repair removes
        // the damaged copy, then writes the good one): not the end of the archive, where a
        // warm spare given --streaming-replication (1 ends its recovery) would promote. (A
        // standby never gets here with a refused file: it answers 1 at the refusal.)
        if self.cfg.streaming && !self.refused.any() {
            log_verbose!("{name} is not in the archive (standby mode: not waiting)");
            return Some(Ok(ExitCode::from(exit::NOT_FOUND)));
        }
        // Only a server's startup process waits for WAL still to come. With no server running
        // in the data directory the caller is pg_rewind --restore-target-wal (or a call by
        // hand), which needs an answer: waiting held pg_rewind for good.
        if !self.watch.server_running() && !self.refused.any() {
            log_info!(
                "{name} is not in the archive; no server runs in {}, so not waiting for it",
                std::path::absolute(&self.cfg.data_dir)
                    .unwrap_or_else(|_| self.cfg.data_dir.clone())
                    .display()
            );
            return Some(Ok(ExitCode::from(exit::NOT_FOUND)));
        }
        if !self.warned_prefetch {
            warn_if_recovery_prefetch_on(&self.cfg.data_dir);
            if !self.cfg.streaming {
                warn_if_streaming_standby(&self.cfg.data_dir);
            }
            self.warned_prefetch = true;
        }
        self.quiet.say(false, format!("waiting for {name}"));
        None
    }

    /// Sleeps one poll interval, watching for the caller's exit and SIGUSR1; `Some` when the
    /// caller is gone.
    fn sleep(&self) -> Option<anyhow::Result<ExitCode>> {
        let until = Instant::now() + self.cfg.poll;
        loop {
            if self.watch.gone() {
                return Some(not_available(&format!(
                    "the server that asked for {} is gone; exiting",
                    self.name
                )));
            }
            let now = Instant::now();
            if signal::usr1_received() || now >= until {
                return None;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(100)));
        }
    }
}

/// An archive that cannot be read (a directory, or an object store that cannot be reached, set
/// up or read, or whose cluster marker names another system): never "end of archive". A warm
/// spare stops (126); a standby, which never promotes on a failed restore_command, gets 1 and
/// keeps streaming.
fn unreadable_archive(cfg: &Config, name: &str, e: source::Error) -> anyhow::Error {
    let fix = match &e {
        source::Error::Store(s) => s.hint(),
        source::Error::Foreign { .. } | source::Error::BadMarker { .. } => {
            "give the archive of this cluster in --source (each cluster archives under a prefix of its own)".to_string()
        }
        _ => "make the archive readable by the user PostgreSQL runs as".to_string(),
    };
    let (status, hint) = if cfg.doubt_is_not_found() {
        (
            exit::NOT_FOUND,
            format!("{fix}; the standby keeps streaming and retries"),
        )
    } else {
        (
            exit::RESTORE_FATAL,
            format!("{fix}; recovery stops rather than ending early"),
        )
    };
    anyhow::Error::from(e).context(
        Failure::new(format!("cannot look for {name} in the archive"))
            .hint(hint)
            .status(status),
    )
}

/// Removes temporary `%p` files beside `target` whose pitr-restore is gone (killed with -9):
/// PostgreSQL never removes them, and each is a segment's size.
fn sweep_dead_temps(target: &Path) {
    let Some(dir) = target.parent() else { return };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    match tempname::stale(dir, Duration::ZERO) {
        Ok(stale) => {
            for p in stale {
                match pitr_common::fs::remove_file_if_exists(&p) {
                    Ok(()) => log_verbose!(
                        "removed {}, left by a pitr-restore that is gone",
                        p.display()
                    ),
                    Err(e) => log_warning!("{e}"),
                }
            }
        }
        Err(e) => log_warning!("{e}"),
    }
}

/// Runs one restore_command call.
pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let mut call = Call::prepare(cfg)?;
    let mut remover = remove::Remover::default();
    if cfg.remove_unneeded && cfg.remove_before {
        remover.pass(cfg, call.sysid)?;
    }
    loop {
        let finish = finish_requested(cfg);
        // An immediate finish skips the segments left, never a timeline history file: a
        // promoting server picks its new timeline by asking for history files until one is
        // missing, and a false "missing" makes it take a timeline another server already has
        // (whose history file pitr-archive then refuses to replace: archiving stops).
        if finish == Some(Finish::Now) && cfg.wanted.kind != WalKind::History {
            return not_available(&format!(
                "Got immediate finish request: not restoring {}, ending recovery",
                call.name
            ));
        }
        let finishing = finish.is_some();
        let look = match call.look_in_spool(finishing)? {
            Some(l) => l,
            None => call.look_in_archive(finishing)?,
        };
        match look {
            Look::Done(code) => return Ok(code),
            Look::Wait => {}
            Look::Missing => {
                if let Some(r) = call.missing(finishing) {
                    return r;
                }
            }
        }
        // Waiting: clean up behind ourselves, then sleep.
        if cfg.remove_unneeded {
            remover.pass(cfg, call.sysid)?;
        }
        if let Some(r) = call.sleep() {
            return r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_file_counts_its_time_only_while_it_stays_the_same() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut r = Refused::default();
        assert_eq!(r.refused("a 1".into(), at(0)), Duration::ZERO);
        assert_eq!(r.refused("a 1".into(), at(4)), Duration::from_secs(4));
        // The file changed (still being written): the wait starts again.
        assert_eq!(r.refused("a 2".into(), at(6)), Duration::ZERO);
        assert_eq!(r.refused("a 2".into(), at(15)), Duration::from_secs(9));
        assert!(r.refused("a 2".into(), at(16)) >= REFUSED_GRACE);
        // Another file altogether.
        assert_eq!(r.refused("b 2".into(), at(17)), Duration::ZERO);
    }
}

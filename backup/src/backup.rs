//! One backup run, from the lock to the meta file.
//!
//! Order matters for safety: everything that can be checked is checked before the server
//! enters backup mode (the lock, the data directory against the server, free output names,
//! writable destinations); every resource the run creates (temporary outputs, the `--xlogs`
//! directory, the removal pause trigger, the scratch directory) is a guard that undoes itself
//! when dropped, so an error or a signal at any point leaves nothing behind; the database
//! session is dropped on error, which makes the server abort the backup.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use pitr_common::backupset::{self, FileType, Meta, XLOGS_MARKER};
use pitr_common::checksum::{self, SumLine};
use pitr_common::exit::{self, Failure};
use pitr_common::history::Span;
use pitr_common::location::Target;
use pitr_common::manifest::{unix_seconds, WalRange};
use pitr_common::objstore::Store;
use pitr_common::pg::{self, PgDataDir};
use pitr_common::tempname::{self, ScratchDir};
use pitr_common::{controldata, fs, lock, log_hint, log_info, log_warning, objsets, signal};

use crate::args::{Config, WalInput};
use crate::copy::{self, Copier, Kind, Rules};
use crate::output::SetWriter;
use crate::session::{self, check_interrupt, Session};
use crate::xlog;
use pitr_common::progress::{human, Progress};

/// What a removal pause trigger written by pitr-backup starts with.
const TRIGGER_PREFIX: &str = "pitr-backup ";

/// A directory removed (with everything in it) when dropped.
struct TempDirGuard {
    path: PathBuf,
    what: &'static str,
}

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        if let Err(e) = remove_dir(&self.path) {
            log_warning!("cannot remove {} {}: {e:#}", self.what, self.path.display());
        }
    }
}

/// Removes `path`, a directory with everything in it or a file; one already gone is no error.
fn remove_entry(path: &Path) -> Result<(), fs::IoError> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(fs::IoError::new("removing", path, e))
        }
        _ => Ok(()),
    }
}

/// Removes the directory `dir` and everything in it, first renaming it to a hidden name
/// beside it: pitr-archive may be writing into `--xlogs` at this very moment, and once the
/// name is gone it neither creates files there nor sees the directory, so the removal cannot
/// race with it ("Directory not empty"); its interrupted write fails and PostgreSQL retries
/// the segment, which then no longer goes to the backup.
fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let hidden = dir.with_file_name(format!(
        ".{}.removing.{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    match std::fs::rename(dir, &hidden) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fs::IoError::new("renaming", dir, e).into()),
    }
    let mut tries = 0;
    loop {
        match std::fs::remove_dir_all(&hidden) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // A writer that had opened a file by the old path a moment before the rename.
            Err(_) if tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(fs::IoError::new("removing", &hidden, e).into()),
        }
    }
}

/// A file removed when dropped, durably: a removal pause trigger that came back after a crash
/// would keep WAL removal paused until the next backup.
struct FileGuard {
    path: PathBuf,
    what: &'static str,
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        let parent = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Err(e) = fs::remove_file_if_exists(&self.path).and_then(|()| fs::fsync_dir(parent)) {
            log_warning!("cannot remove {} {}: {e}", self.what, self.path.display());
        }
    }
}

fn scratch_dir(cfg: &Config) -> anyhow::Result<ScratchDir> {
    ScratchDir::create(&cfg.temp_dir, "pitr-backup").map_err(|e| {
        anyhow::Error::from(e).context(
            Failure::new("cannot create a scratch directory in --temp-dir")
                .hint("give --temp-dir a writable directory"),
        )
    })
}

/// The process that left `entry` (a name in the directory of `path`) while it created or
/// removed `path`: `.NAME.pitr-tmp.PID` (the `--xlogs` directory in the making, or the
/// trigger's temporary file) or `.NAME.removing.PID` (see [`remove_dir`]).
fn leftover_writer(entry: &str, path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    if let Some(t) = tempname::parse(entry) {
        return (t.base == name).then_some(t.pid);
    }
    entry
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix(".removing.")?
        .parse()
        .ok()
}

/// Removes what a pitr-backup killed while it created or removed `path` left beside it (see
/// [`leftover_writer`]), once that process is gone. Safe without the hour that pitr-cleanup
/// gives other temporary files: we hold the cluster's backup lock, and these names belong to
/// `path`, which only a backup of this cluster uses.
fn sweep_beside(path: &Path, what: &str) -> anyhow::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let entries = match std::fs::read_dir(parent) {
        Ok(e) => e,
        // The creation that follows reports a missing or unreadable directory.
        Err(_) => return Ok(()),
    };
    for entry in entries {
        let entry = entry.map_err(|e| fs::IoError::new("listing", parent, e))?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| leftover_writer(n, path)) else {
            continue;
        };
        if signal::process_alive(pid) {
            continue;
        }
        let left = parent.join(&name);
        log_warning!(
            "removing {} left behind by an interrupted pitr-backup (process {pid}) beside {what} {}",
            left.display(),
            path.display()
        );
        remove_entry(&left)?;
    }
    Ok(())
}

/// Creates the `--xlogs` directory with its marker in one step: the directory is made under
/// the hidden name `.NAME.pitr-tmp.PID` beside it, the marker written into it durably, and only
/// then is it renamed to `dir`. So a directory under the name `dir` always carries the marker,
/// whenever a `kill -9` strikes; what a kill before the rename leaves is swept by the next run
/// ([`sweep_beside`]). A leftover of ours (marker inside) is removed first, which is safe
/// because we hold the lock, so no other backup of this cluster runs.
fn create_xlogs(dir: &Path) -> anyhow::Result<TempDirGuard> {
    sweep_beside(dir, "--xlogs")?;
    let taken = || -> anyhow::Error {
        Failure::new(format!("--xlogs {} already exists", dir.display()))
            .hint("pitr-backup creates it for the duration of a backup and removes it after; it must not exist beforehand (remove it if no backup runs)")
            .into()
    };
    if std::fs::symlink_metadata(dir).is_ok() {
        if dir.join(XLOGS_MARKER).is_file() {
            log_warning!(
                "removing {} left behind by an interrupted pitr-backup",
                dir.display()
            );
            remove_dir(dir)?;
        } else {
            return Err(taken());
        }
    }
    let staging = tempname::for_path(dir);
    std::fs::create_dir(&staging).map_err(|e| fs::IoError::new("creating", &staging, e))?;
    // Until the rename nobody else sees the directory: an error removes it here, a kill leaves
    // it for the next run's sweep.
    let failure = match mark_and_rename(&staging, dir) {
        Ok(true) => None,
        Ok(false) => Some(taken()),
        Err(e) => Some(e),
    };
    if let Some(e) = failure {
        if let Err(r) = remove_entry(&staging) {
            log_warning!("cannot remove {}: {r}", staging.display());
        }
        return Err(e);
    }
    let guard = TempDirGuard {
        path: dir.to_path_buf(),
        what: "--xlogs directory",
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::fsync_dir(parent)?;
    }
    Ok(guard)
}

/// Writes the marker into the `--xlogs` directory in the making `staging` durably and renames
/// it to `dir`; false if `dir` appeared meanwhile with content (rename(2) replaces an empty
/// directory: nothing is lost).
fn mark_and_rename(staging: &Path, dir: &Path) -> anyhow::Result<bool> {
    let marker = staging.join(XLOGS_MARKER);
    let text = format!("{}\n", std::process::id());
    fs::write_durable(&marker, fs::Replace::Allow, None, |f| {
        Ok(fs::write_all(f, &marker, text.as_bytes())?)
    })
    .context("writing the marker of the --xlogs directory")?;
    match std::fs::rename(staging, dir) {
        Ok(()) => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(fs::IoError::new("renaming", staging, e).into()),
    }
}

/// Creates the removal pause trigger; a leftover of ours is taken over (we hold the lock).
fn create_trigger(path: &Path) -> anyhow::Result<FileGuard> {
    sweep_beside(path, "removal pause trigger")?;
    match std::fs::read(path) {
        Ok(content) if content.starts_with(TRIGGER_PREFIX.as_bytes()) => {
            log_warning!(
                "taking over removal pause trigger {} left behind by an interrupted pitr-backup",
                path.display()
            );
        }
        Ok(_) => {
            return Err(Failure::new(format!(
                "removal pause trigger {} already exists",
                path.display()
            ))
            .hint("it must not exist beforehand: another tool or an operator paused WAL removal; find out why before removing it")
            .into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fs::IoError::new("reading", path, e).into()),
    }
    let guard = FileGuard {
        path: path.to_path_buf(),
        what: "removal pause trigger",
    };
    let text = format!("{TRIGGER_PREFIX}{}\n", std::process::id());
    fs::write_durable(path, fs::Replace::Allow, None, |f| {
        Ok(fs::write_all(f, path, text.as_bytes())?)
    })
    .context("creating the removal pause trigger")?;
    Ok(guard)
}

/// Checks that the server we are connected to runs on `--data-dir`.
fn check_same_cluster(
    cfg: &Config,
    session: &Session,
    control: &controldata::ControlData,
) -> anyhow::Result<()> {
    let facts = session.facts();
    if facts.system_identifier != control.system_identifier {
        return Err(Failure::new(format!(
            "--data-dir {} belongs to database system {}, but the server at {} is database system {}",
            cfg.data_dir.display(),
            control.system_identifier,
            cfg.conn.host,
            facts.system_identifier
        ))
        .hint("give the data directory of the server pitr-backup connects to (--host/--port)")
        .into());
    }
    if let Some(dd) = &facts.data_directory {
        // A standby on the same host shares the system identifier: compare the paths too.
        if let Ok(theirs) = std::fs::canonicalize(dd) {
            if theirs != cfg.data_dir {
                return Err(Failure::new(format!(
                    "--data-dir {} is not the data directory of the server at {} ({})",
                    cfg.data_dir.display(),
                    cfg.conn.host,
                    theirs.display()
                ))
                .hint(
                    "give the data directory of the server pitr-backup connects to (--host/--port)",
                )
                .into());
            }
        }
    }
    Ok(())
}

/// Step 1: the data directory and the lock (exit 4 when another backup of the cluster runs).
fn lock_cluster(cfg: &Config) -> anyhow::Result<(PgDataDir, lock::LockGuard)> {
    let data = PgDataDir::open(&cfg.data_dir).map_err(|e| {
        anyhow::Error::from(e).context(
            Failure::new("--data-dir is not usable")
                .hint("give the data directory of the running cluster"),
        )
    })?;
    match lock::try_lock(&cfg.lock_file) {
        Ok(Some(g)) => Ok((data, g)),
        Ok(None) => Err(Failure::new(format!(
            "another pitr-backup of {} is running (it holds {})",
            cfg.data_dir.display(),
            cfg.lock_file.display()
        ))
        .hint("wait for it to finish; one backup per cluster runs at a time")
        .status(exit::BUSY)
        .into()),
        Err(e) => Err(anyhow::Error::from(e).context(
            Failure::new("cannot take the backup lock")
                .hint("run pitr-backup as the user that owns the data directory, or give --lock-file in a writable directory"),
        )),
    }
}

/// Step 2: pg_control read natively, one database session, both naming the same cluster.
fn connect(cfg: &Config) -> anyhow::Result<(controldata::ControlData, Session)> {
    let control = controldata::read(&cfg.data_dir, None)
        .with_context(|| format!("reading pg_control of {}", cfg.data_dir.display()))?;
    check_interrupt()?;
    let session = Session::connect(&cfg.conn)?;
    check_same_cluster(cfg, &session, &control)?;
    Ok((control, session))
}

/// What an earlier pitr-backup killed while committing its set (or a killed cleanup) left in
/// the local destinations is finished first (see `backupset::sweep_intents`), and the
/// temporary files of writers that are gone are removed (see `tempname::stale_age`).
fn finish_interrupted_sets(cfg: &Config) -> anyhow::Result<()> {
    for (d, url) in cfg.destinations.iter().filter_map(|d| match &d.target {
        Target::S3(url) => Some((d, url)),
        _ => None,
    }) {
        let failure = |e: pitr_common::objstore::Error| {
            e.failure(format!("looking for interrupted backups in {d}"))
        };
        let settings = cfg
            .s3
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no object-store settings for {d}"))?;
        let store = Store::open(url, settings).map_err(failure)?;
        for s in objsets::sweep(&store).map_err(failure)? {
            log_warning!(
                "removed {} objects of backup set {} in {d}, left by an interrupted run",
                s.removed.len(),
                s.meta
            );
        }
    }
    for dir in cfg.destinations.iter().filter_map(|d| d.as_dir()) {
        for p in tempname::sweep_stale(dir, tempname::stale_age(), false)? {
            log_warning!(
                "removed {}, left by an interrupted pitr-backup",
                p.display()
            );
        }
        for s in backupset::sweep_intents(dir, false)? {
            log_warning!(
                "removed {} files of backup set {} in {}, left by an interrupted run",
                s.removed.len(),
                s.meta,
                dir.display()
            );
        }
    }
    Ok(())
}

/// The file types of the set, in the order they are written (meta last).
fn file_types(cfg: &Config) -> Vec<FileType> {
    let mut t = vec![FileType::Data];
    if !matches!(cfg.wal, WalInput::Skip) {
        t.push(FileType::Xlog);
    }
    t.extend([FileType::Sha256, FileType::Meta]);
    t
}

/// What the data part of a backup produced (steps 5 to 7).
struct DataPart {
    label: String,
    /// The start's timeline, the start and the stop location (the meta file's).
    range: WalRange,
    /// The timelines the backup's WAL passes through, oldest first.
    spans: Vec<Span>,
    files: u64,
    data_bytes: u64,
}

/// Steps 5 to 7: backup mode, the data directory walked twice (a stat-only pass for the
/// progress total, then the copy, `global/pg_control` last), backup mode ended; then
/// `backup_label`, `tablespace_map` and the manifest go into the data tar and the data file is
/// committed.
fn back_up_data(
    cfg: &Config,
    data: &PgDataDir,
    session: &mut Session,
    set: &mut SetWriter,
    scratch: &Path,
    label: String,
) -> anyhow::Result<(DataPart, Progress)> {
    let major = data.major_version()?;
    let rules = Rules {
        tablespace_prefix: format!("PG_{major}_"),
        own_file: (cfg.lock_file.parent() == Some(cfg.data_dir.as_path()))
            .then(|| cfg.lock_file.file_name())
            .flatten()
            .map(|n| n.to_string_lossy().into_owned()),
    };
    // The stat-only pass comes before the destinations are opened: its total sizes the parts of
    // an upload to an object store (at most 10,000 of them).
    let mut total = 0u64;
    copy::walk(&cfg.data_dir, &rules, &mut |e| {
        if let Kind::File = e.kind {
            total += e.meta.len();
        }
        Ok(())
    })?;
    let mut data_stream = set.open(FileType::Data, total)?;
    let start_lsn = session.start_backup(&label, cfg.fast_checkpoint)?;
    log_info!("pg_backup_start returned {start_lsn}");
    let mut progress = Progress::new(total, cfg.progress_interval);
    let owner = fs::metadata(&cfg.data_dir)?;
    let mut copier = Copier::new(
        &mut data_stream,
        &scratch.join(pg::BACKUP_MANIFEST),
        &owner,
        &mut progress,
        cfg.copy_delay,
    )?;
    copy::walk(&cfg.data_dir, &rules, &mut |e| copier.add(e))?;
    copier.file(Path::new(pg::PG_CONTROL), &data.control_file())?;
    let files = copier.files;
    copier.progress().log();
    // Without WAL of its own, the set is restorable only once its WAL is archived: the server
    // waits for that (--wal-timeout at most). Otherwise the WAL is collected below.
    let wait_for_archive = matches!(cfg.wal, WalInput::Skip).then_some(cfg.wal_timeout);
    if wait_for_archive.is_some() {
        log_info!("pg_backup_stop waits for the backup's WAL to be archived (--skip-xlogs)");
    }
    test_hold_before_stop();
    let stop = session.stop_backup(wait_for_archive)?;
    log_info!("pg_backup_stop returned {}", stop.stop_lsn);
    let backup_label = session::parse_label(&stop.label_file)?;
    copier.content(Path::new(pg::BACKUP_LABEL), stop.label_file.as_bytes())?;
    if !stop.tablespace_map.is_empty() {
        copier.content(
            Path::new(pg::TABLESPACE_MAP),
            stop.tablespace_map.as_bytes(),
        )?;
    }
    let range = WalRange {
        timeline: backup_label.timeline,
        start: backup_label.start_lsn,
        end: stop.stop_lsn,
    };
    let spans = xlog::spans(
        &cfg.wal,
        cfg.s3.as_ref(),
        &cfg.data_dir,
        session.facts().in_recovery,
        (range.timeline, range.start, range.end),
        session.facts().system_identifier,
    )?;
    copier.finish(&manifest_ranges(&spans))?;
    let data_bytes = data_stream.bytes();
    let data_sizes = set.commit(data_stream)?;
    log_info!(
        "data archive done: {files} files, {} ({})",
        human(data_bytes),
        data_sizes
            .iter()
            .map(|(c, s)| format!("{c}: {}", human(*s)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let part = DataPart {
        label,
        range,
        spans,
        files,
        data_bytes,
    };
    Ok((part, progress))
}

/// Test hook: with `PITR_TEST_BACKUP_HOLD=FILE`, the copy done, the backup waits (120 s at
/// most) until `FILE` is gone before it ends backup mode, so that a test can change what the
/// server does between the two (a standby following a timeline switch).
fn test_hold_before_stop() {
    let Some(hold) = std::env::var_os("PITR_TEST_BACKUP_HOLD").map(std::path::PathBuf::from) else {
        return;
    };
    log_info!(
        "holding before pg_backup_stop while {} exists",
        hold.display()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while hold.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The manifest's `WAL-Ranges`: one per timeline, the newest first, as PostgreSQL's own
/// manifest lists them (`pg_verifybackup` follows them with `pg_waldump`).
fn manifest_ranges(spans: &[Span]) -> Vec<WalRange> {
    spans
        .iter()
        .rev()
        .map(|s| WalRange {
            timeline: s.timeline,
            start: s.start,
            end: s.end,
        })
        .collect()
}

/// Step 8a: the backup's WAL, from `--xlogs` or `--wal-source`, into the WAL tar.
fn back_up_wal(
    cfg: &Config,
    set: &mut SetWriter,
    segments: &[pitr_common::wal::WalFileName],
    seg_size: pitr_common::wal::SegSize,
    sysid: u64,
) -> anyhow::Result<()> {
    if matches!(cfg.wal, WalInput::Skip) {
        return Ok(());
    }
    log_info!(
        "collecting WAL {} to {} ({} segments)",
        segments
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
        segments.last().map(ToString::to_string).unwrap_or_default(),
        segments.len()
    );
    let expected = segments.len() as u64 * seg_size.bytes();
    let mut xlog_stream = set.open(FileType::Xlog, expected)?;
    let mut tar = tar::Builder::new(&mut xlog_stream);
    let wal_bytes = xlog::collect(
        &cfg.wal,
        cfg.s3.as_ref(),
        segments,
        sysid,
        cfg.wal_timeout,
        &cfg.data_dir.join(pitr_common::pg::PG_WAL),
        &mut tar,
    )?;
    tar.into_inner().context("ending the WAL archive")?;
    set.commit(xlog_stream)?;
    log_info!("WAL archive done: {}", human(wal_bytes));
    Ok(())
}

/// What the meta file says beyond what the set writer knows.
struct Facts<'a> {
    started_at: SystemTime,
    hostname: &'a str,
    role: &'a str,
    system_identifier: u64,
    version: &'a str,
}

/// Step 8b: the digest file, then the meta file (last: it marks the set complete).
fn write_digest_and_meta(
    set: &mut SetWriter,
    part: &DataPart,
    segments: &[pitr_common::wal::WalFileName],
    facts: &Facts<'_>,
) -> anyhow::Result<()> {
    let (Some(min_xlog), Some(stop_xlog)) = (segments.first(), segments.last()) else {
        anyhow::bail!("the backup needs no WAL segment; that cannot be");
    };
    let digest_lines = |codec| -> Vec<SumLine> {
        [FileType::Data, FileType::Xlog]
            .iter()
            .filter_map(|ft| set.produced(codec, *ft))
            .map(|p| SumLine {
                digest: p.digest,
                file_name: p.name.clone(),
            })
            .collect()
    };
    let sums: Vec<_> = set
        .codecs()
        .into_iter()
        .map(|c| (c, checksum::render_sums(&digest_lines(c))))
        .collect();
    set.write_small(FileType::Sha256, |codec| {
        sums.iter()
            .find(|(c, _)| *c == codec)
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    })?;
    let timezone = pitr_common::log::expand_time_template("^z", facts.started_at)?;
    let finished = unix_seconds(SystemTime::now());
    let metas: Vec<_> = set
        .codecs()
        .into_iter()
        .map(|codec| {
            let data = set.produced(codec, FileType::Data);
            let xlog = set.produced(codec, FileType::Xlog);
            let meta = Meta {
                min_xlog: *min_xlog,
                started_epoch: unix_seconds(facts.started_at),
                timezone: timezone.clone(),
                hostname: facts.hostname.to_string(),
                stop_xlog: *stop_xlog,
                start_lsn: part.range.start,
                stop_lsn: part.range.end,
                timeline: part.range.timeline,
                label: part.label.clone(),
                backup_from: facts.role.to_string(),
                system_identifier: facts.system_identifier,
                postgresql_version: facts.version.to_string(),
                data_size: data.map_or(0, |p| p.size),
                xlog_size: xlog.map_or(0, |p| p.size),
                data_file: set.name(FileType::Data, codec),
                xlog_file: xlog.map(|p| p.name.clone()),
                digest_file: set.name(FileType::Sha256, codec),
                finished_epoch: finished,
            };
            (codec, meta.render())
        })
        .collect();
    set.write_small(FileType::Meta, |codec| {
        metas
            .iter()
            .find(|(c, _)| *c == codec)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    })
}

/// Runs one backup, in the steps of ARCHITECTURE.md's "pitr-backup".
pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    signal::catch_termination();
    let started_at = SystemTime::now();
    let (data, _lock) = lock_cluster(cfg)?;
    let (control, mut session) = connect(cfg)?;
    let facts = session.facts().clone();
    let role = if facts.in_recovery {
        "standby"
    } else {
        "primary"
    };
    // Step 3: the set's names, free in every destination.
    let hostname = backupset::hostname();
    let names = cfg
        .template
        .stamp(&hostname, started_at)
        .map_err(|e| Failure::new(e.to_string()).status(exit::USAGE))?;
    let scratch = scratch_dir(cfg)?;
    let file_types = file_types(cfg);
    finish_interrupted_sets(cfg)?;
    let mut set = SetWriter::new(
        &cfg.destinations,
        names,
        scratch.path(),
        &cfg.rsync,
        cfg.compress_threads,
        cfg.s3.as_ref(),
    );
    set.reserve(&file_types)?;
    // Step 4: the WAL collection directory and the removal pause trigger.
    let xlogs_guard = match &cfg.wal {
        WalInput::Xlogs(dir) => Some(create_xlogs(dir)?),
        _ => None,
    };
    let trigger_guard = match &cfg.removal_pause_trigger {
        Some(t) => Some(create_trigger(t)?),
        None => None,
    };
    warn_standby_without_trigger(cfg, facts.in_recovery);
    let label = match &cfg.label {
        Some(l) => l.clone(),
        None => format!(
            "pitr-backup {}",
            pitr_common::log::expand_time_template("^Y-^m-^d ^H:^M:^S", started_at)?
        ),
    };
    log_info!(
        "starting backup of the {role} at {} (PostgreSQL {}, database system {}), label {label:?}",
        cfg.data_dir.display(),
        facts.version,
        facts.system_identifier
    );
    let (part, progress) = back_up_data(cfg, &data, &mut session, &mut set, scratch.path(), label)
        .map_err(|e| set.explain(e))?;
    // The server is done with us; the rest is WAL collection and delivery.
    drop(session);
    let segments = pitr_common::history::segments(&part.spans, control.wal_segment_size);
    back_up_wal(
        cfg,
        &mut set,
        &segments,
        control.wal_segment_size,
        facts.system_identifier,
    )
    .map_err(|e| set.explain(e))?;
    drop(xlogs_guard);
    drop(trigger_guard);
    check_interrupt()?;
    let meta_facts = Facts {
        started_at,
        hostname: &hostname,
        role,
        system_identifier: facts.system_identifier,
        version: &facts.version,
    };
    write_digest_and_meta(&mut set, &part, &segments, &meta_facts)?;
    set.finish(&file_types)?;
    set.keep();
    drop(scratch);
    log_info!(
        "backup complete: {} of the {role} ({} files), WAL {} to {}, in {:.1} s, peak memory {}",
        human(part.data_bytes),
        part.files,
        segments
            .first()
            .map(ToString::to_string)
            .unwrap_or_default(),
        segments.last().map(ToString::to_string).unwrap_or_default(),
        progress.elapsed().as_secs_f64(),
        peak_memory().map_or_else(|| "unknown".to_owned(), human)
    );
    Ok(ExitCode::SUCCESS)
}

/// A standby's archive is cleaned by its own pitr-restore or archive_cleanup_command; the
/// removal pause trigger is what holds them off while the backup needs the WAL.
fn warn_standby_without_trigger(cfg: &Config, standby: bool) {
    if let (true, None, WalInput::Source(source)) = (standby, &cfg.removal_pause_trigger, &cfg.wal)
    {
        log_warning!(
            "backing up a standby without --removal-pause-trigger: WAL this backup needs may be removed from {source} (pitr-restore --remove-unneeded, archive_cleanup_command) before it is copied"
        );
        log_hint!(
            "give the trigger file the standby's pitr-restore and pitr-cleanup use (--removal-pause-trigger)"
        );
    }
}

/// This process's peak resident memory (`VmHWM` in `/proc/self/status`), which the last log
/// line reports: it must not grow with the size of the database or its number of files.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_writer_knows_only_the_names_made_beside_the_path() {
        let xlogs = Path::new("/srv/backup/xlogs");
        assert_eq!(leftover_writer(".xlogs.pitr-tmp.123", xlogs), Some(123));
        assert_eq!(leftover_writer(".xlogs.removing.45", xlogs), Some(45));
        for other in [
            "xlogs",
            ".xlogs",
            ".xlogs2.pitr-tmp.1",
            ".xlogsfoo.removing.1",
            ".xlogs.removing.x",
            ".xlogs.removing.",
            ".other.pitr-tmp.7",
            "..xlogs.pitr-tmp.1",
        ] {
            assert_eq!(leftover_writer(other, xlogs), None, "{other}");
        }
        assert_eq!(
            leftover_writer(".pause.pitr-tmp.9", Path::new("pause")),
            Some(9)
        );
    }
}

//! `pitr-restore --from-backup`: a backup set into a new data directory, ready to recover.
//!
//! Replaces the runbook's manual steps (copy the tarball, stop, move directories, untar, write
//! recovery.conf, copy the configuration back). In order, and nothing is written into the target
//! before the set has been chosen and its digests checked:
//! 1. the target directory must not exist or be empty;
//! 2. the set is chosen (by name, the latest, or the latest that ended before `--target-time`;
//!    a target time before the chosen backup's end, or in the future, is refused);
//! 3. every file named in the set's digest file is checked against its SHA-256;
//! 4. the data archive and then the WAL archive are extracted into the target (the WAL goes to
//!    `pg_wal`), each tablespace is moved from `pg_tblspc/<oid>` to its location in
//!    `tablespace_map` (which must be empty or absent), the configuration is kept or replaced by
//!    `--postgresql-conf`;
//! 5. the recovery settings and the signal file are written (see [`crate::recovery`]);
//! 6. the directory gets mode 0700 and, when run as root, the owner of its parent.
//!
//! If anything fails after extraction started, the target is emptied again (what we created is
//! removed), so a retry starts from the same state.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use pitr_common::backupset::{self, FoundSet};
use pitr_common::checksum;
use pitr_common::compress::{self, Stored};
use pitr_common::exit::Failure;
use pitr_common::fs::IoError;
use pitr_common::location::{RsyncTarget, Target as Place};
use pitr_common::objstore::{self, S3Url, Store};
use pitr_common::tempname::ScratchDir;
use pitr_common::{log_hint, log_info, log_warning, pg};

use crate::args::BackupConfig;
use crate::recovery::{self, Settings, Target};

/// How often extraction logs its progress.
const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

fn failure(msg: String, hint: &str) -> anyhow::Error {
    Failure::new(msg).hint(hint).into()
}

/// Checks that `dir` is absent or empty; returns whether it exists.
fn check_target(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(failure(
                    format!("target data directory {} is not empty", dir.display()),
                    "restore into a new or empty directory; pitr-restore never overwrites a data directory",
                ));
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(IoError::new("reading target data directory", dir, e).into()),
    }
}

/// Checks that `dir` is absent or empty; creates it when absent. Returns whether we created it.
fn prepare_target(dir: &Path) -> anyhow::Result<bool> {
    if check_target(dir)? {
        return Ok(false);
    }
    std::fs::create_dir(dir).map_err(|e| IoError::new("creating target data directory", dir, e))?;
    Ok(true)
}

/// Picks the set to restore.
fn choose<'a>(
    sets: &'a [FoundSet],
    cfg: &BackupConfig,
    shown: &str,
) -> anyhow::Result<&'a FoundSet> {
    if sets.is_empty() {
        return Err(failure(
            format!("no backup set in {shown}"),
            "give the directory pitr-backup wrote to (its meta files mark complete sets)",
        ));
    }
    if let Some(name) = &cfg.backup {
        return sets
            .iter()
            .find(|s| {
                let meta_name = s
                    .meta_path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned());
                meta_name.as_deref() == Some(name.as_str())
                    || s.meta.data_file == *name
                    || s.meta.xlog_file.as_deref() == Some(name.as_str())
                    || s.meta.digest_file == *name
            })
            .ok_or_else(|| {
                failure(
                    format!("no backup set named {name} in {shown}"),
                    "give the name of one of the set's files (its meta or data file), or latest",
                )
            });
    }
    if let Target::Time(t) = cfg.target {
        let target = t.unix_timestamp();
        return sets
            .iter()
            .rev()
            .find(|s| s.meta.finished_epoch < target)
            .ok_or_else(|| {
                failure(
                    format!(
                        "no backup set in {shown} ended before the target time {}",
                        recovery::format_time(t)
                    ),
                    "a point-in-time restore needs a backup that finished before the target",
                )
            });
    }
    sets.last()
        .ok_or_else(|| failure(format!("no backup set in {shown}"), "take a backup first"))
}

fn check_target_time(cfg: &BackupConfig, set: &FoundSet) -> anyhow::Result<()> {
    let Target::Time(t) = cfg.target else {
        return Ok(());
    };
    let when = t.unix_timestamp();
    if when <= set.meta.finished_epoch {
        return Err(failure(
            format!(
                "target time {} is before the end of backup {} (it ended at {})",
                recovery::format_time(t),
                set.meta_path.display(),
                pitr_common::log::format_epoch(set.meta.finished_epoch)
            ),
            "a backup can be recovered only to a point after it ended: choose an older backup or a later time",
        ));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if when > now {
        return Err(failure(
            format!("target time {} is in the future", recovery::format_time(t)),
            "recovery would replay everything and then wait for WAL that does not exist yet",
        ));
    }
    Ok(())
}

fn verify_digests(set: &FoundSet) -> anyhow::Result<()> {
    let dir = set.dir();
    let digest_path = dir.join(&set.meta.digest_file);
    let unusable = || {
        Failure::new(format!(
            "the digest file of backup set {} is unusable",
            set.meta_path.display()
        ))
        .hint("the set is damaged: restore another set, or copy this one again from a place that holds it whole")
    };
    let text = std::fs::read_to_string(&digest_path).map_err(|e| {
        anyhow::Error::from(IoError::new("reading digest file", &digest_path, e))
            .context(unusable())
    })?;
    let lines = checksum::parse_sums(&text)
        .with_context(|| format!("reading digest file {}", digest_path.display()))
        .map_err(|e| e.context(unusable()))?;
    let mut needed = vec![set.meta.data_file.clone()];
    needed.extend(set.meta.xlog_file.clone());
    for n in &needed {
        if !lines.iter().any(|l| &l.file_name == n) {
            return Err(failure(
                format!("digest file {} has no line for {n}", digest_path.display()),
                "the set is incomplete or was not written by pitr-backup",
            ));
        }
    }
    for l in &lines {
        checksum::verify_line(dir, l).map_err(|e| {
            anyhow::Error::from(e).context(
                Failure::new(format!(
                    "backup set {} failed its digest check",
                    set.meta_path.display()
                ))
                .hint("the backup is damaged: restore another backup set; nothing was extracted"),
            )
        })?;
        log_info!("digest of {} verified", l.file_name);
    }
    Ok(())
}

fn extract(archive: &Path, into: &Path) -> anyhow::Result<()> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let codec = match compress::split_stored_name(&name).1 {
        Stored::Readable(c) => c,
        Stored::Unreadable(c) => {
            return Err(failure(
                format!(
                    "{} is compressed with {c}, which pitr cannot read",
                    archive.display()
                ),
                "restore a set made by pitr-backup",
            ))
        }
    };
    let file = pitr_common::fs::open(archive)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    log_info!(
        "extracting {} ({}) into {}",
        archive.display(),
        pitr_common::progress::human(size),
        into.display()
    );
    // A `progress:` line every PROGRESS_INTERVAL in the log (and a status line on a terminal),
    // counted in bytes of the stored file read.
    let counted = pitr_common::progress::Reading::new(file, size, PROGRESS_INTERVAL);
    let reader = codec
        .decoder(std::io::BufReader::with_capacity(1 << 20, counted))
        .map_err(|e| IoError::new("decompressing", archive, e))?;
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_mtime(true);
    tar.set_overwrite(false);
    // `unpack` refuses entries that would land outside `into` (absolute paths, `..`).
    tar.unpack(into).map_err(|e| {
        use std::io::ErrorKind;
        // A full or unwritable target is told by the OS error's own HINT; anything else is in
        // the archive.
        let local = matches!(
            e.kind(),
            ErrorKind::StorageFull | ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
        );
        let err = anyhow::Error::from(IoError::new("extracting", archive, e))
            .context(format!("extracting into {}", into.display()));
        if local {
            err
        } else {
            err.context(
                Failure::new(format!("the data archive {} cannot be extracted", archive.display()))
                    .hint("the set is damaged (its digest file matched, so it was damaged before it was written): restore another set"),
            )
        }
    })?;
    Ok(())
}

/// Gives `dir` and everything below it to `uid`/`gid`.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
        .map_err(|e| IoError::new("changing the owner of", dir, e))?;
    if std::fs::symlink_metadata(dir)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        for ent in std::fs::read_dir(dir).map_err(|e| IoError::new("listing", dir, e))? {
            let ent = ent.map_err(|e| IoError::new("listing", dir, e))?;
            chown_tree(&ent.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Removes what we put into the target after a failure.
fn undo(dir: &Path, created: bool) {
    if created {
        let _ = std::fs::remove_dir_all(dir);
    } else if let Ok(rd) = std::fs::read_dir(dir) {
        for ent in rd.flatten() {
            let p = ent.path();
            let _ = if p.is_dir() && !p.is_symlink() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// A tablespace location [`place_tablespaces`] filled, and whether it existed (empty) before.
struct Placed {
    location: PathBuf,
    existed: bool,
}

/// Moves each tablespace from `pg_tblspc/<oid>` (where the data archive stores it) to the
/// location `tablespace_map` names; PostgreSQL then creates the links when it starts. Returns
/// the locations, for ownership and for [`unplace`]. A failure part-way leaves the ones already
/// placed in `placed`.
fn place_tablespaces(
    dir: &Path,
    mapping: &[(PathBuf, PathBuf)],
    placed: &mut Vec<Placed>,
) -> anyhow::Result<()> {
    let map = dir.join(pg::TABLESPACE_MAP);
    let text = match std::fs::read_to_string(&map) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(IoError::new("reading", &map, e).into()),
    };
    let mut rewritten = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((oid, location)) = line.split_once(' ') else {
            return Err(failure(
                format!("cannot parse line {line:?} of {}", map.display()),
                "the backup's tablespace_map is damaged",
            ));
        };
        let src = dir.join(pg::PG_TBLSPC).join(oid);
        let dst = mapping
            .iter()
            .find(|(old, _)| old == Path::new(location))
            .map(|(_, new)| new.clone())
            .unwrap_or_else(|| PathBuf::from(location));
        rewritten.push_str(&format!("{oid} {}\n", dst.display()));
        if std::fs::symlink_metadata(&src)
            .map(|m| !m.is_dir())
            .unwrap_or(true)
        {
            continue;
        }
        let existed = dst.exists();
        match std::fs::read_dir(&dst) {
            Ok(mut rd) => {
                if rd.next().is_some() {
                    return Err(failure(
                        format!("tablespace location {} is not empty", dst.display()),
                        "the backup's tablespace goes there: empty it, or restore on another host",
                    ));
                }
                std::fs::remove_dir(&dst).map_err(|e| IoError::new("replacing", &dst, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = dst.parent() {
                    pitr_common::fs::create_dir_all_durable(parent)?;
                }
            }
            Err(e) => return Err(IoError::new("examining", &dst, e).into()),
        }
        std::fs::rename(&src, &dst).map_err(|e| {
            anyhow::Error::from(IoError::new("moving tablespace to", &dst, e)).context(
                Failure::new(format!("cannot move tablespace {oid} to {}", dst.display()))
                    .hint("the tablespace location must be on the same file system as the target data directory"),
            )
        })?;
        log_info!("tablespace {oid} placed at {}", dst.display());
        placed.push(Placed {
            location: dst,
            existed,
        });
    }
    if !mapping.is_empty() {
        pitr_common::fs::write_durable(&map, pitr_common::fs::Replace::Allow, None, |f| {
            Ok(pitr_common::fs::write_all(f, &map, rewritten.as_bytes())?)
        })?;
    }
    Ok(())
}

/// Takes back what [`place_tablespaces`] put in place after a later failure, so that a retry
/// starts from the same state: each location is removed, and made again (empty) where it
/// existed before.
fn unplace(placed: &[Placed]) {
    for p in placed {
        let _ = std::fs::remove_dir_all(&p.location);
        if p.existed {
            let _ = std::fs::create_dir(&p.location);
        }
    }
}

/// A point-in-time copy that keeps the primary's `archive_command` archives its new timeline
/// into the primary's archive once recovery ends (same system identifier, so the archive
/// accepts it): say so, before anyone starts it.
fn warn_if_archiving(dir: &Path) {
    let setting = |name| pitr_common::pgconf::setting(dir, None, name);
    let mode_on = setting("archive_mode").is_some_and(|m| !pitr_common::pgconf::is_off(&m));
    let command = setting("archive_command").filter(|c| !c.trim().is_empty());
    if let (true, Some(command)) = (mode_on, command) {
        log_warning!(
            "the restored {} keeps archive_mode on and archive_command '{command}': once recovery ends, this copy archives its WAL there, beside the primary's",
            dir.join(pg::POSTGRESQL_CONF).display()
        );
        log_hint!(
            "before starting a copy that is not to replace the primary, set archive_mode = off (or an archive_command of its own) in its postgresql.conf, or give --postgresql-conf"
        );
    }
}

/// The major version of the restored data directory.
fn major_version(dir: &Path) -> anyhow::Result<u32> {
    pg::major_version(dir).map_err(|e| {
        anyhow::Error::from(e).context(
            Failure::new(format!(
                "the restored {} has no usable PG_VERSION",
                dir.display()
            ))
            .hint("the backup set is damaged or not a PostgreSQL data directory"),
        )
    })
}

fn install(cfg: &BackupConfig, set: &FoundSet, dir: &Path) -> anyhow::Result<()> {
    let mut placed = Vec::new();
    let result = install_placing(cfg, set, dir, &mut placed);
    if result.is_err() {
        unplace(&placed);
    }
    result
}

fn install_placing(
    cfg: &BackupConfig,
    set: &FoundSet,
    dir: &Path,
    placed: &mut Vec<Placed>,
) -> anyhow::Result<()> {
    let set_dir = set.dir().to_path_buf();
    extract(&set_dir.join(&set.meta.data_file), dir)?;
    log_info!("extracted {} into {}", set.meta.data_file, dir.display());
    if let Some(x) = &set.meta.xlog_file {
        extract(&set_dir.join(x), dir)?;
        log_info!("extracted {x} into {}", dir.join(pg::PG_WAL).display());
    }
    place_tablespaces(dir, &cfg.tablespace_mapping, placed)?;
    let tablespaces: Vec<PathBuf> = placed.iter().map(|p| p.location.clone()).collect();
    if let Some(conf) = &cfg.postgresql_conf {
        let dst = dir.join(pg::POSTGRESQL_CONF);
        let text = pitr_common::fs::read(conf)?;
        pitr_common::fs::write_durable(&dst, pitr_common::fs::Replace::Allow, None, |f| {
            Ok(pitr_common::fs::write_all(f, &dst, &text)?)
        })?;
        log_info!("postgresql.conf replaced by {}", conf.display());
    }
    let program = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("finding the pitr-restore binary for restore_command")?;
    let settings = Settings {
        restore_command: cfg.command.restore_command(&program),
        target: cfg.target.clone(),
        action: cfg.action,
        timeline: cfg.timeline,
        standby: cfg.standby,
        // recovery_prefetch exists from PostgreSQL 15 on; an older server refuses to start on
        // a parameter it does not know.
        waits: !cfg.standby && major_version(dir)? >= 15,
    };
    let stamp = recovery::format_time(time::OffsetDateTime::now_utc());
    recovery::disable_in_postgresql_conf(dir)?;
    recovery::write(dir, &settings, &stamp)?;
    if !cfg.standby && !matches!(cfg.target, Target::End) {
        warn_if_archiving(dir);
    }
    // PostgreSQL refuses a data directory other users can read.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(|e| IoError::new("setting the mode of", dir, e))?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let m = std::fs::metadata(parent).map_err(|e| IoError::new("examining", parent, e))?;
        let (uid, gid) = (
            std::os::unix::fs::MetadataExt::uid(&m),
            std::os::unix::fs::MetadataExt::gid(&m),
        );
        chown_tree(dir, uid, gid)?;
        for t in &tablespaces {
            chown_tree(t, uid, gid)?;
        }
    }
    // Durable before we say it is done, as pg_basebackup does: a crash after exit 0 must not
    // leave torn or empty data files for the first start to recover from.
    let mut files = pitr_common::fs::fsync_tree(dir)?;
    for t in &tablespaces {
        files += pitr_common::fs::fsync_tree(t)?;
    }
    log_info!("synced {files} files to disk");
    Ok(())
}

/// The private directory a remote set is fetched into: beside the target (same file system, so
/// the set's space is checked where it will be needed), removed with its content when dropped.
fn fetch_dir(cfg: &BackupConfig) -> anyhow::Result<ScratchDir> {
    let target = &cfg.target_dir;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    Ok(ScratchDir::create(&parent, &format!("{name}.pitr-fetch"))?)
}

/// For an rsync `--from-backup`: fetches the meta files of the remote directory into a private
/// directory beside the target (same file system, so the set's space is checked where it will
/// be needed), chooses the set there as for a local directory, then fetches that set's other
/// files. Digests are checked on the local copies afterwards, as for a local set.
fn fetch_remote_set(cfg: &BackupConfig, remote: &RsyncTarget) -> anyhow::Result<ScratchDir> {
    let fetched = fetch_dir(cfg)?;
    let remote_name = remote.as_str();
    log_info!(
        "fetching the meta files of {remote_name} into {}",
        fetched.path().display()
    );
    cfg.rsync
        .fetch_small_files(remote, fetched.path(), backupset::MAX_META_SIZE)
        .map_err(|e| {
            anyhow::Error::from(e).context(
                Failure::new(format!("cannot list the backup sets in {remote_name}")).hint(
                    "check the rsync target (and --rsync-path); pitr-backup --dst-remote writes there",
                ),
            )
        })?;
    let sets = backupset::list_local(fetched.path())?;
    let set = choose(&sets, cfg, &cfg.from.to_string())?;
    let mut names = vec![set.meta.data_file.clone(), set.meta.digest_file.clone()];
    names.extend(set.meta.xlog_file.clone());
    log_info!(
        "fetching backup set {} from {remote_name}: {}",
        set.meta_path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        names.join(", ")
    );
    let got = cfg
        .rsync
        .fetch(remote, &names, fetched.path())
        .map_err(|e| {
            anyhow::Error::from(e).context(format!("fetching the backup set from {remote_name}"))
        })?;
    if let Some(missing) = names.iter().find(|n| !got.contains(*n)) {
        return Err(failure(
            format!("{missing} of the chosen backup set is not in {remote_name}"),
            "the set is incomplete there: choose another with --backup",
        ));
    }
    Ok(fetched)
}

/// For an object-store `--from-backup`: as for rsync ([`fetch_remote_set`]), the small objects
/// directly under the prefix (the meta files among them) are fetched into a private directory
/// beside the target, the set is chosen there, then its other files are streamed down.
fn fetch_store_set(cfg: &BackupConfig, url: &S3Url) -> anyhow::Result<ScratchDir> {
    let fetched = fetch_dir(cfg)?;
    let settings = cfg
        .s3
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no object-store settings for {url}"))?;
    let store = Store::open(url, settings)
        .map_err(|e| e.failure(format!("cannot list the backup sets in {url}")))?;
    log_info!(
        "fetching the meta files of {url} into {}",
        fetched.path().display()
    );
    let listed = store
        .list("")
        .map_err(|e| e.failure(format!("cannot list the backup sets in {url}")))?;
    let download = |key: &str| -> anyhow::Result<bool> {
        let doing = || format!("fetching {key} from {url}");
        let Some(mut reader) = store.get_reader(key).map_err(|e| e.failure(doing()))? else {
            return Ok(false);
        };
        let path = fetched.path().join(key);
        let mut file =
            std::fs::File::create(&path).map_err(|e| IoError::new("creating", &path, e))?;
        std::io::copy(&mut reader, &mut file).map_err(|e| {
            match e.downcast::<objstore::Error>() {
                Ok(store_error) => store_error.failure(doing()),
                Err(e) => IoError::new("writing", &path, e).into(),
            }
        })?;
        Ok(true)
    };
    for o in &listed {
        if !o.key.contains('/') && !o.key.starts_with('.') && o.size <= backupset::MAX_META_SIZE {
            download(&o.key)?;
        }
    }
    let sets = backupset::list_local(fetched.path())?;
    let set = choose(&sets, cfg, &cfg.from.to_string())?;
    let mut names = vec![set.meta.data_file.clone(), set.meta.digest_file.clone()];
    names.extend(set.meta.xlog_file.clone());
    log_info!(
        "fetching backup set {} from {url}: {}",
        set.meta_path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        names.join(", ")
    );
    for n in &names {
        if !fetched.path().join(n).exists() && !download(n)? {
            return Err(failure(
                format!("{n} of the chosen backup set is not in {url}"),
                "the set is incomplete there: choose another with --backup",
            ));
        }
    }
    Ok(fetched)
}

/// Runs `--from-backup`.
pub fn run(cfg: &BackupConfig) -> anyhow::Result<ExitCode> {
    // Before fetching or checking gigabytes for a restore that cannot happen.
    check_target(&cfg.target_dir)?;
    let fetched = match &cfg.from.target {
        Place::Rsync(remote) => Some(fetch_remote_set(cfg, remote)?),
        Place::S3(url) => Some(fetch_store_set(cfg, url)?),
        _ => None,
    };
    let from = match (&fetched, &cfg.from.target) {
        (Some(f), _) => f.path().to_path_buf(),
        (None, Place::Dir(d)) => d.clone(),
        (None, other) => anyhow::bail!(
            "--from-backup {other} is not a directory, an rsync target or an object store"
        ),
    };
    if !from.is_dir() {
        return Err(failure(
            format!("backup directory {} is not a directory", from.display()),
            "give the directory pitr-backup wrote its sets to (--dst-local)",
        ));
    }
    for s in &cfg.sources {
        let object_store = matches!(s.target, pitr_common::location::Target::S3(_));
        if !object_store && !s.as_dir().is_some_and(Path::is_dir) {
            return Err(failure(
                format!("WAL archive {} is not a directory", s.target),
                "--source names the archive the restored server recovers from; pitr-archive writes it",
            ));
        }
    }
    let sets = backupset::list_local(&from)?;
    let set = choose(&sets, cfg, &from.display().to_string())?;
    check_target_time(cfg, set)?;
    log_info!(
        "restoring backup set {} (started at {}, WAL {} to {})",
        set.meta_path.display(),
        pitr_common::log::format_epoch(set.meta.started_epoch),
        set.meta.min_xlog,
        set.meta.stop_xlog
    );
    verify_digests(set)?;
    let dir = cfg.target_dir.clone();
    let created = prepare_target(&dir)?;
    if let Err(e) = install(cfg, set, &dir) {
        undo(&dir, created);
        return Err(e.context(format!("restoring into {}", dir.display())));
    }
    let signal = if cfg.standby {
        pg::STANDBY_SIGNAL
    } else {
        pg::RECOVERY_SIGNAL
    };
    log_info!(
        "backup restored into {} with {signal}; start it with: pg_ctl -D {} start",
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

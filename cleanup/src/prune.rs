//! Removing what is no longer needed: archived WAL below `%r` (form 1), and backup sets and WAL
//! outside the retention (form 2, see [`crate::plan`]).
//!
//! Both forms take the archive's lock (`.pitr-cleanup.lock` in the archive directory, or in the
//! backup directory when the archive is on an object store), so two cleanups never overlap,
//! and both do nothing while `--removal-pause-trigger` exists.

use std::path::Path;
use std::process::ExitCode;

use pitr_common::exit::{self, Failure};
use pitr_common::location::Target;
use pitr_common::objstore::{S3Url, Settings};
use pitr_common::wal::WalFileName;
use pitr_common::{
    archive_dir, lock, log_info, log_verbose, objarchive, objstore, source, tempname,
};

use crate::args::{Config, Mode};

/// Name of the lock file in the archive directory.
pub const LOCK_FILE: &str = ".pitr-cleanup.lock";

pub use pitr_common::log::human_bytes as human;

/// The WAL archive pitr-cleanup works on.
#[derive(Debug, Clone, Copy)]
pub enum Archive<'a> {
    /// A local directory.
    Dir(&'a Path),
    /// An object store, with the settings to reach it.
    Store(&'a S3Url, &'a Settings),
}

impl std::fmt::Display for Archive<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Archive::Dir(dir) => write!(f, "{}", dir.display()),
            Archive::Store(url, _) => write!(f, "{url}"),
        }
    }
}

/// Removes archived WAL older than `oldest` from `archive` and logs what went.
pub fn remove_wal(
    archive: Archive<'_>,
    oldest: &WalFileName,
    dry_run: bool,
) -> anyhow::Result<u64> {
    let removed: Vec<(String, u64)> = match archive {
        Archive::Dir(dir) => archive_dir::remove_older(dir, oldest, None, dry_run)?
            .into_iter()
            .map(|r| (r.path.display().to_string(), r.size))
            .collect(),
        Archive::Store(url, settings) => objarchive::remove_older(url, settings, oldest, dry_run)?
            .into_iter()
            .map(|r| {
                (
                    format!("{}/{}", url.to_string().trim_end_matches('/'), r.key),
                    r.size,
                )
            })
            .collect(),
    };
    let mut total = 0;
    for (shown, size) in &removed {
        total += size;
        if dry_run {
            log_info!("(dry-run) would remove WAL file {shown} ({})", human(*size));
        } else {
            log_verbose!("Segment {shown} removed ({})", human(*size));
        }
    }
    let verb = if dry_run {
        "would be removed"
    } else {
        "removed"
    };
    log_info!(
        "{} WAL files older than {oldest} {verb} from {archive}, {}",
        removed.len(),
        human(total)
    );
    Ok(total)
}

/// Whether `--removal-pause-trigger` exists now; logged, with `what` is not removed, when it
/// does. Form 2 asks again before the WAL goes: a standby's backup that starts while the sets
/// are being removed needs WAL from its own start, which may be below the cut.
pub fn paused(cfg: &Config, what: &str) -> bool {
    match &cfg.removal_pause_trigger {
        Some(t) if t.exists() => {
            log_info!(
                "removal pause trigger {} exists; not removing {what}",
                t.display()
            );
            true
        }
        _ => false,
    }
}

/// The archive's cluster marker, if it has one, must name `system_identifier`: a `--archive`
/// pointed at another cluster's archive (a configuration copied between clusters) would
/// otherwise lose that cluster's WAL. Nothing is removed when it does not.
pub fn check_marker(archive: Archive<'_>, system_identifier: u64) -> anyhow::Result<()> {
    let checked = match archive {
        Archive::Dir(dir) => source::check_dir_marker(dir, system_identifier),
        Archive::Store(url, settings) => objstore::Store::open(url, settings)
            .map_err(source::Error::from)
            .and_then(|store| objarchive::check_marker(&store, system_identifier)),
    };
    checked.map_err(|e| {
        anyhow::Error::from(e).context(
            Failure::new(format!(
                "not removing anything from {archive}: it is not the archive of database system {system_identifier}"
            ))
            .hint("point --archive at this cluster's archive, the one its archive_command writes to"),
        )
    })
}

/// The database system the archive's cluster marker names, if it has one: retention applies to
/// that system's backup sets only.
pub fn archive_system(archive: Archive<'_>) -> anyhow::Result<Option<u64>> {
    let read = match archive {
        Archive::Dir(dir) => source::dir_marker_system(dir),
        Archive::Store(url, settings) => objstore::Store::open(url, settings)
            .map_err(source::Error::from)
            .and_then(|store| objarchive::marker_system(&store)),
    };
    read.map_err(|e| {
        anyhow::Error::from(e).context(
            Failure::new(format!(
                "not removing anything from {archive}: its cluster marker cannot be read"
            ))
            .hint("the marker names the database system whose WAL the archive holds; pitr-archive writes it on first use"),
        )
    })
}

/// The database system of the data directory PostgreSQL runs `archive_cleanup_command` in
/// (the working directory), if that is one.
fn cwd_system_identifier() -> Option<u64> {
    let here = Path::new(".");
    here.join(pitr_common::pg::PG_CONTROL)
        .is_file()
        .then(|| pitr_common::controldata::read(here, None).ok())
        .flatten()
        .map(|c| c.system_identifier)
}

/// Checks that the `--archive` directory `dir` exists and is a directory: a missing one and a
/// file are told apart, as for `--backup-dir`.
fn archive_dir_usable(dir: &Path) -> anyhow::Result<()> {
    const HINT: &str = "give the WAL archive directory that pitr-archive writes to";
    let problem = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => "is not a directory",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist",
        Err(e) => {
            return Err(
                anyhow::Error::from(pitr_common::fs::IoError::new("examining", dir, e)).context(
                    Failure::new(format!("cannot examine archive {}", dir.display())).hint(HINT),
                ),
            )
        }
    };
    Err(Failure::new(format!("archive {} {problem}", dir.display()))
        .hint(HINT)
        .into())
}

/// Runs pitr-cleanup.
pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let archive = match (&cfg.archive.target, &cfg.s3) {
        (Target::Dir(dir), _) => {
            archive_dir_usable(dir)?;
            Archive::Dir(dir)
        }
        (Target::S3(url), Some(settings)) => Archive::Store(url, settings),
        _ => anyhow::bail!(
            "--archive {} is not a directory or an object store",
            cfg.archive
        ),
    };
    if paused(cfg, "anything") {
        return Ok(ExitCode::SUCCESS);
    }
    // The lock lives in the archive directory; with the archive on an object store, in the
    // backup directory (form 2). Form 1 on an object store takes none: its deletes are
    // idempotent, so two overlapping runs remove the same objects at worst.
    let lock_dir = match (archive, &cfg.mode) {
        (Archive::Dir(dir), _) => Some(dir),
        (Archive::Store(..), Mode::Retention { backup_dir, .. }) => Some(backup_dir.as_path()),
        (Archive::Store(..), Mode::Archive { .. } | Mode::StoreRetention { .. }) => None,
    };
    let _lock = match lock_dir {
        Some(dir) => Some(take_lock(dir)?),
        None => None,
    };
    match &cfg.mode {
        Mode::Archive { oldest } => {
            if let Some(sysid) = cwd_system_identifier() {
                check_marker(archive, sysid)?;
            }
            remove_wal(archive, oldest, cfg.dry_run)?;
        }
        Mode::Retention { backup_dir, .. } => {
            crate::plan::run(cfg, archive)?;
            remove_stale_temps(backup_dir, cfg.stale_temp_age, cfg.dry_run)?;
        }
        Mode::StoreRetention { url, .. } => {
            let settings = cfg
                .s3
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no object-store settings for {url}"))?;
            crate::plan::run_store(cfg, url, settings, archive)?;
        }
    }
    if let Archive::Dir(dir) = archive {
        remove_stale_temps(dir, cfg.stale_temp_age, cfg.dry_run)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Takes `dir`'s cleanup lock, or fails with [`exit::BUSY`] when another pitr-cleanup holds it.
fn take_lock(dir: &Path) -> anyhow::Result<lock::LockGuard> {
    let lock_path = dir.join(LOCK_FILE);
    match lock::try_lock(&lock_path)? {
        Some(l) => Ok(l),
        None => Err(Failure::new(format!(
            "another pitr-cleanup is working on {} (lock {})",
            dir.display(),
            lock_path.display()
        ))
        .hint("wait for it to finish; two cleanups never run at once")
        .status(exit::BUSY)
        .into()),
    }
}

/// Removes the temporary files that killed writers (pitr-archive, pitr-backup) left in `dir`
/// once they are `age` old (see [`tempname::stale`]), and those of WAL files an rsync daemon
/// was receiving when it was killed (see [`tempname::stale_rsync`]), and logs each.
pub fn remove_stale_temps(
    dir: &Path,
    age: std::time::Duration,
    dry_run: bool,
) -> anyhow::Result<()> {
    for p in tempname::sweep_stale(dir, age, dry_run)? {
        if dry_run {
            log_info!(
                "(dry-run) would remove {}, left by a writer that is gone",
                p.display()
            );
        } else {
            log_info!("removed {}, left by a writer that is gone", p.display());
        }
    }
    let unchanged = pitr_common::log::human_age(age.as_secs_f64());
    for p in tempname::sweep_stale_rsync(dir, age, dry_run)? {
        let done = if dry_run {
            "(dry-run) would remove"
        } else {
            "removed"
        };
        log_info!(
            "{done} {}, an rsync transfer's temporary file unchanged for {unchanged}",
            p.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(16 << 20), "16.0 MiB");
        assert_eq!(human(1536), "1.5 KiB");
    }
}

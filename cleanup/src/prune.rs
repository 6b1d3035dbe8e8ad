//! Removing what is no longer needed: archived WAL below `%r` (form 1), and backup sets and WAL
//! outside the retention (form 2, see [`crate::plan`]).
//!
//! Both forms take the archive's lock (`.pitr-cleanup.lock` in the archive directory), so two
//! cleanups never overlap, and both do nothing while `--removal-pause-trigger` exists.

use std::path::Path;
use std::process::ExitCode;

use pitr_common::exit::{self, Failure};
use pitr_common::pidfile::PidFile;
use pitr_common::wal::WalFileName;
use pitr_common::{lock, log_info, log_verbose, source};

use crate::args::{Config, Mode};

/// Name of the lock file in the archive directory.
pub const LOCK_FILE: &str = ".pitr-cleanup.lock";

pub use pitr_common::log::human_bytes as human;

/// Removes archived WAL older than `oldest` from `dir` and logs what went.
pub fn remove_wal(dir: &Path, oldest: &WalFileName, dry_run: bool) -> anyhow::Result<u64> {
    let removed = source::remove_older(dir, oldest, None, dry_run)?;
    let mut total = 0;
    for r in &removed {
        total += r.size;
        if dry_run {
            log_info!(
                "(dry-run) would remove WAL file {} ({})",
                r.path.display(),
                human(r.size)
            );
        } else {
            log_verbose!("Segment {} removed ({})", r.path.display(), human(r.size));
        }
    }
    let verb = if dry_run {
        "would be removed"
    } else {
        "removed"
    };
    log_info!(
        "{} WAL files older than {oldest} {verb} from {}, {}",
        removed.len(),
        dir.display(),
        human(total)
    );
    Ok(total)
}

/// Runs pitr-cleanup.
pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let _pid = match &cfg.pid_file {
        Some(p) => Some(
            PidFile::acquire(p, "pitr-cleanup")
                .map_err(|e| anyhow::Error::from(Failure::new(e.to_string()).status(exit::BUSY)))?,
        ),
        None => None,
    };
    let dir = Path::new(&cfg.archive.target);
    if !dir.is_dir() {
        return Err(
            Failure::new(format!("archive {} is not a directory", dir.display()))
                .hint("give the WAL archive directory that pitr-archive writes to")
                .into(),
        );
    }
    if let Some(t) = &cfg.removal_pause_trigger {
        if t.exists() {
            log_info!(
                "removal pause trigger {} exists; not removing anything",
                t.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    let lock_path = dir.join(LOCK_FILE);
    let Some(_lock) = lock::try_lock(&lock_path)? else {
        return Err(Failure::new(format!(
            "another pitr-cleanup is working on {} (lock {})",
            dir.display(),
            lock_path.display()
        ))
        .hint("wait for it to finish; two cleanups never run at once")
        .status(exit::BUSY)
        .into());
    };
    match &cfg.mode {
        Mode::Archive { oldest } => {
            remove_wal(dir, oldest, cfg.dry_run)?;
        }
        Mode::Retention { backup_dir, .. } => {
            crate::plan::run(cfg, dir)?;
            remove_stale_temps(backup_dir, cfg.dry_run)?;
        }
    }
    remove_stale_temps(dir, cfg.dry_run)?;
    Ok(ExitCode::SUCCESS)
}

/// How long a temporary file of a dead writer stays before a cleanup removes it.
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the temporary files that killed writers (pitr-archive, pitr-backup) left in `dir`
/// (see [`source::stale_temp_files`]), and logs each.
pub fn remove_stale_temps(dir: &Path, dry_run: bool) -> anyhow::Result<()> {
    // Test hook: PITR_TEST_STALE_TEMP_SECS lowers the age, so that a test can sweep the temp
    // file of a pitr-archive it has just killed.
    let age = std::env::var("PITR_TEST_STALE_TEMP_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(STALE_TEMP_AGE, std::time::Duration::from_secs);
    let stale = source::stale_temp_files(dir, age)?;
    for p in &stale {
        if dry_run {
            log_info!(
                "(dry-run) would remove {}, left by a writer that is gone",
                p.display()
            );
        } else {
            pitr_common::fs::remove_file_if_exists(p)?;
            log_info!("removed {}, left by a writer that is gone", p.display());
        }
    }
    if !stale.is_empty() && !dry_run {
        pitr_common::fs::fsync_dir(dir)?;
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

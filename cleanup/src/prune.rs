//! Removing what is no longer needed: archived WAL below `%r` (form 1), and backup sets and WAL
//! outside the retention (form 2, see [`crate::plan`]).
//!
//! Both forms take the archive's lock (`.pitr-cleanup.lock` in the archive directory), so two
//! cleanups never overlap, and both do nothing while `--removal-pause-trigger` exists.

use std::path::Path;
use std::process::ExitCode;

use pitr_common::exit::{self, Failure};
use pitr_common::wal::WalFileName;
use pitr_common::{archive_dir, lock, log_info, log_verbose, tempname};

use crate::args::{Config, Mode};

/// Name of the lock file in the archive directory.
pub const LOCK_FILE: &str = ".pitr-cleanup.lock";

pub use pitr_common::log::human_bytes as human;

/// Removes archived WAL older than `oldest` from `dir` and logs what went.
pub fn remove_wal(dir: &Path, oldest: &WalFileName, dry_run: bool) -> anyhow::Result<u64> {
    let removed = archive_dir::remove_older(dir, oldest, None, dry_run)?;
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
    let Some(dir) = cfg.archive.as_dir() else {
        anyhow::bail!("--archive {} is not a local directory", cfg.archive);
    };
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
            remove_stale_temps(backup_dir, cfg.stale_temp_age, cfg.dry_run)?;
        }
    }
    remove_stale_temps(dir, cfg.stale_temp_age, cfg.dry_run)?;
    Ok(ExitCode::SUCCESS)
}

/// Removes the temporary files that killed writers (pitr-archive, pitr-backup) left in `dir`
/// once they are `age` old (see [`tempname::stale`]), and logs each.
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

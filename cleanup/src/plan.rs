//! Retention (form 2): which backup sets and WAL to remove.
//!
//! Not written yet: it needs the backup set format of pitr-backup.

use std::path::Path;

use pitr_common::exit::Failure;

use crate::args::Config;

/// Applies the retention.
pub fn run(_cfg: &Config, _archive: &Path) -> anyhow::Result<()> {
    Err(
        Failure::new("retention (--backup-dir) is not implemented yet")
            .hint("use pitr-cleanup --archive DIR %r for now")
            .into(),
    )
}

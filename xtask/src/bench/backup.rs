//! Base backup: pitr-backup against pg_basebackup and pgBackRest (not written yet).

use anyhow::Result;

use super::{Ctx, Part};

/// Runs the base backup part.
pub fn run(ctx: &Ctx) -> Result<Part> {
    let _ = (ctx.scale, super::file_count);
    anyhow::bail!("the base backup part is not written yet")
}

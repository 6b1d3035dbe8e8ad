//! The `backup_label` file PostgreSQL returns from `pg_backup_stop()` (non-exclusive backups)
//! and reads when a base backup starts: where the backup's WAL starts and on which timeline.
//!
//! The format is lines of `KEY: value` written by `do_pg_backup_start` (PostgreSQL's
//! `src/backend/access/transam/xlog.c`): `START WAL LOCATION: 0/2000028 (file
//! 000000010000000000000002)`, `CHECKPOINT LOCATION`, `BACKUP METHOD`, `BACKUP FROM`,
//! `START TIME`, `LABEL`, `START TIMELINE`.

use crate::wal::{Lsn, Timeline, WalFileName};

/// The facts of a `backup_label` that pitr uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupLabel {
    /// `START WAL LOCATION`: the REDO location of the backup's checkpoint.
    pub start_lsn: Lsn,
    /// The WAL file named on the `START WAL LOCATION` line.
    pub start_wal: WalFileName,
    /// `CHECKPOINT LOCATION`.
    pub checkpoint_lsn: Lsn,
    /// `BACKUP FROM`: `primary` or `standby`.
    pub backup_from: String,
    /// `LABEL`.
    pub label: String,
    /// `START TIMELINE` (PostgreSQL 11+).
    pub timeline: Timeline,
}

/// A `backup_label` that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A required line is missing or malformed.
    #[error("backup_label has no valid {0} line")]
    Missing(&'static str),
}

fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .map(str::trim_end)
}

impl BackupLabel {
    /// Parses the text of a `backup_label`.
    pub fn parse(text: &str) -> Result<BackupLabel, Error> {
        const START: &str = "START WAL LOCATION";
        let start = value(text, START).ok_or(Error::Missing(START))?;
        // "0/2000028 (file 000000010000000000000002)"
        let (lsn, rest) = start.split_once(' ').ok_or(Error::Missing(START))?;
        let start_lsn = lsn.parse().map_err(|_| Error::Missing(START))?;
        let file = rest
            .strip_prefix("(file ")
            .and_then(|r| r.strip_suffix(')'))
            .ok_or(Error::Missing(START))?;
        let start_wal = WalFileName::parse(file).map_err(|_| Error::Missing(START))?;
        const CHECKPOINT: &str = "CHECKPOINT LOCATION";
        let checkpoint_lsn = value(text, CHECKPOINT)
            .and_then(|v| v.parse().ok())
            .ok_or(Error::Missing(CHECKPOINT))?;
        const TIMELINE: &str = "START TIMELINE";
        let timeline = value(text, TIMELINE)
            .and_then(|v| v.parse().ok())
            .ok_or(Error::Missing(TIMELINE))?;
        Ok(BackupLabel {
            start_lsn,
            start_wal,
            checkpoint_lsn,
            backup_from: value(text, "BACKUP FROM").unwrap_or("primary").to_string(),
            label: value(text, "LABEL").unwrap_or_default().to_string(),
            timeline,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_postgresql_15_label() {
        let text = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
                    CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\n\
                    BACKUP FROM: standby\nSTART TIME: 2026-11-25 02:43:15 UTC\n\
                    LABEL: pitr-backup vm\nSTART TIMELINE: 3\n";
        let l = BackupLabel::parse(text).unwrap();
        assert_eq!(l.start_lsn, Lsn(0x0200_0028));
        assert_eq!(l.start_wal.to_string(), "000000010000000000000002");
        assert_eq!(l.checkpoint_lsn, Lsn(0x0200_0060));
        assert_eq!(l.backup_from, "standby");
        assert_eq!(l.label, "pitr-backup vm");
        assert_eq!(l.timeline, Timeline(3));
        assert_eq!(
            BackupLabel::parse("LABEL: x\n").unwrap_err().to_string(),
            "backup_label has no valid START WAL LOCATION line"
        );
    }
}

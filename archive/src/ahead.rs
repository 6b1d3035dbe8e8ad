//! Archive-ahead: when PostgreSQL asks for segment N and a destination costs round trips (rsync,
//! object storage), the next segments it has already marked `.ready` are delivered in the same
//! batch, and each one delivered is recorded in the state dir with its size and CRC-32C. When
//! PostgreSQL then asks for one of them, the call checks the record against the file in
//! `pg_wal` and answers at once.
//!
//! PostgreSQL's status files stay the truth: pitr never renames `.ready` to `.done` (another
//! archiver, or PostgreSQL itself, would then disagree with what happened), it only reads which
//! segments are ready. A record is written only after every destination it names holds the
//! file, durably, and it is trusted only for the same content; anything else is delivered
//! again, where the archive's own rules (identical content is success, different content an
//! error) decide. ARCHITECTURE.md "Archive-ahead" gives the crash analysis.

use std::path::Path;

use pitr_common::pg;
use pitr_common::wal::{WalFileName, WalKind};

/// How many segments a call delivers ahead by default, for a remote destination (measured in
/// the README's "Archive-ahead" table: the gain flattens beyond it, while a call's latency
/// keeps growing).
pub const DEFAULT_FILES: usize = 8;

/// The segments PostgreSQL has marked ready after `asked`, oldest first, at most `limit`: whole
/// segments of any timeline ordered after it (history, partial and backup files keep calls of
/// their own, in the order PostgreSQL chooses).
pub fn next_ready(data_dir: &Path, asked: &WalFileName, limit: usize) -> Vec<WalFileName> {
    if limit == 0 || asked.kind != WalKind::Segment {
        return Vec::new();
    }
    let status = data_dir.join(pg::PG_WAL).join(pg::ARCHIVE_STATUS);
    let Ok(entries) = std::fs::read_dir(&status) else {
        return Vec::new();
    };
    let mut names: Vec<WalFileName> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name();
            let base = file.to_str()?.strip_suffix(".ready")?;
            let name = WalFileName::parse(base).ok()?;
            (name.kind == WalKind::Segment && name > *asked).then_some(name)
        })
        .collect();
    names.sort();
    names.truncate(limit);
    names
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_next_ready_segments_in_order_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let status = d.path().join("pg_wal/archive_status");
        std::fs::create_dir_all(&status).unwrap();
        for f in [
            "000000010000000000000003.ready",
            "000000010000000000000005.ready",
            "000000010000000000000004.done",
            "000000010000000000000006.ready",
            "000000010000000000000007.ready",
            "000000010000000000000002.ready",
            "00000002.history.ready",
            "000000010000000000000008.partial.ready",
            "000000010000000000000009.00000028.backup.ready",
            "junk.ready",
        ] {
            std::fs::write(status.join(f), b"").unwrap();
        }
        let asked = WalFileName::parse("000000010000000000000003").unwrap();
        let names: Vec<String> = next_ready(d.path(), &asked, 2)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            ["000000010000000000000005", "000000010000000000000006"]
        );
        assert_eq!(next_ready(d.path(), &asked, 10).len(), 3);
        assert!(next_ready(d.path(), &asked, 0).is_empty());
        let history = WalFileName::parse("00000002.history").unwrap();
        assert!(next_ready(d.path(), &history, 10).is_empty());
        assert!(next_ready(&d.path().join("missing"), &asked, 10).is_empty());
    }
}

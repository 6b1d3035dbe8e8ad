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
use pitr_common::wal::{WalFileName, WalKind, MIN_SEG_SIZE};

/// How much one batch delivers: `--archive-ahead N` (segments) or `--archive-ahead SIZE` (bytes
/// of WAL, with PostgreSQL's units: `128MB`, `1GB`). A size holds a batch's memory and staged
/// copies to the same bound whatever the cluster's segment size (`initdb --wal-segsize`, 1 MB
/// to 1 GB), where a count of eight 1 GB segments would hold gigabytes of compressed bytes per
/// batch, and three batches are in hand at once (one compressed, two on the wire; to an object
/// store without conditional writes more go on the wire while their copies stay within 192 MB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AheadLimit {
    /// Up to this many segments; 0 turns archive-ahead off.
    Segments(usize),
    /// Up to this many bytes of WAL, and at least one segment; 0 turns archive-ahead off.
    Bytes(u64),
}

impl AheadLimit {
    /// The default with a remote destination: 128 MB of WAL, eight segments of the default
    /// 16 MB (measured in the README's archive-ahead table, under "pitr-archive": the gain
    /// flattens beyond it, while a call's latency and the worker's memory keep growing).
    pub const DEFAULT: AheadLimit = AheadLimit::Bytes(128 << 20);

    /// Archive-ahead off: one file per call.
    pub const OFF: AheadLimit = AheadLimit::Segments(0);

    /// Whether archive-ahead is off.
    pub fn is_off(self) -> bool {
        matches!(self, AheadLimit::Segments(0) | AheadLimit::Bytes(0))
    }

    /// How many segments of `segment_bytes` each one batch takes (at least one unless off). A
    /// size below PostgreSQL's smallest segment (a damaged or truncated file) counts as the
    /// smallest, so that a size never becomes more files than 1 MB segments would make.
    pub fn segments(self, segment_bytes: u64) -> usize {
        match self {
            AheadLimit::Segments(n) => n,
            AheadLimit::Bytes(0) => 0,
            AheadLimit::Bytes(b) => usize::try_from(b / segment_bytes.max(MIN_SEG_SIZE))
                .map_or(usize::MAX, |n| n.max(1)),
        }
    }
}

impl std::fmt::Display for AheadLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            AheadLimit::Segments(n) => write!(f, "{n}"),
            AheadLimit::Bytes(0) => write!(f, "0"),
            AheadLimit::Bytes(b) => {
                let (n, unit) = UNITS
                    .iter()
                    .rev()
                    .find(|(_, _, m)| b % m == 0)
                    .map_or((b, "B"), |(u, _, m)| (b / m, *u));
                write!(f, "{n}{unit}")
            }
        }
    }
}

/// PostgreSQL's memory units (powers of 1024, as in postgresql.conf), each with its IEC name.
const UNITS: [(&str, &str, u64); 4] = [
    ("kB", "KiB", 1 << 10),
    ("MB", "MiB", 1 << 20),
    ("GB", "GiB", 1 << 30),
    ("TB", "TiB", 1 << 40),
];

impl argh::FromArgValue for AheadLimit {
    fn from_arg_value(value: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "'{value}' is neither a number of segments nor a size (128MB, 1GB; units kB, MB, GB, TB)"
            )
        };
        let digits = value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len());
        let (number, unit) = value.split_at(digits);
        let n: u64 = number.parse().map_err(|_| bad())?;
        if unit.is_empty() {
            return usize::try_from(n)
                .map(AheadLimit::Segments)
                .map_err(|_| bad());
        }
        let unit = unit.trim_start();
        let factor = UNITS
            .iter()
            .find(|(pg, iec, _)| unit == *pg || unit == *iec)
            .map(|(_, _, m)| *m)
            .ok_or_else(bad)?;
        n.checked_mul(factor).map(AheadLimit::Bytes).ok_or_else(bad)
    }
}

/// The segments PostgreSQL has marked ready after `asked`, oldest first, as many as `limit`
/// takes: whole segments of its timeline (history, partial and backup files keep calls of
/// their own, in the order PostgreSQL chooses). Never a later timeline's: its `.history` file,
/// which PostgreSQL 13 archives only after the older timeline's segments, must reach the
/// archive before any of its segments, or the archive holds segments no recovery can place
/// until then. A size is counted in segments of the first one's size (every segment of a
/// cluster has the same size).
pub fn next_ready(data_dir: &Path, asked: &WalFileName, limit: AheadLimit) -> Vec<WalFileName> {
    if limit.is_off() || asked.kind != WalKind::Segment {
        return Vec::new();
    }
    let wal = data_dir.join(pg::PG_WAL);
    let status = wal.join(pg::ARCHIVE_STATUS);
    let Ok(entries) = std::fs::read_dir(&status) else {
        return Vec::new();
    };
    let mut names: Vec<WalFileName> = entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name();
            let base = file.to_str()?.strip_suffix(".ready")?;
            let name = WalFileName::parse(base).ok()?;
            (name.kind == WalKind::Segment && name.timeline == asked.timeline && name > *asked)
                .then_some(name)
        })
        .collect();
    names.sort();
    let count = match (limit, names.first()) {
        (AheadLimit::Segments(n), _) => n,
        (AheadLimit::Bytes(_), Some(first)) => {
            // A segment that cannot be read is left to its own call, which reports why.
            let size = std::fs::metadata(wal.join(first.to_string())).map_or(u64::MAX, |m| m.len());
            limit.segments(size)
        }
        (AheadLimit::Bytes(_), None) => 0,
    };
    names.truncate(count);
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
            "000000020000000000000008.ready",
            "junk.ready",
        ] {
            std::fs::write(status.join(f), b"").unwrap();
        }
        let asked = WalFileName::parse("000000010000000000000003").unwrap();
        let names: Vec<String> = next_ready(d.path(), &asked, AheadLimit::Segments(2))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            names,
            ["000000010000000000000005", "000000010000000000000006"]
        );
        // Not timeline 2's segment: its history file is not archived yet.
        assert_eq!(
            next_ready(d.path(), &asked, AheadLimit::Segments(10)).len(),
            3
        );
        let on_2 = WalFileName::parse("000000020000000000000007").unwrap();
        let names: Vec<String> = next_ready(d.path(), &on_2, AheadLimit::Segments(10))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(names, ["000000020000000000000008"]);
        assert!(next_ready(d.path(), &asked, AheadLimit::OFF).is_empty());
        let history = WalFileName::parse("00000002.history").unwrap();
        assert!(next_ready(d.path(), &history, AheadLimit::Segments(10)).is_empty());
        assert!(next_ready(&d.path().join("missing"), &asked, AheadLimit::Segments(10)).is_empty());
    }

    #[test]
    fn a_size_counts_in_segments_of_the_first_ones_size() {
        let d = tempfile::tempdir().unwrap();
        let wal = d.path().join("pg_wal");
        std::fs::create_dir_all(wal.join("archive_status")).unwrap();
        for n in 4..=9 {
            let name = format!("00000001000000000000000{n}");
            std::fs::write(wal.join(&name), vec![0u8; 1 << 20]).unwrap();
            std::fs::write(wal.join(format!("archive_status/{name}.ready")), b"").unwrap();
        }
        let asked = WalFileName::parse("000000010000000000000003").unwrap();
        let count = |limit: &str| next_ready(d.path(), &asked, parse(limit).unwrap()).len();
        assert_eq!(count("3MB"), 3);
        assert_eq!(count("3584kB"), 3, "three and a half segments are three");
        assert_eq!(count("512kB"), 1, "at least one segment");
        assert_eq!(count("1GiB"), 6, "as many as are ready");
        assert_eq!(count("0MB"), 0);
        assert_eq!(count("2"), 2);
    }

    /// `--archive-ahead VALUE` as argh parses it.
    fn parse(value: &str) -> Result<AheadLimit, String> {
        <AheadLimit as argh::FromArgValue>::from_arg_value(value)
    }

    #[test]
    fn counts_and_sizes_parse_and_print_back() {
        for (text, limit, shown) in [
            ("8", AheadLimit::Segments(8), "8"),
            ("0", AheadLimit::OFF, "0"),
            ("128MB", AheadLimit::DEFAULT, "128MB"),
            ("128MiB", AheadLimit::DEFAULT, "128MB"),
            ("1GB", AheadLimit::Bytes(1 << 30), "1GB"),
            ("2048 kB", AheadLimit::Bytes(2 << 20), "2MB"),
            ("1536kB", AheadLimit::Bytes(1536 << 10), "1536kB"),
            ("0GB", AheadLimit::Bytes(0), "0"),
        ] {
            assert_eq!(parse(text), Ok(limit), "{text}");
            assert_eq!(limit.to_string(), shown, "{text}");
        }
        assert!(AheadLimit::Bytes(0).is_off() && AheadLimit::OFF.is_off());
        assert!(!AheadLimit::DEFAULT.is_off());
        assert_eq!(AheadLimit::DEFAULT.segments(16 << 20), 8);
        assert_eq!(AheadLimit::DEFAULT.segments(1 << 30), 1);
        assert_eq!(AheadLimit::DEFAULT.segments(1 << 20), 128);
        assert_eq!(
            AheadLimit::DEFAULT.segments(0),
            128,
            "an empty file counts as 1 MB"
        );
        assert_eq!(AheadLimit::DEFAULT.segments(8192), 128);
        for bad in [
            "",
            "MB",
            "8 segments",
            "12XB",
            "1mb",
            "-1",
            "1.5GB",
            "99999999999TB",
        ] {
            assert_eq!(
                parse(bad),
                Err(format!(
                    "'{bad}' is neither a number of segments nor a size (128MB, 1GB; units kB, MB, GB, TB)"
                )),
                "{bad}"
            );
        }
    }
}

//! WAL file names: the grammar PostgreSQL uses in `pg_wal` and in the archive.
//!
//! A segment is named `TTTTTTTTXXXXXXXXYYYYYYYY` (timeline, then the segment number split into a
//! "log" part and a "segment within log" part, all hex); a `.partial` segment is the last,
//! incomplete segment of an old timeline after a promotion; `TTTTTTTT.history` describes a
//! timeline switch; `...XXXXXXXX.YYYYYYYY.backup` is a backup history file. The segment number
//! split depends on the segment size (`0x1_0000_0000 / seg_size` segments per "log"), so every
//! conversion between names and LSNs takes the segment size; it is never assumed to be 16 MiB.
//!
//! See PostgreSQL's `src/include/access/xlog_internal.h` (`XLogFileName`, `XLogFromFileName`,
//! `IsXLogFileName`, `IsPartialXLogFileName`, `IsTLHistoryFileName`, `IsBackupHistoryFileName`).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A timeline ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timeline(pub u32);

/// A WAL location (log sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// A segment number: LSN divided by the segment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegNo(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = ParseError;

    /// Parses PostgreSQL's `X/Y` text form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseError::BadLsn(s.to_string());
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let ok =
            |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok(hi) || !ok(lo) {
            return Err(bad());
        }
        let hi = u64::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((hi << 32) | lo))
    }
}

/// A WAL file name that cannot be parsed, or a bad segment size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not one of the WAL file name forms.
    #[error("\"{0}\" is not a WAL file name")]
    NotWalName(String),
    /// Not an `X/Y` LSN.
    #[error("\"{0}\" is not a WAL location (expected X/Y in hex)")]
    BadLsn(String),
    /// Not a timeline number.
    #[error("\"{0}\" is not a timeline (a number from 1)")]
    BadTimeline(String),
    /// A segment size that PostgreSQL does not allow.
    #[error("{0} is not a valid WAL segment size (a power of two from 1 MiB to 1 GiB)")]
    BadSegmentSize(u64),
    /// A name whose segment part does not exist at this segment size.
    #[error("\"{name}\" is not a valid segment name for {seg_size}-byte segments")]
    SegmentOutOfRange {
        /// The name.
        name: String,
        /// The segment size it was checked against.
        seg_size: SegSize,
    },
}

/// Smallest and largest segment sizes PostgreSQL accepts (`IsValidWalSegSize`).
pub const MIN_SEG_SIZE: u64 = 1 << 20;
/// See [`MIN_SEG_SIZE`].
pub const MAX_SEG_SIZE: u64 = 1 << 30;

/// A WAL segment size PostgreSQL accepts: a power of two from 1 MiB to 1 GiB
/// (`IsValidWalSegSize`). Read from a page header or pg_control, never assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegSize(u32);

impl SegSize {
    /// PostgreSQL's default, 16 MiB (`initdb --wal-segsize` chooses another).
    pub const DEFAULT: SegSize = SegSize(16 << 20);

    /// Checks `bytes` the way PostgreSQL does.
    pub fn new(bytes: u64) -> Result<Self, ParseError> {
        if bytes.is_power_of_two() && (MIN_SEG_SIZE..=MAX_SEG_SIZE).contains(&bytes) {
            // In range, so it fits.
            Ok(SegSize(bytes as u32))
        } else {
            Err(ParseError::BadSegmentSize(bytes))
        }
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        u64::from(self.0)
    }

    /// The size in bytes, as `usize` for buffers.
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }

    /// Segments per 4 GiB "log file" (`XLogSegmentsPerXLogId`).
    pub fn segments_per_log(self) -> u64 {
        0x1_0000_0000 / self.bytes()
    }
}

impl fmt::Display for SegSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Lsn {
    /// The segment holding this location (`XLByteToSeg`).
    pub fn segno(self, seg_size: SegSize) -> SegNo {
        SegNo(self.0 / seg_size.bytes())
    }

    /// The offset of this location inside its segment.
    pub fn segment_offset(self, seg_size: SegSize) -> u64 {
        self.0 % seg_size.bytes()
    }
}

impl FromStr for Timeline {
    type Err = ParseError;

    /// Parses the decimal form of `backup_label`, meta files and `--target-timeline`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<u32>() {
            Ok(t) if t > 0 && !s.starts_with('+') => Ok(Timeline(t)),
            _ => Err(ParseError::BadTimeline(s.to_string())),
        }
    }
}

impl fmt::Display for Timeline {
    /// Timelines print in decimal, as PostgreSQL's messages and `backup_label` do; WAL file
    /// names carry them in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What kind of WAL file a name denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WalKind {
    /// A complete WAL segment.
    Segment,
    /// The incomplete last segment of a timeline, kept at promotion.
    Partial,
    /// A backup history file; the offset is the backup's start offset within the segment.
    Backup {
        /// Start offset of the backup inside its segment.
        offset: u32,
    },
    /// A timeline history file.
    History,
}

/// PostgreSQL's `%r` when it allows no cleanup: for every `.history` file and for every
/// segment asked for before redo starts (`RestoreArchivedFile` with cleanup off writes
/// timeline 0, segment 0). Timeline 0 makes it no WAL file name; it means "remove nothing".
pub const NO_RESTART_POINT: &str = "000000000000000000000000";

/// A parsed WAL file name.
///
/// The segment position is kept as the two 32-bit halves of the name (`log`, `seg`), as written,
/// so that names can be compared and printed without knowing the segment size; converting to a
/// [`SegNo`] or LSN takes the segment size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WalFileName {
    /// Timeline.
    pub timeline: Timeline,
    /// High 32 bits of the position ("log"); 0 for `.history`.
    pub log: u32,
    /// Low part of the position ("segment within log"); 0 for `.history`.
    pub seg: u32,
    /// The kind of file.
    pub kind: WalKind,
}

fn hex8(s: &str) -> Option<u32> {
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u32::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

impl WalFileName {
    /// A segment name from a timeline and a segment number.
    pub fn segment(timeline: Timeline, segno: SegNo, seg_size: SegSize) -> Self {
        let per = seg_size.segments_per_log();
        WalFileName {
            timeline,
            log: (segno.0 / per) as u32,
            seg: (segno.0 % per) as u32,
            kind: WalKind::Segment,
        }
    }

    /// The segment holding `lsn` on `timeline` (`XLByteToSeg`).
    pub fn containing(timeline: Timeline, lsn: Lsn, seg_size: SegSize) -> Self {
        Self::segment(timeline, lsn.segno(seg_size), seg_size)
    }

    /// A timeline history file name.
    pub fn history(timeline: Timeline) -> Self {
        WalFileName {
            timeline,
            log: 0,
            seg: 0,
            kind: WalKind::History,
        }
    }

    /// Parses a bare file name (no directory). Upper- and lower-case hex are accepted, as
    /// PostgreSQL's own checks do; [`Display`](fmt::Display) prints upper case.
    pub fn parse(name: &str) -> Result<Self, ParseError> {
        let bad = || ParseError::NotWalName(name.to_string());
        if !name.is_ascii() {
            return Err(bad());
        }
        if let Some(tli) = name.strip_suffix(".history") {
            let t = hex8(tli).ok_or_else(bad)?;
            return Ok(Self::history(Timeline(t)));
        }
        let (base, kind) = if let Some(b) = name.strip_suffix(".partial") {
            (b, WalKind::Partial)
        } else if let Some(b) = name.strip_suffix(".backup") {
            // TTTTTTTTXXXXXXXXYYYYYYYY.OOOOOOOO.backup
            let (b, off) = b.split_once('.').ok_or_else(bad)?;
            let offset = hex8(off).ok_or_else(bad)?;
            (b, WalKind::Backup { offset })
        } else {
            (name, WalKind::Segment)
        };
        if base.len() != 24 {
            return Err(bad());
        }
        let timeline = hex8(&base[0..8]).ok_or_else(bad)?;
        let log = hex8(&base[8..16]).ok_or_else(bad)?;
        let seg = hex8(&base[16..24]).ok_or_else(bad)?;
        if timeline == 0 {
            return Err(bad());
        }
        Ok(WalFileName {
            timeline: Timeline(timeline),
            log,
            seg,
            kind,
        })
    }

    /// The segment number, checking that the name is valid at this segment size.
    pub fn segno(&self, seg_size: SegSize) -> Result<SegNo, ParseError> {
        let per = seg_size.segments_per_log();
        if u64::from(self.seg) >= per {
            return Err(ParseError::SegmentOutOfRange {
                name: self.to_string(),
                seg_size,
            });
        }
        Ok(SegNo(u64::from(self.log) * per + u64::from(self.seg)))
    }

    /// The LSN at which this segment starts.
    pub fn start_lsn(&self, seg_size: SegSize) -> Result<Lsn, ParseError> {
        Ok(Lsn(self.segno(seg_size)?.0 * seg_size.bytes()))
    }

    /// The next segment on the same timeline (`...FF` rolls over into the next "log" for 16 MiB
    /// segments).
    pub fn next(&self, seg_size: SegSize) -> Result<Self, ParseError> {
        let n = self.segno(seg_size)?;
        Ok(Self::segment(self.timeline, SegNo(n.0 + 1), seg_size))
    }

    /// A position ordered just before this segment on its timeline, whatever the segment
    /// size: everything ordered after it on the timeline is this segment or later. Not
    /// necessarily a segment that exists (`...FFFFFFFF` stands for "the end of the previous
    /// log"). `None` for the very first position, and for anything but a segment.
    pub fn position_before(&self) -> Option<Self> {
        if self.kind != WalKind::Segment {
            return None;
        }
        let (log, seg) = match (self.log, self.seg) {
            (log, seg) if seg > 0 => (log, seg - 1),
            (log, _) if log > 0 => (log - 1, u32::MAX),
            _ => return None,
        };
        Some(WalFileName { log, seg, ..*self })
    }

    /// True for complete segments and `.partial` segments: files with WAL pages inside.
    pub fn has_wal_pages(&self) -> bool {
        matches!(self.kind, WalKind::Segment | WalKind::Partial)
    }

    /// Compares positions the way `pg_archivecleanup` does: by the segment part only, ignoring
    /// the timeline.
    pub fn cmp_position(&self, other: &Self) -> Ordering {
        (self.log, self.seg).cmp(&(other.log, other.seg))
    }
}

impl fmt::Display for WalFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            WalKind::History => write!(f, "{:08X}.history", self.timeline.0),
            _ => {
                write!(f, "{:08X}{:08X}{:08X}", self.timeline.0, self.log, self.seg)?;
                match self.kind {
                    WalKind::Partial => f.write_str(".partial"),
                    WalKind::Backup { offset } => write!(f, ".{offset:08X}.backup"),
                    _ => Ok(()),
                }
            }
        }
    }
}

impl FromStr for WalFileName {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl PartialOrd for WalFileName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for WalFileName {
    /// Orders by timeline, then position, then kind, which is the order of the names as text for
    /// upper-case names of one kind.
    fn cmp(&self, other: &Self) -> Ordering {
        let rank = |k: &WalKind| match k {
            WalKind::History => (0, 0),
            WalKind::Segment => (1, 0),
            WalKind::Backup { offset } => (2, *offset),
            WalKind::Partial => (3, 0),
        };
        (self.timeline, self.log, self.seg, rank(&self.kind)).cmp(&(
            other.timeline,
            other.log,
            other.seg,
            rank(&other.kind),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MB16: SegSize = SegSize::DEFAULT;

    fn size(bytes: u64) -> SegSize {
        SegSize::new(bytes).unwrap()
    }

    #[test]
    fn parses_every_kind_and_prints_it_back() {
        for name in [
            "000000010000000000000001",
            "0000000A00000003000000FF",
            "000000010000000000000001.partial",
            "000000010000000000000002.00000028.backup",
            "0000000A.history",
        ] {
            assert_eq!(WalFileName::parse(name).unwrap().to_string(), name);
        }
        let b = WalFileName::parse("000000010000000000000002.00000028.backup").unwrap();
        assert_eq!(b.kind, WalKind::Backup { offset: 0x28 });
        assert_eq!(
            WalFileName::parse("0000000a.history").unwrap().to_string(),
            "0000000A.history"
        );
    }

    #[test]
    fn rejects_what_is_not_a_wal_name() {
        for name in [
            "foo",
            "00000001000000000000001",
            "0000000100000000000000011",
            "00000001000000000000000G",
            "000000010000000000000001.done",
            "000000010000000000000001.backup",
            "00000001.partial",
            "000000000000000000000001",
            "1.history",
            "",
        ] {
            assert_eq!(
                WalFileName::parse(name),
                Err(ParseError::NotWalName(name.to_string())),
                "{name}"
            );
        }
        assert_eq!(
            ParseError::NotWalName("foo".into()).to_string(),
            "\"foo\" is not a WAL file name"
        );
    }

    #[test]
    fn the_position_before_a_segment_orders_just_before_it() {
        let n = |s: &str| WalFileName::parse(s).unwrap();
        let before = |s: &str| n(s).position_before().map(|b| b.to_string());
        assert_eq!(
            before("000000020000000300000010").as_deref(),
            Some("00000002000000030000000F")
        );
        assert_eq!(
            before("000000020000000300000000").as_deref(),
            Some("0000000200000002FFFFFFFF")
        );
        assert_eq!(before("000000010000000000000000"), None);
        assert_eq!(before("00000002.history"), None);
        assert_eq!(before("000000010000000000000005.partial"), None);
        // Between the segment and everything of its timeline ordered before it.
        let b = n("000000020000000300000000").position_before().unwrap();
        assert!(b < n("000000020000000300000000"));
        assert!(b > n("0000000200000002000000FF"));
        assert_eq!(n(&b.to_string()), b);
    }

    #[test]
    fn next_rolls_over_ff_for_16mb() {
        let n = WalFileName::parse("0000000100000000000000FF").unwrap();
        assert_eq!(
            n.next(MB16).unwrap().to_string(),
            "000000010000000100000000"
        );
    }

    #[test]
    fn segment_arithmetic_for_other_sizes() {
        // 64 MiB segments: 64 per log, so ...3F is the last of a log.
        let n = WalFileName::parse("00000002000000050000003F").unwrap();
        assert_eq!(
            n.next(size(64 << 20)).unwrap().to_string(),
            "000000020000000600000000"
        );
        assert!(
            n.next(size(128 << 20)).is_err(),
            "0x3F is out of range for 128 MiB"
        );
        // 1 GiB segments: 4 per log.
        let lsn = Lsn(0x0000_0002_C000_0000);
        let name = WalFileName::containing(Timeline(3), lsn, size(1 << 30));
        assert_eq!(name.to_string(), "000000030000000200000003");
        assert_eq!(name.start_lsn(size(1 << 30)).unwrap(), lsn);
        // 1 MiB segments: 4096 per log.
        let name = WalFileName::containing(Timeline(1), Lsn(0x1_0010_0000), size(1 << 20));
        assert_eq!(name.to_string(), "000000010000000100000001");
    }

    #[test]
    fn ordering_is_timeline_then_position() {
        let mut v: Vec<WalFileName> = [
            "000000020000000000000001",
            "000000010000000100000000",
            "0000000100000000000000FF",
            "00000002.history",
            "000000010000000000000003.partial",
        ]
        .iter()
        .map(|s| WalFileName::parse(s).unwrap())
        .collect();
        v.sort();
        let s: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(
            s,
            [
                "000000010000000000000003.partial",
                "0000000100000000000000FF",
                "000000010000000100000000",
                "00000002.history",
                "000000020000000000000001",
            ]
        );
        let a = WalFileName::parse("000000020000000000000001").unwrap();
        let b = WalFileName::parse("000000010000000000000002").unwrap();
        assert_eq!(a.cmp_position(&b), Ordering::Less);
    }

    #[test]
    fn lsn_text_round_trip() {
        let l: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(l, Lsn(0x16_B374_D848));
        assert_eq!(l.to_string(), "16/B374D848");
        assert!("16B374D848".parse::<Lsn>().is_err());
    }

    #[test]
    fn segment_sizes() {
        assert_eq!(SegSize::new(16 << 20), Ok(MB16));
        assert!(SegSize::new(1 << 30).is_ok());
        assert!(SegSize::new(1 << 20).is_ok());
        assert_eq!(
            SegSize::new(3 << 20).unwrap_err().to_string(),
            "3145728 is not a valid WAL segment size (a power of two from 1 MiB to 1 GiB)"
        );
        assert!(SegSize::new(512 << 10).is_err());
        assert!(SegSize::new(2 << 30).is_err());
        assert!(SegSize::new(0).is_err());
        assert_eq!(MB16.segments_per_log(), 256);
        assert_eq!(Lsn(0x1_2345_6789).segno(MB16), SegNo(0x123));
        assert_eq!(Lsn(0x1_2345_6789).segment_offset(MB16), 0x45_6789);
    }
}

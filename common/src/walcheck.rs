//! Integrity of a whole WAL segment: every page header and every record, checked the way
//! PostgreSQL's WAL reader checks them, before a file is handed to PostgreSQL.
//!
//! [`check`] is a pure function of the segment's bytes, its name and (optionally) the cluster's
//! system identifier. It follows PostgreSQL's `xlogreader.c` (`XLogDecodeNextRecord`,
//! `XLogReaderValidatePageHeader`, `ValidXLogRecordHeader`, `ValidXLogRecord`) and the writer's
//! rules in `xlog.c` (`CopyXLogRecordToWAL`, `AdvanceXLInsertBuffer`, `ReserveXLogSwitch`):
//!
//! - **Pages.** Every page PostgreSQL would read has the first page's magic (any `0xD1xx`, as
//!   [`walpage`] accepts), only the four known `xlp_info` flags, a long header on page 0 and
//!   nowhere else, `xlp_pageaddr` equal to the segment's start plus the page's offset, a
//!   timeline from 1 to the name's and never lower than the page before, zero header padding,
//!   and `xlp_rem_len` non-zero exactly when `XLP_FIRST_IS_CONTRECORD` is set. Page 0 is also
//!   checked by [`walpage::LongPageHeader`] for the file size, the name and the system
//!   identifier.
//! - **Records.** Records start MAXALIGNed (8 bytes) after the page header (24 bytes, 40 on
//!   page 0) or after the previous record, and flow across page boundaries; the 24-byte
//!   `XLogRecord` header may itself be split. Each header has `xl_tot_len` from 24 to 1 GiB, a
//!   resource manager ID that exists (built-in 0–21, or custom 128–255 from PostgreSQL 15), and
//!   `xl_prev` equal to the previous record's LSN (for the first record starting in the
//!   segment, an LSN before the segment). Each continuation page must carry
//!   `XLP_FIRST_IS_CONTRECORD` with `xlp_rem_len` equal to what is left of the record. The
//!   CRC-32C of every record that starts and ends in the segment is checked (over the data
//!   after the header, then the first 20 header bytes). Alignment padding after a record must
//!   be zero, as PostgreSQL leaves it.
//! - **Where WAL ends.** In a complete segment the last record ends at the segment's end,
//!   continues into the next segment, or is an `XLOG_SWITCH` (rmgr 0, info `0x40`), after which
//!   PostgreSQL reads nothing more of the segment. Anything else is damage; WAL that stops with
//!   nothing but zeros after it is reported as [`Error::EndsEarly`] (a copy taken while the
//!   segment was being written, or zeroed pages).
//! - **Lost continuations.** When crash recovery finds a record cut short, it writes an
//!   `XLOG_OVERWRITE_CONTRECORD` record at the start of the page where the continuation was
//!   lost and flags that page `XLP_FIRST_IS_OVERWRITE_CONTRECORD` (PostgreSQL 15, and the
//!   minor releases of 10 to 14 since late 2021). As PostgreSQL does, the cut record is skipped
//!   and reading restarts on that page; the record there must be the overwrite record and name
//!   the cut record.
//!
//! Legitimate layouts this accepts: the first segment of a new timeline (pages of the parent
//! timeline copied up to the switch point, then pages of the new one; the name's timeline is
//! never lower than any page's), a segment written across a crash (WAL continues where crash
//! recovery stopped, possibly after an overwrite record), a segment wholly inside one record
//! larger than a segment, an `XLOG_SWITCH` split across two pages or across two segments
//! (the second segment then begins with the switch record's last 8 or 16 bytes and is zero
//! after them), any record content (full-page images, `wal_compression`, every `wal_level`),
//! PostgreSQL 13 to 18.
//!
//! The WAL block size must be 8 kB, PostgreSQL's default (`--with-wal-blocksize`): PostgreSQL
//! compares the long header's `xlp_xlog_blcksz` with the size it was built with, and a segment
//! whose WAL ends on its first page offers nothing else to tell a damaged value from another
//! build's. A server built with another WAL block size gets every segment refused, with a
//! message that says so, from the first one on.
//!
//! # What the content after an `XLOG_SWITCH` may be
//! PostgreSQL 13 to 18 zero the rest of the segment after a switch record, page headers
//! included (`CopyXLogRecordToWAL` zeroes each following page and then its header). A crash
//! after the switch record reached disk but before the zeroed pages did leaves whatever the
//! recycled file held, and that segment is still archived later. PostgreSQL never reads there,
//! so this content is not refused; [`End::Switch`] says whether it is all zero.
//!
//! # `.partial` segments
//! PostgreSQL never asks `restore_command` for a `.partial` name; such a file is the last
//! segment of a timeline, kept at promotion, and holds valid WAL up to the switch point followed
//! by whatever the file held (zeros, WAL the standby had received but not replayed, recycled
//! pages). Damage cannot be told from that end, so for a `.partial` name only the first page's
//! long header is a condition: the walk then goes as far as WAL is valid and reports where and
//! why it stopped in [`End::Partial`].
//!
//! # What is still undetectable
//! Damage that leaves every check above passing:
//!
//! 1. **The record continued from the previous segment** (the `xlp_rem_len` bytes after page
//!    0's header, and the pages it spans): its CRC needs its start, which is in the previous
//!    segment. Its page headers are checked, including each `xlp_rem_len` against the previous
//!    page's, but not page 0's `xlp_rem_len` when the continuation ends on page 0: a change
//!    there that keeps the same MAXALIGNed end (the low three bits, if the padding after it
//!    stays zero) goes unseen. PostgreSQL sees it when it reads the two segments in sequence.
//! 2. **The record that continues into the next segment**: its CRC needs its end. Its header,
//!    when whole in this segment, is checked for length, resource manager and `xl_prev`, and
//!    its `xl_tot_len` against the `xlp_rem_len` of every page it crosses here; its data, its
//!    `xl_xid`, `xl_info` and `xl_crc` are not verified.
//! 3. **A segment wholly inside one record** (larger than a segment): only its page headers.
//! 4. **Bytes PostgreSQL never reads**: everything after an `XLOG_SWITCH` record, and the data
//!    of a record cut short by a crash and skipped through an overwrite record.
//! 5. **Header fields that need facts from outside the segment**: `xlp_sysid` when no system
//!    identifier is given; a page's `xlp_tli` changed to another timeline that still lies
//!    between its neighbours' (never in a segment of timeline 1; in a later one, for instance
//!    the page where a new timeline's first segment goes from its parent's pages to its own:
//!    where that happens is in the history file, and PostgreSQL also compares with the previous
//!    segment's last page); the `XLP_BKP_REMOVABLE` flag (`0x0004`), which PostgreSQL sets or
//!    clears per page depending on whether a base backup was running, and which recovery never
//!    reads; and page 0's `xlp_magic` changed to another `0xD1xx` value when no other page of
//!    the segment is read (its WAL ends on page 0 with a switch record): any `0xD1xx` is
//!    accepted so that a new major version does not stop recovery, and the other pages' magic
//!    is compared with page 0's.
//! 6. **CRC-32C collisions.** CRC-32C detects every error burst of up to 32 bits, so in a
//!    checked record any single flipped bit, and any damaged run of up to four bytes within its
//!    data or within its header, is always caught; other damage escapes with a probability of
//!    about 2^-32 per record.
//!
//! The cost is one pass over the bytes with hardware CRC-32C: about 5 ms of CPU for a 16 MiB
//! segment here, a third of decoding it with zstd (see `docs/walcheck.md`).

use std::fmt;
use std::ops::Range;

use crate::wal::{Lsn, WalFileName, WalKind};
use crate::walpage::{self, LONG_HEADER_LEN};

/// `XLOG_BLCKSZ`.
const WAL_BLOCK_SIZE: u32 = 8192;
const SHORT_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 24;
/// `offsetof(XLogRecord, xl_crc)`: the header bytes the CRC covers.
const RECORD_CRC_OFFSET: usize = 20;
const MAXALIGN: usize = 8;

const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
const XLP_LONG_HEADER: u16 = 0x0002;
const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
const XLP_ALL_FLAGS: u16 = 0x000F;

const RM_XLOG_ID: u8 = 0;
const RM_MAX_BUILTIN_ID: u8 = 21;
const RM_MIN_CUSTOM_ID: u8 = 128;
const XLR_INFO_MASK: u8 = 0x0F;
const XLOG_SWITCH: u8 = 0x40;
const XLOG_OVERWRITE_CONTRECORD: u8 = 0xD0;
const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;

/// The largest `xl_tot_len` PostgreSQL can read back (its record buffer, rounded up to a page,
/// must be a valid allocation: `MaxAllocSize`, 1 GiB - 1).
const MAX_RECORD_LEN: u32 = 0x3FFF_E000;

/// What a successful check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records that start and end in the segment, each with its CRC checked.
    pub records: u64,
    /// How the WAL in the segment ends.
    pub end: End,
    /// Byte ranges of the file (offsets) whose content could not be verified, in file order.
    /// Page headers inside them are verified all the same.
    pub unverified: Vec<Unverified>,
}

/// How the WAL in a segment ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The last record ends at the segment's end (with at most its alignment padding).
    SegmentEnd,
    /// The last record continues into the next segment. `None`: the segment lies wholly inside
    /// a record that started in an earlier segment.
    NextSegment {
        /// Where that record starts, when it starts in this segment.
        record: Option<Lsn>,
    },
    /// An `XLOG_SWITCH` record ends the WAL; PostgreSQL reads nothing after it.
    Switch {
        /// Where the switch record starts; `None` when it started in the previous segment.
        record: Option<Lsn>,
        /// Whether everything after the switch record is zero, as PostgreSQL writes it. Not
        /// zero after a crash that came before the zeroed pages reached disk.
        rest_is_zero: bool,
    },
    /// A `.partial` segment: valid WAL stops at `at`, for the reason in `why`.
    Partial {
        /// End of the last valid record (MAXALIGNed).
        at: Lsn,
        /// What is found there.
        why: Box<Error>,
    },
}

/// A byte range of the segment whose content could not be verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// File offsets.
    pub range: Range<u64>,
    /// Why.
    pub reason: Reason,
}

/// Why a byte range could not be verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The rest of a record that started in an earlier segment.
    ContinuedFromPrevious,
    /// A record that continues into the next segment.
    ContinuesIntoNext,
    /// A record cut short by a crash and skipped: the page after it is flagged
    /// `XLP_FIRST_IS_OVERWRITE_CONTRECORD`. PostgreSQL skips it too.
    Aborted,
    /// After an `XLOG_SWITCH` record: PostgreSQL never reads it.
    AfterSwitch,
    /// After the end of valid WAL in a `.partial` segment.
    AfterPartialEnd,
}

/// A segment that PostgreSQL would find damaged, or that is not what its name says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The first page's long header does not fit the file's name, size or cluster.
    #[error(transparent)]
    Header(#[from] walpage::Error),
    /// A `.history` or `.backup` name: not a file with WAL pages.
    #[error("{name} is not a WAL segment")]
    NotASegment {
        /// The file name.
        name: String,
    },
    /// A page header that is wrong.
    #[error("{name}: page at {lsn} (offset {offset}) {problem}")]
    Page {
        /// The file name.
        name: String,
        /// Where the page starts.
        lsn: Lsn,
        /// Its offset in the file.
        offset: u64,
        /// What is wrong.
        problem: PageProblem,
    },
    /// A record that is wrong.
    #[error("{name}: record at {lsn} (offset {offset}) {problem}")]
    Record {
        /// The file name.
        name: String,
        /// Where the record starts.
        lsn: Lsn,
        /// Its offset in the file.
        offset: u64,
        /// What is wrong.
        problem: RecordProblem,
    },
    /// Non-zero bytes where PostgreSQL leaves alignment padding.
    #[error("{name}: nonzero padding at {lsn} (offset {offset}) after a record")]
    Padding {
        /// The file name.
        name: String,
        /// Where the padding starts.
        lsn: Lsn,
        /// Its offset in the file.
        offset: u64,
    },
    /// WAL stops before the segment's end and only zeros follow: a copy taken while the segment
    /// was being written, or zeroed pages.
    #[error("{name}: WAL stops at {lsn} (offset {offset}) and the rest of the segment is zero")]
    EndsEarly {
        /// The file name.
        name: String,
        /// Where the zeros start.
        lsn: Lsn,
        /// Its offset in the file.
        offset: u64,
    },
}

/// What is wrong with a page header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageProblem {
    /// `xlp_magic` differs from the first page's.
    Magic {
        /// Found.
        found: u16,
        /// The first page's.
        expected: u16,
    },
    /// `xlp_info` has bits PostgreSQL does not define.
    InfoBits {
        /// Found.
        info: u16,
    },
    /// A long header on a page other than the first.
    LongHeader,
    /// The first page's `xlp_xlog_blcksz` is not 8192.
    BlockSize {
        /// Found.
        found: u32,
    },
    /// `xlp_pageaddr` is not where the page is.
    Address {
        /// Found.
        found: Lsn,
    },
    /// `xlp_tli` is 0.
    TimelineZero,
    /// `xlp_tli` is later than the name's timeline.
    TimelineLater {
        /// Found.
        found: u32,
        /// The name's.
        name: u32,
    },
    /// `xlp_tli` is lower than the previous page's.
    TimelineBackwards {
        /// Found.
        found: u32,
        /// The previous page's.
        previous: u32,
    },
    /// Bytes 20 to 23 of the header are not zero.
    HeaderPadding,
    /// `xlp_rem_len` is non-zero without `XLP_FIRST_IS_CONTRECORD`, or zero with it.
    ContinuationFlag {
        /// Found.
        rem_len: u32,
    },
    /// Both `XLP_FIRST_IS_CONTRECORD` and `XLP_FIRST_IS_OVERWRITE_CONTRECORD`.
    BothFlags,
    /// The page continues a record where a new record should start.
    UnexpectedContinuation {
        /// Its `xlp_rem_len`.
        rem_len: u32,
    },
    /// `XLP_FIRST_IS_OVERWRITE_CONTRECORD` on a page where no record was cut.
    UnexpectedOverwrite,
    /// The page does not continue the record that runs into it.
    MissingContinuation {
        /// Where that record starts (`None`: in the previous segment).
        record: Option<Lsn>,
    },
    /// `xlp_rem_len` disagrees with what is left of the record.
    ContinuationLength {
        /// Where that record starts (`None`: in the previous segment).
        record: Option<Lsn>,
        /// Found.
        found: u32,
        /// What is left of the record.
        expected: u64,
    },
}

impl fmt::Display for PageProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageProblem::Magic { found, expected } => write!(
                f,
                "has magic 0x{found:04X}, not 0x{expected:04X} like the first page"
            ),
            PageProblem::InfoBits { info } => write!(f, "has invalid flags 0x{info:04X}"),
            PageProblem::LongHeader => {
                f.write_str("has a long header, which only the first page of a segment has")
            }
            PageProblem::BlockSize { found } => write!(
                f,
                "says the WAL block size is {found}, not 8192 (PostgreSQL's default, the only one \
                 supported)"
            ),
            PageProblem::Address { found } => write!(f, "says it is at {found}"),
            PageProblem::TimelineZero => f.write_str("is on timeline 0"),
            PageProblem::TimelineLater { found, name } => write!(
                f,
                "is on timeline {found}, later than the timeline {name} of the file name"
            ),
            PageProblem::TimelineBackwards { found, previous } => write!(
                f,
                "is on timeline {found}, after a page on timeline {previous}"
            ),
            PageProblem::HeaderPadding => f.write_str("has nonzero padding in its header"),
            PageProblem::ContinuationFlag { rem_len } => write!(
                f,
                "has xlp_rem_len {rem_len}, which does not match its continuation flag"
            ),
            PageProblem::BothFlags => {
                f.write_str("says it both continues a record and overwrites a lost continuation")
            }
            PageProblem::UnexpectedContinuation { rem_len } => write!(
                f,
                "continues a record ({rem_len} bytes) where a new record should start"
            ),
            PageProblem::UnexpectedOverwrite => {
                f.write_str("says it overwrites a lost continuation, but no record runs into it")
            }
            PageProblem::MissingContinuation { record } => {
                write!(f, "does not continue the record {}", RecordRef(*record))
            }
            PageProblem::ContinuationLength {
                record,
                found,
                expected,
            } => write!(
                f,
                "says {found} bytes remain of the record {}, not {expected}",
                RecordRef(*record)
            ),
        }
    }
}

/// What is wrong with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// `xl_tot_len` below the header's size or above what PostgreSQL can read.
    Length {
        /// Found.
        len: u32,
    },
    /// A resource manager ID that does not exist.
    ResourceManager {
        /// Found.
        rmid: u8,
    },
    /// `xl_prev` is not the previous record.
    PrevLink {
        /// Found.
        found: Lsn,
        /// The previous record's LSN.
        expected: Lsn,
    },
    /// The first record starting in the segment has an `xl_prev` that is not before it.
    PrevLinkNotBefore {
        /// Found.
        found: Lsn,
    },
    /// The CRC-32C does not match.
    Crc,
    /// The record on a page flagged `XLP_FIRST_IS_OVERWRITE_CONTRECORD` is not an
    /// `XLOG_OVERWRITE_CONTRECORD` record.
    NotOverwrite,
    /// An `XLOG_OVERWRITE_CONTRECORD` record that names another record than the one cut short.
    OverwrittenLsn {
        /// Found.
        found: Lsn,
        /// The record cut short (`None`: one in an earlier segment).
        expected: Option<Lsn>,
    },
    /// An `XLOG_OVERWRITE_CONTRECORD` record where no record was cut short.
    UnexpectedOverwrite,
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordProblem::Length { len } => write!(f, "has invalid length {len}"),
            RecordProblem::ResourceManager { rmid } => {
                write!(f, "has invalid resource manager ID {rmid}")
            }
            RecordProblem::PrevLink { found, expected } => write!(
                f,
                "points back to {found}, not to the previous record at {expected}"
            ),
            RecordProblem::PrevLinkNotBefore { found } => write!(
                f,
                "points back to {found}, but the record before it is in an earlier segment"
            ),
            RecordProblem::Crc => f.write_str("has a bad CRC"),
            RecordProblem::NotOverwrite => {
                f.write_str("follows a lost continuation but is not an overwrite-contrecord record")
            }
            RecordProblem::OverwrittenLsn { found, expected } => match expected {
                Some(e) => write!(f, "says it overwrites the record at {found}, not {e}"),
                None => write!(
                    f,
                    "says it overwrites the record at {found}, which is not in an earlier segment"
                ),
            },
            RecordProblem::UnexpectedOverwrite => f.write_str(
                "is an overwrite-contrecord record, but no record was cut short before it",
            ),
        }
    }
}

/// "at X/Y" or "from the previous segment", for messages.
struct RecordRef(Option<Lsn>);

impl fmt::Display for RecordRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(lsn) => write!(f, "at {lsn}"),
            None => f.write_str("from the previous segment"),
        }
    }
}

impl fmt::Display for Summary {
    /// One line for a log: records checked, how the WAL ends, bytes not verified.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} records checked, ", self.records)?;
        match &self.end {
            End::SegmentEnd => f.write_str("WAL runs to the segment's end")?,
            End::NextSegment { record: Some(r) } => {
                write!(f, "the record at {r} continues in the next segment")?
            }
            End::NextSegment { record: None } => {
                f.write_str("the segment lies inside one record")?
            }
            End::Switch { record, .. } => {
                write!(f, "WAL ends with a switch record {}", RecordRef(*record))?
            }
            End::Partial { at, why } => write!(f, "valid WAL ends at {at}: {why}")?,
        }
        let bytes: u64 = self
            .unverified
            .iter()
            .map(|u| u.range.end - u.range.start)
            .sum();
        write!(f, ", {bytes} bytes not verifiable")
    }
}

/// Checks the segment `name` whose whole content is `bytes`, as described in the module
/// documentation. `system_identifier` is the cluster's (from pg_control); without it the
/// segment's system identifier is not checked.
pub fn check(
    name: &WalFileName,
    bytes: &[u8],
    system_identifier: Option<u64>,
) -> Result<Summary, Error> {
    if !name.has_wal_pages() {
        return Err(Error::NotASegment {
            name: name.to_string(),
        });
    }
    let header =
        walpage::verify(name, bytes, bytes.len() as u64, system_identifier)?.ok_or_else(|| {
            Error::NotASegment {
                name: name.to_string(),
            }
        })?;
    let mut walk = Walk {
        name,
        b: bytes,
        base: header.page_addr.0,
        blk: header.block_size as usize,
        magic: header.magic,
        name_tli: name.timeline.0,
        last_tli: 0,
        records: 0,
        unverified: Vec::new(),
        valid_end: LONG_HEADER_LEN,
    };
    if header.block_size != WAL_BLOCK_SIZE {
        return Err(walk.page_error(
            0,
            PageProblem::BlockSize {
                found: header.block_size,
            },
        ));
    }
    let page0 = walk.page(0)?;
    match walk.run(page0) {
        Ok(end) => Ok(walk.summary(end)),
        Err(why) if name.kind == WalKind::Partial => {
            let at = walk.valid_end;
            walk.unverified.retain(|u| u.range.start < at as u64);
            walk.push(at, bytes.len(), Reason::AfterPartialEnd);
            let end = End::Partial {
                at: walk.lsn(at),
                why: Box::new(why),
            };
            Ok(walk.summary(end))
        }
        Err(e) => Err(e),
    }
}

/// Where the records of a segment start, after what continues from the previous one.
struct Start {
    pos: usize,
    overwrite: Option<Option<usize>>,
}

/// A page header's facts the walk needs.
#[derive(Debug, Clone, Copy)]
struct Page {
    info: u16,
    rem_len: u32,
    header_len: usize,
}

/// What reading one record found.
enum Read {
    /// Whole in the segment, CRC checked.
    Whole { end: usize, rmid: u8, info: u8 },
    /// Runs into the next segment.
    NextSegment,
    /// Cut short: the page at `page` is flagged as overwriting its continuation.
    Overwritten { page: usize, header_len: usize },
}

struct Walk<'a> {
    name: &'a WalFileName,
    b: &'a [u8],
    base: u64,
    blk: usize,
    magic: u16,
    name_tli: u32,
    last_tli: u32,
    records: u64,
    unverified: Vec<Unverified>,
    /// End of the WAL verified so far (MAXALIGNed), for `.partial` segments.
    valid_end: usize,
}

use crate::walpage::{u16_at, u32_at, u64_at};

fn align(o: usize) -> usize {
    (o + MAXALIGN - 1) & !(MAXALIGN - 1)
}

/// Whether every byte is zero; written so that the compiler vectorizes it.
fn is_zero(b: &[u8]) -> bool {
    b.chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

impl Walk<'_> {
    fn lsn(&self, offset: usize) -> Lsn {
        Lsn(self.base + offset as u64)
    }

    fn push(&mut self, start: usize, end: usize, reason: Reason) {
        if start < end {
            self.unverified.push(Unverified {
                range: start as u64..end as u64,
                reason,
            });
        }
    }

    fn summary(self, end: End) -> Summary {
        Summary {
            records: self.records,
            end,
            unverified: self.unverified,
        }
    }

    fn page_error(&self, offset: usize, problem: PageProblem) -> Error {
        Error::Page {
            name: self.name.to_string(),
            lsn: self.lsn(offset),
            offset: offset as u64,
            problem,
        }
    }

    fn record_error(&self, offset: usize, problem: RecordProblem) -> Error {
        Error::Record {
            name: self.name.to_string(),
            lsn: self.lsn(offset),
            offset: offset as u64,
            problem,
        }
    }

    /// `error`, unless everything from `offset` on is zero: then the WAL simply stops there.
    fn or_ends_early(&self, offset: usize, error: Error) -> Error {
        if is_zero(&self.b[offset..]) {
            Error::EndsEarly {
                name: self.name.to_string(),
                lsn: self.lsn(offset),
                offset: offset as u64,
            }
        } else {
            error
        }
    }

    /// Validates the header of the page at `offset`, which the walk enters now (pages are
    /// entered in order, each once), as `XLogReaderValidatePageHeader` does, and a little more
    /// that PostgreSQL always writes (no long header after page 0, zero padding, `xlp_rem_len`
    /// set exactly with `XLP_FIRST_IS_CONTRECORD`).
    fn page(&mut self, offset: usize) -> Result<Page, Error> {
        let h = &self.b[offset..offset + SHORT_HEADER_LEN];
        let magic = u16_at(h, 0);
        let info = u16_at(h, 2);
        let tli = u32_at(h, 4);
        let addr = u64_at(h, 8);
        let rem_len = u32_at(h, 16);
        let fail = |w: &Self, p: PageProblem| -> Result<Page, Error> {
            Err(w.or_ends_early(offset, w.page_error(offset, p)))
        };
        if magic != self.magic {
            return fail(
                self,
                PageProblem::Magic {
                    found: magic,
                    expected: self.magic,
                },
            );
        }
        if info & !XLP_ALL_FLAGS != 0 {
            return fail(self, PageProblem::InfoBits { info });
        }
        // Page 0's long header was checked by `walpage` already.
        if offset != 0 && info & XLP_LONG_HEADER != 0 {
            return fail(self, PageProblem::LongHeader);
        }
        if addr != self.base + offset as u64 {
            return fail(self, PageProblem::Address { found: Lsn(addr) });
        }
        if tli == 0 {
            return fail(self, PageProblem::TimelineZero);
        }
        if tli > self.name_tli {
            return fail(
                self,
                PageProblem::TimelineLater {
                    found: tli,
                    name: self.name_tli,
                },
            );
        }
        if tli < self.last_tli {
            return fail(
                self,
                PageProblem::TimelineBackwards {
                    found: tli,
                    previous: self.last_tli,
                },
            );
        }
        if h[20..24] != [0; 4] {
            return fail(self, PageProblem::HeaderPadding);
        }
        let cont = info & XLP_FIRST_IS_CONTRECORD != 0;
        if cont != (rem_len != 0) {
            return fail(self, PageProblem::ContinuationFlag { rem_len });
        }
        if cont && info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0 {
            return fail(self, PageProblem::BothFlags);
        }
        self.last_tli = tli;
        Ok(Page {
            info,
            rem_len,
            header_len: if offset == 0 {
                LONG_HEADER_LEN
            } else {
                SHORT_HEADER_LEN
            },
        })
    }

    /// Enters the page at `offset` in the middle of a record (`record`: its start, `None` when
    /// in an earlier segment) of which `remaining` bytes are left. Returns where the record's
    /// bytes go on, or the page's header length if the page is flagged as overwriting them.
    fn continuation(
        &mut self,
        offset: usize,
        record: Option<usize>,
        remaining: usize,
    ) -> Result<Result<usize, usize>, Error> {
        let p = self.page(offset)?;
        let record_lsn = record.map(|r| self.lsn(r));
        if p.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0 {
            return Ok(Err(p.header_len));
        }
        if p.info & XLP_FIRST_IS_CONTRECORD == 0 {
            return Err(self.page_error(
                offset,
                PageProblem::MissingContinuation { record: record_lsn },
            ));
        }
        if p.rem_len as usize != remaining {
            return Err(self.page_error(
                offset,
                PageProblem::ContinuationLength {
                    record: record_lsn,
                    found: p.rem_len,
                    expected: remaining as u64,
                },
            ));
        }
        Ok(Ok(offset + p.header_len))
    }

    /// Alignment padding after a record ending at `end` must be zero.
    fn padding(&self, end: usize) -> Result<usize, Error> {
        let next = align(end);
        if self.b[end..next].iter().any(|&x| x != 0) {
            return Err(Error::Padding {
                name: self.name.to_string(),
                lsn: self.lsn(end),
                offset: end as u64,
            });
        }
        Ok(next)
    }

    /// The start of page 0: the rest of a record from an earlier segment (unverifiable) is
    /// followed through its pages. Returns where the first record of this segment starts and
    /// whether it must be an overwrite record, or how the segment ends when it is all
    /// continuation.
    fn skip_continuation(&mut self, page0: Page) -> Result<Result<Start, End>, Error> {
        let len = self.b.len();
        let mut pos = page0.header_len;
        // Set when the next record must be an XLOG_OVERWRITE_CONTRECORD record; holds the
        // offset of the record it overwrites, when that record starts in this segment.
        let mut overwrite: Option<Option<usize>> = None;
        if page0.info & XLP_FIRST_IS_CONTRECORD != 0 {
            let mut remaining = page0.rem_len as usize;
            let mut cur = pos;
            loop {
                let n = remaining.min(self.blk - cur % self.blk);
                remaining -= n;
                cur += n;
                if remaining == 0 {
                    break;
                }
                if cur == len {
                    self.push(pos, len, Reason::ContinuedFromPrevious);
                    return Ok(Err(End::NextSegment { record: None }));
                }
                match self.continuation(cur, None, remaining)? {
                    Ok(next) => cur = next,
                    Err(header_len) => {
                        self.push(pos, cur, Reason::Aborted);
                        overwrite = Some(None);
                        pos = cur + header_len;
                        break;
                    }
                }
            }
            if overwrite.is_none() {
                self.push(pos, cur, Reason::ContinuedFromPrevious);
                if self.is_switch_tail(pos, cur) && is_zero(&self.b[cur..]) {
                    self.push(cur, len, Reason::AfterSwitch);
                    return Ok(Err(End::Switch {
                        record: None,
                        rest_is_zero: true,
                    }));
                }
                pos = self.padding(cur)?;
            }
        } else if page0.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0 {
            overwrite = Some(None);
        }
        Ok(Ok(Start { pos, overwrite }))
    }

    fn run(&mut self, page0: Page) -> Result<End, Error> {
        let len = self.b.len();
        let Start {
            mut pos,
            mut overwrite,
        } = match self.skip_continuation(page0)? {
            Ok(start) => start,
            Err(end) => return Ok(end),
        };
        // LSN of the last record read whole: what the next record's xl_prev must be. `None`
        // until then: that record is in an earlier segment.
        let mut prev: Option<u64> = None;
        self.valid_end = pos;

        loop {
            if pos == len {
                return Ok(End::SegmentEnd);
            }
            if pos.is_multiple_of(self.blk) {
                let p = self.page(pos)?;
                if p.info & XLP_FIRST_IS_CONTRECORD != 0 {
                    return Err(self.page_error(
                        pos,
                        PageProblem::UnexpectedContinuation { rem_len: p.rem_len },
                    ));
                }
                if p.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0 {
                    return Err(self.page_error(pos, PageProblem::UnexpectedOverwrite));
                }
                pos += p.header_len;
            }
            match self.record(pos, prev)? {
                Read::Whole { end, rmid, info } => {
                    let is_overwrite =
                        rmid == RM_XLOG_ID && info & !XLR_INFO_MASK == XLOG_OVERWRITE_CONTRECORD;
                    match overwrite.take() {
                        Some(cut) => self.overwrite_record(pos, end, is_overwrite, cut)?,
                        None if is_overwrite => {
                            return Err(self.record_error(pos, RecordProblem::UnexpectedOverwrite));
                        }
                        None => {}
                    }
                    self.records += 1;
                    prev = Some(self.base + pos as u64);
                    if rmid == RM_XLOG_ID && info & !XLR_INFO_MASK == XLOG_SWITCH {
                        self.valid_end = align(end);
                        self.push(end, len, Reason::AfterSwitch);
                        return Ok(End::Switch {
                            record: Some(self.lsn(pos)),
                            rest_is_zero: is_zero(&self.b[end..]),
                        });
                    }
                    pos = self.padding(end)?;
                    self.valid_end = pos;
                }
                Read::NextSegment => {
                    self.push(pos, len, Reason::ContinuesIntoNext);
                    return Ok(End::NextSegment {
                        record: Some(self.lsn(pos)),
                    });
                }
                Read::Overwritten { page, header_len } => {
                    self.push(pos, page, Reason::Aborted);
                    overwrite = Some(Some(pos));
                    pos = page + header_len;
                }
            }
        }
    }

    /// Whether `self.b[start..end]`, the continuation of a record from the previous segment, is
    /// the end of an `XLOG_SWITCH` record whose header was split at the segment boundary: 8 or
    /// 16 bytes of a 24-byte header, with `xl_info`, `xl_rmid` and the padding where they
    /// belong.
    fn is_switch_tail(&self, start: usize, end: usize) -> bool {
        let tail = &self.b[start..end];
        let info_at = match tail.len() {
            16 => 8,
            8 => 0,
            _ => return false,
        };
        tail[info_at] & !XLR_INFO_MASK == XLOG_SWITCH
            && tail[info_at + 1] == RM_XLOG_ID
            && tail[info_at + 2..info_at + 4] == [0, 0]
    }

    /// The checks of `ValidXLogRecordHeader` on a whole header of the record at `start`.
    fn record_header(
        &self,
        start: usize,
        header: &[u8; RECORD_HEADER_LEN],
        prev: Option<u64>,
    ) -> Result<(), Error> {
        let tot_len = u32_at(header, 0);
        if !(RECORD_HEADER_LEN as u32..=MAX_RECORD_LEN).contains(&tot_len) {
            return Err(self.or_ends_early(
                start,
                self.record_error(start, RecordProblem::Length { len: tot_len }),
            ));
        }
        let rmid = header[17];
        let valid = match walpage::major_for_magic(self.magic) {
            Some(m) if m < 15 => rmid <= RM_MAX_BUILTIN_ID,
            Some(_) => rmid <= RM_MAX_BUILTIN_ID || rmid >= RM_MIN_CUSTOM_ID,
            None => true,
        };
        if !valid {
            return Err(self.record_error(start, RecordProblem::ResourceManager { rmid }));
        }
        let xl_prev = u64_at(header, 8);
        match prev {
            Some(p) if xl_prev != p => Err(self.record_error(
                start,
                RecordProblem::PrevLink {
                    found: Lsn(xl_prev),
                    expected: Lsn(p),
                },
            )),
            None if xl_prev >= self.base => Err(self.record_error(
                start,
                RecordProblem::PrevLinkNotBefore {
                    found: Lsn(xl_prev),
                },
            )),
            _ => Ok(()),
        }
    }

    /// Reads the record at `start` across pages, checking its header and its CRC.
    fn record(&mut self, start: usize, prev: Option<u64>) -> Result<Read, Error> {
        let len = self.b.len();
        let tot_len = u32_at(self.b, start);
        let mut header = [0u8; RECORD_HEADER_LEN];
        let header_here = self.blk - start % self.blk >= RECORD_HEADER_LEN;
        if header_here {
            header.copy_from_slice(&self.b[start..start + RECORD_HEADER_LEN]);
            self.record_header(start, &header, prev)?;
        } else if !(RECORD_HEADER_LEN as u32..=MAX_RECORD_LEN).contains(&tot_len) {
            return Err(self.or_ends_early(
                start,
                self.record_error(start, RecordProblem::Length { len: tot_len }),
            ));
        }
        // The header is gathered again piece by piece (it may be split), and checked here once
        // whole if it was not whole on the first page.
        let mut got_header = 0;
        let mut crc = 0u32;
        let mut remaining = tot_len as usize;
        let mut cur = start;
        loop {
            let n = remaining.min(self.blk - cur % self.blk);
            let mut piece = &self.b[cur..cur + n];
            if got_header < RECORD_HEADER_LEN {
                let h = (RECORD_HEADER_LEN - got_header).min(n);
                header[got_header..got_header + h].copy_from_slice(&piece[..h]);
                got_header += h;
                piece = &piece[h..];
                if got_header == RECORD_HEADER_LEN && !header_here {
                    self.record_header(start, &header, prev)?;
                }
            }
            crc = crc32c::crc32c_append(crc, piece);
            remaining -= n;
            cur += n;
            if remaining == 0 {
                break;
            }
            if cur == len {
                return Ok(Read::NextSegment);
            }
            match self.continuation(cur, Some(start), remaining)? {
                Ok(next) => cur = next,
                Err(header_len) => {
                    return Ok(Read::Overwritten {
                        page: cur,
                        header_len,
                    })
                }
            }
        }
        crc = crc32c::crc32c_append(crc, &header[..RECORD_CRC_OFFSET]);
        if crc != u32_at(&header, RECORD_CRC_OFFSET) {
            return Err(self.record_error(start, RecordProblem::Crc));
        }
        Ok(Read::Whole {
            end: cur,
            rmid: header[17],
            info: header[16],
        })
    }

    /// The record at `start..end` follows a page flagged `XLP_FIRST_IS_OVERWRITE_CONTRECORD`: it
    /// must be the `XLOG_OVERWRITE_CONTRECORD` record naming the record cut short (at offset
    /// `cut`, or in an earlier segment), as `VerifyOverwriteContrecord` requires.
    fn overwrite_record(
        &self,
        start: usize,
        end: usize,
        is_overwrite: bool,
        cut: Option<usize>,
    ) -> Result<(), Error> {
        if !is_overwrite {
            return Err(self.record_error(start, RecordProblem::NotOverwrite));
        }
        // PostgreSQL writes it right after the page header: small and on one page. Its CRC is
        // checked; if its layout were ever other than expected, there is nothing to compare.
        let Some(found) = overwritten_lsn(&self.b[start..end]) else {
            return Ok(());
        };
        let ok = match cut {
            Some(c) => found == self.base + c as u64,
            None => found < self.base,
        };
        if ok {
            Ok(())
        } else {
            Err(self.record_error(
                start,
                RecordProblem::OverwrittenLsn {
                    found: Lsn(found),
                    expected: cut.map(|c| self.lsn(c)),
                },
            ))
        }
    }
}

/// `xl_overwrite_contrecord.overwritten_lsn` from a record's bytes (header included), when the
/// record holds only main data: the block ids after the header are the optional origin and
/// top-level transaction id, then the main data's length; the main data is the record's last
/// bytes.
fn overwritten_lsn(record: &[u8]) -> Option<u64> {
    let mut i = RECORD_HEADER_LEN;
    let main_len = loop {
        match *record.get(i)? {
            XLR_BLOCK_ID_DATA_SHORT => break usize::from(*record.get(i + 1)?),
            XLR_BLOCK_ID_DATA_LONG => {
                let b = record.get(i + 1..i + 5)?;
                break u32_at(b, 0) as usize;
            }
            XLR_BLOCK_ID_ORIGIN => i += 3,
            XLR_BLOCK_ID_TOPLEVEL_XID => i += 5,
            _ => return None,
        }
    };
    let main = record.get(record.len().checked_sub(main_len)?..)?;
    Some(u64_at(main.get(..8)?, 0))
}

/// A segment that passes [`check`], for other crates' tests: [`walpage::fake_header`], one
/// `XLOG_SWITCH` record pointing back into the previous segment, and zeros to the end. `name`
/// must not be the first segment of the WAL (the record needs an earlier one to point to).
#[doc(hidden)]
pub fn fake_switch_segment(
    name: &WalFileName,
    seg_size: crate::wal::SegSize,
    sysid: u64,
) -> Vec<u8> {
    let mut b = walpage::fake_header(name, seg_size, sysid);
    let base = name.start_lsn(seg_size).map(|l| l.0).unwrap_or_default();
    let mut record = [0u8; RECORD_HEADER_LEN];
    record[0..4].copy_from_slice(&(RECORD_HEADER_LEN as u32).to_le_bytes());
    record[8..16].copy_from_slice(&base.saturating_sub(RECORD_HEADER_LEN as u64).to_le_bytes());
    record[16] = XLOG_SWITCH;
    record[17] = RM_XLOG_ID;
    let crc = crc32c::crc32c(&record[..RECORD_CRC_OFFSET]);
    record[RECORD_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(&record);
    b.resize(seg_size.as_usize(), 0);
    b
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A fixture: `<case>.<WAL file name>.zst` under `tests/fixtures/wal`.
    struct Fixture {
        case: String,
        name: WalFileName,
        bytes: Vec<u8>,
    }

    fn fixtures() -> Vec<Fixture> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wal");
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let file = path.file_name().unwrap().to_str().unwrap().to_string();
            let Some(stem) = file.strip_suffix(".zst") else {
                continue;
            };
            let (case, name) = stem.split_once('.').unwrap();
            let bytes = zstd::stream::decode_all(&std::fs::read(&path).unwrap()[..]).unwrap();
            out.push(Fixture {
                case: case.to_string(),
                name: WalFileName::parse(name).unwrap(),
                bytes,
            });
        }
        out.sort_by(|a, b| a.case.cmp(&b.case));
        assert!(out.len() >= 20, "fixtures missing");
        out
    }

    fn sysid(bytes: &[u8]) -> u64 {
        u64_at(bytes, 24)
    }

    fn fixture(case: &str) -> Fixture {
        fixtures().into_iter().find(|f| f.case == case).unwrap()
    }

    fn err(f: &Fixture, bytes: &[u8]) -> String {
        check(&f.name, bytes, Some(sysid(&f.bytes)))
            .unwrap_err()
            .to_string()
    }

    /// What each real segment holds, as the one-line summary says it.
    const EXPECTED: &[(&str, &str)] = &[
        ("13-full", "3557 records checked, the record at 0/7FFE50 continues in the next segment, 1110 bytes not verifiable"),
        ("13-switch", "618 records checked, WAL ends with a switch record at 0/C3E6B0, 792888 bytes not verifiable"),
        ("14-full", "3558 records checked, the record at 0/8FFFC8 continues in the next segment, 348 bytes not verifiable"),
        ("14-switch", "2481 records checked, WAL ends with a switch record at 0/BFC7A0, 14567 bytes not verifiable"),
        ("15-after-record", "3 records checked, WAL ends with a switch record at 0/992AA0, 1048401 bytes not verifiable"),
        ("15-crash", "2823 records checked, the record at 0/9FFEA8 continues in the next segment, 344 bytes not verifiable"),
        ("15-full", "3443 records checked, the record at 0/7FFF50 continues in the next segment, 263 bytes not verifiable"),
        ("15-inside-record", "0 records checked, the segment lies inside one record, 1048536 bytes not verifiable"),
        ("15-overwrite", "2765 records checked, the record at 0/7FFEB8 continues in the next segment, 21528 bytes not verifiable"),
        ("15-switch", "22 records checked, WAL ends with a switch record at 0/A01DC8, 1041567 bytes not verifiable"),
        ("15-switch-split-page", "3 records checked, WAL ends with a switch record at 0/709FF8, 1007576 bytes not verifiable"),
        ("15-switch-split-segment-a", "2 records checked, the record at 0/8FFFF0 continues in the next segment, 16 bytes not verifiable"),
        ("15-switch-split-segment-b", "0 records checked, WAL ends with a switch record from the previous segment, 1048536 bytes not verifiable"),
        ("15-timeline1", "1501 records checked, valid WAL ends at 0/7872D8: 000000010000000000000007.partial: record at 0/7872D8 (offset 553688) has invalid length 0, 494888 bytes not verifiable"),
        ("15-timeline2", "2823 records checked, the record at 0/7FFEA8 continues in the next segment, 344 bytes not verifiable"),
        ("16-full", "3560 records checked, the record at 0/6FFFC0 continues in the next segment, 237 bytes not verifiable"),
        ("16-switch", "2309 records checked, WAL ends with a switch record at 0/9EAFF0, 86335 bytes not verifiable"),
        ("17-full", "3557 records checked, the record at 0/6FFE30 continues in the next segment, 1118 bytes not verifiable"),
        ("17-switch", "2257 records checked, WAL ends with a switch record at 0/9E5BB0, 108039 bytes not verifiable"),
        ("18-full", "3560 records checked, the record at 0/9FFEF8 continues in the next segment, 294 bytes not verifiable"),
        ("18-switch", "2100 records checked, WAL ends with a switch record at 0/DD59B0, 173887 bytes not verifiable"),
    ];

    #[test]
    fn every_real_segment_passes_with_its_layout() {
        let all = fixtures();
        assert_eq!(all.len(), EXPECTED.len());
        for (f, (case, summary)) in all.iter().zip(EXPECTED) {
            assert_eq!(f.case, *case);
            let s = check(&f.name, &f.bytes, Some(sysid(&f.bytes))).unwrap();
            assert_eq!(s.to_string(), *summary, "{case}");
            assert_eq!(check(&f.name, &f.bytes, None).unwrap(), s, "{case}");
            // What PostgreSQL writes after a switch record is zero, page headers included.
            if let End::Switch { rest_is_zero, .. } = s.end {
                assert!(rest_is_zero, "{case}");
            }
        }
        // One of each major's magic.
        let majors: std::collections::BTreeSet<_> = all
            .iter()
            .filter_map(|f| walpage::major_for_magic(u16_at(&f.bytes, 0)))
            .collect();
        assert_eq!(
            majors.into_iter().collect::<Vec<_>>(),
            [13, 14, 15, 16, 17, 18]
        );
    }

    #[test]
    fn unverifiable_ranges_are_the_boundary_records() {
        let f = fixture("15-full");
        let s = check(&f.name, &f.bytes, None).unwrap();
        assert_eq!(
            s.unverified,
            [
                Unverified {
                    range: 40..127,
                    reason: Reason::ContinuedFromPrevious
                },
                Unverified {
                    range: 1048400..1048576,
                    reason: Reason::ContinuesIntoNext
                },
            ]
        );
        assert_eq!(
            s.end,
            End::NextSegment {
                record: Some(Lsn(0x7F_FF50))
            }
        );
        // The record cut by the crash and skipped through the overwrite record.
        let f = fixture("15-overwrite");
        let s = check(&f.name, &f.bytes, None).unwrap();
        assert_eq!(
            s.unverified[0],
            Unverified {
                range: 265520..286720,
                reason: Reason::Aborted
            }
        );
        assert_eq!(
            u16_at(&f.bytes, 286720 + 2) & XLP_FIRST_IS_OVERWRITE_CONTRECORD,
            0x0008
        );
        // A new timeline's first segment: pages of timeline 1, then of timeline 2.
        let f = fixture("15-timeline2");
        assert_eq!(u32_at(&f.bytes, 67 * 8192 + 4), 1);
        assert_eq!(u32_at(&f.bytes, 68 * 8192 + 4), 2);
    }

    /// splitmix64: a small deterministic generator for the damage campaign.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Whether the byte at `offset` is one the module documents as unverifiable: inside a
    /// range of the summary, except page headers the walk enters (inside boundary records).
    fn unverifiable(s: &Summary, offset: usize, blk: usize) -> bool {
        s.unverified.iter().any(|u| {
            u.range.contains(&(offset as u64))
                && (matches!(u.reason, Reason::AfterSwitch | Reason::AfterPartialEnd)
                    || offset % blk >= SHORT_HEADER_LEN)
        })
    }

    /// Whether damage at `offset..offset + n` that went unnoticed is of a kind the module
    /// documents: the XLP_BKP_REMOVABLE flag, a page's timeline kept in sequence, page 0's
    /// xlp_rem_len when the continuation from the previous segment ends on page 0, or the low
    /// byte of page 0's magic when no other page is read.
    fn documented_escape(
        orig: &[u8],
        damaged: &[u8],
        offset: usize,
        n: usize,
        s: &Summary,
    ) -> bool {
        let head_on_page0 = s
            .unverified
            .first()
            .is_some_and(|u| u.reason == Reason::ContinuedFromPrevious && u.range.end <= 8192);
        let only_page0 = s
            .unverified
            .iter()
            .any(|u| u.reason == Reason::AfterSwitch && u.range.start <= 8192);
        (offset..offset + n).all(|o| {
            let po = o % 8192;
            orig[o] == damaged[o]
                || (po == 2 && (orig[o] ^ damaged[o]) == 0x04)
                || (4..8).contains(&po)
                || (o < 8192 && (16..20).contains(&po) && head_on_page0)
                || (o == 0 && only_page0)
        })
    }

    #[test]
    fn random_flips_and_overwrites_outside_unverifiable_ranges_are_caught() {
        // 40 a fixture keeps this test to seconds in a debug build; with 3000 a fixture (60,000
        // mutations, release build) 39 escaped, all of documented kinds: 38 in the low byte of
        // the magic of the segment whose WAL ends on page 0, one XLP_BKP_REMOVABLE flip.
        const PER_FIXTURE: usize = 40;
        let mut rng = Rng(0x0012_5EED);
        let (mut caught, mut escaped) = (0, 0);
        for f in fixtures() {
            if f.name.kind == WalKind::Partial {
                continue;
            }
            let id = Some(sysid(&f.bytes));
            let s = check(&f.name, &f.bytes, id).unwrap();
            let mut b = f.bytes.clone();
            for i in 0..PER_FIXTURE {
                // Half single-byte flips, half 4-byte overwrites, all outside what the module
                // says it cannot verify.
                let n = if i % 2 == 0 { 1 } else { 4 };
                let offset = loop {
                    let o = rng.below(b.len() - n + 1);
                    if (o..o + n).all(|x| !unverifiable(&s, x, 8192)) {
                        break o;
                    }
                };
                loop {
                    for x in &mut b[offset..offset + n] {
                        *x = rng.next() as u8;
                    }
                    if b[offset..offset + n] != f.bytes[offset..offset + n] {
                        break;
                    }
                }
                match check(&f.name, &b, id) {
                    Err(_) => caught += 1,
                    Ok(_) => {
                        assert!(
                            documented_escape(&f.bytes, &b, offset, n, &s),
                            "{}: {n} bytes at offset {offset} changed from {:02X?} to {:02X?} \
                             went unnoticed",
                            f.case,
                            &f.bytes[offset..offset + n],
                            &b[offset..offset + n]
                        );
                        escaped += 1;
                    }
                }
                b[offset..offset + n].copy_from_slice(&f.bytes[offset..offset + n]);
            }
        }
        assert_eq!(caught + escaped, 20 * PER_FIXTURE);
        assert!(
            escaped <= PER_FIXTURE / 4,
            "{caught} caught, {escaped} escaped"
        );
    }

    #[test]
    fn every_bit_of_the_first_pages_and_records_matters() {
        // Page 0 with its first records, and page 1's header, of a segment with records that
        // begin right after the long header (no continuation).
        let f = fixture("15-timeline2");
        let s = check(&f.name, &f.bytes, Some(sysid(&f.bytes))).unwrap();
        let mut b = f.bytes.clone();
        let mut escaped = Vec::new();
        let offsets = (0..2048).chain(8192..8192 + SHORT_HEADER_LEN);
        for offset in offsets {
            for bit in 0..8 {
                b[offset] ^= 1 << bit;
                if check(&f.name, &b, Some(sysid(&f.bytes))).is_ok() {
                    assert!(
                        documented_escape(&f.bytes, &b, offset, 1, &s),
                        "{offset} {bit}"
                    );
                    escaped.push((offset, bit));
                }
                b[offset] ^= 1 << bit;
            }
        }
        // Only XLP_BKP_REMOVABLE, on both pages.
        assert_eq!(escaped, [(2, 2), (8194, 2)]);
    }

    #[test]
    fn the_defect_of_issue_12_is_caught() {
        // 4 bytes overwritten at a page boundary in the middle of a plain segment (8 MiB into a
        // 16 MiB one in the report; half way into these 1 MiB ones).
        let f = fixture("15-full");
        let mut b = f.bytes.clone();
        b[524288..524292].copy_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
        assert_eq!(
            err(&f, &b),
            "000000010000000000000007: page at 0/780000 (offset 524288) has magic 0xADDE, \
             not 0xD110 like the first page"
        );
        // The same four bytes inside a record (one that began on the page before).
        let mut b = f.bytes.clone();
        b[524388..524392].copy_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
        assert_eq!(
            err(&f, &b),
            "000000010000000000000007: record at 0/77FFC8 (offset 524232) has a bad CRC"
        );
    }

    #[test]
    fn truncated_zeroed_and_foreign_segments_are_refused() {
        let f = fixture("15-full");
        assert_eq!(
            err(&f, &f.bytes[..f.bytes.len() - 8192]),
            "000000010000000000000007 is 1040384 bytes but its header says the segment size \
             is 1048576"
        );
        assert!(matches!(
            check(&f.name, &f.bytes[..20], None),
            Err(Error::Header(walpage::Error::TooShort { len: 20, .. }))
        ));
        // Zeros from a record's start to the end: a copy taken while the segment was written.
        let mut b = f.bytes.clone();
        b[700592..].fill(0);
        assert_eq!(
            err(&f, &b),
            "000000010000000000000007: WAL stops at 0/7AB0B0 (offset 700592) and the rest of \
             the segment is zero"
        );
        // Zeros from a page boundary on, in the middle of a record.
        let mut b = f.bytes.clone();
        b[737280..].fill(0);
        assert_eq!(
            err(&f, &b),
            "000000010000000000000007: WAL stops at 0/7B4000 (offset 737280) and the rest of \
             the segment is zero"
        );
        // One zeroed page with WAL after it.
        let mut b = f.bytes.clone();
        b[737280..737280 + 8192].fill(0);
        assert_eq!(
            err(&f, &b),
            "000000010000000000000007: page at 0/7B4000 (offset 737280) has magic 0x0000, not \
             0xD110 like the first page"
        );
        // A page of another segment (of the same cluster and version) at the same offset.
        let other = fixture("15-crash");
        let mut b = f.bytes.clone();
        b[737280..737280 + 8192].copy_from_slice(&other.bytes[737280..737280 + 8192]);
        assert_eq!(
            err(&f, &b),
            "000000010000000000000007: page at 0/7B4000 (offset 737280) says it is at 0/9B4000"
        );
        // Another cluster's segment, or one under another name.
        assert_eq!(
            check(&f.name, &f.bytes, Some(42)).unwrap_err().to_string(),
            format!(
                "000000010000000000000007 is from database system {}, not 42",
                sysid(&f.bytes)
            )
        );
        let n = WalFileName::parse("000000010000000000000008").unwrap();
        assert_eq!(
            check(&n, &f.bytes, None).unwrap_err().to_string(),
            "000000010000000000000008 starts at WAL location 0/700000 but its name says 0/800000"
        );
        // Another WAL block size than the server's, or another format.
        let mut b = f.bytes.clone();
        b[36..40].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(
            err(&f, &b),
            "000000010000000000000007: page at 0/700000 (offset 0) says the WAL block size is \
             4096, not 8192 (PostgreSQL's default, the only one supported)"
        );
        let mut b = f.bytes.clone();
        b[0..2].copy_from_slice(&0x1234u16.to_le_bytes());
        assert_eq!(
            err(&f, &b),
            "000000010000000000000007 has no valid WAL page header (magic 0x1234, info 0x0007)"
        );
        let n = WalFileName::parse("00000001.history").unwrap();
        assert_eq!(
            check(&n, &f.bytes, None).unwrap_err().to_string(),
            "00000001.history is not a WAL segment"
        );
    }

    #[test]
    fn timelines_must_fit_the_name_and_never_go_back() {
        let f = fixture("15-timeline2");
        let n = WalFileName::parse("000000010000000000000007").unwrap();
        assert_eq!(
            check(&n, &f.bytes, None).unwrap_err().to_string(),
            "000000010000000000000007: page at 0/788000 (offset 557056) is on timeline 2, later \
             than the timeline 1 of the file name"
        );
        let mut b = f.bytes.clone();
        b[100 * 8192 + 4] = 1;
        assert_eq!(
            err(&f, &b),
            "000000020000000000000007: page at 0/7C8000 (offset 819200) is on timeline 1, after \
             a page on timeline 2"
        );
    }

    #[test]
    fn continuations_and_lengths_are_cross_checked() {
        let f = fixture("15-inside-record");
        // xlp_rem_len of page 5 one less than what remains of the record.
        let mut b = f.bytes.clone();
        let o = 5 * 8192 + 16;
        let rem = u32_at(&b, o);
        b[o..o + 4].copy_from_slice(&(rem - 1).to_le_bytes());
        assert_eq!(
            err(&f, &b),
            format!(
                "000000010000000000000008: page at 0/80A000 (offset 40960) says {} bytes remain \
                 of the record from the previous segment, not {rem}",
                rem - 1
            )
        );
        // The continuation flag cleared.
        let mut b = f.bytes.clone();
        b[5 * 8192 + 2] &= !0x01;
        assert_eq!(
            err(&f, &b),
            format!(
                "000000010000000000000008: page at 0/80A000 (offset 40960) has xlp_rem_len {rem}, \
                 which does not match its continuation flag"
            )
        );
        // A switch record's tail at the start of a segment is taken for one only with zeros
        // after it; otherwise a record must follow.
        let f = fixture("15-switch-split-segment-b");
        let mut b = f.bytes.clone();
        b[9000] = 1;
        assert_eq!(
            err(&f, &b),
            "000000010000000000000009: record at 0/900030 (offset 48) has invalid length 0"
        );
    }

    #[test]
    fn garbage_after_a_valid_first_page_header_is_refused_without_panicking() {
        let f = fixture("15-full");
        let mut rng = Rng(7);
        let mut b = f.bytes.clone();
        for round in 0..64 {
            // Random bytes from some point of page 0 on, or random pages with valid headers.
            let from = 40 + rng.below(8000);
            for x in &mut b[from..] {
                *x = rng.next() as u8;
            }
            if round % 2 == 1 {
                for page in (8192..b.len()).step_by(8192) {
                    b[page..page + 24].copy_from_slice(&f.bytes[page..page + 24]);
                }
            }
            assert!(check(&f.name, &b, None).is_err(), "round {round}");
            b.copy_from_slice(&f.bytes);
        }
    }

    #[test]
    fn the_fake_switch_segment_passes() {
        let size = crate::wal::SegSize::new(1 << 20).unwrap();
        let n = WalFileName::parse("000000010000000000000005").unwrap();
        let s = check(&n, &fake_switch_segment(&n, size, 7), Some(7)).unwrap();
        assert_eq!(s.records, 1);
        assert!(matches!(
            s.end,
            End::Switch {
                rest_is_zero: true,
                ..
            }
        ));
        assert!(check(&n, &fake_switch_segment(&n, size, 7), Some(8)).is_err());
    }

    #[test]
    fn the_tail_after_a_switch_is_not_read() {
        // After a crash, the pages after a switch record can hold what the recycled file held.
        let f = fixture("15-switch");
        let stale = fixture("15-crash");
        let mut b = f.bytes.clone();
        b[16384..].copy_from_slice(&stale.bytes[16384..]);
        let s = check(&f.name, &b, None).unwrap();
        assert_eq!(
            s.end,
            End::Switch {
                record: Some(Lsn(0xA0_1DC8)),
                rest_is_zero: false
            }
        );
    }

    #[test]
    fn a_partial_segment_reports_where_valid_wal_ends() {
        let f = fixture("15-timeline1");
        let s = check(&f.name, &f.bytes, None).unwrap();
        let End::Partial { at, .. } = s.end else {
            panic!("{s:?}")
        };
        assert_eq!(at, Lsn(0x78_72D8));
        // Damage before that point moves the end to the damaged record.
        let mut b = f.bytes.clone();
        b[300_000] ^= 0x10;
        let s = check(&f.name, &b, None).unwrap();
        let End::Partial { at, why } = s.end else {
            panic!("{s:?}")
        };
        assert!(at.0 - 0x70_0000 <= 300_000, "{at}");
        assert!(
            matches!(
                *why,
                Error::Record {
                    problem: RecordProblem::Crc,
                    ..
                }
            ),
            "{why}"
        );
        // Its long header is still a condition.
        assert!(matches!(
            check(&f.name, &f.bytes, Some(42)),
            Err(Error::Header(walpage::Error::ForeignSystem { .. }))
        ));
    }
}

//! The WAL long page header: the first 40 bytes of every WAL segment.
//!
//! `XLogLongPageHeaderData` (PostgreSQL `src/include/access/xlog_internal.h`): `xlp_magic` (u16),
//! `xlp_info` (u16, `XLP_LONG_HEADER` set on the first page of a segment), `xlp_tli` (u32),
//! `xlp_pageaddr` (u64, the LSN where this page starts), `xlp_rem_len` (u32), padding, then
//! `xlp_sysid` (u64), `xlp_seg_size` (u32), `xlp_xlog_blcksz` (u32). All little-endian on the
//! platforms we support. Checking it on archive and on restore is how a segment of another
//! cluster, a truncated file or a file under the wrong name is caught before it does harm.

use crate::wal::{Lsn, SegSize, Timeline, WalFileName};

/// Size of the long page header.
pub const LONG_HEADER_LEN: usize = 40;
const XLP_LONG_HEADER: u16 = 0x0002;

/// The fields of a segment's first page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongPageHeader {
    /// `XLOG_PAGE_MAGIC`, which changes with every major version's WAL format.
    pub magic: u16,
    /// Page flags.
    pub info: u16,
    /// Timeline of the page.
    pub timeline: Timeline,
    /// WAL location of the start of the page.
    pub page_addr: Lsn,
    /// Database system identifier of the cluster that wrote it.
    pub system_identifier: u64,
    /// Segment size.
    pub seg_size: SegSize,
    /// WAL block size.
    pub block_size: u32,
}

/// A WAL file whose first page header does not fit its name, its size or its cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than a header.
    #[error("{name} is too short for a WAL segment ({len} bytes)")]
    TooShort {
        /// The file name.
        name: WalFileName,
        /// Its length.
        len: u64,
    },
    /// The first page is not a long page header of a known WAL format.
    #[error("{name} has no valid WAL page header (magic 0x{magic:04X}, info 0x{info:04X})")]
    BadMagic {
        /// The file name.
        name: WalFileName,
        /// What was found.
        magic: u16,
        /// Page flags found.
        info: u16,
    },
    /// An invalid segment size in the header.
    #[error("{name} has an invalid segment size {seg_size} in its header")]
    BadSegmentSize {
        /// The file name.
        name: WalFileName,
        /// What the header says.
        seg_size: u32,
    },
    /// File size differs from the header's segment size.
    #[error("{name} is {len} bytes but its header says the segment size is {seg_size}")]
    WrongSize {
        /// The file name.
        name: WalFileName,
        /// The file length.
        len: u64,
        /// What the header says.
        seg_size: SegSize,
    },
    /// The name is not a segment position at the header's segment size.
    #[error("{name} is not a segment name for the {seg_size}-byte segments its header says")]
    NameOutOfRange {
        /// The file name.
        name: WalFileName,
        /// What the header says.
        seg_size: SegSize,
    },
    /// The page address is not where the name says the segment starts.
    #[error("{name} starts at WAL location {found} but its name says {expected}")]
    WrongAddress {
        /// The file name.
        name: WalFileName,
        /// From the header.
        found: Lsn,
        /// From the name.
        expected: Lsn,
    },
    /// The header's timeline is later than the name's.
    #[error("{name} holds timeline {found} pages but its name says timeline {expected}")]
    WrongTimeline {
        /// The file name.
        name: WalFileName,
        /// From the header.
        found: Timeline,
        /// From the name.
        expected: Timeline,
    },
    /// The header's system identifier is not the expected one.
    #[error("{name} is from database system {found}, not {expected}")]
    ForeignSystem {
        /// The file name.
        name: WalFileName,
        /// From the header.
        found: u64,
        /// Expected.
        expected: u64,
    },
}

/// Little-endian field readers for the fixed WAL layouts (the caller checks the length); shared
/// with `walcheck`.
pub(crate) fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
pub(crate) fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
pub(crate) fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

/// The PostgreSQL major version a WAL page magic belongs to, for messages.
pub fn major_for_magic(magic: u16) -> Option<u32> {
    match magic {
        0xD101 => Some(11),
        0xD106 => Some(13),
        0xD10D => Some(14),
        0xD110 => Some(15),
        0xD113 => Some(16),
        0xD116 => Some(17),
        0xD118 => Some(18),
        _ => None,
    }
}

impl LongPageHeader {
    /// Parses the header from the first bytes of the WAL file `name`. Any `0xD1xx` magic is
    /// accepted, so that a new major version does not stop archiving; [`major_for_magic`] names
    /// the known ones.
    pub fn parse(name: &WalFileName, bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < LONG_HEADER_LEN {
            return Err(Error::TooShort {
                name: *name,
                len: bytes.len() as u64,
            });
        }
        let magic = u16_at(bytes, 0);
        let info = u16_at(bytes, 2);
        if magic & 0xFF00 != 0xD100 || info & XLP_LONG_HEADER == 0 {
            return Err(Error::BadMagic {
                name: *name,
                magic,
                info,
            });
        }
        let raw_size = u32_at(bytes, 32);
        let seg_size = SegSize::new(u64::from(raw_size)).map_err(|_| Error::BadSegmentSize {
            name: *name,
            seg_size: raw_size,
        })?;
        Ok(LongPageHeader {
            magic,
            info,
            timeline: Timeline(u32_at(bytes, 4)),
            page_addr: Lsn(u64_at(bytes, 8)),
            system_identifier: u64_at(bytes, 24),
            seg_size,
            block_size: u32_at(bytes, 36),
        })
    }

    /// Checks that this header belongs in the file `name` of `len` bytes, and (when given) to
    /// the database system `system_identifier`.
    ///
    /// A segment's pages may carry an earlier timeline than its name: at a timeline switch
    /// PostgreSQL copies the old timeline's last segment to the new timeline's name. A later
    /// timeline never belongs.
    pub fn check(
        &self,
        name: &WalFileName,
        len: u64,
        system_identifier: Option<u64>,
    ) -> Result<(), Error> {
        if len != self.seg_size.bytes() {
            return Err(Error::WrongSize {
                name: *name,
                len,
                seg_size: self.seg_size,
            });
        }
        let expected = name
            .start_lsn(self.seg_size)
            .map_err(|_| Error::NameOutOfRange {
                name: *name,
                seg_size: self.seg_size,
            })?;
        if self.page_addr != expected {
            return Err(Error::WrongAddress {
                name: *name,
                found: self.page_addr,
                expected,
            });
        }
        if self.timeline > name.timeline {
            return Err(Error::WrongTimeline {
                name: *name,
                found: self.timeline,
                expected: name.timeline,
            });
        }
        match system_identifier {
            Some(expected) if self.system_identifier != expected => Err(Error::ForeignSystem {
                name: *name,
                found: self.system_identifier,
                expected,
            }),
            _ => Ok(()),
        }
    }
}

/// The one check of a WAL file's first page: `head` (at least its first
/// [`LONG_HEADER_LEN`] bytes) is parsed and checked against the name `name`, the file's length
/// `len` and, when given, the database system. Files without WAL pages (`.history`,
/// `.backup`) pass untouched and give `None`.
pub fn verify(
    name: &WalFileName,
    head: &[u8],
    len: u64,
    system_identifier: Option<u64>,
) -> Result<Option<LongPageHeader>, Error> {
    if !name.has_wal_pages() {
        return Ok(None);
    }
    let h = LongPageHeader::parse(name, head)?;
    h.check(name, len, system_identifier)?;
    Ok(Some(h))
}

/// Builds a plausible first page header, for tests here and in the binaries.
#[doc(hidden)]
pub fn fake_header(name: &WalFileName, seg_size: SegSize, sysid: u64) -> Vec<u8> {
    let mut b = vec![0u8; LONG_HEADER_LEN];
    b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
    b[2..4].copy_from_slice(&(XLP_LONG_HEADER | 0x0004).to_le_bytes());
    b[4..8].copy_from_slice(&name.timeline.0.to_le_bytes());
    let addr = name.start_lsn(seg_size).map(|l| l.0).unwrap_or_default();
    b[8..16].copy_from_slice(&addr.to_le_bytes());
    b[24..32].copy_from_slice(&sysid.to_le_bytes());
    b[32..36].copy_from_slice(&(seg_size.bytes() as u32).to_le_bytes());
    b[36..40].copy_from_slice(&8192u32.to_le_bytes());
    b
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MB16: SegSize = SegSize::DEFAULT;
    const LEN: u64 = 16 << 20;

    fn name(s: &str) -> WalFileName {
        WalFileName::parse(s).unwrap()
    }

    #[test]
    fn accepts_a_matching_header() {
        let n = name("0000000100000002000000A3");
        let h = verify(&n, &fake_header(&n, MB16, 42), LEN, Some(42))
            .unwrap()
            .unwrap();
        assert_eq!(h.page_addr, Lsn(0x2_A300_0000));
        assert_eq!(h.system_identifier, 42);
        assert_eq!(major_for_magic(h.magic), Some(15));
        // Files without pages are not looked at.
        let hist = name("00000002.history");
        assert_eq!(
            verify(&hist, b"1\t0/3000000\tno recovery target\n", 30, None),
            Ok(None)
        );
    }

    #[test]
    fn names_each_mismatch() {
        let n = name("0000000100000002000000A3");
        let hdr = fake_header(&n, MB16, 42);
        let err = |n: &str, len: u64, sysid: Option<u64>| {
            verify(&name(n), &hdr, len, sysid).unwrap_err().to_string()
        };
        assert_eq!(
            err("0000000100000002000000A3", 1000, None),
            "0000000100000002000000A3 is 1000 bytes but its header says the segment size is 16777216"
        );
        assert_eq!(
            err("0000000100000002000000A4", LEN, None),
            "0000000100000002000000A4 starts at WAL location 2/A3000000 but its name says 2/A4000000"
        );
        assert_eq!(
            err("0000000100000002000000A3", LEN, Some(7)),
            "0000000100000002000000A3 is from database system 42, not 7"
        );
        // Pages of an earlier timeline under a later timeline's name are normal.
        verify(&name("0000000200000002000000A3"), &hdr, LEN, None).unwrap();
        let h3 = fake_header(&name("0000000300000002000000A3"), MB16, 42);
        assert_eq!(
            verify(&name("0000000200000002000000A3"), &h3, LEN, None)
                .unwrap_err()
                .to_string(),
            "0000000200000002000000A3 holds timeline 3 pages but its name says timeline 2"
        );
        // A .partial segment is checked like a segment.
        assert!(matches!(
            verify(&name("0000000100000002000000A4.partial"), &hdr, LEN, None),
            Err(Error::WrongAddress { .. })
        ));
    }

    #[test]
    fn rejects_garbage_and_short_files() {
        let n = name("000000010000000000000001");
        assert_eq!(
            verify(&n, &[0u8; 40], LEN, None).unwrap_err().to_string(),
            "000000010000000000000001 has no valid WAL page header (magic 0x0000, info 0x0000)"
        );
        assert!(matches!(
            verify(&n, &[0u8; 10], 10, None),
            Err(Error::TooShort { len: 10, .. })
        ));
        let mut hdr = fake_header(&n, MB16, 1);
        hdr[32..36].copy_from_slice(&3000u32.to_le_bytes());
        assert!(matches!(
            verify(&n, &hdr, LEN, None),
            Err(Error::BadSegmentSize { seg_size: 3000, .. })
        ));
    }
}

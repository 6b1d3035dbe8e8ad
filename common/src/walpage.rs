//! The WAL long page header: the first 40 bytes of every WAL segment.
//!
//! `XLogLongPageHeaderData` (PostgreSQL `src/include/access/xlog_internal.h`): `xlp_magic` (u16),
//! `xlp_info` (u16, `XLP_LONG_HEADER` set on the first page of a segment), `xlp_tli` (u32),
//! `xlp_pageaddr` (u64, the LSN where this page starts), `xlp_rem_len` (u32), padding, then
//! `xlp_sysid` (u64), `xlp_seg_size` (u32), `xlp_xlog_blcksz` (u32). All little-endian on the
//! platforms we support. Checking it on archive and on restore is how a segment of another
//! cluster, a truncated file or a file under the wrong name is caught before it does harm.

use crate::wal::{self, WalFileName};

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
    pub timeline: u32,
    /// LSN of the start of the page.
    pub page_addr: u64,
    /// Database system identifier of the cluster that wrote it.
    pub system_identifier: u64,
    /// Segment size.
    pub seg_size: u32,
    /// WAL block size.
    pub block_size: u32,
}

/// A segment whose header does not fit its name, its size or its cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than a header.
    #[error("{name} is too short for a WAL segment ({len} bytes)")]
    TooShort {
        /// The file name.
        name: String,
        /// Its length.
        len: u64,
    },
    /// The first page is not a long page header of a known WAL format.
    #[error("{name} has no valid WAL page header (magic 0x{magic:04X}, info 0x{info:04X})")]
    BadMagic {
        /// The file name.
        name: String,
        /// What was found.
        magic: u16,
        /// Page flags found.
        info: u16,
    },
    /// An invalid segment size in the header.
    #[error("{name} has an invalid segment size {seg_size} in its header")]
    BadSegmentSize {
        /// The file name.
        name: String,
        /// What the header says.
        seg_size: u32,
    },
    /// File size differs from the header's segment size.
    #[error("{name} is {len} bytes but its header says the segment size is {seg_size}")]
    WrongSize {
        /// The file name.
        name: String,
        /// The file length.
        len: u64,
        /// What the header says.
        seg_size: u32,
    },
    /// The page address is not where the name says the segment starts.
    #[error("{name} starts at WAL location {found} but its name says {expected}")]
    WrongAddress {
        /// The file name.
        name: String,
        /// From the header.
        found: wal::Lsn,
        /// From the name.
        expected: wal::Lsn,
    },
    /// The header's timeline is later than the name's.
    #[error("{name} holds timeline {found} pages but its name says timeline {expected}")]
    WrongTimeline {
        /// The file name.
        name: String,
        /// From the header.
        found: u32,
        /// From the name.
        expected: u32,
    },
    /// The header's system identifier is not the expected one.
    #[error("{name} is from database system {found}, not {expected}")]
    ForeignSystem {
        /// The file name.
        name: String,
        /// From the header.
        found: u64,
        /// Expected.
        expected: u64,
    },
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
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
    /// Parses the header from the first bytes of a segment named `name`. Any `0xD1xx` magic is
    /// accepted, so that a new major version does not stop archiving; [`major_for_magic`] names
    /// the known ones.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < LONG_HEADER_LEN {
            return Err(Error::TooShort {
                name: name.to_string(),
                len: bytes.len() as u64,
            });
        }
        let h = LongPageHeader {
            magic: u16_at(bytes, 0),
            info: u16_at(bytes, 2),
            timeline: u32_at(bytes, 4),
            page_addr: u64_at(bytes, 8),
            system_identifier: u64_at(bytes, 24),
            seg_size: u32_at(bytes, 32),
            block_size: u32_at(bytes, 36),
        };
        if h.magic & 0xFF00 != 0xD100 || h.info & XLP_LONG_HEADER == 0 {
            return Err(Error::BadMagic {
                name: name.to_string(),
                magic: h.magic,
                info: h.info,
            });
        }
        if wal::check_segment_size(u64::from(h.seg_size)).is_err() {
            return Err(Error::BadSegmentSize {
                name: name.to_string(),
                seg_size: h.seg_size,
            });
        }
        Ok(h)
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
        let n = name.to_string();
        if len != u64::from(self.seg_size) {
            return Err(Error::WrongSize {
                name: n,
                len,
                seg_size: self.seg_size,
            });
        }
        let expected =
            name.start_lsn(u64::from(self.seg_size))
                .map_err(|_| Error::BadSegmentSize {
                    name: n.clone(),
                    seg_size: self.seg_size,
                })?;
        if self.page_addr != expected.0 {
            return Err(Error::WrongAddress {
                name: n,
                found: wal::Lsn(self.page_addr),
                expected,
            });
        }
        if self.timeline > name.timeline.0 {
            return Err(Error::WrongTimeline {
                name: n,
                found: self.timeline,
                expected: name.timeline.0,
            });
        }
        if let Some(expected) = system_identifier {
            if self.system_identifier != expected {
                return Err(Error::ForeignSystem {
                    name: n,
                    found: self.system_identifier,
                    expected,
                });
            }
        }
        Ok(())
    }
}

/// Builds a plausible first page header, for tests here and in the binaries.
#[doc(hidden)]
pub fn fake_header(name: &WalFileName, seg_size: u32, sysid: u64) -> Vec<u8> {
    let mut b = vec![0u8; LONG_HEADER_LEN];
    b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
    b[2..4].copy_from_slice(&(XLP_LONG_HEADER | 0x0004).to_le_bytes());
    b[4..8].copy_from_slice(&name.timeline.0.to_le_bytes());
    let addr = name
        .start_lsn(u64::from(seg_size))
        .map(|l| l.0)
        .unwrap_or_default();
    b[8..16].copy_from_slice(&addr.to_le_bytes());
    b[24..32].copy_from_slice(&sysid.to_le_bytes());
    b[32..36].copy_from_slice(&seg_size.to_le_bytes());
    b[36..40].copy_from_slice(&8192u32.to_le_bytes());
    b
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MB16: u32 = 16 << 20;

    fn name(s: &str) -> WalFileName {
        WalFileName::parse(s).unwrap()
    }

    #[test]
    fn accepts_a_matching_header() {
        let n = name("0000000100000002000000A3");
        let h = LongPageHeader::parse("x", &fake_header(&n, MB16, 42)).unwrap();
        assert_eq!(h.page_addr, 0x2_A300_0000);
        assert_eq!(h.system_identifier, 42);
        h.check(&n, u64::from(MB16), Some(42)).unwrap();
        assert_eq!(major_for_magic(h.magic), Some(15));
    }

    #[test]
    fn names_each_mismatch() {
        let n = name("0000000100000002000000A3");
        let hdr = fake_header(&n, MB16, 42);
        let h = LongPageHeader::parse("x", &hdr).unwrap();
        assert_eq!(
            h.check(&n, 1000, None).unwrap_err().to_string(),
            "0000000100000002000000A3 is 1000 bytes but its header says the segment size is 16777216"
        );
        assert_eq!(
            h.check(&name("0000000100000002000000A4"), u64::from(MB16), None)
                .unwrap_err()
                .to_string(),
            "0000000100000002000000A4 starts at WAL location 2/A3000000 but its name says 2/A4000000"
        );
        assert_eq!(
            h.check(&n, u64::from(MB16), Some(7))
                .unwrap_err()
                .to_string(),
            "0000000100000002000000A3 is from database system 42, not 7"
        );
        // Pages of an earlier timeline under a later timeline's name are normal.
        h.check(&name("0000000200000002000000A3"), u64::from(MB16), None)
            .unwrap();
        let h3 = LongPageHeader::parse(
            "x",
            &fake_header(&name("0000000300000002000000A3"), MB16, 42),
        )
        .unwrap();
        assert!(matches!(
            h3.check(&name("0000000200000002000000A3"), u64::from(MB16), None),
            Err(Error::WrongTimeline { .. })
        ));
    }

    #[test]
    fn rejects_garbage_and_short_files() {
        assert_eq!(
            LongPageHeader::parse("000000010000000000000001", &[0u8; 40])
                .unwrap_err()
                .to_string(),
            "000000010000000000000001 has no valid WAL page header (magic 0x0000, info 0x0000)"
        );
        assert!(matches!(
            LongPageHeader::parse("x", &[0u8; 10]),
            Err(Error::TooShort { len: 10, .. })
        ));
        let mut hdr = fake_header(&name("000000010000000000000001"), MB16, 1);
        hdr[32..36].copy_from_slice(&3000u32.to_le_bytes());
        assert!(matches!(
            LongPageHeader::parse("x", &hdr),
            Err(Error::BadSegmentSize { seg_size: 3000, .. })
        ));
    }
}

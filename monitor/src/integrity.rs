//! The integrity check of one archived file: the same check pitr-restore applies before it hands
//! a file to PostgreSQL, so that `verify` passes exactly what a restore would accept.
//!
//! Today that is `pitr_common::source::read_verified`: complete decompression (every codec; a
//! zstd frame's checksum and declared size, gzip's CRC), then for segments and `.partial` files
//! the long page header against the name (page address, timeline), the file's length against
//! the header's segment size, and the system identifier. A stronger whole-segment check is
//! being written; [`check`] is the one place that will call it instead.

use std::io::Read;
use std::path::{Path, PathBuf};

use pitr_common::checksum::Digest;
use pitr_common::compress::Codec;
use pitr_common::source::{self, Found};
use pitr_common::wal::{SegSize, WalFileName};
use pitr_common::walpage::{LongPageHeader, LONG_HEADER_LEN};

/// What a file that passed holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Bytes after decompression.
    pub bytes: u64,
    /// The segment size in its header (segments and `.partial` files).
    pub seg_size: Option<SegSize>,
    /// SHA-256 of the decompressed content, when asked for (to compare two stored forms).
    pub digest: Option<Digest>,
}

/// Checks the archived file `path`, stored with `codec`, as the WAL file `name` of database
/// system `system_identifier`. The error is one line saying what is wrong.
pub fn check(
    path: &Path,
    codec: Codec,
    name: &WalFileName,
    system_identifier: u64,
    want_digest: bool,
) -> Result<Verified, String> {
    let found = Found {
        path: PathBuf::from(path),
        codec,
        mtime: std::time::UNIX_EPOCH,
    };
    let data = source::read_verified(&found, name, system_identifier).map_err(|e| one_line(&e))?;
    let seg_size = if name.has_wal_pages() {
        LongPageHeader::parse(name, &data).ok().map(|h| h.seg_size)
    } else {
        None
    };
    Ok(Verified {
        bytes: data.len() as u64,
        seg_size,
        digest: want_digest.then(|| Digest::of(&data)),
    })
}

/// Reads a text file of the archive (a `.history` file) through the same check.
pub fn read_text(path: &Path, codec: Codec, name: &WalFileName) -> Result<String, String> {
    let found = Found {
        path: PathBuf::from(path),
        codec,
        mtime: std::time::UNIX_EPOCH,
    };
    // The system identifier is not looked at for files without WAL pages.
    let data = source::read_verified(&found, name, 0).map_err(|e| one_line(&e))?;
    String::from_utf8(data).map_err(|_| format!("{} is not text", path.display()))
}

/// The error and its sources on one line; a source whose text the message already ends with
/// (`source::Error::Invalid` prints its source itself) is not repeated.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = inner.source();
    }
    s
}

/// Reads only the long page header of an archived segment (decompressing its first bytes):
/// where an archive's segment size and system identifier come from.
pub fn header(path: &Path, codec: Codec, name: &WalFileName) -> Result<LongPageHeader, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut head = Vec::with_capacity(LONG_HEADER_LEN);
    codec
        .decoder(file)
        .and_then(|r| r.take(LONG_HEADER_LEN as u64).read_to_end(&mut head))
        .map_err(|e| format!("{} cannot be decompressed: {e}", path.display()))?;
    LongPageHeader::parse(name, &head).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use pitr_common::walpage::fake_header;

    const SEG: u64 = 1 << 20;

    fn seg_size() -> SegSize {
        SegSize::new(SEG).unwrap()
    }

    /// A segment lying wholly inside one WAL record (as a record larger than a segment makes
    /// them), which passes the whole-segment check whatever its content: every page, from the
    /// long header on, continues the record. `fill` is the record's bytes.
    pub(crate) fn fake_segment(
        name: &WalFileName,
        seg_size: SegSize,
        sysid: u64,
        fill: u8,
    ) -> Vec<u8> {
        const PAGE: usize = 8192;
        let mut data = vec![fill; seg_size.as_usize()];
        let start = name.start_lsn(seg_size).unwrap().0;
        // What is left of the record at the start of page 0: more than the segment holds.
        let mut rem = u32::try_from(2 * seg_size.bytes()).unwrap();
        for (i, page) in data.chunks_mut(PAGE).enumerate() {
            let (header, info) = if i == 0 {
                (LONG_HEADER_LEN, 0x0007u16)
            } else {
                (24, 0x0005u16)
            };
            page[..header].fill(0);
            if i == 0 {
                page[..header].copy_from_slice(&fake_header(name, seg_size, sysid));
            }
            page[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
            page[2..4].copy_from_slice(&info.to_le_bytes());
            page[4..8].copy_from_slice(&name.timeline.0.to_le_bytes());
            page[8..16].copy_from_slice(&(start + (i * PAGE) as u64).to_le_bytes());
            page[16..20].copy_from_slice(&rem.to_le_bytes());
            rem -= u32::try_from(PAGE - header).unwrap();
        }
        data
    }

    #[test]
    fn passes_good_files_and_names_what_is_wrong() {
        let d = tempfile::tempdir().unwrap();
        let name = WalFileName::parse("000000010000000000000003").unwrap();
        let data = fake_segment(&name, seg_size(), 9, 7);
        let z = d.path().join("000000010000000000000003.zst");
        std::fs::write(&z, Codec::Zstd(3).compress(&data).unwrap()).unwrap();
        let v = check(&z, Codec::Zstd(3), &name, 9, true).unwrap();
        assert_eq!(v.bytes, SEG);
        assert_eq!(v.seg_size, Some(seg_size()));
        assert_eq!(v.digest, Some(Digest::of(&data)));
        let h = header(&z, Codec::Zstd(3), &name).unwrap();
        assert_eq!((h.seg_size, h.system_identifier), (seg_size(), 9));
        // Another system, a byte flipped in the compressed stream, a short plain file.
        assert_eq!(
            check(&z, Codec::Zstd(3), &name, 8, false).unwrap_err(),
            format!(
                "{}: 000000010000000000000003 is from database system 9, not 8",
                z.display()
            )
        );
        let mut bytes = std::fs::read(&z).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
        std::fs::write(&z, &bytes).unwrap();
        let e = check(&z, Codec::Zstd(3), &name, 9, false).unwrap_err();
        assert!(e.contains("cannot be decompressed"), "{e}");
        let p = d.path().join("000000010000000000000003");
        std::fs::write(&p, &data[..4096]).unwrap();
        assert_eq!(
            check(&p, Codec::None, &name, 9, false).unwrap_err(),
            format!(
                "{}: 000000010000000000000003 is 4096 bytes but its header says the segment size is 1048576",
                p.display()
            )
        );
    }
}

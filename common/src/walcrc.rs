//! The digest that travels with a plain (uncompressed) WAL file pitr archived into a local
//! directory: its CRC-32C, in the extended attribute [`XATTR`] of the archived file.
//!
//! A compressed file carries checksums of its own (a zstd frame's content checksum, a gzip
//! member's CRC-32), and [`crate::walcheck`] verifies every record of a segment that starts
//! and ends in it. What neither covers is the data of a plain segment's two boundary records
//! (the one continued from the previous segment and the one continuing into the next), whose
//! CRC needs the neighbouring segment. For files pitr itself archived plain, this digest
//! closes that gap: any change to the file is caught before it is handed to PostgreSQL.
//!
//! The attribute is set on the temporary file before it is fsynced and linked into place, so
//! it is as durable as the content. File systems without user extended attributes (or a copy
//! made by `cp` or rsync without `-X`) simply have none, and such files are checked by
//! `walcheck` alone; an attribute that is present and does not match is damage.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The extended attribute: the CRC-32C of the file's content, 8 lowercase hex digits.
pub const XATTR: &str = "user.pitr.crc32c";

/// The CRC-32C of `bytes`.
pub fn of(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

fn attr_name() -> CString {
    // A constant without NUL bytes.
    CString::new(XATTR).unwrap_or_default()
}

/// Records `crc` on the open file. `Ok(false)` where the file system has no user extended
/// attributes (the file is then checked by `walcheck` alone).
pub fn set(file: &File, crc: u32) -> io::Result<bool> {
    let value = format!("{crc:08x}");
    let name = attr_name();
    // SAFETY: a valid fd, a NUL-terminated name and a buffer of the given length.
    let r = unsafe {
        libc::fsetxattr(
            file.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOTSUP) => Ok(false),
        _ => Err(e),
    }
}

/// The recorded CRC-32C of the file at `path`, if it has one.
pub fn get(path: &Path) -> io::Result<Option<u32>> {
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return Ok(None);
    };
    let name = attr_name();
    let mut buf = [0u8; 16];
    // SAFETY: NUL-terminated path and name, and a buffer of the given length.
    let n = unsafe {
        libc::getxattr(
            p.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA | libc::ENOTSUP) => Ok(None),
            _ => Err(e),
        };
    }
    let text = std::str::from_utf8(&buf[..n as usize]).unwrap_or("");
    Ok(u32::from_str_radix(text, 16).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn recorded_and_read_back_where_the_file_system_has_them() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"wal").unwrap();
        assert_eq!(get(&p).unwrap(), None);
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        if set(&f, of(b"wal")).unwrap() {
            assert_eq!(get(&p).unwrap(), Some(of(b"wal")));
        }
        assert_eq!(of(b"123456789"), 0xE306_9283, "CRC-32C check value");
    }
}

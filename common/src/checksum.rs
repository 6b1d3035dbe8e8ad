//! SHA-256 while streaming, its hex form, and `sha256sum`-format digest files.
//!
//! A backup set carries a digest file in the format `sha256sum -c` reads (`<hex>  <name>`, two
//! spaces, one line per file), so that an operator can check a set with nothing but coreutils,
//! and pitr-restore checks the same lines before extracting. Digests are computed while the
//! bytes stream past ([`Sha256Writer`], [`Sha256Reader`]), never by reading a file twice.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::fs::IoError;

/// A SHA-256 digest, printed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    s
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

/// A problem with a digest or a digest file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not 64 hex digits.
    #[error("\"{0}\" is not a SHA-256 digest (64 hex digits)")]
    BadDigest(String),
    /// A digest file line that is not `<hex>  <name>`.
    #[error("line {line} of the digest file is not \"<sha256>  <file name>\": {text:?}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// A file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A file's content does not match its recorded digest.
    #[error("{} does not match its SHA-256 digest (expected {expected}, found {found})", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// The digest in the digest file.
        expected: Digest,
        /// The digest of the content.
        found: Digest,
    },
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || Error::BadDigest(s.to_string());
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).map_err(|_| bad())?;
            out[i] = u8::from_str_radix(pair, 16).map_err(|_| bad())?;
        }
        Ok(Digest(out))
    }
}

/// A writer that hashes and counts everything written through it.
#[derive(Debug)]
pub struct Sha256Writer<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Sha256Writer<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Sha256Writer {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The inner writer, for flushing or inspection.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (
            self.inner,
            Digest(self.hasher.finalize().into()),
            self.bytes,
        )
    }
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts everything read through it.
#[derive(Debug)]
pub struct Sha256Reader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Sha256Reader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Sha256Reader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The inner reader, the digest and the byte count.
    pub fn finish(self) -> (R, Digest, u64) {
        (
            self.inner,
            Digest(self.hasher.finalize().into()),
            self.bytes,
        )
    }
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The digest and size of the file at `path`, read in streaming fashion.
pub fn sha256_file(path: &Path) -> Result<(Digest, u64), IoError> {
    let file = crate::fs::open(path)?;
    let mut r = Sha256Reader::new(file);
    io::copy(&mut r, &mut io::sink()).map_err(|e| IoError::new("reading", path, e))?;
    let (_, d, n) = r.finish();
    Ok((d, n))
}

/// One line of a digest file: a file name (no directory) and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumLine {
    /// The digest of the file's bytes as stored.
    pub digest: Digest,
    /// The file name, relative to the digest file's directory.
    pub file_name: String,
}

/// The text of a digest file, in `sha256sum` format (`<hex>  <name>\n` per file).
pub fn render_sums(lines: &[SumLine]) -> String {
    lines
        .iter()
        .map(|l| format!("{}  {}\n", l.digest, l.file_name))
        .collect()
}

/// Parses a digest file written by [`render_sums`] or by `sha256sum` (text mode `  ` or binary
/// mode ` *` separators); blank lines are ignored.
pub fn parse_sums(text: &str) -> Result<Vec<SumLine>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || Error::BadLine {
            line: i + 1,
            text: line.to_string(),
        };
        let (hex, rest) = line.split_at_checked(64).ok_or_else(bad)?;
        let file_name = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .filter(|n| !n.is_empty())
            .ok_or_else(bad)?;
        let digest = hex.parse().map_err(|_| bad())?;
        out.push(SumLine {
            digest,
            file_name: file_name.to_string(),
        });
    }
    Ok(out)
}

/// Checks `dir/line.file_name` against `line.digest`.
pub fn verify_line(dir: &Path, line: &SumLine) -> Result<(), Error> {
    let path = dir.join(&line.file_name);
    let (found, _) = sha256_file(&path)?;
    if found == line.digest {
        Ok(())
    } else {
        Err(Error::Mismatch {
            path,
            expected: line.digest,
            found,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_and_round_trip() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert_eq!(
            d.to_string().to_uppercase().parse::<Digest>().unwrap(),
            d,
            "upper case hex is accepted"
        );
        assert!("abc".parse::<Digest>().is_err());
        assert!("zz".repeat(32).parse::<Digest>().is_err());
    }

    #[test]
    fn writer_and_reader_hash_what_passes() {
        let mut w = Sha256Writer::new(Vec::new());
        w.write_all(b"a").unwrap();
        w.write_all(b"bc").unwrap();
        let (inner, d, n) = w.finish();
        assert_eq!(
            (inner.as_slice(), d, n),
            (&b"abc"[..], Digest::of(b"abc"), 3)
        );
        let mut r = Sha256Reader::new(&b"abc"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(r.finish().1, Digest::of(b"abc"));
    }

    #[test]
    fn sums_render_parse_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.tar"), b"abc").unwrap();
        let lines = vec![SumLine {
            digest: Digest::of(b"abc"),
            file_name: "a.tar".into(),
        }];
        let text = render_sums(&lines);
        assert_eq!(
            text,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  a.tar\n"
        );
        assert_eq!(parse_sums(&text).unwrap(), lines);
        assert_eq!(
            parse_sums(&text.replace("  ", " *")).unwrap(),
            lines,
            "binary mode separator"
        );
        verify_line(dir.path(), &lines[0]).unwrap();
        std::fs::write(dir.path().join("a.tar"), b"abd").unwrap();
        assert!(matches!(
            verify_line(dir.path(), &lines[0]),
            Err(Error::Mismatch { .. })
        ));
        assert_eq!(
            parse_sums("xyz  a\n").unwrap_err().to_string(),
            "line 1 of the digest file is not \"<sha256>  <file name>\": \"xyz  a\""
        );
    }
}

//! A WAL archive directory as the tests see it: listings, decompression by file extension, and
//! assertions that compare archived WAL with the server's `pg_wal` files.
//!
//! Decompression is independent of `pitr-common`, so a codec bug cannot hide itself by being on
//! both sides of the comparison: `.zst` through the reference zstd library's streaming decoder
//! (the `zstd` crate, as `zstd -d` reads), `.gz` through the system's `gzip -dc`, the tool a DBA
//! would reach for.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The hidden marker file pitr-archive keeps in each destination (it records the database
/// system the archive belongs to); it is not archived WAL.
pub const CLUSTER_MARKER: &str = ".pitr-cluster";

/// A directory holding archived WAL files.
#[derive(Debug, Clone)]
pub struct ArchiveDir {
    path: PathBuf,
}

/// Identity and time of one file, to prove a file was not rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Inode number (a rename onto the name gives a new one).
    pub inode: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds part.
    pub mtime_nsec: i64,
    /// Size in bytes.
    pub size: u64,
}

impl FileStamp {
    /// The stamp of the file at `path`.
    pub fn of(path: &Path) -> FileStamp {
        let meta =
            std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
        FileStamp {
            inode: meta.ino(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            size: meta.size(),
        }
    }
}

impl ArchiveDir {
    /// Wraps the directory at `path` (it need not exist yet).
    pub fn new(path: impl AsRef<Path>) -> ArchiveDir {
        ArchiveDir {
            path: path.as_ref().to_owned(),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry name, hidden ones (marker, temp files) included, sorted.
    pub fn all_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.path)
            .unwrap_or_else(|e| panic!("listing {}: {e}", self.path.display()))
            .map(|entry| {
                entry
                    .expect("directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// Every entry name except the [`CLUSTER_MARKER`], sorted: what the archive holds. Temp
    /// files left behind are included, so "nothing new" checks see them.
    pub fn names(&self) -> Vec<String> {
        let mut names = self.all_names();
        names.retain(|n| n != CLUSTER_MARKER);
        names
    }

    /// Asserts that the directory holds nothing but, possibly, the [`CLUSTER_MARKER`].
    pub fn assert_empty(&self) {
        let names = self.names();
        assert!(
            names.is_empty(),
            "expected {} to hold no archived file, found {names:?}",
            self.path.display()
        );
    }

    /// The archived file of WAL file `wal`: `wal`, `wal.zst` or `wal.gz`, whichever exists.
    pub fn file_for(&self, wal: &str) -> Option<String> {
        ["", ".zst", ".gz"]
            .iter()
            .map(|ext| format!("{wal}{ext}"))
            .find(|name| self.path.join(name).is_file())
    }

    /// The path of the archived file of `wal`; panics with the listing when there is none.
    pub fn path_for(&self, wal: &str) -> PathBuf {
        match self.file_for(wal) {
            Some(name) => self.path.join(name),
            None => panic!(
                "{wal} is not archived in {}; it holds {:?}",
                self.path.display(),
                self.all_names()
            ),
        }
    }

    /// The raw bytes of file `name`.
    pub fn raw(&self, name: &str) -> Vec<u8> {
        let path = self.path.join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    /// The content of file `name`, decompressed according to its extension (`.zst`, `.gz`,
    /// none = raw).
    pub fn decompressed(&self, name: &str) -> Vec<u8> {
        let raw = self.raw(name);
        let mut out = Vec::new();
        if name.ends_with(".zst") {
            zstd::stream::read::Decoder::new(raw.as_slice())
                .and_then(|mut d| d.read_to_end(&mut out))
                .unwrap_or_else(|e| panic!("zstd-decoding {name} in {}: {e}", self.path.display()));
        } else if name.ends_with(".gz") {
            out = gzip_dc(&raw)
                .unwrap_or_else(|e| panic!("gzip -dc of {name} in {}: {e}", self.path.display()));
        } else {
            out = raw;
        }
        out
    }

    /// The decompressed content archived for WAL file `wal`.
    pub fn wal_content(&self, wal: &str) -> Vec<u8> {
        let path = self.path_for(wal);
        let name = path.file_name().expect("file name").to_string_lossy();
        self.decompressed(&name)
    }

    /// Asserts that `wal` is archived here and decompresses to exactly `expected`.
    pub fn assert_holds(&self, wal: &str, expected: &[u8]) {
        let got = self.wal_content(wal);
        if got != expected {
            let first_diff = got
                .iter()
                .zip(expected)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(expected.len()));
            panic!(
                "{wal} in {} differs from the original: {} bytes archived, {} expected, first \
                 difference at offset {first_diff}",
                self.path.display(),
                got.len(),
                expected.len()
            );
        }
    }

    /// The [`FileStamp`] of file `name`.
    pub fn stamp(&self, name: &str) -> FileStamp {
        FileStamp::of(&self.path.join(name))
    }
}

/// `gzip -dc` of `raw`: the whole stream, every member. The bytes go through a private
/// temporary file, so that gzip runs under the harness's deadline like every other program.
fn gzip_dc(raw: &[u8]) -> Result<Vec<u8>, String> {
    use crate::procs::{OutputWithin, EXTERNAL_TIMEOUT};
    let input = tempfile::NamedTempFile::new().map_err(|e| format!("creating a temp file: {e}"))?;
    std::fs::write(input.path(), raw)
        .map_err(|e| format!("writing {}: {e}", input.path().display()))?;
    let o = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(input.path())
        .output_within(EXTERNAL_TIMEOUT)
        .map_err(|e| format!("running gzip -dc: {e}"))?;
    if o.status.success() {
        Ok(o.stdout)
    } else {
        Err(format!(
            "gzip -dc exited with {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

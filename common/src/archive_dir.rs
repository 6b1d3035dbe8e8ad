//! WAL archive directories on the listing side: what they hold, and pruning what is older
//! than a segment, with `pg_archivecleanup`'s semantics. The reading side (finding one file
//! and restoring it verified) is [`crate::source`].

use std::path::{Path, PathBuf};

use crate::compress;
use crate::fs::IoError;
use crate::wal::{WalFileName, WalKind};

/// An archived WAL file seen in a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The WAL file it holds.
    pub wal: WalFileName,
    /// Its file name in the directory.
    pub file_name: String,
}

/// Lists the WAL files in an archive directory (any stored form), ignoring everything else
/// (temporary files, markers, unknown names).
pub fn list(dir: &Path) -> Result<Vec<Entry>, IoError> {
    let rd = std::fs::read_dir(dir).map_err(|e| IoError::new("listing", dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| IoError::new("listing", dir, e))?;
        let file_name = ent.file_name().to_string_lossy().into_owned();
        let (base, _) = compress::split_stored_name(&file_name);
        if let Ok(wal) = WalFileName::parse(base) {
            out.push(Entry { wal, file_name });
        }
    }
    out.sort_by(|a, b| a.wal.cmp(&b.wal).then(a.file_name.cmp(&b.file_name)));
    Ok(out)
}

/// Whether archived `wal` is no longer needed when `oldest` is the oldest file still needed:
/// `pg_archivecleanup`'s rule, which every kind of archive applies. A segment, `.partial` or
/// `.backup` file whose position (timeline ignored) is before `oldest`'s goes; a `.history`
/// file never does.
pub fn goes_before(wal: &WalFileName, oldest: &WalFileName) -> bool {
    wal.kind != WalKind::History && wal.cmp_position(oldest) == std::cmp::Ordering::Less
}

/// A file [`remove_older`] removed (or would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The WAL file.
    pub wal: WalFileName,
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// Removes archived WAL files older than `oldest` from `dir`, with `pg_archivecleanup`'s
/// semantics: segments, `.partial` and `.backup` files whose position (timeline ignored) is
/// before `oldest`'s; `.history` files are never removed. At most `limit` files (oldest first)
/// when given; with `dry_run` nothing is removed and the list says what would go. The directory
/// is fsynced after removals.
pub fn remove_older(
    dir: &Path,
    oldest: &WalFileName,
    limit: Option<usize>,
    dry_run: bool,
) -> Result<Vec<Removed>, IoError> {
    let mut removed = Vec::new();
    for e in list(dir)? {
        if limit.is_some_and(|l| removed.len() >= l) {
            break;
        }
        if !goes_before(&e.wal, oldest) {
            continue;
        }
        let path = dir.join(&e.file_name);
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(IoError::new("examining", &path, err)),
        };
        if !dry_run {
            crate::fs::remove_file_if_exists(&path)?;
        }
        removed.push(Removed {
            wal: e.wal,
            path,
            size,
        });
    }
    if !dry_run && !removed.is_empty() {
        crate::fs::fsync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn list_ignores_other_files() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "000000010000000000000002.zst",
            "000000010000000000000001",
            "00000002.history",
            ".pitr-cluster",
            ".000000010000000000000003.zst.pitr-tmp.77",
            "README",
        ] {
            std::fs::write(d.path().join(n), b"").unwrap();
        }
        let names: Vec<String> = list(d.path())
            .unwrap()
            .into_iter()
            .map(|e| e.file_name)
            .collect();
        assert_eq!(
            names,
            [
                "000000010000000000000001",
                "000000010000000000000002.zst",
                "00000002.history"
            ]
        );
    }

    #[test]
    fn removes_by_position_keeps_history() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "000000010000000000000001.zst",
            "000000010000000000000002.zst",
            "000000010000000000000002.00000028.backup",
            "00000001.history",
            "00000002.history",
            "000000010000000000000003.partial",
            "000000020000000000000003.zst",
            "000000020000000000000004.zst",
        ] {
            std::fs::write(d.path().join(f), b"12").unwrap();
        }
        let oldest = WalFileName::parse("000000020000000000000004").unwrap();
        let would = remove_older(d.path(), &oldest, None, true).unwrap();
        assert_eq!(would.len(), 5);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 8);
        assert_eq!(
            remove_older(d.path(), &oldest, Some(2), false)
                .unwrap()
                .len(),
            2
        );
        let rest = remove_older(d.path(), &oldest, Some(10), false).unwrap();
        assert_eq!(rest.len(), 3);
        assert!(rest.iter().all(|r| r.size == 2));
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "00000001.history",
                "00000002.history",
                "000000020000000000000004.zst"
            ]
        );
    }
}

//! Lock files: the only module that touches file locks.
//!
//! Uses the standard library's `File::try_lock` (stable since Rust 1.89, an advisory `flock`
//! on Linux) instead of the unmaintained `fs2` crate (see ARCHITECTURE.md). The lock is held
//! while the returned guard lives and is released by the kernel when the process dies, so a
//! killed process never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::fs::IoError;

/// A held lock.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
    path: PathBuf,
}

impl LockGuard {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open(path: &Path) -> Result<File, IoError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| IoError::new("opening lock file", path, e))?;
    // A lock file a root hand-run created must stay usable by the server's user.
    crate::fs::give_to_directory_owner(&file, path)
        .map_err(|e| IoError::new("changing the owner of", path, e))?;
    Ok(file)
}

/// Takes an exclusive lock on the directory `dir` itself (no lock file is created in it),
/// waiting for another holder to let go: for short critical sections that every writer of the
/// directory passes through.
pub fn lock_dir(dir: &Path) -> Result<LockGuard, IoError> {
    let file = File::open(dir).map_err(|e| IoError::new("opening directory", dir, e))?;
    file.lock().map_err(|e| IoError::new("locking", dir, e))?;
    Ok(LockGuard {
        _file: file,
        path: dir.to_path_buf(),
    })
}

/// Tries to take an exclusive lock on `path` (created if missing). `Ok(None)` when another
/// process holds it.
pub fn try_lock(path: &Path) -> Result<Option<LockGuard>, IoError> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(LockGuard {
            _file: file,
            path: path.to_path_buf(),
        })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(IoError::new("locking", path, e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_released() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let g = try_lock(&p).unwrap().expect("first lock");
        assert!(try_lock(&p).unwrap().is_none());
        drop(g);
        assert!(try_lock(&p).unwrap().is_some());
    }

    #[test]
    fn a_directory_lock_creates_nothing_and_excludes_others() {
        let d = tempfile::tempdir().unwrap();
        let g = lock_dir(d.path()).unwrap();
        let other = File::open(d.path()).unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(g);
        other.try_lock().unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}

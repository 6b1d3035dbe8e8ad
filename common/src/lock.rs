//! Lock files: the only module that touches file locks.
//!
//! Uses the standard library's `File::try_lock` (stable since Rust 1.89, an advisory `flock`
//! on Linux) instead of the unmaintained `fs2` crate (see ARCHITECTURE.md). The lock is held
//! while the returned guard lives and is released by the kernel when the process dies, so a
//! killed process never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, RawFd};
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

    /// The open lock file, to hand the lock to a child process (`Program::inherit_fd`, then
    /// [`adopt`] in the child): an `flock` belongs to the open file, so it stays held while
    /// either process has it open, and there is no moment between the two when it is free.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self._file.as_fd()
    }
}

/// Takes over the lock on `path` that the parent process held and handed down as the open file
/// `fd` (see [`LockGuard::as_fd`]). `Ok(None)` when `fd` is not an open file of `path`, or the
/// lock on it is not ours. The descriptor is made close-on-exec again, so that the programs
/// this process runs do not hold the lock after it ends.
pub fn adopt(path: &Path, fd: RawFd) -> Result<Option<LockGuard>, IoError> {
    use std::os::unix::fs::MetadataExt;
    let wanted = std::fs::metadata(path).map_err(|e| IoError::new("reading", path, e))?;
    // SAFETY: an all-zero `stat` is a valid value, and fstat() only writes into it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat() on any number is safe: it fails with EBADF when nothing is open there.
    if unsafe { libc::fstat(fd, &mut st) } != 0
        || st.st_dev != wanted.dev()
        || st.st_ino != wanted.ino()
    {
        return Ok(None);
    }
    // SAFETY: `fd` is open (fstat succeeded) on the lock file, inherited from the parent, and
    // nothing else in this process owns it: the process opens its lock files through this
    // module only, and adopts an inherited one once, at its start.
    let file = unsafe { File::from_raw_fd(fd) };
    // SAFETY: fcntl() on a descriptor this function now owns.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
        return Err(IoError::new(
            "locking",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    // The lock is the open file's: taking it again on the same open file succeeds at once.
    lock_open_file(file, path)
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
    lock_open_file(open(path)?, path)
}

/// Tries to lock the open lock file `file` (of `path`) without waiting.
fn lock_open_file(file: File, path: &Path) -> Result<Option<LockGuard>, IoError> {
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
    fn a_lock_handed_to_a_child_is_held_without_a_gap() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let g = try_lock(&p).unwrap().expect("first lock");
        // What a child that inherited the descriptor sees: the same open file.
        let inherited = dup_of(g.as_fd());
        drop(g);
        assert!(
            try_lock(&p).unwrap().is_none(),
            "released with the parent's copy"
        );
        let adopted = adopt(&p, inherited).unwrap().expect("adopted");
        assert!(try_lock(&p).unwrap().is_none());
        drop(adopted);
        assert!(try_lock(&p).unwrap().is_some());
        // A number that is not an open file of the lock file is refused.
        let other = File::open(d.path()).unwrap();
        assert!(adopt(&p, other.as_raw_fd()).unwrap().is_none());
        assert!(adopt(&p, 987_654).unwrap().is_none());
    }

    /// A second descriptor of the same open file, as a forked child has.
    fn dup_of(fd: BorrowedFd<'_>) -> RawFd {
        use std::os::fd::IntoRawFd;
        fd.try_clone_to_owned().unwrap().into_raw_fd()
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

//! Pid files (`--pid-file PATH`): refuse to run while another instance is alive.
//!
//! As OmniPITR's (a copy of Proc::Pidfile): if the file names a live process, the tool refuses
//! to run; a stale or unreadable file is replaced; the file is removed at exit if it still holds
//! our pid, and left behind (stale, harmlessly) when the process is killed. The file is never
//! seen half-written: it is written under a temporary name and linked (first creation) or
//! renamed (replacing a stale one) into place, then read back to make sure we won a race with
//! another starting instance.

use std::io;
use std::path::{Path, PathBuf};

use crate::fs::{DurableFile, IoError, Replace};

/// A pid file that could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pid in the file belongs to a live process.
    #[error("another {tool} is running with pid {pid} (pid file {})", path.display())]
    Running {
        /// The tool that tried to start.
        tool: String,
        /// The pid found in the file.
        pid: u32,
        /// The pid file.
        path: PathBuf,
    },
    /// The file could not be read, written or replaced.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Other instances kept replacing the file while we tried to take it.
    #[error("pid file {} keeps changing; cannot take it", path.display())]
    Contended {
        /// The pid file.
        path: PathBuf,
    },
}

/// A pid file held by this process; dropping it removes the file if it still holds our pid.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

/// How often we re-examine a file that changed under us before giving up.
const ATTEMPTS: usize = 5;

impl PidFile {
    /// Takes the pid file `path` for `tool` (used in the message when another instance runs).
    pub fn acquire(path: &Path, tool: &str) -> Result<PidFile, Error> {
        let pid = std::process::id();
        for _ in 0..ATTEMPTS {
            match read_pid(path)? {
                Existing::Missing => {
                    if create_new(path, pid)? {
                        return Ok(PidFile {
                            path: path.to_path_buf(),
                            pid,
                        });
                    }
                    // Someone created it between our read and our link: look again.
                }
                Existing::Pid(other) if crate::signal::process_alive(other) => {
                    return Err(Error::Running {
                        tool: tool.to_string(),
                        pid: other,
                        path: path.to_path_buf(),
                    });
                }
                Existing::Pid(_) | Existing::Garbage => {
                    replace(path, pid)?;
                    // Two instances replacing the same stale file both succeed at rename; the
                    // last one wins, and reading back tells the other that it lost.
                    if read_pid(path)? == Existing::Pid(pid) {
                        return Ok(PidFile {
                            path: path.to_path_buf(),
                            pid,
                        });
                    }
                }
            }
        }
        Err(Error::Contended {
            path: path.to_path_buf(),
        })
    }

    /// The path of the pid file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        match read_pid(&self.path) {
            Ok(Existing::Pid(p)) if p == self.pid => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    if e.kind() != io::ErrorKind::NotFound {
                        crate::log_warning!("cannot remove pid file {}: {e}", self.path.display());
                    }
                }
            }
            Ok(Existing::Missing) => {}
            Ok(_) => crate::log_warning!(
                "pid file {} no longer holds our pid {}; leaving it alone",
                self.path.display(),
                self.pid
            ),
            Err(e) => crate::log_warning!("{}", crate::log::error_chain(&e)),
        }
    }
}

/// What a pid file holds.
#[derive(Debug, PartialEq, Eq)]
enum Existing {
    Missing,
    Pid(u32),
    Garbage,
}

/// Parses the content of a pid file: a positive decimal pid, optionally followed by a newline.
fn parse_pid(text: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(text).ok()?.trim();
    let pid: u32 = text.parse().ok()?;
    // 0 and values beyond pid_t would make kill(2) signal process groups or fail oddly.
    (pid > 0 && i32::try_from(pid).is_ok()).then_some(pid)
}

fn read_pid(path: &Path) -> Result<Existing, IoError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse_pid(&bytes).map_or(Existing::Garbage, Existing::Pid)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::Missing),
        Err(e) => Err(IoError::new("reading pid file", path, e)),
    }
}

/// Writes `path` holding `pid` through the durable write; `false` when `replace` is
/// [`Replace::Never`] and the file appeared meanwhile.
fn write(path: &Path, pid: u32, replace: Replace) -> Result<bool, IoError> {
    // Errors name the pid file the operator gave, not our temporary name.
    let named = |e: IoError| IoError::new("creating pid file", path, e.source);
    let mut f = match DurableFile::create(path, replace) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(named(e)),
    };
    f.write_bytes(format!("{pid}\n").as_bytes())
        .map_err(named)?;
    match f.commit(None) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(named(e)),
    }
}

/// Creates `path` holding `pid` if it does not exist; `false` if it appeared meanwhile.
fn create_new(path: &Path, pid: u32) -> Result<bool, IoError> {
    write(path, pid, Replace::Never)
}

/// Replaces a stale `path` with one holding `pid`.
fn replace(path: &Path, pid: u32) -> Result<(), IoError> {
    write(path, pid, Replace::Allow).map(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn creates_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.pid");
        let held = PidFile::acquire(&path, "pitr-archive").unwrap();
        assert_eq!(held.path(), path);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(held);
        assert!(!path.exists());
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn live_pid_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.pid");
        let held = PidFile::acquire(&path, "pitr-archive").unwrap();
        let err = PidFile::acquire(&path, "pitr-archive").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "another pitr-archive is running with pid {} (pid file {})",
                std::process::id(),
                path.display()
            )
        );
        drop(held);
        assert!(!path.exists());
    }

    #[test]
    fn stale_and_garbage_files_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("restore.pid");
        for content in [
            format!("{}\n", dead_pid()),
            "garbage".to_string(),
            String::new(),
        ] {
            std::fs::write(&path, &content).unwrap();
            let held = PidFile::acquire(&path, "pitr-restore").unwrap();
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                format!("{}\n", std::process::id()),
                "after {content:?}"
            );
            drop(held);
            assert!(!path.exists());
        }
    }

    #[test]
    fn drop_leaves_a_file_that_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pid");
        let held = PidFile::acquire(&path, "pitr-cleanup").unwrap();
        std::fs::write(&path, "1\n").unwrap();
        drop(held);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
    }

    #[test]
    fn pid_parsing() {
        assert_eq!(parse_pid(b"123\n"), Some(123));
        assert_eq!(parse_pid(b" 42 "), Some(42));
        assert_eq!(parse_pid(b"0\n"), None);
        assert_eq!(parse_pid(b"-1\n"), None);
        assert_eq!(parse_pid(b"4294967295"), None);
        assert_eq!(parse_pid(b"12x"), None);
    }

    #[test]
    fn unreadable_directory_is_an_io_error() {
        let err =
            PidFile::acquire(Path::new("/nonexistent/dir/p.pid"), "pitr-archive").unwrap_err();
        assert_eq!(
            crate::log::error_chain(&err),
            "creating pid file /nonexistent/dir/p.pid: No such file or directory (os error 2)"
        );
    }
}

//! PostgreSQL file and directory names, in one place, and the data directory type.
//!
//! Every name PostgreSQL gives a file we read or write is a constant here (as pgBackRest's
//! `PG_FILE_*`), never a literal scattered through the binaries. [`PgDataDir`] is a directory
//! that has been checked to look like a data directory (it holds `PG_VERSION`).

use std::path::{Path, PathBuf};

use crate::fs::IoError;

/// The WAL directory, relative to the data directory (PostgreSQL 10 and later).
pub const PG_WAL: &str = "pg_wal";
/// The archiver's status directory, relative to [`PG_WAL`].
pub const ARCHIVE_STATUS: &str = "archive_status";
/// The control file, relative to the data directory.
pub const PG_CONTROL: &str = "global/pg_control";
/// The file holding the major version, at the top of the data directory.
pub const PG_VERSION: &str = "PG_VERSION";
/// The backup label written into a base backup.
pub const BACKUP_LABEL: &str = "backup_label";
/// The tablespace map written into a base backup.
pub const TABLESPACE_MAP: &str = "tablespace_map";
/// Directory of tablespace links (or, in an extracted pitr-backup, of tablespace contents).
pub const PG_TBLSPC: &str = "pg_tblspc";
/// Archive recovery (PostgreSQL 12+): recovery ends when `restore_command` fails.
pub const RECOVERY_SIGNAL: &str = "recovery.signal";
/// Standby mode (PostgreSQL 12+): recovery never ends by itself.
pub const STANDBY_SIGNAL: &str = "standby.signal";
/// The main configuration file.
pub const POSTGRESQL_CONF: &str = "postgresql.conf";
/// The configuration file written by `ALTER SYSTEM`, read after [`POSTGRESQL_CONF`].
pub const POSTGRESQL_AUTO_CONF: &str = "postgresql.auto.conf";
/// The postmaster's pid file; present while the server runs (or after a crash).
pub const POSTMASTER_PID: &str = "postmaster.pid";
/// The postmaster's command-line record, left out of backups.
pub const POSTMASTER_OPTS: &str = "postmaster.opts";
/// The backup manifest in PostgreSQL's own format (PostgreSQL 13+).
pub const BACKUP_MANIFEST: &str = "backup_manifest";

/// A data directory that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path is missing or unreadable.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The path exists but is not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The directory has no `PG_VERSION`.
    #[error("{} is not a PostgreSQL data directory (no PG_VERSION)", path.display())]
    NotADataDir {
        /// The directory given.
        path: PathBuf,
    },
    /// `PG_VERSION` does not hold a version number.
    #[error("cannot parse the version in {}: {text:?}", path.display())]
    BadVersion {
        /// The `PG_VERSION` file.
        path: PathBuf,
        /// What it holds.
        text: String,
    },
}

/// A PostgreSQL data directory: a directory holding `PG_VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgDataDir(PathBuf);

impl PgDataDir {
    /// Checks that `path` is a directory holding `PG_VERSION`.
    pub fn open(path: impl Into<PathBuf>) -> Result<PgDataDir, Error> {
        let path = path.into();
        let meta = crate::fs::metadata(&path)?;
        if !meta.is_dir() {
            return Err(Error::NotADirectory { path });
        }
        if !path.join(PG_VERSION).is_file() {
            return Err(Error::NotADataDir { path });
        }
        Ok(PgDataDir(path))
    }

    /// The directory, as given.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the data directory (`data.join(pg::PG_CONTROL)`).
    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.0.join(relative)
    }

    /// The WAL directory, `pg_wal`.
    pub fn wal_dir(&self) -> PathBuf {
        self.0.join(PG_WAL)
    }

    /// The control file, `global/pg_control`.
    pub fn control_file(&self) -> PathBuf {
        self.0.join(PG_CONTROL)
    }

    /// The major version from `PG_VERSION` (`15`; `9` for a `9.6` cluster).
    pub fn major_version(&self) -> Result<u32, Error> {
        major_version(&self.0)
    }
}

/// The major version of the data directory `dir`, from its `PG_VERSION`: the one reading of
/// that file.
pub fn major_version(dir: &Path) -> Result<u32, Error> {
    let path = dir.join(PG_VERSION);
    let bytes = crate::fs::read(&path)?;
    parse_pg_version(&bytes).ok_or_else(|| Error::BadVersion {
        path,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

impl AsRef<Path> for PgDataDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

/// The major version in the text of a `PG_VERSION` file (`"15\n"`, `"9.6\n"`).
fn parse_pg_version(bytes: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(bytes).ok()?.trim();
    let major = text.split('.').next()?;
    if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    major.parse().ok()
}

/// The data directory an absolute WAL path lies in (`<data>/pg_wal/<name>`, with
/// `global/pg_control` there), for a command run outside the data directory without
/// `--data-dir` (pg_rewind's restore_command, an archive_command given an absolute `%p`).
pub fn data_dir_of_wal_path(wal_path: &Path) -> Option<PathBuf> {
    Some(wal_path)
        .filter(|p| p.is_absolute())
        .and_then(Path::parent)
        .filter(|wal| wal.file_name().is_some_and(|n| n == PG_WAL))
        .and_then(Path::parent)
        .filter(|d| d.join(PG_CONTROL).is_file())
        .map(Path::to_path_buf)
}

/// The name of user `uid`, or its number when the system has no name for it.
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain old data for which all-zero bytes are a valid value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf` outlives the use of `pwd`'s fields.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return uid.to_string();
    }
    // SAFETY: getpwuid_r set pw_name to a NUL-terminated string inside `buf`.
    unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .into_owned()
}

/// The effective user id of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses to work on the data directory `dir` as any user but its owner, the user PostgreSQL
/// runs as: what a hand-run as root or as another user would create there (a prefetch spool,
/// a state file, a backup's WAL directory), the server's own calls could not use afterwards.
/// A directory that is not a data directory (no `PG_VERSION`, no `global/pg_control`), or
/// that cannot be examined, is left to the caller's own checks. `tool` and `status` make the
/// error: the program's name for the HINT, its usage status.
pub fn check_owner(dir: &Path, tool: &str, status: u8) -> Result<(), crate::exit::Failure> {
    use std::os::unix::fs::MetadataExt as _;
    if !dir.join(PG_VERSION).is_file() && !dir.join(PG_CONTROL).is_file() {
        return Ok(());
    }
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    let me = effective_uid();
    if meta.uid() == me {
        return Ok(());
    }
    let owner = user_name(meta.uid());
    let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Err(crate::exit::Failure::new(format!(
        "{tool} runs as {} (uid {me}), but the data directory {} belongs to {owner} (uid {})",
        user_name(me),
        shown.display(),
        meta.uid()
    ))
    .hint(format!(
        "run it as the user PostgreSQL runs as, as the server's own calls do: runuser -u {owner} -- {tool} ..."
    ))
    .status(status))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_of_a_data_directory_may_work_on_it() {
        let d = tempfile::tempdir().unwrap();
        // Not a data directory: left to the caller.
        assert!(check_owner(d.path(), "pitr-archive", 3).is_ok());
        std::fs::write(d.path().join(PG_VERSION), "15\n").unwrap();
        // Ours: fine.
        assert!(check_owner(d.path(), "pitr-archive", 3).is_ok());
        if effective_uid() == 0 {
            // Someone else's (nobody's, 65534): refused, naming both users.
            std::os::unix::fs::chown(d.path(), Some(65534), None).unwrap();
            let f = check_owner(d.path(), "pitr-archive", 3).unwrap_err();
            assert_eq!(f.status_code(), Some(3));
            assert!(
                f.to_string()
                    .starts_with("pitr-archive runs as root (uid 0), but the data directory "),
                "{f}"
            );
            assert!(f.to_string().ends_with(" (uid 65534)"), "{f}");
            assert!(
                f.hint_text().unwrap().contains(" -- pitr-archive ..."),
                "{f:?}"
            );
        }
        assert_eq!(user_name(0), "root");
    }

    #[test]
    fn opens_a_data_dir_and_reads_its_version() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PG_VERSION), "15\n").unwrap();
        let data = PgDataDir::open(dir.path()).unwrap();
        assert_eq!(data.path(), dir.path());
        assert_eq!(data.major_version().unwrap(), 15);
        assert_eq!(
            data.join(PG_CONTROL),
            dir.path().join("global").join("pg_control")
        );
        assert_eq!(data.wal_dir(), dir.path().join("pg_wal"));
        std::fs::write(dir.path().join(PG_VERSION), "fifteen\n").unwrap();
        let e = data.major_version().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "cannot parse the version in {}/PG_VERSION: \"fifteen\\n\"",
                dir.path().display()
            )
        );
    }

    #[test]
    fn rejects_other_directories() {
        let dir = tempfile::tempdir().unwrap();
        let e = PgDataDir::open(dir.path()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} is not a PostgreSQL data directory (no PG_VERSION)",
                dir.path().display()
            )
        );
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let e = PgDataDir::open(&file).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{} is not a directory", file.display())
        );
        let e = PgDataDir::open(dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().starts_with("examining "), "{e}");
    }

    #[test]
    fn version_parsing() {
        assert_eq!(parse_pg_version(b"15\n"), Some(15));
        assert_eq!(parse_pg_version(b"9.6\n"), Some(9));
        assert_eq!(parse_pg_version(b"18"), Some(18));
        assert_eq!(parse_pg_version(b""), None);
        assert_eq!(parse_pg_version(b"x1"), None);
    }
}

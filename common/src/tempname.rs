//! Temporary names of files being written: made, recognised and swept in one place.
//!
//! A file on its way to `DIR/NAME` is written as `DIR/.NAME.pitr-tmp.PID` (hidden, unique per
//! writing process, in the same directory so that the final rename never crosses file systems)
//! by [`crate::fs::DurableFile`]. A writer killed with `-9` leaves that name behind, never a
//! partial file under `NAME`; [`stale`] finds such leftovers once their writer is gone, for
//! pitr-cleanup and the prefetch worker to remove.
//!
//! A [`ScratchDir`] is a private directory for one run's scratch files (what is handed to
//! rsync, a backup's manifest in the making): created afresh with mode 0700 under a name no
//! other run uses, so that a run by another user (root by hand, say) can never leave something
//! in the way of the next one, and removed when dropped.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::fs::IoError;

const MARK: &str = ".pitr-tmp.";

/// The temporary name used beside `path` while this process writes it.
pub fn for_path(path: &Path) -> PathBuf {
    of_writer(path, std::process::id())
}

/// The temporary name used beside `path` while process `pid` writes it.
pub fn of_writer(path: &Path, pid: u32) -> PathBuf {
    let name = path.file_name().map(OsString::from).unwrap_or_default();
    let mut tmp = OsString::from(".");
    tmp.push(&name);
    tmp.push(format!("{MARK}{pid}"));
    path.with_file_name(tmp)
}

/// A recognised temporary name: the final name it stands for and its writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TempName<'a> {
    /// The final file name being written.
    pub base: &'a str,
    /// The writing process.
    pub pid: u32,
}

/// Recognises a temporary file name `.NAME.pitr-tmp.PID`.
pub fn parse(file_name: &str) -> Option<TempName<'_>> {
    let rest = file_name.strip_prefix('.')?;
    let (base, pid) = rest.rsplit_once(MARK)?;
    if base.is_empty() {
        return None;
    }
    Some(TempName {
        base,
        pid: pid.parse().ok()?,
    })
}

/// How long a dead writer's temporary file stays before a sweep removes it: an hour, so that a
/// writer on another host sharing the directory (whose pid means nothing here) is never cut
/// off. The test hook `PITR_TEST_STALE_TEMP_SECS` shortens it, so that a test can sweep what a
/// process it has just killed left.
pub fn stale_age() -> Duration {
    std::env::var("PITR_TEST_STALE_TEMP_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(3600), Duration::from_secs)
}

/// Removes the [`stale`] temporary files of `dir` (nothing with `dry_run`) and returns them.
pub fn sweep_stale(dir: &Path, min_age: Duration, dry_run: bool) -> Result<Vec<PathBuf>, IoError> {
    remove_found(dir, stale(dir, min_age)?, dry_run)
}

/// Removes the [`stale_rsync`] files of `dir` (nothing with `dry_run`) and returns them.
pub fn sweep_stale_rsync(
    dir: &Path,
    min_age: Duration,
    dry_run: bool,
) -> Result<Vec<PathBuf>, IoError> {
    remove_found(dir, stale_rsync(dir, min_age)?, dry_run)
}

/// Removes `found` (files of `dir`) unless `dry_run`, then fsyncs `dir`; returns `found`.
fn remove_found(dir: &Path, found: Vec<PathBuf>, dry_run: bool) -> Result<Vec<PathBuf>, IoError> {
    if !dry_run && !found.is_empty() {
        for p in &found {
            crate::fs::remove_file_if_exists(p)?;
        }
        crate::fs::fsync_dir(dir)?;
    }
    Ok(found)
}

/// Temporary files in `dir` whose writer is not a live process here and whose status last
/// changed at least `min_age` ago (a live write changes it with every block; the mtime is no
/// guide, it is set to the WAL file's). Never a final name. Sorted.
pub fn stale(dir: &Path, min_age: Duration) -> Result<Vec<PathBuf>, IoError> {
    unchanged_for(dir, min_age, |name| {
        parse(name).is_some_and(|t| !crate::signal::process_alive(t.pid))
    })
}

/// Recognises rsync's temporary name of an archived WAL file, `.NAME.XXXXXX` (six letters or
/// digits, rsync's `mkstemp` suffix) where `NAME` is a stored WAL file name: what an rsync
/// daemon leaves in a destination directory when it is killed (or its host crashes) in the
/// middle of receiving a file. Returns `NAME`.
pub fn parse_rsync(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix('.')?;
    let (base, suffix) = rest.rsplit_once('.')?;
    let (wal, _) = crate::compress::split_stored_name(base);
    (suffix.len() == 6
        && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
        && crate::wal::WalFileName::parse(wal).is_ok())
    .then_some(base)
}

/// rsync's temporary files of archived WAL files ([`parse_rsync`]) in `dir` whose status last
/// changed at least `min_age` ago. rsync's name carries no process id, and the writer is
/// another host's daemon, so the age alone decides: a live transfer changes the file with
/// every block, and pitr-archive's rsync gives up after a minute without data moving
/// ([`crate::rsync::IO_TIMEOUT`]), far less than the hour [`stale_age`] gives. Removing one
/// that a hung transfer still held only fails that transfer, which pitr-archive retries from
/// `pg_wal`. Never a final name. Sorted.
pub fn stale_rsync(dir: &Path, min_age: Duration) -> Result<Vec<PathBuf>, IoError> {
    unchanged_for(dir, min_age, |name| parse_rsync(name).is_some())
}

/// The regular files of `dir` whose name `wanted` accepts and whose status (ctime) last
/// changed at least `min_age` ago. Sorted.
fn unchanged_for(
    dir: &Path,
    min_age: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<PathBuf>, IoError> {
    use std::os::unix::fs::MetadataExt;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rd = std::fs::read_dir(dir).map_err(|e| IoError::new("listing", dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| IoError::new("listing", dir, e))?;
        if !wanted(&ent.file_name().to_string_lossy()) {
            continue;
        }
        // Vanished meanwhile: nothing to sweep.
        let Ok(meta) = ent.metadata() else { continue };
        let changed = u64::try_from(meta.ctime()).unwrap_or(0);
        if meta.is_file() && now.saturating_sub(changed) >= min_age.as_secs() {
            out.push(ent.path());
        }
    }
    out.sort();
    Ok(out)
}

/// A private scratch directory, removed with its content when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `PARENT/.PREFIX.PID.N` (mode 0700), `N` counting up past names that exist.
    /// Scratch directories of the same prefix whose process is gone (killed with -9) are
    /// removed first, so that none is left for good.
    pub fn create(parent: &Path, prefix: &str) -> Result<ScratchDir, IoError> {
        use std::os::unix::fs::DirBuilderExt;
        sweep_scratch(parent, prefix);
        let pid = std::process::id();
        let mut n = 0u32;
        loop {
            let path = parent.join(format!(".{prefix}.{pid}.{n}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(IoError::new("creating scratch directory", path, e)),
            }
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a subdirectory of it (for one of several parallel users).
    pub fn subdir(&self, name: &str) -> Result<PathBuf, IoError> {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p)
            .map_err(|e| IoError::new("creating scratch directory", &p, e))?;
        Ok(p)
    }
}

/// Removes `PARENT/.PREFIX.PID.N` directories whose process is not alive. Best effort: a
/// directory that cannot be removed (another user's) is left, and only logged.
fn sweep_scratch(parent: &Path, prefix: &str) {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return;
    };
    let head = format!(".{prefix}.");
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&head) else {
            continue;
        };
        let pid: Option<u32> = rest.split('.').next().and_then(|p| p.parse().ok());
        let Some(pid) = pid else { continue };
        if crate::signal::process_alive(pid) || !ent.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match std::fs::remove_dir_all(ent.path()) {
            Ok(()) => crate::log_info!(
                "removed scratch directory {}, left by a process that is gone",
                ent.path().display()
            ),
            Err(e) => crate::log_warning!(
                "cannot remove scratch directory {} of a process that is gone: {e}",
                ent.path().display()
            ),
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                crate::log_warning!(
                    "cannot remove scratch directory {}: {e}",
                    self.path.display()
                );
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn made_and_recognised() {
        let p = for_path(Path::new("/a/000000010000000000000003.zst"));
        let me = std::process::id();
        assert_eq!(
            p,
            PathBuf::from(format!("/a/.000000010000000000000003.zst.pitr-tmp.{me}"))
        );
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            parse(&name),
            Some(TempName {
                base: "000000010000000000000003.zst",
                pid: me
            })
        );
        assert_eq!(parse(".a.pitr-tmp.12").map(|t| t.pid), Some(12));
        assert_eq!(parse("a.pitr-tmp.12"), None);
        assert_eq!(parse("..pitr-tmp.12"), None);
        assert_eq!(parse(".x.pitr-tmp.notapid"), None);
    }

    #[test]
    fn scratch_dirs_are_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let a = ScratchDir::create(d.path(), "pitr-archive").unwrap();
        let b = ScratchDir::create(d.path(), "pitr-archive").unwrap();
        assert_ne!(a.path(), b.path());
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        std::fs::write(a.subdir("0").unwrap().join("f"), b"x").unwrap();
        drop(a);
        drop(b);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        // One of a process killed with -9: swept by the next run.
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        let left = d.path().join(format!(".pitr-archive.{dead_pid}.0"));
        std::fs::create_dir_all(left.join("0")).unwrap();
        let c = ScratchDir::create(d.path(), "pitr-archive").unwrap();
        assert!(!left.exists());
        drop(c);
    }

    #[test]
    fn rsync_temporary_names_of_archived_wal_files_only() {
        assert_eq!(
            parse_rsync(".000000010000000000000005.gz.SICytG"),
            Some("000000010000000000000005.gz")
        );
        assert_eq!(
            parse_rsync(".000000010000000000000005.a1B2c3"),
            Some("000000010000000000000005")
        );
        assert_eq!(
            parse_rsync(".00000002.history.zst.Ab12Cd"),
            Some("00000002.history.zst")
        );
        for not in [
            "000000010000000000000005.gz",
            ".000000010000000000000005.gz",
            ".000000010000000000000005.gz.SICyt",
            ".000000010000000000000005.gz.SICytG7",
            ".000000010000000000000005.gz.SI-ytG",
            ".000000010000000000000005.gz.pitr-tmp.77",
            ".pitr-cluster.Ab12Cd",
            ".README.Ab12Cd",
            ".Ab12Cd",
        ] {
            assert_eq!(parse_rsync(not), None, "{not}");
        }
    }

    #[test]
    fn stale_rsync_are_old_rsync_leftovers_only() {
        let d = tempfile::tempdir().unwrap();
        for name in [
            ".000000010000000000000005.gz.SICytG",
            "000000010000000000000005.gz",
            ".000000010000000000000006.gz.pitr-tmp.1",
            ".pitr-cluster",
        ] {
            std::fs::write(d.path().join(name), b"x").unwrap();
        }
        assert!(stale_rsync(d.path(), Duration::from_secs(3600))
            .unwrap()
            .is_empty());
        assert_eq!(
            stale_rsync(d.path(), Duration::ZERO).unwrap(),
            [d.path().join(".000000010000000000000005.gz.SICytG")]
        );
    }

    #[test]
    fn stale_are_old_leftovers_of_dead_writers_only() {
        let d = tempfile::tempdir().unwrap();
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        let me = std::process::id();
        for name in [
            format!(".000000010000000000000003.zst.pitr-tmp.{dead_pid}"),
            format!(".000000010000000000000004.zst.pitr-tmp.{me}"),
            "000000010000000000000003.zst".to_string(),
            ".pitr-cluster".to_string(),
            ".x.pitr-tmp.notapid".to_string(),
        ] {
            std::fs::write(d.path().join(name), b"x").unwrap();
        }
        // Just written: too young, whoever wrote it.
        let young = stale(d.path(), Duration::from_secs(3600)).unwrap();
        assert!(young.is_empty(), "{young:?}");
        // With no minimum age: only the dead writer's temp file.
        assert_eq!(
            stale(d.path(), Duration::ZERO).unwrap(),
            [d.path()
                .join(format!(".000000010000000000000003.zst.pitr-tmp.{dead_pid}"))]
        );
    }
}

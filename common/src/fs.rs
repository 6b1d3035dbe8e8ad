//! Path-carrying I/O helpers and the durable write.
//!
//! Every error here names the operation and the path, so that no message in a PostgreSQL log
//! reads "No such file or directory" without saying which file. [`write_durable`] is the one way
//! files are created in an archive, a backup set or a state dir: a temporary name in the same
//! directory, fsync, rename (or link when the final name must not be replaced), fsync of the
//! directory.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// An I/O error with the operation and the path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}", path.display())]
pub struct IoError {
    /// What was being done ("opening", "renaming", ...).
    pub op: &'static str,
    /// The path concerned.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// Wraps `source` with `op` and `path`.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        IoError {
            op,
            path: path.into(),
            source,
        }
    }

    /// The kind of the underlying error.
    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, IoError>;

/// Opens `path` for reading.
pub fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| IoError::new("opening", path, e))
}

/// Reads all of `path`.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| IoError::new("reading", path, e))
}

/// A whole file's bytes, mapped or read (see [`map_or_read`]).
#[derive(Debug)]
pub enum FileBytes {
    /// Mapped read-only from the page cache.
    Mapped(memmap2::Mmap),
    /// Read into memory (small files, or where mapping failed).
    Read(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Read(v) => v,
        }
    }
}

/// Files at least this large are mapped by [`map_or_read`].
const MAP_AT_LEAST: u64 = 1 << 20;

/// The whole content of `path`, for a file nobody writes or truncates while we hold it (a WAL
/// segment PostgreSQL has finished: marked `.ready`, it is not written again and is only ever
/// renamed or removed, never truncated, and only after it is archived).
///
/// Files of 1 MiB and more are mapped read-only with the pages populated up front: reading a
/// 16 MiB segment into a fresh buffer cost ~18 ms here, nearly all of it page faults on the
/// new memory; mapping it costs ~1.6 ms and copies nothing. Where mapping fails the file is
/// read. Should the file be truncated anyway while mapped, touching a page past its new end
/// raises SIGBUS and the process dies by that signal: a failed call for PostgreSQL, which
/// retries it; nothing is renamed into place by a call that does not finish.
pub fn map_or_read(path: &Path) -> Result<FileBytes> {
    let f = open(path)?;
    let len = f
        .metadata()
        .map_err(|e| IoError::new("examining", path, e))?
        .len();
    if len >= MAP_AT_LEAST {
        // SAFETY: the mapping is read-only and private to this process; the caller guarantees
        // the file is not modified or truncated while it is mapped (see above).
        if let Ok(m) = unsafe { memmap2::MmapOptions::new().populate().map(&f) } {
            return Ok(FileBytes::Mapped(m));
        }
    }
    let mut v = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    (&f).read_to_end(&mut v)
        .map_err(|e| IoError::new("reading", path, e))?;
    Ok(FileBytes::Read(v))
}

/// The metadata of `path` (following links).
pub fn metadata(path: &Path) -> Result<std::fs::Metadata> {
    std::fs::metadata(path).map_err(|e| IoError::new("examining", path, e))
}

/// fsyncs the directory `dir`, so that a rename or unlink in it survives a crash.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| IoError::new("opening directory", dir, e))?;
    d.sync_all()
        .map_err(|e| IoError::new("fsyncing directory", dir, e))
}

/// fsyncs every regular file and directory of the tree at `root` (links are not followed),
/// each directory after what it holds, and then `root`'s parent, as pg_basebackup and `initdb
/// -S` make a data directory durable. Returns how many regular files were synced.
pub fn fsync_tree(root: &Path) -> Result<u64> {
    fn walk(dir: &Path, files: &mut u64) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| IoError::new("listing", dir, e))?;
        for ent in entries {
            let ent = ent.map_err(|e| IoError::new("listing", dir, e))?;
            let path = ent.path();
            let kind = ent
                .file_type()
                .map_err(|e| IoError::new("examining", &path, e))?;
            if kind.is_dir() {
                walk(&path, files)?;
            } else if kind.is_file() {
                open(&path)?
                    .sync_all()
                    .map_err(|e| IoError::new("fsyncing", &path, e))?;
                *files += 1;
            }
        }
        fsync_dir(dir)
    }
    let mut files = 0;
    walk(root, &mut files)?;
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsync_dir(parent)?;
    }
    Ok(files)
}

/// Creates `dir` and its missing ancestors, each durably: the parent of every directory
/// created is fsynced, so that a crash cannot lose the new path above what is later written
/// into it. Returns the directories created, the outermost first.
pub fn create_dir_all_durable(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        match std::fs::symlink_metadata(at) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(at.to_path_buf());
                match at.parent().filter(|p| !p.as_os_str().is_empty()) {
                    Some(p) => at = p,
                    None => break,
                }
            }
            Err(e) => return Err(IoError::new("examining", at, e)),
        }
    }
    missing.reverse();
    for d in &missing {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            // Created meanwhile by someone else: theirs to make durable, and ours to use.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(IoError::new("creating", d, e)),
        }
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_dir(parent)?;
        }
    }
    Ok(missing)
}

/// Removes `path`, treating "already gone" as success.
pub fn remove_file_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::new("removing", path, e)),
    }
}

/// Sets the modification (and access) time of an open file.
pub fn set_mtime(file: &File, path: &Path, mtime: std::time::SystemTime) -> Result<()> {
    let times = std::fs::FileTimes::new()
        .set_modified(mtime)
        .set_accessed(mtime);
    file.set_times(times)
        .map_err(|e| IoError::new("setting the modification time of", path, e))
}

/// What [`write_durable`] does when the final name already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Replace it atomically (state files, spool files).
    Allow,
    /// Never replace it: the call fails with `AlreadyExists` and the existing file is untouched
    /// (archives and backup sets).
    Never,
}

/// The one reason a file we write may skip its fsyncs, named at the call site. Everything else
/// written into an archive, a backup set or a state dir is fsynced, as is the directory after
/// the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsynced {
    /// `restore_command`'s `%p`: PostgreSQL uses the file only after a zero exit and asks for it
    /// again after a crash, so an fsync would buy nothing (pgBackRest's archive-get makes the
    /// same choice).
    RestoredWal,
    /// A prefetch spool file: the spool is tied to the kernel's boot id and never read after a
    /// crash (see pitr-restore's `prefetch`).
    BootScopedSpool,
}

/// Writes a file durably: `fill` writes the content into a temporary file beside `path`; the
/// file is fsynced, given `mtime` if set, moved to `path` (never replacing an existing file when
/// `replace` is [`Replace::Never`]) and the directory is fsynced. On any error the temporary
/// file is removed and `path` is untouched. A reader never sees a partial file under `path`.
pub fn write_durable<F>(
    path: &Path,
    replace: Replace,
    mtime: Option<std::time::SystemTime>,
    fill: F,
) -> anyhow::Result<()>
where
    F: FnOnce(&mut File) -> anyhow::Result<()>,
{
    let mut file = DurableFile::create(path, replace)?;
    fill(file.file())?;
    file.commit(mtime)?;
    Ok(())
}

/// The durable write, the one way pitr puts a file under a final name: the content goes to a
/// hidden temporary name beside `path` ([`crate::tempname`]), is fsynced, moved into place
/// (no-clobber `link(2)` or `rename(2)`, see [`Replace`]) and the directory is fsynced.
/// [`DurableFile::commit`] moves it into place; dropping it uncommitted removes the temporary
/// file, so an error or an early return leaves nothing under any name. The only opt-out is
/// [`DurableFile::unsynced`], with its reason named.
#[derive(Debug)]
pub struct DurableFile {
    path: PathBuf,
    tmp: PathBuf,
    file: File,
    replace: Replace,
    unsynced: Option<Unsynced>,
    committed: bool,
    /// Held until this value is dropped (after `drop` has removed an uncommitted temporary
    /// file): the temporary name is this process's alone meanwhile.
    _claim: TempClaim,
}

/// The temporary names that this process's live [`DurableFile`]s write. The temporary name is
/// per process, so two threads writing one final name at once (the archive-ahead worker's two
/// delivering threads making a fresh directory's cluster marker) would share it: the second
/// removed the first one's file as a killed writer's leftover, and the first then moved the
/// second one's file, not yet written, into place. The second now waits for the first.
static WRITING: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());
static WRITTEN: std::sync::Condvar = std::sync::Condvar::new();

/// This process's claim on a temporary name, released when dropped.
#[derive(Debug)]
struct TempClaim(PathBuf);

impl TempClaim {
    /// Waits while another thread of this process writes under `tmp`, then claims it.
    fn take(tmp: &Path) -> TempClaim {
        let mut writing = WRITING.lock().unwrap_or_else(|p| p.into_inner());
        while writing.contains(tmp) {
            writing = WRITTEN.wait(writing).unwrap_or_else(|p| p.into_inner());
        }
        writing.insert(tmp.to_path_buf());
        TempClaim(tmp.to_path_buf())
    }
}

impl Drop for TempClaim {
    fn drop(&mut self) {
        let mut writing = WRITING.lock().unwrap_or_else(|p| p.into_inner());
        writing.remove(&self.0);
        WRITTEN.notify_all();
    }
}

/// Run as root, gives the new file `file` (at `path`) to the owner of the directory it is in,
/// when that is another user: a hand-run as root (cleanup, monitor, a restore into a new data
/// directory) then leaves nothing the server's user cannot open on its next call (a lock file,
/// a state file). As any other user, or in a root-owned directory, nothing changes.
pub fn give_to_directory_owner(file: &File, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    if crate::pg::effective_uid() != 0 {
        return Ok(());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let owner = std::fs::metadata(dir)?;
    if owner.uid() == 0 {
        return Ok(());
    }
    std::os::unix::fs::fchown(file, Some(owner.uid()), Some(owner.gid()))
}

/// Creates the directory `dir` and its missing parents, as `create_dir_all`. Run as root, each
/// directory it creates is given to the owner of the nearest directory above that exists, when
/// that is another user: a dated log directory (`--log /var/log/pitr/^Y-^m/x.log`) that a
/// root hand-run makes first stays writable by the server's user's calls. As any other user, or
/// below a root-owned directory, it is plain `create_dir_all`.
pub fn create_dir_all_for_owner(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    if crate::pg::effective_uid() != 0 {
        return std::fs::create_dir_all(dir);
    }
    // The missing directories, deepest first, and the metadata of the nearest one that exists.
    let mut missing = Vec::new();
    let mut owner = None;
    for a in dir.ancestors() {
        let probe = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        match std::fs::metadata(probe) {
            Ok(m) => {
                owner = Some(m);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(a),
            Err(e) => return Err(e),
        }
    }
    let Some(owner) = owner.filter(|m| m.uid() != 0) else {
        return std::fs::create_dir_all(dir);
    };
    for d in missing.iter().rev() {
        match std::fs::create_dir(d) {
            // lchown: a name swapped for a link meanwhile gives away the link, nothing else.
            Ok(()) => std::os::unix::fs::lchown(d, Some(owner.uid()), Some(owner.gid()))?,
            // Made meanwhile by another call: whoever made it owns it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl DurableFile {
    /// Creates the temporary file beside `path`. With [`Replace::Never`] an existing `path` is
    /// an `AlreadyExists` error at once, before anything is written (the final link checks
    /// again).
    pub fn create(path: &Path, replace: Replace) -> Result<DurableFile> {
        if replace == Replace::Never && std::fs::symlink_metadata(path).is_ok() {
            return Err(IoError::new(
                "creating",
                path,
                io::Error::from(io::ErrorKind::AlreadyExists),
            ));
        }
        let tmp = crate::tempname::for_path(path);
        let claim = TempClaim::take(&tmp);
        // A leftover from a killed writer with our pid is stale by definition: we are that pid
        // now, and no other thread of ours writes it (the claim).
        remove_file_if_exists(&tmp)?;
        // Readable too: a restored WAL file is checked from what was written.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| IoError::new("creating", &tmp, e))?;
        give_to_directory_owner(&file, &tmp)
            .map_err(|e| IoError::new("changing the owner of", &tmp, e))?;
        Ok(DurableFile {
            path: path.to_path_buf(),
            tmp,
            file,
            replace,
            unsynced: None,
            committed: false,
            _claim: claim,
        })
    }

    /// Skips the fsyncs of the file and of its directory, for `reason`.
    #[must_use]
    pub fn unsynced(mut self, reason: Unsynced) -> Self {
        self.unsynced = Some(reason);
        self
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// Writes all of `buf`, naming the temporary file on error.
    pub fn write_bytes(&mut self, buf: &[u8]) -> Result<()> {
        self.file
            .write_all(buf)
            .map_err(|e| IoError::new("writing", &self.tmp, e))
    }

    /// The final name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary name the content is written under.
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    /// Flushes and fsyncs the file, gives it `mtime` if set, moves it to its final name
    /// (no-clobber `link(2)` for [`Replace::Never`], `rename(2)` for [`Replace::Allow`]) and
    /// fsyncs the directory. On error the temporary file is removed.
    pub fn commit(mut self, mtime: Option<std::time::SystemTime>) -> Result<()> {
        self.file
            .flush()
            .map_err(|e| IoError::new("writing", &self.tmp, e))?;
        if let Some(t) = mtime {
            set_mtime(&self.file, &self.tmp, t)?;
        }
        if self.unsynced.is_none() {
            self.file
                .sync_all()
                .map_err(|e| IoError::new("fsyncing", &self.tmp, e))?;
        }
        match self.replace {
            Replace::Allow => std::fs::rename(&self.tmp, &self.path)
                .map_err(|e| IoError::new("renaming into place", &self.path, e))?,
            Replace::Never => {
                // link(2) fails with EEXIST instead of replacing: the no-clobber move.
                std::fs::hard_link(&self.tmp, &self.path)
                    .map_err(|e| IoError::new("linking into place", &self.path, e))?;
                self.committed = true;
                remove_file_if_exists(&self.tmp)?;
            }
        }
        self.committed = true;
        if self.unsynced.is_some() {
            return Ok(());
        }
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fsync_dir(&dir)
    }
}

impl Write for DurableFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for DurableFile {
    fn drop(&mut self) {
        // Not committed (or the commit failed before the link): the temporary file goes. The
        // original error is what matters; the name is hidden and per-pid anyway.
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Is this error (anywhere in the chain) an "already exists" from [`write_durable`]?
pub fn is_already_exists(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<IoError>()
            .is_some_and(|io| io.kind() == io::ErrorKind::AlreadyExists)
    })
}

/// Writes all of `buf` to `file`, naming `path` on error.
pub fn write_all(file: &mut File, path: &Path, buf: &[u8]) -> Result<()> {
    file.write_all(buf)
        .map_err(|e| IoError::new("writing", path, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fsync_tree_syncs_every_file_below_and_names_what_it_cannot_open() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("data");
        std::fs::create_dir_all(root.join("base/1")).unwrap();
        std::fs::create_dir_all(root.join("pg_wal/archive_status")).unwrap();
        for f in ["PG_VERSION", "base/1/1259", "base/1/1259_fsm", "pg_wal/x"] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        std::os::unix::fs::symlink("/nonexistent", root.join("link")).unwrap();
        assert_eq!(fsync_tree(&root).unwrap(), 4);
        assert_eq!(
            format!(
                "{:#}",
                anyhow::Error::from(fsync_tree(&t.path().join("gone")).unwrap_err())
            ),
            format!(
                "listing {}: No such file or directory (os error 2)",
                t.path().join("gone").display()
            )
        );
    }

    /// Found by the chain (`faults_archive_ahead_killed_while_saving_a_record_leaves_no_temp_file`
    /// failed under load): the archive-ahead worker's two delivering threads made a fresh local
    /// destination's cluster marker at once, under one per-process temporary name, and one of
    /// the batches failed. A second writer of the same name now waits for the first.
    #[test]
    fn two_threads_writing_one_name_do_not_share_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("marker");
        let mut first = DurableFile::create(&path, Replace::Allow).unwrap();
        first.write_bytes(b"first").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let second = {
            let path = path.clone();
            std::thread::spawn(move || {
                write_durable(&path, Replace::Allow, None, |f| {
                    tx.send(()).unwrap();
                    Ok(write_all(f, &path, b"second")?)
                })
            })
        };
        // The second writer is held while the first one's temporary file is open.
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_millis(300)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
        );
        assert_eq!(
            std::fs::read(first.temp_path()).unwrap(),
            b"first",
            "the first writer's temporary file was replaced"
        );
        first.commit(None).unwrap();
        rx.recv().unwrap();
        second.join().unwrap().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["marker"]);
    }

    #[test]
    fn durable_write_creates_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("000000010000000000000001");
        write_durable(&p, Replace::Never, None, |f| Ok(f.write_all(b"first")?)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        let err =
            write_durable(&p, Replace::Never, None, |f| Ok(f.write_all(b"second")?)).unwrap_err();
        assert!(is_already_exists(&err), "{err:#}");
        assert_eq!(std::fs::read(&p).unwrap(), b"first");
        write_durable(&p, Replace::Allow, None, |f| Ok(f.write_all(b"third")?)).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"third");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn durable_dir_creation_makes_each_missing_ancestor() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("a/b/c");
        assert_eq!(
            create_dir_all_durable(&deep).unwrap(),
            [d.path().join("a"), d.path().join("a/b"), deep.clone()]
        );
        assert!(deep.is_dir());
        assert!(create_dir_all_durable(&deep).unwrap().is_empty());
        std::fs::write(d.path().join("file"), b"").unwrap();
        let e = create_dir_all_durable(&d.path().join("file/x")).unwrap_err();
        assert!(e.to_string().contains("file/x"), "{e}");
    }

    #[test]
    fn failed_fill_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        let err = write_durable(&p, Replace::Never, None, |f| {
            f.write_all(b"partial")?;
            anyhow::bail!("compression failed")
        })
        .unwrap_err();
        assert_eq!(format!("{err:#}"), "compression failed");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn durable_file_streams_commits_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("set-data.tar");
        let mut f = DurableFile::create(&p, Replace::Never).unwrap();
        f.write_all(b"part one ").unwrap();
        assert!(!p.exists(), "nothing under the final name while writing");
        assert!(f.temp_path().exists());
        f.write_all(b"part two").unwrap();
        f.commit(None).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"part one part two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // An existing final name is refused before anything is written.
        let err = DurableFile::create(&p, Replace::Never).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        // Dropped without commit: the temporary file goes.
        let q = dir.path().join("other");
        let mut f = DurableFile::create(&q, Replace::Never).unwrap();
        f.write_all(b"partial").unwrap();
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn directories_for_owner_are_created_with_their_parents() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all_for_owner(&deep).unwrap();
        assert!(deep.is_dir());
        // Existing directories are fine, as for create_dir_all.
        create_dir_all_for_owner(&deep).unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(create_dir_all_for_owner(&file.join("d")).is_err());
    }

    #[test]
    fn io_error_names_path_once() {
        let err = read(Path::new("/nonexistent/pitr")).unwrap_err();
        let err = anyhow::Error::from(err);
        assert_eq!(
            format!("{err:#}"),
            "reading /nonexistent/pitr: No such file or directory (os error 2)"
        );
    }
}

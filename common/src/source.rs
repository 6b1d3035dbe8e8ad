//! Archive directories on the reading side: finding WAL files, reading them back verified,
//! listing and pruning them.
//!
//! An archived WAL file may be stored under its own name or with a codec's extension; the reader
//! looks for every form, so that changing the archive's codec never hides a file. Before a file
//! is handed to anyone it is decompressed completely and, for segments, its page header is
//! checked against the name asked for, its length and the cluster's system identifier: a
//! truncated, damaged, misnamed or foreign file is an error, never data.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::compress::{self, Codec, Stored};
use crate::fs::IoError;
use crate::location::Location;
use crate::wal::WalFileName;
use crate::walpage::{self, LongPageHeader};

/// An archived copy of a WAL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its path.
    pub path: PathBuf,
    /// How it is stored.
    pub codec: Codec,
    /// Its modification time (the WAL file's, as archived).
    pub mtime: SystemTime,
}

/// A problem with an archived file or an archive directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The archive directory or file cannot be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Stored with a codec we recognise but cannot decode.
    #[error("{} is compressed with {codec}, which pitr cannot decompress", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The codec.
        codec: &'static str,
    },
    /// Decompression failed.
    #[error("{} cannot be decompressed", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The content does not belong under this name, at this size or to this cluster.
    #[error("{}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: walpage::Error,
    },
    /// Writing the restored copy failed (the destination's problem, not the archive's).
    #[error(transparent)]
    Write(IoError),
}

const EXTENSIONS: &[&str] = &["", ".zst", ".gz", ".bz2", ".xz", ".lz4", ".lzma"];

/// Looks for `name` in `dir` under every stored form, the preferred codec's first.
pub fn find_in(dir: &Path, preferred: Codec, name: &WalFileName) -> Result<Option<Found>, Error> {
    let base = name.to_string();
    let first = preferred.extension();
    let order = std::iter::once(first).chain(EXTENSIONS.iter().copied().filter(|e| *e != first));
    for ext in order {
        let path = dir.join(format!("{base}{ext}"));
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {
                let codec = match compress::split_stored_name(&format!("x{ext}")).1 {
                    Stored::Readable(c) => c,
                    Stored::Unreadable(codec) => return Err(Error::Unsupported { path, codec }),
                };
                let mtime = m
                    .modified()
                    .map_err(|e| IoError::new("reading the mtime of", &path, e))?;
                return Ok(Some(Found { path, codec, mtime }));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(IoError::new("examining", &path, e).into()),
        }
    }
    Ok(None)
}

/// Looks for `name` in each source in order.
pub fn find(sources: &[Location], name: &WalFileName) -> Result<Option<Found>, Error> {
    for s in sources {
        if let Some(f) = find_in(Path::new(&s.target), s.codec, name)? {
            return Ok(Some(f));
        }
    }
    Ok(None)
}

/// Reads and decompresses `found`, and checks that it is `name` of the database system
/// `system_identifier` (segments only; history and backup files are text).
pub fn read_verified(
    found: &Found,
    name: &WalFileName,
    system_identifier: u64,
) -> Result<Vec<u8>, Error> {
    let raw = std::fs::read(&found.path).map_err(|e| IoError::new("reading", &found.path, e))?;
    let data = match found.codec {
        Codec::None => raw,
        c => c
            .decompress(&raw, 16 << 20)
            .map_err(|source| Error::Corrupt {
                path: found.path.clone(),
                source,
            })?,
    };
    verify(&found.path, name, &data, system_identifier)?;
    Ok(data)
}

/// How [`restore_verified`] writes its copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Give the copy this modification time.
    pub mtime: Option<SystemTime>,
    /// fsync the copy before the rename and its directory after.
    pub durable: bool,
    /// Decode on at most this many threads; 0 means every core.
    pub threads: usize,
}

/// Writes `found`, decompressed and checked exactly as [`read_verified`] checks it, to `dest`:
/// under a temporary name beside it, renamed into place only once the whole content is written
/// and checked, removed on any failure. The content is never held in memory (see
/// [`Codec::decompress_to_file`]); an uncompressed archive file is copied by the kernel.
/// Archive-side problems are [`Error::Io`], [`Error::Corrupt`] or [`Error::Invalid`];
/// problems writing `dest` are [`Error::Write`].
pub fn restore_verified(
    found: &Found,
    name: &WalFileName,
    system_identifier: u64,
    dest: &Path,
    opts: RestoreOptions,
) -> Result<(), Error> {
    use std::os::unix::fs::FileExt;
    let tmp = crate::fs::temp_path(dest);
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let write_err = |what: &'static str, path: &Path, e: std::io::Error| {
        Error::Write(IoError::new(what, path, e))
    };
    let result = (|| -> Result<(), Error> {
        let out = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| write_err("creating", &tmp, e))?;
        let len = if found.codec == Codec::None {
            let mut src = std::fs::File::open(&found.path)
                .map_err(|e| IoError::new("reading", &found.path, e))?;
            // copy_file_range where the kernel has it: no bytes pass through this process.
            std::io::copy(&mut src, &mut &out).map_err(|e| {
                // Which side failed is not told apart by io::copy; both name the path.
                write_err("copying into", &tmp, e)
            })?
        } else {
            let raw =
                std::fs::read(&found.path).map_err(|e| IoError::new("reading", &found.path, e))?;
            found
                .codec
                .decompress_to_file(&raw, &out, threads)
                .map_err(|source| match source.kind() {
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::PermissionDenied => {
                        write_err("writing", &tmp, source)
                    }
                    _ => Error::Corrupt {
                        path: found.path.clone(),
                        source,
                    },
                })?
        };
        if name.has_wal_pages() {
            let mut head = [0u8; walpage::LONG_HEADER_LEN];
            let got = if len >= head.len() as u64 {
                out.read_exact_at(&mut head, 0)
                    .map_err(|e| write_err("reading back", &tmp, e))?;
                &head[..]
            } else {
                &head[..0]
            };
            let invalid = |source| Error::Invalid {
                path: found.path.clone(),
                source,
            };
            let n = name.to_string();
            let h = LongPageHeader::parse(&n, got).map_err(invalid)?;
            h.check(name, len, Some(system_identifier))
                .map_err(invalid)?;
        }
        if let Some(t) = opts.mtime {
            out.set_modified(t)
                .map_err(|e| write_err("setting the mtime of", &tmp, e))?;
        }
        if opts.durable {
            out.sync_all().map_err(|e| write_err("fsyncing", &tmp, e))?;
        }
        drop(out);
        std::fs::rename(&tmp, dest).map_err(|e| write_err("renaming into place", dest, e))?;
        if opts.durable {
            if let Some(dir) = dest.parent() {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                crate::fs::fsync_dir(dir).map_err(Error::Write)?;
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Checks WAL content against the name asked for and the cluster.
pub fn verify(
    path: &Path,
    name: &WalFileName,
    data: &[u8],
    system_identifier: u64,
) -> Result<(), Error> {
    if !name.has_wal_pages() {
        return Ok(());
    }
    let invalid = |source| Error::Invalid {
        path: path.to_path_buf(),
        source,
    };
    let n = name.to_string();
    let h = LongPageHeader::parse(&n, data).map_err(invalid)?;
    h.check(name, data.len() as u64, Some(system_identifier))
        .map_err(invalid)
}

/// Temporary files our writers leave in `dir` when they are killed mid-write
/// (`.NAME.pitr-tmp.PID`, see [`crate::fs::temp_path`]): those whose writer is not a live process
/// here and whose status last changed at least `min_age` ago (a live write changes it with
/// every block; the mtime is no guide, it is set to the WAL file's). Never a final name.
pub fn stale_temp_files(dir: &Path, min_age: std::time::Duration) -> Result<Vec<PathBuf>, Error> {
    use std::os::unix::fs::MetadataExt;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rd = std::fs::read_dir(dir).map_err(|e| IoError::new("listing", dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| IoError::new("listing", dir, e))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_file_writer(&name) else {
            continue;
        };
        let Ok(meta) = ent.metadata() else { continue };
        let changed = u64::try_from(meta.ctime()).unwrap_or(0);
        if meta.is_file()
            && now.saturating_sub(changed) >= min_age.as_secs()
            && !crate::signal::process_alive(pid)
        {
            out.push(ent.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The writer's PID of a temporary file name `.NAME.pitr-tmp.PID`.
fn temp_file_writer(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (base, pid) = rest.rsplit_once(".pitr-tmp.")?;
    if base.is_empty() {
        return None;
    }
    pid.parse().ok()
}

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
        if e.wal.kind == crate::wal::WalKind::History
            || e.wal.cmp_position(oldest) != std::cmp::Ordering::Less
        {
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
    use crate::location::Kind;

    const SEG: u32 = 1 << 20;

    fn segment(name: &WalFileName, sysid: u64) -> Vec<u8> {
        let mut b = walpage::fake_header(name, SEG, sysid);
        b.resize(SEG as usize, 0xAB);
        b
    }

    #[test]
    fn finds_any_stored_form_and_verifies() {
        let d = tempfile::tempdir().unwrap();
        let name = WalFileName::parse("000000010000000000000003").unwrap();
        let data = segment(&name, 9);
        std::fs::write(
            d.path().join("000000010000000000000003.gz"),
            Codec::Gzip(1).compress(&data).unwrap(),
        )
        .unwrap();
        let src = [Location::parse(Kind::Local, &format!("zstd={}", d.path().display())).unwrap()];
        let f = find(&src, &name).unwrap().unwrap();
        assert_eq!(f.codec, Codec::Gzip(6));
        assert_eq!(read_verified(&f, &name, 9).unwrap(), data);
        let err = read_verified(&f, &name, 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: 000000010000000000000003 is from database system 9, not 10",
                f.path.display()
            )
        );
        let other = WalFileName::parse("000000010000000000000004").unwrap();
        assert_eq!(find(&src, &other).unwrap(), None);
    }

    #[test]
    fn restore_verified_writes_checked_copies_and_leaves_nothing_on_refusal() {
        let d = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("RECOVERYXLOG");
        let name = WalFileName::parse("000000010000000000000003").unwrap();
        let data = segment(&name, 9);
        let p = |ext: &str| d.path().join(format!("000000010000000000000003{ext}"));
        let mtime = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
        for (ext, bytes) in [
            (".zst", Codec::Zstd(3).compress_parallel(&data, 2).unwrap()),
            (".gz", Codec::Gzip(6).compress_parallel(&data, 2).unwrap()),
            ("", data.clone()),
        ] {
            std::fs::write(p(ext), &bytes).unwrap();
            let f = find_in(d.path(), Codec::None, &name).unwrap().unwrap();
            for durable in [false, true] {
                let opts = RestoreOptions {
                    mtime: Some(mtime),
                    durable,
                    threads: if durable { 1 } else { 0 },
                };
                restore_verified(&f, &name, 9, &dest, opts).unwrap();
                assert_eq!(std::fs::read(&dest).unwrap(), data, "{ext}");
                assert_eq!(std::fs::metadata(&dest).unwrap().modified().unwrap(), mtime);
            }
            std::fs::remove_file(&dest).unwrap();
            // Another system's cluster, a misnamed request: refused, nothing left behind.
            let e = restore_verified(&f, &name, 10, &dest, RestoreOptions::default()).unwrap_err();
            assert!(matches!(e, Error::Invalid { .. }), "{ext}: {e}");
            let next = WalFileName::parse("000000010000000000000004").unwrap();
            let e = restore_verified(&f, &next, 9, &dest, RestoreOptions::default()).unwrap_err();
            assert!(matches!(e, Error::Invalid { .. }), "{ext}: {e}");
            assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "{ext}");
            std::fs::remove_file(p(ext)).unwrap();
        }
        // Truncated and damaged compressed copies are Corrupt (or Invalid when a complete
        // frame list decodes to a short segment), never a file.
        let z = Codec::Zstd(3).compress_parallel(&data, 2).unwrap();
        std::fs::write(p(".zst"), &z[..z.len() - 7]).unwrap();
        let f = find_in(d.path(), Codec::None, &name).unwrap().unwrap();
        let e = restore_verified(&f, &name, 9, &dest, RestoreOptions::default()).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        let first_frame = zstd::zstd_safe::find_frame_compressed_size(&z).unwrap();
        std::fs::write(p(".zst"), &z[..first_frame]).unwrap();
        let e = restore_verified(&f, &name, 9, &dest, RestoreOptions::default()).unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e}");
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
    }

    #[test]
    fn stale_temp_files_are_old_leftovers_of_dead_writers_only() {
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
        let young = stale_temp_files(d.path(), std::time::Duration::from_secs(3600)).unwrap();
        assert!(young.is_empty(), "{young:?}");
        // With no minimum age: only the dead writer's temp file.
        let stale = stale_temp_files(d.path(), std::time::Duration::ZERO).unwrap();
        assert_eq!(
            stale,
            [d.path()
                .join(format!(".000000010000000000000003.zst.pitr-tmp.{dead_pid}"))]
        );
        assert_eq!(temp_file_writer(".a.pitr-tmp.12"), Some(12));
        assert_eq!(temp_file_writer("a.pitr-tmp.12"), None);
        assert_eq!(temp_file_writer("..pitr-tmp.12"), None);
    }

    #[test]
    fn damaged_files_are_errors() {
        let d = tempfile::tempdir().unwrap();
        let name = WalFileName::parse("000000010000000000000003").unwrap();
        let data = segment(&name, 9);
        let mut z = Codec::Zstd(3).compress(&data).unwrap();
        z.truncate(z.len() - 10);
        let p = d.path().join("000000010000000000000003.zst");
        std::fs::write(&p, &z).unwrap();
        let f = find_in(d.path(), Codec::None, &name).unwrap().unwrap();
        assert!(matches!(
            read_verified(&f, &name, 9),
            Err(Error::Corrupt { .. })
        ));
        std::fs::write(&p, Codec::Zstd(3).compress(&data[..1000]).unwrap()).unwrap();
        assert!(matches!(
            read_verified(&f, &name, 9),
            Err(Error::Invalid { .. })
        ));
        std::fs::remove_file(&p).unwrap();
        std::fs::write(d.path().join("000000010000000000000003.bz2"), b"x").unwrap();
        assert!(matches!(
            find_in(d.path(), Codec::None, &name),
            Err(Error::Unsupported { codec: "bzip2", .. })
        ));
    }

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

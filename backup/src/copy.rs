//! Walking the data directory and its tablespaces, and streaming them into the data tar with
//! a `backup_manifest` entry per file.
//!
//! The walk leaves out what pg_basebackup leaves out (PostgreSQL's `basebackup.c`:
//! `excludeFiles`, `excludeDirContents`, temporary files and relations, the non-init forks of
//! unlogged relations), keeps the directories whose contents it drops (`pg_wal/`,
//! `pg_wal/archive_status/`, `pg_replslot/`, ...), stores each tablespace under
//! `pg_tblspc/<oid>/` (only its `PG_<major>_*` directory, which belongs to this cluster) and
//! leaves `global/pg_control` for last, as pg_basebackup does (a standby backup's end is the
//! minimum recovery point recorded in the copied pg_control). The walk holds one open directory
//! per level and nothing per file, so memory does not grow with the number of files.
//!
//! Files change under a running server: a file that vanishes between listing and opening is
//! skipped; a file that shrinks while it is read is padded with zeros to the size it had when
//! it was opened, and a file that grows is cut at that size (pg_basebackup does the same; WAL
//! replay from the backup's start rewrites every block changed during the copy).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use pitr_common::checksum::Sha256Reader;
use pitr_common::fs::IoError;
use pitr_common::manifest::ManifestWriter;
use pitr_common::{log_verbose, pg};

use crate::session::check_interrupt;
use pitr_common::progress::Progress;

/// Files left out at any depth (`excludeFiles` of PostgreSQL's basebackup.c).
const EXCLUDED_FILES: &[&str] = &[
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    pg::BACKUP_LABEL,
    pg::TABLESPACE_MAP,
    pg::BACKUP_MANIFEST,
    pg::POSTMASTER_PID,
    pg::POSTMASTER_OPTS,
];

/// Name prefixes left out at any depth: temporary files and the relation cache.
const EXCLUDED_PREFIXES: &[&str] = &["pgsql_tmp", "pg_internal.init"];

/// Top-level files left out: recovery signals (the restore decides how the copy starts).
const EXCLUDED_TOP_FILES: &[&str] = &[pg::STANDBY_SIGNAL, pg::RECOVERY_SIGNAL];

/// Top-level directories kept empty (`excludeDirContents` of basebackup.c).
const EMPTIED_DIRS: &[&str] = &[
    "pg_stat_tmp",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];

/// The read size for file contents.
const READ_BUFFER: usize = 1 << 20;

/// Where the tablespace symlinks live.
pub const PG_TBLSPC: &str = "pg_tblspc";

/// What the walk decides about a directory's children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// The top of the data directory.
    Root,
    /// Anywhere else without special rules.
    Plain,
    /// `base/`: its children are database directories.
    Base,
    /// A database directory: unlogged and temporary relations are left out.
    Database,
    /// `pg_tblspc/`: its children are tablespaces (symlinks, or directories in place).
    Tablespaces,
    /// A tablespace's location: only `PG_<major>_*` belongs to this cluster.
    TablespaceLocation,
    /// `PG_<major>_<catversion>/` of a tablespace: its children are database directories.
    TablespaceVersion,
}

/// What the walk found.
#[derive(Debug)]
pub enum Kind {
    /// A directory (possibly reached through a symbolic link, such as `pg_wal` or a tablespace).
    Dir,
    /// A regular file.
    File,
    /// A symbolic link stored as such, and its target.
    Symlink(PathBuf),
}

/// One entry of the walk.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The path in the archive, relative to the data directory.
    pub rel: &'a Path,
    /// The path on disk.
    pub abs: &'a Path,
    /// What it is.
    pub kind: Kind,
    /// Its metadata (of the link target for directories reached through links).
    pub meta: &'a Metadata,
}

/// The walk's settings.
#[derive(Debug, Clone)]
pub struct Rules {
    /// `PG_15_`: the prefix of this cluster's directory in a tablespace.
    pub tablespace_prefix: String,
    /// A top-level file of ours to leave out (the lock file in the data directory).
    pub own_file: Option<String>,
}

fn is_excluded_anywhere(name: &str) -> bool {
    EXCLUDED_FILES.contains(&name) || EXCLUDED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The relfilenode digits at the start of a relation file name, and the rest (`_fsm.1`).
fn split_relation(name: &str) -> Option<(&str, &str)> {
    let end = name
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(name.len());
    (end > 0).then(|| name.split_at(end))
}

/// `t<backend>_<relfilenode>[_fork][.segment]`: a temporary relation's file.
fn is_temp_relation(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('t') else {
        return false;
    };
    let Some((_, rest)) = split_relation(rest) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix('_') else {
        return false;
    };
    split_relation(rest).is_some()
}

/// The relfilenodes of a database directory that have an `_init` fork (unlogged relations).
fn unlogged_relations(dir: &Path) -> Result<HashSet<String>, IoError> {
    let mut out = HashSet::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(IoError::new("listing", dir, e)),
    };
    for ent in rd {
        let ent = ent.map_err(|e| IoError::new("listing", dir, e))?;
        let name = ent.file_name();
        if let Some(n) = name.to_str().and_then(|n| n.strip_suffix("_init")) {
            if split_relation(n).is_some_and(|(_, rest)| rest.is_empty()) {
                out.insert(n.to_string());
            }
        }
    }
    Ok(out)
}

/// Whether a file of a database directory is left out.
fn skip_in_database(name: &str, unlogged: &HashSet<String>) -> bool {
    if is_temp_relation(name) {
        return true;
    }
    match split_relation(name) {
        Some((node, rest)) if unlogged.contains(node) => !rest.starts_with("_init"),
        _ => false,
    }
}

/// Walks the data directory, calling `visit` for every entry the backup keeps, except
/// `global/pg_control` (see the module documentation).
pub fn walk(
    data_dir: &Path,
    rules: &Rules,
    visit: &mut dyn FnMut(&Entry<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    walk_dir(data_dir, Path::new(""), Ctx::Root, rules, visit)
}

fn dir_entry(
    rel: &Path,
    abs: &Path,
    meta: &Metadata,
    visit: &mut dyn FnMut(&Entry<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    visit(&Entry {
        rel,
        abs,
        kind: Kind::Dir,
        meta,
    })
}

fn walk_dir(
    abs: &Path,
    rel: &Path,
    ctx: Ctx,
    rules: &Rules,
    visit: &mut dyn FnMut(&Entry<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let rd = match std::fs::read_dir(abs) {
        Ok(r) => r,
        // A directory dropped while we walk (a dropped database) is normal.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(IoError::new("listing", abs, e).into()),
    };
    let unlogged = if ctx == Ctx::Database {
        unlogged_relations(abs)?
    } else {
        HashSet::new()
    };
    for ent in rd {
        check_interrupt()?;
        let ent = match ent {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(IoError::new("listing", abs, e).into()),
        };
        let name_os = ent.file_name();
        let name = name_os.to_string_lossy();
        if left_out(&name, ctx, rules, &unlogged) {
            continue;
        }
        let rel_c = rel.join(&name_os);
        if rel_c == Path::new(pg::PG_CONTROL) {
            continue;
        }
        let abs_c = ent.path();
        let meta = match std::fs::symlink_metadata(&abs_c) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(IoError::new("examining", &abs_c, e).into()),
        };
        let at = At {
            rel: &rel_c,
            abs: &abs_c,
            name: &name,
        };
        if !walk_special(&at, &meta, ctx, rules, visit)? {
            walk_plain(&at, &meta, ctx, rules, visit)?;
        }
    }
    Ok(())
}

/// Whether an entry named `name` is left out of the backup by its name alone.
fn left_out(name: &str, ctx: Ctx, rules: &Rules, unlogged: &HashSet<String>) -> bool {
    is_excluded_anywhere(name)
        || (ctx == Ctx::Root
            && (EXCLUDED_TOP_FILES.contains(&name) || rules.own_file.as_deref() == Some(name)))
        || (ctx == Ctx::Database && skip_in_database(name, unlogged))
}

/// One directory entry being walked.
struct At<'a> {
    rel: &'a Path,
    abs: &'a Path,
    name: &'a str,
}

/// The metadata of `abs` following a symbolic link, when it is a directory: pg_wal (`initdb
/// -X`) and tablespaces may be links.
fn followed_dir(abs: &Path) -> anyhow::Result<Option<Metadata>> {
    match std::fs::metadata(abs) {
        Ok(m) if m.is_dir() => Ok(Some(m)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(IoError::new("examining", abs, e).into()),
    }
}

/// The entries whose place decides what is kept: pg_wal and the emptied directories at the
/// top, tablespaces. Returns whether the entry was handled here.
fn walk_special(
    at: &At<'_>,
    meta: &Metadata,
    ctx: Ctx,
    rules: &Rules,
    visit: &mut dyn FnMut(&Entry<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<bool> {
    match ctx {
        Ctx::Root if at.name == pg::PG_WAL => {
            if let Some(m) = followed_dir(at.abs)? {
                dir_entry(at.rel, at.abs, &m, visit)?;
                let status_rel = at.rel.join(pg::ARCHIVE_STATUS);
                let status_abs = at.abs.join(pg::ARCHIVE_STATUS);
                let sm = std::fs::metadata(&status_abs).unwrap_or(m);
                dir_entry(&status_rel, &status_abs, &sm, visit)?;
            }
            Ok(true)
        }
        Ctx::Root if EMPTIED_DIRS.contains(&at.name) => {
            if let Some(m) = followed_dir(at.abs)? {
                dir_entry(at.rel, at.abs, &m, visit)?;
            }
            Ok(true)
        }
        Ctx::Tablespaces => {
            match followed_dir(at.abs)? {
                Some(m) => {
                    dir_entry(at.rel, at.abs, &m, visit)?;
                    walk_dir(at.abs, at.rel, Ctx::TablespaceLocation, rules, visit)?;
                }
                None => log_verbose!(
                    "skipping {}: not a tablespace directory or link",
                    at.abs.display()
                ),
            }
            Ok(true)
        }
        Ctx::TablespaceLocation => {
            if meta.is_dir() && at.name.starts_with(&rules.tablespace_prefix) {
                dir_entry(at.rel, at.abs, meta, visit)?;
                walk_dir(at.abs, at.rel, Ctx::TablespaceVersion, rules, visit)?;
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// An ordinary entry: a directory walked into, a file, a symbolic link stored as a link.
fn walk_plain(
    at: &At<'_>,
    meta: &Metadata,
    ctx: Ctx,
    rules: &Rules,
    visit: &mut dyn FnMut(&Entry<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let ft = meta.file_type();
    if ft.is_dir() {
        dir_entry(at.rel, at.abs, meta, visit)?;
        let child = match (ctx, at.name) {
            (Ctx::Root, PG_TBLSPC) => Ctx::Tablespaces,
            (Ctx::Root, "base") => Ctx::Base,
            (Ctx::Base | Ctx::TablespaceVersion, _) => Ctx::Database,
            _ => Ctx::Plain,
        };
        walk_dir(at.abs, at.rel, child, rules, visit)?;
    } else if ft.is_file() {
        visit(&Entry {
            rel: at.rel,
            abs: at.abs,
            kind: Kind::File,
            meta,
        })?;
    } else if ft.is_symlink() {
        let target = match std::fs::read_link(at.abs) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(IoError::new("reading the link", at.abs, e).into()),
        };
        visit(&Entry {
            rel: at.rel,
            abs: at.abs,
            kind: Kind::Symlink(target),
            meta,
        })?;
    }
    // Sockets, FIFOs and devices have no place in a backup.
    Ok(())
}

/// The bytes of a file as archived: exactly `size` bytes, zero-padded when the file shrank.
struct Padded<'p> {
    file: BufReader<File>,
    remaining: u64,
    eof: bool,
    shrunk: bool,
    progress: &'p mut Progress,
}

impl Read for Padded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        if check_interrupt().is_err() {
            return Err(io::Error::other("interrupted by a signal"));
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let mut n = 0;
        if !self.eof {
            n = self.file.read(&mut buf[..want])?;
            if n == 0 {
                self.eof = true;
                self.shrunk = true;
            }
        }
        if self.eof {
            buf[..want].fill(0);
            n = want;
        }
        self.remaining -= n as u64;
        self.progress.add(n as u64);
        Ok(n)
    }
}

/// Builds the data tar and its manifest.
pub struct Copier<'p, W: Write> {
    tar: tar::Builder<W>,
    manifest: ManifestWriter<BufWriter<File>>,
    manifest_path: PathBuf,
    progress: &'p mut Progress,
    delay: Option<Duration>,
    /// The data directory's owner, given to the files made from content (backup_label, ...).
    owner: (u32, u32),
    /// Files archived.
    pub files: u64,
}

fn header(
    kind: tar::EntryType,
    meta: Option<&Metadata>,
    size: u64,
    mtime: SystemTime,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    match meta {
        Some(m) => {
            h.set_mode(m.mode() & 0o7777);
            h.set_uid(u64::from(m.uid()));
            h.set_gid(u64::from(m.gid()));
        }
        None => h.set_mode(if kind == tar::EntryType::Directory {
            0o700
        } else {
            0o600
        }),
    }
    h.set_mtime(u64::try_from(pitr_common::manifest::unix_seconds(mtime)).unwrap_or(0));
    h
}

impl<'p, W: Write> Copier<'p, W> {
    /// Starts a tar on `out` and a manifest in the file `manifest_path`.
    pub fn new(
        out: W,
        manifest_path: &Path,
        owner: &Metadata,
        progress: &'p mut Progress,
        delay: Option<Duration>,
    ) -> anyhow::Result<Self> {
        let f =
            File::create(manifest_path).map_err(|e| IoError::new("creating", manifest_path, e))?;
        let manifest = ManifestWriter::new(BufWriter::new(f))
            .map_err(|e| IoError::new("writing", manifest_path, e))?;
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Complete);
        Ok(Copier {
            tar,
            manifest,
            manifest_path: manifest_path.to_path_buf(),
            progress,
            delay,
            owner: (owner.uid(), owner.gid()),
            files: 0,
        })
    }

    /// The progress counter.
    pub fn progress(&mut self) -> &mut Progress {
        self.progress
    }

    /// Archives one walk entry.
    pub fn add(&mut self, e: &Entry<'_>) -> anyhow::Result<()> {
        match &e.kind {
            Kind::Dir => {
                let mut h = header(
                    tar::EntryType::Directory,
                    Some(e.meta),
                    0,
                    e.meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                );
                self.tar
                    .append_data(&mut h, e.rel, io::empty())
                    .with_context(|| format!("archiving {}", e.abs.display()))?;
            }
            Kind::Symlink(target) => {
                let mut h = header(
                    tar::EntryType::Symlink,
                    Some(e.meta),
                    0,
                    e.meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                );
                self.tar
                    .append_link(&mut h, e.rel, target)
                    .with_context(|| format!("archiving {}", e.abs.display()))?;
            }
            Kind::File => self.file(e.rel, e.abs)?,
        }
        Ok(())
    }

    /// Archives the regular file `abs` as `rel`; a file that is gone is skipped.
    pub fn file(&mut self, rel: &Path, abs: &Path) -> anyhow::Result<()> {
        let file = match File::open(abs) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                log_verbose!("{} vanished during the backup; skipped", abs.display());
                return Ok(());
            }
            Err(e) => return Err(IoError::new("opening", abs, e).into()),
        };
        let meta = file
            .metadata()
            .map_err(|e| IoError::new("examining", abs, e))?;
        let size = meta.len();
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let mut h = header(tar::EntryType::Regular, Some(&meta), size, mtime);
        let mut reader = Sha256Reader::new(Padded {
            // Large reads from the disk, whatever size the tar writer asks for.
            file: BufReader::with_capacity(READ_BUFFER, file),
            remaining: size,
            eof: false,
            shrunk: false,
            progress: &mut *self.progress,
        });
        self.tar
            .append_data(&mut h, rel, &mut reader)
            .map_err(|e| {
                if check_interrupt().is_err() {
                    crate::session::interrupted()
                } else {
                    anyhow::Error::from(IoError::new("archiving", abs, e))
                }
            })?;
        let (padded, digest, n) = reader.finish();
        if padded.shrunk {
            log_verbose!(
                "{} shrank during the backup; padded to {size} bytes (WAL replay repairs it)",
                abs.display()
            );
        }
        self.manifest
            .add_file(rel, n, mtime, &digest)
            .map_err(|e| IoError::new("writing", &self.manifest_path, e))?;
        self.files += 1;
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        check_interrupt()
    }

    /// Archives `bytes` as the file `rel` (backup_label, tablespace_map), with a manifest entry.
    pub fn content(&mut self, rel: &Path, bytes: &[u8]) -> anyhow::Result<()> {
        let now = SystemTime::now();
        let mut h = header(tar::EntryType::Regular, None, bytes.len() as u64, now);
        h.set_uid(u64::from(self.owner.0));
        h.set_gid(u64::from(self.owner.1));
        self.tar
            .append_data(&mut h, rel, bytes)
            .with_context(|| format!("archiving {}", rel.display()))?;
        self.manifest
            .add_file(
                rel,
                bytes.len() as u64,
                now,
                &pitr_common::checksum::Digest::of(bytes),
            )
            .map_err(|e| IoError::new("writing", &self.manifest_path, e))?;
        self.files += 1;
        Ok(())
    }

    /// Ends the manifest with its WAL ranges, archives it as `backup_manifest` and ends the
    /// tar; returns the output writer.
    pub fn finish(self, ranges: &[pitr_common::manifest::WalRange]) -> anyhow::Result<W> {
        let Copier {
            mut tar,
            manifest,
            manifest_path,
            owner,
            ..
        } = self;
        let io_err = |e| IoError::new("writing", &manifest_path, e);
        let mut buf = manifest.finish(ranges).map_err(io_err)?;
        buf.flush().map_err(io_err)?;
        drop(buf);
        let f =
            File::open(&manifest_path).map_err(|e| IoError::new("opening", &manifest_path, e))?;
        let size = f
            .metadata()
            .map_err(|e| IoError::new("examining", &manifest_path, e))?
            .len();
        let mut h = header(tar::EntryType::Regular, None, size, SystemTime::now());
        h.set_uid(u64::from(owner.0));
        h.set_gid(u64::from(owner.1));
        tar.append_data(&mut h, OsStr::new(pg::BACKUP_MANIFEST), f)
            .context("archiving backup_manifest")?;
        tar.into_inner().context("ending the data archive")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn relation_names() {
        assert!(is_temp_relation("t3_16384"));
        assert!(is_temp_relation("t3_16384_fsm"));
        assert!(is_temp_relation("t3_16384.1"));
        assert!(!is_temp_relation("16384"));
        assert!(!is_temp_relation("t3"));
        let unlogged: HashSet<String> = ["16390".to_string()].into();
        assert!(skip_in_database("16390", &unlogged));
        assert!(skip_in_database("16390.1", &unlogged));
        assert!(skip_in_database("16390_fsm", &unlogged));
        assert!(!skip_in_database("16390_init", &unlogged));
        assert!(!skip_in_database("16391", &unlogged));
        assert!(!skip_in_database("PG_VERSION", &unlogged));
    }

    fn walk_names(dir: &Path, rules: &Rules) -> Vec<String> {
        let mut names = Vec::new();
        walk(dir, rules, &mut |e| {
            let suffix = match e.kind {
                Kind::Dir => "/",
                Kind::File => "",
                Kind::Symlink(_) => "@",
            };
            names.push(format!("{}{suffix}", e.rel.display()));
            Ok(())
        })
        .unwrap();
        names.sort();
        names
    }

    #[test]
    fn walk_leaves_out_what_pg_basebackup_leaves_out() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        let ts = d.path().join("ts");
        for dir in [
            "base/1",
            "global",
            "pg_wal/archive_status",
            "pg_replslot/slot",
            "pg_stat_tmp",
            "pg_tblspc",
            "base/1/pgsql_tmp",
        ] {
            std::fs::create_dir_all(data.join(dir)).unwrap();
        }
        std::fs::create_dir_all(ts.join("PG_15_202209061/16384")).unwrap();
        std::fs::create_dir_all(ts.join("PG_14_202107181")).unwrap();
        std::os::unix::fs::symlink(&ts, data.join("pg_tblspc/16400")).unwrap();
        for f in [
            "PG_VERSION",
            "postmaster.pid",
            "postmaster.opts",
            "backup_label",
            "standby.signal",
            "pitr-backup.lock",
            "global/pg_control",
            "global/1260",
            "global/pg_internal.init",
            "pg_wal/000000010000000000000001",
            "pg_wal/.pitr-prefetch",
            "pg_replslot/slot/state",
            "pg_stat_tmp/x",
            "base/1/1259",
            "base/1/16390",
            "base/1/16390_init",
            "base/1/16390_fsm",
            "base/1/t3_16500",
            "base/1/pgsql_tmp/f",
        ] {
            std::fs::write(data.join(f), b"x").unwrap();
        }
        std::fs::write(ts.join("PG_15_202209061/16384/16401"), b"t").unwrap();
        let rules = Rules {
            tablespace_prefix: "PG_15_".into(),
            own_file: Some("pitr-backup.lock".into()),
        };
        assert_eq!(
            walk_names(&data, &rules),
            [
                "PG_VERSION",
                "base/",
                "base/1/",
                "base/1/1259",
                "base/1/16390_init",
                "global/",
                "global/1260",
                "pg_replslot/",
                "pg_stat_tmp/",
                "pg_tblspc/",
                "pg_tblspc/16400/",
                "pg_tblspc/16400/PG_15_202209061/",
                "pg_tblspc/16400/PG_15_202209061/16384/",
                "pg_tblspc/16400/PG_15_202209061/16384/16401",
                "pg_wal/",
                "pg_wal/archive_status/",
            ]
        );
    }
}

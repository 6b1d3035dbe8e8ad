//! Where archives and backup sets live, on the reading side: a local directory, an rsync
//! target or an object store (`s3://BUCKET/PREFIX`). Everything `info` and `verify` need from a
//! location goes through here: listing its files (name, size, mtime), reading its cluster
//! marker, finding its backup sets, and making some of its files readable as local paths.
//!
//! rsync targets are listed ([`Rsync::list`]) and read by fetching files into a private scratch
//! directory ([`Rsync::fetch`], rsync's own temp-and-rename), through `pitr_common::rsync`.
//! Object stores are listed with one LIST of the prefix (objects directly under it; an object's
//! mtime is when it was stored) and read by GETs into the same scratch directory, several at a
//! time.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use pitr_common::backupset::{self, FoundSet};
use pitr_common::compress::{self, Codec, Stored};
use pitr_common::exit::Failure;
use pitr_common::fs::IoError;
use pitr_common::location::{self, Location, Opt, RsyncTarget, Target};
use pitr_common::objstore::{self, S3Url, Settings};
use pitr_common::rsync::Rsync;
use pitr_common::wal::WalFileName;
use pitr_common::{log_warning, walcrc};

/// A location to read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// A local directory.
    Local(PathBuf),
    /// An rsync target (`rsync://host/module/path`, `host::module/path`, `[user@]host:/path`).
    Rsync(RsyncTarget),
    /// An object store.
    S3(S3Url),
}

/// A file in a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its name in the directory.
    pub name: String,
    /// Size in bytes as stored.
    pub size: u64,
    /// Modification time (for WAL, the WAL file's own, which pitr-archive keeps).
    pub mtime: SystemTime,
}

/// An archived WAL file: a listed file whose name is a WAL name, in any stored form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedFile {
    /// The WAL file it holds.
    pub wal: WalFileName,
    /// How it is stored: a codec we read, or one we recognise but cannot decode.
    pub stored: Stored,
    /// The listed file.
    pub file: Listed,
}

impl ArchivedFile {
    /// The codec, when pitr can decode it.
    pub fn codec(&self) -> Option<Codec> {
        match self.stored {
            Stored::Readable(c) => Some(c),
            Stored::Unreadable(_) => None,
        }
    }
}

/// The WAL files among a listing, sorted by WAL name then file name. Temporary files of killed
/// writers (hidden names) and anything else are left out.
pub fn archived_files(listing: Vec<Listed>) -> Vec<ArchivedFile> {
    let mut out: Vec<ArchivedFile> = listing
        .into_iter()
        .filter_map(|file| {
            let (base, stored) = compress::split_stored_name(&file.name);
            let wal = WalFileName::parse(base).ok()?;
            Some(ArchivedFile { wal, stored, file })
        })
        .collect();
    out.sort_by(|a, b| a.wal.cmp(&b.wal).then(a.file.name.cmp(&b.file.name)));
    out
}

/// A backup set found in a location, with what its files look like there.
#[derive(Debug, Clone)]
pub struct SetListing {
    /// The set (meta file and its content; for an rsync target the meta file's path is that of
    /// the fetched copy).
    pub set: FoundSet,
    /// The meta file's name.
    pub meta_name: String,
    /// Size of each of the set's data, WAL and digest files in the location, `None` when
    /// missing: `(name, size)`.
    pub files: Vec<(String, Option<u64>)>,
    /// The digest file's text when it could be read.
    pub digest_text: Option<String>,
}

/// Reading an rsync target needs the rsync program and a scratch directory; an object store,
/// the scratch directory and the store's settings.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The rsync program.
    pub rsync: Rsync,
    /// A private scratch directory for fetched files.
    pub scratch: PathBuf,
    /// The object-store settings, when a location is on one.
    pub s3: Option<Settings>,
}

/// Objects fetched at once from a store.
const STORE_FETCHES: usize = 8;

impl Store {
    /// Parses `[CODEC=]LOCATION` given to the option `opt` (`--archive`, `--backup-dir`); the
    /// codec, if any, is what the location is written with (reading finds every stored form
    /// anyway). A location is a directory, an rsync target or `s3://BUCKET/PREFIX`, by syntax,
    /// as for pitr-restore's `--from-backup`.
    pub fn parse(opt: &str, spec: &str) -> Result<(Store, Codec), String> {
        let loc = Location::parse(Opt::FromBackup, spec).map_err(|e| match e {
            location::Error::Codec { spec, source, .. } => format!("{opt} {spec}: {source}"),
            location::Error::Empty { spec, .. } => format!("{opt} \"{spec}\" names no location"),
            location::Error::WrongKind { spec, .. } => {
                format!("{opt} \"{spec}\" is not a directory, an rsync target or s3://")
            }
            location::Error::S3 { source, .. } => format!("{opt} {source}"),
        })?;
        match loc.target {
            Target::Dir(d) => Ok((Store::Local(d), loc.codec)),
            Target::Rsync(r) => Ok((Store::Rsync(r), loc.codec)),
            Target::Program(p) => Err(format!(
                "{opt} \"{}\" is not a directory, an rsync target or s3://",
                p.display()
            )),
            Target::S3(u) => Ok((Store::S3(u), loc.codec)),
        }
    }

    /// Whether reading it fetches copies into the scratch directory (rsync, object store).
    pub fn is_remote(&self) -> bool {
        !matches!(self, Store::Local(_))
    }

    /// Whether it is an object store.
    pub fn is_s3(&self) -> bool {
        matches!(self, Store::S3(_))
    }

    /// Lists the directory's regular files (hidden ones included: the cluster marker is one).
    pub fn list(&self, remote: Option<&Remote>) -> anyhow::Result<Vec<Listed>> {
        match self {
            Store::Local(dir) => list_local(dir),
            Store::Rsync(target) => {
                let r = need_remote(remote)?;
                let listed = r.rsync.list(target).map_err(|e| {
                    anyhow::Error::from(e).context(
                        Failure::new(format!("cannot list {}", target.as_str()))
                            .hint("check the rsync target and --rsync-path"),
                    )
                })?;
                Ok(listed
                    .into_iter()
                    .map(|l| Listed {
                        name: l.name,
                        size: l.size,
                        mtime: l.mtime,
                    })
                    .collect())
            }
            Store::S3(url) => {
                let store = open_store(url, remote)?;
                let listed = store
                    .list("")
                    .map_err(|e| e.failure(format!("cannot list {url}")))?;
                let mut out: Vec<Listed> = listed
                    .into_iter()
                    .filter(|o| !o.key.contains('/'))
                    .map(|o| Listed {
                        name: o.key,
                        size: o.size,
                        mtime: o.last_modified,
                    })
                    .collect();
                out.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(out)
            }
        }
    }

    /// Makes the files `names` readable as local paths: for a local directory their paths in
    /// it; for an rsync target, copies fetched into the scratch directory in one run (a name
    /// gone from the target since it was listed has no copy: its path does not exist, as for a
    /// file removed from a local directory). Remove the copies with [`Store::release`].
    pub fn fetch(&self, names: &[String], remote: Option<&Remote>) -> anyhow::Result<Vec<PathBuf>> {
        match self {
            Store::Local(dir) => Ok(names.iter().map(|n| dir.join(n)).collect()),
            Store::Rsync(target) => {
                let r = need_remote(remote)?;
                r.rsync.fetch(target, names, &r.scratch).with_context(|| {
                    format!("fetching {} files from {}", names.len(), target.as_str())
                })?;
                Ok(names.iter().map(|n| r.scratch.join(n)).collect())
            }
            Store::S3(url) => {
                let r = need_remote(remote)?;
                let store = open_store(url, remote)?;
                fetch_objects(&store, names, &r.scratch)?;
                Ok(names.iter().map(|n| r.scratch.join(n)).collect())
            }
        }
    }

    /// Removes what [`Store::fetch`] copied (nothing for a local directory).
    pub fn release(&self, paths: &[PathBuf]) {
        if self.is_remote() {
            for p in paths {
                // A copy left behind goes with the scratch directory at the end.
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// The system identifier in the location's cluster marker (`.pitr-cluster`), if it has one.
    pub fn cluster_marker(
        &self,
        listing: &[Listed],
        remote: Option<&Remote>,
    ) -> anyhow::Result<Option<u64>> {
        let name = pitr_common::dest::CLUSTER_MARKER;
        if !listing.iter().any(|l| l.name == name) {
            return Ok(None);
        }
        let paths = self.fetch(&[name.to_string()], remote)?;
        let Some(path) = paths.first() else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| IoError::new("reading", path, e))?;
        self.release(&paths);
        // The marker's format is pitr-archive's (`dest::check_cluster`): one
        // `system_identifier = N` line.
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("system_identifier = "))
            .and_then(|v| v.trim().parse().ok()))
    }

    /// The backup sets of a backup directory, oldest first, with their files' sizes there.
    pub fn backup_sets(&self, remote: Option<&Remote>) -> anyhow::Result<Vec<SetListing>> {
        let listing = self.list(remote)?;
        let (dir, fetched) = match self {
            Store::Local(dir) => (dir.clone(), None),
            Store::Rsync(target) => {
                let r = need_remote(remote)?;
                let dir = r.scratch.join("backup-sets");
                std::fs::create_dir_all(&dir).map_err(|e| IoError::new("creating", &dir, e))?;
                r.rsync
                    .fetch_small_files(target, &dir, backupset::MAX_META_SIZE)
                    .with_context(|| format!("fetching the meta files of {}", target.as_str()))?;
                (dir.clone(), Some(dir))
            }
            Store::S3(url) => {
                let r = need_remote(remote)?;
                let dir = r.scratch.join("backup-sets");
                std::fs::create_dir_all(&dir).map_err(|e| IoError::new("creating", &dir, e))?;
                let small: Vec<String> = listing
                    .iter()
                    .filter(|l| !l.name.starts_with('.') && l.size <= backupset::MAX_META_SIZE)
                    .map(|l| l.name.clone())
                    .collect();
                let store = open_store(url, remote)?;
                fetch_objects(&store, &small, &dir)
                    .with_context(|| format!("fetching the meta files of {url}"))?;
                (dir.clone(), Some(dir))
            }
        };
        let sets = backupset::list_local(&dir)
            .with_context(|| format!("reading the backup sets in {}", self))?;
        let size_of = |name: &str| listing.iter().find(|l| l.name == name).map(|l| l.size);
        let out = sets
            .into_iter()
            .map(|set| {
                let meta_name = set
                    .meta_path
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                let mut names = vec![set.meta.data_file.clone()];
                names.extend(set.meta.xlog_file.clone());
                names.push(set.meta.digest_file.clone());
                let files = names
                    .into_iter()
                    .map(|n| {
                        let s = size_of(&n);
                        (n, s)
                    })
                    .collect();
                let digest_text = std::fs::read_to_string(dir.join(&set.meta.digest_file)).ok();
                SetListing {
                    set,
                    meta_name,
                    files,
                    digest_text,
                }
            })
            .collect();
        if let Some(d) = fetched {
            // The fetched meta files were read; the listing above is what counts.
            let _ = std::fs::remove_dir_all(d);
        }
        Ok(out)
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Local(d) => write!(f, "{}", d.display()),
            Store::Rsync(t) => f.write_str(t.as_str()),
            Store::S3(u) => write!(f, "{u}"),
        }
    }
}

/// A client for the object store at `url`.
fn open_store(url: &S3Url, remote: Option<&Remote>) -> anyhow::Result<objstore::Store> {
    let settings = need_remote(remote)?
        .s3
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("internal error: no object-store settings for {url}"))?;
    objstore::Store::open(url, settings).map_err(|e| e.failure(format!("cannot use {url}")))
}

/// GETs the objects `names` into `dir`, [`STORE_FETCHES`] at a time; an object gone since the
/// listing has no copy (as a file removed from a local directory has no path).
fn fetch_objects(store: &objstore::Store, names: &[String], dir: &Path) -> anyhow::Result<()> {
    for chunk in names.chunks(STORE_FETCHES) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|name| s.spawn(move || fetch_object(store, name, dir)))
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a fetching thread panicked")))
            })
        })?;
    }
    Ok(())
}

fn fetch_object(store: &objstore::Store, name: &str, dir: &Path) -> anyhow::Result<()> {
    let Some((body, crc)) = store
        .get_with_crc(name)
        .map_err(|e| e.failure(format!("cannot read {name} in {}", store.url())))?
    else {
        return Ok(());
    };
    let path = dir.join(name);
    // A scratch copy, read once and removed: not an archive write, so no fsync.
    let mut file = std::fs::File::create(&path).map_err(|e| IoError::new("creating", &path, e))?;
    std::io::Write::write_all(&mut file, &body).map_err(|e| IoError::new("writing", &path, e))?;
    // The CRC-32C pitr-archive recorded with the object goes with the copy as it goes with a
    // plain file in a directory, so that verify checks it as pitr-restore does. A scratch
    // directory without user attributes cannot carry it: that is said, not passed over.
    if let Some(crc) = crc {
        let kept = walcrc::set(&file, crc)
            .map_err(|e| IoError::new("recording the checksum attribute of", &path, e))?;
        // Said once per run, not once per object.
        static SAID: std::sync::Once = std::sync::Once::new();
        if !kept {
            SAID.call_once(|| {
                log_warning!(
                    "{} has no user extended attributes: the CRC-32C recorded with objects is not checked; give --temp-dir on another file system",
                    dir.display()
                );
            });
        }
    }
    Ok(())
}

fn need_remote(remote: Option<&Remote>) -> anyhow::Result<&Remote> {
    remote.ok_or_else(|| {
        anyhow::anyhow!("internal error: an rsync location without a scratch directory")
    })
}

fn list_local(dir: &Path) -> anyhow::Result<Vec<Listed>> {
    let rd = std::fs::read_dir(dir).map_err(|e| {
        anyhow::Error::from(IoError::new("listing", dir, e)).context(
            Failure::new(format!("cannot read {}", dir.display()))
                .hint("give the directory pitr-archive or pitr-backup writes to"),
        )
    })?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| IoError::new("listing", dir, e))?;
        let Ok(meta) = ent.metadata() else {
            // Removed between listing and stat (cleanup ran): not there.
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        out.push(Listed {
            name: ent.file_name().to_string_lossy().into_owned(),
            size: meta.len(),
            mtime: meta.modified().unwrap_or(UNIX_EPOCH),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rsync_store(spec: &str) -> Store {
        match Location::parse(Opt::DstRemote, spec).unwrap().target {
            Target::Rsync(r) => Store::Rsync(r),
            t => panic!("{t} is not an rsync target"),
        }
    }

    #[test]
    fn parses_locations() {
        assert_eq!(
            Store::parse("--archive", "zstd=/srv/wal/").unwrap(),
            (Store::Local("/srv/wal".into()), Codec::Zstd(2))
        );
        assert_eq!(
            Store::parse("--archive", "rsync://h:873/wal_archive/").unwrap(),
            (rsync_store("rsync://h:873/wal_archive"), Codec::None)
        );
        assert_eq!(
            Store::parse("--backup-dir", "gzip=postgres@db2:/var/wal").unwrap(),
            (
                rsync_store("postgres@db2:/var/wal"),
                Codec::Gzip(pitr_common::compress::DEFAULT_GZIP_LEVEL)
            )
        );
        assert_eq!(
            Store::parse("--archive", "lz5=/x").unwrap_err(),
            "--archive lz5=/x: unknown codec \"lz5\""
        );
        assert_eq!(
            Store::parse("--backup-dir", "zstd=").unwrap_err(),
            "--backup-dir \"zstd=\" names no location"
        );
    }

    #[test]
    fn archived_files_are_wal_names_in_any_form() {
        let f = |name: &str| Listed {
            name: name.into(),
            size: 1,
            mtime: UNIX_EPOCH,
        };
        let files = archived_files(vec![
            f("000000010000000000000002.zst"),
            f("000000010000000000000002"),
            f(".000000010000000000000003.zst.pitr-tmp.12"),
            f("00000002.history.gz"),
            f("000000010000000000000001.bz2"),
            f(".pitr-cluster"),
        ]);
        let names: Vec<&str> = files.iter().map(|a| a.file.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "000000010000000000000001.bz2",
                "000000010000000000000002",
                "000000010000000000000002.zst",
                "00000002.history.gz"
            ]
        );
        assert_eq!(files[0].codec(), None);
        assert_eq!(files[2].codec(), Some(Codec::Zstd(2)));
    }

    #[test]
    fn local_listing_and_marker() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".pitr-cluster"), "system_identifier = 42\n").unwrap();
        std::fs::write(d.path().join("000000010000000000000001"), b"x").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let store = Store::Local(d.path().to_path_buf());
        let l = store.list(None).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(store.cluster_marker(&l, None).unwrap(), Some(42));
        assert_eq!(store.cluster_marker(&l[1..], None).unwrap(), None);
        assert!(Store::Local(d.path().join("nope")).list(None).is_err());
    }
}

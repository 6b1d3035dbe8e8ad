//! Putting one file into a destination, durably and without ever replacing different content.
//!
//! Local directories get the durable write of [`crate::fs::write_durable`] with no-clobber
//! linking; rsync targets get rsync's own temp-and-rename with `--ignore-existing`, `-t` (the
//! archived file keeps the WAL file's mtime, which `--recovery-delay` relies on) and `--fsync`;
//! pipe programs get the bytes on stdin. When the name already exists, the archived copy is
//! decompressed and compared with what we were asked to store: identical is success (reported
//! as such, so the caller can warn), different is an error and the archived copy is untouched.
//!
//! Each archive directory also holds a marker, [`CLUSTER_MARKER`], naming the database system
//! whose WAL it holds; WAL of another system is refused.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;

use crate::compress::{self, Codec};
use crate::exit::Failure;
use crate::fs::{self, Replace};
use crate::location::{Kind, Location};
use crate::process::Program;

/// Name of the marker file recording which database system an archive directory belongs to.
pub const CLUSTER_MARKER: &str = ".pitr-cluster";

/// What a successful put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The file was stored.
    Stored,
    /// The same content was already there under that name; nothing was written.
    AlreadyIdentical,
}

/// Settings shared by every put of one run.
#[derive(Debug, Clone)]
pub struct PutOptions {
    /// The rsync program.
    pub rsync_path: PathBuf,
    /// A private scratch directory (created by the caller) for files handed to rsync.
    pub scratch_dir: PathBuf,
    /// Test hook: sleep this long after each MiB written to a local temp file.
    pub write_delay: Option<std::time::Duration>,
}

/// One file to put: its name without codec extension, its plain content and a way to get the
/// same content compressed with the destination's codec. The compressed bytes are asked for
/// only when they are about to be written, so a destination that already holds the file costs
/// no compression.
#[derive(Clone, Copy)]
pub struct Payload<'a> {
    /// WAL file name (no extension).
    pub wal_name: &'a str,
    /// Uncompressed bytes, for comparison with an existing copy.
    pub plain: &'a [u8],
    /// Bytes to store (compressed with the location's codec), computed on demand.
    pub stored: &'a (dyn Fn() -> anyhow::Result<&'a [u8]> + Sync),
    /// The source's modification time, given to the archived file.
    pub mtime: Option<SystemTime>,
}

impl std::fmt::Debug for Payload<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("wal_name", &self.wal_name)
            .field("plain_len", &self.plain.len())
            .field("mtime", &self.mtime)
            .finish()
    }
}

fn different_content(loc: &Location, p: &Payload<'_>) -> anyhow::Error {
    Failure::new(format!(
        "{} is already archived in {} with different content; the archived file was left untouched",
        p.wal_name, loc
    ))
    .hint(
        "two servers may be archiving into one archive (split brain after a failover?), \
         or the archived copy is damaged: find out which copy is right before removing either",
    )
    .into()
}

fn same_content(codec: Codec, existing: &[u8], plain: &[u8]) -> bool {
    match codec {
        Codec::None => existing == plain,
        _ => codec
            .decompress(existing, plain.len())
            .map(|d| d == plain)
            .unwrap_or(false),
    }
}

/// Puts `p` into `loc`.
pub fn put(loc: &Location, p: &Payload<'_>, opts: &PutOptions) -> anyhow::Result<PutOutcome> {
    match loc.kind {
        Kind::Local => put_local(loc, p, opts),
        Kind::Remote => put_remote(loc, p, opts),
        Kind::Pipe => put_pipe(loc, p),
    }
}

/// Checks that `dir` is an existing directory, with a hint when it is not.
pub fn check_local_dir(loc: &Location, dir: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(
            Failure::new(format!("destination {loc} is not a directory"))
                .hint("give a directory")
                .into(),
        ),
        Err(e) => Err(
            anyhow::Error::from(fs::IoError::new("examining", dir, e)).context(
                Failure::new(format!("destination {loc} is not usable")).hint(
                    "create the directory, owned by the user PostgreSQL runs as, or fix the path",
                ),
            ),
        ),
    }
}

fn put_local(loc: &Location, p: &Payload<'_>, opts: &PutOptions) -> anyhow::Result<PutOutcome> {
    let dir = PathBuf::from(&loc.target);
    check_local_dir(loc, &dir)?;
    let path = dir.join(loc.file_name(p.wal_name));
    if let Some(outcome) = compare_local(loc, &path, p)? {
        return Ok(outcome);
    }
    let delay = opts.write_delay;
    let stored = (p.stored)()?;
    let res = fs::write_durable(&path, Replace::Never, p.mtime, |f| {
        match delay {
            None => fs::write_all(f, &path, stored)?,
            Some(d) => {
                for chunk in stored.chunks(1 << 20) {
                    fs::write_all(f, &path, chunk)?;
                    std::thread::sleep(d);
                }
            }
        }
        Ok(())
    });
    match res {
        Ok(()) => Ok(PutOutcome::Stored),
        // Someone stored the same name between our check and our link: compare again.
        Err(e) if fs::is_already_exists(&e) => match compare_local(loc, &path, p)? {
            Some(o) => Ok(o),
            None => Err(e),
        },
        Err(e) => Err(e.context(format!("storing {} in {loc}", p.wal_name))),
    }
}

/// Compares an existing archived copy with the payload: `None` when there is none.
fn compare_local(
    loc: &Location,
    path: &Path,
    p: &Payload<'_>,
) -> anyhow::Result<Option<PutOutcome>> {
    let existing = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fs::IoError::new("reading", path, e).into()),
    };
    if !same_content(loc.codec, &existing, p.plain) {
        return Err(different_content(loc, p));
    }
    // The copy may be from a run that crashed before its fsync: make it durable now.
    let f = fs::open(path)?;
    f.sync_all()
        .map_err(|e| fs::IoError::new("fsyncing", path, e))?;
    if let Some(parent) = path.parent() {
        fs::fsync_dir(parent)?;
    }
    Ok(Some(PutOutcome::AlreadyIdentical))
}

fn rsync(opts: &PutOptions) -> Program {
    let mut c = Program::new(&opts.rsync_path);
    c.env("LC_ALL", "C");
    c
}

/// Runs rsync with `--fsync`, falling back to a run without it for an rsync that lacks it.
fn run_rsync_upload(
    opts: &PutOptions,
    extra: &[&str],
    src: &Path,
    dst: &str,
) -> anyhow::Result<std::process::Output> {
    let attempt = |fsync: bool| {
        let mut c = rsync(opts);
        c.arg("-t").arg("--ignore-existing").arg("-i");
        if fsync {
            c.arg("--fsync");
        }
        c.args(extra).arg(src).arg(dst);
        c.run()
    };
    match attempt(true) {
        Ok(o) => Ok(o),
        Err(e) if e.to_string().contains("--fsync") => {
            crate::log_warning!(
                "{} has no --fsync; the remote copy is not fsynced",
                opts.rsync_path.display()
            );
            Ok(attempt(false)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Fetches a remote file into `local`; `Ok(false)` when it does not exist.
fn fetch_remote(opts: &PutOptions, remote: &str, local: &Path) -> anyhow::Result<bool> {
    let mut c = rsync(opts);
    c.arg("-q").arg(remote).arg(local);
    match c.run() {
        Ok(_) => Ok(true),
        // rsync exits 23 ("partial transfer") when the source file does not exist.
        Err(e) if e.code() == Some(23) && e.to_string().contains("No such file") => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Copies files of the remote directory `remote_dir` (an rsync path) into the local directory
/// `local` with `rsync -t`: the top-level files of at most `max_size` bytes when `names` is
/// `None` (subdirectories are skipped), else exactly the files `names` (every one must exist).
/// rsync writes each under a temporary name and renames it.
pub fn fetch_from_remote_dir(
    rsync_path: &Path,
    remote_dir: &str,
    local: &Path,
    max_size: u64,
    names: Option<&[String]>,
) -> anyhow::Result<()> {
    let mut c = Program::new(rsync_path);
    c.env("LC_ALL", "C").arg("-t").arg("-q");
    let src = if remote_dir.ends_with('/') {
        remote_dir.to_string()
    } else {
        format!("{remote_dir}/")
    };
    match names {
        None => {
            c.arg("-d")
                .arg("--exclude=*/")
                .arg(format!("--max-size={max_size}"));
        }
        Some(list) => {
            let list_file = local.join(".pitr-fetch-list");
            std::fs::write(&list_file, list.join("\n") + "\n")
                .map_err(|e| fs::IoError::new("writing", &list_file, e))?;
            c.arg(format!("--files-from={}", list_file.display()));
        }
    }
    c.arg(&src).arg(local);
    c.run()?;
    if names.is_some() {
        fs::remove_file_if_exists(&local.join(".pitr-fetch-list"))?;
    }
    Ok(())
}

/// Whether `remote` (an rsync path) exists, asked with `rsync --list-only`.
pub fn remote_exists(opts: &PutOptions, remote: &str) -> anyhow::Result<bool> {
    let mut c = rsync(opts);
    c.arg("--list-only").arg(remote);
    match c.run() {
        Ok(_) => Ok(true),
        // rsync exits 23 ("partial transfer") when the source file does not exist.
        Err(e) if e.code() == Some(23) && e.to_string().contains("No such file") => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Uploads the local file `local` to `remote` with rsync's temp-and-rename, `--fsync` where
/// rsync has it and `--ignore-existing`: `Ok(false)` when rsync did not transfer it because the
/// name already exists there (the existing file is untouched).
pub fn upload_new(opts: &PutOptions, local: &Path, remote: &str) -> anyhow::Result<bool> {
    let out = run_rsync_upload(opts, &[], local, remote)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("<f") || l.starts_with(">f")))
}

fn put_remote(loc: &Location, p: &Payload<'_>, opts: &PutOptions) -> anyhow::Result<PutOutcome> {
    let file_name = loc.file_name(p.wal_name);
    let local = opts.scratch_dir.join(&file_name);
    // The scratch copy exists only to give rsync a file with the right name and mtime.
    {
        let mut f =
            std::fs::File::create(&local).map_err(|e| fs::IoError::new("creating", &local, e))?;
        fs::write_all(&mut f, &local, (p.stored)()?)?;
        if let Some(t) = p.mtime {
            fs::set_mtime(&f, &local, t)?;
        }
    }
    let remote = loc.remote_path(&file_name);
    let result = (|| {
        let out = run_rsync_upload(opts, &[], &local, &remote)
            .with_context(|| format!("sending {} to {loc}", p.wal_name))?;
        let transferred = String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("<f") || l.starts_with(">f"));
        if transferred {
            return Ok(PutOutcome::Stored);
        }
        // rsync skipped it: the name exists there. Compare contents.
        let fetched = opts.scratch_dir.join(format!("{file_name}.existing"));
        if !fetch_remote(opts, &remote, &fetched)? {
            anyhow::bail!("rsync neither sent {file_name} to {loc} nor found it there");
        }
        let existing = fs::read(&fetched)?;
        let _ = std::fs::remove_file(&fetched);
        if same_content(loc.codec, &existing, p.plain) {
            Ok(PutOutcome::AlreadyIdentical)
        } else {
            Err(different_content(loc, p))
        }
    })();
    let _ = std::fs::remove_file(&local);
    result
}

fn put_pipe(loc: &Location, p: &Payload<'_>) -> anyhow::Result<PutOutcome> {
    let file_name = loc.file_name(p.wal_name);
    Program::new(&loc.target)
        .arg(&file_name)
        .run_with_stdin((p.stored)()?)
        .with_context(|| format!("sending {} to {loc}", p.wal_name))?;
    Ok(PutOutcome::Stored)
}

fn marker_text(sysid: u64) -> String {
    format!("system_identifier = {sysid}\n")
}

fn parse_marker(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("system_identifier = "))
        .and_then(|v| v.trim().parse().ok())
}

fn foreign(loc: &Location, wal_name: &str, ours: u64, theirs: u64) -> anyhow::Error {
    Failure::new(format!(
        "{wal_name} is from database system {ours} but {loc} holds WAL of database system {theirs}"
    ))
    .hint("each cluster needs an archive of its own: point archive_command at another destination")
    .into()
}

/// Makes sure the archive `loc` belongs to database system `sysid`: records it on first use,
/// refuses WAL of another system afterwards. Pipe destinations have no marker.
pub fn check_cluster(
    loc: &Location,
    wal_name: &str,
    sysid: u64,
    opts: &PutOptions,
) -> anyhow::Result<()> {
    match loc.kind {
        Kind::Pipe => Ok(()),
        Kind::Local => {
            let dir = PathBuf::from(&loc.target);
            check_local_dir(loc, &dir)?;
            let path = dir.join(CLUSTER_MARKER);
            loop {
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        let theirs = parse_marker(&text).ok_or_else(|| {
                            Failure::new(format!("{} is not a pitr cluster marker", path.display()))
                                .hint("remove it if this directory is meant to be a new archive")
                        })?;
                        return if theirs == sysid {
                            Ok(())
                        } else {
                            Err(foreign(loc, wal_name, sysid, theirs))
                        };
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let text = marker_text(sysid);
                        match fs::write_durable(&path, Replace::Never, None, |f| {
                            Ok(fs::write_all(f, &path, text.as_bytes())?)
                        }) {
                            Ok(()) => return Ok(()),
                            Err(e) if fs::is_already_exists(&e) => continue,
                            Err(e) => {
                                return Err(e.context(format!("recording the cluster of {loc}")))
                            }
                        }
                    }
                    Err(e) => return Err(fs::IoError::new("reading", &path, e).into()),
                }
            }
        }
        Kind::Remote => {
            let remote = loc.remote_path(CLUSTER_MARKER);
            let local = opts.scratch_dir.join(CLUSTER_MARKER);
            if !fetch_remote(opts, &remote, &local)
                .with_context(|| format!("reading the cluster marker of {loc}"))?
            {
                std::fs::write(&local, marker_text(sysid))
                    .map_err(|e| fs::IoError::new("writing", &local, e))?;
                run_rsync_upload(opts, &[], &local, &remote)
                    .with_context(|| format!("recording the cluster of {loc}"))?;
                // Read it back: another writer may have won the race.
                fetch_remote(opts, &remote, &local)?;
            }
            let text = fs::read(&local)?;
            let _ = std::fs::remove_file(&local);
            let theirs = parse_marker(&String::from_utf8_lossy(&text))
                .ok_or_else(|| Failure::new(format!("{remote} is not a pitr cluster marker")))?;
            if theirs == sysid {
                Ok(())
            } else {
                Err(foreign(loc, wal_name, sysid, theirs))
            }
        }
    }
}

/// Reads a stored file's codec from its name, for readers.
pub fn stored_codec(name: &str) -> compress::Stored {
    compress::split_stored_name(name).1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> PutOptions {
        PutOptions {
            rsync_path: "rsync".into(),
            scratch_dir: dir.to_path_buf(),
            write_delay: None,
        }
    }

    #[test]
    fn local_put_is_idempotent_and_refuses_different_content() {
        let d = tempfile::tempdir().unwrap();
        let loc = Location::parse(Kind::Local, &format!("zstd={}", d.path().display())).unwrap();
        let plain = vec![5u8; 100_000];
        let stored = loc.codec.compress(&plain).unwrap();
        let get = || -> anyhow::Result<&[u8]> { Ok(&stored) };
        let p = Payload {
            wal_name: "000000010000000000000001",
            plain: &plain,
            stored: &get,
            mtime: None,
        };
        let o = opts(d.path());
        assert_eq!(put(&loc, &p, &o).unwrap(), PutOutcome::Stored);
        assert_eq!(put(&loc, &p, &o).unwrap(), PutOutcome::AlreadyIdentical);
        // Same content compressed at another level is still the same content.
        let other_level = Codec::Zstd(19).compress(&plain).unwrap();
        let get2 = || -> anyhow::Result<&[u8]> { Ok(&other_level) };
        let p2 = Payload { stored: &get2, ..p };
        assert_eq!(put(&loc, &p2, &o).unwrap(), PutOutcome::AlreadyIdentical);
        let plain3 = vec![6u8; 100_000];
        let stored3 = loc.codec.compress(&plain3).unwrap();
        let get3 = || -> anyhow::Result<&[u8]> { Ok(&stored3) };
        let p3 = Payload {
            plain: &plain3,
            stored: &get3,
            ..p
        };
        let err = put(&loc, &p3, &o).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "000000010000000000000001 is already archived in zstd:3={} with different content; the archived file was left untouched",
                d.path().display()
            )
        );
        let on_disk = std::fs::read(d.path().join("000000010000000000000001.zst")).unwrap();
        assert_eq!(on_disk, stored);
    }

    #[test]
    fn marker_refuses_another_cluster() {
        let d = tempfile::tempdir().unwrap();
        let loc = Location::parse(Kind::Local, &d.path().display().to_string()).unwrap();
        let o = opts(d.path());
        check_cluster(&loc, "000000010000000000000001", 11, &o).unwrap();
        check_cluster(&loc, "000000010000000000000002", 11, &o).unwrap();
        let err = check_cluster(&loc, "000000010000000000000003", 22, &o).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "000000010000000000000003 is from database system 22 but {} holds WAL of database system 11",
                d.path().display()
            )
        );
    }

    #[test]
    fn missing_local_dir_is_named() {
        let loc = Location::parse(Kind::Local, "/nonexistent/pitr/archive").unwrap();
        let err = check_local_dir(&loc, Path::new("/nonexistent/pitr/archive")).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "destination /nonexistent/pitr/archive is not usable: examining /nonexistent/pitr/archive: No such file or directory (os error 2)"
        );
    }
}

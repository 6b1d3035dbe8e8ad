//! Delivering one WAL file to one destination: the archive's cluster marker checked, an existing
//! copy compared, the file written durably, never replacing different content.
//!
//! One name, every form: `SEG`, `SEG.gz` and `SEG.zst` are one WAL name in an archive (SPEC,
//! "Integrity, every stored form"). Before storing, every stored form of the name is looked for;
//! an existing copy is decompressed and compared with what we were asked to store (content, not
//! compressed bytes: a copy written at another level or with another codec is the same file).
//! Identical is success, reported as such so that the caller can warn; different is an error and
//! the archived copy is untouched; a form pitr cannot decode (`.bz2` …) cannot be compared and
//! is refused too.
//!
//! - A local directory: the check and the no-clobber `link(2)` of [`fs::DurableFile`] happen
//!   under a lock on the directory itself (`flock` of the directory; no lock file), so two
//!   writers of one name in different forms cannot both succeed.
//! - An rsync target ([`crate::rsync`]): one run fetches the cluster marker and every stored form
//!   of the name, one run uploads with `--ignore-existing`; [`deliver_batch`] does the same for
//!   several names in the same two runs (archive-ahead). (Two writers of different forms at
//!   the same instant cannot be told apart there: rsync has no lock; the archive's cluster
//!   marker and `--ignore-existing` still keep other clusters out and a name from being
//!   replaced.)
//! - A pipe program gets the bytes on stdin and its exit status is the answer.
//! - An object store: [`crate::objarchive::put`] (a LIST for every form, a create that tells a
//!   lost race, a second LIST).
//!
//! Each archive holds a marker, [`CLUSTER_MARKER`], naming the database system whose WAL it
//! holds; WAL of another system is refused.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;

use crate::compress::{self, Codec, Stored};
use crate::exit::Failure;
use crate::fs::{self, Replace};
use crate::location::{Location, RsyncTarget, Target};
use crate::process::Program;
use crate::rsync::Rsync;

/// Name of the marker file recording which database system an archive belongs to.
pub const CLUSTER_MARKER: &str = ".pitr-cluster";

/// What a successful delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The file was stored.
    Stored,
    /// The same content was already there under that name (in some stored form); nothing was
    /// written.
    AlreadyIdentical,
}

/// Settings shared by every delivery of one run.
#[derive(Debug, Clone)]
pub struct PutOptions {
    /// The rsync program.
    pub rsync: Rsync,
    /// A private scratch directory (created by the caller) for files handed to rsync.
    pub scratch_dir: PathBuf,
    /// Where the files to upload are staged, shared by the rsync destinations of one run (one
    /// copy per codec); `None` stages them under `scratch_dir` for this delivery alone.
    pub shared_stage: Option<std::sync::Arc<SharedStage>>,
    /// Test hook: sleep this long after each MiB written to a local temp file.
    pub write_delay: Option<std::time::Duration>,
    /// How to reach object stores (`None` when no destination is one).
    pub s3: Option<crate::objstore::Settings>,
    /// Object-store clients kept across the deliveries of one process.
    pub stores: crate::objarchive::Stores,
}

/// A file's bytes to store, as [`Payload::stored`] gives them: borrowed, or shared with the
/// buffer that holds them, so that an object-store request body takes them without a copy (a
/// batch on the wire would otherwise hold each file twice while it is sent).
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    /// Bytes the caller holds (a mapped WAL file stored uncompressed, a test's buffer).
    Borrowed(&'a [u8]),
    /// Bytes a request body may share.
    Shared(&'a bytes::Bytes),
}

impl std::ops::Deref for Body<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Body::Borrowed(b) => b,
            Body::Shared(b) => b,
        }
    }
}

impl<'a> From<&'a [u8]> for Body<'a> {
    fn from(b: &'a [u8]) -> Self {
        Body::Borrowed(b)
    }
}

impl Body<'_> {
    /// The bytes for a request body: shared, or copied when borrowed.
    pub fn to_bytes(self) -> bytes::Bytes {
        match self {
            Body::Borrowed(b) => bytes::Bytes::copy_from_slice(b),
            Body::Shared(b) => b.clone(),
        }
    }
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
    /// Bytes to store (compressed with the location's codec), computed on demand, once: a
    /// second call returns what the first computed (a batch compresses ahead on another thread).
    pub stored: &'a (dyn Fn() -> anyhow::Result<Body<'a>> + Sync),
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

fn different_content(loc: &Location, wal_name: &str, existing: &str) -> anyhow::Error {
    // The stored form is named when it is not this destination's own.
    let form = if existing == loc.file_name(wal_name) {
        String::new()
    } else {
        format!(" (as {existing})")
    };
    Failure::new(format!(
        "{wal_name} is already archived in {loc} with different content{form}; the archived file was left untouched"
    ))
    .hint(
        "two servers may be archiving into one archive (split brain after a failover?), \
         or the archived copy is damaged: find out which copy is right before removing either",
    )
    .into()
}

fn cannot_compare(loc: &Location, wal_name: &str, existing: &str, codec: &str) -> anyhow::Error {
    Failure::new(format!(
        "{wal_name} is already archived in {loc} as {existing}, compressed with {codec}, which pitr cannot compare"
    ))
    .hint("decompress it by hand and compare it with the WAL file; remove it only if it is identical")
    .into()
}

/// Compares an existing archived copy `existing` (stored as `stored`, file name `shown`) with
/// the payload: identical is `Ok`, anything else is the error to report.
pub(crate) fn compare(
    loc: &Location,
    p: &Payload<'_>,
    shown: &str,
    stored: Stored,
    existing: &[u8],
) -> anyhow::Result<PutOutcome> {
    let codec = match stored {
        Stored::Readable(c) => c,
        Stored::Unreadable(name) => return Err(cannot_compare(loc, p.wal_name, shown, name)),
    };
    let same = match codec {
        Codec::None => existing == p.plain,
        c => c
            .decompress(existing, p.plain.len())
            .is_ok_and(|d| d == p.plain),
    };
    if same {
        Ok(PutOutcome::AlreadyIdentical)
    } else {
        Err(different_content(loc, p.wal_name, shown))
    }
}

/// Delivers `p` to `loc`: checks (and on first use records) the archive's cluster marker
/// against `sysid` when known, then stores the file unless some stored form of its name is
/// already there.
pub fn deliver(
    loc: &Location,
    p: &Payload<'_>,
    sysid: Option<u64>,
    opts: &PutOptions,
) -> anyhow::Result<PutOutcome> {
    match &loc.target {
        Target::Dir(dir) => {
            check_local_dir(loc, dir)?;
            if let Some(id) = sysid {
                check_local_marker(loc, dir, p.wal_name, id)?;
            }
            put_local(loc, dir, p, opts)
        }
        Target::Rsync(remote) => put_rsync(loc, remote, std::slice::from_ref(p), sysid, opts)
            .pop()
            .unwrap_or_else(|| Err(anyhow::anyhow!("no outcome for {}", p.wal_name))),
        Target::Program(program) => put_pipe(loc, program, p),
        Target::S3(url) => {
            let settings = opts
                .s3
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no object-store settings for {loc}"))?;
            crate::objarchive::put(loc, url, p, sysid, settings, &opts.stores)
        }
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

/// The copies of a WAL name already in a local directory, in every stored form there.
fn existing_local(dir: &Path, wal_name: &str) -> anyhow::Result<Vec<(String, Stored)>> {
    let mut found = Vec::new();
    for (name, stored) in compress::stored_names(wal_name, Codec::None) {
        match std::fs::symlink_metadata(dir.join(&name)) {
            Ok(_) => found.push((name, stored)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fs::IoError::new("examining", dir.join(&name), e).into()),
        }
    }
    Ok(found)
}

fn put_local(
    loc: &Location,
    dir: &Path,
    p: &Payload<'_>,
    opts: &PutOptions,
) -> anyhow::Result<PutOutcome> {
    // Compared before anything is compressed or written: a retry of a delivered file is cheap.
    if let Some(o) = compare_local(loc, dir, p)? {
        return Ok(o);
    }
    let path = dir.join(loc.file_name(p.wal_name));
    let mut file = fs::DurableFile::create(&path, Replace::Never)
        .with_context(|| format!("storing {} in {loc}", p.wal_name))?;
    let stored = (p.stored)()?;
    match opts.write_delay {
        None => file.write_bytes(&stored)?,
        Some(d) => {
            for chunk in stored.chunks(1 << 20) {
                file.write_bytes(chunk)?;
                std::thread::sleep(d);
            }
        }
    }
    // A plain copy carries its CRC-32C with it (see walcrc), for every byte, boundary records
    // included.
    if loc.codec == Codec::None {
        crate::walcrc::set(file.file(), crate::walcrc::of(&stored)).map_err(|e| {
            fs::IoError::new("setting the checksum attribute of", file.temp_path(), e)
        })?;
    }
    // Under the names lock: no other form of this name appears between our look and our link.
    let _names = crate::lock::lock_dir(dir)?;
    if let Some(o) = compare_local(loc, dir, p)? {
        return Ok(o);
    }
    file.commit(p.mtime)
        .with_context(|| format!("storing {} in {loc}", p.wal_name))?;
    Ok(PutOutcome::Stored)
}

/// Compares the existing archived copies, in every stored form there, with the payload: `None`
/// when there is none. Every form counts, not the first found: a reader may take any of them
/// (restore prefers its own codec's), so one that differs is different content.
fn compare_local(
    loc: &Location,
    dir: &Path,
    p: &Payload<'_>,
) -> anyhow::Result<Option<PutOutcome>> {
    let found = existing_local(dir, p.wal_name)?;
    if found.is_empty() {
        return Ok(None);
    }
    for (name, stored) in found {
        let path = dir.join(&name);
        let existing = fs::read(&path)?;
        compare(loc, p, &name, stored, &existing)?;
        // The copy may be from a run that crashed before its fsync: make it durable now.
        let f = fs::open(&path)?;
        f.sync_all()
            .map_err(|e| fs::IoError::new("fsyncing", &path, e))?;
    }
    fs::fsync_dir(dir)?;
    Ok(Some(PutOutcome::AlreadyIdentical))
}

/// The scratch copy handed to rsync: the stored bytes under the archived name, with the WAL
/// file's mtime, in `dir`.
fn stage(dir: &Path, name: &str, bytes: &[u8], mtime: Option<SystemTime>) -> anyhow::Result<()> {
    let local = dir.join(name);
    let mut f =
        std::fs::File::create(&local).map_err(|e| fs::IoError::new("creating", &local, e))?;
    fs::write_all(&mut f, &local, bytes)?;
    if let Some(t) = mtime {
        fs::set_mtime(&f, &local, t)?;
    }
    Ok(())
}

/// The staged copies of one run's uploads, shared by its rsync destinations: each file is
/// written once per codec (`DIR/<codec>-<level>/<name>`) by whichever destination needs it
/// first, and every destination with that codec uploads from there. Two destinations used to
/// stage a copy each: a write of every compressed byte per destination.
#[derive(Debug)]
pub struct SharedStage {
    dir: PathBuf,
    files: std::sync::Mutex<SharedFiles>,
}

/// Each staged file's outcome, written once (the error's text when staging failed).
type SharedFiles =
    std::collections::HashMap<PathBuf, std::sync::Arc<std::sync::OnceLock<Result<(), String>>>>;

impl SharedStage {
    /// Stages under `dir` (made when first needed), private to the run.
    pub fn new(dir: PathBuf) -> SharedStage {
        SharedStage {
            dir,
            files: std::sync::Mutex::new(SharedFiles::new()),
        }
    }

    /// Makes sure `name` is staged with `bytes` (the stored bytes for `codec`) and returns the
    /// directory it is in. The first caller writes it; a caller meanwhile waits for that write
    /// and gets its outcome.
    fn stage(
        &self,
        codec: Codec,
        name: &str,
        bytes: &[u8],
        mtime: Option<SystemTime>,
    ) -> anyhow::Result<PathBuf> {
        let sub = self.dir.join(codec.to_string().replace(':', "-"));
        let cell = {
            let mut files = self
                .files
                .lock()
                .map_err(|_| anyhow::anyhow!("a thread staging files for rsync failed"))?;
            files.entry(sub.join(name)).or_default().clone()
        };
        let outcome = cell.get_or_init(|| {
            std::fs::create_dir_all(&sub)
                .map_err(|e| fs::IoError::new("creating scratch directory", &sub, e).into())
                .and_then(|()| stage(&sub, name, bytes, mtime))
                .map_err(|e: anyhow::Error| format!("{e:#}"))
        });
        match outcome {
            Ok(()) => Ok(sub),
            Err(text) => Err(anyhow::anyhow!("{text}")),
        }
    }
}

/// Delivers several WAL files to `loc`, one outcome each, in order. An rsync target takes them
/// in two runs however many they are (one fetching the cluster marker and every stored form of
/// every name, one uploading those missing there); an object store checks its marker once and
/// sends the files' requests concurrently; local directories and pipes take them one by one.
/// The first payload is the one the caller must deliver: when the whole batch fails, it gets
/// the error itself and the others a copy of its text.
pub fn deliver_batch(
    loc: &Location,
    payloads: &[Payload<'_>],
    sysid: Option<u64>,
    opts: &PutOptions,
) -> Vec<anyhow::Result<PutOutcome>> {
    match &loc.target {
        Target::Rsync(remote) => {
            compressing_meanwhile(payloads, || put_rsync(loc, remote, payloads, sysid, opts))
        }
        Target::S3(url) => match opts.s3.as_ref() {
            Some(settings) => compressing_meanwhile(payloads, || {
                crate::objarchive::put_batch(loc, url, payloads, sysid, settings, &opts.stores)
            }),
            None => batch_failed(
                anyhow::anyhow!("no object-store settings for {loc}"),
                payloads.len(),
            ),
        },
        _ => payloads
            .iter()
            .map(|p| deliver(loc, p, sysid, opts))
            .collect(),
    }
}

/// Runs `deliver` while another thread computes the payloads' stored bytes in order, so that
/// a remote batch's first round trips (rsync's run that fetches the marker and existing forms,
/// an object store's marker check) overlap the compression they would otherwise precede. The
/// bytes are computed once either way ([`Payload::stored`] caches them, errors included); a
/// file found already archived costs its compression for nothing, which only a retry meets.
fn compressing_meanwhile<T>(payloads: &[Payload<'_>], deliver: impl FnOnce() -> T) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            for p in payloads {
                // Errors are cached with the bytes: the delivery meets and reports them.
                let _ = (p.stored)();
            }
        });
        deliver()
    })
}

/// The outcome of every payload when the batch as a whole failed with `e`.
pub(crate) fn batch_failed<T>(e: anyhow::Error, n: usize) -> Vec<anyhow::Result<T>> {
    let text = format!("{e:#}");
    let mut out = vec![Err(e)];
    out.extend((1..n).map(|_| Err(anyhow::anyhow!("{text}"))));
    out
}

fn put_rsync(
    loc: &Location,
    remote: &RsyncTarget,
    payloads: &[Payload<'_>],
    sysid: Option<u64>,
    opts: &PutOptions,
) -> Vec<anyhow::Result<PutOutcome>> {
    let Some(first) = payloads.first() else {
        return Vec::new();
    };
    // One run: the marker and every stored form of every name, whichever exist.
    let forms: Vec<Vec<(String, Stored)>> = payloads
        .iter()
        .map(|p| compress::stored_names(p.wal_name, loc.codec).collect())
        .collect();
    let mut wanted: Vec<String> = forms.iter().flatten().map(|(n, _)| n.clone()).collect();
    wanted.push(CLUSTER_MARKER.to_string());
    let got = match opts
        .rsync
        .fetch(remote, &wanted, &opts.scratch_dir)
        .with_context(|| format!("looking for {} in {loc}", first.wal_name))
    {
        Ok(got) => got,
        Err(e) => return batch_failed(e, payloads.len()),
    };
    if let Some(id) = sysid {
        let fetched = got.contains(CLUSTER_MARKER);
        if let Err(e) = check_rsync_marker(loc, remote, first.wal_name, id, fetched, opts) {
            return batch_failed(e, payloads.len());
        }
    }
    let mut outcomes: Vec<Option<anyhow::Result<PutOutcome>>> =
        payloads.iter().map(|_| None).collect();
    let mut staged: Vec<(usize, String)> = Vec::new();
    // The uploads are staged apart from what is fetched into the scratch directory: in the
    // run's shared copies, else in copies of this delivery's own.
    let own;
    let shared = match &opts.shared_stage {
        Some(s) => s.as_ref(),
        None => {
            own = SharedStage::new(opts.scratch_dir.join("staged"));
            &own
        }
    };
    let mut stage_dir = opts.scratch_dir.clone();
    for (i, p) in payloads.iter().enumerate() {
        // Every stored form there is compared, not the first found (see `compare_local`).
        let present: Vec<&(String, Stored)> =
            forms[i].iter().filter(|(n, _)| got.contains(n)).collect();
        if !present.is_empty() {
            outcomes[i] = Some(present.into_iter().try_fold(
                PutOutcome::AlreadyIdentical,
                |_, (name, stored)| {
                    let existing = fs::read(&opts.scratch_dir.join(name))?;
                    compare(loc, p, name, *stored, &existing)
                },
            ));
            continue;
        }
        let file_name = loc.file_name(p.wal_name);
        match (p.stored)().and_then(|bytes| shared.stage(loc.codec, &file_name, &bytes, p.mtime)) {
            Ok(dir) => {
                stage_dir = dir;
                staged.push((i, file_name));
            }
            Err(e) => outcomes[i] = Some(Err(e)),
        }
    }
    let names: Vec<String> = staged.iter().map(|(_, n)| n.clone()).collect();
    match opts
        .rsync
        .upload_new(&stage_dir, &names, remote)
        .with_context(|| format!("sending {} to {loc}", names.join(", ")))
    {
        Ok(sent) => {
            for (i, file_name) in &staged {
                outcomes[*i] = Some(if sent.contains(file_name) {
                    Ok(PutOutcome::Stored)
                } else {
                    // rsync skipped it: the name appeared there meanwhile. Compare with what
                    // is there now.
                    compare_appeared(loc, remote, &payloads[*i], file_name, opts)
                });
            }
        }
        Err(e) => {
            let text = format!("{e:#}");
            for (i, _) in &staged {
                outcomes[*i] = Some(Err(anyhow::anyhow!("{text}")));
            }
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(anyhow::anyhow!("no outcome for a file of the batch"))))
        .collect()
}

/// The name `file_name` appeared in `remote` while we uploaded it: fetches what is there and
/// compares it with the payload.
fn compare_appeared(
    loc: &Location,
    remote: &RsyncTarget,
    p: &Payload<'_>,
    file_name: &str,
    opts: &PutOptions,
) -> anyhow::Result<PutOutcome> {
    let local = opts.scratch_dir.join(file_name);
    let got = opts
        .rsync
        .fetch(remote, &[file_name.to_string()], &opts.scratch_dir)?;
    if !got.contains(file_name) {
        anyhow::bail!("rsync neither sent {file_name} to {loc} nor found it there");
    }
    let existing = fs::read(&local)?;
    compare(loc, p, file_name, Stored::Readable(loc.codec), &existing)
}

fn put_pipe(loc: &Location, program: &Path, p: &Payload<'_>) -> anyhow::Result<PutOutcome> {
    let file_name = loc.file_name(p.wal_name);
    Program::new(program)
        .arg(&file_name)
        .run_with_stdin(&(p.stored)()?)
        .with_context(|| format!("sending {} to {loc}", p.wal_name))?;
    Ok(PutOutcome::Stored)
}

pub(crate) fn marker_text(sysid: u64) -> String {
    format!("system_identifier = {sysid}\n")
}

pub(crate) fn parse_marker(text: &str) -> Option<u64> {
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

pub(crate) fn check_marker_text(
    loc: &Location,
    shown: &str,
    text: &str,
    wal_name: &str,
    sysid: u64,
) -> anyhow::Result<()> {
    let theirs = parse_marker(text).ok_or_else(|| {
        Failure::new(format!("{shown} is not a pitr cluster marker"))
            .hint("remove it if this directory is meant to be a new archive")
    })?;
    if theirs == sysid {
        Ok(())
    } else {
        Err(foreign(loc, wal_name, sysid, theirs))
    }
}

/// Makes sure the archive directory `dir` belongs to database system `sysid`: records it on
/// first use, refuses WAL of another system afterwards.
fn check_local_marker(
    loc: &Location,
    dir: &Path,
    wal_name: &str,
    sysid: u64,
) -> anyhow::Result<()> {
    let path = dir.join(CLUSTER_MARKER);
    loop {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let shown = path.display().to_string();
                return check_marker_text(loc, &shown, &text, wal_name, sysid);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = marker_text(sysid);
                match fs::write_durable(&path, Replace::Never, None, |f| {
                    Ok(fs::write_all(f, &path, text.as_bytes())?)
                }) {
                    Ok(()) => return Ok(()),
                    Err(e) if fs::is_already_exists(&e) => continue,
                    Err(e) => return Err(e.context(format!("recording the cluster of {loc}"))),
                }
            }
            Err(e) => return Err(fs::IoError::new("reading", &path, e).into()),
        }
    }
}

/// The rsync side of the cluster marker: `fetched` says whether the marker came with the
/// first run (it is then in the scratch directory). On first use the marker is uploaded
/// before any WAL, and read back when another writer won the race.
fn check_rsync_marker(
    loc: &Location,
    remote: &RsyncTarget,
    wal_name: &str,
    sysid: u64,
    fetched: bool,
    opts: &PutOptions,
) -> anyhow::Result<()> {
    let local = opts.scratch_dir.join(CLUSTER_MARKER);
    let marker = [CLUSTER_MARKER.to_string()];
    if !fetched {
        std::fs::write(&local, marker_text(sysid))
            .map_err(|e| fs::IoError::new("writing", &local, e))?;
        let sent = opts
            .rsync
            .upload_new(&opts.scratch_dir, &marker, remote)
            .with_context(|| format!("recording the cluster of {loc}"))?;
        if sent.contains(CLUSTER_MARKER) {
            return Ok(());
        }
        // Another writer recorded its marker first: read it.
        fs::remove_file_if_exists(&local)?;
        opts.rsync
            .fetch(remote, &marker, &opts.scratch_dir)
            .with_context(|| format!("reading the cluster marker of {loc}"))?;
    }
    let text = fs::read(&local)?;
    check_marker_text(
        loc,
        &remote.join(CLUSTER_MARKER),
        &String::from_utf8_lossy(&text),
        wal_name,
        sysid,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn opts(dir: &Path) -> PutOptions {
        PutOptions {
            rsync: Rsync::new("rsync"),
            scratch_dir: dir.to_path_buf(),
            shared_stage: None,
            write_delay: None,
            s3: None,
            stores: Default::default(),
        }
    }

    #[test]
    fn local_put_is_idempotent_and_refuses_different_content() {
        let d = tempfile::tempdir().unwrap();
        let loc = Location::dir(Codec::Zstd(3), d.path());
        let plain = vec![5u8; 100_000];
        let stored = loc.codec.compress(&plain).unwrap();
        let get = || -> anyhow::Result<Body<'_>> { Ok(Body::Borrowed(&stored)) };
        let p = Payload {
            wal_name: "000000010000000000000001",
            plain: &plain,
            stored: &get,
            mtime: None,
        };
        let o = opts(d.path());
        assert_eq!(deliver(&loc, &p, None, &o).unwrap(), PutOutcome::Stored);
        assert_eq!(
            deliver(&loc, &p, None, &o).unwrap(),
            PutOutcome::AlreadyIdentical
        );
        // Same content compressed at another level is still the same content.
        let other_level = Codec::Zstd(19).compress(&plain).unwrap();
        let get2 = || -> anyhow::Result<Body<'_>> { Ok(Body::Borrowed(&other_level)) };
        let p2 = Payload { stored: &get2, ..p };
        assert_eq!(
            deliver(&loc, &p2, None, &o).unwrap(),
            PutOutcome::AlreadyIdentical
        );
        let plain3 = vec![6u8; 100_000];
        let stored3 = loc.codec.compress(&plain3).unwrap();
        let get3 = || -> anyhow::Result<Body<'_>> { Ok(Body::Borrowed(&stored3)) };
        let p3 = Payload {
            plain: &plain3,
            stored: &get3,
            ..p
        };
        let err = deliver(&loc, &p3, None, &o).unwrap_err();
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

    /// Two stored forms of one name, the first looked at identical and another different: a
    /// reader may take either (restore prefers its own codec's), so the call is refused, for
    /// every codec of the destination, and neither copy is touched.
    #[test]
    fn every_stored_form_there_is_compared_not_the_first_found() {
        let d = tempfile::tempdir().unwrap();
        let o = opts(d.path());
        let seg = "000000010000000000000001";
        let ours = vec![5u8; 100_000];
        let theirs = vec![6u8; 100_000];
        std::fs::write(d.path().join(seg), &ours).unwrap();
        let gz = Codec::Gzip(1).compress(&theirs).unwrap();
        std::fs::write(d.path().join(format!("{seg}.gz")), &gz).unwrap();
        for codec in [Codec::None, Codec::Gzip(1), Codec::Zstd(2)] {
            let stored = codec.compress(&ours).unwrap();
            let get = || -> anyhow::Result<Body<'_>> { Ok(Body::Borrowed(&stored)) };
            let p = Payload {
                wal_name: seg,
                plain: &ours,
                stored: &get,
                mtime: None,
            };
            let loc = Location::dir(codec, d.path());
            let err = deliver(&loc, &p, None, &o).unwrap_err();
            let form = if codec == Codec::Gzip(1) {
                String::new()
            } else {
                format!(" (as {seg}.gz)")
            };
            assert_eq!(
                err.to_string(),
                format!(
                    "{seg} is already archived in {loc} with different content{form}; the archived file was left untouched"
                ),
                "{codec}"
            );
        }
        assert_eq!(std::fs::read(d.path().join(seg)).unwrap(), ours);
        assert_eq!(
            std::fs::read(d.path().join(format!("{seg}.gz"))).unwrap(),
            gz
        );
        assert!(!d.path().join(format!("{seg}.zst")).exists());
    }

    /// Defect 2 of the fault campaign: after `SEG.zst`, a different `SEG` was accepted as
    /// `gzip=` or `none=` in the same directory.
    #[test]
    fn r12_2_one_name_across_every_stored_form() {
        let d = tempfile::tempdir().unwrap();
        let o = opts(d.path());
        let seg = "000000010000000000000001";
        let first = vec![5u8; 100_000];
        let z = Codec::Zstd(3).compress(&first).unwrap();
        let getz = || -> anyhow::Result<Body<'_>> { Ok(Body::Borrowed(&z)) };
        let pz = Payload {
            wal_name: seg,
            plain: &first,
            stored: &getz,
            mtime: None,
        };
        deliver(&Location::dir(Codec::Zstd(3), d.path()), &pz, None, &o).unwrap();
        let other = vec![6u8; 100_000];
        for codec in [Codec::None, Codec::Gzip(6)] {
            let stored = codec.compress(&other).unwrap();
            let get = || -> anyhow::Result<Body<'_>> { Ok(Body::Borrowed(&stored)) };
            let p = Payload {
                plain: &other,
                stored: &get,
                ..pz
            };
            let loc = Location::dir(codec, d.path());
            let err = deliver(&loc, &p, None, &o).unwrap_err();
            assert!(
                err.to_string()
                    .contains("with different content (as 000000010000000000000001.zst)"),
                "{codec}: {err}"
            );
            // The same content in another form is the same file: nothing is written.
            let same = codec.compress(&first).unwrap();
            let get_same = || -> anyhow::Result<Body<'_>> { Ok(Body::Borrowed(&same)) };
            let ps = Payload {
                stored: &get_same,
                ..pz
            };
            assert_eq!(
                deliver(&loc, &ps, None, &o).unwrap(),
                PutOutcome::AlreadyIdentical
            );
        }
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        assert_eq!(names, ["000000010000000000000001.zst"]);
        // A form pitr cannot decode cannot be compared: refused.
        let seg2 = "000000010000000000000002";
        std::fs::write(d.path().join(format!("{seg2}.bz2")), b"BZh").unwrap();
        let p = Payload {
            wal_name: seg2,
            ..pz
        };
        let err = deliver(&Location::dir(Codec::Zstd(3), d.path()), &p, None, &o).unwrap_err();
        assert!(
            err.to_string()
                .contains("compressed with bzip2, which pitr cannot compare"),
            "{err}"
        );
    }

    #[test]
    fn marker_refuses_another_cluster() {
        let d = tempfile::tempdir().unwrap();
        let loc = Location::dir(Codec::None, d.path());
        check_local_marker(&loc, d.path(), "000000010000000000000001", 11).unwrap();
        check_local_marker(&loc, d.path(), "000000010000000000000002", 11).unwrap();
        let err = check_local_marker(&loc, d.path(), "000000010000000000000003", 22).unwrap_err();
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
        let loc = Location::dir(Codec::None, "/nonexistent/pitr/archive");
        let err = check_local_dir(&loc, Path::new("/nonexistent/pitr/archive")).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "destination /nonexistent/pitr/archive is not usable: examining /nonexistent/pitr/archive: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn a_shared_stage_writes_each_file_once_per_codec_and_tells_every_caller_its_failure() {
        let d = tempfile::tempdir().unwrap();
        let shared = SharedStage::new(d.path().to_path_buf());
        let name = "000000010000000000000001.zst";
        let dirs: Vec<PathBuf> = std::thread::scope(|s| {
            let calls: Vec<_> = [b"first", b"other"]
                .map(|bytes| {
                    let shared = &shared;
                    s.spawn(move || shared.stage(Codec::Zstd(2), name, bytes, None).unwrap())
                })
                .into_iter()
                .collect();
            calls.into_iter().map(|c| c.join().unwrap()).collect()
        });
        assert_eq!(dirs[0], d.path().join("zstd-2"));
        assert_eq!(dirs[0], dirs[1]);
        // Whoever came first wrote it; the other used that copy.
        let staged = std::fs::read(dirs[0].join(name)).unwrap();
        assert!(staged == b"first" || staged == b"other", "{staged:?}");
        let again = shared.stage(Codec::Zstd(2), name, b"third", None).unwrap();
        assert_eq!(std::fs::read(again.join(name)).unwrap(), staged);
        // Another level of the same codec is another copy.
        let nine = shared.stage(Codec::Zstd(9), name, b"nine", None).unwrap();
        assert_eq!(nine, d.path().join("zstd-9"));
        assert_eq!(std::fs::read(nine.join(name)).unwrap(), b"nine");
        // A copy that cannot be staged fails every destination that needs it, with the reason.
        std::fs::write(d.path().join("gzip-3"), b"a file in the way").unwrap();
        let gz = "000000010000000000000001.gz";
        for _ in 0..2 {
            let err = shared.stage(Codec::Gzip(3), gz, b"x", None).unwrap_err();
            assert_eq!(
                format!("{err:#}"),
                format!(
                    "creating scratch directory {}: File exists (os error 17)",
                    d.path().join("gzip-3").display()
                )
            );
        }
    }
}

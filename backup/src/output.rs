//! The files of a backup set, streamed to every destination at once.
//!
//! Destinations are grouped by codec: each group compresses the stream once (zstd with worker
//! threads) and fans the compressed bytes out to the group's local destinations (each a
//! [`DurableFile`]: hidden temporary name, fsync, no-clobber link, directory fsync), pipe
//! programs (streamed on stdin) and object stores (a multipart upload each: memory stays within
//! the part buffers whatever the size of the database, no local room is needed, and an object
//! appears only when its upload completes). rsync destinations get the finished file
//! afterwards, from a local destination of the same codec when there is one, else from a copy
//! staged in the scratch directory; rsync's own temp-and-rename keeps partial files from final
//! names there. The small digest and meta files reach the stores and rsync afterwards too.
//!
//! Every name of the set is checked free in every destination before anything is written (and
//! an object store gets the set's intent record then), and a failure removes what this run
//! already put under a final name (local, rsync and stores; a pipe program cannot be told,
//! which is why the meta file comes last everywhere).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use pitr_common::backupset::{FileType, IntentAction, SetIntent, SetNames};
use pitr_common::checksum::{Digest, Sha256Writer};
use pitr_common::compress::{Codec, Encoder};
use pitr_common::exit::Failure;
use pitr_common::fs::{self, DurableFile, Replace};
use pitr_common::location::{Location, RsyncTarget, Target};
use pitr_common::objsets;
use pitr_common::objstore::{S3Url, Settings, Store, Upload};
use pitr_common::process::{PipeChild, Program};
use pitr_common::rsync::Rsync;
use pitr_common::{log_info, log_warning};

/// The destinations of one codec, by kind.
#[derive(Debug, Clone)]
struct Group {
    codec: Codec,
    locals: Vec<(Location, PathBuf)>,
    pipes: Vec<(Location, PathBuf)>,
    remotes: Vec<(Location, RsyncTarget)>,
    stores: Vec<(Location, S3Url)>,
}

/// One file of the set as produced for one codec.
#[derive(Debug, Clone)]
pub struct Produced {
    /// Its name.
    pub name: String,
    /// SHA-256 of the stored (compressed) bytes.
    pub digest: Digest,
    /// Size of the stored bytes.
    pub size: u64,
    /// A local copy to send to rsync destinations from.
    source: Option<PathBuf>,
    /// Already stored in the group's object stores (streamed there while it was written).
    in_stores: bool,
}

enum Sink {
    Local(DurableFile, String),
    Pipe(PipeChild, String),
    Stage(File, PathBuf),
    Upload(Box<Upload>, Location),
}

/// The first object-store failure of a stream, kept whole (with its HINT naming the endpoint
/// and bucket) for [`SetWriter::explain`]: the compressor between the stream and the upload
/// hands errors on as plain `io::Error`s.
type StoreFailure = Arc<Mutex<Option<anyhow::Error>>>;

/// The compressed side of one codec group: every sink gets every byte.
struct Fanout {
    sinks: Vec<Sink>,
    name: String,
    failure: StoreFailure,
}

impl Write for Fanout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for sink in &mut self.sinks {
            let (r, what) = match sink {
                Sink::Local(f, what) => (f.write_all(buf), what.to_string()),
                Sink::Pipe(p, what) => (p.write_all(buf), what.to_string()),
                Sink::Stage(f, path) => (f.write_all(buf), path.display().to_string()),
                Sink::Upload(u, loc) => match u.write_all(buf) {
                    Ok(()) => continue,
                    Err(e) => return Err(store_failed(&self.name, &self.failure, e, loc)),
                },
            };
            r.map_err(|e| io::Error::new(e.kind(), format!("writing to {what}: {e}")))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps the store's error of an upload of `name` to `loc` in `failure`, for
/// [`SetWriter::explain`]; returns it as text for the compressor to hand on.
fn store_failed(name: &str, failure: &StoreFailure, e: io::Error, loc: &Location) -> io::Error {
    let doing = format!("sending {name} to {loc}");
    let text = format!("{doing}: {e}");
    let kept = match e
        .into_inner()
        .map(|inner| inner.downcast::<pitr_common::objstore::Error>())
    {
        Some(Ok(store_error)) => store_error.failure(doing),
        Some(Err(other)) => anyhow::anyhow!("{doing}: {other}"),
        None => anyhow::anyhow!("{text}"),
    };
    if let Ok(mut slot) = failure.lock() {
        slot.get_or_insert(kept);
    }
    io::Error::other(text)
}

struct OpenGroup {
    codec: Codec,
    name: String,
    encoder: Encoder<BufWriter<Sha256Writer<Fanout>>>,
}

/// The write size towards the destinations (tar headers alone are 512 bytes).
const WRITE_BUFFER: usize = 1 << 20;

/// One file of the set being written to every destination; write the uncompressed content
/// into it, then hand it to [`SetWriter::commit`]. Dropped uncommitted, it removes its
/// temporary files and kills its pipe programs.
pub struct Stream {
    file_type: FileType,
    groups: Vec<OpenGroup>,
    /// Uncompressed bytes written.
    bytes: u64,
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for g in &mut self.groups {
            g.encoder.write_all(buf)?;
        }
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream {
    /// Uncompressed bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Writes one backup set to every destination.
pub struct SetWriter {
    groups: Vec<Group>,
    names: SetNames,
    scratch: PathBuf,
    rsync: Rsync,
    threads: u32,
    produced: HashMap<(Codec, FileType), Produced>,
    /// Local files written but not yet under their final names: committed together by
    /// [`SetWriter::finish`], once the set is whole.
    pending: Vec<(Codec, FileType, DurableFile, String)>,
    /// Final names this run created locally, removed again on failure.
    created_local: Vec<PathBuf>,
    /// Remote files this run created, removed again on failure.
    created_remote: Vec<(RsyncTarget, String)>,
    /// Objects this run created, removed again on failure.
    created_objects: Vec<(Location, S3Url, String)>,
    /// Intent records this run stored and has not ended, removed on failure after the objects.
    store_intents: Vec<(Location, S3Url, String)>,
    /// The object-store settings, when a destination is on one.
    s3: Option<Settings>,
    /// The first object-store failure of a stream.
    failure: StoreFailure,
    done: bool,
}

impl SetWriter {
    /// Groups `destinations` by codec.
    pub fn new(
        destinations: &[Location],
        names: SetNames,
        scratch: &Path,
        rsync: &Rsync,
        threads: u32,
        s3: Option<&Settings>,
    ) -> SetWriter {
        let mut groups: Vec<Group> = Vec::new();
        for d in destinations {
            let idx = match groups.iter().position(|g| g.codec == d.codec) {
                Some(i) => i,
                None => {
                    groups.push(Group {
                        codec: d.codec,
                        locals: Vec::new(),
                        pipes: Vec::new(),
                        remotes: Vec::new(),
                        stores: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            let g = &mut groups[idx];
            match &d.target {
                Target::Dir(dir) => g.locals.push((d.clone(), dir.clone())),
                Target::Program(p) => g.pipes.push((d.clone(), p.clone())),
                Target::Rsync(r) => g.remotes.push((d.clone(), r.clone())),
                Target::S3(u) => g.stores.push((d.clone(), u.clone())),
            }
        }
        SetWriter {
            groups,
            names,
            scratch: scratch.to_path_buf(),
            rsync: rsync.clone(),
            threads,
            s3: s3.cloned(),
            produced: HashMap::new(),
            pending: Vec::new(),
            created_local: Vec::new(),
            created_remote: Vec::new(),
            created_objects: Vec::new(),
            store_intents: Vec::new(),
            failure: StoreFailure::default(),
            done: false,
        }
    }

    /// The name of `file_type` in destinations with `codec`.
    pub fn name(&self, file_type: FileType, codec: Codec) -> String {
        self.names.name(file_type, codec)
    }

    /// The codecs in use.
    pub fn codecs(&self) -> Vec<Codec> {
        self.groups.iter().map(|g| g.codec).collect()
    }

    /// Checks that no name of the set exists in any destination, then stores the set's intent
    /// record in each object-store destination (before its first object, so that a run killed
    /// mid-upload is undone by the next one).
    pub fn reserve(&mut self, file_types: &[FileType]) -> anyhow::Result<()> {
        self.check_names_free(file_types)?;
        for g in self.groups.clone() {
            for (loc, url) in &g.stores {
                let store = self.store(loc, url)?;
                let meta = self.name(FileType::Meta, g.codec);
                let others: Vec<String> = file_types
                    .iter()
                    .filter(|ft| **ft != FileType::Meta)
                    .map(|ft| self.name(*ft, g.codec))
                    .collect();
                let intent = objsets::begin(&store, IntentAction::Write, &meta, &others)
                    .map_err(|e| store_failure(loc, &format!("recording {meta} in"), e))?;
                self.store_intents.push((loc.clone(), url.clone(), intent));
            }
        }
        Ok(())
    }

    /// `err`, a failure while writing a stream, as the object store's own failure (with its
    /// HINT) when an upload is what failed.
    pub fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        match self.failure.lock().ok().and_then(|mut slot| slot.take()) {
            Some(failure) => failure,
            None => err,
        }
    }

    /// Checks that no name of the set exists in any destination.
    fn check_names_free(&self, file_types: &[FileType]) -> anyhow::Result<()> {
        for g in &self.groups {
            let names: Vec<String> = file_types
                .iter()
                .map(|ft| self.name(*ft, g.codec))
                .collect();
            for (loc, dir) in &g.locals {
                if let Some(name) = names
                    .iter()
                    .find(|n| std::fs::symlink_metadata(dir.join(n)).is_ok())
                {
                    return Err(exists(loc, name));
                }
            }
            for (loc, remote) in &g.remotes {
                let there = self
                    .rsync
                    .existing(remote, &names)
                    .with_context(|| format!("checking {loc}"))?;
                if let Some(name) = there.iter().next() {
                    return Err(exists(loc, name));
                }
            }
            for (loc, url) in &g.stores {
                let store = self.store(loc, url)?;
                for name in &names {
                    if store
                        .head(name)
                        .map_err(|e| store_failure(loc, &format!("checking {name} in"), e))?
                        .is_some()
                    {
                        return Err(exists(loc, name));
                    }
                }
            }
        }
        Ok(())
    }

    /// A client for the object-store destination `loc`.
    fn store(&self, loc: &Location, url: &S3Url) -> anyhow::Result<Store> {
        let settings = self
            .s3
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no object-store settings for {loc}"))?;
        Store::open(url, settings).map_err(|e| store_failure(loc, "opening", e))
    }

    fn stage_path(&self, codec: Codec, name: &str) -> PathBuf {
        self.scratch
            .join(format!("stage-{}", codec.to_string().replace(':', "-")))
            .join(name)
    }

    /// Opens `file_type` in every destination: temporary local files, started pipe programs,
    /// multipart uploads, staged copies for rsync. `expected` is about how many bytes will be
    /// written before compression (0: unknown); it sizes the parts of an upload, since an
    /// object store takes at most 10,000 of them.
    pub fn open(&self, file_type: FileType, expected: u64) -> anyhow::Result<Stream> {
        let mut groups = Vec::new();
        for g in &self.groups {
            let name = self.name(file_type, g.codec);
            let mut sinks = Vec::new();
            for (loc, dir) in &g.locals {
                let path = dir.join(&name);
                let f = DurableFile::create(&path, Replace::Never).map_err(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        exists(loc, &name)
                    } else {
                        anyhow::Error::from(e).context(
                            Failure::new(format!("cannot write to destination {loc}")).hint(
                                "make the directory writable by the user pitr-backup runs as",
                            ),
                        )
                    }
                })?;
                sinks.push(Sink::Local(f, format!("{loc}")));
            }
            for (loc, program) in &g.pipes {
                let child = Program::new(program)
                    .arg(&name)
                    .spawn_with_stdin()
                    .with_context(|| format!("sending {name} to {loc}"))?;
                sinks.push(Sink::Pipe(child, format!("{loc}")));
            }
            for (loc, url) in &g.stores {
                let doing = format!("sending {name} to");
                let upload = self
                    .store(loc, url)?
                    .upload(&name, expected)
                    .map_err(|e| store_failure(loc, &doing, e))?;
                sinks.push(Sink::Upload(Box::new(upload), loc.clone()));
            }
            if !g.remotes.is_empty() && g.locals.is_empty() {
                let path = self.stage_path(g.codec, &name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| fs::IoError::new("creating", parent, e))?;
                }
                let f = File::create(&path).map_err(|e| fs::IoError::new("creating", &path, e))?;
                sinks.push(Sink::Stage(f, path));
            }
            let encoder = g
                .codec
                .encoder(
                    BufWriter::with_capacity(
                        WRITE_BUFFER,
                        Sha256Writer::new(Fanout {
                            sinks,
                            name: name.clone(),
                            failure: self.failure.clone(),
                        }),
                    ),
                    self.threads,
                )
                .with_context(|| format!("starting the {} compressor", g.codec))?;
            groups.push(OpenGroup {
                codec: g.codec,
                name,
                encoder,
            });
        }
        Ok(Stream {
            file_type,
            groups,
            bytes: 0,
        })
    }

    /// Ends the stream: finishes compression, moves local files into place, waits for the pipe
    /// programs. Returns the stored size per codec.
    pub fn commit(&mut self, stream: Stream) -> anyhow::Result<Vec<(Codec, u64)>> {
        let mut sizes = Vec::new();
        for og in stream.groups {
            let hashed = og
                .encoder
                .finish()
                .and_then(|b| b.into_inner().map_err(|e| e.into_error()))
                .with_context(|| format!("finishing {}", og.name))?;
            let (fanout, digest, size) = hashed.finish();
            let mut source = None;
            let mut in_stores = false;
            for sink in fanout.sinks {
                match sink {
                    Sink::Local(f, what) => {
                        source.get_or_insert(f.path().to_path_buf());
                        self.pending.push((og.codec, stream.file_type, f, what));
                    }
                    Sink::Pipe(p, what) => p
                        .finish()
                        .with_context(|| format!("sending {} to {what}", og.name))?,
                    Sink::Stage(mut f, path) => {
                        f.flush()
                            .map_err(|e| fs::IoError::new("writing", &path, e))?;
                        source = Some(path);
                    }
                    Sink::Upload(upload, loc) => {
                        self.complete_upload(*upload, &loc, &og.name)?;
                        in_stores = true;
                    }
                }
            }
            sizes.push((og.codec, size));
            self.produced.insert(
                (og.codec, stream.file_type),
                Produced {
                    name: og.name,
                    digest,
                    size,
                    source,
                    in_stores,
                },
            );
        }
        Ok(sizes)
    }

    /// Completes the upload of `name` to `loc` after a last look that the name is still free:
    /// completing a multipart upload replaces whatever is there.
    fn complete_upload(
        &mut self,
        upload: Upload,
        loc: &Location,
        name: &str,
    ) -> anyhow::Result<()> {
        let Target::S3(url) = &loc.target else {
            return Ok(());
        };
        let store = self.store(loc, url)?;
        let doing = format!("sending {name} to");
        if store
            .head(name)
            .map_err(|e| store_failure(loc, &doing, e))?
            .is_some()
        {
            return Err(exists(loc, name));
        }
        // Recorded before the commit: a completion whose answer is lost (a timeout, a reset
        // connection) may still have made the object, and a failed run must remove it.
        self.created_objects
            .push((loc.clone(), url.clone(), name.to_owned()));
        upload.commit().map_err(|e| store_failure(loc, &doing, e))?;
        Ok(())
    }

    /// What was produced for `file_type` with `codec`.
    pub fn produced(&self, codec: Codec, file_type: FileType) -> Option<&Produced> {
        self.produced.get(&(codec, file_type))
    }

    /// Writes a small file (digest, meta) to every destination, its content per codec given by
    /// `content` (stored as is: these files are plain text whatever the codec).
    pub fn write_small(
        &mut self,
        file_type: FileType,
        content: impl Fn(Codec) -> String,
    ) -> anyhow::Result<()> {
        for g in self.groups.clone() {
            let name = self.name(file_type, g.codec);
            let text = content(g.codec);
            let mut source = None;
            for (loc, dir) in &g.locals {
                let path = dir.join(&name);
                let mut f = DurableFile::create(&path, Replace::Never)
                    .with_context(|| format!("storing {name} in {loc}"))?;
                f.write_bytes(text.as_bytes())?;
                source.get_or_insert(path);
                self.pending.push((g.codec, file_type, f, loc.to_string()));
            }
            for (loc, program) in &g.pipes {
                Program::new(program)
                    .arg(&name)
                    .run_with_stdin(text.as_bytes())
                    .with_context(|| format!("sending {name} to {loc}"))?;
            }
            if g.sends_after() && source.is_none() {
                let path = self.stage_path(g.codec, &name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| fs::IoError::new("creating", parent, e))?;
                }
                std::fs::write(&path, text.as_bytes())
                    .map_err(|e| fs::IoError::new("writing", &path, e))?;
                source = Some(path);
            }
            let digest = Digest::of(text.as_bytes());
            self.produced.insert(
                (g.codec, file_type),
                Produced {
                    name,
                    digest,
                    size: text.len() as u64,
                    source,
                    in_stores: false,
                },
            );
        }
        Ok(())
    }

    /// The set is whole: in each local destination its files get their final names, the
    /// digest file first and the meta file last, under a [`SetIntent`] that a run killed in
    /// between leaves for the next cleanup to undo; then the rsync destinations get it.
    pub fn finish(&mut self, file_types: &[FileType]) -> anyhow::Result<()> {
        let order = [
            FileType::Sha256,
            FileType::Data,
            FileType::Xlog,
            FileType::Meta,
        ];
        let mut intents = Vec::new();
        for g in self.groups.clone() {
            let meta = self.name(FileType::Meta, g.codec);
            let names: Vec<String> = file_types
                .iter()
                .filter(|ft| **ft != FileType::Meta)
                .map(|ft| self.name(*ft, g.codec))
                .collect();
            for (_, dir) in &g.locals {
                intents.push(SetIntent::begin(dir, &meta, IntentAction::Write, &names)?);
            }
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by_key(|(_, ft, _, _)| order.iter().position(|o| o == ft));
        for (_, _, f, what) in pending {
            let path = f.path().to_path_buf();
            f.commit(None)
                .with_context(|| format!("storing {} in {what}", path.display()))?;
            self.created_local.push(path);
        }
        for i in intents {
            i.end()?;
        }
        self.upload_remotes(file_types)
    }

    /// Sends the finished set to every rsync and object-store destination, in set order (meta
    /// file last).
    fn upload_remotes(&mut self, file_types: &[FileType]) -> anyhow::Result<()> {
        self.upload_rsync(file_types)?;
        self.upload_stores(file_types)
    }

    /// The files of the set not streamed into the object stores (the digest and meta files) go
    /// there now, in set order (meta file last), each after a look that the name is still free:
    /// nothing of the set is replaced, and an upload that dies leaves no object under its name.
    /// Then each store's intent record is ended.
    fn upload_stores(&mut self, file_types: &[FileType]) -> anyhow::Result<()> {
        for g in self.groups.clone() {
            for (loc, url) in &g.stores {
                let store = self.store(loc, url)?;
                for ft in file_types {
                    let Some(p) = self.produced.get(&(g.codec, *ft)).cloned() else {
                        continue;
                    };
                    if p.in_stores {
                        continue;
                    }
                    let Some(src_dir) = p.source.as_deref().and_then(Path::parent) else {
                        continue;
                    };
                    let src = src_dir.join(&p.name);
                    log_info!("sending {} to {loc}", p.name);
                    let doing = format!("sending {} to", p.name);
                    if store
                        .head(&p.name)
                        .map_err(|e| store_failure(loc, &doing, e))?
                        .is_some()
                    {
                        return Err(exists(loc, &p.name));
                    }
                    let mut file =
                        File::open(&src).map_err(|e| fs::IoError::new("opening", &src, e))?;
                    let size = file
                        .metadata()
                        .map_err(|e| fs::IoError::new("examining", &src, e))?
                        .len();
                    let mut upload = store
                        .upload(&p.name, size)
                        .map_err(|e| store_failure(loc, &doing, e))?;
                    io::copy(&mut file, &mut upload).map_err(|e| match e
                        .downcast::<pitr_common::objstore::Error>(
                    ) {
                        Ok(store_error) => store_failure(loc, &doing, store_error),
                        Err(e) => fs::IoError::new("reading", &src, e).into(),
                    })?;
                    // Recorded before the commit, as in `complete_upload`.
                    self.created_objects
                        .push((loc.clone(), url.clone(), p.name.clone()));
                    upload.commit().map_err(|e| store_failure(loc, &doing, e))?;
                }
            }
        }
        while let Some((loc, url, intent)) = self.store_intents.last().cloned() {
            let store = self.store(&loc, &url)?;
            objsets::end(&store, &intent)
                .map_err(|e| store_failure(&loc, &format!("ending the record {intent} in"), e))?;
            self.store_intents.pop();
        }
        Ok(())
    }

    /// Sends the finished set to every rsync destination, in set order (meta file last).
    fn upload_rsync(&mut self, file_types: &[FileType]) -> anyhow::Result<()> {
        for g in self.groups.clone() {
            for (loc, remote) in &g.remotes {
                for ft in file_types {
                    let Some(p) = self.produced.get(&(g.codec, *ft)).cloned() else {
                        continue;
                    };
                    let Some(src_dir) = p.source.as_deref().and_then(Path::parent) else {
                        continue;
                    };
                    log_info!("sending {} to {loc}", p.name);
                    let sent = self
                        .rsync
                        .upload_new(src_dir, std::slice::from_ref(&p.name), remote)
                        .with_context(|| format!("sending {} to {loc}", p.name))?;
                    if !sent.contains(&p.name) {
                        return Err(exists(loc, &p.name));
                    }
                    self.created_remote.push((remote.clone(), p.name.clone()));
                }
            }
        }
        Ok(())
    }

    /// The set is complete everywhere: keep it.
    pub fn keep(mut self) {
        self.done = true;
    }
}

impl Drop for SetWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // A failed run: what it put under final names goes, in reverse order (the meta file, if
        // it got that far, first), so that no reader takes a partial set for a whole one.
        for path in self.created_local.iter().rev() {
            match fs::remove_file_if_exists(path) {
                Ok(()) => log_info!("removed partial output {}", path.display()),
                Err(e) => log_warning!("cannot remove partial output: {e}"),
            }
        }
        // A store where some object could not be removed keeps the set's record, so that the
        // next pitr-backup to it finds the set unfinished and removes what is left; without
        // it, a meta file left behind made a broken set look like the newest one.
        let mut kept: Vec<&S3Url> = Vec::new();
        for (loc, url, name) in self.created_objects.iter().rev() {
            let removed = self.store(loc, url).and_then(|s| {
                s.delete(name)
                    .map_err(|e| store_failure(loc, "removing", e))
            });
            match removed {
                Ok(()) => log_info!("removed partial output {name} from {loc}"),
                Err(e) => {
                    log_warning!("cannot remove partial output {name} from {loc}: {e:#}");
                    kept.push(url);
                }
            }
        }
        for (loc, url, name) in self.store_intents.iter().rev() {
            if kept.contains(&url) {
                log_warning!(
                    "keeping {name} in {loc}: the next pitr-backup to it removes what is left of this set"
                );
                continue;
            }
            let removed = self.store(loc, url).and_then(|s| {
                s.delete(name)
                    .map_err(|e| store_failure(loc, "removing", e))
            });
            match removed {
                Ok(()) => log_info!("removed partial output {name} from {loc}"),
                Err(e) => log_warning!("cannot remove partial output {name} from {loc}: {e:#}"),
            }
        }
        for (remote, name) in self.created_remote.iter().rev() {
            let empty = self.scratch.join("empty");
            if let Err(e) = self
                .rsync
                .remove(remote, std::slice::from_ref(name), &empty)
            {
                log_warning!(
                    "cannot remove partial output {name} from {}: {e:#}",
                    remote.as_str()
                );
            }
        }
    }
}

/// An object-store error of destination `loc` while `doing` ("sending NAME to"), with the
/// store's HINT (endpoint and bucket named).
fn store_failure(loc: &Location, doing: &str, e: pitr_common::objstore::Error) -> anyhow::Error {
    e.failure(format!("{doing} {loc}"))
}

impl Group {
    /// Whether some destination gets the finished files afterwards (rsync, object store), from
    /// a local destination of the group or a staged copy.
    fn sends_after(&self) -> bool {
        !self.remotes.is_empty() || !self.stores.is_empty()
    }
}

fn exists(loc: &Location, name: &str) -> anyhow::Error {
    Failure::new(format!("{name} already exists in {loc}"))
        .hint("another backup started in the same second, or --filename-template lacks a time of day; the existing file was left untouched")
        .into()
}

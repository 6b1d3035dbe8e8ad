//! A WAL archive on an object store (`s3://BUCKET/PREFIX`): putting a WAL file into it and
//! finding and restoring one from it, with the rules of a directory archive.
//!
//! Objects are `PREFIX/NAME` in the stored form of the location's codec (`NAME`, `NAME.zst`,
//! `NAME.gz`, from [`compress::STORED_FORMS`]), beside the cluster marker
//! `PREFIX/.pitr-cluster` ([`CLUSTER_MARKER`], same text as in a directory).
//!
//! Putting (pitr-archive): the marker is read (created on first use) and checked; one LIST
//! finds every stored form of the name; an existing copy is compared by content (identical is
//! success, different is refused and left alone); otherwise the object is created as
//! [`Store::put_new`] creates (see there for exactly what is guaranteed without conditional
//! writes), with that LIST as the create's first look; a second LIST after the write tells
//! both whether the object is still ours (its entity tag) and whether another stored form of
//! the name appeared meanwhile with different content. Four requests: LIST, PUT, pause, LIST.
//! A batch (the archive-ahead worker's) shares its LISTs: one per 16 neighbouring names before
//! its writes and one after the last write's pause ([`put_batch`]), and a process keeps its
//! client for the next batch ([`Stores`]).
//!
//! Restoring (pitr-restore): the marker, when present, must name this cluster (read once per
//! process, beside the first LIST); one LIST finds the stored form (one per 16 neighbouring
//! names for a prefetch window, [`find_many`]); the object is written to a temporary name beside `%p`, checked exactly as a
//! file from a directory ([`source::check_and_commit`]) and renamed into place.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::compress::{self, Codec, Stored};
use crate::dest::{self, Payload, PutOutcome, CLUSTER_MARKER};
use crate::exit::Failure;
use crate::fs::{DurableFile, IoError, Replace};
use crate::location::Location;
use crate::objstore::{self, S3Url, Settings, Store};
use crate::source::{self, Error, RestoreOptions};
use crate::wal::WalFileName;

/// Delivers `p` to the object-store location `loc` (see the module's description).
pub fn put(
    loc: &Location,
    url: &S3Url,
    p: &Payload<'_>,
    sysid: Option<u64>,
    settings: &Settings,
    stores: &Stores,
) -> anyhow::Result<PutOutcome> {
    put_batch(loc, url, std::slice::from_ref(p), sysid, settings, stores)
        .pop()
        .unwrap_or_else(|| Err(anyhow::anyhow!("no outcome for {}", p.wal_name)))
}

/// How many files of a batch have their requests in flight at once. A batch is up to 128 MB of
/// WAL by default (`--archive-ahead`), which is 128 files of a cluster with 1 MB segments, and
/// several batches are on the wire at once: one thread and one connection per file would be
/// hundreds against one store. Sixteen keep the default batch of eight 16 MB segments wholly
/// concurrent, as before.
const BATCH_REQUESTS: usize = 16;

/// Object-store clients kept for the batches of one process (the archive-ahead worker sends
/// batch after batch to the same store): a batch reuses the connections of the one before
/// instead of opening its own, each with its TLS handshake. Clones share the clients.
#[derive(Clone, Default)]
pub struct Stores(std::sync::Arc<std::sync::Mutex<Vec<(String, Store)>>>);

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stores")
    }
}

impl Stores {
    /// The client for `url` with `settings`: the one kept for them, or a new one, then kept.
    pub fn open(&self, url: &S3Url, settings: &Settings) -> Result<Store, objstore::Error> {
        let key = format!("{} {url}", settings.endpoint_display());
        let kept = |stores: &Vec<(String, Store)>| {
            stores
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, s)| s.clone())
        };
        if let Some(store) = self.0.lock().ok().and_then(|s| kept(&s)) {
            return Ok(store);
        }
        let store = Store::open(url, settings)?;
        if let Ok(mut stores) = self.0.lock() {
            if let Some(other) = kept(&stores) {
                return Ok(other);
            }
            stores.push((key, store.clone()));
        }
        Ok(store)
    }
}

/// Delivers several files to `loc`, one outcome each, in order, so that a batch costs about the
/// requests and round trips of one file:
/// 1. the store's client (kept in `stores` for the next batch) and its cluster marker, checked
///    once;
/// 2. every file compressed, then one LIST per 16 neighbouring names (every stored form of
///    every name of the batch): the create's first look for them all;
/// 3. each file found is compared, each other one written, [`BATCH_REQUESTS`] at a time;
/// 4. once the last write's pause is over (each file's pause counts from the shared look, and
///    a later look is as good as its own: [`Store::put_after_look`]), one LIST again, which
///    tells of every file written whether its object is still ours and whether another stored
///    form of its name appeared meanwhile with different content.
///
/// When the batch as a whole fails, the first payload gets the error.
pub fn put_batch(
    loc: &Location,
    url: &S3Url,
    payloads: &[Payload<'_>],
    sysid: Option<u64>,
    settings: &Settings,
    stores: &Stores,
) -> Vec<anyhow::Result<PutOutcome>> {
    let Some(first) = payloads.first() else {
        return Vec::new();
    };
    let store = match stores.open(url, settings) {
        Ok(s) => s,
        Err(e) => {
            return dest::batch_failed(e.failure(format!("cannot use {loc}")), payloads.len())
        }
    };
    if let Some(id) = sysid {
        if let Err(e) = check_marker_on_put(&store, loc, first.wal_name, id) {
            let e = annotate(e, format!("checking the cluster marker of {loc}"));
            return dest::batch_failed(e, payloads.len());
        }
    }
    // Compressed before the look: without conditional writes each create pauses for twice the
    // time from its look to its PUT's answer, and compressing in between made that pause, and
    // every batch, several times longer. Errors are kept with the bytes and met below.
    for p in payloads {
        let _ = (p.stored)();
    }
    let names: Vec<&str> = payloads.iter().map(|p| p.wal_name).collect();
    let looked = std::time::Instant::now();
    let listed = match list_names(&store, &names) {
        Ok(listed) => listed,
        Err(e) => {
            let e = e.failure(format!("looking for {} in {loc}", first.wal_name));
            return dest::batch_failed(e, payloads.len());
        }
    };
    let steps = concurrently(payloads.len(), |i| {
        look_and_write(&store, loc, &payloads[i], &listed, looked)
    });
    let mut outcomes: Vec<Option<anyhow::Result<PutOutcome>>> =
        payloads.iter().map(|_| None).collect();
    let mut written: Vec<(usize, String, objstore::Written)> = Vec::new();
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Some(Step::Done(outcome)) => outcomes[i] = Some(outcome),
            Some(Step::Written(key, w)) => written.push((i, key, w)),
            None => {}
        }
    }
    if let Some(check_at) = written.iter().map(|(_, _, w)| w.check_at()).max() {
        let left = check_at.saturating_duration_since(std::time::Instant::now());
        if !left.is_zero() {
            std::thread::sleep(left);
        }
        let names: Vec<&str> = written
            .iter()
            .map(|(i, _, _)| payloads[*i].wal_name)
            .collect();
        let checked = match list_names(&store, &names) {
            Ok(listed) => concurrently(written.len(), |j| {
                let (i, key, w) = &written[j];
                check_written(&store, loc, &payloads[*i], key, w, &listed)
            }),
            Err(e) => {
                let doing = format!("looking for {} in {loc} again", names[0]);
                dest::batch_failed(e.failure(doing), names.len())
                    .into_iter()
                    .map(Some)
                    .collect()
            }
        };
        for ((i, _, _), outcome) in written.iter().zip(checked) {
            outcomes[*i] = outcome;
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(anyhow::anyhow!("a delivery thread panicked"))))
        .collect()
}

/// Where one file of a batch stands after the first look.
enum Step {
    /// Found (and compared), refused, or failed: its outcome.
    Done(anyhow::Result<PutOutcome>),
    /// Written under this key, to be looked at again.
    Written(String, objstore::Written),
}

/// One file's part before the batch looks again: compared with a stored form the first LIST
/// found, or written (a create whose look was `looked`).
fn look_and_write(
    store: &Store,
    loc: &Location,
    p: &Payload<'_>,
    listed: &[objstore::ObjectInfo],
    looked: std::time::Instant,
) -> Step {
    let forms: Vec<(String, Stored)> = compress::stored_names(p.wal_name, loc.codec).collect();
    // Every stored form there is compared, not the first found: a reader may take any of them.
    let there = present(&forms, listed, None);
    if !there.is_empty() {
        return Step::Done(
            there
                .into_iter()
                .try_fold(PutOutcome::AlreadyIdentical, |_, (key, stored)| {
                    compare(store, loc, p, &key, stored)
                }),
        );
    }
    let body = match (p.stored)() {
        Ok(body) => body.to_bytes(),
        Err(e) => return Step::Done(Err(e)),
    };
    let key = loc.file_name(p.wal_name);
    let crc = Some(crate::walcrc::of(p.plain));
    match store.put_after_look(&key, body, looked, crc) {
        Ok(Some(written)) => Step::Written(key, written),
        // A conditional create refused: another object is there, and it decides.
        Ok(None) => Step::Done(compare(store, loc, p, &key, Stored::Readable(loc.codec))),
        Err(e) => Step::Done(Err(e.failure(format!("sending {} to {loc}", p.wal_name)))),
    }
}

/// One written file's part after the batch looked again (`listed`): its object must still be
/// ours, and another stored form of its name written meanwhile must hold the same content.
fn check_written(
    store: &Store,
    loc: &Location,
    p: &Payload<'_>,
    key: &str,
    written: &objstore::Written,
    listed: &[objstore::ObjectInfo],
) -> anyhow::Result<PutOutcome> {
    let ours = written
        .is_ours(store, key, listed)
        .map_err(|e| e.failure(format!("sending {} to {loc}", p.wal_name)))?;
    if !ours {
        // Another writer got there first, or replaced ours: what is there now decides.
        return compare(store, loc, p, key, Stored::Readable(loc.codec));
    }
    let forms: Vec<(String, Stored)> = compress::stored_names(p.wal_name, loc.codec).collect();
    for (other, stored) in present(&forms, listed, Some(key)) {
        compare(store, loc, p, &other, stored)?;
    }
    Ok(PutOutcome::Stored)
}

/// Every object whose key begins with one of `names`, in one LIST per group of names that share
/// all but their last character (16 neighbouring segments), as [`find_many`] looks.
fn list_names(store: &Store, names: &[&str]) -> Result<Vec<objstore::ObjectInfo>, objstore::Error> {
    let mut groups: Vec<&str> = names
        .iter()
        .map(|n| &n[..n.len().saturating_sub(1)])
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let mut listed = Vec::new();
    for group in groups {
        listed.extend(store.list_matching("", group)?);
    }
    Ok(listed)
}

/// `f(0)`, …, `f(n - 1)`, in order, computed by up to [`BATCH_REQUESTS`] threads (`None` for
/// one whose thread panicked).
fn concurrently<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<Option<T>> {
    if n == 1 {
        return vec![Some(f(0))];
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<T>>> =
        (0..n).map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..n.min(BATCH_REQUESTS) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let value = f(i);
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(value);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| slot.into_inner().ok().flatten())
        .collect()
}

/// Adds what we were doing to an error that is not already a [`Failure`].
fn annotate(e: anyhow::Error, doing: String) -> anyhow::Error {
    if crate::exit::find_failure(&e).is_some() {
        e
    } else {
        e.context(doing)
    }
}

/// The stored forms among `forms` that `listed` shows, in the order of `forms`, `except` left
/// out.
fn present(
    forms: &[(String, Stored)],
    listed: &[objstore::ObjectInfo],
    except: Option<&str>,
) -> Vec<(String, Stored)> {
    forms
        .iter()
        .filter(|(name, _)| Some(name.as_str()) != except)
        .filter(|(name, _)| listed.iter().any(|o| o.key == *name))
        .cloned()
        .collect()
}

/// Compares the object `key` with the payload: identical is `AlreadyIdentical`.
fn compare(
    store: &Store,
    loc: &Location,
    p: &Payload<'_>,
    key: &str,
    stored: Stored,
) -> anyhow::Result<PutOutcome> {
    let existing = store
        .get(key)
        .map_err(|e| e.failure(format!("reading {key} in {loc}")))?
        .ok_or_else(|| {
            Failure::new(format!(
                "{key} in {loc} was listed but cannot be read any more"
            ))
            .hint(
                "another program is removing objects under this prefix; archive_command is retried",
            )
        })?;
    dest::compare(loc, p, key, stored, &existing)
}

/// The text of the marker object, or `None` when there is none.
fn read_marker(store: &Store) -> Result<Option<String>, objstore::Error> {
    Ok(store
        .get(CLUSTER_MARKER)?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// Makes sure the store's archive belongs to database system `sysid`: records it on first use
/// (a create that tells a lost race, like every WAL object), refuses WAL of another system.
fn check_marker_on_put(
    store: &Store,
    loc: &Location,
    wal_name: &str,
    sysid: u64,
) -> anyhow::Result<()> {
    let shown = store.url().full_key(CLUSTER_MARKER);
    let reading = |e: objstore::Error| e.failure(format!("reading the cluster marker of {loc}"));
    let text = match read_marker(store).map_err(reading)? {
        Some(text) => text,
        None => {
            let created = store
                .put_new(CLUSTER_MARKER, dest::marker_text(sysid).into_bytes())
                .map_err(|e| e.failure(format!("recording the cluster of {loc}")))?;
            if created == objstore::PutOutcome::Created {
                return Ok(());
            }
            read_marker(store).map_err(reading)?.unwrap_or_default()
        }
    };
    dest::check_marker_text(loc, &shown, &text, wal_name, sysid)
}

/// The text of the store's cluster marker (`None` when there is none), for
/// [`check_marker_on_get`].
pub fn read_marker_text(store: &Store) -> Result<Option<String>, Error> {
    Ok(read_marker(store)?)
}

/// The store's cluster marker as messages name it.
fn marker_shown(store: &Store) -> String {
    format!(
        "s3://{}/{}",
        store.url().bucket(),
        store.url().full_key(CLUSTER_MARKER)
    )
}

/// The database system the store's cluster marker names; `None` when it has none.
pub fn marker_system(store: &Store) -> Result<Option<u64>, Error> {
    let Some(text) = read_marker(store)? else {
        return Ok(None);
    };
    source::marker_system(marker_shown(store), &text).map(Some)
}

/// Reads the store's marker and judges it ([`check_marker_on_get`]): for a caller that uses
/// the store once (pitr-backup's WAL source, pitr-cleanup's archive).
pub fn check_marker(store: &Store, sysid: u64) -> Result<(), Error> {
    let text = read_marker_text(store)?;
    check_marker_on_get(store, text.as_deref(), sysid)
}

/// The reading side of the marker, given its text as [`read_marker_text`] read it: a marker
/// naming another system is [`Error::Foreign`]; no marker is accepted (the archive may have
/// been filled by another program); each segment is checked against the system anyway.
pub fn check_marker_on_get(store: &Store, text: Option<&str>, sysid: u64) -> Result<(), Error> {
    let Some(text) = text else {
        return Ok(());
    };
    source::judge_marker(marker_shown(store), text, sysid)
}

/// An archived copy of a WAL file in an object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFound {
    /// Its key, relative to the store's prefix.
    pub key: String,
    /// How it is stored.
    pub codec: Codec,
    /// When it was uploaded.
    pub mtime: SystemTime,
}

/// Looks for `name` in `store` under every stored form (one LIST), the preferred codec's first.
pub fn find(
    store: &Store,
    preferred: Codec,
    name: &WalFileName,
) -> Result<Option<ObjectFound>, Error> {
    let wal_name = name.to_string();
    let listed = store.list_matching("", &wal_name)?;
    pick(store, &listed, preferred, &wal_name)
}

/// Looks for each of `names` (a prefetch window) in `store`: one LIST per group of names that
/// share all but their last hexadecimal digit (16 neighbouring segments), so that a window
/// costs one or two round trips instead of one per name. The answer is in the order of
/// `names`, exactly what [`find`] would say for each.
pub fn find_many(
    store: &Store,
    preferred: Codec,
    names: &[WalFileName],
) -> Result<Vec<Option<ObjectFound>>, Error> {
    let mut listed: Vec<(String, Vec<objstore::ObjectInfo>)> = Vec::new();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let wal_name = name.to_string();
        let group = wal_name[..wal_name.len().saturating_sub(1)].to_owned();
        let objects = match listed.iter().position(|(g, _)| *g == group) {
            Some(i) => &listed[i].1,
            None => {
                let objects = store.list_matching("", &group)?;
                listed.push((group, objects));
                &listed[listed.len() - 1].1
            }
        };
        out.push(pick(store, objects, preferred, &wal_name)?);
    }
    Ok(out)
}

/// The stored form of `wal_name` among `listed`, the preferred codec's first.
fn pick(
    store: &Store,
    listed: &[objstore::ObjectInfo],
    preferred: Codec,
    wal_name: &str,
) -> Result<Option<ObjectFound>, Error> {
    for (key, stored) in compress::stored_names(wal_name, preferred) {
        let Some(object) = listed.iter().find(|o| o.key == key) else {
            continue;
        };
        let codec = match stored {
            Stored::Readable(c) => c,
            Stored::Unreadable(codec) => {
                return Err(Error::Unsupported {
                    path: object_path(store, &key),
                    codec,
                })
            }
        };
        return Ok(Some(ObjectFound {
            key,
            codec,
            mtime: object.last_modified,
        }));
    }
    Ok(None)
}

/// The content of `found` (named `name`), decoded and checked exactly as a file from a
/// directory is ([`source::check`]), in memory: for pitr-backup's WAL archive, one segment at a
/// time.
pub fn read_verified(
    store: &Store,
    found: &ObjectFound,
    name: &WalFileName,
    system_identifier: u64,
) -> Result<Vec<u8>, Error> {
    let shown = object_path(store, &found.key);
    let (raw, recorded) = store.get_with_crc(&found.key)?.ok_or_else(|| {
        Error::Io(IoError::new(
            "reading",
            &shown,
            std::io::Error::new(std::io::ErrorKind::NotFound, "the object was removed"),
        ))
    })?;
    let data = match found.codec {
        Codec::None => raw,
        c => c
            .decompress(&raw, 16 << 20)
            .map_err(|source| Error::Corrupt {
                path: shown.clone(),
                source,
            })?,
    };
    if let Some(expected) = recorded {
        source::check_crc(&shown, expected, &data)?;
    }
    source::check(&shown, name, &data, system_identifier)?;
    Ok(data)
}

/// An object's name in messages: `s3://BUCKET/KEY`.
pub fn shown(store: &Store, found: &ObjectFound) -> String {
    object_path(store, &found.key).display().to_string()
}

/// How an object is named in messages (the `path` of [`Error`]s): `s3://BUCKET/KEY`.
fn object_path(store: &Store, key: &str) -> PathBuf {
    PathBuf::from(format!(
        "s3://{}/{}",
        store.url().bucket(),
        store.url().full_key(key)
    ))
}

/// Writes `found`, decompressed, to `dest` through a temporary name beside it, checked exactly
/// as [`source::restore_verified`] checks a file from a directory, and renames it into place.
/// A compressed object is held in memory while it is decompressed (at most a segment's size);
/// a plain one streams to the file.
pub fn restore_verified(
    store: &Store,
    found: &ObjectFound,
    name: &WalFileName,
    system_identifier: u64,
    dest: &Path,
    opts: RestoreOptions,
) -> Result<(), Error> {
    let shown = object_path(store, &found.key);
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut out = DurableFile::create(dest, Replace::Allow).map_err(Error::Write)?;
    if let Some(reason) = opts.unsynced {
        out = out.unsynced(reason);
    }
    let tmp = out.temp_path().to_path_buf();
    let gone = || {
        Error::Io(IoError::new(
            "reading",
            &shown,
            std::io::Error::new(std::io::ErrorKind::NotFound, "the object was removed"),
        ))
    };
    let (len, recorded) = if found.codec == Codec::None {
        let mut reader = store.get_reader(&found.key)?.ok_or_else(gone)?;
        let recorded = reader.recorded_crc32c();
        let len = std::io::copy(&mut reader, out.file()).map_err(|e| {
            match e.downcast::<objstore::Error>() {
                Ok(store_error) => Error::Store(store_error),
                Err(e) => Error::Write(IoError::new("writing", &tmp, e)),
            }
        })?;
        (len, recorded)
    } else {
        let (raw, recorded) = store.get_with_crc(&found.key)?.ok_or_else(gone)?;
        let len = found
            .codec
            .decompress_to_file(&raw, out.file(), threads)
            .map_err(|source| {
                if compress::is_output_error(&source) {
                    Error::Write(IoError::new("writing", &tmp, source))
                } else {
                    Error::Corrupt {
                        path: shown.clone(),
                        source,
                    }
                }
            })?;
        (len, recorded)
    };
    source::check_and_commit(out, len, &shown, recorded, name, system_identifier, opts)
}

/// An archived object that [`remove_older`] removed (or would remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedObject {
    /// The WAL file it holds.
    pub wal: WalFileName,
    /// Its key, relative to the archive's prefix.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Removes from the object-store archive `url` the WAL files that
/// [`crate::archive_dir::goes_before`] `oldest` (the rule of a directory archive), in any
/// stored form: one listing of the prefix, then deletes of up to 1000 keys per request. Objects
/// under deeper keys, the marker and other names are left alone. With `dry_run` nothing is
/// removed and the list says what would go.
pub fn remove_older(
    url: &S3Url,
    settings: &Settings,
    oldest: &WalFileName,
    dry_run: bool,
) -> anyhow::Result<Vec<RemovedObject>> {
    let doing = || format!("removing WAL older than {oldest} from {url}");
    let store = Store::open(url, settings).map_err(|e| e.failure(doing()))?;
    let listed = store.list("").map_err(|e| e.failure(doing()))?;
    let mut removed: Vec<RemovedObject> = listed
        .into_iter()
        .filter(|o| !o.key.contains('/'))
        .filter_map(|o| {
            let (base, _) = compress::split_stored_name(&o.key);
            let wal = WalFileName::parse(base).ok()?;
            crate::archive_dir::goes_before(&wal, oldest).then_some(RemovedObject {
                wal,
                key: o.key,
                size: o.size,
            })
        })
        .collect();
    removed.sort_by(|a, b| a.wal.cmp(&b.wal).then(a.key.cmp(&b.key)));
    if !dry_run {
        let keys: Vec<String> = removed.iter().map(|r| r.key.clone()).collect();
        store.delete_many(&keys).map_err(|e| e.failure(doing()))?;
    }
    Ok(removed)
}

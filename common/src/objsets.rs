//! Backup sets in an object store: the intent records that make a write or a removal killed
//! half-way finishable, with the rules of a directory ([`crate::backupset::SetIntent`]).
//!
//! Before pitr-backup uploads a set's files it stores `PREFIX/.pitr-set.<meta name>` (an
//! [`IntentRecord`] of action `write`), and deletes it once the meta file is stored; a failed
//! run deletes what it created, the record last. A run killed before that leaves the record:
//! the next pitr-backup to that store (the same host, where the writer's pid can be checked)
//! deletes the set's objects that exist, meta file first, unless the meta file made it (the set
//! is whole: only the record goes). A writer on another host is never second-guessed.
//! pitr-cleanup's retention removes a set the same way, with a record of action `remove`.

use crate::backupset::{IntentAction, IntentRecord, INTENT_PREFIX};
use crate::objstore::{Error, Store};

/// The key of the intent record of the set whose meta file is `meta`.
fn key(meta: &str) -> String {
    format!("{INTENT_PREFIX}{meta}")
}

/// Stores the record that this process is about to write (or remove) the set `meta` with
/// `files`; returns its key.
pub fn begin(
    store: &Store,
    action: IntentAction,
    meta: &str,
    files: &[String],
) -> Result<String, Error> {
    let key = key(meta);
    let text = IntentRecord::ours(action, meta, files).text();
    store.put_replace(&key, text.into_bytes())?;
    Ok(key)
}

/// The set is whole (or gone): the record goes. The record is looked up again after the
/// DELETE and deleted again while it is still listed (for at most 10 s): under load, Garage
/// was seen to answer the DELETE and still list the record afterwards, in 2 of 5 runs of
/// s3_retention_removes_the_oldest_set_and_the_wal_only_it_needed. A record left behind is
/// harmless (the next backup finds the set whole and removes only the record), but a set must
/// not look half-written after a backup that succeeded.
pub fn end(store: &Store, key: &str) -> Result<(), Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        store.delete(key)?;
        let listed = store.list_matching("", key)?;
        if !listed.iter().any(|o| o.key == key) {
            return Ok(());
        }
        crate::log_verbose!("{key} is still listed after its DELETE; deleting it again");
        if std::time::Instant::now() >= deadline {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// What [`sweep`] did with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    /// The set's meta file name.
    pub meta: String,
    /// What the killed writer was doing.
    pub action: IntentAction,
    /// The objects deleted.
    pub removed: Vec<String>,
}

/// Finishes what killed writers on this host left in `store` (see the module's description).
pub fn sweep(store: &Store) -> Result<Vec<Swept>, Error> {
    let mut out = Vec::new();
    for o in store.list_matching("", INTENT_PREFIX)? {
        if o.key.contains('/') {
            continue;
        }
        let Some(text) = store.get(&o.key)? else {
            continue;
        };
        let record = IntentRecord::parse(&String::from_utf8_lossy(&text));
        if record.writer_may_be_alive() {
            continue;
        }
        let whole = record.action == IntentAction::Write
            && !record.meta.is_empty()
            && store.head(&record.meta)?.is_some();
        let mut removed = Vec::new();
        if !whole {
            let names = record.names_to_remove();
            // The meta file first, on its own: a half-removed set is never taken for a whole one.
            if let Some((meta, rest)) = names.split_first() {
                for batch in [std::slice::from_ref(meta), rest] {
                    let present: Vec<String> =
                        batch.iter().filter(|n| !n.is_empty()).cloned().collect();
                    for n in &present {
                        if store.head(n)?.is_some() {
                            removed.push(n.clone());
                        }
                    }
                    store.delete_many(&present)?;
                }
            }
        }
        store.delete(&o.key)?;
        out.push(Swept {
            meta: record.meta,
            action: record.action,
            removed,
        });
    }
    Ok(out)
}

/// A backup set found in a store by its meta file.
#[derive(Debug, Clone)]
pub struct StoredSet {
    /// The meta file's key.
    pub meta_key: String,
    /// Its content.
    pub meta: crate::backupset::Meta,
    /// Why the set is not whole, if it is not: a file the meta file names is missing, or has
    /// another size than it records.
    pub invalid: Option<String>,
    /// The bytes its meta file and the files of it that the listing shows hold.
    pub stored_bytes: u64,
}

impl StoredSet {
    /// The set's other files, as the meta file names them.
    pub fn files(&self) -> Vec<String> {
        let mut v = vec![self.meta.data_file.clone()];
        v.extend(self.meta.xlog_file.clone());
        v.push(self.meta.digest_file.clone());
        v
    }
}

/// The sets directly under the store's prefix, oldest first (by `Started-epoch`, then key):
/// every object small enough to be a meta file is read, and kept if it is one. Each set's
/// files are checked against the listing (sizes as recorded).
pub fn list(store: &Store) -> Result<Vec<StoredSet>, Error> {
    let listed = store.list("")?;
    let size_of = |name: &str| listed.iter().find(|o| o.key == name).map(|o| o.size);
    let mut out = Vec::new();
    for o in &listed {
        if o.key.contains('/') || o.key.starts_with('.') || o.size > crate::backupset::MAX_META_SIZE
        {
            continue;
        }
        let Some(text) = store.get(&o.key)? else {
            continue;
        };
        if !text.starts_with(b"Min-Xlog: ") {
            continue;
        }
        let meta = match crate::backupset::Meta::parse(&String::from_utf8_lossy(&text)) {
            Ok(m) => m,
            Err(e) => {
                crate::log_warning!(
                    "{} looks like a backup set's meta file but cannot be read ({e}); its set is left alone",
                    format!("s3://{}/{}", store.url().bucket(), store.url().full_key(&o.key))
                );
                continue;
            }
        };
        let mut expect = vec![(meta.data_file.clone(), Some(meta.data_size))];
        if let Some(x) = &meta.xlog_file {
            expect.push((x.clone(), Some(meta.xlog_size)));
        }
        expect.push((meta.digest_file.clone(), None));
        let invalid = expect
            .iter()
            .find_map(|(name, size)| match (size_of(name), size) {
                (None, _) => Some(format!("{name} is missing")),
                (Some(found), Some(want)) if found != *want => Some(format!(
                    "{name} is {found} bytes, the meta file says {want}"
                )),
                _ => None,
            });
        let stored_bytes = o.size
            + expect
                .iter()
                .filter_map(|(name, _)| size_of(name))
                .sum::<u64>();
        out.push(StoredSet {
            meta_key: o.key.clone(),
            meta,
            invalid,
            stored_bytes,
        });
    }
    out.sort_by(|a, b| {
        (a.meta.started_epoch, &a.meta_key).cmp(&(b.meta.started_epoch, &b.meta_key))
    });
    Ok(out)
}

/// Removes `set` from the store: its intent record first (so that a run killed half-way is
/// finished by the next [`sweep`]), then the meta file, then the other files, then the record.
pub fn remove(store: &Store, set: &StoredSet) -> Result<(), Error> {
    let files = set.files();
    let key = begin(store, IntentAction::Remove, &set.meta_key, &files)?;
    store.delete(&set.meta_key)?;
    store.delete_many(&files)?;
    end(store, &key)
}

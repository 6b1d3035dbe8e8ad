//! Backup sets in an object store: the intent records that make a write or a removal killed
//! half-way finishable, with the rules of a directory ([`crate::backupset::SetIntent`]).
//!
//! Before pitr-backup uploads a set's files it stores `PREFIX/.pitr-set.<meta name>` (an
//! [`IntentRecord`] of action `write`), and deletes it once the meta file is stored; a failed
//! run deletes what it created, the record last. A run killed before that leaves the record:
//! the next pitr-backup to that store (the same host, where the writer's pid can be checked)
//! deletes the set's objects that exist, meta file first, unless the meta file made it (the set
//! is whole: only the record goes). A writer on another host is never second-guessed.

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

/// The set is whole (or gone): the record goes.
pub fn end(store: &Store, key: &str) -> Result<(), Error> {
    store.delete(key)
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

//! On-disk state the tools keep between calls.
//!
//! [`DeliveryState`] is pitr-archive's record of which destinations already hold a WAL file,
//! kept in `--state-dir` as `<wal name>.state` while a delivery is incomplete, so that a retry by
//! PostgreSQL sends only to the destinations still missing it. It is a text file of location
//! keys ([`crate::location::Location::key`]: kind, codec and target), one per line, written
//! durably.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::fs::{self, Replace};

/// Which destinations hold one WAL file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryState {
    path: PathBuf,
    delivered: BTreeSet<String>,
}

const HEADER: &str = "# pitr-archive delivery state: destinations that hold this file\n";

impl DeliveryState {
    /// The state file for `wal_name` in `state_dir`.
    pub fn path_for(state_dir: &Path, wal_name: &str) -> PathBuf {
        state_dir.join(format!("{wal_name}.state"))
    }

    /// Loads the state of `wal_name` (empty when there is none).
    pub fn load(state_dir: &Path, wal_name: &str) -> Result<Self, fs::IoError> {
        let path = Self::path_for(state_dir, wal_name);
        let delivered = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(fs::IoError::new("reading", &path, e)),
        };
        Ok(DeliveryState { path, delivered })
    }

    /// Whether the destination with this key holds the file.
    pub fn is_delivered(&self, key: &str) -> bool {
        self.delivered.contains(key)
    }

    /// Records a delivery (in memory; see [`DeliveryState::save`]).
    pub fn mark_delivered(&mut self, key: String) {
        self.delivered.insert(key);
    }

    /// Writes the state durably.
    pub fn save(&self) -> anyhow::Result<()> {
        let mut text = String::from(HEADER);
        for k in &self.delivered {
            text.push_str(k);
            text.push('\n');
        }
        fs::write_durable(&self.path, Replace::Allow, None, |f| {
            Ok(fs::write_all(f, &self.path, text.as_bytes())?)
        })
    }

    /// Removes the state file (after full success).
    pub fn remove(&self) -> Result<(), fs::IoError> {
        fs::remove_file_if_exists(&self.path)?;
        if let Some(dir) = self.path.parent() {
            fs::fsync_dir(dir)?;
        }
        Ok(())
    }
}

fn parse(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_remove() {
        let d = tempfile::tempdir().unwrap();
        let mut s = DeliveryState::load(d.path(), "000000010000000000000001").unwrap();
        assert!(!s.is_delivered("local none /a"));
        s.mark_delivered("local none /a".into());
        s.mark_delivered("remote zstd:3 rsync://h/m".into());
        s.save().unwrap();
        let s2 = DeliveryState::load(d.path(), "000000010000000000000001").unwrap();
        assert_eq!(s, s2);
        assert!(s2.is_delivered("remote zstd:3 rsync://h/m"));
        s2.remove().unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }
}

//! On-disk state the tools keep between calls.
//!
//! [`DeliveryState`] is pitr-archive's record of which destinations already hold a WAL file,
//! kept in `--state-dir` as `<wal name>.state`: while a delivery is incomplete, so that a retry by
//! PostgreSQL sends only to the destinations still missing it, and for a segment delivered ahead
//! (archive-ahead), so that PostgreSQL's call for it answers at once. It is a text file written
//! durably: location keys ([`crate::location::Location::key`]: kind, codec and target), one per
//! line, a `content SIZE CRC32C` line naming the content those destinations hold, and for a
//! segment delivered ahead an `ahead-of NAME` line naming the call that delivered it and an
//! `identical KEY` line for each destination that already held the same content (the call
//! answered from the record logs the warning SPEC asks for). A record whose content line
//! differs from the file PostgreSQL hands over is never used.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::fs::{self, Replace};
use crate::wal::{WalFileName, WalKind};

/// Size and CRC-32C of a WAL file's content: what a record is trusted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Content {
    /// Length in bytes.
    pub size: u64,
    /// CRC-32C (Castagnoli) of the whole content.
    pub crc32c: u32,
}

impl Content {
    /// The content of `bytes`.
    pub fn of(bytes: &[u8]) -> Content {
        Content {
            size: bytes.len() as u64,
            crc32c: crc32c::crc32c(bytes),
        }
    }
}

impl std::fmt::Display for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes, CRC-32C {:08x}", self.size, self.crc32c)
    }
}

/// Which destinations hold one WAL file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryState {
    path: PathBuf,
    delivered: BTreeSet<String>,
    content: Option<Content>,
    ahead_of: Option<String>,
    identical: BTreeSet<String>,
}

const HEADER: &str = "# pitr-archive delivery state: destinations that hold this file\n";
const CONTENT: &str = "content ";
const AHEAD_OF: &str = "ahead-of ";
const IDENTICAL: &str = "identical ";
const SUFFIX: &str = ".state";

impl DeliveryState {
    /// The state file for `wal_name` in `state_dir`.
    pub fn path_for(state_dir: &Path, wal_name: &str) -> PathBuf {
        state_dir.join(format!("{wal_name}{SUFFIX}"))
    }

    /// Loads the state of `wal_name` (empty when there is none).
    pub fn load(state_dir: &Path, wal_name: &str) -> Result<Self, fs::IoError> {
        let path = Self::path_for(state_dir, wal_name);
        let mut state = DeliveryState {
            path,
            ..DeliveryState::default()
        };
        match std::fs::read_to_string(&state.path) {
            Ok(text) => state.parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fs::IoError::new("reading", &state.path, e)),
        }
        Ok(state)
    }

    /// Whether the destination with this key holds the file.
    pub fn is_delivered(&self, key: &str) -> bool {
        self.delivered.contains(key)
    }

    /// Whether anything is recorded.
    pub fn is_empty(&self) -> bool {
        self.delivered.is_empty()
    }

    /// Records a delivery (in memory; see [`DeliveryState::save`]).
    pub fn mark_delivered(&mut self, key: String) {
        self.delivered.insert(key);
    }

    /// Records that the destination with this key already held the same content (in memory).
    pub fn mark_identical(&mut self, key: String) {
        self.identical.insert(key);
    }

    /// The keys of the destinations that already held the same content when it was delivered.
    pub fn identical(&self) -> impl Iterator<Item = &str> {
        self.identical.iter().map(String::as_str)
    }

    /// The content the recorded destinations hold, when the record names it.
    pub fn content(&self) -> Option<Content> {
        self.content
    }

    /// Names the content the recorded destinations hold.
    pub fn set_content(&mut self, content: Content) {
        self.content = Some(content);
    }

    /// The call that delivered this file ahead, if one did.
    pub fn ahead_of(&self) -> Option<&str> {
        self.ahead_of.as_deref()
    }

    /// Marks the record as made by the call for `asked`, ahead of PostgreSQL's own call.
    pub fn set_ahead_of(&mut self, asked: &str) {
        self.ahead_of = Some(asked.to_string());
    }

    /// Forgets everything recorded (a record for other content is worth nothing).
    pub fn clear(&mut self) {
        self.delivered.clear();
        self.content = None;
        self.ahead_of = None;
        self.identical.clear();
    }

    /// Writes the state durably.
    pub fn save(&self) -> anyhow::Result<()> {
        let mut text = String::from(HEADER);
        if let Some(c) = self.content {
            text.push_str(&format!("{CONTENT}{} {:08x}\n", c.size, c.crc32c));
        }
        if let Some(a) = &self.ahead_of {
            text.push_str(&format!("{AHEAD_OF}{a}\n"));
        }
        for k in &self.identical {
            text.push_str(&format!("{IDENTICAL}{k}\n"));
        }
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

    fn parse(&mut self, text: &str) {
        for line in text.lines().map(str::trim_end) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix(CONTENT) {
                // A content line that cannot be read makes the record worth nothing.
                let mut parts = rest.split(' ');
                let size = parts.next().and_then(|s| s.parse().ok());
                let crc = parts.next().and_then(|s| u32::from_str_radix(s, 16).ok());
                match (size, crc) {
                    (Some(size), Some(crc32c)) => self.content = Some(Content { size, crc32c }),
                    _ => {
                        self.clear();
                        return;
                    }
                }
            } else if let Some(rest) = line.strip_prefix(AHEAD_OF) {
                self.ahead_of = Some(rest.to_string());
            } else if let Some(rest) = line.strip_prefix(IDENTICAL) {
                self.identical.insert(rest.to_string());
            } else {
                self.delivered.insert(line.to_string());
            }
        }
    }
}

/// Removes the records that calls ahead made for segments ordered before `asked`: PostgreSQL
/// archives in order and never skips a segment, so such a record is left from a call that
/// answered from it and died before removing it. Records of incomplete deliveries of PostgreSQL's
/// own calls are left alone. Also removes the temporary files of records whose writer was
/// killed while saving them (the state dir is this host's own, so a writer that is not a live
/// process here is gone). Returns how many files were removed.
pub fn sweep_ahead_records(state_dir: &Path, asked: &WalFileName) -> Result<usize, fs::IoError> {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return Ok(0);
    };
    let mut removed =
        crate::tempname::sweep_stale(state_dir, std::time::Duration::ZERO, false)?.len();
    for entry in entries.flatten() {
        let Some(name) = segment_of(&entry.file_name()) else {
            continue;
        };
        if name >= *asked {
            continue;
        }
        let state = DeliveryState::load(state_dir, &name.to_string())?;
        if state.ahead_of().is_some() {
            fs::remove_file_if_exists(&state.path)?;
            removed += 1;
        }
    }
    if removed > 0 {
        fs::fsync_dir(state_dir)?;
    }
    Ok(removed)
}

/// The WAL segment whose state file a state dir entry named `file` is, if it is one.
fn segment_of(file: &std::ffi::OsStr) -> Option<WalFileName> {
    let name = WalFileName::parse(file.to_str()?.strip_suffix(SUFFIX)?).ok()?;
    (name.kind == WalKind::Segment).then_some(name)
}

/// The newest segment that a call or the archive-ahead worker delivered ahead and recorded, if
/// any record is left: where the worker goes on from (the segments up to it are recorded, or
/// were archived since, or are left to their own calls).
pub fn newest_ahead_record(state_dir: &Path) -> Result<Option<WalFileName>, fs::IoError> {
    let entries = match std::fs::read_dir(state_dir) {
        Ok(e) => e,
        Err(e) => return Err(fs::IoError::new("listing", state_dir, e)),
    };
    let mut newest: Option<WalFileName> = None;
    for entry in entries {
        let entry = entry.map_err(|e| fs::IoError::new("listing", state_dir, e))?;
        let Some(name) = segment_of(&entry.file_name()) else {
            continue;
        };
        if newest.is_some_and(|n| n >= name) {
            continue;
        }
        if DeliveryState::load(state_dir, &name.to_string())?
            .ahead_of()
            .is_some()
        {
            newest = Some(name);
        }
    }
    Ok(newest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_remove() {
        let d = tempfile::tempdir().unwrap();
        let mut s = DeliveryState::load(d.path(), "000000010000000000000001").unwrap();
        assert!(s.is_empty());
        assert!(!s.is_delivered("local none /a"));
        s.mark_delivered("local none /a".into());
        s.mark_delivered("remote zstd:3 rsync://h/m".into());
        s.set_content(Content::of(b"segment"));
        s.set_ahead_of("000000010000000000000000");
        s.mark_identical("remote zstd:3 rsync://h/m".into());
        s.save().unwrap();
        let s2 = DeliveryState::load(d.path(), "000000010000000000000001").unwrap();
        assert_eq!(s, s2);
        assert!(s2.is_delivered("remote zstd:3 rsync://h/m"));
        assert_eq!(
            s2.identical().collect::<Vec<_>>(),
            ["remote zstd:3 rsync://h/m"]
        );
        assert_eq!(s2.content(), Some(Content::of(b"segment")));
        assert_eq!(s2.ahead_of(), Some("000000010000000000000000"));
        s2.remove().unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_newest_ahead_record_is_the_workers_start() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(newest_ahead_record(d.path()).unwrap(), None);
        let save = |name: &str, ahead: bool| {
            let mut s = DeliveryState::load(d.path(), name).unwrap();
            s.mark_delivered("remote zstd:3 rsync://h/m".into());
            s.set_content(Content::of(b"segment"));
            if ahead {
                s.set_ahead_of("000000010000000000000001");
            }
            s.save().unwrap();
        };
        save("000000010000000000000003", true);
        save("000000010000000000000005", true);
        // A failed call's own state (no ahead-of) and other files are not records ahead.
        save("000000010000000000000009", false);
        std::fs::write(d.path().join("00000002.history.state"), "x\n").unwrap();
        std::fs::write(d.path().join(".ahead-worker.lock"), "").unwrap();
        assert_eq!(
            newest_ahead_record(d.path()).unwrap(),
            Some(WalFileName::parse("000000010000000000000005").unwrap())
        );
        assert!(newest_ahead_record(&d.path().join("missing")).is_err());
    }

    #[test]
    fn a_damaged_content_line_voids_the_record() {
        let d = tempfile::tempdir().unwrap();
        let path = DeliveryState::path_for(d.path(), "000000010000000000000001");
        std::fs::write(&path, "content 16777216 zz\nlocal none /a\n").unwrap();
        let s = DeliveryState::load(d.path(), "000000010000000000000001").unwrap();
        assert!(s.is_empty() && s.content().is_none());
        // An old retry state of PostgreSQL's own call (no content line) still counts, as before.
        std::fs::write(&path, "# header\nlocal none /a\n").unwrap();
        let s = DeliveryState::load(d.path(), "000000010000000000000001").unwrap();
        assert!(s.is_delivered("local none /a") && s.content().is_none());
    }

    #[test]
    fn only_records_made_ahead_for_earlier_segments_are_swept() {
        let d = tempfile::tempdir().unwrap();
        let save = |name: &str, ahead: bool| {
            let mut s = DeliveryState::load(d.path(), name).unwrap();
            s.mark_delivered("local none /a".into());
            if ahead {
                s.set_ahead_of("000000010000000000000001");
            }
            s.save().unwrap();
        };
        save("000000010000000000000002", true);
        save("000000010000000000000003", false);
        save("000000010000000000000005", true);
        save("00000002.history", true);
        let asked = WalFileName::parse("000000010000000000000004").unwrap();
        assert_eq!(sweep_ahead_records(d.path(), &asked).unwrap(), 1);
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "000000010000000000000003.state",
                "000000010000000000000005.state",
                "00000002.history.state"
            ]
        );
    }
}

//! What the log checks remember between calls, in `--state-dir`: how far each log file has been
//! read, when each WAL file's archiving and restoring started and ended, the backup runs, and
//! the ERROR and FATAL lines with which of them the `errors` check has already reported.
//!
//! The state is one JSON file, `pitr-monitor.state`, replaced durably (temporary name, fsync,
//! rename, directory fsync) after each call that read new lines; `pitr-monitor.lock` serialises
//! calls that share a state directory (Nagios runs several checks at once). This module also
//! holds the crate's only uses of `pitr_common::fs` and `pitr_common::lock`, so that the
//! durable write has one call site here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use pitr_common::exit::Failure;
use serde::{Deserialize, Serialize};

/// The state file's name in `--state-dir`.
pub const STATE_FILE: &str = "pitr-monitor.state";
/// The lock file's name in `--state-dir`.
pub const LOCK_FILE: &str = "pitr-monitor.lock";
/// The state format; a file of another version is read as empty (and replaced).
pub const VERSION: u32 = 1;

/// How long a call waits for another call holding the state directory's lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);
/// Archive and restore records that ended longer ago than this are dropped (OmniPITR: a week),
/// except the newest one, so an age check still sees it.
const SPAN_KEEP_SECS: f64 = 7.0 * 86_400.0;
/// Reported errors older than this are dropped (OmniPITR: three days).
const ERROR_KEEP_SECS: f64 = 3.0 * 86_400.0;
/// At most this many error lines are kept, the oldest dropped first.
const MAX_ERRORS: usize = 10_000;
/// At most this many backup runs are kept.
const MAX_BACKUPS: usize = 50;

/// How far a log file has been read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePos {
    /// Device and inode when it was read: another file under the name is read from the start.
    pub dev: u64,
    /// See `dev`.
    pub ino: u64,
    /// Bytes read (whole lines only).
    pub offset: u64,
    /// The first line (at most 64 bytes), hex: a file truncated and rewritten under the same
    /// inode (`log_truncate_on_rotation`) starts with another line.
    pub head: String,
}

/// The archiving or restoring of one WAL file, as the log tells it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// First `Called with parameters` naming it (Unix seconds): needs `--verbose` on the tool.
    pub start: Option<f64>,
    /// The latest such call.
    pub last_start: Option<f64>,
    /// The latest success line.
    pub end: Option<f64>,
    /// The latest call that ended without it (pitr-restore: not in the archive in standby
    /// mode, a finish request, the server gone). Absent in a state written before.
    #[serde(default)]
    pub unanswered: Option<f64>,
}

impl Span {
    /// When the latest call for it ended, with or without it.
    pub fn ended(&self) -> Option<f64> {
        match (self.end, self.unanswered) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// One pitr-backup (or omnipitr-backup-*) run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRun {
    /// The process.
    pub pid: u32,
    /// The program.
    pub program: String,
    /// Its first line.
    pub start: f64,
    /// Its `backup complete` line.
    pub end: Option<f64>,
    /// It logged an ERROR or FATAL line.
    pub failed: bool,
}

/// An ERROR or FATAL line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorLine {
    /// Increasing number: the `errors` check reports each number once.
    pub seq: u64,
    /// Unix seconds.
    pub epoch: f64,
    /// The time stamp as logged (`2026-11-25 02:43:15.123456 +0000`).
    pub timestamp: String,
    /// The process.
    pub pid: u32,
    /// The program (`pitr-archive`).
    pub program: String,
    /// `ERROR` or `FATAL`.
    pub level: String,
    /// The message.
    pub message: String,
}

/// Everything remembered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// [`VERSION`].
    pub version: u32,
    /// Log files by path.
    pub files: BTreeMap<String, FilePos>,
    /// Archiving, by WAL file name.
    pub archive: BTreeMap<String, Span>,
    /// Restoring, by WAL file name.
    pub restore: BTreeMap<String, Span>,
    /// Backup runs, oldest first.
    pub backups: Vec<BackupRun>,
    /// ERROR and FATAL lines, oldest first.
    pub errors: Vec<ErrorLine>,
    /// The next [`ErrorLine::seq`].
    pub next_error_seq: u64,
    /// Every error with a smaller `seq` has been reported by the `errors` check.
    pub errors_reported_below: u64,
    /// Unreported errors dropped because more than [`MAX_ERRORS`] piled up.
    pub errors_dropped: u64,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: VERSION,
            files: BTreeMap::new(),
            archive: BTreeMap::new(),
            restore: BTreeMap::new(),
            backups: Vec::new(),
            errors: Vec::new(),
            next_error_seq: 1,
            errors_reported_below: 1,
            errors_dropped: 0,
        }
    }
}

impl State {
    /// Drops what is too old to matter (see the constants), keeping the newest archive and
    /// restore record and every unreported error up to [`MAX_ERRORS`].
    pub fn prune(&mut self, now: f64) {
        for spans in [&mut self.archive, &mut self.restore] {
            let newest = spans
                .iter()
                .filter_map(|(k, s)| s.end.map(|e| (e, k.clone())))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| k);
            spans.retain(|k, s| {
                Some(k) == newest.as_ref() || s.ended().is_none_or(|e| now - e < SPAN_KEEP_SECS)
            });
        }
        let reported = self.errors_reported_below;
        self.errors
            .retain(|e| e.seq >= reported || now - e.epoch < ERROR_KEEP_SECS);
        if self.errors.len() > MAX_ERRORS {
            let excess = self.errors.len() - MAX_ERRORS;
            self.errors_dropped += self
                .errors
                .iter()
                .take(excess)
                .filter(|e| e.seq >= reported)
                .count() as u64;
            self.errors.drain(..excess);
        }
        if self.backups.len() > MAX_BACKUPS {
            let excess = self.backups.len() - MAX_BACKUPS;
            self.backups.drain(..excess);
        }
    }
}

/// The state directory, locked for this call.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    _lock: pitr_common::lock::LockGuard,
}

impl StateDir {
    /// Takes the directory's lock, waiting up to half a minute for another call to finish.
    pub fn lock(dir: &Path) -> anyhow::Result<StateDir> {
        let path = dir.join(LOCK_FILE);
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            if let Some(guard) = pitr_common::lock::try_lock(&path)? {
                return Ok(StateDir {
                    dir: dir.to_path_buf(),
                    _lock: guard,
                });
            }
            if Instant::now() >= deadline {
                return Err(Failure::new(format!(
                    "another pitr-monitor has held {} for {} s",
                    path.display(),
                    LOCK_WAIT.as_secs()
                ))
                .hint("a check that hangs keeps the lock: look for a stuck pitr-monitor process")
                .into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Reads the state; a missing file, or one of another version, is an empty state.
    pub fn load(&self) -> anyhow::Result<State> {
        let path = self.dir.join(STATE_FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(pitr_common::fs::IoError::new("reading", &path, e).into()),
        };
        let version: Option<u32> = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("version")?.as_u64())
            .and_then(|v| u32::try_from(v).ok());
        if version != Some(VERSION) {
            return Ok(State::default());
        }
        serde_json::from_slice(&text).map_err(|e| {
            Failure::new(format!("cannot parse state file {}: {e}", path.display()))
                .hint("remove it: the next call reads the logs again from their start")
                .into()
        })
    }

    /// Replaces the state file durably.
    pub fn save(&self, state: &State) -> anyhow::Result<()> {
        let path = self.dir.join(STATE_FILE);
        let text = serde_json::to_vec(state).context("serialising the state")?;
        write_file_durably(&path, &text)
    }
}

/// Writes `bytes` to `path` durably, replacing it atomically: a reader sees the old file or the
/// new one, never part of one.
pub fn write_file_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use pitr_common::fs;
    fs::write_durable(path, fs::Replace::Allow, None, |f| {
        Ok(fs::write_all(f, path, bytes)?)
    })
    .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn err(seq: u64, epoch: f64) -> ErrorLine {
        ErrorLine {
            seq,
            epoch,
            timestamp: String::new(),
            pid: 1,
            program: "pitr-archive".into(),
            level: "ERROR".into(),
            message: format!("e{seq}"),
        }
    }

    #[test]
    fn round_trip_through_the_state_dir() {
        let d = tempfile::tempdir().unwrap();
        let sd = StateDir::lock(d.path()).unwrap();
        assert_eq!(sd.load().unwrap(), State::default());
        let mut s = State::default();
        s.archive.insert(
            "000000010000000000000001".into(),
            Span {
                start: Some(1.0),
                last_start: Some(1.0),
                end: Some(2.5),
                unanswered: None,
            },
        );
        s.errors.push(err(1, 3.0));
        sd.save(&s).unwrap();
        assert_eq!(sd.load().unwrap(), s);
        // No temporary file is left beside it.
        let names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // Another version is read as empty; garbage is an error with a hint.
        std::fs::write(d.path().join(STATE_FILE), br#"{"version": 99}"#).unwrap();
        assert_eq!(sd.load().unwrap(), State::default());
        std::fs::write(d.path().join(STATE_FILE), br#"{"version": 1, "files": 3}"#).unwrap();
        let e = sd.load().unwrap_err();
        assert!(
            format!("{e:#}").starts_with("cannot parse state file"),
            "{e:#}"
        );
    }

    #[test]
    fn a_second_caller_waits_for_the_lock() {
        let d = tempfile::tempdir().unwrap();
        let first = StateDir::lock(d.path()).unwrap();
        let path = d.path().to_path_buf();
        let waiter = std::thread::spawn(move || StateDir::lock(&path).map(|_| Instant::now()));
        std::thread::sleep(Duration::from_millis(300));
        let released = Instant::now();
        drop(first);
        let got = waiter.join().unwrap().unwrap();
        assert!(got >= released);
    }

    #[test]
    fn prune_keeps_the_newest_span_and_unreported_errors() {
        let now = 100.0 * 86_400.0;
        let mut s = State::default();
        let old = now - 8.0 * 86_400.0;
        for (name, end) in [("A", old - 10.0), ("B", old), ("C", old - 5.0)] {
            s.archive.insert(
                name.into(),
                Span {
                    start: None,
                    last_start: None,
                    end: Some(end),
                    unanswered: None,
                },
            );
        }
        s.archive.insert("D".into(), Span::default());
        s.errors = vec![err(1, old), err(2, old), err(3, now)];
        s.errors_reported_below = 2;
        s.prune(now);
        assert_eq!(s.archive.keys().collect::<Vec<_>>(), ["B", "D"]);
        assert_eq!(
            s.errors.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [2, 3],
            "reported old error 1 goes, unreported old error 2 stays"
        );
    }
}

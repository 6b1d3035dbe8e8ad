//! Backup sets: how pitr-backup names its output files, the meta file that marks a set
//! complete, and finding sets in a directory.
//!
//! A set is up to four files named from one `--filename-template` (OmniPITR's syntax:
//! `__HOSTNAME__`, `__FILETYPE__` (required), `__CEXT__` (the codec's extension), `^` for the
//! `%` of `strftime(3)`, evaluated once when the backup starts): the data archive (`data`), the
//! WAL archive (`xlog`), a `sha256sum -c` digest file (`sha256`) and the meta file (`meta`),
//! written last. The meta file is plain `Key: value` text (OmniPITR's `Min-Xlog`,
//! `Started-epoch`, `Timezone`, `Hostname`, then ours); a set without a readable meta file is
//! incomplete. Readers (pitr-restore `--from-backup`, pitr-cleanup) find sets by their meta
//! files' content, whatever template made them: see [`list_local`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use crate::compress::Codec;
use crate::fs::IoError;
use crate::wal::{Lsn, Timeline, WalFileName};

/// The default `--filename-template`: OmniPITR's, plus the time of day so that two backups a
/// day do not collide.
pub const DEFAULT_TEMPLATE: &str = "__HOSTNAME__-__FILETYPE__-^Y-^m-^d_^H^M^S.tar__CEXT__";

/// The file pitr-backup puts into the `--xlogs` directory it creates, holding its PID: it
/// proves that a leftover directory (after `kill -9`) is ours and may be removed, and tells
/// pitr-archive's `--dst-backup` whether the backup that wants the WAL still runs.
pub const XLOGS_MARKER: &str = ".pitr-backup-xlogs";

/// Whether the `--xlogs` directory `dir` belongs to a pitr-backup that is gone: its marker
/// names a process that does not exist. A directory without a readable marker, or whose marker
/// names a live process, is not (the backup may be starting, or still running).
pub fn xlogs_owner_gone(dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(dir.join(XLOGS_MARKER)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    (!crate::signal::process_alive(pid)).then_some(pid)
}

const HOSTNAME: &str = "__HOSTNAME__";
const FILETYPE: &str = "__FILETYPE__";
const CEXT: &str = "__CEXT__";

/// The largest meta file [`list_local`] reads; anything bigger is not one.
pub const MAX_META_SIZE: u64 = 64 * 1024;

/// The files of a backup set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// The data directory archive (tar, compressed with the destination's codec).
    Data,
    /// The WAL archive (tar of `pg_wal/<segment>` entries).
    Xlog,
    /// The digest file, `sha256sum -c` format.
    Sha256,
    /// The meta file, written last.
    Meta,
}

impl FileType {
    /// The `__FILETYPE__` value.
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Data => "data",
            FileType::Xlog => "xlog",
            FileType::Sha256 => "sha256",
            FileType::Meta => "meta",
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem with a template, a meta file or a set directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The template lacks `__FILETYPE__`.
    #[error("filename template {0:?} does not contain __FILETYPE__")]
    NoFileType(String),
    /// The template would name a file in another directory.
    #[error("filename template {0:?} contains '/'")]
    Slash(String),
    /// The template cannot be expanded.
    #[error("filename template {template:?} cannot be expanded")]
    Expand {
        /// The template.
        template: String,
        /// Why.
        #[source]
        source: crate::log::Error,
    },
    /// The expanded name is unusable (a hostname with `/`, an empty name, `.`/`..`).
    #[error("filename template {template:?} gives the unusable file name {name:?}")]
    BadName {
        /// The template.
        template: String,
        /// The name.
        name: String,
    },
    /// A meta file line is missing or malformed.
    #[error("meta file: {0}")]
    Meta(String),
    /// A directory or file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// A validated `--filename-template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilenameTemplate(String);

impl FilenameTemplate {
    /// Checks that `s` has `__FILETYPE__` and no `/`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if !s.contains(FILETYPE) {
            return Err(Error::NoFileType(s.to_string()));
        }
        if s.contains('/') {
            return Err(Error::Slash(s.to_string()));
        }
        Ok(FilenameTemplate(s.to_string()))
    }

    /// The template as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Evaluates the time (`^` marks, local time at `at`) and the hostname, once for a whole
    /// set; the file type and codec are filled in per file by [`SetNames::name`].
    pub fn stamp(&self, hostname: &str, at: SystemTime) -> Result<SetNames, Error> {
        let expanded =
            crate::log::expand_time_template(&self.0, at).map_err(|source| Error::Expand {
                template: self.0.clone(),
                source,
            })?;
        let stamped = expanded.replace(HOSTNAME, hostname);
        let names = SetNames {
            template: self.0.clone(),
            stamped,
        };
        // Check one name now, so that a bad hostname fails before any work is done.
        for ft in [FileType::Data, FileType::Meta] {
            names.checked_name(ft, Codec::None)?;
        }
        Ok(names)
    }
}

impl FromStr for FilenameTemplate {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FilenameTemplate::parse(s)
    }
}

impl Default for FilenameTemplate {
    fn default() -> Self {
        FilenameTemplate(DEFAULT_TEMPLATE.to_string())
    }
}

/// The names of one backup set: the template with time and hostname filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetNames {
    template: String,
    stamped: String,
}

impl SetNames {
    /// The file name of `file_type` for a destination with `codec`.
    pub fn name(&self, file_type: FileType, codec: Codec) -> String {
        self.stamped
            .replace(FILETYPE, file_type.as_str())
            .replace(CEXT, codec.extension())
    }

    fn checked_name(&self, file_type: FileType, codec: Codec) -> Result<String, Error> {
        let name = self.name(file_type, codec);
        if name.is_empty() || name == "." || name == ".." || name.contains('/') {
            return Err(Error::BadName {
                template: self.template.clone(),
                name,
            });
        }
        Ok(name)
    }
}

/// This machine's host name (`gethostname(2)`), for `__HOSTNAME__` and the meta file.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length, which is what we pass.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast::<libc::c_char>(), buf.len()) };
    if r != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// The content of a meta file: what a set holds and where its WAL starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The first WAL segment the backup needs (OmniPITR's `Min-Xlog`): WAL before it may go.
    pub min_xlog: WalFileName,
    /// Start of the backup, Unix seconds (`Started-epoch`).
    pub started_epoch: i64,
    /// Local UTC offset at the start, `+0100` (`Timezone`).
    pub timezone: String,
    /// The host that took the backup (`Hostname`).
    pub hostname: String,
    /// The last WAL segment the backup needs (`Stop-Xlog`).
    pub stop_xlog: WalFileName,
    /// The backup's start location, REDO of its checkpoint (`Start-LSN`).
    pub start_lsn: Lsn,
    /// The backup's stop location (`Stop-LSN`).
    pub stop_lsn: Lsn,
    /// The timeline of the backup (`Timeline`).
    pub timeline: Timeline,
    /// The backup label (`Label`).
    pub label: String,
    /// `primary` or `standby` (`Backup-From`).
    pub backup_from: String,
    /// The database system identifier (`System-Identifier`).
    pub system_identifier: u64,
    /// The server version, `15.4` (`PostgreSQL-Version`).
    pub postgresql_version: String,
    /// Size in bytes of the data file as stored (`Data-Size`).
    pub data_size: u64,
    /// Size in bytes of the WAL file as stored, 0 without one (`Xlog-Size`).
    pub xlog_size: u64,
    /// The data file's name (`Data-File`).
    pub data_file: String,
    /// The WAL file's name, absent with `--skip-xlogs` (`Xlog-File`).
    pub xlog_file: Option<String>,
    /// The digest file's name (`Digest-File`).
    pub digest_file: String,
    /// End of the backup, Unix seconds (`Finished-epoch`).
    pub finished_epoch: i64,
}

impl Meta {
    /// The meta file's text: one `Key: value` line per field, OmniPITR's four keys first.
    pub fn render(&self) -> String {
        let mut s = format!(
            "Min-Xlog: {}\nStarted-epoch: {}\nTimezone: {}\nHostname: {}\n\
             Stop-Xlog: {}\nStart-LSN: {}\nStop-LSN: {}\nTimeline: {}\nLabel: {}\n\
             Backup-From: {}\nSystem-Identifier: {}\nPostgreSQL-Version: {}\n\
             Data-File: {}\nData-Size: {}\n",
            self.min_xlog,
            self.started_epoch,
            self.timezone,
            self.hostname,
            self.stop_xlog,
            self.start_lsn,
            self.stop_lsn,
            self.timeline,
            self.label,
            self.backup_from,
            self.system_identifier,
            self.postgresql_version,
            self.data_file,
            self.data_size,
        );
        if let Some(x) = &self.xlog_file {
            s.push_str(&format!("Xlog-File: {x}\n"));
        }
        s.push_str(&format!(
            "Xlog-Size: {}\nDigest-File: {}\nFinished-epoch: {}\n",
            self.xlog_size, self.digest_file, self.finished_epoch
        ));
        s
    }

    /// Parses a meta file (unknown keys are ignored, so later versions may add some).
    pub fn parse(text: &str) -> Result<Meta, Error> {
        let get = |key: &str| -> Option<&str> {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
                .map(str::trim_end)
        };
        let req = |key: &str| get(key).ok_or_else(|| Error::Meta(format!("no {key} line")));
        fn typed<T: FromStr>(key: &str, v: &str) -> Result<T, Error> {
            v.parse()
                .map_err(|_| Error::Meta(format!("bad {key} value {v:?}")))
        }
        // Names of the set's files: plain names in the set's directory, never a path (a meta
        // file naming ../x must not make retention remove x).
        let file = |key: &str, v: &str| -> Result<String, Error> {
            if v.is_empty() || v == "." || v == ".." || v.contains('/') || v.contains('\0') {
                Err(Error::Meta(format!(
                    "bad {key} value {v:?}: not a file name"
                )))
            } else {
                Ok(v.to_string())
            }
        };
        let wal = |key: &str| -> Result<WalFileName, Error> {
            let v = req(key)?;
            WalFileName::parse(v).map_err(|_| Error::Meta(format!("bad {key} value {v:?}")))
        };
        Ok(Meta {
            min_xlog: wal("Min-Xlog")?,
            started_epoch: typed("Started-epoch", req("Started-epoch")?)?,
            timezone: req("Timezone")?.to_string(),
            hostname: req("Hostname")?.to_string(),
            stop_xlog: wal("Stop-Xlog")?,
            start_lsn: typed("Start-LSN", req("Start-LSN")?)?,
            stop_lsn: typed("Stop-LSN", req("Stop-LSN")?)?,
            timeline: typed("Timeline", req("Timeline")?)?,
            label: req("Label")?.to_string(),
            backup_from: req("Backup-From")?.to_string(),
            system_identifier: typed("System-Identifier", req("System-Identifier")?)?,
            postgresql_version: req("PostgreSQL-Version")?.to_string(),
            data_size: typed("Data-Size", req("Data-Size")?)?,
            xlog_size: typed("Xlog-Size", req("Xlog-Size")?)?,
            data_file: file("Data-File", req("Data-File")?)?,
            xlog_file: get("Xlog-File").map(|v| file("Xlog-File", v)).transpose()?,
            digest_file: file("Digest-File", req("Digest-File")?)?,
            finished_epoch: typed("Finished-epoch", req("Finished-epoch")?)?,
        })
    }
}

/// A backup set found in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundSet {
    /// The meta file.
    pub meta_path: PathBuf,
    /// Its content.
    pub meta: Meta,
}

impl FoundSet {
    /// The directory holding the set.
    pub fn dir(&self) -> &Path {
        self.meta_path.parent().unwrap_or(Path::new("."))
    }

    /// The paths of the set's files, meta file last (the order to remove them in reverse).
    pub fn files(&self) -> Vec<PathBuf> {
        let dir = self.dir();
        let mut v = vec![dir.join(&self.meta.data_file)];
        if let Some(x) = &self.meta.xlog_file {
            v.push(dir.join(x));
        }
        v.push(dir.join(&self.meta.digest_file));
        v.push(self.meta_path.clone());
        v
    }
}

/// The complete backup sets in `dir` (those with a readable meta file), oldest first. Hidden
/// files (temporary names) and files too big to be meta files are skipped without reading.
pub fn list_local(dir: &Path) -> Result<Vec<FoundSet>, Error> {
    let rd = std::fs::read_dir(dir).map_err(|e| IoError::new("listing", dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| IoError::new("listing", dir, e))?;
        let name = ent.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = ent.path();
        let Ok(m) = ent.metadata() else { continue };
        if !m.is_file() || m.len() > MAX_META_SIZE {
            continue;
        }
        let mut head = [0u8; 10];
        let is_meta = std::fs::File::open(&path)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok()
            && &head == b"Min-Xlog: ";
        if !is_meta {
            continue;
        }
        let text = crate::fs::read(&path)?;
        match Meta::parse(&String::from_utf8_lossy(&text)) {
            Ok(meta) => out.push(FoundSet {
                meta_path: path,
                meta,
            }),
            // Neither kept nor removed, nor restorable: an operator must look at it.
            Err(e) => crate::log_warning!(
                "{} looks like a backup set's meta file but cannot be read ({e}); its set is left alone",
                path.display()
            ),
        }
    }
    out.sort_by(|a, b| {
        (a.meta.started_epoch, &a.meta_path).cmp(&(b.meta.started_epoch, &b.meta_path))
    });
    Ok(out)
}

/// Prefix of the hidden file that records a set being written or removed.
pub const INTENT_PREFIX: &str = ".pitr-set.";

/// What a [`SetIntent`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentAction {
    /// pitr-backup is putting the set's files under their final names.
    Write,
    /// pitr-cleanup is removing the set.
    Remove,
}

impl IntentAction {
    fn as_str(self) -> &'static str {
        match self {
            IntentAction::Write => "write",
            IntentAction::Remove => "remove",
        }
    }
}

/// A set whose files are being given (or losing) their final names: recorded durably in a
/// hidden file of the directory before the first file changes, removed once the set is whole
/// (or gone). A process killed in between leaves it behind, and [`sweep_intents`] (pitr-cleanup,
/// and pitr-backup before it starts) finishes the job: an unfinished write is undone (the
/// set never got its meta file, so nobody took it for a backup), an unfinished removal is
/// completed. So after `kill -9` only hidden files remain, and the next run removes those.
#[derive(Debug)]
pub struct SetIntent {
    path: PathBuf,
    dir: PathBuf,
}

impl SetIntent {
    /// Records that `files` of the set whose meta file is `meta_name` in `dir` are about to be
    /// written or removed.
    pub fn begin(
        dir: &Path,
        meta_name: &str,
        action: IntentAction,
        files: &[String],
    ) -> anyhow::Result<SetIntent> {
        let path = dir.join(format!("{INTENT_PREFIX}{meta_name}"));
        let text = IntentRecord::ours(action, meta_name, files).text();
        crate::fs::write_durable(&path, crate::fs::Replace::Allow, None, |f| {
            Ok(crate::fs::write_all(f, &path, text.as_bytes())?)
        })?;
        Ok(SetIntent {
            path,
            dir: dir.to_path_buf(),
        })
    }

    /// The set is whole (or gone): the record goes.
    pub fn end(self) -> Result<(), IoError> {
        crate::fs::remove_file_if_exists(&self.path)?;
        crate::fs::fsync_dir(&self.dir)
    }
}

/// The content of a set's intent record: `action: write|remove`, `pid: N`, `host: NAME`,
/// `meta: NAME`, then one `file: NAME` line per other file of the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentRecord {
    /// What the writer was doing.
    pub action: IntentAction,
    /// The writer's process, when recorded.
    pub pid: Option<u32>,
    /// The writer's host, when recorded (records of older versions have none).
    pub host: Option<String>,
    /// The set's meta file name.
    pub meta: String,
    /// The set's other file names.
    pub files: Vec<String>,
}

impl IntentRecord {
    /// A record of this process on this host.
    pub fn ours(action: IntentAction, meta: &str, files: &[String]) -> IntentRecord {
        IntentRecord {
            action,
            pid: Some(std::process::id()),
            host: Some(hostname()),
            meta: meta.to_owned(),
            files: files.to_vec(),
        }
    }

    /// The record as stored.
    pub fn text(&self) -> String {
        let mut text = format!("action: {}\n", self.action.as_str());
        if let Some(pid) = self.pid {
            text.push_str(&format!("pid: {pid}\n"));
        }
        if let Some(host) = &self.host {
            text.push_str(&format!("host: {host}\n"));
        }
        text.push_str(&format!("meta: {}\n", self.meta));
        for f in &self.files {
            text.push_str(&format!("file: {f}\n"));
        }
        text
    }

    /// Reads a stored record; an unknown action reads as a write (undone, never completed).
    pub fn parse(text: &str) -> IntentRecord {
        let field = |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
        IntentRecord {
            action: match field("action: ") {
                Some("remove") => IntentAction::Remove,
                _ => IntentAction::Write,
            },
            pid: field("pid: ").and_then(|p| p.parse().ok()),
            host: field("host: ").map(str::to_owned),
            meta: field("meta: ").unwrap_or_default().to_owned(),
            files: text
                .lines()
                .filter_map(|l| l.strip_prefix("file: "))
                .map(|f| f.trim().to_owned())
                .collect(),
        }
    }

    /// Whether the writer may still be at work: its process is alive on this host, or it
    /// wrote from another host (whose processes cannot be seen from here).
    pub fn writer_may_be_alive(&self) -> bool {
        match &self.host {
            Some(h) if *h != hostname() => true,
            _ => self.pid.is_some_and(crate::signal::process_alive),
        }
    }

    /// The names to remove to finish the job, meta file first (a half-removed set is never
    /// taken for a whole one); names with a `/`, `.` and `..` are never taken.
    pub fn names_to_remove(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in std::iter::once(&self.meta).chain(&self.files) {
            if !matches!(f.as_str(), "" | "." | "..") && !f.contains('/') && !out.contains(f) {
                out.push(f.clone());
            }
        }
        out
    }
}

/// What [`sweep_intents`] did with one left-behind record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    /// The set's meta file name.
    pub meta: String,
    /// What the killed process was doing.
    pub action: IntentAction,
    /// The files removed (or that would be, with `dry_run`).
    pub removed: Vec<PathBuf>,
}

/// Finishes what killed writers and removers of backup sets left in `dir`: each record whose
/// process is gone is an unfinished write (undone, unless its meta file made it: then the set
/// is whole and only the record goes) or an unfinished removal (completed). A record of
/// another host's process is left alone: a directory two hosts share (NFS) would otherwise
/// lose a set that host is still writing, its data file already linked, its meta file not yet.
pub fn sweep_intents(dir: &Path, dry_run: bool) -> anyhow::Result<Vec<Swept>> {
    sweep_intents_after(dir, dry_run, crate::tempname::stale_age())
}

/// [`sweep_intents`], with a record's temporary file (written, not yet linked into place)
/// removed only once its writer is not alive here and it has not changed for `temp_age`: its
/// name carries a pid but no host.
fn sweep_intents_after(
    dir: &Path,
    dry_run: bool,
    temp_age: Duration,
) -> anyhow::Result<Vec<Swept>> {
    if !dry_run {
        for p in crate::tempname::stale(dir, temp_age)? {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            // A record whose writer died before it was linked into place: nothing acted on it.
            if name
                .as_deref()
                .and_then(crate::tempname::parse)
                .is_some_and(|t| t.base.starts_with(INTENT_PREFIX))
            {
                crate::fs::remove_file_if_exists(&p)?;
            }
        }
    }
    let rd = std::fs::read_dir(dir).map_err(|e| IoError::new("listing", dir, e))?;
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| IoError::new("listing", dir, e))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if crate::tempname::parse(&name).is_some() || !name.starts_with(INTENT_PREFIX) {
            continue;
        }
        let path = ent.path();
        let text = crate::fs::read(&path)?;
        let record = IntentRecord::parse(&String::from_utf8_lossy(&text));
        if record.writer_may_be_alive() {
            continue;
        }
        let IntentRecord { action, meta, .. } = record.clone();
        let whole = action == IntentAction::Write && !meta.is_empty() && dir.join(&meta).is_file();
        let mut removed = Vec::new();
        if !whole {
            for f in record.names_to_remove() {
                let p = dir.join(f);
                if p.symlink_metadata().is_ok() {
                    if !dry_run {
                        crate::fs::remove_file_if_exists(&p)?;
                    }
                    removed.push(p);
                }
            }
        }
        if !dry_run {
            crate::fs::remove_file_if_exists(&path)?;
            crate::fs::fsync_dir(dir)?;
        }
        out.push(Swept {
            meta,
            action,
            removed,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn sample() -> Meta {
        Meta {
            min_xlog: WalFileName::parse("000000010000000000000002").unwrap(),
            started_epoch: 1_795_574_577,
            timezone: "+0000".into(),
            hostname: "vm".into(),
            stop_xlog: WalFileName::parse("000000010000000000000003").unwrap(),
            start_lsn: Lsn(0x0200_0028),
            stop_lsn: Lsn(0x0300_0100),
            timeline: Timeline(1),
            label: "pitr-backup vm".into(),
            backup_from: "primary".into(),
            system_identifier: 7_000_000_000_000_000_001,
            postgresql_version: "15.4".into(),
            data_size: 1234,
            xlog_size: 99,
            data_file: "vm-data-2026-11-25_024257.tar.zst".into(),
            xlog_file: Some("vm-xlog-2026-11-25_024257.tar.zst".into()),
            digest_file: "vm-sha256-2026-11-25_024257.tar.zst".into(),
            finished_epoch: 1_795_574_600,
        }
    }

    #[test]
    fn intents_left_by_killed_processes_are_finished() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "a-data", "a-xlog", "a-sha", "b-data", "b-sha", "b-meta", "c-data", "c-meta",
        ] {
            std::fs::write(d.path().join(f), f).unwrap();
        }
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // A write that never got its meta file, a write that did, a removal half done.
        let a = SetIntent::begin(
            d.path(),
            "a-meta",
            IntentAction::Write,
            &names(&["a-data", "a-xlog", "a-sha"]),
        )
        .unwrap();
        let b = SetIntent::begin(
            d.path(),
            "b-meta",
            IntentAction::Write,
            &names(&["b-data", "b-sha"]),
        )
        .unwrap();
        let c = SetIntent::begin(
            d.path(),
            "c-meta",
            IntentAction::Remove,
            &names(&["c-data"]),
        )
        .unwrap();
        // Ours, alive: left alone.
        assert!(sweep_intents(d.path(), false).unwrap().is_empty());
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        for i in [&a, &b, &c] {
            let t = std::fs::read_to_string(&i.path).unwrap();
            std::fs::write(
                &i.path,
                t.replace(
                    &format!("pid: {}", std::process::id()),
                    &format!("pid: {dead_pid}"),
                ),
            )
            .unwrap();
        }
        let would = sweep_intents(d.path(), true).unwrap();
        assert_eq!(would.len(), 3);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 11);
        let mut swept = sweep_intents(d.path(), false).unwrap();
        swept.sort_by(|x, y| x.meta.cmp(&y.meta));
        assert_eq!(swept[0].removed.len(), 3, "{swept:?}");
        assert!(swept[1].removed.is_empty(), "a whole set stays: {swept:?}");
        assert_eq!(swept[2].removed.len(), 2, "{swept:?}");
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["b-data", "b-meta", "b-sha"]);
    }

    #[test]
    fn template_validation_and_names() {
        assert!(matches!(
            FilenameTemplate::parse("backup-^Y.tar"),
            Err(Error::NoFileType(_))
        ));
        assert!(matches!(
            FilenameTemplate::parse("a/__FILETYPE__"),
            Err(Error::Slash(_))
        ));
        let t = FilenameTemplate::parse("__HOSTNAME__-__FILETYPE__-^Y%.tar__CEXT__").unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_795_574_595);
        let names = t.stamp("vm", at).unwrap();
        let year = crate::log::expand_time_template("^Y", at).unwrap();
        assert_eq!(
            names.name(FileType::Data, Codec::Zstd(3)),
            format!("vm-data-{year}%.tar.zst")
        );
        assert_eq!(
            names.name(FileType::Meta, Codec::None),
            format!("vm-meta-{year}%.tar")
        );
        assert!(matches!(t.stamp("a/b", at), Err(Error::BadName { .. })));
        assert!(FilenameTemplate::default().as_str().contains("^H^M^S"));
    }

    #[test]
    fn meta_round_trip() {
        let m = sample();
        let text = m.render();
        assert!(text.starts_with(
            "Min-Xlog: 000000010000000000000002\nStarted-epoch: 1795574577\nTimezone: +0000\nHostname: vm\n"
        ));
        assert!(text.ends_with("Finished-epoch: 1795574600\n"));
        assert_eq!(Meta::parse(&text).unwrap(), m);
        let no_xlog = Meta {
            xlog_file: None,
            xlog_size: 0,
            ..m
        };
        assert_eq!(Meta::parse(&no_xlog.render()).unwrap(), no_xlog);
        assert_eq!(
            Meta::parse("Min-Xlog: 000000010000000000000002\n")
                .unwrap_err()
                .to_string(),
            "meta file: no Started-epoch line"
        );
        // A meta file naming a path outside its directory is not a set.
        for bad in ["../victim", "/etc/passwd", "..", ""] {
            let m = Meta {
                data_file: bad.into(),
                ..sample()
            };
            assert!(Meta::parse(&m.render()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lists_complete_sets_only() {
        let d = tempfile::tempdir().unwrap();
        let mut a = sample();
        a.started_epoch = 20;
        let mut b = sample();
        b.started_epoch = 10;
        std::fs::write(d.path().join("a-meta"), a.render()).unwrap();
        std::fs::write(d.path().join("b-meta"), b.render()).unwrap();
        std::fs::write(d.path().join(".c-meta.pitr-tmp.1"), b.render()).unwrap();
        std::fs::write(d.path().join("a-data"), b"Min-Xlog: garbage").unwrap();
        std::fs::write(d.path().join("x"), b"other").unwrap();
        let sets = list_local(d.path()).unwrap();
        let names: Vec<_> = sets
            .iter()
            .map(|s| {
                s.meta_path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["b-meta", "a-meta"]);
        assert_eq!(sets[0].files().len(), 4);
        assert_eq!(sets[0].files()[3], d.path().join("b-meta"));
    }

    #[test]
    fn intent_records_round_trip_and_read_older_ones() {
        let r = IntentRecord::ours(
            IntentAction::Remove,
            "vm-meta-x",
            &["vm-data-x.tar.zst".into(), "../escape".into(), "..".into()],
        );
        assert_eq!(IntentRecord::parse(&r.text()), r);
        assert!(r.writer_may_be_alive(), "this process is alive");
        assert_eq!(r.names_to_remove(), ["vm-meta-x", "vm-data-x.tar.zst"]);
        // A record of an older version: no host line, an unknown action reads as a write.
        let old = IntentRecord::parse("action: ???\npid: 4000000\nmeta: m\nfile: d\n");
        assert_eq!(old.action, IntentAction::Write);
        assert_eq!((old.pid, old.host.as_deref()), (Some(4_000_000), None));
        assert!(!old.writer_may_be_alive());
        // Another host's writer is never taken for dead.
        let elsewhere = IntentRecord {
            host: Some(format!("not-{}", hostname())),
            ..old
        };
        assert!(elsewhere.writer_may_be_alive());
    }

    #[test]
    fn hostname_is_not_empty() {
        assert!(!hostname().is_empty());
    }

    /// The pid of a process that has exited.
    fn dead_pid() -> u32 {
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let pid = dead.id();
        dead.wait().unwrap();
        pid
    }

    #[test]
    fn sweep_removes_an_intent_record_its_dead_writer_never_linked() {
        let d = tempfile::tempdir().unwrap();
        let dead_pid = dead_pid();
        let torn = d
            .path()
            .join(format!(".{INTENT_PREFIX}vm-meta-x.pitr-tmp.{dead_pid}"));
        let live = d.path().join(format!(
            ".{INTENT_PREFIX}vm-meta-y.pitr-tmp.{}",
            std::process::id()
        ));
        std::fs::write(&torn, "action: remove\n").unwrap();
        std::fs::write(&live, "action: remove\n").unwrap();
        let sweep = |dry_run| sweep_intents_after(d.path(), dry_run, Duration::ZERO).unwrap();
        assert!(sweep(true).is_empty());
        assert!(torn.exists(), "a dry run removed {}", torn.display());
        // Its name carries no host: a young one may be another host's writer's.
        assert!(sweep_intents(d.path(), false).unwrap().is_empty());
        assert!(
            torn.exists(),
            "a fresh record of a pid not alive here was removed"
        );
        assert!(sweep(false).is_empty());
        assert!(!torn.exists());
        assert!(live.exists());
    }

    /// A directory two hosts share: a set another host is writing (its data file linked, its
    /// meta file not yet) was undone by this host's sweep, its writer's pid not alive here.
    #[test]
    fn sweep_leaves_another_hosts_unfinished_write_alone() {
        let d = tempfile::tempdir().unwrap();
        let dead_pid = dead_pid();
        let files = vec!["vm-data-x.tar.zst".to_string()];
        let mut record = IntentRecord::ours(IntentAction::Write, "vm-meta-x", &files);
        record.pid = Some(dead_pid);
        record.host = Some(format!("not-{}", hostname()));
        let path = d.path().join(format!("{INTENT_PREFIX}vm-meta-x"));
        std::fs::write(&path, record.text()).unwrap();
        std::fs::write(d.path().join(&files[0]), b"data").unwrap();
        assert!(sweep_intents(d.path(), false).unwrap().is_empty());
        assert!(path.exists());
        assert!(d.path().join(&files[0]).exists());
        // This host's dead writer: undone.
        record.host = Some(hostname());
        std::fs::write(&path, record.text()).unwrap();
        let swept = sweep_intents(d.path(), false).unwrap();
        assert_eq!(swept.len(), 1);
        assert!(!path.exists());
        assert!(!d.path().join(&files[0]).exists());
    }
}

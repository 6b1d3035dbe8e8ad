//! Reading pitr's logs incrementally: finding the files a `--log` template names, reading the
//! lines added since the last call, and turning them into what [`crate::state`] remembers.
//!
//! A template is the one the tools were given (`/var/log/pitr/archive-^Y-^m-^d.log`, or the
//! server's own log when archive_command logs to stderr): each `^X` (strftime's `%X`) matches
//! anything within one path component, so every file the template ever produced is found. Lines
//! that are not in the tools' format (PostgreSQL's own lines in a server log, partial last
//! lines) are skipped; OmniPITR's `omnipitr-*` lines are read too, so a migration keeps its
//! history. The line format is `common::log`'s:
//! `2026-11-25 02:43:15.123456 +0000 : PID : pitr-archive : LOG : message`; its numeric offset
//! makes each time stamp exact whatever this machine's time zone.
//!
//! What a line means (OmniPITR's monitor read the same lines):
//! - archive: `Called with parameters: ... pg_wal/X` (with `--verbose`) starts X,
//!   `Segment pg_wal/X successfully sent to all destinations.` ends it;
//! - restore: `Called with parameters: ... X pg_wal/RECOVERYXLOG` starts X,
//!   `Segment X restored` ends it;
//! - backup: its first line (`Called with parameters:` or `starting backup`) starts a run of
//!   that process, `backup complete:` (OmniPITR: `All done.`) ends it;
//! - every `ERROR` and `FATAL` line is kept for the `errors` check.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use pitr_common::fs::IoError;
use pitr_common::log_verbose;
use pitr_common::wal::WalFileName;

use crate::state::{BackupRun, ErrorLine, FilePos, Span, State};

/// Errors older than this when first read are history, not news (OmniPITR kept three days).
const ERROR_NEWS_SECS: f64 = 3.0 * 86_400.0;

/// One line of a pitr (or OmniPITR) log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Unix seconds.
    pub epoch: f64,
    /// The time stamp as written, offset included.
    pub timestamp: String,
    /// The process.
    pub pid: u32,
    /// The program (`pitr-archive`, `omnipitr-restore`).
    pub program: String,
    /// `LOG`, `WARNING`, `ERROR` or `FATAL`.
    pub level: String,
    /// The message.
    pub message: String,
}

fn digits(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Days from 1970-01-01 to the civil date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds of `YYYY-MM-DD HH:MM:SS` read as UTC, `None` when it is not that or not a
/// valid time.
pub fn parse_civil(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let y = digits(&s[0..4])?;
    let mo = digits(&s[5..7])?;
    let d = digits(&s[8..10])?;
    let h = digits(&s[11..13])?;
    let mi = digits(&s[14..16])?;
    let se = digits(&s[17..19])?;
    let month_days = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] {
        return None;
    }
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Parses one log line; `None` for anything that is not a line of a pitr or OmniPITR tool.
pub fn parse_line(line: &str) -> Option<LogLine> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.len() < 35 || !line.is_char_boundary(26) || !line.is_char_boundary(32) {
        return None;
    }
    let (stamp, rest) = line.split_at(26);
    // "2026-11-25 02:43:15.123456"
    let base = parse_civil(stamp.get(0..19)?)?;
    if stamp.as_bytes()[19] != b'.' {
        return None;
    }
    let micros = digits(&stamp[20..26])?;
    let rest = rest.strip_prefix(' ')?;
    let (offset, rest) = rest.split_at(5);
    let sign = match offset.as_bytes()[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let off = digits(&offset[1..5])?;
    let off_secs = sign * ((off / 100) * 3600 + (off % 100) * 60);
    let rest = rest.strip_prefix(" : ")?;
    let mut parts = rest.splitn(4, " : ");
    let pid = u32::try_from(digits(parts.next()?)?).ok()?;
    let program = parts.next()?;
    if !(program.starts_with("pitr-") || program.starts_with("omnipitr-")) {
        return None;
    }
    let level = parts.next()?;
    if !matches!(level, "LOG" | "WARNING" | "ERROR" | "FATAL") {
        return None;
    }
    let message = parts.next().unwrap_or("");
    Some(LogLine {
        epoch: (base - off_secs) as f64 + micros as f64 / 1e6,
        timestamp: format!("{stamp} {offset}"),
        pid,
        program: program.to_string(),
        level: level.to_string(),
        message: message.to_string(),
    })
}

/// The tool a program name stands for, without `pitr-`/`omnipitr-`.
fn tool(program: &str) -> &str {
    program
        .strip_prefix("omnipitr-")
        .or_else(|| program.strip_prefix("pitr-"))
        .unwrap_or(program)
}

/// The WAL file a path names (`pg_wal/X` or `X`), if it is a WAL file name.
fn wal_of(path: &str) -> Option<WalFileName> {
    let name = path.rsplit('/').next()?;
    WalFileName::parse(name).ok()
}

fn span<'a>(
    spans: &'a mut std::collections::BTreeMap<String, Span>,
    wal: &WalFileName,
) -> &'a mut Span {
    spans.entry(wal.to_string()).or_default()
}

/// The WAL file a pitr-restore line says its call ended without: not in the archive in
/// standby mode, a finish request, the server gone.
fn unanswered(msg: &str) -> Option<WalFileName> {
    let name = msg
        .strip_suffix(" is not in the archive (standby mode: not waiting)")
        .or_else(|| {
            msg.strip_prefix("Got finish request: ")?
                .strip_suffix(" is not in the archive; ending recovery")
        })
        .or_else(|| {
            msg.strip_prefix("Got immediate finish request: not restoring ")?
                .strip_suffix(", ending recovery")
        })
        .or_else(|| {
            msg.strip_prefix("the server that asked for ")?
                .strip_suffix(" is gone; exiting")
        })?;
    WalFileName::parse(name).ok()
}

fn started(s: &mut Span, at: f64) {
    if s.start.is_none() {
        s.start = Some(at);
    }
    s.last_start = Some(s.last_start.map_or(at, |t| t.max(at)));
}

/// Records what `line` says in `state`; `now` decides whether an error is news.
pub fn apply(state: &mut State, line: &LogLine, now: f64) {
    let is_error = line.level == "ERROR" || line.level == "FATAL";
    if is_error && now - line.epoch < ERROR_NEWS_SECS {
        state.errors.push(ErrorLine {
            seq: state.next_error_seq,
            epoch: line.epoch,
            timestamp: line.timestamp.clone(),
            pid: line.pid,
            program: line.program.clone(),
            level: line.level.clone(),
            message: line.message.clone(),
        });
        state.next_error_seq += 1;
    }
    let msg = line.message.as_str();
    let called = msg.strip_prefix("Called with parameters: ");
    match tool(&line.program) {
        "archive" => {
            if let Some(args) = called {
                if let Some(wal) = args.split_whitespace().last().and_then(wal_of) {
                    started(span(&mut state.archive, &wal), line.epoch);
                }
            } else if let Some(path) = msg
                .strip_prefix("Segment ")
                .and_then(|m| m.strip_suffix(" successfully sent to all destinations."))
            {
                if let Some(wal) = wal_of(path) {
                    let s = span(&mut state.archive, &wal);
                    s.end = Some(s.end.map_or(line.epoch, |t| t.max(line.epoch)));
                }
            }
        }
        "restore" => {
            if let Some(args) = called {
                // The prefetch worker and --from-backup are not restore_command calls.
                if args.contains("--prefetch-worker") || args.contains("--from-backup") {
                    return;
                }
                let words: Vec<&str> = args.split_whitespace().collect();
                if let [.., f, _p] = words.as_slice() {
                    if let Ok(wal) = WalFileName::parse(f) {
                        if wal.has_wal_pages() {
                            started(span(&mut state.restore, &wal), line.epoch);
                        }
                    }
                }
            } else if let Some(rest) = msg.strip_prefix("Segment ") {
                let name = rest
                    .strip_suffix(" restored")
                    .or_else(|| rest.strip_suffix(" restored (prefetched)"));
                if let Some(wal) = name.and_then(|n| WalFileName::parse(n).ok()) {
                    let s = span(&mut state.restore, &wal);
                    s.end = Some(s.end.map_or(line.epoch, |t| t.max(line.epoch)));
                }
            } else if let Some(wal) = unanswered(msg) {
                // The call is over without the file: not in progress any more (a streaming
                // standby asks once and streams; it was in progress for ever).
                if let Some(s) = state.restore.get_mut(&wal.to_string()) {
                    s.unanswered = Some(s.unanswered.map_or(line.epoch, |t| t.max(line.epoch)));
                }
            }
        }
        "backup" | "backup-master" | "backup-slave" => {
            let open = state.backups.iter().rposition(|b| {
                b.pid == line.pid && b.program == line.program && b.end.is_none() && !b.failed
            });
            let starts = called.is_some() || msg.starts_with("starting backup of ");
            let ends = msg.starts_with("backup complete: ") || msg.trim_end() == "All done.";
            match open {
                None if starts || ends => state.backups.push(BackupRun {
                    pid: line.pid,
                    program: line.program.clone(),
                    start: line.epoch,
                    end: ends.then_some(line.epoch),
                    failed: false,
                }),
                Some(i) if ends => state.backups[i].end = Some(line.epoch),
                Some(i) if is_error => state.backups[i].failed = true,
                _ => {}
            }
        }
        _ => {}
    }
}

/// One piece of a path template: literal text, or a stretch that any text may fill.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(char),
    Any,
}

/// Splits a `--log` template into path components, each a sequence of [`Piece`]s; `^X` (and
/// `^EX`, `^OX`) is [`Piece::Any`], `^^` a literal `%` (as `common::log` expands it).
fn pattern(template: &str) -> Vec<Vec<Piece>> {
    let mut comps: Vec<Vec<Piece>> = vec![Vec::new()];
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        let piece = match c {
            '/' => {
                comps.push(Vec::new());
                continue;
            }
            '^' => match chars.next() {
                Some('^') => Piece::Literal('%'),
                Some('E') | Some('O') => {
                    chars.next();
                    Piece::Any
                }
                Some(_) => Piece::Any,
                None => Piece::Literal('^'),
            },
            c => Piece::Literal(c),
        };
        if let Some(comp) = comps.last_mut() {
            comp.push(piece);
        }
    }
    comps
}

/// Whether `name` matches `pieces` (wildcard matching with backtracking).
fn matches(pieces: &[Piece], name: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pieces.get(p) {
            Some(Piece::Any) => {
                star = Some((p, n));
                p += 1;
            }
            Some(Piece::Literal(c)) if *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pieces[p..].iter().all(|x| *x == Piece::Any)
}

/// The existing files a template can have produced, oldest (mtime) first.
pub fn files_of(template: &str) -> Vec<PathBuf> {
    let comps = pattern(template);
    let mut current: Vec<PathBuf> = vec![if template.starts_with('/') {
        PathBuf::from("/")
    } else {
        PathBuf::from(".")
    }];
    for (i, comp) in comps.iter().enumerate() {
        if comp.is_empty() {
            continue;
        }
        let literal: Option<String> = comp
            .iter()
            .map(|p| match p {
                Piece::Literal(c) => Some(*c),
                Piece::Any => None,
            })
            .collect();
        let mut next = Vec::new();
        for dir in &current {
            match &literal {
                Some(name) => next.push(dir.join(name)),
                None => {
                    // A directory that cannot be listed holds no log file we can read.
                    let Ok(rd) = std::fs::read_dir(dir) else {
                        continue;
                    };
                    for ent in rd.flatten() {
                        if matches(comp, &ent.file_name().to_string_lossy()) {
                            next.push(ent.path());
                        }
                    }
                }
            }
        }
        let last = i + 1 == comps.len();
        next.retain(|p| if last { p.is_file() } else { p.is_dir() });
        current = next;
    }
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = current
        .into_iter()
        .map(|p| {
            let t = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, p)
        })
        .collect();
    files.sort();
    files.dedup_by(|a, b| a.1 == b.1);
    files.into_iter().map(|(_, p)| p).collect()
}

/// What one scan read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scanned {
    /// Files matching the templates.
    pub files: usize,
    /// Complete lines read (any format).
    pub lines: usize,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the lines of every file of `templates` added since the last scan into `state`, and
/// forgets files that are gone. Files of other templates (another check sharing the state
/// directory) keep their positions: reading them again from the start would report their
/// errors twice.
pub fn scan(state: &mut State, templates: &[String], now: f64) -> anyhow::Result<Scanned> {
    let mut seen = std::collections::BTreeSet::new();
    let mut total = Scanned::default();
    let mut paths = Vec::new();
    for t in templates {
        for p in files_of(t) {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
    }
    for path in paths {
        let key = path.to_string_lossy().into_owned();
        let lines = read_new_lines(state, &path, &key, now)?;
        log_verbose!("Read {lines} lines from {key}");
        total.files += 1;
        total.lines += lines;
        seen.insert(key);
    }
    state
        .files
        .retain(|k, _| seen.contains(k) || Path::new(k).is_file());
    Ok(total)
}

fn read_new_lines(state: &mut State, path: &Path, key: &str, now: f64) -> anyhow::Result<usize> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        // Rotated away between listing and opening.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(IoError::new("opening log file", path, e).into()),
    };
    let meta = f
        .metadata()
        .map_err(|e| IoError::new("examining log file", path, e))?;
    let mut head = Vec::with_capacity(64);
    (&mut f)
        .take(64)
        .read_to_end(&mut head)
        .map_err(|e| IoError::new("reading log file", path, e))?;
    if let Some(nl) = head.iter().position(|b| *b == b'\n') {
        head.truncate(nl);
    }
    let head = hex(&head);
    let start = match state.files.get(key) {
        Some(p)
            if p.dev == meta.dev()
                && p.ino == meta.ino()
                && p.head == head
                && p.offset <= meta.len() =>
        {
            p.offset
        }
        _ => 0,
    };
    f.seek(SeekFrom::Start(start))
        .map_err(|e| IoError::new("reading log file", path, e))?;
    let mut reader = BufReader::with_capacity(256 << 10, f);
    let mut offset = start;
    let mut buf = Vec::new();
    let mut lines = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| IoError::new("reading log file", path, e))?;
        // End of file, or a last line still being written: read it next time, whole.
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        offset += n as u64;
        lines += 1;
        if let Some(line) = parse_line(&String::from_utf8_lossy(&buf)) {
            apply(state, &line, now);
        }
    }
    state.files.insert(
        key.to_string(),
        FilePos {
            dev: meta.dev(),
            ino: meta.ino(),
            offset,
            head,
        },
    );
    Ok(lines)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NOW: f64 = 1_795_574_600.0;

    #[test]
    fn parses_our_lines_with_their_offset() {
        let l = parse_line(
            "2026-11-25 02:43:15.123456 +0000 : 4242 : pitr-archive : LOG : Segment pg_wal/x : y\n",
        )
        .unwrap();
        assert_eq!(l.epoch, 1_795_574_595.123456);
        assert_eq!(l.pid, 4242);
        assert_eq!(l.program, "pitr-archive");
        assert_eq!(l.level, "LOG");
        assert_eq!(l.message, "Segment pg_wal/x : y");
        assert_eq!(l.timestamp, "2026-11-25 02:43:15.123456 +0000");
        let l = parse_line("2026-11-25 08:13:15.000000 +0530 : 1 : omnipitr-restore : ERROR : bad")
            .unwrap();
        assert_eq!(l.epoch, 1_795_574_595.0);
        let l =
            parse_line("2026-11-24 21:43:15.000000 -0500 : 1 : pitr-backup : FATAL : ").unwrap();
        assert_eq!((l.epoch, l.message.as_str()), (1_795_574_595.0, ""));
    }

    #[test]
    fn skips_what_is_not_ours() {
        for line in [
            "2026-11-25 02:43:15.123 UTC [123] LOG:  checkpoint starting: time",
            "2026-11-25 02:43:15.123456 +0000 : 4242 : postgres : LOG : x",
            "2026-11-25 02:43:15.123456 +0000 : 4242 : pitr-archive : DEBUG : x",
            "2026-13-25 02:43:15.123456 +0000 : 4242 : pitr-archive : LOG : x",
            "2026-11-25 02:43:15.123456 +0000 : pid : pitr-archive : LOG : x",
            "2026-11-25 02:43:15.123456 0000 : 4242 : pitr-archive : LOG : x",
            "short",
            "",
            "2026-11-25 02:43:15.12345é +0000 : 4242 : pitr-archive : LOG : x",
        ] {
            assert_eq!(parse_line(line), None, "{line}");
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(parse_civil("2026-11-25 02:43:15"), Some(1_795_574_595));
        assert_eq!(parse_civil("2026-02-30 00:00:00"), None);
        assert_eq!(parse_civil("2026-11-25T02:43:15"), None);
    }

    fn feed(state: &mut State, lines: &[&str]) {
        for l in lines {
            apply(state, &parse_line(l).unwrap(), NOW);
        }
    }

    #[test]
    fn archive_restore_and_backup_events() {
        let mut s = State::default();
        feed(
            &mut s,
            &[
                "2026-11-25 02:43:10.000000 +0000 : 10 : pitr-archive : LOG : Called with parameters: --dst-local zstd=/a pg_wal/000000010000000000000003",
                "2026-11-25 02:43:11.000000 +0000 : 10 : pitr-archive : ERROR : 000000010000000000000003 was not archived to 1 of 1 destinations",
                "2026-11-25 02:43:12.000000 +0000 : 11 : pitr-archive : LOG : Called with parameters: --dst-local zstd=/a pg_wal/000000010000000000000003",
                "2026-11-25 02:43:13.000000 +0000 : 11 : pitr-archive : LOG : Segment pg_wal/000000010000000000000003 successfully sent to all destinations.",
                "2026-11-25 02:43:14.000000 +0000 : 12 : omnipitr-archive : LOG : Segment ./pg_wal/00000002.history successfully sent to all destinations.",
                "2026-11-25 02:43:15.000000 +0000 : 20 : pitr-restore : LOG : Called with parameters: --source /a 000000010000000000000004 pg_wal/RECOVERYXLOG",
                "2026-11-25 02:43:15.000000 +0000 : 21 : pitr-restore : LOG : Called with parameters: --prefetch-worker --source /a 000000010000000000000005",
                "2026-11-25 02:43:15.000000 +0000 : 22 : pitr-restore : LOG : Called with parameters: --source /a 00000002.history pg_wal/RECOVERYHISTORY",
                "2026-11-25 02:43:16.500000 +0000 : 20 : pitr-restore : LOG : Segment 000000010000000000000004 restored (prefetched)",
                "2026-11-25 02:43:17.000000 +0000 : 30 : pitr-backup : LOG : starting backup of the primary at /d",
                "2026-11-25 02:43:18.000000 +0000 : 30 : pitr-backup : LOG : backup complete: 20 MiB of the primary",
                "2026-11-25 02:43:19.000000 +0000 : 31 : pitr-backup : LOG : Called with parameters: --data-dir /d",
                "2026-11-25 02:43:19.100000 +0000 : 31 : pitr-backup : LOG : starting backup of the primary at /d",
                "2026-11-25 02:43:20.000000 +0000 : 31 : pitr-backup : ERROR : cannot connect",
            ],
        );
        let t = |secs: f64| 1_795_574_590.0 + secs;
        assert_eq!(
            s.archive["000000010000000000000003"],
            Span {
                start: Some(t(0.0)),
                last_start: Some(t(2.0)),
                end: Some(t(3.0)),
                unanswered: None,
            }
        );
        assert_eq!(s.archive["00000002.history"].end, Some(t(4.0)));
        assert_eq!(s.restore.len(), 1);
        assert_eq!(s.restore["000000010000000000000004"].end, Some(t(6.5)));
        assert_eq!(s.backups.len(), 2);
        assert_eq!(
            (s.backups[0].start, s.backups[0].end),
            (t(7.0), Some(t(8.0)))
        );
        assert_eq!((s.backups[1].start, s.backups[1].failed), (t(9.0), true));
        assert_eq!(s.errors.len(), 2);
        assert_eq!(s.errors[1].seq, 2);
        assert_eq!(s.errors[1].message, "cannot connect");
    }

    #[test]
    fn templates_find_every_file_they_produced() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for f in [
            "2026/archive-2026-11-24.log",
            "2026/archive-2026-11-25.log",
            "2026/restore-2026-11-25.log",
            "2025/archive-2025-12-31.log",
            "x/archive-x.log",
            "100%/a.log",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"").unwrap();
        }
        let rel = |v: Vec<PathBuf>| -> Vec<String> {
            let mut v: Vec<String> = v
                .into_iter()
                .map(|p| p.strip_prefix(root).unwrap().display().to_string())
                .collect();
            v.sort();
            v
        };
        let t = format!("{}/^Y/archive-^Y-^m-^d.log", root.display());
        assert_eq!(
            rel(files_of(&t)),
            [
                "2025/archive-2025-12-31.log",
                "2026/archive-2026-11-24.log",
                "2026/archive-2026-11-25.log",
            ]
        );
        let t = format!("{}/100^^/a.log", root.display());
        assert_eq!(rel(files_of(&t)), ["100%/a.log"]);
        let t = format!("{}/2026/restore-2026-11-25.log", root.display());
        assert_eq!(rel(files_of(&t)), ["2026/restore-2026-11-25.log"]);
        assert!(files_of(&format!("{}/nope/^Y.log", root.display())).is_empty());
        assert!(matches(&pattern("a^Yb")[0], "ab"));
        assert!(matches(&pattern("^Y^m")[0], "x"));
        assert!(!matches(&pattern("a^Yb")[0], "abc"));
        assert!(matches(&pattern("^Ey-x")[0], "26-x"));
    }

    #[test]
    fn scan_reads_only_new_whole_lines_and_restarts_on_rotation() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("pitr.log");
        let line = |pid: u32, msg: &str| {
            format!("2026-11-25 02:43:15.000000 +0000 : {pid} : pitr-archive : ERROR : {msg}\n")
        };
        std::fs::write(&log, format!("{}{}partial", line(1, "one"), line(1, "two"))).unwrap();
        let mut s = State::default();
        let templates = vec![log.display().to_string()];
        let got = scan(&mut s, &templates, NOW).unwrap();
        assert_eq!(got, Scanned { files: 1, lines: 2 });
        assert_eq!(s.errors.len(), 2);
        // The partial line is completed, one more is added.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, format!(" line\n{}", line(2, "three")).as_bytes())
            .unwrap();
        assert_eq!(scan(&mut s, &templates, NOW).unwrap().lines, 2);
        assert_eq!(s.errors.len(), 3);
        assert_eq!(scan(&mut s, &templates, NOW).unwrap().lines, 0);
        // Truncated and rewritten under the same inode: read from the start again.
        std::fs::write(&log, line(3, "four")).unwrap();
        assert_eq!(scan(&mut s, &templates, NOW).unwrap().lines, 1);
        assert_eq!(s.errors.last().unwrap().message, "four");
        // Another check with other templates: this file keeps its position.
        let other = vec![d.path().join("other-^Y.log").display().to_string()];
        assert_eq!(scan(&mut s, &other, NOW).unwrap().files, 0);
        assert_eq!(scan(&mut s, &templates, NOW).unwrap().lines, 0);
        // Gone: forgotten.
        std::fs::remove_file(&log).unwrap();
        assert_eq!(scan(&mut s, &templates, NOW).unwrap(), Scanned::default());
        assert!(s.files.is_empty());
    }
}

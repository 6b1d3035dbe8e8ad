//! The OmniPITR-compatible logger.
//!
//! Every line has the shape
//! `2026-11-25 02:43:15.123456 +0000 : PID : pitr-archive : LOG : message` (local time with
//! microseconds and numeric offset), so that existing greps and monitors of OmniPITR logs keep
//! working; a multi-line message gets the prefix on every line. The target comes from
//! `--log TEMPLATE`: `-` is stdout, no option is stderr (which PostgreSQL copies into its own
//! log), anything else is a file name in which every `^` stands for the `%` of `strftime(3)`
//! (`/var/log/pitr/^Y-^m-^d.log`). The name is re-evaluated at most once per second; the file is
//! opened in append mode (several tools may share it, since every line names its program) and
//! missing parent directories are created. Run as root, the directories it creates and the file
//! go to the owner of the directory above them, so that a root hand-run leaves nothing the
//! server's user's calls cannot write.
//!
//! The logger is global and thread-safe: a message is written with one `write(2)` under a mutex,
//! so lines of different threads never interleave. Before [`init`] is called, lines go to stderr
//! under the tool name `pitr`. A failure to write the log file never panics: the message and a
//! warning about the failure go to stderr instead.

use std::ffi::CString;
use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The severity of a log line, printed as OmniPITR printed it (and `HINT`, as PostgreSQL does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Normal progress (`LOG`).
    Log,
    /// Something the operator should look at, but the job went on (`WARNING`).
    Warning,
    /// The job failed (`ERROR`).
    Error,
    /// The program cannot run at all: bad usage, unusable configuration (`FATAL`).
    Fatal,
    /// What to do about the line before it (`HINT`), a level of its own as in PostgreSQL's
    /// log, so that counting ERROR lines counts each error once.
    Hint,
}

impl Level {
    /// The level as it appears in the log line: `LOG`, `WARNING`, `ERROR` or `FATAL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Log => "LOG",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
            Level::Hint => "HINT",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where log lines go, as given by `--log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// No `--log`: stderr, which PostgreSQL copies into its own log for `archive_command` and
    /// `restore_command`.
    Stderr,
    /// `--log -`: stdout.
    Stdout,
    /// `--log TEMPLATE`: a file whose name is `TEMPLATE` with every `^` read as the `%` of
    /// `strftime(3)`; a literal `%` stays a literal `%`.
    File(String),
}

impl LogTarget {
    /// Reads the value of `--log` (`None` when the option is absent).
    pub fn parse(value: Option<&str>) -> Result<LogTarget, Error> {
        match value {
            None => Ok(LogTarget::Stderr),
            Some("-") => Ok(LogTarget::Stdout),
            Some("") => Err(Error::BadTemplate {
                template: String::new(),
                reason: "it is empty",
            }),
            Some(t) if t.contains('\0') => Err(Error::BadTemplate {
                template: t.to_string(),
                reason: "it contains a NUL character",
            }),
            Some(t) => Ok(LogTarget::File(t.to_string())),
        }
    }
}

/// A logger that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `--log` value cannot be used as a file name template.
    #[error("invalid --log template {template:?}: {reason}")]
    BadTemplate {
        /// The template as given.
        template: String,
        /// Why it is unusable.
        reason: &'static str,
    },
    /// A missing parent directory of the log file could not be created.
    #[error("cannot create log directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The log file could not be opened for appending.
    #[error("cannot open log file {}", path.display())]
    Open {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The tool name used before [`init`] is called.
const DEFAULT_TOOL: &str = "pitr";

/// A file target: the template, the file it currently names, and when the name was last
/// evaluated.
struct FileSink {
    template: CString,
    path: PathBuf,
    file: Option<File>,
    /// The second (Unix time) at which the name was last evaluated.
    checked_at: i64,
}

enum Sink {
    Stderr,
    Stdout,
    File(FileSink),
}

struct Logger {
    tool: &'static str,
    sink: Sink,
}

static LOGGER: Mutex<Option<Logger>> = Mutex::new(None);
static VERBOSE: AtomicBool = AtomicBool::new(false);

fn lock_logger() -> MutexGuard<'static, Option<Logger>> {
    // A panic aborts the process (profile setting), so the mutex cannot really be poisoned; if it
    // ever is, the logger state is still consistent enough to keep logging.
    LOGGER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sets up the global logger for `tool` (the program name printed on every line). A file target
/// is opened at once; one that cannot be opened (a full or read-only log directory) is a
/// WARNING on stderr, and the lines go there, as when the file of a new day cannot be opened
/// later: failing the call for its log stopped archiving, and a standby's recovery, for good.
/// Calling it again replaces the previous set-up.
pub fn init(tool: &'static str, target: LogTarget, verbose: bool) -> Result<(), Error> {
    // localtime_r(3) is not required to read TZ by itself; tzset(3) makes sure it has.
    // SAFETY: tzset has no preconditions; it only initialises libc's time zone state.
    unsafe { tzset() };
    let sink = match target {
        LogTarget::Stderr => Sink::Stderr,
        LogTarget::Stdout => Sink::Stdout,
        LogTarget::File(template) => {
            let template = template_to_cstring(&template)?;
            let (secs, _) = unix_now(SystemTime::now());
            let path = expand_template(&template, &local_tm(secs))?;
            let file = match open_log_file(&path) {
                Ok(f) => Some(f),
                Err(e) => {
                    write_stderr(&format_message(
                        tool,
                        Level::Warning,
                        &format!("{}; logging to stderr instead", error_chain(&e)),
                        SystemTime::now(),
                    ));
                    None
                }
            };
            Sink::File(FileSink {
                template,
                path,
                file,
                checked_at: secs,
            })
        }
    };
    VERBOSE.store(verbose, Ordering::Relaxed);
    *lock_logger() = Some(Logger { tool, sink });
    Ok(())
}

/// Is `--verbose` in effect (timings, the arguments the program was called with)?
pub fn is_verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// Logs `args` at `level`; the binaries normally use the `log_*!` macros instead.
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    let now = SystemTime::now();
    let message = match args.as_str() {
        Some(s) => s.to_string(),
        None => args.to_string(),
    };
    let mut guard = lock_logger();
    match guard.as_mut() {
        Some(logger) => {
            let tool = logger.tool;
            logger.sink.write(tool, level, &message, now);
        }
        None => write_stderr(&format_message(DEFAULT_TOOL, level, &message, now)),
    }
}

/// Expands a template in which every `^` stands for the `%` of `strftime(3)` (a literal `%`
/// stays literal), in local time at `at`: the syntax of `--log` and of pitr-backup's
/// `--filename-template`. `^z` gives the numeric UTC offset (`+0100`).
pub fn expand_time_template(template: &str, at: SystemTime) -> Result<String, Error> {
    let format = template_to_cstring(template)?;
    let (secs, _) = unix_now(at);
    let path = expand_template(&format, &local_tm(secs))?;
    Ok(path.to_string_lossy().into_owned())
}

/// A duration for people: `45 s`, `12 min`, `3.5 h`, `2.0 d`.
pub fn human_age(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 2.0 * 3600.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 2.0 * 86_400.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86_400.0)
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `16.0 MiB` (binary units).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Writes one message to stderr in log format under `tool`, whatever the logger's target: for
/// usage errors found before the logger is set up.
pub(crate) fn log_to_stderr(tool: &str, level: Level, message: &str) {
    let text = format_message(tool, level, message, SystemTime::now());
    let _guard = lock_logger();
    write_stderr(&text);
}

/// Logs at `LOG` level, like `format!`.
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => {
        $crate::log::log($crate::log::Level::Log, ::std::format_args!($($arg)*))
    };
}

/// Logs at `WARNING` level, like `format!`.
#[macro_export]
macro_rules! log_warning {
    ($($arg:tt)*) => {
        $crate::log::log($crate::log::Level::Warning, ::std::format_args!($($arg)*))
    };
}

/// Logs at `ERROR` level, like `format!`.
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => {
        $crate::log::log($crate::log::Level::Error, ::std::format_args!($($arg)*))
    };
}

/// Logs at `FATAL` level, like `format!` (it does not exit: that is `cli`'s business).
#[macro_export]
macro_rules! log_fatal {
    ($($arg:tt)*) => {
        $crate::log::log($crate::log::Level::Fatal, ::std::format_args!($($arg)*))
    };
}

/// Logs at `HINT` level (the remedy for the line before), like `format!`.
#[macro_export]
macro_rules! log_hint {
    ($($arg:tt)*) => {
        $crate::log::log($crate::log::Level::Hint, ::std::format_args!($($arg)*))
    };
}

/// Logs at `LOG` level only with `--verbose`; the arguments are not evaluated otherwise.
#[macro_export]
macro_rules! log_verbose {
    ($($arg:tt)*) => {
        if $crate::log::is_verbose() {
            $crate::log::log($crate::log::Level::Log, ::std::format_args!($($arg)*))
        }
    };
}

/// A verbose-mode timer: [`Timer::finish`] logs `Timer [label] took: 0.351s`, as OmniPITR's
/// `time_finish` did, when `--verbose` is in effect.
#[derive(Debug)]
pub struct Timer {
    label: String,
    start: Instant,
}

impl Timer {
    /// Starts timing `label`.
    pub fn start(label: impl Into<String>) -> Timer {
        Timer {
            label: label.into(),
            start: Instant::now(),
        }
    }

    /// Logs the elapsed time (verbose mode only) and returns it.
    pub fn finish(self) -> Duration {
        let elapsed = self.start.elapsed();
        log_verbose!("Timer [{}] took: {:.3}s", self.label, elapsed.as_secs_f64());
        elapsed
    }
}

impl Sink {
    fn write(&mut self, tool: &str, level: Level, message: &str, now: SystemTime) {
        let text = format_message(tool, level, message, now);
        match self {
            Sink::Stderr => write_stderr(&text),
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                if out
                    .write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    // stdout is gone (closed pipe): the message must still be seen somewhere.
                    drop(out);
                    write_stderr(&text);
                }
            }
            Sink::File(sink) => sink.write(tool, &text, now),
        }
    }
}

impl FileSink {
    fn write(&mut self, tool: &str, text: &str, now: SystemTime) {
        let (secs, _) = unix_now(now);
        if secs != self.checked_at {
            self.checked_at = secs;
            self.reopen_if_renamed(tool, secs, now);
        }
        let Some(file) = self.file.as_mut() else {
            write_stderr(text);
            return;
        };
        // A File is unbuffered: one write_all is one write(2) in append mode, so the message
        // reaches the kernel at once and lines of processes sharing the file do not interleave.
        if let Err(e) = file.write_all(text.as_bytes()) {
            self.file = None;
            let warning = format_message(
                tool,
                Level::Warning,
                &format!(
                    "cannot write to log file {}: {e}; logging to stderr instead",
                    self.path.display()
                ),
                now,
            );
            write_stderr(&warning);
            write_stderr(text);
        }
    }

    /// Re-evaluates the template and switches files when the name has changed. A file that
    /// failed stays abandoned (lines go to stderr) until the name changes.
    fn reopen_if_renamed(&mut self, tool: &str, secs: i64, now: SystemTime) {
        let path = match expand_template(&self.template, &local_tm(secs)) {
            Ok(p) => p,
            // The template expanded once at init, so this cannot really fail; keep the old file.
            Err(_) => return,
        };
        if path == self.path {
            return;
        }
        match open_log_file(&path) {
            Ok(f) => self.file = Some(f),
            Err(e) => {
                self.file = None;
                write_stderr(&format_message(
                    tool,
                    Level::Warning,
                    &format!("{}; logging to stderr instead", error_chain(&e)),
                    now,
                ));
            }
        }
        self.path = path;
    }
}

fn write_stderr(text: &str) {
    // There is nowhere left to report a failure to write stderr.
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// `err` and its sources on one line, joined by `: ` (what anyhow's `{:#}` prints).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        s.push_str(": ");
        s.push_str(&e.to_string());
        source = e.source();
    }
    s
}

fn open_log_file(path: &Path) -> Result<File, Error> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.is_dir() {
            // Run as root, the new directories go to the owner of the one above them, as the
            // file does, so that the server's user's next call can write there too.
            crate::fs::create_dir_all_for_owner(parent).map_err(|source| Error::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
    // A log file a root hand-run started must stay writable by the server's user's calls.
    crate::fs::give_to_directory_owner(&file, path).map_err(|source| Error::Open {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(file)
}

/// Seconds and microseconds since the Unix epoch (negative seconds for times before it).
fn unix_now(now: SystemTime) -> (i64, u32) {
    match now.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_micros(),
        ),
        // A clock before 1970 is not worth more than a wrong but well-formed stamp.
        Err(_) => (0, 0),
    }
}

extern "C" {
    // Declared here because not every libc crate version exposes it.
    fn tzset();
}

/// The broken-down local time of `secs`.
fn local_tm(secs: i64) -> libc::tm {
    let t: libc::time_t = secs;
    // SAFETY: tm is plain old data for which all-zero bytes are a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call; localtime_r is the
    // thread-safe variant that writes only into `tm`.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        // Only out-of-range times fail; fall back to UTC fields of the epoch.
        // SAFETY: as above.
        tm = unsafe { std::mem::zeroed() };
        tm.tm_year = 70;
        tm.tm_mday = 1;
    }
    tm
}

/// A moment given in Unix seconds, for messages: local time in ISO 8601 with its zone, as the
/// log lines' own stamps (`2026-11-25 02:43:15 +0000`), never a bare epoch number.
pub fn format_epoch(secs: i64) -> String {
    let mut out = String::with_capacity(32);
    format_stamp(&mut out, &local_tm(secs), 0);
    // The stamp without its microseconds: `... 02:43:15.000000 +0000` → `... 02:43:15 +0000`.
    out.replace(".000000 ", " ")
}

/// A log-line time stamp: `2026-11-25 02:43:15.123456 +0000`.
fn format_stamp(out: &mut String, tm: &libc::tm, micros: u32) {
    let offset = tm.tm_gmtoff;
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = offset.unsigned_abs();
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06} {}{:02}{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        micros,
        sign,
        offset / 3600,
        (offset % 3600) / 60
    );
}

/// The text written for one message: one prefixed line per line of `message`.
fn format_message(tool: &str, level: Level, message: &str, now: SystemTime) -> String {
    let (secs, micros) = unix_now(now);
    format_lines(
        &local_tm(secs),
        micros,
        std::process::id(),
        tool,
        level,
        message,
    )
}

fn format_lines(
    tm: &libc::tm,
    micros: u32,
    pid: u32,
    tool: &str,
    level: Level,
    message: &str,
) -> String {
    let mut prefix = String::with_capacity(64);
    format_stamp(&mut prefix, tm, micros);
    let _ = write!(prefix, " : {pid} : {tool} : {level} : ");
    let mut out = String::with_capacity(prefix.len() + message.len() + 1);
    let message = message.strip_suffix('\n').unwrap_or(message);
    for line in message.split('\n') {
        out.push_str(&prefix);
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Turns a `--log` template into a `strftime(3)` format: `^` becomes `%`, and a literal `%`
/// becomes `%%` so that it stays literal.
fn template_to_cstring(template: &str) -> Result<CString, Error> {
    let mut format = String::with_capacity(template.len() + 8);
    for c in template.chars() {
        match c {
            '^' => format.push('%'),
            '%' => format.push_str("%%"),
            c => format.push(c),
        }
    }
    CString::new(format).map_err(|_| Error::BadTemplate {
        template: template.to_string(),
        reason: "it contains a NUL character",
    })
}

/// Expands a `strftime(3)` format for the time `tm` into a file name.
fn expand_template(format: &CString, tm: &libc::tm) -> Result<PathBuf, Error> {
    use std::os::unix::ffi::OsStrExt;
    let bad = |reason| Error::BadTemplate {
        template: format.to_string_lossy().into_owned(),
        reason,
    };
    if format.as_bytes().is_empty() {
        return Err(bad("it is empty"));
    }
    let mut size = 256 + format.as_bytes().len() * 4;
    while size <= 65536 {
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` is writable for `size` bytes, `format` is NUL-terminated and `tm` is a
        // valid broken-down time; strftime writes at most `size` bytes including the NUL.
        let n = unsafe {
            libc::strftime(
                buf.as_mut_ptr().cast::<libc::c_char>(),
                size,
                format.as_ptr(),
                tm,
            )
        };
        if n > 0 {
            buf.truncate(n);
            return Ok(PathBuf::from(std::ffi::OsStr::from_bytes(&buf)));
        }
        // 0 means either "did not fit" or an empty result: try a bigger buffer, then give up.
        size *= 4;
    }
    Err(bad("it expands to an empty or overlong file name"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ages_for_people() {
        assert_eq!(human_age(12.4), "12 s");
        assert_eq!(human_age(600.0), "10 min");
        assert_eq!(human_age(3.5 * 3600.0), "3.5 h");
        assert_eq!(human_age(3.0 * 86_400.0), "3.0 d");
        assert_eq!(human_age(-3.0), "0 s");
    }

    fn fixed_tm() -> libc::tm {
        // 2026-11-25 02:43:15 UTC, broken down in UTC so the test does not depend on TZ.
        let t: libc::time_t = 1_795_574_595;
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        assert!(!unsafe { libc::gmtime_r(&t, &mut tm) }.is_null());
        tm
    }

    #[test]
    fn moments_in_messages_are_iso_8601_with_a_zone() {
        let t = format_epoch(1_796_085_123);
        let b = t.as_bytes();
        assert_eq!(t.len(), 25, "{t}");
        for (i, c) in [
            (4, b'-'),
            (7, b'-'),
            (10, b' '),
            (13, b':'),
            (16, b':'),
            (19, b' '),
        ] {
            assert_eq!(b[i], c, "{t}");
        }
        assert!(b[20] == b'+' || b[20] == b'-', "{t}");
        assert!(!t.contains("1796085123"));
    }

    #[test]
    fn line_has_omnipitr_format() {
        let text = format_lines(
            &fixed_tm(),
            123_456,
            4242,
            "pitr-archive",
            Level::Log,
            "message",
        );
        assert_eq!(
            text,
            "2026-11-25 02:43:15.123456 +0000 : 4242 : pitr-archive : LOG : message\n"
        );
    }

    #[test]
    fn negative_and_fractional_offsets() {
        let mut tm = fixed_tm();
        tm.tm_gmtoff = -(5 * 3600 + 30 * 60);
        let mut s = String::new();
        format_stamp(&mut s, &tm, 7);
        assert_eq!(s, "2026-11-25 02:43:15.000007 -0530");
    }

    #[test]
    fn live_line_is_well_formed() {
        let text = format_message("pitr-restore", Level::Warning, "hello", SystemTime::now());
        let line = text.strip_suffix('\n').unwrap();
        assert!(!line.contains('\n'));
        let parts: Vec<&str> = line.split(" : ").collect();
        assert_eq!(parts.len(), 5, "{line}");
        let stamp = parts[0].as_bytes();
        assert_eq!(
            stamp.len(),
            "2026-11-25 02:43:15.123456 +0000".len(),
            "{line}"
        );
        for (i, c) in stamp.iter().enumerate() {
            match i {
                4 | 7 => assert_eq!(*c, b'-'),
                10 | 26 => assert_eq!(*c, b' '),
                13 | 16 => assert_eq!(*c, b':'),
                19 => assert_eq!(*c, b'.'),
                27 => assert!(*c == b'+' || *c == b'-'),
                _ => assert!(c.is_ascii_digit(), "{line}"),
            }
        }
        assert_eq!(parts[1], std::process::id().to_string());
        assert_eq!(&parts[2..], ["pitr-restore", "WARNING", "hello"]);
    }

    #[test]
    fn multi_line_message_gets_prefix_on_every_line() {
        let text = format_lines(
            &fixed_tm(),
            0,
            1,
            "pitr-backup",
            Level::Error,
            "first\nsecond\r\n\nlast\n",
        );
        let p = "2026-11-25 02:43:15.000000 +0000 : 1 : pitr-backup : ERROR : ";
        assert_eq!(text, format!("{p}first\n{p}second\n{p}\n{p}last\n"));
    }

    #[test]
    fn template_expands_caret_as_percent() {
        let f = template_to_cstring("/var/log/pitr/^Y-^m-^d/^H.log").unwrap();
        let p = expand_template(&f, &fixed_tm()).unwrap();
        assert_eq!(p, PathBuf::from("/var/log/pitr/2026-11-25/02.log"));
        let f = template_to_cstring("/tmp/100%-^Y^^").unwrap();
        let p = expand_template(&f, &fixed_tm()).unwrap();
        assert_eq!(p, PathBuf::from("/tmp/100%-2026%"));
    }

    #[test]
    fn target_parsing() {
        assert_eq!(LogTarget::parse(None).unwrap(), LogTarget::Stderr);
        assert_eq!(LogTarget::parse(Some("-")).unwrap(), LogTarget::Stdout);
        assert_eq!(
            LogTarget::parse(Some("/l/^Y.log")).unwrap(),
            LogTarget::File("/l/^Y.log".to_string())
        );
        let e = LogTarget::parse(Some("")).unwrap_err();
        assert_eq!(e.to_string(), "invalid --log template \"\": it is empty");
    }

    #[test]
    fn file_target_creates_dirs_and_appends() {
        // The only test that touches the global logger, so tests cannot race on it.
        let dir = tempfile::tempdir().unwrap();
        let template = format!("{}/sub/^Y/pitr.log", dir.path().display());
        let path = expand_template(
            &template_to_cstring(&template).unwrap(),
            &local_tm(unix_now(SystemTime::now()).0),
        )
        .unwrap();
        init("pitr-test", LogTarget::File(template.clone()), true).unwrap();
        assert!(is_verbose());
        crate::log_info!("lt-one {}", 1);
        crate::log_verbose!("lt-two\nlt-three");
        init("pitr-test", LogTarget::File(template), false).unwrap();
        crate::log_verbose!("lt-not shown");
        crate::log_error!("lt-four");
        *lock_logger() = None;
        VERBOSE.store(false, Ordering::Relaxed);
        let text = std::fs::read_to_string(&path).unwrap();
        // Other tests running meanwhile may log through the global logger too: look only at
        // this test's lines.
        let msgs: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" : lt-"))
            .map(|l| l.split_once(" : pitr-test : ").unwrap().1)
            .collect();
        assert_eq!(
            msgs,
            [
                "LOG : lt-one 1",
                "LOG : lt-two",
                "LOG : lt-three",
                "ERROR : lt-four"
            ]
        );
    }

    #[test]
    fn unopenable_log_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        // A directory cannot be opened for appending.
        let err = open_log_file(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot open log file {}", dir.path().display())
        );
        let err = open_log_file(&file.join("d/x.log")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot create log directory {}/d", file.display())
        );
    }
}

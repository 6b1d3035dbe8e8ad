//! Command-line glue shared by the binaries: argument parsing with *our* usage exit status,
//! logger set-up and error reporting.
//!
//! [`parse_args`] handles `--version`, configuration files (`--config-file`) and `--opt=value`
//! before handing the arguments to argh, and maps a usage error to a FATAL log line and the
//! status the binary chose (`argh::from_env` would exit 1, which PostgreSQL reads from
//! `restore_command` as "file not found"). [`run`] sets up the logger and turns the verb's
//! `anyhow::Result<ExitCode>` into log lines and an exit status. This module and [`crate::log`]
//! are the only ones that print; this one is the only one that exits.

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;

use crate::exit;
use crate::log::{self, Level, LogTarget};

/// The version printed by `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Arguments that cannot be handed to the option parser.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument is not valid UTF-8.
    #[error("argument {position} is not valid UTF-8: {}", arg.to_string_lossy())]
    NotUtf8 {
        /// Its position, from 1 (after the program name).
        position: usize,
        /// The argument as given.
        arg: OsString,
    },
    /// A configuration file could not be used.
    #[error(transparent)]
    Config(#[from] crate::config::Error),
}

/// Turns the raw arguments (without the program name) into what argh parses: checks they are
/// UTF-8, splits `--opt=value`, and expands configuration files in place.
pub fn preprocess(args: Vec<OsString>) -> Result<Vec<String>, Error> {
    let args = args
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            a.into_string().map_err(|arg| Error::NotUtf8 {
                position: i + 1,
                arg,
            })
        })
        .collect::<Result<Vec<String>, Error>>()?;
    let args = crate::config::split_equals(args);
    Ok(crate::config::expand(args)?)
}

/// Does `args` ask for the version (`--version` or `-V` before any `--`)?
pub fn wants_version(args: &[OsString]) -> bool {
    args.iter()
        .take_while(|a| a.as_os_str() != "--")
        .any(|a| a == "--version" || a == "-V")
}

/// The `name version` line printed by `--version`.
pub fn version_line(tool: &str) -> String {
    format!("{tool} {VERSION}")
}

/// Parses the process arguments into `T`, or exits: `--version` and `--help` print to stdout
/// and exit 0; a usage error is logged at FATAL on stderr, with a `HINT:` line, and exits with
/// `usage_status`.
pub fn parse_args<T: argh::FromArgs>(tool: &'static str, usage_status: u8) -> T {
    let raw: Vec<OsString> = std::env::args_os().skip(1).collect();
    match parse_from(tool, raw) {
        Ok(t) => t,
        Err(Exit::Print(text)) => {
            print_stdout(&text);
            std::process::exit(0)
        }
        Err(Exit::Usage(message)) => {
            usage_error(tool, &message);
            std::process::exit(i32::from(usage_status))
        }
    }
}

/// Why parsing stopped short of a value.
#[derive(Debug, PartialEq, Eq)]
enum Exit {
    /// Print this to stdout and exit 0 (`--help`, `--version`).
    Print(String),
    /// A usage error with this one-line message.
    Usage(String),
}

fn parse_from<T: argh::FromArgs>(tool: &'static str, raw: Vec<OsString>) -> Result<T, Exit> {
    if wants_version(&raw) {
        return Err(Exit::Print(format!("{}\n", version_line(tool))));
    }
    let args = preprocess(raw).map_err(|e| Exit::Usage(log::error_chain(&e)))?;
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    T::from_args(&[tool], &refs).map_err(|early| match early.status {
        Ok(()) => Exit::Print(early.output),
        Err(()) => Exit::Usage(one_line(&early.output)),
    })
}

/// argh's multi-line messages on one line: a heading ending in `:` is followed by its items
/// separated by commas, and headings by semicolons ("Required options not provided: --source,
/// --data-dir; Required positional arguments not provided: wal").
fn one_line(text: &str) -> String {
    let mut out = String::new();
    let mut in_list = false;
    let mut first_item = true;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if in_list && !line.ends_with(':') {
            out.push_str(if first_item { " " } else { ", " });
            first_item = false;
        } else if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(line);
        if line.ends_with(':') {
            in_list = true;
            first_item = true;
        } else if !in_list {
            first_item = true;
        }
    }
    out
}

fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    // If stdout is closed there is nobody to tell.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn usage_error(tool: &str, message: &str) {
    log::log_to_stderr(tool, Level::Fatal, message);
    log::log_to_stderr(
        tool,
        Level::Fatal,
        &format!("HINT: run {tool} --help for usage"),
    );
}

/// Runs the body of a binary: sets up the logger from `--log` (an unusable one is a FATAL line
/// on stderr and `error_status`), logs the arguments with `--verbose`, runs `f`, and turns an
/// error into an ERROR line (the whole chain on one line), an `ERROR : HINT: ...` line when the
/// chain holds an [`exit::Failure`] with a hint, and the failure's status or `error_status`.
pub fn run<F>(
    tool: &'static str,
    log_template: Option<&str>,
    verbose: bool,
    error_status: u8,
    f: F,
) -> ExitCode
where
    F: FnOnce() -> anyhow::Result<ExitCode>,
{
    let started = LogTarget::parse(log_template).and_then(|t| log::init(tool, t, verbose));
    if let Err(e) = started {
        log::log_to_stderr(tool, Level::Fatal, &log::error_chain(&e));
        return ExitCode::from(error_status);
    }
    if verbose {
        let args: Vec<String> = std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        crate::log_info!("Called with parameters: {}", args.join(" "));
    }
    match f() {
        Ok(code) => code,
        Err(e) => ExitCode::from(report_error(&e, error_status)),
    }
}

/// Logs `err` at ERROR (with its HINT line, if any) and returns the status to exit with.
fn report_error(err: &anyhow::Error, error_status: u8) -> u8 {
    let status = status_of(err, error_status);
    // Usage errors and errors that stop recovery are FATAL, as OmniPITR logged them; the rest
    // are ERRORs (PostgreSQL retries archive_command).
    let level = match status {
        exit::USAGE | exit::RESTORE_USAGE | exit::RESTORE_FATAL => Level::Fatal,
        _ => Level::Error,
    };
    for line in error_lines(err) {
        log::log(level, format_args!("{line}"));
    }
    status
}

/// The status to exit with for `err`: its [`exit::Failure`]'s, or `error_status`.
fn status_of(err: &anyhow::Error, error_status: u8) -> u8 {
    exit::find_failure(err)
        .and_then(exit::Failure::status_code)
        .unwrap_or(error_status)
}

/// The lines logged for `err`: the whole chain on one line, then its HINT if any.
fn error_lines(err: &anyhow::Error) -> Vec<String> {
    let one_line = format!("{err:#}")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut lines = vec![one_line];
    if let Some(hint) = exit::find_failure(err).and_then(exit::Failure::hint_text) {
        lines.push(format!("HINT: {hint}"));
    }
    lines
}

/// The `main` of a binary that is not written yet: `--help` says so, `--version` prints the
/// version, and anything else is a usage error (status [`exit::USAGE`]).
pub fn placeholder(tool: &'static str) -> ExitCode {
    let raw: Vec<OsString> = std::env::args_os().skip(1).collect();
    match placeholder_outcome(tool, &raw) {
        Ok(text) => {
            print_stdout(&text);
            ExitCode::SUCCESS
        }
        Err(message) => {
            usage_error(tool, &message);
            ExitCode::from(exit::USAGE)
        }
    }
}

fn placeholder_outcome(tool: &str, raw: &[OsString]) -> Result<String, String> {
    if wants_version(raw) {
        return Ok(format!("{}\n", version_line(tool)));
    }
    match raw {
        [a] if a == "--help" || a == "help" => Ok(format!(
            "Usage: {tool} [--help] [--version]\n\n\
             {tool} is not yet implemented in this version of pitr ({VERSION}).\n\n\
             Options:\n  --help            display usage information\n  \
             --version         print the version and exit\n"
        )),
        _ => Err(format!(
            "{tool} is not yet implemented; it accepts only --help and --version"
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use argh::FromArgs;
    use std::os::unix::ffi::OsStringExt;

    /// Test tool.
    #[derive(FromArgs, Debug)]
    struct Args {
        /// be chatty
        #[argh(switch)]
        verbose: bool,
        /// where to log
        #[argh(option)]
        log: Option<String>,
        /// destinations
        #[argh(option)]
        dst_local: Vec<String>,
        /// the WAL file
        #[argh(positional)]
        wal: String,
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn preprocess_splits_and_expands() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("archive.conf");
        std::fs::write(&conf, "# c\n--verbose\n--dst-local gzip=/a\n").unwrap();
        let conf_arg = format!("--config={}", conf.display());
        let args = preprocess(os(&[
            "--log=/l/^Y",
            &conf_arg,
            "--dst-local",
            "/b",
            "--",
            "--x=y",
        ]))
        .unwrap();
        assert_eq!(
            args,
            [
                "--log",
                "/l/^Y",
                "--verbose",
                "--dst-local",
                "gzip=/a",
                "--dst-local",
                "/b",
                "--",
                "--x=y"
            ]
        );
    }

    #[test]
    fn preprocess_rejects_non_utf8() {
        let args = vec![
            OsString::from("--log"),
            OsString::from_vec(b"/tmp/\xffx".to_vec()),
        ];
        let e = preprocess(args).unwrap_err();
        assert_eq!(
            e.to_string(),
            "argument 2 is not valid UTF-8: /tmp/\u{fffd}x"
        );
    }

    #[test]
    fn version_is_found_before_double_dash_only() {
        assert!(wants_version(&os(&["--verbose", "-V"])));
        assert!(wants_version(&os(&["x", "--version"])));
        assert!(!wants_version(&os(&["--", "--version"])));
        assert_eq!(
            parse_from::<Args>("pitr-archive", os(&["--version", "--bogus"])).unwrap_err(),
            Exit::Print("pitr-archive 0.1.0\n".to_string())
        );
    }

    #[test]
    fn parses_into_argh_struct() {
        let a: Args = parse_from(
            "pitr-archive",
            os(&[
                "--dst-local=gzip=/x",
                "--verbose",
                "pg_wal/000000010000000000000001",
            ]),
        )
        .unwrap();
        assert!(a.verbose);
        assert_eq!(a.log, None);
        assert_eq!(a.dst_local, ["gzip=/x"]);
        assert_eq!(a.wal, "pg_wal/000000010000000000000001");
    }

    #[test]
    fn usage_errors_are_one_line() {
        let e = parse_from::<Args>("pitr-archive", os(&["--bogus", "x"])).unwrap_err();
        assert_eq!(e, Exit::Usage("Unrecognized argument: --bogus".to_string()));
        let e = parse_from::<Args>("pitr-archive", os(&["--verbose"])).unwrap_err();
        assert_eq!(
            e,
            Exit::Usage("Required positional arguments not provided: wal".to_string())
        );
        assert_eq!(
            one_line("Required options not provided:\n    --a\n    --b\nRequired positional arguments not provided:\n    wal\n"),
            "Required options not provided: --a, --b; Required positional arguments not provided: wal"
        );
        assert_eq!(
            one_line("Unrecognized argument: x\nsecond line\n"),
            "Unrecognized argument: x; second line"
        );
        let e =
            parse_from::<Args>("pitr-archive", os(&["--cfg", "/nonexistent/p.conf"])).unwrap_err();
        assert_eq!(
            e,
            Exit::Usage(
                "cannot read config file /nonexistent/p.conf: \
                 No such file or directory (os error 2)"
                    .to_string()
            )
        );
    }

    #[test]
    fn help_is_printed_not_an_error() {
        match parse_from::<Args>("pitr-archive", os(&["--help"])).unwrap_err() {
            Exit::Print(text) => assert!(text.starts_with("Usage: pitr-archive"), "{text}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failure_sets_status_and_hint() {
        let err: anyhow::Error = exit::Failure::new("segment differs")
            .hint("look")
            .status(exit::RESTORE_FATAL)
            .into();
        let err = err.context("restoring x");
        assert_eq!(status_of(&err, 2), 126);
        assert_eq!(
            error_lines(&err),
            ["restoring x: segment differs", "HINT: look"]
        );
        let plain = anyhow::anyhow!("plain\nerror");
        assert_eq!(status_of(&plain, 2), 2);
        assert_eq!(error_lines(&plain), ["plain error"]);
    }

    #[test]
    fn placeholder_accepts_help_and_version_only() {
        let help = placeholder_outcome("pitr-backup", &os(&["--help"])).unwrap();
        assert!(
            help.contains("pitr-backup is not yet implemented"),
            "{help}"
        );
        assert_eq!(
            placeholder_outcome("pitr-backup", &os(&["-V"])).unwrap(),
            "pitr-backup 0.1.0\n"
        );
        assert!(placeholder_outcome("pitr-backup", &os(&["--data-dir", "/x"])).is_err());
        assert!(placeholder_outcome("pitr-backup", &os(&[])).is_err());
    }
}

//! Command-line glue shared by the binaries: the options every binary has, argument parsing
//! with *our* usage exit status, the pid file, logger set-up and error reporting.
//!
//! A binary's `main` is [`main::<Args>()`](main): its argument type implements [`Tool`] (name,
//! parsing, run) and declares its options with [`tool_args!`], which appends the common ones
//! ([`CommonOptions`]: `--log`, `--verbose`, `--pid-file`, `--config-file`, `--temp-dir`).
//! argh has no flattening of one struct into another, so a macro writes the shared fields into
//! each struct: `--help` lists them like any other option and they are declared once.
//!
//! [`main`] handles `--version`, configuration files (`--config-file`) and `--opt=value` before
//! handing the arguments to argh, maps a usage error to a FATAL log line and the tool's usage
//! status (`argh::from_env` would exit 1, which PostgreSQL reads from `restore_command` as "file
//! not found"), takes the pid file, and turns the verb's `anyhow::Result<ExitCode>` into log
//! lines and an exit status. This module and [`crate::log`] are the only ones that print; this
//! one is the only one that exits.

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;

use std::path::PathBuf;

use crate::exit::{self, Failure};
use crate::log::{self, Level, LogTarget};
use crate::pidfile::{self, PidFile};

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

/// The options every binary has, declared by [`tool_args!`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommonOptions {
    /// `--log`: where log lines go.
    pub log: Option<String>,
    /// `--verbose`: timings and the arguments the program was called with.
    pub verbose: bool,
    /// `--pid-file`: refuse to run while the process named in it is alive.
    pub pid_file: Option<PathBuf>,
    /// `--temp-dir`: where scratch files go (default `$TMPDIR` or `/tmp`).
    pub temp_dir: Option<PathBuf>,
    /// `--s3-*`: how to reach an object store.
    pub s3: crate::objstore::S3Options,
}

impl CommonOptions {
    /// The scratch parent directory.
    pub fn temp_dir(&self) -> PathBuf {
        self.temp_dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

/// What [`tool_args!`] gives an argument type: its common options.
pub trait HasCommon {
    /// The common options as given.
    fn common(&self) -> CommonOptions;
}

/// Parsing the raw arguments into an argument type; [`tool_args!`] implements it with argh.
pub trait Parse: Sized {
    /// Parses `args` (without the program name) for the program `tool`.
    fn parse(tool: &str, args: &[&str]) -> Result<Self, argh::EarlyExit>;
}

/// A binary: its name, statuses, and what it runs.
pub trait Tool: Parse + HasCommon {
    /// The program name, printed on every log line.
    const NAME: &'static str;

    /// The status of a usage error in an invocation with these raw arguments.
    fn usage_status(_args: &[String]) -> u8 {
        exit::USAGE
    }

    /// The status of an error that carries no status of its own.
    fn error_status(&self) -> u8 {
        exit::ERROR
    }

    /// The status when another instance holds `--pid-file`.
    fn busy_status(&self) -> u8 {
        exit::BUSY
    }

    /// Does the work.
    fn run(self) -> anyhow::Result<ExitCode>;
}

/// Declares a binary's argument struct (argh's `FromArgs`) with the [`CommonOptions`] appended,
/// and implements [`HasCommon`] and [`Parse`] for it. Write the struct as usual, its last field
/// followed by a comma.
#[macro_export]
macro_rules! tool_args {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($body:tt)*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($body)*

            /// log file template, ^ standing for % of strftime (/var/log/pitr/^Y-^m-^d.log), or
            /// - for stdout (default: stderr, which PostgreSQL puts into its own log)
            #[argh(option)]
            pub log: Option<String>,

            /// log timings and the arguments the program was called with
            #[argh(switch)]
            pub verbose: bool,

            /// refuse to run while the process whose pid is in this file is alive
            #[argh(option)]
            pub pid_file: Option<std::path::PathBuf>,

            /// read options from FILE, one per line (--dst-local /srv/wal), # starts a comment
            #[argh(option)]
            pub config_file: Vec<std::path::PathBuf>,

            /// directory for scratch files (default: $TMPDIR or /tmp)
            #[argh(option)]
            pub temp_dir: Option<std::path::PathBuf>,

            /// object store endpoint for s3:// locations, http(s)://host[:port] (default:
            /// AWS_ENDPOINT_URL, else AWS S3 itself)
            #[argh(option)]
            pub s3_endpoint: Option<String>,

            /// region s3:// requests are signed for (default: AWS_REGION, else us-east-1)
            #[argh(option)]
            pub s3_region: Option<String>,

            /// s3:// addressing, path (default with an endpoint) or virtual (default on AWS)
            #[argh(option)]
            pub s3_addressing: Option<String>,

            /// file holding the S3 access key (aws_access_key_id and aws_secret_access_key, as
            /// in ~/.aws/credentials; default: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)
            #[argh(option)]
            pub s3_key_file: Option<std::path::PathBuf>,

            /// the object store honours If-None-Match (AWS S3, MinIO, Ceph RGW; not Garage):
            /// creates are atomic instead of checked after the write
            #[argh(switch)]
            pub s3_conditional_writes: bool,

            /// how long one s3:// request is retried while the store is unreachable or
            /// failing, in seconds (default 60); then the call fails
            #[argh(option)]
            pub s3_retry_seconds: Option<u64>,
        }

        impl $crate::cli::HasCommon for $name {
            fn common(&self) -> $crate::cli::CommonOptions {
                // --config-file is expanded in place before parsing; it is declared for --help.
                let _ = &self.config_file;
                $crate::cli::CommonOptions {
                    log: self.log.clone(),
                    verbose: self.verbose,
                    pid_file: self.pid_file.clone(),
                    temp_dir: self.temp_dir.clone(),
                    s3: $crate::objstore::S3Options {
                        endpoint: self.s3_endpoint.clone(),
                        region: self.s3_region.clone(),
                        addressing: self.s3_addressing.clone(),
                        key_file: self.s3_key_file.clone(),
                        conditional_writes: self.s3_conditional_writes,
                        retry_seconds: self.s3_retry_seconds,
                    },
                }
            }
        }

        impl $crate::cli::Parse for $name {
            fn parse(tool: &str, args: &[&str]) -> Result<Self, argh::EarlyExit> {
                <$name as argh::FromArgs>::from_args(&[tool], args)
            }
        }
    };
}

/// The `main` of every binary: parses the process arguments into `T` (or prints `--help` /
/// `--version` and exits 0, or logs a usage error at FATAL with a HINT and exits with
/// [`Tool::usage_status`]), sets up the logger from `--log`, takes `--pid-file`, runs
/// [`Tool::run`] and turns an error into log lines and a status.
pub fn main<T: Tool>() -> ExitCode {
    let raw: Vec<OsString> = std::env::args_os().skip(1).collect();
    let tool = match parse_from::<T>(raw) {
        Ok(t) => t,
        Err(Exit::Print(text)) => {
            print_stdout(&text);
            return ExitCode::SUCCESS;
        }
        Err(Exit::Usage { message, status }) => {
            usage_error(T::NAME, &message);
            return ExitCode::from(status);
        }
    };
    let common = tool.common();
    let target = match LogTarget::parse(common.log.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            usage_error(T::NAME, &log::error_chain(&e));
            let raw: Vec<String> = std::env::args().skip(1).collect();
            return ExitCode::from(T::usage_status(&raw));
        }
    };
    let error_status = tool.error_status();
    if let Err(e) = log::init(T::NAME, target, common.verbose) {
        log::log_to_stderr(T::NAME, Level::Fatal, &log::error_chain(&e));
        log::log_to_stderr(
            T::NAME,
            Level::Fatal,
            "HINT: give --log a file in a directory the user running this program may write, or leave --log out to log to stderr",
        );
        return ExitCode::from(error_status);
    }
    if common.verbose {
        let args: Vec<String> = std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        crate::log_info!("Called with parameters: {}", args.join(" "));
    }
    let busy = tool.busy_status();
    let result =
        take_pid_file(T::NAME, common.pid_file.as_deref(), busy).and_then(|_pid_file| tool.run());
    match result {
        Ok(code) => code,
        Err(e) => ExitCode::from(report_error(&e, error_status)),
    }
}

/// Takes `--pid-file` for the run: another live instance is `busy`; a file that cannot be
/// written is an ordinary error with a HINT.
fn take_pid_file(
    tool: &'static str,
    path: Option<&std::path::Path>,
    busy: u8,
) -> anyhow::Result<Option<PidFile>> {
    let Some(p) = path else { return Ok(None) };
    match PidFile::acquire(p, tool) {
        Ok(f) => Ok(Some(f)),
        Err(e @ pidfile::Error::Running { .. }) => Err(Failure::new(e.to_string())
            .hint("wait for it to finish, or give each instance a pid file of its own")
            .status(busy)
            .into()),
        Err(e) => Err(anyhow::Error::from(e).context(
            Failure::new(format!("cannot use --pid-file {}", p.display())).hint(
                "give a pid file in an existing directory writable by the user the program runs as",
            ),
        )),
    }
}

/// Why parsing stopped short of a value.
#[derive(Debug, PartialEq, Eq)]
enum Exit {
    /// Print this to stdout and exit 0 (`--help`, `--version`).
    Print(String),
    /// A usage error with this one-line message, and the status to exit with.
    Usage {
        /// The message.
        message: String,
        /// The tool's usage status for this invocation.
        status: u8,
    },
}

fn parse_from<T: Tool>(raw: Vec<OsString>) -> Result<T, Exit> {
    if wants_version(&raw) {
        return Err(Exit::Print(format!("{}\n", version_line(T::NAME))));
    }
    let lossy: Vec<String> = raw
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let status = T::usage_status(&lossy);
    let args = preprocess(raw).map_err(|e| Exit::Usage {
        message: log::error_chain(&e),
        status,
    })?;
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    T::parse(T::NAME, &refs).map_err(|early| match early.status {
        Ok(()) => Exit::Print(early.output),
        Err(()) => Exit::Usage {
            message: one_line(&early.output),
            status,
        },
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
    if let Some(hint) = exit::find_failure(err)
        .and_then(exit::Failure::hint_text)
        .or_else(|| io_hint(err))
    {
        lines.push(format!("HINT: {hint}"));
    }
    lines
}

/// The remedy for an error no [`exit::Failure`] explains, from the operating system's error
/// at the bottom of its chain: a full disk, a permission, a missing path.
fn io_hint(err: &anyhow::Error) -> Option<&'static str> {
    use std::io::ErrorKind;
    // The errno, or for an error re-wrapped with a message only its kind.
    let code = err.chain().find_map(|e| {
        let io = e.downcast_ref::<std::io::Error>()?;
        io.raw_os_error().or(match io.kind() {
            ErrorKind::StorageFull => Some(libc::ENOSPC),
            ErrorKind::PermissionDenied => Some(libc::EACCES),
            ErrorKind::NotFound => Some(libc::ENOENT),
            ErrorKind::ReadOnlyFilesystem => Some(libc::EROFS),
            _ => None,
        })
    })?;
    Some(match code {
        libc::ENOSPC | libc::EDQUOT => {
            "free space (or raise the quota) on the file system of the path named above, then run again; nothing under a final name was written"
        }
        libc::EACCES | libc::EPERM => {
            "give the user running this program (PostgreSQL's user for archive_command and restore_command) access to the path named above"
        }
        libc::ENOENT | libc::ENOTDIR => "check that the path named above exists",
        libc::EROFS => "the file system of the path named above is read-only",
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use argh::FromArgs;
    use std::os::unix::ffi::OsStringExt;

    crate::tool_args! {
        /// Test tool.
        #[derive(FromArgs, Debug)]
        pub struct Args {
            /// destinations
            #[argh(option)]
            pub dst_local: Vec<String>,
            /// the WAL file
            #[argh(positional)]
            pub wal: String,
        }
    }

    impl Tool for Args {
        const NAME: &'static str = "pitr-archive";
        fn run(self) -> anyhow::Result<ExitCode> {
            Ok(ExitCode::SUCCESS)
        }
    }

    fn usage(message: &str) -> Exit {
        Exit::Usage {
            message: message.to_string(),
            status: exit::USAGE,
        }
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
            parse_from::<Args>(os(&["--version", "--bogus"])).unwrap_err(),
            Exit::Print("pitr-archive 0.1.0\n".to_string())
        );
    }

    #[test]
    fn parses_into_argh_struct() {
        let a: Args = parse_from(os(&[
            "--dst-local=gzip=/x",
            "--verbose",
            "pg_wal/000000010000000000000001",
        ]))
        .unwrap();
        assert!(a.verbose);
        assert_eq!(a.log, None);
        assert_eq!(a.dst_local, ["gzip=/x"]);
        assert_eq!(a.wal, "pg_wal/000000010000000000000001");
    }

    #[test]
    fn usage_errors_are_one_line() {
        let e = parse_from::<Args>(os(&["--bogus", "x"])).unwrap_err();
        assert_eq!(e, usage("Unrecognized argument: --bogus"));
        let e = parse_from::<Args>(os(&["--verbose"])).unwrap_err();
        assert_eq!(e, usage("Required positional arguments not provided: wal"));
        assert_eq!(
            one_line("Required options not provided:\n    --a\n    --b\nRequired positional arguments not provided:\n    wal\n"),
            "Required options not provided: --a, --b; Required positional arguments not provided: wal"
        );
        assert_eq!(
            one_line("Unrecognized argument: x\nsecond line\n"),
            "Unrecognized argument: x; second line"
        );
        let e = parse_from::<Args>(os(&["--cfg", "/nonexistent/p.conf"])).unwrap_err();
        assert_eq!(
            e,
            usage(
                "cannot read config file /nonexistent/p.conf: \
                 No such file or directory (os error 2)"
            )
        );
    }

    #[test]
    fn help_is_printed_not_an_error() {
        match parse_from::<Args>(os(&["--help"])).unwrap_err() {
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
    fn common_options_come_from_the_macro() {
        let a: Args = parse_from(os(&[
            "--log",
            "-",
            "--verbose",
            "--pid-file",
            "/run/x.pid",
            "--temp-dir",
            "/t",
            "w",
        ]))
        .unwrap();
        assert_eq!(
            a.common(),
            CommonOptions {
                log: Some("-".into()),
                verbose: true,
                pid_file: Some("/run/x.pid".into()),
                temp_dir: Some("/t".into()),
                s3: crate::objstore::S3Options::default(),
            }
        );
        let help = match parse_from::<Args>(os(&["--help"])).unwrap_err() {
            Exit::Print(text) => text,
            other => panic!("{other:?}"),
        };
        for opt in [
            "--log",
            "--verbose",
            "--pid-file",
            "--config-file",
            "--temp-dir",
        ] {
            assert!(help.contains(opt), "{opt} in {help}");
        }
    }

    #[test]
    fn pid_file_busy_and_unusable_are_told_apart() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("no/such/dir/x.pid");
        let err = take_pid_file("pitr-archive", Some(&missing), exit::BUSY).unwrap_err();
        assert_eq!(status_of(&err, exit::ERROR), exit::ERROR);
        assert!(error_lines(&err)[0]
            .starts_with(&format!("cannot use --pid-file {}", missing.display())));
        let held = d.path().join("x.pid");
        let _mine = take_pid_file("pitr-archive", Some(&held), exit::BUSY).unwrap();
        // Our own pid is alive: a second instance (as far as the file says) is busy.
        let err = take_pid_file("pitr-archive", Some(&held), exit::BUSY).unwrap_err();
        assert_eq!(status_of(&err, exit::ERROR), exit::BUSY);
    }

    #[test]
    fn errors_of_the_operating_system_get_a_remedy() {
        let full = anyhow::Error::from(crate::fs::IoError::new(
            "writing",
            std::path::Path::new("/srv/wal/x"),
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        ))
        .context("storing x");
        let lines = error_lines(&full);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].starts_with("HINT: free space"), "{lines:?}");
        let rewrapped = anyhow::Error::from(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "writing to zstd=/srv/b: No space left on device",
        ));
        assert!(error_lines(&rewrapped)[1].starts_with("HINT: free space"));
        let other = anyhow::anyhow!("something else");
        assert_eq!(error_lines(&other).len(), 1);
    }
}

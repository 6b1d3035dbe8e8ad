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

    /// OmniPITR's spellings of this binary's options, translated before parsing ([`translate`]).
    const ALIASES: Aliases = &[];

    /// The table of OmniPITR's spellings for an invocation with these arguments (configuration
    /// files expanded): [`Tool::ALIASES`], or for a binary with more than one form the table of
    /// the form they pick, which translates only into that form's options.
    fn aliases(_args: &[String]) -> Aliases {
        Self::ALIASES
    }

    /// The long options, for "did you mean" (default: those listed by `--help`).
    fn long_options() -> Vec<String> {
        match Self::parse(Self::NAME, &["--help"]) {
            Ok(_) => Vec::new(),
            Err(help) => option_names(&help.output),
        }
    }

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

    /// Whether this is a background worker that a run started with its own arguments
    /// (pitr-archive's archive-ahead worker; default: no). A worker leaves `--pid-file` to the
    /// run, and does not repeat the run's warning about ignored OmniPITR options.
    fn is_background_worker(&self) -> bool {
        false
    }

    /// Whether this run is a long-lived worker that allocates buffers of the same sizes batch
    /// after batch (pitr-archive's archive-ahead worker, pitr-restore's prefetch worker;
    /// default: no): such a run keeps the memory it frees for its next allocations (see
    /// [`keep_freed_memory`]). A one-shot call gains nothing from that and would only end at a
    /// higher peak.
    fn reuses_buffers(&self) -> bool {
        false
    }

    /// What must happen before anything else, even before the arguments are read (default:
    /// nothing). pitr-backup starts recording SIGINT/SIGTERM here, so that a signal that
    /// arrives while it starts up is acted on by its first check instead of killing it.
    fn at_start() {}

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

            /// read options from FILE, one per line as on the command line (--temp-dir
            /// /var/tmp), # starts a comment
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

            /// PEM file of the certificate authorities an https s3:// endpoint is checked
            /// against, instead of the system's (an in-house store with its own CA)
            #[argh(option)]
            pub s3_ca_file: Option<std::path::PathBuf>,
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
                        ca_file: self.s3_ca_file.clone(),
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

/// Has the allocator keep the memory a run frees for its next allocations; whether glibc took
/// both settings. A WAL segment's buffers (its compressed copy for each codec, the pieces
/// compressed on each core, a decompressed segment) are 1–16 MiB each: glibc gives allocations
/// that large their own `mmap` and unmaps them when freed, and returns memory at the top of a
/// heap to the kernel above 128 KiB, so a worker that handles segment after segment had the
/// kernel zero fresh pages for every one, and on a VM that hands freed memory back to its host
/// (free page reporting) the host back them again. With these settings a freed buffer is
/// reused in place; the worker keeps its peak (one batch's buffers) until it exits, which it
/// needed anyway. Since every arena keeps what was freed in it, the threads share one arena per
/// core rather than glibc's eight: a worker's sixteen request threads, each copying bodies
/// into an arena of its own, held a quarter more memory at their peak (measured in
/// ARCHITECTURE.md, "Freed memory stays in the workers"). Only for [`Tool::reuses_buffers`] runs: a one-shot pitr-archive call with two
/// codecs peaked at 54 MiB with them against 43 without, for nothing. Called before any
/// thread exists; a value glibc refuses leaves its default, which is only slower.
fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    let arenas = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(64) as libc::c_int;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's tuning parameters.
    unsafe {
        // 32 MiB is the largest threshold glibc accepts on 64-bit.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20) == 1
            && libc::mallopt(libc::M_ARENA_MAX, arenas) == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    true
}

/// The `main` of every binary: parses the process arguments into `T` (or prints `--help` /
/// `--version` and exits 0, or logs a usage error at FATAL with a HINT and exits with
/// [`Tool::usage_status`]), sets up the logger from `--log`, takes `--pid-file`, runs
/// [`Tool::run`] and turns an error into log lines and a status.
pub fn main<T: Tool>() -> ExitCode {
    T::at_start();
    let raw: Vec<OsString> = std::env::args_os().skip(1).collect();
    let (tool, ignored) = match parse_from::<T>(raw) {
        Ok(parsed) => parsed,
        Err(Exit::Print(text)) => {
            print_stdout(&text);
            return ExitCode::SUCCESS;
        }
        Err(Exit::Usage {
            message,
            hint,
            status,
        }) => {
            usage_error(T::NAME, &message, &hint);
            return ExitCode::from(status);
        }
    };
    if tool.reuses_buffers() {
        // Nothing else runs yet: argument parsing starts no thread.
        keep_freed_memory();
    }
    let common = tool.common();
    let target = match LogTarget::parse(common.log.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            usage_error(T::NAME, &log::error_chain(&e), &help_hint(T::NAME));
            let raw: Vec<String> = std::env::args().skip(1).collect();
            return ExitCode::from(T::usage_status(&raw));
        }
    };
    let error_status = tool.error_status();
    if let Err(e) = log::init(T::NAME, target, common.verbose) {
        log::log_to_stderr(T::NAME, Level::Fatal, &log::error_chain(&e));
        log::log_to_stderr(
            T::NAME,
            Level::Hint,
            "give --log a file in a directory the user running this program may write, or leave --log out to log to stderr",
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
    if !ignored.is_empty() && !tool.is_background_worker() {
        crate::log_warning!(
            "ignoring OmniPITR options {} does not need: {}",
            T::NAME,
            ignored.join(", ")
        );
    }
    let busy = tool.busy_status();
    let pid_file = common
        .pid_file
        .as_deref()
        .filter(|_| !tool.is_background_worker());
    let result = take_pid_file(T::NAME, pid_file, busy).and_then(|_pid_file| tool.run());
    match result {
        Ok(code) => code,
        Err(e) => ExitCode::from(report_error(&e, error_status)),
    }
}

/// Takes `--pid-file` for the run: another live instance is `busy`; a file that cannot be
/// written is an ordinary error with a HINT.
pub fn take_pid_file(
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
pub enum Exit {
    /// Print this to stdout and exit 0 (`--help`, `--version`).
    Print(String),
    /// A usage error with this one-line message, and the status to exit with.
    Usage {
        /// The message.
        message: String,
        /// Its remedy, logged as the HINT.
        hint: String,
        /// The tool's usage status for this invocation.
        status: u8,
    },
}

/// Parses `raw` (the arguments after the program name) into `T` as [`main`] does, with
/// OmniPITR's spellings translated; also returns the dropped options that were ignored (for one
/// WARNING once the logger is set up). Public for the binaries' unit tests.
pub fn parse_from<T: Tool>(raw: Vec<OsString>) -> Result<(T, Vec<String>), Exit> {
    if wants_version(&raw) {
        return Err(Exit::Print(format!("{}\n", version_line(T::NAME))));
    }
    let lossy: Vec<String> = raw
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let status = T::usage_status(&lossy);
    let usage = |message: String, hint: String| Exit::Usage {
        message,
        hint,
        status,
    };
    let args = preprocess(raw).map_err(|e| usage(log::error_chain(&e), help_hint(T::NAME)))?;
    let longs = T::long_options();
    let aliases = T::aliases(&args);
    let Translated { args, ignored } =
        translate(aliases, &longs, args).map_err(|r| usage(r.to_string(), r.hint.to_string()))?;
    if let Some((option, next)) = swallowed_option(&args, &longs, |o| takes_value::<T>(o)) {
        return Err(usage(
            format!("{option} has no value: the argument after it is the option {next}"),
            format!(
                "give {option} its value right after it (in a --config-file, on the same line: \
                 `{option} VALUE`)"
            ),
        ));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    match T::parse(T::NAME, &refs) {
        Ok(t) => Ok((t, ignored)),
        Err(early) => Err(match early.status {
            Ok(()) => Exit::Print(full_help(&early.output, aliases)),
            Err(()) => {
                let hint = match unrecognized(&early.output).and_then(|a| did_you_mean(a, &longs)) {
                    Some(long) => format!("did you mean `{long}`? {}", help_hint(T::NAME)),
                    None => help_hint(T::NAME),
                };
                usage(one_line(&early.output), hint)
            }
        }),
    }
}

/// The description of `--version` in `--help`'s options ([`main`] handles it before argh).
const VERSION_HELP: &str = "print the program's name and version, and exit";

/// Where argh starts an option's description in `--help`.
const HELP_COLUMN: usize = 20;

/// The width argh wraps `--help` at, and so do the lines added to it.
const HELP_WIDTH: usize = 80;

/// The `--help` text [`main`] prints: argh's, with `--version` listed among the options (before
/// `--help`), followed by the `OmniPITR spellings:` section made from the table `aliases` so
/// that it cannot drift from what [`translate`] accepts (the man page shows it as a section
/// too).
fn full_help(argh_help: &str, aliases: Aliases) -> String {
    let mut out = with_version_option(argh_help);
    if aliases.is_empty() {
        return out;
    }
    out.truncate(out.trim_end_matches('\n').len());
    out.push_str(
        "\n\nOmniPITR spellings:\n  OmniPITR's options are accepted as written, also in --config-file files:\n",
    );
    let (mut dropped, mut refused) = (Vec::new(), Vec::new());
    for (spelling, alias) in aliases {
        let ours = match alias {
            Alias::Option(o) | Alias::Switch(o) => (*o).to_string(),
            Alias::SwitchOrWal { switch, value } => {
                format!("{switch}, and {value} when a WAL segment name and %f follow")
            }
            Alias::ByValue { number, other } => format!("{number} for a number, else {other}"),
            Alias::DroppedOption | Alias::DroppedSwitch => {
                dropped.push(*spelling);
                continue;
            }
            Alias::Refused(_) | Alias::NotInForm { .. } => {
                refused.push(*spelling);
                continue;
            }
        };
        out.push_str(&entry_lines(spelling, &ours));
    }
    for (what, list) in [
        ("Not needed, ignored with a WARNING:", dropped),
        (
            "Not supported, refused with a HINT saying what to use instead:",
            refused,
        ),
    ] {
        if !list.is_empty() {
            out.push_str(&format!("  {what}\n"));
            out.push_str(&wrapped(&list.join(", "), 4));
        }
    }
    out
}

/// argh's help with the line `--version, -V` inserted before `--help` in `Options:`.
fn with_version_option(argh_help: &str) -> String {
    let mut out = String::with_capacity(argh_help.len() + HELP_WIDTH);
    let mut in_options = false;
    let mut listed = false;
    for line in argh_help.split_inclusive('\n') {
        if line.trim_end() == "Options:" {
            in_options = true;
        }
        if in_options && !listed && line.starts_with("  --help") {
            out.push_str(&entry_lines("--version, -V", VERSION_HELP));
            listed = true;
        }
        out.push_str(line);
    }
    out
}

/// An entry of a help list as argh lays one out: `name` at column 2, `text` from column 20,
/// wrapped at 80 columns (a name too long for its 18 columns stands alone on its line).
fn entry_lines(name: &str, text: &str) -> String {
    let pad = HELP_COLUMN - 2;
    let mut out = if name.chars().count() < pad {
        format!("  {name:<pad$}")
    } else {
        format!("  {name}\n{:HELP_COLUMN$}", "")
    };
    out.push_str(wrapped(text, HELP_COLUMN).trim_start());
    out
}

/// `text` wrapped at 80 columns at spaces, every line indented by `indent` and ending in a
/// newline.
fn wrapped(text: &str, indent: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > HELP_WIDTH {
            out.push_str(&format!("{:indent$}{line}\n", ""));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&format!("{:indent$}{line}\n", ""));
    out
}

/// Whether `option` (one of the tool's long options) takes a value, as argh sees it: alone, it
/// is missing one.
fn takes_value<T: Tool>(option: &str) -> bool {
    T::parse(T::NAME, &[option])
        .is_err_and(|e| e.status.is_err() && e.output.starts_with("No value provided for option"))
}

/// The first option that takes a value but is followed by another of the tool's options,
/// which argh would take as its value (`--log --dst-local /srv/wal` logging into a file named
/// `--dst-local`; a `--log` line without a value in a --config-file does the same to the next
/// option): `(option, next)`. Nothing after `--` is looked at.
fn swallowed_option(
    args: &[String],
    longs: &[String],
    takes_value: impl Fn(&str) -> bool,
) -> Option<(String, String)> {
    let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let args = &args[..end];
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if longs.contains(a) && takes_value(a) {
            match args.get(i + 1) {
                Some(next) if longs.contains(next) => return Some((a.clone(), next.clone())),
                _ => i += 2,
            }
        } else {
            i += 1;
        }
    }
    None
}

/// How a binary reads one of OmniPITR's spellings ([`Tool::ALIASES`]). OmniPITR's two-letter
/// options (`-dl`) are whole option names, which argh cannot declare, so [`translate`] rewrites
/// them into our long names before parsing, on the command line and in `--config-file` files
/// alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alias {
    /// Our option of this name, followed by its value.
    Option(&'static str),
    /// Our switch of this name.
    Switch(&'static str),
    /// An option pitr dropped, followed by a value: both are ignored, with a WARNING.
    DroppedOption,
    /// A switch pitr dropped: ignored, with a WARNING.
    DroppedSwitch,
    /// An option pitr does not support: a usage error with this HINT.
    Refused(&'static str),
    /// An option of another form of the binary, which the form this table is for does not
    /// take: a usage error naming that form (`pitr-restore --from-backup`), with the HINT
    /// `hint`.
    NotInForm {
        /// The form of the table, as the message names it.
        form: &'static str,
        /// What to use instead.
        hint: &'static str,
    },
    /// A switch with an optional WAL file name (OmniPITR's `-r [%r]`): the next argument is
    /// the value of the option `value` only if it is a WAL segment name and another WAL file
    /// name follows it, so that `-r %f %p` leaves `%f` in place (OmniPITR issue #39).
    SwitchOrWal {
        /// The switch.
        switch: &'static str,
        /// The option that takes the value.
        value: &'static str,
    },
    /// An option whose value decides which of ours it is: digits go to `number`, anything else
    /// to `other` (`-p` is omnipitr-backup-master's port but omnipitr-backup-slave's removal
    /// pause trigger).
    ByValue {
        /// The option for a number.
        number: &'static str,
        /// The option for anything else.
        other: &'static str,
    },
}

/// A binary's table of OmniPITR spellings: the spelling as written (`-dl`, `--gzip-path`) and
/// how it is read.
pub type Aliases = &'static [(&'static str, Alias)];

/// An alias table (`&[(spelling, Alias), …]`) that ends with OmniPITR's compressor-path options
/// (`-gp`/`--gzip-path`, `-bp`, `-lp`, `-ll`, `-xz` and their long forms), accepted and ignored
/// with a WARNING by every binary that compressed through an external program: gzip and zstd
/// are built in. One list, so that the binaries cannot drift apart.
#[macro_export]
macro_rules! aliases_with_compressor_paths {
    ($($entry:expr),* $(,)?) => {
        &[
            $($entry,)*
            ("-gp", $crate::cli::Alias::DroppedOption),
            ("--gzip-path", $crate::cli::Alias::DroppedOption),
            ("-bp", $crate::cli::Alias::DroppedOption),
            ("--bzip2-path", $crate::cli::Alias::DroppedOption),
            ("-lp", $crate::cli::Alias::DroppedOption),
            ("--lzma-path", $crate::cli::Alias::DroppedOption),
            ("-ll", $crate::cli::Alias::DroppedOption),
            ("--lz4-path", $crate::cli::Alias::DroppedOption),
            ("-xz", $crate::cli::Alias::DroppedOption),
            ("--xz-path", $crate::cli::Alias::DroppedOption),
        ]
    };
}

/// The arguments after [`translate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// What argh parses.
    pub args: Vec<String>,
    /// The dropped options given, as spelled, in order (for one WARNING).
    pub ignored: Vec<String>,
}

/// An option pitr does not support, or one of another form of the binary, given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// The option as spelled.
    pub option: String,
    /// The usage error: `option -dd is not supported`.
    pub message: String,
    /// What to use instead.
    pub hint: &'static str,
}

/// Rewrites OmniPITR's spellings in `args` into ours by the table `aliases`: short and
/// two-letter aliases (`-dl /x`, also `-dl=/x`, and `--dl` as Getopt::Long took it), dropped
/// options (removed and listed in [`Translated::ignored`]), refused ones (an error), and
/// single-dash long names (`-dst-local`) of the options in `longs`. Nothing after `--` is
/// touched, nor the value of a translated option.
pub fn translate(
    aliases: Aliases,
    longs: &[String],
    args: Vec<String>,
) -> Result<Translated, Refusal> {
    let lookup = |name: &str| alias_of(aliases, longs, name);
    let mut out = Translated {
        args: Vec::with_capacity(args.len()),
        ignored: Vec::new(),
    };
    let mut queue: std::collections::VecDeque<String> = args.into();
    while let Some(arg) = queue.pop_front() {
        if arg == "--" {
            out.args.push(arg);
            out.args.extend(queue.drain(..));
            break;
        }
        // `-dl=/x`: OmniPITR's spelling with its value attached.
        if let Some((name, value)) = arg.split_once('=') {
            if lookup(name).is_some() {
                queue.push_front(value.to_string());
                queue.push_front(name.to_string());
                continue;
            }
        }
        // A long name with one dash (`-dst-local`, `-not-nice`), as OmniPITR's option parser
        // took them: ours, or an OmniPITR option we drop or refuse.
        let long = format!("-{arg}");
        let single_dash = arg.starts_with('-') && !arg.starts_with("--") && arg.len() > 2;
        let Some(alias) = lookup(&arg).or_else(|| single_dash.then(|| lookup(&long)).flatten())
        else {
            let single_dash_long = single_dash && longs.contains(&long);
            out.args.push(if single_dash_long { long } else { arg });
            continue;
        };
        match alias {
            Alias::Option(long) => {
                out.args.push(long.to_string());
                out.args.extend(queue.pop_front());
            }
            Alias::Switch(long) => out.args.push(long.to_string()),
            Alias::DroppedOption => {
                queue.pop_front();
                out.ignored.push(arg);
            }
            Alias::DroppedSwitch => out.ignored.push(arg),
            Alias::Refused(hint) => {
                return Err(Refusal {
                    message: format!("option {arg} is not supported"),
                    option: arg,
                    hint,
                })
            }
            Alias::NotInForm { form, hint } => {
                return Err(Refusal {
                    message: format!("option {arg} is not an option of {form}"),
                    option: arg,
                    hint,
                })
            }
            Alias::SwitchOrWal { switch, value } => {
                out.args.push(switch.to_string());
                if takes_wal_value(queue.make_contiguous()) {
                    out.args.push(value.to_string());
                    out.args.extend(queue.pop_front());
                }
            }
            Alias::ByValue { number, other } => {
                let numeric = queue
                    .front()
                    .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
                out.args
                    .push(if numeric { number } else { other }.to_string());
                out.args.extend(queue.pop_front());
            }
        }
    }
    Ok(out)
}

/// How the table `aliases` reads the argument `name`: its entry, or for `--dl` the entry of the
/// multi-letter alias `-dl` (OmniPITR's Getopt::Long took one dash or two) unless `--dl` is one
/// of our long options `longs`.
fn alias_of(aliases: Aliases, longs: &[String], name: &str) -> Option<Alias> {
    let find = |spelling: &str| {
        aliases
            .iter()
            .find(|(a, _)| *a == spelling)
            .map(|(_, k)| *k)
    };
    find(name).or_else(|| {
        let single = name.strip_prefix('-')?;
        let multi_letter = single.starts_with('-') && !single.starts_with("--") && single.len() > 2;
        if !multi_letter || longs.iter().any(|l| l == name) {
            return None;
        }
        find(single)
    })
}

/// Is the first of `rest` the value of an optional WAL file name option: a segment name
/// followed (before `--`) by another WAL file name (`-r %r %f %p`, not `-r %f %p`)?
fn takes_wal_value(rest: &[String]) -> bool {
    use crate::wal::{WalFileName, WalKind};
    let Some((first, after)) = rest.split_first() else {
        return false;
    };
    (first == crate::wal::NO_RESTART_POINT
        || WalFileName::parse(first).is_ok_and(|w| w.kind == WalKind::Segment))
        && after
            .iter()
            .take_while(|a| *a != "--")
            .any(|a| WalFileName::parse(a).is_ok())
}

/// The long options listed in argh's `--help` text (`--dst-local`, ..., `--help`).
pub fn option_names(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Options:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  -"))
        .filter_map(|l| l.split([' ', ',']).find(|w| w.starts_with("--")))
        .map(str::to_string)
        .collect()
}

/// The argument argh did not recognise, from its error text.
fn unrecognized(output: &str) -> Option<&str> {
    output
        .lines()
        .next()?
        .strip_prefix("Unrecognized argument: ")
        .map(str::trim)
}

/// The long option `given` was probably meant to be: the nearest by edit distance (ignoring
/// leading dashes), if at most 2 edits away and fewer than half its length; the first listed
/// wins a tie.
pub fn did_you_mean<'a>(given: &str, longs: &'a [String]) -> Option<&'a str> {
    let name = given.trim_start_matches('-');
    if name.is_empty() {
        return None;
    }
    let (distance, best) = longs
        .iter()
        .map(|l| (edit_distance(name, l.trim_start_matches('-')), l))
        .min_by_key(|(d, _)| *d)?;
    // A long option is never its own correction (pitr-restore --from-backup --data-dir: an
    // option of the other form).
    (distance <= 2 && distance * 2 < name.chars().count() && best != given).then_some(best.as_str())
}

/// Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// What is wrong with `T`'s alias table: a spelling listed twice, or translated into an option
/// `T` does not have. For each binary's unit tests.
pub fn alias_problems<T: Tool>() -> Vec<String> {
    table_problems(T::ALIASES, &T::long_options())
}

/// What is wrong with the `--help` that `T` prints for `args` (`["--help"]`, or the arguments of
/// another form ending in `--help`): a line of its `Options:` or `OmniPITR spellings:` wider
/// than 80 columns, or `--version` missing from its options. For each binary's unit tests.
pub fn help_problems<T: Tool>(args: &[&str]) -> Vec<String> {
    let raw = args.iter().map(OsString::from).collect();
    let help = match parse_from::<T>(raw) {
        Err(Exit::Print(help)) => help,
        other => return vec![format!("{args:?} printed no help: {:?}", other.err())],
    };
    let mut problems = Vec::new();
    for title in ["Options:", "OmniPITR spellings:"] {
        let section = help
            .split(&format!("\n{title}\n"))
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .unwrap_or_default();
        for line in section.lines().filter(|l| l.chars().count() > HELP_WIDTH) {
            problems.push(format!(
                "{title} line wider than {HELP_WIDTH} columns: {line}"
            ));
        }
    }
    if !help.contains("\n  --version, -V ") {
        problems.push("Options: lacks --version".to_string());
    }
    problems
}

/// What is wrong with the alias table `aliases` of a binary (or of one of its forms) whose long
/// options are `longs`: a spelling listed twice, or translated into an option not in `longs`.
pub fn table_problems(aliases: Aliases, longs: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, (spelling, alias)) in aliases.iter().enumerate() {
        if aliases[..i].iter().any(|(s, _)| s == spelling) {
            problems.push(format!("{spelling} is listed twice"));
        }
        let targets = match alias {
            Alias::Option(l) | Alias::Switch(l) => vec![*l],
            Alias::SwitchOrWal { switch, value } => vec![*switch, *value],
            Alias::ByValue { number, other } => vec![*number, *other],
            Alias::DroppedOption
            | Alias::DroppedSwitch
            | Alias::Refused(_)
            | Alias::NotInForm { .. } => vec![],
        };
        for target in targets {
            if !longs.iter().any(|l| l == target) {
                problems.push(format!(
                    "{spelling} stands for {target}, which is no option"
                ));
            }
        }
    }
    problems
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

fn usage_error(tool: &str, message: &str, hint: &str) {
    log::log_to_stderr(tool, Level::Fatal, message);
    log::log_to_stderr(tool, Level::Hint, hint);
}

/// The HINT of a usage error that has no better one.
fn help_hint(tool: &str) -> String {
    format!("run {tool} --help for usage")
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
    for (i, line) in error_lines(err).iter().enumerate() {
        let level = if i == 0 { level } else { Level::Hint };
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

/// The lines logged for `err`: the whole chain on one line, then its HINT (logged at the
/// `HINT` level) if any.
fn error_lines(err: &anyhow::Error) -> Vec<String> {
    let one_line = format!("{err:#}")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut lines = vec![one_line];
    if let Some(hint) = hint_for(err) {
        lines.push(hint.to_string());
    }
    lines
}

/// The HINT for `err`: its [`exit::Failure`]'s, or else the remedy for the operating system's
/// error at the bottom of its chain, if any.
pub fn hint_for(err: &anyhow::Error) -> Option<&str> {
    exit::find_failure(err)
        .and_then(exit::Failure::hint_text)
        .or_else(|| io_hint(err))
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

    #[test]
    fn glibc_takes_the_settings_that_keep_freed_buffers() {
        assert!(keep_freed_memory());
    }

    impl Tool for Args {
        const NAME: &'static str = "pitr-archive";
        const ALIASES: Aliases = &[
            ("-dl", Alias::Option("--dst-local")),
            ("-l", Alias::Option("--log")),
            ("-v", Alias::Switch("--verbose")),
            ("-nn", Alias::DroppedSwitch),
            ("-gp", Alias::DroppedOption),
            ("-dd", Alias::Refused("use --dst-pipe")),
        ];
        fn run(self) -> anyhow::Result<ExitCode> {
            Ok(ExitCode::SUCCESS)
        }
    }

    fn usage(message: &str) -> Exit {
        Exit::Usage {
            message: message.to_string(),
            hint: "run pitr-archive --help for usage".to_string(),
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
        let (a, _): (Args, _) = parse_from(os(&[
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

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|a| a.to_string()).collect()
    }

    const TABLE: Aliases = &[
        ("-dl", Alias::Option("--dst-local")),
        ("-s", Alias::Option("--state-dir")),
        ("-v", Alias::Switch("--verbose")),
        ("-nn", Alias::DroppedSwitch),
        ("--not-nice", Alias::DroppedSwitch),
        ("-gp", Alias::DroppedOption),
        ("--gzip-path", Alias::DroppedOption),
        ("-dd", Alias::Refused("use --dst-pipe")),
        (
            "-r",
            Alias::SwitchOrWal {
                switch: "--remove-unneeded",
                value: "--oldest-needed",
            },
        ),
        (
            "-p",
            Alias::ByValue {
                number: "--port",
                other: "--removal-pause-trigger",
            },
        ),
    ];

    fn tr(args: &[&str]) -> Result<Translated, Refusal> {
        translate(TABLE, &s(&["--dst-local", "--state-dir"]), s(args))
    }

    #[test]
    fn the_table_translates_omnipitr_spellings() {
        let t = tr(&[
            "-s",
            "/st",
            "-dl",
            "gzip=/a",
            "-dl=/b",
            "-v",
            "-dst-local",
            "/c",
            "%p",
        ])
        .unwrap();
        assert_eq!(
            t.args,
            [
                "--state-dir",
                "/st",
                "--dst-local",
                "gzip=/a",
                "--dst-local",
                "/b",
                "--verbose",
                "--dst-local",
                "/c",
                "%p"
            ]
        );
        assert!(t.ignored.is_empty());
        // The value of a translated option and everything after `--` stay as they are.
        let t = tr(&["-dl", "-v", "--", "-s"]).unwrap();
        assert_eq!(t.args, ["--dst-local", "-v", "--", "-s"]);
        // Unknown spellings are left to argh; a single-dash name that is no long option too.
        assert_eq!(tr(&["-q", "-bogus"]).unwrap().args, ["-q", "-bogus"]);
        // Dropped options in their single-dash long spelling are dropped too.
        let t = tr(&["-not-nice", "-gzip-path", "/bin/gzip", "-dl", "/a", "%p"]).unwrap();
        assert_eq!(t.args, ["--dst-local", "/a", "%p"]);
        assert_eq!(t.ignored, ["-not-nice", "-gzip-path"]);
        assert_eq!(tr(&["-p", "5432"]).unwrap().args, ["--port", "5432"]);
        assert_eq!(
            tr(&["-p", "/run/pause"]).unwrap().args,
            ["--removal-pause-trigger", "/run/pause"]
        );
    }

    #[test]
    fn two_dashes_spell_a_multi_letter_alias_too() {
        // Getopt::Long: `--dl` is `-dl`, for translated, dropped and refused spellings alike.
        let t = tr(&[
            "--dl",
            "/a",
            "--dl=/b",
            "--nn",
            "--gp",
            "/bin/gzip",
            "--s",
            "/st",
            "%p",
        ])
        .unwrap();
        assert_eq!(
            t.args,
            ["--dst-local", "/a", "--dst-local", "/b", "--s", "/st", "%p"]
        );
        assert_eq!(t.ignored, ["--nn", "--gp"]);
        let e = tr(&["--dd", "u@h:/x"]).unwrap_err();
        assert_eq!(e.to_string(), "option --dd is not supported");
        assert_eq!(e.hint, "use --dst-pipe");
        // One-letter aliases, three dashes, and a long option of that name are left alone.
        assert_eq!(
            tr(&["--v", "---dl", "x"]).unwrap().args,
            ["--v", "---dl", "x"]
        );
        let t = translate(TABLE, &s(&["--dl"]), s(&["--dl", "x"])).unwrap();
        assert_eq!(t.args, ["--dl", "x"]);
        let (a, ignored) = parse_from::<Args>(os(&["--dl", "/a", "--nn", "w"])).unwrap();
        assert_eq!(a.dst_local, ["/a"]);
        assert_eq!(ignored, ["--nn"]);
    }

    /// [`Args`] as a binary of two forms: `--verbose` picks the second, whose table has no
    /// `-dl`.
    #[derive(Debug)]
    struct TwoForms(Args);

    impl Parse for TwoForms {
        fn parse(tool: &str, args: &[&str]) -> Result<Self, argh::EarlyExit> {
            <Args as Parse>::parse(tool, args).map(TwoForms)
        }
    }

    impl HasCommon for TwoForms {
        fn common(&self) -> CommonOptions {
            self.0.common()
        }
    }

    impl Tool for TwoForms {
        const NAME: &'static str = "pitr-archive";
        const ALIASES: Aliases = Args::ALIASES;
        fn aliases(args: &[String]) -> Aliases {
            if args.iter().any(|a| a == "--verbose") {
                &[(
                    "-dl",
                    Alias::NotInForm {
                        form: "pitr-archive --verbose",
                        hint: "give --dst-local",
                    },
                )]
            } else {
                Self::ALIASES
            }
        }
        fn run(self) -> anyhow::Result<ExitCode> {
            Ok(ExitCode::SUCCESS)
        }
    }

    #[test]
    fn each_form_has_its_own_table() {
        let (a, _) = parse_from::<TwoForms>(os(&["-dl", "/a", "w"])).unwrap();
        assert_eq!(a.0.dst_local, ["/a"]);
        assert_eq!(
            parse_from::<TwoForms>(os(&["--verbose", "-dl", "/a", "w"])).unwrap_err(),
            Exit::Usage {
                message: "option -dl is not an option of pitr-archive --verbose".into(),
                hint: "give --dst-local".into(),
                status: exit::USAGE,
            }
        );
        match parse_from::<TwoForms>(os(&["--verbose", "--help"])).unwrap_err() {
            Exit::Print(text) => assert!(
                text.ends_with(
                    "OmniPITR spellings:\n  \
                     OmniPITR's options are accepted as written, also in --config-file files:\n  \
                     Not supported, refused with a HINT saying what to use instead:\n    -dl\n"
                ),
                "{text}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn r_without_a_value_leaves_f_in_place() {
        let f = "000000010000000000000005";
        let r = "000000010000000000000003";
        // OmniPITR issue #39: `-r %f %p` made %f the value of -r.
        let t = tr(&["-r", "-v", f, "pg_wal/RECOVERYXLOG"]).unwrap();
        assert_eq!(
            t.args,
            ["--remove-unneeded", "--verbose", f, "pg_wal/RECOVERYXLOG"]
        );
        let t = tr(&["-r", f, "pg_wal/RECOVERYXLOG"]).unwrap();
        assert_eq!(t.args, ["--remove-unneeded", f, "pg_wal/RECOVERYXLOG"]);
        let t = tr(&["-r", r, f, "pg_wal/RECOVERYXLOG"]).unwrap();
        assert_eq!(
            t.args,
            [
                "--remove-unneeded",
                "--oldest-needed",
                r,
                f,
                "pg_wal/RECOVERYXLOG"
            ]
        );
        let t = tr(&["-r", r, "00000002.history", "pg_wal/RECOVERYHISTORY"]).unwrap();
        assert_eq!(t.args[..3], ["--remove-unneeded", "--oldest-needed", r]);
        // A history file is never the oldest needed segment.
        let t = tr(&["-r", "00000002.history", "pg_wal/RECOVERYHISTORY"]).unwrap();
        assert_eq!(
            t.args,
            [
                "--remove-unneeded",
                "00000002.history",
                "pg_wal/RECOVERYHISTORY"
            ]
        );
    }

    #[test]
    fn dropped_options_are_ignored_and_named() {
        let t = tr(&["-nn", "-gp", "/usr/bin/pigz", "-dl", "/a", "-gp=/x", "%p"]).unwrap();
        assert_eq!(t.args, ["--dst-local", "/a", "%p"]);
        assert_eq!(t.ignored, ["-nn", "-gp", "-gp"]);
        let (a, ignored) =
            parse_from::<Args>(os(&["-nn", "-gp", "/bin/gzip", "-dl", "/a", "w"])).unwrap();
        assert_eq!(a.dst_local, ["/a"]);
        assert_eq!(ignored, ["-nn", "-gp"]);
    }

    #[test]
    fn refused_options_are_a_usage_error_with_a_hint() {
        let e = tr(&["-dl", "/a", "-dd", "u@h:/x"]).unwrap_err();
        assert_eq!(e.to_string(), "option -dd is not supported");
        assert_eq!(e.hint, "use --dst-pipe");
        assert_eq!(
            parse_from::<Args>(os(&["-dd=u@h:/x", "w"])).unwrap_err(),
            Exit::Usage {
                message: "option -dd is not supported".into(),
                hint: "use --dst-pipe".into(),
                status: exit::USAGE,
            }
        );
    }

    #[test]
    fn a_typo_gets_did_you_mean() {
        let longs = s(&["--dst-local", "--dst-remote", "--log", "--verbose"]);
        assert_eq!(did_you_mean("--dst-locl", &longs), Some("--dst-local"));
        assert_eq!(did_you_mean("--dstlocal", &longs), Some("--dst-local"));
        assert_eq!(did_you_mean("-verbos", &longs), Some("--verbose"));
        assert_eq!(did_you_mean("--loq", &longs), Some("--log"));
        assert_eq!(did_you_mean("-q", &longs), None);
        assert_eq!(did_you_mean("--archive", &longs), None);
        // Never the option given itself (an option of another form of the binary).
        assert_eq!(did_you_mean("--dst-local", &longs), None);
        assert_eq!(did_you_mean("---verbose", &longs), Some("--verbose"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let e = parse_from::<Args>(os(&["--dst-locl", "/a", "w"])).unwrap_err();
        assert_eq!(
            e,
            Exit::Usage {
                message: "Unrecognized argument: --dst-locl".into(),
                hint: "did you mean `--dst-local`? run pitr-archive --help for usage".into(),
                status: exit::USAGE,
            }
        );
        assert_eq!(
            Args::long_options(),
            [
                "--dst-local",
                "--log",
                "--verbose",
                "--pid-file",
                "--config-file",
                "--temp-dir",
                "--s3-endpoint",
                "--s3-region",
                "--s3-addressing",
                "--s3-key-file",
                "--s3-conditional-writes",
                "--s3-retry-seconds",
                "--s3-ca-file",
                "--help"
            ]
        );
        assert_eq!(alias_problems::<Args>(), Vec::<String>::new());
        // An option with a one-letter short spelling (pitr-monitor's) is listed by its long
        // name; continuation lines of a description are not options.
        let help = "Usage: x\n\nOptions:\n  -c, --check       the check\n  --state-dir       a dir,\n                    --not-this\n  --help, help      help\n\nNotes:\n  --nor-this\n";
        assert_eq!(option_names(help), ["--check", "--state-dir", "--help"]);
    }

    #[test]
    fn config_file_lines_are_translated_too() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("archive.conf");
        std::fs::write(&conf, "-dl gzip=/a\n-nn\n-gp=/usr/bin/pigz\n-v\n-l -\n").unwrap();
        let conf = conf.display().to_string();
        let (a, ignored) = parse_from::<Args>(os(&["--cfg", &conf, "-dl", "/b", "w"])).unwrap();
        assert_eq!(a.dst_local, ["gzip=/a", "/b"]);
        assert!(a.verbose);
        assert_eq!(a.log.as_deref(), Some("-"));
        assert_eq!(ignored, ["-nn", "-gp"]);
        std::fs::write(dir.path().join("archive.conf"), "-dd u@h:/x\n").unwrap();
        assert!(matches!(
            parse_from::<Args>(os(&["--cfg", &conf, "w"])),
            Err(Exit::Usage { message, .. }) if message == "option -dd is not supported"
        ));
    }

    #[test]
    fn help_is_printed_not_an_error() {
        match parse_from::<Args>(os(&["--help"])).unwrap_err() {
            Exit::Print(text) => assert!(text.starts_with("Usage: pitr-archive"), "{text}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_option_followed_by_another_option_has_no_value() {
        let longs: Vec<String> = ["--log", "--dst-local", "--verbose"]
            .iter()
            .map(ToString::to_string)
            .collect();
        let takes = |o: &str| o != "--verbose";
        let args = |a: &[&str]| a.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(
            swallowed_option(&args(&["--log", "--dst-local", "/x", "w"]), &longs, takes),
            Some(("--log".into(), "--dst-local".into()))
        );
        assert_eq!(
            swallowed_option(&args(&["--verbose", "--log", "-", "w"]), &longs, takes),
            None
        );
        // A value that merely starts with dashes, or anything after `--`, is left alone.
        assert_eq!(
            swallowed_option(&args(&["--log", "--x.log", "w"]), &longs, takes),
            None
        );
        assert_eq!(
            swallowed_option(&args(&["--", "--log", "--verbose"]), &longs, takes),
            None
        );
        match parse_from::<Args>(os(&["--log", "--verbose", "w"])).unwrap_err() {
            Exit::Usage { message, .. } => assert_eq!(
                message,
                "--log has no value: the argument after it is the option --verbose"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn help_lists_the_omnipitr_spellings_of_the_table() {
        let help = full_help(
            "Usage: t\n\nOptions:\n  --x               x\n  --help, help      display usage information\n",
            &[
                ("-dl", Alias::Option("--dst-local")),
                ("-v", Alias::Switch("--verbose")),
                (
                    "-r",
                    Alias::SwitchOrWal {
                        switch: "--remove-unneeded",
                        value: "--oldest-needed",
                    },
                ),
                ("--remove-unneeded", Alias::Switch("--remove-unneeded")),
                ("--a-very-long-spelling", Alias::Option("--x")),
                ("-nn", Alias::DroppedSwitch),
                ("-gp", Alias::DroppedOption),
                ("-dd", Alias::Refused("use --dst-pipe")),
                (
                    "-D",
                    Alias::NotInForm {
                        form: "t --other",
                        hint: "use --x",
                    },
                ),
            ],
        );
        assert_eq!(
            help,
            "Usage: t\n\nOptions:\n  \
             --x               x\n  \
             --version, -V     print the program's name and version, and exit\n  \
             --help, help      display usage information\n\n\
             OmniPITR spellings:\n  \
             OmniPITR's options are accepted as written, also in --config-file files:\n  \
             -dl               --dst-local\n  \
             -v                --verbose\n  \
             -r                --remove-unneeded, and --oldest-needed when a WAL segment\n                    \
             name and %f follow\n  \
             --remove-unneeded --remove-unneeded\n  \
             --a-very-long-spelling\n                    \
             --x\n  \
             Not needed, ignored with a WARNING:\n    -nn, -gp\n  \
             Not supported, refused with a HINT saying what to use instead:\n    -dd, -D\n"
        );
        assert!(help.lines().all(|l| l.len() <= 80), "{help}");
        // Without a table: argh's help with --version only.
        assert_eq!(
            full_help("Usage: t\n\nOptions:\n  --help, help      help\n", &[]),
            "Usage: t\n\nOptions:\n  --version, -V     print the program's name and version, and exit\n  \
             --help, help      help\n"
        );
        // A long list wraps at 80 columns.
        const DROPPED: Aliases = &[
            ("-gp", Alias::DroppedOption),
            ("--gzip-path", Alias::DroppedOption),
            ("-bp", Alias::DroppedOption),
            ("--bzip2-path", Alias::DroppedOption),
            ("-lp", Alias::DroppedOption),
            ("--lzma-path", Alias::DroppedOption),
            ("-ll", Alias::DroppedOption),
            ("--lz4-path", Alias::DroppedOption),
            ("-xz", Alias::DroppedOption),
            ("--xz-path", Alias::DroppedOption),
        ];
        assert!(full_help("Usage: t\n", DROPPED).ends_with(
            "Not needed, ignored with a WARNING:\n    \
             -gp, --gzip-path, -bp, --bzip2-path, -lp, --lzma-path, -ll, --lz4-path, -xz,\n    \
             --xz-path\n"
        ));
    }

    #[test]
    fn help_of_the_tool_lists_version_and_the_spellings() {
        let help = match parse_from::<Args>(os(&["--help"])).unwrap_err() {
            Exit::Print(text) => text,
            other => panic!("{other:?}"),
        };
        assert!(
            help.contains(
                "\n  --version, -V     print the program's name and version, and exit\n  \
                 --help, help      display usage information\n\nOmniPITR spellings:\n"
            ),
            "{help}"
        );
        assert!(
            help.contains(
                "\n  --config-file     read options from FILE, one per line as on the command line\n                    \
                 (--temp-dir /var/tmp), # starts a comment\n"
            ),
            "{help}"
        );
    }

    #[test]
    fn failure_sets_status_and_hint() {
        let err: anyhow::Error = exit::Failure::new("segment differs")
            .hint("look")
            .status(exit::RESTORE_FATAL)
            .into();
        let err = err.context("restoring x");
        assert_eq!(status_of(&err, 2), 126);
        assert_eq!(error_lines(&err), ["restoring x: segment differs", "look"]);
        let plain = anyhow::anyhow!("plain\nerror");
        assert_eq!(status_of(&plain, 2), 2);
        assert_eq!(error_lines(&plain), ["plain error"]);
    }

    #[test]
    fn common_options_come_from_the_macro() {
        let (a, _): (Args, _) = parse_from(os(&[
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
        assert!(lines[1].starts_with("free space"), "{lines:?}");
        let rewrapped = anyhow::Error::from(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "writing to zstd=/srv/b: No space left on device",
        ));
        assert!(error_lines(&rewrapped)[1].starts_with("free space"));
        let other = anyhow::anyhow!("something else");
        assert_eq!(error_lines(&other).len(), 1);
    }
}

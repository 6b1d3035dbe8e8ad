//! Command line of `pitr-restore`, and its validation into a [`Config`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use argh::FromArgs;
use pitr_common::exit::{self, Failure};
use pitr_common::location::{Kind, Location};
use pitr_common::wal::WalFileName;

/// Restores one WAL file from the archive for PostgreSQL, waiting for it to appear:
/// restore_command = '/opt/pitr/bin/pitr-restore --source zstd=/srv/wal %f %p'.
///
/// The file is decompressed fully and, for a segment, its header is checked against the name
/// asked for, its size and this cluster's system identifier before it is renamed into %p:
/// PostgreSQL never gets a partial, corrupt or foreign file.
///
/// Exit status: 0 restored. 1 not available, which ends archive recovery: a missing .history
/// file, a missing file with --streaming-replication, a finish requested with --finish-trigger
/// or SIGUSR1, or the calling server gone. A damaged or foreign archived file is logged as an
/// ERROR and waited on (it may be repaired); with --streaming-replication it exits 1 (a standby
/// never promotes by itself). 126: an error that must not end recovery (source directory
/// missing or unreadable, pg_control unreadable, pg_control error with
/// --error-pgcontroldata break): PostgreSQL stops instead of promoting. 127: a usage error.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// archive directory to read from, [CODEC=]DIR (the codec says which stored form to look
    /// for first; every form is found); repeatable, searched in order
    #[argh(option)]
    pub source: Vec<String>,

    /// data directory of the cluster; %p is relative to it (default: the current directory,
    /// which is the data directory when PostgreSQL runs restore_command)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,

    /// seconds between looks at the archive while waiting (default 1; decimals allowed)
    #[argh(option)]
    pub poll_interval: Option<f64>,

    /// when this file exists, end recovery: replay what is in the archive, then exit 1 at the
    /// first missing segment; if it contains NOW, exit 1 at once
    #[argh(option)]
    pub finish_trigger: Option<PathBuf>,

    /// hand a segment over only once its archived file is this many seconds old (the archive
    /// keeps the WAL file's mtime); ignored while finishing
    #[argh(option)]
    pub recovery_delay: Option<u64>,

    /// standby mode (standby.signal): a missing file exits 1 at once, PostgreSQL retries or
    /// streams from primary_conninfo
    #[argh(switch)]
    pub streaming_replication: bool,

    /// while waiting, remove archived segments older than the oldest one still needed
    #[argh(switch)]
    pub remove_unneeded: bool,

    /// with --remove-unneeded: the oldest WAL file still needed (PostgreSQL's %r); default:
    /// pg_control's REDO WAL file
    #[argh(option)]
    pub oldest_needed: Option<WalFileName>,

    /// with --remove-unneeded: at most this many files removed per pass (default 3)
    #[argh(option)]
    pub remove_at_a_time: Option<usize>,

    /// with --remove-unneeded: also run one removal pass before restoring
    #[argh(switch)]
    pub remove_before: bool,

    /// while this file exists, remove nothing (pitr-backup creates it on a standby)
    #[argh(option)]
    pub removal_pause_trigger: Option<PathBuf>,

    /// what a pg_control read error during removal does: break (exit 126, recovery stops),
    /// ignore (log it, pause removal for 5 minutes) or hang (log it, wait until the server
    /// stops); default break
    #[argh(option)]
    pub error_pgcontroldata: Option<String>,

    /// pg_controldata program, used only for a pg_control layout pitr cannot read natively
    #[argh(option)]
    pub pgcontroldata_path: Option<PathBuf>,

    /// decompress and verify this many following segments in the background, into
    /// pg_wal/.pitr-prefetch, so that handing them over is a rename (default 8; 0 disables)
    #[argh(option)]
    pub prefetch: Option<u32>,

    /// internal: run as the background prefetch worker
    #[argh(switch)]
    pub prefetch_worker: bool,

    /// directory for scratch files (accepted for OmniPITR compatibility; unused)
    #[argh(option)]
    #[allow(dead_code)]
    pub temp_dir: Option<PathBuf>,

    /// log file template, ^ standing for % of strftime, or - for stdout (default: stderr,
    /// which PostgreSQL puts into its own log)
    #[argh(option)]
    pub log: Option<String>,

    /// log timings and the arguments pitr-restore was called with
    #[argh(switch)]
    pub verbose: bool,

    /// refuse to run while the process whose pid is in this file is alive
    #[argh(option)]
    pub pid_file: Option<PathBuf>,

    /// read options from FILE, one per line, # starts a comment
    #[argh(option)]
    // Expanded in place by `cli::parse_args`; declared so that --help lists it.
    #[allow(dead_code)]
    pub config_file: Vec<PathBuf>,

    /// the WAL file wanted and where to put it: PostgreSQL's %f and %p
    #[argh(positional)]
    pub files: Vec<String>,
}

/// What to do when pg_control cannot be read for removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnControlError {
    /// Exit 126.
    Break,
    /// Log, pause removal for 5 minutes.
    Ignore,
    /// Log, wait until the server is gone.
    Hang,
}

/// Validated settings.
#[derive(Debug)]
pub struct Config {
    /// %f.
    pub wanted: WalFileName,
    /// %p joined to the data directory (`None` for the prefetch worker).
    pub target: Option<PathBuf>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Sources in order.
    pub sources: Vec<Location>,
    /// Poll interval.
    pub poll: Duration,
    /// Finish trigger.
    pub finish_trigger: Option<PathBuf>,
    /// Recovery delay.
    pub recovery_delay: Option<Duration>,
    /// Standby mode.
    pub streaming: bool,
    /// Removal enabled.
    pub remove_unneeded: bool,
    /// Oldest needed, if given.
    pub oldest_needed: Option<WalFileName>,
    /// Removal batch.
    pub remove_at_a_time: usize,
    /// Removal pass first.
    pub remove_before: bool,
    /// Removal pause trigger.
    pub removal_pause_trigger: Option<PathBuf>,
    /// pg_control error policy.
    pub on_control_error: OnControlError,
    /// pg_controldata program.
    pub pgcontroldata: Option<PathBuf>,
    /// Prefetch depth.
    pub prefetch: u32,
    /// Worker mode.
    pub prefetch_worker: bool,
    /// Pid file.
    pub pid_file: Option<PathBuf>,
    /// Arguments to hand to the prefetch worker (log settings).
    pub log: Option<String>,
    /// Verbose.
    pub verbose: bool,
}

/// A usage error: status 127, so that PostgreSQL stops instead of promoting.
pub fn usage(msg: impl Into<String>, hint: &str) -> anyhow::Error {
    Failure::new(msg)
        .hint(hint)
        .status(exit::RESTORE_USAGE)
        .into()
}

const EXAMPLE: &str = "restore_command = 'pitr-restore --source zstd=/srv/wal %f %p'";

impl Args {
    /// Validates the arguments.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("."));
        if self.source.is_empty() {
            return Err(usage(
                "no --source given",
                &format!("for example {EXAMPLE}"),
            ));
        }
        let mut sources = Vec::new();
        for s in &self.source {
            let loc = Location::parse(Kind::Local, s).map_err(|e| {
                usage(
                    format!("--source {e}"),
                    "write [CODEC=]DIR with CODEC none, gzip or zstd",
                )
            })?;
            sources.push(loc);
        }
        let (wanted, target) = match (self.files.as_slice(), self.prefetch_worker) {
            ([f, p], false) => (f.clone(), Some(data_dir.join(p))),
            ([f], true) => (f.clone(), None),
            ([], _) | ([_], false) => {
                return Err(usage(
                    "the WAL file name and the destination path were not both given",
                    &format!("pass %f %p: {EXAMPLE}"),
                ))
            }
            _ => {
                return Err(usage(
                    format!("too many arguments: {}", self.files.join(" ")),
                    &format!("pass only %f %p: {EXAMPLE}"),
                ))
            }
        };
        let wanted = WalFileName::parse(&wanted).map_err(|e| {
            usage(
                e.to_string(),
                "the first argument is PostgreSQL's %f, a WAL file name",
            )
        })?;
        let poll = match self.poll_interval {
            None => Duration::from_secs(1),
            Some(s) if s > 0.0 && s <= 3600.0 => Duration::from_secs_f64(s),
            Some(s) => {
                return Err(usage(
                    format!("--poll-interval {s} is out of range"),
                    "give seconds between 0.01 and 3600",
                ))
            }
        };
        let on_control_error = match self.error_pgcontroldata.as_deref() {
            None | Some("break") => OnControlError::Break,
            Some("ignore") => OnControlError::Ignore,
            Some("hang") => OnControlError::Hang,
            Some(other) => {
                return Err(usage(
                    format!("invalid --error-pgcontroldata \"{other}\""),
                    "give break, ignore or hang",
                ))
            }
        };
        if self.oldest_needed.is_some() && !self.remove_unneeded {
            return Err(usage(
                "--oldest-needed without --remove-unneeded",
                "add --remove-unneeded to remove archived segments older than %r",
            ));
        }
        let remove_at_a_time = match self.remove_at_a_time {
            Some(0) => {
                return Err(usage(
                    "--remove-at-a-time must be at least 1",
                    "give how many files to remove per pass",
                ))
            }
            Some(n) => n,
            None => 3,
        };
        Ok(Config {
            wanted,
            target,
            data_dir,
            sources,
            poll,
            finish_trigger: self.finish_trigger,
            recovery_delay: self.recovery_delay.map(Duration::from_secs),
            streaming: self.streaming_replication,
            remove_unneeded: self.remove_unneeded,
            oldest_needed: self.oldest_needed,
            remove_at_a_time,
            remove_before: self.remove_before,
            removal_pause_trigger: self.removal_pause_trigger,
            on_control_error,
            pgcontroldata: self.pgcontroldata_path,
            prefetch: self.prefetch.unwrap_or(8),
            prefetch_worker: self.prefetch_worker,
            pid_file: self.pid_file,
            log: self.log,
            verbose: self.verbose,
        })
    }
}

/// Checks that each source is a readable directory. A missing or unreadable source must not be
/// read as "end of archive": status 126.
pub fn check_sources(sources: &[Location]) -> anyhow::Result<()> {
    for s in sources {
        let dir = Path::new(&s.target);
        let problem = match std::fs::read_dir(dir) {
            Ok(_) => continue,
            Err(e) => e,
        };
        return Err(Failure::new(format!("cannot read source {}: {problem}", dir.display()))
            .hint("mount or create the archive directory and make it readable by the user PostgreSQL runs as; recovery stops rather than ending early")
            .status(exit::RESTORE_FATAL)
            .into());
    }
    Ok(())
}

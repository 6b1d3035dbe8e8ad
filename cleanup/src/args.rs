//! Command line of `pitr-cleanup`, and its validation into a [`Config`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use pitr_common::cli::Tool;
use pitr_common::exit::{self, Failure};
use pitr_common::location::{Location, Opt};
use pitr_common::wal::{WalFileName, WalKind};

pitr_common::tool_args! {
/// Removes WAL and backups that are no longer needed.
///
/// Form 1, PostgreSQL's archive_cleanup_command on a standby:
/// archive_cleanup_command = '/opt/pitr/bin/pitr-cleanup --archive zstd=/srv/wal %r'
/// removes archived segments, .partial and .backup files older than %r (timeline ignored, as
/// pg_archivecleanup does); .history files are kept; nothing is removed while
/// --removal-pause-trigger exists.
///
/// Form 2, retention from cron: pitr-cleanup --backup-dir DIR --archive DIR --keep-days N
/// [--keep-count N] [--dry-run] removes backup sets older than the retention (meta file first),
/// then WAL older than the oldest kept backup's start; never the newest valid backup, nothing at
/// all when no backup is valid.
///
/// Exit status: 0 done (also when paused); 2 error; 3 usage error; 4 another pitr-cleanup holds
/// the archive's lock or --pid-file.
#[derive(FromArgs, Debug)]
pub struct Args {
    /// the WAL archive directory, [CODEC=]DIR (every stored form of a file is removed)
    #[argh(option)]
    pub archive: Option<String>,

    /// form 2: the directory holding the backup sets made by pitr-backup
    #[argh(option)]
    pub backup_dir: Option<PathBuf>,

    /// form 2: keep backups started within this many days
    #[argh(option)]
    pub keep_days: Option<u32>,

    /// form 2: keep at least this many of the newest valid backups
    #[argh(option)]
    pub keep_count: Option<u32>,

    /// list what would be removed, with sizes, and remove nothing
    #[argh(switch)]
    pub dry_run: bool,

    /// while this file exists, remove nothing (pitr-backup creates it during a standby backup)
    #[argh(option)]
    pub removal_pause_trigger: Option<PathBuf>,

    /// form 1: the oldest WAL file still needed (PostgreSQL's %r)
    #[argh(positional)]
    pub oldest_needed: Vec<String>,
}
}

impl Tool for Args {
    const NAME: &'static str = "pitr-cleanup";

    fn run(self) -> anyhow::Result<ExitCode> {
        crate::prune::run(&self.into_config()?)
    }
}

/// How long a temporary file of a dead writer stays before a cleanup removes it.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// What to do.
#[derive(Debug)]
pub enum Mode {
    /// Form 1: remove WAL older than this.
    Archive {
        /// The oldest file still needed.
        oldest: WalFileName,
    },
    /// Form 2: retention.
    Retention {
        /// Backup directory.
        backup_dir: PathBuf,
        /// Keep days.
        keep_days: Option<u32>,
        /// Keep count.
        keep_count: Option<u32>,
    },
}

/// Validated settings.
#[derive(Debug)]
pub struct Config {
    /// What to do.
    pub mode: Mode,
    /// The archive.
    pub archive: Location,
    /// Dry run.
    pub dry_run: bool,
    /// Pause trigger.
    pub removal_pause_trigger: Option<PathBuf>,
    /// How old a dead writer's temporary file must be to be removed: [`STALE_TEMP_AGE`], or
    /// less with the test hook `PITR_TEST_STALE_TEMP_SECS` (so that a test can sweep the temp
    /// file of a pitr-archive it has just killed).
    pub stale_temp_age: Duration,
}

fn usage(msg: impl Into<String>, hint: &str) -> anyhow::Error {
    Failure::new(msg).hint(hint).status(exit::USAGE).into()
}

const FORM1: &str = "archive_cleanup_command = 'pitr-cleanup --archive zstd=/srv/wal %r'";
const FORM2: &str = "pitr-cleanup --backup-dir /srv/backups --archive /srv/wal --keep-days 7";

impl Args {
    /// Validates the arguments.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let archive = match &self.archive {
            None => {
                return Err(usage(
                    "no --archive given",
                    &format!("for example {FORM1}, or {FORM2}"),
                ))
            }
            Some(a) => Location::parse(Opt::Archive, a)
                .map_err(|e| usage(e.to_string(), e.opt().syntax()))?,
        };
        let mode = match (&self.backup_dir, self.oldest_needed.as_slice()) {
            (None, []) => {
                return Err(usage(
                    "neither %r nor --backup-dir given",
                    &format!("as archive_cleanup_command: {FORM1}; from cron: {FORM2}"),
                ))
            }
            (None, [r]) => {
                let oldest = WalFileName::parse(r).map_err(|e| {
                    usage(
                        e.to_string(),
                        "the argument is PostgreSQL's %r, a WAL segment name",
                    )
                })?;
                if oldest.kind == WalKind::History {
                    return Err(usage(
                        format!("\"{r}\" is a history file, not a WAL segment"),
                        "the argument is PostgreSQL's %r, a WAL segment name",
                    ));
                }
                if self.keep_days.is_some() || self.keep_count.is_some() {
                    return Err(usage(
                        "--keep-days and --keep-count need --backup-dir",
                        &format!("for retention from cron: {FORM2}"),
                    ));
                }
                Mode::Archive { oldest }
            }
            (None, _) => {
                return Err(usage(
                    format!("too many arguments: {}", self.oldest_needed.join(" ")),
                    &format!("pass only %r: {FORM1}"),
                ))
            }
            (Some(_), [_, ..]) => {
                return Err(usage(
                    "%r and --backup-dir given together",
                    &format!("as archive_cleanup_command: {FORM1}; from cron: {FORM2}"),
                ))
            }
            (Some(dir), []) => {
                if self.keep_days.is_none() && self.keep_count.is_none() {
                    return Err(usage(
                        "--backup-dir needs --keep-days or --keep-count",
                        &format!("for example {FORM2}"),
                    ));
                }
                if self.keep_days == Some(0) || self.keep_count == Some(0) {
                    return Err(usage(
                        "--keep-days and --keep-count must be at least 1",
                        "the newest valid backup is always kept; give the retention wanted",
                    ));
                }
                Mode::Retention {
                    backup_dir: dir.clone(),
                    keep_days: self.keep_days,
                    keep_count: self.keep_count,
                }
            }
        };
        Ok(Config {
            mode,
            archive,
            dry_run: self.dry_run,
            removal_pause_trigger: self.removal_pause_trigger,
            stale_temp_age: std::env::var("PITR_TEST_STALE_TEMP_SECS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map_or(STALE_TEMP_AGE, Duration::from_secs),
        })
    }
}

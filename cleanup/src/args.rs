//! Command line of `pitr-cleanup`, and its validation into a [`Config`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use pitr_common::cli::HasCommon;
use pitr_common::cli::{Alias, Aliases, Tool};
use pitr_common::exit::{self, Failure};
use pitr_common::location::{Location, Opt, Target};
use pitr_common::wal::{WalFileName, WalKind};

pitr_common::tool_args! {
/// The command line of `pitr-cleanup`. The `description`, `usage`, examples, notes and exit
/// statuses below are its `--help` and, through `cargo xtask dist`, its man page.
#[derive(FromArgs, Debug)]
#[argh(
    description = "Removes WAL and backups that are no longer needed, in one of two forms.\n\
            \n\
            As PostgreSQL's archive_cleanup_command on a standby (the first form) it removes\n\
            archived segments, .partial and .backup files older than %r, by position with\n\
            the timeline ignored as pg_archivecleanup does; .history files are kept.\n\
            \n\
            From cron with --backup-dir (the second form) it removes backup sets older than\n\
            the retention, each set's meta file first, then WAL older than the earliest WAL\n\
            position any kept set starts from. It never removes the newest valid set, and removes nothing at all\n\
            when no set is valid.\n\
            \n\
            Nothing is removed while --removal-pause-trigger exists.",
    usage = "--archive <[CODEC=]DIR|s3://BUCKET/PREFIX> [--removal-pause-trigger <FILE>]\n\
            \x20          [--dry-run] [--temp-dir <DIR>] [--log <FILE>] [--verbose]\n\
            \x20          [--s3-endpoint <URL>] [--s3-region <NAME>] [--s3-addressing <STYLE>]\n\
            \x20          [--s3-key-file <FILE>] [--s3-conditional-writes] [--s3-retry-seconds <N>]\n\
            \x20          [--s3-ca-file <FILE>]\n\
            \x20          [--pid-file <FILE>] [--config-file <FILE>]... %r\n\
            \x20      {command_name} --backup-dir <DIR> --archive <[CODEC=]DIR> [--keep-days <N>]\n\
            \x20          [--keep-count <N>] [--removal-pause-trigger <FILE>] [--dry-run]\n\
            \x20          [--temp-dir <DIR>] [--log <FILE>] [--verbose] [--pid-file <FILE>]\n\
            \x20          [--s3-endpoint <URL>] [--s3-region <NAME>] [--s3-addressing <STYLE>]\n\
            \x20          [--s3-key-file <FILE>] [--s3-conditional-writes] [--s3-retry-seconds <N>]\n\
            \x20          [--s3-ca-file <FILE>]\n\
            \x20          [--config-file <FILE>]...\n\
            \x20      {command_name} --help | --version",
    example = "On a standby, in postgresql.conf:\n\
            \x20 archive_cleanup_command = '/opt/pitr/bin/pitr-cleanup --archive zstd=/var/lib/pgsql/wal_archive %r'",
    example = "What a week of retention, keeping at least three sets, would remove:\n\
            \x20 pitr-cleanup --backup-dir /var/lib/pgsql/backups --archive zstd=/var/lib/pgsql/wal_archive --keep-days 7 --keep-count 3 --dry-run",
    example = "From cron, with the options in a file:\n\
            \x20 30 5 * * * postgres /opt/pitr/bin/pitr-cleanup --config-file /etc/pitr/cleanup.conf",
    note = "--config-file FILE (also spelled --config or --cfg) reads options from FILE,\n\
            one per line (\"--archive /var/lib/pgsql/wal_archive\"), # starting a comment,\n\
            as if they were given where --config-file stands. Give --keep-days,\n\
            --keep-count or both: there is no default retention.",
    note = "\n\
            Files:\n\
            /etc/pitr/cleanup.conf\n\
            \x20   options for --config-file (installed by the RPM, kept on upgrades)\n\
            /etc/cron.d/pitr\n\
            \x20   the nightly retention job, commented out (installed by the RPM)\n\
            ARCHIVE/.pitr-cleanup.lock\n\
            \x20   held while a pitr-cleanup works on the archive",
    error_code(0, "done, also when paused by --removal-pause-trigger"),
    error_code(2, "an error, also when no backup set is valid"),
    error_code(3, "a usage error"),
    error_code(4, "another pitr-cleanup holds the archive's lock or --pid-file")
)]
pub struct Args {
    /// the WAL archive, [CODEC=]DIR or [CODEC=]s3://BUCKET/PREFIX (every stored form of a
    /// file is removed)
    #[argh(option)]
    pub archive: Option<String>,

    /// form 2: the directory (or s3://BUCKET/PREFIX) holding the backup sets made by
    /// pitr-backup
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

    /// The spellings of omnipitr-cleanup and omnipitr-backup-cleanup (README, "Migrating from
    /// OmniPITR").
    const ALIASES: Aliases = &[
        ("-a", Alias::Option("--archive")),
        ("-b", Alias::Option("--backup-dir")),
        ("-k", Alias::Option("--keep-days")),
        ("-d", Alias::Switch("--dry-run")),
        ("-p", Alias::Option("--removal-pause-trigger")),
        ("-l", Alias::Option("--log")),
        ("-v", Alias::Switch("--verbose")),
        ("-?", Alias::Switch("--help")),
        // Not needed: sets are found by their meta files; files are unlinked, not truncated
        // step by step.
        ("-f", Alias::DroppedOption),
        ("--filename-template", Alias::DroppedOption),
        ("-t", Alias::DroppedOption),
        ("--truncate", Alias::DroppedOption),
        ("-s", Alias::DroppedOption),
        ("--sleep", Alias::DroppedOption),
    ];

    fn run(self) -> anyhow::Result<ExitCode> {
        crate::prune::run(&self.into_config()?)
    }
}

/// What to do.
#[derive(Debug)]
pub enum Mode {
    /// Form 1: remove WAL older than this.
    Archive {
        /// The oldest file still needed.
        oldest: WalFileName,
    },
    /// Form 2 with the backup sets in an object store.
    StoreRetention {
        /// Where pitr-backup --dst-remote wrote the sets.
        url: pitr_common::objstore::S3Url,
        /// Keep days.
        keep_days: Option<u32>,
        /// Keep count.
        keep_count: Option<u32>,
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
    /// The object-store settings, when the archive is on one.
    pub s3: Option<pitr_common::objstore::Settings>,
    /// Dry run.
    pub dry_run: bool,
    /// Pause trigger.
    pub removal_pause_trigger: Option<PathBuf>,
    /// How old a dead writer's temporary file must be to be removed: `tempname::stale_age`.
    pub stale_temp_age: Duration,
    /// Test hook (`PITR_TEST_REMOVE_DELAY_MS`): a pause after each backup file removed, so that
    /// a test can kill a retention run half-way through a set.
    pub remove_delay: Option<Duration>,
}

fn usage(msg: impl Into<String>, hint: &str) -> anyhow::Error {
    Failure::new(msg).hint(hint).status(exit::USAGE).into()
}

const FORM1: &str = "archive_cleanup_command = 'pitr-cleanup --archive zstd=/srv/wal %r'";
const FORM2: &str = "pitr-cleanup --backup-dir /srv/backups --archive /srv/wal --keep-days 7";

impl Args {
    /// Form 2's settings, checked.
    fn retention(&self, dir: &std::path::Path) -> anyhow::Result<Mode> {
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
        // `[CODEC=]DIR` as OmniPITR takes it: its codec named the sets' file extension, and
        // pitr finds sets by their meta files whatever their names, so the codec is not used.
        // A path that is not UTF-8 can carry neither a prefix nor s3://, and is taken as it is.
        let target = match dir.to_str() {
            Some(text) => {
                Location::parse(Opt::BackupDir, text)
                    .map_err(|e| usage(e.to_string(), e.opt().syntax()))?
                    .target
            }
            None => Target::Dir(dir.to_path_buf()),
        };
        match target {
            Target::S3(url) => Ok(Mode::StoreRetention {
                url,
                keep_days: self.keep_days,
                keep_count: self.keep_count,
            }),
            Target::Dir(backup_dir) => Ok(Mode::Retention {
                backup_dir,
                keep_days: self.keep_days,
                keep_count: self.keep_count,
            }),
            Target::Rsync(_) | Target::Program(_) => Err(usage(
                format!("--backup-dir {} is not a directory", dir.display()),
                Opt::BackupDir.syntax(),
            )),
        }
    }

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
            (Some(dir), []) => self.retention(dir)?,
        };
        let on_store =
            matches!(archive.target, Target::S3(_)) || matches!(mode, Mode::StoreRetention { .. });
        let s3 = match on_store {
            true => Some(
                self.common()
                    .s3
                    .settings(|name| std::env::var(name).ok())
                    .map_err(|e| usage(e.to_string(), pitr_common::objstore::SETTINGS_HINT))?,
            ),
            false => None,
        };
        Ok(Config {
            mode,
            archive,
            s3,
            dry_run: self.dry_run,
            removal_pause_trigger: self.removal_pause_trigger,
            stale_temp_age: pitr_common::tempname::stale_age(),
            remove_delay: std::env::var("PITR_TEST_REMOVE_DELAY_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_names_an_option_of_ours() {
        assert_eq!(
            pitr_common::cli::alias_problems::<Args>(),
            Vec::<String>::new()
        );
    }

    /// OmniPITR's `--backup-dir [comp=]dir` runs as written: the codec named its sets' file
    /// extension, and pitr finds sets by their meta files.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn backup_dir_takes_omnipitrs_codec_prefix() {
        let mode = |dir: &str| {
            let a = Args::from_args(&["pitr-cleanup"], &["--archive", "/w", "--keep-days", "7"])
                .unwrap();
            a.retention(std::path::Path::new(dir))
        };
        for (given, dir) in [
            ("gzip=/srv/backups", "/srv/backups"),
            ("zstd:3=/srv/backups/", "/srv/backups"),
            ("/srv/backups", "/srv/backups"),
            ("/srv/a=b", "/srv/a=b"),
        ] {
            match mode(given).unwrap() {
                Mode::Retention { backup_dir, .. } => {
                    assert_eq!(backup_dir, PathBuf::from(dir), "{given}")
                }
                other => panic!("{given}: {other:?}"),
            }
        }
        match mode("gzip=s3://backups/db1").unwrap() {
            Mode::StoreRetention { url, .. } => assert_eq!(url.to_string(), "s3://backups/db1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            format!("{:#}", mode("lz4=/srv/backups").unwrap_err()),
            "--backup-dir lz4=/srv/backups: codec \"lz4\" is not supported"
        );
    }

    #[test]
    fn help_lists_version_within_80_columns() {
        assert_eq!(
            pitr_common::cli::help_problems::<Args>(&["--help"]),
            Vec::<String>::new()
        );
    }
}

//! Command line of `pitr-archive`, and its validation into a [`Config`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use pitr_common::cli::{Alias, Aliases, HasCommon, Tool};
use pitr_common::compress::Codec;
use pitr_common::exit::{self, Failure};
use pitr_common::location::{self, Location, Opt, Target};
use pitr_common::rsync::Rsync;
use pitr_common::wal::WalFileName;

pitr_common::tool_args! {
/// The command line of `pitr-archive`. The `description`, `usage`, examples, notes and exit
/// statuses below are its `--help` and, through `cargo xtask dist`, its man page.
#[derive(FromArgs, Debug)]
#[argh(
    description = "Sends one WAL file to every archive destination, durably. PostgreSQL runs it as\n\
            its archive_command, in the data directory, as the server's user, once per WAL\n\
            file (segment, .partial, .history or .backup).\n\
            \n\
            Each destination gets the file in its own codec, written under a temporary name,\n\
            fsynced and linked into place. A file already archived with the same content\n\
            counts as sent; a different one is never replaced, and WAL of another cluster is\n\
            refused.\n\
            \n\
            With more than one destination, --state-dir records which ones hold the file, so\n\
            that PostgreSQL's retry after a failure sends only to those still missing it.\n\
            \n\
            With a remote destination (rsync or an object store) and --state-dir, a call that\n\
            finds segments marked ready after its own hands them, its own first, to a\n\
            background worker, which delivers them in batches (--archive-ahead, 128MB of\n\
            WAL by default; one rsync run or one round of requests each) and records each;\n\
            PostgreSQL's call for one of them checks the record against the file and\n\
            returns at once.",
    usage = "[--dst-local <[CODEC=]DIR>]...\n\
            \x20          [--dst-remote <[CODEC=]TARGET>]... [--dst-pipe <[CODEC=]PROGRAM>]...\n\
            \x20          [--dst-backup <DIR>] [--state-dir <DIR>] [--archive-ahead <N|SIZE>]\n\
            \x20          [--data-dir <DIR>] [--parallel-jobs <N>] [--rsync-path <PROGRAM>]\n\
            \x20          [--temp-dir <DIR>]\n\
            \x20          [--s3-endpoint <URL>] [--s3-region <NAME>] [--s3-addressing <STYLE>]\n\
            \x20          [--s3-key-file <FILE>] [--s3-conditional-writes] [--s3-retry-seconds <N>]\n\
            \x20          [--s3-ca-file <FILE>]\n\
            \x20          [--log <FILE>] [--verbose] [--pid-file <FILE>]\n\
            \x20          [--config-file <FILE>]... %p\n\
            \x20      {command_name} --help | --version",
    example = "One local archive compressed with zstd, in postgresql.conf:\n\
            \x20 archive_command = '/opt/pitr/bin/pitr-archive --dst-local zstd=/srv/wal_archive %p'",
    example = "The rsync daemons of two standbys (rsyncd.conf in\n\
            /opt/pitr/share/pitr/examples):\n\
            \x20 archive_command = '/opt/pitr/bin/pitr-archive --state-dir /var/lib/pgsql/pitr/archive-state --dst-remote zstd=rsync://standby1/wal_archive --dst-remote zstd=rsync://standby2/wal_archive %p'",
    example = "The options in a file:\n\
            \x20 archive_command = '/opt/pitr/bin/pitr-archive --config-file /etc/pitr/archive.conf %p'",
    note = "--config-file FILE (also spelled --config or --cfg) reads options from FILE,\n\
            one per line (\"--dst-local /srv/wal_archive\"), # starting a comment, as if\n\
            they were given where --config-file stands.\n\
            \n\
            Logs go to stderr, which PostgreSQL writes into its own log, unless --log says\n\
            otherwise.",
    note = "\n\
            Files:\n\
            /etc/pitr/archive.conf\n\
            \x20   options for --config-file (installed by the RPM, kept on upgrades)\n\
            /opt/pitr/share/pitr/examples\n\
            \x20   postgresql-primary.conf, archive.conf, rsyncd.conf\n\
            DIR/.pitr-cluster\n\
            \x20   in each local destination: the cluster whose WAL it holds",
    error_code(0, "every destination durably holds the file"),
    error_code(
        2,
        "an error: PostgreSQL retries later (with --state-dir only where the file is\n\
            \x20   missing)"
    ),
    error_code(3, "a usage error"),
    error_code(4, "another pitr-archive holds --pid-file")
)]
pub struct Args {
    /// data directory of the cluster; %p is relative to it (default: the current directory,
    /// which is the data directory when PostgreSQL runs archive_command)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,

    /// local destination directory, [CODEC=]DIR with CODEC none (default), gzip or zstd and an
    /// optional level (zstd:19=/srv/wal); repeatable
    #[argh(option)]
    pub dst_local: Vec<String>,

    /// remote destination, [CODEC=]TARGET with TARGET s3://BUCKET/PREFIX (an object store, see
    /// --s3-endpoint), or rsync://host[:port]/module/path, host::module/path or
    /// [user@]host:/path, sent with rsync; repeatable
    #[argh(option)]
    pub dst_remote: Vec<String>,

    /// program that receives the file on stdin and its name (with the codec's extension) as
    /// its only argument, [CODEC=]PROGRAM; a non-zero exit is a failure; repeatable
    #[argh(option)]
    pub dst_pipe: Vec<String>,

    /// uncompressed local directory used only while it exists (pitr-backup creates it to
    /// collect the WAL of a running backup); must be an absolute path
    #[argh(option)]
    pub dst_backup: Option<PathBuf>,

    /// directory recording which destinations already hold a file, so that a retry sends only
    /// to the missing ones; required with more than one destination
    #[argh(option)]
    pub state_dir: Option<PathBuf>,

    /// how much ready WAL to deliver in one batch and record in --state-dir, %p's own call or
    /// the background worker it starts: N segments, or a size of WAL such as 64MB or 1GB
    /// (default: 128MB, eight 16 MB segments, with a remote destination, else 0; 0 sends one
    /// file per call; more than 0 needs --state-dir)
    #[argh(option)]
    pub archive_ahead: Option<crate::ahead::AheadLimit>,

    /// how many destinations to deliver to at once (default: all of them)
    #[argh(option)]
    pub parallel_jobs: Option<usize>,

    /// the rsync program used for --dst-remote (default: rsync from PATH)
    #[argh(option)]
    pub rsync_path: Option<PathBuf>,

    /// internal: run as the background archive-ahead worker
    #[argh(switch, hidden_help)]
    pub ahead_worker: bool,

    /// the WAL file to archive: PostgreSQL's %p
    #[argh(positional)]
    pub wal_file: Vec<String>,
}
}

impl Tool for Args {
    const NAME: &'static str = "pitr-archive";

    /// omnipitr-archive's spellings (README, "Migrating from OmniPITR").
    const ALIASES: Aliases = pitr_common::aliases_with_compressor_paths![
        ("-D", Alias::Option("--data-dir")),
        ("-dl", Alias::Option("--dst-local")),
        ("-dr", Alias::Option("--dst-remote")),
        ("-dp", Alias::Option("--dst-pipe")),
        ("-db", Alias::Option("--dst-backup")),
        ("-s", Alias::Option("--state-dir")),
        ("-t", Alias::Option("--temp-dir")),
        ("-l", Alias::Option("--log")),
        ("-PJ", Alias::Option("--parallel-jobs")),
        ("-v", Alias::Switch("--verbose")),
        ("-rp", Alias::Option("--rsync-path")),
        ("-?", Alias::Switch("--help")),
        // Not needed: no data directory check to force, no compressor program to run.
        ("-f", Alias::DroppedSwitch),
        ("--force-data-dir", Alias::DroppedSwitch),
        ("-nn", Alias::DroppedSwitch),
        ("--not-nice", Alias::DroppedSwitch),
        ("-np", Alias::DroppedOption),
        ("--nice-path", Alias::DroppedOption),
        // The compressor-path options follow (pitr_common::aliases_with_compressor_paths).
    ];

    fn is_background_worker(&self) -> bool {
        self.ahead_worker
    }

    fn reuses_buffers(&self) -> bool {
        self.ahead_worker
    }

    fn run(self) -> anyhow::Result<ExitCode> {
        let worker = self.ahead_worker;
        let cfg = self.into_config()?;
        if worker {
            crate::worker::run(&cfg)
        } else {
            crate::push::run(&cfg)
        }
    }
}

/// A destination of this run.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Where and how.
    pub location: Location,
    /// True for --dst-backup.
    pub backup: bool,
}

/// Validated settings of one run.
#[derive(Debug)]
pub struct Config {
    /// The WAL file as given (%p), for messages.
    pub wal_arg: String,
    /// Its path.
    pub wal_path: PathBuf,
    /// Its parsed name.
    pub wal_name: WalFileName,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Destinations, without duplicates.
    pub destinations: Vec<Destination>,
    /// State dir, if any.
    pub state_dir: Option<PathBuf>,
    /// How much ready WAL to deliver ahead (off without a state dir, where asking for more than
    /// 0 is a usage error).
    pub archive_ahead: crate::ahead::AheadLimit,
    /// Concurrent deliveries.
    pub parallel_jobs: usize,
    /// rsync program.
    pub rsync: Rsync,
    /// Scratch parent directory.
    pub temp_dir: PathBuf,
    /// How to reach object stores, when a destination is one.
    pub s3: Option<pitr_common::objstore::Settings>,
    /// Object-store clients kept for every batch of this process (the archive-ahead worker's
    /// batches reuse one another's connections).
    pub stores: pitr_common::objarchive::Stores,
    /// Test hook (`PITR_TEST_WRITE_DELAY_MS`): slows local writes down so that a test can kill
    /// the process in the middle of one.
    pub write_delay: Option<Duration>,
}

fn usage(msg: impl Into<String>, hint: &str) -> anyhow::Error {
    Failure::new(msg).hint(hint).status(exit::USAGE).into()
}

fn bad_location(e: &location::Error) -> anyhow::Error {
    usage(e.to_string(), e.opt().syntax())
}

const EXAMPLE: &str = "archive_command = 'pitr-archive --dst-local zstd=/srv/wal %p'";

impl Args {
    /// Validates the arguments against the file system.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut destinations: Vec<Destination> =
            location::parse_destinations(&self.dst_local, &self.dst_remote, &self.dst_pipe)
                .map_err(|e| bad_location(&e))?
                .into_iter()
                .map(|location| Destination {
                    location,
                    backup: false,
                })
                .collect();
        let configured = destinations.len();
        if let Some(location) = self.backup_destination()? {
            destinations.push(Destination {
                location,
                backup: true,
            });
        }
        let (wal_arg, wal_name) = self.wal_file()?;
        // Without --data-dir: the working directory (PostgreSQL runs archive_command there),
        // or the data directory an absolute %p lies in.
        let data_dir = self.data_dir.clone().unwrap_or_else(|| {
            pitr_common::pg::data_dir_of_wal_path(Path::new(&wal_arg))
                .unwrap_or_else(|| PathBuf::from("."))
        });
        pitr_common::pg::check_owner(&data_dir, "pitr-archive", exit::USAGE)?;
        let wal_path = data_dir.join(&wal_arg);
        if configured == 0 {
            return Err(usage(
                "no destination given",
                &format!("give --dst-local, --dst-remote or --dst-pipe: {EXAMPLE}"),
            ));
        }
        if configured > 1 && self.state_dir.is_none() {
            return Err(usage(
                "more than one destination but no --state-dir",
                "give --state-dir DIR so that a retry sends only to the destinations still missing the file",
            ));
        }
        if let Some(s) = &self.state_dir {
            check_state_dir(s)?;
        }
        // An archive-ahead asked for and silently off would be a remote archive 20 times
        // slower than its DBA set it up to be.
        if let (None, Some(ahead)) = (&self.state_dir, self.archive_ahead) {
            if !ahead.is_off() {
                return Err(usage(
                    format!("--archive-ahead {ahead} but no --state-dir"),
                    "give --state-dir DIR: each segment delivered ahead is recorded there, and PostgreSQL's call for it is answered from that record",
                ));
            }
        }
        let parallel_jobs = match self.parallel_jobs {
            Some(0) => {
                return Err(usage(
                    "--parallel-jobs must be at least 1",
                    "give a number of destinations to deliver to at once",
                ))
            }
            Some(n) => n,
            None => destinations.len().max(1),
        };
        let s3 = s3_settings(&self.common().s3, &destinations)?;
        let write_delay = std::env::var("PITR_TEST_WRITE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        // Records need the state dir; only round trips make them worth keeping.
        let remote = destinations
            .iter()
            .any(|d| matches!(d.location.target, Target::Rsync(_) | Target::S3(_)));
        let archive_ahead = match (&self.state_dir, self.archive_ahead) {
            (None, _) => crate::ahead::AheadLimit::OFF,
            (Some(_), Some(n)) => n,
            (Some(_), None) if remote => crate::ahead::AheadLimit::DEFAULT,
            (Some(_), None) => crate::ahead::AheadLimit::OFF,
        };
        Ok(Config {
            wal_arg,
            wal_path,
            wal_name,
            data_dir,
            destinations,
            temp_dir: self.common().temp_dir(),
            archive_ahead,
            state_dir: self.state_dir,
            parallel_jobs,
            rsync: Rsync::new(self.rsync_path.unwrap_or_else(|| PathBuf::from("rsync"))),
            s3,
            stores: Default::default(),
            write_delay,
        })
    }

    /// `--dst-backup`, when given and its directory exists (pitr-backup creates it for the
    /// duration of a backup).
    fn backup_destination(&self) -> anyhow::Result<Option<Location>> {
        let Some(b) = &self.dst_backup else {
            return Ok(None);
        };
        let spec = b.to_string_lossy();
        let location = Location::parse(Opt::DstBackup, &spec).map_err(|e| bad_location(&e))?;
        if location.codec != Codec::None || spec.starts_with("none=") {
            return Err(usage(
                format!("--dst-backup {spec} cannot be compressed"),
                "pitr-backup reads it uncompressed: give a plain absolute directory",
            ));
        }
        if !b.is_absolute() {
            return Err(usage(
                format!("--dst-backup {spec} is not an absolute path"),
                "give an absolute directory",
            ));
        }
        Ok(b.is_dir().then_some(location))
    }

    /// The one WAL file argument, as given and parsed.
    fn wal_file(&self) -> anyhow::Result<(String, WalFileName)> {
        let wal_arg = match self.wal_file.as_slice() {
            [] => return Err(usage("no WAL file given", &format!("pass %p: {EXAMPLE}"))),
            [one] => one.clone(),
            _ => {
                return Err(usage(
                    "more than one WAL file given",
                    &format!("pass only %p: {EXAMPLE}"),
                ))
            }
        };
        let base = Path::new(&wal_arg)
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let wal_name = WalFileName::parse(&base).map_err(|e| {
            usage(
                e.to_string(),
                "pitr-archive takes WAL files only (segments, .partial, .history, .backup)",
            )
        })?;
        Ok((wal_arg, wal_name))
    }
}

/// The object-store settings (`AWS_*` variables, `--s3-*` options), read only when a
/// destination is an object store.
fn s3_settings(
    options: &pitr_common::objstore::S3Options,
    destinations: &[Destination],
) -> anyhow::Result<Option<pitr_common::objstore::Settings>> {
    if !destinations
        .iter()
        .any(|d| matches!(d.location.target, pitr_common::location::Target::S3(_)))
    {
        return Ok(None);
    }
    options
        .settings(|name| std::env::var(name).ok())
        .map(Some)
        .map_err(|e| usage(e.to_string(), pitr_common::objstore::SETTINGS_HINT))
}

fn check_state_dir(s: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(s) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(usage(
            format!("--state-dir {} is not a directory", s.display()),
            "give an existing directory writable by the user PostgreSQL runs as",
        )),
        Err(e) => Err(usage(
            format!("--state-dir {}: {e}", s.display()),
            "create it, owned by the user PostgreSQL runs as",
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn every_alias_names_an_option_of_ours() {
        assert_eq!(
            pitr_common::cli::alias_problems::<Args>(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn omnipitr_spellings_take_two_dashes_too() {
        let args = [
            "--dl",
            "/a",
            "--dr",
            "h:/w",
            "--PJ",
            "2",
            "--rp",
            "/bin/rsync",
            "--nn",
            "--gp",
            "/bin/gzip",
            "-v",
            "%p",
        ];
        let (a, ignored) =
            pitr_common::cli::parse_from::<Args>(args.iter().map(OsString::from).collect())
                .unwrap();
        assert_eq!(a.dst_local, ["/a"]);
        assert_eq!(a.dst_remote, ["h:/w"]);
        assert_eq!(a.parallel_jobs, Some(2));
        assert_eq!(a.rsync_path, Some(PathBuf::from("/bin/rsync")));
        assert_eq!(ignored, ["--nn", "--gp"]);
        assert_eq!(
            pitr_common::cli::help_problems::<Args>(&["--help"]),
            Vec::<String>::new()
        );
    }
}

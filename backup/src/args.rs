//! Command line of `pitr-backup`, and its validation into a [`Config`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use argh::FromArgs;
use pitr_common::backupset::FilenameTemplate;
use pitr_common::cli::{Alias, Aliases, HasCommon, Tool};
use pitr_common::exit::{self, Failure};
use pitr_common::location::{self, Location, Opt, Target};
use pitr_common::log_warning;
use pitr_common::rsync::Rsync;

pitr_common::tool_args! {
/// The command line of `pitr-backup`. The `description`, `usage`, examples, notes and exit
/// statuses below are its `--help` and, through `cargo xtask dist`, its man page.
#[derive(FromArgs, Debug)]
#[argh(
    description = "Takes an online base backup of a running PostgreSQL cluster, primary or hot\n\
            standby, into a backup set: a data archive with a backup_manifest that\n\
            pg_verifybackup accepts, a WAL archive holding the WAL from the backup's start\n\
            to its end, a digest file for sha256sum -c, and a meta file written last. Run it\n\
            as the user PostgreSQL runs as.\n\
            \n\
            On a primary the backup's WAL comes from --xlogs, a directory that pitr-archive\n\
            --dst-backup fills while the backup runs; on a standby from its WAL archive\n\
            (--wal-source).",
    usage = "--data-dir <DIR> (--dst-local <[CODEC=]DIR> |\n\
            \x20          --dst-remote <[CODEC=]TARGET> | --dst-pipe <[CODEC=]PROGRAM>)...\n\
            \x20          (--xlogs <DIR> | --wal-source <[CODEC=]DIR|s3://BUCKET/PREFIX> |\n\
            \x20          --skip-xlogs)\n\
            \x20          [--host <HOST>] [--port <PORT>] [--username <USER>]\n\
            \x20          [--database <DBNAME>] [--wal-timeout <SECONDS>]\n\
            \x20          [--filename-template <TEMPLATE>] [--label <LABEL>]\n\
            \x20          [--fast-checkpoint] [--removal-pause-trigger <FILE>]\n\
            \x20          [--lock-file <FILE>] [--temp-dir <DIR>] [--rsync-path <PROGRAM>]\n\
            \x20          [--s3-endpoint <URL>] [--s3-region <NAME>] [--s3-addressing <STYLE>]\n\
            \x20          [--s3-key-file <FILE>] [--s3-conditional-writes] [--s3-retry-seconds <N>]\n\
            \x20          [--s3-ca-file <FILE>]\n\
            \x20          [--compress-threads <N>] [--progress-interval <SECONDS>]\n\
            \x20          [--log <FILE>] [--verbose] [--pid-file <FILE>]\n\
            \x20          [--config-file <FILE>]...\n\
            \x20      {command_name} --help | --version",
    example = "A backup of the primary, pushed to a standby's rsync daemon, while the\n\
            primary's archive_command gives pitr-archive --dst-backup\n\
            /var/lib/pgsql/pitr/backup-xlogs:\n\
            \x20 pitr-backup --data-dir /var/lib/pgsql/15/data --dst-remote zstd=rsync://standby1/backups --xlogs /var/lib/pgsql/pitr/backup-xlogs --fast-checkpoint",
    example = "A backup of a hot standby, taking WAL from its archive:\n\
            \x20 pitr-backup --data-dir /var/lib/pgsql/15/data --dst-local zstd=/var/lib/pgsql/backups --wal-source zstd=/var/lib/pgsql/wal_archive --removal-pause-trigger /var/lib/pgsql/pitr/removal-pause.trigger",
    example = "From cron, with the options in a file:\n\
            \x20 30 1 * * * postgres /opt/pitr/bin/pitr-backup --config-file /etc/pitr/backup.conf",
    note = "--config-file FILE (also spelled --config or --cfg) reads options from FILE,\n\
            one per line (\"--dst-local /var/lib/pgsql/backups\"), # starting a comment, as\n\
            if they were given where --config-file stands.\n\
            \n\
            The connection also follows PGHOST, PGPORT, PGUSER, PGDATABASE and PGPASSWORD.",
    note = "\n\
            Files:\n\
            /etc/pitr/backup.conf\n\
            \x20   options for --config-file (installed by the RPM, kept on upgrades)\n\
            /etc/cron.d/pitr\n\
            \x20   the nightly backup job, commented out (installed by the RPM)\n\
            DATADIR/pitr-backup.lock\n\
            \x20   the default --lock-file, left out of backups",
    error_code(0, "every destination holds the complete set"),
    error_code(
        2,
        "an error, or interrupted: the server leaves backup mode and partial files\n\
            \x20   are removed"
    ),
    error_code(3, "a usage error"),
    error_code(
        4,
        "another pitr-backup of this cluster runs (--lock-file), or one holds\n\
            \x20   --pid-file"
    )
)]
pub struct Args {
    /// data directory of the cluster to back up (required; must be the server's own, checked
    /// against the server's system identifier and data_directory)
    #[argh(option)]
    pub data_dir: Option<PathBuf>,

    /// database server host, or a Unix socket directory when it starts with / (default:
    /// $PGHOST, else /var/run/postgresql)
    #[argh(option)]
    pub host: Option<String>,

    /// database server port (default: $PGPORT, else 5432)
    #[argh(option)]
    pub port: Option<u16>,

    /// database user, who needs the right to run pg_backup_start (default: $PGUSER, else the
    /// operating system user); the password comes from $PGPASSWORD
    #[argh(option)]
    pub username: Option<String>,

    /// database to connect to (default: $PGDATABASE, else postgres)
    #[argh(option)]
    pub database: Option<String>,

    /// local destination directory, [CODEC=]DIR with CODEC none, gzip or zstd (default none)
    /// and an optional level (zstd:19=/srv/backups); repeatable
    #[argh(option)]
    pub dst_local: Vec<String>,

    /// remote destination, [CODEC=]TARGET with TARGET s3://BUCKET/PREFIX (an object store,
    /// each file streamed into a multipart upload; see --s3-endpoint), or
    /// rsync://host[:port]/module/path, host::module/path or [user@]host:/path, sent with rsync;
    /// repeatable
    #[argh(option)]
    pub dst_remote: Vec<String>,

    /// program that receives each file of the set on stdin and its name as its only argument,
    /// [CODEC=]PROGRAM; repeatable
    #[argh(option)]
    pub dst_pipe: Vec<String>,

    /// directory that pitr-archive's --dst-backup fills with WAL while the backup runs; it is
    /// created at the start (it must not exist) and removed at the end
    #[argh(option)]
    pub xlogs: Option<PathBuf>,

    /// the WAL archive to take the backup's WAL from instead of --xlogs, [CODEC=]DIR or
    /// [CODEC=]s3://BUCKET/PREFIX (any stored form is found; the codec only says which to look
    /// for first)
    #[argh(option)]
    pub wal_source: Option<String>,

    /// make no WAL archive: the backup then needs the WAL archive to be restored
    #[argh(switch)]
    pub skip_xlogs: bool,

    /// seconds to wait for each WAL segment the backup needs to be archived (default 300)
    #[argh(option, default = "300")]
    pub wal_timeout: u64,

    /// names of the set's files: __HOSTNAME__, __FILETYPE__ (required: data, xlog, sha256,
    /// meta), __CEXT__ (the codec's extension) and ^ for the % of strftime, evaluated once at
    /// the start (default: __HOSTNAME__-__FILETYPE__-^Y-^m-^d_^H^M^S.tar__CEXT__)
    #[argh(option)]
    pub filename_template: Option<String>,

    /// the backup label (default: pitr-backup and the start time)
    #[argh(option)]
    pub label: Option<String>,

    /// ask for an immediate checkpoint at the start instead of a spread one
    #[argh(switch)]
    pub fast_checkpoint: bool,

    /// file created for the duration of the backup (it must not exist), so that pitr-restore
    /// and pitr-cleanup keep the WAL the backup needs; for backups of a standby
    #[argh(option)]
    pub removal_pause_trigger: Option<PathBuf>,

    /// lock file that keeps two backups of one cluster from running at once (default:
    /// pitr-backup.lock in the data directory, left out of backups)
    #[argh(option)]
    pub lock_file: Option<PathBuf>,

    /// the rsync program used for --dst-remote (default: rsync from PATH)
    #[argh(option)]
    pub rsync_path: Option<PathBuf>,

    /// compression threads, zstd and gzip (default: the number of CPUs)
    #[argh(option)]
    pub compress_threads: Option<u32>,

    /// seconds between progress lines in the log (default 10)
    #[argh(option, default = "10")]
    pub progress_interval: u64,
}
}

/// OmniPITR's streaming to ssh, which pitr-backup does not do.
const DST_DIRECT: Alias = Alias::Refused(
    "use --dst-pipe with a script running ssh user@host \"cat > /path/$1\", or --dst-remote user@host:/path (staged locally, then rsynced)",
);

impl Tool for Args {
    const NAME: &'static str = "pitr-backup";

    /// The spellings of omnipitr-backup-master and omnipitr-backup-slave (README, "Migrating
    /// from OmniPITR").
    const ALIASES: Aliases = pitr_common::aliases_with_compressor_paths![
        ("-D", Alias::Option("--data-dir")),
        ("-d", Alias::Option("--database")),
        ("-h", Alias::Option("--host")),
        // backup-master's port, backup-slave's removal pause trigger.
        (
            "-p",
            Alias::ByValue {
                number: "--port",
                other: "--removal-pause-trigger",
            },
        ),
        ("-P", Alias::Option("--port")),
        ("-U", Alias::Option("--username")),
        ("-x", Alias::Option("--xlogs")),
        ("-s", Alias::Option("--wal-source")),
        ("--source", Alias::Option("--wal-source")),
        ("-dl", Alias::Option("--dst-local")),
        ("-dr", Alias::Option("--dst-remote")),
        ("-dp", Alias::Option("--dst-pipe")),
        ("-f", Alias::Option("--filename-template")),
        ("-sx", Alias::Switch("--skip-xlogs")),
        ("-t", Alias::Option("--temp-dir")),
        ("-l", Alias::Option("--log")),
        ("-v", Alias::Switch("--verbose")),
        ("-rp", Alias::Option("--rsync-path")),
        ("-?", Alias::Switch("--help")),
        ("-dd", DST_DIRECT),
        ("--dst-direct", DST_DIRECT),
        // Not needed: tar, compression and digests are done in-process, the session with a
        // built-in client, on the server backed up (no call to the primary).
        ("-nn", Alias::DroppedSwitch),
        ("--not-nice", Alias::DroppedSwitch),
        ("-cm", Alias::DroppedSwitch),
        ("--call-master", Alias::DroppedSwitch),
        ("-np", Alias::DroppedOption),
        ("--nice-path", Alias::DroppedOption),
        // The compressor-path options follow (pitr_common::aliases_with_compressor_paths).
        ("-tp", Alias::DroppedOption),
        ("--tar-path", Alias::DroppedOption),
        ("-ep", Alias::DroppedOption),
        ("--tee-path", Alias::DroppedOption),
        ("-sh", Alias::DroppedOption),
        ("--shell-path", Alias::DroppedOption),
        ("-pp", Alias::DroppedOption),
        ("--psql-path", Alias::DroppedOption),
        ("--pgcontroldata-path", Alias::DroppedOption),
        ("-sp", Alias::DroppedOption),
        ("-ssh", Alias::DroppedOption),
        ("--ssh-path", Alias::DroppedOption),
        ("-rcp", Alias::DroppedOption),
        ("--remote-cat-path", Alias::DroppedOption),
        ("-dg", Alias::DroppedOption),
        ("--digest", Alias::DroppedOption),
        ("-PJ", Alias::DroppedOption),
        ("--parallel-jobs", Alias::DroppedOption),
    ];

    fn at_start() {
        pitr_common::signal::catch_termination();
    }

    fn run(self) -> anyhow::Result<ExitCode> {
        crate::backup::run(&self.into_config()?)
    }
}

pub use pitr_common::pgconn::Connection;

/// Where the backup's WAL comes from.
#[derive(Debug, Clone)]
pub enum WalInput {
    /// The `--xlogs` directory pitr-archive fills.
    Xlogs(PathBuf),
    /// A WAL archive.
    Source(Location),
    /// No WAL archive (`--skip-xlogs`).
    Skip,
}

/// Validated settings of one run.
#[derive(Debug)]
pub struct Config {
    /// The data directory, absolute and with symbolic links resolved.
    pub data_dir: PathBuf,
    /// The database connection.
    pub conn: Connection,
    /// Destinations, without duplicates.
    pub destinations: Vec<Location>,
    /// Where WAL comes from.
    pub wal: WalInput,
    /// The object-store settings, when `--wal-source` or a destination is on one.
    pub s3: Option<pitr_common::objstore::Settings>,
    /// Longest wait for one WAL segment.
    pub wal_timeout: Duration,
    /// File names.
    pub template: FilenameTemplate,
    /// Label, if given.
    pub label: Option<String>,
    /// Immediate checkpoint.
    pub fast_checkpoint: bool,
    /// Removal pause trigger.
    pub removal_pause_trigger: Option<PathBuf>,
    /// Lock file.
    pub lock_file: PathBuf,
    /// Scratch parent directory.
    pub temp_dir: PathBuf,
    /// rsync program.
    pub rsync: Rsync,
    /// Compression threads (zstd and gzip).
    pub compress_threads: u32,
    /// Progress log interval.
    pub progress_interval: Duration,
    /// Test hook (`PITR_TEST_COPY_DELAY_MS`): sleep after each file copied, so that a test can
    /// interrupt a backup in the middle.
    pub copy_delay: Option<Duration>,
}

/// The name of the default lock file in the data directory.
pub const LOCK_FILE_NAME: &str = "pitr-backup.lock";

fn usage(msg: impl Into<String>, hint: &str) -> anyhow::Error {
    Failure::new(msg).hint(hint).status(exit::USAGE).into()
}

const EXAMPLE: &str = "pitr-backup --data-dir /var/lib/postgresql/15/main --dst-local zstd=/srv/backups --xlogs /var/lib/postgresql/backup-xlogs";

/// Checks that `dir` is an existing directory; `what` names the option.
fn existing_dir(dir: &Path, what: &str, hint: &str) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(usage(
            format!("{what} {} is not a directory", dir.display()),
            hint,
        )),
        Err(e) => Err(usage(format!("{what} {}: {e}", dir.display()), hint)),
    }
}

impl Args {
    /// Validates the arguments against the file system and the environment.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let common = self.common();
        let Some(data_dir) = self.data_dir else {
            return Err(usage(
                "no --data-dir given",
                &format!("give the data directory of the cluster: {EXAMPLE}"),
            ));
        };
        existing_dir(
            &data_dir,
            "--data-dir",
            "give the data directory of the running cluster",
        )?;
        let data_dir = std::fs::canonicalize(&data_dir).map_err(|e| {
            usage(
                format!("--data-dir {}: {e}", data_dir.display()),
                "give the data directory of the running cluster",
            )
        })?;
        pitr_common::pg::check_owner(&data_dir, "pitr-backup", exit::USAGE)?;

        let destinations = destinations(&self.dst_local, &self.dst_remote, &self.dst_pipe)?;
        if destinations.is_empty() {
            return Err(usage(
                "no destination given",
                &format!("give --dst-local, --dst-remote or --dst-pipe: {EXAMPLE}"),
            ));
        }

        let wal = wal_input(
            self.xlogs.as_deref(),
            self.wal_source.as_deref(),
            self.skip_xlogs,
        )?;

        let template = template(self.filename_template.as_deref())?;
        check_label(self.label.as_deref())?;
        if let Some(t) = &self.removal_pause_trigger {
            check_trigger_dir(t)?;
        }
        let temp_dir = common.temp_dir();
        existing_dir(
            &temp_dir,
            "--temp-dir",
            "give an existing writable directory",
        )?;
        if self.wal_timeout == 0 || self.progress_interval == 0 {
            return Err(usage(
                "--wal-timeout and --progress-interval must be at least 1 second",
                "give a number of seconds",
            ));
        }
        let compress_threads = compress_threads(self.compress_threads)?;
        let conn = Connection::from_options(
            self.host.clone(),
            self.port,
            self.username.clone(),
            self.database.clone(),
        )?;
        let copy_delay = std::env::var("PITR_TEST_COPY_DELAY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis);
        let on_store = |l: &Location| matches!(l.target, Target::S3(_));
        let needs_store =
            destinations.iter().any(on_store) || matches!(&wal, WalInput::Source(l) if on_store(l));
        let s3 = if needs_store {
            Some(
                common
                    .s3
                    .settings(|name| std::env::var(name).ok())
                    .map_err(|e| usage(e.to_string(), pitr_common::objstore::SETTINGS_HINT))?,
            )
        } else {
            None
        };
        Ok(Config {
            s3,
            lock_file: self
                .lock_file
                .unwrap_or_else(|| data_dir.join(LOCK_FILE_NAME)),
            data_dir,
            conn,
            destinations,
            wal,
            wal_timeout: Duration::from_secs(self.wal_timeout),
            template,
            label: self.label,
            fast_checkpoint: self.fast_checkpoint,
            removal_pause_trigger: self.removal_pause_trigger,
            temp_dir,
            rsync: Rsync::new(self.rsync_path.unwrap_or_else(|| PathBuf::from("rsync"))),
            compress_threads,
            progress_interval: Duration::from_secs(self.progress_interval),
            copy_delay,
        })
    }
}

/// The `--filename-template`, or the default one.
fn template(given: Option<&str>) -> anyhow::Result<FilenameTemplate> {
    match given {
        Some(t) => FilenameTemplate::parse(t).map_err(|e| {
            usage(
                format!("--filename-template: {e}"),
                "include __FILETYPE__ and no '/', e.g. __HOSTNAME__-__FILETYPE__-^Y-^m-^d_^H^M^S.tar__CEXT__",
            )
        }),
        None => Ok(FilenameTemplate::default()),
    }
}

/// A `--label` is one non-empty line.
fn check_label(label: Option<&str>) -> anyhow::Result<()> {
    match label {
        Some(l) if l.contains('\n') || l.contains('\r') || l.is_empty() => Err(usage(
            "--label must be one non-empty line",
            "give a short label without line breaks",
        )),
        _ => Ok(()),
    }
}

/// The `--removal-pause-trigger` file must be in an existing directory.
fn check_trigger_dir(trigger: &Path) -> anyhow::Result<()> {
    let parent = trigger.parent().filter(|p| !p.as_os_str().is_empty());
    existing_dir(
        parent.unwrap_or(Path::new(".")),
        "the directory of --removal-pause-trigger",
        "give a file in an existing directory, the one pitr-restore --removal-pause-trigger watches",
    )
}

/// `--compress-threads`, defaulting to the number of CPUs.
fn compress_threads(given: Option<u32>) -> anyhow::Result<u32> {
    match given {
        Some(0) => Err(usage(
            "--compress-threads must be at least 1",
            "give a number of compression threads (zstd and gzip)",
        )),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism()
            .map(|n| u32::try_from(n.get()).unwrap_or(1))
            .unwrap_or(1)),
    }
}

fn bad_location(e: &location::Error) -> anyhow::Error {
    usage(e.to_string(), e.opt().syntax())
}

/// The destinations, local ones checked to exist; two that would write the same names into one
/// place are refused.
fn destinations(
    dst_local: &[String],
    dst_remote: &[String],
    dst_pipe: &[String],
) -> anyhow::Result<Vec<Location>> {
    let destinations = location::parse_destinations(dst_local, dst_remote, dst_pipe)
        .map_err(|e| bad_location(&e))?;
    for d in &destinations {
        if let Some(dir) = d.as_dir() {
            existing_dir(
                dir,
                "--dst-local",
                "create the directory first, writable by the user pitr-backup runs as",
            )?;
        }
    }
    for (i, a) in destinations.iter().enumerate() {
        if let Some(b) = destinations[i + 1..].iter().find(|b| {
            !matches!(b.target, Target::Program(_))
                && b.target == a.target
                && b.codec.extension() == a.codec.extension()
        }) {
            return Err(usage(
                format!("destinations {a} and {b} would write the same files"),
                "give each directory one codec",
            ));
        }
    }
    Ok(destinations)
}

/// Where the backup's WAL comes from: one of `--xlogs`, `--wal-source`, `--skip-xlogs`;
/// `--skip-xlogs` wins over the others, with a WARNING, as OmniPITR's `-sx` did over `-x`.
fn wal_input(
    xlogs: Option<&Path>,
    wal_source: Option<&str>,
    skip: bool,
) -> anyhow::Result<WalInput> {
    match (xlogs, wal_source, skip) {
        (Some(x), None, false) => {
            if !x.is_absolute() {
                return Err(usage(
                    format!("--xlogs {} is not an absolute path", x.display()),
                    "give the same absolute directory as pitr-archive's --dst-backup",
                ));
            }
            let parent = x.parent().unwrap_or(Path::new("/"));
            existing_dir(
                parent,
                "the parent of --xlogs",
                "create it, writable by the user PostgreSQL and pitr-backup run as",
            )?;
            Ok(WalInput::Xlogs(x.to_path_buf()))
        }
        (None, Some(s), false) => {
            let location = Location::parse(Opt::WalSource, s).map_err(|e| bad_location(&e))?;
            if let Some(dir) = location.as_dir() {
                existing_dir(
                    dir,
                    "--wal-source",
                    "give the WAL archive directory the cluster archives into",
                )?;
            }
            Ok(WalInput::Source(location))
        }
        (None, None, true) => Ok(WalInput::Skip),
        (xlogs, source, true) => {
            // OmniPITR ignored -x when -sx was given, and cron lines carry both.
            let ignored: Vec<String> = xlogs
                .map(|x| format!("--xlogs {}", x.display()))
                .into_iter()
                .chain(source.map(|s| format!("--wal-source {s}")))
                .collect();
            log_warning!(
                "--skip-xlogs given: ignoring {} (the backup has no WAL; it needs a WAL archive to be restored)",
                ignored.join(" and ")
            );
            Ok(WalInput::Skip)
        }
        (None, None, false) => Err(usage(
            "no WAL source given",
            "give --xlogs DIR (with pitr-archive --dst-backup DIR), --wal-source ARCHIVE, or --skip-xlogs",
        )),
        _ => Err(usage(
            "--xlogs and --wal-source exclude each other",
            "give one of them: --xlogs for WAL collected during the backup, --wal-source to copy it from the archive",
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn skip_xlogs_wins_over_xlogs_and_wal_source() {
        let d = tempfile::tempdir().unwrap();
        let x = d.path().join("xlogs");
        let s = d.path().to_string_lossy().into_owned();
        for (xlogs, source) in [(Some(x.as_path()), None), (None, Some(s.as_str()))] {
            assert!(matches!(
                wal_input(xlogs, source, true).unwrap(),
                WalInput::Skip
            ));
        }
        let both = wal_input(Some(&x), Some(&s), false).unwrap_err();
        assert_eq!(
            format!("{both:#}"),
            "--xlogs and --wal-source exclude each other"
        );
    }

    #[test]
    fn every_alias_names_an_option_of_ours() {
        assert_eq!(
            pitr_common::cli::alias_problems::<Args>(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn omnipitr_spellings_take_two_dashes_too() {
        let parse = |args: &[&str]| {
            pitr_common::cli::parse_from::<Args>(args.iter().map(OsString::from).collect())
        };
        let (a, ignored) = parse(&["-D", "/d", "--dl", "/b", "--sx", "--np", "nice"]).unwrap();
        assert_eq!(a.dst_local, ["/b"]);
        assert!(a.skip_xlogs);
        assert_eq!(ignored, ["--np"]);
        assert_eq!(
            parse(&["-D", "/d", "--dd", "u@h:/x"]).unwrap_err(),
            pitr_common::cli::Exit::Usage {
                message: "option --dd is not supported".into(),
                hint: "use --dst-pipe with a script running ssh user@host \"cat > /path/$1\", \
                       or --dst-remote user@host:/path (staged locally, then rsynced)"
                    .into(),
                status: exit::USAGE,
            }
        );
        assert_eq!(
            pitr_common::cli::help_problems::<Args>(&["--help"]),
            Vec::<String>::new()
        );
    }
}

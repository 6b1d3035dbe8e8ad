//! Command line of `pitr-monitor`, and its validation into a [`Config`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::SystemTime;

use argh::FromArgs;
use pitr_common::cli::{Alias, Aliases, CommonOptions, HasCommon, Parse, Tool};
use pitr_common::exit::Failure;
use pitr_common::log_warning;

use crate::report::{Output, UNKNOWN};
use crate::store::Store;
use crate::threshold::Range;

/// The command line of `pitr-monitor`. The `description`, `usage`, examples, notes and exit
/// statuses below are its `--help` and, through `cargo xtask dist`, its man page.
#[derive(FromArgs, Debug)]
#[argh(
    description = "Tells whether archiving, restoring and backups keep up, what the archive and the\n\
            backups hold and whether the archive is whole: for Nagios, Cacti, Prometheus and\n\
            people.\n\
            \n\
            OmniPITR's checks, read from the tools' logs (--log, --state-dir):\n\
            last-archive-age and current-archive-time (seconds), archive-queue (WAL segments\n\
            the server finished and has not archived; asks the server), last-restore-age,\n\
            current-restore-time, last-backup-age (from --backup-dir when given), errors\n\
            (each ERROR or FATAL line once across calls, or since --from), dump-state. And:\n\
            info (every backup set of every --backup-dir with its recoverable window through\n\
            the --archive, across timelines) and verify (every gap, damaged file and\n\
            duplicate in the --archive from the oldest backup's start on).\n\
            \n\
            Output: one line \"STATUS - summary | perfdata\", detail lines after it; --output\n\
            json for one JSON object; --output omnipitr for what omnipitr-monitor printed (a\n\
            bare number for Cacti). --prometheus FILE also writes the metrics in\n\
            node_exporter's textfile format.",
    usage = "--check <CHECK> --log <TEMPLATE>... --state-dir <DIR> [--from <TIME>]\n\
            \x20          [--warning <RANGE>] [--critical <RANGE>] [--output plugin|json|omnipitr]\n\
            \x20          [--prometheus <FILE>] [--verbose] [--pid-file <FILE>]\n\
            \x20          [--config-file <FILE>]...\n\
            \x20      {command_name} --check archive-queue [--host <HOST>] [--port <PORT>]\n\
            \x20          [--username <USER>] [--database <DBNAME>]\n\
            \x20          [--log <TEMPLATE>... --state-dir <DIR>] [--psql-path <PROGRAM>]\n\
            \x20          [--warning <RANGE>] [--critical <RANGE>] [--output plugin|json|omnipitr]\n\
            \x20          [--prometheus <FILE>] [--verbose] [--pid-file <FILE>]\n\
            \x20          [--config-file <FILE>]...\n\
            \x20      {command_name} --check info|verify|last-backup-age\n\
            \x20          [--archive <[CODEC=]LOCATION>] [--backup-dir <LOCATION>]...\n\
            \x20          [--parallel-jobs <N>] [--rsync-path <PROGRAM>] [--temp-dir <DIR>]\n\
            \x20          [--s3-endpoint <URL>] [--s3-region <NAME>] [--s3-addressing <STYLE>]\n\
            \x20          [--s3-key-file <FILE>] [--s3-conditional-writes] [--s3-retry-seconds <N>]\n\
            \x20          [--s3-ca-file <FILE>]\n\
            \x20          [--warning <RANGE>] [--critical <RANGE>] [--output plugin|json|omnipitr]\n\
            \x20          [--prometheus <FILE>] [--verbose] [--pid-file <FILE>]\n\
            \x20          [--config-file <FILE>]...\n\
            \x20      {command_name} --help | --version",
    example = "How long ago the last WAL file was archived, from pitr-archive's logs:\n\
            \x20 pitr-monitor --check last-archive-age --log '/var/log/pitr/archive-^Y-^m-^d.log' --state-dir /var/lib/pitr/monitor --warning 300 --critical 900",
    example = "How many finished WAL segments wait to be archived, asking the server:\n\
            \x20 pitr-monitor --check archive-queue --host /var/run/postgresql --warning 5 --critical 20",
    example = "The backup sets and how far each can be recovered:\n\
            \x20 pitr-monitor --check info --backup-dir /srv/backups --archive zstd=/srv/wal",
    example = "Whether the archive is whole from the oldest backup on, for Prometheus too:\n\
            \x20 pitr-monitor --check verify --archive zstd=/srv/wal --backup-dir /srv/backups --prometheus /var/lib/node_exporter/pitr-verify.prom",
    note = "Thresholds use the monitoring-plugin range syntax: N alerts above N, N: below N,\n\
            ~:N above N, N:M outside N..M, @N:M inside. Ages are in seconds. Without\n\
            thresholds the age and queue checks are OK whatever the value; errors is WARNING\n\
            from one new error; info is WARNING for an incomplete backup set; verify is\n\
            CRITICAL for any gap or damaged file and WARNING for an identical duplicate,\n\
            whatever the thresholds.\n\
            \n\
            --log names the logs to read, as in OmniPITR's monitor; pitr-monitor's own log\n\
            lines go to stderr. --config-file FILE (also spelled --config or --cfg) reads\n\
            options from FILE, one per line, # starting a comment, as if they were given\n\
            where --config-file stands.",
    note = "\n\
            Files:\n\
            STATE_DIR/pitr-monitor.state\n\
            \x20   what the log checks have read so far, and the errors already reported\n\
            STATE_DIR/pitr-monitor.lock\n\
            \x20   held while a check updates the state\n\
            /opt/pitr/share/pitr/examples/pitr.cron\n\
            \x20   info and verify from cron, written for Prometheus",
    error_code(0, "OK"),
    error_code(1, "WARNING"),
    error_code(2, "CRITICAL"),
    error_code(3, "UNKNOWN: the check could not tell, an error, or a usage error")
)]
pub struct Args {
    /// the check: last-archive-age, current-archive-time, archive-queue, last-restore-age,
    /// current-restore-time, errors, last-backup-age, dump-state, info or verify (OmniPITR's
    /// spellings such as Last_Archive_Age work too)
    #[argh(option, short = 'c')]
    pub check: Option<String>,

    /// a log file template to read, as given to the tools' --log (^ stands for strftime's %:
    /// /var/log/pitr/archive-^Y-^m-^d.log), or the server log the tools write to; repeatable
    #[argh(option, short = 'l')]
    pub log: Vec<String>,

    /// directory where the log checks keep what they read (pitr-monitor.state); must exist
    #[argh(option, short = 's')]
    pub state_dir: Option<PathBuf>,

    /// the WAL archive, [CODEC=]DIR, an rsync target (rsync://host/module/path,
    /// [user@]host:/path) or s3://BUCKET/PREFIX, as given to pitr-cleanup
    #[argh(option)]
    pub archive: Option<String>,

    /// a directory, rsync target or s3://BUCKET/PREFIX holding backup sets made by
    /// pitr-backup; repeatable
    #[argh(option)]
    pub backup_dir: Vec<String>,

    /// archive-queue: database server host, or a Unix socket directory when it starts with /
    /// (default: $PGHOST, else /var/run/postgresql)
    #[argh(option, short = 'h')]
    pub host: Option<String>,

    /// archive-queue: database server port (default: $PGPORT, else 5432)
    #[argh(option, short = 'p')]
    pub port: Option<u16>,

    /// archive-queue: database user (default: $PGUSER, else the operating system user); the
    /// password comes from $PGPASSWORD
    #[argh(option, short = 'U')]
    pub username: Option<String>,

    /// archive-queue: database (default: $PGDATABASE, else postgres)
    #[argh(option, short = 'd')]
    pub database: Option<String>,

    /// WARNING threshold range for the check's value (see Notes)
    #[argh(option, short = 'w')]
    pub warning: Option<String>,

    /// CRITICAL threshold range for the check's value (see Notes)
    #[argh(option)]
    pub critical: Option<String>,

    /// plugin (default), json or omnipitr
    #[argh(option)]
    pub output: Option<String>,

    /// also write the check's metrics to FILE in node_exporter's textfile format (replaced
    /// atomically)
    #[argh(option)]
    pub prometheus: Option<PathBuf>,

    /// errors: report the errors since this local time (YYYY-MM-DD HH:MM:SS) or since this
    /// many seconds ago, instead of those not reported yet
    #[argh(option)]
    pub from: Option<String>,

    /// verify: files checked at once (default: the number of CPUs, at most 8; fewer for large
    /// segments)
    #[argh(option)]
    pub parallel_jobs: Option<usize>,

    /// the rsync program, for rsync locations (default: rsync from PATH)
    #[argh(option)]
    pub rsync_path: Option<PathBuf>,

    /// directory for the private scratch directory of rsync and s3:// locations (default:
    /// $TMPDIR or /tmp)
    #[argh(option, short = 't')]
    pub temp_dir: Option<PathBuf>,

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

    /// file holding the S3 access key (aws_access_key_id and aws_secret_access_key, as in
    /// ~/.aws/credentials; default: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)
    #[argh(option)]
    pub s3_key_file: Option<PathBuf>,

    /// accepted so that one options file serves every pitr program; pitr-monitor only reads
    #[argh(switch)]
    pub s3_conditional_writes: bool,

    /// how long one s3:// request is retried while the store is unreachable or failing, in
    /// seconds (default 60); then the check is UNKNOWN
    #[argh(option)]
    pub s3_retry_seconds: Option<u64>,

    /// PEM file of the certificate authorities an https s3:// endpoint is checked against,
    /// instead of the system's (an in-house store with its own CA)
    #[argh(option)]
    pub s3_ca_file: Option<PathBuf>,

    /// log what was read (to stderr)
    #[argh(switch, short = 'v')]
    pub verbose: bool,

    /// refuse to run while the process whose pid is in this file is alive
    #[argh(option)]
    pub pid_file: Option<PathBuf>,

    /// accepted for OmniPITR compatibility and ignored: archive-queue needs no psql
    #[argh(option)]
    pub psql_path: Option<String>,

    /// read options from FILE, one per line as on the command line (--temp-dir /var/tmp), #
    /// starts a comment
    #[argh(option)]
    // Expanded in place by `cli::main`; declared so that --help lists it.
    #[allow(dead_code)]
    pub config_file: Vec<PathBuf>,
}

impl HasCommon for Args {
    /// Only `--verbose` and `--temp-dir` are the tools' common options here: `--log` names the
    /// logs to read (OmniPITR's monitor), so this program's own lines go to stderr, and the pid
    /// file is taken by [`crate::check::run`] once the arguments are valid, so that a busy pid
    /// file is reported as an UNKNOWN like any other error.
    fn common(&self) -> CommonOptions {
        CommonOptions {
            log: None,
            verbose: self.verbose,
            pid_file: None,
            temp_dir: self.temp_dir.clone(),
            s3: pitr_common::objstore::S3Options {
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

impl Parse for Args {
    fn parse(tool: &str, args: &[&str]) -> Result<Self, argh::EarlyExit> {
        <Args as FromArgs>::from_args(&[tool], args)
    }
}

impl Tool for Args {
    const NAME: &'static str = "pitr-monitor";

    /// omnipitr-monitor's spellings (README, "Migrating from OmniPITR"). `-l` is the log to
    /// read, as it was for omnipitr-monitor; `-h` is the host, not help.
    const ALIASES: Aliases = &[
        ("-c", Alias::Option("--check")),
        ("-l", Alias::Option("--log")),
        ("-s", Alias::Option("--state-dir")),
        ("-v", Alias::Switch("--verbose")),
        ("-d", Alias::Option("--database")),
        ("-h", Alias::Option("--host")),
        ("-p", Alias::Option("--port")),
        ("-U", Alias::Option("--username")),
        ("-t", Alias::Option("--temp-dir")),
        // Accepted and ignored with a WARNING (`Config`): the monitor has its own client.
        ("-pp", Alias::Option("--psql-path")),
        ("-?", Alias::Switch("--help")),
    ];

    /// Usage errors are UNKNOWN, as every error of a monitoring plugin.
    fn usage_status(_args: &[String]) -> u8 {
        UNKNOWN
    }

    fn error_status(&self) -> u8 {
        UNKNOWN
    }

    fn busy_status(&self) -> u8 {
        UNKNOWN
    }

    fn run(self) -> anyhow::Result<ExitCode> {
        crate::check::main(self)
    }
}

/// The checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Seconds since the newest successful archive.
    LastArchiveAge,
    /// Seconds the archive call in progress has run.
    CurrentArchiveTime,
    /// WAL segments finished and not archived.
    ArchiveQueue,
    /// Seconds since the newest restore.
    LastRestoreAge,
    /// Seconds the restore call in progress has run.
    CurrentRestoreTime,
    /// New ERROR and FATAL lines.
    Errors,
    /// Seconds since the newest backup finished.
    LastBackupAge,
    /// The state, as JSON.
    DumpState,
    /// Backup sets and recoverable windows.
    Info,
    /// Gaps, damaged files and duplicates in the archive.
    Verify,
}

/// Every check, in the order of `--help`.
pub const CHECKS: [Check; 10] = [
    Check::LastArchiveAge,
    Check::CurrentArchiveTime,
    Check::ArchiveQueue,
    Check::LastRestoreAge,
    Check::CurrentRestoreTime,
    Check::Errors,
    Check::LastBackupAge,
    Check::DumpState,
    Check::Info,
    Check::Verify,
];

impl Check {
    /// The name as OmniPITR spells it.
    pub fn name(self) -> &'static str {
        match self {
            Check::LastArchiveAge => "last-archive-age",
            Check::CurrentArchiveTime => "current-archive-time",
            Check::ArchiveQueue => "archive-queue",
            Check::LastRestoreAge => "last-restore-age",
            Check::CurrentRestoreTime => "current-restore-time",
            Check::Errors => "errors",
            Check::LastBackupAge => "last-backup-age",
            Check::DumpState => "dump-state",
            Check::Info => "info",
            Check::Verify => "verify",
        }
    }

    /// Whether it reads the logs (and so needs `--log` and `--state-dir`).
    pub fn reads_logs(self) -> bool {
        matches!(
            self,
            Check::LastArchiveAge
                | Check::CurrentArchiveTime
                | Check::LastRestoreAge
                | Check::CurrentRestoreTime
                | Check::Errors
                | Check::DumpState
        )
    }
}

impl FromStr for Check {
    type Err = String;

    /// OmniPITR's normalisation: case does not matter and `_` is `-` (`Last_Archive_Age`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.to_ascii_lowercase().replace('_', "-");
        CHECKS
            .into_iter()
            .find(|c| c.name() == norm)
            .ok_or_else(|| format!("invalid value for --check: {s}"))
    }
}

/// The database connection of `archive-queue`.
pub use pitr_common::pgconn::Connection;

/// Validated settings.
#[derive(Debug)]
pub struct Config {
    /// The check.
    pub check: Check,
    /// Log templates to read.
    pub logs: Vec<String>,
    /// The state directory.
    pub state_dir: Option<PathBuf>,
    /// The WAL archive.
    pub archive: Option<Store>,
    /// Backup directories.
    pub backup_dirs: Vec<Store>,
    /// The database connection (archive-queue).
    pub conn: Connection,
    /// `--warning`.
    pub warning: Option<Range>,
    /// `--critical`.
    pub critical: Option<Range>,
    /// Output form.
    pub output: Output,
    /// Prometheus textfile.
    pub prometheus: Option<PathBuf>,
    /// `--from`, Unix seconds.
    pub from: Option<f64>,
    /// Files verified at once (before the cap for large segments).
    pub jobs: usize,
    /// rsync program.
    pub rsync_path: PathBuf,
    /// Where the scratch directory goes.
    pub temp_dir: PathBuf,
    /// The object-store settings, when a location is on one.
    pub s3: Option<pitr_common::objstore::Settings>,
    /// Pid file.
    pub pid_file: Option<PathBuf>,
    /// The time the check runs at.
    pub now: SystemTime,
}

fn usage(msg: impl Into<String>, hint: &str) -> anyhow::Error {
    Failure::new(msg).hint(hint).status(UNKNOWN).into()
}

impl Args {
    /// The output form asked for, for reporting an error before the rest is validated.
    pub fn output(&self) -> Output {
        self.output
            .as_deref()
            .and_then(|o| o.parse().ok())
            .unwrap_or(Output::Plugin)
    }

    /// Validates the arguments.
    pub fn into_config(self) -> anyhow::Result<Config> {
        let check = self.parse_check()?;
        let output: Output = match &self.output {
            None => Output::Plugin,
            Some(o) => o
                .parse()
                .map_err(|e: String| usage(e, "give --output plugin, json or omnipitr"))?,
        };
        let warning = range("--warning", self.warning.as_deref())?;
        let critical = range("--critical", self.critical.as_deref())?;
        if self.psql_path.is_some() {
            log_warning!("--psql-path is ignored: pitr-monitor talks to the server itself");
        }
        let archive = self
            .archive
            .as_deref()
            .map(|a| store("--archive", a))
            .transpose()?;
        let backup_dirs = self
            .backup_dir
            .iter()
            .map(|b| store("--backup-dir", b))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.check_needs(check, archive.is_some(), !backup_dirs.is_empty())?;
        let s3 = match archive.iter().chain(&backup_dirs).any(Store::is_s3) {
            true => Some(
                self.common()
                    .s3
                    .settings(|name| std::env::var(name).ok())
                    .map_err(|e| usage(e.to_string(), pitr_common::objstore::SETTINGS_HINT))?,
            ),
            false => None,
        };
        let now = SystemTime::now();
        let from = self.parse_from(check, now)?;
        let jobs = match self.parallel_jobs {
            Some(0) => {
                return Err(usage(
                    "--parallel-jobs must be at least 1",
                    "give a number of files to check at once, e.g. 2",
                ))
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
        };
        let conn = Connection::from_options(self.host, self.port, self.username, self.database)
            .map_err(|f| anyhow::Error::from(f.status(UNKNOWN)))?;
        Ok(Config {
            check,
            logs: self.log,
            state_dir: self.state_dir,
            archive,
            backup_dirs,
            conn,
            warning,
            critical,
            output,
            prometheus: self.prometheus,
            from,
            jobs,
            rsync_path: self.rsync_path.unwrap_or_else(|| PathBuf::from("rsync")),
            temp_dir: self.temp_dir.unwrap_or_else(std::env::temp_dir),
            s3,
            pid_file: self.pid_file,
            now,
        })
    }

    /// `--check`, required.
    fn parse_check(&self) -> anyhow::Result<Check> {
        let names: Vec<&str> = CHECKS.iter().map(|c| c.name()).collect();
        let hint = format!("give one of {}", names.join(", "));
        match &self.check {
            None => Err(usage("--check has not been provided", &hint)),
            Some(c) => c.parse().map_err(|e: String| usage(e, &hint)),
        }
    }

    /// What the check needs besides `--check`: the logs and a usable state directory for the
    /// log checks, the archive for verify, a location for info.
    fn check_needs(&self, check: Check, archive: bool, backup_dirs: bool) -> anyhow::Result<()> {
        let wants_logs = check.reads_logs() || (check == Check::LastBackupAge && !backup_dirs);
        if wants_logs {
            if self.log.is_empty() {
                return Err(usage(
                    format!("--log has not been provided (--check {} reads the logs)", check.name()),
                    "give the --log template the tools write to, e.g. --log '/var/log/pitr/archive-^Y-^m-^d.log'",
                ));
            }
            if self.state_dir.is_none() {
                return Err(usage(
                    format!("--state-dir has not been provided (--check {} remembers what it read there)", check.name()),
                    "give an existing directory writable by this user, e.g. --state-dir /var/lib/pitr/monitor",
                ));
            }
        }
        if let Some(dir) = &self.state_dir {
            let problem = match std::fs::metadata(dir) {
                Err(_) => Some("does not exist"),
                Ok(m) if !m.is_dir() => Some("is not a directory"),
                Ok(m) if m.permissions().readonly() => Some("is not writable"),
                Ok(_) => None,
            };
            if let Some(p) = problem {
                return Err(usage(
                    format!("given --state-dir ({}) {p}", dir.display()),
                    "create it, owned by the user the checks run as",
                ));
            }
        }
        match check {
            Check::Verify if !archive => Err(usage(
                "--check verify needs --archive",
                "for example --check verify --archive zstd=/srv/wal --backup-dir /srv/backups",
            )),
            Check::Info if !archive && !backup_dirs => Err(usage(
                "--check info needs --backup-dir or --archive",
                "for example --check info --backup-dir /srv/backups --archive zstd=/srv/wal",
            )),
            _ => Ok(()),
        }
    }

    /// `--from`, an option of `--check errors` only, as Unix seconds.
    fn parse_from(&self, check: Check, now: SystemTime) -> anyhow::Result<Option<f64>> {
        match &self.from {
            None => Ok(None),
            Some(_) if check != Check::Errors => Err(usage(
                "--from is an option of --check errors",
                "leave it out, or use --check errors",
            )),
            Some(f) => crate::clock::parse_from(f, now).map(Some).map_err(|e| {
                usage(
                    format!("bad format of given --from: {e}"),
                    "give YYYY-MM-DD HH:MI:SS (local time) or a number of seconds",
                )
            }),
        }
    }
}

/// A threshold option's range.
fn range(opt: &str, value: Option<&str>) -> anyhow::Result<Option<Range>> {
    value
        .map(|t| {
            t.parse::<Range>().map_err(|e| {
                usage(
                    format!("{opt} {e}"),
                    "for example --warning 300 --critical 900 (alert above those values)",
                )
            })
        })
        .transpose()
}

/// A location option's store.
fn store(opt: &str, spec: &str) -> anyhow::Result<Store> {
    Store::parse(opt, spec).map(|(s, _)| s).map_err(|e| {
        usage(
            e,
            "give [CODEC=]DIR, an rsync target (rsync://host/module/path) or s3://BUCKET/PREFIX",
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use pitr_common::cli::Exit;
    use std::ffi::OsString;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let a = Args::from_args(&["pitr-monitor"], args).map_err(|e| anyhow::anyhow!(e.output))?;
        a.into_config()
    }

    fn err(args: &[&str]) -> String {
        format!("{:#}", parse(args).unwrap_err())
    }

    /// What `pitr-monitor ARGS` makes of its arguments, as its `main` does.
    fn parse_all(args: &[&str]) -> Result<(Args, Vec<String>), Exit> {
        pitr_common::cli::parse_from::<Args>(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn every_alias_names_an_option_of_ours() {
        assert_eq!(
            pitr_common::cli::alias_problems::<Args>(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn omnipitr_monitor_lines_run_as_written() {
        let d = tempfile::tempdir().unwrap();
        let sd = d.path().display().to_string();
        let (a, ignored) = parse_all(&[
            "-c",
            "Last_Archive_Age",
            "-l",
            "/x/^Y.log",
            "-l=/y.log",
            "-s",
            &sd,
            "-v",
            "-t",
            "/tmp",
            "-pp",
            "/usr/bin/psql",
        ])
        .unwrap();
        assert!(ignored.is_empty());
        assert_eq!(a.check.as_deref(), Some("Last_Archive_Age"));
        assert_eq!(a.log, ["/x/^Y.log", "/y.log"]);
        assert_eq!(a.state_dir, Some(PathBuf::from(&sd)));
        assert!(a.verbose);
        assert_eq!(a.temp_dir, Some(PathBuf::from("/tmp")));
        assert_eq!(a.psql_path.as_deref(), Some("/usr/bin/psql"));
        let (a, _) = parse_all(&[
            "-c",
            "archive-queue",
            "-h",
            "/run/pg",
            "-p",
            "5433",
            "-U",
            "me",
            "-d",
            "db",
            "--pp",
            "psql",
        ])
        .unwrap();
        assert_eq!(a.host.as_deref(), Some("/run/pg"));
        assert_eq!(a.port, Some(5433));
        assert_eq!(a.username.as_deref(), Some("me"));
        assert_eq!(a.database.as_deref(), Some("db"));
        assert_eq!(a.psql_path.as_deref(), Some("psql"));
        // A usage error is UNKNOWN, as every error of the monitor.
        assert_eq!(
            parse_all(&["-c", "errors", "-x"]).unwrap_err(),
            Exit::Usage {
                message: "Unrecognized argument: -x".into(),
                hint: "run pitr-monitor --help for usage".into(),
                status: UNKNOWN,
            }
        );
    }

    #[test]
    fn help_lists_version_and_the_omnipitr_spellings() {
        let Err(Exit::Print(help)) = parse_all(&["-?"]) else {
            panic!("-? printed no help")
        };
        assert!(help.starts_with("Usage: pitr-monitor --check"), "{help}");
        assert!(
            help.ends_with(
                "OmniPITR spellings:\n  \
                 OmniPITR's options are accepted as written, also in --config-file files:\n  \
                 -c                --check\n  \
                 -l                --log\n  \
                 -s                --state-dir\n  \
                 -v                --verbose\n  \
                 -d                --database\n  \
                 -h                --host\n  \
                 -p                --port\n  \
                 -U                --username\n  \
                 -t                --temp-dir\n  \
                 -pp               --psql-path\n  \
                 -?                --help\n"
            ),
            "{help}"
        );
        assert_eq!(
            pitr_common::cli::help_problems::<Args>(&["--help"]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn check_names_as_omnipitr_spells_them() {
        assert_eq!("Last_Archive_Age".parse(), Ok(Check::LastArchiveAge));
        assert_eq!("dump-state".parse(), Ok(Check::DumpState));
        assert_eq!("VERIFY".parse(), Ok(Check::Verify));
        assert_eq!(
            "last-archive".parse::<Check>(),
            Err("invalid value for --check: last-archive".to_string())
        );
    }

    #[test]
    fn log_checks_need_log_and_state_dir() {
        let d = tempfile::tempdir().unwrap();
        let sd = d.path().display().to_string();
        assert_eq!(
            err(&["-c", "errors", "-s", &sd]),
            "--log has not been provided (--check errors reads the logs)"
        );
        assert_eq!(
            err(&["-c", "errors", "-l", "/x/^Y.log"]),
            "--state-dir has not been provided (--check errors remembers what it read there)"
        );
        assert_eq!(
            err(&["-c", "errors", "-l", "/x", "-s", "/nonexistent/state"]),
            "given --state-dir (/nonexistent/state) does not exist"
        );
        let c = parse(&["-c", "Errors", "-l", "/x", "-s", &sd, "--from", "60"]).unwrap();
        assert_eq!(c.check, Check::Errors);
        assert!(c.from.is_some());
        assert_eq!(
            err(&["-c", "info", "--backup-dir", "/b", "--from", "60"]),
            "--from is an option of --check errors"
        );
        // last-backup-age reads the backup sets when it has them.
        assert!(parse(&["-c", "last-backup-age", "--backup-dir", "/b"]).is_ok());
        assert!(parse(&["-c", "last-backup-age"]).is_err());
    }

    #[test]
    fn thresholds_outputs_and_locations() {
        let c = parse(&[
            "--check",
            "verify",
            "--archive",
            "zstd=rsync://h/wal/",
            "-w",
            "5",
            "--critical",
            "10:",
            "--output",
            "json",
        ])
        .unwrap();
        assert_eq!(
            c.archive.as_ref().map(ToString::to_string).as_deref(),
            Some("rsync://h/wal")
        );
        assert!(c.archive.as_ref().is_some_and(Store::is_remote));
        assert_eq!(c.warning.unwrap().as_str(), "5");
        assert_eq!(c.output, Output::Json);
        assert_eq!(
            err(&["--check", "verify"]),
            "--check verify needs --archive"
        );
        assert_eq!(
            err(&["--check", "info", "--archive", "/a", "--warning", "x"]),
            "--warning \"x\" is not a threshold (N, N:, ~:N, N:M or @N:M, N a number)"
        );
        assert_eq!(
            err(&["--check", "info", "--archive", "/a", "--output", "xml"]),
            "\"xml\" is not an output format (plugin, json or omnipitr)"
        );
        assert_eq!(err(&[]), "--check has not been provided");
    }
}

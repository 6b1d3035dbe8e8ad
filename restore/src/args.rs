//! Command lines of `pitr-restore`'s two forms, and their validation into a [`Mode`].
//!
//! `restore_command` ([`WalArgs`]) and `--from-backup` ([`BackupArgs`]) are two argument types:
//! the presence of `--from-backup` picks one before parsing, and decides the usage status (127
//! as restore_command, which must never read as "not found"; 3 for `--from-backup`, an ordinary
//! command).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use argh::FromArgs;
use pitr_common::cli::{Alias, Aliases, CommonOptions, HasCommon, Parse, Tool};
use pitr_common::exit::{self, Failure};
use pitr_common::location::{Location, Opt};
use pitr_common::rsync::Rsync;
use pitr_common::wal::{Lsn, Timeline, WalFileName};
use pitr_common::{log_hint, log_warning, pg};

use crate::command::CommandOptions;
use crate::recovery::Target;

pitr_common::tool_args! {
    /// The restore_command form of `pitr-restore`; its `description`, `usage`, examples, notes
    /// and exit statuses are its `--help` and, merged with the `--from-backup` form's, its man
    /// page.
    #[derive(FromArgs, Debug)]
    #[argh(
        description = "Restores one WAL file from the archive as PostgreSQL's restore_command, or a\n\
                base backup into a new data directory with --from-backup (see pitr-restore\n\
                --from-backup DIR --help).\n\
                \n\
                As restore_command it waits for the file asked for, decompresses it fully and,\n\
                for a segment, checks every page header and record (CRC) against the name, its\n\
                size and this cluster's system identifier before renaming it into %p:\n\
                PostgreSQL never gets a partial, corrupt or foreign file. The next segments are\n\
                decoded and checked ahead (--prefetch), so most calls are a rename.\n\
                \n\
                A warm spare (recovery.signal) waits for each segment until --finish-trigger\n\
                appears. A standby (standby.signal, --streaming-replication) gets status 1 for a\n\
                missing file at once, and streams or retries.",
        usage = "--source <[CODEC=]DIR>... [--data-dir <DIR>]\n\
                \x20          [--poll-interval <SECONDS>] [--finish-trigger <FILE>]\n\
                \x20          [--recovery-delay <SECONDS>] [--streaming-replication] [--no-wait]\n\
                \x20          [--remove-unneeded [--oldest-needed <WALFILE>]\n\
                \x20          [--remove-at-a-time <N>] [--remove-before]]\n\
                \x20          [--removal-pause-trigger <FILE>]\n\
                \x20          [--error-pgcontroldata break|ignore|hang]\n\
                \x20          [--pgcontroldata-path <PROGRAM>] [--prefetch <N>] [--temp-dir <DIR>]\n\
                \x20          [--s3-endpoint <URL>] [--s3-region <NAME>] [--s3-addressing <STYLE>]\n\
                \x20          [--s3-key-file <FILE>] [--s3-conditional-writes] [--s3-retry-seconds <N>]\n\
                \x20          [--s3-ca-file <FILE>]\n\
                \x20          [--log <FILE>] [--verbose] [--pid-file <FILE>]\n\
                \x20          [--config-file <FILE>]... %f %p\n\
                \x20      {command_name} --help | --version",
        example = "A warm spare, in postgresql.conf with recovery_prefetch = off and\n\
                recovery.signal:\n\
                \x20 restore_command = '/opt/pitr/bin/pitr-restore --source zstd=/var/lib/pgsql/wal_archive --finish-trigger /var/lib/pgsql/finish.trigger %f %p'",
        example = "A standby that streams from the primary (standby.signal):\n\
                \x20 restore_command = '/opt/pitr/bin/pitr-restore --streaming-replication --source zstd=/var/lib/pgsql/wal_archive %f %p'",
        note = "--config-file FILE (also spelled --config or --cfg) reads options from FILE,\n\
                one per line (\"--source /var/lib/pgsql/wal_archive\"), # starting a comment, as\n\
                if they were given where --config-file stands. PostgreSQL expands %f, %p and\n\
                %r only in restore_command itself.\n\
                \n\
                A damaged or foreign archived file is never handed over. It is logged as an\n\
                ERROR and checked again while it changes (a copy still being written); once\n\
                it has stayed the same for 10 s, the status is 126: PostgreSQL stops instead\n\
                of ending recovery, and goes on once the file is repaired and the server\n\
                started again. With --streaming-replication it is status 1, unless the data\n\
                directory has recovery.signal and no standby.signal (there 1 would end\n\
                recovery: 126 as above, with a WARNING). SIGUSR1 to a\n\
                waiting pitr-restore finishes recovery at once, as a finish trigger holding\n\
                NOW does.",
        note = "\n\
                Files:\n\
                /etc/pitr/restore.conf\n\
                \x20   options for --config-file (installed by the RPM, kept on upgrades)\n\
                /opt/pitr/share/pitr/examples\n\
                \x20   postgresql-warm-standby.conf, postgresql-streaming-standby.conf\n\
                DATADIR/pg_wal/.pitr-prefetch\n\
                \x20   segments decoded and checked ahead (--prefetch)",
        error_code(0, "restored"),
        error_code(
            1,
            "not available, which ends archive recovery: a missing .history file, a\n\
                \x20   missing file with --streaming-replication, a finish requested, or the server\n\
                \x20   gone; with --streaming-replication also an unreadable archive (logged)"
        ),
        error_code(
            126,
            "an error that must not end recovery (a source or pg_control unreadable,\n\
                \x20     --error-pgcontroldata break): PostgreSQL stops instead of promoting"
        ),
        error_code(127, "a usage error: PostgreSQL stops instead of promoting")
    )]
    pub struct WalArgs {
        /// archive to read from, [CODEC=]DIR or [CODEC=]s3://BUCKET/PREFIX (the codec says
        /// which stored form to look for first; every form is found); repeatable, searched in
        /// order
        #[argh(option)]
        pub source: Vec<String>,

        /// data directory of the cluster; %p is relative to it (default: the current
        /// directory, which is the data directory when PostgreSQL runs restore_command, or the
        /// data directory %p lies in when %p is absolute)
        #[argh(option)]
        pub data_dir: Option<PathBuf>,

        /// seconds between looks at the archive while waiting (default 1; decimals allowed)
        #[argh(option)]
        pub poll_interval: Option<f64>,

        /// when this file exists, end recovery: replay what is in the archive, then exit 1 at
        /// the first missing segment; if it contains NOW, exit 1 at once
        #[argh(option)]
        pub finish_trigger: Option<PathBuf>,

        /// hand a segment over only once its archived file is this many seconds old (the
        /// archive keeps the WAL file's mtime); ignored while finishing
        #[argh(option)]
        pub recovery_delay: Option<u64>,

        /// standby mode (standby.signal): a missing file exits 1 at once, PostgreSQL retries or
        /// streams from primary_conninfo
        #[argh(switch)]
        pub streaming_replication: bool,

        /// a point-in-time restore: a missing segment is the end of the archive at once (exit
        /// 1), so that PostgreSQL stops with "recovery ended before configured recovery target
        /// was reached" instead of waiting, open read-only, past the target
        #[argh(switch)]
        pub no_wait: bool,

        /// while waiting, remove archived segments older than the oldest one still needed
        #[argh(switch)]
        pub remove_unneeded: bool,

        /// with --remove-unneeded: the oldest WAL file still needed (PostgreSQL's %r); default:
        /// pg_control's REDO WAL file
        #[argh(option)]
        pub oldest_needed: Option<OldestNeeded>,

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
        pub error_pgcontroldata: Option<OnControlError>,

        /// pg_controldata program, used only for a pg_control layout pitr cannot read natively
        #[argh(option)]
        pub pgcontroldata_path: Option<PathBuf>,

        /// decompress and verify this many following segments in the background, into
        /// pg_wal/.pitr-prefetch, so that handing them over is a rename (default 8; 0 disables)
        #[argh(option)]
        pub prefetch: Option<u32>,

        /// internal: run as the background prefetch worker
        #[argh(switch, hidden_help)]
        pub prefetch_worker: bool,

        /// the WAL file wanted and where to put it: PostgreSQL's %f and %p
        #[argh(positional)]
        pub files: Vec<String>,
    }
}

pitr_common::tool_args! {
    /// The `--from-backup` form of `pitr-restore`: its `--help` (`pitr-restore --from-backup
    /// DIR --help`), merged into the man page.
    #[derive(FromArgs, Debug)]
    #[argh(
        description = "--from-backup verifies a backup set's digests, extracts data and WAL into the\n\
                empty --target-data-dir, and writes the recovery settings there: restore_command\n\
                (this program with --data-dir, --source and the trigger, delay and removal\n\
                options given), the target, and recovery.signal or standby.signal. Then start\n\
                the server with pg_ctl.",
        usage = "--from-backup <[CODEC=]DIR> --target-data-dir <NEW>\n\
                \x20          --source <[CODEC=]DIR>... [--backup <NAME>|latest] [--standby |\n\
                \x20          --target-time <TIME> | --target-lsn <LSN> | --target-xid <XID> |\n\
                \x20          --target-name <NAME> | --target-immediate]\n\
                \x20          [--target-action pause|promote|shutdown]\n\
                \x20          [--target-timeline latest|current|<N>] [--postgresql-conf <FILE>]\n\
                \x20          [--tablespace-mapping <OLD=NEW>]... [--rsync-path <PROGRAM>]\n\
                \x20          [--finish-trigger <FILE>] [--recovery-delay <SECONDS>]\n\
                \x20          [--remove-unneeded] [--removal-pause-trigger <FILE>]\n\
                \x20          [--poll-interval <SECONDS>] [--prefetch <N>]\n\
                \x20          [--streaming-replication] [--temp-dir <DIR>] [--log <FILE>]\n\
                \x20          [--s3-endpoint <URL>] [--s3-region <NAME>] [--s3-addressing <STYLE>]\n\
                \x20          [--s3-key-file <FILE>] [--s3-conditional-writes] [--s3-retry-seconds <N>]\n\
                \x20          [--s3-ca-file <FILE>]\n\
                \x20          [--verbose] [--pid-file <FILE>] [--config-file <FILE>]...",
        example = "A new warm spare from the latest backup set:\n\
                \x20 pitr-restore --from-backup zstd=/var/lib/pgsql/backups --target-data-dir /var/lib/pgsql/15/data --source zstd=/var/lib/pgsql/wal_archive --finish-trigger /var/lib/pgsql/finish.trigger",
        example = "A copy of the cluster as it was at a restore point, next to the running one:\n\
                \x20 pitr-restore --from-backup zstd=/var/lib/pgsql/backups --target-data-dir /var/lib/pgsql/pitr-scratch --source zstd=/var/lib/pgsql/wal_archive --target-name before-drop",
        note = "\n\
                Files:\n\
                NEW/postgresql.auto.conf\n\
                \x20   where --from-backup writes restore_command and the target",
        error_code(0, "with --from-backup: done"),
        error_code(2, "with --from-backup: an error"),
        error_code(3, "with --from-backup: a usage error")
    )]
    pub struct BackupArgs {
        /// the directory holding the backup sets (made by pitr-backup), [CODEC=]DIR: a local
        /// directory, an rsync target (rsync://host[:port]/module/path, host::module/path,
        /// [user@]host:/path) or s3://BUCKET/PREFIX, whose set is fetched next to
        /// --target-data-dir first
        #[argh(option)]
        pub from_backup: String,

        /// the new data directory (must not exist, or be empty)
        #[argh(option)]
        pub target_data_dir: Option<PathBuf>,

        /// the WAL archive the restored server recovers from, [CODEC=]DIR or
        /// [CODEC=]s3://BUCKET/PREFIX; repeatable
        #[argh(option)]
        pub source: Vec<String>,

        /// which set, by the name of any of its files, or latest (default: the latest, or with
        /// --target-time the latest that ended before it)
        #[argh(option)]
        pub backup: Option<String>,

        /// start as a standby (standby.signal, --streaming-replication) instead of archive
        /// recovery (recovery.signal)
        #[argh(switch)]
        pub standby: bool,

        /// recover up to this time, YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM]] (without an offset:
        /// this machine's local time)
        #[argh(option)]
        pub target_time: Option<String>,

        /// recover up to this WAL location (X/Y)
        #[argh(option)]
        pub target_lsn: Option<Lsn>,

        /// recover up to this transaction id
        #[argh(option)]
        pub target_xid: Option<u64>,

        /// recover up to this restore point (pg_create_restore_point)
        #[argh(option)]
        pub target_name: Option<String>,

        /// stop as soon as the backup is consistent
        #[argh(switch)]
        pub target_immediate: bool,

        /// with a target: pause (default), promote or shutdown at the target
        #[argh(option)]
        pub target_action: Option<TargetAction>,

        /// latest, current or a timeline number to recover along
        #[argh(option)]
        pub target_timeline: Option<TargetTimeline>,

        /// use this postgresql.conf instead of the backed-up one
        #[argh(option)]
        pub postgresql_conf: Option<PathBuf>,

        /// put the tablespace that was at OLD into NEW instead, OLD=NEW (as pg_basebackup -T);
        /// repeatable
        #[argh(option)]
        pub tablespace_mapping: Vec<String>,

        /// for an rsync --from-backup: the rsync program (default: rsync from PATH)
        #[argh(option)]
        pub rsync_path: Option<PathBuf>,

        /// for the restore_command: the finish trigger (see pitr-restore --help)
        #[argh(option)]
        pub finish_trigger: Option<PathBuf>,

        /// for the restore_command: the recovery delay in seconds
        #[argh(option)]
        pub recovery_delay: Option<u64>,

        /// for the restore_command: remove archived segments no longer needed while waiting
        #[argh(switch)]
        pub remove_unneeded: bool,

        /// for the restore_command: the removal pause trigger
        #[argh(option)]
        pub removal_pause_trigger: Option<PathBuf>,

        /// for the restore_command: seconds between looks at the archive
        #[argh(option)]
        pub poll_interval: Option<f64>,

        /// for the restore_command: how many segments to prefetch
        #[argh(option)]
        pub prefetch: Option<u32>,

        /// for the restore_command: standby mode (implied by --standby)
        #[argh(switch)]
        pub streaming_replication: bool,
    }
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

impl FromStr for OnControlError {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "break" => Ok(OnControlError::Break),
            "ignore" => Ok(OnControlError::Ignore),
            "hang" => Ok(OnControlError::Hang),
            _ => Err(format!("\"{s}\" is not break, ignore or hang")),
        }
    }
}

/// `recovery_target_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetAction {
    /// Pause at the target.
    Pause,
    /// Promote at the target.
    Promote,
    /// Shut down at the target.
    Shutdown,
}

impl FromStr for TargetAction {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pause" => Ok(TargetAction::Pause),
            "promote" => Ok(TargetAction::Promote),
            "shutdown" => Ok(TargetAction::Shutdown),
            _ => Err(format!("\"{s}\" is not pause, promote or shutdown")),
        }
    }
}

impl TargetAction {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetAction::Pause => "pause",
            TargetAction::Promote => "promote",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

/// `--oldest-needed`: PostgreSQL's `%r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldestNeeded {
    /// PostgreSQL allows no cleanup in this call (`%r` is
    /// [`pitr_common::wal::NO_RESTART_POINT`]: a `.history` file, or a segment asked for before
    /// redo starts): nothing is removed.
    Nothing,
    /// Archived files older than this one may go.
    Wal(WalFileName),
}

impl FromStr for OldestNeeded {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == pitr_common::wal::NO_RESTART_POINT {
            return Ok(OldestNeeded::Nothing);
        }
        WalFileName::parse(s)
            .map(OldestNeeded::Wal)
            .map_err(|e| e.to_string())
    }
}

/// `recovery_target_timeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetTimeline {
    /// The newest timeline in the archive.
    Latest,
    /// The backup's own timeline.
    Current,
    /// This timeline.
    Id(Timeline),
}

impl FromStr for TargetTimeline {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "latest" => Ok(TargetTimeline::Latest),
            "current" => Ok(TargetTimeline::Current),
            n => n
                .parse()
                .map(TargetTimeline::Id)
                .map_err(|_| format!("\"{n}\" is not latest, current or a timeline number")),
        }
    }
}

impl TargetTimeline {
    /// The setting's value.
    pub fn value(self) -> String {
        match self {
            TargetTimeline::Latest => "latest".into(),
            TargetTimeline::Current => "current".into(),
            TargetTimeline::Id(t) => t.to_string(),
        }
    }
}

/// Either form's arguments.
#[derive(Debug)]
pub enum Args {
    /// restore_command (or the prefetch worker).
    Wal(WalArgs),
    /// `--from-backup`.
    Backup(BackupArgs),
}

/// True when the arguments are the `--from-backup` form (also spelled `-from-backup`, as any
/// long option may be).
fn is_from_backup<S: AsRef<str>>(args: &[S]) -> bool {
    args.iter()
        .map(AsRef::as_ref)
        .take_while(|a| *a != "--")
        .map(|a| a.split_once('=').map_or(a, |(name, _)| name))
        .any(|a| a == "--from-backup" || a == "-from-backup")
}

/// Options of the `--from-backup` form only, for a clear message when given without it.
const BACKUP_ONLY: &[&str] = &[
    "--target-data-dir",
    "--backup",
    "--standby",
    "--target-time",
    "--target-lsn",
    "--target-xid",
    "--target-name",
    "--target-immediate",
    "--target-action",
    "--target-timeline",
    "--postgresql-conf",
    "--tablespace-mapping",
    "--rsync-path",
];

/// OmniPITR's `-r [%r]`: `-r %r %f %p` gives the oldest needed file, `-r %f %p` does not.
const REMOVE_UNNEEDED: Alias = Alias::SwitchOrWal {
    switch: "--remove-unneeded",
    value: "--oldest-needed",
};

/// OmniPITR's pre-removal hook (`-h`, `--pre-removal-processing`), which pitr does not run.
const PRE_REMOVAL: Alias = Alias::Refused(
    "OmniPITR's -h (--pre-removal-processing) ran a command before each removal; pitr-restore runs none: to keep a copy of each WAL file, give pitr-archive another destination (--dst-local, --dst-remote or --dst-pipe), or leave out --remove-unneeded (-r) so that nothing is removed; for help, run pitr-restore --help",
);

/// The form the `--from-backup` table is for, as its refusals name it.
const BACKUP_FORM: &str = "pitr-restore --from-backup";

/// OmniPITR's `-D`: the data directory of the restore_command form.
const DATA_DIR_ELSEWHERE: Alias = Alias::NotInForm {
    form: BACKUP_FORM,
    hint: "-D (--data-dir) is the restore_command's data directory; the one --from-backup creates is --target-data-dir NEW",
};

/// Removal settings the restore_command that `--from-backup` writes does not carry.
const NOT_HANDED_ON: Alias = Alias::NotInForm {
    form: BACKUP_FORM,
    hint: "--from-backup does not pass it on to the restore_command it writes: leave it out, and add it to restore_command in NEW/postgresql.auto.conf afterwards if needed",
};

/// omnipitr-restore's spellings in the restore_command form (README, "Migrating from
/// OmniPITR").
const WAL_ALIASES: Aliases = pitr_common::aliases_with_compressor_paths![
    ("-D", Alias::Option("--data-dir")),
    ("-s", Alias::Option("--source")),
    ("-w", Alias::Option("--recovery-delay")),
    ("-f", Alias::Option("--finish-trigger")),
    ("-r", REMOVE_UNNEEDED),
    ("--remove-unneeded", REMOVE_UNNEEDED),
    ("-rb", Alias::Switch("--remove-before")),
    ("-rt", Alias::Option("--remove-at-a-time")),
    ("-p", Alias::Option("--removal-pause-trigger")),
    ("-sr", Alias::Switch("--streaming-replication")),
    ("-ep", Alias::Option("--error-pgcontroldata")),
    ("-pp", Alias::Option("--pgcontroldata-path")),
    ("-t", Alias::Option("--temp-dir")),
    ("-l", Alias::Option("--log")),
    ("-v", Alias::Switch("--verbose")),
    ("-?", Alias::Switch("--help")),
    ("-h", PRE_REMOVAL),
    ("--pre-removal-processing", PRE_REMOVAL),
    // The compressor-path options follow (pitr_common::aliases_with_compressor_paths).
];

/// The same spellings in the `--from-backup` form, translated only into its own options: the
/// restore_command's settings it hands on are accepted, the others refused with a HINT.
const BACKUP_ALIASES: Aliases = pitr_common::aliases_with_compressor_paths![
    ("-s", Alias::Option("--source")),
    ("-w", Alias::Option("--recovery-delay")),
    ("-f", Alias::Option("--finish-trigger")),
    ("-r", Alias::Switch("--remove-unneeded")),
    ("-p", Alias::Option("--removal-pause-trigger")),
    ("-sr", Alias::Switch("--streaming-replication")),
    ("-t", Alias::Option("--temp-dir")),
    ("-l", Alias::Option("--log")),
    ("-v", Alias::Switch("--verbose")),
    ("-?", Alias::Switch("--help")),
    ("-D", DATA_DIR_ELSEWHERE),
    ("--data-dir", DATA_DIR_ELSEWHERE),
    ("-rb", NOT_HANDED_ON),
    ("--remove-before", NOT_HANDED_ON),
    ("-rt", NOT_HANDED_ON),
    ("--remove-at-a-time", NOT_HANDED_ON),
    ("-ep", NOT_HANDED_ON),
    ("--error-pgcontroldata", NOT_HANDED_ON),
    ("-pp", NOT_HANDED_ON),
    ("--pgcontroldata-path", NOT_HANDED_ON),
    ("-h", PRE_REMOVAL),
    ("--pre-removal-processing", PRE_REMOVAL),
    // The compressor-path options follow (pitr_common::aliases_with_compressor_paths).
];

impl Parse for Args {
    fn parse(tool: &str, args: &[&str]) -> Result<Self, argh::EarlyExit> {
        if is_from_backup(args) {
            return BackupArgs::parse(tool, args).map(Args::Backup);
        }
        WalArgs::parse(tool, args).map(Args::Wal).map_err(|e| {
            let backup_only = args.iter().find(|a| BACKUP_ONLY.contains(a));
            match (e.status, backup_only) {
                (Err(()), Some(opt)) => argh::EarlyExit {
                    output: format!(
                        "{opt} needs --from-backup (restoring a backup: pitr-restore --from-backup DIR --target-data-dir NEW --source ARCHIVE)"
                    ),
                    status: Err(()),
                },
                _ => e,
            }
        })
    }
}

impl HasCommon for Args {
    fn common(&self) -> CommonOptions {
        match self {
            Args::Wal(a) => a.common(),
            Args::Backup(a) => a.common(),
        }
    }
}

impl Tool for Args {
    const NAME: &'static str = "pitr-restore";

    fn reuses_buffers(&self) -> bool {
        matches!(self, Args::Wal(a) if a.prefetch_worker)
    }

    /// The restore_command form's table; [`Tool::aliases`] picks the form's.
    const ALIASES: Aliases = WAL_ALIASES;

    /// Each form's table: an alias of the restore_command form that `--from-backup` lacks is
    /// refused there with a HINT, never handed to an option the form does not have.
    fn aliases(args: &[String]) -> Aliases {
        if is_from_backup(args) {
            BACKUP_ALIASES
        } else {
            WAL_ALIASES
        }
    }

    /// Both forms' options: an option of either is "meant".
    fn long_options() -> Vec<String> {
        let mut longs = Vec::new();
        for help in [
            WalArgs::parse(Self::NAME, &["--help"]).map(Args::Wal),
            BackupArgs::parse(Self::NAME, &["--from-backup", "x", "--help"]).map(Args::Backup),
        ] {
            let Err(help) = help else { continue };
            for long in pitr_common::cli::option_names(&help.output) {
                if !longs.contains(&long) {
                    longs.push(long);
                }
            }
        }
        longs
    }

    fn usage_status(args: &[String]) -> u8 {
        if is_from_backup(args) {
            exit::USAGE
        } else {
            exit::RESTORE_USAGE
        }
    }

    /// As restore_command, an error must stop recovery (126); restoring a backup is an
    /// ordinary command (2).
    fn error_status(&self) -> u8 {
        match self {
            Args::Wal(_) => exit::RESTORE_FATAL,
            Args::Backup(_) => exit::ERROR,
        }
    }

    /// As restore_command, a busy pid file must stop recovery too (126); `--from-backup` is an
    /// ordinary command, busy like the others (4).
    fn busy_status(&self) -> u8 {
        match self {
            Args::Wal(_) => exit::RESTORE_FATAL,
            Args::Backup(_) => exit::BUSY,
        }
    }

    /// SIGUSR1 ("finish now") is recorded from the first instruction: its default action kills
    /// the process, which PostgreSQL takes for a fatal restore_command.
    fn at_start() {
        pitr_common::signal::catch_usr1();
    }

    fn run(self) -> anyhow::Result<ExitCode> {
        match self.into_mode()? {
            Mode::Restore(c) => crate::fetch::run(&c),
            Mode::Worker(c) => crate::prefetch::run_worker(&c),
            Mode::FromBackup(c) => crate::frombackup::run(&c),
        }
    }
}

/// What this run does.
#[derive(Debug)]
pub enum Mode {
    /// restore_command: restore `%f` into `%p`.
    Restore(Config),
    /// The background prefetch worker.
    Worker(Config),
    /// `--from-backup`.
    FromBackup(BackupConfig),
}

/// Settings of `--from-backup`.
#[derive(Debug)]
pub struct BackupConfig {
    /// The backup directory (local, an rsync target or an object store).
    pub from: Location,
    /// The rsync program, for an rsync `from`.
    pub rsync: Rsync,
    /// The new data directory.
    pub target_dir: PathBuf,
    /// Which set (`None` = latest suitable).
    pub backup: Option<String>,
    /// The WAL archive(s) for restore_command.
    pub sources: Vec<Location>,
    /// Where recovery stops.
    pub target: Target,
    /// recovery_target_action.
    pub action: Option<TargetAction>,
    /// recovery_target_timeline.
    pub timeline: Option<TargetTimeline>,
    /// Standby mode.
    pub standby: bool,
    /// A postgresql.conf to use.
    pub postgresql_conf: Option<PathBuf>,
    /// Tablespace relocations, old location to new.
    pub tablespace_mapping: Vec<(PathBuf, PathBuf)>,
    /// What the restore_command runs with.
    pub command: CommandOptions,
    /// The object-store settings, when `from` is on one.
    pub s3: Option<pitr_common::objstore::Settings>,
}

/// Validated settings of the restore_command form.
#[derive(Debug)]
pub struct Config {
    /// %f.
    pub wanted: WalFileName,
    /// %p resolved against the data directory (`None` for the prefetch worker).
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
    /// A point-in-time restore: a missing segment ends the archive at once (`--no-wait`).
    pub no_wait: bool,
    /// Removal enabled.
    pub remove_unneeded: bool,
    /// Oldest needed, if given.
    pub oldest_needed: Option<OldestNeeded>,
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
    /// What the prefetch worker runs with.
    pub handed_on: CommandOptions,
    /// How to reach object stores, when a source is one.
    pub s3: Option<pitr_common::objstore::Settings>,
}

/// The object-store settings (`AWS_*` variables, `--s3-*` options), read only when a source is
/// an object store. An unusable key file is a usage error (127: recovery stops).
fn s3_settings(
    options: &pitr_common::objstore::S3Options,
    sources: &[Location],
) -> anyhow::Result<Option<pitr_common::objstore::Settings>> {
    if !sources
        .iter()
        .any(|s| matches!(s.target, pitr_common::location::Target::S3(_)))
    {
        return Ok(None);
    }
    options
        .settings(|name| std::env::var(name).ok())
        .map(Some)
        .map_err(|e| usage(e.to_string(), pitr_common::objstore::SETTINGS_HINT))
}

/// A usage error of the restore_command form: status 127, so that PostgreSQL stops instead of
/// promoting.
pub fn usage(msg: impl Into<String>, hint: &str) -> anyhow::Error {
    Failure::new(msg)
        .hint(hint)
        .status(exit::RESTORE_USAGE)
        .into()
}

/// A usage error of the `--from-backup` form.
fn backup_usage(msg: impl Into<String>, hint: &str) -> anyhow::Error {
    Failure::new(msg).hint(hint).status(exit::USAGE).into()
}

const EXAMPLE: &str = "restore_command = 'pitr-restore --source zstd=/srv/wal %f %p'";
const FORM2: &str = "pitr-restore --from-backup /srv/backups --target-data-dir /var/lib/postgresql/15/new --source zstd=/srv/wal";

impl Args {
    /// Validates the arguments of either form.
    pub fn into_mode(self) -> anyhow::Result<Mode> {
        match self {
            Args::Wal(a) => {
                let worker = a.prefetch_worker;
                let c = a.into_config()?;
                Ok(if worker {
                    Mode::Worker(c)
                } else {
                    Mode::Restore(c)
                })
            }
            Args::Backup(a) => a.into_config().map(Mode::FromBackup),
        }
    }
}

fn parse_sources(
    specs: &[String],
    bad: fn(String, &str) -> anyhow::Error,
) -> anyhow::Result<Vec<Location>> {
    specs
        .iter()
        .map(|s| Location::parse(Opt::Source, s).map_err(|e| bad(e.to_string(), e.opt().syntax())))
        .collect()
}

fn poll_interval(
    p: Option<f64>,
    bad: fn(String, &str) -> anyhow::Error,
) -> anyhow::Result<Duration> {
    match p {
        None => Ok(Duration::from_secs(1)),
        Some(s) if s > 0.0 && s <= 3600.0 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(bad(
            format!("--poll-interval {s} is out of range"),
            "give seconds between 0.01 and 3600",
        )),
    }
}

/// The data directory when none is given: the working directory, which is the data directory
/// when PostgreSQL runs restore_command; but an absolute `%p` inside a data directory's
/// `pg_wal` names its data directory (`pg_rewind --restore-target-wal` runs restore_command
/// from its own working directory with `%p` = `<target>/pg_wal/<name>`).
/// PostgreSQL runs restore_command in its data directory and gives `%p` relative to it. A
/// data directory copied or moved elsewhere (restored into a staging directory, then copied)
/// keeps the restore_command written for the first one, whose `--data-dir` then names another
/// directory: `%p` was written there, PostgreSQL did not find it, took the segment as missing
/// and a warm spare promoted at the end of its own pg_wal. When the working directory is itself
/// a data directory and not `given`, the call fails with 126 (recovery stops) instead. A call
/// by hand from elsewhere (not a data directory) keeps `--data-dir`.
fn check_runs_in(given: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(cwd) = std::env::current_dir() else {
        return Ok(());
    };
    let is_data_dir = cwd.join(pg::PG_VERSION).is_file() && cwd.join(pg::PG_CONTROL).is_file();
    let same = match (std::fs::metadata(&cwd), std::fs::metadata(given)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if !is_data_dir || same {
        return Ok(());
    }
    Err(Failure::new(format!(
        "restore_command runs in the data directory {} but its --data-dir is {}: %p would be written there",
        cwd.display(),
        given.display()
    ))
    .hint("a copied or moved data directory keeps the restore_command of the one it came from: set --data-dir in restore_command (postgresql.auto.conf) to this directory")
    .status(exit::RESTORE_FATAL)
    .into())
}

fn default_data_dir(p: Option<&String>) -> PathBuf {
    p.and_then(|p| pitr_common::pg::data_dir_of_wal_path(Path::new(p)))
        .unwrap_or_else(|| PathBuf::from("."))
}

impl WalArgs {
    /// Validates the arguments of the restore_command form (and of the prefetch worker).
    pub fn into_config(self) -> anyhow::Result<Config> {
        if self.source.is_empty() {
            return Err(usage(
                "no --source given",
                &format!("for example {EXAMPLE}"),
            ));
        }
        let sources = parse_sources(&self.source, usage)?;
        let (wanted, p) = match (self.files.as_slice(), self.prefetch_worker) {
            ([f, p], false) => (f, Some(p)),
            ([f], true) => (f, None),
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
        let wanted = WalFileName::parse(wanted).map_err(|e| {
            usage(
                e.to_string(),
                "the first argument is PostgreSQL's %f, a WAL file name",
            )
        })?;
        let data_dir = self.data_dir.clone().unwrap_or_else(|| default_data_dir(p));
        pitr_common::pg::check_owner(&data_dir, "pitr-restore", exit::RESTORE_USAGE)?;
        if let (Some(given), Some(p)) = (&self.data_dir, p) {
            if Path::new(p).is_relative() {
                check_runs_in(given)?;
            }
        }
        let target = p.map(|p| data_dir.join(p));
        if target.as_ref().is_some_and(|t| t.file_name().is_none()) {
            return Err(usage(
                format!("\"{}\" is not a file path", p.map_or("", |s| s.as_str())),
                &format!("the second argument is PostgreSQL's %p: {EXAMPLE}"),
            ));
        }
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
        let common = self.common();
        let handed_on = CommandOptions {
            data_dir: Some(data_dir.clone()),
            sources: sources.clone(),
            finish_trigger: self.finish_trigger.clone(),
            recovery_delay: self.recovery_delay,
            streaming: self.streaming_replication,
            no_wait: self.no_wait,
            remove_unneeded: false,
            removal_pause_trigger: None,
            poll_interval: None,
            prefetch: self.prefetch,
            pgcontroldata: self.pgcontroldata_path.clone(),
            log: common.log,
            verbose: common.verbose,
            s3: common.s3.clone(),
        };
        let s3 = s3_settings(&common.s3, &sources)?;
        Ok(Config {
            s3,
            wanted,
            target,
            poll: poll_interval(self.poll_interval, usage)?,
            data_dir,
            sources,
            finish_trigger: self.finish_trigger,
            recovery_delay: self.recovery_delay.map(Duration::from_secs),
            streaming: self.streaming_replication,
            no_wait: self.no_wait,
            remove_unneeded: self.remove_unneeded,
            oldest_needed: self.oldest_needed,
            remove_at_a_time,
            remove_before: self.remove_before,
            removal_pause_trigger: self.removal_pause_trigger,
            on_control_error: self.error_pgcontroldata.unwrap_or(OnControlError::Break),
            pgcontroldata: self.pgcontroldata_path,
            prefetch: self.prefetch.unwrap_or(8),
            handed_on,
        })
    }
}

impl BackupArgs {
    /// The one recovery target given, or [`Target::End`].
    fn recovery_target(&self) -> anyhow::Result<Target> {
        let mut targets = Vec::new();
        if let Some(t) = &self.target_time {
            let not_a_time = || {
                backup_usage(
                    format!("--target-time \"{t}\" is not a time"),
                    "write YYYY-MM-DD HH:MM:SS, optionally with .ffffff and an offset like +00 or +05:30",
                )
            };
            // A time without an offset is local time on the target's own date: the offset in
            // force then, not now (a target across a daylight saving change moved by an hour,
            // and recovery stopped an hour early or replayed past the mistake).
            let now = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
            let first = crate::recovery::parse_time(t, now).ok_or_else(not_a_time)?;
            let then = time::UtcOffset::local_offset_at(first).unwrap_or(now);
            let parsed = crate::recovery::parse_time(t, then).ok_or_else(not_a_time)?;
            targets.push(Target::Time(parsed));
        }
        targets.extend(self.target_lsn.map(Target::Lsn));
        targets.extend(self.target_xid.map(Target::Xid));
        targets.extend(self.target_name.clone().map(Target::Name));
        if self.target_immediate {
            targets.push(Target::Immediate);
        }
        if targets.len() > 1 {
            return Err(backup_usage(
                "more than one recovery target given",
                "give one of --target-time, --target-lsn, --target-xid, --target-name, --target-immediate",
            ));
        }
        Ok(targets.pop().unwrap_or(Target::End))
    }

    fn tablespace_mapping(&self) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
        self.tablespace_mapping
            .iter()
            .map(|m| match m.split_once('=') {
                Some((old, new))
                    if Path::new(old).is_absolute() && Path::new(new).is_absolute() =>
                {
                    Ok((PathBuf::from(old), PathBuf::from(new)))
                }
                _ => Err(backup_usage(
                    format!("invalid --tablespace-mapping \"{m}\""),
                    "write OLD=NEW with two absolute directories",
                )),
            })
            .collect()
    }

    /// Validates the arguments of the `--from-backup` form.
    pub fn into_config(self) -> anyhow::Result<BackupConfig> {
        let from = Location::parse(Opt::FromBackup, &self.from_backup)
            .map_err(|e| backup_usage(e.to_string(), e.opt().syntax()))?;
        let Some(target_data_dir) = self.target_data_dir.clone() else {
            return Err(backup_usage(
                "--from-backup needs --target-data-dir",
                &format!("for example {FORM2}"),
            ));
        };
        if self.source.is_empty() {
            return Err(backup_usage(
                "--from-backup needs --source, the WAL archive the restored server will recover from",
                &format!("for example {FORM2}"),
            ));
        }
        let sources = parse_sources(&self.source, backup_usage)?;
        let target = self.recovery_target()?;
        if self.target_action.is_some() && target == Target::End {
            return Err(backup_usage(
                "--target-action without a recovery target",
                "give a target (--target-time, ...) or leave --target-action out",
            ));
        }
        if self.standby && target != Target::End {
            return Err(backup_usage(
                "--standby with a recovery target",
                "a standby follows the archive; for a point-in-time restore leave --standby out",
            ));
        }
        poll_interval(self.poll_interval, backup_usage)?;
        let tablespace_mapping = self.tablespace_mapping()?;
        let common = self.common();
        // Every path absolute, so that the restore_command works where PostgreSQL runs it (the
        // data directory), not only where it was typed: a relative finish trigger would never
        // be seen there, a relative pause trigger never respected, a relative source never
        // found.
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut s3 = common.s3.clone();
        s3.key_file = s3.key_file.as_deref().map(absolute);
        s3.ca_file = s3.ca_file.as_deref().map(absolute);
        let command = CommandOptions {
            data_dir: Some(absolute(&target_data_dir)),
            sources: sources
                .iter()
                .map(|l| match l.as_dir() {
                    Some(d) => Location::dir(l.codec, absolute(d)),
                    None => l.clone(),
                })
                .collect(),
            finish_trigger: self.finish_trigger.as_deref().map(absolute),
            recovery_delay: self.recovery_delay,
            streaming: self.standby || self.streaming_replication,
            // A point-in-time copy must stop where the archive ends: waiting there, open
            // read-only, it shows data past its target as if at it (a target the chosen set
            // cannot reach: a restore point made before it).
            no_wait: target != Target::End,
            remove_unneeded: self.remove_unneeded,
            removal_pause_trigger: self.removal_pause_trigger.as_deref().map(absolute),
            poll_interval: self.poll_interval,
            prefetch: self.prefetch,
            pgcontroldata: None,
            log: common.log.clone().map(|l| match l.as_str() {
                "-" => l,
                _ => absolute(Path::new(&l)).to_string_lossy().into_owned(),
            }),
            verbose: false,
            s3,
        };
        let s3 = match from.target {
            pitr_common::location::Target::S3(_) => Some(
                common
                    .s3
                    .settings(|name| std::env::var(name).ok())
                    .map_err(|e| {
                        backup_usage(e.to_string(), pitr_common::objstore::SETTINGS_HINT)
                    })?,
            ),
            _ => None,
        };
        Ok(BackupConfig {
            s3,
            from,
            rsync: Rsync::new(self.rsync_path.unwrap_or_else(|| PathBuf::from("rsync"))),
            target_dir: target_data_dir,
            backup: self.backup.filter(|b| b != "latest"),
            sources,
            target,
            action: self.target_action,
            timeline: self.target_timeline,
            standby: self.standby,
            postgresql_conf: self.postgresql_conf,
            tablespace_mapping,
            command,
        })
    }
}

impl Config {
    /// Whether an archive in doubt (unreadable, damaged or foreign files) may be answered with
    /// 1: only in standby mode (`--streaming-replication`), and never where PostgreSQL reads 1
    /// as the end of archive recovery. `recovery.signal` without `standby.signal` in the data
    /// directory is a warm spare or a point-in-time restore, where 1 ends recovery and
    /// promotes at the file in doubt, whatever the options say (OmniPITR's `-sr` carried over
    /// into a warm spare's restore_command, `--from-backup --streaming-replication` without
    /// `--standby`): there the answer is 126, and a WARNING says the option was overruled.
    pub fn doubt_is_not_found(&self) -> bool {
        if !self.streaming {
            return false;
        }
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let has = |f: &str| self.data_dir.join(f).exists();
        if has(pg::RECOVERY_SIGNAL) && !has(pg::STANDBY_SIGNAL) {
            if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                return false;
            }
            log_warning!(
                "--streaming-replication is overruled for an archive in doubt: {} has {} and no {}, so status 1 would end recovery",
                self.data_dir.display(),
                pg::RECOVERY_SIGNAL,
                pg::STANDBY_SIGNAL
            );
            log_hint!(
                "give --streaming-replication only to a standby (standby.signal); a warm spare waits for the archive"
            );
            return false;
        }
        true
    }
}

/// Checks that each source is a readable directory. A missing or unreadable source must not be
/// read as "end of archive": as a warm spare that stops recovery (126); in standby mode, where
/// PostgreSQL never promotes on a failed restore_command, it is an ERROR and exit 1, and the
/// standby keeps streaming (`streaming`: [`Config::doubt_is_not_found`]).
pub fn check_sources(sources: &[Location], streaming: bool) -> anyhow::Result<()> {
    for s in sources {
        let Some(dir) = s.as_dir() else { continue };
        let problem = match std::fs::read_dir(dir) {
            Ok(_) => continue,
            Err(e) => e,
        };
        let (status, hint) = if streaming {
            (exit::NOT_FOUND, "mount or create the archive directory and make it readable by the user PostgreSQL runs as; the standby keeps streaming and retries")
        } else {
            (exit::RESTORE_FATAL, "mount or create the archive directory and make it readable by the user PostgreSQL runs as; recovery stops rather than ending early")
        };
        return Err(
            Failure::new(format!("cannot read source {}: {problem}", dir.display()))
                .hint(hint)
                .status(status)
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use pitr_common::cli::{table_problems, Exit};
    use std::ffi::OsString;

    fn parse(args: &[&str]) -> Result<Args, argh::EarlyExit> {
        Args::parse("pitr-restore", args)
    }

    #[test]
    fn the_form_decides_the_type_and_the_usage_status() {
        assert!(matches!(
            parse(&[
                "--source",
                "/a",
                "000000010000000000000001",
                "pg_wal/RECOVERYXLOG"
            ]),
            Ok(Args::Wal(_))
        ));
        assert!(matches!(
            parse(&[
                "--from-backup",
                "/b",
                "--target-data-dir",
                "/n",
                "--source",
                "/a"
            ]),
            Ok(Args::Backup(_))
        ));
        let e = parse(&["--from-backup"]).unwrap_err();
        assert!(e.output.contains("--from-backup"), "{}", e.output);
        assert_eq!(Args::usage_status(&["--from-backup".into()]), exit::USAGE);
        assert_eq!(
            Args::usage_status(&["--from-backup=/b".into()]),
            exit::USAGE
        );
        assert_eq!(
            Args::usage_status(&["--source".into()]),
            exit::RESTORE_USAGE
        );
        let e = parse(&["--standby", "--source", "/a", "x", "y"]).unwrap_err();
        assert!(
            e.output.starts_with("--standby needs --from-backup"),
            "{}",
            e.output
        );
        let e = parse(&["--target-action", "explode", "--from-backup", "/b"]).unwrap_err();
        assert!(
            e.output.contains("is not pause, promote or shutdown"),
            "{}",
            e.output
        );
    }

    #[test]
    fn omnipitr_spellings_of_both_forms() {
        assert_eq!(
            pitr_common::cli::alias_problems::<Args>(),
            Vec::<String>::new()
        );
        let longs = Args::long_options();
        for l in [
            "--source",
            "--finish-trigger",
            "--target-data-dir",
            "--help",
        ] {
            assert!(longs.iter().any(|x| x == l), "{l} in {longs:?}");
        }
        let line = "-l - -s gzip=/a -f /t -p /p -t /tmp -ep hang -pp /bin/pg_controldata -r -v 000000010000000000000005 pg_wal/RECOVERYXLOG";
        let args = line.split(' ').map(String::from).collect();
        let t = pitr_common::cli::translate(Args::ALIASES, &longs, args).unwrap();
        let refs: Vec<&str> = t.args.iter().map(String::as_str).collect();
        let Ok(Args::Wal(a)) = parse(&refs) else {
            panic!("{refs:?}")
        };
        assert!(a.remove_unneeded && a.verbose);
        assert_eq!(a.oldest_needed, None);
        assert_eq!(a.files, ["000000010000000000000005", "pg_wal/RECOVERYXLOG"]);
        assert_eq!(a.error_pgcontroldata, Some(OnControlError::Hang));
        assert_eq!(a.removal_pause_trigger, Some(PathBuf::from("/p")));

        // `-r %r %f %p`: PostgreSQL's %r for a history file, and for any segment before redo
        // starts, is all zeros (timeline 0, no WAL file name): it means "remove nothing".
        for (r, f, want) in [
            (
                "000000000000000000000000",
                "00000002.history",
                OldestNeeded::Nothing,
            ),
            (
                "000000000000000000000000",
                "000000010000000000000005",
                OldestNeeded::Nothing,
            ),
            (
                "000000010000000000000003",
                "000000010000000000000005",
                OldestNeeded::Wal(WalFileName::parse("000000010000000000000003").unwrap()),
            ),
        ] {
            let args = ["-s", "/a", "-r", r, f, "pg_wal/RECOVERYXLOG"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let t = pitr_common::cli::translate(Args::ALIASES, &longs, args).unwrap();
            let refs: Vec<&str> = t.args.iter().map(String::as_str).collect();
            let Ok(Args::Wal(a)) = parse(&refs) else {
                panic!("{refs:?}")
            };
            assert_eq!(a.oldest_needed, Some(want), "{refs:?}");
            assert_eq!(a.files, [f, "pg_wal/RECOVERYXLOG"]);
        }
    }

    /// What `pitr-restore ARGS` makes of its arguments, as its `main` does.
    fn parse_all(args: &[&str]) -> Result<(Args, Vec<String>), Exit> {
        pitr_common::cli::parse_from::<Args>(args.iter().map(OsString::from).collect())
    }

    /// The usage error of `pitr-restore ARGS`: (message, HINT, status).
    fn usage_error(args: &[&str]) -> (String, String, u8) {
        match parse_all(args) {
            Err(Exit::Usage {
                message,
                hint,
                status,
            }) => (message, hint, status),
            Err(other) => panic!("{other:?}"),
            Ok((a, _)) => panic!("parsed: {a:?}"),
        }
    }

    /// The long options of the `--from-backup` form.
    fn backup_longs() -> Vec<String> {
        let help = BackupArgs::parse(Args::NAME, &["--from-backup", "x", "--help"]).unwrap_err();
        pitr_common::cli::option_names(&help.output)
    }

    #[test]
    fn each_form_translates_into_its_own_options() {
        let help = WalArgs::parse(Args::NAME, &["--help"]).unwrap_err();
        let wal_longs = pitr_common::cli::option_names(&help.output);
        assert!(!wal_longs.iter().any(|l| l == "--target-data-dir"));
        assert_eq!(
            table_problems(WAL_ALIASES, &wal_longs),
            Vec::<String>::new()
        );
        assert_eq!(
            table_problems(BACKUP_ALIASES, &backup_longs()),
            Vec::<String>::new()
        );
        // Every spelling of one form is read (or refused) by the other too: none is left to
        // argh as an unknown argument.
        let backup_longs = backup_longs();
        for (spelling, _) in WAL_ALIASES {
            assert!(
                BACKUP_ALIASES.iter().any(|(s, _)| s == spelling)
                    || backup_longs.iter().any(|l| l == spelling),
                "{spelling}"
            );
        }
        for (spelling, _) in BACKUP_ALIASES {
            let long = spelling.starts_with("--");
            assert!(
                long || WAL_ALIASES.iter().any(|(s, _)| s == spelling),
                "{spelling}"
            );
        }
        let (Args::Backup(a), ignored) = parse_all(&[
            "--from-backup",
            "/b",
            "--target-data-dir",
            "/n",
            "-s",
            "/a",
            "-f",
            "/t",
            "-w",
            "60",
            "-r",
            "-p",
            "/p",
            "-sr",
            "-l",
            "-",
            "-v",
            "--gp",
            "/bin/gzip",
        ])
        .unwrap() else {
            panic!("not the --from-backup form")
        };
        assert_eq!(a.source, ["/a"]);
        assert_eq!(a.finish_trigger, Some(PathBuf::from("/t")));
        assert_eq!(a.recovery_delay, Some(60));
        assert!(a.remove_unneeded && a.streaming_replication && a.verbose);
        assert_eq!(a.removal_pause_trigger, Some(PathBuf::from("/p")));
        assert_eq!(a.log.as_deref(), Some("-"));
        assert_eq!(ignored, ["--gp"]);
    }

    #[test]
    fn an_alias_of_the_other_form_is_a_usage_error() {
        let backup = |extra: &[&str]| {
            let mut args = vec!["--from-backup", "/b", "--target-data-dir", "/n", "-s", "/a"];
            args.extend_from_slice(extra);
            usage_error(&args)
        };
        let data_dir = (
            "option -D is not an option of pitr-restore --from-backup".to_string(),
            "-D (--data-dir) is the restore_command's data directory; the one --from-backup \
             creates is --target-data-dir NEW"
                .to_string(),
            exit::USAGE,
        );
        assert_eq!(backup(&["-D", "/srv/data"]), data_dir);
        assert_eq!(
            backup(&["--data-dir", "/srv/data"]).0,
            "option --data-dir is not an option of pitr-restore --from-backup"
        );
        assert_eq!(
            backup(&["--rt", "5"]),
            (
                "option --rt is not an option of pitr-restore --from-backup".to_string(),
                "--from-backup does not pass it on to the restore_command it writes: leave it \
                 out, and add it to restore_command in NEW/postgresql.auto.conf afterwards if \
                 needed"
                    .to_string(),
                exit::USAGE,
            )
        );
        // An option of ours the form lacks: no "did you mean" the same option.
        assert_eq!(
            backup(&["--oldest-needed", "000000010000000000000001"]),
            (
                "Unrecognized argument: --oldest-needed".to_string(),
                "run pitr-restore --help for usage".to_string(),
                exit::USAGE,
            )
        );
        // The other way round, as before: an option of --from-backup needs it.
        assert_eq!(
            usage_error(&["--target-data-dir", "/n", "-s", "/a", "x", "y"]).0,
            "--target-data-dir needs --from-backup (restoring a backup: pitr-restore \
             --from-backup DIR --target-data-dir NEW --source ARCHIVE)"
        );
    }

    #[test]
    fn h_says_what_to_use_instead() {
        let pre_removal = (
            "option -h is not supported".to_string(),
            "OmniPITR's -h (--pre-removal-processing) ran a command before each removal; \
             pitr-restore runs none: to keep a copy of each WAL file, give pitr-archive another \
             destination (--dst-local, --dst-remote or --dst-pipe), or leave out \
             --remove-unneeded (-r) so that nothing is removed; for help, run pitr-restore --help"
                .to_string(),
            exit::RESTORE_USAGE,
        );
        assert_eq!(
            usage_error(&["-s", "/srv/wal", "-h", "/bin/true", "-r", "%f", "%p"]),
            pre_removal
        );
        let (message, hint, status) = usage_error(&[
            "--from-backup",
            "/b",
            "--pre-removal-processing",
            "/bin/true",
        ]);
        assert_eq!(message, "option --pre-removal-processing is not supported");
        assert_eq!((hint, status), (pre_removal.1, exit::USAGE));
    }

    #[test]
    fn help_of_each_form_fits_80_columns_and_lists_version() {
        for args in [&["--help"][..], &["--from-backup", "-", "--help"], &["-?"]] {
            assert_eq!(
                pitr_common::cli::help_problems::<Args>(args),
                Vec::<String>::new()
            );
        }
        // The restore_command form's -r line wraps (it was ~100 columns).
        let Err(Exit::Print(help)) = parse_all(&["--help"]) else {
            panic!()
        };
        assert!(help.contains(
            "\n  -r                --remove-unneeded, and --oldest-needed when a WAL segment\n                    \
             name and %f follow\n"
        ));
        let Err(Exit::Print(help)) = parse_all(&["--from-backup", "-", "--help"]) else {
            panic!()
        };
        assert!(
            help.ends_with(
                "  Not supported, refused with a HINT saying what to use instead:\n    \
             -D, --data-dir, -rb, --remove-before, -rt, --remove-at-a-time, -ep,\n    \
             --error-pgcontroldata, -pp, --pgcontroldata-path, -h,\n    \
             --pre-removal-processing\n"
            ),
            "{help}"
        );
    }

    #[test]
    fn data_dir_follows_an_absolute_p_into_its_data_directory() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("global")).unwrap();
        std::fs::create_dir_all(d.path().join("pg_wal")).unwrap();
        std::fs::write(d.path().join("global/pg_control"), b"x").unwrap();
        let p = d
            .path()
            .join("pg_wal/000000010000000000000003")
            .display()
            .to_string();
        assert_eq!(default_data_dir(Some(&p)), d.path());
        assert_eq!(
            default_data_dir(Some(&"pg_wal/RECOVERYXLOG".to_string())),
            Path::new(".")
        );
        let elsewhere = "/tmp/000000010000000000000003".to_string();
        assert_eq!(default_data_dir(Some(&elsewhere)), Path::new("."));
        assert_eq!(default_data_dir(None), Path::new("."));
    }

    #[test]
    fn typed_targets() {
        assert_eq!("latest".parse(), Ok(TargetTimeline::Latest));
        assert_eq!("3".parse(), Ok(TargetTimeline::Id(Timeline(3))));
        assert!("0".parse::<TargetTimeline>().is_err());
        assert_eq!(TargetTimeline::Id(Timeline(12)).value(), "12");
        assert_eq!(
            "promote".parse::<TargetAction>().map(TargetAction::as_str),
            Ok("promote")
        );
    }
}

//! Command line of `pitr-restore`, and its validation into a [`Config`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use argh::FromArgs;
use pitr_common::exit::{self, Failure};
use pitr_common::location::{Kind, Location};
use pitr_common::wal::WalFileName;

/// The command line of `pitr-restore`. The `description`, `usage`, examples, notes and exit
/// statuses below are its `--help` and, through `cargo xtask dist`, its man page.
#[derive(FromArgs, Debug)]
#[argh(
    description = "Restores one WAL file from the archive as PostgreSQL's restore_command, or a\n\
            base backup into a new data directory with --from-backup.\n\
            \n\
            As restore_command it waits for the file asked for, decompresses it fully and,\n\
            for a segment, checks its header against the name, its size and this cluster's\n\
            system identifier before renaming it into %p: PostgreSQL never gets a partial,\n\
            corrupt or foreign file. The next segments are decoded and checked ahead\n\
            (--prefetch), so most calls are a rename.\n\
            \n\
            A warm spare (recovery.signal) waits for each segment until --finish-trigger\n\
            appears. A standby (standby.signal, --streaming-replication) gets status 1 for a\n\
            missing file at once, and streams or retries.\n\
            \n\
            --from-backup verifies a set's digests, extracts data and WAL into the empty\n\
            --target-data-dir, and writes the recovery settings there: restore_command (this\n\
            program with --source and the trigger, delay and removal options given), the\n\
            target, and recovery.signal or standby.signal. Then start the server with\n\
            pg_ctl.",
    usage = "--source <[CODEC=]DIR>... [--data-dir <DIR>]\n\
            \x20          [--poll-interval <SECONDS>] [--finish-trigger <FILE>]\n\
            \x20          [--recovery-delay <SECONDS>] [--streaming-replication]\n\
            \x20          [--remove-unneeded [--oldest-needed <WALFILE>]\n\
            \x20          [--remove-at-a-time <N>] [--remove-before]]\n\
            \x20          [--removal-pause-trigger <FILE>]\n\
            \x20          [--error-pgcontroldata break|ignore|hang]\n\
            \x20          [--pgcontroldata-path <PROGRAM>] [--prefetch <N>] [--temp-dir <DIR>]\n\
            \x20          [--log <FILE>] [--verbose] [--pid-file <FILE>]\n\
            \x20          [--config-file <FILE>]... %f %p\n\
            \x20      {command_name} --from-backup <[CODEC=]DIR> --target-data-dir <NEW>\n\
            \x20          --source <[CODEC=]DIR>... [--backup <NAME>|latest] [--standby |\n\
            \x20          --target-time <TIME> | --target-lsn <LSN> | --target-xid <XID> |\n\
            \x20          --target-name <NAME> | --target-immediate]\n\
            \x20          [--target-action pause|promote|shutdown]\n\
            \x20          [--target-timeline latest|current|<N>] [--postgresql-conf <FILE>]\n\
            \x20          [--tablespace-mapping <OLD=NEW>]... [--rsync-path <PROGRAM>]\n\
            \x20          [--finish-trigger <FILE>] [--recovery-delay <SECONDS>]\n\
            \x20          [--remove-unneeded] [--removal-pause-trigger <FILE>]\n\
            \x20          [--poll-interval <SECONDS>] [--prefetch <N>] [--log <FILE>]\n\
            \x20          [--verbose] [--config-file <FILE>]...\n\
            \x20      {command_name} --help | --version",
    example = "A warm spare, in postgresql.conf with recovery_prefetch = off and\n\
            recovery.signal:\n\
            \x20 restore_command = '/opt/pitr/bin/pitr-restore --source zstd=/var/lib/pgsql/wal_archive --finish-trigger /var/lib/pgsql/finish.trigger %f %p'",
    example = "A standby that streams from the primary (standby.signal):\n\
            \x20 restore_command = '/opt/pitr/bin/pitr-restore --streaming-replication --source zstd=/var/lib/pgsql/wal_archive %f %p'",
    example = "A new warm spare from the latest backup set:\n\
            \x20 pitr-restore --from-backup zstd=/var/lib/pgsql/backups --target-data-dir /var/lib/pgsql/15/data --source zstd=/var/lib/pgsql/wal_archive --finish-trigger /var/lib/pgsql/finish.trigger",
    example = "A copy of the cluster as it was at a restore point, next to the running one:\n\
            \x20 pitr-restore --from-backup zstd=/var/lib/pgsql/backups --target-data-dir /var/lib/pgsql/pitr-scratch --source zstd=/var/lib/pgsql/wal_archive --target-name before-drop",
    note = "--config-file FILE (also spelled --config or --cfg) reads options from FILE,\n\
            one per line (\"--source /var/lib/pgsql/wal_archive\"), # starting a comment, as\n\
            if they were given where --config-file stands. --version (or -V) prints the\n\
            program's name and version. PostgreSQL expands %f, %p and %r only in\n\
            restore_command itself.\n\
            \n\
            A damaged or foreign archived file is logged as an ERROR and waited on, as it\n\
            may be repaired; with --streaming-replication it is status 1. SIGUSR1 to a\n\
            waiting pitr-restore finishes recovery at once, as a finish trigger holding\n\
            NOW does.",
    note = "\n\
            Files:\n\
            /etc/pitr/restore.conf\n\
            \x20   options for --config-file (installed by the RPM, kept on upgrades)\n\
            /opt/pitr/share/pitr/examples\n\
            \x20   postgresql-warm-standby.conf, postgresql-streaming-standby.conf\n\
            DATADIR/pg_wal/.pitr-prefetch\n\
            \x20   segments decoded and checked ahead (--prefetch)\n\
            NEW/postgresql.auto.conf\n\
            \x20   where --from-backup writes restore_command and the target",
    error_code(0, "restored; with --from-backup: done"),
    error_code(
        1,
        "not available, which ends archive recovery: a missing .history file, a\n\
            \x20   missing file with --streaming-replication, a finish requested, or the server\n\
            \x20   gone"
    ),
    error_code(2, "--from-backup: an error"),
    error_code(3, "--from-backup: a usage error"),
    error_code(
        126,
        "an error that must not end recovery (a source or pg_control unreadable,\n\
            \x20     --error-pgcontroldata break): PostgreSQL stops instead of promoting"
    ),
    error_code(127, "a usage error: PostgreSQL stops instead of promoting")
)]
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
    #[argh(switch, hidden_help)]
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

    /// restore a backup set from this directory (made by pitr-backup), [CODEC=]DIR: a local
    /// directory or an rsync target (rsync://host[:port]/module/path, host::module/path,
    /// [user@]host:/path), whose set is fetched next to --target-data-dir first
    #[argh(option)]
    pub from_backup: Option<String>,

    /// with --from-backup from an rsync target: the rsync program (default: rsync from PATH)
    #[argh(option)]
    pub rsync_path: Option<PathBuf>,

    /// with --from-backup: the new data directory (must not exist, or be empty)
    #[argh(option)]
    pub target_data_dir: Option<PathBuf>,

    /// with --from-backup: which set, by the name of any of its files, or latest (default: the
    /// latest, or with --target-time the latest that ended before it)
    #[argh(option)]
    pub backup: Option<String>,

    /// with --from-backup: start as a standby (standby.signal, --streaming-replication) instead
    /// of archive recovery (recovery.signal)
    #[argh(switch)]
    pub standby: bool,

    /// with --from-backup: recover up to this time, YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM]]
    /// (without an offset: this machine's local time)
    #[argh(option)]
    pub target_time: Option<String>,

    /// with --from-backup: recover up to this WAL location (X/Y)
    #[argh(option)]
    pub target_lsn: Option<String>,

    /// with --from-backup: recover up to this transaction id
    #[argh(option)]
    pub target_xid: Option<u64>,

    /// with --from-backup: recover up to this restore point (pg_create_restore_point)
    #[argh(option)]
    pub target_name: Option<String>,

    /// with --from-backup: stop as soon as the backup is consistent
    #[argh(switch)]
    pub target_immediate: bool,

    /// with --from-backup and a target: pause (default), promote or shutdown at the target
    #[argh(option)]
    pub target_action: Option<String>,

    /// with --from-backup: latest, current or a timeline number to recover along
    #[argh(option)]
    pub target_timeline: Option<String>,

    /// with --from-backup: use this postgresql.conf instead of the backed-up one
    #[argh(option)]
    pub postgresql_conf: Option<PathBuf>,

    /// with --from-backup: put the tablespace that was at OLD into NEW instead, OLD=NEW (as
    /// pg_basebackup -T); repeatable
    #[argh(option)]
    pub tablespace_mapping: Vec<String>,

    /// the WAL file wanted and where to put it: PostgreSQL's %f and %p
    #[argh(positional)]
    pub files: Vec<String>,
}

/// Settings of `--from-backup`.
#[derive(Debug)]
pub struct BackupConfig {
    /// The backup directory (local, or an rsync target).
    pub from: Location,
    /// The rsync program, for an rsync `from`.
    pub rsync_path: PathBuf,
    /// The new data directory.
    pub target_dir: PathBuf,
    /// Which set (`None` = latest suitable).
    pub backup: Option<String>,
    /// The WAL archive(s) for restore_command.
    pub sources: Vec<Location>,
    /// Where recovery stops.
    pub target: crate::recovery::Target,
    /// recovery_target_action.
    pub action: Option<String>,
    /// recovery_target_timeline.
    pub timeline: Option<String>,
    /// Standby mode.
    pub standby: bool,
    /// A postgresql.conf to use.
    pub postgresql_conf: Option<PathBuf>,
    /// Tablespace relocations, old location to new.
    pub tablespace_mapping: Vec<(PathBuf, PathBuf)>,
    /// The options handed on to the restore_command.
    pub restore_args: Vec<String>,
}

/// What this run does.
#[derive(Debug)]
pub enum Mode {
    /// restore_command.
    Wal(Config),
    /// --from-backup.
    Backup(BackupConfig),
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
    /// Validates the arguments, for either form.
    pub fn into_mode(self) -> anyhow::Result<Mode> {
        if self.from_backup.is_some() {
            self.into_backup_config().map(Mode::Backup)
        } else {
            let backup_only = [
                (self.target_data_dir.is_some(), "--target-data-dir"),
                (self.backup.is_some(), "--backup"),
                (self.standby, "--standby"),
                (self.target_time.is_some(), "--target-time"),
                (self.target_lsn.is_some(), "--target-lsn"),
                (self.target_xid.is_some(), "--target-xid"),
                (self.target_name.is_some(), "--target-name"),
                (self.target_immediate, "--target-immediate"),
                (self.target_action.is_some(), "--target-action"),
                (self.target_timeline.is_some(), "--target-timeline"),
                (self.postgresql_conf.is_some(), "--postgresql-conf"),
                (!self.tablespace_mapping.is_empty(), "--tablespace-mapping"),
                (self.rsync_path.is_some(), "--rsync-path"),
            ];
            if let Some((_, opt)) = backup_only.iter().find(|(given, _)| *given) {
                return Err(usage(
                    format!("{opt} needs --from-backup"),
                    "restoring a backup: pitr-restore --from-backup DIR --target-data-dir NEW --source ARCHIVE",
                ));
            }
            self.into_config().map(Mode::Wal)
        }
    }

    fn into_backup_config(self) -> anyhow::Result<BackupConfig> {
        use crate::recovery::Target;
        const FORM2: &str = "pitr-restore --from-backup /srv/backups --target-data-dir /var/lib/postgresql/15/new --source zstd=/srv/wal";
        let bad = |msg: String, hint: &str| -> anyhow::Error {
            Failure::new(msg).hint(hint).status(exit::USAGE).into()
        };
        let from_spec = self.from_backup.clone().unwrap_or_default();
        let (_, from_target) = pitr_common::location::split_codec(&from_spec)
            .unwrap_or((pitr_common::compress::Codec::None, from_spec.as_str()));
        let from_kind = if pitr_common::location::is_rsync_target(from_target) {
            Kind::Remote
        } else {
            Kind::Local
        };
        let from = Location::parse(from_kind, &from_spec).map_err(|e| {
            bad(
                format!("--from-backup {e}"),
                "give the directory holding the backup sets",
            )
        })?;
        let Some(target_dir) = self.target_data_dir.clone() else {
            return Err(bad(
                "--from-backup needs --target-data-dir".into(),
                &format!("for example {FORM2}"),
            ));
        };
        if !self.files.is_empty() {
            return Err(bad(
                format!(
                    "--from-backup takes no %f %p arguments, got: {}",
                    self.files.join(" ")
                ),
                "restore_command and --from-backup are two different uses of pitr-restore",
            ));
        }
        if self.source.is_empty() {
            return Err(bad(
                "--from-backup needs --source, the WAL archive the restored server will recover from".into(),
                &format!("for example {FORM2}"),
            ));
        }
        let mut sources = Vec::new();
        for s in &self.source {
            sources.push(Location::parse(Kind::Local, s).map_err(|e| {
                bad(
                    format!("--source {e}"),
                    "write [CODEC=]DIR with CODEC none, gzip or zstd",
                )
            })?);
        }
        let mut targets = Vec::new();
        if let Some(t) = &self.target_time {
            let local = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
            let parsed = crate::recovery::parse_time(t, local).ok_or_else(|| {
                bad(
                    format!("--target-time \"{t}\" is not a time"),
                    "write YYYY-MM-DD HH:MM:SS, optionally with .ffffff and an offset like +00 or +05:30",
                )
            })?;
            targets.push(Target::Time(parsed));
        }
        if let Some(l) = &self.target_lsn {
            let lsn = l.parse().map_err(|e: pitr_common::wal::ParseError| {
                bad(
                    format!("--target-lsn {e}"),
                    "write a WAL location like 0/3000060",
                )
            })?;
            targets.push(Target::Lsn(lsn));
        }
        if let Some(x) = self.target_xid {
            targets.push(Target::Xid(x));
        }
        if let Some(n) = &self.target_name {
            targets.push(Target::Name(n.clone()));
        }
        if self.target_immediate {
            targets.push(Target::Immediate);
        }
        if targets.len() > 1 {
            return Err(bad(
                "more than one recovery target given".into(),
                "give one of --target-time, --target-lsn, --target-xid, --target-name, --target-immediate",
            ));
        }
        let target = targets.pop().unwrap_or(Target::End);
        let action = match self.target_action.as_deref() {
            None => None,
            Some(a @ ("pause" | "promote" | "shutdown")) => {
                if target == Target::End {
                    return Err(bad(
                        "--target-action without a recovery target".into(),
                        "give a target (--target-time, ...) or leave --target-action out",
                    ));
                }
                Some(a.to_string())
            }
            Some(other) => {
                return Err(bad(
                    format!("invalid --target-action \"{other}\""),
                    "give pause, promote or shutdown",
                ))
            }
        };
        let timeline = match self.target_timeline.as_deref() {
            None => None,
            Some(t @ ("latest" | "current")) => Some(t.to_string()),
            Some(t) if t.parse::<u32>().is_ok_and(|n| n > 0) => Some(t.to_string()),
            Some(t) => {
                return Err(bad(
                    format!("invalid --target-timeline \"{t}\""),
                    "give latest, current or a timeline number",
                ))
            }
        };
        if self.standby && target != Target::End {
            return Err(bad(
                "--standby with a recovery target".into(),
                "a standby follows the archive; for a point-in-time restore leave --standby out",
            ));
        }
        // The options the restore_command runs with.
        let mut restore_args = Vec::new();
        for s in &sources {
            restore_args.push("--source".to_string());
            restore_args.push(s.to_string());
        }
        if let Some(f) = &self.finish_trigger {
            restore_args.push("--finish-trigger".into());
            restore_args.push(f.to_string_lossy().into_owned());
        }
        if let Some(d) = self.recovery_delay {
            restore_args.push("--recovery-delay".into());
            restore_args.push(d.to_string());
        }
        if self.remove_unneeded {
            restore_args.push("--remove-unneeded".into());
        }
        if let Some(p) = &self.removal_pause_trigger {
            restore_args.push("--removal-pause-trigger".into());
            restore_args.push(p.to_string_lossy().into_owned());
        }
        if let Some(p) = self.poll_interval {
            restore_args.push("--poll-interval".into());
            restore_args.push(p.to_string());
        }
        if let Some(p) = self.prefetch {
            restore_args.push("--prefetch".into());
            restore_args.push(p.to_string());
        }
        if let Some(l) = &self.log {
            restore_args.push("--log".into());
            restore_args.push(l.clone());
        }
        if self.standby || self.streaming_replication {
            restore_args.push("--streaming-replication".into());
        }
        let mut tablespace_mapping = Vec::new();
        for m in &self.tablespace_mapping {
            match m.split_once('=') {
                Some((old, new))
                    if Path::new(old).is_absolute() && Path::new(new).is_absolute() =>
                {
                    tablespace_mapping.push((PathBuf::from(old), PathBuf::from(new)));
                }
                _ => {
                    return Err(bad(
                        format!("invalid --tablespace-mapping \"{m}\""),
                        "write OLD=NEW with two absolute directories",
                    ))
                }
            }
        }
        Ok(BackupConfig {
            tablespace_mapping,
            from,
            rsync_path: self.rsync_path.unwrap_or_else(|| PathBuf::from("rsync")),
            target_dir,
            backup: self.backup.clone().filter(|b| b != "latest"),
            sources,
            target,
            action,
            timeline,
            standby: self.standby,
            postgresql_conf: self.postgresql_conf.clone(),
            restore_args,
        })
    }

    /// Validates the arguments of the restore_command form.
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

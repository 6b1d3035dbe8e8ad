//! Running one check: validation, the pid file, the scratch directory rsync locations need, the
//! check itself, and its output; an error becomes an UNKNOWN in the chosen output form (and an
//! ERROR line on stderr, from `cli::main`).

use std::process::ExitCode;

use pitr_common::exit::Failure;
use pitr_common::tempname::ScratchDir;

use crate::args::{Args, Check, Config};
use crate::report::{self, Report, UNKNOWN};
use crate::store::Remote;

/// Validates `args`, runs the check and prints its report; on error prints UNKNOWN and returns
/// the error (status 3).
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let output = args.output();
    let name = args
        .check
        .as_deref()
        .and_then(|c| c.parse::<Check>().ok())
        .map_or("pitr-monitor", Check::name);
    let now = std::time::SystemTime::now();
    let prometheus = args.prometheus.clone();
    let result = args.into_config().and_then(|cfg| {
        let report = run(&cfg)?;
        report::emit(&report, cfg.output, cfg.prometheus.as_deref(), cfg.now)
    });
    if let Err(e) = &result {
        report::emit_unknown(name, output, prometheus.as_deref(), e, now);
    }
    result
}

/// Runs the configured check.
pub fn run(cfg: &Config) -> anyhow::Result<Report> {
    let _pid = pitr_common::cli::take_pid_file("pitr-monitor", cfg.pid_file.as_deref(), UNKNOWN)?;
    let needs_scratch = cfg
        .archive
        .iter()
        .chain(&cfg.backup_dirs)
        .any(|s| s.is_remote());
    let scratch = if needs_scratch {
        // Private (0700): it holds fetched segments and backup metadata.
        let dir = ScratchDir::create(&cfg.temp_dir, "pitr-monitor").map_err(|e| {
            anyhow::Error::from(e).context(
                Failure::new("cannot create a scratch directory in --temp-dir")
                    .hint("give --temp-dir an existing directory writable by this user"),
            )
        })?;
        Some(dir)
    } else {
        None
    };
    let remote = scratch.as_ref().map(|s| Remote {
        rsync: pitr_common::rsync::Rsync::new(&cfg.rsync_path),
        scratch: s.path().to_path_buf(),
        s3: cfg.s3.clone(),
    });
    let remote = remote.as_ref();
    match cfg.check {
        Check::Info => crate::info::run(cfg, remote),
        Check::Verify => crate::verify::run(cfg, remote),
        Check::ArchiveQueue => crate::logcheck::archive_queue(cfg),
        Check::LastBackupAge if !cfg.backup_dirs.is_empty() => {
            crate::logcheck::last_backup_from_sets(cfg, remote)
        }
        _ => crate::logcheck::run(cfg),
    }
}

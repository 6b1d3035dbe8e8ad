//! `pitr-backup`: online base backups of a running PostgreSQL cluster, primary or hot standby.
//!
//! Holds one database session from `pg_backup_start()` to `pg_backup_stop()`, streams the data
//! directory and its tablespaces into a tar with a `backup_manifest` that `pg_verifybackup`
//! accepts, collects the WAL from the start to the stop location into a second tar, and writes
//! a digest file and a meta file (last) to every destination. See ARCHITECTURE.md.
//!
//! Exit status: 0 done; 2 error or interrupted (the server leaves backup mode, partial outputs
//! are removed); 3 usage error; 4 another backup of the cluster runs (see `pitr_common::exit`).

mod args;
mod backup;
mod copy;
mod output;
mod progress;
mod session;
mod xlog;

use std::process::ExitCode;

use pitr_common::exit;

fn main() -> ExitCode {
    let args: args::Args = pitr_common::cli::parse_args("pitr-backup", exit::USAGE);
    let log = args.log.clone();
    pitr_common::cli::run(
        "pitr-backup",
        log.as_deref(),
        args.verbose,
        exit::ERROR,
        || {
            let config = args.into_config()?;
            backup::run(&config)
        },
    )
}

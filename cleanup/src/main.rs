//! `pitr-cleanup`: PostgreSQL `archive_cleanup_command`, and retention from cron.
//!
//! Form 1, `pitr-cleanup --archive DIR %r`: removes archived WAL older than `%r` with
//! `pg_archivecleanup`'s semantics. Form 2, `pitr-cleanup --backup-dir DIR --archive DIR
//! --keep-days N`: removes old backup sets, then the WAL only they needed.
//!
//! Exit status: 0 done, 2 error, 3 usage error, 4 busy (see `pitr_common::exit`).

mod args;
mod plan;
mod prune;

use std::process::ExitCode;

use pitr_common::exit;

fn main() -> ExitCode {
    let args: args::Args = pitr_common::cli::parse_args("pitr-cleanup", exit::USAGE);
    let log = args.log.clone();
    let verbose = args.verbose;
    pitr_common::cli::run("pitr-cleanup", log.as_deref(), verbose, exit::ERROR, || {
        let config = args.into_config()?;
        prune::run(&config)
    })
}

//! `pitr-archive`: PostgreSQL `archive_command`.
//!
//! Invoked by the archiver as `pitr-archive [options] %p`. Sends one WAL file to every
//! destination (local directories, rsync targets, pipe programs, and the backup collection
//! directory while it exists), compressing once per codec, durably, never replacing a
//! different archived copy, refusing WAL of another cluster.
//!
//! Exit status: 0 archived everywhere; 2 error (PostgreSQL retries); 3 usage error; 4 busy
//! (see `pitr_common::exit`).

mod args;
mod push;

use std::process::ExitCode;

use pitr_common::exit;

fn main() -> ExitCode {
    let args: args::Args = pitr_common::cli::parse_args("pitr-archive", exit::USAGE);
    let log = args.log.clone();
    pitr_common::cli::run(
        "pitr-archive",
        log.as_deref(),
        args.verbose,
        exit::ERROR,
        || {
            let config = args.into_config()?;
            push::run(&config)
        },
    )
}

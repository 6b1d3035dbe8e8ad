//! `pitr-restore`: PostgreSQL `restore_command`.
//!
//! Invoked by the startup process as `pitr-restore --source DIR %f %p`. Waits for the WAL file
//! `%f` to appear in the archive, verifies it (complete decompression; for segments the page
//! header against the name, the size and this cluster) and renames it into `%p`. Prefetches the
//! following segments in the background. Removes unneeded segments while waiting if asked.
//!
//! Exit status: 0 restored, 1 not available (ends archive recovery), 126 an error that must
//! stop recovery instead, 127 a usage error; see `pitr_common::exit` and ARCHITECTURE.md.
//!
//! Also `pitr-restore --from-backup DIR --target-data-dir NEW --source ARCHIVE [target]`:
//! restores a backup set made by pitr-backup and writes the recovery settings.

mod args;
mod fetch;
mod frombackup;
mod prefetch;
mod recovery;
mod remove;

use std::process::ExitCode;

use pitr_common::exit;

fn main() -> ExitCode {
    let args: args::Args = pitr_common::cli::parse_args("pitr-restore", exit::RESTORE_USAGE);
    let log = args.log.clone();
    let verbose = args.verbose;
    // As restore_command, an error must stop recovery (126); restoring a backup is an
    // ordinary command (2).
    let error_status = if args.from_backup.is_some() {
        exit::ERROR
    } else {
        exit::RESTORE_FATAL
    };
    pitr_common::cli::run(
        "pitr-restore",
        log.as_deref(),
        verbose,
        error_status,
        || match args.into_mode()? {
            args::Mode::Wal(config) => fetch::run(&config),
            args::Mode::Backup(config) => frombackup::run(&config),
        },
    )
}

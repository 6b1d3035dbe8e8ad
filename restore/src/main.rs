//! `pitr-restore`: `restore_command` (`--source DIR %f %p`: wait for a WAL file, verify it,
//! rename it into `%p`; exit 0 restored, 1 not available, 126 stop recovery, 127 usage), and
//! `--from-backup` (a backup set into a new data directory). See ARCHITECTURE.md.

mod args;
mod command;
mod fetch;
mod frombackup;
mod prefetch;
mod recovery;
mod remove;

fn main() -> std::process::ExitCode {
    pitr_common::cli::main::<args::Args>()
}

//! `pitr-cleanup`: removes archived WAL older than `%r` (`archive_cleanup_command`), or backup
//! sets and WAL outside the retention (cron). Exit status: 0 done, 2 error, 3 usage error, 4
//! busy (see `pitr_common::exit`).

mod args;
mod plan;
mod prune;

fn main() -> std::process::ExitCode {
    pitr_common::cli::main::<args::Args>()
}

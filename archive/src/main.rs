//! `pitr-archive`: PostgreSQL `archive_command` (`pitr-archive [options] %p`). Sends one WAL
//! file to every destination, compressing once per codec, durably, never replacing a different
//! archived copy, refusing WAL of another cluster. Exit status: 0 archived everywhere; 2 error
//! (PostgreSQL retries); 3 usage error; 4 busy (see `pitr_common::exit`).

mod ahead;
mod args;
mod push;
mod worker;

fn main() -> std::process::ExitCode {
    pitr_common::cli::main::<args::Args>()
}

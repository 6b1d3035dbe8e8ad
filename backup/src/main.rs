//! `pitr-backup`: an online base backup of a running cluster, primary or hot standby, into a
//! backup set (data, WAL, digests, meta file last). Exit status: 0 done; 2 error or
//! interrupted; 3 usage error; 4 another backup runs (see `pitr_common::exit`).

mod args;
mod backup;
mod copy;
mod output;
mod session;
mod xlog;

fn main() -> std::process::ExitCode {
    pitr_common::cli::main::<args::Args>()
}

//! `pitr-restore`: not yet implemented beyond `--help` and `--version`.

use std::process::ExitCode;

fn main() -> ExitCode {
    pitr_common::cli::placeholder("pitr-restore")
}

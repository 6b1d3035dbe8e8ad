//! `pitr-monitor`: what the archive holds, whether it is whole, and whether anything is late
//! (see `lib.rs` and ARCHITECTURE.md). Exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
//! (also usage errors and errors).

fn main() -> std::process::ExitCode {
    pitr_common::cli::main::<pitr_monitor::Args>()
}

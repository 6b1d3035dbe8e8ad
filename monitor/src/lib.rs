//! `pitr-monitor`: what the archive holds, whether it is whole, and whether anything is late.
//!
//! OmniPITR's checks (`--check last-archive-age`, `archive-queue`, `errors`, ...) from the
//! tools' logs and the server, plus `info` (backup sets and their recoverable windows across
//! timelines) and `verify` (gaps, damaged files and duplicates in the archive), printed as a
//! monitoring-plugin line with perfdata, as JSON, or as OmniPITR printed them, and optionally
//! written as a Prometheus textfile. See ARCHITECTURE.md.
//!
//! The binary's `main` is `pitr_common::cli::main::<Args>()`; the modules live in this library
//! so that `main.rs` stays one call.
//!
//! Exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also usage errors and errors).

mod archive;
mod args;
mod check;
mod clock;
mod info;
mod integrity;
mod logcheck;
mod logscan;
mod report;
mod session;
mod state;
mod store;
mod threshold;
mod timeline;
mod verify;

pub use args::Args;

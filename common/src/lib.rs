//! `pitr-common`: everything the pitr binaries share.
//!
//! One module per concept (see STYLE.md §2 and ARCHITECTURE.md): WAL names and page headers,
//! pg_control facts, codecs, archive locations and durable writes, object storage (S3),
//! logging, command-line glue, locks and pid files. Nothing here prints (except `log` and `cli`) and nothing here exits.

#![warn(missing_docs)]

pub mod archive_dir;
pub mod backupset;
pub mod checksum;
pub mod cli;
pub mod compress;
pub mod config;
pub mod controldata;
pub mod dest;
pub mod exit;
pub mod fs;
pub mod history;
pub mod label;
pub mod location;
pub mod lock;
pub mod log;
pub mod manifest;
pub mod objarchive;
pub mod objsets;
pub mod objstore;
pub mod pg;
pub mod pgconf;
pub mod pgconn;
pub mod pidfile;
pub mod process;
pub mod progress;
pub mod rsync;
pub mod signal;
pub mod source;
pub mod state;
pub mod tempname;
pub mod wal;
pub mod walcheck;
pub mod walcrc;
pub mod walpage;

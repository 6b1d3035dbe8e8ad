//! The integration tests of the pitr binaries against a real PostgreSQL server, built as one
//! test binary (STYLE.md §5). The harness is the `pitr_tests` library (`tests/src`); each
//! module here covers one binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod archive;
mod backup;
mod cleanup;
mod harness;
mod majors;
mod monitor;
mod omnipitr_lines;
mod permissions;
mod pitr;
mod restore;
mod s3;

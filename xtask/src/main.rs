//! `cargo xtask`: the project's own automation, written in Rust instead of shell or make.
//!
//! `cargo xtask` is an alias (`.cargo/config.toml`) for `cargo run --package xtask --`, so the
//! only thing a contributor needs is cargo; the alias keeps cargo's progress output, since the
//! first run compiles the whole workspace. `test` runs every test, the real-PostgreSQL ones
//! included, after making sure PostgreSQL 15 and rsync are installed (on Debian as root it installs
//! them itself); `tidy` checks the house style of STYLE.md and also runs as `#[test]`s under
//! `cargo test -p xtask`, so a plain `cargo test` enforces it. `dist` stages a release build as
//! the `/opt/pitr` tree (binaries, documents, man pages made from `--help`, example
//! configuration) with its files in `/etc`, and `rpm` packages that tree, `rpm --check`
//! verifying the package with the real `rpm` program. `demo` plays the runbook (archive,
//! backup, two warm spares, failover, rebuilding the old primary, retention, point-in-time
//! restore, a delayed standby) on throwaway clusters and prints PASS or FAIL. `bench` measures archiving, restore and base backups against pgBackRest, pg_basebackup and shell baselines.
//! `faults` injects faults (kills, full disks, damaged archives, hostile input, races) into the
//! built binaries on real PostgreSQL and writes what went wrong to `docs/faults.md`.
//!
//! Everything here runs from the workspace root, found from `CARGO_MANIFEST_DIR`, whatever the
//! current directory.

mod bench;
mod demo;
mod deps;
mod dist;
mod examples;
mod faults;
mod garage;
mod help;
mod itest;
mod manpage;
mod pgmajors;
mod rpm;
#[cfg(test)]
mod runbook;
mod scratch;
mod tidy;

use std::env;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use argh::FromArgs;

/// Project automation for pitr: `cargo xtask <command>`.
#[derive(FromArgs)]
struct Xtask {
    #[argh(subcommand)]
    task: Task,
}

/// The subcommands.
#[derive(FromArgs)]
#[argh(subcommand)]
enum Task {
    Test(itest::TestArgs),
    Tidy(tidy::TidyArgs),
    Dist(dist::DistArgs),
    Rpm(rpm::RpmArgs),
    Demo(demo::DemoArgs),
    Bench(bench::BenchArgs),
    Faults(faults::FaultsArgs),
}

fn main() -> ExitCode {
    let args: Xtask = argh::from_env();
    let result = match args.task {
        Task::Test(args) => itest::run(&args),
        Task::Tidy(args) => tidy::run(&args),
        Task::Dist(args) => dist::run(&args),
        Task::Rpm(args) => rpm::run(&args),
        Task::Demo(args) => demo::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::Faults(args) => faults::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ lives inside the workspace root")
        .to_path_buf()
}

/// The cargo that runs us (`$CARGO`, set by `cargo run`), or `cargo` from PATH.
pub fn cargo() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// Cargo's target directory: `CARGO_TARGET_DIR` (or `CARGO_BUILD_TARGET_DIR`) if set, relative
/// to the workspace root, else `<root>/target`.
pub fn target_dir(root: &Path) -> PathBuf {
    ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"]
        .iter()
        .filter_map(env::var_os)
        .find(|dir| !dir.is_empty())
        .map_or_else(|| root.join("target"), |dir| root.join(dir))
}

/// Prints `xtask: <command>` and runs it with inherited stdio; a non-zero exit is an error.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    println!("xtask: {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// A command as a shell line: explicitly set environment variables, the program's file name and
/// the arguments.
pub fn display(cmd: &Command) -> String {
    let envs = cmd.get_envs().filter_map(|(key, value)| {
        value.map(|v| format!("{}={}", key.to_string_lossy(), v.to_string_lossy()))
    });
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or_else(|| cmd.get_program());
    let words = std::iter::once(program)
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .map(|word| word.into_owned());
    envs.chain(words).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_env_file_name_and_args() {
        let mut cmd = Command::new("/usr/bin/apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "rsync"]);
        assert_eq!(
            display(&cmd),
            "DEBIAN_FRONTEND=noninteractive apt-get install -y rsync"
        );
    }

    #[test]
    fn project_root_holds_the_workspace_manifest() {
        assert!(project_root().join("Cargo.toml").is_file());
        assert!(project_root().join("xtask").is_dir());
    }
}

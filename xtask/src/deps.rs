//! What the real-PostgreSQL tests need from the machine, and installing it where we may.
//!
//! The integration tests run PostgreSQL 15's server programs (from `PG_BINDIR`, by default
//! `/usr/lib/postgresql/15/bin`, which Debian keeps off PATH) and rsync (from PATH). PostgreSQL
//! refuses to run as root, so when the tests run as root they also need an unprivileged OS user:
//! `postgres`, which the Debian package creates, or else `pitr-test`, which we create. On Debian
//! as root, [`ensure`] installs whatever is missing with apt-get; anywhere else it stops with the
//! exact list of what to install.

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Where Debian's postgresql-15 package puts the server programs.
pub const DEFAULT_PG_BINDIR: &str = "/usr/lib/postgresql/15/bin";

/// The PostgreSQL programs the tests run.
const PG_PROGRAMS: &[&str] = &[
    "initdb",
    "pg_ctl",
    "postgres",
    "pgbench",
    "psql",
    "pg_controldata",
    "pg_waldump",
];

/// The OS users the test harness runs PostgreSQL as when it runs as root, in order of preference.
const SERVER_USERS: &[&str] = &["postgres", "pitr-test"];

/// What the tests will use, once [`ensure`] has checked or installed it.
#[derive(Debug)]
pub struct Deps {
    /// The directory holding `initdb`, `pg_ctl`, `postgres`, ...: passed on as `PG_BINDIR`.
    pub pg_bindir: PathBuf,
    /// The OS user PostgreSQL runs as, when we are root (`None` when we are not).
    pub server_user: Option<String>,
}

/// Checks for PostgreSQL 15 and rsync, installs them on Debian as root, and makes sure an
/// unprivileged user exists for the server when we are root.
pub fn ensure() -> Result<Deps> {
    let (pg_bindir, bindir_from_env) = match env::var_os("PG_BINDIR") {
        Some(dir) if !dir.is_empty() => (PathBuf::from(dir), true),
        _ => (PathBuf::from(DEFAULT_PG_BINDIR), false),
    };
    let root = is_root();
    let debian = Path::new("/etc/debian_version").exists();

    let missing = Missing::find(&pg_bindir);
    if !missing.is_empty() {
        if bindir_from_env && !missing.pg_programs.is_empty() {
            // apt-get would install into /usr/lib/postgresql/15/bin, not where PG_BINDIR points.
            bail!(
                "PG_BINDIR={} lacks {}\nHINT: point PG_BINDIR at a directory with the \
                 PostgreSQL server and client programs, or unset it to use {DEFAULT_PG_BINDIR}",
                pg_bindir.display(),
                missing.pg_programs.join(", ")
            );
        }
        if !(root && debian) {
            bail!("{}", missing.message(debian));
        }
        install(&missing.packages())?;
        let still = Missing::find(&pg_bindir);
        if !still.is_empty() {
            bail!("still missing after apt-get install: {}", still.list());
        }
    }
    println!(
        "xtask: {} in {}",
        postgres_version(&pg_bindir)?,
        pg_bindir.display()
    );

    let server_user = if root {
        let user = ensure_server_user()?;
        println!("xtask: running as root; the tests run PostgreSQL as OS user {user}");
        Some(user)
    } else {
        None
    };
    Ok(Deps {
        pg_bindir,
        server_user,
    })
}

/// The programs that are not there.
#[derive(Debug, Default)]
struct Missing {
    /// Names of PostgreSQL programs missing from the bin dir.
    pg_programs: Vec<String>,
    /// The bin dir they were looked for in.
    pg_bindir: PathBuf,
    /// Whether rsync is missing from PATH.
    rsync: bool,
}

impl Missing {
    fn find(pg_bindir: &Path) -> Missing {
        Missing {
            pg_programs: PG_PROGRAMS
                .iter()
                .filter(|name| !is_executable(&pg_bindir.join(name)))
                .map(|name| (*name).to_owned())
                .collect(),
            pg_bindir: pg_bindir.to_path_buf(),
            rsync: find_on_path("rsync").is_none(),
        }
    }

    fn is_empty(&self) -> bool {
        self.pg_programs.is_empty() && !self.rsync
    }

    /// The Debian packages that provide what is missing.
    fn packages(&self) -> Vec<&'static str> {
        let mut packages = Vec::new();
        if !self.pg_programs.is_empty() {
            packages.extend(["postgresql-15", "postgresql-client-15"]);
        }
        if self.rsync {
            packages.push("rsync");
        }
        packages
    }

    /// What is missing, as one line.
    fn list(&self) -> String {
        let mut items: Vec<String> = self
            .pg_programs
            .iter()
            .map(|name| self.pg_bindir.join(name).display().to_string())
            .collect();
        if self.rsync {
            items.push("rsync (not on PATH)".to_owned());
        }
        items.join(", ")
    }

    /// The error for a machine where we may not install: what is missing and what to install.
    fn message(&self, debian: bool) -> String {
        let hint = if debian {
            // postgresql-15 depends on postgresql-client-15, so naming the server is enough.
            let packages: Vec<&str> = self
                .packages()
                .into_iter()
                .filter(|p| *p != "postgresql-client-15")
                .collect();
            format!(
                "HINT: as root, run: apt-get install {} (or run `cargo xtask test` as root, \
                 which installs them)",
                packages.join(" ")
            )
        } else {
            let mut parts = Vec::new();
            if !self.pg_programs.is_empty() {
                parts.push(format!(
                    "install the PostgreSQL 15 server and client programs ({}) and set \
                     PG_BINDIR to the directory that holds them",
                    PG_PROGRAMS.join(", ")
                ));
            }
            if self.rsync {
                parts.push("install rsync and put it on PATH".to_owned());
            }
            format!("HINT: {}", parts.join("; "))
        };
        format!(
            "the tests need PostgreSQL 15 and rsync; missing: {}\n{hint}",
            self.list()
        )
    }
}

/// The program `name` from PATH, or on Debian as root installed with apt-get from the package
/// `package` (`rpm`, `man-db`); elsewhere an error saying what to install. `why` starts the
/// error: "checking the package needs rpm".
pub fn ensure_program(name: &str, package: &str, why: &str) -> Result<PathBuf> {
    if let Some(program) = find_on_path(name) {
        return Ok(program);
    }
    let debian = Path::new("/etc/debian_version").exists();
    if !(debian && is_root()) {
        let hint = if debian {
            format!(
                "HINT: as root, run: apt-get install {package} (or run this command as root, \
                 which installs it)"
            )
        } else {
            format!("HINT: install the {name} program (package {package}) and put it on PATH")
        };
        bail!("{why}: {name} is not on PATH\n{hint}");
    }
    install(&[package])?;
    find_on_path(name)
        .with_context(|| format!("{name} is still not on PATH after apt-get install {package}"))
}

/// `apt-get update`, then a non-interactive install of `packages` without recommends.
pub fn install(packages: &[&str]) -> Result<()> {
    println!(
        "xtask: installing {} with apt-get (Debian, running as root)",
        packages.join(" ")
    );
    crate::run(Command::new("apt-get").arg("update"))?;
    crate::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends", "--no-upgrade"])
            .args(packages),
    )
}

/// The first of [`SERVER_USERS`] that exists, creating `pitr-test` if none does.
fn ensure_server_user() -> Result<String> {
    for user in SERVER_USERS {
        if user_exists(user)? {
            return Ok((*user).to_owned());
        }
    }
    let user = "pitr-test";
    crate::run(Command::new("useradd").args([
        "--system",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        user,
    ]))?;
    Ok(user.to_owned())
}

fn user_exists(user: &str) -> Result<bool> {
    let output = Command::new("id")
        .args(["-u", user])
        .output()
        .context("cannot run id")?;
    Ok(output.status.success())
}

/// `postgres --version`, e.g. "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)".
fn postgres_version(pg_bindir: &Path) -> Result<String> {
    let program = pg_bindir.join("postgres");
    let output = Command::new(&program)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !output.status.success() {
        bail!("{} --version failed ({})", program.display(), output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Whether we run as root: the effective uid from `/proc/self/status`, else `id -u`.
pub fn is_root() -> bool {
    if let Some(uid) = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_uid(&status))
    {
        return uid == 0;
    }
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The effective uid in the text of `/proc/<pid>/status` ("Uid:\treal\teffective\tsaved\tfs").
fn effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
}

/// The first executable `name` in a PATH directory.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing(pg_programs: &[&str], rsync: bool) -> Missing {
        Missing {
            pg_programs: pg_programs.iter().map(|p| (*p).to_owned()).collect(),
            pg_bindir: PathBuf::from(DEFAULT_PG_BINDIR),
            rsync,
        }
    }

    #[test]
    fn effective_uid_is_the_second_uid_field() {
        let status =
            "Name:\tcat\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Name:\tcat\n"), None);
    }

    #[test]
    fn packages_cover_what_is_missing() {
        assert_eq!(
            missing(&["psql"], true).packages(),
            ["postgresql-15", "postgresql-client-15", "rsync"]
        );
        assert_eq!(missing(&[], true).packages(), ["rsync"]);
        assert!(missing(&[], false).is_empty());
    }

    #[test]
    fn message_on_debian_names_the_apt_packages() {
        assert_eq!(
            missing(&["initdb"], true).message(true),
            "the tests need PostgreSQL 15 and rsync; missing: \
             /usr/lib/postgresql/15/bin/initdb, rsync (not on PATH)\n\
             HINT: as root, run: apt-get install postgresql-15 rsync (or run `cargo xtask test` \
             as root, which installs them)"
        );
    }

    #[test]
    fn message_elsewhere_says_what_to_install_and_set() {
        assert_eq!(
            missing(&[], true).message(false),
            "the tests need PostgreSQL 15 and rsync; missing: rsync (not on PATH)\n\
             HINT: install rsync and put it on PATH"
        );
        assert_eq!(
            missing(&["pg_waldump"], false).message(false),
            "the tests need PostgreSQL 15 and rsync; missing: \
             /usr/lib/postgresql/15/bin/pg_waldump\n\
             HINT: install the PostgreSQL 15 server and client programs (initdb, pg_ctl, \
             postgres, pgbench, psql, pg_controldata, pg_waldump) and set PG_BINDIR to the \
             directory that holds them"
        );
    }

    #[test]
    fn find_on_path_finds_sh() {
        assert!(find_on_path("sh").is_some());
        assert!(find_on_path("no-such-program-pitr").is_none());
    }
}

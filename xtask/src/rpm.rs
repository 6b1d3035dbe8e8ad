//! `cargo xtask rpm`: an installable RPM of the `cargo xtask dist` tree, written by the
//! pure-Rust `rpm` crate, so building it needs no rpmbuild on the machine.
//!
//! The package `pitr-VERSION-RELEASE.ARCH.rpm` (in `target/rpm/`) owns `/opt/pitr` and
//! everything below it, with the modes of [`crate::dist::Kind`] (0755 directories and binaries,
//! 0644 documents and examples; documents flagged `%doc`), and `/etc/cron.d/pitr`, the cron
//! example, as `%config(noreplace)`: its jobs are commented out, so installing the package runs
//! nothing, and an operator's edits survive upgrades (rpm writes the new file as
//! `pitr.rpmnew`). The build is dated with `SOURCE_DATE_EPOCH` (else the last commit's time),
//! which also caps the files' mtimes, so the same tree gives the same package.
//!
//! `--check` then verifies the result with the real `rpm` program (installed with apt-get on
//! Debian as root, like the PostgreSQL packages of `cargo xtask test`): `rpm -K` digests, the
//! `rpm -qlp` list against [`crate::dist::expected_paths`] exactly, modes and file flags,
//! `rpm -i --root` into a scratch root, the installed binaries' `--version`, and `rpm -e`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, ensure, Context, Result};
use argh::FromArgs;

use crate::dist::{self, Kind, Staged};
use crate::{deps, examples, project_root, target_dir};

/// The package name.
const NAME: &str = "pitr";

/// Where the RPM installs the cron example.
const CRON_PATH: &str = "/etc/cron.d/pitr";

const SUMMARY: &str = "PostgreSQL continuous archiving and point-in-time recovery tools";

const DESCRIPTION: &str = "\
pitr is PostgreSQL continuous archiving and point-in-time recovery: pitr-archive \
(archive_command: compressed, checksummed, durably written WAL archives on local directories, \
rsync targets or pipes), pitr-restore (restore_command for warm spares and streaming standbys), \
pitr-backup (base backups of a running cluster), pitr-cleanup (retention of backups and \
WAL) and pitr-monitor (Nagios, JSON and Prometheus checks: archiving and restore lag, errors, \
backup sets and their recoverable windows, gaps and damage in the archive), for PostgreSQL 13 \
and later. Installed under /opt/pitr: binaries in /opt/pitr/bin, man \
pages and documents in /opt/pitr/share/doc/pitr, example configuration in \
/opt/pitr/share/pitr/examples, and a cron file whose jobs are commented out in /etc/cron.d/pitr.";

/// Build an installable RPM of /opt/pitr (and /etc/cron.d/pitr) in target/rpm.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "rpm",
    example = "cargo xtask rpm\ncargo xtask rpm --check\nrpm -i target/rpm/pitr-0.1.0-1.x86_64.rpm",
    note = "Builds the release binaries and stages them as `cargo xtask dist` does first. The \
            package needs no rpmbuild; --check needs the rpm program (on Debian as root it is \
            installed with apt-get)."
)]
pub struct RpmArgs {
    /// then check the package with the rpm program: digests, the exact file list (rpm -qlp),
    /// modes and flags, an install into a scratch root (rpm -i --root), the installed
    /// binaries' --version, and removal
    #[argh(switch)]
    check: bool,

    /// the package release (default 1)
    #[argh(option, default = "String::from(\"1\")")]
    release: String,
}

/// `cargo xtask rpm`.
pub fn run(args: &RpmArgs) -> Result<ExitCode> {
    // Before the minute of release build, not after.
    check_release(&args.release)?;
    let root = project_root();
    let staged = dist::build(&root)?;
    let out_dir = target_dir(&root).join("rpm");
    let package = package(&staged, &args.release, &out_dir)?;
    println!("xtask: rpm: wrote {}", package.display());
    if args.check {
        check(&root, &package)?;
        println!("xtask: rpm: {} checked", package.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The RPM architecture of the machine we build on (our binaries are native).
fn arch() -> Result<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Ok("x86_64"),
        "aarch64" => Ok("aarch64"),
        other => bail!("no RPM architecture known for {other}"),
    }
}

/// An RPM release is one word without `-` (it separates version and release in file names).
fn check_release(release: &str) -> Result<()> {
    ensure!(
        !release.is_empty()
            && !release.contains(|c: char| c == '-' || c == '/' || c.is_whitespace()),
        "release {release:?} must be non-empty, without '-', '/' or spaces"
    );
    Ok(())
}

/// The file name of the package: `pitr-0.1.0-1.x86_64.rpm`.
pub fn file_name(release: &str) -> Result<String> {
    Ok(format!(
        "{NAME}-{}-{release}.{}.rpm",
        dist::version(),
        arch()?
    ))
}

/// Writes the package of `staged` into `out_dir` (via a temporary name, so a failed build
/// never leaves a truncated package under the final one) and returns its path.
pub fn package(staged: &Staged, release: &str, out_dir: &Path) -> Result<PathBuf> {
    check_release(release)?;
    let config = rpm::BuildConfig::v4()
        .compression(rpm::CompressionType::Gzip)
        .source_date(staged.source_date);
    let mut builder = rpm::PackageBuilder::new(
        NAME,
        dist::version(),
        env!("CARGO_PKG_LICENSE"),
        arch()?,
        SUMMARY,
    );
    builder
        .using_config(config)
        .release(release)
        .url(env!("CARGO_PKG_REPOSITORY"))
        .description(DESCRIPTION)
        .group("Applications/Databases")
        // pitr-archive --dst-remote and pitr-backup send with rsync; local use needs nothing.
        .recommends(rpm::Dependency::any("rsync"));
    // What rpmbuild's ELF dependency generator would find in any Rust binary for linux-gnu
    // (`ldd`: libc and libgcc_s). The glibc symbol versions are not declared: a build on
    // Debian 12 needs GLIBC_2.34, i.e. EL9 or later.
    for library in ["libc.so.6()(64bit)", "libgcc_s.so.1()(64bit)"] {
        builder.requires(rpm::Dependency::any(library));
    }

    for item in &staged.items {
        let options = match item.kind {
            Kind::Dir => {
                builder
                    .with_dir_entry(rpm::FileOptions::dir(&item.path).permissions(0o755))
                    .with_context(|| format!("adding directory {}", item.path))?;
                continue;
            }
            Kind::Binary | Kind::Example => rpm::FileOptions::new(&item.path),
            Kind::Doc => rpm::FileOptions::new(&item.path).doc(),
        };
        let mode = u16::try_from(item.kind.mode()).context("file mode out of range")?;
        builder
            .with_file(staged.source(item), options.permissions(mode))
            .with_context(|| format!("adding {}", item.path))?;
    }
    let cron = staged
        .dist_dir
        .join(dist::PREFIX.trim_start_matches('/'))
        .join("share/pitr/examples")
        .join(examples::CRON);
    builder
        .with_file(
            &cron,
            rpm::FileOptions::new(CRON_PATH)
                .permissions(0o644)
                .config()
                .noreplace(),
        )
        .with_context(|| format!("adding {CRON_PATH}"))?;

    let package = builder.build().context("building the RPM")?;
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let path = out_dir.join(file_name(release)?);
    let partial = out_dir.join(format!(".{}.partial", file_name(release)?));
    package
        .write_file(&partial)
        .with_context(|| format!("writing {}", partial.display()))?;
    fs::rename(&partial, &path)
        .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
    Ok(path)
}

/// Every path of the package with the mode `rpm -qp --qf '%{FILEMODES:perms}'` shows for it
/// and whether it is `%config(noreplace)` / `%doc`, sorted by path as `rpm -qlp` lists them.
pub fn expected_entries() -> Vec<(String, &'static str, &'static str)> {
    let mut entries: Vec<(String, &'static str, &'static str)> = dist::expected_paths()
        .into_iter()
        .map(|path| {
            let (perms, flags) = if path.starts_with("/opt/pitr/bin/") {
                ("-rwxr-xr-x", "")
            } else if path.starts_with("/opt/pitr/share/doc/pitr/") {
                ("-rw-r--r--", "d")
            } else if path.starts_with("/opt/pitr/share/pitr/examples/") {
                ("-rw-r--r--", "")
            } else {
                ("drwxr-xr-x", "")
            };
            (path, perms, flags)
        })
        .collect();
    entries.push((CRON_PATH.to_owned(), "-rw-r--r--", "cn"));
    entries.sort();
    entries
}

/// Checks the package with the `rpm` program and a trial install; see the module doc.
pub fn check(root: &Path, package: &Path) -> Result<()> {
    let rpm = ensure_rpm()?;
    let package =
        fs::canonicalize(package).with_context(|| format!("resolving {}", package.display()))?;

    let digests = capture(
        Command::new(&rpm)
            .args(["-K", "--nosignature"])
            .arg(&package),
    )?;
    ensure!(
        digests.contains("digests OK") || digests.trim_end().ends_with(" OK"),
        "rpm -K: {}",
        digests.trim()
    );

    let listed: Vec<String> = capture(Command::new(&rpm).arg("-qlp").arg(&package))?
        .lines()
        .map(str::to_owned)
        .collect();
    let expected = expected_entries();
    let expected_paths: Vec<String> = expected.iter().map(|(p, _, _)| p.clone()).collect();
    if listed != expected_paths {
        bail!(
            "rpm -qlp {} lists\n  {}\nexpected\n  {}",
            package.display(),
            listed.join("\n  "),
            expected_paths.join("\n  ")
        );
    }
    println!("xtask: rpm -qlp: the {} expected paths", listed.len());

    let query = "[%{FILEMODES:perms} %{FILEFLAGS:fflags} %{FILENAMES}\n]";
    let details = capture(
        Command::new(&rpm)
            .args(["-qp", "--qf", query])
            .arg(&package),
    )?;
    let mut actual: Vec<(String, String, String)> = Vec::new();
    for line in details.lines() {
        let mut fields = line.splitn(3, ' ');
        let (Some(perms), Some(flags), Some(path)) = (fields.next(), fields.next(), fields.next())
        else {
            bail!("unexpected line from rpm -qp --qf: {line:?}");
        };
        actual.push((path.to_owned(), perms.to_owned(), flags.to_owned()));
    }
    actual.sort();
    let wanted: Vec<(String, String, String)> = expected
        .iter()
        .map(|(p, m, f)| (p.clone(), (*m).to_owned(), (*f).to_owned()))
        .collect();
    if actual != wanted {
        let show = |rows: &[(String, String, String)]| {
            rows.iter()
                .map(|(p, m, f)| format!("{m} {f:2} {p}"))
                .collect::<Vec<_>>()
                .join("\n  ")
        };
        bail!(
            "modes and flags (rpm -qp --qf) are\n  {}\nexpected\n  {}",
            show(&actual),
            show(&wanted)
        );
    }
    println!("xtask: rpm: modes and flags as expected ({CRON_PATH} is %config(noreplace))");

    install_and_run(&rpm, root, &package)
}

/// `rpm -i --root` into `target/rpm/check-root`, run the installed binaries, `rpm -e`.
fn install_and_run(rpm: &Path, root: &Path, package: &Path) -> Result<()> {
    let install_root = target_dir(root).join("rpm").join("check-root");
    if install_root.exists() {
        fs::remove_dir_all(&install_root)
            .with_context(|| format!("removing the old {}", install_root.display()))?;
    }
    fs::create_dir_all(&install_root)
        .with_context(|| format!("creating {}", install_root.display()))?;
    let install_root = fs::canonicalize(&install_root)
        .with_context(|| format!("resolving {}", install_root.display()))?;

    // Debian's rpm refuses nothing but warns at length unless told it is meant.
    let debian_flag = capture(Command::new(rpm).arg("--help"))?
        .contains("--force-debian")
        .then_some("--force-debian");
    crate::run(
        Command::new(rpm)
            .args(["-i", "--root"])
            .arg(&install_root)
            .args(["--nodeps", "--nosignature"])
            .args(debian_flag)
            .arg(package),
    )?;
    for binary in dist::BINARIES {
        let installed = install_root.join("opt/pitr/bin").join(binary);
        let version = capture(Command::new(&installed).arg("--version"))?;
        let want = format!("{binary} {}", dist::version());
        ensure!(
            version.trim() == want,
            "{} --version printed {:?}, expected {want:?}",
            installed.display(),
            version.trim()
        );
        println!("xtask: installed {binary} --version: {}", version.trim());
    }
    let cron = install_root.join(CRON_PATH.trim_start_matches('/'));
    ensure!(cron.is_file(), "{} was not installed", cron.display());

    crate::run(
        Command::new(rpm)
            .args(["-e", "--root"])
            .arg(&install_root)
            .args(["--nodeps"])
            .args(debian_flag)
            .arg(NAME),
    )?;
    let left = install_root.join("opt/pitr");
    ensure!(
        !left.exists() && !cron.exists(),
        "rpm -e left {} or {} behind",
        left.display(),
        cron.display()
    );
    fs::remove_dir_all(&install_root)
        .with_context(|| format!("removing {}", install_root.display()))?;
    println!("xtask: rpm -i --root and rpm -e: installed, ran, removed cleanly");
    Ok(())
}

/// The `rpm` program: from PATH, or installed with apt-get on Debian as root.
fn ensure_rpm() -> Result<PathBuf> {
    if let Some(rpm) = deps::find_on_path("rpm") {
        return Ok(rpm);
    }
    let debian = Path::new("/etc/debian_version").exists();
    if !(debian && deps::is_root()) {
        let hint = if debian {
            "HINT: as root, run: apt-get install rpm (or run `cargo xtask rpm --check` as root, \
             which installs it)"
        } else {
            "HINT: install the rpm program (package rpm) and put it on PATH"
        };
        bail!("checking the package needs the rpm program, which is not on PATH\n{hint}");
    }
    deps::install(&["rpm"])?;
    deps::find_on_path("rpm").context("rpm is still not on PATH after apt-get install rpm")
}

/// Runs a command and returns its standard output; a non-zero exit is an error that carries
/// the command's standard error.
fn capture(cmd: &mut Command) -> Result<String> {
    let shown = crate::display(cmd);
    let output = cmd
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("{shown} printed invalid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_has_version_release_and_arch() -> Result<()> {
        let name = file_name("1")?;
        assert_eq!(name, format!("pitr-{}-1.{}.rpm", dist::version(), arch()?));
        Ok(())
    }

    #[test]
    fn expected_entries_cover_the_layout_and_the_cron_file() {
        let entries = expected_entries();
        assert_eq!(entries.len(), dist::expected_paths().len() + 1);
        let find = |path: &str| entries.iter().find(|(p, _, _)| p == path);
        assert_eq!(
            find("/etc/cron.d/pitr").map(|(_, m, f)| (*m, *f)),
            Some(("-rw-r--r--", "cn"))
        );
        assert_eq!(
            find("/opt/pitr/bin/pitr-restore").map(|(_, m, f)| (*m, *f)),
            Some(("-rwxr-xr-x", ""))
        );
        assert_eq!(
            find("/opt/pitr/share/doc/pitr/pitr-archive.1").map(|(_, m, f)| (*m, *f)),
            Some(("-rw-r--r--", "d"))
        );
        assert_eq!(
            find("/opt/pitr/share/pitr/examples").map(|(_, m, f)| (*m, *f)),
            Some(("drwxr-xr-x", ""))
        );
        let paths: Vec<&String> = entries.iter().map(|(p, _, _)| p).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
    }

    /// Packages a small staged tree (no release build) and reads it back with the crate's own
    /// parser: name, version, license, file modes and flags.
    #[test]
    fn package_holds_the_staged_items_with_modes_and_flags() -> Result<()> {
        let scratch = tempfile::tempdir()?;
        let dist_dir = scratch.path().join("dist");
        let examples_dir = dist_dir.join("opt/pitr/share/pitr/examples");
        fs::create_dir_all(&examples_dir)?;
        fs::create_dir_all(dist_dir.join("opt/pitr/bin"))?;
        fs::write(examples_dir.join(examples::CRON), "# cron\n")?;
        fs::write(dist_dir.join("opt/pitr/bin/pitr-archive"), "#!/bin/sh\n")?;
        let item = |path: &str, kind| dist::Item {
            path: path.to_owned(),
            kind,
        };
        let staged = Staged {
            dist_dir,
            items: vec![
                item("/opt/pitr", Kind::Dir),
                item("/opt/pitr/bin", Kind::Dir),
                item("/opt/pitr/bin/pitr-archive", Kind::Binary),
                item("/opt/pitr/share/pitr/examples/pitr.cron", Kind::Example),
            ],
            source_date: 1_795_574_595,
        };
        let out = scratch.path().join("rpm");
        let path = package(&staged, "7", &out)?;
        assert_eq!(path, out.join(file_name("7")?));

        let pkg = rpm::Package::open(&path)?;
        assert_eq!(pkg.metadata.get_name()?, "pitr");
        assert_eq!(pkg.metadata.get_release()?, "7");
        assert_eq!(pkg.metadata.get_license()?, "PostgreSQL");
        let mut files: Vec<(String, u16, bool, bool)> = pkg
            .metadata
            .get_file_entries()?
            .iter()
            .map(|e| {
                (
                    e.path().display().to_string(),
                    e.mode().permissions(),
                    e.flags().contains(rpm::FileFlags::CONFIG),
                    e.flags().contains(rpm::FileFlags::NOREPLACE),
                )
            })
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                ("/etc/cron.d/pitr".to_owned(), 0o644, true, true),
                ("/opt/pitr".to_owned(), 0o755, false, false),
                ("/opt/pitr/bin".to_owned(), 0o755, false, false),
                ("/opt/pitr/bin/pitr-archive".to_owned(), 0o755, false, false),
                (
                    "/opt/pitr/share/pitr/examples/pitr.cron".to_owned(),
                    0o644,
                    false,
                    false
                ),
            ]
        );

        assert!(package(&staged, "1-2", &out).is_err());
        assert!(check_release("").is_err());
        assert!(check_release("1 2").is_err());
        check_release("2.el9")?;
        Ok(())
    }
}

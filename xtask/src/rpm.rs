//! `cargo xtask rpm`: an installable RPM of the `cargo xtask dist` tree, written by the
//! pure-Rust `rpm` crate, so building it needs no rpmbuild on the machine.
//!
//! The package `pitr-VERSION-RELEASE.ARCH.rpm` (in `target/rpm/`) holds exactly the staged
//! tree of [`crate::dist`], with the modes of [`crate::dist::Kind`] (0755 directories and
//! binaries, 0644 the rest): it owns `/opt/pitr` and everything below it (documents and man
//! pages flagged `%doc`) and `/etc/pitr`, and marks the files in `/etc` (`/etc/pitr/*.conf`,
//! `/etc/cron.d/pitr` with its jobs commented out, `/etc/profile.d/pitr.sh`)
//! `%config(noreplace)`: installing the package runs nothing, and an operator's edits survive
//! upgrades (rpm writes the new file as `.rpmnew`). It requires rsync (pitr-archive
//! `--dst-remote` and pitr-backup send with it). It has no URL unless `--url` gives one: the
//! project has no public home to point at. The build is dated with `SOURCE_DATE_EPOCH` (else the
//! last commit's time), which also caps the files' mtimes, so the same tree gives the same
//! package.
//!
//! `--check` then verifies the result with the real `rpm` program (installed with apt-get on
//! Debian as root, like the PostgreSQL packages of `cargo xtask test`): `rpm -K` digests, the
//! `rpm -qlp` list against [`crate::dist::expected_paths`] exactly, modes and file flags, the
//! URL and the rsync requirement, `rpm -i --root` into a scratch root, the installed binaries'
//! `--version`, the installed `/etc/profile.d/pitr.sh` finding each program and each man page
//! by name (with `/opt/pitr` moved into the scratch root), `man` rendering each page, and
//! `rpm -e` removing it all.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, ensure, Context, Result};
use argh::FromArgs;

use crate::dist::{self, Kind, Staged};
use crate::{deps, project_root, target_dir};

/// The package name.
const NAME: &str = "pitr";

const SUMMARY: &str = "PostgreSQL continuous archiving and point-in-time recovery tools";

const DESCRIPTION: &str = "\
pitr is PostgreSQL continuous archiving and point-in-time recovery: pitr-archive \
(archive_command: compressed, checksummed, durably written WAL archives on local directories, \
rsync targets or pipes), pitr-restore (restore_command for warm spares and streaming standbys), \
pitr-backup (base backups of a running cluster), pitr-cleanup (retention of backups and \
WAL) and pitr-monitor (Nagios, JSON and Prometheus checks: archiving and restore lag, errors, \
backup sets and their recoverable windows, gaps and damage in the archive), for PostgreSQL 13 \
and later. Installed under /opt/pitr: programs in /opt/pitr/bin, man \
pages in /opt/pitr/share/man, documents in /opt/pitr/share/doc/pitr and example configuration \
in /opt/pitr/share/pitr/examples. Configuration in /etc: the programs' --config-file examples \
in /etc/pitr, a cron file whose jobs are commented out in /etc/cron.d/pitr, and \
/etc/profile.d/pitr.sh, which puts /opt/pitr/bin on PATH and the man pages on MANPATH.";

/// Build an installable RPM of the `cargo xtask dist` tree (/opt/pitr and its files in /etc)
/// in target/rpm.
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

    /// the package's URL field (default: none, as the project has no public home yet)
    #[argh(option)]
    url: Option<String>,
}

/// `cargo xtask rpm`.
pub fn run(args: &RpmArgs) -> Result<ExitCode> {
    // Before the minute of release build, not after.
    check_release(&args.release)?;
    let root = project_root();
    let staged = dist::build(&root)?;
    let out_dir = target_dir(&root).join("rpm");
    let package = package(&staged, &args.release, args.url.as_deref(), &out_dir)?;
    println!("xtask: rpm: wrote {}", package.display());
    if args.check {
        check(&root, &package, args.url.as_deref())?;
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
pub fn package(
    staged: &Staged,
    release: &str,
    url: Option<&str>,
    out_dir: &Path,
) -> Result<PathBuf> {
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
        .description(DESCRIPTION)
        .group("Applications/Databases")
        // pitr-archive --dst-remote, pitr-backup and pitr-restore --from-backup of a remote set
        // run rsync, and the runbook's set-up needs it on every host.
        .requires(rpm::Dependency::any("rsync"));
    if let Some(url) = url {
        builder.url(url);
    }
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
            Kind::Config => rpm::FileOptions::new(&item.path).config().noreplace(),
        };
        let mode = u16::try_from(item.kind.mode()).context("file mode out of range")?;
        builder
            .with_file(staged.source(item), options.permissions(mode))
            .with_context(|| format!("adding {}", item.path))?;
    }
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
            } else if path.starts_with("/opt/pitr/share/doc/pitr/")
                || path.starts_with("/opt/pitr/share/man/man1/")
            {
                ("-rw-r--r--", "d")
            } else if path.starts_with("/opt/pitr/share/pitr/examples/") {
                ("-rw-r--r--", "")
            } else if path.starts_with("/etc/") && path != dist::CONFIG_DIR {
                ("-rw-r--r--", "cn")
            } else {
                ("drwxr-xr-x", "")
            };
            (path, perms, flags)
        })
        .collect();
    entries.sort();
    entries
}

/// Checks the package with the `rpm` program and a trial install; see the module doc.
/// `url_given` is the `--url` it was built with.
pub fn check(root: &Path, package: &Path, url_given: Option<&str>) -> Result<()> {
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
    println!("xtask: rpm: modes and flags as expected (the files in /etc are %config(noreplace))");

    let url = capture(
        Command::new(&rpm)
            .args(["-qp", "--qf", "%{URL}"])
            .arg(&package),
    )?;
    let want_url = url_given.unwrap_or("(none)");
    ensure!(
        url.trim() == want_url,
        "the package's URL is {:?}, expected {want_url:?}",
        url.trim()
    );
    let requires = capture(Command::new(&rpm).arg("-qpR").arg(&package))?;
    ensure!(
        requires.lines().any(|line| line.trim() == "rsync"),
        "the package does not require rsync; rpm -qpR:\n{requires}"
    );
    println!("xtask: rpm: URL {want_url}, requires rsync");

    install_and_run(&rpm, root, &package)
}

/// `rpm -i --root` into `target/rpm/check-root`, run the installed binaries, find them and
/// their man pages through the installed profile script, `rpm -e`.
fn install_and_run(rpm: &Path, root: &Path, package: &Path) -> Result<()> {
    let scratch = target_dir(root).join("rpm");
    let install_root = scratch.join("check-root");
    if install_root.exists() {
        fs::remove_dir_all(&install_root)
            .with_context(|| format!("removing the old {}", install_root.display()))?;
    }
    fs::create_dir_all(&install_root)
        .with_context(|| format!("creating {}", install_root.display()))?;
    let install_root = fs::canonicalize(&install_root)
        .with_context(|| format!("resolving {}", install_root.display()))?;
    let in_root = |path: &str| install_root.join(path.trim_start_matches('/'));

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
    for path in dist::expected_paths() {
        ensure!(in_root(&path).exists(), "{path} was not installed");
    }
    for binary in dist::BINARIES {
        let installed = in_root("/opt/pitr/bin").join(binary);
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

    dist::check_man_pages(&in_root(dist::MAN_DIR))?;
    println!("xtask: man -M: each installed page found and rendered without warnings");
    profile_finds_everything(&install_root, &scratch)?;

    crate::run(
        Command::new(rpm)
            .args(["-e", "--root"])
            .arg(&install_root)
            .args(["--nodeps"])
            .args(debian_flag)
            .arg(NAME),
    )?;
    let left: Vec<String> = dist::expected_paths()
        .into_iter()
        .filter(|path| in_root(path).exists())
        .collect();
    ensure!(left.is_empty(), "rpm -e left behind: {}", left.join(", "));
    fs::remove_dir_all(&install_root)
        .with_context(|| format!("removing {}", install_root.display()))?;
    println!("xtask: rpm -i --root and rpm -e: installed, ran, removed cleanly");
    Ok(())
}

/// What a login shell gets from the installed `/etc/profile.d/pitr.sh`: sourced in a clean
/// environment with `/opt/pitr` replaced by the scratch root's copy (the only change), every
/// program must run by name and `man -w` must find every page by name.
fn profile_finds_everything(install_root: &Path, scratch: &Path) -> Result<()> {
    let installed = install_root.join(dist::PROFILE_PATH.trim_start_matches('/'));
    let text = fs::read_to_string(&installed)
        .with_context(|| format!("reading {}", installed.display()))?;
    let prefix = install_root.join(dist::PREFIX.trim_start_matches('/'));
    let moved = text.replace(dist::PREFIX, &prefix.display().to_string());
    ensure!(
        moved != text,
        "{} never names {}",
        dist::PROFILE_PATH,
        dist::PREFIX
    );
    let script = scratch.join("profile-check.sh");
    fs::write(&script, moved).with_context(|| format!("writing {}", script.display()))?;

    let man = deps::ensure_program("man", "man-db", "checking the man pages needs man")?;
    let man_dir = man
        .parent()
        .map_or_else(|| PathBuf::from("/usr/bin"), Path::to_path_buf);
    let bare_path = format!("{}:/usr/bin:/bin", man_dir.display());
    let output = capture(
        Command::new("sh")
            .env_clear()
            .env("PATH", &bare_path)
            .args([
                "-c",
                ". \"$0\"; shift; for p in \"$@\"; do \
                 \"$p\" --version && man -w \"$p\" || exit 1; done",
            ])
            .arg(&script)
            // Every shipped program: the list dist packs.
            .arg("--")
            .args(dist::BINARIES),
    )?;
    let mut want = Vec::new();
    for binary in dist::BINARIES {
        want.push(format!("{binary} {}", dist::version()));
        want.push(
            prefix
                .join("share/man/man1")
                .join(format!("{binary}.1"))
                .display()
                .to_string(),
        );
    }
    let got: Vec<&str> = output.lines().collect();
    ensure!(
        got == want,
        "with {} sourced, the programs and pages found by name were\n  {}\nexpected\n  {}",
        dist::PROFILE_PATH,
        got.join("\n  "),
        want.join("\n  ")
    );
    fs::remove_file(&script).with_context(|| format!("removing {}", script.display()))?;
    println!(
        "xtask: {}: each program and man page found by name",
        dist::PROFILE_PATH
    );
    Ok(())
}

/// The `rpm` program: from PATH, or installed with apt-get on Debian as root.
fn ensure_rpm() -> Result<PathBuf> {
    deps::ensure_program("rpm", "rpm", "checking the package needs rpm")
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
    fn expected_entries_cover_the_layout_with_config_and_doc_flags() {
        let entries = expected_entries();
        assert_eq!(entries.len(), dist::expected_paths().len());
        let find = |path: &str| {
            entries
                .iter()
                .find(|(p, _, _)| p == path)
                .map(|(_, m, f)| (*m, *f))
        };
        for config in [
            "/etc/cron.d/pitr",
            "/etc/profile.d/pitr.sh",
            "/etc/pitr/archive.conf",
            "/etc/pitr/cleanup.conf",
        ] {
            assert_eq!(find(config), Some(("-rw-r--r--", "cn")), "{config}");
        }
        assert_eq!(find("/etc/pitr"), Some(("drwxr-xr-x", "")));
        assert_eq!(find("/opt/pitr/bin/pitr-restore"), Some(("-rwxr-xr-x", "")));
        assert_eq!(
            find("/opt/pitr/share/man/man1/pitr-archive.1"),
            Some(("-rw-r--r--", "d"))
        );
        assert_eq!(
            find("/opt/pitr/share/doc/pitr/runbook.md"),
            Some(("-rw-r--r--", "d"))
        );
        assert_eq!(
            find("/opt/pitr/share/pitr/examples"),
            Some(("drwxr-xr-x", ""))
        );
        let paths: Vec<&String> = entries.iter().map(|(p, _, _)| p).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
    }

    /// Packages a small staged tree (no release build) and reads it back with the crate's own
    /// parser: name, version, license, URL, the rsync requirement, file modes and flags.
    #[test]
    fn package_holds_the_staged_items_with_modes_and_flags() -> Result<()> {
        let scratch = tempfile::tempdir()?;
        let dist_dir = scratch.path().join("dist");
        fs::create_dir_all(dist_dir.join("opt/pitr/bin"))?;
        fs::create_dir_all(dist_dir.join("etc/cron.d"))?;
        fs::write(dist_dir.join("etc/cron.d/pitr"), "# cron\n")?;
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
                item("/etc/cron.d/pitr", Kind::Config),
            ],
            source_date: 1_795_574_595,
        };
        let out = scratch.path().join("rpm");
        let path = package(&staged, "7", None, &out)?;
        assert_eq!(path, out.join(file_name("7")?));

        let pkg = rpm::Package::open(&path)?;
        assert_eq!(pkg.metadata.get_name()?, "pitr");
        assert_eq!(pkg.metadata.get_release()?, "7");
        assert_eq!(pkg.metadata.get_license()?, "PostgreSQL");
        assert!(pkg.metadata.get_url().is_err(), "a URL without --url");
        let requires: Vec<String> = pkg
            .metadata
            .get_requires()?
            .iter()
            .map(|d| d.name.clone())
            .collect();
        assert!(requires.contains(&"rsync".to_owned()), "{requires:?}");
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
            ]
        );

        let with_url = package(&staged, "8", Some("https://pitr.example.org/"), &out)?;
        let pkg = rpm::Package::open(&with_url)?;
        assert_eq!(pkg.metadata.get_url()?, "https://pitr.example.org/");

        assert!(package(&staged, "1-2", None, &out).is_err());
        assert!(check_release("").is_err());
        assert!(check_release("1 2").is_err());
        check_release("2.el9")?;
        Ok(())
    }
}

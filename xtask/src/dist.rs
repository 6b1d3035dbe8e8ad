//! `cargo xtask dist`: a release build staged as the tree that gets installed, rooted at
//! `target/dist` (the RPM packages exactly this tree).
//!
//! `target/dist/opt/pitr/` receives `bin/` (the five binaries, stripped by the release
//! profile), `share/man/man1/` (a man page per binary made from its `--help` by
//! [`crate::manpage`], so that `man` finds it through `PATH` or `MANPATH`), `share/doc/pitr/`
//! (README.md, ARCHITECTURE.md, docs/runbook.md) and `share/pitr/examples/` (the files of
//! `packaging/examples/`, after checking every option they give a binary against its `--help`,
//! see [`crate::examples`]). `target/dist/etc/` receives the configuration the RPM marks
//! `%config(noreplace)`: `pitr/` (the `--config-file` examples), `cron.d/pitr` (the cron
//! example, jobs commented out) and `profile.d/pitr.sh` (`packaging/profile.d/pitr.sh`: `PATH`
//! and `MANPATH` for login shells). Modes are set explicitly (0755 for directories and
//! binaries, 0644 for the rest) whatever the umask, and the tree is rebuilt from scratch each
//! time. [`expected_paths`] is the layout written out by hand: the staging and the RPM check
//! (`cargo xtask rpm --check`) are compared with it. [`check_man_pages`] has `man` itself find
//! and render each page.
//!
//! Install from source: `cargo xtask dist`, then copy `target/dist/opt/pitr` to `/opt/pitr` and
//! `target/dist/etc/profile.d/pitr.sh` to `/etc/profile.d`.

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use argh::FromArgs;

use crate::{cargo, examples, help, manpage, project_root, target_dir};

/// The binaries we ship, which are also the names of their packages.
pub const BINARIES: [&str; 5] = [
    "pitr-archive",
    "pitr-restore",
    "pitr-backup",
    "pitr-cleanup",
    "pitr-monitor",
];

/// Where the product is installed.
pub const PREFIX: &str = "/opt/pitr";

/// Where the man pages are installed; `man` finds them from `/opt/pitr/bin` on `PATH`
/// (man-db looks in `../share/man` of each `PATH` directory) or from `MANPATH`.
pub const MAN_DIR: &str = "/opt/pitr/share/man";

/// The documents shipped in `share/doc/pitr` (repository paths; each must exist).
const DOCS: &[&str] = &["README.md", "ARCHITECTURE.md", "docs/runbook.md"];

/// The login shell profile script, in the repository and installed.
pub const PROFILE_SOURCE: &str = "packaging/profile.d/pitr.sh";
/// Where the profile script is installed.
pub const PROFILE_PATH: &str = "/etc/profile.d/pitr.sh";
/// Where the cron example is installed.
pub const CRON_PATH: &str = "/etc/cron.d/pitr";
/// Where the `--config-file` examples are installed.
pub const CONFIG_DIR: &str = "/etc/pitr";

/// Build a release and stage it as target/dist: opt/pitr (bin, share/man/man1,
/// share/doc/pitr, share/pitr/examples) and etc (pitr/*.conf, cron.d/pitr, profile.d/pitr.sh).
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "dist",
    note = "Runs `cargo build --release --locked --bins` for the five binaries. To install from \
            source: cp -a target/dist/opt/pitr /opt/ and cp target/dist/etc/profile.d/pitr.sh \
            /etc/profile.d/ (as root); target/dist/etc/pitr and target/dist/etc/cron.d hold \
            the configuration examples the RPM puts into /etc."
)]
pub struct DistArgs {}

/// The version of the product: the workspace version, which xtask inherits.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// What a staged path is, which decides its mode and how the RPM marks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory the package owns.
    Dir,
    /// An executable in `bin/`.
    Binary,
    /// Documentation: the Markdown files and the man pages.
    Doc,
    /// An example configuration file.
    Example,
    /// A file in `/etc`, which the RPM marks `%config(noreplace)`.
    Config,
}

impl Kind {
    /// The permission bits it is staged and packaged with.
    pub fn mode(self) -> u32 {
        match self {
            Kind::Dir | Kind::Binary => 0o755,
            Kind::Doc | Kind::Example | Kind::Config => 0o644,
        }
    }
}

/// One staged file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Where it is installed: `/opt/pitr/bin/pitr-archive`.
    pub path: String,
    /// What it is.
    pub kind: Kind,
}

/// The staged tree.
#[derive(Debug)]
pub struct Staged {
    /// `target/dist`: the install root the paths are relative to.
    pub dist_dir: PathBuf,
    /// Every directory and file, parents before children.
    pub items: Vec<Item>,
    /// Seconds since the epoch the build is dated with (`SOURCE_DATE_EPOCH`, else the last
    /// commit's time).
    pub source_date: u32,
}

impl Staged {
    /// Where a staged item is on disk.
    pub fn source(&self, item: &Item) -> PathBuf {
        self.dist_dir.join(item.path.trim_start_matches('/'))
    }
}

/// `cargo xtask dist`.
pub fn run(_args: &DistArgs) -> Result<ExitCode> {
    let root = project_root();
    let staged = build(&root)?;
    let files = staged.items.iter().filter(|i| i.kind != Kind::Dir).count();
    println!(
        "xtask: dist: {files} files staged in {}",
        staged.dist_dir.display()
    );
    println!(
        "xtask: install from source with: cp -a {} /opt/ && cp {} /etc/profile.d/",
        staged
            .dist_dir
            .join(PREFIX.trim_start_matches('/'))
            .display(),
        staged
            .dist_dir
            .join(PROFILE_PATH.trim_start_matches('/'))
            .display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Builds the release binaries and stages them in `target/dist`.
pub fn build(root: &Path) -> Result<Staged> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root)
        .args(["build", "--release", "--locked", "--bins"]);
    // Only the shipped binaries: `--bins` alone would also build xtask in release mode.
    for binary in BINARIES {
        cmd.args(["--package", binary]);
    }
    crate::run(&mut cmd)?;
    let target = target_dir(root);
    stage(
        root,
        &target.join("release"),
        &target.join("dist"),
        source_date_epoch(root),
    )
}

/// Stages the binaries of `bin_dir`, the documents, man pages and examples under
/// `dist_dir/opt/pitr` and the configuration under `dist_dir/etc`, replacing whatever was
/// there.
pub fn stage(root: &Path, bin_dir: &Path, dist_dir: &Path, source_date: u32) -> Result<Staged> {
    if dist_dir.exists() {
        fs::remove_dir_all(dist_dir)
            .with_context(|| format!("removing the old {}", dist_dir.display()))?;
    }
    let mut staged = Staged {
        dist_dir: dist_dir.to_path_buf(),
        items: Vec::new(),
        source_date,
    };
    let bin = format!("{PREFIX}/bin");
    let doc = format!("{PREFIX}/share/doc/pitr");
    let man1 = format!("{MAN_DIR}/man1");
    let examples_dir = format!("{PREFIX}/share/pitr/examples");
    for dir in [
        PREFIX.to_owned(),
        bin.clone(),
        format!("{PREFIX}/share"),
        format!("{PREFIX}/share/doc"),
        doc.clone(),
        MAN_DIR.to_owned(),
        man1.clone(),
        format!("{PREFIX}/share/pitr"),
        examples_dir.clone(),
        CONFIG_DIR.to_owned(),
    ] {
        add_dir(&mut staged, dir)?;
    }
    // System directories the package puts a file into but does not own.
    for dir in ["/etc/cron.d", "/etc/profile.d"] {
        let path = dist_dir.join(dir.trim_start_matches('/'));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        set_mode(&path, Kind::Dir.mode())?;
    }

    for binary in BINARIES {
        let from = bin_dir.join(binary);
        add_copy(&mut staged, &from, format!("{bin}/{binary}"), Kind::Binary)?;
    }

    for path in DOCS {
        let from = root.join(path);
        let name = Path::new(path)
            .file_name()
            .map_or_else(|| (*path).to_owned(), |n| n.to_string_lossy().into_owned());
        add_copy(&mut staged, &from, format!("{doc}/{name}"), Kind::Doc)?;
    }

    add_man_pages(&mut staged, bin_dir, &man1)?;

    // Never ship an example whose options the binaries do not accept.
    let checked = examples::check(root, bin_dir)?;
    if !checked.problems.is_empty() {
        bail!(
            "example files out of step with the binaries:\n{}",
            checked.problems.join("\n")
        );
    }
    println!(
        "xtask: dist: {} options of the example files checked against --help",
        checked.checked
    );
    for name in examples::FILES {
        let from = examples::dir(root).join(name);
        add_copy(
            &mut staged,
            &from,
            format!("{examples_dir}/{name}"),
            Kind::Example,
        )?;
    }
    for name in examples::CONFIGS {
        let from = examples::dir(root).join(name);
        add_copy(
            &mut staged,
            &from,
            format!("{CONFIG_DIR}/{name}"),
            Kind::Config,
        )?;
    }
    let cron = examples::dir(root).join(examples::CRON);
    add_copy(&mut staged, &cron, CRON_PATH.to_owned(), Kind::Config)?;
    add_copy(
        &mut staged,
        &root.join(PROFILE_SOURCE),
        PROFILE_PATH.to_owned(),
        Kind::Config,
    )?;
    Ok(staged)
}

/// The man page of each binary, made from its `--help` (every form of it), into `man1`;
/// refused when a usage is out of step with the options.
fn add_man_pages(staged: &mut Staged, bin_dir: &Path, man1: &str) -> Result<()> {
    let date = civil_date(staged.source_date);
    for binary in BINARIES {
        let help = help::of_tool(bin_dir, binary)?;
        let problems = help::usage_problems(&help);
        if !problems.is_empty() {
            bail!(
                "the usage of {binary} --help is out of step with its options:\n{}",
                problems.join("\n")
            );
        }
        let page = manpage::render(
            &help,
            &manpage::Page {
                tool: binary,
                version: version(),
                date: &date,
                see_also: &BINARIES,
            },
        )?;
        add_contents(staged, page.as_bytes(), format!("{man1}/{binary}.1"))?;
    }
    Ok(())
}

fn add_dir(staged: &mut Staged, path: String) -> Result<()> {
    let item = Item {
        path,
        kind: Kind::Dir,
    };
    let dir = staged.source(&item);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    set_mode(&dir, Kind::Dir.mode())?;
    staged.items.push(item);
    Ok(())
}

fn add_copy(staged: &mut Staged, from: &Path, path: String, kind: Kind) -> Result<()> {
    let item = Item { path, kind };
    let to = staged.source(&item);
    fs::copy(from, &to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    set_mode(&to, kind.mode())?;
    staged.items.push(item);
    Ok(())
}

fn add_contents(staged: &mut Staged, contents: &[u8], path: String) -> Result<()> {
    let item = Item {
        path,
        kind: Kind::Doc,
    };
    let to = staged.source(&item);
    fs::write(&to, contents).with_context(|| format!("writing {}", to.display()))?;
    set_mode(&to, Kind::Doc.mode())?;
    staged.items.push(item);
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mode:o} on {}", path.display()))
}

/// Every path the package owns, directories included, in staging order: the layout of
/// SPEC.md "Packaging", written out by hand so that a change to it is a visible change here.
pub fn expected_paths() -> Vec<String> {
    let paths: Vec<&str> = vec![
        "/opt/pitr",
        "/opt/pitr/bin",
        "/opt/pitr/share",
        "/opt/pitr/share/doc",
        "/opt/pitr/share/doc/pitr",
        "/opt/pitr/share/man",
        "/opt/pitr/share/man/man1",
        "/opt/pitr/share/pitr",
        "/opt/pitr/share/pitr/examples",
        "/etc/pitr",
        "/opt/pitr/bin/pitr-archive",
        "/opt/pitr/bin/pitr-restore",
        "/opt/pitr/bin/pitr-backup",
        "/opt/pitr/bin/pitr-cleanup",
        "/opt/pitr/bin/pitr-monitor",
        "/opt/pitr/share/doc/pitr/README.md",
        "/opt/pitr/share/doc/pitr/ARCHITECTURE.md",
        "/opt/pitr/share/doc/pitr/runbook.md",
        "/opt/pitr/share/man/man1/pitr-archive.1",
        "/opt/pitr/share/man/man1/pitr-restore.1",
        "/opt/pitr/share/man/man1/pitr-backup.1",
        "/opt/pitr/share/man/man1/pitr-cleanup.1",
        "/opt/pitr/share/man/man1/pitr-monitor.1",
        "/opt/pitr/share/pitr/examples/archive.conf",
        "/opt/pitr/share/pitr/examples/restore.conf",
        "/opt/pitr/share/pitr/examples/backup.conf",
        "/opt/pitr/share/pitr/examples/cleanup.conf",
        "/opt/pitr/share/pitr/examples/pitr.cron",
        "/opt/pitr/share/pitr/examples/rsyncd.conf",
        "/opt/pitr/share/pitr/examples/postgresql-primary.conf",
        "/opt/pitr/share/pitr/examples/postgresql-warm-standby.conf",
        "/opt/pitr/share/pitr/examples/postgresql-streaming-standby.conf",
        "/etc/pitr/archive.conf",
        "/etc/pitr/restore.conf",
        "/etc/pitr/backup.conf",
        "/etc/pitr/cleanup.conf",
        "/etc/cron.d/pitr",
        "/etc/profile.d/pitr.sh",
    ];
    paths.into_iter().map(str::to_owned).collect()
}

/// Has `man` find and render each binary's page in `man_dir` (an installed or staged
/// `share/man`): `man -M man_dir -w NAME` must name `man_dir/man1/NAME.1`, and the page must
/// render without a warning from `man --warnings` and show every section of
/// [`manpage::REQUIRED_SECTIONS`]. Installs man-db on Debian as root when `man` is missing.
pub fn check_man_pages(man_dir: &Path) -> Result<()> {
    let man = crate::deps::ensure_program("man", "man-db", "checking the man pages needs man")?;
    for binary in BINARIES {
        let found = capture_output(
            Command::new(&man)
                .arg("-M")
                .arg(man_dir)
                .args(["-w", binary]),
        )?;
        let want = man_dir.join("man1").join(format!("{binary}.1"));
        ensure!(
            Path::new(found.stdout.trim()) == want,
            "man -M {} -w {binary} printed {:?}, expected {}",
            man_dir.display(),
            found.stdout.trim(),
            want.display()
        );
        let rendered = capture_output(
            Command::new(&man)
                .env("MANWIDTH", "80")
                .env("MAN_KEEP_FORMATTING", "")
                .env_remove("MANPAGER")
                .env_remove("PAGER")
                .args(["--warnings", "-P", "cat", "-M"])
                .arg(man_dir)
                .arg(binary),
        )?;
        ensure!(
            rendered.stderr.trim().is_empty(),
            "man --warnings {binary} warned:\n{}",
            rendered.stderr.trim()
        );
        for section in manpage::REQUIRED_SECTIONS {
            ensure!(
                rendered.stdout.lines().any(|line| line == section),
                "man {binary} shows no {section} section:\n{}",
                rendered.stdout
            );
        }
    }
    Ok(())
}

/// What a command printed.
struct Output {
    stdout: String,
    stderr: String,
}

/// Runs a command; a failure to start it or a non-zero exit is an error carrying its stderr.
fn capture_output(cmd: &mut Command) -> Result<Output> {
    let shown = crate::display(cmd);
    let output = cmd
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        bail!("{shown} failed ({}): {}", output.status, stderr.trim());
    }
    Ok(Output {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    })
}

/// The time the build is dated with, for reproducible output: `SOURCE_DATE_EPOCH` if set, else
/// the time of the last commit, else now.
pub fn source_date_epoch(root: &Path) -> u32 {
    if let Some(epoch) = env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|value| value.trim().parse().ok())
    {
        return epoch;
    }
    let commit_time = Command::new("git")
        .current_dir(root)
        .args(["log", "-1", "--format=%ct"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok());
    commit_time.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|since| u32::try_from(since.as_secs()).ok())
            .unwrap_or(0)
    })
}

/// `YYYY-MM-DD` (UTC) of a Unix time, by the days-to-civil algorithm of Howard Hinnant's
/// "chrono-Compatible Low-Level Date Algorithms".
pub fn civil_date(epoch: u32) -> String {
    let days = i64::from(epoch) / 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The debug binaries of the workspace, built once per test run (`cargo build --workspace
/// --bins`, the build `cargo xtask test` makes first, so there it costs nothing): tests that
/// read the binaries' `--help` need them, and a plain `cargo test` does not build them.
#[cfg(test)]
pub fn debug_binaries() -> Result<PathBuf> {
    use std::sync::OnceLock;
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = project_root();
            let mut cmd = Command::new(cargo());
            cmd.current_dir(&root)
                .args(["build", "--quiet", "--workspace", "--bins"]);
            let status = cmd
                .status()
                .map_err(|e| format!("cannot run {}: {e}", crate::display(&cmd)))?;
            if !status.success() {
                return Err(format!("{} failed ({status})", crate::display(&cmd)));
            }
            Ok(target_dir(&root).join("debug"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_date_of_known_days() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(951_782_400), "2000-02-29");
        assert_eq!(civil_date(1_795_574_595), "2026-11-25");
        assert_eq!(civil_date(u32::MAX), "2106-02-07");
    }

    #[test]
    fn modes_are_0755_for_dirs_and_binaries_0644_for_the_rest() {
        assert_eq!(Kind::Dir.mode(), 0o755);
        assert_eq!(Kind::Binary.mode(), 0o755);
        assert_eq!(Kind::Doc.mode(), 0o644);
        assert_eq!(Kind::Example.mode(), 0o644);
        assert_eq!(Kind::Config.mode(), 0o644);
    }

    /// The profile script in a login shell's place: sourced (twice, as nested login shells
    /// do) with a bare PATH and no MANPATH, it adds /opt/pitr/bin and /opt/pitr/share/man once,
    /// keeping man's default search path (the empty field); an existing MANPATH is kept in front.
    #[test]
    fn profile_script_puts_pitr_on_path_and_manpath_once() -> Result<()> {
        let script = project_root().join(PROFILE_SOURCE);
        let run = |manpath: Option<&str>| -> Result<String> {
            let mut cmd = Command::new("sh");
            cmd.env_clear()
                .env("PATH", "/usr/bin:/bin")
                .args([
                    "-c",
                    ". \"$0\"; . \"$0\"; printf '%s|%s' \"$PATH\" \"$MANPATH\"",
                ])
                .arg(&script);
            if let Some(manpath) = manpath {
                cmd.env("MANPATH", manpath);
            }
            let output = cmd.output()?;
            ensure!(output.status.success(), "sh failed: {output:?}");
            Ok(String::from_utf8(output.stdout)?)
        };
        assert_eq!(
            run(None)?,
            "/usr/bin:/bin:/opt/pitr/bin|:/opt/pitr/share/man"
        );
        assert_eq!(
            run(Some("/usr/share/man"))?,
            "/usr/bin:/bin:/opt/pitr/bin|/usr/share/man:/opt/pitr/share/man"
        );
        Ok(())
    }

    #[test]
    fn source_date_epoch_prefers_the_environment_variable() {
        // Without the variable (tests do not set it), the last commit's time or now: both are
        // well after the project started.
        if env::var_os("SOURCE_DATE_EPOCH").is_none() {
            assert!(source_date_epoch(&project_root()) > 1_700_000_000);
        }
    }

    /// Stages the debug binaries into a temporary directory and checks the tree against the
    /// hand-written layout, file by file, with modes; then every option of every binary's
    /// `--help` must appear in its man page, which has every required section, and `man -M`
    /// finds and renders each page.
    #[test]
    fn stage_lays_out_the_documented_tree_with_man_pages() -> Result<()> {
        let root = project_root();
        let bin_dir = debug_binaries()?;
        let scratch = tempfile::tempdir()?;
        let dist = scratch.path().join("dist");
        let staged = stage(&root, &bin_dir, &dist, 1_795_574_595)?;

        let paths: Vec<&str> = staged.items.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, expected_paths());
        for item in &staged.items {
            let meta = fs::metadata(staged.source(item))?;
            assert_eq!(meta.is_dir(), item.kind == Kind::Dir, "{}", item.path);
            assert_eq!(
                meta.permissions().mode() & 0o7777,
                item.kind.mode(),
                "{}",
                item.path
            );
        }

        for binary in BINARIES {
            let help = help::of_tool(&bin_dir, binary)?;
            assert_eq!(help::usage_problems(&help), Vec::<String>::new());
            let page =
                fs::read_to_string(dist.join(format!("opt/pitr/share/man/man1/{binary}.1")))?;
            let titles = manpage::section_titles(&page);
            let mut required = manpage::REQUIRED_SECTIONS.iter();
            let in_order = titles
                .iter()
                .filter(|title| manpage::REQUIRED_SECTIONS.contains(&title.as_str()))
                .all(|title| required.next() == Some(&title.as_str()));
            assert!(
                in_order && required.next().is_none(),
                "{binary}.1 sections {titles:?}"
            );
            assert!(
                !help.option_names().contains(&"--prefetch-worker"),
                "{binary} --help lists the internal --prefetch-worker"
            );
            assert!(
                page.contains(&format!("\"pitr {}\"", version())),
                "{binary}"
            );
            assert!(page.contains("\"2026\\-11\\-25\""), "{binary}");
            let text = manpage::plain_text(&page);
            let options = help.option_names();
            assert!(options.contains(&"--help"), "{binary}: {options:?}");
            for option in options {
                let shown = format!("{option} ");
                // An entry may start with a short spelling: `-c, --check check`.
                let tagged = text.lines().any(|line| {
                    line.split(", ").any(|spelling| {
                        spelling == option
                            || spelling.starts_with(&shown)
                            || spelling.starts_with(&format!("{option},"))
                    })
                });
                assert!(
                    tagged,
                    "{binary}.1 has no entry for {option}; the page reads:\n{text}"
                );
            }
            for positional in &help.positionals {
                assert!(
                    text.lines().any(|line| line == positional.name),
                    "{binary}.1 has no entry for {}",
                    positional.name
                );
            }
        }

        check_man_pages(&dist.join("opt/pitr/share/man"))?;

        // Staging again replaces the tree: nothing stale survives.
        let stale = dist.join("opt/pitr/bin/stale");
        fs::write(&stale, "x")?;
        stage(&root, &bin_dir, &dist, 1_795_574_595)?;
        assert!(!stale.exists());
        Ok(())
    }
}

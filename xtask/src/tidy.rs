//! `cargo xtask tidy`: the house style of STYLE.md, checked mechanically.
//!
//! The checks run both as the `tidy` subcommand and as `#[test]`s of this crate (the
//! rust-analyzer way), so a plain `cargo test` fails when the style slips. Each check is a pure
//! function of a file's path and text, which keeps them testable on literal inputs below; they
//! are deliberately simple line scans, not a Rust parser:
//!
//! - every `.rs` file under the crate directories starts with a `//!` paragraph;
//! - no `.unwrap()` in `common/src` before a `#[cfg(test)]` line;
//! - `std::process::Command` only in `common/src/process.rs` (and `xtask/`, `tests/`), never in
//!   the binaries, which run programs through `pitr_common::process`;
//! - every package manifest has `publish = false`, `[lints] workspace = true` and inherits
//!   `version` and `edition` from the workspace;
//! - no god modules (`utils.rs`, `helpers.rs`, `misc.rs`);
//! - no function longer than [`MAX_FN_LINES`] lines in product code and xtask (tests and
//!   xtask's scenario modules, [`SCENARIO_DIRS`], excepted): a verb is a list of steps;
//! - every binary's `main.rs` is at most [`MAX_MAIN_LINES`] lines: the glue lives in
//!   `pitr_common::cli`;
//! - no `String` field named like a path or a target in `common`: those are typed
//!   (`PathBuf`, `location::Target`).
//!
//! Violations print as `path:line: message`, the format editors and CI logs link to.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use argh::FromArgs;

use crate::project_root;

/// Check the house style (also run by `cargo test -p xtask`).
#[derive(FromArgs)]
#[argh(subcommand, name = "tidy")]
pub struct TidyArgs {}

/// The directories whose Rust files the checks cover.
const CRATE_DIRS: &[&str] = &[
    "archive", "restore", "backup", "cleanup", "monitor", "common", "xtask", "tests",
];

/// The binary crates: they never run programs themselves.
const BIN_DIRS: &[&str] = &["archive", "restore", "backup", "cleanup", "monitor"];

/// The longest function allowed outside tests and scenarios.
pub const MAX_FN_LINES: usize = 100;

/// The longest `main.rs` of a binary.
pub const MAX_MAIN_LINES: usize = 15;

/// xtask modules that are scenarios (long scripted sequences, read top to bottom): the
/// function-length rule does not apply there.
const SCENARIO_DIRS: &[&str] = &["xtask/src/demo", "xtask/src/bench", "xtask/src/faults"];

/// File stems that make a module a grab bag (STYLE.md §9.1).
const GOD_MODULES: &[&str] = &["utils", "helpers", "misc"];

/// One broken rule, at a place in a file.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    /// The file, relative to the workspace root.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong and what to do instead.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// A file of the tree, read once.
#[derive(Debug)]
pub struct SourceFile {
    /// Relative to the workspace root.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
}

/// The files the checks look at: Rust sources under [`CRATE_DIRS`] and every `Cargo.toml` below
/// the root (not the root's own, which is the workspace manifest).
#[derive(Debug)]
pub struct Tree {
    rust_files: Vec<SourceFile>,
    manifests: Vec<SourceFile>,
}

impl Tree {
    /// Reads the tree under `root`, skipping `target` and hidden directories.
    pub fn load(root: &Path) -> Result<Tree> {
        let mut paths = Vec::new();
        walk(root, Path::new(""), &mut paths)?;
        paths.sort();
        let mut tree = Tree {
            rust_files: Vec::new(),
            manifests: Vec::new(),
        };
        for path in paths {
            let is_rust = path.extension().is_some_and(|ext| ext == "rs")
                && CRATE_DIRS.iter().any(|dir| path.starts_with(dir));
            let is_manifest = path.file_name().is_some_and(|name| name == "Cargo.toml")
                && path.parent() != Some(Path::new(""));
            if !is_rust && !is_manifest {
                continue;
            }
            let full = root.join(&path);
            let text =
                fs::read_to_string(&full).with_context(|| format!("reading {}", full.display()))?;
            let file = SourceFile { path, text };
            if is_rust {
                tree.rust_files.push(file);
            } else {
                tree.manifests.push(file);
            }
        }
        Ok(tree)
    }

    /// Every violation of every check, in path order per check.
    pub fn check(&self) -> Vec<Violation> {
        let mut violations = self.doc_comments();
        violations.extend(self.unwraps());
        violations.extend(self.commands());
        violations.extend(self.manifests());
        violations.extend(self.god_modules());
        violations.extend(self.long_functions());
        violations.extend(self.long_mains());
        violations.extend(self.untyped_fields());
        violations
    }

    fn long_functions(&self) -> Vec<Violation> {
        self.rust_files
            .iter()
            .filter(|f| {
                !f.path.starts_with("tests")
                    && !SCENARIO_DIRS.iter().any(|d| f.path.starts_with(d))
                    && !f.path.to_string_lossy().starts_with("xtask/src/demo.rs")
            })
            .flat_map(check_function_length)
            .collect()
    }

    fn long_mains(&self) -> Vec<Violation> {
        self.rust_files
            .iter()
            .filter(|f| {
                BIN_DIRS.iter().any(|d| f.path.starts_with(d))
                    && f.path.file_name().is_some_and(|n| n == "main.rs")
            })
            .filter_map(check_main_length)
            .collect()
    }

    fn untyped_fields(&self) -> Vec<Violation> {
        self.rust_files
            .iter()
            .filter(|f| f.path.starts_with("common/src"))
            .flat_map(check_untyped_fields)
            .collect()
    }

    fn doc_comments(&self) -> Vec<Violation> {
        self.rust_files
            .iter()
            .filter_map(check_doc_comment)
            .collect()
    }

    fn unwraps(&self) -> Vec<Violation> {
        self.rust_files
            .iter()
            .filter(|file| file.path.starts_with("common/src"))
            .flat_map(check_unwrap)
            .collect()
    }

    fn commands(&self) -> Vec<Violation> {
        self.rust_files
            .iter()
            .filter(|file| command_forbidden_in(&file.path))
            .flat_map(check_command)
            .collect()
    }

    fn manifests(&self) -> Vec<Violation> {
        self.manifests.iter().flat_map(check_manifest).collect()
    }

    fn god_modules(&self) -> Vec<Violation> {
        self.rust_files.iter().filter_map(check_file_name).collect()
    }
}

/// `cargo xtask tidy`.
pub fn run(_args: &TidyArgs) -> Result<ExitCode> {
    let violations = Tree::load(&project_root())?.check();
    for violation in &violations {
        println!("{violation}");
    }
    if !violations.is_empty() {
        bail!("tidy: {} violation(s)", violations.len());
    }
    println!("xtask: tidy: no violations");
    Ok(ExitCode::SUCCESS)
}

/// Collects files below `dir` (relative paths, under `rel`), skipping `target` and hidden
/// directories.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let entries = fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || name == "target" {
            continue;
        }
        let path = rel.join(&name);
        let file_type = entry
            .file_type()
            .with_context(|| format!("inspecting {}", root.join(&path).display()))?;
        if file_type.is_dir() {
            walk(root, &path, out)?;
        } else if file_type.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

fn violation(file: &SourceFile, line: usize, message: impl Into<String>) -> Violation {
    Violation {
        path: file.path.clone(),
        line,
        message: message.into(),
    }
}

/// The first non-empty line must be a `//!` comment.
fn check_doc_comment(file: &SourceFile) -> Option<Violation> {
    match file
        .text
        .lines()
        .enumerate()
        .find(|(_, line)| !line.trim().is_empty())
    {
        Some((_, line)) if line.trim_start().starts_with("//!") => None,
        Some((index, _)) => Some(violation(
            file,
            index + 1,
            "file must start with a `//!` paragraph saying what it is for",
        )),
        None => Some(violation(
            file,
            1,
            "empty file: it must start with a `//!` paragraph",
        )),
    }
}

/// Lines that are not comments, with 1-based numbers; with `stop_at_tests`, only those before
/// the first `#[cfg(test)]` line.
fn code_lines(text: &str, stop_at_tests: bool) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .take_while(move |(_, line)| !(stop_at_tests && line.trim() == "#[cfg(test)]"))
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .map(|(index, line)| (index + 1, line))
}

fn check_unwrap(file: &SourceFile) -> Vec<Violation> {
    code_lines(&file.text, true)
        .filter(|(_, line)| line.contains(".unwrap()"))
        .map(|(number, _)| {
            violation(
                file,
                number,
                "`.unwrap()` outside tests in common: return a typed error with context \
                 (STYLE.md §3, §9.5)",
            )
        })
        .collect()
}

/// Where `std::process::Command` is not allowed: all of `common/src` except the `process`
/// module, and everything in the binary crates.
fn command_forbidden_in(path: &Path) -> bool {
    if path.starts_with("common/src") {
        return !(path == Path::new("common/src/process.rs")
            || path.starts_with("common/src/process"));
    }
    BIN_DIRS.iter().any(|dir| path.starts_with(dir))
}

/// Flags `Command::new`, `std::process::Command` and `Command` in a `use std::process::{...}`
/// group (one line or several). In `common`, tests may run programs (a pid file test needs a
/// dead pid), so lines after `#[cfg(test)]` are not checked there; in the binaries nothing is
/// exempt.
fn check_command(file: &SourceFile) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut in_process_group = false;
    let tests_exempt = file.path.starts_with("common");
    let lines = code_lines(&file.text, tests_exempt);
    for (number, line) in lines {
        let mut group_part = None;
        if let Some(at) = line.find("process::{") {
            in_process_group = true;
            group_part = Some(&line[at..]);
        } else if in_process_group {
            group_part = Some(line);
        }
        let in_group = group_part.is_some_and(|part| {
            let part = part.split('}').next().unwrap_or(part);
            contains_word(part, "Command")
        });
        if group_part.is_some_and(|part| part.contains('}')) {
            in_process_group = false;
        }
        if line.contains("Command::new") || contains_path_word(line) || in_group {
            violations.push(violation(
                file,
                number,
                "`std::process::Command` outside common/src/process.rs: run programs through \
                 `pitr_common::process`, which captures stderr into a typed error (STYLE.md \
                 §9.4)",
            ));
        }
    }
    violations
}

/// Whether `line` names `process::Command` (not `process::CommandError`).
fn contains_path_word(line: &str) -> bool {
    line.match_indices("process::Command")
        .any(|(at, m)| !line[at + m.len()..].starts_with(is_ident_char))
}

/// Whether `word` occurs in `text` as a whole identifier.
fn contains_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, m)| {
        !text[..at].ends_with(is_ident_char) && !text[at + m.len()..].starts_with(is_ident_char)
    })
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A package manifest needs `publish = false`, `version.workspace = true` and
/// `edition.workspace = true` in `[package]`, and `[lints] workspace = true`.
fn check_manifest(file: &SourceFile) -> Vec<Violation> {
    let mut section = "";
    let mut package_line = None;
    let mut found = [false; 4];
    for (index, line) in file.text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or(line).trim();
        if line.starts_with('[') {
            section = line;
            if section == "[package]" {
                package_line = Some(index + 1);
            }
            continue;
        }
        let entry: String = line.chars().filter(|c| !c.is_whitespace()).collect();
        let which = match (section, entry.as_str()) {
            ("[package]", "publish=false") => 0,
            ("[lints]", "workspace=true") | ("", "lints.workspace=true") => 1,
            ("[package]", "version.workspace=true" | "version={workspace=true}") => 2,
            ("[package]", "edition.workspace=true" | "edition={workspace=true}") => 3,
            _ => continue,
        };
        found[which] = true;
    }
    // A manifest without [package] is a virtual workspace manifest: nothing to check.
    let Some(line) = package_line else {
        return Vec::new();
    };
    const RULES: [&str; 4] = [
        "package must set `publish = false` (STYLE.md §1)",
        "package must inherit the workspace lints: `[lints] workspace = true`",
        "package must inherit the version: `version.workspace = true`",
        "package must inherit the edition: `edition.workspace = true`",
    ];
    found
        .iter()
        .zip(RULES)
        .filter(|(present, _)| !**present)
        .map(|(_, rule)| violation(file, line, rule))
        .collect()
}

fn check_file_name(file: &SourceFile) -> Option<Violation> {
    let stem = file.path.file_stem()?.to_str()?;
    let in_god_dir = file
        .path
        .parent()
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .is_some_and(|name| GOD_MODULES.contains(&name) && stem == "mod");
    (GOD_MODULES.contains(&stem) || in_god_dir).then(|| {
        violation(
            file,
            1,
            "grab-bag module name: split it by concept and name each module after it \
             (STYLE.md §2, §9.1)",
        )
    })
}

/// The lines of `text` before its first `#[cfg(test)]`.
fn before_tests(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
        .map(|(i, l)| (i + 1, l))
}

/// Functions longer than [`MAX_FN_LINES`]: from a line that starts a `fn` item to the closing
/// brace at the same indentation.
fn check_function_length(file: &SourceFile) -> Vec<Violation> {
    let lines: Vec<(usize, &str)> = before_tests(&file.text).collect();
    let mut out = Vec::new();
    for (i, (no, line)) in lines.iter().enumerate() {
        let t = line.trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "async fn ",
            "pub async fn ",
            "unsafe fn ",
        ]
        .iter()
        .any(|p| t.starts_with(p));
        // A declaration, or a whole function on one line (`fn f() {}`).
        if !is_fn || t.ends_with(';') || t.ends_with('}') {
            continue;
        }
        let indent = &line[..line.len() - t.len()];
        let close = format!("{indent}}}");
        let end = lines[i..]
            .iter()
            .find(|(_, l)| *l == close)
            .map(|(n, _)| *n);
        if let Some(end) = end {
            let len = end - no + 1;
            if len > MAX_FN_LINES {
                out.push(violation(
                    file,
                    *no,
                    format!(
                        "function of {len} lines (at most {MAX_FN_LINES}): split it into the \
                         steps it performs, each a function"
                    ),
                ));
            }
        }
    }
    out
}

fn check_main_length(file: &SourceFile) -> Option<Violation> {
    let n = file.text.lines().count();
    (n > MAX_MAIN_LINES).then(|| {
        violation(
            file,
            n,
            format!(
                "main.rs of {n} lines (at most {MAX_MAIN_LINES}): main is \
                 `pitr_common::cli::main::<args::Args>()`; logic goes into the verb modules"
            ),
        )
    })
}

/// `String` fields named like a path or a target in `common`: such values are `PathBuf` or a
/// `location::Target`.
fn check_untyped_fields(file: &SourceFile) -> Vec<Violation> {
    before_tests(&file.text)
        .filter_map(|(no, line)| {
            let t = line
                .trim_start()
                .strip_prefix("pub ")
                .unwrap_or(line.trim_start());
            let (name, ty) = t.split_once(':')?;
            let name = name.trim();
            let ty = ty.trim().trim_end_matches(',');
            let is_field =
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') && !name.is_empty();
            let stringly = ty == "String" || ty == "Option<String>";
            (is_field && stringly && (name.contains("path") || name.contains("target"))).then(
                || {
                    violation(
                        file,
                        no,
                        format!(
                            "field `{name}: {ty}`: a path is a PathBuf and a location's target a \
                         location::Target (STYLE.md §9.2)"
                        ),
                    )
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, text: &str) -> SourceFile {
        SourceFile {
            path: PathBuf::from(path),
            text: text.to_owned(),
        }
    }

    fn lines(violations: &[Violation]) -> Vec<usize> {
        violations.iter().map(|v| v.line).collect()
    }

    /// A test failure printed verbatim: the harness prints an `Err` with `{:?}`, and this keeps
    /// the `path:line: message` lines intact (no quoting, no backtrace).
    struct Report(String);

    impl fmt::Debug for Report {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.0)
        }
    }

    fn tree() -> Result<Tree, Report> {
        Tree::load(&project_root()).map_err(|e| Report(format!("{e:#}")))
    }

    fn assert_clean(violations: Vec<Violation>) -> Result<(), Report> {
        if violations.is_empty() {
            return Ok(());
        }
        let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
        Err(Report(format!(
            "{} tidy violation(s):\n{}",
            violations.len(),
            report.join("\n")
        )))
    }

    // The tidy checks over the real tree: these make `cargo test` enforce the style.

    #[test]
    fn tidy_every_rust_file_starts_with_a_doc_comment() -> Result<(), Report> {
        assert_clean(tree()?.doc_comments())
    }

    #[test]
    fn tidy_no_long_functions() -> Result<(), Report> {
        assert_clean(tree()?.long_functions())
    }

    #[test]
    fn tidy_short_mains() -> Result<(), Report> {
        assert_clean(tree()?.long_mains())
    }

    #[test]
    fn tidy_typed_paths_and_targets_in_common() -> Result<(), Report> {
        assert_clean(tree()?.untyped_fields())
    }

    #[test]
    fn long_functions_and_stringly_fields_are_found() {
        let body = "    let x = 1;\n".repeat(MAX_FN_LINES);
        let long = source(
            "common/src/x.rs",
            &format!("//! x\nfn empty() {{}}\n{body}pub fn long() {{\n{body}}}\nfn short() {{\n}}\n#[cfg(test)]\nfn t() {{\n{body}}}\n"),
        );
        assert_eq!(lines(&check_function_length(&long)), [MAX_FN_LINES + 3]);
        let fields = source(
            "common/src/y.rs",
            "//! y\npub struct S {\n    pub target: String,\n    pub wal_path: Option<String>,\n    pub name: String,\n    path: PathBuf,\n}\n",
        );
        assert_eq!(lines(&check_untyped_fields(&fields)), [3, 4]);
        let main = source("archive/src/main.rs", &"//! m\n".repeat(MAX_MAIN_LINES + 1));
        assert!(check_main_length(&main).is_some());
    }

    #[test]
    fn tidy_no_unwrap_in_common_outside_tests() -> Result<(), Report> {
        assert_clean(tree()?.unwraps())
    }

    #[test]
    fn tidy_commands_run_only_in_common_process() -> Result<(), Report> {
        assert_clean(tree()?.commands())
    }

    #[test]
    fn tidy_package_manifests_follow_conventions() -> Result<(), Report> {
        assert_clean(tree()?.manifests())
    }

    #[test]
    fn tidy_no_god_modules() -> Result<(), Report> {
        assert_clean(tree()?.god_modules())
    }

    #[test]
    fn tidy_sees_the_workspace() -> Result<(), Report> {
        let tree = tree()?;
        let has = |path: &str| tree.rust_files.iter().any(|f| f.path == Path::new(path));
        assert!(has("xtask/src/main.rs"));
        assert!(has("xtask/src/tidy.rs"));
        assert!(tree
            .manifests
            .iter()
            .any(|f| f.path == Path::new("xtask/Cargo.toml")));
        assert!(!tree
            .manifests
            .iter()
            .any(|f| f.path == Path::new("Cargo.toml")));
        Ok(())
    }

    // The checks themselves, on literal inputs.

    #[test]
    fn doc_comment_must_come_first() {
        assert_eq!(
            check_doc_comment(&source("a.rs", "\n//! Fine.\nfn f() {}\n")),
            None
        );
        let v = check_doc_comment(&source("common/src/a.rs", "\n// Not a doc.\n//! Late.\n"));
        assert_eq!(
            v.map(|v| v.to_string()),
            Some(
                "common/src/a.rs:2: file must start with a `//!` paragraph saying what it is for"
                    .to_owned()
            )
        );
        assert!(check_doc_comment(&source("a.rs", "#![warn(missing_docs)]\n//! Doc.\n")).is_some());
        assert!(check_doc_comment(&source("a.rs", "  \n")).is_some());
    }

    #[test]
    fn unwrap_is_flagged_only_before_cfg_test_and_outside_comments() {
        let text = "//! Doc.\n\
                    fn f() { x.unwrap(); }\n\
                    // a comment about .unwrap() is fine\n\
                    fn g() { y.unwrap_or(0); }\n\
                    #[cfg(test)]\n\
                    mod tests { fn t() { z.unwrap(); } }\n";
        assert_eq!(lines(&check_unwrap(&source("common/src/a.rs", text))), [2]);
    }

    #[test]
    fn command_is_allowed_only_in_the_process_module() {
        for allowed in [
            "common/src/process.rs",
            "common/src/process/pipe.rs",
            "xtask/src/main.rs",
            "tests/src/cluster.rs",
        ] {
            assert!(!command_forbidden_in(Path::new(allowed)), "{allowed}");
        }
        for forbidden in [
            "common/src/dest.rs",
            "common/src/processing.rs",
            "archive/src/push.rs",
            "restore/src/main.rs",
        ] {
            assert!(command_forbidden_in(Path::new(forbidden)), "{forbidden}");
        }
    }

    #[test]
    fn command_uses_are_flagged_in_every_spelling() {
        let text = "//! Doc.\n\
                    use std::process::Command;\n\
                    use std::process::{Command, Stdio};\n\
                    use std::process::{ExitCode, CommandError};\n\
                    use std::process::{\n    ExitCode,\n    Command,\n};\n\
                    let c = Command::new(\"rsync\");\n\
                    let e: pitr_common::process::CommandError;\n\
                    // Command::new in a comment is fine\n\
                    #[cfg(test)]\n\
                    mod tests { fn t() { Command::new(\"true\"); } }\n";
        assert_eq!(
            lines(&check_command(&source("archive/src/push.rs", text))),
            [2, 3, 7, 9, 13]
        );
        assert_eq!(
            lines(&check_command(&source("common/src/dest.rs", text))),
            [2, 3, 7, 9]
        );
    }

    #[test]
    fn manifest_needs_publish_false_and_workspace_lints() {
        let good = "[package]\nname = \"pitr-x\"\nversion.workspace = true\n\
                    edition = { workspace = true }\npublish = false # never\n\n\
                    [lints]\nworkspace = true\n";
        assert_eq!(check_manifest(&source("x/Cargo.toml", good)), []);

        let bad = "[package]\nname = \"pitr-x\"\nversion = \"0.1.0\"\nedition.workspace = true\n\n\
                   [dependencies]\npublish = false\n\n[lints.clippy]\nworkspace = true\n";
        let messages: Vec<String> = check_manifest(&source("x/Cargo.toml", bad))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            messages,
            [
                "x/Cargo.toml:1: package must set `publish = false` (STYLE.md §1)",
                "x/Cargo.toml:1: package must inherit the workspace lints: `[lints] workspace = true`",
                "x/Cargo.toml:1: package must inherit the version: `version.workspace = true`",
            ]
        );

        let virtual_manifest = "[workspace]\nmembers = [\"a\"]\n";
        assert_eq!(
            check_manifest(&source("x/Cargo.toml", virtual_manifest)),
            []
        );
    }

    #[test]
    fn god_modules_are_flagged() {
        for bad in [
            "common/src/utils.rs",
            "archive/src/helpers.rs",
            "common/src/misc/mod.rs",
        ] {
            assert!(check_file_name(&source(bad, "")).is_some(), "{bad}");
        }
        for good in [
            "common/src/wal.rs",
            "common/src/misc_free.rs",
            "common/src/wal/mod.rs",
        ] {
            assert!(check_file_name(&source(good, "")).is_none(), "{good}");
        }
    }
}

//! The example configuration files shipped in `/opt/pitr/share/pitr/examples`, and the check
//! that every option they use exists.
//!
//! The files live in the repository under `packaging/examples/` (edit them there) and are
//! copied as they are by `cargo xtask dist`; the RPM also installs [`CRON`] as
//! `/etc/cron.d/pitr` and the [`CONFIGS`] in `/etc/pitr`. An option in an example that the
//! binary does not accept would break the operator's `archive_command` or `restore_command`, so
//! [`check`] (run by `cargo xtask dist` before it copies them, and by a test here) compares
//! every `--option` an example gives a binary with that binary's `--help`, and so it does for
//! the commands in the `Examples:` of each `--help`. The files are for operators: a
//! developer's note (`NOTE:`, a mention of SPEC.md) is a problem too.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::help::{self, Help};

/// The outcome of [`check`].
#[derive(Debug)]
pub struct Checked {
    /// One line per problem, `packaging/examples/FILE:LINE: what is wrong`.
    pub problems: Vec<String>,
    /// How many option uses were compared with a `--help`.
    pub checked: usize,
}

/// The files of `packaging/examples/`, in the order they are listed.
pub const FILES: &[&str] = &[
    "archive.conf",
    "restore.conf",
    "backup.conf",
    "cleanup.conf",
    "pitr.cron",
    "rsyncd.conf",
    "postgresql-primary.conf",
    "postgresql-warm-standby.conf",
    "postgresql-streaming-standby.conf",
];

/// The cron example, which the RPM also installs as `/etc/cron.d/pitr`.
pub const CRON: &str = "pitr.cron";

/// The `--config-file` examples, which the RPM also installs in `/etc/pitr`.
pub const CONFIGS: &[&str] = &[
    "archive.conf",
    "restore.conf",
    "backup.conf",
    "cleanup.conf",
];

/// The binaries whose options the examples use.
const TOOLS: &[&str] = &[
    "pitr-archive",
    "pitr-restore",
    "pitr-backup",
    "pitr-cleanup",
    "pitr-monitor",
];

/// Where the example files are kept.
pub fn dir(root: &Path) -> PathBuf {
    root.join("packaging").join("examples")
}

/// An option an example gives one of our binaries.
#[derive(Debug, PartialEq, Eq)]
pub struct OptionUse {
    /// `pitr-archive`, ...
    pub tool: &'static str,
    /// `--dst-remote` (without any `=value`).
    pub option: String,
    /// 1-based line number in the example file.
    pub line: usize,
}

/// The options `text` (the example file `name`) gives our binaries. A `<tool>.conf` file is a
/// `--config-file` of `pitr-<tool>`: each line `--option value` counts, and so does a
/// commented-out alternative written `#--option value`. In any other file, the `--options`
/// after a `pitr-<tool>` command on the same line count, comments included.
pub fn option_uses(name: &str, text: &str) -> Vec<OptionUse> {
    let config_of = config_file_of(name);
    let mut uses = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        if let Some(tool) = config_of {
            let trimmed = line.trim();
            let option_line = trimmed
                .strip_prefix('#')
                .filter(|rest| rest.starts_with("--"))
                .unwrap_or(trimmed);
            if option_line.starts_with("--") {
                if let Some(option) = option_name(option_line) {
                    uses.push(OptionUse {
                        tool,
                        option,
                        line: line_number,
                    });
                }
            }
            continue;
        }
        let mut current = None;
        for word in line.split_whitespace() {
            let word = word.trim_matches(|c| c == '\'' || c == '"');
            if let Some(tool) = TOOLS
                .iter()
                .copied()
                .find(|tool| word == *tool || word.ends_with(&format!("/{tool}")))
            {
                current = Some(tool);
            } else if let (Some(tool), Some(option)) = (current, option_name(word)) {
                uses.push(OptionUse {
                    tool,
                    option,
                    line: line_number,
                });
            }
        }
    }
    uses
}

/// The binary whose `--config-file` the example `name` is: `pitr-archive` for `archive.conf`.
fn config_file_of(name: &str) -> Option<&'static str> {
    let tool = format!("pitr-{}", name.strip_suffix(".conf")?);
    TOOLS.iter().copied().find(|t| *t == tool)
}

/// `--dst-remote` from `--dst-remote`, `--dst-remote=x` or `--dst-remote x`; `None` for a word
/// that is not a long option (`--` alone included).
fn option_name(text: &str) -> Option<String> {
    let word = text.split_whitespace().next()?;
    let name = word
        .split('=')
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    (name.starts_with("--") && name.len() > 2).then(|| name.to_owned())
}

/// Compares every option the example files and the `Examples:` of each `--help` give our
/// binaries with the `--help` of the binary in `bin_dir`.
pub fn check(root: &Path, bin_dir: &Path) -> Result<Checked> {
    let mut helps = BTreeMap::new();
    for tool in TOOLS {
        helps.insert(*tool, help::of_tool(bin_dir, tool)?);
    }
    let mut files = Vec::new();
    for name in FILES {
        let path = dir(root).join(name);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        files.push((*name, text));
    }
    Ok(compare(&files, &helps))
}

/// [`check`] without the I/O: example files (name, text) against the parsed `--help` of each
/// binary, then each `--help`'s own examples.
fn compare(files: &[(&str, String)], helps: &BTreeMap<&str, Help>) -> Checked {
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut check_uses = |place: &str, uses: Vec<OptionUse>, problems: &mut Vec<String>| {
        for used in uses {
            checked += 1;
            let known = helps
                .get(used.tool)
                .is_some_and(|help| help.option_names().contains(&used.option.as_str()));
            if !known {
                problems.push(format!(
                    "{place}:{}: {} is not an option of {} (see {} --help)",
                    used.line, used.option, used.tool, used.tool
                ));
            }
        }
    };
    for (name, text) in files {
        let place = format!("packaging/examples/{name}");
        if let Some(tool) = config_file_of(name) {
            for line in config_syntax_errors(text) {
                problems.push(format!(
                    "{place}:{line}: {tool} --config-file takes one option per line \
                     (--option value) or a # comment"
                ));
            }
        }
        for line in developer_notes(text) {
            problems.push(format!(
                "{place}:{line}: a note for developers, not for operators"
            ));
        }
        check_uses(&place, option_uses(name, text), &mut problems);
    }
    for (tool, help) in helps {
        let examples = help
            .section("Examples")
            .map(|section| section.lines.join("\n"))
            .unwrap_or_default();
        let place = format!("{tool} --help, Examples line");
        check_uses(&place, option_uses("--help", &examples), &mut problems);
    }
    Checked { problems, checked }
}

/// The lines of an example that speak to the project's developers (`NOTE:`, SPEC.md) rather
/// than to the operator who reads the installed file.
pub fn developer_notes(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.contains("NOTE:") || line.contains("SPEC.md"))
        .map(|(index, _)| index + 1)
        .collect()
}

/// The lines of a `--config-file` that its parser would reject: not empty, not a comment and
/// not starting with `--` (`common::config` reads one option per line).
pub fn config_syntax_errors(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim();
            !(line.is_empty() || line.starts_with('#') || line.starts_with("--"))
        })
        .map(|(index, _)| index + 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    use crate::{dist, project_root};

    fn uses(name: &str, text: &str) -> Vec<(&'static str, String, usize)> {
        option_uses(name, text)
            .into_iter()
            .map(|u| (u.tool, u.option, u.line))
            .collect()
    }

    #[test]
    fn config_files_count_option_lines_and_commented_options() {
        let text = "# --not-an-option in prose\n--source zstd=/a\n#--verbose\n--log=/x\n\n";
        assert_eq!(
            uses("restore.conf", text),
            [
                ("pitr-restore", "--source".to_owned(), 2),
                ("pitr-restore", "--verbose".to_owned(), 3),
                ("pitr-restore", "--log".to_owned(), 4),
            ]
        );
    }

    #[test]
    fn other_files_count_options_after_a_command() {
        let text = "archive_command = '/opt/pitr/bin/pitr-archive --state-dir /s --dst-remote \
                    zstd=rsync://h/m/ %p'\n\
                    #30 1 * * * postgres /opt/pitr/bin/pitr-backup --config-file /etc/b.conf\n\
                    # prose about --finish-trigger, then pitr-restore --source and --log.\n\
                    rsync --daemon\n";
        assert_eq!(
            uses("postgresql-primary.conf", text),
            [
                ("pitr-archive", "--state-dir".to_owned(), 1),
                ("pitr-archive", "--dst-remote".to_owned(), 1),
                ("pitr-backup", "--config-file".to_owned(), 2),
                ("pitr-restore", "--source".to_owned(), 3),
                ("pitr-restore", "--log".to_owned(), 3),
            ]
        );
    }

    #[test]
    fn compare_checks_files_and_help_examples_and_refuses_developer_notes() -> anyhow::Result<()> {
        let mut helps = BTreeMap::new();
        helps.insert("pitr-restore", help::parse(help::SAMPLE)?);
        helps.insert(
            "pitr-backup",
            help::parse(
                "Usage: pitr-backup [--xlogs <DIR>]\n\nTakes a backup.\n\n\
                 Options:\n  --xlogs           WAL directory\n  \
                 --help, help      display usage information\n\n\
                 Examples:\n  pitr-backup --xlogs /x --fast\n",
            )?,
        );
        let files = [
            (
                "restore.conf",
                "--source /a\n#--poll-interval 1\n--nope x\nsource = y\n".to_owned(),
            ),
            (
                "pitr.cron",
                "#1 2 * * * postgres pitr-backup --xlogs /x --bogus\n".to_owned(),
            ),
            (
                "backup.conf",
                "# NOTE: written from SPEC.md\n--xlogs /x\n".to_owned(),
            ),
        ];
        let checked = compare(&files, &helps);
        assert_eq!(checked.checked, 9);
        assert_eq!(
            checked.problems,
            [
                "packaging/examples/restore.conf:4: pitr-restore --config-file takes one option \
                 per line (--option value) or a # comment",
                "packaging/examples/restore.conf:3: --nope is not an option of pitr-restore (see \
                 pitr-restore --help)",
                "packaging/examples/pitr.cron:1: --bogus is not an option of pitr-backup (see \
                 pitr-backup --help)",
                "packaging/examples/backup.conf:1: a note for developers, not for operators",
                "pitr-backup --help, Examples line:1: --fast is not an option of pitr-backup (see \
                 pitr-backup --help)",
            ]
        );
        Ok(())
    }

    #[test]
    fn config_syntax_errors_are_lines_that_are_not_options() {
        assert_eq!(
            config_syntax_errors("# c\n\n--a b\nsource = x\n  --b\n"),
            [4]
        );
    }

    #[test]
    fn every_example_file_is_listed_and_every_listed_file_exists() -> anyhow::Result<()> {
        let mut on_disk: Vec<String> = fs::read_dir(dir(&project_root()))?
            .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        on_disk.sort();
        let mut listed: Vec<String> = FILES.iter().map(|f| (*f).to_owned()).collect();
        listed.sort();
        assert_eq!(
            on_disk, listed,
            "packaging/examples/ and examples::FILES differ"
        );
        Ok(())
    }

    #[test]
    fn config_file_examples_hold_one_option_per_line() -> anyhow::Result<()> {
        let configs: Vec<&str> = FILES
            .iter()
            .copied()
            .filter(|name| config_file_of(name).is_some())
            .collect();
        assert_eq!(
            configs,
            [
                "archive.conf",
                "restore.conf",
                "backup.conf",
                "cleanup.conf"
            ]
        );
        for name in configs {
            let text = fs::read_to_string(dir(&project_root()).join(name))?;
            assert_eq!(
                config_syntax_errors(&text),
                Vec::<usize>::new(),
                "packaging/examples/{name}: lines that are neither an option nor a comment"
            );
            assert!(
                !option_uses(name, &text).is_empty(),
                "packaging/examples/{name} sets no option"
            );
        }
        Ok(())
    }

    #[test]
    fn example_options_appear_in_the_binaries_help() -> anyhow::Result<()> {
        let bin_dir = dist::debug_binaries()?;
        let Checked { problems, checked } = check(&project_root(), &bin_dir)?;
        assert!(
            problems.is_empty(),
            "example files out of step with the binaries:\n{}",
            problems.join("\n")
        );
        assert!(
            checked > 20,
            "only {checked} options checked: is the parsing broken?"
        );
        Ok(())
    }
}

//! The `--help` text of our binaries, as argh prints it, parsed into its parts.
//!
//! argh's layout is fixed: a `Usage:` line, the description, then titled sections
//! (`Positional Arguments:`, `Options:`, `Commands:`, `Examples:`, `Notes:`, `Error codes:`).
//! In the argument and option sections an entry's name sits at column 2 and its description at
//! column 20, wrapped at 80 columns with continuation lines indented to column 20; a name too
//! long for the first 18 columns stands alone on its line. [`parse`] is a pure function of that
//! text, so the man page converter ([`crate::manpage`]) and the checks on the example files
//! ([`crate::examples`]) are tested on literal inputs; [`of_binary`] is the I/O around it.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Where argh starts an entry's description.
const DESCRIPTION_COLUMN: usize = 20;

/// A binary's `--help`, taken apart.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Help {
    /// The `Usage:` line without that word: `pitr-archive [--data-dir <data-dir>] ...`.
    pub usage: String,
    /// The description paragraphs, each joined into one line.
    pub description: Vec<String>,
    /// `Positional Arguments:`.
    pub positionals: Vec<Entry>,
    /// `Options:`, `--help` included.
    pub options: Vec<Entry>,
    /// Any other section (`Examples:`, `Notes:`, `Error codes:`, `Commands:`), in order, with
    /// its lines as printed minus the two-column indent.
    pub sections: Vec<Section>,
}

/// One argument or option with its description.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// As printed: `--data-dir`, `--help, help`, `wal_file`.
    pub name: String,
    /// The description, its wrapped lines joined with single spaces.
    pub description: String,
}

/// A section argh prints verbatim.
#[derive(Debug, PartialEq, Eq)]
pub struct Section {
    /// The title without its colon: `Examples`.
    pub title: String,
    /// The lines, each without argh's two-space indent.
    pub lines: Vec<String>,
}

impl Help {
    /// The long option names (`--data-dir`, ..., `--help`) of the `Options:` section, each
    /// spelling of an entry such as `--help, help` counted when it starts with `--`.
    pub fn option_names(&self) -> Vec<&str> {
        self.options
            .iter()
            .flat_map(|entry| entry.name.split(", "))
            .filter(|name| name.starts_with("--"))
            .collect()
    }

    /// The placeholder the usage line gives an option's value (`data-dir` for
    /// `[--data-dir <data-dir>]`, `dst-local...` for a repeatable one), `None` for a switch.
    /// An entry with a short spelling (`-c, --check`) is looked up under each spelling: the
    /// usage line names the option by its short one.
    pub fn value_name(&self, option: &str) -> Option<&str> {
        option.split(", ").find_map(|spelling| {
            let mut words = self
                .usage
                .split_whitespace()
                .map(|word| word.trim_start_matches('[').trim_end_matches(']'));
            while let Some(word) = words.next() {
                if word == spelling {
                    return words
                        .next()
                        .and_then(|value| value.strip_prefix('<'))
                        .and_then(|value| value.strip_suffix('>'));
                }
            }
            None
        })
    }

    /// The first sentence of the description, up to a colon that introduces an example, for a
    /// man page's NAME line.
    pub fn summary(&self) -> &str {
        let first = self.description.first().map_or("", String::as_str);
        let end = [". ", ": "]
            .iter()
            .filter_map(|stop| first.find(stop))
            .min();
        end.map_or(first.trim_end_matches('.'), |end| &first[..end])
    }
}

/// Runs `binary --help` and parses what it prints.
pub fn of_binary(binary: &Path) -> Result<Help> {
    let output = Command::new(binary)
        .arg("--help")
        .output()
        .with_context(|| format!("cannot run {} --help", binary.display()))?;
    if !output.status.success() {
        bail!(
            "{} --help failed ({}): {}",
            binary.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8(output.stdout)
        .with_context(|| format!("{} --help printed invalid UTF-8", binary.display()))?;
    parse(&text).with_context(|| format!("parsing the output of {} --help", binary.display()))
}

/// Parses argh's help text.
pub fn parse(text: &str) -> Result<Help> {
    let mut lines = text.lines().peekable();
    let Some(usage) = lines.next().and_then(|line| line.strip_prefix("Usage: ")) else {
        bail!("help text does not start with \"Usage: \"");
    };
    let mut help = Help {
        usage: usage.trim().to_owned(),
        ..Help::default()
    };

    // The description: paragraphs up to the first section title.
    let mut paragraph: Vec<&str> = Vec::new();
    while let Some(line) = lines.peek() {
        if section_title(line).is_some() {
            break;
        }
        if line.trim().is_empty() {
            push_paragraph(&mut help.description, &mut paragraph);
        } else {
            paragraph.push(line.trim());
        }
        lines.next();
    }
    push_paragraph(&mut help.description, &mut paragraph);

    let mut current: Option<String> = None;
    for line in lines {
        if let Some(title) = section_title(line) {
            current = Some(title.to_owned());
            if !matches!(title, "Positional Arguments" | "Options") {
                help.sections.push(Section {
                    title: title.to_owned(),
                    lines: Vec::new(),
                });
            }
            continue;
        }
        match current.as_deref() {
            Some("Positional Arguments") => add_entry_line(&mut help.positionals, line)?,
            Some("Options") => add_entry_line(&mut help.options, line)?,
            Some(_) => {
                if let Some(section) = help.sections.last_mut() {
                    let line = line.strip_prefix("  ").unwrap_or(line);
                    section.lines.push(line.to_owned());
                }
            }
            None => bail!("text after the description outside any section: {line:?}"),
        }
    }
    for section in &mut help.sections {
        while section
            .lines
            .last()
            .is_some_and(|line| line.trim().is_empty())
        {
            section.lines.pop();
        }
    }
    Ok(help)
}

fn push_paragraph(paragraphs: &mut Vec<String>, lines: &mut Vec<&str>) {
    if !lines.is_empty() {
        paragraphs.push(lines.join(" "));
        lines.clear();
    }
}

/// `Some("Options")` for the line `Options:`: a line at column 0 that ends with a colon.
fn section_title(line: &str) -> Option<&str> {
    let title = line.strip_suffix(':')?;
    let known = [
        "Positional Arguments",
        "Options",
        "Commands",
        "Examples",
        "Notes",
        "Error codes",
    ];
    known.contains(&title).then_some(title)
}

/// Adds one line of an argument or option section: a new entry (name at column 2) or the
/// continuation of the last one's description (column 20).
fn add_entry_line(entries: &mut Vec<Entry>, line: &str) -> Result<()> {
    if line.trim().is_empty() {
        return Ok(());
    }
    let starts_entry = line.starts_with("  ") && !line[2..].starts_with(' ');
    if starts_entry {
        let chars: Vec<char> = line.chars().collect();
        // A name that fits leaves column 20 for the description (padding before it); a longer
        // one fills the whole line and the description starts on the next.
        let (name, description) =
            if chars.len() <= DESCRIPTION_COLUMN || chars[DESCRIPTION_COLUMN - 1] == ' ' {
                let split = chars.len().min(DESCRIPTION_COLUMN);
                (
                    chars[..split].iter().collect::<String>(),
                    chars[split..].iter().collect::<String>(),
                )
            } else {
                (line.to_owned(), String::new())
            };
        entries.push(Entry {
            name: name.trim().to_owned(),
            description: description.trim().to_owned(),
        });
        return Ok(());
    }
    let Some(entry) = entries.last_mut() else {
        bail!("description line before any entry: {line:?}");
    };
    if !entry.description.is_empty() {
        entry.description.push(' ');
    }
    entry.description.push_str(line.trim());
    Ok(())
}

#[cfg(test)]
/// The shape of `pitr-restore --help`, trimmed, plus the sections argh adds for `example`,
/// `note` and `error_code`.
pub const SAMPLE: &str = "\
Usage: pitr-restore [--source <source...>] [--poll-interval <poll-interval>] [--streaming-replication] [--remove-unneeded] [--] [<files...>]

Restores one WAL file from the archive: restore_command = 'pitr-restore %f %p'. Exit status: 0 restored.

Positional Arguments:
  files             the WAL file wanted and where to put it: PostgreSQL's %f and
                    %p

Options:
  --source          archive directory to read from, [CODEC=]DIR (the codec says
                    which stored form to look for first; every form is found);
                    repeatable, searched in order
  --poll-interval   seconds between looks at the archive while waiting (default
                    1; decimals allowed)
  --streaming-replication
                    standby mode (standby.signal): a missing file exits 1 at
                    once
  --remove-unneeded while waiting, remove archived segments older than the
                    oldest one still needed
  --help, help      display usage information

Examples:
  pitr-restore --source zstd=/srv/wal %f %p
  .leading dot

Notes:
  PostgreSQL runs it.

Error codes:
  1 not available
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_usage_description_entries_and_sections() -> Result<()> {
        let help = parse(SAMPLE)?;
        assert!(help
            .usage
            .starts_with("pitr-restore [--source <source...>]"));
        assert_eq!(
            help.description,
            ["Restores one WAL file from the archive: restore_command = 'pitr-restore %f %p'. Exit status: 0 restored."]
        );
        assert_eq!(
            help.positionals,
            [Entry {
                name: "files".into(),
                description: "the WAL file wanted and where to put it: PostgreSQL's %f and %p"
                    .into()
            }]
        );
        let names: Vec<&str> = help.options.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "--source",
                "--poll-interval",
                "--streaming-replication",
                "--remove-unneeded",
                "--help, help"
            ]
        );
        assert_eq!(
            help.options[2].description,
            "standby mode (standby.signal): a missing file exits 1 at once"
        );
        assert_eq!(
            help.options[3].description,
            "while waiting, remove archived segments older than the oldest one still needed"
        );
        let titles: Vec<&str> = help.sections.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(titles, ["Examples", "Notes", "Error codes"]);
        assert_eq!(
            help.sections[0].lines,
            ["pitr-restore --source zstd=/srv/wal %f %p", ".leading dot"]
        );
        Ok(())
    }

    #[test]
    fn option_names_value_names_and_summary() -> Result<()> {
        let help = parse(SAMPLE)?;
        assert_eq!(
            help.option_names(),
            [
                "--source",
                "--poll-interval",
                "--streaming-replication",
                "--remove-unneeded",
                "--help"
            ]
        );
        assert_eq!(help.value_name("--source"), Some("source..."));
        assert_eq!(help.value_name("--poll-interval"), Some("poll-interval"));
        assert_eq!(help.value_name("--remove-unneeded"), None);
        assert_eq!(help.value_name("--nope"), None);
        assert_eq!(help.summary(), "Restores one WAL file from the archive");
        Ok(())
    }

    #[test]
    fn short_spellings_find_their_value_name() -> Result<()> {
        let help = parse(
            "Usage: pitr-monitor [-c <check>] [--archive <archive>] [-v]\n\nChecks.\n\n\
             Options:\n  -c, --check       the check\n  --archive         the archive\n  \
             -v, --verbose     chatty\n  --help, help      display usage information\n",
        )?;
        assert_eq!(
            help.option_names(),
            ["--check", "--archive", "--verbose", "--help"]
        );
        assert_eq!(help.value_name("-c, --check"), Some("check"));
        assert_eq!(help.value_name("--archive"), Some("archive"));
        assert_eq!(help.value_name("-v, --verbose"), None);
        Ok(())
    }

    #[test]
    fn rejects_text_that_is_not_argh_help() {
        assert!(parse("pitr-archive 0.1.0\n").is_err());
        assert!(parse("Usage: x\n\nabout\n\nOptions:\n                    orphan\n").is_err());
    }
}

//! The `--help` text of our binaries, as argh prints it, parsed into its parts.
//!
//! argh's layout is fixed: `Usage:` lines, the description, then titled sections
//! (`Positional Arguments:`, `Options:`, `Commands:`, `Examples:`, `Notes:`, `Error codes:`).
//! In the argument and option sections an entry's name sits at column 2 and its description at
//! column 20, wrapped at 80 columns with continuation lines indented to column 20; a name too
//! long for the first 18 columns stands alone on its line. [`parse`] is a pure function of that
//! text, so the man page converter ([`crate::manpage`]) and the checks on the example files
//! ([`crate::examples`]) are tested on literal inputs; [`of_binary`] is the I/O around it.
//!
//! Our binaries write their usage by hand (argh's `usage` attribute), one form per line, each
//! starting with the program's name, longer forms wrapped onto indented lines, values as
//! `<placeholder>` and optional parts in brackets:
//! `pitr-archive [--dst-local <[CODEC=]DIR>]... <wal_file>`. [`Help::value_name`] reads an
//! option's placeholder from there, and [`usage_problems`] checks the usage against the options
//! argh lists, so that the hand-written synopsis cannot drift from what the binary accepts.
//!
//! A binary with more than one form has one `--help` per form: pitr-restore's restore_command
//! form (`pitr-restore --help`) and its `--from-backup` form (`pitr-restore --from-backup -
//! --help`) are two argument types (restore/src/args.rs). [`of_tool`] reads every form and
//! [`Help::merge`]s them into one help: every usage form, both descriptions, the first form's
//! options followed by the other form's own ([`Help::form_options`]), and the sections of both,
//! a section both forms print alike once.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Where argh starts an entry's description.
const DESCRIPTION_COLUMN: usize = 20;

/// Sections whose lines do not say which form of the binary they are about: merged under a
/// line naming the form (`With --from-backup:`).
const FORM_LABELLED: [&str; 1] = ["OmniPITR spellings"];

/// A binary's `--help`, taken apart.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Help {
    /// The forms of the `Usage:` lines, each starting with the program and with its
    /// continuation lines joined by single spaces: `pitr-archive [--data-dir <DIR>] ...`.
    pub usage: Vec<String>,
    /// The description paragraphs, each joined into one line.
    pub description: Vec<String>,
    /// `Positional Arguments:`.
    pub positionals: Vec<Entry>,
    /// `Options:`, `--help` included.
    pub options: Vec<Entry>,
    /// The options of the other forms of the binary ([`Help::merge`]): the option that picks
    /// the form (`--from-backup`) and the entries of its `Options:` that [`Help::options`] does
    /// not hold as they are (the same name with another description included).
    pub form_options: Vec<(String, Vec<Entry>)>,
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
    /// The program: the first word of the usage.
    pub fn program(&self) -> &str {
        self.usage
            .first()
            .and_then(|form| form.split_whitespace().next())
            .unwrap_or("")
    }

    /// The long option names (`--data-dir`, ..., `--help`) of the `Options:` section and of
    /// the other forms' (each once), each spelling of an entry such as `--help, help` counted
    /// when it starts with `--`.
    pub fn option_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let entries = self
            .options
            .iter()
            .chain(self.form_options.iter().flat_map(|(_, entries)| entries));
        for name in entries
            .flat_map(|entry| entry.name.split(", "))
            .filter(|name| name.starts_with("--"))
        {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// Adds `other`, the help of the binary's form picked by the option `selector`: its usage
    /// forms before this one's `--help | --version` form, its description paragraphs after
    /// this one's, its positional arguments and options that this help does not list as they
    /// are (options into [`Help::form_options`] under `selector`), and its sections' lines
    /// appended to this help's sections of the same title, after an empty line (and for a
    /// [`FORM_LABELLED`] section a line `With SELECTOR:`). A section with the same lines in
    /// both is kept once.
    pub fn merge(&mut self, other: Help, selector: &str) {
        let version_form = |form: &String| {
            form.split_whitespace()
                .any(|w| strip_group(w) == "--version")
        };
        let at = self
            .usage
            .iter()
            .position(version_form)
            .unwrap_or(self.usage.len());
        let forms: Vec<String> = other
            .usage
            .into_iter()
            .filter(|f| !version_form(f))
            .collect();
        self.usage.splice(at..at, forms);
        self.description.extend(other.description);
        for entry in other.positionals {
            if !self.positionals.contains(&entry) {
                self.positionals.push(entry);
            }
        }
        let own: Vec<Entry> = other
            .options
            .into_iter()
            .filter(|entry| !self.options.contains(entry))
            .collect();
        if !own.is_empty() {
            self.form_options.push((selector.to_owned(), own));
        }
        for section in other.sections {
            match self.sections.iter_mut().find(|s| s.title == section.title) {
                Some(mine) if mine.lines == section.lines => {}
                Some(mine) => {
                    mine.lines.push(String::new());
                    if FORM_LABELLED.contains(&section.title.as_str()) {
                        mine.lines.push(format!("With {selector}:"));
                    }
                    mine.lines.extend(section.lines);
                }
                None => self.sections.push(section),
            }
        }
    }

    /// The value an option takes as the usage shows it, group brackets and a repetition's
    /// `...` removed: `<[CODEC=]DIR>` for `[--dst-local <[CODEC=]DIR>]...`,
    /// `break|ignore|hang` for `[--error-pgcontroldata break|ignore|hang]`, `None` for a switch
    /// or an option the usage does not show. An entry with a short spelling (`-c, --check`) is
    /// looked up under each spelling.
    pub fn value_name(&self, option: &str) -> Option<String> {
        option.split(", ").find_map(|spelling| {
            for form in &self.usage {
                let mut words = form.split_whitespace();
                while let Some(word) = words.next() {
                    if strip_group(word) != spelling {
                        continue;
                    }
                    let value = words.next()?;
                    let bare = value.trim_start_matches(['[', '(']);
                    if bare.starts_with('-') || bare.starts_with('|') || bare.is_empty() {
                        return None;
                    }
                    return Some(strip_group(value).to_owned());
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

    /// The section titled `title`, if argh printed one.
    pub fn section(&self, title: &str) -> Option<&Section> {
        self.sections.iter().find(|section| section.title == title)
    }
}

/// A usage word without the brackets of the group it opens or closes and without a
/// repetition's `...`: `[--dst-local` and `<[CODEC=]DIR>]...` become `--dst-local` and
/// `<[CODEC=]DIR>`. Brackets inside `<...>` belong to the placeholder and stay.
pub fn strip_group(word: &str) -> &str {
    let mut word = word.trim_start_matches(['[', '(']);
    loop {
        let before = word;
        word = word.strip_suffix("...").unwrap_or(word);
        let outside = match (word.find('<'), word.rfind('>')) {
            (Some(open), Some(close)) if open < close => {
                format!("{}{}", &word[..open], &word[close + 1..])
            }
            _ => word.to_owned(),
        };
        let unbalanced = |open: char, close: char| {
            outside.matches(close).count() > outside.matches(open).count()
        };
        if (word.ends_with(']') && unbalanced('[', ']'))
            || (word.ends_with(')') && unbalanced('(', ')'))
        {
            word = &word[..word.len() - 1];
        }
        if word == before {
            return word;
        }
    }
}

/// What is wrong between the usage and the `Options:` section: an option the usage does not
/// show, or an option word in the usage that is not an option (`--help` and `--version`,
/// which every binary takes, are allowed in the usage), or `--version` missing from either.
/// Empty when they agree.
pub fn usage_problems(help: &Help) -> Vec<String> {
    let program = help.program();
    let options = help.option_names();
    let mut shown: Vec<&str> = Vec::new();
    for form in &help.usage {
        for word in form.split_whitespace() {
            let word = strip_group(word);
            if word.starts_with("--") && word.len() > 2 {
                shown.push(word);
            }
        }
    }
    let mut problems = Vec::new();
    for option in &options {
        if !matches!(*option, "--help" | "--version") && !shown.contains(option) {
            problems.push(format!("{program}: the usage does not show {option}"));
        }
    }
    for word in &shown {
        if !options.contains(word) && !matches!(*word, "--help" | "--version") {
            problems.push(format!(
                "{program}: the usage shows {word}, which is not an option"
            ));
        }
    }
    if !help.usage.iter().any(|form| {
        form.split_whitespace()
            .any(|w| strip_group(w) == "--version")
    }) {
        problems.push(format!("{program}: the usage does not show --version"));
    }
    if !options.contains(&"--version") {
        problems.push(format!("{program}: the options do not list --version"));
    }
    problems
}

/// The other forms of a binary, each as the arguments that print its `--help`, the first of
/// them the option that picks the form.
fn other_forms(tool: &str) -> &'static [&'static [&'static str]] {
    match tool {
        "pitr-restore" => &[&["--from-backup", "-", "--help"]],
        _ => &[],
    }
}

/// The help of the binary `tool` in `bin_dir`, every form of it merged ([`Help::merge`]).
pub fn of_tool(bin_dir: &Path, tool: &str) -> Result<Help> {
    let binary = bin_dir.join(tool);
    let mut help = of_binary(&binary, &["--help"])?;
    for args in other_forms(tool) {
        let other = of_binary(&binary, args)?;
        help.merge(other, args.first().copied().unwrap_or_default());
    }
    Ok(help)
}

/// Runs `binary` with `args` (ending in `--help`) and parses what it prints.
pub fn of_binary(binary: &Path, args: &[&str]) -> Result<Help> {
    let shown = format!("{} {}", binary.display(), args.join(" "));
    let output = Command::new(binary)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let text = String::from_utf8(output.stdout)
        .with_context(|| format!("{shown} printed invalid UTF-8"))?;
    parse(&text).with_context(|| format!("parsing the output of {shown}"))
}

/// Parses argh's help text.
pub fn parse(text: &str) -> Result<Help> {
    let mut lines = text.lines().peekable();
    let Some(first) = lines.next().and_then(|line| line.strip_prefix("Usage: ")) else {
        bail!("help text does not start with \"Usage: \"");
    };
    let mut help = Help {
        usage: vec![first.trim().to_owned()],
        ..Help::default()
    };
    let program = help.program().to_owned();

    // More usage lines up to the first empty one: a new form starts with the program's name.
    while let Some(line) = lines.peek() {
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        if line.split_whitespace().next() == Some(program.as_str()) {
            help.usage.push(line.to_owned());
        } else if let Some(form) = help.usage.last_mut() {
            form.push(' ');
            form.push_str(line);
        }
        lines.next();
    }

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
                    section.lines.push(line.trim_end().to_owned());
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
        "OmniPITR spellings",
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
/// The shape of `pitr-restore --help`, trimmed: the hand-written usage in two forms (the
/// first wrapped), and the sections argh adds for `example`, `note` and `error_code`.
pub const SAMPLE: &str = "\
Usage: pitr-restore [--source <[CODEC=]DIR>]... [--poll-interval <SECONDS>]
           [--streaming-replication] [--remove-unneeded] [--error-pgcontroldata break|ignore|hang] %f %p
       pitr-restore --help | --version

Restores one WAL file from the archive: restore_command = 'pitr-restore %f %p'.

It waits for the file.

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
  --error-pgcontroldata
                    what a pg_control error does
  --version, -V     print the program's name and version, and exit
  --help, help      display usage information

Examples:
  A warm spare:
    restore_command = 'pitr-restore --source zstd=/srv/wal %f %p'
  .leading dot

Notes:
  PostgreSQL runs it.
  
  Files:
  /etc/pitr/restore.conf  options for --config-file
  DATADIR/pg_wal/.pitr-prefetch
      segments decoded
      ahead

Error codes:
  0 restored
  1 not available,
    which ends recovery
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_usage_description_entries_and_sections() -> Result<()> {
        let help = parse(SAMPLE)?;
        assert_eq!(
            help.usage,
            [
                "pitr-restore [--source <[CODEC=]DIR>]... [--poll-interval <SECONDS>] \
                 [--streaming-replication] [--remove-unneeded] \
                 [--error-pgcontroldata break|ignore|hang] %f %p",
                "pitr-restore --help | --version"
            ]
        );
        assert_eq!(help.program(), "pitr-restore");
        assert_eq!(
            help.description,
            [
                "Restores one WAL file from the archive: restore_command = 'pitr-restore %f %p'.",
                "It waits for the file."
            ]
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
                "--error-pgcontroldata",
                "--version, -V",
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
            [
                "A warm spare:",
                "  restore_command = 'pitr-restore --source zstd=/srv/wal %f %p'",
                ".leading dot"
            ]
        );
        assert_eq!(
            help.section("Error codes").map(|s| s.lines.clone()),
            Some(vec![
                "0 restored".to_owned(),
                "1 not available,".to_owned(),
                "  which ends recovery".to_owned()
            ])
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
                "--error-pgcontroldata",
                "--version",
                "--help"
            ]
        );
        assert_eq!(
            help.value_name("--source").as_deref(),
            Some("<[CODEC=]DIR>")
        );
        assert_eq!(
            help.value_name("--poll-interval").as_deref(),
            Some("<SECONDS>")
        );
        assert_eq!(
            help.value_name("--error-pgcontroldata").as_deref(),
            Some("break|ignore|hang")
        );
        assert_eq!(help.value_name("--remove-unneeded"), None);
        assert_eq!(help.value_name("--help"), None);
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
        assert_eq!(help.value_name("-c, --check").as_deref(), Some("<check>"));
        assert_eq!(help.value_name("--archive").as_deref(), Some("<archive>"));
        assert_eq!(help.value_name("-v, --verbose"), None);
        Ok(())
    }

    #[test]
    fn group_brackets_and_repetition_are_stripped_placeholder_brackets_kept() {
        assert_eq!(strip_group("[--dst-local"), "--dst-local");
        assert_eq!(strip_group("<[CODEC=]DIR>]..."), "<[CODEC=]DIR>");
        assert_eq!(strip_group("[--verbose]"), "--verbose");
        assert_eq!(strip_group("<NAME>|latest]"), "<NAME>|latest");
        assert_eq!(strip_group("[--remove-unneeded"), "--remove-unneeded");
        assert_eq!(strip_group("<N>]]"), "<N>");
        assert_eq!(strip_group("%p"), "%p");
    }

    #[test]
    fn usage_problems_name_options_missing_from_either_side() -> Result<()> {
        assert_eq!(usage_problems(&parse(SAMPLE)?), Vec::<String>::new());
        let drifted = SAMPLE
            .replace("[--poll-interval <SECONDS>]", "[--poll <SECONDS>]")
            .replace("pitr-restore --help | --version", "pitr-restore --help")
            .replace(
                "  --version, -V     print the program's name and version, and exit\n",
                "",
            );
        assert_eq!(
            usage_problems(&parse(&drifted)?),
            [
                "pitr-restore: the usage does not show --poll-interval",
                "pitr-restore: the usage shows --poll, which is not an option",
                "pitr-restore: the usage does not show --version",
                "pitr-restore: the options do not list --version",
            ]
        );
        Ok(())
    }

    #[test]
    fn a_second_form_merges_into_one_help() -> Result<()> {
        let mut help = parse(SAMPLE)?;
        let other = parse(
            "Usage: pitr-restore --from-backup <DIR> --source <[CODEC=]DIR>... \
             [--target-time <TIME>]\n\n\
             --from-backup restores a backup set.\n\n\
             Options:\n  \
             --from-backup     the backup sets\n  \
             --source          the WAL archive the restored server recovers from\n  \
             --poll-interval   seconds between looks at the archive while waiting (default\n                    \
             1; decimals allowed)\n  \
             --target-time     recover up to this time\n  \
             --version, -V     print the program's name and version, and exit\n  \
             --help, help      display usage information\n\n\
             Examples:\n  A warm spare:\n    \
             restore_command = 'pitr-restore --source zstd=/srv/wal %f %p'\n  \
             .leading dot\n\n\
             Notes:\n  Files:\n  NEW/postgresql.auto.conf  recovery settings\n\n\
             Error codes:\n  3 with --from-backup: a usage error\n\n\
             OmniPITR spellings:\n  -s                --source\n  Not supported:\n    -D\n",
        )?;
        help.sections.push(Section {
            title: "OmniPITR spellings".into(),
            lines: vec!["-D                --data-dir".into()],
        });
        help.merge(other, "--from-backup");
        assert_eq!(help.usage.len(), 3);
        assert!(help.usage[1].starts_with("pitr-restore --from-backup <DIR>"));
        assert_eq!(help.usage[2], "pitr-restore --help | --version");
        assert_eq!(
            help.description.last().map(String::as_str),
            Some("--from-backup restores a backup set.")
        );
        // The first form's options stay as they were; the other form's own follow, --source
        // among them for its other meaning, --poll-interval, --version and --help not repeated.
        assert_eq!(help.options.len(), 7);
        let (selector, own) = &help.form_options[0];
        assert_eq!(selector, "--from-backup");
        let own: Vec<&str> = own.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(own, ["--from-backup", "--source", "--target-time"]);
        assert_eq!(
            help.option_names(),
            [
                "--source",
                "--poll-interval",
                "--streaming-replication",
                "--remove-unneeded",
                "--error-pgcontroldata",
                "--version",
                "--help",
                "--from-backup",
                "--target-time"
            ]
        );
        assert_eq!(help.value_name("--target-time").as_deref(), Some("<TIME>"));
        assert_eq!(usage_problems(&help), Vec::<String>::new());
        assert_eq!(
            help.section("Error codes").map(|s| s.lines.clone()),
            Some(vec![
                "0 restored".to_owned(),
                "1 not available,".to_owned(),
                "  which ends recovery".to_owned(),
                String::new(),
                "3 with --from-backup: a usage error".to_owned()
            ])
        );
        assert!(help
            .section("Notes")
            .is_some_and(|s| s.lines.iter().any(|l| l.starts_with("NEW/postgresql"))));
        // Every title once; a section both forms print alike (the examples) once, and one
        // that differs (the OmniPITR spellings) under a line naming the form.
        let titles: Vec<&str> = help.sections.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(
            titles,
            ["Examples", "Notes", "Error codes", "OmniPITR spellings"]
        );
        assert_eq!(help.section("Examples").map(|s| s.lines.len()), Some(3));
        assert_eq!(
            help.section("OmniPITR spellings").map(|s| s.lines.clone()),
            Some(vec![
                "-D                --data-dir".to_owned(),
                String::new(),
                "With --from-backup:".to_owned(),
                "-s                --source".to_owned(),
                "Not supported:".to_owned(),
                "  -D".to_owned(),
            ])
        );
        Ok(())
    }

    #[test]
    fn rejects_text_that_is_not_argh_help() {
        assert!(parse("pitr-archive 0.1.0\n").is_err());
        assert!(parse("Usage: x\n\nabout\n\nOptions:\n                    orphan\n").is_err());
    }
}

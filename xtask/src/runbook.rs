//! The check that every command block of docs/runbook.md is run somewhere.
//!
//! The runbook promises that each of its commands runs: in `cargo xtask demo` or in a test.
//! Below each fenced block an HTML comment says where: `<!-- exercised by: ... -->` naming
//! demo steps (`cargo xtask demo, step 4`, `steps 2, 5 and 6`), integration tests
//! (`tests/tests/it/restore.rs::warm_spare_...`) or `cargo xtask rpm --check`; or
//! `<!-- not a command: ... -->` for a block that only shows a file or an output. [`problems`]
//! checks each block has such a comment, each named test exists and each demo step number is
//! one the demo has, so that an annotation cannot silently point at nothing.

use std::fs;
use std::path::Path;

/// A fenced block of the runbook and the annotation below it.
#[derive(Debug, PartialEq, Eq)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    /// The annotation's text, without `<!--` and `-->`, if the next non-empty line is one.
    annotation: Option<String>,
}

/// The fenced blocks of a Markdown text, each with the HTML comment that follows it.
fn blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        if !lines[index].starts_with("```") {
            index += 1;
            continue;
        }
        let line = index + 1;
        index += 1;
        while index < lines.len() && !lines[index].starts_with("```") {
            index += 1;
        }
        index += 1;
        let annotation = lines[index.min(lines.len())..]
            .iter()
            .find(|l| !l.trim().is_empty())
            .and_then(|l| l.trim().strip_prefix("<!--"))
            .and_then(|l| l.strip_suffix("-->"))
            .map(|l| l.trim().to_owned());
        blocks.push(Block { line, annotation });
    }
    blocks
}

/// The demo step numbers an annotation names: the numbers after each `step` or `steps`
/// ("steps 2, 5 and 6", "steps 4 to 10").
fn demo_steps(annotation: &str) -> Vec<usize> {
    let mut steps = Vec::new();
    let mut words = annotation.split_whitespace().peekable();
    while let Some(word) = words.next() {
        if word != "step" && word != "steps" {
            continue;
        }
        while let Some(next) = words.peek() {
            let bare = next.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            if let Ok(number) = bare.parse::<usize>() {
                steps.push(number);
            } else if !matches!(bare, "and" | "to" | "") {
                break;
            }
            words.next();
        }
    }
    steps
}

/// The `tests/tests/it/FILE.rs::name` references of an annotation.
fn test_references(annotation: &str) -> Vec<(String, String)> {
    annotation
        .split_whitespace()
        .map(|word| word.trim_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter_map(|word| word.split_once(".rs::"))
        .map(|(file, name)| (format!("{file}.rs"), name.to_owned()))
        .collect()
}

/// What is wrong with the annotations of `runbook` (the text of docs/runbook.md) given the
/// repository at `root` and the number of steps the demo has.
fn problems(runbook: &str, root: &Path, demo_step_count: usize) -> Vec<String> {
    let mut problems = Vec::new();
    for block in blocks(runbook) {
        let at = format!("docs/runbook.md:{}", block.line);
        let Some(annotation) = block.annotation else {
            problems.push(format!(
                "{at}: no <!-- exercised by: ... --> or <!-- not a command: ... --> below the block"
            ));
            continue;
        };
        if annotation.starts_with("not a command:") {
            continue;
        }
        let Some(text) = annotation.strip_prefix("exercised by:") else {
            problems.push(format!(
                "{at}: the comment below the block says neither \"exercised by:\" nor \"not a \
                 command:\""
            ));
            continue;
        };
        let steps = if text.contains("cargo xtask demo") {
            demo_steps(text)
        } else {
            Vec::new()
        };
        let tests = test_references(text);
        if steps.is_empty() && tests.is_empty() && !text.contains("cargo xtask rpm --check") {
            problems.push(format!(
                "{at}: the annotation names no demo step, test or cargo xtask rpm --check"
            ));
        }
        for step in steps {
            if step == 0 || step > demo_step_count {
                problems.push(format!(
                    "{at}: the demo has no step {step} (it has {demo_step_count})"
                ));
            }
        }
        for (file, name) in tests {
            let path = root.join(&file);
            let found = fs::read_to_string(&path)
                .is_ok_and(|source| source.contains(&format!("fn {name}(")));
            if !found {
                problems.push(format!("{at}: no test {name} in {file}"));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project_root;

    #[test]
    fn every_runbook_block_names_an_existing_demo_step_or_test() -> anyhow::Result<()> {
        let root = project_root();
        let runbook = fs::read_to_string(root.join("docs/runbook.md"))?;
        let demo = fs::read_to_string(root.join("xtask/src/demo.rs"))?;
        let step_count = demo.matches("self.begin_step(").count();
        assert!(step_count >= 11, "the demo has {step_count} steps");
        assert!(
            blocks(&runbook).len() > 30,
            "the runbook's blocks were not found"
        );
        let problems = problems(&runbook, &root, step_count);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        Ok(())
    }

    #[test]
    fn finds_blocks_annotations_steps_and_tests() {
        let text = "# T\n\n```sh\na\n```\n\n<!-- exercised by: cargo xtask demo, steps 2, 5 and 6 \
                    (x); tests/tests/it/restore.rs::warm_spare_x -->\n\n```ini\nb\n```\ntext\n";
        let found = blocks(text);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].line, 3);
        let annotation = found[0].annotation.clone().unwrap_or_default();
        assert_eq!(demo_steps(&annotation), [2, 5, 6]);
        assert_eq!(
            test_references(&annotation),
            [(
                "tests/tests/it/restore.rs".to_owned(),
                "warm_spare_x".to_owned()
            )]
        );
        assert_eq!(found[1].annotation, None);
        assert_eq!(demo_steps("steps 4 to 10 wait"), [4, 10]);
        assert_eq!(demo_steps("step 3 (pitr-backup) and step 9"), [3, 9]);
    }

    #[test]
    fn problems_name_missing_annotations_steps_and_tests() {
        let text = "```sh\na\n```\n\n```sh\nb\n```\n<!-- exercised by: cargo xtask demo, step \
                    12 -->\n```sh\nc\n```\n<!-- exercised by: tests/tests/it/nope.rs::gone -->\n\
                    ```text\nd\n```\n<!-- not a command: output -->\n";
        assert_eq!(
            problems(text, &project_root(), 11),
            [
                "docs/runbook.md:1: no <!-- exercised by: ... --> or <!-- not a command: ... --> \
                 below the block",
                "docs/runbook.md:5: the demo has no step 12 (it has 11)",
                "docs/runbook.md:9: no test gone in tests/tests/it/nope.rs",
            ]
        );
    }
}

//! The proptest targets of pitr-common's parsers (`common/tests/parsers.rs`), run with many
//! cases: a failing property (a panic, or a checksum or round trip that does not hold) is a bad
//! outcome, with proptest's minimal failing input in the finding.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pitr_tests::procs::OutputWithin;

use super::{Bad, Ctx, Tally};

const NAME: &str = "parsers";

pub fn run(ctx: &Ctx, tally: &mut Tally) -> Result<()> {
    let cases: u32 = ctx.pick(2_000, 50_000);
    let started = Instant::now();
    let out = Command::new(crate::cargo())
        .current_dir(&ctx.project)
        .env("PITR_FUZZ_CASES", cases.to_string())
        .args([
            "test",
            "-p",
            "pitr-common",
            "--test",
            "parsers",
            "--",
            "--test-threads",
            "2",
        ])
        // A build first, then many cases on two threads: generous, but not forever.
        .output_within(ctx.pick(Duration::from_secs(1800), Duration::from_secs(7200)))
        .context("running cargo test -p pitr-common --test parsers")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut properties = 0u64;
    let repro = format!(
        "PITR_FUZZ_CASES={cases} cargo test -p pitr-common --test parsers (or {})",
        ctx.repro(NAME, 0)
    );
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let Some((name, verdict)) = rest.split_once(" ... ") else {
            continue;
        };
        properties += 1;
        tally.run();
        if verdict.trim() != "ok" {
            let detail = failure_detail(&stdout, name);
            if detail.contains("panicked at common/src") {
                // The parser itself panicked.
                tally.bad(Bad::Panic, format!("property {name}: {detail}"), &repro);
            } else if detail.contains("Test failed") {
                // A property that does not hold: corrupt input accepted, or no round trip.
                tally.bad(Bad::Corrupt, format!("property {name}: {detail}"), &repro);
            } else {
                // The property itself could not run (too many rejected inputs, ...): a fault
                // of the campaign, not of the parser.
                tally.note(format!("property {name} could not run: {detail}"));
                tally.aborted = Some(format!("property {name} could not run"));
            }
        }
    }
    tally.faults = tally.runs * u64::from(cases);
    tally.note(format!(
        "{properties} properties, {cases} cases each, {:.0} s (build included)",
        started.elapsed().as_secs_f64()
    ));
    if properties == 0 {
        anyhow::bail!(
            "no property ran: {}{}",
            stdout.lines().last().unwrap_or(""),
            stderr.lines().rev().take(5).collect::<Vec<_>>().join(" / ")
        );
    }
    Ok(())
}

/// The lines about test `name` in cargo test's failure section, joined.
fn failure_detail(stdout: &str, name: &str) -> String {
    let header = format!("---- {name} stdout ----");
    let Some(start) = stdout.find(&header) else {
        return "see cargo test's output".to_owned();
    };
    stdout[start + header.len()..]
        .lines()
        .take_while(|l| !l.starts_with("---- ") && !l.starts_with("failures:"))
        .filter(|l| !l.trim().is_empty() && !l.contains("note: run with"))
        .take(6)
        .collect::<Vec<_>>()
        .join(" / ")
}

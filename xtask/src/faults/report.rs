//! `docs/faults.md`: what the run was (commit, dirty tree, date, mode, seed), one table of
//! runs, faults and bad outcomes per campaign, each campaign's notes, and the bad outcomes seen
//! with the command that replays each.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pitr_tests::procs::{OutputWithin, EXTERNAL_TIMEOUT};

use super::outcome::{Bad, Tally};
use super::runner::Mode;

/// Findings listed per campaign and kind before the rest are only counted.
const LISTED: usize = 15;

/// The commit the run was built from.
#[derive(Clone)]
pub struct GitState {
    pub commit: String,
    pub dirty: bool,
}

impl GitState {
    /// `git rev-parse HEAD` and whether `git status --porcelain` shows changes other than the
    /// report itself.
    pub fn of(root: &Path) -> GitState {
        let git = |args: &[&str]| {
            Command::new("git")
                .current_dir(root)
                .args(args)
                .output_within(EXTERNAL_TIMEOUT)
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let commit = git(&["rev-parse", "HEAD"]).map_or_else(
            || "unknown (not a git checkout)".to_owned(),
            |s| s.trim().to_owned(),
        );
        let dirty = git(&["status", "--porcelain"]).is_some_and(|s| {
            s.lines()
                .any(|l| !l.ends_with("docs/faults.md") && !l.trim().is_empty())
        });
        GitState { commit, dirty }
    }
}

pub struct Report {
    pub git: GitState,
    pub mode: Mode,
    pub seed: u64,
    pub only: Option<String>,
    pub run: Option<u64>,
    pub release: bool,
    pub elapsed: Duration,
    pub tallies: Vec<Tally>,
    /// Campaigns selected but not run (yet): the report of an interrupted run names them.
    pub pending: Vec<&'static str>,
}

impl Report {
    /// The summary table: one row per campaign, one column per bad outcome.
    pub fn table(&self) -> String {
        let mut s = String::from("| campaign | runs | faults injected |");
        for b in Bad::ALL {
            let _ = write!(s, " {} |", b.title());
        }
        s.push_str("\n|---|---:|---:|");
        for _ in Bad::ALL {
            s.push_str("---:|");
        }
        s.push('\n');
        let mut total = [0u64; Bad::ALL.len()];
        let (mut runs, mut faults) = (0, 0);
        for t in &self.tallies {
            let name = if t.aborted.is_some() {
                format!("{} (stopped early)", t.name)
            } else {
                t.name.to_owned()
            };
            let _ = write!(s, "| {name} | {} | {} |", t.runs, t.faults);
            for (i, b) in Bad::ALL.iter().enumerate() {
                let n = t.count(*b);
                total[i] += n;
                if n == 0 {
                    s.push_str(" 0 |");
                } else {
                    let _ = write!(s, " **{n}** |");
                }
            }
            s.push('\n');
            runs += t.runs;
            faults += t.faults;
        }
        let _ = write!(s, "| total | {runs} | {faults} |");
        for n in total {
            let _ = write!(s, " {n} |");
        }
        s.push('\n');
        s
    }

    pub fn render(&self) -> String {
        let mut s = String::from("# Fault campaign\n\n");
        s.push_str(
            "Written by `cargo xtask faults` (xtask/src/faults/); do not edit by hand. Each \
             campaign injects faults into the built binaries and real PostgreSQL 15 clusters and \
             counts the bad outcomes; the command after each outcome replays that run.\n\n",
        );
        let mode = match self.mode {
            Mode::Quick => "quick (`--quick`, what CI runs)",
            Mode::Full => "full",
        };
        let _ = writeln!(
            s,
            "- commit: `{}`{}",
            self.git.commit,
            if self.git.dirty {
                " (working tree with uncommitted changes)"
            } else {
                ""
            }
        );
        let _ = writeln!(s, "- date: {}", utc_now());
        let _ = writeln!(s, "- mode: {mode}");
        let _ = writeln!(s, "- seed: {}", self.seed);
        let _ = writeln!(
            s,
            "- binaries: {}",
            if self.release {
                "release (`--release`)"
            } else {
                "debug"
            }
        );
        if let Some(only) = &self.only {
            let _ = writeln!(s, "- campaigns: `--only {only}`");
        }
        if let Some(run) = self.run {
            let _ = writeln!(s, "- one run replayed: `--run {run}`");
        }
        if !self.pending.is_empty() {
            let _ = writeln!(
                s,
                "- **not run** (the run stopped before them): {}",
                self.pending.join(", ")
            );
        }
        let _ = writeln!(
            s,
            "- duration: {:.0} s on {} cores\n",
            self.elapsed.as_secs_f64(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        s.push_str(&self.table());
        s.push('\n');
        let bad: u64 = self.tallies.iter().map(Tally::bad_total).sum();
        if bad == 0 && self.pending.is_empty() && self.tallies.iter().all(|t| t.aborted.is_none()) {
            s.push_str("No bad outcome was counted.\n\n");
        }
        for t in &self.tallies {
            let _ = writeln!(s, "## {}\n\n{}\n", t.name, t.what);
            let _ = writeln!(
                s,
                "{} runs, {} faults injected, {:.0} s.\n",
                t.runs,
                t.faults,
                t.elapsed.as_secs_f64()
            );
            if let Some(why) = &t.aborted {
                let _ = writeln!(s, "**Stopped early:** {}\n", one_line(why));
            }
            for line in &t.notes {
                let _ = writeln!(s, "- {line}");
            }
            if !t.info.is_empty() {
                for (key, n) in &t.info {
                    let _ = writeln!(s, "- {key}: {n}");
                }
            }
            if !t.notes.is_empty() || !t.info.is_empty() {
                s.push('\n');
            }
            for b in Bad::ALL {
                let found: Vec<_> = t.findings.iter().filter(|f| f.bad == b).collect();
                if found.is_empty() {
                    continue;
                }
                let _ = writeln!(s, "**{}** ({}):\n", b.title(), t.count(b));
                for f in found.iter().take(LISTED) {
                    let _ = writeln!(s, "- {}  \n  `{}`", one_line(&f.what), f.repro);
                }
                if found.len() > LISTED {
                    let _ = writeln!(s, "- … and {} more like these", found.len() - LISTED);
                }
                s.push('\n');
            }
        }
        s
    }
}

/// `text` on one line (newlines shown as ` / `), at most 700 characters.
fn one_line(text: &str) -> String {
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    if joined.chars().count() > 700 {
        let cut: String = joined.chars().take(700).collect();
        format!("{cut}…")
    } else {
        joined
    }
}

/// Now, as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn one_line_joins_and_cuts() {
        assert_eq!(one_line("a\n  b\n\nc"), "a / b / c");
        assert_eq!(one_line(&"x".repeat(800)).chars().count(), 701);
    }

    #[test]
    fn table_marks_bad_counts() {
        let mut t = Tally::new("x", "what");
        t.run();
        t.bad(
            Bad::Panic,
            "boom",
            "cargo xtask faults --only x --seed 1 --run 0",
        );
        let tallies = vec![t];
        let r = Report {
            git: GitState {
                commit: "abc".into(),
                dirty: false,
            },
            mode: Mode::Quick,
            seed: 1,
            only: None,
            run: None,
            release: false,
            elapsed: Duration::from_secs(1),
            tallies,
            pending: Vec::new(),
        };
        let table = r.table();
        assert!(
            table.contains("| x | 1 | 0 | 0 | 0 | 0 | **1** |"),
            "{table}"
        );
        let md = r.render();
        assert!(md.contains("- boom  \n  `cargo xtask faults --only x --seed 1 --run 0`"));
    }
}

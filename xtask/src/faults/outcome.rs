//! What a campaign counts: runs, faults injected, and each bad outcome with how to replay it.

use std::collections::BTreeMap;
use std::time::Duration;

/// A bad outcome. Each is a broken promise of SPEC.md or ARCHITECTURE.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bad {
    /// A WAL file PostgreSQL was told is archived (exit 0) that a destination does not hold, or
    /// rows a recovered server does not have.
    Lost,
    /// A partial, corrupt or foreign file under a final name (an archive, `%p`, a backup set).
    Corrupt,
    /// A warm spare that ended recovery before the damaged segment was repaired.
    FalsePromotion,
    /// Death by SIGABRT (status 134): a panic.
    Panic,
    /// An exit status the caller reads wrongly (0 for a failure; 1–125 from restore_command
    /// for an error; a usage error that is not the usage status; ...).
    WrongStatus,
    /// An error that does not say what to do: no `HINT:` line, or not one line.
    NoHint,
    /// Files left behind that the next run or pitr-cleanup does not remove.
    LeftBehind,
    /// A run refused with bad input but wrote something.
    Written,
    /// Once the fault was gone (space freed, file repaired, retry), the work still did not
    /// complete.
    NotRecovered,
}

impl Bad {
    /// Every kind, in table order.
    pub const ALL: [Bad; 9] = [
        Bad::Lost,
        Bad::Corrupt,
        Bad::FalsePromotion,
        Bad::Panic,
        Bad::WrongStatus,
        Bad::NoHint,
        Bad::LeftBehind,
        Bad::Written,
        Bad::NotRecovered,
    ];

    /// The column title.
    pub fn title(self) -> &'static str {
        match self {
            Bad::Lost => "lost",
            Bad::Corrupt => "corrupt/partial under final name",
            Bad::FalsePromotion => "false promotions",
            Bad::Panic => "panics",
            Bad::WrongStatus => "wrong exit status",
            Bad::NoHint => "error without HINT",
            Bad::LeftBehind => "files left behind",
            Bad::Written => "written on bad input",
            Bad::NotRecovered => "not recovered after the fault",
        }
    }
}

/// One bad outcome seen: what happened and the command that replays it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub bad: Bad,
    pub what: String,
    pub repro: String,
}

/// The counters of one campaign.
#[derive(Debug, Clone)]
pub struct Tally {
    pub name: &'static str,
    pub what: &'static str,
    pub runs: u64,
    pub faults: u64,
    pub counts: BTreeMap<Bad, u64>,
    pub findings: Vec<Finding>,
    /// Informative counters that are not bad outcomes (temp files the next run removed, ...).
    pub info: BTreeMap<String, u64>,
    /// Free-form lines for the report (measured call durations, ...).
    pub notes: Vec<String>,
    pub elapsed: Duration,
    /// Why the campaign stopped before its end, if it did.
    pub aborted: Option<String>,
}

impl Tally {
    pub fn new(name: &'static str, what: &'static str) -> Tally {
        Tally {
            name,
            what,
            runs: 0,
            faults: 0,
            counts: BTreeMap::new(),
            findings: Vec::new(),
            info: BTreeMap::new(),
            notes: Vec::new(),
            elapsed: Duration::ZERO,
            aborted: None,
        }
    }

    /// One more run.
    pub fn run(&mut self) {
        self.runs += 1;
    }

    /// One more fault injected (a kill that hit a running process, a damaged file, ...).
    pub fn fault(&mut self) {
        self.faults += 1;
    }

    /// After a kill: counts the fault if it `hit` a running process, and a panic if `done`
    /// shows one (described by `what`).
    pub fn killed(&mut self, hit: bool, done: &super::runner::Done, what: &str, repro: &str) {
        if hit {
            self.fault();
        }
        if done.panicked() {
            self.bad(Bad::Panic, format!("{what}: {}", done.first_error()), repro);
        }
    }

    /// Counts `n` bad outcomes of kind `bad` seen in one run, described by `what`.
    pub fn bad_n(&mut self, bad: Bad, n: u64, what: impl Into<String>, repro: &str) {
        if n == 0 {
            return;
        }
        *self.counts.entry(bad).or_default() += n;
        let what = what.into();
        println!("   BAD ({}): {what}", bad.title());
        self.findings.push(Finding {
            bad,
            what,
            repro: repro.to_owned(),
        });
    }

    /// Counts one bad outcome.
    pub fn bad(&mut self, bad: Bad, what: impl Into<String>, repro: &str) {
        self.bad_n(bad, 1, what, repro);
    }

    /// Adds `n` to the informative counter `key`.
    pub fn info(&mut self, key: &str, n: u64) {
        *self.info.entry(key.to_owned()).or_default() += n;
    }

    /// A line for the report.
    pub fn note(&mut self, line: impl Into<String>) {
        let line = line.into();
        println!("   {line}");
        self.notes.push(line);
    }

    pub fn count(&self, bad: Bad) -> u64 {
        self.counts.get(&bad).copied().unwrap_or(0)
    }

    pub fn bad_total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// One line: runs, faults, bad outcomes.
    pub fn summary(&self) -> String {
        let bad: Vec<String> = Bad::ALL
            .iter()
            .filter(|b| self.count(**b) > 0)
            .map(|b| format!("{} {}", self.count(*b), b.title()))
            .collect();
        format!(
            "{}: {} runs, {} faults injected, {} ({:.0} s)",
            self.name,
            self.runs,
            self.faults,
            if bad.is_empty() {
                "no bad outcome".to_owned()
            } else {
                bad.join(", ")
            },
            self.elapsed.as_secs_f64()
        )
    }
}

//! What a check found, and the three ways it is printed: the monitoring-plugin line, JSON, and
//! OmniPITR's bare output; plus the Prometheus textfile.
//!
//! Every check builds one [`Report`]: a status, a one-line summary, its metrics (each with the
//! thresholds that apply to it), optional detail lines for people, and check-specific details
//! for JSON. The status is the worst of what the check decided itself (a gap in the archive is
//! CRITICAL whatever the thresholds) and of every metric against its thresholds.
//!
//! Plugin output (Monitoring Plugins guidelines): `STATUS - summary | perfdata` on the first
//! line, detail lines after it (Nagios shows them as long output), exit 0/1/2/3 for
//! OK/WARNING/CRITICAL/UNKNOWN. JSON: one object, schema in README.md ("pitr-monitor JSON").
//! Prometheus: node_exporter's textfile format, written durably under a temporary name and
//! renamed, so the collector never reads half a file.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::threshold::Range;

/// A check's outcome, in the monitoring-plugin order of severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Exit 0.
    Ok,
    /// Exit 1.
    Warning,
    /// Exit 2.
    Critical,
    /// Exit 3: the check could not tell.
    Unknown,
}

/// The exit status of UNKNOWN, also used for errors and usage errors.
pub const UNKNOWN: u8 = 3;

impl Status {
    /// The plugin word: `OK`, `WARNING`, `CRITICAL`, `UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// The exit status.
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => UNKNOWN,
        }
    }
}

/// How a metric's value is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Seconds (perfdata `s`, Prometheus `_seconds`).
    Seconds,
    /// Bytes (perfdata `B`, Prometheus `_bytes`).
    Bytes,
    /// A plain count.
    Count,
}

impl Unit {
    fn perfdata(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Bytes => "B",
            Unit::Count => "",
        }
    }

    fn prometheus_suffix(self) -> &'static str {
        match self {
            Unit::Seconds => "_seconds",
            Unit::Bytes => "_bytes",
            Unit::Count => "",
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::Bytes => "bytes",
            Unit::Count => "count",
        }
    }
}

/// One measured value.
#[derive(Debug, Clone)]
pub struct Metric {
    /// Name, `snake_case` (perfdata label, JSON name, Prometheus name after `pitr_`).
    pub name: &'static str,
    /// What it means, for the Prometheus `# HELP` line.
    pub help: &'static str,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: Unit,
    /// Labels that tell apart several values of one metric (Prometheus only; perfdata labels
    /// get them appended).
    pub labels: Vec<(&'static str, String)>,
    /// Alert WARNING when this range says so.
    pub warning: Option<Range>,
    /// Alert CRITICAL when this range says so.
    pub critical: Option<Range>,
}

impl Metric {
    /// A metric without labels or thresholds.
    pub fn new(name: &'static str, help: &'static str, value: f64, unit: Unit) -> Metric {
        Metric {
            name,
            help,
            value,
            unit,
            labels: Vec::new(),
            warning: None,
            critical: None,
        }
    }

    /// Adds a label.
    #[must_use]
    pub fn label(mut self, key: &'static str, value: impl Into<String>) -> Metric {
        self.labels.push((key, value.into()));
        self
    }

    /// Sets the thresholds.
    #[must_use]
    pub fn thresholds(mut self, warning: Option<Range>, critical: Option<Range>) -> Metric {
        self.warning = warning;
        self.critical = critical;
        self
    }

    fn status(&self) -> Status {
        if self.critical.as_ref().is_some_and(|r| r.alerts(self.value)) {
            Status::Critical
        } else if self.warning.as_ref().is_some_and(|r| r.alerts(self.value)) {
            Status::Warning
        } else {
            Status::Ok
        }
    }

    /// The perfdata label: the name, numbered (`backup_sets_2`) when several values share it;
    /// label values (paths) stay out of it, they are for Prometheus and JSON.
    fn perfdata_label(&self, nth: Option<usize>) -> String {
        match nth {
            Some(n) => format!("{}_{n}", self.name),
            None => self.name.to_string(),
        }
    }
}

/// What one check found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The check's name as OmniPITR spells it (`last-archive-age`).
    pub check: &'static str,
    /// The status the check decided by itself, before thresholds.
    pub status: Status,
    /// The summary after `STATUS - `.
    pub summary: String,
    /// Measured values.
    pub metrics: Vec<Metric>,
    /// Lines printed after the first one (long output): tables, one problem per line.
    pub lines: Vec<String>,
    /// Check-specific details for JSON (an object).
    pub details: Value,
    /// What OmniPITR's monitor printed for this check (`--output omnipitr`).
    pub omnipitr: String,
}

impl Report {
    /// A report with status OK and nothing else yet.
    pub fn new(check: &'static str, summary: impl Into<String>) -> Report {
        Report {
            check,
            status: Status::Ok,
            summary: summary.into(),
            metrics: Vec::new(),
            lines: Vec::new(),
            details: json!({}),
            omnipitr: String::new(),
        }
    }

    /// Raises the status to at least `status`.
    pub fn at_least(&mut self, status: Status) {
        self.status = self.status.max(status);
    }

    /// The final status: the check's own and every metric's against its thresholds.
    pub fn final_status(&self) -> Status {
        self.metrics
            .iter()
            .map(Metric::status)
            .fold(self.status, Status::max)
    }

    /// The monitoring-plugin text: `STATUS - summary | perfdata`, then the detail lines.
    pub fn plugin_text(&self) -> String {
        // `|` starts the performance data, in the first line and in the long output: one in
        // a message (a logged error, a path) would cut the text and corrupt the perfdata.
        let text = |s: &str| s.replace('|', "¦");
        let mut out = format!("{} - {}", self.final_status().as_str(), text(&self.summary));
        let perf: Vec<String> = self
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let same = |o: &Metric| o.name == m.name;
                let nth = (self.metrics.iter().filter(|o| same(o)).count() > 1)
                    .then(|| self.metrics[..=i].iter().filter(|o| same(o)).count());
                perfdata(m, nth)
            })
            .collect();
        if !perf.is_empty() {
            out.push_str(" | ");
            out.push_str(&perf.join(" "));
        }
        out.push('\n');
        for line in &self.lines {
            out.push_str(&text(line));
            out.push('\n');
        }
        out
    }

    /// The JSON object (README.md, "pitr-monitor JSON").
    pub fn json(&self, at: SystemTime) -> Value {
        let status = self.final_status();
        let metrics: Vec<Value> = self
            .metrics
            .iter()
            .map(|m| {
                let labels: serde_json::Map<String, Value> = m
                    .labels
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), Value::from(v.as_str())))
                    .collect();
                json!({
                    "name": m.name,
                    "value": m.value,
                    "unit": m.unit.as_str(),
                    "labels": labels,
                    "warning": m.warning.as_ref().map(Range::as_str),
                    "critical": m.critical.as_ref().map(Range::as_str),
                    "status": m.status().as_str(),
                })
            })
            .collect();
        json!({
            "check": self.check,
            "status": status.as_str(),
            "exit_code": status.code(),
            "summary": self.summary,
            "time": unix_seconds(at),
            "metrics": metrics,
            "details": self.details,
        })
    }

    /// node_exporter's textfile format: every metric as `pitr_NAME[_UNIT]{check="...",...}`,
    /// plus `pitr_monitor_status` (the exit status) and `pitr_monitor_last_run_seconds`.
    pub fn prometheus_text(&self, at: SystemTime) -> String {
        let mut out = String::new();
        let check = escape_label(self.check);
        let mut seen: Vec<String> = Vec::new();
        for m in &self.metrics {
            let name = format!("pitr_{}{}", m.name, m.unit.prometheus_suffix());
            if !seen.contains(&name) {
                let _ = writeln!(out, "# HELP {name} {}", m.help);
                let _ = writeln!(out, "# TYPE {name} gauge");
                seen.push(name.clone());
            }
            let mut labels = format!("check=\"{check}\"");
            for (k, v) in &m.labels {
                let _ = write!(labels, ",{k}=\"{}\"", escape_label(v));
            }
            let _ = writeln!(out, "{name}{{{labels}}} {}", number(m.value));
        }
        let _ = writeln!(
            out,
            "# HELP pitr_monitor_status Exit status of the check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.\n\
             # TYPE pitr_monitor_status gauge\n\
             pitr_monitor_status{{check=\"{check}\"}} {}",
            self.final_status().code()
        );
        let _ = writeln!(
            out,
            "# HELP pitr_monitor_last_run_seconds Unix time at which the check ran.\n\
             # TYPE pitr_monitor_last_run_seconds gauge\n\
             pitr_monitor_last_run_seconds{{check=\"{check}\"}} {}",
            number(unix_seconds(at))
        );
        out
    }
}

/// Seconds since the Unix epoch, with microseconds.
pub fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// A number as perfdata and Prometheus want it: no exponent, no trailing zeros, at most three
/// decimals.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn perfdata(m: &Metric, nth: Option<usize>) -> String {
    format!(
        "{}={}{};{};{};{};",
        m.perfdata_label(nth),
        number(m.value),
        m.unit.perfdata(),
        m.warning.as_ref().map_or("", Range::as_str),
        m.critical.as_ref().map_or("", Range::as_str),
        // Every metric here is a count, an age or a size: never negative.
        "0",
    )
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Where a report goes (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The monitoring-plugin line and detail lines (default).
    Plugin,
    /// One JSON object.
    Json,
    /// What omnipitr-monitor printed: a bare number (Cacti), error lines, the state.
    Omnipitr,
}

impl std::str::FromStr for Output {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "plugin" | "nagios" => Ok(Output::Plugin),
            "json" => Ok(Output::Json),
            "omnipitr" => Ok(Output::Omnipitr),
            _ => Err(format!(
                "{s:?} is not an output format (plugin, json or omnipitr)"
            )),
        }
    }
}

/// Prints `report` in `output` form, writes the Prometheus file if asked, and gives the exit
/// status.
pub fn emit(
    report: &Report,
    output: Output,
    prometheus: Option<&Path>,
    at: SystemTime,
) -> anyhow::Result<ExitCode> {
    // A textfile that cannot be written makes the run UNKNOWN, but the report is still printed:
    // the state is already saved, and the errors it reports would otherwise never be shown.
    let failed;
    let report = match prometheus
        .map(|path| crate::state::write_file_durably(path, report.prometheus_text(at).as_bytes()))
    {
        Some(Err(e)) => {
            pitr_common::log_error!("{e:#}");
            let mut r = report.clone();
            r.status = Status::Unknown;
            r.summary = format!("{e:#}; {}", r.summary);
            failed = r;
            &failed
        }
        _ => report,
    };
    let text = match output {
        Output::Plugin => report.plugin_text(),
        Output::Json => format!("{}\n", report.json(at)),
        Output::Omnipitr => report.omnipitr.clone(),
    };
    print_stdout(&text);
    Ok(ExitCode::from(report.final_status().code()))
}

/// Prints an error the way the output format reports an UNKNOWN: `UNKNOWN - error` or a JSON
/// object with status UNKNOWN (`cli::main` logs it on stderr too), and replaces the Prometheus
/// file, if one is asked for, with the UNKNOWN status: the previous run's status left there
/// would read as current (an OK while the archive cannot even be reached).
pub fn emit_unknown(
    check: &'static str,
    output: Output,
    prometheus: Option<&Path>,
    err: &anyhow::Error,
    at: SystemTime,
) {
    let message = format!("{err:#}")
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(path) = prometheus {
        let mut unknown = Report::new(check, message.clone());
        unknown.status = Status::Unknown;
        if let Err(e) =
            crate::state::write_file_durably(path, unknown.prometheus_text(at).as_bytes())
        {
            pitr_common::log_error!("{e:#}");
        }
    }
    let text = match output {
        Output::Plugin => format!("UNKNOWN - {message}\n"),
        Output::Json => format!(
            "{}\n",
            json!({
                "check": check,
                "status": "UNKNOWN",
                "exit_code": UNKNOWN,
                "summary": message,
                "time": unix_seconds(at),
                "metrics": [],
                "details": {},
            })
        ),
        // omnipitr-monitor printed nothing on stdout for a failure but its FATAL line.
        Output::Omnipitr => String::new(),
    };
    print_stdout(&text);
}

fn print_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    // A monitoring system that closed our stdout has stopped listening; the exit status is
    // all that is left to give it.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn age_report(value: f64) -> Report {
        let mut r = Report::new("last-archive-age", "last WAL archived 12 s ago");
        r.metrics.push(
            Metric::new("last_archive_age", "Age.", value, Unit::Seconds)
                .thresholds(Some("300".parse().unwrap()), Some("900".parse().unwrap())),
        );
        r
    }

    #[test]
    fn plugin_line_has_status_summary_and_perfdata() {
        let r = age_report(12.25);
        assert_eq!(
            r.plugin_text(),
            "OK - last WAL archived 12 s ago | last_archive_age=12.25s;300;900;0;\n"
        );
        assert_eq!(age_report(301.0).final_status(), Status::Warning);
        assert_eq!(age_report(901.0).final_status(), Status::Critical);
        let mut r = age_report(1.0);
        r.at_least(Status::Critical);
        r.lines.push("gap at X".into());
        assert_eq!(
            r.plugin_text(),
            "CRITICAL - last WAL archived 12 s ago | last_archive_age=1s;300;900;0;\ngap at X\n"
        );
        // A `|` of a message cannot cut the text or reach the perfdata.
        let mut r = age_report(1.0);
        r.summary = "cannot send to /srv/a|b".into();
        r.lines.push("ERROR : x | y".into());
        assert_eq!(
            r.plugin_text(),
            "OK - cannot send to /srv/a¦b | last_archive_age=1s;300;900;0;\nERROR : x ¦ y\n"
        );
    }

    #[test]
    fn json_carries_status_metrics_and_details() {
        let mut r = age_report(901.0);
        r.details = json!({"wal": "000000010000000000000001"});
        let at = UNIX_EPOCH + Duration::from_millis(1_795_574_595_500);
        let v = r.json(at);
        assert_eq!(v["status"], "CRITICAL");
        assert_eq!(v["exit_code"], 2);
        assert_eq!(v["time"], 1_795_574_595.5);
        assert_eq!(v["metrics"][0]["name"], "last_archive_age");
        assert_eq!(v["metrics"][0]["unit"], "seconds");
        assert_eq!(v["metrics"][0]["critical"], "900");
        assert_eq!(v["metrics"][0]["status"], "CRITICAL");
        assert_eq!(v["details"]["wal"], "000000010000000000000001");
    }

    #[test]
    fn prometheus_text_has_help_type_and_labels() {
        let mut r = Report::new("info", "x");
        r.metrics.push(
            Metric::new("backup_sets", "Backup sets.", 2.0, Unit::Count).label("location", "/a"),
        );
        r.metrics.push(
            Metric::new("backup_sets", "Backup sets.", 1.0, Unit::Count)
                .label("location", "rsync://h/\"m\""),
        );
        let text = r.prometheus_text(UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(
            text,
            "# HELP pitr_backup_sets Backup sets.\n\
             # TYPE pitr_backup_sets gauge\n\
             pitr_backup_sets{check=\"info\",location=\"/a\"} 2\n\
             pitr_backup_sets{check=\"info\",location=\"rsync://h/\\\"m\\\"\"} 1\n\
             # HELP pitr_monitor_status Exit status of the check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.\n\
             # TYPE pitr_monitor_status gauge\n\
             pitr_monitor_status{check=\"info\"} 0\n\
             # HELP pitr_monitor_last_run_seconds Unix time at which the check ran.\n\
             # TYPE pitr_monitor_last_run_seconds gauge\n\
             pitr_monitor_last_run_seconds{check=\"info\"} 10\n"
        );
    }

    #[test]
    fn numbers_and_labels_are_formatted_for_perfdata() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.1234), "0.123");
        assert_eq!(number(2.5), "2.5");
        let mut r = Report::new("info", "x");
        for dir in ["/a", "/b b"] {
            r.metrics
                .push(Metric::new("backup_sets", "", 1.0, Unit::Count).label("location", dir));
        }
        r.metrics
            .push(Metric::new("archive_segments", "", 9.0, Unit::Count));
        assert_eq!(
            r.plugin_text(),
            "OK - x | backup_sets_1=1;;;0; backup_sets_2=1;;;0; archive_segments=9;;;0;\n"
        );
        assert_eq!("json".parse::<Output>(), Ok(Output::Json));
        assert!("xml".parse::<Output>().is_err());
    }
}

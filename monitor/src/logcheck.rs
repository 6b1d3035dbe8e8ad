//! OmniPITR's checks: what the tools' logs say about archiving, restoring, backups and errors,
//! plus `archive-queue` (which asks the server) and `last-backup-age` from backup sets.
//!
//! Each call reads the log lines added since the last one into the state (see
//! [`crate::logscan`]), answers from the state, and saves it. The values and their meaning are
//! OmniPITR's: ages in seconds from now, a running call's time, 0 when nothing runs; `errors`
//! reports each ERROR/FATAL line once across calls. Unlike OmniPITR, a check with no data at
//! all is UNKNOWN in plugin and JSON output (a wrong `--log` must not look healthy);
//! `--output omnipitr` prints OmniPITR's 0.

use std::collections::BTreeMap;

use pitr_common::wal::{SegNo, SegSize, Timeline, WalFileName, WalKind};
use serde_json::json;

use crate::args::{Check, Config};
use crate::clock;
use crate::report::{unix_seconds, Metric, Report, Status, Unit};
use crate::state::{Span, State, StateDir};
use crate::store::Remote;
use crate::threshold::Range;

/// Runs a log check: reads the new lines, answers, saves the state.
pub fn run(cfg: &Config) -> anyhow::Result<Report> {
    let Some(dir) = &cfg.state_dir else {
        anyhow::bail!("internal error: a log check without --state-dir");
    };
    let sd = StateDir::lock(dir)?;
    let mut state = sd.load()?;
    let before = state.clone();
    let now = unix_seconds(cfg.now);
    let scanned = crate::logscan::scan(&mut state, &cfg.logs, now)?;
    let mut report = match cfg.check {
        Check::LastArchiveAge => last_age(cfg, &state.archive, "archive", now),
        Check::LastRestoreAge => last_age(cfg, &state.restore, "restore", now),
        Check::CurrentArchiveTime => current_time(cfg, &state.archive, "archive", now),
        Check::CurrentRestoreTime => current_time(cfg, &state.restore, "restore", now),
        Check::Errors => errors(cfg, &mut state),
        Check::LastBackupAge => last_backup_from_logs(cfg, &state, now),
        Check::DumpState => dump_state(&state),
        Check::ArchiveQueue | Check::Info | Check::Verify => {
            anyhow::bail!("internal error: {} is not a log check", cfg.check.name())
        }
    };
    if scanned.files == 0 {
        report
            .summary
            .push_str(&format!(" (no log file matches {})", cfg.logs.join(", ")));
        // A wrong --log must not look healthy: "no errors" and "nothing in progress" read
        // from no file at all are not answers.
        if cfg.check != Check::DumpState {
            report.status = Status::Unknown;
        }
    }
    if let Some(d) = report.details.as_object_mut() {
        d.insert(
            "logs".into(),
            json!({"files": scanned.files, "lines_read": scanned.lines}),
        );
    }
    state.prune(now);
    if state != before {
        sd.save(&state)?;
    }
    Ok(report)
}

/// The user's thresholds, or `defaults` when neither is given.
fn thresholds(
    cfg: &Config,
    defaults: (Option<Range>, Option<Range>),
) -> (Option<Range>, Option<Range>) {
    if cfg.warning.is_none() && cfg.critical.is_none() {
        defaults
    } else {
        (cfg.warning.clone(), cfg.critical.clone())
    }
}

fn age_metric(cfg: &Config, name: &'static str, help: &'static str, value: f64) -> Metric {
    let (w, c) = thresholds(cfg, (None, None));
    Metric::new(name, help, value, Unit::Seconds).thresholds(w, c)
}

/// `last-archive-age` / `last-restore-age`: seconds since the newest success.
fn last_age(cfg: &Config, spans: &BTreeMap<String, Span>, what: &str, now: f64) -> Report {
    let (check, metric, help, done) = if what == "archive" {
        (
            "last-archive-age",
            "last_archive_age",
            "Seconds since pitr-archive last sent a WAL file to all destinations.",
            "archived",
        )
    } else {
        (
            "last-restore-age",
            "last_restore_age",
            "Seconds since pitr-restore last handed a WAL file to PostgreSQL.",
            "restored",
        )
    };
    let newest = spans
        .iter()
        .filter_map(|(k, s)| s.end.map(|e| (e, k)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match newest {
        None => {
            let mut r = Report::new(check, format!("no WAL file {done} in the logs"));
            r.status = Status::Unknown;
            r.omnipitr = "0\n".into();
            r
        }
        Some((end, wal)) => {
            let age = (now - end).max(0.0);
            let mut r = Report::new(
                check,
                format!(
                    "last WAL file {done} {} ago: {wal} at {}",
                    clock::age(age),
                    clock::local(clock::from_unix(end))
                ),
            );
            r.metrics.push(age_metric(cfg, metric, help, age));
            r.details = json!({"wal": wal, "time": end, "age": age});
            r.omnipitr = format!("{age:.6}\n");
            r
        }
    }
}

/// `current-archive-time` / `current-restore-time`: how long the newest call, if unfinished,
/// has run (0 when none is). Calls are seen only in `--verbose` logs.
fn current_time(cfg: &Config, spans: &BTreeMap<String, Span>, what: &str, now: f64) -> Report {
    let (check, metric, help, tool) = if what == "archive" {
        (
            "current-archive-time",
            "current_archive_time",
            "Seconds the archive_command call in progress has been running (0: none).",
            "pitr-archive",
        )
    } else {
        (
            "current-restore-time",
            "current_restore_time",
            "Seconds the restore_command call in progress has been waiting or running (0: none).",
            "pitr-restore",
        )
    };
    let newest = spans
        .iter()
        .filter_map(|(k, s)| s.last_start.map(|t| (t, k, s)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let running = newest.and_then(|(last, wal, s)| match s.ended() {
        None => Some((s.start.unwrap_or(last), wal)),
        Some(e) if e < last => Some((last, wal)),
        Some(_) => None,
    });
    let (value, summary, details) = match (running, newest) {
        (Some((since, wal)), _) => {
            let v = (now - since).max(0.0);
            (
                v,
                format!(
                    "{wal} in progress for {} (since {})",
                    clock::age(v),
                    clock::local(clock::from_unix(since))
                ),
                json!({"wal": wal, "since": since, "seconds": v}),
            )
        }
        (None, Some(_)) => (0.0, format!("no {what} in progress"), json!({"seconds": 0})),
        (None, None) => (
            0.0,
            format!("no {what} call seen ({tool} logs its calls with --verbose)"),
            json!({"seconds": 0}),
        ),
    };
    let mut r = Report::new(check, summary);
    r.metrics.push(age_metric(cfg, metric, help, value));
    r.details = details;
    r.omnipitr = format!("{value:.6}\n");
    r
}

/// `errors`: the ERROR and FATAL lines not reported yet (or since `--from`).
fn errors(cfg: &Config, state: &mut State) -> Report {
    let new: Vec<_> = match cfg.from {
        Some(from) => state
            .errors
            .iter()
            .filter(|e| e.epoch >= from)
            .cloned()
            .collect(),
        None => state
            .errors
            .iter()
            .filter(|e| e.seq >= state.errors_reported_below)
            .cloned()
            .collect(),
    };
    let dropped = state.errors_dropped;
    if cfg.from.is_none() {
        state.errors_reported_below = state.next_error_seq;
        state.errors_dropped = 0;
    }
    let since = if cfg.from.is_some() {
        "since --from"
    } else {
        "since the last check"
    };
    let mut summary = match new.last() {
        None => format!("no new errors {since}"),
        Some(last) => format!(
            "{} new error{} {since}; the last: {} {}: {}",
            new.len(),
            if new.len() == 1 { "" } else { "s" },
            last.program,
            last.level,
            last.message
        ),
    };
    if dropped > 0 {
        summary.push_str(&format!(
            " ({dropped} more were dropped unreported: over 10000 piled up)"
        ));
    }
    let mut r = Report::new("errors", summary);
    let (w, c) = thresholds(cfg, (Some(Range::at_least(1.0)), None));
    r.metrics.push(
        Metric::new(
            "errors",
            "ERROR and FATAL lines of the pitr tools new since the last errors check.",
            (new.len() as u64 + dropped) as f64,
            Unit::Count,
        )
        .thresholds(w, c),
    );
    r.lines = new
        .iter()
        .map(|e| {
            format!(
                "{} : {} : {} : {} : {}",
                e.timestamp, e.pid, e.program, e.level, e.message
            )
        })
        .collect();
    r.omnipitr = new
        .iter()
        .map(|e| {
            // OmniPITR's form: the time stamp without its offset, the pid, then the line
            // from the level on.
            let stamp = e.timestamp.get(..26).unwrap_or(&e.timestamp);
            format!("{stamp} : {} : {} : {}\n", e.pid, e.level, e.message)
        })
        .collect();
    r.details = json!({
        "errors": new.iter().map(|e| json!({
            "time": e.epoch,
            "timestamp": e.timestamp,
            "pid": e.pid,
            "program": e.program,
            "level": e.level,
            "message": e.message,
        })).collect::<Vec<_>>(),
        "dropped": dropped,
    });
    r
}

fn backup_age_report(
    cfg: &Config,
    newest: Option<(f64, String)>,
    source: &str,
    now: f64,
    note: Option<String>,
) -> Report {
    let note = note.map(|n| format!("; {n}")).unwrap_or_default();
    match newest {
        None => {
            let mut r = Report::new(
                "last-backup-age",
                format!("no finished backup in {source}{note}"),
            );
            r.status = Status::Unknown;
            r.omnipitr = "0\n".into();
            r
        }
        Some((end, what)) => {
            let age = (now - end).max(0.0);
            let mut r = Report::new(
                "last-backup-age",
                format!(
                    "last backup finished {} ago: {what} at {}{note}",
                    clock::age(age),
                    clock::local(clock::from_unix(end))
                ),
            );
            r.metrics.push(age_metric(
                cfg,
                "last_backup_age",
                "Seconds since the newest base backup finished.",
                age,
            ));
            r.details = json!({"backup": what, "time": end, "age": age, "source": source});
            r.omnipitr = format!("{age:.6}\n");
            r
        }
    }
}

fn last_backup_from_logs(cfg: &Config, state: &State, now: f64) -> Report {
    let newest = state
        .backups
        .iter()
        .filter(|b| !b.failed)
        .filter_map(|b| b.end.map(|e| (e, format!("{} pid {}", b.program, b.pid))))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    backup_age_report(cfg, newest, "the logs", now, None)
}

/// `last-backup-age` from the backup sets of `--backup-dir` (their meta files'
/// `Finished-epoch`), which is where the truth is when they are given. Only sets whose files
/// are all there at the sizes the meta file records, and listed in the digest file, count (as
/// for `info` and retention): a damaged or half-copied newest set is not a backup, and the
/// summary names the newer sets it passed over.
pub fn last_backup_from_sets(cfg: &Config, remote: Option<&Remote>) -> anyhow::Result<Report> {
    let mut sets: Vec<(f64, String, Option<String>)> = Vec::new();
    for store in &cfg.backup_dirs {
        for s in store.backup_sets(remote)? {
            let (_, problems) = crate::info::check_files(&s);
            sets.push((
                s.set.meta.finished_epoch as f64,
                format!("{} in {store}", s.meta_name),
                problems.first().cloned(),
            ));
        }
    }
    let newest = sets
        .iter()
        .filter(|(_, _, problem)| problem.is_none())
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(end, what, _)| (*end, what.clone()));
    let passed_over: Vec<String> = sets
        .iter()
        .filter(|(end, _, problem)| {
            problem.is_some() && newest.as_ref().is_none_or(|(e, _)| end > e)
        })
        .map(|(_, what, problem)| format!("{what}: {}", problem.as_deref().unwrap_or_default()))
        .collect();
    let note = (!passed_over.is_empty())
        .then(|| format!("not counted, with problems: {}", passed_over.join("; ")));
    let source = cfg
        .backup_dirs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Ok(backup_age_report(
        cfg,
        newest,
        &source,
        unix_seconds(cfg.now),
        note,
    ))
}

fn dump_state(state: &State) -> Report {
    let value = serde_json::to_value(state).unwrap_or_default();
    let pretty = serde_json::to_string_pretty(state).unwrap_or_default();
    let mut r = Report::new(
        "dump-state",
        format!(
            "{} log files, {} archive and {} restore records, {} backup runs, {} error lines",
            state.files.len(),
            state.archive.len(),
            state.restore.len(),
            state.backups.len(),
            state.errors.len()
        ),
    );
    r.lines = pretty.lines().map(str::to_string).collect();
    r.omnipitr = format!("{pretty}\n");
    r.details = json!({"state": value});
    r
}

/// `archive-queue`: WAL segments the server has finished and not archived yet: the segment
/// being written, minus one, minus the newest archived one (OmniPITR's arithmetic, with the
/// real segment size). The newest archived is the later of `pg_stat_archiver` and, with
/// `--log`, the logs (statistics are lost in a crash).
pub fn archive_queue(cfg: &Config) -> anyhow::Result<Report> {
    let facts = crate::session::archiver_facts(&cfg.conn)?;
    let from_logs = archived_per_logs(cfg, &facts)?;
    let mut r = Report::new("archive-queue", String::new());
    let unknown = |mut r: Report, why: String| {
        r.summary = why;
        r.status = Status::Unknown;
        r
    };
    if facts.in_recovery {
        return Ok(unknown(
            r,
            "the server is in recovery: ask the primary for its archive queue".into(),
        ));
    }
    if facts.archive_mode == "off" {
        return Ok(unknown(r, "archive_mode is off on this server".into()));
    }
    let seg_size = facts.seg_size;
    let Some((current, tli)) = facts
        .current_wal
        .as_deref()
        .and_then(|n| WalFileName::parse(n).ok())
        .and_then(|w| Some((w.segno(seg_size).ok()?, w.timeline)))
    else {
        return Ok(unknown(
            r,
            "the server did not say which WAL file it writes".into(),
        ));
    };
    let archived = newest_archived_on(
        [facts.last_archived_wal.as_deref(), from_logs.as_deref()]
            .into_iter()
            .flatten()
            .filter_map(|n| WalFileName::parse(n).ok()),
        tli,
        current,
        seg_size,
    );
    let Some((last_pos, last_name)) = archived.map(|(p, w)| (p, w.to_string())) else {
        return Ok(unknown(
            r,
            format!(
                "no WAL file of timeline {} has been archived yet, nor one of an earlier timeline before {} (pg_stat_archiver and the logs name none)",
                tli.0,
                facts.current_wal.clone().unwrap_or_default()
            ),
        ));
    };
    let queue = current.0.saturating_sub(1).saturating_sub(last_pos.0);
    let (w, c) = thresholds(cfg, (None, None));
    r.metrics.push(
        Metric::new(
            "archive_queue",
            "WAL segments the server has finished and not archived yet.",
            queue as f64,
            Unit::Count,
        )
        .thresholds(w, c),
    );
    r.metrics.push(Metric::new(
        "archive_failed_count",
        "pg_stat_archiver.failed_count: failed archive_command calls since the statistics reset.",
        facts.failed_count as f64,
        Unit::Count,
    ));
    let current_wal = facts.current_wal.clone().unwrap_or_default();
    r.summary = format!(
        "{queue} WAL segment{} waiting to be archived (writing {current_wal}, last archived {last_name}){}",
        if queue == 1 { "" } else { "s" },
        match &facts.last_failed_wal {
            Some(f) if facts.failed_count > 0 => format!(", {} failures, the last for {f}", facts.failed_count),
            _ => String::new(),
        }
    );
    r.details = json!({
        "queue": queue,
        "current_wal": current_wal,
        "last_archived_wal": last_name,
        "pg_stat_archiver": {
            "last_archived_wal": facts.last_archived_wal,
            "last_archived_time": facts.last_archived_time,
            "failed_count": facts.failed_count,
            "last_failed_wal": facts.last_failed_wal,
        },
        "from_logs": from_logs,
        "segment_size": seg_size.bytes(),
    });
    r.omnipitr = format!("{queue}\n");
    Ok(r)
}

/// With `--log` and `--state-dir`: the logs read into the state, and the newest archived
/// segment they name on the server's timeline (see [`newest_archived_segment`]).
fn archived_per_logs(
    cfg: &Config,
    facts: &crate::session::ArchiverFacts,
) -> anyhow::Result<Option<String>> {
    let (Some(dir), false) = (&cfg.state_dir, cfg.logs.is_empty()) else {
        return Ok(None);
    };
    let sd = StateDir::lock(dir)?;
    let mut state = sd.load()?;
    let before = state.clone();
    let now = unix_seconds(cfg.now);
    crate::logscan::scan(&mut state, &cfg.logs, now)?;
    let current_tli = facts
        .current_wal
        .as_deref()
        .and_then(|n| WalFileName::parse(n).ok())
        .map(|w| w.timeline);
    let newest =
        newest_archived_segment(&state.archive, facts.seg_size, current_tli).map(|w| w.to_string());
    state.prune(now);
    if state != before {
        sd.save(&state)?;
    }
    Ok(newest)
}

/// The archived segment (or `.partial`) the logs name with the highest position: on timeline
/// `tli` when it has one there, else on any.
fn newest_archived_segment(
    spans: &BTreeMap<String, Span>,
    seg_size: SegSize,
    tli: Option<Timeline>,
) -> Option<WalFileName> {
    let archived: Vec<(SegNo, WalFileName)> = spans
        .iter()
        .filter(|(_, s)| s.end.is_some())
        .filter_map(|(k, _)| WalFileName::parse(k).ok())
        .filter(|w| w.has_wal_pages())
        .filter_map(|w| w.segno(seg_size).ok().map(|n| (n, w)))
        .collect();
    archived
        .iter()
        .filter(|(_, w)| Some(w.timeline) == tli)
        .max_by_key(|(n, _)| *n)
        .or_else(|| archived.iter().max_by_key(|(n, _)| *n))
        .map(|(_, w)| *w)
}

/// Of the archived files `names`, the one that says how far archiving got for a server writing
/// segment `current` of timeline `tli`, with its position: the newest of `tli`'s; without any,
/// the newest of an earlier timeline before `current` (just after a promotion). A higher
/// position on another timeline (a restore to an earlier point, or another cluster's records in
/// the same state dir) says nothing about this one: counted, it made the queue read 0 while
/// archiving was stuck.
fn newest_archived_on(
    names: impl IntoIterator<Item = WalFileName>,
    tli: Timeline,
    current: SegNo,
    seg_size: SegSize,
) -> Option<(SegNo, WalFileName)> {
    let archived: Vec<(SegNo, WalFileName)> = names
        .into_iter()
        .filter_map(|w| {
            let n = crate::timeline::segment_of(&w)?.segno(seg_size).ok()?;
            // A `.partial` is the old timeline's part of the segment the new timeline then
            // archives whole: archiving has got to the segment before it.
            let n = match w.kind {
                WalKind::Partial => SegNo(n.0.checked_sub(1)?),
                _ => n,
            };
            Some((n, w))
        })
        .collect();
    archived
        .iter()
        .filter(|(_, w)| w.timeline == tli)
        .max_by_key(|(n, _)| *n)
        .or_else(|| {
            archived
                .iter()
                .filter(|(n, w)| w.timeline < tli && *n < current)
                .max_by_key(|(n, _)| *n)
        })
        .copied()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::args::Args;
    use argh::FromArgs;

    fn config(dir: &std::path::Path, check: &str, extra: &[&str]) -> Config {
        let log = dir.join("pitr-^Y.log").display().to_string();
        let sd = dir.join("state");
        std::fs::create_dir_all(&sd).unwrap();
        let sd = sd.display().to_string();
        let mut args = vec!["--check", check, "--log", &log, "--state-dir", &sd];
        args.extend_from_slice(extra);
        Args::from_args(&["pitr-monitor"], &args)
            .unwrap()
            .into_config()
            .unwrap()
    }

    fn write_log(dir: &std::path::Path, lines: &[String]) {
        let year =
            pitr_common::log::expand_time_template("^Y", std::time::SystemTime::now()).unwrap();
        let path = dir.join(format!("pitr-{year}.log"));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for l in lines {
            std::io::Write::write_all(&mut f, format!("{l}\n").as_bytes()).unwrap();
        }
    }

    fn stamp(secs_ago: f64) -> String {
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs_f64(secs_ago);
        let base = pitr_common::log::expand_time_template("^Y-^m-^d ^H:^M:^S", t).unwrap();
        let z = pitr_common::log::expand_time_template("^z", t).unwrap();
        format!("{base}.000000 {z}")
    }

    #[test]
    fn ages_and_errors_from_a_log() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(
            d.path(),
            "last-archive-age",
            &["--warning", "50", "--critical", "100"],
        );
        let r = run(&cfg).unwrap();
        assert_eq!(r.final_status(), Status::Unknown);
        assert!(
            r.summary.starts_with("no WAL file archived in the logs"),
            "{}",
            r.summary
        );
        write_log(
            d.path(),
            &[
                format!("{} : 1 : pitr-archive : LOG : Segment pg_wal/000000010000000000000003 successfully sent to all destinations.", stamp(75.0)),
                format!("{} : 2 : pitr-archive : ERROR : cannot send 000000010000000000000004 to /a: disk full", stamp(70.0)),
                format!("{} : 2 : pitr-archive : HINT : look", stamp(70.0)),
            ],
        );
        let r = run(&cfg).unwrap();
        assert_eq!(r.final_status(), Status::Warning, "{}", r.plugin_text());
        assert!(r.summary.contains("000000010000000000000003"));
        let v = r.metrics[0].value;
        assert!((74.0..80.0).contains(&v), "{v}");

        let errs = config(d.path(), "errors", &[]);
        let r = run(&errs).unwrap();
        assert_eq!(r.final_status(), Status::Warning);
        // The HINT line is not a second error.
        assert_eq!(r.lines.len(), 1);
        assert_eq!(r.metrics[0].value, 1.0);
        assert!(r.lines[0].ends_with(" : 2 : pitr-archive : ERROR : cannot send 000000010000000000000004 to /a: disk full"), "{}", r.lines[0]);
        assert!(r
            .omnipitr
            .lines()
            .next()
            .unwrap()
            .ends_with(" : 2 : ERROR : cannot send 000000010000000000000004 to /a: disk full"));
        // Reported once: the next call has none, until a new one is logged.
        let r = run(&errs).unwrap();
        assert_eq!((r.final_status(), r.lines.len()), (Status::Ok, 0));
        write_log(
            d.path(),
            &[format!("{} : 3 : pitr-restore : FATAL : bad", stamp(1.0))],
        );
        let r = run(&errs).unwrap();
        assert_eq!(r.lines.len(), 1);
        assert!(r.lines[0].ends_with("pitr-restore : FATAL : bad"));
        // --from looks back whatever was reported.
        let from = config(d.path(), "errors", &["--from", "3600"]);
        assert_eq!(run(&from).unwrap().lines.len(), 2);
        // dump-state prints the state as JSON, in every output form.
        let r = run(&config(d.path(), "dump-state", &[])).unwrap();
        let state: State = serde_json::from_str(&r.omnipitr).unwrap();
        assert_eq!(state.errors.len(), 2);
        assert_eq!(state.errors_reported_below, 3);
        assert_eq!(r.details["state"]["next_error_seq"], 3);
        assert_eq!(r.final_status(), Status::Ok);
    }

    #[test]
    fn current_time_counts_from_the_first_attempt() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path(), "current-archive-time", &[]);
        // No log file at all (a wrong --log): not an answer.
        let r = run(&cfg).unwrap();
        assert_eq!(r.final_status(), Status::Unknown);
        assert!(r.summary.contains("(no log file matches "), "{}", r.summary);
        let errors = run(&config(d.path(), "errors", &[])).unwrap();
        assert_eq!(errors.final_status(), Status::Unknown, "{}", errors.summary);
        // A log without calls: nothing in progress.
        write_log(d.path(), &[]);
        let r = run(&cfg).unwrap();
        assert_eq!(r.final_status(), Status::Ok);
        assert!(r.summary.contains("--verbose"), "{}", r.summary);
        write_log(
            d.path(),
            &[
                format!("{} : 1 : pitr-archive : LOG : Called with parameters: --dst-local /a pg_wal/000000010000000000000003", stamp(30.0)),
                format!("{} : 1 : pitr-archive : LOG : Segment pg_wal/000000010000000000000003 successfully sent to all destinations.", stamp(29.0)),
                format!("{} : 2 : pitr-archive : LOG : Called with parameters: --dst-local /a pg_wal/000000010000000000000004", stamp(20.0)),
                format!("{} : 3 : pitr-archive : LOG : Called with parameters: --dst-local /a pg_wal/000000010000000000000004", stamp(10.0)),
            ],
        );
        let r = run(&cfg).unwrap();
        let v = r.metrics[0].value;
        assert!((19.0..25.0).contains(&v), "{v}");
        assert!(r
            .summary
            .starts_with("000000010000000000000004 in progress"));
        assert_eq!(
            newest_archived_segment(
                &StateDir::lock(&d.path().join("state"))
                    .unwrap()
                    .load()
                    .unwrap()
                    .archive,
                SegSize::DEFAULT,
                Some(Timeline(1))
            )
            .unwrap()
            .to_string(),
            "000000010000000000000003"
        );
    }

    /// archive-queue's newest archived file is the server's timeline's: a restore to an
    /// earlier point left timeline 1's 0xF0 archived while the server writes timeline 2's
    /// 0x30, which made the queue read 0 whatever waited.
    #[test]
    fn the_queue_counts_from_the_newest_archived_file_of_the_servers_timeline() {
        let w = |s: &str| WalFileName::parse(s).unwrap();
        let seg = SegSize::DEFAULT;
        let on = |names: &[&str], current: &str| {
            let c = w(current);
            newest_archived_on(
                names.iter().map(|n| w(n)),
                c.timeline,
                c.segno(seg).unwrap(),
                seg,
            )
            .map(|(_, n)| n.to_string())
        };
        // Timeline 2's own archived segment wins over timeline 1's higher one.
        assert_eq!(
            on(
                &["0000000100000000000000F0", "000000020000000000000020"],
                "000000020000000000000030"
            )
            .as_deref(),
            Some("000000020000000000000020")
        );
        // Nothing of timeline 2 yet: timeline 1's 0xF0 is past the server's position and
        // tells nothing (UNKNOWN, not a queue of 0).
        assert_eq!(
            on(&["0000000100000000000000F0"], "000000020000000000000030"),
            None
        );
        // Just after a promotion: timeline 1 up to the switch.
        assert_eq!(
            on(
                &[
                    "00000001000000000000002F.partial",
                    "00000001000000000000002D"
                ],
                "000000020000000000000030"
            )
            .as_deref(),
            Some("00000001000000000000002F.partial")
        );
        // ... where timeline 2's 0x2F, the rest of the segment the `.partial` began, still
        // waits: the queue counts it (it read 0 while archiving was stuck there).
        let c = w("000000020000000000000030");
        let (pos, _) = newest_archived_on(
            [w("00000001000000000000002F.partial")],
            c.timeline,
            c.segno(seg).unwrap(),
            seg,
        )
        .unwrap();
        assert_eq!(pos, w("00000001000000000000002E").segno(seg).unwrap());
        // A .backup file stands for its segment.
        assert_eq!(
            on(
                &["000000010000000000000005.00000028.backup"],
                "000000010000000000000007"
            )
            .as_deref(),
            Some("000000010000000000000005.00000028.backup")
        );
    }

    /// A restore call that ended without its file (a streaming standby's "not in the
    /// archive", a finish request, the server gone) is not in progress: it read as running for
    /// ever, and its record was never pruned.
    #[test]
    fn a_restore_call_that_ended_without_its_file_is_not_in_progress() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path(), "current-restore-time", &[]);
        write_log(
            d.path(),
            &[
                format!("{} : 7 : pitr-restore : LOG : Called with parameters: --source /a --streaming-replication 000000010000000000000005 pg_wal/RECOVERYXLOG", stamp(3600.0)),
                format!("{} : 7 : pitr-restore : LOG : 000000010000000000000005 is not in the archive (standby mode: not waiting)", stamp(3600.0)),
            ],
        );
        let r = run(&cfg).unwrap();
        assert_eq!(r.final_status(), Status::Ok, "{}", r.summary);
        assert_eq!(r.metrics[0].value, 0.0);
        assert!(
            r.summary.starts_with("no restore in progress"),
            "{}",
            r.summary
        );
        // Asked again and waiting: in progress since then.
        write_log(
            d.path(),
            &[format!("{} : 8 : pitr-restore : LOG : Called with parameters: --source /a 000000010000000000000005 pg_wal/RECOVERYXLOG", stamp(60.0))],
        );
        let r = run(&cfg).unwrap();
        let v = r.metrics[0].value;
        assert!((59.0..70.0).contains(&v), "{v} {}", r.summary);
        // The server gone: over.
        write_log(
            d.path(),
            &[format!("{} : 8 : pitr-restore : LOG : the server that asked for 000000010000000000000005 is gone; exiting", stamp(1.0))],
        );
        assert_eq!(run(&cfg).unwrap().metrics[0].value, 0.0);
    }
}

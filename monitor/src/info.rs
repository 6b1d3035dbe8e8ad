//! `info`: every backup set of every `--backup-dir`, and how far each can be recovered with the
//! `--archive`.
//!
//! For each set: start and finish time, start and stop location, timeline, size, codec, digest
//! state (the digest file exists and lists the set's data and WAL files; sizes as the meta file
//! records them), and the recoverable window: from the backup's start to the end of the last
//! segment of the unbroken run that starts at its first segment, following the timelines
//! PostgreSQL follows with `recovery_target_timeline = 'latest'` (the backup's own WAL archive
//! counts for the segments it holds). The window's end time is that segment's modification
//! time, which pitr-archive keeps from `pg_wal`: about the time of its last record.
//!
//! Default output: a status line, then a table. WARNING when a set is incomplete or cannot be
//! restored at all from what is there; `--warning`/`--critical` apply to the newest backup's
//! age in seconds.

use pitr_common::backupset::Meta;
use pitr_common::compress::{self, Stored};
use pitr_common::wal::{Lsn, SegNo, SegSize, Timeline, WalFileName};
use serde_json::{json, Value};

use crate::archive::{self, ArchiveView};
use crate::args::Config;
use crate::clock;
use crate::report::{unix_seconds, Metric, Report, Status, Unit};
use crate::store::{Remote, SetListing, Store};
use crate::timeline::WalMap;

/// The recoverable window of one set.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Where recovery can end at the latest: the end of the last unbroken segment.
    pub until_lsn: Lsn,
    /// Its timeline.
    pub until_timeline: Timeline,
    /// That segment's name.
    pub until_wal: String,
    /// About when: the segment's modification time (or the backup's end for its own WAL).
    pub until_time: f64,
}

/// One set, described.
#[derive(Debug, Clone)]
struct SetInfo {
    name: String,
    meta: Meta,
    size: u64,
    codec: &'static str,
    digest: &'static str,
    problems: Vec<String>,
    /// Its files are there at their sizes and listed in the digest file.
    whole: bool,
    window: Option<Window>,
    window_note: Option<String>,
}

fn codec_of(file: &str) -> &'static str {
    match compress::split_stored_name(file).1 {
        Stored::Readable(c) => c.name(),
        Stored::Unreadable(name) => name,
    }
}

/// Digest state and problems of a set's files as listed.
pub(crate) fn check_files(s: &SetListing) -> (&'static str, Vec<String>) {
    let meta = &s.set.meta;
    let mut problems = Vec::new();
    for (name, size) in &s.files {
        let expected = if *name == meta.data_file {
            Some(meta.data_size)
        } else if Some(name) == meta.xlog_file.as_ref() {
            Some(meta.xlog_size)
        } else {
            None
        };
        match (size, expected) {
            (None, _) => problems.push(format!("{name} is missing")),
            (Some(got), Some(want)) if *got != want => {
                problems.push(format!("{name} is {got} bytes, the meta file says {want}"))
            }
            _ => {}
        }
    }
    let digest = match &s.digest_text {
        None => "missing",
        Some(text) => match pitr_common::checksum::parse_sums(text) {
            Err(_) => {
                problems.push(format!("{} cannot be parsed", meta.digest_file));
                "unreadable"
            }
            Ok(lines) => {
                let listed = |n: &str| lines.iter().any(|l| l.file_name == n);
                let mut missing: Vec<&str> = vec![];
                if !listed(&meta.data_file) {
                    missing.push(&meta.data_file);
                }
                if let Some(x) = &meta.xlog_file {
                    if !listed(x) {
                        missing.push(x);
                    }
                }
                if missing.is_empty() {
                    "listed"
                } else {
                    problems.push(format!(
                        "{} does not list {}",
                        meta.digest_file,
                        missing.join(", ")
                    ));
                    "incomplete"
                }
            }
        },
    };
    (digest, problems)
}

/// Why `recovery_target_timeline = 'latest'` cannot restore a set of timeline `own` that ends
/// at `stop`, when `newest` is the newest timeline PostgreSQL finds from it
/// (`findNewestTimeLine`): `newest` does not descend from `own`, or forked off it before the
/// backup's end, and the server stops with "requested timeline ... is not a child of this
/// server's history" (or never reaches the backup's end). `None` when it can.
fn latest_refused(map: &WalMap, own: Timeline, stop: Lsn, newest: Timeline) -> Option<String> {
    if newest == own {
        return None;
    }
    let fork = map
        .lineage(newest)
        .into_iter()
        .find(|(t, _)| *t == own)
        .and_then(|(_, end)| end);
    let why = match fork {
        Some(switch) if switch >= stop => return None,
        Some(switch) => format!(
            "timeline {}, the newest in the archive, forked off timeline {} at {switch}, before the backup's end at {stop}",
            newest.0, own.0
        ),
        None => format!(
            "timeline {}, the newest in the archive, does not descend from the backup's timeline {}",
            newest.0, own.0
        ),
    };
    Some(format!(
        "recovery_target_timeline 'latest', the default, fails for it: {why}; restore it with pitr-restore --target-timeline current (its window below is on its own timeline)"
    ))
}

/// The recoverable window of `meta` through `view`, or why there is none, with what stands in
/// the way of restoring it as pitr-restore does by default, if anything.
pub fn window(meta: &Meta, view: Option<&ArchiveView>) -> Result<(Window, Option<String>), String> {
    let has_xlog = meta.xlog_file.is_some();
    let backup_end = || Window {
        until_lsn: meta.stop_lsn,
        until_timeline: meta.timeline,
        until_wal: meta.stop_xlog.to_string(),
        until_time: meta.finished_epoch as f64,
    };
    let Some(view) = view else {
        return if has_xlog {
            Ok((backup_end(), None))
        } else {
            Err("no --archive and the set has no WAL of its own".into())
        };
    };
    let Some(map) = view.map.as_ref() else {
        return if has_xlog {
            Ok((backup_end(), None))
        } else {
            Err(view
                .size_problem
                .clone()
                .unwrap_or_else(|| "the archive's segment size is unknown".into()))
        };
    };
    let seg = map.seg_size();
    let (Ok(start), Ok(stop)) = (meta.min_xlog.segno(seg), meta.stop_xlog.segno(seg)) else {
        return Err(format!(
            "its WAL names do not fit the archive's {} segments",
            pitr_common::log::human_bytes(seg.bytes())
        ));
    };
    let newest = map.newest_from(meta.timeline);
    let caveat = latest_refused(map, meta.timeline, meta.stop_lsn, newest);
    let lineage = match caveat {
        None => map.lineage(newest),
        Some(_) => map.lineage(meta.timeline),
    };
    let covered = |p: SegNo| has_xlog && (start..=stop).contains(&p);
    let Some((tli, last)) = map.contiguous_end(&lineage, start, covered) else {
        return Err(format!(
            "its first segment {} is not in the archive",
            meta.min_xlog
        ));
    };
    let after = SegNo(last.0 + 1);
    if last < stop {
        let missing = WalFileName::segment(map.timeline_at(&lineage, after), after, seg);
        return Err(format!(
            "segment {missing}, which the backup needs, is missing"
        ));
    }
    let wal = WalFileName::segment(tli, last, seg);
    let until_time = match view.segment_file(tli, last) {
        Some(f) => unix_seconds(f.file.mtime),
        None => meta.finished_epoch as f64,
    };
    Ok((
        Window {
            until_lsn: Lsn(after.0 * seg.bytes()),
            until_timeline: tli,
            until_wal: wal.to_string(),
            until_time: until_time.max(meta.finished_epoch as f64),
        },
        caveat,
    ))
}

fn describe(s: &SetListing, view: Option<&ArchiveView>) -> SetInfo {
    let meta = s.set.meta.clone();
    let (digest, mut problems) = check_files(s);
    let whole = problems.is_empty();
    let (window, window_note) = match window(&meta, view) {
        Ok((w, caveat)) => {
            problems.extend(caveat);
            (Some(w), None)
        }
        Err(e) => {
            problems.push(format!("cannot be restored: {e}"));
            (None, Some(e))
        }
    };
    SetInfo {
        name: s.meta_name.clone(),
        size: meta.data_size + meta.xlog_size,
        codec: codec_of(&meta.data_file),
        digest,
        problems,
        whole,
        window,
        window_note,
        meta,
    }
}

fn set_json(i: &SetInfo, s: &SetListing) -> Value {
    let m = &i.meta;
    json!({
        "name": i.name,
        "label": m.label,
        "hostname": m.hostname,
        "backup_from": m.backup_from,
        "postgresql_version": m.postgresql_version,
        "system_identifier": m.system_identifier.to_string(),
        "started": m.started_epoch,
        "finished": m.finished_epoch,
        "start_lsn": m.start_lsn.to_string(),
        "stop_lsn": m.stop_lsn.to_string(),
        "timeline": m.timeline.0,
        "min_xlog": m.min_xlog.to_string(),
        "stop_xlog": m.stop_xlog.to_string(),
        "size": i.size,
        "codec": i.codec,
        "digest": i.digest,
        "files": s.files.iter().map(|(n, sz)| json!({"name": n, "size": sz})).collect::<Vec<_>>(),
        "valid": i.problems.is_empty(),
        "problems": i.problems,
        "recoverable": i.window.as_ref().map(|w| json!({
            "from": {"time": m.started_epoch, "lsn": m.start_lsn.to_string(), "timeline": m.timeline.0},
            "consistent": {"time": m.finished_epoch, "lsn": m.stop_lsn.to_string()},
            "until": {"time": w.until_time, "lsn": w.until_lsn.to_string(), "timeline": w.until_timeline.0, "wal": w.until_wal},
        })),
        "not_recoverable_because": i.window_note,
    })
}

/// Lays out rows as columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let mut line = String::from("  ");
            for (c, cell) in r.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < r.len() {
                    line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
                }
            }
            line
        })
        .collect()
}

fn archive_json(view: &ArchiveView) -> Value {
    let segments = view.files.iter().filter(|f| f.wal.has_wal_pages()).count();
    let newest = view.files.iter().rev().find(|f| f.wal.has_wal_pages());
    json!({
        "location": view.store.to_string(),
        "segment_size": view.seg_size().map(SegSize::bytes),
        "system_identifier": view.system_identifier().map(|s| s.to_string()),
        "files": view.files.len(),
        "segments": segments,
        "timelines": view.map.as_ref().map(|m| m.timelines().into_iter().map(|t| t.0).collect::<Vec<_>>()).unwrap_or_default(),
        "newest": newest.map(|f| json!({"wal": f.wal.to_string(), "time": unix_seconds(f.file.mtime)})),
        "unreadable_histories": view.bad_histories.iter().map(|(n, e)| json!({"file": n, "error": e})).collect::<Vec<_>>(),
    })
}

/// What `info` gathers over the backup locations.
#[derive(Debug, Default)]
struct Gathered {
    /// Output lines.
    lines: Vec<String>,
    /// JSON of each location.
    locations: Vec<Value>,
    /// Sets in all locations.
    total: usize,
    /// The newest set's finish time and window.
    newest: Option<(f64, Option<Window>)>,
    /// Locations without sets and sets with problems.
    troubled: usize,
}

/// Runs `info`.
pub fn run(cfg: &Config, remote: Option<&Remote>) -> anyhow::Result<Report> {
    let view = cfg
        .archive
        .as_ref()
        .map(|a| archive::load(a, remote))
        .transpose()?;
    let mut report = Report::new("info", String::new());
    let mut got = Gathered::default();
    for store in &cfg.backup_dirs {
        location(store, remote, view.as_ref(), &mut report, &mut got)?;
    }
    if let Some(v) = &view {
        archive_lines(v, &mut report, &mut got.lines);
    }
    report.summary = summary(cfg, &got, &mut report);
    report.lines = got.lines;
    report.details = json!({
        "locations": got.locations,
        "archive": view.as_ref().map(archive_json),
    });
    report.omnipitr = report.lines.iter().map(|l| format!("{l}\n")).collect();
    Ok(report)
}

/// The sets of one backup location: a table, their problems, a metric and their JSON.
fn location(
    store: &Store,
    remote: Option<&Remote>,
    view: Option<&ArchiveView>,
    report: &mut Report,
    got: &mut Gathered,
) -> anyhow::Result<()> {
    let sets = store.backup_sets(remote)?;
    let infos: Vec<SetInfo> = sets.iter().map(|s| describe(s, view)).collect();
    got.total += infos.len();
    report.metrics.push(
        Metric::new(
            "backup_sets",
            "Backup sets in a backup location.",
            infos.len() as f64,
            Unit::Count,
        )
        .label("location", store.to_string()),
    );
    got.lines
        .push(format!("backup sets in {store}: {}", infos.len()));
    let mut rows = vec![[
        "SET",
        "STARTED",
        "FINISHED",
        "START LSN",
        "STOP LSN",
        "TL",
        "SIZE",
        "CODEC",
        "DIGEST",
        "RECOVERABLE UNTIL",
    ]
    .map(String::from)
    .to_vec()];
    for i in &infos {
        rows.push(row(i));
        // The thresholds measure the newest backup that can be restored: a newer set with
        // missing or short files, or no window, is listed with its problems, not counted.
        let finished = i.meta.finished_epoch as f64;
        let counts = i.whole && i.window.is_some();
        if counts && got.newest.as_ref().is_none_or(|(f, _)| finished > *f) {
            got.newest = Some((finished, i.window.clone()));
        }
    }
    if infos.is_empty() {
        report.at_least(Status::Warning);
        got.troubled += 1;
    } else {
        got.lines.extend(table(&rows));
    }
    for i in &infos {
        for p in &i.problems {
            got.lines.push(format!("  {}: {p}", i.name));
        }
        if !i.problems.is_empty() {
            report.at_least(Status::Warning);
            got.troubled += 1;
        }
    }
    got.locations.push(json!({
        "location": store.to_string(),
        "sets": infos.iter().zip(&sets).map(|(i, s)| set_json(i, s)).collect::<Vec<_>>(),
    }));
    Ok(())
}

/// A set's row of the table.
fn row(i: &SetInfo) -> Vec<String> {
    let m = &i.meta;
    let until = match &i.window {
        Some(w) => format!(
            "{} ({} on timeline {})",
            clock::local(clock::from_unix(w.until_time)),
            w.until_lsn,
            w.until_timeline
        ),
        None => "not restorable".into(),
    };
    vec![
        i.name.clone(),
        clock::local(clock::from_unix(m.started_epoch as f64)),
        clock::local(clock::from_unix(m.finished_epoch as f64)),
        m.start_lsn.to_string(),
        m.stop_lsn.to_string(),
        m.timeline.to_string(),
        pitr_common::log::human_bytes(i.size),
        i.codec.to_string(),
        i.digest.to_string(),
        until,
    ]
}

/// The archive's line (segments, size, timelines, newest), its unreadable history files and
/// its metric.
fn archive_lines(v: &ArchiveView, report: &mut Report, lines: &mut Vec<String>) {
    let segs = v.files.iter().filter(|f| f.wal.has_wal_pages()).count();
    let tls = v
        .map
        .as_ref()
        .map(|m| {
            m.timelines()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let mut line = format!(
        "archive {}: {segs} segment files{}{}",
        v.store,
        v.seg_size()
            .map(|s| format!(" of {}", pitr_common::log::human_bytes(s.bytes())))
            .unwrap_or_default(),
        if tls.is_empty() {
            String::new()
        } else {
            format!(", timelines {tls}")
        }
    );
    if let Some(f) = v.files.iter().rev().find(|f| f.wal.has_wal_pages()) {
        line.push_str(&format!(
            ", newest {} ({})",
            f.wal,
            clock::local(f.file.mtime)
        ));
    }
    lines.push(line);
    for (n, e) in &v.bad_histories {
        lines.push(format!("  {n}: {e}"));
        report.at_least(Status::Warning);
    }
    report.metrics.push(Metric::new(
        "archive_segments",
        "WAL segment files (and .partial files) in the archive.",
        segs as f64,
        Unit::Count,
    ));
}

/// The status line's summary, with the newest backup's age and window as metrics.
fn summary(cfg: &Config, got: &Gathered, report: &mut Report) -> String {
    let now = unix_seconds(cfg.now);
    let total = got.total;
    let mut summary = if cfg.backup_dirs.is_empty() {
        String::from("no --backup-dir given")
    } else {
        format!(
            "{total} backup set{} in {} location{}",
            if total == 1 { "" } else { "s" },
            cfg.backup_dirs.len(),
            if cfg.backup_dirs.len() == 1 { "" } else { "s" }
        )
    };
    if let Some((finished, window)) = &got.newest {
        let age = (now - finished).max(0.0);
        summary.push_str(&format!(", newest finished {} ago", clock::age(age)));
        report.metrics.push(
            Metric::new(
                "newest_backup_age",
                "Seconds since the newest backup set finished.",
                age,
                Unit::Seconds,
            )
            .thresholds(cfg.warning.clone(), cfg.critical.clone()),
        );
        if let Some(w) = window {
            summary.push_str(&format!(
                ", recoverable until {} ({} on timeline {})",
                clock::local(clock::from_unix(w.until_time)),
                w.until_lsn,
                w.until_timeline
            ));
            report.metrics.push(Metric::new(
                "recoverable_until_age",
                "Seconds between now and the latest point the newest backup can be recovered to.",
                (now - w.until_time).max(0.0),
                Unit::Seconds,
            ));
        }
    }
    if got.troubled > 0 {
        summary.push_str(&format!(", {} with problems", got.troubled));
    }
    summary
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["A".to_string(), "BB".to_string(), "C".to_string()],
            vec!["aaa".to_string(), "b".to_string(), "c".to_string()],
        ];
        assert_eq!(table(&rows), ["  A    BB  C", "  aaa  b   c"]);
    }

    /// A set on `timeline` from segment 0x20 to 0x21 (no WAL of its own) against an archive
    /// holding timeline 1's segments 0x10 to 0x30 and `child`'s from its switch to 0x40, with
    /// `child`'s history (`parent` ended at `switch`), and for a set on another timeline than
    /// 1 that timeline's segments 0x20 to 0x25.
    fn window_with(
        timeline: u32,
        child: u32,
        parent: u32,
        switch: u64,
    ) -> Result<(Window, Option<String>), String> {
        let meta = Meta::parse(&format!(
            "Min-Xlog: {timeline:08X}0000000000000020\nStarted-epoch: 1000\nTimezone: +0000\n\
             Hostname: h\nStop-Xlog: {timeline:08X}0000000000000021\nStart-LSN: 0/20000028\n\
             Stop-LSN: 0/21000100\nTimeline: {timeline}\nLabel: l\nBackup-From: primary\n\
             System-Identifier: 7\nPostgreSQL-Version: 15.4\nData-File: d.tar\n\
             Data-Size: 1\nXlog-Size: 0\nDigest-File: s\nFinished-epoch: 1100\n"
        ))
        .unwrap();
        let seg = SegSize::DEFAULT;
        let mut map = WalMap::new(seg);
        for n in 0x10..=0x30u64 {
            map.add(&WalFileName::segment(Timeline(1), SegNo(n), seg));
        }
        for n in (switch >> 24)..=0x40 {
            map.add(&WalFileName::segment(Timeline(child), SegNo(n), seg));
        }
        map.add(&WalFileName::history(Timeline(child)));
        map.add_history(
            Timeline(child),
            vec![crate::timeline::HistoryEntry {
                parent: Timeline(parent),
                switch: Lsn(switch),
            }],
        );
        if timeline != 1 {
            map.add(&WalFileName::history(Timeline(timeline)));
            for n in 0x20..=0x25u64 {
                map.add(&WalFileName::segment(Timeline(timeline), SegNo(n), seg));
            }
        }
        let view = ArchiveView {
            store: Store::Local("/nonexistent".into()),
            files: Vec::new(),
            map: Some(map),
            marker_sysid: None,
            header_sysid: None,
            bad_histories: Vec::new(),
            size_problem: None,
        };
        window(&meta, Some(&view))
    }

    /// With recovery_target_timeline 'latest' PostgreSQL follows the newest timeline only when
    /// it forked off the backup's timeline after the backup's end; otherwise the window is the
    /// set's own timeline's, and the set says what 'latest' would do.
    #[test]
    fn the_window_follows_the_newest_timeline_only_where_postgresql_can() {
        // Timeline 2 forked off after the backup's end: its window ends on timeline 2.
        let (w, caveat) = window_with(1, 2, 1, 0x2800_0000).unwrap();
        assert_eq!(
            (w.until_timeline, w.until_wal.as_str()),
            (Timeline(2), "000000020000000000000040")
        );
        assert_eq!(caveat, None);
        // Timeline 2 forked off before the backup's end: timeline 1's window, and why.
        let (w, caveat) = window_with(1, 2, 1, 0x1800_0000).unwrap();
        assert_eq!(
            (w.until_timeline, w.until_wal.as_str()),
            (Timeline(1), "000000010000000000000030")
        );
        assert_eq!(
            caveat.as_deref(),
            Some(
                "recovery_target_timeline 'latest', the default, fails for it: timeline 2, the \
                 newest in the archive, forked off timeline 1 at 0/18000000, before the \
                 backup's end at 0/21000100; restore it with pitr-restore --target-timeline \
                 current (its window below is on its own timeline)"
            )
        );
        // A set on timeline 2 when timeline 3 (the newest) descends from timeline 1 only.
        let (_, caveat) = window_with(2, 3, 1, 0x1800_0000).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            caveat.as_deref().is_some_and(|c| c.contains(
                "timeline 3, the newest in the archive, does not descend from the backup's timeline 2"
            )),
            "{caveat:?}"
        );
    }

    #[test]
    fn codec_from_the_data_file_name() {
        assert_eq!(codec_of("h-data-2026.tar.zst"), "zstd");
        assert_eq!(codec_of("h-data-2026.tar.gz"), "gzip");
        assert_eq!(codec_of("h-data-2026.tar"), "none");
    }
}

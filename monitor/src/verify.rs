//! `verify`: is the archive whole from the oldest kept backup's start to its newest segment?
//!
//! Reports, each once:
//! - every run of missing segments on every timeline that matters (the timelines of the kept
//!   backups and their descendants, or every timeline without `--backup-dir`), from the
//!   segment where a timeline began (its history file) to its last archived segment, and on
//!   an ancestor at least up to the segment before the one where it ended (see
//!   [`crate::timeline`]): a switch is never a gap, a `.partial` file never fills one;
//! - every missing `.history` file of such a timeline or of its ancestors;
//! - every file that fails the integrity check pitr-restore applies ([`crate::integrity`]):
//!   every stored form, `.partial`, `.backup` and `.history` files included, at or after the
//!   start; a file compressed with a codec pitr cannot read; a segment whose header gives
//!   another segment size than the archive's;
//! - every WAL name stored in two forms (`SEG` and `SEG.zst` are one name): CRITICAL when the
//!   contents differ, WARNING when they are identical.
//!
//! Cost: the listing (names, sizes, times) is in memory; the files are read one per worker,
//! `--parallel-jobs` at once (fewer for large segments, so that memory stays near 1 GiB),
//! each decompressed completely and dropped. An rsync archive is fetched in batches into
//! the private scratch directory and each batch removed after its check.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use pitr_common::compress::Stored;
use pitr_common::wal::{SegNo, SegSize, Timeline, WalFileName};
use serde_json::{json, Value};

use crate::archive::{self, ArchiveView};
use crate::args::Config;
use crate::integrity::{self, Verified};
use crate::report::{Metric, Report, Status, Unit};
use crate::store::{ArchivedFile, Remote, SetListing};
use crate::timeline::{segment_of, Expected, WalMap};

/// Files fetched from an rsync archive at a time.
const REMOTE_BATCH: usize = 32;
/// Decoded bytes the workers may hold at once (one segment each).
const MEMORY_BUDGET: u64 = 1 << 30;

/// One thing wrong with the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `missing_segments`, `missing_history`, `damaged`, `duplicate`, `conflicting_duplicate`.
    pub kind: &'static str,
    /// The file or the first WAL name concerned.
    pub name: String,
    /// For missing segments: the last missing name.
    pub last: Option<String>,
    /// How many segments (missing) or files (duplicates).
    pub count: u64,
    /// What is wrong, for people.
    pub detail: String,
}

impl Problem {
    fn critical(&self) -> bool {
        self.kind != "duplicate"
    }

    fn line(&self) -> String {
        match self.kind {
            "missing_segments" if self.count == 1 => format!("missing segment {}", self.name),
            "missing_segments" => format!(
                "missing segments {} to {} ({} segments)",
                self.name,
                self.last.as_deref().unwrap_or(""),
                self.count
            ),
            "missing_history" => format!("missing history file {}", self.name),
            "damaged" => format!("damaged: {}", self.detail),
            _ => self.detail.clone(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "kind": self.kind,
            "name": self.name,
            "last": self.last,
            "count": self.count,
            "detail": self.detail,
        })
    }
}

fn seg_name(tli: Timeline, segno: SegNo, seg_size: SegSize) -> String {
    WalFileName::segment(tli, segno, seg_size).to_string()
}

/// The files to read, with whether their digest is needed (duplicates), in walk order.
fn files_to_check<'a>(
    view: &'a ArchiveView,
    start: SegNo,
    seg_size: SegSize,
    problems: &mut Vec<Problem>,
) -> Vec<(&'a ArchivedFile, bool)> {
    let mut by_name: BTreeMap<WalFileName, Vec<&ArchivedFile>> = BTreeMap::new();
    for f in &view.files {
        let in_walk = match segment_of(&f.wal) {
            None => true,
            Some(s) => match s.segno(seg_size) {
                Ok(n) => n >= start,
                Err(e) => {
                    problems.push(Problem {
                        kind: "damaged",
                        name: f.file.name.clone(),
                        last: None,
                        count: 1,
                        detail: format!("{}: {e}", f.file.name),
                    });
                    false
                }
            },
        };
        if in_walk {
            by_name.entry(f.wal).or_default().push(f);
        }
    }
    let mut out = Vec::new();
    for forms in by_name.values() {
        let dup = forms.len() > 1;
        for f in forms {
            match f.stored {
                Stored::Unreadable(codec) => problems.push(Problem {
                    kind: "damaged",
                    name: f.file.name.clone(),
                    last: None,
                    count: 1,
                    detail: format!(
                        "{} is compressed with {codec}, which pitr cannot decompress (pitr-restore refuses it)",
                        f.file.name
                    ),
                }),
                Stored::Readable(_) => out.push((*f, dup)),
            }
        }
    }
    out
}

/// What checking one file found: `Ok(None)` when it was removed since the listing.
type Checked = Result<Option<Verified>, String>;

/// Checks `files` on `jobs` threads; results in the same order.
fn check_all(
    view: &ArchiveView,
    remote: Option<&Remote>,
    files: &[(&ArchivedFile, bool)],
    sysid: u64,
    jobs: usize,
) -> anyhow::Result<Vec<Checked>> {
    let mut results: Vec<Checked> = Vec::with_capacity(files.len());
    let batch = if view.store.is_remote() {
        REMOTE_BATCH
    } else {
        files.len().max(1)
    };
    for chunk in files.chunks(batch) {
        let names: Vec<String> = chunk.iter().map(|(f, _)| f.file.name.clone()).collect();
        let paths = view.store.fetch(&names, remote)?;
        let next = AtomicUsize::new(0);
        let out: Mutex<Vec<Option<Checked>>> = Mutex::new(vec![None; chunk.len()]);
        std::thread::scope(|s| {
            for _ in 0..jobs.min(chunk.len()).max(1) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (Some((f, want_digest)), Some(path)) = (chunk.get(i), paths.get(i)) else {
                        return;
                    };
                    let r = match f.codec() {
                        Some(codec) => integrity::check(path, codec, &f.wal, sysid, *want_digest),
                        None => Err(format!("{} cannot be decompressed", f.file.name)),
                    };
                    // Removed since the listing (retention ran): not a damaged file. If it
                    // was needed, the next run's listing shows the gap. The path is the file
                    // itself in a local directory, and the fetched copy for a remote store,
                    // which a fetch leaves absent for a name that is gone (the first release
                    // called such a file damaged there: a false CRITICAL whenever cleanup ran
                    // during a verify of an rsync or s3 archive).
                    let r = match r {
                        Err(_) if !path.exists() => Ok(None),
                        r => r.map(Some),
                    };
                    if let Ok(mut o) = out.lock() {
                        o[i] = Some(r);
                    }
                });
            }
        });
        view.store.release(&paths);
        let out = out.into_inner().unwrap_or_default();
        results.extend(
            out.into_iter()
                .map(|r| r.unwrap_or_else(|| Err("not checked".to_string()))),
        );
    }
    Ok(results)
}

/// What reading the files found besides their problems.
#[derive(Debug, Default)]
struct Tally<'a> {
    /// Files read (and not removed meanwhile).
    checked: usize,
    /// Bytes they held, decompressed.
    bytes: u64,
    /// The digest of each form of each name stored more than once (`None`: unreadable).
    digests: BTreeMap<WalFileName, Vec<(&'a str, Option<pitr_common::checksum::Digest>)>>,
}

/// Test hook: with `PITR_TEST_VERIFY_HOLD=FILE`, once the archive is listed, `verify` writes
/// `FILE.listed` and waits (60 s at most) until `FILE` is gone, so that a test can remove
/// archived files between the listing and the reading.
fn test_hold() {
    let Some(hold) = std::env::var_os("PITR_TEST_VERIFY_HOLD").map(std::path::PathBuf::from) else {
        return;
    };
    let mut listed = hold.clone().into_os_string();
    listed.push(".listed");
    if std::fs::write(&listed, b"").is_err() {
        return;
    }
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while hold.exists() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Runs `verify`.
pub fn run(cfg: &Config, remote: Option<&Remote>) -> anyhow::Result<Report> {
    let started = Instant::now();
    let Some(store) = &cfg.archive else {
        anyhow::bail!("internal error: verify without --archive");
    };
    let view = archive::load(store, remote)?;
    let mut report = Report::new("verify", String::new());
    let Some(map) = view.map.as_ref() else {
        report.status = Status::Unknown;
        report.summary = format!(
            "archive {store}: cannot tell its segment size: {}",
            view.size_problem
                .as_deref()
                .unwrap_or("no readable segment header")
        );
        return Ok(report);
    };
    let seg_size = map.seg_size();
    let sysid = view.system_identifier().unwrap_or(0);

    let mut sets = Vec::new();
    for dir in &cfg.backup_dirs {
        sets.extend(dir.backup_sets(remote)?);
    }
    let (start, oldest_set) = start_of(&sets, map);
    let bases: Option<BTreeSet<Timeline>> =
        (!sets.is_empty()).then(|| sets.iter().map(|s| s.set.meta.timeline).collect());

    let (expected, missing_histories) = map.expected(start, bases.as_ref());
    let mut problems = missing(map, &expected, missing_histories);
    let files = files_to_check(&view, start, seg_size, &mut problems);
    let jobs = cfg
        .jobs
        .min(usize::try_from((MEMORY_BUDGET / seg_size.bytes()).max(1)).unwrap_or(1))
        .max(1);
    test_hold();
    let results = check_all(&view, remote, &files, sysid, jobs)?;
    let tally = tally(&files, &results, seg_size, &mut problems);
    for (n, e) in &view.bad_histories {
        if !problems.iter().any(|p| p.kind == "damaged" && &p.name == n) {
            problems.push(Problem {
                kind: "damaged",
                name: n.clone(),
                last: None,
                count: 1,
                detail: format!("{n}: {e}"),
            });
        }
    }
    problems.extend(duplicates(&tally.digests));

    let elapsed = started.elapsed().as_secs_f64();
    if problems.iter().any(Problem::critical) {
        report.at_least(Status::Critical);
    } else if !problems.is_empty() {
        report.at_least(Status::Warning);
    }
    let (first, newest) = span(&view, seg_size, start);
    let what = format!(
        "archive {store}: {} files checked ({}) from {} to {newest} in {elapsed:.1} s",
        tally.checked,
        pitr_common::log::human_bytes(tally.bytes),
        match oldest_set {
            Some(s) => format!("{} (start of backup {})", s.set.meta.min_xlog, s.meta_name),
            None => first.clone(),
        },
    );
    report.summary = summary(&problems, &what);
    report.lines = problems.iter().map(Problem::line).collect();
    report.metrics = metrics(&problems, &tally, elapsed);
    report.details = json!({
        "archive": store.to_string(),
        "segment_size": seg_size.bytes(),
        "system_identifier": view.system_identifier().map(|s| s.to_string()),
        "cluster_marker": view.marker_sysid.is_some(),
        "start": first,
        "start_backup": oldest_set.map(|s| s.meta_name.clone()),
        "newest": newest,
        "timelines": expected.iter().map(|e| json!({
            "timeline": e.timeline.0,
            "from": seg_name(e.timeline, e.lo, seg_size),
            "to": seg_name(e.timeline, e.hi, seg_size),
        })).collect::<Vec<_>>(),
        "files_checked": tally.checked,
        "bytes_checked": tally.bytes,
        "seconds": elapsed,
        "problems": problems.iter().map(Problem::json).collect::<Vec<_>>(),
    });
    report.omnipitr = report.lines.iter().map(|l| format!("{l}\n")).collect();
    Ok(report)
}

/// Where the walk starts: the first segment of the oldest kept backup (returned too), else the
/// archive's oldest segment.
fn start_of<'a>(sets: &'a [SetListing], map: &WalMap) -> (SegNo, Option<&'a SetListing>) {
    let oldest = sets
        .iter()
        .filter_map(|s| {
            s.set
                .meta
                .min_xlog
                .segno(map.seg_size())
                .ok()
                .map(|n| (n, s))
        })
        .min_by_key(|(n, _)| *n);
    match oldest {
        Some((n, s)) => (n, Some(s)),
        None => (map.oldest_segno().unwrap_or(SegNo(0)), None),
    }
}

/// The first segment of the walk (at or after `start`) and the newest segment, by name.
fn span(view: &ArchiveView, seg_size: SegSize, start: SegNo) -> (String, String) {
    let first = view
        .files
        .iter()
        .filter(|f| f.wal.has_wal_pages())
        .filter_map(|f| f.wal.segno(seg_size).ok().map(|n| (n, f.wal)))
        .filter(|(n, _)| *n >= start)
        .min_by_key(|(n, w)| (*n, w.timeline))
        .map(|(_, w)| w.to_string())
        .unwrap_or_default();
    let newest = view
        .files
        .iter()
        .rev()
        .find(|f| f.wal.has_wal_pages())
        .map(|f| f.wal.to_string())
        .unwrap_or_default();
    (first, newest)
}

/// The runs of missing segments in `expected` and the missing history files.
fn missing(map: &WalMap, expected: &[Expected], histories: Vec<Timeline>) -> Vec<Problem> {
    let seg_size = map.seg_size();
    let mut problems = Vec::new();
    for g in map.gaps(expected) {
        problems.push(Problem {
            kind: "missing_segments",
            name: seg_name(g.timeline, g.from, seg_size),
            last: Some(seg_name(g.timeline, g.to, seg_size)),
            count: g.to.0 - g.from.0 + 1,
            detail: String::new(),
        });
    }
    for t in histories {
        problems.push(Problem {
            kind: "missing_history",
            name: WalFileName::history(t).to_string(),
            last: None,
            count: 1,
            detail: String::new(),
        });
    }
    problems
}

/// Goes through the check results: damaged files and segments of another size into
/// `problems`, the rest counted.
fn tally<'a>(
    files: &[(&'a ArchivedFile, bool)],
    results: &[Checked],
    seg_size: SegSize,
    problems: &mut Vec<Problem>,
) -> Tally<'a> {
    let mut t = Tally::default();
    for ((f, dup), r) in files.iter().zip(results) {
        match r {
            Ok(None) => {}
            Ok(Some(v)) => {
                t.checked += 1;
                t.bytes += v.bytes;
                if let Some(s) = v.seg_size.filter(|s| *s != seg_size) {
                    problems.push(Problem {
                        kind: "damaged",
                        name: f.file.name.clone(),
                        last: None,
                        count: 1,
                        detail: format!(
                            "{}: its header says segment size {s}, the archive's is {seg_size}",
                            f.file.name
                        ),
                    });
                }
                if *dup {
                    t.digests
                        .entry(f.wal)
                        .or_default()
                        .push((&f.file.name, v.digest));
                }
            }
            Err(e) => {
                t.checked += 1;
                problems.push(Problem {
                    kind: "damaged",
                    name: f.file.name.clone(),
                    last: None,
                    count: 1,
                    detail: e.clone(),
                });
                if *dup {
                    t.digests
                        .entry(f.wal)
                        .or_default()
                        .push((&f.file.name, None));
                }
            }
        }
    }
    t
}

/// Each name stored in more than one form: a duplicate when every form has the same content,
/// else a conflicting one.
fn duplicates(
    digests: &BTreeMap<WalFileName, Vec<(&str, Option<pitr_common::checksum::Digest>)>>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (wal, forms) in digests {
        let names: Vec<&str> = forms.iter().map(|(n, _)| *n).collect();
        let first = forms.first().and_then(|(_, d)| *d);
        let identical = first.is_some() && forms.iter().all(|(_, d)| *d == first);
        problems.push(Problem {
            kind: if identical {
                "duplicate"
            } else {
                "conflicting_duplicate"
            },
            name: wal.to_string(),
            last: None,
            count: forms.len() as u64,
            detail: format!(
                "{wal} is stored {} times: {} ({})",
                forms.len(),
                names.join(", "),
                if identical {
                    "identical content; remove all but one"
                } else {
                    "different or unreadable content: find out which copy is right"
                }
            ),
        });
    }
    problems
}

/// Missing files, damaged files and duplicated names.
fn counts(problems: &[Problem]) -> (u64, usize, usize) {
    let missing: u64 = problems
        .iter()
        .filter(|p| p.kind.starts_with("missing"))
        .map(|p| p.count)
        .sum();
    let damaged = problems.iter().filter(|p| p.kind == "damaged").count();
    let duplicates = problems
        .iter()
        .filter(|p| p.kind.ends_with("duplicate"))
        .count();
    (missing, damaged, duplicates)
}

/// The status line: `what` was checked and, first, the problems.
fn summary(problems: &[Problem], what: &str) -> String {
    if problems.is_empty() {
        return format!("{what}, no problem found");
    }
    let (missing, damaged, duplicates) = counts(problems);
    let mut parts = Vec::new();
    if missing > 0 {
        parts.push(format!("{missing} missing"));
    }
    if damaged > 0 {
        parts.push(format!("{damaged} damaged"));
    }
    if duplicates > 0 {
        parts.push(format!("{duplicates} duplicated"));
    }
    format!(
        "{} problem{} ({}): {}; {what}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        parts.join(", "),
        problems.first().map(Problem::line).unwrap_or_default()
    )
}

fn metrics(problems: &[Problem], tally: &Tally<'_>, elapsed: f64) -> Vec<Metric> {
    let (missing, damaged, duplicates) = counts(problems);
    vec![
        Metric::new(
            "verify_problems",
            "Problems verify found in the archive.",
            problems.len() as f64,
            Unit::Count,
        ),
        Metric::new(
            "verify_missing_files",
            "Missing segments and history files.",
            missing as f64,
            Unit::Count,
        ),
        Metric::new(
            "verify_damaged_files",
            "Archived files that fail the integrity check.",
            damaged as f64,
            Unit::Count,
        ),
        Metric::new(
            "verify_duplicated_names",
            "WAL names stored in more than one form.",
            duplicates as f64,
            Unit::Count,
        ),
        Metric::new(
            "verify_files",
            "Archived files read and checked.",
            tally.checked as f64,
            Unit::Count,
        ),
        Metric::new(
            "verify_read",
            "Bytes checked, decompressed.",
            tally.bytes as f64,
            Unit::Bytes,
        ),
        Metric::new(
            "verify_duration",
            "Seconds the verification took.",
            elapsed,
            Unit::Seconds,
        ),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::integrity::tests::fake_segment;
    use pitr_common::compress::Codec;

    const SEG: u64 = 1 << 20;

    fn seg_size() -> SegSize {
        SegSize::new(SEG).unwrap()
    }

    /// The name of segment `n` of timeline 1.
    fn name(n: u64) -> String {
        seg_name(Timeline(1), SegNo(n), seg_size())
    }

    fn write_seg(dir: &std::path::Path, name: &str, codec: Codec) {
        let wal = WalFileName::parse(name).unwrap();
        let data = fake_segment(&wal, seg_size(), 77, 1);
        let bytes = codec.compress(&data).unwrap();
        std::fs::write(dir.join(format!("{name}{}", codec.extension())), bytes).unwrap();
    }

    fn config(archive: &std::path::Path) -> Config {
        let a = archive.display().to_string();
        let args = crate::args::Args::from_args(
            &["pitr-monitor"],
            &["--check", "verify", "--archive", &a],
        )
        .unwrap();
        args.into_config().unwrap()
    }

    use argh::FromArgs;

    #[test]
    fn finds_each_kind_of_problem_once() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        std::fs::write(dir.join(".pitr-cluster"), "system_identifier = 77\n").unwrap();
        for n in 1..=9u64 {
            if n != 4 {
                write_seg(dir, &name(n), Codec::Zstd(3));
            }
        }
        // A second, identical form of segment 2; segment 6 damaged; segment 7 of another system.
        write_seg(dir, &name(2), Codec::None);
        std::fs::write(dir.join(format!("{}.zst", name(6))), b"garbage").unwrap();
        let wal7 = WalFileName::parse(&name(7)).unwrap();
        let foreign = fake_segment(&wal7, seg_size(), 78, 1);
        std::fs::write(
            dir.join(format!("{wal7}.zst")),
            Codec::Zstd(3).compress(&foreign).unwrap(),
        )
        .unwrap();

        let r = run(&config(dir), None).unwrap();
        assert_eq!(r.final_status(), Status::Critical, "{}", r.plugin_text());
        assert_eq!(
            r.lines,
            [
                "missing segment 000000010000000000000004".to_string(),
                format!("damaged: {}/000000010000000000000006.zst cannot be decompressed: Unknown frame descriptor", dir.display()),
                format!("damaged: {}/000000010000000000000007.zst: 000000010000000000000007 is from database system 78, not 77", dir.display()),
                "000000010000000000000002 is stored 2 times: 000000010000000000000002, 000000010000000000000002.zst (identical content; remove all but one)".to_string(),
            ],
            "{}",
            r.plugin_text()
        );
        assert_eq!(r.details["files_checked"], 9);
        // Only the duplicate left: WARNING.
        write_seg(dir, &name(4), Codec::Zstd(3));
        write_seg(dir, &name(6), Codec::Zstd(3));
        std::fs::remove_file(dir.join(format!("{wal7}.zst"))).unwrap();
        write_seg(dir, &name(7), Codec::Gzip(1));
        let r = run(&config(dir), None).unwrap();
        assert_eq!(r.final_status(), Status::Warning, "{}", r.plugin_text());
        std::fs::remove_file(dir.join(name(2))).unwrap();
        let r = run(&config(dir), None).unwrap();
        assert_eq!(r.final_status(), Status::Ok, "{}", r.plugin_text());
        assert!(r.summary.ends_with("no problem found"), "{}", r.summary);
    }
}

//! Retention (form 2): which backup sets and WAL to remove.
//!
//! The sets are found by their meta files (`pitr_common::backupset::list_local`); a set is
//! *valid* when its data, digest and (if named) WAL files exist at the sizes the meta file
//! records. The kept sets are the valid ones started within `--keep-days`, plus the newest
//! `--keep-count` valid ones, plus always the newest valid one. Every set older than the oldest
//! kept one is removed (meta file first, so that a half-removed set is never taken for a whole
//! one), then the WAL older than the lowest first segment (`Min-Xlog`) of all the kept sets. That
//! is not always the oldest-started set's: a backup of a standby replaying with
//! `--recovery-delay`, or of a timeline forked off before an older set's start, starts later at
//! an earlier WAL position ([`wal_cutoff`]). With no valid set at all nothing is removed
//! (OmniPITR removed every backup in that case).

use std::path::Path;
use std::time::Duration;

use pitr_common::backupset::{self, FoundSet};
use pitr_common::exit::Failure;
use pitr_common::objstore::{self, S3Url, Settings, Store};
use pitr_common::wal::WalFileName;
use pitr_common::{fs, log_info, log_warning, objsets};

use crate::args::{Config, Mode};
use crate::prune::{archive_system, check_marker, human, paused, remove_wal, Archive};

/// Why a set is not valid, if it is not.
fn invalid_reason(set: &FoundSet) -> Option<String> {
    let dir = set.dir();
    let mut expect = vec![(set.meta.data_file.as_str(), Some(set.meta.data_size))];
    if let Some(x) = &set.meta.xlog_file {
        expect.push((x.as_str(), Some(set.meta.xlog_size)));
    }
    expect.push((set.meta.digest_file.as_str(), None));
    for (name, size) in expect {
        match std::fs::metadata(dir.join(name)) {
            Ok(m) if size.is_none_or(|s| s == m.len()) => {}
            Ok(m) => {
                return Some(format!(
                    "{name} is {} bytes, the meta file says {}",
                    m.len(),
                    size.unwrap_or(0)
                ))
            }
            Err(e) => return Some(format!("{name}: {e}")),
        }
    }
    None
}

/// The decision: indexes (into the oldest-first list) of the sets to keep.
pub fn choose(
    started: &[(i64, bool)],
    now: i64,
    keep_days: Option<u32>,
    keep_count: Option<u32>,
) -> Vec<bool> {
    let mut keep = vec![false; started.len()];
    let valid: Vec<usize> = (0..started.len()).filter(|i| started[*i].1).collect();
    let Some(&newest) = valid.last() else {
        return keep;
    };
    keep[newest] = true;
    if let Some(days) = keep_days {
        let cutoff = now - i64::from(days) * 86_400;
        for &i in &valid {
            if started[i].0 >= cutoff {
                keep[i] = true;
            }
        }
    }
    if let Some(n) = keep_count {
        for &i in valid.iter().rev().take(n as usize) {
            keep[i] = true;
        }
    }
    // Everything newer than the oldest kept set stays too (an invalid set there may be a
    // backup still being written, or one an operator is looking into).
    if let Some(first) = keep.iter().position(|k| *k) {
        for k in keep.iter_mut().skip(first) {
            *k = true;
        }
    }
    keep
}

/// The oldest WAL file the kept sets need: the lowest `Min-Xlog` position (timeline ignored, as
/// `pg_archivecleanup` compares) among `min_xlogs` whose `keep` is set. Sets are ordered by
/// their start times, and WAL positions need not follow them: a standby's backup taken while it
/// replays an hour behind, or a backup on a timeline forked off before an older set's start,
/// starts later at an earlier position, and cutting at the oldest-started set's `Min-Xlog`
/// would remove WAL that set needs.
pub fn wal_cutoff<'a>(
    min_xlogs: impl IntoIterator<Item = &'a WalFileName>,
    keep: &[bool],
) -> Option<&'a WalFileName> {
    min_xlogs
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(w, _)| w)
        .min_by(|a, b| a.cmp_position(b))
}

/// The database system whose sets the retention applies to: the one the archive's cluster
/// marker names, else (an archive without a marker) the newest valid set's. `systems` gives
/// each set's System-Identifier and validity, oldest first.
pub fn cluster(marker: Option<u64>, systems: &[(u64, bool)]) -> Option<u64> {
    marker.or_else(|| systems.iter().rev().find(|(_, v)| *v).map(|(id, _)| *id))
}

/// The sets retention applies to, and what chose them.
struct Ours<T> {
    /// The sets of the chosen system, oldest first.
    sets: Vec<T>,
    /// The chosen system ([`cluster`]).
    cluster: Option<u64>,
    /// Every set's system and validity, oldest first.
    systems: Vec<(u64, bool)>,
    /// How many sets of other systems were left out.
    others: usize,
}

/// The sets (`shown` names them) of the database system [`cluster`] chooses given the archive's
/// `marker`; each set of another system is left out with a WARNING. Retention counts those for
/// nothing and never removes them: in a backup directory two clusters share, the newer
/// cluster's `--keep-count` would otherwise remove every set of the older one.
fn of_cluster<T>(
    marker: Option<u64>,
    sets: Vec<T>,
    system: impl Fn(&T) -> u64,
    valid: impl Fn(&T) -> bool,
    shown: impl Fn(&T) -> String,
) -> Ours<T> {
    let systems: Vec<(u64, bool)> = sets.iter().map(|s| (system(s), valid(s))).collect();
    let chosen = cluster(marker, &systems);
    let Some(id) = chosen else {
        return Ours {
            sets,
            cluster: None,
            systems,
            others: 0,
        };
    };
    let (ours, theirs): (Vec<T>, Vec<T>) = sets.into_iter().partition(|s| system(s) == id);
    for s in &theirs {
        log_warning!(
            "backup set {} is of database system {}, not {id}, the one this retention applies to; it is left alone",
            shown(s),
            system(s)
        );
    }
    Ours {
        sets: ours,
        cluster: chosen,
        systems,
        others: theirs.len(),
    }
}

/// The error when no set of the sets retention applies to is valid. When other systems' sets
/// are valid, the archive is probably the wrong one (a configuration copied between clusters):
/// the error says so, as the marker check does.
fn no_valid_set<T>(archive: Archive<'_>, shown: &str, ours: &Ours<T>) -> anyhow::Error {
    if let Some(newest) = cluster(None, &ours.systems).filter(|id| Some(*id) != ours.cluster) {
        if let Err(e) = check_marker(archive, newest) {
            return e;
        }
    }
    let of = match ours.cluster {
        Some(id) if ours.others > 0 => format!(" of database system {id}"),
        _ => String::new(),
    };
    Failure::new(format!(
        "no valid backup set{of} in {shown}; nothing removed"
    ))
    .hint("retention never removes the last backups: check that pitr-backup succeeds")
    .into()
}

fn remove_set(set: &FoundSet, dry_run: bool, delay: Option<Duration>) -> anyhow::Result<u64> {
    let mut total = 0;
    // Meta file first: a set without it is incomplete and never mistaken for a whole one.
    let mut files = set.files();
    files.rotate_right(1);
    // Recorded first, so that a cleanup killed half-way is finished by the next run.
    let intent = if dry_run {
        None
    } else {
        let names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        let meta_name = names.first().cloned().unwrap_or_default();
        Some(backupset::SetIntent::begin(
            set.dir(),
            &meta_name,
            backupset::IntentAction::Remove,
            &names[1..],
        )?)
    };
    for f in &files {
        let size = match std::fs::metadata(f) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(fs::IoError::new("examining", f, e).into()),
        };
        total += size;
        if dry_run {
            log_info!(
                "(dry-run) would remove backup file {} ({})",
                f.display(),
                human(size)
            );
        } else {
            fs::remove_file_if_exists(f)?;
            log_info!("removed backup file {} ({})", f.display(), human(size));
            // Make the meta file's removal durable before the rest goes.
            fs::fsync_dir(set.dir())?;
            if let Some(d) = delay {
                std::thread::sleep(d);
            }
        }
    }
    if let Some(i) = intent {
        i.end()?;
    }
    Ok(total)
}

/// Finishes what a killed pitr-backup or pitr-cleanup left in the backup directory (see
/// [`backupset::sweep_intents`]), and logs it.
pub fn finish_interrupted(backup_dir: &Path, dry_run: bool) -> anyhow::Result<()> {
    for s in backupset::sweep_intents(backup_dir, dry_run)? {
        let verb = if dry_run {
            "(dry-run) would finish"
        } else {
            "finished"
        };
        let what = match s.action {
            backupset::IntentAction::Write => "writing",
            backupset::IntentAction::Remove => "removing",
        };
        log_warning!(
            "{verb} the interrupted {what} of backup set {} in {}: {} files removed",
            s.meta,
            backup_dir.display(),
            s.removed.len()
        );
        for p in &s.removed {
            log_info!("removed {}", p.display());
        }
    }
    Ok(())
}

/// Applies the retention.
pub fn run(cfg: &Config, archive: Archive<'_>) -> anyhow::Result<()> {
    let Mode::Retention {
        backup_dir,
        keep_days,
        keep_count,
    } = &cfg.mode
    else {
        return Ok(());
    };
    match std::fs::metadata(backup_dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Failure::new(format!(
                "backup directory {} is not a directory",
                backup_dir.display()
            ))
            .hint("give the directory pitr-backup writes its sets to (--dst-local)")
            .into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Failure::new(format!(
                "backup directory {} does not exist",
                backup_dir.display()
            ))
            .hint("give the directory pitr-backup writes its sets to (--dst-local)")
            .into())
        }
        Err(e) => return Err(fs::IoError::new("examining", backup_dir, e).into()),
    }
    finish_interrupted(backup_dir, cfg.dry_run)?;
    let found: Vec<(FoundSet, Option<String>)> = backupset::list_local(backup_dir)?
        .into_iter()
        .map(|s| {
            let why = invalid_reason(&s);
            (s, why)
        })
        .collect();
    let mut ours = of_cluster(
        archive_system(archive)?,
        found,
        |(s, _)| s.meta.system_identifier,
        |(_, why)| why.is_none(),
        |(s, _)| s.meta_path.display().to_string(),
    );
    let found = std::mem::take(&mut ours.sets);
    for (s, why) in &found {
        if let Some(why) = why {
            log_warning!("backup set {} is not valid: {why}", s.meta_path.display());
        }
    }
    let (sets, validity): (Vec<FoundSet>, Vec<Option<String>>) = found.into_iter().unzip();
    let started: Vec<(i64, bool)> = sets
        .iter()
        .zip(&validity)
        .map(|(s, v)| (s.meta.started_epoch, v.is_none()))
        .collect();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let keep = choose(&started, now, *keep_days, *keep_count);
    let Some(oldest_kept) = keep.iter().position(|k| *k) else {
        return Err(no_valid_set(
            archive,
            &backup_dir.display().to_string(),
            &ours,
        ));
    };
    let mut total = 0;
    let mut count = 0;
    for (set, _) in sets.iter().zip(&keep).filter(|(_, k)| !**k) {
        total += remove_set(set, cfg.dry_run, cfg.remove_delay)?;
        count += 1;
    }
    let verb = if cfg.dry_run {
        "would be removed"
    } else {
        "removed"
    };
    log_info!(
        "{count} backup sets {verb}, {}; {} kept, the oldest kept started at {}",
        human(total),
        sets.len() - count,
        pitr_common::log::format_epoch(sets[oldest_kept].meta.started_epoch)
    );
    if paused(cfg, "WAL") {
        return Ok(());
    }
    if let Some(cutoff) = wal_cutoff(sets.iter().map(|s| &s.meta.min_xlog), &keep) {
        remove_wal(archive, cutoff, cfg.dry_run)?;
    }
    Ok(())
}

/// Applies the retention to backup sets in an object store (`--backup-dir s3://…`): the same
/// decision as for a directory, sets removed through [`objsets::remove`] (a record first, then
/// the meta file, then the rest), after the records that killed runs on this host left are
/// finished.
pub fn run_store(
    cfg: &Config,
    url: &S3Url,
    settings: &Settings,
    archive: Archive<'_>,
) -> anyhow::Result<()> {
    let Mode::StoreRetention {
        keep_days,
        keep_count,
        ..
    } = &cfg.mode
    else {
        return Ok(());
    };
    let failure = |e: objstore::Error| e.failure(format!("applying the retention to {url}"));
    let store = Store::open(url, settings).map_err(failure)?;
    if !cfg.dry_run {
        for s in objsets::sweep(&store).map_err(failure)? {
            log_warning!(
                "finished the interrupted work on backup set {} in {url}: {} objects removed",
                s.meta,
                s.removed.len()
            );
        }
    }
    let mut ours = of_cluster(
        archive_system(archive)?,
        objsets::list(&store).map_err(failure)?,
        |s| s.meta.system_identifier,
        |s| s.invalid.is_none(),
        |s| format!("{url}/{}", s.meta_key),
    );
    let sets = std::mem::take(&mut ours.sets);
    for s in &sets {
        if let Some(why) = &s.invalid {
            log_warning!("backup set {url}/{} is not valid: {why}", s.meta_key);
        }
    }
    let started: Vec<(i64, bool)> = sets
        .iter()
        .map(|s| (s.meta.started_epoch, s.invalid.is_none()))
        .collect();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let keep = choose(&started, now, *keep_days, *keep_count);
    let Some(oldest_kept) = keep.iter().position(|k| *k) else {
        return Err(no_valid_set(archive, &url.to_string(), &ours));
    };
    let mut count = 0;
    let mut total = 0;
    for (set, _) in sets.iter().zip(&keep).filter(|(_, k)| !**k) {
        count += 1;
        total += set.stored_bytes;
        if cfg.dry_run {
            log_info!(
                "(dry-run) would remove backup set {url}/{} ({}; {})",
                set.meta_key,
                set.files().join(", "),
                human(set.stored_bytes)
            );
            continue;
        }
        objsets::remove(&store, set).map_err(failure)?;
        log_info!(
            "removed backup set {url}/{} ({}; {})",
            set.meta_key,
            set.files().join(", "),
            human(set.stored_bytes)
        );
    }
    let verb = if cfg.dry_run {
        "would be removed"
    } else {
        "removed"
    };
    log_info!(
        "{count} backup sets {verb}, {}; {} kept, the oldest kept started at {}",
        human(total),
        sets.len() - count,
        pitr_common::log::format_epoch(sets[oldest_kept].meta.started_epoch)
    );
    if paused(cfg, "WAL") {
        return Ok(());
    }
    if let Some(cutoff) = wal_cutoff(sets.iter().map(|s| &s.meta.min_xlog), &keep) {
        remove_wal(archive, cutoff, cfg.dry_run)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn keeps_days_count_and_always_the_newest_valid() {
        let now = 100 * DAY;
        let sets = [
            (now - 10 * DAY, true),
            (now - 8 * DAY, true),
            (now - 5 * DAY, true),
            (now - 2 * DAY, true),
            (now - DAY, false),
        ];
        assert_eq!(
            choose(&sets, now, Some(3), None),
            [false, false, false, true, true]
        );
        assert_eq!(
            choose(&sets, now, Some(6), None),
            [false, false, true, true, true]
        );
        assert_eq!(
            choose(&sets, now, None, Some(3)),
            [false, true, true, true, true]
        );
        assert_eq!(
            choose(&sets, now, Some(3), Some(3)),
            [false, true, true, true, true]
        );
        // Nothing within a day: the newest valid backup survives anyway.
        assert_eq!(
            choose(&sets, now, Some(1), None),
            [false, false, false, true, true]
        );
        // No valid backup: nothing is kept, and the caller removes nothing.
        assert_eq!(choose(&[(now, false)], now, Some(1), None), [false]);
        assert_eq!(choose(&[], now, Some(1), None), Vec::<bool>::new());
    }

    #[test]
    fn retention_applies_to_the_archive_s_system_else_the_newest_valid_set_s() {
        let systems = [(1, true), (2, true), (3, false)];
        assert_eq!(cluster(Some(1), &systems), Some(1));
        assert_eq!(cluster(Some(9), &systems), Some(9));
        assert_eq!(cluster(None, &systems), Some(2));
        assert_eq!(cluster(None, &[(3, false)]), None);
        assert_eq!(cluster(None, &[]), None);
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn wal_is_cut_at_the_lowest_position_any_kept_set_starts_from() {
        let w = |s: &str| WalFileName::parse(s).unwrap();
        // Oldest-started first: a primary's set at 0x100, then a delayed standby's at 0x90,
        // then a set on timeline 2 forked off at 0x75.
        let sets = [
            w("000000010000000000000080"),
            w("000000010000000100000000"),
            w("000000010000000000000090"),
            w("000000020000000000000075"),
        ];
        let cut = |keep: &[bool]| wal_cutoff(&sets, keep).map(|w| w.to_string());
        assert_eq!(
            cut(&[false, true, true, false]).as_deref(),
            Some("000000010000000000000090")
        );
        assert_eq!(
            cut(&[false, true, true, true]).as_deref(),
            Some("000000020000000000000075")
        );
        assert_eq!(
            cut(&[true, true, true, true]).as_deref(),
            Some("000000020000000000000075")
        );
        assert_eq!(
            cut(&[false, true, false, false]).as_deref(),
            Some("000000010000000100000000")
        );
        assert_eq!(cut(&[false; 4]), None);
    }
}

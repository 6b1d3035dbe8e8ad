//! Timelines in an archive: `.history` files, which timeline holds which segment on the way to
//! the newest timeline, and which segments must be there.
//!
//! A `TTTTTTTT.history` file lists every ancestor of timeline T with the WAL location where it
//! ended (`parentTLI <TAB> X/Y <TAB> reason`, PostgreSQL's `timeline.c`). Timeline T's first
//! segment is the one holding the location where its parent ended; the parent's segments are
//! needed up to the one before. That is all [`WalMap`] needs to walk an archive across
//! timeline switches without a false gap, for any segment size: positions are segment numbers
//! (`SegNo`), never names compared as text.
//!
//! Recovery with `recovery_target_timeline = 'latest'` finds the newest timeline by asking for
//! `T+1.history`, `T+2.history`, ... until one is missing (`findNewestTimeLine`), then follows
//! that timeline's ancestry; [`WalMap::newest_from`] and [`WalMap::lineage`] do the same.
//!
//! Pure functions of what the archive's listing and history files say; no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use pitr_common::wal::{Lsn, WalFileName, WalKind};

/// One line of a history file: timeline `parent` ended at `switch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The ancestor timeline.
    pub parent: u32,
    /// Where it ended (the first location of the next timeline in the list).
    pub switch: Lsn,
}

/// A history file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryError {
    /// The 1-based line.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for HistoryError {}

/// Parses a history file's text (comments and blank lines skipped), checking that timelines
/// and switch locations increase, as PostgreSQL's `readTimeLineHistory` does.
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>, HistoryError> {
    let mut out: Vec<HistoryEntry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason| HistoryError {
            line: i + 1,
            reason,
        };
        let mut fields = line.split_whitespace();
        let parent: u32 = fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad("no timeline number"))?;
        let switch: Lsn = fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| bad("no switch location"))?;
        if let Some(prev) = out.last() {
            if parent <= prev.parent || switch < prev.switch {
                return Err(bad("timelines or locations do not increase"));
            }
        }
        out.push(HistoryEntry { parent, switch });
    }
    Ok(out)
}

/// The timelines a target timeline descends through: each ancestor with the location where it
/// ended, the target last with none.
pub type Lineage = Vec<(u32, Option<Lsn>)>;

/// Segments that must be present on one timeline: `lo..=hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The timeline.
    pub timeline: u32,
    /// First segment number.
    pub lo: u64,
    /// Last segment number.
    pub hi: u64,
}

/// A run of missing segments on one timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The timeline.
    pub timeline: u32,
    /// First missing segment number.
    pub from: u64,
    /// Last missing segment number.
    pub to: u64,
}

/// What an archive holds, by position.
#[derive(Debug, Clone, Default)]
pub struct WalMap {
    seg_size: u64,
    segments: BTreeMap<u32, BTreeSet<u64>>,
    partials: BTreeMap<u32, BTreeSet<u64>>,
    history_files: BTreeSet<u32>,
    histories: BTreeMap<u32, Vec<HistoryEntry>>,
}

impl WalMap {
    /// An empty map for segments of `seg_size` bytes.
    pub fn new(seg_size: u64) -> WalMap {
        WalMap {
            seg_size,
            ..WalMap::default()
        }
    }

    /// The segment size.
    pub fn seg_size(&self) -> u64 {
        self.seg_size
    }

    /// Records a file of the listing; names out of range at this segment size are ignored
    /// (the caller reports them).
    pub fn add(&mut self, name: &WalFileName) {
        let tli = name.timeline.0;
        match name.kind {
            WalKind::History => {
                self.history_files.insert(tli);
            }
            WalKind::Segment | WalKind::Partial => {
                let Ok(segno) = name.segno(self.seg_size) else {
                    return;
                };
                let map = if name.kind == WalKind::Segment {
                    &mut self.segments
                } else {
                    &mut self.partials
                };
                map.entry(tli).or_default().insert(segno.0);
            }
            WalKind::Backup { .. } => {}
        }
    }

    /// Records the parsed content of `tli`'s history file.
    pub fn add_history(&mut self, tli: u32, entries: Vec<HistoryEntry>) {
        self.histories.insert(tli, entries);
    }

    /// Whether the complete segment `segno` of `tli` is there.
    pub fn has_segment(&self, tli: u32, segno: u64) -> bool {
        self.segments.get(&tli).is_some_and(|s| s.contains(&segno))
    }

    /// Whether `tli`'s history file is there.
    pub fn has_history(&self, tli: u32) -> bool {
        self.history_files.contains(&tli)
    }

    /// The oldest segment number of any timeline.
    pub fn oldest_segno(&self) -> Option<u64> {
        self.segments
            .values()
            .chain(self.partials.values())
            .filter_map(|s| s.first().copied())
            .min()
    }

    /// Timeline numbers with WAL (segments or `.partial`) or a history file.
    pub fn timelines(&self) -> BTreeSet<u32> {
        self.segments
            .keys()
            .chain(self.partials.keys())
            .chain(self.history_files.iter())
            .copied()
            .collect()
    }

    /// PostgreSQL's `findNewestTimeLine` from `tli`: the last of `tli+1`, `tli+2`, ... whose
    /// history file is there without a hole.
    pub fn newest_from(&self, tli: u32) -> u32 {
        let mut t = tli;
        while self.has_history(t + 1) {
            t += 1;
        }
        t
    }

    /// The ancestry of `tli` from its history (just `tli` when it has none we could read).
    pub fn lineage(&self, tli: u32) -> Lineage {
        let mut out: Lineage = self
            .histories
            .get(&tli)
            .map(|h| h.iter().map(|e| (e.parent, Some(e.switch))).collect())
            .unwrap_or_default();
        out.push((tli, None));
        out
    }

    /// The timeline of `lineage` that holds segment `segno`: an ancestor holds the segments
    /// before the one where it ended, which belongs to its child.
    pub fn timeline_at(&self, lineage: &Lineage, segno: u64) -> u32 {
        for (tli, end) in lineage {
            match end {
                Some(e) if segno < e.0 / self.seg_size => return *tli,
                Some(_) => {}
                None => return *tli,
            }
        }
        lineage.last().map_or(1, |(t, _)| *t)
    }

    /// Walks `lineage` from segment `from` while each segment is in the archive or `covered`
    /// says it is elsewhere (a backup's own WAL): the timeline and number of the last one of
    /// the unbroken run, `None` when `from` itself is missing.
    pub fn contiguous_end(
        &self,
        lineage: &Lineage,
        from: u64,
        covered: impl Fn(u64) -> bool,
    ) -> Option<(u32, u64)> {
        let mut last = None;
        let mut p = from;
        loop {
            let tli = self.timeline_at(lineage, p);
            if !(self.has_segment(tli, p) || covered(p)) {
                return last;
            }
            last = Some((tli, p));
            p += 1;
        }
    }

    /// Whether `ancestor` is `tli` or in its history.
    pub fn descends_from(&self, tli: u32, ancestor: u32) -> bool {
        tli == ancestor
            || self
                .histories
                .get(&tli)
                .is_some_and(|h| h.iter().any(|e| e.parent == ancestor))
    }

    /// The segments that must be present from segment `start` on, per timeline, and the
    /// history files that must be there. With `bases` (the timelines of the backups kept),
    /// only those timelines and their descendants count (and timelines whose history is
    /// missing, which cannot be placed); without, every timeline with WAL at or after `start`.
    ///
    /// A timeline's segments are needed from the one where it began (its history's last
    /// switch) to the last one archived, and, when a needed timeline descends from it, at
    /// least up to the segment before the one where it ended on that path.
    pub fn expected(&self, start: u64, bases: Option<&BTreeSet<u32>>) -> (Vec<Expected>, Vec<u32>) {
        let has_wal_from = |t: u32| {
            let after = |m: &BTreeMap<u32, BTreeSet<u64>>| {
                m.get(&t).is_some_and(|s| s.range(start..).next().is_some())
            };
            after(&self.segments) || after(&self.partials)
        };
        let relevant = |t: u32| match bases {
            None => true,
            Some(b) => {
                (!self.histories.contains_key(&t) && t > 1)
                    || b.iter().any(|base| self.descends_from(t, *base))
            }
        };
        let mut needed: BTreeSet<u32> = self
            .timelines()
            .into_iter()
            .filter(|t| has_wal_from(*t) && relevant(*t))
            .collect();
        // How far each needed timeline's ancestors are needed.
        let mut needed_end: BTreeMap<u32, u64> = BTreeMap::new();
        let mut missing_history = BTreeSet::new();
        for &t in &needed.clone() {
            if t > 1 && !self.has_history(t) {
                missing_history.insert(t);
            }
            for (a, end) in self.lineage(t) {
                let Some(end) = end else { continue };
                let last = (end.0 / self.seg_size).checked_sub(1);
                if let Some(last) = last.filter(|l| *l >= start) {
                    let e = needed_end.entry(a).or_insert(last);
                    *e = (*e).max(last);
                    if relevant(a) || bases.is_some_and(|b| b.contains(&a)) {
                        needed.insert(a);
                    }
                }
                if a > 1 && !self.has_history(a) {
                    missing_history.insert(a);
                }
            }
        }
        let mut out = Vec::new();
        for t in needed {
            let began = self
                .histories
                .get(&t)
                .and_then(|h| h.last())
                .map(|e| e.switch.0 / self.seg_size);
            let first_present = [&self.segments, &self.partials]
                .iter()
                .filter_map(|m| m.get(&t).and_then(|s| s.range(start..).next().copied()))
                .min();
            let lo = match began {
                Some(b) => b.max(start),
                None => match first_present {
                    Some(f) => f,
                    None => continue,
                },
            };
            let last_present = self.segments.get(&t).and_then(|s| s.last().copied());
            let hi = match (last_present, needed_end.get(&t)) {
                (Some(a), Some(b)) => a.max(*b),
                (Some(a), None) => a,
                (None, Some(b)) => *b,
                (None, None) => continue,
            };
            if lo <= hi {
                out.push(Expected {
                    timeline: t,
                    lo,
                    hi,
                });
            }
        }
        (out, missing_history.into_iter().collect())
    }

    /// The missing runs within `expected`.
    pub fn gaps(&self, expected: &[Expected]) -> Vec<Gap> {
        let mut out = Vec::new();
        for e in expected {
            let have = self.segments.get(&e.timeline);
            // Walk the present segments, not every position: a range may be huge.
            let mut next = e.lo;
            for &p in have.into_iter().flat_map(|s| s.range(e.lo..=e.hi)) {
                if p > next {
                    out.push(Gap {
                        timeline: e.timeline,
                        from: next,
                        to: p - 1,
                    });
                }
                next = p + 1;
            }
            if next <= e.hi {
                out.push(Gap {
                    timeline: e.timeline,
                    from: next,
                    to: e.hi,
                });
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use pitr_common::wal::{SegNo, Timeline};

    const MB: u64 = 1 << 20;

    fn seg(tli: u32, n: u64, size: u64) -> WalFileName {
        WalFileName::segment(Timeline(tli), SegNo(n), size)
    }

    fn map(size: u64, files: &[WalFileName]) -> WalMap {
        let mut m = WalMap::new(size);
        for f in files {
            m.add(f);
        }
        m
    }

    #[test]
    fn history_files_parse() {
        let h = parse_history(
            "1\t0/3000060\tno recovery target specified\n\n# c\n2\t0/5000000\tat restore point \"x\"\n",
        )
        .unwrap();
        assert_eq!(
            h,
            [
                HistoryEntry {
                    parent: 1,
                    switch: Lsn(0x0300_0060)
                },
                HistoryEntry {
                    parent: 2,
                    switch: Lsn(0x0500_0000)
                }
            ]
        );
        assert_eq!(
            parse_history("1\tnope\n").unwrap_err().to_string(),
            "line 1: no switch location"
        );
        assert!(parse_history("2\t0/5\tx\n1\t0/6\ty\n").is_err());
    }

    /// Timeline 1 to segment 9, timeline 2 branched in segment 7 (1 MiB segments), the old
    /// timeline's segment 7 kept as .partial.
    fn failover(size: u64) -> WalMap {
        let mut files: Vec<WalFileName> = (3..=6).map(|n| seg(1, n, size)).collect();
        let mut partial = seg(1, 7, size);
        partial.kind = WalKind::Partial;
        files.push(partial);
        files.extend((7..=12).map(|n| seg(2, n, size)));
        files.push(WalFileName::history(Timeline(2)));
        let mut m = map(size, &files);
        m.add_history(
            2,
            vec![HistoryEntry {
                parent: 1,
                switch: Lsn(7 * size + 0x60),
            }],
        );
        m
    }

    #[test]
    fn no_false_gap_across_a_switch_for_any_segment_size() {
        for size in [MB, 16 * MB, 64 * MB, 1024 * MB] {
            let m = failover(size);
            let (exp, missing) = m.expected(3, None);
            assert_eq!(
                exp,
                [
                    Expected {
                        timeline: 1,
                        lo: 3,
                        hi: 6
                    },
                    Expected {
                        timeline: 2,
                        lo: 7,
                        hi: 12
                    }
                ],
                "{size}"
            );
            assert!(missing.is_empty());
            assert!(m.gaps(&exp).is_empty());
            // The window follows timeline 2 from the switch on.
            let lineage = m.lineage(m.newest_from(1));
            assert_eq!(m.timeline_at(&lineage, 6), 1);
            assert_eq!(m.timeline_at(&lineage, 7), 2);
            assert_eq!(m.contiguous_end(&lineage, 3, |_| false), Some((2, 12)));
        }
    }

    #[test]
    fn gaps_missing_history_and_needed_parent_segments() {
        let mut m = failover(MB);
        // Timeline 1's segment 5 removed: one gap of one segment.
        m.segments.get_mut(&1).unwrap().remove(&5);
        let (exp, _) = m.expected(3, None);
        assert_eq!(
            m.gaps(&exp),
            [Gap {
                timeline: 1,
                from: 5,
                to: 5
            }]
        );
        let lineage = m.lineage(2);
        assert_eq!(m.contiguous_end(&lineage, 3, |_| false), Some((1, 4)));
        // Covered by a backup's own WAL: the run goes on.
        assert_eq!(m.contiguous_end(&lineage, 3, |p| p <= 5), Some((2, 12)));
        // Timeline 1 ended at segment 6 but the archive has only up to 4: 5 and 6 are missing
        // even though nothing of timeline 1 after them is archived.
        m.segments.get_mut(&1).unwrap().remove(&6);
        let (exp, _) = m.expected(3, None);
        assert_eq!(
            m.gaps(&exp),
            [Gap {
                timeline: 1,
                from: 5,
                to: 6
            }]
        );
        // Without 00000002.history: reported, and the newest timeline is not found.
        m.history_files.remove(&2);
        m.histories.remove(&2);
        let (_, missing) = m.expected(3, None);
        assert_eq!(missing, [2]);
        assert_eq!(m.newest_from(1), 1);
    }

    #[test]
    fn a_timeline_that_went_on_after_the_switch_and_unrelated_timelines() {
        let mut m = failover(MB);
        // The old primary went on archiving 7..=9 on timeline 1.
        for n in 7..=9 {
            m.add(&seg(1, n, MB));
        }
        let (exp, _) = m.expected(3, None);
        assert_eq!(
            exp[0],
            Expected {
                timeline: 1,
                lo: 3,
                hi: 9
            }
        );
        assert!(m.gaps(&exp).is_empty());
        // Timeline 3, a restore of timeline 1 at segment 8 (not a descendant of 2).
        m.add(&WalFileName::history(Timeline(3)));
        m.add_history(
            3,
            vec![HistoryEntry {
                parent: 1,
                switch: Lsn(8 * MB),
            }],
        );
        m.add(&seg(3, 9, MB));
        let bases: BTreeSet<u32> = [2].into();
        let (exp, missing) = m.expected(8, Some(&bases));
        assert_eq!(
            exp,
            [Expected {
                timeline: 2,
                lo: 8,
                hi: 12
            }]
        );
        assert!(missing.is_empty());
        let bases: BTreeSet<u32> = [1].into();
        let (exp, _) = m.expected(3, Some(&bases));
        assert_eq!(
            exp.iter().map(|e| e.timeline).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            exp[2],
            Expected {
                timeline: 3,
                lo: 8,
                hi: 9
            }
        );
        assert_eq!(
            m.gaps(&exp),
            [Gap {
                timeline: 3,
                from: 8,
                to: 8
            }]
        );
        assert_eq!(m.newest_from(1), 3);
        assert!(m.descends_from(3, 1) && !m.descends_from(3, 2));
    }
}

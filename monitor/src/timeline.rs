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

use pitr_common::wal::{Lsn, SegNo, SegSize, Timeline, WalFileName, WalKind};

pub use pitr_common::history::{parse_history, HistoryEntry};

/// The timelines a target timeline descends through: each ancestor with the location where it
/// ended, the target last with none.
pub type Lineage = Vec<(Timeline, Option<Lsn>)>;

/// Segments that must be present on one timeline: `lo..=hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The timeline.
    pub timeline: Timeline,
    /// First segment.
    pub lo: SegNo,
    /// Last segment.
    pub hi: SegNo,
}

/// A run of missing segments on one timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The timeline.
    pub timeline: Timeline,
    /// First missing segment.
    pub from: SegNo,
    /// Last missing segment.
    pub to: SegNo,
}

/// Segment numbers per timeline.
type Positions = BTreeMap<Timeline, BTreeSet<SegNo>>;

/// What an archive holds, by position.
#[derive(Debug, Clone)]
pub struct WalMap {
    seg_size: SegSize,
    segments: Positions,
    partials: Positions,
    history_files: BTreeSet<Timeline>,
    histories: BTreeMap<Timeline, Vec<HistoryEntry>>,
}

/// The segment after `n`.
fn succ(n: SegNo) -> SegNo {
    SegNo(n.0 + 1)
}

/// The segment a WAL file name is about: the segment itself, a `.partial`'s or a `.backup`'s;
/// none for a `.history` file.
pub fn segment_of(name: &WalFileName) -> Option<WalFileName> {
    match name.kind {
        WalKind::History => None,
        _ => Some(WalFileName {
            kind: WalKind::Segment,
            ..*name
        }),
    }
}

impl WalMap {
    /// An empty map for segments of `seg_size`.
    pub fn new(seg_size: SegSize) -> WalMap {
        WalMap {
            seg_size,
            segments: Positions::new(),
            partials: Positions::new(),
            history_files: BTreeSet::new(),
            histories: BTreeMap::new(),
        }
    }

    /// The segment size.
    pub fn seg_size(&self) -> SegSize {
        self.seg_size
    }

    /// Records a file of the listing; names out of range at this segment size are ignored
    /// (the caller reports them).
    pub fn add(&mut self, name: &WalFileName) {
        let tli = name.timeline;
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
                map.entry(tli).or_default().insert(segno);
            }
            WalKind::Backup { .. } => {}
        }
    }

    /// Records the parsed content of `tli`'s history file.
    pub fn add_history(&mut self, tli: Timeline, entries: Vec<HistoryEntry>) {
        self.histories.insert(tli, entries);
    }

    /// Whether the complete segment `segno` of `tli` is there.
    pub fn has_segment(&self, tli: Timeline, segno: SegNo) -> bool {
        self.segments.get(&tli).is_some_and(|s| s.contains(&segno))
    }

    /// Whether `tli`'s history file is there.
    pub fn has_history(&self, tli: Timeline) -> bool {
        self.history_files.contains(&tli)
    }

    /// The oldest segment of any timeline.
    pub fn oldest_segno(&self) -> Option<SegNo> {
        self.segments
            .values()
            .chain(self.partials.values())
            .filter_map(|s| s.first().copied())
            .min()
    }

    /// Timeline numbers with WAL (segments or `.partial`) or a history file.
    pub fn timelines(&self) -> BTreeSet<Timeline> {
        self.segments
            .keys()
            .chain(self.partials.keys())
            .chain(self.history_files.iter())
            .copied()
            .collect()
    }

    /// PostgreSQL's `findNewestTimeLine` from `tli`: the last of `tli+1`, `tli+2`, ... whose
    /// history file is there without a hole.
    pub fn newest_from(&self, tli: Timeline) -> Timeline {
        let mut t = tli;
        while let Some(next) = t.0.checked_add(1).map(Timeline) {
            if !self.has_history(next) {
                break;
            }
            t = next;
        }
        t
    }

    /// The ancestry of `tli` from its history (just `tli` when it has none we could read).
    pub fn lineage(&self, tli: Timeline) -> Lineage {
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
    pub fn timeline_at(&self, lineage: &Lineage, segno: SegNo) -> Timeline {
        for (tli, end) in lineage {
            match end {
                Some(e) if segno < e.segno(self.seg_size) => return *tli,
                Some(_) => {}
                None => return *tli,
            }
        }
        lineage.last().map_or(Timeline(1), |(t, _)| *t)
    }

    /// Walks `lineage` from segment `from` while each segment is in the archive or `covered`
    /// says it is elsewhere (a backup's own WAL): the timeline and number of the last one of
    /// the unbroken run, `None` when `from` itself is missing.
    pub fn contiguous_end(
        &self,
        lineage: &Lineage,
        from: SegNo,
        covered: impl Fn(SegNo) -> bool,
    ) -> Option<(Timeline, SegNo)> {
        let mut last = None;
        let mut p = from;
        loop {
            let tli = self.timeline_at(lineage, p);
            if !(self.has_segment(tli, p) || covered(p)) {
                return last;
            }
            last = Some((tli, p));
            p = succ(p);
        }
    }

    /// Whether `ancestor` is `tli` or in its history.
    pub fn descends_from(&self, tli: Timeline, ancestor: Timeline) -> bool {
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
    pub fn expected(
        &self,
        start: SegNo,
        bases: Option<&BTreeSet<Timeline>>,
    ) -> (Vec<Expected>, Vec<Timeline>) {
        let first = Timeline(1);
        let has_wal_from = |t: Timeline| {
            let after =
                |m: &Positions| m.get(&t).is_some_and(|s| s.range(start..).next().is_some());
            after(&self.segments) || after(&self.partials)
        };
        let relevant = |t: Timeline| match bases {
            None => true,
            Some(b) => {
                (!self.histories.contains_key(&t) && t > first)
                    || b.iter().any(|base| self.descends_from(t, *base))
            }
        };
        let mut needed: BTreeSet<Timeline> = self
            .timelines()
            .into_iter()
            .filter(|t| has_wal_from(*t) && relevant(*t))
            .collect();
        // How far each needed timeline's ancestors are needed.
        let mut needed_end: BTreeMap<Timeline, SegNo> = BTreeMap::new();
        let mut missing_history = BTreeSet::new();
        for &t in &needed.clone() {
            if t > first && !self.has_history(t) {
                missing_history.insert(t);
            }
            for (a, end) in self.lineage(t) {
                let Some(end) = end else { continue };
                let last = end.segno(self.seg_size).0.checked_sub(1).map(SegNo);
                if let Some(last) = last.filter(|l| *l >= start) {
                    let e = needed_end.entry(a).or_insert(last);
                    *e = (*e).max(last);
                    if relevant(a) || bases.is_some_and(|b| b.contains(&a)) {
                        needed.insert(a);
                    }
                }
                if a > first && !self.has_history(a) {
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
                .map(|e| e.switch.segno(self.seg_size));
            let first_present = [&self.segments, &self.partials]
                .iter()
                .filter_map(|m| m.get(&t).and_then(|s| s.range(start..).next().copied()))
                .min();
            let lo = match began {
                Some(b) => b.max(start),
                // A backup's own timeline without a history file (timeline 1) is needed from
                // the oldest backup's start, whether or not its first segments are there.
                None if bases.is_some_and(|b| b.contains(&t)) => start,
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
                        to: SegNo(p.0 - 1),
                    });
                }
                next = succ(p);
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
    const MB: u64 = 1 << 20;

    fn seg(tli: u32, n: u64, size: u64) -> WalFileName {
        WalFileName::segment(Timeline(tli), SegNo(n), SegSize::new(size).unwrap())
    }

    fn exp(timeline: u32, lo: u64, hi: u64) -> Expected {
        Expected {
            timeline: Timeline(timeline),
            lo: SegNo(lo),
            hi: SegNo(hi),
        }
    }

    fn gap(timeline: u32, from: u64, to: u64) -> Gap {
        Gap {
            timeline: Timeline(timeline),
            from: SegNo(from),
            to: SegNo(to),
        }
    }

    fn at(tli: u32, n: u64) -> Option<(Timeline, SegNo)> {
        Some((Timeline(tli), SegNo(n)))
    }

    fn tl(t: u32) -> Timeline {
        Timeline(t)
    }

    fn map(size: u64, files: &[WalFileName]) -> WalMap {
        let mut m = WalMap::new(SegSize::new(size).unwrap());
        for f in files {
            m.add(f);
        }
        m
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
            tl(2),
            vec![HistoryEntry {
                parent: tl(1),
                switch: Lsn(7 * size + 0x60),
            }],
        );
        m
    }

    #[test]
    fn no_false_gap_across_a_switch_for_any_segment_size() {
        for size in [MB, 16 * MB, 64 * MB, 1024 * MB] {
            let m = failover(size);
            let (expected, missing) = m.expected(SegNo(3), None);
            assert_eq!(expected, [exp(1, 3, 6), exp(2, 7, 12)], "{size}");
            assert!(missing.is_empty());
            assert!(m.gaps(&expected).is_empty());
            // The window follows timeline 2 from the switch on.
            let lineage = m.lineage(m.newest_from(tl(1)));
            assert_eq!(m.timeline_at(&lineage, SegNo(6)), tl(1));
            assert_eq!(m.timeline_at(&lineage, SegNo(7)), tl(2));
            assert_eq!(m.contiguous_end(&lineage, SegNo(3), |_| false), at(2, 12));
        }
    }

    #[test]
    fn gaps_missing_history_and_needed_parent_segments() {
        let mut m = failover(MB);
        // Timeline 1's segment 5 removed: one gap of one segment.
        m.segments.get_mut(&tl(1)).unwrap().remove(&SegNo(5));
        let (expected, _) = m.expected(SegNo(3), None);
        assert_eq!(m.gaps(&expected), [gap(1, 5, 5)]);
        let lineage = m.lineage(tl(2));
        assert_eq!(m.contiguous_end(&lineage, SegNo(3), |_| false), at(1, 4));
        // Covered by a backup's own WAL: the run goes on.
        assert_eq!(
            m.contiguous_end(&lineage, SegNo(3), |p| p <= SegNo(5)),
            at(2, 12)
        );
        // Timeline 1 ended at segment 6 but the archive has only up to 4: 5 and 6 are missing
        // even though nothing of timeline 1 after them is archived.
        m.segments.get_mut(&tl(1)).unwrap().remove(&SegNo(6));
        let (expected, _) = m.expected(SegNo(3), None);
        assert_eq!(m.gaps(&expected), [gap(1, 5, 6)]);
        // Without 00000002.history: reported, and the newest timeline is not found.
        m.history_files.remove(&tl(2));
        m.histories.remove(&tl(2));
        let (_, missing) = m.expected(SegNo(3), None);
        assert_eq!(missing, [tl(2)]);
        assert_eq!(m.newest_from(tl(1)), tl(1));
    }

    /// A backup on timeline 1 starting at segment 1, before the first archived one: segments 1
    /// and 2 are missing (verify said OK, taking the first present segment for the start),
    /// and with every segment of timeline 1 gone, all of it up to the switch.
    #[test]
    fn a_backups_timeline_is_needed_from_its_start_not_its_first_archived_segment() {
        let mut m = failover(MB);
        let bases: BTreeSet<Timeline> = [tl(1)].into();
        let (expected, _) = m.expected(SegNo(1), Some(&bases));
        assert_eq!(m.gaps(&expected), [gap(1, 1, 2)]);
        m.segments.remove(&tl(1));
        let (expected, _) = m.expected(SegNo(1), Some(&bases));
        assert_eq!(m.gaps(&expected), [gap(1, 1, 6)]);
    }

    #[test]
    fn a_timeline_that_went_on_after_the_switch_and_unrelated_timelines() {
        let mut m = failover(MB);
        // The old primary went on archiving 7..=9 on timeline 1.
        for n in 7..=9 {
            m.add(&seg(1, n, MB));
        }
        let (expected, _) = m.expected(SegNo(3), None);
        assert_eq!(expected[0], exp(1, 3, 9));
        assert!(m.gaps(&expected).is_empty());
        // Timeline 3, a restore of timeline 1 at segment 8 (not a descendant of 2).
        m.add(&WalFileName::history(Timeline(3)));
        m.add_history(
            tl(3),
            vec![HistoryEntry {
                parent: tl(1),
                switch: Lsn(8 * MB),
            }],
        );
        m.add(&seg(3, 9, MB));
        let bases: BTreeSet<Timeline> = [tl(2)].into();
        let (expected, missing) = m.expected(SegNo(8), Some(&bases));
        assert_eq!(expected, [exp(2, 8, 12)]);
        assert!(missing.is_empty());
        let bases: BTreeSet<Timeline> = [tl(1)].into();
        let (expected, _) = m.expected(SegNo(3), Some(&bases));
        assert_eq!(
            expected.iter().map(|e| e.timeline).collect::<Vec<_>>(),
            [tl(1), tl(2), tl(3)]
        );
        assert_eq!(expected[2], exp(3, 8, 9));
        assert_eq!(m.gaps(&expected), [gap(3, 8, 8)]);
        assert_eq!(m.newest_from(tl(1)), tl(3));
        assert!(m.descends_from(tl(3), tl(1)) && !m.descends_from(tl(3), tl(2)));
    }
}

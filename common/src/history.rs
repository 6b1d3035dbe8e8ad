//! Timeline history files (`TTTTTTTT.history`) and the WAL a stretch of locations needs across
//! timeline switches.
//!
//! A history file lists every ancestor of its timeline with the WAL location where it ended
//! (`parentTLI <TAB> X/Y <TAB> reason`, PostgreSQL's `timeline.c`). Recovery reads a segment
//! from the newest timeline of its target's lineage that had begun by that segment
//! (`XLogFileReadAnyTLI`): the segment holding a switch is read from the new timeline, whose
//! copy holds the old timeline's WAL up to the switch. [`segments`] names the files the same
//! way, so that a backup of a standby that followed a switch while it ran names the files
//! recovery will ask for. Pure functions; no I/O.

use std::collections::BTreeMap;
use std::fmt;

use crate::wal::{Lsn, SegSize, Timeline, WalFileName};

/// One line of a history file: timeline `parent` ended at `switch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The ancestor timeline.
    pub parent: Timeline,
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
        let parent = fields
            .next()
            .and_then(|f| f.parse().ok())
            .map(Timeline)
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

/// One timeline's part of a stretch of WAL: `timeline` from `start` up to (not including)
/// `end`. PostgreSQL's backup manifest lists a backup's `WAL-Ranges` the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The timeline.
    pub timeline: Timeline,
    /// The first location.
    pub start: Lsn,
    /// The location after the last.
    pub end: Lsn,
}

/// WAL from `start` on timeline `from` to `stop` cannot be followed to `newest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    /// `from` is not `newest` nor one of its ancestors.
    #[error("timeline {from} is not an ancestor of timeline {newest}")]
    NotAncestor {
        /// Where the stretch begins.
        from: u32,
        /// The newest timeline.
        newest: u32,
    },
    /// `start` lies beyond the location where `from` ended.
    #[error("{start} is beyond the end of timeline {from} at {end}")]
    AfterEnd {
        /// Where the stretch begins.
        start: Lsn,
        /// Its timeline.
        from: u32,
        /// Where that timeline ended.
        end: Lsn,
    },
}

/// The timelines WAL from `start` (on timeline `from`) up to `stop` passes through on the way
/// to timeline `newest`, whose history is `history` (empty for timeline 1), oldest first: one
/// span per timeline, the first beginning at `start`, each later one at its switch, the last
/// ending at `stop`. A timeline that ended exactly at `stop` is the last.
pub fn spans(
    history: &[HistoryEntry],
    newest: Timeline,
    from: Timeline,
    start: Lsn,
    stop: Lsn,
) -> Result<Vec<Span>, SpanError> {
    // The lineage: each timeline with where it began and where it ended (none for `newest`).
    let mut lineage: Vec<(Timeline, Lsn, Option<Lsn>)> = Vec::new();
    let mut begin = Lsn(0);
    for e in history {
        lineage.push((e.parent, begin, Some(e.switch)));
        begin = e.switch;
    }
    lineage.push((newest, begin, None));
    let first = lineage
        .iter()
        .position(|(t, _, _)| *t == from)
        .ok_or(SpanError::NotAncestor {
            from: from.0,
            newest: newest.0,
        })?;
    if let Some(end) = lineage[first].2.filter(|end| start > *end) {
        return Err(SpanError::AfterEnd {
            start,
            from: from.0,
            end,
        });
    }
    let mut out = Vec::new();
    for (i, &(timeline, begin, end)) in lineage.iter().enumerate().skip(first) {
        let span_start = if i == first { start } else { begin };
        let span_end = end.map_or(stop, |e| e.min(stop));
        out.push(Span {
            timeline,
            start: span_start,
            end: span_end.max(span_start),
        });
        if end.is_none_or(|e| stop <= e) {
            break;
        }
    }
    Ok(out)
}

/// The segments recovery reads for `spans` (oldest first, as [`spans`] gives them): each
/// span's segments, from the one holding its start through the one holding the byte before
/// its end (PostgreSQL's `XLByteToPrevSeg`; at least the start's own), a segment that two
/// spans share taken from the later timeline. In position order.
pub fn segments(spans: &[Span], seg_size: SegSize) -> Vec<WalFileName> {
    let mut by_position: BTreeMap<u64, Timeline> = BTreeMap::new();
    for s in spans {
        let first = s.start.segno(seg_size).0;
        let last = Lsn(s.end.0.max(s.start.0 + 1) - 1).segno(seg_size).0;
        for segno in first..=last {
            by_position.insert(segno, s.timeline);
        }
    }
    by_position
        .into_iter()
        .map(|(segno, tli)| WalFileName::segment(tli, crate::wal::SegNo(segno), seg_size))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tl(t: u32) -> Timeline {
        Timeline(t)
    }

    fn names(v: &[WalFileName]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
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
                    parent: tl(1),
                    switch: Lsn(0x0300_0060)
                },
                HistoryEntry {
                    parent: tl(2),
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

    /// One timeline: the span is the whole stretch, the segments those `needed_segments` gave.
    #[test]
    fn one_timeline_is_one_span() {
        let size = SegSize::new(16 << 20).unwrap();
        let s = spans(&[], tl(1), tl(1), Lsn(0x0200_0028), Lsn(0x0400_0100)).unwrap();
        assert_eq!(
            s,
            [Span {
                timeline: tl(1),
                start: Lsn(0x0200_0028),
                end: Lsn(0x0400_0100)
            }]
        );
        assert_eq!(
            names(&segments(&s, size)),
            [
                "000000010000000000000002",
                "000000010000000000000003",
                "000000010000000000000004"
            ]
        );
        // A stop at a segment's first byte needs nothing of that segment.
        let s = spans(&[], tl(1), tl(1), Lsn(0x0200_0028), Lsn(0x0400_0000)).unwrap();
        assert_eq!(segments(&s, size).len(), 2);
        // Start and stop in one place: the start's segment.
        let s = spans(&[], tl(1), tl(1), Lsn(0x0200_0028), Lsn(0x0200_0028)).unwrap();
        assert_eq!(names(&segments(&s, size)), ["000000010000000000000002"]);
    }

    /// A standby backed up from segment 2 of timeline 1 followed a switch to timeline 2 in
    /// segment 5 and stopped in segment 7: timeline 1's segments 2 to 4, timeline 2's 5 to 7
    /// (its segment 5 holds timeline 1's WAL up to the switch), as recovery reads them.
    #[test]
    fn a_switch_in_the_middle_takes_the_switch_segment_from_the_new_timeline() {
        let size = SegSize::new(16 << 20).unwrap();
        let history = parse_history("1\t0/5000A08\tno recovery target specified\n").unwrap();
        let s = spans(&history, tl(2), tl(1), Lsn(0x0200_0028), Lsn(0x0700_0100)).unwrap();
        assert_eq!(
            s,
            [
                Span {
                    timeline: tl(1),
                    start: Lsn(0x0200_0028),
                    end: Lsn(0x0500_0A08)
                },
                Span {
                    timeline: tl(2),
                    start: Lsn(0x0500_0A08),
                    end: Lsn(0x0700_0100)
                }
            ]
        );
        assert_eq!(
            names(&segments(&s, size)),
            [
                "000000010000000000000002",
                "000000010000000000000003",
                "000000010000000000000004",
                "000000020000000000000005",
                "000000020000000000000006",
                "000000020000000000000007"
            ]
        );
        // Two switches, 1 to 2 in segment 5 and 2 to 3 in segment 6, seen from timeline 4's
        // history; the backup stopped on timeline 3. Timeline 4 is not reached.
        let history = parse_history("1\t0/5000A08\tx\n2\t0/6000100\ty\n3\t0/9000000\tz\n").unwrap();
        let s = spans(&history, tl(4), tl(1), Lsn(0x0200_0028), Lsn(0x0700_0100)).unwrap();
        assert_eq!(
            s.iter().map(|s| s.timeline.0).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(
            names(&segments(&s, size)),
            [
                "000000010000000000000002",
                "000000010000000000000003",
                "000000010000000000000004",
                "000000020000000000000005",
                "000000030000000000000006",
                "000000030000000000000007"
            ]
        );
        // A stop exactly at the switch ends on the old timeline.
        let history = parse_history("1\t0/5000A08\tx\n").unwrap();
        let s = spans(&history, tl(2), tl(1), Lsn(0x0200_0028), Lsn(0x0500_0A08)).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(
            names(&segments(&s, size)).last().unwrap(),
            "000000010000000000000005"
        );
        // A stretch that begins on the newest timeline itself.
        let s = spans(&history, tl(2), tl(2), Lsn(0x0600_0028), Lsn(0x0700_0100)).unwrap();
        assert_eq!(
            names(&segments(&s, size)),
            ["000000020000000000000006", "000000020000000000000007"]
        );
    }

    #[test]
    fn a_start_off_the_lineage_is_refused() {
        let history = parse_history("1\t0/5000A08\tx\n").unwrap();
        assert_eq!(
            spans(&history, tl(3), tl(2), Lsn(0x0600_0000), Lsn(0x0700_0000))
                .unwrap_err()
                .to_string(),
            "timeline 2 is not an ancestor of timeline 3"
        );
        assert_eq!(
            spans(&history, tl(2), tl(1), Lsn(0x0600_0000), Lsn(0x0700_0000))
                .unwrap_err()
                .to_string(),
            "0/6000000 is beyond the end of timeline 1 at 0/5000A08"
        );
    }
}

//! The backup's WAL: every segment from the start to the stop location, waited for, verified
//! and archived as `pg_wal/<segment>` entries, so that extracting the WAL archive into the
//! restored data directory puts the WAL where PostgreSQL looks for it without a
//! `restore_command`.
//!
//! The segments come from the `--xlogs` directory that pitr-archive's `--dst-backup` fills
//! while the backup runs, or from a WAL archive (`--wal-source`). Each one is decompressed and
//! its page header checked against its name and the cluster's system identifier before it is
//! archived. A segment that does not show up within `--wal-timeout` (counted afresh after each
//! segment found) is an error that names it. Segments are read one at a time (a segment, 16 MiB
//! by default, is the unit of memory here).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use pitr_common::compress::Codec;
use pitr_common::exit::Failure;
use pitr_common::source;
use pitr_common::wal::{Lsn, SegSize, Timeline, WalFileName};
use pitr_common::{log_info, log_warning};

use crate::args::WalInput;
use crate::session::check_interrupt;

/// How often a missing segment is looked for (a few `stat`s: the end of the backup waits on
/// it, usually for the segment the archiver is writing at that moment).
const POLL: Duration = Duration::from_millis(50);
/// How often the wait is logged.
const WAIT_LOG: Duration = Duration::from_secs(10);

/// The segments holding WAL from `start` up to (not including) `stop` on `timeline`: the
/// start segment through the one holding the byte before `stop` (PostgreSQL's
/// `XLByteToPrevSeg` for the stop file).
pub fn needed_segments(
    tli: Timeline,
    start: Lsn,
    stop: Lsn,
    seg_size: SegSize,
) -> anyhow::Result<Vec<WalFileName>> {
    let first = WalFileName::containing(tli, start, seg_size);
    let last = WalFileName::containing(tli, Lsn(stop.0.max(start.0 + 1) - 1), seg_size);
    let mut out = vec![first];
    let mut cur = first;
    while cur != last {
        cur = cur.next(seg_size)?;
        out.push(cur);
    }
    Ok(out)
}

fn dir_and_codec(input: &WalInput) -> Option<(PathBuf, Codec)> {
    match input {
        WalInput::Xlogs(d) => Some((d.clone(), Codec::None)),
        WalInput::Source(l) => l.as_dir().map(|d| (d.to_path_buf(), l.codec)),
        WalInput::Skip => None,
    }
}

/// Waits for each segment of `names`, verifies it and appends it to `tar`, with the history
/// file of their timeline; returns the number of WAL bytes archived. `pg_wal` is the server's
/// WAL directory, where a history file archived long before the backup (at a failover) is
/// still kept.
pub fn collect<W: Write>(
    input: &WalInput,
    names: &[WalFileName],
    system_identifier: u64,
    timeout: Duration,
    pg_wal: &Path,
    tar: &mut tar::Builder<W>,
) -> anyhow::Result<u64> {
    let Some((dir, codec)) = dir_and_codec(input) else {
        return Ok(0);
    };
    let mut total = 0;
    for name in names {
        let found = wait_for(&dir, codec, name, timeout, input)?;
        let data = source::read_verified(&found, name, system_identifier).map_err(|e| {
            anyhow::Error::from(e).context(
                Failure::new(format!("WAL segment {name} in {} is not usable", dir.display()))
                    .hint("the archived copy is damaged or belongs to another cluster; the backup cannot be completed from it"),
            )
        })?;
        append(tar, name, &data, &found)?;
        total += data.len() as u64;
    }
    // Beyond timeline 1 the history file lets a recovery with restore_command follow the
    // timeline; it is taken without waiting from the WAL source, else from the server's
    // pg_wal (a history file is archived once, at the promotion, so `--xlogs` of a later
    // backup never sees it; the server keeps it).
    if let Some(first) = names.first() {
        if first.timeline.0 > 1 {
            let h = WalFileName::history(first.timeline);
            let found = match source::find_in(&dir, codec, &h)? {
                Some(found) => Some(found),
                None => source::find_in(pg_wal, Codec::None, &h)?,
            };
            match found {
                Some(found) => {
                    let data = source::read_verified(&found, &h, system_identifier)?;
                    append(tar, &h, &data, &found)?;
                }
                None => log_warning!(
                    "{h} is neither in {} nor in {}; the backup holds no history of timeline {}",
                    dir.display(),
                    pg_wal.display(),
                    first.timeline.0
                ),
            }
        }
    }
    Ok(total)
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &WalFileName,
    data: &[u8],
    found: &source::Found,
) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(u64::try_from(pitr_common::manifest::unix_seconds(found.mtime)).unwrap_or(0));
    // The archived copy belongs to the server's user (archive_command wrote it): so does the
    // restored file.
    if let Ok(m) = std::fs::metadata(&found.path) {
        h.set_uid(u64::from(m.uid()));
        h.set_gid(u64::from(m.gid()));
    }
    let path = Path::new(pitr_common::pg::PG_WAL).join(name.to_string());
    tar.append_data(&mut h, &path, data)
        .with_context(|| format!("archiving {name}"))
}

fn wait_for(
    dir: &Path,
    codec: Codec,
    name: &WalFileName,
    timeout: Duration,
    input: &WalInput,
) -> anyhow::Result<source::Found> {
    let started = Instant::now();
    let mut logged = started;
    loop {
        check_interrupt()?;
        if let Some(f) = source::find_in(dir, codec, name)? {
            return Ok(f);
        }
        if started.elapsed() >= timeout {
            let hint = match input {
                WalInput::Xlogs(_) => format!(
                    "archive_command must run pitr-archive with --dst-backup {}; check the server log for archiving errors, or raise --wal-timeout",
                    dir.display()
                ),
                _ => "check that archiving works (pg_stat_archiver, the server log) and that this is the cluster's archive, or raise --wal-timeout".to_string(),
            };
            return Err(Failure::new(format!(
                "WAL segment {name} did not appear in {} within {} s",
                dir.display(),
                timeout.as_secs()
            ))
            .hint(hint)
            .into());
        }
        if logged.elapsed() >= WAIT_LOG {
            logged = Instant::now();
            log_info!(
                "waiting for WAL segment {name} in {} ({} s so far)",
                dir.display(),
                started.elapsed().as_secs()
            );
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn segments_from_start_to_the_byte_before_stop() {
        let names = |a, b| -> Vec<String> {
            needed_segments(Timeline(1), Lsn(a), Lsn(b), SegSize::DEFAULT)
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(
            names(0x0200_0028, 0x0200_0100),
            ["000000010000000000000002"]
        );
        // A stop exactly at a segment boundary ends in the previous segment.
        assert_eq!(
            names(0x0200_0028, 0x0400_0000),
            ["000000010000000000000002", "000000010000000000000003"]
        );
        assert_eq!(
            names(0xFF_FF00_0028, 0x100_0000_0100).len(),
            2,
            "rolls over the log boundary"
        );
    }
}

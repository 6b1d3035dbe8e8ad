//! The backup's WAL: every segment from the start to the stop location, waited for, verified
//! and archived as `pg_wal/<segment>` entries, so that extracting the WAL archive into the
//! restored data directory puts the WAL where PostgreSQL looks for it without a
//! `restore_command`.
//!
//! The segments come from the `--xlogs` directory that pitr-archive's `--dst-backup` fills
//! while the backup runs, or from a WAL archive (`--wal-source`, a directory or an object
//! store). Each one is decompressed and
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
use pitr_common::history::{parse_history, Span};
use pitr_common::location::Target;
use pitr_common::objstore::{Settings, Store};
use pitr_common::wal::{Lsn, Timeline, WalFileName};
use pitr_common::{log_info, log_warning};
use pitr_common::{objarchive, source};

use crate::args::WalInput;
use crate::session::check_interrupt;

/// How often a missing segment is looked for (a few `stat`s: the end of the backup waits on
/// it, usually for the segment the archiver is writing at that moment).
const POLL: Duration = Duration::from_millis(50);
/// How often the wait is logged.
const WAIT_LOG: Duration = Duration::from_secs(10);

/// The timelines the backup's WAL passes through from `start` (on timeline `from`, the
/// backup label's) to `stop`, oldest first. A standby follows its primary across a timeline
/// switch (a failover upstream of it) while it is backed up, and recovery then reads the
/// segments from the switch on from the new timeline: naming them all on the start's timeline
/// waited for files that never come. A standby's pg_control, read after the stop, names the
/// timeline it has reached (`minRecoveryPointTLI`: the stop's own, PostgreSQL's `stoptli`, or a
/// later one); past `from`, that timeline's history file (the standby's `pg_wal`, else the WAL
/// source) says where each switch was. A primary stays on its timeline while it is backed up
/// (a standby promoted meanwhile fails `pg_backup_stop`).
pub fn spans(
    input: &WalInput,
    s3: Option<&Settings>,
    data_dir: &Path,
    standby: bool,
    (from, start, stop): (Timeline, Lsn, Lsn),
    system_identifier: u64,
) -> anyhow::Result<Vec<Span>> {
    let one = vec![Span {
        timeline: from,
        start,
        end: stop,
    }];
    if !standby {
        return Ok(one);
    }
    let control = pitr_common::controldata::read(data_dir, None)
        .with_context(|| format!("reading pg_control of {}", data_dir.display()))?;
    let newest = control.min_recovery_point_timeline;
    if newest.0 <= from.0 {
        return Ok(one);
    }
    let h = WalFileName::history(newest);
    let pg_wal = data_dir.join(pitr_common::pg::PG_WAL);
    let text = match std::fs::read(pg_wal.join(h.to_string())) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => history_from_source(input, s3, &h, system_identifier)?
            .ok_or_else(|| {
                Failure::new(format!(
                    "the standby reached timeline {newest} during the backup, but {h} is neither in {} nor in the WAL source",
                    pg_wal.display()
                ))
                .hint("archive the history file of the new timeline (the new primary's archive_command does), then back up again")
            })?,
        Err(e) => return Err(pitr_common::fs::IoError::new("reading", pg_wal.join(h.to_string()), e).into()),
    };
    let bad = |reason: String| {
        Failure::new(format!("{h}: {reason}"))
            .hint("the standby's timeline history does not lead from the backup's start to its stop; back up again")
    };
    let history = parse_history(&String::from_utf8_lossy(&text)).map_err(|e| bad(e.to_string()))?;
    let spans = pitr_common::history::spans(&history, newest, from, start, stop)
        .map_err(|e| bad(e.to_string()))?;
    if let Some(last) = spans.last().filter(|s| s.timeline != from) {
        log_info!(
            "the standby followed a switch to timeline {} during the backup; its WAL from {} is on that timeline",
            last.timeline,
            last.start
        );
    }
    Ok(spans)
}

/// History file `h` from the WAL source, when there is one and it holds it.
fn history_from_source(
    input: &WalInput,
    s3: Option<&Settings>,
    h: &WalFileName,
    system_identifier: u64,
) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(src) = Source::open(input, s3)? else {
        return Ok(None);
    };
    src.check_marker(system_identifier)?;
    match src.find(h)? {
        Some(found) => Ok(Some(src.read_verified(&found, h, system_identifier)?)),
        None => Ok(None),
    }
}

/// Where the segments are read from: a directory (`--xlogs`, or `--wal-source DIR`) or an
/// object-store archive (`--wal-source s3://…`).
enum Source {
    Dir { dir: PathBuf, codec: Codec },
    Store { store: Box<Store>, codec: Codec },
}

/// A WAL file found in a [`Source`].
enum Found {
    File(source::Found),
    Object(objarchive::ObjectFound),
}

impl Source {
    /// The source of `input`, or `None` for `--skip-xlogs`.
    fn open(input: &WalInput, s3: Option<&Settings>) -> anyhow::Result<Option<Source>> {
        Ok(match input {
            WalInput::Xlogs(d) => Some(Source::Dir {
                dir: d.clone(),
                codec: Codec::None,
            }),
            WalInput::Source(l) => match (&l.target, s3) {
                (Target::S3(url), Some(settings)) => {
                    let store = Store::open(url, settings)
                        .map_err(|e| e.failure(format!("opening the WAL archive {url}")))?;
                    Some(Source::Store {
                        store: Box::new(store),
                        codec: l.codec,
                    })
                }
                _ => l.as_dir().map(|d| Source::Dir {
                    dir: d.to_path_buf(),
                    codec: l.codec,
                }),
            },
            WalInput::Skip => None,
        })
    }

    /// The source's cluster marker, if it has one, must name `system_identifier`, as for
    /// pitr-restore: segments are checked against the system one by one anyway, but a
    /// `.history` file is text and would go into the set from another cluster's archive.
    fn check_marker(&self, system_identifier: u64) -> anyhow::Result<()> {
        let checked = match self {
            Source::Dir { dir, .. } => source::check_dir_marker(dir, system_identifier),
            Source::Store { store, .. } => objarchive::check_marker(store, system_identifier),
        };
        checked.map_err(|e| {
            anyhow::Error::from(e).context(
                Failure::new(format!(
                    "the WAL source {} is not this cluster's",
                    self.shown()
                ))
                .hint("give --wal-source the archive this cluster's archive_command writes to"),
            )
        })
    }

    /// How messages name it.
    fn shown(&self) -> String {
        match self {
            Source::Dir { dir, .. } => dir.display().to_string(),
            Source::Store { store, .. } => store.url().to_string(),
        }
    }

    fn find(&self, name: &WalFileName) -> anyhow::Result<Option<Found>> {
        Ok(match self {
            Source::Dir { dir, codec } => source::find_in(dir, *codec, name)?.map(Found::File),
            Source::Store { store, codec } => objarchive::find(store, *codec, name)
                .map_err(|e| self.failure(name, e))?
                .map(Found::Object),
        })
    }

    /// The content of `found`, decoded and checked.
    fn read_verified(
        &self,
        found: &Found,
        name: &WalFileName,
        system_identifier: u64,
    ) -> anyhow::Result<Vec<u8>> {
        let read = match (self, found) {
            (_, Found::File(f)) => source::read_verified(f, name, system_identifier),
            (Source::Store { store, .. }, Found::Object(o)) => {
                objarchive::read_verified(store, o, name, system_identifier)
            }
            (Source::Dir { .. }, Found::Object(_)) => {
                anyhow::bail!("{name}: an object found in a directory")
            }
        };
        read.map_err(|e| self.failure(name, e))
    }

    /// A read error as the backup's failure: a store that cannot be reached names its endpoint
    /// and bucket; a copy that does not pass the checks cannot complete the backup.
    fn failure(&self, name: &WalFileName, e: source::Error) -> anyhow::Error {
        let hint = match &e {
            source::Error::Store(s) => s.hint(),
            _ => "the archived copy is damaged or belongs to another cluster; the backup cannot be completed from it".to_string(),
        };
        anyhow::Error::from(e).context(
            Failure::new(format!(
                "WAL segment {name} in {} is not usable",
                self.shown()
            ))
            .hint(hint),
        )
    }
}

impl Found {
    fn mtime(&self) -> std::time::SystemTime {
        match self {
            Found::File(f) => f.mtime,
            Found::Object(o) => o.mtime,
        }
    }

    /// The owner the restored file gets: the archived file's (archive_command wrote it, as
    /// the server's user); for an object, the owner of the server's `pg_wal`.
    fn owner(&self, pg_wal: &Path) -> Option<(u32, u32)> {
        use std::os::unix::fs::MetadataExt;
        let path = match self {
            Found::File(f) => f.path.as_path(),
            Found::Object(_) => pg_wal,
        };
        std::fs::metadata(path).ok().map(|m| (m.uid(), m.gid()))
    }
}

/// Waits for each segment of `names`, verifies it and appends it to `tar`, with the history
/// file of their timeline; returns the number of WAL bytes archived. `pg_wal` is the server's
/// WAL directory, where a history file archived long before the backup (at a failover) is
/// still kept. `s3` reaches a `--wal-source` on an object store.
pub fn collect<W: Write>(
    input: &WalInput,
    s3: Option<&Settings>,
    names: &[WalFileName],
    system_identifier: u64,
    timeout: Duration,
    pg_wal: &Path,
    tar: &mut tar::Builder<W>,
) -> anyhow::Result<u64> {
    let Some(src) = Source::open(input, s3)? else {
        return Ok(0);
    };
    src.check_marker(system_identifier)?;
    let mut total = 0;
    for name in names {
        let found = wait_for(&src, name, timeout, input)?;
        let data = src.read_verified(&found, name, system_identifier)?;
        append(tar, name, &data, &found, pg_wal)?;
        total += data.len() as u64;
    }
    // Beyond timeline 1 the history file lets a recovery with restore_command follow the
    // timeline (each timeline's, when the backup's WAL crosses a switch); it is taken without
    // waiting from the WAL source, else from the server's pg_wal (a history file is archived
    // once, at the promotion, so `--xlogs` of a later backup never sees it; the server keeps
    // it).
    let mut timelines: Vec<Timeline> = names.iter().map(|n| n.timeline).collect();
    timelines.dedup();
    for tli in timelines.into_iter().filter(|t| t.0 > 1) {
        let h = WalFileName::history(tli);
        let local = Source::Dir {
            dir: pg_wal.to_path_buf(),
            codec: Codec::None,
        };
        let found = match src.find(&h)? {
            Some(found) => Some((&src, found)),
            None => local.find(&h)?.map(|f| (&local, f)),
        };
        match found {
            Some((from, found)) => {
                let data = from.read_verified(&found, &h, system_identifier)?;
                append(tar, &h, &data, &found, pg_wal)?;
            }
            None => log_warning!(
                "{h} is neither in {} nor in {}; the backup holds no history of timeline {}",
                src.shown(),
                pg_wal.display(),
                tli.0
            ),
        }
    }
    Ok(total)
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &WalFileName,
    data: &[u8],
    found: &Found,
    pg_wal: &Path,
) -> anyhow::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(0o600);
    h.set_mtime(u64::try_from(pitr_common::manifest::unix_seconds(found.mtime())).unwrap_or(0));
    if let Some((uid, gid)) = found.owner(pg_wal) {
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
    }
    let path = Path::new(pitr_common::pg::PG_WAL).join(name.to_string());
    tar.append_data(&mut h, &path, data)
        .with_context(|| format!("archiving {name}"))
}

fn wait_for(
    src: &Source,
    name: &WalFileName,
    timeout: Duration,
    input: &WalInput,
) -> anyhow::Result<Found> {
    let started = Instant::now();
    let mut logged = started;
    // A LIST per look on an object store: look less often there.
    let poll = match src {
        Source::Dir { .. } => POLL,
        Source::Store { .. } => POLL * 10,
    };
    loop {
        check_interrupt()?;
        if let Some(f) = src.find(name)? {
            return Ok(f);
        }
        if started.elapsed() >= timeout {
            let hint = match input {
                WalInput::Xlogs(_) => format!(
                    "archive_command must run pitr-archive with --dst-backup {}; check the server log for archiving errors, or raise --wal-timeout",
                    src.shown()
                ),
                _ => "check that archiving works (pg_stat_archiver, the server log) and that this is the cluster's archive, or raise --wal-timeout".to_string(),
            };
            return Err(Failure::new(format!(
                "WAL segment {name} did not appear in {} within {} s",
                src.shown(),
                timeout.as_secs()
            ))
            .hint(hint)
            .into());
        }
        if logged.elapsed() >= WAIT_LOG {
            logged = Instant::now();
            log_info!(
                "waiting for WAL segment {name} in {} ({} s so far)",
                src.shown(),
                started.elapsed().as_secs()
            );
        }
        std::thread::sleep(poll);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use pitr_common::wal::SegSize;

    #[test]
    fn segments_from_start_to_the_byte_before_stop() {
        let names = |a, b| -> Vec<String> {
            let one = Span {
                timeline: Timeline(1),
                start: Lsn(a),
                end: Lsn(b),
            };
            pitr_common::history::segments(&[one], SegSize::DEFAULT)
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

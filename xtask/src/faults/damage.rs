//! Damaged archived segments handed to a real warm spare and a real standby.
//!
//! A primary archives into three archives at once (`none`, `gzip`, `zstd`); a base backup is
//! taken, then rows are inserted, one commit per statement, over several full segments. Each
//! scenario copies one archive (hard links), damages one full segment in the middle of that
//! WAL, and starts a copy of the base backup as
//! - a **warm spare**: `recovery.signal`, `restore_command` = pitr-restore waiting with a finish
//!   trigger, `recovery_prefetch = off` (the runbook's); ending recovery before the segment is
//!   repaired is a **false promotion**, and the rows after the damage are lost;
//! - a **warm spare given `--streaming-replication`** (OmniPITR's `-sr` carried over into a
//!   warm spare's restore_command): `recovery.signal`, where status 1 ends recovery, so an
//!   archive in doubt must still stop the server;
//! - a **standby**: `standby.signal`, pitr-restore `--streaming-replication`, no primary.
//!
//! Damage: 4 bytes flipped in the middle of the stored file (for a plain segment a page
//! header), 1 byte flipped at a random place (for a plain segment inside a record's data),
//! the file cut in half, a zero-length file, the same-named segment of another cluster, the
//! segment with every page header's timeline changed to 2, and (compressed forms) a byte
//! flipped before another tool compressed the file. Once the server has reacted (pitr-restore
//! logs an error, PostgreSQL rejects a record, the server promotes or stops), the segment is
//! repaired; the warm spare is then finished with its trigger and the standby promoted once it
//! has replayed everything, and the rows are counted.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pitr_tests::cluster::standby::{RECOVERY_SIGNAL, STANDBY_SIGNAL};
use pitr_tests::{poll_until, Cluster, ClusterOpts};

use super::runner::{self, Ctx};
use super::{Bad, Tally};

const NAME: &str = "damage";

/// WAL page size.
const PAGE: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    FlipMiddle,
    FlipRandom,
    Truncate,
    Empty,
    Foreign,
    Timeline,
    FlipBeforeCompression,
}

impl Damage {
    const ALL: [Damage; 7] = [
        Damage::FlipMiddle,
        Damage::FlipRandom,
        Damage::Truncate,
        Damage::Empty,
        Damage::Foreign,
        Damage::Timeline,
        Damage::FlipBeforeCompression,
    ];

    fn name(self) -> &'static str {
        match self {
            Damage::FlipMiddle => "flip in the middle",
            Damage::FlipRandom => "flip at random",
            Damage::Truncate => "truncated",
            Damage::Empty => "zero length",
            Damage::Foreign => "another cluster's",
            Damage::Timeline => "wrong timeline",
            Damage::FlipBeforeCompression => "flip, then compressed by another tool",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spare {
    Warm,
    /// A warm spare (recovery.signal) whose restore_command has `--streaming-replication`
    /// anyway (OmniPITR's `-sr` carried over): status 1 would end its recovery.
    WarmSr,
    Standby,
}

impl Spare {
    fn name(self) -> &'static str {
        match self {
            Spare::Warm => "warm spare",
            Spare::WarmSr => "warm spare given --streaming-replication",
            Spare::Standby => "standby",
        }
    }
}

const CODECS: [(&str, &str); 3] = [("none", ""), ("gzip", ".gz"), ("zstd", ".zst")];

/// The scenarios: (codec index, damage, spare). The quick form runs a fixed selection that
/// covers every codec, both spares and every damage.
fn scenarios(ctx: &Ctx) -> Vec<(usize, Damage, Spare)> {
    let quick = vec![
        (0, Damage::FlipMiddle, Spare::Warm),
        (0, Damage::FlipRandom, Spare::Warm),
        (1, Damage::FlipMiddle, Spare::Warm),
        (2, Damage::FlipRandom, Spare::Standby),
        (1, Damage::Truncate, Spare::Standby),
        (2, Damage::Foreign, Spare::Warm),
        (0, Damage::Timeline, Spare::Warm),
        (2, Damage::Empty, Spare::Warm),
        (2, Damage::FlipBeforeCompression, Spare::Warm),
        (0, Damage::FlipRandom, Spare::WarmSr),
    ];
    let mut full = Vec::new();
    for spare in [Spare::Warm, Spare::WarmSr, Spare::Standby] {
        for (c, _) in CODECS.iter().enumerate() {
            for d in Damage::ALL {
                if c == 0 && d == Damage::FlipBeforeCompression {
                    continue;
                }
                full.push((c, d, spare));
            }
        }
    }
    ctx.pick(quick, full)
}

/// What the primary left for the scenarios.
struct Source {
    base: Cluster,
    /// The archive of each codec.
    archives: Vec<PathBuf>,
    /// The damaged segment's name.
    segment: String,
    /// Its content.
    content: Vec<u8>,
    /// Another cluster's segment of the same name.
    foreign: Vec<u8>,
    /// The LSN of the last WAL switch, replayed by a spare that has everything.
    end_lsn: String,
    /// The rows on the primary.
    rows: u64,
}

pub fn run(ctx: &Ctx, tally: &mut Tally) -> Result<()> {
    let seg_mb = ctx.pick(1, 16);
    let src = prepare(ctx, seg_mb)?;
    tally.note(format!(
        "{seg_mb} MiB segments; damaged segment {} (full, in the middle of {} rows of inserts)",
        src.segment, src.rows
    ));
    let list = scenarios(ctx);
    let mut matrix: Vec<String> = Vec::new();
    for run in ctx.runs(list.len() as u64, list.len() as u64) {
        let Some(&(codec, damage, spare)) = list.get(usize::try_from(run).unwrap_or(usize::MAX))
        else {
            continue;
        };
        let repro = ctx.repro(NAME, run);
        let mut rng = ctx.rng(NAME, run);
        tally.run();
        let verdict = scenario(ctx, tally, &src, codec, damage, spare, &mut rng, &repro)?;
        matrix.push(format!(
            "{} / {} / {}: {verdict}",
            CODECS[codec].0,
            damage.name(),
            spare.name()
        ));
    }
    for line in matrix {
        tally.note(line);
    }
    Ok(())
}

fn prepare(ctx: &Ctx, seg_mb: u32) -> Result<Source> {
    let base_dir = ctx.dir("damage");
    let state = base_dir.join("state");
    runner::pg_dir(&state);
    let mut command = format!(
        "{} --state-dir {}",
        ctx.bin("pitr-archive").display(),
        state.display()
    );
    let mut archives = Vec::new();
    for (codec, _) in CODECS {
        let dir = base_dir.join(format!("archive-{codec}"));
        runner::pg_dir(&dir);
        command.push_str(&format!(" --dst-local {codec}={}", dir.display()));
        archives.push(dir);
    }
    command.push_str(" %p");
    let primary = Cluster::init(
        "damage-primary",
        ClusterOpts::new()
            .wal_segsize_mb(seg_mb)
            .set("archive_mode", "on")
            .set("archive_command", &command),
    );
    primary.start();
    primary.psql("CREATE TABLE t (id int, pad text)");
    let base = primary.base_backup("damage-base", "none", ClusterOpts::new());
    let first = primary.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    // About 0.3 MB of WAL per statement: enough statements for four full segments.
    let statements = (seg_mb * 4 * 1024 * 1024 / 300_000 + 4).max(16);
    for i in 0..statements {
        primary.psql(&format!(
            "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series({}, {}) g",
            i * 1000 + 1,
            (i + 1) * 1000
        ));
    }
    let (last, end_lsn) = primary.switch_wal_at();
    primary.wait_archived(&last, Duration::from_secs(120));
    let rows = primary.count_rows("t");
    // The second segment of the inserts: full, with rows before and after it.
    let segment = next_segment(&first, seg_mb)?;
    anyhow::ensure!(
        segment < last,
        "the inserts did not fill two segments ({first} .. {last})"
    );
    let content = fs::read(archives[0].join(&segment)).context("reading the plain archive")?;

    // Another cluster, switched until it has a segment of the same name.
    let other = Cluster::init(
        "damage-other",
        ClusterOpts::new()
            .wal_segsize_mb(seg_mb)
            .set("wal_keep_size", "1GB"),
    );
    other.start();
    let foreign = loop {
        let done = other.switch_wal();
        if done >= segment {
            break fs::read(other.wal_dir().join(&segment))
                .context("reading the other cluster's segment")?;
        }
    };
    drop(other);
    primary.stop();
    Ok(Source {
        base,
        archives,
        segment,
        content,
        foreign,
        end_lsn,
        rows,
    })
}

/// The name of the segment after `name` on the same timeline, for `seg_mb` MiB segments.
fn next_segment(name: &str, seg_mb: u32) -> Result<String> {
    let per_log = 0x1_0000_0000u64 / (u64::from(seg_mb) * 1024 * 1024);
    let tli = &name[..8];
    let log = u64::from_str_radix(&name[8..16], 16)?;
    let seg = u64::from_str_radix(&name[16..24], 16)?;
    let (log, seg) = if seg + 1 >= per_log {
        (log + 1, 0)
    } else {
        (log, seg + 1)
    };
    Ok(format!("{tli}{log:08X}{seg:08X}"))
}

/// The stored file of the damaged segment after `damage`, for the codec with extension `ext`.
fn damaged(src: &Source, damage: Damage, ext: &str, rng: &mut runner::Rng) -> Result<Vec<u8>> {
    Ok(match damage {
        Damage::FlipMiddle => {
            let mut b = if ext.is_empty() {
                src.content.clone()
            } else {
                fs::read(stored_path(src, ext))?
            };
            let mid = b.len() / 2;
            for x in &mut b[mid..mid + 4] {
                *x ^= 0xFF;
            }
            b
        }
        Damage::FlipRandom => {
            let mut b = if ext.is_empty() {
                src.content.clone()
            } else {
                fs::read(stored_path(src, ext))?
            };
            let at = if ext.is_empty() {
                record_offset(b.len(), rng)
            } else {
                64 + rng.index(b.len() - 128)
            };
            b[at] ^= 1 << rng.below(8);
            b
        }
        Damage::Truncate => {
            let mut b = fs::read(stored_path(src, ext))?;
            b.truncate(b.len() / 2);
            b
        }
        Damage::Empty => Vec::new(),
        Damage::Foreign => runner::encode(&src.foreign, ext)?,
        Damage::Timeline => {
            let mut b = src.content.clone();
            for page in b.chunks_mut(PAGE) {
                page[4..8].copy_from_slice(&2u32.to_le_bytes());
            }
            runner::encode(&b, ext)?
        }
        Damage::FlipBeforeCompression => {
            let mut b = src.content.clone();
            let at = record_offset(b.len(), rng);
            b[at] ^= 1 << rng.below(8);
            runner::encode(&b, ext)?
        }
    })
}

/// A random offset inside a record's data: past the (long or short) page header of its page.
fn record_offset(len: usize, rng: &mut runner::Rng) -> usize {
    let page = 1 + rng.index(len / PAGE - 1);
    page * PAGE + 64 + rng.index(PAGE - 128)
}

fn stored_path(src: &Source, ext: &str) -> PathBuf {
    let codec = CODECS.iter().position(|(_, e)| *e == ext).unwrap_or(0);
    src.archives[codec].join(format!("{}{ext}", src.segment))
}

/// PostgreSQL's messages for a record or page it rejects.
const PG_REJECTS: &[&str] = &[
    "invalid magic number",
    "incorrect resource manager data checksum",
    "unexpected pageaddr",
    "unexpected timeline ID",
    "out-of-sequence timeline ID",
    "invalid record length",
    "record with incorrect prev-link",
    "contrecord",
    "different database system",
    "invalid resource manager ID",
    "invalid info bits",
    "incorrect hole size",
    "WAL segment size",
    "invalid record offset",
];

#[allow(clippy::too_many_arguments)]
fn scenario(
    ctx: &Ctx,
    tally: &mut Tally,
    src: &Source,
    codec: usize,
    damage: Damage,
    spare: Spare,
    rng: &mut runner::Rng,
    repro: &str,
) -> Result<String> {
    let (codec_name, ext) = CODECS[codec];
    let label = format!("damage-{codec_name}-{damage:?}-{spare:?}").to_lowercase();
    let what = format!(
        "{} {codec_name} segment {} handed to a {}",
        damage.name(),
        src.segment,
        spare.name()
    );
    // The scenario's archive: hard links to the pristine one, the damaged file written anew.
    let archive = ctx.dir(&format!("damage/{label}-archive"));
    for name in runner::names(&src.archives[codec]) {
        let from = src.archives[codec].join(&name);
        fs::hard_link(&from, archive.join(&name))
            .with_context(|| format!("linking {}", from.display()))?;
    }
    let stored_name = format!("{}{ext}", src.segment);
    runner::put_as_pg(
        &archive.join(&stored_name),
        &damaged(src, damage, ext, rng)?,
    )?;
    tally.fault();

    let trigger = archive.with_extension("finish");
    let mut restore = format!(
        "{} --source {codec_name}={} --poll-interval 0.2",
        ctx.bin("pitr-restore").display(),
        archive.display()
    );
    match spare {
        Spare::Warm => restore.push_str(&format!(" --finish-trigger {}", trigger.display())),
        Spare::WarmSr => restore.push_str(&format!(
            " --streaming-replication --finish-trigger {}",
            trigger.display()
        )),
        Spare::Standby => restore.push_str(" --streaming-replication"),
    }
    restore.push_str(" %f %p");
    let server = src.base.clone_stopped(
        &label,
        ClusterOpts::new()
            .set("restore_command", &restore)
            .set("recovery_prefetch", "off")
            .set("wal_retrieve_retry_interval", "200ms"),
    );
    server.write_signal(match spare {
        Spare::Warm | Spare::WarmSr => RECOVERY_SIGNAL,
        Spare::Standby => STANDBY_SIGNAL,
    });
    if let Err(e) = server.try_start_within("60") {
        tally.bad(
            Bad::NotRecovered,
            format!("{what}: the server did not start: {}", one_line(&e)),
            repro,
        );
        return Ok("did not start".to_owned());
    }

    // How the server reacts to the damaged segment.
    let reaction = poll_until(Duration::from_secs(45), || react(&server, &src.segment));
    let mut reaction = reaction.unwrap_or(Reaction::Silent);
    if matches!(reaction, Reaction::Rejected(_) | Reaction::Refused(_)) {
        // A promotion right after the rejection is the failure mode: give it a moment.
        let grace = Instant::now() + Duration::from_secs(2);
        while Instant::now() < grace {
            match react(&server, &src.segment) {
                Some(r @ (Reaction::Promoted | Reaction::Stopped)) => {
                    reaction = r;
                    break;
                }
                _ => runner::pause(Duration::from_millis(100)),
            }
        }
    }
    let log = server.server_log();
    if log.contains("PANIC") || log.contains("panicked at") || log.contains("signal 6") {
        tally.bad(
            Bad::Panic,
            format!("{what}: the server log shows a panic or abort"),
            repro,
        );
    }
    let promoted_early = reaction == Reaction::Promoted;
    if promoted_early {
        tally.bad(
            Bad::FalsePromotion,
            format!(
                "{what}: the server ended recovery before the segment was repaired ({})",
                pg_reason(&log)
            ),
            repro,
        );
    }

    // Repair, restart a stopped server, finish, count.
    fs::remove_file(archive.join(&stored_name))?;
    runner::copy_as_pg(&stored_path(src, ext), &archive.join(&stored_name))?;
    // A warm spare also stops on its own once pitr-restore has refused the same file for its
    // grace (126): restart it then too.
    if reaction == Reaction::Stopped || !server.server_alive() {
        server.mark_stopped();
        if let Err(e) = server.try_start_within("60") {
            tally.bad(
                Bad::NotRecovered,
                format!(
                    "{what}: the server stopped on the damage and did not start again once it \
                     was repaired: {}",
                    one_line(&e)
                ),
                repro,
            );
            return Ok("stopped; no restart".to_owned());
        }
    }
    if !promoted_early {
        let finished = match spare {
            // With --streaming-replication the warm spare ends recovery by itself at the end
            // of the archive (status 1 for the first missing file): the trigger is then moot.
            Spare::Warm | Spare::WarmSr => {
                pitr_tests::pg_user().write_file(&trigger, b"");
                poll_until(Duration::from_secs(90), || {
                    (server.try_psql("SELECT pg_is_in_recovery()").as_deref() == Ok("f"))
                        .then_some(())
                })
                .is_some()
            }
            Spare::Standby => {
                let replayed = poll_until(Duration::from_secs(90), || {
                    server.has_replayed(&src.end_lsn).then_some(())
                })
                .is_some();
                if replayed {
                    server.promote();
                }
                replayed
            }
        };
        if !finished {
            tally.bad(
                Bad::NotRecovered,
                format!(
                    "{what}: after the repair the server did not replay to the end within 90 s \
                     ({})",
                    pg_reason(&server.server_log())
                ),
                repro,
            );
            return Ok(format!("{}; stuck after the repair", reaction.name()));
        }
    }
    let rows = server
        .try_psql("SELECT count(*) FROM t")
        .ok()
        .and_then(|n| n.parse::<u64>().ok());
    let verdict = match rows {
        Some(rows) if rows == src.rows => format!("{}; all {rows} rows", reaction.name()),
        Some(rows) => {
            let lost = src.rows.saturating_sub(rows);
            tally.info("rows lost (damage)", lost);
            tally.bad(
                Bad::Lost,
                format!("{what}: {lost} of {} rows lost", src.rows),
                repro,
            );
            format!("**{}; {lost} rows lost**", reaction.name())
        }
        None => {
            tally.bad(
                Bad::NotRecovered,
                format!("{what}: the rows could not be counted"),
                repro,
            );
            "rows not counted".to_owned()
        }
    };
    drop(server);
    let _ = fs::remove_dir_all(&archive);
    Ok(verdict)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reaction {
    /// pitr-restore logged an error naming the segment (and checks it again, or exits 1; a warm
    /// spare's exits 126 once the file has stayed the same for its grace).
    Refused(String),
    /// PostgreSQL rejected a record or page of the handed-over segment.
    Rejected(String),
    Promoted,
    /// The server shut down (a restore_command status above 125).
    Stopped,
    /// Nothing seen within the deadline.
    Silent,
}

impl Reaction {
    fn name(&self) -> String {
        match self {
            Reaction::Refused(_) => "pitr-restore refused it".to_owned(),
            Reaction::Rejected(m) => format!("handed over, PostgreSQL rejected it ({m})"),
            Reaction::Promoted => "PROMOTED before the repair".to_owned(),
            Reaction::Stopped => "server stopped".to_owned(),
            Reaction::Silent => "no reaction seen".to_owned(),
        }
    }
}

fn react(server: &Cluster, segment: &str) -> Option<Reaction> {
    if server.try_psql("SELECT pg_is_in_recovery()").as_deref() == Ok("f") {
        return Some(Reaction::Promoted);
    }
    if !server.server_alive() {
        return Some(Reaction::Stopped);
    }
    let log = server.server_log();
    if let Some(m) = PG_REJECTS.iter().find(|m| log.contains(*m)) {
        return Some(Reaction::Rejected((*m).to_owned()));
    }
    log.lines()
        .find(|l| l.contains("pitr-restore") && l.contains(" : ERROR : ") && l.contains(segment))
        .map(|l| Reaction::Refused(runner::message(l).to_owned()))
}

/// PostgreSQL's first rejection message and its end-of-recovery line, for findings.
fn pg_reason(log: &str) -> String {
    let mut parts = Vec::new();
    if let Some(l) = log
        .lines()
        .find(|l| PG_REJECTS.iter().any(|m| l.contains(m)))
    {
        parts.push(strip_prefix(l));
    }
    for key in [
        "archive recovery complete",
        "selected new timeline",
        "redo done at",
    ] {
        if let Some(l) = log.lines().find(|l| l.contains(key)) {
            parts.push(strip_prefix(l));
        }
    }
    if parts.is_empty() {
        parts.push(
            log.lines()
                .rev()
                .find(|l| l.contains("FATAL") || l.contains("ERROR"))
                .map(strip_prefix)
                .unwrap_or_default(),
        );
    }
    parts.join("; ")
}

/// A server log line without its timestamp and pid.
fn strip_prefix(line: &str) -> String {
    line.split_once("] ")
        .map_or(line, |(_, rest)| rest)
        .trim()
        .to_owned()
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_segment_rolls_over_the_log() {
        assert_eq!(
            next_segment("000000010000000000000007", 16).expect("next"),
            "000000010000000000000008"
        );
        assert_eq!(
            next_segment("0000000100000000000000FF", 16).expect("next"),
            "000000010000000100000000"
        );
        assert_eq!(
            next_segment("0000000100000000000000FF", 1).expect("next"),
            "000000010000000000000100"
        );
    }
}

//! Restore: a standby replaying the WAL set from each contender's archive.
//!
//! Each measurement clones the base backup taken just before the set into a fresh standby
//! (`standby.signal`, `recovery_prefetch = off` for every contender, hot standby), sets
//! `restore_command` and starts it; the time from `pg_ctl start` until the standby has replayed
//! up to the start of the set's last segment gives MiB/s of WAL and seconds to catch up. All
//! archives are the zstd ones the archive part wrote.

use std::time::{Duration, Instant};

use anyhow::Result;
use pitr_tests::ClusterOpts;

use super::archive::WalSet;
use super::{empty_dir, median, ratio_table, round2, wait_for, Ctx, Part, Ratio};

/// One restore_command to measure.
struct Contender {
    name: &'static str,
    /// The command with `{data}` for the standby's data directory.
    command: String,
}

/// The LSN where segment `name` starts, as PostgreSQL prints it.
fn segment_start(name: &str, seg_bytes: u64) -> Result<String> {
    let log = u64::from_str_radix(&name[8..16], 16)?;
    let seg = u64::from_str_radix(&name[16..24], 16)?;
    let lsn = (log << 32) + seg * seg_bytes;
    Ok(format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff))
}

/// MiB of WAL a standby replays from the set (every segment but the last, which it only
/// starts).
pub fn replayed_mib(set: &WalSet) -> f64 {
    ((set.names.len() - 1) as u64 * set.seg_bytes) as f64 / f64::from(1 << 20)
}

/// Seconds a fresh standby cloned from the set's base backup takes, from `pg_ctl start`, to
/// replay up to the start of the set's last segment with `restore_command` = `command` (`{data}`
/// standing for its data directory); pgBackRest's spool is emptied first.
pub fn replay_secs(set: &WalSet, name: &str, command: &str) -> Result<f64> {
    let last = set
        .names
        .last()
        .ok_or_else(|| anyhow::anyhow!("the WAL set is empty"))?;
    let target = segment_start(last, set.seg_bytes)?;
    empty_dir(&set.pgbackrest_dir().join("spool"), &[])?;
    let standby = set.base.clone_stopped(
        "bench-standby",
        ClusterOpts::new()
            .set("recovery_prefetch", "off")
            .set("hot_standby", "on"),
    );
    let command = command.replace("{data}", &standby.data_dir().display().to_string());
    standby.append_conf(&[("restore_command", &command)]);
    standby.write_signal("standby.signal");
    let t = Instant::now();
    standby.start();
    wait_for(
        &format!("{name}: the standby replaying the set"),
        Duration::from_secs(900),
        || standby.has_replayed(&target),
    )?;
    let s = t.elapsed().as_secs_f64();
    standby.stop();
    Ok(s)
}

/// Runs the restore part.
pub fn run(ctx: &Ctx, set: &WalSet) -> Result<Part> {
    let restore = ctx.bin("pitr-restore");
    let conf = set.pgbackrest_conf.display().to_string();
    let pz = set.dest("pz").display().to_string();
    let contenders = [
        Contender {
            name: "pitr-restore zstd, prefetch 8",
            command: format!(
                "{} --source zstd={pz} --streaming-replication %f %p",
                restore.display()
            ),
        },
        Contender {
            name: "pitr-restore zstd, no prefetch",
            command: format!(
                "{} --source zstd={pz} --streaming-replication --prefetch 0 %f %p",
                restore.display()
            ),
        },
        Contender {
            name: "pgbackrest archive-get zst",
            command: format!(
                "pgbackrest --config={conf} --stanza=bench --pg1-path={{data}} archive-get %f \"%p\""
            ),
        },
        Contender {
            name: "pgbackrest archive-get async zst 2 proc",
            command: format!(
                "pgbackrest --config={conf} --stanza=bench --pg1-path={{data}} --archive-async \
                 --process-max=2 archive-get %f \"%p\""
            ),
        },
        Contender {
            name: "floor: cp of the uncompressed archive",
            command: format!("cp {}/%f %p", set.dest("pn").display()),
        },
        Contender {
            name: "shell zstd -d",
            command: format!(
                "zstd -d -q -c {}/%f.zst > %p",
                set.dest("sh").display()
            ),
        },
    ];
    let replayed_mib = replayed_mib(set);
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    for round in 0..ctx.rounds {
        for i in super::round_order(contenders.len(), round) {
            let c = &contenders[i];
            let s = replay_secs(set, c.name, &c.command)?;
            println!(
                "xtask: bench: restore round {} {:<40} {:>7.1} MiB/s ({s:.2} s)",
                round + 1,
                c.name,
                replayed_mib / s
            );
            secs[i].push(s);
        }
    }
    let med: Vec<f64> = secs.iter_mut().map(|s| median(s)).collect();
    let by_name = |n: &str| -> f64 {
        contenders
            .iter()
            .position(|c| c.name == n)
            .map_or(f64::NAN, |i| med[i])
    };
    let mut md = format!(
        "### Restore\n\nA standby started from a base backup replaying {} segments ({replayed_mib:.0} MiB) from a local \
         zstd archive (standby.signal, recovery_prefetch = off, hot standby; time from pg_ctl start to replay \
         reaching the last segment), median of {} rounds. The floor row restores with `cp` from pitr-archive's \
         uncompressed archive: what replay alone costs, which bounds every ratio.\n\n\
         | contender | MiB/s of WAL | seconds to catch up |\n|---|---|---|\n",
        set.names.len() - 1,
        ctx.rounds
    );
    let mut results = Vec::new();
    for (i, c) in contenders.iter().enumerate() {
        md.push_str(&format!(
            "| {} | {:.0} | {:.2} |\n",
            c.name,
            replayed_mib / med[i],
            med[i]
        ));
        results.push(serde_json::json!({
            "name": c.name,
            "command": c.command,
            "median_secs": round2(med[i]),
            "median_mib_s": round2(replayed_mib / med[i]),
            "rounds_secs": secs[i].iter().map(|s| round2(*s)).collect::<Vec<_>>(),
        }));
    }
    let pitr = by_name("pitr-restore zstd, prefetch 8");
    let ratios = vec![
        Ratio::new(
            "pitr-restore prefetch / pgbackrest archive-get (catch-up speed)",
            by_name("pgbackrest archive-get zst") / pitr,
            Some(2.0),
        ),
        Ratio::new(
            "pitr-restore prefetch / pgbackrest archive-get async 2 proc",
            by_name("pgbackrest archive-get async zst 2 proc") / pitr,
            None,
        ),
        Ratio::new(
            "pitr-restore prefetch / pitr-restore no prefetch",
            by_name("pitr-restore zstd, no prefetch") / pitr,
            None,
        ),
        Ratio::new(
            "pitr-restore prefetch / floor (cp, replay alone)",
            by_name("floor: cp of the uncompressed archive") / pitr,
            None,
        ),
        Ratio::new(
            "pitr-restore prefetch / shell zstd -d",
            by_name("shell zstd -d") / pitr,
            None,
        ),
    ];
    md.push('\n');
    md.push_str(&ratio_table(&ratios));
    Ok(Part {
        key: "restore".into(),
        markdown: md,
        json: serde_json::json!({
            "segments_replayed": set.names.len() - 1,
            "rounds": ctx.rounds,
            "results": results,
            "ratios": ratios.iter().map(Ratio::json).collect::<Vec<_>>(),
        }),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn segment_start_of_16_mib_segments() {
        assert_eq!(
            segment_start("000000010000000200000003", 16 << 20).unwrap(),
            "2/3000000"
        );
    }
}

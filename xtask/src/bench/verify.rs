//! Verify: reading back a whole WAL archive and checking every file, pitr-monitor against
//! pgBackRest on the same WAL set.
//!
//! `pitr-monitor --check verify` reads pitr-archive's zstd archive of the set (every segment
//! decompressed completely and its header checked, as pitr-restore does before a hand-over,
//! plus the gap and duplicate walk); `pgbackrest verify` reads pgBackRest's zst repository of
//! the same segments (each decompressed and its SHA-1 compared with the one in its name). Both
//! must exit 0, so a run that finds a problem fails the bench instead of timing it. MiB/s is WAL
//! (decompressed) per second; the page cache is warm for every contender alike (the archive
//! part just wrote the files).

use std::process::Command;

use anyhow::Result;
use pitr_tests::pg_user;

use super::archive::WalSet;
use super::{median, ratio_table, round2, run_timed, Ctx, Part, Ratio};

/// One verification to measure.
struct Contender {
    name: &'static str,
    command: Command,
}

fn contenders(ctx: &Ctx, set: &WalSet) -> Vec<Contender> {
    let monitor = |jobs: Option<&str>| {
        let mut c = pg_user().command(ctx.bin("pitr-monitor"));
        c.args(["--check", "verify", "--archive"])
            .arg(format!("zstd={}", set.dest("pz").display()));
        if let Some(j) = jobs {
            c.args(["--parallel-jobs", j]);
        }
        c
    };
    let pgbackrest = |procs: &str| {
        let mut c = pg_user().command("pgbackrest");
        c.arg(format!("--config={}", set.pgbackrest_conf.display()))
            .args([
                "--stanza=bench",
                &format!("--process-max={procs}"),
                "verify",
            ]);
        c
    };
    vec![
        Contender {
            name: "pitr-monitor verify (all cores)",
            command: monitor(None),
        },
        Contender {
            name: "pitr-monitor verify, 1 job",
            command: monitor(Some("1")),
        },
        Contender {
            name: "pgbackrest verify",
            command: pgbackrest("1"),
        },
        Contender {
            name: "pgbackrest verify, 2 processes",
            command: pgbackrest("2"),
        },
    ]
}

/// Runs the verify part on the archives the archive part left.
pub fn run(ctx: &Ctx, set: &WalSet) -> Result<Part> {
    let mut contenders = contenders(ctx, set);
    let mib = set.mib();
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    for round in 0..ctx.rounds {
        for i in super::round_order(contenders.len(), round) {
            let c = &mut contenders[i];
            let t = run_timed(&mut c.command)?;
            println!(
                "xtask: bench: verify round {} {:<34} {:>7.1} MiB/s ({:.2} s)",
                round + 1,
                c.name,
                mib / t.secs,
                t.secs
            );
            secs[i].push(t.secs);
        }
    }
    let med: Vec<f64> = secs.iter_mut().map(|s| median(s)).collect();
    let mut md = format!(
        "### Verify\n\nEvery file of an archive of {} segments ({mib:.0} MiB of WAL) read back and checked: \
         pitr-monitor on pitr-archive's zstd archive, pgBackRest on its zst repository of the same WAL \
         (page cache warm), median of {} rounds.\n\n| contender | MiB/s of WAL | seconds |\n|---|---|---|\n",
        set.names.len(),
        ctx.rounds
    );
    let mut results = Vec::new();
    for (i, c) in contenders.iter().enumerate() {
        md.push_str(&format!(
            "| {} | {:.0} | {:.2} |\n",
            c.name,
            mib / med[i],
            med[i]
        ));
        results.push(serde_json::json!({
            "name": c.name,
            "command": crate::display(&c.command),
            "median_secs": round2(med[i]),
            "median_mib_s": round2(mib / med[i]),
            "rounds_secs": secs[i].iter().map(|s| round2(*s)).collect::<Vec<_>>(),
        }));
    }
    let ratios = vec![
        Ratio::new(
            "pitr-monitor verify / pgbackrest verify (speed)",
            med[2] / med[0],
            None,
        ),
        Ratio::new(
            "pitr-monitor verify / pgbackrest verify, 2 processes",
            med[3] / med[0],
            None,
        ),
        Ratio::new(
            "pitr-monitor verify, 1 job / pgbackrest verify",
            med[2] / med[1],
            None,
        ),
    ];
    md.push('\n');
    md.push_str(&ratio_table(&ratios));
    Ok(Part {
        key: "verify".into(),
        markdown: md,
        json: serde_json::json!({
            "segments": set.names.len(),
            "mib": round2(mib),
            "rounds": ctx.rounds,
            "results": results,
            "ratios": ratios.iter().map(Ratio::json).collect::<Vec<_>>(),
        }),
    })
}

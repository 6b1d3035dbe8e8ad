//! `cargo xtask faults [--quick]`: the fault campaign, run against the built binaries and real
//! PostgreSQL 15 clusters, as a black box.
//!
//! Each campaign is a module with one `run(&Ctx, &mut Tally)` and an entry in [`CAMPAIGNS`]:
//! it injects faults (kills at random points of a measured call, full file systems, damaged
//! archives, hostile input, races) and counts what went wrong afterwards in a [`Tally`]: lost
//! segments, partial or corrupt files under final names, false promotions, panics, wrong exit
//! statuses, errors without a HINT, files left behind that the next run or pitr-cleanup does
//! not remove. The run writes `docs/faults.md` (commit, date, mode, seed, one table, and every
//! bad outcome with the command that replays it) and exits 1 when anything bad was counted;
//! the table is printed and written either way.
//!
//! Every random choice of run N of campaign C comes from a generator seeded with (seed, C, N),
//! so `--only C --seed S --run N` replays one run: the same segment, codec, destination and
//! kill point (as a fraction of the call's measured duration, which is measured again).
//!
//! Adding a campaign: a module with `pub fn run(ctx: &Ctx, tally: &mut Tally) -> Result<()>`
//! and a line in [`CAMPAIGNS`]. New destinations (S3) go into the campaigns' destination lists.
//!
//! The harness is the integration tests' (`pitr_tests`), which panics on failures; with
//! `panic = "abort"` a harness failure ends the whole run, and [`crate::scratch`] then stops
//! every server and daemon below the scratch directory and removes it. So the campaigns use
//! the harness for setting up, and their own non-panicking calls ([`runner`]) where a fault
//! may make things fail.

mod ahead;
mod archive;
mod backup;
mod cleanup;
mod damage;
mod disk;
mod input;
mod outcome;
mod parsers;
mod race;
mod report;
mod restore;
mod runner;
mod s3;

use std::env;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use argh::FromArgs;

use crate::{cargo, deps, garage, project_root, scratch, target_dir};
pub use outcome::{Bad, Tally};
pub use runner::Ctx;

/// Run the fault campaign against the built binaries and real PostgreSQL, and write
/// docs/faults.md.
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "faults",
    note = "Campaigns: archive-kill, disk-full, damage, restore-kill, backup-kill, \
            cleanup-kill, race, bad-input, parsers. Needs what `cargo xtask test` needs, as \
            root (the full-disk campaign mounts a small tmpfs). Exit status 0 when no bad \
            outcome was counted, 1 otherwise; the table is printed and written either way."
)]
pub struct FaultsArgs {
    /// the small form CI runs (under 5 minutes on two cores); default: the full campaign
    #[argh(switch)]
    quick: bool,

    /// seed of every random choice (default: from the clock; printed and written)
    #[argh(option)]
    seed: Option<u64>,

    /// run only these campaigns, comma-separated
    #[argh(option)]
    only: Option<String>,

    /// replay only run N of each selected campaign (with the --seed and mode it was found with)
    #[argh(option)]
    run: Option<u64>,

    /// use release binaries (what is shipped) instead of the debug ones
    #[argh(switch)]
    release: bool,

    /// where to write the report (default: docs/faults.md for a whole campaign, target/faults/
    /// faults.md with --only or --run, so that a replay does not replace the published report)
    #[argh(option)]
    out: Option<PathBuf>,
}

/// One campaign: its name for `--only`, a line for the report, and its body.
pub struct Campaign {
    pub name: &'static str,
    pub what: &'static str,
    pub run: fn(&Ctx, &mut Tally) -> Result<()>,
}

/// Every campaign, in the order they run.
pub const CAMPAIGNS: &[Campaign] = &[
    Campaign {
        name: "archive-kill",
        what: "pitr-archive killed (SIGKILL, process or group) at random points of a measured \
               call; every codec; local, rsync, pipe and two destinations at once; then the \
               retry and pitr-cleanup",
        run: archive::run,
    },
    Campaign {
        name: "archive-ahead",
        what: "pitr-archive's call for the first of a backlog (--archive-ahead 4, in every other run the \
               size of 4 segments, 4MB or 64MB; two rsync zstd destinations sharing a staged copy and local gzip, state dir; in every other \
               pair of runs a zstd destination in the Garage cluster too, where more batches go on the wire; it hands the \
               backlog to the archive-ahead worker it starts and waits for its record) killed \
               with SIGKILL, or its first rsync destination killed mid-batch, or the worker killed with SIGKILL while the call waits or \
               after; sometimes a segment rewritten in pg_wal after its record was made; then \
               every segment archived in order as PostgreSQL would",
        run: ahead::run,
    },
    Campaign {
        name: "disk-full",
        what: "archive into a full destination, restore into a full pg_wal, backup into a full \
               destination (a small tmpfs), then again once space returns",
        run: disk::run,
    },
    Campaign {
        name: "damage",
        what: "damaged archived segments handed to a real warm spare (recovery.signal), one \
               given --streaming-replication anyway, and a real standby (standby.signal, \
               --streaming-replication), every codec; the segment is repaired afterwards and \
               the rows counted",
        run: damage::run,
    },
    Campaign {
        name: "restore-kill",
        what: "pitr-restore killed (SIGKILL, SIGTERM) while restoring and while waiting, prefetch \
               on and off; then the next call",
        run: restore::run,
    },
    Campaign {
        name: "backup-kill",
        what: "pitr-backup (zstd, or in every other pair of runs gzip on two threads) killed \
               (SIGKILL, SIGTERM) at random points, also while WAL collection waits on a stuck \
               archiver; then the next backup and pitr-cleanup",
        run: backup::run,
    },
    Campaign {
        name: "cleanup-kill",
        what: "pitr-cleanup retention killed (SIGKILL) at random points; then the next run",
        run: cleanup::run,
    },
    Campaign {
        name: "race",
        what: "two pitr-archive calls for one segment (same and different content, same and \
               different codecs), two clusters into one empty archive, cleanup during a backup",
        run: race::run,
    },
    Campaign {
        name: "bad-input",
        what: "hostile options, files, config files, pg_control bytes, WAL names, meta files and \
               tar content: no panic, one error line with a HINT, a status PostgreSQL cannot \
               misread, nothing written",
        run: input::run,
    },
    Campaign {
        name: "parsers",
        what: "proptest targets for the parsers of pitr-common (common/tests/parsers.rs), a \
               bounded number of cases each",
        run: parsers::run,
    },
];

/// Runs the selected campaigns, writes the report, and exits 1 when anything bad was counted.
pub fn run(args: &FaultsArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let selected: Vec<&Campaign> = match &args.only {
        None => CAMPAIGNS.iter().collect(),
        Some(list) => {
            let mut v = Vec::new();
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                match CAMPAIGNS.iter().find(|c| c.name == name) {
                    Some(c) => v.push(c),
                    None => bail!(
                        "--only: unknown campaign {name:?}\nHINT: one of {}",
                        CAMPAIGNS
                            .iter()
                            .map(|c| c.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            }
            v
        }
    };
    let seed = args.seed.unwrap_or_else(runner::clock_seed);
    let mode = if args.quick {
        runner::Mode::Quick
    } else {
        runner::Mode::Full
    };
    // First, while this is the only thread: every thread started later inherits the mask.
    let signals = scratch::block_signals()?;
    let root = project_root();
    println!("xtask: checking for PostgreSQL 15 server programs and rsync");
    let deps = deps::ensure()?;
    if !deps::is_root() {
        bail!(
            "cargo xtask faults runs as root: it mounts a small tmpfs and runs PostgreSQL as \
             another user\nHINT: run it as root (CI does)"
        );
    }
    println!(
        "xtask: checking for Garage {} (the archive-ahead campaign's object store)",
        garage::VERSION
    );
    let garage = garage::ensure()?;
    let mut build = Command::new(cargo());
    build
        .current_dir(&root)
        .args(["build", "--workspace", "--bins"]);
    if args.release {
        build.arg("--release");
    }
    crate::run(&mut build)?;
    let bin_dir = target_dir(&root).join(if args.release { "release" } else { "debug" });

    let scratch = scratch::Scratch::create("faults")?;
    // Still one thread: the harness reads these, and TMPDIR puts every temp dir it makes (and
    // the binaries' scratch files) inside the scratch directory.
    env::set_var("PG_BINDIR", &deps.pg_bindir);
    env::set_var("PITR_BIN_DIR", &bin_dir);
    env::set_var("TMPDIR", scratch.path());
    env::set_var(garage::ENV_VAR, &garage);
    scratch::install(signals)?;

    let ctx = Ctx {
        mode,
        seed,
        only_run: args.run,
        bin_dir,
        root: scratch.path().to_path_buf(),
        project: root.clone(),
    };
    println!(
        "\nfaults: {} form, seed {seed}; scratch directory {}",
        mode.name(),
        ctx.root.display()
    );
    let out = match (&args.out, args.only.is_some() || args.run.is_some()) {
        (Some(out), _) => out.clone(),
        (None, false) => root.join("docs").join("faults.md"),
        (None, true) => {
            let dir = target_dir(&root).join("faults");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.join("faults.md")
        }
    };
    let git = report::GitState::of(&root);
    // The report is rewritten after each campaign, so that an interrupted run leaves what it
    // found, with the campaigns it did not reach named.
    let report = |tallies: &[Tally], pending: &[&Campaign]| report::Report {
        git: git.clone(),
        mode,
        seed,
        only: args.only.clone(),
        run: args.run,
        release: args.release,
        elapsed: started.elapsed(),
        tallies: tallies.to_vec(),
        pending: pending.iter().map(|c| c.name).collect(),
    };
    let write = |r: &report::Report| {
        std::fs::write(&out, r.render()).with_context(|| format!("writing {}", out.display()))
    };
    let mut tallies = Vec::new();
    for (i, campaign) in selected.iter().enumerate() {
        scratch::set_step(&format!("campaign {}", campaign.name));
        println!("\n== {}: {}", campaign.name, campaign.what);
        let mut tally = Tally::new(campaign.name, campaign.what);
        let t = Instant::now();
        let result = (campaign.run)(&ctx, &mut tally);
        tally.elapsed = t.elapsed();
        if let Err(e) = result {
            // A campaign that could not set itself up is a failure of the run, not of the
            // product: say so, and go on with the others.
            println!("   campaign {} stopped: {e:#}", campaign.name);
            tally.aborted = Some(format!("{e:#}"));
        }
        println!("   {}", tally.summary());
        tallies.push(tally);
        write(&report(&tallies, &selected[i + 1..]))?;
    }
    drop(scratch);
    let report = report(&tallies, &[]);
    write(&report)?;
    println!("\n{}", report.table());
    println!("faults: wrote {}", out.display());
    let bad: u64 = tallies.iter().map(Tally::bad_total).sum();
    let aborted = tallies.iter().filter(|t| t.aborted.is_some()).count();
    if bad > 0 || aborted > 0 {
        println!(
            "faults: FAIL: {bad} bad outcome(s) counted, {aborted} campaign(s) stopped early \
             ({:.0} s); the list with reproductions is in {}",
            started.elapsed().as_secs_f64(),
            out.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "faults: PASS: no bad outcome ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

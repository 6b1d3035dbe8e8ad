//! `cargo xtask bench`: pitr measured against its peers in one run, on this machine.
//!
//! Not a test: nothing here asserts a time. It builds release binaries, installs pgBackRest and
//! zstd from apt when missing (as root on Debian), creates a throwaway PostgreSQL 15 cluster,
//! produces a fixed WAL set with pgbench, and measures, with the contenders interleaved
//! (A B C … A B C …) and medians over `--rounds`:
//!
//! - **archiving**: PostgreSQL's own archiver draining a backlog of the WAL set. The backlog is
//!   built with an empty `archive_command` (the archiver waits), then for each measurement the
//!   set's `archive_status` files are turned back into `.ready`, `archive_command` is set to the
//!   contender, and the server is started; the time until every segment of the set is `.done`
//!   gives MiB/s of WAL. Contenders: pitr-archive zstd / gzip / none to a local directory,
//!   `pgbackrest archive-push` (sync: gz, its default, zst, none; async zst with process-max 2),
//!   and the shell floor `zstd -1 -c %p > tmp && sync tmp && mv`.
//!
//! It prints one markdown table of figures and ratios and writes the same as JSON under
//! `target/bench/`. Restore and base backup measurements are not written yet.
//!
//! The harness is the test crate's (`pitr_tests`): its functions panic on failure, and with
//! `panic = "abort"` a failed bench can leave its server running in a temp directory; the
//! message says which.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use argh::FromArgs;
use pitr_tests::{pg_user, Cluster, ClusterOpts, PgTempDir};

/// Measure pitr against pgBackRest and shell baselines (archiving; prints a markdown table and
/// writes target/bench/archive.json).
#[derive(FromArgs)]
#[argh(subcommand, name = "bench")]
pub struct BenchArgs {
    /// measurement rounds per contender (default 3; the median is reported)
    #[argh(option, default = "3")]
    rounds: usize,

    /// WAL segments in the set (default 100)
    #[argh(option, default = "100")]
    segments: usize,
}

/// One archive_command to measure.
struct Contender {
    name: &'static str,
    command: String,
    /// Directory the contender writes into, emptied before each measurement.
    dest: PathBuf,
    /// Keep these entries of `dest` when emptying it (pgBackRest's archive.info).
    keep: &'static [&'static str],
    /// A spool directory to empty as well (async pgBackRest).
    spool: Option<PathBuf>,
}

fn ensure_tools() -> Result<()> {
    crate::deps::ensure()?;
    let mut missing = Vec::new();
    if crate::deps::find_on_path("pgbackrest").is_none() {
        missing.push("pgbackrest");
    }
    if crate::deps::find_on_path("zstd").is_none() {
        missing.push("zstd");
    }
    if missing.is_empty() {
        return Ok(());
    }
    if crate::deps::is_root() && Path::new("/etc/debian_version").exists() {
        crate::deps::install(&missing)
    } else {
        bail!(
            "the benchmark needs {}: install them",
            missing.join(" and ")
        )
    }
}

/// Empties `dir` except the names in `keep`, recursing into kept-out directories entirely.
fn empty_dir(dir: &Path, keep: &[&str]) -> Result<()> {
    for ent in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let ent = ent?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if keep.contains(&name.as_str()) {
            if ent.file_type()?.is_dir() {
                // archive/<stanza>/<version>: keep archive.info, drop the WAL directories.
                empty_dir(&ent.path(), keep)?;
            }
            continue;
        }
        let p = ent.path();
        if ent.file_type()?.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        }
        .with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// Turns the set's `.done` files back into `.ready`.
fn reset_status(data: &Path, set: &[String]) -> Result<()> {
    let status = data.join("pg_wal/archive_status");
    for s in set {
        let done = status.join(format!("{s}.done"));
        if done.exists() {
            std::fs::rename(&done, status.join(format!("{s}.ready")))
                .with_context(|| format!("renaming {}", done.display()))?;
        }
    }
    Ok(())
}

fn all_done(data: &Path, set: &[String]) -> bool {
    let status = data.join("pg_wal/archive_status");
    set.iter()
        .all(|s| status.join(format!("{s}.done")).exists())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => total += dir_size(&e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

fn pgbackrest_as_pg(conf: &Path, args: &[&str]) -> Result<()> {
    let mut cmd = pg_user().command("pgbackrest");
    cmd.arg(format!("--config={}", conf.display())).args(args);
    let out = cmd.output().context("running pgbackrest")?;
    if !out.status.success() {
        bail!(
            "pgbackrest {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Runs the benchmark.
pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    ensure_tools()?;
    let root = crate::project_root();
    crate::run(Command::new(crate::cargo()).current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "pitr-archive",
    ]))?;
    let bin = crate::target_dir(&root).join("release");
    let archive_bin = bin.join("pitr-archive");

    let tmp = PgTempDir::new("bench");
    let cluster = Cluster::init(
        "bench",
        ClusterOpts::new()
            .set("archive_mode", "on")
            .set("archive_command", "")
            .set("wal_keep_size", "16GB")
            .set("max_wal_size", "8GB")
            .set("checkpoint_timeout", "1h")
            .set("shared_buffers", "128MB")
            .set("fsync", "on"),
    );
    println!(
        "xtask: bench: cluster in {}, building a WAL set of {} segments with pgbench",
        cluster.data_dir().display(),
        args.segments
    );
    cluster.start();
    cluster.pgbench_init(10);
    let status_dir = cluster.data_dir().join("pg_wal/archive_status");
    let ready = |dir: &Path| -> usize {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
                    .count()
            })
            .unwrap_or(0)
    };
    while ready(&status_dir) < args.segments {
        cluster.pgbench(2000, 2);
    }
    cluster.switch_wal();
    cluster.stop();
    let mut set: Vec<String> = std::fs::read_dir(&status_dir)?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".ready")
                .map(str::to_owned)
        })
        .filter(|n| n.len() == 24)
        .collect();
    set.sort();
    set.truncate(args.segments);
    let seg_bytes = std::fs::metadata(cluster.data_dir().join("pg_wal").join(&set[0]))?.len();
    let set_mib = (seg_bytes * set.len() as u64) as f64 / (1 << 20) as f64;
    // Segments after the set stay .done so they are not part of any measurement.
    for e in std::fs::read_dir(&status_dir)?.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(base) = n.strip_suffix(".ready") {
            if !set.iter().any(|s| s == base) {
                std::fs::rename(e.path(), status_dir.join(format!("{base}.done")))?;
            }
        }
    }

    // pgBackRest: one stanza, a repository per compression would be fairer to nobody; one repo,
    // emptied before each measurement.
    let br = tmp.subdir("pgbackrest");
    for d in ["repo", "log", "lock", "spool"] {
        pg_user().create_dir(&br.join(d), 0o700);
    }
    let conf = br.join("pgbackrest.conf");
    pg_user().write_file(
        &conf,
        format!(
            "[global]\nrepo1-path={0}/repo\nlog-path={0}/log\nlock-path={0}/lock\nspool-path={0}/spool\n\
             log-level-console=warn\nlog-level-file=off\n\n[bench]\npg1-path={1}\npg1-port={2}\npg1-socket-path={3}\n",
            br.display(),
            cluster.data_dir().display(),
            cluster.port(),
            cluster.socket_dir().display()
        )
        .as_bytes(),
    );
    cluster.start();
    pgbackrest_as_pg(&conf, &["--stanza=bench", "stanza-create"])?;
    cluster.stop();
    reset_status(cluster.data_dir(), &set)?;

    let dest = |name: &str| -> PathBuf { tmp.subdir(name) };
    let push = |extra: &str| {
        format!(
            "pgbackrest --config={} --stanza=bench {extra} archive-push %p",
            conf.display()
        )
    };
    let repo_archive = br.join("repo/archive");
    let mut contenders = vec![
        Contender {
            name: "pitr-archive zstd",
            command: format!(
                "{} --dst-local zstd={} %p",
                archive_bin.display(),
                dest("pz").display()
            ),
            dest: dest("pz"),
            keep: &[],
            spool: None,
        },
        Contender {
            name: "pitr-archive gzip",
            command: format!(
                "{} --dst-local gzip={} %p",
                archive_bin.display(),
                dest("pg").display()
            ),
            dest: dest("pg"),
            keep: &[],
            spool: None,
        },
        Contender {
            name: "pitr-archive none",
            command: format!(
                "{} --dst-local {} %p",
                archive_bin.display(),
                dest("pn").display()
            ),
            dest: dest("pn"),
            keep: &[],
            spool: None,
        },
        Contender {
            name: "shell zstd -1 + sync + mv",
            command: format!(
                "zstd -1 -q -c %p > {0}/%f.tmp && sync {0}/%f.tmp && mv {0}/%f.tmp {0}/%f.zst",
                dest("sh").display()
            ),
            dest: dest("sh"),
            keep: &[],
            spool: None,
        },
    ];
    for (name, extra) in [
        ("pgbackrest sync gz", "--compress-type=gz"),
        ("pgbackrest sync zst", "--compress-type=zst"),
        ("pgbackrest sync none", "--compress-type=none"),
        (
            "pgbackrest async zst 2 proc",
            "--compress-type=zst --archive-async --process-max=2",
        ),
    ] {
        contenders.push(Contender {
            name,
            command: push(extra),
            dest: repo_archive.clone(),
            keep: &["bench", "15-1", "archive.info", "archive.info.copy"],
            spool: Some(br.join("spool")),
        });
    }

    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    let mut sizes: Vec<u64> = vec![0; contenders.len()];
    for round in 0..args.rounds {
        for (i, c) in contenders.iter().enumerate() {
            empty_dir(&c.dest, c.keep)?;
            if let Some(s) = &c.spool {
                empty_dir(s, &[])?;
            }
            reset_status(cluster.data_dir(), &set)?;
            cluster.append_conf(&[("archive_command", &c.command)]);
            let t = Instant::now();
            cluster.start();
            let deadline = t + Duration::from_secs(900);
            while !all_done(cluster.data_dir(), &set) {
                if Instant::now() > deadline {
                    bail!(
                        "{}: the archiver did not drain the set within 15 minutes",
                        c.name
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let secs = t.elapsed().as_secs_f64();
            cluster.stop();
            sizes[i] = dir_size(&c.dest);
            let rate = set_mib / secs;
            println!(
                "xtask: bench: round {} {:<28} {:>7.1} MiB/s ({secs:.2} s)",
                round + 1,
                c.name,
                rate
            );
            rates[i].push(rate);
        }
    }

    let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    let by_name = |n: &str| -> f64 {
        contenders
            .iter()
            .position(|c| c.name == n)
            .map(|i| medians[i])
            .unwrap_or(f64::NAN)
    };
    let mut table = String::new();
    writeln!(
        table,
        "Archiving: PostgreSQL's archiver draining {} segments ({set_mib:.0} MiB of pgbench WAL), median of {} rounds\n",
        set.len(),
        args.rounds
    )?;
    writeln!(table, "| contender | MiB/s of WAL | archived size |")?;
    writeln!(table, "|---|---|---|")?;
    for (i, c) in contenders.iter().enumerate() {
        writeln!(
            table,
            "| {} | {:.0} | {:.1} % |",
            c.name,
            medians[i],
            100.0 * sizes[i] as f64 / (set_mib * (1 << 20) as f64)
        )?;
    }
    let zstd = by_name("pitr-archive zstd");
    writeln!(table, "\n| ratio | value | target |")?;
    writeln!(table, "|---|---|---|")?;
    for (what, peer, target) in [
        (
            "pitr zstd / pgbackrest sync zst",
            "pgbackrest sync zst",
            1.6,
        ),
        ("pitr zstd / pgbackrest sync gz", "pgbackrest sync gz", 5.0),
        (
            "pitr zstd / shell zstd -1 + sync",
            "shell zstd -1 + sync + mv",
            1.1,
        ),
        (
            "pitr zstd / pgbackrest async zst 2 proc",
            "pgbackrest async zst 2 proc",
            f64::NAN,
        ),
    ] {
        let r = zstd / by_name(peer);
        let t = if target.is_nan() {
            "—".to_string()
        } else {
            format!("≥ {target} {}", if r >= target { "met" } else { "MISSED" })
        };
        writeln!(table, "| {what} | {r:.2} | {t} |")?;
    }
    println!("\n{table}");

    let out_dir = crate::target_dir(&root).join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut json = format!(
        "{{\"kind\":\"archive\",\"segments\":{},\"segment_bytes\":{seg_bytes},\"rounds\":{},\"results\":[",
        set.len(),
        args.rounds
    );
    for (i, c) in contenders.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        let rs: Vec<String> = rates[i].iter().map(|r| format!("{r:.1}")).collect();
        write!(
            json,
            "{{\"name\":\"{}\",\"median_mib_s\":{:.1},\"rounds_mib_s\":[{}],\"archived_bytes\":{}}}",
            c.name,
            medians[i],
            rs.join(","),
            sizes[i]
        )?;
    }
    json.push_str("]}\n");
    std::fs::write(out_dir.join("archive.json"), json)?;
    std::fs::write(out_dir.join("archive.md"), &table)?;
    println!(
        "xtask: bench: wrote {}",
        out_dir.join("archive.json").display()
    );
    Ok(ExitCode::SUCCESS)
}

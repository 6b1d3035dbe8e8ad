//! Archiving: PostgreSQL's own archiver draining a backlog of a WAL set (pgbench's or the mixed
//! one, [`super::data`]).
//!
//! The backlog is built with an empty `archive_command` (the archiver waits). For each
//! measurement the set's `archive_status` files are turned back into `.ready`,
//! `archive_command` is set to the contender, and the server is started; the time until every
//! segment of the set is `.done` gives MiB/s of WAL. Then each command is also run by hand,
//! once per segment, for its per-call latency (p50/p95) and peak RSS.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pitr_tests::{pg_user, Cluster, ClusterOpts, PgTempDir};

use super::{
    dir_size, empty_dir, median, percentile, pgbackrest_as_pg, ratio_table, round2, run_timed,
    shell_as_pg, Ctx, Part, Ratio,
};

/// The WAL set every archiving and restore measurement works on, and the clusters around it.
pub struct WalSet {
    /// Holds the contenders' archives and pgBackRest's repository.
    pub tmp: PgTempDir,
    /// The primary (stopped); its pg_wal holds the set.
    pub cluster: Cluster,
    /// A base backup taken just before the set was written (never started; cloned per restore).
    pub base: Cluster,
    /// The set's segment names, in order; the first one holds the base backup's start.
    pub names: Vec<String>,
    pub seg_bytes: u64,
    /// How many times smaller zstd -3 makes the set's segments.
    pub zstd_ratio: f64,
    /// pgBackRest's configuration (stanza `bench`).
    pub pgbackrest_conf: PathBuf,
}

impl WalSet {
    /// MiB of WAL in the set.
    pub fn mib(&self) -> f64 {
        (self.seg_bytes * self.names.len() as u64) as f64 / f64::from(1 << 20)
    }

    /// The archive directory of contender `short` (created on first use).
    pub fn dest(&self, short: &str) -> PathBuf {
        self.tmp.subdir(short)
    }

    /// pgBackRest's repository.
    pub fn pgbackrest_dir(&self) -> PathBuf {
        self.tmp.path().join("pgbackrest")
    }

    /// Builds the set: a cluster at scale 20 of the data set, a base backup, then rounds of its
    /// writes with a checkpoint every round (so the WAL carries full-page images as a busy server's does)
    /// until at least `ctx.segments` segments are ready.
    pub fn build(ctx: &Ctx) -> Result<WalSet> {
        let tmp = PgTempDir::new("bench");
        let cluster = Cluster::init(
            "bench",
            ClusterOpts::new()
                .set("archive_mode", "on")
                .set("archive_command", "")
                .set("max_wal_size", "16GB")
                // Archived segments must stay for every round (and for the restore part).
                .set("wal_keep_size", "16GB")
                .set("checkpoint_timeout", "1h")
                .set("shared_buffers", "128MB")
                .set("synchronous_commit", "off"),
        );
        println!(
            "xtask: bench: cluster in {}, building a WAL set of {} segments ({})",
            cluster.data_dir().display(),
            ctx.segments,
            ctx.data.name()
        );
        cluster.start();
        ctx.data.init(&cluster, 20);
        // What the initial fill wrote is not part of the set.
        cluster.switch_wal();
        let status = cluster.data_dir().join("pg_wal/archive_status");
        mark_done(&status, |_| true)?;
        let base = cluster.base_backup("bench-base", "stream", ClusterOpts::new());
        let label = std::fs::read_to_string(base.data_dir().join("backup_label"))
            .context("reading the base backup's backup_label")?;
        let first = label
            .lines()
            .find_map(|l| {
                let (_, rest) = l.split_once("(file ")?;
                rest.strip_suffix(')').map(str::to_owned)
            })
            .context("no START WAL LOCATION file in backup_label")?;
        let t = Instant::now();
        while ready(&status).len() < ctx.segments + 1 {
            ctx.data.churn(&cluster);
            cluster.psql("CHECKPOINT");
        }
        cluster.switch_wal();
        cluster.stop();
        let mut names: Vec<String> = ready(&status)
            .into_iter()
            .filter(|n| n.len() == 24 && n.as_str() >= first.as_str())
            .collect();
        names.sort();
        names.truncate(ctx.segments);
        anyhow::ensure!(
            names.first() == Some(&first),
            "the set does not start at the base backup's segment {first}"
        );
        // Segments after the set stay .done so they are not part of any measurement.
        mark_done(&status, |n| !names.iter().any(|s| s == n))?;
        let pg_wal = cluster.data_dir().join("pg_wal");
        let seg_bytes = std::fs::metadata(pg_wal.join(&names[0]))?.len();
        let paths: Vec<PathBuf> = names.iter().map(|n| pg_wal.join(n)).collect();
        let zstd_ratio = super::data::zstd_ratio(paths.iter().map(PathBuf::as_path))?;
        println!(
            "xtask: bench: WAL set {}..{} ({}) built in {:.0} s; zstd -3 makes it {zstd_ratio:.1}x smaller",
            names[0],
            names[names.len() - 1],
            ctx.data.name(),
            t.elapsed().as_secs_f64()
        );

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
        Ok(WalSet {
            tmp,
            cluster,
            base,
            names,
            seg_bytes,
            zstd_ratio,
            pgbackrest_conf: conf,
        })
    }

    /// Turns the set's `.done` files back into `.ready`.
    pub fn reset_status(&self) -> Result<()> {
        let status = self.cluster.data_dir().join("pg_wal/archive_status");
        for s in &self.names {
            let done = status.join(format!("{s}.done"));
            if done.exists() {
                std::fs::rename(&done, status.join(format!("{s}.ready")))
                    .with_context(|| format!("renaming {}", done.display()))?;
            }
        }
        Ok(())
    }

    /// Starts the server with archiving not configured (`archive_command = ''`: the archiver
    /// waits, the set stays `.ready`), then sets `archive_command` and times PostgreSQL's
    /// archiver draining the whole set, from the reload signal to the last segment's `.done`
    /// (the server's start-up is nobody's archiving cost); stops the server and returns the
    /// seconds and the rate in MiB/s of WAL. The clock starts once the memory freed before it
    /// has been handed back to the host ([`super::settle_memory`]), so that no drain writes
    /// into pages another contender's removed copies left warm.
    ///
    /// An earlier version started the server with the command set and started the clock at the
    /// first segment's `.done`, counting the set less one segment: a first call that delivered
    /// a batch ahead (pitr's archive-ahead, pgBackRest's async push), or started work beside it,
    /// had that work left out of the time while it was counted in the bytes.
    pub fn drain(&self, name: &str, command: &str, timeout: Duration) -> Result<(f64, f64)> {
        self.drain_profiled(name, command, timeout, None)
    }

    /// [`WalSet::drain`], with `perf record -a -g` writing `perf_out` around the drain when
    /// given (the profile starts before the clock and stops after it).
    pub fn drain_profiled(
        &self,
        name: &str,
        command: &str,
        timeout: Duration,
        perf_out: Option<&Path>,
    ) -> Result<(f64, f64)> {
        let cluster = &self.cluster;
        cluster.append_conf(&[("archive_command", "")]);
        cluster.start();
        let pid_file = cluster.data_dir().join("postmaster.pid");
        let postmaster: libc::pid_t = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("no pid in {}", pid_file.display()))?;
        if !self.all_ready() {
            anyhow::bail!("{name}: the set is not all .ready before the drain");
        }
        super::settle_memory(Duration::from_secs(120));
        let perf = match perf_out {
            Some(out) => Some(Perf::start(out)?),
            None => None,
        };
        cluster.append_conf(&[("archive_command", command)]);
        let t = Instant::now();
        // SAFETY: kill() sends SIGHUP to the postmaster this cluster started (a reload).
        if unsafe { libc::kill(postmaster, libc::SIGHUP) } != 0 {
            anyhow::bail!(
                "{name}: cannot signal the postmaster (pid {postmaster}): {}",
                std::io::Error::last_os_error()
            );
        }
        // Polled every 2 ms: a drain takes well under a second on a fast contender.
        while !self.all_done() {
            if t.elapsed() > timeout {
                anyhow::bail!(
                    "{name}: the archiver draining the set: not done within {} s",
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let secs = t.elapsed().as_secs_f64();
        if let Some(p) = perf {
            p.stop()?;
        }
        cluster.stop();
        Ok((secs, self.mib() / secs))
    }

    /// Whether every segment of the set is `.ready`.
    fn all_ready(&self) -> bool {
        let status = self.cluster.data_dir().join("pg_wal/archive_status");
        self.names
            .iter()
            .all(|s| status.join(format!("{s}.ready")).exists())
    }

    pub fn all_done(&self) -> bool {
        let status = self.cluster.data_dir().join("pg_wal/archive_status");
        self.names
            .iter()
            .all(|s| status.join(format!("{s}.done")).exists())
    }
}

/// A system-wide `perf record` running while a drain is timed.
struct Perf(std::process::Child);

impl Perf {
    fn start(out: &Path) -> Result<Perf> {
        let child = std::process::Command::new("perf")
            .args(["record", "-a", "-g", "-F", "1999", "-q", "-o"])
            .arg(out)
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting perf record (is perf installed?)")?;
        // perf opens its events before it records; give it that long before the clock starts.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Perf(child))
    }

    fn stop(mut self) -> Result<()> {
        let pid = libc::pid_t::try_from(self.0.id()).context("perf's pid")?;
        // SAFETY: kill() sends SIGINT to the perf child started above; perf writes its data.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let st = self.0.wait().context("waiting for perf record")?;
        // perf writes its data on SIGINT, then dies of it.
        use std::os::unix::process::ExitStatusExt;
        if !st.success() && st.signal() != Some(libc::SIGINT) && st.code() != Some(130) {
            anyhow::bail!("perf record failed ({st})");
        }
        Ok(())
    }
}

/// Names of the segments (and other files) with a `.ready` status.
fn ready(status: &Path) -> Vec<String> {
    std::fs::read_dir(status)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_suffix(".ready")
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Renames `.ready` to `.done` for the names `which` selects.
fn mark_done(status: &Path, which: impl Fn(&str) -> bool) -> Result<()> {
    for n in ready(status) {
        if which(&n) {
            std::fs::rename(
                status.join(format!("{n}.ready")),
                status.join(format!("{n}.done")),
            )
            .with_context(|| format!("marking {n} done"))?;
        }
    }
    Ok(())
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
    /// Whether the command stores the WAL (the archiver-alone floor does not).
    stores: bool,
}

impl Contender {
    fn empty(&self) -> Result<()> {
        empty_dir(&self.dest, self.keep)?;
        if let Some(s) = &self.spool {
            empty_dir(s, &[])?;
        }
        Ok(())
    }
}

fn contenders(ctx: &Ctx, set: &WalSet) -> Vec<Contender> {
    let archive_bin = ctx.bin("pitr-archive");
    let pitr = |name, short: &str, codec: &str| Contender {
        name,
        command: format!(
            "{} --dst-local {codec}{} %p",
            archive_bin.display(),
            set.dest(short).display()
        ),
        dest: set.dest(short),
        keep: &[],
        spool: None,
        stores: true,
    };
    let mut v = vec![
        pitr("pitr-archive zstd", "pz", "zstd="),
        pitr("pitr-archive zstd:3", "pz3", "zstd:3="),
        pitr("pitr-archive gzip", "pg", "gzip="),
        pitr("pitr-archive none", "pn", ""),
        Contender {
            name: "shell zstd -1 + sync + mv",
            command: format!(
                "zstd -1 -q -c %p > {0}/%f.tmp && sync {0}/%f.tmp && mv {0}/%f.tmp {0}/%f.zst",
                set.dest("sh").display()
            ),
            dest: set.dest("sh"),
            keep: &[],
            spool: None,
            stores: true,
        },
        Contender {
            name: "archiver alone (true)",
            command: "true".into(),
            dest: set.dest("true"),
            keep: &[],
            spool: None,
            stores: false,
        },
    ];
    let br = set.pgbackrest_dir();
    // The last pgBackRest contender is zst: its repository is what the restore part reads.
    for (name, extra) in [
        ("pgbackrest sync gz", "--compress-type=gz"),
        ("pgbackrest sync none", "--compress-type=none"),
        (
            "pgbackrest async zst 2 proc",
            "--compress-type=zst --archive-async --process-max=2",
        ),
        ("pgbackrest sync zst", "--compress-type=zst"),
    ] {
        v.push(Contender {
            name,
            command: format!(
                "pgbackrest --config={} --stanza=bench {extra} archive-push %p",
                set.pgbackrest_conf.display()
            ),
            dest: br.join("repo/archive"),
            keep: &["bench", "15-1", "archive.info", "archive.info.copy"],
            spool: Some(br.join("spool")),
            stores: true,
        });
    }
    v
}

/// Runs the archiving part.
pub fn run(ctx: &Ctx, set: &WalSet) -> Result<Part> {
    let contenders = contenders(ctx, set);
    let set_mib = set.mib();
    let cluster = &set.cluster;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    let mut sizes: Vec<u64> = vec![0; contenders.len()];
    for round in 0..ctx.rounds {
        for i in super::round_order(contenders.len(), round) {
            let c = &contenders[i];
            c.empty()?;
            set.reset_status()?;
            let (secs, rate) = set.drain(c.name, &c.command, Duration::from_secs(900))?;
            sizes[i] = dir_size(&c.dest);
            println!(
                "xtask: bench: archive round {} {:<30} {:>7.1} MiB/s ({secs:.2} s)",
                round + 1,
                c.name,
                rate
            );
            rates[i].push(rate);
        }
    }

    // Per call, by hand: each command once per segment of the set, serially, page cache warm,
    // with the status files PostgreSQL keeps (`.ready` until the call succeeds, then `.done`;
    // pgBackRest's async mode reads them).
    let wal = cluster.data_dir().join("pg_wal");
    let status = wal.join("archive_status");
    let mut lat: Vec<(f64, f64, f64)> = Vec::new();
    for c in &contenders {
        c.empty()?;
        set.reset_status()?;
        let mut secs = Vec::new();
        let mut rss = 0u64;
        for n in &set.names {
            let p = wal.join(n);
            let cmd = c
                .command
                .replace("%p", &p.display().to_string())
                .replace("%f", n);
            let t = run_timed(&mut shell_as_pg(&cmd))
                .with_context(|| format!("{}: archiving {n} by hand", c.name))?;
            secs.push(t.secs * 1000.0);
            std::fs::rename(
                status.join(format!("{n}.ready")),
                status.join(format!("{n}.done")),
            )?;
            rss = rss.max(t.max_rss_kib);
        }
        let p50 = percentile(&mut secs, 50.0);
        let p95 = percentile(&mut secs, 95.0);
        println!(
            "xtask: bench: per call {:<30} p50 {p50:.1} ms p95 {p95:.1} ms peak RSS {:.1} MiB",
            c.name,
            rss as f64 / 1024.0
        );
        lat.push((p50, p95, rss as f64 / 1024.0));
    }

    let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    let by_name = |n: &str| -> f64 {
        contenders
            .iter()
            .position(|c| c.name == n)
            .map_or(f64::NAN, |i| medians[i])
    };
    let mut md = format!(
        "### Archiving\n\nPostgreSQL's archiver draining {} segments ({set_mib:.0} MiB of WAL) to a local \
         directory, timed from setting archive_command (a reload) to the last segment archived, median of {} rounds; per call: each command run by hand once per segment (p50/p95 wall time, \
         peak RSS of the command and what it waited for; pgBackRest async returns once its background process has \
         taken the segment).\n\n\
         | contender | MiB/s of WAL | archived size | per call p50 ms | p95 ms | peak RSS MiB |\n|---|---|---|---|---|---|\n",
        set.names.len(),
        ctx.rounds
    );
    let mut results = Vec::new();
    for (i, c) in contenders.iter().enumerate() {
        let size = if c.stores {
            format!(
                "{:.1} %",
                100.0 * sizes[i] as f64 / (set_mib * f64::from(1 << 20))
            )
        } else {
            "—".into()
        };
        md.push_str(&format!(
            "| {} | {:.0} | {size} | {:.1} | {:.1} | {:.1} |\n",
            c.name, medians[i], lat[i].0, lat[i].1, lat[i].2
        ));
        results.push(serde_json::json!({
            "name": c.name,
            "command": c.command,
            "median_mib_s": round2(medians[i]),
            "rounds_mib_s": rates[i].iter().map(|r| round2(*r)).collect::<Vec<_>>(),
            "archived_bytes": if c.stores { Some(sizes[i]) } else { None },
            "per_call_p50_ms": round2(lat[i].0),
            "per_call_p95_ms": round2(lat[i].1),
            "peak_rss_mib": round2(lat[i].2),
        }));
    }
    let zstd = by_name("pitr-archive zstd");
    let ratios = vec![
        Ratio::new(
            "pitr-archive zstd / pgbackrest sync zst",
            zstd / by_name("pgbackrest sync zst"),
            Some(1.6),
        ),
        Ratio::new(
            "pitr-archive zstd / pgbackrest sync gz",
            zstd / by_name("pgbackrest sync gz"),
            Some(5.0),
        ),
        Ratio::new(
            "pitr-archive zstd / shell zstd -1 + sync + mv",
            zstd / by_name("shell zstd -1 + sync + mv"),
            Some(1.1),
        ),
        Ratio::new(
            "pitr-archive zstd / pgbackrest async zst 2 proc",
            zstd / by_name("pgbackrest async zst 2 proc"),
            None,
        ),
        Ratio::new(
            "pitr-archive gzip / pgbackrest sync gz",
            by_name("pitr-archive gzip") / by_name("pgbackrest sync gz"),
            None,
        ),
        Ratio::new(
            "pitr-archive none / pgbackrest sync none",
            by_name("pitr-archive none") / by_name("pgbackrest sync none"),
            None,
        ),
    ];
    md.push('\n');
    md.push_str(&ratio_table(&ratios));
    Ok(Part {
        key: "archive".into(),
        markdown: md,
        json: serde_json::json!({
            "segments": set.names.len(),
            "segment_bytes": set.seg_bytes,
            "rounds": ctx.rounds,
            "results": results,
            "ratios": ratios.iter().map(Ratio::json).collect::<Vec<_>>(),
        }),
    })
}

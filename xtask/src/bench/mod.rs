//! `cargo xtask bench`: pitr measured against its peers in one run, on this machine.
//!
//! Not a test: nothing here asserts a time. It builds release binaries, installs pgBackRest and
//! zstd from apt when missing (as root on Debian), creates throwaway PostgreSQL 15 clusters and
//! measures, with the contenders interleaved (A B C … A B C …) and medians over `--rounds`:
//!
//! - [`archive`]: PostgreSQL's own archiver draining a backlog of a WAL set, plus the
//!   per-call latency and peak RSS of each archive command run by hand over the same set;
//! - [`restore`]: a standby replaying that WAL set from each contender's archive;
//! - [`backup`]: a base backup of a cluster, and pitr-backup's peak RSS as the number
//!   of files grows;
//! - [`verify`]: `pitr-monitor --check verify` against `pgbackrest verify`, each reading back
//!   its own archive of the WAL set.
//!
//! It prints one markdown table per part with figures and ratios (pitr / peer, with the targets
//! of the performance issue) and writes the same as JSON under `target/bench/`.
//!
//! The harness is the test crate's (`pitr_tests`): its functions panic on failure, and with
//! `panic = "abort"` a failed bench can leave its server running in a temp directory; the
//! message says which.

mod archive;
mod backup;
mod cpu;
mod data;
mod pgbrtls;
mod remote;
mod restore;
mod verify;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use argh::FromArgs;
use pitr_tests::pg_user;

/// Measure pitr against pgBackRest, pg_basebackup and shell baselines (prints markdown tables
/// and writes target/bench/bench.json).
#[derive(FromArgs)]
#[argh(subcommand, name = "bench")]
pub struct BenchArgs {
    /// measurement rounds per contender (default 3; the median is reported)
    #[argh(option, default = "3")]
    rounds: usize,

    /// WAL segments in the archiving and restore set (default 100)
    #[argh(option, default = "100")]
    segments: usize,

    /// pgbench scale of the base backup cluster (default 65, about 1 GB)
    #[argh(option, default = "65")]
    scale: u32,

    /// checkout of OmniPITR for the remote part's omnipitr-archive row (default:
    /// ../shared/peers/omnipitr beside the repository)
    #[argh(option)]
    omnipitr: Option<PathBuf>,

    /// data sets, comma-separated (default both): pgbench (its WAL compresses about 13x) and
    /// mixed (documents with text, jsonb and uuid columns churned through five indexes, WAL that
    /// compresses 2-5x as real WAL does); every part runs on each
    #[argh(option, default = "String::from(\"pgbench,mixed\")")]
    data: String,

    /// run only these parts, comma-separated: archive, remote, restore, backup, verify
    /// (default: all; remote, restore and verify use the WAL set archive builds, and restore
    /// and verify need archive)
    #[argh(option)]
    only: Option<String>,

    /// run only the remote part's contenders whose names contain one of these strings,
    /// separated by `|` (names hold commas; for profiling one row: ratios missing a side and
    /// the restore-from-store measurement are left out)
    #[argh(option)]
    contenders: Option<String>,

    /// record each remote drain with `perf record -a -g` into DIR/<run>.perf.data
    #[argh(option)]
    perf: Option<PathBuf>,
}

/// Everything the parts share: where the release binaries are, how many rounds.
pub struct Ctx {
    pub bin: PathBuf,
    /// OmniPITR's checkout, if given.
    pub omnipitr: Option<PathBuf>,
    pub rounds: usize,
    pub segments: usize,
    pub scale: u32,
    /// The data set of this pass.
    pub data: data::Data,
    /// `--contenders`: the remote part runs only the contenders whose names contain one.
    pub contenders: Option<Vec<String>>,
    /// `--perf DIR`: where the remote part's drain profiles go.
    pub perf: Option<PathBuf>,
}

impl Ctx {
    /// The release binary `name`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }
}

/// One part's results: the markdown printed and the JSON written.
pub struct Part {
    pub key: String,
    pub markdown: String,
    pub json: serde_json::Value,
}

impl Part {
    /// The part with the data set it ran on stated first: `about` heads its report, and its
    /// JSON gains `data_zstd_ratio`.
    fn about(mut self, about: &str, ratio: f64) -> Part {
        self.markdown = format!("{about}\n\n{}", self.markdown);
        if let Some(map) = self.json.as_object_mut() {
            map.insert("data".into(), about.into());
            map.insert("data_zstd_ratio".into(), round2(ratio).into());
        }
        self
    }
}

/// A ratio of pitr to a peer with the target (if it sets one).
pub struct Ratio {
    pub what: String,
    pub value: f64,
    pub target: Option<f64>,
}

impl Ratio {
    pub fn new(what: impl Into<String>, value: f64, target: Option<f64>) -> Ratio {
        Ratio {
            what: what.into(),
            value,
            target,
        }
    }

    pub fn met(&self) -> Option<bool> {
        self.target.map(|t| self.value >= t)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "what": self.what,
            "value": round2(self.value),
            "target": self.target,
            "met": self.met(),
        })
    }
}

/// Writes into `dir` pitr's options file for `garage` through the TLS `front` (endpoint,
/// region, key file, the front's CA) and returns it.
pub fn pitr_https_config(
    dir: &Path,
    garage: &pitr_tests::GarageCluster,
    front: &pitr_tests::TlsFront,
) -> PathBuf {
    let key = garage.pitr_config(dir).with_file_name("garage.key");
    let config = dir.join("https.conf");
    pg_user().write_file(
        &config,
        format!(
            "--s3-endpoint {}\n--s3-region {}\n--s3-key-file {}\n--s3-ca-file {}\n",
            front.endpoint(),
            garage.region(),
            key.display(),
            front.ca_file().display()
        )
        .as_bytes(),
    );
    config
}

/// The `[global]` lines of a pgBackRest repository in `garage`'s bucket at `repo_path`, reached
/// through the TLS `front` (pgBackRest 2.45 speaks S3 only over TLS; it is told not to verify
/// the front's certificate).
pub fn pgbackrest_s3_repo(
    garage: &pitr_tests::GarageCluster,
    front: &pitr_tests::TlsFront,
    repo_path: &str,
) -> String {
    let port = front.port();
    format!(
        "repo1-type=s3\nrepo1-path={repo_path}\nrepo1-s3-bucket={bucket}\n\
         repo1-s3-endpoint=127.0.0.1\nrepo1-storage-port={port}\nrepo1-s3-region={region}\n\
         repo1-s3-key={key}\nrepo1-s3-key-secret={secret}\nrepo1-s3-uri-style=path\n\
         repo1-storage-verify-tls=n\n",
        bucket = garage.bucket(),
        region = garage.region(),
        key = garage.key_id(),
        secret = garage.secret(),
    )
}

/// Renders ratios as a markdown table.
pub fn ratio_table(ratios: &[Ratio]) -> String {
    let mut s = String::from("| ratio | value | target |\n|---|---|---|\n");
    for r in ratios {
        let t = match r.target {
            Some(t) => format!("≥ {t} {}", if r.value >= t { "met" } else { "**MISSED**" }),
            None => "—".to_string(),
        };
        let _ = writeln!(s, "| {} | {:.2} | {t} |", r.what, r.value);
    }
    s
}

pub fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The median of `v` (sorted in place); NaN when empty.
pub fn median(v: &mut [f64]) -> f64 {
    percentile(v, 50.0)
}

/// The `p`th percentile of `v` (nearest rank, sorted in place); NaN when empty.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// The regular files under `dir`, recursively (directories that cannot be read are passed
/// over).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out
}

/// Total size of the regular files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

/// Number of regular files under `dir`.
pub fn file_count(dir: &Path) -> u64 {
    files_under(dir).len() as u64
}

/// Empties `dir` except the names in `keep`, recursing into kept directories (so that
/// pgBackRest's `archive/<stanza>/archive.info` survives while its WAL directories go).
pub fn empty_dir(dir: &Path, keep: &[&str]) -> Result<()> {
    for ent in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let ent = ent?;
        let name = ent.file_name().to_string_lossy().into_owned();
        let p = ent.path();
        if keep.contains(&name.as_str()) {
            if ent.file_type()?.is_dir() {
                empty_dir(&p, keep)?;
            }
            continue;
        }
        if ent.file_type()?.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        }
        .with_context(|| format!("removing {}", p.display()))?;
    }
    Ok(())
}

/// Where this machine's kernel counts the free memory it has handed back to its host
/// (page reporting): present on a VM whose host takes freed guest memory back.
const REPORTED_KIB: &str = "/sys/module/page_reporting/parameters/reported_kib";

/// How long the count of memory handed back must stand still before a measurement starts: the
/// kernel reports in passes about 2 s apart, so two missed passes.
const SETTLED_FOR: Duration = Duration::from_secs(5);

/// Waits until the memory freed before a measurement has been handed back to the host, so that
/// every measurement starts from the same state of memory. On a VM with page reporting a page
/// freed a few seconds earlier is still backed and cheap to fill, one handed back costs about
/// ten times more (a 700 MB `dd` into the page cache: 0.2 s of system time on memory freed just
/// before, 1.3-2.4 s on memory freed 30 s before). Without this a contender that runs right
/// after another's copies were removed writes into the freed pages while one after a
/// contender that keeps its copies pays for new ones: the order of contenders would decide
/// part of a ratio. Returns at once where the kernel has no such count; gives up, with a line
/// saying so, after `limit`.
pub fn settle_memory(limit: Duration) -> Duration {
    let read = || {
        std::fs::read_to_string(REPORTED_KIB)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let start = Instant::now();
    let Some(mut last) = read() else {
        return Duration::ZERO;
    };
    let mut still_since = Instant::now();
    while still_since.elapsed() < SETTLED_FOR {
        if start.elapsed() > limit {
            println!(
                "xtask: bench: freed memory still being handed back to the host after {} s; measuring anyway",
                limit.as_secs()
            );
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        let now = read().unwrap_or(last);
        if now != last {
            last = now;
            still_since = Instant::now();
        }
    }
    start.elapsed()
}

/// What one timed run of a program cost.
pub struct Timed {
    pub secs: f64,
    /// Peak resident set size of the program or of its largest descendant it waited for, KiB.
    pub max_rss_kib: u64,
}

/// Runs `cmd` to completion (stdout discarded, stderr kept for the error), timing it and
/// reading its peak RSS from `wait4`. Fails when it does not exit 0.
pub fn run_timed(cmd: &mut Command) -> Result<Timed> {
    let err = tempfile::tempfile().context("creating a temp file for stderr")?;
    let mut err_read = err.try_clone()?;
    let shown = crate::display(cmd);
    let t = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .with_context(|| format!("running {shown}"))?;
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data, zero is a valid value; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child, not yet waited for; status and ru are valid pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let secs = t.elapsed().as_secs_f64();
    if r != pid {
        bail!("wait4 for {shown}: {}", std::io::Error::last_os_error());
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !ok {
        use std::io::{Read, Seek};
        let mut text = String::new();
        err_read.seek(std::io::SeekFrom::Start(0))?;
        err_read.read_to_string(&mut text)?;
        bail!("{shown} failed (wait status {status}): {}", text.trim());
    }
    Ok(Timed {
        secs,
        max_rss_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0),
    })
}

/// `sh -c COMMAND` as the PostgreSQL user, the way the server runs archive and restore commands.
pub fn shell_as_pg(command: &str) -> Command {
    let mut cmd = pg_user().command("/bin/sh");
    cmd.arg("-c").arg(command);
    cmd
}

/// Runs pgBackRest as the PostgreSQL user with `conf`.
pub fn pgbackrest_as_pg(conf: &Path, args: &[&str]) -> Result<()> {
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

/// Polls `cond` every 20 ms until it holds; fails after `timeout` naming `what`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            bail!("{what}: not done within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
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
    // The TLS front of the object-store rows (pitr_tests::TlsFront).
    if crate::deps::find_on_path("stunnel4").is_none() {
        missing.push("stunnel4");
    }
    if crate::deps::find_on_path("openssl").is_none() {
        missing.push("openssl");
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

/// Runs the benchmark.
pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    let parts: Vec<String> = match &args.only {
        Some(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
        None => vec![
            "archive".into(),
            "remote".into(),
            "restore".into(),
            "verify".into(),
            "backup".into(),
        ],
    };
    for p in &parts {
        if !["archive", "remote", "restore", "backup", "verify"].contains(&p.as_str()) {
            bail!("--only: unknown part {p:?} (archive, remote, restore, backup, verify)");
        }
    }
    for p in ["restore", "verify"] {
        if parts.iter().any(|q| q == p) && !parts.iter().any(|q| q == "archive") {
            bail!("--only: {p} reads the archives the archive part writes; add archive");
        }
    }
    ensure_tools()?;
    let root = crate::project_root();
    crate::run(Command::new(crate::cargo()).current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "pitr-archive",
        "-p",
        "pitr-restore",
        "-p",
        "pitr-backup",
        "-p",
        "pitr-monitor",
    ]))?;
    let sets = data::Data::parse_list(&args.data)?;
    let want = |p: &str| parts.iter().any(|q| q == p);
    let mut done: Vec<Part> = Vec::new();
    for set_data in sets {
        let ctx = Ctx {
            bin: crate::target_dir(&root).join("release"),
            omnipitr: args.omnipitr.clone(),
            rounds: args.rounds,
            segments: args.segments,
            scale: args.scale,
            data: set_data,
            contenders: args
                .contenders
                .as_ref()
                .map(|c| c.split('|').map(|p| p.trim().to_string()).collect()),
            perf: args.perf.clone(),
        };
        let mut these = Vec::new();
        if want("archive") || want("remote") {
            let set = archive::WalSet::build(&ctx)?;
            let about = format!(
                "WAL set: {} ({} segments, zstd -3 makes it {:.1}x smaller)",
                set_data.name(),
                set.names.len(),
                set.zstd_ratio
            );
            let mut wal_parts = Vec::new();
            if want("archive") {
                wal_parts.push(archive::run(&ctx, &set)?);
            }
            if want("remote") {
                wal_parts.push(remote::run(&ctx, &set)?);
            }
            if want("restore") {
                wal_parts.push(restore::run(&ctx, &set)?);
            }
            if want("verify") {
                wal_parts.push(verify::run(&ctx, &set)?);
            }
            these.extend(
                wal_parts
                    .into_iter()
                    .map(|p| p.about(&about, set.zstd_ratio)),
            );
        }
        if want("backup") {
            let (part, ratio) = backup::run(&ctx)?;
            let about = format!(
                "Data set: {} (zstd -3 makes its files {ratio:.1}x smaller)",
                set_data.name()
            );
            these.push(part.about(&about, ratio));
        }
        done.extend(these.into_iter().map(|mut p| {
            p.key = set_data.key(&p.key);
            p
        }));
    }

    let out_dir = crate::target_dir(&root).join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let mut md = format!(
        "pitr bench, {} rounds, medians; {} cores\n\n",
        args.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut json = serde_json::Map::new();
    for p in &done {
        md.push_str(&p.markdown);
        md.push('\n');
        json.insert(p.key.to_string(), p.json.clone());
        std::fs::write(
            out_dir.join(format!("{}.json", p.key)),
            serde_json::to_string_pretty(&p.json)?,
        )?;
    }
    println!("\n{md}");
    std::fs::write(out_dir.join("bench.md"), &md)?;
    std::fs::write(
        out_dir.join("bench.json"),
        serde_json::to_string_pretty(&serde_json::Value::Object(json))?,
    )?;
    println!(
        "xtask: bench: wrote {} and bench.md",
        out_dir.join("bench.json").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The order of the contenders in round `round` (from 0): the list turned by one place each
/// round, so that over as many rounds as contenders each one runs once in every position. The
/// machine drifts within a run (a contender's rate moved by a third from the first round to the
/// last in one run of 2026-12-06), and a fixed order gave the later places the faster machine.
pub fn round_order(n: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (k + round) % n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_contender_takes_each_place_once_in_as_many_rounds() {
        let orders: Vec<Vec<usize>> = (0..3).map(|r| round_order(3, r).collect()).collect();
        assert_eq!(orders, [[0, 1, 2], [1, 2, 0], [2, 0, 1]]);
        assert_eq!(round_order(1, 5).collect::<Vec<_>>(), [0]);
        assert_eq!(round_order(0, 2).count(), 0);
    }
}

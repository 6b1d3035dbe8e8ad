//! What the campaigns share: the run's context and random choices, running one of our binaries
//! in its own process group and killing it at a chosen moment, decoding archived files
//! independently of pitr-common, and looking at directories before and after.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use pitr_tests::pg_user;

/// The small form (CI) or the full campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Quick,
    Full,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Quick => "quick",
            Mode::Full => "full",
        }
    }
}

/// The run's settings, shared by every campaign.
pub struct Ctx {
    pub mode: Mode,
    pub seed: u64,
    /// `--run N`: only that run of each campaign.
    pub only_run: Option<u64>,
    pub bin_dir: PathBuf,
    /// The scratch directory (swept at the end).
    pub root: PathBuf,
    /// The workspace root.
    pub project: PathBuf,
}

impl Ctx {
    /// The path of our binary `name`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// `quick` or `full`, by mode.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        match self.mode {
            Mode::Quick => quick,
            Mode::Full => full,
        }
    }

    /// The indices of the runs to make: `0..n` (n by mode), or only `--run N`.
    pub fn runs(&self, quick: u64, full: u64) -> Vec<u64> {
        let n = self.pick(quick, full);
        match self.only_run {
            Some(r) => vec![r],
            None => (0..n).collect(),
        }
    }

    /// The generator of run `run` of `campaign`: the same for the same seed, whatever else ran.
    pub fn rng(&self, campaign: &str, run: u64) -> Rng {
        let mut h = self.seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in campaign.bytes() {
            h = splitmix(h ^ u64::from(b));
        }
        Rng(splitmix(h ^ run.wrapping_mul(0xD1B5_4A32_D192_ED03)))
    }

    /// The command that replays run `run` of `campaign`.
    pub fn repro(&self, campaign: &str, run: u64) -> String {
        format!(
            "cargo xtask faults{} --only {campaign} --seed {} --run {run}",
            if self.mode == Mode::Quick {
                " --quick"
            } else {
                ""
            },
            self.seed
        )
    }

    /// A fresh directory `name` below the scratch directory, owned by the PostgreSQL user
    /// (mode 0700), created with its parents.
    pub fn dir(&self, name: &str) -> PathBuf {
        let path = self.root.join(name);
        let _ = fs::remove_dir_all(&path);
        pg_dir(&path);
        path
    }

    /// `text` with the scratch directory shown as `$FAULTS` and our binaries by name.
    pub fn show(&self, text: &str) -> String {
        text.replace(&format!("{}/", self.bin_dir.display()), "")
            .replace(&self.root.display().to_string(), "$FAULTS")
    }
}

/// Creates `path` (and its parents up to the scratch directory) owned by the PostgreSQL user,
/// mode 0700.
pub fn pg_dir(path: &Path) {
    pg_user().create_dir(path, 0o700);
}

/// A seed from the clock, for runs without `--seed`.
pub fn clock_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Small enough to type; the low bits of the clock are the random ones.
    (splitmix(nanos as u64) ^ u64::from(std::process::id())) % 1_000_000
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic generator (splitmix64): the campaigns need reproducible choices, not
/// cryptographic ones.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix(self.0)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `0..n` as an index.
    pub fn index(&mut self, n: usize) -> usize {
        usize::try_from(self.below(n as u64)).unwrap_or(0)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One of `items`.
    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }
}

/// A command line of one of our binaries (or any program), run as the PostgreSQL user in its
/// own process group, with stdout and stderr captured in files.
#[derive(Debug, Clone)]
pub struct Call {
    program: PathBuf,
    args: Vec<OsString>,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl Call {
    /// Our binary `name`.
    pub fn new(ctx: &Ctx, name: &str) -> Call {
        Call::program(ctx.bin(name))
    }

    /// Any program.
    pub fn program(program: impl Into<PathBuf>) -> Call {
        Call {
            program: program.into(),
            args: Vec::new(),
            cwd: PathBuf::from("/"),
            env: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Call {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Call
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs in `dir` (default `/`); PostgreSQL runs archive and restore commands in the data
    /// directory.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Call {
        self.cwd = dir.into();
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Call {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The command line, program by file name.
    pub fn line(&self) -> String {
        let mut words = vec![self.program.file_name().map_or_else(
            || self.program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )];
        words.extend(self.args.iter().map(|a| shell_word(&a.to_string_lossy())));
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        env.into_iter().chain(words).collect::<Vec<_>>().join(" ")
    }

    /// Starts it; stdout and stderr go to files below `out_dir`.
    pub fn spawn(&self, out_dir: &Path) -> Result<Running> {
        let mut cmd = pg_user().command(&self.program);
        cmd.args(&self.args).current_dir(&self.cwd);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        fs::create_dir_all(out_dir).with_context(|| format!("mkdir {}", out_dir.display()))?;
        let stamp = format!(
            "{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let out_path = out_dir.join(format!("out-{stamp}"));
        let err_path = out_dir.join(format!("err-{stamp}"));
        let out = fs::File::create(&out_path)?;
        let err = fs::File::create(&err_path)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        // The campaign blocks SIGINT/SIGTERM/SIGHUP for its own signal thread; the programs
        // under test must see the signals the campaign sends them.
        crate::scratch::unblock_in_child(&mut cmd);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.line()))?;
        Ok(Running {
            child,
            started,
            out_path,
            err_path,
        })
    }

    /// Runs it to the end, killing its group after `timeout`.
    pub fn run(&self, out_dir: &Path, timeout: Duration) -> Result<Done> {
        self.spawn(out_dir)?.wait_timeout(timeout)
    }
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `word` quoted for a shell when it needs it.
pub fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:%,+@^".contains(&b))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Who a kill is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The process alone (the OOM killer, an operator's `kill -9 PID`): its children live on.
    Process,
    /// Its whole process group (what a terminal's Ctrl-C or a crash of the caller does).
    Group,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Process => "process",
            Target::Group => "group",
        }
    }
}

/// A started program.
pub struct Running {
    child: Child,
    started: Instant,
    out_path: PathBuf,
    err_path: PathBuf,
}

impl Running {
    /// Sends `sig` to the process or its group; false when the process had already exited
    /// (the fault was not injected).
    pub fn signal(&mut self, sig: libc::c_int, target: Target) -> bool {
        if self.child.try_wait().ok().flatten().is_some() {
            return false;
        }
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return false;
        };
        let who = match target {
            Target::Process => pid,
            Target::Group => -pid,
        };
        // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child, so
        // it cannot have been reused.
        unsafe { libc::kill(who, sig) == 0 }
    }

    /// Whether the process has a handler for `sig` right now (SigCgt of `/proc/PID/status`):
    /// false before its `main` installed one, when the default action (death by the signal) is
    /// what the signal gets. None when the status cannot be read (the process has exited).
    pub fn catches(&self, sig: libc::c_int) -> Option<bool> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())?;
        let bit = u32::try_from(sig).ok()?.checked_sub(1)?;
        Some(mask & (1u64 << bit) != 0)
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// What it has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        fs::read(&self.err_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits for it; after `timeout` kills its group and says so in the result.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Done> {
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                timed_out = true;
                self.signal(libc::SIGKILL, Target::Group);
                break self.child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let elapsed = self.started.elapsed();
        let read = |p: &Path| {
            let mut s = Vec::new();
            let _ = fs::File::open(p).and_then(|mut f| f.read_to_end(&mut s));
            let _ = fs::remove_file(p);
            String::from_utf8_lossy(&s).into_owned()
        };
        Ok(Done {
            status,
            stdout: read(&self.out_path),
            stderr: read(&self.err_path),
            elapsed,
            timed_out,
            pgid: self.child.id(),
        })
    }
}

/// A finished program.
#[derive(Debug, Clone)]
pub struct Done {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub timed_out: bool,
    /// Its process group (its pid), for [`wait_group_gone`].
    pub pgid: u32,
}

impl Done {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// Death by SIGABRT (or status 134 through a shell): what a panic gives with
    /// `panic = "abort"`.
    pub fn panicked(&self) -> bool {
        self.signal() == Some(libc::SIGABRT)
            || self.code() == Some(134)
            || self.stderr.contains("panicked at")
    }

    /// The status as text: `exit 2`, `signal 9`.
    pub fn status_text(&self) -> String {
        match (self.code(), self.signal()) {
            (Some(c), _) => format!("exit {c}"),
            (_, Some(s)) => format!("signal {s}"),
            _ => "unknown status".to_owned(),
        }
    }

    /// The log lines at level ERROR or FATAL (OmniPITR's format: `... : LEVEL : message`); a
    /// HINT is a level of its own, never one of them.
    pub fn errors(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .chain(self.stdout.lines())
            .filter(|l| l.contains(" : ERROR : ") || l.contains(" : FATAL : "))
            .collect()
    }

    /// Whether a line at the `HINT` level was logged.
    pub fn has_hint(&self) -> bool {
        self.stderr.contains(" : HINT : ") || self.stdout.contains(" : HINT : ")
    }

    /// The first error message, or the last stderr line, for findings.
    pub fn first_error(&self) -> String {
        self.errors()
            .first()
            .map(|l| message(l).to_owned())
            .or_else(|| self.stderr.lines().last().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// The message part of a log line (after `: LEVEL : `).
pub fn message(line: &str) -> &str {
    for level in [" : ERROR : ", " : FATAL : ", " : LOG : ", " : WARNING : "] {
        if let Some((_, m)) = line.split_once(level) {
            return m;
        }
    }
    line
}

/// Waits until no live process is in process group `pgid` (zombies do not count); returns
/// false after `timeout`, having sent SIGKILL to the group.
pub fn wait_group_gone(pgid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if group_members(pgid).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            if let Ok(p) = libc::pid_t::try_from(pgid) {
                // SAFETY: no memory-safety preconditions; an empty group gives ESRCH.
                unsafe {
                    libc::kill(-p, libc::SIGKILL);
                }
            }
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The live (non-zombie) processes of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            found.push(pid);
        }
    }
    found
}

/// The pids of live processes whose command line contains every one of `fragments`.
pub fn pids_matching(fragments: &[&str]) -> Vec<u32> {
    pitr_tests::procs::processes_matching(fragments)
        .into_iter()
        .map(|p| p.pid)
        .collect()
}

/// Sends `sig` to `pid`.
pub fn kill_pid(pid: u32, sig: libc::c_int) {
    if let Ok(p) = libc::pid_t::try_from(pid) {
        // SAFETY: no memory-safety preconditions; a vanished pid gives ESRCH.
        unsafe {
            libc::kill(p, sig);
        }
    }
}

/// The content of an archived file, decoded by its name's extension (`.zst`, `.gz`, none)
/// with the reference libraries, independently of pitr-common.
pub fn decode(path: &Path) -> Result<Vec<u8>> {
    let raw = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.to_string_lossy();
    let ext = [".zst", ".gz"]
        .into_iter()
        .find(|e| name.ends_with(e))
        .unwrap_or("");
    decode_bytes(&raw, ext, &path.display().to_string())
}

/// `raw` decoded for `ext` (`.zst`, `.gz`, anything else as it is); `what` names it in errors.
pub fn decode_bytes(raw: &[u8], ext: &str, what: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    match ext {
        ".zst" => {
            zstd::stream::read::Decoder::new(raw)
                .and_then(|mut d| d.read_to_end(&mut out))
                .with_context(|| format!("zstd-decoding {what}"))?;
        }
        ".gz" => {
            flate2::read::MultiGzDecoder::new(raw)
                .read_to_end(&mut out)
                .with_context(|| format!("gzip-decoding {what}"))?;
        }
        _ => out = raw.to_vec(),
    }
    Ok(out)
}

/// `bytes` encoded for `ext` (`""`, `.zst`, `.gz`), as another tool would write it.
pub fn encode(bytes: &[u8], ext: &str) -> Result<Vec<u8>> {
    use std::io::Write;
    Ok(match ext {
        ".zst" => zstd::stream::encode_all(bytes, 3)?,
        ".gz" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(bytes)?;
            e.finish()?
        }
        "" => bytes.to_vec(),
        other => bail!("no encoder for {other:?}"),
    })
}

/// One entry of a directory listing: size, mtime and inode, to tell a changed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub len: u64,
    pub mtime_ns: i128,
    pub ino: u64,
    pub dir: bool,
}

/// Every entry below `dir` (relative paths), recursively; empty when `dir` does not exist.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Stamp> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Stamp>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.insert(
                rel,
                Stamp {
                    len: meta.len(),
                    mtime_ns: i128::from(meta.mtime()) * 1_000_000_000
                        + i128::from(meta.mtime_nsec()),
                    ino: meta.ino(),
                    dir: meta.is_dir(),
                },
            );
            if meta.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What changed between two snapshots: new, changed and removed entries (directories'
/// own mtimes are ignored: a temp file created and removed again changes them).
pub fn changes(before: &BTreeMap<PathBuf, Stamp>, after: &BTreeMap<PathBuf, Stamp>) -> Vec<String> {
    let mut out = Vec::new();
    for (p, s) in after {
        match before.get(p) {
            None => out.push(format!("new {}", p.display())),
            Some(b) if !s.dir && (b.len != s.len || b.mtime_ns != s.mtime_ns || b.ino != s.ino) => {
                out.push(format!("changed {}", p.display()));
            }
            _ => {}
        }
    }
    for p in before.keys() {
        if !after.contains_key(p) {
            out.push(format!("removed {}", p.display()));
        }
    }
    out
}

/// The names in `dir` (not recursive), sorted; empty when it does not exist.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Copies `from` to `to` and gives it to the PostgreSQL user.
pub fn copy_as_pg(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    pg_user().chown(to);
    Ok(())
}

/// Writes `bytes` to `path` owned by the PostgreSQL user, replacing it through a rename (so a
/// reader never sees it half-written).
pub fn put_as_pg(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".faults-put.{}",
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    pg_user().chown(&tmp);
    fs::rename(&tmp, path).with_context(|| format!("renaming onto {}", path.display()))?;
    Ok(())
}

/// Sleeps `d`: only ever the moment a fault is injected at, never a wait for a condition.
pub fn pause(d: Duration) {
    std::thread::sleep(d);
}

/// The median of `v` (sorted in place); zero when empty.
pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Whether `name` is a WAL segment name (24 hex digits).
pub fn is_segment_name(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A started cluster (16 MiB segments unless `opts` say otherwise, WAL kept) after
/// `pgbench -i -s scale` and as many inserts as it takes for `want` completed segments; returns
/// the names of its completed segments in `pg_wal`, oldest first: real WAL, full to the last
/// page.
pub fn cluster_with_segments(
    name: &str,
    opts: pitr_tests::ClusterOpts,
    scale: u32,
    want: usize,
) -> (pitr_tests::Cluster, Vec<String>) {
    let cluster = pitr_tests::Cluster::init(name, opts.set("wal_keep_size", "4GB"));
    cluster.start();
    cluster.pgbench_init(scale);
    cluster.psql("CREATE TABLE filler (i int, pad text)");
    loop {
        let current = cluster.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
        let segments: Vec<String> = names(&cluster.wal_dir())
            .into_iter()
            .filter(|n| is_segment_name(n) && n.as_str() < current.as_str())
            .collect();
        if segments.len() >= want {
            return (cluster, segments);
        }
        // About 6 MB of WAL.
        cluster.psql("INSERT INTO filler SELECT g, repeat(md5(g::text), 10) FROM generate_series(1, 15000) g");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_per_campaign_and_run() {
        let ctx = Ctx {
            mode: Mode::Quick,
            seed: 7,
            only_run: None,
            bin_dir: PathBuf::new(),
            root: PathBuf::new(),
            project: PathBuf::new(),
        };
        let a: Vec<u64> = (0..4).map(|_| ctx.rng("x", 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(ctx.rng("x", 3).next_u64(), ctx.rng("x", 4).next_u64());
        assert_ne!(ctx.rng("x", 3).next_u64(), ctx.rng("y", 3).next_u64());
        let mut r = ctx.rng("x", 0);
        for _ in 0..1000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(r.below(7) < 7);
        }
        assert_eq!(ctx.runs(3, 10), vec![0, 1, 2]);
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("--dst-local"), "--dst-local");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }

    #[test]
    fn snapshot_changes_see_new_changed_and_removed_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a"), "1").expect("write");
        fs::write(dir.path().join("b"), "1").expect("write");
        let before = snapshot(dir.path());
        fs::write(dir.path().join("a"), "22").expect("write");
        fs::remove_file(dir.path().join("b")).expect("rm");
        fs::write(dir.path().join("c"), "1").expect("write");
        let after = snapshot(dir.path());
        assert_eq!(
            changes(&before, &after),
            ["changed a", "new c", "removed b"]
        );
    }

    #[test]
    fn encode_and_decode_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = b"0123456789".repeat(1000);
        for ext in ["", ".zst", ".gz"] {
            let p = dir.path().join(format!("f{ext}"));
            fs::write(&p, encode(&data, ext).expect("encode")).expect("write");
            assert_eq!(decode(&p).expect("decode"), data);
        }
    }
}

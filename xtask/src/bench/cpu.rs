//! Where a remote drain's CPU goes: the receivers' (the rsync daemons, pgBackRest's repository
//! server, the Garage nodes and their TLS front), which on the seed's hosts run on the standbys
//! or the object store, and the rest, which is the primary's: PostgreSQL's archiver, the
//! archiving commands, their compressors and the sending side of every transfer.
//!
//! The receivers are moved, with every process below them, into a cgroup of the cgroup-v1
//! `cpuacct` controller; what they fork afterwards (a daemon's child per connection) is born
//! there, and `cpuacct.usage` counts every task that was ever in it. The machine's busy time is
//! the `cpu` line of `/proc/stat` (user, nice, system, irq, softirq: steal and idle left out).
//! The primary's share is the difference. Kernel work that runs in no task of theirs (page-cache
//! writeback, a network interrupt that lands on another task) is counted as the primary's,
//! which charges the contender with more remote copies for the receivers' disks.
//!
//! Where the controller is not mounted or cannot be written (not root), there is no split, and
//! the bench says so once; the rates are measured as before.

use std::path::{Path, PathBuf};

/// Where cgroup v1's `cpuacct` controller is mounted on the machines the bench runs on.
const CPUACCT: &str = "/sys/fs/cgroup/cpuacct";

/// The receivers' cgroup, removed (its processes moved back) when dropped.
pub struct Receivers {
    dir: Option<PathBuf>,
}

impl Receivers {
    /// Moves the processes `pids` and everything below them into a cgroup of their own. On
    /// any failure: a note, and no split.
    pub fn new(pids: &[u32]) -> Receivers {
        match Self::make(pids) {
            Ok(dir) => Receivers { dir: Some(dir) },
            Err(e) => {
                println!(
                    "xtask: bench: the receivers' CPU is not told apart from the primary's ({e:#})"
                );
                Receivers { dir: None }
            }
        }
    }

    fn make(pids: &[u32]) -> anyhow::Result<PathBuf> {
        let dir = Path::new(CPUACCT).join(format!("pitr-bench-receivers-{}", std::process::id()));
        std::fs::create_dir(&dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
        let procs = dir.join("cgroup.procs");
        for pid in with_descendants(pids) {
            // A process that ended meanwhile is simply not there to move.
            if let Err(e) = std::fs::write(&procs, pid.to_string()) {
                if Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir(&dir);
                    anyhow::bail!("moving process {pid} into {}: {e}", dir.display());
                }
            }
        }
        Ok(dir)
    }

    /// CPU seconds the receivers have used since they were moved, if they could be.
    pub fn seconds(&self) -> Option<f64> {
        let dir = self.dir.as_ref()?;
        let text = std::fs::read_to_string(dir.join("cpuacct.usage")).ok()?;
        text.trim().parse::<u64>().ok().map(|ns| ns as f64 / 1e9)
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        let Some(dir) = &self.dir else { return };
        let root = Path::new(CPUACCT).join("cgroup.procs");
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in text.split_whitespace() {
                let _ = std::fs::write(&root, pid);
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
}

/// `pids` and every process below them, parents before children.
fn with_descendants(pids: &[u32]) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let mut out: Vec<u32> = pids.to_vec();
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, parent)| *parent == p)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    out
}

/// The parent of `pid`, from `/proc/PID/stat` (after the command name in parentheses, which
/// may hold spaces: state, then the parent).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_parent(&stat)
}

fn parse_parent(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The machine's busy CPU seconds so far: user, nice, system, irq and softirq of `/proc/stat`'s
/// `cpu` line, in its clock ticks.
pub fn busy_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_busy(&text).map(|ticks| ticks as f64 / ticks_per_second())
}

fn parse_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)?)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// One drain's CPU: the machine's busy seconds and the receivers' (when told apart).
#[derive(Debug, Clone, Copy)]
pub struct Split {
    pub busy: f64,
    pub receivers: Option<f64>,
}

impl Split {
    /// The primary's seconds: all but the receivers'.
    pub fn primary(&self) -> Option<f64> {
        self.receivers.map(|r| (self.busy - r).max(0.0))
    }
}

/// Runs `f` and returns its value with the CPU used meanwhile.
pub fn measure<T>(
    receivers: &Receivers,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, Option<Split>)> {
    let before = (busy_seconds(), receivers.seconds());
    let value = f()?;
    let after = (busy_seconds(), receivers.seconds());
    let split = match (before, after) {
        ((Some(b0), r0), (Some(b1), r1)) => Some(Split {
            busy: b1 - b0,
            receivers: r0.zip(r1).map(|(a, b)| b - a),
        }),
        _ => None,
    };
    Ok((value, split))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_busy_ticks_and_a_parent() {
        let stat = "cpu  100 2 30 5000 40 6 7 8 0 0\ncpu0 50 1 15 2500 20 3 3 4 0 0\n";
        assert_eq!(parse_busy(stat), Some(100 + 2 + 30 + 6 + 7));
        assert_eq!(
            parse_parent("4242 (rsync (daemon) x) S 17 4242 4242 0 -1"),
            Some(17)
        );
        assert_eq!(parse_parent("garbage"), None);
    }

    #[test]
    fn this_process_is_below_its_parent() {
        let me = std::process::id();
        let parent = parent_of(me).expect("a parent");
        assert!(with_descendants(&[parent]).contains(&me));
    }
}

//! Finding processes by their command line, through `/proc`: the tests check that no
//! `pitr-restore` outlives the server that ran it.

use std::time::Duration;

use crate::poll_until;

/// A running process: its pid and its command line (arguments joined by spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// `/proc/PID/cmdline` with the NUL separators turned into spaces.
    pub cmdline: String,
}

/// Every process (other than this one) whose command line contains all of `fragments`.
/// Zombies have an empty command line and never match.
pub fn processes_matching(fragments: &[&str]) -> Vec<Process> {
    let me = std::process::id();
    let mut found = Vec::new();
    let entries = std::fs::read_dir("/proc").expect("listing /proc");
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // The process may have exited since the listing: then it does not count.
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw)
            .trim_end_matches('\0')
            .replace('\0', " ");
        if !cmdline.is_empty() && fragments.iter().all(|f| cmdline.contains(f)) {
            found.push(Process { pid, cmdline });
        }
    }
    found.sort_by_key(|p| p.pid);
    found
}

/// Waits until no process matches `fragments`; returns the ones still running after
/// `timeout` (empty on success), so the caller can show them.
pub fn wait_no_process_matching(fragments: &[&str], timeout: Duration) -> Vec<Process> {
    match poll_until(timeout, || {
        processes_matching(fragments).is_empty().then_some(())
    }) {
        Some(()) => Vec::new(),
        None => processes_matching(fragments),
    }
}

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

/// How long the harness waits for an external program (initdb, pg_ctl, pg_basebackup, psql,
/// garage, ...) before it kills it and fails the test: a hung program (pg_basebackup waiting
/// for WAL that is never archived) must fail a test, not hang the suite.
pub const EXTERNAL_TIMEOUT: Duration = Duration::from_secs(300);

/// Waits for `child` (the program `program`) to end; after `timeout` it is killed and the
/// result is a `TimedOut` error naming the program. For programs a test starts in the
/// background (a pgbench load) and waits for later.
pub fn wait_within(
    child: &mut std::process::Child,
    timeout: Duration,
    program: &std::ffi::OsStr,
) -> std::io::Result<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{program:?} did not finish within {timeout:?}; killed"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`std::process::Command::output`] with a deadline.
pub trait OutputWithin {
    /// Runs the command to completion, collecting its output; after `timeout` it is killed
    /// and the result is a `TimedOut` error naming the program.
    fn output_within(&mut self, timeout: Duration) -> std::io::Result<std::process::Output>;
}

impl OutputWithin for std::process::Command {
    fn output_within(&mut self, timeout: Duration) -> std::io::Result<std::process::Output> {
        use std::io::Read as _;
        use std::process::Stdio;
        let mut child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let status = wait_within(&mut child, timeout, self.get_program())?;
        Ok(std::process::Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }
}

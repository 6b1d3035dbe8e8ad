//! Running one of our binaries and asserting on the outcome (uutils `UCommand`/`CmdResult`).
//!
//! `Tool::new("pitr-archive").args([...]).as_pg_user().run()` runs the binary with a
//! deadline and captures its output; [`CmdResult`] assertions print the whole command line,
//! status, stdout and stderr when they fail, so a failing test explains itself.
//! [`Tool::spawn`] starts the binary in the background for tests that kill it.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pitr_bin;
use crate::user::pg_user;

/// How long [`Tool::run`] lets a binary run before it kills it and fails the test.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// A command line for one of our binaries, built with chained calls.
#[derive(Debug, Clone)]
pub struct Tool {
    program: PathBuf,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    as_pg_user: bool,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Tool {
    /// A command for our binary `name` (resolved by [`pitr_bin`]), run as the test process's
    /// user, with no arguments.
    pub fn new(name: &str) -> Tool {
        Tool {
            program: pitr_bin(name),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            as_pg_user: false,
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Tool {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Tool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Runs the binary in `dir` (default: `/`).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Tool {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Sets one environment variable for the binary.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Tool {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Runs the binary as the [`pg_user`] (as PostgreSQL's `archive_command` would), which
    /// matters when the tests run as root: root may write anywhere.
    pub fn as_pg_user(mut self) -> Tool {
        self.as_pg_user = true;
        self
    }

    /// Feeds `bytes` to the binary's stdin (default: empty stdin).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Tool {
        self.stdin = Some(bytes.into());
        self
    }

    /// Kills the binary and fails the test when it runs longer than `timeout` (default 120 s).
    pub fn timeout(mut self, timeout: Duration) -> Tool {
        self.timeout = timeout;
        self
    }

    /// The command line, for messages.
    pub fn command_line(&self) -> String {
        let mut line = self.program.display().to_string();
        for arg in &self.args {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        line
    }

    fn command(&self) -> Command {
        let mut cmd = if self.as_pg_user {
            pg_user().command(&self.program)
        } else {
            let mut cmd = Command::new(&self.program);
            cmd.current_dir("/");
            cmd
        };
        cmd.args(&self.args);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts the binary in the background; its output is collected by [`RunningTool::wait`].
    pub fn spawn(&self) -> RunningTool {
        let mut child = self
            .command()
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.command_line()));
        let stdin = child.stdin.take().expect("piped stdin");
        let writer = feed(stdin, self.stdin.clone().unwrap_or_default());
        let stdout = collect(child.stdout.take().expect("piped stdout"));
        let stderr_so_far = Arc::new(Mutex::new(Vec::new()));
        let stderr = collect_shared(
            child.stderr.take().expect("piped stderr"),
            Arc::clone(&stderr_so_far),
        );
        RunningTool {
            child,
            command_line: self.command_line(),
            writer: Some(writer),
            stdout: Some(stdout),
            stderr: Some(stderr),
            stderr_so_far,
            timeout: self.timeout,
        }
    }

    /// Runs the binary to completion (killing it and panicking after the timeout).
    pub fn run(&self) -> CmdResult {
        let mut running = self.spawn();
        let deadline = Instant::now() + self.timeout;
        loop {
            if running
                .child
                .try_wait()
                .expect("waiting for child")
                .is_some()
            {
                return running.wait();
            }
            if Instant::now() >= deadline {
                running.kill();
                let result = running.wait();
                panic!(
                    "{} did not finish within {:?}; killed\n{result}",
                    self.command_line(),
                    self.timeout
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Shorthand for `run()` followed by [`CmdResult::success`].
    pub fn succeeds(&self) -> CmdResult {
        let result = self.run();
        result.success();
        result
    }
}

fn feed(mut stdin: ChildStdin, bytes: Vec<u8>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        // A binary that exits without reading its stdin closes the pipe: not our concern.
        let _ = stdin.write_all(&bytes);
    })
}

fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error ends the capture; the exit status tells what happened.
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Like [`collect`], and also appends each chunk to `so_far` as it arrives, so that a test can
/// wait for a line while the binary still runs.
fn collect_shared(
    mut pipe: impl Read + Send + 'static,
    so_far: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // A read error ends the capture; the exit status tells what happened.
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            so_far
                .lock()
                .expect("stderr buffer")
                .extend_from_slice(&chunk[..n]);
        }
        buf
    })
}

/// A binary started by [`Tool::spawn`].
pub struct RunningTool {
    child: Child,
    command_line: String,
    writer: Option<JoinHandle<()>>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    stderr_so_far: Arc<Mutex<Vec<u8>>>,
    /// How long [`RunningTool::wait`] waits for the exit (the [`Tool::timeout`]).
    timeout: Duration,
}

impl RunningTool {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL (a no-op when the process already exited).
    pub fn kill(&mut self) {
        // An error means the process is already gone, which is what we want.
        let _ = self.child.kill();
    }

    /// What the binary has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr_so_far.lock().expect("stderr buffer")).into_owned()
    }

    /// True once the process has exited (without reaping its output).
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().expect("waiting for child").is_some()
    }

    /// Waits (polling every millisecond, with the [`Tool::timeout`] as deadline) until the
    /// process has exited, without waiting for its output: a background process it started may
    /// hold its stderr open long after.
    pub fn wait_for_exit(&mut self) {
        let deadline = Instant::now() + self.timeout;
        while !self.has_exited() {
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {:?}",
                self.command_line,
                self.timeout
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for the process and returns its status and output; kills it and fails the test
    /// when it has not exited within the [`Tool::timeout`] (default 120 s) of this call.
    pub fn wait(mut self) -> CmdResult {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for child") {
                return self.collect(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                let status = self.child.wait().expect("waiting for killed child");
                let result = self.collect(status);
                panic!(
                    "{} did not exit within {:?} of being waited for; killed\n{result}",
                    result.command_line, self.timeout
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The status and the output of the exited process.
    fn collect(&mut self, status: ExitStatus) -> CmdResult {
        if let Some(writer) = self.writer.take() {
            writer.join().expect("stdin writer thread");
        }
        let stdout = self.stdout.take().expect("stdout").join().expect("stdout");
        let stderr = self.stderr.take().expect("stderr").join().expect("stderr");
        CmdResult {
            command_line: self.command_line.clone(),
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Drop for RunningTool {
    fn drop(&mut self) {
        // A test that panicked before waiting must not leave the binary running.
        if self.stdout.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The outcome of one run: status and captured output.
#[derive(Debug, Clone)]
pub struct CmdResult {
    command_line: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for CmdResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "command: {}\nstatus: {}\n--- stdout\n{}--- stderr\n{}---",
            self.command_line, self.status, self.stdout, self.stderr
        )
    }
}

impl CmdResult {
    /// The exit code (`None` when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The signal that killed the process, if any.
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }

    /// Captured stdout.
    pub fn stdout(&self) -> &str {
        &self.stdout
    }

    /// Captured stderr (where the binaries log by default).
    pub fn stderr(&self) -> &str {
        &self.stderr
    }

    /// Asserts exit status 0.
    pub fn success(&self) -> &CmdResult {
        assert!(self.status.success(), "expected success (exit 0)\n{self}");
        self
    }

    /// Asserts exit status `code`.
    pub fn failure_with_status(&self, code: i32) -> &CmdResult {
        assert_eq!(
            self.status.code(),
            Some(code),
            "expected exit status {code}\n{self}"
        );
        self
    }

    /// Asserts that stderr contains `fragment`.
    pub fn stderr_contains(&self, fragment: &str) -> &CmdResult {
        assert!(
            self.stderr.contains(fragment),
            "expected stderr to contain {fragment:?}\n{self}"
        );
        self
    }

    /// Asserts that stderr does not contain `fragment`.
    pub fn stderr_lacks(&self, fragment: &str) -> &CmdResult {
        assert!(
            !self.stderr.contains(fragment),
            "expected stderr not to contain {fragment:?}\n{self}"
        );
        self
    }

    /// Asserts that one stderr line contains every fragment in `fragments`, and returns its
    /// index in [`CmdResult::stderr_lines`].
    pub fn stderr_line_with(&self, fragments: &[&str]) -> usize {
        self.stderr_lines()
            .iter()
            .position(|line| fragments.iter().all(|f| line.contains(f)))
            .unwrap_or_else(|| {
                panic!("expected one stderr line to contain all of {fragments:?}\n{self}")
            })
    }

    /// Stderr split into lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }
}

//! The one place that runs other programs (rsync, pipe destinations, pg_controldata).
//!
//! A failed command becomes a [`CommandError`] that names the program and carries the last
//! lines of its stderr, so that the PostgreSQL log says why rsync failed, not only that it did.

use std::ffi::OsStr;
use std::io;
use std::process::{Command, Output, Stdio};

/// A program to run, built by the caller and run only through this module.
#[derive(Debug)]
pub struct Program {
    cmd: Command,
}

impl Program {
    /// The program `program` (a path, or a name looked up in PATH).
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Program {
            cmd: Command::new(program),
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.arg(a);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Sets an environment variable.
    pub fn env(&mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.env(k, v);
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(&mut self, k: impl AsRef<OsStr>) -> &mut Self {
        self.cmd.env_remove(k);
        self
    }

    /// Runs it to completion (see [`run`]).
    pub fn run(&mut self) -> Result<Output, CommandError> {
        run(&mut self.cmd)
    }

    /// Runs it with `input` on stdin (see [`run_with_stdin`]).
    pub fn run_with_stdin(&mut self, input: &[u8]) -> Result<Output, CommandError> {
        run_with_stdin(&mut self.cmd, input)
    }

    /// Runs it with `input` on stdin and returns its output whatever its exit status; only a
    /// program that cannot be started is an error. For callers that read a partial success
    /// (rsync's status 23), then judge the status with [`check`].
    pub fn output_with_stdin(&mut self, input: &[u8]) -> Result<Output, CommandError> {
        output_with_stdin(&mut self.cmd, input).map(|(out, _)| out)
    }

    /// Starts it with a pipe on stdin that the caller streams into (see [`PipeChild`]): for
    /// content too large to hold in memory (a backup archive sent to a `--dst-pipe` program).
    pub fn spawn_with_stdin(&mut self) -> Result<PipeChild, CommandError> {
        spawn_with_stdin(&mut self.cmd)
    }

    /// Lets the program inherit the open file `fd`, which the standard library opens
    /// close-on-exec: for a lock handed to a background process (`lock::adopt`). The caller
    /// keeps `fd` open until the program is started.
    pub fn inherit_fd(&mut self, fd: std::os::fd::BorrowedFd<'_>) -> &mut Self {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let raw = fd.as_raw_fd();
        // SAFETY: fcntl() is async-signal-safe; it only changes a flag of the child's copy of
        // a descriptor that is open in the parent when the child is forked.
        unsafe {
            self.cmd.pre_exec(move || {
                let flags = libc::fcntl(raw, libc::F_GETFD);
                if flags == -1 || libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self
    }

    /// Starts it in the background (see [`spawn_detached`]).
    pub fn spawn_detached(&mut self) -> Result<u32, CommandError> {
        spawn_detached(&mut self.cmd)
    }
}

/// A program that could not be run, or exited unsuccessfully.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The program could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program name or path.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The program ran and failed.
    #[error("{program} failed ({status}){}", stderr_suffix(stderr))]
    Failed {
        /// The program name or path.
        program: String,
        /// Its exit status, as text ("exit status 23", "signal 9").
        status: String,
        /// The exit code, if it exited.
        code: Option<i32>,
        /// Its stderr, trimmed.
        stderr: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let one_line: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if one_line.is_empty() {
        String::new()
    } else {
        format!(": {}", one_line.join(" | "))
    }
}

impl CommandError {
    /// The exit code, when the program exited with one.
    pub fn code(&self) -> Option<i32> {
        match self {
            CommandError::Failed { code, .. } => *code,
            CommandError::Spawn { .. } => None,
        }
    }
}

fn program_name(cmd: &Command) -> String {
    cmd.get_program().to_string_lossy().into_owned()
}

fn status_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        (None, None) => "unknown status".to_string(),
    }
}

/// Runs `cmd` to completion with stdin closed, capturing stdout and stderr; an unsuccessful exit
/// is an error.
fn run(cmd: &mut Command) -> Result<Output, CommandError> {
    let program = program_name(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| CommandError::Spawn {
            program: program.clone(),
            source,
        })?;
    check(&program, out)
}

/// Turns a finished command's output into a result.
pub fn check(program: &str, out: Output) -> Result<Output, CommandError> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(CommandError::Failed {
            program: program.to_string(),
            status: status_text(out.status),
            code: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs `cmd` with `input` written to its stdin, capturing stdout and stderr.
fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Result<Output, CommandError> {
    let program = program_name(cmd);
    let (out, write_result) = output_with_stdin(cmd, input)?;
    let out = check(&program, out)?;
    // A program that exits 0 without reading all of its input has not received the file.
    if let Err(e) = write_result {
        return Err(CommandError::Failed {
            program,
            status: "exit status 0".to_string(),
            code: Some(0),
            stderr: format!("it did not read all of its input ({e})"),
        });
    }
    Ok(out)
}

/// Runs `cmd` with `input` on stdin; its output whatever its status, and how writing the input
/// went.
fn output_with_stdin(
    cmd: &mut Command,
    input: &[u8],
) -> Result<(Output, io::Result<()>), CommandError> {
    use std::io::Write;
    let program = program_name(cmd);
    let spawn_err = |source| CommandError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let write_result = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(input),
        None => Ok(()),
    };
    let out = child
        .wait_with_output()
        .map_err(|source| CommandError::Spawn {
            program: program.clone(),
            source,
        })?;
    Ok((out, write_result))
}

/// A running program whose stdin the caller writes to, made by [`Program::spawn_with_stdin`].
/// [`PipeChild::finish`] closes stdin and waits; a non-zero exit is an error carrying its
/// stderr. Dropped without `finish`, the program is killed and reaped.
#[derive(Debug)]
pub struct PipeChild {
    program: String,
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

fn spawn_with_stdin(cmd: &mut Command) -> Result<PipeChild, CommandError> {
    use std::io::Read;
    let program = program_name(cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn {
            program: program.clone(),
            source,
        })?;
    let stdin = child.stdin.take();
    // stderr is drained in a thread, so that a chatty program never blocks on a full pipe.
    let stderr = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            // A read error ends the capture; the exit status tells what happened.
            let _ = e.read_to_end(&mut buf);
            buf
        })
    });
    Ok(PipeChild {
        program,
        child,
        stdin,
        stderr,
    })
}

impl PipeChild {
    /// Closes stdin, waits for the program and checks its exit status.
    pub fn finish(mut self) -> Result<(), CommandError> {
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|source| CommandError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        check(
            &self.program,
            Output {
                status,
                stdout: Vec::new(),
                stderr,
            },
        )
        .map(|_| ())
    }

    /// The program, for messages.
    pub fn program(&self) -> &str {
        &self.program
    }
}

impl io::Write for PipeChild {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.stdin.as_mut() {
            Some(s) => s.write(buf),
            None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.stdin.as_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for PipeChild {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            // Not finished: an error path. The program must not take a partial stream for a
            // whole one, so it is killed rather than given EOF.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `cmd` in a session of its own and does not wait for it: for background work that
/// must outlive the caller (pitr-restore's prefetch worker). stdin and stdout are closed;
/// stderr is inherited so that its log lines reach the same place as the caller's.
fn spawn_detached(cmd: &mut Command) -> Result<u32, CommandError> {
    use std::os::unix::process::CommandExt;
    let program = program_name(cmd);
    // SAFETY: setsid() is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|source| CommandError::Spawn { program, source })?;
    Ok(child.id())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn failure_carries_stderr() {
        let err = Program::new("sh")
            .args(["-c", "echo oops >&2; exit 23"])
            .run()
            .unwrap_err();
        assert_eq!(err.to_string(), "sh failed (exit status 23): oops");
        assert_eq!(err.code(), Some(23));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = Program::new("/nonexistent/pitr-prog").run().unwrap_err();
        assert_eq!(err.to_string(), "cannot run /nonexistent/pitr-prog");
    }

    #[test]
    fn streamed_stdin_is_delivered_and_failures_carry_stderr() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut p = Program::new("sh")
            .arg("-c")
            .arg(format!("cat > {}", out.display()))
            .spawn_with_stdin()
            .unwrap();
        p.write_all(b"hello ").unwrap();
        p.write_all(b"world").unwrap();
        p.finish().unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"hello world");
        let p = Program::new("sh")
            .args(["-c", "cat >/dev/null; echo nope >&2; exit 3"])
            .spawn_with_stdin()
            .unwrap();
        assert_eq!(
            p.finish().unwrap_err().to_string(),
            "sh failed (exit status 3): nope"
        );
    }

    #[test]
    fn stdin_is_delivered() {
        let out = Program::new("cat").run_with_stdin(b"hello").unwrap();
        assert_eq!(out.stdout, b"hello");
    }
}

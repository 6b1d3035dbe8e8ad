//! The one place that runs other programs (rsync, pipe destinations, pg_controldata).
//!
//! A failed command becomes a [`CommandError`] that names the program and carries the last
//! lines of its stderr, so that the PostgreSQL log says why rsync failed, not only that it did.

use std::io;
use std::process::{Command, Output, Stdio};

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
pub fn run(cmd: &mut Command) -> Result<Output, CommandError> {
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
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Result<Output, CommandError> {
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
    let out = child.wait_with_output().map_err(|source| CommandError::Spawn {
        program: program.clone(),
        source,
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_carries_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo oops >&2; exit 23"])).unwrap_err();
        assert_eq!(err.to_string(), "sh failed (exit status 23): oops");
        assert_eq!(err.code(), Some(23));
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run(&mut Command::new("/nonexistent/pitr-prog")).unwrap_err();
        assert_eq!(err.to_string(), "cannot run /nonexistent/pitr-prog");
    }

    #[test]
    fn stdin_is_delivered() {
        let out = run_with_stdin(&mut Command::new("cat"), b"hello").unwrap();
        assert_eq!(out.stdout, b"hello");
    }
}

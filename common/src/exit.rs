//! Exit-status policy, in one place.
//!
//! PostgreSQL reads the status of `archive_command` as "retry later" for anything non-zero, and
//! the status of `restore_command` as follows: 0 restored, 1 to 125 "not in the archive" (which in
//! archive recovery ends recovery and promotes), above 125 or death by a signal "fatal" (the
//! startup process stops and the server does not come up). The binaries therefore choose their
//! statuses from the constants below, and a user-facing failure carries its status and its HINT
//! in a [`Failure`] inside the `anyhow` chain.

use std::fmt;

/// Success.
pub const OK: u8 = 0;
/// The expected negative outcome: "not available" for `pitr-restore`.
pub const NOT_FOUND: u8 = 1;
/// An ordinary error of archive, backup and cleanup; PostgreSQL retries `archive_command`.
pub const ERROR: u8 = 2;
/// A usage error (bad option, bad argument) of archive, backup and cleanup.
pub const USAGE: u8 = 3;
/// Another instance holds the pid file or the lock.
pub const BUSY: u8 = 4;
/// A `pitr-restore` error that must never be read as "end of archive": PostgreSQL stops recovery
/// (FATAL) instead of promoting at the wrong point.
pub const RESTORE_FATAL: u8 = 126;
/// A usage error of `pitr-restore`: a typo in `restore_command` must not promote a standby.
pub const RESTORE_USAGE: u8 = 127;

/// A failure meant for the operator: a one-line message, an optional remedy printed on its own
/// `HINT:` line, and an optional exit status that overrides the binary's default error status.
///
/// Put it at the bottom of an `anyhow` chain (`Err(Failure::new(..).hint(..).into())`) and add
/// context above it as usual; `cli::main` finds it in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    message: String,
    hint: Option<String>,
    status: Option<u8>,
}

impl Failure {
    /// A failure with `message` (lowercase, no trailing period, names the path or segment).
    pub fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            hint: None,
            status: None,
        }
    }

    /// Adds the remedy shown on the `HINT:` line.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Overrides the exit status for this failure.
    #[must_use]
    pub fn status(mut self, status: u8) -> Self {
        self.status = Some(status);
        self
    }

    /// The remedy, if any.
    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The exit status override, if any.
    pub fn status_code(&self) -> Option<u8> {
        self.status
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The first [`Failure`] in an error chain, if any.
pub fn find_failure(err: &anyhow::Error) -> Option<&Failure> {
    // `anyhow::Error::downcast_ref` also finds a `Failure` attached as context at any depth;
    // the chain walk finds one wrapped inside another error type's source.
    err.downcast_ref::<Failure>()
        .or_else(|| err.chain().find_map(|e| e.downcast_ref::<Failure>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_is_found_under_context() {
        let err: anyhow::Error = Failure::new("segment X differs")
            .hint("check the archive")
            .status(RESTORE_FATAL)
            .into();
        let err = err.context("archiving X");
        let f = find_failure(&err).expect("failure in chain");
        assert_eq!(f.hint_text(), Some("check the archive"));
        assert_eq!(f.status_code(), Some(RESTORE_FATAL));
        assert_eq!(format!("{err:#}"), "archiving X: segment X differs");
    }

    #[test]
    fn failure_is_found_as_context() {
        let err = anyhow::anyhow!("no such file")
            .context(Failure::new("destination D is not usable").hint("create it"))
            .context("sending X");
        assert_eq!(
            find_failure(&err).and_then(Failure::hint_text),
            Some("create it")
        );
    }
}

//! Signals the binaries react to, turned into flags that loops poll.
//!
//! The handlers only store to an atomic, which is async-signal-safe; everything else happens in
//! the polling code.

use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

static USR1: AtomicBool = AtomicBool::new(false);
static TERM: AtomicBool = AtomicBool::new(false);
static REMOVE_ON_DEATH: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_fatal(sig: libc::c_int) {
    let p = REMOVE_ON_DEATH.load(Ordering::SeqCst);
    // SAFETY: unlink, signal and raise are async-signal-safe; the pointer is a leaked CString
    // that lives for the rest of the process.
    unsafe {
        if !p.is_null() {
            libc::unlink(p);
        }
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

extern "C" fn on_usr1(_: libc::c_int) {
    USR1.store(true, Ordering::SeqCst);
}

extern "C" fn on_term(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

fn install(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; sigaction with
    // an empty mask and SA_RESTART is the documented way to install it.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// Starts recording SIGUSR1 (pitr-restore: "finish recovery now").
pub fn catch_usr1() {
    install(libc::SIGUSR1, on_usr1);
}

/// Whether SIGUSR1 has arrived since [`catch_usr1`].
pub fn usr1_received() -> bool {
    USR1.load(Ordering::SeqCst)
}

/// Starts recording SIGINT and SIGTERM instead of dying at once, so that a long operation can
/// clean up (pitr-backup leaves backup mode and removes partial files).
pub fn catch_termination() {
    install(libc::SIGINT, on_term);
    install(libc::SIGTERM, on_term);
}

/// Whether SIGINT or SIGTERM has arrived since [`catch_termination`].
pub fn termination_requested() -> bool {
    TERM.load(Ordering::SeqCst)
}

/// Makes SIGTERM, SIGINT and SIGQUIT remove `path` before the process dies by that signal as it
/// would have: for a temporary file that no later run of ours would otherwise find at once
/// (pitr-restore's `.RECOVERYXLOG.pitr-tmp.PID` in `pg_wal`, 16 MiB, when a fast shutdown
/// stops recovery mid-write). The death itself is unchanged: PostgreSQL reads it as before.
pub fn remove_on_fatal_signal(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    let old = REMOVE_ON_DEATH.swap(c.into_raw(), Ordering::SeqCst);
    if !old.is_null() {
        // SAFETY: the previous value came from CString::into_raw above and is no longer read
        // (a handler running right now may still hold it; leaking it would be the safe choice,
        // but a replacement happens at most once per call).
        drop(unsafe { CString::from_raw(old) });
    }
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGQUIT] {
        install_plain(sig, on_fatal);
    }
}

fn install_plain(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) {
    // SAFETY: the handler only uses async-signal-safe calls; no SA_RESTART is needed since it
    // ends the process.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// The parent process id.
pub fn parent_pid() -> u32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    let p = unsafe { libc::getppid() };
    u32::try_from(p).unwrap_or(0)
}

/// Whether a process with this pid exists (it may belong to another user).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn usr1_sets_the_flag() {
        catch_usr1();
        assert!(!usr1_received());
        // SAFETY: raising a signal we handle.
        unsafe { libc::raise(libc::SIGUSR1) };
        assert!(usr1_received());
    }

    #[test]
    fn liveness() {
        assert!(process_alive(std::process::id()));
        assert!(parent_pid() > 0);
        assert!(!process_alive(0));
    }
}

//! Signals the binaries react to, turned into flags that loops poll.
//!
//! The handlers only store to an atomic, which is async-signal-safe; everything else happens in
//! the polling code.

use std::sync::atomic::{AtomicBool, Ordering};

static USR1: AtomicBool = AtomicBool::new(false);
static TERM: AtomicBool = AtomicBool::new(false);

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

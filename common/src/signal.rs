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

/// Whether a process with this pid exists (it may belong to another user) and has not ended: a
/// process that was killed but not yet reaped by its parent (a zombie: an orphaned background
/// worker waits for init to reap it) holds no file and writes nothing more, so it counts as
/// gone.
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    let exists = r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !ended(pid)
}

/// Whether `/proc` says the process `pid` has ended and awaits its parent's wait (state `Z`,
/// or `X` while being reaped). Without `/proc`, nothing is known: false.
fn ended(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_state(&stat))
        .is_some_and(|state| state == 'Z' || state == 'X')
}

/// The state letter of a `/proc/PID/stat` line: the field after the command name, which is in
/// parentheses and may itself hold spaces and parentheses.
fn stat_state(stat: &str) -> Option<char> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
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

    #[test]
    fn a_killed_process_not_yet_reaped_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(process_alive(pid));
        child.kill().unwrap();
        // Not waited for: it stays a zombie until then.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ended(libc::pid_t::try_from(pid).unwrap()) {
            assert!(std::time::Instant::now() < deadline, "never a zombie");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // SAFETY: signal 0 only checks existence.
        assert_eq!(
            unsafe { libc::kill(libc::pid_t::try_from(pid).unwrap(), 0) },
            0
        );
        assert!(!process_alive(pid));
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }

    #[test]
    fn the_state_of_a_stat_line_past_any_command_name() {
        assert_eq!(stat_state("42 (sleep) S 1 42 42 0"), Some('S'));
        assert_eq!(stat_state("42 (a) b) Z 1 42"), Some('Z'));
        assert_eq!(stat_state("42 (x y (z)) R 1"), Some('R'));
        assert_eq!(stat_state("garbage"), None);
    }
}

//! Leaving nothing behind after `cargo xtask demo` or `cargo xtask faults`, however they end.
//!
//! Everything such a task creates lives in one scratch directory ([`Scratch`]): the harness's
//! temp dirs go there because the task points `TMPDIR` at it, and the binaries' scratch files
//! follow. So cleaning up is a sweep of that one directory, which needs no access to the
//! objects that started anything: stop every postmaster whose `postmaster.pid` is below it
//! (SIGQUIT, an immediate shutdown, as `pg_ctl -m immediate` sends), end every other process
//! whose command line names a path below it (rsync daemons, a waiting pitr-restore, its prefetch
//! worker, a psql or pgbench in flight), unmount every file system mounted below it (the small
//! tmpfs of the full-disk faults), then remove the directory. Processes are ended by their pid,
//! and only ours match: the directory's name is random.
//!
//! The sweep runs from three places, whichever comes first, and only once:
//! - [`Scratch`]'s `Drop`, on success and when the task returns an error (the harness's own
//!   `Drop`s have stopped most things by then);
//! - a panic hook: the workspace builds with `panic = "abort"` even in dev, so a panic (the
//!   harness panics on failures: it is test code) runs the hook and then aborts without any
//!   `Drop`; the hook sweeps, prints FAIL and exits 1;
//! - a thread waiting for SIGINT, SIGTERM or SIGHUP (blocked in every other thread): it sweeps,
//!   prints FAIL and exits 128 + the signal.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The scratch directory still to be swept; `None` once swept (or before one exists).
static PENDING: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The step the task is in, for the FAIL line of a panic or a signal.
static CURRENT_STEP: Mutex<String> = Mutex::new(String::new());

/// The task's name (`demo`, `faults`), the prefix of the lines printed here.
static TASK: Mutex<&'static str> = Mutex::new("xtask");

fn task() -> &'static str {
    *TASK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records the step being run, for the FAIL message of a panic or a signal.
pub fn set_step(step: &str) {
    *CURRENT_STEP.lock().unwrap_or_else(PoisonError::into_inner) = step.to_owned();
}

fn current_step() -> String {
    CURRENT_STEP
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// A task's scratch directory: created owned by the PostgreSQL user (mode 0711, so the
/// rsync daemons and the server can reach what is inside), swept when dropped.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `TMP/pitr-TASK-XXXXXX` and registers it for the sweep; `task` also prefixes the
    /// lines printed here. Call [`install`] right after, once the environment is set, to arm
    /// the panic hook and the signal thread.
    pub fn create(task: &'static str) -> Result<Scratch> {
        *TASK.lock().unwrap_or_else(PoisonError::into_inner) = task;
        let dir = tempfile::Builder::new()
            .prefix(&format!("pitr-{task}-"))
            .tempdir()
            .with_context(|| format!("creating the {task} scratch directory"))?;
        // From here on the sweep owns the directory, not tempfile.
        let path = dir.keep();
        *PENDING.lock().unwrap_or_else(PoisonError::into_inner) = Some(path.clone());
        let user = pitr_tests::pg_user();
        if user.switch {
            std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .with_context(|| format!("chmod 0711 {}", path.display()))?;
        Ok(Scratch { path })
    }

    /// The directory's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        sweep();
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread and every thread it starts later; call it
/// first thing, while the process has one thread. Programs started from here inherit the
/// mask (std keeps it across fork and exec; seen here on a waiting pitr-restore that ignored
/// SIGTERM): PostgreSQL sets its own, and a caller that signals a child must unblock them in
/// it ([`unblock_in_child`]).
pub fn block_signals() -> Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before any other use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by this frame; the signal numbers are valid.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        bail!(
            "pthread_sigmask failed: {}",
            std::io::Error::from_raw_os_error(rc)
        );
    }
    Ok(set)
}

/// Makes `cmd`'s program start with no blocked signal, whatever [`block_signals`] did here.
pub fn unblock_in_child(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and calls only sigemptyset and
    // sigprocmask, which are async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Arms the panic hook and starts the thread that waits for the blocked signals.
pub fn install(signals: libc::sigset_t) -> Result<()> {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        println!(
            "\n{}: FAIL in {} (the harness panicked, see above); cleaning up",
            task(),
            current_step()
        );
        sweep();
        exit_once(1);
    }));
    thread::Builder::new()
        .name("scratch-signals".to_owned())
        .spawn(move || loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: `signals` is an initialised sigset_t, `signal` a valid out pointer.
            if unsafe { libc::sigwait(&signals, &mut signal) } == 0 {
                println!(
                    "\n{}: FAIL: interrupted by signal {signal} in {}; cleaning up",
                    task(),
                    current_step()
                );
                sweep();
                exit_once(128 + signal);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Exits the process, unless another thread already does: a signal's sweep makes the
/// task's next harness call panic, and two threads must not run `exit` at once.
fn exit_once(code: i32) -> ! {
    static EXITING: AtomicBool = AtomicBool::new(false);
    if !EXITING.swap(true, Ordering::SeqCst) {
        std::process::exit(code);
    }
    loop {
        thread::park();
    }
}

/// Stops and removes everything below the registered scratch directory, once. A second caller
/// waits for the first to finish, then finds nothing to do. Never panics.
fn sweep() {
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(root) = pending.take() else {
        return;
    };
    let stopped = stop_postmasters(&root);
    let ended = end_processes_below(&root);
    let unmounted = unmount_below(&root);
    let removed = fs::remove_dir_all(&root);
    let mut what = Vec::new();
    if stopped > 0 {
        what.push(format!("{stopped} server(s) stopped"));
    }
    if ended > 0 {
        what.push(format!("{ended} process(es) ended"));
    }
    if unmounted > 0 {
        what.push(format!("{unmounted} file system(s) unmounted"));
    }
    match removed {
        Ok(()) => what.push(format!("{} removed", root.display())),
        Err(e) => what.push(format!("cannot remove {}: {e}", root.display())),
    }
    println!("{}: cleanup: {}", task(), what.join(", "));
}

/// Unmounts (lazily, `MNT_DETACH`) every file system mounted at or below `root`, deepest
/// first, so that removing the directory does not stop at a busy mount point. Returns how
/// many there were.
pub fn unmount_below(root: &Path) -> usize {
    let mut points = mounts_below(root);
    // Deepest first: a mount inside another must go before it.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let mut done = 0;
    for point in points {
        let Ok(c) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: `c` is a valid NUL-terminated path; umount2 has no other preconditions.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            done += 1;
        }
    }
    done
}

/// Mount points at or below `root`, from `/proc/self/mountinfo` (field 5; spaces and other
/// special characters are octal-escaped there).
pub fn mounts_below(root: &Path) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|point| point.starts_with(root))
        .collect()
}

/// Undoes mountinfo's `\NNN` octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Some(v) = field
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends SIGQUIT (immediate shutdown) to the postmaster of every data directory below `root`
/// that has a live one, and waits for them to exit. Returns how many there were.
fn stop_postmasters(root: &Path) -> usize {
    let mut pids = Vec::new();
    for pid_file in find_files(root, "postmaster.pid", 4) {
        let Some(data_dir) = pid_file.parent() else {
            continue;
        };
        let pid = fs::read_to_string(&pid_file).ok().and_then(|text| {
            text.lines()
                .next()
                .and_then(|l| l.trim().parse::<u32>().ok())
        });
        // The pid must still be that postmaster (a stale file's pid may have been reused).
        if let Some(pid) = pid
            .filter(|pid| cmdline(*pid).is_some_and(|c| c.contains(&*data_dir.to_string_lossy())))
        {
            signal(pid, libc::SIGQUIT);
            pids.push(pid);
        }
    }
    wait_gone(&pids, Duration::from_secs(15), libc::SIGKILL);
    pids.len()
}

/// Ends every process other than this one whose command line names a path below `root`:
/// SIGTERM, then SIGKILL after 5 s. Returns how many there were.
fn end_processes_below(root: &Path) -> usize {
    let me = std::process::id();
    let needle = format!("{}/", root.display());
    let pids: Vec<u32> = list_pids()
        .into_iter()
        .filter(|pid| *pid != me)
        .filter(|pid| cmdline(*pid).is_some_and(|c| c.contains(&needle)))
        .collect();
    for pid in &pids {
        signal(*pid, libc::SIGTERM);
    }
    wait_gone(&pids, Duration::from_secs(5), libc::SIGKILL);
    pids.len()
}

/// Waits until none of `pids` runs; after `timeout`, sends `last_resort` to the rest and waits
/// a little more.
fn wait_gone(pids: &[u32], timeout: Duration, last_resort: libc::c_int) {
    let deadline = Instant::now() + timeout;
    let alive = |pid: &&u32| cmdline(**pid).is_some();
    while pids.iter().any(|p| alive(&p)) {
        if Instant::now() >= deadline {
            for pid in pids.iter().filter(alive) {
                signal(*pid, last_resort);
            }
            thread::sleep(Duration::from_millis(200));
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; a vanished pid gives ESRCH.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// The command line of a live process, arguments joined by spaces; `None` when the process is
/// gone or a zombie (whose command line is empty).
fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .replace('\0', " ");
    (!text.is_empty()).then_some(text)
}

fn list_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Files named `name` at most `depth` levels below `dir` (symbolic links are not followed).
fn find_files(dir: &Path, name: &str, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && depth > 0 {
            found.extend(find_files(&entry.path(), name, depth - 1));
        } else if kind.is_file() && entry.file_name() == name {
            found.push(entry.path());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_files_looks_only_as_deep_as_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a/b/c");
        fs::create_dir_all(&deep).expect("mkdir");
        fs::write(dir.path().join("a/postmaster.pid"), "1\n").expect("write");
        fs::write(deep.join("postmaster.pid"), "1\n").expect("write");
        assert_eq!(
            find_files(dir.path(), "postmaster.pid", 1),
            [dir.path().join("a/postmaster.pid")]
        );
        assert_eq!(find_files(dir.path(), "postmaster.pid", 3).len(), 2);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\04"), "/end\\04");
    }

    #[test]
    fn cmdline_of_this_process_and_of_no_process() {
        assert!(cmdline(std::process::id()).is_some());
        assert!(cmdline(u32::MAX).is_none());
    }
}

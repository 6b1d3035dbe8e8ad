//! Remote archiving, the seed's topology: the primary pushes every segment to two standbys'
//! rsync daemons (here two `rsync --daemon` on loopback, modules `wal_archive`), and a fleet
//! pushes to object storage (a 3-node Garage cluster on loopback). PostgreSQL's own archiver
//! drains the same WAL set as the archiving part; contenders run interleaved, round by round:
//! pitr-archive gzip and zstd with archive-ahead on (the default) and off, and
//! omnipitr-archive with the runbook's options (`-s STATE -dr gzip=rsync://… ×2 -t TMP`),
//! from `../shared/peers/omnipitr` when it is there. Then each command once per segment by
//! hand, for the per-call latency: with archive-ahead, most calls are answered from records
//! and a few carry a batch, which p50 and p95 show. Each drain's CPU is split into the
//! receivers' (the daemons and servers, which on the seed's hosts are other machines) and the
//! primary's ([`super::cpu`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use pitr_tests::{pg_user, GarageCluster, RsyncDaemon, TlsFront};

use super::archive::WalSet;
use super::pgbrtls::PgbackrestTlsRepo;
use super::{empty_dir, median, percentile, ratio_table, round2, run_timed, shell_as_pg};
use super::{Ctx, Part, Ratio};

/// One archive_command to measure.
struct Contender {
    name: String,
    /// The command, with `{round}` standing for a fresh object-store prefix per measurement.
    command: String,
    /// Directories emptied before each measurement (destinations, state, temp).
    empty: Vec<PathBuf>,
    /// A command run as the PostgreSQL user before each measurement, `{round}` as in
    /// `command` (pgBackRest's `stanza-create` in a fresh repository path).
    prepare: Option<String>,
    /// The directory that holds one copy of what a measurement stored, `{round}` as in
    /// `command`, for the size column (`None` for object stores: not measured).
    stored: Option<String>,
}

impl Contender {
    fn new(name: String, command: String, empty: Vec<PathBuf>) -> Contender {
        Contender {
            name,
            command,
            empty,
            prepare: None,
            stored: None,
        }
    }

    /// The contender with the directory that holds one copy of what it stored.
    fn storing_in(mut self, dir: impl std::fmt::Display) -> Contender {
        self.stored = Some(dir.to_string());
        self
    }

    /// The bytes measurement `run` stored (one copy), when they are in a directory.
    fn stored_bytes(&self, run: usize) -> Result<Option<u64>> {
        self.stored
            .as_ref()
            .map(|d| {
                tree_size(std::path::Path::new(
                    &d.replace("{round}", &run.to_string()),
                ))
            })
            .transpose()
    }

    fn command(&self, run: usize) -> String {
        self.command.replace("{round}", &run.to_string())
    }

    /// Empties the contender's directories and prepares measurement `run`.
    fn reset(&self, run: usize) -> Result<()> {
        for d in &self.empty {
            empty_dir(d, &[])?;
        }
        if let Some(p) = &self.prepare {
            let cmd = p.replace("{round}", &run.to_string());
            let out = shell_as_pg(&cmd).output()?;
            anyhow::ensure!(
                out.status.success(),
                "{cmd} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

/// Where OmniPITR's own checkout is (`--omnipitr`, else beside the repository), if it is there.
fn omnipitr(ctx: &Ctx) -> Option<PathBuf> {
    let dir = match &ctx.omnipitr {
        Some(d) => d.clone(),
        None => crate::project_root()
            .parent()?
            .join("shared/peers/omnipitr"),
    };
    dir.join("bin/omnipitr-archive").is_file().then_some(dir)
}

/// pitr-archive zstd to one of the two rsync daemons.
const ONE_RSYNC: &str = "pitr-archive zstd rsync ×1, ahead 8 (default)";

fn contenders(
    ctx: &Ctx,
    set: &WalSet,
    daemons: &[RsyncDaemon; 2],
    garage: Option<(&GarageCluster, &TlsFront)>,
    tls_repo: &PgbackrestTlsRepo,
) -> Vec<Contender> {
    let bin = ctx.bin("pitr-archive").display().to_string();
    let dirs: Vec<PathBuf> = daemons.iter().map(|d| d.dir().to_path_buf()).collect();
    let mut v = Vec::new();
    for (codec, short) in [("gzip", "g"), ("zstd", "z")] {
        for ahead in [None, Some(0)] {
            let state = set.dest(&format!("remote-state-{short}{}", ahead.unwrap_or(8)));
            let tail = ahead.map_or(String::new(), |k| format!(" --archive-ahead {k}"));
            v.push(
                Contender::new(
                    format!(
                        "pitr-archive {codec} rsync ×2, ahead {}",
                        ahead.map_or("8 (default)".to_string(), |k| k.to_string())
                    ),
                    format!(
                    "{bin} --state-dir {} --dst-remote {codec}={} --dst-remote {codec}={}{tail} %p",
                    state.display(),
                    daemons[0].url(),
                    daemons[1].url()
                ),
                    vec![dirs[0].clone(), dirs[1].clone(), state],
                )
                .storing_in(dirs[0].display()),
            );
        }
    }
    // One rsync destination: as many remote copies as pgBackRest's one repository, and on
    // this one machine one daemon's writes instead of two on the cores pitr-archive uses.
    let state = set.dest("remote-state-z8-one");
    v.push(
        Contender::new(
            ONE_RSYNC.into(),
            format!(
                "{bin} --state-dir {} --dst-remote zstd={} %p",
                state.display(),
                daemons[0].url()
            ),
            vec![dirs[0].clone(), state],
        )
        .storing_in(dirs[0].display()),
    );
    if let Some((garage, front)) = garage {
        let config = garage.pitr_config(&set.dest("remote-garage"));
        v.extend(pitr_garage_contenders(
            ctx, set, garage, &config, "S3", "bench",
        ));
        v.extend(https_contenders(ctx, set, garage, front));
    }
    v.push(tls_repo_contender(set, tls_repo));
    // The same codecs into one local directory: what remote archiving is measured against.
    for codec in ["gzip", "zstd"] {
        let dir = set.dest(&format!("remote-local-{codec}"));
        v.push(
            Contender::new(
                format!("pitr-archive {codec} one local directory"),
                format!("{bin} --dst-local {codec}={} %p", dir.display()),
                vec![dir.clone()],
            )
            .storing_in(dir.display()),
        );
    }
    if let Some(omni) = omnipitr(ctx) {
        let state = set.dest("remote-omni-state");
        let tmp = set.dest("remote-omni-tmp");
        v.push(
            Contender::new(
                "omnipitr-archive gzip rsync ×2 (runbook)".into(),
                format!(
                    "{} -l {} -s {} -dr gzip={}/ -dr gzip={}/ -t {} %p",
                    omni.join("bin/omnipitr-archive").display(),
                    set.dest("remote-omni-log").join("archive.log").display(),
                    state.display(),
                    daemons[0].url(),
                    daemons[1].url(),
                    tmp.display()
                ),
                vec![dirs[0].clone(), dirs[1].clone(), state, tmp],
            )
            .storing_in(dirs[0].display()),
        );
    } else {
        println!(
            "xtask: bench: remote: no OmniPITR checkout (--omnipitr DIR, default \
             ../shared/peers/omnipitr); no omnipitr-archive row"
        );
    }
    v
}

/// pitr-archive and pgBackRest to the same Garage cluster over https (pgBackRest 2.45 speaks S3
/// only over TLS): both through one TLS front, each measurement into a fresh prefix
/// (pgBackRest: a fresh repository path with `stanza-create --no-online`). pitr checks the
/// front's certificate against `--s3-ca-file`; pgBackRest is told not to verify it.
fn https_contenders(
    ctx: &Ctx,
    set: &WalSet,
    garage: &GarageCluster,
    front: &TlsFront,
) -> Vec<Contender> {
    let dir = set.dest("remote-https");
    let config = super::pitr_https_config(&dir, garage, front);
    let mut v = pitr_garage_contenders(ctx, set, garage, &config, "https", "https");
    let br = set.pgbackrest_dir();
    let conf = dir.join("pgbackrest-s3.conf");
    pg_user().write_file(
        &conf,
        format!(
            "[global]\n{}log-path={br}/log\nlock-path={br}/lock\nspool-path={br}/spool\n\
             log-level-console=warn\nlog-level-file=off\n\n[bench]\npg1-path={data}\n",
            super::pgbackrest_s3_repo(garage, front, "/pgbackrest"),
            br = br.display(),
            data = set.cluster.data_dir().display(),
        )
        .as_bytes(),
    );
    for (name, extra) in PGBACKREST_GARAGE {
        let base = format!(
            "pgbackrest --config={} --repo1-path=/br-{{round}} --stanza=bench",
            conf.display()
        );
        let mut c = Contender::new(
            name.to_owned(),
            format!("{base} {extra} archive-push %p"),
            vec![br.join("spool")],
        );
        c.prepare = Some(format!("{base} --no-online stanza-create"));
        v.push(c);
    }
    v
}

/// pitr-archive zstd to Garage over `kind` (see [`garage_name`]) with `config`, archive-ahead on
/// (the default) and off, each measurement into a fresh prefix `PREFIX-K-ROUND` of the bucket.
fn pitr_garage_contenders(
    ctx: &Ctx,
    set: &WalSet,
    garage: &GarageCluster,
    config: &std::path::Path,
    kind: &str,
    prefix: &str,
) -> Vec<Contender> {
    let bin = ctx.bin("pitr-archive").display().to_string();
    [None, Some(0)]
        .into_iter()
        .map(|ahead| {
            let k = ahead.unwrap_or(8);
            let state = set.dest(&format!("remote-state-{}-{k}", kind.to_lowercase()));
            let tail = ahead.map_or(String::new(), |k| format!(" --archive-ahead {k}"));
            Contender::new(
                garage_name(kind, ahead),
                format!(
                    "{bin} --config-file {} --state-dir {} --dst-remote zstd=s3://{}/{prefix}-{k}-{{round}}{tail} %p",
                    config.display(),
                    state.display(),
                    garage.bucket()
                ),
                vec![state],
            )
        })
        .collect()
}

/// The name of pitr-archive's contender to Garage over `kind` (`S3`: plain HTTP, `https`: through
/// the TLS front) with `--archive-ahead` `ahead` (None: the default).
fn garage_name(kind: &str, ahead: Option<usize>) -> String {
    format!(
        "pitr-archive zstd Garage {kind}, ahead {}",
        ahead.map_or("8 (default)".to_string(), |k| k.to_string())
    )
}

/// pgBackRest's contenders to Garage (through the TLS front): name and archive-push options.
const PGBACKREST_GARAGE: [(&str, &str); 2] = [
    ("pgbackrest sync zst Garage https", "--compress-type=zst"),
    (
        "pgbackrest async zst 2 proc Garage https",
        "--compress-type=zst --archive-async --process-max=2",
    ),
];

/// Whether the contenders `--contenders` selects (all without it) include one that needs the
/// Garage cluster: without one, Garage is neither built nor started (its first build takes
/// about 15 minutes).
fn needs_garage(keep: Option<&[String]>) -> bool {
    let Some(keep) = keep else { return true };
    let names = [None, Some(0)]
        .into_iter()
        .flat_map(|ahead| [garage_name("S3", ahead), garage_name("https", ahead)])
        .chain(PGBACKREST_GARAGE.iter().map(|(n, _)| n.to_string()));
    names
        .into_iter()
        .any(|n| keep.iter().any(|k| n.contains(k.as_str())))
}

/// pgBackRest async (zst, 2 processes) to its own repository server over TLS on loopback: the
/// remote repository of a pgBackRest installation. Each measurement gets a fresh repository
/// path, its stanza created from the PostgreSQL side.
fn tls_repo_contender(set: &WalSet, repo: &PgbackrestTlsRepo) -> Contender {
    let br = set.pgbackrest_dir();
    pg_user().create_dir(&br.join("spool-tls"), 0o700);
    let conf = set.dest("remote-pgbr-client").join("pgbackrest-tls.conf");
    pg_user().write_file(
        &conf,
        format!(
            "[global]\n{}log-path={br}/log\nlock-path={br}/lock\nspool-path={br}/spool-tls\n\
             log-level-console=warn\nlog-level-file=off\n\n[bench]\npg1-path={data}\n",
            repo.client_repo(&repo.repo_dir().display().to_string()),
            br = br.display(),
            data = set.cluster.data_dir().display(),
        )
        .as_bytes(),
    );
    let base = format!(
        "pgbackrest --config={} --repo1-path={}/br-{{round}} --stanza=bench",
        conf.display(),
        repo.repo_dir().display()
    );
    let mut c = Contender::new(
        TLS_REPO_ASYNC.to_owned(),
        format!("{base} --compress-type=zst --archive-async --process-max=2 archive-push %p"),
        vec![br.join("spool-tls")],
    );
    c.prepare = Some(format!("{base} --no-online stanza-create"));
    c.storing_in(format!("{}/br-{{round}}", repo.repo_dir().display()))
}

/// The total size of the files under `dir`.
fn tree_size(dir: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    for ent in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let ent = ent?;
        let meta = ent.metadata()?;
        total += if meta.is_dir() {
            tree_size(&ent.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The name of [`tls_repo_contender`].
const TLS_REPO_ASYNC: &str = "pgbackrest async zst 2 proc, its TLS repo server";

/// Runs the remote archiving part on the archiving part's WAL set.
pub fn run(ctx: &Ctx, set: &WalSet) -> Result<Part> {
    let daemons = [
        RsyncDaemon::start_labeled("bench-standby1", "wal_archive"),
        RsyncDaemon::start_labeled("bench-standby2", "wal_archive"),
    ];
    let garage = if needs_garage(ctx.contenders.as_deref()) {
        crate::garage::ensure()?;
        let garage = GarageCluster::start();
        let front = TlsFront::start("bench-s3", garage.s3_port(0));
        Some((garage, front))
    } else {
        None
    };
    let tls_repo = PgbackrestTlsRepo::start(&set.dest("remote-pgbr-tls"))?;
    // Every receiving server, whose CPU is not the primary's (super::cpu).
    let mut receiving: Vec<u32> = daemons.iter().filter_map(RsyncDaemon::pid).collect();
    receiving.push(tls_repo.pid());
    if let Some((g, f)) = &garage {
        receiving.extend(g.pids());
        receiving.push(f.pid());
    }
    let receivers = super::cpu::Receivers::new(&receiving);
    let mut contenders = contenders(
        ctx,
        set,
        &daemons,
        garage.as_ref().map(|(g, f)| (g, f)),
        &tls_repo,
    );
    if let Some(keep) = &ctx.contenders {
        contenders.retain(|c| keep.iter().any(|k| c.name.contains(k.as_str())));
        if contenders.is_empty() {
            anyhow::bail!(
                "--contenders {}: no remote contender matches",
                keep.join("|")
            );
        }
    }
    if let Some(dir) = &ctx.perf {
        std::fs::create_dir_all(dir)?;
    }
    let cluster = &set.cluster;
    let set_mib = set.mib();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    // CPU seconds per GiB of WAL of each round: the primary's and the receivers'.
    let mut primary_cpu: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    let mut receivers_cpu: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    // What each contender's last measurement stored (one copy).
    let mut stored: Vec<Option<u64>> = vec![None; contenders.len()];
    let mut run_no = 0;
    for round in 0..ctx.rounds {
        for i in super::round_order(contenders.len(), round) {
            let c = &contenders[i];
            run_no += 1;
            c.reset(run_no)?;
            set.reset_status()?;
            let perf_out = ctx
                .perf
                .as_ref()
                .map(|d| d.join(format!("{run_no}.perf.data")));
            let ((secs, rate), split) = super::cpu::measure(&receivers, || {
                set.drain_profiled(
                    &c.name,
                    &c.command(run_no),
                    Duration::from_secs(1800),
                    perf_out.as_deref(),
                )
            })?;
            let gib = set_mib / 1024.0;
            let cpu_note = match split.and_then(|s| Some((s.primary()?, s.receivers?))) {
                Some((primary, received)) => {
                    primary_cpu[i].push(primary / gib);
                    receivers_cpu[i].push(received / gib);
                    format!(
                        ", CPU s/GiB primary {:.2} receivers {:.2}",
                        primary / gib,
                        received / gib
                    )
                }
                None => String::new(),
            };
            if let Some(p) = &perf_out {
                println!(
                    "xtask: bench: remote run {run_no} ({}): {}",
                    c.name,
                    p.display()
                );
            }
            println!(
                "xtask: bench: remote round {} {:<45} {rate:>7.1} MiB/s ({secs:.2} s{cpu_note})",
                round + 1,
                c.name
            );
            rates[i].push(rate);
            stored[i] = c.stored_bytes(run_no)?;
        }
    }

    // Per call, by hand, in order, with the status files as PostgreSQL keeps them.
    let wal = cluster.data_dir().join("pg_wal");
    let status = wal.join("archive_status");
    let mut lat: Vec<(f64, f64)> = Vec::new();
    // The prefix (`{round}`) each contender's by-hand run filled with the whole set.
    let mut filled: Vec<usize> = Vec::new();
    for c in &contenders {
        run_no += 1;
        filled.push(run_no);
        c.reset(run_no)?;
        set.reset_status()?;
        let mut ms = Vec::new();
        for n in &set.names {
            let cmd = c
                .command(run_no)
                .replace("%p", &format!("pg_wal/{n}"))
                .replace("%f", n);
            let mut sh = shell_as_pg(&cmd);
            sh.current_dir(cluster.data_dir());
            let t = run_timed(&mut sh)?;
            ms.push(t.secs * 1000.0);
            std::fs::rename(
                status.join(format!("{n}.ready")),
                status.join(format!("{n}.done")),
            )?;
        }
        let p50 = percentile(&mut ms, 50.0);
        let p95 = percentile(&mut ms, 95.0);
        println!(
            "xtask: bench: remote per call {:<45} p50 {p50:.1} ms p95 {p95:.1} ms",
            c.name
        );
        lat.push((p50, p95));
    }

    let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    // NaN where the CPU was not told apart.
    let primary: Vec<f64> = primary_cpu.iter_mut().map(|v| median(v)).collect();
    let received: Vec<f64> = receivers_cpu.iter_mut().map(|v| median(v)).collect();
    // A contender's value in `values` (medians, one per contender), NaN when it was not run.
    let of = |values: &[f64], n: &str| -> f64 {
        contenders
            .iter()
            .position(|c| c.name == n)
            .map_or(f64::NAN, |i| values[i])
    };
    let by_name = |n: &str| of(&medians, n);
    let primary_of = |n: &str| of(&primary, n);
    let mut md = format!(
        "### Remote archiving (the seed's topology)\n\nPostgreSQL's archiver draining {} segments ({set_mib:.0} MiB of WAL) to two rsync \
         daemons on loopback, or to a 3-node Garage cluster on loopback, timed from setting archive_command (a reload) to the last segment archived, median of {} rounds; per call: each command by hand once per segment.\n\n\
         Stored: the size of one copy of the archive, as a share of the WAL (– for object stores, not measured). \
         CPU s/GiB: CPU seconds per GiB of WAL during the drain (medians), the primary's (PostgreSQL's archiver, the archiving \
         commands, their compression and the sending side; kernel writeback included) and the receivers' (the rsync daemons, \
         pgBackRest's repository server, the Garage nodes and their TLS front: on the seed's hosts, other machines).\n\n\
         | contender | MiB/s of WAL | per call p50 ms | p95 ms | stored | primary CPU s/GiB | receivers CPU s/GiB |\n|---|---|---|---|---|---|---|\n",
        set.names.len(),
        ctx.rounds
    );
    let mut results = Vec::new();
    for (i, c) in contenders.iter().enumerate() {
        let share = stored[i].map(|b| b as f64 / (set_mib * 1048576.0) * 100.0);
        let cpu = |v: f64| {
            if v.is_finite() {
                format!("{v:.2}")
            } else {
                "–".to_string()
            }
        };
        md.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} | {} | {} |\n",
            c.name,
            medians[i],
            lat[i].0,
            lat[i].1,
            share.map_or("–".to_string(), |p| format!("{p:.1} %")),
            cpu(primary[i]),
            cpu(received[i]),
        ));
        results.push(serde_json::json!({
            "name": c.name,
            "command": c.command,
            "median_mib_s": round2(medians[i]),
            "rounds_mib_s": rates[i].iter().map(|r| round2(*r)).collect::<Vec<_>>(),
            "per_call_p50_ms": round2(lat[i].0),
            "per_call_p95_ms": round2(lat[i].1),
            "stored_bytes": stored[i],
            "primary_cpu_s_per_gib": primary[i].is_finite().then(|| round2(primary[i])),
            "rounds_primary_cpu_s_per_gib": primary_cpu[i].iter().map(|r| round2(*r)).collect::<Vec<_>>(),
            "receivers_cpu_s_per_gib": received[i].is_finite().then(|| round2(received[i])),
        }));
    }
    let omni = by_name("omnipitr-archive gzip rsync ×2 (runbook)");
    let ratios = vec![
        Ratio::new(
            "pitr-archive gzip rsync ×2 ahead 8 / ahead 0",
            by_name("pitr-archive gzip rsync ×2, ahead 8 (default)")
                / by_name("pitr-archive gzip rsync ×2, ahead 0"),
            None,
        ),
        Ratio::new(
            "pitr-archive zstd rsync ×2 ahead 8 / ahead 0",
            by_name("pitr-archive zstd rsync ×2, ahead 8 (default)")
                / by_name("pitr-archive zstd rsync ×2, ahead 0"),
            None,
        ),
        Ratio::new(
            "pitr-archive zstd Garage ahead 8 / ahead 0",
            by_name("pitr-archive zstd Garage S3, ahead 8 (default)")
                / by_name("pitr-archive zstd Garage S3, ahead 0"),
            None,
        ),
        Ratio::new(
            "pitr-archive zstd Garage https ahead 8 / pgbackrest sync zst Garage https",
            by_name("pitr-archive zstd Garage https, ahead 8 (default)")
                / by_name("pgbackrest sync zst Garage https"),
            Some(2.0),
        ),
        Ratio::new(
            "pitr-archive zstd Garage https ahead 8 / pgbackrest async zst 2 proc Garage https",
            by_name("pitr-archive zstd Garage https, ahead 8 (default)")
                / by_name("pgbackrest async zst 2 proc Garage https"),
            None,
        ),
        Ratio::new(
            "pitr-archive zstd rsync ×2 ahead 8 / pgbackrest async zst 2 proc to its TLS repo server",
            by_name("pitr-archive zstd rsync ×2, ahead 8 (default)") / by_name(TLS_REPO_ASYNC),
            Some(1.5),
        ),
        Ratio::new(
            "pitr-archive zstd rsync ×1 ahead 8 / pgbackrest async zst 2 proc to its TLS repo server (one remote copy each)",
            by_name(ONE_RSYNC) / by_name(TLS_REPO_ASYNC),
            None,
        ),
        Ratio::new(
            "primary CPU per GiB: pgbackrest async zst 2 proc to its TLS repo server / pitr-archive zstd rsync ×2 ahead 8",
            primary_of(TLS_REPO_ASYNC) / primary_of("pitr-archive zstd rsync ×2, ahead 8 (default)"),
            None,
        ),
        Ratio::new(
            "primary CPU per GiB: pgbackrest async zst 2 proc Garage https / pitr-archive zstd Garage https ahead 8",
            primary_of("pgbackrest async zst 2 proc Garage https")
                / primary_of("pitr-archive zstd Garage https, ahead 8 (default)"),
            None,
        ),
        Ratio::new(
            "pitr-archive gzip rsync ×2 ahead 8 / omnipitr-archive (runbook)",
            by_name("pitr-archive gzip rsync ×2, ahead 8 (default)") / omni,
            Some(10.0),
        ),
        Ratio::new(
            "pitr-archive gzip rsync ×2 ahead 8 / gzip to one local directory",
            by_name("pitr-archive gzip rsync ×2, ahead 8 (default)")
                / by_name("pitr-archive gzip one local directory"),
            Some(0.5),
        ),
        Ratio::new(
            "pitr-archive zstd rsync ×2 ahead 8 / zstd to one local directory",
            by_name("pitr-archive zstd rsync ×2, ahead 8 (default)")
                / by_name("pitr-archive zstd one local directory"),
            Some(0.5),
        ),
    ];
    // A ratio one of whose sides was not run (--contenders) is left out.
    let ratios: Vec<Ratio> = ratios.into_iter().filter(|r| r.value.is_finite()).collect();
    md.push('\n');
    md.push_str(&ratio_table(&ratios));
    let mut json = serde_json::json!({
        "segments": set.names.len(),
        "rounds": ctx.rounds,
        "results": results,
        "ratios": ratios.iter().map(Ratio::json).collect::<Vec<_>>(),
    });
    if let (None, Some((garage, _))) = (&ctx.contenders, &garage) {
        let filled_by = |n: &str| -> Result<usize> {
            contenders
                .iter()
                .position(|c| c.name == n)
                .map(|i| filled[i])
                .ok_or_else(|| anyhow::anyhow!("no contender {n}"))
        };
        let restore = restore_from_store(
            ctx,
            set,
            garage,
            filled_by(&garage_name("https", None))?,
            filled_by(PGBACKREST_GARAGE[0].0)?,
        )?;
        md.push('\n');
        md.push_str(&restore.0);
        json["restore_from_store"] = restore.1;
    }
    Ok(Part {
        key: "remote".into(),
        markdown: md,
        json,
    })
}

/// A standby replaying the set from the store over https (the restore part's measurement):
/// pitr-restore with and without prefetch from what pitr-archive stored in run `pitr_run`, and
/// pgBackRest's archive-get, sync and async, from the repository its sync archive-push filled
/// in run `pgbackrest_run`. Returns the markdown and the JSON.
fn restore_from_store(
    ctx: &Ctx,
    set: &WalSet,
    garage: &GarageCluster,
    pitr_run: usize,
    pgbackrest_run: usize,
) -> Result<(String, serde_json::Value)> {
    let dir = set.dest("remote-https");
    let (config, conf) = (dir.join("https.conf"), dir.join("pgbackrest-s3.conf"));
    let source = format!(
        "{} --config-file {} --source zstd=s3://{}/https-8-{pitr_run} --streaming-replication",
        ctx.bin("pitr-restore").display(),
        config.display(),
        garage.bucket()
    );
    let pgbackrest = format!(
        "pgbackrest --config={} --repo1-path=/br-{pgbackrest_run} --stanza=bench --pg1-path={{data}}",
        conf.display()
    );
    let contenders = [
        (
            "pitr-restore zstd Garage https, prefetch 8",
            format!("{source} %f %p"),
        ),
        (
            "pitr-restore zstd Garage https, no prefetch",
            format!("{source} --prefetch 0 %f %p"),
        ),
        (
            "pgbackrest archive-get zst Garage https",
            format!("{pgbackrest} archive-get %f \"%p\""),
        ),
        (
            "pgbackrest archive-get async zst 2 proc Garage https",
            format!("{pgbackrest} --archive-async --process-max=2 archive-get %f \"%p\""),
        ),
    ];
    let mib = super::restore::replayed_mib(set);
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); contenders.len()];
    for round in 0..ctx.rounds {
        for i in super::round_order(contenders.len(), round) {
            let (name, command) = &contenders[i];
            let s = super::restore::replay_secs(set, name, command)?;
            println!(
                "xtask: bench: remote restore round {} {name:<50} {:>7.1} MiB/s ({s:.2} s)",
                round + 1,
                mib / s
            );
            secs[i].push(s);
        }
    }
    let med: Vec<f64> = secs.iter_mut().map(|s| median(s)).collect();
    let mut md = format!(
        "#### Restore from the store\n\nA standby from the set's base backup replaying {} segments \
         ({mib:.0} MiB) from Garage through the TLS front (as the restore part: recovery_prefetch \
         = off, time from pg_ctl start to the last segment), median of {} rounds.\n\n\
         | contender | MiB/s of WAL | seconds to catch up |\n|---|---|---|\n",
        set.names.len() - 1,
        ctx.rounds
    );
    let mut results = Vec::new();
    for (i, (name, command)) in contenders.iter().enumerate() {
        md.push_str(&format!(
            "| {name} | {:.0} | {:.2} |\n",
            mib / med[i],
            med[i]
        ));
        results.push(serde_json::json!({
            "name": name,
            "command": command,
            "median_secs": round2(med[i]),
            "median_mib_s": round2(mib / med[i]),
        }));
    }
    let ratios = [
        Ratio::new(
            "pitr-restore prefetch / pgbackrest archive-get, Garage https (catch-up speed)",
            med[2] / med[0],
            Some(2.0),
        ),
        Ratio::new(
            "pitr-restore prefetch / pgbackrest archive-get async 2 proc, Garage https",
            med[3] / med[0],
            None,
        ),
        Ratio::new(
            "pitr-restore prefetch / no prefetch, Garage https",
            med[1] / med[0],
            None,
        ),
    ];
    md.push('\n');
    md.push_str(&ratio_table(&ratios));
    let json = serde_json::json!({
        "results": results,
        "ratios": ratios.iter().map(Ratio::json).collect::<Vec<_>>(),
    });
    Ok((md, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(filters: &[&str]) -> Vec<String> {
        filters.iter().map(|f| f.to_string()).collect()
    }

    #[test]
    fn garage_is_started_only_for_a_selection_that_has_a_garage_contender() {
        assert!(
            needs_garage(None),
            "every contender, and the restore from the store"
        );
        for filters in [
            &["rsync ×2, ahead 8", "TLS repo", "one local", "omnipitr"][..],
            &["zstd rsync ×2, ahead 8"],
            &["its TLS repo server"],
        ] {
            assert!(!needs_garage(Some(&keep(filters))), "{filters:?}");
        }
        for filters in [
            &["Garage"][..],
            &["ahead 8"],
            &["one local", "https"],
            &["pgbackrest sync"],
            &["Garage S3, ahead 0"],
        ] {
            assert!(needs_garage(Some(&keep(filters))), "{filters:?}");
        }
    }
}

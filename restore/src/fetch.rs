//! Restoring one WAL file for PostgreSQL: wait for it, verify it, hand it over.
//!
//! The loop, once per `--poll-interval`: an immediate finish (trigger containing `NOW`, or
//! SIGUSR1) exits 1; a verified copy in the prefetch spool is renamed into `%p`; otherwise the
//! sources are searched, the file is decompressed and verified and written to `%p` through a
//! temporary name. A missing file exits 1 when it is a `.history` file, in standby mode, or
//! while finishing; otherwise we wait, removing unneeded segments if asked, and exit when the
//! server that called us is gone.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use pitr_common::controldata::{self, ControlData};
use pitr_common::exit::{self, Failure};
use pitr_common::pidfile::PidFile;
use pitr_common::wal::WalKind;
use pitr_common::{log_error, log_info, log_verbose, log_warning, pg, signal, source};

use crate::args::Config;
use crate::{prefetch, remove};

/// How a finish was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Keep replaying what is in the archive; end at the first missing file.
    Smart,
    /// End now.
    Now,
}

fn finish_requested(cfg: &Config) -> Option<Finish> {
    if signal::usr1_received() {
        return Some(Finish::Now);
    }
    let trigger = cfg.finish_trigger.as_ref()?;
    match std::fs::read(trigger) {
        Ok(content) => {
            let text = String::from_utf8_lossy(&content);
            if text.trim() == "NOW" {
                Some(Finish::Now)
            } else {
                Some(Finish::Smart)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            // It exists but cannot be read: the operator asked for a finish; be smart about it.
            log_warning!(
                "finish trigger {} exists but cannot be read ({e}); finishing smartly",
                trigger.display()
            );
            Some(Finish::Smart)
        }
    }
}

fn not_available(msg: &str) -> anyhow::Result<ExitCode> {
    log_info!("{msg}");
    Ok(ExitCode::from(exit::NOT_FOUND))
}

/// Reads pg_control; it is needed for the system identifier and the segment size. Failure is
/// fatal for recovery (126), never "end of archive".
pub fn read_control(cfg: &Config) -> anyhow::Result<ControlData> {
    controldata::read(&cfg.data_dir, cfg.pgcontroldata.as_deref()).map_err(|e| {
        anyhow::Error::from(e).context(
            Failure::new(format!(
                "cannot read pg_control of {}",
                cfg.data_dir.display()
            ))
            .hint("run pitr-restore from the data directory (PostgreSQL does) or give --data-dir")
            .status(exit::RESTORE_FATAL),
        )
    })
}

/// Whether the server that called us is gone: our parent changed (we were orphaned), or the
/// postmaster named in postmaster.pid no longer exists.
struct CallerWatch {
    parent: u32,
    postmaster: Option<u32>,
}

impl CallerWatch {
    fn new(data_dir: &Path) -> Self {
        let postmaster = std::fs::read_to_string(data_dir.join(pg::POSTMASTER_PID))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()));
        CallerWatch {
            parent: signal::parent_pid(),
            postmaster,
        }
    }

    fn gone(&self) -> bool {
        signal::parent_pid() != self.parent
            || self.postmaster.is_some_and(|p| !signal::process_alive(p))
    }
}

/// Logs a waiting condition when it changes, and again every minute while it lasts.
struct Quiet {
    last: Option<(String, Instant)>,
}

impl Quiet {
    fn say(&mut self, error: bool, msg: String) {
        self.say_as(error, msg.clone(), msg);
    }

    /// Like [`Quiet::say`], but a repeat is recognised by `key` rather than by the message, so
    /// that a message carrying a countdown is not logged on every poll.
    fn say_as(&mut self, error: bool, key: String, msg: String) {
        let due = match &self.last {
            Some((k, at)) => *k != key || at.elapsed() >= Duration::from_secs(60),
            None => true,
        };
        if due {
            if error {
                log_error!("{msg}");
            } else {
                log_info!("{msg}");
            }
            self.last = Some((key, Instant::now()));
        }
    }
}

/// The message for a segment held back by `--recovery-delay`, and its key for [`Quiet`].
fn too_fresh(name: &str, left: Duration) -> (String, String) {
    (
        format!("{name} is too fresh"),
        format!(
            "{name} found, but it is too fresh: waiting {}s more (--recovery-delay)",
            left.as_secs()
        ),
    )
}

/// A warm spare waits in restore_command; PostgreSQL 15+'s WAL read-ahead then asks for the
/// next segment before replaying the current one, and a fresh standby never gets consistent.
fn warn_if_recovery_prefetch_on(data_dir: &Path) {
    // Before 15 there is no read-ahead (and no such setting to suggest).
    let major = std::fs::read_to_string(data_dir.join(pg::PG_VERSION))
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok());
    if major.is_some_and(|m| m < 15) {
        return;
    }
    let mut setting: Option<String> = None;
    for f in [pg::POSTGRESQL_CONF, pg::POSTGRESQL_AUTO_CONF] {
        let Ok(text) = std::fs::read_to_string(data_dir.join(f)) else {
            continue;
        };
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if let Some(rest) = line.strip_prefix("recovery_prefetch") {
                let v = rest.trim_start().trim_start_matches('=').trim();
                setting = Some(v.trim_matches('\'').to_ascii_lowercase());
            }
        }
    }
    let on = match setting.as_deref() {
        None => true,
        Some(v) => !matches!(v, "off" | "false" | "no" | "0"),
    };
    if on {
        log_warning!(
            "recovery_prefetch is on (the default): while pitr-restore waits for the next segment, PostgreSQL's WAL read-ahead stalls replay of the current one"
        );
        log_warning!(
            "HINT: set recovery_prefetch = off in postgresql.conf for a warm spare, or use standby.signal with --streaming-replication"
        );
    }
}

fn is_fresh(cfg: &Config, mtime: SystemTime, finishing: bool) -> Option<Duration> {
    let delay = cfg.recovery_delay?;
    if finishing {
        return None;
    }
    let age = SystemTime::now()
        .duration_since(mtime)
        .unwrap_or(Duration::ZERO);
    (age < delay).then(|| delay - age)
}

/// Runs one restore_command call.
pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    if cfg.prefetch_worker {
        return prefetch::run_worker(cfg);
    }
    let _pid_file = match &cfg.pid_file {
        Some(p) => Some(PidFile::acquire(p, "pitr-restore").map_err(|e| {
            anyhow::Error::from(Failure::new(e.to_string()).status(exit::RESTORE_FATAL))
        })?),
        None => None,
    };
    signal::catch_usr1();
    let started = Instant::now();
    crate::args::check_sources(&cfg.sources)?;
    let control = read_control(cfg)?;
    let sysid = control.system_identifier;
    let seg_size = u64::from(control.wal_segment_size);
    let target = cfg
        .target
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("no %p given"))?;
    let name = cfg.wanted.to_string();
    let watch = CallerWatch::new(&cfg.data_dir);
    let mut quiet = Quiet { last: None };
    let mut remover = remove::Remover::new(cfg);
    let spool = prefetch::Spool::new(&cfg.data_dir);
    let mut warned_prefetch = false;
    if cfg.remove_unneeded && cfg.remove_before {
        remover.pass(cfg)?;
    }

    loop {
        let finish = finish_requested(cfg);
        if finish == Some(Finish::Now) {
            return not_available(&format!(
                "immediate finish requested; not restoring {name}, ending recovery"
            ));
        }
        let finishing = finish.is_some();

        // A verified copy prepared by the prefetch worker: hand it over with a rename.
        if cfg.wanted.kind == WalKind::Segment && cfg.prefetch > 0 {
            match spool.take(&cfg.wanted, seg_size, sysid) {
                Ok(Some(mtime)) => {
                    if let Some(left) = is_fresh(cfg, mtime, finishing) {
                        let (key, msg) = too_fresh(&name, left);
                        quiet.say_as(false, key, msg);
                    } else {
                        spool.hand_over(&cfg.wanted, target)?;
                        prefetch::start_worker(cfg, &spool, seg_size);
                        log_info!("Segment {name} restored (prefetched)");
                        log_verbose!(
                            "Timer [restore {name}] took: {:.3}s",
                            started.elapsed().as_secs_f64()
                        );
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                Ok(None) => {}
                Err(e) => log_warning!("discarding prefetched {name}: {e:#}"),
            }
        }

        let outcome = match source::find(&cfg.sources, &cfg.wanted) {
            Ok(found) => found,
            Err(e @ source::Error::Unsupported { .. }) => {
                quiet.say(true, format!("cannot restore {name}: {e}"));
                if cfg.streaming {
                    return Ok(ExitCode::from(exit::NOT_FOUND));
                }
                None
            }
            Err(e) => {
                return Err(anyhow::Error::from(e).context(
                    Failure::new(format!("cannot look for {name} in the archive"))
                        .hint("make the archive readable by the user PostgreSQL runs as; recovery stops rather than ending early")
                        .status(exit::RESTORE_FATAL),
                ))
            }
        };
        match outcome {
            Some(found) => match is_fresh(cfg, found.mtime, finishing) {
                Some(left) => {
                    let (key, msg) = too_fresh(&name, left);
                    quiet.say_as(false, key, msg);
                }
                None => match source::restore_verified(
                    &found,
                    &cfg.wanted,
                    sysid,
                    target,
                    source::RestoreOptions::default(),
                ) {
                    Ok(()) => {
                        if cfg.wanted.kind == WalKind::Segment && cfg.prefetch > 0 {
                            prefetch::start_worker(cfg, &spool, seg_size);
                        }
                        log_info!("Segment {name} restored");
                        log_verbose!(
                            "Timer [restore {name}] took: {:.3}s",
                            started.elapsed().as_secs_f64()
                        );
                        return Ok(ExitCode::SUCCESS);
                    }
                    Err(source::Error::Write(e)) => return Err(e.into()),
                    Err(e) => {
                        // Never hand PostgreSQL a damaged or foreign file. Wait: the archive can
                        // be repaired; ending recovery here would promote at the wrong point.
                        let refusal =
                            format!("archived {name} is not usable, not restoring it: {e:#}");
                        if cfg.streaming {
                            log_error!("{refusal}");
                            log_error!("HINT: replace the archived file with a good copy; the standby retries it");
                            return Ok(ExitCode::from(exit::NOT_FOUND));
                        }
                        // One message with its HINT, so that Quiet sees the same condition on
                        // every poll (two alternating messages were each logged every poll).
                        quiet.say(true, format!("{refusal}\nHINT: replace the archived file with a good copy; pitr-restore keeps checking it"));
                    }
                },
            },
            None => {
                if cfg.wanted.kind == WalKind::History {
                    return not_available(&format!(
                        "requested history file {name} is not in the archive"
                    ));
                }
                if finishing {
                    return not_available(&format!(
                        "finish requested and {name} is not in the archive; ending recovery"
                    ));
                }
                if cfg.streaming {
                    log_verbose!("{name} is not in the archive (standby mode: not waiting)");
                    return Ok(ExitCode::from(exit::NOT_FOUND));
                }
                if !warned_prefetch {
                    warn_if_recovery_prefetch_on(&cfg.data_dir);
                    warned_prefetch = true;
                }
                quiet.say(false, format!("waiting for {name}"));
            }
        }

        // Waiting: clean up behind ourselves, then sleep, watching for the caller's exit and
        // SIGUSR1.
        if cfg.remove_unneeded {
            remover.pass(cfg)?;
        }
        let until = Instant::now() + cfg.poll;
        loop {
            if watch.gone() {
                return not_available(&format!(
                    "the server that asked for {name} is gone; exiting"
                ));
            }
            if signal::usr1_received() {
                break;
            }
            let now = Instant::now();
            if now >= until {
                break;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(100)));
        }
    }
}

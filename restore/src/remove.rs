//! Removing archived segments a standby no longer needs (`--remove-unneeded`).
//!
//! The oldest file still needed is `--oldest-needed` (PostgreSQL's `%r`) or pg_control's REDO
//! WAL file, whose timeline is printed in hex (OmniPITR printed it in decimal). Files are
//! compared by position only, ignoring the timeline, as `pg_archivecleanup` does; `.history`
//! files are never removed; nothing is removed while `--removal-pause-trigger` exists; at most
//! `--remove-at-a-time` files go per pass. Nothing is removed from a directory whose cluster
//! marker names another database system (or cannot be read): a `--source` pointed at another
//! cluster's archive would otherwise lose that cluster's WAL below our REDO point.

use std::time::{Duration, Instant};

use pitr_common::exit::{self, Failure};
use pitr_common::wal::WalFileName;
use pitr_common::{archive_dir, log_error, log_hint, log_info, log_warning, source};

use crate::args::{Config, OldestNeeded, OnControlError};

/// Removal state kept across the passes of one call.
#[derive(Debug, Default)]
pub struct Remover {
    pause_logged: bool,
    suspended_until: Option<Instant>,
    marker_logged: bool,
    failure_logged: bool,
    store_logged: bool,
}

impl Remover {
    fn oldest_needed(&mut self, cfg: &Config) -> anyhow::Result<Option<WalFileName>> {
        match cfg.oldest_needed {
            Some(OldestNeeded::Wal(n)) => return Ok(Some(n)),
            Some(OldestNeeded::Nothing) => return Ok(None),
            None => {}
        }
        // Until recovery has read backup_label (and renamed it backup_label.old), pg_control is
        // the one copied with the base backup: a checkpoint that ran during the copy leaves its
        // REDO past where recovery starts, and removing by it would take WAL recovery still
        // needs (OmniPITR's -rb did). PostgreSQL's own %r is all zeros then.
        if cfg.data_dir.join(pitr_common::pg::BACKUP_LABEL).exists() {
            return Ok(None);
        }
        match crate::fetch::read_control(cfg) {
            Ok(c) => Ok(Some(c.redo_wal_file())),
            Err(e) => match cfg.on_control_error {
                OnControlError::Break => Err(e),
                OnControlError::Ignore => {
                    log_error!("{e:#}; not removing anything for 5 minutes");
                    self.suspended_until = Some(Instant::now() + Duration::from_secs(300));
                    Ok(None)
                }
                OnControlError::Hang => {
                    log_error!(
                        "{e:#}; hanging until the server stops (--error-pgcontroldata hang)"
                    );
                    let parent = pitr_common::signal::parent_pid();
                    while pitr_common::signal::parent_pid() == parent {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    Err(Failure::new("the server that called pitr-restore is gone")
                        .status(exit::NOT_FOUND)
                        .into())
                }
            },
        }
    }

    /// One removal pass, in the archive of the database system `system_identifier`.
    pub fn pass(&mut self, cfg: &Config, system_identifier: u64) -> anyhow::Result<()> {
        if let Some(t) = &cfg.removal_pause_trigger {
            if t.exists() {
                if !self.pause_logged {
                    log_info!(
                        "removal pause trigger {} exists; not removing any old segments",
                        t.display()
                    );
                    self.pause_logged = true;
                }
                return Ok(());
            }
        }
        if self.suspended_until.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        let Some(oldest) = self.oldest_needed(cfg)? else {
            return Ok(());
        };
        if !self.store_logged {
            if let Some(s) = cfg.sources.iter().find(|s| s.as_dir().is_none()) {
                log_warning!(
                    "--remove-unneeded removes from directories only; nothing is removed from {s}"
                );
                log_hint!("remove old WAL from an object store with pitr-cleanup (archive_cleanup_command = 'pitr-cleanup --archive ... %r')");
                self.store_logged = true;
            }
        }
        let mut budget = cfg.remove_at_a_time;
        for dir in cfg.sources.iter().filter_map(|s| s.as_dir()) {
            if budget == 0 {
                break;
            }
            if let Err(e) = source::check_dir_marker(dir, system_identifier) {
                if !self.marker_logged {
                    log_error!("not removing old segments from {}: {e}", dir.display());
                    self.marker_logged = true;
                }
                continue;
            }
            // Removal is housekeeping: a file that cannot go (an archive this user may read but
            // not change) is an ERROR in the log, never the end of recovery.
            let removed = match archive_dir::remove_older(dir, &oldest, Some(budget), false) {
                Ok(r) => r,
                Err(e) => {
                    if !self.failure_logged {
                        log_error!("cannot remove old segments from {}: {e}", dir.display());
                        log_hint!(
                            "the user PostgreSQL runs as needs write access to {} for --remove-unneeded; recovery goes on",
                            dir.display()
                        );
                        self.failure_logged = true;
                    }
                    continue;
                }
            };
            for r in &removed {
                log_info!(
                    "Segment {} ({}) removed, as it is too old (older than {oldest})",
                    r.wal,
                    r.path.display()
                );
            }
            budget -= removed.len();
        }
        Ok(())
    }
}

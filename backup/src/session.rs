//! The one database session of a backup: connection, server facts, `pg_backup_start()` and
//! `pg_backup_stop()`.
//!
//! Only non-exclusive backups are used: the backup belongs to this session, and if the session
//! ends before `pg_backup_stop()` (an error, a signal, `kill -9`) the server aborts the backup by
//! itself. So the error path simply drops the [`Session`]: closing the connection is the
//! cleanup. A query that may block for long (`pg_backup_start` waits for a checkpoint) runs
//! while a watcher thread polls for SIGINT/SIGTERM and cancels it, so that a signal is never
//! held up by the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use pitr_common::exit::Failure;
use pitr_common::label::BackupLabel;
use pitr_common::signal;
use pitr_common::wal::Lsn;
use postgres::{Client, NoTls};

use crate::args::Connection;

/// What the server says about itself.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    /// `server_version_num` (150004).
    pub version_num: i32,
    /// `server_version` up to the first space (`15.4`).
    pub version: String,
    /// `pg_is_in_recovery()`: a standby.
    pub in_recovery: bool,
    /// `pg_control_system().system_identifier`.
    pub system_identifier: u64,
    /// `data_directory`, when this user may read it.
    pub data_directory: Option<String>,
}

/// What `pg_backup_stop()` returns.
#[derive(Debug, Clone)]
pub struct StopResult {
    /// The stop location.
    pub stop_lsn: Lsn,
    /// The `backup_label` to put into the backup.
    pub label_file: String,
    /// The `tablespace_map` (empty without tablespaces).
    pub tablespace_map: String,
}

/// An open session.
pub struct Session {
    client: Client,
    facts: ServerFacts,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("facts", &self.facts)
            .finish()
    }
}

/// The error of a run stopped by SIGINT or SIGTERM.
pub fn interrupted() -> anyhow::Error {
    Failure::new("interrupted by a signal; the backup was abandoned").into()
}

/// An error once SIGINT or SIGTERM has arrived: every loop of a backup calls it.
pub fn check_interrupt() -> anyhow::Result<()> {
    if signal::termination_requested() {
        Err(interrupted())
    } else {
        Ok(())
    }
}

impl Session {
    /// Connects and reads the server facts.
    pub fn connect(conn: &Connection) -> anyhow::Result<Session> {
        let mut client = conn.connect("pitr-backup")?;
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int4, \
                        current_setting('server_version'), \
                        pg_is_in_recovery(), \
                        (SELECT system_identifier FROM pg_control_system())::text",
                &[],
            )
            .map_err(|e| anyhow::anyhow!("{}", pitr_common::pgconn::message(&e)))
            .context("reading the server's version and role")?;
        let version_num: i32 = row.get(0);
        let version: String = row.get(1);
        let sysid: String = row.get(3);
        // data_directory is readable only by superusers and pg_read_all_settings; without it
        // the system identifier check alone has to do.
        let data_directory = client
            .query_one("SELECT current_setting('data_directory')", &[])
            .ok()
            .map(|r| r.get::<_, String>(0));
        let facts = ServerFacts {
            version_num,
            version: version
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
            in_recovery: row.get(2),
            system_identifier: sysid
                .parse()
                .with_context(|| format!("bad system identifier {sysid:?} from the server"))?,
            data_directory,
        };
        if facts.version_num < 130_000 {
            return Err(Failure::new(format!(
                "the server runs PostgreSQL {}; pitr-backup needs 13 or later",
                facts.version
            ))
            .hint("use pg_basebackup for older servers")
            .into());
        }
        Ok(Session { client, facts })
    }

    /// The server facts read at connection.
    pub fn facts(&self) -> &ServerFacts {
        &self.facts
    }

    /// Runs `f` on the client while a watcher thread cancels the running query when SIGINT or
    /// SIGTERM arrives; a cancelled query is reported as an interruption.
    fn cancellable<T>(
        &mut self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> anyhow::Result<T> {
        let token = self.client.cancel_token();
        let done = AtomicBool::new(false);
        let result = std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                while !done.load(Ordering::SeqCst) {
                    if signal::termination_requested() {
                        // A failed cancel leaves the query running to its end; nothing better
                        // can be done, and the signal is acted on right after it.
                        let _ = token.cancel_query(NoTls);
                        return;
                    }
                    // Woken early when the query ends: the scope waits for this thread, and a
                    // plain sleep added up to 100 ms to every call.
                    std::thread::park_timeout(Duration::from_millis(100));
                }
            });
            let r = f(&mut self.client);
            done.store(true, Ordering::SeqCst);
            watcher.thread().unpark();
            r
        });
        if signal::termination_requested() {
            return Err(interrupted());
        }
        result.map_err(|e| anyhow::anyhow!("{}", pitr_common::pgconn::message(&e)))
    }

    /// `pg_backup_start(label, fast)` (`pg_start_backup(label, fast, false)` before 15): the
    /// backup's start location.
    pub fn start_backup(&mut self, label: &str, fast: bool) -> anyhow::Result<Lsn> {
        let sql = if self.facts.version_num >= 150_000 {
            "SELECT pg_backup_start($1, $2)::text"
        } else {
            "SELECT pg_start_backup($1, $2, false)::text"
        };
        let lsn: String =
            self.cancellable(|c| c.query_one(sql, &[&label, &fast]).map(|r| r.get(0)))
                .map_err(|e| {
                    e.context(Failure::new("cannot start the backup").hint(
                        "the user needs superuser or EXECUTE on pg_backup_start/pg_backup_stop",
                    ))
                })?;
        lsn.parse()
            .with_context(|| format!("bad start location {lsn:?} from the server"))
    }

    /// `pg_backup_stop(wait_for_archive)` (`pg_stop_backup(false, wait_for_archive)` before 15).
    ///
    /// With `wait_for_archive` `None` the server does not wait for WAL archiving: pitr-backup
    /// collects the WAL it needs itself, with `--wal-timeout`, instead of hanging as long as
    /// archiving fails. With `Some(limit)` (`--skip-xlogs`: the set has no WAL of its own and
    /// is only restorable from the archive) the server waits, as OmniPITR's
    /// `pg_stop_backup()` did, until the backup's last segment and its history file are
    /// archived, for at most `limit` (a `statement_timeout`); past it the backup fails rather
    /// than commit a set whose WAL is nowhere. The backup itself is over on the server either
    /// way. On a standby the server waits only with `archive_mode = always`.
    pub fn stop_backup(
        &mut self,
        wait_for_archive: Option<Duration>,
    ) -> anyhow::Result<StopResult> {
        let sql = if self.facts.version_num >= 150_000 {
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop($1)"
        } else {
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, $1)"
        };
        let wait = wait_for_archive.is_some();
        if let Some(limit) = wait_for_archive {
            self.client
                .batch_execute(&format!(
                    "SET statement_timeout = {}",
                    limit.as_millis().max(1)
                ))
                .map_err(|e| anyhow::anyhow!("{}", pitr_common::pgconn::message(&e)))
                .context("setting the wait for WAL archiving")?;
        }
        let mut timed_out = false;
        let stopped = self.cancellable(|c| {
            let r = c.query_one(sql, &[&wait]);
            if let Err(e) = &r {
                timed_out = e.code() == Some(&postgres::error::SqlState::QUERY_CANCELED);
            }
            r.map(|r| (r.get(0), r.get(1), r.get(2)))
        });
        let (lsn, label_file, map): (String, String, Option<String>) = match (stopped, wait_for_archive) {
            (Ok(v), _) => v,
            (Err(_), Some(limit)) if timed_out => {
                return Err(Failure::new(format!(
                    "the server did not archive the WAL this backup needs within {} s (--skip-xlogs: the set has no WAL of its own, so pg_backup_stop waits for the archive)",
                    limit.as_secs()
                ))
                .hint("check that archiving works (pg_stat_archiver, the server log), or raise --wal-timeout; no backup set was written")
                .into())
            }
            (Err(e), _) => return Err(e.context("stopping the backup")),
        };
        if wait {
            self.client
                .batch_execute("RESET statement_timeout")
                .map_err(|e| anyhow::anyhow!("{}", pitr_common::pgconn::message(&e)))
                .context("ending the wait for WAL archiving")?;
        }
        let stop_lsn = lsn
            .parse()
            .with_context(|| format!("bad stop location {lsn:?} from the server"))?;
        Ok(StopResult {
            stop_lsn,
            label_file,
            tablespace_map: map.unwrap_or_default(),
        })
    }
}

/// The backup label's facts, from the text `pg_backup_stop()` returned.
pub fn parse_label(text: &str) -> anyhow::Result<BackupLabel> {
    BackupLabel::parse(text).context("reading the backup_label returned by the server")
}

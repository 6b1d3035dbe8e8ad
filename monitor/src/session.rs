//! The one database session of `archive-queue`: where the server writes WAL now, and what its
//! archiver last did.
//!
//! Connection as pitr-backup's (`pitr_common::pgconn`: `--host/--port/--username/--database`,
//! else the libpq environment variables). One query reads everything, so the answer is
//! consistent.

use pitr_common::exit::Failure;
use pitr_common::wal::{Lsn, SegSize, WalFileName};

use crate::args::Connection;

/// What the server says about its WAL and its archiver.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiverFacts {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// `archive_mode`.
    pub archive_mode: String,
    /// The WAL file being written (`pg_walfile_name(pg_current_wal_lsn())`), on a primary.
    pub current_wal: Option<String>,
    /// `wal_segment_size`.
    pub seg_size: SegSize,
    /// `pg_stat_archiver.last_archived_wal`.
    pub last_archived_wal: Option<String>,
    /// `pg_stat_archiver.last_archived_time`, Unix seconds.
    pub last_archived_time: Option<f64>,
    /// `pg_stat_archiver.failed_count`.
    pub failed_count: i64,
    /// `pg_stat_archiver.last_failed_wal`.
    pub last_failed_wal: Option<String>,
}

/// Connects, reads the facts in one query, and disconnects.
pub fn archiver_facts(conn: &Connection) -> anyhow::Result<ArchiverFacts> {
    let mut client = conn.connect("pitr-monitor")?;
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), \
                    current_setting('archive_mode'), \
                    CASE WHEN pg_is_in_recovery() THEN NULL \
                         ELSE pg_walfile_name(pg_current_wal_lsn()) END, \
                    (SELECT setting::int8 FROM pg_settings WHERE name = 'wal_segment_size'), \
                    a.last_archived_wal, \
                    extract(epoch FROM a.last_archived_time)::float8, \
                    a.failed_count, \
                    a.last_failed_wal, \
                    CASE WHEN pg_is_in_recovery() THEN NULL \
                         ELSE pg_current_wal_lsn()::text END \
             FROM pg_stat_archiver a",
            &[],
        )
        .map_err(|e| {
            anyhow::Error::from(
                Failure::new(format!(
                    "cannot read the archiver's state: {}",
                    pitr_common::pgconn::message(&e)
                ))
                .hint("the user needs to read pg_stat_archiver and pg_settings (any user may)"),
            )
        })?;
    let raw_size: i64 = row.get(3);
    let seg_size = u64::try_from(raw_size)
        .ok()
        .and_then(|b| SegSize::new(b).ok())
        .ok_or_else(|| {
            Failure::new(format!(
                "the server's wal_segment_size {raw_size} is not a WAL segment size"
            ))
            .hint("check that --host and --port point at a PostgreSQL server")
        })?;
    // pg_walfile_name() names the preceding file for a location exactly at a file boundary
    // (just after a switch, the state of an idle primary with archive_timeout): the segment
    // being written is the one holding the location, so the file just finished would count
    // as the one being written, and a failure to archive it as a queue of 0.
    let current_wal: Option<String> = row.get(2);
    let current_lsn: Option<String> = row.get(8);
    let current_wal = match (current_wal, current_lsn) {
        (Some(name), Some(lsn)) => Some(match (WalFileName::parse(&name), lsn.parse::<Lsn>()) {
            (Ok(w), Ok(l)) => WalFileName::containing(w.timeline, l, seg_size).to_string(),
            _ => name,
        }),
        (name, _) => name,
    };
    Ok(ArchiverFacts {
        in_recovery: row.get(0),
        archive_mode: row.get(1),
        current_wal,
        seg_size,
        last_archived_wal: row.get(4),
        last_archived_time: row.get(5),
        failed_count: row.get(6),
        last_failed_wal: row.get(7),
    })
}

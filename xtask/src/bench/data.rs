//! The bench's two data sets: what the database holds and how its WAL is made.
//!
//! - `pgbench`: pgbench's own tables and transactions. Its WAL compresses about 13× with zstd:
//!   mostly zero-filled page space and repeated filler.
//! - `mixed`: a table of documents as applications keep them (a random uuid, an owner, a title
//!   and a jsonb body of prose-like text, a status and an md5 hash), with five indexes, churned
//!   by updates that change indexed columns (no HOT updates), inserts and deletes. Its WAL
//!   compresses 2–5×, as real WAL does; the bench prints the measured ratio of each set.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use pitr_tests::Cluster;

/// One of the bench's data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    Pgbench,
    Mixed,
}

/// Rows of the mixed table per unit of scale (a unit of pgbench scale is about 15 MiB; so is
/// this many documents with their indexes).
const MIXED_ROWS_PER_SCALE: u32 = 12_000;

/// Documents one churn round updates, inserts and deletes.
const MIXED_ROUND_ROWS: u32 = 3_000;

/// Makes the mixed table's helper and the table itself (empty).
const MIXED_SCHEMA: &str = "
CREATE FUNCTION bench_words(n int) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT string_agg((ARRAY['archive','segment','restore','replica','timeline','checkpoint',
    'invoice','customer','shipment','warehouse','pending','approved','rejected','the','of',
    'and','to','a','in','is','for','on','with','order','status','quantity','priority',
    'delivery','address','street','city','berlin','lisbon','osaka','denver','note','refund',
    'discount','payment','account','balance','transfer','review','ticket','urgent','later'])
    [1 + floor(random() * 46)::int] || CASE WHEN random() < 0.1
      THEN ' ' || floor(random() * 100000)::text ELSE '' END, ' ')
  FROM generate_series(1, n)
$$;
CREATE TABLE bench_docs (
  id bigserial PRIMARY KEY,
  uid uuid NOT NULL DEFAULT gen_random_uuid(),
  owner int NOT NULL,
  title text NOT NULL,
  body jsonb NOT NULL,
  updated timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ON bench_docs (uid);
CREATE INDEX ON bench_docs (owner, updated);
CREATE INDEX ON bench_docs ((body->>'status'));
CREATE INDEX ON bench_docs (title text_pattern_ops);
";

/// A new document's columns but id, uid and updated, as an INSERT's SELECT list.
const MIXED_ROW: &str = "(random() * 20000)::int, bench_words(4 + (random() * 6)::int), \
  jsonb_build_object('status', (ARRAY['new','open','paid','shipped','closed'])[1 + floor(random() * 5)::int], \
  'note', bench_words(20 + (random() * 60)::int), 'hash', md5(random()::text), \
  'amount', round((random() * 10000)::numeric, 2), 'tags', jsonb_build_array(bench_words(1), bench_words(1)))";

impl Data {
    /// Parses `--data`: a comma-separated list of set names.
    pub fn parse_list(text: &str) -> Result<Vec<Data>> {
        let mut out = Vec::new();
        for name in text.split(',').map(str::trim) {
            let d = match name {
                "pgbench" => Data::Pgbench,
                "mixed" => Data::Mixed,
                other => bail!("--data: unknown data set {other:?} (pgbench, mixed)"),
            };
            if !out.contains(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// The set's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Data::Pgbench => "pgbench",
            Data::Mixed => "mixed",
        }
    }

    /// A report key for part `key` on this set: the pgbench set keeps the bare key.
    pub fn key(self, key: &str) -> String {
        match self {
            Data::Pgbench => key.to_owned(),
            Data::Mixed => format!("{key}-mixed"),
        }
    }

    /// Fills the (running) cluster at `scale`: `pgbench -i -s SCALE`, or as many documents.
    pub fn init(self, cluster: &Cluster, scale: u32) {
        match self {
            Data::Pgbench => cluster.pgbench_init(scale),
            Data::Mixed => {
                cluster.psql(MIXED_SCHEMA);
                let rows = scale * MIXED_ROWS_PER_SCALE;
                let batch = 50_000;
                for start in (0..rows).step_by(batch as usize) {
                    let n = batch.min(rows - start);
                    cluster.psql(&format!(
                        "INSERT INTO bench_docs (owner, title, body) SELECT {MIXED_ROW} FROM generate_series(1, {n})"
                    ));
                }
                cluster.psql("VACUUM ANALYZE bench_docs");
            }
        }
    }

    /// One round of writes: pgbench's transactions, or updates of indexed columns of random
    /// documents plus as many inserts and a few deletes.
    pub fn churn(self, cluster: &Cluster) {
        match self {
            Data::Pgbench => cluster.pgbench(3000, 2),
            Data::Mixed => {
                let n = MIXED_ROUND_ROWS;
                cluster.psql_session(&[
                    &format!(
                        "UPDATE bench_docs SET owner = owner + 1, updated = clock_timestamp(), \
                         title = bench_words(5), \
                         body = body || jsonb_build_object('status', (ARRAY['open','paid','shipped','closed'])[1 + floor(random() * 4)::int], \
                         'note', bench_words(30 + (random() * 40)::int)) \
                         WHERE id IN (SELECT 1 + (random() * (SELECT max(id) FROM bench_docs))::bigint FROM generate_series(1, {n}))"
                    ),
                    &format!(
                        "INSERT INTO bench_docs (owner, title, body) SELECT {MIXED_ROW} FROM generate_series(1, {n})"
                    ),
                    &format!(
                        "DELETE FROM bench_docs WHERE id IN (SELECT 1 + (random() * (SELECT max(id) FROM bench_docs))::bigint FROM generate_series(1, {}))",
                        n / 10
                    ),
                ]);
            }
        }
    }
}

/// How many times smaller zstd at level 3 makes `files` (whole files, one frame each): the
/// compressibility the reports state for each set.
pub fn zstd_ratio<'a>(files: impl Iterator<Item = &'a Path>) -> Result<f64> {
    let (mut raw, mut packed) = (0u64, 0u64);
    let mut buf = Vec::new();
    for path in files {
        buf.clear();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .with_context(|| format!("reading {}", path.display()))?;
        raw += buf.len() as u64;
        packed += zstd::bulk::compress(&buf, 3)
            .with_context(|| format!("compressing {}", path.display()))?
            .len() as u64;
    }
    Ok(match packed {
        0 => 0.0,
        p => raw as f64 / p as f64,
    })
}

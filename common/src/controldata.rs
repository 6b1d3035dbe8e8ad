//! Cluster facts from `global/pg_control`: system identifier, checkpoint and REDO location,
//! timeline, WAL segment size, state, minimum recovery point.
//!
//! [`parse`] reads the file natively, a pure function of its bytes, for the layouts of
//! `pg_control` versions 1300 (PostgreSQL 13 to 16), 1700 (17) and 1800 (18); it checks the
//! CRC-32C and the platform fields (maxAlign, floatFormat) the way PostgreSQL does, so that no
//! PostgreSQL client program is needed. [`parse_controldata_output`] reads the text that
//! `pg_controldata` prints under `LC_ALL=C`. [`read`] reads a data directory's file and runs
//! `pg_controldata` only when the native parser does not know the file's version.
//!
//! The layouts are those of `ControlFileData` in PostgreSQL's `src/include/catalog/pg_control.h`
//! on a 64-bit little-endian platform (the file is written in the server's native byte order and
//! alignment). Fixtures captured from real clusters of every supported major are under
//! `common/tests/fixtures/pg_control/`.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::fs::IoError;
use crate::process::CommandError;
use crate::wal::{Lsn, SegSize, Timeline, WalFileName};

/// The state of the cluster recorded in pg_control (`DBState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbState {
    /// `starting up`
    StartingUp,
    /// `shut down`: a clean shutdown of a primary.
    ShutDown,
    /// `shut down in recovery`: a clean shutdown of a standby.
    ShutDownInRecovery,
    /// `shutting down`
    ShuttingDown,
    /// `in crash recovery`
    InCrashRecovery,
    /// `in archive recovery`: a standby or a PITR restore that is running.
    InArchiveRecovery,
    /// `in production`: a running primary (or one that crashed).
    InProduction,
    /// A value this build does not know.
    Unknown(u32),
}

impl DbState {
    fn from_code(code: u32) -> DbState {
        match code {
            0 => DbState::StartingUp,
            1 => DbState::ShutDown,
            2 => DbState::ShutDownInRecovery,
            3 => DbState::ShuttingDown,
            4 => DbState::InCrashRecovery,
            5 => DbState::InArchiveRecovery,
            6 => DbState::InProduction,
            other => DbState::Unknown(other),
        }
    }

    /// Reads the state as `pg_controldata` prints it (`shut down in recovery`).
    pub fn from_text(text: &str) -> Option<DbState> {
        Some(match text {
            "starting up" => DbState::StartingUp,
            "shut down" => DbState::ShutDown,
            "shut down in recovery" => DbState::ShutDownInRecovery,
            "shutting down" => DbState::ShuttingDown,
            "in crash recovery" => DbState::InCrashRecovery,
            "in archive recovery" => DbState::InArchiveRecovery,
            "in production" => DbState::InProduction,
            _ => return None,
        })
    }

    /// Was the cluster shut down cleanly (as primary or as standby)?
    pub fn is_shut_down(self) -> bool {
        matches!(self, DbState::ShutDown | DbState::ShutDownInRecovery)
    }
}

impl fmt::Display for DbState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DbState::StartingUp => "starting up",
            DbState::ShutDown => "shut down",
            DbState::ShutDownInRecovery => "shut down in recovery",
            DbState::ShuttingDown => "shutting down",
            DbState::InCrashRecovery => "in crash recovery",
            DbState::InArchiveRecovery => "in archive recovery",
            DbState::InProduction => "in production",
            DbState::Unknown(_) => "unrecognized status code",
        })
    }
}

/// The facts of pg_control that pitr uses, in the types of [`crate::wal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    /// `PG_CONTROL_VERSION` of the file (1300 for PostgreSQL 13 to 16, 1700, 1800).
    pub pg_control_version: u32,
    /// The catalog version number (identifies the major version more finely).
    pub catalog_version: u32,
    /// The database system identifier; every WAL page header of the cluster carries it.
    pub system_identifier: u64,
    /// The cluster state.
    pub state: DbState,
    /// The location of the latest checkpoint record.
    pub checkpoint_lsn: Lsn,
    /// The REDO location of the latest checkpoint: replay starts there.
    pub redo_lsn: Lsn,
    /// The timeline of the latest checkpoint (`ThisTimeLineID`).
    pub timeline: Timeline,
    /// Bytes per WAL segment.
    pub wal_segment_size: SegSize,
    /// The minimum recovery ending location (0/0 when not in recovery).
    pub min_recovery_point: Lsn,
    /// The timeline of the minimum recovery ending location (0 when not in recovery).
    pub min_recovery_point_timeline: Timeline,
    /// The database block size.
    pub block_size: u32,
}

impl ControlData {
    /// The WAL file holding the REDO location, which recovery needs first
    /// (`000000010000000000000002`); segments before it are no longer needed.
    pub fn redo_wal_file(&self) -> WalFileName {
        WalFileName::containing(self.timeline, self.redo_lsn, self.wal_segment_size)
    }
}

/// pg_control bytes or `pg_controldata` text that cannot be read (no path: [`read`] adds it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Fewer bytes than the layout needs.
    #[error("pg_control is too short: {len} bytes, expected at least {need}")]
    TooShort {
        /// Bytes found.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// A `pg_control_version` this build has no layout for.
    #[error(
        "unsupported pg_control version {version} (this build reads 1300, 1700 and 1800, \
         PostgreSQL 13 to 18)"
    )]
    UnknownVersion {
        /// The version found.
        version: u32,
    },
    /// The stored CRC-32C does not match the content: a torn or corrupt file.
    #[error("pg_control checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    CrcMismatch {
        /// The CRC stored in the file.
        stored: u32,
        /// The CRC of the content.
        computed: u32,
    },
    /// A field has a value PostgreSQL itself would reject.
    #[error("invalid {field} in pg_control: {value}")]
    BadValue {
        /// The field, as `pg_controldata` names it.
        field: &'static str,
        /// The value found.
        value: String,
    },
    /// `pg_controldata` printed a CRC warning: its values cannot be trusted.
    #[error("pg_controldata reports a pg_control checksum mismatch")]
    OutputCrcWarning,
    /// A field `pg_controldata` should print is missing.
    #[error("pg_controldata output has no \"{field}\" line")]
    MissingField {
        /// The label of the missing line.
        field: &'static str,
    },
    /// A line of `pg_controldata` output has a value that cannot be parsed.
    #[error("cannot parse \"{field}\" in pg_controldata output: {value:?}")]
    BadField {
        /// The label of the line.
        field: &'static str,
        /// The value found.
        value: String,
    },
}

/// pg_control of a data directory that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The file was read but is not a valid pg_control.
    #[error("cannot use {}", path.display())]
    Parse {
        /// The pg_control file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ParseError,
    },
    /// The file's version is unknown here and `pg_controldata` could not be run.
    #[error(
        "{} has pg_control version {version}, which this build cannot read natively, \
         and pg_controldata failed",
        path.display()
    )]
    Fallback {
        /// The pg_control file.
        path: PathBuf,
        /// The version found.
        version: u32,
        /// Why `pg_controldata` failed.
        #[source]
        source: CommandError,
    },
    /// `pg_controldata` ran but its output could not be read.
    #[error("cannot parse the output of {} for {}", program.display(), data_dir.display())]
    Output {
        /// The program run.
        program: PathBuf,
        /// The data directory.
        data_dir: PathBuf,
        /// Why.
        #[source]
        source: ParseError,
    },
}

/// Offsets into `ControlFileData` of one pg_control version (64-bit, 8-byte MAXALIGN).
struct Layout {
    state: usize,
    checkpoint: usize,
    /// `checkPointCopy.redo`.
    redo: usize,
    /// `checkPointCopy.ThisTimeLineID`.
    timeline: usize,
    min_recovery_point: usize,
    min_recovery_point_timeline: usize,
    max_align: usize,
    float_format: usize,
    blcksz: usize,
    xlog_seg_size: usize,
    crc: usize,
}

/// PostgreSQL 13 to 16 (1300) and 17 (1700). 17 added `wal_level` to `CheckPoint`, in the
/// padding after `fullPageWrites`, so no offset moved.
const LAYOUT_1300: Layout = Layout {
    state: 16,
    checkpoint: 32,
    redo: 40,
    timeline: 48,
    min_recovery_point: 136,
    min_recovery_point_timeline: 144,
    max_align: 204,
    float_format: 208,
    blcksz: 216,
    xlog_seg_size: 228,
    crc: 288,
};

/// PostgreSQL 18 (1800): `default_char_signedness` after `data_checksum_version` moves the
/// mock authentication nonce by one byte and the CRC by four.
const LAYOUT_1800: Layout = Layout {
    crc: 292,
    ..LAYOUT_1300
};

const SYSTEM_IDENTIFIER: usize = 0;
const PG_CONTROL_VERSION: usize = 8;
const CATALOG_VERSION: usize = 12;
/// `FLOATFORMAT_VALUE`.
const FLOAT_FORMAT: f64 = 1234567.0;
/// `ALIGNOF_DOUBLE` etc. on the 64-bit platforms we read.
const MAX_ALIGN: u32 = 8;

fn layout(version: u32) -> Option<&'static Layout> {
    match version {
        1300 | 1700 => Some(&LAYOUT_1300),
        1800 => Some(&LAYOUT_1800),
        _ => None,
    }
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = bytes.get(offset..offset + 4) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = bytes.get(offset..offset + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

/// Is `size` a block size PostgreSQL can be built with (a power of two from 1 to 32 KiB)?
fn valid_block_size(size: u32) -> bool {
    size.is_power_of_two() && (1024..=32768).contains(&size)
}

/// Parses the bytes of a `global/pg_control` file.
pub fn parse(bytes: &[u8]) -> Result<ControlData, ParseError> {
    if bytes.len() < CATALOG_VERSION {
        return Err(ParseError::TooShort {
            len: bytes.len(),
            need: CATALOG_VERSION,
        });
    }
    let version = u32_at(bytes, PG_CONTROL_VERSION);
    let l = layout(version).ok_or(ParseError::UnknownVersion { version })?;
    if bytes.len() < l.crc + 4 {
        return Err(ParseError::TooShort {
            len: bytes.len(),
            need: l.crc + 4,
        });
    }
    let stored = u32_at(bytes, l.crc);
    let computed = crc32c::crc32c(&bytes[..l.crc]);
    if stored != computed {
        return Err(ParseError::CrcMismatch { stored, computed });
    }
    let max_align = u32_at(bytes, l.max_align);
    if max_align != MAX_ALIGN {
        return Err(ParseError::BadValue {
            field: "maximum data alignment",
            value: max_align.to_string(),
        });
    }
    let float_format = f64::from_bits(u64_at(bytes, l.float_format));
    if float_format != FLOAT_FORMAT {
        return Err(ParseError::BadValue {
            field: "float format",
            value: float_format.to_string(),
        });
    }
    let block_size = u32_at(bytes, l.blcksz);
    if !valid_block_size(block_size) {
        return Err(ParseError::BadValue {
            field: "database block size",
            value: block_size.to_string(),
        });
    }
    let seg_bytes = u32_at(bytes, l.xlog_seg_size);
    let wal_segment_size =
        SegSize::new(u64::from(seg_bytes)).map_err(|_| ParseError::BadValue {
            field: "bytes per WAL segment",
            value: seg_bytes.to_string(),
        })?;
    Ok(ControlData {
        pg_control_version: version,
        catalog_version: u32_at(bytes, CATALOG_VERSION),
        system_identifier: u64_at(bytes, SYSTEM_IDENTIFIER),
        state: DbState::from_code(u32_at(bytes, l.state)),
        checkpoint_lsn: Lsn(u64_at(bytes, l.checkpoint)),
        redo_lsn: Lsn(u64_at(bytes, l.redo)),
        timeline: Timeline(u32_at(bytes, l.timeline)),
        wal_segment_size,
        min_recovery_point: Lsn(u64_at(bytes, l.min_recovery_point)),
        min_recovery_point_timeline: Timeline(u32_at(bytes, l.min_recovery_point_timeline)),
        block_size,
    })
}

/// Labels of the `pg_controldata` lines we read.
mod label {
    pub const VERSION: &str = "pg_control version number";
    pub const CATALOG: &str = "Catalog version number";
    pub const SYSTEM_ID: &str = "Database system identifier";
    pub const STATE: &str = "Database cluster state";
    pub const CHECKPOINT: &str = "Latest checkpoint location";
    pub const REDO: &str = "Latest checkpoint's REDO location";
    pub const TIMELINE: &str = "Latest checkpoint's TimeLineID";
    pub const MIN_RECOVERY: &str = "Minimum recovery ending location";
    pub const MIN_RECOVERY_TLI: &str = "Min recovery ending loc's timeline";
    pub const BLOCK_SIZE: &str = "Database block size";
    pub const SEGMENT_SIZE: &str = "Bytes per WAL segment";
}

/// Parses the output of `LC_ALL=C pg_controldata DATADIR`.
pub fn parse_controldata_output(text: &str) -> Result<ControlData, ParseError> {
    // pg_controldata prints its values anyway after this warning, and exits 0.
    if text.contains("Calculated CRC checksum does not match") {
        return Err(ParseError::OutputCrcWarning);
    }
    let mut fields = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some((key, value)) = line.split_once(':') {
            fields.insert(key.trim(), value.trim());
        }
    }
    let get = |field: &'static str| -> Result<&str, ParseError> {
        fields
            .get(field)
            .copied()
            .ok_or(ParseError::MissingField { field })
    };
    let bad = |field: &'static str, value: &str| ParseError::BadField {
        field,
        value: value.to_string(),
    };
    let number = |field: &'static str| -> Result<u64, ParseError> {
        let v = get(field)?;
        v.parse().map_err(|_| bad(field, v))
    };
    let number32 = |field: &'static str| -> Result<u32, ParseError> {
        let v = get(field)?;
        v.parse().map_err(|_| bad(field, v))
    };
    let lsn = |field: &'static str| -> Result<Lsn, ParseError> {
        let v = get(field)?;
        v.parse().map_err(|_| bad(field, v))
    };
    let state_text = get(label::STATE)?;
    let state = DbState::from_text(state_text).ok_or_else(|| bad(label::STATE, state_text))?;
    let seg_bytes = number(label::SEGMENT_SIZE)?;
    let wal_segment_size =
        SegSize::new(seg_bytes).map_err(|_| bad(label::SEGMENT_SIZE, &seg_bytes.to_string()))?;
    let block_size = number32(label::BLOCK_SIZE)?;
    if !valid_block_size(block_size) {
        return Err(bad(label::BLOCK_SIZE, &block_size.to_string()));
    }
    Ok(ControlData {
        pg_control_version: number32(label::VERSION)?,
        catalog_version: number32(label::CATALOG)?,
        system_identifier: number(label::SYSTEM_ID)?,
        state,
        checkpoint_lsn: lsn(label::CHECKPOINT)?,
        redo_lsn: lsn(label::REDO)?,
        timeline: Timeline(number32(label::TIMELINE)?),
        wal_segment_size,
        min_recovery_point: lsn(label::MIN_RECOVERY)?,
        min_recovery_point_timeline: Timeline(number32(label::MIN_RECOVERY_TLI)?),
        block_size,
    })
}

/// How often a pg_control whose CRC does not match is read again: the server rewrites the file
/// in place, so a read can catch it half-written (PostgreSQL's own frontends retry too).
const READ_ATTEMPTS: usize = 3;

/// Reads the pg_control of `data_dir`. The file is parsed natively; only when its version is
/// unknown here is `pg_controldata` run (`pg_controldata`, the given path or `pg_controldata`
/// from `PATH`, with `LC_ALL=C`).
pub fn read(data_dir: &Path, pg_controldata: Option<&Path>) -> Result<ControlData, Error> {
    let path = data_dir.join(crate::pg::PG_CONTROL);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let bytes = crate::fs::read(&path)?;
        match parse(&bytes) {
            Ok(cd) => return Ok(cd),
            Err(ParseError::CrcMismatch { .. }) if attempt < READ_ATTEMPTS => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(ParseError::UnknownVersion { version }) => {
                let program = pg_controldata.unwrap_or(Path::new("pg_controldata"));
                return run_pg_controldata(program, data_dir).map_err(|e| match e {
                    Fallback::Command(source) => Error::Fallback {
                        path,
                        version,
                        source,
                    },
                    Fallback::Output(source) => Error::Output {
                        program: program.to_path_buf(),
                        data_dir: data_dir.to_path_buf(),
                        source,
                    },
                });
            }
            Err(source) => return Err(Error::Parse { path, source }),
        }
    }
}

enum Fallback {
    Command(CommandError),
    Output(ParseError),
}

fn run_pg_controldata(program: &Path, data_dir: &Path) -> Result<ControlData, Fallback> {
    let out = crate::process::Program::new(program)
        .arg(data_dir)
        .env("LC_ALL", "C")
        .env_remove("LANGUAGE")
        .run()
        .map_err(Fallback::Command)?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_controldata_output(&text).map_err(Fallback::Output)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fixture_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pg_control")
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(fixture_dir().join(name)).unwrap()
    }

    fn text(name: &str) -> String {
        let t = String::from_utf8(fixture(name)).unwrap();
        // The text fixtures of 18 come from PostgreSQL 15's pg_controldata, which computes the
        // CRC at the 1300 offset and warns; the values it prints are at the same offsets in
        // both layouts, so they are still right.
        match t.find("pg_control version number") {
            Some(at) if name.starts_with("18") => t[at..].to_string(),
            _ => t,
        }
    }

    const MAJORS: [&str; 5] = ["13", "15", "16", "17", "18"];

    #[test]
    fn native_parse_equals_pg_controldata_for_every_fixture() {
        for major in MAJORS {
            for kind in ["", "-running", "-standby"] {
                let name = format!("{major}{kind}");
                let native = parse(&fixture(&format!("{name}.bin"))).unwrap();
                let from_text =
                    parse_controldata_output(&text(&format!("{name}.controldata.txt"))).unwrap();
                assert_eq!(native, from_text, "{name}");
            }
        }
    }

    #[test]
    fn pg15_fixture_values() {
        let cd = parse(&fixture("15.bin")).unwrap();
        assert_eq!(
            cd,
            ControlData {
                pg_control_version: 1300,
                catalog_version: 202209061,
                system_identifier: 7711950571168982824,
                state: DbState::ShutDown,
                checkpoint_lsn: Lsn(0x4000028),
                redo_lsn: Lsn(0x4000028),
                timeline: Timeline(1),
                wal_segment_size: SegSize::DEFAULT,
                min_recovery_point: Lsn(0),
                min_recovery_point_timeline: Timeline(0),
                block_size: 8192,
            }
        );
        assert_eq!(cd.redo_wal_file().to_string(), "000000010000000000000004");
        let standby = parse(&fixture("15-standby.bin")).unwrap();
        assert_eq!(standby.state, DbState::ShutDownInRecovery);
        assert!(standby.state.is_shut_down());
        assert_eq!(standby.min_recovery_point, Lsn(0x40000A0));
        assert_eq!(standby.min_recovery_point_timeline, Timeline(1));
    }

    /// The running fixtures were copied between two identical queries of
    /// `pg_control_system()`, `pg_control_checkpoint()`, `pg_control_recovery()` and
    /// `pg_control_init()` (`*-running.sql.txt`): the server's own reading of the file.
    #[test]
    fn running_fixtures_match_the_servers_own_functions() {
        for major in MAJORS {
            let cd = parse(&fixture(&format!("{major}-running.bin"))).unwrap();
            assert_eq!(cd.state, DbState::InProduction);
            let sql = text(&format!("{major}-running.sql.txt"));
            let rows: Vec<Vec<&str>> = sql.lines().map(|l| l.split('|').collect()).collect();
            assert_eq!(rows[0][0], cd.system_identifier.to_string(), "{major}");
            assert_eq!(rows[0][1], cd.pg_control_version.to_string(), "{major}");
            assert_eq!(rows[0][2], cd.catalog_version.to_string(), "{major}");
            assert_eq!(rows[1][0], cd.checkpoint_lsn.to_string(), "{major}");
            assert_eq!(rows[1][1], cd.redo_lsn.to_string(), "{major}");
            assert_eq!(rows[1][2], cd.redo_wal_file().to_string(), "{major}");
            assert_eq!(rows[1][3], cd.timeline.to_string(), "{major}");
            assert_eq!(rows[2][0], cd.min_recovery_point.to_string(), "{major}");
            assert_eq!(rows[2][1], cd.min_recovery_point_timeline.to_string());
            assert_eq!(rows[3][0], cd.wal_segment_size.to_string(), "{major}");
            assert_eq!(rows[3][1], cd.block_size.to_string(), "{major}");
        }
    }

    #[test]
    fn versions_of_each_major() {
        for (major, version) in [
            ("13", 1300),
            ("15", 1300),
            ("16", 1300),
            ("17", 1700),
            ("18", 1800),
        ] {
            let cd = parse(&fixture(&format!("{major}.bin"))).unwrap();
            assert_eq!(cd.pg_control_version, version, "{major}");
        }
    }

    #[test]
    fn corruption_and_unknown_versions_are_errors() {
        let good = fixture("15.bin");
        let mut bad = good.clone();
        bad[40] ^= 1;
        assert!(matches!(
            parse(&bad).unwrap_err(),
            ParseError::CrcMismatch { .. }
        ));
        let mut v = good.clone();
        v[8..12].copy_from_slice(&1201u32.to_le_bytes());
        assert_eq!(
            parse(&v).unwrap_err().to_string(),
            "unsupported pg_control version 1201 (this build reads 1300, 1700 and 1800, \
             PostgreSQL 13 to 18)"
        );
        assert_eq!(
            parse(&good[..100]).unwrap_err(),
            ParseError::TooShort {
                len: 100,
                need: 292
            }
        );
        // A valid CRC over a wrong platform value.
        let mut f = good.clone();
        f[208..216].copy_from_slice(&1.5f64.to_bits().to_le_bytes());
        let crc = crc32c::crc32c(&f[..288]);
        f[288..292].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            parse(&f).unwrap_err().to_string(),
            "invalid float format in pg_control: 1.5"
        );
    }

    #[test]
    fn text_parser_errors() {
        let full = text("15.controldata.txt");
        let e = parse_controldata_output(&full.replace("Bytes per WAL segment", "x")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "pg_controldata output has no \"Bytes per WAL segment\" line"
        );
        let e = parse_controldata_output(&full.replace("0/4000028", "4000028")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot parse \"Latest checkpoint location\" in pg_controldata output: \"4000028\""
        );
        let warned = fixture("18.controldata.txt");
        assert_eq!(
            parse_controldata_output(std::str::from_utf8(&warned).unwrap()).unwrap_err(),
            ParseError::OutputCrcWarning
        );
    }

    #[test]
    fn read_parses_natively_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("global")).unwrap();
        let e = read(dir.path(), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("reading {}/global/pg_control", dir.path().display())
        );
        let path = dir.path().join(crate::pg::PG_CONTROL);
        std::fs::write(&path, fixture("17-standby.bin")).unwrap();
        let cd = read(dir.path(), Some(Path::new("/nonexistent/pg_controldata"))).unwrap();
        assert_eq!(cd.state, DbState::ShutDownInRecovery);
        let mut bad = fixture("17.bin");
        bad[50] ^= 0xff;
        std::fs::write(&path, bad).unwrap();
        let e = read(dir.path(), None).unwrap_err();
        assert!(
            crate::log::error_chain(&e).starts_with(&format!(
                "cannot use {}: pg_control checksum",
                path.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn unknown_version_falls_back_to_pg_controldata() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("global")).unwrap();
        let mut v = fixture("15.bin");
        v[8..12].copy_from_slice(&1900u32.to_le_bytes());
        std::fs::write(dir.path().join(crate::pg::PG_CONTROL), v).unwrap();
        // A stand-in pg_controldata that prints the 16 fixture's text, checking LC_ALL.
        let script = dir.path().join("pg_controldata");
        let txt = fixture_dir().join("16.controldata.txt");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n[ \"$LC_ALL\" = C ] || exit 9\n[ -d \"$1\" ] || exit 8\ncat '{}'\n",
                txt.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let cd = read(dir.path(), Some(&script)).unwrap();
        assert_eq!(cd, parse(&fixture("16.bin")).unwrap());
        let e = read(dir.path(), Some(Path::new("/nonexistent/pg_controldata"))).unwrap_err();
        assert_eq!(
            crate::log::error_chain(&e),
            format!(
                "{}/global/pg_control has pg_control version 1900, which this build cannot \
                 read natively, and pg_controldata failed: cannot run \
                 /nonexistent/pg_controldata: No such file or directory (os error 2)",
                dir.path().display()
            )
        );
    }
}

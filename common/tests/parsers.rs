//! Property tests of the parsers of pitr-common: WAL file names, locations, config files,
//! pg_control, WAL page headers, backup meta files, manifests, digest files, backup labels.
//!
//! Every parser gets arbitrary input and input close to valid (valid input with one change):
//! it must never panic, and where the format allows a round trip (`parse(render(x)) == x`) or
//! carries a checksum (pg_control's CRC-32C, the manifest checksum), that must hold too.
//!
//! Kept in `tests/` rather than next to each parser so that the tests use only the public API.
//! `cargo test -p pitr-common --test parsers` runs 256 cases per property (so a plain `cargo
//! test` stays fast); `cargo xtask faults` runs many more through `PITR_FUZZ_CASES`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use pitr_common::backupset::Meta;
use pitr_common::checksum::{self, Digest};
use pitr_common::config;
use pitr_common::controldata;
use pitr_common::label::BackupLabel;
use pitr_common::location::{Location, Opt};
use pitr_common::manifest::{self, ManifestWriter};
use pitr_common::wal::{Lsn, SegSize, Timeline, WalFileName};
use pitr_common::walpage::LongPageHeader;
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Every option that takes a location.
const OPTS: [Opt; 9] = [
    Opt::DstLocal,
    Opt::DstRemote,
    Opt::DstPipe,
    Opt::DstBackup,
    Opt::Source,
    Opt::WalSource,
    Opt::FromBackup,
    Opt::Archive,
    Opt::BackupDir,
];

/// Cases per property: `PITR_FUZZ_CASES`, default 256.
fn cases() -> u32 {
    std::env::var("PITR_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

fn config() -> Config {
    Config {
        cases: cases(),
        // Failures are printed with the input; nothing is written into the source tree.
        failure_persistence: None,
        ..Config::default()
    }
}

/// The pg_control fixtures of every supported major (real captures).
fn controls() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pg_control");
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no pg_control fixtures in {}", dir.display());
    v
}

/// A valid long page header for segment `name` of 16 MiB.
fn long_header(name: &WalFileName) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
    h[2..4].copy_from_slice(&0x0002u16.to_le_bytes());
    h[4..8].copy_from_slice(&1u32.to_le_bytes());
    let start = name.start_lsn(SegSize::DEFAULT).unwrap();
    h[8..16].copy_from_slice(&start.0.to_le_bytes());
    h[24..32].copy_from_slice(&7_312_345_678_901_234_567u64.to_le_bytes());
    h[32..36].copy_from_slice(&(16u32 << 20).to_le_bytes());
    h[36..40].copy_from_slice(&8192u32.to_le_bytes());
    h
}

const META: &str =
    "Min-Xlog: 000000010000000000000002\nStarted-epoch: 1795574595\nTimezone: +0000\n\
Hostname: db1\nStop-Xlog: 000000010000000000000003\nStart-LSN: 0/2000028\nStop-LSN: 0/3000100\n\
Timeline: 1\nLabel: pitr-backup\nBackup-From: primary\nSystem-Identifier: 7312345678901234567\n\
PostgreSQL-Version: 15.4\nData-File: db1-data.tar.zst\nData-Size: 1234\n\
Xlog-File: db1-xlog.tar.zst\nXlog-Size: 99\nDigest-File: db1-sha256.tar.zst\n\
Finished-epoch: 1795574600\n";

const LABEL: &str = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
START TIME: 2026-11-25 02:43:15 UTC\nLABEL: pitr-backup\nSTART TIMELINE: 1\n";

fn manifest_text() -> String {
    let mut w = ManifestWriter::new(Vec::new()).unwrap();
    w.add_file(
        Path::new("PG_VERSION"),
        3,
        UNIX_EPOCH + Duration::from_secs(1_795_574_595),
        &Digest::of(b"15\n"),
    )
    .unwrap();
    let range = manifest::WalRange {
        timeline: Timeline(1),
        start: Lsn(0x0200_0028),
        end: Lsn(0x0300_0100),
    };
    String::from_utf8(w.finish(&[range]).unwrap()).unwrap()
}

/// `text` with the character at `at` (modulo its length) replaced by `c`.
fn replace_char(text: &str, at: usize, c: char) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return c.to_string();
    }
    let i = at % chars.len();
    chars
        .iter()
        .enumerate()
        .map(|(j, x)| if j == i { c } else { *x })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn wal_names_never_panic(s in "\\PC{0,40}") {
        let _ = WalFileName::parse(&s);
    }

    #[test]
    fn wal_names_near_valid_round_trip(
        s in "[0-9A-Fa-fG]{8,26}(\\.partial|\\.history|\\.backup|\\.[0-9A-F]{8}\\.backup)?"
    ) {
        if let Ok(w) = WalFileName::parse(&s) {
            let shown = w.to_string();
            prop_assert!(shown.eq_ignore_ascii_case(&s), "{s} shown as {shown}");
            prop_assert_eq!(WalFileName::parse(&shown).ok(), Some(w));
        }
    }

    #[test]
    fn locations_never_panic(opt in 0..OPTS.len(), s in "\\PC{0,60}") {
        let _ = Location::parse(OPTS[opt], &s);
    }

    #[test]
    fn locations_near_valid_never_panic(
        opt in 0..OPTS.len(),
        s in "((none|gzip|zstd|bz2|ZSTD)(:[0-9]{0,3})?=)?(/[a-z/]{0,8}|rsync://[a-z0-9.:]{0,12}/[a-z]{0,4}/?[a-z]{0,3}|[a-z]{0,4}@?[a-z]{0,4}::?/?[a-z]{0,4})"
    ) {
        let opt = OPTS[opt];
        if let Ok(l) = Location::parse(opt, &s) {
            // What a location prints is a location again.
            let shown = l.to_string();
            prop_assert!(Location::parse(opt, &shown).is_ok(), "{s} shown as {shown}");
        }
    }

    #[test]
    fn config_files_never_panic(s in "\\PC{0,200}") {
        let _ = config::parse(&s);
    }

    #[test]
    fn config_lines_near_valid(
        lines in proptest::collection::vec("(#[^\\n]{0,10}|--[a-z-]{1,12}(=| +)?[^\\n]{0,12}| *|-[a-z]{1,2} [a-z/]{0,5})", 0..8)
    ) {
        let text = lines.join("\n");
        if let Ok(args) = config::parse(&text) {
            prop_assert!(args.iter().all(|a| !a.contains('\n')));
        }
    }

    #[test]
    fn controldata_never_panics(b in proptest::collection::vec(any::<u8>(), 0..9000)) {
        let _ = controldata::parse(&b);
    }

    #[test]
    fn controldata_refuses_any_flip_before_its_crc(
        pick in any::<usize>(),
        at in 0usize..292,
        bit in 0u8..8,
    ) {
        let all = controls();
        let good = &all[pick % all.len()];
        prop_assume!(controldata::parse(good).is_ok());
        let mut bad = good.clone();
        bad[at] ^= 1 << bit;
        // Every major's CRC covers at least the first 288 bytes and sits right after them.
        prop_assert!(controldata::parse(&bad).is_err(), "flip of bit {bit} at {at} accepted");
    }

    #[test]
    fn controldata_refuses_truncation(pick in any::<usize>(), len in 0usize..292) {
        let all = controls();
        let good = &all[pick % all.len()];
        prop_assert!(controldata::parse(&good[..len.min(good.len())]).is_err());
    }

    #[test]
    fn page_headers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64), name in "[0-9A-F]{24}") {
        if let Ok(name) = WalFileName::parse(&name) {
            let _ = LongPageHeader::parse(&name, &b);
        }
    }

    #[test]
    fn page_header_flips_are_caught_where_they_matter(
        log in 0u32..4,
        seg in 0u32..256,
        at in 0usize..40,
        bit in 0u8..8,
    ) {
        let name = WalFileName::parse(&format!("00000001{log:08X}{seg:08X}")).unwrap();
        let good = long_header(&name);
        let h = LongPageHeader::parse(&name, &good).unwrap();
        prop_assert!(h.check(&name, 16 << 20, Some(7_312_345_678_901_234_567)).is_ok());
        let mut bad = good.clone();
        bad[at] ^= 1 << bit;
        let verdict = LongPageHeader::parse(&name, &bad)
            .and_then(|h| h.check(&name, 16 << 20, Some(7_312_345_678_901_234_567)));
        // Magic's high byte, page address, system identifier and segment size are checked;
        // a timeline flip to a later one is refused (an earlier one may be right).
        let checked = matches!(at, 1 | 8..=15 | 24..=35) || (at == 2 && bit == 1);
        if checked {
            prop_assert!(verdict.is_err(), "flip of bit {bit} at {at} accepted");
        }
    }

    #[test]
    fn meta_files_never_panic(s in "\\PC{0,300}") {
        let _ = Meta::parse(&s);
    }

    #[test]
    fn meta_files_near_valid_round_trip(at in any::<usize>(), c in any::<char>()) {
        let text = replace_char(META, at, c);
        if let Ok(m) = Meta::parse(&text) {
            prop_assert_eq!(Meta::parse(&m.render()).ok(), Some(m));
        }
    }

    #[test]
    fn manifests_never_panic(s in "\\PC{0,300}") {
        let _ = manifest::parse(&s);
    }

    #[test]
    fn manifest_changes_break_its_checksum(at in any::<usize>(), c in "[a-z0-9 \"{}:,]") {
        let text = manifest_text();
        let body_len = text.trim_end_matches('\n').rfind('\n').unwrap() + 1;
        let changed = replace_char(&text[..body_len], at, c.chars().next().unwrap());
        // Replacing a character by itself changes nothing: not a case (and not a rejection,
        // which proptest caps).
        if changed != text[..body_len] {
            let bad = format!("{changed}{}", &text[body_len..]);
            prop_assert!(manifest::parse(&bad).is_err());
        }
    }

    #[test]
    fn digest_files_never_panic(s in "\\PC{0,300}") {
        let _ = checksum::parse_sums(&s);
    }

    #[test]
    fn backup_labels_never_panic(at in any::<usize>(), c in any::<char>(), s in "\\PC{0,100}") {
        let _ = BackupLabel::parse(&replace_char(LABEL, at, c));
        let _ = BackupLabel::parse(&s);
    }

    #[test]
    fn lsns_round_trip(s in "[0-9A-Fa-f]{0,9}/[0-9A-Fa-f]{0,9}|\\PC{0,20}") {
        if let Ok(l) = s.parse::<Lsn>() {
            prop_assert_eq!(l.to_string().parse::<Lsn>().ok(), Some(l));
        }
    }
}

#[test]
fn the_samples_are_valid() {
    assert!(Meta::parse(META).is_ok());
    assert!(manifest::parse(&manifest_text()).is_ok());
    assert!(BackupLabel::parse(LABEL).is_ok());
    for c in controls() {
        assert!(controldata::parse(&c).is_ok());
    }
}

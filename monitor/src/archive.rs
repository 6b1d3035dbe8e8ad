//! A WAL archive as `info` and `verify` see it: its files (every stored form), its segment
//! size and system identifier, its timelines' history files, and the [`WalMap`] built from
//! them.
//!
//! The segment size is read from the newest segments' long page headers (only their first
//! bytes are decompressed), never assumed; the system identifier from the archive's cluster
//! marker, else from those headers.

use pitr_common::wal::{SegNo, SegSize, Timeline, WalFileName, WalKind};

use crate::integrity;
use crate::store::{archived_files, ArchivedFile, Listed, Remote, Store};
use crate::timeline::{parse_history, WalMap};

/// How many of the newest segments are tried for the segment size before giving up.
const SIZE_PROBES: usize = 8;

/// What the archive holds.
#[derive(Debug)]
pub struct ArchiveView {
    /// Where it is.
    pub store: Store,
    /// Every WAL file, sorted by WAL name.
    pub files: Vec<ArchivedFile>,
    /// Positions and history, when the segment size is known.
    pub map: Option<WalMap>,
    /// The system identifier of the cluster marker.
    pub marker_sysid: Option<u64>,
    /// The system identifier of the newest readable segment header.
    pub header_sysid: Option<u64>,
    /// History files that could not be read or parsed: (file name, why).
    pub bad_histories: Vec<(String, String)>,
    /// Why the segment size is unknown, when it is.
    pub size_problem: Option<String>,
}

impl ArchiveView {
    /// The segment size, when known.
    pub fn seg_size(&self) -> Option<SegSize> {
        self.map.as_ref().map(WalMap::seg_size)
    }

    /// The system identifier to check segments against.
    pub fn system_identifier(&self) -> Option<u64> {
        self.marker_sysid.or(self.header_sysid)
    }

    /// The archived file of the complete segment `segno` on `tli`, any stored form.
    pub fn segment_file(&self, tli: Timeline, segno: SegNo) -> Option<&ArchivedFile> {
        let name = WalFileName::segment(tli, segno, self.seg_size()?);
        let i = self.files.partition_point(|f| f.wal < name);
        self.files[i..].iter().take_while(|f| f.wal == name).next()
    }
}

/// Lists the archive and reads what a walk needs.
pub fn load(store: &Store, remote: Option<&Remote>) -> anyhow::Result<ArchiveView> {
    let listing: Vec<Listed> = store.list(remote)?;
    let marker_sysid = store.cluster_marker(&listing, remote)?;
    let files = archived_files(listing);

    // The segment size and system identifier from the newest segments' headers.
    let mut header = None;
    let mut size_problem = None;
    let candidates: Vec<&ArchivedFile> = files
        .iter()
        .rev()
        .filter(|f| f.wal.has_wal_pages() && f.codec().is_some())
        .take(SIZE_PROBES)
        .collect();
    for f in &candidates {
        let paths = store.fetch(std::slice::from_ref(&f.file.name), remote)?;
        let got = paths.first().map(|p| {
            integrity::header(
                p,
                f.codec().unwrap_or(pitr_common::compress::Codec::None),
                &f.wal,
            )
        });
        store.release(&paths);
        match got {
            Some(Ok(h)) => {
                header = Some(h);
                break;
            }
            Some(Err(e)) => size_problem = Some(e),
            None => {}
        }
    }
    if candidates.is_empty() {
        size_problem = Some("the archive holds no WAL segment".into());
    }

    let mut bad_histories = Vec::new();
    let map = header.map(|h| {
        let mut map = WalMap::new(h.seg_size);
        for f in &files {
            map.add(&f.wal);
        }
        map
    });
    let mut map = map;
    if let Some(map) = map.as_mut() {
        let histories: Vec<&ArchivedFile> = files
            .iter()
            .filter(|f| f.wal.kind == WalKind::History)
            .collect();
        let names: Vec<String> = histories.iter().map(|f| f.file.name.clone()).collect();
        let paths = store.fetch(&names, remote)?;
        for (f, p) in histories.iter().zip(&paths) {
            let Some(codec) = f.codec() else {
                bad_histories.push((
                    f.file.name.clone(),
                    "compressed with a codec pitr cannot read".into(),
                ));
                continue;
            };
            match integrity::read_text(p, codec, &f.wal)
                .and_then(|t| parse_history(&t).map_err(|e| format!("{}: {e}", p.display())))
            {
                Ok(entries) => map.add_history(f.wal.timeline, entries),
                Err(e) => bad_histories.push((f.file.name.clone(), e)),
            }
        }
        store.release(&paths);
    }
    Ok(ArchiveView {
        store: store.clone(),
        files,
        map,
        marker_sysid,
        header_sysid: header.map(|h| h.system_identifier),
        bad_histories,
        size_problem: if header.is_some() { None } else { size_problem },
    })
}

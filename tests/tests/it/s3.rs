//! `pitr_common::objstore` against a real 3-node Garage cluster ([`GarageCluster`]): round trips,
//! conditional creates, pagination, multipart uploads with bounded memory, aborts, and the
//! behaviour with one node and with every node stopped.
//!
//! Garage 2.5 ignores `If-None-Match: *` on PutObject and on CompleteMultipartUpload (pinned by
//! `garage_ignores_if_none_match`), so the stores here create with HEAD, PUT, pause, HEAD
//! (`Settings::if_none_match = false`), as pitr must for Garage.
//!
//! The end-to-end tests at the end run PostgreSQL with pitr-archive and pitr-restore on
//! `s3://` locations, configured through a `--config-file` (`GarageCluster::pitr_config`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pitr_common::objstore::{Error, PutOutcome, S3Url, Settings, Store};
use pitr_tests::{pg_user, pitr_bin, Cluster, ClusterOpts, GarageCluster, PgTempDir, Tool};

use crate::restore;

/// Settings for `garage`: its endpoint, region and key, HEAD-then-PUT creates, and a short retry
/// budget so that the unreachable cases finish quickly.
fn settings(garage: &GarageCluster) -> Settings {
    let env = garage.env();
    let mut settings = Settings::from_env_vars(|name| {
        env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    });
    settings.if_none_match = false;
    settings.retry_budget = Duration::from_secs(5);
    settings.connect_timeout = Duration::from_secs(2);
    settings.request_timeout = Duration::from_secs(30);
    settings
}

pub(crate) fn store(garage: &GarageCluster, prefix: &str) -> Store {
    let url = S3Url::parse(&format!("s3://{}/{prefix}", garage.bucket())).unwrap();
    Store::open(&url, &settings(garage)).unwrap()
}

/// `len` bytes of a xorshift sequence seeded with `seed` (incompressible, reproducible; seeds
/// that differ only in their lowest bit give the same bytes).
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn s3_put_get_round_trip_of_16_mib() {
    let garage = GarageCluster::start();
    let store = store(&garage, "db1/wal");
    let body = pseudo_random(16 << 20, 1);
    let key = "000000010000000000000001";

    assert_eq!(store.get(key).unwrap(), None);
    assert_eq!(store.head(key).unwrap(), None);
    assert_eq!(
        store.put_new(key, body.clone()).unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store.put_new(key, b"other".to_vec()).unwrap(),
        PutOutcome::AlreadyExists
    );
    assert!(store.get(key).unwrap().unwrap() == body);
    let info = store.head(key).unwrap().unwrap();
    assert_eq!((info.key.as_str(), info.size), (key, 16 << 20));

    let mut reader = store.get_reader(key).unwrap().unwrap();
    assert_eq!(reader.size(), 16 << 20);
    let mut streamed = Vec::new();
    reader.read_to_end(&mut streamed).unwrap();
    assert!(streamed == body, "streamed content differs");
    assert!(store.get_reader("missing").unwrap().is_none());

    // The key lives under the prefix, and delete is idempotent.
    let root = self::store(&garage, "");
    assert_eq!(
        root.head("db1/wal/000000010000000000000001")
            .unwrap()
            .unwrap()
            .size,
        16 << 20
    );
    store.delete(key).unwrap();
    store.delete(key).unwrap();
    assert_eq!(store.get(key).unwrap(), None);
}

/// Pins what Garage 2.5 does with `If-None-Match: *`: it overwrites. If a later Garage honours
/// it, this fails, and the stores for Garage can switch to conditional creates.
#[test]
fn garage_ignores_if_none_match() {
    let garage = GarageCluster::start();
    let store = store(&garage, "probe");
    assert!(!store.probe_conditional_create("put-probe").unwrap());
    assert_eq!(
        store.head("put-probe").unwrap(),
        None,
        "the probe cleans up"
    );

    // CompleteMultipartUpload with If-None-Match: * (object_store sends it when it copies with
    // S3CopyIfNotExists::Multipart) replaces an existing object too.
    use object_store::aws::{AmazonS3Builder, S3CopyIfNotExists};
    use object_store::ObjectStoreExt;
    let s3 = AmazonS3Builder::new()
        .with_endpoint(garage.endpoint())
        .with_allow_http(true)
        .with_region(garage.region())
        .with_bucket_name(garage.bucket())
        .with_access_key_id(garage.key_id())
        .with_secret_access_key(garage.secret())
        .with_copy_if_not_exists(S3CopyIfNotExists::Multipart)
        .build()
        .unwrap();
    // Copying a part needs a source of at least 5 MiB (Garage's minimum part size).
    let new_content = pseudo_random(6 << 20, 11);
    store.put_replace("from", new_content.clone()).unwrap();
    store.put_replace("to", b"old content".to_vec()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let copied = runtime.block_on(s3.copy_if_not_exists(
        &object_store::path::Path::from("probe/from"),
        &object_store::path::Path::from("probe/to"),
    ));
    assert!(
        copied.is_ok(),
        "Garage refused the conditional completion: {copied:?}"
    );
    assert!(
        store.get("to").unwrap().unwrap() == new_content,
        "the conditional completion did not replace the object"
    );
}

#[test]
fn s3_racing_creates_leave_one_whole_object() {
    let garage = GarageCluster::start();
    let a = pseudo_random(4 << 20, 2);
    let b = pseudo_random(4 << 20, 4);
    assert!(a != b, "the two writers must write different bytes");
    for round in 0..5 {
        let key = format!("race-{round}");
        // Both writers set up first, then start together: the race put_new is specified for
        // (two writers of about the same speed).
        let barrier = std::sync::Barrier::new(2);
        let outcomes: Vec<PutOutcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = [&a, &b]
                .into_iter()
                .map(|body| {
                    let (garage, key, barrier) = (&garage, &key, &barrier);
                    scope.spawn(move || {
                        let (store, body) = (store(garage, "race"), body.clone());
                        barrier.wait();
                        store.put_new(key, body).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // Exactly one writer is told Created; the other is told AlreadyExists (its write was
        // refused or replaced: put_new checks after writing), and the object is the winner's.
        let winner = match outcomes.as_slice() {
            [PutOutcome::Created, PutOutcome::AlreadyExists] => &a,
            [PutOutcome::AlreadyExists, PutOutcome::Created] => &b,
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        };
        let stored = store(&garage, "race").get(&key).unwrap().unwrap();
        assert!(
            stored == *winner,
            "round {round}: the object is not the winner's content"
        );
    }
}

#[test]
fn s3_list_pages_past_1000_keys() {
    let garage = GarageCluster::start();
    let count = 1100;
    std::thread::scope(|scope| {
        for t in 0..4 {
            let garage = &garage;
            scope.spawn(move || {
                let store = store(garage, "many");
                for i in (t..count).step_by(4) {
                    let outcome = store
                        .put_new(&format!("seg-{i:05}"), i.to_string().into_bytes())
                        .unwrap();
                    assert_eq!(outcome, PutOutcome::Created);
                }
            });
        }
    });
    let store = store(&garage, "many");
    let listed = store.list("").unwrap();
    assert_eq!(listed.len(), count);
    let expected: Vec<String> = (0..count).map(|i| format!("seg-{i:05}")).collect();
    let keys: Vec<&str> = listed.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, expected);
    assert_eq!(listed[1000].size, 4);

    let matching = store.list_matching("", "seg-0100").unwrap();
    let names: Vec<&str> = matching.iter().map(|o| o.key.as_str()).collect();
    let want: Vec<String> = (1000..1010).map(|i| format!("seg-{i:05}")).collect();
    assert_eq!(names, want);
    assert!(store.list_matching("", "zzz").unwrap().is_empty());
    assert!(self::store(&garage, "nothing-here")
        .list("")
        .unwrap()
        .is_empty());

    // Deleting them all takes two DeleteObjects requests (1000 keys each at most); keys that
    // are gone already are not an error.
    let mut doomed = expected.clone();
    doomed.push("seg-never-written".to_owned());
    store.delete_many(&doomed).unwrap();
    assert_eq!(store.list("").unwrap(), Vec::new());
    store.delete_many(&doomed).unwrap();
}

/// A prefetch window asks the store once per 16 neighbouring names, not once per name, and
/// says for each name exactly what a single look says: every stored form, the preferred one
/// first, a name missing in the middle, a window across the 16-name boundary. The cluster
/// marker is read once per process, alongside the first look. Requests are counted on the wire.
#[test]
fn s3_prefetch_window_costs_one_list_per_16_names_and_finds_what_one_look_finds() {
    use pitr_common::location::{Location, Opt};
    use pitr_common::source::{Hit, Sources};
    use pitr_common::wal::WalFileName;

    let garage = GarageCluster::start();
    let writer = store(&garage, "window");
    let names: Vec<WalFileName> = (0x0a..=0x14)
        .map(|n| WalFileName::parse(&format!("0000000100000000000000{n:02X}")).unwrap())
        .collect();
    for (i, name) in names.iter().enumerate() {
        let forms: &[&str] = match i {
            2 => &[".gz", ".zst"],
            8 => &[],
            i if i % 2 == 0 => &[".zst"],
            _ => &[""],
        };
        for ext in forms {
            writer
                .put_new(&format!("{name}{ext}"), b"x".to_vec())
                .unwrap();
        }
    }
    // Neighbours that are not the wanted names: a later segment in the same group and a
    // backup history file.
    writer
        .put_new("000000010000000000000015.zst", b"x".to_vec())
        .unwrap();
    writer
        .put_new("00000001000000000000000A.00000028.backup", b"x".to_vec())
        .unwrap();

    let proxy = pitr_tests::proxy::CountingProxy::start(garage.s3_port(0));
    let mut via_proxy = settings(&garage);
    via_proxy.endpoint = Some(format!("http://127.0.0.1:{}", proxy.port()));
    let location = Location::parse(
        Opt::Source,
        &format!("zstd=s3://{}/window", garage.bucket()),
    )
    .unwrap();
    let sources = Sources::open(std::slice::from_ref(&location), Some(&via_proxy)).unwrap();
    let hits = sources.find_many(&names).unwrap();
    let keys: Vec<Option<String>> = hits
        .iter()
        .map(|h| match h {
            Some(Hit::Object { found, .. }) => Some(found.key.clone()),
            other => other.as_ref().map(|h| format!("{h:?}")),
        })
        .collect();
    let want: Vec<Option<String>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| match i {
            2 => Some(format!("{n}.zst")),
            8 => None,
            i if i % 2 == 0 => Some(format!("{n}.zst")),
            _ => Some(n.to_string()),
        })
        .collect();
    assert_eq!(keys, want);
    // 0x0A..0x0F and 0x10..0x14: two groups, two LISTs; the marker once, beside the first.
    assert_eq!(proxy.count("list-type=2"), 2);
    let marker_get = format!("GET /{}/window/.pitr-cluster", garage.bucket());
    let marker_reads = || proxy.count(&marker_get);
    assert_eq!(marker_reads(), 1, "{:?}", proxy.count("GET /"));

    // One look per name says the same, one LIST each, and the marker is not read again.
    for (name, hit) in names.iter().zip(&hits) {
        assert_eq!(sources.find(name).unwrap(), *hit, "{name}");
    }
    assert_eq!(proxy.count("list-type=2"), 2 + names.len());
    assert_eq!(marker_reads(), 1);
}

/// Issue 14 on object storage, counted on the wire through a forwarder in front of Garage: a
/// batch of 20 WAL files costs one LIST per 16 neighbouring names to look for them all and one
/// again after the writes' pause (not two per file), one PUT each, and the store then holds
/// every file's bytes; the next batch of the same process reuses its connections (its client
/// is kept: at most a stray new one), where a process's first batch opens them; a batch found already stored costs one LIST per
/// group, its reads, and no PUT.
#[test]
fn s3_batch_costs_one_list_per_16_names_each_way_and_reuses_its_connections() {
    use pitr_common::compress::Codec;
    use pitr_common::dest::{Body, Payload, PutOutcome as Delivered};
    use pitr_common::location::{Location, Opt};
    use pitr_common::objarchive::{put_batch, Stores};

    let garage = GarageCluster::start();
    let proxy = pitr_tests::proxy::CountingProxy::start(garage.s3_port(0));
    let mut via_proxy = settings(&garage);
    via_proxy.endpoint = Some(format!("http://127.0.0.1:{}", proxy.port()));
    let url = S3Url::parse(&format!("s3://{}/batch", garage.bucket())).unwrap();
    let loc = Location::parse(
        Opt::DstRemote,
        &format!("zstd=s3://{}/batch", garage.bucket()),
    )
    .unwrap();
    let batch = |first: u32| -> Vec<(String, Vec<u8>, Vec<u8>)> {
        (first..first + 20)
            .map(|n| {
                let plain = pseudo_random(256 << 10, u64::from(n) * 2);
                let stored = loc.codec.compress(&plain).unwrap();
                (format!("0000000100000000{n:08X}"), plain, stored)
            })
            .collect()
    };
    let send = |files: &[(String, Vec<u8>, Vec<u8>)], stores: &Stores| {
        let stored: Vec<_> = files
            .iter()
            .map(|(_, _, bytes)| move || Ok(Body::Borrowed(bytes.as_slice())))
            .collect();
        let payloads: Vec<Payload<'_>> = files
            .iter()
            .zip(&stored)
            .map(|((name, plain, _), stored)| Payload {
                wal_name: name,
                plain,
                stored,
                mtime: None,
            })
            .collect();
        put_batch(&loc, &url, &payloads, None, &via_proxy, stores)
            .into_iter()
            .map(|o| o.map_err(|e| format!("{e:#}")))
            .collect::<Vec<Result<Delivered, String>>>()
    };
    let lists = || proxy.count("list-type=2");
    let puts = || proxy.count("PUT /");
    let direct = store(&garage, "batch");
    let assert_stored = |files: &[(String, Vec<u8>, Vec<u8>)]| {
        for (name, plain, _) in files {
            let got = direct.get(&format!("{name}.zst")).unwrap().unwrap();
            assert!(
                Codec::Zstd(1).decompress(&got, 1 << 20).unwrap() == *plain,
                "{name}"
            );
        }
    };

    // 0x08..0x1B: the groups ...0 and ...1, two LISTs each way.
    let stores = Stores::default();
    let first = batch(0x08);
    assert_eq!(send(&first, &stores), vec![Ok(Delivered::Stored); 20]);
    assert_stored(&first);
    assert_eq!((lists(), puts()), (4, 20));
    let opened = proxy.connections();
    assert!(opened >= 1);

    // 0x1C..0x2F: groups ...1 and ...2, through the kept client.
    let second = batch(0x1c);
    assert_eq!(send(&second, &stores), vec![Ok(Delivered::Stored); 20]);
    assert_stored(&second);
    assert_eq!((lists(), puts()), (8, 40));
    // A request can go out while a finished one's connection is still on its way back to the
    // pool (on a loaded machine the runtime may not have run that connection's task yet), and
    // then it opens one: seen once in a full parallel run. A fresh client per batch opens as
    // many as the batch has requests in flight (16 here, measured).
    let new = proxy.connections() - opened;
    assert!(
        new <= 2,
        "the second batch opened {new} connections, the first {opened}"
    );

    // The first batch again, one file's content changed, in a new process's client: found,
    // compared, that one refused and left untouched, nothing written.
    let again = Stores::default();
    let mut changed = first.clone();
    changed[3].1[100] ^= 1;
    let mut want = vec![Ok(Delivered::AlreadyIdentical); 20];
    want[3] = Err(format!(
        "{} is already archived in {loc} with different content; the archived file was left \
         untouched",
        first[3].0
    ));
    assert_eq!(send(&changed, &again), want);
    assert_eq!((lists(), puts()), (10, 40));
    assert_stored(&first);
    assert!(proxy.connections() > opened);
}

/// Bytes allocated and not yet freed by the current thread, and their peak: the multipart test
/// measures its own thread (the store's runtime runs on the calling thread).
struct CountingAlloc;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are plain
// thread-local cells with no destructor, so touching them cannot allocate or recurse.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Uploads `size` bytes in 1 MiB writes; returns the peak of this thread's live allocations
/// above where it started.
fn upload_peak(store: &Store, key: &str, size: usize) -> isize {
    let chunk = pseudo_random(1 << 20, 4);
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let mut upload = store.upload(key, 0).unwrap();
    let mut sent = 0;
    while sent < size {
        let n = chunk.len().min(size - sent);
        upload.write_all(&chunk[..n]).unwrap();
        sent += n;
    }
    assert_eq!(upload.commit().unwrap(), size as u64);
    PEAK.with(Cell::get) - start
}

#[test]
fn s3_multipart_upload_of_100_mib_holds_memory_flat() {
    let garage = GarageCluster::start();
    let store = store(&garage, "backup");
    let small = upload_peak(&store, "small", 20 << 20);
    let large = upload_peak(&store, "large", 100 << 20);
    // Parts of 8 MiB, two in flight plus the one filling: about 24 MiB whatever the size.
    assert!(
        large < 48 << 20,
        "a 100 MiB upload held {} MiB at its peak",
        large >> 20
    );
    assert!(
        large < small + (8 << 20),
        "memory grew with the object: 20 MiB upload peaked at {} MiB, 100 MiB at {} MiB",
        small >> 20,
        large >> 20
    );
    assert_eq!(store.head("large").unwrap().unwrap().size, 100 << 20);
    let mut reader = store.get_reader("large").unwrap().unwrap();
    let chunk = pseudo_random(1 << 20, 4);
    let mut buf = vec![0; 1 << 20];
    for part in 0..100 {
        reader.read_exact(&mut buf).unwrap();
        assert!(buf == chunk, "MiB {part} of the uploaded object differs");
    }
    assert_eq!(reader.read(&mut buf).unwrap(), 0);
}

#[test]
fn s3_dropped_upload_leaves_no_object() {
    let garage = GarageCluster::start();
    let store = store(&garage, "backup");
    {
        let mut upload = store.upload("base.tar", 0).unwrap();
        upload.write_all(&pseudo_random(20 << 20, 5)).unwrap();
        // Dropped without commit: an interrupted backup.
    }
    assert_eq!(store.head("base.tar").unwrap(), None);
    assert!(store.list("").unwrap().is_empty());
    // The same key can be uploaded and committed afterwards.
    let mut upload = store.upload("base.tar", 0).unwrap();
    upload.write_all(b"complete").unwrap();
    assert_eq!(upload.commit().unwrap(), 8);
    assert_eq!(store.get("base.tar").unwrap().unwrap(), b"complete");
}

#[test]
fn s3_survives_one_node_down_and_fails_typed_when_all_are_down() {
    let mut garage = GarageCluster::start();
    let body = pseudo_random(1 << 20, 6);
    store(&garage, "wal")
        .put_new("seg-1", body.clone())
        .unwrap();

    // Replication factor 3, write quorum 2: one node down changes nothing for clients of
    // another node.
    garage.stop_node(2);
    let store1 = store(&garage, "wal");
    assert_eq!(
        store1.put_new("seg-2", body.clone()).unwrap(),
        PutOutcome::Created
    );
    assert!(store1.get("seg-1").unwrap().unwrap() == body);
    assert_eq!(store1.list("").unwrap().len(), 2);
    garage.restart_node(2);

    garage.stop_all();
    let down = store(&garage, "wal");
    let started = Instant::now();
    let err = down.get("seg-1").unwrap_err();
    let took = started.elapsed();
    assert!(err.is_unreachable(), "{err}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(5 + 30),
        "gave up after {took:?}, not after the 5 s retry budget"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "object store {} unreachable: GET s3://{}/wal/seg-1 failed after ",
            garage.endpoint(),
            garage.bucket()
        )),
        "{text}"
    );
    let full = format!("{:?} {} {}", err, error_chain(&err), err.hint());
    assert!(!full.contains(garage.secret()), "the secret shows: {full}");
    assert!(err.hint().contains(&garage.endpoint()), "{}", err.hint());
    assert!(matches!(
        down.put_new("seg-3", body.clone()),
        Err(Error::Unreachable { .. })
    ));
    assert!(matches!(down.list(""), Err(Error::Unreachable { .. })));

    garage.restart_all();
    let back = store(&garage, "wal");
    assert!(back.get("seg-1").unwrap().unwrap() == body);
    assert!(back.get("seg-2").unwrap().unwrap() == body);
    assert_eq!(back.put_new("seg-3", body).unwrap(), PutOutcome::Created);
}

#[test]
fn s3_wrong_secret_is_denied_not_missing() {
    let garage = GarageCluster::start();
    let mut settings = settings(&garage);
    let mut creds = settings.credentials.clone().unwrap();
    creds.secret_access_key = pitr_common::objstore::Secret::new("wrong-secret-value");
    settings.credentials = Some(creds);
    let url = S3Url::parse(&format!("s3://{}/wal", garage.bucket())).unwrap();
    let store = Store::open(&url, &settings).unwrap();
    let err = store.get("seg-1").unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err}");
    assert!(!err.is_unreachable());
    let full = format!("{err:?} {}", error_chain(&err));
    assert!(!full.contains("wrong-secret-value"), "{full}");
    assert!(!full.contains(garage.secret()), "{full}");
}

/// The error and its sources, as `{:#}` of anyhow prints them.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// pitr-archive and pitr-restore on s3:// locations, with PostgreSQL

/// Where the end-to-end tests archive: `s3://BUCKET/PREFIX`.
fn wal_url(garage: &GarageCluster, prefix: &str) -> String {
    format!("s3://{}/{prefix}", garage.bucket())
}

/// `pitr-archive --config-file CONF EXTRA --dst-remote zstd=URL %p`, as archive_command.
fn archive_command(config: &Path, extra: &str, url: &str) -> String {
    format!(
        "{} --config-file {} {extra} --dst-remote zstd={url} %p",
        pitr_bin("pitr-archive").display(),
        config.display()
    )
}

/// Asserts that the store under `prefix` holds exactly the cluster marker of `cluster` and
/// every WAL file PostgreSQL marked done, as `NAME.zst`, byte-identical to `pg_wal/NAME` once
/// decompressed; returns the names.
fn assert_store_matches_pg_wal(
    garage: &GarageCluster,
    prefix: &str,
    cluster: &Cluster,
) -> Vec<String> {
    let store = store(garage, prefix);
    let done = cluster.done_segments();
    assert!(!done.is_empty(), "no WAL file was archived");
    for name in &done {
        let stored = store
            .get(&format!("{name}.zst"))
            .unwrap()
            .unwrap_or_else(|| panic!("{name}.zst is not in the store"));
        let plain = zstd::stream::decode_all(&stored[..]).unwrap();
        assert!(
            plain == cluster.wal_file(name),
            "{name}.zst in the store differs from pg_wal/{name}"
        );
    }
    let mut expected: Vec<String> = done.iter().map(|n| format!("{n}.zst")).collect();
    expected.push(".pitr-cluster".to_owned());
    expected.sort();
    let listed: Vec<String> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(
        listed, expected,
        "the store holds other objects than the archived WAL"
    );
    assert_eq!(
        store.get(".pitr-cluster").unwrap().unwrap(),
        format!("system_identifier = {}\n", cluster.system_identifier()).into_bytes()
    );
    done
}

/// A primary archiving to Garage feeds a warm spare through pitr-restore --source s3://: the
/// runbook's warm spare test, with the object store as the location. The store then holds
/// exactly PostgreSQL's WAL, and pitr-restore run by hand gives back each segment
/// byte-identical.
#[test]
fn s3_warm_spare_follows_a_primary_archiving_to_garage_and_finishes_smartly() {
    let garage = GarageCluster::start();
    let work = PgTempDir::new("s3-warm");
    let config = garage.pitr_config(work.path());
    let url = wal_url(&garage, "db1/wal");
    let primary = restore::start_primary("s3-warm-primary", &archive_command(&config, "", &url));
    let source = format!("--config-file {} --source zstd={url}", config.display());
    restore::follow_and_finish_smartly(
        &primary,
        "s3-warm-spare",
        &source,
        &work.path().join("finish.trigger"),
    );
    let done = assert_store_matches_pg_wal(&garage, "db1/wal", &primary);
    let restored = work.subdir("restored");
    let segments: Vec<&String> = done.iter().filter(|n| n.len() == 24).collect();
    assert!(segments.len() >= 3, "too few segments archived: {done:?}");
    for name in segments {
        let dest = restored.join(name);
        Tool::new("pitr-restore")
            .as_pg_user()
            .args(["--config-file", &config.to_string_lossy()])
            .args(["--source", &format!("zstd={url}")])
            .arg("--data-dir")
            .arg(primary.data_dir())
            .arg(name)
            .arg(&dest)
            .succeeds();
        assert!(
            std::fs::read(&dest).unwrap() == primary.wal_file(name),
            "restored {name} differs from pg_wal/{name}"
        );
    }
    // --remove-unneeded removes from directories only, and says so for a store.
    let before = keys(&store(&garage, "db1/wal"));
    let newest = before
        .iter()
        .filter(|k| k.len() == 28 && k.ends_with(".zst"))
        .max()
        .unwrap()
        .trim_end_matches(".zst")
        .to_owned();
    Tool::new("pitr-restore")
        .as_pg_user()
        .args(["--config-file", &config.to_string_lossy()])
        .args(["--source", &format!("zstd={url}")])
        .args(["--remove-unneeded", "--remove-before", "--oldest-needed", &newest])
        .arg("--streaming-replication")
        .arg("--data-dir")
        .arg(primary.data_dir())
        .args(["0000000100000000000000FF", "pg_wal/RECOVERYXLOG"])
        .run()
        .failure_with_status(1)
        .stderr_contains(" : WARNING : --remove-unneeded removes from directories only; nothing is removed from ")
        .stderr_contains(" : HINT : remove old WAL from an object store with pitr-cleanup");
    assert_eq!(keys(&store(&garage, "db1/wal")), before);
}

/// With every Garage node stopped, restore_command fails with 126 after its retries, naming
/// the endpoint, and PostgreSQL stops instead of promoting the warm spare; the primary's
/// archive_command fails and PostgreSQL keeps the segment. Once Garage is back, the backlog
/// drains and the spare recovers every row; the store matches pg_wal. The secret appears in
/// neither server log.
#[test]
fn s3_warm_spare_is_not_promoted_while_garage_is_down() {
    let mut garage = GarageCluster::start();
    let work = PgTempDir::new("s3-down");
    let config = garage.pitr_config(work.path());
    let url = wal_url(&garage, "db2/wal");
    let primary = restore::start_primary(
        "s3-down-primary",
        &archive_command(&config, "--s3-retry-seconds 5", &url),
    );
    let round = restore::load_round(&primary, 100);
    primary.wait_archived(&round.segment, restore::TIMEOUT);

    let spare = restore::warm_spare(
        &primary,
        "s3-down-spare",
        &format!(
            "--config-file {} --s3-retry-seconds 2 --source zstd={url}",
            config.display()
        ),
        &[],
    );
    // The base backup's own WAL goes to the store too; then the store goes away.
    let (segment, _) = primary.switch_wal_at();
    primary.wait_archived(&segment, restore::TIMEOUT);
    let rows = primary.count_rows(restore::TABLE);
    garage.stop_all();
    restore::assert_refuses_recovery(&spare, "in the archive");
    let log = spare.server_log();
    assert!(
        log.contains(&format!("object store {} unreachable", garage.endpoint())),
        "the FATAL line does not name the unreachable endpoint\n{}",
        pitr_tests::cluster::tail(&log, 20)
    );
    assert!(
        !log.contains(garage.secret()),
        "the secret is in the server log"
    );

    // Meanwhile the primary's archive_command fails, and PostgreSQL keeps the segment.
    let backlog = restore::load_round(&primary, 100);
    pitr_tests::wait_until("a failed archive_command", restore::TIMEOUT, || {
        let stats = primary.archiver_stats();
        (stats.failed_count > 0 && stats.last_failed_wal == backlog.segment).then_some(())
    });
    assert!(!primary.done_segments().contains(&backlog.segment));
    assert!(
        !primary.server_log().contains(garage.secret()),
        "the secret is in the primary's log"
    );

    // Garage back: the backlog drains, the spare replays it, nothing is lost.
    garage.restart_all();
    primary.wait_archived(&backlog.segment, restore::TIMEOUT);
    spare.start();
    assert!(spare.is_in_recovery(), "the warm spare is not in recovery");
    spare.wait_replayed(&backlog.lsn, restore::TIMEOUT);
    assert_eq!(spare.count_rows(restore::TABLE), backlog.rows);
    assert!(backlog.rows > rows);
    assert_store_matches_pg_wal(&garage, "db2/wal", &primary);
}

/// Two pitr-archive calls for one segment name with different content, at once, against
/// Garage (no conditional writes): exactly one succeeds, the other exits 2 saying the name is
/// archived with different content, and the store holds the winner's bytes. Three rounds.
#[test]
fn s3_racing_archive_calls_for_one_name_have_one_winner() {
    let garage = GarageCluster::start();
    let work = PgTempDir::new("s3-race");
    let config = garage.pitr_config(work.path());
    let url = wal_url(&garage, "race/wal");
    let cluster = Cluster::init("s3-race", ClusterOpts::new().set("wal_keep_size", "1GB"));
    cluster.start();
    for round in 0..3 {
        cluster.psql("CREATE TABLE IF NOT EXISTS filler AS SELECT 1 AS i");
        let name = cluster.switch_wal();
        let original = cluster.wal_file(&name);
        let mut altered = original.clone();
        let middle = altered.len() / 2;
        altered[middle] ^= 0xff;
        let paths: Vec<PathBuf> = ["a", "b"]
            .iter()
            .map(|side| {
                let dir = work.subdir(&format!("{side}{round}"));
                let path = dir.join(&name);
                pg_user().write_file(&path, if *side == "a" { &original } else { &altered });
                path
            })
            .collect();
        let runs: Vec<_> = paths
            .iter()
            .map(|p| {
                Tool::new("pitr-archive")
                    .as_pg_user()
                    .args(["--config-file", &config.to_string_lossy()])
                    .args(["--dst-remote", &format!("zstd={url}")])
                    .arg("--data-dir")
                    .arg(cluster.data_dir())
                    .arg("--verbose")
                    .arg(p)
                    .spawn()
            })
            .collect();
        let results: Vec<_> = runs.into_iter().map(|r| r.wait()).collect();
        let codes: Vec<Option<i32>> = results.iter().map(|r| r.code()).collect();
        if codes == [Some(0), Some(0)] {
            assert_lost_race_is_the_documented_one(round, &name, &results);
            continue;
        }
        let (winner, loser) = match codes.as_slice() {
            [Some(0), Some(2)] => (&original, &results[1]),
            [Some(2), Some(0)] => (&altered, &results[0]),
            other => panic!(
                "round {round}: not exactly one winner: {other:?}\n{}\n{}",
                results[0].stderr(),
                results[1].stderr()
            ),
        };
        loser.stderr_contains(&format!(
            "{name} is already archived in zstd:2={url} with different content"
        ));
        let stored = store(&garage, "race/wal")
            .get(&format!("{name}.zst"))
            .unwrap()
            .unwrap();
        assert!(
            zstd::stream::decode_all(&stored[..]).unwrap() == *winner,
            "round {round}: the store does not hold the winner's content"
        );
        for r in &results {
            r.stderr_lacks(garage.secret());
        }
    }
}

/// A store that holds another database system's WAL refuses a segment, as a local directory and
/// an rsync daemon do (`archive_refuses_segment_of_another_database_system`): exit 2, both
/// system identifiers named, nothing written to the store and no record made, with the call's
/// batch path (`--state-dir`, archive-ahead on by default for an object store).
#[test]
fn s3_archive_refuses_segment_of_another_database_system() {
    let garage = GarageCluster::start();
    let work = PgTempDir::new("s3-sysid");
    let config = garage.pitr_config(work.path());
    let url = wal_url(&garage, "sysid/wal");
    let clusters = ["s3-sysid-first", "s3-sysid-second"]
        .map(|name| Cluster::init(name, ClusterOpts::new().set("wal_keep_size", "1GB")));
    let segments = clusters.each_ref().map(|c| {
        c.start();
        c.switch_wal();
        c.switch_wal()
    });
    let ids = clusters.each_ref().map(|c| c.system_identifier());
    assert_ne!(
        ids[0], ids[1],
        "initdb gave two clusters one system identifier"
    );
    let call = |i: usize| {
        let cluster = &clusters[i];
        Tool::new("pitr-archive")
            .as_pg_user()
            .args(["--config-file", &config.to_string_lossy()])
            .args(["--dst-remote", &format!("zstd={url}")])
            .arg("--state-dir")
            .arg(work.subdir(&format!("state-{i}")))
            .arg("--data-dir")
            .arg(cluster.data_dir())
            .arg(cluster.data_dir().join("pg_wal").join(&segments[i]))
            .run()
    };
    call(0).success();
    let listed = || -> Vec<String> {
        store(&garage, "sysid/wal")
            .list("")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect()
    };
    let before = listed();
    assert_eq!(
        before,
        vec![".pitr-cluster".to_owned(), format!("{}.zst", segments[0])]
    );

    let refused = call(1);
    refused.failure_with_status(2);
    refused.stderr_line_with(&[&format!("is from database system {} but", ids[1])]);
    refused.stderr_line_with(&[&format!("holds WAL of database system {}", ids[0])]);
    assert_eq!(
        listed(),
        before,
        "something was written for the foreign segment"
    );
    assert_eq!(
        crate::archive::archive_states_naming_a_destination(&work.path().join("state-1")),
        Vec::<String>::new(),
        "the refused call recorded a destination as holding a file"
    );
}

/// Issue 14 on object storage: PostgreSQL's archiver drains a backlog into Garage with
/// `--state-dir` and the default archive-ahead. Each full call checks the marker once and sends
/// its batch concurrently; the calls for segments delivered ahead are answered from their
/// records. The store ends up holding exactly PostgreSQL's WAL, byte for byte. The backlog, 20
/// segments of 1 MB, is one batch (the default is 128MB of WAL) of more files than have their
/// requests in flight at once (16), so that threads go on to the files left.
#[test]
fn s3_archive_ahead_drains_a_backlog_into_garage() {
    let garage = GarageCluster::start();
    let (cluster, segments) = crate::archive::ready_backlog("s3-ahead", 20);
    let work = PgTempDir::new("s3-ahead-work");
    let config = garage.pitr_config(work.path());
    let state = work.subdir("archive-state");
    let log = work.path().join("archive.log");
    let url = wal_url(&garage, "ahead/wal");
    let extra = format!("--log {} --state-dir {}", log.display(), state.display());
    cluster.append_conf(&[("archive_command", &archive_command(&config, &extra, &url))]);
    cluster.reload();
    cluster.wait_archived(segments.last().unwrap(), Duration::from_secs(180));
    assert_store_matches_pg_wal(&garage, "ahead/wal", &cluster);
    crate::archive::assert_most_calls_answered_from_records(&log);
    crate::archive::assert_one_batch_up_to(&log, segments.last().unwrap());
    assert_eq!(
        pitr_tests::archive_state_names(&state),
        Vec::<String>::new()
    );
}

/// Archive-ahead to an object store without conditional writes keeps more than two batches on
/// the wire (each create there pauses before it looks again), up to six while their copies are
/// small: a backlog of 20 segments in batches of two goes beyond two at once and never beyond
/// six, and the store still ends up holding exactly PostgreSQL's WAL, byte for byte, with
/// nothing left in the state dir. Delivering threads that registered their batches out of
/// order would leave a record behind or send a segment twice.
#[test]
fn s3_archive_ahead_keeps_more_batches_on_the_wire() {
    let garage = GarageCluster::start();
    let (cluster, segments) = crate::archive::ready_backlog("s3-ahead-6", 20);
    let work = PgTempDir::new("s3-ahead-6-work");
    let config = garage.pitr_config(work.path());
    let state = work.subdir("archive-state");
    let log = work.path().join("archive.log");
    let url = wal_url(&garage, "ahead-6/wal");
    let extra = format!(
        "--log {} --verbose --state-dir {} --archive-ahead 2",
        log.display(),
        state.display()
    );
    cluster.append_conf(&[("archive_command", &archive_command(&config, &extra, &url))]);
    cluster.reload();
    cluster.wait_archived(segments.last().unwrap(), Duration::from_secs(180));
    assert_store_matches_pg_wal(&garage, "ahead-6/wal", &cluster);
    crate::archive::assert_most_calls_answered_from_records(&log);
    let text = std::fs::read_to_string(&log).unwrap();
    let most = text
        .lines()
        .filter_map(|l| {
            l.split_once(" is on the wire (")?
                .1
                .strip_suffix(" at once)")
        })
        .map(|n| n.parse::<usize>().unwrap())
        .max();
    assert!(
        most.is_some_and(|n| (3..=6).contains(&n)),
        "{most:?}\n{text}"
    );
    assert_eq!(
        pitr_tests::archive_state_names(&state),
        Vec::<String>::new()
    );
}

/// The store is the replication engine. A primary archives to Garage under pgbench: with one
/// node killed, archiving goes on (replication factor 3, write quorum 2); with all three
/// stopped, archive_command fails with the store's ERROR and HINT and PostgreSQL keeps the
/// segments and retries; once the nodes are back the backlog drains, and the store holds
/// exactly PostgreSQL's WAL, byte for byte, read through the node that was down too.
#[test]
fn s3_archiving_goes_on_with_a_node_killed_and_drains_after_a_full_outage() {
    let mut garage = GarageCluster::start();
    let work = PgTempDir::new("s3-outage-work");
    let config = garage.pitr_config(work.path());
    let state = work.subdir("archive-state");
    let url = wal_url(&garage, "outage/wal");
    let extra = format!("--state-dir {} --s3-retry-seconds 2", state.display());
    let cluster = Cluster::init(
        "s3-outage",
        ClusterOpts::new()
            .wal_segsize_mb(1)
            .set("archive_mode", "on")
            .set("wal_keep_size", "512MB")
            .set("max_wal_size", "1GB")
            .set("archive_command", &archive_command(&config, &extra, &url)),
    );
    cluster.start();
    cluster.pgbench_init(1);

    garage.stop_node(2);
    cluster.pgbench(300, 2);
    let during_node_down = cluster.switch_wal();
    cluster.wait_archived(&during_node_down, Duration::from_secs(180));
    assert_eq!(cluster.archiver_stats().failed_count, 0);

    garage.stop_all();
    cluster.pgbench(300, 2);
    let during_outage = cluster.switch_wal();
    pitr_tests::wait_until(
        "archive_command to fail against the stopped store",
        Duration::from_secs(120),
        || (cluster.archiver_stats().failed_count >= 2).then_some(()),
    );
    assert!(
        cluster.ready_segments().contains(&during_outage),
        "{during_outage} is not waiting: {:?}",
        cluster.ready_segments()
    );
    let log = cluster.server_log();
    let unreachable = format!("object store {} unreachable", garage.endpoint());
    assert!(log.contains(&unreachable), "{}", tail(&log));
    assert!(
        log.contains(" : HINT : check that the object store at "),
        "{}",
        tail(&log)
    );

    garage.restart_all();
    // A new segment wakes the archiver, which otherwise waits up to a minute after failures.
    let after = cluster.switch_wal();
    cluster.wait_archived(&after, Duration::from_secs(180));
    let done = assert_store_matches_pg_wal(&garage, "outage/wal", &cluster);
    assert!(done.contains(&during_node_down) && done.contains(&during_outage));
    let mut through_node_2 = settings(&garage);
    through_node_2.endpoint = Some(garage.endpoint_of(2));
    let url = S3Url::parse(&format!("s3://{}/outage/wal", garage.bucket())).unwrap();
    let node_2 = Store::open(&url, &through_node_2).unwrap();
    for name in &done {
        let stored = node_2.get(&format!("{name}.zst")).unwrap().unwrap();
        assert!(
            zstd::stream::decode_all(&stored[..]).unwrap() == cluster.wal_file(name),
            "{name}.zst read through node 2 differs from pg_wal/{name}"
        );
    }
}

/// An https endpoint with an in-house CA: Garage behind a TLS front whose certificate a
/// throwaway CA issued. With `--s3-ca-file` naming that CA, archive_command stores each segment
/// and pitr-restore gives it back byte-identical; without it the certificate is refused: the
/// call fails naming the endpoint (never "not found", so a warm spare would not promote).
#[test]
fn s3_over_https_trusts_the_ca_file_and_refuses_an_unknown_issuer() {
    let garage = GarageCluster::start();
    let front = pitr_tests::TlsFront::start("s3-https", garage.s3_port(0));
    let work = PgTempDir::new("s3-https-work");
    let key_file = garage.pitr_config(work.path()).with_file_name("garage.key");
    let config = |name: &str, ca: bool| {
        let path = work.path().join(name);
        let mut text = format!(
            "--s3-endpoint {}\n--s3-region {}\n--s3-key-file {}\n--s3-retry-seconds 2\n",
            front.endpoint(),
            garage.region(),
            key_file.display()
        );
        if ca {
            text.push_str(&format!("--s3-ca-file {}\n", front.ca_file().display()));
        }
        pg_user().write_file(&path, text.as_bytes());
        path
    };
    let (trusted, untrusted) = (config("tls.conf", true), config("no-ca.conf", false));
    let url = wal_url(&garage, "https/wal");
    let cluster = Cluster::init(
        "s3-https",
        ClusterOpts::new()
            .wal_segsize_mb(1)
            .set("archive_mode", "on")
            .set("archive_command", &archive_command(&trusted, "", &url)),
    );
    cluster.start();
    cluster.psql("CREATE TABLE t AS SELECT generate_series(1, 1000) i");
    let segment = cluster.switch_wal();
    cluster.wait_archived(&segment, restore::TIMEOUT);
    assert_store_matches_pg_wal(&garage, "https/wal", &cluster);

    let out = work.path().join("restored");
    let restore = |config: &Path| {
        Tool::new("pitr-restore")
            .as_pg_user()
            .args(["--config-file", &config.to_string_lossy()])
            .args(["--source", &format!("zstd={url}")])
            .arg("--data-dir")
            .arg(cluster.data_dir())
            .arg(&segment)
            .arg(&out)
    };
    restore(&trusted).succeeds();
    assert!(std::fs::read(&out).unwrap() == cluster.wal_file(&segment));
    std::fs::remove_file(&out).unwrap();
    let refused = restore(&untrusted).run();
    refused.failure_with_status(126);
    refused.stderr_contains(&format!("object store {} unreachable", front.endpoint()));
    refused.stderr_contains("certificate");
    assert!(!out.exists());
}

/// The last lines of a server log, for a failed assertion.
fn tail(log: &str) -> String {
    pitr_tests::cluster::tail(log, 40)
}

/// Without conditional writes (Garage 2.5) two racing creates can both win in one case only,
/// the one docs/s3-client.md states: the later writer's PUT landed after the earlier writer's
/// check, that is after its PUT plus its pause (twice its look-to-written time plus 50 ms), as a
/// writer much slower than the other does on a loaded machine. Both calls log (with
/// `--verbose`) when their PUT was answered and the pause they took; anything else is a defect.
fn assert_lost_race_is_the_documented_one(
    round: usize,
    name: &str,
    results: &[pitr_tests::CmdResult],
) {
    let written = format!("{name}.zst: looked and wrote in ");
    let timing = |r: &pitr_tests::CmdResult| -> (f64, f64) {
        let line = r
            .stderr_lines()
            .into_iter()
            .find(|l| l.contains(&written))
            .unwrap_or_else(|| panic!("round {round}: no timing line\n{}", r.stderr()));
        // "2026-12-02 05:52:09.322235 +0000 : PID : ...": seconds of the day, to the µs.
        let clock = line.split(' ').nth(1).unwrap();
        let secs = clock
            .split(':')
            .fold(0.0, |acc, part| acc * 60.0 + part.parse::<f64>().unwrap());
        let pause: f64 = line
            .rsplit("checking again after ")
            .next()
            .and_then(|t| t.trim_end_matches(" ms").parse().ok())
            .unwrap();
        (secs, pause / 1000.0)
    };
    let (mut a, mut b) = (timing(&results[0]), timing(&results[1]));
    if b.0 < a.0 {
        std::mem::swap(&mut a, &mut b);
    }
    assert!(
        b.0 > a.0 + a.1,
        "round {round}: both calls won, yet the later PUT was answered {:.3} s after the \
         earlier one, within its pause of {:.3} s\n{}\n{}",
        b.0 - a.0,
        a.1,
        results[0].stderr(),
        results[1].stderr()
    );
    eprintln!(
        "round {round}: both won (the documented case: the later PUT {:.3} s after the earlier, \
         beyond its pause of {:.3} s)",
        b.0 - a.0,
        a.1
    );
}

// ---------------------------------------------------------------------------------------------
// pitr-cleanup on s3:// archives

/// `crate::cleanup::FILES` in the store under `prefix`, 1000 bytes each.
fn store_with_cleanup_files(garage: &GarageCluster, prefix: &str) -> Store {
    let store = store(garage, prefix);
    for f in crate::cleanup::FILES {
        store.put_replace(f, vec![0u8; 1000]).unwrap();
    }
    // Deeper keys are another archive's business.
    store
        .put_replace("older/000000010000000000000001.zst", vec![0u8; 10])
        .unwrap();
    store
}

fn keys(store: &Store) -> Vec<String> {
    store.list("").unwrap().into_iter().map(|o| o.key).collect()
}

/// Form 1 on an object store removes exactly what it removes from a directory: by position,
/// timeline ignored, every stored form, `.history` kept, nothing else touched; `--dry-run`
/// lists the objects with their sizes first and removes nothing.
#[test]
fn s3_cleanup_removes_wal_older_than_r_by_position_and_keeps_history() {
    let garage = GarageCluster::start();
    let work = PgTempDir::new("s3-cleanup");
    let config = garage.pitr_config(work.path());
    let store = store_with_cleanup_files(&garage, "db1/wal");
    let url = wal_url(&garage, "db1/wal");
    let before = keys(&store);
    let cleanup = || {
        Tool::new("pitr-cleanup")
            .as_pg_user()
            .args(["--config-file", &config.to_string_lossy()])
            .args(["--archive", &format!("zstd={url}")])
    };
    let out = cleanup()
        .args(["--dry-run", "000000020000000000000004"])
        .succeeds();
    for f in [
        "000000010000000000000001.zst",
        "000000010000000000000002.gz",
        "000000010000000000000002.00000028.backup.zst",
        "000000010000000000000003.partial.zst",
        "000000020000000000000003.zst",
    ] {
        out.stderr_contains(&format!(
            "LOG : (dry-run) would remove WAL file {url}/{f} (1000 B)"
        ));
    }
    out.stderr_contains(&format!(
        "LOG : 5 WAL files older than 000000020000000000000004 would be removed from {url}, 4.9 KiB"
    ));
    assert_eq!(keys(&store), before);

    cleanup()
        .arg("000000020000000000000004")
        .succeeds()
        .stderr_contains(&format!(
            "LOG : 5 WAL files older than 000000020000000000000004 removed from {url}, 4.9 KiB"
        ));
    assert_eq!(
        keys(&store),
        [
            ".pitr-cluster",
            "00000001.history",
            "00000002.history.zst",
            "000000020000000000000004.zst",
            "000000020000000000000005",
            "older/000000010000000000000001.zst",
            "unrelated.txt",
        ]
    );
    cleanup()
        .arg("000000020000000000000004")
        .succeeds()
        .stderr_contains("LOG : 0 WAL files older than 000000020000000000000004 removed");
}

/// With every node stopped, form 1 fails (2) within its retry budget, naming the endpoint and
/// bucket in its HINT, and removes nothing; an rsync target is refused as a usage error (3).
#[test]
fn s3_cleanup_fails_clearly_while_the_store_is_down() {
    let mut garage = GarageCluster::start();
    let work = PgTempDir::new("s3-cleanup-down");
    let config = garage.pitr_config(work.path());
    let store = store_with_cleanup_files(&garage, "db1/wal");
    let before = keys(&store);
    let url = wal_url(&garage, "db1/wal");
    garage.stop_all();
    Tool::new("pitr-cleanup")
        .as_pg_user()
        .args(["--config-file", &config.to_string_lossy()])
        .args(["--s3-retry-seconds", "2"])
        .args(["--archive", &format!("zstd={url}")])
        .arg("000000020000000000000004")
        .run()
        .failure_with_status(2)
        .stderr_contains(&format!(
            "ERROR : removing WAL older than 000000020000000000000004 from {url}: object store {} unreachable",
            garage.endpoint()
        ))
        .stderr_contains(&format!("bucket {}", garage.bucket()));
    garage.restart_all();
    assert_eq!(keys(&store), before);
    Tool::new("pitr-cleanup")
        .args(["--archive", "rsync://localhost/wal_archive/db1"])
        .arg("000000020000000000000004")
        .run()
        .failure_with_status(3)
        .stderr_contains(
            "FATAL : --archive \"rsync://localhost/wal_archive/db1\" is not a local directory or an object store (s3://BUCKET/PREFIX); it looks like an rsync target",
        );
}

/// archive_cleanup_command on a warm spare recovering from Garage: each restartpoint removes
/// from the store the WAL older than its REDO file, and nothing else.
#[test]
fn s3_archive_cleanup_command_follows_restartpoints() {
    let garage = GarageCluster::start();
    let work = PgTempDir::new("s3-acc");
    let config = garage.pitr_config(work.path());
    let url = wal_url(&garage, "db1/wal");
    let primary = restore::start_primary("s3-acc-primary", &archive_command(&config, "", &url));
    let cleanup = format!(
        "{} --config-file {} --archive zstd={url} %r",
        pitr_bin("pitr-cleanup").display(),
        config.display()
    );
    let spare = restore::warm_spare(
        &primary,
        "s3-acc-spare",
        &format!("--config-file {} --source zstd={url}", config.display()),
        &[("archive_cleanup_command", &cleanup)],
    );
    spare.start();
    let store = store(&garage, "db1/wal");
    for round in 0..2 {
        primary.psql("CHECKPOINT");
        let last = restore::load_round(&primary, 100);
        primary.wait_archived(&last.segment, restore::TIMEOUT);
        spare.wait_replayed(&last.lsn, restore::TIMEOUT);
        let before = keys(&store);
        spare.psql("CHECKPOINT");
        let redo = spare.psql("SELECT redo_wal_file FROM pg_control_checkpoint()");
        let expected: Vec<String> = before
            .iter()
            .filter(|k| k.len() < 24 || k.as_str()[..24] >= redo[..24] || k.contains(".history"))
            .cloned()
            .collect();
        assert!(
            expected.len() < before.len(),
            "round {round}: nothing in the store is older than {redo}: {before:?}"
        );
        pitr_tests::wait_until(
            "archive_cleanup_command to clean the store",
            restore::TIMEOUT,
            || (keys(&store) == expected).then_some(()),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// pitr-backup on s3:// archives

/// A primary archiving its WAL to Garage too (beside its local archive and `--xlogs`), with
/// the config file reaching the store, the WAL location and a location for backup sets: the
/// set-up of the end-to-end tests of pitr-backup, `--from-backup` and retention on S3. Fields
/// drop in order: the primary stops while the store still runs.
struct S3Primary {
    p: crate::backup::Primary,
    garage: GarageCluster,
    work: PgTempDir,
    config: PathBuf,
    wal: String,
    sets: String,
}

impl S3Primary {
    fn start(name: &str) -> S3Primary {
        let garage = GarageCluster::start();
        let work = PgTempDir::new(name);
        let config = garage.pitr_config(work.path());
        let state = work.subdir("archive-state");
        let wal = wal_url(&garage, "db1/wal");
        let sets = wal_url(&garage, "db1/backups");
        let p = crate::backup::Primary::archiving_also(
            &format!("{name}-primary"),
            ClusterOpts::new(),
            |_| {
                format!(
                    "--config-file {} --state-dir {} --dst-remote zstd={wal}",
                    config.display(),
                    state.display()
                )
            },
        );
        S3Primary {
            p,
            garage,
            work,
            config,
            wal,
            sets,
        }
    }

    /// `--config-file CONF`, for any pitr program.
    fn config_args(&self) -> [String; 2] {
        [
            "--config-file".into(),
            self.config.to_string_lossy().into_owned(),
        ]
    }

    /// pitr-backup of the primary into the sets' location.
    fn backup(&self) -> Tool {
        self.p
            .backup()
            .args(self.config_args())
            .args(["--dst-remote", &format!("zstd={}", self.sets)])
    }
}

/// The peak memory pitr-backup reports on its last line, in MiB.
fn backup_peak_mib(stderr: &str) -> f64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("backup complete: "))
        .unwrap_or_else(|| panic!("no end line in {stderr}"));
    let (_, peak) = line.split_once("peak memory ").unwrap();
    let (number, unit) = peak.trim().split_once(' ').unwrap();
    let n: f64 = number.parse().unwrap();
    match unit {
        "MiB" => n,
        "KiB" => n / 1024.0,
        "GiB" => n * 1024.0,
        other => panic!("unit {other} in {line}"),
    }
}

/// A backup streams its files into multipart uploads as it reads the data directory: with the
/// database grown by about 150 MiB, the set in the store grows by as much and pitr-backup's
/// peak memory does not (plain codec, so no compressor buffers grow with the first MiB either).
#[test]
fn s3_backup_streams_into_the_store_with_memory_flat_as_the_database_grows() {
    let d = S3Primary::start("s3-mem");
    let sets_store = store(&d.garage, "db1/backups");
    let backup = || {
        d.p.backup()
            .args(d.config_args())
            .args(["--dst-remote", &format!("none={}", d.sets)])
            .arg("--skip-xlogs")
            .succeeds()
    };
    let data_size = |seen: &[String]| -> (String, u64) {
        let infos = sets_store.list("").unwrap();
        let new = infos
            .iter()
            .find(|o| o.key.contains("-data-") && !seen.contains(&o.key))
            .unwrap_or_else(|| panic!("no new data object in {infos:?}"));
        (new.key.clone(), new.size)
    };
    d.p.cluster.psql("CREATE TABLE f (a int, b int, c text)");
    d.p.cluster
        .psql("INSERT INTO f SELECT g, g, md5(g::text) FROM generate_series(1, 100000) g");
    let small = backup();
    let (first, small_size) = data_size(&[]);
    let started = std::time::SystemTime::now();
    d.p.cluster
        .psql("INSERT INTO f SELECT g, g, md5(g::text) FROM generate_series(1, 2000000) g");
    d.p.cluster.psql("CHECKPOINT");
    // Set names carry their start time in seconds: the next set starts in a later one.
    pitr_tests::wait_until("the next second", restore::TIMEOUT, || {
        (started.elapsed().unwrap() >= Duration::from_millis(1100)).then_some(())
    });
    let large = backup();
    let (_, large_size) = data_size(&[first]);
    // Streamed while written: only the small digest and meta files are sent afterwards.
    let sent_after: Vec<&str> = large
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains(" : LOG : sending "))
        .collect();
    assert_eq!(sent_after.len(), 2, "{sent_after:?}");
    assert!(
        sent_after
            .iter()
            .all(|l| l.contains("-sha256-") || l.contains("-meta-")),
        "{sent_after:?}"
    );
    assert!(
        large_size >= small_size + (120 << 20),
        "{small_size} then {large_size} bytes"
    );
    let (small_peak, large_peak) = (
        backup_peak_mib(small.stderr()),
        backup_peak_mib(large.stderr()),
    );
    assert!(
        large_peak <= small_peak + 8.0,
        "peak memory {small_peak:.1} MiB for {small_size} bytes, {large_peak:.1} MiB for {large_size} bytes"
    );
}

/// pitr-monitor reads an archive and backup sets in Garage as it reads directories: one backup
/// written to a directory and to the store at once, the WAL archived to both, and `info` and
/// `verify` find the same set and the same WAL in each (the same test as for rsync), then a
/// segment deleted from the store is missing there. Objects carry the time they were stored,
/// not the WAL file's, so the recoverable window's end time is left out of the comparison.
#[test]
fn s3_monitor_info_and_verify_read_garage_as_they_read_directories() {
    let d = S3Primary::start("s3-mon");
    let p = &d.p;
    let scratch = d.work.subdir("monitor-tmp");
    p.cluster.psql("CREATE TABLE t (i int)");
    let churn = || {
        p.cluster
            .psql("INSERT INTO t SELECT generate_series(1, 10000)");
        let (segment, _) = p.cluster.switch_wal_at();
        p.cluster.wait_archived(&segment, restore::TIMEOUT);
    };
    churn();
    d.backup()
        .arg("--dst-local")
        .arg(format!("zstd={}", p.backups.display()))
        .arg("--xlogs")
        .arg(&p.xlogs)
        .succeeds();
    churn();
    churn();
    p.cluster.stop();
    let wal_store = store(&d.garage, "db1/wal");
    let local = (
        p.backups.display().to_string(),
        p.archive.display().to_string(),
    );
    let remote = (d.sets.clone(), format!("zstd={}", d.wal));
    let no_until_time = |set: &mut serde_json::Value| {
        set["recoverable"]["until"]["time"] = serde_json::Value::Null;
    };
    let remove = || {
        let segments: Vec<String> = keys(&wal_store)
            .into_iter()
            .filter_map(|k| k.strip_suffix(".zst").map(str::to_owned))
            .filter(|n| n.len() == 24 && n.starts_with("00000001"))
            .collect();
        let removed = segments.iter().rev().nth(1).unwrap().clone();
        let key = format!("{removed}.zst");
        wal_store.delete(&key).unwrap();
        // What verify lists must not show it any more: once, under load, verify right after
        // the delete reported a problem of kind "damaged" instead of the missing segment; a
        // listing that still showed the key, with no object left to read, would give that.
        pitr_tests::wait_until(
            &format!("the store's listing without {key}"),
            Duration::from_secs(30),
            || (!keys(&wal_store).contains(&key)).then_some(()),
        );
        removed
    };
    crate::monitor::assert_monitor_reads_remote_like_local(
        &scratch,
        &d.config_args(),
        local,
        remote,
        no_until_time,
        remove,
    );
}

/// Every codec of a backup set in the store: one pitr-backup streams the set to three prefixes,
/// zstd, gzip and none, at once; each is restored with pitr-restore --from-backup (digests
/// checked) to the backup's end (`--target-immediate`) and promoted, and holds the rows the
/// primary had when the backup started.
#[test]
fn s3_backup_sets_in_every_codec_restore_the_rows() {
    let d = S3Primary::start("s3-codecs");
    let p = &d.p;
    p.cluster
        .psql("CREATE TABLE t AS SELECT generate_series(1, 5000) AS i");
    let url = |codec: &str| format!("{codec}={}-{codec}", d.sets);
    d.p.backup()
        .args(d.config_args())
        .args(["--dst-remote", &url("zstd")])
        .args(["--dst-remote", &url("gzip")])
        .args(["--dst-remote", &url("none")])
        .arg("--xlogs")
        .arg(&p.xlogs)
        .succeeds();
    for codec in ["zstd", "gzip", "none"] {
        let root = PgTempDir::new(&format!("s3-codecs-{codec}"));
        Tool::new("pitr-restore")
            .as_pg_user()
            .args(d.config_args())
            .args(["--from-backup", &url(codec)])
            .args(["--source", &format!("zstd={}", d.wal)])
            .args(["--target-immediate", "--target-action", "promote"])
            .arg("--target-data-dir")
            .arg(root.path().join("data"))
            .succeeds()
            .stderr_contains("digest of ");
        let c = Cluster::adopt(&format!("s3-codecs-{codec}"), root, ClusterOpts::new());
        c.start();
        c.wait_promoted(restore::TIMEOUT);
        assert_eq!(c.count_rows("t"), 5000, "{codec}");
    }
}

/// The runbook's backup of a hot standby, with the WAL archive on Garage: the primary archives
/// there too, and pitr-backup --wal-source s3:// takes the backup's WAL from the store. The
/// same test as the directory's (`backup::back_up_hot_standby`), with the location changed.
#[test]
fn s3_backup_of_hot_standby_takes_its_wal_from_garage() {
    let d = S3Primary::start("s3-sb");
    let mut wal: Vec<std::ffi::OsString> = d.config_args().map(Into::into).into();
    wal.extend(["--wal-source".into(), format!("zstd={}", d.wal).into()]);
    let standby = crate::backup::back_up_hot_standby(&d.p, "s3-sb", &wal);
    standby.stop();
}

/// A point-in-time restore with everything in Garage: the primary archives its WAL there,
/// pitr-backup streams the set there (multipart uploads, meta file last),
/// and pitr-restore --from-backup s3:// fetches the set and recovers from the WAL in the store
/// to a target time: the restored rows are those of that time, and nothing of the fetched copy
/// stays beside the new data directory.
#[test]
fn s3_point_in_time_restore_from_a_backup_in_garage() {
    let mut d = S3Primary::start("s3-pitr");
    let (config, wal, sets) = (d.config.clone(), d.wal.clone(), d.sets.clone());
    let p = &d.p;
    p.cluster.psql("CREATE TABLE marker (v text)");
    p.cluster.psql("INSERT INTO marker VALUES ('at backup')");
    d.backup().arg("--xlogs").arg(&p.xlogs).succeeds();
    let garage = &d.garage;
    let stored = keys(&store(garage, "db1/backups"));
    assert_eq!(stored.len(), 4, "{stored:?}");
    let meta_key = stored.iter().find(|k| k.contains("-meta-")).unwrap();
    let meta =
        String::from_utf8(store(garage, "db1/backups").get(meta_key).unwrap().unwrap()).unwrap();
    let finished: i64 = meta
        .lines()
        .find_map(|l| l.strip_prefix("Finished-epoch:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // A target time must come after the backup's end, which is in whole seconds.
    pitr_tests::wait_until(
        "the clock to pass the backup's end",
        restore::TIMEOUT,
        || {
            let now: i64 = p
                .cluster
                .psql("SELECT floor(extract(epoch FROM clock_timestamp()))::bigint")
                .parse()
                .unwrap();
            (now > finished).then_some(())
        },
    );
    p.cluster.psql("UPDATE marker SET v = 'time target'");
    let time = p.cluster.psql("SELECT clock_timestamp()");
    p.cluster.psql("UPDATE marker SET v = 'after the target'");
    let (segment, _) = p.cluster.switch_wal_at();
    p.cluster.wait_archived(&segment, restore::TIMEOUT);

    let root = PgTempDir::new("s3-pitr-restored");
    let data = root.path().join("data");
    Tool::new("pitr-restore")
        .as_pg_user()
        .args(["--config-file", &config.to_string_lossy()])
        .args(["--from-backup", &sets])
        .args(["--source", &format!("zstd={wal}")])
        .args(["--poll-interval", "0.2", "--target-time", &time])
        .args(["--target-action", "promote", "--target-data-dir"])
        .arg(&data)
        .succeeds()
        .stderr_line_with(&["LOG : fetching backup set", meta_key]);
    assert_eq!(pitr_tests::dir_names(root.path()), ["data"]);
    let c = Cluster::adopt("s3-pitr-restored", root, ClusterOpts::new());
    c.start();
    c.wait_promoted(restore::TIMEOUT);
    assert_eq!(c.psql("SELECT v FROM marker"), "time target");
    let log = c.server_log();
    assert!(log.contains("recovery stopping before commit"), "{log}");
    drop(c);

    // A pitr-backup killed mid-upload left its record and one object: the next backup to the
    // store removes both (the writer's pid is gone on this host), and only them.
    let sets_store = store(garage, "db1/backups");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    let record = format!(
        "action: write\npid: {gone}\nhost: {}\nmeta: killed-meta-x\nfile: killed-data-x.tar.zst\nfile: killed-sha256-x\n",
        pitr_common::backupset::hostname()
    );
    sets_store
        .put_replace(".pitr-set.killed-meta-x", record.into_bytes())
        .unwrap();
    sets_store
        .put_replace("killed-data-x.tar.zst", b"partial".to_vec())
        .unwrap();
    d.backup()
        .arg("--skip-xlogs")
        .succeeds()
        .stderr_contains("removed 1 objects of backup set killed-meta-x in ");
    let after = keys(&sets_store);
    assert_eq!(after.len(), stored.len() + 3, "{after:?}");
    assert!(stored.iter().all(|k| after.contains(k)), "{after:?}");
    assert!(
        after
            .iter()
            .all(|k| !k.contains("killed") && !k.starts_with('.')),
        "{after:?}"
    );
    let stored = after;

    // A damaged data file in the store is refused by its digest, and leaves nothing behind.
    let data_key = stored
        .iter()
        .filter(|k| k.contains("-data-"))
        .max()
        .unwrap();
    let mut bytes = sets_store.get(data_key).unwrap().unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    sets_store.put_replace(data_key, bytes).unwrap();
    let damaged = PgTempDir::new("s3-pitr-damaged");
    Tool::new("pitr-restore")
        .as_pg_user()
        .args(["--config-file", &config.to_string_lossy()])
        .args(["--from-backup", &sets])
        .args(["--source", &format!("zstd={wal}")])
        .arg("--target-data-dir")
        .arg(damaged.path().join("data"))
        .run()
        .failure_with_status(2)
        .stderr_line_with(&["ERROR : ", data_key]);
    assert_eq!(pitr_tests::dir_names(damaged.path()), Vec::<String>::new());
    // No set ended before the target: the message names the store, not the fetch directory.
    Tool::new("pitr-restore")
        .as_pg_user()
        .args(["--config-file", &config.to_string_lossy()])
        .args(["--from-backup", &sets])
        .args(["--source", &format!("zstd={wal}")])
        .args([
            "--target-time",
            "2000-01-01 00:00:00+00",
            "--target-data-dir",
        ])
        .arg(damaged.path().join("data"))
        .run()
        .failure_with_status(2)
        .stderr_contains(&format!(
            "ERROR : no backup set in {sets} ended before the target time 2000-01-01"
        ));
    assert_eq!(pitr_tests::dir_names(damaged.path()), Vec::<String>::new());

    // With every node stopped, a backup to the store fails before writing anything, naming the
    // endpoint; its local destination is left empty.
    d.garage.stop_all();
    let local = d.p.work.subdir("local-too");
    d.backup()
        .args(["--s3-retry-seconds", "2"])
        .arg("--dst-local")
        .arg(format!("zstd={}", local.display()))
        .arg("--skip-xlogs")
        .run()
        .failure_with_status(2)
        .stderr_contains(&format!("object store {} unreachable", d.garage.endpoint()));
    assert_eq!(pitr_tests::dir_names(&local), Vec::<String>::new());
    d.garage.restart_all();
    assert_eq!(keys(&sets_store), stored);
}

/// Retention with the backup sets and the WAL in Garage (`--backup-dir s3://`, `--archive
/// s3://`): of three sets `--keep-count 2` removes the oldest (dry-run first: only listed), and
/// the WAL older than the oldest kept set's first segment; the rest stays, no record is left.
#[test]
fn s3_retention_removes_the_oldest_set_and_the_wal_only_it_needed() {
    let d = S3Primary::start("s3-keep");
    let (p, garage, config, wal, sets) = (&d.p, &d.garage, &d.config, &d.wal, &d.sets);
    p.cluster.psql("CREATE TABLE t (i int)");
    let sets_store = store(garage, "db1/backups");
    let wal_store = store(garage, "db1/wal");
    let mut metas: Vec<String> = Vec::new();
    for round in 0..3 {
        p.cluster
            .psql("INSERT INTO t SELECT generate_series(1, 1000)");
        let (segment, _) = p.cluster.switch_wal_at();
        p.cluster.wait_archived(&segment, restore::TIMEOUT);
        d.backup().arg("--xlogs").arg(&p.xlogs).succeeds();
        let meta = keys(&sets_store)
            .into_iter()
            .filter(|k| k.contains("-meta-") && !metas.contains(k))
            .collect::<Vec<_>>();
        assert_eq!(meta.len(), 1, "round {round}: {meta:?}");
        metas.push(meta[0].clone());
        // Set names carry their start time in seconds: the next set starts in a later one.
        let started = std::time::SystemTime::now();
        pitr_tests::wait_until("the next second", restore::TIMEOUT, || {
            (started.elapsed().unwrap() >= Duration::from_millis(1100)).then_some(())
        });
    }
    let (segment, _) = p.cluster.switch_wal_at();
    p.cluster.wait_archived(&segment, restore::TIMEOUT);
    let before_sets = keys(&sets_store);
    let before_wal = keys(&wal_store);
    assert_eq!(before_sets.len(), 12, "{before_sets:?}");
    let kept_meta = String::from_utf8(sets_store.get(&metas[1]).unwrap().unwrap()).unwrap();
    let min_xlog = kept_meta
        .lines()
        .find_map(|l| l.strip_prefix("Min-Xlog: "))
        .unwrap()
        .to_owned();
    let cleanup_keeping = |count: &str| {
        Tool::new("pitr-cleanup")
            .as_pg_user()
            .args(["--config-file", &config.to_string_lossy()])
            .args(["--backup-dir", sets, "--archive", &format!("zstd={wal}")])
            .args(["--keep-count", count])
    };
    let cleanup = || cleanup_keeping("2");
    // The dry run lists the set with its files and size, as the real run then removes it.
    let oldest_stamp = metas[0].rsplit("-meta-").next().unwrap().to_owned();
    let oldest: Vec<(String, u64)> = sets_store
        .list("")
        .unwrap()
        .into_iter()
        .filter(|o| o.key.contains(&oldest_stamp))
        .map(|o| (o.key, o.size))
        .collect();
    assert_eq!(oldest.len(), 4, "{oldest:?}");
    let size = pitr_tests::pitr_util::human(oldest.iter().map(|(_, s)| s).sum());
    let others: Vec<&str> = ["-data-", "-xlog-", "-sha256-"]
        .iter()
        .map(|t| {
            oldest
                .iter()
                .find(|(k, _)| k.contains(t))
                .map(|(k, _)| k.as_str())
                .unwrap()
        })
        .collect();
    let listed = format!("{sets}/{} ({}; {size})", metas[0], others.join(", "));
    cleanup()
        .arg("--dry-run")
        .succeeds()
        .stderr_contains(&format!(
            "LOG : (dry-run) would remove backup set {listed}\n"
        ))
        .stderr_contains(&format!(
            "LOG : 1 backup sets would be removed, {size}; 2 kept"
        ));
    assert_eq!(keys(&sets_store), before_sets);
    assert_eq!(keys(&wal_store), before_wal);

    cleanup()
        .succeeds()
        .stderr_contains(&format!("LOG : removed backup set {listed}\n"))
        .stderr_contains(&format!("LOG : 1 backup sets removed, {size}; 2 kept"));
    let after_sets = keys(&sets_store);
    let expected: Vec<String> = before_sets
        .iter()
        .filter(|k| !k.contains(&oldest_stamp))
        .cloned()
        .collect();
    assert_eq!(after_sets.len(), 8, "{after_sets:?}");
    assert_eq!(after_sets, expected);
    let expected_wal: Vec<String> = before_wal
        .iter()
        .filter(|k| k.len() < 24 || k[..24] >= min_xlog[..])
        .cloned()
        .collect();
    assert!(
        expected_wal.len() < before_wal.len(),
        "{before_wal:?} {min_xlog}"
    );
    assert_eq!(keys(&wal_store), expected_wal);

    // Only the archive's cluster's sets count: the older set left, its meta object restamped
    // as another database system's, is left alone by a run keeping one set, with a WARNING
    // (it was removed before).
    let text = String::from_utf8(sets_store.get(&metas[1]).unwrap().unwrap()).unwrap();
    let sysid = text
        .lines()
        .find_map(|l| l.strip_prefix("System-Identifier: "))
        .unwrap()
        .to_owned();
    let faked = text.replace(
        &format!("System-Identifier: {sysid}\n"),
        "System-Identifier: 12345\n",
    );
    assert_ne!(faked, text);
    sets_store
        .put_replace(&metas[1], faked.into_bytes())
        .unwrap();
    cleanup_keeping("1")
        .succeeds()
        .stderr_contains(&format!(
            " : WARNING : backup set {sets}/{} is of database system 12345, not {sysid}, the one \
             this retention applies to; it is left alone\n",
            metas[1]
        ))
        .stderr_contains("LOG : 0 backup sets removed");
    assert_eq!(keys(&sets_store), after_sets);
    // The WAL is cut at the one set of this system kept, the newest.
    let newest_meta = String::from_utf8(sets_store.get(&metas[2]).unwrap().unwrap()).unwrap();
    let newest_min = newest_meta
        .lines()
        .find_map(|l| l.strip_prefix("Min-Xlog: "))
        .unwrap();
    let expected_wal: Vec<String> = expected_wal
        .into_iter()
        .filter(|k| k.len() < 24 || k[..24] >= newest_min[..])
        .collect();
    assert_eq!(keys(&wal_store), expected_wal);
}

/// `pitr-monitor --check verify` of a store checks the CRC-32C pitr-archive recorded with a
/// plain object, as pitr-restore does: damage inside the segment's last record (whose own CRC
/// needs the next segment) is CRITICAL, not OK.
#[test]
fn s3_monitor_verify_checks_the_crc_recorded_with_a_plain_object() {
    let (cluster, name) = restore::full_segment("s3-mon-crc");
    let good = cluster.wal_file(&name);
    let garage = GarageCluster::start();
    let work = cluster.root().subdir("s3-mon-crc-work");
    let scratch = cluster.root().subdir("s3-mon-crc-tmp");
    let config = garage.pitr_config(&work);
    let url = wal_url(&garage, "mon-crc");
    Tool::new("pitr-archive")
        .as_pg_user()
        .current_dir(cluster.data_dir())
        .arg("--config-file")
        .arg(&config)
        .arg("--dst-remote")
        .arg(format!("none={url}"))
        .arg(format!("pg_wal/{name}"))
        .succeeds();
    let verify = || {
        Tool::new("pitr-monitor")
            .as_pg_user()
            .arg("--config-file")
            .arg(&config)
            .args(["--check", "verify", "--archive"])
            .arg(format!("none={url}"))
            .arg("--temp-dir")
            .arg(&scratch)
            .run()
    };
    let out = verify();
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(out.stdout().starts_with("OK"), "{out}");
    // Bit rot in the store: the content changes, what pitr-archive recorded with it stays.
    let bad = restore::overwritten(&good, good.len() - 40, 16);
    store(&garage, "mon-crc")
        .put_after_look(
            &name,
            bad.into(),
            Instant::now(),
            Some(pitr_common::walcrc::of(&good)),
        )
        .unwrap();
    let out = verify();
    assert_eq!(out.code(), Some(2), "{out}");
    assert!(out.stdout().starts_with("CRITICAL - "), "{out}");
    assert!(
        out.stdout().lines().any(|l| l.starts_with("damaged: ")
            && l.contains(&name)
            && l.contains("does not match the checksum recorded when it was archived")),
        "{out}"
    );
}

/// SPEC, "Integrity, every stored form": an archive holding a WAL name in two forms, the plain
/// copy identical and the `.gz` copy different, refuses the segment in every location kind. A
/// reader may take either form (restore prefers its own codec's), so the first form found is
/// not the answer: every form there is compared. Nothing is written or replaced.
#[test]
fn a_name_held_in_two_forms_is_compared_in_both_in_every_location_kind() {
    let garage = GarageCluster::start();
    let work = PgTempDir::new("two-forms");
    let config = garage.pitr_config(work.path());
    let (cluster, segment) = crate::archive::cluster_with_segment("two-forms");
    let ours = cluster.wal_file(&segment);
    let mut theirs = ours.clone();
    let middle = theirs.len() / 2;
    theirs[middle] ^= 0xff;
    let gz = pitr_common::compress::Codec::Gzip(1)
        .compress(&theirs)
        .unwrap();
    let gz_name = format!("{segment}.gz");

    let local = cluster.root().subdir("archive");
    pg_user().write_file(&local.join(&segment), &ours);
    pg_user().write_file(&local.join(&gz_name), &gz);
    let rsyncd = pitr_tests::RsyncDaemon::start("wal_archive");
    std::fs::write(rsyncd.dir().join(&segment), &ours).unwrap();
    std::fs::write(rsyncd.dir().join(&gz_name), &gz).unwrap();
    let objects = store(&garage, "two-forms/wal");
    objects.put_new(&segment, ours.clone()).unwrap();
    objects.put_new(&gz_name, gz.to_vec()).unwrap();

    let places = [
        ("--dst-local", local.display().to_string()),
        ("--dst-remote", rsyncd.url()),
        ("--dst-remote", wal_url(&garage, "two-forms/wal")),
    ];
    for (option, place) in &places {
        let refused = Tool::new("pitr-archive")
            .as_pg_user()
            .args(["--config-file", &config.to_string_lossy()])
            .args([option.to_string(), format!("zstd={place}")])
            .arg("--data-dir")
            .arg(cluster.data_dir())
            .arg(format!("pg_wal/{segment}"))
            .run();
        refused.failure_with_status(2);
        refused.stderr_line_with(&[
            " : ERROR : ",
            &format!("{segment} is already archived in zstd:2="),
            place,
            &format!(
                " with different content (as {gz_name}); the archived file was left untouched"
            ),
        ]);
    }
    for dir in [local.as_path(), rsyncd.dir()] {
        let archived = pitr_tests::ArchiveDir::new(dir);
        assert_eq!(
            archived.names(),
            [segment.clone(), gz_name.clone()],
            "{}",
            dir.display()
        );
        assert_eq!(archived.raw(&segment), ours);
        assert_eq!(archived.raw(&gz_name), gz);
    }
    let mut keys: Vec<String> = objects
        .list("")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [".pitr-cluster".to_string(), segment.clone(), gz_name]
    );
    assert_eq!(objects.get(&segment).unwrap().unwrap(), ours);
}

//! `pitr_common::objstore` against a real 3-node Garage cluster ([`GarageCluster`]): round trips,
//! conditional creates, pagination, multipart uploads with bounded memory, aborts, and the
//! behaviour with one node and with every node stopped.
//!
//! Garage 2.5 ignores `If-None-Match: *` on PutObject and on CompleteMultipartUpload (pinned by
//! `garage_ignores_if_none_match`), so the stores here use HEAD then PUT
//! (`Settings::if_none_match = false`), as pitr must for Garage.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use pitr_common::objstore::{Error, PutOutcome, S3Url, Settings, Store};
use pitr_tests::GarageCluster;

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

fn store(garage: &GarageCluster, prefix: &str) -> Store {
    let url = S3Url::parse(&format!("s3://{}/{prefix}", garage.bucket())).unwrap();
    Store::open(&url, &settings(garage)).unwrap()
}

/// `len` bytes of a xorshift sequence seeded with `seed` (incompressible, reproducible).
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
    store.put_replace("from", b"new content".to_vec()).unwrap();
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
    assert_eq!(store.get("to").unwrap().unwrap(), b"new content");
}

#[test]
fn s3_racing_creates_leave_one_whole_object() {
    let garage = GarageCluster::start();
    let a = pseudo_random(4 << 20, 2);
    let b = pseudo_random(4 << 20, 3);
    for round in 0..5 {
        let key = format!("race-{round}");
        let outcomes: Vec<PutOutcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = [&a, &b]
                .into_iter()
                .map(|body| {
                    let (garage, key) = (&garage, &key);
                    scope.spawn(move || store(garage, "race").put_new(key, body.clone()).unwrap())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            outcomes.contains(&PutOutcome::Created),
            "round {round}: nobody created the object: {outcomes:?}"
        );
        let stored = store(&garage, "race").get(&key).unwrap().unwrap();
        assert!(
            stored == a || stored == b,
            "round {round}: the object is neither writer's content"
        );
        // Without conditional writes both may report Created (Garage): the stored object is the
        // last writer's, and a caller must compare after writing.
        if outcomes == [PutOutcome::Created, PutOutcome::AlreadyExists]
            || outcomes == [PutOutcome::AlreadyExists, PutOutcome::Created]
        {
            let winner = if outcomes[0] == PutOutcome::Created {
                &a
            } else {
                &b
            };
            assert!(
                stored == *winner,
                "round {round}: the loser's content is stored"
            );
        }
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
    let mut upload = store.upload(key).unwrap();
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
        let mut upload = store.upload("base.tar").unwrap();
        upload.write_all(&pseudo_random(20 << 20, 5)).unwrap();
        // Dropped without commit: an interrupted backup.
    }
    assert_eq!(store.head("base.tar").unwrap(), None);
    assert!(store.list("").unwrap().is_empty());
    // The same key can be uploaded and committed afterwards.
    let mut upload = store.upload("base.tar").unwrap();
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

//! Tests of the harness itself, so that a failure in the binaries' tests can be told apart from
//! a broken fixture: a cluster starts, answers psql and switches WAL; the rsync daemon takes an
//! upload as the PostgreSQL user and comes back on the same port after a stop.

use pitr_tests::procs::OutputWithin;
use pitr_tests::{pg_user, ArchiveDir, Cluster, ClusterOpts, RsyncDaemon};

#[test]
fn harness_cluster_starts_and_switches_wal() {
    let cluster = Cluster::init("harness", ClusterOpts::new().set("wal_keep_size", "1GB"));
    cluster.start();
    assert_eq!(cluster.psql("SELECT 1 + 1"), "2");
    let first = cluster.switch_wal();
    let second = cluster.switch_wal();
    assert!(second > first, "{second} does not follow {first}");
    assert_eq!(cluster.wal_file(&first).len(), 16 * 1024 * 1024);
    assert!(cluster.system_identifier().parse::<u64>().is_ok());
    let running_id = cluster.system_identifier();
    cluster.stop();
    assert_eq!(cluster.system_identifier(), running_id);
}

#[test]
fn harness_rsync_daemon_accepts_uploads_after_restart() {
    let mut daemon = RsyncDaemon::start("wal_archive");
    let file = daemon.dir().parent().expect("parent").join("upload.txt");
    std::fs::write(&file, b"hello").expect("write");
    let url = daemon.url();
    let upload = |name: &str| {
        pg_user()
            .command("rsync")
            .arg("--timeout=10")
            .arg(&file)
            .arg(format!("{url}/{name}"))
            .output_within(pitr_tests::procs::EXTERNAL_TIMEOUT)
            .expect("running rsync")
            .status
    };
    assert!(upload("one.txt").success(), "{}", daemon.log());
    daemon.stop();
    assert!(!upload("two.txt").success());
    daemon.start_again();
    assert!(upload("three.txt").success(), "{}", daemon.log());
    let dir = ArchiveDir::new(daemon.dir());
    assert_eq!(dir.names(), vec!["one.txt", "three.txt"]);
    let meta = std::fs::metadata(daemon.dir().join("one.txt")).expect("stat");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        pg_user().uid,
        "the daemon does not write as the PostgreSQL user"
    );
}

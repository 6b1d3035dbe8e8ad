//! `pitr-monitor` against real PostgreSQL 15 clusters (issue 16): after a failover `info` shows
//! both timelines and `verify` finds no gap across the switch, then exactly the segment removed
//! and the one damaged (CRITICAL); with the archiver stuck on `/bin/false`, `archive-queue`
//! and `last-archive-age` cross their thresholds; `errors` reports each ERROR line of a real
//! failing pitr-archive once across calls; rsync locations read as local ones are. The JSON
//! output is parsed wherever a test reads details.
//!
//! The clusters use 1 MiB WAL segments: little WAL per scenario, and pitr-monitor must read
//! the segment size from the headers.

use std::path::Path;
use std::time::Duration;

use pitr_tests::pitr_util::{current_timeline, restore_backup};
use pitr_tests::{
    pitr_bin, poll_until, wait_until, ArchiveDir, Cluster, ClusterOpts, CmdResult, PgTempDir,
    RsyncDaemon, Tool,
};
use serde_json::Value;

/// How long a test waits for archiving, replay or promotion, or for a check to change.
const TIMEOUT: Duration = Duration::from_secs(90);

/// `pitr-monitor` with `args`.
fn monitor<I, S>(args: I) -> Tool
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Tool::new("pitr-monitor").args(args)
}

/// The JSON object a `--output json` run printed.
fn json(out: &CmdResult) -> Value {
    serde_json::from_str(out.stdout()).unwrap_or_else(|e| {
        panic!(
            "pitr-monitor printed no JSON ({e}):\n{}\n--- stderr\n{}",
            out.stdout(),
            out.stderr()
        )
    })
}

/// Asserts the exit status, showing the output when it differs.
fn assert_status(out: &CmdResult, code: i32) {
    assert_eq!(
        out.code(),
        Some(code),
        "--- stdout\n{}\n--- stderr\n{}",
        out.stdout(),
        out.stderr()
    );
}

/// More WAL, and a switch to a new segment.
fn churn(c: &Cluster) -> String {
    c.psql("INSERT INTO filler (payload) SELECT repeat('x', 200) FROM generate_series(1, 300)");
    c.switch_wal()
}

/// The complete segments of timeline `tli` archived in `dir`, sorted (any stored form).
fn segments_of(dir: &ArchiveDir, tli: &str) -> Vec<String> {
    let mut v: Vec<String> = dir
        .names()
        .into_iter()
        .map(|n| n.trim_end_matches(".zst").to_owned())
        .filter(|n| n.len() == 24 && n.starts_with(tli))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn monitor_info_and_verify_follow_a_failover_and_find_a_removed_and_a_damaged_segment() {
    let work = PgTempDir::new("mon-failover-work");
    let archive = work.subdir("archive");
    let backups = work.subdir("backups");
    let xlogs = work.path().join("xlogs");
    let command = format!(
        "{} --dst-local zstd={} --dst-backup {} %p",
        pitr_bin("pitr-archive").display(),
        archive.display(),
        xlogs.display()
    );
    let primary = Cluster::init(
        "mon-failover-primary",
        ClusterOpts::new()
            .wal_segsize_mb(1)
            .set("archive_mode", "on")
            .set("archive_command", &command)
            .set("wal_keep_size", "64MB"),
    );
    primary.start();
    primary.psql("CREATE TABLE filler (id serial PRIMARY KEY, payload text)");
    for _ in 0..3 {
        churn(&primary);
    }
    pitr_tests::backup_tool(&primary)
        .arg("--dst-local")
        .arg(format!("zstd={}", backups.display()))
        .arg("--xlogs")
        .arg(&xlogs)
        .succeeds();
    for _ in 0..3 {
        churn(&primary);
    }
    let last = churn(&primary);
    primary.wait_archived(&last, TIMEOUT);

    // A warm spare from the backup, failed over once the primary is gone.
    let trigger = work.path().join("finish");
    let standby = restore_backup(
        "mon-failover-standby",
        Tool::new("pitr-restore")
            .arg("--from-backup")
            .arg(&backups)
            .arg("--source")
            .arg(format!("zstd={}", archive.display()))
            .args(["--poll-interval", "0.2", "--finish-trigger"])
            .arg(&trigger),
        ClusterOpts::new().set("archive_mode", "on"),
    );
    standby.start();
    primary.stop();
    std::fs::write(&trigger, b"").unwrap();
    standby.wait_promoted(TIMEOUT);
    assert_eq!(current_timeline(&standby), 2);
    let dir = ArchiveDir::new(&archive);
    wait_until("00000002.history in the archive", TIMEOUT, || {
        dir.file_for("00000002.history")
    });
    churn(&standby);
    let last = churn(&standby);
    assert!(last.starts_with("00000002"), "{last}");
    standby.wait_archived(&last, TIMEOUT);
    // Nothing is archived behind the checks' backs from here on.
    standby.stop();
    let tl1 = segments_of(&dir, "00000001");
    let tl2 = segments_of(&dir, "00000002");
    assert!(!tl1.is_empty() && tl2.len() >= 2, "{:?}", dir.names());

    let archive_arg = format!("zstd={}", archive.display());
    let backups_arg = backups.display().to_string();

    // info: the set, both timelines, and a window that ends on timeline 2's newest segment.
    let out = monitor([
        "--check",
        "info",
        "--backup-dir",
        &backups_arg,
        "--archive",
        &archive_arg,
        "--output",
        "json",
    ])
    .run();
    assert_status(&out, 0);
    let v = json(&out);
    assert_eq!(v["check"], "info");
    assert_eq!(v["status"], "OK");
    assert_eq!(
        v["details"]["archive"]["timelines"],
        serde_json::json!([1, 2])
    );
    assert_eq!(v["details"]["archive"]["segment_size"], 1 << 20);
    let set = &v["details"]["locations"][0]["sets"][0];
    assert_eq!(set["timeline"], 1);
    assert_eq!(set["valid"], true, "{set}");
    assert_eq!(set["digest"], "listed");
    assert_eq!(set["codec"], "zstd");
    assert_eq!(set["recoverable"]["until"]["timeline"], 2, "{set}");
    assert_eq!(
        set["recoverable"]["until"]["wal"],
        tl2.last().unwrap().as_str(),
        "{set}"
    );
    let human = monitor([
        "--check",
        "info",
        "--backup-dir",
        &backups_arg,
        "--archive",
        &archive_arg,
    ])
    .run();
    assert_status(&human, 0);
    let first = human.stdout().lines().next().unwrap_or_default();
    assert!(
        first.starts_with("OK - 1 backup set in 1 location, newest finished "),
        "{}",
        human.stdout()
    );
    assert!(
        human
            .stdout()
            .contains(&format!("archive {}: ", archive.display()))
            && human.stdout().contains(", timelines 1, 2, "),
        "{}",
        human.stdout()
    );
    assert!(
        human.stdout().contains("RECOVERABLE UNTIL") && human.stdout().contains("on timeline 2"),
        "{}",
        human.stdout()
    );

    // verify: no gap across the switch.
    let verify = || {
        monitor([
            "--check",
            "verify",
            "--archive",
            &archive_arg,
            "--backup-dir",
            &backups_arg,
        ])
    };
    let out = verify().arg("--output").arg("json").run();
    assert_status(&out, 0);
    let v = json(&out);
    assert_eq!(v["status"], "OK");
    assert_eq!(v["details"]["problems"], serde_json::json!([]), "{v}");
    let timelines: Vec<i64> = v["details"]["timelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["timeline"].as_i64().unwrap())
        .collect();
    assert_eq!(timelines, [1, 2], "{v}");
    // The runbook's cron line: the same check written for node_exporter's textfile collector.
    let prom = work.path().join("pitr-verify.prom");
    let prom_status = || {
        let text = std::fs::read_to_string(&prom).unwrap();
        assert!(
            text.contains("# TYPE pitr_verify_problems gauge\n"),
            "{text}"
        );
        text.lines()
            .find_map(|l| l.strip_prefix("pitr_monitor_status{check=\"verify\"} "))
            .map(str::to_owned)
    };
    let out = verify().arg("--prometheus").arg(&prom).run();
    assert_status(&out, 0);
    assert!(
        out.stdout().starts_with("OK - archive ") && out.stdout().contains("no problem found"),
        "{}",
        out.stdout()
    );
    assert_eq!(prom_status().as_deref(), Some("0"));
    // A run that cannot check at all replaces the file's status with UNKNOWN: the OK left
    // there before would read as current.
    let gone = work.path().join("no-such-archive");
    let out = monitor(["--check", "verify", "--archive"])
        .arg(&gone)
        .arg("--prometheus")
        .arg(&prom)
        .run();
    assert_status(&out, 3);
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(
        text.contains("\npitr_monitor_status{check=\"verify\"} 3\n"),
        "{text}"
    );

    // One segment of timeline 1 removed (after the backup's start), one of timeline 2 damaged.
    let removed = tl1[tl1.len() - 2].clone();
    let damaged = tl2[0].clone();
    std::fs::remove_file(dir.path_for(&removed)).unwrap();
    let damaged_path = dir.path_for(&damaged);
    let mut bytes = std::fs::read(&damaged_path).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5A;
    }
    std::fs::write(&damaged_path, &bytes).unwrap();
    let out = verify().arg("--prometheus").arg(&prom).run();
    assert_status(&out, 2);
    assert_eq!(prom_status().as_deref(), Some("2"));
    let lines: Vec<&str> = out.stdout().lines().collect();
    assert!(
        lines[0].starts_with("CRITICAL - 2 problems (1 missing, 1 damaged): "),
        "{}",
        out.stdout()
    );
    assert_eq!(lines.len(), 3, "{}", out.stdout());
    assert_eq!(lines[1], format!("missing segment {removed}"));
    assert!(
        lines[2].starts_with(&format!(
            "damaged: {} cannot be decompressed: ",
            damaged_path.display()
        )),
        "{}",
        out.stdout()
    );
    let v = json(&verify().arg("--output").arg("json").run());
    assert_eq!(v["status"], "CRITICAL");
    assert_eq!(v["exit_code"], 2);
    let names: Vec<&str> = v["details"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [removed.clone(), format!("{damaged}.zst")]);
    // info names the broken window too: the backup now ends at the removed segment.
    let v = json(
        &monitor([
            "--check",
            "info",
            "--backup-dir",
            &backups_arg,
            "--archive",
            &archive_arg,
            "--output",
            "json",
        ])
        .run(),
    );
    let until = &v["details"]["locations"][0]["sets"][0]["recoverable"]["until"];
    assert_eq!(until["timeline"], 1, "{v}");
    assert_eq!(until["wal"], tl1[tl1.len() - 3].as_str(), "{v}");
}

/// `pitr-monitor --check CHECK` for the archiving checks of `c`: its server log (where
/// pitr-archive writes), a state directory, the server's socket.
fn archiving_check(c: &Cluster, state: &Path, check: &str, warning: &str, critical: &str) -> Tool {
    monitor(["--check", check, "--log"])
        .arg(c.root().path().join("server.log"))
        .arg("--state-dir")
        .arg(state)
        .arg("--host")
        .arg(c.socket_dir())
        .args(["--port", &c.port().to_string(), "--username", "postgres"])
        .args(["--warning", warning, "--critical", critical])
}

#[test]
fn monitor_archive_queue_and_last_archive_age_cross_thresholds_when_archiving_is_stuck() {
    let work = PgTempDir::new("mon-stuck-work");
    let archive = work.subdir("archive");
    let state = work.subdir("state");
    let command = format!(
        "{} --dst-local zstd={} %p",
        pitr_bin("pitr-archive").display(),
        archive.display()
    );
    let c = Cluster::init(
        "mon-stuck",
        ClusterOpts::new()
            .wal_segsize_mb(1)
            .set("archive_mode", "on")
            .set("archive_command", &command),
    );
    c.start();
    let seg = c.switch_wal();
    c.wait_archived(&seg, TIMEOUT);

    // Keeping up: nothing waits, the last archive is recent.
    let out = archiving_check(&c, &state, "archive-queue", "1", "2").run();
    assert_status(&out, 0);
    assert!(
        out.stdout()
            .starts_with("OK - 0 WAL segments waiting to be archived"),
        "{}",
        out.stdout()
    );
    let out = archiving_check(&c, &state, "last-archive-age", "60", "120").run();
    assert_status(&out, 0);
    assert!(
        out.stdout().starts_with("OK - last WAL file archived ")
            && out.stdout().contains(&format!(": {seg} at ")),
        "{}",
        out.stdout()
    );

    // Stuck: every archive_command fails, WAL piles up.
    c.psql("ALTER SYSTEM SET archive_command = '/bin/false'");
    c.psql("SELECT pg_reload_conf()");
    wait_until("the archiver to fail with /bin/false", TIMEOUT, || {
        c.switch_wal();
        (c.archiver_stats().failed_count > 0).then_some(())
    });
    for _ in 0..3 {
        c.switch_wal();
    }
    let queue = poll_until(TIMEOUT, || {
        let out = archiving_check(&c, &state, "archive-queue", "1", "2")
            .args(["--output", "json"])
            .run();
        (out.code() == Some(2)).then_some(out)
    })
    .unwrap_or_else(|| {
        panic!(
            "archive-queue never went CRITICAL: {}",
            archiving_check(&c, &state, "archive-queue", "1", "2")
                .run()
                .stdout()
        )
    });
    let v = json(&queue);
    assert_eq!(v["status"], "CRITICAL");
    assert!(v["details"]["queue"].as_u64().unwrap() >= 3, "{v}");
    // Exactly the segments PostgreSQL has marked ready: right after a switch the server's
    // location is at a file boundary, where pg_walfile_name() names the file just finished
    // (the queue read one short).
    let ready = || {
        std::fs::read_dir(c.wal_dir().join("archive_status"))
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.ends_with(".ready") && n.len() == 24 + ".ready".len()
            })
            .count() as u64
    };
    c.switch_wal();
    let out = archiving_check(&c, &state, "archive-queue", "1", "2")
        .args(["--output", "json"])
        .run();
    let v = json(&out);
    assert_eq!(v["details"]["queue"].as_u64().unwrap(), ready(), "{v}");
    assert_eq!(v["metrics"][0]["name"], "archive_queue");
    assert_eq!(v["metrics"][0]["critical"], "2");
    assert!(
        v["details"]["pg_stat_archiver"]["failed_count"]
            .as_i64()
            .unwrap()
            > 0
    );

    let age = poll_until(TIMEOUT, || {
        let out = archiving_check(&c, &state, "last-archive-age", "1", "2").run();
        (out.code() == Some(2)).then_some(out)
    })
    .unwrap_or_else(|| {
        panic!(
            "last-archive-age never went CRITICAL: {}",
            archiving_check(&c, &state, "last-archive-age", "1", "2")
                .run()
                .stdout()
        )
    });
    let line = age.stdout().lines().next().unwrap_or_default();
    assert!(
        line.starts_with("CRITICAL - last WAL file archived "),
        "{line}"
    );
    assert!(line.contains(" | last_archive_age="), "{line}");
    assert!(line.ends_with("s;1;2;0;"), "{line}");
    // OmniPITR's form for Cacti: the bare number of seconds.
    let bare = archiving_check(&c, &state, "last-archive-age", "1", "2")
        .args(["--output", "omnipitr"])
        .run();
    assert_status(&bare, 2);
    let secs: f64 = bare
        .stdout()
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("not a number: {:?}: {e}", bare.stdout()));
    assert!(secs > 2.0, "{secs}");
}

#[test]
fn monitor_errors_reports_each_error_once_across_calls() {
    let work = PgTempDir::new("mon-errors-work");
    let logs = work.subdir("logs");
    let state = work.subdir("state");
    let template = format!("{}/archive-^Y-^m-^d.log", logs.display());
    let c = Cluster::init("mon-errors", ClusterOpts::new().wal_segsize_mb(1));
    c.start();
    let seg = c.switch_wal();
    // A real pitr-archive that fails: its destination does not exist.
    let fail = || {
        Tool::new("pitr-archive")
            .as_pg_user()
            .arg("--data-dir")
            .arg(c.data_dir())
            .arg("--dst-local")
            .arg(work.path().join("no-such-archive"))
            .arg("--log")
            .arg(&template)
            .arg(format!("pg_wal/{seg}"))
            .run()
    };
    let error_lines = || -> Vec<String> {
        let mut out = Vec::new();
        for name in pitr_tests::dir_names(&logs) {
            let text = std::fs::read_to_string(logs.join(name)).unwrap();
            out.extend(
                text.lines()
                    .filter(|l| l.contains(" : pitr-archive : ERROR : "))
                    .map(str::to_owned),
            );
        }
        out
    };
    let errors = || monitor(["--check", "errors", "--log", &template, "--state-dir"]).arg(&state);

    assert_eq!(fail().code(), Some(2));
    let first = error_lines();
    assert!(!first.is_empty());
    let out = errors().run();
    assert_status(&out, 1);
    let lines: Vec<&str> = out.stdout().lines().collect();
    assert!(
        lines[0].starts_with(&format!(
            "WARNING - {} new errors since the last check; the last: pitr-archive ERROR: ",
            first.len()
        )),
        "{}",
        out.stdout()
    );
    assert!(
        lines[0].ends_with(&format!(" | errors={};@1:;;0;", first.len())),
        "{}",
        lines[0]
    );
    assert_eq!(
        lines[1..],
        first.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );

    // Reported once: nothing new, nothing printed.
    let out = errors().run();
    assert_status(&out, 0);
    assert_eq!(
        out.stdout(),
        "OK - no new errors since the last check | errors=0;@1:;;0;\n"
    );

    // A second failure: only its lines, in JSON this time.
    assert_eq!(fail().code(), Some(2));
    let all = error_lines();
    let out = errors().args(["--output", "json"]).run();
    assert_status(&out, 1);
    let v = json(&out);
    assert_eq!(v["status"], "WARNING");
    let messages: Vec<String> = v["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} : {} : {} : {} : {}",
                e["timestamp"].as_str().unwrap(),
                e["pid"],
                e["program"].as_str().unwrap(),
                e["level"].as_str().unwrap(),
                e["message"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(messages, all[first.len()..]);
    assert_status(&errors().run(), 0);

    // --from looks back over what was reported, and does not mark anything.
    let out = errors()
        .args(["--from", "3600", "--output", "omnipitr"])
        .run();
    assert_status(&out, 1);
    assert_eq!(out.stdout().lines().count(), all.len(), "{}", out.stdout());
    for (got, line) in out.stdout().lines().zip(&all) {
        // OmniPITR's form: time stamp without offset, pid, level and message.
        let (stamp, rest) = line.split_at(26);
        let rest = rest.split_once(" : pitr-archive : ").unwrap().1;
        let pid = line.split(" : ").nth(1).unwrap();
        assert_eq!(got, format!("{stamp} : {pid} : {rest}"));
    }
    assert_status(&errors().run(), 0);

    // A third failure while the --prometheus file cannot be written: UNKNOWN, and the new
    // errors are printed all the same (they are marked reported; they used to be lost).
    assert_eq!(fail().code(), Some(2));
    let third = error_lines()[all.len()..].to_vec();
    let prom = work.path().join("no-such-dir").join("errors.prom");
    let out = errors().arg("--prometheus").arg(&prom).run();
    assert_status(&out, 3);
    let lines: Vec<&str> = out.stdout().lines().collect();
    assert!(
        lines[0].starts_with("UNKNOWN - ") && lines[0].contains(&prom.display().to_string()),
        "{}",
        out.stdout()
    );
    assert_eq!(
        lines[1..],
        third.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );
    assert_status(&errors().run(), 0);

    // A pid file that cannot be made: UNKNOWN, with the HINT the other programs give.
    let out = errors()
        .arg("--pid-file")
        .arg(work.path().join("no-such-dir").join("monitor.pid"))
        .run();
    assert_status(&out, 3);
    out.stderr_contains(" : HINT : give a pid file in an existing directory writable by the user the program runs as\n");
}

#[test]
fn monitor_info_and_verify_read_rsync_locations_as_they_read_local_ones() {
    let wal = RsyncDaemon::start("wal_archive");
    let backups = RsyncDaemon::start("backups");
    let work = PgTempDir::new("mon-rsync-work");
    let scratch = work.subdir("tmp");
    let command = format!(
        "{} --dst-remote zstd={} %p",
        pitr_bin("pitr-archive").display(),
        wal.url()
    );
    let c = Cluster::init(
        "mon-rsync",
        ClusterOpts::new()
            .wal_segsize_mb(1)
            .set("archive_mode", "on")
            .set("archive_command", &command),
    );
    c.start();
    c.psql("CREATE TABLE filler (id serial PRIMARY KEY, payload text)");
    let seg = churn(&c);
    c.wait_archived(&seg, TIMEOUT);
    pitr_tests::backup_tool(&c)
        .arg("--dst-remote")
        .arg(format!("zstd={}", backups.url()))
        .arg("--wal-source")
        .arg(format!("zstd={}", wal.dir().display()))
        .succeeds();
    churn(&c);
    let last = churn(&c);
    c.wait_archived(&last, TIMEOUT);
    c.stop();

    let local = (
        backups.dir().display().to_string(),
        format!("zstd={}", wal.dir().display()),
    );
    let remote = (backups.url(), format!("zstd={}", wal.url()));
    // rsync lists modification times in whole seconds.
    let whole_seconds = |set: &mut Value| {
        let until = &mut set["recoverable"]["until"]["time"];
        *until = serde_json::json!(until.as_f64().unwrap_or(0.0).floor());
    };
    // A segment removed on the rsync side is missing there too.
    let remove = || {
        let dir = ArchiveDir::new(wal.dir());
        let removed = segments_of(&dir, "00000001")
            .into_iter()
            .rev()
            .nth(1)
            .unwrap();
        std::fs::remove_file(dir.path_for(&removed)).unwrap();
        removed
    };
    assert_monitor_reads_remote_like_local(&scratch, &[], local, remote, whole_seconds, remove);

    // last-backup-age from the sets counts only whole ones: the set is the last backup, in
    // the rsync target as in its directory; with its data file cut short it is not, and the
    // summary says which set was passed over and why.
    let meta = pitr_tests::dir_names(backups.dir())
        .into_iter()
        .find(|n| n.contains("-meta-"))
        .unwrap();
    let data = pitr_tests::dir_names(backups.dir())
        .into_iter()
        .find(|n| n.contains("-data-"))
        .unwrap();
    let age = |dir: &str| {
        let out = monitor(["--check", "last-backup-age", "--backup-dir", dir])
            .args(["--output", "json", "--temp-dir"])
            .arg(&scratch)
            .run();
        let v = json(&out);
        (out, v)
    };
    for dir in [backups.url(), backups.dir().display().to_string()] {
        let (out, v) = age(&dir);
        assert_status(&out, 0);
        assert_eq!(v["details"]["backup"], format!("{meta} in {dir}"), "{v}");
        assert!(
            v["summary"]
                .as_str()
                .unwrap()
                .starts_with("last backup finished "),
            "{v}"
        );
    }
    let data_path = backups.dir().join(&data);
    let bytes = std::fs::read(&data_path).unwrap();
    std::fs::write(&data_path, &bytes[..bytes.len() / 2]).unwrap();
    for dir in [backups.url(), backups.dir().display().to_string()] {
        let (out, v) = age(&dir);
        assert_status(&out, 3);
        assert_eq!(
            v["summary"],
            format!(
                "no finished backup in {dir}; not counted, with problems: {meta} in {dir}: \
                 {data} is {} bytes, the meta file says {}",
                bytes.len() / 2,
                bytes.len()
            ),
            "{v}"
        );
    }
    // info lists the set with its problem, and its age thresholds do not measure it.
    let out = monitor(["--check", "info", "--backup-dir"])
        .arg(backups.dir())
        .args(["--output", "json", "--critical", "86400"])
        .run();
    let v = json(&out);
    assert_status(&out, 1);
    let metrics: Vec<&str> = v["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(!metrics.contains(&"newest_backup_age"), "{v}");
    std::fs::write(&data_path, &bytes).unwrap();
}

/// `info` and `verify` on `remote` (backup directory, archive) find what they find on `local`,
/// the same sets and WAL in another kind of location (`extra`: options the remote kind needs;
/// `normalize`: what a set's JSON legitimately differs in there), leave nothing in the
/// `scratch` directory, and a segment `remove` takes from the remote archive is missing there.
pub(crate) fn assert_monitor_reads_remote_like_local(
    scratch: &Path,
    extra: &[String],
    local: (String, String),
    remote: (String, String),
    normalize: impl Fn(&mut Value),
    remove: impl FnOnce() -> String,
) {
    let run = |check: &str, (backup_dir, archive): &(String, String)| {
        let out = monitor(["--check", check, "--backup-dir", backup_dir, "--archive"])
            .arg(archive)
            .args(extra)
            .args(["--output", "json", "--temp-dir"])
            .arg(scratch)
            .run();
        let v = json(&out);
        (out, v)
    };
    let (out, l) = run("info", &local);
    assert_status(&out, 0);
    let (out, r) = run("info", &remote);
    assert_status(&out, 0);
    let set = |v: &Value| {
        let mut s = v["details"]["locations"][0]["sets"][0].clone();
        normalize(&mut s);
        s
    };
    assert_eq!(set(&r), set(&l), "{r}");
    assert_eq!(set(&r)["valid"], true, "{r}");
    assert_eq!(r["details"]["locations"][0]["location"], remote.0.as_str());
    assert_eq!(
        r["details"]["archive"]["segments"],
        l["details"]["archive"]["segments"]
    );

    let (out, l) = run("verify", &local);
    assert_status(&out, 0);
    let (out, r) = run("verify", &remote);
    assert_status(&out, 0);
    assert_eq!(r["details"]["files_checked"], l["details"]["files_checked"]);
    assert_eq!(r["details"]["bytes_checked"], l["details"]["bytes_checked"]);
    assert_eq!(r["details"]["problems"], serde_json::json!([]));
    // The scratch directory of the fetched copies is gone.
    assert_eq!(pitr_tests::dir_names(scratch), Vec::<String>::new());

    // A segment removed between the listing and the reading (retention running meanwhile) is
    // not a damaged file: the run is clean and checks one file fewer.
    let hold = scratch.with_extension("hold");
    std::fs::write(&hold, b"").unwrap();
    let (backup_dir, archive) = &remote;
    let running = monitor(["--check", "verify", "--backup-dir", backup_dir, "--archive"])
        .arg(archive)
        .args(extra)
        .args(["--output", "json", "--temp-dir"])
        .arg(scratch)
        .env("PITR_TEST_VERIFY_HOLD", &hold)
        .spawn();
    let listed = hold.with_extension("hold.listed");
    wait_until("verify to list the archive", TIMEOUT, || {
        listed.exists().then_some(())
    });
    let removed = remove();
    std::fs::remove_file(&hold).unwrap();
    let out = running.wait();
    let r = json(&out);
    assert_status(&out, 0);
    assert_eq!(r["details"]["problems"], serde_json::json!([]), "{r}");
    assert_eq!(
        r["details"]["files_checked"].as_u64().unwrap() + 1,
        l["details"]["files_checked"].as_u64().unwrap(),
        "{r}"
    );
    std::fs::remove_file(&listed).unwrap();

    // The next run finds the gap.
    let (out, r) = run("verify", &remote);
    assert_status(&out, 2);
    assert_eq!(
        r["details"]["problems"][0]["kind"], "missing_segments",
        "{r}"
    );
    assert_eq!(r["details"]["problems"][0]["name"], removed.as_str(), "{r}");
    assert_eq!(r["details"]["problems"].as_array().unwrap().len(), 1, "{r}");
}

//! A throwaway 3-node Garage cluster: the real S3-compatible object store the object-storage
//! tests run against (no mock S3, no in-process fake).
//!
//! Each node is one `garage server` process on its own free loopback ports (RPC, S3 API), with
//! its own configuration, metadata and data directories under one temp dir. [`GarageCluster::start`]
//! starts the three, connects them (`garage node connect`), assigns each a role in its own zone
//! and applies the layout (replication factor 3), then creates an access key and a bucket and
//! grants the key read, write and owner rights on it, all with the `garage` program itself. Tests
//! stop and restart single nodes or all of them; `Drop` kills whatever still runs.
//!
//! The program comes from `PITR_GARAGE` (set by `cargo xtask test`, which builds Garage once into
//! a cache directory), else from that cache directory ([`garage_program`]). Every wait polls with
//! a deadline.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::procs::OutputWithin;
use crate::{poll_until, port};

/// The Garage version the tests are written against (and that `cargo xtask test` installs).
pub const GARAGE_VERSION: &str = "2.5.0";

/// How long a node may take to listen, or the cluster to become healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The S3 region the nodes announce (any name works; clients must sign with the same one).
const REGION: &str = "garage";

/// Number of nodes, and the replication factor.
const NODES: usize = 3;

/// The `garage` program: `PITR_GARAGE`, else `$XDG_CACHE_HOME` (or `$HOME/.cache`)
/// `/pitr/garage-<version>/bin/garage`, where `cargo xtask test` installs it.
///
/// Panics with the command to run when it is not there: a missing store must fail the test,
/// never skip it.
pub fn garage_program() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let path = match std::env::var_os("PITR_GARAGE") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => default_cache_dir()
                .expect(
                    "neither PITR_GARAGE, XDG_CACHE_HOME nor HOME is set; run `cargo xtask test` \
                     or set PITR_GARAGE to a garage program",
                )
                .join("bin/garage"),
        };
        assert!(
            path.is_file(),
            "garage not found at {}; run `cargo xtask test` (it builds Garage {GARAGE_VERSION} \
             once into that cache) or set PITR_GARAGE to a garage {GARAGE_VERSION} program",
            path.display()
        );
        path
    })
}

/// `$XDG_CACHE_HOME/pitr/garage-<version>`, else `$HOME/.cache/pitr/garage-<version>`: the root
/// `cargo install --root` puts Garage under (the same rule as in xtask's `garage.rs`); `None`
/// when neither variable is set (never a shared directory such as `/tmp/pitr`, which another
/// user may own).
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("pitr").join(format!("garage-{GARAGE_VERSION}")))
}

/// One node: its files, ports and process.
struct Node {
    config: PathBuf,
    log: PathBuf,
    rpc_port: u16,
    s3_port: u16,
    /// `<hex node id>@127.0.0.1:<rpc port>`, known once the node has started the first time.
    address: String,
    child: Option<Child>,
}

/// A running (or partly or wholly stopped) 3-node Garage cluster with one bucket and one key.
pub struct GarageCluster {
    root: tempfile::TempDir,
    nodes: Vec<Node>,
    bucket: String,
    key_id: String,
    secret: String,
}

impl GarageCluster {
    /// Starts three nodes, joins them into one cluster with replication factor 3, and creates
    /// the bucket `pitr-test` and a key allowed to read, write and own it. Waits until the
    /// cluster reports itself healthy.
    pub fn start() -> GarageCluster {
        let root = tempfile::Builder::new()
            .prefix("pitr-garage-")
            .tempdir()
            .expect("creating the Garage temp dir");
        let rpc_secret = hex(&random_bytes(32));
        let nodes = (0..NODES)
            .map(|i| Node::configure(root.path(), i, &rpc_secret))
            .collect();
        let mut cluster = GarageCluster {
            root,
            nodes,
            bucket: "pitr-test".to_owned(),
            key_id: String::new(),
            secret: String::new(),
        };
        for i in 0..NODES {
            cluster.spawn(i);
        }
        for i in 0..NODES {
            cluster.wait_listening(i);
            let out = cluster.garage(i, &["node", "id", "-q"]);
            cluster.nodes[i].address = out.trim().to_owned();
        }
        for i in 1..NODES {
            let peer = cluster.nodes[i].address.clone();
            cluster.garage(0, &["node", "connect", &peer]);
        }
        for (i, node) in cluster.nodes.iter().enumerate() {
            let id = node
                .address
                .split('@')
                .next()
                .unwrap_or_default()
                .to_owned();
            let zone = format!("dc{}", i + 1);
            cluster.garage(0, &["layout", "assign", "-z", &zone, "-c", "1G", &id]);
        }
        cluster.garage(0, &["layout", "apply", "--version", "1"]);
        cluster.wait_healthy();

        cluster.garage(0, &["key", "create", "pitr-test-key"]);
        let env = cluster.garage(0, &["key", "export-env", "pitr-test-key"]);
        cluster.key_id = export_value(&env, "AWS_ACCESS_KEY_ID");
        cluster.secret = export_value(&env, "AWS_SECRET_ACCESS_KEY");
        let bucket = cluster.bucket.clone();
        cluster.garage(0, &["bucket", "create", &bucket]);
        cluster.garage(
            0,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                &bucket,
                "--key",
                "pitr-test-key",
            ],
        );
        cluster
    }

    /// The S3 endpoint of node 0, `http://127.0.0.1:PORT`: what clients talk to. (Stop nodes 1
    /// and 2 to take replicas away while the endpoint stays up.)
    pub fn endpoint(&self) -> String {
        self.endpoint_of(0)
    }

    /// The S3 endpoint of node `i`.
    pub fn endpoint_of(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].s3_port)
    }

    /// The S3 port of node `i` (plain HTTP).
    pub fn s3_port(&self, i: usize) -> u16 {
        self.nodes[i].s3_port
    }

    /// The region to sign requests for.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The bucket the key may use.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The access key id (`GK...`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The secret access key.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The standard environment of an S3 client for this cluster: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` and `AWS_ENDPOINT_URL` (node 0).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
    }

    /// Writes, into `dir` (a directory the PostgreSQL user can read), a key file in AWS's
    /// shared-credentials format and a pitr `--config-file` naming this cluster's endpoint
    /// (node 0), region and that key file; returns the config file. This is how
    /// archive_command and restore_command reach the store: no secret on their command line,
    /// none in the server's environment.
    pub fn pitr_config(&self, dir: &Path) -> PathBuf {
        let key_file = dir.join("garage.key");
        let user = crate::pg_user();
        user.write_file(
            &key_file,
            format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                self.key_id, self.secret
            )
            .as_bytes(),
        );
        let config = dir.join("garage.conf");
        user.write_file(
            &config,
            format!(
                "# the test Garage cluster\n--s3-endpoint {}\n--s3-region {REGION}\n--s3-key-file {}\n",
                self.endpoint(),
                key_file.display()
            )
            .as_bytes(),
        );
        config
    }

    /// Kills node `i` (SIGKILL, as a crash) and waits until its S3 port refuses connections.
    pub fn stop_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            child.wait().expect("waiting for a garage node");
        }
        let s3_port = self.nodes[i].s3_port;
        let rpc_port = self.nodes[i].rpc_port;
        poll_until(READY_TIMEOUT, || {
            (!port::is_listening(s3_port) && !port::is_listening(rpc_port)).then_some(())
        })
        .unwrap_or_else(|| panic!("garage node {i} still listening after it was killed"));
    }

    /// Starts node `i` again (same ports, same data) and waits until the cluster is healthy.
    pub fn restart_node(&mut self, i: usize) {
        self.spawn(i);
        self.wait_listening(i);
        self.reconnect();
        self.wait_healthy();
    }

    /// Kills every node.
    pub fn stop_all(&mut self) {
        for i in 0..NODES {
            self.stop_node(i);
        }
    }

    /// Starts every stopped node and waits until the cluster is healthy.
    pub fn restart_all(&mut self) {
        for i in 0..NODES {
            if self.nodes[i].child.is_none() {
                self.spawn(i);
            }
        }
        for i in 0..NODES {
            self.wait_listening(i);
        }
        self.reconnect();
        self.wait_healthy();
    }

    /// Connects the first running node to every other running one again: a node restarted
    /// after all were killed does not find its peers by itself (the peer list it saved may
    /// predate the cluster), as an operator's `garage node connect` would fix.
    fn reconnect(&self) {
        let running: Vec<usize> = (0..NODES)
            .filter(|&i| self.nodes[i].child.is_some())
            .collect();
        let Some((&first, others)) = running.split_first() else {
            return;
        };
        for &j in others {
            let peer = self.nodes[j].address.clone();
            poll_until(READY_TIMEOUT, || {
                self.try_garage(first, &["node", "connect", &peer])
                    .status
                    .success()
                    .then_some(())
            })
            .unwrap_or_else(|| panic!("garage node {first} cannot connect to node {j} again"));
        }
    }

    /// Whether node `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// The log of node `i` (its stdout and stderr).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// Runs `garage -c <node i's config> ARGS` and returns its stdout; panics with its output
    /// (and the node's log tail) when it fails.
    pub fn garage(&self, i: usize, args: &[&str]) -> String {
        let out = self.try_garage(i, args);
        assert!(
            out.status.success(),
            "garage {} on node {i} failed ({}):\n--- stdout\n{}--- stderr\n{}--- node log (tail)\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(i), 30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `garage -c <node i's config> ARGS` and returns what happened.
    pub fn try_garage(&self, i: usize, args: &[&str]) -> Output {
        Command::new(garage_program())
            .arg("-c")
            .arg(&self.nodes[i].config)
            .args(args)
            .env("RUST_LOG", "garage=warn")
            .output_within(crate::procs::EXTERNAL_TIMEOUT)
            .unwrap_or_else(|e| panic!("running {}: {e}", garage_program().display()))
    }

    /// The temp dir holding every node's files.
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// The processes of the nodes that run.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|n| n.child.as_ref().map(Child::id))
            .collect()
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "garage node {i} already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("opening a garage node log");
        let err = log.try_clone().expect("cloning a log file handle");
        let child = Command::new(garage_program())
            .arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=info,netapp=info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", garage_program().display()));
        node.child = Some(child);
    }

    /// Waits until node `i` accepts connections on its RPC and S3 ports; panics with its log if
    /// it exits or does not get there in time.
    fn wait_listening(&mut self, i: usize) {
        let (rpc_port, s3_port) = (self.nodes[i].rpc_port, self.nodes[i].s3_port);
        let ready = poll_until(READY_TIMEOUT, || {
            if let Some(status) = self.nodes[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
            {
                return Some(Err(status));
            }
            (port::is_listening(rpc_port) && port::is_listening(s3_port)).then_some(Ok(()))
        });
        match ready {
            Some(Ok(())) => {}
            Some(Err(status)) => {
                self.nodes[i].child = None;
                panic!(
                    "garage node {i} exited with {status}\n--- log\n{}",
                    self.log(i)
                );
            }
            None => panic!(
                "garage node {i} not listening on ports {rpc_port}/{s3_port} after \
                 {READY_TIMEOUT:?}\n--- log\n{}",
                self.log(i)
            ),
        }
    }

    /// Waits until `garage health`, asked through the first running node, says HEALTHY: every
    /// node connected and every partition fully replicated.
    fn wait_healthy(&self) {
        let asked = (0..NODES)
            .find(|&i| self.nodes[i].child.is_some())
            .expect("no garage node runs");
        let mut last = String::new();
        let healthy = poll_until(READY_TIMEOUT, || {
            let out = self.try_garage(asked, &["health"]);
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let status = last
                .lines()
                .find(|line| line.starts_with("Cluster health:"))
                .map(|line| {
                    line.split_whitespace()
                        .last()
                        .unwrap_or_default()
                        .to_owned()
                });
            (out.status.success() && status.as_deref() == Some("HEALTHY")).then_some(())
        });
        if healthy.is_none() {
            panic!(
                "garage cluster not healthy after {READY_TIMEOUT:?}; last `garage health`:\n\
                 {last}--- node {asked} log (tail)\n{}",
                tail(&self.log(asked), 30)
            );
        }
    }
}

impl Node {
    /// Picks ports and writes `node<i>/garage.toml`.
    fn configure(root: &Path, i: usize, rpc_secret: &str) -> Node {
        let dir = root.join(format!("node{i}"));
        for sub in ["meta", "data"] {
            std::fs::create_dir_all(dir.join(sub)).expect("creating a garage node dir");
        }
        let (rpc_port, s3_port) = (port::free_port(), port::free_port());
        // No fsync (Garage's default for data): the tests kill processes, not machines, and a
        // killed process loses nothing the kernel already has.
        let text = format!(
            "metadata_dir = \"{meta}\"\n\
             data_dir = \"{data}\"\n\
             db_engine = \"lmdb\"\n\
             lmdb_map_size = \"1G\"\n\
             replication_factor = {NODES}\n\
             consistency_mode = \"consistent\"\n\
             rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
             rpc_secret = \"{rpc_secret}\"\n\
             \n\
             [s3_api]\n\
             s3_region = \"{REGION}\"\n\
             api_bind_addr = \"127.0.0.1:{s3_port}\"\n",
            meta = dir.join("meta").display(),
            data = dir.join("data").display(),
        );
        let config = dir.join("garage.toml");
        std::fs::write(&config, text).expect("writing garage.toml");
        Node {
            config,
            log: dir.join("garage.log"),
            rpc_port,
            s3_port,
            address: String::new(),
            child: None,
        }
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The value of `NAME=value` (or `NAME='value'`) in `garage key export-env` output.
fn export_value(text: &str, name: &str) -> String {
    text.lines()
        .filter_map(|line| line.trim().trim_start_matches("export ").split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().trim_matches('\'').trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no {name} in `garage key export-env` output:\n{text}"))
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_value_reads_plain_and_quoted_values() {
        let text =
            "AWS_ACCESS_KEY_ID=GK123\nAWS_SECRET_ACCESS_KEY=abc\nAWS_DEFAULT_REGION='garage'\n";
        assert_eq!(export_value(text, "AWS_ACCESS_KEY_ID"), "GK123");
        assert_eq!(export_value(text, "AWS_SECRET_ACCESS_KEY"), "abc");
        assert_eq!(export_value(text, "AWS_DEFAULT_REGION"), "garage");
    }
}

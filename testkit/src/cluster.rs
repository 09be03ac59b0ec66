//! A three-node JetStream cluster of the test's own: real nats-server
//! processes on free loopback ports, each with its own store, configured by
//! the project's `nats/cluster/node.conf`. Nodes can be SIGKILLed and
//! restarted (same name, ports and store); every process is killed when the
//! cluster is dropped. The shared nats-server is never touched.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};

use crate::free_port;

/// The nats-server executable: `NATS_SERVER_BIN` (scripts/test.sh exports
/// the one the scripts installed), else `nats-server` on `PATH`.
pub fn nats_server_bin() -> PathBuf {
    std::env::var_os("NATS_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

struct Node {
    name: String,
    client_port: u16,
    monitor_port: u16,
    route_port: u16,
    store: PathBuf,
    child: Option<Child>,
}

pub struct NatsCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
    http: reqwest::Client,
}

impl NatsCluster {
    /// Starts `n` nodes and waits until every one reports healthy (JetStream
    /// meta group formed).
    pub async fn start(n: usize) -> NatsCluster {
        assert!(n == 3, "nats/cluster/node.conf names three routes");
        let dir = crate::workspace_root()
            .join("target/testkit-nats")
            .join(crate::unique_name());
        let nodes = (1..=n)
            .map(|k| Node {
                name: format!("n{k}"),
                client_port: free_port(),
                monitor_port: free_port(),
                route_port: free_port(),
                store: dir.join(format!("n{k}")),
                child: None,
            })
            .collect();
        let mut cluster = NatsCluster {
            nodes,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .expect("a reqwest client builds"),
        };
        for k in 0..n {
            cluster.spawn(k);
        }
        for k in 0..n {
            cluster.wait_healthy(k, Duration::from_secs(60)).await;
        }
        cluster
    }

    /// Every node's client URL, comma-separated (what `NATS_URL` takes).
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Server name of node `k` (0-based), e.g. `n1`.
    pub fn name(&self, k: usize) -> &str {
        &self.nodes[k].name
    }

    /// Index of the node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    fn spawn(&mut self, k: usize) {
        let routes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats-route://127.0.0.1:{}", n.route_port))
            .collect();
        let node = &self.nodes[k];
        std::fs::create_dir_all(&node.store).expect("node store directory");
        let log_path = self.dir.join(format!("{}.log", node.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("node log file");
        let conf = crate::workspace_root().join("nats/cluster/node.conf");
        let mut cmd = Command::new(nats_server_bin());
        cmd.arg("-c")
            .arg(&conf)
            // nats/auth.conf's users, with the installation's passwords.
            .envs(crate::secrets::nats_server_env())
            .env("NATS_SERVER_NAME", &node.name)
            .env("NATS_LISTEN", format!("127.0.0.1:{}", node.client_port))
            .env("NATS_HTTP", format!("127.0.0.1:{}", node.monitor_port))
            .env("NATS_STORE_DIR", &node.store)
            .env(
                "NATS_CLUSTER_LISTEN",
                format!("127.0.0.1:{}", node.route_port),
            )
            .env("NATS_ROUTE_1", &routes[0])
            .env("NATS_ROUTE_2", &routes[1])
            .env("NATS_ROUTE_3", &routes[2])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} (set NATS_SERVER_BIN; scripts/test.sh does): {e}",
                nats_server_bin().display()
            )
        });
        self.nodes[k].child = Some(child);
    }

    /// Waits until node `k` answers `GET /healthz` with 200: it runs, and its
    /// JetStream assets (meta group, streams, consumers) are current.
    pub async fn wait_healthy(&mut self, k: usize, timeout: Duration) {
        let url = format!("http://127.0.0.1:{}/healthz", self.nodes[k].monitor_port);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(child) = self.nodes[k].child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "nats-server {} exited with {status}; log in {}",
                        self.nodes[k].name,
                        self.dir.display()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server {} not healthy within {timeout:?}; log in {}",
                self.nodes[k].name,
                self.dir.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILLs node `k` (no graceful shutdown, no lame-duck mode).
    pub async fn kill(&mut self, k: usize) {
        if let Some(mut child) = self.nodes[k].child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts node `k` again with the same name, ports and store, and waits
    /// until it is healthy (caught up with the others).
    pub async fn restart(&mut self, k: usize, timeout: Duration) {
        assert!(self.nodes[k].child.is_none(), "node {k} still runs");
        self.spawn(k);
        self.wait_healthy(k, timeout).await;
    }

    /// The JetStream meta leader (server name), asked of the first live node
    /// that answers `/jsz`.
    pub async fn meta_leader(&self) -> Option<String> {
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let url = format!("http://127.0.0.1:{}/jsz", n.monitor_port);
            let Ok(r) = self.http.get(&url).send().await else {
                continue;
            };
            let Ok(body) = r.json::<serde_json::Value>().await else {
                continue;
            };
            return body["meta_cluster"]["leader"].as_str().map(str::to_owned);
        }
        None
    }

    /// The server leading stream `name` (`STREAM.INFO`, cluster leader).
    pub async fn stream_leader(&self, js: &async_nats::jetstream::Context, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = js.get_stream(name).await {
                if let Ok(info) = s.info().await {
                    if let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone()) {
                        return leader;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "stream {name} has no leader within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        // kill_on_drop SIGKILLs the processes; the stores go with them.
        for n in &mut self.nodes {
            if let Some(child) = n.child.as_mut() {
                let _ = child.start_kill();
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

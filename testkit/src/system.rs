//! The whole system, started from the real binaries, or run in-process
//! ([`SystemBuilder::in_process`]) for tests that never kill one.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};

use crate::{db::TestDb, http::Client, in_process, proxy::Proxy};

/// One of the four binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binary {
    Api,
    Order,
    Stock,
    Payment,
}

impl Binary {
    pub const ALL: [Binary; 4] = [Binary::Api, Binary::Order, Binary::Stock, Binary::Payment];

    pub fn executable(self) -> &'static str {
        match self {
            Binary::Api => "api",
            Binary::Order => "order-svc",
            Binary::Stock => "stock-svc",
            Binary::Payment => "payment-svc",
        }
    }

    /// Its NATS user (`nats/auth.conf`), also its database's suffix.
    pub fn nats_user(self) -> &'static str {
        self.db_suffix()
    }

    fn db_suffix(self) -> &'static str {
        match self {
            Binary::Api => "api",
            Binary::Order => "order",
            Binary::Stock => "stock",
            Binary::Payment => "payment",
        }
    }
}

/// Where the binaries are: `CHECKOUT_BIN_DIR`, else `target/debug`.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("CHECKOUT_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/debug"))
}

struct Proc {
    binary: Binary,
    replica: usize,
    /// Where it serves HTTP: unknown until its first start reported the
    /// port it took; a restart binds the same one again.
    addr: Option<String>,
    /// Where it serves the operations endpoints when `OPS_LISTEN_ADDR` is
    /// set (learnt from its address file at every start).
    ops_addr: Option<String>,
    child: Option<Child>,
    /// The service when it runs in-process.
    task: Option<tokio::task::JoinHandle<Result<(), in_process::StartError>>>,
}

pub struct SystemBuilder {
    replicas: usize,
    env: Vec<(String, String)>,
    servers: Option<(String, String)>,
    proxied: Vec<(Binary, Dep)>,
    in_process: bool,
}

/// A dependency a binary can be cut off from (see [`crate::proxy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dep {
    Postgres,
    Nats,
}

impl SystemBuilder {
    /// Runs `n` replicas of every binary.
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = n.max(1);
        self
    }

    /// Connects `binary` to `dep` through a [`Proxy`] the test can cut
    /// ([`System::proxy`]).
    pub fn proxied(mut self, binary: Binary, dep: Dep) -> Self {
        self.proxied.push((binary, dep));
        self
    }

    /// Runs the services as tasks of the test process (see
    /// [`crate::in_process`]) instead of starting the binaries: quicker, for
    /// tests that never kill, signal or restart one nor read its log or its
    /// own metrics ([`System::kill`] and the like panic).
    pub fn in_process(mut self) -> Self {
        self.in_process = true;
        self
    }

    /// Sets an environment variable for every binary.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Leaves `key` unset, also where [`System::builder`] sets it (see
    /// [`TEST_DEFAULTS`]): to test a deployment's default.
    pub fn unset(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    /// Uses this PostgreSQL (admin URL) and nats-server instead of
    /// `DATABASE_ADMIN_URL` / `NATS_URL`, e.g. a [`crate::LocalInfra`].
    pub fn servers(mut self, admin_url: &str, nats_url: &str) -> Self {
        self.servers = Some((admin_url.into(), nats_url.into()));
        self
    }

    pub async fn start(self) -> System {
        let name = crate::unique_name();
        let (admin, nats_url) = self
            .servers
            .unwrap_or_else(|| (crate::db::admin_url(), crate::nats_url()));
        // Created together: CREATE DATABASE copies a template, the slow
        // part of a start.
        let dbs: HashMap<Binary, TestDb> = futures::future::join_all(Binary::ALL.map(|b| {
            let (admin, db) = (&admin, format!("{name}_{}", b.db_suffix()));
            async move { (b, TestDb::create_on(admin, &db).await) }
        }))
        .await
        .into_iter()
        .collect();
        let log_dir = crate::workspace_root()
            .join("target/testkit-logs")
            .join(&name);
        std::fs::create_dir_all(&log_dir).expect("log directory");
        let mut proxies = HashMap::new();
        for (binary, dep) in self.proxied {
            let target = match dep {
                Dep::Postgres => crate::proxy::socket_of(&dbs[&binary].url),
                Dep::Nats => crate::proxy::socket_of(&nats_url),
            };
            proxies.insert((binary, dep), Proxy::start(target).await);
        }
        let mut system = System {
            runtime: self.in_process.then(in_process::runtime),
            name,
            dbs,
            proxies,
            procs: Vec::new(),
            env: self.env,
            nats_url,
            log_dir,
            client: Client::new(""),
        };
        for b in Binary::ALL {
            for replica in 0..self.replicas {
                system.procs.push(Proc {
                    binary: b,
                    replica,
                    addr: None,
                    ops_addr: None,
                    child: None,
                    task: None,
                });
            }
        }
        for i in 0..system.procs.len() {
            system.spawn(i);
        }
        for i in 0..system.procs.len() {
            system.wait_ready(i).await;
        }
        system.client = Client::new(system.api_url(0));
        system
    }
}

impl Proc {
    fn addr(&self) -> &str {
        self.addr
            .as_deref()
            .expect("the address is known once the system started")
    }
}

/// A running system; every process is killed when it is dropped.
pub struct System {
    /// Runs the services when they run in-process.
    runtime: Option<tokio::runtime::Runtime>,
    /// The unique name: NATS prefix and database name prefix.
    pub name: String,
    dbs: HashMap<Binary, TestDb>,
    proxies: HashMap<(Binary, Dep), Proxy>,
    procs: Vec<Proc>,
    env: Vec<(String, String)>,
    nats_url: String,
    log_dir: PathBuf,
    /// Client for the first `api` replica.
    pub client: Client,
}

/// What every test system sets unless the test says otherwise
/// ([`SystemBuilder::env`] overrides, [`SystemBuilder::unset`] removes): the
/// tests' webhook receivers listen on loopback, which a deployment refuses,
/// and a test run needs no webhook secret of its own.
pub const TEST_DEFAULTS: [(&str, &str); 2] = [
    ("WEBHOOK_ALLOW_PRIVATE", "true"),
    ("WEBHOOK_SECRET_DEV", "true"),
];

impl System {
    pub fn builder() -> SystemBuilder {
        SystemBuilder {
            replicas: 1,
            env: TEST_DEFAULTS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            servers: None,
            proxied: Vec::new(),
            in_process: false,
        }
    }

    /// One replica of each binary with default settings.
    pub async fn start() -> System {
        Self::builder().start().await
    }

    /// Base URL of `api` replica `n`.
    pub fn api_url(&self, n: usize) -> String {
        let p = self
            .procs
            .iter()
            .find(|p| p.binary == Binary::Api && p.replica == n)
            .expect("no such api replica");
        format!("http://{}", p.addr())
    }

    /// Base URLs of every replica of `binary` (its operations endpoints).
    pub fn urls(&self, binary: Binary) -> Vec<String> {
        self.procs
            .iter()
            .filter(|p| p.binary == binary)
            .map(|p| format!("http://{}", p.addr()))
            .collect()
    }

    /// Base URLs of every replica's separate operations listener (the
    /// system was started with `OPS_LISTEN_ADDR`, e.g. `127.0.0.1:0`).
    pub fn ops_urls(&self, binary: Binary) -> Vec<String> {
        self.procs
            .iter()
            .filter(|p| p.binary == binary)
            .map(|p| {
                let addr = p.ops_addr.as_deref().expect("started with OPS_LISTEN_ADDR");
                format!("http://{addr}")
            })
            .collect()
    }

    /// Whether the binaries serve their operations endpoints apart.
    fn separate_ops(&self) -> bool {
        self.env.iter().any(|(k, _)| k == "OPS_LISTEN_ADDR")
    }

    /// The database of `binary`, for checks behind the API's back.
    pub fn db(&self, binary: Binary) -> &TestDb {
        &self.dbs[&binary]
    }

    /// `DATABASE_URL` and `NATS_URL` of process `i` (through its proxies).
    fn dependency_urls(&self, i: usize) -> (String, String) {
        let p = &self.procs[i];
        let mut database_url = self.dbs[&p.binary].url.clone();
        if let Some(proxy) = self.proxies.get(&(p.binary, Dep::Postgres)) {
            database_url = crate::proxy::through(&database_url, proxy.addr);
        }
        let mut nats_url = self.nats_url.clone();
        if let Some(proxy) = self.proxies.get(&(p.binary, Dep::Nats)) {
            nats_url = crate::proxy::through(&nats_url, proxy.addr);
        }
        (database_url, nats_url)
    }

    /// `NATS_USER` and `NATS_PASSWORD` of process `i`: its binary's own
    /// user, whose permissions the test then exercises; unset where the
    /// installation has no NATS passwords (a server without authentication).
    fn nats_credentials(&self, i: usize) -> Vec<(String, String)> {
        match crate::secrets::nats_auth(self.procs[i].binary.nats_user()) {
            Some(auth) => vec![
                ("NATS_USER".into(), auth.user),
                ("NATS_PASSWORD".into(), auth.password),
            ],
            None => Vec::new(),
        }
    }

    /// Starts service `i` on the in-process runtime, with the settings its
    /// process would get.
    fn spawn_in_process(&mut self, i: usize) {
        let (database_url, nats_url) = self.dependency_urls(i);
        let (listener, addr) = in_process::bind();
        let ops_addr_file = self.ops_addr_file(i);
        let _ = std::fs::remove_file(&ops_addr_file);
        self.procs[i].ops_addr = None;
        let vars = runtime::config::Vars::process()
            .with([
                ("DATABASE_URL", database_url),
                ("NATS_URL", nats_url),
                ("NATS_PREFIX", self.name.clone()),
                ("LISTEN_ADDR", addr.clone()),
                ("OPS_LISTEN_ADDR_FILE", ops_addr_file.display().to_string()),
            ])
            .with(self.nats_credentials(i))
            .with(self.env.iter().cloned());
        let runtime = self.runtime.as_ref().expect("an in-process system");
        let task = in_process::spawn(runtime, self.procs[i].binary, vars, listener);
        self.procs[i].addr = Some(addr);
        self.procs[i].task = Some(task);
    }

    fn spawn(&mut self, i: usize) {
        if self.runtime.is_some() {
            return self.spawn_in_process(i);
        }
        let p = &self.procs[i];
        let exe = bin_dir().join(p.binary.executable());
        assert!(
            exe.exists(),
            "{} not found: build the binaries first (cargo build --workspace --bins; scripts/test.sh does)",
            exe.display()
        );
        let log_path = self.log_path(i);
        // Port 0 at the first start: the binary takes a free port and
        // reports it in the address file, so no port is chosen here and
        // raced for.
        let listen = p.addr.clone().unwrap_or_else(|| "127.0.0.1:0".into());
        let addr_file = self.addr_file(i);
        let _ = std::fs::remove_file(&addr_file);
        let ops_addr_file = self.ops_addr_file(i);
        let _ = std::fs::remove_file(&ops_addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let (database_url, nats_url) = self.dependency_urls(i);
        let credentials = self.nats_credentials(i);
        let mut cmd = Command::new(&exe);
        cmd.envs(credentials)
            .env("DATABASE_URL", database_url)
            .env("NATS_URL", nats_url)
            .env("NATS_PREFIX", &self.name)
            .env("LISTEN_ADDR", listen)
            .env("LISTEN_ADDR_FILE", &addr_file)
            // Read only when OPS_LISTEN_ADDR is set too.
            .env("OPS_LISTEN_ADDR_FILE", &ops_addr_file)
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        self.procs[i].child = Some(child);
        self.procs[i].ops_addr = None;
    }

    /// Where process `i` writes the operations address it bound.
    fn ops_addr_file(&self, i: usize) -> PathBuf {
        self.addr_file(i).with_extension("ops-addr")
    }

    /// Where process `i` writes the address it bound.
    fn addr_file(&self, i: usize) -> PathBuf {
        let p = &self.procs[i];
        self.log_dir
            .join(format!("{}-{}.addr", p.binary.executable(), p.replica))
    }

    async fn wait_ready(&mut self, i: usize) {
        // An in-process service's port is bound before it serves: a probe
        // waits in the backlog meanwhile, so it must not wait for ever.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut rebinds = 0;
        loop {
            if self.procs[i].addr.is_none() {
                self.procs[i].addr = std::fs::read_to_string(self.addr_file(i)).ok();
            }
            if self.separate_ops() && self.procs[i].ops_addr.is_none() {
                self.procs[i].ops_addr = std::fs::read_to_string(self.ops_addr_file(i)).ok();
            }
            let ready_at = match self.separate_ops() {
                true => &self.procs[i].ops_addr,
                false => &self.procs[i].addr,
            };
            let main_known = self.procs[i].addr.is_some();
            if let Some(addr) = ready_at.as_ref().filter(|_| main_known) {
                if let Ok(r) = http.get(format!("http://{addr}/ready")).send().await {
                    if r.status().is_success() {
                        return;
                    }
                }
            }
            let p = &mut self.procs[i];
            if let Some(task) = p.task.take_if(|t| t.is_finished()) {
                panic!(
                    "in-process {} stopped before it was ready: {:?}",
                    p.binary.executable(),
                    task.await
                );
            }
            let exited = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                // A restart binds its old port again; meanwhile the OS may
                // have lent it to some client socket for a moment.
                if self.procs[i].addr.is_some() && rebinds < 20 && self.port_was_busy(i) {
                    rebinds += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    self.spawn(i);
                    continue;
                }
                panic!(
                    "{} exited with {status} before it was ready; log: {}",
                    self.procs[i].binary.executable(),
                    self.log_dir.display()
                );
            }
            let p = &self.procs[i];
            assert!(
                Instant::now() < deadline,
                "{} not ready within 60 s; log: {}",
                p.binary.executable(),
                self.log_dir.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The proxy between `binary` and `dep` (see [`SystemBuilder::proxied`]).
    pub fn proxy(&self, binary: Binary, dep: Dep) -> &Proxy {
        self.proxies
            .get(&(binary, dep))
            .expect("that dependency is not proxied: use SystemBuilder::proxied")
    }

    /// Sends SIGTERM to every replica of `binary` and waits (at most 60 s)
    /// for each to exit; returns their exit statuses.
    pub async fn terminate(&mut self, binary: Binary) -> Vec<std::process::ExitStatus> {
        self.needs_processes();
        let mut statuses = Vec::new();
        for p in self.procs.iter_mut().filter(|p| p.binary == binary) {
            let Some(mut child) = p.child.take() else {
                continue;
            };
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
            let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
                .await
                .unwrap_or_else(|_| panic!("{} ignored SIGTERM", binary.executable()))
                .expect("exit status");
            statuses.push(status);
        }
        statuses
    }

    /// Everything `binary`'s replicas logged so far.
    fn log_path(&self, i: usize) -> PathBuf {
        let p = &self.procs[i];
        self.log_dir
            .join(format!("{}-{}.log", p.binary.executable(), p.replica))
    }

    /// Whether process `i` last exited because its port was taken.
    fn port_was_busy(&self, i: usize) -> bool {
        std::fs::read_to_string(self.log_path(i)).is_ok_and(|text| {
            text.rfind("starting binary")
                .is_some_and(|last| text[last..].contains("Address already in use"))
        })
    }

    pub fn logs(&self, binary: Binary) -> String {
        self.needs_processes();
        self.procs
            .iter()
            .filter(|p| p.binary == binary)
            .map(|p| {
                std::fs::read_to_string(self.log_dir.join(format!(
                    "{}-{}.log",
                    p.binary.executable(),
                    p.replica
                )))
                .unwrap_or_default()
            })
            .collect()
    }

    /// SIGKILLs every replica of `binary` (no graceful shutdown).
    pub async fn kill(&mut self, binary: Binary) {
        self.needs_processes();
        for p in self.procs.iter_mut().filter(|p| p.binary == binary) {
            if let Some(mut child) = p.child.take() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }

    /// Starts every killed replica of `binary` again, same ports and
    /// databases, and waits until it is ready.
    pub async fn restart(&mut self, binary: Binary) {
        self.needs_processes();
        let idx: Vec<usize> = (0..self.procs.len())
            .filter(|&i| self.procs[i].binary == binary && self.procs[i].child.is_none())
            .collect();
        for &i in &idx {
            self.spawn(i);
        }
        for &i in &idx {
            self.wait_ready(i).await;
        }
    }

    /// The binaries of which a replica ended on its own (crashed or exited)
    /// since the last call; [`System::restart`] starts those replicas again.
    pub fn exited(&mut self) -> Vec<Binary> {
        self.needs_processes();
        let mut ended = Vec::new();
        for p in &mut self.procs {
            let done = p
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_)) | Err(_)));
            if done {
                p.child = None;
                if !ended.contains(&p.binary) {
                    ended.push(p.binary);
                }
            }
        }
        ended
    }

    /// Waits until every running process answers `GET /ready` with 200
    /// (panics after 60 s per process).
    pub async fn wait_ready_all(&mut self) {
        for i in 0..self.procs.len() {
            if self.procs[i].child.is_some() {
                self.wait_ready(i).await;
            }
        }
    }

    /// `name=pid` of every running process, e.g. `api=123` (`api-1=…` for a second
    /// replica): what `bench soak --pid` takes.
    pub fn pids(&self) -> Vec<String> {
        self.needs_processes();
        self.procs
            .iter()
            .filter_map(|p| {
                let pid = p.child.as_ref()?.id()?;
                let name = match p.replica {
                    0 => p.binary.executable().to_string(),
                    k => format!("{}-{k}", p.binary.executable()),
                };
                Some(format!("{name}={pid}"))
            })
            .collect()
    }

    /// Panics for an in-process system: what was asked needs processes.
    fn needs_processes(&self) {
        assert!(
            self.runtime.is_none(),
            "this needs the binaries as processes: drop SystemBuilder::in_process"
        );
    }

    /// The directory with the binaries' logs (kept when a test fails).
    pub fn log_dir(&self) -> &std::path::Path {
        &self.log_dir
    }

    /// Stops everything and removes the test's databases and streams.
    pub async fn shutdown(mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Drops every service at once, as SIGKILL would.
            runtime.shutdown_background();
        } else {
            for b in Binary::ALL {
                self.kill(b).await;
            }
        }
        let admin = crate::secrets::nats_auth("admin");
        if let Ok(nats) = crate::secrets::try_nats_as(&self.nats_url, admin.as_ref()).await {
            crate::delete_streams(&async_nats::jetstream::new(nats), &self.name).await;
        }
        for (_, db) in self.dbs.drain() {
            db.drop_db().await;
        }
        let _ = std::fs::remove_dir_all(&self.log_dir);
    }
}

impl Drop for System {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which an async test must not do.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

//! A PostgreSQL and a nats-server of the test's own, started and restarted
//! with the project's start command (`scripts/infra.sh`) on their own ports
//! and state directory, so that a test may SIGKILL them without touching the
//! shared servers other tests use.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{free_port, workspace_root};

/// The servers of one test. Stop them with [`LocalInfra::shutdown`]; when
/// dropped without it (a failed test), they are SIGKILLed and their data
/// deleted, and the logs are kept.
pub struct LocalInfra {
    state: PathBuf,
    pg_port: u16,
    nats_port: u16,
    monitor_port: u16,
    admin_url: String,
    nats_url: String,
    /// PIDs a reaper thread waits for.
    watched: Arc<Mutex<HashSet<i32>>>,
    stopped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Postgres,
    Nats,
}

impl LocalInfra {
    /// Starts both servers in a fresh state directory under the system's
    /// temporary directory.
    pub async fn start(name: &str) -> LocalInfra {
        // The servers are daemons: their launcher exits, so their parent is
        // whoever reaps orphans. Where that is an init that never reaps (some
        // containers), a SIGKILLed server stays a zombie, and a zombie
        // postmaster's PID in postmaster.pid keeps PostgreSQL from starting
        // again. As a subreaper, this process inherits them and reaps them.
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes plain integers.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "prctl(PR_SET_CHILD_SUBREAPER) failed");
        let state = std::env::temp_dir().join(format!("checkout-infra-{name}"));
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(&state).expect("state directory");
        let mut infra = LocalInfra {
            state,
            pg_port: free_port(),
            nats_port: free_port(),
            monitor_port: free_port(),
            admin_url: String::new(),
            nats_url: String::new(),
            watched: Arc::default(),
            stopped: false,
        };
        infra.up().await;
        infra
    }

    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// Where `scripts/infra.sh` keeps data, logs (`log/`) and PID files.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// `scripts/infra.sh up`: starts whichever server is not running.
    pub async fn up(&mut self) {
        let out = self.script("up").await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let field = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::to_owned)
        };
        match (field("DATABASE_ADMIN_URL="), field("NATS_URL=")) {
            (Some(admin), Some(nats)) => {
                self.admin_url = admin;
                self.nats_url = nats;
            }
            _ => panic!(
                "scripts/infra.sh up printed no URLs: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
        for pid in [self.postmaster_pid(), self.nats_pid()]
            .into_iter()
            .flatten()
        {
            self.watch(pid);
        }
    }

    /// Runs a CHECKPOINT, so that crash recovery replays (and syncs) only what comes after
    /// it, not the creation of the databases.
    pub async fn checkpoint(&self) {
        let (client, conn) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.admin_url));
        let conn = tokio::spawn(conn);
        client
            .batch_execute("CHECKPOINT")
            .await
            .expect("CHECKPOINT");
        drop(client);
        let _ = conn.await;
    }

    /// SIGKILLs the server (PostgreSQL: the postmaster and every process of
    /// it) and waits until it is gone. Only processes this test started.
    pub async fn kill(&mut self, server: Server) {
        match server {
            Server::Postgres => {
                let Some(postmaster) = self.postmaster_pid() else {
                    return;
                };
                let mut victims = vec![postmaster];
                victims.extend(children_of(postmaster));
                for &pid in &victims {
                    self.kill_descendant(pid);
                }
                wait_gone(postmaster).await;
                // Its processes, and any it forked meanwhile, were handed to
                // this process: kill what still runs, reap them all.
                let me = std::process::id() as i32;
                let postgres_children = || {
                    children_of(me)
                        .into_iter()
                        .filter(|&p| stat(p).is_some_and(|s| s.comm == "postgres"))
                };
                for _ in 0..50 {
                    let alive: Vec<i32> = postgres_children()
                        .filter(|&p| stat(p).is_some_and(|s| !s.zombie))
                        .collect();
                    if alive.is_empty() {
                        break;
                    }
                    for pid in alive {
                        self.kill_descendant(pid);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                victims.extend(postgres_children());
                for pid in victims {
                    self.watch(pid);
                }
            }
            Server::Nats => {
                if let Some(pid) = self.nats_pid() {
                    self.kill_descendant(pid);
                    wait_gone(pid).await;
                }
            }
        }
    }

    /// Stops both servers and deletes the state directory.
    pub async fn shutdown(mut self) {
        self.script("wipe").await;
        self.stopped = true;
        let _ = std::fs::remove_dir_all(&self.state);
    }

    async fn script(&self, command: &str) -> std::process::Output {
        let script = workspace_root().join("scripts/infra.sh");
        let out = tokio::process::Command::new("bash")
            .arg(&script)
            .arg(command)
            .env("CHECKOUT_STATE_DIR", &self.state)
            .env("PG_PORT", self.pg_port.to_string())
            .env("NATS_PORT", self.nats_port.to_string())
            .env("NATS_MONITOR_PORT", self.monitor_port.to_string())
            .env("NATS_SERVER_NAME", "checkout-test")
            // The installation's credentials, which the services of the test's System use.
            .env("CHECKOUT_SECRETS_DIR", crate::secrets::secrets_dir())
            // Never the shared servers: these would make the script use them.
            .env_remove("DATABASE_ADMIN_URL")
            .env_remove("NATS_URL")
            .env_remove("INFRA_SKIP_PG")
            .env_remove("INFRA_SKIP_NATS")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "scripts/infra.sh {command} failed ({}):\n{}\nlogs: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.state.join("log").display()
        );
        out
    }

    fn postmaster_pid(&self) -> Option<i32> {
        read_pid(&self.state.join("pg/data/postmaster.pid"))
    }

    fn nats_pid(&self) -> Option<i32> {
        read_pid(&self.state.join("run/nats.pid"))
    }

    /// Reaps `pid` when it ends (it is a child of this subreaper).
    fn watch(&self, pid: i32) {
        let new = self.watched.lock().expect("watched PIDs").insert(pid);
        if new {
            let watched = self.watched.clone();
            std::thread::spawn(move || {
                // SAFETY: waitpid with a null status pointer is allowed.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
                // The PID may be reused by a later server.
                watched.lock().expect("watched PIDs").remove(&pid);
            });
        }
    }

    /// SIGKILLs `pid` if it is one of this test's servers: a process whose
    /// parent is this process (daemons are handed to the subreaper) or
    /// whose parent is such a process (a postmaster's backends).
    fn kill_descendant(&self, pid: i32) {
        let me = std::process::id() as i32;
        let parent = |p: i32| stat(p).map(|s| s.ppid);
        let ours = match parent(pid) {
            Some(p) if p == me => true,
            Some(p) => parent(p) == Some(me),
            None => false,
        };
        if ours {
            // SAFETY: kill takes plain integers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            if parent(pid) == Some(me) {
                self.watch(pid);
            }
        }
    }
}

impl Drop for LocalInfra {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        let mut victims: Vec<i32> = Vec::new();
        if let Some(pm) = self.postmaster_pid() {
            victims.push(pm);
            victims.extend(children_of(pm));
        }
        victims.extend(self.nats_pid());
        for pid in victims {
            self.kill_descendant(pid);
        }
        let _ = std::fs::remove_dir_all(self.state.join("pg"));
        let _ = std::fs::remove_dir_all(self.state.join("nats"));
        eprintln!(
            "the test's PostgreSQL and nats-server were killed; their logs: {}",
            self.state.join("log").display()
        );
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// What `/proc/<pid>/stat` says (None once the process is reaped).
struct Stat {
    comm: String,
    zombie: bool,
    ppid: i32,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …"; comm may contain spaces and parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let mut fields = text[close + 1..].split_whitespace();
    let state = fields.next()?;
    Some(Stat {
        comm: text[open + 1..close].to_owned(),
        zombie: state == "Z",
        ppid: fields.next()?.parse().ok()?,
    })
}

fn children_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|s| s.ppid == parent))
        .collect()
}

/// Until `pid` has ended (at most 10 s).
async fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while stat(pid).is_some_and(|s| !s.zombie) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

//! What the soak watches besides the answers: the resident memory of the system's processes
//! (`VmRSS` in `/proc/<pid>/status`) and the size of its log files. Linux only; elsewhere the
//! figures are reported as unavailable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The binaries `scripts/up.sh` starts; their PID files are `<name>.pid` and `<name>-<k>.pid`.
pub const BINARIES: [&str; 4] = ["api", "order-svc", "stock-svc", "payment-svc"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProcsError {
    #[error("--pid {0:?}: expected NAME=PID, e.g. api=1234")]
    BadPid(String),
}

/// One watched process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// e.g. "api", "api-2".
    pub name: String,
    source: Source,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Pid(u32),
    /// Re-read at every sample, so a restarted process is followed.
    PidFile {
        path: PathBuf,
        binary: String,
    },
}

impl Watched {
    /// The current PID (None when the PID file is gone or names a process that is not the
    /// binary, e.g. a stale file).
    pub fn pid(&self) -> Option<u32> {
        match &self.source {
            Source::Pid(p) => Some(*p),
            Source::PidFile { path, binary } => {
                let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
                (exe_name(pid).as_deref() == Some(binary.as_str())).then_some(pid)
            }
        }
    }
}

/// The processes to watch: `NAME=PID` pairs when given, else every PID file of the four
/// binaries in `run_dir`.
pub fn discover(pids: &[String], run_dir: &Path) -> Result<Vec<Watched>, ProcsError> {
    if !pids.is_empty() {
        return pids
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                let (name, pid) = s
                    .split_once('=')
                    .ok_or_else(|| ProcsError::BadPid(s.clone()))?;
                let pid = pid
                    .trim()
                    .parse()
                    .map_err(|_| ProcsError::BadPid(s.clone()))?;
                Ok(Watched {
                    name: name.trim().to_string(),
                    source: Source::Pid(pid),
                })
            })
            .collect();
    }
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir(run_dir) else {
        return Ok(found);
    };
    for entry in dir.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".pid") else {
            continue;
        };
        let binary = BINARIES.iter().find(|b| {
            name == **b
                || name
                    .strip_prefix(**b)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|k| !k.is_empty() && k.bytes().all(|c| c.is_ascii_digit()))
        });
        if let Some(binary) = binary {
            found.push(Watched {
                name: name.to_string(),
                source: Source::PidFile {
                    path: entry.path(),
                    binary: binary.to_string(),
                },
            });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn exe_name(pid: u32) -> Option<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    // A binary rebuilt while it runs shows as "<name> (deleted)".
    Some(name.trim_end_matches(" (deleted)").to_string())
}

/// Resident set size of `pid` in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Total size of the `*.log` files in `dir` (None when it cannot be read).
pub fn log_bytes(dir: &Path) -> Option<u64> {
    let entries = std::fs::read_dir(dir).ok()?;
    Some(
        entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum(),
    )
}

/// One reading of everything watched, `t_s` seconds after the start of the load.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    pub t_s: f64,
    /// name -> (pid, RSS bytes); absent when the process was not found.
    pub rss: BTreeMap<String, (u32, u64)>,
    pub log_bytes: Option<u64>,
}

pub fn read(watched: &[Watched], log_dir: &Path, t_s: f64) -> Reading {
    let mut rss = BTreeMap::new();
    for w in watched {
        if let Some(pid) = w.pid() {
            if let Some(bytes) = rss_bytes(pid) {
                rss.insert(w.name.clone(), (pid, bytes));
            }
        }
    }
    Reading {
        t_s,
        rss,
        log_bytes: log_bytes(log_dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_pids() {
        let w = discover(
            &["api=12".into(), " order-svc = 34 ".into()],
            Path::new("/none"),
        )
        .expect("parse");
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].name.as_str(), w[0].pid()), ("api", Some(12)));
        assert_eq!((w[1].name.as_str(), w[1].pid()), ("order-svc", Some(34)));
        assert!(discover(&["api".into()], Path::new("/none")).is_err());
        assert!(discover(&["api=x".into()], Path::new("/none")).is_err());
    }

    #[test]
    fn pid_files_of_the_four_binaries_and_their_replicas() {
        let dir = std::env::temp_dir().join(format!("bench-procs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let me = std::process::id();
        for f in [
            "api.pid",
            "api-2.pid",
            "stock-svc.pid",
            "nats.pid",
            "api-x.pid",
        ] {
            std::fs::write(dir.join(f), format!("{me}\n")).expect("write");
        }
        let w = discover(&[], &dir).expect("discover");
        let names: Vec<&str> = w.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["api", "api-2", "stock-svc"]);
        // This test process is not `api`: a PID file naming another program is stale.
        assert_eq!(w[0].pid(), None);
        assert!(discover(&[], &dir.join("missing"))
            .expect("empty")
            .is_empty());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn rss_and_log_sizes() {
        assert_eq!(
            parse_vm_rss("Name:\tapi\nVmRSS:\t   2048 kB\nVmSwap: 0 kB\n"),
            Some(2 * 1024 * 1024)
        );
        assert_eq!(parse_vm_rss("Name:\tapi\n"), None);
        if cfg!(target_os = "linux") {
            assert!(rss_bytes(std::process::id()).is_some_and(|b| b > 0));
        }
        let dir = std::env::temp_dir().join(format!("bench-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("api.log"), [b'x'; 100]).expect("write");
        std::fs::write(dir.join("stock-svc.log"), [b'x'; 20]).expect("write");
        std::fs::write(dir.join("notes.txt"), [b'x'; 1000]).expect("write");
        assert_eq!(log_bytes(&dir), Some(120));
        assert_eq!(log_bytes(&dir.join("missing")), None);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}

//! Keeps the Grafana dashboards (`grafana/dashboards/*.json`) honest.
//!
//! The real binaries run a small workload (successes, refusals with their
//! compensations, webhook deliveries, retries and a given-up delivery) while a
//! real Prometheus scrapes them; then every panel query of every dashboard is
//! evaluated through Prometheus' HTTP API and must parse and return data, and
//! every metric it names must be one a binary exports. A dashboard naming a
//! metric nobody exports, or a query Prometheus cannot parse, fails here.
//!
//! Needs the `prometheus` binary (Debian package `prometheus`, which
//! `scripts/test.sh` installs): `PROMETHEUS_BIN`, else `/usr/bin/prometheus`,
//! else the first on `PATH`; `promtool` is looked up beside it.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::TcpListener,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;
use testkit::{receiver::Receiver, workload, Binary, System};

/// What Grafana's built-in interval variables stand for here. The rate
/// window covers the whole workload, which runs within the last minute.
const RATE_INTERVAL: &str = "1m";
const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", RATE_INTERVAL),
    ("__interval", "5s"),
    ("__interval_ms", "5000"),
    ("__range", "5m"),
    ("__range_s", "300"),
    ("__range_ms", "300000"),
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .expect("testkit lives in the workspace")
}

// ------------------------------------------------------------------------
// The dashboards

/// One panel query.
#[derive(Debug, Clone)]
struct Query {
    /// `file / panel title / refId`, for messages.
    at: String,
    /// As written in the dashboard.
    expr: String,
}

/// One template variable (`templating.list`).
#[derive(Debug, Clone)]
struct Variable {
    name: String,
    /// The variable's query, e.g. `label_values(metric, label)`.
    query: String,
}

#[derive(Debug, Default)]
struct Dashboards {
    queries: Vec<Query>,
    variables: BTreeMap<String, Vec<Variable>>,
    /// Structural problems found while reading.
    problems: Vec<String>,
    files: usize,
}

/// The datasource uid the provisioning file gives Prometheus.
fn provisioned_uid() -> String {
    let path = repo_root().join("grafana/provisioning/datasources/prometheus.yml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .find_map(|l| l.trim().strip_prefix("uid:"))
        .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
        .unwrap_or_else(|| panic!("no `uid:` in {}", path.display()))
}

fn load_dashboards() -> Dashboards {
    let dir = repo_root().join("grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let uid = provisioned_uid();
    let mut out = Dashboards {
        files: files.len(),
        ..Dashboards::default()
    };
    let mut dashboard_uids = BTreeSet::new();
    for file in &files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(file).expect("a readable dashboard");
        let d: Value = match serde_json::from_str(&text) {
            Ok(d) => d,
            Err(e) => {
                out.problems.push(format!("{name}: not JSON: {e}"));
                continue;
            }
        };
        for key in ["title", "uid"] {
            if d[key].as_str().unwrap_or_default().is_empty() {
                out.problems.push(format!("{name}: no {key}"));
            }
        }
        if !dashboard_uids.insert(d["uid"].as_str().unwrap_or_default().to_owned()) {
            out.problems
                .push(format!("{name}: dashboard uid {} used twice", d["uid"]));
        }
        let mut vars = Vec::new();
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            let vname = v["name"].as_str().unwrap_or_default().to_owned();
            if v["type"] == "datasource" {
                out.problems.push(format!(
                    "{name}: variable {vname}: use the provisioned datasource uid {uid:?}, not a datasource variable"
                ));
            }
            let query = match &v["query"] {
                Value::String(s) => s.clone(),
                q => q["query"].as_str().unwrap_or_default().to_owned(),
            };
            vars.push(Variable { name: vname, query });
        }
        let names: BTreeSet<String> = vars.iter().map(|v| v.name.clone()).collect();
        let mut panels = Vec::new();
        collect_panels(&d["panels"], &mut panels);
        if panels.is_empty() {
            out.problems.push(format!("{name}: no panels"));
        }
        let mut ids = BTreeSet::new();
        for p in panels {
            let title = p["title"].as_str().unwrap_or("(untitled)");
            let at = format!("{name} / {title}");
            if !ids.insert(p["id"].to_string()) {
                out.problems
                    .push(format!("{at}: panel id {} used twice", p["id"]));
            }
            if p["type"] == "row" || p["type"] == "text" {
                continue;
            }
            check_datasource(&at, &p["datasource"], &uid, &mut out.problems);
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                out.problems.push(format!("{at}: no queries"));
            }
            for t in targets {
                let at = format!("{at} / {}", t["refId"].as_str().unwrap_or("?"));
                if !t["datasource"].is_null() {
                    check_datasource(&at, &t["datasource"], &uid, &mut out.problems);
                }
                let expr = t["expr"].as_str().unwrap_or_default().trim().to_owned();
                if expr.is_empty() {
                    out.problems.push(format!("{at}: no expr"));
                    continue;
                }
                if let Err(e) = substitute(&expr, &names) {
                    out.problems.push(format!("{at}: {e}\n    expr: {expr}"));
                }
                if metric_names(&expr).is_empty() {
                    out.problems
                        .push(format!("{at}: names no metric\n    expr: {expr}"));
                }
                out.queries.push(Query { at, expr });
            }
        }
        out.variables.insert(name, vars);
    }
    out
}

/// Every panel, rows' nested panels (collapsed rows) included.
fn collect_panels<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
    for p in panels.as_array().into_iter().flatten() {
        out.push(p);
        collect_panels(&p["panels"], out);
    }
}

fn check_datasource(at: &str, ds: &Value, uid: &str, problems: &mut Vec<String>) {
    let ok = ds["uid"] == uid && (ds["type"].is_null() || ds["type"] == "prometheus");
    if !ok {
        problems.push(format!(
            "{at}: datasource {ds} is not the provisioned Prometheus (uid {uid:?})"
        ));
    }
}

/// Replaces Grafana variables (`$name`, `${name}`, `${name:format}`) the way
/// Grafana would with every value selected: interval built-ins by a fixed
/// window, the dashboard's own (multi-value) variables by `.*`, which is only
/// right inside a regex matcher, so `="$var"` is refused.
fn substitute(expr: &str, variables: &BTreeSet<String>) -> Result<String, String> {
    for v in variables {
        for form in [format!("=\"${v}\""), format!("=\"${{{v}}}\"")] {
            if expr.contains(&form) {
                return Err(format!(
                    "variable ${v} is multi-value: match it with =~ (or !~), not = / !="
                ));
            }
        }
    }
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::with_capacity(expr.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let (name, end) = if chars.get(i + 1) == Some(&'{') {
            let close = chars[i..]
                .iter()
                .position(|&c| c == '}')
                .map(|p| i + p)
                .ok_or_else(|| "unclosed ${".to_owned())?;
            let inner: String = chars[i + 2..close].iter().collect();
            let name = inner.split(':').next().unwrap_or_default().to_owned();
            (name, close + 1)
        } else {
            let mut j = i + 1;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            (chars[i + 1..j].iter().collect::<String>(), j)
        };
        if name.is_empty() {
            // A literal `$` (a regex anchor).
            out.push('$');
            i += 1;
            continue;
        }
        if let Some((_, value)) = BUILTINS.iter().find(|(n, _)| *n == name) {
            out.push_str(value);
        } else if variables.contains(&name) {
            out.push_str(".*");
        } else {
            return Err(format!(
                "unknown variable ${name} (not built in, not defined by the dashboard)"
            ));
        }
        i = end;
    }
    Ok(out)
}

/// The metric names a PromQL expression selects: identifiers that are not
/// functions, keywords, label names (inside `{}` or a `by (...)` list) or
/// parts of strings, durations or numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Keywords, and aggregation operators (followed by `by (...)` or `(`).
    const KEYWORDS: &[&str] = &[
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "limitk",
        "limit_ratio",
    ];
    let c: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let next_non_space = |from: usize| c[from..].iter().copied().find(|x| !x.is_whitespace());
    while i < c.len() {
        let ch = c[i];
        if ch == '"' || ch == '\'' || ch == '`' {
            i = skip_string(&c, i);
        } else if ch == '{' {
            i = skip_group(&c, i, '{', '}');
        } else if ch == '[' {
            i = skip_group(&c, i, '[', ']');
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration: 0.99, 1e3, 5m.
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                i += 1;
            }
            let ident: String = c[start..i].iter().collect();
            let lower = ident.to_ascii_lowercase();
            let next = next_non_space(i);
            if LABEL_LISTS.contains(&lower.as_str()) {
                if next == Some('(') {
                    let open = i + c[i..].iter().position(|&x| x == '(').unwrap_or(0);
                    i = skip_group(&c, open, '(', ')');
                }
            } else if KEYWORDS.contains(&lower.as_str()) || next == Some('(') {
                // A keyword, or a function / aggregation call.
            } else {
                names.insert(ident);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Index just past the string literal starting at `i`.
fn skip_string(c: &[char], mut i: usize) -> usize {
    let quote = c[i];
    i += 1;
    while i < c.len() && c[i] != quote {
        if c[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Index just past the bracketed group opening at `i` (strings respected).
fn skip_group(c: &[char], mut i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '"' || ch == '\'' || ch == '`' {
            i = skip_string(c, i);
            continue;
        }
        if ch == open {
            depth += 1;
        } else if ch == close {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    i
}

/// `label_values(metric, label)` → (metric, label).
fn label_values(query: &str) -> Option<(String, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (metric, label) = inner.rsplit_once(',')?;
    Some((metric.trim().to_owned(), label.trim().to_owned()))
}

// ------------------------------------------------------------------------
// Prometheus

fn prometheus_bin() -> PathBuf {
    const HOW: &str = "the dashboard test needs Prometheus: install the Debian package \
                       `prometheus` (scripts/test.sh and `make test` install it), or set \
                       PROMETHEUS_BIN=/path/to/prometheus";
    if let Some(p) = std::env::var_os("PROMETHEUS_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "PROMETHEUS_BIN={} does not exist; {HOW}",
            p.display()
        );
        return p;
    }
    let debian = PathBuf::from("/usr/bin/prometheus");
    if debian.is_file() {
        return debian;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("prometheus"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("no prometheus binary found; {HOW}"))
}

/// `promtool`, next to the prometheus binary or on `PATH`.
fn promtool_bin() -> PathBuf {
    let beside = prometheus_bin().with_file_name("promtool");
    if beside.is_file() {
        return beside;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("promtool"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("no promtool found (it comes with the Debian package `prometheus`)")
        })
}

/// The scrape jobs of `grafana/prometheus.yml` that scrape a binary, by name.
fn compose_jobs() -> Vec<String> {
    let path = repo_root().join("grafana/prometheus.yml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- job_name:"))
        .map(|j| j.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
        .collect()
}

/// A real Prometheus on a free loopback port, killed when dropped.
struct Prometheus {
    url: String,
    dir: PathBuf,
    child: tokio::process::Child,
    http: reqwest::Client,
}

impl Prometheus {
    /// Scrapes every replica of every binary each second, one job per binary
    /// named as in `grafana/prometheus.yml`.
    async fn start(sys: &System) -> Prometheus {
        let bin = prometheus_bin();
        let dir = std::env::temp_dir().join(format!("checkout-prometheus-{}", sys.name));
        std::fs::create_dir_all(dir.join("data")).expect("a temporary directory");
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n",
        );
        for b in Binary::ALL {
            let targets: Vec<String> = sys
                .urls(b)
                .iter()
                .map(|u| format!("\"{}\"", u.trim_start_matches("http://")))
                .collect();
            config.push_str(&format!(
                "  - job_name: {}\n    static_configs:\n      - targets: [{}]\n",
                b.executable(),
                targets.join(", ")
            ));
        }
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("the Prometheus config is written");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("a log file");
        let child = tokio::process::Command::new(&bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1h")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            child,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a reqwest client builds"),
        };
        p.wait_ready().await;
        p
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(format!("{}/-/ready", self.url)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "prometheus exited with {status} before it was ready:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within 30 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .query(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        // Errors (bad_data for an unparsable query) come as JSON with 4xx.
        r.json().await.unwrap_or(Value::Null)
    }

    async fn query(&self, expr: &str) -> Value {
        self.get("/api/v1/query", &[("query", expr)]).await
    }

    /// The first value of an instant query, if any.
    async fn scalar(&self, expr: &str) -> Option<f64> {
        let v = self.query(expr).await;
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
    }

    /// Until every target is up and has been scraped a few times.
    async fn wait_targets_up(&self, expected: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = self.get("/api/v1/targets", &[("state", "active")]).await;
            let targets = t["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let up = targets.iter().filter(|t| t["health"] == "up").count();
            if targets.len() == expected && up == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "scrape targets not all up within 30 s: {targets:#?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Until `expr` (an instant query giving one number) is at least `min`.
    async fn wait_for(&self, expr: &str, min: f64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let v = self.scalar(expr).await;
            if v.is_some_and(|v| v >= min) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never saw {expr} >= {min} (last: {v:?})"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Until Prometheus has scraped the final state of workload round
    /// `round` (`outcomes` checkouts in all so far).
    async fn wait_for_round(&self, round: usize, outcomes: usize) {
        let within = Duration::from_secs(60);
        let n = round as f64;
        self.wait_for("sum(checkout_outcomes_total)", outcomes as f64, within)
            .await;
        self.wait_for(
            r#"sum(webhook_attempts_total{outcome="delivered"})"#,
            2.0 * n,
            within,
        )
        .await;
        self.wait_for(
            r#"sum(webhook_attempts_total{outcome="failed"})"#,
            n,
            within,
        )
        .await;
        for step in ["reserve", "charge", "release", "refund"] {
            self.wait_for(
                &format!(r#"sum(saga_step_seconds_count{{step="{step}"}})"#),
                n,
                within,
            )
            .await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!(
                "Prometheus' config, data and log kept in {}",
                self.dir.display()
            );
        } else {
            // The process may take a moment to release the directory.
            std::thread::sleep(Duration::from_millis(200));
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ------------------------------------------------------------------------
// The workload

/// Something for every panel to show; returns the number of checkouts that
/// reach a final outcome.
async fn run_workload(sys: &System, delivered: &Receiver, refused: &Receiver) -> usize {
    let c = &sys.client;
    // One scarce item, eight buyers with enough credit: three succeed, five
    // are refused for stock after their charge went through (refunds).
    let w = workload::scarce(c, 8, 3, 8).await;
    let orders: Vec<String> = w.orders.iter().map(|(o, _)| o.clone()).collect();
    let (sync, asynchronous) = orders.split_at(4);
    let (a, b) = tokio::join!(
        workload::checkout_all(std::slice::from_ref(c), sync, workload::Mode::Sync),
        workload::checkout_all(std::slice::from_ref(c), asynchronous, workload::Mode::Async),
    );
    let sold = a.values().chain(b.values()).filter(|x| x.ok()).count();
    assert_eq!(sold, 3, "three units sold");

    // No credit: the reservation is released; the receiver takes it.
    assert_eq!(
        c.checkout_with_callback(&c.order_of_one(0, 2, 5).await, &delivered.url)
            .await
            .status,
        202
    );
    // Success, delivered.
    assert_eq!(
        c.checkout_with_callback(&c.order_of_one(10, 2, 5).await, &delivered.url)
            .await
            .status,
        202
    );
    // Success, but the receiver refuses every attempt: retried, then given up.
    assert_eq!(
        c.checkout_with_callback(&c.order_of_one(10, 2, 5).await, &refused.url)
            .await
            .status,
        202
    );

    // Lookups of unknown IDs: 404s from the API and the services.
    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_eq!(c.get(&format!("/stock/find/{unknown}")).await.status, 404);
    assert_eq!(
        c.get(&format!("/payment/find_user/{unknown}")).await.status,
        404
    );
    assert_eq!(c.post("/orders/checkout/no-such-order").await.status, 404);
    orders.len() + 3
}

// ------------------------------------------------------------------------
// The tests

#[test]
fn dashboards_are_well_formed() {
    let d = load_dashboards();
    assert!(
        d.files >= 4,
        "expected the overview, saga/messaging, webhooks and database dashboards in grafana/dashboards"
    );
    assert!(
        d.problems.is_empty(),
        "dashboard problems:\n{}",
        d.problems.join("\n")
    );
    for (file, vars) in &d.variables {
        for v in vars {
            assert!(
                label_values(&v.query).is_some(),
                "{file}: variable {} has a query this test cannot check: {:?} (use label_values(metric, label))",
                v.name,
                v.query
            );
        }
    }
    // The tokenizer itself.
    let names = metric_names(
        r#"(sum by (le, job) (rate(a_bucket{job=~"$job",x="y{z}"}[5m])) or vector(0)) / on (job) group_left max without (instance) (b_total offset 1m) * 0.99"#,
    );
    assert_eq!(
        names,
        BTreeSet::from(["a_bucket".to_owned(), "b_total".to_owned()])
    );
}

#[test]
fn scrape_config_is_valid_and_names_every_binary() {
    let path = repo_root().join("grafana/prometheus.yml");
    let out = std::process::Command::new(promtool_bin())
        .args(["check", "config", "--syntax-only"])
        .arg(&path)
        .output()
        .expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check config {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs = compose_jobs();
    for b in Binary::ALL {
        assert!(
            jobs.iter().any(|j| j == b.executable()),
            "grafana/prometheus.yml has no job named {} (the dashboards select jobs by binary name): {jobs:?}",
            b.executable()
        );
    }
}

#[tokio::test]
async fn every_panel_query_returns_data() {
    let started = Instant::now();
    let dashboards = load_dashboards();
    assert!(
        dashboards.problems.is_empty(),
        "dashboard problems:\n{}",
        dashboards.problems.join("\n")
    );
    assert!(!dashboards.queries.is_empty(), "no panel queries found");
    // Fail early (before starting anything) when Prometheus is missing.
    prometheus_bin();

    let sys = System::builder()
        .env("WEBHOOK_SCHEDULE", "0ms,100ms")
        .env("WEBHOOK_POLL_MS", "100")
        .env("WEBHOOK_TIMEOUT_MS", "2000")
        .start()
        .await;
    let prom = Prometheus::start(&sys).await;
    prom.wait_targets_up(Binary::ALL.len()).await;
    let delivered = Receiver::start(&[], 200).await;
    let refused = Receiver::start(&[], 503).await;
    // Two rounds: many series (labelled counters, lazily registered
    // histograms) only appear with their first observation, and a rate does
    // not see the increment that created its series. The second round, after
    // Prometheus scraped the first, gives every panel real rates.
    let mut outcomes = 0;
    for round in 1..=2 {
        outcomes += run_workload(&sys, &delivered, &refused).await;
        prom.wait_for_round(round, outcomes).await;
    }
    // A few more scrapes of the final state.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let exported: BTreeSet<String> = prom.get("/api/v1/label/__name__/values", &[]).await["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert!(
        exported.contains("build_info"),
        "Prometheus has no metrics from the binaries: {exported:?}"
    );

    let mut failures = Vec::new();
    let mut report = Vec::new();
    let no_vars = BTreeSet::new();
    for (file, vars) in &dashboards.variables {
        for v in vars {
            let Some((metric, label)) = label_values(&v.query) else {
                failures.push(format!(
                    "{file}: variable {}: cannot check {:?}",
                    v.name, v.query
                ));
                continue;
            };
            let expr = format!("count by ({label}) ({metric})");
            let r = prom.query(&expr).await;
            if r["data"]["result"].as_array().is_none_or(|a| a.is_empty()) {
                failures.push(format!(
                    "{file}: variable {} ({}) finds no values: {r}",
                    v.name, v.query
                ));
            }
        }
    }
    for q in &dashboards.queries {
        let file = q.at.split(" / ").next().unwrap_or_default();
        let vars: BTreeSet<String> = dashboards
            .variables
            .get(file)
            .map(|vs| vs.iter().map(|v| v.name.clone()).collect())
            .unwrap_or_else(|| no_vars.clone());
        let expr = match substitute(&q.expr, &vars) {
            Ok(e) => e,
            Err(e) => {
                failures.push(format!("{}: {e}\n    expr: {}", q.at, q.expr));
                continue;
            }
        };
        let missing: Vec<String> = metric_names(&expr)
            .into_iter()
            .filter(|m| !exported.contains(m))
            .collect();
        if !missing.is_empty() {
            failures.push(format!(
                "{}: names metrics no binary exports: {missing:?}\n    expr: {expr}",
                q.at
            ));
        }
        let r = prom.query(&expr).await;
        if r["status"] != "success" {
            failures.push(format!(
                "{}: Prometheus refused the query: {} {}\n    expr: {expr}",
                q.at, r["errorType"], r["error"]
            ));
            continue;
        }
        let result = &r["data"]["result"];
        let series = match r["data"]["resultType"].as_str() {
            Some("vector") | Some("matrix") => result.as_array().map_or(0, Vec::len),
            // A scalar or a string is one value.
            _ => usize::from(!result.is_null()),
        };
        // Instant vector samples are {metric, value: [time, "v"]}; a scalar
        // is [time, "v"].
        let values: Vec<f64> = match result.as_array() {
            Some(a) if a.first().is_some_and(Value::is_object) => a
                .iter()
                .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                .collect(),
            Some(a) => a
                .get(1)
                .and_then(|v| v.as_str()?.parse().ok())
                .into_iter()
                .collect(),
            None => Vec::new(),
        };
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if series == 0 {
            failures.push(format!("{}: no data\n    expr: {expr}", q.at));
        } else if finite.is_empty() {
            // histogram_quantile over buckets that never moved, 0/0, ...
            failures.push(format!(
                "{}: only NaN/Inf: {values:?}\n    expr: {expr}",
                q.at
            ));
        }
        let max = finite.iter().copied().fold(f64::NAN, f64::max);
        report.push(format!(
            "{series:>3} series, {:>3} finite, max {max:>10.4}  {}",
            finite.len(),
            q.at
        ));
    }
    println!("{}", report.join("\n"));
    println!(
        "{} panel queries over {} dashboards checked in {:.1} s",
        dashboards.queries.len(),
        dashboards.files,
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries fail against the real binaries:\n{}",
        failures.len(),
        dashboards.queries.len(),
        failures.join("\n")
    );
    drop(prom);
    sys.shutdown().await;
}

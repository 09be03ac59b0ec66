//! End-to-end: the live api is what its OpenAPI document says, checked by
//! schemathesis (PyPI; `scripts/test.sh` installs the pinned version and
//! exports `SCHEMATHESIS_BIN`), and the fuzzing leaves the system
//! consistent.
//!
//! Every phase (examples, coverage, fuzzing, stateful) and every operation.
//! Bounds: `SCHEMATHESIS_MAX_EXAMPLES` (default 25) cases per operation and
//! phase, `SCHEMATHESIS_MAX_TIME` (default 60) seconds for the whole run;
//! the `batch_init` endpoints are fuzzed with `n` of at most 100: a valid
//! init of the document's own limit, 10 000 000 rows, takes minutes by
//! design, past any request timeout (what bounds inits under hostile load,
//! one at a time and cancelled when the client leaves, is held by
//! `hostile/setup.rs` and `batch_init.rs`).
//! `SCHEMATHESIS_SEED` (default 1) makes a failure reproducible.

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::Value;
use testkit::{invariants, workload, System};

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance";
const FUZZ_MAX_N: u64 = 100;

fn schemathesis_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SCHEMATHESIS_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    // Where scripts/lib.sh installs the pinned version.
    let local = root.join(".local/tools/schemathesis/bin/schemathesis");
    assert!(
        local.exists(),
        "schemathesis not found: run scripts/test.sh (it installs the version pinned in \
         scripts/lib.sh), or set SCHEMATHESIS_BIN"
    );
    local
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The document as fuzzed: `batch_init` sizes capped, and no
/// `Idempotency-Key` (generated keys collide, so nearly every POST would be
/// a replay or a 422 and never reach its handler; testkit/tests/idempotency.rs
/// covers the header).
fn fuzz_copy(doc: &Value) -> Value {
    let mut doc = doc.clone();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            // get_mut: indexing a missing key mutably would insert it.
            let Some(params) = item
                .get_mut("post")
                .and_then(|op| op.get_mut("parameters"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            params.retain(|p| p["name"] != "Idempotency-Key");
            if !path.contains("/batch_init/") {
                continue;
            }
            for p in params.iter_mut() {
                if matches!(p["name"].as_str(), Some("n" | "n_items" | "n_users")) {
                    p["schema"]["maximum"] = FUZZ_MAX_N.into();
                }
            }
        }
    }
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_api_matches_its_openapi_document_under_fuzzing() {
    let bin = schemathesis_bin();
    // Callback URLs the fuzzer makes up are refused, not called.
    let sys = System::builder()
        .in_process()
        .env("WEBHOOK_ALLOW_HOSTS", "callback.invalid")
        .start()
        .await;
    let c = &sys.client;

    // The served document is the committed one.
    let served = c.get("/openapi.json").await;
    assert_eq!(served.status, 200);
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../api/openapi.json"))
            .expect("api/openapi.json"),
    )
    .expect("api/openapi.json is JSON");
    assert_eq!(
        served.body, committed,
        "GET /openapi.json differs from api/openapi.json: \
         UPDATE_OPENAPI=1 cargo test -p api --test openapi"
    );

    // Entities with the IDs "0".."9", so that generated IDs also hit real ones.
    for path in [
        "/stock/batch_init/10/1000/3",
        "/payment/batch_init/10/1000",
        "/orders/batch_init/10/10/10/3",
    ] {
        let r = c.post(path).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }

    let dir = std::env::temp_dir().join(format!("{}-schemathesis", sys.name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let schema = dir.join("openapi.json");
    std::fs::write(&schema, fuzz_copy(&committed).to_string()).expect("write the fuzz copy");
    let max_examples = env_or("SCHEMATHESIS_MAX_EXAMPLES", 25);
    let max_time = env_or("SCHEMATHESIS_MAX_TIME", 60);
    let seed = env_or("SCHEMATHESIS_SEED", 1);
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.arg("run")
        .arg(&schema)
        .args(["--url", c.base()])
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", &max_examples.to_string()])
        .args(["--max-time", &max_time.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--request-timeout", "30", "--workers", "2", "--no-color"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let started = std::time::Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(max_time + 120), cmd.output())
        .await
        .expect("schemathesis ran past its time budget")
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The summary goes to the test's output (`--no-capture` shows it).
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    println!("schemathesis took {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        out.status.success(),
        "schemathesis found problems (exit {}); seed {seed}, see its output above",
        out.status
    );

    // Nothing the fuzzer did left the system inconsistent ...
    invariants::settle(&sys, Duration::from_secs(60)).await;
    let sagas = invariants::check(&sys).await;
    println!("invariants hold over {sagas} checkout sagas");
    // ... nor unable to serve the standard consistency workload correctly.
    let w = workload::scarce(c, 40, 10, 8).await;
    let orders: Vec<String> = w.orders.iter().map(|(o, _)| o.clone()).collect();
    let answers =
        workload::checkout_all(std::slice::from_ref(c), &orders, workload::Mode::Sync).await;
    assert_eq!(workload::verify_scarce(c, &w, &answers, 10).await, 10);
    invariants::settle(&sys, Duration::from_secs(60)).await;
    invariants::check(&sys).await;

    let _ = std::fs::remove_dir_all(&dir);
    sys.shutdown().await;
}

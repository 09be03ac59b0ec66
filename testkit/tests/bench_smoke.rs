//! The benchmark harness against the real system: every subcommand runs
//! briefly, its JSON results have the expected shape, and the consistency
//! verdict passes (`scripts/bench-smoke.sh` does the checking).

use testkit::System;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bench_subcommand_runs_against_the_system() {
    let sys = System::builder()
        .env("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .start()
        .await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let bench = testkit::system::bin_dir().join("bench");
    assert!(bench.exists(), "{} not built", bench.display());
    let out = tempdir(&sys.name);
    let status = tokio::process::Command::new("bash")
        .arg(root.join("scripts/bench-smoke.sh"))
        .env("BENCH_BASE_URL", sys.api_url(0))
        .env("BENCH_BIN", &bench)
        .env("BENCH_OUT_DIR", &out)
        .env("BENCH_SMOKE_WEBHOOK", "1")
        .env("BENCH_SOAK_PIDS", sys.pids().join(","))
        .env("BENCH_SOAK_LOG_DIR", sys.log_dir())
        .env(
            "BENCH_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .status()
        .await
        .expect("bash runs");
    assert!(
        status.success(),
        "bench smoke failed; results in {}",
        out.display()
    );
    let consistency: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("consistency.json")).expect("consistency.json"),
    )
    .expect("JSON");
    let text = consistency.to_string();
    assert!(text.contains("PASS") || text.contains("pass"), "{text}");
    let _ = std::fs::remove_dir_all(&out);
    sys.shutdown().await;
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bench-smoke-{name}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

//! End-to-end: logs stay small at the default level, and a request's span
//! never shows up in another request's lines.

use futures::{stream, StreamExt};
use testkit::{
    workload::{self, Mode},
    Binary, System,
};

fn log_bytes(sys: &System) -> usize {
    Binary::ALL.iter().map(|b| sys.logs(*b).len()).sum()
}

/// At the default level (`RUST_LOG` unset), a checkout costs at most 20
/// bytes of log on average over all binaries: no line per request.
#[tokio::test]
async fn default_level_logs_no_line_per_checkout() {
    const BUYERS: usize = 400;
    let sys = System::builder().env("RUST_LOG", "").start().await;
    let c = sys.client.clone();
    let w = workload::scarce(&c, BUYERS, 200, 16).await;
    let before = log_bytes(&sys);
    let orders: Vec<String> = w.orders.iter().map(|(o, _)| o.clone()).collect();
    let answers = workload::checkout_all(std::slice::from_ref(&c), &orders, Mode::Sync).await;
    workload::verify_scarce(&c, &w, &answers, 200).await;
    let grown = log_bytes(&sys) - before;
    assert!(
        grown <= 20 * BUYERS,
        "{grown} bytes of log for {BUYERS} checkouts (at most 20 each); api log:\n{}",
        sys.logs(Binary::Api)
    );
    sys.shutdown().await;
}

/// With per-request lines on (`debug`), every line carries at most its own
/// request's span, and background work carries none.
#[tokio::test]
async fn request_spans_never_leak_into_other_lines() {
    let sys = System::builder().env("RUST_LOG", "debug").start().await;
    let c = sys.client.clone();
    let w = workload::scarce(&c, 100, 50, 16).await;
    let answered = stream::iter(w.orders.clone())
        .map(|(order, _)| {
            let c = c.clone();
            async move { c.post(&format!("/orders/checkout/{order}")).await.status }
        })
        .buffer_unordered(50)
        .filter(|s| std::future::ready(*s == 200 || *s == 409))
        .count()
        .await;
    assert_eq!(answered, 100);
    let log = sys.logs(Binary::Api);
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("checkout accepted")),
        "debug lines are there to check"
    );
    for line in &lines {
        assert!(
            line.matches("http{").count() <= 1,
            "a line with more than one request's span: {line}"
        );
        if line.contains("request final") {
            assert!(
                !line.contains("http{"),
                "background work filed under a request: {line}"
            );
        }
    }
    sys.shutdown().await;
}

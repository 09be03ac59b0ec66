//! `OPS_LISTEN_ADDR`: the operations endpoints on a listener of their own,
//! the main listener keeping only `/health`, with the real binaries.

use testkit::{Binary, System};

async fn status(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .status()
        .as_u16()
}

#[tokio::test]
async fn operations_move_to_their_own_listener() {
    let sys = System::builder()
        .env("OPS_LISTEN_ADDR", "127.0.0.1:0")
        .start()
        .await;
    let http = reqwest::Client::new();
    for binary in [Binary::Api, Binary::Stock, Binary::Order, Binary::Payment] {
        let main = &sys.urls(binary)[0];
        let ops = &sys.ops_urls(binary)[0];
        assert_ne!(main, ops);
        let name = binary.executable();
        for path in ["/metrics", "/ready"] {
            assert_eq!(
                status(&http, &format!("{main}{path}")).await,
                404,
                "{name} main {path}"
            );
            assert_eq!(
                status(&http, &format!("{ops}{path}")).await,
                200,
                "{name} ops {path}"
            );
        }
        assert_eq!(
            status(&http, &format!("{main}/health")).await,
            200,
            "{name} main /health"
        );
        assert_eq!(
            status(&http, &format!("{ops}/health")).await,
            200,
            "{name} ops /health"
        );
        let metrics = sys.client.text(&format!("{ops}/metrics")).await;
        assert!(metrics.contains("build_info"), "{name}: {metrics:.200}");
    }
    // The API itself stays on the main listener.
    let c = &sys.client;
    let order = c.order_of_one(10, 3, 5).await;
    let r = c.post(&format!("/orders/checkout/{order}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    let ops_api = &sys.ops_urls(Binary::Api)[0];
    assert_eq!(
        status(&http, &format!("{ops_api}/orders/find/{order}")).await,
        404,
        "the operations listener serves operations only"
    );
    sys.shutdown().await;
}

#[tokio::test]
async fn by_default_everything_shares_one_listener() {
    let sys = System::builder().in_process().start().await;
    let http = reqwest::Client::new();
    for binary in [Binary::Api, Binary::Stock] {
        let main = &sys.urls(binary)[0];
        for path in ["/metrics", "/ready", "/health"] {
            assert_eq!(status(&http, &format!("{main}{path}")).await, 200, "{path}");
        }
    }
    sys.shutdown().await;
}

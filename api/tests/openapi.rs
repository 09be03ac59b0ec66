//! The committed `api/openapi.json` is what `GET /openapi.json` serves
//! (the testkit's schemathesis test checks the live answer against it).
//!
//! Regenerate after changing an annotation:
//!     UPDATE_OPENAPI=1 cargo test -p api --test openapi

use std::path::PathBuf;

use serde_json::Value;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

#[test]
fn committed_copy_is_current() {
    let generated = api::openapi::json();
    let path = committed_path();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, generated).expect("write api/openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let first_difference = committed
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}:\n  committed: {a}\n  generated: {b}", i + 1))
            .unwrap_or_else(|| "one is a prefix of the other".into());
        panic!(
            "api/openapi.json is out of date ({first_difference})\n\
             regenerate it: UPDATE_OPENAPI=1 cargo test -p api --test openapi"
        );
    }
}

fn doc() -> Value {
    serde_json::from_str(api::openapi::json()).expect("the document is JSON")
}

#[test]
fn is_openapi_3_1_with_every_path() {
    let doc = doc();
    assert!(doc["openapi"]
        .as_str()
        .unwrap_or_default()
        .starts_with("3.1"));
    let expected = [
        ("post", "/stock/item/create/{price}"),
        ("get", "/stock/find/{item_id}"),
        ("post", "/stock/add/{item_id}/{amount}"),
        ("post", "/stock/subtract/{item_id}/{amount}"),
        (
            "post",
            "/stock/batch_init/{n}/{starting_stock}/{item_price}",
        ),
        ("post", "/payment/create_user"),
        ("get", "/payment/find_user/{user_id}"),
        ("post", "/payment/add_funds/{user_id}/{amount}"),
        ("post", "/payment/pay/{user_id}/{amount}"),
        ("post", "/payment/batch_init/{n}/{starting_money}"),
        ("post", "/orders/create/{user_id}"),
        ("get", "/orders/find/{order_id}"),
        ("post", "/orders/addItem/{order_id}/{item_id}/{quantity}"),
        ("post", "/orders/checkout/{order_id}"),
        (
            "post",
            "/orders/batch_init/{n}/{n_items}/{n_users}/{item_price}",
        ),
        ("get", "/requests/{request_id}"),
        ("get", "/health"),
        ("get", "/ready"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    ];
    let paths = doc["paths"].as_object().expect("paths");
    assert_eq!(paths.len(), expected.len(), "{:?}", paths.keys());
    for (method, path) in expected {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
}

#[test]
fn every_error_is_a_problem_document_and_every_503_has_retry_after() {
    let doc = doc();
    let resolve = |r: &Value| -> Value {
        match r["$ref"].as_str() {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap_or_default();
                doc["components"]["responses"][name].clone()
            }
            None => r.clone(),
        }
    };
    let mut errors = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let responses = op["responses"].as_object().expect("responses");
            assert!(responses.contains_key("500"), "{method} {path}: no 500");
            for (status, r) in responses {
                let code: u16 = status.parse().expect("numeric status");
                if code < 400 {
                    continue;
                }
                errors += 1;
                let r = resolve(r);
                let schema = &r["content"]["application/problem+json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
                if code == 503 {
                    assert!(
                        r["headers"]["Retry-After"].is_object(),
                        "{method} {path}: 503 without Retry-After"
                    );
                }
            }
        }
    }
    assert!(errors > 50, "only {errors} error responses");
}

#[test]
fn checkout_documents_the_async_extension() {
    let doc = doc();
    let op = &doc["paths"]["/orders/checkout/{order_id}"]["post"];
    let names: Vec<(&str, &str)> = op["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or(""),
                p["in"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for p in [
        ("order_id", "path"),
        ("mode", "query"),
        ("callback_url", "query"),
        ("Prefer", "header"),
        ("Idempotency-Key", "header"),
    ] {
        assert!(names.contains(&p), "{p:?} not in {names:?}");
    }
    let body = &op["requestBody"]["content"]["application/json"]["schema"];
    assert!(body.to_string().contains("CheckoutBody"), "{body}");
    let accepted = &op["responses"]["202"];
    for h in ["Location", "Retry-After", "Preference-Applied", "Vary"] {
        assert!(accepted["headers"][h].is_object(), "202 lacks {h}");
    }
    let wait = &doc["paths"]["/requests/{request_id}"]["get"]["parameters"];
    assert!(wait.to_string().contains("\"wait\""), "{wait}");
}

#[test]
fn batch_init_limits_are_the_enforced_ones() {
    let doc = doc();
    let mut seen = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.contains("/batch_init/") {
            continue;
        }
        for p in item["post"]["parameters"].as_array().expect("parameters") {
            if p["name"] == "n" {
                seen += 1;
                assert_eq!(
                    p["schema"]["maximum"].as_i64(),
                    Some(contracts::endpoint::MAX_BATCH),
                    "{path}: n's maximum"
                );
            }
        }
    }
    assert_eq!(seen, 3);
}

/// The document is valid OpenAPI (client generators refuse one that is not,
/// e.g. with two operations sharing an `operationId`), by
/// openapi-spec-validator (PyPI; `scripts/test.sh` installs the version
/// pinned in `scripts/lib.sh` and exports `OPENAPI_SPEC_VALIDATOR_BIN`).
#[test]
fn is_valid_by_openapi_spec_validator() {
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../.local/tools/openapi-spec-validator/bin/openapi-spec-validator");
    let bin = match std::env::var_os("OPENAPI_SPEC_VALIDATOR_BIN") {
        Some(bin) => PathBuf::from(bin),
        None if local.exists() => local,
        // In CI the validator must run; elsewhere `cargo test -p api` works
        // without Python, and `make test` installs it.
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("OPENAPI_SPEC_VALIDATOR_BIN is not set: run scripts/test.sh")
        }
        None => {
            eprintln!(
                "openapi-spec-validator not installed: skipped (scripts/test.sh installs it)"
            );
            return;
        }
    };
    let out = std::process::Command::new(&bin)
        .args(["--validation-errors", "all"])
        .arg(committed_path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "api/openapi.json is not a valid OpenAPI document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn operation_ids_are_unique() {
    let doc = doc();
    let mut seen = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            assert!(!id.is_empty(), "{method} {path}: no operationId");
            assert!(seen.insert(id.clone()), "{method} {path}: {id} used twice");
        }
    }
}

//! `docs/openapi.yaml` and `docs/api.md` name exactly the server's API methods, and every
//! method answers. (The answers themselves are checked against the OpenAPI file by
//! schemathesis in `scripts/test.sh`.)

mod support;

use axum::http::StatusCode;
use plexus_server::api::METHODS;
use serde_json::json;
use std::collections::BTreeSet;
use support::*;

fn doc(name: &str) -> String {
    let path = format!("{}/../../docs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_openapi_file_lists_every_method_and_no_other() {
    let yaml = doc("openapi.yaml");
    let documented: BTreeSet<&str> = yaml
        .lines()
        .filter_map(|l| l.strip_prefix("  /api/")?.strip_suffix(':'))
        .collect();
    let served: BTreeSet<&str> = METHODS.iter().copied().collect();
    assert_eq!(documented, served);
    for method in METHODS {
        assert!(
            yaml.contains(&format!("operationId: {method}\n")),
            "{method} has no operationId"
        );
    }
}

#[test]
fn the_api_document_describes_every_method() {
    let md = doc("api.md");
    for method in METHODS {
        assert!(
            md.contains(&format!("\n### `{method}`\n")),
            "docs/api.md has no section for `{method}`"
        );
    }
    let sections = md.lines().filter(|l| l.starts_with("### `")).count();
    assert_eq!(
        sections,
        METHODS.len(),
        "docs/api.md documents a method the server does not have"
    );
}

#[tokio::test]
async fn every_method_answers() {
    let server = serve(&format!("[api]\nkey = \"{API_KEY}\"\n")).await;
    for method in METHODS {
        let (status, body) = api(&server, method, json!({})).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
            "{method}: {status} {body}"
        );
        if status == StatusCode::BAD_REQUEST {
            assert_eq!(body["error"]["code"], 104, "{method}: {body}");
        }
    }
}

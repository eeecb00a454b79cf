//! The backend hooks (`connect`, `subscribe`, `publish`, `rpc`) against a real HTTP backend
//! started by each test, including a backend that is down, slow, or answers garbage.

mod support;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use std::time::Duration;
use support::*;

/// How the scripted backend answers: by path, then by a word in the request.
async fn script(r: Received) -> axum::response::Response {
    let word = match r.path.as_str() {
        "/connect" => r.body["data"]["word"].as_str().map(str::to_owned),
        "/subscribe" => r.body["channel"]
            .as_str()
            .and_then(|c| c.rsplit(':').next())
            .map(str::to_owned),
        _ => r.body["data"]["word"].as_str().map(str::to_owned),
    }
    .unwrap_or_default();
    match word.as_str() {
        "slow" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            answer(json!({"result": {}}))
        }
        "garbage" => (StatusCode::OK, "<html>surprise</html>").into_response(),
        "status" => (StatusCode::INTERNAL_SERVER_ERROR, r#"{"result":{}}"#).into_response(),
        "shape" => answer(json!({"result": {"usr": "x"}, "extra": 1})),
        "both" => answer(json!({"result": {}, "error": {"code": 1000, "message": "?"}})),
        "big" => answer(json!({"result": {"data": "x".repeat(4096)}})),
        "deny" => answer(
            json!({"error": {"code": 1403, "message": "not you", "data": {"why": "banned"}}}),
        ),
        _ => match r.path.as_str() {
            "/connect" => {
                let cookie = r
                    .headers
                    .get("cookie")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let user = if cookie.contains("session=s1") {
                    "cookie-user"
                } else {
                    "alice"
                };
                answer(
                    json!({"result": {"user": user, "info": {"plan": "pro"}, "channels": ["notes:alice"]}}),
                )
            }
            "/publish" if word == "replace" => {
                answer(json!({"result": {"data": {"replaced": true}}}))
            }
            "/rpc/orders" => answer(
                json!({"result": {"data": {"order": r.body["data"]["n"].clone(), "user": r.body["user"].clone()}}}),
            ),
            "/rpc" => answer(
                json!({"result": {"data": {"method": r.body["method"].clone(), "echo": r.body["data"].clone()}}}),
            ),
            _ => answer(json!({"result": {}})),
        },
    }
}

fn config(backend: &Backend, extra: &str) -> String {
    format!(
        r#"
[client]
anonymous = true
[api]
key = "{API_KEY}"
[metrics]
enabled = true
[backend]
timeout_ms = 300
max_response_bytes = 1024
headers = {{ "x-shared-secret" = "s3cret" }}
connect_url = "{connect}"
subscribe_url = "{subscribe}"
publish_url = "{publish}"
rpc_url = "{rpc}"
rpc_urls = {{ "orders.create" = "{orders}" }}
{extra}
[[namespaces]]
name = "hooked"
channels = "hooked:*"
subscribe = "backend"
publish = "backend"
[[namespaces]]
name = "open"
channels = "open:*"
subscribe = "anyone"
publish = "anyone"
"#,
        connect = backend.url("/connect"),
        subscribe = backend.url("/subscribe"),
        publish = backend.url("/publish"),
        rpc = backend.url("/rpc"),
        orders = backend.url("/rpc/orders"),
    )
}

async fn setup() -> (Backend, plexus_server::RunningServer) {
    let backend = Backend::start(script).await;
    let server = serve(&config(&backend, "")).await;
    (backend, server)
}

/// A connect hook that is down, slow or answers garbage gives `backend_unavailable` (118), and
/// the connection is closed with 4005 (reconnect), not refused for good.
fn assert_connect_backend_unavailable(e: &Value) {
    assert_eq!(e["code"].as_u64(), Some(118), "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("backend is unavailable"),
        "{e}"
    );
}

#[tokio::test]
async fn connect_hook_names_the_user_from_client_data_and_headers() {
    let (backend, server) = setup().await;
    let mut c = Client::connect_with(
        &server.ws_url(),
        &[
            ("cookie", "theme=dark"),
            ("user-agent", "test-agent"),
            ("x-not-forwarded", "1"),
        ],
    )
    .await;
    let r = c
        .request("connect", json!({"credentials": {"word": "ok"}}))
        .await
        .unwrap();
    assert_eq!(r["user"], "alice");
    assert_eq!(r["info"], json!({"plan": "pro"}));
    assert_eq!(c.push("subscribed").await["channel"], "notes:alice");

    let seen = &backend.requests("/connect")[0];
    assert_eq!(seen.body["data"], json!({"word": "ok"}));
    assert_eq!(seen.body["transport"], "websocket");
    assert_eq!(seen.body["path"], "/ws");
    assert!(
        seen.body["conn"].is_string() && seen.body["peer"].is_string(),
        "{}",
        seen.body
    );
    assert_eq!(seen.headers["cookie"], "theme=dark");
    assert_eq!(seen.headers["user-agent"], "test-agent");
    assert!(seen.headers.get("x-not-forwarded").is_none());
    assert_eq!(seen.headers["x-shared-secret"], "s3cret");
    assert_eq!(seen.headers["x-plexus-hook"], "connect");
    assert_eq!(seen.headers["content-type"], "application/json");

    // A browser authenticated by its session cookie sends empty credentials.
    let mut c = Client::connect_with(&server.ws_url(), &[("cookie", "session=s1")]).await;
    let r = c
        .request("connect", json!({"credentials": {}}))
        .await
        .unwrap();
    assert_eq!(r["user"], "cookie-user");
}

/// Hooks at `https://` URLs: the backend's certificate is checked against `backend.ca_file`
/// (and refused without it: the hook is then unavailable).
#[tokio::test]
async fn hooks_reach_an_https_backend_whose_certificate_is_trusted() {
    let dir = std::env::temp_dir().join(format!("plexus-hook-tls-{:016x}", fastrand::u64(..)));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let tls = plexus_server::tls::TlsConfig::new(&cert_path, &key_path);
    let backend = Backend::start_tls(script, &tls).await;
    assert!(backend.url("/connect").starts_with("https://localhost:"));
    let trusted = format!("ca_file = \"{}\"", cert_path.display());
    let server = serve(&config(&backend, &trusted)).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let r = c
        .request("connect", json!({"credentials": {"word": "ok"}}))
        .await
        .unwrap();
    assert_eq!(r["user"], "alice");
    assert_eq!(backend.requests("/connect").len(), 1);
    // Without the CA, the certificate is not trusted: no hook request arrives.
    let server = serve(&config(&backend, "")).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let e = c
        .request("connect", json!({"credentials": {"word": "ok"}}))
        .await
        .unwrap_err();
    assert_connect_backend_unavailable(&e);
    assert_eq!(backend.requests("/connect").len(), 1);
}

#[tokio::test]
async fn connect_hook_refusals_keep_the_backends_code() {
    let (_backend, server) = setup().await;
    let mut c = Client::connect(&server.ws_url()).await;
    let e = c
        .request("connect", json!({"credentials": {"word": "deny"}}))
        .await
        .unwrap_err();
    assert_eq!(e["code"], 1403, "{e}");
    assert_eq!(e["message"], "not you");
    assert_eq!(c.closed().await.0, 4502);
}

#[tokio::test]
async fn connect_hook_failures_are_backend_unavailable() {
    let (backend, server) = setup().await;
    for word in ["garbage", "status", "shape", "both", "big", "slow"] {
        let mut c = Client::connect(&server.ws_url()).await;
        let e = c
            .request("connect", json!({"credentials": {"word": word}}))
            .await
            .unwrap_err();
        assert_connect_backend_unavailable(&e);
        assert_eq!(c.closed().await.0, plexus_core::CloseCode::RECONNECT.0);
    }
    assert_eq!(backend.requests("/connect").len(), 6);

    // A backend that is down.
    let down = serve(&config(&backend, "").replace(&backend.url("/connect"), &dead_url())).await;
    let mut c = Client::connect(&down.ws_url()).await;
    let e = c
        .request("connect", json!({"credentials": {"word": "ok"}}))
        .await
        .unwrap_err();
    assert_connect_backend_unavailable(&e);

    // The failures are counted by outcome.
    let (_, _, body) = http(server.local_addr(), "GET", "/metrics", &[], "").await;
    let metrics = String::from_utf8(body.to_vec()).unwrap();
    for line in [
        r#"plexus_backend_requests_total{hook="connect",outcome="bad_response"} 5"#,
        r#"plexus_backend_requests_total{hook="connect",outcome="timeout"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

#[tokio::test]
async fn a_slow_backend_blocks_no_one_else() {
    let (_backend, server) = setup().await;
    let mut slow = Client::connect(&server.ws_url()).await;
    let waiting = slow
        .send("subscribe", json!({"channel": "hooked:slow"}))
        .await;
    // Meanwhile another connection and the API are served.
    let mut other = Client::connect(&server.ws_url()).await;
    other
        .request("subscribe", json!({"channel": "open:a"}))
        .await
        .unwrap();
    other
        .request("publish", json!({"channel": "open:a", "data": 1}))
        .await
        .unwrap();
    assert_eq!(other.push("pub").await["data"], 1);
    api_ok(&server, "info", json!({})).await;
    // And the slow one gets its answer when the hook times out.
    assert_eq!(slow.reply(waiting).await.unwrap_err()["code"], 118);
    slow.request("subscribe", json!({"channel": "open:b"}))
        .await
        .unwrap();
}

#[tokio::test]
async fn subscribe_hook_allows_denies_and_fails_cleanly() {
    let (backend, server) = setup().await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.request("connect", json!({"credentials": {"word": "ok"}}))
        .await
        .unwrap();
    c.request("subscribe", json!({"channel": "hooked:ok"}))
        .await
        .unwrap();
    let seen = backend.requests("/subscribe").pop().unwrap();
    assert_eq!(seen.body["channel"], "hooked:ok");
    assert_eq!(seen.body["user"], "alice");
    assert_eq!(seen.headers["x-plexus-hook"], "subscribe");

    let e = c
        .request("subscribe", json!({"channel": "hooked:deny"}))
        .await
        .unwrap_err();
    assert_eq!(e["code"], 1403);
    assert_eq!(e["data"], json!({"why": "banned"}));
    for word in ["garbage", "status", "shape", "big", "slow"] {
        let e = c
            .request("subscribe", json!({"channel": format!("hooked:{word}")}))
            .await
            .unwrap_err();
        assert_eq!(e["code"], 118, "{word}: {e}");
    }
    // The connection lives on; channels without the hook do not ask the backend.
    let before = backend.requests("/subscribe").len();
    c.request("subscribe", json!({"channel": "open:x"}))
        .await
        .unwrap();
    assert_eq!(backend.requests("/subscribe").len(), before);
}

#[tokio::test]
async fn publish_hook_allows_denies_or_replaces_the_data() {
    let (backend, server) = setup().await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.request("subscribe", json!({"channel": "hooked:ok"}))
        .await
        .unwrap();

    c.request(
        "publish",
        json!({"channel": "hooked:ok", "data": {"word": "allow", "n": 1}}),
    )
    .await
    .unwrap();
    assert_eq!(
        c.push("pub").await["data"],
        json!({"word": "allow", "n": 1})
    );
    c.request(
        "publish",
        json!({"channel": "hooked:ok", "data": {"word": "replace"}}),
    )
    .await
    .unwrap();
    assert_eq!(c.push("pub").await["data"], json!({"replaced": true}));
    let e = c
        .request(
            "publish",
            json!({"channel": "hooked:ok", "data": {"word": "deny"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(e["code"], 1403);
    for word in ["garbage", "slow", "shape"] {
        let e = c
            .request(
                "publish",
                json!({"channel": "hooked:ok", "data": {"word": word}}),
            )
            .await
            .unwrap_err();
        assert_eq!(e["code"], 118, "{word}: {e}");
    }
    // Binary payloads go to the backend as base64.
    c.request("publish", json!({"channel": "hooked:ok", "binary": "AQID"}))
        .await
        .unwrap();
    assert_eq!(c.push("pub").await["binary"], "AQID");
    let seen = backend.requests("/publish").pop().unwrap();
    assert_eq!(seen.body["binary"], "AQID");
    assert_eq!(seen.body["channel"], "hooked:ok");
    // Nothing refused was published.
    let (_, value) = api(&server, "channels", json!({})).await;
    assert_eq!(value["result"]["channels"][0]["subscribers"], 1);
    assert!(
        c.request("unsubscribe", json!({"channel": "hooked:ok"}))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn rpc_goes_to_the_methods_url_or_the_default() {
    let (backend, server) = setup().await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.request("connect", json!({"credentials": {"word": "ok"}}))
        .await
        .unwrap();

    let r = c
        .request("call", json!({"method": "orders.create", "data": {"n": 7}}))
        .await
        .unwrap();
    assert_eq!(r["data"], json!({"order": 7, "user": "alice"}));
    let r = c
        .request("call", json!({"method": "anything.else", "data": [1, 2]}))
        .await
        .unwrap();
    assert_eq!(
        r["data"],
        json!({"method": "anything.else", "echo": [1, 2]})
    );
    let seen = backend.requests("/rpc").pop().unwrap();
    assert_eq!(seen.body["info"], json!({"plan": "pro"}));
    assert_eq!(seen.body["meta"], json!({}));
    assert_eq!(seen.headers["x-plexus-hook"], "rpc");

    let e = c
        .request("call", json!({"method": "x", "data": {"word": "deny"}}))
        .await
        .unwrap_err();
    assert_eq!(e["code"], 1403);
    assert_eq!(e["data"], json!({"why": "banned"}));
    for word in ["garbage", "status", "big", "slow"] {
        let e = c
            .request("call", json!({"method": "x", "data": {"word": word}}))
            .await
            .unwrap_err();
        assert_eq!(e["code"], 118, "{word}: {e}");
    }
    let (_, _, body) = http(server.local_addr(), "GET", "/metrics", &[], "").await;
    let metrics = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        metrics.contains(r#"plexus_backend_requests_total{hook="rpc",outcome="ok"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"plexus_backend_requests_total{hook="rpc",outcome="refused"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn rpc_against_a_backend_that_is_down() {
    let backend = Backend::start(script).await;
    let toml = config(&backend, "").replace(&backend.url("/rpc\""), &format!("{}\"", dead_url()));
    let server = serve(&toml).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let e = c
        .request("call", json!({"method": "x", "data": null}))
        .await
        .unwrap_err();
    assert_eq!(e["code"], 118, "{e}");
    // The per-method URL still works.
    c.request("call", json!({"method": "orders.create", "data": {"n": 1}}))
        .await
        .unwrap();
}

#[tokio::test]
async fn hook_requests_in_flight_are_bounded() {
    let backend = Backend::start(script).await;
    let server = serve(
        &config(&backend, "").replace("timeout_ms = 300", "timeout_ms = 500\nmax_in_flight = 1"),
    )
    .await;
    let mut a = Client::connect(&server.ws_url()).await;
    let mut b = Client::connect(&server.ws_url()).await;
    let slow = a.send("subscribe", json!({"channel": "hooked:slow"})).await;
    // Wait until the backend holds the first request, then ask again from another connection.
    let deadline = tokio::time::Instant::now() + WAIT;
    while backend.requests("/subscribe").is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = b
        .request("subscribe", json!({"channel": "hooked:ok"}))
        .await
        .unwrap_err();
    assert_eq!(e["code"], 118);
    assert_eq!(a.reply(slow).await.unwrap_err()["code"], 118);
    assert_eq!(
        backend.requests("/subscribe").len(),
        1,
        "the second request never left the server"
    );
    // Once the slot is free, hooks work again.
    b.request("subscribe", json!({"channel": "hooked:ok"}))
        .await
        .unwrap();
}

//! The admin interface's HTTP side over real HTTP (`docs/admin.md`): login, the session cookie,
//! logout, the bound on failed logins, CSRF on every state-changing request, the page's own
//! observer connection (live tail); and the API methods it is built on (`nodes`,
//! `connections`), on one node and on two nodes sharing a real `redis-server`.

mod support;

use axum::http::{HeaderMap, StatusCode};
use plexus_server::RunningServer;
use plexus_server::config;
use serde_json::{Value, json};
use std::net::SocketAddr;
use support::*;

const PASSWORD: &str = "admin-password-0123";

fn config(extra: &str) -> String {
    format!(
        r#"
[client]
anonymous = true
[api]
key = "{API_KEY}"
[jwt]
hmac_secret = "{SECRET}"
[admin]
enabled = true
password = "{PASSWORD}"
{extra}
[[namespaces]]
name = "room"
channels = "room:*"
subscribe = "anyone"
publish = "anyone"
history_size = 10
history_ttl_ms = 60000
presence = true
"#
    )
}

/// A logged-in admin: its cookie header and CSRF token.
struct Admin {
    addr: SocketAddr,
    cookie: String,
    csrf: String,
}

fn session_cookie(headers: &HeaderMap) -> String {
    let set = headers["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn login_with(addr: SocketAddr, password: &str) -> (StatusCode, HeaderMap, Value) {
    let (status, headers, body) = http(
        addr,
        "POST",
        "/admin/login",
        &[("content-type", "application/json")],
        json!({ "password": password }).to_string(),
    )
    .await;
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

async fn login(server: &RunningServer) -> Admin {
    let addr = server.local_addr();
    let (status, headers, body) = login_with(addr, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    Admin {
        addr,
        cookie: session_cookie(&headers),
        csrf: body["csrf"].as_str().unwrap().to_owned(),
    }
}

impl Admin {
    /// `POST /admin/api/<method>` with the cookie and the given CSRF header (if any).
    async fn call_with(
        &self,
        method: &str,
        csrf: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut headers = vec![("cookie", self.cookie.as_str())];
        if let Some(csrf) = csrf {
            headers.push(("x-csrf-token", csrf));
        }
        let (status, _, bytes) = http(
            self.addr,
            "POST",
            &format!("/admin/api/{method}"),
            &headers,
            body.to_string(),
        )
        .await;
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    async fn call(&self, method: &str, body: Value) -> Value {
        let (status, value) = self.call_with(method, Some(&self.csrf), body).await;
        assert_eq!(status, StatusCode::OK, "{method}: {value}");
        value
    }
}

#[tokio::test]
async fn the_page_is_served_with_its_assets_and_strict_headers() {
    let server = serve(&config("")).await;
    let addr = server.local_addr();
    let (status, headers, body) = http(addr, "GET", "/admin", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    let html = String::from_utf8_lossy(&body);
    for asset in ["/admin/app.js", "/admin/style.css"] {
        assert!(html.contains(asset), "{asset}");
        let (status, _, _) = http(addr, "GET", asset, &[], "").await;
        assert_eq!(status, StatusCode::OK, "{asset}");
    }
    let (status, _, _) = http(addr, "GET", "/admin/client/index.js", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    // Nothing secret is served without a session.
    let (_, _, body) = http(addr, "GET", "/admin/session", &[], "").await;
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"authenticated": false})
    );
}

#[tokio::test]
async fn without_admin_in_a_configuration_there_is_no_admin_interface() {
    let server = serve(&format!("[api]\nkey = \"{API_KEY}\"\n")).await;
    let (status, _, _) = http(server.local_addr(), "GET", "/admin", &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = login_with(server.local_addr(), PASSWORD).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn login_sets_a_strict_session_cookie_and_logout_ends_the_session() {
    let server = serve(&config("")).await;
    let addr = server.local_addr();

    let (status, headers, body) = login_with(addr, "not-the-password").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(headers.get("set-cookie").is_none());
    // The API key is not the admin password.
    let (status, _, _) = login_with(addr, API_KEY).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, headers, body) = login_with(addr, PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    let set = headers["set-cookie"].to_str().unwrap();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/admin",
        "Max-Age=28800",
    ] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let admin = Admin {
        addr,
        cookie: session_cookie(&headers),
        csrf: body["csrf"].as_str().unwrap().to_owned(),
    };
    let (_, _, session) = http(
        addr,
        "GET",
        "/admin/session",
        &[("cookie", &admin.cookie)],
        "",
    )
    .await;
    let session: Value = serde_json::from_slice(&session).unwrap();
    assert_eq!(session["authenticated"], true);
    assert_eq!(session["csrf"], admin.csrf.as_str());
    let info = admin.call("info", json!({})).await;
    assert_eq!(info["result"]["node"], server.node().id().to_string());

    // Logout is a state change: it needs the token too.
    let (status, _, _) = http(
        addr,
        "POST",
        "/admin/logout",
        &[("cookie", &admin.cookie)],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, headers, _) = http(
        addr,
        "POST",
        "/admin/logout",
        &[("cookie", &admin.cookie), ("x-csrf-token", &admin.csrf)],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _) = admin.call_with("info", Some(&admin.csrf), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_cookie_is_secure_behind_tls() {
    let server = serve(&config("")).await;
    let (_, headers, _) = http(
        server.local_addr(),
        "POST",
        "/admin/login",
        &[
            ("content-type", "application/json"),
            ("x-forwarded-proto", "https"),
        ],
        json!({ "password": PASSWORD }).to_string(),
    )
    .await;
    assert!(headers["set-cookie"].to_str().unwrap().contains("; Secure"));

    let server = serve(&config("secure_cookie = true")).await;
    let (_, headers, _) = login_with(server.local_addr(), PASSWORD).await;
    assert!(headers["set-cookie"].to_str().unwrap().contains("; Secure"));
}

#[tokio::test]
async fn every_state_change_needs_the_sessions_csrf_token() {
    let server = serve(&config("")).await;
    let admin = login(&server).await;
    let other = login(&server).await;
    let publish = json!({"channel": "room:1", "data": {"text": "hi"}});
    for (what, csrf) in [
        ("no token", None),
        ("a wrong token", Some("0123456789abcdef")),
        ("another session's token", Some(other.csrf.as_str())),
        ("an empty token", Some("")),
    ] {
        for method in ["publish", "disconnect", "info", "tail"] {
            let (status, body) = admin.call_with(method, csrf, publish.clone()).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{what}, {method}: {body}");
            assert_eq!(body["error"]["code"], 105, "{body}");
        }
    }
    // Nothing was published.
    let history = api_ok(&server, "history", json!({"channel": "room:1"})).await;
    assert_eq!(history["publications"], json!([]));
    // With the token it is.
    let result = admin.call("publish", publish).await;
    assert_eq!(result["result"]["offset"], 1);
    // Without a session, whatever the token: 401.
    let (status, _, _) = http(
        admin.addr,
        "POST",
        "/admin/api/info",
        &[("x-csrf-token", &admin.csrf)],
        "{}",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Methods outside the admin interface's list are not there.
    let (status, _) = admin
        .call_with("room_delete", Some(&admin.csrf), json!({"room": "x"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn logins_are_bounded_after_failures() {
    let server = serve(&config("login_failures_max = 3\nlogin_window_ms = 600000")).await;
    let addr = server.local_addr();
    for _ in 0..3 {
        let (status, _, _) = login_with(addr, "wrong-password-000").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused now, with when to try again.
    let (status, headers, body) = login_with(addr, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    // A form post (what another site could send) is refused before the password is read.
    let (status, _, _) = http(
        addr,
        "POST",
        "/admin/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("password={PASSWORD}"),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn logins_are_accepted_again_once_the_window_passed() {
    let server = serve(&config("login_failures_max = 1\nlogin_window_ms = 300")).await;
    let addr = server.local_addr();
    let (status, _, _) = login_with(addr, "wrong-password-000").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = login_with(addr, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Waits for the window to pass (upper bound WAIT).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _, _) = login_with(addr, PASSWORD).await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(tokio::time::Instant::now() < deadline, "still locked");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn the_configuration_checks_the_admin_section() {
    let problems =
        |extra: &str| match config::load(&sources(&format!("[api]\nkey = \"{API_KEY}\"\n{extra}")))
        {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        };
    let has = |extra: &str, expected: &str| {
        let found = problems(extra);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{extra}: expected {expected:?} in {found:?}"
        );
    };
    has("[admin]\nenabled = true", "admin.password");
    has(
        "[admin]\nenabled = true\npassword = \"short\"",
        "at least 12 characters",
    );
    has(
        &format!("[admin]\nenabled = true\npassword = \"{API_KEY}\""),
        "must not be the API key",
    );
    has(
        &format!("[admin]\nenabled = true\npassword = \"{PASSWORD}\"\nsessions_max = 0"),
        "admin.sessions_max",
    );
    has(
        &format!("[admin]\nenabled = true\npassword = \"{PASSWORD}\"\nlogin_failures_max = 0"),
        "admin.login_failures_max",
    );
    assert!(
        problems(&format!(
            "[admin]\nenabled = true\npassword = \"{PASSWORD}\""
        ))
        .is_empty()
    );
}

fn sources(text: &str) -> config::Sources {
    config::Sources {
        file: Some(config::ConfigFile {
            path: "plexus.toml".into(),
            text: text.into(),
        }),
        ..config::Sources::default()
    }
}

#[tokio::test]
async fn development_mode_serves_the_admin_interface_with_a_made_up_password() {
    let loaded = config::load(&config::Sources::default()).unwrap();
    assert!(loaded.dev_mode);
    assert!(
        loaded
            .summary()
            .iter()
            .any(|l| l.starts_with("admin interface: http://")),
        "{:?}",
        loaded.summary()
    );
    let server = plexus_server::Server::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .dev_mode()
        .build();
    let password = server.admin_password().unwrap().to_owned();
    assert!(password.len() >= 12);
    let running = server.start().await.unwrap();
    let (status, _, _) = login_with(running.local_addr(), &password).await;
    assert_eq!(status, StatusCode::OK);
    // Another start makes up another one.
    let other = plexus_server::Server::builder().dev_mode().build();
    assert_ne!(other.admin_password().unwrap(), password);
}

/// The page's observer connection: needs the session, receives a tailed channel's
/// publications, and is in nobody's presence.
#[tokio::test]
async fn the_live_tail_is_an_observer_the_channel_does_not_see() {
    let server = serve(&config("")).await;
    let admin = login(&server).await;
    let url = format!("ws://{}/admin/ws", admin.addr);

    // Without a session: refused at the upgrade.
    let refused = tokio_tungstenite::connect_async(url.as_str()).await;
    assert!(refused.is_err());
    // From another site's page: refused.
    let host = admin.addr.to_string();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", admin.cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_err());

    let origin = format!("http://{host}");
    let mut observer = Client::connect_with(
        &url,
        &[
            ("cookie", admin.cookie.as_str()),
            ("origin", origin.as_str()),
        ],
    )
    .await;
    let conn = observer.hello["conn"].as_str().unwrap().to_owned();
    let mut member = Client::connect(&server.ws_url()).await;
    member
        .request("subscribe", json!({"channel": "room:1"}))
        .await
        .unwrap();

    // Another connection cannot be made to tail.
    let member_conn = member.hello["conn"].as_str().unwrap().to_owned();
    let (status, _) = admin
        .call_with(
            "tail",
            Some(&admin.csrf),
            json!({"channel": "room:1", "conn": member_conn}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    admin
        .call("tail", json!({"channel": "room:1", "conn": conn}))
        .await;
    let subscribed = observer.push("subscribed").await;
    assert_eq!(subscribed["channel"], "room:1");
    admin
        .call(
            "publish",
            json!({"channel": "room:1", "data": {"text": "seen"}}),
        )
        .await;
    let publication = observer.push("pub").await;
    assert_eq!(publication["data"], json!({"text": "seen"}));

    // The channel's presence has the member only, and the member was told of no join.
    let presence = api_ok(&server, "presence", json!({"channel": "room:1"})).await;
    let members = presence["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{presence}");
    assert_eq!(members[0]["conn"], member_conn.as_str());
    match member.next().await {
        Frame::Push(p) => assert_eq!(p["push"], "pub", "{p}"),
        other => panic!("{other:?}"),
    }

    // The connections list says what it is.
    let found = admin
        .call(
            "connections",
            json!({"user": plexus_server::admin::OBSERVER_USER}),
        )
        .await;
    let listed = &found["result"]["connections"][0];
    assert_eq!(listed["conn"], conn.as_str());
    assert_eq!(listed["dialect"], "native");
    assert_eq!(listed["transport"], "websocket");
    assert_eq!(listed["subscriptions"], json!(["room:1"]));

    admin
        .call("untail", json!({"channel": "room:1", "conn": conn}))
        .await;
    let unsubscribed = observer.push("unsubscribed").await;
    assert_eq!(unsubscribed["channel"], "room:1");
}

#[tokio::test]
async fn connections_are_found_by_user_or_id_and_disconnected_with_a_reason() {
    let server = serve(&config("")).await;
    let mut anon = Client::connect(&server.ws_url()).await;
    anon.request("subscribe", json!({"channel": "room:a"}))
        .await
        .unwrap();
    anon.request("metadata_set", json!({"value": {"page": "home"}}))
        .await
        .ok();
    let conn = anon.hello["conn"].as_str().unwrap().to_owned();

    let found = api_ok(&server, "connections", json!({"conn": conn})).await;
    let list = found["connections"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{found}");
    assert_eq!(list[0]["conn"], conn.as_str());
    assert_eq!(list[0]["subscriptions"], json!(["room:a"]));
    assert_eq!(list[0]["subscription_count"], 1);
    assert!(list[0]["opened_ms"].as_u64().unwrap() > 0);
    assert_eq!(found["truncated"], false);

    let all = api_ok(&server, "connections", json!({"limit": 1})).await;
    assert_eq!(all["connections"].as_array().unwrap().len(), 1);
    let none = api_ok(&server, "connections", json!({"user": "nobody"})).await;
    assert_eq!(none["connections"], json!([]));
    let (status, body) = api(&server, "connections", json!({"conn": "not-an-id"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = api(&server, "connections", json!({"limit": 0})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let nodes = api_ok(&server, "nodes", json!({})).await;
    let node = &nodes["nodes"][0];
    assert_eq!(node["node"], server.node().id().to_string());
    assert_eq!(node["connections"], 1);
    assert_eq!(node["subscriptions"], 1);
    assert_eq!(node["version"], env!("CARGO_PKG_VERSION"));

    let admin = login(&server).await;
    admin
        .call(
            "disconnect",
            json!({"conn": conn, "reason": "closed from the admin interface"}),
        )
        .await;
    let (code, reason) = anon.closed().await;
    assert_eq!(code, 4505);
    assert_eq!(reason, "closed from the admin interface");
}

/// Two nodes on one `redis-server`: either node lists both nodes, finds a connection of the
/// other, and disconnects it.
#[tokio::test]
async fn on_redis_every_node_sees_every_node_and_its_connections() {
    let redis = plexus_redis::testing::RedisServer::start().expect("redis-server starts");
    let prefix = plexus_redis::testing::unique_prefix();
    let mut servers = Vec::new();
    for _ in 0..2 {
        let mut redis_config = plexus_redis::RedisConfig::new(redis.url()).prefix(&prefix);
        redis_config.node_ttl = std::time::Duration::from_secs(3);
        let engine = plexus_redis::redis_engine(redis_config).await.unwrap();
        let server = load(&config(""))
            .server_builder()
            .listen("127.0.0.1:0".parse().unwrap())
            .engine(engine)
            .build()
            .start()
            .await
            .unwrap();
        servers.push(server);
    }
    let (a, b) = (&servers[0], &servers[1]);
    let mut on_b = Client::connect(&b.ws_url()).await;
    on_b.request("subscribe", json!({"channel": "room:r"}))
        .await
        .unwrap();
    let conn = on_b.hello["conn"].as_str().unwrap().to_owned();

    // Both nodes announce themselves (upper bound WAIT).
    let deadline = tokio::time::Instant::now() + WAIT;
    let nodes = loop {
        let nodes = api_ok(a, "nodes", json!({})).await;
        if nodes["nodes"].as_array().unwrap().len() == 2 {
            break nodes;
        }
        assert!(tokio::time::Instant::now() < deadline, "{nodes}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(nodes["missing"], json!([]));
    let ids: Vec<&str> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&b.node().id().to_string().as_str()), "{nodes}");
    let of_b = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == b.node().id().to_string())
        .unwrap();
    assert_eq!(of_b["connections"], 1);
    assert_eq!(of_b["subscriptions"], 1);

    // A channel with subscribers on both nodes is one entry with their sum.
    let mut on_a = Client::connect(&a.ws_url()).await;
    on_a.request("subscribe", json!({"channel": "room:r"}))
        .await
        .unwrap();
    let listed = api_ok(a, "channels", json!({"prefix": "room:"})).await;
    assert_eq!(
        listed["channels"],
        json!([{"channel": "room:r", "subscribers": 2}]),
        "{listed}"
    );
    assert_eq!(listed["total"], 1);
    drop(on_a);

    let found = api_ok(a, "connections", json!({"conn": conn})).await;
    assert_eq!(found["connections"][0]["node"], b.node().id().to_string());
    assert_eq!(found["connections"][0]["subscriptions"], json!(["room:r"]));
    let all = api_ok(a, "connections", json!({"user": "nobody"})).await;
    assert_eq!(all["connections"], json!([]), "{all}");

    let admin = login(a).await;
    admin
        .call("disconnect", json!({"conn": conn, "reason": "bye from a"}))
        .await;
    let (_, reason) = on_b.closed().await;
    assert_eq!(reason, "bye from a");
    drop(redis);
}

#[tokio::test]
async fn sessions_are_bounded_and_expire() {
    let server = serve(&config("sessions_max = 2")).await;
    let first = login(&server).await;
    let second = login(&server).await;
    let third = login(&server).await;
    // A third login ended the oldest session.
    let (status, _) = first.call_with("info", Some(&first.csrf), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for admin in [&second, &third] {
        admin.call("info", json!({})).await;
    }

    let server = serve(&config("session_ttl_ms = 300")).await;
    let admin = login(&server).await;
    admin.call("info", json!({})).await;
    // Waits for the session to end (upper bound WAIT).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _) = admin.call_with("info", Some(&admin.csrf), json!({})).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session did not end"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_users_mailbox_lists_its_waiting_messages() {
    let server = serve(&config("")).await;
    let admin = login(&server).await;
    let none = admin.call("mailbox", json!({"user": "alice"})).await;
    assert_eq!(
        none["result"],
        json!({"registered": false, "pending": 0, "messages": []})
    );
    // A user has a mailbox from its first authenticated connection.
    let token = hs(
        json!({"sub": "alice"}),
        plexus_server::jwt::Algorithm::HS256,
    );
    let (mut alice, reply) = connect_token(&server.ws_url(), &token).await;
    reply.unwrap();
    for n in 1..=3 {
        let sent = admin
            .call("send_durable", json!({"user": "alice", "data": {"n": n}}))
            .await;
        assert_eq!(sent["result"]["seq"], n);
    }
    let mailbox = admin
        .call("mailbox", json!({"user": "alice", "limit": 2}))
        .await;
    assert_eq!(mailbox["result"]["registered"], true);
    assert_eq!(mailbox["result"]["pending"], 3);
    let messages = mailbox["result"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["seq"], 1);
    assert_eq!(messages[0]["data"], json!({"n": 1}));
    assert!(messages[0]["sent_ms"].as_u64().unwrap() > 0);
    // Acknowledged messages are no longer waiting.
    alice.request("ack", json!({"seq": 2})).await.unwrap();
    let mailbox = admin.call("mailbox", json!({"user": "alice"})).await;
    assert_eq!(mailbox["result"]["pending"], 1);
    assert_eq!(mailbox["result"]["messages"][0]["seq"], 3);
    let (status, _) = admin
        .call_with("mailbox", Some(&admin.csrf), json!({"user": ""}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

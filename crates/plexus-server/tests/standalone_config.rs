//! The configuration: precedence (defaults < file < environment < flags), every problem
//! reported with its location, secure defaults with a file, and the options' effects over real
//! connections.

mod support;

use plexus_core::Limits;
use plexus_server::config::{self, ConfigError, Sources};
use serde_json::json;
use std::time::Duration;
use support::*;

fn problems(result: Result<config::Loaded, ConfigError>) -> Vec<String> {
    match result {
        Ok(_) => panic!("the configuration was accepted"),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

fn assert_has(problems: &[String], expected: &str) {
    assert!(
        problems.iter().any(|p| p.contains(expected)),
        "no problem like {expected:?} in:\n{}",
        problems.join("\n")
    );
}

#[test]
fn defaults_then_file_then_environment_then_flags() {
    let file = "[server]\nlisten = \"127.0.0.1:1001\"\n[client]\nmax_subscriptions = 10\nrequests_burst = 50\n";
    let only_file = load(file);
    assert_eq!(only_file.listen.port(), 1001);
    assert_eq!(only_file.limits().max_subscriptions, 10);
    assert_eq!(only_file.limits().requests_burst, 50);
    assert_eq!(
        only_file.limits().max_pending_requests,
        Limits::default().max_pending_requests,
        "a default"
    );

    let env = [
        ("PLEXUS_SERVER_LISTEN", "127.0.0.1:1002"),
        ("PLEXUS_CLIENT_MAX_SUBSCRIPTIONS", "20"),
    ];
    let with_env = load_with(file, &env, &[]).unwrap();
    assert_eq!(with_env.listen.port(), 1002);
    assert_eq!(with_env.limits().max_subscriptions, 20);
    assert_eq!(
        with_env.limits().requests_burst,
        50,
        "the file's, untouched by the environment"
    );

    let flags = [("server.listen", "127.0.0.1:1003")];
    let with_flags = load_with(file, &env, &flags).unwrap();
    assert_eq!(with_flags.listen.port(), 1003);
    assert_eq!(
        with_flags.limits().max_subscriptions,
        20,
        "the environment's"
    );
}

#[test]
fn environment_variables_take_lists_and_tables() {
    let env = [
        (
            "PLEXUS_NAMESPACES",
            r#"[{name = "chat", channels = "chat:*", subscribe = "anyone"}]"#,
        ),
        ("PLEXUS_BACKEND_FORWARD_HEADERS", "cookie, x-tenant"),
        (
            "PLEXUS_BACKEND_RPC_URLS",
            r#"{ "a.b" = "http://127.0.0.1:9/a" }"#,
        ),
        ("PLEXUS_JWT_HMAC_SECRET", SECRET),
        ("PLEXUS_METRICS_ENABLED", "true"),
        ("PLEXUS_LOG", "debug"),
        ("PLEXUS_URL", "ws://not-a-setting"),
    ];
    let loaded = load_with("", &env, &[]).unwrap();
    assert_eq!(loaded.config.namespaces[0].name, "chat");
    assert_eq!(
        loaded.config.backend.forward_headers,
        ["cookie", "x-tenant"]
    );
    assert_eq!(
        loaded.config.backend.rpc_urls["a.b"],
        "http://127.0.0.1:9/a"
    );
    assert_eq!(loaded.config.jwt.hmac_secret, SECRET);
    assert!(loaded.config.metrics.enabled);
}

#[test]
fn unknown_keys_are_errors_with_their_location() {
    let file = "[server]\nlisen = \"x\"\n\n[api]\nkey = \"0123456789abcdef\"\nmax_body = 5\n\n[[namespaces]]\nname = \"a\"\nchannels = \"a:*\"\nsubscibe = \"anyone\"\n\n[typo]\nx = 1\n";
    let p = problems(load_with(
        file,
        &[("PLEXUS_SERVER_LISTN", "x")],
        &[("server.nope", "1")],
    ));
    assert_eq!(p.len(), 6, "{p:#?}");
    assert_has(
        &p,
        "test.toml:2:1: `server.lisen`: unknown key `lisen` (did you mean `listen`?)",
    );
    assert_has(&p, "test.toml:6:1: `api.max_body`: unknown key `max_body`");
    assert_has(
        &p,
        "test.toml:11:1: `namespaces[0].subscibe`: unknown key `subscibe` (did you mean `subscribe`?)",
    );
    assert_has(&p, "test.toml:13:2: `typo`: unknown key `typo`");
    assert_has(
        &p,
        "environment variable PLEXUS_SERVER_LISTN: not a setting",
    );
    assert_has(&p, "flag --set server.nope: `server.nope` is not a setting");
    // In file order, then the environment, then flags.
    assert!(
        p[0].starts_with("test.toml:2:")
            && p[4].starts_with("environment")
            && p[5].starts_with("flag"),
        "{p:#?}"
    );
}

#[test]
fn wrong_types_are_errors_with_their_location() {
    let file = "[client]\nmax_subscriptions = \"many\"\nanonymous = 1\nping_interval_ms = -5\n[backend]\nforward_headers = \"cookie\"\n";
    let p = problems(load_with(
        file,
        &[
            ("PLEXUS_CLIENT_REQUESTS_BURST", "lots"),
            ("PLEXUS_METRICS_ENABLED", "yes"),
        ],
        &[("client.max_pending_requests", "-1")],
    ));
    assert_has(
        &p,
        "test.toml:2:1: `client.max_subscriptions`: expected a non-negative integer, found string",
    );
    assert_has(
        &p,
        "test.toml:3:1: `client.anonymous`: expected a boolean, found integer",
    );
    assert_has(
        &p,
        "test.toml:4:1: `client.ping_interval_ms`: expected a non-negative integer",
    );
    assert_has(
        &p,
        "test.toml:6:1: `backend.forward_headers`: expected an array, found string",
    );
    assert_has(
        &p,
        "environment variable PLEXUS_CLIENT_REQUESTS_BURST: `client.requests_burst`: expected a non-negative integer, found `lots`",
    );
    assert_has(
        &p,
        "environment variable PLEXUS_METRICS_ENABLED: `metrics.enabled`: expected `true` or `false`",
    );
    assert_has(
        &p,
        "flag --set client.max_pending_requests: `client.max_pending_requests`: expected a non-negative integer",
    );
    let p = problems(load_with("", &[("PLEXUS_NAMESPACES", "[{name = 1}]")], &[]));
    assert_has(
        &p,
        "environment variable PLEXUS_NAMESPACES: `namespaces`: [0].name: expected a string, found integer",
    );
}

#[test]
fn syntax_errors_have_a_location() {
    let p = problems(load_with("[server]\nlisten = \"unterminated\n", &[], &[]));
    assert!(p[0].starts_with("test.toml:2:"), "{p:#?}");
}

#[test]
fn invalid_values_are_errors_with_their_location() {
    let file = r#"[server]
listen = "not an address"
[client]
max_subscriptions = 0
[jwt]
hmac_secret = "short"
ecdsa_public_key = "/no/such/key.pem"
rsa_public_key = "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n"
[api]
key = "short"
[backend]
connect_url = "gopher://secure.example/connect"
rpc_url = "ftp://x"
rpc_urls = { "m" = "" }
forward_headers = ["bad header"]
[[namespaces]]
name = "a"
channels = "a:*"
subscribe = "backend"
publish = "everyone"
history_ttl_ms = 1000
recovery = true
join_leave = "users"
[[namespaces]]
name = "a"
regex = "(unclosed"
subscribe = "token"
[[namespaces]]
channels = "x"
regex = "x"
join_leave = "sometimes"
rooms = true
"#;
    let p = problems(load_with(file, &[], &[]));
    for expected in [
        "test.toml:2:1: `server.listen`: not an address",
        "test.toml:4:1: `client.max_subscriptions`: must be greater than 0",
        "test.toml:6:1: `jwt.hmac_secret`: must be at least 32 bytes long",
        "test.toml:7:1: `jwt.ecdsa_public_key`: cannot read /no/such/key.pem",
        "test.toml:8:1: `jwt.rsa_public_key`: not an RSA public key",
        "test.toml:10:1: `api.key`: must be at least 16 characters long",
        "test.toml:12:1: `backend.connect_url`: expected an http:// or https:// URL",
        "test.toml:13:1: `backend.rpc_url`: expected an http:// or https:// URL",
        "`backend.rpc_urls.m`",
        "test.toml:15:20: `backend.forward_headers[0]`: `bad header` is not a header name",
        "test.toml:19:1: `namespaces[0].subscribe`: `backend` needs `backend.subscribe_url`",
        "test.toml:20:1: `namespaces[0].publish`: `everyone`: expected nobody, anyone, subscribers, authenticated or backend",
        "`namespaces[0].history_size`: `history_ttl_ms` is set",
        "test.toml:22:1: `namespaces[0].recovery`: recovery needs history",
        "test.toml:23:1: `namespaces[0].join_leave`: join/leave pushes need `presence = true`",
        "test.toml:25:1: `namespaces[1].name`: a namespace named `a` comes earlier",
        "test.toml:26:1: `namespaces[1].regex`: bad regex",
        "`namespaces[2].name`: every namespace needs a `name`",
        "`namespaces[2].regex`: give `channels` or `regex`, not both",
        "test.toml:31:1: `namespaces[2].join_leave`: `sometimes`: expected off, users or connections",
        "test.toml:32:1: `namespaces[2].rooms`: rooms need `presence = true`",
    ] {
        assert_has(&p, expected);
    }
}

#[test]
fn a_token_namespace_needs_a_jwt_key() {
    let p = problems(load_with(
        "[[namespaces]]\nname = \"p\"\nchannels = \"p:*\"\nsubscribe = \"token\"\n",
        &[],
        &[],
    ));
    assert_has(
        &p,
        "`namespaces[0].subscribe`: `token` needs a key in [jwt]",
    );
}

#[test]
fn pem_keys_are_read_from_files_relative_to_the_configuration() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let sources = Sources {
        file: Some(config::ConfigFile {
            path: dir.join("plexus.toml"),
            text: "[jwt]\nrsa_public_key = \"keys/rsa_public.pem\"\necdsa_public_key = \"keys/ec_public.pem\"\n".into(),
        }),
        ..Sources::default()
    };
    let loaded = config::load(&sources).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.jwt().is_some());
    // Inline PEM text works too.
    let inline = format!(
        "[jwt]\necdsa_public_key = '''\n{}'''\n",
        String::from_utf8(key("ec_public.pem")).unwrap()
    );
    assert!(load(&inline).jwt().is_some());
}

#[test]
fn every_client_limit_is_configurable() {
    type Get = fn(&Limits) -> u64;
    let cases: &[(&str, u64, Get)] = &[
        ("auth_timeout_ms", 1234, |l| {
            l.auth_timeout.as_millis() as u64
        }),
        ("max_message_bytes", 2048, |l| l.max_message_bytes as u64),
        ("max_subscriptions", 7, |l| l.max_subscriptions as u64),
        ("max_channel_bytes", 64, |l| l.max_channel_bytes as u64),
        ("outbound_queue_bytes_max", 99_999, |l| {
            l.outbound_queue_bytes_max as u64
        }),
        ("max_connections_per_user", 3, |l| {
            l.max_connections_per_user as u64
        }),
        ("requests_per_second", 11, |l| l.requests_per_second.into()),
        ("requests_burst", 12, |l| l.requests_burst.into()),
        ("max_pending_requests", 13, |l| {
            l.max_pending_requests as u64
        }),
        ("command_timeout_ms", 1400, |l| {
            l.command_timeout.as_millis() as u64
        }),
        ("ping_interval_ms", 1500, |l| {
            l.ping_interval.as_millis() as u64
        }),
        ("max_missed_pongs", 5, |l| l.max_missed_pongs.into()),
        ("recovery_max_publications", 17, |l| {
            l.recovery_max_publications as u64
        }),
        ("history_max", 18, |l| l.client_history_max as u64),
        ("max_metadata_bytes", 1900, |l| l.max_metadata_bytes as u64),
        ("mailbox_max_messages", 20, |l| {
            l.mailbox_max_messages as u64
        }),
        ("mailbox_lifetime_ms", 2100, |l| {
            l.mailbox_lifetime.as_millis() as u64
        }),
        ("mail_ttl_ms", 2200, |l| l.mail_ttl.as_millis() as u64),
        ("mail_redelivery_pace_ms", 23, |l| {
            l.mail_redelivery_pace.as_millis() as u64
        }),
        ("room_list_max", 24, |l| l.room_list_max as u64),
        ("direct_list_max", 25, |l| l.direct_list_max as u64),
    ];
    for (key, value, get) in cases {
        let loaded = load(&format!("[client]\n{key} = {value}\n"));
        assert_eq!(get(loaded.limits()), *value, "{key}");
        let env_name = format!("PLEXUS_CLIENT_{}", key.to_uppercase());
        let loaded = load_with("", &[(env_name.as_str(), &(value + 1).to_string())], &[]).unwrap();
        assert_eq!(get(loaded.limits()), value + 1, "{env_name}");
    }
    assert!(
        !load("[client]\npush_latency = false\n")
            .limits()
            .push_latency
    );
    let loaded = load("[server]\nshutdown_timeout_ms = 777\n");
    assert_eq!(loaded.limits().shutdown_timeout, Duration::from_millis(777));
}

#[tokio::test]
async fn with_a_file_nothing_is_allowed_that_the_file_does_not_allow() {
    let loaded = load(&format!("[jwt]\nhmac_secret = \"{SECRET}\"\n"));
    assert!(!loaded.dev_mode);
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("no [[namespaces]]")),
        "{:?}",
        loaded.warnings
    );
    let server = serve_loaded(loaded).await;
    let mut anon = Client::connect(&server.ws_url()).await;
    assert_eq!(anon.hello["auth"], "required");
    assert_eq!(
        anon.request("subscribe", json!({"channel": "x"}))
            .await
            .unwrap_err()["code"],
        101
    );
    let (mut c, r) = connect_token(
        &server.ws_url(),
        &hs(json!({"sub": "a"}), plexus_server::jwt::Algorithm::HS256),
    )
    .await;
    r.unwrap();
    for channel in ["x", "chat:1", "news"] {
        assert_eq!(
            c.request("subscribe", json!({"channel": channel}))
                .await
                .unwrap_err()["code"],
            105
        );
        assert_eq!(
            c.request("publish", json!({"channel": channel, "data": 1}))
                .await
                .unwrap_err()["code"],
            105
        );
    }
    assert_eq!(
        c.request("call", json!({"method": "echo"}))
            .await
            .unwrap_err()["code"],
        103
    );
    let empty = load("");
    assert!(
        empty
            .warnings
            .iter()
            .any(|w| w.contains("no way to authenticate")),
        "{:?}",
        empty.warnings
    );
}

#[tokio::test]
async fn without_a_file_the_server_runs_in_development_mode() {
    let loaded = config::load(&Sources::default()).unwrap();
    assert!(loaded.dev_mode);
    let server = serve_loaded(loaded).await;
    let mut c = Client::connect(&server.ws_url()).await;
    assert_eq!(c.hello["auth"], "optional");
    c.request("subscribe", json!({"channel": "anything"}))
        .await
        .unwrap();
    c.request("publish", json!({"channel": "anything", "data": 1}))
        .await
        .unwrap();
    assert_eq!(c.push("pub").await["data"], 1);
}

#[tokio::test]
async fn dev_mode_can_be_set_explicitly_and_keeps_configured_namespaces() {
    let file = "[server]\ndev_mode = true\n[[namespaces]]\nname = \"ro\"\nchannels = \"ro:*\"\nsubscribe = \"anyone\"\npublish = \"nobody\"\n";
    let server = serve(file).await;
    let mut c = Client::connect(&server.ws_url()).await;
    c.request("subscribe", json!({"channel": "other"}))
        .await
        .unwrap();
    c.request("subscribe", json!({"channel": "ro:1"}))
        .await
        .unwrap();
    assert_eq!(
        c.request("publish", json!({"channel": "ro:1", "data": 1}))
            .await
            .unwrap_err()["code"],
        105
    );
    // And the other way round: a bare server with dev_mode = false is closed.
    let loaded = load_with("", &[], &[("server.dev_mode", "false")]);
    assert!(!loaded.unwrap().dev_mode);
}

#[tokio::test]
async fn client_limits_apply_to_connections() {
    let server = serve("[client]\nanonymous = true\nmax_subscriptions = 1\nmax_message_bytes = 2048\nping_interval_ms = 700\nauth_timeout_ms = 300\n[[namespaces]]\nname = \"all\"\nchannels = \"*\"\nsubscribe = \"anyone\"\n").await;
    let mut c = Client::connect(&server.ws_url()).await;
    assert_eq!(c.hello["limits"]["max_message_bytes"], 2048);
    assert_eq!(c.hello["limits"]["max_subscriptions"], 1);
    assert_eq!(c.hello["ping_interval_ms"], 700);
    c.request("subscribe", json!({"channel": "a"}))
        .await
        .unwrap();
    assert_eq!(
        c.request("subscribe", json!({"channel": "b"}))
            .await
            .unwrap_err()["code"],
        106
    );

    let closed = serve(&format!(
        "[client]\nauth_timeout_ms = 300\n[jwt]\nhmac_secret = \"{SECRET}\"\n"
    ))
    .await;
    let mut c = Client::connect(&closed.ws_url()).await;
    assert_eq!(c.hello["auth_timeout_ms"], 300);
    assert_eq!(c.closed().await.0, 4003);
}

#[tokio::test]
async fn namespace_options_apply_to_channels() {
    let file = format!(
        r#"
[jwt]
hmac_secret = "{SECRET}"
[[namespaces]]
name = "quiet"
channels = "quiet:*"
subscribe = "authenticated"
publish = "authenticated"
publisher_info = false
[[namespaces]]
name = "room"
regex = "room-[0-9]+"
subscribe = "authenticated"
publish = "subscribers"
history_size = 5
history_ttl_ms = 60000
recovery = true
presence = true
join_leave = "users"
"#
    );
    let server = serve(&file).await;
    let token = |u: &str| hs(json!({"sub": u}), plexus_server::jwt::Algorithm::HS256);
    let (mut a, _) = connect_token(&server.ws_url(), &token("alice")).await;
    let (mut b, _) = connect_token(&server.ws_url(), &token("bob")).await;

    a.request("subscribe", json!({"channel": "quiet:1"}))
        .await
        .unwrap();
    a.request("publish", json!({"channel": "quiet:1", "data": 1}))
        .await
        .unwrap();
    assert!(
        a.push("pub").await.get("publisher").is_none(),
        "publisher_info = false"
    );

    assert_eq!(
        b.request("subscribe", json!({"channel": "room-x"}))
            .await
            .unwrap_err()["code"],
        105,
        "the regex must match the whole name"
    );
    assert_eq!(
        b.request("publish", json!({"channel": "room-1", "data": 0}))
            .await
            .unwrap_err()["code"],
        105,
        "subscribers only"
    );
    let position = b
        .request("subscribe", json!({"channel": "room-1"}))
        .await
        .unwrap();
    a.request("subscribe", json!({"channel": "room-1"}))
        .await
        .unwrap();
    assert_eq!(b.push("join").await["user"], "alice");
    a.request("publish", json!({"channel": "room-1", "data": "m1"}))
        .await
        .unwrap();
    let p = b.push("pub").await;
    assert_eq!(p["publisher"]["user"], "alice");
    let stats = b
        .request("presence_stats", json!({"channel": "room-1"}))
        .await
        .unwrap();
    assert_eq!(stats["users"], 2);

    // Recovery from the position b had before.
    let (mut b2, _) = connect_token(&server.ws_url(), &token("bob")).await;
    let since = json!({"offset": position["offset"], "epoch": position["epoch"]});
    let r = b2
        .request("subscribe", json!({"channel": "room-1", "since": since}))
        .await
        .unwrap();
    assert_eq!(r["recovered"], true);
    assert_eq!(r["publications"][0]["data"], "m1");
}

#[tokio::test]
async fn graceful_shutdown_uses_the_configured_timeout() {
    let server = serve("[server]\nshutdown_timeout_ms = 2000\n[client]\nanonymous = true\n").await;
    let mut c = Client::connect(&server.ws_url()).await;
    let (drained, (code, _)) = tokio::join!(server.shutdown(), c.closed());
    assert!(drained, "every session ended within the timeout");
    assert_eq!(code, 4000);
}

#[test]
fn every_socketio_setting_is_configurable() {
    use plexus_server::socketio::SocketIoConfig;
    let enabled = "[socketio]\nenabled = true\n";
    let served = |loaded: &config::Loaded| -> SocketIoConfig {
        loaded.socketio().expect("Socket.IO is served").clone()
    };
    // Unset keys are SocketIoConfig's defaults, so the section and the library agree.
    assert_eq!(
        format!("{:?}", served(&load(enabled))),
        format!("{:?}", SocketIoConfig::default())
    );

    type Get = fn(&SocketIoConfig) -> u64;
    let cases: &[(&str, u64, Get)] = &[
        ("ping_interval_ms", 1100, |s| {
            s.ping_interval.as_millis() as u64
        }),
        ("ping_timeout_ms", 1200, |s| {
            s.ping_timeout.as_millis() as u64
        }),
        ("max_payload_bytes", 1300, |s| s.max_payload_bytes as u64),
        ("max_polling_sessions", 14, |s| {
            s.max_polling_sessions as u64
        }),
        ("max_buffered_packets", 15, |s| {
            s.max_buffered_packets as u64
        }),
        ("max_attachments", 16, |s| s.max_attachments as u64),
        ("max_namespaces", 17, |s| s.max_namespaces as u64),
        ("upgrade_timeout_ms", 1800, |s| {
            s.upgrade_timeout.as_millis() as u64
        }),
        ("connect_timeout_ms", 1900, |s| {
            s.connect_timeout.as_millis() as u64
        }),
    ];
    for (key, value, get) in cases {
        let loaded = load(&format!("{enabled}{key} = {value}\n"));
        assert_eq!(get(&served(&loaded)), *value, "{key}");
        let env_name = format!("PLEXUS_SOCKETIO_{}", key.to_uppercase());
        let env = [
            ("PLEXUS_SOCKETIO_ENABLED", "true"),
            (env_name.as_str(), &(value + 1).to_string()),
        ];
        let loaded = load_with("", &env, &[]).unwrap();
        assert_eq!(get(&served(&loaded)), value + 1, "{env_name}");
    }

    let file = format!(
        "{enabled}path = \"/rt/\"\nnamespaces = [\"/admin\", \"/chat\"]\ncors_origins = [\"https://app.example\"]\n"
    );
    let s = served(&load(&file));
    assert_eq!(s.path, "/rt/");
    assert_eq!(s.namespaces, ["/admin", "/chat"]);
    assert!(!s.any_namespace, "with a file, only the listed namespaces");
    assert_eq!(s.cors_origins, ["https://app.example"]);
    let env = [
        ("PLEXUS_SOCKETIO_ENABLED", "true"),
        ("PLEXUS_SOCKETIO_PATH", "/io/"),
        ("PLEXUS_SOCKETIO_NAMESPACES", "/a, /b"),
        ("PLEXUS_SOCKETIO_CORS_ORIGINS", r#"["*"]"#),
    ];
    let s = served(&load_with("", &env, &[]).unwrap());
    assert_eq!(s.path, "/io/");
    assert_eq!(s.namespaces, ["/a", "/b"]);
    assert_eq!(s.cors_origins, ["*"]);
    // Flags too, and the environment wins over the file.
    let loaded = load_with(
        &file,
        &[("PLEXUS_SOCKETIO_PATH", "/env/")],
        &[("socketio.max_namespaces", "3")],
    )
    .unwrap();
    assert_eq!(served(&loaded).path, "/env/");
    assert_eq!(served(&loaded).max_namespaces, 3);
}

#[test]
fn socketio_is_off_with_a_file_and_on_in_development_mode() {
    assert!(load("").socketio().is_none(), "off by default with a file");
    assert!(load("[socketio]\nenabled = false\n").socketio().is_none());
    assert!(
        load_with("", &[("PLEXUS_SOCKETIO_ENABLED", "false")], &[])
            .unwrap()
            .socketio()
            .is_none()
    );
    assert!(
        load_with(
            "[socketio]\nenabled = false\n",
            &[],
            &[("socketio.enabled", "true")]
        )
        .unwrap()
        .socketio()
        .is_some(),
        "a flag wins over the file"
    );

    // Development mode serves it without being asked, every namespace open.
    let dev = config::load(&Sources::default()).unwrap();
    let s = dev.socketio().expect("served in development mode");
    assert_eq!(s.path, "/socket.io/");
    assert!(s.any_namespace);
    assert!(
        dev.summary()
            .iter()
            .any(|l| l == "Socket.IO: on (/socket.io/, every namespace)")
    );

    // A configured section replaces the development default; listed namespaces are the only
    // ones open.
    let dev = load(
        "[server]\ndev_mode = true\n[socketio]\npath = \"/rt/\"\nping_interval_ms = 900\nnamespaces = [\"/admin\"]\n",
    );
    let s = dev.socketio().expect("served in development mode");
    assert_eq!(s.path, "/rt/");
    assert_eq!(s.ping_interval, Duration::from_millis(900));
    assert!(!s.any_namespace);
    assert_eq!(s.namespaces, ["/admin"]);
    assert!(
        dev.summary()
            .iter()
            .any(|l| l == "Socket.IO: on (/rt/, namespaces /, /admin)")
    );

    // `enabled = false` cannot turn it off in development mode: said, not ignored silently.
    let dev = load("[server]\ndev_mode = true\n[socketio]\nenabled = false\n");
    assert!(dev.socketio().is_some());
    assert!(
        dev.warnings
            .iter()
            .any(|w| w.contains("`socketio.enabled = false` has no effect in development mode")),
        "{:?}",
        dev.warnings
    );
    assert!(load("").summary().iter().any(|l| l == "Socket.IO: off"));
}

#[test]
fn invalid_socketio_values_are_errors_with_their_location() {
    let file = r#"[socketio]
enabled = true
path = "rt/"
ping_interval_ms = 0
ping_timeout_ms = 0
upgrade_timeout_ms = 0
max_payload_bytes = 0
max_polling_sessions = 0
max_buffered_packets = 0
max_attachments = 0
max_namespaces = 0
namespaces = ["/ok", "admin"]
cors_origins = ["*", "https://app.example/"]
connect_timeout_ms = 0
"#;
    let p = problems(load_with(file, &[], &[]));
    for expected in [
        "test.toml:3:1: `socketio.path`: `rt/`: must start with `/`",
        "test.toml:4:1: `socketio.ping_interval_ms`: must be greater than 0",
        "test.toml:5:1: `socketio.ping_timeout_ms`: must be greater than 0",
        "test.toml:6:1: `socketio.upgrade_timeout_ms`: must be greater than 0",
        "test.toml:7:1: `socketio.max_payload_bytes`: must be greater than 0",
        "test.toml:8:1: `socketio.max_polling_sessions`: must be greater than 0",
        "test.toml:9:1: `socketio.max_buffered_packets`: must be greater than 0",
        "test.toml:10:1: `socketio.max_attachments`: must be greater than 0",
        "test.toml:11:1: `socketio.max_namespaces`: must be greater than 0",
        "test.toml:12:22: `socketio.namespaces[1]`: `admin`: a namespace starts with `/`",
        "test.toml:13:22: `socketio.cors_origins[1]`: `https://app.example/`: expected `*` or an origin",
        "test.toml:14:1: `socketio.connect_timeout_ms`: must be greater than 0",
    ] {
        assert_has(&p, expected);
    }
    assert_eq!(p.len(), 12, "{p:#?}");

    // From the environment and flags, with theirs; checked even while `enabled = false`
    // (development mode serves it anyway).
    let p = problems(load_with(
        "",
        &[
            ("PLEXUS_SOCKETIO_PATH", "socket.io"),
            ("PLEXUS_SOCKETIO_NAMESPACES", "/a,b"),
            ("PLEXUS_SOCKETIO_PING_TIMEOUT_MS", "0"),
        ],
        &[("socketio.max_attachments", "0")],
    ));
    for expected in [
        "environment variable PLEXUS_SOCKETIO_PATH: `socketio.path`: `socket.io`: must start with `/`",
        "environment variable PLEXUS_SOCKETIO_NAMESPACES: `socketio.namespaces[1]`: `b`: a namespace starts with `/`",
        "environment variable PLEXUS_SOCKETIO_PING_TIMEOUT_MS: `socketio.ping_timeout_ms`: must be greater than 0",
        "flag --set socketio.max_attachments: `socketio.max_attachments`: must be greater than 0",
    ] {
        assert_has(&p, expected);
    }

    // Wrong types and unknown keys, like every section.
    let p = problems(load_with(
        "[socketio]\nenabled = \"yes\"\nnamespaces = \"/a\"\npingInterval = 1\n",
        &[("PLEXUS_SOCKETIO_MAX_NAMESPACES", "-1")],
        &[],
    ));
    assert_has(
        &p,
        "test.toml:2:1: `socketio.enabled`: expected a boolean, found string",
    );
    assert_has(
        &p,
        "test.toml:3:1: `socketio.namespaces`: expected an array, found string",
    );
    assert_has(
        &p,
        "test.toml:4:1: `socketio.pingInterval`: unknown key `pingInterval`",
    );
    assert_has(
        &p,
        "environment variable PLEXUS_SOCKETIO_MAX_NAMESPACES: `socketio.max_namespaces`: expected a non-negative integer",
    );

    // Paths the server's own routes use, or that no request can reach; values no client timer
    // or buffer can hold.
    for (path, expected) in [
        ("/", "`/` is the server's own"),
        ("/ws/", "`/ws/`: `/ws` is the server's own"),
        ("/api/io/", "`/api/io/`: `/api` is the server's own"),
        ("/socket io/", "`/socket io/`: ` ` is not allowed"),
        ("/{io}/", "`/{io}/`: `{` is not allowed"),
        (
            "/a//b/",
            "`/a//b/`: empty, `.` and `..` segments are not allowed",
        ),
    ] {
        let p = problems(load_with(
            &format!("[socketio]\npath = \"{path}\"\n"),
            &[],
            &[],
        ));
        assert_has(&p, &format!("test.toml:2:1: `socketio.path`: {expected}"));
    }
    let p = problems(load_with(
        "[socketio]\nping_interval_ms = 2000000000\nping_timeout_ms = 2000000000\nupgrade_timeout_ms = 3000000000\nmax_buffered_packets = 5000000000\n",
        &[],
        &[],
    ));
    assert_has(
        &p,
        "test.toml:3:1: `socketio.ping_timeout_ms`: `ping_interval_ms` + `ping_timeout_ms` must be at most 2147483647",
    );
    assert_has(
        &p,
        "test.toml:4:1: `socketio.upgrade_timeout_ms`: must be at most 2147483647",
    );
    assert_has(
        &p,
        "test.toml:5:1: `socketio.max_buffered_packets`: must be at most 4294967295",
    );
}

/// The status and body of `GET path` on a server.
async fn get(server: &plexus_server::RunningServer, path: &str) -> (u16, String) {
    let (status, _, body) = http(server.local_addr(), "GET", path, &[], "").await;
    (status.as_u16(), String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn socketio_is_served_where_the_configuration_says() {
    const HANDSHAKE: &str = "?EIO=4&transport=polling";
    let server = serve("[socketio]\nenabled = true\npath = \"/rt/\"\nping_interval_ms = 4321\nping_timeout_ms = 1234\nmax_payload_bytes = 5678\n").await;
    let (status, body) = get(&server, &format!("/rt/{HANDSHAKE}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("0{\"sid\":"),
        "an Engine.IO open packet: {body}"
    );
    let open: serde_json::Value = serde_json::from_str(&body[1..]).unwrap();
    assert_eq!(open["pingInterval"], 4321);
    assert_eq!(open["pingTimeout"], 1234);
    assert_eq!(open["maxPayload"], 5678);
    assert_eq!(
        get(&server, &format!("/socket.io/{HANDSHAKE}")).await.0,
        404
    );

    for off in ["[socketio]\nenabled = false\n", ""] {
        let server = serve(off).await;
        assert_eq!(
            get(&server, &format!("/socket.io/{HANDSHAKE}")).await.0,
            404,
            "{off:?}"
        );
    }

    // Development mode serves the default path; a configured path replaces it.
    let dev = serve_loaded(config::load(&Sources::default()).unwrap()).await;
    let (status, body) = get(&dev, &format!("/socket.io/{HANDSHAKE}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("0{\"sid\":"), "{body}");
    let dev = serve("[server]\ndev_mode = true\n[socketio]\npath = \"/rt/\"\n").await;
    assert!(
        get(&dev, &format!("/rt/{HANDSHAKE}"))
            .await
            .1
            .starts_with("0{\"sid\":")
    );
    assert_eq!(get(&dev, &format!("/socket.io/{HANDSHAKE}")).await.0, 404);
}

#[tokio::test]
async fn a_rooms_namespace_makes_its_channels_rooms() {
    let server = serve(&format!(
        r#"
[api]
key = "{API_KEY}"
[[namespaces]]
name = "rooms"
channels = "room:*"
subscribe = "anyone"
publish = "subscribers"
presence = true
rooms = true
[[namespaces]]
name = "other"
channels = "*"
subscribe = "anyone"
"#
    ))
    .await;
    api_ok(
        &server,
        "room_create",
        serde_json::json!({"room": "room:1"}),
    )
    .await;
    let (status, body) = api(&server, "room_create", serde_json::json!({"room": "lobby"})).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_u64()),
        (403, Some(105)),
        "{body}"
    );
}

#[test]
fn chat_service_options_and_their_bounds() {
    // Off with a file, on in development mode with rooms management, direct messages, user
    // list updates and the `user` login parameter — each still settable.
    assert!(load("").chat_service().is_none());
    let dev = config::load(&Sources::default()).unwrap();
    let c = dev.chat_service().expect("served in development mode");
    assert!(c.enable_rooms_management && c.enable_direct_messages && c.enable_userlist_updates);
    assert_eq!(c.login_query.as_deref(), Some("user"));
    let dev = load(
        "[server]\ndev_mode = true\n[chat_service]\nenable_direct_messages = false\nlogin_query = \"\"\nhistory_max_get_messages = 2\n",
    );
    let c = dev.chat_service().unwrap();
    assert!(!c.enable_direct_messages && c.enable_rooms_management);
    assert_eq!(
        (c.login_query.as_deref(), c.history_max_get_messages),
        (None, 2)
    );
    let c = load("[chat_service]\nenabled = true\nuse_raw_error_objects = true\n");
    let c = c.chat_service().expect("enabled");
    assert!(c.use_raw_error_objects && !c.enable_rooms_management);

    let file = r#"[chat_service]
enabled = true
namespace = "chat"
channel_prefix = ""
history_max_size = 1000001
history_max_get_messages = 1000001
room_list_size_limit = 0
direct_list_size_limit = 1000001
login_query = "a=b"
backend_hooks = ["roomJoinBefore", "teleportBefore"]
"#;
    let p = problems(load_with(file, &[], &[]));
    for expected in [
        "`chat_service.namespace`",
        "`chat_service.channel_prefix`: must not be empty",
        "`chat_service.history_max_size`: must be at most 1000000",
        "`chat_service.history_max_get_messages`: must be at most 1000000",
        "`chat_service.room_list_size_limit`: must be greater than 0",
        "`chat_service.direct_list_size_limit`: must be at most 1000000",
        "`chat_service.login_query`: must be a plain query parameter name",
        "`chat_service.backend_hooks[1]`: `teleportBefore` is not a chat-service hook",
        "`chat_service.backend_hooks`: needs `backend.chat_service_url`",
    ] {
        assert_has(&p, expected);
    }
    assert_eq!(p.len(), 9, "{p:#?}");
}

#[test]
fn mesa_options_and_their_bounds() {
    // Off with a file; on in development mode with sync and the token as user id — sync still
    // settable.
    assert!(load("").mesa().is_none());
    let dev = config::load(&Sources::default()).unwrap();
    let m = dev.mesa().expect("served in development mode");
    assert!(m.sync && m.token_is_user && m.heartbeat);
    assert_eq!((m.path.as_str(), m.auth_timeout_ms), ("/mesa", 10_000));
    let m = load("[server]\ndev_mode = true\n[mesa]\nsync = false\n");
    assert!(!m.mesa().unwrap().sync);
    let m = load(
        "[mesa]\nenabled = true\npath = \"/realtime\"\nreconnect_interval_ms = 5000\nenforce_version = \"1.5.3\"\nnamespace = \"app\"\nsync = true\nredelivery_interval_ms = 10\n",
    );
    let m = m.mesa().expect("enabled");
    assert!(m.sync && !m.token_is_user);
    assert_eq!(m.path, "/realtime");
    assert_eq!(m.reconnect_interval_ms, Some(5000));
    assert_eq!(m.enforce_version.as_deref(), Some("1.5.3"));
    assert_eq!(m.ws_channel(), "ws_app");
    assert_eq!(m.redelivery_interval_ms, 10);

    let file = r#"[mesa]
enabled = true
path = "mesa"
auth_timeout_ms = 0
reconnect_interval_ms = 2147483648
redelivery_interval_ms = 60001
enforce_version = "1 2"
namespace = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
"#;
    let p = problems(load_with(file, &[], &[]));
    for expected in [
        "`mesa.path`: must be a URL path",
        "`mesa.auth_timeout_ms`: must be between 1 and 3600000",
        "`mesa.reconnect_interval_ms`: must be at most 2147483647",
        "`mesa.redelivery_interval_ms`: must be at most 60000",
        "`mesa.enforce_version`: must be at most 64 bytes",
        "`mesa.namespace`: must be at most 64 bytes",
    ] {
        assert_has(&p, expected);
    }
    assert_eq!(p.len(), 6, "{p:#?}");
    let p = problems(load_with(
        "[mesa]\nenabled = true\npath = \"/ws\"\n",
        &[],
        &[],
    ));
    assert_has(&p, "`mesa.path`: `/ws` is one of Plexus's own paths");
}

#[test]
fn mesa_portal_options_and_their_bounds() {
    // A queue, or Mesa's format (which needs Redis).
    let m = load(
        "[mesa]\nenabled = true\nportals = \"queue\"\nportal_group = \"workers\"\nportal_backlog_max = 5\nportal_lease_ms = 1000\n",
    );
    let m = m.mesa().unwrap();
    assert_eq!(m.portals, plexus_server::mesa::PortalMode::Queue);
    assert_eq!(
        (
            m.portal_group.as_str(),
            m.portal_backlog_max,
            m.portal_lease_ms
        ),
        ("workers", 5, 1000)
    );
    let m = load(
        "engine = \"redis\"\n[mesa]\nenabled = true\nportals = \"mesa\"\nnamespace = \"app\"\n",
    );
    let m = m.mesa().unwrap();
    assert_eq!(m.portals, plexus_server::mesa::PortalMode::Mesa);
    assert_eq!(
        (m.portal_channel().as_str(), m.portal_pool().as_str()),
        ("portal_app", "available_portals_pool_app")
    );
    let file = r#"[mesa]
enabled = true
portals = "mesa"
portal_group = ""
portal_backlog_max = 0
portal_lease_ms = 99
"#;
    let p = problems(load_with(file, &[], &[]));
    for expected in [
        "`mesa.portals`: `mesa` (Mesa's Portal format) needs `engine = \"redis\"`",
        "`mesa.portal_group`: must be 1 to 64 bytes",
        "`mesa.portal_backlog_max`: must be between 1 and 10000000",
        "`mesa.portal_lease_ms`: must be between 100 and 3600000",
    ] {
        assert_has(&p, expected);
    }
    assert_eq!(p.len(), 4, "{p:#?}");
    let p = problems(load_with("[mesa]\nportals = \"kafka\"\n", &[], &[]));
    assert_has(
        &p,
        "`mesa.portals`: `kafka` is not `off`, `queue` or `mesa`",
    );
}

#[tokio::test]
async fn record_sections_set_access_and_limits_and_bad_ones_are_located() {
    let bad = load_with(
        "[[records]]\nname = \"a\"\nrecords = \"a:*\"\nread = \"everyone\"\nmax_records = 0\n[[records]]\nrecords = \"b:*\"\nregex = \"b\"\n",
        &[],
        &[],
    );
    let problems = problems(bad);
    assert_has(&problems, "records[0].read");
    assert_has(&problems, "records[0].max_records");
    assert_has(&problems, "records[1].name");
    assert_has(&problems, "records[1].regex");

    let loaded = load(
        "[client]\nanonymous = true\n[[records]]\nname = \"profiles\"\nrecords = \"profile:*\"\nread = \"anyone\"\nwrite = \"anyone\"\nmax_value_bytes = 16\n[[records]]\nname = \"news\"\nregex = \"news:[0-9]+\"\nread = \"anyone\"\n",
    );
    let server = serve_loaded(loaded).await;
    let mut c = Client::connect(&server.ws_url()).await;
    let written = c
        .request("record_set", json!({"id": "profile:1", "value": {"n": 1}}))
        .await
        .unwrap();
    assert_eq!(written["version"], 1);
    let big = json!({"id": "profile:1", "value": "x".repeat(20)});
    assert_eq!(c.request("record_set", big).await.unwrap_err()["code"], 123);
    assert_eq!(
        c.request("record_get", json!({"id": "news:7"}))
            .await
            .unwrap()["version"],
        0
    );
    let write_news = json!({"id": "news:7", "value": 1});
    assert_eq!(
        c.request("record_set", write_news).await.unwrap_err()["code"],
        105
    );
    // Not development mode: a record no section matches is closed.
    let other = json!({"id": "other"});
    assert_eq!(
        c.request("record_get", other).await.unwrap_err()["code"],
        105
    );
}

#[tokio::test]
async fn the_mesh_section_serves_mesh_where_it_says() {
    let clash = load_with("[mesh]\nenabled = true\npath = \"/ws\"\n", &[], &[]);
    assert_has(&problems(clash), "mesh.path");
    let loaded = load(
        "[client]\nanonymous = true\n[mesh]\nenabled = true\npath = \"/m2\"\nassign_id = true\n",
    );
    let server = serve_loaded(loaded).await;
    let url = format!("ws://{}/m2", server.local_addr());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    use futures_util::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let frame: serde_json::Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(frame["command"], "mesh/assign-id");
}

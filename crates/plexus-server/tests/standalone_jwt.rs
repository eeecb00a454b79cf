//! JWT connection and subscription tokens over real WebSocket connections, with the keys of
//! `tests/keys/`: every accepted algorithm, and each way a token is refused.

mod support;

use plexus_server::jwt::Algorithm;
use serde_json::{Value, json};
use support::*;

/// A server that checks tokens with the HMAC secret and both public keys.
fn config() -> String {
    format!(
        r#"
[client]
ping_interval_ms = 200
[jwt]
hmac_secret = "{SECRET}"
rsa_public_key = "{rsa}"
ecdsa_public_key = "{ec}"
[[namespaces]]
name = "chat"
channels = "chat:*"
subscribe = "authenticated"
publish = "subscribers"
[[namespaces]]
name = "private"
channels = "private:*"
subscribe = "token"
"#,
        rsa = key_path("rsa_public.pem"),
        ec = key_path("ec_public.pem"),
    )
}

fn claims(user: &str) -> Value {
    json!({"sub": user, "exp": now() + 600})
}

async fn refused(token: &str, code: u64, close: u16) {
    let server = serve(&config()).await;
    let (mut c, r) = connect_token(&server.ws_url(), token).await;
    let e = r.expect_err("token refused");
    assert_eq!(e["code"], code, "{e}");
    assert_eq!(c.closed().await.0, close);
    assert_eq!(
        server
            .node()
            .stats()
            .auth_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn every_accepted_algorithm_authenticates() {
    let server = serve(&config()).await;
    let tokens = [
        ("HS256", hs(claims("u1"), Algorithm::HS256)),
        ("HS384", hs(claims("u2"), Algorithm::HS384)),
        ("HS512", hs(claims("u3"), Algorithm::HS512)),
        (
            "RS256",
            pem(claims("u4"), "rsa_private.pem", Algorithm::RS256),
        ),
        (
            "RS512",
            pem(claims("u5"), "rsa_private.pem", Algorithm::RS512),
        ),
        (
            "PS256",
            pem(claims("u6"), "rsa_private.pem", Algorithm::PS256),
        ),
        (
            "ES256",
            pem(claims("u7"), "ec_private.pem", Algorithm::ES256),
        ),
    ];
    for (i, (alg, token)) in tokens.iter().enumerate() {
        let (mut c, r) = connect_token(&server.ws_url(), token).await;
        let result = r.unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(result["user"], format!("u{}", i + 1), "{alg}");
        // Authenticated: an `authenticated` namespace accepts the subscribe.
        c.request("subscribe", json!({"channel": "chat:x"}))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn info_and_channels_claims_reach_the_client() {
    let server = serve(&config()).await;
    let token = hs(
        json!({"sub": "alice", "info": {"name": "Alice"}, "channels": ["chat:alice", "notes:alice"]}),
        Algorithm::HS256,
    );
    let (mut c, r) = connect_token(&server.ws_url(), &token).await;
    let result = r.unwrap();
    assert_eq!(result["info"], json!({"name": "Alice"}));
    // Token channels are trusted: subscribed even where no namespace lets clients in.
    let mut subscribed = vec![
        c.push("subscribed").await["channel"]
            .as_str()
            .unwrap()
            .to_owned(),
        c.push("subscribed").await["channel"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    subscribed.sort();
    assert_eq!(subscribed, ["chat:alice", "notes:alice"]);
    server
        .node()
        .publish("notes:alice", plexus_core::Payload::json(&1).unwrap())
        .await
        .unwrap();
    assert_eq!(c.push("pub").await["data"], 1);
}

#[tokio::test]
async fn an_expired_token_is_refused_with_4506() {
    refused(
        &hs(json!({"sub": "a", "exp": now() - 5}), Algorithm::HS256),
        115,
        4506,
    )
    .await;
}

#[tokio::test]
async fn a_connection_is_closed_with_4506_when_its_token_expires() {
    let server = serve(&config()).await;
    let (mut c, r) = connect_token(
        &server.ws_url(),
        &hs(json!({"sub": "a", "exp": now() + 2}), Algorithm::HS256),
    )
    .await;
    r.unwrap();
    assert_eq!(c.closed().await.0, 4506);
}

#[tokio::test]
async fn malformed_tokens_are_refused_with_4502() {
    for token in [
        "",
        "not-a-token",
        "a.b.c",
        "eyJhbGciOiJIUzI1NiJ9.e30",
        "eyJhbGciOiJIUzI1NiJ9.!!!.sig",
    ] {
        refused(token, 112, 4502).await;
    }
}

#[tokio::test]
async fn a_token_with_a_wrong_signature_is_refused() {
    let forged = plexus_server::jwt::sign(
        &claims("a"),
        &plexus_server::jwt::SigningKey::Hmac(b"another-secret-0123456789abcdefghij".to_vec()),
        Algorithm::HS256,
    )
    .unwrap();
    refused(&forged, 112, 4502).await;
    refused(
        &pem(claims("a"), "rsa_other_private.pem", Algorithm::RS256),
        112,
        4502,
    )
    .await;
    refused(
        &pem(claims("a"), "ec_other_private.pem", Algorithm::ES256),
        112,
        4502,
    )
    .await;
    // A valid signature over other claims: the payload was swapped.
    let good = hs(claims("a"), Algorithm::HS256);
    let other = hs(claims("admin"), Algorithm::HS256);
    let parts: Vec<&str> = good.split('.').collect();
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        other.split('.').nth(1).unwrap(),
        parts[2]
    );
    refused(&swapped, 112, 4502).await;
}

#[tokio::test]
async fn alg_confusion_is_refused() {
    // HS256 "signed" with the server's RSA public key as the HMAC secret: the server checks
    // HS256 with its own HMAC secret, never with the RSA key.
    let confused = plexus_server::jwt::sign(
        &claims("admin"),
        &plexus_server::jwt::SigningKey::Hmac(key("rsa_public.pem")),
        Algorithm::HS256,
    )
    .unwrap();
    refused(&confused, 112, 4502).await;

    // The same against a server that has only the RSA key: HS256 is not accepted at all.
    let rsa_only = format!(
        "[jwt]\nrsa_public_key = \"{}\"\n",
        key_path("rsa_public.pem")
    );
    let server = serve(&rsa_only).await;
    let (_, r) = connect_token(&server.ws_url(), &confused).await;
    let e = r.unwrap_err();
    assert_eq!(e["code"], 112);
    assert!(
        e["message"].as_str().unwrap().contains("not accepted"),
        "{e}"
    );

    // `alg: none` with no signature.
    let none = format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(br#"{"sub":"admin"}"#)
    );
    refused(&none, 112, 4502).await;
    // ES256 signed with an RSA key and RS256 claimed by an EC signature.
    let es_header_rsa_sig = {
        let rs = pem(claims("a"), "rsa_private.pem", Algorithm::RS256);
        let es = pem(claims("a"), "ec_private.pem", Algorithm::ES256);
        let (rs, es): (Vec<&str>, Vec<&str>) = (rs.split('.').collect(), es.split('.').collect());
        format!("{}.{}.{}", es[0], es[1], rs[2])
    };
    refused(&es_header_rsa_sig, 112, 4502).await;
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn audience_issuer_and_not_before_are_checked() {
    let toml =
        format!("[jwt]\nhmac_secret = \"{SECRET}\"\naudience = \"plexus\"\nissuer = \"backend\"\n");
    let server = serve(&toml).await;
    let good = hs(
        json!({"sub": "a", "aud": "plexus", "iss": "backend"}),
        Algorithm::HS256,
    );
    connect_token(&server.ws_url(), &good).await.1.unwrap();
    for bad in [
        json!({"sub": "a", "aud": "other", "iss": "backend"}),
        json!({"sub": "a", "aud": "plexus", "iss": "other"}),
        json!({"sub": "a", "iss": "backend"}),
        json!({"sub": "a", "aud": "plexus", "iss": "backend", "nbf": now() + 3600}),
    ] {
        let (mut c, r) = connect_token(&server.ws_url(), &hs(bad.clone(), Algorithm::HS256)).await;
        assert_eq!(r.unwrap_err()["code"], 112, "{bad}");
        assert_eq!(c.closed().await.0, 4502);
    }
}

#[tokio::test]
async fn a_subscription_token_cannot_open_a_connection() {
    refused(
        &hs(
            json!({"sub": "a", "channel": "private:x"}),
            Algorithm::HS256,
        ),
        112,
        4502,
    )
    .await;
}

#[tokio::test]
async fn subscription_tokens_open_protected_channels() {
    let server = serve(&config()).await;
    let (mut c, r) = connect_token(&server.ws_url(), &hs(claims("bob"), Algorithm::HS256)).await;
    r.unwrap();
    let sub = |token: Option<String>| json!({"channel": "private:room", "token": token});

    let e = c.request("subscribe", sub(None)).await.unwrap_err();
    assert_eq!(e["code"], 105, "no token: {e}");
    let other_user = hs(
        json!({"sub": "eve", "channel": "private:room"}),
        Algorithm::HS256,
    );
    assert_eq!(
        c.request("subscribe", sub(Some(other_user)))
            .await
            .unwrap_err()["code"],
        105
    );
    let other_channel = hs(
        json!({"sub": "bob", "channel": "private:other"}),
        Algorithm::HS256,
    );
    assert_eq!(
        c.request("subscribe", sub(Some(other_channel)))
            .await
            .unwrap_err()["code"],
        105
    );
    let expired = hs(
        json!({"sub": "bob", "channel": "private:room", "exp": now() - 5}),
        Algorithm::HS256,
    );
    assert_eq!(
        c.request("subscribe", sub(Some(expired)))
            .await
            .unwrap_err()["code"],
        115
    );
    let forged = pem(
        json!({"sub": "bob", "channel": "private:room"}),
        "rsa_other_private.pem",
        Algorithm::RS256,
    );
    assert_eq!(
        c.request("subscribe", sub(Some(forged))).await.unwrap_err()["code"],
        105
    );
    assert_eq!(
        c.request("subscribe", sub(Some("garbage".into())))
            .await
            .unwrap_err()["code"],
        105
    );

    // None of those closed the connection; a good token (ES256 here) opens the channel.
    let good = pem(
        json!({"sub": "bob", "channel": "private:room", "exp": now() + 60}),
        "ec_private.pem",
        Algorithm::ES256,
    );
    c.request("subscribe", sub(Some(good))).await.unwrap();
    server
        .node()
        .publish("private:room", plexus_core::Payload::json(&"x").unwrap())
        .await
        .unwrap();
    assert_eq!(c.push("pub").await["data"], "x");
}

#[tokio::test]
async fn anonymous_connections_use_subscription_tokens_without_a_user() {
    let toml = format!(
        "{}\n",
        config().replace("[client]\n", "[client]\nanonymous = true\n")
    );
    let server = serve(&toml).await;
    let mut c = Client::connect(&server.ws_url()).await;
    assert_eq!(c.hello["auth"], "optional");
    let for_bob = hs(
        json!({"sub": "bob", "channel": "private:a"}),
        Algorithm::HS256,
    );
    assert_eq!(
        c.request(
            "subscribe",
            json!({"channel": "private:a", "token": for_bob})
        )
        .await
        .unwrap_err()["code"],
        105
    );
    let anonymous = hs(json!({"sub": "", "channel": "private:a"}), Algorithm::HS256);
    c.request(
        "subscribe",
        json!({"channel": "private:a", "token": anonymous}),
    )
    .await
    .unwrap();
    // `authenticated` namespaces still refuse anonymous connections.
    assert_eq!(
        c.request("subscribe", json!({"channel": "chat:a"}))
            .await
            .unwrap_err()["code"],
        101
    );
}

#[tokio::test]
async fn without_credentials_a_secure_server_refuses() {
    let server = serve(&config()).await;
    let mut c = Client::connect(&server.ws_url()).await;
    assert_eq!(c.hello["auth"], "required");
    assert_eq!(
        c.request("subscribe", json!({"channel": "chat:x"}))
            .await
            .unwrap_err()["code"],
        101
    );
    let e = c
        .request("connect", json!({"credentials": {"password": "x"}}))
        .await
        .unwrap_err();
    assert_eq!(e["code"], 112, "credentials need a connect hook: {e}");
    assert_eq!(c.closed().await.0, 4502);
}

#[tokio::test]
async fn leeway_tolerates_clock_skew() {
    let toml = format!("[jwt]\nhmac_secret = \"{SECRET}\"\nleeway_seconds = 60\n");
    let server = serve(&toml).await;
    let skewed = hs(json!({"sub": "a", "exp": now() - 5}), Algorithm::HS256);
    connect_token(&server.ws_url(), &skewed).await.1.unwrap();
    let too_old = hs(json!({"sub": "a", "exp": now() - 120}), Algorithm::HS256);
    let (mut c, r) = connect_token(&server.ws_url(), &too_old).await;
    assert_eq!(r.unwrap_err()["code"], 115);
    assert_eq!(c.closed().await.0, 4506);
}

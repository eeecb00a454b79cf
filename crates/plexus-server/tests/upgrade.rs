//! The subprotocol choice at the WebSocket upgrade (`docs/protocol.md` §2.2), over real
//! connections: an offer of Plexus v1 is echoed, another Plexus version is accepted and closed
//! with 4501, no offer speaks JSON, and offers that are none of Plexus's are refused with an
//! HTTP 400 whose body names the subprotocols this server speaks.

mod common;

use common::{WAIT, dev, start, try_connect_raw};
use futures_util::StreamExt;
use plexus_core::CloseCode;
use plexus_protocol::Encoding;
use tokio_tungstenite::tungstenite::{Error, Message};

/// The subprotocol the server selected, when the upgrade succeeds; the status and body of its
/// refusal otherwise.
async fn offer(
    url: &str,
    protocols: &[&str],
) -> Result<(Option<String>, common::Ws), (u16, String)> {
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .unwrap();
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocols.join(", ").parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, response)) => {
            let selected = response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok((selected, ws))
        }
        Err(Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            Err((response.status().as_u16(), String::from_utf8(body).unwrap()))
        }
        Err(e) => panic!("the upgrade failed otherwise: {e}"),
    }
}

#[tokio::test]
async fn unknown_subprotocols_are_refused_with_a_400_that_names_the_supported_ones() {
    let server = start(dev()).await;
    let url = server.ws_url();
    for offered in [
        &["graphql-ws"][..],
        &["graphql-ws", "mqtt"],
        // Version 1, but no encoding this server knows.
        &["plexus.v1.cbor"],
    ] {
        let (status, body) = offer(&url, offered)
            .await
            .err()
            .unwrap_or_else(|| panic!("offering {offered:?} must not upgrade"));
        assert_eq!(status, 400, "{offered:?}: {body}");
        assert!(
            body.contains("plexus.v1.json") && body.contains("plexus.v1.msgpack"),
            "the body names the supported subprotocols: {body}"
        );
        for token in offered {
            assert!(body.contains(token), "the body names the offer: {body}");
        }
    }
    // The server is unharmed: the same client with a usable offer gets in.
    assert!(try_connect_raw(&url, &["plexus.v1.json"]).await.is_ok());
}

#[tokio::test]
async fn a_usable_offer_among_unknown_ones_is_selected() {
    let server = start(dev()).await;
    let (selected, ws) = offer(&server.ws_url(), &["graphql-ws", "plexus.v1.msgpack"])
        .await
        .unwrap();
    assert_eq!(selected.as_deref(), Some("plexus.v1.msgpack"));
    let c = common::TestClient::from_ws(ws, Encoding::Msgpack).await;
    assert_eq!(c.hello.version, 1);
}

#[tokio::test]
async fn no_offer_speaks_json_and_another_version_is_closed_with_4501() {
    let server = start(dev()).await;
    let (selected, ws) = offer(&server.ws_url(), &[]).await.unwrap();
    assert_eq!(selected, None);
    let c = common::TestClient::from_ws(ws, Encoding::Json).await;
    assert_eq!(c.hello.version, 1);

    let (selected, mut ws) = offer(&server.ws_url(), &["plexus.v2.json", "graphql-ws"])
        .await
        .unwrap();
    assert_eq!(selected.as_deref(), Some("plexus.v2.json"));
    let message = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Message::Close(Some(frame)) = message else {
        panic!("{message:?}")
    };
    assert_eq!(u16::from(frame.code), CloseCode::UNSUPPORTED_VERSION.0);
}

//! Tokens refused and accepted, over HTTP, WebSocket and SSE; expiry and in-band refresh.

mod common;

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio_tungstenite::tungstenite;
use wire::{Claims, ControlFrame};

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

fn key(name: &str) -> String {
    std::fs::read_to_string(format!("{KEYS}/{name}")).unwrap()
}

fn encode(alg: Algorithm, key: &EncodingKey, c: &Claims) -> String {
    jsonwebtoken::encode(&Header::new(alg), c, key).unwrap()
}

fn unsigned(c: &Claims) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(serde_json::to_vec(c).unwrap())
    )
}

/// The status and error code of a WebSocket upgrade attempt.
async fn ws_refusal(gw: &TestGateway, token: &str) -> (u16, String) {
    match WsClient::connect(&gw.addr, token, "", &[]).await {
        Ok(_) => panic!("upgrade accepted"),
        Err(tungstenite::Error::Http(resp)) => {
            let body: serde_json::Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or(b"{}")).unwrap();
            (resp.status().as_u16(), body["error"]["code"].as_str().unwrap_or("").to_owned())
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[tokio::test]
async fn refused_tokens_get_401_before_any_upgrade() {
    let gw = TestGateway::start(&[
        ("GATEWAY_AUTH_AUDIENCE", "gateway"),
        ("GATEWAY_AUTH_LEEWAY_MS", "0"),
    ]);
    let mut good = Claims::new("u", now(), 600);
    good.aud = Some(wire::claims::Audience::One("gateway".into()));

    let mut expired = good.clone();
    expired.exp = (now() - 10) as f64;
    let mut wrong_aud = good.clone();
    wrong_aud.aud = Some(wire::claims::Audience::One("someone-else".into()));
    let wrong_key = gateway::auth::sign_hs256("another-secret-0123456789", &good);
    let cases = [
        ("none", unsigned(&good), "invalid_token"),
        ("expired", sign(&expired), "token_expired"),
        ("wrong key", wrong_key, "invalid_token"),
        ("wrong audience", sign(&wrong_aud), "invalid_token"),
        ("garbage", "abc.def".to_owned(), "invalid_token"),
    ];
    for (what, token, code) in &cases {
        assert_eq!(ws_refusal(&gw, token).await, (401, code.to_string()), "ws: {what}");
        let sse = SseClient::connect(&gw.http, &gw.url("/v1/sse"), token, "", None).await.unwrap();
        assert_eq!(sse.status, 401, "sse: {what}");
        let (status, body) = gw.get_json("/v1/users/u/presence", token).await;
        assert_eq!((status, body["error"]["code"].as_str().unwrap()), (401, *code), "http: {what}");
    }
    let r = gw.http.get(gw.url("/v1/users/u/presence")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_token");
    assert!(gw.metric("gateway_auth_failures_total").await >= 16.0);

    let mut ws = WsClient::connect(&gw.addr, &sign(&good), "", &[]).await.unwrap();
    ws.hello().await;
}

#[tokio::test]
async fn the_producer_api_needs_the_publish_scope() {
    let gw = TestGateway::start(&[]);
    let user = token("u", None);
    let admin_only = token("ops", Some("gateway.admin"));
    for t in [&user, &admin_only] {
        let (s, body) =
            gw.post_json("/v1/turns", t, &json!({"user_id": "u", "conversation_id": "c"})).await;
        assert_eq!((s, body["error"]["code"].as_str().unwrap()), (403, "insufficient_scope"));
        let (s, _) = gw
            .post_json(
                "/v1/notifications",
                t,
                &json!({"user_id": "u", "category": "c", "title": "t", "body": "b"}),
            )
            .await;
        assert_eq!(s, 403);
    }
    gw.create_turn("u", "c", "t1").await;
    let r = gw
        .http
        .post(gw.url("/v1/turns/t1/events"))
        .bearer_auth(&user)
        .body(r#"{"delta":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The turn's own user may read its state; another user may not see it.
    assert_eq!(gw.get_json("/v1/turns/t1", &user).await.0, 200);
    assert_eq!(gw.get_json("/v1/turns/t1", &token("v", None)).await.0, 404);
    assert_eq!(gw.get_json("/v1/turns/t1", &admin_only).await.0, 200);
    // Presence: own or admin.
    assert_eq!(gw.get_json("/v1/users/u/presence", &user).await.0, 200);
    let (s, body) = gw.get_json("/v1/users/u/presence", &token("v", None)).await;
    assert_eq!((s, body["error"]["code"].as_str().unwrap()), (403, "forbidden"));
    assert_eq!(gw.get_json("/v1/users/u/presence", &admin_only).await.0, 200);
}

#[tokio::test]
async fn rs256_gateway_refuses_alg_confusion_and_none() {
    let public = format!("{KEYS}/rsa_public.pem");
    let gw = TestGateway::start(&[
        ("GATEWAY_AUTH_HS256_SECRET", ""),
        ("GATEWAY_AUTH_PUBLIC_KEY_FILE", &public),
    ]);
    let c = Claims::new("u", now(), 600);
    let rsa = EncodingKey::from_rsa_pem(key("rsa_private.pem").as_bytes()).unwrap();
    let mut ws =
        WsClient::connect(&gw.addr, &encode(Algorithm::RS256, &rsa, &c), "", &[]).await.unwrap();
    ws.hello().await;

    let confused =
        encode(Algorithm::HS256, &EncodingKey::from_secret(key("rsa_public.pem").as_bytes()), &c);
    assert_eq!(ws_refusal(&gw, &confused).await, (401, "invalid_token".into()));
    assert_eq!(ws_refusal(&gw, &unsigned(&c)).await, (401, "invalid_token".into()));
    let other = EncodingKey::from_rsa_pem(key("other_rsa_private.pem").as_bytes()).unwrap();
    assert_eq!(
        ws_refusal(&gw, &encode(Algorithm::RS256, &other, &c)).await,
        (401, "invalid_token".into())
    );
    let ec = EncodingKey::from_ec_pem(key("ec_private.pem").as_bytes()).unwrap();
    assert_eq!(
        ws_refusal(&gw, &encode(Algorithm::ES256, &ec, &c)).await,
        (401, "invalid_token".into())
    );
}

#[tokio::test]
async fn a_connection_closes_4001_at_expiry_unless_refreshed() {
    let gw = TestGateway::start(&[("GATEWAY_AUTH_LEEWAY_MS", "0")]);
    let short = sign(&Claims::new("u", now(), 2));
    let mut plain = WsClient::connect(&gw.addr, &short, "", &[]).await.unwrap();
    let mut refreshed = WsClient::connect(&gw.addr, &short, "", &[]).await.unwrap();
    plain.hello().await;
    refreshed.hello().await;

    // A token for another user, or a bad one, is refused in-band without closing.
    refreshed
        .send_json(json!({"type": "auth.refresh", "access_token": token("v", None), "ref": 1}))
        .await;
    assert!(
        matches!(refreshed.control().await, ControlFrame::Error { code, .. } if code == "sub_mismatch")
    );
    refreshed.send_json(json!({"type": "auth.refresh", "access_token": "junk", "ref": 2})).await;
    assert!(
        matches!(refreshed.control().await, ControlFrame::Error { code, .. } if code == "invalid_token")
    );
    refreshed
        .send_json(json!({"type": "auth.refresh", "access_token": token("u", None), "ref": 3}))
        .await;
    match refreshed.control().await {
        ControlFrame::AuthRefreshed { exp, reference } => {
            assert!(exp > (now() + 3000) as f64);
            assert_eq!(reference, Some(3.into()));
        }
        other => panic!("expected auth.refreshed, got {other:?}"),
    }

    assert_eq!(plain.close_code().await, Some(4001));
    refreshed.send_json(json!({"type": "ping", "ref": "after"})).await;
    assert!(
        matches!(refreshed.control().await, ControlFrame::Pong { .. }),
        "the refreshed one lives on"
    );
}

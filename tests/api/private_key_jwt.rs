//! `private_key_jwt` (RFC 7523 §2.2): a client authenticates with a JWT signed by a key
//! it registered, signed here by an independent library (`jsonwebtoken`); single use,
//! audience and key checked, for any grant and for introspection.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tessera_core::jwt::{Alg, SigningKey, generate_pkcs8};

use crate::helpers::{TestApp, spawn_app};

const TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

struct Key {
    encoding: EncodingKey,
    jwk: Value,
}

fn key(kid: &str) -> Key {
    let pkcs8 = generate_pkcs8(Alg::Es256);
    let jwk = SigningKey::from_pkcs8(kid, Alg::Es256, &pkcs8)
        .unwrap()
        .verifying_key()
        .jwk();
    Key {
        encoding: EncodingKey::from_ec_der(&pkcs8),
        jwk,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn assertion(k: &Key, kid: &str, claims: Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    encode(&h, &claims, &k.encoding).unwrap()
}

fn claims(app: &TestApp, client: &str, jti: &str) -> Value {
    json!({
        "iss": client, "sub": client, "aud": app.url("/oauth/token"),
        "exp": now() + 60, "iat": now(), "jti": jti,
    })
}

async fn token(app: &TestApp, assertion: &str) -> (u16, Value) {
    token_from(app, 1, assertion).await
}

/// From 127.0.0.`host`: each refusal counts in the throttle budget of its address.
async fn token_from(app: &TestApp, host: u8, assertion: &str) -> (u16, Value) {
    let r = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, host]))
        .build()
        .unwrap()
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", TYPE),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_client_authenticates_with_its_signed_assertion_once() {
    let app = spawn_app().await;
    let k = key("k1");
    let (s, b) = app
        .post(
            "/oauth/clients",
            json!({
                "client_id": "signer",
                "name": "batch job",
                "token_endpoint_auth_methods": ["private_key_jwt"],
                "jwks": {"keys": [k.jwk]},
            }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert!(
        b.get("client_secret").is_none(),
        "a key-only client gets no secret: {b}"
    );

    let a = assertion(&k, "k1", claims(&app, "signer", "jti-1"));
    let (s, t) = token(&app, &a).await;
    assert_eq!(s, 200, "{t}");
    // The same assertion again is a replay.
    let (s, e) = token(&app, &a).await;
    assert_eq!(
        (s, e["reason"].as_str()),
        (401, Some("client_assertion_replayed")),
        "{e}"
    );

    // Another key, another audience, an expired or long-lived one, a foreign issuer.
    let other = key("k1");
    let mut wrong_aud = claims(&app, "signer", "jti-2");
    wrong_aud["aud"] = json!("https://elsewhere.example/token");
    let mut expired = claims(&app, "signer", "jti-3");
    expired["exp"] = json!(now() - 10);
    let mut long = claims(&app, "signer", "jti-4");
    long["exp"] = json!(now() + 86_400);
    let mut no_jti = claims(&app, "signer", "x");
    no_jti.as_object_mut().unwrap().remove("jti");
    let mut iss = claims(&app, "signer", "jti-5");
    iss["iss"] = json!("someone-else");
    for (host, (label, a)) in (10u8..).zip([
        (
            "wrong key",
            assertion(&other, "k1", claims(&app, "signer", "jti-6")),
        ),
        (
            "unknown kid",
            assertion(&k, "k9", claims(&app, "signer", "jti-7")),
        ),
        ("audience", assertion(&k, "k1", wrong_aud)),
        ("expired", assertion(&k, "k1", expired)),
        ("too long", assertion(&k, "k1", long)),
        ("no jti", assertion(&k, "k1", no_jti)),
        ("issuer", assertion(&k, "k1", iss)),
    ]) {
        let (s, e) = token_from(&app, host, &a).await;
        assert_eq!(
            (s, e["reason"].as_str()),
            (401, Some("client_assertion_invalid")),
            "{label}: {e}"
        );
        let trace = &app.audit(e["request_id"].as_str().unwrap()).await["trace"];
        assert!(
            trace
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["check"] == "client_assertion" && s["verdict"] == "fail"),
            "{label}: {trace}"
        );
    }
    // The issuer as audience is accepted (RFC 7523 §3 allows the AS's identifier).
    let mut aud_issuer = claims(&app, "signer", "jti-8");
    aud_issuer["aud"] = json!(app.base);
    let (s, t) = token(&app, &assertion(&k, "k1", aud_issuer)).await;
    assert_eq!(s, 200, "{t}");

    // Mixed credentials are refused; a secret client cannot present an assertion.
    let r = reqwest::Client::new()
        .post(app.url("/oauth/token"))
        .basic_auth("signer", Some("x"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", TYPE),
            (
                "client_assertion",
                &assertion(&k, "k1", claims(&app, "signer", "jti-9")),
            ),
        ])
        .send()
        .await
        .unwrap();
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["reason"], "client_auth_multiple", "{e}");
    let (id, _) = app.client(json!({"name": "secret client"})).await;
    let (s, e) = token(&app, &assertion(&k, "k1", claims(&app, &id, "jti-10"))).await;
    assert_eq!(
        (s, e["reason"].as_str()),
        (401, Some("client_assertion_invalid")),
        "{e}"
    );

    // Introspection takes the same authentication.
    let r = reqwest::Client::new()
        .post(app.url("/oauth/introspect"))
        .form(&[
            ("token", t["access_token"].as_str().unwrap()),
            ("client_assertion_type", TYPE),
            (
                "client_assertion",
                &assertion(&k, "k1", claims(&app, "signer", "jti-11")),
            ),
        ])
        .send()
        .await
        .unwrap();
    let i: Value = r.json().await.unwrap();
    assert_eq!(i["active"], true, "{i}");

    // Keys are validated when registered.
    let (s, b) = app
        .patch(
            "/oauth/clients/signer",
            json!({"jwks": {"keys": [{"kty": "oct", "k": "AAAA"}]}}),
        )
        .await;
    assert_eq!((s, b["field"].as_str()), (422, Some("jwks")), "{b}");
    let (s, b) = app
        .post(
            "/oauth/clients",
            json!({"name": "no keys", "token_endpoint_auth_methods": ["private_key_jwt"]}),
        )
        .await;
    assert_eq!((s, b["field"].as_str()), (422, Some("jwks")), "{b}");
    app.stop().await;
}

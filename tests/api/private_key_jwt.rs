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

/// A client's key server on loopback: serves a JWK Set the test can change, a redirect,
/// an oversized answer; counts what it is asked.
struct KeyServer {
    base: String,
    set: std::sync::Arc<std::sync::Mutex<Value>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl KeyServer {
    async fn start(set: Value) -> KeyServer {
        use axum::response::IntoResponse;
        use std::sync::atomic::Ordering;
        let set = std::sync::Arc::new(std::sync::Mutex::new(set));
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (s, h) = (set.clone(), hits.clone());
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (s, h) = (s.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                match uri.path() {
                    "/jwks" => axum::Json(s.lock().unwrap().clone()).into_response(),
                    "/redirect" => {
                        (axum::http::StatusCode::FOUND, [("location", "/jwks")]).into_response()
                    }
                    "/big" => format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(100_000))
                        .into_response(),
                    _ => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        KeyServer { base, set, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_client_authenticates_with_keys_published_at_its_jwks_uri() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.jwks_fetch.trusted_hosts = vec!["127.0.0.1".into()];
        // Every unknown kid fetches again, so the rotation below needs no waiting.
        c.jwks_fetch.refetch_seconds = 0;
    })
    .await;
    let (k1, k2) = (key("k1"), key("k2"));
    let keys = KeyServer::start(json!({"keys": [k1.jwk]})).await;
    let uri = format!("{}/jwks", keys.base);
    let (s, b) = app
        .post(
            "/oauth/clients",
            json!({
                "client_id": "remote",
                "name": "keys by URL",
                "token_endpoint_auth_methods": ["private_key_jwt"],
                "jwks_uri": uri,
            }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["jwks_uri"], uri.as_str(), "{b}");
    assert!(
        b.get("jwks").is_none() && b.get("client_secret").is_none(),
        "{b}"
    );

    // The first assertion fetches the set; the next ones use the cached copy.
    for jti in ["r-1", "r-2"] {
        let (s, t) = token(&app, &assertion(&k1, "k1", claims(&app, "remote", jti))).await;
        assert_eq!(s, 200, "{t}");
    }
    assert_eq!(keys.hits(), 1, "one fetch for two assertions");

    // The client rotates to a new key: an assertion naming it fetches the set again.
    *keys.set.lock().unwrap() = json!({"keys": [k2.jwk]});
    let (s, t) = token(&app, &assertion(&k2, "k2", claims(&app, "remote", "r-3"))).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(keys.hits(), 2);
    // The old key is gone from the published set.
    let (s, e) = token_from(
        &app,
        20,
        &assertion(&k1, "k1", claims(&app, "remote", "r-4")),
    )
    .await;
    assert_eq!(
        (s, e["reason"].as_str()),
        (401, Some("client_assertion_invalid")),
        "{e}"
    );

    // The key server breaks: the refetch an unknown kid causes fails, and the good set
    // is kept, so the client's real key still works.
    *keys.set.lock().unwrap() = json!("broken");
    let (s, e) = token_from(
        &app,
        25,
        &assertion(&k2, "k9", claims(&app, "remote", "r-5")),
    )
    .await;
    assert_eq!(
        (s, e["reason"].as_str()),
        (401, Some("client_assertion_invalid")),
        "{e}"
    );
    assert_eq!(keys.hits(), 4, "the unknown kid looked again");
    let (s, t) = token(&app, &assertion(&k2, "k2", claims(&app, "remote", "r-6"))).await;
    assert_eq!(s, 200, "{t}");

    // A key server that redirects, or answers too much, is refused; the failure is
    // remembered, so a second assertion does not fetch again.
    for (host, (path, why)) in (21u8..).zip([
        ("/redirect", "redirects are not followed"),
        ("/big", "larger than 65536 bytes"),
        ("/missing", "404"),
    ]) {
        let id = format!("remote{host}");
        let (s, b) = app
            .post(
                "/oauth/clients",
                json!({
                    "client_id": id,
                    "name": "bad key server",
                    "token_endpoint_auth_methods": ["private_key_jwt"],
                    "jwks_uri": format!("{}{path}", keys.base),
                }),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let before = keys.hits();
        for n in 0..2 {
            let a = assertion(&k2, "k2", claims(&app, &id, &format!("x-{n}")));
            let (s, e) = token_from(&app, host, &a).await;
            assert_eq!(
                (s, e["reason"].as_str()),
                (401, Some("client_jwks_unavailable")),
                "{path}: {e}"
            );
            let trace = app.audit(e["request_id"].as_str().unwrap()).await["trace"].to_string();
            assert!(trace.contains(why), "{path}: {trace}");
        }
        assert_eq!(
            keys.hits(),
            before + 1,
            "{path}: one fetch, then the failure is cached"
        );
    }

    // Registration: one source of keys; a URL the server may fetch.
    for (body, field, why) in [
        (
            json!({"jwks": {"keys": [k1.jwk]}, "jwks_uri": uri}),
            "jwks_uri",
            "not both",
        ),
        (
            json!({"jwks_uri": format!("http://localhost{}", &keys.base[16..])}),
            "jwks_uri",
            "must be https",
        ),
        (
            json!({"jwks_uri": "https://user:pw@keys.example/jwks"}),
            "jwks_uri",
            "user name",
        ),
        (json!({"jwks_uri": "/jwks"}), "jwks_uri", "absolute"),
    ] {
        let mut b = body.clone();
        b["name"] = json!("x");
        b["token_endpoint_auth_methods"] = json!(["private_key_jwt"]);
        let (s, e) = app.post("/oauth/clients", b).await;
        assert_eq!((s, e["field"].as_str()), (422, Some(field)), "{body}: {e}");
        assert!(e.to_string().contains(why), "{body}: {e}");
    }
    // Setting inline keys drops the URL.
    let (s, b) = app
        .patch("/oauth/clients/remote", json!({"jwks": {"keys": [k1.jwk]}}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(b.get("jwks_uri").is_none() && b["jwks"].is_object(), "{b}");
    app.stop().await;
}

/// The server fetches only public addresses unless the operator trusts a host: a
/// `jwks_uri` naming a loopback address, by name or by number, is never fetched, and
/// the caller learns nothing of why.
#[tokio::test]
async fn a_jwks_uri_never_reaches_an_internal_address() {
    let app = spawn_app().await;
    let k = key("k1");
    let keys = KeyServer::start(json!({"keys": [k.jwk]})).await;
    let port = &keys.base["http://127.0.0.1:".len()..];
    for (host, (id, uri)) in (30u8..).zip([
        ("by-name", format!("https://localhost:{port}/jwks")),
        ("by-number", format!("https://127.0.0.1:{port}/jwks")),
        ("by-v6", format!("https://[::1]:{port}/jwks")),
        (
            "metadata",
            "https://169.254.169.254/latest/meta-data".to_string(),
        ),
    ]) {
        let (s, b) = app
            .post(
                "/oauth/clients",
                json!({
                    "client_id": id,
                    "name": "internal",
                    "token_endpoint_auth_methods": ["private_key_jwt"],
                    "jwks_uri": uri,
                }),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let (s, e) = token_from(&app, host, &assertion(&k, "k1", claims(&app, id, "j"))).await;
        assert_eq!(
            (s, e["reason"].as_str()),
            (401, Some("client_jwks_unavailable")),
            "{id}: {e}"
        );
        let said = e["error_description"].as_str().unwrap();
        assert!(
            !said.contains("127.0.0.1")
                && !said.contains("not public")
                && !said.contains("169.254"),
            "the caller is told nothing about the address: {said}"
        );
        let trace = app.audit(e["request_id"].as_str().unwrap()).await["trace"].to_string();
        assert!(trace.contains("is not public"), "{id}: {trace}");
    }
    assert_eq!(keys.hits(), 0, "nothing reached the loopback key server");
    app.stop().await;
}

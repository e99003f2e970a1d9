//! Introspection (RFC 7662) and revocation (RFC 7009): client authentication as at the
//! token endpoint, answers for access and refresh tokens, and what a JWT alone cannot
//! tell (a grant revoked since, a person disabled since).

use serde_json::{Value, json};

use crate::code_flow::{Browser, Landed, REDIRECT, VERIFIER, exchange, refresh, request, setup};
use crate::helpers::{TestApp, spawn_app};

async fn introspect(app: &TestApp, id: &str, secret: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(app.url("/oauth/introspect"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn revoke(
    app: &TestApp,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(app.url("/oauth/revoke"))
        .form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn login(app: &TestApp, b: &mut Browser) -> Value {
    let landed = b
        .authorize(&request("spa", ""), "alice", "correct horse battery")
        .await;
    let Landed::Client(_, q) = landed else {
        panic!("{landed:?}")
    };
    let (s, t) = exchange(app, &q["code"], VERIFIER, REDIRECT).await;
    assert_eq!(s, 200, "{t}");
    t
}

#[tokio::test]
async fn introspection_tells_live_tokens_from_ended_ones() {
    let app = spawn_app().await;
    setup(&app).await;
    let (rs, rs_secret) = app
        .client(json!({"client_id": "resource-server", "name": "API gateway"}))
        .await;
    let mut b = Browser::new(&app);
    let t = login(&app, &mut b).await;
    let access = t["access_token"].as_str().unwrap();
    let refresh_token = t["refresh_token"].as_str().unwrap();

    let (s, a) = introspect(&app, &rs, &rs_secret, access).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["active"], true);
    assert_eq!(a["client_id"], "spa");
    assert_eq!(a["token_type"], "Bearer");
    assert!(a["scope"].as_str().unwrap().contains("openid"));
    let (_, r) = introspect(&app, &rs, &rs_secret, refresh_token).await;
    assert_eq!(
        (r["active"].as_bool(), r["token_type"].as_str()),
        (Some(true), Some("refresh_token"))
    );
    let (_, cc) = app
        .token_basic(&rs, &rs_secret, "grant_type=client_credentials")
        .await;
    let (_, c) = introspect(&app, &rs, &rs_secret, cc["access_token"].as_str().unwrap()).await;
    assert_eq!(c["active"], true, "{c}");
    // A service's token turns inactive once its client is disabled.
    let (w, w_secret) = app.client(json!({"name": "worker"})).await;
    let (_, wt) = app
        .token_basic(&w, &w_secret, "grant_type=client_credentials")
        .await;
    let wt = wt["access_token"].as_str().unwrap().to_string();
    let (_, x) = introspect(&app, &rs, &rs_secret, &wt).await;
    assert_eq!(x["active"], true, "{x}");
    let (s, _) = app
        .patch(&format!("/oauth/clients/{w}"), json!({"enabled": false}))
        .await;
    assert_eq!(s, 200);
    let (_, x) = introspect(&app, &rs, &rs_secret, &wt).await;
    assert_eq!(x, json!({"active": false}), "a disabled client's token");
    for junk in ["", "nonsense", "trt_unknown", "a.b.c"] {
        let (s, j) = introspect(&app, &rs, &rs_secret, junk).await;
        if junk.is_empty() {
            assert_eq!(
                (s, j["reason"].as_str()),
                (400, Some("parameter_missing")),
                "{j}"
            );
        } else {
            assert_eq!((s, j.clone()), (200, json!({"active": false})), "{junk}");
        }
    }

    // Client authentication: the token endpoint's rules, refusals audited.
    let (s, e) = introspect(&app, &rs, "tsec_wrong", access).await;
    assert_eq!(
        (s, e["reason"].as_str()),
        (401, Some("client_secret_mismatch")),
        "{e}"
    );
    let event = app.audit(e["request_id"].as_str().unwrap()).await;
    assert_eq!(event["kind"], "introspect");
    let r = reqwest::Client::new()
        .post(app.url("/oauth/introspect"))
        .form(&[("client_id", "spa"), ("token", access)])
        .send()
        .await
        .unwrap();
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        e["reason"], "client_auth_missing",
        "a public client cannot introspect: {e}"
    );
    // Another org's client learns nothing.
    let other = app.other_org_admin("acme").await;
    let r = reqwest::Client::new()
        .post(app.url("/api/v2/oauth/clients"))
        .bearer_auth(&other)
        .json(&json!({"name": "acme gateway"}))
        .send()
        .await
        .unwrap();
    let acme: Value = r.json().await.unwrap();
    let (_, x) = introspect(
        &app,
        acme["client_id"].as_str().unwrap(),
        acme["client_secret"].as_str().unwrap(),
        access,
    )
    .await;
    assert_eq!(x, json!({"active": false}));

    // A person disabled since: their tokens turn inactive though the JWT is unexpired.
    let user = a["sub"].as_str().unwrap();
    let (s, _) = app
        .patch(&format!("/users/{user}"), json!({"enabled": false}))
        .await;
    assert_eq!(s, 200);
    let (_, a) = introspect(&app, &rs, &rs_secret, access).await;
    assert_eq!(a, json!({"active": false}));
    let (_, r) = introspect(&app, &rs, &rs_secret, refresh_token).await;
    assert_eq!(r, json!({"active": false}));
    app.stop().await;
}

#[tokio::test]
async fn revocation_ends_the_grant_of_a_token() {
    let app = spawn_app().await;
    setup(&app).await;
    let mut b = Browser::new(&app);
    let t = login(&app, &mut b).await;
    let refresh_token = t["refresh_token"].as_str().unwrap();
    // A public client revokes its own refresh token: 200, and the family is gone.
    let (s, body) = revoke(
        &app,
        &[
            ("client_id", "spa"),
            ("token", refresh_token),
            ("token_type_hint", "refresh_token"),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, r) = refresh(&app, refresh_token).await;
    assert_eq!(
        (s, r["reason"].as_str()),
        (400, Some("refresh_token_revoked")),
        "{r}"
    );
    assert!(
        r["error_description"]
            .as_str()
            .unwrap()
            .contains("revoked_by_client")
    );
    // Revoking an access token of a login ends its grant too.
    let t = login(&app, &mut b).await;
    let (s, _) = revoke(
        &app,
        &[
            ("client_id", "spa"),
            ("token", t["access_token"].as_str().unwrap()),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, r) = refresh(&app, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (s, r["reason"].as_str()),
        (400, Some("refresh_token_revoked")),
        "{r}"
    );
    // Unknown tokens are no error; another client's token is not touched.
    let (s, _) = revoke(
        &app,
        &[("client_id", "spa"), ("token", "trt_nothing")],
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (id, secret) = app.client(json!({"name": "svc"})).await;
    let t = login(&app, &mut b).await;
    let (s, _) = revoke(
        &app,
        &[("token", t["refresh_token"].as_str().unwrap())],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(s, 200);
    let (s, r) = refresh(&app, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 200, "another client cannot revoke spa's token: {r}");
    // A client_credentials token cannot be revoked one by one, and the answer says why.
    let (_, cc) = app
        .token_basic(&id, &secret, "grant_type=client_credentials")
        .await;
    let (s, body) = revoke(
        &app,
        &[("token", cc["access_token"].as_str().unwrap())],
        Some((&id, &secret)),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (e["error"].as_str(), e["reason"].as_str()),
        (
            Some("unsupported_token_type"),
            Some("revocation_unsupported")
        )
    );
    let (s, events) = app.get("/audit/events?kind=revoke").await;
    assert_eq!(s, 200);
    assert!(events["events"].as_array().unwrap().len() >= 4, "{events}");
    app.stop().await;
}

/// A browser application (a SPA) may call the token, userinfo and revocation endpoints
/// from its own origin; the admin API stays closed to other origins.
#[tokio::test]
async fn browser_applications_may_call_the_token_endpoints_across_origins() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    for path in [
        "/oauth/token",
        "/oauth/userinfo",
        "/oauth/revoke",
        "/oauth/jwks",
    ] {
        let r = http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://spa.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{path}");
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert!(
            r.headers()["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("POST")
        );
    }
    let r = http
        .post(app.url("/oauth/token"))
        .header("origin", "https://spa.example")
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "nobody"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let r = http
        .request(reqwest::Method::OPTIONS, app.url("/api/v2/users"))
        .header("origin", "https://spa.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    app.stop().await;
}

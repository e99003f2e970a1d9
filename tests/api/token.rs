//! The client_credentials causes from the seeds, each reproduced over HTTP: status,
//! `error`, `reason`, and the failing check in the audit trace.

use serde_json::json;

use crate::helpers::{basic, spawn_app, spawn_app_with};

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

/// An org with scope `admin:api` and a service account whose client may use it.
async fn seed_client(app: &crate::helpers::TestApp) -> (String, String, String) {
    app.scopes(&["admin:api", "reports:read"]).await;
    let sa = app.service_account("svc-dfo").await;
    let (id, secret) = app
        .client(json!({
            "client_id": "my-app-id",
            "name": "DFO integration",
            "grant_types": ["client_credentials"],
            "scopes": ["admin:api"],
            "service_account_id": sa,
        }))
        .await;
    (id, secret, sa)
}

#[tokio::test]
async fn json_body_works_like_form() {
    let app = spawn_app().await;
    let (id, secret, sa) = seed_client(&app).await;
    // Seed 000: the JSON body people send.
    let body = json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret, "scope": "admin:api"});
    let r = app
        .token_raw(Some("application/json"), &body.to_string(), None, None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["scope"], "admin:api");
    assert_eq!(r.body["expires_in"], 3600);
    assert_eq!(r.headers["cache-control"], "no-store");
    // The same as a form, with the secret in the body.
    let r = app.token_post(&id, &secret, "&scope=admin%3Aapi").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The audit trail records the grant, the secret used (id and hint), and the subject.
    let rid = r.headers["x-request-id"].to_str().unwrap().to_string();
    let e = app.audit(&rid).await;
    assert_eq!(e["outcome"], "granted");
    assert_eq!(e["subject"], sa);
    assert_eq!(e["secret_hint"], &secret[secret.len() - 4..]);
    assert!(
        e["trace"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["verdict"] != "fail")
    );
    app.stop().await;
}

#[tokio::test]
async fn grant_type_not_enabled_on_client() {
    let app = spawn_app().await;
    app.scopes(&["admin:api"]).await;
    let (id, secret) = app
        .client(json!({"name": "web app", "grant_types": ["authorization_code"], "scopes": ["admin:api"], "redirect_uris": ["https://app.example/cb"]}))
        .await;
    let r = app.token_post(&id, &secret, "").await;
    let e = app
        .assert_refused(
            &r,
            400,
            "unauthorized_client",
            "grant_type_not_allowed",
            "grant_type_allowed",
        )
        .await;
    let d = r.body["error_description"].as_str().unwrap();
    assert!(
        d.contains("may not use grant type 'client_credentials'")
            && d.contains("authorization_code"),
        "{d}"
    );
    assert_eq!(e["client_id"], id);
    app.stop().await;
}

#[tokio::test]
async fn scope_unknown_versus_not_allowed() {
    let app = spawn_app().await;
    let (id, secret, _) = seed_client(&app).await;
    // Unknown in the org: nobody could have it.
    let r = app
        .token_post(&id, &secret, "&scope=platform%3Aoauth%3Awrite")
        .await;
    app.assert_refused(&r, 400, "invalid_scope", "scope_unknown", "scope")
        .await;
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap()
            .contains("'platform:oauth:write'")
    );
    // Known in the org, but not granted to this client: named.
    let r = app
        .token_post(&id, &secret, "&scope=admin%3Aapi%20reports%3Aread")
        .await;
    app.assert_refused(&r, 400, "invalid_scope", "scope_not_allowed", "scope")
        .await;
    let d = r.body["error_description"].as_str().unwrap();
    assert!(
        d.contains("'reports:read'") && d.contains("may have: admin:api"),
        "{d}"
    );
    // No scope: every scope the client may have (RFC 6749 §3.3 default).
    let r = app.token_post(&id, &secret, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["scope"], "admin:api");
    app.stop().await;
}

#[tokio::test]
async fn rotated_secret_works_during_grace_then_expires() {
    let app = spawn_app().await;
    let (id, old, _) = seed_client(&app).await;
    let (s, rot) = app
        .post(
            &format!("/oauth/clients/{id}/secrets"),
            json!({"grace_seconds": 600}),
        )
        .await;
    assert_eq!(s, 201, "{rot}");
    let new = rot["client_secret"].as_str().unwrap().to_string();
    assert!(new.starts_with("tsec_"));
    assert_eq!(rot["previous"].as_array().unwrap().len(), 1);
    // Both work during the grace period.
    assert_eq!(app.token_post(&id, &old, "").await.status, 200);
    let r = app.token_post(&id, &new, "").await;
    assert_eq!(r.status, 200);
    // Who still uses the old secret: the listing shows last use per secret.
    let (_, list) = app.get(&format!("/oauth/clients/{id}/secrets")).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(
        items
            .iter()
            .all(|s| s["last_used_at"].is_string() && s["last_used_from"] == "127.0.0.1"),
        "{list}"
    );
    // A third active secret is refused while two are active.
    let (s, b) = app
        .post(&format!("/oauth/clients/{id}/secrets"), json!({}))
        .await;
    assert_eq!(s, 409, "{b}");
    // Revoking the old one ends it at once, with its own reason.
    let old_id = rot["previous"][0]["id"].as_str().unwrap();
    let (s, _) = app
        .delete(&format!("/oauth/clients/{id}/secrets/{old_id}"))
        .await;
    assert_eq!(s, 204);
    let r = app.token_post(&id, &old, "").await;
    app.assert_refused(
        &r,
        401,
        "invalid_client",
        "client_secret_revoked",
        "client_secret",
    )
    .await;
    // A rotation with no grace: the previous secret has expired.
    let (s, rot2) = app
        .post(
            &format!("/oauth/clients/{id}/secrets"),
            json!({"grace_seconds": 0}),
        )
        .await;
    assert_eq!(s, 201, "{rot2}");
    let r = app.token_post(&id, &new, "").await;
    app.assert_refused(
        &r,
        401,
        "invalid_client",
        "client_secret_expired",
        "client_secret",
    )
    .await;
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let newest = rot2["client_secret"].as_str().unwrap();
    assert_eq!(app.token_post(&id, newest, "").await.status, 200);
    // A secret that never existed.
    let r = app.token_post(&id, "tsec_wrong", "").await;
    app.assert_refused(
        &r,
        401,
        "invalid_client",
        "client_secret_mismatch",
        "client_secret",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn service_account_disabled_names_who_and_when() {
    let app = spawn_app().await;
    let (id, secret, sa) = seed_client(&app).await;
    let (s, u) = app
        .patch(&format!("/users/{sa}"), json!({"enabled": false}))
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["enabled"], false);
    assert_eq!(u["state"], "disabled");
    assert_eq!(u["disabled_by"]["kind"], "admin");
    assert_eq!(u["disabled_by"]["client_id"], app.admin_id);
    let r = app.token_post(&id, &secret, "").await;
    app.assert_refused(
        &r,
        400,
        "unauthorized_client",
        "service_account_disabled",
        "service_account",
    )
    .await;
    let d = r.body["error_description"].as_str().unwrap();
    assert!(
        d.contains(&format!("disabled by admin client '{}'", app.admin_id)),
        "{d}"
    );
    assert!(d.contains(u["disabled_at"].as_str().unwrap()), "{d}");
    // Locked until a time: says until when.
    let (s, _) = app
        .patch(
            &format!("/users/{sa}"),
            json!({"state": "locked", "locked_until": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(s, 200);
    let r = app.token_post(&id, &secret, "").await;
    app.assert_refused(
        &r,
        400,
        "unauthorized_client",
        "service_account_locked",
        "service_account",
    )
    .await;
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap()
            .contains("until 2999-01-01T00:00:00Z")
    );
    // Unlocked: works again.
    let (s, _) = app
        .patch(&format!("/users/{sa}"), json!({"state": "active"}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(app.token_post(&id, &secret, "").await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn throttling_slows_one_address_only() {
    let app = spawn_app().await;
    let (id, secret, _) = seed_client(&app).await;
    let attacker = Some("127.0.0.1".parse().unwrap());
    let other = Some("127.0.0.2".parse().unwrap());
    let wrong = format!("grant_type=client_credentials&client_id={id}&client_secret=tsec_guess");
    // Five free failures, the sixth starts a back-off.
    for _ in 0..6 {
        let r = app.token_raw(FORM, &wrong, None, attacker).await;
        assert_eq!(r.body["reason"], "client_secret_mismatch", "{}", r.body);
    }
    let r = app.token_raw(FORM, &wrong, None, attacker).await;
    let e = app
        .assert_refused(&r, 429, "invalid_client", "client_throttled", "throttle")
        .await;
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    assert!(e["description"].as_str().unwrap().contains("retry after"));
    // Even the right secret waits, from that address...
    let good = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let r = app.token_raw(FORM, &good, None, attacker).await;
    assert_eq!(r.body["reason"], "client_throttled");
    // ...but another address is not affected.
    let r = app.token_raw(FORM, &good, None, other).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.stop().await;
}

#[tokio::test]
async fn ip_allowlist() {
    let app = spawn_app().await;
    app.scopes(&["admin:api"]).await;
    let (id, secret) = app
        .client(json!({"name": "ci", "scopes": ["admin:api"], "ip_allowlist": ["127.0.0.2/32", "10.0.0.0/8", "2001:db8::/32"]}))
        .await;
    let body = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let r = app
        .token_raw(FORM, &body, None, Some("127.0.0.1".parse().unwrap()))
        .await;
    app.assert_refused(
        &r,
        400,
        "unauthorized_client",
        "client_ip_not_allowed",
        "source_ip",
    )
    .await;
    let d = r.body["error_description"].as_str().unwrap();
    assert!(d.contains("127.0.0.1") && d.contains("10.0.0.0/8"), "{d}");
    let r = app
        .token_raw(FORM, &body, None, Some("127.0.0.2".parse().unwrap()))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.stop().await;
}

/// Sends a client_credentials request, as if through a proxy that appended `xff`.
async fn token_via(app: &crate::helpers::TestApp, body: &str, xff: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new()
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string());
    if let Some(v) = xff {
        req = req.header("x-forwarded-for", v);
    }
    req.send().await.unwrap().status().as_u16()
}

/// A client allowed only from 203.0.113.0/24: its id and a client_credentials body.
async fn allow_listed_client(app: &crate::helpers::TestApp) -> (String, String) {
    app.scopes(&["admin:api"]).await;
    let (id, secret) = app
        .client(json!({"name": "lb", "scopes": ["admin:api"], "ip_allowlist": ["203.0.113.0/24"]}))
        .await;
    let body = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    (id, body)
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_caller_it_names_is_the_source() {
    let app = spawn_app_with(|c| {
        c.trusted_proxies = tessera_core::model::IpAllowList::parse(&["127.0.0.0/8"]).unwrap();
    })
    .await;
    let (id, body) = allow_listed_client(&app).await;
    // The allow-list sees the caller the proxy names, not the proxy; what the caller
    // wrote to the left of it is not believed.
    assert_eq!(token_via(&app, &body, Some("203.0.113.7")).await, 200);
    assert_eq!(
        token_via(&app, &body, Some("203.0.113.9, 198.51.100.1")).await,
        400
    );
    assert_eq!(token_via(&app, &body, None).await, 400);
    // The audit trail records the caller.
    let (_, ev) = app
        .get(&format!("/audit/events?client_id={id}&outcome=granted"))
        .await;
    assert_eq!(ev["events"][0]["source_ip"], "203.0.113.7", "{ev}");
    app.stop().await;

    // Without trusted proxies the header is ignored: the TCP peer is the caller.
    let app = spawn_app().await;
    let (_, body) = allow_listed_client(&app).await;
    assert_eq!(token_via(&app, &body, Some("203.0.113.7")).await, 400);
    app.stop().await;
}

#[tokio::test]
async fn basic_header_with_only_the_client_id() {
    let app = spawn_app().await;
    let (id, _, _) = seed_client(&app).await;
    use base64::Engine;
    let only_id = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(&id)
    );
    let r = app
        .token_raw(FORM, "grant_type=client_credentials", Some(&only_id), None)
        .await;
    app.assert_refused(
        &r,
        401,
        "invalid_client",
        "basic_header_malformed",
        "client_auth",
    )
    .await;
    let d = r.body["error_description"].as_str().unwrap();
    assert!(
        d.contains("no ':'") && d.contains("decodes to the client id 'my-app-id' alone"),
        "{d}"
    );
    assert_eq!(
        r.headers["www-authenticate"],
        "Basic realm=\"tessera\", charset=\"UTF-8\""
    );
    app.stop().await;
}

#[tokio::test]
async fn basic_and_body_credentials_together() {
    let app = spawn_app().await;
    let (id, secret, _) = seed_client(&app).await;
    let r = app
        .token_raw(
            FORM,
            &format!("grant_type=client_credentials&client_id={id}&client_secret={secret}"),
            Some(&basic(&id, &secret)),
            None,
        )
        .await;
    app.assert_refused(
        &r,
        400,
        "invalid_request",
        "client_auth_multiple",
        "client_auth",
    )
    .await;
    app.stop().await;
}

/// One malformed request and what it must produce.
struct Case {
    content_type: Option<&'static str>,
    body: String,
    status: u16,
    error: &'static str,
    reason: &'static str,
    check: &'static str,
}

#[tokio::test]
async fn malformed_requests() {
    let app = spawn_app().await;
    let (id, secret, _) = seed_client(&app).await;
    let case = |content_type, body: String, status, error, reason, check| Case {
        content_type,
        body,
        status,
        error,
        reason,
        check,
    };
    // Refused before the body names a client: no org owns these, but the caller gets the
    // precise reason and a request id.
    let anonymous = [
        case(
            Some("text/plain"),
            "grant_type=client_credentials".into(),
            400,
            "invalid_request",
            "content_type_unsupported",
            "content_type",
        ),
        case(
            Some("application/json"),
            "{\"grant_type\":".into(),
            400,
            "invalid_request",
            "body_malformed",
            "body",
        ),
        case(
            FORM,
            "grant_type=client_credentials".into(),
            401,
            "invalid_client",
            "client_auth_missing",
            "client_auth",
        ),
    ];
    for c in &anonymous {
        let r = app.token_raw(c.content_type, &c.body, None, None).await;
        assert_eq!(r.status, c.status, "{}: {}", c.body, r.body);
        assert_eq!(r.body["error"], c.error, "{}", c.body);
        assert_eq!(r.body["reason"], c.reason, "{}", c.body);
        assert!(r.body["request_id"].is_string());
    }
    // Once the body names an existing client, the refusal is in its org's audit trail.
    let named = [
        case(
            FORM,
            format!("grant_type=client_credentials&grant_type=password&client_id={id}"),
            400,
            "invalid_request",
            "parameter_duplicated",
            "parameters",
        ),
        case(
            FORM,
            format!("client_id={id}&client_secret={secret}"),
            400,
            "invalid_request",
            "grant_type_missing",
            "grant_type",
        ),
        case(
            FORM,
            format!("grant_type=urn:example:magic&client_id={id}"),
            400,
            "unsupported_grant_type",
            "grant_type_unsupported",
            "grant_type",
        ),
        case(
            FORM,
            format!("grant_type=client_credentials&client_id={id}"),
            401,
            "invalid_client",
            "client_auth_missing",
            "client_auth",
        ),
    ];
    // Oversized bodies are refused unread, in the same error model.
    let huge = format!(
        "grant_type=client_credentials&client_id={id}&pad={}",
        "x".repeat(70_000)
    );
    let r = app.token_raw(FORM, &huge, None, None).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.body["reason"], "body_too_large");
    assert_eq!(r.body["error"], "invalid_request");
    for c in &named {
        let r = app.token_raw(c.content_type, &c.body, None, None).await;
        app.assert_refused(&r, c.status, c.error, c.reason, c.check)
            .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn disabled_client_and_unknown_client() {
    let app = spawn_app().await;
    let (id, secret, _) = seed_client(&app).await;
    let (s, _) = app
        .patch(&format!("/oauth/clients/{id}"), json!({"enabled": false}))
        .await;
    assert_eq!(s, 200);
    let r = app.token_post(&id, &secret, "").await;
    app.assert_refused(
        &r,
        401,
        "invalid_client",
        "client_disabled",
        "client_enabled",
    )
    .await;
    let r = app.token_post("no-such-client", "x", "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["reason"], "client_unknown");
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap()
            .contains("right server")
    );
    app.stop().await;
}

#[tokio::test]
async fn auth_method_restriction() {
    let app = spawn_app().await;
    app.scopes(&["admin:api"]).await;
    let (id, secret) = app
        .client(json!({"name": "basic only", "scopes": ["admin:api"], "token_endpoint_auth_methods": ["client_secret_basic"]}))
        .await;
    let r = app.token_post(&id, &secret, "").await;
    app.assert_refused(
        &r,
        401,
        "invalid_client",
        "client_auth_method_not_allowed",
        "client_auth_method",
    )
    .await;
    let (s, _) = app
        .token_basic(&id, &secret, "grant_type=client_credentials")
        .await;
    assert_eq!(s, 200);
    app.stop().await;
}

#[tokio::test]
async fn wrong_paths_and_methods_get_help() {
    let app = spawn_app().await;
    let res = app
        .http
        .post(app.url("/api/v2/oauth/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let b: serde_json::Value = res.json().await.unwrap();
    assert_eq!(b["token_endpoint"], app.url("/oauth/token"));
    assert!(
        b["error_description"]
            .as_str()
            .unwrap()
            .contains("/oauth/token")
    );
    let res = app.http.get(app.url("/oauth/token")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "POST");
    assert!(res.headers().contains_key("x-request-id"));
    app.stop().await;
}

#[tokio::test]
async fn client_credentials_unaffected_by_sso_flag_in_trace() {
    // The trace states, on every grant, that SSO enforcement does not govern machines.
    let app = spawn_app_with(|_| {}).await;
    let (id, secret, _) = seed_client(&app).await;
    let r = app.token_post(&id, &secret, "").await;
    assert_eq!(r.status, 200);
    let e = app.audit(r.headers["x-request-id"].to_str().unwrap()).await;
    let sso = e["trace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["check"] == "sso_policy")
        .unwrap()
        .clone();
    assert!(
        sso["detail"].as_str().unwrap().contains("never subject"),
        "{sso}"
    );
    app.stop().await;
}

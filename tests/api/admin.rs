//! The admin API: authentication, validation errors naming fields, org scoping.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn admin_api_requires_an_admin_token() {
    let app = spawn_app().await;
    let res = app.http.get(app.url("/api/v2/users")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let res = app
        .http
        .get(app.url("/api/v2/users"))
        .bearer_auth("not-a-jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // A token without the admin scope: 403.
    app.scopes(&["reports:read"]).await;
    let (id, secret) = app
        .client(json!({"name": "reader", "scopes": ["reports:read"]}))
        .await;
    let (_, tok) = app
        .token_basic(&id, &secret, "grant_type=client_credentials")
        .await;
    let res = app
        .http
        .get(app.url("/api/v2/users"))
        .bearer_auth(tok["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let b: serde_json::Value = res.json().await.unwrap();
    assert_eq!(b["error"], "insufficient_scope");
    assert!(b["request_id"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            "/oauth/clients",
            json!({"name": "x", "grant_types": ["client_credentials", "implicit"]}),
            "grant_types[1]",
        ),
        (
            "/oauth/clients",
            json!({"name": "x", "scopes": ["nope"]}),
            "scopes[0]",
        ),
        (
            "/oauth/clients",
            json!({"name": "x", "ip_allowlist": ["10.0.0.0/33"]}),
            "ip_allowlist",
        ),
        (
            "/oauth/clients",
            json!({"name": "x", "service_account_id": "usr_missing"}),
            "service_account_id",
        ),
        (
            "/oauth/clients",
            json!({"name": "x", "redirect_uris": ["http://evil.example/cb"]}),
            "redirect_uris[0]",
        ),
        (
            "/oauth/clients",
            json!({"name": "x", "client_id": "has space"}),
            "client_id",
        ),
        ("/oauth/clients", json!({"name": 5}), "name"),
        ("/users", json!({"type": "robot", "username": "r"}), "type"),
        (
            "/users",
            json!({"type": "service", "username": "svc", "password": "a long password here"}),
            "password",
        ),
        ("/scopes", json!({"name": "has space"}), "name"),
        (
            "/users",
            json!({"type": "human", "username": "h", "display_name": "a\u{0}b"}),
            "display_name",
        ),
    ];
    for (path, body, field) in cases {
        let (s, b) = app.post(path, body.clone()).await;
        assert_eq!(s, 422, "{path} {body}: {b}");
        assert_eq!(b["error"], "invalid_field", "{b}");
        assert_eq!(b["field"], field, "{path} {body}: {b}");
        assert!(b["request_id"].is_string());
    }
    // Not JSON at all: 400.
    let res = app
        .http
        .post(app.url("/api/v2/users"))
        .bearer_auth(app_token(&app).await)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // Found by the API fuzzer: serde reads a struct from a JSON array, so `[null, null]`
    // was a valid PATCH. Bodies must be objects.
    let (_, users) = app.get("/users").await;
    let uid = users["items"][0]["id"].as_str().unwrap().to_string();
    let res = app
        .http
        .patch(app.url(&format!("/api/v2/users/{uid}")))
        .bearer_auth(app_token(&app).await)
        .header("content-type", "application/json")
        .body("[null, null]")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // A display name is set at creation, changed by PATCH, and shown.
    let (s, u) = app
        .post(
            "/users",
            json!({"type": "human", "username": "grace", "display_name": "Grace H."}),
        )
        .await;
    assert_eq!((s, &u["display_name"]), (201, &json!("Grace H.")), "{u}");
    assert_eq!(u["saml_name_id"], Value::Null, "{u}");
    let path = format!("/users/{}", u["id"].as_str().unwrap());
    let (s, u) = app
        .patch(&path, json!({"display_name": "Grace Hopper"}))
        .await;
    assert_eq!(
        (s, &u["display_name"]),
        (200, &json!("Grace Hopper")),
        "{u}"
    );
    let (s, b) = app.patch(&path, json!({"display_name": " "})).await;
    assert_eq!((s, &b["field"]), (422, &json!("display_name")), "{b}");
    // Nothing half-written: the refused client does not exist.
    let (_, list) = app.get("/oauth/clients").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    // Duplicates conflict.
    app.scopes(&["a:b"]).await;
    let (s, b) = app.post("/scopes", json!({"name": "a:b"})).await;
    assert_eq!(s, 409, "{b}");
    app.stop().await;
}

async fn app_token(app: &crate::helpers::TestApp) -> String {
    let (_, t) = app
        .token_basic(
            &app.admin_id,
            &app.admin_secret,
            "grant_type=client_credentials",
        )
        .await;
    t["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn admin_cannot_lock_itself_out() {
    let app = spawn_app().await;
    let (s, b) = app
        .patch(
            &format!("/oauth/clients/{}", app.admin_id),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    let (_, users) = app.get("/users").await;
    let sa = users["items"][0]["id"].as_str().unwrap();
    let (s, _) = app
        .patch(&format!("/users/{sa}"), json!({"enabled": false}))
        .await;
    assert_eq!(s, 409);
    app.stop().await;
}

#[tokio::test]
async fn audit_list_filters_and_admin_changes() {
    let app = spawn_app().await;
    app.scopes(&["admin:api"]).await;
    let (id, secret) = app
        .client(json!({"name": "c", "scopes": ["admin:api"]}))
        .await;
    app.token_post(&id, "tsec_wrong", "").await;
    app.token_post(&id, &secret, "").await;
    let (s, b) = app
        .get(&format!(
            "/audit/events?client_id={id}&reason=client_secret_mismatch"
        ))
        .await;
    assert_eq!(s, 200, "{b}");
    let events = b["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{b}");
    assert_eq!(events[0]["outcome"], "denied");
    let (_, b) = app
        .get(&format!("/audit/events?client_id={id}&outcome=granted"))
        .await;
    assert_eq!(b["events"].as_array().unwrap().len(), 1);
    let (_, b) = app.get("/audit/events?kind=admin").await;
    let ops: Vec<&str> = b["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["change"]["op"].as_str().unwrap())
        .collect();
    assert!(
        ops.contains(&"create_client") && ops.contains(&"create_scope"),
        "{ops:?}"
    );
    let (s, b) = app.get("/audit/events?reason=not_a_reason").await;
    assert_eq!(s, 422);
    assert_eq!(b["field"], "reason");
    let (s, _) = app.get("/audit/events/01NOTHERE").await;
    assert_eq!(s, 404);
    app.stop().await;
}

#[tokio::test]
async fn every_reason_code_is_documented() {
    assert_eq!(tessera_server::undocumented_reasons(), Vec::<&str>::new());
    let app = spawn_app().await;
    let page = app
        .http
        .get(app.url("/docs/errors"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"client_secret_expired\""));
    app.stop().await;
}

#[tokio::test]
async fn orgs_are_isolated() {
    let app = spawn_app().await;
    app.scopes(&["admin:api"]).await;
    let (id, _) = app
        .client(json!({"name": "default's", "scopes": ["admin:api"]}))
        .await;
    let denied = app.token_post(&id, "tsec_wrong", "").await;
    let rid = denied.body["request_id"].as_str().unwrap().to_string();
    let other = app.other_org_admin("acme").await;
    let get = |path: String| {
        let (http, tok) = (app.http.clone(), other.clone());
        async move { http.get(path).bearer_auth(tok).send().await.unwrap() }
    };
    // acme's admin sees only acme: not default's clients, users or audit events.
    let res = get(app.url("/api/v2/oauth/clients")).await;
    let list: serde_json::Value = res.json().await.unwrap();
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["acme-admin"]);
    assert_eq!(
        get(app.url(&format!("/api/v2/oauth/clients/{id}")))
            .await
            .status(),
        404
    );
    assert_eq!(
        get(app.url(&format!("/api/v2/audit/events/{rid}")))
            .await
            .status(),
        404
    );
    // The request id belongs to default's trail.
    app.audit(&rid).await;
    // Signing keys are server-wide: only the operator org may rotate them.
    let res = app
        .http
        .post(app.url("/api/v2/signing-keys/rotate"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    app.stop().await;
}

//! Hardening of the admin API and the CLI (issue 16): control characters never reach a
//! terminal.

use serde_json::json;

use crate::cli::tessera;
use crate::helpers::spawn_app;
use crate::login_page::Browser;

/// Values that would send terminal sequences or forge lines if stored and printed.
const NASTY: [&str; 4] = [
    "Pay\u{1b}[31mments",
    "Payments\r\nFAKE line",
    "Pay\nments",
    "Pay\u{202e}stnem",
];

#[tokio::test]
async fn control_characters_in_names_are_refused_naming_the_field() {
    let app = spawn_app().await;
    app.scopes(&["read"]).await;
    let (client_id, _) = app.client(json!({"name": "ok"})).await;
    let uid = app.service_account("svc-ok").await;
    let check = |what: String, (s, b): (u16, serde_json::Value), field: &str| {
        assert_eq!((s, b["field"].as_str()), (422, Some(field)), "{what}: {b}");
        assert_eq!(b["error"], "invalid_field", "{what}: {b}");
        let m = b["message"].as_str().unwrap();
        assert!(
            m.contains("U+"),
            "{what}: the message names the code point: {m}"
        );
        assert!(!m.chars().any(|c| c.is_control()), "{what}: {m:?}");
    };
    for bad in NASTY {
        let w = |op: &str| format!("{op} {bad:?}");
        check(
            w("create client"),
            app.post("/oauth/clients", json!({"name": bad})).await,
            "name",
        );
        check(
            w("rename client"),
            app.patch(&format!("/oauth/clients/{client_id}"), json!({"name": bad}))
                .await,
            "name",
        );
        check(
            w("redirect uri"),
            app.post(
                "/oauth/clients",
                json!({"name": "x", "redirect_uris": [format!("https://a.example/{bad}")]}),
            )
            .await,
            "redirect_uris[0]",
        );
        check(
            w("scope description"),
            app.post("/scopes", json!({"name": "other", "description": bad}))
                .await,
            "description",
        );
        for (field, body) in [
            (
                "username",
                json!({"type": "service", "username": format!("svc{bad}")}),
            ),
            (
                "email",
                json!({"type": "service", "username": "svc-e", "email": format!("{bad}@example.com")}),
            ),
            (
                "display_name",
                json!({"type": "human", "username": "h", "display_name": bad}),
            ),
            (
                "roles[1]",
                json!({"type": "human", "username": "h", "roles": ["ok", bad]}),
            ),
        ] {
            check(
                w(&format!("create user {field}")),
                app.post("/users", body).await,
                field,
            );
        }
        for field in ["email", "display_name"] {
            let value = if field == "email" {
                format!("{bad}@example.com")
            } else {
                bad.to_string()
            };
            check(
                w(&format!("patch user {field}")),
                app.patch(&format!("/users/{uid}"), json!({ field: value }))
                    .await,
                field,
            );
        }
        check(
            w("sso attribute"),
            app.put("/sso/saml", json!({"attribute_email": bad})).await,
            "attribute_email",
        );
        let (s, b) = app
            .put("/sso/saml", json!({"group_roles": {bad: ["admin"]}}))
            .await;
        let field = b["field"].as_str().unwrap_or_default().to_string();
        assert!(field.starts_with("group_roles["), "{b}");
        check(w("sso group"), (s, b), &field);
        check(
            w("sso group role"),
            app.put("/sso/saml", json!({"group_roles": {"staff": [bad]}}))
                .await,
            "group_roles[staff][0]",
        );
    }
    // Nothing was stored.
    let (_, clients) = app.get("/oauth/clients").await;
    assert_eq!(clients["items"].as_array().unwrap().len(), 2, "{clients}");
    // Ordinary non-ASCII text is still welcome.
    let (s, b) = app
        .post("/oauth/clients", json!({"name": "Zahlungen – Zoë 名前"}))
        .await;
    assert_eq!(s, 201, "{b}");
    app.stop().await;
}

#[tokio::test]
async fn the_cli_prints_stored_control_characters_escaped() {
    let app = spawn_app().await;
    // A username typed at the login page reaches the audit trail as typed.
    let typed = "eve\u{1b}[31m\r\nforged ✓ pass line\u{7}";
    let r = Browser::new().submit(&app, typed, "wrong-Password-1").await;
    assert!(r.status().is_client_error(), "{}", r.status());
    let (_, events) = app.get("/audit/events?kind=login").await;
    let e = &events["events"][0];
    assert!(
        e.to_string().contains("\\u001b[31m"),
        "the event keeps the raw text, so this test exercises the CLI: {e}"
    );
    let rid = e["request_id"].as_str().unwrap();

    let cache = tempfile::tempdir().unwrap();
    let o = tessera(&app, cache.path(), &["admin", "audit", "explain", rid]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    terminal_safe(&o.stdout);
    assert!(
        o.stdout.contains("eve\\u{1b}[31m\\u{d}\\u{a}forged"),
        "{}",
        o.stdout
    );
    assert!(
        !o.stdout.lines().any(|l| l.starts_with("forged")),
        "no forged line: {}",
        o.stdout
    );
    let tail = ["admin", "audit", "tail", "--limit", "50"];
    let o = tessera(&app, cache.path(), &tail).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    terminal_safe(&o.stdout);

    // The server's error messages quote what they refuse: escaped too.
    let show = ["admin", "clients", "show", "cli\u{1b}]0;pwned\u{7}"];
    let o = tessera(&app, cache.path(), &show).await;
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.contains("no client 'cli\\u{1b}]0;pwned"),
        "{}",
        o.stderr
    );
    terminal_safe(&o.stderr);
    app.stop().await;
}

/// No character that could rewrite the terminal, beyond the output's own line breaks.
fn terminal_safe(out: &str) {
    let bad = out
        .chars()
        .find(|c| *c != '\n' && tessera_core::text::is_unsafe_char(*c));
    assert_eq!(bad, None, "raw on the terminal: {out:?}");
}

/// A POST to the admin API with another org's token.
async fn post_as(
    app: &crate::helpers::TestApp,
    token: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let res = app
        .http
        .post(app.url(&format!("/api/v2{path}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn a_client_id_taken_by_another_org_is_not_confirmed() {
    let app = spawn_app().await;
    let acme = app.other_org_admin("acme").await;
    app.client(json!({"client_id": "payments-ci", "name": "Payments CI"}))
        .await;

    // The org's own client: named as its own.
    let (s, own) = app
        .post(
            "/oauth/clients",
            json!({"client_id": "payments-ci", "name": "again"}),
        )
        .await;
    assert_eq!((s, own["error"].as_str()), (409, Some("conflict")), "{own}");
    assert!(
        own["message"]
            .as_str()
            .unwrap()
            .contains("already exists in org 'default'")
    );

    // Another org's: the same neutral answer as for any taken id, confirming nothing
    // about a client or its org.
    let (s, other) = post_as(
        &app,
        &acme,
        "/oauth/clients",
        json!({"client_id": "payments-ci", "name": "mine"}),
    )
    .await;
    assert_eq!(
        (s, other["error"].as_str()),
        (409, Some("conflict")),
        "{other}"
    );
    let m = other["message"].as_str().unwrap();
    assert!(m.contains("'payments-ci' is not available"), "{m}");
    for leak in ["exist", "default", "Payments CI", "org"] {
        assert!(!m.contains(leak), "'{leak}' in {m}");
    }
    // A free id is still free for acme, and the default org's client is untouched.
    let (s, b) = post_as(
        &app,
        &acme,
        "/oauth/clients",
        json!({"client_id": "acme-ci", "name": "mine"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = app.get("/oauth/clients/payments-ci").await;
    assert_eq!((s, &b["name"]), (200, &json!("Payments CI")), "{b}");
    app.stop().await;
}

#[tokio::test]
async fn an_over_size_admin_body_is_413_with_a_json_error() {
    let app = spawn_app().await;
    let big = "x".repeat(1024 * 1024);
    // ApiJson and OptionalJson (signing-key rotation) alike.
    for (path, body) in [
        ("/scopes", json!({"name": "big", "description": big})),
        ("/signing-keys/rotate", json!({"alg": big})),
    ] {
        let (s, b) = app.post(path, body).await;
        assert_eq!(s, 413, "{path}: {b}");
        assert_eq!(b["error"], "body_too_large", "{b}");
        assert!(b["message"].as_str().unwrap().contains("1024 KiB"), "{b}");
        assert!(!b["request_id"].as_str().unwrap().is_empty(), "{b}");
    }
    // Just under the limit the body is read and judged on its fields.
    let (s, b) = app
        .post(
            "/scopes",
            json!({"name": "big", "description": "x".repeat(1000 * 1024)}),
        )
        .await;
    assert_eq!((s, &b["field"]), (422, &json!("description")), "{b}");
    app.stop().await;
}

#[tokio::test]
async fn length_limits_count_characters_not_bytes() {
    let app = spawn_app().await;
    // 'é' is two bytes, '名' three: each value is exactly at its limit in characters.
    let (s, b) = app
        .post("/oauth/clients", json!({"name": "é".repeat(200)}))
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = app
        .post("/oauth/clients", json!({"name": "é".repeat(201)}))
        .await;
    assert_eq!((s, &b["field"]), (422, &json!("name")), "{b}");
    let (s, b) = app
        .post(
            "/scopes",
            json!({"name": "wide", "description": "名".repeat(1000)}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = app
        .post(
            "/scopes",
            json!({"name": "wider", "description": "名".repeat(1001)}),
        )
        .await;
    assert_eq!((s, &b["field"]), (422, &json!("description")), "{b}");
    let (s, b) = app
        .post(
            "/users",
            json!({"type": "human", "username": "zoe", "roles": ["ü".repeat(64)],
                   "password": "ü".repeat(1024)}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = app
        .put("/sso/saml", json!({"attribute_email": "é".repeat(256)}))
        .await;
    assert_eq!(s, 200, "{b}");
    app.stop().await;
}

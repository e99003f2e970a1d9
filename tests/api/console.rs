//! The org admin's console at /admin/, driven over HTTP as a browser would (cookies, no
//! redirects followed blindly): who gets in, CSRF, the CSP, and the actions going
//! through the same code and audit trail as the admin API.

use serde_json::json;

use crate::code_flow::{Browser, Landed};
use crate::helpers::{TestApp, spawn_app};

/// A person with the org_admin role, logged in to the console through the org's login.
async fn logged_in_admin(app: &TestApp) -> (Browser, String) {
    logged_in_as(app, "ada", "org_admin").await
}

/// A person with `role`, logged in to the console through the org's login.
async fn logged_in_as(app: &TestApp, name: &str, role: &str) -> (Browser, String) {
    let id = app.human(name, "correct horse battery").await;
    let (s, b) = app
        .patch(&format!("/users/{id}"), json!({"roles": [role]}))
        .await;
    assert_eq!(s, 200, "{b}");
    let mut browser = Browser::new(app);
    // No session: the console asks for the organization first.
    match browser.walk("/admin/").await {
        Landed::Page(200, url, html) => {
            assert!(url.ends_with("/admin/login"), "{url}");
            assert!(
                html.contains("<label for=\"org\">Organization</label>"),
                "{html}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Then sends the person to the org's own login, which brings them back.
    let landed = match browser.walk("/admin/login?org=default").await {
        Landed::Page(200, url, html) if html.contains("name=\"password\"") => {
            browser
                .log_in(&url, &html, name, "correct horse battery")
                .await
        }
        other => panic!("no login form: {other:?}"),
    };
    match &landed {
        Landed::Page(200, url, html) => {
            assert!(url.ends_with("/admin/"), "{url}");
            assert!(html.contains("What needs attention"), "{html}");
        }
        other => panic!("{other:?}"),
    }
    (browser, id)
}

/// The CSRF token in a console page's forms.
fn csrf(html: &str) -> String {
    hidden(html, "csrf")
}

/// The value of the first hidden field `name` in a console page.
fn hidden(html: &str, name: &str) -> String {
    html.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no {name} field in {html}"))
        .to_string()
}

#[tokio::test]
async fn an_org_admin_finds_a_disabled_service_account_and_enables_it() {
    let app = spawn_app().await;
    let (mut browser, ada) = logged_in_admin(&app).await;
    let sa = app.service_account("svc-dfo").await;
    let (s, _) = app
        .patch(&format!("/users/{sa}"), json!({"enabled": false}))
        .await;
    assert_eq!(s, 200);

    // The overview shows it, who disabled it, and a labelled button.
    let (s, headers, html) = browser.get("/admin/").await;
    assert_eq!(s, 200);
    assert!(html.contains("svc-dfo"), "{html}");
    assert!(html.contains("default-admin"), "{html}");
    assert!(html.contains("aria-label=\"Enable svc-dfo\""), "{html}");
    // A strict CSP, and nothing in the page that it would have to allow: one script,
    // from a file, no inline script or style.
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains("script-src 'self'")
            && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "{html}"
    );
    assert!(
        html.contains("<script src=\"/assets/console.js\" defer></script>"),
        "{html}"
    );
    assert_eq!(headers["cache-control"], "no-store");

    // Without the form's CSRF token: refused, nothing changed.
    let (s, _, body) = browser
        .post_form(&format!("/admin/users/{sa}/enable"), &[], None)
        .await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    // From another site's page: refused too.
    let token = csrf(&html);
    let (s, _, _) = browser
        .post_form(
            &format!("/admin/users/{sa}/enable"),
            &[("csrf", &token)],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(s, 403);
    let (_, user) = app.get(&format!("/users/{sa}")).await;
    assert_eq!(user["state"], "disabled");

    // With it: enabled, through the admin API's code, audited with the person named.
    let (s, location, _) = browser
        .post_form(
            &format!("/admin/users/{sa}/enable"),
            &[("csrf", &token)],
            Some(&app.base),
        )
        .await;
    assert_eq!(s, 303);
    let (_, _, page) = browser.get(&location.unwrap()).await;
    assert!(page.contains("svc-dfo is active now."), "{page}");
    let (_, user) = app.get(&format!("/users/{sa}")).await;
    assert_eq!(user["state"], "active", "{user}");
    let (_, events) = app.get("/audit/events?kind=admin").await;
    let e = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["change"]["via"] == "console")
        .unwrap_or_else(|| panic!("{events}"));
    assert_eq!(e["actor"], ada.as_str());
    assert_eq!(e["change"]["user_id"], sa.as_str());

    // Disabling from the console names the person as who did it.
    let (_, _, html) = browser.get("/admin/users").await;
    let (s, _, _) = browser
        .post_form(
            &format!("/admin/users/{sa}/disable"),
            &[("csrf", &csrf(&html))],
            None,
        )
        .await;
    assert_eq!(s, 303);
    let (_, user) = app.get(&format!("/users/{sa}")).await;
    assert_eq!(user["disabled_by"]["kind"], "org_admin", "{user}");
    assert!(
        user["disabled_by"]["description"]
            .as_str()
            .unwrap()
            .contains("org admin 'ada'"),
        "{user}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_refusal_is_found_by_its_request_id_with_the_failing_check_marked() {
    let app = spawn_app().await;
    let (mut browser, _) = logged_in_admin(&app).await;
    let (id, _) = app
        .client(json!({"name": "ci", "grant_types": ["client_credentials"]}))
        .await;
    let (s, refusal) = app
        .token_basic(&id, "tsec_wrong", "grant_type=client_credentials")
        .await;
    assert_eq!(s, 401, "{refusal}");
    let rid = refusal["request_id"].as_str().unwrap();
    let (s, _, html) = browser.get(&format!("/admin/audit?request_id={rid}")).await;
    assert_eq!(s, 200, "{html}");
    assert!(html.contains("fails here"), "{html}");
    assert!(
        html.contains("href=\"/docs/errors#client_secret_mismatch\""),
        "{html}"
    );
    assert!(
        html.contains("<label for=\"request_id\">Request id</label>"),
        "{html}"
    );
    // The overview counts it by reason.
    let (_, _, html) = browser.get("/admin/").await;
    assert!(html.contains("client_secret_mismatch"), "{html}");
    // An id of nothing: said so.
    let (s, _, html) = browser.get("/admin/audit?request_id=01NOTHING").await;
    assert_eq!(s, 404);
    assert!(html.contains("No event with request id"), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn a_person_without_org_admin_is_refused_and_logout_ends_the_session() {
    let app = spawn_app().await;
    app.human("bob", "another long password").await;
    let mut browser = Browser::new(&app);
    let landed = match browser.walk("/admin/login?org=default").await {
        Landed::Page(200, url, html) => {
            browser
                .log_in(&url, &html, "bob", "another long password")
                .await
        }
        other => panic!("{other:?}"),
    };
    match landed {
        Landed::Page(403, _, html) => {
            assert!(html.contains("Only org admins use the console"), "{html}");
            assert!(html.contains("org_admin"), "{html}");
        }
        other => panic!("bob got in: {other:?}"),
    }
    // An unknown organization is said to be unknown.
    let (s, _, html) = browser.get("/admin/login?org=nope").await;
    assert_eq!(s, 404);
    assert!(html.contains("no organization"), "{html}");

    let (mut admin, _) = logged_in_admin(&app).await;
    let (_, _, html) = admin.get("/admin/").await;
    let (s, location, _) = admin
        .post_form("/admin/logout", &[("csrf", &csrf(&html))], None)
        .await;
    assert_eq!((s, location.as_deref()), (303, Some("/admin/login")));
    let (s, headers, _) = admin.get("/admin/").await;
    assert_eq!(s, 303);
    assert_eq!(headers["location"], "/admin/login");
    app.stop().await;
}

#[tokio::test]
async fn an_org_admin_rotates_a_secret_with_grace_and_revokes_the_old_one() {
    let app = spawn_app().await;
    let (mut browser, ada) = logged_in_admin(&app).await;
    let (id, old) = app
        .client(json!({"name": "DFO channel", "grant_types": ["client_credentials"]}))
        .await;
    let (s, _) = app
        .token_basic(&id, &old, "grant_type=client_credentials")
        .await;
    assert_eq!(s, 200);

    let (_, _, html) = browser.get("/admin/clients").await;
    assert!(
        html.contains(&format!("href=\"/admin/clients/{id}\">DFO channel</a>")),
        "{html}"
    );
    let (s, _, html) = browser.get(&format!("/admin/clients/{id}")).await;
    assert_eq!(s, 200);
    let old_hint = &old[old.len() - 4..];
    assert!(html.contains(&format!("…{old_hint}")), "{html}");
    assert!(html.contains("<label for=\"grace\">"), "{html}");

    // Rotate with a day's grace: the new secret is shown once, on the answer itself.
    let (s, location, page) = browser
        .post_form(
            &format!("/admin/clients/{id}/rotate"),
            &[("csrf", &csrf(&html)), ("grace_seconds", "86400")],
            None,
        )
        .await;
    assert_eq!((s, location), (200, None), "{page}");
    let new = page
        .split("id=\"new-secret\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("{page}"))
        .to_string();
    assert!(new.starts_with("tsec_"), "{new}");
    assert!(page.contains(&format!("…{old_hint}")), "{page}");
    // Both work during the grace period.
    for secret in [&old, &new] {
        let (s, b) = app
            .token_basic(&id, secret, "grant_type=client_credentials")
            .await;
        assert_eq!(s, 200, "{b}");
    }
    // The overview says the rotation is not finished: the old secret is still in use.
    let (_, _, overview) = browser.get("/admin/").await;
    assert!(
        overview.contains("Clients still using a rotated secret (1)")
            && overview.contains(&format!("…{old_hint}")),
        "{overview}"
    );
    // The client's page never shows a secret's value again.
    let (_, _, html) = browser.get(&format!("/admin/clients/{id}")).await;
    assert!(!html.contains(&new) && !html.contains(&old), "{html}");

    // Revoke the old one: it stops at once; the new one goes on.
    let (_, secrets) = app.get(&format!("/oauth/clients/{id}/secrets")).await;
    let old_id = secrets["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["hint"] == old_hint)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, location, _) = browser
        .post_form(
            &format!("/admin/clients/{id}/secrets/{old_id}/revoke"),
            &[("csrf", &csrf(&html))],
            None,
        )
        .await;
    assert_eq!(s, 303);
    let (_, _, page) = browser.get(&location.unwrap()).await;
    assert!(page.contains("is revoked"), "{page}");
    let (s, _) = app
        .token_basic(&id, &old, "grant_type=client_credentials")
        .await;
    assert_eq!(s, 401);
    let (s, _) = app
        .token_basic(&id, &new, "grant_type=client_credentials")
        .await;
    assert_eq!(s, 200);

    // Both changes are in the audit trail as the admin API's would be, naming ada, and
    // no secret's value is there.
    let (_, events) = app.get("/audit/events?kind=admin").await;
    let by_console: Vec<&serde_json::Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["change"]["via"] == "console")
        .collect();
    let ops: Vec<&str> = by_console
        .iter()
        .map(|e| e["change"]["op"].as_str().unwrap())
        .collect();
    assert!(
        ops.contains(&"rotate_secret") && ops.contains(&"revoke_secret"),
        "{events}"
    );
    assert!(by_console.iter().all(|e| e["actor"] == ada.as_str()));
    assert!(!events.to_string().contains(&new), "{events}");
    app.stop().await;
}

#[tokio::test]
async fn an_org_admin_ends_a_persons_logins_from_their_page() {
    use crate::code_flow::{REDIRECT, VERIFIER, code_of, exchange, refresh, request};
    let app = spawn_app().await;
    let client = crate::code_flow::setup(&app).await;
    // Alice logs in to an app through the code flow: it holds a refresh token of hers.
    let mut alice = Browser::new(&app);
    let code = code_of(
        alice
            .authorize(&request(&client, ""), "alice", "correct horse battery")
            .await,
    );
    let (_, tokens) = exchange(&app, &code, VERIFIER, REDIRECT).await;
    let rt = tokens["refresh_token"].as_str().unwrap().to_string();
    let alice_id = crate::helpers::jwt_claims(tokens["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_string();

    let (mut browser, _) = logged_in_admin(&app).await;
    let (_, _, list) = browser.get("/admin/users").await;
    assert!(
        list.contains(&format!("href=\"/admin/users/{alice_id}\">alice</a>")),
        "{list}"
    );
    let (s, _, page) = browser.get(&format!("/admin/users/{alice_id}")).await;
    assert_eq!(s, 200);
    // One Revoke per app, named for it (the apostrophe comes HTML-escaped).
    assert!(page.contains("aria-label=\"Revoke spa"), "{page}");
    assert!(
        page.contains("aria-label=\"Log alice out everywhere\""),
        "{page}"
    );
    let (s, location, _) = browser
        .post_form(
            &format!("/admin/users/{alice_id}/logout"),
            &[("csrf", &csrf(&page))],
            None,
        )
        .await;
    assert_eq!(s, 303);
    let (_, _, page) = browser.get(&location.unwrap()).await;
    assert!(page.contains("alice is logged out everywhere"), "{page}");
    assert!(page.contains("revoked (revoked_by_admin)"), "{page}");
    let (s, r) = refresh(&app, &rt).await;
    assert_eq!(s, 400, "{r}");
    let (_, events) = app.get("/audit/events?kind=admin").await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["change"]["op"] == "end_sessions" && e["change"]["via"] == "console"),
        "{events}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_enforcement_switch_needs_the_preview_the_admin_saw() {
    let app = spawn_app().await;
    let (mut browser, ada) = logged_in_admin(&app).await;
    let (_, _, page) = browser.get("/admin/sso").await;
    assert!(
        page.contains("No identity provider is configured yet"),
        "{page}"
    );
    app.configure_idp(&[&ada]).await;
    app.service_account("svc-dfo").await;
    let (s, _, page) = browser.get("/admin/sso").await;
    assert_eq!(s, 200);
    assert!(page.contains("What it will not touch"), "{page}");
    assert!(page.contains("ada"), "break-glass listed: {page}");
    let preview = page
        .split("name=\"preview_id\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let token = csrf(&page);
    // Not without ticking the box; not with a preview that is no longer current.
    let (s, _, body) = browser
        .post_form(
            "/admin/sso/enforce",
            &[("csrf", &token), ("preview_id", &preview)],
            None,
        )
        .await;
    assert_eq!(s, 400, "{body}");
    let (s, _, body) = browser
        .post_form(
            "/admin/sso/enforce",
            &[
                ("csrf", &token),
                ("preview_id", "imp_stale"),
                ("confirm", "yes"),
            ],
            None,
        )
        .await;
    assert_eq!(s, 409, "{body}");
    assert!(
        body.contains("The impact changed since you looked"),
        "{body}"
    );
    let (_, cfg) = app.get("/sso/saml").await;
    assert_eq!(cfg["enforced"], false);
    // With it: enforced, audited as the API's switch would be, naming ada.
    let (s, location, _) = browser
        .post_form(
            "/admin/sso/enforce",
            &[
                ("csrf", &token),
                ("preview_id", &preview),
                ("confirm", "yes"),
            ],
            None,
        )
        .await;
    assert_eq!(s, 303);
    let (_, _, page) = browser.get(&location.unwrap()).await;
    assert!(page.contains("SSO is enforced now"), "{page}");
    let (_, cfg) = app.get("/sso/saml").await;
    assert_eq!(cfg["enforced"], true);
    let (_, events) = app.get("/audit/events?kind=admin").await;
    let e = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["change"]["op"] == "set_sso_enforced")
        .unwrap_or_else(|| panic!("{events}"));
    assert_eq!(
        (&e["actor"], &e["change"]["via"]),
        (&json!(ada), &json!("console"))
    );
    assert_eq!(e["change"]["preview_id"], preview.as_str());
    // And off again.
    let (s, _, _) = browser
        .post_form("/admin/sso/unenforce", &[("csrf", &csrf(&page))], None)
        .await;
    assert_eq!(s, 303);
    let (_, cfg) = app.get("/sso/saml").await;
    assert_eq!(cfg["enforced"], false);
    app.stop().await;
}

#[tokio::test]
async fn the_dry_run_form_shows_the_token_endpoints_decision() {
    let app = spawn_app().await;
    let (mut browser, _) = logged_in_admin(&app).await;
    let sa = app.service_account("svc-ci").await;
    let (id, secret) = app
        .client(
            json!({"name": "CI", "grant_types": ["client_credentials"], "service_account_id": sa}),
        )
        .await;
    app.patch(&format!("/users/{sa}"), json!({"enabled": false}))
        .await;
    let (s, _, form) = browser.get("/admin/diagnose").await;
    assert_eq!(s, 200);
    for label in [
        "Client id",
        "Client secret",
        "Grant type",
        "Scope",
        "From address",
    ] {
        assert!(form.contains(label), "{label}: {form}");
    }
    let (s, _, page) = browser
        .post_form(
            "/admin/diagnose",
            &[
                ("csrf", &csrf(&form)),
                ("client_id", &id),
                ("client_secret", &secret),
                ("grant_type", "client_credentials"),
            ],
            None,
        )
        .await;
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("would answer: denied"), "{page}");
    assert!(
        page.contains("href=\"/docs/errors#service_account_disabled\""),
        "{page}"
    );
    assert!(page.contains("fails here"), "{page}");
    // The secret typed in is not shown back.
    assert!(!page.contains(&secret), "{page}");
    // Nothing was issued, and the dry run is audited.
    let (_, events) = app.get("/audit/events?kind=diagnose").await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
    let (_, tokens) = app
        .get(&format!("/audit/events?kind=token&client_id={id}"))
        .await;
    assert_eq!(tokens["events"], json!([]), "{tokens}");
    app.stop().await;
}

#[tokio::test]
async fn scopes_are_listed_and_added_by_the_admin_apis_rules() {
    let app = spawn_app().await;
    let (mut browser, ada) = logged_in_admin(&app).await;
    let (_, _, page) = browser.get("/admin/scopes").await;
    assert!(
        page.contains("<code>openid</code>") && page.contains("built in"),
        "{page}"
    );
    let token = csrf(&page);
    let (s, location, _) = browser
        .post_form(
            "/admin/scopes",
            &[
                ("csrf", &token),
                ("name", "billing:read"),
                ("description", "Read invoices"),
            ],
            None,
        )
        .await;
    assert_eq!(s, 303);
    let (_, _, page) = browser.get(&location.unwrap()).await;
    assert!(
        page.contains("Scope billing:read is in the catalogue"),
        "{page}"
    );
    let (_, api) = app.get("/scopes").await;
    assert!(api.to_string().contains("billing:read"), "{api}");
    // The API's rules: a built-in name is a conflict, a space is not a scope.
    let (s, _, body) = browser
        .post_form(
            "/admin/scopes",
            &[("csrf", &token), ("name", "openid")],
            None,
        )
        .await;
    assert_eq!(s, 409, "{body}");
    let (s, _, _) = browser
        .post_form(
            "/admin/scopes",
            &[("csrf", &token), ("name", "two words")],
            None,
        )
        .await;
    assert_eq!(s, 422);
    let (_, events) = app.get("/audit/events?kind=admin").await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["change"]["op"] == "create_scope"
                && e["actor"] == ada.as_str()
                && e["change"]["via"] == "console"),
        "{events}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_auditor_reads_every_page_and_changes_nothing() {
    let app = spawn_app().await;
    let (mut browser, _) = logged_in_as(&app, "cy", "org_auditor").await;
    let sa = app.service_account("svc-dfo").await;
    app.patch(&format!("/users/{sa}"), json!({"enabled": false}))
        .await;
    for page in [
        "/admin/",
        "/admin/users",
        "/admin/clients",
        "/admin/scopes",
        "/admin/sso",
        "/admin/audit",
        "/admin/diagnose",
    ] {
        let (s, _, html) = browser.get(page).await;
        assert_eq!(s, 200, "{page}: {html}");
        assert!(html.contains("Read only"), "{page}: {html}");
    }
    let (_, _, html) = browser.get("/admin/").await;
    assert!(
        html.contains("svc-dfo") && !html.contains("aria-label=\"Enable svc-dfo\""),
        "{html}"
    );
    // A post made anyway is refused, and nothing changes.
    let token = csrf(&html);
    let (s, _, body) = browser
        .post_form(
            &format!("/admin/users/{sa}/enable"),
            &[("csrf", &token)],
            None,
        )
        .await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    let (_, user) = app.get(&format!("/users/{sa}")).await;
    assert_eq!(user["state"], "disabled");
    // A dry run changes nothing: allowed.
    let (s, _, _) = browser
        .post_form(
            "/admin/diagnose",
            &[
                ("csrf", &token),
                ("client_id", "nobody"),
                ("grant_type", "client_credentials"),
            ],
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, location, _) = browser
        .post_form("/admin/logout", &[("csrf", &token)], None)
        .await;
    assert_eq!((s, location.as_deref()), (303, Some("/admin/login")));
    app.stop().await;
}

#[tokio::test]
async fn the_audit_list_filters_pages_back_and_follows_live() {
    let app = spawn_app().await;
    let (mut browser, _) = logged_in_admin(&app).await;
    let (id, secret) = app
        .client(json!({"name": "CI", "grant_types": ["client_credentials"]}))
        .await;
    app.token_basic(&id, &secret, "grant_type=client_credentials")
        .await;
    // More refusals than one page holds (the throttle's among them).
    for _ in 0..52 {
        app.token_basic(&id, "tsec_wrong", "grant_type=client_credentials")
            .await;
    }
    let (s, _, page) = browser
        .get(&format!(
            "/admin/audit?outcome=denied&kind=token&client_id={id}"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(page.matches("<tr><td><time").count(), 50, "{page}");
    assert!(!page.contains("\"Outcome\">granted<"), "{page}");
    assert!(
        page.contains("<option value=\"denied\" selected>"),
        "{page}"
    );
    // The next page: the rest, older.
    let older = page
        .split("href=\"/admin/audit?")
        .find(|p| p.contains("before="))
        .and_then(|p| p.split('"').next())
        .unwrap_or_else(|| panic!("no older page: {page}"))
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let (_, _, rest) = browser.get(&format!("/admin/audit?{older}")).await;
    assert_eq!(rest.matches("<tr><td><time").count(), 2, "{rest}");
    // Followed live: the page reloads itself, on the same filters.
    let (_, _, live) = browser
        .get(&format!(
            "/admin/audit?outcome=granted&client_id={id}&live=1"
        ))
        .await;
    assert!(
        live.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
        "{live}"
    );
    assert_eq!(live.matches("<tr><td><time").count(), 1, "{live}");
    assert!(live.contains("Stop following"), "{live}");
    app.stop().await;
}

#[tokio::test]
async fn an_org_admin_creates_a_client_and_sees_its_secret_once() {
    let app = spawn_app().await;
    let (mut browser, ada) = logged_in_admin(&app).await;
    app.post("/scopes", json!({"name": "billing:read"})).await;
    let sa = app.service_account("svc-billing").await;
    let (s, _, form) = browser.get("/admin/clients/new").await;
    assert_eq!(s, 200);
    for label in [
        "Name",
        "Grant types",
        "Scopes it may get",
        "Runs as",
        "IP allow-list",
    ] {
        assert!(form.contains(label), "{label}: {form}");
    }
    let token = csrf(&form);
    let (s, _, page) = browser
        .post_form(
            "/admin/clients",
            &[
                ("csrf", &token),
                ("name", "Billing export"),
                ("grant", "client_credentials"),
                ("scope", "billing:read"),
                ("service_account", &sa),
                ("ip_allowlist", "127.0.0.0/8\n10.0.0.0/8"),
                ("ttl", "600"),
            ],
            None,
        )
        .await;
    assert_eq!(s, 201, "{page}");
    let value = |page: &str, id: &str| {
        page.split(&format!("id=\"{id}\" value=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_string)
    };
    let secret = value(&page, "new-secret").unwrap_or_else(|| panic!("{page}"));
    let client_id = page
        .split("<dt>Client id</dt><dd><code>")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_string();
    // It works as created: the scope, the service account, the lifetime.
    let (s, b) = app
        .token_basic(&client_id, &secret, "grant_type=client_credentials")
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["scope"].as_str(), b["expires_in"].as_i64()),
        (Some("billing:read"), Some(600))
    );
    let (_, c) = app.get(&format!("/oauth/clients/{client_id}")).await;
    assert_eq!(c["service_account_id"], sa.as_str());
    assert_eq!(c["ip_allowlist"], json!(["127.0.0.0/8", "10.0.0.0/8"]));
    // A public client gets no secret; a bad value is refused naming its field.
    let (s, _, page) = browser
        .post_form(
            "/admin/clients",
            &[
                ("csrf", &token),
                ("name", "Agent desktop"),
                ("grant", "authorization_code"),
                ("redirect_uris", "http://127.0.0.1:9/callback"),
                ("public", "yes"),
            ],
            None,
        )
        .await;
    assert_eq!(s, 201, "{page}");
    assert!(
        page.contains("has no secret") && value(&page, "new-secret").is_none(),
        "{page}"
    );
    let (s, _, page) = browser
        .post_form(
            "/admin/clients",
            &[
                ("csrf", &token),
                ("name", "Bad"),
                ("grant", "client_credentials"),
                ("ip_allowlist", "not-an-ip"),
            ],
            None,
        )
        .await;
    assert_eq!(s, 422, "{page}");
    assert!(page.contains("ip_allowlist"), "{page}");
    let (_, events) = app.get("/audit/events?kind=admin").await;
    let created: Vec<&serde_json::Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["change"]["op"] == "create_client" && e["change"]["via"] == "console")
        .collect();
    assert_eq!(created.len(), 2, "{events}");
    assert!(created.iter().all(|e| e["actor"] == ada.as_str()));
    assert!(!events.to_string().contains(&secret));
    app.stop().await;
}

#[tokio::test]
async fn an_org_admin_changes_a_clients_settings() {
    let app = spawn_app().await;
    let (mut browser, _) = logged_in_admin(&app).await;
    app.post("/scopes", json!({"name": "billing:read"})).await;
    let (id, secret) = app
        .client(json!({"name": "Billing export", "grant_types": ["client_credentials"]}))
        .await;
    let (_, _, page) = browser.get(&format!("/admin/clients/{id}")).await;
    assert!(
        page.contains("<legend>Scopes it may get</legend>"),
        "{page}"
    );
    let path = format!("/admin/clients/{id}/settings");
    // Enabled, the scope given, a shorter lifetime.
    let fields = form_of(
        &mut browser,
        &id,
        &[
            ("enabled", "yes"),
            ("scope", "billing:read"),
            ("ttl", "300"),
        ],
    )
    .await;
    let (s, location, _) = post(&mut browser, &path, &fields).await;
    assert_eq!(s, 303);
    let (_, _, shown) = browser.get(&location.unwrap()).await;
    assert!(shown.contains("Settings saved."), "{shown}");
    let (s, b) = app
        .token_basic(&id, &secret, "grant_type=client_credentials")
        .await;
    assert_eq!(
        (s, b["scope"].as_str(), b["expires_in"].as_i64()),
        (200, Some("billing:read"), Some(300)),
        "{b}"
    );
    // A page opened before someone else's change: saving it would undo that change,
    // so it is refused, and the change stays.
    let stale = form_of(
        &mut browser,
        &id,
        &[("enabled", "yes"), ("scope", "billing:read")],
    )
    .await;
    let (s, b) = app
        .patch(&format!("/oauth/clients/{id}"), json!({"scopes": []}))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, _, body) = post(&mut browser, &path, &stale).await;
    assert_eq!(s, 409, "{body}");
    assert!(
        body.contains("changed since you opened this page"),
        "{body}"
    );
    let (_, c) = app.get(&format!("/oauth/clients/{id}")).await;
    assert_eq!(c["scopes"], json!([]), "{c}");
    // Disabled from the form (the box left unticked): the token endpoint says so.
    let fields = form_of(&mut browser, &id, &[("scope", "billing:read")]).await;
    let (s, _, _) = post(&mut browser, &path, &fields).await;
    assert_eq!(s, 303);
    let (s, b) = app
        .token_basic(&id, &secret, "grant_type=client_credentials")
        .await;
    assert_eq!(
        (s, b["reason"].as_str()),
        (401, Some("client_disabled")),
        "{b}"
    );
    // A bad allow-list is refused, naming the field, and changes nothing.
    let fields = form_of(
        &mut browser,
        &id,
        &[("enabled", "yes"), ("ip_allowlist", "nope")],
    )
    .await;
    let (s, _, body) = post(&mut browser, &path, &fields).await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("ip_allowlist"), "{body}");
    let (_, c) = app.get(&format!("/oauth/clients/{id}")).await;
    assert_eq!(c["enabled"], false, "{c}");
    app.stop().await;
}

/// A client's settings form as its page shows it now (csrf, version, the
/// client_credentials grant), with `extra` fields.
async fn form_of(
    browser: &mut Browser,
    id: &str,
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, String)> {
    let (_, _, page) = browser.get(&format!("/admin/clients/{id}")).await;
    let mut f = vec![
        ("csrf", csrf(&page)),
        ("version", hidden(&page, "version")),
        ("grant", "client_credentials".to_string()),
    ];
    f.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    f
}

/// Posts owned form fields from the browser.
async fn post(
    browser: &mut Browser,
    path: &str,
    fields: &[(&'static str, String)],
) -> (u16, Option<String>, String) {
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    browser.post_form(path, &refs, None).await
}

/// IdP metadata as an IdP publishes it, with the test IdP's certificate.
fn idp_metadata(entity: &str) -> String {
    let bare: String = crate::helpers::IDP_CERT
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity}"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{bare}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.console.example/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
    )
}

#[tokio::test]
async fn an_org_admin_imports_the_idp_and_edits_the_mapping_and_break_glass_users() {
    let app = spawn_app().await;
    let (mut browser, ada) = logged_in_admin(&app).await;
    let grace = app.human("grace", "correct horse battery").await;
    let (_, _, page) = browser.get("/admin/sso").await;
    assert!(page.contains("<label for=\"metadata_xml\">"), "{page}");
    let token = csrf(&page);
    // Nothing given: refused, naming what is wanted.
    let (s, _, body) = browser
        .post_form("/admin/sso/idp", &[("csrf", &token)], None)
        .await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("idp_metadata_url"), "{body}");
    // Not metadata: refused by field, nothing stored.
    let (s, _, body) = browser
        .post_form(
            "/admin/sso/idp",
            &[("csrf", &token), ("metadata_xml", "<html>no</html>")],
            None,
        )
        .await;
    assert_eq!(s, 422, "{body}");
    assert!(body.contains("idp_metadata_xml"), "{body}");
    let (_, cfg) = app.get("/sso/saml").await;
    assert_eq!(cfg["configured"], false, "{cfg}");
    // The metadata pasted: the IdP is configured.
    let metadata = idp_metadata("https://idp.console.example/metadata");
    let (s, location, _) = browser
        .post_form(
            "/admin/sso/idp",
            &[("csrf", &token), ("metadata_xml", &metadata)],
            None,
        )
        .await;
    assert_eq!(s, 303);
    let (_, _, page) = browser.get(&location.unwrap()).await;
    assert!(
        page.contains("The identity provider is saved, with 1 signing certificate(s)."),
        "{page}"
    );
    assert!(
        page.contains("https://idp.console.example/metadata"),
        "{page}"
    );
    // The mapping, JIT and a break-glass user.
    let version = hidden(&page, "version");
    let fields = [
        ("csrf", token.as_str()),
        ("version", version.as_str()),
        ("attribute_email", "mail"),
        ("attribute_groups", "groups"),
        (
            "group_roles",
            "Engineering = developer deployer\r\nCN=Admins,OU=Groups = org_admin",
        ),
        ("jit_provisioning", "yes"),
        ("clock_skew_seconds", "90"),
        ("break_glass", ada.as_str()),
    ];
    let (s, location, body) = browser.post_form("/admin/sso/policy", &fields, None).await;
    assert_eq!(s, 303, "{body}");
    assert_eq!(location.as_deref(), Some("/admin/sso?done=policy"));
    let (_, cfg) = app.get("/sso/saml").await;
    assert_eq!(
        cfg["idp_entity_id"], "https://idp.console.example/metadata",
        "the IdP stays: {cfg}"
    );
    assert_eq!(cfg["attribute_email"], "mail", "{cfg}");
    assert_eq!(
        cfg["group_roles"],
        json!({"Engineering": ["developer", "deployer"], "CN=Admins,OU=Groups": ["org_admin"]}),
        "{cfg}"
    );
    assert_eq!(cfg["jit_provisioning"], true, "{cfg}");
    assert_eq!(cfg["clock_skew_seconds"], 90, "{cfg}");
    assert_eq!(cfg["break_glass_user_ids"], json!([ada]), "{cfg}");
    let (_, _, page) = browser.get("/admin/sso").await;
    assert!(
        page.contains("Engineering = developer deployer"),
        "the form shows what is stored: {page}"
    );
    let version = hidden(&page, "version");
    // Errors name the field, and change nothing.
    for (field, value, named) in [
        (
            "group_roles",
            "Engineering developer",
            "group_roles, line 1",
        ),
        ("clock_skew_seconds", "601", "clock_skew_seconds"),
        ("clock_skew_seconds", "soon", "clock_skew_seconds"),
        ("break_glass", "u_nobody", "break_glass_user_ids[0]"),
    ] {
        let (s, _, body) = browser
            .post_form(
                "/admin/sso/policy",
                &[("csrf", &token), ("version", &version), (field, value)],
                None,
            )
            .await;
        assert_eq!(s, 422, "{field}={value}: {body}");
        assert!(body.contains(named), "{field}={value}: {body}");
    }
    let (_, after) = app.get("/sso/saml").await;
    assert_eq!(after, cfg);
    // A form opened before another admin's change is refused, and the change stays.
    let mut changed = cfg.clone();
    for k in [
        "org",
        "enforced",
        "configured",
        "idp_certificate_details",
        "idp_metadata_refreshed_at",
        "idp_metadata_error",
        "sp_entity_id",
        "sp_acs_url",
        "sp_slo_url",
        "sp_metadata_url",
        "sso_login_url",
    ] {
        changed.as_object_mut().unwrap().remove(k);
    }
    changed["allow_sha1"] = json!(true);
    let (s, b) = app.put("/sso/saml", changed).await;
    assert_eq!(s, 200, "{b}");
    let (s, _, body) = browser
        .post_form(
            "/admin/sso/policy",
            &[("csrf", &token), ("version", &version)],
            None,
        )
        .await;
    assert_eq!(s, 409, "{body}");
    let (_, after) = app.get("/sso/saml").await;
    assert_eq!(after["allow_sha1"], true, "{after}");
    // Unticking: grace was never exempt, ada no longer is, nor SHA-1.
    let (_, _, page) = browser.get("/admin/sso").await;
    let version = hidden(&page, "version");
    let (s, _, _) = browser
        .post_form(
            "/admin/sso/policy",
            &[("csrf", &token), ("version", &version)],
            None,
        )
        .await;
    assert_eq!(s, 303);
    let (_, cfg) = app.get("/sso/saml").await;
    assert_eq!(cfg["break_glass_user_ids"], json!([]), "{cfg}");
    assert_eq!(cfg["jit_provisioning"], false, "{cfg}");
    assert_eq!(cfg["allow_sha1"], false, "{cfg}");
    assert!(!grace.is_empty());
    // Every change is in the audit trail, by the person, from the console.
    let (_, events) = app.get("/audit/events?kind=admin").await;
    let saves: Vec<_> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["change"]["op"] == "put_sso_config")
        .collect();
    let by_console: Vec<_> = saves
        .iter()
        .filter(|e| e["change"]["via"] == "console" && e["change"]["by"] == "ada")
        .collect();
    assert_eq!((saves.len(), by_console.len()), (4, 3), "{events}");
    app.stop().await;
}

#[tokio::test]
async fn an_org_admin_sets_roles_but_not_away_from_themselves() {
    let app = spawn_app().await;
    let (mut browser, ada) = logged_in_admin(&app).await;
    let grace = app.human("grace", "correct horse battery").await;
    let (_, _, page) = browser.get(&format!("/admin/users/{grace}")).await;
    assert!(page.contains("<label for=\"roles\">"), "{page}");
    let token = csrf(&page);
    let (s, location, _) = browser
        .post_form(
            &format!("/admin/users/{grace}/roles"),
            &[
                ("csrf", &token),
                ("roles", " org_auditor  billing org_auditor "),
            ],
            None,
        )
        .await;
    assert_eq!(s, 303);
    let (_, _, page) = browser.get(&location.unwrap()).await;
    assert!(page.contains("grace&#39;s roles are saved."), "{page}");
    let (_, u) = app.get(&format!("/users/{grace}")).await;
    assert_eq!(u["roles"], json!(["org_auditor", "billing"]), "{u}");
    // Taking one's own org_admin role away: refused, nothing changed.
    let (s, _, body) = browser
        .post_form(
            &format!("/admin/users/{ada}/roles"),
            &[("csrf", &token), ("roles", "billing")],
            None,
        )
        .await;
    assert_eq!(s, 409, "{body}");
    let (_, u) = app.get(&format!("/users/{ada}")).await;
    assert_eq!(u["roles"], json!(["org_admin"]), "{u}");
    app.stop().await;
}

//! The authorization code flow with PKCE, driven over HTTP as a browser drives it
//! (redirects followed, cookies kept, the login form filled), then the code exchange,
//! the ID token, userinfo and refresh rotation; and every refusal with its reason.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tessera_core::interactive::s256;

use crate::helpers::{TestApp, spawn_app};

pub const REDIRECT: &str = "http://127.0.0.1:9/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-and-some-more";

/// A browser: no automatic redirects (each hop is checked), a cookie jar.
pub struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
    base: String,
}

/// Where a walk through the server ended.
#[derive(Debug)]
pub enum Landed {
    /// A redirect out of the server (to the client), with its query parameters.
    Client(String, BTreeMap<String, String>),
    /// A page of the server that does not move on (a form, an error page).
    Page(u16, String, String),
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
            base: app.base.clone(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, r: &reqwest::Response) {
        for c in r.headers().get_all("set-cookie") {
            let first = c.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            if v.is_empty() || c.to_str().unwrap().contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
    }

    fn absolute(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_string()
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> reqwest::Response {
        let r = req
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep_cookies(&r);
        r
    }

    /// Posts a form from this browser (its cookies; `origin` as the `Origin` header, as
    /// browsers send it on a form post): (status, Location, body).
    pub async fn post_form(
        &mut self,
        url: &str,
        fields: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (u16, Option<String>, String) {
        let mut req = self.http.post(self.absolute(url)).form(fields);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = self.send(req).await;
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        (status, location, r.text().await.unwrap())
    }

    /// A page of the server as this browser gets it: (status, headers, body).
    pub async fn get(&mut self, url: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let r = self.send(self.http.get(self.absolute(url))).await;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.unwrap())
    }

    /// Follows redirects and `<meta http-equiv="refresh">` from `url` until the browser
    /// leaves the server or stops at a page.
    pub async fn walk(&mut self, url: &str) -> Landed {
        let mut url = self.absolute(url);
        for _ in 0..10 {
            if url != self.base && !url.starts_with(&format!("{}/", self.base)) {
                return Landed::Client(url.clone(), query_of(&url));
            }
            let r = self.send(self.http.get(&url)).await;
            let status = r.status().as_u16();
            if let Some(loc) = r.headers().get("location") {
                url = self.absolute(loc.to_str().unwrap());
                continue;
            }
            let body = r.text().await.unwrap();
            if let Some(next) = meta_refresh(&body) {
                url = self.absolute(&next);
                continue;
            }
            return Landed::Page(status, url, body);
        }
        panic!("too many redirects");
    }

    /// Fills and submits the login form shown at `page` (its URL and HTML), then walks on.
    pub async fn log_in(&mut self, page: &str, html: &str, user: &str, password: &str) -> Landed {
        let field = |name: &str| {
            html.split(&format!("name=\"{name}\" value=\""))
                .nth(1)
                .unwrap_or_else(|| panic!("no {name} field in {html}"))
                .split('"')
                .next()
                .unwrap()
                .replace("&amp;", "&")
                .replace("&quot;", "\"")
        };
        let action = page.split('?').next().unwrap().to_string();
        let r = self
            .send(self.http.post(&action).form(&[
                ("csrf", field("csrf")),
                ("return_to", field("return_to")),
                ("username", user.to_string()),
                ("password", password.to_string()),
            ]))
            .await;
        if let Some(loc) = r.headers().get("location") {
            let loc = loc.to_str().unwrap().to_string();
            return self.walk(&loc).await;
        }
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        match meta_refresh(&body) {
            Some(next) => self.walk(&next).await,
            None => Landed::Page(status, action, body),
        }
    }

    /// The whole login: the authorization request, the login form if one is shown, and
    /// the way back to the client.
    pub async fn authorize(&mut self, query: &str, user: &str, password: &str) -> Landed {
        match self.walk(&format!("/oauth/authorize?{query}")).await {
            Landed::Page(200, url, html) if html.contains("name=\"password\"") => {
                self.log_in(&url, &html, user, password).await
            }
            other => other,
        }
    }
}

fn meta_refresh(body: &str) -> Option<String> {
    let rest = body
        .split("http-equiv=\"refresh\" content=\"0;url=")
        .nth(1)?;
    Some(rest.split('"').next()?.replace("&amp;", "&"))
}

pub fn query_of(url: &str) -> BTreeMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// An authorization request's query for `client`, with PKCE S256 and `extra`.
pub fn request(client: &str, extra: &str) -> String {
    format!(
        "response_type=code&client_id={client}&redirect_uri={}&scope=openid%20profile%20email&state=st-123&nonce=n-456&code_challenge={}&code_challenge_method=S256{extra}",
        crate::helpers::enc(REDIRECT),
        s256(VERIFIER)
    )
}

/// A public client and a human with an email; returns the client id.
pub async fn setup(app: &TestApp) -> String {
    let (s, b) = app
        .post(
            "/oauth/clients",
            json!({
                "client_id": "spa",
                "name": "Agent desktop",
                "grant_types": ["authorization_code", "refresh_token"],
                "redirect_uris": [REDIRECT],
                "token_endpoint_auth_methods": ["none"],
            }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert!(
        b.get("client_secret").is_none(),
        "a public client has no secret: {b}"
    );
    let id = app.human("alice", "correct horse battery").await;
    let (s, b) = app
        .patch(
            &format!("/users/{id}"),
            json!({"email": "alice@example.com", "display_name": "Alice Liddell"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    "spa".into()
}

/// Exchanges a code as the public client: (status, body).
pub async fn exchange(app: &TestApp, code: &str, verifier: &str, redirect: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "spa"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

pub async fn refresh(app: &TestApp, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "spa"),
            ("refresh_token", token),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

use crate::helpers::jwt_claims as claims;

pub fn code_of(landed: Landed) -> String {
    match landed {
        Landed::Client(url, q) => {
            assert!(url.starts_with(REDIRECT), "{url}");
            q.get("code")
                .unwrap_or_else(|| panic!("no code: {q:?}"))
                .clone()
        }
        other => panic!("the login did not come back to the client: {other:?}"),
    }
}

#[tokio::test]
async fn a_person_logs_in_through_a_public_client_with_pkce() {
    let app = spawn_app().await;
    let client = setup(&app).await;
    let mut b = Browser::new(&app);

    // No session: the login page, then back to the client with a code, the state and iss.
    let landed = b
        .authorize(&request(&client, ""), "alice", "correct horse battery")
        .await;
    let Landed::Client(_, q) = &landed else {
        panic!("{landed:?}")
    };
    assert_eq!(q["state"], "st-123");
    assert_eq!(q["iss"], app.base);
    let code = code_of(landed);
    assert!(code.starts_with("tcode_"));

    let (s, t) = exchange(&app, &code, VERIFIER, REDIRECT).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["scope"], "openid profile email");
    let access = t["access_token"].as_str().unwrap();
    let refresh_token = t["refresh_token"].as_str().unwrap().to_string();
    assert!(refresh_token.starts_with("trt_"));

    // The ID token: the contract's claims.
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["iss"], app.base);
    assert_eq!(id["aud"], "spa");
    assert!(id["sub"].as_str().unwrap().starts_with("usr_"));
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["name"], "Alice Liddell");
    assert!(id["auth_time"].as_i64().unwrap() <= id["iat"].as_i64().unwrap());
    assert!(!id["sid"].as_str().unwrap().is_empty());
    let at_hash = {
        let d = ring_sha256(access.as_bytes());
        URL_SAFE_NO_PAD.encode(&d[..16])
    };
    assert_eq!(id["at_hash"], at_hash);
    let at = claims(access);
    assert_eq!(at["sub"], id["sub"]);
    assert_eq!(at["client_id"], "spa");

    // Userinfo: the same person, in the header or a POST body.
    let r = reqwest::Client::new()
        .get(app.url("/oauth/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let u: Value = r.json().await.unwrap();
    assert_eq!(u["sub"], id["sub"]);
    assert_eq!(u["email"], "alice@example.com");
    let r = reqwest::Client::new()
        .post(app.url("/oauth/userinfo"))
        .form(&[("access_token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new()
        .get(app.url("/oauth/userinfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer ")
    );
    let r = reqwest::Client::new()
        .get(app.url("/oauth/userinfo"))
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a service's token has no person behind it");

    // Refresh rotates: a new token each time.
    let (s, r1) = refresh(&app, &refresh_token).await;
    assert_eq!(s, 200, "{r1}");
    let next = r1["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(next, refresh_token);
    assert!(
        claims(r1["id_token"].as_str().unwrap())
            .get("nonce")
            .is_none()
    );
    let (s, r2) = refresh(&app, &next).await;
    assert_eq!(s, 200, "{r2}");

    // The session stays: a second authorization needs no form.
    let landed = b
        .walk(&format!("/oauth/authorize?{}", request(&client, "")))
        .await;
    let code2 = code_of(landed);
    assert_ne!(code2, code);

    // The audit trail holds the authorization decisions with their traces.
    let (s, events) = app.get("/audit/events?kind=authorize").await;
    assert_eq!(s, 200, "{events}");
    let items = events["events"].as_array().unwrap();
    assert!(items.iter().any(|e| e["outcome"] == "login"), "{events}");
    let granted = items
        .iter()
        .find(|e| e["outcome"] == "granted")
        .unwrap_or_else(|| panic!("{events}"));
    let trace = &app.audit(granted["request_id"].as_str().unwrap()).await["trace"];
    let checks: Vec<&str> = trace
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["check"].as_str().unwrap())
        .collect();
    for c in ["client", "redirect_uri", "response_type", "pkce", "session"] {
        assert!(checks.contains(&c), "{checks:?}");
    }

    // No code, refresh token, access token, ID token or PKCE verifier in a log line or
    // in the audit trail.
    let (_, all) = app.get("/audit/events?limit=200").await;
    let mut trail = all.to_string();
    for e in all["events"].as_array().unwrap() {
        trail.push_str(
            &app.audit(e["request_id"].as_str().unwrap())
                .await
                .to_string(),
        );
    }
    let logs = crate::helpers::captured_logs();
    for secret in [
        code.as_str(),
        code2.as_str(),
        refresh_token.as_str(),
        next.as_str(),
        access,
        t["id_token"].as_str().unwrap(),
        VERIFIER,
    ] {
        assert!(!trail.contains(secret), "a credential in the audit trail");
        assert!(!logs.contains(secret), "a credential in the logs");
    }
    app.stop().await;
}

fn ring_sha256(data: &[u8]) -> Vec<u8> {
    // An independent SHA-256: the PKCE transform of the core is what is under test.
    use sha2::Digest;
    sha2::Sha256::digest(data).to_vec()
}

#[tokio::test]
async fn reused_codes_and_refresh_tokens_revoke_what_they_issued() {
    let app = spawn_app().await;
    let client = setup(&app).await;
    let mut b = Browser::new(&app);

    let code = code_of(
        b.authorize(&request(&client, ""), "alice", "correct horse battery")
            .await,
    );
    let (s, t) = exchange(&app, &code, VERIFIER, REDIRECT).await;
    assert_eq!(s, 200, "{t}");
    // The second use of the code fails and revokes the first exchange's grant.
    let (s, again) = exchange(&app, &code, VERIFIER, REDIRECT).await;
    assert_eq!(
        (s, again["reason"].as_str()),
        (400, Some("code_reused")),
        "{again}"
    );
    assert_eq!(again["error"], "invalid_grant");
    let (s, r) = refresh(&app, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (s, r["reason"].as_str()),
        (400, Some("refresh_token_revoked")),
        "{r}"
    );
    let r = reqwest::Client::new()
        .get(app.url("/oauth/userinfo"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the revoked grant's access token is inactive"
    );

    // A used refresh token presented again revokes the whole family.
    let code = code_of(
        b.walk(&format!("/oauth/authorize?{}", request(&client, "")))
            .await,
    );
    let (_, t) = exchange(&app, &code, VERIFIER, REDIRECT).await;
    let first = t["refresh_token"].as_str().unwrap().to_string();
    let (_, r1) = refresh(&app, &first).await;
    let second = r1["refresh_token"].as_str().unwrap().to_string();
    let (s, r) = refresh(&app, &first).await;
    assert_eq!(
        (s, r["reason"].as_str()),
        (400, Some("refresh_token_reused")),
        "{r}"
    );
    let (s, r) = refresh(&app, &second).await;
    assert_eq!(
        (s, r["reason"].as_str()),
        (400, Some("refresh_token_revoked")),
        "{r}"
    );

    // Disabling the person revokes their refresh tokens and ends their sessions.
    let code = code_of(
        b.walk(&format!("/oauth/authorize?{}", request(&client, "")))
            .await,
    );
    let (_, t) = exchange(&app, &code, VERIFIER, REDIRECT).await;
    let user = claims(t["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = app
        .patch(&format!("/users/{user}"), json!({"enabled": false}))
        .await;
    assert_eq!(s, 200);
    let (s, r) = refresh(&app, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (s, r["reason"].as_str()),
        (400, Some("refresh_token_revoked")),
        "{r}"
    );
    assert!(
        r["error_description"]
            .as_str()
            .unwrap()
            .contains("user_disabled")
    );
    match b
        .walk(&format!("/oauth/authorize?{}", request(&client, "")))
        .await
    {
        Landed::Page(200, url, _) => assert!(url.contains("/login/default"), "{url}"),
        other => panic!("the session should have ended: {other:?}"),
    }
    app.stop().await;
}

#[tokio::test]
async fn every_authorization_refusal_names_its_reason() {
    let app = spawn_app().await;
    let client = setup(&app).await;
    let mut b = Browser::new(&app);

    // Before the redirect URI is trusted: an error page, never a redirect.
    for (query, reason) in [
        (request("nobody", ""), "client_unknown"),
        (
            request(&client, "").replace("127.0.0.1%3A9", "evil.example"),
            "redirect_uri_mismatch",
        ),
        ("response_type=code".to_string(), "parameter_missing"),
    ] {
        match b.walk(&format!("/oauth/authorize?{query}")).await {
            Landed::Page(400, _, html) => {
                assert!(html.contains(&format!("<code>{reason}</code>")), "{html}");
                assert!(
                    !html.contains("127.0.0.1:9"),
                    "registered URIs are not shown"
                );
            }
            other => panic!("{reason}: {other:?}"),
        }
    }

    // After: back to the client with error, reason, request_id, state and iss.
    let pkce = format!(
        "&code_challenge={}&code_challenge_method=S256",
        s256(VERIFIER)
    );
    let base = format!(
        "client_id={client}&redirect_uri={}&state=s1",
        crate::helpers::enc(REDIRECT)
    );
    for (query, error, reason) in [
        (
            format!("{base}&response_type=token{pkce}"),
            "unsupported_response_type",
            "response_type_unsupported",
        ),
        (
            format!("{base}&response_type=code"),
            "invalid_request",
            "pkce_required",
        ),
        (
            format!(
                "{base}&response_type=code&code_challenge={}&code_challenge_method=plain",
                s256(VERIFIER)
            ),
            "invalid_request",
            "pkce_method_unsupported",
        ),
        (
            format!("{base}&response_type=code{pkce}&scope=nope"),
            "invalid_scope",
            "scope_unknown",
        ),
        (
            format!("{base}&response_type=code{pkce}&prompt=none"),
            "login_required",
            "login_required",
        ),
        (
            format!("{base}&response_type=code{pkce}&prompt=bogus"),
            "invalid_request",
            "prompt_unsupported",
        ),
        (
            format!("{base}&response_type=code{pkce}&max_age=soon"),
            "invalid_request",
            "parameter_invalid",
        ),
    ] {
        match b.walk(&format!("/oauth/authorize?{query}")).await {
            Landed::Client(url, q) => {
                assert!(url.starts_with(REDIRECT), "{url}");
                assert_eq!(q["error"], error, "{q:?}");
                assert_eq!(q["reason"], reason, "{q:?}");
                assert_eq!(q["state"], "s1");
                assert_eq!(q["iss"], app.base);
                let event = app.audit(&q["request_id"]).await;
                assert_eq!(event["kind"], "authorize");
                assert_eq!(event["reason"], reason);
            }
            other => panic!("{reason}: {other:?}"),
        }
    }

    // The exchange's own checks.
    let code = code_of(
        b.authorize(&request(&client, ""), "alice", "correct horse battery")
            .await,
    );
    let (s, r) = exchange(&app, &code, &format!("{VERIFIER}-wrong"), REDIRECT).await;
    assert_eq!(
        (s, r["reason"].as_str()),
        (400, Some("pkce_verifier_mismatch")),
        "{r}"
    );
    let (s, r) = exchange(&app, &code, VERIFIER, "http://127.0.0.1:9/other").await;
    assert_eq!(
        (s, r["reason"].as_str()),
        (400, Some("redirect_uri_mismatch")),
        "{r}"
    );
    let (s, r) = exchange(&app, "tcode_made-up", VERIFIER, REDIRECT).await;
    assert_eq!(
        (s, r["reason"].as_str()),
        (400, Some("code_invalid")),
        "{r}"
    );
    // The code survived the failed attempts: the right exchange still works.
    let (s, r) = exchange(&app, &code, VERIFIER, REDIRECT).await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = refresh(&app, "trt_made-up").await;
    assert_eq!(
        (s, r["reason"].as_str()),
        (400, Some("refresh_token_invalid")),
        "{r}"
    );
    app.stop().await;
}

#[tokio::test]
async fn sso_enforcement_sends_the_login_to_the_idp_and_confidential_clients_authenticate() {
    let app = spawn_app().await;
    let client = setup(&app).await;
    app.enforce_sso(&[]).await;
    let mut b = Browser::new(&app);
    let r = b
        .send(
            b.http
                .get(app.url(&format!("/oauth/authorize?{}", request(&client, "")))),
        )
        .await;
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("/saml/default/login?return_to="), "{loc}");
    assert!(query_of(&loc)["return_to"].starts_with("/oauth/authorize?"));

    // A confidential client must authenticate at the exchange; its secret works.
    let (id, secret) = app
        .client(json!({
            "name": "web app",
            "grant_types": ["authorization_code"],
            "redirect_uris": [REDIRECT],
        }))
        .await;
    let r = reqwest::Client::new()
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", id.as_str()),
            ("code", "tcode_x"),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["reason"], "client_auth_missing", "{body}");
    let r = reqwest::Client::new()
        .post(app.url("/oauth/token"))
        .basic_auth(&id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "tcode_x"),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["reason"], "code_invalid", "{body}");
    // A public client cannot be given client_credentials.
    let (s, b) = app
        .patch(
            "/oauth/clients/spa",
            json!({"grant_types": ["client_credentials"]}),
        )
        .await;
    assert_eq!((s, b["field"].as_str()), (422, Some("grant_types")), "{b}");
    app.stop().await;
}

#[tokio::test]
async fn an_admin_sees_and_ends_a_persons_logins_through_the_api_and_the_cli() {
    let app = spawn_app().await;
    let client = setup(&app).await;
    let mut b = Browser::new(&app);
    let code = code_of(
        b.authorize(&request(&client, ""), "alice", "correct horse battery")
            .await,
    );
    let (_, first) = exchange(&app, &code, VERIFIER, REDIRECT).await;
    let code = code_of(
        b.walk(&format!("/oauth/authorize?{}", request(&client, "")))
            .await,
    );
    let (_, second) = exchange(&app, &code, VERIFIER, REDIRECT).await;
    let user = claims(first["id_token"].as_str().unwrap())["sub"]
        .as_str()
        .unwrap()
        .to_string();

    let (s, g) = app.get(&format!("/users/{user}/grants")).await;
    assert_eq!(s, 200, "{g}");
    let items = g["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{g}");
    assert!(
        items
            .iter()
            .all(|i| i["active"] == true && i["client_id"] == "spa")
    );

    // One grant revoked by id (an access token names its grant in `gid`): its refresh
    // token stops, the other keeps working.
    let first_id = claims(first["access_token"].as_str().unwrap())["gid"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, v) = app
        .delete(&format!("/users/{user}/grants/{first_id}"))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["revoked_reason"], "revoked_by_admin");
    let (s, r) = refresh(&app, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (s, r["reason"].as_str()),
        (400, Some("refresh_token_revoked")),
        "{r}"
    );
    let (s, r) = refresh(&app, second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 200, "{r}");
    let second = r;
    let (s, _) = app.delete(&format!("/users/{user}/grants/grt_nope")).await;
    assert_eq!(s, 404);

    // The CLI lists them and logs the person out everywhere.
    let cache = tempfile::tempdir().unwrap();
    let o = crate::cli::tessera(&app, cache.path(), &["admin", "users", "grants", &user]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("revoked_by_admin"), "{}", o.stdout);
    assert!(o.stdout.contains("spa"), "{}", o.stdout);
    let o = crate::cli::tessera(&app, cache.path(), &["admin", "users", "logout", &user]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let (s, r) = refresh(&app, second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (s, r["reason"].as_str()),
        (400, Some("refresh_token_revoked")),
        "{r}"
    );
    match b
        .walk(&format!("/oauth/authorize?{}", request(&client, "")))
        .await
    {
        Landed::Page(200, url, _) => assert!(url.contains("/login/default"), "{url}"),
        other => panic!("the session should have ended: {other:?}"),
    }
    let (s, e) = app.get("/audit/events?kind=admin").await;
    assert_eq!(s, 200);
    assert!(e.to_string().contains("end_sessions"), "{e}");
    app.stop().await;
}

#[tokio::test]
async fn an_admin_dry_runs_an_authorization_request() {
    let app = spawn_app().await;
    let client = setup(&app).await;
    let url = app.url(&format!("/oauth/authorize?{}", request(&client, "")));
    let (s, d) = app
        .post("/oauth/diagnose/authorize", json!({ "url": url }))
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(
        (d["outcome"].as_str(), d["login"].as_str()),
        (Some("login"), Some("password"))
    );
    let (_, users) = app.get("/users").await;
    let alice = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "alice")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, d) = app
        .post(
            "/oauth/diagnose/authorize",
            json!({ "url": url, "user_id": alice }),
        )
        .await;
    assert_eq!(d["outcome"], "code", "{d}");
    assert_eq!(d["scope"], "openid profile email");
    assert_eq!(d["redirect_uri"], REDIRECT);
    // A password session in an org that enforces SSO goes to the IdP; a bad link is a page.
    app.enforce_sso(&[]).await;
    let (_, d) = app
        .post(
            "/oauth/diagnose/authorize",
            json!({ "url": url, "user_id": alice, "session_method": "password" }),
        )
        .await;
    assert_eq!(
        (d["outcome"].as_str(), d["login"].as_str()),
        (Some("login"), Some("sso")),
        "{d}"
    );
    let bad = url.replace("127.0.0.1%3A9", "evil.example");
    let (_, d) = app
        .post("/oauth/diagnose/authorize", json!({ "url": bad }))
        .await;
    assert_eq!(
        (d["outcome"].as_str(), d["reason"].as_str()),
        (Some("error_page"), Some("redirect_uri_mismatch"))
    );
    let (s, d) = app
        .post("/oauth/diagnose/authorize", json!({ "url": "nothing" }))
        .await;
    assert_eq!((s, d["field"].as_str()), (422, Some("url")));
    let (_, events) = app.get("/audit/events?kind=diagnose").await;
    assert!(
        events["events"].as_array().unwrap().len() >= 4,
        "each dry run is audited"
    );
    // The CLI says it in words.
    let cache = tempfile::tempdir().unwrap();
    let o = crate::cli::tessera(
        &app,
        cache.path(),
        &[
            "admin",
            "diagnose",
            "--authorize-url",
            &url,
            "--as-user",
            &alice,
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("a code for"), "{}", o.stdout);
    assert!(o.stdout.contains("session"), "{}", o.stdout);
    app.stop().await;
}

#[tokio::test]
async fn rp_initiated_logout_ends_the_session_and_its_grants() {
    let app = spawn_app().await;
    let client = setup(&app).await;
    let bye = "http://127.0.0.1:9/bye";
    let (s, c) = app
        .patch(
            "/oauth/clients/spa",
            json!({"post_logout_redirect_uris": [bye]}),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["post_logout_redirect_uris"], json!([bye]));
    let mut b = Browser::new(&app);
    let code = code_of(
        b.authorize(&request(&client, ""), "alice", "correct horse battery")
            .await,
    );
    let (_, t) = exchange(&app, &code, VERIFIER, REDIRECT).await;
    let hint = t["id_token"].as_str().unwrap();

    // An unregistered destination is refused on a page.
    let q = |uri: &str| {
        format!(
            "/oauth/logout?id_token_hint={hint}&post_logout_redirect_uri={}&state=s9",
            crate::helpers::enc(uri)
        )
    };
    // The refusal names its reason and request id, and the org admin finds its trace.
    match b.walk(&q("http://127.0.0.1:9/elsewhere")).await {
        Landed::Page(400, _, html) => {
            assert!(html.contains("redirect_uri_mismatch"), "{html}");
            let rid = html
                .split("Reference: <code>")
                .nth(1)
                .and_then(|r| r.split('<').next())
                .unwrap();
            let e = app.audit(rid).await;
            assert_eq!(
                (e["outcome"].as_str(), e["reason"].as_str()),
                (Some("denied"), Some("redirect_uri_mismatch")),
                "{e}"
            );
            assert!(
                e["trace"]
                    .to_string()
                    .contains("not registered on client 'spa'"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    // With the session's ID token as hint: logged out at once, back with the state.
    match b.walk(&q(bye)).await {
        Landed::Client(url, q) => {
            assert!(url.starts_with(bye), "{url}");
            assert_eq!(q["state"], "s9");
        }
        other => panic!("{other:?}"),
    }
    let (s, r) = refresh(&app, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (s, r["reason"].as_str()),
        (400, Some("refresh_token_revoked")),
        "{r}"
    );
    assert!(r["error_description"].as_str().unwrap().contains("logout"));
    match b
        .walk(&format!("/oauth/authorize?{}", request(&client, "")))
        .await
    {
        Landed::Page(200, url, _) => assert!(url.contains("/login/default"), "{url}"),
        other => panic!("the session should have ended: {other:?}"),
    }

    // Without a hint, the person confirms on a page; a foreign page cannot confirm.
    let _ = code_of(
        b.authorize(&request(&client, ""), "alice", "correct horse battery")
            .await,
    );
    match b.walk("/oauth/logout?client_id=spa").await {
        Landed::Page(200, _, html) => assert!(html.contains("Log out?"), "{html}"),
        other => panic!("{other:?}"),
    }
    let r = b
        .send(
            b.http
                .post(app.url("/oauth/logout"))
                .header("origin", "https://evil.example")
                .form(&[("confirm", "yes")]),
        )
        .await;
    assert_eq!(r.status(), 403);
    let r = b
        .send(
            b.http
                .post(app.url("/oauth/logout"))
                .header("origin", app.base.as_str())
                .form(&[("confirm", "yes"), ("client_id", "spa")]),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("You are logged out"));
    match b
        .walk(&format!("/oauth/authorize?{}", request(&client, "")))
        .await
    {
        Landed::Page(200, url, _) => assert!(url.contains("/login/default"), "{url}"),
        other => panic!("the session should have ended: {other:?}"),
    }
    // Confirmed by the form with a destination: a page that moves on to it (no redirect
    // after a form post, which the page's CSP form-action would hold).
    let _ = code_of(
        b.authorize(&request(&client, ""), "alice", "correct horse battery")
            .await,
    );
    let r = b
        .send(
            b.http
                .post(app.url("/oauth/logout"))
                .header("origin", app.base.as_str())
                .form(&[
                    ("confirm", "yes"),
                    ("client_id", "spa"),
                    ("post_logout_redirect_uri", bye),
                    ("state", "s10"),
                ]),
        )
        .await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains(&format!("content=\"0;url={bye}?state=s10\"")),
        "{html}"
    );
    let meta: Value = app
        .public_json(app.url("/.well-known/openid-configuration"))
        .await;
    assert_eq!(meta["end_session_endpoint"], app.url("/oauth/logout"));
    app.stop().await;
}

/// OpenID Connect Core §3.1.2.1: the authorization endpoint takes POST as well as GET;
/// a login on the way comes back by GET with the same request.
#[tokio::test]
async fn the_authorization_request_may_come_by_post() {
    let app = spawn_app().await;
    let client = setup(&app).await;
    let mut b = Browser::new(&app);
    let post = |b: &Browser, content_type: &str, body: String| {
        b.http
            .post(app.url("/oauth/authorize"))
            .header("content-type", content_type)
            .body(body)
    };
    let form = "application/x-www-form-urlencoded";
    let r = b.send(post(&b, form, request(&client, ""))).await;
    assert_eq!(r.status(), 303, "to the login page first, by GET");
    let login = r.headers()["location"].to_str().unwrap().to_string();
    let landed = match b.walk(&login).await {
        Landed::Page(200, url, html) => {
            b.log_in(&url, &html, "alice", "correct horse battery")
                .await
        }
        other => panic!("{other:?}"),
    };
    let code = code_of(landed);
    let (s, t) = exchange(&app, &code, VERIFIER, REDIRECT).await;
    assert_eq!(s, 200, "{t}");
    // With the session, a POST goes straight back to the client.
    let r = b.send(post(&b, form, request(&client, ""))).await;
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(
        loc.starts_with(REDIRECT) && query_of(loc).contains_key("code"),
        "{loc}"
    );
    // Only a form body.
    let r = b.send(post(&b, "application/json", "{}".into())).await;
    assert_eq!(r.status(), 415);
    assert!(r.text().await.unwrap().contains("content_type_unsupported"));
    app.stop().await;
}

/// The OpenID Connect scopes are in every org's catalogue: listed, never created again,
/// assignable to a client, and never in a token of the client itself.
#[tokio::test]
async fn the_openid_connect_scopes_are_in_every_catalogue() {
    let app = spawn_app().await;
    let (s, list) = app.get("/scopes").await;
    assert_eq!(s, 200, "{list}");
    let builtin: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["builtin"] == true)
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(builtin, ["openid", "profile", "email", "offline_access"]);
    let (s, e) = app
        .post("/scopes", json!({"name": "email", "description": "mine"}))
        .await;
    assert_eq!(s, 409, "{e}");
    app.scopes(&["reports:read"]).await;
    let (id, secret) = app
        .client(json!({
            "name": "both",
            "grant_types": ["client_credentials", "authorization_code"],
            "redirect_uris": [REDIRECT],
            "scopes": ["openid", "email", "reports:read"],
        }))
        .await;
    // The client's own token: its API scopes only, and a precise refusal when it asks
    // for a person's scope.
    let (s, t) = app
        .token_basic(&id, &secret, "grant_type=client_credentials")
        .await;
    assert_eq!((s, t["scope"].as_str()), (200, Some("reports:read")), "{t}");
    let (s, e) = app
        .token_basic(&id, &secret, "grant_type=client_credentials&scope=openid")
        .await;
    assert_eq!(
        (s, e["reason"].as_str()),
        (400, Some("scope_not_allowed")),
        "{e}"
    );
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("a person's login"),
        "{e}"
    );
    app.stop().await;
}

#[tokio::test]
async fn tessera_token_runs_the_code_flow_for_debugging() {
    let app = spawn_app().await;
    setup(&app).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redirect = format!("http://127.0.0.1:{port}/cb");
    let (s, b) = app
        .post(
            "/oauth/clients",
            json!({
                "client_id": "cli-debug",
                "name": "tessera token",
                "grant_types": ["authorization_code"],
                "redirect_uris": [redirect],
                "token_endpoint_auth_methods": ["none"],
            }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "token",
            "--flow",
            "code",
            "--url",
            &app.base,
            "--client-id",
            "cli-debug",
            "--redirect-uri",
            &redirect,
            "--wait",
            "60",
            "--public",
        ])
        // A secret in the environment (as for tessera admin) is not sent with --public.
        .env("TESSERA_CLIENT_SECRET", "tsec_of_another_client")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The command's output, line by line, from a thread (its stdout blocks).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.blocking_send(l).is_err() {
                break;
            }
        }
    });
    // Waits without blocking: the server under test runs on this same runtime.
    async fn next(rx: &mut tokio::sync::mpsc::Receiver<String>) -> Option<String> {
        tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
            .await
            .ok()
            .flatten()
    }
    let url = next(&mut rx)
        .await
        .expect("the command prints the authorization URL");
    assert!(url.starts_with(&app.url("/oauth/authorize?")), "{url}");
    let mut b = Browser::new(&app);
    let landed = match b.walk(&url).await {
        Landed::Page(200, page, html) if html.contains("name=\"password\"") => {
            b.log_in(&page, &html, "alice", "correct horse battery")
                .await
        }
        other => other,
    };
    let Landed::Client(callback, q) = landed else {
        panic!("{landed:?}")
    };
    assert!(callback.starts_with(&redirect), "{callback}");
    assert!(q.contains_key("code"), "{q:?}");
    // The browser's last step: the command's own listener takes the code.
    let r = reqwest::get(&callback).await.unwrap();
    assert_eq!(r.status(), 200);
    let mut out = String::new();
    while let Some(l) = next(&mut rx).await {
        out.push_str(&l);
        out.push('\n');
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{out}");
    assert!(out.contains("Logged in through"), "{out}");
    assert!(out.contains("alice@example.com"), "{out}");
    assert!(out.contains("preferred_username"), "{out}");
    app.stop().await;
}

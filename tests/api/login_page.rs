//! The local password login page: CSRF protection, sessions, the lockout and throttle,
//! and SSO enforcement (humans refused with `sso_required`, break-glass allowed and
//! audited) — the same person checks as the password grant.

use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

pub struct Browser {
    pub http: reqwest::Client,
}

impl Browser {
    pub fn new() -> Self {
        Self::from_address([127, 0, 0, 1])
    }

    /// A browser whose connections come from another loopback address (another person,
    /// or another machine of an attacker's).
    pub fn from_address(ip: [u8; 4]) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .local_address(std::net::IpAddr::from(ip))
                .build()
                .unwrap(),
        }
    }

    /// Opens the form: (csrf cookie, csrf field).
    pub async fn open(&self, app: &TestApp) -> (String, String) {
        let r = self
            .http
            .get(app.url("/login/default?return_to=/dashboard"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(cookie.contains("SameSite=Strict") && cookie.contains("HttpOnly"));
        let cookie = cookie.split(';').next().unwrap().to_string();
        let page = r.text().await.unwrap();
        let field = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        (cookie, field)
    }

    pub async fn submit(&self, app: &TestApp, user: &str, password: &str) -> reqwest::Response {
        let (cookie, csrf) = self.open(app).await;
        self.http
            .post(app.url("/login/default"))
            .header("cookie", cookie)
            .form(&[
                ("csrf", csrf.as_str()),
                ("return_to", "/dashboard"),
                ("username", user),
                ("password", password),
            ])
            .send()
            .await
            .unwrap()
    }
}

pub async fn shows(r: reqwest::Response, status: u16, reason: &str) -> String {
    assert_eq!(r.status().as_u16(), status);
    let page = r.text().await.unwrap();
    assert!(page.contains(&format!("<code>{reason}</code>")), "{page}");
    page
}

#[tokio::test]
async fn password_login_starts_a_session_and_csrf_is_required() {
    let app = spawn_app().await;
    app.human("erin", "erin-Password-1").await;
    let b = Browser::new();

    // Without the cookie's token the form is refused.
    let (_, csrf) = b.open(&app).await;
    let r = b
        .http
        .post(app.url("/login/default"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "erin"),
            ("password", "erin-Password-1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("login_csrf_invalid"), "{page}");
    assert!(!page.contains("erin-Password-1"));
    // Audited with its own reason and which half was missing, never the token.
    let (_, events) = app.get("/audit/events?kind=login&outcome=denied").await;
    let e = &events["events"][0];
    assert_eq!(e["reason"], "login_csrf_invalid", "{events}");
    assert_eq!(e["source_ip"], "127.0.0.1");
    let trace = e["trace"].to_string();
    assert!(
        trace.contains("login_form") && trace.contains("no tessera_login_csrf cookie"),
        "{trace}"
    );
    assert!(!trace.contains(&csrf), "the token is never recorded");

    let r = b.submit(&app, "erin", "erin-Password-1").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/dashboard");
    let session = r.headers()["set-cookie"].to_str().unwrap();
    let session = session.split(';').next().unwrap().to_string();
    let me: Value = b
        .http
        .get(app.url("/session"))
        .header("cookie", session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "erin");
    assert_eq!(me["method"], "password");

    // Wrong password: a quiet refusal, audited with the source address.
    let page = shows(
        b.submit(&app, "erin", "nope").await,
        401,
        "user_credentials_invalid",
    )
    .await;
    assert!(page.contains("the username or password is incorrect"));
    assert!(!page.contains("nope"));
    let (_, events) = app.get("/audit/events?kind=login&outcome=denied").await;
    assert_eq!(events["events"][0]["source_ip"], "127.0.0.1", "{events}");
    app.stop().await;
}

#[tokio::test]
async fn enforcement_refuses_human_passwords_at_the_login_page_except_break_glass() {
    let app = spawn_app().await;
    app.human("frank", "frank-Password-1").await;
    let glass = app.human("glass", "glass-Password-1").await;
    app.enforce_sso(&[&glass]).await;
    let b = Browser::new();
    let page = shows(
        b.submit(&app, "frank", "frank-Password-1").await,
        403,
        "sso_required",
    )
    .await;
    assert!(page.contains("/saml/default/login"), "{page}");
    let r = b.submit(&app, "glass", "glass-Password-1").await;
    assert_eq!(r.status(), 303);
    let (_, events) = app.get("/audit/events?kind=login&outcome=granted").await;
    assert_eq!(events["events"][0]["reason"], "sso_break_glass", "{events}");
    app.stop().await;
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_throttled() {
    let app = spawn_app().await;
    app.human("gina", "gina-Password-1").await;
    let b = Browser::new();
    for _ in 0..5 {
        shows(
            b.submit(&app, "gina", "wrong").await,
            401,
            "user_credentials_invalid",
        )
        .await;
    }
    // A sixth failure from this address (any username) starts the back-off; then the
    // throttle answers before any password is checked, right or wrong.
    shows(
        b.submit(&app, "nobody", "x").await,
        401,
        "user_credentials_invalid",
    )
    .await;
    let r = b.submit(&app, "gina", "gina-Password-1").await;
    assert!(r.headers().contains_key("retry-after"));
    shows(r, 429, "login_throttled").await;
    // Nothing locked the account: from her own address, gina logs in.
    let r = Browser::from_address([127, 0, 0, 2])
        .submit(&app, "gina", "gina-Password-1")
        .await;
    assert_eq!(r.status(), 303);
    let (_, u) = app.get("/users").await;
    let gina = u["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "gina")
        .unwrap()
        .clone();
    assert_eq!(
        gina["state"], "active",
        "wrong passwords never lock the account: {gina}"
    );
    app.stop().await;
}

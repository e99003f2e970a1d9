//! The attacks an outside security probe made, reproduced over HTTP against the real
//! server: bursts past throttling, floods of password hashes, enumeration at the login
//! page, locking a person out. Concurrent requests wait at a barrier, so they really
//! arrive together. No assertion here is about time.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::helpers::{basic, spawn_app};
use crate::login_page::{Browser, shows};

/// Sends `n` requests at once (each released by one barrier), returning their
/// (status, JSON body).
async fn burst<F, Fut>(n: usize, make: F) -> Vec<(u16, Value)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = reqwest::RequestBuilder> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let build = make(i);
            tokio::spawn(async move {
                let req = build.await;
                barrier.wait().await;
                let res = req.send().await.unwrap();
                let status = res.status().as_u16();
                let text = res.text().await.unwrap();
                (
                    status,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                )
            })
        })
        .collect();
    let mut out = vec![];
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_burst_of_wrong_secrets_gets_the_attempts_a_sequence_would() {
    let app = spawn_app().await;
    let (id, _) = app
        .client(json!({"name": "target", "grant_types": ["client_credentials"]}))
        .await;
    // Its own connection pool per request: 60 connections, not one queue.
    let replies = burst(60, |i| {
        let url = app.url("/oauth/token");
        let auth = basic(&id, &format!("tsec_wrong_guess_{i}"));
        async move {
            reqwest::Client::new()
                .post(url)
                .header("authorization", auth)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials")
        }
    })
    .await;
    let count = |reason: &str| {
        replies
            .iter()
            .filter(|(_, b)| b["reason"] == reason)
            .count()
    };
    // One after the other: five free failures, the sixth starts the block, the rest wait.
    assert_eq!(count("client_secret_mismatch"), 6, "{replies:?}");
    assert_eq!(count("client_throttled"), 54, "{replies:?}");
    assert!(replies.iter().all(
        |(s, b)| (*s == 401) == (b["reason"] == "client_secret_mismatch")
            || (*s == 429 && b["reason"] == "client_throttled")
    ));
    app.stop().await;
}

#[tokio::test]
async fn a_burst_of_logins_for_one_person_gets_no_more_password_checks_than_a_sequence() {
    let app = spawn_app().await;
    app.human("ivy", "ivy-Password-1").await;
    let b = Arc::new(Browser::new());
    // 29 wrong passwords and the right one, all at once from one address.
    let mut forms = vec![];
    for _ in 0..30 {
        forms.push(b.open(&app).await);
    }
    let forms = Arc::new(forms);
    let replies = burst(30, |i| {
        let (b, forms, url) = (b.clone(), forms.clone(), app.url("/login/default"));
        async move {
            let (cookie, csrf) = forms[i].clone();
            let password = if i == 17 {
                "ivy-Password-1".to_string()
            } else {
                format!("guess-{i}")
            };
            b.http.post(url).header("cookie", cookie).form(&[
                ("csrf", csrf),
                ("return_to", "/dashboard".into()),
                ("username", "ivy".into()),
                ("password", password),
            ])
        }
    })
    .await;
    let checked = replies
        .iter()
        .filter(|(s, _)| *s == 401 || *s == 303)
        .count();
    let throttled = replies.iter().filter(|(s, _)| *s == 429).count();
    // A sequence of 30 checks at most six (five free failures and the one that starts the
    // back-off) before the throttle answers; a burst gets no more.
    assert!((1..=6).contains(&checked), "{checked} checked: {replies:?}");
    assert!(throttled >= 24, "{throttled} throttled: {replies:?}");
    // The audit trail agrees: no more than six attempts reached the password check.
    let (_, events) = app.get("/audit/events?kind=login&limit=100").await;
    let reached = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["trace"].to_string().contains("user_password"))
        .count();
    assert_eq!(reached, checked, "{events}");
    app.stop().await;
}

#[tokio::test]
async fn the_login_page_gives_strangers_one_answer_and_counts_every_refusal() {
    let app = spawn_app().await;
    let svc = app.service_account("svc-payments").await;
    app.client(json!({"name": "Payments", "grant_types": ["client_credentials"], "service_account_id": svc}))
        .await;
    let disabled = app.human("dora", "dora-Password-1").await;
    let (s, body) = app
        .patch(&format!("/users/{disabled}"), json!({"enabled": false}))
        .await;
    assert_eq!(s, 200, "{body}");
    app.human("sso-sam", "sam-Password-1").await;
    app.enforce_sso(&[]).await;
    let b = Browser::new();
    let mut pages = vec![];
    // An unknown name, a service account, a disabled human and a human the org's SSO
    // enforcement refuses: before a password is verified, all look the same.
    for user in ["nobody-at-all", "svc-payments", "dora", "sso-sam"] {
        let page = shows(
            b.submit(&app, user, "a-guess").await,
            401,
            "user_credentials_invalid",
        )
        .await;
        for leak in [
            "cli_",
            "Payments",
            "disabled",
            "locked",
            "sso_required",
            "service account",
        ] {
            assert!(!page.contains(leak), "{user}: '{leak}' in {page}");
        }
        pages.push(
            page.split("name=\"csrf\" value=\"")
                .next()
                .unwrap()
                .to_string()
                + page.split("name=\"return_to\"").nth(1).unwrap(),
        );
    }
    assert!(pages.windows(2).all(|w| w[0] == w[1]), "{pages:#?}");
    // Every one of them counted against this address: five free, the sixth starts the
    // back-off, and the seventh is throttled whoever it names.
    shows(
        b.submit(&app, "svc-payments", "x").await,
        401,
        "user_credentials_invalid",
    )
    .await;
    shows(
        b.submit(&app, "sso-sam", "x").await,
        401,
        "user_credentials_invalid",
    )
    .await;
    shows(
        b.submit(&app, "nobody-at-all", "x").await,
        429,
        "login_throttled",
    )
    .await;
    // With the right password (from another address), the person learns about their
    // own account, and never who changed it.
    let page = shows(
        Browser::from_address([127, 0, 0, 9])
            .submit(&app, "dora", "dora-Password-1")
            .await,
        403,
        "user_disabled",
    )
    .await;
    assert!(!page.contains(&app.admin_id), "{page}");
    shows(
        Browser::from_address([127, 0, 0, 9])
            .submit(&app, "sso-sam", "sam-Password-1")
            .await,
        403,
        "sso_required",
    )
    .await;
    // The audit trail keeps the precise reasons.
    let (_, events) = app
        .get("/audit/events?kind=login&outcome=denied&limit=100")
        .await;
    let reasons: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    for r in [
        "service_account_no_password",
        "user_credentials_invalid",
        "login_throttled",
    ] {
        assert!(reasons.contains(&r), "{r} not in {reasons:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_attacker_at_one_address_cannot_lock_the_person_out() {
    let app = spawn_app().await;
    let hank = app.human("hank", "hank-Password-1").await;
    let attacker = Browser::from_address([127, 0, 0, 66]);
    for i in 0..20 {
        let r = attacker.submit(&app, "hank", &format!("guess-{i}")).await;
        assert!(
            [401, 429].contains(&r.status().as_u16()),
            "{i}: {}",
            r.status()
        );
    }
    // The attacker is throttled, even with the right password...
    let r = attacker.submit(&app, "hank", "hank-Password-1").await;
    assert_eq!(r.status(), 429);
    // ...and hank, from his own address, logs in at once.
    let r = Browser::from_address([127, 0, 0, 67])
        .submit(&app, "hank", "hank-Password-1")
        .await;
    assert_eq!(r.status(), 303);
    let (_, u) = app.get(&format!("/users/{hank}")).await;
    assert_eq!(u["state"], "active", "{u}");
    app.stop().await;
}

#[tokio::test]
async fn many_addresses_against_one_username_reach_the_account_ceiling_not_a_lock() {
    let app = spawn_app().await;
    let (id, secret) = app
        .client(json!({"name": "portal", "grant_types": ["password"]}))
        .await;
    app.human("iris", "iris-Password-1").await;
    // 60 addresses, one wrong password each: no address is throttled on its own, but
    // together they pass the account-wide ceiling of 50.
    let mut reasons = vec![];
    for i in 0..60u8 {
        let (_, body) = app
            .password_grant_from([127, 0, 2, i + 1], &id, &secret, "iris", "guess")
            .await;
        reasons.push(body["reason"].as_str().unwrap().to_string());
    }
    assert!(
        reasons[..50]
            .iter()
            .all(|r| r == "user_credentials_invalid"),
        "{reasons:?}"
    );
    assert_eq!(reasons[51], "user_throttled", "{reasons:?}");
    let (_, users) = app.get("/users").await;
    let iris = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "iris")
        .unwrap();
    assert_eq!(
        iris["state"], "active",
        "the ceiling throttles; it never locks"
    );
    app.stop().await;
}

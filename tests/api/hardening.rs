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
    assert!(
        replies.iter().all(
            |(s, b)| (*s == 401 && b["reason"] == "client_secret_mismatch")
                || (*s == 429 && b["reason"] == "client_throttled")
        ),
        "{replies:?}"
    );
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
    let wrong = replies.iter().filter(|(s, _)| *s == 401).count();
    let checked = wrong + replies.iter().filter(|(s, _)| *s == 303).count();
    let throttled = replies.iter().filter(|(s, _)| *s == 429).count();
    // In any order, a sequence of these 30 checks at most twelve passwords: six before
    // the back-off starts, and if the right one came among them and cleared the record,
    // six more. A burst gets no more.
    assert!(
        (6..=12).contains(&checked),
        "{checked} checked: {replies:?}"
    );
    assert!(wrong <= 11, "{wrong} wrong passwords checked: {replies:?}");
    assert_eq!(checked + throttled, 30, "{replies:?}");
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

/// A `tessera serve` process of its own, so its memory is its own.
struct ServerProcess {
    child: std::process::Child,
    base: String,
    admin_id: String,
    admin_secret: String,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    fn start(config_toml: &str) -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database",
            ])
            .arg(dir.path().join("t.db"))
            .arg("--config")
            .arg({
                let path = dir.path().join("tessera.toml");
                std::fs::write(&path, config_toml).unwrap();
                path
            })
            .env(
                "TESSERA_MASTER_KEY",
                tessera_core::jwt::MasterKey::generate_base64(),
            )
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut id, mut secret) = (String::new(), String::new());
        while id.is_empty() || secret.is_empty() {
            let line = lines
                .next()
                .expect("the server printed its bootstrap admin")
                .unwrap();
            if let Some(v) = line.trim().strip_prefix("client_id:") {
                id = v.trim().to_string();
            }
            if let Some(v) = line.trim().strip_prefix("client_secret:") {
                secret = v.trim().to_string();
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self {
            child,
            base,
            admin_id: id,
            admin_secret: secret,
            _dir: dir,
        }
    }

    /// Peak resident memory of the process so far (`VmHWM`), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_flood_of_logins_from_many_addresses_keeps_memory_bounded_and_tokens_flowing() {
    // Two hash slots whatever the machine's core count: the bound under test.
    let server = ServerProcess::start("[limits]\npassword_hashes = 2\n");
    let base = server.base.clone();
    // 150 browsers at 150 addresses, each with the form open, post at once: every one of
    // them would run argon2id (about 19 MiB) if nothing bounded it.
    let mut forms = vec![];
    for i in 0..150u8 {
        let http = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 3, i + 1]))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = http
            .get(format!("{base}/login/default"))
            .send()
            .await
            .unwrap();
        let cookie = r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let page = r.text().await.unwrap();
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        forms.push((http, cookie, csrf));
    }
    let forms = Arc::new(forms);
    let token_url = format!("{base}/oauth/token");
    let admin = basic(&server.admin_id, &server.admin_secret);
    let flood = burst(150, |i| {
        let (forms, url) = (forms.clone(), format!("{base}/login/default"));
        async move {
            let (http, cookie, csrf) = &forms[i];
            http.post(url).header("cookie", cookie.clone()).form(&[
                ("csrf", csrf.clone()),
                ("username", format!("nobody-{i}")),
                ("password", "guess".to_string()),
            ])
        }
    });
    // Machines are not kept waiting behind the flood.
    let tokens = async {
        let http = reqwest::Client::new();
        let mut ok = 0;
        for _ in 0..20 {
            let r = http
                .post(&token_url)
                .header("authorization", &admin)
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            ok += usize::from(r.status() == 200);
        }
        ok
    };
    let (replies, tokens_ok) = tokio::join!(flood, tokens);
    assert_eq!(tokens_ok, 20);
    let checked = replies.iter().filter(|(s, _)| *s == 401).count();
    let busy: Vec<_> = replies.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!(checked + busy.len(), 150, "{replies:?}");
    assert!(checked > 0);
    for (_, page) in &busy {
        assert!(page.to_string().contains("password_check_busy"), "{page}");
    }
    let peak_mib = server.peak_rss_kib() / 1024;
    assert!(
        peak_mib < 256,
        "peak RSS {peak_mib} MiB under 150 concurrent logins"
    );
    // The refusals for lack of room are audited with their reason.
    let http = reqwest::Client::new();
    let token: Value = http
        .post(&token_url)
        .header("authorization", &admin)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    if !busy.is_empty() {
        let events: Value = http
            .get(format!(
                "{base}/api/v2/audit/events?reason=password_check_busy&limit=200"
            ))
            .bearer_auth(token["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            events["events"].as_array().unwrap().len(),
            busy.len(),
            "{events}"
        );
    }
}

/// Waits until the server closes `stream` (reads until EOF or an error), writing
/// `trickle` one byte at a time meanwhile; true when it was closed. The bound is a
/// deadlock guard, not a timing: the server's timeouts here are one second.
async fn closed_by_server(mut stream: tokio::net::TcpStream, trickle: &[u8]) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let guard = async {
        let mut buf = [0u8; 1024];
        let mut i = 0;
        loop {
            if i < trickle.len() && stream.write_all(&trickle[i..=i]).await.is_err() {
                return true;
            }
            i += 1;
            match tokio::time::timeout(std::time::Duration::from_millis(200), stream.read(&mut buf))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) | Err(_) => {}
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(120), guard)
        .await
        .unwrap_or(false)
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off_and_connections_are_bounded() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.limits.header_read_timeout_seconds = 1;
        c.limits.request_timeout_seconds = 1;
        c.limits.max_connections = 8;
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let connect = || tokio::net::TcpStream::connect(addr.clone());
    // An idle connection that never sends a byte.
    assert!(
        closed_by_server(connect().await.unwrap(), b"").await,
        "idle connection kept"
    );
    // A header sent at a few bytes a second never completes.
    let slow = b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n".repeat(20);
    assert!(
        closed_by_server(connect().await.unwrap(), &slow).await,
        "slow header kept"
    );
    // A kept-alive connection left idle after its request.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = connect().await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        assert!(
            closed_by_server(s, b"").await,
            "idle keep-alive connection kept"
        );
    }
    // A body trickled after a complete head: the request times out with 408.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = connect().await.unwrap();
        s.write_all(b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=").await.unwrap();
        let mut got = Vec::new();
        let read = async {
            let mut buf = [0u8; 1024];
            loop {
                let _ = s.write_all(b"x").await;
                match tokio::time::timeout(std::time::Duration::from_millis(200), s.read(&mut buf))
                    .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(120), read).await;
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("request_timeout"), "{text}");
    }
    // Eight connections held open fill the bound: a ninth is closed at once...
    let mut held = vec![];
    for _ in 0..8 {
        held.push(connect().await.unwrap());
    }
    tokio::task::yield_now().await;
    assert!(closed_by_server(connect().await.unwrap(), b"").await);
    // ...and once the server has cut the idle ones, machines get tokens again.
    for s in held {
        assert!(closed_by_server(s, b"").await);
    }
    let r = app.token_post(&app.admin_id, &app.admin_secret, "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tessera_connections_refused_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 1, "{metrics}");
    app.stop().await;
}

#[tokio::test]
async fn unauthenticated_sso_starts_cannot_grow_the_database() {
    let app = spawn_app().await;
    app.enforce_sso(&[]).await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let attacker = from([127, 0, 0, 77]);
    // A 60 KB return address is refused outright, nothing stored.
    let long = format!("/{}", "a".repeat(60 * 1024));
    let r = attacker
        .get(app.url("/saml/default/login"))
        .query(&[("return_to", long.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("at most 8192"));
    // Pending logins from one address are bounded: the 101st is refused...
    for i in 0..100 {
        let r = attacker
            .get(app.url(&format!("/saml/default/login?return_to=/app/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "start {i}");
    }
    let r = attacker
        .get(app.url("/saml/default/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("saml_pending_limit"));
    // ...while a person elsewhere still starts theirs.
    let r = from([127, 0, 0, 78])
        .get(app.url("/saml/default/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    app.stop().await;
}

#[tokio::test]
async fn pages_send_security_headers_and_secrets_are_never_cached() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    for path in ["/login/default", "/docs/errors", "/nowhere-at-all"] {
        let r = http.get(app.url(path)).send().await.unwrap();
        let h = r.headers().clone();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        let html = h["content-type"].to_str().unwrap().starts_with("text/html");
        if html {
            let csp = h["content-security-policy"].to_str().unwrap();
            for part in [
                "default-src 'none'",
                "frame-ancestors 'none'",
                "form-action 'self'",
            ] {
                assert!(csp.contains(part), "{path}: {csp}");
            }
            assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
            assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
            let body = r.text().await.unwrap();
            assert!(
                !body.contains("<style") && !body.contains("<script"),
                "{path}: inline code"
            );
        }
    }
    let css = http
        .get(app.url("/assets/tessera.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    // Machines get nosniff too.
    let r = app.token_post(&app.admin_id, &app.admin_secret, "").await;
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert_eq!(r.headers["cache-control"], "no-store");
    // Answers that carry a secret are never stored by a cache.
    let res = http
        .post(app.url("/api/v2/oauth/clients"))
        .bearer_auth(app.admin_token())
        .json(&json!({"name": "cached?", "grant_types": ["client_credentials"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let id = res.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_string();
    let res = http
        .post(app.url(&format!("/api/v2/oauth/clients/{id}/secrets")))
        .bearer_auth(app.admin_token())
        .json(&json!({"grace_seconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    // A session: /session is not cached, and another site cannot log it out.
    app.human("lena", "lena-Password-1").await;
    let b = Browser::new();
    let r = b.submit(&app, "lena", "lena-Password-1").await;
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let session = || {
        http.get(app.url("/session"))
            .header("cookie", &cookie)
            .send()
    };
    let logout = |origin: &str| {
        http.post(app.url("/logout"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .send()
    };
    let me = session().await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(me.headers()["cache-control"], "no-store");
    assert_eq!(logout("https://evil.example").await.unwrap().status(), 403);
    assert_eq!(
        session().await.unwrap().status(),
        200,
        "the session survived the forged logout"
    );
    assert_eq!(logout(app.base.as_str()).await.unwrap().status(), 200);
    assert_eq!(session().await.unwrap().status(), 401);
    app.stop().await;
}

/// The admin API's answer to `token` on `GET /api/v2/users`.
async fn admin_status(app: &crate::helpers::TestApp, token: &str) -> u16 {
    reqwest::Client::new()
        .get(app.url("/api/v2/users"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn token_of(app: &crate::helpers::TestApp, id: &str, secret: &str) -> String {
    let (s, b) = app
        .token_basic(id, secret, "grant_type=client_credentials")
        .await;
    assert_eq!(s, 200, "{b}");
    b["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn admin_tokens_lose_the_rights_their_client_loses() {
    let app = spawn_app().await;
    // The scope taken away: the earlier token no longer manages the org.
    let (ops, ops_secret) = app
        .client(json!({"name": "ops", "grant_types": ["client_credentials"], "scopes": ["tessera:admin"]}))
        .await;
    let t = token_of(&app, &ops, &ops_secret).await;
    assert_eq!(admin_status(&app, &t).await, 200);
    let (s, b) = app
        .patch(&format!("/oauth/clients/{ops}"), json!({"scopes": []}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(admin_status(&app, &t).await, 403);

    // Its service account disabled: the token cannot re-enable it.
    let sa = app.service_account("svc-ops").await;
    let (ops2, ops2_secret) = app
        .client(json!({"name": "ops2", "grant_types": ["client_credentials"], "scopes": ["tessera:admin"], "service_account_id": sa}))
        .await;
    let t2 = token_of(&app, &ops2, &ops2_secret).await;
    assert_eq!(admin_status(&app, &t2).await, 200);
    let (s, b) = app
        .patch(&format!("/users/{sa}"), json!({"enabled": false}))
        .await;
    assert_eq!(s, 200, "{b}");
    let res = reqwest::Client::new()
        .patch(app.url(&format!("/api/v2/users/{sa}")))
        .bearer_auth(&t2)
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let (_, u) = app.get(&format!("/users/{sa}")).await;
    assert_eq!(u["enabled"], false, "{u}");

    // Deleted and created again under the same id: the old token stays dead.
    let body = json!({"client_id": "reused-admin", "name": "reused", "grant_types": ["client_credentials"], "scopes": ["tessera:admin"]});
    let (id, secret) = app.client(body.clone()).await;
    let old = token_of(&app, &id, &secret).await;
    assert_eq!(admin_status(&app, &old).await, 200);
    let (s, _) = app.delete(&format!("/oauth/clients/{id}")).await;
    assert!(s == 200 || s == 204, "{s}");
    assert_eq!(admin_status(&app, &old).await, 401);
    let (id2, secret2) = app.client(body).await;
    assert_eq!(id2, id);
    assert_eq!(
        admin_status(&app, &old).await,
        401,
        "a reused id does not revive it"
    );
    let new = token_of(&app, &id2, &secret2).await;
    assert_eq!(admin_status(&app, &new).await, 200);

    // The secret it was issued for revoked: its tokens stop managing the org.
    let (_, secrets) = app.get(&format!("/oauth/clients/{id2}/secrets")).await;
    let sid = secrets["items"][0]["id"]
        .as_str()
        .or(secrets[0]["id"].as_str())
        .unwrap()
        .to_string();
    let (s, b) = app
        .post(
            &format!("/oauth/clients/{id2}/secrets"),
            json!({"grace_seconds": 600}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = app
        .delete(&format!("/oauth/clients/{id2}/secrets/{sid}"))
        .await;
    assert!(s == 200 || s == 204, "{s} {b}");
    assert_eq!(admin_status(&app, &new).await, 401);

    // An admin cannot take its own client's admin rights away by mistake.
    let me = app.admin_id.clone();
    let (s, b) = app
        .patch(&format!("/oauth/clients/{me}"), json!({"scopes": []}))
        .await;
    assert_eq!(s, 409, "{b}");
    let (_, secrets) = app.get(&format!("/oauth/clients/{me}/secrets")).await;
    let mine = secrets["items"][0]["id"]
        .as_str()
        .or(secrets[0]["id"].as_str())
        .unwrap()
        .to_string();
    let (s, b) = app
        .delete(&format!("/oauth/clients/{me}/secrets/{mine}"))
        .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(admin_status(&app, app.admin_token()).await, 200);
    app.stop().await;
}

#[tokio::test]
async fn right_passwords_at_once_are_not_refused_for_those_still_being_checked() {
    let app = spawn_app().await;
    let (id, secret) = app
        .client(json!({"name": "portal", "grant_types": ["password"], "scopes": ["tessera:admin"]}))
        .await;
    app.human("mia", "mia-Password-1").await;
    // Ten right passwords at once from one address: one after another, all would pass,
    // so all pass (those behind the first six wait for them instead of being refused).
    let replies = burst(10, |_| {
        let (url, id, secret) = (app.url("/oauth/token"), id.clone(), secret.clone());
        async move {
            reqwest::Client::new().post(url).form(&[
                ("grant_type", "password".to_string()),
                ("client_id", id),
                ("client_secret", secret),
                ("username", "mia".into()),
                ("password", "mia-Password-1".into()),
            ])
        }
    })
    .await;
    assert!(replies.iter().all(|(s, _)| *s == 200), "{replies:?}");
    // A person's token is no admin token, whatever scope its client holds.
    let token = replies[0].1["access_token"].as_str().unwrap();
    assert_eq!(admin_status(&app, token).await, 403);
    app.stop().await;
}

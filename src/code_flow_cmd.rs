//! `tessera token --flow code`: a person's login through a browser, for debugging an
//! application's setup. Prints the authorization URL (PKCE S256, state, nonce), listens
//! on the loopback redirect URI for the browser to come back, checks `state` and `iss`,
//! exchanges the code and shows the tokens and the decoded ID token; a refusal is
//! explained with its reason and request id, like the client credentials flow.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tessera_core::interactive::s256;
use tessera_core::secret::random_bytes;
use tessera_core::text::shown as esc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::token_cmd::{TokenArgs, claims, exit, form};

fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    random_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The loopback address and path of the redirect URI.
fn loopback(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let loop_host = host.starts_with("127.0.0.1:")
        || host.starts_with("[::1]:")
        || host.starts_with("localhost:");
    loop_host.then(|| (host.replace("localhost", "127.0.0.1"), format!("/{path}")))
}

/// Waits for the browser's one request to the redirect URI; returns its query.
async fn callback(addr: &str, path: &str, wait: Duration) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (mut conn, _) = tokio::time::timeout_at(deadline, listener.accept())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no browser came back to the redirect URI in {} s",
                    wait.as_secs()
                )
            })??;
        let mut buf = vec![0u8; 8192];
        let mut n = 0;
        while n < buf.len() {
            let read =
                tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf[n..])).await;
            match read {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(k)) => n += k,
                Ok(Err(_)) => break,
            }
            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        let target = head.split(' ').nth(1).unwrap_or("").to_string();
        let (p, q) = target.split_once('?').unwrap_or((&target, ""));
        let ok = p == path;
        let body = if ok {
            "<!doctype html><title>tessera token</title><p>Done: you can close this window and go back to the terminal.</p>"
        } else {
            "<!doctype html><title>tessera token</title><p>Not the redirect URI.</p>"
        };
        let status = if ok { "200 OK" } else { "404 Not Found" };
        let _ = conn
            .write_all(
                format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        if ok {
            return Ok(q.to_string());
        }
    }
}

/// Runs the code flow; returns the exit code.
pub async fn run(args: &TokenArgs) -> anyhow::Result<i32> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let Some((addr, path)) = loopback(&args.redirect_uri) else {
        eprintln!(
            "--redirect-uri must be a loopback http URI with a port (http://127.0.0.1:8765/callback), registered on the client: this command listens there"
        );
        return Ok(exit::USAGE);
    };
    let issuer = args.url.trim_end_matches('/');
    let meta: Value = match http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
        Ok(r) => {
            eprintln!(
                "{issuer} has no OpenID Connect discovery document (HTTP {}): pass the issuer URL",
                r.status()
            );
            return Ok(exit::USAGE);
        }
        Err(e) => {
            eprintln!("cannot reach {issuer}: {e}");
            return Ok(exit::UNAVAILABLE);
        }
    };
    let (Some(authz), Some(token_ep)) = (
        meta["authorization_endpoint"].as_str(),
        meta["token_endpoint"].as_str(),
    ) else {
        eprintln!(
            "the discovery document of {issuer} names no authorization_endpoint and token_endpoint"
        );
        return Ok(exit::USAGE);
    };
    let verifier = random(32);
    let state = random(16);
    let nonce = random(16);
    let scope = args
        .scope
        .clone()
        .unwrap_or_else(|| "openid profile email".into());
    let url = format!(
        "{authz}?response_type=code&client_id={}&redirect_uri={}&scope={}&state={state}&nonce={nonce}&code_challenge={}&code_challenge_method=S256",
        form(&args.client_id),
        form(&args.redirect_uri),
        form(&scope),
        s256(&verifier)
    );
    // Listen before the URL is shown: the browser may be fast.
    let wait = Duration::from_secs(args.wait);
    let cb = tokio::spawn({
        let (addr, path) = (addr.clone(), path.clone());
        async move { callback(&addr, &path, wait).await }
    });
    tokio::task::yield_now().await;
    eprintln!(
        "Open this URL in a browser and log in (waiting up to {} s on {}):",
        args.wait, args.redirect_uri
    );
    println!("{url}");
    let query = match cb.await? {
        Ok(q) => q,
        Err(e) => {
            eprintln!("{e}");
            return Ok(exit::UNAVAILABLE);
        }
    };
    let q: std::collections::BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if q.get("state").map(String::as_str) != Some(state.as_str()) {
        println!(
            "The browser came back with another state: not the answer to this login (a stale tab?). Nothing was exchanged."
        );
        return Ok(exit::REFUSED);
    }
    if let Some(iss) = q.get("iss")
        && iss.trim_end_matches('/')
            != meta["issuer"]
                .as_str()
                .unwrap_or(issuer)
                .trim_end_matches('/')
    {
        println!(
            "The answer names issuer '{}', not '{}' (RFC 9207): refusing it. Nothing was exchanged.",
            esc(iss),
            issuer
        );
        return Ok(exit::REFUSED);
    }
    if let Some(error) = q.get("error") {
        println!("The authorization request was refused: {}", esc(error));
        if let Some(d) = q.get("error_description") {
            println!("  {}", esc(d));
        }
        if let Some(r) = q.get("reason") {
            println!("Cause: {} — {issuer}/docs/errors#{}", esc(r), esc(r));
        }
        if let Some(rid) = q.get("request_id") {
            println!(
                "An org admin can see every check of this decision: tessera admin audit explain {}",
                esc(rid)
            );
        }
        return Ok(exit::REFUSED);
    }
    let Some(code) = q.get("code") else {
        println!("The browser came back without a code or an error.");
        return Ok(exit::REFUSED);
    };
    let mut body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={verifier}",
        form(code),
        form(&args.redirect_uri)
    );
    let mut req = http
        .post(token_ep)
        .header("content-type", "application/x-www-form-urlencoded");
    match args.client_secret.as_ref().filter(|_| !args.public) {
        Some(secret) => {
            let raw = format!("{}:{}", form(&args.client_id), form(secret));
            req = req.header("authorization", format!("Basic {}", STANDARD.encode(raw)));
        }
        None => body.push_str(&format!("&client_id={}", form(&args.client_id))),
    }
    let res = match req.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot reach {token_ep}: {e}");
            return Ok(exit::UNAVAILABLE);
        }
    };
    let status = res.status().as_u16();
    let doc: Value = res.json().await.unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        println!("The code exchange failed: HTTP {status}");
        println!("  {}", esc(&doc.to_string()));
        if let Some(r) = doc["reason"].as_str() {
            println!(
                "Cause ({}): {}",
                esc(r),
                esc(doc["error_description"].as_str().unwrap_or(""))
            );
        }
        if let Some(rid) = doc["request_id"].as_str() {
            println!(
                "An org admin can see every check of this decision: tessera admin audit explain {}",
                esc(rid)
            );
        }
        return Ok(if status >= 500 {
            exit::UNAVAILABLE
        } else {
            exit::REFUSED
        });
    }
    let id = doc["id_token"].as_str().and_then(claims);
    if args.json {
        println!(
            "{}",
            json!({"ok": true, "token_endpoint": token_ep, "access_token": doc["access_token"],
                   "refresh_token": doc["refresh_token"], "scope": doc["scope"],
                   "expires_in": doc["expires_in"], "id_token_claims": id})
        );
        return Ok(0);
    }
    println!("Logged in through {authz}");
    println!(
        "  scope:         {}",
        esc(doc["scope"].as_str().unwrap_or(""))
    );
    println!("  expires_in:    {} s", esc(&doc["expires_in"].to_string()));
    println!(
        "  refresh_token: {}",
        if doc["refresh_token"].is_string() {
            "issued"
        } else {
            "none (the client may not refresh)"
        }
    );
    match &id {
        Some(c) => {
            println!("  id_token claims (decoded, not verified):");
            if c["nonce"].as_str() != Some(nonce.as_str()) {
                println!("    WARNING: the nonce is not this login's");
            }
            for k in [
                "iss",
                "sub",
                "aud",
                "auth_time",
                "sid",
                "preferred_username",
                "name",
                "email",
                "email_verified",
            ] {
                if !c[k].is_null() {
                    println!("    {k:<19} {}", esc(c[k].to_string().trim_matches('"')));
                }
            }
        }
        None => println!("  no id_token (ask for the openid scope)"),
    }
    println!("{}", esc(doc["access_token"].as_str().unwrap_or("")));
    Ok(0)
}

//! `tessera token`: fetch a token the way a client does, and when it fails, explain why.
//!
//! Works against any RFC 6749 server; against Tessera the explanation is exact (the
//! `reason` code, its documentation and the `request_id` an admin can look up).

use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use tessera_core::text::shown as esc;

/// Exit codes of `tessera token` and `tessera admin`.
pub mod exit {
    /// The server refused (a 4xx answer, or an OAuth error).
    pub const REFUSED: i32 = 1;
    /// Bad usage or configuration.
    pub const USAGE: i32 = 2;
    /// Authentication failed (401/403 at the admin API).
    pub const AUTH: i32 = 3;
    /// Not found (404).
    pub const NOT_FOUND: i32 = 4;
    /// Conflict (409).
    pub const CONFLICT: i32 = 5;
    /// The server could not be reached, or failed (5xx).
    pub const UNAVAILABLE: i32 = 6;
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum AuthStyle {
    /// HTTP Basic (client_secret_basic)
    Basic,
    /// client_id and client_secret in the form body (client_secret_post)
    Post,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Flow {
    /// A service's token (client_credentials)
    ClientCredentials,
    /// A person's login: the authorization code flow with PKCE, through a browser
    Code,
}

#[derive(Parser, Debug)]
pub struct TokenArgs {
    /// The token endpoint, or the issuer URL (then discovery finds the token endpoint)
    #[arg(long, env = "TESSERA_URL")]
    pub url: String,
    #[arg(long, env = "TESSERA_CLIENT_ID")]
    pub client_id: String,
    /// The client secret (none for a public client in the code flow)
    #[arg(long, env = "TESSERA_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Which grant to run
    #[arg(long, value_enum, default_value = "client-credentials")]
    pub flow: Flow,
    /// The code flow's redirect URI: a loopback address this command listens on, as
    /// registered on the client (exact match)
    #[arg(long, default_value = "http://127.0.0.1:8765/callback")]
    pub redirect_uri: String,
    /// How long the code flow waits for the browser, in seconds
    #[arg(long, default_value_t = 300)]
    pub wait: u64,
    /// The code flow's client is public: send no secret, even if TESSERA_CLIENT_SECRET is set
    #[arg(long)]
    pub public: bool,
    /// Space-separated scopes to ask for (default: whatever the server grants)
    #[arg(long)]
    pub scope: Option<String>,
    /// How to send the client credentials
    #[arg(long, value_enum, default_value = "basic")]
    pub auth: AuthStyle,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn form(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Masks a secret for display: its length and last 4 characters.
pub fn mask(secret: &str) -> String {
    let n = secret.chars().count();
    let tail: String = secret.chars().skip(n.saturating_sub(4)).collect();
    if n <= 8 {
        format!("****({n} chars)")
    } else {
        format!("****{tail} ({n} chars)")
    }
}

/// Finds the token endpoint: the URL itself when it looks like one, else discovery.
async fn resolve(
    http: &reqwest::Client,
    url: &str,
    notes: &mut Vec<String>,
) -> anyhow::Result<String> {
    let trimmed = url.trim_end_matches('/');
    if trimmed.ends_with("/token") {
        return Ok(trimmed.to_string());
    }
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let res = match http.get(format!("{trimmed}{path}")).send().await {
            Ok(r) => r,
            Err(e) => bail!("cannot reach {trimmed}: {e}"),
        };
        if !res.status().is_success() {
            continue;
        }
        let doc: Value = res.json().await.unwrap_or(Value::Null);
        if let Some(ep) = doc["token_endpoint"].as_str() {
            if let Some(iss) = doc["issuer"].as_str()
                && iss.trim_end_matches('/') != trimmed
            {
                notes.push(format!(
                    "discovery at {trimmed} names the issuer '{iss}', not the URL you used: tokens will carry iss={iss}; if you expected another region or tenant, check the base URL"
                ));
            }
            return Ok(ep.to_string());
        }
    }
    notes.push(format!(
        "{trimmed} has no discovery document; used {trimmed}/oauth/token as the token endpoint"
    ));
    Ok(format!("{trimmed}/oauth/token"))
}

/// Decodes a JWT's payload without verifying it (for display only).
pub(crate) fn claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// What to check next, for servers that give no `reason`.
fn checklist(status: u16, error: Option<&str>, args: &TokenArgs) -> Vec<String> {
    let mut c = vec![];
    match error {
        Some("invalid_client") => {
            c.push("the client id and secret: copy them again; a secret is shown once when created or rotated, and an old one stops working after a rotation".into());
            c.push(format!(
                "the Basic header must be base64 of 'client_id:client_secret' (each form-url-encoded), not of the client id alone{}",
                if args.auth == AuthStyle::Basic { "; try --auth post to send them in the body instead" } else { "" }
            ));
            c.push("that you are calling the right server: the same region/tenant/issuer where the client was created".into());
            c.push("whether the client (or its service account) was disabled, or locked after repeated failures".into());
        }
        Some("unauthorized_client") => {
            c.push("whether the client_credentials grant is enabled on this client".into());
            c.push("an IP allow-list on the client that excludes your address".into());
            c.push("whether the client's service account is disabled or locked".into());
        }
        Some("invalid_scope") => {
            c.push("the scope names (case, separators: space-separated in one parameter)".into());
            c.push("whether those scopes are granted to this client; try without --scope to see what it gets".into());
        }
        Some("invalid_request") => {
            c.push("the body must be application/x-www-form-urlencoded (RFC 6749 §4.4.2); many servers refuse JSON".into());
            c.push("no parameter may appear twice, and credentials go in the header or the body, not both".into());
        }
        Some("unsupported_grant_type") => {
            c.push("the server does not support client_credentials at this endpoint".into());
        }
        Some("invalid_grant") => c.push("the grant is invalid or expired".into()),
        _ => {}
    }
    if status == 404 || status == 405 {
        c.push(
            "the token endpoint URL: pass the issuer URL instead and let discovery find it".into(),
        );
    }
    if status >= 500 {
        c.push("the server failed; retry later, and tell its operators".into());
    }
    if c.is_empty() {
        c.push("the response above; the server gave no standard OAuth error".into());
    }
    c.push("the clocks: a skewed clock on either side makes fresh tokens look expired".into());
    c
}

/// Runs `tessera token`; returns the process exit code.
pub async fn run(args: TokenArgs) -> anyhow::Result<i32> {
    if args.flow == Flow::Code {
        return crate::code_flow_cmd::run(&args).await;
    }
    let Some(client_secret) = args.client_secret.clone() else {
        eprintln!("client_credentials needs --client-secret (or TESSERA_CLIENT_SECRET)");
        return Ok(exit::USAGE);
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("HTTP client")?;
    let mut notes = vec![];
    let endpoint = match resolve(&http, &args.url, &mut notes).await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return Ok(exit::UNAVAILABLE);
        }
    };
    let mut body = "grant_type=client_credentials".to_string();
    let mut shown_body = body.clone();
    if let Some(s) = &args.scope {
        body.push_str(&format!("&scope={}", form(s)));
        shown_body.push_str(&format!("&scope={}", form(s)));
    }
    let mut req = http
        .post(&endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json");
    let shown_auth;
    match args.auth {
        AuthStyle::Basic => {
            let raw = format!("{}:{}", form(&args.client_id), form(&client_secret));
            req = req.header("authorization", format!("Basic {}", STANDARD.encode(raw)));
            shown_auth = format!(
                "Authorization: Basic base64('{}:{}')",
                args.client_id,
                mask(&client_secret)
            );
        }
        AuthStyle::Post => {
            body.push_str(&format!(
                "&client_id={}&client_secret={}",
                form(&args.client_id),
                form(&client_secret)
            ));
            shown_body.push_str(&format!(
                "&client_id={}&client_secret={}",
                form(&args.client_id),
                mask(&client_secret)
            ));
            shown_auth = "(credentials in the body: client_secret_post)".into();
        }
    }
    let res = match req.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot reach {endpoint}: {e}");
            return Ok(exit::UNAVAILABLE);
        }
    };
    let status = res.status().as_u16();
    let request_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = res.text().await.unwrap_or_default();
    let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);

    if (200..300).contains(&status)
        && let Some(token) = doc["access_token"].as_str()
    {
        let claims = claims(token);
        if let Some(asked) = &args.scope {
            let granted = doc["scope"]
                .as_str()
                .or_else(|| claims.as_ref().and_then(|c| c["scope"].as_str()))
                .unwrap_or("");
            let missing: Vec<&str> = asked
                .split(' ')
                .filter(|s| !s.is_empty() && !granted.split(' ').any(|g| g == *s))
                .collect();
            if !missing.is_empty() {
                notes.push(format!(
                    "asked for scope '{asked}' but the token carries '{granted}': this server dropped {} without an error; calls that need them will fail with 403",
                    missing.join(", ")
                ));
            }
        }
        if args.json {
            println!(
                "{}",
                json!({"ok": true, "token_endpoint": endpoint, "access_token": token,
                       "token_type": doc["token_type"], "expires_in": doc["expires_in"],
                       "scope": doc["scope"], "claims": claims, "notes": notes})
            );
        } else {
            println!("Token from {endpoint}");
            // The server's text is escaped for the terminal (tessera_core::text::shown).
            println!(
                "  token_type: {}",
                esc(doc["token_type"].as_str().unwrap_or("?"))
            );
            println!(
                "  scope:      {}",
                esc(doc["scope"].as_str().unwrap_or("(none stated)"))
            );
            println!("  expires_in: {} s", esc(&doc["expires_in"].to_string()));
            println!("  claims (decoded, not verified):");
            if let Some(c) = &claims {
                for k in ["iss", "sub", "aud", "client_id", "org", "exp", "jti"] {
                    let shown = match (&c[k], k) {
                        (Value::Null, _) => continue,
                        (Value::Number(n), "exp") => {
                            let at = n.as_i64().unwrap_or(0);
                            let left = at - now();
                            format!("{} (in {} min)", tessera_core::text::rfc3339(at), left / 60)
                        }
                        (Value::String(s), _) => s.clone(),
                        (v, _) => v.to_string(),
                    };
                    println!("    {k:<10}  {}", esc(&shown));
                }
            } else {
                println!("  (an opaque token: no claims to show)");
            }
            for n in &notes {
                println!("note: {}", esc(n));
            }
            println!("{}", esc(token));
        }
        return Ok(0);
    }

    let error = doc["error"].as_str();
    let reason = doc["reason"].as_str();
    let checks = if reason.is_some() {
        vec![]
    } else {
        checklist(status, error, &args)
    };
    if args.json {
        println!(
            "{}",
            json!({"ok": false, "token_endpoint": endpoint, "status": status,
                   "error": error, "error_description": doc["error_description"],
                   "reason": reason, "error_uri": doc["error_uri"],
                   "request_id": doc["request_id"].as_str().map(str::to_string).or(request_id),
                   "check_next": checks, "notes": notes, "response": if doc.is_null() { Value::String(text.clone()) } else { doc.clone() }})
        );
    } else {
        println!("The token request failed.\n");
        println!("Sent:");
        println!("  POST {endpoint}");
        println!("  Content-Type: application/x-www-form-urlencoded");
        println!("  {shown_auth}");
        println!("  {shown_body}\n");
        println!("Received: HTTP {status}");
        if doc.is_null() {
            let shown: String = text.chars().take(500).collect();
            println!("  {}", esc(&shown));
        } else {
            println!("  {}", esc(&doc.to_string()));
        }
        println!();
        match reason {
            Some(r) => {
                println!(
                    "Cause ({}): {}",
                    esc(r),
                    esc(doc["error_description"].as_str().unwrap_or(""))
                );
                if let Some(uri) = doc["error_uri"].as_str() {
                    println!("What it means and how to fix it: {}", esc(uri));
                }
                if let Some(rid) = doc["request_id"].as_str().or(request_id.as_deref()) {
                    println!(
                        "An org admin can see every check of this decision: tessera admin audit explain {}",
                        esc(rid)
                    );
                }
            }
            None => {
                if let Some(e) = error {
                    println!(
                        "The server answered '{}'{}.",
                        esc(e),
                        doc["error_description"]
                            .as_str()
                            .map(|d| format!(": {}", esc(d)))
                            .unwrap_or_default()
                    );
                }
                println!("Check next:");
                for c in &checks {
                    println!("  - {c}");
                }
            }
        }
        for n in &notes {
            println!("note: {}", esc(n));
        }
    }
    Ok(if status >= 500 {
        exit::UNAVAILABLE
    } else {
        exit::REFUSED
    })
}

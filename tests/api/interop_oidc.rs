//! The authorization code flow with PKCE, then a refresh, by relying parties we did not
//! write, unchanged and with their own strict checks: the npm `openid-client` (v6) and
//! Python's `authlib` as child processes (tests/oidc-rp/, driven over stdin/stdout), and
//! the `oauth2` crate in process. Each discovers the server, builds its own
//! authorization request (S256, state, nonce), and validates what comes back; the
//! browser's part (the login form) is played by `code_flow::Browser`. The redirect URI is
//! served by no one: the URL the browser is sent to when it leaves the server is the
//! callback the relying party is handed.
//!
//! openid-client needs Node.js 20+ and `npm ci` in tests/oidc-rp; authlib needs the venv
//! tests/oidc-rp/.venv (`.ci/run` makes both). Without them those tests say what is
//! missing and skip; TESSERA_REQUIRE_ALL=1 (CI) makes that a failure.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::code_flow::{Browser, Landed, REDIRECT};
use crate::helpers::{TestApp, spawn_app};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery";
const EMAIL: &str = "alice@example.com";
/// How long a relying party may take for one step (a bound, not a timing assertion).
const STEP: Duration = Duration::from_secs(90);

fn rp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-rp")
}

/// A public client for `client_id` (code and refresh grants) and the person who logs in;
/// returns the person's id.
async fn setup(app: &TestApp, client_id: &str) -> String {
    let (s, b) = app
        .post(
            "/oauth/clients",
            json!({
                "client_id": client_id,
                "name": format!("interop {client_id}"),
                "grant_types": ["authorization_code", "refresh_token"],
                "redirect_uris": [REDIRECT],
                "token_endpoint_auth_methods": ["none"],
            }),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let id = app.human(USER, PASSWORD).await;
    let (s, b) = app
        .patch(
            &format!("/users/{id}"),
            json!({"email": EMAIL, "display_name": "Alice Liddell"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    id
}

/// The browser's part: from the relying party's authorization URL through the login
/// form and back out of the server; returns the callback URL.
async fn log_in(app: &TestApp, authorization_url: &str) -> String {
    assert!(
        authorization_url.starts_with(&app.url("/oauth/authorize?")),
        "the relying party sends the browser to the discovered authorization endpoint: {authorization_url}"
    );
    let mut b = Browser::new(app);
    let landed = match b.walk(authorization_url).await {
        Landed::Page(200, url, html) if html.contains("name=\"password\"") => {
            b.log_in(&url, &html, USER, PASSWORD).await
        }
        other => panic!("no login form for {authorization_url}: {other:?}"),
    };
    match landed {
        Landed::Client(url, q) => {
            assert!(url.starts_with(REDIRECT), "{url}");
            assert!(q.contains_key("code"), "no code in the callback: {url}");
            url
        }
        other => panic!("the login did not come back to the client: {other:?}"),
    }
}

/// A relying party in a child process: one JSON object per line on stdout, the callback
/// URL on stdin, stderr kept for the failure message. Killed when dropped.
struct Rp {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: tempfile::NamedTempFile,
}

impl Rp {
    fn spawn(name: &'static str, mut cmd: Command) -> Self {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = cmd
            .current_dir(rp_dir())
            // Loopback only: no proxy from the environment may sit in between.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name,
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// The next JSON line. A refusal by the library fails the test with its own words.
    async fn next(&mut self) -> Value {
        let line = match tokio::time::timeout(STEP, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "{} ended without an answer; stderr:\n{}",
                self.name,
                self.stderr()
            ),
            Err(_) => panic!(
                "{} gave no answer within {STEP:?}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
        };
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.name));
        if let Some(err) = v.get("error") {
            panic!(
                "{} refused at step '{}': {err:#}\nstderr:\n{}",
                self.name,
                v["step"].as_str().unwrap_or("?"),
                self.stderr()
            );
        }
        v
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Rp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Drives one child relying party through the flow; returns (its first line, its result).
async fn drive(app: &TestApp, mut rp: Rp) -> (Value, Value) {
    let start = rp.next().await;
    let url = start["authorization_url"].as_str().unwrap().to_string();
    let q = crate::code_flow::query_of(&url);
    assert_eq!(q["code_challenge_method"], "S256", "{url}");
    assert!(q.contains_key("code_challenge"), "{url}");
    assert_eq!(
        q.get("state"),
        start["state"].as_str().map(String::from).as_ref()
    );
    assert_eq!(
        q.get("nonce"),
        start["nonce"].as_str().map(String::from).as_ref()
    );
    let callback = log_in(app, &url).await;
    rp.send(&callback);
    let result = rp.next().await;
    (start, result)
}

/// What every relying party must have come back with.
fn assert_flow(app: &TestApp, client_id: &str, person: &str, start: &Value, r: &Value) {
    let c = &r["claims"];
    assert_eq!(c["iss"], app.base, "{r:#}");
    assert_eq!(c["sub"], person, "{r:#}");
    assert!(
        c["aud"] == client_id || c["aud"] == json!([client_id]),
        "{r:#}"
    );
    assert_eq!(c["nonce"], start["nonce"], "{r:#}");
    assert_eq!(c["email"], EMAIL, "{r:#}");
    assert_eq!(c["preferred_username"], USER, "{r:#}");
    assert_eq!(r["userinfo"]["sub"], person, "{r:#}");
    assert_eq!(r["userinfo"]["email"], EMAIL, "{r:#}");

    let (t, n) = (&r["token"], &r["refreshed"]);
    assert_eq!(
        t["token_type"].as_str().map(str::to_lowercase).as_deref(),
        Some("bearer")
    );
    let old_access = t["access_token"].as_str().expect("an access token");
    let old_refresh = t["refresh_token"].as_str().expect("a refresh token");
    let new_access = n["access_token"]
        .as_str()
        .expect("refresh: an access token");
    let new_refresh = n["refresh_token"]
        .as_str()
        .expect("refresh: a refresh token");
    assert_ne!(
        new_access, old_access,
        "the refresh gave a new access token"
    );
    assert_ne!(
        new_refresh, old_refresh,
        "the refresh rotated the refresh token"
    );
    if let Some(rc) = r["refreshed_claims"].as_object() {
        assert_eq!(rc["sub"], person);
        assert_eq!(rc["iss"], app.base);
    }
}

/// After the relying party is done: the refresh token it was given last works.
async fn assert_rotated(app: &TestApp, client_id: &str, r: &Value) {
    let res = reqwest::Client::new()
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            (
                "refresh_token",
                r["refreshed"]["refresh_token"].as_str().unwrap(),
            ),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        status, 200,
        "the relying party's new refresh token works: {body}"
    );
}

// ---- openid-client (npm) ----

fn node_major() -> Option<u32> {
    let out = Command::new("node").arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v = String::from_utf8_lossy(&out.stdout);
    v.trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

fn openid_client(app: &TestApp, client_id: &str) -> Option<Rp> {
    let install =
        "install Node.js 20 or newer and run `npm ci` in tests/oidc-rp (.ci/run does both)";
    match node_major() {
        None => {
            crate::helpers::missing_peer(&format!(
                "openid-client: node is not installed: {install}"
            ));
            return None;
        }
        Some(v) if v < 20 => {
            crate::helpers::missing_peer(&format!(
                "openid-client v6 needs Node.js 20 or newer, found {v}: {install}"
            ));
            return None;
        }
        Some(_) => {}
    }
    if !rp_dir().join("node_modules/openid-client").exists() {
        crate::helpers::missing_peer(&format!(
            "openid-client is not installed in tests/oidc-rp/node_modules: {install}"
        ));
        return None;
    }
    let mut cmd = Command::new("node");
    cmd.arg("openid-client.mjs")
        .arg(&app.base)
        .arg(client_id)
        .arg(REDIRECT);
    Some(Rp::spawn("openid-client", cmd))
}

#[tokio::test]
async fn openid_client_code_flow_with_pkce_and_refresh() {
    let app = spawn_app().await;
    let client_id = "rp-openid-client";
    let person = setup(&app, client_id).await;
    let Some(rp) = openid_client(&app, client_id) else {
        return;
    };
    let (start, r) = drive(&app, rp).await;
    assert_eq!(r["library"], "openid-client");
    assert_eq!(r["server_metadata"]["issuer"], app.base);
    assert_flow(&app, client_id, &person, &start, &r);
    assert_eq!(r["refreshed_claims"]["sub"], person, "{r:#}");
    assert_rotated(&app, client_id, &r).await;
    app.stop().await;
}

// ---- authlib (PyPI) ----

fn authlib(app: &TestApp, client_id: &str) -> Option<Rp> {
    let python = rp_dir().join(".venv/bin/python");
    let install = "run `python3 -m venv tests/oidc-rp/.venv && tests/oidc-rp/.venv/bin/pip install -r tests/oidc-rp/requirements.txt` (.ci/run does it)";
    let ok = Command::new(&python)
        .args(["-c", "import authlib, joserfc, requests"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        crate::helpers::missing_peer(&format!(
            "authlib is not installed in tests/oidc-rp/.venv: {install}"
        ));
        return None;
    }
    let mut cmd = Command::new(python);
    cmd.arg("authlib_rp.py")
        .arg(&app.base)
        .arg(client_id)
        .arg(REDIRECT)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // authlib's switch that would let any http URL through its https rules.
        .env_remove("AUTHLIB_INSECURE_TRANSPORT");
    Some(Rp::spawn("authlib", cmd))
}

/// authlib's refusals of the discovery document. (Its https rules let loopback
/// addresses through on their own, RFC 8252 section 7.3, so nothing is waived for the
/// server under test on http://127.0.0.1.)
fn metadata_errors(r: &Value) -> Vec<String> {
    r["metadata_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

async fn authlib_flow(app: &TestApp, client_id: &str) -> Option<Value> {
    let person = setup(app, client_id).await;
    let rp = authlib(app, client_id)?;
    let (start, r) = drive(app, rp).await;
    assert_eq!(r["library"], "authlib");
    assert_flow(app, client_id, &person, &start, &r);
    assert_rotated(app, client_id, &r).await;
    Some(r)
}

/// OpenID Connect Discovery 1.0 §3 ("The algorithm RS256 MUST be included" in
/// id_token_signing_alg_values_supported) and Core 1.0 §15.1: ID tokens are RS256 even
/// when access tokens are ES256, the default. authlib's validators check the document.
#[tokio::test]
async fn authlib_code_flow_with_pkce_and_refresh() {
    let app = spawn_app().await;
    let Some(r) = authlib_flow(&app, "rp-authlib").await else {
        return;
    };
    assert_eq!(r["id_token_header"]["alg"], "RS256");
    let errors = metadata_errors(&r);
    assert!(
        errors.is_empty(),
        "authlib refuses the discovery document: {errors:#?}"
    );
    app.stop().await;
}

/// With `signing_alg = "RS256"` one key signs both kinds of token, and the document
/// still passes authlib's validators.
#[tokio::test]
async fn authlib_code_flow_with_rs256_signing() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.signing_alg = tessera_core::jwt::Alg::Rs256;
    })
    .await;
    let Some(r) = authlib_flow(&app, "rp-authlib-rs256").await else {
        return;
    };
    assert_eq!(r["id_token_header"]["alg"], "RS256");
    let errors = metadata_errors(&r);
    assert!(
        errors.is_empty(),
        "authlib refuses the discovery document: {errors:#?}"
    );
    app.stop().await;
}

// ---- the oauth2 crate (in process) ----

#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
struct IdTokenField {
    id_token: Option<String>,
}
impl oauth2::ExtraTokenFields for IdTokenField {}

type TokenResponse = oauth2::StandardTokenResponse<IdTokenField, oauth2::basic::BasicTokenType>;

#[tokio::test]
async fn oauth2_crate_code_flow_with_pkce_and_refresh() {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    use oauth2::basic::{
        BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    };
    use oauth2::{
        AuthUrl, AuthorizationCode, ClientId, CsrfToken, EndpointNotSet, EndpointSet,
        PkceCodeChallenge, RedirectUrl, Scope, StandardRevocableToken, TokenResponse as _,
        TokenUrl,
    };
    type Client = oauth2::Client<
        BasicErrorResponse,
        TokenResponse,
        BasicTokenIntrospectionResponse,
        StandardRevocableToken,
        BasicRevocationErrorResponse,
        EndpointSet,
        EndpointNotSet,
        EndpointNotSet,
        EndpointNotSet,
        EndpointSet,
    >;

    let app = spawn_app().await;
    let client_id = "rp-oauth2-crate";
    let person = setup(&app, client_id).await;
    let meta: Value = app
        .public_json(app.url("/.well-known/openid-configuration"))
        .await;
    assert_eq!(meta["issuer"], app.base);
    let client: Client = oauth2::Client::new(ClientId::new(client_id.into()))
        .set_auth_uri(
            AuthUrl::new(meta["authorization_endpoint"].as_str().unwrap().into()).unwrap(),
        )
        .set_token_uri(TokenUrl::new(meta["token_endpoint"].as_str().unwrap().into()).unwrap())
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    // A public client: no secret, the client_id goes in the body.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let nonce = CsrfToken::new_random();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(["openid", "profile", "email"].map(|s| Scope::new(s.into())))
        .add_extra_param("nonce", nonce.secret())
        .set_pkce_challenge(challenge)
        .url();
    let callback = log_in(&app, url.as_str()).await;
    let q = crate::code_flow::query_of(&callback);
    assert_eq!(&q["state"], state.secret());
    assert_eq!(
        q["iss"], app.base,
        "RFC 9207: the iss of the authorization response"
    );

    let token: TokenResponse = client
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("the oauth2 crate's code exchange: {e:?}"));
    assert_eq!(
        token
            .scopes()
            .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
        Some(vec!["openid", "profile", "email"])
    );

    // The ID token, checked with an independent JOSE library against the JWKS.
    let jwks: JwkSet = app.public_json(meta["jwks_uri"].as_str().unwrap()).await;
    let verify = |id_token: &str, access: &str| {
        let header = decode_header(id_token).unwrap();
        // RS256 whatever the access tokens use (OpenID Connect Core §15.1).
        assert_eq!(header.alg, Algorithm::RS256);
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("kid published");
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[&app.base]);
        v.set_audience(&[client_id]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let c = decode::<Value>(id_token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
            .expect("the ID token verifies")
            .claims;
        use base64::Engine;
        use sha2::Digest;
        let half = &sha2::Sha256::digest(access.as_bytes())[..16];
        assert_eq!(
            c["at_hash"],
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(half)
        );
        c
    };
    let access = token.access_token().secret().clone();
    let id = verify(
        token
            .extra_fields()
            .id_token
            .as_deref()
            .expect("an ID token"),
        &access,
    );
    assert_eq!(id["sub"], person);
    assert_eq!(id["nonce"], nonce.secret().as_str());
    assert_eq!(id["email"], EMAIL);

    // Refresh twice: each rotation's new token is the one the next uses.
    let mut refresh = token.refresh_token().expect("a refresh token").clone();
    let mut access_before = access;
    for _ in 0..2 {
        let next: TokenResponse = client
            .exchange_refresh_token(&refresh)
            .request_async(&http)
            .await
            .unwrap_or_else(|e| panic!("the oauth2 crate's refresh: {e:?}"));
        let new_refresh = next.refresh_token().expect("a rotated refresh token");
        assert_ne!(new_refresh.secret(), refresh.secret());
        assert_ne!(next.access_token().secret(), &access_before);
        if let Some(t) = next.extra_fields().id_token.as_deref() {
            let c = verify(t, next.access_token().secret());
            assert_eq!(c["sub"], person);
        }
        refresh = new_refresh.clone();
        access_before = next.access_token().secret().clone();
    }
    app.stop().await;
}

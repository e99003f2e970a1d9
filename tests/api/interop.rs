//! Interoperability with software we did not write: curl (the seeds' own commands), the
//! `oauth2` crate's client credentials flow, and `jsonwebtoken` verifying our JWTs
//! against `/oauth/jwks`. Also the `tessera` binary itself: bootstrap, serve, SIGTERM.

use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn curl(args: Vec<String>) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}"])
            .args(&args)
            .output()
            .expect("curl is needed for the interop tests: apt-get install curl");
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (
            code.parse().unwrap(),
            serde_json::from_str(body).unwrap_or(Value::String(body.into())),
        )
    })
    .await
    .unwrap()
}

async fn seed(app: &TestApp) -> (String, String) {
    app.scopes(&["admin:api"]).await;
    app.client(json!({"client_id": "my-app-id", "name": "seed", "scopes": ["admin:api"]}))
        .await
}

#[tokio::test]
async fn seed_curl_commands() {
    let app = spawn_app().await;
    let (id, secret) = seed(&app).await;
    let token = app.url("/oauth/token");
    // Seed 000's JSON command, pointed at the real token endpoint: works.
    let (s, b) = curl(vec![
        "-X".into(), "POST".into(), token.clone(),
        "-H".into(), "Content-Type: application/json".into(),
        "-d".into(), json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret, "scope": "admin:api"}).to_string(),
    ])
    .await;
    assert_eq!(s, 200, "{b}");
    // The same at the path the seed used: a 404 that names the real endpoint.
    let (s, b) = curl(vec![
        "-X".into(),
        "POST".into(),
        app.url("/api/v2/oauth/token"),
        "-H".into(),
        "Content-Type: application/json".into(),
        "-d".into(),
        "{}".into(),
    ])
    .await;
    assert_eq!(s, 404);
    assert_eq!(b["token_endpoint"], token);
    // The form-encoded answer from the thread.
    let (s, b) = curl(vec![
        "-X".into(),
        "POST".into(),
        token.clone(),
        "-H".into(),
        "Content-Type: application/x-www-form-urlencoded".into(),
        "-d".into(),
        format!(
            "grant_type=client_credentials&client_id={id}&client_secret={secret}&scope=admin:api"
        ),
    ])
    .await;
    assert_eq!(s, 200, "{b}");
    // Seed 003's Basic header built with base64, and with curl -u.
    let (s, b) = curl(vec![
        "-X".into(),
        "POST".into(),
        token.clone(),
        "-u".into(),
        format!("{id}:{secret}"),
        "-d".into(),
        "grant_type=client_credentials&scope=admin:api".into(),
    ])
    .await;
    assert_eq!(s, 200, "{b}");
    // Only the client id encoded: the cause is named.
    use base64::Engine;
    let (s, b) = curl(vec![
        "-X".into(),
        "POST".into(),
        token.clone(),
        "-H".into(),
        format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(&id)
        ),
        "-d".into(),
        "grant_type=client_credentials".into(),
    ])
    .await;
    assert_eq!(s, 401);
    assert_eq!(b["reason"], "basic_header_malformed");
    // A scope that was never granted.
    let (s, b) = curl(vec![
        token.clone(),
        "-u".into(),
        format!("{id}:{secret}"),
        "-d".into(),
        "grant_type=client_credentials&scope=urn:genesys:cloud:admin".into(),
    ])
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["reason"], "scope_unknown");
    app.stop().await;
}

#[tokio::test]
async fn oauth2_crate_client_credentials() {
    use oauth2::basic::BasicClient;
    use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
    let app = spawn_app().await;
    let (id, secret) = seed(&app).await;
    let http = reqwest::Client::new();
    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let client = BasicClient::new(ClientId::new(id.clone()))
            .set_client_secret(ClientSecret::new(secret.clone()))
            .set_auth_type(auth)
            .set_token_uri(TokenUrl::new(app.url("/oauth/token")).unwrap());
        let tok = client
            .exchange_client_credentials()
            .add_scope(Scope::new("admin:api".into()))
            .request_async(&http)
            .await
            .expect("oauth2 crate gets a token");
        assert_eq!(tok.scopes().unwrap()[0].as_str(), "admin:api");
        assert!(tok.expires_in().unwrap().as_secs() > 3500);
    }
    // A wrong secret surfaces as the RFC error the crate understands.
    let client = BasicClient::new(ClientId::new(id.clone()))
        .set_client_secret(ClientSecret::new("tsec_wrong".into()))
        .set_token_uri(TokenUrl::new(app.url("/oauth/token")).unwrap());
    let err = client
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .unwrap_err();
    match err {
        oauth2::RequestTokenError::ServerResponse(r) => {
            assert_eq!(r.error().as_ref(), "invalid_client");
            assert!(r.error_description().unwrap().contains("does not match"));
        }
        other => panic!("unexpected {other:?}"),
    }
    app.stop().await;
}

#[tokio::test]
async fn jwt_verifies_against_jwks_with_an_independent_library() {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let app = spawn_app().await;
    let (id, secret) = seed(&app).await;
    let r = app.token_post(&id, &secret, "").await;
    let token = r.body["access_token"].as_str().unwrap();
    let meta: Value = app
        .public_json(app.url("/.well-known/oauth-authorization-server"))
        .await;
    assert_eq!(meta["issuer"], app.base);
    assert_eq!(
        meta["grant_types_supported"],
        json!([
            "client_credentials",
            "password",
            "authorization_code",
            "refresh_token"
        ])
    );
    let jwks: JwkSet = app.public_json(meta["jwks_uri"].as_str().unwrap()).await;
    let header = decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published");
    let mut v = Validation::new(Algorithm::ES256);
    v.set_issuer(&[&app.base]);
    v.set_audience(&[&app.base]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v).expect("verifies");
    let c = data.claims;
    assert_eq!(c["client_id"], id);
    assert_eq!(
        c["sub"], id,
        "a client without service account is its own subject"
    );
    assert_eq!(c["org"], "default");
    assert_eq!(c["scope"], "admin:api");
    assert_eq!(c["jti"], r.headers["x-request-id"].to_str().unwrap());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );

    // Rotation: a new key signs, the old one stays published, old tokens still verify.
    let (s, rot) = app.post("/signing-keys/rotate", json!({})).await;
    assert_eq!(s, 200, "{rot}");
    let r2 = app.token_post(&id, &secret, "").await;
    let t2 = r2.body["access_token"].as_str().unwrap();
    let jwks: JwkSet = app.public_json(app.url("/oauth/jwks")).await;
    // Both access-token keys, and the ID tokens' RS256 key before and after.
    assert_eq!(jwks.keys.len(), 4);
    let kid2 = decode_header(t2).unwrap().kid.unwrap();
    assert_eq!(kid2, rot["kid"]);
    for t in [token, t2] {
        let kid = decode_header(t).unwrap().kid.unwrap();
        decode::<Value>(
            t,
            &DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap(),
            &v,
        )
        .unwrap();
    }
    app.stop().await;
}

#[tokio::test]
async fn every_signing_algorithm_verifies_with_an_independent_library() {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    // The first key follows `signing_alg`; a rotation may name another algorithm.
    let app = crate::helpers::spawn_app_with(|c| {
        c.signing_alg = tessera_core::jwt::Alg::EdDsa;
    })
    .await;
    let (id, secret) = seed(&app).await;
    let ed = app.token_post(&id, &secret, "").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, rot) = app
        .post("/signing-keys/rotate", json!({"alg": "RS256"}))
        .await;
    assert_eq!(s, 200, "{rot}");
    assert_eq!(rot["alg"], "RS256");
    let rs = app.token_post(&id, &secret, "").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, rot) = app
        .post("/signing-keys/rotate", json!({"alg": "ES256"}))
        .await;
    assert_eq!(s, 200, "{rot}");
    let es = app.token_post(&id, &secret, "").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let jwks: JwkSet = app.public_json(app.url("/oauth/jwks")).await;
    // Three access-token keys, and the ID tokens' RS256 key of the EdDSA and ES256
    // periods (while the access key was RS256 it signed the ID tokens itself).
    assert_eq!(jwks.keys.len(), 5);
    for (token, alg) in [
        (&ed, Algorithm::EdDSA),
        (&rs, Algorithm::RS256),
        (&es, Algorithm::ES256),
    ] {
        let header = decode_header(token).unwrap();
        assert_eq!(header.alg, alg);
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("kid published");
        let mut v = Validation::new(alg);
        v.set_issuer(&[&app.base]);
        v.set_audience(&[&app.base]);
        let c = decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
            .unwrap_or_else(|e| panic!("{alg:?}: {e}"))
            .claims;
        assert_eq!(c["client_id"], id);
    }
    // Discovery names the published algorithms, the current one first.
    let meta: Value = app
        .public_json(app.url("/.well-known/openid-configuration"))
        .await;
    assert_eq!(
        meta["access_token_signing_alg_values_supported"],
        json!(["ES256", "RS256", "EdDSA"])
    );
    // The admin API takes tokens of every published algorithm: this one is EdDSA.
    let res = app
        .http
        .get(app.url("/api/v2/oauth/clients"))
        .bearer_auth(&ed)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "a valid token without tessera:admin");
    // An algorithm Tessera does not sign with is a field error.
    let (s, body) = app
        .post("/signing-keys/rotate", json!({"alg": "HS256"}))
        .await;
    assert_eq!(s, 422, "{body}");
    assert_eq!(body["field"], "alg");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("ES256, RS256 or EdDSA"),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn health_ready_metrics() {
    let app = spawn_app().await;
    for p in ["/healthz", "/readyz", "/metrics"] {
        let res = app.http.get(app.url(p)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{p}");
    }
    let m = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("tessera_token_requests_total{outcome=\"granted\",reason=\"\"} 1"),
        "{m}"
    );
    // Every committed audit batch is in the commit-time histogram, whose buckets are
    // cumulative and end with +Inf = _count.
    let value = |line: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line} in {m}"))
    };
    let batches = value("tessera_audit_batches_total ");
    assert!(batches >= 1.0, "{m}");
    assert_eq!(value("tessera_audit_commit_seconds_count "), batches, "{m}");
    assert_eq!(
        value("tessera_audit_commit_seconds_bucket{le=\"+Inf\"} "),
        batches,
        "{m}"
    );
    assert!(
        m.contains("# TYPE tessera_audit_commit_seconds histogram"),
        "{m}"
    );
    app.stop().await;
}

#[test]
fn binary_bootstrap_serve_and_graceful_stop() {
    use std::io::{BufRead, BufReader};
    let exe = env!("CARGO_BIN_EXE_tessera");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let out = Command::new(exe)
        .args([
            "bootstrap",
            "--org",
            "acme",
            "--database",
            db.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let boot: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(boot["org"], "acme");
    assert_eq!(boot["client_id"], "acme-admin");
    let secret = boot["client_secret"].as_str().unwrap().to_string();
    // Same org again: refused, with the cause.
    let again = Command::new(exe)
        .args([
            "bootstrap",
            "--org",
            "acme",
            "--database",
            db.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let mut child = Command::new(exe)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            db.to_str().unwrap(),
        ])
        .env_remove("TESSERA_MASTER_KEY")
        .env("TESSERA_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server logs its address").unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    assert!(
        dir.path().join("tessera-master.key").exists(),
        "master key generated beside the database"
    );
    let (code, body) = tokio::runtime::Runtime::new().unwrap().block_on(curl(vec![
        "-u".into(),
        format!("acme-admin:{secret}"),
        "-d".into(),
        "grant_type=client_credentials".into(),
        format!("http://{addr}/oauth/token"),
    ]));
    assert_eq!(code, 200, "{body}");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("audit trail flushed")),
        "{rest:?}"
    );

    // A lost master key file is not silently replaced by a new key.
    std::fs::remove_file(dir.path().join("tessera-master.key")).unwrap();
    let out = Command::new(exe)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database",
            db.to_str().unwrap(),
        ])
        .env_remove("TESSERA_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("master key file") && err.contains("missing"),
        "{err}"
    );
    assert!(!dir.path().join("tessera-master.key").exists());

    // A start that fails (the port is taken) bootstraps nothing: the next start does.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fresh = dir.path().join("fresh.db");
    let out = Command::new(exe)
        .args([
            "serve",
            "--listen",
            &busy.local_addr().unwrap().to_string(),
            "--database",
            fresh.to_str().unwrap(),
        ])
        .env(
            "TESSERA_MASTER_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("client_secret"));
    let out = Command::new(exe)
        .args([
            "bootstrap",
            "--org",
            "default",
            "--database",
            fresh.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the failed start left the org free: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! The `tessera admin` and `tessera token` commands, run as the real binary against a
//! real server.

use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

pub(crate) struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

/// Runs the binary with `app`'s admin credentials and `cache` as its token cache.
pub(crate) async fn tessera(app: &TestApp, cache: &std::path::Path, args: &[&str]) -> Out {
    let exe = env!("CARGO_BIN_EXE_tessera");
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("TESSERA_URL", &app.base)
        .env("TESSERA_CLIENT_ID", &app.admin_id)
        .env("TESSERA_CLIENT_SECRET", &app.admin_secret)
        .env("XDG_CACHE_HOME", cache)
        .env_remove("TESSERA_MASTER_KEY");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn admin_commands_drive_the_api() {
    let app = spawn_app().await;
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();
    let t = |args: &'static [&'static str]| tessera(&app, c, args);

    let o = t(&[
        "admin",
        "scopes",
        "create",
        "admin:api",
        "--description",
        "API",
    ])
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = t(&["admin", "scopes", "list"]).await;
    assert!(
        o.stdout.contains("admin:api") && o.stdout.contains("NAME"),
        "{}",
        o.stdout
    );
    // The token is cached between invocations.
    assert_eq!(std::fs::read_dir(c.join("tessera")).unwrap().count(), 1);

    let o = t(&[
        "admin",
        "users",
        "create",
        "--type",
        "service",
        "--username",
        "svc-ci",
        "--json",
    ])
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let sa = o.json()["id"].as_str().unwrap().to_string();
    let args = [
        "admin",
        "clients",
        "create",
        "--client-id",
        "ci-terraform",
        "--name",
        "CI",
        "--scope",
        "admin:api",
        "--service-account",
        &sa,
        "--json",
    ];
    let o = tessera(&app, c, &args).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let secret = o.json()["client_secret"].as_str().unwrap().to_string();
    let o = t(&["admin", "clients", "list"]).await;
    assert!(
        o.stdout.contains("ci-terraform") && o.stdout.contains("client_credentials"),
        "{}",
        o.stdout
    );

    // Disable the service account, see the refusal, explain it.
    let o = tessera(&app, c, &["admin", "users", "disable", &sa]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let r = app.token_post("ci-terraform", &secret, "").await;
    let rid = r.body["request_id"].as_str().unwrap().to_string();
    let o = tessera(&app, c, &["admin", "audit", "explain", &rid]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("✗ FAIL  service_account"), "{}", o.stdout);
    assert!(
        o.stdout.contains("service_account_disabled"),
        "{}",
        o.stdout
    );
    let o = t(&[
        "admin",
        "audit",
        "tail",
        "--reason",
        "service_account_disabled",
    ])
    .await;
    assert!(o.stdout.contains(&rid), "{}", o.stdout);
    let o = tessera(&app, c, &["admin", "users", "enable", &sa]).await;
    assert_eq!(o.code, 0);

    // Dry run, without the secret.
    let o = t(&[
        "admin",
        "diagnose",
        "--client-id",
        "ci-terraform",
        "--scope",
        "admin:api",
        "--json",
    ])
    .await;
    assert_eq!(o.json()["outcome"], "granted", "{}", o.stdout);
    let o = t(&[
        "admin",
        "diagnose",
        "--client-id",
        "ci-terraform",
        "--source-ip",
        "10.9.9.9",
    ])
    .await;
    assert!(o.stdout.contains("dry run: granted"), "{}", o.stdout);

    // Secrets: rotate with grace, list with last use, revoke.
    let o = t(&[
        "admin",
        "secrets",
        "rotate",
        "ci-terraform",
        "--grace",
        "600",
        "--json",
    ])
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let old_id = o.json()["previous"][0]["id"].as_str().unwrap().to_string();
    let o = t(&["admin", "secrets", "list", "ci-terraform"]).await;
    assert!(
        o.stdout.contains(&old_id) && o.stdout.contains("LAST USED"),
        "{}",
        o.stdout
    );
    let o = tessera(
        &app,
        c,
        &["admin", "secrets", "revoke", "ci-terraform", &old_id],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);

    // Clients: update, disable; errors carry their cause and exit code.
    let o = t(&[
        "admin",
        "clients",
        "update",
        "ci-terraform",
        "--ip",
        "10.0.0.0/8",
        "--json",
    ])
    .await;
    assert_eq!(o.json()["ip_allowlist"], json!(["10.0.0.0/8"]));
    let o = t(&["admin", "clients", "update", "ci-terraform", "--ip", "nope"]).await;
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("field 'ip_allowlist'"), "{}", o.stderr);
    let o = t(&["admin", "clients", "show", "no-such-client"]).await;
    assert_eq!(o.code, 4, "{}", o.stderr);
    let o = t(&["admin", "clients", "delete", "ci-terraform"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = t(&["admin", "rotate-signing-key", "--alg", "eddsa"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.starts_with("new EdDSA signing key k_"),
        "{}",
        o.stdout
    );
    let o = t(&["admin", "rotate-signing-key", "--alg", "HS256"]).await;
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("field 'alg'"), "{}", o.stderr);

    // Wrong admin credentials: exit 3, with the reason.
    let exe = env!("CARGO_BIN_EXE_tessera");
    let mut cmd = Command::new(exe);
    let other_cache = tempfile::tempdir().unwrap();
    cmd.args(["admin", "users", "list"])
        .env("TESSERA_URL", &app.base)
        .env("TESSERA_CLIENT_ID", &app.admin_id)
        .env("TESSERA_CLIENT_SECRET", "tsec_wrong")
        .env("XDG_CACHE_HOME", other_cache.path());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("client_secret_mismatch"));
    app.stop().await;
}

#[tokio::test]
async fn token_command_succeeds_and_explains_failures() {
    let app = spawn_app().await;
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();
    app.scopes(&["admin:api", "reports:read"]).await;
    let sa = app.service_account("svc").await;
    let (id, secret) = app
        .client(json!({"client_id": "my-app-id", "name": "app", "scopes": ["admin:api"], "service_account_id": sa}))
        .await;
    let base = app.base.clone();
    let token_url = app.url("/oauth/token");

    // Success, by issuer (discovery) and by token endpoint, Basic and post.
    let o = tessera(
        &app,
        c,
        &[
            "token",
            "--url",
            &base,
            "--client-id",
            &id,
            "--client-secret",
            &secret,
            "--json",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let v = o.json();
    assert_eq!(v["claims"]["client_id"], id);
    assert_eq!(v["token_endpoint"], token_url);
    let o = tessera(
        &app,
        c,
        &[
            "token",
            "--url",
            &token_url,
            "--client-id",
            &id,
            "--client-secret",
            &secret,
            "--auth",
            "post",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(
        o.stdout.contains("scope:      admin:api") && o.stdout.contains(&sa),
        "{}",
        o.stdout
    );

    // Failures: each explanation names its cause; the secret is never printed.
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--client-secret".into(), "tsec_wrong_but_long".into()],
            "client_secret_mismatch",
        ),
        (
            vec!["--client-id".into(), "nobody".into()],
            "client_unknown",
        ),
        (
            vec!["--scope".into(), "reports:read".into()],
            "scope_not_allowed",
        ),
        (
            vec!["--scope".into(), "platform:oauth:write".into()],
            "scope_unknown",
        ),
    ];
    for (extra, cause) in cases {
        let mut args: Vec<String> = vec!["token".into(), "--url".into(), base.clone()];
        let has = |f: &str| extra.iter().any(|e| e == f);
        if !has("--client-id") {
            args.extend(["--client-id".into(), id.clone()]);
        }
        if !has("--client-secret") {
            args.extend(["--client-secret".into(), secret.clone()]);
        }
        args.extend(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = tessera(&app, c, &refs).await;
        assert_eq!(o.code, 1, "{cause}: {}", o.stdout);
        assert!(
            o.stdout.contains(&format!("Cause ({cause})")),
            "{cause}: {}",
            o.stdout
        );
        assert!(
            o.stdout.contains("tessera admin audit explain"),
            "{}",
            o.stdout
        );
        assert!(!o.stdout.contains(&secret), "the secret was printed");
        assert!(
            !o.stdout.contains("tsec_wrong_but_long"),
            "the secret was printed"
        );
    }
    // Grant type not enabled, service account disabled, IP allow-list: policy causes.
    let (s, _) = app
        .patch(
            "/oauth/clients/my-app-id",
            json!({"grant_types": ["authorization_code"], "redirect_uris": ["https://app.example/cb"]}),
        )
        .await;
    assert_eq!(s, 200);
    let o = tessera(
        &app,
        c,
        &[
            "token",
            "--url",
            &base,
            "--client-id",
            &id,
            "--client-secret",
            &secret,
        ],
    )
    .await;
    assert!(
        o.stdout.contains("Cause (grant_type_not_allowed)"),
        "{}",
        o.stdout
    );
    app.patch(
        "/oauth/clients/my-app-id",
        json!({"grant_types": ["client_credentials"], "ip_allowlist": ["10.0.0.0/8"]}),
    )
    .await;
    let o = tessera(
        &app,
        c,
        &[
            "token",
            "--url",
            &base,
            "--client-id",
            &id,
            "--client-secret",
            &secret,
        ],
    )
    .await;
    assert!(
        o.stdout.contains("Cause (client_ip_not_allowed)"),
        "{}",
        o.stdout
    );
    app.patch("/oauth/clients/my-app-id", json!({"ip_allowlist": []}))
        .await;
    app.patch(&format!("/users/{sa}"), json!({"enabled": false}))
        .await;
    let o = tessera(
        &app,
        c,
        &[
            "token",
            "--url",
            &base,
            "--client-id",
            &id,
            "--client-secret",
            &secret,
            "--json",
        ],
    )
    .await;
    assert_eq!(o.json()["reason"], "service_account_disabled");
    // The wrong path from the seeds: the checklist points at the token endpoint URL.
    let wrong = app.url("/api/v2/oauth/token");
    let o = tessera(
        &app,
        c,
        &[
            "token",
            "--url",
            &wrong,
            "--client-id",
            &id,
            "--client-secret",
            &secret,
        ],
    )
    .await;
    assert_eq!(o.code, 1);
    assert!(
        o.stdout.contains("HTTP 404") && o.stdout.contains("the token endpoint URL"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains("Basic base64('my-app-id:****"),
        "the request is shown, secret masked: {}",
        o.stdout
    );
    // Nothing listening: exit 6.
    let o = tessera(
        &app,
        c,
        &[
            "token",
            "--url",
            "http://127.0.0.1:9/oauth/token",
            "--client-id",
            "a",
            "--client-secret",
            "b",
        ],
    )
    .await;
    assert_eq!(o.code, 6, "{}{}", o.stdout, o.stderr);
    app.stop().await;
}

#[tokio::test]
async fn audit_tail_follow_prints_new_events() {
    let app = spawn_app().await;
    let cache = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["admin", "audit", "tail", "--follow", "--limit", "1"])
        .env("TESSERA_URL", &app.base)
        .env("TESSERA_CLIENT_ID", &app.admin_id)
        .env("TESSERA_CLIENT_SECRET", &app.admin_secret)
        .env("XDG_CACHE_HOME", cache.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // 250 refusals while it follows: more than one page of 200.
    let mut ids = vec![];
    for i in 0..250 {
        let r = app
            .token_post(&app.admin_id, &format!("tsec_wrong{i}"), "")
            .await;
        ids.push(r.body["request_id"].as_str().unwrap().to_string());
    }
    // Most were throttled; every one is an audit event of the admin client's org.
    assert_eq!(ids.len(), 250);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let pid = child.id().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let _ = Command::new("kill").arg(&pid).status();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for id in &ids {
        assert!(
            text.contains(id.as_str()),
            "event {id} not followed:\n{text}"
        );
    }
    app.stop().await;
}

#[test]
fn serve_refuses_an_unknown_signing_algorithm() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--listen", "127.0.0.1:0", "--signing-alg", "HS256"])
        .arg("--database")
        .arg(dir.path().join("t.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown signing algorithm 'HS256': use ES256, RS256 or EdDSA"),
        "{err}"
    );
}

#[test]
fn serve_refuses_a_trusted_proxy_that_is_not_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        "trusted_proxies = [\"10.0.0.0/8\", \"lb.internal\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config)
        .arg("--database")
        .arg(dir.path().join("t.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trusted_proxies: 'lb.internal' is neither a CIDR"),
        "{err}"
    );
}

/// `tessera admin sso`: the IdP from its metadata file, the impact preview, enforcement
/// switched on only with that preview's id, and off again.
#[tokio::test]
async fn sso_commands_configure_preview_and_enforce() {
    let app = spawn_app().await;
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();
    let bare: String = crate::helpers::IDP_CERT
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let metadata = c.join("idp-metadata.xml");
    std::fs::write(
        &metadata,
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.cli.example/metadata"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{bare}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.cli.example/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
        ),
    )
    .unwrap();
    let metadata = metadata.to_str().unwrap();

    let o = tessera(
        &app,
        c,
        &[
            "admin",
            "sso",
            "set",
            "--metadata",
            metadata,
            "--jit",
            "--group-role",
            "CN=Admins,OU=Groups=org-admin,developer",
            "--json",
        ],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let v = o.json();
    assert_eq!(
        v["idp_entity_id"], "https://idp.cli.example/metadata",
        "{v}"
    );
    assert_eq!(v["jit_provisioning"], true, "{v}");
    assert_eq!(
        v["group_roles"]["CN=Admins,OU=Groups"],
        json!(["org-admin", "developer"]),
        "{v}"
    );
    // For people: certificates by subject and validity, not as PEM.
    let o = tessera(&app, c, &["admin", "sso", "show"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("idp_certificate "), "{}", o.stdout);
    assert!(o.stdout.contains("sp_acs_url"), "{}", o.stdout);
    assert!(!o.stdout.contains("BEGIN CERTIFICATE"), "{}", o.stdout);

    // `set` replaces everything: forgetting a setting is refused, naming it.
    let o = tessera(&app, c, &["admin", "sso", "set", "--metadata", metadata]).await;
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("jit_provisioning") && o.stderr.contains("group_roles"),
        "{}",
        o.stderr
    );
    let o = tessera(&app, c, &["admin", "sso", "show", "--json"]).await;
    assert_eq!(o.json()["jit_provisioning"], true, "nothing was sent");

    // Bad input is named before anything is sent.
    let o = tessera(&app, c, &["admin", "sso", "set", "--group-role", "admins"]).await;
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("GROUP=ROLE"), "{}", o.stderr);
    for bad in [
        &["--group-role", "admins=a", "--group-role", "admins=b"][..],
        &["--group-role", "admins=a,"],
        &["--metadata", "-", "--idp-cert", "-"],
    ] {
        let mut args = vec!["admin", "sso", "set"];
        args.extend_from_slice(bad);
        let o = tessera(&app, c, &args).await;
        assert_eq!(o.code, 2, "{bad:?}: {}", o.stderr);
    }
    let o = tessera(
        &app,
        c,
        &["admin", "sso", "set", "--metadata", "/nonexistent.xml"],
    )
    .await;
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("cannot read the metadata file"),
        "{}",
        o.stderr
    );
    let o = tessera(&app, c, &["admin", "sso", "enforce"]).await;
    assert_eq!(
        o.code, 2,
        "clap requires --preview-id or --force: {}",
        o.stderr
    );

    // The preview names what changes and ends with the command that acknowledges it.
    let o = tessera(&app, c, &["admin", "sso", "impact"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("client_credentials clients"),
        "{}",
        o.stdout
    );
    let id = o
        .stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("To switch enforcement on: tessera admin sso enforce --preview-id ")
        })
        .unwrap_or_else(|| panic!("{}", o.stdout))
        .to_string();
    let o = tessera(
        &app,
        c,
        &["admin", "sso", "enforce", "--preview-id", "stale"],
    )
    .await;
    assert_eq!(o.code, 5, "{}", o.stderr);
    assert!(
        o.stderr.contains("tessera admin sso impact"),
        "{}",
        o.stderr
    );
    let o = tessera(
        &app,
        c,
        &["admin", "sso", "enforce", "--preview-id", &id, "--json"],
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.json()["enforced"], true);
    let o = tessera(&app, c, &["admin", "sso", "unenforce", "--json"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.json()["enforced"], false);
    app.stop().await;
}

#[tokio::test]
async fn scim_commands_set_provisioning_up_and_show_what_it_did() {
    let app = spawn_app().await;
    let cache = tempfile::tempdir().unwrap();
    let c = cache.path();
    let o = tessera(&app, c, &["admin", "scim", "activity"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("no provisioning yet"), "{}", o.stdout);

    let o = tessera(&app, c, &["admin", "scim", "setup", "--name", "Okta"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("svc-scim-okta"), "{}", o.stdout);
    assert!(
        o.stdout.contains(&app.url("/scim/v2/default")),
        "{}",
        o.stdout
    );
    assert!(o.stderr.contains("shown only this once"), "{}", o.stderr);
    let token = o
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("bearer token"))
        .map(|t| t.trim().to_string())
        .unwrap_or_else(|| panic!("no token in {}", o.stdout));
    assert!(token.starts_with("tscim_"), "{token}");

    // The IdP provisions someone with it; the activity shows it.
    let r = reqwest::Client::new()
        .post(app.url("/scim/v2/default/Users"))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .body(json!({"userName": "erin", "active": true}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let o = tessera(&app, c, &["admin", "scim", "activity"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("create_user"), "{}", o.stdout);
    assert!(o.stdout.contains("created 'erin'"), "{}", o.stdout);

    // Listed without the token; revoked by id.
    let o = tessera(&app, c, &["admin", "--json", "scim", "tokens"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(!o.stdout.contains(&token));
    let id = o.json()["items"][0]["id"].as_str().unwrap().to_string();
    let o = tessera(&app, c, &["admin", "scim", "tokens"]).await;
    assert!(
        o.stdout.contains(&id) && o.stdout.contains("active"),
        "{}",
        o.stdout
    );
    let o = tessera(&app, c, &["admin", "scim", "revoke", &id]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let r = reqwest::Client::new()
        .get(app.url("/scim/v2/default/Users"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let o = tessera(&app, c, &["admin", "scim", "tokens"]).await;
    assert!(o.stdout.contains("revoked"), "{}", o.stdout);
    app.stop().await;
}

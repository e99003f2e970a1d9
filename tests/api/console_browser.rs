//! The admin console in a real browser: Debian's Chromium, driven by playwright-core
//! (npm, tests/console-browser) as an org admin would use it. Needs `/usr/bin/chromium`
//! (Debian's `chromium` package) and `npm ci` in tests/console-browser (`.ci/run` does
//! both); without them the test says what is missing and skips, and
//! TESSERA_REQUIRE_ALL=1 (CI) makes that a failure. With TESSERA_SCREENSHOTS=1 it
//! writes the screenshots docs/console.md shows (docs/images/console-*.png).

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::spawn_app;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console-browser")
}

#[tokio::test]
async fn an_org_admin_uses_the_console_in_chromium() {
    let chromium = std::env::var("TESSERA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        return crate::helpers::missing_peer(&format!(
            "no Chromium at {chromium}: install Debian's chromium package (apt-get install chromium; .ci/run does it), or set TESSERA_CHROMIUM"
        ));
    }
    if !dir().join("node_modules/playwright-core").exists() {
        return crate::helpers::missing_peer(
            "playwright-core is not installed: run `npm ci` in tests/console-browser (.ci/run does it)",
        );
    }
    let app = spawn_app().await;
    let ada = app.human("ada", "correct horse battery").await;
    app.patch(&format!("/users/{ada}"), json!({"roles": ["org_admin"]}))
        .await;
    app.human("bob", "another long password").await;
    let sa = app.service_account("svc-dfo").await;
    let (s, _) = app
        .patch(&format!("/users/{sa}"), json!({"enabled": false}))
        .await;
    assert_eq!(s, 200);
    // An IdP, so the SSO page has an enforcement preview to show.
    app.configure_idp(&[]).await;
    // A refusal to look up: the service account's client asks for a token.
    let (client, secret) = app
        .client(json!({"name": "DFO channel", "grant_types": ["client_credentials"], "service_account_id": sa}))
        .await;
    let (s, refusal) = app
        .token_basic(&client, &secret, "grant_type=client_credentials")
        .await;
    assert_eq!(s, 400, "{refusal}");
    let request_id = refusal["request_id"].as_str().unwrap().to_string();

    let screenshots = (std::env::var("TESSERA_SCREENSHOTS").as_deref() == Ok("1"))
        .then(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/images"));
    if let Some(d) = &screenshots {
        std::fs::create_dir_all(d).unwrap();
    }
    let config = json!({
        "base": app.base,
        "org": "default",
        "admin": {"username": "ada", "password": "correct horse battery"},
        "other": {"username": "bob", "password": "another long password"},
        "service_account": {"id": sa, "username": "svc-dfo"},
        "request_id": request_id,
        "client": {"name": "DFO channel", "secret_hint": &secret[secret.len() - 4..]},
        "chromium": chromium,
        "screenshots": screenshots,
    });
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("console.mjs")
            .arg(config.to_string())
            .current_dir(dir())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().last().unwrap_or_default();
    let r: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{e}: no result from the browser:\n{stdout}\n{stderr}"));
    assert_eq!(r["ok"], true, "{r:#}\n{stderr}");
    let seen = &r["seen"];
    assert_eq!(seen["overview_lists_service_account"], 1, "{seen:#}");
    assert!(
        seen["time_title"]
            .as_str()
            .is_some_and(|t| t.ends_with(" UTC")),
        "{seen:#}"
    );
    assert_eq!(seen["notice"], "svc-dfo is active now.", "{seen:#}");
    assert_eq!(seen["post_without_csrf"], 403, "{seen:#}");
    assert!(
        seen["failing_step"]
            .as_str()
            .unwrap()
            .contains("fails here"),
        "{seen:#}"
    );
    assert_eq!(
        seen["reason_link"], "/docs/errors#service_account_disabled",
        "{seen:#}"
    );
    assert_eq!(seen["phone_overflow"], false, "{seen:#}");
    assert_eq!(seen["new_secret_prefix"], "tsec_", "{seen:#}");
    let untouched = seen["preview_untouched"].as_str().unwrap();
    assert!(
        untouched.contains("client_credentials") && untouched.contains("service account"),
        "{seen:#}"
    );
    assert_eq!(seen["switch_needs_confirmation"], true, "{seen:#}");
    assert_eq!(seen["old_secret_listed"], 1, "{seen:#}");
    assert_eq!(seen["secret_shown_again"], false, "{seen:#}");
    assert_eq!(
        seen["other_heading"], "Only org admins use the console",
        "{seen:#}"
    );
    assert!(
        seen["after_logout"]
            .as_str()
            .unwrap()
            .ends_with("/admin/login"),
        "{seen:#}"
    );
    assert_eq!(seen["csp_violations"], json!([]), "{seen:#}");
    assert_eq!(seen["console_errors"], json!([]), "{seen:#}");
    // What the browser did went through the server: the account is enabled, by ada.
    let (_, user) = app.get(&format!("/users/{sa}")).await;
    assert_eq!(user["state"], "active", "{user}");
    app.stop().await;
}

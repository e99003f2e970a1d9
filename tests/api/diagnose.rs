//! The dry run gives the token endpoint's decision and trace, issues nothing and never
//! touches throttling.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

/// The decision's steps: throttling (never applied in a dry run) and the checks of the
/// request's encoding (a dry run is given fields, not a body) left out.
fn steps(trace: &Value) -> Vec<(String, String, String)> {
    trace
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            !["throttle", "content_type", "body", "parameters"]
                .contains(&s["check"].as_str().unwrap())
        })
        .map(|s| {
            (
                s["check"].as_str().unwrap().to_string(),
                s["verdict"].as_str().unwrap().to_string(),
                s["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn dry_run_matches_the_token_endpoint() {
    let app = spawn_app().await;
    app.scopes(&["admin:api", "reports:read"]).await;
    let (id, secret) = app
        .client(json!({"name": "svc", "scopes": ["admin:api"], "ip_allowlist": ["127.0.0.0/8"]}))
        .await;
    // The real request, and the same as a dry run: same decision, same trace.
    let real = app.token_post(&id, &secret, "&scope=reports%3Aread").await;
    let real_event = app.audit(real.body["request_id"].as_str().unwrap()).await;
    let (s, dry) = app
        .post(
            "/oauth/diagnose",
            json!({"client_id": id, "client_secret": secret, "scope": "reports:read",
                   "source_ip": "127.0.0.1", "auth_method": "client_secret_post"}),
        )
        .await;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["outcome"], "denied");
    assert_eq!(dry["reason"], "scope_not_allowed");
    assert_eq!(dry["error_description"], real.body["error_description"]);
    assert_eq!(steps(&dry["trace"]), steps(&real_event["trace"]));
    // The dry run is audited as such.
    let e = app.audit(dry["request_id"].as_str().unwrap()).await;
    assert_eq!(e["kind"], "diagnose");
    assert_eq!(e["actor"], app.admin_id);

    // Without the secret: the secret check is skipped and says so.
    let (_, dry) = app
        .post(
            "/oauth/diagnose",
            json!({"client_id": id, "source_ip": "127.0.0.9"}),
        )
        .await;
    assert_eq!(dry["outcome"], "granted", "{dry}");
    assert_eq!(dry["scope"], "admin:api");
    let secret_step = dry["trace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["check"] == "client_secret")
        .unwrap()
        .clone();
    assert_eq!(secret_step["verdict"], "skip");
    // Another address outside the allow-list.
    let (_, dry) = app
        .post(
            "/oauth/diagnose",
            json!({"client_id": id, "source_ip": "10.1.2.3"}),
        )
        .await;
    assert_eq!(dry["reason"], "client_ip_not_allowed");

    // Dry runs with a wrong secret never throttle the real caller.
    for _ in 0..10 {
        let (_, dry) = app
            .post(
                "/oauth/diagnose",
                json!({"client_id": id, "client_secret": "tsec_wrong", "source_ip": "127.0.0.1"}),
            )
            .await;
        assert_eq!(dry["reason"], "client_secret_mismatch");
    }
    assert_eq!(app.token_post(&id, &secret, "").await.status, 200);

    // Bad input names the field; another org's client is no client at all.
    let (s, b) = app
        .post(
            "/oauth/diagnose",
            json!({"client_id": id, "source_ip": "nope"}),
        )
        .await;
    assert_eq!((s, b["field"].as_str()), (422, Some("source_ip")));
    let other = app.other_org_admin("acme").await;
    let res = app
        .http
        .post(app.url("/api/v2/oauth/diagnose"))
        .bearer_auth(other)
        .json(&json!({"client_id": id}))
        .send()
        .await
        .unwrap();
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["reason"], "client_unknown");
    app.stop().await;
}

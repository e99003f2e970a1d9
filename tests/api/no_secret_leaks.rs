//! No secret, in any refusal or grant, ever reaches a log line, an error body or the audit
//! trail.

use serde_json::json;

use crate::helpers::{basic, captured_logs, spawn_app};

#[tokio::test]
async fn secrets_never_leak() {
    let app = spawn_app().await;
    app.scopes(&["admin:api"]).await;
    let (id, secret) = app
        .client(json!({"name": "leaky", "scopes": ["admin:api"]}))
        .await;
    let wrong = "tsec_WRONGbutSECRETlooking0123456789abcdefXYZ";
    // A human password, used right and wrong through the password grant.
    let human_pw = "HumanPasswordSECRETlooking-42";
    app.human("dora", human_pw).await;
    let (pg, pg_secret) = app
        .client(json!({"name": "portal", "grant_types": ["password"]}))
        .await;
    let form = Some("application/x-www-form-urlencoded");
    let mut bodies = vec![];
    let attempts = [
        (
            form,
            format!("grant_type=client_credentials&client_id={id}&client_secret={secret}"),
            None,
        ),
        (
            form,
            format!("grant_type=client_credentials&client_id={id}&client_secret={wrong}"),
            None,
        ),
        (
            form,
            "grant_type=client_credentials".to_string(),
            Some(basic(&id, wrong)),
        ),
        (
            form,
            format!("grant_type=client_credentials&client_secret={wrong}"),
            Some(basic(&id, &secret)),
        ),
        (
            form,
            "grant_type=client_credentials".to_string(),
            Some(format!("{id}:{wrong}")),
        ),
        (
            form,
            "grant_type=client_credentials".to_string(),
            Some(wrong.to_string()),
        ),
        (
            Some("application/json"),
            json!({"grant_type": "client_credentials", "client_id": id, "client_secret": wrong})
                .to_string(),
            None,
        ),
        (
            Some("application/json"),
            json!({"grant_type": 7, "client_secret": wrong}).to_string(),
            None,
        ),
        (
            form,
            format!("grant_type=password&username=u&password={wrong}"),
            None,
        ),
        (
            form,
            format!(
                "grant_type=client_credentials&client_id={id}&client_secret={wrong}&scope=nope"
            ),
            None,
        ),
        (
            form,
            format!("grant_type=password&client_id={pg}&client_secret={pg_secret}&username=dora&password={wrong}"),
            None,
        ),
        (
            form,
            format!("grant_type=password&client_id={pg}&client_secret={pg_secret}&username=nobody&password={human_pw}"),
            None,
        ),
        (
            Some("application/json"),
            json!({"grant_type": "password", "client_id": pg, "client_secret": pg_secret, "username": "dora", "password": human_pw}).to_string(),
            None,
        ),
    ];
    for (ct, body, auth) in &attempts {
        let r = app.token_raw(*ct, body, auth.as_deref(), None).await;
        bodies.push(r.body.to_string());
        for (k, v) in r.headers.iter() {
            bodies.push(format!("{k}: {}", v.to_str().unwrap_or("")));
        }
    }
    // A rotation's answer shows the new secret once; it must not appear anywhere else.
    let (_, rot) = app
        .post(
            &format!("/oauth/clients/{id}/secrets"),
            json!({"grace_seconds": 60}),
        )
        .await;
    let rotated = rot["client_secret"].as_str().unwrap().to_string();
    let (_, events) = app.get("/audit/events?limit=1000").await;
    let (_, clients) = app.get("/oauth/clients").await;
    let (_, secrets) = app.get(&format!("/oauth/clients/{id}/secrets")).await;
    let mut trail = events.to_string();
    for e in events["events"].as_array().unwrap() {
        let (_, full) = app
            .get(&format!(
                "/audit/events/{}",
                e["request_id"].as_str().unwrap()
            ))
            .await;
        trail.push_str(&full.to_string());
    }
    app.stop().await;
    let logs = captured_logs();
    assert!(logs.contains("tessera"), "logs were captured");
    for s in [
        secret.as_str(),
        pg_secret.as_str(),
        human_pw,
        wrong,
        rotated.as_str(),
        app_secret_marker(),
    ] {
        for (what, text) in [
            ("error bodies", bodies.join("\n")),
            ("audit trail", trail.clone()),
            ("client listing", clients.to_string() + &secrets.to_string()),
            ("logs", logs.clone()),
        ] {
            assert!(!text.contains(s), "a secret appeared in the {what}");
        }
    }
    // Every refusal had a body naming its request (the test looked at something): all
    // attempts but the two granted (the first, and dora's right password).
    let refusals = bodies
        .iter()
        .filter(|b| b.contains("\"request_id\""))
        .count();
    assert_eq!(refusals, attempts.len() - 2);
}

fn app_secret_marker() -> &'static str {
    "WRONGbutSECRETlooking"
}

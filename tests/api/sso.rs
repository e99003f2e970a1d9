//! SSO enforcement over HTTP: the password grant for humans and service accounts, the
//! SAML configuration's validation, the enforcement-impact preview and its
//! acknowledgement, break-glass users, the lockout policy, and client_credentials
//! untouched throughout.

use serde_json::json;

use crate::helpers::{IDP_CERT, spawn_app};

const ALICE_PW: &str = "alice-Password-1234";
const BOB_PW: &str = "bob-Password-5678";

#[tokio::test]
async fn enforcement_refuses_human_passwords_and_never_machines() {
    let app = spawn_app().await;
    app.scopes(&["api:read"]).await;
    app.human("alice", ALICE_PW).await;
    let bob = app.human("bob", BOB_PW).await;
    let svc = app.service_account("svc-bot").await;
    let (legacy, legacy_secret) = app
        .client(json!({"name": "legacy portal", "grant_types": ["password", "client_credentials"], "scopes": ["api:read"]}))
        .await;
    let (bot, bot_secret) = app
        .client(json!({"name": "bot", "scopes": ["api:read"], "service_account_id": svc}))
        .await;

    // Before enforcement: a human's password grant works and names them as subject.
    let r = app
        .password_grant(&legacy, &legacy_secret, "alice", ALICE_PW)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["scope"], "api:read");

    // Seed 004: a service account's "password" is refused with its clients named.
    let r = app
        .password_grant(&legacy, &legacy_secret, "svc-bot", "secret")
        .await;
    let e = app
        .assert_refused(
            &r,
            400,
            "invalid_grant",
            "service_account_no_password",
            "resource_owner",
        )
        .await;
    let d = r.body["error_description"].as_str().unwrap();
    assert!(d.contains(&format!("'{bot}' (bot)")), "{d}");
    assert!(d.contains("grant_type=client_credentials"), "{d}");
    assert_eq!(e["subject"], svc.as_str());

    // The preview: alice used a password, legacy used the grant, machines unaffected.
    let (s, impact) = app.get("/sso/saml/enforcement-impact").await;
    assert_eq!(s, 200, "{impact}");
    let humans: Vec<&str> = impact["humans_affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["username"].as_str().unwrap())
        .collect();
    assert_eq!(humans, vec!["alice"], "{impact}");
    let clients = impact["password_grant_clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{impact}");
    assert_eq!(clients[0]["client_id"], legacy.as_str());
    assert!(clients[0]["last_password_grant_at"].is_string(), "{impact}");
    // The bootstrap admin, legacy and bot all use client_credentials.
    assert_eq!(
        impact["client_credentials_clients_unaffected"], 3,
        "{impact}"
    );
    assert!(
        impact["summary"]
            .as_str()
            .unwrap()
            .contains("3 client_credentials client(s)")
    );

    // Enforcement needs an IdP first, then an acknowledged preview.
    let (s, b) = app
        .patch("/sso/saml", json!({"enforced": true, "force": true}))
        .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["field"], "enforced", "{b}");
    let (s, b) = app
        .put(
            "/sso/saml",
            json!({
                "idp_entity_id": "https://idp.example/metadata",
                "idp_sso_url": "https://idp.example/sso",
                "idp_certificates": [IDP_CERT],
                "break_glass_user_ids": [bob],
            }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["configured"], true);
    assert!(
        b["sso_login_url"]
            .as_str()
            .unwrap()
            .ends_with("/saml/default/login")
    );
    let (_, impact) = app.get("/sso/saml/enforcement-impact").await;
    assert_eq!(
        impact["break_glass_users"][0]["username"], "bob",
        "{impact}"
    );
    let preview = impact["preview_id"].as_str().unwrap().to_string();
    let (s, b) = app.patch("/sso/saml", json!({"enforced": true})).await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains(&preview),
        "the refusal names the current preview: {b}"
    );
    let (s, b) = app
        .patch(
            "/sso/saml",
            json!({"enforced": true, "preview_id": "imp_stale"}),
        )
        .await;
    assert_eq!(s, 409, "{b}");
    let (s, b) = app
        .patch(
            "/sso/saml",
            json!({"enforced": true, "preview_id": preview}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["enforced"], true);

    // Alice: sso_required, pointing at the SSO login and at client_credentials.
    let r = app
        .password_grant(&legacy, &legacy_secret, "alice", ALICE_PW)
        .await;
    app.assert_refused(&r, 400, "unauthorized_client", "sso_required", "sso_policy")
        .await;
    let d = r.body["error_description"].as_str().unwrap();
    assert!(d.contains("/saml/default/login"), "{d}");
    assert!(d.contains("client_credentials"), "{d}");
    // Even a wrong password gets the policy's answer, not the password's.
    let r = app
        .password_grant(&legacy, &legacy_secret, "alice", "wrong")
        .await;
    assert_eq!(r.body["reason"], "sso_required", "{}", r.body);

    // Bob is break-glass: granted, and audited with a reason of its own.
    let r = app
        .password_grant(&legacy, &legacy_secret, "bob", BOB_PW)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rid = r.headers["x-request-id"].to_str().unwrap().to_string();
    let e = app.audit(&rid).await;
    assert_eq!(e["outcome"], "granted", "{e}");
    assert_eq!(e["reason"], "sso_break_glass", "{e}");
    assert_eq!(e["subject"], bob.as_str(), "{e}");

    // Machines: unchanged. The trace says enforcement does not apply to them.
    for (id, secret) in [(&bot, &bot_secret), (&legacy, &legacy_secret)] {
        let r = app.token_post(id, secret, "").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let rid = r.headers["x-request-id"].to_str().unwrap().to_string();
        let e = app.audit(&rid).await;
        let sso = e["trace"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["check"] == "sso_policy")
            .unwrap()
            .clone();
        assert_eq!(sso["verdict"], "pass", "{e}");
        assert!(
            sso["detail"]
                .as_str()
                .unwrap()
                .contains("never subject to SSO enforcement")
        );
    }

    // The switch is in the audit trail with what was acknowledged.
    let (_, events) = app.get("/audit/events?limit=100").await;
    let switch = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["description"] == "set_sso_enforced")
        .cloned()
        .expect("the switch is audited");
    let (_, full) = app
        .get(&format!(
            "/audit/events/{}",
            switch["request_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(full["change"]["preview_id"], preview.as_str(), "{full}");
    assert_eq!(full["change"]["forced"], false, "{full}");

    // Off again: alice may use her password.
    let (s, b) = app.patch("/sso/saml", json!({"enforced": false})).await;
    assert_eq!(s, 200, "{b}");
    let r = app
        .password_grant(&legacy, &legacy_secret, "alice", ALICE_PW)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.stop().await;
}

#[tokio::test]
async fn wrong_passwords_never_lock_the_account_and_an_admin_lock_is_explained() {
    let app = spawn_app().await;
    let carol = app.human("carol", "carol-Password-1").await;
    let (app_id, app_secret) = app
        .client(json!({"name": "portal", "grant_types": ["password"]}))
        .await;
    for attempt in 1..=6 {
        let r = app
            .password_grant(&app_id, &app_secret, "carol", "not-her-password")
            .await;
        app.assert_refused(
            &r,
            400,
            "invalid_grant",
            "user_credentials_invalid",
            "user_password",
        )
        .await;
        let d = r.body["error_description"].as_str().unwrap();
        assert_eq!(
            d, "the username or password is incorrect",
            "attempt {attempt}"
        );
    }
    // This address is now throttled, for the client and for carol's username alike...
    let r = app
        .password_grant(&app_id, &app_secret, "carol", "carol-Password-1")
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    // ...but nothing locked carol: the same client from another address gets her token.
    let (status, body) = app
        .password_grant_from(
            [127, 0, 0, 3],
            &app_id,
            &app_secret,
            "carol",
            "carol-Password-1",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, u) = app.get(&format!("/users/{carol}")).await;
    assert_eq!(u["state"], "active", "{u}");
    // An admin lock is what locks, and the authenticated client is told by whom.
    let (s, b) = app
        .patch(&format!("/users/{carol}"), json!({"state": "locked"}))
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, body) = app
        .password_grant_from(
            [127, 0, 0, 3],
            &app_id,
            &app_secret,
            "carol",
            "carol-Password-1",
        )
        .await;
    assert_eq!(body["reason"], "user_locked", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains(&app.admin_id),
        "{body}"
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_users_and_missing_fields_are_refused_precisely() {
    let app = spawn_app().await;
    let (id, secret) = app
        .client(json!({"name": "portal", "grant_types": ["password"]}))
        .await;
    let r = app.password_grant(&id, &secret, "nobody", "whatever").await;
    let e = app
        .assert_refused(
            &r,
            400,
            "invalid_grant",
            "user_credentials_invalid",
            "resource_owner",
        )
        .await;
    // The caller is not told whether the user exists; the admin's trace is.
    assert_eq!(
        r.body["error_description"],
        "the username or password is incorrect"
    );
    assert!(
        e["trace"]
            .to_string()
            .contains("no user has username 'nobody'")
    );

    let r = app
        .token_raw(
            Some("application/x-www-form-urlencoded"),
            &format!("grant_type=password&client_id={id}&client_secret={secret}&username=x"),
            None,
            None,
        )
        .await;
    app.assert_refused(
        &r,
        400,
        "invalid_request",
        "parameter_missing",
        "parameters",
    )
    .await;

    // A client without the password grant is told which grants it has.
    let (cc, cc_secret) = app.client(json!({"name": "cc only"})).await;
    let r = app.password_grant(&cc, &cc_secret, "nobody", "x").await;
    app.assert_refused(
        &r,
        400,
        "unauthorized_client",
        "grant_type_not_allowed",
        "grant_type_allowed",
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_configuration_that_could_never_validate_is_refused_by_field() {
    let app = spawn_app().await;
    let svc = app.service_account("svc").await;
    let idp = |extra: serde_json::Value| {
        let mut b = json!({
            "idp_entity_id": "https://idp.example/metadata",
            "idp_sso_url": "https://idp.example/sso",
            "idp_certificates": [IDP_CERT],
        });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (body, field) in [
        (idp(json!({"idp_certificates": []})), "idp_certificates"),
        (
            idp(
                json!({"idp_certificates": ["-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----"]}),
            ),
            "idp_certificates[0]",
        ),
        (
            idp(
                json!({"idp_certificates": ["-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"]}),
            ),
            "idp_certificates[0]",
        ),
        (
            json!({"idp_sso_url": "https://idp.example/sso", "idp_certificates": [IDP_CERT]}),
            "idp_entity_id",
        ),
        (
            idp(json!({"idp_sso_url": "http://idp.example/sso"})),
            "idp_sso_url",
        ),
        (
            idp(json!({"clock_skew_seconds": 3600})),
            "clock_skew_seconds",
        ),
        (
            idp(json!({"break_glass_user_ids": ["usr_nope"]})),
            "break_glass_user_ids[0]",
        ),
        (
            idp(json!({"break_glass_user_ids": [svc]})),
            "break_glass_user_ids[0]",
        ),
    ] {
        let (s, b) = app.put("/sso/saml", body.clone()).await;
        assert_eq!(s, 422, "{body} -> {b}");
        assert_eq!(b["field"], field, "{body} -> {b}");
    }
    // A bare base64 certificate (as in IdP metadata) is accepted and stored as PEM.
    let bare: String = IDP_CERT
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let (s, b) = app
        .put("/sso/saml", idp(json!({"idp_certificates": [bare]})))
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(
        b["idp_certificates"][0]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----\n")
    );
    let (s, got) = app.get("/sso/saml").await;
    assert_eq!(s, 200);
    assert_eq!(got, b);
    assert_eq!(got["idp_certificate_details"][0]["key"], "EC", "{got}");
    assert!(
        got["idp_certificate_details"][0]["subject"]
            .as_str()
            .unwrap()
            .contains("tessera-test-idp")
    );

    // A 1024-bit RSA key is refused by field, naming the legacy switch; with the switch
    // set it is taken, and shown as what it is.
    let weak = include_str!("../fixtures/weak-rsa1024-cert.pem");
    let (s, b) = app
        .put(
            "/sso/saml",
            idp(json!({"idp_certificates": [IDP_CERT, weak]})),
        )
        .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["field"], "idp_certificates[1]", "{b}");
    let message = b["message"].as_str().unwrap();
    assert!(message.contains("1024 bits"), "{b}");
    assert!(message.contains("allow_rsa_1024"), "{b}");
    let (s, b) = app
        .put(
            "/sso/saml",
            idp(json!({"idp_certificates": [IDP_CERT, weak], "allow_rsa_1024": true})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["allow_rsa_1024"], true, "{b}");
    assert_eq!(b["idp_certificate_details"][1]["key"], "RSA 1024", "{b}");

    // IdP metadata import fills the IdP fields.
    let metadata = format!(
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.imported.example/metadata"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{bare}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.imported.example/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
    );
    let (s, b) = app
        .put("/sso/saml", json!({"idp_metadata_xml": metadata}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["idp_entity_id"], "https://idp.imported.example/metadata");
    assert_eq!(b["idp_sso_url"], "https://idp.imported.example/sso");
    assert_eq!(
        b["name_id_format"],
        "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    );
    assert_eq!(b["configured"], true);
    // Metadata without a signing certificate, or that is not metadata: refused by field.
    let unsigned = metadata.replace(&bare, "").replace(
        r#"<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate></ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
        "",
    );
    for bad in [
        unsigned.as_str(),
        "<html>not metadata</html>",
        "<!DOCTYPE x><x/>",
    ] {
        let (s, b) = app.put("/sso/saml", json!({"idp_metadata_xml": bad})).await;
        assert_eq!(s, 422, "{bad}: {b}");
        assert_eq!(b["field"], "idp_metadata_xml", "{b}");
    }
    app.stop().await;
}

/// An IdP certificate that is not strict DER where it does not matter (its own signature
/// algorithm is the invalid OID 0.0, as old OneLogin certificates have) is accepted, and
/// the view says what was read leniently.
#[tokio::test]
async fn a_certificate_not_strict_der_is_accepted_and_noted() {
    let app = spawn_app().await;
    let cert = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/tessera-saml/tests/data/saml-vectors/python3-saml/tests/certs/certificate1"
    ))
    .unwrap();
    let (s, v) = app
        .put(
            "/sso/saml",
            json!({
                "idp_entity_id": "https://app.onelogin.com/saml/metadata/1",
                "idp_sso_url": "https://app.onelogin.com/trust/saml2/http-redirect/sso/1",
                "idp_certificates": [cert],
                "allow_rsa_1024": true,
            }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let details = &v["idp_certificate_details"][0];
    assert!(
        details["note"].as_str().unwrap().contains("not strict DER"),
        "{details}"
    );
    assert_eq!(details["expired"], true, "{details}");
    app.stop().await;
}

/// A group mapping the console's form could not show back is refused by the API too:
/// an empty role list, a role with a space, a group name with spaces at either end.
#[tokio::test]
async fn group_mappings_are_refused_where_they_could_not_round_trip() {
    let app = spawn_app().await;
    for (mapping, field) in [
        (json!({"Engineering": []}), "group_roles[Engineering]"),
        (
            json!({"Engineering": ["dev ops"]}),
            "group_roles[Engineering][0]",
        ),
        (
            json!({" Engineering": ["dev"]}),
            "group_roles[ Engineering]",
        ),
        (json!({"": ["dev"]}), "group_roles[]"),
    ] {
        let (s, b) = app.put("/sso/saml", json!({"group_roles": mapping})).await;
        assert_eq!(
            (s, b["field"].as_str()),
            (422, Some(field)),
            "{mapping}: {b}"
        );
    }
    let (s, b) = app
        .put(
            "/sso/saml",
            json!({"group_roles": {"CN=Admins,OU=Groups": ["org_admin", "dev"]}}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    app.stop().await;
}

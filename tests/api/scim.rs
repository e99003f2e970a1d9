//! SCIM 2.0 provisioning over HTTP: the sequences Okta and Entra ID send, and the rule
//! that makes the seeds' failure impossible: service accounts are out of SCIM's reach.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// A provisioning client of the org (a service account, `tessera:scim`) and its token.
async fn provisioning_token(app: &TestApp) -> (String, String) {
    let sa = app.service_account("svc-okta-scim").await;
    let (id, secret) = app
        .client(json!({
            "name": "Okta provisioning",
            "grant_types": ["client_credentials"],
            "scopes": ["tessera:scim"],
            "service_account_id": sa,
        }))
        .await;
    let (s, body) = app
        .token_basic(
            &id,
            &secret,
            "grant_type=client_credentials&scope=tessera:scim",
        )
        .await;
    assert_eq!(s, 200, "{body}");
    (id, body["access_token"].as_str().unwrap().to_string())
}

struct Scim<'a> {
    app: &'a TestApp,
    token: String,
    http: reqwest::Client,
}

impl Scim<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.app.url(&format!("/scim/v2/default{path}")))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        if status != 204 {
            assert_eq!(
                r.headers()["content-type"],
                "application/scim+json",
                "{path}"
            );
        }
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, b: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(b)).await
    }
    async fn put(&self, path: &str, b: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(b)).await
    }
    async fn patch(&self, path: &str, b: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(b)).await
    }
    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

fn patch_op(op: &str, path: Option<&str>, value: Value) -> Value {
    let mut o = json!({"op": op, "value": value});
    if let Some(p) = path {
        o["path"] = json!(p);
    }
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [o]})
}

#[tokio::test]
async fn okta_provisions_a_person_from_lookup_to_delete() {
    let app = spawn_app().await;
    let (client_id, token) = provisioning_token(&app).await;
    let scim = Scim {
        app: &app,
        token,
        http: reqwest::Client::new(),
    };
    let (s, cfg) = scim.get("/ServiceProviderConfig").await;
    assert_eq!(s, 200, "{cfg}");
    assert_eq!(cfg["patch"]["supported"], true);

    // Okta looks the person up, then creates them.
    let (s, found) = scim
        .get("/Users?filter=userName%20eq%20%22alice%40example.com%22&startIndex=1&count=100")
        .await;
    assert_eq!(s, 200, "{found}");
    assert_eq!(found["totalResults"], 0);
    let okta_user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "alice@example.com",
        "externalId": "00u1abcd",
        "name": {"givenName": "Alice", "familyName": "Example"},
        "emails": [{"primary": true, "value": "alice@example.com", "type": "work"}],
        "active": true,
        "groups": [],
    });
    let (s, alice) = scim.post("/Users", okta_user.clone()).await;
    assert_eq!(s, 201, "{alice}");
    let id = alice["id"].as_str().unwrap().to_string();
    assert_eq!(alice["userName"], "alice@example.com");
    assert_eq!(alice["externalId"], "00u1abcd");
    assert_eq!(alice["displayName"], "Alice Example");
    assert_eq!(alice["active"], true);
    let (s, got) = scim.get(&format!("/Users/{id}")).await;
    assert_eq!((s, &got["id"]), (200, &json!(id)));
    // The admin API lists her as provisioned, by whom.
    let (_, provisioned) = app.get("/users?source=scim").await;
    let items = provisioned["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{provisioned}");
    assert_eq!(items[0]["source"], "scim");
    assert_eq!(items[0]["provisioning"]["client_id"], client_id.as_str());
    assert_eq!(items[0]["provisioning"]["external_id"], "00u1abcd");
    let (_, local) = app.get("/users?source=local").await;
    assert!(!local.to_string().contains(&id), "{local}");
    let (s, _) = app.get("/users?source=ldap").await;
    assert_eq!(s, 422);
    let (_, by_ext) = scim
        .get("/Users?filter=externalId%20eq%20%2200u1abcd%22")
        .await;
    assert_eq!(by_ext["totalResults"], 1, "{by_ext}");
    // The same person again: a conflict, not a second account.
    let (s, dup) = scim.post("/Users", okta_user).await;
    assert_eq!(s, 409, "{dup}");
    assert_eq!(dup["scimType"], "uniqueness");

    // Okta updates the profile, then deactivates.
    let (s, _) = scim
        .put(
            &format!("/Users/{id}"),
            json!({"userName": "alice@example.com", "displayName": "Alice E.", "emails": [{"value": "alice@corp.example", "primary": true}], "active": true}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, off) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op("replace", None, json!({"active": false})),
        )
        .await;
    assert_eq!(s, 200, "{off}");
    assert_eq!(off["active"], false);
    // The admin API names the provisioning client as who disabled her.
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["state"], "disabled", "{user}");
    assert_eq!(user["disabled_by"]["kind"], "provisioning", "{user}");
    assert!(
        user["disabled_by"]["description"]
            .as_str()
            .unwrap()
            .contains(&client_id),
        "{user}"
    );
    assert_eq!(user["email"], "alice@corp.example");
    assert_eq!(user["display_name"], "Alice E.");
    // A password grant for her is refused, naming the provisioning client.
    let (portal, portal_secret) = app
        .client(json!({"name": "legacy portal", "grant_types": ["password"]}))
        .await;
    let (s, refused) = app
        .token_basic(
            &portal,
            &portal_secret,
            "grant_type=password&username=alice%40example.com&password=whatever-it-is",
        )
        .await;
    assert_eq!(s, 400, "{refused}");
    assert_eq!(refused["reason"], "user_disabled", "{refused}");
    let said = refused["error_description"].as_str().unwrap();
    assert!(
        said.contains("provisioning") && said.contains(&client_id),
        "{said}"
    );
    // Reactivated by provisioning: restored.
    let (s, on) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op("replace", Some("active"), json!(true)),
        )
        .await;
    assert_eq!((s, &on["active"]), (200, &json!(true)), "{on}");

    // Deleted: disabled, and SCIM sees her no more.
    let (s, _) = scim.delete(&format!("/Users/{id}")).await;
    assert_eq!(s, 204);
    let (s, gone) = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(s, 404, "{gone}");
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["state"], "disabled", "{user}");

    // Every change is in the audit trail, kind scim, by the provisioning client.
    let (_, events) = app.get("/audit/events?kind=scim").await;
    let ops: Vec<String> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["actor"], client_id.as_str(), "{e}");
            e["description"].as_str().unwrap_or_default().to_string()
        })
        .collect();
    for op in ["create_user", "replace_user", "patch_user", "delete_user"] {
        assert!(ops.iter().any(|o| o == op), "{op}: {ops:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn entra_ids_quirks_are_understood() {
    let app = spawn_app().await;
    let (_, token) = provisioning_token(&app).await;
    let scim = Scim {
        app: &app,
        token,
        http: reqwest::Client::new(),
    };
    // Entra ID looks up by externalId first, then creates.
    let (_, found) = scim.get("/Users?filter=externalId+eq+%22e2c4a0b6%22").await;
    assert_eq!(found["totalResults"], 0);
    let (s, bob) = scim
        .post(
            "/Users",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "externalId": "e2c4a0b6",
                "userName": "bob@contoso.example",
                "active": true,
                "displayName": "Bob",
                "emails": [{"primary": true, "type": "work", "value": "bob@contoso.example"}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"},
            }),
        )
        .await;
    assert_eq!(s, 201, "{bob}");
    let id = bob["id"].as_str().unwrap();
    // Capitalised op names, "False" as a string, and a path-less value object.
    let (s, off) = scim
        .patch(
            &format!("/Users/{id}"),
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "robert@contoso.example"},
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{off}");
    assert_eq!(off["active"], false);
    assert_eq!(off["emails"][0]["value"], "robert@contoso.example");
    let (s, on) = scim
        .patch(
            &format!("/Users/{id}"),
            json!({"Operations": [{"op": "Replace", "value": {"active": "True", "displayName": "Robert"}}]}),
        )
        .await;
    assert_eq!(s, 200, "{on}");
    assert_eq!(
        (&on["active"], &on["displayName"]),
        (&json!(true), &json!("Robert"))
    );
    // A filter it cannot read: invalidFilter, with the reason in the trail.
    let (s, bad) = scim.get("/Users?filter=userName+zz+%22x%22").await;
    assert_eq!(
        (s, &bad["scimType"]),
        (400, &json!("invalidFilter")),
        "{bad}"
    );
    app.stop().await;
}

#[tokio::test]
async fn service_accounts_are_out_of_scims_reach() {
    let app = spawn_app().await;
    let (_, token) = provisioning_token(&app).await;
    let scim = Scim {
        app: &app,
        token,
        http: reqwest::Client::new(),
    };
    let sa = app.service_account("svc-dfo").await;
    let (_, before) = app.get(&format!("/users/{sa}")).await;
    // Not listed, not found by any filter, 404 by id for every operation.
    let (_, all) = scim.get("/Users").await;
    assert!(!all.to_string().contains("svc-"), "{all}");
    let (_, by_name) = scim.get("/Users?filter=userName+eq+%22svc-dfo%22").await;
    assert_eq!(by_name["totalResults"], 0);
    let (_, any) = scim.get("/Users?filter=userName+sw+%22svc%22").await;
    assert_eq!(any["totalResults"], 0);
    assert_eq!(scim.get(&format!("/Users/{sa}")).await.0, 404);
    assert_eq!(
        scim.patch(
            &format!("/Users/{sa}"),
            patch_op("replace", Some("active"), json!(false))
        )
        .await
        .0,
        404
    );
    assert_eq!(
        scim.put(
            &format!("/Users/{sa}"),
            json!({"userName": "svc-dfo", "active": false})
        )
        .await
        .0,
        404
    );
    assert_eq!(scim.delete(&format!("/Users/{sa}")).await.0, 404);
    // Creating a person with its username neither links nor touches it.
    let (s, clash) = scim
        .post("/Users", json!({"userName": "svc-dfo", "active": false}))
        .await;
    assert_eq!(
        (s, &clash["scimType"]),
        (409, &json!("uniqueness")),
        "{clash}"
    );
    let (_, after) = app.get(&format!("/users/{sa}")).await;
    assert_eq!(before, after, "the service account is exactly as it was");
    app.stop().await;
}

#[tokio::test]
async fn only_a_provisioning_token_of_the_org_gets_in() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let url = app.url("/scim/v2/default/Users");
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The admin token alone is not a SCIM token.
    let r = http
        .get(&url)
        .bearer_auth(app.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Another org's provisioning token, at this org: refused.
    let (_, token) = provisioning_token(&app).await;
    let r = http
        .get(app.url("/scim/v2/beta/Users"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    app.stop().await;
}

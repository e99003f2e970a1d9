//! SCIM 2.0 provisioning over HTTP: the sequences Okta and Entra ID send, and the rule
//! that makes the seeds' failure impossible: service accounts are out of SCIM's reach.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// A provisioning client of the org (a service account, `tessera:scim`) and its token.
pub(crate) async fn provisioning_token(app: &TestApp) -> (String, String) {
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

impl<'a> Scim<'a> {
    fn new(app: &'a TestApp, token: String) -> Self {
        Scim {
            app,
            token,
            http: reqwest::Client::new(),
        }
    }

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
    let scim = Scim::new(&app, token);
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
    // Her login changes at the IdP: Okta renames her. Onto a name taken by a service
    // account, it is a conflict that changes nothing.
    let (s, renamed) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op("replace", Some("userName"), json!("alice@corp.example")),
        )
        .await;
    assert_eq!(
        (s, &renamed["userName"]),
        (200, &json!("alice@corp.example")),
        "{renamed}"
    );
    app.service_account("svc-taken").await;
    let (s, clash) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op("replace", Some("userName"), json!("svc-taken")),
        )
        .await;
    assert_eq!(
        (s, &clash["scimType"]),
        (409, &json!("uniqueness")),
        "{clash}"
    );
    let (_, got) = scim.get(&format!("/Users/{id}")).await;
    assert_eq!(got["userName"], "alice@corp.example");
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
            "grant_type=password&username=alice%40corp.example&password=whatever-it-is",
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
            assert_eq!(e["source_ip"], "127.0.0.1", "{e}");
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
    let scim = Scim::new(&app, provisioning_token(&app).await.1);
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
    let scim = Scim::new(&app, provisioning_token(&app).await.1);
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

/// The roles the admin API shows for a user.
async fn roles(app: &TestApp, id: &str) -> Value {
    let (s, u) = app.get(&format!("/users/{id}")).await;
    assert_eq!(s, 200, "{u}");
    u["roles"].clone()
}

#[tokio::test]
async fn pushed_groups_become_roles_through_the_orgs_mapping() {
    let app = spawn_app().await;
    let scim = Scim::new(&app, provisioning_token(&app).await.1);
    // The org maps groups to roles; its assertions carry no groups (they come by SCIM).
    let (s, b) = app
        .put(
            "/sso/saml",
            json!({
                "idp_entity_id": "https://idp.example/metadata",
                "idp_sso_url": "https://idp.example/sso",
                "idp_certificates": [crate::helpers::IDP_CERT],
                "group_roles": {"Engineering": ["developer"], "00gAdmins": ["auditor"]},
            }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let mut ids = vec![];
    for name in ["alice", "bob"] {
        let (s, u) = scim
            .post("/Users", json!({"userName": name, "active": true}))
            .await;
        assert_eq!(s, 201, "{u}");
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    let (alice, bob) = (ids[0].as_str(), ids[1].as_str());

    // Okta looks the group up by name, then pushes it with its members.
    let (_, none) = scim
        .get("/Groups?filter=displayName+eq+%22Engineering%22")
        .await;
    assert_eq!(none["totalResults"], 0, "{none}");
    let (s, g) = scim
        .post(
            "/Groups",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "Engineering",
                "members": [{"value": alice, "display": "alice"}],
            }),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_string();
    assert_eq!(g["members"][0]["value"], alice);
    assert_eq!(g["members"][0]["type"], "User");
    assert_eq!(roles(&app, alice).await, json!(["developer"]));
    assert_eq!(roles(&app, bob).await, json!([]));
    let (s, dup) = scim
        .post("/Groups", json!({"displayName": "Engineering"}))
        .await;
    assert_eq!((s, &dup["scimType"]), (409, &json!("uniqueness")));

    // Okta adds a member, then removes one by a filtered path.
    let (s, b) = scim
        .patch(
            &format!("/Groups/{gid}"),
            patch_op("add", Some("members"), json!([{"value": bob}])),
        )
        .await;
    assert_eq!(s, 204, "{b}");
    assert_eq!(roles(&app, bob).await, json!(["developer"]));
    let (s, _) = scim
        .call(
            reqwest::Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}],
            })),
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(roles(&app, alice).await, json!([]));

    // Entra ID: capitalised ops, members to remove as the value, a path-less rename,
    // and an externalId that the mapping knows.
    let (s, _) = scim
        .patch(
            &format!("/Groups/{gid}"),
            json!({"Operations": [
                {"op": "Add", "path": "members", "value": [{"value": alice}]},
                {"op": "Remove", "path": "members", "value": [{"value": bob}]},
                {"op": "Replace", "value": {"displayName": "Platform", "externalId": "00gAdmins"}},
            ]}),
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(roles(&app, alice).await, json!(["auditor"]));
    assert_eq!(roles(&app, bob).await, json!([]));
    let (_, g) = scim
        .get(&format!("/Groups/{gid}?excludedAttributes=members"))
        .await;
    assert_eq!(g["displayName"], "Platform");
    assert!(g.get("members").is_none(), "{g}");
    assert_eq!(g["id"], gid.as_str());

    // A service account is never a member: 404, and nothing changes.
    let sa = app.service_account("svc-dfo").await;
    let (_, sa_before) = app.get(&format!("/users/{sa}")).await;
    let (s, e) = scim
        .patch(
            &format!("/Groups/{gid}"),
            patch_op("add", Some("members"), json!([{"value": sa}])),
        )
        .await;
    assert_eq!(s, 404, "{e}");
    let (s, _) = scim
        .post(
            "/Groups",
            json!({"displayName": "Backends", "members": [{"value": sa}]}),
        )
        .await;
    assert_eq!(s, 404);
    let (_, listed) = scim.get("/Groups").await;
    assert_eq!(listed["totalResults"], 1, "{listed}");
    assert_eq!(
        listed["Resources"][0]["members"].as_array().unwrap().len(),
        1
    );
    let (_, sa_after) = app.get(&format!("/users/{sa}")).await;
    assert_eq!(sa_before, sa_after);

    // PUT replaces members; DELETE takes the group and its roles away.
    let (s, g) = scim
        .put(
            &format!("/Groups/{gid}"),
            json!({"displayName": "Engineering", "members": [{"value": bob}]}),
        )
        .await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(roles(&app, alice).await, json!([]));
    assert_eq!(roles(&app, bob).await, json!(["developer"]));
    assert_eq!(scim.delete(&format!("/Groups/{gid}")).await.0, 204);
    assert_eq!(roles(&app, bob).await, json!([]));
    assert_eq!(scim.get(&format!("/Groups/{gid}")).await.0, 404);

    // Each change is audited with what it did to whom.
    let (_, events) = app.get("/audit/events?kind=scim").await;
    let text = events.to_string();
    for op in [
        "create_group",
        "patch_group",
        "replace_group",
        "delete_group",
    ] {
        assert!(text.contains(op), "{op} not audited: {text}");
    }
    assert!(text.contains("roles of 'bob' now [developer]"), "{text}");
    app.stop().await;
}

#[tokio::test]
async fn a_long_lived_scim_token_works_while_its_client_is_entitled() {
    let app = spawn_app().await;
    let (client_id, _) = provisioning_token(&app).await;
    let (s, made) = app
        .post(
            "/scim/tokens",
            json!({"client_id": client_id, "description": "Entra ID", "expires_in_days": 30}),
        )
        .await;
    assert_eq!(s, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("tscim_"), "{made}");
    assert_eq!(made["scim_base_url"], app.url("/scim/v2/default"));
    assert_eq!(made["active"], true);
    let scim = Scim::new(&app, token.clone());
    let (s, b) = scim.post("/Users", json!({"userName": "dana"})).await;
    assert_eq!(s, 201, "{b}");
    // Listed without the token, with its last use; provisioning names the client.
    let (_, listed) = app.get("/scim/tokens").await;
    assert!(!listed.to_string().contains(&token), "{listed}");
    assert_eq!(listed["items"][0]["hint"], &token[token.len() - 4..]);
    assert!(listed["items"][0]["last_used_at"].is_string(), "{listed}");
    let (_, events) = app.get("/audit/events?kind=scim").await;
    assert_eq!(events["events"][0]["actor"], client_id.as_str(), "{events}");

    // Only for a client holding tessera:scim, for a sane lifetime.
    let (plain, _) = app
        .client(json!({"name": "plain", "grant_types": ["client_credentials"], "scopes": []}))
        .await;
    let (s, e) = app.post("/scim/tokens", json!({"client_id": plain})).await;
    assert_eq!((s, &e["field"]), (422, &json!("client_id")), "{e}");
    let (s, e) = app
        .post(
            "/scim/tokens",
            json!({"client_id": client_id, "expires_in_days": 9999}),
        )
        .await;
    assert_eq!((s, &e["field"]), (422, &json!("expires_in_days")), "{e}");

    // The client loses the scope: the token stops at once; gets it back: works again.
    let (s, b) = app
        .patch(
            &format!("/oauth/clients/{client_id}"),
            json!({"scopes": []}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, e) = scim.get("/Users").await;
    assert_eq!(s, 403, "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("tessera:scim"),
        "{e}"
    );
    app.patch(
        &format!("/oauth/clients/{client_id}"),
        json!({"scopes": ["tessera:scim"]}),
    )
    .await;
    assert_eq!(scim.get("/Users").await.0, 200);

    // Revoked: refused, saying so; another org's path: refused.
    assert_eq!(scim.call(reqwest::Method::GET, "/Users", None).await.0, 200);
    let id = made["id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/scim/tokens/{id}")).await.0, 204);
    let (s, e) = scim.get("/Users").await;
    assert_eq!(s, 401, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("revoked"), "{e}");
    let (s, _) = app.delete("/scim/tokens/sct_nope").await;
    assert_eq!(s, 404);
    // A token made up in the right shape is unknown.
    let forged = Scim::new(&app, format!("tscim_{}", "A".repeat(43)));
    assert_eq!(forged.get("/Users").await.0, 401);

    // Gone with its client.
    let (_, again) = app
        .post("/scim/tokens", json!({"client_id": client_id}))
        .await;
    let again = Scim::new(&app, again["token"].as_str().unwrap().to_string());
    assert_eq!(again.get("/Users").await.0, 200);
    let r = again
        .http
        .get(app.url("/scim/v2/beta/Users"))
        .bearer_auth(&again.token)
        .send()
        .await
        .unwrap();
    // An org that does not exist answers as one whose token this is not: a stranger
    // cannot tell which orgs exist.
    assert_eq!(r.status(), 401, "no org 'beta' here");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["detail"], "this SCIM token is not one of org 'beta'",
        "{body}"
    );
    assert_eq!(
        app.delete(&format!("/oauth/clients/{client_id}")).await.0,
        204
    );
    assert_eq!(again.get("/Users").await.0, 401);
    let (_, listed) = app.get("/scim/tokens").await;
    assert_eq!(listed["items"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_person_scim_disables_loses_their_session_and_refresh_tokens_at_once() {
    use crate::code_flow::{
        Browser, Landed, REDIRECT, VERIFIER, code_of, exchange, refresh, request,
    };
    let app = spawn_app().await;
    let client = crate::code_flow::setup(&app).await;
    let mut browser = Browser::new(&app);
    let code = code_of(
        browser
            .authorize(&request(&client, ""), "alice", "correct horse battery")
            .await,
    );
    let (s, tokens) = exchange(&app, &code, VERIFIER, REDIRECT).await;
    assert_eq!(s, 200, "{tokens}");
    let rt = tokens["refresh_token"].as_str().unwrap().to_string();

    // The IdP takes her over (matched by userName, once), then deactivates her.
    let (provisioner, token) = provisioning_token(&app).await;
    let scim = Scim::new(&app, token);
    let (s, alice) = scim
        .post(
            "/Users",
            json!({"userName": "alice", "externalId": "00u42"}),
        )
        .await;
    assert_eq!(s, 201, "{alice}");
    let id = alice["id"].as_str().unwrap();
    let (s, b) = scim
        .patch(
            &format!("/Users/{id}"),
            patch_op("replace", None, json!({"active": false})),
        )
        .await;
    assert_eq!((s, &b["active"]), (200, &json!(false)), "{b}");

    // Her refresh token stops and her browser session is gone, at once.
    let (s, r) = refresh(&app, &rt).await;
    assert_eq!(s, 400, "{r}");
    match browser
        .walk(&format!("/oauth/authorize?{}", request(&client, "")))
        .await
    {
        Landed::Page(200, url, _) => assert!(url.contains("/login/default"), "{url}"),
        other => panic!("her session should have ended: {other:?}"),
    }
    let (_, grants) = app.get(&format!("/users/{id}/grants")).await;
    assert!(
        grants["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["active"] == false && g["revoked_reason"] == "user_disabled"),
        "{grants}"
    );
    // Logging in again is refused, and the audit trail names who disabled her.
    let landed = browser
        .authorize(&request(&client, ""), "alice", "correct horse battery")
        .await;
    assert!(
        !matches!(landed, Landed::Client(..)),
        "a disabled person logged in: {landed:?}"
    );
    let (_, user) = app.get(&format!("/users/{id}")).await;
    assert_eq!(user["disabled_by"]["kind"], "provisioning", "{user}");
    assert!(
        user["disabled_by"]["description"]
            .as_str()
            .unwrap()
            .contains(provisioner.as_str()),
        "{user}"
    );
    // The enforcement preview says what provisioning did, and by whom.
    let (s, impact) = app.get("/sso/saml/enforcement-impact").await;
    assert_eq!(s, 200, "{impact}");
    let p = &impact["provisioning"][0];
    assert_eq!(p["client_id"], provisioner.as_str(), "{impact}");
    assert_eq!(p["deprovisioned_total"], 1, "{impact}");
    assert_eq!(p["deprovisioned"][0]["username"], "alice", "{impact}");
    assert_eq!(p["deprovisioned"][0]["deleted"], false, "{impact}");
    assert!(
        impact["summary"]
            .as_str()
            .unwrap()
            .contains("cannot reach service accounts"),
        "{impact}"
    );
    let cache = tempfile::tempdir().unwrap();
    let o = crate::cli::tessera(&app, cache.path(), &["admin", "sso", "impact"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(
        o.stdout.contains("alice") && o.stdout.contains("deactivated"),
        "{}",
        o.stdout
    );
    app.stop().await;
}

#[tokio::test]
async fn etags_guard_against_changing_a_stale_copy() {
    let app = spawn_app().await;
    let (_, token) = provisioning_token(&app).await;
    let scim = Scim::new(&app, token.clone());
    let (_, cfg) = scim.get("/ServiceProviderConfig").await;
    assert_eq!(cfg["etag"]["supported"], true);
    let (s, u) = scim.post("/Users", json!({"userName": "fay"})).await;
    assert_eq!(s, 201, "{u}");
    let url = app.url(&format!(
        "/scim/v2/default/Users/{}",
        u["id"].as_str().unwrap()
    ));
    let http = reqwest::Client::new();
    let r = http.get(&url).bearer_auth(&token).send().await.unwrap();
    let tag = r.headers()["etag"].to_str().unwrap().to_string();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["meta"]["version"], tag.as_str());
    assert!(tag.starts_with("W/\""), "{tag}");
    // The same version: nothing to send.
    let r = http
        .get(&url)
        .bearer_auth(&token)
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // A change with the current version goes through and moves the version...
    let patch = |v: Value| patch_op("replace", Some("displayName"), v).to_string();
    let r = http
        .patch(&url)
        .bearer_auth(&token)
        .header("if-match", &tag)
        .header("content-type", "application/scim+json")
        .body(patch(json!("Fay One")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let newer = r.headers()["etag"].to_str().unwrap().to_string();
    assert_ne!(newer, tag);
    // ...so one from the stale copy is refused and changes nothing.
    let r = http
        .patch(&url)
        .bearer_auth(&token)
        .header("if-match", &tag)
        .header("content-type", "application/scim+json")
        .body(patch(json!("Fay Two")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let r = http
        .delete(&url)
        .bearer_auth(&token)
        .header("if-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let (_, now) = scim
        .get(&format!("/Users/{}", u["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (&now["displayName"], &now["active"]),
        (&json!("Fay One"), &json!(true))
    );
    app.stop().await;
}

#[tokio::test]
async fn wrong_scim_tokens_are_throttled_like_wrong_secrets() {
    let app = spawn_app().await;
    // At an org that exists and at one that does not, alike.
    let (client_id, _) = provisioning_token(&app).await;
    let (s, made) = app
        .post("/scim/tokens", json!({"client_id": client_id}))
        .await;
    assert_eq!(s, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    for org in ["default", "no-such-org"] {
        wrong_tokens_until_throttled(&app, org).await;
    }
    // The IdP sharing that address (a cloud NAT) is not locked out by a stranger's wrong
    // tokens: its own token still provisions while every wrong one gets 429.
    let scim = Scim::new(&app, token);
    let (s, b) = scim.post("/Users", json!({"userName": "nat-shared"})).await;
    assert_eq!(s, 201, "{b}");
    let r = reqwest::Client::new()
        .get(app.url("/scim/v2/default/Users"))
        .bearer_auth(format!("tscim_{:0>43}", 99))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    app.stop().await;
}

async fn wrong_tokens_until_throttled(app: &crate::helpers::TestApp, org: &str) {
    let http = reqwest::Client::new();
    let mut statuses = vec![];
    for i in 0..40 {
        let r = http
            .get(app.url(&format!("/scim/v2/{org}/Users")))
            .bearer_auth(format!("tscim_{i:0>43}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            let body: Value = r.json().await.unwrap();
            assert!(
                body["detail"].as_str().unwrap().contains("retry in"),
                "{body}"
            );
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{org}: {statuses:?}");
    assert!(
        statuses[..statuses.len() - 1].iter().all(|s| *s == 401),
        "{org}: {statuses:?}"
    );
}

#[tokio::test]
async fn deprovisioning_is_not_undone_by_a_lapsing_lock_or_a_reused_name() {
    let app = spawn_app().await;
    let scim = Scim::new(&app, provisioning_token(&app).await.1);
    // A person an admin locked until tomorrow: deactivating them disables them, so the
    // lock lapsing does not bring them back.
    let (_, gus) = scim
        .post("/Users", json!({"userName": "gus", "externalId": "00uGUS"}))
        .await;
    let gus = gus["id"].as_str().unwrap().to_string();
    let tomorrow = "2099-01-01T00:00:00Z";
    let (s, b) = app
        .patch(
            &format!("/users/{gus}"),
            json!({"state": "locked", "locked_until": tomorrow}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = scim
        .patch(
            &format!("/Users/{gus}"),
            patch_op("replace", Some("active"), json!(false)),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, user) = app.get(&format!("/users/{gus}")).await;
    assert_eq!(user["state"], "disabled", "{user}");
    assert_eq!(user["disabled_by"]["kind"], "provisioning", "{user}");

    // The IdP deletes jo; a new hire with jo's old name is not given jo's account.
    let (_, jo) = scim
        .post(
            "/Users",
            json!({"userName": "jo", "externalId": "00uOLD", "emails": [{"value": "jo@example.com"}]}),
        )
        .await;
    let jo = jo["id"].as_str().unwrap().to_string();
    assert_eq!(scim.delete(&format!("/Users/{jo}")).await.0, 204);
    let (s, e) = scim
        .post("/Users", json!({"userName": "jo", "externalId": "00uNEW"}))
        .await;
    assert_eq!((s, &e["scimType"]), (409, &json!("uniqueness")), "{e}");
    assert!(e["detail"].as_str().unwrap().contains("deleted"), "{e}");
    let (s, e) = scim
        .post(
            "/Users",
            json!({"userName": "jo2", "externalId": "00uNEW2", "emails": [{"value": "jo@example.com"}]}),
        )
        .await;
    assert_eq!((s, &e["scimType"]), (409, &json!("uniqueness")), "{e}");
    assert_eq!(scim.get(&format!("/Users/{jo}")).await.0, 404);
    // The same person coming back (same externalId) is matched again.
    let (s, back) = scim
        .post(
            "/Users",
            json!({"userName": "jo", "externalId": "00uOLD", "active": true}),
        )
        .await;
    assert_eq!((s, &back["id"]), (201, &json!(jo)), "{back}");

    // A refused change writes nothing: not the externalId it carried either.
    let (s, _) = app
        .patch(&format!("/users/{jo}"), json!({"enabled": false}))
        .await;
    assert_eq!(s, 200);
    let (s, e) = scim
        .patch(
            &format!("/Users/{jo}"),
            json!({"Operations": [
                {"op": "replace", "path": "externalId", "value": "00uX"},
                {"op": "replace", "path": "active", "value": true},
            ]}),
        )
        .await;
    assert_eq!((s, &e["scimType"]), (400, &json!("mutability")), "{e}");
    let (_, by_old) = scim.get("/Users?filter=externalId+eq+%2200uOLD%22").await;
    assert_eq!(by_old["totalResults"], 1, "{by_old}");

    // Removing an email the path's filter does not pick leaves it.
    let (_, hal) = scim
        .post(
            "/Users",
            json!({"userName": "hal", "emails": [{"value": "hal@example.com", "type": "work"}]}),
        )
        .await;
    let hal = hal["id"].as_str().unwrap().to_string();
    let (s, kept) = scim
        .patch(
            &format!("/Users/{hal}"),
            json!({"Operations": [{"op": "remove", "path": "emails[type eq \"home\"]"}]}),
        )
        .await;
    assert_eq!(
        (s, &kept["emails"][0]["value"]),
        (200, &json!("hal@example.com")),
        "{kept}"
    );
    let (_, gone) = scim
        .patch(
            &format!("/Users/{hal}"),
            json!({"Operations": [{"op": "remove", "path": "emails[type eq \"work\"]"}]}),
        )
        .await;
    assert!(gone.get("emails").is_none(), "{gone}");
    // An externalId with a bidirectional override is refused.
    let (s, e) = scim
        .patch(
            &format!("/Users/{hal}"),
            patch_op("replace", Some("externalId"), json!("00u\u{202e}x")),
        )
        .await;
    assert_eq!(s, 400, "{e}");
    app.stop().await;
}

#[tokio::test]
async fn a_long_lived_token_keeps_to_its_org_and_its_clients_allow_list() {
    let app = spawn_app().await;
    let (client_id, _) = provisioning_token(&app).await;
    let (_, made) = app
        .post("/scim/tokens", json!({"client_id": client_id}))
        .await;
    let token = made["token"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let get = |org: &'static str| {
        http.get(app.url(&format!("/scim/v2/{org}/Users")))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(get("default").await.unwrap().status(), 200);
    // At another org's path it is as unknown as a made-up token, and a made-up org
    // answers the same: which orgs exist is not told.
    app.other_org_admin("beta").await;
    let r = get("beta").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(get("no-such-org").await.unwrap().status(), 401);
    // The client's IP allow-list applies to its static token too.
    let (s, b) = app
        .patch(
            &format!("/oauth/clients/{client_id}"),
            json!({"ip_allowlist": ["10.9.0.0/16"]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let r = get("default").await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("allow-list"),
        "{body}"
    );
    // Refused credentials are in the org's audit trail, with the address.
    let (_, events) = app.get("/audit/events?kind=scim&outcome=denied").await;
    let list = events["events"].as_array().unwrap();
    assert!(
        list.iter().any(|e| e["reason"] == "scim_token_refused"
            && e["source_ip"] == "127.0.0.1"
            && e["description"].as_str().unwrap().contains("allow-list")),
        "{events}"
    );
    assert!(
        !events.to_string().contains(&token),
        "the token is never audited"
    );
    app.stop().await;
}

#[tokio::test]
async fn group_patch_operations_apply_in_order() {
    let app = spawn_app().await;
    let scim = Scim::new(&app, provisioning_token(&app).await.1);
    let mut ids = vec![];
    for name in ["ann", "ben"] {
        let (_, u) = scim.post("/Users", json!({"userName": name})).await;
        ids.push(u["id"].as_str().unwrap().to_string());
    }
    let (ann, ben) = (ids[0].as_str(), ids[1].as_str());
    let (_, g) = scim
        .post(
            "/Groups",
            json!({"displayName": "Ops", "members": [{"value": ann}]}),
        )
        .await;
    let url = format!("/Groups/{}", g["id"].as_str().unwrap());
    let members = |g: &Value| {
        let mut m: Vec<String> = g["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap().to_string())
            .collect();
        m.sort();
        m
    };
    // Removed then added back: a member; added then removed by a filter: not one.
    let (s, _) = scim
        .patch(
            &url,
            json!({"Operations": [
                {"op": "remove", "path": format!("members[value eq \"{ann}\"]")},
                {"op": "add", "path": "members", "value": [{"value": ann}]},
                {"op": "add", "path": "members", "value": [{"value": ben}]},
                {"op": "remove", "path": format!("members[value eq \"{ben}\"]")},
            ]}),
        )
        .await;
    assert_eq!(s, 204);
    let (_, got) = scim.get(&url).await;
    assert_eq!(members(&got), vec![ann.to_string()], "{got}");
    // Replaced, then added to: both.
    let (s, _) = scim
        .patch(
            &url,
            json!({"Operations": [
                {"op": "replace", "path": "members", "value": [{"value": ben}]},
                {"op": "add", "path": "members", "value": [{"value": ann}]},
            ]}),
        )
        .await;
    assert_eq!(s, 204);
    let (_, got) = scim.get(&url).await;
    let mut both = vec![ann.to_string(), ben.to_string()];
    both.sort();
    assert_eq!(members(&got), both, "{got}");
    // A member is never changed in place.
    let (s, e) = scim
        .patch(
            &url,
            json!({"Operations": [
                {"op": "replace", "path": format!("members[value eq \"{ann}\"]"), "value": [{"value": ben}]},
            ]}),
        )
        .await;
    assert_eq!((s, &e["scimType"]), (400, &json!("mutability")), "{e}");
    let (_, got) = scim.get(&url).await;
    assert_eq!(members(&got), both, "{got}");
    // A person SCIM deletes leaves their groups.
    assert_eq!(scim.delete(&format!("/Users/{ben}")).await.0, 204);
    let (_, got) = scim.get(&url).await;
    assert_eq!(members(&got), vec![ann.to_string()], "{got}");
    app.stop().await;
}

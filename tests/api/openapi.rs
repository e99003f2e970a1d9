//! The OpenAPI document: served, complete, and identical to the checked-in golden file
//! `docs/openapi.json` (update it with `UPDATE_GOLDEN=1 cargo test --test api openapi`).

use crate::helpers::spawn_app;

#[tokio::test]
async fn openapi_document_is_served_complete_and_golden() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/api/v2/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let served = res.text().await.unwrap();
    app.stop().await;
    assert_eq!(
        served,
        tessera_server::openapi_document(),
        "served == built without a database"
    );
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Every admin route is described, with its methods.
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v2/scopes", &["get", "post"][..]),
        ("/api/v2/users", &["get", "post"]),
        ("/api/v2/users/{id}", &["get", "patch"]),
        ("/api/v2/users/{id}/grants", &["get"]),
        ("/api/v2/users/{id}/grants/{grant_id}", &["delete"]),
        ("/api/v2/users/{id}/sessions", &["delete"]),
        ("/api/v2/oauth/clients", &["get", "post"]),
        (
            "/api/v2/oauth/clients/{client_id}",
            &["get", "patch", "delete"],
        ),
        (
            "/api/v2/oauth/clients/{client_id}/secrets",
            &["get", "post"],
        ),
        (
            "/api/v2/oauth/clients/{client_id}/secrets/{secret_id}",
            &["delete"],
        ),
        ("/api/v2/audit/events", &["get"]),
        ("/api/v2/audit/events/{request_id}", &["get"]),
        ("/api/v2/oauth/diagnose", &["post"]),
        ("/api/v2/oauth/diagnose/authorize", &["post"]),
        ("/api/v2/signing-keys/rotate", &["post"]),
        ("/api/v2/sso/saml", &["get", "put", "patch"]),
        ("/api/v2/sso/saml/enforcement-impact", &["get"]),
        ("/api/v2/saml/encryption-keys", &["get"]),
        ("/api/v2/saml/encryption-keys/rotate", &["post"]),
        ("/api/v2/sso/saml/metadata/refresh", &["post"]),
        ("/api/v2/scim/tokens", &["get", "post"]),
        ("/api/v2/scim/tokens/{id}", &["delete"]),
    ] {
        for m in methods {
            assert!(paths[path][m].is_object(), "{m} {path} missing");
            assert!(
                paths[path][m]["responses"]["401"].is_object(),
                "{m} {path}: 401"
            );
        }
    }
    assert_eq!(paths.len(), 22, "an undocumented path, or a stale one");
    assert!(doc["components"]["schemas"]["ApiErrorBody"].is_object());
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&golden, &served).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        want == served,
        "docs/openapi.json is stale: run UPDATE_GOLDEN=1 cargo test --test api openapi, review and commit it"
    );
}

/// Code generators and `openapi-spec-validator` need one distinct id per operation; the
/// handlers' names (`list`, `show`, ...) repeat across modules, so each path names its own.
#[test]
fn operation_ids_are_unique_and_descriptive() {
    let doc: serde_json::Value = serde_json::from_str(&tessera_server::openapi_document()).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(
                id.len() > 6
                    && id.starts_with(|c: char| c.is_ascii_lowercase())
                    && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{method} {path}: operationId '{id}' is not a descriptive camelCase name"
            );
            if let Some(other) = seen.insert(id.to_string(), format!("{method} {path}")) {
                panic!("operationId '{id}' names both {other} and {method} {path}");
            }
        }
    }
    assert_eq!(seen.len(), 32, "every operation counted");
}

/// A path parameter must be in the path's template, and each template variable a path
/// parameter (openapi-spec-validator's rule, checked here so `cargo test` catches it: a
/// query struct deriving `IntoParams` without `parameter_in = Query` came out as a path
/// parameter once).
#[test]
fn path_parameters_are_the_templates_variables() {
    let doc: serde_json::Value = serde_json::from_str(&tessera_server::openapi_document()).unwrap();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        let mut vars: Vec<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|p| p.split('}').next())
            .collect();
        vars.sort();
        for (method, op) in methods.as_object().unwrap() {
            let mut params: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap())
                        .collect()
                })
                .unwrap_or_default();
            params.sort();
            assert_eq!(params, vars, "{method} {path}: path parameters");
        }
    }
}

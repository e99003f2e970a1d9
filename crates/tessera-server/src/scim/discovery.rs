//! SCIM discovery (RFC 7644 §4): `ServiceProviderConfig`, `ResourceTypes`, `Schemas`.
//! Unauthenticated, as RFC 7644 allows: they describe the server, not the org's people.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use tessera_api::SCIM_SCOPE;
use tessera_core::text::clip;

use super::groups::GROUP_SCHEMA;
use super::{LIST_SCHEMA, MAX_PAGE, ScimError, USER_SCHEMA, scim_json};
use crate::state::Shared;

/// `GET /scim/v2/{org}/ServiceProviderConfig` (RFC 7643 §5).
pub async fn service_provider_config(
    State(st): State<Shared>,
    Path(slug): Path<String>,
) -> Response {
    scim_json(
        StatusCode::OK,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": format!("{}/docs/errors", st.issuer),
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": MAX_PAGE},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth 2.0 bearer token",
                "description": format!("a client_credentials token of a client of org '{}' holding {SCIM_SCOPE}", clip(&slug)),
                "primary": true,
            }],
            "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{}/scim/v2/{}/ServiceProviderConfig", st.issuer, clip(&slug))},
        }),
    )
}

/// `GET /scim/v2/{org}/ResourceTypes`.
pub async fn resource_types(State(st): State<Shared>, Path(slug): Path<String>) -> Response {
    list(&resource_type_list(&st, &slug))
}

/// `GET /scim/v2/{org}/ResourceTypes/{id}`.
pub async fn resource_type(
    State(st): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, ScimError> {
    one(resource_type_list(&st, &slug), &id, "resource type")
}

/// `GET /scim/v2/{org}/Schemas/{id}`.
pub async fn schema(
    State(st): State<Shared>,
    Path((slug, id)): Path<(String, String)>,
) -> Result<Response, ScimError> {
    one(schema_list(&st, &slug), &id, "schema")
}

fn one(all: Vec<Value>, id: &str, what: &str) -> Result<Response, ScimError> {
    all.into_iter()
        .find(|r| r["id"] == id)
        .map(|r| scim_json(StatusCode::OK, r))
        .ok_or_else(|| ScimError::absent(format!("no {what} '{}' here", clip(id))))
}

fn resource_type_list(st: &Shared, slug: &str) -> Vec<Value> {
    let base = format!("{}/scim/v2/{}", st.issuer, clip(slug));
    let kind = |id: &str, endpoint: &str, description: &str, schema: &str, ext: Value| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
            "id": id,
            "name": id,
            "endpoint": endpoint,
            "description": description,
            "schema": schema,
            "schemaExtensions": ext,
            "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{id}")},
        })
    };
    vec![
        kind(
            "User",
            "/Users",
            "The org's people (service accounts are not SCIM resources)",
            USER_SCHEMA,
            // The enterprise extension's fields are accepted and not kept, so no
            // extension is declared (a declared one must be a published schema).
            json!([]),
        ),
        kind(
            "Group",
            "/Groups",
            "Groups of the org's people, mapped to roles by the org's group mapping",
            GROUP_SCHEMA,
            json!([]),
        ),
    ]
}

fn list(all: &[Value]) -> Response {
    scim_json(
        StatusCode::OK,
        json!({"schemas": [LIST_SCHEMA], "totalResults": all.len(), "startIndex": 1,
               "itemsPerPage": all.len(), "Resources": all}),
    )
}

/// An attribute's definition (RFC 7643 §7).
fn attr(name: &str, kind: &str, required: bool, uniqueness: &str, mutability: &str) -> Value {
    json!({"name": name, "type": kind, "multiValued": false, "required": required,
           "caseExact": false, "mutability": mutability, "returned": "default",
           "uniqueness": uniqueness})
}

fn complex(name: &str, multi: bool, sub: Vec<Value>) -> Value {
    let mut a = attr(name, "complex", false, "none", "readWrite");
    a["multiValued"] = json!(multi);
    a["subAttributes"] = json!(sub);
    a
}

/// `GET /scim/v2/{org}/Schemas`: the attributes Tessera keeps, and nothing it does not
/// (what else an IdP sends is accepted and dropped).
pub async fn schemas(State(st): State<Shared>, Path(slug): Path<String>) -> Response {
    list(&schema_list(&st, &slug))
}

/// A string attribute whose only value is `value` (what the server always stores).
fn canonical(name: &str, value: &str) -> Value {
    let mut a = attr(name, "string", false, "none", "readWrite");
    a["canonicalValues"] = json!([value]);
    a
}

fn schema_list(st: &Shared, slug: &str) -> Vec<Value> {
    let base = format!("{}/scim/v2/{}", st.issuer, clip(slug));
    let schema = |id: &str, name: &str, description: &str, attributes: Vec<Value>| {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": id,
            "name": name,
            "description": description,
            "attributes": attributes,
            "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
        })
    };
    let mut member_ref = attr("$ref", "reference", false, "none", "immutable");
    member_ref["referenceTypes"] = json!(["User"]);
    let mut roles = complex(
        "roles",
        true,
        vec![attr("value", "string", false, "none", "readOnly")],
    );
    roles["mutability"] = json!("readOnly");
    vec![
        schema(
            USER_SCHEMA,
            "User",
            "A person of the org",
            vec![
                attr("userName", "string", true, "server", "readWrite"),
                attr("displayName", "string", false, "none", "readWrite"),
                complex(
                    "name",
                    false,
                    // givenName and familyName are taken (joined into the display name
                    // when there is no formatted name) but not kept apart.
                    vec![attr("formatted", "string", false, "none", "readWrite")],
                ),
                attr("active", "boolean", false, "none", "readWrite"),
                complex(
                    "emails",
                    true,
                    vec![
                        attr("value", "string", false, "none", "readWrite"),
                        canonical("type", "work"),
                        attr("primary", "boolean", false, "none", "readWrite"),
                    ],
                ),
                roles,
            ],
        ),
        schema(
            GROUP_SCHEMA,
            "Group",
            "A group of the org's people",
            vec![
                attr("displayName", "string", true, "server", "readWrite"),
                complex(
                    "members",
                    true,
                    vec![
                        attr("value", "string", false, "none", "immutable"),
                        canonical("type", "User"),
                        member_ref,
                    ],
                ),
            ],
        ),
    ]
}

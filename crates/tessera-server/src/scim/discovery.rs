//! SCIM discovery (RFC 7644 §4): `ServiceProviderConfig`, `ResourceTypes`, `Schemas`.
//! Unauthenticated, as RFC 7644 allows: they describe the server, not the org's people.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use tessera_api::SCIM_SCOPE;
use tessera_core::text::clip;

use super::{LIST_SCHEMA, MAX_PAGE, USER_SCHEMA, scim_json};
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
            "etag": {"supported": false},
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
    let base = format!("{}/scim/v2/{}", st.issuer, clip(&slug));
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "The org's people (service accounts are not SCIM resources)",
        "schema": USER_SCHEMA,
        "schemaExtensions": [{"schema": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "required": false}],
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User")},
    });
    scim_json(
        StatusCode::OK,
        json!({"schemas": [LIST_SCHEMA], "totalResults": 1, "startIndex": 1, "itemsPerPage": 1, "Resources": [user]}),
    )
}

/// `GET /scim/v2/{org}/Schemas`: the User attributes Tessera keeps.
pub async fn schemas(State(st): State<Shared>, Path(slug): Path<String>) -> Response {
    let attr = |name: &str, kind: &str, required: bool, uniqueness: &str, multi: bool| {
        json!({"name": name, "type": kind, "multiValued": multi, "required": required,
               "caseExact": false, "mutability": "readWrite", "returned": "default",
               "uniqueness": uniqueness})
    };
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "A person of the org",
        "attributes": [
            attr("userName", "string", true, "server", false),
            attr("displayName", "string", false, "none", false),
            attr("active", "boolean", false, "none", false),
            attr("emails", "complex", false, "none", true),
            attr("externalId", "string", false, "server", false),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{}/scim/v2/{}/Schemas/{USER_SCHEMA}", st.issuer, clip(&slug))},
    });
    scim_json(
        StatusCode::OK,
        json!({"schemas": [LIST_SCHEMA], "totalResults": 1, "startIndex": 1, "itemsPerPage": 1, "Resources": [user]}),
    )
}

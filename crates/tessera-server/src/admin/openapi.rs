//! The OpenAPI document of the admin API, generated from the handlers' annotations and the
//! wire types (utoipa): it builds without a database, and cannot drift from the code.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera admin API",
        description = "Org-scoped administration: users and service accounts, OAuth clients and secrets, the scope catalogue, the audit trail with decision traces, dry-run diagnosis, and SAML SSO configuration with its enforcement-impact preview. Every call needs a bearer access token from POST /oauth/token holding the tessera:admin scope; the org comes from the token. Errors carry `error`, `message`, `field` (when one is at fault) and `request_id`. Names, descriptions and other stored text never hold control characters, line or paragraph separators or bidirectional overrides: such a value gets 422 naming its field."
    ),
    paths(
        super::scopes::list,
        super::scopes::create,
        super::users::list,
        super::users::show,
        super::users::create,
        super::users::update,
        super::clients::list,
        super::clients::show,
        super::clients::create,
        super::clients::update,
        super::clients::delete,
        super::clients::list_secrets,
        super::clients::rotate_secret,
        super::clients::revoke_secret,
        super::audit::list,
        super::audit::show,
        super::diagnose::diagnose,
        super::rotate_signing_key,
        super::sso::show,
        super::sso::put,
        super::sso::patch,
        super::sso::enforcement_impact,
    ),
    modifiers(&BearerAuth)
)]
struct AdminApi;

/// The `bearer` security scheme every path refers to.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document, as pretty-printed JSON.
pub fn document() -> String {
    AdminApi::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
}

/// `GET /api/v2/openapi.json` (no authentication).
pub async fn serve() -> Response {
    let mut res = document().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

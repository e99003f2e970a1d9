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
        description = "Org-scoped administration: users and service accounts, OAuth clients and secrets, the scope catalogue, the audit trail with decision traces, dry-run diagnosis, SAML SSO configuration with its enforcement-impact preview, and long-lived SCIM provisioning tokens. Every call needs a bearer access token from POST /oauth/token holding the tessera:admin scope; the org comes from the token. Errors carry `error`, `message`, `field` (when one is at fault) and `request_id`. Names, descriptions and other stored text never hold control characters, line or paragraph separators or bidirectional overrides: such a value gets 422 naming its field."
    ),
    paths(
        super::scopes::list,
        super::scopes::create,
        super::users::list,
        super::users::show,
        super::users::create,
        super::users::update,
        super::users::grants,
        super::users::revoke_grant,
        super::users::end_sessions,
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
        super::diagnose::diagnose_authorize,
        super::rotate_signing_key,
        super::sso::show,
        super::sso::put,
        super::sso::patch,
        super::sso::encryption_keys,
        super::sso::refresh_metadata,
        super::sso::rotate_encryption_key,
        super::sso::enforcement_impact,
        super::scim::list,
        super::scim::create,
        super::scim::revoke,
    ),
    modifiers(&BearerAuth, &BodyLimit)
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

/// The 413 of every operation that takes a body: the limit is one extractor's
/// ([`super::ApiJson`]), so it is documented in one place too.
struct BodyLimit;

impl utoipa::Modify for BodyLimit {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let too_large = ResponseBuilder::new()
            .description(format!(
                "the body is over {} KiB (`error`: `body_too_large`)",
                super::BODY_LIMIT / 1024
            ))
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ApiErrorBody")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.put, &mut item.post, &mut item.patch]
                .into_iter()
                .flatten()
            {
                if op.request_body.is_some() {
                    op.responses
                        .responses
                        .insert("413".into(), too_large.clone().into());
                }
            }
        }
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

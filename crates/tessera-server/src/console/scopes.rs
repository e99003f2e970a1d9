//! The console's scopes page: the catalogue (built-in and the org's own), and adding a
//! scope through `scopes.rs`, as the admin API does.

use askama::Template;
use axum::Form;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use tessera_api::ScopeView;

use super::{Frame, OrgAdmin, html};
use crate::scopes;

#[derive(Template)]
#[template(path = "console/scopes.html")]
struct Page<'a> {
    f: Frame<'a>,
    rows: Vec<ScopeView>,
}

#[derive(serde::Deserialize, Default)]
pub struct ScopesQuery {
    added: Option<String>,
}

/// `GET /admin/scopes`.
pub async fn list(
    a: OrgAdmin,
    axum::extract::Query(q): axum::extract::Query<ScopesQuery>,
) -> Response {
    let rows = match scopes::list(&a.st, &a.org).await {
        Ok(r) => r,
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    let notice = q
        .added
        .filter(|n| rows.iter().any(|s| &s.name == n))
        .map(|n| format!("Scope {n} is in the catalogue: give it to clients that need it."));
    html(
        StatusCode::OK,
        Page {
            f: a.frame("scopes", notice),
            rows,
        }
        .render(),
    )
}

#[derive(serde::Deserialize)]
pub struct AddForm {
    csrf: Option<String>,
    name: Option<String>,
    description: Option<String>,
}

/// `POST /admin/scopes`: adds a scope, audited as `create_scope` with the person named.
pub async fn add(a: OrgAdmin, headers: HeaderMap, Form(f): Form<AddForm>) -> Response {
    if let Some(refusal) = a.form_refusal(&headers, f.csrf.as_deref()) {
        return refusal;
    }
    let name = f.name.unwrap_or_default();
    let created = scopes::create(
        &a.st,
        &a.org,
        name.trim(),
        f.description.unwrap_or_default(),
    )
    .await;
    let scope = match created {
        Ok(s) => s,
        Err(e) => {
            return super::not_done(
                e,
                "The scope was not added",
                ("/admin/scopes", "Back to scopes"),
            );
        }
    };
    if let Some(failed) = a.audit("create_scope", json!({"name": scope.name})).await {
        return failed;
    }
    Redirect::to(&format!(
        "/admin/scopes?added={}",
        form_urlencoded::byte_serialize(scope.name.as_str().as_bytes()).collect::<String>()
    ))
    .into_response()
}

//! The console's dry-run form: a token request described field by field, decided by the
//! token endpoint's own decision (the admin API's `POST /api/v2/oauth/diagnose`), with
//! the trace shown and the failing check marked. A form post, so a secret typed in
//! never lands in a URL or a log line.

use askama::Template;
use axum::Form;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tessera_api::{DiagnoseRequest, DiagnoseResponse};

use super::{Frame, OrgAdmin, html};
use crate::admin::diagnose::dry_run;

const GRANTS: [&str; 2] = ["client_credentials", "password"];

#[derive(Template)]
#[template(path = "console/diagnose.html")]
struct Page<'a> {
    f: Frame<'a>,
    grants: [&'static str; 2],
    client_id: String,
    grant_type: String,
    scope: String,
    source_ip: String,
    result: Option<DiagnoseResponse>,
}

fn page(a: &OrgAdmin, form: &DiagnoseForm, result: Option<DiagnoseResponse>) -> Response {
    html(
        StatusCode::OK,
        Page {
            f: a.frame("diagnose", None),
            grants: GRANTS,
            client_id: form.client_id.clone().unwrap_or_default(),
            grant_type: form
                .grant_type
                .clone()
                .unwrap_or_else(|| GRANTS[0].to_string()),
            scope: form.scope.clone().unwrap_or_default(),
            source_ip: form.source_ip.clone().unwrap_or_default(),
            result,
        }
        .render(),
    )
}

#[derive(serde::Deserialize, Default)]
pub struct DiagnoseForm {
    csrf: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    grant_type: Option<String>,
    scope: Option<String>,
    source_ip: Option<String>,
}

/// `GET /admin/diagnose`: the form.
pub async fn form(a: OrgAdmin) -> Response {
    page(&a, &DiagnoseForm::default(), None)
}

/// `POST /admin/diagnose`: the decision, with its trace.
pub async fn run(a: OrgAdmin, headers: HeaderMap, Form(f): Form<DiagnoseForm>) -> Response {
    // A dry run changes nothing: an auditor may run one too.
    if let Some(refusal) = a.session_form_refusal(&headers, f.csrf.as_deref()) {
        return refusal;
    }
    let given = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let req = DiagnoseRequest {
        client_id: f.client_id.clone().unwrap_or_default(),
        client_secret: given(&f.client_secret),
        grant_type: f
            .grant_type
            .clone()
            .unwrap_or_else(|| GRANTS[0].to_string()),
        scope: given(&f.scope),
        source_ip: given(&f.source_ip),
        auth_method: None,
    };
    match dry_run(&a.st, a.org.id, &a.user.id, &req).await {
        Ok(result) => page(&a, &f, Some(result)),
        Err(e) => super::not_done(
            e,
            "The dry run could not start",
            ("/admin/diagnose", "Back to the form"),
        ),
    }
}

//! The console's SSO page: the org's IdP as configured, what to give the IdP, and the
//! enforcement impact preview with the switch that requires it, through
//! `enforcement.rs` as the admin API does. The preview states what enforcement will not
//! touch: `client_credentials` clients and service accounts.

use askama::Template;
use axum::Form;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use tessera_api::{EnforcementImpactView, SsoConfigView};

use super::{OrgAdmin, html, refused};
use crate::admin::sso::{impact_view, view};
use crate::enforcement::{self, Ack};
use crate::error::ApiError;

#[derive(Template)]
#[template(path = "console/sso.html")]
struct SsoPage<'a> {
    f: super::Frame<'a>,
    me_id: &'a str,
    cfg: SsoConfigView,
    impact: Option<EnforcementImpactView>,
}

#[derive(serde::Deserialize, Default)]
pub struct SsoQuery {
    /// What the last switch did (`on`, `off`).
    done: Option<String>,
}

/// `GET /admin/sso`.
pub async fn show(a: OrgAdmin, Query(q): Query<SsoQuery>) -> Response {
    let config = match a.st.store.sso_config(a.org.id).await {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    let cfg = view(&a.st, &a.org, &config);
    let impact = if cfg.configured && !a.org.sso_enforced {
        match enforcement::impact(&a.st, &a.org, &config).await {
            Ok(i) => Some(impact_view(&a.org, i)),
            Err(e) => return crate::html::unavailable(e.to_string()),
        }
    } else {
        None
    };
    let notice = match q.done.as_deref() {
        Some("on") => Some("SSO is enforced now. Machines are not affected.".to_string()),
        Some("off") => Some("SSO is no longer enforced.".to_string()),
        _ => None,
    };
    html(
        StatusCode::OK,
        SsoPage {
            f: a.frame("sso", notice),
            me_id: &a.user.id,
            cfg,
            impact,
        }
        .render(),
    )
}

#[derive(serde::Deserialize)]
pub struct EnforceForm {
    csrf: Option<String>,
    preview_id: Option<String>,
    confirm: Option<String>,
}

/// `POST /admin/sso/enforce`: switches enforcement on, with the preview the admin saw.
pub async fn enforce(a: OrgAdmin, headers: HeaderMap, Form(f): Form<EnforceForm>) -> Response {
    if let Some(refusal) = a.form_refusal(&headers, f.csrf.as_deref()) {
        return refusal;
    }
    if f.confirm.as_deref() != Some("yes") {
        return refused(
            StatusCode::BAD_REQUEST,
            "Nothing was changed",
            "Tick the box that says you have read what switching enforcement on changes.",
            ("/admin/sso", "Back to SSO"),
        );
    }
    let preview = f.preview_id.unwrap_or_default();
    switch(a, true, Ack::Preview(&preview)).await
}

/// `POST /admin/sso/unenforce`: switches enforcement off.
pub async fn unenforce(
    a: OrgAdmin,
    headers: HeaderMap,
    Form(f): Form<super::pages::CsrfForm>,
) -> Response {
    if let Some(refusal) = a.form_refusal(&headers, f.csrf.as_deref()) {
        return refusal;
    }
    switch(a, false, Ack::None).await
}

async fn switch(a: OrgAdmin, on: bool, ack: Ack<'_>) -> Response {
    let config = match a.st.store.sso_config(a.org.id).await {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    match enforcement::set_enforced(&a.st, &a.org, &config, on, ack).await {
        Ok(Some(change)) => {
            if let Some(failed) = a.audit("set_sso_enforced", change).await {
                return failed;
            }
        }
        Ok(None) => {}
        Err(ApiError::Conflict(_)) => {
            return refused(
                StatusCode::CONFLICT,
                "The impact changed since you looked",
                "Someone's accounts changed after the preview was shown, so it no longer says what enforcement would change. Nothing was changed: read the new preview, then switch.",
                ("/admin/sso", "See the new preview"),
            );
        }
        Err(e) => {
            return super::not_done(e, "Nothing was changed", ("/admin/sso", "Back to SSO"));
        }
    }
    Redirect::to(if on {
        "/admin/sso?done=on"
    } else {
        "/admin/sso?done=off"
    })
    .into_response()
}

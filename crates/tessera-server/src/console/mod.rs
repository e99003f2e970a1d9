//! The org admin's console at `/admin/`: server-rendered pages (askama templates,
//! checked at compile time) that work without JavaScript and carry no inline script or
//! style, so the strict Content-Security-Policy of every HTML page holds
//! (`html::CSP`). Who comes in: a human with the `org_admin` role of their org, on a
//! live browser session started by the org's own login (SSO when enforced, the
//! password form otherwise), with its idle and absolute timeouts. Every action is a
//! form post carrying a CSRF token bound to the session, from this server's own pages,
//! and goes through the code the admin API uses (`users.rs`), audited with the person
//! named.

mod clients;
mod diagnose;
mod pages;
mod scopes;
mod sso;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use tessera_core::model::{Actor, Org, User, UserState, UserType};

use crate::state::Shared;
use crate::{request_id, session};

/// The role that opens the console.
pub const ORG_ADMIN_ROLE: &str = "org_admin";
/// The role that opens the console to read only: every page, no change.
pub const ORG_AUDITOR_ROLE: &str = "org_auditor";

/// The console's routes.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(pages::overview))
        .route("/admin/login", get(pages::login))
        .route("/admin/logout", post(pages::logout))
        .route("/admin/users", get(pages::users))
        .route("/admin/users/{id}", get(pages::user))
        .route("/admin/users/{id}/enable", post(pages::enable_user))
        .route("/admin/users/{id}/logout", post(pages::log_out_everywhere))
        .route(
            "/admin/users/{id}/grants/{grant_id}/revoke",
            post(pages::revoke_grant),
        )
        .route("/admin/users/{id}/disable", post(pages::disable_user))
        .route("/admin/users/{id}/roles", post(pages::set_roles))
        .route("/admin/clients", get(clients::list).post(clients::create))
        .route("/admin/clients/new", get(clients::new_form))
        .route("/admin/clients/{id}", get(clients::show))
        .route("/admin/clients/{id}/rotate", post(clients::rotate))
        .route("/admin/clients/{id}/settings", post(clients::save_settings))
        .route(
            "/admin/clients/{id}/secrets/{secret_id}/revoke",
            post(clients::revoke),
        )
        .route("/admin/scopes", get(scopes::list).post(scopes::add))
        .route("/admin/sso", get(sso::show))
        .route("/admin/sso/idp", post(sso::import))
        .route("/admin/sso/policy", post(sso::policy))
        .route("/admin/sso/enforce", post(sso::enforce))
        .route("/admin/sso/unenforce", post(sso::unenforce))
        .route("/admin/diagnose", get(diagnose::form).post(diagnose::run))
        .route("/admin/audit", get(pages::audit))
        .route("/assets/console.css", get(stylesheet))
        .route("/assets/console.js", get(script))
}

/// A human with the `org_admin` role of their org, on a live session: a console page
/// exists only for one. The CSRF token of their session comes with it.
pub struct OrgAdmin {
    pub org: Org,
    pub user: User,
    /// An org admin; an auditor (`org_auditor`) reads every page and changes nothing.
    pub can_change: bool,
    pub csrf: String,
    pub st: Shared,
}

impl FromRequestParts<Shared> for OrgAdmin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Shared) -> Result<Self, Response> {
        let Some(s) = session::current(st, &parts.headers).await else {
            return Err(Redirect::to("/admin/login").into_response());
        };
        let user = st.store.get_user(s.org_id, &s.user_id).await;
        let org = st.store.org_by_id(s.org_id).await;
        let (Ok(Some(user)), Ok(Some(org))) = (user, org) else {
            return Err(Redirect::to("/admin/login").into_response());
        };
        let person = user.user_type == UserType::Human
            && user.effective_state(crate::clock::now()) == UserState::Active;
        let has = |role: &str| person && user.roles.iter().any(|r| r == role);
        let can_change = has(ORG_ADMIN_ROLE);
        if !can_change && !has(ORG_AUDITOR_ROLE) {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "Only org admins use the console",
                &format!(
                    "You are logged in to {} as {}, who has neither the {ORG_ADMIN_ROLE} role nor the read-only {ORG_AUDITOR_ROLE} role. An org admin can give you one.",
                    org.slug, user.username
                ),
                ("/session", "See who you are logged in as"),
            ));
        }
        let token = session::cookie(&parts.headers).unwrap_or_default();
        Ok(OrgAdmin {
            can_change,
            csrf: csrf_for(&token),
            org,
            user,
            st: st.clone(),
        })
    }
}

/// What the frame of every console page shows: the org, who is logged in (with the
/// CSRF token of the frame's logout form), the section, and a notice.
pub struct Frame<'a> {
    /// Whether the page offers changes (false for an auditor: no buttons but log out).
    pub can_change: bool,
    pub org: &'a str,
    pub me: &'a str,
    pub csrf: &'a str,
    pub section: &'static str,
    pub notice: Option<String>,
}

impl OrgAdmin {
    /// The frame of a page in `section`.
    pub fn frame(&self, section: &'static str, notice: Option<String>) -> Frame<'_> {
        Frame {
            can_change: self.can_change,
            org: self.org.slug.as_str(),
            me: &self.user.username,
            csrf: &self.csrf,
            section,
            notice,
        }
    }

    /// The org and server, as the admin API's operations take them.
    pub fn ctx(&self) -> crate::admin::OrgCtx<'_> {
        crate::admin::OrgCtx {
            st: &self.st,
            org: &self.org,
        }
    }

    /// The person as the actor of what they change.
    pub fn actor(&self) -> Actor {
        Actor::OrgAdmin {
            user_id: self.user.id.clone(),
            username: self.user.username.clone(),
        }
    }

    /// Records a change made in the console as the admin API's operation `op` would be
    /// (`kind=admin`), with the person as actor and `via: console`. The page to answer
    /// with when the audit trail cannot take it.
    pub async fn audit(&self, op: &str, mut change: serde_json::Value) -> Option<Response> {
        change["via"] = "console".into();
        change["by"] = self.user.username.clone().into();
        let event = crate::admin::admin_event(self.org.id, &self.user.id, op, change);
        self.st
            .audit
            .record(event)
            .await
            .err()
            .map(|e| crate::html::unavailable(e.to_string()))
    }

    /// A form post's checks: from this server's own pages (`Origin`), and carrying the
    /// session's CSRF token. The refusal page when they fail.
    pub fn form_refusal(&self, headers: &HeaderMap, csrf: Option<&str>) -> Option<Response> {
        self.session_form_refusal(headers, csrf).or_else(|| {
            (!self.can_change).then(|| {
                refused(
                    StatusCode::FORBIDDEN,
                    "Read only",
                    &format!(
                        "You have the read-only {ORG_AUDITOR_ROLE} role: the console shows you everything and changes nothing. An org admin can make the change."
                    ),
                    ("/admin/", "Back to the console"),
                )
            })
        })
    }

    /// The checks of a form that only touches the person's own session (logging out):
    /// from this server's pages, with the session's CSRF token.
    pub fn session_form_refusal(
        &self,
        headers: &HeaderMap,
        csrf: Option<&str>,
    ) -> Option<Response> {
        if session::foreign_origin(&self.st, headers, "a console form").is_some() {
            return Some(refused(
                StatusCode::FORBIDDEN,
                "Refused: a form from another site",
                "Console forms are accepted only from the console's own pages.",
                ("/admin/", "Back to the console"),
            ));
        }
        let given = csrf.unwrap_or_default();
        if given.is_empty() || !bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes())) {
            return Some(refused(
                StatusCode::FORBIDDEN,
                "Refused: the form's CSRF token is missing or stale",
                "Nothing was changed. Reload the page and submit the form again.",
                ("/admin/", "Back to the console"),
            ));
        }
        None
    }
}

/// The CSRF token of the session whose cookie carries `session_token`: derived from
/// it (so it dies with the session and needs no storage), never the token itself.
fn csrf_for(session_token: &str) -> String {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("tessera-console-csrf\n{session_token}").as_bytes(),
    );
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..18])
}

/// A short digest of what a form was filled from, sent back with it: a save whose
/// digest no longer matches the stored record would undo a change made since the page
/// was read, and is refused instead.
pub fn version_of(shown: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(shown).unwrap_or_default();
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..12])
}

/// The refusal of a save made from a page that is out of date.
pub fn stale(what: &str, back: (&str, &str)) -> Response {
    refused(
        StatusCode::CONFLICT,
        "Nothing was changed",
        &format!(
            "{what} changed since you opened this page (another admin, the API or the identity provider). Saving would undo that change: read the page again, then save."
        ),
        back,
    )
}

/// A rendered page, never cached (it shows the org's records).
pub fn html(status: StatusCode, body: Result<String, askama::Error>) -> Response {
    match body {
        Ok(body) => {
            let mut res = (status, Html(body)).into_response();
            let h = res.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            // Addresses stay on this site, and form posts name their origin (see
            // `html::add_security_headers`).
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            );
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "console page not rendered");
            crate::html::page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be shown",
                "Retry in a moment; the server log says more.",
                None,
            )
        }
    }
}

/// The page for a refusal of the code the console shares with the admin API: what was
/// refused (the field, when one is at fault), nothing changed, and a way back.
pub fn not_done(e: crate::error::ApiError, title: &str, back: (&str, &str)) -> Response {
    use crate::error::ApiError;
    let (status, text) = match e {
        ApiError::InvalidField { field, message } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field}: {message}"),
        ),
        ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
        ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
        ApiError::Store(m) => return crate::html::unavailable(m),
        other => (StatusCode::BAD_REQUEST, other.to_string()),
    };
    refused(status, title, &text, back)
}

/// A refusal page: what happened, the request id, and a way on.
pub fn refused(status: StatusCode, title: &str, text: &str, back: (&str, &str)) -> Response {
    use askama::Template;
    html(
        status,
        pages::Refused {
            title,
            text,
            request_id: request_id::current(),
            back: back.0,
            back_label: back.1,
        }
        .render(),
    )
}

/// `GET /assets/console.js`: times in the viewer's time zone, UTC on hover. A file, so
/// the console's CSP allows this origin's script and no inline one.
async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/console.js"),
    )
}

/// The console's Content-Security-Policy: every page's (`html::CSP`), plus this
/// origin's script file (`/assets/console.js`), never an inline one.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `GET /assets/console.css`: readable at 1280 px and on a phone, visible focus.
async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/console.css"),
    )
}

/// A form's fields, repeated keys kept (checkboxes of one name).
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The first value of `k`, trimmed; none when absent or blank.
    pub fn one(&self, k: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// Whether the checkbox `k` (value `yes`) is ticked.
    pub fn ticked(&self, k: &str) -> bool {
        self.one(k).as_deref() == Some("yes")
    }

    /// Every value of `k` (the ticked checkboxes of one name).
    pub fn all(&self, k: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// `k` as a whole number; none when absent or blank, an error when not a number.
    pub fn number(&self, k: &str) -> Result<Option<i64>, std::num::ParseIntError> {
        self.one(k).map(|v| v.parse()).transpose()
    }

    /// The non-blank lines of `k` (a textarea), trimmed.
    pub fn lines(&self, k: &str) -> Vec<String> {
        self.one(k)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

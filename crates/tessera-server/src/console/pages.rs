//! The console's pages: each handler takes an [`OrgAdmin`], reads through the store,
//! changes through `users.rs` (the admin API's code) and renders a template.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use tessera_core::audit::{AuditEvent, AuditFilter, AuditKind};
use tessera_core::model::{User, UserState, UserType};
use tessera_core::text::rfc3339;

use super::{OrgAdmin, html, refused};
use crate::state::Shared;
use crate::users::{self, Change};
use crate::{clock, session};

/// Users per page.
const PAGE: usize = 50;

#[derive(Template)]
#[template(path = "console/refused.html")]
pub struct Refused<'a> {
    pub title: &'a str,
    pub text: &'a str,
    pub request_id: String,
    pub back: &'a str,
    pub back_label: &'a str,
}

/// A user as the console's tables show them.
pub struct Row {
    pub id: String,
    pub username: String,
    pub kind: &'static str,
    pub state: &'static str,
    /// Who changed the state (empty when nobody did).
    pub by: String,
    /// When (RFC 3339, empty when never).
    pub at: String,
    pub source: &'static str,
}

fn row(u: &User) -> Row {
    let state = u.effective_state(clock::now());
    let changed = state != UserState::Active;
    Row {
        id: u.id.clone(),
        username: u.username.clone(),
        kind: match u.user_type {
            UserType::Human => "person",
            UserType::Service => "service account",
        },
        state: state.as_str(),
        by: u
            .state_changed_by
            .as_ref()
            .filter(|_| changed)
            .map(|a| a.to_string())
            .unwrap_or_default(),
        at: match state {
            UserState::Locked => u.locked_until.map(rfc3339).unwrap_or_default(),
            UserState::Disabled => u.state_changed_at.map(rfc3339).unwrap_or_default(),
            UserState::Active => String::new(),
        },
        source: if u.scim.is_some() {
            "SCIM"
        } else if u.saml_name_id.is_some() {
            "SAML"
        } else {
            "local"
        },
    }
}

pub struct Refusal {
    pub reason: String,
    pub count: usize,
    pub latest: String,
}

/// A client's secret that needs attention on the overview.
pub struct SecretNote {
    pub client_id: String,
    pub client_name: String,
    pub hint: String,
    pub last_used: String,
    pub from: String,
    pub expires: String,
}

/// How far ahead the overview looks for expiring secrets.
const EXPIRING_WITHIN: i64 = 14 * 86_400;

/// The secrets that need attention: those a caller still uses though a newer one exists
/// (a rotation not finished), and those expiring soon.
async fn secret_notes(a: &OrgAdmin) -> (Vec<SecretNote>, Vec<SecretNote>) {
    let now = clock::now();
    let mut still_old = vec![];
    let mut expiring = vec![];
    let clients = a.st.store.list_clients(a.org.id).await.unwrap_or_default();
    for c in &clients {
        let Ok(secrets) = a.st.store.list_secrets(c.client_id.as_str()).await else {
            continue;
        };
        let active: Vec<_> = secrets
            .iter()
            .filter(|s| s.revoked_at.is_none() && s.expires_at.is_none_or(|e| e > now))
            .collect();
        // The store lists secrets oldest first: all but the last active one have a newer
        // one beside them (a rotation in its grace period).
        for (i, s) in active.iter().enumerate() {
            let note = || SecretNote {
                client_id: c.client_id.to_string(),
                client_name: c.name.clone(),
                hint: s.hint.clone(),
                last_used: s.last_used_at.map(rfc3339).unwrap_or_default(),
                from: s.last_used_from.clone().unwrap_or_default(),
                expires: s.expires_at.map(rfc3339).unwrap_or_default(),
            };
            let superseded = i + 1 < active.len();
            if superseded && s.last_used_at.is_some() {
                still_old.push(note());
            } else if s.expires_at.is_some_and(|e| e - now <= EXPIRING_WITHIN) {
                expiring.push(note());
            }
        }
    }
    (still_old, expiring)
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct Overview<'a> {
    f: super::Frame<'a>,
    disabled_services: Vec<Row>,
    locked: Vec<Row>,
    refusals: Vec<Refusal>,
    still_old: Vec<SecretNote>,
    expiring: Vec<SecretNote>,
}

/// `GET /admin/`: what needs attention.
pub async fn overview(a: OrgAdmin) -> Response {
    let users = match a.st.store.list_users(a.org.id).await {
        Ok(u) => u,
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    let now = clock::now();
    let disabled_services = users
        .iter()
        .filter(|u| {
            u.user_type == UserType::Service && u.effective_state(now) == UserState::Disabled
        })
        .map(row)
        .collect();
    let locked = users
        .iter()
        .filter(|u| u.effective_state(now) == UserState::Locked)
        .map(row)
        .collect();
    let filter = AuditFilter {
        since_ms: Some(clock::now_ms() - 86_400_000),
        outcome: Some("denied".into()),
        kind: Some(AuditKind::Token),
        limit: 500,
        ..AuditFilter::default()
    };
    let events =
        a.st.store
            .list_audit_events(a.org.id, &filter)
            .await
            .unwrap_or_default();
    let mut by_reason: BTreeMap<String, Refusal> = BTreeMap::new();
    // Newest first: the first event of a reason is its latest.
    for e in &events {
        let reason = e.reason.clone().unwrap_or_else(|| "unknown".into());
        by_reason
            .entry(reason.clone())
            .or_insert_with(|| Refusal {
                reason,
                count: 0,
                latest: e.request_id.clone(),
            })
            .count += 1;
    }
    let mut refusals: Vec<Refusal> = by_reason.into_values().collect();
    refusals.sort_by(|x, y| y.count.cmp(&x.count).then(x.reason.cmp(&y.reason)));
    let (still_old, expiring) = secret_notes(&a).await;
    html(
        StatusCode::OK,
        Overview {
            f: a.frame("overview", None),
            disabled_services,
            locked,
            refusals,
            still_old,
            expiring,
        }
        .render(),
    )
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct Users<'a> {
    f: super::Frame<'a>,
    me_id: &'a str,
    rows: Vec<Row>,
    page: usize,
    pages: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

#[derive(serde::Deserialize, Default)]
pub struct UsersQuery {
    page: Option<usize>,
    /// The user an action just changed (its result is shown).
    changed: Option<String>,
}

/// `GET /admin/users`: every user and service account, with state and who changed it.
pub async fn users(a: OrgAdmin, Query(q): Query<UsersQuery>) -> Response {
    let mut all = match a.st.store.list_users(a.org.id).await {
        Ok(u) => u,
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    all.sort_by(|x, y| x.username.cmp(&y.username));
    let pages = all.len().div_ceil(PAGE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let notice = q.changed.as_deref().and_then(|id| {
        all.iter().find(|u| u.id == id).map(|u| {
            format!(
                "{} is {} now.",
                u.username,
                u.effective_state(clock::now()).as_str()
            )
        })
    });
    let rows = all
        .iter()
        .skip((page - 1) * PAGE)
        .take(PAGE)
        .map(row)
        .collect();
    html(
        StatusCode::OK,
        Users {
            f: a.frame("users", notice),
            me_id: &a.user.id,
            rows,
            page,
            pages,
            prev: (page > 1).then(|| page - 1),
            next: (page < pages).then(|| page + 1),
        }
        .render(),
    )
}

/// A form whose only field is its CSRF token.
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    pub(super) csrf: Option<String>,
}

/// `POST /admin/users/{id}/enable`: enables a disabled account, or lifts a lock.
pub async fn enable_user(
    a: OrgAdmin,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    set_state(a, id, &headers, f, UserState::Active).await
}

/// `POST /admin/users/{id}/disable`: disables an account (never one's own).
pub async fn disable_user(
    a: OrgAdmin,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if id == a.user.id {
        return refused(
            StatusCode::CONFLICT,
            "You cannot disable yourself",
            "Another org admin can, if that is what is wanted.",
            ("/admin/users", "Back to users"),
        );
    }
    set_state(a, id, &headers, f, UserState::Disabled).await
}

/// A state change through `users.rs`, audited as the admin API's `update_user` is, with
/// the person named as who did it.
async fn set_state(
    a: OrgAdmin,
    id: String,
    headers: &HeaderMap,
    f: CsrfForm,
    state: UserState,
) -> Response {
    let user = match posted_user(&a, headers, f.csrf.as_deref(), &id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let changed = users::change(
        &a.st,
        &a.org,
        user,
        Change {
            state: Some((state, None)),
            ..Change::default()
        },
        &a.actor(),
    )
    .await;
    let u = match changed {
        Ok(u) => u,
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    let change = json!({"user_id": u.id, "state": state.as_str()});
    if let Some(failed) = a.audit("update_user", change).await {
        return failed;
    }
    Redirect::to(&format!("/admin/users?changed={}", u.id)).into_response()
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct Login<'a> {
    org: &'a str,
    message: Option<String>,
}

#[derive(serde::Deserialize, Default)]
pub struct LoginQuery {
    org: Option<String>,
}

/// `GET /admin/login`: asks for the organization, then sends the person to its login
/// (the IdP when SSO is enforced), which brings them back to the console.
pub async fn login(State(st): State<Shared>, Query(q): Query<LoginQuery>) -> Response {
    let asked = q.org.as_deref().map(str::trim).unwrap_or_default();
    if asked.is_empty() {
        return html(
            StatusCode::OK,
            Login {
                org: "",
                message: None,
            }
            .render(),
        );
    }
    match st.store.org_by_slug(&asked.to_ascii_lowercase()).await {
        Ok(Some(org)) => Redirect::to(&format!("/login/{}?return_to=%2Fadmin%2F", org.slug))
            .into_response(),
        Ok(None) => html(
            StatusCode::NOT_FOUND,
            Login {
                org: asked,
                message: Some(format!(
                    "There is no organization '{}' here. Check the name your administrator gave you.",
                    tessera_core::text::clip(asked)
                )),
            }
            .render(),
        ),
        Err(e) => crate::html::unavailable(e.to_string()),
    }
}

/// `POST /admin/logout`: ends the session and what its logins gave clients.
pub async fn logout(a: OrgAdmin, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    if let Some(refusal) = a.session_form_refusal(&headers, f.csrf.as_deref()) {
        return refusal;
    }
    if let Err(e) = session::end_current(&a.st, &headers).await {
        return crate::html::unavailable(e.to_string());
    }
    let mut res = Redirect::to("/admin/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&a.st, "", 0)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// One step of a decision trace, as shown.
pub struct StepRow {
    pub check: &'static str,
    pub verdict: &'static str,
    pub detail: String,
    pub reason: String,
}

/// An audit event, as shown.
pub struct EventView {
    pub request_id: String,
    pub time: String,
    pub kind: &'static str,
    pub outcome: String,
    pub reason: String,
    pub client: String,
    pub subject: String,
    pub source: String,
    pub description: String,
    pub steps: Vec<StepRow>,
}

fn event_view(e: &AuditEvent) -> EventView {
    EventView {
        request_id: e.request_id.clone(),
        time: rfc3339(e.time_ms / 1000),
        kind: e.kind.as_str(),
        outcome: e.outcome.to_string(),
        reason: e.reason.clone().unwrap_or_default(),
        client: e.client_id.clone().unwrap_or_default(),
        subject: e.subject.clone().unwrap_or_default(),
        source: e.source_ip.clone().unwrap_or_default(),
        description: e.description.clone().unwrap_or_default(),
        steps: e
            .trace
            .steps()
            .iter()
            .map(|s| StepRow {
                check: s.check.as_str(),
                verdict: match s.verdict {
                    tessera_core::trace::Verdict::Pass => "pass",
                    tessera_core::trace::Verdict::Fail => "fail",
                    tessera_core::trace::Verdict::Skip => "skip",
                },
                detail: s.detail.to_string(),
                reason: s.reason.map(|r| r.code().to_string()).unwrap_or_default(),
            })
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct Audit<'a> {
    f: super::Frame<'a>,
    asked: String,
    event: Option<EventView>,
    /// The filters as given (empty: any), and the choices of the selects.
    outcome: String,
    kind: String,
    reason: String,
    client: String,
    outcomes: [&'static str; 4],
    kinds: Vec<&'static str>,
    events: Vec<EventView>,
    /// The query of the next (older) page, when there is one.
    older: Option<String>,
    /// The query of this list, followed live (the page reloads itself every 5 s).
    live_query: String,
    /// The same, not followed.
    stop_query: String,
    live: bool,
}

#[derive(serde::Deserialize, Default)]
pub struct AuditQuery {
    request_id: Option<String>,
    outcome: Option<String>,
    kind: Option<String>,
    reason: Option<String>,
    client_id: Option<String>,
    before: Option<String>,
    live: Option<String>,
}

/// Events per page of the list.
const EVENTS_PER_PAGE: u32 = 50;

/// `GET /admin/audit`: a request id's decision trace with the failing check marked, and
/// the events, filtered by outcome, kind, reason and client, paged back in time, or
/// followed live.
pub async fn audit(a: OrgAdmin, Query(q): Query<AuditQuery>) -> Response {
    let clean = |v: &Option<String>| -> String {
        v.as_deref()
            .unwrap_or_default()
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(128)
            .collect()
    };
    let asked = clean(&q.request_id);
    let event = if asked.is_empty() {
        None
    } else {
        match a.st.store.get_audit_event(a.org.id, &asked).await {
            Ok(e) => e.as_ref().map(event_view),
            Err(e) => return crate::html::unavailable(e.to_string()),
        }
    };
    let (outcome, kind, reason, client) = (
        clean(&q.outcome),
        clean(&q.kind),
        clean(&q.reason),
        clean(&q.client_id),
    );
    let some = |v: &str| (!v.is_empty()).then(|| v.to_string());
    let live = q.live.as_deref() == Some("1");
    let filter = AuditFilter {
        outcome: some(&outcome),
        kind: AuditKind::parse(&kind),
        reason: some(&reason),
        client_id: some(&client),
        // Live, the newest page: the page reloads to show what came since.
        before: if live { None } else { some(&clean(&q.before)) },
        limit: EVENTS_PER_PAGE,
        ..AuditFilter::default()
    };
    let events: Vec<EventView> = match a.st.store.list_audit_events(a.org.id, &filter).await {
        Ok(list) => list.iter().map(event_view).collect(),
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    let query = |extra: &[(&str, &str)]| -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("outcome", outcome.as_str()),
            ("kind", kind.as_str()),
            ("reason", reason.as_str()),
            ("client_id", client.as_str()),
        ]
        .iter()
        .chain(extra)
        {
            if !v.is_empty() {
                ser.append_pair(k, v);
            }
        }
        ser.finish()
    };
    let older = (events.len() == EVENTS_PER_PAGE as usize && !live)
        .then(|| events.last().map(|e| query(&[("before", &e.request_id)])))
        .flatten();
    let status = if event.is_none() && !asked.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    html(
        status,
        Audit {
            f: a.frame("audit", None),
            asked,
            event,
            live_query: query(&[("live", "1")]),
            stop_query: query(&[]),
            outcome,
            kind,
            reason,
            client,
            outcomes: ["granted", "denied", "ok", "login"],
            kinds: AuditKind::ALL.iter().map(|k| k.as_str()).collect(),
            events,
            older,
            live,
        }
        .render(),
    )
}

/// A login grant (the refresh tokens of one login at one client), as shown.
pub struct GrantRow {
    pub id: String,
    pub client: String,
    pub scopes: String,
    pub login: String,
    pub ends: String,
    pub state: String,
}

#[derive(Template)]
#[template(path = "console/user.html")]
struct UserPage<'a> {
    f: super::Frame<'a>,
    u: Row,
    email: String,
    roles: String,
    /// The roles as the roles form takes them, separated by spaces.
    roles_words: String,
    /// The org maps groups to roles: SSO logins that carry groups, and SCIM group
    /// pushes, set roles from that mapping.
    sso_sets_roles: bool,
    provisioning: String,
    grants: Vec<GrantRow>,
}

#[derive(serde::Deserialize, Default)]
pub struct UserQuery {
    /// What an action just did, as a fixed word (`logged_out`, `revoked`).
    done: Option<String>,
}

async fn find_user(a: &OrgAdmin, id: &str) -> Result<User, Response> {
    match a.st.store.get_user(a.org.id, id).await {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(refused(
            StatusCode::NOT_FOUND,
            "No such user",
            "This user does not exist in your organization (any more).",
            ("/admin/users", "Back to users"),
        )),
        Err(e) => Err(crate::html::unavailable(e.to_string())),
    }
}

/// `GET /admin/users/{id}`: the person or service account, and what their logins gave
/// apps.
pub async fn user(a: OrgAdmin, Path(id): Path<String>, Query(q): Query<UserQuery>) -> Response {
    let u = match find_user(&a, &id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let grants = match a.st.store.user_grants(a.org.id, &u.id).await {
        Ok(g) => g,
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    let sso_sets_roles = match a.st.store.sso_config(a.org.id).await {
        Ok(c) => c.is_some_and(|c| !c.group_roles.is_empty()),
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    let now = clock::now();
    let notice = match q.done.as_deref() {
        Some("logged_out") => Some(format!(
            "{} is logged out everywhere: sessions ended, refresh tokens revoked.",
            u.username
        )),
        Some("revoked") => Some("The app's refresh tokens are revoked.".to_string()),
        Some("roles") => Some(format!("{}'s roles are saved.", u.username)),
        _ => None,
    };
    let provisioning = u
        .scim
        .as_ref()
        .map(|l| {
            format!(
                "provisioned by {} since {}{}",
                l.provisioned_by,
                rfc3339(l.provisioned_at),
                l.deleted_at
                    .map(|d| format!(", deleted by SCIM at {}", rfc3339(d)))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    html(
        StatusCode::OK,
        UserPage {
            f: a.frame("users", notice),
            email: u.email.clone().unwrap_or_default(),
            roles: u.roles.join(", "),
            roles_words: u.roles.join(" "),
            sso_sets_roles,
            provisioning,
            grants: grants
                .iter()
                .map(|g| GrantRow {
                    id: g.id.clone(),
                    client: g.client_id.clone(),
                    scopes: g.scopes.join(" "),
                    login: rfc3339(g.auth_time),
                    ends: rfc3339(g.expires_at),
                    state: if g.is_live(now) {
                        "active".into()
                    } else if let Some(r) = &g.revoked_reason {
                        format!("revoked ({r})")
                    } else {
                        "ended".into()
                    },
                })
                .collect(),
            u: row(&u),
        }
        .render(),
    )
}

#[derive(serde::Deserialize)]
pub struct RolesForm {
    csrf: Option<String>,
    roles: Option<String>,
}

/// `POST /admin/users/{id}/roles`: the roles, space-separated, through `users.rs` as
/// the admin API's `PATCH /users/{id}` sets them. An org admin cannot take their own
/// `org_admin` role away (another admin can), so nobody locks the org's last admin out
/// by a slip.
pub async fn set_roles(
    a: OrgAdmin,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<RolesForm>,
) -> Response {
    let u = match posted_user(&a, &headers, f.csrf.as_deref(), &id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let back = format!("/admin/users/{}", u.id);
    let mut roles: Vec<String> = Vec::new();
    for r in f.roles.unwrap_or_default().split_whitespace() {
        if !roles.iter().any(|have| have == r) {
            roles.push(r.to_string());
        }
    }
    if u.id == a.user.id && !roles.iter().any(|r| r == super::ORG_ADMIN_ROLE) {
        return refused(
            StatusCode::CONFLICT,
            "You cannot remove your own org_admin role",
            "Another org admin can, if that is what is wanted.",
            (&back, "Back"),
        );
    }
    let change = Change {
        roles: Some(roles.clone()),
        ..Change::default()
    };
    let u = match users::change(&a.st, &a.org, u, change, &a.actor()).await {
        Ok(u) => u,
        Err(e) => return super::not_done(e, "The roles were not saved", (&back, "Back")),
    };
    let change = json!({"user_id": u.id, "patch": {"roles": roles}});
    if let Some(failed) = a.audit("update_user", change).await {
        return failed;
    }
    Redirect::to(&format!("/admin/users/{}?done=roles", u.id)).into_response()
}

/// A form post about user `id`: the form's checks, then the user.
async fn posted_user(
    a: &OrgAdmin,
    headers: &HeaderMap,
    csrf: Option<&str>,
    id: &str,
) -> Result<User, Response> {
    if let Some(refusal) = a.form_refusal(headers, csrf) {
        return Err(refusal);
    }
    find_user(a, id).await
}

/// `POST /admin/users/{id}/grants/{grant_id}/revoke`: one app's refresh tokens of the
/// person, through the admin API's code.
pub async fn revoke_grant(
    a: OrgAdmin,
    Path((id, grant_id)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let u = match posted_user(&a, &headers, f.csrf.as_deref(), &id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let g = match users::revoke_grant(&a.st, &a.org, &u, &grant_id).await {
        Ok(g) => g,
        Err(e) => {
            let back = format!("/admin/users/{}", u.id);
            return super::not_done(e, "Nothing was changed", (&back, "Back to the user"));
        }
    };
    let change = json!({"user_id": u.id, "grant_id": g.id, "client_id": g.client_id});
    if let Some(failed) = a.audit("revoke_grant", change).await {
        return failed;
    }
    Redirect::to(&format!("/admin/users/{}?done=revoked", u.id)).into_response()
}

/// `POST /admin/users/{id}/logout`: logs the person out everywhere.
pub async fn log_out_everywhere(
    a: OrgAdmin,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let u = match posted_user(&a, &headers, f.csrf.as_deref(), &id).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let n = match users::log_out_everywhere(&a.st, &a.org, &u).await {
        Ok(n) => n,
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    if let Some(failed) = a
        .audit(
            "end_sessions",
            json!({"user_id": u.id, "grants_revoked": n}),
        )
        .await
    {
        return failed;
    }
    Redirect::to(&format!("/admin/users/{}?done=logged_out", u.id)).into_response()
}

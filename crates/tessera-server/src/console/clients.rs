//! The console's clients pages: the org's OAuth clients, one client's settings and
//! secrets (with their last use), rotation with a grace period (the new secret shown
//! once) and revocation, through `clients.rs` as the admin API does.

use askama::Template;
use axum::Form;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use tessera_core::model::{Client, StoredSecret};
use tessera_core::text::rfc3339;

use super::pages::CsrfForm;
use super::{Fields, OrgAdmin, html, refused};
use crate::clients;
use crate::clock;
use crate::error::ApiError;

/// A client as the console shows it.
pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub grants: String,
    pub scopes: String,
    pub runs_as: String,
    pub redirect_uris: String,
    pub allowlist: String,
    pub ttl: i64,
    pub methods: String,
    pub uses_secret: bool,
    pub active_secrets: usize,
    /// The latest use of any of its secrets (RFC 3339, empty when never).
    pub last_used: String,
}

/// A secret as the console shows it: never its value.
pub struct SecretRow {
    pub id: String,
    pub hint: String,
    pub state: &'static str,
    pub created: String,
    pub expires: String,
    pub last_used: String,
    pub last_from: String,
}

fn secret_row(s: &StoredSecret, now: i64) -> SecretRow {
    SecretRow {
        id: s.id.clone(),
        hint: s.hint.clone(),
        state: if s.revoked_at.is_some() {
            "revoked"
        } else if s.expires_at.is_some_and(|e| e < now) {
            "expired"
        } else {
            "active"
        },
        created: rfc3339(s.created_at),
        expires: s.expires_at.map(rfc3339).unwrap_or_default(),
        last_used: s.last_used_at.map(rfc3339).unwrap_or_default(),
        last_from: s.last_used_from.clone().unwrap_or_default(),
    }
}

fn client_row(c: &Client, secrets: &[StoredSecret], now: i64) -> ClientRow {
    let list = |v: Vec<String>| v.join(", ");
    ClientRow {
        id: c.client_id.to_string(),
        name: c.name.clone(),
        state: if c.enabled { "enabled" } else { "disabled" },
        grants: list(
            c.grant_types
                .iter()
                .map(|g| g.as_str().to_string())
                .collect(),
        ),
        scopes: list(c.scopes.iter().map(|s| s.to_string()).collect()),
        runs_as: c.service_account_id.clone().unwrap_or_default(),
        redirect_uris: list(c.redirect_uris.clone()),
        allowlist: list(c.ip_allowlist.to_strings()),
        ttl: c.token_ttl,
        methods: list(
            c.auth_methods
                .iter()
                .map(|m| m.as_str().to_string())
                .collect(),
        ),
        uses_secret: c.auth_methods.iter().any(|m| m.uses_secret()),
        active_secrets: secrets
            .iter()
            .filter(|s| secret_row(s, now).state == "active")
            .count(),
        last_used: secrets
            .iter()
            .filter_map(|s| s.last_used_at)
            .max()
            .map(rfc3339)
            .unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "console/clients.html")]
struct Clients<'a> {
    f: super::Frame<'a>,
    rows: Vec<ClientRow>,
}

/// `GET /admin/clients`.
pub async fn list(a: OrgAdmin) -> Response {
    let now = clock::now();
    let all = match a.st.store.list_clients(a.org.id).await {
        Ok(c) => c,
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    let mut rows = Vec::with_capacity(all.len());
    for c in &all {
        let secrets = match a.st.store.list_secrets(c.client_id.as_str()).await {
            Ok(s) => s,
            Err(e) => return crate::html::unavailable(e.to_string()),
        };
        rows.push(client_row(c, &secrets, now));
    }
    rows.sort_by(|x, y| x.name.cmp(&y.name));
    html(
        StatusCode::OK,
        Clients {
            f: a.frame("clients", None),
            rows,
        }
        .render(),
    )
}

#[derive(Template)]
#[template(path = "console/client.html")]
struct ClientPage<'a> {
    f: super::Frame<'a>,
    c: ClientRow,
    secrets: Vec<SecretRow>,
    /// Each grant type, and whether the client has it.
    grant_choices: Vec<(&'static str, bool)>,
    /// Each scope of the catalogue, and whether the client may get it.
    scope_choices: Vec<(String, bool)>,
    redirect_lines: String,
    allowlist_lines: String,
    /// The settings form's `version` (`super::version_of`).
    version: String,
}

async fn find(a: &OrgAdmin, id: &str) -> Result<Client, Response> {
    match a.st.store.get_client(a.org.id, id).await {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(refused(
            StatusCode::NOT_FOUND,
            "No such client",
            "This client does not exist in your organization (any more).",
            ("/admin/clients", "Back to clients"),
        )),
        Err(e) => Err(crate::html::unavailable(e.to_string())),
    }
}

/// A form post about client `id`: the form's checks, then the client.
async fn posted(
    a: &OrgAdmin,
    headers: &HeaderMap,
    csrf: Option<&str>,
    id: &str,
) -> Result<Client, Response> {
    if let Some(refusal) = a.form_refusal(headers, csrf) {
        return Err(refusal);
    }
    find(a, id).await
}

#[derive(serde::Deserialize, Default)]
pub struct ClientQuery {
    revoked: Option<String>,
    saved: Option<String>,
}

/// `GET /admin/clients/{id}`: settings and secrets.
pub async fn show(
    a: OrgAdmin,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<ClientQuery>,
) -> Response {
    let c = match find(&a, &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let secrets = match a.st.store.list_secrets(c.client_id.as_str()).await {
        Ok(s) => s,
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    let now = clock::now();
    let notice = q
        .revoked
        .and_then(|sid| {
            secrets
                .iter()
                .find(|s| s.id == sid && s.revoked_at.is_some())
                .map(|s| {
                    format!(
                        "Secret …{} is revoked: it works nowhere from now on.",
                        s.hint
                    )
                })
        })
        .or_else(|| q.saved.map(|_| "Settings saved.".to_string()));
    let catalogue = match crate::scopes::list(&a.st, &a.org).await {
        Ok(list) => list,
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    let grant_choices = tessera_core::model::GrantType::ALL
        .iter()
        .map(|g| (g.as_str(), c.grant_types.contains(g)))
        .collect();
    let scope_choices = catalogue
        .into_iter()
        .map(|sc| {
            let has = c.scopes.iter().any(|s| s.as_str() == sc.name);
            (sc.name, has)
        })
        .collect();
    html(
        StatusCode::OK,
        ClientPage {
            f: a.frame("clients", notice),
            c: client_row(&c, &secrets, now),
            secrets: secrets.iter().map(|s| secret_row(s, now)).collect(),
            grant_choices,
            scope_choices,
            redirect_lines: c.redirect_uris.join("\n"),
            allowlist_lines: c.ip_allowlist.to_strings().join("\n"),
            version: super::version_of(&c),
        }
        .render(),
    )
}

#[derive(Template)]
#[template(path = "console/rotated.html")]
struct Rotated<'a> {
    f: super::Frame<'a>,
    name: &'a str,
    client_id: &'a str,
    secret: &'a str,
    previous: Vec<SecretRow>,
}

#[derive(serde::Deserialize)]
pub struct RotateForm {
    csrf: Option<String>,
    grace_seconds: Option<i64>,
}

/// `POST /admin/clients/{id}/rotate`: a new secret, shown on the answer (never in a
/// URL), the others valid for the grace period.
pub async fn rotate(
    a: OrgAdmin,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<RotateForm>,
) -> Response {
    let c = match posted(&a, &headers, f.csrf.as_deref(), &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let grace = f.grace_seconds.unwrap_or(clients::DEFAULT_GRACE);
    let r = match clients::rotate_secret(&a.st, &c, grace).await {
        Ok(r) => r,
        Err(e) => return api_refusal(e, &c),
    };
    let change = json!({"client_id": c.client_id, "secret_id": r.secret.id,
                        "secret_hint": r.secret.hint, "grace_seconds": grace});
    if let Some(failed) = a.audit("rotate_secret", change).await {
        return failed;
    }
    let now = clock::now();
    html(
        StatusCode::OK,
        Rotated {
            f: a.frame("clients", None),
            name: &c.name,
            client_id: c.client_id.as_str(),
            secret: r.value.expose(),
            previous: r.previous.iter().map(|s| secret_row(s, now)).collect(),
        }
        .render(),
    )
}

/// `POST /admin/clients/{id}/secrets/{secret_id}/revoke`.
pub async fn revoke(
    a: OrgAdmin,
    Path((id, secret_id)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let c = match posted(&a, &headers, f.csrf.as_deref(), &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(e) = clients::revoke_secret(&a.st, &c, &secret_id).await {
        return api_refusal(e, &c);
    }
    let change = json!({"client_id": c.client_id, "secret_id": secret_id});
    if let Some(failed) = a.audit("revoke_secret", change).await {
        return failed;
    }
    Redirect::to(&format!(
        "/admin/clients/{}?revoked={}",
        c.client_id,
        form_urlencoded::byte_serialize(secret_id.as_bytes()).collect::<String>()
    ))
    .into_response()
}

/// A refusal of the shared client code, as a console page.
fn api_refusal(e: ApiError, c: &Client) -> Response {
    let back = format!("/admin/clients/{}", c.client_id);
    super::not_done(e, "Nothing was changed", (&back, "Back to the client"))
}

#[derive(Template)]
#[template(path = "console/client_new.html")]
struct NewClient<'a> {
    f: super::Frame<'a>,
    /// (wire name, label) of each grant type.
    grants: Vec<(&'static str, &'static str)>,
    scopes: Vec<String>,
    /// (id, username) of the org's service accounts.
    accounts: Vec<(String, String)>,
}

/// `GET /admin/clients/new`: the form.
pub async fn new_form(a: OrgAdmin) -> Response {
    if !a.can_change {
        return Redirect::to("/admin/clients").into_response();
    }
    let (scopes, users) = match (
        crate::scopes::list(&a.st, &a.org).await,
        a.st.store.list_users(a.org.id).await,
    ) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) => return crate::html::unavailable(e.to_string()),
        (_, Err(e)) => return crate::html::unavailable(e.to_string()),
    };
    let mut accounts: Vec<(String, String)> = users
        .into_iter()
        .filter(|u| u.user_type == tessera_core::model::UserType::Service)
        .map(|u| (u.id, u.username))
        .collect();
    accounts.sort_by(|x, y| x.1.cmp(&y.1));
    html(
        StatusCode::OK,
        NewClient {
            f: a.frame("clients", None),
            grants: vec![
                (
                    "client_credentials",
                    "client_credentials: a service acting as itself",
                ),
                (
                    "authorization_code",
                    "authorization_code: people log in to an app",
                ),
                ("refresh_token", "refresh_token: the app keeps the login"),
                (
                    "password",
                    "password: a legacy app sends people's passwords",
                ),
                (
                    "urn:ietf:params:oauth:grant-type:saml2-bearer",
                    "SAML 2.0 bearer: a backend acting for a person with their IdP's assertion",
                ),
            ],
            scopes: scopes.into_iter().map(|s| s.name).collect(),
            accounts,
        }
        .render(),
    )
}

#[derive(Template)]
#[template(path = "console/client_created.html")]
struct Created<'a> {
    f: super::Frame<'a>,
    name: &'a str,
    client_id: &'a str,
    secret: Option<&'a str>,
}

/// `POST /admin/clients`: creates a client by the admin API's rules
/// (`admin::clients::create_client`), its secret shown once on the answer.
pub async fn create(
    a: OrgAdmin,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let form = Fields(fields);
    if let Some(refusal) = a.form_refusal(&headers, form.one("csrf").as_deref()) {
        return refusal;
    }
    let public = form.ticked("public");
    let Ok(ttl) = form.number("ttl") else {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The client was not created",
            "access token lifetime: a whole number of seconds",
            ("/admin/clients/new", "Back to the form"),
        );
    };
    let body = tessera_api::CreateClient {
        client_id: None,
        name: form.one("name").unwrap_or_default(),
        grant_types: Some(form.all("grant")),
        scopes: form.all("scope"),
        ip_allowlist: form.lines("ip_allowlist"),
        service_account_id: form.one("service_account"),
        redirect_uris: form.lines("redirect_uris"),
        token_endpoint_auth_methods: public.then(|| vec!["none".to_string()]),
        access_token_ttl: ttl,
        pkce_required: None,
        refresh_token_ttl: None,
        refresh_token_idle_ttl: None,
        jwks: None,
        jwks_uri: None,
        post_logout_redirect_uris: vec![],
    };
    let ctx = a.ctx();
    let (client, secret, generated) = match crate::admin::clients::create_client(&ctx, &body).await
    {
        Ok(c) => c,
        Err(e) => {
            return super::not_done(
                e,
                "The client was not created",
                ("/admin/clients/new", "Back to the form"),
            );
        }
    };
    let change = json!({
        "client_id": client.client_id,
        "secret_id": secret.as_ref().map(|s| &s.id),
        "secret_hint": secret.as_ref().map(|s| &s.hint),
    });
    if let Some(failed) = a.audit("create_client", change).await {
        return failed;
    }
    html(
        StatusCode::CREATED,
        Created {
            f: a.frame("clients", None),
            name: &client.name,
            client_id: client.client_id.as_str(),
            secret: generated.as_ref().map(|g| g.value.expose()),
        }
        .render(),
    )
}

/// `POST /admin/clients/{id}/settings`: the settings form, applied by the admin API's
/// rules (`admin::clients::update_client`), audited as `update_client`.
pub async fn save_settings(
    a: OrgAdmin,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let form = Fields(fields);
    let c = match posted(&a, &headers, form.one("csrf").as_deref(), &id).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let back = format!("/admin/clients/{}", c.client_id);
    if form.one("version") != Some(super::version_of(&c)) {
        return super::stale("The client", (&back, "Back to the client"));
    }
    let Ok(ttl) = form.number("ttl") else {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The settings were not saved",
            "access token lifetime: a whole number of seconds",
            (&back, "Back to the client"),
        );
    };
    let patch = tessera_api::PatchClient {
        enabled: Some(form.ticked("enabled")),
        grant_types: Some(form.all("grant")),
        scopes: Some(form.all("scope")),
        ip_allowlist: Some(form.lines("ip_allowlist")),
        redirect_uris: Some(form.lines("redirect_uris")),
        access_token_ttl: ttl,
        ..Default::default()
    };
    let ctx = a.ctx();
    let updated =
        crate::admin::clients::update_client(&ctx, c.client_id.as_str(), &patch, None).await;
    let c = match updated {
        Ok(c) => c,
        Err(e) => {
            return super::not_done(
                e,
                "The settings were not saved",
                (&back, "Back to the client"),
            );
        }
    };
    let change = json!({"client_id": c.client_id, "patch": serde_json::to_value(&patch).unwrap_or_default()});
    if let Some(failed) = a.audit("update_client", change).await {
        return failed;
    }
    Redirect::to(&format!("/admin/clients/{}?saved=1", c.client_id)).into_response()
}

//! `/api/v2/oauth/clients`: OAuth clients and their secrets.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use serde_json::json;
use tessera_api::{
    ClientList, ClientView, CreateClient, PatchClient, RotateSecret, RotatedSecret, SecretList,
    SecretView,
};
use tessera_core::model::{
    AuthMethod, Client, ClientId, GrantType, IpAllowList, ScopeName, StoredSecret, UserType,
};
use tessera_core::secret::{generate_client_secret, random_id};
use tessera_core::store::StoreError;
use tessera_core::text::{clip, rfc3339};

use super::{Admin, ApiJson, OptionalJson, OrgCtx, printable, time_opt};
use crate::error::ApiError;
use crate::{clients, clock};

fn secret_view(s: &StoredSecret, now: i64) -> SecretView {
    SecretView {
        id: s.id.clone(),
        hint: s.hint.clone(),
        active: s.is_active(now),
        created_at: rfc3339(s.created_at),
        expires_at: time_opt(s.expires_at),
        revoked_at: time_opt(s.revoked_at),
        last_used_at: time_opt(s.last_used_at),
        last_used_from: s.last_used_from.clone(),
    }
}

fn view(admin: &OrgCtx<'_>, c: &Client, secrets: &[StoredSecret]) -> ClientView {
    let now = clock::now();
    ClientView {
        client_id: c.client_id.to_string(),
        org: admin.org.slug.to_string(),
        name: c.name.clone(),
        enabled: c.enabled,
        grant_types: c
            .grant_types
            .iter()
            .map(|g| g.as_str().to_string())
            .collect(),
        scopes: c.scopes.iter().map(|s| s.to_string()).collect(),
        redirect_uris: c.redirect_uris.clone(),
        token_endpoint_auth_methods: c
            .auth_methods
            .iter()
            .map(|m| m.as_str().to_string())
            .collect(),
        ip_allowlist: c.ip_allowlist.to_strings(),
        service_account_id: c.service_account_id.clone(),
        access_token_ttl: c.token_ttl,
        pkce_required: c.interactive.pkce_required,
        refresh_token_ttl: c.interactive.refresh_token_ttl,
        refresh_token_idle_ttl: c.interactive.refresh_idle_ttl,
        jwks: c.jwks.clone(),
        jwks_uri: c.jwks_uri.clone(),
        post_logout_redirect_uris: c.interactive.post_logout_redirect_uris.clone(),
        created_at: rfc3339(c.created_at),
        secrets: secrets.iter().map(|s| secret_view(s, now)).collect(),
        client_secret: None,
    }
}

fn parse_grants(v: &[String]) -> Result<Vec<GrantType>, ApiError> {
    let mut out = vec![];
    for (i, g) in v.iter().enumerate() {
        let g: GrantType = g.parse().map_err(|e: tessera_core::model::ParseError| {
            ApiError::field(
                format!("grant_types[{i}]"),
                format!(
                    "{}; known: {}",
                    e.0,
                    GrantType::ALL.map(GrantType::as_str).join(", ")
                ),
            )
        })?;
        if !out.contains(&g) {
            out.push(g);
        }
    }
    Ok(out)
}

fn parse_methods(v: &[String]) -> Result<Vec<AuthMethod>, ApiError> {
    let mut out = vec![];
    for (i, m) in v.iter().enumerate() {
        let m: AuthMethod = m.parse().map_err(|e: tessera_core::model::ParseError| {
            ApiError::field(format!("token_endpoint_auth_methods[{i}]"), e.0)
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err(ApiError::field(
            "token_endpoint_auth_methods",
            "at least one method",
        ));
    }
    if out.contains(&AuthMethod::None) && out.len() > 1 {
        return Err(ApiError::field(
            "token_endpoint_auth_methods",
            "'none' makes a public client, which has no secret: it cannot be combined with a secret method",
        ));
    }
    Ok(out)
}

/// The rules that tie a client's settings together, checked after every change: a
/// public client takes part only in a person's login, always with PKCE; the code flow
/// needs a redirect URI.
fn check_consistent(c: &Client) -> Result<(), ApiError> {
    if c.is_public() {
        if let Some(g) = c.grant_types.iter().find(|g| !g.is_interactive()) {
            return Err(ApiError::field(
                "grant_types",
                format!(
                    "a public client (token_endpoint_auth_methods [\"none\"]) can only use authorization_code and refresh_token, not {g}: it has no secret to prove who it is"
                ),
            ));
        }
        if !c.interactive.pkce_required {
            return Err(ApiError::field(
                "pkce_required",
                "a public client always uses PKCE (RFC 9700 §2.1.1)",
            ));
        }
    }
    if c.auth_methods.contains(&AuthMethod::PrivateKeyJwt)
        && c.jwks.is_none()
        && c.jwks_uri.is_none()
    {
        return Err(ApiError::field(
            "jwks",
            "private_key_jwt needs the client's public keys: a JWK Set ({\"keys\": [...]}) in jwks, or the URL that publishes it in jwks_uri",
        ));
    }
    if c.grant_types.contains(&GrantType::AuthorizationCode) && c.redirect_uris.is_empty() {
        return Err(ApiError::field(
            "redirect_uris",
            "the authorization_code grant needs at least one redirect URI",
        ));
    }
    Ok(())
}

fn check_refresh_ttl(field: &str, t: i64) -> Result<i64, ApiError> {
    if (300..=31_536_000).contains(&t) {
        Ok(t)
    } else {
        Err(ApiError::field(field, "between 300 and 31536000 seconds"))
    }
}

/// Applies the interactive-login fields of a create or patch.
fn apply_interactive(
    c: &mut Client,
    pkce: Option<bool>,
    ttl: Option<i64>,
    idle: Option<i64>,
) -> Result<(), ApiError> {
    if let Some(p) = pkce {
        c.interactive.pkce_required = p;
    }
    if let Some(t) = ttl {
        c.interactive.refresh_token_ttl = check_refresh_ttl("refresh_token_ttl", t)?;
    }
    if let Some(t) = idle {
        c.interactive.refresh_idle_ttl = check_refresh_ttl("refresh_token_idle_ttl", t)?;
    }
    Ok(())
}

/// A JWK Set to keep: parsed as the decision will parse it, and kept as sent.
fn check_jwks(v: &serde_json::Value) -> Result<serde_json::Value, ApiError> {
    if v.to_string().len() > 32 * 1024 {
        return Err(ApiError::field("jwks", "at most 32 KiB"));
    }
    tessera_core::client_keys::ClientKey::parse_set(v).map_err(|e| ApiError::field("jwks", e))?;
    Ok(v.clone())
}

/// A `jwks_uri` to keep: a URL the server may fetch under its `[jwks_fetch]` policy.
fn check_jwks_uri(admin: &OrgCtx<'_>, u: &str) -> Result<String, ApiError> {
    admin
        .st
        .jwks
        .fence()
        .check_url(u)
        .map_err(|e| ApiError::field("jwks_uri", e))?;
    Ok(u.to_string())
}

fn both_key_sources() -> ApiError {
    ApiError::field(
        "jwks_uri",
        "give the client's keys either inline (jwks) or by URL (jwks_uri), not both (OIDC Dynamic Client Registration §2)",
    )
}

/// Whether the client authenticates with a secret at all (else it gets none).
fn uses_secret(c: &Client) -> bool {
    c.auth_methods.iter().any(|m| m.uses_secret())
}

async fn parse_scopes(admin: &OrgCtx<'_>, v: &[String]) -> Result<Vec<ScopeName>, ApiError> {
    let known = admin.st.store.list_scopes(admin.org.id).await?;
    let mut out = vec![];
    for (i, s) in v.iter().enumerate() {
        let name = ScopeName::parse(s).map_err(|e| ApiError::field(format!("scopes[{i}]"), e.0))?;
        if !known.iter().any(|k| k.name == name)
            && !tessera_core::interactive::is_oidc_scope(name.as_str())
        {
            return Err(ApiError::field(
                format!("scopes[{i}]"),
                format!(
                    "scope '{name}' is not in org '{}''s catalogue; create it first with POST /api/v2/scopes",
                    admin.org.slug
                ),
            ));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(out)
}

fn parse_allowlist(v: &[String]) -> Result<IpAllowList, ApiError> {
    IpAllowList::parse(v).map_err(|e| ApiError::field("ip_allowlist", e.0))
}

fn check_redirects(v: &[String]) -> Result<(), ApiError> {
    check_redirects_named("redirect_uris", v)
}

/// The authority of a URL after its scheme: up to the first `/`, `?` or `#`.
fn authority(rest: &str) -> &str {
    rest.split(['/', '?', '#']).next().unwrap_or("")
}

/// `http://` only to this machine (RFC 8252 §7.3): the host must be exactly `localhost`,
/// `127.0.0.1` or `[::1]`, with an optional port; `http://localhost.evil.example` is not.
fn is_loopback_http(u: &str) -> bool {
    let Some(rest) = u.strip_prefix("http://") else {
        return false;
    };
    let auth = authority(rest);
    let host = match auth.strip_prefix("[::1]") {
        Some(port) => return port.is_empty() || valid_port(port),
        None => auth.split_once(':').map(|(h, _)| h).unwrap_or(auth),
    };
    let port = &auth[host.len()..];
    matches!(host, "localhost" | "127.0.0.1") && (port.is_empty() || valid_port(port))
}

fn valid_port(p: &str) -> bool {
    p.strip_prefix(':')
        .is_some_and(|d| !d.is_empty() && d.len() <= 5 && d.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::is_loopback_http;

    #[test]
    fn loopback_http_is_exactly_this_machine() {
        for ok in [
            "http://localhost/cb",
            "http://localhost:8765/cb",
            "http://127.0.0.1:9/callback",
            "http://[::1]:8080/",
            "http://127.0.0.1",
        ] {
            assert!(is_loopback_http(ok), "{ok}");
        }
        for bad in [
            "http://localhost.evil.example/cb",
            "http://127.0.0.1.evil.example/",
            "http://localhost@evil.example/",
            "http://[::1].evil/",
            "http://127.0.0.1:80x/",
            "https://localhost/cb",
        ] {
            assert!(!is_loopback_http(bad), "{bad}");
        }
    }
}

fn check_redirects_named(field: &str, v: &[String]) -> Result<(), ApiError> {
    for (i, u) in v.iter().enumerate() {
        printable(format!("{field}[{i}]"), u)?;
        let https = u
            .strip_prefix("https://")
            .is_some_and(|rest| !authority(rest).is_empty());
        if !(https || is_loopback_http(u)) || u.contains('#') || u.len() > 2000 {
            return Err(ApiError::field(
                format!("{field}[{i}]"),
                "an absolute https URL (http only for localhost) without a fragment (RFC 9700 §4.1)",
            ));
        }
    }
    Ok(())
}

fn check_ttl(t: i64) -> Result<i64, ApiError> {
    if (60..=86_400).contains(&t) {
        Ok(t)
    } else {
        Err(ApiError::field(
            "access_token_ttl",
            "between 60 and 86400 seconds",
        ))
    }
}

fn check_name(n: &str) -> Result<(), ApiError> {
    if n.trim().is_empty() || n.chars().count() > 200 {
        return Err(ApiError::field("name", "1 to 200 characters"));
    }
    printable("name", n)
}

async fn check_service_account(admin: &OrgCtx<'_>, id: &str) -> Result<(), ApiError> {
    match admin.st.store.get_user(admin.org.id, id).await? {
        Some(u) if u.user_type == UserType::Service => Ok(()),
        Some(_) => Err(ApiError::field(
            "service_account_id",
            format!("user {id} is a human; a client can only run as a service account"),
        )),
        None => Err(ApiError::field(
            "service_account_id",
            format!("no service account {id} in org '{}'", admin.org.slug),
        )),
    }
}

/// The answer to a caller-chosen `client_id` that is already taken.
///
/// Client ids are one namespace for every org (the token endpoint finds a client by its
/// id alone), so an id another org holds cannot be handed out, and refusing it cannot
/// help telling the caller that the id is in use somewhere: no wording hides that. What
/// the answer must not add is confirmation of anything beyond it: the store's "a client
/// with client_id '…' already exists", which org holds it, or anything about that
/// client. So a client of the caller's own org is named as its own (the caller can read
/// it anyway), and any other taken id gets one neutral 409, "not available", that says
/// nothing about a holder. Generated ids (`cli_` and 128 random bits) never meet this.
async fn taken(admin: &OrgCtx<'_>, client_id: &ClientId) -> ApiError {
    match admin
        .st
        .store
        .get_client(admin.org.id, client_id.as_str())
        .await
    {
        Ok(Some(_)) => ApiError::Conflict(format!(
            "client '{client_id}' already exists in org '{}'",
            admin.org.slug
        )),
        Ok(None) => ApiError::Conflict(format!(
            "client_id '{client_id}' is not available; choose another, or leave client_id out to get a generated one"
        )),
        Err(e) => e.into(),
    }
}

async fn find(admin: &OrgCtx<'_>, client_id: &str) -> Result<Client, ApiError> {
    admin
        .st
        .store
        .get_client(admin.org.id, client_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no client '{}' in org '{}'",
                clip(client_id),
                admin.org.slug
            ))
        })
}

/// `GET /api/v2/oauth/clients`.
#[utoipa::path(get, path = "/api/v2/oauth/clients", operation_id = "listClients", tag = "clients", responses((status = 200, body = tessera_api::ClientList), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn list(admin: Admin) -> Result<Json<ClientList>, ApiError> {
    let clients = admin.st.store.list_clients(admin.org.id).await?;
    let mut items = Vec::with_capacity(clients.len());
    for c in &clients {
        let secrets = admin.st.store.list_secrets(c.client_id.as_str()).await?;
        items.push(view(&admin.ctx(), c, &secrets));
    }
    Ok(Json(ClientList { items }))
}

/// `GET /api/v2/oauth/clients/{client_id}`.
#[utoipa::path(get, path = "/api/v2/oauth/clients/{client_id}", operation_id = "getClient", tag = "clients", params(("client_id" = String, Path)), responses((status = 200, body = tessera_api::ClientView), (status = 404, body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn show(
    admin: Admin,
    Path(client_id): Path<String>,
) -> Result<Json<ClientView>, ApiError> {
    let c = find(&admin.ctx(), &client_id).await?;
    let secrets = admin.st.store.list_secrets(c.client_id.as_str()).await?;
    Ok(Json(view(&admin.ctx(), &c, &secrets)))
}

/// `POST /api/v2/oauth/clients`: creates a client and its first secret, shown once.
#[utoipa::path(post, path = "/api/v2/oauth/clients", operation_id = "createClient", tag = "clients", request_body = tessera_api::CreateClient, responses((status = 201, description = "the client, with its client_secret shown once", body = tessera_api::ClientView), (status = 409, description = "the chosen client_id is taken: by a client of this org (named as such), or not available", body = tessera_api::ApiErrorBody), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "a field is invalid; `field` names it", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn create(
    admin: Admin,
    ApiJson(body): ApiJson<CreateClient>,
) -> Result<(StatusCode, Json<ClientView>), ApiError> {
    let ctx = admin.ctx();
    let (client, secret, generated) = create_client(&ctx, &body).await?;
    admin
        .audit(
            "create_client",
            json!({
                "client_id": client.client_id,
                "secret_id": secret.as_ref().map(|s| &s.id),
                "secret_hint": secret.as_ref().map(|s| &s.hint),
            }),
        )
        .await?;
    let mut v = view(&ctx, &client, secret.as_slice());
    v.client_secret = generated.map(|g| g.value.expose().to_string());
    Ok((StatusCode::CREATED, Json(v)))
}

/// Creates the client `body` describes, by the admin API's rules (the console's form
/// comes here too), with its first secret unless it authenticates without one.
/// Returns the client, its stored secret and the secret's value (shown once). The
/// caller audits.
pub(crate) async fn create_client(
    admin: &OrgCtx<'_>,
    body: &CreateClient,
) -> Result<
    (
        Client,
        Option<StoredSecret>,
        Option<tessera_core::secret::GeneratedSecret>,
    ),
    ApiError,
> {
    let client_id = match &body.client_id {
        Some(id) => ClientId::parse(id).map_err(|e| ApiError::field("client_id", e.0))?,
        None => ClientId::parse(&random_id("cli_")).expect("generated ids are valid"),
    };
    check_name(&body.name)?;
    let grant_types = match &body.grant_types {
        Some(g) => parse_grants(g)?,
        None => vec![GrantType::ClientCredentials],
    };
    let scopes = parse_scopes(admin, &body.scopes).await?;
    let ip_allowlist = parse_allowlist(&body.ip_allowlist)?;
    check_redirects(&body.redirect_uris)?;
    let auth_methods = match &body.token_endpoint_auth_methods {
        Some(m) => parse_methods(m)?,
        None => vec![AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost],
    };
    if let Some(sa) = &body.service_account_id {
        check_service_account(admin, sa).await?;
    }
    let now = clock::now();
    let mut client = Client {
        client_id: client_id.clone(),
        org_id: admin.org.id,
        name: body.name.clone(),
        enabled: true,
        grant_types,
        scopes,
        redirect_uris: body.redirect_uris.clone(),
        auth_methods,
        ip_allowlist,
        service_account_id: body.service_account_id.clone(),
        token_ttl: check_ttl(body.access_token_ttl.unwrap_or(3600))?,
        interactive: Default::default(),
        jwks: None,
        jwks_uri: None,
        created_at: now,
    };
    apply_interactive(
        &mut client,
        body.pkce_required,
        body.refresh_token_ttl,
        body.refresh_token_idle_ttl,
    )?;
    if body.jwks.is_some() && body.jwks_uri.is_some() {
        return Err(both_key_sources());
    }
    if let Some(j) = &body.jwks {
        client.jwks = Some(check_jwks(j)?);
    }
    if let Some(u) = &body.jwks_uri {
        client.jwks_uri = Some(check_jwks_uri(admin, u)?);
    }
    check_redirects_named("post_logout_redirect_uris", &body.post_logout_redirect_uris)?;
    client.interactive.post_logout_redirect_uris = body.post_logout_redirect_uris.clone();
    check_consistent(&client)?;
    // A public client gets no secret (it has nowhere to keep one), nor does one that
    // authenticates with its keys only.
    let generated = uses_secret(&client).then(generate_client_secret);
    let secret = generated.as_ref().map(|g| StoredSecret {
        id: random_id("sec_"),
        client_id,
        hash: g.hash,
        hint: g.hint.clone(),
        created_at: now,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        last_used_from: None,
    });
    match admin.st.store.create_client(&client, secret.as_ref()).await {
        Err(StoreError::Conflict(_)) => return Err(taken(admin, &client.client_id).await),
        other => other?,
    }
    Ok((client, secret, generated))
}

/// `PATCH /api/v2/oauth/clients/{client_id}`.
#[utoipa::path(patch, path = "/api/v2/oauth/clients/{client_id}", operation_id = "updateClient", tag = "clients", params(("client_id" = String, Path)), request_body = tessera_api::PatchClient, responses((status = 200, body = tessera_api::ClientView), (status = 404, body = tessera_api::ApiErrorBody), (status = 409, body = tessera_api::ApiErrorBody), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "a field is invalid; `field` names it", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn update(
    admin: Admin,
    Path(client_id): Path<String>,
    ApiJson(patch): ApiJson<PatchClient>,
) -> Result<Json<ClientView>, ApiError> {
    let ctx = admin.ctx();
    let c = update_client(&ctx, &client_id, &patch, Some(&admin.client_id)).await?;
    admin
        .audit(
            "update_client",
            json!({ "client_id": c.client_id, "patch": serde_json::to_value(&patch).unwrap_or_default() }),
        )
        .await?;
    let secrets = admin.st.store.list_secrets(c.client_id.as_str()).await?;
    Ok(Json(view(&ctx, &c, &secrets)))
}

/// Applies `patch` to client `client_id` by the admin API's rules (the console's form
/// comes here too); a client disabled loses what its logins gave it. `caller` is the
/// admin API's own client, when it is the one asking: it may not lock itself out. The
/// caller audits.
pub(crate) async fn update_client(
    admin: &OrgCtx<'_>,
    client_id: &str,
    patch: &PatchClient,
    caller: Option<&str>,
) -> Result<Client, ApiError> {
    let is_caller = |c: &Client| caller == Some(c.client_id.as_str());
    let mut c = find(admin, client_id).await?;
    if let Some(n) = &patch.name {
        check_name(n)?;
        c.name = n.clone();
    }
    if let Some(e) = patch.enabled {
        if !e && is_caller(&c) {
            return Err(ApiError::Conflict(format!(
                "client '{}' makes this request; disabling it would lock you out",
                c.client_id
            )));
        }
        c.enabled = e;
    }
    if let Some(g) = &patch.grant_types {
        c.grant_types = parse_grants(g)?;
    }
    if let Some(s) = &patch.scopes {
        c.scopes = parse_scopes(admin, s).await?;
        // Admin tokens carry only the rights their client still has (`current_rights`).
        if is_caller(&c)
            && !c
                .scopes
                .iter()
                .any(|s| s.as_str() == tessera_api::ADMIN_SCOPE)
        {
            return Err(ApiError::Conflict(format!(
                "client '{}' makes this request; removing '{}' from it would lock you out",
                c.client_id,
                tessera_api::ADMIN_SCOPE
            )));
        }
    }
    if let Some(l) = &patch.ip_allowlist {
        c.ip_allowlist = parse_allowlist(l)?;
    }
    if let Some(sa) = &patch.service_account_id {
        if let Some(id) = sa {
            check_service_account(admin, id).await?;
        }
        if is_caller(&c) && *sa != c.service_account_id {
            return Err(ApiError::Conflict(format!(
                "client '{}' makes this request; its token is bound to the service account it runs as now, so changing it would lock you out",
                c.client_id
            )));
        }
        c.service_account_id = sa.clone();
    }
    if let Some(r) = &patch.redirect_uris {
        check_redirects(r)?;
        c.redirect_uris = r.clone();
    }
    if let Some(m) = &patch.token_endpoint_auth_methods {
        c.auth_methods = parse_methods(m)?;
    }
    if let Some(t) = patch.access_token_ttl {
        c.token_ttl = check_ttl(t)?;
    }
    apply_interactive(
        &mut c,
        patch.pkce_required,
        patch.refresh_token_ttl,
        patch.refresh_token_idle_ttl,
    )?;
    // The keys come from one place: setting one source drops the other.
    match (&patch.jwks, &patch.jwks_uri) {
        (Some(_), Some(Some(_))) => return Err(both_key_sources()),
        (Some(j), _) => {
            c.jwks = Some(check_jwks(j)?);
            c.jwks_uri = None;
        }
        (None, Some(Some(u))) => {
            c.jwks_uri = Some(check_jwks_uri(admin, u)?);
            c.jwks = None;
        }
        (None, Some(None)) => c.jwks_uri = None,
        (None, None) => {}
    }
    if let Some(u) = &patch.post_logout_redirect_uris {
        check_redirects_named("post_logout_redirect_uris", u)?;
        c.interactive.post_logout_redirect_uris = u.clone();
    }
    check_consistent(&c)?;
    let was_enabled = find(admin, client_id).await?.enabled;
    admin.st.store.update_client(&c).await?;
    // A client disabled loses what its logins gave it (RFC 7009 §2.1 spirit: nothing
    // it holds keeps working).
    if was_enabled && !c.enabled {
        admin
            .st
            .store
            .revoke_client_grants(c.client_id.as_str(), "client_disabled", clock::now())
            .await?;
    }
    Ok(c)
}

/// `DELETE /api/v2/oauth/clients/{client_id}`.
#[utoipa::path(delete, path = "/api/v2/oauth/clients/{client_id}", operation_id = "deleteClient", tag = "clients", params(("client_id" = String, Path)), responses((status = 204, description = "deleted"), (status = 404, body = tessera_api::ApiErrorBody), (status = 409, body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn delete(admin: Admin, Path(client_id): Path<String>) -> Result<StatusCode, ApiError> {
    if client_id == admin.client_id {
        return Err(ApiError::Conflict(format!(
            "client '{client_id}' makes this request; deleting it would lock you out"
        )));
    }
    if !admin
        .st
        .store
        .delete_client(admin.org.id, &client_id)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "no client '{}' in org '{}'",
            clip(&client_id),
            admin.org.slug
        )));
    }
    admin
        .st
        .store
        .revoke_client_grants(&client_id, "client_deleted", clock::now())
        .await?;
    admin
        .audit("delete_client", json!({ "client_id": client_id }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v2/oauth/clients/{client_id}/secrets`: metadata and last use of each secret.
#[utoipa::path(get, path = "/api/v2/oauth/clients/{client_id}/secrets", operation_id = "listClientSecrets", tag = "secrets", params(("client_id" = String, Path)), responses((status = 200, body = tessera_api::SecretList), (status = 404, body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn list_secrets(
    admin: Admin,
    Path(client_id): Path<String>,
) -> Result<Json<SecretList>, ApiError> {
    let c = find(&admin.ctx(), &client_id).await?;
    let now = clock::now();
    let secrets = admin.st.store.list_secrets(c.client_id.as_str()).await?;
    Ok(Json(SecretList {
        items: secrets.iter().map(|s| secret_view(s, now)).collect(),
    }))
}

/// `POST /api/v2/oauth/clients/{client_id}/secrets`: a new secret (shown once); the
/// previous one keeps working for `grace_seconds`.
#[utoipa::path(post, path = "/api/v2/oauth/clients/{client_id}/secrets", operation_id = "rotateClientSecret", tag = "secrets", params(("client_id" = String, Path)), request_body(content = Option<tessera_api::RotateSecret>, description = "optional; default grace 3600 s"), responses((status = 201, body = tessera_api::RotatedSecret), (status = 404, body = tessera_api::ApiErrorBody), (status = 409, description = "two secrets are already active", body = tessera_api::ApiErrorBody), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "a field is invalid; `field` names it", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn rotate_secret(
    admin: Admin,
    Path(client_id): Path<String>,
    OptionalJson(body): OptionalJson<RotateSecret>,
) -> Result<(StatusCode, Json<RotatedSecret>), ApiError> {
    let c = find(&admin.ctx(), &client_id).await?;
    let grace = body
        .and_then(|b| b.grace_seconds)
        .unwrap_or(clients::DEFAULT_GRACE);
    let r = clients::rotate_secret(&admin.st, &c, grace).await?;
    let now = clock::now();
    admin
        .audit(
            "rotate_secret",
            json!({ "client_id": c.client_id, "secret_id": r.secret.id, "secret_hint": r.secret.hint, "grace_seconds": grace }),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(RotatedSecret {
            id: r.secret.id,
            client_secret: r.value.expose().to_string(),
            hint: r.secret.hint,
            created_at: rfc3339(r.secret.created_at),
            expires_at: None,
            previous: r.previous.iter().map(|s| secret_view(s, now)).collect(),
        }),
    ))
}

/// `DELETE /api/v2/oauth/clients/{client_id}/secrets/{secret_id}`: revokes at once.
#[utoipa::path(delete, path = "/api/v2/oauth/clients/{client_id}/secrets/{secret_id}", operation_id = "revokeClientSecret", tag = "secrets", params(("client_id" = String, Path), ("secret_id" = String, Path)), responses((status = 204, description = "revoked"), (status = 404, body = tessera_api::ApiErrorBody), (status = 409, description = "the secret is the one this request's token was issued for", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn revoke_secret(
    admin: Admin,
    Path((client_id, secret_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let c = find(&admin.ctx(), &client_id).await?;
    if c.client_id.as_str() == admin.client_id && admin.secret_id.as_deref() == Some(&secret_id) {
        return Err(ApiError::Conflict(format!(
            "secret {} is the one this request's token was issued for; revoking it would lock you out (get a token with the client's other secret first)",
            clip(&secret_id)
        )));
    }
    clients::revoke_secret(&admin.st, &c, &secret_id).await?;
    admin
        .audit(
            "revoke_secret",
            json!({ "client_id": c.client_id, "secret_id": secret_id }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

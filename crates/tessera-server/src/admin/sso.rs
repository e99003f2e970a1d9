//! `/api/v2/sso/saml`: the org's SAML configuration, the enforcement-impact preview, and
//! switching enforcement on (only after acknowledging that preview) or off; and
//! `/api/v2/saml/encryption-keys`: the SP encryption keys every org shares.

use axum::Json;
use serde_json::json;
use tessera_api::{
    AffectedHumanView, BreakGlassUserView, CertificateView, DeprovisionedView,
    EnforcementImpactView, PasswordGrantClientView, PatchSsoConfig, ProvisioningSummaryView,
    PutSsoConfig, SamlBinding, SamlEncryptionKeyList, SamlEncryptionKeyView, SsoConfigView,
};
use tessera_core::model::{Org, UserType};
use tessera_core::sso::{self, EnforcementImpact, SsoBinding, SsoConfig};
use tessera_core::text::{clip, rfc3339, shown};

use super::OrgCtx;
use super::{Admin, ApiJson, printable, time_opt};
use crate::clock;
use crate::enforcement::{self, Ack};
use crate::error::ApiError;

fn cert_view(i: &tessera_saml::certs::CertInfo, now: i64) -> CertificateView {
    CertificateView {
        subject: i.subject.clone(),
        not_before: rfc3339(i.not_before),
        not_after: rfc3339(i.not_after),
        key: i.key.clone(),
        expired: i.not_after <= now,
        note: i.note.clone(),
    }
}

pub(crate) fn view(st: &crate::state::AppState, org: &Org, c: &SsoConfig) -> SsoConfigView {
    let base = format!("{}/saml/{}", st.issuer, org.slug);
    let now = clock::now();
    SsoConfigView {
        org: org.slug.to_string(),
        enforced: org.sso_enforced,
        configured: c.has_idp(),
        idp_entity_id: c.idp_entity_id.clone(),
        idp_sso_url: c.idp_sso_url.clone(),
        idp_sso_binding: api_binding(c.idp_sso_binding),
        idp_slo_url: c.idp_slo_url.clone(),
        idp_slo_binding: api_binding(c.idp_slo_binding),
        idp_metadata_url: c.idp_metadata_url.clone(),
        idp_metadata_refreshed_at: time_opt(c.metadata_refreshed_at),
        idp_metadata_error: c.metadata_error.clone(),
        idp_certificates: c.idp_certificates.clone(),
        idp_certificate_details: c
            .idp_certificates
            .iter()
            .filter_map(|pem| tessera_saml::certs::inspect(pem, true).ok())
            .map(|i| cert_view(&i, now))
            .collect(),
        name_id_format: c.name_id_format.clone(),
        attribute_email: c.attribute_email.clone(),
        attribute_display_name: c.attribute_display_name.clone(),
        attribute_groups: c.attribute_groups.clone(),
        group_roles: c.group_roles.clone(),
        jit_provisioning: c.jit_provisioning,
        allow_sha1: c.allow_sha1,
        allow_rsa_1024: c.allow_rsa_1024,
        clock_skew_seconds: c.clock_skew_seconds,
        allow_idp_initiated: c.allow_idp_initiated,
        break_glass_user_ids: c.break_glass_user_ids.clone(),
        sp_entity_id: format!("{base}/metadata"),
        sp_acs_url: format!("{base}/acs"),
        sp_slo_url: format!("{base}/slo"),
        sp_metadata_url: format!("{base}/metadata"),
        sso_login_url: format!("{base}/login"),
    }
}

async fn current(admin: &Admin) -> Result<SsoConfig, ApiError> {
    Ok(admin
        .st
        .store
        .sso_config(admin.org.id)
        .await?
        .unwrap_or_default())
}

/// `GET /api/v2/sso/saml`.
#[utoipa::path(get, path = "/api/v2/sso/saml", operation_id = "getSsoConfig", tag = "sso", responses((status = 200, body = SsoConfigView), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn show(admin: Admin) -> Result<Json<SsoConfigView>, ApiError> {
    let c = current(&admin).await?;
    Ok(Json(view(&admin.st, &admin.org, &c)))
}

/// `PUT /api/v2/sso/saml`: replaces the configuration. Refused, naming the field, when it
/// could never validate a response.
#[utoipa::path(put, path = "/api/v2/sso/saml", operation_id = "replaceSsoConfig", tag = "sso", request_body = PutSsoConfig, responses((status = 200, body = SsoConfigView), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "a field is invalid; `field` names it", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn put(
    admin: Admin,
    ApiJson(body): ApiJson<PutSsoConfig>,
) -> Result<Json<SsoConfigView>, ApiError> {
    let (config, change) = save(&admin.ctx(), body, None, false).await?;
    admin.audit("put_sso_config", change).await?;
    Ok(Json(view(&admin.st, &admin.org, &config)))
}

/// Replaces the org's SSO configuration with `body` by the rules of `PUT
/// /api/v2/sso/saml`; the admin API and the console both save through here.
///
/// - `read`: the configuration the caller read and built `body` from. The write then
///   happens only over it, so a metadata refresh or another admin's save in between
///   is never undone (`Conflict`). `None` writes over whatever is stored, as `PUT` does.
/// - `keep_idp`: the identity provider stays as `read` has it (metadata URL and
///   refresh state included), and `body` changes the rest.
///
/// Returns the configuration stored and what to audit.
pub(crate) async fn save(
    ctx: &OrgCtx<'_>,
    mut body: PutSsoConfig,
    read: Option<&SsoConfig>,
    keep_idp: bool,
) -> Result<(SsoConfig, serde_json::Value), ApiError> {
    let kept = read.filter(|_| keep_idp);
    if let Some(c) = kept {
        body.idp_metadata_url = None;
        body.idp_metadata_xml = None;
        body.idp_entity_id = c.idp_entity_id.clone();
        body.idp_sso_url = c.idp_sso_url.clone();
        body.idp_sso_binding = Some(api_binding(c.idp_sso_binding));
        body.idp_slo_url = c.idp_slo_url.clone();
        body.idp_slo_binding = Some(api_binding(c.idp_slo_binding));
        body.idp_certificates = c.idp_certificates.clone();
    }
    let mut config = validate(ctx, body).await?;
    if ctx.org.sso_enforced && !config.has_idp() {
        return Err(ApiError::field(
            "idp_certificates",
            "this org enforces SSO: the configuration must keep an IdP entity id, SSO URL and at least one certificate (switch enforcement off first to remove the IdP)",
        ));
    }
    if let Some(c) = kept {
        config.idp_metadata_url = c.idp_metadata_url.clone();
        config.metadata_refreshed_at = c.metadata_refreshed_at;
        config.metadata_error = c.metadata_error.clone();
    }
    let now = clock::now();
    let stored = match read {
        Some(_) => ctx.st.store.sso_config(ctx.org.id).await?,
        None => None,
    };
    match (read, stored) {
        (Some(read), Some(_)) => {
            if !ctx
                .st
                .store
                .replace_sso_config(ctx.org.id, read, &config, now)
                .await?
            {
                return Err(ApiError::Conflict(
                    "the SSO configuration changed since it was read (another admin, or a metadata refresh): nothing was saved; read it again".into(),
                ));
            }
        }
        // Nothing stored yet (or nothing to compare with): the first configuration.
        _ => {
            ctx.st
                .store
                .put_sso_config(ctx.org.id, &config, now)
                .await?
        }
    }
    let change = json!({
        "idp_entity_id": config.idp_entity_id,
        "idp_sso_url": config.idp_sso_url,
        "idp_sso_binding": config.idp_sso_binding.as_str(),
        "idp_slo_url": config.idp_slo_url,
        "idp_metadata_url": config.idp_metadata_url,
        "certificates": config.idp_certificates.len(),
        "jit_provisioning": config.jit_provisioning,
        "allow_sha1": config.allow_sha1,
        "allow_rsa_1024": config.allow_rsa_1024,
        "allow_idp_initiated": config.allow_idp_initiated,
        "break_glass_user_ids": config.break_glass_user_ids,
    });
    Ok((config, change))
}

/// `config`'s fields other than the identity provider, as `PUT /api/v2/sso/saml` takes
/// them: what a form that changes one part starts from.
pub(crate) fn policy_of(c: &SsoConfig) -> PutSsoConfig {
    PutSsoConfig {
        name_id_format: c.name_id_format.clone(),
        attribute_email: c.attribute_email.clone(),
        attribute_display_name: c.attribute_display_name.clone(),
        attribute_groups: c.attribute_groups.clone(),
        group_roles: c.group_roles.clone(),
        jit_provisioning: c.jit_provisioning,
        allow_sha1: c.allow_sha1,
        allow_rsa_1024: c.allow_rsa_1024,
        clock_skew_seconds: Some(c.clock_skew_seconds),
        allow_idp_initiated: c.allow_idp_initiated,
        break_glass_user_ids: c.break_glass_user_ids.clone(),
        ..PutSsoConfig::default()
    }
}

async fn validate(admin: &OrgCtx<'_>, mut b: PutSsoConfig) -> Result<SsoConfig, ApiError> {
    let metadata_url = b.idp_metadata_url.take();
    if let Some(url) = &metadata_url {
        if b.idp_metadata_xml.is_some() {
            return Err(ApiError::field(
                "idp_metadata_url",
                "give the metadata URL or the metadata document, not both",
            ));
        }
        // The metadata is then the one source of the IdP's fields: each refresh would
        // overwrite values given here.
        let given: Vec<&str> = [
            ("idp_entity_id", b.idp_entity_id.is_some()),
            ("idp_sso_url", b.idp_sso_url.is_some()),
            ("idp_slo_url", b.idp_slo_url.is_some()),
            ("idp_certificates", !b.idp_certificates.is_empty()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
        .collect();
        if !given.is_empty() {
            return Err(ApiError::field(
                "idp_metadata_url",
                format!(
                    "with a metadata URL the IdP's fields come from its metadata, at every refresh; leave out {}",
                    given.join(", ")
                ),
            ));
        }
        printable("idp_metadata_url", url)?;
        admin
            .st
            .metadata
            .fence()
            .check_url(url)
            .map_err(|why| ApiError::field("idp_metadata_url", why))?;
        let (xml, _) =
            admin.st.metadata.fetch(url).await.map_err(|why| {
                ApiError::field("idp_metadata_url", format!("cannot be used: {why}"))
            })?;
        b.idp_metadata_xml = Some(xml);
    }
    if let Some(xml) = b.idp_metadata_xml.take() {
        let m = tessera_saml::metadata::read_idp_metadata(&xml)
            .map_err(|why| ApiError::field("idp_metadata_xml", why))?;
        if m.signing_certificates.is_empty() && b.idp_certificates.is_empty() {
            return Err(ApiError::field(
                "idp_metadata_xml",
                "the metadata has no signing certificate (KeyDescriptor use=\"signing\"): no response could ever be trusted",
            ));
        }
        b.idp_entity_id.get_or_insert(m.entity_id);
        if b.idp_sso_url.is_none() {
            b.idp_sso_url = Some(m.sso_url.ok_or_else(|| {
                ApiError::field(
                    "idp_metadata_xml",
                    "the metadata has no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding",
                )
            })?);
            b.idp_sso_binding.get_or_insert(api_binding(m.sso_binding));
        }
        if b.idp_slo_url.is_none() && m.slo_url.is_some() {
            b.idp_slo_url = m.slo_url;
            b.idp_slo_binding.get_or_insert(api_binding(m.slo_binding));
        }
        if b.idp_certificates.is_empty() {
            b.idp_certificates = m.signing_certificates;
        }
        if b.name_id_format.is_none() {
            b.name_id_format = m.name_id_formats.into_iter().next();
        }
    }
    let text = |field: &'static str, v: Option<String>, max: usize| match v {
        Some(s) if s.trim().is_empty() => Err(ApiError::field(field, "must not be empty")),
        Some(s) if s.chars().count() > max => {
            Err(ApiError::field(field, format!("at most {max} characters")))
        }
        Some(s) => printable(field, &s).map(|()| Some(s)),
        None => Ok(None),
    };
    let idp_entity_id = text("idp_entity_id", b.idp_entity_id, 1024)?;
    let idp_sso_url = text("idp_sso_url", b.idp_sso_url, 2048)?;
    if let Some(u) = &idp_sso_url {
        check_url(u).map_err(|why| ApiError::field("idp_sso_url", why))?;
    }
    let idp_slo_url = text("idp_slo_url", b.idp_slo_url, 2048)?;
    if let Some(u) = &idp_slo_url {
        check_url(u).map_err(|why| ApiError::field("idp_slo_url", why))?;
    }
    let mut certificates = Vec::with_capacity(b.idp_certificates.len());
    for (i, pem) in b.idp_certificates.iter().enumerate() {
        let cert = tessera_saml::certs::inspect(pem, b.allow_rsa_1024)
            .map_err(|why| ApiError::field(format!("idp_certificates[{i}]"), why))?;
        certificates.push(cert.pem);
    }
    let any_idp = idp_entity_id.is_some() || idp_sso_url.is_some() || !certificates.is_empty();
    if any_idp {
        // Half an IdP could never validate a response: name what is missing.
        if idp_entity_id.is_none() {
            return Err(ApiError::field(
                "idp_entity_id",
                "required with an IdP: responses are accepted only from this Issuer",
            ));
        }
        if idp_sso_url.is_none() {
            return Err(ApiError::field(
                "idp_sso_url",
                "required with an IdP: where to send the AuthnRequest",
            ));
        }
        if certificates.is_empty() {
            return Err(ApiError::field(
                "idp_certificates",
                "at least one signing certificate is required: responses are accepted only when signed by the IdP",
            ));
        }
    }
    let skew = b
        .clock_skew_seconds
        .unwrap_or(sso::DEFAULT_CLOCK_SKEW_SECONDS);
    if skew > 600 {
        return Err(ApiError::field(
            "clock_skew_seconds",
            "at most 600 seconds (10 minutes); a larger window widens replay attacks",
        ));
    }
    // A group is named by its escaped, clipped name: the field must not carry what it
    // refuses.
    for (group, roles) in &b.group_roles {
        let field = format!("group_roles[{}]", clip(&shown(group)));
        printable(field.clone(), group)?;
        if group.trim() != group || group.is_empty() {
            return Err(ApiError::field(
                field,
                "a group name is not empty and has no space at either end",
            ));
        }
        if roles.is_empty() {
            return Err(ApiError::field(
                field,
                "at least one role: a group that gives no role need not be mapped",
            ));
        }
        // The roles a user may hold, by the rule users.rs keeps.
        crate::users::check_roles(roles).map_err(|e| match e {
            ApiError::InvalidField { field: f, message } => {
                ApiError::field(format!("{field}{}", f.trim_start_matches("roles")), message)
            }
            other => other,
        })?;
    }
    let users = admin.st.store.list_users(admin.org.id).await?;
    for (i, id) in b.break_glass_user_ids.iter().enumerate() {
        match users.iter().find(|u| &u.id == id) {
            Some(u) if u.user_type == UserType::Human => {}
            Some(u) => {
                return Err(ApiError::field(
                    format!("break_glass_user_ids[{i}]"),
                    format!(
                        "'{}' is a service account: service accounts are never subject to SSO enforcement, so they need no exemption",
                        u.username
                    ),
                ));
            }
            None => {
                return Err(ApiError::field(
                    format!("break_glass_user_ids[{i}]"),
                    format!("no user {} in org '{}'", clip(id), admin.org.slug),
                ));
            }
        }
    }
    Ok(SsoConfig {
        idp_entity_id,
        idp_sso_url,
        idp_sso_binding: core_binding(b.idp_sso_binding.unwrap_or_default()),
        idp_slo_url,
        idp_slo_binding: core_binding(b.idp_slo_binding.unwrap_or_default()),
        metadata_refreshed_at: metadata_url.as_ref().map(|_| clock::now()),
        metadata_error: None,
        idp_metadata_url: metadata_url,
        idp_certificates: certificates,
        name_id_format: text("name_id_format", b.name_id_format, 256)?,
        attribute_email: text("attribute_email", b.attribute_email, 256)?,
        attribute_display_name: text("attribute_display_name", b.attribute_display_name, 256)?,
        attribute_groups: text("attribute_groups", b.attribute_groups, 256)?,
        group_roles: b.group_roles,
        jit_provisioning: b.jit_provisioning,
        allow_sha1: b.allow_sha1,
        allow_rsa_1024: b.allow_rsa_1024,
        clock_skew_seconds: skew,
        allow_idp_initiated: b.allow_idp_initiated,
        break_glass_user_ids: b.break_glass_user_ids,
    })
}

fn api_binding(b: SsoBinding) -> SamlBinding {
    match b {
        SsoBinding::Redirect => SamlBinding::Redirect,
        SsoBinding::Post => SamlBinding::Post,
    }
}

fn core_binding(b: SamlBinding) -> SsoBinding {
    match b {
        SamlBinding::Redirect => SsoBinding::Redirect,
        SamlBinding::Post => SsoBinding::Post,
    }
}

/// An IdP URL must be https, except on loopback (test IdPs).
pub(crate) fn check_url(u: &str) -> Result<(), String> {
    let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
    if u.starts_with("https://") || loopback.iter().any(|p| u.starts_with(p)) {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not an https URL (plain http is accepted on loopback only)",
            clip(u)
        ))
    }
}

async fn impact(admin: &Admin, config: &SsoConfig) -> Result<EnforcementImpact, ApiError> {
    enforcement::impact(&admin.st, &admin.org, config).await
}

/// `GET /api/v2/sso/saml/enforcement-impact`.
#[utoipa::path(get, path = "/api/v2/sso/saml/enforcement-impact", operation_id = "previewSsoEnforcementImpact", tag = "sso", responses((status = 200, body = EnforcementImpactView), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn enforcement_impact(admin: Admin) -> Result<Json<EnforcementImpactView>, ApiError> {
    let config = current(&admin).await?;
    let i = impact(&admin, &config).await?;
    Ok(Json(impact_view(&admin.org, i)))
}

pub(crate) fn impact_view(org: &Org, i: EnforcementImpact) -> EnforcementImpactView {
    let mut summary = format!(
        "Enforcing SSO in org '{}' stops {} human(s) who used a password in the last 90 days and the password grant of {} client(s); {} break-glass user(s) stay exempt; {} client_credentials client(s) and {} service account(s) are not affected.",
        org.slug,
        i.humans_affected.len(),
        i.password_grant_clients.len(),
        i.break_glass_users.len(),
        i.client_credentials_clients_unaffected,
        i.service_accounts_unaffected,
    );
    for p in &i.provisioning {
        summary.push_str(&format!(
            " SCIM client '{}' manages {} active human(s) and has turned {} off; it cannot reach service accounts.",
            p.client_id, p.active, p.deprovisioned_total
        ));
    }
    EnforcementImpactView {
        preview_id: i.preview_id,
        enforced: org.sso_enforced,
        humans_affected: i
            .humans_affected
            .into_iter()
            .map(|h| AffectedHumanView {
                id: h.id,
                username: h.username,
                email: h.email,
                last_password_login_at: time_opt(h.last_password_login_at),
                provisioned_by: h.provisioned_by,
            })
            .collect(),
        password_grant_clients: i
            .password_grant_clients
            .into_iter()
            .map(|c| PasswordGrantClientView {
                client_id: c.client_id,
                name: c.name,
                password_grant_enabled: c.password_grant_enabled,
                last_password_grant_at: time_opt(c.last_password_grant_at),
            })
            .collect(),
        break_glass_users: i
            .break_glass_users
            .into_iter()
            .map(|b| BreakGlassUserView {
                id: b.id,
                username: b.username,
            })
            .collect(),
        client_credentials_clients_unaffected: i.client_credentials_clients_unaffected,
        service_accounts_unaffected: i.service_accounts_unaffected,
        provisioning: i
            .provisioning
            .into_iter()
            .map(|p| ProvisioningSummaryView {
                client_id: p.client_id,
                active: p.active,
                deprovisioned: p
                    .deprovisioned
                    .into_iter()
                    .map(|d| DeprovisionedView {
                        id: d.id,
                        username: d.username,
                        at: time_opt(d.at),
                        deleted: d.deleted,
                    })
                    .collect(),
                deprovisioned_total: p.deprovisioned_total,
            })
            .collect(),
        summary,
    }
}

/// `PATCH /api/v2/sso/saml`: switches enforcement. On needs a configured IdP and the id
/// of a current impact preview (or `force`); off is always allowed.
#[utoipa::path(patch, path = "/api/v2/sso/saml", operation_id = "updateSsoConfig", tag = "sso", request_body = PatchSsoConfig, responses((status = 200, body = SsoConfigView), (status = 409, description = "switching on without acknowledging the current impact preview", body = tessera_api::ApiErrorBody), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "a field is invalid, or no IdP is configured; `field` names it", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn patch(
    admin: Admin,
    ApiJson(body): ApiJson<PatchSsoConfig>,
) -> Result<Json<SsoConfigView>, ApiError> {
    let config = current(&admin).await?;
    if !body.enforced && (body.preview_id.is_some() || body.force) {
        return Err(ApiError::field(
            "preview_id",
            "only when switching enforcement on",
        ));
    }
    let ack = match (&body.preview_id, body.force) {
        (Some(id), _) => Ack::Preview(id),
        (None, true) => Ack::Force,
        (None, false) => Ack::None,
    };
    if let Some(change) =
        enforcement::set_enforced(&admin.st, &admin.org, &config, body.enforced, ack).await?
    {
        admin.audit("set_sso_enforced", change).await?;
    }
    let mut org = admin.org.clone();
    org.sso_enforced = body.enforced;
    Ok(Json(view(&admin.st, &org, &config)))
}

fn encryption_key_list(set: &crate::keys::KeySet) -> SamlEncryptionKeyList {
    SamlEncryptionKeyList {
        keys: set
            .saml_encryption
            .iter()
            .enumerate()
            .map(|(i, k)| SamlEncryptionKeyView {
                kid: k.kid.clone(),
                current: i == 0,
                created_at: rfc3339(k.created_at),
                decrypts_until: time_opt(k.remove_after),
                certificate: k.cert_pem.clone(),
                certificate_not_after: tessera_saml::certs::inspect(&k.cert_pem, false)
                    .ok()
                    .map(|c| rfc3339(c.not_after)),
            })
            .collect(),
    }
}

/// `GET /api/v2/saml/encryption-keys`: the SAML SP's encryption keys (one set for every
/// org on this server), the published one first.
#[utoipa::path(get, path = "/api/v2/saml/encryption-keys", operation_id = "listSamlEncryptionKeys", tag = "sso", responses((status = 200, body = SamlEncryptionKeyList), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn encryption_keys(admin: Admin) -> Result<Json<SamlEncryptionKeyList>, ApiError> {
    let set = admin
        .st
        .keys
        .saml_encryption(admin.st.store.as_ref())
        .await
        .map_err(|e| ApiError::Store(e.to_string()))?;
    Ok(Json(encryption_key_list(&set)))
}

/// `POST /api/v2/saml/encryption-keys/rotate`: a new encryption key, published in every
/// org's SP metadata from now on; the previous one still decrypts for the overlap. The
/// keys are shared by every org, so only the operator org's admins may rotate them.
#[utoipa::path(post, path = "/api/v2/saml/encryption-keys/rotate", operation_id = "rotateSamlEncryptionKey", tag = "sso", request_body(content = Option<tessera_api::RotateSamlEncryptionKey>, description = "optional; default overlap: 30 days"), responses((status = 200, body = SamlEncryptionKeyList), (status = 400, description = "not JSON", body = tessera_api::ApiErrorBody), (status = 422, description = "overlap out of range; `field` is `overlap_days`", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin, or its org is not the operator org", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn rotate_encryption_key(
    admin: Admin,
    super::OptionalJson(body): super::OptionalJson<tessera_api::RotateSamlEncryptionKey>,
) -> Result<Json<SamlEncryptionKeyList>, ApiError> {
    let st = &admin.st;
    if admin.org.slug.as_str() != st.operator_org {
        return Err(ApiError::Forbidden(format!(
            "the SAML encryption keys are shared by every org on this server; only admins of the operator org '{}' may rotate them",
            st.operator_org
        )));
    }
    let days = body.and_then(|b| b.overlap_days).unwrap_or(30);
    if !(1..=365).contains(&days) {
        return Err(ApiError::field(
            "overlap_days",
            "from 1 to 365 days: long enough to give every IdP the new certificate",
        ));
    }
    let kid = st
        .keys
        .rotate_saml_encryption(st.store.as_ref(), i64::from(days) * 24 * 3600)
        .await
        .map_err(|e| ApiError::Store(e.to_string()))?;
    admin
        .audit(
            "rotate_saml_encryption_key",
            json!({ "kid": kid, "previous_decrypts_for_days": days }),
        )
        .await?;
    Ok(Json(encryption_key_list(&st.keys.get())))
}

/// `POST /api/v2/sso/saml/metadata/refresh`: fetches the registered metadata URL now (as
/// the schedule does), applies it, and says what changed.
#[utoipa::path(post, path = "/api/v2/sso/saml/metadata/refresh", operation_id = "refreshIdpMetadata", tag = "sso", responses((status = 200, body = tessera_api::MetadataRefreshView), (status = 422, description = "no metadata URL is registered; `field` is `idp_metadata_url`", body = tessera_api::ApiErrorBody), (status = 401, description = "no usable bearer token", body = tessera_api::ApiErrorBody), (status = 403, description = "the token lacks tessera:admin", body = tessera_api::ApiErrorBody), (status = 503, description = "the database is unavailable", body = tessera_api::ApiErrorBody)), security(("bearer" = [])))]
pub async fn refresh_metadata(
    admin: Admin,
) -> Result<Json<tessera_api::MetadataRefreshView>, ApiError> {
    use crate::saml_metadata::{Refreshed, refresh_org};
    let now = clock::now();
    let certs = |v: &[tessera_saml::certs::CertInfo]| -> Vec<CertificateView> {
        v.iter().map(|c| cert_view(c, now)).collect()
    };
    match refresh_org(&admin.st, &admin.org, &admin.client_id).await? {
        Refreshed::NoUrl => Err(ApiError::field(
            "idp_metadata_url",
            "no metadata URL is registered for this org (PUT /api/v2/sso/saml with idp_metadata_url)",
        )),
        Refreshed::Applied(config, changes) => Ok(Json(tessera_api::MetadataRefreshView {
            changed: changes.any(),
            error: None,
            certificates_added: certs(&changes.added),
            certificates_removed: certs(&changes.removed),
            certificates_expired: certs(&changes.expired),
            fields_changed: changes.fields.clone(),
            config: view(&admin.st, &admin.org, &config),
        })),
        Refreshed::Failed(config, why) => Ok(Json(tessera_api::MetadataRefreshView {
            changed: false,
            error: Some(why),
            certificates_added: vec![],
            certificates_removed: vec![],
            certificates_expired: vec![],
            fields_changed: vec![],
            config: view(&admin.st, &admin.org, &config),
        })),
    }
}

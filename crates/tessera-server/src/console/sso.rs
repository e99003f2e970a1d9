//! The console's SSO page: the org's IdP as configured, what to give the IdP, and the
//! enforcement impact preview with the switch that requires it, through
//! `enforcement.rs` as the admin API does. The preview states what enforcement will not
//! touch: `client_credentials` clients and service accounts. The IdP is imported from
//! its metadata (URL or pasted), and the mapping, JIT and break-glass users are edited,
//! through `admin::sso::save`, the code behind `PUT /api/v2/sso/saml`.

use askama::Template;
use axum::Form;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use std::collections::BTreeMap;

use tessera_api::{EnforcementImpactView, SsoConfigView};
use tessera_core::model::UserType;

use super::{Fields, OrgAdmin, html, refused};
use crate::admin::sso::{impact_view, policy_of, save, view};
use crate::enforcement::{self, Ack};
use crate::error::ApiError;

#[derive(Template)]
#[template(path = "console/sso.html")]
struct SsoPage<'a> {
    f: super::Frame<'a>,
    me_id: &'a str,
    cfg: SsoConfigView,
    impact: Option<EnforcementImpactView>,
    /// `group = role role` per line, as the mapping form takes it.
    group_roles_lines: String,
    /// Each person of the org (id, username), and whether they are a break-glass user.
    humans: Vec<(String, String, bool)>,
    /// The mapping form's `version` (`super::version_of`).
    policy_version: String,
}

#[derive(serde::Deserialize, Default)]
pub struct SsoQuery {
    /// What the last change was (`on`, `off`, `idp`, `policy`).
    done: Option<String>,
}

/// `GET /admin/sso`.
pub async fn show(a: OrgAdmin, Query(q): Query<SsoQuery>) -> Response {
    let config = match stored(&a).await {
        Ok(c) => c,
        Err(r) => return r,
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
        Some("idp") => Some(format!(
            "The identity provider is saved, with {} signing certificate(s).",
            config.idp_certificates.len()
        )),
        Some("policy") => Some("The mapping and break-glass users are saved.".to_string()),
        _ => None,
    };
    let users = match a.st.store.list_users(a.org.id).await {
        Ok(u) => u,
        Err(e) => return crate::html::unavailable(e.to_string()),
    };
    let humans = users
        .into_iter()
        .filter(|u| u.user_type == UserType::Human)
        .map(|u| {
            let exempt = config.break_glass_user_ids.contains(&u.id);
            (u.id, u.username, exempt)
        })
        .collect();
    let group_roles_lines = config
        .group_roles
        .iter()
        .map(|(g, r)| format!("{g} = {}", r.join(" ")))
        .collect::<Vec<_>>()
        .join("\n");
    html(
        StatusCode::OK,
        SsoPage {
            f: a.frame("sso", notice),
            me_id: &a.user.id,
            cfg,
            impact,
            group_roles_lines,
            humans,
            policy_version: super::version_of(&policy_of(&config)),
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
    let config = match stored(&a).await {
        Ok(c) => c,
        Err(r) => return r,
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

/// The org's SSO configuration as stored (the default when there is none).
async fn stored(a: &OrgAdmin) -> Result<tessera_core::sso::SsoConfig, Response> {
    match a.st.store.sso_config(a.org.id).await {
        Ok(c) => Ok(c.unwrap_or_default()),
        Err(e) => Err(crate::html::unavailable(e.to_string())),
    }
}

/// A form post that changes the configuration: its checks, then the fields and the
/// configuration as stored.
async fn posted(
    a: &OrgAdmin,
    headers: &HeaderMap,
    fields: Vec<(String, String)>,
) -> Result<(Fields, tessera_core::sso::SsoConfig), Response> {
    let form = Fields(fields);
    if let Some(refusal) = a.form_refusal(headers, form.one("csrf").as_deref()) {
        return Err(refusal);
    }
    Ok((form, stored(a).await?))
}

/// `POST /admin/sso/idp`: the identity provider from its metadata, fetched from its URL
/// (then refreshed on the schedule) or pasted. The mapping and break-glass users stay.
pub async fn import(
    a: OrgAdmin,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let (form, current) = match posted(&a, &headers, fields).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mut body = policy_of(&current);
    // The NameID format comes with the new metadata.
    body.name_id_format = None;
    body.idp_metadata_url = form.one("metadata_url");
    body.idp_metadata_xml = form.one("metadata_xml");
    if body.idp_metadata_url.is_none() && body.idp_metadata_xml.is_none() {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Nothing was changed",
            "idp_metadata_url: give the identity provider's metadata URL, or paste its metadata document",
            ("/admin/sso", "Back to SSO"),
        );
    }
    saved(a, body, &current, false, "idp").await
}

/// `POST /admin/sso/policy`: attribute mapping, groups to roles, just-in-time accounts,
/// the legacy allowances and break-glass users. The identity provider stays as it is,
/// and a metadata refresh landing while this is checked is never undone.
pub async fn policy(
    a: OrgAdmin,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let (form, current) = match posted(&a, &headers, fields).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let back = ("/admin/sso", "Back to SSO");
    if form.one("version") != Some(super::version_of(&policy_of(&current))) {
        return super::stale("The SSO mapping or break-glass users", back);
    }
    let group_roles = match group_roles(&form.lines("group_roles")) {
        Ok(g) => g,
        Err(why) => {
            return refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Nothing was changed",
                &why,
                back,
            );
        }
    };
    let skew = form
        .number("clock_skew_seconds")
        .ok()
        .map(|n| n.map(u32::try_from).transpose());
    let Some(Ok(skew)) = skew else {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Nothing was changed",
            "clock_skew_seconds: a whole number of seconds, 0 to 600",
            back,
        );
    };
    let body = tessera_api::PutSsoConfig {
        name_id_format: form.one("name_id_format"),
        attribute_email: form.one("attribute_email"),
        attribute_display_name: form.one("attribute_display_name"),
        attribute_groups: form.one("attribute_groups"),
        group_roles,
        jit_provisioning: form.ticked("jit_provisioning"),
        allow_idp_initiated: form.ticked("allow_idp_initiated"),
        allow_sha1: form.ticked("allow_sha1"),
        allow_rsa_1024: form.ticked("allow_rsa_1024"),
        clock_skew_seconds: skew,
        break_glass_user_ids: form.all("break_glass"),
        ..Default::default()
    };
    saved(a, body, &current, true, "policy").await
}

/// Saves through `admin::sso::save`, audits as `put_sso_config`, and goes back to the
/// page with `done`; a refusal names the field.
async fn saved(
    a: OrgAdmin,
    body: tessera_api::PutSsoConfig,
    read: &tessera_core::sso::SsoConfig,
    keep_idp: bool,
    done: &str,
) -> Response {
    let back = ("/admin/sso", "Back to SSO");
    match save(&a.ctx(), body, Some(read), keep_idp).await {
        Ok((_, change)) => {
            if let Some(failed) = a.audit("put_sso_config", change).await {
                return failed;
            }
            Redirect::to(&format!("/admin/sso?done={done}")).into_response()
        }
        Err(e) => super::not_done(e, "Nothing was changed", back),
    }
}

/// The groups-to-roles textarea: `group = role role` per line. Roles have no spaces,
/// so the last ` = ` separates even a group named like a directory path
/// (`CN=Admins,OU=Groups`).
fn group_roles(lines: &[String]) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let Some((group, roles)) = line.rsplit_once(" = ") else {
            return Err(format!(
                "group_roles, line {}: write it as `group = role role` (a space each side of =)",
                i + 1
            ));
        };
        let roles: Vec<String> = roles.split_whitespace().map(str::to_string).collect();
        if group.trim().is_empty() || roles.is_empty() {
            return Err(format!(
                "group_roles, line {}: a group and at least one role",
                i + 1
            ));
        }
        out.insert(group.trim().to_string(), roles);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::group_roles;

    #[test]
    fn group_roles_lines_split_at_the_last_spaced_equals() {
        let lines = vec![
            "Engineering = developer deployer".to_string(),
            "CN=Admins,OU=Groups = org_admin".to_string(),
        ];
        let g = group_roles(&lines).unwrap();
        assert_eq!(g["Engineering"], vec!["developer", "deployer"]);
        assert_eq!(g["CN=Admins,OU=Groups"], vec!["org_admin"]);
        let err = group_roles(&["Engineering=developer".to_string()]).unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        assert!(group_roles(&["Eng = ".to_string()]).is_err());
    }
}

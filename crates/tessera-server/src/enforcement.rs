//! SSO enforcement as the admin API and the console switch it: one implementation of
//! the impact preview and of the switch that requires it, so a switch made in a browser
//! is held to exactly the rules of one made through the API. Callers audit the change
//! this returns in their own kind.

use serde_json::{Value, json};
use tessera_core::model::Org;
use tessera_core::sso::{self, EnforcementImpact, SsoConfig};
use tessera_core::text::clip;

use crate::clock;
use crate::error::ApiError;
use crate::state::AppState;

/// Where the preview is read, for the refusals that send the caller there.
pub const IMPACT_PATH: &str = "GET /api/v2/sso/saml/enforcement-impact";

/// What switching enforcement on would change now.
pub async fn impact(
    st: &AppState,
    org: &Org,
    config: &SsoConfig,
) -> Result<EnforcementImpact, ApiError> {
    let users = st.store.list_users(org.id).await?;
    let clients = st.store.list_clients(org.id).await?;
    let uses = st.store.password_grant_uses(org.id).await?;
    Ok(sso::enforcement_impact(
        config,
        &users,
        &clients,
        &uses,
        clock::now(),
    ))
}

/// How a switch-on acknowledges what it changes.
pub enum Ack<'a> {
    /// The id of the preview the caller looked at: it must still describe the impact.
    Preview(&'a str),
    /// Switch on without looking (audited as forced).
    Force,
    /// Nothing: refused when switching on.
    None,
}

/// Switches enforcement in `org` to `enforced`. Switching on needs a configured IdP and
/// the current preview's id (or `Force`). Returns the change to audit
/// (`set_sso_enforced`), or `None` when the org already was so.
pub async fn set_enforced(
    st: &AppState,
    org: &Org,
    config: &SsoConfig,
    enforced: bool,
    ack: Ack<'_>,
) -> Result<Option<Value>, ApiError> {
    let mut change = json!({ "enforced": enforced });
    if enforced && !org.sso_enforced {
        if !config.has_idp() {
            return Err(ApiError::field(
                "enforced",
                "no IdP is configured: humans would have no way to log in; set the IdP first (PUT /api/v2/sso/saml)",
            ));
        }
        let i = impact(st, org, config).await?;
        match ack {
            Ack::Preview(id) if id == i.preview_id => {}
            Ack::Preview(id) => {
                return Err(ApiError::Conflict(format!(
                    "preview '{}' no longer describes the impact: the affected accounts changed since; review {IMPACT_PATH} again (current preview_id: {})",
                    clip(id),
                    i.preview_id
                )));
            }
            Ack::Force => {}
            Ack::None => {
                return Err(ApiError::Conflict(format!(
                    "switching SSO enforcement on changes how {} human(s) and {} password-grant client(s) authenticate: review {IMPACT_PATH} and send its preview_id (now {}), or send \"force\": true",
                    i.humans_affected.len(),
                    i.password_grant_clients.len(),
                    i.preview_id
                )));
            }
        }
        change = json!({
            "enforced": true,
            "preview_id": i.preview_id,
            "forced": matches!(ack, Ack::Force),
            "humans_affected": i.humans_affected.iter().map(|h| &h.id).collect::<Vec<_>>(),
            "password_grant_clients": i.password_grant_clients.iter().map(|c| &c.client_id).collect::<Vec<_>>(),
            "break_glass_users": i.break_glass_users.iter().map(|b| &b.id).collect::<Vec<_>>(),
            "client_credentials_clients_unaffected": i.client_credentials_clients_unaffected,
        });
    }
    if enforced == org.sso_enforced {
        return Ok(None);
    }
    st.store.set_sso_enforced(org.id, enforced).await?;
    Ok(Some(change))
}

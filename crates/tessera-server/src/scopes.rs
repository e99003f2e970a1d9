//! The org's scope catalogue as the admin API and the console read and change it: the
//! OpenID Connect scopes every org has, the org's own, and adding one, with the same
//! rules on both paths. Callers audit in their own kind.

use tessera_api::ScopeView;
use tessera_core::model::{Org, Scope, ScopeName};

use crate::admin::printable;
use crate::error::ApiError;
use crate::state::AppState;

/// The OpenID Connect scopes in every org's catalogue, with what each gives.
fn builtins() -> impl Iterator<Item = ScopeView> {
    [
        (
            "openid",
            "OpenID Connect: an ID token and userinfo for a person's login",
        ),
        (
            "profile",
            "OpenID Connect: the person's name and username in the ID token and userinfo",
        ),
        (
            "email",
            "OpenID Connect: the person's email address in the ID token and userinfo",
        ),
        (
            "offline_access",
            "OpenID Connect: a refresh token for a person's login",
        ),
    ]
    .into_iter()
    .map(|(name, description)| ScopeView {
        name: name.into(),
        description: description.into(),
        builtin: true,
    })
}

pub fn view(s: Scope) -> ScopeView {
    ScopeView {
        name: s.name.to_string(),
        description: s.description,
        builtin: false,
    }
}

/// The catalogue: the built-in scopes, then the org's own. An org that made a scope of
/// a built-in name before they were built in keeps it.
pub async fn list(st: &AppState, org: &Org) -> Result<Vec<ScopeView>, ApiError> {
    let own: Vec<ScopeView> = st
        .store
        .list_scopes(org.id)
        .await?
        .into_iter()
        .map(view)
        .collect();
    let builtins: Vec<ScopeView> = builtins()
        .filter(|b| !own.iter().any(|o| o.name == b.name))
        .collect();
    Ok(builtins.into_iter().chain(own).collect())
}

/// Adds scope `name` to the org's catalogue.
pub async fn create(
    st: &AppState,
    org: &Org,
    name: &str,
    description: String,
) -> Result<Scope, ApiError> {
    let name = ScopeName::parse(name).map_err(|e| ApiError::field("name", e.0))?;
    if tessera_core::interactive::is_oidc_scope(name.as_str()) {
        return Err(ApiError::Conflict(format!(
            "scope '{name}' is built in: every org has the OpenID Connect scopes"
        )));
    }
    if description.chars().count() > 1000 {
        return Err(ApiError::field("description", "at most 1000 characters"));
    }
    printable("description", &description)?;
    let scope = Scope {
        org_id: org.id,
        name,
        description,
    };
    st.store.create_scope(&scope).await?;
    Ok(scope)
}

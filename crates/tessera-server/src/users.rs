//! Changing users: the one implementation behind the admin API and SCIM provisioning
//! (and the console to come), so the same rules hold on every path: what a field may
//! hold, what a state change ends (a disabled or locked person's sessions and grants),
//! and who is named as having done it. Callers audit in their own kind.

use tessera_core::model::{Actor, Org, ScimLink, User, UserState, UserType};
use tessera_core::secret::{SecretString, hash_password, random_id};
use tessera_core::store::UserFields;

use crate::admin::printable;
use crate::clock;
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) fn check_username(s: &str) -> Result<(), ApiError> {
    printable("username", s)?;
    if s.is_empty() || s.chars().count() > 128 {
        return Err(ApiError::field(
            "username",
            "must be 1 to 128 characters long",
        ));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c))
    {
        return Err(ApiError::field(
            "username",
            "may contain only letters, digits and . _ @ + -",
        ));
    }
    Ok(())
}

pub(crate) fn check_email(s: &str) -> Result<(), ApiError> {
    printable("email", s)?;
    let ok = s.len() <= 254
        && s.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !s.contains(char::is_whitespace)
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::field("email", "not an email address"))
    }
}

pub(crate) fn check_display_name(s: &str) -> Result<(), ApiError> {
    use tessera_core::model::DISPLAY_NAME_MAX_CHARS as MAX;
    if s.trim().is_empty() || s.chars().count() > MAX {
        return Err(ApiError::field(
            "display_name",
            format!("a display name is 1 to {MAX} characters"),
        ));
    }
    printable("display_name", s)
}

pub(crate) fn check_roles(roles: &[String]) -> Result<(), ApiError> {
    for (i, r) in roles.iter().enumerate() {
        printable(format!("roles[{i}]"), r)?;
        if r.is_empty() || r.chars().count() > 64 || r.contains(' ') {
            return Err(ApiError::field(
                format!("roles[{i}]"),
                "a role is 1 to 64 characters without spaces",
            ));
        }
    }
    Ok(())
}

/// A user to create.
pub struct NewUser {
    pub user_type: UserType,
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub roles: Vec<String>,
    /// A human's first password (never a service account's).
    pub password: Option<SecretString>,
    /// A human's link to SCIM provisioning, stored with them (one write).
    pub scim: Option<ScimLink>,
}

/// Checks `new` and stores it. A conflict (username taken) is the store's answer.
pub async fn create(st: &AppState, org: &Org, new: NewUser) -> Result<User, ApiError> {
    check_username(&new.username)?;
    if let Some(e) = &new.email {
        check_email(e)?;
    }
    if let Some(n) = &new.display_name {
        check_display_name(n)?;
    }
    check_roles(&new.roles)?;
    let password_hash = match (new.password, new.user_type) {
        (Some(_), UserType::Service) => {
            return Err(ApiError::field(
                "password",
                "service accounts never have a password: they authenticate through their OAuth clients' credentials",
            ));
        }
        (Some(p), UserType::Human) => {
            if !(12..=1024).contains(&p.expose().chars().count()) {
                return Err(ApiError::field(
                    "password",
                    "must be 12 to 1024 characters long",
                ));
            }
            Some(
                tokio::task::spawn_blocking(move || hash_password(&p))
                    .await
                    .map_err(|e| ApiError::Store(e.to_string()))?,
            )
        }
        (None, _) => None,
    };
    let user = User {
        id: random_id("usr_"),
        org_id: org.id,
        user_type: new.user_type,
        username: new.username,
        email: new.email,
        display_name: new.display_name,
        roles: new.roles,
        state: UserState::Active,
        state_changed_by: None,
        state_changed_at: None,
        locked_until: None,
        password_hash,
        saml_name_id: None,
        failed_logins: 0,
        last_password_login_at: None,
        scim: new.scim,
        created_at: clock::now(),
    };
    st.store.create_user(&user).await?;
    Ok(user)
}

/// What to change on a user (fields left `None` stay as they are).
#[derive(Default)]
pub struct Change {
    /// A new username (SCIM renames: an IdP's person whose login name changed).
    pub username: Option<String>,
    /// A new state, and for `Locked` when the lock lifts by itself.
    pub state: Option<(UserState, Option<i64>)>,
    pub roles: Option<Vec<String>>,
    /// A new email; `Some(None)` removes it.
    pub email: Option<Option<String>>,
    /// A new display name; `Some(None)` removes it.
    pub display_name: Option<Option<String>>,
}

/// Checks and writes `change` to `user` as `actor` did it. A disabled or locked person
/// keeps nothing: their sessions end and what their logins gave clients (refresh
/// tokens, and access tokens at introspection) is revoked. Whether the state actually
/// changes is the store's call, against the row as stored when it writes. Returns the
/// user as stored afterwards.
pub async fn change(
    st: &AppState,
    org: &Org,
    mut user: User,
    change: Change,
    actor: &Actor,
) -> Result<User, ApiError> {
    let now = clock::now();
    if let Some(roles) = &change.roles {
        check_roles(roles)?;
    }
    if let Some(name) = &change.username {
        check_username(name)?;
    }
    if let Some(Some(e)) = &change.email {
        check_email(e)?;
    }
    if let Some(Some(n)) = &change.display_name {
        check_display_name(n)?;
    }
    if let Some((state, locked_until)) = change.state {
        user.state = state;
        user.locked_until = locked_until;
        if state == UserState::Active {
            user.state_changed_by = None;
            user.state_changed_at = None;
        } else {
            user.state_changed_by = Some(actor.clone());
            user.state_changed_at = Some(now);
        }
    }
    let fields = UserFields {
        username: change.username.is_some(),
        email: change.email.is_some(),
        display_name: change.display_name.is_some(),
        roles: change.roles.is_some(),
        state: change.state.is_some(),
    };
    if let Some(r) = change.roles {
        user.roles = r;
    }
    if let Some(name) = change.username {
        user.username = name;
    }
    if let Some(e) = change.email {
        user.email = e;
    }
    if let Some(n) = change.display_name {
        user.display_name = n;
    }
    st.store.update_user(&user, fields, now).await?;
    let ended = match change.state.map(|s| s.0) {
        Some(UserState::Disabled) => Some("user_disabled"),
        Some(UserState::Locked) => Some("user_locked"),
        _ => None,
    };
    if let Some(reason) = ended {
        st.store
            .revoke_user_grants(org.id, &user.id, reason, now)
            .await?;
    }
    st.store
        .get_user(org.id, &user.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user {} in org '{}'", user.id, org.slug)))
}

/// Revokes one of `user`'s grants (the refresh tokens of one login at one client):
/// `NotFound` when the grant is not theirs in this org. Returns the grant as stored.
pub async fn revoke_grant(
    st: &AppState,
    org: &Org,
    user: &User,
    grant_id: &str,
) -> Result<tessera_core::interactive::LoginGrant, ApiError> {
    let not_found = || {
        ApiError::NotFound(format!(
            "user {} has no grant '{}'",
            user.id,
            tessera_core::text::clip(grant_id)
        ))
    };
    let g = st
        .store
        .login_grant(grant_id)
        .await?
        .filter(|g| g.org_id == org.id && g.user_id == user.id)
        .ok_or_else(not_found)?;
    st.store
        .revoke_login_grant(&g.id, "revoked_by_admin", clock::now())
        .await?;
    st.store.login_grant(&g.id).await?.ok_or_else(not_found)
}

/// Logs `user` out everywhere: their browser sessions end and every grant their logins
/// gave clients is revoked. Returns how many grants.
pub async fn log_out_everywhere(st: &AppState, org: &Org, user: &User) -> Result<u64, ApiError> {
    Ok(st
        .store
        .revoke_user_grants(org.id, &user.id, "revoked_by_admin", clock::now())
        .await?)
}

//! Client secrets as the admin API and the console change them: one implementation of
//! rotating (a new secret; the others expire after a grace period) and revoking, so the
//! same rules hold on both paths. Callers audit in their own kind.

use tessera_core::model::{Client, StoredSecret};
use tessera_core::secret::{SecretString, generate_client_secret, random_id};
use tessera_core::text::clip;

use crate::clock;
use crate::error::ApiError;
use crate::state::AppState;

/// Default grace period of a rotation, in seconds.
pub const DEFAULT_GRACE: i64 = 3600;
/// The longest grace period, in seconds (30 days).
pub const MAX_GRACE: i64 = 30 * 86_400;

/// A rotation's result: the new secret (its value shown once) and the secrets still
/// usable beside it, with their new expiry.
pub struct Rotated {
    pub secret: StoredSecret,
    pub value: SecretString,
    pub previous: Vec<StoredSecret>,
}

/// Adds a new secret to `client` and makes the others expire `grace` seconds from now
/// (0: at once). Refused (`Conflict`) while two secrets are already active.
pub async fn rotate_secret(
    st: &AppState,
    client: &Client,
    grace: i64,
) -> Result<Rotated, ApiError> {
    if !(0..=MAX_GRACE).contains(&grace) {
        return Err(ApiError::field(
            "grace_seconds",
            "between 0 and 2592000 (30 days)",
        ));
    }
    let now = clock::now();
    let generated = generate_client_secret();
    let secret = StoredSecret {
        id: random_id("sec_"),
        client_id: client.client_id.clone(),
        hash: generated.hash,
        hint: generated.hint,
        created_at: now,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        last_used_from: None,
    };
    st.store.rotate_secret(&secret, now + grace, now).await?;
    let previous = st
        .store
        .list_secrets(client.client_id.as_str())
        .await?
        .into_iter()
        .filter(|s| {
            s.id != secret.id && s.revoked_at.is_none() && s.expires_at.is_none_or(|e| e >= now)
        })
        .collect();
    Ok(Rotated {
        secret,
        value: generated.value,
        previous,
    })
}

/// Revokes one of `client`'s secrets at once.
pub async fn revoke_secret(
    st: &AppState,
    client: &Client,
    secret_id: &str,
) -> Result<(), ApiError> {
    if st
        .store
        .revoke_secret(client.client_id.as_str(), secret_id, clock::now())
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "client '{}' has no unrevoked secret {}",
            client.client_id,
            clip(secret_id)
        )))
    }
}

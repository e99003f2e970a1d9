//! The signing key ring: the current ES256 key and every key still published.
//!
//! Keys live in the database, sealed with the master key, so every node signs with the
//! same key and publishes the same JWK Set. Each node reloads them periodically; a
//! rotation adds a new current key and keeps the old one published for the overlap.

use std::sync::{Arc, RwLock};

use tessera_core::jwt::{KeyError, MasterKey, SigningKey, VerifyingKey, generate_es256_pkcs8};
use tessera_core::secret::random_id;
use tessera_core::store::{Store, StoreError, StoredKey};

use crate::clock;

/// The keys in use at one moment.
pub struct KeySet {
    pub signer: SigningKey,
    pub verifiers: Vec<VerifyingKey>,
    /// The JWK Set document, rendered once.
    pub jwks: String,
}

/// Errors while loading keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key {kid}: {source}")]
    Key { kid: String, source: KeyError },
}

/// The shared, reloadable key set.
pub struct KeyRing {
    master: MasterKey,
    current: RwLock<Arc<KeySet>>,
}

impl KeyRing {
    /// Loads keys from the store, creating the first key on a fresh database.
    pub async fn load(store: &dyn Store, master: MasterKey) -> Result<Self, KeyRingError> {
        let mut stored = store.signing_keys().await?;
        if !stored.iter().any(|k| k.retired_at.is_none()) {
            add_key(store, &master, 0).await?;
            stored = store.signing_keys().await?;
        }
        let set = build(&master, &stored)?;
        Ok(Self {
            master,
            current: RwLock::new(Arc::new(set)),
        })
    }

    /// The current key set.
    pub fn get(&self) -> Arc<KeySet> {
        self.current.read().expect("key ring lock").clone()
    }

    /// Reloads keys from the store (after a rotation by any node).
    pub async fn reload(&self, store: &dyn Store) -> Result<(), KeyRingError> {
        let stored = store.signing_keys().await?;
        let set = build(&self.master, &stored)?;
        *self.current.write().expect("key ring lock") = Arc::new(set);
        Ok(())
    }

    /// Adds a new current key; the previous one stays published for `overlap` seconds.
    pub async fn rotate(&self, store: &dyn Store, overlap: i64) -> Result<String, KeyRingError> {
        let kid = add_key(store, &self.master, overlap).await?;
        self.reload(store).await?;
        Ok(kid)
    }
}

async fn add_key(
    store: &dyn Store,
    master: &MasterKey,
    overlap: i64,
) -> Result<String, KeyRingError> {
    let now = clock::now();
    let kid = random_id("k_");
    let key = StoredKey {
        kid: kid.clone(),
        alg: "ES256".into(),
        sealed_private_key: master.seal(&kid, &generate_es256_pkcs8()),
        created_at: now,
        retired_at: None,
        remove_after: None,
    };
    store.add_signing_key(&key, now + overlap).await?;
    Ok(kid)
}

fn build(master: &MasterKey, stored: &[StoredKey]) -> Result<KeySet, KeyRingError> {
    let now = clock::now();
    let mut signer = None;
    let mut verifiers = vec![];
    for k in stored {
        if k.remove_after.is_some_and(|r| r <= now) {
            continue;
        }
        let err = |source| KeyRingError::Key {
            kid: k.kid.clone(),
            source,
        };
        let pkcs8 = master.open(&k.kid, &k.sealed_private_key).map_err(err)?;
        let key = SigningKey::from_pkcs8(&k.kid, &pkcs8).map_err(err)?;
        verifiers.push(key.verifying_key());
        if k.retired_at.is_none() {
            signer = Some(key);
        }
    }
    let signer = signer
        .ok_or_else(|| KeyRingError::Store(StoreError::Backend("no current signing key".into())))?;
    // Newest first, so clients that take the first key take the current one.
    verifiers.reverse();
    let jwks = serde_json::json!({ "keys": verifiers.iter().map(|v| v.jwk()).collect::<Vec<_>>() })
        .to_string();
    Ok(KeySet {
        signer,
        verifiers,
        jwks,
    })
}

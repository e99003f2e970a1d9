//! The signing key ring: the current signing key (ES256, RS256 or EdDSA) and every key
//! still published.
//!
//! Keys live in the database, sealed with the master key, so every node signs with the
//! same key and publishes the same JWK Set. Each node reloads them periodically; a
//! rotation adds a new current key and keeps the old one published for the overlap.
//! The ring also holds the SAML SP key that signs AuthnRequests, made on first use.

use std::sync::{Arc, RwLock};

use tessera_core::jwt::{
    Alg, KeyError, MasterKey, SigningKey, UnknownAlg, VerifyingKey, generate_pkcs8,
};
use tessera_core::secret::random_id;
use tessera_core::store::{Store, StoreError, StoredKey};
use tessera_saml::sp_key::{SpSigningKey, generate_sp_signing_key};

use crate::clock;

/// The keys in use at one moment.
pub struct KeySet {
    pub signer: SigningKey,
    pub verifiers: Vec<VerifyingKey>,
    /// The JWK Set document, rendered once.
    pub jwks: String,
    /// The algorithms of the published keys, the current key's first (for discovery).
    pub algs: Vec<Alg>,
}

/// Errors while loading keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key {kid}: {source}")]
    Key { kid: String, source: KeyError },
    #[error("SAML SP key: {0}")]
    SamlSp(String),
    #[error("signing key {kid}: {source}")]
    UnknownAlg { kid: String, source: UnknownAlg },
    #[error("cannot make a signing key: {0}")]
    Generate(String),
}

/// The seal context of the SAML SP key.
const SAML_SP_KEY: &str = "saml-sp-key";

/// The shared, reloadable key set.
pub struct KeyRing {
    master: MasterKey,
    current: RwLock<Arc<KeySet>>,
    saml_sp: tokio::sync::OnceCell<Arc<SpSigningKey>>,
}

impl KeyRing {
    /// Loads keys from the store, creating the first key (of `alg`) on a fresh database.
    pub async fn load(
        store: &dyn Store,
        master: MasterKey,
        alg: Alg,
    ) -> Result<Self, KeyRingError> {
        let mut stored = store.signing_keys().await?;
        if !stored.iter().any(|k| k.retired_at.is_none()) {
            add_key(store, &master, 0, alg).await?;
            stored = store.signing_keys().await?;
        }
        let set = build(&master, &stored)?;
        Ok(Self {
            master,
            current: RwLock::new(Arc::new(set)),
            saml_sp: tokio::sync::OnceCell::new(),
        })
    }

    /// The SAML SP signing key: loaded from the store, or made and stored on first use
    /// (when nodes race, the first one stored wins and every node uses it).
    pub async fn saml_sp_key(&self, store: &dyn Store) -> Result<Arc<SpSigningKey>, KeyRingError> {
        self.saml_sp
            .get_or_try_init(|| async {
                let (sealed, cert_pem) = match store.saml_sp_key().await? {
                    Some(k) => k,
                    None => {
                        let made = tokio::task::spawn_blocking(|| {
                            generate_sp_signing_key("Tessera SAML service provider")
                        })
                        .await
                        .map_err(|e| KeyRingError::SamlSp(e.to_string()))?
                        .map_err(|e| KeyRingError::SamlSp(e.to_string()))?;
                        let sealed = self.master.seal(SAML_SP_KEY, made.key_pem.as_bytes());
                        store
                            .init_saml_sp_key(&sealed, &made.cert_pem, clock::now())
                            .await?
                    }
                };
                let key_pem = self
                    .master
                    .open(SAML_SP_KEY, &sealed)
                    .ok()
                    .and_then(|k| String::from_utf8(k).ok())
                    .ok_or_else(|| {
                        KeyRingError::SamlSp(
                            "cannot unseal it: is this the right master key?".into(),
                        )
                    })?;
                Ok(Arc::new(SpSigningKey { key_pem, cert_pem }))
            })
            .await
            .cloned()
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

    /// Adds a new current key of `alg`; the previous one stays published for `overlap`
    /// seconds.
    pub async fn rotate(
        &self,
        store: &dyn Store,
        overlap: i64,
        alg: Alg,
    ) -> Result<String, KeyRingError> {
        let kid = add_key(store, &self.master, overlap, alg).await?;
        self.reload(store).await?;
        Ok(kid)
    }
}

async fn add_key(
    store: &dyn Store,
    master: &MasterKey,
    overlap: i64,
    alg: Alg,
) -> Result<String, KeyRingError> {
    // RSA key generation takes up to a second: keep it off the async workers.
    let pkcs8 = tokio::task::spawn_blocking(move || generate_pkcs8(alg))
        .await
        .map_err(|e| KeyRingError::Generate(e.to_string()))?;
    let now = clock::now();
    let kid = random_id("k_");
    let key = StoredKey {
        kid: kid.clone(),
        alg: alg.as_str().into(),
        sealed_private_key: master.seal(&kid, &pkcs8),
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
        let alg = Alg::parse(&k.alg).map_err(|source| KeyRingError::UnknownAlg {
            kid: k.kid.clone(),
            source,
        })?;
        let pkcs8 = master.open(&k.kid, &k.sealed_private_key).map_err(err)?;
        let key = SigningKey::from_pkcs8(&k.kid, alg, &pkcs8).map_err(err)?;
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
    let mut algs = vec![signer.alg()];
    for v in &verifiers {
        if !algs.contains(&v.alg) {
            algs.push(v.alg);
        }
    }
    Ok(KeySet {
        signer,
        verifiers,
        jwks,
        algs,
    })
}

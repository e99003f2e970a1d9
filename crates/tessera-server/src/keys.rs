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
use tessera_core::store::{
    KEY_PURPOSE_ACCESS, KEY_PURPOSE_ID_TOKEN, KEY_PURPOSE_SAML_ENCRYPTION, Store, StoreError,
    StoredKey,
};
use tessera_saml::sp_key::{SpSigningKey, generate_sp_signing_key};

use crate::clock;

/// The keys in use at one moment.
pub struct KeySet {
    pub signer: SigningKey,
    /// The RS256 key of ID tokens, when the access tokens' key is not RS256 (OpenID
    /// Connect Core §15.1 and Discovery §3 make RS256 the one algorithm every relying
    /// party may count on).
    id_signer: Option<SigningKey>,
    /// The keys that verify this server's ID tokens (a logout's `id_token_hint`).
    pub id_verifiers: Vec<VerifyingKey>,
    pub verifiers: Vec<VerifyingKey>,
    /// The JWK Set document, rendered once.
    pub jwks: String,
    /// The algorithms of the published keys, the current key's first (for discovery).
    pub algs: Vec<Alg>,
    /// The SAML SP's decryption keys, newest first: the first is published in the SP
    /// metadata; the others still decrypt until their overlap ends.
    pub saml_encryption: Vec<SamlEncryptionKey>,
}

/// One SAML SP decryption key and the certificate IdPs encrypt to.
#[derive(Clone)]
pub struct SamlEncryptionKey {
    pub kid: String,
    pub key_pem: String,
    pub cert_pem: String,
    pub created_at: i64,
    /// Still decrypts until then (a rotated-out key); None for the current key.
    pub remove_after: Option<i64>,
}

/// How long a SAML encryption key made on first use stays usable if another node made
/// one at the same moment (the later one becomes current).
const SAML_ENCRYPTION_RACE_OVERLAP: i64 = 30 * 24 * 3600;

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
    /// Held while the first SAML encryption key is made.
    saml_encryption_init: tokio::sync::Mutex<()>,
}

impl KeySet {
    /// The key that signs ID tokens: always RS256.
    pub fn id_token_signer(&self) -> &SigningKey {
        self.id_signer.as_ref().unwrap_or(&self.signer)
    }
}

fn current(stored: &[StoredKey], purpose: &str) -> Option<Alg> {
    stored
        .iter()
        .rev()
        .find(|k| k.retired_at.is_none() && k.purpose == purpose)
        .and_then(|k| Alg::parse(&k.alg).ok())
}

impl KeyRing {
    /// Loads keys from the store, creating the first key (of `alg`) on a fresh database,
    /// and the RS256 key of ID tokens when the access tokens' key is of another algorithm.
    pub async fn load(
        store: &dyn Store,
        master: MasterKey,
        alg: Alg,
    ) -> Result<Self, KeyRingError> {
        let mut stored = store.signing_keys().await?;
        if current(&stored, KEY_PURPOSE_ACCESS).is_none() {
            add_key(store, &master, 0, alg, KEY_PURPOSE_ACCESS).await?;
            stored = store.signing_keys().await?;
        }
        if current(&stored, KEY_PURPOSE_ACCESS) != Some(Alg::Rs256)
            && current(&stored, KEY_PURPOSE_ID_TOKEN).is_none()
        {
            add_key(store, &master, 0, Alg::Rs256, KEY_PURPOSE_ID_TOKEN).await?;
            stored = store.signing_keys().await?;
        }
        let set = build(&master, &stored)?;
        Ok(Self {
            master,
            current: RwLock::new(Arc::new(set)),
            saml_sp: tokio::sync::OnceCell::new(),
            saml_encryption_init: tokio::sync::Mutex::new(()),
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

    /// The key set with the SAML SP's decryption keys, making the first one on first use
    /// (an RSA key and its self-signed certificate, sealed like every key).
    pub async fn saml_encryption(&self, store: &dyn Store) -> Result<Arc<KeySet>, KeyRingError> {
        let set = self.get();
        if !set.saml_encryption.is_empty() {
            return Ok(set);
        }
        let _made_once = self.saml_encryption_init.lock().await;
        self.reload(store).await?;
        if self.get().saml_encryption.is_empty() {
            add_saml_encryption_key(store, &self.master, SAML_ENCRYPTION_RACE_OVERLAP).await?;
            self.reload(store).await?;
        }
        Ok(self.get())
    }

    /// A new SAML encryption key, published from now on; the previous one still decrypts
    /// for `overlap` seconds, while the IdPs are given the new certificate.
    pub async fn rotate_saml_encryption(
        &self,
        store: &dyn Store,
        overlap: i64,
    ) -> Result<String, KeyRingError> {
        let _one_at_a_time = self.saml_encryption_init.lock().await;
        let kid = add_saml_encryption_key(store, &self.master, overlap).await?;
        self.reload(store).await?;
        Ok(kid)
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
    /// seconds. The ID tokens' RS256 key rotates with it (a rotation after a leak must
    /// leave no old key signing anything).
    pub async fn rotate(
        &self,
        store: &dyn Store,
        overlap: i64,
        alg: Alg,
    ) -> Result<String, KeyRingError> {
        let kid = add_key(store, &self.master, overlap, alg, KEY_PURPOSE_ACCESS).await?;
        // An RS256 access key signs the ID tokens itself.
        if alg != Alg::Rs256 {
            add_key(
                store,
                &self.master,
                overlap,
                Alg::Rs256,
                KEY_PURPOSE_ID_TOKEN,
            )
            .await?;
        }
        self.reload(store).await?;
        Ok(kid)
    }
}

async fn add_key(
    store: &dyn Store,
    master: &MasterKey,
    overlap: i64,
    alg: Alg,
    purpose: &str,
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
        purpose: purpose.to_string(),
        certificate: None,
    };
    store.add_signing_key(&key, now + overlap).await?;
    Ok(kid)
}

async fn add_saml_encryption_key(
    store: &dyn Store,
    master: &MasterKey,
    overlap: i64,
) -> Result<String, KeyRingError> {
    let made = tokio::task::spawn_blocking(|| {
        generate_sp_signing_key("Tessera SAML service provider encryption")
    })
    .await
    .map_err(|e| KeyRingError::SamlSp(e.to_string()))?
    .map_err(|e| KeyRingError::SamlSp(e.to_string()))?;
    let now = clock::now();
    let kid = random_id("e_");
    let key = StoredKey {
        kid: kid.clone(),
        alg: "RSA-OAEP".into(),
        sealed_private_key: master.seal(&kid, made.key_pem.as_bytes()),
        created_at: now,
        retired_at: None,
        remove_after: None,
        purpose: KEY_PURPOSE_SAML_ENCRYPTION.into(),
        certificate: Some(made.cert_pem),
    };
    store.add_signing_key(&key, now + overlap).await?;
    Ok(kid)
}

fn build(master: &MasterKey, stored: &[StoredKey]) -> Result<KeySet, KeyRingError> {
    let now = clock::now();
    let mut signer = None;
    let mut id_signer = None;
    let mut access_algs = vec![];
    let mut verifiers = vec![];
    let mut id_keys = vec![];
    let mut saml_encryption = vec![];
    for k in stored {
        if k.remove_after.is_some_and(|r| r <= now) {
            continue;
        }
        let err = |source| KeyRingError::Key {
            kid: k.kid.clone(),
            source,
        };
        if k.purpose == KEY_PURPOSE_SAML_ENCRYPTION {
            let pem = master.open(&k.kid, &k.sealed_private_key).map_err(err)?;
            saml_encryption.push(SamlEncryptionKey {
                kid: k.kid.clone(),
                key_pem: String::from_utf8(pem)
                    .map_err(|_| KeyRingError::SamlSp(format!("key {} is not PEM text", k.kid)))?,
                cert_pem: k.certificate.clone().unwrap_or_default(),
                created_at: k.created_at,
                remove_after: k.remove_after,
            });
            continue;
        }
        let alg = Alg::parse(&k.alg).map_err(|source| KeyRingError::UnknownAlg {
            kid: k.kid.clone(),
            source,
        })?;
        let pkcs8 = master.open(&k.kid, &k.sealed_private_key).map_err(err)?;
        let key = SigningKey::from_pkcs8(&k.kid, alg, &pkcs8).map_err(err)?;
        let access = k.purpose == KEY_PURPOSE_ACCESS;
        // Only access-token keys verify access tokens: an ID token is never one.
        if access {
            verifiers.push(key.verifying_key());
            access_algs.push(alg);
        } else {
            id_keys.push(key.verifying_key());
        }
        if k.retired_at.is_none() {
            if access {
                signer = Some(key);
            } else if alg == Alg::Rs256 {
                id_signer = Some(key);
            }
        }
    }
    let signer = signer
        .ok_or_else(|| KeyRingError::Store(StoreError::Backend("no current signing key".into())))?;
    // Newest first, so clients that take the first key take the current one.
    verifiers.reverse();
    saml_encryption.reverse();
    id_keys.reverse();
    let jwks = serde_json::json!({
        "keys": verifiers.iter().chain(&id_keys).map(|v| v.jwk()).collect::<Vec<_>>()
    })
    .to_string();
    let mut algs = vec![signer.alg()];
    for a in access_algs.into_iter().rev() {
        if !algs.contains(&a) {
            algs.push(a);
        }
    }
    let id_verifiers = id_keys
        .iter()
        .chain(verifiers.iter().filter(|v| v.alg == Alg::Rs256))
        .cloned()
        .collect();
    // When the access key is RS256 itself, it signs the ID tokens too.
    let id_signer = id_signer.filter(|_| signer.alg() != Alg::Rs256);
    Ok(KeySet {
        signer,
        id_signer,
        id_verifiers,
        verifiers,
        jwks,
        algs,
        saml_encryption,
    })
}

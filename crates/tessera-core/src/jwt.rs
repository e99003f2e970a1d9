//! JWT access tokens (RFC 9068) signed with ES256, signing keys encrypted at rest with the
//! master key (AES-256-GCM), and the JWK Set that publishes them.
//!
//! JWS compact serialisation is written here by hand on top of `ring` rather than through
//! `jsonwebtoken`: that crate re-parses the PKCS#8 key (a P-256 scalar multiplication) on
//! every signature, which would double the cost of each token. A parsed key is kept here.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};

use crate::model::Timestamp;
use crate::secret::random_bytes;

/// Errors of key handling and token verification.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the master key must be 32 bytes in standard base64 (openssl rand -base64 32)")]
    MasterKeyFormat,
    #[error("a signing key cannot be decrypted with this master key (wrong TESSERA_MASTER_KEY?)")]
    Decrypt,
    #[error("a stored signing key is malformed")]
    Malformed,
    #[error("the token is malformed")]
    TokenMalformed,
    #[error("the token's signature is invalid or its key is unknown")]
    TokenSignature,
    #[error("the token has expired")]
    TokenExpired,
}

/// The key that encrypts signing keys at rest. Never printed.
pub struct MasterKey(LessSafeKey);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// Reads a master key from standard base64 (32 bytes).
    pub fn from_base64(s: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|_| KeyError::MasterKeyFormat)?;
        if bytes.len() != 32 {
            return Err(KeyError::MasterKeyFormat);
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| KeyError::MasterKeyFormat)?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// A new random master key, as standard base64.
    pub fn generate_base64() -> String {
        let mut b = [0u8; 32];
        random_bytes(&mut b);
        STANDARD.encode(b)
    }

    /// Encrypts `plain`, bound to `context` (the key id): `nonce || ciphertext || tag`.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        random_bytes(&mut nonce);
        let mut buf = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .expect("AES-GCM sealing of a small buffer cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        out
    }

    /// Decrypts what [`MasterKey::seal`] produced for the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < 12 + 16 {
            return Err(KeyError::Decrypt);
        }
        let (nonce, rest) = sealed.split_at(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Decrypt)?;
        let mut buf = rest.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| KeyError::Decrypt)?;
        Ok(plain.to_vec())
    }
}

/// A new ES256 private key as PKCS#8 DER.
pub fn generate_es256_pkcs8() -> Vec<u8> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .expect("P-256 key generation cannot fail with the system RNG")
        .as_ref()
        .to_vec()
}

/// A parsed ES256 signing key.
pub struct SigningKey {
    pub kid: String,
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    header_b64: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

/// A public key that verifies tokens, published in the JWK Set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    pub kid: String,
    /// The uncompressed SEC1 point (0x04 || X || Y).
    pub point: Vec<u8>,
}

impl SigningKey {
    /// Parses a PKCS#8 ES256 key.
    pub fn from_pkcs8(kid: &str, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|_| KeyError::Malformed)?;
        let header = serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
        Ok(Self {
            kid: kid.to_string(),
            pair,
            rng,
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
        })
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            kid: self.kid.clone(),
            point: self.pair.public_key().as_ref().to_vec(),
        }
    }

    /// Signs `claims` as a compact JWS with header `{"alg":"ES256","typ":"at+jwt","kid":..}`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let payload = serde_json::to_vec(claims).expect("claims serialise to JSON");
        let mut out = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 100);
        out.push_str(&self.header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
        let sig = self
            .pair
            .sign(&self.rng, out.as_bytes())
            .expect("ECDSA signing cannot fail with the system RNG");
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut out);
        out
    }
}

impl VerifyingKey {
    /// The key as a JWK (RFC 7517/7518).
    pub fn jwk(&self) -> serde_json::Value {
        let (x, y) = self.point[1..].split_at(32);
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        })
    }
}

/// The claims of an access token (RFC 9068 §2.2, plus `org` and `scope`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub org: String,
    pub scope: String,
    pub jti: String,
    pub iat: Timestamp,
    pub exp: Timestamp,
}

/// Verifies an ES256 compact JWS against `keys` and checks `exp` at `now`.
/// The caller checks `iss`, `aud` and scope.
pub fn verify(
    token: &str,
    keys: &[VerifyingKey],
    now: Timestamp,
) -> Result<AccessClaims, KeyError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(KeyError::TokenMalformed);
    };
    #[derive(Deserialize)]
    struct Header {
        alg: String,
        kid: Option<String>,
    }
    let header: Header = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(KeyError::TokenMalformed)?;
    if header.alg != "ES256" {
        return Err(KeyError::TokenSignature);
    }
    let key = keys
        .iter()
        .find(|k| Some(&k.kid) == header.kid.as_ref())
        .ok_or(KeyError::TokenSignature)?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| KeyError::TokenMalformed)?;
    let signed = &token[..h.len() + 1 + p.len()];
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.point)
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| KeyError::TokenSignature)?;
    let claims: AccessClaims = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(KeyError::TokenMalformed)?;
    if claims.exp <= now {
        return Err(KeyError::TokenExpired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: Timestamp) -> AccessClaims {
        AccessClaims {
            iss: "http://i".into(),
            sub: "s".into(),
            aud: "http://i".into(),
            client_id: "c".into(),
            org: "o".into(),
            scope: "a b".into(),
            jti: "j".into(),
            iat: 0,
            exp,
        }
    }

    #[test]
    fn sign_and_verify() {
        let k = SigningKey::from_pkcs8("k1", &generate_es256_pkcs8()).unwrap();
        let t = k.sign(&claims(100));
        let v = verify(&t, &[k.verifying_key()], 50).unwrap();
        assert_eq!(v, claims(100));
        assert!(matches!(
            verify(&t, &[k.verifying_key()], 100),
            Err(KeyError::TokenExpired)
        ));
        let other = SigningKey::from_pkcs8("k1", &generate_es256_pkcs8()).unwrap();
        assert!(verify(&t, &[other.verifying_key()], 50).is_err());
        // Tampered payload.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(999)).unwrap());
        parts[1] = &forged;
        assert!(verify(&parts.join("."), &[k.verifying_key()], 50).is_err());
        let jwk = k.verifying_key().jwk();
        assert_eq!(jwk["crv"], "P-256");
    }

    #[test]
    fn master_key_seals() {
        let m = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        let sealed = m.seal("kid", b"private");
        assert_eq!(m.open("kid", &sealed).unwrap(), b"private");
        assert!(m.open("other", &sealed).is_err());
        let m2 = MasterKey::from_base64(&MasterKey::generate_base64()).unwrap();
        assert!(m2.open("kid", &sealed).is_err());
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
    }
}

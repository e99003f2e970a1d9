//! Secrets: client secrets (generated, high-entropy, stored as SHA-256) and human
//! passwords (argon2id). Secret values live in [`SecretString`], which never prints.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// The prefix of every generated client secret, so secret scanners can find leaked ones.
pub const CLIENT_SECRET_PREFIX: &str = "tsec_";

/// A secret value. `Debug` and `Display` print `[redacted]`; the value is reachable only
/// through [`SecretString::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself. Call sites are few and obvious on purpose.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) {
    SystemRandom::new()
        .fill(buf)
        .expect("the operating system's random number generator failed");
}

/// A random identifier: `prefix` followed by 16 random bytes in base64url.
pub fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 16];
    random_bytes(&mut b);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(b))
}

/// A freshly generated client secret: 256 random bits, prefixed `tsec_`.
pub struct GeneratedSecret {
    pub value: SecretString,
    pub hash: [u8; 32],
    pub hint: String,
}

/// Generates a client secret (256 bits of entropy).
pub fn generate_client_secret() -> GeneratedSecret {
    let mut b = [0u8; 32];
    random_bytes(&mut b);
    let value = format!("{CLIENT_SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(b));
    GeneratedSecret {
        hash: hash_client_secret(&value),
        hint: hint(&value),
        value: SecretString::new(value),
    }
}

/// The prefix of long-lived SCIM tokens (see `ScimToken`).
pub const SCIM_TOKEN_PREFIX: &str = "tscim_";

/// Generates a long-lived SCIM token: 256 random bits, prefixed `tscim_`, stored as its
/// SHA-256 like a client secret.
pub fn generate_scim_token() -> GeneratedSecret {
    let mut b = [0u8; 32];
    random_bytes(&mut b);
    let value = format!("{SCIM_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(b));
    GeneratedSecret {
        hash: hash_client_secret(&value),
        hint: hint(&value),
        value: SecretString::new(value),
    }
}

/// The non-secret hint shown for a secret: its last 4 characters.
pub fn hint(secret: &str) -> String {
    let n = secret.chars().count();
    secret.chars().skip(n.saturating_sub(4)).collect()
}

/// SHA-256 of a client secret. A fast hash is right here: generated secrets carry 256
/// bits of entropy, so no dictionary or brute force applies (unlike human passwords).
pub fn hash_client_secret(secret: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Constant-time comparison of two secret hashes.
pub fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// Hashes a human password with argon2id (PHC string).
pub fn hash_password(password: &SecretString) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    random_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    argon2::Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .expect("argon2id with default parameters cannot fail")
        .to_string()
}

/// An argon2id hash of a random password, made once: checked against when there is no
/// real hash, so an unknown user costs as much as a wrong password.
pub fn dummy_password_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut pw = [0u8; 16];
        random_bytes(&mut pw);
        {
            use base64::Engine;
            hash_password(&SecretString::new(
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pw),
            ))
        }
    })
}

/// Verifies a human password against its argon2id PHC string.
pub fn verify_password(password: &SecretString, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.expose().as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets() {
        let a = generate_client_secret();
        let b = generate_client_secret();
        assert!(a.value.expose().starts_with(CLIENT_SECRET_PREFIX));
        // 32 bytes in base64url without padding is 43 characters.
        assert_eq!(a.value.expose().len(), CLIENT_SECRET_PREFIX.len() + 43);
        assert_ne!(a.value, b.value);
        assert_eq!(a.hash, hash_client_secret(a.value.expose()));
        assert!(a.value.expose().ends_with(&a.hint));
        assert_eq!(
            format!("{:?} {}", a.value, a.value),
            "[redacted] [redacted]"
        );
    }

    #[test]
    fn password_round_trip() {
        let p = SecretString::new("correct horse");
        let h = hash_password(&p);
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&p, &h));
        assert!(!verify_password(&SecretString::new("wrong"), &h));
        assert!(!verify_password(&p, "not a hash"));
    }
}

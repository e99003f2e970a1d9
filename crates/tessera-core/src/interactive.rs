//! What the interactive login stores: authorization codes, the grants (one per code
//! exchange, the family of its refresh tokens) and refresh tokens; PKCE; the OIDC
//! scopes every org has.
//!
//! Codes and refresh tokens are 256-bit random values given to the client once; only
//! their SHA-256 is stored, so a database leak gives nothing usable.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::model::Timestamp;
use crate::secret::random_bytes;

/// How long an authorization code may wait for its exchange (seconds; RFC 6749 §4.1.2
/// recommends at most 10 minutes, OAuth 2.1 about one).
pub const CODE_SECONDS: i64 = 60;

/// The prefix of an authorization code, so a leaked one is recognisable.
pub const CODE_PREFIX: &str = "tcode_";
/// The prefix of a refresh token.
pub const REFRESH_PREFIX: &str = "trt_";

/// The OpenID Connect scopes, in every org's catalogue and open to every client that
/// may use the authorization code flow.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// True for a scope of [`OIDC_SCOPES`].
pub fn is_oidc_scope(s: &str) -> bool {
    OIDC_SCOPES.contains(&s)
}

/// A fresh code or refresh token with `prefix`, and the hash stored for it.
pub fn new_token(prefix: &str) -> (String, Vec<u8>) {
    let mut raw = [0u8; 32];
    random_bytes(&mut raw);
    let token = format!("{prefix}{}", URL_SAFE_NO_PAD.encode(raw));
    let hash = hash_token(&token);
    (token, hash)
}

/// The stored form of a code or refresh token.
pub fn hash_token(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// A random id for a grant (`grt_` and 128 bits).
pub fn new_grant_id() -> String {
    let mut raw = [0u8; 16];
    random_bytes(&mut raw);
    format!("grt_{}", URL_SAFE_NO_PAD.encode(raw))
}

/// The PKCE `S256` transform (RFC 7636 §4.2): base64url(SHA-256(verifier)).
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// A `code_verifier` or `code_challenge` as RFC 7636 §4.1 allows: 43 to 128 characters
/// of `A-Z a-z 0-9 - . _ ~`.
pub fn is_pkce_value(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// An authorization code as stored, with what it will give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCode {
    /// SHA-256 of the code.
    pub hash: Vec<u8>,
    /// The grant the exchange starts (chosen now, so a second use can revoke it).
    pub grant_id: String,
    pub org_id: i64,
    pub client_id: String,
    pub user_id: String,
    /// The `redirect_uri` of the authorization request; the exchange must repeat it.
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// The PKCE `S256` challenge, when the request sent one.
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    /// When the person authenticated (the session's start).
    pub auth_time: Timestamp,
    /// The session the login belongs to (OIDC `sid`).
    pub sid: String,
    /// How the person logged in: `saml` or `password`.
    pub auth_method: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Set by the first exchange.
    pub used_at: Option<Timestamp>,
}

/// What one login gave one client: the family of refresh tokens started by a code
/// exchange. Revoking it ends every token of the family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginGrant {
    pub id: String,
    pub org_id: i64,
    pub client_id: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub auth_time: Timestamp,
    pub sid: String,
    /// How the person logged in: `saml` or `password`.
    pub auth_method: String,
    pub created_at: Timestamp,
    /// The family's absolute end (the client's `refresh_token_ttl` after the login).
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// Why: a reason code (`code_reused`, `refresh_token_reused`) or what an admin did.
    pub revoked_reason: Option<String>,
}

impl LoginGrant {
    /// Neither revoked nor past its absolute end.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// A refresh token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    /// SHA-256 of the token.
    pub hash: Vec<u8>,
    pub grant_id: String,
    pub created_at: Timestamp,
    /// The token ends if unused until then (the client's `refresh_idle_ttl`).
    pub idle_expires_at: Timestamp,
    /// Set when it was exchanged for the next one; a second use is a replay.
    pub used_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    #[test]
    fn s256_matches_the_rfc_example() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn pkce_values() {
        assert!(is_pkce_value(&"a".repeat(43)));
        assert!(!is_pkce_value(&"a".repeat(42)));
        assert!(!is_pkce_value(&"a".repeat(129)));
        assert!(!is_pkce_value(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn tokens_are_prefixed_and_hashed() {
        let (t, h) = new_token(CODE_PREFIX);
        assert!(t.starts_with(CODE_PREFIX));
        assert_eq!(hash_token(&t), h);
        assert_ne!(new_token(CODE_PREFIX).0, t);
    }
}

//! Browser sessions: a server-side record behind an opaque, random cookie. Only the
//! token's SHA-256 is stored, so a database leak gives no usable session.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::model::Timestamp;
use crate::secret::random_bytes;

/// A session ends after this long without a request (seconds).
pub const IDLE_SECONDS: i64 = 30 * 60;
/// A session ends this long after login, however active (seconds).
pub const ABSOLUTE_SECONDS: i64 = 12 * 3600;

/// A logged-in person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 of the cookie's token.
    pub id_hash: Vec<u8>,
    pub org_id: i64,
    pub user_id: String,
    /// `saml` or `password`.
    pub method: String,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
}

impl Session {
    /// When the session ends if nothing else happens.
    pub fn expires_at(&self) -> Timestamp {
        (self.last_seen_at + IDLE_SECONDS).min(self.created_at + ABSOLUTE_SECONDS)
    }

    /// Still usable at `now` (idle and absolute timeouts).
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at()
    }

    /// The session's id as OpenID Connect names it (`sid`): derived from the stored
    /// hash, so it needs no column of its own and tells nothing about the cookie.
    pub fn sid(&self) -> String {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"tessera sid\0");
        ctx.update(&self.id_hash);
        URL_SAFE_NO_PAD.encode(&ctx.finish().as_ref()[..16])
    }
}

/// A fresh session token (for the cookie) and its hash (for the database).
pub fn new_token() -> (String, Vec<u8>) {
    let mut raw = [0u8; 32];
    random_bytes(&mut raw);
    let token = URL_SAFE_NO_PAD.encode(raw);
    let hash = hash_token(&token);
    (token, hash)
}

/// The stored form of a session token.
pub fn hash_token(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// The longest `return_to` accepted, in bytes: a path on this server needs no more, and
/// unauthenticated requests store it with each pending login.
pub const MAX_RETURN_TO: usize = 8192;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_absolute_timeouts() {
        let s = Session {
            id_hash: vec![],
            org_id: 1,
            user_id: "u".into(),
            method: "saml".into(),
            created_at: 0,
            last_seen_at: 0,
        };
        assert!(s.is_live(IDLE_SECONDS - 1));
        assert!(!s.is_live(IDLE_SECONDS));
        let busy = Session {
            last_seen_at: ABSOLUTE_SECONDS - 10,
            ..s
        };
        assert!(busy.is_live(ABSOLUTE_SECONDS - 1));
        assert!(!busy.is_live(ABSOLUTE_SECONDS));
        let (t1, h1) = new_token();
        let (t2, _) = new_token();
        assert_ne!(t1, t2);
        assert_eq!(hash_token(&t1), h1);
    }
}

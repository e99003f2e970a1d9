//! `private_key_jwt` (RFC 7523 §2.2, OIDC Core §9): a client's public keys as a JWK Set
//! (RFC 7517), and the verification of the JWTs it signs to authenticate.
//!
//! By hand on `ring` like the access tokens (`jwt.rs`): the same three algorithms, keys
//! parsed once from the JWK members, and no other JOSE feature reachable (no `alg: none`,
//! no embedded `jwk` or `x5u` header, no symmetric algorithm).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
    UnparsedPublicKey,
};
use serde::Deserialize;
use serde_json::Value;

use crate::jwt::Alg;

/// The most keys a client may register.
pub const MAX_KEYS: usize = 10;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// One public key of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    pub kid: Option<String>,
    pub alg: Alg,
    public: Public,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Public {
    /// The uncompressed SEC1 point, or the Ed25519 key.
    Bytes(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

fn member<'a>(jwk: &'a Value, name: &str) -> Result<&'a str, String> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the key has no '{name}' member"))
}

fn b64(jwk: &Value, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(member(jwk, name)?)
        .map_err(|_| format!("the key's '{name}' is not base64url"))
}

impl ClientKey {
    /// Parses one public JWK: EC P-256 (ES256), RSA of 2048 bits or more (RS256), or OKP
    /// Ed25519 (EdDSA). A private member (`d`) is refused: it would mean the client's
    /// private key left the client.
    pub fn from_jwk(jwk: &Value) -> Result<ClientKey, String> {
        if !jwk.is_object() {
            return Err("a key must be a JSON object".into());
        }
        if jwk.get("d").is_some() || jwk.get("p").is_some() {
            return Err("the key holds private members: register the public key only".into());
        }
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_string);
        if let Some(u) = jwk.get("use").and_then(Value::as_str)
            && u != "sig"
        {
            return Err(format!("the key's 'use' is '{u}'; a signing key has 'sig'"));
        }
        let (alg, public) = match member(jwk, "kty")? {
            "EC" => {
                if member(jwk, "crv")? != "P-256" {
                    return Err("an EC key must be on P-256 (ES256)".into());
                }
                let (x, y) = (b64(jwk, "x")?, b64(jwk, "y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("a P-256 key's 'x' and 'y' are 32 bytes each".into());
                }
                let mut point = vec![4];
                point.extend(x);
                point.extend(y);
                (Alg::Es256, Public::Bytes(point))
            }
            "RSA" => {
                let n = b64(jwk, "n")?;
                let e = b64(jwk, "e")?;
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < 2048 {
                    return Err("an RSA key must have at least 2048 bits".into());
                }
                (Alg::Rs256, Public::Rsa { n, e })
            }
            "OKP" => {
                if member(jwk, "crv")? != "Ed25519" {
                    return Err("an OKP key must be Ed25519 (EdDSA)".into());
                }
                let x = b64(jwk, "x")?;
                if x.len() != 32 {
                    return Err("an Ed25519 key's 'x' is 32 bytes".into());
                }
                (Alg::EdDsa, Public::Bytes(x))
            }
            other => {
                return Err(format!(
                    "key type '{}' is not supported; use EC P-256, RSA or OKP Ed25519",
                    crate::text::clip(other)
                ));
            }
        };
        if let Some(a) = jwk.get("alg").and_then(Value::as_str)
            && a != alg.as_str()
        {
            return Err(format!(
                "the key's 'alg' is '{a}' but the key is for {}",
                alg.as_str()
            ));
        }
        Ok(ClientKey { kid, alg, public })
    }

    /// Parses a JWK Set (`{"keys": [...]}`), 1 to [`MAX_KEYS`] keys, each with a
    /// distinct `kid` when there are several.
    pub fn parse_set(set: &Value) -> Result<Vec<ClientKey>, String> {
        let keys = set
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("a JWK Set is an object with a 'keys' array")?;
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(format!("a JWK Set here holds 1 to {MAX_KEYS} keys"));
        }
        let parsed: Vec<ClientKey> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| ClientKey::from_jwk(k).map_err(|e| format!("key {i}: {e}")))
            .collect::<Result<_, _>>()?;
        if parsed.len() > 1 {
            let mut kids: Vec<&str> = Vec::new();
            for (i, k) in parsed.iter().enumerate() {
                match k.kid.as_deref() {
                    None => return Err(format!("key {i}: several keys need a 'kid' each")),
                    Some(kid) if kids.contains(&kid) => {
                        return Err(format!("key {i}: 'kid' '{kid}' appears twice"));
                    }
                    Some(kid) => kids.push(kid),
                }
            }
        }
        Ok(parsed)
    }

    fn verifies(&self, signed: &[u8], sig: &[u8]) -> bool {
        match (&self.public, self.alg) {
            (Public::Bytes(p), Alg::Es256) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, p)
                .verify(signed, sig)
                .is_ok(),
            (Public::Bytes(p), Alg::EdDsa) => UnparsedPublicKey::new(&ED25519, p)
                .verify(signed, sig)
                .is_ok(),
            (Public::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, signed, sig)
                .is_ok(),
            _ => false,
        }
    }
}

/// The claims of a client assertion that the decision checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AssertionClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    #[serde(default)]
    pub aud: Audience,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
    pub jti: Option<String>,
}

/// `aud`: one string or several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
    #[default]
    None,
}

impl Audience {
    /// True when one of the audiences is in `accepted`.
    pub fn any_of(&self, accepted: &[&str]) -> bool {
        match self {
            Audience::One(a) => accepted.contains(&a.as_str()),
            Audience::Many(v) => v.iter().any(|a| accepted.contains(&a.as_str())),
            Audience::None => false,
        }
    }
}

/// The `kid` in a compact JWS's header, read without verifying anything: to tell
/// whether a client's cached JWK Set could hold the key, before fetching it again.
pub fn unverified_kid(jwt: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Header {
        kid: Option<String>,
    }
    let header = jwt.split('.').next()?;
    let h: Header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    h.kid
}

/// Whether a JWK Set (as stored or fetched) has a key with this `kid`.
pub fn set_has_kid(set: &Value, kid: &str) -> bool {
    set.get("keys")
        .and_then(Value::as_array)
        .is_some_and(|keys| {
            keys.iter()
                .any(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        })
}

/// The claims of an assertion, read without checking its signature: only to know which
/// client it names (the facts to load). Nothing is trusted from this.
pub fn unverified_claims(jwt: &str) -> Option<AssertionClaims> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// Verifies an assertion's signature with the client's keys (the header's `kid` picks
/// one when present, and its `alg` must be that key's) and returns its claims.
pub fn verify_assertion(jwt: &str, keys: &[ClientKey]) -> Result<AssertionClaims, String> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the client_assertion is not a compact JWS (three dot-separated parts)".into());
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
        .ok_or("the client_assertion's header is not base64url JSON with an 'alg'")?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "the client_assertion's signature is not base64url")?;
    let signed = &jwt.as_bytes()[..h.len() + 1 + p.len()];
    let candidates: Vec<&ClientKey> = keys
        .iter()
        .filter(|k| header.kid.is_none() || k.kid == header.kid)
        .collect();
    if candidates.is_empty() {
        return Err(format!(
            "no registered key of the client has kid '{}'",
            crate::text::clip(header.kid.as_deref().unwrap_or(""))
        ));
    }
    let matching: Vec<&&ClientKey> = candidates
        .iter()
        .filter(|k| k.alg.as_str() == header.alg)
        .collect();
    if matching.is_empty() {
        return Err(format!(
            "alg '{}' is not the algorithm of the client's key{}",
            crate::text::clip(&header.alg),
            if candidates.len() > 1 { "s" } else { "" }
        ));
    }
    if !matching.iter().any(|k| k.verifies(signed, &sig)) {
        return Err("the signature does not verify with the client's registered key".into());
    }
    URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| "the client_assertion's payload is not a JSON object of claims".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{SigningKey, generate_pkcs8};

    fn key(alg: Alg, kid: &str) -> (SigningKey, Value) {
        let k = SigningKey::from_pkcs8(kid, alg, &generate_pkcs8(alg)).unwrap();
        let jwk = k.verifying_key().jwk();
        (k, jwk)
    }

    #[test]
    fn each_algorithm_verifies_and_a_wrong_key_does_not() {
        for alg in Alg::ALL {
            let (k, jwk) = key(alg, "k1");
            let keys = ClientKey::parse_set(&serde_json::json!({ "keys": [jwk] })).unwrap();
            let jwt = k.sign(
                &serde_json::json!({"iss": "c", "sub": "c", "aud": "x", "jti": "1", "exp": 5}),
            );
            let c = verify_assertion(&jwt, &keys).unwrap();
            assert_eq!(c.aud, Audience::One("x".into()));
            let (_, other) = key(alg, "k1");
            let wrong = ClientKey::parse_set(&serde_json::json!({ "keys": [other] })).unwrap();
            assert!(verify_assertion(&jwt, &wrong).is_err(), "{alg:?}");
        }
    }

    #[test]
    fn sets_are_checked() {
        let (_, a) = key(Alg::Es256, "a");
        let (_, b) = key(Alg::EdDsa, "a");
        assert!(ClientKey::parse_set(&serde_json::json!({"keys": [a.clone(), b]})).is_err());
        assert!(ClientKey::parse_set(&serde_json::json!({"keys": []})).is_err());
        assert!(ClientKey::parse_set(&serde_json::json!([a.clone()])).is_err());
        let mut private = a.clone();
        private["d"] = "AAAA".into();
        assert!(ClientKey::from_jwk(&private).is_err());
        let mut hs = a;
        hs["kty"] = "oct".into();
        assert!(ClientKey::from_jwk(&hs).is_err());
    }

    #[test]
    fn alg_none_and_garbage_are_refused() {
        let (_, jwk) = key(Alg::Es256, "k");
        let keys = ClientKey::parse_set(&serde_json::json!({ "keys": [jwk] })).unwrap();
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k"}"#),
            URL_SAFE_NO_PAD.encode(r#"{"iss":"c"}"#)
        );
        assert!(verify_assertion(&none, &keys).is_err());
        assert!(verify_assertion("a.b", &keys).is_err());
        assert!(verify_assertion("", &keys).is_err());
    }
}

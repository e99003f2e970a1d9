//! JWT access tokens (RFC 9068) signed with ES256 (default), RS256 or EdDSA (Ed25519),
//! signing keys encrypted at rest with the master key (AES-256-GCM), and the JWK Set that
//! publishes them.
//!
//! JWS compact serialisation is written here by hand on top of `ring` rather than through
//! `jsonwebtoken`: that crate re-parses the PKCS#8 key (a P-256 scalar multiplication) on
//! every signature, which would double the cost of each token. A parsed key is kept here.
//! `ring` cannot generate RSA keys, so RS256 keys are made with the RustCrypto `rsa` crate
//! (already in the tree for SAML) and then parsed and used by `ring` like the others.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
    RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm,
};
use serde::{Deserialize, Serialize};

use crate::model::Timestamp;
use crate::secret::random_bytes;

/// A JWS signing algorithm Tessera signs access tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256: the default, and the fastest to sign.
    #[default]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys: for verifiers that know only RSA.
    Rs256,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

impl Alg {
    /// Every algorithm, default first.
    pub const ALL: [Alg; 3] = [Alg::Es256, Alg::Rs256, Alg::EdDsa];

    /// The JOSE name (`alg` header and JWK parameter).
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// Parses a JOSE name; case-insensitive, so `eddsa` and `es256` are accepted too.
    pub fn parse(s: &str) -> Result<Alg, UnknownAlg> {
        Alg::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownAlg(s.to_string()))
    }
}

/// A signing algorithm name Tessera does not sign with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signing algorithm '{0}': use ES256, RS256 or EdDSA")]
pub struct UnknownAlg(pub String);

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// A new private key for `alg` as PKCS#8 DER. An RSA key takes tens to hundreds of
/// milliseconds to make: call it off the async runtime.
pub fn generate_pkcs8(alg: Alg) -> Vec<u8> {
    let rng = SystemRandom::new();
    match alg {
        Alg::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key generation cannot fail with the system RNG")
            .as_ref()
            .to_vec(),
        Alg::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
            .expect("Ed25519 key generation cannot fail with the system RNG")
            .as_ref()
            .to_vec(),
        Alg::Rs256 => {
            use rsa::pkcs8::EncodePrivateKey;
            rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .and_then(|k| k.to_pkcs8_der().map_err(rsa::Error::from))
                .expect("RSA-2048 key generation cannot fail with the system RNG")
                .as_bytes()
                .to_vec()
        }
    }
}

/// The parsed private key of one algorithm.
enum Pair {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// A parsed signing key.
pub struct SigningKey {
    pub kid: String,
    pair: Pair,
    rng: SystemRandom,
    header_b64: String,
    /// The header of ID tokens (`typ` `JWT`), so neither kind passes for the other.
    id_header_b64: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg())
            .finish()
    }
}

/// A public key that verifies tokens, published in the JWK Set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    pub kid: String,
    pub alg: Alg,
    /// The public key as `ring` verifies it: the uncompressed SEC1 point for ES256, the
    /// 32 bytes for EdDSA, the DER `RSAPublicKey` for RS256.
    public: Vec<u8>,
    /// The JWK members that carry the key (`kty`, `crv`, `x`, `y`, `n`, `e`).
    jwk_members: Vec<(&'static str, String)>,
}

impl SigningKey {
    /// Parses a PKCS#8 key of `alg`.
    pub fn from_pkcs8(kid: &str, alg: Alg, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pair = match alg {
            Alg::Es256 => Pair::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                    .map_err(|_| KeyError::Malformed)?,
            ),
            Alg::Rs256 => {
                Pair::Rs256(RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| KeyError::Malformed)?)
            }
            Alg::EdDsa => Pair::EdDsa(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                    .map_err(|_| KeyError::Malformed)?,
            ),
        };
        let header = serde_json::json!({"alg": alg.as_str(), "typ": "at+jwt", "kid": kid});
        let id_header = serde_json::json!({"alg": alg.as_str(), "typ": "JWT", "kid": kid});
        Ok(Self {
            kid: kid.to_string(),
            pair,
            rng,
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
            id_header_b64: URL_SAFE_NO_PAD.encode(id_header.to_string()),
        })
    }

    /// The key's algorithm.
    pub fn alg(&self) -> Alg {
        match self.pair {
            Pair::Es256(_) => Alg::Es256,
            Pair::Rs256(_) => Alg::Rs256,
            Pair::EdDsa(_) => Alg::EdDsa,
        }
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let (public, jwk_members) = match &self.pair {
            Pair::Es256(p) => {
                let point = p.public_key().as_ref().to_vec();
                let (x, y) = point[1..].split_at(32);
                let members = vec![
                    ("kty", "EC".into()),
                    ("crv", "P-256".into()),
                    ("x", b64(x)),
                    ("y", b64(y)),
                ];
                (point, members)
            }
            Pair::Rs256(p) => {
                let c = RsaPublicKeyComponents::<Vec<u8>>::from(p.public());
                let members = vec![("kty", "RSA".into()), ("n", b64(&c.n)), ("e", b64(&c.e))];
                (p.public().as_ref().to_vec(), members)
            }
            Pair::EdDsa(p) => {
                let x = p.public_key().as_ref().to_vec();
                let members = vec![
                    ("kty", "OKP".into()),
                    ("crv", "Ed25519".into()),
                    ("x", b64(&x)),
                ];
                (x, members)
            }
        };
        VerifyingKey {
            kid: self.kid.clone(),
            alg: self.alg(),
            public,
            jwk_members,
        }
    }

    /// Signs `claims` as a compact JWS with header `{"alg":..,"typ":"at+jwt","kid":..}`
    /// (an access token, RFC 9068).
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        self.sign_with(&self.header_b64, claims)
    }

    /// Signs an OpenID Connect ID token (header `typ` `JWT`).
    pub fn sign_id_token<T: Serialize>(&self, claims: &T) -> String {
        self.sign_with(&self.id_header_b64, claims)
    }

    /// The `at_hash` of an access token for an ID token signed with this key (OIDC Core
    /// §3.1.3.6): the left half of the hash the algorithm uses, base64url. Ed25519 has no
    /// hash of its own; SHA-512, as relying parties compute it for EdDSA.
    pub fn at_hash(&self, access_token: &str) -> String {
        let alg = match self.pair {
            Pair::EdDsa(_) => &ring::digest::SHA512,
            _ => &ring::digest::SHA256,
        };
        let d = ring::digest::digest(alg, access_token.as_bytes());
        let half = &d.as_ref()[..d.as_ref().len() / 2];
        URL_SAFE_NO_PAD.encode(half)
    }

    fn sign_with<T: Serialize>(&self, header_b64: &str, claims: &T) -> String {
        let payload = serde_json::to_vec(claims).expect("claims serialise to JSON");
        let mut out = String::with_capacity(header_b64.len() + payload.len() * 4 / 3 + 400);
        out.push_str(header_b64);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
        let signed = out.as_bytes();
        // ring's signatures live on the stack; only RSA needs a buffer.
        let (ring_sig, rsa_sig, mut ec_sig);
        let sig: &[u8] = match &self.pair {
            Pair::Es256(p) => {
                ring_sig = p
                    .sign(&self.rng, signed)
                    .expect("ECDSA signing cannot fail with the system RNG");
                // Low-s form, the only one `verify` accepts (see `p256_low_s`).
                ec_sig = [0u8; 64];
                ec_sig.copy_from_slice(ring_sig.as_ref());
                p256_normalize_s(&mut ec_sig);
                &ec_sig
            }
            Pair::EdDsa(p) => {
                ring_sig = p.sign(signed);
                ring_sig.as_ref()
            }
            Pair::Rs256(p) => {
                let mut buf = vec![0; p.public().modulus_len()];
                p.sign(&RSA_PKCS1_SHA256, &self.rng, signed, &mut buf)
                    .expect("RSA signing cannot fail with the system RNG");
                rsa_sig = buf;
                &rsa_sig
            }
        };
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(sig, &mut out);
        out
    }
}

impl VerifyingKey {
    /// The key as a JWK (RFC 7517/7518, RFC 8037 for Ed25519).
    pub fn jwk(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, v) in &self.jwk_members {
            m.insert((*k).into(), v.clone().into());
        }
        m.insert("kid".into(), self.kid.clone().into());
        m.insert("use".into(), "sig".into());
        m.insert("alg".into(), self.alg.as_str().into());
        m.into()
    }

    /// Checks `signature` over `signed` with this key's algorithm.
    fn verify_signature(&self, signed: &[u8], signature: &[u8]) -> bool {
        let alg: &'static dyn VerificationAlgorithm = match self.alg {
            Alg::Es256 => &ECDSA_P256_SHA256_FIXED,
            Alg::Rs256 => &RSA_PKCS1_2048_8192_SHA256,
            Alg::EdDsa => &ED25519,
        };
        UnparsedPublicKey::new(alg, &self.public)
            .verify(signed, signature)
            .is_ok()
    }
}

// ECDSA signatures are malleable: (r, n - s) verifies wherever (r, s) does, so one token
// has two valid encodings. Tessera signs only the low-s form and refuses the other, so
// a token has exactly one spelling (ring neither normalises nor refuses high s; the
// arithmetic below is the one subtraction that takes, on fixed-size big-endian bytes).

/// The order of the P-256 group, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Half the order, rounded down: the largest low s.
const P256_HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// True for a 64-byte r‖s signature whose s is at most n/2.
fn p256_low_s(sig: &[u8]) -> bool {
    sig.len() == 64 && sig[32..] <= P256_HALF_N[..]
}

/// Replaces a high s with n - s (the same signature in its low-s form).
fn p256_normalize_s(sig: &mut [u8; 64]) {
    if p256_low_s(sig) {
        return;
    }
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(sig[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        sig[32 + i] = (d + (borrow << 8)) as u8;
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
    /// The id of the client secret that authenticated the request: binds the token to
    /// that client as it was (a client deleted and created again under the same id has
    /// other secrets), and a revoked secret ends the admin API use of its tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cred: Option<String>,
    /// The grant (login) a token of the code flow or refresh belongs to: revoking the
    /// grant makes the token inactive at introspection and userinfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
}

/// Verifies a compact JWS against `keys` and checks `exp` at `now`. The header's `alg`
/// must be the algorithm of the key its `kid` names (no algorithm confusion), and its
/// `typ` that of an access token. The caller checks `iss`, `aud` and scope.
pub fn verify(
    token: &str,
    keys: &[VerifyingKey],
    now: Timestamp,
) -> Result<AccessClaims, KeyError> {
    let (typ, payload) = verify_signed(token, keys)?;
    // An access token only (RFC 9068 §4): an ID token signed by the same key is not one.
    if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
        return Err(KeyError::TokenMalformed);
    }
    let claims: AccessClaims =
        serde_json::from_slice(&payload).map_err(|_| KeyError::TokenMalformed)?;
    if claims.exp <= now {
        return Err(KeyError::TokenExpired);
    }
    Ok(claims)
}

/// The claims of an ID token this server issued, as a logout request's `id_token_hint`
/// names them (OIDC RP-Initiated Logout §2: an expired one still says who and where).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IdTokenHint {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    #[serde(default)]
    pub sid: Option<String>,
}

/// Verifies an ID token's signature against `keys` (its `typ` must be `JWT`), without
/// its expiry.
pub fn verify_id_token_hint(token: &str, keys: &[VerifyingKey]) -> Result<IdTokenHint, KeyError> {
    let (typ, payload) = verify_signed(token, keys)?;
    if !typ.eq_ignore_ascii_case("JWT") {
        return Err(KeyError::TokenMalformed);
    }
    serde_json::from_slice(&payload).map_err(|_| KeyError::TokenMalformed)
}

/// A compact JWS's signature checked against `keys`: its header's `typ` and its payload.
fn verify_signed(token: &str, keys: &[VerifyingKey]) -> Result<(String, Vec<u8>), KeyError> {
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
        typ: Option<String>,
    }
    let header: Header = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(KeyError::TokenMalformed)?;
    let key = keys
        .iter()
        .find(|k| Some(&k.kid) == header.kid.as_ref())
        .ok_or(KeyError::TokenSignature)?;
    if header.alg != key.alg.as_str() {
        return Err(KeyError::TokenSignature);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| KeyError::TokenMalformed)?;
    let signed = &token[..h.len() + 1 + p.len()];
    if key.alg == Alg::Es256 && !p256_low_s(&sig) {
        return Err(KeyError::TokenSignature);
    }
    if !key.verify_signature(signed.as_bytes(), &sig) {
        return Err(KeyError::TokenSignature);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| KeyError::TokenMalformed)?;
    Ok((header.typ.unwrap_or_default(), payload))
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
            cred: None,
            gid: None,
        }
    }

    #[test]
    fn es256_tokens_have_one_spelling_low_s() {
        let k = SigningKey::from_pkcs8("k1", Alg::Es256, &generate_pkcs8(Alg::Es256)).unwrap();
        let keys = [k.verifying_key()];
        for _ in 0..64 {
            let t = k.sign(&claims(100));
            assert!(verify(&t, &keys, 50).is_ok(), "every signature is low-s");
            // The same signature with s replaced by n - s: valid ECDSA, refused here.
            let (head, sig) = t.rsplit_once('.').unwrap();
            let mut raw: [u8; 64] = URL_SAFE_NO_PAD.decode(sig).unwrap().try_into().unwrap();
            let mut s = [0u8; 32];
            let mut borrow = 0i16;
            for i in (0..32).rev() {
                let d = i16::from(P256_N[i]) - i16::from(raw[32 + i]) - borrow;
                borrow = i16::from(d < 0);
                s[i] = (d + (borrow << 8)) as u8;
            }
            raw[32..].copy_from_slice(&s);
            assert!(!p256_low_s(&raw));
            let high = format!("{head}.{}", URL_SAFE_NO_PAD.encode(raw));
            assert!(matches!(
                verify(&high, &keys, 50),
                Err(KeyError::TokenSignature)
            ));
            // ...though it is the same signature: normalising it gives the token back.
            p256_normalize_s(&mut raw);
            assert_eq!(format!("{head}.{}", URL_SAFE_NO_PAD.encode(raw)), t);
        }
    }

    #[test]
    fn sign_and_verify_every_alg() {
        for alg in Alg::ALL {
            let k = SigningKey::from_pkcs8("k1", alg, &generate_pkcs8(alg)).unwrap();
            assert_eq!(k.alg(), alg);
            let t = k.sign(&claims(100));
            let header: serde_json::Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(t.split('.').next().unwrap())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(header["alg"], alg.as_str());
            let v = verify(&t, &[k.verifying_key()], 50).unwrap();
            assert_eq!(v, claims(100));
            assert!(matches!(
                verify(&t, &[k.verifying_key()], 100),
                Err(KeyError::TokenExpired)
            ));
            // Same kid, another key of the same algorithm.
            let other = SigningKey::from_pkcs8("k1", alg, &generate_pkcs8(alg)).unwrap();
            assert!(verify(&t, &[other.verifying_key()], 50).is_err());
            // Tampered payload.
            let mut parts: Vec<&str> = t.split('.').collect();
            let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(999)).unwrap());
            parts[1] = &forged;
            assert!(verify(&parts.join("."), &[k.verifying_key()], 50).is_err());
            let jwk = k.verifying_key().jwk();
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["kid"], "k1");
        }
    }

    #[test]
    fn jwks_members_follow_the_rfcs() {
        let es = SigningKey::from_pkcs8("a", Alg::Es256, &generate_pkcs8(Alg::Es256)).unwrap();
        let jwk = es.verifying_key().jwk();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        let rs = SigningKey::from_pkcs8("b", Alg::Rs256, &generate_pkcs8(Alg::Rs256)).unwrap();
        let jwk = rs.verifying_key().jwk();
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["e"], "AQAB");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );
        let ed = SigningKey::from_pkcs8("c", Alg::EdDsa, &generate_pkcs8(Alg::EdDsa)).unwrap();
        let jwk = ed.verifying_key().jwk();
        assert_eq!(
            (jwk["kty"].as_str(), jwk["crv"].as_str()),
            (Some("OKP"), Some("Ed25519"))
        );
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
    }

    #[test]
    fn no_algorithm_confusion() {
        // A token whose header names another algorithm than its key's is refused, even
        // when the kid matches; so is a key parsed as the wrong algorithm.
        let es = SigningKey::from_pkcs8("k", Alg::Es256, &generate_pkcs8(Alg::Es256)).unwrap();
        let ed = SigningKey::from_pkcs8("k", Alg::EdDsa, &generate_pkcs8(Alg::EdDsa)).unwrap();
        let t = ed.sign(&claims(100));
        assert!(verify(&t, &[es.verifying_key()], 50).is_err());
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        parts[0] = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k"}"#);
        assert!(verify(&parts.join("."), &[ed.verifying_key()], 50).is_err());
        assert!(SigningKey::from_pkcs8("k", Alg::Rs256, &generate_pkcs8(Alg::Es256)).is_err());
        assert!(SigningKey::from_pkcs8("k", Alg::Es256, &generate_pkcs8(Alg::EdDsa)).is_err());
    }

    #[test]
    fn alg_names() {
        for alg in Alg::ALL {
            assert_eq!(Alg::parse(alg.as_str()), Ok(alg));
        }
        assert_eq!(Alg::parse("eddsa"), Ok(Alg::EdDsa));
        assert_eq!(
            Alg::parse("HS256").unwrap_err().to_string(),
            "unknown signing algorithm 'HS256': use ES256, RS256 or EdDSA"
        );
        assert_eq!(Alg::default(), Alg::Es256);
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

//! The service provider's signing key: an RSA key that signs AuthnRequests, and the
//! self-signed certificate that Tessera's SP metadata publishes so IdPs can verify them.
//! Made once per deployment (the server seals it in the database); no I/O here.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rsa::RsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::EncodePem;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

/// RSA modulus size: 2048 bits, the size every IdP accepts and the minimum we accept.
const BITS: usize = 2048;
/// How long the certificate is valid. IdPs that check it would otherwise need a new SP
/// certificate imported regularly; the key itself is what they trust.
const VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);

/// A signing key (PKCS#8 PEM) and its certificate (PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct SpSigningKey {
    pub key_pem: String,
    pub cert_pem: String,
}

impl fmt::Debug for SpSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpSigningKey")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot make the SAML SP signing key: {0}")]
pub struct SpKeyError(String);

/// Makes a new RSA key and a self-signed certificate for it, with `common_name` as
/// subject. Takes a few hundred milliseconds: call it off the async workers.
pub fn generate_sp_signing_key(common_name: &str) -> Result<SpSigningKey, SpKeyError> {
    let err = |e: &dyn fmt::Display| SpKeyError(e.to_string());
    let mut rng = rsa::rand_core::OsRng;
    let key = RsaPrivateKey::new(&mut rng, BITS).map_err(|e| err(&e))?;
    let signer = rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new(key.clone());
    let spki = SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).map_err(|e| err(&e))?;
    let mut serial = [0u8; 16];
    rsa::rand_core::RngCore::fill_bytes(&mut rng, &mut serial);
    serial[0] &= 0x7f; // a positive INTEGER
    let subject = Name::from_str(&format!("CN={}", common_name.replace([',', '+', '='], " ")))
        .map_err(|e| err(&e))?;
    let cert = CertificateBuilder::new(
        Profile::Root,
        SerialNumber::new(&serial).map_err(|e| err(&e))?,
        Validity::from_now(VALIDITY).map_err(|e| err(&e))?,
        subject,
        spki,
        &signer,
    )
    .map_err(|e| err(&e))?
    .build::<rsa::pkcs1v15::Signature>()
    .map_err(|e| err(&e))?;
    Ok(SpSigningKey {
        key_pem: key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| err(&e))?
            .to_string(),
        cert_pem: cert.to_pem(LineEnding::LF).map_err(|e| err(&e))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_carries_the_key_and_passes_our_own_checks() {
        let k = generate_sp_signing_key("Tessera SAML SP").unwrap();
        assert!(k.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let info = crate::certs::inspect(&k.cert_pem, false).unwrap();
        assert!(info.subject.contains("Tessera SAML SP"), "{}", info.subject);
        assert!(!format!("{k:?}").contains("PRIVATE"));
    }
}

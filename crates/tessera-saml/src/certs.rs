//! The IdP's signing certificates: parsed when a configuration is saved (so a config that
//! could never verify a response is refused) and for the optional validity-period check.

use base64::Engine;
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};
use x509_cert::name::Name;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

/// The smallest RSA key accepted by default (NIST SP 800-131A: 1024-bit RSA signatures
/// are legacy-use only).
pub const MIN_RSA_BITS: usize = 2048;

/// The smallest RSA key accepted for an IdP whose configuration sets `allow_rsa_1024`.
pub const LEGACY_MIN_RSA_BITS: usize = 1024;

/// What Tessera needs to know about a signing certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    /// Validity, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// For instance `RSA 2048` or `EC`.
    pub key: String,
    /// The certificate as PEM (normalised).
    pub pem: String,
    /// Why the certificate is not strict DER, when it was read leniently.
    pub note: Option<String>,
}

/// What Tessera needs of a certificate, read from DER that is not strict: only the
/// validity, the subject and the public key are decoded; the certificate's own signature
/// algorithm and issuer are skipped, element by element. Some IdPs (old OneLogin ones)
/// issue certificates whose signature algorithm is the invalid OID `0.0`; OpenSSL and
/// those IdPs read them, and Tessera never checks a configured certificate's own
/// signature (the configuration is the trust), so that flaw does not matter. By hand:
/// x509-cert decodes the whole certificate strictly or not at all.
fn lenient(
    der: &[u8],
) -> Result<(Validity, Name, SubjectPublicKeyInfoOwned), x509_cert::der::Error> {
    use x509_cert::der::asn1::AnyRef;
    use x509_cert::der::{Reader, SliceReader, Tag, TagNumber, Tagged};
    let mut outer = SliceReader::new(der)?;
    let cert: AnyRef = outer.decode()?;
    let mut c = SliceReader::new(cert.value())?;
    let tbs: AnyRef = c.decode()?;
    let mut t = SliceReader::new(tbs.value())?;
    let first: AnyRef = t.decode()?;
    let version = Tag::ContextSpecific {
        constructed: true,
        number: TagNumber::N0,
    };
    if first.tag() == version {
        let _serial: AnyRef = t.decode()?;
    }
    let _signature_algorithm: AnyRef = t.decode()?;
    let _issuer: AnyRef = t.decode()?;
    let validity: Validity = t.decode()?;
    let subject: Name = t.decode()?;
    let spki: SubjectPublicKeyInfoOwned = t.decode()?;
    Ok((validity, subject, spki))
}

/// Parses one certificate, PEM or bare base64 (as in SAML metadata), and refuses keys
/// too weak to trust: RSA under 2048 bits, or under 1024 with `allow_rsa_1024` (legacy
/// IdPs only). Errors are for a field-level message.
pub fn inspect(text: &str, allow_rsa_1024: bool) -> Result<CertInfo, String> {
    let t = text.trim();
    let body = match t.strip_prefix("-----BEGIN CERTIFICATE-----") {
        Some(rest) => rest
            .trim_end()
            .strip_suffix("-----END CERTIFICATE-----")
            .ok_or("a PEM certificate must end with -----END CERTIFICATE-----")?,
        None if t.starts_with("-----BEGIN") => {
            return Err(
                "not a certificate (the PEM type must be CERTIFICATE; never send a private key)"
                    .into(),
            );
        }
        None => t,
    };
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .map_err(|_| "not base64 inside the PEM armour".to_string())?;
    let (validity, subject, spki, canonical, note) = match Certificate::from_der(&der) {
        Ok(cert) => {
            let tbs = cert.tbs_certificate.clone();
            let canonical = cert.to_der().map_err(|e| e.to_string())?;
            (
                tbs.validity,
                tbs.subject,
                tbs.subject_public_key_info,
                canonical,
                None,
            )
        }
        Err(strict) => {
            let (validity, subject, spki) = lenient(&der)
                .map_err(|_| format!("not a DER-encoded X.509 certificate: {strict}"))?;
            let note = format!(
                "not strict DER ({strict}) outside the parts Tessera uses; read leniently: its validity, subject and public key are well formed"
            );
            (validity, subject, spki, der.clone(), Some(note))
        }
    };
    let spki = &spki;
    const RSA: &str = "1.2.840.113549.1.1.1";
    const EC: &str = "1.2.840.10045.2.1";
    let key = match spki.algorithm.oid.to_string().as_str() {
        RSA => {
            let bits = pkcs1::RsaPublicKey::from_der(spki.subject_public_key.raw_bytes())
                .map(|k| k.modulus.as_bytes().len() * 8)
                .map_err(|e| format!("unreadable RSA public key: {e}"))?;
            if bits < LEGACY_MIN_RSA_BITS {
                return Err(format!(
                    "the certificate's RSA key has {bits} bits, which anyone can break (ask the IdP for a new signing certificate of at least {MIN_RSA_BITS} bits)"
                ));
            }
            if bits < MIN_RSA_BITS && !allow_rsa_1024 {
                return Err(format!(
                    "the certificate's RSA key has {bits} bits; at least {MIN_RSA_BITS} are required (ask the IdP for a new signing certificate; for a legacy IdP that cannot, set allow_rsa_1024)"
                ));
            }
            format!("RSA {bits}")
        }
        EC => "EC".to_string(),
        other => return Err(format!("unsupported public key algorithm {other}")),
    };
    let secs = |t: &x509_cert::time::Time| t.to_unix_duration().as_secs() as i64;
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    let canonical = base64::engine::general_purpose::STANDARD.encode(canonical);
    for line in canonical.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    Ok(CertInfo {
        subject: subject.to_string(),
        not_before: secs(&validity.not_before),
        not_after: secs(&validity.not_after),
        key,
        pem,
        note,
    })
}

/// The certificates in a file's text, as bare base64: every PEM `CERTIFICATE` block, or
/// the whole text when it holds one bare base64 certificate (as SAML metadata does).
pub fn split(text: &str) -> Vec<String> {
    let mut certs = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN CERTIFICATE") {
            cur = Some(String::new());
        } else if line.starts_with("-----END CERTIFICATE") {
            certs.extend(cur.take());
        } else if let Some(c) = cur.as_mut() {
            c.push_str(line);
        }
    }
    if certs.is_empty() {
        certs.push(text.split_whitespace().collect());
    }
    certs
}

//! The IdP's signing certificates: parsed when a configuration is saved (so a config that
//! could never verify a response is refused) and for the optional validity-period check.

use base64::Engine;
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

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

/// sha256WithRSAEncryption, as a DER AlgorithmIdentifier (with NULL parameters).
const SHA256_RSA: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];

/// A DER SEQUENCE around `content`.
fn sequence(content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut out = vec![0x30];
    match n {
        0..=0x7f => out.push(n as u8),
        0x80..=0xff => out.extend([0x81, n as u8]),
        _ => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// A certificate whose only flaw is its own signature algorithm (some IdPs, old OneLogin
/// ones, wrote the invalid OID `0.0`), with a well-formed algorithm in its place, so
/// strict DER readers (x509-cert here, and the XML signature verifier) can read it. The
/// key, names, validity and extensions are the original bytes. This changes nothing that
/// matters: a configured certificate is trusted because an admin configured it, and its
/// own signature is never checked. The result must parse strictly, or there is none.
/// By hand: x509-cert decodes a whole certificate strictly or not at all.
pub fn with_sound_signature_algorithm(der: &[u8]) -> Option<Vec<u8>> {
    use x509_cert::der::asn1::AnyRef;
    use x509_cert::der::{Reader, SliceReader};
    if der.len() > 0xffff - 64 {
        return None;
    }
    let mut outer = SliceReader::new(der).ok()?;
    let cert: AnyRef = outer.decode().ok()?;
    if !outer.is_finished() {
        return None;
    }
    let mut c = SliceReader::new(cert.value()).ok()?;
    let tbs: AnyRef = c.decode().ok()?;
    let _algorithm: AnyRef = c.decode().ok()?;
    let signature: AnyRef = c.decode().ok()?;
    if !c.is_finished() {
        return None;
    }
    let mut t = SliceReader::new(tbs.value()).ok()?;
    let mut parts: Vec<Vec<u8>> = Vec::new();
    while !t.is_finished() {
        let part: AnyRef = t.decode().ok()?;
        parts.push(part.to_der().ok()?);
    }
    // [0] version, serial, signature algorithm, ...: the algorithm is the second or third.
    let at = if parts.first()?.first() == Some(&0xa0) {
        2
    } else {
        1
    };
    *parts.get_mut(at)? = SHA256_RSA.to_vec();
    let tbs = sequence(&parts.concat());
    let fixed = sequence(&[tbs, SHA256_RSA.to_vec(), signature.to_der().ok()?].concat());
    Certificate::from_der(&fixed).ok()?;
    Some(fixed)
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
            let fixed = with_sound_signature_algorithm(&der)
                .ok_or_else(|| format!("not a DER-encoded X.509 certificate: {strict}"))?;
            let cert = Certificate::from_der(&fixed).map_err(|e| e.to_string())?;
            let tbs = cert.tbs_certificate;
            let note = format!(
                "not strict DER ({strict}): its own signature algorithm is malformed; verified with a well-formed one in its place (Tessera never checks a configured certificate's own signature; the key is unchanged)"
            );
            // Kept as given; made sound where it is used (verifiable()).
            (
                tbs.validity,
                tbs.subject,
                tbs.subject_public_key_info,
                der.clone(),
                Some(note),
            )
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

/// A configured certificate (PEM or bare base64) as the XML signature verifier must be
/// given it, bare base64: as configured, or with its signature algorithm made sound
/// when that is its only flaw ([`with_sound_signature_algorithm`]).
pub fn verifiable(text: &str) -> String {
    let bare: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.split_whitespace())
        .collect();
    let engine = &base64::engine::general_purpose::STANDARD;
    match engine.decode(&bare) {
        Ok(der) if Certificate::from_der(&der).is_err() => with_sound_signature_algorithm(&der)
            .map(|fixed| engine.encode(fixed))
            .unwrap_or(bare),
        _ => bare,
    }
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

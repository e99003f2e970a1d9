//! Encrypted assertions (XML Encryption 1.1 inside SAML core §2.3.4): the checks before
//! any key is used, the decryption, and the hand-over to the one validation path.
//!
//! Why this is ours, on the RustCrypto primitives, and not saml-rs's
//! `decrypt_assertion`: saml-rs hands its XML-Enc library only the `EncryptedData`
//! element, so the `EncryptedKey` that Okta places beside it (a `RetrievalMethod`
//! reference) is never found; it takes one key, so a rotated SP key cannot overlap with
//! the old one; its algorithm and padding-oracle rules are not the ones Tessera states;
//! and the RSA private-key operation below it runs unblinded. The content key is
//! unwrapped here with `rsa`'s blinded decryption (a fresh random blinding factor per
//! operation), which narrows but does not close RUSTSEC-2023-0071 (the crate's big-number
//! arithmetic is not constant-time; no fixed release exists): ciphertexts anyone can post
//! reach it, so the ACS runs it off the async workers and docs/sso.md says so. The
//! content is decrypted with `aes-gcm` or `aes` + `cbc`: XML Encryption's framing (IV
//! first, ISO 10126 padding) is all that is written by hand.
//!
//! The decrypted assertion is validated by exactly the rules of a plain one
//! ([`crate::validate`]): it is put where the `EncryptedAssertion` was, and the result
//! goes through the same checks.
//!
//! - **Unsigned Response**: nothing authenticates the ciphertext, so only an
//!   authenticated cipher (AES-GCM) is decrypted; CBC is refused before any key is used
//!   (`saml_encrypted_cbc_unsigned`: the XML Encryption padding-oracle attack of Jager
//!   and Somorovsky, 2011). The decrypted assertion must carry the IdP's own signature.
//! - **Response signed after encryption**: the IdP's signature covers the ciphertext. It
//!   is verified first, on the document as received, with the configured certificates
//!   only; decryption then works on the content that signature covers. The plain document can no longer carry
//!   the IdP's signature (it was computed over the ciphertext), so the Response is signed
//!   again by a key that never leaves this process ([`Attestation`]), whose certificate
//!   the validation trusts beside the IdP's. It says one thing: "this Response, before
//!   decryption, carried a valid signature of the IdP".
//! - **Response signed before encryption** (samlify's default): the signature covers the
//!   plain assertion, so it verifies only after decryption, in the one validation path.
//!   Until then the ciphertext is unauthenticated: AES-GCM only, as for an unsigned
//!   Response.

use std::sync::OnceLock;

use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use saml_rs::crypto::keys::{load_certificate, load_private_key};
use saml_rs::crypto::sign::construct_saml_signature;
use saml_rs::crypto::verify::verify_signature_with_limits;
use saml_rs::xml::dom::{self, Node, XmlLimits};
use tessera_core::Reason;

use crate::sp_key::{SpSigningKey, generate_sp_signing_key};
use crate::{IdpTrust, Rejected, scan};

/// Content encryption Tessera decrypts (XML Encryption 1.0 §5.2, 1.1 §5.2.4).
const CBC: [&str; 3] = [
    "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes192-cbc",
    "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
];
const GCM: [&str; 3] = [
    "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "http://www.w3.org/2009/xmlenc11#aes192-gcm",
    "http://www.w3.org/2009/xmlenc11#aes256-gcm",
];
/// Key transport: RSA-OAEP only (XML Encryption 1.1 §5.5.2).
const OAEP: [&str; 2] = [
    "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
    "http://www.w3.org/2009/xmlenc11#rsa-oaep",
];
/// OAEP's digest (DigestMethod inside the key's EncryptionMethod; SHA-1 by default).
const OAEP_DIGESTS: [&str; 2] = [
    "http://www.w3.org/2000/09/xmldsig#sha1",
    "http://www.w3.org/2001/04/xmlenc#sha256",
];
/// OAEP's mask generation (xmlenc11 `MGF`; MGF1 with SHA-1 by default).
const OAEP_MGFS: [&str; 2] = [
    "http://www.w3.org/2009/xmlenc11#mgf1sha1",
    "http://www.w3.org/2009/xmlenc11#mgf1sha256",
];
const RSA_1_5: &str = "http://www.w3.org/2001/04/xmlenc#rsa-1_5";

/// One of the SP's decryption keys (PKCS#8 PEM). Several while a rotation overlaps:
/// each is tried, newest first.
#[derive(Clone, PartialEq, Eq)]
pub struct DecryptionKey {
    pub key_pem: String,
}

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecryptionKey(<redacted>)")
    }
}

/// A Response whose assertion was decrypted, ready for the one validation path.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The Response with the plain assertion in place of the encrypted one.
    pub xml: String,
    /// Set when the IdP signed the Response: what verified it, and the certificate of
    /// the signature that now stands for it.
    pub attested: Option<Attested>,
    /// The content encryption algorithm, for the trace.
    pub content_algorithm: String,
}

#[derive(Debug)]
pub(crate) struct Attested {
    /// The IdP's Response signature algorithm, as verified on the received document.
    pub idp_algorithm: String,
    /// The attestation certificate (trusted beside the IdP's for this validation only).
    pub certificate: String,
}

/// The key that re-signs a decrypted Response whose IdP signature was verified: made
/// once per process, never stored, never shown.
struct Attestation {
    key: SpSigningKey,
}

fn attestation() -> Result<&'static Attestation, Rejected> {
    static KEY: OnceLock<Result<Attestation, String>> = OnceLock::new();
    KEY.get_or_init(|| {
        generate_sp_signing_key("Tessera decrypted-response attestation")
            .map(|key| Attestation { key })
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| Rejected::new(Reason::SamlNotConfigured, e.clone()))
}

fn malformed(detail: impl Into<String>) -> Rejected {
    Rejected::new(Reason::SamlMalformed, detail)
}

fn refused_algorithm(what: &str, uri: &str, why: &str) -> Rejected {
    Rejected::new(
        Reason::SamlAlgorithmRefused,
        format!("{what} {} is refused: {why}", tessera_core::text::clip(uri)),
    )
}

fn children<'a>(n: &'a Node, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
    n.children.iter().filter(move |c| c.local_name == name)
}

fn count(n: &Node, name: &str) -> usize {
    usize::from(n.local_name == name) + n.children.iter().map(|c| count(c, name)).sum::<usize>()
}

fn descendants<'a>(n: &'a Node, name: &str, out: &mut Vec<&'a Node>) {
    for c in &n.children {
        if c.local_name == name {
            out.push(c);
        }
        descendants(c, name, out);
    }
}

/// True when the response carries an `EncryptedAssertion` element anywhere (start tags
/// only: the word in an attribute value is no assertion; the structure is checked by
/// [`open`]).
pub fn is_encrypted(xml: &str) -> bool {
    scan::has_element(xml, "EncryptedAssertion")
}

/// Checks the shape and the algorithms of an encrypted response, then decrypts it with
/// the first of `keys` that opens it (see the module documentation for the two cases).
pub(crate) fn open(
    xml: &str,
    idp: &IdpTrust,
    keys: &[DecryptionKey],
    limits: XmlLimits,
) -> Result<Opened, Rejected> {
    let doc = dom::parse_with_limits(xml, limits).map_err(|e| malformed(e.to_string()))?;
    let root = &doc.root;
    if root.local_name != "Response" {
        return Err(malformed("the message is not a Response"));
    }
    // One assertion, encrypted, as a child of the Response: nothing beside it or
    // elsewhere in the document that a later step could read instead.
    let encrypted: Vec<&Node> = children(root, "EncryptedAssertion").collect();
    if encrypted.len() != 1 || count(root, "EncryptedAssertion") != 1 {
        return Err(malformed(
            "a Response must carry exactly one EncryptedAssertion, as its own child",
        ));
    }
    if count(root, "Assertion") != 0 {
        return Err(malformed(
            "a Response with an EncryptedAssertion must carry no other Assertion",
        ));
    }
    let ea = encrypted[0];
    let data: Vec<&Node> = children(ea, "EncryptedData").collect();
    if data.len() != 1 || count(ea, "EncryptedData") != 1 {
        return Err(malformed(
            "an EncryptedAssertion must hold exactly one EncryptedData",
        ));
    }
    let content_algorithm = children(data[0], "EncryptionMethod")
        .next()
        .and_then(|m| m.attr("Algorithm"))
        .ok_or_else(|| malformed("the EncryptedData names no EncryptionMethod"))?
        .to_string();
    let cbc = CBC.contains(&content_algorithm.as_str());
    if !cbc && !GCM.contains(&content_algorithm.as_str()) {
        return Err(refused_algorithm(
            "content encryption",
            &content_algorithm,
            "Tessera decrypts AES-128/192/256 in GCM or CBC mode only",
        ));
    }
    let mut encrypted_keys = Vec::new();
    descendants(ea, "EncryptedKey", &mut encrypted_keys);
    if encrypted_keys.is_empty() {
        return Err(malformed(
            "the EncryptedAssertion carries no EncryptedKey (the key must travel with it)",
        ));
    }
    if encrypted_keys.len() > 4 {
        return Err(malformed("more than 4 EncryptedKey elements"));
    }
    for k in &encrypted_keys {
        let method = children(k, "EncryptionMethod")
            .next()
            .ok_or_else(|| malformed("an EncryptedKey names no EncryptionMethod"))?;
        let alg = method.attr("Algorithm").unwrap_or_default();
        if alg == RSA_1_5 {
            return Err(refused_algorithm(
                "key transport",
                alg,
                "RSA PKCS#1 v1.5 encryption is open to Bleichenbacher's attack; configure the IdP for RSA-OAEP",
            ));
        }
        if !OAEP.contains(&alg) {
            return Err(refused_algorithm(
                "key transport",
                alg,
                "Tessera accepts RSA-OAEP only",
            ));
        }
        for d in children(method, "DigestMethod") {
            let d = d.attr("Algorithm").unwrap_or_default();
            if !OAEP_DIGESTS.contains(&d) {
                return Err(refused_algorithm(
                    "the RSA-OAEP digest",
                    d,
                    "SHA-1 or SHA-256 only",
                ));
            }
        }
        for m in children(method, "MGF") {
            let m = m.attr("Algorithm").unwrap_or_default();
            if !OAEP_MGFS.contains(&m) {
                return Err(refused_algorithm(
                    "the RSA-OAEP mask generation",
                    m,
                    "MGF1 with SHA-1 or SHA-256 only",
                ));
            }
        }
    }
    let signed = children(root, "Signature").next().is_some();
    // Signed over the ciphertext (encrypt-then-sign): verify the IdP's signature on the
    // document as received, then work on what it covers, never on the text around it.
    // A signature made before encryption (sign-then-encrypt) verifies only once the
    // assertion is decrypted: the ciphertext is then unauthenticated, as if unsigned.
    let over_ciphertext = if signed {
        let certs: Vec<String> = idp
            .certificates
            .iter()
            .map(|c| crate::certs::verifiable(c))
            .collect();
        match verify_signature_with_limits(xml, &certs, limits) {
            Ok((true, Some(content))) => Some(content),
            Ok(_) => None,
            Err(e @ saml_rs::SamlError::PotentialWrappingAttack) => {
                return Err(signature_error(e));
            }
            // Judged after decryption, with every other check.
            Err(_) => None,
        }
    } else {
        None
    };
    if cbc && over_ciphertext.is_none() {
        return Err(Rejected::new(
            Reason::SamlEncryptedCbcUnsigned,
            format!(
                "the assertion is encrypted with {} (CBC) and {}: nothing authenticates the ciphertext, which makes the IdP's answer open to the XML Encryption padding-oracle attack; have the IdP sign the Response after encrypting, or encrypt with AES-GCM",
                content_algorithm.rsplit('#').next().unwrap_or_default(),
                if signed {
                    "the Response's signature does not cover it (signed before encryption, or not valid)"
                } else {
                    "the Response is not signed"
                }
            ),
        ));
    }
    if keys.is_empty() {
        return Err(Rejected::new(
            Reason::SamlEncryptedUnsupported,
            "the assertion is encrypted but this service provider has no encryption key",
        ));
    }
    let (document, idp_algorithm) = match over_ciphertext {
        Some(content) => {
            let verified =
                dom::parse_with_limits(&content, limits).map_err(|e| malformed(e.to_string()))?;
            if verified.root.local_name != "Response" || verified.root.attr("ID") != root.attr("ID")
            {
                return Err(Rejected::new(
                    Reason::SamlUnsigned,
                    "the signature in the Response covers something else than the Response itself",
                ));
            }
            let alg = signature_algorithm(root).unwrap_or_default();
            (content, Some(alg))
        }
        None => (xml.to_string(), None),
    };

    let plain = decrypt(&document, keys, limits)?;
    // What was encrypted gets the checks the raw input got: no DTD, no processing
    // instruction, the signature algorithm allowlist (done by the caller on the result).
    scan::structure(&plain)?;

    let Some(idp_algorithm) = idp_algorithm else {
        return Ok(Opened {
            xml: plain,
            attested: None,
            content_algorithm,
        });
    };
    let att = attestation()?;
    let resigned = resign(&plain, att, limits)?;
    Ok(Opened {
        xml: resigned,
        attested: Some(Attested {
            idp_algorithm,
            certificate: att.key.cert_pem.clone(),
        }),
        content_algorithm,
    })
}

/// A refusal of the Response's signature, by what saml-rs found.
fn signature_error(e: saml_rs::SamlError) -> Rejected {
    use saml_rs::SamlError as E;
    let reason = match &e {
        E::PotentialWrappingAttack => Reason::SamlWrappingDetected,
        E::NoTrustedCertificate | E::CertificateMismatch | E::UnmatchCertificate => {
            Reason::SamlCertUntrusted
        }
        E::ReferenceResolution { .. } | E::SignedReferenceMismatch => {
            Reason::SamlSignedContentMismatch
        }
        E::Xml(_) => Reason::SamlMalformed,
        _ => Reason::SamlSignatureInvalid,
    };
    Rejected::new(reason, e.to_string())
}

/// The SignatureMethod of the Response's own signature.
fn signature_algorithm(root: &Node) -> Option<String> {
    let sig = children(root, "Signature").next()?;
    let info = children(sig, "SignedInfo").next()?;
    let method = children(info, "SignatureMethod").next()?;
    method.attr("Algorithm").map(str::to_string)
}

/// Decrypts the one EncryptedData: each EncryptedKey with each SP key in turn, then the
/// content; puts the plain assertion where the EncryptedAssertion was. Every failure
/// reads the same (no oracle on which step failed).
fn decrypt(xml: &str, keys: &[DecryptionKey], limits: XmlLimits) -> Result<String, Rejected> {
    let failed = || {
        Rejected::new(
            Reason::SamlDecryptionFailed,
            "the assertion could not be decrypted with this service provider's encryption keys: the IdP may be using an old or another SP's encryption certificate (compare it with the one in this SP's metadata)",
        )
    };
    let private_keys = keys
        .iter()
        .map(|k| {
            RsaPrivateKey::from_pkcs8_pem(&k.key_pem)
                .map_err(|e| e.to_string())
                .or_else(|e| RsaPrivateKey::from_pkcs1_pem(&k.key_pem).map_err(|_| e))
                .map_err(|e| {
                    Rejected::new(
                        Reason::SamlNotConfigured,
                        format!("an SP encryption key cannot be read: {e}"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let doc = dom::parse_with_limits(xml, limits).map_err(|e| malformed(e.to_string()))?;
    let ea = children(&doc.root, "EncryptedAssertion")
        .next()
        .ok_or_else(|| malformed("no EncryptedAssertion"))?;
    let data = children(ea, "EncryptedData")
        .next()
        .ok_or_else(|| malformed("no EncryptedData"))?;
    let content_algorithm = children(data, "EncryptionMethod")
        .next()
        .and_then(|m| m.attr("Algorithm"))
        .unwrap_or_default();
    let content = cipher_value(data).ok_or_else(failed)?;
    let mut encrypted_keys = Vec::new();
    descendants(ea, "EncryptedKey", &mut encrypted_keys);
    for ek in encrypted_keys {
        let Some(wrapped) = cipher_value(ek) else {
            continue;
        };
        for key in &private_keys {
            let Some(cek) = unwrap_key(ek, key, &wrapped) else {
                continue;
            };
            let Some(plain) = decrypt_content(content_algorithm, &cek, &content) else {
                continue;
            };
            let plain = String::from_utf8(plain).map_err(|_| failed())?;
            // An XML declaration may lead the plaintext; it cannot stand mid-document.
            let plain = match plain.trim_start().strip_prefix("<?xml") {
                Some(rest) => rest.split_once("?>").map(|(_, r)| r).unwrap_or_default(),
                None => plain.as_str(),
            };
            let out = format!("{}{}{}", &xml[..ea.start], plain.trim(), &xml[ea.end..]);
            if out.len() > limits.max_bytes {
                return Err(malformed("the decrypted Response is larger than 1 MiB"));
            }
            return only_one_assertion(out, limits);
        }
    }
    Err(failed())
}

/// The base64 of `CipherData/CipherValue` (a `CipherReference` is refused: Tessera
/// fetches nothing a response points at).
fn cipher_value(n: &Node) -> Option<Vec<u8>> {
    let text = children(n, "CipherData")
        .next()
        .and_then(|c| children(c, "CipherValue").next())
        .map(|v| v.text.split_whitespace().collect::<String>())?;
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, text).ok()
}

/// RSA-OAEP unwrap of the content key, blinded; None when this key does not open it.
fn unwrap_key(ek: &Node, key: &RsaPrivateKey, wrapped: &[u8]) -> Option<Vec<u8>> {
    use rsa::Oaep;
    use rsa::sha2::Sha256;
    use sha1::Sha1;
    let method = children(ek, "EncryptionMethod").next()?;
    if children(method, "OAEPparams").next().is_some() {
        return None;
    }
    let sha256 = |n: Option<&Node>, uri: &str| n.and_then(|n| n.attr("Algorithm")) == Some(uri);
    let digest256 = sha256(
        children(method, "DigestMethod").next(),
        "http://www.w3.org/2001/04/xmlenc#sha256",
    );
    // rsa-oaep-mgf1p always masks with MGF1-SHA1; xmlenc11 rsa-oaep names its MGF.
    let mgf256 = method.attr("Algorithm") == Some(OAEP[1])
        && sha256(
            children(method, "MGF").next(),
            "http://www.w3.org/2009/xmlenc11#mgf1sha256",
        );
    let padding = match (digest256, mgf256) {
        (false, false) => Oaep::new::<Sha1>(),
        (true, false) => Oaep::new_with_mgf_hash::<Sha256, Sha1>(),
        (false, true) => Oaep::new_with_mgf_hash::<Sha1, Sha256>(),
        (true, true) => Oaep::new::<Sha256>(),
    };
    key.decrypt_blinded(&mut rsa::rand_core::OsRng, padding, wrapped)
        .ok()
}

/// AES-GCM (12-byte IV, 16-byte tag) or AES-CBC (16-byte IV, ISO 10126 padding), as XML
/// Encryption frames them; None on any failure.
fn decrypt_content(algorithm: &str, cek: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    use aes_gcm::aead::{Aead, KeyInit, consts::U12};
    let gcm = |iv: &[u8], body: &[u8]| -> Option<Vec<u8>> {
        let nonce = aes_gcm::Nonce::<U12>::try_from(iv).ok()?;
        match cek.len() {
            16 => aes_gcm::Aes128Gcm::new_from_slice(cek)
                .ok()?
                .decrypt(&nonce, body)
                .ok(),
            24 => aes_gcm::AesGcm::<aes::Aes192, U12>::new_from_slice(cek)
                .ok()?
                .decrypt(&nonce, body)
                .ok(),
            32 => aes_gcm::Aes256Gcm::new_from_slice(cek)
                .ok()?
                .decrypt(&nonce, body)
                .ok(),
            _ => None,
        }
    };
    let key_len = match algorithm.rsplit('#').next()? {
        "aes128-cbc" | "aes128-gcm" => 16,
        "aes192-cbc" | "aes192-gcm" => 24,
        "aes256-cbc" | "aes256-gcm" => 32,
        _ => return None,
    };
    if cek.len() != key_len {
        return None;
    }
    if GCM.contains(&algorithm) {
        if data.len() < 12 + 16 {
            return None;
        }
        let (iv, body) = data.split_at(12);
        return gcm(iv, body);
    }
    if !CBC.contains(&algorithm) || data.len() < 32 || !data.len().is_multiple_of(16) {
        return None;
    }
    let (iv, body) = data.split_at(16);
    let mut buf = body.to_vec();
    cbc_decrypt(cek, iv, &mut buf)?;
    // ISO 10126 (XML Encryption 1.1 §5.2): the last byte is the pad length; the others
    // are arbitrary.
    let pad = usize::from(*buf.last()?);
    if pad == 0 || pad > 16 {
        return None;
    }
    buf.truncate(buf.len() - pad);
    Some(buf)
}

fn cbc_decrypt(cek: &[u8], iv: &[u8], buf: &mut [u8]) -> Option<()> {
    use cbc::cipher::block_padding::NoPadding;
    use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
    match cek.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(cek, iv)
            .ok()?
            .decrypt_padded::<NoPadding>(buf)
            .ok()
            .map(|_| ()),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(cek, iv)
            .ok()?
            .decrypt_padded::<NoPadding>(buf)
            .ok()
            .map(|_| ()),
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(cek, iv)
            .ok()?
            .decrypt_padded::<NoPadding>(buf)
            .ok()
            .map(|_| ()),
        _ => None,
    }
}

/// The decrypted document must hold exactly one Assertion, a child of the Response,
/// where the EncryptedAssertion was.
fn only_one_assertion(xml: String, limits: XmlLimits) -> Result<String, Rejected> {
    let doc = dom::parse_with_limits(&xml, limits).map_err(|e| {
        malformed(format!(
            "the decrypted assertion is not well-formed XML: {e}"
        ))
    })?;
    if children(&doc.root, "Assertion").count() != 1
        || count(&doc.root, "Assertion") != 1
        || count(&doc.root, "EncryptedAssertion") != 0
    {
        return Err(malformed(
            "the decrypted content is not exactly one Assertion",
        ));
    }
    Ok(xml)
}

/// Replaces the Response's own (now stale) signature with the attestation's.
fn resign(xml: &str, att: &Attestation, limits: XmlLimits) -> Result<String, Rejected> {
    let doc = dom::parse_with_limits(xml, limits).map_err(|e| malformed(e.to_string()))?;
    let sig = children(&doc.root, "Signature")
        .next()
        .ok_or_else(|| malformed("the signed Response lost its signature"))?;
    let unsigned = format!("{}{}", &xml[..sig.start], &xml[sig.end..]);
    let internal = |e: saml_rs::SamlError| {
        Rejected::new(
            Reason::SamlMalformed,
            format!("the decrypted Response cannot be carried on: {e}"),
        )
    };
    let key = load_private_key(&att.key.key_pem, None).map_err(internal)?;
    // The certificate must load as the verifier will load it.
    load_certificate(&att.key.cert_pem).map_err(internal)?;
    construct_saml_signature(
        &unsigned,
        true,
        &key,
        &att.key.cert_pem,
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        &[],
        None,
    )
    .map_err(internal)
}

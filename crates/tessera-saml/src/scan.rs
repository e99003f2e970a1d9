//! Checks on the raw response before any XML parser sees it: size, encoding, DTDs and
//! entities, processing instructions, and the algorithms every signature names.
//!
//! Written by hand on purpose: these run on untrusted bytes ahead of the parsers and must
//! refuse the constructs those parsers would otherwise have to survive. They look at the
//! text only; identity is never read from here (see `validate.rs`).

use base64::Engine;
use std::io::Read;

use tessera_core::Reason;

use crate::Rejected;

/// The largest response accepted, as received (base64 or XML), in bytes.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// The largest inflated response (deflate-base64 input), in bytes.
const MAX_INFLATED_BYTES: usize = 1024 * 1024;

/// Turns what was received (raw XML, base64, or deflate+base64) into XML text.
pub fn decode(input: &[u8]) -> Result<String, Rejected> {
    if input.len() > MAX_RESPONSE_BYTES {
        return Err(Rejected::new(
            Reason::SamlBodyTooLarge,
            format!(
                "the SAML response is {} bytes; at most {} KiB is accepted",
                input.len(),
                MAX_RESPONSE_BYTES / 1024
            ),
        ));
    }
    let text = std::str::from_utf8(input)
        .map_err(|_| Rejected::new(Reason::SamlMalformed, "the SAML response is not UTF-8"))?
        .trim_start_matches('\u{feff}')
        .trim();
    if text.starts_with('<') {
        return Ok(text.to_string());
    }
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| {
            Rejected::new(
                Reason::SamlMalformed,
                "the SAML response is neither XML nor base64",
            )
        })?;
    let xml = if bytes.first() == Some(&b'<') || bytes.starts_with(b"\xef\xbb\xbf<") {
        bytes
    } else {
        // HTTP-Redirect style: raw DEFLATE inside the base64.
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(&bytes[..])
            .take(MAX_INFLATED_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|_| {
                Rejected::new(
                    Reason::SamlMalformed,
                    "the base64 does not hold XML (nor deflated XML)",
                )
            })?;
        if out.len() > MAX_INFLATED_BYTES {
            return Err(Rejected::new(
                Reason::SamlBodyTooLarge,
                "the inflated SAML response is larger than 1 MiB",
            ));
        }
        out
    };
    let xml = String::from_utf8(xml)
        .map_err(|_| Rejected::new(Reason::SamlMalformed, "the decoded response is not UTF-8"))?;
    Ok(xml.trim_start_matches('\u{feff}').trim().to_string())
}

/// Refuses DTDs, entity declarations and processing instructions other than the XML
/// declaration: SAML needs none of them, and they carry entity-expansion and
/// parser-differential attacks.
pub fn structure(xml: &str) -> Result<(), Rejected> {
    let upper = xml.to_ascii_uppercase();
    if upper.contains("<!DOCTYPE") || upper.contains("<!ENTITY") {
        return Err(Rejected::new(
            Reason::SamlDtdForbidden,
            "the response contains a DTD or entity declaration, which SAML never needs",
        ));
    }
    let mut rest = xml;
    let mut first = true;
    while let Some(i) = rest.find("<?") {
        let is_decl = first && i == 0 && rest[2..].starts_with("xml") && {
            let c = rest[5..].chars().next().unwrap_or(' ');
            c.is_whitespace() || c == '?'
        };
        if !is_decl {
            return Err(Rejected::new(
                Reason::SamlMalformed,
                "the response contains a processing instruction; only the XML declaration is allowed",
            ));
        }
        first = false;
        rest = &rest[i + 2..];
    }
    Ok(())
}

/// Algorithms allowed in signatures. SHA-1 only when the IdP's configuration allows it.
pub fn algorithms(xml: &str, allow_sha1: bool) -> Result<(), Rejected> {
    for (element, uri) in algorithm_uris(xml) {
        check_algorithm(element, &uri, allow_sha1)?;
    }
    Ok(())
}

/// Checks one algorithm URI named by a `SignatureMethod`, `DigestMethod` or `Transform`.
pub fn check_algorithm(element: &str, uri: &str, allow_sha1: bool) -> Result<(), Rejected> {
    const SHA1: [&str; 3] = [
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2000/09/xmldsig#sha1",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1",
    ];
    const SIGNATURE: [&str; 6] = [
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
    ];
    const DIGEST: [&str; 3] = [
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    ];
    const TRANSFORM: [&str; 7] = [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/2006/12/xml-c14n11",
        "http://www.w3.org/2006/12/xml-c14n11#WithComments",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
        "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
    ];
    if SHA1.contains(&uri) {
        return if allow_sha1 {
            Ok(())
        } else {
            Err(Rejected::new(
                Reason::SamlSha1Refused,
                format!(
                    "the {element} is SHA-1 ({uri}); SHA-1 is refused unless the IdP's configuration sets allow_sha1 (legacy IdPs only; prefer switching the IdP to SHA-256)"
                ),
            ))
        };
    }
    let allowed = match element {
        "SignatureMethod" => SIGNATURE.contains(&uri),
        "DigestMethod" => DIGEST.contains(&uri),
        _ => TRANSFORM.contains(&uri),
    };
    if allowed {
        Ok(())
    } else {
        Err(Rejected::new(
            Reason::SamlAlgorithmRefused,
            format!(
                "the {element} algorithm '{}' is not allowed (RSA or ECDSA with SHA-2, exclusive or inclusive C14N, enveloped signature)",
                clip(uri)
            ),
        ))
    }
}

/// Every (element local name, Algorithm) of `SignatureMethod`, `DigestMethod` and
/// `Transform` elements, wherever they are (stricter than looking only where a
/// signature is expected).
fn algorithm_uris(xml: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    // The end of an open `EncryptionMethod` start tag: a DigestMethod inside it is the
    // RSA-OAEP digest of an encrypted key (checked by decrypt.rs, where SHA-1 is no
    // signature weakness), not a signature's.
    let mut encryption_method: Option<usize> = None;
    for tag in start_tags(xml) {
        let local = tag.name.rsplit(':').next().unwrap_or(tag.name);
        if local == "EncryptionMethod" {
            encryption_method = (!tag.attrs.trim_end().ends_with('/')).then_some(tag.end);
            continue;
        }
        let in_encryption_method = encryption_method
            .is_some_and(|open| xml.get(open..tag.start).is_some_and(|t| !t.contains("</")));
        if !in_encryption_method || !matches!(local, "DigestMethod" | "MGF") {
            encryption_method = None;
        }
        if in_encryption_method && local == "DigestMethod" {
            continue;
        }
        let element = match local {
            "SignatureMethod" => "SignatureMethod",
            "DigestMethod" => "DigestMethod",
            "Transform" => "Transform",
            _ => continue,
        };
        out.push((element, attr(tag.attrs, "Algorithm").unwrap_or_default()));
    }
    out
}

/// A start tag: its qualified name and the text of its attributes.
struct StartTag<'a> {
    name: &'a str,
    attrs: &'a str,
    /// The offset of the tag's `<` in the scanned text.
    start: usize,
    /// The offset just past the tag's `>` in the scanned text.
    end: usize,
}

/// The start tags of `xml`, in order (comments, CDATA and declarations skipped).
fn start_tags(xml: &str) -> impl Iterator<Item = StartTag<'_>> {
    let mut rest = xml;
    std::iter::from_fn(move || {
        loop {
            let i = rest.find('<')?;
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix("!--") {
                rest = r.find("-->").map(|j| &r[j + 3..]).unwrap_or("");
                continue;
            }
            if let Some(r) = rest.strip_prefix("![CDATA[") {
                rest = r.find("]]>").map(|j| &r[j + 3..]).unwrap_or("");
                continue;
            }
            if rest.starts_with(['/', '?', '!']) {
                continue;
            }
            let start = xml.len() - rest.len() - 1;
            let end = tag_end(rest)?;
            let tag = &rest[..end];
            let abs_end = xml.len() - rest.len() + end + 1;
            rest = &rest[end..];
            let name_end = tag
                .find(|c: char| c.is_whitespace() || c == '/')
                .unwrap_or(tag.len());
            return Some(StartTag {
                name: &tag[..name_end],
                attrs: &tag[name_end..],
                start,
                end: abs_end,
            });
        }
    })
}

/// The index of the `>` closing a tag, skipping quoted attribute values.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// The unescaped value of attribute `name` (unprefixed) in a tag's attribute text.
fn attr(attrs: &str, name: &str) -> Option<String> {
    let mut rest = attrs;
    loop {
        let rest_trim = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        let eq = rest_trim.find('=')?;
        let key = rest_trim[..eq].trim();
        let after = rest_trim[eq + 1..].trim_start();
        let q = after.chars().next()?;
        if q != '"' && q != '\'' {
            return None;
        }
        let close = after[1..].find(q)? + 1;
        let value = &after[1..close];
        if key == name {
            return Some(
                value
                    .replace("&quot;", "\"")
                    .replace("&apos;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&"),
            );
        }
        rest = &after[close + 1..];
    }
}

/// True when an element of this local name starts anywhere in `xml`.
pub fn has_element(xml: &str, local_name: &str) -> bool {
    start_tags(xml).any(|t| t.name.rsplit(':').next() == Some(local_name))
}

/// Rewrites each `X509Certificate` whose text is base64 of PEM text (some ADFS set-ups
/// write the PEM file, armour and all) as base64 of the DER inside, and each whose only
/// flaw is its own signature algorithm as configured (`certs::with_sound_signature_algorithm`), so that saml-rs can
/// match the KeyInfo with a configured certificate. Trust is unchanged: only configured
/// certificates verify, and KeyInfo lies outside what a signature digests (SignedInfo
/// names elements by reference; the enveloped transform drops the Signature). A rewrite
/// inside signed content would break its digest and be refused, never accepted.
pub fn unwrap_pem_certificates(xml: String) -> String {
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut edits = Vec::new();
    for t in start_tags(&xml) {
        if t.name.rsplit(':').next() != Some("X509Certificate") || t.attrs.ends_with('/') {
            continue;
        }
        let Some(len) = xml[t.end..].find('<') else {
            continue;
        };
        let compact: String = xml[t.end..t.end + len].split_ascii_whitespace().collect();
        let Ok(bytes) = engine.decode(compact) else {
            continue;
        };
        // A certificate read only with its signature algorithm made sound is configured
        // in that form (certs.rs): KeyInfo carries the original, so it is matched as the
        // same certificate.
        if let Some(fixed) = crate::certs::with_sound_signature_algorithm(&bytes)
            && <x509_cert::Certificate as x509_cert::der::Decode>::from_der(&bytes).is_err()
        {
            edits.push((t.end..t.end + len, engine.encode(fixed)));
            continue;
        }
        let Ok(pem) = String::from_utf8(bytes) else {
            continue;
        };
        let Some(body) = pem
            .trim()
            .strip_prefix("-----BEGIN CERTIFICATE-----")
            .and_then(|r| r.strip_suffix("-----END CERTIFICATE-----"))
        else {
            continue;
        };
        let der: String = body.split_ascii_whitespace().collect();
        if engine.decode(&der).is_ok() {
            edits.push((t.end..t.end + len, der));
        }
    }
    let mut xml = xml;
    for (range, der) in edits.into_iter().rev() {
        xml.replace_range(range, &der);
    }
    xml
}

/// `InResponseTo` of the root element, else of the first `SubjectConfirmationData`:
/// what an offline check without an expected request id treats as the request.
pub fn in_response_to(xml: &str) -> Option<String> {
    let mut tags = start_tags(xml);
    if let Some(root) = tags.next()
        && let Some(v) = attr(root.attrs, "InResponseTo")
    {
        return Some(v);
    }
    start_tags(xml)
        .find(|t| t.name.rsplit(':').next() == Some("SubjectConfirmationData"))
        .and_then(|t| attr(t.attrs, "InResponseTo"))
}

/// The text of the Response's own `Issuer` (its first child), if it has one.
pub fn response_issuer(xml: &str) -> Option<String> {
    let mut tags = start_tags(xml);
    let root = tags.next()?;
    if root.name.rsplit(':').next() != Some("Response") {
        return None;
    }
    // The first child element, in the text after the root's start tag.
    let body = xml.get(root.end..)?;
    let first = start_tags(body).next()?;
    if first.name.rsplit(':').next() != Some("Issuer") || first.attrs.ends_with('/') {
        return None;
    }
    let text = body.get(first.end..)?;
    let close = text.find("</")?;
    Some(text[..close].trim().to_string())
}

/// The earliest `NotBefore` and `NotOnOrAfter` of the response, as written: to tell an
/// expired response from one not yet valid when the validator only says "time window".
pub fn time_bounds(xml: &str) -> (Vec<String>, Vec<String>) {
    let mut before = Vec::new();
    let mut after = Vec::new();
    for t in start_tags(xml) {
        if let Some(v) = attr(t.attrs, "NotBefore") {
            before.push(v);
        }
        if let Some(v) = attr(t.attrs, "NotOnOrAfter") {
            after.push(v);
        }
    }
    (before, after)
}

fn clip(s: &str) -> String {
    tessera_core::text::clip(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rsa_oaep_sha1_digest_is_no_signature_digest_but_only_inside_its_encryption_method() {
        const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
        let oaep = format!(
            "<r><xenc:EncryptionMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p\">\
             <ds:DigestMethod Algorithm=\"{SHA1}\"/></xenc:EncryptionMethod></r>"
        );
        assert!(algorithms(&oaep, false).is_ok());
        // Anywhere else, SHA-1 is a signature digest and refused without allow_sha1.
        for xml in [
            format!("<r><ds:Reference><ds:DigestMethod Algorithm=\"{SHA1}\"/></ds:Reference></r>"),
            format!(
                "<r><xenc:EncryptionMethod Algorithm=\"x\"></xenc:EncryptionMethod><ds:DigestMethod Algorithm=\"{SHA1}\"/></r>"
            ),
            format!(
                "<r><xenc:EncryptionMethod Algorithm=\"x\"/><ds:DigestMethod Algorithm=\"{SHA1}\"/></r>"
            ),
            format!(
                "<r><xenc:EncryptionMethod Algorithm=\"x\"><a/><ds:DigestMethod Algorithm=\"{SHA1}\"/></xenc:EncryptionMethod></r>"
            ),
        ] {
            let e = algorithms(&xml, false).unwrap_err();
            assert_eq!(e.reason, Reason::SamlSha1Refused, "{xml}");
        }
    }

    #[test]
    fn pem_wrapped_keyinfo_certificates_are_unwrapped_and_nothing_else() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let pem = "-----BEGIN CERTIFICATE-----\nTUlJ\nQkFB\n-----END CERTIFICATE-----\n";
        let xml = format!(
            "<r><ds:X509Certificate>{}</ds:X509Certificate><X509Certificate>TUlJQg==</X509Certificate><!-- <X509Certificate>{}</X509Certificate> --><p>{}</p></r>",
            b64(pem),
            b64(pem),
            b64(pem)
        );
        let out = unwrap_pem_certificates(xml.clone());
        assert_eq!(
            out,
            format!(
                "<r><ds:X509Certificate>TUlJQkFB</ds:X509Certificate><X509Certificate>TUlJQg==</X509Certificate><!-- <X509Certificate>{}</X509Certificate> --><p>{}</p></r>",
                b64(pem),
                b64(pem)
            )
        );
        // Not base64 of a PEM certificate: left exactly as it was.
        for text in [
            "not base64!",
            &b64("-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----"),
            &b64("-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----"),
        ] {
            let x = format!("<X509Certificate>{text}</X509Certificate>");
            assert_eq!(unwrap_pem_certificates(x.clone()), x);
        }
    }

    #[test]
    fn dtds_entities_and_pis_are_refused() {
        assert!(structure("<?xml version=\"1.0\"?><a/>").is_ok());
        for bad in [
            "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
            "<a><!ENTITY x 'y'></a>",
            "<?xml version=\"1.0\"?><?xml-stylesheet href=\"x\"?><a/>",
            "<a/><?php x ?>",
        ] {
            assert!(structure(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn algorithms_follow_the_allowlist() {
        let sig = |alg: &str, digest: &str| {
            format!(
                "<r><ds:Signature><ds:SignedInfo><ds:SignatureMethod Algorithm=\"{alg}\"/><ds:Reference><ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms><ds:DigestMethod Algorithm='{digest}'/></ds:Reference></ds:SignedInfo></ds:Signature></r>"
            )
        };
        let sha256 = "http://www.w3.org/2001/04/xmlenc#sha256";
        let rsa256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
        let rsa1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
        assert!(algorithms(&sig(rsa256, sha256), false).is_ok());
        let e = algorithms(&sig(rsa1, sha256), false).unwrap_err();
        assert_eq!(e.reason, Reason::SamlSha1Refused);
        assert!(algorithms(&sig(rsa1, sha256), true).is_ok());
        let e = algorithms(
            &sig("http://www.w3.org/2000/09/xmldsig#hmac-sha1", sha256),
            true,
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::SamlAlgorithmRefused);
        // A comment cannot hide a tag from the scan, nor smuggle one in.
        let hidden = format!("<!-- <x> -->{}", sig(rsa1, sha256));
        assert!(algorithms(&hidden, false).is_err());
    }

    #[test]
    fn decoding_and_limits() {
        assert_eq!(decode(b"  <a/>").unwrap(), "<a/>");
        let b64 = base64::engine::general_purpose::STANDARD.encode("<a/>");
        assert_eq!(decode(b64.as_bytes()).unwrap(), "<a/>");
        assert_eq!(
            decode(&vec![b'A'; MAX_RESPONSE_BYTES + 1])
                .unwrap_err()
                .reason,
            Reason::SamlBodyTooLarge
        );
        assert_eq!(decode(b"!!!").unwrap_err().reason, Reason::SamlMalformed);
    }

    #[test]
    fn response_fields_for_checks() {
        let xml = r#"<samlp:Response xmlns:samlp="p" ID="r1" InResponseTo="req-1"><saml:Issuer xmlns:saml="a"> https://idp </saml:Issuer><saml:Assertion><saml:Conditions NotBefore="2020-01-01T00:00:00Z" NotOnOrAfter="2020-01-01T00:05:00Z"/></saml:Assertion></samlp:Response>"#;
        assert_eq!(in_response_to(xml).as_deref(), Some("req-1"));
        assert_eq!(response_issuer(xml).as_deref(), Some("https://idp"));
        let (b, a) = time_bounds(xml);
        assert_eq!(b, vec!["2020-01-01T00:00:00Z"]);
        assert_eq!(a, vec!["2020-01-01T00:05:00Z"]);
    }
}

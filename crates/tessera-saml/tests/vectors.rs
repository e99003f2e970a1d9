//! The public SAML vectors in `tests/data/saml-vectors/` (200 rows from five projects'
//! test suites): every row through the validator with the row's clock, context and
//! policy. Each verdict must match the row's (or the alternative it states), accepted
//! rows must yield the expected NameID, and never a NameID the row forbids.
//!
//! The corpus is checked in with its README and the upstream licences; a checkout
//! without it fails these tests rather than skipping them.

mod corpus;

use std::path::Path;
use std::time::Duration;

use corpus::*;
use tessera_core::Reason;
use tessera_saml::{Expectation, IdpTrust, RequestCheck, validate};

/// Where Tessera's verdict knowingly differs from a row's: always a refusal of a row the
/// corpus accepts, for one of the reasons at the top of the file.
const DEVIATIONS: &str = include_str!("vector-deviations.tsv");

/// The refusals a deviation may have, by category.
fn deviation_reasons(category: &str) -> &'static [Reason] {
    match category {
        "cbc-under-unsigned-response" => &[Reason::SamlEncryptedCbcUnsigned],
        "rsa-1_5-key-transport" => &[Reason::SamlAlgorithmRefused],
        "encrypted-name-id" => &[Reason::SamlNameIdMissing],
        "issue-instant-offset" => &[Reason::SamlMalformed],
        "signed-without-destination" => &[Reason::SamlDestinationMismatch],
        "unsolicited-bearer-in-response-to" => &[Reason::SamlInResponseToMismatch],
        _ => &[],
    }
}

#[test]
fn every_vector_gets_its_verdict() {
    let dir = corpus_dir();
    let rows = rows(&dir);
    assert_eq!(rows.len(), 200, "the corpus has 200 rows");
    let deviations: std::collections::BTreeMap<String, String> = DEVIATIONS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (f, c) = l.split_once('\t').expect("file<TAB>category");
            (f.to_string(), c.trim().to_string())
        })
        .collect();
    let mut mismatches = Vec::new();
    let mut seen_deviations = Vec::new();
    let mut accepted = 0;
    for row in &rows {
        let (verdict, what) = run(row);
        let (verdicts, forbidden) = allowed(row);
        // A file can stand in several rows (other policy or context): name the row.
        let name = format!(
            "{}/{} {}/{}",
            row.project,
            row.file
                .strip_prefix(dir.join(&row.project))
                .unwrap()
                .display(),
            row.expected,
            row.policy
        );
        if verdict == "accept" {
            accepted += 1;
            if forbidden.contains(&what) {
                mismatches.push(format!(
                    "{name}: FORBIDDEN NameID '{what}' ({})",
                    row.reason
                ));
                continue;
            }
            if row.expected == "accept"
                && !row.expected_nameid.is_empty()
                && what != row.expected_nameid
            {
                mismatches.push(format!(
                    "{name}: NameID '{what}', expected '{}'",
                    row.expected_nameid
                ));
                continue;
            }
        }
        if verdicts.contains(&verdict.as_str()) {
            if deviations.contains_key(&name) {
                mismatches.push(format!(
                    "{name} is listed as a deviation but now gets its verdict: remove it from vector-deviations.tsv"
                ));
            }
            continue;
        }
        // A deviation is only ever a refusal, for its category's reason.
        if let Some(category) = deviations.get(&name)
            && verdict == "reject"
            && deviation_reasons(category)
                .iter()
                .any(|r| what.starts_with(&format!("{r}: ")))
        {
            seen_deviations.push(name);
            continue;
        }
        mismatches.push(format!(
            "{name}: expected {} ({}), got {verdict}: {what}",
            row.expected, row.reason
        ));
    }
    eprintln!(
        "{} rows: {accepted} accepted, {} as the corpus says, {} documented deviations (refusals), {} mismatches",
        rows.len(),
        rows.len() - seen_deviations.len() - mismatches.len(),
        seen_deviations.len(),
        mismatches.len()
    );
    for m in &mismatches {
        eprintln!("  {m}");
    }
    assert!(mismatches.is_empty(), "{} mismatches", mismatches.len());
    assert_eq!(
        seen_deviations.len(),
        deviations.len(),
        "every listed deviation was seen"
    );
}

#[test]
fn sha1_rows_are_refused_with_their_own_reason_unless_allowed() {
    let dir = corpus_dir();
    let mut n = 0;
    for row in rows(&dir).iter().filter(|r| r.expected == "accept") {
        let xml = String::from_utf8_lossy(&std::fs::read(&row.file).unwrap()).to_string();
        let decoded = tessera_saml::scan::decode(xml.as_bytes());
        let Ok(text) = decoded else { continue };
        if !text.contains("xmldsig#rsa-sha1") {
            continue;
        }
        let mut p = policy(&row.policy);
        p.allow_sha1 = false;
        let e = validate_with(row, p).unwrap_err();
        assert_eq!(e.reason, Reason::SamlSha1Refused, "{}", row.file.display());
        n += 1;
    }
    assert!(n >= 40, "only {n} SHA-1 accept rows found");
}

#[test]
fn rsa_1024_rows_are_refused_unless_allowed() {
    let dir = corpus_dir();
    let mut n = 0;
    for row in rows(&dir).iter().filter(|r| r.expected == "accept") {
        let certs = certificates(&row.idp_cert_file);
        let encrypted = tessera_saml::scan::decode(&std::fs::read(&row.file).unwrap())
            .is_ok_and(|x| x.contains("EncryptedAssertion"));
        if encrypted
            || certs
                .iter()
                .all(|c| tessera_saml::certs::inspect(c, false).is_ok())
        {
            continue;
        }
        let mut p = policy(&row.policy);
        p.allow_rsa_1024 = false;
        let e = validate_with(row, p).unwrap_err();
        assert_eq!(
            e.reason,
            Reason::SamlNotConfigured,
            "{}",
            row.file.display()
        );
        assert!(e.detail.contains("allow_rsa_1024"), "{}", e.detail);
        if run(row).0 == "accept" {
            n += 1;
        }
    }
    assert!(n >= 10, "only {n} accepted rows with a 1024-bit IdP key");
}

/// Two corpus certificates are not strict DER (their own signature algorithm is the
/// invalid OID 0.0); OpenSSL and their IdP read them, and so does Tessera, saying so.
#[test]
fn a_certificate_not_strict_der_where_it_does_not_matter_is_read_and_noted() {
    let dir = corpus_dir();
    let cert = std::fs::read_to_string(dir.join("python3-saml/tests/certs/certificate1")).unwrap();
    let info = tessera_saml::certs::inspect(&cert, true).unwrap();
    assert!(
        info.subject.contains("app.onelogin.com"),
        "{}",
        info.subject
    );
    let note = info.note.expect("the leniency is noted");
    assert!(note.contains("not strict DER"), "{note}");
    // Kept as given; the verifier is given it with a sound signature algorithm, which it
    // loads, and whose key is the original's, byte for byte.
    let verifiable = tessera_saml::certs::verifiable(&info.pem);
    saml_rs::crypto::keys::load_certificate(&verifiable).expect("the verifier reads it");
    let b64 = |pem: &str| -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body.trim()).unwrap()
    };
    let original = b64(&cert);
    assert_eq!(b64(&info.pem), original, "stored as given");
    let fixed = b64(&verifiable);
    let spki = |der: &[u8]| -> Vec<u8> {
        use x509_cert::der::{Decode, Encode};
        let c = x509_cert::Certificate::from_der(der).unwrap();
        c.tbs_certificate.subject_public_key_info.to_der().unwrap()
    };
    let fixed_spki = spki(&fixed);
    assert!(
        original
            .windows(fixed_spki.len())
            .any(|w| w == fixed_spki.as_slice()),
        "the public key is the original's"
    );
    assert!(info.key.starts_with("RSA 1024"), "{}", info.key);
    // Its 1024-bit key still needs allow_rsa_1024: leniency is about encoding only.
    assert!(tessera_saml::certs::inspect(&cert, false).is_err());
    // Garbage is still refused, naming the strict error.
    let e = tessera_saml::certs::inspect("TUlJQg==", true).unwrap_err();
    assert!(e.contains("not a DER-encoded X.509 certificate"), "{e}");
}

#[test]
fn an_assertion_without_authn_statement_is_refused_with_its_reason() {
    let dir = corpus_dir();
    let row = rows(&dir)
        .into_iter()
        .find(|r| r.file.ends_with("invalids/no_authnstatement.xml.base64"))
        .expect("python3-saml's no_authnstatement row");
    let e = validate_with(&row, policy(&row.policy)).unwrap_err();
    assert_eq!(e.reason, Reason::SamlAuthnStatementMissing, "{}", e.detail);
}

/// Validates a row with another policy, InResponseTo unchecked.
fn validate_with(
    row: &Row,
    p: tessera_saml::Policy,
) -> Result<tessera_saml::Accepted, tessera_saml::Rejected> {
    let expect = Expectation {
        sp_entity_id: row.sp_entity_id.clone(),
        acs_url: row.acs_url.clone(),
        in_response_to: RequestCheck::NotChecked,
        decryption_keys: decryption_keys(row),
        now: now(&row.now),
        policy: p,
    };
    let idp = IdpTrust {
        entity_id: row.idp_entity_id.clone(),
        certificates: certificates(&row.idp_cert_file),
        sso_url: None,
        sso_binding: Default::default(),
        slo_url: None,
        slo_binding: Default::default(),
    };
    validate(&std::fs::read(&row.file).unwrap(), &idp, &expect)
}

/// A response the validator accepts, with the context that accepts it.
fn accepted_row(dir: &Path) -> (Row, Vec<u8>) {
    let row = rows(dir)
        .into_iter()
        .find(|r| {
            r.expected == "accept"
                && !r.request_id.is_empty()
                && r.policy == "std"
                && run(r).0 == "accept"
        })
        .expect("an accepted row with a request id");
    let bytes = std::fs::read(&row.file).unwrap();
    (row, bytes)
}

fn expectation(row: &Row) -> Expectation {
    Expectation {
        sp_entity_id: row.sp_entity_id.clone(),
        acs_url: row.acs_url.clone(),
        in_response_to: RequestCheck::Request(row.request_id.clone()),
        decryption_keys: decryption_keys(row),
        now: now(&row.now),
        policy: policy(&row.policy),
    }
}

fn idp(row: &Row) -> IdpTrust {
    IdpTrust {
        entity_id: row.idp_entity_id.clone(),
        certificates: certificates(&row.idp_cert_file),
        sso_url: None,
        sso_binding: Default::default(),
        slo_url: None,
        slo_binding: Default::default(),
    }
}

/// Each attack or mistake on a valid response is refused with its own reason.
#[test]
fn attacks_and_mistakes_have_their_own_reasons() {
    let dir = corpus_dir();
    let (row, bytes) = accepted_row(&dir);
    let xml = tessera_saml::scan::decode(&bytes).unwrap();
    let ok = validate(&bytes, &idp(&row), &expectation(&row)).expect("the base case passes");
    assert!(
        !ok.replay_keys.is_empty(),
        "replay identifiers are returned"
    );
    assert!(
        ok.replay_keys
            .iter()
            .any(|(k, _)| k.starts_with("assertion_id:"))
    );

    let refuse = |input: &[u8], idp: &IdpTrust, e: &Expectation| {
        validate(input, idp, e).expect_err("refused").reason
    };
    let mut e = expectation(&row);
    e.sp_entity_id = "https://attacker.example/sp".into();
    assert_eq!(refuse(&bytes, &idp(&row), &e), Reason::SamlAudienceMismatch);

    let mut e = expectation(&row);
    e.acs_url = "https://attacker.example/acs".into();
    let r = refuse(&bytes, &idp(&row), &e);
    assert!(
        matches!(
            r,
            Reason::SamlDestinationMismatch | Reason::SamlRecipientMismatch
        ),
        "{r}"
    );

    let mut i = idp(&row);
    i.entity_id = "https://attacker.example/idp".into();
    assert_eq!(
        refuse(&bytes, &i, &expectation(&row)),
        Reason::SamlIssuerMismatch
    );

    let mut e = expectation(&row);
    e.now += Duration::from_secs(30 * 24 * 3600);
    assert_eq!(refuse(&bytes, &idp(&row), &e), Reason::SamlExpired);

    let mut e = expectation(&row);
    e.now -= Duration::from_secs(30 * 24 * 3600);
    assert_eq!(refuse(&bytes, &idp(&row), &e), Reason::SamlNotYetValid);

    let mut e = expectation(&row);
    e.in_response_to = RequestCheck::Request("_another_request".into());
    assert_eq!(
        refuse(&bytes, &idp(&row), &e),
        Reason::SamlInResponseToMismatch
    );

    let mut e = expectation(&row);
    e.in_response_to = RequestCheck::Unsolicited;
    assert_eq!(refuse(&bytes, &idp(&row), &e), Reason::SamlUnsolicited);

    // Another IdP's certificate (an attacker's own key would be the same to us).
    let other = rows(&dir)
        .into_iter()
        .map(|r| certificates(&r.idp_cert_file))
        .find(|c| {
            *c != idp(&row).certificates
                && c.iter()
                    .all(|x| tessera_saml::certs::inspect(x, true).is_ok())
        })
        .unwrap();
    let mut i = idp(&row);
    i.certificates = other.clone();
    let r = refuse(&bytes, &i, &expectation(&row));
    assert!(
        matches!(r, Reason::SamlCertUntrusted | Reason::SamlSignatureInvalid),
        "{r}"
    );

    // An attacker's certificate in KeyInfo: keys in the response are never trusted.
    let other_cert: String = other[0]
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    if let Some(start) = xml.find("X509Certificate>") {
        let from = start + "X509Certificate>".len();
        let end = from + xml[from..].find('<').unwrap();
        let mut swapped = xml.clone();
        swapped.replace_range(from..end, &other_cert);
        let r = refuse(swapped.as_bytes(), &idp(&row), &expectation(&row));
        assert!(
            matches!(r, Reason::SamlCertUntrusted | Reason::SamlSignatureInvalid),
            "{r}"
        );
    }

    // Unsigned: every Signature removed.
    let unsigned = strip_signatures(&xml);
    assert_ne!(unsigned, xml);
    assert_eq!(
        refuse(unsigned.as_bytes(), &idp(&row), &expectation(&row)),
        Reason::SamlUnsigned
    );

    // A changed NameID breaks the signature over it.
    let name_id = ok.name_id.clone();
    let tampered = xml.replacen(&format!(">{name_id}<"), ">admin@attacker.example<", 1);
    assert_ne!(tampered, xml);
    let r = refuse(tampered.as_bytes(), &idp(&row), &expectation(&row));
    assert!(
        matches!(
            r,
            Reason::SamlSignatureInvalid | Reason::SamlSignedContentMismatch
        ),
        "{r}"
    );

    // DTDs and entity expansion never reach a parser.
    let bomb = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]>{}",
        xml.trim_start_matches(|c| c != '<')
            .splitn(2, "?>")
            .last()
            .unwrap_or(&xml)
    );
    assert_eq!(
        refuse(bomb.as_bytes(), &idp(&row), &expectation(&row)),
        Reason::SamlDtdForbidden
    );

    // Oversized, before any decoding.
    let big = vec![b'A'; tessera_saml::scan::MAX_RESPONSE_BYTES + 1];
    assert_eq!(
        refuse(&big, &idp(&row), &expectation(&row)),
        Reason::SamlBodyTooLarge
    );
}

/// Removes every `<…:Signature>…</…:Signature>` element.
fn strip_signatures(xml: &str) -> String {
    let mut out = xml.to_string();
    for prefix in ["ds:", "dsig:", ""] {
        loop {
            let open = format!("<{prefix}Signature");
            let close = format!("</{prefix}Signature>");
            let Some(start) = out
                .match_indices(&open)
                .map(|(i, _)| i)
                .find(|&i| out[i + open.len()..].starts_with([' ', '>']))
            else {
                break;
            };
            let Some(end) = out[start..].find(&close) else {
                break;
            };
            out.replace_range(start..start + end + close.len(), "");
        }
    }
    out
}

/// Signature-wrapping rows of the corpus are refused for a signature reason, never for
/// something incidental (time, audience) that a differently built attack could avoid.
#[test]
fn wrapping_attacks_are_refused_as_signature_failures() {
    let dir = corpus_dir();
    let mut n = 0;
    for row in rows(&dir).iter().filter(|r| {
        r.expected == "reject"
            && (r.reason.contains("XSW")
                || r.reason.to_lowercase().contains("wrapping")
                || r.reason.to_lowercase().contains("comment"))
    }) {
        // A row whose configured certificate does not even parse, or whose SP context is
        // not made of URLs (ruby-saml's stubbed 'audience' and 'recipient'), never
        // reaches the signature checks: the configuration is refused first.
        if certificates(&row.idp_cert_file)
            .iter()
            .any(|c| tessera_saml::certs::inspect(c, true).is_err())
            || !row.acs_url.contains("://")
        {
            continue;
        }
        let (verdict, what) = run(row);
        assert_eq!(verdict, "reject", "{}", row.file.display());
        let reason = what.split(':').next().unwrap();
        assert!(
            [
                "saml_wrapping_detected",
                "saml_signature_invalid",
                "saml_signed_content_mismatch",
                "saml_unsigned",
                "saml_cert_untrusted",
                "saml_malformed",
                // Wrapped inside an EncryptedAssertion with 3DES and RSA PKCS#1 v1.5:
                // refused before any key is used.
                "saml_algorithm_refused",
            ]
            .contains(&reason),
            "{} ({}): {what}",
            row.file.display(),
            row.reason
        );
        n += 1;
    }
    eprintln!("{n} wrapping and comment-injection rows refused for a signature reason");
    assert!(n >= 3, "only {n} wrapping rows");
}

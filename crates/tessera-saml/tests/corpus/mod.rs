//! Reading the public SAML vectors in `tests/data/saml-vectors/` (the manifest,
//! certificates, clock and policy of each row) and running a row through the validator. Shared by the in-process vector test
//! and the `tessera saml check` test (tests/api/saml_cli.rs includes this file).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tessera_saml::{Expectation, IdpTrust, Policy, RequestCheck, validate};

/// One manifest row (see the corpus README for the columns).
#[derive(Debug, Clone)]
pub struct Row {
    pub project: String,
    pub file: PathBuf,
    pub expected: String,
    pub reason: String,
    pub idp_cert_file: PathBuf,
    pub sp_entity_id: String,
    pub acs_url: String,
    pub now: String,
    pub request_id: String,
    pub idp_entity_id: String,
    pub sp_decrypt_key: String,
    pub expected_nameid: String,
    pub policy: String,
    pub also_acceptable: String,
}

/// The corpus, checked in at `crates/tessera-saml/tests/data/saml-vectors/`. Its absence
/// is a broken checkout, so it fails the test instead of skipping it.
pub fn corpus_dir() -> PathBuf {
    // This file is compiled from two packages (tessera-saml and, through
    // tests/api/saml_cli.rs, the workspace root): one of the two paths is ours.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        here.join("tests/data/saml-vectors"),
        here.join("crates/tessera-saml/tests/data/saml-vectors"),
    ];
    candidates
        .iter()
        .find(|d| d.join("README.md").is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the SAML vector corpus is missing: none of {candidates:?} holds its README.md \
                 (it is part of the repository; is the checkout complete?)"
            )
        })
}

pub fn rows(dir: &Path) -> Vec<Row> {
    let mut out = Vec::new();
    for project in [
        "gosaml2",
        "crewjam-saml",
        "node-saml",
        "python3-saml",
        "ruby-saml",
    ] {
        let base = dir.join(project);
        let manifest = std::fs::read_to_string(base.join("MANIFEST.tsv")).unwrap();
        for line in manifest.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let c: Vec<&str> = line.split('\t').collect();
            let col = |i: usize| c.get(i).copied().unwrap_or("").to_string();
            out.push(Row {
                project: project.to_string(),
                file: base.join(col(0)),
                expected: col(2),
                reason: col(3),
                idp_cert_file: base.join(col(4)),
                sp_entity_id: col(5),
                acs_url: col(6),
                now: col(7),
                request_id: col(8),
                idp_entity_id: col(9),
                sp_decrypt_key: col(10),
                expected_nameid: col(11),
                policy: col(12),
                also_acceptable: col(13),
            });
        }
    }
    out
}

/// The certificates a row trusts: a PEM file (one or more), or IdP metadata.
pub fn certificates(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    if text.contains("EntityDescriptor") {
        return tessera_saml::metadata::read_idp_metadata(&text)
            .unwrap()
            .signing_certificates;
    }
    tessera_saml::certs::split(&text)
}

/// The policy a row's `policy` column names, as far as the validator has one.
pub fn policy(name: &str) -> Policy {
    Policy {
        // The corpus is mostly SHA-1 (see its README); SHA-1 refusal is tested apart.
        allow_sha1: true,
        // Some IdPs of the corpus sign with 1024-bit RSA keys; their refusal is tested
        // apart.
        allow_rsa_1024: true,
        skew_seconds: 60,
        require_signed_assertion: name == "require-signed-assertion",
        require_signed_response: name == "require-signed-response",
        check_cert_validity: name == "check-idp-cert-validity",
        require_authn_statement: true,
    }
}

pub fn now(s: &str) -> SystemTime {
    let t = tessera_core::text::parse_rfc3339(s).unwrap_or_else(|| panic!("bad now '{s}'"));
    SystemTime::UNIX_EPOCH + Duration::from_secs(t as u64)
}

/// The row's verdict and the NameIDs it forbids.
pub fn allowed(row: &Row) -> (Vec<&'static str>, Vec<String>) {
    let mut verdicts = vec![if row.expected == "accept" {
        "accept"
    } else {
        "reject"
    }];
    let alt = row.also_acceptable.trim();
    for v in ["accept", "reject"] {
        if alt.starts_with(v) {
            // "reject under policy X" allows the alternative only when X is applied.
            let applies = match alt.split_once("under policy ") {
                Some((_, rest)) => rest.split_whitespace().next() == Some(row.policy.as_str()),
                None => true,
            };
            if applies && !verdicts.contains(&v) {
                verdicts.push(v);
            }
        }
    }
    let mut forbidden = Vec::new();
    if let Some((_, rest)) = alt.split_once("MUST NOT yield") {
        let rest = rest.trim().trim_start_matches("NameID").trim();
        for part in rest.split(" or ") {
            let p = part.trim().trim_matches('"').trim();
            if !p.is_empty() {
                forbidden.push(p.to_string());
            }
        }
    }
    (verdicts, forbidden)
}

/// The file of the SP decryption key the row names (the upstream project's public test
/// key). One upstream file was a symbolic link, copied as a file holding its target.
pub fn decryption_key_path(row: &Row) -> Option<PathBuf> {
    if row.sp_decrypt_key.is_empty() {
        return None;
    }
    let path = corpus_dir().join(&row.project).join(&row.sp_decrypt_key);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if text.starts_with("-----") {
        return Some(path);
    }
    Some(path.parent().unwrap().join(text.trim()))
}

/// The SP decryption key the row names.
pub fn decryption_keys(row: &Row) -> Vec<tessera_saml::DecryptionKey> {
    decryption_key_path(row)
        .map(|path| {
            let key_pem = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            vec![tessera_saml::DecryptionKey { key_pem }]
        })
        .unwrap_or_default()
}

/// Runs one row in-process: (verdict, NameID or reason).
pub fn run(row: &Row) -> (String, String) {
    let input = std::fs::read(&row.file).unwrap();
    let idp = IdpTrust {
        entity_id: row.idp_entity_id.clone(),
        certificates: certificates(&row.idp_cert_file),
        sso_url: None,
        sso_binding: Default::default(),
        slo_url: None,
        slo_binding: Default::default(),
    };
    let expect = Expectation {
        sp_entity_id: row.sp_entity_id.clone(),
        acs_url: row.acs_url.clone(),
        in_response_to: if row.request_id.is_empty() {
            RequestCheck::NotChecked
        } else {
            RequestCheck::Request(row.request_id.clone())
        },
        decryption_keys: decryption_keys(row),
        now: now(&row.now),
        policy: policy(&row.policy),
    };
    match validate(&input, &idp, &expect) {
        Ok(a) => ("accept".into(), a.name_id),
        Err(r) => ("reject".into(), format!("{}: {}", r.reason, r.detail)),
    }
}

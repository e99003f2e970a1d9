//! `tessera saml check`: validates one SAML Response offline with the validator the ACS
//! uses (`tessera_saml::validate`), for admins debugging an IdP and for test corpora.
//! Exit codes: 0 accept, 1 reject, 2 usage or configuration error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use serde::Serialize;
use tessera_core::text::shown;
use tessera_saml::{Expectation, IdpTrust, Policy, RequestCheck};

use crate::token_cmd::exit;

#[derive(Args)]
pub struct SamlArgs {
    #[command(subcommand)]
    command: SamlCommand,
}

#[derive(Subcommand)]
enum SamlCommand {
    /// Validate one SAML Response offline, exactly as the ACS would
    Check(CheckArgs),
}

#[derive(Args)]
struct CheckArgs {
    /// The response: raw XML, or base64 (as posted in SAMLResponse), or deflate+base64
    response_file: PathBuf,
    /// The IdP's metadata document (entity id and signing certificates)
    #[arg(long, conflicts_with_all = ["idp_cert", "idp_entity_id"])]
    idp_metadata: Option<PathBuf>,
    /// The IdP's signing certificate (PEM file); with --idp-entity-id
    #[arg(long, requires = "idp_entity_id")]
    idp_cert: Option<PathBuf>,
    /// The IdP's entity id (the Issuer of its responses); with --idp-cert
    #[arg(long, requires = "idp_cert")]
    idp_entity_id: Option<String>,
    /// Our SP entity id: the Audience the response must name
    #[arg(long)]
    sp_entity_id: String,
    /// An SP decryption key (PEM file, PKCS#8 or PKCS#1) for an encrypted assertion;
    /// repeat while a rotation overlaps (each is tried)
    #[arg(long = "sp-key", value_name = "PEM_FILE")]
    sp_keys: Vec<std::path::PathBuf>,
    /// Our ACS URL: the Destination and Recipient the response must name
    #[arg(long)]
    acs_url: String,
    /// The AuthnRequest id the response must answer (InResponseTo); without it,
    /// InResponseTo is not checked and unsolicited responses are allowed
    #[arg(long)]
    request_id: Option<String>,
    /// The clock, RFC 3339 (default: now)
    #[arg(long)]
    now: Option<String>,
    /// Accept SHA-1 signatures and digests (legacy IdPs)
    #[arg(long)]
    allow_sha1: bool,
    /// Accept an IdP certificate with a 1024-bit RSA key (legacy IdPs)
    #[arg(long)]
    allow_rsa_1024: bool,
    /// Not supported: the Recipient is always checked (exits 2 to say so)
    #[arg(long)]
    skip_recipient_check: bool,
    /// Allowed clock difference with the IdP, in seconds
    #[arg(long, default_value_t = tessera_core::sso::DEFAULT_CLOCK_SKEW_SECONDS)]
    skew: u32,
    /// A stricter policy: std (default), require-signed-assertion,
    /// require-signed-response, check-idp-cert-validity
    #[arg(long, default_value = "std")]
    policy: String,
    /// Print the verdict as JSON
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Verdict {
    verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<BTreeMap<String, Vec<String>>>,
}

/// Runs `tessera saml ...`; returns the exit code.
pub fn run(args: SamlArgs) -> i32 {
    match args.command {
        SamlCommand::Check(a) => check(a),
    }
}

fn usage(json: bool, msg: String) -> i32 {
    if json {
        let v = serde_json::json!({"verdict": "error", "detail": msg});
        println!("{v}");
    } else {
        eprintln!("tessera saml check: {msg}");
    }
    exit::USAGE
}

fn check(a: CheckArgs) -> i32 {
    if a.skip_recipient_check {
        return usage(
            a.json,
            "--skip-recipient-check is not supported: Tessera's validator always checks the bearer Recipient against --acs-url (pass the Recipient the response names as --acs-url to see the other checks)".into(),
        );
    }
    let mut policy = Policy {
        allow_sha1: a.allow_sha1,
        allow_rsa_1024: a.allow_rsa_1024,
        skew_seconds: a.skew,
        ..Policy::default()
    };
    match a.policy.as_str() {
        "std" => {}
        "require-signed-assertion" => policy.require_signed_assertion = true,
        "require-signed-response" => policy.require_signed_response = true,
        "check-idp-cert-validity" => policy.check_cert_validity = true,
        other => {
            return usage(
                a.json,
                format!(
                    "unknown --policy '{other}'; use std, require-signed-assertion, require-signed-response or check-idp-cert-validity"
                ),
            );
        }
    }
    let idp = match idp(&a) {
        Ok(i) => i,
        Err(msg) => return usage(a.json, msg),
    };
    let now = match &a.now {
        None => SystemTime::now(),
        Some(s) => match tessera_core::text::parse_rfc3339(s) {
            Some(t) if t >= 0 => SystemTime::UNIX_EPOCH + Duration::from_secs(t as u64),
            _ => return usage(a.json, format!("--now '{s}' is not an RFC 3339 date-time")),
        },
    };
    let input = match std::fs::read(&a.response_file) {
        Ok(b) => b,
        Err(e) => {
            return usage(
                a.json,
                format!("cannot read {}: {e}", a.response_file.display()),
            );
        }
    };
    let mut decryption_keys = Vec::new();
    for path in &a.sp_keys {
        match std::fs::read_to_string(path) {
            Ok(key_pem) if key_pem.contains("PRIVATE KEY-----") => {
                decryption_keys.push(tessera_saml::DecryptionKey { key_pem })
            }
            Ok(_) => {
                return usage(a.json, format!("{}: not a PEM private key", path.display()));
            }
            Err(e) => return usage(a.json, format!("cannot read {}: {e}", path.display())),
        }
    }
    let expect = Expectation {
        sp_entity_id: a.sp_entity_id.clone(),
        acs_url: a.acs_url.clone(),
        in_response_to: match &a.request_id {
            Some(id) => RequestCheck::Request(id.clone()),
            None => RequestCheck::NotChecked,
        },
        decryption_keys,
        now,
        policy,
    };
    let (v, code) = match tessera_saml::validate(&input, &idp, &expect) {
        Ok(ok) => (
            Verdict {
                verdict: "accept",
                reason: None,
                detail: format!(
                    "valid: signed ({}) by the configured IdP '{}', for '{}'{}",
                    ok.signature_algorithms.join(", "),
                    ok.issuer,
                    a.sp_entity_id,
                    ok.encryption_algorithm
                        .map(|e| format!("; the assertion was encrypted ({e})"))
                        .unwrap_or_default()
                ),
                name_id: Some(ok.name_id),
                attributes: Some(ok.attributes),
            },
            0,
        ),
        // A configuration that can never validate is a usage error, not a verdict.
        Err(r) if r.reason == tessera_core::Reason::SamlNotConfigured => {
            return usage(a.json, r.detail);
        }
        Err(r) => (
            Verdict {
                verdict: "reject",
                reason: Some(r.reason.code().to_string()),
                detail: r.detail,
                name_id: None,
                attributes: None,
            },
            exit::REFUSED,
        ),
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&v).expect("a verdict serialises")
        );
    } else {
        match &v.reason {
            // The response's text (NameID, attributes, details quoting it) is the IdP's
            // or an attacker's: escaped for the terminal.
            None => {
                println!("accept: {}", shown(&v.detail));
                println!("  NameID: {}", shown(v.name_id.as_deref().unwrap_or("")));
                for (k, vals) in v.attributes.iter().flatten() {
                    println!("  {}: {}", shown(k), shown(&vals.join(", ")));
                }
            }
            Some(reason) => {
                println!("reject: {reason}");
                println!("  {}", shown(&v.detail));
                println!("  see docs/errors.md#{reason}");
            }
        }
    }
    code
}

fn idp(a: &CheckArgs) -> Result<IdpTrust, String> {
    if let Some(path) = &a.idp_metadata {
        let xml = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let fields = tessera_saml::metadata::read_idp_metadata(&xml)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if fields.signing_certificates.is_empty() {
            return Err(format!(
                "{}: the IdP metadata has no signing certificate, so no response could ever be trusted",
                path.display()
            ));
        }
        return Ok(IdpTrust {
            entity_id: fields.entity_id,
            certificates: fields.signing_certificates,
            sso_url: None,
            sso_binding: Default::default(),
            slo_url: None,
            slo_binding: Default::default(),
        });
    }
    match (&a.idp_cert, &a.idp_entity_id) {
        (Some(cert), Some(entity)) => {
            let text = std::fs::read_to_string(cert)
                .map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
            Ok(IdpTrust {
                entity_id: entity.clone(),
                certificates: tessera_saml::certs::split(&text),
                sso_url: None,
                sso_binding: Default::default(),
                slo_url: None,
                slo_binding: Default::default(),
            })
        }
        _ => Err(
            "name the IdP: --idp-metadata FILE, or --idp-cert PEM with --idp-entity-id ID".into(),
        ),
    }
}

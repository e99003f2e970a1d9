//! `tessera saml check` against the public SAML vectors: every row through the binary
//! gets the same verdict and reason as the in-process validator (one code path), with
//! the exit codes DESIGN gives (0 accept, 1 reject, 2 configuration error); encrypted
//! rows with the SP key the row names (`--sp-key`).

use std::process::Command;

#[path = "../../crates/tessera-saml/tests/corpus/mod.rs"]
mod corpus;

#[test]
fn saml_check_agrees_with_the_validator_on_every_vector() {
    let dir = corpus::corpus_dir();
    let tmp = tempfile::tempdir().unwrap();
    let rows = corpus::rows(&dir);
    let mut checked = 0;
    let mut legacy_checked = false;
    for (n, row) in rows.iter().enumerate() {
        let (verdict, what) = corpus::run(row);
        // The row's certificates as one PEM file, with the row's IdP entity id.
        let pem: String = corpus::certificates(&row.idp_cert_file)
            .iter()
            .map(|c| {
                let body: String = c
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .collect::<Vec<_>>()
                    .concat();
                format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
            })
            .collect();
        let cert = tmp.path().join(format!("idp-{n}.pem"));
        std::fs::write(&cert, pem).unwrap();
        let (code, v, stdout) = check(row, &cert, &["--allow-sha1", "--allow-rsa-1024"]);
        let ctx = format!("{} ({}): {stdout}", row.file.display(), row.reason);
        if verdict == "accept" {
            assert_eq!(code, 0, "{ctx}");
            assert_eq!(v["verdict"], "accept", "{ctx}");
            assert_eq!(v["name_id"], what.as_str(), "{ctx}");
            assert!(v["attributes"].is_object(), "{ctx}");
        } else if what.starts_with("saml_not_configured: ") {
            // A certificate that could never verify: a configuration error, exit 2.
            assert_eq!(code, 2, "{ctx}");
            assert_eq!(v["verdict"], "error", "{ctx}");
        } else {
            assert_eq!(code, 1, "{ctx}");
            assert_eq!(v["verdict"], "reject", "{ctx}");
            let reason = what.split(':').next().unwrap();
            assert_eq!(v["reason"], reason, "{ctx}");
            assert!(!v["detail"].as_str().unwrap().is_empty(), "{ctx}");
        }
        // A 1024-bit IdP key needs --allow-rsa-1024: without it, a configuration error.
        if row.file.ends_with("gosaml2/oam_response.xml") {
            let (code, v, stdout) = check(row, &cert, &["--allow-sha1"]);
            assert_eq!(
                (code, &v["verdict"]),
                (2, &serde_json::json!("error")),
                "{stdout}"
            );
            assert!(stdout.contains("allow_rsa_1024"), "{stdout}");
            legacy_checked = true;
        }
        checked += 1;
    }
    assert_eq!(checked, 200);
    assert!(legacy_checked, "the 1024-bit row was found");
}

/// Runs `tessera saml check --json` on a row with its context, the certificate file and
/// `flags`: the exit code, the JSON verdict and the raw output.
fn check(
    row: &corpus::Row,
    cert: &std::path::Path,
    flags: &[&str],
) -> (i32, serde_json::Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
    cmd.args(["saml", "check"])
        .arg(&row.file)
        .arg("--idp-cert")
        .arg(cert)
        .args(["--idp-entity-id", &row.idp_entity_id])
        .args(["--sp-entity-id", &row.sp_entity_id])
        .args(["--acs-url", &row.acs_url])
        .args(["--now", &row.now])
        .args(flags)
        .args(["--skew", "60", "--json"]);
    if !row.request_id.is_empty() {
        cmd.args(["--request-id", &row.request_id]);
    }
    // The SP's decryption key, as the row names it: `--sp-key` for encrypted assertions.
    if let Some(key) = corpus::decryption_key_path(row) {
        cmd.arg("--sp-key").arg(key);
    }
    if matches!(
        row.policy.as_str(),
        "require-signed-assertion" | "require-signed-response" | "check-idp-cert-validity"
    ) {
        cmd.args(["--policy", &row.policy]);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {stdout}", row.file.display()));
    (out.status.code().unwrap(), v, stdout)
}

#[test]
fn saml_check_usage_errors_exit_2() {
    let bin = env!("CARGO_BIN_EXE_tessera");
    let tmp = tempfile::tempdir().unwrap();
    let resp = tmp.path().join("r.xml");
    std::fs::write(&resp, "<samlp:Response/>").unwrap();
    let md = tmp.path().join("md.xml");
    std::fs::write(
        &md,
        r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>"#,
    )
    .unwrap();
    let common = |extra: &[&str]| {
        let out = Command::new(bin)
            .args(["saml", "check"])
            .arg(&resp)
            .args([
                "--sp-entity-id",
                "sp",
                "--acs-url",
                "https://sp/acs",
                "--json",
            ])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    // Metadata without a signing certificate could never validate anything.
    let (code, out) = common(&["--idp-metadata", md.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no signing certificate"), "{out}");
    let (code, out) = common(&[
        "--idp-metadata",
        md.to_str().unwrap(),
        "--skip-recipient-check",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not supported"), "{out}");
    let (code, out) = common(&["--idp-metadata", md.to_str().unwrap(), "--now", "yesterday"]);
    assert_eq!(code, 2, "{out}");
}

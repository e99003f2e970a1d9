//! SAML SSO end to end against a real IdP we did not write: the npm `samlify`, started
//! by the test on loopback and signing with its own key (tests/saml-idp/). Tessera
//! imports the IdP's own metadata; the browser's part (follow the redirect, post the
//! form) is played by the test. The IdP signs the assertion, the response, or both.
//!
//! Needs Node.js and `npm install` in tests/saml-idp (`.ci/run` does it). Without them
//! the test says so; TESSERA_REQUIRE_ALL=1 (CI) makes that a failure.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

struct Idp {
    child: Child,
    base: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/saml-idp")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_idp(app: &TestApp, mode: &str) -> Option<Idp> {
    start_idp_for(app, "default", mode).await
}

/// The test IdP for another org's SP (its metadata at `/saml/{org}/metadata`).
async fn start_idp_for(app: &TestApp, org: &str, mode: &str) -> Option<Idp> {
    let dir = idp_dir();
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok || !dir.join("node_modules/samlify").exists() {
        let msg = "the samlify test IdP is not installed: install Node.js and run `npm install` in tests/saml-idp (.ci/run does both)";
        crate::helpers::missing_peer(msg);
        return None;
    }
    let port = free_port();
    let child = Command::new("node")
        .arg(dir.join("idp.js"))
        .arg(port.to_string())
        .arg(app.url(&format!("/saml/{org}/metadata")))
        .arg(mode)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let idp = Idp {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if reqwest::get(format!("{}/metadata", idp.base)).await.is_ok() {
            return Some(idp);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the samlify IdP did not start");
}

/// The body of a GET (metadata documents).
async fn fetch_text(url: impl reqwest::IntoUrl) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

const EMAIL_FORMAT: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";

/// Imports the IdP's own metadata, with attribute and group mapping.
async fn configure(app: &TestApp, idp: &Idp, extra: Value) {
    let metadata = fetch_text(format!("{}/metadata", idp.base)).await;
    let mut body = json!({
        "idp_metadata_xml": metadata,
        "attribute_email": "email",
        "attribute_display_name": "displayName",
        "attribute_groups": "groups",
        "group_roles": {"engineers": ["developer"], "admins": ["org-admin"]},
        "jit_provisioning": true,
        "name_id_format": EMAIL_FORMAT,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (s, b) = app.put("/sso/saml", body).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["idp_entity_id"], format!("{}/metadata", idp.base));
}

/// One SP-initiated login: Tessera's redirect, the IdP's answer, the post to the ACS.
/// Returns the ACS reply and the IdP's answer (to replay it).
async fn login(
    app: &TestApp,
    http: &reqwest::Client,
    return_to: &str,
) -> (reqwest::Response, Value) {
    let r = http
        .get(app.url(&format!("/saml/default/login?return_to={return_to}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{:?}", r.text().await);
    let to_idp = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        to_idp.contains("SAMLRequest=") && to_idp.contains("RelayState="),
        "{to_idp}"
    );
    // Signed over the query (HTTP-Redirect binding): the IdP verifies it against the
    // certificate in Tessera's metadata, and refuses the request if one byte changes.
    assert!(
        to_idp.contains("&SigAlg=http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256")
            && to_idp.contains("&Signature="),
        "{to_idp}"
    );
    let tampered = to_idp.replacen("RelayState=", "RelayState=x", 1);
    let refused = http.get(&tampered).send().await.unwrap();
    assert_eq!(
        refused.status(),
        500,
        "a tampered AuthnRequest was accepted"
    );
    let at_idp = http.get(&to_idp).send().await.unwrap();
    assert_eq!(
        at_idp.status(),
        200,
        "the IdP refused Tessera's AuthnRequest"
    );
    assert_eq!(at_idp.headers()["x-name-id-format"], EMAIL_FORMAT);
    let answer: Value = at_idp.json().await.unwrap();
    assert_eq!(answer["acs"], app.url("/saml/default/acs"));
    let acs = post_acs(app, http, &answer).await;
    (acs, answer)
}

async fn post_acs(app: &TestApp, http: &reqwest::Client, answer: &Value) -> reqwest::Response {
    let mut form = vec![(
        "SAMLResponse",
        answer["SAMLResponse"].as_str().unwrap().to_string(),
    )];
    if let Some(r) = answer["RelayState"].as_str() {
        form.push(("RelayState", r.to_string()));
    }
    http.post(app.url("/saml/default/acs"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// An IdP-initiated response from the test IdP.
async fn unsolicited_response(http: &reqwest::Client, idp: &Idp) -> Value {
    http.get(format!("{}/unsolicited", idp.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn session_cookie(r: &reqwest::Response) -> String {
    let c = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(c.contains("HttpOnly"), "{c}");
    assert!(c.contains("SameSite=Lax"), "{c}");
    assert!(
        !c.contains("Secure"),
        "plain http on loopback: no Secure flag: {c}"
    );
    c.split(';').next().unwrap().to_string()
}

async fn refused_with(r: reqwest::Response, reason: &str) -> String {
    let status = r.status();
    let page = r.text().await.unwrap();
    assert!(status.is_client_error(), "{status}: {page}");
    assert!(page.contains(&format!("<code>{reason}</code>")), "{page}");
    page
}

#[tokio::test]
async fn sp_initiated_login_through_samlify_in_each_signing_mode() {
    for mode in ["assertion", "response", "both"] {
        let app = spawn_app().await;
        let Some(idp) = start_idp(&app, mode).await else {
            return;
        };
        configure(&app, &idp, json!({})).await;
        if mode == "both" {
            // Someone already holds the username the IdP's email would give: the new
            // user gets another one, never this account.
            let (status, _) = app
                .post(
                    "/users",
                    json!({"type": "human", "username": "alice@example.com"}),
                )
                .await;
            assert_eq!(status, 201);
        }
        let http = no_redirects();
        let (r, answer) = login(&app, &http, "/app/home").await;
        assert_eq!(r.status(), 303, "{mode}: {:?}", r.text().await);
        assert_eq!(r.headers()["location"], "/app/home");
        let cookie = session_cookie(&r);

        // The session: the user was provisioned just in time, roles from groups.
        let me: Value = http
            .get(app.url("/session"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["email"], "alice@example.com", "{mode}: {me}");
        assert_eq!(me["method"], "saml");
        assert_eq!(me["roles"], json!(["developer", "org-admin"]), "{me}");

        // The login is audited with its trace.
        let (_, events) = app.get("/audit/events?kind=login").await;
        let e = &events["events"][0];
        assert_eq!(e["outcome"], "granted", "{events}");
        let (_, full) = app
            .get(&format!(
                "/audit/events/{}",
                e["request_id"].as_str().unwrap()
            ))
            .await;
        let checks: Vec<&str> = full["trace"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["check"].as_str().unwrap())
            .collect();
        assert_eq!(
            checks,
            [
                "saml_relay_state",
                "saml_response",
                "saml_replay",
                "saml_user"
            ],
            "{full}"
        );
        assert!(
            !full
                .to_string()
                .contains(answer["SAMLResponse"].as_str().unwrap()),
            "the assertion itself is never in the audit trail"
        );

        // The same response again: its RelayState was used once already.
        let again = post_acs(&app, &http, &answer).await;
        refused_with(again, "saml_relay_state_invalid").await;

        // A second login finds the same (now linked) user; a new session id.
        let (r2, _) = login(&app, &http, "/").await;
        assert_eq!(r2.status(), 303);
        assert_ne!(
            session_cookie(&r2),
            cookie,
            "a new session id at each login"
        );
        let (_, users) = app.get("/users").await;
        let alices: Vec<&Value> = users["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["email"] == "alice@example.com")
            .collect();
        assert_eq!(alices.len(), 1, "{users}");
        let alice = alices[0];
        assert_eq!(alice["display_name"], "Alice Example", "{alice}");
        assert_eq!(alice["saml_name_id"], "alice@example.com", "{alice}");
        let username = if mode == "both" {
            "alice@example.com-2"
        } else {
            "alice@example.com"
        };
        assert_eq!(alice["username"], username, "{mode}: {users}");

        // Logout ends the session.
        let out = http
            .post(app.url("/logout"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), 200);
        let me = http
            .get(app.url("/session"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 401);
        drop(idp);
        app.stop().await;
    }
}

/// The hidden fields of Tessera's HTTP-POST page, unescaped.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let unescape = |s: &str| {
        s.replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    html.split("<input type=\"hidden\" name=\"")
        .skip(1)
        .map(|rest| {
            let (name, rest) = rest.split_once("\" value=\"").unwrap();
            let (value, _) = rest.split_once('"').unwrap();
            (unescape(name), unescape(value))
        })
        .collect()
}

#[tokio::test]
async fn an_idp_offering_only_http_post_gets_an_auto_submitted_signed_form() {
    let app = spawn_app().await;
    let Some(idp) = start_idp(&app, "assertion,post").await else {
        return;
    };
    configure(&app, &idp, json!({})).await;
    let (_, view) = app.get("/sso/saml").await;
    assert_eq!(view["idp_sso_binding"], "post", "{view}");
    assert_eq!(view["idp_sso_url"], format!("{}/sso", idp.base));

    let http = no_redirects();
    let r = http
        .get(app.url("/saml/default/login?return_to=/app/home"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains(&format!("form-action {}", idp.base))
            && csp.contains("script-src 'self'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    assert!(
        html.contains(&format!("action=\"{}/sso\"", idp.base)),
        "{html}"
    );
    // No inline script: the only script is the file the CSP allows, and the button works
    // without it.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(
        html.contains("<script src=\"/assets/saml-post.js\""),
        "{html}"
    );
    assert!(html.contains("<button type=\"submit\""), "{html}");
    let script = http
        .get(app.url("/assets/saml-post.js"))
        .send()
        .await
        .unwrap();
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(script.text().await.unwrap().contains("saml-post"));

    let fields = hidden_fields(&html);
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["SAMLRequest", "RelayState"], "{html}");
    // The request carries an enveloped signature the IdP checks against Tessera's
    // metadata: one changed byte inside it and the IdP refuses it.
    let mut tampered = fields.clone();
    let xml = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &fields[0].1).unwrap(),
    )
    .unwrap();
    assert!(xml.contains("SignatureValue"), "{xml}");
    // A valid but different IssueInstant: a year earlier.
    let at = xml.find("IssueInstant=\"").unwrap() + "IssueInstant=\"".len();
    let year: u32 = xml[at..at + 4].parse().unwrap();
    let changed = format!("{}{}{}", &xml[..at], year - 1, &xml[at + 4..]);
    tampered[0].1 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, changed);
    let refused = http
        .post(format!("{}/sso", idp.base))
        .form(&tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        500,
        "a tampered AuthnRequest was accepted"
    );

    let at_idp = http
        .post(format!("{}/sso", idp.base))
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(
        at_idp.status(),
        200,
        "the IdP refused Tessera's AuthnRequest"
    );
    assert_eq!(at_idp.headers()["x-name-id-format"], EMAIL_FORMAT);
    let answer: Value = at_idp.json().await.unwrap();
    let r = post_acs(&app, &http, &answer).await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(r.headers()["location"], "/app/home");
    drop(idp);
    app.stop().await;
}

/// The SAMLResponse of an IdP answer, decoded.
fn response_xml(answer: &Value) -> String {
    let b64 = answer["SAMLResponse"].as_str().unwrap();
    String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap(),
    )
    .unwrap()
}

/// The `saml_response` step of the latest login's trace.
async fn response_step(app: &TestApp) -> Value {
    let (_, events) = app.get("/audit/events?kind=login").await;
    let id = events["events"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, full) = app.get(&format!("/audit/events/{id}")).await;
    full["trace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["check"] == "saml_response")
        .cloned()
        .unwrap_or_else(|| panic!("{full}"))
}

#[tokio::test]
async fn encrypted_assertions_in_each_algorithm_pair_and_cbc_only_under_a_signed_response() {
    // (IdP mode, the content algorithm the trace names, or the refusal)
    let cases = [
        // CBC under a Response signed after encryption (`etsign`): the signature
        // authenticates the ciphertext before any key is used.
        ("both,enc=aes128-cbc,etsign", Ok("aes128-cbc")),
        ("response,enc=aes256-cbc,etsign", Ok("aes256-cbc")),
        ("assertion,enc=aes128-gcm", Ok("aes128-gcm")),
        ("assertion,enc=aes256-gcm", Ok("aes256-gcm")),
        // Signed before encryption (samlify's default): verified after decryption.
        ("both,enc=aes256-gcm", Ok("aes256-gcm")),
        ("response,enc=aes128-gcm,etsign", Ok("aes128-gcm")),
        // xmlenc11 RSA-OAEP with SHA-256 and MGF1-SHA256 (encrypted by the test IdP).
        ("assertion,oaep256", Ok("aes256-gcm")),
        // CBC with nothing authenticating the ciphertext (only the assertion signed,
        // inside it; or the Response signed before encryption): the padding-oracle rule
        // refuses it before any key is used.
        (
            "assertion,enc=aes256-cbc",
            Err("saml_encrypted_cbc_unsigned"),
        ),
        ("both,enc=aes128-cbc", Err("saml_encrypted_cbc_unsigned")),
    ];
    for (mode, expected) in cases {
        let app = spawn_app().await;
        let metadata = fetch_text(app.url("/saml/default/metadata")).await;
        assert!(metadata.contains("use=\"encryption\""), "{metadata}");
        let Some(idp) = start_idp(&app, mode).await else {
            return;
        };
        configure(&app, &idp, json!({})).await;
        let http = no_redirects();
        let (r, answer) = login(&app, &http, "/app/home").await;
        let xml = response_xml(&answer);
        assert!(xml.contains("EncryptedAssertion"), "{mode}: not encrypted");
        assert!(
            !xml.contains("alice@example.com"),
            "{mode}: the NameID shows"
        );
        match expected {
            Ok(alg) => {
                assert_eq!(r.status(), 303, "{mode}: {:?}", r.text().await);
                let me: Value = http
                    .get(app.url("/session"))
                    .header("cookie", session_cookie(&r))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(me["email"], "alice@example.com", "{mode}: {me}");
                let step = response_step(&app).await;
                let detail = step["detail"].as_str().unwrap();
                assert!(
                    detail.contains(&format!("assertion encrypted ({alg})")),
                    "{mode}: {step}"
                );
            }
            Err(reason) => {
                refused_with(r, reason).await;
            }
        }
        drop(idp);
        app.stop().await;
    }
}

/// A login whose response the test changes before it reaches the ACS.
async fn login_with_altered_response(
    app: &TestApp,
    http: &reqwest::Client,
    alter: impl Fn(&str) -> String,
) -> reqwest::Response {
    let r = http
        .get(app.url("/saml/default/login?return_to=/"))
        .send()
        .await
        .unwrap();
    let to_idp = r.headers()["location"].to_str().unwrap().to_string();
    let mut answer: Value = http
        .get(&to_idp)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let engine = &base64::engine::general_purpose::STANDARD;
    let xml = String::from_utf8(
        base64::Engine::decode(engine, answer["SAMLResponse"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    answer["SAMLResponse"] = json!(base64::Engine::encode(engine, alter(&xml)));
    post_acs(app, http, &answer).await
}

#[tokio::test]
async fn attacks_on_encrypted_assertions_are_refused() {
    // Anyone can encrypt to the SP's public certificate: an assertion without the IdP's
    // signature, for another person, encrypted with AES-GCM under an unsigned Response.
    let app = spawn_app().await;
    let Some(idp) = start_idp(&app, "assertion,forge,oaep256").await else {
        return;
    };
    configure(&app, &idp, json!({})).await;
    let http = no_redirects();
    let (r, answer) = login(&app, &http, "/").await;
    refused_with(r, "saml_unsigned").await;
    let xml = response_xml(&answer);
    assert!(!xml.contains("Signature") && xml.contains("EncryptedAssertion"));
    drop(idp);
    app.stop().await;

    // A Response signed over its EncryptedAssertion (CBC), altered around it.
    let app = spawn_app().await;
    let idp = start_idp(&app, "both,enc=aes128-cbc,etsign").await.unwrap();
    configure(&app, &idp, json!({})).await;
    const EVIL: &str = "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"_evil\" Version=\"2.0\" IssueInstant=\"2026-01-01T00:00:00Z\"><saml:Subject><saml:NameID>mallory@example.com</saml:NameID></saml:Subject></saml:Assertion>";
    type Alteration = Box<dyn Fn(&str) -> String>;
    let attacks: [(&str, Alteration); 4] = [
        // XSW: a plain assertion beside the encrypted one.
        (
            "a plain assertion beside",
            Box::new(|x: &str| {
                x.replacen(
                    "</saml:EncryptedAssertion>",
                    &format!("</saml:EncryptedAssertion>{EVIL}"),
                    1,
                )
            }),
        ),
        // XSW: the signed Response wrapped inside a new one that carries the attacker's
        // EncryptedAssertion (here: a copy), with the original's ID.
        (
            "the signed Response wrapped",
            Box::new(|x: &str| {
                let start = x.find("<saml:EncryptedAssertion").unwrap();
                let end = x.find("</saml:EncryptedAssertion>").unwrap()
                    + "</saml:EncryptedAssertion>".len();
                let head_end = x.find('>').unwrap() + 1;
                format!(
                    "{}<samlp:Extensions>{}</samlp:Extensions>{}</samlp:Response>",
                    &x[..head_end],
                    x,
                    &x[start..end]
                )
            }),
        ),
        // One flipped byte in the ciphertext: the signature no longer covers it, so the
        // CBC ciphertext is never decrypted (no padding oracle).
        (
            "a flipped ciphertext byte",
            Box::new(|x: &str| {
                let data = x.rfind("<xenc:CipherValue>").unwrap() + "<xenc:CipherValue>".len() + 30;
                let c = if &x[data..data + 1] == "A" { "B" } else { "A" };
                format!("{}{}{}", &x[..data], c, &x[data + 1..])
            }),
        ),
        // The Response signature removed: CBC under an unsigned Response.
        (
            "the Response signature removed",
            Box::new(|x: &str| {
                let start = x.find("<ds:Signature").unwrap();
                let end = x.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
                format!("{}{}", &x[..start], &x[end..])
            }),
        ),
    ];
    for (what, alter) in attacks {
        let r = login_with_altered_response(&app, &http, alter).await;
        let status = r.status();
        let page = r.text().await.unwrap();
        assert_eq!(status, 400, "{what}: {page}");
        assert!(
            [
                "saml_malformed",
                "saml_wrapping_detected",
                "saml_encrypted_cbc_unsigned",
            ]
            .iter()
            .any(|reason| page.contains(&format!("<code>{reason}</code>"))),
            "{what}: {page}"
        );
    }
    let (_, users) = app.get("/users").await;
    assert!(!users.to_string().contains("mallory"), "{users}");
    drop(idp);
    app.stop().await;
}

#[tokio::test]
async fn the_sp_encryption_key_rotates_with_an_overlap() {
    let app = spawn_app().await;
    let (s, keys) = app.get("/saml/encryption-keys").await;
    assert_eq!(s, 200, "{keys}");
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1, "{keys}");
    let old_cert = keys["keys"][0]["certificate"].as_str().unwrap().to_string();
    let body = |pem: &str| -> String {
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat()
    };
    let Some(idp) = start_idp(&app, "both,enc=aes256-gcm").await else {
        return;
    };
    // The IdP read the SP metadata (and the current encryption certificate) at start.
    configure(&app, &idp, json!({})).await;
    let http = no_redirects();
    let (r, _) = login(&app, &http, "/").await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);

    let (s, rotated) = app
        .post("/saml/encryption-keys/rotate", json!({"overlap_days": 7}))
        .await;
    assert_eq!(s, 200, "{rotated}");
    let listed = rotated["keys"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{rotated}");
    assert_eq!(listed[0]["current"], true);
    assert_eq!(listed[1]["current"], false);
    assert!(listed[1]["decrypts_until"].is_string(), "{rotated}");
    let new_cert = listed[0]["certificate"].as_str().unwrap();
    assert_ne!(new_cert, old_cert);
    let metadata = fetch_text(app.url("/saml/default/metadata")).await;
    assert!(
        metadata.contains(&body(new_cert)),
        "the new certificate is published"
    );
    assert!(!metadata.contains(&body(&old_cert)), "the old one is not");

    // The IdP still encrypts to the old certificate: the overlap lets it in.
    let (r, _) = login(&app, &http, "/").await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    // Restarted, it reads the new certificate from the metadata.
    drop(idp);
    let idp = start_idp(&app, "both,enc=aes256-gcm").await.unwrap();
    configure(&app, &idp, json!({})).await;
    let (r, _) = login(&app, &http, "/").await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);

    let (s, bad) = app
        .post("/saml/encryption-keys/rotate", json!({"overlap_days": 0}))
        .await;
    assert_eq!(s, 422, "{bad}");
    assert_eq!(bad["field"], "overlap_days", "{bad}");
    let (_, events) = app.get("/audit/events?kind=admin").await;
    assert!(
        events.to_string().contains("rotate_saml_encryption_key"),
        "{events}"
    );
    drop(idp);
    app.stop().await;
}

#[tokio::test]
async fn idp_initiated_login_is_off_by_default_and_replays_are_refused() {
    let app = spawn_app().await;
    let Some(idp) = start_idp(&app, "both").await else {
        return;
    };
    configure(&app, &idp, json!({})).await;
    let http = no_redirects();
    let unsolicited = unsolicited_response(&http, &idp).await;
    refused_with(
        post_acs(&app, &http, &unsolicited).await,
        "saml_unsolicited",
    )
    .await;

    configure(&app, &idp, json!({"allow_idp_initiated": true})).await;
    let fresh = unsolicited_response(&http, &idp).await;
    let r = post_acs(&app, &http, &fresh).await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    // The very same response a second time: the replay cache refuses it.
    refused_with(post_acs(&app, &http, &fresh).await, "saml_replay").await;

    // Without JIT provisioning an unknown person is refused, politely.
    configure(
        &app,
        &idp,
        json!({"allow_idp_initiated": true, "jit_provisioning": false}),
    )
    .await;
    let (_, users) = app.get("/users").await;
    let alice = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "alice@example.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = app
        .patch(&format!("/users/{alice}"), json!({"enabled": false}))
        .await;
    assert_eq!(s, 200);
    let next = unsolicited_response(&http, &idp).await;
    refused_with(post_acs(&app, &http, &next).await, "user_disabled").await;
    app.stop().await;
}

#[tokio::test]
async fn open_redirects_and_unconfigured_orgs_are_refused() {
    let app = spawn_app().await;
    let http = no_redirects();
    let r = http
        .get(app.url("/saml/default/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("saml_not_configured"));
    // A response posted to an org without an IdP is refused and audited, source included.
    let r = http
        .post(app.url("/saml/default/acs"))
        .form(&[("SAMLResponse", "PHNhbWxwOlJlc3BvbnNlLz4=")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("saml_not_configured"));
    let (_, events) = app.get("/audit/events?kind=login").await;
    let e = &events["events"][0];
    assert_eq!(e["outcome"], "denied", "{events}");
    assert_eq!(e["reason"], "saml_not_configured", "{events}");
    assert_eq!(e["source_ip"], "127.0.0.1", "{events}");
    app.configure_idp(&[]).await;
    for bad in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let r = http
            .get(app.url("/saml/default/login"))
            .query(&[("return_to", bad)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = http
        .get(app.url("/saml/default/login"))
        .query(&[("return_to", "/ok")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://idp.example/sso?SAMLRequest=")
    );
    // The SP metadata names the ACS and entity id the IdP must use.
    let md = http
        .get(app.url("/saml/default/metadata"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(md.contains(&app.url("/saml/default/acs")), "{md}");
    assert!(md.contains(&app.url("/saml/default/metadata")), "{md}");
    // A bare POST to the ACS, an oversized one, and a garbage one.
    let r = http
        .post(app.url("/saml/default/acs"))
        .form(&[("SAMLResponse", "not base64 !!"), ("RelayState", "x")])
        .send()
        .await
        .unwrap();
    refused_with(r, "saml_relay_state_invalid").await;
    let big = "A".repeat(400 * 1024);
    let r = http
        .post(app.url("/saml/default/acs"))
        .form(&[("SAMLResponse", big.as_str())])
        .send()
        .await
        .unwrap();
    refused_with(r, "saml_body_too_large").await;
    app.stop().await;
}

/// Signature-wrapping variants built from a response the real IdP signed (2048-bit RSA):
/// an evil assertion before, after or inside the signed one, a duplicate ID, a comment
/// in the NameID. Each is refused for a signature reason and never yields the evil name.
#[tokio::test]
async fn wrapping_variants_of_a_real_signed_response_are_refused() {
    let app = spawn_app().await;
    let Some(idp) = start_idp(&app, "assertion").await else {
        return;
    };
    configure(&app, &idp, json!({})).await;
    let http = no_redirects();
    let answer = unsolicited_response(&http, &idp).await;
    let b64 = answer["SAMLResponse"].as_str().unwrap();
    let xml = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap(),
    )
    .unwrap();
    let trust = tessera_saml::IdpTrust {
        entity_id: format!("{}/metadata", idp.base),
        certificates: vec![include_str!("../fixtures/samlify-idp.crt").to_string()],
        sso_url: None,
        sso_binding: Default::default(),
        slo_url: None,
        slo_binding: Default::default(),
    };
    let expect = tessera_saml::Expectation {
        sp_entity_id: app.url("/saml/default/metadata"),
        acs_url: app.url("/saml/default/acs"),
        in_response_to: tessera_saml::RequestCheck::Unsolicited,
        decryption_keys: Vec::new(),
        now: std::time::SystemTime::now(),
        policy: tessera_saml::Policy::default(),
    };
    let ok = tessera_saml::validate(xml.as_bytes(), &trust, &expect).expect("the original passes");
    assert_eq!(ok.name_id, "alice@example.com");

    let start = xml.find("<saml:Assertion").unwrap();
    let end = xml.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    let signed = &xml[start..end];
    let sig_start = signed.find("<ds:Signature").unwrap();
    let sig_end = signed.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
    let unsigned_copy = format!("{}{}", &signed[..sig_start], &signed[sig_end..]);
    let evil = unsigned_copy.replace("alice@example.com", "admin@evil.example");
    let evil_new_id = {
        let id_start = evil.find(" ID=\"").unwrap() + 5;
        let id_end = id_start + evil[id_start..].find('"').unwrap();
        format!("{}_evil{}", &evil[..id_start], &evil[id_end..])
    };
    let variants = [
        (
            "evil assertion before the signed one",
            format!("{}{}{}", &xml[..start], evil_new_id, &xml[start..]),
        ),
        (
            "evil assertion after the signed one",
            format!("{}{}{}", &xml[..end], evil_new_id, &xml[end..]),
        ),
        (
            "evil copy with the same ID first",
            format!("{}{}{}", &xml[..start], evil, &xml[start..]),
        ),
        (
            "evil assertion inside SubjectConfirmationData",
            xml.replacen(
                "</saml:SubjectConfirmationData>",
                &format!("{evil_new_id}</saml:SubjectConfirmationData>"),
                1,
            )
            .replacen(
                "/></saml:SubjectConfirmation>",
                &format!(
                    ">{evil_new_id}</saml:SubjectConfirmationData></saml:SubjectConfirmation>"
                ),
                1,
            ),
        ),
        (
            "signed assertion moved into Extensions, evil one in its place",
            format!(
                "{}<samlp:Extensions>{}</samlp:Extensions>{}{}",
                &xml[..start],
                signed,
                evil_new_id,
                &xml[end..]
            ),
        ),
        (
            "comment in the NameID",
            xml.replacen(
                "alice@example.com<",
                "alice@example.com<!-- -->.evil.example<",
                1,
            ),
        ),
        (
            "NameID changed after signing",
            xml.replacen(">alice@example.com<", ">admin@evil.example<", 1),
        ),
    ];
    for (what, variant) in &variants {
        assert_ne!(variant, &xml, "{what}: the variant changed something");
        let r = match tessera_saml::validate(variant.as_bytes(), &trust, &expect) {
            Ok(a) => panic!("{what}: accepted as '{}'", a.name_id),
            Err(r) => r,
        };
        eprintln!("{what}: {}", r.reason);
        assert!(
            matches!(
                r.reason,
                tessera_core::Reason::SamlWrappingDetected
                    | tessera_core::Reason::SamlSignatureInvalid
                    | tessera_core::Reason::SamlSignedContentMismatch
                    | tessera_core::Reason::SamlUnsigned
            ),
            "{what}: {r}"
        );
    }
    app.stop().await;
}

/// With SSO enforced, an application's login goes through the IdP and ends with a code:
/// the authorization endpoint sends the browser to the IdP (no password form), the ACS
/// comes back to the authorization request, and the code's exchange gives an ID token
/// for the person the IdP asserted.
#[tokio::test]
async fn an_enforced_orgs_code_flow_goes_through_the_idp_and_ends_with_a_code() {
    use crate::code_flow::{REDIRECT, VERIFIER, exchange, query_of, request};
    let app = spawn_app().await;
    let Some(idp) = start_idp(&app, "both").await else {
        return;
    };
    configure(&app, &idp, json!({})).await;
    let (s, b) = app
        .patch("/sso/saml", json!({"enforced": true, "force": true}))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app
        .post(
            "/oauth/clients",
            json!({
                "client_id": "spa",
                "name": "Agent desktop",
                "grant_types": ["authorization_code", "refresh_token"],
                "redirect_uris": [REDIRECT],
                "token_endpoint_auth_methods": ["none"],
            }),
        )
        .await;
    assert_eq!(s, 201, "{b}");

    let http = no_redirects();
    let authorize = app.url(&format!("/oauth/authorize?{}", request("spa", "")));
    let r = http.get(&authorize).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let to_sso = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        to_sso.starts_with("/saml/default/login?return_to="),
        "{to_sso}"
    );
    let return_to = query_of(&to_sso)["return_to"].clone();
    assert!(return_to.starts_with("/oauth/authorize?"), "{return_to}");

    // The SP-initiated login at the real IdP, then the ACS.
    let (acs, _) = login(&app, &http, &crate::helpers::enc(&return_to)).await;
    assert_eq!(acs.status(), 200, "the ACS lands on a page that moves on");
    let cookie = session_cookie(&acs);
    let page = acs.text().await.unwrap();
    let next = page
        .split("http-equiv=\"refresh\" content=\"0;url=")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    assert_eq!(next, return_to);

    // Back at the authorization endpoint with the session: the code.
    let r = http
        .get(app.url(&next))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let to_client = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to_client.starts_with(REDIRECT), "{to_client}");
    let q = query_of(&to_client);
    assert_eq!(q["state"], "st-123");
    let (s, t) = exchange(&app, &q["code"], VERIFIER, REDIRECT).await;
    assert_eq!(s, 200, "{t}");
    let payload = t["id_token"].as_str().unwrap().split('.').nth(1).unwrap();
    use base64::Engine;
    let id: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(id["email"], "alice@example.com", "{id}");
    assert_eq!(id["email_verified"], true, "asserted by the org's IdP");
    assert_eq!(id["nonce"], "n-456");
    // The session is a SAML one: enforcement lets it through without another login.
    let (_, events) = app
        .get("/audit/events?kind=authorize&outcome=granted")
        .await;
    let e = &events["events"][0];
    let full = app.audit(e["request_id"].as_str().unwrap()).await;
    let session = full["trace"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["check"] == "session")
        .unwrap()
        .clone();
    assert!(
        session["detail"].as_str().unwrap().contains("by saml"),
        "{session}"
    );

    // prompt=login: a fresh login, and the IdP is asked to authenticate afresh too
    // (ForceAuthn), not to answer from its own session.
    let fresh = app.url(&format!(
        "/oauth/authorize?{}",
        request("spa", "&prompt=login")
    ));
    let r = http
        .get(&fresh)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let to_sso = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(query_of(&to_sso)["force_authn"], "1", "{to_sso}");
    let r = http.get(app.url(&to_sso)).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let to_idp = r.headers()["location"].to_str().unwrap().to_string();
    let saml_request = query_of(&to_idp)["SAMLRequest"].clone();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(saml_request)
        .unwrap();
    let mut xml = String::new();
    std::io::Read::read_to_string(&mut flate2::read::DeflateDecoder::new(&raw[..]), &mut xml)
        .unwrap();
    assert!(xml.contains("ForceAuthn=\"true\""), "{xml}");
    let at_idp = http.get(&to_idp).send().await.unwrap();
    assert_eq!(at_idp.status(), 200, "the IdP takes the forced request");

    // The IdP logs Alice out: her session here ends, and the refresh token her
    // session's login gave the app stops working.
    let refresh_token = t["refresh_token"].as_str().unwrap().to_string();
    let ask: Value = http
        .get(format!(
            "{}/logout-request?nameid=alice@example.com",
            idp.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = deliver(&http, ask).await;
    assert_eq!(r.status(), 302, "answered with a LogoutResponse");
    assert_eq!(session_status(&app, &http, &cookie).await, 401);
    let (s, refused) = crate::code_flow::refresh(&app, &refresh_token).await;
    assert_eq!(s, 400, "{refused}");
    assert_eq!(refused["error"], "invalid_grant", "{refused}");
    drop(idp);
    app.stop().await;
}

const SAML_BEARER: &str = "urn:ietf:params:oauth:grant-type:saml2-bearer";

/// A signed assertion from the test IdP for the bearer grant, base64url.
async fn bearer_assertion(idp: &Idp, audience: &str, recipient: &str) -> String {
    let v: Value = reqwest::Client::new()
        .get(format!("{}/bearer", idp.base))
        .query(&[("audience", audience), ("recipient", recipient)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["assertion"].as_str().unwrap().to_string()
}

/// The bearer grant's token request, with client_secret_basic.
async fn bearer_token(
    app: &TestApp,
    id: &str,
    secret: &str,
    assertion: &str,
) -> crate::helpers::Reply {
    app.token_raw(
        Some("application/x-www-form-urlencoded"),
        &bearer_form(assertion),
        Some(&crate::helpers::basic(id, secret)),
        None,
    )
    .await
}

fn bearer_form(assertion: &str) -> String {
    format!(
        "grant_type={}&assertion={}",
        crate::helpers::enc(SAML_BEARER),
        crate::helpers::enc(assertion)
    )
}

#[tokio::test]
async fn the_saml_bearer_grant_gives_a_backend_a_token_for_the_person_the_idp_names() {
    let app = spawn_app().await;
    let Some(idp) = start_idp(&app, "assertion").await else {
        return;
    };
    configure(&app, &idp, json!({})).await;
    let (id, secret) = app
        .client(json!({"name": "reporting backend", "grant_types": [SAML_BEARER]}))
        .await;
    let token_url = app.url("/oauth/token");
    // The audience names this org's SP: an assertion for one org is good in no other.
    let audience = app.url("/saml/default/metadata");
    let form = |a: &str| bearer_form(a);

    // Success: the person is provisioned just in time, as at a browser login, and the
    // token is theirs.
    let assertion = bearer_assertion(&idp, &audience, &token_url).await;
    let (s, body) = app.token_basic(&id, &secret, &form(&assertion)).await;
    assert_eq!(s, 200, "{body}");
    assert!(body["refresh_token"].is_null(), "{body}");
    let (_, users) = app.get("/users").await;
    let alice = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "alice@example.com")
        .cloned()
        .unwrap_or_else(|| panic!("{users}"));
    assert_eq!(alice["saml_name_id"], "alice@example.com");
    let claims = crate::helpers::jwt_claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], alice["id"], "{claims}");
    let (_, events) = app.get("/audit/events?kind=token").await;
    let rid = events["events"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let e = app.audit(&rid).await;
    let checks: Vec<&str> = e["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["check"].as_str().unwrap())
        .collect();
    for c in ["saml_response", "saml_replay", "saml_user"] {
        assert!(checks.contains(&c), "{e}");
    }
    assert!(
        !e.to_string().contains(&assertion),
        "the assertion is never audited"
    );

    // The same assertion again: a replay.
    let r = bearer_token(&app, &id, &secret, &assertion).await;
    app.assert_refused(&r, 400, "invalid_grant", "saml_replay", "saml_replay")
        .await;

    // A second assertion: the same person.
    let second = bearer_assertion(&idp, &audience, &token_url).await;
    let (s, body) = app.token_basic(&id, &secret, &form(&second)).await;
    assert_eq!(s, 200, "{body}");
    let claims = crate::helpers::jwt_claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], alice["id"], "the same person: {claims}");

    // Refusals, each with its saml_* reason at the assertion's step.
    let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let unsigned = {
        let a = bearer_assertion(&idp, &audience, &token_url).await;
        let xml = String::from_utf8(base64::Engine::decode(engine, a).unwrap()).unwrap();
        let start = xml.find("<ds:Signature").unwrap();
        let end = xml.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        base64::Engine::encode(engine, format!("{}{}", &xml[..start], &xml[end..]))
    };
    let another_sp = bearer_assertion(&idp, "https://other-sp.example/metadata", &token_url).await;
    // The token endpoint is every org's: not an audience of this org alone.
    let shared = bearer_assertion(&idp, &token_url, &token_url).await;
    let wrong_recipient = bearer_assertion(&idp, &audience, "https://other-sp.example/acs").await;
    for (what, a, reason) in [
        ("unsigned", unsigned, "saml_unsigned"),
        (
            "the token endpoint as audience",
            shared,
            "saml_audience_mismatch",
        ),
        (
            "another SP's audience",
            another_sp,
            "saml_audience_mismatch",
        ),
        (
            "another recipient",
            wrong_recipient,
            "saml_recipient_mismatch",
        ),
        ("not base64", "%%%".to_string(), "saml_malformed"),
    ] {
        let r = bearer_token(&app, &id, &secret, &a).await;
        assert_eq!(r.body["reason"], reason, "{what}: {}", r.body);
        app.assert_refused(&r, 400, "invalid_grant", reason, "saml_response")
            .await;
    }

    // A client of another org, whose IdP is another one: this IdP's assertion is not
    // trusted there.
    let other_admin = app.other_org_admin("beta").await;
    let http = reqwest::Client::new();
    let put = http
        .put(app.url("/api/v2/sso/saml"))
        .bearer_auth(&other_admin)
        .json(&json!({
            "idp_entity_id": "https://idp-beta.example/metadata",
            "idp_sso_url": "https://idp-beta.example/sso",
            "idp_certificates": [crate::helpers::IDP_CERT],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let made: Value = http
        .post(app.url("/api/v2/oauth/clients"))
        .bearer_auth(&other_admin)
        .json(&json!({"name": "beta backend", "grant_types": [SAML_BEARER]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a = bearer_assertion(&idp, &audience, &token_url).await;
    let r = bearer_token(
        &app,
        made["client_id"].as_str().unwrap(),
        made["client_secret"].as_str().unwrap(),
        &a,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let reason = r.body["reason"].as_str().unwrap();
    assert!(
        [
            "saml_issuer_mismatch",
            "saml_cert_untrusted",
            "saml_signature_invalid"
        ]
        .contains(&reason),
        "{}",
        r.body
    );

    // A client without the grant may not use it.
    let (plain, plain_secret) = app
        .client(json!({"name": "other backend", "grant_types": ["password"]}))
        .await;
    let a = bearer_assertion(&idp, &audience, &token_url).await;
    let (s, body) = app.token_basic(&plain, &plain_secret, &form(&a)).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"], "unauthorized_client", "{body}");

    // A client that may refresh gets a refresh token, which works.
    let (rid, rsecret) = app
        .client(json!({"name": "sync backend", "grant_types": [SAML_BEARER, "refresh_token"]}))
        .await;
    let a = bearer_assertion(&idp, &audience, &token_url).await;
    let (s, body) = app.token_basic(&rid, &rsecret, &form(&a)).await;
    assert_eq!(s, 200, "{body}");
    let refresh_token = body["refresh_token"].as_str().unwrap().to_string();

    // SSO enforcement allows the grant, and its refreshes: the IdP authenticated the
    // person.
    let (s, b) = app
        .patch("/sso/saml", json!({"enforced": true, "force": true}))
        .await;
    assert_eq!(s, 200, "{b}");
    let a = bearer_assertion(&idp, &audience, &token_url).await;
    let (s, body) = app.token_basic(&id, &secret, &form(&a)).await;
    assert_eq!(s, 200, "{body}");
    let (s, refreshed) = app
        .token_basic(
            &rid,
            &rsecret,
            &format!(
                "grant_type=refresh_token&refresh_token={}",
                crate::helpers::enc(&refresh_token)
            ),
        )
        .await;
    assert_eq!(s, 200, "{refreshed}");
    let claims = crate::helpers::jwt_claims(refreshed["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], alice["id"], "{claims}");
    drop(idp);
    app.stop().await;
}

/// Delivers what Tessera or the IdP answered with (a redirect, an HTTP-POST page, or the
/// test IdP's JSON) to its next stop; returns the reply there.
async fn deliver(http: &reqwest::Client, answer: Value) -> reqwest::Response {
    if let Some(url) = answer["url"].as_str() {
        return http.get(url).send().await.unwrap();
    }
    let action = answer["action"].as_str().unwrap();
    let mut form = vec![];
    for k in ["SAMLRequest", "SAMLResponse", "RelayState"] {
        if let Some(v) = answer[k].as_str() {
            form.push((k.to_string(), v.to_string()));
        }
    }
    http.post(action).form(&form).send().await.unwrap()
}

/// Tessera's reply as the next hop: a redirect's URL, or an HTTP-POST page's form.
async fn next_hop(r: reqwest::Response) -> Value {
    if r.status() == 302 {
        return json!({"url": r.headers()["location"].to_str().unwrap()});
    }
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let start = html.find("action=\"").unwrap() + "action=\"".len();
    let action = html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let mut v = json!({"action": action});
    for (k, val) in hidden_fields(&html) {
        v[k] = json!(val);
    }
    v
}

async fn session_status(app: &TestApp, http: &reqwest::Client, cookie: &str) -> u16 {
    http.get(app.url("/session"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn single_logout_from_the_idp_and_from_tessera_in_both_bindings() {
    for flag in ["", ",slopost"] {
        let app = spawn_app().await;
        let Some(idp) = start_idp(&app, &format!("assertion{flag}")).await else {
            return;
        };
        configure(&app, &idp, json!({})).await;
        let (_, view) = app.get("/sso/saml").await;
        assert_eq!(view["idp_slo_url"], format!("{}/slo", idp.base), "{view}");
        assert_eq!(view["sp_slo_url"], app.url("/saml/default/slo"));
        let metadata = fetch_text(app.url("/saml/default/metadata")).await;
        assert!(metadata.contains("SingleLogoutService"), "{metadata}");
        let http = no_redirects();

        // IdP-initiated: the person's session here ends, and the IdP gets a signed
        // LogoutResponse it verifies.
        let (r, _) = login(&app, &http, "/").await;
        let cookie = session_cookie(&r);
        assert_eq!(session_status(&app, &http, &cookie).await, 200);
        let ask: Value = http
            .get(format!(
                "{}/logout-request?nameid=alice@example.com",
                idp.base
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let at_tessera = deliver(&http, ask.clone()).await;
        let hop = next_hop(at_tessera).await;
        let back = deliver(&http, hop).await;
        assert_eq!(
            back.status(),
            200,
            "{flag}: the IdP refused the LogoutResponse"
        );
        let back: Value = back.json().await.unwrap();
        assert_eq!(back["ok"], true, "{back}");
        assert_eq!(session_status(&app, &http, &cookie).await, 401, "{flag}");
        let (_, events) = app.get("/audit/events?kind=login").await;
        let rid = events["events"][0]["request_id"]
            .as_str()
            .unwrap()
            .to_string();
        let e = app.audit(&rid).await;
        assert_eq!(e["outcome"], "granted", "{e}");
        assert!(e.to_string().contains("1 SAML session(s)"), "{e}");

        // The same LogoutRequest again: a replay.
        let again = deliver(&http, ask.clone()).await;
        refused_with(again, "saml_replay").await;
        // SHA-1 is refused in logout messages as in responses (allow_sha1 is off).
        if let Some(url) = ask["url"].as_str() {
            let sha1 = url.replace(
                "2001%2F04%2Fxmldsig-more%23rsa-sha256",
                "2000%2F09%2Fxmldsig%23rsa-sha1",
            );
            assert_ne!(sha1, url, "{url}");
            let r = deliver(&http, json!({ "url": sha1 })).await;
            refused_with(r, "saml_sha1_refused").await;
        }
        // A forged one: its signature no longer covers what it says.
        let forged = match ask["url"].as_str() {
            Some(url) => {
                let at = url.find("&Signature=").unwrap() + "&Signature=".len();
                json!({"url": format!("{}A{}", &url[..at], &url[at + 1..])})
            }
            None => {
                let engine = &base64::engine::general_purpose::STANDARD;
                let xml = String::from_utf8(
                    base64::Engine::decode(engine, ask["SAMLRequest"].as_str().unwrap()).unwrap(),
                )
                .unwrap()
                .replace("alice@example.com", "bob@example.com");
                let mut f = ask.clone();
                f["SAMLRequest"] = json!(base64::Engine::encode(engine, xml));
                f
            }
        };
        let r = deliver(&http, forged).await;
        let status = r.status();
        let page = r.text().await.unwrap();
        assert_eq!(status, 400, "{flag}: {page}");
        assert!(
            [
                "saml_signature_invalid",
                "saml_unsigned",
                "saml_replay",
                "saml_malformed"
            ]
            .iter()
            .any(|x| page.contains(&format!("<code>{x}</code>"))),
            "{flag}: {page}"
        );

        // SP-initiated: the session ends here, then at the IdP, which answers.
        let (r, _) = login(&app, &http, "/").await;
        let cookie = session_cookie(&r);
        let out = http
            .post(app.url("/saml/default/logout"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert!(
            out.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .contains("Max-Age=0"),
            "the cookie is cleared"
        );
        let hop = next_hop(out).await;
        let at_idp = deliver(&http, hop).await;
        assert_eq!(
            at_idp.status(),
            200,
            "{flag}: the IdP refused the LogoutRequest"
        );
        let answer: Value = at_idp.json().await.unwrap();
        assert_eq!(answer["nameid"], "alice@example.com", "{answer}");
        let done = deliver(&http, answer).await;
        let status = done.status();
        let page = done.text().await.unwrap();
        assert_eq!(status, 200, "{flag}: {page}");
        assert!(page.contains("Signed out"), "{page}");
        assert_eq!(session_status(&app, &http, &cookie).await, 401);
        drop(idp);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_logout_request_from_another_orgs_idp_ends_nothing_here() {
    let app = spawn_app().await;
    let Some(idp) = start_idp(&app, "assertion").await else {
        return;
    };
    configure(&app, &idp, json!({})).await;
    let beta_admin = app.other_org_admin("beta").await;
    let beta_idp = start_idp_for(&app, "beta", "assertion").await.unwrap();
    let metadata = fetch_text(format!("{}/metadata", beta_idp.base)).await;
    let put = reqwest::Client::new()
        .put(app.url("/api/v2/sso/saml"))
        .bearer_auth(&beta_admin)
        .json(&json!({"idp_metadata_xml": metadata, "jit_provisioning": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let http = no_redirects();
    let (r, _) = login(&app, &http, "/").await;
    let cookie = session_cookie(&r);

    // Beta's IdP names a person of org default, at default's SLO service: refused.
    let ask: Value = http
        .get(format!(
            "{}/logout-request?nameid=alice@example.com",
            beta_idp.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = ask["url"].as_str().unwrap();
    assert!(url.contains("/saml/beta/slo"), "{url}");
    let aimed = url.replace("/saml/beta/slo", "/saml/default/slo");
    let r = http.get(&aimed).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        session_status(&app, &http, &cookie).await,
        200,
        "alice is still signed in"
    );

    // At beta's own SLO service the request is genuine, but nobody there has that NameID.
    let r = http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 302, "answered with a LogoutResponse");
    assert_eq!(
        session_status(&app, &http, &cookie).await,
        200,
        "alice is still signed in"
    );
    drop(beta_idp);
    drop(idp);
    app.stop().await;
}

/// A login's outcome: the ACS reply's status, or the reason of its error page.
async fn login_outcome(app: &TestApp, http: &reqwest::Client) -> String {
    let (r, _) = login(app, http, "/").await;
    if r.status() == 303 {
        return "ok".into();
    }
    let page = r.text().await.unwrap();
    page.split("<code>")
        .nth(1)
        .and_then(|x| x.split("</code>").next())
        .unwrap_or("?")
        .to_string()
}

#[tokio::test]
async fn a_metadata_url_brings_the_idps_new_certificate_without_an_admin() {
    // The schedule is left at its default (an hour): this test refreshes by hand.
    let app = crate::helpers::spawn_app_with(|c| {
        c.saml_metadata.trusted_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let Some(idp) = start_idp(&app, "assertion").await else {
        return;
    };
    let metadata_url = format!("{}/metadata", idp.base);
    let (s, v) = app
        .put(
            "/sso/saml",
            json!({
                "idp_metadata_url": metadata_url,
                "attribute_email": "email",
                "jit_provisioning": true,
                "name_id_format": EMAIL_FORMAT,
            }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["idp_metadata_url"], metadata_url);
    assert!(v["idp_metadata_refreshed_at"].is_string(), "{v}");
    assert_eq!(v["idp_certificates"].as_array().unwrap().len(), 1);
    let http = no_redirects();
    assert_eq!(login_outcome(&app, &http).await, "ok");

    // The IdP starts signing with a new key and lists both certificates. A refresh now
    // (as the schedule does) trusts the new one beside the old, and says so.
    let r = reqwest::Client::new()
        .post(format!("{}/rotate?then=both", idp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let before = login_outcome(&app, &http).await;
    assert!(
        ["saml_cert_untrusted", "saml_signature_invalid"].contains(&before.as_str()),
        "not trusted before the refresh: {before}"
    );
    let (s, refreshed) = app.post("/sso/saml/metadata/refresh", json!({})).await;
    assert_eq!(s, 200, "{refreshed}");
    assert_eq!(refreshed["changed"], true, "{refreshed}");
    let added = refreshed["certificates_added"].as_array().unwrap();
    assert_eq!(added.len(), 1, "{refreshed}");
    assert!(added[0]["subject"].as_str().unwrap().contains("rotated"));
    assert_eq!(refreshed["certificates_removed"], json!([]));
    assert_eq!(
        refreshed["config"]["idp_certificates"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        login_outcome(&app, &http).await,
        "ok",
        "signed with the new key"
    );
    let (_, events) = app.get("/audit/events?kind=admin").await;
    assert!(
        events.to_string().contains("idp_metadata_refreshed"),
        "{events}"
    );
    // Nothing new: nothing changes.
    let (_, again) = app.post("/sso/saml/metadata/refresh", json!({})).await;
    assert_eq!(again["changed"], false, "{again}");

    // The IdP drops the old certificate: the refresh follows.
    reqwest::Client::new()
        .post(format!("{}/rotate?then=new", idp.base))
        .send()
        .await
        .unwrap();
    let (_, dropped) = app.post("/sso/saml/metadata/refresh", json!({})).await;
    assert_eq!(
        dropped["certificates_removed"].as_array().unwrap().len(),
        1,
        "{dropped}"
    );
    assert_eq!(login_outcome(&app, &http).await, "ok");

    // The IdP goes away: the refresh fails, says why, and changes nothing else.
    drop(idp);
    let (_, failed) = app.post("/sso/saml/metadata/refresh", json!({})).await;
    assert!(failed["error"].is_string(), "{failed}");
    assert_eq!(
        failed["config"]["idp_certificates"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn the_metadata_schedule_picks_up_a_rotation_by_itself() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.saml_metadata.trusted_hosts = vec!["127.0.0.1".into()];
        c.saml_metadata.refresh_seconds = 1;
    })
    .await;
    let Some(idp) = start_idp(&app, "assertion").await else {
        return;
    };
    let (s, v) = app
        .put(
            "/sso/saml",
            json!({"idp_metadata_url": format!("{}/metadata", idp.base), "jit_provisioning": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    reqwest::Client::new()
        .post(format!("{}/rotate?then=both", idp.base))
        .send()
        .await
        .unwrap();
    // Waits for the schedule (every second here), at most 10 seconds.
    let mut certificates = 1;
    for _ in 0..100 {
        let (_, v) = app.get("/sso/saml").await;
        certificates = v["idp_certificates"].as_array().unwrap().len();
        if certificates == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        certificates, 2,
        "the scheduled refresh added the new certificate"
    );
    let (_, events) = app.get("/audit/events?kind=admin").await;
    let refresh = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e.to_string().contains("idp_metadata_refreshed"))
        .cloned()
        .unwrap_or_else(|| panic!("{events}"));
    assert_eq!(refresh["actor"], "metadata_refresh", "{refresh}");
    drop(idp);
    app.stop().await;
}

#[tokio::test]
async fn a_metadata_url_may_not_reach_internal_addresses_unless_the_operator_trusts_them() {
    let app = spawn_app().await;
    for (url, why) in [
        ("http://127.0.0.1:9/metadata", "must be https"),
        ("https://127.0.0.1:9/metadata", "not public"),
        ("https://[::1]:9/metadata", "not public"),
        ("https://169.254.169.254/latest/meta-data", "not public"),
        ("https://localhost:9/metadata", "not public"),
        ("https://user:pw@idp.example/metadata", "user name"),
    ] {
        let (s, v) = app.put("/sso/saml", json!({"idp_metadata_url": url})).await;
        assert_eq!(s, 422, "{url}: {v}");
        assert_eq!(v["field"], "idp_metadata_url", "{url}: {v}");
        assert!(v.to_string().contains(why), "{url}: {v}");
    }
    let (s, v) = app.post("/sso/saml/metadata/refresh", json!({})).await;
    assert_eq!(s, 422, "{v}");
    // With a metadata URL, the IdP's fields come from the metadata only.
    let (s, v) = app
        .put(
            "/sso/saml",
            json!({
                "idp_metadata_url": "https://idp.example/metadata",
                "idp_certificates": [crate::helpers::IDP_CERT],
            }),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(v.to_string().contains("leave out idp_certificates"), "{v}");
    app.stop().await;
}

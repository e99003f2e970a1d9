//! Golden files for the documents other software parses: the discovery documents and the
//! shape of the JWK Set, compared with `tests/golden/*.json` (the issuer and key material
//! replaced by placeholders). Refresh with `UPDATE_GOLDEN=1 cargo test --test api golden`.

use serde_json::Value;

use crate::helpers::spawn_app;

fn check(name: &str, doc: &Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text = serde_json::to_string_pretty(doc).unwrap() + "\n";
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        want == text,
        "{name} changed: run UPDATE_GOLDEN=1 cargo test --test api golden, review the diff and commit it\n{text}"
    );
}

fn placeholders(v: &mut Value, issuer: &str) {
    match v {
        Value::String(s) if s.contains(issuer) => *s = s.replace(issuer, "ISSUER"),
        Value::Array(a) => a.iter_mut().for_each(|x| placeholders(x, issuer)),
        Value::Object(o) => o.values_mut().for_each(|x| placeholders(x, issuer)),
        _ => {}
    }
}

#[tokio::test]
async fn discovery_and_jwks_shape() {
    let app = spawn_app().await;
    for (path, file) in [
        (
            "/.well-known/oauth-authorization-server",
            "oauth-authorization-server.json",
        ),
        (
            "/.well-known/openid-configuration",
            "openid-configuration.json",
        ),
    ] {
        let mut doc: Value = app
            .http
            .get(app.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        placeholders(&mut doc, &app.base);
        check(file, &doc);
    }
    let mut jwks: Value = app
        .http
        .get(app.url("/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The access tokens' ES256 key, and the ID tokens' RS256 key.
    for k in jwks["keys"].as_array_mut().unwrap() {
        let members: &[&str] = if k["kty"] == "RSA" {
            &["kid", "n"]
        } else {
            &["kid", "x", "y"]
        };
        for f in members {
            assert!(k[*f].as_str().is_some_and(|s| !s.is_empty()), "{f}");
            k[*f] = Value::String(format!("<{f}>"));
        }
    }
    check("jwks-shape.json", &jwks);
    app.stop().await;
}

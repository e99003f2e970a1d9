//! Three `tessera serve` processes on one PostgreSQL database behind a real HAProxy
//! (Debian's package), health-checking `/readyz`, as docs/operations.md sets it up:
//! changes made through one node hold on the others, a brute force spread over the
//! nodes is throttled about as on one, and a node killed with `kill -9` under load
//! leaves no token without its audit event.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16) {
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

/// Kills a child process when dropped (a failed assertion leaves nothing running).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The HAProxy configuration of docs/operations.md, with these ports.
fn haproxy_config(front: u16, nodes: &[u16]) -> String {
    let mut cfg = format!(
        "global
    maxconn 1024

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 2
    option redispatch

frontend tessera
    bind 127.0.0.1:{front}
    default_backend nodes

backend nodes
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1
"
    );
    for (i, p) in nodes.iter().enumerate() {
        cfg.push_str(&format!("    server n{i} 127.0.0.1:{p} check\n"));
    }
    cfg
}

struct Cluster {
    nodes: Vec<(u16, Option<Reaped>)>,
    front: String,
    admin_id: String,
    admin_secret: String,
    _haproxy: Reaped,
    _dir: tempfile::TempDir,
    _db: tessera_store::testing::PgTestDb,
}

impl Cluster {
    async fn start(n: usize) -> Option<Cluster> {
        let server = tessera_store::testing::postgres_server()?;
        let haproxy = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(haproxy) = haproxy else {
            let msg = "haproxy is not installed: the multi-node test is skipped (apt-get install haproxy; .ci/run does)";
            assert!(
                std::env::var("TESSERA_REQUIRE_ALL").as_deref() != Ok("1"),
                "{msg}; TESSERA_REQUIRE_ALL=1 makes this a failure"
            );
            eprintln!("{msg}");
            return None;
        };
        let db = tessera_store::testing::PgTestDb::create(&server).await;
        let dir = tempfile::tempdir().unwrap();
        let bin = env!("CARGO_BIN_EXE_tessera");
        let out = Command::new(bin)
            .args(["bootstrap", "--org", "default", "--database", &db.url()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let boot: Value = serde_json::from_slice(&out.stdout).unwrap();
        // Throttle blocks long enough that the test sees them whole.
        let config = dir.path().join("tessera.toml");
        std::fs::write(&config, "[throttle]\nbase_delay_seconds = 120\n").unwrap();
        let key = tessera_core::jwt::MasterKey::generate_base64();
        let mut nodes = vec![];
        for _ in 0..n {
            let port = free_port();
            let child = Command::new(bin)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .args(["--database", &db.url(), "--issuer", "https://auth.test"])
                .arg("--config")
                .arg(&config)
                .env("TESSERA_MASTER_KEY", &key)
                .env("TESSERA_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            nodes.push((port, Some(Reaped(child))));
        }
        for (port, _) in &nodes {
            wait_for_port(*port);
        }
        let front = free_port();
        let cfg = dir.path().join("haproxy.cfg");
        let ports: Vec<u16> = nodes.iter().map(|(p, _)| *p).collect();
        std::fs::write(&cfg, haproxy_config(front, &ports)).unwrap();
        let proxy = Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(front);
        let c = Cluster {
            nodes,
            front: format!("http://127.0.0.1:{front}"),
            admin_id: boot["client_id"].as_str().unwrap().into(),
            admin_secret: boot["client_secret"].as_str().unwrap().into(),
            _haproxy: Reaped(proxy),
            _dir: dir,
            _db: db,
        };
        // Every node ready and seen so by HAProxy.
        for i in 0..n {
            let url = c.node(i);
            let mut ready = false;
            for _ in 0..200 {
                if let Ok(r) = reqwest::get(format!("{url}/readyz")).await
                    && r.status() == 200
                {
                    ready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(ready, "node {i} is not ready");
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        Some(c)
    }

    fn node(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].0)
    }

    async fn token(&self, base: &str, id: &str, secret: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{base}/oauth/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn admin_token(&self, base: &str) -> String {
        let (s, t) = self.token(base, &self.admin_id, &self.admin_secret).await;
        assert_eq!(s, 200, "{t}");
        t["access_token"].as_str().unwrap().to_string()
    }

    async fn admin(&self, base: &str, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = reqwest::Client::new()
            .request(method, format!("{base}/api/v2{path}"))
            .bearer_auth(self.admin_token(base).await)
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(s.is_success(), "{path}: {s} {v}");
        v
    }
}

/// Polls `check` on a node until it holds; returns how long that took. Bounded, so a
/// change that never arrives fails the test; the 2-second contract itself is measured
/// in bench/, not asserted here (tests hold no timing).
async fn until<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not seen within 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_behind_haproxy_share_everything_and_lose_no_audit_event() {
    let Some(mut c) = Cluster::start(3).await else {
        return;
    };
    let (a, b) = (c.node(0), c.node(1));

    // A client created through node A works through B and through HAProxy.
    let created = c
        .admin(
            &a,
            reqwest::Method::POST,
            "/oauth/clients",
            json!({"client_id": "svc", "name": "svc"}),
        )
        .await;
    let secret = created["client_secret"].as_str().unwrap().to_string();
    assert_eq!(c.token(&b, "svc", &secret).await.0, 200);
    assert_eq!(c.token(&c.front, "svc", &secret).await.0, 200);

    // Disabled through A: refused on B once its next sync has run.
    c.admin(
        &a,
        reqwest::Method::PATCH,
        "/oauth/clients/svc",
        json!({"enabled": false}),
    )
    .await;
    let took = until("client disabled on node B", || async {
        c.token(&b, "svc", &secret).await.1["reason"] == "client_disabled"
    })
    .await;
    eprintln!("client disabled through node A, refused on node B after {took:?}");
    c.admin(
        &a,
        reqwest::Method::PATCH,
        "/oauth/clients/svc",
        json!({"enabled": true}),
    )
    .await;
    until("client enabled again on node B", || async {
        c.token(&b, "svc", &secret).await.0 == 200
    })
    .await;

    // A secret rotated through A with no grace: B refuses the old one, takes the new.
    let rotated = c
        .admin(
            &a,
            reqwest::Method::POST,
            "/oauth/clients/svc/secrets",
            json!({"grace_seconds": 0}),
        )
        .await;
    let fresh = rotated["client_secret"].as_str().unwrap().to_string();
    until("old secret refused on node B", || async {
        c.token(&b, "svc", &secret).await.0 == 401
    })
    .await;
    assert_eq!(c.token(&b, "svc", &fresh).await.0, 200);

    // A signing key rotated through A: B publishes it and signs with it.
    let rotated = c
        .admin(&a, reqwest::Method::POST, "/signing-keys/rotate", json!({}))
        .await;
    let kid = rotated["kid"].as_str().unwrap_or_default().to_string();
    assert!(!kid.is_empty(), "{rotated}");
    let took = until("rotated key signing on node B", || async {
        let (s, t) = c.token(&b, "svc", &fresh).await;
        s == 200 && {
            let header = t["access_token"]
                .as_str()
                .unwrap()
                .split('.')
                .next()
                .unwrap();
            let h: Value = serde_json::from_slice(
                &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                    .unwrap(),
            )
            .unwrap();
            h["kid"] == kid.as_str()
        }
    })
    .await;
    eprintln!("signing key rotated through node A, used by node B after {took:?}");

    // A brute force through HAProxy, spread over the three nodes: the failures add up
    // in the database, so the attempts checked stay close to one node's five free
    // failures and the one that starts the block (at most one more per other node,
    // before the block is seen there).
    let mut checked = 0;
    for _ in 0..45 {
        let (s, e) = c.token(&c.front, "svc", "tsec_wrong").await;
        match e["reason"].as_str() {
            Some("client_secret_mismatch") => checked += 1,
            Some("client_throttled") => {}
            other => panic!("{s}: {other:?} {e}"),
        }
    }
    eprintln!("{checked} of 45 wrong secrets spread over three nodes were checked");
    assert!(
        (6..=8).contains(&checked),
        "{checked} wrong secrets checked across three nodes (one node checks 6)"
    );

    // kill -9 of a node under load through HAProxy: every token answered has its audit
    // event (written before the answer). Another client: svc is throttled from here now.
    let created = c
        .admin(
            &a,
            reqwest::Method::POST,
            "/oauth/clients",
            json!({"client_id": "load", "name": "load"}),
        )
        .await;
    let fresh = created["client_secret"].as_str().unwrap().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = vec![];
    for _ in 0..4 {
        let (front, secret, stop) = (c.front.clone(), fresh.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut issued = vec![];
            let mut failed = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let r = http
                    .post(format!("{front}/oauth/token"))
                    .basic_auth("load", Some(&secret))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let t: Value = r.json().await.unwrap();
                        issued.push(t["access_token"].as_str().unwrap().to_string());
                    }
                    _ => failed += 1,
                }
            }
            (issued, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The third node, not A or B, whose ports the checks above use.
    let mut victim = c.nodes[2].1.take().unwrap();
    victim.0.kill().unwrap(); // SIGKILL
    let _ = victim.0.wait();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut issued = vec![];
    for w in workers {
        issued.extend(w.await.unwrap().0);
    }
    assert!(issued.len() > 10, "{} tokens under load", issued.len());
    let admin = c.admin_token(&a).await;
    let http = reqwest::Client::new();
    for t in &issued {
        let payload = t.split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        let rid = claims["jti"].as_str().unwrap();
        let r = http
            .get(format!("{a}/api/v2/audit/events/{rid}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "no audit event for the token of request {rid}"
        );
    }
    eprintln!(
        "{} tokens issued under load across a kill -9; each has its audit event",
        issued.len()
    );
}

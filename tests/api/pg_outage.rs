//! PostgreSQL going away and coming back, as a node sees it: the test puts a TCP relay
//! of its own between the server and PostgreSQL and cuts it (every connection reset,
//! every new one refused) then mends it. Meanwhile requests that need the database get
//! `503` with a reason, never a `500` or a hang, `/readyz` says not ready, and once the
//! database is back the node recovers by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::spawn_app_with;

/// A TCP relay to `target` that can be cut and mended.
struct Relay {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    /// Bumped on each cut: every relayed connection ends when it moves.
    cuts: watch::Sender<u64>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0u64);
        let (up2, cuts2) = (up.clone(), cuts.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    // Down: the connection is dropped at once, as a stopped server's
                    // port would refuse it.
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut cut = cuts2.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Relay { addr, up, cuts }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|n| *n += 1);
    }

    fn mend(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Host and port of a `postgres://user@host:port/db` URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split(['/', '?']).next().unwrap();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5432")
    }
}

/// A request with a bound: a hang fails the test instead of stalling it.
async fn bounded(req: reqwest::RequestBuilder) -> (u16, String) {
    let r = tokio::time::timeout(Duration::from_secs(30), req.send())
        .await
        .expect("the request hung")
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_answers_503_and_the_node_recovers_by_itself() {
    let Some(server) = tessera_store::testing::postgres_server() else {
        return;
    };
    let db = tessera_store::testing::PgTestDb::create(&server).await;
    let relay = Relay::start(host_port(&db.url())).await;
    let direct = db.url();
    let (before, after) = direct.split_once(&host_port(&direct)).unwrap();
    let relayed = format!("{before}{}{after}", relay.addr);
    let app = spawn_app_with(|c| {
        c.database_url = relayed.clone();
        c.database_pool.acquire_timeout = Duration::from_secs(2);
    })
    .await;
    let (id, secret) = app.client(json!({"name": "svc"})).await;
    let http = reqwest::Client::new();
    let token = || {
        http.post(app.url("/oauth/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
    };
    let admin = || {
        http.get(app.url("/api/v2/oauth/clients"))
            .bearer_auth(app.admin_token())
    };
    assert_eq!(bounded(token()).await.0, 200);
    assert_eq!(bounded(http.get(app.url("/readyz"))).await.0, 200);

    relay.cut();
    // A token needs its audit event written; the admin API reads the database; both
    // answer 503 with a reason, and readiness says so.
    let (s, body) = bounded(token()).await;
    assert_eq!(s, 503, "{body}");
    let b: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (b["error"].as_str(), b["reason"].as_str()),
        (
            Some("temporarily_unavailable"),
            Some("database_unavailable")
        ),
        "{b}"
    );
    assert!(b["request_id"].is_string(), "{b}");
    let (s, body) = bounded(admin()).await;
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("unavailable"), "{body}");
    assert_eq!(bounded(http.get(app.url("/readyz"))).await.0, 503);

    relay.mend();
    // No restart: within a bounded number of tries the node answers again.
    let mut ready = false;
    for _ in 0..60 {
        if bounded(http.get(app.url("/readyz"))).await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(ready, "the node did not become ready again");
    let mut tokens = false;
    for _ in 0..20 {
        let (s, body) = bounded(token()).await;
        assert!(s == 200 || s == 503, "{s}: {body}");
        if s == 200 {
            tokens = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(tokens, "tokens did not come back");
    assert_eq!(bounded(admin()).await.0, 200);
    app.stop().await;
    drop(db);
}

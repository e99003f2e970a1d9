//! `spawn_app()` and the HTTP helpers every test uses.

use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};
use tessera_core::secret::SecretString;
use tessera_core::throttle::ThrottlePolicy;
use tessera_server::{App, Config, MasterKeySource};
use tokio::sync::oneshot;

/// Everything the in-process servers logged (all tests share one subscriber).
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

#[derive(Clone)]
struct BufWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let buf = log_buffer().clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,sqlx=info,hyper=info,h2=info")
            .with_ansi(false)
            .with_writer(move || BufWriter(buf.clone()))
            .try_init();
    });
}

/// A running server and an admin client for it.
pub struct TestApp {
    pub base: String,
    pub admin_id: String,
    pub admin_secret: String,
    pub http: reqwest::Client,
    admin_token: String,
    /// The database URL: a file in `_dir`, or `_pg`'s.
    db: String,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
    _pg: Option<tessera_store::testing::PgTestDb>,
}

/// Starts a server with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server after `adjust` has changed its configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    // `.ci/run` runs the HTTP suites a second time with TESSERA_TEST_DATABASE=postgres:
    // every test server then gets a fresh PostgreSQL database.
    let pg = match std::env::var("TESSERA_TEST_DATABASE").as_deref() {
        Ok("postgres") => {
            let server = tessera_store::testing::postgres_server()
                .expect("TESSERA_TEST_DATABASE=postgres needs TESSERA_TEST_POSTGRES_URL");
            Some(tessera_store::testing::PgTestDb::create(&server).await)
        }
        _ => None,
    };
    let db = match &pg {
        Some(p) => p.url(),
        None => dir.path().join("tessera.db").to_str().unwrap().to_string(),
    };
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), db.clone());
    config.master_key = MasterKeySource::Value(SecretString::new(
        tessera_core::jwt::MasterKey::generate_base64(),
    ));
    // Long enough that no test depends on how fast it runs.
    config.throttle = ThrottlePolicy {
        base_delay: 120,
        ..ThrottlePolicy::default()
    };
    config.account_throttle = ThrottlePolicy {
        base_delay: 120,
        max_delay: 600,
        ..ThrottlePolicy::account_ceiling()
    };
    adjust(&mut config);
    let mut app = App::build(config).await.expect("server builds");
    let boot = app.bootstrapped.take().expect("fresh database bootstraps");
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let mut t = TestApp {
        base,
        admin_id: boot.client_id,
        admin_secret: boot.client_secret.expose().to_string(),
        http,
        admin_token: String::new(),
        db,
        stop: Some(stop),
        done: Some(done),
        _dir: dir,
        _pg: pg,
    };
    let (status, body) = t
        .token_basic(
            &t.admin_id.clone(),
            &t.admin_secret.clone(),
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(status, 200, "admin token: {body}");
    t.admin_token = body["access_token"].as_str().unwrap().to_string();
    if std::env::var_os("TESSERA_TEST_SSO_ENFORCED").is_some_and(|v| v == "1") {
        // `.ci/run` runs the client_credentials suite a second time like this: SSO
        // enforcement must change nothing for machines.
        t.enforce_sso(&[]).await;
    }
    t
}

/// The test IdP's signing certificate (public part only).
pub const IDP_CERT: &str = include_str!("../fixtures/idp-signing-cert.pem");

/// What a response carried.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs a public JSON document (discovery, JWKS) at an absolute `url`, without a token.
    pub async fn public_json<T: serde::de::DeserializeOwned>(&self, url: impl AsRef<str>) -> T {
        let url = url.as_ref();
        let res = self.http.get(url).send().await.unwrap();
        assert_eq!(res.status(), 200, "GET {url}");
        res.json().await.unwrap()
    }

    /// Bootstraps another org in the same database; returns an admin token for it.
    pub async fn other_org_admin(&self, slug: &str) -> String {
        let store = tessera_store::open(&self.db, tessera_store::Durability::Normal)
            .await
            .unwrap();
        let slug = tessera_core::model::OrgSlug::parse(slug).unwrap();
        let b = tessera_server::bootstrap(store.as_ref(), &slug)
            .await
            .unwrap();
        let (s, body) = self
            .token_basic(
                &b.client_id,
                b.client_secret.expose(),
                "grant_type=client_credentials",
            )
            .await;
        assert_eq!(s, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            d.await.unwrap().unwrap();
        }
    }

    /// POST /oauth/token with a raw body, optional content type and Authorization header,
    /// from `source` (a loopback address) when given.
    pub async fn token_raw(
        &self,
        content_type: Option<&str>,
        body: &str,
        authorization: Option<&str>,
        source: Option<IpAddr>,
    ) -> Reply {
        let http = match source {
            Some(ip) => reqwest::Client::builder()
                .local_address(ip)
                .build()
                .unwrap(),
            None => self.http.clone(),
        };
        let mut req = http.post(self.url("/oauth/token")).body(body.to_string());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// A form-encoded token request with client_secret_basic.
    pub async fn token_basic(&self, id: &str, secret: &str, form: &str) -> (u16, Value) {
        let r = self
            .token_raw(
                Some("application/x-www-form-urlencoded"),
                form,
                Some(&basic(id, secret)),
                None,
            )
            .await;
        (r.status, r.body)
    }

    /// A form-encoded token request with client_secret_post.
    pub async fn token_post(&self, id: &str, secret: &str, extra: &str) -> Reply {
        let body = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}{extra}",
            enc(id),
            enc(secret)
        );
        self.token_raw(Some("application/x-www-form-urlencoded"), &body, None, None)
            .await
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, self.url(&format!("/api/v2{path}")))
            .bearer_auth(&self.admin_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.admin(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.admin(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.admin(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.admin(reqwest::Method::DELETE, path, None).await
    }

    /// Adds scopes to the org's catalogue.
    pub async fn scopes(&self, names: &[&str]) {
        for n in names {
            let (s, b) = self
                .post("/scopes", json!({"name": n, "description": "test"}))
                .await;
            assert_eq!(s, 201, "{b}");
        }
    }

    /// Creates a service account; returns its id.
    pub async fn service_account(&self, username: &str) -> String {
        let (s, b) = self
            .post("/users", json!({"type": "service", "username": username}))
            .await;
        assert_eq!(s, 201, "{b}");
        b["id"].as_str().unwrap().to_string()
    }

    /// Creates a human with a password; returns the id.
    pub async fn human(&self, username: &str, password: &str) -> String {
        let (s, b) = self
            .post(
                "/users",
                json!({"type": "human", "username": username, "password": password}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b["id"].as_str().unwrap().to_string()
    }

    /// Configures the test IdP (`IDP_CERT`) with `break_glass` exempt, not enforced.
    pub async fn configure_idp(&self, break_glass: &[&str]) {
        let (s, b) = self
            .admin(
                reqwest::Method::PUT,
                "/sso/saml",
                Some(json!({
                    "idp_entity_id": "https://idp.example/metadata",
                    "idp_sso_url": "https://idp.example/sso",
                    "idp_certificates": [IDP_CERT],
                    "break_glass_user_ids": break_glass,
                })),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }

    /// Configures a test IdP with `break_glass` exempt, and enforces SSO (forced).
    pub async fn enforce_sso(&self, break_glass: &[&str]) {
        self.configure_idp(break_glass).await;
        let (s, b) = self
            .patch("/sso/saml", json!({"enforced": true, "force": true}))
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["enforced"], true);
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.admin(reqwest::Method::PUT, path, Some(body)).await
    }

    /// A password grant with client_secret_post.
    pub async fn password_grant(
        &self,
        id: &str,
        secret: &str,
        username: &str,
        password: &str,
    ) -> Reply {
        let body = format!(
            "grant_type=password&client_id={}&client_secret={}&username={}&password={}",
            enc(id),
            enc(secret),
            enc(username),
            enc(password)
        );
        self.token_raw(Some("application/x-www-form-urlencoded"), &body, None, None)
            .await
    }

    /// The bootstrap admin's access token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// A password grant sent from another loopback address: (status, JSON body).
    pub async fn password_grant_from(
        &self,
        ip: [u8; 4],
        id: &str,
        secret: &str,
        username: &str,
        password: &str,
    ) -> (u16, Value) {
        let res = reqwest::Client::builder()
            .local_address(IpAddr::from(ip))
            .build()
            .unwrap()
            .post(self.url("/oauth/token"))
            .form(&[
                ("grant_type", "password"),
                ("client_id", id),
                ("client_secret", secret),
                ("username", username),
                ("password", password),
            ])
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    /// Creates a client from `body`; returns (client_id, client_secret).
    pub async fn client(&self, body: Value) -> (String, String) {
        let (s, b) = self.post("/oauth/clients", body).await;
        assert_eq!(s, 201, "{b}");
        (
            b["client_id"].as_str().unwrap().to_string(),
            b["client_secret"].as_str().unwrap().to_string(),
        )
    }

    /// The audit event of `request_id` (waits for nothing: responses follow commits).
    pub async fn audit(&self, request_id: &str) -> Value {
        let (s, b) = self.get(&format!("/audit/events/{request_id}")).await;
        assert_eq!(s, 200, "audit event {request_id}: {b}");
        b
    }

    /// Asserts a token refusal and that its audit trace fails at `check`.
    pub async fn assert_refused(
        &self,
        r: &Reply,
        status: u16,
        error: &str,
        reason: &str,
        check: &str,
    ) -> Value {
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.body["error"], error, "{}", r.body);
        assert_eq!(r.body["reason"], reason, "{}", r.body);
        let rid = r.body["request_id"]
            .as_str()
            .expect("request_id")
            .to_string();
        assert_eq!(r.headers["x-request-id"].to_str().unwrap(), rid);
        assert!(
            r.body["error_uri"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/docs/errors#{reason}")),
            "{}",
            r.body
        );
        let e = self.audit(&rid).await;
        assert_eq!(e["outcome"], "denied");
        assert_eq!(e["reason"], reason);
        let failed: Vec<&Value> = e["trace"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["verdict"] == "fail")
            .collect();
        assert_eq!(failed.len(), 1, "{e}");
        assert_eq!(failed[0]["check"], check, "{e}");
        assert_eq!(failed[0]["reason"], reason, "{e}");
        e
    }
}

/// A JWT's claims, unverified (the tests check what was issued, not who signed it).
pub fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `Basic base64(urlencode(id):urlencode(secret))`.
pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

/// Form-url-encodes one value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A missing optional peer (a browser, an npm or PyPI package): the test says what is
/// missing and how to get it, and skips; TESSERA_REQUIRE_ALL=1 (CI) makes it a failure.
pub fn missing_peer(msg: &str) {
    if std::env::var("TESSERA_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{msg}; TESSERA_REQUIRE_ALL=1 makes this a failure");
    }
    eprintln!("SKIPPED: {msg}");
}

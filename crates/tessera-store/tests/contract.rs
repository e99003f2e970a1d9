//! The store contract: every backend behind the cache layer, each test once on a fresh
//! SQLite file and once on a fresh PostgreSQL database (when `TESSERA_TEST_POSTGRES_URL`
//! names a server). A few SQLite-only tests (its audit connection, in-memory stores)
//! come last.

use std::sync::Arc;

use tessera_core::audit::{AuditEvent, AuditFilter, AuditKind};
use tessera_core::decision::ClientFacts;
use tessera_core::model::{
    AuthMethod, Client, ClientId, GrantType, IpAllowList, OrgSlug, Scope, ScopeName, StoredSecret,
    User, UserState, UserType,
};
use tessera_core::secret::hash_client_secret;
use tessera_core::store::{AuditAppender, Store, StoreError, StoreResult, StoredKey, UserFields};
use tessera_core::throttle::{AttemptOutcome, ThrottlePolicy, ThrottleState};
use tessera_core::trace::Trace;
use tessera_store::Durability;
use tessera_store::testing::{PgTestDb, postgres_server};

/// A fresh database for one test: an SQLite file in a temporary folder, or a new
/// PostgreSQL database on the server `TESSERA_TEST_POSTGRES_URL` names (dropped after).
enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres(PgTestDb),
}

impl TestDb {
    fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().unwrap())
    }

    /// `None` (with a note) when no PostgreSQL server is named; a failure instead when
    /// `TESSERA_REQUIRE_ALL=1`.
    async fn postgres() -> Option<TestDb> {
        let server = postgres_server()?;
        Some(TestDb::Postgres(PgTestDb::create(&server).await))
    }

    /// Other nodes learn of a change only at their sync (SQLite); on PostgreSQL a
    /// NOTIFY may bring it sooner.
    fn polled_only(&self) -> bool {
        matches!(self, TestDb::Sqlite(_))
    }

    /// The URL a node opens.
    fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => dir.path().join("t.db").to_str().unwrap().to_string(),
            TestDb::Postgres(db) => db.url(),
        }
    }
}

/// A node on the test's database.
async fn store(db: &TestDb) -> Arc<dyn Store> {
    tessera_store::open(&db.url(), Durability::Normal)
        .await
        .unwrap()
}

fn secret(id: &str, client: &str, value: &str, created_at: i64) -> StoredSecret {
    StoredSecret {
        id: id.into(),
        client_id: ClientId::parse(client).unwrap(),
        hash: hash_client_secret(value),
        hint: value[value.len() - 4..].into(),
        created_at,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        last_used_from: None,
    }
}

/// An active human `usr_{name}` with a password and no SAML link.
fn human(org_id: i64, name: &str) -> User {
    User {
        id: format!("usr_{name}"),
        org_id,
        user_type: UserType::Human,
        username: name.into(),
        email: None,
        display_name: None,
        roles: vec![],
        state: UserState::Active,
        state_changed_by: None,
        state_changed_at: None,
        locked_until: None,
        password_hash: Some("$argon2id$stand-in".into()),
        saml_name_id: None,
        failed_logins: 0,
        last_password_login_at: None,
        scim: None,
        created_at: 10,
    }
}

async fn org_with_client(s: &dyn Store) -> (i64, Client) {
    let org = s
        .create_org(&OrgSlug::parse("acme").unwrap(), 10)
        .await
        .unwrap();
    s.create_scope(&Scope {
        org_id: org.id,
        name: ScopeName::parse("a").unwrap(),
        description: "".into(),
    })
    .await
    .unwrap();
    let sa = User {
        id: "usr_1".into(),
        org_id: org.id,
        user_type: UserType::Service,
        username: "svc".into(),
        email: None,
        display_name: None,
        roles: vec!["r".into()],
        state: UserState::Active,
        state_changed_by: None,
        state_changed_at: None,
        locked_until: None,
        password_hash: None,
        saml_name_id: None,
        failed_logins: 0,
        last_password_login_at: None,
        scim: None,
        created_at: 10,
    };
    s.create_user(&sa).await.unwrap();
    let c = Client {
        client_id: ClientId::parse("c1").unwrap(),
        org_id: org.id,
        name: "one".into(),
        enabled: true,
        grant_types: vec![GrantType::ClientCredentials],
        scopes: vec![ScopeName::parse("a").unwrap()],
        redirect_uris: vec![],
        auth_methods: vec![AuthMethod::ClientSecretBasic],
        ip_allowlist: IpAllowList::parse(&["10.0.0.0/8"]).unwrap(),
        service_account_id: Some("usr_1".into()),
        token_ttl: 600,
        interactive: Default::default(),
        jwks: None,
        jwks_uri: None,
        created_at: 10,
    };
    s.create_client(&c, Some(&secret("s1", "c1", "tsec_one1", 10)))
        .await
        .unwrap();
    (org.id, c)
}

async fn facts_round_trip_and_reopen_keeps_data(dir: TestDb) {
    let s = store(&dir).await;
    assert!(s.is_empty().await.unwrap());
    let (_, c) = org_with_client(s.as_ref()).await;
    let f = s.token_facts("c1", "10.0.0.1").await.unwrap();
    let cf = f.client.unwrap();
    assert_eq!(cf.client, c);
    assert_eq!(cf.secrets.len(), 1);
    assert_eq!(cf.service_account.as_ref().unwrap().roles, vec!["r"]);
    assert_eq!(*cf.known_scopes, [ScopeName::parse("a").unwrap()]);
    assert!(s.token_facts("nope", "x").await.unwrap().client.is_none());
    drop(s);
    // Migrations run again on open and change nothing.
    let s = store(&dir).await;
    assert!(!s.is_empty().await.unwrap());
    assert!(s.get_client(1, "c1").await.unwrap().is_some());
}

async fn uniqueness_is_a_conflict_naming_the_thing(dir: TestDb) {
    let s = store(&dir).await;
    let (org, c) = org_with_client(s.as_ref()).await;
    match s.create_org(&OrgSlug::parse("acme").unwrap(), 0).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("acme")),
        other => panic!("{other:?}"),
    }
    match s
        .create_client(&c, Some(&secret("s9", "c1", "tsec_nine", 0)))
        .await
    {
        Err(StoreError::Conflict(m)) => assert!(m.contains("c1")),
        other => panic!("{other:?}"),
    }
    // The failed create wrote nothing: its secret is not there.
    assert_eq!(s.list_secrets("c1").await.unwrap().len(), 1);
    assert_eq!(s.list_clients(org).await.unwrap().len(), 1);
}

async fn rotation_keeps_at_most_two_active(dir: TestDb) {
    let s = store(&dir).await;
    org_with_client(s.as_ref()).await;
    s.rotate_secret(&secret("s2", "c1", "tsec_two2", 100), 700, 100)
        .await
        .unwrap();
    let all = s.list_secrets("c1").await.unwrap();
    assert_eq!(all[0].expires_at, Some(700));
    assert_eq!(all[1].expires_at, None);
    match s
        .rotate_secret(&secret("s3", "c1", "tsec_thr3", 200), 800, 200)
        .await
    {
        Err(StoreError::Conflict(m)) => assert!(m.contains("two active")),
        other => panic!("{other:?}"),
    }
    // After the grace, rotating again is fine and never extends an earlier expiry.
    s.rotate_secret(&secret("s3", "c1", "tsec_thr3", 800), 1000, 800)
        .await
        .unwrap();
    let all = s.list_secrets("c1").await.unwrap();
    assert_eq!(
        all.iter().find(|x| x.id == "s1").unwrap().expires_at,
        Some(700)
    );
    assert_eq!(
        all.iter().find(|x| x.id == "s2").unwrap().expires_at,
        Some(1000)
    );
    assert!(s.revoke_secret("c1", "s2", 900).await.unwrap());
    assert!(!s.revoke_secret("c1", "s2", 901).await.unwrap());
}

/// Records `n` failed attempts of (key, source) at `now`, each reserved then settled.
async fn fail(s: &dyn Store, key: &str, source: &str, n: u32, now: i64) {
    let p = ThrottlePolicy::default();
    for _ in 0..n {
        s.reserve_attempt(key, source, &p, now);
        s.settle_attempt(key, source, AttemptOutcome::Failed, &p, now)
            .await
            .unwrap();
    }
}

async fn throttle_records(dir: TestDb) {
    let s = store(&dir).await;
    org_with_client(s.as_ref()).await;
    let p = ThrottlePolicy::default();
    let t = now();
    fail(s.as_ref(), "c1", "10.0.0.1", 6, t).await;
    let st = p.after_failures(&ThrottleState::default(), 6, t);
    assert_eq!(st.blocked_until, Some(t + 1));
    assert_eq!(s.token_facts("c1", "10.0.0.1").await.unwrap().throttle, st);
    assert_eq!(
        s.token_facts("c1", "10.0.0.2").await.unwrap().throttle,
        ThrottleState::default()
    );
    // The database counted the same (a second store reads only the database).
    let other = store(&dir).await;
    other.sync(900).await.unwrap();
    assert_eq!(
        other.token_facts("c1", "10.0.0.1").await.unwrap().throttle,
        st
    );
    // A success clears the record, here and in the database.
    assert_eq!(s.reserve_attempt("c1", "10.0.0.1", &p, t + 2).judged, st);
    s.settle_attempt("c1", "10.0.0.1", AttemptOutcome::Succeeded, &p, t + 2)
        .await
        .unwrap();
    assert_eq!(
        s.token_facts("c1", "10.0.0.1").await.unwrap().throttle,
        ThrottleState::default()
    );
    let third = store(&dir).await;
    third.sync(900).await.unwrap();
    assert_eq!(
        third.token_facts("c1", "10.0.0.1").await.unwrap().throttle,
        ThrottleState::default()
    );
}

async fn failures_of_several_nodes_add_up_in_the_database(dir: TestDb) {
    let a = store(&dir).await;
    let b = store(&dir).await;
    org_with_client(a.as_ref()).await;
    let p = ThrottlePolicy::default();
    // Neither node knows of the other's failures: the database counts them all, and
    // each node learns the total from its own increment.
    let t = now();
    fail(a.as_ref(), "c1", "ip", 3, t).await;
    fail(b.as_ref(), "c1", "ip", 3, t).await;
    let total = p.after_failures(&ThrottleState::default(), 6, t);
    assert_eq!(b.token_facts("c1", "ip").await.unwrap().throttle, total);
    a.sync(900).await.unwrap();
    assert_eq!(a.token_facts("c1", "ip").await.unwrap().throttle, total);
    // After the window, the count starts over (in SQL as in the policy).
    fail(a.as_ref(), "c1", "ip", 1, t + p.window + 1).await;
    assert_eq!(
        a.token_facts("c1", "ip").await.unwrap().throttle.failures,
        1
    );
}

fn event(id: &str, org: Option<i64>, t: i64, outcome: &str, secret: Option<&str>) -> AuditEvent {
    AuditEvent {
        request_id: id.into(),
        time_ms: t,
        org_id: org,
        kind: AuditKind::Token,
        actor: None,
        client_id: Some("c1".into()),
        subject: Some("usr_1".into()),
        source_ip: Some("10.0.0.1".into()),
        outcome: outcome.into(),
        reason: (outcome == "denied").then(|| "client_secret_mismatch".into()),
        description: None,
        grant_type: Some("client_credentials".into()),
        scope: None,
        secret_id: secret.map(Into::into),
        secret_hint: None,
        trace: Trace::default(),
        change: None,
    }
}

/// Appends from a thread of its own, as the server's audit writer does (the appender
/// may block, which a runtime's thread must not).
fn append(appender: &mut Box<dyn AuditAppender>, events: &[AuditEvent]) -> StoreResult<()> {
    std::thread::scope(|s| s.spawn(|| appender.append(events)).join().unwrap())
}

async fn audit_batches_filters_and_last_use(dir: TestDb) {
    let s = store(&dir).await;
    let (org, _) = org_with_client(s.as_ref()).await;
    let mut appender = s.audit_appender().unwrap();
    let batch = vec![
        event("r1", Some(org), 1_000, "granted", Some("s1")),
        event("r2", Some(org), 2_000, "denied", None),
        event("r3", None, 3_000, "denied", None),
        event("r4", Some(org), 4_000, "granted", Some("s1")),
    ];
    append(&mut appender, &batch).unwrap();
    let got = s.get_audit_event(org, "r2").await.unwrap().unwrap();
    assert_eq!(got, batch[1]);
    // Events of no org are visible to no org.
    assert!(s.get_audit_event(org, "r3").await.unwrap().is_none());
    let f = |outcome: Option<&str>| AuditFilter {
        outcome: outcome.map(Into::into),
        limit: 10,
        ..Default::default()
    };
    let ids = |v: Vec<AuditEvent>| v.into_iter().map(|e| e.request_id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list_audit_events(org, &f(None)).await.unwrap()),
        vec!["r4", "r2", "r1"]
    );
    assert_eq!(
        ids(s.list_audit_events(org, &f(Some("granted"))).await.unwrap()),
        vec!["r4", "r1"]
    );
    let page = AuditFilter {
        before: Some("r4".into()),
        limit: 1,
        ..Default::default()
    };
    assert_eq!(
        ids(s.list_audit_events(org, &page).await.unwrap()),
        vec!["r2"]
    );
    let since = AuditFilter {
        since_ms: Some(1_500),
        until_ms: Some(4_000),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        ids(s.list_audit_events(org, &since).await.unwrap()),
        vec!["r2"]
    );
    // The newest use of each secret is recorded with the batch.
    let sec = &s.list_secrets("c1").await.unwrap()[0];
    assert_eq!(sec.last_used_at, Some(4));
    assert_eq!(sec.last_used_from.as_deref(), Some("10.0.0.1"));
    // A batch committed later with an older use (its events were queued earlier) never
    // moves the last use back.
    let mut late = event("r0", Some(org), 3_000, "granted", Some("s1"));
    late.source_ip = Some("10.0.0.9".into());
    append(&mut appender, &[late]).unwrap();
    let sec = &s.list_secrets("c1").await.unwrap()[0];
    assert_eq!(sec.last_used_at, Some(4));
    assert_eq!(sec.last_used_from.as_deref(), Some("10.0.0.1"));
    // A duplicate request id fails the whole batch: nothing half-written.
    let dup = vec![
        event("r5", Some(org), 5_000, "granted", None),
        event("r1", Some(org), 5_000, "granted", None),
    ];
    assert!(append(&mut appender, &dup).is_err());
    assert!(s.get_audit_event(org, "r5").await.unwrap().is_none());
}

#[tokio::test]
async fn large_audit_batches_are_atomic_and_flushed_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    let s = tessera_store::open(path.to_str().unwrap(), Durability::Full)
        .await
        .unwrap();
    let (org, _) = org_with_client(s.as_ref()).await;
    let mut appender = s.audit_appender().unwrap();
    // More than one INSERT statement's worth: written in one transaction.
    let mut batch: Vec<_> = (0..150)
        .map(|i| {
            event(
                &format!("b{i}"),
                Some(org),
                10_000 + i,
                "granted",
                Some("s1"),
            )
        })
        .collect();
    append(&mut appender, &batch).unwrap();
    let sec = &s.list_secrets("c1").await.unwrap()[0];
    assert_eq!(sec.last_used_at, Some(10));
    // A duplicate in the last statement undoes the earlier statements of its batch too.
    for (i, e) in batch.iter_mut().enumerate() {
        e.request_id = format!("c{i}");
    }
    batch[149].request_id = "b0".into();
    assert!(append(&mut appender, &batch).is_err());
    assert!(s.get_audit_event(org, "c0").await.unwrap().is_none());
    // Durable on disk: another store on the same file sees every event.
    let other = tessera_store::open(path.to_str().unwrap(), Durability::Full)
        .await
        .unwrap();
    assert!(other.get_audit_event(org, "b149").await.unwrap().is_some());
}

/// An in-memory database lives in the pool's one connection: its appender, called from
/// the writer's own thread as the server does, goes through the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn an_in_memory_store_appends_from_another_thread() {
    let s = tessera_store::open("sqlite::memory:", Durability::Full)
        .await
        .unwrap();
    let (org, _) = org_with_client(s.as_ref()).await;
    let mut appender = s.audit_appender().unwrap();
    std::thread::spawn(move || {
        appender
            .append(&[event("m1", Some(org), 1_000, "granted", Some("s1"))])
            .unwrap()
    })
    .join()
    .unwrap();
    assert!(s.get_audit_event(org, "m1").await.unwrap().is_some());
}

/// A rotation through one node is in the change feed: that node's key generation moves
/// at once, another's at its next sync (the server then reloads its keys).
async fn a_key_rotation_reaches_every_node(dir: TestDb) {
    let a = store(&dir).await;
    let b = store(&dir).await;
    let (ga, gb) = (a.keys_generation(), b.keys_generation());
    a.add_signing_key(
        &StoredKey {
            kid: "k1".into(),
            alg: "ES256".into(),
            sealed_private_key: vec![1, 2, 3],
            created_at: 10,
            retired_at: None,
            remove_after: None,
            purpose: "access".into(),
            certificate: None,
        },
        0,
    )
    .await
    .unwrap();
    assert_ne!(a.keys_generation(), ga, "at once on the node that rotated");
    if dir.polled_only() {
        assert_eq!(b.keys_generation(), gb, "not before the other node syncs");
    }
    b.sync(900).await.unwrap();
    assert_ne!(b.keys_generation(), gb, "after its sync");
    let g = b.keys_generation();
    b.sync(900).await.unwrap();
    assert_eq!(b.keys_generation(), g, "a change counts once");
}

async fn signing_key_rotation_retires_the_previous(dir: TestDb) {
    let s = store(&dir).await;
    let k = |kid: &str, at| StoredKey {
        kid: kid.into(),
        alg: "ES256".into(),
        sealed_private_key: vec![1, 2, 3],
        created_at: at,
        retired_at: None,
        remove_after: None,
        purpose: "access".into(),
        certificate: None,
    };
    s.add_signing_key(&k("k1", 10), 0).await.unwrap();
    s.add_signing_key(&k("k2", 20), 500).await.unwrap();
    let keys = s.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(
        (keys[0].retired_at, keys[0].remove_after),
        (Some(20), Some(500))
    );
    assert_eq!(keys[1].retired_at, None);
    // A key of another purpose neither retires nor is retired by the access keys.
    let mut id = k("id1", 30);
    id.purpose = "id_token".into();
    s.add_signing_key(&id, 900).await.unwrap();
    s.add_signing_key(&k("k3", 40), 900).await.unwrap();
    let keys = s.signing_keys().await.unwrap();
    let current: Vec<&str> = keys
        .iter()
        .filter(|k| k.retired_at.is_none())
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(current, ["id1", "k3"]);
    // A SAML encryption key keeps its certificate.
    let mut enc = k("e1", 50);
    enc.purpose = "saml_encryption".into();
    enc.certificate = Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into());
    s.add_signing_key(&enc, 900).await.unwrap();
    let keys = s.signing_keys().await.unwrap();
    let e1 = keys.iter().find(|k| k.kid == "e1").unwrap();
    assert_eq!(e1.certificate, enc.certificate);
    assert_eq!(e1.retired_at, None);
    assert!(
        keys.iter()
            .filter(|k| k.kid != "e1")
            .all(|k| k.certificate.is_none())
    );
}

async fn delete_client_removes_secrets_and_throttle(dir: TestDb) {
    let s = store(&dir).await;
    let (org, _) = org_with_client(s.as_ref()).await;
    fail(s.as_ref(), "c1", "1.2.3.4", 1, 1).await;
    assert_eq!(
        s.token_facts("c1", "1.2.3.4")
            .await
            .unwrap()
            .throttle
            .failures,
        1
    );
    assert!(s.delete_client(org, "c1").await.unwrap());
    assert!(s.list_secrets("c1").await.unwrap().is_empty());
    assert_eq!(
        s.token_facts("c1", "1.2.3.4").await.unwrap().throttle,
        ThrottleState::default()
    );
    assert!(!s.delete_client(org, "c1").await.unwrap());
}

async fn caches_follow_changes_on_this_node_at_once_and_on_others_after_sync(dir: TestDb) {
    let a = store(&dir).await;
    let b = store(&dir).await;
    let (_, mut c) = org_with_client(a.as_ref()).await;
    assert!(
        a.token_facts("c1", "ip")
            .await
            .unwrap()
            .client
            .unwrap()
            .client
            .enabled
    );
    assert!(
        b.token_facts("c1", "ip")
            .await
            .unwrap()
            .client
            .unwrap()
            .client
            .enabled
    );
    // A change through node A: A sees it at once.
    c.enabled = false;
    a.update_client(&c).await.unwrap();
    assert!(
        !a.token_facts("c1", "ip")
            .await
            .unwrap()
            .client
            .unwrap()
            .client
            .enabled
    );
    // Node B sees it after its next sync (the server runs one every second).
    b.sync(900).await.unwrap();
    assert!(
        !b.token_facts("c1", "ip")
            .await
            .unwrap()
            .client
            .unwrap()
            .client
            .enabled
    );
    // Throttle records written by A reach B's mirror through sync too.
    let t = now();
    fail(a.as_ref(), "c1", "10.0.0.1", 7, t).await;
    let st = ThrottlePolicy::default().after_failures(&ThrottleState::default(), 7, t);
    assert_eq!(
        b.token_facts("c1", "10.0.0.1").await.unwrap().throttle,
        ThrottleState::default()
    );
    b.sync(900).await.unwrap();
    assert_eq!(b.token_facts("c1", "10.0.0.1").await.unwrap().throttle, st);
}

async fn clients_of_one_org_share_its_cached_facts_and_see_its_changes(dir: TestDb) {
    let a = store(&dir).await;
    let b = store(&dir).await;
    let (org, c1) = org_with_client(a.as_ref()).await;
    let c2 = Client {
        client_id: ClientId::parse("c2").unwrap(),
        name: "two".into(),
        service_account_id: None,
        ..c1.clone()
    };
    a.create_client(&c2, Some(&secret("s2", "c2", "tsec_two2", 10)))
        .await
        .unwrap();
    let facts = |s: &Arc<dyn Store>, id: &'static str| {
        let s = s.clone();
        async move { s.token_facts(id, "ip").await.unwrap().client.unwrap() }
    };
    let (f1, f2) = (facts(&b, "c1").await, facts(&b, "c2").await);
    // One org and one catalogue in memory for both clients.
    assert!(Arc::ptr_eq(&f1.org, &f2.org));
    assert!(Arc::ptr_eq(&f1.known_scopes, &f2.known_scopes));
    // A new scope is seen by every client of the org: at once on the node that wrote
    // it, after a sync on the others.
    a.create_scope(&Scope {
        org_id: org,
        name: ScopeName::parse("b").unwrap(),
        description: "".into(),
    })
    .await
    .unwrap();
    let names = |f: &Arc<ClientFacts>| {
        f.known_scopes
            .iter()
            .map(|n| n.as_str().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&facts(&a, "c2").await), ["a", "b"]);
    if dir.polled_only() {
        assert_eq!(names(&facts(&b, "c2").await), ["a"]);
    }
    b.sync(900).await.unwrap();
    assert_eq!(names(&facts(&b, "c1").await), ["a", "b"]);
    assert_eq!(names(&facts(&b, "c2").await), ["a", "b"]);
}

/// The change feed names what changed: a change to one client leaves the other
/// clients' cached facts in place on every node; a service account's change reaches the
/// facts of the clients that run as it.
async fn a_change_forgets_only_what_it_changed(dir: TestDb) {
    let a = store(&dir).await;
    let b = store(&dir).await;
    let (org, mut c1) = org_with_client(a.as_ref()).await;
    let mut bot = human(org, "bot");
    bot.id = "usr_bot".into();
    bot.user_type = UserType::Service;
    bot.password_hash = None;
    a.create_user(&bot).await.unwrap();
    let c2 = Client {
        client_id: ClientId::parse("c2").unwrap(),
        name: "two".into(),
        service_account_id: Some("usr_bot".into()),
        ..c1.clone()
    };
    a.create_client(&c2, Some(&secret("s2", "c2", "tsec_two2", 10)))
        .await
        .unwrap();
    let facts = |s: &Arc<dyn Store>, id: &'static str| {
        let s = s.clone();
        async move { s.token_facts(id, "ip").await.unwrap().client.unwrap() }
    };
    b.sync(900).await.unwrap();
    facts(&b, "c1").await;
    let b2 = facts(&b, "c2").await;
    c1.name = "renamed".into();
    a.update_client(&c1).await.unwrap();
    b.sync(900).await.unwrap();
    assert_eq!(facts(&b, "c1").await.client.name, "renamed");
    assert!(
        Arc::ptr_eq(&b2, &facts(&b, "c2").await),
        "c2's facts stay cached"
    );
    // The service account of c2 is disabled through A: B reloads c2, not c1.
    let b1 = facts(&b, "c1").await;
    bot.state = UserState::Disabled;
    a.update_user(
        &bot,
        UserFields {
            state: true,
            ..UserFields::default()
        },
        now(),
    )
    .await
    .unwrap();
    b.sync(900).await.unwrap();
    let reloaded = facts(&b, "c2").await;
    assert_eq!(
        reloaded.service_account.as_ref().unwrap().state,
        UserState::Disabled
    );
    assert!(
        Arc::ptr_eq(&b1, &facts(&b, "c1").await),
        "c1's facts stay cached"
    );
    drop(b1);
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn password_attempts_count_and_reset(dir: TestDb) {
    use tessera_core::decision::LoginUpdate;
    let s = store(&dir).await;
    let (org, c) = org_with_client(s.as_ref()).await;
    let mut human = s.get_user(org, "usr_1").await.unwrap().unwrap();
    human.id = "usr_h".into();
    human.user_type = UserType::Human;
    human.username = "alice".into();
    s.create_user(&human).await.unwrap();
    let failed = LoginUpdate::Failed {
        user_id: "usr_h".into(),
    };
    // Concurrent failures are all counted (the count is an SQL increment).
    let (a, b, d) = tokio::join!(
        s.record_login(&failed, None, 100),
        s.record_login(&failed, None, 100),
        s.record_login(&failed, None, 100)
    );
    a.unwrap();
    b.unwrap();
    d.unwrap();
    let u = s.user_by_username(org, "alice").await.unwrap().unwrap();
    assert_eq!(u.failed_logins, 3);
    assert_eq!(u.state, UserState::Active);
    // Failures never lock: throttling slows guessing down (crate::throttle).
    // Success resets the count and records the client's password grant.
    s.record_login(
        &LoginUpdate::Succeeded {
            user_id: "usr_h".into(),
        },
        Some(c.client_id.as_str()),
        2000,
    )
    .await
    .unwrap();
    let u = s.user_by_username(org, "alice").await.unwrap().unwrap();
    assert_eq!(u.failed_logins, 0);
    assert_eq!(u.last_password_login_at, Some(2000));
    assert_eq!(
        s.password_grant_uses(org).await.unwrap(),
        vec![("c1".to_string(), 2000)]
    );
    assert_eq!(s.user_by_username(org, "nobody").await.unwrap(), None);
}

async fn sso_configuration_and_enforcement(dir: TestDb) {
    use tessera_core::sso::SsoConfig;
    let s = store(&dir).await;
    let (org, _) = org_with_client(s.as_ref()).await;
    // Every org is listed (a background job's round over them).
    let listed: Vec<i64> = s.list_orgs().await.unwrap().iter().map(|o| o.id).collect();
    assert_eq!(listed, [org]);
    assert_eq!(s.sso_config(org).await.unwrap(), None);
    let cfg = SsoConfig {
        idp_entity_id: Some("https://idp.example".into()),
        break_glass_user_ids: vec!["usr_1".into()],
        ..SsoConfig::default()
    };
    s.put_sso_config(org, &cfg, 5).await.unwrap();
    assert_eq!(s.sso_config(org).await.unwrap(), Some(cfg.clone()));
    // A replacement holds only over the configuration it was made from.
    let refreshed = SsoConfig {
        idp_sso_url: Some("https://idp.example/sso".into()),
        ..cfg.clone()
    };
    let by_admin = SsoConfig {
        jit_provisioning: true,
        ..cfg.clone()
    };
    s.put_sso_config(org, &by_admin, 6).await.unwrap();
    assert!(
        !s.replace_sso_config(org, &cfg, &refreshed, 7)
            .await
            .unwrap(),
        "an admin changed it meanwhile"
    );
    assert_eq!(s.sso_config(org).await.unwrap(), Some(by_admin.clone()));
    assert!(
        s.replace_sso_config(org, &by_admin, &refreshed, 8)
            .await
            .unwrap()
    );
    assert_eq!(s.sso_config(org).await.unwrap(), Some(refreshed));
    // Enforcement is part of the org the token path caches: the change shows at once.
    let before = s.token_facts("c1", "10.0.0.1").await.unwrap();
    assert!(!before.client.unwrap().org.sso_enforced);
    s.set_sso_enforced(org, true).await.unwrap();
    let after = s.token_facts("c1", "10.0.0.1").await.unwrap();
    assert!(after.client.unwrap().org.sso_enforced);
    assert!(matches!(
        s.set_sso_enforced(999, true).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn saml_pending_is_single_use_replays_are_caught_and_sessions_round_trip(dir: TestDb) {
    use tessera_core::session::Session;
    use tessera_core::sso::SamlPending;
    let s = store(&dir).await;
    let (org, _) = org_with_client(s.as_ref()).await;
    let p = SamlPending {
        handle: "h1".into(),
        org_id: org,
        request_id: "_req1".into(),
        return_to: "/app".into(),
        expires_at: 1000,
    };
    assert!(s.put_saml_pending(&p, "10.0.0.1", 2, 3).await.unwrap());
    // Bounded per source and per org, counted in the database.
    let more = |h: &str| SamlPending {
        handle: h.into(),
        ..p.clone()
    };
    assert!(
        s.put_saml_pending(&more("a2"), "10.0.0.1", 2, 3)
            .await
            .unwrap()
    );
    assert!(
        !s.put_saml_pending(&more("a3"), "10.0.0.1", 2, 3)
            .await
            .unwrap(),
        "per source"
    );
    assert!(
        s.put_saml_pending(&more("b1"), "10.0.0.2", 2, 3)
            .await
            .unwrap()
    );
    assert!(
        !s.put_saml_pending(&more("c1"), "10.0.0.3", 2, 3)
            .await
            .unwrap(),
        "in total"
    );
    assert_eq!(
        s.take_saml_pending("a3", 500).await.unwrap(),
        None,
        "nothing stored"
    );
    assert!(s.take_saml_pending("a2", 500).await.unwrap().is_some());
    assert!(s.take_saml_pending("b1", 500).await.unwrap().is_some());
    assert_eq!(
        s.take_saml_pending("h1", 500).await.unwrap(),
        Some(p.clone())
    );
    assert_eq!(
        s.take_saml_pending("h1", 500).await.unwrap(),
        None,
        "used once"
    );
    assert!(
        s.put_saml_pending(
            &SamlPending {
                handle: "h2".into(),
                ..p
            },
            "10.0.0.1",
            2,
            3
        )
        .await
        .unwrap()
    );
    assert_eq!(
        s.take_saml_pending("h2", 1000).await.unwrap(),
        None,
        "expired"
    );

    let keys = vec![
        ("assertion_id:_a1".to_string(), 2000),
        ("response_id:_r1".to_string(), 2000),
    ];
    assert!(s.remember_saml_ids(org, &keys, 100).await.unwrap());
    assert!(
        !s.remember_saml_ids(org, &keys[1..], 100).await.unwrap(),
        "a replay"
    );
    // Another store on the same file (another node) sees the same cache.
    let other = store(&dir).await;
    assert!(!other.remember_saml_ids(org, &keys[..1], 100).await.unwrap());

    let sess = Session {
        id_hash: vec![1, 2, 3],
        org_id: org,
        user_id: "usr_1".into(),
        method: "saml".into(),
        created_at: 10,
        last_seen_at: 10,
    };
    s.create_session(&sess).await.unwrap();
    s.touch_session(&[1, 2, 3], 20).await.unwrap();
    assert_eq!(
        s.session(&[1, 2, 3]).await.unwrap().unwrap().last_seen_at,
        20
    );
    s.delete_session(&[1, 2, 3]).await.unwrap();
    assert_eq!(s.session(&[1, 2, 3]).await.unwrap(), None);

    // Pruning removes sessions idle or too old, and only those.
    for (id, created, seen) in [(4u8, 10, 50), (5, 10, 100), (6, 100, 100)] {
        let mut x = sess.clone();
        x.id_hash = vec![id];
        (x.created_at, x.last_seen_at) = (created, seen);
        s.create_session(&x).await.unwrap();
    }
    // Idle since 50 or earlier (none created at 5 or earlier)...
    assert_eq!(s.prune_sessions(50, 5).await.unwrap(), 1);
    assert!(s.session(&[4]).await.unwrap().is_none(), "idle");
    // ...and created too long ago, however busy.
    assert_eq!(s.prune_sessions(0, 10).await.unwrap(), 1);
    assert!(s.session(&[5]).await.unwrap().is_none(), "too old");
    assert!(s.session(&[6]).await.unwrap().is_some(), "live");

    // The IdP's logout ends that person's SAML sessions in that org, and only those.
    s.create_user(&human(org, "2")).await.unwrap();
    let other_org = s
        .create_org(&tessera_core::model::OrgSlug::parse("beta").unwrap(), 10)
        .await
        .unwrap()
        .id;
    let mut beta_user = human(other_org, "1");
    beta_user.id = "usr_beta_1".into();
    s.create_user(&beta_user).await.unwrap();
    for (id, user, method, in_org) in [
        (10u8, "usr_1", "saml", org),
        (11, "usr_1", "password", org),
        (12, "usr_2", "saml", org),
        (13, "usr_beta_1", "saml", other_org),
    ] {
        let mut x = sess.clone();
        x.id_hash = vec![id];
        x.user_id = user.into();
        x.method = method.into();
        x.org_id = in_org;
        s.create_session(&x).await.unwrap();
    }
    let ended = s.end_saml_sessions(org, "usr_1").await.unwrap();
    let ended: Vec<Vec<u8>> = ended.into_iter().map(|x| x.id_hash).collect();
    assert!(
        ended.contains(&vec![10]) && ended.contains(&vec![6]),
        "{ended:?}"
    );
    assert_eq!(ended.len(), 2, "{ended:?}");
    for (id, live) in [(10u8, false), (11, true), (12, true), (13, true)] {
        assert_eq!(
            s.session(&[id]).await.unwrap().is_some(),
            live,
            "session {id}"
        );
    }
}

async fn a_scim_link_is_a_humans_unique_external_id(dir: TestDb) {
    use tessera_core::model::ScimLink;
    let s = store(&dir).await;
    let (org, _) = org_with_client(s.as_ref()).await;
    let link = |ext: &str| ScimLink {
        external_id: Some(ext.into()),
        provisioned_by: "cli_okta".into(),
        provisioned_at: 50,
        deleted_at: None,
    };
    // Created with a link, it round-trips.
    let mut alice = human(org, "alice");
    alice.scim = Some(link("00u1"));
    s.create_user(&alice).await.unwrap();
    assert_eq!(s.get_user(org, "usr_alice").await.unwrap().unwrap(), alice);
    assert_eq!(
        s.user_by_scim_external_id(org, "00u1")
            .await
            .unwrap()
            .map(|u| u.id),
        Some("usr_alice".to_string())
    );
    // Linked later; an externalId is one person's only.
    s.create_user(&human(org, "bob")).await.unwrap();
    s.set_scim_link(org, "usr_bob", Some(&link("00u2")))
        .await
        .unwrap();
    assert!(matches!(
        s.set_scim_link(org, "usr_bob", Some(&link("00u1"))).await,
        Err(StoreError::Conflict(_))
    ));
    // Deleted by SCIM: the link stays, marked.
    let deleted = ScimLink {
        deleted_at: Some(60),
        ..link("00u2")
    };
    s.set_scim_link(org, "usr_bob", Some(&deleted))
        .await
        .unwrap();
    assert_eq!(
        s.get_user(org, "usr_bob").await.unwrap().unwrap().scim,
        Some(deleted)
    );
    // Unlinked.
    s.set_scim_link(org, "usr_bob", None).await.unwrap();
    assert_eq!(s.user_by_scim_external_id(org, "00u2").await.unwrap(), None);
    // Never a service account.
    assert!(matches!(
        s.set_scim_link(org, "usr_1", Some(&link("00u3"))).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn scim_groups_hold_only_humans_and_tokens_are_found_by_hash(dir: TestDb) {
    use tessera_core::model::{ScimGroup, ScimGroupChange, ScimToken};
    let s = store(&dir).await;
    let (org, client) = org_with_client(s.as_ref()).await;
    for n in ["alice", "bob", "carol"] {
        s.create_user(&human(org, n)).await.unwrap();
    }
    let group = ScimGroup {
        id: "grp_1".into(),
        org_id: org,
        display_name: "Engineering".into(),
        external_id: Some("00g1".into()),
        // The service account and a user of no org are left out, whatever is asked.
        members: vec!["usr_alice".into(), "usr_1".into(), "usr_nobody".into()],
        created_at: 20,
        updated_at: 20,
    };
    s.create_scim_group(&group).await.unwrap();
    let got = s.scim_group(org, "grp_1").await.unwrap().unwrap();
    assert_eq!(got.members, vec!["usr_alice".to_string()]);
    assert_eq!(got.display_name, "Engineering");
    assert!(matches!(
        s.create_scim_group(&ScimGroup {
            id: "grp_2".into(),
            ..group.clone()
        })
        .await,
        Err(StoreError::Conflict(_))
    ));
    // Changes add up: each add and remove is applied to the stored members.
    let add = |u: &str| ScimGroupChange {
        add_members: vec![u.into()],
        ..ScimGroupChange::default()
    };
    assert!(
        s.change_scim_group(org, "grp_1", &add("usr_bob"), 30)
            .await
            .unwrap()
    );
    assert!(
        s.change_scim_group(org, "grp_1", &add("usr_1"), 30)
            .await
            .unwrap()
    );
    let remove = ScimGroupChange {
        remove_members: vec!["usr_alice".into()],
        display_name: Some("Eng".into()),
        external_id: Some(None),
        ..ScimGroupChange::default()
    };
    assert!(
        s.change_scim_group(org, "grp_1", &remove, 31)
            .await
            .unwrap()
    );
    let got = s.scim_group(org, "grp_1").await.unwrap().unwrap();
    assert_eq!(
        (
            got.members.clone(),
            got.display_name.as_str(),
            got.external_id.clone(),
            got.updated_at
        ),
        (vec!["usr_bob".to_string()], "Eng", None, 31)
    );
    let replace = ScimGroupChange {
        replace_members: Some(vec!["usr_carol".into(), "usr_alice".into()]),
        ..ScimGroupChange::default()
    };
    assert!(
        s.change_scim_group(org, "grp_1", &replace, 32)
            .await
            .unwrap()
    );
    assert_eq!(
        s.scim_group(org, "grp_1").await.unwrap().unwrap().members,
        vec!["usr_alice".to_string(), "usr_carol".to_string()]
    );
    let groups = s.scim_groups_of(org, "usr_carol").await.unwrap();
    assert_eq!(
        groups.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
        vec!["grp_1"]
    );
    assert!(s.scim_groups_of(org, "usr_bob").await.unwrap().is_empty());
    assert!(
        !s.change_scim_group(org, "grp_9", &add("usr_bob"), 33)
            .await
            .unwrap()
    );
    assert_eq!(s.list_scim_groups(org).await.unwrap().len(), 1);
    // Another org sees none of it.
    assert!(s.scim_group(org + 1, "grp_1").await.unwrap().is_none());
    assert!(s.delete_scim_group(org, "grp_1").await.unwrap());
    assert!(!s.delete_scim_group(org, "grp_1").await.unwrap());
    assert!(s.scim_groups_of(org, "usr_carol").await.unwrap().is_empty());

    // Tokens: found by hash, revoked once, gone with their client.
    let token = ScimToken {
        id: "sct_1".into(),
        org_id: org,
        client_id: client.client_id.as_str().to_string(),
        hash: vec![7; 32],
        hint: "abcd".into(),
        description: Some("Okta".into()),
        created_at: 40,
        expires_at: 1_000,
        revoked_at: None,
        last_used_at: None,
    };
    s.create_scim_token(&token).await.unwrap();
    assert_eq!(
        s.scim_token_by_hash(&[7; 32]).await.unwrap(),
        Some(token.clone())
    );
    assert_eq!(s.scim_token_by_hash(&[8; 32]).await.unwrap(), None);
    s.touch_scim_token("sct_1", 45).await.unwrap();
    assert!(s.revoke_scim_token(org, "sct_1", 50).await.unwrap());
    assert!(s.revoke_scim_token(org, "sct_1", 60).await.unwrap());
    assert!(!s.revoke_scim_token(org + 1, "sct_1", 60).await.unwrap());
    let listed = s.list_scim_tokens(org).await.unwrap();
    assert_eq!(
        (listed.len(), listed[0].revoked_at, listed[0].last_used_at),
        (1, Some(50), Some(45))
    );
    assert!(
        s.delete_client(org, client.client_id.as_str())
            .await
            .unwrap()
    );
    assert!(s.list_scim_tokens(org).await.unwrap().is_empty());
}

async fn the_first_saml_sp_key_stored_wins(dir: TestDb) {
    let s = store(&dir).await;
    assert!(s.saml_sp_key().await.unwrap().is_none());
    let first = s.init_saml_sp_key(b"sealed-1", "cert-1", 10).await.unwrap();
    assert_eq!(first, (b"sealed-1".to_vec(), "cert-1".to_string()));
    // Another node that made its own key meanwhile gets the stored one back.
    let second = s.init_saml_sp_key(b"sealed-2", "cert-2", 11).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(s.saml_sp_key().await.unwrap(), Some(first));
}

async fn a_saml_login_is_one_transaction_that_writes_only_what_the_idp_manages(dir: TestDb) {
    use tessera_core::session::Session;
    use tessera_core::store::{SamlLogin, SamlLoginWritten, UserWrite};
    let s = store(&dir).await;
    let (org, _) = org_with_client(s.as_ref()).await;
    // An admin disabled alice, and she has a password and a lock-out history.
    let alice = User {
        email: Some("old@example.com".into()),
        state: UserState::Disabled,
        state_changed_at: Some(20),
        locked_until: Some(99),
        failed_logins: 3,
        ..human(org, "alice")
    };
    s.create_user(&alice).await.unwrap();
    // A login that read her before the change writes back its stale copy.
    let from_idp = User {
        email: Some("alice@example.com".into()),
        display_name: Some("Alice".into()),
        roles: vec!["developer".into()],
        saml_name_id: Some("nid-alice".into()),
        state: UserState::Active,
        state_changed_at: None,
        locked_until: None,
        password_hash: None,
        failed_logins: 0,
        ..alice.clone()
    };
    let session = |id: &[u8]| Session {
        id_hash: id.to_vec(),
        org_id: org,
        user_id: "usr_alice".into(),
        method: "saml".into(),
        created_at: 30,
        last_seen_at: 30,
    };
    s.create_session(&session(b"old")).await.unwrap();
    let keys = [("r1".to_string(), 100), ("a1".to_string(), 100)];
    let new_session = session(b"new");
    let login = SamlLogin {
        replay_keys: &keys,
        user: &from_idp,
        user_write: UserWrite::FromIdp,
        planned_from: None,
        old_session: Some(b"old"),
        session: Some(&new_session),
        now: 30,
    };
    assert_eq!(
        s.finish_saml_login(&login).await.unwrap(),
        SamlLoginWritten::Done
    );
    assert!(s.session(b"old").await.unwrap().is_none());
    assert!(s.session(b"new").await.unwrap().is_some());
    let got = s.get_user(org, "usr_alice").await.unwrap().unwrap();
    assert_eq!(got.email.as_deref(), Some("alice@example.com"));
    assert_eq!(got.display_name.as_deref(), Some("Alice"));
    assert_eq!(got.roles, vec!["developer".to_string()]);
    assert_eq!(got.saml_name_id.as_deref(), Some("nid-alice"));
    // What the admin and the password checks own is untouched.
    assert_eq!(got.state, UserState::Disabled);
    assert_eq!(got.state_changed_at, Some(20));
    assert_eq!(got.locked_until, Some(99));
    assert_eq!(got.password_hash.as_deref(), Some("$argon2id$stand-in"));
    assert_eq!(got.failed_logins, 3);
    // Service accounts are never managed by an IdP.
    let svc = s.get_user(org, "usr_1").await.unwrap().unwrap();
    let fresh_keys = [("r9".to_string(), 100)];
    let as_svc = SamlLogin {
        user: &svc,
        replay_keys: &fresh_keys,
        ..login
    };
    assert!(matches!(
        s.finish_saml_login(&as_svc).await,
        Err(StoreError::Conflict(_))
    ));
    // A replay writes nothing: neither the user nor a session.
    let other_session = session(b"replayed");
    let replayed_user = User {
        roles: vec!["admin".into()],
        ..from_idp.clone()
    };
    let replay = SamlLogin {
        replay_keys: &keys[1..],
        user: &replayed_user,
        session: Some(&other_session),
        old_session: None,
        ..login
    };
    assert_eq!(
        s.finish_saml_login(&replay).await.unwrap(),
        SamlLoginWritten::Replayed
    );
    assert!(s.session(b"replayed").await.unwrap().is_none());
    let got = s.get_user(org, "usr_alice").await.unwrap().unwrap();
    assert_eq!(got.roles, vec!["developer".to_string()]);
    // A login planned from a copy of the user that is no longer stored (an admin or
    // another login changed her since) writes nothing, and its identifiers stay unused.
    let stale_keys = [("r3".to_string(), 100)];
    let stale = SamlLogin {
        replay_keys: &stale_keys,
        user: &replayed_user,
        planned_from: Some(&alice),
        session: Some(&other_session),
        old_session: None,
        ..login
    };
    assert_eq!(
        s.finish_saml_login(&stale).await.unwrap(),
        SamlLoginWritten::Stale
    );
    assert!(s.session(b"replayed").await.unwrap().is_none());
    assert!(s.remember_saml_ids(org, &stale_keys, 30).await.unwrap());
    let current = SamlLogin {
        replay_keys: &[],
        planned_from: Some(&got),
        ..stale
    };
    assert_eq!(
        s.finish_saml_login(&current).await.unwrap(),
        SamlLoginWritten::Done
    );
    assert!(s.session(b"replayed").await.unwrap().is_some());
    // A user to create that clashes writes nothing either: its identifiers stay unused.
    let clash = User {
        id: "usr_bob".into(),
        saml_name_id: Some("nid-bob".into()),
        ..from_idp.clone()
    };
    let bob_keys = [("r2".to_string(), 100)];
    let create = SamlLogin {
        replay_keys: &bob_keys,
        user: &clash,
        user_write: UserWrite::Create,
        planned_from: None,
        session: Some(&session(b"clash")),
        old_session: None,
        now: 30,
    };
    assert!(matches!(
        s.finish_saml_login(&create).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.session(b"clash").await.unwrap().is_none());
    assert!(s.remember_saml_ids(org, &bob_keys, 30).await.unwrap());
}

/// The audit thread and the store's writers take turns at the write gate: interleaved,
/// every write lands and none waits forever.
async fn audit_thread_and_pool_writers_take_turns(dir: TestDb) {
    let s = store(&dir).await;
    let (org, client) = org_with_client(s.as_ref()).await;
    let mut appender = s.audit_appender().unwrap();
    let audit = std::thread::spawn(move || {
        for i in 0..50 {
            let batch: Vec<_> = (0..4)
                .map(|j| event(&format!("g{i}-{j}"), Some(org), 1_000 + i, "granted", None))
                .collect();
            appender.append(&batch).unwrap();
        }
    });
    let writes = (0..40).map(|i| {
        let s = s.clone();
        let mut c = client.clone();
        tokio::spawn(async move {
            c.name = format!("renamed {i}");
            s.update_client(&c).await.unwrap();
            let ip = format!("10.0.0.{i}");
            let p = ThrottlePolicy::default();
            s.reserve_attempt("c1", &ip, &p, 5);
            s.settle_attempt("c1", &ip, AttemptOutcome::Failed, &p, 5)
                .await
                .unwrap();
            let key = [(format!("k{i}"), 100)];
            assert!(s.remember_saml_ids(org, &key, 5).await.unwrap());
            assert!(!s.remember_saml_ids(org, &key, 5).await.unwrap());
        })
    });
    let all = async {
        for w in writes.collect::<Vec<_>>() {
            w.await.unwrap();
        }
    };
    // A deadlock guard, not a timing: the writes take milliseconds.
    tokio::time::timeout(std::time::Duration::from_secs(120), all)
        .await
        .expect("the pool's writers were stuck at the write gate");
    tokio::task::spawn_blocking(move || audit.join().unwrap())
        .await
        .unwrap();
    assert!(s.get_audit_event(org, "g49-3").await.unwrap().is_some());
}

/// An admin's edit, written from a copy read before a first SSO login, a failed password
/// login and another edit, undoes none of them: only the fields asked for are written.
async fn an_admin_edit_writes_only_what_an_admin_manages(dir: TestDb) {
    use tessera_core::decision::LoginUpdate;
    use tessera_core::session::Session;
    use tessera_core::store::{SamlLogin, SamlLoginWritten, UserFields, UserWrite};
    let s = store(&dir).await;
    let (org, _) = org_with_client(s.as_ref()).await;
    let bob = human(org, "bob");
    s.create_user(&bob).await.unwrap();
    let stale = s.get_user(org, "usr_bob").await.unwrap().unwrap();
    // Meanwhile: a first SSO login links him, a password login fails.
    let linked = User {
        saml_name_id: Some("nid-bob".into()),
        ..stale.clone()
    };
    let session = Session {
        id_hash: b"s".to_vec(),
        org_id: org,
        user_id: "usr_bob".into(),
        method: "saml".into(),
        created_at: 20,
        last_seen_at: 20,
    };
    let login = SamlLogin {
        replay_keys: &[],
        user: &linked,
        user_write: UserWrite::FromIdp,
        planned_from: Some(&stale),
        old_session: None,
        session: Some(&session),
        now: 20,
    };
    assert_eq!(
        s.finish_saml_login(&login).await.unwrap(),
        SamlLoginWritten::Done
    );
    let failed = LoginUpdate::Failed {
        user_id: "usr_bob".into(),
    };
    s.record_login(&failed, None, 20).await.unwrap();
    // The admin renames him from the stale copy, state untouched.
    let edit = User {
        display_name: Some("Bob".into()),
        roles: vec!["developer".into()],
        ..stale.clone()
    };
    let profile = UserFields {
        display_name: true,
        roles: true,
        ..UserFields::default()
    };
    s.update_user(&edit, profile, 20).await.unwrap();
    let got = s.get_user(org, "usr_bob").await.unwrap().unwrap();
    assert_eq!(got.display_name.as_deref(), Some("Bob"));
    assert_eq!(got.roles, vec!["developer".to_string()]);
    assert_eq!(got.saml_name_id.as_deref(), Some("nid-bob"));
    assert_eq!(got.failed_logins, 1);
    // A rename is written only when asked, and never onto another user's name.
    let renamed = User {
        username: "robert".into(),
        ..edit.clone()
    };
    s.update_user(&renamed, profile, 21).await.unwrap();
    assert_eq!(
        s.get_user(org, "usr_bob").await.unwrap().unwrap().username,
        "bob"
    );
    let rename = UserFields {
        username: true,
        ..UserFields::default()
    };
    s.update_user(&renamed, rename, 21).await.unwrap();
    assert_eq!(
        s.get_user(org, "usr_bob").await.unwrap().unwrap().username,
        "robert"
    );
    s.create_user(&human(org, "carol")).await.unwrap();
    let clash = User {
        username: "carol".into(),
        ..edit.clone()
    };
    assert!(matches!(
        s.update_user(&clash, rename, 22).await,
        Err(StoreError::Conflict(_))
    ));
    s.update_user(&edit, rename, 22).await.unwrap();
    // Disabling keeps the counter; enabling again restarts it.
    let disable = User {
        state: UserState::Disabled,
        state_changed_at: Some(30),
        ..stale.clone()
    };
    let state = UserFields {
        state: true,
        ..UserFields::default()
    };
    s.update_user(&disable, state, 30).await.unwrap();
    let got = s.get_user(org, "usr_bob").await.unwrap().unwrap();
    assert_eq!((got.state, got.failed_logins), (UserState::Disabled, 1));
    // A state change from the stale copy leaves the renamed profile alone.
    assert_eq!(got.display_name.as_deref(), Some("Bob"));
    assert_eq!(got.roles, vec!["developer".to_string()]);
    s.update_user(&edit, state, 30).await.unwrap();
    let got = s.get_user(org, "usr_bob").await.unwrap().unwrap();
    assert_eq!((got.state, got.failed_logins), (UserState::Active, 0));
    assert_eq!(got.password_hash.as_deref(), Some("$argon2id$stand-in"));
    assert_eq!(got.saml_name_id.as_deref(), Some("nid-bob"));
    // An unlock from a copy read before a lock landed still unlocks: whether the
    // state changes is decided against the stored row, not the caller's copy.
    let lock = User {
        state: UserState::Locked,
        locked_until: Some(1_000),
        state_changed_at: Some(40),
        ..stale.clone()
    };
    s.update_user(&lock, state, 40).await.unwrap();
    let got = s.get_user(org, "usr_bob").await.unwrap().unwrap();
    assert_eq!(got.effective_state(41), UserState::Locked);
    assert_eq!(edit.effective_state(41), UserState::Active);
    s.update_user(&edit, state, 41).await.unwrap();
    let got = s.get_user(org, "usr_bob").await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.locked_until, got.failed_logins),
        (UserState::Active, None, 0)
    );
    // Asking for the state the user is already in writes nothing: who changed it and
    // when stay as they were.
    s.update_user(&disable, state, 50).await.unwrap();
    let again = User {
        state_changed_at: Some(60),
        ..disable.clone()
    };
    s.update_user(&again, state, 60).await.unwrap();
    let got = s.get_user(org, "usr_bob").await.unwrap().unwrap();
    assert_eq!(
        (got.state, got.state_changed_at),
        (UserState::Disabled, Some(30))
    );
}

/// The interactive login's records: a code is exchanged once (the compare-and-set says
/// who was first), a refresh token rotates once, revocations end families, assertion ids
/// are single-use, and a person's revocation also ends their sessions.
async fn codes_grants_and_refresh_tokens(dir: TestDb) {
    use tessera_core::interactive::{AuthCode, LoginGrant, RefreshToken};
    use tessera_core::session::Session;
    use tessera_core::store::Rotation;
    let s = store(&dir).await;
    let (org, _) = org_with_client(s.as_ref()).await;
    s.create_user(&human(org, "alice")).await.unwrap();
    let code = AuthCode {
        hash: vec![7; 32],
        grant_id: "grt_1".into(),
        org_id: org,
        client_id: "c1".into(),
        user_id: "usr_alice".into(),
        redirect_uri: "https://app/cb".into(),
        scopes: vec!["openid".into()],
        code_challenge: Some("ch".into()),
        nonce: Some("n".into()),
        auth_time: 90,
        sid: "sid1".into(),
        auth_method: "saml".into(),
        created_at: 100,
        expires_at: 160,
        used_at: None,
    };
    s.create_auth_code(&code).await.unwrap();
    assert_eq!(s.auth_code(&[7; 32]).await.unwrap().unwrap(), code);
    let grant = LoginGrant {
        id: "grt_1".into(),
        org_id: org,
        client_id: "c1".into(),
        user_id: "usr_alice".into(),
        scopes: vec!["openid".into()],
        nonce: Some("n".into()),
        auth_time: 90,
        sid: "sid1".into(),
        auth_method: "saml".into(),
        created_at: 110,
        expires_at: 10_000,
        revoked_at: None,
        revoked_reason: None,
    };
    let rt = |hash: u8, at: i64| RefreshToken {
        hash: vec![hash; 32],
        grant_id: "grt_1".into(),
        created_at: at,
        idle_expires_at: at + 1000,
        used_at: None,
    };
    assert!(
        s.redeem_auth_code(&[7; 32], &grant, Some(&rt(1, 110)), 110)
            .await
            .unwrap()
    );
    assert!(
        !s.redeem_auth_code(&[7; 32], &grant, None, 111)
            .await
            .unwrap(),
        "a second exchange loses"
    );
    assert_eq!(
        s.auth_code(&[7; 32]).await.unwrap().unwrap().used_at,
        Some(110)
    );
    let (t, g) = s.refresh_token(&[1; 32]).await.unwrap().unwrap();
    assert_eq!((t.used_at, g), (None, grant.clone()));
    // A grant without a code (the SAML bearer grant), with its first refresh token.
    let bearer = LoginGrant {
        id: "grt_bearer".into(),
        sid: "saml-bearer:_a1".into(),
        nonce: None,
        ..grant.clone()
    };
    let first = RefreshToken {
        grant_id: "grt_bearer".into(),
        ..rt(9, 110)
    };
    s.start_login_grant(&bearer, Some(&first)).await.unwrap();
    assert_eq!(
        s.login_grant("grt_bearer").await.unwrap(),
        Some(bearer.clone())
    );
    let (t, g) = s.refresh_token(&[9; 32]).await.unwrap().unwrap();
    assert_eq!((t.grant_id.as_str(), g), ("grt_bearer", bearer));
    // Out of the way of the counts below.
    s.revoke_login_grant("grt_bearer", "test", 111)
        .await
        .unwrap();

    assert_eq!(
        s.rotate_refresh_token(&[1; 32], &rt(2, 120), 120)
            .await
            .unwrap(),
        Rotation::Rotated
    );
    assert_eq!(
        s.rotate_refresh_token(&[1; 32], &rt(3, 121), 121)
            .await
            .unwrap(),
        Rotation::AlreadyUsed
    );
    assert!(s.refresh_token(&[3; 32]).await.unwrap().is_none());
    assert_eq!(
        s.refresh_token(&[1; 32]).await.unwrap().unwrap().0.used_at,
        Some(120)
    );

    // A person's revocation ends their grants and their sessions, nobody else's.
    let sess = |id: u8, user: &str| Session {
        id_hash: vec![id],
        org_id: org,
        user_id: user.into(),
        method: "password".into(),
        created_at: 100,
        last_seen_at: 100,
    };
    s.create_user(&human(org, "bob")).await.unwrap();
    s.create_session(&sess(1, "usr_alice")).await.unwrap();
    s.create_session(&sess(2, "usr_bob")).await.unwrap();
    assert_eq!(
        s.revoke_user_grants(org, "usr_alice", "user_disabled", 130)
            .await
            .unwrap(),
        1
    );
    assert!(s.session(&[1]).await.unwrap().is_none());
    assert!(s.session(&[2]).await.unwrap().is_some());
    let g = s.login_grant("grt_1").await.unwrap().unwrap();
    assert_eq!(
        (g.revoked_at, g.revoked_reason.as_deref()),
        (Some(130), Some("user_disabled"))
    );
    assert!(!s.revoke_login_grant("grt_1", "again", 131).await.unwrap());
    // Both of Alice's grants are listed (revoked ones too): the code's and the bearer's.
    assert_eq!(s.user_grants(org, "usr_alice").await.unwrap().len(), 2);

    // Assertion ids: once each, until they expire.
    assert!(s.remember_assertion_id("c1", "j1", 200, 100).await.unwrap());
    assert!(!s.remember_assertion_id("c1", "j1", 200, 150).await.unwrap());
    assert!(s.remember_assertion_id("c2", "j1", 200, 150).await.unwrap());
    assert!(s.remember_assertion_id("c1", "j1", 400, 250).await.unwrap());

    // Pruning forgets what ended.
    assert!(s.prune_grants(20_000).await.unwrap() >= 2);
    assert!(s.auth_code(&[7; 32]).await.unwrap().is_none());
    assert!(s.refresh_token(&[2; 32]).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_thread_and_pool_writers_take_turns_sqlite() {
    audit_thread_and_pool_writers_take_turns(TestDb::sqlite()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_thread_and_pool_writers_take_turns_postgres() {
    if let Some(db) = TestDb::postgres().await {
        audit_thread_and_pool_writers_take_turns(db).await
    }
}

/// Each contract test once per backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::TestDb::sqlite()).await
                }
            )*
        }
        mod postgres {
            $(
                // Several threads: the audit appender blocks its own thread on the
                // runtime, as the server's audit writer does.
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = super::TestDb::postgres().await {
                        super::$name(db).await
                    }
                }
            )*
        }
    };
}

contract! {
    a_key_rotation_reaches_every_node,
    facts_round_trip_and_reopen_keeps_data,
    uniqueness_is_a_conflict_naming_the_thing,
    rotation_keeps_at_most_two_active,
    throttle_records,
    failures_of_several_nodes_add_up_in_the_database,
    audit_batches_filters_and_last_use,
    signing_key_rotation_retires_the_previous,
    delete_client_removes_secrets_and_throttle,
    caches_follow_changes_on_this_node_at_once_and_on_others_after_sync,
    clients_of_one_org_share_its_cached_facts_and_see_its_changes,
    a_change_forgets_only_what_it_changed,
    password_attempts_count_and_reset,
    sso_configuration_and_enforcement,
    saml_pending_is_single_use_replays_are_caught_and_sessions_round_trip,
    the_first_saml_sp_key_stored_wins,
    a_scim_link_is_a_humans_unique_external_id,
    scim_groups_hold_only_humans_and_tokens_are_found_by_hash,
    a_saml_login_is_one_transaction_that_writes_only_what_the_idp_manages,
    an_admin_edit_writes_only_what_an_admin_manages,
    codes_grants_and_refresh_tokens,
}

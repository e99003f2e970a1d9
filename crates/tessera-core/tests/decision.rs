//! The decision function, exhaustively: every combination of stored facts and request
//! variants over a small domain, checked against an independent statement of the policy
//! (the first failing check in documented order decides), plus the throttle and dry-run
//! rules and determinism.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use tessera_core::Reason;
use tessera_core::decision::{
    ClientFacts, DecideOptions, Decision, Facts, decide, facts_key, parse,
};
use tessera_core::model::{
    Actor, AuthMethod, Client, ClientId, GrantType, IpAllowList, Org, OrgSlug, ScopeName,
    StoredSecret, User, UserState, UserType,
};
use tessera_core::request::RawTokenRequest;
use tessera_core::secret::hash_client_secret;
use tessera_core::throttle::{ThrottlePolicy, ThrottleState};
use tessera_core::trace::{Check, Verdict};

const NOW: i64 = 1_800_000_000;
const SECRET: &str = "tsec_current";
const OLD: &str = "tsec_old";
const REVOKED: &str = "tsec_revoked";

fn secret(id: &str, value: &str, expires_at: Option<i64>, revoked_at: Option<i64>) -> StoredSecret {
    StoredSecret {
        id: id.into(),
        client_id: ClientId::parse("svc").unwrap(),
        hash: hash_client_secret(value),
        hint: value[value.len() - 4..].into(),
        created_at: NOW - 100,
        expires_at,
        revoked_at,
        last_used_at: None,
        last_used_from: None,
    }
}

fn facts() -> ClientFacts {
    ClientFacts {
        client: Client {
            client_id: ClientId::parse("svc").unwrap(),
            org_id: 1,
            name: "service".into(),
            enabled: true,
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec![
                ScopeName::parse("a").unwrap(),
                ScopeName::parse("b").unwrap(),
            ],
            redirect_uris: vec![],
            auth_methods: vec![AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost],
            ip_allowlist: IpAllowList::default(),
            service_account_id: Some("usr_1".into()),
            token_ttl: 600,
            interactive: Default::default(),
            jwks: None,
            jwks_uri: None,
            created_at: 0,
        },
        secrets: vec![
            secret("sec_cur", SECRET, None, None),
            secret("sec_old", OLD, Some(NOW - 1), None),
            secret("sec_rev", REVOKED, None, Some(NOW - 5)),
        ],
        org: Arc::new(Org {
            id: 1,
            slug: OrgSlug::parse("acme").unwrap(),
            enabled: true,
            sso_enforced: true,
            created_at: 0,
        }),
        service_account: Some(User {
            id: "usr_1".into(),
            org_id: 1,
            user_type: UserType::Service,
            username: "svc-bot".into(),
            email: None,
            display_name: None,
            roles: vec![],
            state: UserState::Active,
            state_changed_by: None,
            state_changed_at: None,
            locked_until: None,
            password_hash: None,
            saml_name_id: None,
            failed_logins: 0,
            last_password_login_at: None,
            scim: None,
            created_at: 0,
        }),
        known_scopes: ["a", "b", "c"]
            .iter()
            .map(|s| ScopeName::parse(s).unwrap())
            .collect(),
    }
}

fn run(body: &str, auth: Option<&str>, ip: &str, f: &Facts, opts: DecideOptions) -> Decision {
    let raw = RawTokenRequest {
        content_type: Some("application/x-www-form-urlencoded"),
        body: body.as_bytes(),
        body_too_large: false,
        authorization: auth,
        source_ip: ip.parse::<IpAddr>().unwrap(),
    };
    let parsed = parse(&raw);
    assert_eq!(facts_key(&parsed), Some("svc"));
    decide(parsed, f, NOW, opts)
}

fn post(secret: &str, scope: Option<&str>) -> String {
    let mut b = format!("grant_type=client_credentials&client_id=svc&client_secret={secret}");
    if let Some(s) = scope {
        b.push_str("&scope=");
        b.push_str(s);
    }
    b
}

#[derive(Clone, Copy, Debug)]
enum SecretVariant {
    Current,
    Expired,
    Revoked,
    Wrong,
}

#[derive(Clone, Copy, Debug)]
enum ScopeVariant {
    Absent,
    Allowed,
    Unknown,
    NotAllowed,
}

#[derive(Clone, Copy, Debug)]
enum SaVariant {
    Active,
    Disabled,
    Locked,
    LockExpired,
    Missing,
}

/// The policy stated independently of the implementation: the first failing check wins.
fn expected(
    s: SecretVariant,
    client_enabled: bool,
    org_enabled: bool,
    ip_ok: bool,
    grant_ok: bool,
    sa: SaVariant,
    sc: ScopeVariant,
) -> Result<(), (Reason, Check)> {
    match s {
        SecretVariant::Wrong => return Err((Reason::ClientSecretMismatch, Check::ClientSecret)),
        SecretVariant::Expired => return Err((Reason::ClientSecretExpired, Check::ClientSecret)),
        SecretVariant::Revoked => return Err((Reason::ClientSecretRevoked, Check::ClientSecret)),
        SecretVariant::Current => {}
    }
    if !client_enabled {
        return Err((Reason::ClientDisabled, Check::ClientEnabled));
    }
    if !org_enabled {
        return Err((Reason::OrgDisabled, Check::Org));
    }
    if !ip_ok {
        return Err((Reason::ClientIpNotAllowed, Check::SourceIp));
    }
    if !grant_ok {
        return Err((Reason::GrantTypeNotAllowed, Check::GrantTypeAllowed));
    }
    match sa {
        SaVariant::Disabled => return Err((Reason::ServiceAccountDisabled, Check::ServiceAccount)),
        SaVariant::Locked => return Err((Reason::ServiceAccountLocked, Check::ServiceAccount)),
        SaVariant::Missing => return Err((Reason::ServiceAccountMissing, Check::ServiceAccount)),
        SaVariant::Active | SaVariant::LockExpired => {}
    }
    match sc {
        ScopeVariant::Unknown => Err((Reason::ScopeUnknown, Check::Scope)),
        ScopeVariant::NotAllowed => Err((Reason::ScopeNotAllowed, Check::Scope)),
        ScopeVariant::Absent | ScopeVariant::Allowed => Ok(()),
    }
}

#[test]
fn exhaustive_policy_matrix() {
    let secrets = [
        SecretVariant::Current,
        SecretVariant::Expired,
        SecretVariant::Revoked,
        SecretVariant::Wrong,
    ];
    let scopes = [
        ScopeVariant::Absent,
        ScopeVariant::Allowed,
        ScopeVariant::Unknown,
        ScopeVariant::NotAllowed,
    ];
    let sas = [
        SaVariant::Active,
        SaVariant::Disabled,
        SaVariant::Locked,
        SaVariant::LockExpired,
        SaVariant::Missing,
    ];
    let mut combos = 0;
    for s in secrets {
        for client_enabled in [true, false] {
            for org_enabled in [true, false] {
                for ip_ok in [true, false] {
                    for grant_ok in [true, false] {
                        for sa in sas {
                            for sc in scopes {
                                combos += 1;
                                let mut cf = facts();
                                cf.client.enabled = client_enabled;
                                Arc::make_mut(&mut cf.org).enabled = org_enabled;
                                if !ip_ok {
                                    cf.client.ip_allowlist =
                                        IpAllowList::parse(&["10.0.0.0/8"]).unwrap();
                                }
                                if !grant_ok {
                                    cf.client.grant_types = vec![GrantType::AuthorizationCode];
                                }
                                let u = cf.service_account.as_mut().unwrap();
                                match sa {
                                    SaVariant::Active => {}
                                    SaVariant::Disabled => {
                                        u.state = UserState::Disabled;
                                        u.state_changed_by = Some(Actor::Provisioning {
                                            source: "scim".into(),
                                        });
                                        u.state_changed_at = Some(NOW - 60);
                                    }
                                    SaVariant::Locked | SaVariant::LockExpired => {
                                        u.state = UserState::Locked;
                                        u.state_changed_by = Some(Actor::LockoutPolicy);
                                        u.locked_until = Some(if matches!(sa, SaVariant::Locked) {
                                            NOW + 60
                                        } else {
                                            NOW
                                        });
                                    }
                                    SaVariant::Missing => cf.service_account = None,
                                }
                                let value = match s {
                                    SecretVariant::Current => SECRET,
                                    SecretVariant::Expired => OLD,
                                    SecretVariant::Revoked => REVOKED,
                                    SecretVariant::Wrong => "tsec_nope",
                                };
                                let scope = match sc {
                                    ScopeVariant::Absent => None,
                                    ScopeVariant::Allowed => Some("b"),
                                    ScopeVariant::Unknown => Some("a%20zzz"),
                                    ScopeVariant::NotAllowed => Some("a%20c"),
                                };
                                let f = Facts {
                                    client: Some(Arc::new(cf)),
                                    throttle: ThrottleState::default(),
                                    ..Facts::default()
                                };
                                let d = run(
                                    &post(value, scope),
                                    None,
                                    "127.0.0.1",
                                    &f,
                                    DecideOptions::default(),
                                );
                                let want = expected(
                                    s,
                                    client_enabled,
                                    org_enabled,
                                    ip_ok,
                                    grant_ok,
                                    sa,
                                    sc,
                                );
                                let ctx = format!(
                                    "{s:?} ce={client_enabled} oe={org_enabled} ip={ip_ok} g={grant_ok} {sa:?} {sc:?}"
                                );
                                let steps = d.trace.steps();
                                match want {
                                    Ok(()) => {
                                        let g = d
                                            .outcome
                                            .as_ref()
                                            .unwrap_or_else(|e| panic!("{ctx}: {e:?}"));
                                        let want_scopes: Vec<&str> = if scope.is_none() {
                                            vec!["a", "b"]
                                        } else {
                                            vec!["b"]
                                        };
                                        assert_eq!(g.scopes, want_scopes, "{ctx}");
                                        assert_eq!(g.subject, "usr_1");
                                        assert!(
                                            steps.iter().all(|s| s.verdict != Verdict::Fail),
                                            "{ctx}"
                                        );
                                        assert_eq!(steps.last().unwrap().check, Check::SsoPolicy);
                                        assert_eq!(d.secret_used.as_ref().unwrap().id, "sec_cur");
                                    }
                                    Err((reason, check)) => {
                                        let den = d.outcome.as_ref().expect_err(&ctx);
                                        assert_eq!(
                                            den.reason, reason,
                                            "{ctx}: {}",
                                            den.description
                                        );
                                        let last = steps.last().unwrap();
                                        assert_eq!(
                                            (last.check, last.verdict),
                                            (check, Verdict::Fail),
                                            "{ctx}"
                                        );
                                        assert_eq!(last.reason, Some(reason));
                                        assert_eq!(den.description, last.detail);
                                        assert_eq!(
                                            steps
                                                .iter()
                                                .filter(|s| s.verdict == Verdict::Fail)
                                                .count(),
                                            1
                                        );
                                        // Authentication failures, and only those, count for throttling.
                                        assert_eq!(
                                            d.throttle_update.is_some(),
                                            reason.is_auth_failure(),
                                            "{ctx}"
                                        );
                                    }
                                }
                                // Refusals and grants alike know the org and the client.
                                assert_eq!(d.org_slug.as_deref(), Some("acme"));
                                assert_eq!(d.client_id.as_deref(), Some("svc"));
                                assert!(
                                    !format!("{:?}", d.trace).contains(value),
                                    "{ctx}: secret in trace"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(combos, 4 * 2 * 2 * 2 * 2 * 5 * 4);
}

#[test]
fn check_order_of_a_grant() {
    let f = Facts {
        client: Some(Arc::new(facts())),
        throttle: ThrottleState::default(),
        ..Facts::default()
    };
    let d = run(
        &post(SECRET, None),
        None,
        "127.0.0.1",
        &f,
        DecideOptions::default(),
    );
    let order: Vec<Check> = d.trace.steps().iter().map(|s| s.check).collect();
    use Check::*;
    assert_eq!(
        order,
        vec![
            ContentType,
            Body,
            Parameters,
            GrantType,
            ClientAuth,
            Throttle,
            Client,
            ClientSecret,
            ClientAuthMethod,
            ClientEnabled,
            Org,
            SourceIp,
            GrantTypeAllowed,
            ServiceAccount,
            Scope,
            SsoPolicy
        ]
    );
    // SSO enforcement is on for this org, and the trace says it does not apply.
    let sso = d.trace.steps().last().unwrap();
    assert_eq!(sso.verdict, Verdict::Pass);
    assert!(
        sso.detail.contains("never subject to SSO enforcement"),
        "{}",
        sso.detail
    );
}

#[test]
fn unknown_client_counts_as_a_failure() {
    let d = run(
        &post(SECRET, None),
        None,
        "127.0.0.1",
        &Facts::default(),
        DecideOptions::default(),
    );
    assert_eq!(d.reason(), Some(Reason::ClientUnknown));
    assert_eq!(d.throttle_update.unwrap().failures, 1);
    assert_eq!(d.org_id, None);
}

#[test]
fn throttled_pair_is_refused_before_the_secret_is_checked() {
    let policy = ThrottlePolicy::default();
    let blocked = ThrottleState {
        failures: 9,
        last_failure: NOW,
        blocked_until: Some(NOW + 30),
    };
    let f = Facts {
        client: Some(Arc::new(facts())),
        throttle: blocked,
        ..Facts::default()
    };
    let d = run(
        &post(SECRET, None),
        None,
        "127.0.0.1",
        &f,
        DecideOptions {
            throttle: policy,
            dry_run: false,
            ..DecideOptions::default()
        },
    );
    let den = d.outcome.unwrap_err();
    assert_eq!(den.reason, Reason::ClientThrottled);
    assert_eq!(den.retry_after, Some(30));
    assert!(
        d.trace
            .steps()
            .iter()
            .all(|s| s.check != Check::ClientSecret)
    );
    assert_eq!(
        d.throttle_update, None,
        "a blocked attempt does not extend the block"
    );
    // Attributed to the org all the same.
    assert_eq!(d.org_slug.as_deref(), Some("acme"));
}

#[test]
fn success_after_failures_resets_the_counter() {
    let f = Facts {
        client: Some(Arc::new(facts())),
        throttle: ThrottleState {
            failures: 3,
            last_failure: NOW - 5,
            blocked_until: None,
        },
        ..Facts::default()
    };
    let d = run(
        &post(SECRET, None),
        None,
        "127.0.0.1",
        &f,
        DecideOptions::default(),
    );
    assert!(d.outcome.is_ok());
    assert_eq!(d.throttle_update, Some(ThrottleState::default()));
}

#[test]
fn dry_run_never_touches_throttling() {
    let blocked = ThrottleState {
        failures: 9,
        last_failure: NOW,
        blocked_until: Some(NOW + 30),
    };
    let f = Facts {
        client: Some(Arc::new(facts())),
        throttle: blocked,
        ..Facts::default()
    };
    let opts = DecideOptions {
        throttle: ThrottlePolicy::default(),
        dry_run: true,
        ..DecideOptions::default()
    };
    let d = run(&post(SECRET, None), None, "127.0.0.1", &f, opts);
    assert!(d.outcome.is_ok(), "{:?}", d.outcome);
    assert_eq!(d.trace.steps()[5].verdict, Verdict::Skip);
    let d = run(&post("tsec_nope", None), None, "127.0.0.1", &f, opts);
    assert_eq!(d.reason(), Some(Reason::ClientSecretMismatch));
    assert_eq!(d.throttle_update, None);
}

#[test]
fn deterministic() {
    let f = Facts {
        client: Some(Arc::new(facts())),
        throttle: ThrottleState::default(),
        ..Facts::default()
    };
    for body in [
        post(SECRET, Some("a")),
        post("tsec_nope", None),
        post(SECRET, Some("zzz")),
    ] {
        let a = run(&body, None, "127.0.0.1", &f, DecideOptions::default());
        let b = run(&body, None, "127.0.0.1", &f, DecideOptions::default());
        assert_eq!(a.trace, b.trace);
        assert_eq!(a.outcome, b.outcome);
    }
}

#[test]
fn basic_header_with_only_the_client_id_names_it() {
    let f = Facts {
        client: Some(Arc::new(facts())),
        throttle: ThrottleState::default(),
        ..Facts::default()
    };
    let h = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("svc")
    );
    let d = run(
        "grant_type=client_credentials",
        Some(&h),
        "127.0.0.1",
        &f,
        DecideOptions::default(),
    );
    let den = d.outcome.unwrap_err();
    assert_eq!(den.reason, Reason::BasicHeaderMalformed);
    assert!(
        den.description
            .contains("decodes to the client id 'svc' alone"),
        "{}",
        den.description
    );
    assert_eq!(d.org_slug.as_deref(), Some("acme"));
}

#[test]
fn disabled_service_account_says_by_whom() {
    let mut cf = facts();
    let u = cf.service_account.as_mut().unwrap();
    u.state = UserState::Disabled;
    u.state_changed_by = Some(Actor::Provisioning {
        source: "okta-scim".into(),
    });
    u.state_changed_at = Some(0);
    let f = Facts {
        client: Some(Arc::new(cf)),
        throttle: ThrottleState::default(),
        ..Facts::default()
    };
    let d = run(
        &post(SECRET, None),
        None,
        "127.0.0.1",
        &f,
        DecideOptions::default(),
    );
    let den = d.outcome.unwrap_err();
    assert!(
        den.description
            .contains("disabled by the provisioning sync (okta-scim) at 1970-01-01T00:00:00Z"),
        "{}",
        den.description
    );
}

#[test]
fn ipv6_and_mapped_sources() {
    let mut cf = facts();
    cf.client.ip_allowlist = IpAllowList::parse(&["2001:db8::/32", "10.0.0.0/8"]).unwrap();
    let f = Facts {
        client: Some(Arc::new(cf)),
        throttle: ThrottleState::default(),
        ..Facts::default()
    };
    for (ip, ok) in [
        ("2001:db8::7", true),
        ("::ffff:10.9.9.9", true),
        ("2001:db9::1", false),
        ("127.0.0.1", false),
    ] {
        let d = run(&post(SECRET, None), None, ip, &f, DecideOptions::default());
        assert_eq!(d.outcome.is_ok(), ok, "{ip}");
    }
}

/// A client whose keys are at its `jwks_uri`: the decision reads them as a fact. Keys
/// the server could not fetch refuse the assertion with a reason of their own, tell the
/// unauthenticated caller nothing of why, and count no failure against the caller (an
/// outage of the client's key server must not lock the client out).
#[test]
fn keys_at_a_jwks_uri_are_a_fact_and_their_absence_is_not_the_callers_failure() {
    let mut cf = facts();
    cf.client.auth_methods = vec![AuthMethod::PrivateKeyJwt];
    cf.client.jwks_uri = Some("https://keys.example/jwks".into());
    let body = "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJzdmMiLCJzdWIiOiJzdmMifQ.c2ln";
    let decide_with = |remote: Option<Result<Arc<serde_json::Value>, String>>| {
        let f = Facts {
            client: Some(Arc::new(cf.clone())),
            remote_jwks: remote,
            ..Facts::default()
        };
        run(body, None, "127.0.0.1", &f, DecideOptions::default())
    };
    for remote in [
        None,
        Some(Err("it answered 503 Service Unavailable".to_string())),
    ] {
        let d = decide_with(remote.clone());
        let den = d.outcome.as_ref().unwrap_err();
        assert_eq!(den.reason, Reason::ClientJwksUnavailable, "{remote:?}");
        assert!(!den.description.contains("503"), "{}", den.description);
        assert_eq!(d.throttle_update, None, "no failure counted: {remote:?}");
        let step = d.trace.failed().unwrap();
        assert_eq!(step.check, Check::ClientAssertion);
        if remote.is_some() {
            assert!(step.detail.contains("503"), "{}", step.detail);
        }
    }
    // Fetched keys that do not verify the assertion: the caller's failure, counted.
    let jwk = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]});
    let d = decide_with(Some(Ok(Arc::new(jwk))));
    assert_eq!(d.reason(), Some(Reason::ClientAssertionInvalid));
    assert_eq!(d.throttle_update.unwrap().failures, 1);
}

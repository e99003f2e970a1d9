//! The password grant and SSO enforcement, exhaustively: every combination of resource
//! owner, account state, enforcement, break-glass exemption, password and failure count,
//! checked against an independent statement of the policy. Also: client_credentials is
//! never affected by enforcement, and no password reaches a trace or a description.

use std::sync::Arc;

use tessera_core::Reason;
use tessera_core::decision::{
    DecideOptions, Decision, Facts, GrantFacts, LoginFacts, LoginUpdate, PersonFacts,
    ResourceOwnerFacts, decide_login,
};
use tessera_core::model::{GrantType, UserState, UserType};
use tessera_core::secret::SecretString;
use tessera_core::throttle::{AttemptOutcome, PersonThrottle, ThrottleState};
use tessera_core::trace::{Check, Verdict};

mod common;
use common::*;

/// A cheap stand-in for argon2id: the "hash" is `plain:` + the password.
fn verify(pw: &SecretString, hash: &str) -> bool {
    hash.strip_prefix("plain:") == Some(pw.expose())
}

fn opts() -> DecideOptions {
    DecideOptions {
        verify_password: verify,
        ..DecideOptions::default()
    }
}

fn password_body(password: &str) -> String {
    format!(
        "grant_type=password&client_id=app&client_secret={SECRET}&username=alice&password={}",
        password.replace(' ', "+").replace('&', "%26")
    )
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Owner {
    Unknown,
    ServiceWithClients,
    ServiceWithoutClients,
    Active,
    Disabled,
    Locked,
    LockExpired,
    NoPassword,
}

const OWNERS: [Owner; 8] = [
    Owner::Unknown,
    Owner::ServiceWithClients,
    Owner::ServiceWithoutClients,
    Owner::Active,
    Owner::Disabled,
    Owner::Locked,
    Owner::LockExpired,
    Owner::NoPassword,
];

fn owner_facts(o: Owner, break_glass: bool, failed: u32) -> Option<ResourceOwnerFacts> {
    let (u, clients) = match o {
        Owner::Unknown => return None,
        Owner::ServiceWithClients => (
            user(UserType::Service, UserState::Active, None, false),
            vec![("cli_bot".to_string(), "bot".to_string())],
        ),
        Owner::ServiceWithoutClients => (
            user(UserType::Service, UserState::Active, None, false),
            vec![],
        ),
        Owner::Active => (user(UserType::Human, UserState::Active, None, true), vec![]),
        Owner::Disabled => (
            user(UserType::Human, UserState::Disabled, None, true),
            vec![],
        ),
        Owner::Locked => (
            user(UserType::Human, UserState::Locked, Some(NOW + 600), true),
            vec![],
        ),
        Owner::LockExpired => (
            user(UserType::Human, UserState::Locked, Some(NOW - 1), true),
            vec![],
        ),
        Owner::NoPassword => (
            user(UserType::Human, UserState::Active, None, false),
            vec![],
        ),
    };
    let mut u = u;
    u.failed_logins = failed;
    Some(ResourceOwnerFacts {
        user: u,
        clients,
        break_glass,
        sso_login_url: "https://id.example/saml/acme/login".into(),
    })
}

/// The facts of a password grant.
fn person_facts(
    resource_owner: Option<ResourceOwnerFacts>,
    throttle: PersonThrottle,
    hashing_busy: bool,
) -> GrantFacts {
    GrantFacts::Password(Box::new(PersonFacts {
        resource_owner,
        throttle,
        hashing_busy,
    }))
}

/// The policy, stated independently: the first failing check in documented order.
fn expected(
    grant_enabled: bool,
    o: Owner,
    enforced: bool,
    break_glass: bool,
    right: bool,
) -> Result<(), (Reason, Check)> {
    if !grant_enabled {
        return Err((Reason::GrantTypeNotAllowed, Check::GrantTypeAllowed));
    }
    match o {
        Owner::Unknown => return Err((Reason::UserCredentialsInvalid, Check::ResourceOwner)),
        Owner::ServiceWithClients | Owner::ServiceWithoutClients => {
            return Err((Reason::ServiceAccountNoPassword, Check::ResourceOwner));
        }
        Owner::Disabled => return Err((Reason::UserDisabled, Check::ResourceOwner)),
        Owner::Locked => return Err((Reason::UserLocked, Check::ResourceOwner)),
        _ => {}
    }
    if enforced && !break_glass {
        return Err((Reason::SsoRequired, Check::SsoPolicy));
    }
    if o == Owner::NoPassword || !right {
        return Err((Reason::UserCredentialsInvalid, Check::UserPassword));
    }
    Ok(())
}

#[test]
fn every_combination_follows_the_policy() {
    let mut n = 0;
    for grant_enabled in [true, false] {
        for o in OWNERS {
            for enforced in [false, true] {
                for break_glass in [false, true] {
                    for right in [true, false] {
                        for failed in [0, 3, 4] {
                            let grants = if grant_enabled {
                                vec![GrantType::ClientCredentials, GrantType::Password]
                            } else {
                                vec![GrantType::ClientCredentials]
                            };
                            let f = Facts {
                                client: Some(Arc::new(client_facts(enforced, grants))),
                                throttle: ThrottleState::default(),
                                grant: person_facts(
                                    owner_facts(o, break_glass, failed),
                                    PersonThrottle::default(),
                                    false,
                                ),
                                ..Facts::default()
                            };
                            let pw = if right { PASSWORD } else { WRONG_PASSWORD };
                            let d = run(&password_body(pw), &f, opts());
                            let want = expected(grant_enabled, o, enforced, break_glass, right);
                            let ctx = format!(
                                "grant={grant_enabled} owner={o:?} enforced={enforced} break_glass={break_glass} right={right} failed={failed}"
                            );
                            check(&d, want, &ctx);
                            side_effects(&d, want, o, enforced, break_glass, failed, &ctx);
                            n += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(n, 2 * 8 * 2 * 2 * 2 * 3);
}

fn check(d: &Decision, want: Result<(), (Reason, Check)>, ctx: &str) {
    match want {
        Ok(()) => {
            let g = d
                .outcome
                .as_ref()
                .unwrap_or_else(|e| panic!("{ctx}: {e:?}"));
            assert_eq!(g.subject, "usr_alice", "{ctx}");
            assert_eq!(g.scopes, vec!["a"], "{ctx}");
            assert_eq!(d.trace.failed(), None, "{ctx}");
        }
        Err((reason, at)) => {
            let e = d.outcome.as_ref().expect_err(ctx);
            assert_eq!(e.reason, reason, "{ctx}");
            let step = d.trace.failed().expect(ctx);
            assert_eq!(step.check, at, "{ctx}");
            assert_eq!(step.reason, Some(reason), "{ctx}");
        }
    }
    // No password, right or wrong, ever reaches the trace or the description.
    for s in d.trace.steps() {
        assert!(!s.detail.contains(PASSWORD), "{ctx}: {}", s.detail);
        assert!(!s.detail.contains(WRONG_PASSWORD), "{ctx}: {}", s.detail);
    }
    if let Err(e) = &d.outcome {
        assert!(!e.description.contains(PASSWORD), "{ctx}");
        assert!(!e.description.contains(WRONG_PASSWORD), "{ctx}");
    }
}

fn side_effects(
    d: &Decision,
    want: Result<(), (Reason, Check)>,
    o: Owner,
    enforced: bool,
    break_glass: bool,
    failed: u32,
    ctx: &str,
) {
    match want {
        Ok(()) => {
            assert_eq!(
                d.login_update,
                Some(LoginUpdate::Succeeded {
                    user_id: "usr_alice".into()
                }),
                "{ctx}"
            );
            let expect_reason = (enforced && break_glass).then_some(Reason::SsoBreakGlass);
            assert_eq!(d.grant_reason, expect_reason, "{ctx}");
        }
        Err((Reason::UserCredentialsInvalid, Check::UserPassword)) if o != Owner::NoPassword => {
            // A wrong password is counted, never a lock: throttling slows guessing down.
            assert_eq!(
                d.login_update,
                Some(LoginUpdate::Failed {
                    user_id: "usr_alice".into(),
                }),
                "{ctx}"
            );
            assert_eq!(d.throttle_update.map(|t| t.failures), Some(1), "{ctx}");
            assert_eq!(d.person_attempt, Some(AttemptOutcome::Failed), "{ctx}");
            let e = d.outcome.as_ref().unwrap_err();
            assert_eq!(
                e.description, "the username or password is incorrect",
                "{ctx}"
            );
            let _ = failed;
        }
        Err((Reason::UserCredentialsInvalid, _)) => {
            // Unknown user or no password: counted against (client, source), quietly.
            assert_eq!(d.login_update, None, "{ctx}");
            assert_eq!(d.person_attempt, Some(AttemptOutcome::Failed), "{ctx}");
            assert_eq!(d.throttle_update.map(|t| t.failures), Some(1), "{ctx}");
            let e = d.outcome.as_ref().unwrap_err();
            assert_eq!(
                e.description, "the username or password is incorrect",
                "{ctx}"
            );
        }
        Err(_) => {
            assert_eq!(d.login_update, None, "{ctx}");
            assert_ne!(d.person_attempt, Some(AttemptOutcome::Failed), "{ctx}");
        }
    }
}

#[test]
fn sso_required_says_how_to_log_in_and_what_scripts_should_use() {
    let f = Facts {
        client: Some(Arc::new(client_facts(
            true,
            vec![GrantType::ClientCredentials, GrantType::Password],
        ))),
        throttle: ThrottleState::default(),
        grant: person_facts(
            owner_facts(Owner::Active, false, 0),
            PersonThrottle::default(),
            false,
        ),
        ..Facts::default()
    };
    let d = run(&password_body(PASSWORD), &f, opts());
    let e = d.outcome.unwrap_err();
    assert_eq!(e.reason, Reason::SsoRequired);
    assert!(e.description.contains("https://id.example/saml/acme/login"));
    assert!(e.description.contains("client_credentials"));
    // The password is not even checked: the decision is the policy's, not the password's.
    assert_eq!(d.login_update, None);
}

#[test]
fn a_service_account_is_told_to_use_its_clients() {
    let f = Facts {
        client: Some(Arc::new(client_facts(
            true,
            vec![GrantType::ClientCredentials, GrantType::Password],
        ))),
        throttle: ThrottleState::default(),
        grant: person_facts(
            owner_facts(Owner::ServiceWithClients, false, 0),
            PersonThrottle::default(),
            false,
        ),
        ..Facts::default()
    };
    let e = run(&password_body("secret"), &f, opts())
        .outcome
        .unwrap_err();
    assert_eq!(e.reason, Reason::ServiceAccountNoPassword);
    assert!(
        e.description.contains("'cli_bot' (bot)"),
        "{}",
        e.description
    );
    assert!(e.description.contains("grant_type=client_credentials"));
}

#[test]
fn missing_username_or_password_is_named() {
    let f = Facts::default();
    for (body, missing) in [
        (
            "grant_type=password&client_id=app&client_secret=x&password=p",
            "'username'",
        ),
        (
            "grant_type=password&client_id=app&client_secret=x&username=u",
            "'password'",
        ),
        (
            "grant_type=password&client_id=app&client_secret=x",
            "'username', 'password'",
        ),
    ] {
        let e = run(body, &f, opts()).outcome.unwrap_err();
        assert_eq!(e.reason, Reason::ParameterMissing, "{body}");
        assert!(e.description.contains(missing), "{}", e.description);
    }
}

#[test]
fn client_credentials_is_never_subject_to_enforcement() {
    for enforced in [false, true] {
        let f = Facts {
            client: Some(Arc::new(client_facts(
                enforced,
                vec![GrantType::ClientCredentials],
            ))),
            throttle: ThrottleState::default(),
            ..Facts::default()
        };
        let d = run(
            &format!("grant_type=client_credentials&client_id=app&client_secret={SECRET}"),
            &f,
            opts(),
        );
        assert!(d.outcome.is_ok(), "enforced={enforced}: {:?}", d.outcome);
        let sso = d
            .trace
            .steps()
            .iter()
            .find(|s| s.check == Check::SsoPolicy)
            .unwrap();
        assert_ne!(sso.verdict, Verdict::Fail);
        assert!(sso.detail.contains("never subject"));
    }
}

#[test]
fn a_dry_run_changes_nothing() {
    let f = Facts {
        client: Some(Arc::new(client_facts(false, vec![GrantType::Password]))),
        throttle: ThrottleState::default(),
        grant: person_facts(
            owner_facts(Owner::Active, false, 4),
            PersonThrottle::default(),
            false,
        ),
        ..Facts::default()
    };
    let o = DecideOptions {
        dry_run: true,
        ..opts()
    };
    let d = run(&password_body(WRONG_PASSWORD), &f, o);
    assert_eq!(d.reason(), Some(Reason::UserCredentialsInvalid));
    assert_eq!(d.login_update, None);
    assert_eq!(d.throttle_update, None);
}

#[test]
fn a_throttled_username_refuses_before_any_hash() {
    let blocked = ThrottleState {
        failures: 9,
        last_failure: NOW,
        blocked_until: Some(NOW + 30),
    };
    let never = |_: &SecretString, _: &str| -> bool { panic!("no hash may run") };
    for (person, busy, reason, check) in [
        (
            PersonThrottle {
                source: blocked,
                ..Default::default()
            },
            false,
            Reason::UserThrottled,
            Check::UserThrottle,
        ),
        (
            PersonThrottle {
                account: ThrottleState {
                    failures: 60,
                    ..blocked
                },
                ..Default::default()
            },
            false,
            Reason::UserThrottled,
            Check::UserThrottle,
        ),
    ] {
        for o in OWNERS {
            let f = Facts {
                client: Some(Arc::new(client_facts(false, vec![GrantType::Password]))),
                grant: person_facts(owner_facts(o, false, 0), person, busy),
                ..Facts::default()
            };
            let o2 = DecideOptions {
                verify_password: never,
                ..opts()
            };
            let d = run(&password_body(PASSWORD), &f, o2);
            let e = d.outcome.as_ref().unwrap_err();
            assert_eq!(e.reason, reason, "{o:?}");
            assert_eq!(d.trace.failed().unwrap().check, check);
            assert!(e.retry_after.is_some());
            assert_eq!(d.person_attempt, None, "nothing checked, nothing counted");
            assert_eq!(d.throttle_update, None, "the client's secret was right");
        }
    }
}

#[test]
fn without_a_hash_slot_only_attempts_that_would_hash_are_refused_as_busy() {
    let never = |_: &SecretString, _: &str| -> bool { panic!("no hash may run") };
    for o in OWNERS {
        let f = Facts {
            client: Some(Arc::new(client_facts(false, vec![GrantType::Password]))),
            grant: person_facts(owner_facts(o, false, 0), PersonThrottle::default(), true),
            ..Facts::default()
        };
        let d = run(
            &password_body(PASSWORD),
            &f,
            DecideOptions {
                verify_password: never,
                ..opts()
            },
        );
        let e = d.outcome.as_ref().unwrap_err();
        // The precise refusals an authenticated client gets need no hash; the others
        // (an unknown user's dummy hash, a real one) wait for a slot.
        let hashes = matches!(
            o,
            Owner::Unknown | Owner::NoPassword | Owner::Active | Owner::LockExpired
        );
        assert_eq!(
            e.reason == Reason::PasswordCheckBusy,
            hashes,
            "{o:?}: {e:?}"
        );
        if hashes {
            assert_eq!(d.trace.failed().unwrap().check, Check::PasswordCapacity);
            assert_eq!(e.retry_after, Some(1));
            assert_eq!(d.person_attempt, None, "nothing checked, nothing counted");
            assert_eq!(d.throttle_update, None);
        }
    }
}

/// The login page's policy, stated independently: one answer for every account it will
/// not let in until the password is verified; then the account's own state, then SSO.
fn expected_at_the_page(
    o: Owner,
    enforced: bool,
    break_glass: bool,
    right: bool,
) -> Result<(), Reason> {
    match o {
        Owner::Unknown
        | Owner::ServiceWithClients
        | Owner::ServiceWithoutClients
        | Owner::NoPassword => return Err(Reason::UserCredentialsInvalid),
        _ if !right => return Err(Reason::UserCredentialsInvalid),
        Owner::Disabled => return Err(Reason::UserDisabled),
        Owner::Locked => return Err(Reason::UserLocked),
        _ => {}
    }
    if enforced && !break_glass {
        return Err(Reason::SsoRequired);
    }
    Ok(())
}

#[test]
fn the_login_page_tells_strangers_nothing_before_the_password_is_verified() {
    let mut n = 0;
    for o in OWNERS {
        for enforced in [false, true] {
            for break_glass in [false, true] {
                for right in [true, false] {
                    let ctx = format!(
                        "owner={o:?} enforced={enforced} break_glass={break_glass} right={right}"
                    );
                    let mut org = (*client_facts(enforced, vec![]).org).clone();
                    org.sso_enforced = enforced;
                    let facts = LoginFacts {
                        throttle: ThrottleState {
                            failures: 2,
                            last_failure: NOW - 5,
                            blocked_until: None,
                        },
                        person: PersonFacts {
                            resource_owner: owner_facts(o, break_glass, 0),
                            ..PersonFacts::default()
                        },
                    };
                    thread_local!(static HASHES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) });
                    fn counting(pw: &SecretString, hash: &str) -> bool {
                        HASHES.with(|h| h.set(h.get() + 1));
                        verify(pw, hash)
                    }
                    HASHES.with(|h| h.set(0));
                    let creds = tessera_core::request::ResourceOwnerCredentials {
                        username: "alice".into(),
                        password: SecretString::new(if right { PASSWORD } else { WRONG_PASSWORD }),
                    };
                    let d = decide_login(
                        &creds,
                        &org,
                        &facts,
                        "10.0.0.7".parse().unwrap(),
                        NOW,
                        DecideOptions {
                            verify_password: counting,
                            ..opts()
                        },
                    );
                    assert_eq!(
                        HASHES.with(|h| h.get()),
                        1,
                        "{ctx}: exactly one hash, whoever it is"
                    );
                    match expected_at_the_page(o, enforced, break_glass, right) {
                        Ok(()) => {
                            assert!(d.outcome.is_ok(), "{ctx}: {:?}", d.outcome);
                            assert_eq!(d.throttle_update, Some(ThrottleState::default()), "{ctx}");
                            assert_eq!(d.person_attempt, Some(AttemptOutcome::Succeeded), "{ctx}");
                        }
                        Err(shown) => {
                            let e = d.outcome.as_ref().unwrap_err();
                            assert_eq!(d.shown_reason(), Some(shown), "{ctx}");
                            if shown == Reason::UserCredentialsInvalid {
                                assert_eq!(
                                    e.description, "the username or password is incorrect",
                                    "{ctx}"
                                );
                                assert_eq!(d.person_attempt, Some(AttemptOutcome::Failed), "{ctx}");
                            } else {
                                assert_eq!(
                                    d.person_attempt,
                                    Some(AttemptOutcome::Succeeded),
                                    "{ctx}"
                                );
                            }
                            // Every refusal counts against the page's budget.
                            assert_eq!(d.throttle_update.map(|t| t.failures), Some(3), "{ctx}");
                            // Never another account's details: no client, no actor.
                            assert!(!e.description.contains("cli_bot"), "{ctx}");
                            assert!(!e.description.contains("lockout"), "{ctx}");
                            assert!(!e.description.contains("service account"), "{ctx}");
                            // The audit trail keeps the precise cause.
                            assert!(d.trace.failed().is_some(), "{ctx}");
                        }
                    }
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 8 * 2 * 2 * 2);
}

//! The SAML 2.0 bearer grant (RFC 7522), exhaustively: every combination of the
//! assertion's verdict, its first use, the users its NameID and email name, just-in-time
//! provisioning, SSO enforcement, the client's grants (with or without refresh) and a dry
//! run, checked against an
//! independent statement of the rules. The assertion itself never reaches a trace.

use tessera_core::Reason;
use tessera_core::decision::{
    BearerAssertion, DecideOptions, Facts, GrantEffect, GrantFacts, SamlBearerFacts,
    SamlBearerWrite,
};
use tessera_core::model::{GrantType, User, UserState, UserType};
use tessera_core::sso::{SamlIdentity, SsoConfig};
use tessera_core::store::UserWrite;
use tessera_core::trace::{Check, Verdict};

mod common;
use common::*;

const ASSERTION: &str = "PHNhbWw6QXNzZXJ0aW9uIElEPSJfYTEiLz4";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Verdict3 {
    NoIdp,
    Refused,
    Valid,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Linked {
    Nobody,
    Active,
    Disabled,
    Locked,
    Service,
}

fn linked_user(l: Linked) -> Option<User> {
    let mut u = match l {
        Linked::Nobody => return None,
        Linked::Active => user(UserType::Human, UserState::Active, None, false),
        Linked::Disabled => user(UserType::Human, UserState::Disabled, None, false),
        Linked::Locked => user(UserType::Human, UserState::Locked, Some(NOW + 600), false),
        Linked::Service => user(UserType::Service, UserState::Active, None, false),
    };
    u.saml_name_id = Some("alice@example.com".into());
    Some(u)
}

#[allow(clippy::too_many_arguments)]
fn facts(
    verdict: Verdict3,
    replayed: bool,
    linked: Linked,
    email_match: bool,
    jit: bool,
    enforced: bool,
    grant: bool,
    refresh: bool,
) -> Facts {
    let mut grants = if grant {
        vec![GrantType::SamlBearer]
    } else {
        vec![GrantType::Password]
    };
    if refresh {
        grants.push(GrantType::RefreshToken);
    }
    let by_email = email_match.then(|| {
        let mut u = user(UserType::Human, UserState::Active, None, false);
        u.id = "usr_by_email".into();
        u
    });
    Facts {
        client: Some(std::sync::Arc::new(client_facts(enforced, grants))),
        grant: GrantFacts::SamlBearer(Box::new(SamlBearerFacts {
            verdict: match verdict {
                Verdict3::NoIdp => None,
                Verdict3::Refused => Some(Err((
                    Reason::SamlAudienceMismatch,
                    "the Audience is another SP's".into(),
                ))),
                Verdict3::Valid => Some(Ok(BearerAssertion {
                    identity: SamlIdentity {
                        name_id: "alice@example.com".into(),
                        email: Some("alice@example.com".into()),
                        display_name: None,
                        groups: vec![],
                    },
                    issuer: "https://idp.example/metadata".into(),
                    assertion_id: "_a1".into(),
                    signature_algorithms: vec![
                        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256".into(),
                    ],
                    replay_keys: vec![("assertion:_a1".into(), NOW + 300)],
                })),
            },
            config: SsoConfig {
                jit_provisioning: jit,
                ..SsoConfig::default()
            },
            by_link: linked_user(linked),
            by_email,
            new_user_id: "usr_new".into(),
            new_grant_id: "grt_new".into(),
            new_username: "alice@example.com".into(),
            replayed,
            unchecked: false,
        })),
        ..Facts::default()
    }
}

/// The rules, stated independently: (reason, failing check) or the subject granted.
fn expected(
    verdict: Verdict3,
    replayed: bool,
    linked: Linked,
    email_match: bool,
    jit: bool,
    grant: bool,
) -> Result<&'static str, (Reason, Check)> {
    if !grant {
        return Err((Reason::GrantTypeNotAllowed, Check::GrantTypeAllowed));
    }
    match verdict {
        Verdict3::NoIdp => return Err((Reason::SamlNotConfigured, Check::SamlResponse)),
        Verdict3::Refused => return Err((Reason::SamlAudienceMismatch, Check::SamlResponse)),
        Verdict3::Valid => {}
    }
    if replayed {
        return Err((Reason::SamlReplay, Check::SamlReplay));
    }
    match linked {
        Linked::Active => return Ok("usr_alice"),
        Linked::Disabled => return Err((Reason::UserDisabled, Check::SamlUser)),
        Linked::Locked => return Err((Reason::UserLocked, Check::SamlUser)),
        Linked::Service => return Err((Reason::SamlUserUnknown, Check::SamlUser)),
        Linked::Nobody => {}
    }
    if email_match {
        return Ok("usr_by_email");
    }
    if jit {
        Ok("usr_new")
    } else {
        Err((Reason::SamlUserUnknown, Check::SamlUser))
    }
}

#[test]
fn every_combination_gets_the_stated_outcome() {
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Asaml2-bearer&client_id=app&client_secret={SECRET}&assertion={ASSERTION}"
    );
    let mut n = 0;
    for verdict in [Verdict3::NoIdp, Verdict3::Refused, Verdict3::Valid] {
        for replayed in [false, true] {
            for linked in [
                Linked::Nobody,
                Linked::Active,
                Linked::Disabled,
                Linked::Locked,
                Linked::Service,
            ] {
                for email_match in [false, true] {
                    for jit in [false, true] {
                        for enforced in [false, true] {
                            for grant in [false, true] {
                                for (dry_run, refresh) in
                                    [(false, false), (false, true), (true, false), (true, true)]
                                {
                                    n += 1;
                                    let f = facts(
                                        verdict,
                                        replayed,
                                        linked,
                                        email_match,
                                        jit,
                                        enforced,
                                        grant,
                                        refresh,
                                    );
                                    let o = DecideOptions {
                                        dry_run,
                                        ..DecideOptions::default()
                                    };
                                    let d = run(&body, &f, o);
                                    let case = format!(
                                        "{verdict:?} replayed={replayed} {linked:?} email={email_match} jit={jit} enforced={enforced} grant={grant} dry_run={dry_run} refresh={refresh}"
                                    );
                                    let trace = format!("{:?}", d.trace);
                                    assert!(!trace.contains(ASSERTION), "{case}: {trace}");
                                    match expected(
                                        verdict,
                                        replayed,
                                        linked,
                                        email_match,
                                        jit,
                                        grant,
                                    ) {
                                        Ok(subject) => {
                                            let g = d.outcome.as_ref().unwrap_or_else(|e| {
                                                panic!("{case}: refused {e:?}\n{trace}")
                                            });
                                            assert_eq!(g.subject, subject, "{case}");
                                            // A refresh token where the client may refresh:
                                            // a grant of its own, started unless a dry run.
                                            assert_eq!(g.login.is_some(), refresh, "{case}");
                                            if let Some(l) = &g.login {
                                                assert_eq!(l.grant_id, "grt_new", "{case}");
                                                assert!(l.refresh_idle_until.is_some());
                                                assert!(!l.id_token, "{case}");
                                            }
                                            match &d.grant_effect {
                                                Some(GrantEffect::Start { grant }) => {
                                                    assert!(refresh && !dry_run, "{case}");
                                                    assert_eq!(grant.user_id, subject);
                                                    assert_eq!(grant.auth_method, "saml");
                                                }
                                                None => assert!(!refresh || dry_run, "{case}"),
                                                other => panic!("{case}: {other:?}"),
                                            }
                                            match (d.saml_bearer_write.as_deref(), dry_run) {
                                                (None, true) => {}
                                                (
                                                    Some(SamlBearerWrite {
                                                        user,
                                                        write,
                                                        replay_keys,
                                                        ..
                                                    }),
                                                    false,
                                                ) => {
                                                    assert_eq!(user.id, subject, "{case}");
                                                    assert_eq!(replay_keys.len(), 1, "{case}");
                                                    assert_eq!(
                                                        *write == UserWrite::Create,
                                                        subject == "usr_new",
                                                        "{case}"
                                                    );
                                                }
                                                other => panic!("{case}: write {other:?}"),
                                            }
                                        }
                                        Err((reason, check)) => {
                                            let denial =
                                                d.outcome.as_ref().err().unwrap_or_else(|| {
                                                    panic!("{case}: granted\n{trace}")
                                                });
                                            assert_eq!(denial.reason, reason, "{case}\n{trace}");
                                            let failed: Vec<_> = d
                                                .trace
                                                .steps()
                                                .iter()
                                                .filter(|s| s.verdict == Verdict::Fail)
                                                .collect();
                                            assert_eq!(failed.len(), 1, "{case}");
                                            assert_eq!(failed[0].check, check, "{case}");
                                            assert!(d.saml_bearer_write.is_none(), "{case}");
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(n, 3 * 2 * 5 * 2 * 2 * 2 * 2 * 4);
}

#[test]
fn the_assertion_parameter_is_required() {
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Asaml2-bearer&client_id=app&client_secret={SECRET}"
    );
    let f = facts(
        Verdict3::Valid,
        false,
        Linked::Active,
        false,
        false,
        false,
        true,
        false,
    );
    let d = run(&body, &f, DecideOptions::default());
    assert_eq!(d.outcome.unwrap_err().reason, Reason::ParameterMissing);
}

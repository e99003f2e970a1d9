//! The interactive login's decisions, exhaustively: the authorization endpoint over every
//! combination of client, redirect URI, response type, PKCE, prompt, session and SSO
//! enforcement; the code exchange over every state of the code, redirect URI, verifier
//! and person; the refresh over every state of the token and person. Each is checked
//! against an independent statement of the policy: the first failing check in the
//! documented order decides.

use std::net::IpAddr;
use std::sync::Arc;

use tessera_core::Reason;
use tessera_core::decision::{
    AuthorizeFacts, AuthorizeOutcome, AuthorizeParams, ClientFacts, CodeFacts, DecideOptions,
    Decision, Facts, GrantEffect, GrantFacts, RefreshFacts, SessionFacts, decide, decide_authorize,
    parse,
};
use tessera_core::interactive::{AuthCode, LoginGrant, RefreshToken, hash_token, s256};
use tessera_core::model::{
    AuthMethod, Client, ClientId, GrantType, InteractiveSettings, IpAllowList, Org, OrgSlug,
    ScopeName, StoredSecret, User, UserState, UserType,
};
use tessera_core::request::RawTokenRequest;
use tessera_core::secret::hash_client_secret;
use tessera_core::trace::Verdict;

const NOW: i64 = 1_800_000_000;
const REDIRECT: &str = "https://app.example/cb";
const VERIFIER: &str = "a-very-long-code-verifier-with-enough-entropy-0123456789";
const SECRET: &str = "tsec_web";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Unknown,
    Disabled,
    NoCodeGrant,
    Public,
    /// A confidential client with PKCE turned off.
    ConfidentialNoPkce,
    /// A confidential client with PKCE required (the default).
    Confidential,
}

fn org(enforced: bool) -> Arc<Org> {
    Arc::new(Org {
        id: 1,
        slug: OrgSlug::parse("acme").unwrap(),
        enabled: true,
        sso_enforced: enforced,
        created_at: 0,
    })
}

fn client(kind: Kind, enforced: bool, refresh: bool) -> Option<Arc<ClientFacts>> {
    if kind == Kind::Unknown {
        return None;
    }
    let public = kind == Kind::Public;
    let mut grant_types = vec![GrantType::AuthorizationCode];
    if kind == Kind::NoCodeGrant {
        grant_types = vec![GrantType::ClientCredentials];
    }
    if refresh {
        grant_types.push(GrantType::RefreshToken);
    }
    Some(Arc::new(ClientFacts {
        client: Client {
            client_id: ClientId::parse("app").unwrap(),
            org_id: 1,
            name: "app".into(),
            enabled: kind != Kind::Disabled,
            grant_types,
            scopes: vec![ScopeName::parse("reports:read").unwrap()],
            redirect_uris: vec![REDIRECT.into()],
            auth_methods: if public {
                vec![AuthMethod::None]
            } else {
                vec![AuthMethod::ClientSecretPost]
            },
            ip_allowlist: IpAllowList::default(),
            service_account_id: None,
            token_ttl: 600,
            interactive: InteractiveSettings {
                pkce_required: kind != Kind::ConfidentialNoPkce,
                ..Default::default()
            },
            jwks: None,
            jwks_uri: None,
            created_at: 0,
        },
        secrets: if public {
            vec![]
        } else {
            vec![StoredSecret {
                id: "sec_1".into(),
                client_id: ClientId::parse("app").unwrap(),
                hash: hash_client_secret(SECRET),
                hint: "_web".into(),
                created_at: 0,
                expires_at: None,
                revoked_at: None,
                last_used_at: None,
                last_used_from: None,
            }]
        },
        org: org(enforced),
        service_account: None,
        known_scopes: [ScopeName::parse("reports:read").unwrap()].into(),
    }))
}

fn person(state: UserState) -> User {
    User {
        id: "usr_alice".into(),
        org_id: 1,
        user_type: UserType::Human,
        username: "alice".into(),
        email: Some("alice@example.com".into()),
        display_name: None,
        roles: vec![],
        state,
        state_changed_by: None,
        state_changed_at: None,
        locked_until: None,
        password_hash: None,
        created_at: 0,
        saml_name_id: None,
        failed_logins: 0,
        last_password_login_at: None,
        scim: None,
    }
}

// ----- the authorization endpoint -----

#[derive(Clone, Copy, Debug, PartialEq)]
enum Redirect {
    Registered,
    Other,
    /// Absent: the client has exactly one registered, which is assumed.
    Absent,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum ResponseType {
    Code,
    Token,
    Absent,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Pkce {
    S256,
    Plain,
    Absent,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Prompt {
    Absent,
    None,
    Login,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Session {
    Absent,
    OtherOrg,
    Password,
    Saml,
    /// A password session of a break-glass user.
    BreakGlass,
    /// A SAML session of a user disabled since.
    Disabled,
}

fn query(r: Redirect, rt: ResponseType, p: Pkce, pr: Prompt) -> String {
    let mut q = vec![("client_id", "app".to_string()), ("state", "s".into())];
    match r {
        Redirect::Registered => q.push(("redirect_uri", REDIRECT.into())),
        Redirect::Other => q.push(("redirect_uri", "https://evil.example/cb".into())),
        Redirect::Absent => {}
    }
    match rt {
        ResponseType::Code => q.push(("response_type", "code".into())),
        ResponseType::Token => q.push(("response_type", "token".into())),
        ResponseType::Absent => {}
    }
    q.push(("scope", "openid reports:read".into()));
    match p {
        Pkce::S256 => {
            q.push(("code_challenge", s256(VERIFIER)));
            q.push(("code_challenge_method", "S256".into()));
        }
        Pkce::Plain => {
            q.push(("code_challenge", s256(VERIFIER)));
            q.push(("code_challenge_method", "plain".into()));
        }
        Pkce::Absent => {}
    }
    match pr {
        Prompt::Absent => {}
        Prompt::None => q.push(("prompt", "none".into())),
        Prompt::Login => q.push(("prompt", "login".into())),
    }
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in q {
        s.append_pair(k, &v);
    }
    s.finish()
}

fn session(s: Session) -> Option<SessionFacts> {
    let (org_id, method, state, break_glass) = match s {
        Session::Absent => return None,
        Session::OtherOrg => (2, "saml", UserState::Active, false),
        Session::Password => (1, "password", UserState::Active, false),
        Session::Saml => (1, "saml", UserState::Active, false),
        Session::BreakGlass => (1, "password", UserState::Active, true),
        Session::Disabled => (1, "saml", UserState::Disabled, false),
    };
    Some(SessionFacts {
        org_id,
        user: person(state),
        auth_time: NOW - 100,
        sid: "sid".into(),
        method: method.into(),
        break_glass,
    })
}

/// What the endpoint should do, stated independently.
#[derive(Debug, PartialEq)]
enum Expect {
    Page(Reason),
    Redirect(Reason),
    Login { sso: bool },
    Code,
}

#[allow(clippy::too_many_arguments)]
fn expected(
    k: Kind,
    r: Redirect,
    rt: ResponseType,
    p: Pkce,
    pr: Prompt,
    s: Session,
    enforced: bool,
) -> Expect {
    if k == Kind::Unknown {
        return Expect::Page(Reason::ClientUnknown);
    }
    if r == Redirect::Other {
        return Expect::Page(Reason::RedirectUriMismatch);
    }
    match rt {
        ResponseType::Absent => return Expect::Redirect(Reason::ParameterMissing),
        ResponseType::Token => return Expect::Redirect(Reason::ResponseTypeUnsupported),
        ResponseType::Code => {}
    }
    if k == Kind::Disabled {
        return Expect::Redirect(Reason::ClientDisabled);
    }
    if k == Kind::NoCodeGrant {
        return Expect::Redirect(Reason::GrantTypeNotAllowed);
    }
    match p {
        Pkce::Plain => return Expect::Redirect(Reason::PkceMethodUnsupported),
        Pkce::Absent if k != Kind::ConfidentialNoPkce => {
            return Expect::Redirect(Reason::PkceRequired);
        }
        _ => {}
    }
    let login = |sso: bool| {
        if pr == Prompt::None {
            Expect::Redirect(Reason::LoginRequired)
        } else {
            Expect::Login { sso }
        }
    };
    match s {
        Session::Absent | Session::OtherOrg => return login(enforced),
        _ if pr == Prompt::Login => return login(enforced),
        Session::Password if enforced => return login(true),
        _ => {}
    }
    if s == Session::Disabled {
        return Expect::Redirect(Reason::UserDisabled);
    }
    Expect::Code
}

#[test]
fn the_authorization_endpoint_over_every_combination() {
    use Kind::*;
    let mut n = 0;
    for k in [
        Unknown,
        Disabled,
        NoCodeGrant,
        Public,
        ConfidentialNoPkce,
        Confidential,
    ] {
        for r in [Redirect::Registered, Redirect::Other, Redirect::Absent] {
            for rt in [
                ResponseType::Code,
                ResponseType::Token,
                ResponseType::Absent,
            ] {
                for p in [Pkce::S256, Pkce::Plain, Pkce::Absent] {
                    for pr in [Prompt::Absent, Prompt::None, Prompt::Login] {
                        for s in [
                            Session::Absent,
                            Session::OtherOrg,
                            Session::Password,
                            Session::Saml,
                            Session::BreakGlass,
                            Session::Disabled,
                        ] {
                            for enforced in [false, true] {
                                let params = AuthorizeParams::parse(&query(r, rt, p, pr));
                                let facts = AuthorizeFacts {
                                    client: client(k, enforced, true),
                                    session: session(s),
                                };
                                let d = decide_authorize(&params, &facts, NOW);
                                let got = match &d.outcome {
                                    AuthorizeOutcome::ErrorPage(den) => Expect::Page(den.reason),
                                    AuthorizeOutcome::ErrorRedirect(den) => {
                                        Expect::Redirect(den.reason)
                                    }
                                    AuthorizeOutcome::Login { sso } => Expect::Login { sso: *sso },
                                    AuthorizeOutcome::Code(c) => {
                                        assert_eq!(c.user_id, "usr_alice");
                                        assert_eq!(c.code_challenge.is_some(), p == Pkce::S256);
                                        Expect::Code
                                    }
                                };
                                let want = expected(k, r, rt, p, pr, s, enforced);
                                let ctx = format!(
                                    "{k:?} {r:?} {rt:?} {p:?} {pr:?} {s:?} enforced={enforced}"
                                );
                                assert_eq!(got, want, "{ctx}\n{:#?}", d.trace);
                                // A refusal is the trace's one failing step; the redirect
                                // URI is known exactly when the refusal may go there.
                                let fails = d
                                    .trace
                                    .steps()
                                    .iter()
                                    .filter(|s| s.verdict == Verdict::Fail)
                                    .count();
                                match got {
                                    Expect::Page(_) => {
                                        assert_eq!(fails, 1, "{ctx}");
                                        assert!(d.redirect_uri.is_none(), "{ctx}");
                                    }
                                    Expect::Redirect(_) => {
                                        assert_eq!(fails, 1, "{ctx}");
                                        assert_eq!(
                                            d.redirect_uri.as_deref(),
                                            Some(REDIRECT),
                                            "{ctx}"
                                        );
                                        assert_eq!(d.state.as_deref(), Some("s"), "{ctx}");
                                    }
                                    _ => assert_eq!(fails, 0, "{ctx}"),
                                }
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(n, 6 * 3 * 3 * 3 * 3 * 6 * 2);
}

#[test]
fn authorization_decisions_are_deterministic_and_bounded() {
    let facts = AuthorizeFacts {
        client: client(Kind::Public, false, true),
        session: session(Session::Saml),
    };
    let q = query(
        Redirect::Registered,
        ResponseType::Code,
        Pkce::S256,
        Prompt::Absent,
    );
    let a = decide_authorize(&AuthorizeParams::parse(&q), &facts, NOW);
    let b = decide_authorize(&AuthorizeParams::parse(&q), &facts, NOW);
    assert_eq!(a.outcome, b.outcome);
    assert_eq!(a.trace, b.trace);
    // Repeated parameters, oversized state and nonce, and bad max_age are refused.
    for (extra, reason) in [
        ("&scope=x", Reason::ParameterDuplicated),
        (
            &*format!("&nonce={}", "n".repeat(600)),
            Reason::ParameterInvalid,
        ),
        ("&max_age=soon", Reason::ParameterInvalid),
        ("&prompt=none%20login", Reason::PromptUnsupported),
        ("&scope2=1&prompt=bogus", Reason::PromptUnsupported),
    ] {
        let d = decide_authorize(&AuthorizeParams::parse(&format!("{q}{extra}")), &facts, NOW);
        match d.outcome {
            AuthorizeOutcome::ErrorRedirect(den) => assert_eq!(den.reason, reason, "{extra}"),
            other => panic!("{extra}: {other:?}"),
        }
    }
    let q2 = format!("{q}&state={}", "s".repeat(3000));
    let d = decide_authorize(&AuthorizeParams::parse(&q2), &facts, NOW);
    assert!(matches!(d.outcome, AuthorizeOutcome::ErrorRedirect(_)));
    // max_age older than the login sends the person to log in again.
    let d = decide_authorize(
        &AuthorizeParams::parse(&format!("{q}&max_age=10")),
        &facts,
        NOW,
    );
    assert_eq!(d.outcome, AuthorizeOutcome::Login { sso: false });
}

// ----- the code exchange -----

#[derive(Clone, Copy, Debug, PartialEq)]
enum CodeState {
    Unknown,
    Used,
    Expired,
    OtherClient,
    Valid,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Verifier {
    Right,
    Wrong,
    Absent,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Owner {
    Active,
    Disabled,
    Gone,
}

fn code(state: CodeState, challenge: bool) -> Option<AuthCode> {
    if state == CodeState::Unknown {
        return None;
    }
    Some(AuthCode {
        hash: hash_token("tcode_x"),
        grant_id: "grt_1".into(),
        org_id: 1,
        client_id: if state == CodeState::OtherClient {
            "other".into()
        } else {
            "app".into()
        },
        user_id: "usr_alice".into(),
        redirect_uri: REDIRECT.into(),
        scopes: vec!["openid".into()],
        code_challenge: challenge.then(|| s256(VERIFIER)),
        nonce: Some("n".into()),
        auth_time: NOW - 30,
        sid: "sid".into(),
        auth_method: "saml".into(),
        created_at: NOW - 10,
        expires_at: if state == CodeState::Expired {
            NOW - 1
        } else {
            NOW + 50
        },
        used_at: (state == CodeState::Used).then_some(NOW - 5),
    })
}

fn owner(o: Owner) -> Option<User> {
    match o {
        Owner::Active => Some(person(UserState::Active)),
        Owner::Disabled => Some(person(UserState::Disabled)),
        Owner::Gone => None,
    }
}

fn run(body: &str, facts: &Facts) -> Decision {
    let raw = RawTokenRequest {
        content_type: Some("application/x-www-form-urlencoded"),
        body: body.as_bytes(),
        body_too_large: false,
        authorization: None,
        source_ip: "10.0.0.1".parse::<IpAddr>().unwrap(),
    };
    let opts = DecideOptions {
        issuer: "https://id.example",
        ..Default::default()
    };
    decide(parse(&raw), facts, NOW, opts)
}

fn auth(public: bool) -> String {
    if public {
        "client_id=app".into()
    } else {
        format!("client_id=app&client_secret={SECRET}")
    }
}

#[test]
fn the_code_exchange_over_every_combination() {
    let mut n = 0;
    for state in [
        CodeState::Unknown,
        CodeState::Used,
        CodeState::Expired,
        CodeState::OtherClient,
        CodeState::Valid,
    ] {
        for same_redirect in [true, false] {
            for v in [Verifier::Right, Verifier::Wrong, Verifier::Absent] {
                for challenge in [true, false] {
                    for o in [Owner::Active, Owner::Disabled, Owner::Gone] {
                        for refresh in [true, false] {
                            for public in [true, false] {
                                let kind = if public {
                                    Kind::Public
                                } else {
                                    Kind::Confidential
                                };
                                let facts = Facts {
                                    client: client(kind, false, refresh),
                                    grant: GrantFacts::Code(Box::new(CodeFacts {
                                        code: code(state, challenge),
                                        user: owner(o),
                                    })),
                                    ..Facts::default()
                                };
                                let mut body = format!(
                                    "grant_type=authorization_code&code=tcode_x&{}&redirect_uri={}",
                                    auth(public),
                                    if same_redirect {
                                        REDIRECT
                                    } else {
                                        "https://app.example/other"
                                    }
                                );
                                match v {
                                    Verifier::Right => body.push_str(&format!("&code_verifier={VERIFIER}")),
                                    Verifier::Wrong => body.push_str("&code_verifier=wrong-wrong-wrong-wrong-wrong-wrong-wrong-wrong"),
                                    Verifier::Absent => {}
                                }
                                let d = run(&body, &facts);
                                let want: Result<(), Reason> = match () {
                                    _ if state == CodeState::Unknown => Err(Reason::CodeInvalid),
                                    _ if state == CodeState::Used => Err(Reason::CodeReused),
                                    _ if state == CodeState::Expired => Err(Reason::CodeExpired),
                                    _ if state == CodeState::OtherClient => {
                                        Err(Reason::CodeInvalid)
                                    }
                                    _ if !same_redirect => Err(Reason::RedirectUriMismatch),
                                    _ if challenge && v != Verifier::Right => {
                                        Err(Reason::PkceVerifierMismatch)
                                    }
                                    _ if !challenge && v != Verifier::Absent => {
                                        Err(Reason::PkceVerifierMismatch)
                                    }
                                    _ if o == Owner::Gone => Err(Reason::CodeInvalid),
                                    _ if o == Owner::Disabled => Err(Reason::UserDisabled),
                                    _ => Ok(()),
                                };
                                let ctx = format!(
                                    "{state:?} same_redirect={same_redirect} {v:?} challenge={challenge} {o:?} refresh={refresh} public={public}"
                                );
                                assert_eq!(
                                    d.outcome.as_ref().map(|_| ()).map_err(|e| e.reason),
                                    want,
                                    "{ctx}\n{:#?}",
                                    d.trace
                                );
                                match (&d.outcome, &d.grant_effect) {
                                    (Ok(g), Some(GrantEffect::Redeem { grant, .. })) => {
                                        let l = g.login.as_ref().unwrap();
                                        assert_eq!(
                                            l.refresh_idle_until.is_some(),
                                            refresh,
                                            "{ctx}"
                                        );
                                        assert!(l.id_token, "{ctx}");
                                        assert_eq!(l.nonce.as_deref(), Some("n"));
                                        assert_eq!(grant.id, "grt_1");
                                        assert_eq!(g.subject, "usr_alice");
                                    }
                                    (Err(e), Some(GrantEffect::Revoke { grant_id, reason })) => {
                                        assert_eq!(e.reason, Reason::CodeReused, "{ctx}");
                                        assert_eq!(
                                            (grant_id.as_str(), *reason),
                                            ("grt_1", Reason::CodeReused)
                                        );
                                    }
                                    (Err(_), None) => {}
                                    other => panic!("{ctx}: {other:?}"),
                                }
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(n, 5 * 2 * 3 * 2 * 3 * 2 * 2);
}

// ----- refresh -----

#[derive(Clone, Copy, Debug, PartialEq)]
enum TokenState {
    Unknown,
    OtherClient,
    Revoked,
    Used,
    PastFamilyEnd,
    Idle,
    Valid,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scope {
    Absent,
    Narrower,
    Wider,
}

fn token(state: TokenState) -> Option<(RefreshToken, LoginGrant)> {
    if state == TokenState::Unknown {
        return None;
    }
    let t = RefreshToken {
        hash: hash_token("trt_x"),
        grant_id: "grt_1".into(),
        created_at: NOW - 100,
        idle_expires_at: if state == TokenState::Idle {
            NOW - 1
        } else {
            NOW + 100
        },
        used_at: (state == TokenState::Used).then_some(NOW - 50),
    };
    let g = LoginGrant {
        id: "grt_1".into(),
        org_id: 1,
        client_id: if state == TokenState::OtherClient {
            "other".into()
        } else {
            "app".into()
        },
        user_id: "usr_alice".into(),
        scopes: vec!["openid".into(), "reports:read".into()],
        nonce: Some("n".into()),
        auth_time: NOW - 1000,
        sid: "sid".into(),
        auth_method: "saml".into(),
        created_at: NOW - 1000,
        expires_at: if state == TokenState::PastFamilyEnd {
            NOW
        } else {
            NOW + 1000
        },
        revoked_at: (state == TokenState::Revoked).then_some(NOW - 10),
        revoked_reason: (state == TokenState::Revoked).then(|| "user_disabled".into()),
    };
    Some((t, g))
}

#[test]
fn refresh_over_every_combination() {
    let mut n = 0;
    for state in [
        TokenState::Unknown,
        TokenState::OtherClient,
        TokenState::Revoked,
        TokenState::Used,
        TokenState::PastFamilyEnd,
        TokenState::Idle,
        TokenState::Valid,
    ] {
        for o in [Owner::Active, Owner::Disabled, Owner::Gone] {
            for scope in [Scope::Absent, Scope::Narrower, Scope::Wider] {
                for public in [true, false] {
                    let kind = if public {
                        Kind::Public
                    } else {
                        Kind::Confidential
                    };
                    let facts = Facts {
                        client: client(kind, false, true),
                        grant: GrantFacts::Refresh(Box::new(RefreshFacts {
                            token: token(state),
                            user: owner(o),
                            break_glass: false,
                        })),
                        ..Facts::default()
                    };
                    let mut body = format!(
                        "grant_type=refresh_token&refresh_token=trt_x&{}",
                        auth(public)
                    );
                    match scope {
                        Scope::Absent => {}
                        Scope::Narrower => body.push_str("&scope=openid"),
                        Scope::Wider => body.push_str("&scope=openid%20admin"),
                    }
                    let d = run(&body, &facts);
                    let want: Result<(), Reason> = match () {
                        _ if state == TokenState::Unknown || state == TokenState::OtherClient => {
                            Err(Reason::RefreshTokenInvalid)
                        }
                        _ if state == TokenState::Revoked => Err(Reason::RefreshTokenRevoked),
                        _ if state == TokenState::Used => Err(Reason::RefreshTokenReused),
                        _ if state == TokenState::PastFamilyEnd || state == TokenState::Idle => {
                            Err(Reason::RefreshTokenExpired)
                        }
                        _ if o == Owner::Gone => Err(Reason::RefreshTokenRevoked),
                        _ if o == Owner::Disabled => Err(Reason::UserDisabled),
                        _ if scope == Scope::Wider => Err(Reason::ScopeNotAllowed),
                        _ => Ok(()),
                    };
                    let ctx = format!("{state:?} {o:?} {scope:?} public={public}");
                    assert_eq!(
                        d.outcome.as_ref().map(|_| ()).map_err(|e| e.reason),
                        want,
                        "{ctx}\n{:#?}",
                        d.trace
                    );
                    match (&d.outcome, &d.grant_effect) {
                        (Ok(g), Some(GrantEffect::Rotate { .. })) => {
                            let want_scopes: Vec<String> = match scope {
                                Scope::Narrower => vec!["openid".into()],
                                _ => vec!["openid".into(), "reports:read".into()],
                            };
                            assert_eq!(g.scopes, want_scopes, "{ctx}");
                            let l = g.login.as_ref().unwrap();
                            assert_eq!(l.nonce, None, "{ctx}: a refreshed ID token has no nonce");
                            assert!(
                                l.refresh_idle_until.unwrap() <= NOW + 1000,
                                "{ctx}: never past the family's end"
                            );
                        }
                        (Err(e), Some(GrantEffect::Revoke { reason, .. })) => {
                            assert_eq!(
                                (e.reason, *reason),
                                (Reason::RefreshTokenReused, Reason::RefreshTokenReused),
                                "{ctx}"
                            );
                        }
                        (Err(_), None) => {}
                        other => panic!("{ctx}: {other:?}"),
                    }
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 7 * 3 * 3 * 2);
}

#[test]
fn a_public_client_may_not_use_machine_grants_and_a_confidential_one_must_authenticate() {
    // A public client names itself only for the interactive grants.
    let facts = Facts {
        client: client(Kind::Public, false, true),
        ..Facts::default()
    };
    let d = run("grant_type=client_credentials&client_id=app", &facts);
    assert_eq!(d.reason(), Some(Reason::ClientAuthMissing));
    // A confidential client that sends its id alone is told to authenticate.
    let facts = Facts {
        client: client(Kind::Confidential, false, true),
        grant: GrantFacts::Refresh(Box::new(RefreshFacts {
            token: token(TokenState::Valid),
            user: owner(Owner::Active),
            break_glass: false,
        })),
        ..Facts::default()
    };
    let d = run(
        "grant_type=refresh_token&refresh_token=trt_x&client_id=app",
        &facts,
    );
    assert_eq!(d.reason(), Some(Reason::ClientAuthMissing));
    assert!(d.outcome.unwrap_err().description.contains("confidential"));
    // A dry run asks for no effect.
    let facts = Facts {
        client: client(Kind::Public, false, true),
        grant: GrantFacts::Refresh(Box::new(RefreshFacts {
            token: token(TokenState::Used),
            user: owner(Owner::Active),
            break_glass: false,
        })),
        ..Facts::default()
    };
    let raw = RawTokenRequest {
        content_type: None,
        body: b"grant_type=refresh_token&refresh_token=trt_x&client_id=app",
        body_too_large: false,
        authorization: None,
        source_ip: "10.0.0.1".parse().unwrap(),
    };
    let d = decide(
        parse(&raw),
        &facts,
        NOW,
        DecideOptions {
            dry_run: true,
            ..Default::default()
        },
    );
    assert_eq!(d.reason(), Some(Reason::RefreshTokenReused));
    assert_eq!(d.grant_effect, None, "a dry run revokes nothing");
}

#[test]
fn a_refresh_after_sso_enforcement_needs_an_sso_login() {
    for (method, break_glass, enforced, want) in [
        ("password", false, true, Some(Reason::SsoRequired)),
        ("password", true, true, None),
        ("saml", false, true, None),
        ("password", false, false, None),
    ] {
        let mut t = token(TokenState::Valid);
        if let Some((_, g)) = &mut t {
            g.auth_method = method.into();
        }
        let facts = Facts {
            client: client(Kind::Public, enforced, true),
            grant: GrantFacts::Refresh(Box::new(RefreshFacts {
                token: t,
                user: owner(Owner::Active),
                break_glass,
            })),
            ..Facts::default()
        };
        let d = run(
            "grant_type=refresh_token&refresh_token=trt_x&client_id=app",
            &facts,
        );
        assert_eq!(
            d.reason(),
            want,
            "{method} break_glass={break_glass} enforced={enforced}"
        );
    }
}

//! What the decision tests share: a client of org `acme`, a user, and running a token
//! request's body through parse and decide.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;

use tessera_core::decision::{ClientFacts, DecideOptions, Decision, Facts, decide, parse};
use tessera_core::model::{
    Actor, AuthMethod, Client, ClientId, GrantType, IpAllowList, Org, OrgSlug, ScopeName,
    StoredSecret, User, UserState, UserType,
};
use tessera_core::request::RawTokenRequest;
use tessera_core::secret::hash_client_secret;

pub const NOW: i64 = 1_800_000_000;
pub const SECRET: &str = "tsec_client";
pub const PASSWORD: &str = "correct horse battery staple";
pub const WRONG_PASSWORD: &str = "Tr0ub4dor&3-guess";

pub fn client_facts(enforced: bool, grants: Vec<GrantType>) -> ClientFacts {
    ClientFacts {
        client: Client {
            client_id: ClientId::parse("app").unwrap(),
            org_id: 1,
            name: "legacy app".into(),
            enabled: true,
            grant_types: grants,
            scopes: vec![ScopeName::parse("a").unwrap()],
            redirect_uris: vec![],
            auth_methods: vec![AuthMethod::ClientSecretBasic, AuthMethod::ClientSecretPost],
            ip_allowlist: IpAllowList::default(),
            service_account_id: None,
            token_ttl: 600,
            interactive: Default::default(),
            jwks: None,
            jwks_uri: None,
            created_at: 0,
        },
        secrets: vec![StoredSecret {
            id: "sec_1".into(),
            client_id: ClientId::parse("app").unwrap(),
            hash: hash_client_secret(SECRET),
            hint: "ient".into(),
            created_at: 0,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
            last_used_from: None,
        }],
        org: Arc::new(Org {
            id: 1,
            slug: OrgSlug::parse("acme").unwrap(),
            enabled: true,
            sso_enforced: enforced,
            created_at: 0,
        }),
        service_account: None,
        known_scopes: vec![ScopeName::parse("a").unwrap()].into(),
    }
}

pub fn user(kind: UserType, state: UserState, locked_until: Option<i64>, hash: bool) -> User {
    User {
        id: "usr_alice".into(),
        org_id: 1,
        user_type: kind,
        username: "alice".into(),
        email: Some("alice@example.com".into()),
        display_name: None,
        roles: vec![],
        state,
        state_changed_by: (state != UserState::Active).then_some(Actor::LockoutPolicy),
        state_changed_at: (state != UserState::Active).then_some(NOW - 60),
        locked_until,
        password_hash: hash.then(|| format!("plain:{PASSWORD}")),
        saml_name_id: None,
        failed_logins: 0,
        last_password_login_at: None,
        scim: None,
        created_at: 0,
    }
}

pub fn run(body: &str, f: &Facts, o: DecideOptions) -> Decision {
    let raw = RawTokenRequest {
        content_type: Some("application/x-www-form-urlencoded"),
        body: body.as_bytes(),
        body_too_large: false,
        authorization: None,
        source_ip: "10.0.0.7".parse::<IpAddr>().unwrap(),
    };
    decide(parse(&raw), f, NOW, o)
}

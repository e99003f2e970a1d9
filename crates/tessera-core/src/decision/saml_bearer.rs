//! The SAML 2.0 bearer assertion grant (RFC 7522 §2.1): a client of the org exchanges a
//! signed assertion from the org's IdP for an access token for the person it names. The
//! assertion was validated by the SAML validator the ACS uses (its verdict is a fact);
//! here it is judged in order: the assertion, its first use, the person (the same link
//! and just-in-time rules as a browser login, [`plan_saml_login`]), the scopes.
//!
//! SSO enforcement allows this grant: the person was authenticated by the org's IdP.

use crate::interactive::LoginGrant;
use crate::model::{GrantType, Timestamp, User};
use crate::reason::Reason;
use crate::sso::{LoginPlan, SamlIdentity, SsoConfig, plan_saml_login};
use crate::store::UserWrite;
use crate::text::clip;
use crate::trace::{Check, Denial, Trace};

use super::scope::check_scopes;
use super::{ClientFacts, Decision, Facts, Grant, GrantEffect, GrantFacts, LoginIssue};
use crate::request::TokenRequest;

/// What the bearer grant reads: the assertion's verdict and the users it may name.
#[derive(Debug, Clone, Default)]
pub struct SamlBearerFacts {
    /// The validator's verdict on the assertion (`None`: the org has no IdP).
    pub verdict: Option<Result<BearerAssertion, (Reason, String)>>,
    /// The org's SSO configuration (mapping, JIT).
    pub config: SsoConfig,
    /// The user linked to the assertion's NameID, and the human with its email.
    pub by_link: Option<User>,
    pub by_email: Option<User>,
    /// The id and username a just-in-time user would get.
    pub new_user_id: String,
    /// The id of the grant a refresh token would belong to.
    pub new_grant_id: String,
    pub new_username: String,
    /// The assertion was used before (found when its use was recorded).
    pub replayed: bool,
    /// Not validated yet: the token endpoint validates it only once the client has
    /// authenticated (a probe decision stops here).
    pub unchecked: bool,
}

/// A verified assertion, as the grant needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerAssertion {
    pub identity: SamlIdentity,
    pub issuer: String,
    pub assertion_id: String,
    /// The algorithms of the verified signatures.
    pub signature_algorithms: Vec<String>,
    /// Identifiers to remember until their expiry (single use).
    pub replay_keys: Vec<(String, Timestamp)>,
}

/// What a granted bearer assertion writes, in one transaction: its identifiers (a second
/// use is a replay) and the person as the IdP described them (link, attributes, or a new
/// user). When the stored user changed since it was read, nothing is written and the
/// request is decided again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamlBearerWrite {
    pub replay_keys: Vec<(String, Timestamp)>,
    pub user: User,
    pub write: UserWrite,
    pub planned_from: Option<User>,
}

/// The grant once the client has authenticated and may use it.
pub(super) fn decide(
    req: &TokenRequest,
    facts: &Facts,
    cf: &ClientFacts,
    now: Timestamp,
    dry_run: bool,
    trace: &mut Trace,
    d: &mut Decision,
) -> Result<Grant, Denial> {
    let none = SamlBearerFacts::default();
    let f = match &facts.grant {
        GrantFacts::SamlBearer(f) => f.as_ref(),
        _ => &none,
    };
    let org = &cf.org.slug;
    if f.unchecked {
        return Err(trace.fail(
            Check::SamlResponse,
            Reason::SamlMalformed,
            "the assertion was not validated",
        ));
    }
    let a = match &f.verdict {
        None => {
            return Err(trace.fail(
                Check::SamlResponse,
                Reason::SamlNotConfigured,
                format!(
                    "org '{org}' has no SAML identity provider configured: no assertion can be trusted (PUT /api/v2/sso/saml)"
                ),
            ));
        }
        Some(Err((reason, detail))) => {
            return Err(trace.fail(Check::SamlResponse, *reason, detail.clone()));
        }
        Some(Ok(a)) => a,
    };
    trace.pass(
        Check::SamlResponse,
        format!(
            "assertion {} signed ({}) by '{}'; NameID '{}'",
            clip(&a.assertion_id),
            a.signature_algorithms.join(", "),
            clip(&a.issuer),
            clip(&a.identity.name_id)
        ),
    );
    if f.replayed {
        return Err(trace.fail(
            Check::SamlReplay,
            Reason::SamlReplay,
            format!(
                "assertion {} was already used: a bearer assertion is good for one token request",
                clip(&a.assertion_id)
            ),
        ));
    }
    trace.pass(
        Check::SamlReplay,
        if dry_run {
            "dry run: its use is not recorded"
        } else {
            "first use of this assertion"
        },
    );
    let new_user = || {
        User::new_human(
            f.new_user_id.clone(),
            cf.org.id,
            f.new_username.clone(),
            now,
        )
    };
    let stored = f.by_link.clone().or_else(|| f.by_email.clone());
    let (user, write) = match plan_saml_login(
        &f.config,
        &a.identity,
        f.by_link.clone(),
        f.by_email.clone(),
        new_user,
        now,
    ) {
        LoginPlan::Linked(u) if stored.as_ref() == Some(&u) => (u, UserWrite::Unchanged),
        LoginPlan::Linked(u) | LoginPlan::LinkedByEmail(u) => (u, UserWrite::FromIdp),
        LoginPlan::Provisioned(u) => (u, UserWrite::Create),
        LoginPlan::Refused(reason, detail) => {
            return Err(trace.fail(Check::SamlUser, reason, detail));
        }
    };
    trace.pass(
        Check::SamlUser,
        match write {
            UserWrite::Create => format!(
                "user '{}' ({}) to be provisioned just in time",
                user.username, user.id
            ),
            _ => format!(
                "user '{}' ({}), linked to this NameID",
                user.username, user.id
            ),
        },
    );
    d.subject = Some(user.id.clone());
    let scopes = check_scopes(req.scope.as_deref(), cf, false, trace)?;
    if !dry_run {
        d.saml_bearer_write = Some(Box::new(SamlBearerWrite {
            replay_keys: a.replay_keys.clone(),
            planned_from: stored.filter(|_| write != UserWrite::Create),
            user: user.clone(),
            write,
        }));
    }
    // A client that may refresh gets a refresh token: a grant of its own, like a
    // browser login's (a SAML login, so SSO enforcement lets its refreshes through).
    let c = &cf.client;
    let login = c.grant_types.contains(&GrantType::RefreshToken).then(|| {
        let grant = LoginGrant {
            id: f.new_grant_id.clone(),
            org_id: cf.org.id,
            client_id: c.client_id.to_string(),
            user_id: user.id.clone(),
            scopes: scopes.clone(),
            nonce: None,
            auth_time: now,
            sid: format!("saml-bearer:{}", a.assertion_id),
            auth_method: "saml".into(),
            created_at: now,
            expires_at: now + c.interactive.refresh_token_ttl,
            revoked_at: None,
            revoked_reason: None,
        };
        if !dry_run {
            d.grant_effect = Some(GrantEffect::Start {
                grant: Box::new(grant.clone()),
            });
        }
        Box::new(LoginIssue {
            grant_id: grant.id,
            sid: grant.sid,
            auth_time: now,
            nonce: None,
            id_token: false,
            refresh_idle_until: Some(
                (now + c.interactive.refresh_idle_ttl).min(now + c.interactive.refresh_token_ttl),
            ),
            user: user.clone(),
        })
    });
    Ok(Grant {
        client_id: cf.client.client_id.to_string(),
        org: cf.org.slug.to_string(),
        subject: user.id,
        scopes,
        ttl: cf.client.token_ttl,
        login,
    })
}

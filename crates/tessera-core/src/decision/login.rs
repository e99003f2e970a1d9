//! The login page's decision: a person's checks without a client, behind the page's
//! own throttle per source address.

use std::net::IpAddr;

use crate::model::{Org, Timestamp};
use crate::reason::Reason;
use crate::request::ResourceOwnerCredentials;
use crate::throttle::{AttemptOutcome, ThrottleState};
use crate::trace::{Check, Denial, Trace};

use super::DecideOptions;
use super::person::{Asker, LoginUpdate, PersonFacts, PersonOutcome, WRONG, authenticate_person};

/// What a login-page attempt is decided over besides the credentials and the org.
#[derive(Debug, Clone, Default)]
pub struct LoginFacts {
    /// The throttle record of (org login page, source address).
    pub throttle: ThrottleState,
    /// Who the username names, their throttle records, room for the hash.
    pub person: PersonFacts,
}

/// A login at the login page: a person's username and password, without a client.
#[derive(Debug, Clone)]
pub struct LoginDecision {
    /// The user's id, or the refusal.
    pub outcome: Result<String, Denial>,
    pub trace: Trace,
    /// The user the username named, when known.
    pub subject: Option<String>,
    pub login_update: Option<LoginUpdate>,
    /// A grant the audit trail records with a reason of its own (a break-glass login).
    pub grant_reason: Option<Reason>,
    /// The throttle record of (org login page, source address) to store, if any.
    pub throttle_update: Option<ThrottleState>,
    /// How the attempt ended for the username's throttle records (`None`: not reached).
    pub person_attempt: Option<AttemptOutcome>,
}

impl LoginDecision {
    /// The reason code the person at the page is shown: the same one for every account
    /// refused before its password was verified (the audit trail keeps the precise one).
    pub fn shown_reason(&self) -> Option<Reason> {
        self.outcome.as_ref().err().map(|d| {
            if d.description == WRONG {
                Reason::UserCredentialsInvalid
            } else {
                d.reason
            }
        })
    }
}

/// Decides a login-page attempt in `org` with the same person checks as the password
/// grant (SSO enforcement, break-glass, account state, password), throttled per source
/// address and per username. The person at the page has not authenticated: every account
/// it will not let in gets the same answer until the password has been verified, and
/// every refusal past the page's own throttle counts against it.
pub fn decide_login(
    creds: &ResourceOwnerCredentials,
    org: &Org,
    facts: &LoginFacts,
    source_ip: IpAddr,
    now: Timestamp,
    opts: DecideOptions,
) -> LoginDecision {
    let mut trace = Trace::default();
    let mut p = PersonOutcome::default();
    let gate = login_gate(org, &facts.throttle, source_ip, now, opts, &mut trace);
    let outcome = gate.clone().and_then(|()| {
        authenticate_person(
            creds,
            &facts.person,
            source_ip,
            org,
            now,
            opts,
            Asker::Stranger,
            &mut trace,
            &mut p,
        )
    });
    let busy = matches!(&outcome, Err(d) if d.reason == Reason::PasswordCheckBusy);
    let throttle_update = if gate.is_err() || busy {
        None
    } else if outcome.is_err() {
        Some(opts.throttle.after_failure(&facts.throttle, now))
    } else if facts.throttle.failures > 0 {
        Some(ThrottleState::default())
    } else {
        None
    };
    LoginDecision {
        outcome,
        trace,
        subject: p.subject.clone(),
        login_update: p.login_update.clone(),
        grant_reason: p.grant_reason,
        throttle_update,
        person_attempt: p.attempt(),
    }
}

/// The login page's checks before any person is looked at: the throttle of this
/// address, then the org.
fn login_gate(
    org: &Org,
    throttle: &ThrottleState,
    source_ip: IpAddr,
    now: Timestamp,
    opts: DecideOptions,
    trace: &mut Trace,
) -> Result<(), Denial> {
    if let Some(wait) = opts.throttle.retry_after(throttle, now) {
        let mut denial = trace.fail(
            Check::Throttle,
            Reason::LoginThrottled,
            format!(
                "too many failed logins to org '{}' from {source_ip}; retry after {wait} s",
                org.slug
            ),
        );
        denial.retry_after = Some(wait);
        return Err(denial);
    }
    trace.pass(
        Check::Throttle,
        format!("{} recent failure(s) from {source_ip}", throttle.failures),
    );
    if !org.enabled {
        return Err(trace.fail(
            Check::Org,
            Reason::OrgDisabled,
            format!("org '{}' is disabled", org.slug),
        ));
    }
    trace.pass(Check::Org, format!("org '{}' is enabled", org.slug));
    Ok(())
}

//! A person's username and password, for the password grant and the login page alike.

use std::net::IpAddr;

use crate::model::{Org, Timestamp, User, UserType};
use crate::reason::Reason;
use crate::request::ResourceOwnerCredentials;
use crate::secret::dummy_password_hash;
use crate::text::{clip, rfc3339};
use crate::throttle::{AttemptOutcome, PersonThrottle};
use crate::trace::{Check, Denial, Trace};

use super::DecideOptions;

/// What the checks of a person's password read besides the credentials: who the
/// username names, the username's throttle records, and room for the hash.
#[derive(Debug, Clone, Default)]
pub struct PersonFacts {
    /// The user the username names in the org, if any.
    pub resource_owner: Option<ResourceOwnerFacts>,
    /// The throttle records of the username.
    pub throttle: PersonThrottle,
    /// The server runs as many password hashes as it allows at once, so this one would
    /// have to wait too long.
    pub hashing_busy: bool,
}

/// The user a username names, with what the decision needs to know about them.
#[derive(Debug, Clone)]
pub struct ResourceOwnerFacts {
    pub user: User,
    /// For a service account: the clients that run as it, as (client id, name).
    pub clients: Vec<(String, String)>,
    /// The org's SSO configuration lists this user as exempt from enforcement.
    pub break_glass: bool,
    /// Where humans of this org log in through SSO (named in `sso_required`).
    pub sso_login_url: String,
}

/// What a password attempt changes on the user's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginUpdate {
    /// A wrong password: count it (the count is for admins to see; throttling, not a
    /// lock, is what slows guessing down: see [`crate::throttle`]).
    Failed { user_id: String },
    /// A right password and a login: reset the count and record the login time.
    Succeeded { user_id: String },
}

/// What authenticating a person produced besides the verdict.
#[derive(Debug, Clone, Default)]
pub(super) struct PersonOutcome {
    pub(super) subject: Option<String>,
    pub(super) login_update: Option<LoginUpdate>,
    pub(super) grant_reason: Option<Reason>,
    /// A wrong user or password: counts against the throttle like a wrong secret.
    pub(super) credential_failure: bool,
    /// The password was checked and right.
    pub(super) password_verified: bool,
}

impl PersonOutcome {
    /// How the attempt ends for the person's throttle records.
    pub(super) fn attempt(&self) -> Option<AttemptOutcome> {
        if self.credential_failure {
            Some(AttemptOutcome::Failed)
        } else if self.password_verified {
            Some(AttemptOutcome::Succeeded)
        } else {
            None
        }
    }
}

/// Who is asking about a person's password, which decides how much they are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asker {
    /// An authenticated client (the password grant): precise descriptions, in the order
    /// the checks run (account state and SSO before the password).
    Client,
    /// Anybody at the login page: one answer for every account it will not let in, and
    /// precise help about the account only once its password has been verified. The
    /// trace (audit trail, admins) is precise either way.
    Stranger,
}

pub(super) const WRONG: &str = "the username or password is incorrect";

/// A person's username and password, for the password grant and the login page alike:
/// the username's throttle records, who the user is, whether SSO enforcement lets them
/// use a password, and the password itself. Returns the user's id.
#[allow(clippy::too_many_arguments)]
pub(super) fn authenticate_person(
    creds: &ResourceOwnerCredentials,
    facts: &PersonFacts,
    source_ip: IpAddr,
    org_facts: &Org,
    now: Timestamp,
    opts: DecideOptions,
    asker: Asker,
    trace: &mut Trace,
    p: &mut PersonOutcome,
) -> Result<String, Denial> {
    let username = clip(&creds.username);
    let org = &org_facts.slug;
    let ip = source_ip;
    let quiet = asker == Asker::Stranger;

    // The username's budgets, before any hash runs.
    let t = &facts.throttle;
    if opts.dry_run {
        trace.skip(
            Check::UserThrottle,
            format!(
                "dry run: throttling not applied ({} recent failure(s) for '{username}' from {ip}, {} from all addresses)",
                t.source.failures, t.account.failures
            ),
        );
    } else {
        let blocked = opts
            .throttle
            .retry_after(&t.source, now)
            .map(|w| (w, format!("from {ip}")))
            .or_else(|| {
                opts.account_throttle
                    .retry_after(&t.account, now)
                    .map(|w| (w, "from all addresses together".to_string()))
            });
        if let Some((wait, from)) = blocked {
            let detail = format!(
                "too many failed passwords for username '{username}' in org '{org}' {from}; retry after {wait} s"
            );
            let mut denial = if quiet {
                trace.fail_quietly(
                    Check::UserThrottle,
                    Reason::UserThrottled,
                    detail,
                    format!("too many failed logins; retry after {wait} s"),
                )
            } else {
                trace.fail(Check::UserThrottle, Reason::UserThrottled, detail)
            };
            denial.retry_after = Some(wait);
            return Err(denial);
        }
        trace.pass(
            Check::UserThrottle,
            format!(
                "{} recent failure(s) for '{username}' from {ip}, {} from all addresses",
                t.source.failures, t.account.failures
            ),
        );
    }
    // Every password hash needs a slot: without one the attempt is refused as busy,
    // before the hash and without counting against anybody.
    let busy = |trace: &mut Trace| -> Option<Denial> {
        facts.hashing_busy.then(|| {
            let mut denial = trace.fail(
                Check::PasswordCapacity,
                Reason::PasswordCheckBusy,
                "every password check slot is busy and the queue is full; retry in a moment",
            );
            denial.retry_after = Some(1);
            denial
        })
    };

    // A refusal before the password has been verified: the stranger hears only that the
    // username or password is wrong, after as much work as a wrong password.
    let refuse = |trace: &mut Trace, p: &mut PersonOutcome, check, reason, detail: String| {
        if let Some(denial) = busy(trace) {
            return denial;
        }
        let _ = (opts.verify_password)(&creds.password, dummy_password_hash());
        p.credential_failure = true;
        trace.fail_quietly(check, reason, detail, WRONG)
    };

    let Some(ro) = &facts.resource_owner else {
        return Err(refuse(
            trace,
            p,
            Check::ResourceOwner,
            Reason::UserCredentialsInvalid,
            format!("no user has username '{username}' in org '{org}'"),
        ));
    };
    let user = &ro.user;
    p.subject = Some(user.id.clone());
    if user.user_type == UserType::Service {
        let detail = service_account_password_detail(&username, ro);
        if quiet {
            return Err(refuse(
                trace,
                p,
                Check::ResourceOwner,
                Reason::ServiceAccountNoPassword,
                detail,
            ));
        }
        return Err(trace.fail(
            Check::ResourceOwner,
            Reason::ServiceAccountNoPassword,
            detail,
        ));
    }
    if !quiet {
        check_human_state(user, now, asker, trace)?;
        check_sso_policy(ro, org_facts, &username, trace, p)?;
    }

    let Some(hash) = &user.password_hash else {
        return Err(refuse(
            trace,
            p,
            Check::UserPassword,
            Reason::UserCredentialsInvalid,
            format!(
                "'{username}' has no local password (an admin can set one, or they log in through SSO at {})",
                ro.sso_login_url
            ),
        ));
    };
    if let Some(denial) = busy(trace) {
        return Err(denial);
    }
    if !(opts.verify_password)(&creds.password, hash) {
        let failures = user.failed_logins.saturating_add(1);
        p.credential_failure = true;
        if !opts.dry_run {
            p.login_update = Some(LoginUpdate::Failed {
                user_id: user.id.clone(),
            });
        }
        return Err(trace.fail_quietly(
            Check::UserPassword,
            Reason::UserCredentialsInvalid,
            format!("wrong password for '{username}' ({failures} in a row)"),
            WRONG,
        ));
    }
    trace.pass(Check::UserPassword, "matches the user's password");
    p.password_verified = true;
    if quiet {
        // Verified: the person may now learn why their own account cannot log in.
        check_human_state(user, now, asker, trace)?;
        check_sso_policy(ro, org_facts, &username, trace, p)?;
    }

    if !opts.dry_run {
        p.login_update = Some(LoginUpdate::Succeeded {
            user_id: user.id.clone(),
        });
    }
    Ok(user.id.clone())
}

/// Why a service account cannot use a password, naming the clients that run as it (for
/// the trace; a stranger never sees it).
fn service_account_password_detail(username: &str, ro: &ResourceOwnerFacts) -> String {
    let clients = if ro.clients.is_empty() {
        format!(
            "no client runs as it yet: create one with POST /api/v2/oauth/clients and \"service_account_id\": \"{}\"",
            ro.user.id
        )
    } else {
        let names: Vec<String> = ro
            .clients
            .iter()
            .map(|(id, name)| format!("'{id}' ({})", clip(name)))
            .collect();
        format!(
            "its client{}: {}",
            if names.len() > 1 { "s" } else { "" },
            names.join(", ")
        )
    };
    format!(
        "'{username}' is a service account: service accounts have no password and never use the password grant; they authenticate with the id and secret of a client that runs as them (grant_type=client_credentials); {clients}"
    )
}

/// SSO enforcement for a human's password: break-glass users pass (audited as such).
fn check_sso_policy(
    ro: &ResourceOwnerFacts,
    org_facts: &Org,
    username: &str,
    trace: &mut Trace,
    p: &mut PersonOutcome,
) -> Result<(), Denial> {
    let org = &org_facts.slug;
    if !org_facts.sso_enforced {
        trace.skip(
            Check::SsoPolicy,
            format!("org '{org}' does not enforce SSO; humans may use local passwords"),
        );
        return Ok(());
    }
    if ro.break_glass {
        trace.pass(
            Check::SsoPolicy,
            format!(
                "org '{org}' enforces SAML SSO for humans; '{username}' is a break-glass user, exempt from enforcement (audited as sso_break_glass)"
            ),
        );
        p.grant_reason = Some(Reason::SsoBreakGlass);
        return Ok(());
    }
    Err(trace.fail(
        Check::SsoPolicy,
        Reason::SsoRequired,
        format!(
            "org '{org}' enforces SAML SSO: '{username}' is a human and must log in through SSO at {}; passwords are refused for humans in this org. Scripts and services should use grant_type=client_credentials with a client of their own, which SSO enforcement never affects",
            ro.sso_login_url
        ),
    ))
}

/// Who last disabled or locked `user`, and when, for descriptions.
pub(super) fn state_change(user: &User) -> (String, String) {
    let by = user
        .state_changed_by
        .as_ref()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "an unknown actor".into());
    let at = user
        .state_changed_at
        .map(rfc3339)
        .unwrap_or_else(|| "an unknown time".into());
    (by, at)
}

/// A human's account state: disabled and locked accounts get no token. A stranger (who
/// has just proved the password) learns the state of their own account, never who changed
/// it: that names another account.
pub(super) fn check_human_state(
    user: &User,
    now: Timestamp,
    asker: Asker,
    trace: &mut Trace,
) -> Result<(), Denial> {
    use crate::model::UserState;
    let (by, at) = state_change(user);
    let denial = match user.effective_state(now) {
        UserState::Active => {
            trace.pass(
                Check::ResourceOwner,
                format!("human '{}' ({}) is active", user.username, user.id),
            );
            return Ok(());
        }
        UserState::Disabled => trace.fail(
            Check::ResourceOwner,
            Reason::UserDisabled,
            format!(
                "user '{}' was disabled by {by} at {at}; an org admin can re-enable them",
                user.username
            ),
        ),
        UserState::Locked => {
            let until = user
                .locked_until
                .map(|u| format!("until {}", rfc3339(u)))
                .unwrap_or_else(|| "until an admin unlocks it".into());
            trace.fail(
                Check::ResourceOwner,
                Reason::UserLocked,
                format!(
                    "user '{}' was locked by {by} at {at}, {until}; an org admin can unlock it now (tessera admin users unlock {})",
                    user.username, user.id
                ),
            )
        }
    };
    Err(match (asker, denial.reason) {
        (Asker::Client, _) => denial,
        (Asker::Stranger, Reason::UserDisabled) => Denial {
            description: "this account is disabled; an org admin can re-enable it".into(),
            ..denial
        },
        (Asker::Stranger, _) => Denial {
            description: "this account is locked; an org admin can unlock it".into(),
            ..denial
        },
    })
}

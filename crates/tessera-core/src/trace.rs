//! The decision trace: the ordered checks a decision made, each with its verdict and the
//! facts it used. Details never contain a secret.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::reason::Reason;

/// The checks of a token decision, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
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
    SsoPolicy,
    ResourceOwner,
    UserPassword,
    SamlRelayState,
    SamlResponse,
    SamlReplay,
    SamlUser,
    /// The login page's form itself (its CSRF token), before any credential is read.
    LoginForm,
    /// A person's failed passwords: per username from this address, and from all.
    UserThrottle,
    /// Room for one more password hash (the server bounds how many run at once).
    PasswordCapacity,
    /// The authorization request's `response_type`.
    ResponseType,
    /// The `redirect_uri`: registered on the client, and repeated at the code exchange.
    RedirectUri,
    /// PKCE: the challenge at the authorization endpoint, the verifier at the exchange.
    Pkce,
    /// `prompt` and `max_age`.
    Prompt,
    /// The person's browser session at the authorization endpoint.
    Session,
    /// The authorization code at its exchange.
    Code,
    /// The refresh token.
    RefreshToken,
    /// A `private_key_jwt` client assertion.
    ClientAssertion,
    /// A SCIM request's target: a human of the org the provisioning may see.
    ScimResource,
    /// A SCIM change: what it asks, by the provisioning rules.
    ScimChange,
    /// A SCIM request's bearer credential (an access token or a long-lived SCIM token).
    ScimCredential,
}

impl Check {
    /// Every check, by its storage index ([`Check::index`]). Append-only: stored traces
    /// refer to checks by their position here, so a new check goes at the end whatever
    /// its place in the evaluation order.
    pub const ALL: [Check; 36] = [
        Check::ContentType,
        Check::Body,
        Check::Parameters,
        Check::GrantType,
        Check::ClientAuth,
        Check::Throttle,
        Check::Client,
        Check::ClientSecret,
        Check::ClientAuthMethod,
        Check::ClientEnabled,
        Check::Org,
        Check::SourceIp,
        Check::GrantTypeAllowed,
        Check::ServiceAccount,
        Check::Scope,
        Check::SsoPolicy,
        Check::ResourceOwner,
        Check::UserPassword,
        Check::SamlRelayState,
        Check::SamlResponse,
        Check::SamlReplay,
        Check::SamlUser,
        Check::LoginForm,
        Check::UserThrottle,
        Check::PasswordCapacity,
        Check::ResponseType,
        Check::RedirectUri,
        Check::Pkce,
        Check::Prompt,
        Check::Session,
        Check::Code,
        Check::RefreshToken,
        Check::ClientAssertion,
        Check::ScimResource,
        Check::ScimChange,
        Check::ScimCredential,
    ];

    /// The position in [`Check::ALL`]. An exhaustive match: a new variant does not compile
    /// until it has an index (and the `check_indices` test wants it in `ALL`).
    pub fn index(self) -> usize {
        match self {
            Check::ContentType => 0,
            Check::Body => 1,
            Check::Parameters => 2,
            Check::GrantType => 3,
            Check::ClientAuth => 4,
            Check::Throttle => 5,
            Check::Client => 6,
            Check::ClientSecret => 7,
            Check::ClientAuthMethod => 8,
            Check::ClientEnabled => 9,
            Check::Org => 10,
            Check::SourceIp => 11,
            Check::GrantTypeAllowed => 12,
            Check::ServiceAccount => 13,
            Check::Scope => 14,
            Check::SsoPolicy => 15,
            Check::ResourceOwner => 16,
            Check::UserPassword => 17,
            Check::SamlRelayState => 18,
            Check::SamlResponse => 19,
            Check::SamlReplay => 20,
            Check::SamlUser => 21,
            Check::LoginForm => 22,
            Check::UserThrottle => 23,
            Check::PasswordCapacity => 24,
            Check::ResponseType => 25,
            Check::RedirectUri => 26,
            Check::Pkce => 27,
            Check::Prompt => 28,
            Check::Session => 29,
            Check::Code => 30,
            Check::RefreshToken => 31,
            Check::ClientAssertion => 32,
            Check::ScimResource => 33,
            Check::ScimChange => 34,
            Check::ScimCredential => 35,
        }
    }

    /// The stable name, e.g. `client_secret`.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::ContentType => "content_type",
            Check::Body => "body",
            Check::Parameters => "parameters",
            Check::GrantType => "grant_type",
            Check::ClientAuth => "client_auth",
            Check::Throttle => "throttle",
            Check::Client => "client",
            Check::ClientSecret => "client_secret",
            Check::ClientAuthMethod => "client_auth_method",
            Check::ClientEnabled => "client_enabled",
            Check::Org => "org",
            Check::SourceIp => "source_ip",
            Check::GrantTypeAllowed => "grant_type_allowed",
            Check::ServiceAccount => "service_account",
            Check::Scope => "scope",
            Check::SsoPolicy => "sso_policy",
            Check::ResourceOwner => "resource_owner",
            Check::UserPassword => "user_password",
            Check::SamlRelayState => "saml_relay_state",
            Check::SamlResponse => "saml_response",
            Check::SamlReplay => "saml_replay",
            Check::SamlUser => "saml_user",
            Check::LoginForm => "login_form",
            Check::UserThrottle => "user_throttle",
            Check::PasswordCapacity => "password_capacity",
            Check::ResponseType => "response_type",
            Check::RedirectUri => "redirect_uri",
            Check::Pkce => "pkce",
            Check::Prompt => "prompt",
            Check::Session => "session",
            Check::Code => "code",
            Check::RefreshToken => "refresh_token",
            Check::ClientAssertion => "client_assertion",
            Check::ScimResource => "scim_resource",
            Check::ScimChange => "scim_change",
            Check::ScimCredential => "scim_credential",
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

/// One step of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub check: Check,
    pub verdict: Verdict,
    /// What the check saw. Borrowed when constant, so passing checks rarely allocate.
    pub detail: Cow<'static, str>,
    /// Set on the failing step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// The ordered steps of one decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Trace(Vec<Step>);

/// A refusal: its reason, a precise description safe to show the caller, and for
/// throttling the seconds after which to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    pub description: String,
    pub retry_after: Option<u64>,
}

impl Trace {
    /// Records a passing check.
    pub fn pass(&mut self, check: Check, detail: impl Into<Cow<'static, str>>) {
        self.push(check, Verdict::Pass, detail.into(), None);
    }

    /// Records a check that did not apply.
    pub fn skip(&mut self, check: Check, detail: impl Into<Cow<'static, str>>) {
        self.push(check, Verdict::Skip, detail.into(), None);
    }

    /// Records a failing check and returns the denial it causes; the description is the
    /// step's detail.
    pub fn fail(&mut self, check: Check, reason: Reason, detail: impl Into<String>) -> Denial {
        let detail: String = detail.into();
        self.push(
            check,
            Verdict::Fail,
            Cow::Owned(detail.clone()),
            Some(reason),
        );
        Denial {
            reason,
            description: detail,
            retry_after: None,
        }
    }

    /// Records a failing check whose detail (for the audit trail and admins) says more
    /// than the caller may learn: the caller gets `description`.
    pub fn fail_quietly(
        &mut self,
        check: Check,
        reason: Reason,
        detail: impl Into<String>,
        description: impl Into<String>,
    ) -> Denial {
        let mut denial = self.fail(check, reason, detail);
        denial.description = description.into();
        denial
    }

    fn push(
        &mut self,
        check: Check,
        verdict: Verdict,
        detail: Cow<'static, str>,
        reason: Option<Reason>,
    ) {
        if self.0.capacity() == 0 {
            self.0.reserve(16);
        }
        self.0.push(Step {
            check,
            verdict,
            detail,
            reason,
        });
    }

    /// Adds `extra` to the detail of the failing step (and returns the new detail).
    pub fn amend_failure(&mut self, extra: &str) -> Option<String> {
        let step = self.0.iter_mut().find(|s| s.verdict == Verdict::Fail)?;
        step.detail.to_mut().push_str(extra);
        Some(step.detail.to_string())
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.0
    }

    /// The failing step, if any.
    pub fn failed(&self) -> Option<&Step> {
        self.0.iter().find(|s| s.verdict == Verdict::Fail)
    }

    /// The compact storage form: about a third of the JSON's size, which is most of an
    /// audit row. `t2:` then one record per step (separated by U+001E): the check's index
    /// in [`Check::ALL`] in decimal, the verdict (`p`, `f`, `s`), the reason code of a
    /// failure, U+001F, then the detail, or `#n` for the n-th of [`STATIC_DETAILS`] (a
    /// literal leading `#` is doubled). U+001E and U+001F inside details become U+FFFD.
    ///
    /// The index is a number, so the format has room for any number of checks; rows
    /// written as `t1:` (the check as one letter, room for 26) or as JSON stay readable.
    pub fn to_compact(&self) -> String {
        let mut out = String::with_capacity(16 + self.0.len() * 40);
        out.push_str("t2:");
        for (i, step) in self.0.iter().enumerate() {
            if i > 0 {
                out.push('\u{1e}');
            }
            push_index(&mut out, step.check.index());
            out.push(match step.verdict {
                Verdict::Pass => 'p',
                Verdict::Fail => 'f',
                Verdict::Skip => 's',
            });
            if let Some(r) = step.reason {
                out.push_str(r.code());
            }
            out.push('\u{1f}');
            let detail: &str = &step.detail;
            match STATIC_DETAILS.iter().position(|d| *d == detail) {
                Some(n) => {
                    out.push('#');
                    push_index(&mut out, n);
                }
                None => {
                    if detail.starts_with('#') {
                        out.push('#');
                    }
                    // The separators are single bytes in UTF-8: most details have
                    // neither and are copied whole (this runs for every audit event).
                    if detail.bytes().any(|b| b == 0x1e || b == 0x1f) {
                        out.extend(detail.chars().map(|c| match c {
                            '\u{1e}' | '\u{1f}' => '\u{fffd}',
                            c => c,
                        }));
                    } else {
                        out.push_str(detail);
                    }
                }
            }
        }
        out
    }

    /// Reads what [`Trace::to_compact`] wrote, the one-letter `t1:` form, or the JSON form
    /// older rows hold.
    pub fn from_stored(s: &str) -> Option<Trace> {
        let (body, lettered) = if let Some(b) = s.strip_prefix("t2:") {
            (b, false)
        } else if let Some(b) = s.strip_prefix("t1:") {
            (b, true)
        } else {
            return serde_json::from_str(s).ok();
        };
        let mut steps = Vec::new();
        if body.is_empty() {
            return Some(Trace(steps));
        }
        for rec in body.split('\u{1e}') {
            let (head, detail) = rec.split_once('\u{1f}')?;
            let (index, rest) = if lettered {
                let first = head.chars().next()?;
                let index = (first as u32).checked_sub('a' as u32)? as usize;
                (index, &head[first.len_utf8()..])
            } else {
                let digits = head.bytes().take_while(u8::is_ascii_digit).count();
                (head[..digits].parse().ok()?, &head[digits..])
            };
            let check = *Check::ALL.get(index)?;
            let mut chars = rest.chars();
            let verdict = match chars.next()? {
                'p' => Verdict::Pass,
                'f' => Verdict::Fail,
                's' => Verdict::Skip,
                _ => return None,
            };
            let code = chars.as_str();
            let reason = if code.is_empty() {
                None
            } else {
                Some(Reason::from_code(code)?)
            };
            let detail: Cow<'static, str> = match detail.strip_prefix('#') {
                Some(lit) if lit.starts_with('#') => Cow::Owned(lit.to_string()),
                Some(n) => Cow::Borrowed(*STATIC_DETAILS.get(n.parse::<usize>().ok()?)?),
                None => Cow::Owned(detail.to_string()),
            };
            steps.push(Step {
                check,
                verdict,
                detail,
                reason,
            });
        }
        Some(Trace(steps))
    }
}

/// Appends `n` in decimal without going through the formatter (the audit writer calls
/// this for every step of every token).
fn push_index(out: &mut String, n: usize) {
    if n < 10 {
        out.push((b'0' + n as u8) as char);
    } else if n < 100 {
        out.push((b'0' + (n / 10) as u8) as char);
        out.push((b'0' + (n % 10) as u8) as char);
    } else {
        out.push_str(&n.to_string());
    }
}

/// Details that recur word for word, stored by their position. Append-only.
pub const STATIC_DETAILS: &[&str] = &[
    "application/x-www-form-urlencoded",
    "application/json (accepted as an extension; the standard is form encoding)",
    "no Content-Type header; body read as application/x-www-form-urlencoded",
    "no parameter is repeated",
    "client_credentials",
    "client_secret_basic",
    "client_secret_post",
    "enabled",
    "the client runs as itself (no service account); sub is the client id",
    "this org enforces SAML SSO for humans; client_credentials is never subject to SSO enforcement",
    "this org does not enforce SSO; client_credentials is never subject to it anyway",
    "'client_credentials' is enabled on the client",
    "dry run without a secret: assumed to match an active secret",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_indices() {
        for (i, c) in Check::ALL.iter().enumerate() {
            assert_eq!(c.index(), i, "{c:?}");
        }
    }

    #[test]
    fn compact_round_trip() {
        let mut t = Trace::default();
        t.pass(Check::ContentType, "application/x-www-form-urlencoded");
        t.pass(Check::Client, "client 'a' in org 'b'");
        t.skip(Check::ServiceAccount, "#not a reference");
        t.pass(Check::Scope, String::new());
        let _ = t.fail(
            Check::SourceIp,
            Reason::ClientIpNotAllowed,
            "bad \u{1e} sep",
        );
        let c = t.to_compact();
        assert!(
            c.len() < serde_json::to_string(&t).unwrap().len() / 2,
            "{c}"
        );
        let back = Trace::from_stored(&c).unwrap();
        assert_eq!(back.steps().len(), 5);
        assert_eq!(back.steps()[0], t.steps()[0]);
        assert_eq!(back.steps()[1], t.steps()[1]);
        assert_eq!(back.steps()[2].detail, "#not a reference");
        assert_eq!(back.steps()[3].detail, "");
        assert_eq!(back.steps()[4].detail, "bad \u{fffd} sep");
        assert_eq!(back.steps()[4].reason, Some(Reason::ClientIpNotAllowed));
        // Older rows hold JSON.
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(Trace::from_stored(&json).unwrap(), t);
        assert_eq!(Trace::from_stored("t2:").unwrap(), Trace::default());
        assert!(Trace::from_stored("t2:zz\u{1f}x").is_none());
        assert!(Trace::from_stored("t2:999p\u{1f}x").is_none());
        assert!(Trace::from_stored("t2:p\u{1f}x").is_none());
    }

    #[test]
    fn every_check_round_trips() {
        let mut t = Trace::default();
        for (i, c) in Check::ALL.iter().enumerate() {
            t.pass(*c, format!("step {i}"));
        }
        let back = Trace::from_stored(&t.to_compact()).unwrap();
        assert_eq!(back, t);
    }

    /// Rows written before the check index became a number: one letter per check.
    #[test]
    fn one_letter_rows_stay_readable() {
        let old = "t1:ap\u{1f}#0\u{1e}gp\u{1f}client 'a' in org 'b'\u{1e}hfclient_secret_mismatch\u{1f}no match";
        let t = Trace::from_stored(old).unwrap();
        let s = t.steps();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].check, Check::ContentType);
        assert_eq!(s[0].detail, "application/x-www-form-urlencoded");
        assert_eq!(s[1].check, Check::Client);
        assert_eq!(s[1].detail, "client 'a' in org 'b'");
        assert_eq!(s[2].check, Check::ClientSecret);
        assert_eq!(s[2].reason, Some(Reason::ClientSecretMismatch));
        assert!(Trace::from_stored("t1:zz\u{1f}x").is_none());
    }
}

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
}

impl Check {
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
}

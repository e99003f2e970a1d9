//! Throttling of failed credential checks, per (key, source address): a client id, an
//! org's login page, or a person's username in an org.
//!
//! A wrong secret or password from one address slows that address down and nobody else:
//! after `free_failures` failures, each further failure doubles the wait, up to
//! `max_delay`. Failures older than `window` are forgotten; a success clears the counter.
//! While a pair is blocked its requests are refused without checking the credential, and
//! do not extend the block. The counters live in the store so that every node sees them.
//!
//! An attempt takes its place in the budget *before* its credential is checked (the
//! store's `reserve_attempt`): while it is in flight it counts as a failure, so a burst of
//! concurrent requests gets exactly the attempts the same requests one after the other
//! would ([`ThrottlePolicy::after_failures`]). It then ends as a failure, a success, or
//! released unchecked ([`AttemptOutcome`]).
//!
//! A person's password attempts are also counted per username from every address
//! ([`ALL_SOURCES`], with [`ThrottlePolicy::account_ceiling`]): a ceiling that only many
//! addresses together can reach, never one person typing, so nobody at one address can
//! lock the real person out from theirs.

use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

/// The throttling parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottlePolicy {
    /// Failures allowed before any delay.
    pub free_failures: u32,
    /// The first delay, in seconds; each further failure doubles it.
    pub base_delay: i64,
    /// The longest delay, in seconds.
    pub max_delay: i64,
    /// Seconds after the last failure when the counter is forgotten.
    pub window: i64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_delay: 1,
            max_delay: 300,
            window: 900,
        }
    }
}

/// The failure record of one (client_id, source address) pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThrottleState {
    pub failures: u32,
    pub last_failure: Timestamp,
    pub blocked_until: Option<Timestamp>,
}

/// How an attempt that took its place in a budget ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The credential was checked and was wrong: the failure counts.
    Failed,
    /// The credential was right: the record is cleared.
    Succeeded,
}

/// What reserving an attempt found (see the store's `reserve_attempt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// The state the attempt is judged by: the record with every attempt in flight
    /// counted as failed. A place was taken unless it blocks.
    pub judged: ThrottleState,
    /// The record of settled attempts alone. When it does not block but `judged` does,
    /// the attempt may wait for those in flight to settle and try again.
    pub committed: ThrottleState,
}

/// The source address of the account-wide record of a person's failed passwords.
pub const ALL_SOURCES: &str = "*";

/// The throttle key of a person's password attempts: the org and the username as typed,
/// whether or not such a user exists (known and unknown names are throttled alike, so the
/// answer tells nothing about which exist).
pub fn person_key(org_slug: &str, username: &str) -> String {
    // Usernames are bounded by the request body; the key is bounded here as well.
    let name: String = username.chars().take(256).collect();
    format!("user:{org_slug}:{name}")
}

/// The throttle records a person's password attempt is judged by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PersonThrottle {
    /// (org and username, this source address).
    pub source: ThrottleState,
    /// (org and username, [`ALL_SOURCES`]).
    pub account: ThrottleState,
}

impl ThrottlePolicy {
    /// The account-wide ceiling of a person's failed passwords, from all addresses
    /// together: 50 failures with no pause of a minute between them, then waits that
    /// double up to a minute. One address under the per-source policy pauses longer than
    /// a minute after about ten failures, so only many addresses together reach it.
    pub const fn account_ceiling() -> Self {
        Self {
            free_failures: 50,
            base_delay: 1,
            max_delay: 60,
            window: 60,
        }
    }

    /// The state after `n` more failures at `now`: how a new attempt is judged while `n`
    /// earlier ones are still in flight.
    pub fn after_failures(&self, state: &ThrottleState, n: u32, now: Timestamp) -> ThrottleState {
        let mut s = *state;
        for _ in 0..n.min(64) {
            s = self.after_failure(&s, now);
        }
        s
    }

    /// Seconds to wait before the pair may try again, or `None` when it may try now.
    pub fn retry_after(&self, state: &ThrottleState, now: Timestamp) -> Option<u64> {
        match state.blocked_until {
            Some(until) if until > now => Some((until - now) as u64),
            _ => None,
        }
    }

    /// The state after one more failure at `now`.
    pub fn after_failure(&self, state: &ThrottleState, now: Timestamp) -> ThrottleState {
        let previous = if now - state.last_failure > self.window {
            0
        } else {
            state.failures
        };
        let failures = previous.saturating_add(1);
        let blocked_until = if failures > self.free_failures {
            let doublings = (failures - self.free_failures - 1).min(30);
            let delay = self
                .base_delay
                .saturating_mul(1i64 << doublings)
                .min(self.max_delay);
            Some(now + delay)
        } else {
            None
        };
        ThrottleState {
            failures,
            last_failure: now,
            blocked_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = ThrottlePolicy::default();
        let mut s = ThrottleState::default();
        let now = 1_000_000;
        for _ in 0..5 {
            s = p.after_failure(&s, now);
            assert_eq!(p.retry_after(&s, now), None);
        }
        let mut delays = vec![];
        for _ in 0..12 {
            s = p.after_failure(&s, now);
            delays.push(p.retry_after(&s, now).unwrap());
        }
        assert_eq!(&delays[..5], &[1, 2, 4, 8, 16]);
        assert_eq!(*delays.last().unwrap(), 300);
        // Blocks lift with time.
        assert_eq!(p.retry_after(&s, now + 300), None);
    }

    #[test]
    fn in_flight_attempts_count_like_failures_in_a_row() {
        let p = ThrottlePolicy::default();
        let now = 1_000_000;
        let mut sequential = ThrottleState::default();
        for n in 0..10 {
            let judged = p.after_failures(&ThrottleState::default(), n, now);
            assert_eq!(judged, sequential, "{n} in flight");
            sequential = p.after_failure(&sequential, now);
        }
        // Six attempts may be in flight at once; the seventh is judged blocked.
        assert_eq!(
            p.retry_after(&p.after_failures(&ThrottleState::default(), 5, now), now),
            None
        );
        assert!(
            p.retry_after(&p.after_failures(&ThrottleState::default(), 6, now), now)
                .is_some()
        );
    }

    #[test]
    fn one_address_never_reaches_the_account_ceiling() {
        // The fastest one address can fail under the per-source policy: whenever it may.
        let p = ThrottlePolicy::default();
        let ceiling = ThrottlePolicy::account_ceiling();
        let (mut own, mut account) = (ThrottleState::default(), ThrottleState::default());
        let mut now = 1_000_000;
        for _ in 0..10_000 {
            if let Some(wait) = p.retry_after(&own, now) {
                now += wait as i64;
            }
            assert_eq!(ceiling.retry_after(&account, now), None, "at {now}");
            own = p.after_failure(&own, now);
            account = ceiling.after_failure(&account, now);
        }
        assert!(account.failures < ceiling.free_failures);
    }

    #[test]
    fn person_keys_are_bounded() {
        let long = "x".repeat(10_000);
        assert!(person_key("acme", &long).len() < 300);
        assert_ne!(person_key("acme", "ann"), person_key("acme2", "ann"));
    }

    #[test]
    fn old_failures_are_forgotten() {
        let p = ThrottlePolicy::default();
        let mut s = ThrottleState::default();
        for _ in 0..7 {
            s = p.after_failure(&s, 0);
        }
        let s = p.after_failure(&s, 10_000);
        assert_eq!(s.failures, 1);
        assert_eq!(s.blocked_until, None);
    }
}

//! Throttling of failed client authentication, per (client_id, source address).
//!
//! A wrong secret from one address slows that address down and nobody else: after
//! `free_failures` failures, each further failure doubles the wait, up to `max_delay`.
//! Failures older than `window` are forgotten; a success clears the counter. While a
//! pair is blocked its requests are refused without checking the secret, and do not
//! extend the block. The counters live in the store so that every node sees them.

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

impl ThrottlePolicy {
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

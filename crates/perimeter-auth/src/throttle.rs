//! Login throttling as a pure state machine over `(failures, last failure, locked until,
//! lockouts)`, kept per account and per client address. Times come from the injected clock.
//!
//! The account policy: from the 3rd consecutive failure the next attempt must wait 1 s, then
//! 2 s, 4 s...; the 5th failure locks the account for 15 minutes, each further lockout doubles
//! that (30 min, 1 h, ...) up to 24 hours. A success or an administrator's unlock clears the
//! state; failures older than the failure window are forgotten.
//!
//! The state lives in the database and is changed atomically there (see the store). An account
//! allows one attempt at a time ([`ThrottlePolicy::exclusive`]): an attempt takes a short lease
//! before the password is checked, and a second attempt while the lease is held is refused as
//! throttled, so parallel guesses are checked one after another against the same count and
//! cannot overrun the lockout. Refused attempts are counted, but audited at most once per key
//! per [`THROTTLED_AUDIT_INTERVAL`], so a flood of refused requests cannot flood the trail.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// The parameters of one throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Consecutive failures that lock.
    pub max_failures: u32,
    /// Failures after which each further attempt must wait (0 = never delay).
    pub delay_after: u32,
    /// The first delay; doubles with each further failure.
    pub delay_base: Duration,
    /// The longest delay.
    pub delay_max: Duration,
    /// The first lockout's length; doubles with each further lockout.
    pub first_lock: Duration,
    /// The longest lockout.
    pub max_lock: Duration,
    /// Failures older than this (counted from the last failure) are forgotten.
    pub failure_window: Duration,
    /// Lockouts older than this (counted from the last failure) no longer double the next one.
    pub lockout_memory: Duration,
    /// One attempt at a time: an attempt holds a lease (at most [`ATTEMPT_LEASE`]) while its
    /// credentials are checked, and another attempt meanwhile is refused as throttled.
    pub exclusive: bool,
}

/// The longest an attempt may hold an exclusive key's lease (a crashed attempt's lease lapses
/// after this).
pub const ATTEMPT_LEASE: Duration = Duration::seconds(30);

/// How soon an attempt refused because another one holds the lease is told to retry.
pub const LEASE_RETRY: Duration = Duration::seconds(1);

/// At most one `login_throttled` audit record per throttle key in this interval (the refused
/// attempts in between are counted, not audited).
pub const THROTTLED_AUDIT_INTERVAL: Duration = Duration::minutes(15);

/// Whether a refused attempt should be audited now, given when the key's last
/// `login_throttled` record was written.
pub fn throttled_audit_due(last_audited: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    last_audited.is_none_or(|at| now - at >= THROTTLED_AUDIT_INTERVAL || now < at)
}

impl ThrottlePolicy {
    /// Per account: delay from the 3rd failure, lock on the 5th for 15 min, doubling, up to 24 h.
    pub const ACCOUNT: Self = Self {
        max_failures: 5,
        delay_after: 2,
        delay_base: Duration::seconds(1),
        delay_max: Duration::seconds(30),
        first_lock: Duration::minutes(15),
        max_lock: Duration::hours(24),
        failure_window: Duration::hours(1),
        lockout_memory: Duration::hours(24),
        exclusive: true,
    };

    /// Per client address: wider (several users may share an address), so that one address
    /// cannot try many usernames: lock on the 20th failure for 15 min, doubling, up to 24 h.
    pub const ADDRESS: Self = Self {
        max_failures: 20,
        delay_after: 10,
        delay_base: Duration::seconds(1),
        delay_max: Duration::seconds(30),
        first_lock: Duration::minutes(15),
        max_lock: Duration::hours(24),
        failure_window: Duration::hours(1),
        lockout_memory: Duration::hours(24),
        exclusive: false,
    };
}

/// Throttle state for one account or address. The default is "no failures".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ThrottleState {
    /// Consecutive failures since the last success, lockout or unlock.
    pub failures: u32,
    /// When the last failure happened.
    pub last_failure_at: Option<OffsetDateTime>,
    /// Locked until this instant (exclusive), if locked.
    pub locked_until: Option<OffsetDateTime>,
    /// Lockouts so far (each doubles the next one's length).
    pub lockouts: u32,
}

/// Whether an attempt may go ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleDecision {
    /// Go ahead (verify the credentials).
    Allow,
    /// Too soon after the last failure: try again at this instant. Not a lockout.
    RetryAt(OffsetDateTime),
    /// Locked until this instant.
    LockedUntil(OffsetDateTime),
}

/// The result of recording a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureOutcome {
    /// The state to store.
    pub state: ThrottleState,
    /// Set when this failure caused a lockout (audit it as `"locked"`), with its end.
    pub locked_until: Option<OffsetDateTime>,
}

fn doubled(base: Duration, times: u32, cap: Duration) -> Duration {
    let factor = 1i32.checked_shl(times.min(30)).unwrap_or(i32::MAX);
    base.checked_mul(factor).map_or(cap, |d| d.min(cap))
}

impl ThrottlePolicy {
    /// The state with expired memory forgotten: failures outside the window and lockouts
    /// outside the lockout memory.
    fn decayed(&self, state: &ThrottleState, now: OffsetDateTime) -> ThrottleState {
        let mut s = *state;
        if let Some(last) = s.last_failure_at {
            let since = now - last;
            if since > self.failure_window {
                s.failures = 0;
            }
            if since > self.lockout_memory {
                s.lockouts = 0;
            }
        }
        if s.locked_until.is_some_and(|until| now >= until) {
            s.locked_until = None;
        }
        s
    }

    /// Decides whether an attempt may go ahead at `now`. Check before verifying credentials,
    /// so a locked account costs no hashing and learns nothing.
    pub fn check(&self, state: &ThrottleState, now: OffsetDateTime) -> ThrottleDecision {
        if let Some(until) = state.locked_until
            && now < until
        {
            return ThrottleDecision::LockedUntil(until);
        }
        let s = self.decayed(state, now);
        if self.delay_after > 0
            && s.failures >= self.delay_after
            && let Some(last) = s.last_failure_at
        {
            let delay = doubled(
                self.delay_base,
                s.failures - self.delay_after,
                self.delay_max,
            );
            let at = last + delay;
            if now < at {
                return ThrottleDecision::RetryAt(at);
            }
        }
        ThrottleDecision::Allow
    }

    /// Decides whether an attempt may go ahead at `now` when another attempt may hold the
    /// key's lease until `lease_until`: as [`ThrottlePolicy::check`], and for an exclusive
    /// policy an unexpired lease means "retry in a moment".
    pub fn check_attempt(
        &self,
        state: &ThrottleState,
        lease_until: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> ThrottleDecision {
        match self.check(state, now) {
            ThrottleDecision::Allow => {}
            other => return other,
        }
        if self.exclusive
            && let Some(until) = lease_until
            && now < until
        {
            return ThrottleDecision::RetryAt(now + LEASE_RETRY);
        }
        ThrottleDecision::Allow
    }

    /// Records a failed attempt at `now`.
    pub fn record_failure(&self, state: &ThrottleState, now: OffsetDateTime) -> FailureOutcome {
        let mut s = self.decayed(state, now);
        s.failures = s.failures.saturating_add(1);
        s.last_failure_at = Some(now);
        if s.failures >= self.max_failures {
            let length = doubled(self.first_lock, s.lockouts, self.max_lock);
            let until = now + length;
            s.locked_until = Some(until);
            s.lockouts = s.lockouts.saturating_add(1);
            s.failures = 0;
            return FailureOutcome {
                state: s,
                locked_until: Some(until),
            };
        }
        FailureOutcome {
            state: s,
            locked_until: None,
        }
    }

    /// Records a successful log-in: everything is forgotten.
    pub fn record_success(&self) -> ThrottleState {
        ThrottleState::default()
    }
}

/// An administrator's unlock: everything is forgotten.
pub fn unlock() -> ThrottleState {
    ThrottleState::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const P: ThrottlePolicy = ThrottlePolicy::ACCOUNT;
    const T0: OffsetDateTime = datetime!(2026-01-01 09:00:00 UTC);

    fn fail_n(
        state: ThrottleState,
        n: u32,
        mut now: OffsetDateTime,
    ) -> (ThrottleState, OffsetDateTime, Option<OffsetDateTime>) {
        let mut s = state;
        let mut lock = None;
        for _ in 0..n {
            // Wait out any delay, as a patient attacker would.
            if let ThrottleDecision::RetryAt(at) = P.check(&s, now) {
                now = at;
            }
            let out = P.record_failure(&s, now);
            s = out.state;
            lock = out.locked_until.or(lock);
        }
        (s, now, lock)
    }

    #[test]
    fn first_failures_are_free_then_delays_grow() {
        let s1 = P.record_failure(&ThrottleState::default(), T0).state;
        assert_eq!(P.check(&s1, T0), ThrottleDecision::Allow);
        let s2 = P.record_failure(&s1, T0).state;
        assert_eq!(
            P.check(&s2, T0),
            ThrottleDecision::RetryAt(T0 + Duration::seconds(1))
        );
        let t = T0 + Duration::seconds(1);
        assert_eq!(P.check(&s2, t), ThrottleDecision::Allow);
        let s3 = P.record_failure(&s2, t).state;
        assert_eq!(
            P.check(&s3, t),
            ThrottleDecision::RetryAt(t + Duration::seconds(2))
        );
    }

    #[test]
    fn fifth_failure_locks_for_fifteen_minutes_then_doubles() {
        let (s, now, lock) = fail_n(ThrottleState::default(), 5, T0);
        let until = lock.unwrap();
        assert_eq!(until, now + Duration::minutes(15));
        assert_eq!(
            P.check(&s, now + Duration::minutes(14)),
            ThrottleDecision::LockedUntil(until)
        );
        assert_eq!(P.check(&s, until), ThrottleDecision::Allow);
        // Five more failures after the lock ends: 30 minutes.
        let (s2, now2, lock2) = fail_n(s, 5, until);
        assert_eq!(lock2.unwrap(), now2 + Duration::minutes(30));
        let (_, now3, lock3) = fail_n(s2, 5, lock2.unwrap());
        assert_eq!(lock3.unwrap(), now3 + Duration::minutes(60));
    }

    #[test]
    fn lock_length_is_capped() {
        let mut s = ThrottleState {
            lockouts: 40,
            ..ThrottleState::default()
        };
        s.last_failure_at = Some(T0);
        let (_, now, lock) = fail_n(s, 5, T0);
        assert_eq!(lock.unwrap(), now + Duration::hours(24));
    }

    #[test]
    fn success_and_unlock_clear_and_old_failures_decay() {
        let (s, _, _) = fail_n(ThrottleState::default(), 4, T0);
        assert_eq!(P.record_success(), ThrottleState::default());
        assert_eq!(unlock(), ThrottleState::default());
        // Four failures, then an hour and a bit of quiet: the next failure counts as the first.
        let later = s.last_failure_at.unwrap() + Duration::minutes(61);
        let out = P.record_failure(&s, later);
        assert_eq!(out.state.failures, 1);
        assert!(out.locked_until.is_none());
    }

    #[test]
    fn address_policy_is_wider() {
        let a = ThrottlePolicy::ADDRESS;
        let mut s = ThrottleState::default();
        let mut now = T0;
        let mut locked_at = None;
        for i in 1..=20 {
            if let ThrottleDecision::RetryAt(at) = a.check(&s, now) {
                now = at;
            }
            let out = a.record_failure(&s, now);
            s = out.state;
            if out.locked_until.is_some() {
                locked_at = Some(i);
            }
        }
        assert_eq!(locked_at, Some(20));
    }

    #[test]
    fn an_attempt_in_flight_holds_off_the_next_on_exclusive_keys_only() {
        let s = ThrottleState::default();
        let lease = Some(T0 + ATTEMPT_LEASE);
        assert_eq!(
            P.check_attempt(&s, lease, T0),
            ThrottleDecision::RetryAt(T0 + LEASE_RETRY)
        );
        assert_eq!(
            P.check_attempt(&s, lease, T0 + ATTEMPT_LEASE),
            ThrottleDecision::Allow
        );
        assert_eq!(P.check_attempt(&s, None, T0), ThrottleDecision::Allow);
        assert_eq!(
            ThrottlePolicy::ADDRESS.check_attempt(&s, lease, T0),
            ThrottleDecision::Allow
        );
        // A lock wins over the lease.
        let (locked, now, until) = fail_n(s, 5, T0);
        assert_eq!(
            P.check_attempt(&locked, lease, now),
            ThrottleDecision::LockedUntil(until.unwrap())
        );
    }

    #[test]
    fn throttled_attempts_are_audited_once_per_interval() {
        assert!(throttled_audit_due(None, T0));
        assert!(!throttled_audit_due(Some(T0), T0 + Duration::minutes(14)));
        assert!(throttled_audit_due(Some(T0), T0 + THROTTLED_AUDIT_INTERVAL));
        // A clock that went backwards does not silence auditing.
        assert!(throttled_audit_due(Some(T0), T0 - Duration::seconds(1)));
    }

    proptest::proptest! {
        #[test]
        fn never_allowed_while_locked_and_locks_are_bounded(
            steps in proptest::collection::vec((0i64..4_000, proptest::bool::ANY), 0..60)
        ) {
            let mut s = ThrottleState::default();
            let mut now = T0;
            for (secs, fail) in steps {
                now += Duration::seconds(secs);
                let decision = P.check(&s, now);
                if let Some(until) = s.locked_until
                    && now < until
                {
                    proptest::prop_assert_eq!(decision, ThrottleDecision::LockedUntil(until));
                }
                if decision != ThrottleDecision::Allow {
                    continue;
                }
                if fail {
                    let out = P.record_failure(&s, now);
                    if let Some(until) = out.locked_until {
                        proptest::prop_assert!(until - now <= P.max_lock);
                        proptest::prop_assert!(until - now >= P.first_lock);
                    }
                    proptest::prop_assert!(out.state.failures < P.max_failures);
                    s = out.state;
                } else {
                    s = P.record_success();
                }
            }
        }
    }
}

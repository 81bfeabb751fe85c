//! Time as a parameter (invariant 6): nothing in Perimeter reads the system clock directly, so
//! idle timeouts, retention and deadlines can be tested by moving a [`ManualClock`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use time::{Duration, OffsetDateTime};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant, in UTC.
    fn now(&self) -> OffsetDateTime;

    /// The current instant as milliseconds since the Unix epoch (how timestamps are stored).
    fn now_millis(&self) -> i64 {
        let nanos = self.now().unix_timestamp_nanos();
        i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
    }
}

/// A cheaply clonable, shareable clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Clone)]
pub struct ManualClock {
    millis: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: OffsetDateTime) -> Self {
        let millis = i64::try_from(start.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        Self {
            millis: Arc::new(AtomicI64::new(millis)),
        }
    }

    /// A clock standing at 2026-01-01T00:00:00Z, convenient for tests.
    pub fn at_epoch_2026() -> Self {
        Self::new(time::macros::datetime!(2026-01-01 00:00:00 UTC))
    }

    /// Moves the clock forward (or backward, for a negative duration).
    pub fn advance(&self, by: Duration) {
        let delta = i64::try_from(by.whole_milliseconds()).unwrap_or(i64::MAX);
        self.millis.fetch_add(delta, Ordering::SeqCst);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: OffsetDateTime) {
        let millis = i64::try_from(to.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        self.millis.store(millis, Ordering::SeqCst);
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("millis", &self.millis.load(Ordering::SeqCst))
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        let millis = self.millis.load(Ordering::SeqCst);
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn now_millis(&self) -> i64 {
        self.millis.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let clock = ManualClock::at_epoch_2026();
        let other = clock.clone();
        let before = clock.now();
        assert_eq!(clock.now(), before);
        other.advance(Duration::minutes(15));
        assert_eq!(clock.now() - before, Duration::minutes(15));
        assert_eq!(clock.now_millis(), other.now_millis());
    }

    #[test]
    fn system_clock_millis_agree_with_now() {
        let clock = SystemClock;
        let a = clock.now_millis();
        let b = i64::try_from(clock.now().unix_timestamp_nanos() / 1_000_000).unwrap();
        assert!(b >= a && b - a < 5_000);
    }
}

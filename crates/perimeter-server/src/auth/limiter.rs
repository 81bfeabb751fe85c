//! Bounded password hashing: argon2id costs 19 MiB and tens of milliseconds per call, so the
//! number of hashes running at once is capped (a semaphore), the number of requests waiting for
//! one is capped too, and a request waits at most a short time. Past that the server answers
//! 503 `busy` with `Retry-After` at once instead of queueing without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of password hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashLimits {
    /// Hashes running at once (each holds 19 MiB).
    pub max_concurrent: usize,
    /// Requests waiting for a free slot; more are refused at once.
    pub max_waiting: usize,
    /// The longest a request waits for a free slot.
    pub max_wait: Duration,
}

impl Default for HashLimits {
    /// As many hashes at once as there are cores (at least 1, at most 8: 152 MiB), 64 waiting,
    /// 5 seconds of waiting at most.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            max_concurrent: cores.clamp(1, 8),
            max_waiting: 64,
            max_wait: Duration::from_secs(5),
        }
    }
}

/// Why hashing did not run or finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashRunError {
    /// Every slot is busy and the wait was too long (or too many are waiting): answer 503
    /// `busy`.
    #[error("password hashing is saturated")]
    Saturated,
    /// The blocking task failed (panicked or was cancelled).
    #[error("password hashing task failed")]
    Failed,
}

/// The shared limiter. Cheap to clone.
#[derive(Clone)]
pub struct HashLimiter {
    permits: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    limits: HashLimits,
}

impl std::fmt::Debug for HashLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashLimiter")
            .field("limits", &self.limits)
            .field("available", &self.permits.available_permits())
            .finish()
    }
}

/// Slots held by [`HashLimiter::hold_all`]; dropping it frees them.
#[derive(Debug)]
pub struct HeldSlots {
    _permit: OwnedSemaphorePermit,
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl HashLimiter {
    /// A limiter with these limits (`max_concurrent` at least 1).
    pub fn new(limits: HashLimits) -> Self {
        let limits = HashLimits {
            max_concurrent: limits.max_concurrent.max(1),
            ..limits
        };
        Self {
            permits: Arc::new(Semaphore::new(limits.max_concurrent)),
            waiting: Arc::new(AtomicUsize::new(0)),
            limits,
        }
    }

    /// The limits.
    pub fn limits(&self) -> HashLimits {
        self.limits
    }

    async fn acquire(&self) -> Result<OwnedSemaphorePermit, HashRunError> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.limits.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(HashRunError::Saturated);
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(self.limits.max_wait, self.permits.clone().acquire_owned()).await
        {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) | Err(_) => Err(HashRunError::Saturated),
        }
    }

    /// Runs `work` (a password hash or verification) on the blocking pool once a slot is free.
    pub async fn run<T, F>(&self, work: F) -> Result<T, HashRunError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self.acquire().await?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|_| HashRunError::Failed)
    }

    /// Takes every slot (waiting for running hashes to finish): operators' and tests' way to
    /// stop all password work at once.
    pub async fn hold_all(&self) -> Option<HeldSlots> {
        let n = u32::try_from(self.limits.max_concurrent).ok()?;
        let permit = self.permits.clone().acquire_many_owned(n).await.ok()?;
        Some(HeldSlots { _permit: permit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn saturation_is_refused_quickly_and_slots_come_back() {
        let limiter = HashLimiter::new(HashLimits {
            max_concurrent: 2,
            max_waiting: 1,
            max_wait: Duration::from_millis(50),
        });
        assert_eq!(limiter.run(|| 7).await, Ok(7));
        let held = limiter.hold_all().await.unwrap();
        assert_eq!(limiter.run(|| 1).await, Err(HashRunError::Saturated));
        drop(held);
        assert_eq!(limiter.run(|| 2).await, Ok(2));
    }

    #[tokio::test]
    async fn too_many_waiting_are_refused_at_once() {
        let limiter = HashLimiter::new(HashLimits {
            max_concurrent: 1,
            max_waiting: 0,
            max_wait: Duration::from_secs(3600),
        });
        let held = limiter.hold_all().await.unwrap();
        // Refused without waiting for the (hour-long) slot wait.
        let refused = tokio::time::timeout(Duration::from_secs(60), limiter.run(|| ())).await;
        assert_eq!(refused, Ok(Err(HashRunError::Saturated)));
        drop(held);
    }
}

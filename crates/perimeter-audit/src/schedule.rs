//! When to write a checkpoint, and how to make one from the stored head. No I/O: the running
//! task ([`crate::checkpointer`], feature `runtime`) asks [`Schedule::due`] on every tick.

use ed25519_dalek::SigningKey;

use crate::checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
use crate::merkle::{Frontier, FrontierError};

/// Write a checkpoint after `every_records` new records or `every_millis` of time, whichever
/// comes first (and never when nothing new was appended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Records between checkpoints.
    pub every_records: u64,
    /// Milliseconds between checkpoints.
    pub every_millis: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            every_records: 1000,
            every_millis: 60_000,
        }
    }
}

/// The checkpointer's memory of the last checkpoint written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    policy: Policy,
    last_size: u64,
    last_at_millis: i64,
}

impl Schedule {
    /// Starts from the latest existing checkpoint (size 0 at `now` when there is none).
    pub fn new(policy: Policy, last_size: u64, last_at_millis: i64) -> Self {
        Self {
            policy,
            last_size,
            last_at_millis,
        }
    }

    /// Whether a checkpoint is due for a trail of `size` records at `now_millis`.
    pub fn due(&self, size: u64, now_millis: i64) -> bool {
        size > self.last_size
            && (size - self.last_size >= self.policy.every_records
                || now_millis.saturating_sub(self.last_at_millis) >= self.policy.every_millis)
    }

    /// Records that a checkpoint of `size` was written at `at_millis`.
    pub fn written(&mut self, size: u64, at_millis: i64) {
        self.last_size = size;
        self.last_at_millis = at_millis;
    }

    /// Size of the last checkpoint.
    pub fn last_size(&self) -> u64 {
        self.last_size
    }
}

/// Makes and signs the checkpoint for a stored head (its serialised frontier).
pub fn checkpoint_for_head(
    origin: &str,
    frontier_bytes: &[u8],
    at_millis: i64,
    key: &SigningKey,
) -> Result<SignedCheckpoint, ScheduleError> {
    let frontier = Frontier::from_bytes(frontier_bytes)?;
    Ok(Checkpoint {
        origin: origin.to_owned(),
        size: frontier.size(),
        root: frontier.root(),
        at_millis,
    }
    .sign(origin, key)?)
}

/// Making a checkpoint failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The stored frontier does not parse.
    #[error(transparent)]
    Frontier(#[from] FrontierError),
    /// Signing refused the names.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointKey;

    #[test]
    fn due_after_n_records_or_t_millis_whichever_first() {
        let p = Policy {
            every_records: 10,
            every_millis: 1000,
        };
        let mut s = Schedule::new(p, 0, 0);
        assert!(!s.due(0, 10_000), "nothing new");
        assert!(!s.due(9, 999));
        assert!(s.due(10, 1));
        assert!(s.due(1, 1000));
        s.written(10, 500);
        assert!(!s.due(10, 5000));
        assert!(!s.due(19, 1499));
        assert!(s.due(11, 1500));
        assert!(s.due(20, 501));
        assert_eq!(s.last_size(), 10);
    }

    #[test]
    fn checkpoint_from_head_signs_the_frontier_root() {
        let mut f = Frontier::new();
        for i in 0..5u8 {
            f.push([i; 32]);
        }
        let sk = SigningKey::from_bytes(&[2; 32]);
        let cp = checkpoint_for_head("o.test/log", &f.to_bytes(), 77, &sk).unwrap();
        assert_eq!(cp.checkpoint.size, 5);
        assert_eq!(cp.checkpoint.root, f.root());
        cp.verify(&CheckpointKey::new("o.test/log", sk.verifying_key()).unwrap())
            .unwrap();
        assert!(checkpoint_for_head("o.test/log", &[1], 0, &sk).is_err());
    }
}

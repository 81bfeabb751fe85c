//! Group commit for standalone audit events (feature `runtime`).
//!
//! Events that record an access are written in the access's own transaction by the store. Events
//! with no transaction of their own (logins, denials, exports, AI calls) go through a
//! [`GroupCommitter`]: concurrent callers' events are batched into one store transaction (one
//! fsync) while the previous batch commits, so throughput grows with concurrency while each
//! caller still returns only once its event is durable.
//!
//! ```text
//! let store2 = store.clone();
//! let (audit, task) = GroupCommitter::spawn(
//!     move |batch| { let s = store2.clone(); async move { s.append_audit(&batch).await } },
//!     GroupConfig::default(),
//! );
//! let seq = audit.append(event).await?;
//! ```

use std::fmt::Display;
use std::future::Future;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::event::AuditEvent;

/// Limits of the committer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// Most events in one transaction.
    pub max_batch: usize,
    /// Events waiting before callers are held back.
    pub queue: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            max_batch: 512,
            queue: 8192,
        }
    }
}

/// Appending through the committer failed; the event is not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The committer task has stopped.
    #[error("the audit group committer has stopped")]
    Closed,
    /// The store refused the batch (its message; store errors carry no PHI).
    #[error("appending the audit batch failed: {0}")]
    Append(String),
    /// The store returned a different number of sequence numbers than events.
    #[error("the store returned {got} sequence numbers for {expected} events")]
    Count {
        /// Events sent.
        expected: usize,
        /// Seqs returned.
        got: usize,
    },
}

struct Job {
    event: AuditEvent,
    reply: oneshot::Sender<Result<u64, GroupError>>,
}

/// A handle for appending events through one background batching task. Cheap to clone.
#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for GroupCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitter").finish_non_exhaustive()
    }
}

impl GroupCommitter {
    /// Starts the batching task on the current Tokio runtime. `append` writes a batch in one
    /// transaction and returns the events' sequence numbers in order. The task ends when every
    /// handle is dropped.
    pub fn spawn<F, Fut, E>(append: F, config: GroupConfig) -> (Self, JoinHandle<()>)
    where
        F: Fn(Vec<AuditEvent>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u64>, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Job>(config.queue.max(1));
        let max = config.max_batch.max(1);
        let task = tokio::spawn(async move {
            let mut jobs: Vec<Job> = Vec::with_capacity(max);
            while let Some(first) = rx.recv().await {
                jobs.push(first);
                while jobs.len() < max {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                let (events, replies): (Vec<AuditEvent>, Vec<_>) =
                    jobs.drain(..).map(|j| (j.event, j.reply)).unzip();
                let n = events.len();
                match append(events).await {
                    Ok(seqs) if seqs.len() == n => {
                        for (reply, seq) in replies.into_iter().zip(seqs) {
                            // A caller that gave up waiting is not an error: its event is stored.
                            let _ = reply.send(Ok(seq));
                        }
                    }
                    Ok(seqs) => {
                        for reply in replies {
                            let _ = reply.send(Err(GroupError::Count {
                                expected: n,
                                got: seqs.len(),
                            }));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for reply in replies {
                            let _ = reply.send(Err(GroupError::Append(msg.clone())));
                        }
                    }
                }
            }
        });
        (Self { tx }, task)
    }

    /// Appends one event; returns its sequence number once its batch has committed.
    pub async fn append(&self, event: AuditEvent) -> Result<u64, GroupError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { event, reply })
            .await
            .map_err(|_| GroupError::Closed)?;
        rx.await.map_err(|_| GroupError::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Action, Actor, ObjectRef, Outcome};
    use std::sync::{Arc, Mutex};

    fn ev(i: i64) -> AuditEvent {
        AuditEvent {
            at_millis: i,
            actor: Actor::Anonymous,
            action: Action::Login,
            object: ObjectRef {
                kind: "session".into(),
                id: None,
            },
            patient: None,
            categories: vec![],
            purpose: None,
            outcome: Outcome::Denied,
            detail: None,
            client_addr: None,
            user_agent: None,
            request_id: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_batched_and_each_gets_its_own_seq() {
        let log: Arc<Mutex<Vec<AuditEvent>>> = Arc::default();
        let batches: Arc<Mutex<Vec<usize>>> = Arc::default();
        let (l, b) = (log.clone(), batches.clone());
        let (gc, task) = GroupCommitter::spawn(
            move |events: Vec<AuditEvent>| {
                let (l, b) = (l.clone(), b.clone());
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    let mut log = l.lock().unwrap();
                    b.lock().unwrap().push(events.len());
                    let start = log.len() as u64;
                    let n = events.len() as u64;
                    log.extend(events);
                    Ok::<_, String>((start..start + n).collect())
                }
            },
            GroupConfig::default(),
        );
        let mut handles = Vec::new();
        for i in 0..200 {
            let gc = gc.clone();
            handles.push(tokio::spawn(
                async move { (i, gc.append(ev(i)).await.unwrap()) },
            ));
        }
        for h in handles {
            let (i, seq) = h.await.unwrap();
            assert_eq!(log.lock().unwrap()[seq as usize].at_millis, i);
        }
        let batches = batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 200);
        assert!(
            batches.len() < 200,
            "some events shared a transaction: {batches:?}"
        );
        drop(gc);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_caller_in_it() {
        let (gc, _task) = GroupCommitter::spawn(
            |_events: Vec<AuditEvent>| async { Err::<Vec<u64>, _>("disk full") },
            GroupConfig::default(),
        );
        assert_eq!(
            gc.append(ev(1)).await,
            Err(GroupError::Append("disk full".into()))
        );
        let (gc, _task) = GroupCommitter::spawn(
            |_events: Vec<AuditEvent>| async { Ok::<_, String>(vec![]) },
            GroupConfig::default(),
        );
        assert!(matches!(
            gc.append(ev(1)).await,
            Err(GroupError::Count { .. })
        ));
    }
}

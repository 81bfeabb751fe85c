//! Group commit for standalone audit events (feature `runtime`).
//!
//! Events that record an access are written in the access's own transaction by the store. Events
//! with no transaction of their own (logins, denials, exports, AI calls) go through a
//! [`GroupCommitter`]: concurrent callers' events are batched into one store transaction (one
//! fsync) while the previous batch commits, so throughput grows with concurrency while each
//! caller still returns only once its event is durable. The events of one call (for example a
//! failed log-in and the lock-out it caused) always share one transaction.
//!
//! `perimeter-store` runs one committer per database handle: `Store::append_audit` (and the
//! security events of authentication) go through it.
//!
//! ```text
//! let (audit, task) = GroupCommitter::spawn(
//!     move |batch| { let w = writer.clone(); async move { w.write_batch(batch).await } },
//!     GroupConfig::default(),
//! );
//! let seq = audit.append(event).await?;
//! ```

use std::future::Future;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::event::AuditEvent;

/// Limits of the committer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// Most events in one transaction (a single call with more is still written whole).
    pub max_batch: usize,
    /// Calls waiting before callers are held back.
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

/// Appending through the committer failed; the events are not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError<E> {
    /// The committer task has stopped.
    #[error("the audit group committer has stopped")]
    Closed,
    /// The store refused the batch (every caller in the batch gets the store's error).
    #[error("appending the audit batch failed: {0}")]
    Append(E),
    /// The store returned a different number of sequence numbers than events.
    #[error("the store returned {got} sequence numbers for {expected} events")]
    Count {
        /// Events sent.
        expected: usize,
        /// Seqs returned.
        got: usize,
    },
}

struct Job<E> {
    events: Vec<AuditEvent>,
    reply: oneshot::Sender<Result<Vec<u64>, GroupError<E>>>,
}

/// A handle for appending events through one background batching task. Cheap to clone.
pub struct GroupCommitter<E = String> {
    tx: mpsc::Sender<Job<E>>,
}

impl<E> Clone for GroupCommitter<E> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<E> std::fmt::Debug for GroupCommitter<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommitter").finish_non_exhaustive()
    }
}

impl<E: Clone + Send + 'static> GroupCommitter<E> {
    /// Starts the batching task on the current Tokio runtime. `append` writes a batch in one
    /// transaction and returns the events' sequence numbers in order. The task ends when every
    /// handle is dropped. The events of one call are never split across transactions.
    pub fn spawn<F, Fut>(append: F, config: GroupConfig) -> (Self, JoinHandle<()>)
    where
        F: Fn(Vec<AuditEvent>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<u64>, E>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::channel::<Job<E>>(config.queue.max(1));
        let max = config.max_batch.max(1);
        let task = tokio::spawn(async move {
            let mut jobs: Vec<Job<E>> = Vec::new();
            let mut held: Option<Job<E>> = None;
            loop {
                let first = match held.take() {
                    Some(j) => j,
                    None => match rx.recv().await {
                        Some(j) => j,
                        None => break,
                    },
                };
                let mut count = first.events.len();
                jobs.push(first);
                while count < max {
                    match rx.try_recv() {
                        Ok(j) if count + j.events.len() <= max => {
                            count += j.events.len();
                            jobs.push(j);
                        }
                        Ok(j) => {
                            // Too big for this batch: it opens the next one.
                            held = Some(j);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let mut events = Vec::with_capacity(count);
                let mut replies = Vec::with_capacity(jobs.len());
                for j in jobs.drain(..) {
                    replies.push((j.events.len(), j.reply));
                    events.extend(j.events);
                }
                let n = events.len();
                match append(events).await {
                    Ok(seqs) if seqs.len() == n => {
                        let mut rest = seqs.into_iter();
                        for (len, reply) in replies {
                            let mine: Vec<u64> = rest.by_ref().take(len).collect();
                            // A caller that gave up waiting is not an error: its events are
                            // stored.
                            let _ = reply.send(Ok(mine));
                        }
                    }
                    Ok(seqs) => {
                        for (_, reply) in replies {
                            let _ = reply.send(Err(GroupError::Count {
                                expected: n,
                                got: seqs.len(),
                            }));
                        }
                    }
                    Err(e) => {
                        for (_, reply) in replies {
                            let _ = reply.send(Err(GroupError::Append(e.clone())));
                        }
                    }
                }
            }
        });
        (Self { tx }, task)
    }

    /// Appends one event; returns its sequence number once its batch has committed.
    pub async fn append(&self, event: AuditEvent) -> Result<u64, GroupError<E>> {
        let seqs = self.append_all(vec![event]).await?;
        seqs.first().copied().ok_or(GroupError::Count {
            expected: 1,
            got: 0,
        })
    }

    /// Appends several events in one transaction (shared with other callers' events); returns
    /// their sequence numbers once it has committed.
    pub async fn append_all(&self, events: Vec<AuditEvent>) -> Result<Vec<u64>, GroupError<E>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { events, reply })
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
            |_events: Vec<AuditEvent>| async { Err::<Vec<u64>, _>("disk full".to_owned()) },
            GroupConfig::default(),
        );
        assert_eq!(
            gc.append(ev(1)).await,
            Err(GroupError::Append("disk full".to_owned()))
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

    fn batches_of(b: &Arc<Mutex<Vec<usize>>>) -> Vec<usize> {
        b.lock().unwrap().clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_with_several_events_is_never_split() {
        let batches: Arc<Mutex<Vec<usize>>> = Arc::default();
        let next = Arc::new(Mutex::new(0u64));
        let (b, n) = (batches.clone(), next.clone());
        let (gc, _task) = GroupCommitter::spawn(
            move |events: Vec<AuditEvent>| {
                let (b, n) = (b.clone(), n.clone());
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    b.lock().unwrap().push(events.len());
                    let mut n = n.lock().unwrap();
                    let start = *n;
                    *n += events.len() as u64;
                    Ok::<_, String>((start..*n).collect())
                }
            },
            GroupConfig {
                max_batch: 4,
                queue: 64,
            },
        );
        let mut hs = Vec::new();
        for i in 0..20 {
            let gc = gc.clone();
            hs.push(tokio::spawn(async move {
                gc.append_all(vec![ev(i), ev(i), ev(i)]).await.unwrap()
            }));
        }
        for h in hs {
            let seqs = h.await.unwrap();
            assert_eq!(seqs.len(), 3);
            assert_eq!(seqs[1], seqs[0] + 1);
            assert_eq!(seqs[2], seqs[0] + 2);
        }
        // Batches hold whole calls: with a limit of 4, one call of 3 per batch.
        let seen = batches_of(&batches);
        assert_eq!(seen.iter().sum::<usize>(), 60);
        assert!(seen.iter().all(|n| *n == 3), "{seen:?}");
        // A single call larger than the limit is written whole.
        assert_eq!(
            gc.append_all((0..9).map(ev).collect()).await.unwrap().len(),
            9
        );
        assert_eq!(batches_of(&batches).last(), Some(&9));
    }
}

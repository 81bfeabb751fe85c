//! Perimeter's own background work for the queues: the escalation sweep (conversations past
//! their service level move to their escalation target and the target role is notified) and
//! the reminder sender (reminders whose send time has come are filled and queued).
//!
//! Time comes from the store's injected clock: the task wakes every `tick` of real time and
//! asks the store what is due at the clock's now, so tests drive it with a `ManualClock`.

use std::sync::Arc;
use std::time::Duration;

use perimeter_store::{AccessContext, Escalated, SentReminder, Store, StoreError};
use perimeter_workflows::EscalationRules;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The most conversations escalated, or reminders sent, per pass.
pub const PASS_LIMIT: u32 = 500;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Conversations escalated.
    pub escalated: Vec<Escalated>,
    /// Reminders sent.
    pub reminders: Vec<SentReminder>,
}

/// One pass: the escalation sweep, then the reminder sender.
pub async fn run_once(store: &Store, rules: &EscalationRules) -> Result<PassReport, StoreError> {
    let escalated = store
        .escalate_overdue(&AccessContext::system("sla_sweep"), rules, PASS_LIMIT)
        .await?;
    let reminders = store
        .send_due_reminders(&AccessContext::system("reminders"), PASS_LIMIT)
        .await?;
    Ok(PassReport {
        escalated,
        reminders,
    })
}

/// The running task; [`WorkTasks::finish`] stops it.
#[derive(Debug)]
pub struct WorkTasks {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl WorkTasks {
    /// Starts the task. `opened` returns the store once the database is open (until then
    /// the task waits); failures are logged (ids and counts only) and retried next tick.
    pub fn spawn(
        opened: impl Fn() -> Option<Store> + Send + Sync + 'static,
        rules: EscalationRules,
        tick: Duration,
    ) -> Self {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let rules = Arc::new(rules);
        let task = tokio::spawn(async move {
            loop {
                if let Some(store) = opened() {
                    match run_once(&store, &rules).await {
                        Ok(r) if !r.escalated.is_empty() || !r.reminders.is_empty() => {
                            tracing::info!(
                                escalated = r.escalated.len(),
                                reminders = r.reminders.len(),
                                "work queue pass"
                            );
                        }
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "work queue pass failed; retrying"),
                    }
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(tick) => {}
                }
            }
        });
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Stops the task and waits for it.
    pub async fn finish(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

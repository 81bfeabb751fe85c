//! Perimeter's own background work for the queues: the escalation sweep (conversations past
//! their service level move to their escalation target and the target role is notified), the
//! reminder sender (reminders whose send time has come are filled and queued), and web chat
//! housekeeping (sessions past their limits ended, dead codes, closed throttle windows and
//! long-ended sessions deleted: [`Store::purge_chat_state`]).
//!
//! Time comes from the store's injected clock: the task wakes every `tick` of real time and
//! asks the store what is due at the clock's now, so tests drive it with a `ManualClock`.

use std::sync::Arc;
use std::time::Duration;

use perimeter_store::{
    AccessContext, ChatPolicy, ChatPurge, Escalated, SentReminder, Store, StoreError,
};
use perimeter_workflows::EscalationRules;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The most conversations escalated, reminders sent, or chat sessions ended, per pass.
pub const PASS_LIMIT: u32 = 500;

/// How long an ended web chat session's row (token hash, times, how it was verified) is kept
/// before housekeeping deletes it. Its audit records are kept regardless.
pub const CHAT_KEEP_ENDED: Duration = Duration::from_secs(30 * 24 * 3600);

/// What the background passes do.
#[derive(Debug, Clone, Default)]
pub struct WorkTaskSettings {
    /// Escalation targets and waits.
    pub rules: EscalationRules,
    /// The web chat's session limits (the housekeeping ends sessions past them).
    pub chat: ChatPolicy,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Conversations escalated.
    pub escalated: Vec<Escalated>,
    /// Reminders sent.
    pub reminders: Vec<SentReminder>,
    /// Web chat housekeeping.
    pub chat: ChatPurge,
}

/// One pass: the escalation sweep, the reminder sender, then web chat housekeeping.
pub async fn run_once(
    store: &Store,
    settings: &WorkTaskSettings,
) -> Result<PassReport, StoreError> {
    let escalated = store
        .escalate_overdue(
            &AccessContext::system("sla_sweep"),
            &settings.rules,
            PASS_LIMIT,
        )
        .await?;
    let reminders = store
        .send_due_reminders(&AccessContext::system("reminders"), PASS_LIMIT)
        .await?;
    let keep = i64::try_from(CHAT_KEEP_ENDED.as_millis()).unwrap_or(i64::MAX);
    let chat = store
        .purge_chat_state(
            &AccessContext::system("chat_housekeeping"),
            &settings.chat,
            keep,
            PASS_LIMIT,
        )
        .await?;
    Ok(PassReport {
        escalated,
        reminders,
        chat,
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
        settings: WorkTaskSettings,
        tick: Duration,
    ) -> Self {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let settings = Arc::new(settings);
        let task = tokio::spawn(async move {
            loop {
                if let Some(store) = opened() {
                    match run_once(&store, &settings).await {
                        Ok(r)
                            if !r.escalated.is_empty()
                                || !r.reminders.is_empty()
                                || !r.chat.is_empty() =>
                        {
                            tracing::info!(
                                escalated = r.escalated.len(),
                                reminders = r.reminders.len(),
                                chat_sessions_ended = r.chat.sessions_ended,
                                chat_sessions_deleted = r.chat.sessions_deleted,
                                chat_codes_deleted = r.chat.codes_deleted,
                                chat_throttles_deleted = r.chat.throttles_deleted,
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

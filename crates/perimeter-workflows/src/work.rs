//! Ordering a queue and escalating conversations that missed their service level.
//!
//! Pure rules over values: the store keeps a conversation's work state (queue, urgency, due
//! time, status, assignee) and the escalation sweep asks [`EscalationRules::escalation`] what
//! to do with each candidate at the clock's `now`.

use std::cmp::Ordering;

use perimeter_domain::Role;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::{ConversationStatus, Queue, Urgency};

impl Urgency {
    /// The queue rank of this urgency: lower is served first (emergencies jump every queue).
    /// Stored as the `priority` column so that SQL can order by it.
    pub const fn rank(self) -> i64 {
        match self {
            Urgency::Emergency => 0,
            Urgency::Urgent => 1,
            Urgency::Routine => 2,
        }
    }
}

/// What orders a conversation in its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueKey {
    /// Its urgency.
    pub urgency: Urgency,
    /// When its service level runs out (none: no level applies, served after those with one).
    pub due: Option<OffsetDateTime>,
    /// When it entered the queue (tie-break: first come, first served).
    pub queued: OffsetDateTime,
}

/// The queue order: emergencies first, then by urgency, then the earliest due time, then the
/// oldest. A total order, so sorting is stable and the same on every backend.
pub fn queue_order(a: &QueueKey, b: &QueueKey) -> Ordering {
    a.urgency
        .rank()
        .cmp(&b.urgency.rank())
        .then_with(|| match (a.due, b.due) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| a.queued.cmp(&b.queued))
}

/// Who takes over a conversation that missed its level in a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationTarget {
    /// The queue it moves to (may be the same queue: then only the notification changes).
    pub queue: Queue,
    /// The role notified (the supervisor or on-call person for that work).
    pub notify: Role,
}

/// Per-queue escalation targets, configurable per practice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationRules {
    /// The target for each queue, in [`Queue::ALL`] order.
    pub targets: [EscalationTarget; 7],
    /// The role notified when an emergency is overdue, whatever its queue.
    pub emergency_notify: Role,
}

impl Default for EscalationRules {
    fn default() -> Self {
        let t = |queue, notify| EscalationTarget { queue, notify };
        Self {
            targets: [
                t(Queue::FrontDesk, Role::FrontDesk),
                t(Queue::FrontDesk, Role::FrontDesk),
                t(Queue::NurseTriage, Role::Nurse),
                t(Queue::Billing, Role::Billing),
                t(Queue::FrontDesk, Role::FrontDesk),
                t(Queue::Clinician, Role::Clinician),
                t(Queue::Clinician, Role::Clinician),
            ],
            emergency_notify: Role::Clinician,
        }
    }
}

/// A conversation's work state, as far as escalation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkState {
    /// Its queue.
    pub queue: Queue,
    /// Its urgency.
    pub urgency: Urgency,
    /// Its status.
    pub status: ConversationStatus,
    /// When its level runs out.
    pub due: Option<OffsetDateTime>,
    /// Whether it was already escalated (once per miss: a new patient message or a re-triage
    /// sets a new due time and clears the mark).
    pub escalated: bool,
}

/// What to do with an overdue conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Escalation {
    /// Move it to this queue (possibly the one it is in).
    pub to_queue: Queue,
    /// Notify this role.
    pub notify: Role,
    /// How late it is.
    pub late_by: Duration,
}

impl EscalationRules {
    /// The target for conversations of `queue`.
    pub fn target(&self, queue: Queue) -> EscalationTarget {
        let idx = Queue::ALL.iter().position(|q| *q == queue).unwrap_or(0);
        self.targets.get(idx).copied().unwrap_or(EscalationTarget {
            queue,
            notify: Role::FrontDesk,
        })
    }

    /// Whether `state` must be escalated at `now`: it is open (waiting on the patient stops
    /// the practice's clock; closed is done), has a due time in the past, and was not yet
    /// escalated for this miss.
    pub fn escalation(&self, state: &WorkState, now: OffsetDateTime) -> Option<Escalation> {
        let due = state.due?;
        if state.status != ConversationStatus::Open || state.escalated || now <= due {
            return None;
        }
        let target = self.target(state.queue);
        let notify = if state.urgency == Urgency::Emergency {
            self.emergency_notify
        } else {
            target.notify
        };
        Some(Escalation {
            to_queue: target.queue,
            notify,
            late_by: now - due,
        })
    }
}

impl Queue {
    /// The roles who work this queue and may list it: clinical queues are for clinicians and
    /// nurses; administrative ones for the staff who handle that work (front desk sees every
    /// administrative queue, as the practice's catch-all).
    pub fn worked_by(self) -> &'static [Role] {
        use Role::{Billing as BI, Clinician as CL, FrontDesk as FD, Nurse as NU, Scheduler as SC};
        match self {
            Queue::FrontDesk => &[FD, SC],
            Queue::Scheduling => &[SC, FD],
            Queue::Refills => &[NU, CL, FD],
            Queue::Billing => &[BI, FD],
            Queue::Records => &[FD, BI],
            Queue::NurseTriage => &[NU, CL],
            Queue::Clinician => &[CL, NU],
        }
    }

    /// Whether any of `roles` works this queue.
    pub fn visible_to(self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.worked_by().contains(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perimeter_domain::{Clock, ManualClock};
    use proptest::prelude::*;

    fn at(min: i64) -> OffsetDateTime {
        time::macros::datetime!(2026-01-01 00:00 UTC) + Duration::minutes(min)
    }

    #[test]
    fn emergencies_first_then_urgency_then_due_then_age() {
        let mut items = [
            QueueKey {
                urgency: Urgency::Routine,
                due: Some(at(10)),
                queued: at(0),
            },
            QueueKey {
                urgency: Urgency::Urgent,
                due: Some(at(50)),
                queued: at(1),
            },
            QueueKey {
                urgency: Urgency::Routine,
                due: Some(at(5)),
                queued: at(2),
            },
            QueueKey {
                urgency: Urgency::Emergency,
                due: Some(at(100)),
                queued: at(3),
            },
            QueueKey {
                urgency: Urgency::Routine,
                due: None,
                queued: at(-5),
            },
            QueueKey {
                urgency: Urgency::Routine,
                due: Some(at(5)),
                queued: at(1),
            },
        ];
        items.sort_by(queue_order);
        let order: Vec<(i64, Option<OffsetDateTime>, OffsetDateTime)> = items
            .iter()
            .map(|k| (k.urgency.rank(), k.due, k.queued))
            .collect();
        assert_eq!(
            order,
            vec![
                (0, Some(at(100)), at(3)),
                (1, Some(at(50)), at(1)),
                (2, Some(at(5)), at(1)),
                (2, Some(at(5)), at(2)),
                (2, Some(at(10)), at(0)),
                (2, None, at(-5)),
            ]
        );
    }

    #[test]
    fn overdue_open_conversations_escalate_once_with_a_moving_clock() {
        let rules = EscalationRules::default();
        let clock = ManualClock::at_epoch_2026();
        let levels = crate::ServiceLevels::default();
        let due = clock.now() + levels.allowed_wait(Queue::NurseTriage, Urgency::Routine);
        let mut state = WorkState {
            queue: Queue::NurseTriage,
            urgency: Urgency::Routine,
            status: ConversationStatus::Open,
            due: Some(due),
            escalated: false,
        };
        clock.advance(Duration::minutes(240));
        assert_eq!(
            rules.escalation(&state, clock.now()),
            None,
            "due, not yet late"
        );
        clock.advance(Duration::minutes(1));
        let e = rules.escalation(&state, clock.now()).unwrap();
        assert_eq!(e.to_queue, Queue::Clinician);
        assert_eq!(e.notify, Role::Clinician);
        assert_eq!(e.late_by, Duration::minutes(1));
        state.escalated = true;
        assert_eq!(rules.escalation(&state, clock.now()), None, "only once");
        state.escalated = false;
        state.status = ConversationStatus::WaitingOnPatient;
        assert_eq!(
            rules.escalation(&state, clock.now()),
            None,
            "patient's turn"
        );
        state.status = ConversationStatus::Closed;
        assert_eq!(rules.escalation(&state, clock.now()), None);
        state.status = ConversationStatus::Open;
        state.queue = Queue::Billing;
        state.urgency = Urgency::Emergency;
        let e = rules.escalation(&state, clock.now()).unwrap();
        assert_eq!((e.to_queue, e.notify), (Queue::Billing, Role::Clinician));
        state.due = None;
        assert_eq!(rules.escalation(&state, clock.now()), None);
    }

    #[test]
    fn queues_are_worked_by_the_right_roles() {
        assert!(Queue::NurseTriage.visible_to(&[Role::Nurse]));
        assert!(!Queue::NurseTriage.visible_to(&[Role::Scheduler]));
        assert!(!Queue::NurseTriage.visible_to(&[Role::Admin]));
        assert!(Queue::Scheduling.visible_to(&[Role::Scheduler]));
        for q in Queue::ALL {
            for r in [
                Role::Admin,
                Role::Auditor,
                Role::PrivacyOfficer,
                Role::Service,
            ] {
                assert!(!q.visible_to(&[r]), "{q} {r}");
            }
        }
    }

    fn urgency() -> impl Strategy<Value = Urgency> {
        prop_oneof![
            Just(Urgency::Routine),
            Just(Urgency::Urgent),
            Just(Urgency::Emergency)
        ]
    }

    proptest! {
        #[test]
        fn queue_order_is_a_total_order_and_emergencies_lead(
            raw in proptest::collection::vec((urgency(), proptest::option::of(-1000i64..1000), -1000i64..1000), 0..40)
        ) {
            let mut items: Vec<QueueKey> = raw
                .into_iter()
                .map(|(u, d, q)| QueueKey { urgency: u, due: d.map(at), queued: at(q) })
                .collect();
            items.sort_by(queue_order);
            for w in items.windows(2) {
                prop_assert_ne!(queue_order(&w[0], &w[1]), Ordering::Greater);
                prop_assert!(w[0].urgency.rank() <= w[1].urgency.rank());
            }
        }
    }
}

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::Urgency;

/// A work queue in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Queue {
    /// Front desk.
    FrontDesk,
    /// Scheduling.
    Scheduling,
    /// Refills and pharmacy.
    Refills,
    /// Billing.
    Billing,
    /// Medical records.
    Records,
    /// Nurse triage.
    NurseTriage,
    /// Clinician.
    Clinician,
}

impl Queue {
    /// Every queue.
    pub const ALL: [Queue; 7] = [
        Queue::FrontDesk,
        Queue::Scheduling,
        Queue::Refills,
        Queue::Billing,
        Queue::Records,
        Queue::NurseTriage,
        Queue::Clinician,
    ];
}

/// Service levels per queue: how long a routine or urgent conversation may wait for a first
/// response. Emergencies have their own, short, level in every queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLevels {
    /// Routine wait per queue, in minutes, in [`Queue::ALL`] order.
    pub routine_minutes: [u32; 7],
    /// Urgent wait, in minutes, for every queue.
    pub urgent_minutes: u32,
    /// Emergency wait, in minutes, for every queue.
    pub emergency_minutes: u32,
}

impl Default for ServiceLevels {
    fn default() -> Self {
        Self {
            // front desk, scheduling, refills, billing, records: one business day;
            // nurse triage 4 h; clinician 1 business day.
            routine_minutes: [480, 480, 480, 1440, 1440, 240, 480],
            urgent_minutes: 60,
            emergency_minutes: 5,
        }
    }
}

/// Where a conversation stands against its service level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaState {
    /// Within the level.
    OnTime {
        /// When it is due.
        due: OffsetDateTime,
    },
    /// Past due: escalate.
    Overdue {
        /// When it was due.
        due: OffsetDateTime,
        /// By how much it is late.
        late_by: Duration,
    },
}

impl ServiceLevels {
    /// How long a conversation of this urgency may wait in this queue.
    pub fn allowed_wait(&self, queue: Queue, urgency: Urgency) -> Duration {
        let minutes = match urgency {
            Urgency::Emergency => self.emergency_minutes,
            Urgency::Urgent => self.urgent_minutes,
            Urgency::Routine => {
                let idx = Queue::ALL.iter().position(|q| *q == queue).unwrap_or(0);
                self.routine_minutes.get(idx).copied().unwrap_or(480)
            }
        };
        Duration::minutes(i64::from(minutes))
    }

    /// The state of a conversation opened at `opened` in `queue`, seen at `now`.
    pub fn state(
        &self,
        queue: Queue,
        urgency: Urgency,
        opened: OffsetDateTime,
        now: OffsetDateTime,
    ) -> SlaState {
        let due = opened + self.allowed_wait(queue, urgency);
        if now > due {
            SlaState::Overdue {
                due,
                late_by: now - due,
            }
        } else {
            SlaState::OnTime { due }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perimeter_domain::{Clock, ManualClock};

    #[test]
    fn overdue_after_the_level_with_a_moving_clock() {
        let levels = ServiceLevels::default();
        let clock = ManualClock::at_epoch_2026();
        let opened = clock.now();
        clock.advance(Duration::minutes(239));
        assert!(matches!(
            levels.state(Queue::NurseTriage, Urgency::Routine, opened, clock.now()),
            SlaState::OnTime { .. }
        ));
        clock.advance(Duration::minutes(2));
        assert_eq!(
            levels.state(Queue::NurseTriage, Urgency::Routine, opened, clock.now()),
            SlaState::Overdue {
                due: opened + Duration::minutes(240),
                late_by: Duration::minutes(1)
            }
        );
        // An emergency is overdue long before any routine level.
        assert!(matches!(
            levels.state(
                Queue::FrontDesk,
                Urgency::Emergency,
                opened,
                opened + Duration::minutes(6)
            ),
            SlaState::Overdue { .. }
        ));
    }
}

//! Appointment reminders: what a patient's reply means, and the personalisation tier.
//!
//! Replies arrive as SMS text, so the parser takes anything: it never fails, it only decides
//! whether the text is a confirmation (`C`), a request to reschedule (`R`) or something a person
//! must read. Personalisation is computed here, locally, from counts and dates; a model that
//! phrases a reminder sees only the [`ReminderTier`] token, never the history.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// What a reply to a reminder says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderReply {
    /// `C`, `CONFIRM`, `confirmed`: the patient will come.
    Confirm,
    /// `R`, `RESCHEDULE`: the patient wants another time (a scheduler follows up).
    Reschedule,
    /// Anything else: a person reads it like any other message.
    Other,
}

impl ReminderReply {
    /// The stable name.
    pub const fn name(self) -> &'static str {
        match self {
            ReminderReply::Confirm => "confirm",
            ReminderReply::Reschedule => "reschedule",
            ReminderReply::Other => "other",
        }
    }
}

/// Reads a reply. Case, surrounding white space, quotes and trailing punctuation do not
/// matter; anything longer than one of the keywords is `Other` (a sentence such as "C you
/// Tuesday, but my chest hurts" must reach a person, not be filed as a confirmation).
pub fn parse_reminder_reply(text: &str) -> ReminderReply {
    let trimmed = text.trim_matches(|c: char| {
        c.is_whitespace() || matches!(c, '.' | '!' | '"' | '\'' | '`' | '“' | '”' | '‘' | '’')
    });
    if trimmed.chars().count() > 16 {
        return ReminderReply::Other;
    }
    let word = trimmed.to_ascii_uppercase();
    match word.as_str() {
        "C" | "CONFIRM" | "CONFIRMED" => ReminderReply::Confirm,
        "R" | "RESCHEDULE" => ReminderReply::Reschedule,
        _ => ReminderReply::Other,
    }
}

/// The only personalisation a reminder's wording may depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderTier {
    /// No earlier visit: directions, what to bring.
    FirstVisit,
    /// Seen within the last year and a half.
    Returning,
    /// Last seen longer ago than that: due for a check-up.
    Overdue,
}

impl ReminderTier {
    /// The token a model may see (`{"tier": "first_visit"}`).
    pub const fn name(self) -> &'static str {
        match self {
            ReminderTier::FirstVisit => "first_visit",
            ReminderTier::Returning => "returning",
            ReminderTier::Overdue => "overdue",
        }
    }

    /// The tier from the patient's visit history, computed locally.
    pub fn from_history(
        earlier_visits: u32,
        last_visit: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> ReminderTier {
        match (earlier_visits, last_visit) {
            (0, _) | (_, None) => ReminderTier::FirstVisit,
            (_, Some(last)) if now - last > Duration::days(548) => ReminderTier::Overdue,
            _ => ReminderTier::Returning,
        }
    }
}

impl std::str::FromStr for ReminderTier {
    type Err = crate::UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "first_visit" => Ok(ReminderTier::FirstVisit),
            "returning" => Ok(ReminderTier::Returning),
            "overdue" => Ok(ReminderTier::Overdue),
            _ => Err(crate::UnknownName {
                kind: "tier",
                expected: "first_visit, returning, overdue",
            }),
        }
    }
}

/// When a reminder for an appointment at `appointment` is sent: `lead` before it, but never
/// in the past (a reminder scheduled late goes out at once) and never after the appointment.
pub fn reminder_send_at(
    appointment: OffsetDateTime,
    lead: Duration,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    if appointment <= now {
        return None;
    }
    Some((appointment - lead).max(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keywords() {
        for c in [
            "C",
            "c",
            " c ",
            "C.",
            "confirm",
            "Confirmed!",
            "\"C\"",
            "\u{201c}c\u{201d}",
        ] {
            assert_eq!(parse_reminder_reply(c), ReminderReply::Confirm, "{c:?}");
        }
        for r in ["R", "r", "reschedule", "RESCHEDULE."] {
            assert_eq!(parse_reminder_reply(r), ReminderReply::Reschedule, "{r:?}");
        }
        for o in [
            "",
            "yes",
            "CC",
            "C you Tuesday, but my chest hurts",
            "cancel",
            "STOP",
            "r u open",
            "ｃ",
        ] {
            assert_eq!(parse_reminder_reply(o), ReminderReply::Other, "{o:?}");
        }
    }

    #[test]
    fn tiers_and_send_times() {
        let now = time::macros::datetime!(2026-06-01 12:00 UTC);
        assert_eq!(
            ReminderTier::from_history(0, None, now),
            ReminderTier::FirstVisit
        );
        assert_eq!(
            ReminderTier::from_history(3, Some(now - Duration::days(90)), now),
            ReminderTier::Returning
        );
        assert_eq!(
            ReminderTier::from_history(3, Some(now - Duration::days(900)), now),
            ReminderTier::Overdue
        );
        for t in [
            ReminderTier::FirstVisit,
            ReminderTier::Returning,
            ReminderTier::Overdue,
        ] {
            assert_eq!(t.name().parse::<ReminderTier>().unwrap(), t);
        }
        let appt = now + Duration::days(3);
        assert_eq!(
            reminder_send_at(appt, Duration::days(1), now),
            Some(appt - Duration::days(1))
        );
        assert_eq!(reminder_send_at(appt, Duration::days(5), now), Some(now));
        assert_eq!(
            reminder_send_at(now - Duration::hours(1), Duration::days(1), now),
            None
        );
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panicking(s in "\\PC*") {
            let _ = parse_reminder_reply(&s);
        }

        #[test]
        fn padding_and_case_do_not_change_the_meaning(
            pre in "[ \t\r\n]{0,4}", post in "[ \t\r\n.!]{0,4}",
            word in prop_oneof![Just("c"), Just("C"), Just("confirm"), Just("r"), Just("Reschedule")]
        ) {
            let expected = parse_reminder_reply(word);
            prop_assert_ne!(expected, ReminderReply::Other);
            prop_assert_eq!(parse_reminder_reply(&format!("{pre}{word}{post}")), expected);
        }

        #[test]
        fn longer_sentences_always_reach_a_person(s in "[a-zA-Z]{1,8} [a-zA-Z]{1,20}") {
            prop_assert_eq!(parse_reminder_reply(&s), ReminderReply::Other);
        }
    }
}

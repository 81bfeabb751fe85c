//! Emergency access ("break the glass"): a clinician or nurse may open a patient's clinical
//! record outside their care relationships by stating a reason code and a free-text
//! justification. The grant lasts 60 minutes, every access under it is audited with purpose
//! `emergency` and detail `break_glass`, and the privacy officer is notified through an outbox
//! row.
//!
//! The justification is free text a person wrote and may contain PHI: it is stored encrypted
//! and never enters the audit trail, logs or `Debug` output. The audit trail gets the reason
//! code.

use std::fmt;
use std::str::FromStr;

use perimeter_domain::{PatientId, Role, StaffId, UnknownName};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::authz::{Permission, allowed};

/// The stated reason, as a code (this is what the audit trail and notification carry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakGlassReason {
    /// A medical emergency involving the patient.
    MedicalEmergency,
    /// The patient cannot consent or communicate, and care is needed now.
    PatientUnableToConsent,
    /// Covering for the patient's clinician (absence, on call).
    CoveringClinician,
    /// An urgent result or message needs follow-up now.
    UrgentFollowUp,
    /// Another reason, explained in the justification.
    Other,
}

impl BreakGlassReason {
    /// Every reason.
    pub const ALL: &'static [BreakGlassReason] = &[
        BreakGlassReason::MedicalEmergency,
        BreakGlassReason::PatientUnableToConsent,
        BreakGlassReason::CoveringClinician,
        BreakGlassReason::UrgentFollowUp,
        BreakGlassReason::Other,
    ];

    /// The stable code.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakGlassReason::MedicalEmergency => "medical_emergency",
            BreakGlassReason::PatientUnableToConsent => "patient_unable_to_consent",
            BreakGlassReason::CoveringClinician => "covering_clinician",
            BreakGlassReason::UrgentFollowUp => "urgent_follow_up",
            BreakGlassReason::Other => "other",
        }
    }
}

impl FromStr for BreakGlassReason {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BreakGlassReason::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| UnknownName {
                kind: "break-glass reason",
                given: s.chars().take(40).collect(),
                expected: BreakGlassReason::ALL
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl fmt::Display for BreakGlassReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The free-text justification. May contain PHI: encrypt before storing; `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Justification(Zeroizing<String>);

impl Justification {
    /// Fewest characters.
    pub const MIN_CHARS: usize = 10;
    /// Most characters.
    pub const MAX_CHARS: usize = 2_000;

    /// Validates: 10 to 2,000 characters after trimming, no control characters other than
    /// line breaks.
    pub fn new(text: &str) -> Result<Self, BreakGlassError> {
        let trimmed = text.trim();
        let n = trimmed.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&n) {
            return Err(BreakGlassError::Justification);
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\r')
        {
            return Err(BreakGlassError::Justification);
        }
        Ok(Self(Zeroizing::new(trimmed.to_owned())))
    }

    /// The text, to encrypt for storage and to show the privacy officer.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Justification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Justification(<redacted>)")
    }
}

/// Why emergency access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BreakGlassError {
    /// Only clinicians and nurses may break the glass.
    #[error("emergency access: only clinicians and nurses may use emergency access")]
    NotPermitted,
    /// The justification is missing, too short, too long or has control characters.
    #[error("reason_text: expected 10 to 2000 characters explaining the emergency")]
    Justification,
}

/// A granted emergency access, as stored (with the justification encrypted beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlassGrant {
    /// The grant's id (in the audit trail as the object id).
    pub id: Uuid,
    /// Who.
    pub user: StaffId,
    /// Which patient.
    pub patient: PatientId,
    /// The stated reason code.
    pub reason: BreakGlassReason,
    /// When granted.
    pub granted_at: OffsetDateTime,
    /// When it lapses.
    pub expires_at: OffsetDateTime,
}

impl BreakGlassGrant {
    /// Whether this grant lets `user` see `patient` at `now`.
    pub fn is_active_for(&self, user: StaffId, patient: PatientId, now: OffsetDateTime) -> bool {
        self.user == user
            && self.patient == patient
            && self.granted_at <= now
            && now < self.expires_at
    }
}

/// The outbox row telling the privacy officer about an emergency access. Carries codes and ids
/// only; the officer reads the justification through the audited review screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyNotification {
    /// The notification's id.
    pub id: Uuid,
    /// `"break_glass"`.
    pub kind: String,
    /// The grant it is about.
    pub grant: Uuid,
    /// Who broke the glass.
    pub user: StaffId,
    /// Whose record.
    pub patient: PatientId,
    /// The reason code.
    pub reason: BreakGlassReason,
    /// When.
    pub created_at: OffsetDateTime,
}

/// Emergency-access parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakGlassPolicy {
    /// How long a grant lasts.
    pub duration: Duration,
}

impl Default for BreakGlassPolicy {
    fn default() -> Self {
        Self {
            duration: Duration::minutes(60),
        }
    }
}

impl BreakGlassPolicy {
    /// Grants emergency access to `patient` for `user` holding `roles` at `now`, with the
    /// notification for the privacy officer. Store both, the justification encrypted, and the
    /// audit event, in one transaction.
    pub fn grant(
        &self,
        user: StaffId,
        roles: &[Role],
        patient: PatientId,
        reason: BreakGlassReason,
        justification: &Justification,
        now: OffsetDateTime,
    ) -> Result<(BreakGlassGrant, PrivacyNotification), BreakGlassError> {
        if !allowed(roles, Permission::BreakGlass) {
            return Err(BreakGlassError::NotPermitted);
        }
        // Validated on construction; re-checked so a grant can never rest on an empty reason.
        if justification.as_str().chars().count() < Justification::MIN_CHARS {
            return Err(BreakGlassError::Justification);
        }
        let grant = BreakGlassGrant {
            id: Uuid::now_v7(),
            user,
            patient,
            reason,
            granted_at: now,
            expires_at: now + self.duration,
        };
        let note = PrivacyNotification {
            id: Uuid::now_v7(),
            kind: "break_glass".to_owned(),
            grant: grant.id,
            user,
            patient,
            reason,
            created_at: now,
        };
        Ok((grant, note))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 03:00:00 UTC);

    #[test]
    fn clinicians_and_nurses_get_a_sixty_minute_grant_and_a_notification() {
        let user = StaffId::new();
        let patient = PatientId::new();
        let why =
            Justification::new("Patient collapsed in the waiting room; need allergy list").unwrap();
        let (grant, note) = BreakGlassPolicy::default()
            .grant(
                user,
                &[Role::Nurse],
                patient,
                BreakGlassReason::MedicalEmergency,
                &why,
                T0,
            )
            .unwrap();
        assert_eq!(grant.expires_at, T0 + Duration::minutes(60));
        assert!(grant.is_active_for(user, patient, T0 + Duration::minutes(59)));
        assert!(!grant.is_active_for(user, patient, T0 + Duration::minutes(60)));
        assert!(!grant.is_active_for(StaffId::new(), patient, T0));
        assert!(!grant.is_active_for(user, PatientId::new(), T0));
        assert_eq!(note.kind, "break_glass");
        assert_eq!(note.grant, grant.id);
        assert_eq!(note.reason, BreakGlassReason::MedicalEmergency);
        // The justification appears in no Debug output.
        for text in [
            format!("{grant:?}"),
            format!("{note:?}"),
            format!("{why:?}"),
        ] {
            assert!(!text.contains("collapsed"));
        }
    }

    #[test]
    fn other_roles_and_empty_reasons_are_refused() {
        let why = Justification::new("covering the on-call list tonight").unwrap();
        for role in [
            Role::Scheduler,
            Role::Admin,
            Role::PrivacyOfficer,
            Role::Auditor,
            Role::Service,
            Role::Billing,
            Role::FrontDesk,
        ] {
            assert_eq!(
                BreakGlassPolicy::default()
                    .grant(
                        StaffId::new(),
                        &[role],
                        PatientId::new(),
                        BreakGlassReason::Other,
                        &why,
                        T0
                    )
                    .unwrap_err(),
                BreakGlassError::NotPermitted
            );
        }
        assert_eq!(
            Justification::new("   short  ").unwrap_err(),
            BreakGlassError::Justification
        );
        assert_eq!(
            Justification::new(&"x".repeat(2001)).unwrap_err(),
            BreakGlassError::Justification
        );
        assert_eq!(
            Justification::new("bell \u{7} character here").unwrap_err(),
            BreakGlassError::Justification
        );
        assert!(Justification::new("line one\nline two of the reason").is_ok());
    }

    #[test]
    fn reason_codes_round_trip() {
        for r in BreakGlassReason::ALL {
            assert_eq!(r.as_str().parse::<BreakGlassReason>().unwrap(), *r);
        }
        assert!("because".parse::<BreakGlassReason>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn justification_never_panics(s in "\\PC{0,300}") {
            let _ = Justification::new(&s);
            let _ = s.parse::<BreakGlassReason>();
        }
    }
}

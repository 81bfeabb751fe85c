//! Closed vocabularies shared by access control, audit and the AI gateway.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A name that is not one of a vocabulary's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {given:?}; expected one of: {expected}")]
pub struct UnknownName {
    /// Which vocabulary.
    pub kind: &'static str,
    /// What was given (vocabulary names are never PHI).
    pub given: String,
    /// The accepted names, comma separated.
    pub expected: String,
}

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable snake_case name (used in configuration, the API and the database).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.trim() {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownName {
                        kind: $kind,
                        given: other.chars().take(40).collect(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}

vocabulary!(
    /// What a staff account (or service client) may be. A user may hold several.
    Role, "role" {
        /// Configures the practice: users, vendors, templates, retention.
        Admin => "admin",
        /// Reviews the audit trail, incidents and emergency access.
        PrivacyOfficer => "privacy_officer",
        /// Physician or other licensed provider.
        Clinician => "clinician",
        /// Nurse: triage and clinical follow-up.
        Nurse => "nurse",
        /// Scheduling staff: contact and appointment data.
        Scheduler => "scheduler",
        /// Billing staff: insurance and account data.
        Billing => "billing",
        /// Front desk: what intake needs.
        FrontDesk => "front_desk",
        /// Read-only access to the audit trail.
        Auditor => "auditor",
        /// A machine client of the AI gateway or the API (API token, no console).
        Service => "service",
    }
);

vocabulary!(
    /// Why data is accessed, after HL7 v3 PurposeOfUse (TREAT, HPAYMT, HOPERAT, ETREAT).
    PurposeOfUse, "purpose of use" {
        /// Treatment.
        Treatment => "treatment",
        /// Payment.
        Payment => "payment",
        /// Health-care operations.
        Operations => "operations",
        /// Emergency treatment (break-the-glass).
        Emergency => "emergency",
    }
);

impl PurposeOfUse {
    /// The HL7 v3 ActReason code, as used in FHIR AuditEvent `purposeOfUse`.
    pub const fn hl7_code(self) -> &'static str {
        match self {
            PurposeOfUse::Treatment => "TREAT",
            PurposeOfUse::Payment => "HPAYMT",
            PurposeOfUse::Operations => "HOPERAT",
            PurposeOfUse::Emergency => "ETREAT",
        }
    }
}

vocabulary!(
    /// Categories of patient data, the unit of minimum-necessary access and of audit records.
    DataCategory, "data category" {
        /// Name, birth date, sex.
        Demographics => "demographics",
        /// Phone, e-mail, postal address.
        Contact => "contact",
        /// Medical record number and other identifiers.
        Identifiers => "identifiers",
        /// Appointment requests and times.
        Appointment => "appointment",
        /// Message bodies about symptoms, results, medications.
        ClinicalMessage => "clinical_message",
        /// Message bodies about administrative matters.
        AdministrativeMessage => "administrative_message",
        /// Insurance and health-plan data.
        Insurance => "insurance",
        /// Accounts, balances and payments.
        Billing => "billing",
        /// Staff notes on a conversation.
        InternalNote => "internal_note",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), *role);
            let json = serde_json::to_string(role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
        }
        for p in PurposeOfUse::ALL {
            assert_eq!(p.as_str().parse::<PurposeOfUse>().unwrap(), *p);
        }
        for c in DataCategory::ALL {
            assert_eq!(c.as_str().parse::<DataCategory>().unwrap(), *c);
        }
    }

    #[test]
    fn unknown_name_lists_the_choices() {
        let err = "doctor".parse::<Role>().unwrap_err();
        assert!(err.to_string().contains("clinician"));
        assert!(err.to_string().contains("\"doctor\""));
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,64}") {
            let _ = s.parse::<Role>();
            let _ = s.parse::<PurposeOfUse>();
            let _ = s.parse::<DataCategory>();
        }
    }
}

//! Purposes of AI calls and their minimum-necessary rules.

use perimeter_domain::{DataCategory, Role};
use serde::{Deserialize, Serialize};

use crate::vendor::DataClass;

/// Why an AI model is being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AiPurpose {
    /// Classify a patient message's intent and urgency.
    ClassifyIntent,
    /// Summarise a conversation for the coordinator.
    SummarizeForCoordinator,
    /// Draft a reply for an administrative intent, for a person to approve.
    DraftAdministrativeReply,
    /// Personalise a reminder: the model gets a tier token, never the patient's history.
    PersonaliseReminder,
    /// A practice developer's own tool through the OpenAI-compatible endpoint.
    DeveloperGateway,
}

impl AiPurpose {
    /// Every purpose.
    pub const ALL: [AiPurpose; 5] = [
        AiPurpose::ClassifyIntent,
        AiPurpose::SummarizeForCoordinator,
        AiPurpose::DraftAdministrativeReply,
        AiPurpose::PersonaliseReminder,
        AiPurpose::DeveloperGateway,
    ];

    /// The stable name used in tokens' scopes, the API and audit records.
    pub const fn as_str(self) -> &'static str {
        match self {
            AiPurpose::ClassifyIntent => "classify_intent",
            AiPurpose::SummarizeForCoordinator => "summarize_for_coordinator",
            AiPurpose::DraftAdministrativeReply => "draft_administrative_reply",
            AiPurpose::PersonaliseReminder => "personalise_reminder",
            AiPurpose::DeveloperGateway => "developer_gateway",
        }
    }

    /// The rule for this purpose.
    pub fn rule(self) -> PurposeRule {
        use DataCategory as C;
        use Role as R;
        match self {
            AiPurpose::ClassifyIntent => PurposeRule {
                purpose: self,
                max_class: DataClass::Phi,
                categories: &[C::ClinicalMessage, C::AdministrativeMessage],
                patient_facing: false,
                staff_roles: &[R::Clinician, R::Nurse, R::FrontDesk],
                system_may_call: true,
            },
            AiPurpose::SummarizeForCoordinator => PurposeRule {
                purpose: self,
                max_class: DataClass::Phi,
                categories: &[C::ClinicalMessage, C::AdministrativeMessage, C::Appointment],
                patient_facing: false,
                staff_roles: &[R::Clinician, R::Nurse, R::FrontDesk, R::Scheduler],
                system_may_call: true,
            },
            AiPurpose::DraftAdministrativeReply => PurposeRule {
                purpose: self,
                max_class: DataClass::Phi,
                categories: &[C::AdministrativeMessage, C::Appointment],
                patient_facing: true,
                staff_roles: &[
                    R::FrontDesk,
                    R::Scheduler,
                    R::Billing,
                    R::Nurse,
                    R::Clinician,
                ],
                system_may_call: true,
            },
            AiPurpose::PersonaliseReminder => PurposeRule {
                purpose: self,
                max_class: DataClass::None,
                categories: &[],
                patient_facing: true,
                staff_roles: &[R::Scheduler, R::FrontDesk],
                system_may_call: true,
            },
            AiPurpose::DeveloperGateway => PurposeRule {
                purpose: self,
                max_class: DataClass::Phi,
                categories: &[C::ClinicalMessage, C::AdministrativeMessage],
                patient_facing: false,
                staff_roles: &[],
                system_may_call: false,
            },
        }
    }
}

/// What a purpose may send and who may ask for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeRule {
    /// The purpose.
    pub purpose: AiPurpose,
    /// The most sensitive class the purpose may ever send, whatever the vendor's terms.
    pub max_class: DataClass,
    /// The data categories the purpose may include (minimum necessary); empty means none.
    pub categories: &'static [DataCategory],
    /// Whether the output may reach a patient (and so must pass the clinical-advice check).
    pub patient_facing: bool,
    /// Staff roles that may initiate it.
    pub staff_roles: &'static [Role],
    /// Whether Perimeter's own workflows may initiate it.
    pub system_may_call: bool,
}

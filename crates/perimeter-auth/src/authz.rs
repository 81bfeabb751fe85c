//! Authorization: the permission matrix (one table, deny by default) and minimum-necessary
//! access to categories of patient data.
//!
//! [`MATRIX`] is the only place that says which role may do what. [`allowed`] reads it;
//! nothing else grants a permission. The table is rendered into `docs/permissions.md` by
//! [`render_permissions_markdown`], and a test fails when the document is out of step.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use perimeter_domain::{DataCategory, PurposeOfUse, Role, UnknownName};
use serde::{Deserialize, Serialize};

macro_rules! permissions {
    ($( $(#[$doc:meta])* $variant:ident => $text:literal : $summary:literal ),+ $(,)?) => {
        /// Everything the product lets someone do, now or planned. Each route declares one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Permission {
            $( $(#[$doc])* $variant ),+
        }

        impl Permission {
            /// Every permission, in declaration order.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant),+];

            /// The stable snake_case name (API, audit, configuration).
            pub const fn as_str(self) -> &'static str {
                match self { $(Permission::$variant => $text),+ }
            }

            /// One line saying what it allows (for the rendered table).
            pub const fn summary(self) -> &'static str {
                match self { $(Permission::$variant => $summary),+ }
            }
        }

        impl FromStr for Permission {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s.trim() {
                    $($text => Ok(Permission::$variant),)+
                    other => Err(UnknownName {
                        kind: "permission",
                        given: other.chars().take(40).collect(),
                        expected: [$($text),+].join(", "),
                    }),
                }
            }
        }
    };
}

permissions! {
    /// The signed-in user's own account: who am I, log out, own MFA and sessions.
    OwnAccount => "own_account" : "See and manage one's own account, sessions and MFA",
    /// List the work queues (conversation metadata: intent, urgency, status; no bodies).
    ViewQueue => "view_queue" : "List work queues (intent, urgency, status; no message bodies)",
    /// Open a conversation's thread and its administrative messages.
    ReadConversation => "read_conversation" : "Open a conversation and its administrative messages",
    /// Read message bodies about symptoms, results, medications.
    ReadClinicalMessage => "read_clinical_message" : "Read clinical message bodies (symptoms, results, medications)",
    /// Send a reply to a patient.
    ReplyToPatient => "reply_to_patient" : "Send a reply to a patient",
    /// Approve (and send) an AI-drafted reply.
    ApproveDraft => "approve_draft" : "Approve and send an AI-drafted reply",
    /// Ask for an AI summary or draft of a conversation (through the gateway's policy).
    RequestAiAssist => "request_ai_assist" : "Ask for an AI summary or draft (policy-checked)",
    /// Triage: set urgency, move between queues, assign.
    TriageConversation => "triage_conversation" : "Set urgency, move between queues, assign",
    /// Close or reopen a conversation.
    CloseConversation => "close_conversation" : "Close or reopen a conversation",
    /// Write staff notes on a conversation.
    WriteInternalNote => "write_internal_note" : "Write internal staff notes",
    /// Search for patients (by blind index).
    SearchPatients => "search_patients" : "Search for a patient",
    /// See name, birth date, sex.
    ViewDemographics => "view_demographics" : "See demographics (name, birth date, sex)",
    /// See phone, e-mail, postal address.
    ViewContactData => "view_contact_data" : "See contact data (phone, e-mail, address)",
    /// Change contact data.
    EditContactData => "edit_contact_data" : "Change contact data",
    /// See medical record numbers and other identifiers.
    ViewIdentifiers => "view_identifiers" : "See medical record numbers and other identifiers",
    /// See appointment requests and times.
    ViewAppointments => "view_appointments" : "See appointment requests and times",
    /// Book, move and cancel appointments.
    ManageAppointments => "manage_appointments" : "Book, move, cancel appointments",
    /// See insurance and health-plan data.
    ViewInsurance => "view_insurance" : "See insurance and health-plan data",
    /// Record, change and end a patient's insurance coverages.
    ManageInsurance => "manage_insurance" : "Record, change and end insurance coverages",
    /// See accounts, balances and payments.
    ViewBilling => "view_billing" : "See accounts, balances, payments",
    /// Set and change a patient's billing account (account number, balance, statement date).
    ManageBilling => "manage_billing" : "Set and change billing accounts and balances",
    /// Intake: register a patient, link an unverified contact to a patient record.
    RegisterPatient => "register_patient" : "Register a patient, link a contact to a record (intake)",
    /// Emergency access to a record outside one's care relationships.
    BreakGlass => "break_glass" : "Emergency access outside one's care relationships",
    /// Export a patient's record (HIPAA right of access) or an accounting of disclosures.
    ExportPatientRecord => "export_patient_record" : "Export a patient's record or accounting of disclosures",
    /// Crypto-shred a patient's data (retention end, valid erasure request).
    ErasePatient => "erase_patient" : "Crypto-shred a patient's data",
    /// Call the AI gateway (OpenAI-compatible API) as a machine client.
    UseGateway => "use_gateway" : "Call the AI gateway as a machine client",
    /// Call the de-identification endpoint as a machine client.
    DeidentifyText => "deidentify_text" : "Call the de-identification endpoint",
    /// Submit inbound patient messages (voicemail and voice-agent transcripts) as a machine
    /// client.
    IngestChannel => "ingest_channel" : "Submit voicemail and voice-agent transcripts (machine client)",
    /// See text-message opt-outs and the outbound message status of the practice.
    ManageChannels => "manage_channels" : "See text-message opt-outs and outbound message status",
    /// Create, disable and list staff accounts.
    ManageUsers => "manage_users" : "Create, disable, list staff accounts",
    /// Change a staff account's roles.
    ManageRoles => "manage_roles" : "Change staff roles",
    /// Reset a user's MFA so they enrol again.
    ResetMfa => "reset_mfa" : "Reset a user's MFA",
    /// End a user's sessions (incident response).
    EndUserSessions => "end_user_sessions" : "End another user's sessions",
    /// See locked accounts and addresses, and unlock them.
    ManageLockouts => "manage_lockouts" : "See and lift lockouts",
    /// Create, list and revoke API tokens for machine clients.
    ManageApiTokens => "manage_api_tokens" : "Create, list, revoke API tokens",
    /// See the AI vendor registry and BAA status.
    ViewVendors => "view_vendors" : "See AI vendors and BAA status",
    /// Change the AI vendor registry and BAA terms.
    ManageVendors => "manage_vendors" : "Change AI vendors and BAA terms",
    /// Edit reply templates.
    ManageTemplates => "manage_templates" : "Edit reply templates",
    /// Change retention settings.
    ManageRetention => "manage_retention" : "Change retention settings",
    /// Rotate keys.
    ManageKeys => "manage_keys" : "Rotate encryption and signing keys",
    /// See system status and metrics.
    ViewSystemStatus => "view_system_status" : "See system status and metrics",
    /// Read the audit trail.
    ReadAudit => "read_audit" : "Read the audit trail",
    /// Export the audit trail (FHIR AuditEvent, CSV).
    ExportAudit => "export_audit" : "Export the audit trail",
    /// Verify the audit trail against its checkpoints.
    VerifyAudit => "verify_audit" : "Verify the audit trail and checkpoints",
    /// Review emergency-access events and their stated reasons.
    ReviewEmergencyAccess => "review_emergency_access" : "Review emergency access and its stated reasons",
    /// Record and manage privacy incidents.
    ManageIncidents => "manage_incidents" : "Record and manage privacy incidents",
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use Role::{
    Admin as AD, Auditor as AU, Billing as BI, Clinician as CL, FrontDesk as FD, Nurse as NU,
    PrivacyOfficer as PO, Scheduler as SC, Service as SV,
};

/// Staff roles that work the patient queues.
const QUEUE_STAFF: &[Role] = &[CL, NU, SC, BI, FD];
/// Every human role.
const HUMANS: &[Role] = &[AD, PO, CL, NU, SC, BI, FD, AU];

/// THE permission matrix: for each permission, the roles that hold it. Anything not listed is
/// denied. Admins configure but see no patient data; auditors see the trail only; service
/// clients only call the machine endpoints (and an API token narrows that further).
pub const MATRIX: &[(Permission, &[Role])] = &[
    (Permission::OwnAccount, HUMANS),
    (Permission::ViewQueue, QUEUE_STAFF),
    (Permission::ReadConversation, QUEUE_STAFF),
    (Permission::ReadClinicalMessage, &[CL, NU]),
    (Permission::ReplyToPatient, QUEUE_STAFF),
    (Permission::ApproveDraft, QUEUE_STAFF),
    (Permission::RequestAiAssist, QUEUE_STAFF),
    (Permission::TriageConversation, &[CL, NU, FD]),
    (Permission::CloseConversation, QUEUE_STAFF),
    (Permission::WriteInternalNote, QUEUE_STAFF),
    (Permission::SearchPatients, QUEUE_STAFF),
    (Permission::ViewDemographics, QUEUE_STAFF),
    (Permission::ViewContactData, QUEUE_STAFF),
    (Permission::EditContactData, &[SC, FD]),
    (Permission::ViewIdentifiers, &[CL, NU, BI, FD]),
    (Permission::ViewAppointments, &[CL, NU, SC, FD]),
    (Permission::ManageAppointments, &[SC, FD]),
    (Permission::ViewInsurance, &[BI, FD]),
    (Permission::ManageInsurance, &[BI, FD]),
    (Permission::ViewBilling, &[BI]),
    (Permission::ManageBilling, &[BI]),
    (Permission::RegisterPatient, &[SC, FD]),
    (Permission::BreakGlass, &[CL, NU]),
    (Permission::ExportPatientRecord, &[PO]),
    (Permission::ErasePatient, &[PO]),
    (Permission::UseGateway, &[SV]),
    (Permission::DeidentifyText, &[SV]),
    (Permission::IngestChannel, &[SV]),
    (Permission::ManageChannels, &[AD]),
    (Permission::ManageUsers, &[AD]),
    (Permission::ManageRoles, &[AD]),
    (Permission::ResetMfa, &[AD]),
    (Permission::EndUserSessions, &[AD, PO]),
    (Permission::ManageLockouts, &[AD]),
    (Permission::ManageApiTokens, &[AD]),
    (Permission::ViewVendors, &[AD, PO]),
    (Permission::ManageVendors, &[AD]),
    (Permission::ManageTemplates, &[AD]),
    (Permission::ManageRetention, &[AD]),
    (Permission::ManageKeys, &[AD]),
    (Permission::ViewSystemStatus, &[AD]),
    (Permission::ReadAudit, &[PO, AU]),
    (Permission::ExportAudit, &[PO, AU]),
    (Permission::VerifyAudit, &[PO, AU]),
    (Permission::ReviewEmergencyAccess, &[PO]),
    (Permission::ManageIncidents, &[PO]),
];

/// The roles holding `perm` (empty if the matrix does not list it: deny by default).
pub fn roles_with(perm: Permission) -> &'static [Role] {
    MATRIX
        .iter()
        .find(|(p, _)| *p == perm)
        .map_or(&[], |(_, roles)| *roles)
}

/// Whether any of `roles` holds `perm`. Deny by default: an empty role list, or a permission
/// the matrix does not list, is refused.
pub fn allowed(roles: &[Role], perm: Permission) -> bool {
    let holders = roles_with(perm);
    roles.iter().any(|r| holders.contains(r))
}

/// Every permission `roles` hold.
pub fn permissions_of(roles: &[Role]) -> BTreeSet<Permission> {
    Permission::ALL
        .iter()
        .copied()
        .filter(|p| allowed(roles, *p))
        .collect()
}

/// The categories of patient data a single role may see (minimum necessary).
pub const fn role_categories(role: Role) -> &'static [DataCategory] {
    use DataCategory as D;
    match role {
        Role::Clinician | Role::Nurse => &[
            D::Demographics,
            D::Contact,
            D::Identifiers,
            D::Appointment,
            D::ClinicalMessage,
            D::AdministrativeMessage,
            D::InternalNote,
        ],
        Role::Scheduler => &[
            D::Demographics,
            D::Contact,
            D::Appointment,
            D::AdministrativeMessage,
            D::InternalNote,
        ],
        Role::Billing => &[
            D::Demographics,
            D::Contact,
            D::Identifiers,
            D::Insurance,
            D::Billing,
            D::AdministrativeMessage,
            D::InternalNote,
        ],
        Role::FrontDesk => &[
            D::Demographics,
            D::Contact,
            D::Identifiers,
            D::Appointment,
            D::Insurance,
            D::AdministrativeMessage,
            D::InternalNote,
        ],
        Role::Admin | Role::PrivacyOfficer | Role::Auditor | Role::Service => &[],
    }
}

/// The categories of patient data `roles` may see: the union over the roles. Admins, privacy
/// officers, auditors and service clients see none through the console (privacy officers use
/// the audited export instead).
pub fn visible_categories(roles: &[Role]) -> BTreeSet<DataCategory> {
    roles
        .iter()
        .flat_map(|r| role_categories(*r).iter().copied())
        .collect()
}

/// Categories that, for clinicians and nurses, require a care relationship with the patient
/// (or an emergency-access grant).
pub const CARE_RESTRICTED: &[DataCategory] = &[DataCategory::ClinicalMessage];

/// The categories of data a permission exposes (used to check the matrix against
/// [`visible_categories`]).
pub const fn permission_categories(perm: Permission) -> &'static [DataCategory] {
    use DataCategory as D;
    match perm {
        Permission::ReadConversation => &[D::AdministrativeMessage],
        Permission::ReadClinicalMessage => &[D::ClinicalMessage],
        Permission::WriteInternalNote => &[D::InternalNote],
        Permission::ViewDemographics | Permission::SearchPatients => &[D::Demographics],
        Permission::ViewContactData | Permission::EditContactData => &[D::Contact],
        Permission::ViewIdentifiers => &[D::Identifiers],
        Permission::ViewAppointments | Permission::ManageAppointments => &[D::Appointment],
        Permission::ViewInsurance | Permission::ManageInsurance => &[D::Insurance],
        Permission::ViewBilling | Permission::ManageBilling => &[D::Billing],
        _ => &[],
    }
}

/// The purpose of use recorded for routine access by `roles` (treatment for clinical staff,
/// payment for billing, operations otherwise).
pub fn routine_purpose(roles: &[Role]) -> PurposeOfUse {
    if roles
        .iter()
        .any(|r| matches!(r, Role::Clinician | Role::Nurse))
    {
        PurposeOfUse::Treatment
    } else if roles.contains(&Role::Billing) {
        PurposeOfUse::Payment
    } else {
        PurposeOfUse::Operations
    }
}

/// Whether the user has a care relationship with the patient (assigned clinician or nurse, care
/// team member, or handling the patient's open conversation), as the store records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CareRelation {
    /// The patient is in the user's care.
    InCare,
    /// No care relationship.
    NotInCare,
}

/// What a user may see of one patient's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientAccess {
    /// The categories visible (empty: nothing).
    pub categories: BTreeSet<DataCategory>,
    /// The purpose to record in the audit trail.
    pub purpose: PurposeOfUse,
    /// Access rests on an emergency grant: audit with detail `"break_glass"`.
    pub emergency: bool,
    /// Clinical categories are hidden for lack of a care relationship, and the user could open
    /// them with emergency access.
    pub break_glass_available: bool,
}

/// Minimum necessary for one patient: the user's role categories, less the care-restricted
/// categories when a clinician or nurse has no care relationship with the patient, unless an
/// active emergency grant covers this patient (see [`crate::BreakGlassGrant::is_active_for`]).
pub fn patient_access(roles: &[Role], relation: CareRelation, active_grant: bool) -> PatientAccess {
    let mut categories = visible_categories(roles);
    let clinical = roles
        .iter()
        .any(|r| matches!(r, Role::Clinician | Role::Nurse));
    if !clinical {
        // Non-clinical roles never see clinical content (their categories lack it anyway).
        for c in CARE_RESTRICTED {
            categories.remove(c);
        }
        return PatientAccess {
            categories,
            purpose: routine_purpose(roles),
            emergency: false,
            break_glass_available: false,
        };
    }
    match (relation, active_grant) {
        (CareRelation::InCare, _) => PatientAccess {
            categories,
            purpose: PurposeOfUse::Treatment,
            emergency: false,
            break_glass_available: false,
        },
        (CareRelation::NotInCare, true) => PatientAccess {
            categories,
            purpose: PurposeOfUse::Emergency,
            emergency: true,
            break_glass_available: false,
        },
        (CareRelation::NotInCare, false) => {
            for c in CARE_RESTRICTED {
                categories.remove(c);
            }
            PatientAccess {
                categories,
                purpose: PurposeOfUse::Treatment,
                emergency: false,
                break_glass_available: allowed(roles, Permission::BreakGlass),
            }
        }
    }
}

/// Renders [`MATRIX`] and the role categories as the Markdown of `docs/permissions.md`.
pub fn render_permissions_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Permissions\n\n");
    out.push_str(
        "Generated from `crates/perimeter-auth/src/authz.rs` (`MATRIX`, `role_categories`) by \
         `render_permissions_markdown`; a test fails when this file is out of step. To update: \
         `PERIMETER_BLESS=1 cargo test -p perimeter-auth permissions_doc`.\n\n",
    );
    out.push_str(
        "Deny by default: a permission not marked for any of a user's roles is refused.\n\n",
    );
    out.push_str("## Permission matrix\n\n| Permission | What it allows |");
    for role in Role::ALL {
        out.push_str(&format!(" {} |", role.as_str()));
    }
    out.push_str("\n|---|---|");
    for _ in Role::ALL {
        out.push_str(":-:|");
    }
    out.push('\n');
    for perm in Permission::ALL {
        out.push_str(&format!("| `{}` | {} |", perm.as_str(), perm.summary()));
        for role in Role::ALL {
            out.push_str(if allowed(&[*role], *perm) {
                " ✔ |"
            } else {
                " |"
            });
        }
        out.push('\n');
    }
    out.push_str(
        "\nThe data layer (`perimeter-store`) checks the permission again in the transaction of \
         each access, from the database's own record: an active account whose stored roles hold \
         it, acting in its own practice (another practice and its records are not found); the \
         roles a caller claims are ignored, and a refusal changes nothing. A service client \
         holds what an unrevoked, unexpired API token of its names: the store checks \
         `ingest_channel` (the voicemail intake and the intake's own steps on the conversation) \
         against the client's account and such a token. Perimeter's own work (the SMS webhooks, \
         the web chat, the outbound sender, the escalation sweep, reminders) acts as Perimeter \
         and refuses every staff-facing caller; a text sent for a member of staff records them \
         as its approver, and the approver must hold `reply_to_patient` in the practice.\n",
    );
    out.push_str("\n## Minimum necessary: data categories per role\n\n| Category |");
    for role in Role::ALL {
        out.push_str(&format!(" {} |", role.as_str()));
    }
    out.push_str("\n|---|");
    for _ in Role::ALL {
        out.push_str(":-:|");
    }
    out.push('\n');
    for cat in DataCategory::ALL {
        out.push_str(&format!("| `{}` |", cat.as_str()));
        for role in Role::ALL {
            let mark = if role_categories(*role).contains(cat) {
                if CARE_RESTRICTED.contains(cat) && matches!(role, Role::Clinician | Role::Nurse) {
                    " ✔ᶜ |"
                } else {
                    " ✔ |"
                }
            } else {
                " |"
            };
            out.push_str(mark);
        }
        out.push('\n');
    }
    out.push_str(
        "\nᶜ only for patients in the user's care (the user is on the patient's care team); \
         otherwise through emergency access (`break_glass`: stated reason code and text, 60 \
         minutes, the patient in the user's practice, audited with purpose `emergency` and \
         detail `break_glass`, the privacy officer notified in the console).\n",
    );
    out.push_str(
        "\n## What each category holds\n\n\
         The data layer (`perimeter-store`, the `view_*` and `search_patients` functions) returns \
         only the fields of the categories a reader may see; the other fields are absent, and \
         the audit record of the read lists exactly the categories disclosed.\n\n\
         | Category | Fields |\n|---|---|\n\
         | `demographics` | patient name, birth date |\n\
         | `contact` | phone, e-mail, postal address |\n\
         | `identifiers` | medical record number |\n\
         | `appointment` | appointment reminders' appointment times |\n\
         | `insurance` | insurance coverages: payer, plan, member id, group number, subscriber relationship, effective dates, which is primary |\n\
         | `billing` | the billing account: account number, balance, last statement date |\n\
         | `internal_note` | the patient record's staff notes; staff notes on a conversation about administrative matters |\n\
         | `administrative_message` | conversation subjects; message bodies about administrative matters |\n\
         | `clinical_message` | message bodies (and staff notes) about symptoms, results, medications |\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_permission_is_in_the_matrix_exactly_once() {
        for perm in Permission::ALL {
            let rows = MATRIX.iter().filter(|(p, _)| p == perm).count();
            assert_eq!(rows, 1, "{perm} must have exactly one row");
        }
        assert_eq!(MATRIX.len(), Permission::ALL.len());
    }

    #[test]
    fn deny_by_default() {
        for perm in Permission::ALL {
            assert!(!allowed(&[], *perm));
        }
    }

    #[test]
    fn allowed_is_the_union_over_roles() {
        for perm in Permission::ALL {
            for a in Role::ALL {
                for b in Role::ALL {
                    assert_eq!(
                        allowed(&[*a, *b], *perm),
                        allowed(&[*a], *perm) || allowed(&[*b], *perm)
                    );
                }
            }
        }
    }

    #[test]
    fn key_separations_of_duty_hold() {
        // Admins configure but read no patient data.
        assert!(allowed(&[Role::Admin], Permission::ManageUsers));
        assert!(!allowed(&[Role::Admin], Permission::ReadConversation));
        assert!(visible_categories(&[Role::Admin]).is_empty());
        // Auditors read the trail and nothing else.
        let auditor = permissions_of(&[Role::Auditor]);
        let expected: BTreeSet<Permission> = [
            Permission::OwnAccount,
            Permission::ReadAudit,
            Permission::ExportAudit,
            Permission::VerifyAudit,
        ]
        .into_iter()
        .collect();
        assert_eq!(auditor, expected);
        assert!(visible_categories(&[Role::Auditor]).is_empty());
        // Schedulers see contact and appointments but not clinical bodies.
        let sched = visible_categories(&[Role::Scheduler]);
        assert!(sched.contains(&DataCategory::Contact));
        assert!(sched.contains(&DataCategory::Appointment));
        assert!(!sched.contains(&DataCategory::ClinicalMessage));
        assert!(!allowed(
            &[Role::Scheduler],
            Permission::ReadClinicalMessage
        ));
        // Billing: insurance, billing and contact.
        let billing = visible_categories(&[Role::Billing]);
        for c in [
            DataCategory::Insurance,
            DataCategory::Billing,
            DataCategory::Contact,
        ] {
            assert!(billing.contains(&c));
        }
        assert!(!billing.contains(&DataCategory::ClinicalMessage));
        // Coverages: billing and front desk record them; the account is billing's alone.
        assert_eq!(
            roles_with(Permission::ManageInsurance),
            &[Role::Billing, Role::FrontDesk]
        );
        assert_eq!(roles_with(Permission::ManageBilling), &[Role::Billing]);
        assert!(!visible_categories(&[Role::FrontDesk]).contains(&DataCategory::Billing));
        for role in [Role::Scheduler, Role::Nurse, Role::Clinician] {
            let cats = visible_categories(&[role]);
            assert!(!cats.contains(&DataCategory::Insurance), "{role}");
            assert!(!cats.contains(&DataCategory::Billing), "{role}");
            for perm in [
                Permission::ViewInsurance,
                Permission::ManageInsurance,
                Permission::ViewBilling,
                Permission::ManageBilling,
            ] {
                assert!(!allowed(&[role], perm), "{role} {perm}");
            }
        }
        // Only clinicians and nurses may break the glass.
        assert_eq!(
            roles_with(Permission::BreakGlass),
            &[Role::Clinician, Role::Nurse]
        );
        // Service clients: machine endpoints only, never the console.
        let service = permissions_of(&[Role::Service]);
        assert_eq!(
            service,
            [
                Permission::UseGateway,
                Permission::DeidentifyText,
                Permission::IngestChannel,
            ]
            .into_iter()
            .collect()
        );
    }

    #[test]
    fn permissions_never_expose_categories_the_role_may_not_see() {
        for role in Role::ALL {
            let visible = visible_categories(&[*role]);
            for perm in permissions_of(&[*role]) {
                for cat in permission_categories(perm) {
                    assert!(
                        visible.contains(cat),
                        "{role} holds {perm} which exposes {cat}, not in its categories"
                    );
                }
            }
        }
    }

    #[test]
    fn clinical_content_needs_care_or_a_grant() {
        let nurse = [Role::Nurse];
        let in_care = patient_access(&nurse, CareRelation::InCare, false);
        assert!(in_care.categories.contains(&DataCategory::ClinicalMessage));
        assert_eq!(in_care.purpose, PurposeOfUse::Treatment);
        let outside = patient_access(&nurse, CareRelation::NotInCare, false);
        assert!(!outside.categories.contains(&DataCategory::ClinicalMessage));
        assert!(outside.categories.contains(&DataCategory::InternalNote));
        assert!(outside.categories.contains(&DataCategory::Contact));
        assert!(outside.break_glass_available);
        let glass = patient_access(&nurse, CareRelation::NotInCare, true);
        assert!(glass.categories.contains(&DataCategory::ClinicalMessage));
        assert!(glass.emergency);
        assert_eq!(glass.purpose, PurposeOfUse::Emergency);
        // A scheduler never sees clinical bodies, grant or not, and cannot break the glass.
        let sched = patient_access(&[Role::Scheduler], CareRelation::NotInCare, true);
        assert!(!sched.categories.contains(&DataCategory::ClinicalMessage));
        assert!(!sched.emergency);
        assert!(!sched.break_glass_available);
        assert_eq!(
            patient_access(&[Role::Billing], CareRelation::InCare, false).purpose,
            PurposeOfUse::Payment
        );
        // A nurse who is also front desk still needs care or a grant for clinical bodies.
        let both = patient_access(
            &[Role::Nurse, Role::FrontDesk],
            CareRelation::NotInCare,
            false,
        );
        assert!(both.categories.contains(&DataCategory::Insurance));
        assert!(!both.categories.contains(&DataCategory::ClinicalMessage));
    }

    #[test]
    fn permission_names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), *p);
            assert_eq!(
                serde_json::to_string(p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        assert!("root".parse::<Permission>().is_err());
    }

    #[test]
    fn permissions_doc_is_in_step() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/permissions.md");
        let rendered = render_permissions_markdown();
        if std::env::var_os("PERIMETER_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &rendered).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "docs/permissions.md is out of step with the matrix; run \
             PERIMETER_BLESS=1 cargo test -p perimeter-auth permissions_doc"
        );
    }
}

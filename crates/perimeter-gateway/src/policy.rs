//! The policy decision: the one place that permits text to leave the process.

use perimeter_domain::Role;
use serde::Serialize;
use time::Date;

use crate::purpose::AiPurpose;
use crate::vendor::{DataClass, VendorTerms};

/// Who is asking for the AI call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A signed-in staff user with these roles.
    Staff {
        /// The user's roles.
        roles: Vec<Role>,
    },
    /// A service client whose API token is scoped to these purposes.
    Service {
        /// The token's purpose scopes.
        purposes: Vec<AiPurpose>,
    },
    /// Perimeter's own workflows.
    System,
}

/// The form in which content may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SendForm {
    /// As written: PHI under a valid BAA, to a model inside the perimeter, or content with no PHI.
    AsIs,
    /// Only after the PHI engine has replaced every identifier with a placeholder.
    Pseudonymised,
}

/// Permission to send one call's content to one vendor. Only [`decide`] creates one: the fields
/// are private and there is no other constructor, so the code path that opens a connection to a
/// vendor, which requires a `Permit`, cannot be reached without the policy check. It is not
/// `Clone`: preparing a request consumes it ([`crate::Permit::into_form`]), so one decision
/// covers one call.
#[derive(Debug, PartialEq, Eq)]
pub struct Permit {
    vendor: String,
    purpose: AiPurpose,
    form: SendForm,
    class_sent: DataClass,
    decided_on: Date,
}

impl Permit {
    /// The vendor the permit is for.
    pub fn vendor(&self) -> &str {
        &self.vendor
    }
    /// The purpose it was granted for.
    pub fn purpose(&self) -> AiPurpose {
        self.purpose
    }
    /// How the content must be sent.
    pub fn form(&self) -> SendForm {
        self.form
    }
    /// The data class that will actually reach the vendor (for the audit record).
    pub fn class_sent(&self) -> DataClass {
        self.class_sent
    }
    /// The day the decision was made (a permit is not carried over to another day).
    pub fn decided_on(&self) -> Date {
        self.decided_on
    }
}

/// Why a call was refused. Carries no content, only the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The caller may not initiate this purpose.
    #[error("the caller is not allowed to use AI for this purpose")]
    CallerNotAllowed,
    /// The vendor may receive nothing derived from patient communication.
    #[error("this vendor may not receive patient data in any form")]
    VendorReceivesNothing,
    /// The content is more sensitive than the purpose or vendor allows, and cannot be
    /// pseudonymised into an allowed class.
    #[error("the content is more sensitive than this purpose and vendor allow")]
    ClassNotAllowed,
}

/// The outcome of the policy check.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send, in the form the permit says.
    Send(Permit),
    /// Do not send; route the work to a person.
    Refuse(Refusal),
}

/// Decides one AI call.
///
/// `content_class` is what the content would be if sent as is: [`DataClass::Phi`] for anything
/// derived from patient communication, [`DataClass::None`] for content with no patient data at
/// all (a reminder's tier token). `day` comes from the injected clock.
pub fn decide(
    purpose: AiPurpose,
    vendor: &VendorTerms,
    content_class: DataClass,
    caller: &Caller,
    day: Date,
) -> Decision {
    let rule = purpose.rule();
    let caller_ok = match caller {
        Caller::Staff { roles } => roles.iter().any(|r| rule.staff_roles.contains(r)),
        Caller::Service { purposes } => purposes.contains(&purpose),
        Caller::System => rule.system_may_call,
    };
    if !caller_ok {
        return Decision::Refuse(Refusal::CallerNotAllowed);
    }
    if content_class > rule.max_class {
        return Decision::Refuse(Refusal::ClassNotAllowed);
    }
    let vendor_class = vendor.effective_class(day);
    if vendor_class == DataClass::None && content_class > DataClass::None {
        return Decision::Refuse(Refusal::VendorReceivesNothing);
    }
    let (form, class_sent) = if content_class <= vendor_class {
        (SendForm::AsIs, content_class)
    } else if content_class == DataClass::Phi && vendor_class == DataClass::Deidentified {
        (SendForm::Pseudonymised, DataClass::Deidentified)
    } else {
        return Decision::Refuse(Refusal::ClassNotAllowed);
    };
    Decision::Send(Permit {
        vendor: vendor.name.clone(),
        purpose,
        form,
        class_sent,
        decided_on: day,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::Baa;
    use proptest::prelude::*;
    use time::macros::date;

    const DAY: Date = date!(2026 - 03 - 01);

    fn vendor(class: DataClass, baa_valid: bool, inside: bool) -> VendorTerms {
        VendorTerms {
            name: "v".into(),
            configured_class: class,
            baa: baa_valid.then_some(Baa {
                signed: date!(2025 - 01 - 01),
                expires: date!(2027 - 01 - 01),
                document_ref: None,
            }),
            inside_perimeter: inside,
        }
    }

    fn nurse() -> Caller {
        Caller::Staff {
            roles: vec![Role::Nurse],
        }
    }

    #[test]
    fn phi_goes_as_is_only_under_a_valid_baa_or_inside_the_perimeter() {
        let d = decide(
            AiPurpose::SummarizeForCoordinator,
            &vendor(DataClass::Phi, true, false),
            DataClass::Phi,
            &nurse(),
            DAY,
        );
        let Decision::Send(p) = d else {
            panic!("expected a permit")
        };
        assert_eq!(p.form(), SendForm::AsIs);
        assert_eq!(p.class_sent(), DataClass::Phi);

        let d = decide(
            AiPurpose::SummarizeForCoordinator,
            &vendor(DataClass::Phi, false, false),
            DataClass::Phi,
            &nurse(),
            DAY,
        );
        let Decision::Send(p) = d else {
            panic!("expected a permit")
        };
        assert_eq!(p.form(), SendForm::Pseudonymised);

        let d = decide(
            AiPurpose::SummarizeForCoordinator,
            &vendor(DataClass::Phi, false, true),
            DataClass::Phi,
            &Caller::System,
            DAY,
        );
        assert!(matches!(d, Decision::Send(p) if p.form() == SendForm::AsIs));
    }

    #[test]
    fn refusals() {
        // A billing clerk may not ask for a clinical summary.
        let billing = Caller::Staff {
            roles: vec![Role::Billing],
        };
        assert_eq!(
            decide(
                AiPurpose::SummarizeForCoordinator,
                &vendor(DataClass::Phi, true, false),
                DataClass::Phi,
                &billing,
                DAY
            ),
            Decision::Refuse(Refusal::CallerNotAllowed)
        );
        // A vendor with class `none` gets nothing.
        assert_eq!(
            decide(
                AiPurpose::ClassifyIntent,
                &vendor(DataClass::None, true, false),
                DataClass::Phi,
                &Caller::System,
                DAY
            ),
            Decision::Refuse(Refusal::VendorReceivesNothing)
        );
        // Reminders never carry patient data, whatever the vendor.
        assert_eq!(
            decide(
                AiPurpose::PersonaliseReminder,
                &vendor(DataClass::Phi, true, false),
                DataClass::Phi,
                &Caller::System,
                DAY
            ),
            Decision::Refuse(Refusal::ClassNotAllowed)
        );
        // A service token only works for its scoped purposes.
        let svc = Caller::Service {
            purposes: vec![AiPurpose::DeveloperGateway],
        };
        assert!(matches!(
            decide(
                AiPurpose::DeveloperGateway,
                &vendor(DataClass::Deidentified, false, false),
                DataClass::Phi,
                &svc,
                DAY
            ),
            Decision::Send(p) if p.form() == SendForm::Pseudonymised
        ));
        assert_eq!(
            decide(
                AiPurpose::ClassifyIntent,
                &vendor(DataClass::Phi, true, false),
                DataClass::Phi,
                &svc,
                DAY
            ),
            Decision::Refuse(Refusal::CallerNotAllowed)
        );
    }

    fn any_class() -> impl Strategy<Value = DataClass> {
        prop_oneof![
            Just(DataClass::None),
            Just(DataClass::Deidentified),
            Just(DataClass::Phi)
        ]
    }

    proptest! {
        /// Whatever the inputs, PHI never goes as is to a vendor outside the perimeter without a
        /// BAA in force on the day, and nothing goes to a `none` vendor.
        #[test]
        fn phi_never_reaches_a_vendor_without_a_baa(
            class in any_class(),
            content in any_class(),
            baa in any::<bool>(),
            inside in any::<bool>(),
            purpose in 0usize..5,
            days in 0i64..1000,
        ) {
            let day = date!(2024 - 06 - 01) + time::Duration::days(days);
            let v = vendor(class, baa, inside);
            let purpose = AiPurpose::ALL[purpose];
            if let Decision::Send(p) = decide(purpose, &v, content, &Caller::System, day) {
                prop_assert!(p.class_sent() <= v.effective_class(day));
                prop_assert!(p.class_sent() <= purpose.rule().max_class);
                if p.class_sent() == DataClass::Phi {
                    prop_assert!(inside || v.baa.as_ref().is_some_and(|b| b.in_force_on(day)));
                }
                prop_assert!(v.configured_class != DataClass::None || content == DataClass::None);
            }
        }
    }
}

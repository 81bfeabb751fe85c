//! What the policy needs to know about an AI vendor: the terms it has signed.

use serde::{Deserialize, Serialize};
use time::Date;

/// The most sensitive class of data a vendor may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataClass {
    /// Nothing derived from patient communication.
    None,
    /// De-identified text only (placeholders from the PHI engine).
    Deidentified,
    /// Protected health information, under a valid BAA.
    Phi,
}

impl DataClass {
    /// The stable name used in configuration and the CLI.
    pub const fn as_str(self) -> &'static str {
        match self {
            DataClass::None => "none",
            DataClass::Deidentified => "deidentified",
            DataClass::Phi => "phi",
        }
    }
}

/// A Business Associate Agreement on file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Baa {
    /// The day it was signed.
    pub signed: Date,
    /// The last day it is in force.
    pub expires: Date,
    /// Where the signed document is kept (a reference, not the document).
    pub document_ref: Option<String>,
}

impl Baa {
    /// Whether the agreement is in force on `day`.
    pub fn in_force_on(&self, day: Date) -> bool {
        self.signed <= day && day <= self.expires
    }
}

/// The policy-relevant terms of one vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorTerms {
    /// The registry name.
    pub name: String,
    /// The class the administrator configured.
    pub configured_class: DataClass,
    /// The BAA, if one is on file.
    pub baa: Option<Baa>,
    /// Runs inside the practice's perimeter (the built-in local model, or a server the practice
    /// runs on its own hardware): PHI may go to it without a BAA.
    pub inside_perimeter: bool,
}

impl VendorTerms {
    /// The class the vendor may actually receive on `day`: a `phi` vendor whose BAA is missing,
    /// not yet signed or expired is downgraded to `deidentified`.
    pub fn effective_class(&self, day: Date) -> DataClass {
        match self.configured_class {
            DataClass::Phi if self.inside_perimeter => DataClass::Phi,
            DataClass::Phi => match &self.baa {
                Some(baa) if baa.in_force_on(day) => DataClass::Phi,
                _ => DataClass::Deidentified,
            },
            other => other,
        }
    }

    /// Whether the configured class was downgraded on `day` (an alert condition).
    pub fn is_downgraded_on(&self, day: Date) -> bool {
        self.effective_class(day) < self.configured_class
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn phi_vendor(baa: Option<Baa>) -> VendorTerms {
        VendorTerms {
            name: "acme".into(),
            configured_class: DataClass::Phi,
            baa,
            inside_perimeter: false,
        }
    }

    #[test]
    fn expired_or_missing_baa_downgrades_on_the_day() {
        let baa = Baa {
            signed: date!(2025 - 01 - 01),
            expires: date!(2026 - 06 - 30),
            document_ref: None,
        };
        let v = phi_vendor(Some(baa));
        assert_eq!(v.effective_class(date!(2026 - 06 - 30)), DataClass::Phi);
        assert_eq!(
            v.effective_class(date!(2026 - 07 - 01)),
            DataClass::Deidentified
        );
        assert!(v.is_downgraded_on(date!(2026 - 07 - 01)));
        assert_eq!(
            v.effective_class(date!(2024 - 12 - 31)),
            DataClass::Deidentified
        );
        assert_eq!(
            phi_vendor(None).effective_class(date!(2026 - 01 - 01)),
            DataClass::Deidentified
        );
    }

    #[test]
    fn inside_the_perimeter_needs_no_baa_and_lower_classes_stay() {
        let mut v = phi_vendor(None);
        v.inside_perimeter = true;
        assert_eq!(v.effective_class(date!(2026 - 01 - 01)), DataClass::Phi);
        v.configured_class = DataClass::None;
        assert_eq!(v.effective_class(date!(2026 - 01 - 01)), DataClass::None);
    }
}

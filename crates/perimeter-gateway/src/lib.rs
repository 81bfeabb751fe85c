//! The AI gateway.
//!
//! Only this crate sends text out of the process (invariant 1), and only with a [`Permit`]: a
//! value that nothing but [`policy::decide`] can create. The decision weighs the vendor's terms
//! (BAA validity on the day, the data class it may receive), the purpose of the call and who
//! is calling, and says whether text goes as is, goes pseudonymised, or does not go at all.

pub mod policy;
pub mod purpose;
pub mod vendor;

pub use policy::{Caller, Decision, Permit, Refusal, SendForm, decide};
pub use purpose::{AiPurpose, PurposeRule};
pub use vendor::{Baa, DataClass, VendorTerms};

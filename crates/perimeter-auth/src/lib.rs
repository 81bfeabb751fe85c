//! Staff authentication and authorization rules for Perimeter: pure logic, no SQL, no HTTP.
//!
//! - [`password`]: the password policy (12–128 characters after NFC, a shipped list of common
//!   passwords, no composition rules, no forced rotation) and argon2id hashing (OWASP
//!   parameters, PHC strings, a dummy hash so unknown users take the same time). Hashing is
//!   slow on purpose: **async callers run it on `spawn_blocking`**.
//! - [`username`]: NFKC-normalised ASCII usernames; confusables are refused.
//! - [`totp`] and [`recovery`]: mandatory MFA with RFC 6238 codes (replays refused through the
//!   last accepted step the caller stores) and ten single-use recovery codes.
//! - [`throttle`]: failures per account (by login name, known or not) and per client address →
//!   delays, then lockouts; one attempt at a time per account.
//! - [`session`]: random session tokens stored as hashes, idle and absolute timeouts, rotation,
//!   CSRF synchronizer tokens. [`api_token`]: scoped, expiring, revocable machine tokens.
//! - [`authz`]: THE permission matrix (deny by default) and minimum-necessary data categories;
//!   [`break_glass`]: emergency access; [`events`]: all of it as audit events.
//!
//! Time always comes in as a value read from the injected [`perimeter_domain::Clock`].

pub mod api_token;
pub mod authz;
pub mod break_glass;
mod common;
mod error;
pub mod events;
pub mod password;
pub mod recovery;
pub mod session;
pub mod throttle;
pub mod totp;
pub mod username;

pub use api_token::{
    API_TOKEN_PREFIX, ApiToken, ApiTokenCreateError, ApiTokenRecord, ApiTokenRejection,
    ApiTokenScope, ApiTokenScopeError, MalformedApiToken, NewApiToken, create_api_token,
};
pub use authz::{
    CareRelation, MATRIX, PatientAccess, Permission, allowed, patient_access, permissions_of,
    render_permissions_markdown, roles_with, routine_purpose, visible_categories,
};
pub use break_glass::{
    BreakGlassError, BreakGlassGrant, BreakGlassPolicy, BreakGlassReason, Justification,
    PrivacyNotification,
};
pub use common::common_password_count;
pub use error::AuthError;
pub use events::{RequestMeta, SecurityEvent, user_actor};
pub use password::{
    PasswordPolicyError, check_password_policy, hash_password, needs_rehash, verify_password,
};
pub use recovery::{
    MalformedRecoveryCode, RECOVERY_CODE_COUNT, RecoveryCode, RecoveryCodeHash,
    generate_recovery_codes, hash_recovery_code,
};
pub use session::{
    CsrfToken, MalformedToken, NewSession, SessionExpiry, SessionPolicy, SessionRecord,
    SessionStage, SessionToken, TokenHash,
};
pub use throttle::{
    ATTEMPT_LEASE, FailureOutcome, LEASE_RETRY, THROTTLED_AUDIT_INTERVAL, ThrottleDecision,
    ThrottlePolicy, ThrottleState, throttled_audit_due,
};
pub use totp::{
    TotpEnrolment, TotpRejection, TotpSecret, totp_code_at, totp_enrolment, totp_step, verify_totp,
};
pub use username::{Username, UsernameError};

//! Security events as audit records. Every log-in, failure, lockout, MFA change, session end,
//! permission denial, role change, token change and emergency access becomes a
//! [`perimeter_audit::AuditEvent`] through [`SecurityEvent::to_audit`], with a stable `detail`
//! code and no free text (usernames that match no account are never recorded).

use perimeter_audit::{Action, Actor, AuditEvent, ObjectRef, Outcome};
use perimeter_domain::{DataCategory, PatientId, PurposeOfUse, RequestId, Role, StaffId};
use uuid::Uuid;

use crate::authz::Permission;
use crate::break_glass::BreakGlassGrant;

/// Where a request came from (for the audit record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// The client's address (staff and service clients only).
    pub client_addr: Option<String>,
    /// The client's user agent, truncated.
    pub user_agent: Option<String>,
    /// The request id.
    pub request_id: Option<RequestId>,
}

/// A security event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityEvent {
    /// Password and second factor accepted; an authenticated session began.
    LoginSucceeded { user: StaffId },
    /// A wrong password, or a username with no account (then `user` is `None`).
    LoginFailed { user: Option<StaffId> },
    /// An attempt refused because of a delay or lockout in force.
    LoginThrottled { user: Option<StaffId> },
    /// This failure locked the account named in the log-in (`None`: a username with no
    /// account, throttled exactly like a real one so that lockouts reveal nothing).
    AccountLocked { user: Option<StaffId> },
    /// This failure locked the client address.
    AddressLocked,
    /// An administrator lifted a lockout.
    AccountUnlocked { user: StaffId },
    /// An administrator lifted a client address's lockout.
    AddressUnlocked,
    /// A wrong TOTP code.
    MfaFailed { user: StaffId },
    /// A correct TOTP code for an already-used step.
    MfaReplay { user: StaffId },
    /// The user enrolled an authenticator.
    MfaEnrolled { user: StaffId },
    /// An administrator reset the user's MFA.
    MfaReset { user: StaffId },
    /// A recovery code was used (and consumed).
    RecoveryCodeUsed { user: StaffId },
    /// A wrong recovery code.
    RecoveryCodeFailed { user: StaffId },
    /// The user logged out.
    Logout { user: StaffId },
    /// The user ended all their sessions.
    LogoutEverywhere { user: StaffId },
    /// An administrator ended the user's sessions.
    SessionsEndedByAdmin { user: StaffId },
    /// A session ended for inactivity.
    SessionIdleTimeout { user: StaffId },
    /// A session reached its maximum length.
    SessionAbsoluteTimeout { user: StaffId },
    /// A request was refused for lack of a permission.
    PermissionDenied { permission: Permission },
    /// A request with a missing or wrong CSRF token.
    CsrfRejected,
    /// A staff account was created.
    UserCreated { user: StaffId },
    /// A staff account's roles changed.
    RoleChanged { user: StaffId },
    /// A user's password was set or changed.
    PasswordChanged { user: StaffId },
    /// A stored password hash was replaced by one with the current parameters (same password).
    PasswordRehashed { user: StaffId },
    /// An administrator disabled a staff account (its sessions end, its tokens stop working).
    UserDisabled { user: StaffId },
    /// An administrator enabled a disabled staff account again.
    UserEnabled { user: StaffId },
    /// An API token was created.
    ApiTokenCreated { token: Uuid },
    /// An API token was revoked.
    ApiTokenRevoked { token: Uuid },
    /// A presented API token was refused.
    ApiTokenRejected,
    /// Emergency access was granted.
    BreakGlass { grant: BreakGlassGrant },
    /// A privacy officer reviewed an emergency access (`outcome` is a code such as
    /// `appropriate` or `inappropriate`).
    BreakGlassReviewed {
        /// The grant reviewed.
        grant: Uuid,
        /// Whose record it opened.
        patient: PatientId,
        /// The review's outcome code.
        outcome: &'static str,
    },
}

fn staff(user: StaffId) -> ObjectRef {
    ObjectRef {
        kind: "staff_user".to_owned(),
        id: Some(user.to_string()),
    }
}

fn session_object() -> ObjectRef {
    ObjectRef {
        kind: "session".to_owned(),
        id: None,
    }
}

impl SecurityEvent {
    /// The audit `detail` code.
    pub const fn detail(&self) -> &'static str {
        match self {
            SecurityEvent::LoginSucceeded { .. } => "login",
            SecurityEvent::LoginFailed { .. } => "login_failed",
            SecurityEvent::LoginThrottled { .. } => "login_throttled",
            SecurityEvent::AccountLocked { .. } => "locked",
            SecurityEvent::AddressLocked => "address_locked",
            SecurityEvent::AccountUnlocked { .. } => "unlocked",
            SecurityEvent::AddressUnlocked => "address_unlocked",
            SecurityEvent::MfaFailed { .. } => "mfa_failed",
            SecurityEvent::MfaReplay { .. } => "mfa_replay",
            SecurityEvent::MfaEnrolled { .. } => "mfa_enrolled",
            SecurityEvent::MfaReset { .. } => "mfa_reset",
            SecurityEvent::RecoveryCodeUsed { .. } => "recovery_code_used",
            SecurityEvent::RecoveryCodeFailed { .. } => "recovery_code_failed",
            SecurityEvent::Logout { .. } => "logout",
            SecurityEvent::LogoutEverywhere { .. } => "logout_everywhere",
            SecurityEvent::SessionsEndedByAdmin { .. } => "sessions_ended",
            SecurityEvent::SessionIdleTimeout { .. } => "session_idle_timeout",
            SecurityEvent::SessionAbsoluteTimeout { .. } => "session_absolute_timeout",
            SecurityEvent::PermissionDenied { .. } => "permission_denied",
            SecurityEvent::CsrfRejected => "csrf_rejected",
            SecurityEvent::UserCreated { .. } => "user_created",
            SecurityEvent::RoleChanged { .. } => "role_changed",
            SecurityEvent::PasswordChanged { .. } => "password_changed",
            SecurityEvent::PasswordRehashed { .. } => "password_rehashed",
            SecurityEvent::UserDisabled { .. } => "user_disabled",
            SecurityEvent::UserEnabled { .. } => "user_enabled",
            SecurityEvent::ApiTokenCreated { .. } => "api_token_created",
            SecurityEvent::ApiTokenRevoked { .. } => "api_token_revoked",
            SecurityEvent::ApiTokenRejected => "api_token_rejected",
            SecurityEvent::BreakGlass { .. } => "break_glass",
            SecurityEvent::BreakGlassReviewed { .. } => "break_glass_reviewed",
        }
    }

    /// The audit record of this event, done by `actor` at `at_millis` (from the injected clock).
    pub fn to_audit(&self, actor: Actor, at_millis: i64, meta: &RequestMeta) -> AuditEvent {
        use SecurityEvent as E;
        let (action, object, outcome) = match self {
            E::LoginSucceeded { user } => (Action::Login, staff(*user), Outcome::Success),
            E::LoginFailed { user } | E::LoginThrottled { user } => (
                Action::Login,
                user.map_or_else(session_object, staff),
                if matches!(self, E::LoginFailed { .. }) {
                    Outcome::Failure
                } else {
                    Outcome::Denied
                },
            ),
            E::AccountLocked { user } => (
                Action::Login,
                user.map_or_else(session_object, staff),
                Outcome::Denied,
            ),
            E::AddressLocked => (Action::Login, session_object(), Outcome::Denied),
            E::AccountUnlocked { user } => (Action::Update, staff(*user), Outcome::Success),
            E::AddressUnlocked => (
                Action::Update,
                ObjectRef {
                    kind: "client_address".to_owned(),
                    id: None,
                },
                Outcome::Success,
            ),
            E::MfaFailed { user } | E::RecoveryCodeFailed { user } => {
                (Action::Login, staff(*user), Outcome::Failure)
            }
            E::MfaReplay { user } => (Action::Login, staff(*user), Outcome::Denied),
            E::MfaEnrolled { user }
            | E::MfaReset { user }
            | E::RoleChanged { user }
            | E::PasswordChanged { user }
            | E::PasswordRehashed { user }
            | E::UserDisabled { user }
            | E::UserEnabled { user } => (Action::Update, staff(*user), Outcome::Success),
            E::RecoveryCodeUsed { user } => (Action::Login, staff(*user), Outcome::Success),
            E::Logout { user }
            | E::LogoutEverywhere { user }
            | E::SessionsEndedByAdmin { user }
            | E::SessionIdleTimeout { user }
            | E::SessionAbsoluteTimeout { user } => {
                (Action::Logout, staff(*user), Outcome::Success)
            }
            E::PermissionDenied { permission } => (
                Action::Execute,
                ObjectRef {
                    kind: "permission".to_owned(),
                    id: Some(permission.as_str().to_owned()),
                },
                Outcome::Denied,
            ),
            E::CsrfRejected => (Action::Execute, session_object(), Outcome::Denied),
            E::UserCreated { user } => (Action::Create, staff(*user), Outcome::Success),
            E::ApiTokenCreated { token } => (
                Action::Create,
                ObjectRef {
                    kind: "api_token".to_owned(),
                    id: Some(token.to_string()),
                },
                Outcome::Success,
            ),
            E::ApiTokenRevoked { token } => (
                Action::Delete,
                ObjectRef {
                    kind: "api_token".to_owned(),
                    id: Some(token.to_string()),
                },
                Outcome::Success,
            ),
            E::ApiTokenRejected => (
                Action::Login,
                ObjectRef {
                    kind: "api_token".to_owned(),
                    id: None,
                },
                Outcome::Denied,
            ),
            E::BreakGlass { grant } => (
                Action::Execute,
                ObjectRef {
                    kind: format!("break_glass_grant:{}", grant.reason.as_str()),
                    id: Some(grant.id.to_string()),
                },
                Outcome::Success,
            ),
            E::BreakGlassReviewed { grant, outcome, .. } => (
                Action::Update,
                ObjectRef {
                    kind: format!("break_glass_review:{outcome}"),
                    id: Some(grant.to_string()),
                },
                Outcome::Success,
            ),
        };
        let (patient, purpose, categories): (
            Option<PatientId>,
            Option<PurposeOfUse>,
            Vec<DataCategory>,
        ) = match self {
            E::BreakGlass { grant } => (
                Some(grant.patient),
                Some(PurposeOfUse::Emergency),
                crate::authz::CARE_RESTRICTED.to_vec(),
            ),
            E::BreakGlassReviewed { patient, .. } => {
                (Some(*patient), Some(PurposeOfUse::Operations), Vec::new())
            }
            _ => (None, None, Vec::new()),
        };
        AuditEvent {
            at_millis,
            actor,
            action,
            object,
            patient,
            categories,
            purpose,
            outcome,
            detail: Some(self.detail().to_owned()),
            client_addr: meta.client_addr.clone(),
            user_agent: meta.user_agent.clone(),
            request_id: meta.request_id,
        }
    }
}

/// The actor for a signed-in user (`session` is [`crate::TokenHash::audit_ref`], never the
/// token).
pub fn user_actor(user: StaffId, roles: &[Role], session: Option<String>) -> Actor {
    Actor::User {
        user,
        roles: roles.to_vec(),
        session,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::break_glass::{BreakGlassPolicy, BreakGlassReason, Justification};
    use time::macros::datetime;

    #[test]
    fn detail_codes_are_the_documented_ones() {
        let u = StaffId::new();
        let cases = [
            (
                SecurityEvent::LoginFailed { user: None },
                "login_failed",
                Outcome::Failure,
            ),
            (
                SecurityEvent::AccountLocked { user: Some(u) },
                "locked",
                Outcome::Denied,
            ),
            (
                SecurityEvent::AccountLocked { user: None },
                "locked",
                Outcome::Denied,
            ),
            (
                SecurityEvent::AddressUnlocked,
                "address_unlocked",
                Outcome::Success,
            ),
            (
                SecurityEvent::UserDisabled { user: u },
                "user_disabled",
                Outcome::Success,
            ),
            (
                SecurityEvent::PasswordRehashed { user: u },
                "password_rehashed",
                Outcome::Success,
            ),
            (
                SecurityEvent::MfaEnrolled { user: u },
                "mfa_enrolled",
                Outcome::Success,
            ),
            (
                SecurityEvent::MfaReset { user: u },
                "mfa_reset",
                Outcome::Success,
            ),
            (
                SecurityEvent::MfaReplay { user: u },
                "mfa_replay",
                Outcome::Denied,
            ),
            (
                SecurityEvent::SessionIdleTimeout { user: u },
                "session_idle_timeout",
                Outcome::Success,
            ),
            (
                SecurityEvent::PermissionDenied {
                    permission: Permission::ReadAudit,
                },
                "permission_denied",
                Outcome::Denied,
            ),
            (
                SecurityEvent::RoleChanged { user: u },
                "role_changed",
                Outcome::Success,
            ),
        ];
        for (event, detail, outcome) in cases {
            let a = event.to_audit(Actor::Anonymous, 1, &RequestMeta::default());
            assert_eq!(a.detail.as_deref(), Some(detail));
            assert_eq!(a.outcome, outcome);
            assert!(a.patient.is_none());
        }
        let denied = SecurityEvent::PermissionDenied {
            permission: Permission::ReadAudit,
        }
        .to_audit(Actor::Anonymous, 1, &RequestMeta::default());
        assert_eq!(denied.object.id.as_deref(), Some("read_audit"));
    }

    #[test]
    fn break_glass_is_flagged_with_emergency_purpose_and_reason_code_only() {
        let user = StaffId::new();
        let patient = PatientId::new();
        let why = Justification::new("Unconscious patient brought in by family").unwrap();
        let now = datetime!(2026-01-01 03:00:00 UTC);
        let (grant, _) = BreakGlassPolicy::default()
            .grant(
                user,
                &[Role::Clinician],
                patient,
                BreakGlassReason::PatientUnableToConsent,
                &why,
                now,
            )
            .unwrap();
        let meta = RequestMeta {
            client_addr: Some("127.0.0.1".into()),
            user_agent: None,
            request_id: Some(RequestId::new()),
        };
        let a = SecurityEvent::BreakGlass {
            grant: grant.clone(),
        }
        .to_audit(
            user_actor(user, &[Role::Clinician], Some("abcd".into())),
            1_000,
            &meta,
        );
        assert_eq!(a.detail.as_deref(), Some("break_glass"));
        assert_eq!(a.purpose, Some(PurposeOfUse::Emergency));
        assert_eq!(a.patient, Some(patient));
        assert_eq!(a.object.kind, "break_glass_grant:patient_unable_to_consent");
        assert_eq!(a.object.id, Some(grant.id.to_string()));
        let bytes = String::from_utf8(a.canonical_bytes()).unwrap();
        assert!(!bytes.contains("Unconscious"));
        assert_eq!(a.client_addr.as_deref(), Some("127.0.0.1"));
    }
}

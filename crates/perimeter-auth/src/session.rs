//! Console sessions: 128-bit random tokens (base64url in a cookie), stored only as SHA-256
//! hashes, with an idle timeout (15 minutes by default) and an absolute timeout (12 hours),
//! rotated at log-in and at every privilege change, and a synchronizer CSRF token bound to each
//! session.
//!
//! Sessions live in the database, so several server processes share them: this module only
//! decides; the store keeps [`SessionRecord`]s keyed by [`TokenHash`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use perimeter_domain::StaffId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::error::{AuthError, random_bytes};

/// Bytes of randomness in a session token (128 bits).
const SESSION_TOKEN_BYTES: usize = 16;
/// Bytes of randomness in a CSRF token (256 bits).
const CSRF_TOKEN_BYTES: usize = 32;

/// SHA-256 of a secret token: what the database stores and looks up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    fn of(domain: &[u8], secret: &str) -> Self {
        let mut h = Sha256::new();
        h.update(domain);
        h.update(secret.as_bytes());
        Self(h.finalize().into())
    }

    /// A short, non-secret reference for audit records and logs: the first 8 bytes, in hex, of
    /// a hash of this hash (so the reference cannot be used to look the session up).
    pub fn audit_ref(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"perimeter audit ref v1\0");
        h.update(self.0);
        let digest = h.finalize();
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({})", self.audit_ref())
    }
}

/// A malformed session or CSRF token (wrong length or alphabet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session token: expected 22 base64url characters")]
pub struct MalformedToken;

/// A session token in clear: goes into the cookie and nowhere else. Zeroized on drop; `Debug`
/// redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(Zeroizing<String>);

impl SessionToken {
    /// A fresh random token.
    pub fn generate() -> Result<Self, AuthError> {
        let bytes: Zeroizing<[u8; SESSION_TOKEN_BYTES]> = Zeroizing::new(random_bytes()?);
        Ok(Self(Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()))))
    }

    /// Parses a token from a cookie value: exactly 22 base64url characters decoding to 16
    /// bytes. Anything else is refused before any database lookup.
    pub fn parse(text: &str) -> Result<Self, MalformedToken> {
        if text.len() != 22 {
            return Err(MalformedToken);
        }
        let decoded = Zeroizing::new(URL_SAFE_NO_PAD.decode(text).map_err(|_| MalformedToken)?);
        if decoded.len() != SESSION_TOKEN_BYTES {
            return Err(MalformedToken);
        }
        Ok(Self(Zeroizing::new(text.to_owned())))
    }

    /// The token text, for the `Set-Cookie` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hash to store and look up by.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(b"perimeter session v1\0", &self.0)
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// A synchronizer CSRF token bound to one session (stored in the session record, sent to the
/// console in the log-in response, and required in the `x-csrf-token` header of every
/// state-changing request). `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CsrfToken(String);

impl CsrfToken {
    /// A fresh random token (256 bits, base64url).
    pub fn generate() -> Result<Self, AuthError> {
        let bytes: Zeroizing<[u8; CSRF_TOKEN_BYTES]> = Zeroizing::new(random_bytes()?);
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes.as_ref())))
    }

    /// Wraps a stored token.
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with the token a request presented.
    pub fn verify(&self, presented: &str) -> bool {
        if presented.len() != self.0.len() {
            return false;
        }
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfToken(<redacted>)")
    }
}

/// How far a session has got through log-in (its privilege level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStage {
    /// Password accepted; the user has MFA and must present a code. Grants nothing else.
    MfaPending,
    /// Password accepted; the user has no MFA yet and must enrol. Grants nothing else.
    MfaEnrolmentPending,
    /// Password and second factor accepted: the user's roles apply.
    Authenticated,
}

impl SessionStage {
    /// The stable name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            SessionStage::MfaPending => "mfa_pending",
            SessionStage::MfaEnrolmentPending => "mfa_enrolment_pending",
            SessionStage::Authenticated => "authenticated",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "mfa_pending" => Some(SessionStage::MfaPending),
            "mfa_enrolment_pending" => Some(SessionStage::MfaEnrolmentPending),
            "authenticated" => Some(SessionStage::Authenticated),
            _ => None,
        }
    }
}

/// A session as stored (the token itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// SHA-256 of the token: the lookup key.
    pub token_hash: TokenHash,
    /// Whose session.
    pub user: StaffId,
    /// Log-in stage.
    pub stage: SessionStage,
    /// When the session (at this stage) began: the absolute timeout counts from here.
    pub created_at: OffsetDateTime,
    /// The last request: the idle timeout counts from here.
    pub last_seen_at: OffsetDateTime,
    /// The CSRF token bound to this session.
    pub csrf: CsrfToken,
}

/// Why a session is no longer valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionExpiry {
    /// No request for longer than the idle timeout (audit `"session_idle_timeout"`).
    #[error("session ended after inactivity; log in again")]
    Idle,
    /// Older than the absolute timeout (audit `"session_absolute_timeout"`).
    #[error("session reached its maximum length; log in again")]
    Absolute,
}

impl SessionExpiry {
    /// The audit detail code.
    pub const fn detail(self) -> &'static str {
        match self {
            SessionExpiry::Idle => "session_idle_timeout",
            SessionExpiry::Absolute => "session_absolute_timeout",
        }
    }
}

/// Session timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Automatic log-off after this long without a request (HIPAA §164.312(a)(2)(iii)).
    pub idle_timeout: Duration,
    /// Log-off after this long regardless of activity.
    pub absolute_timeout: Duration,
    /// How long a pre-MFA session (password accepted, code not yet) lives, absolutely.
    pub pending_timeout: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::minutes(15),
            absolute_timeout: Duration::hours(12),
            pending_timeout: Duration::minutes(5),
        }
    }
}

/// A new session: the token for the cookie and the record for the store.
#[derive(Debug)]
pub struct NewSession {
    /// Goes into the cookie only.
    pub token: SessionToken,
    /// Goes into the database.
    pub record: SessionRecord,
}

impl SessionPolicy {
    /// The policy from configured minutes and hours.
    pub fn from_config(idle_timeout_minutes: u32, absolute_timeout_hours: u32) -> Self {
        Self {
            idle_timeout: Duration::minutes(i64::from(idle_timeout_minutes)),
            absolute_timeout: Duration::hours(i64::from(absolute_timeout_hours)),
            ..Self::default()
        }
    }

    /// Starts a session for `user` at `stage`.
    pub fn start(
        &self,
        user: StaffId,
        stage: SessionStage,
        now: OffsetDateTime,
    ) -> Result<NewSession, AuthError> {
        let token = SessionToken::generate()?;
        let record = SessionRecord {
            token_hash: token.hash(),
            user,
            stage,
            created_at: now,
            last_seen_at: now,
            csrf: CsrfToken::generate()?,
        };
        Ok(NewSession { token, record })
    }

    /// Checks a stored session at `now`.
    pub fn validate(
        &self,
        record: &SessionRecord,
        now: OffsetDateTime,
    ) -> Result<(), SessionExpiry> {
        let absolute = match record.stage {
            SessionStage::Authenticated => self.absolute_timeout,
            SessionStage::MfaPending | SessionStage::MfaEnrolmentPending => {
                self.pending_timeout.min(self.absolute_timeout)
            }
        };
        if now - record.created_at >= absolute {
            return Err(SessionExpiry::Absolute);
        }
        if now - record.last_seen_at >= self.idle_timeout {
            return Err(SessionExpiry::Idle);
        }
        Ok(())
    }

    /// The instant at which the session will expire if no further request comes.
    pub fn expires_at(&self, record: &SessionRecord) -> OffsetDateTime {
        let absolute = match record.stage {
            SessionStage::Authenticated => self.absolute_timeout,
            _ => self.pending_timeout.min(self.absolute_timeout),
        };
        (record.created_at + absolute).min(record.last_seen_at + self.idle_timeout)
    }

    /// Replaces a session with a new token and CSRF token (delete the old record, insert the
    /// new one, in one transaction). Used at every privilege change: after the second factor
    /// (the authenticated session's absolute timeout starts then) and when the user's roles
    /// change (the absolute timeout keeps counting from the original start).
    pub fn rotate(
        &self,
        old: &SessionRecord,
        stage: SessionStage,
        now: OffsetDateTime,
    ) -> Result<NewSession, AuthError> {
        let mut new = self.start(old.user, stage, now)?;
        if old.stage == SessionStage::Authenticated && stage == SessionStage::Authenticated {
            new.record.created_at = old.created_at;
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 08:00:00 UTC);

    #[test]
    fn tokens_are_128_bit_base64url_and_only_hashes_are_kept() {
        let s = SessionPolicy::default()
            .start(StaffId::new(), SessionStage::Authenticated, T0)
            .unwrap();
        assert_eq!(s.token.as_str().len(), 22);
        assert_eq!(SessionToken::parse(s.token.as_str()).unwrap(), s.token);
        assert_eq!(s.record.token_hash, s.token.hash());
        let debug = format!("{:?}", s);
        assert!(!debug.contains(s.token.as_str()));
        assert!(!debug.contains(s.record.csrf.as_str()));
        let other = SessionToken::generate().unwrap();
        assert_ne!(other, s.token);
    }

    #[test]
    fn malformed_cookies_are_refused_before_lookup() {
        for bad in [
            "",
            "short",
            "!!!!!!!!!!!!!!!!!!!!!!",
            &"a".repeat(23),
            "aaaaaaaaaaaaaaaaaaaaa=",
            "ááááááááááá",
        ] {
            assert_eq!(SessionToken::parse(bad), Err(MalformedToken), "{bad:?}");
        }
    }

    #[test]
    fn idle_timeout_after_fifteen_minutes_without_requests() {
        let p = SessionPolicy::default();
        let s = p
            .start(StaffId::new(), SessionStage::Authenticated, T0)
            .unwrap()
            .record;
        assert_eq!(p.validate(&s, T0 + Duration::minutes(14)), Ok(()));
        assert_eq!(
            p.validate(&s, T0 + Duration::minutes(15)),
            Err(SessionExpiry::Idle)
        );
        let touched = SessionRecord {
            last_seen_at: T0 + Duration::minutes(14),
            ..s.clone()
        };
        assert_eq!(p.validate(&touched, T0 + Duration::minutes(28)), Ok(()));
        assert_eq!(p.expires_at(&touched), T0 + Duration::minutes(29));
    }

    #[test]
    fn absolute_timeout_after_twelve_hours_even_when_active() {
        let p = SessionPolicy::default();
        let s = p
            .start(StaffId::new(), SessionStage::Authenticated, T0)
            .unwrap()
            .record;
        let active = SessionRecord {
            last_seen_at: T0 + Duration::hours(12) - Duration::minutes(1),
            ..s
        };
        assert_eq!(
            p.validate(&active, T0 + Duration::hours(12)),
            Err(SessionExpiry::Absolute)
        );
        assert_eq!(SessionExpiry::Absolute.detail(), "session_absolute_timeout");
    }

    #[test]
    fn pending_mfa_sessions_are_short() {
        let p = SessionPolicy::default();
        let s = p
            .start(StaffId::new(), SessionStage::MfaPending, T0)
            .unwrap()
            .record;
        let active = SessionRecord {
            last_seen_at: T0 + Duration::minutes(4),
            ..s
        };
        assert_eq!(
            p.validate(&active, T0 + Duration::minutes(5)),
            Err(SessionExpiry::Absolute)
        );
    }

    #[test]
    fn rotation_changes_token_and_csrf() {
        let p = SessionPolicy::default();
        let pending = p
            .start(StaffId::new(), SessionStage::MfaPending, T0)
            .unwrap();
        let t1 = T0 + Duration::minutes(1);
        let full = p
            .rotate(&pending.record, SessionStage::Authenticated, t1)
            .unwrap();
        assert_ne!(full.record.token_hash, pending.record.token_hash);
        assert_ne!(full.record.csrf, pending.record.csrf);
        assert_eq!(full.record.created_at, t1);
        assert_eq!(full.record.user, pending.record.user);
        // A role change keeps the absolute deadline.
        let t2 = t1 + Duration::hours(2);
        let again = p
            .rotate(&full.record, SessionStage::Authenticated, t2)
            .unwrap();
        assert_eq!(again.record.created_at, t1);
        assert_eq!(again.record.last_seen_at, t2);
    }

    #[test]
    fn csrf_compares_exactly() {
        let c = CsrfToken::generate().unwrap();
        assert!(c.verify(c.as_str()));
        assert!(!c.verify(""));
        let mut wrong = c.as_str().to_owned();
        wrong.pop();
        wrong.push('!');
        assert!(!c.verify(&wrong));
        assert_eq!(format!("{c:?}"), "CsrfToken(<redacted>)");
    }

    #[test]
    fn stage_names_round_trip() {
        for s in [
            SessionStage::MfaPending,
            SessionStage::MfaEnrolmentPending,
            SessionStage::Authenticated,
        ] {
            assert_eq!(SessionStage::parse(s.as_str()), Some(s));
        }
        assert_eq!(SessionStage::parse("admin"), None);
    }

    proptest::proptest! {
        #[test]
        fn token_parsing_never_panics(s in "\\PC{0,40}") {
            if let Ok(t) = SessionToken::parse(&s) {
                proptest::prop_assert_eq!(t.as_str(), s.as_str());
            }
        }
    }
}

//! API tokens for machine clients (practice tools calling the AI gateway): `pmt_` followed by
//! 32 random bytes in base64url, shown once, stored as SHA-256 hashes, scoped to permissions
//! and purposes of use, always expiring, revocable.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use perimeter_domain::{PurposeOfUse, Role, StaffId};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::authz::{Permission, allowed};
use crate::error::{AuthError, random_bytes};
use crate::session::TokenHash;

/// Every API token starts with this (so secret scanners and people recognise it).
pub const API_TOKEN_PREFIX: &str = "pmt_";
/// Random bytes in a token.
const API_TOKEN_BYTES: usize = 32;
/// Characters after the prefix (32 bytes in unpadded base64url).
const API_TOKEN_BODY_CHARS: usize = 43;
/// The longest lifetime a token may be given.
pub const API_TOKEN_MAX_LIFETIME: Duration = Duration::days(366);

/// An API token in clear: shown once at creation. Zeroized on drop; `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(Zeroizing<String>);

/// A presented bearer token that is not an API token (wrong prefix, length or alphabet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("API token: expected \"pmt_\" followed by 43 base64url characters")]
pub struct MalformedApiToken;

impl ApiToken {
    /// A fresh token.
    pub fn generate() -> Result<Self, AuthError> {
        let bytes: Zeroizing<[u8; API_TOKEN_BYTES]> = Zeroizing::new(random_bytes()?);
        Ok(Self(Zeroizing::new(format!(
            "{API_TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes.as_ref())
        ))))
    }

    /// Parses a presented token (from `Authorization: Bearer ...`).
    pub fn parse(text: &str) -> Result<Self, MalformedApiToken> {
        let body = text
            .strip_prefix(API_TOKEN_PREFIX)
            .ok_or(MalformedApiToken)?;
        if body.len() != API_TOKEN_BODY_CHARS {
            return Err(MalformedApiToken);
        }
        let decoded = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(body)
                .map_err(|_| MalformedApiToken)?,
        );
        if decoded.len() != API_TOKEN_BYTES {
            return Err(MalformedApiToken);
        }
        Ok(Self(Zeroizing::new(text.to_owned())))
    }

    /// The token text, to show once.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hash to store and look up by.
    pub fn hash(&self) -> TokenHash {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"perimeter api token v1\0");
        h.update(self.0.as_bytes());
        TokenHash(h.finalize().into())
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// What a token may be used for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenScope {
    /// The permissions (each must be one the matrix grants to [`Role::Service`]).
    pub permissions: BTreeSet<Permission>,
    /// The purposes of use the client may claim.
    pub purposes: BTreeSet<PurposeOfUse>,
}

/// Why a token could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiTokenScopeError {
    /// A scope must name at least one permission and one purpose.
    #[error("scope: expected at least one permission and one purpose")]
    Empty,
    /// A permission that service clients may not hold.
    #[error("scope: permission {0} cannot be given to an API token")]
    NotGrantable(Permission),
    /// Emergency purpose is for people, through break-the-glass.
    #[error("scope: purpose emergency cannot be given to an API token")]
    EmergencyPurpose,
    /// Expiry in the past or too far ahead.
    #[error("expires_at: expected a time in the future, at most 366 days ahead")]
    Lifetime,
    /// The label must be 1 to 80 printable characters.
    #[error("label: expected 1 to 80 printable characters")]
    Label,
}

/// A token as stored (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiTokenRecord {
    /// The token's id (shown in lists, used to revoke).
    pub id: Uuid,
    /// SHA-256 of the token.
    pub token_hash: TokenHash,
    /// The service client the token authenticates as.
    pub client: StaffId,
    /// What the token is for, as the administrator named it (no PHI).
    pub label: String,
    /// What it may do.
    pub scope: ApiTokenScope,
    /// When created.
    pub created_at: OffsetDateTime,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
    /// When revoked, if revoked.
    pub revoked_at: Option<OffsetDateTime>,
}

/// A new token: the secret to show once and the record to store.
#[derive(Debug)]
pub struct NewApiToken {
    /// Show once; never store.
    pub token: ApiToken,
    /// Store.
    pub record: ApiTokenRecord,
}

/// Creates a token for `client` after checking the scope, label and lifetime.
pub fn create_api_token(
    client: StaffId,
    label: &str,
    scope: ApiTokenScope,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<NewApiToken, ApiTokenCreateError> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > 80 || label.chars().any(char::is_control) {
        return Err(ApiTokenScopeError::Label.into());
    }
    if scope.permissions.is_empty() || scope.purposes.is_empty() {
        return Err(ApiTokenScopeError::Empty.into());
    }
    if let Some(p) = scope
        .permissions
        .iter()
        .find(|p| !allowed(&[Role::Service], **p))
    {
        return Err(ApiTokenScopeError::NotGrantable(*p).into());
    }
    if scope.purposes.contains(&PurposeOfUse::Emergency) {
        return Err(ApiTokenScopeError::EmergencyPurpose.into());
    }
    if expires_at <= now || expires_at - now > API_TOKEN_MAX_LIFETIME {
        return Err(ApiTokenScopeError::Lifetime.into());
    }
    let token = ApiToken::generate()?;
    let record = ApiTokenRecord {
        id: Uuid::now_v7(),
        token_hash: token.hash(),
        client,
        label: label.to_owned(),
        scope,
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    Ok(NewApiToken { token, record })
}

/// Creating a token failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiTokenCreateError {
    /// The request was not acceptable.
    #[error(transparent)]
    Scope(#[from] ApiTokenScopeError),
    /// Randomness failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiTokenRejection {
    /// Past its expiry.
    #[error("API token expired")]
    Expired,
    /// Revoked by an administrator.
    #[error("API token revoked")]
    Revoked,
    /// The permission is not in the token's scope.
    #[error("API token not allowed this operation")]
    PermissionOutOfScope,
    /// The purpose is not in the token's scope.
    #[error("API token not allowed this purpose of use")]
    PurposeOutOfScope,
    /// The token allows several purposes and the request did not say which one it serves.
    #[error("the request must state its purpose of use (the token allows several)")]
    PurposeRequired,
}

impl ApiTokenRecord {
    /// Whether the token may be used at `now` for `perm` with `purpose` (if the request states
    /// one). Checks revocation, expiry, the scope, and the permission matrix for service clients.
    pub fn authorize(
        &self,
        now: OffsetDateTime,
        perm: Permission,
        purpose: Option<PurposeOfUse>,
    ) -> Result<(), ApiTokenRejection> {
        if self.revoked_at.is_some_and(|at| at <= now) {
            return Err(ApiTokenRejection::Revoked);
        }
        if now >= self.expires_at {
            return Err(ApiTokenRejection::Expired);
        }
        if !self.scope.permissions.contains(&perm) || !allowed(&[Role::Service], perm) {
            return Err(ApiTokenRejection::PermissionOutOfScope);
        }
        if let Some(purpose) = purpose
            && !self.scope.purposes.contains(&purpose)
        {
            return Err(ApiTokenRejection::PurposeOutOfScope);
        }
        Ok(())
    }

    /// Checks the token for one request: revocation, expiry, the permission, and the purpose
    /// of use the request states. A request that states no purpose gets the token's only
    /// purpose, or is refused ([`ApiTokenRejection::PurposeRequired`]) when the token allows
    /// several, so every request made with a token carries exactly one purpose, within scope.
    /// Returns the purpose to record and pass on.
    pub fn authorize_request(
        &self,
        now: OffsetDateTime,
        perm: Permission,
        stated: Option<PurposeOfUse>,
    ) -> Result<PurposeOfUse, ApiTokenRejection> {
        self.authorize(now, perm, stated)?;
        match stated {
            Some(p) => Ok(p),
            None => {
                let mut only = self.scope.purposes.iter();
                match (only.next(), only.next()) {
                    (Some(p), None) => Ok(*p),
                    (None, _) => Err(ApiTokenRejection::PurposeOutOfScope),
                    (Some(_), Some(_)) => Err(ApiTokenRejection::PurposeRequired),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

    fn scope() -> ApiTokenScope {
        ApiTokenScope {
            permissions: [Permission::UseGateway].into_iter().collect(),
            purposes: [PurposeOfUse::Operations].into_iter().collect(),
        }
    }

    #[test]
    fn create_parse_hash_round_trip() {
        let new = create_api_token(
            StaffId::new(),
            "scheduling bot",
            scope(),
            T0 + Duration::days(90),
            T0,
        )
        .unwrap();
        let text = new.token.as_str();
        assert!(text.starts_with("pmt_"));
        assert_eq!(text.len(), 4 + 43);
        let parsed = ApiToken::parse(text).unwrap();
        assert_eq!(parsed.hash(), new.record.token_hash);
        assert!(!format!("{new:?}").contains(&text[4..]));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "pmt_",
            "pmx_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "pmt_!aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "Bearer pmt_x",
        ] {
            assert_eq!(ApiToken::parse(bad), Err(MalformedApiToken));
        }
    }

    #[test]
    fn scope_expiry_and_revocation_are_enforced() {
        let mut rec = create_api_token(StaffId::new(), "bot", scope(), T0 + Duration::days(1), T0)
            .unwrap()
            .record;
        assert_eq!(
            rec.authorize(T0, Permission::UseGateway, Some(PurposeOfUse::Operations)),
            Ok(())
        );
        assert_eq!(rec.authorize(T0, Permission::UseGateway, None), Ok(()));
        assert_eq!(
            rec.authorize(T0, Permission::DeidentifyText, None),
            Err(ApiTokenRejection::PermissionOutOfScope)
        );
        assert_eq!(
            rec.authorize(T0, Permission::UseGateway, Some(PurposeOfUse::Treatment)),
            Err(ApiTokenRejection::PurposeOutOfScope)
        );
        assert_eq!(
            rec.authorize(T0 + Duration::days(1), Permission::UseGateway, None),
            Err(ApiTokenRejection::Expired)
        );
        rec.revoked_at = Some(T0 + Duration::hours(1));
        assert_eq!(
            rec.authorize(T0 + Duration::minutes(59), Permission::UseGateway, None),
            Ok(())
        );
        assert_eq!(
            rec.authorize(T0 + Duration::hours(1), Permission::UseGateway, None),
            Err(ApiTokenRejection::Revoked)
        );
    }

    #[test]
    fn each_request_gets_exactly_one_purpose_within_scope() {
        let one = create_api_token(StaffId::new(), "bot", scope(), T0 + Duration::days(1), T0)
            .unwrap()
            .record;
        assert_eq!(
            one.authorize_request(T0, Permission::UseGateway, None),
            Ok(PurposeOfUse::Operations)
        );
        assert_eq!(
            one.authorize_request(T0, Permission::UseGateway, Some(PurposeOfUse::Treatment)),
            Err(ApiTokenRejection::PurposeOutOfScope)
        );
        let mut s = scope();
        s.purposes.insert(PurposeOfUse::Treatment);
        let two = create_api_token(StaffId::new(), "bot", s, T0 + Duration::days(1), T0)
            .unwrap()
            .record;
        assert_eq!(
            two.authorize_request(T0, Permission::UseGateway, None),
            Err(ApiTokenRejection::PurposeRequired)
        );
        assert_eq!(
            two.authorize_request(T0, Permission::UseGateway, Some(PurposeOfUse::Treatment)),
            Ok(PurposeOfUse::Treatment)
        );
        assert_eq!(
            two.authorize_request(
                T0,
                Permission::DeidentifyText,
                Some(PurposeOfUse::Treatment)
            ),
            Err(ApiTokenRejection::PermissionOutOfScope)
        );
    }

    #[test]
    fn tokens_cannot_carry_human_permissions_or_emergency_or_live_forever() {
        let mut s = scope();
        s.permissions.insert(Permission::ReadClinicalMessage);
        assert_eq!(
            create_api_token(StaffId::new(), "x", s, T0 + Duration::days(1), T0).unwrap_err(),
            ApiTokenCreateError::Scope(ApiTokenScopeError::NotGrantable(
                Permission::ReadClinicalMessage
            ))
        );
        let mut s = scope();
        s.purposes.insert(PurposeOfUse::Emergency);
        assert!(create_api_token(StaffId::new(), "x", s, T0 + Duration::days(1), T0).is_err());
        assert!(
            create_api_token(StaffId::new(), "x", scope(), T0 + Duration::days(400), T0).is_err()
        );
        assert!(create_api_token(StaffId::new(), "x", scope(), T0, T0).is_err());
        assert!(create_api_token(StaffId::new(), "", scope(), T0 + Duration::days(1), T0).is_err());
        let empty = ApiTokenScope {
            permissions: BTreeSet::new(),
            purposes: scope().purposes,
        };
        assert!(create_api_token(StaffId::new(), "x", empty, T0 + Duration::days(1), T0).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,60}") {
            let _ = ApiToken::parse(&s);
            let _ = ApiToken::parse(&format!("pmt_{s}"));
        }
    }
}

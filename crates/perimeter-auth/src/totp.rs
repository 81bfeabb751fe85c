//! Time-based one-time passwords (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps) for
//! mandatory MFA, with at most one step of clock skew and replay refusal.
//!
//! Replay refusal is the caller's half of the contract: store the step returned by
//! [`verify_totp`] with the user and pass it back next time; a code for that step or an earlier
//! one is refused even if it is otherwise correct.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

use crate::error::{AuthError, random_bytes};

/// Seconds in one TOTP step.
pub const TOTP_STEP_SECONDS: u64 = 30;
/// Digits in a code.
pub const TOTP_DIGITS: usize = 6;
/// Bytes in a generated secret (160 bits, as RFC 4226 recommends).
pub const TOTP_SECRET_BYTES: usize = 20;

/// A TOTP shared secret. Zeroized on drop; `Debug` does not show it. Store it encrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl TotpSecret {
    /// A fresh random 160-bit secret.
    pub fn generate() -> Result<Self, AuthError> {
        let bytes: [u8; TOTP_SECRET_BYTES] = random_bytes()?;
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// A secret from stored bytes (after decryption). At least 16 bytes (128 bits).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, AuthError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < 16 || bytes.len() > 64 {
            return Err(AuthError::Totp("secret must be 16 to 64 bytes"));
        }
        Ok(Self(bytes))
    }

    /// A secret from its RFC 4648 base32 form (as printed for the demo users).
    pub fn from_base32(text: &str) -> Result<Self, AuthError> {
        let secret = totp_rs::Secret::try_from_base32(text.trim())
            .map_err(|_| AuthError::Totp("secret is not valid base32"))?;
        Self::from_bytes(secret.as_ref().to_vec())
    }

    /// The raw bytes, to be encrypted before they are stored.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The base32 form used in otpauth URIs and for manual entry in an authenticator app.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(totp_rs::Secret::from(self.0.to_vec()).to_base32())
    }

    fn totp(&self, issuer: Option<&str>, account: Option<&str>) -> Result<Totp, AuthError> {
        let mut builder = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(TOTP_STEP_SECONDS)
            .with_secret(self.0.to_vec());
        if let Some(account) = account {
            builder = builder.with_account_name(account);
        }
        if let Some(issuer) = issuer {
            builder = builder.with_issuer(Some(issuer));
        }
        builder
            .build()
            .map_err(|_| AuthError::Totp("issuer and account name must not contain ':'"))
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// What a user needs to add the secret to an authenticator app. Show once, over TLS, to the
/// user enrolling; never log it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    /// `otpauth://totp/Issuer:account?secret=...&issuer=Issuer`.
    pub otpauth_uri: Zeroizing<String>,
    /// The same URI as a QR code: `data:image/svg+xml;base64,...`.
    pub qr_svg_data_uri: Zeroizing<String>,
    /// The secret in base32 for manual entry.
    pub secret_base32: Zeroizing<String>,
}

impl fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpEnrolment(<redacted>)")
    }
}

/// Builds the otpauth URI and its QR code for `account` (the username) at `issuer` (the
/// practice or product name). Neither may contain `:`.
pub fn totp_enrolment(
    secret: &TotpSecret,
    issuer: &str,
    account: &str,
) -> Result<TotpEnrolment, AuthError> {
    let totp = secret.totp(Some(issuer), Some(account))?;
    let uri = Zeroizing::new(
        totp.to_url()
            .map_err(|_| AuthError::Totp("account name must be non-empty without ':'"))?,
    );
    let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
        .map_err(|_| AuthError::Qr)?;
    let svg = Zeroizing::new(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    );
    let data_uri = Zeroizing::new(format!(
        "data:image/svg+xml;base64,{}",
        STANDARD.encode(svg.as_bytes())
    ));
    Ok(TotpEnrolment {
        otpauth_uri: uri,
        qr_svg_data_uri: data_uri,
        secret_base32: secret.to_base32(),
    })
}

/// Why a TOTP code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpRejection {
    /// Not six digits (spaces are ignored).
    #[error("code: expected 6 digits")]
    Malformed,
    /// Wrong code for this time (within one step either side).
    #[error("code: not valid at this time")]
    Invalid,
    /// A correct code for a step already used (replay).
    #[error("code: already used; wait for the next code")]
    Replayed,
}

/// The TOTP step (Unix seconds / 30) at `now`; times before 1970 count as step 0.
pub fn totp_step(now: OffsetDateTime) -> u64 {
    u64::try_from(now.unix_timestamp()).unwrap_or(0) / TOTP_STEP_SECONDS
}

fn code_for_step(totp: &Totp, step: u64) -> Zeroizing<String> {
    Zeroizing::new(
        totp.generate(step.saturating_mul(TOTP_STEP_SECONDS))
            .to_string(),
    )
}

/// The code at `now` (for tests and for printing demo log-in instructions).
pub fn totp_code_at(
    secret: &TotpSecret,
    now: OffsetDateTime,
) -> Result<Zeroizing<String>, AuthError> {
    let totp = secret.totp(None, None)?;
    Ok(code_for_step(&totp, totp_step(now)))
}

/// Verifies `code` at `now` (from the injected clock), accepting the current step and one step
/// either side. `last_step` is the step of the last code this user had accepted (or `None`);
/// any step at or before it is refused as a replay. On success returns the step to store as the
/// new `last_step`. Comparison is constant-time.
pub fn verify_totp(
    secret: &TotpSecret,
    code: &str,
    now: OffsetDateTime,
    last_step: Option<u64>,
) -> Result<u64, TotpRejection> {
    let digits: Zeroizing<String> =
        Zeroizing::new(code.chars().filter(|c| !c.is_whitespace()).collect());
    if digits.len() != TOTP_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TotpRejection::Malformed);
    }
    let totp = secret
        .totp(None, None)
        .map_err(|_| TotpRejection::Invalid)?;
    let current = totp_step(now);
    let mut accepted: Option<u64> = None;
    let mut replayed = false;
    for step in current.saturating_sub(1)..=current.saturating_add(1) {
        let expected = code_for_step(&totp, step);
        let matches: bool = expected.as_bytes().ct_eq(digits.as_bytes()).into();
        if matches {
            if last_step.is_some_and(|last| step <= last) {
                replayed = true;
            } else if accepted.is_none() {
                accepted = Some(step);
            }
        }
    }
    match accepted {
        Some(step) => Ok(step),
        None if replayed => Err(TotpRejection::Replayed),
        None => Err(TotpRejection::Invalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// RFC 6238 Appendix B test secret for SHA-1.
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap()
    }

    #[test]
    fn rfc6238_vectors_truncated_to_six_digits() {
        // Appendix B lists 8-digit codes; the 6-digit code is the last six digits.
        let cases = [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ];
        for (unix, code) in cases {
            let now = OffsetDateTime::from_unix_timestamp(unix).unwrap();
            assert_eq!(totp_code_at(&rfc_secret(), now).unwrap().as_str(), code);
            assert!(verify_totp(&rfc_secret(), code, now, None).is_ok());
        }
    }

    #[test]
    fn one_step_of_skew_either_side_and_no_more() {
        let secret = TotpSecret::generate().unwrap();
        let now = datetime!(2026-01-01 12:00:15 UTC);
        let code = totp_code_at(&secret, now).unwrap();
        let step = totp_step(now);
        assert_eq!(verify_totp(&secret, &code, now, None), Ok(step));
        let later = now + time::Duration::seconds(30);
        assert_eq!(verify_totp(&secret, &code, later, None), Ok(step));
        let earlier = now - time::Duration::seconds(30);
        assert_eq!(verify_totp(&secret, &code, earlier, None), Ok(step));
        let too_late = now + time::Duration::seconds(60);
        assert_eq!(
            verify_totp(&secret, &code, too_late, None),
            Err(TotpRejection::Invalid)
        );
    }

    #[test]
    fn replayed_codes_and_older_steps_are_refused() {
        let secret = TotpSecret::generate().unwrap();
        let now = datetime!(2026-01-01 12:00:15 UTC);
        let code = totp_code_at(&secret, now).unwrap();
        let step = verify_totp(&secret, &code, now, None).unwrap();
        assert_eq!(
            verify_totp(&secret, &code, now, Some(step)),
            Err(TotpRejection::Replayed)
        );
        // The previous step's code is also refused once a later one was used.
        let previous = totp_code_at(&secret, now - time::Duration::seconds(30)).unwrap();
        if previous != code {
            assert_eq!(
                verify_totp(&secret, &previous, now, Some(step)),
                Err(TotpRejection::Replayed)
            );
        }
        // The next step's code is accepted.
        let next_time = now + time::Duration::seconds(30);
        let next = totp_code_at(&secret, next_time).unwrap();
        assert_eq!(
            verify_totp(&secret, &next, next_time, Some(step)),
            Ok(step + 1)
        );
    }

    #[test]
    fn malformed_codes_are_refused() {
        let secret = TotpSecret::generate().unwrap();
        let now = datetime!(2026-01-01 12:00:00 UTC);
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(
                verify_totp(&secret, bad, now, None),
                Err(TotpRejection::Malformed)
            );
        }
        let code = totp_code_at(&secret, now).unwrap();
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert!(verify_totp(&secret, &spaced, now, None).is_ok());
    }

    #[test]
    fn enrolment_builds_uri_and_svg_qr_code() {
        let secret = TotpSecret::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap();
        let e = totp_enrolment(&secret, "Perimeter", "dr.smith").unwrap();
        assert!(
            e.otpauth_uri
                .starts_with("otpauth://totp/Perimeter:dr.smith?")
        );
        assert!(
            e.otpauth_uri
                .contains("secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
        );
        assert!(e.otpauth_uri.contains("issuer=Perimeter"));
        assert!(e.qr_svg_data_uri.starts_with("data:image/svg+xml;base64,"));
        let svg = STANDARD
            .decode(
                e.qr_svg_data_uri
                    .trim_start_matches("data:image/svg+xml;base64,"),
            )
            .unwrap();
        assert!(String::from_utf8(svg).unwrap().contains("<svg"));
        assert!(totp_enrolment(&secret, "Bad:Issuer", "x").is_err());
        assert_eq!(format!("{e:?}"), "TotpEnrolment(<redacted>)");
        assert_eq!(format!("{secret:?}"), "TotpSecret(<redacted>)");
    }

    #[test]
    fn secret_round_trips_and_short_secrets_are_refused() {
        let s = TotpSecret::generate().unwrap();
        assert_eq!(s.as_bytes().len(), 20);
        let back = TotpSecret::from_base32(&s.to_base32()).unwrap();
        assert_eq!(back, s);
        assert!(TotpSecret::from_bytes(vec![0; 10]).is_err());
        assert!(TotpSecret::from_base32("not base32!").is_err());
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics(code in "\\PC{0,20}", secs in 0i64..4_000_000_000, last in proptest::option::of(0u64..200_000_000)) {
            let secret = rfc_secret();
            let now = OffsetDateTime::from_unix_timestamp(secs).unwrap();
            let _ = verify_totp(&secret, &code, now, last);
        }
    }
}

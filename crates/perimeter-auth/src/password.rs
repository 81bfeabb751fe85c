//! Passwords: the policy (NIST SP 800-63B: length and a blocklist, no composition rules, no
//! forced rotation) and argon2id hashing to PHC strings.
//!
//! **Hashing is deliberately slow (tens of milliseconds, 19 MiB of memory).** Async callers must
//! run [`hash_password`] and [`verify_password`] on `tokio::task::spawn_blocking`, never on
//! the async executor.

use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, Version};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::common::is_common;
use crate::error::AuthError;

/// Fewest characters (Unicode scalar values after NFC normalisation) a password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most characters a password may have (bounds the hashing work an attacker can ask for).
pub const MAX_PASSWORD_CHARS: usize = 128;

/// argon2id memory cost in KiB (OWASP Password Storage Cheat Sheet: m=19456, t=2, p=1).
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
/// argon2id iterations.
pub const ARGON2_ITERATIONS: u32 = 2;
/// argon2id parallelism.
pub const ARGON2_PARALLELISM: u32 = 1;

/// A well-formed PHC string with the current parameters and random salt and output (no known
/// password matches it). Unknown users are
/// verified against it so that "no such user" takes as long as "wrong password".
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$4kB8pyGL0gTrhNmIw1dC8w$XZmZ2JbN2Y5iH4o7r8fvQ5V5cgq0w4C8aGx0r3mEDfU";

/// Why a new password was refused. Messages name the rule, never the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordPolicyError {
    /// Fewer than [`MIN_PASSWORD_CHARS`] characters.
    #[error("password: expected at least {min} characters, got {got}")]
    TooShort {
        /// The minimum.
        min: usize,
        /// How many characters were given.
        got: usize,
    },
    /// More than [`MAX_PASSWORD_CHARS`] characters.
    #[error("password: expected at most {max} characters")]
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// On the list of commonly used passwords.
    #[error("password: this is a commonly used password; choose another")]
    Common,
    /// Contains the username.
    #[error("password: must not contain the username")]
    ContainsUsername,
    /// Contains control characters (which cannot be typed reliably).
    #[error("password: must not contain control characters")]
    ControlCharacter,
}

/// A password after NFC normalisation, zeroized on drop.
fn normalize(password: &str) -> Zeroizing<String> {
    Zeroizing::new(password.nfc().collect())
}

/// Checks a new password against the policy: 12 to 128 characters after NFC normalisation, no
/// control characters, not on the common-password list, not containing the username. Any other
/// character (spaces, emoji, any script) is allowed; there are no composition rules.
pub fn check_password_policy(password: &str, username: &str) -> Result<(), PasswordPolicyError> {
    let normalized = normalize(password);
    let count = normalized.chars().count();
    if count < MIN_PASSWORD_CHARS {
        return Err(PasswordPolicyError::TooShort {
            min: MIN_PASSWORD_CHARS,
            got: count,
        });
    }
    if count > MAX_PASSWORD_CHARS {
        return Err(PasswordPolicyError::TooLong {
            max: MAX_PASSWORD_CHARS,
        });
    }
    if normalized.chars().any(char::is_control) {
        return Err(PasswordPolicyError::ControlCharacter);
    }
    if is_common(&normalized) {
        return Err(PasswordPolicyError::Common);
    }
    let lower = Zeroizing::new(normalized.to_lowercase());
    let user = username.trim().to_lowercase();
    if user.chars().count() >= 3 && lower.contains(&user) {
        return Err(PasswordPolicyError::ContainsUsername);
    }
    Ok(())
}

fn hasher() -> Result<Argon2<'static>, AuthError> {
    let params = Params::new(
        ARGON2_MEMORY_KIB,
        ARGON2_ITERATIONS,
        ARGON2_PARALLELISM,
        None,
    )
    .map_err(|_| AuthError::Hash("argon2 parameters out of range"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password (after NFC normalisation) with argon2id at the OWASP parameters and a
/// fresh 16-byte random salt, returning a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`).
///
/// Slow on purpose: call it from `spawn_blocking`. Does not check the policy; call
/// [`check_password_policy`] first for new passwords.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    use argon2::password_hash::PasswordHasher;
    let normalized = normalize(password);
    let salt: [u8; 16] = crate::error::random_bytes()?;
    let hash = hasher()?
        .hash_password_with_salt(normalized.as_bytes(), &salt)
        .map_err(|_| AuthError::Hash("argon2 refused the input"))?;
    Ok(hash.to_string())
}

/// Verifies a password against a stored PHC string.
///
/// Pass `None` when the user does not exist (or has no password): the password is then verified
/// against a built-in dummy hash with the same parameters, so that the answer takes the same
/// time and an attacker cannot tell unknown usernames from wrong passwords. An unparseable
/// stored hash also verifies the dummy and answers `false`. Slow on purpose: call it from
/// `spawn_blocking`.
pub fn verify_password(stored: Option<&str>, password: &str) -> bool {
    let normalized = normalize(password);
    let Ok(argon) = hasher() else {
        return false;
    };
    // Overlong input is refused after the same amount of work as any other.
    let too_long = normalized.chars().count() > MAX_PASSWORD_CHARS;
    let parsed = stored.and_then(|s| PasswordHash::new(s).ok());
    match parsed {
        Some(hash) if !too_long => argon.verify_password(normalized.as_bytes(), &hash).is_ok(),
        _ => {
            if let Ok(dummy) = PasswordHash::new(DUMMY_HASH) {
                let _ = argon.verify_password(normalized.as_bytes(), &dummy);
            }
            false
        }
    }
}

/// Whether a stored hash should be replaced (after a successful login) because it uses another
/// algorithm or weaker parameters than the current ones.
pub fn needs_rehash(stored: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return true;
    };
    if hash.algorithm.as_str() != "argon2id" {
        return true;
    }
    let Ok(params) = Params::try_from(&hash) else {
        return true;
    };
    params.m_cost() < ARGON2_MEMORY_KIB
        || params.t_cost() < ARGON2_ITERATIONS
        || params.p_cost() < ARGON2_PARALLELISM
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_counts_characters_after_nfc_not_bytes() {
        // "é" as e + combining acute is one character after NFC.
        let eleven = "e\u{301}".repeat(11);
        assert_eq!(
            check_password_policy(&eleven, "alice"),
            Err(PasswordPolicyError::TooShort { min: 12, got: 11 })
        );
        let twelve = "é".repeat(12);
        assert!(check_password_policy(&twelve, "alice").is_ok());
        // 12 emoji are 48 bytes but 12 characters: allowed.
        assert!(check_password_policy(&"🦀".repeat(12), "alice").is_ok());
    }

    #[test]
    fn policy_limits_length_and_refuses_common_passwords_and_username() {
        assert_eq!(
            check_password_policy(&"x".repeat(129), "alice"),
            Err(PasswordPolicyError::TooLong { max: 128 })
        );
        assert!(check_password_policy(&"x".repeat(128), "alice").is_ok());
        assert_eq!(
            check_password_policy("Password1234", "alice"),
            Err(PasswordPolicyError::Common)
        );
        assert_eq!(
            check_password_policy("my name is Alice.Smith!", "alice.smith"),
            Err(PasswordPolicyError::ContainsUsername)
        );
        assert_eq!(
            check_password_policy("tab\there in the middle", "bob"),
            Err(PasswordPolicyError::ControlCharacter)
        );
        // No composition rules: a long lower-case passphrase is fine.
        assert!(check_password_policy("purple staple orbit lantern", "bob").is_ok());
    }

    #[test]
    fn policy_errors_never_contain_the_password() {
        let secret = "Password1234";
        let err = check_password_policy(secret, "bob").unwrap_err();
        assert!(!err.to_string().contains(secret));
    }

    #[test]
    fn hash_then_verify_round_trips_and_uses_owasp_parameters() {
        let hash = hash_password("purple staple orbit lantern").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(Some(&hash), "purple staple orbit lantern"));
        assert!(!verify_password(
            Some(&hash),
            "purple staple orbit lanterns"
        ));
        assert!(!needs_rehash(&hash));
        // Same password, different salt.
        assert_ne!(hash, hash_password("purple staple orbit lantern").unwrap());
    }

    #[test]
    fn verification_normalises_to_nfc() {
        let composed = "caf\u{e9} au lait tous les matins";
        let decomposed = "cafe\u{301} au lait tous les matins";
        let hash = hash_password(composed).unwrap();
        assert!(verify_password(Some(&hash), decomposed));
    }

    #[test]
    fn unknown_users_and_garbage_hashes_verify_false() {
        assert!(!verify_password(None, "anything at all here"));
        assert!(!verify_password(
            Some("not a phc string"),
            "anything at all here"
        ));
        assert!(!verify_password(Some(DUMMY_HASH), &"y".repeat(129)));
    }

    #[test]
    fn dummy_hash_is_well_formed_with_current_parameters() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert!(!needs_rehash(DUMMY_HASH));
    }

    #[test]
    fn weaker_or_foreign_hashes_need_rehash() {
        assert!(needs_rehash(
            "$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"
        ));
        assert!(needs_rehash("$2b$12$abcdefghijklmnopqrstuu"));
        assert!(needs_rehash("garbage"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn policy_never_panics_and_never_echoes_input(pw in ".{0,200}", user in ".{0,20}") {
            if let Err(e) = check_password_policy(&pw, &user)
                && pw.chars().count() >= 4
            {
                proptest::prop_assert!(!e.to_string().contains(&pw));
            }
        }
    }
}

//! Single-use recovery codes, for a user who has lost their authenticator.
//!
//! Ten codes of 80 random bits each (16 Crockford base32 characters, shown as
//! `XXXX-XXXX-XXXX-XXXX`) are generated at enrolment and shown once. Only their SHA-256 hashes
//! are stored: at 80 bits of entropy a slow hash adds nothing. A code is consumed by deleting
//! the row holding its hash (`DELETE ... WHERE user = ? AND hash = ?`), which is atomic, so a
//! code cannot be used twice even by two concurrent requests.

use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{AuthError, random_bytes};

/// How many codes a user gets.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Characters in a code, without separators.
const CODE_CHARS: usize = 16;
/// Crockford's base32 alphabet (no I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const DOMAIN: &[u8] = b"perimeter recovery code v1\0";

/// A recovery code in clear, to show to the user once. Zeroized on drop; `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(Zeroizing<String>);

impl RecoveryCode {
    /// The code as shown: `XXXX-XXXX-XXXX-XXXX`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

/// The stored form of a recovery code: SHA-256 over a domain tag and the canonical code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecoveryCodeHash(pub [u8; 32]);

/// A presented code that cannot be a recovery code (wrong length or characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("recovery code: expected 16 letters and digits, as XXXX-XXXX-XXXX-XXXX")]
pub struct MalformedRecoveryCode;

/// Generates [`RECOVERY_CODE_COUNT`] fresh codes and their hashes (same order).
pub fn generate_recovery_codes() -> Result<(Vec<RecoveryCode>, Vec<RecoveryCodeHash>), AuthError> {
    let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    let mut hashes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    for _ in 0..RECOVERY_CODE_COUNT {
        // 10 bytes = 80 bits = 16 base32 characters, 5 bits each.
        let bytes: Zeroizing<[u8; 10]> = Zeroizing::new(random_bytes()?);
        let mut canonical = Zeroizing::new(String::with_capacity(CODE_CHARS));
        let mut acc: u128 = 0;
        for b in bytes.iter() {
            acc = (acc << 8) | u128::from(*b);
        }
        for i in (0..CODE_CHARS).rev() {
            let index = usize::try_from((acc >> (i * 5)) & 0x1f).unwrap_or(0);
            canonical.push(char::from(ALPHABET[index]));
        }
        zeroize::Zeroize::zeroize(&mut acc);
        hashes.push(hash_canonical(&canonical));
        let mut shown = Zeroizing::new(String::with_capacity(CODE_CHARS + 3));
        for (i, c) in canonical.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                shown.push('-');
            }
            shown.push(c);
        }
        codes.push(RecoveryCode(shown));
    }
    Ok((codes, hashes))
}

fn hash_canonical(canonical: &str) -> RecoveryCodeHash {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(canonical.as_bytes());
    RecoveryCodeHash(h.finalize().into())
}

/// Hashes a code as typed, for lookup: separators and spaces are dropped, letters upper-cased,
/// and Crockford's look-alikes mapped (`O`→`0`, `I`/`L`→`1`).
pub fn hash_recovery_code(input: &str) -> Result<RecoveryCodeHash, MalformedRecoveryCode> {
    if input.len() > 64 {
        return Err(MalformedRecoveryCode);
    }
    let mut canonical = Zeroizing::new(String::with_capacity(CODE_CHARS));
    for c in input.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return Err(MalformedRecoveryCode);
        }
        canonical.push(c);
    }
    if canonical.len() != CODE_CHARS {
        return Err(MalformedRecoveryCode);
    }
    Ok(hash_canonical(&canonical))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ten_distinct_codes_whose_hashes_match() {
        let (codes, hashes) = generate_recovery_codes().unwrap();
        assert_eq!(codes.len(), 10);
        assert_eq!(hashes.len(), 10);
        let distinct: HashSet<_> = hashes.iter().collect();
        assert_eq!(distinct.len(), 10);
        for (code, hash) in codes.iter().zip(&hashes) {
            assert_eq!(code.as_str().len(), 19);
            assert_eq!(hash_recovery_code(code.as_str()).unwrap(), *hash);
            // Typed sloppily: lower case, no dashes, spaces.
            let sloppy = code.as_str().to_lowercase().replace('-', " ");
            assert_eq!(hash_recovery_code(&sloppy).unwrap(), *hash);
        }
        assert_eq!(format!("{:?}", codes[0]), "RecoveryCode(<redacted>)");
    }

    #[test]
    fn malformed_codes_are_refused() {
        for bad in [
            "",
            "ABCD-EFGH",
            "ABCD-EFGH-JKMN-PQRS-T",
            "ABCD-EFGH-JKMN-PQRU",
            "ÄBCD-EFGH-JKMN-PQRS",
        ] {
            assert_eq!(hash_recovery_code(bad), Err(MalformedRecoveryCode));
        }
        assert_eq!(
            hash_recovery_code(&"A".repeat(1000)),
            Err(MalformedRecoveryCode)
        );
    }

    #[test]
    fn look_alikes_map_to_digits() {
        assert_eq!(
            hash_recovery_code("O0I1-L1O0-AAAA-BBBB").unwrap(),
            hash_recovery_code("0011-1100-AAAA-BBBB").unwrap()
        );
    }

    proptest::proptest! {
        #[test]
        fn hashing_never_panics(s in "\\PC{0,80}") {
            let _ = hash_recovery_code(&s);
        }
    }
}

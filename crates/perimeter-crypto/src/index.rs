//! Keyed blind indexes: equality lookups on PHI without a plaintext column.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::normalize;

/// What a blind index is over. Each kind is domain-separated, so equal strings of two kinds
/// index differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndexKind {
    /// E.164 phone number.
    Phone,
    /// E-mail address.
    Email,
    /// Medical record number.
    Mrn,
    /// Full name (given then family names).
    Name,
    /// Insurance member id.
    MemberId,
    /// Billing account number.
    AccountNumber,
}

impl IndexKind {
    /// Every kind.
    pub const ALL: [IndexKind; 6] = [
        IndexKind::Phone,
        IndexKind::Email,
        IndexKind::Mrn,
        IndexKind::Name,
        IndexKind::MemberId,
        IndexKind::AccountNumber,
    ];

    /// The stable name stored beside the index value.
    pub const fn as_str(self) -> &'static str {
        match self {
            IndexKind::Phone => "phone",
            IndexKind::Email => "email",
            IndexKind::Mrn => "mrn",
            IndexKind::Name => "name",
            IndexKind::MemberId => "member_id",
            IndexKind::AccountNumber => "account_number",
        }
    }

    /// Normalises `raw` for this kind ([`crate::normalize`]); `None` if it cannot be one.
    /// Phones without a country code are taken to be in country `1`.
    pub fn normalise(self, raw: &str) -> Option<String> {
        match self {
            IndexKind::Phone => normalize::phone(raw, "1"),
            IndexKind::Email => normalize::email(raw),
            IndexKind::Mrn => normalize::mrn(raw),
            IndexKind::Name => normalize::name(raw),
            IndexKind::MemberId | IndexKind::AccountNumber => normalize::account_id(raw),
        }
    }
}

/// Computes blind indexes with the key ring's index key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct BlindIndexer {
    key: [u8; 32],
}

impl BlindIndexer {
    /// An indexer with `key`.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// HMAC-SHA256(index key, "perimeter-bidx/1" || 0 || kind || 0 || value), where `value` has
    /// already been normalised.
    pub fn index(&self, kind: IndexKind, normalised: &str) -> [u8; 32] {
        self.mac(&[
            b"perimeter-bidx/1",
            kind.as_str().as_bytes(),
            normalised.as_bytes(),
        ])
    }

    /// Normalises `raw` for `kind` and indexes it; `None` when it does not normalise.
    pub fn index_raw(&self, kind: IndexKind, raw: &str) -> Option<[u8; 32]> {
        kind.normalise(raw).map(|n| self.index(kind, &n))
    }

    pub(crate) fn key_ref(&self) -> [u8; 32] {
        self.key
    }

    /// A value that shows whether a database was indexed with this key, revealing nothing
    /// about the key.
    pub fn check_value(&self) -> [u8; 32] {
        self.mac(&[b"perimeter-bidx-check/1"])
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this never fails for a 32-byte key.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.key) else {
            return [0u8; 32];
        };
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(&[0]);
            }
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for BlindIndexer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndexer([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_after_normalising_distinct_across_kinds_and_keys() {
        let a = BlindIndexer::new([1u8; 32]);
        let b = BlindIndexer::new([2u8; 32]);
        assert_eq!(
            a.index_raw(IndexKind::Phone, "(555) 010-1234"),
            a.index_raw(IndexKind::Phone, "+1 555 010 1234")
        );
        assert_ne!(
            a.index(IndexKind::Mrn, "X1"),
            a.index(IndexKind::Name, "X1")
        );
        assert_ne!(a.index(IndexKind::Mrn, "X1"), b.index(IndexKind::Mrn, "X1"));
        assert_ne!(
            a.index(IndexKind::MemberId, "X1"),
            a.index(IndexKind::AccountNumber, "X1")
        );
        assert_eq!(
            a.index_raw(IndexKind::MemberId, "w123-456"),
            a.index_raw(IndexKind::MemberId, "W123 456")
        );
        assert_ne!(a.check_value(), b.check_value());
        assert_eq!(a.index_raw(IndexKind::Email, "nope"), None);
        assert_eq!(format!("{a:?}"), "BlindIndexer([redacted])");
    }
}

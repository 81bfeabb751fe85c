//! Data-encryption keys and field ciphertexts.
//!
//! ```text
//! field ciphertext = version (1 byte, 0x01) || DEK id (16) || nonce (24) || XChaCha20-Poly1305(ciphertext || tag)
//! associated data  = version || DEK id || nonce || len-prefixed table || record id (16) || len-prefixed field
//! ```

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CryptoError;

/// The current field ciphertext format version.
pub const CIPHERTEXT_VERSION: u8 = 1;

const NONCE_LEN: usize = 24;
const ID_LEN: usize = 16;
const HEADER_LEN: usize = 1 + ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;

/// The id of a data key (random, not secret), carried in every ciphertext it seals.
pub type DekId = [u8; 16];

/// A data-encryption key: 256 bits, zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Dek {
    id: DekId,
    key: [u8; 32],
}

impl Dek {
    /// A fresh random key with a fresh random id.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut id = [0u8; ID_LEN];
        let mut key = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut id)
            .map_err(|_| CryptoError::Random)?;
        OsRng
            .try_fill_bytes(&mut key)
            .map_err(|_| CryptoError::Random)?;
        Ok(Self { id, key })
    }

    /// Rebuilds a key from its parts (used by key providers after unwrapping).
    pub fn from_parts(id: DekId, key: Zeroizing<[u8; 32]>) -> Self {
        Self { id, key: *key }
    }

    /// The key's id (not secret).
    pub fn id(&self) -> DekId {
        self.id
    }

    /// The key bytes, for key providers that wrap them. Do not copy them elsewhere.
    pub fn expose_key(&self) -> &[u8; 32] {
        &self.key
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dek")
            .field("id", &hex::encode(self.id))
            .field("key", &"[redacted]")
            .finish()
    }
}

/// A DEK wrapped (encrypted) by a KEK. Safe to store: useless without the KEK.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedDek {
    /// The KEK version that wrapped it.
    pub kek_version: u32,
    /// The DEK's id (bound into the wrapping as associated data).
    pub dek_id: DekId,
    /// The wrapped key bytes (provider-specific format).
    pub bytes: Vec<u8>,
}

impl fmt::Debug for WrappedDek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedDek")
            .field("kek_version", &self.kek_version)
            .field("dek_id", &hex::encode(self.dek_id))
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .finish()
    }
}

/// What a field ciphertext is bound to: the table, the record's id and the field's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aad<'a> {
    /// The table (or record type) name.
    pub table: &'a str,
    /// The record's id.
    pub record: [u8; 16],
    /// The field's name.
    pub field: &'a str,
}

impl<'a> Aad<'a> {
    /// Binds a ciphertext to `table`, `record` and `field`.
    pub fn new(table: &'a str, record: [u8; 16], field: &'a str) -> Self {
        Self {
            table,
            record,
            field,
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        push_len_prefixed(out, self.table.as_bytes());
        out.extend_from_slice(&self.record);
        push_len_prefixed(out, self.field.as_bytes());
    }
}

fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Seals `plaintext` under `dek`, bound to `aad`.
pub fn encrypt_field(dek: &Dek, aad: &Aad<'_>, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(|_| CryptoError::Random)?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.push(CIPHERTEXT_VERSION);
    header.extend_from_slice(&dek.id);
    header.extend_from_slice(&nonce);
    let mut ad = header.clone();
    aad.encode_into(&mut ad);
    let cipher = XChaCha20Poly1305::new((&dek.key).into());
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &ad,
            },
        )
        .map_err(|_| CryptoError::EncryptFailed)?;
    let mut out = header;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens a ciphertext made by [`encrypt_field`] with the same key and associated data.
pub fn decrypt_field(
    dek: &Dek,
    aad: &Aad<'_>,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if ciphertext.len() < HEADER_LEN + TAG_LEN {
        return Err(CryptoError::MalformedCiphertext);
    }
    let (header, sealed) = ciphertext.split_at(HEADER_LEN);
    let version = header[0];
    if version != CIPHERTEXT_VERSION {
        return Err(CryptoError::UnsupportedCiphertextVersion(version));
    }
    if header[1..1 + ID_LEN] != dek.id {
        return Err(CryptoError::WrongDataKey);
    }
    let nonce = &header[1 + ID_LEN..];
    let mut ad = header.to_vec();
    aad.encode_into(&mut ad);
    let cipher = XChaCha20Poly1305::new((&dek.key).into());
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &ad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::DecryptFailed {
            field: aad.field.to_owned(),
        })
}

/// [`encrypt_field`] for text.
pub fn encrypt_text(dek: &Dek, aad: &Aad<'_>, text: &str) -> Result<Vec<u8>, CryptoError> {
    encrypt_field(dek, aad, text.as_bytes())
}

/// [`decrypt_field`] for text.
pub fn decrypt_text(dek: &Dek, aad: &Aad<'_>, ciphertext: &[u8]) -> Result<String, CryptoError> {
    let bytes = decrypt_field(dek, aad, ciphertext)?;
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        let mut raw = e.into_bytes();
        raw.zeroize();
        CryptoError::NotUtf8 {
            field: aad.field.to_owned(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aad(field: &str) -> Aad<'_> {
        Aad::new("patient", [7u8; 16], field)
    }

    #[test]
    fn round_trip_and_format() {
        let dek = Dek::generate().unwrap();
        let ct = encrypt_text(&dek, &aad("phone"), "+15550100").unwrap();
        assert_eq!(ct[0], CIPHERTEXT_VERSION);
        assert_eq!(&ct[1..17], &dek.id());
        assert_eq!(ct.len(), HEADER_LEN + 9 + TAG_LEN);
        assert_eq!(decrypt_text(&dek, &aad("phone"), &ct).unwrap(), "+15550100");
    }

    #[test]
    fn moved_tampered_or_foreign_ciphertexts_fail() {
        let dek = Dek::generate().unwrap();
        let ct = encrypt_text(&dek, &aad("phone"), "secret").unwrap();
        assert!(matches!(
            decrypt_text(&dek, &aad("email"), &ct),
            Err(CryptoError::DecryptFailed { .. })
        ));
        let other_row = Aad::new("patient", [8u8; 16], "phone");
        assert!(decrypt_text(&dek, &other_row, &ct).is_err());
        let mut tampered = ct.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(decrypt_text(&dek, &aad("phone"), &tampered).is_err());
        let other = Dek::generate().unwrap();
        assert!(matches!(
            decrypt_text(&other, &aad("phone"), &ct),
            Err(CryptoError::WrongDataKey)
        ));
        assert!(matches!(
            decrypt_text(&dek, &aad("phone"), &ct[..10]),
            Err(CryptoError::MalformedCiphertext)
        ));
        let mut v2 = ct;
        v2[0] = 2;
        assert!(matches!(
            decrypt_text(&dek, &aad("phone"), &v2),
            Err(CryptoError::UnsupportedCiphertextVersion(2))
        ));
    }

    #[test]
    fn debug_redacts_key_bytes() {
        let dek = Dek::generate().unwrap();
        let shown = format!("{dek:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains(&hex::encode(dek.expose_key())));
    }
}

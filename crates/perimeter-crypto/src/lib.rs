//! Encryption at rest for Perimeter: envelope encryption and keyed blind indexes.
//!
//! * A [`KeyRing`] holds the key-encryption keys (KEKs, versioned), the blind-index key and the
//!   audit-checkpoint signing key. It is loaded from a key file or an environment variable, or
//!   built around any [`KeyProvider`] (a cloud KMS or Vault transit can implement that trait
//!   without touching callers).
//! * Every patient has one data-encryption key ([`Dek`]), stored only wrapped by a KEK
//!   ([`WrappedDek`], which names the KEK version that wrapped it).
//! * Every PHI field is sealed with [`encrypt_field`]: XChaCha20-Poly1305, with a version byte,
//!   the DEK's id and the nonce in the ciphertext, and the record id and field name bound in as
//!   associated data ([`Aad`]) so a ciphertext copied to another row or field does not open.
//! * Lookups use [`BlindIndexer`]: HMAC-SHA256 of a normalised value under a separate key.
//!
//! Key material is zeroized on drop, never printed (every `Debug` redacts) and never put in an
//! error. The only I/O is reading and writing the key file.

mod error;
mod field;
mod index;
mod keyring;
pub mod normalize;

pub use error::CryptoError;
pub use field::{
    Aad, CIPHERTEXT_VERSION, Dek, DekId, WrappedDek, decrypt_field, decrypt_text, encrypt_field,
    encrypt_text,
};
pub use index::{BlindIndexer, IndexKind};
pub use keyring::{KeyProvider, KeyRing, KeySource, LocalKeks};

//! Errors. None of them ever carries key bytes or plaintext.

use std::path::PathBuf;

/// Why a cryptographic operation or the key file failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The key file does not exist.
    #[error(
        "key file {path} not found; restore it from your backup, point `key_file` at it, or run `perimeter init` for a new installation"
    )]
    KeyFileMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The key file is readable by others than its owner.
    #[error(
        "key file {path} has permissions {mode:04o}; it must be readable only by its owner: run `chmod 600 {path}`"
    )]
    KeyFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file already exists (it is never overwritten by creation).
    #[error("key file {path} already exists; refusing to overwrite it")]
    KeyFileExists {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing the key file failed.
    #[error("cannot {action} key file {path}: {source}")]
    KeyFileIo {
        /// `read`, `create`, `write` or `replace`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file (or environment value) is not a Perimeter key ring.
    #[error("{origin} is not a valid Perimeter key ring: {reason}")]
    KeyRingMalformed {
        /// Which file or variable.
        origin: String,
        /// What is wrong (never key bytes).
        reason: String,
    },
    /// The key ring lacks the KEK version a wrapped key names.
    #[error(
        "the key ring has no KEK version {version}; the key file is older than the database or that version was retired"
    )]
    KekVersionMissing {
        /// The version asked for.
        version: u32,
    },
    /// An operation on the KEKs that the key ring refuses.
    #[error("{0}")]
    KeyRingChange(String),
    /// A wrapped DEK does not unwrap (wrong KEK, or it belongs to another record).
    #[error(
        "a wrapped data key does not unwrap under KEK version {version}: wrong key file, or the wrapped key was moved"
    )]
    UnwrapFailed {
        /// The KEK version named by the wrapped key.
        version: u32,
    },
    /// A ciphertext has a format version this build does not know.
    #[error("ciphertext format version {0} is not supported by this build")]
    UnsupportedCiphertextVersion(u8),
    /// A ciphertext is too short to be one.
    #[error("ciphertext is truncated or not a Perimeter ciphertext")]
    MalformedCiphertext,
    /// The ciphertext was sealed under another data key.
    #[error("ciphertext was encrypted under a different data key")]
    WrongDataKey,
    /// The ciphertext does not authenticate: tampered, or moved to another record or field.
    #[error(
        "ciphertext for field `{field}` does not authenticate: tampered with, or moved from another record or field"
    )]
    DecryptFailed {
        /// The field name (never its value).
        field: String,
    },
    /// Encryption failed (the AEAD refused; only on absurd lengths).
    #[error("encryption failed")]
    EncryptFailed,
    /// A decrypted text field is not UTF-8.
    #[error("decrypted field `{field}` is not valid UTF-8")]
    NotUtf8 {
        /// The field name.
        field: String,
    },
    /// The system random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
    /// A key provider (KMS, Vault) failed.
    #[error("key provider {provider}: {message}")]
    Provider {
        /// The provider's name.
        provider: String,
        /// What it said (never key bytes).
        message: String,
    },
}

//! The key ring: versioned KEKs, the blind-index key and the audit-checkpoint signing key.
//!
//! Key file format (JSON, mode 0600):
//!
//! ```text
//! {"format":"perimeter-keyring/1","primary_kek":2,
//!  "keks":[{"version":1,"key":"<64 hex>"},{"version":2,"key":"<64 hex>"}],
//!  "index_key":"<64 hex>","audit_signing_key":"<64 hex>"}
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{BlindIndexer, CryptoError, Dek, WrappedDek};

const FORMAT: &str = "perimeter-keyring/1";
const WRAP_NONCE_LEN: usize = 24;

/// Wraps and unwraps data keys with versioned key-encryption keys.
///
/// Implemented here by [`LocalKeks`] (key file or environment variable); a cloud KMS or Vault
/// transit engine can implement it too, and [`KeyRing::with_provider`] puts it behind the same
/// interface the rest of Perimeter uses.
pub trait KeyProvider: Send + Sync + 'static {
    /// A short name for messages (`"key file"`, `"vault"`).
    fn name(&self) -> &str;
    /// The version new wraps use.
    fn primary_version(&self) -> u32;
    /// Every version this provider can unwrap with, ascending.
    fn versions(&self) -> Vec<u32>;
    /// Wraps `dek` with the primary version, binding `context` (such as the owning record's id).
    fn wrap(&self, dek: &Dek, context: &[u8]) -> Result<WrappedDek, CryptoError>;
    /// Unwraps with the version the wrapped key names; fails if `context` differs.
    fn unwrap(&self, wrapped: &WrappedDek, context: &[u8]) -> Result<Dek, CryptoError>;
    /// A value stored in the database that shows whether `version` is the same key that was
    /// used there, without revealing anything about it.
    fn check_value(&self, version: u32) -> Result<[u8; 32], CryptoError>;
}

#[derive(Zeroize, ZeroizeOnDrop)]
struct Kek([u8; 32]);

/// KEKs held in process memory (loaded from the key file or an environment variable).
#[derive(Clone)]
pub struct LocalKeks {
    keks: Arc<BTreeMap<u32, Kek>>,
    primary: u32,
}

impl LocalKeks {
    fn kek(&self, version: u32) -> Result<&Kek, CryptoError> {
        self.keks
            .get(&version)
            .ok_or(CryptoError::KekVersionMissing { version })
    }

    fn wrap_ad(version: u32, dek_id: &[u8; 16], context: &[u8]) -> Vec<u8> {
        let mut ad = Vec::with_capacity(40 + context.len());
        ad.extend_from_slice(b"perimeter-dek-wrap/1");
        ad.extend_from_slice(&version.to_be_bytes());
        ad.extend_from_slice(dek_id);
        ad.extend_from_slice(context);
        ad
    }
}

impl fmt::Debug for LocalKeks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKeks")
            .field("versions", &self.keks.keys().collect::<Vec<_>>())
            .field("primary", &self.primary)
            .finish_non_exhaustive()
    }
}

impl KeyProvider for LocalKeks {
    fn name(&self) -> &str {
        "key file"
    }

    fn primary_version(&self) -> u32 {
        self.primary
    }

    fn versions(&self) -> Vec<u32> {
        self.keks.keys().copied().collect()
    }

    fn wrap(&self, dek: &Dek, context: &[u8]) -> Result<WrappedDek, CryptoError> {
        let version = self.primary;
        let kek = self.kek(version)?;
        let mut nonce = [0u8; WRAP_NONCE_LEN];
        OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(|_| CryptoError::Random)?;
        let ad = Self::wrap_ad(version, &dek.id(), context);
        let sealed = XChaCha20Poly1305::new((&kek.0).into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: dek.expose_key(),
                    aad: &ad,
                },
            )
            .map_err(|_| CryptoError::EncryptFailed)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(WrappedDek {
            kek_version: version,
            dek_id: dek.id(),
            bytes,
        })
    }

    fn unwrap(&self, wrapped: &WrappedDek, context: &[u8]) -> Result<Dek, CryptoError> {
        let version = wrapped.kek_version;
        let kek = self.kek(version)?;
        if wrapped.bytes.len() != WRAP_NONCE_LEN + 32 + 16 {
            return Err(CryptoError::UnwrapFailed { version });
        }
        let (nonce, sealed) = wrapped.bytes.split_at(WRAP_NONCE_LEN);
        let ad = Self::wrap_ad(version, &wrapped.dek_id, context);
        let plain = Zeroizing::new(
            XChaCha20Poly1305::new((&kek.0).into())
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: &ad,
                    },
                )
                .map_err(|_| CryptoError::UnwrapFailed { version })?,
        );
        let key: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::UnwrapFailed { version })?;
        Ok(Dek::from_parts(wrapped.dek_id, Zeroizing::new(key)))
    }

    fn check_value(&self, version: u32) -> Result<[u8; 32], CryptoError> {
        let kek = self.kek(version)?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&kek.0)
            .map_err(|_| CryptoError::KekVersionMissing { version })?;
        mac.update(b"perimeter-kek-check/1");
        mac.update(&version.to_be_bytes());
        Ok(mac.finalize().into_bytes().into())
    }
}

/// Where a key ring came from (for messages; never contains key bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Generated in this process and not yet saved.
    Generated,
    /// A key file.
    File(PathBuf),
    /// An environment variable.
    Environment,
    /// An external [`KeyProvider`].
    Provider(String),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Generated => f.write_str("newly generated key ring"),
            KeySource::File(p) => write!(f, "key file {}", p.display()),
            KeySource::Environment => f.write_str("key ring environment variable"),
            KeySource::Provider(n) => write!(f, "key provider {n}"),
        }
    }
}

struct Inner {
    provider: Arc<dyn KeyProvider>,
    local: Option<LocalKeks>,
    indexer: BlindIndexer,
    signing: SigningKey,
    source: KeySource,
}

/// Perimeter's keys. Cheap to clone (shared); `Debug` shows versions only.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("source", &self.inner.source)
            .field("provider", &self.inner.provider.name())
            .field("kek_versions", &self.kek_versions())
            .field("primary_kek", &self.primary_kek_version())
            .field("keys", &"[redacted]")
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKek {
    version: u32,
    key: Zeroizing<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    format: String,
    primary_kek: u32,
    keks: Vec<FileKek>,
    index_key: Zeroizing<String>,
    audit_signing_key: Zeroizing<String>,
}

fn random32() -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let mut k = Zeroizing::new([0u8; 32]);
    OsRng
        .try_fill_bytes(k.as_mut())
        .map_err(|_| CryptoError::Random)?;
    Ok(k)
}

fn parse_hex32(origin: &str, what: &str, s: &str) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(s.trim(), out.as_mut()).map_err(|_| CryptoError::KeyRingMalformed {
        origin: origin.to_owned(),
        reason: format!("{what} must be 64 hexadecimal characters"),
    })?;
    Ok(out)
}

impl KeyRing {
    /// A fresh key ring: KEK version 1, a blind-index key and an audit signing key.
    pub fn generate() -> Result<KeyRing, CryptoError> {
        let mut keks = BTreeMap::new();
        keks.insert(1, Kek(*random32()?));
        Ok(Self::from_local(
            LocalKeks {
                keks: Arc::new(keks),
                primary: 1,
            },
            &*random32()?,
            &*random32()?,
            KeySource::Generated,
        ))
    }

    fn from_local(
        local: LocalKeks,
        index_key: &[u8; 32],
        signing: &[u8; 32],
        source: KeySource,
    ) -> KeyRing {
        KeyRing {
            inner: Arc::new(Inner {
                provider: Arc::new(local.clone()),
                local: Some(local),
                indexer: BlindIndexer::new(*index_key),
                signing: SigningKey::from_bytes(signing),
                source,
            }),
        }
    }

    /// A key ring whose KEKs live in an external provider (KMS, Vault transit); the index and
    /// signing keys are supplied by the caller (typically unwrapped through that provider).
    pub fn with_provider(
        provider: Arc<dyn KeyProvider>,
        index_key: Zeroizing<[u8; 32]>,
        audit_signing_key: Zeroizing<[u8; 32]>,
    ) -> KeyRing {
        let name = provider.name().to_owned();
        KeyRing {
            inner: Arc::new(Inner {
                provider,
                local: None,
                indexer: BlindIndexer::new(*index_key),
                signing: SigningKey::from_bytes(&audit_signing_key),
                source: KeySource::Provider(name),
            }),
        }
    }

    /// Loads a key file, refusing one that others than its owner can read or write.
    pub fn load_file(path: &Path) -> Result<KeyRing, CryptoError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(CryptoError::KeyFileMissing {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(CryptoError::KeyFileIo {
                    action: "read",
                    path: path.to_owned(),
                    source,
                });
            }
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(CryptoError::KeyFilePermissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            CryptoError::KeyFileIo {
                action: "read",
                path: path.to_owned(),
                source,
            }
        })?);
        Self::parse(
            &text,
            &format!("key file {}", path.display()),
            KeySource::File(path.to_owned()),
        )
    }

    /// Parses the key ring from an environment variable's value (the key file's contents).
    pub fn from_env_value(value: &str) -> Result<KeyRing, CryptoError> {
        Self::parse(
            value,
            "the key ring environment variable",
            KeySource::Environment,
        )
    }

    fn parse(text: &str, origin: &str, source: KeySource) -> Result<KeyRing, CryptoError> {
        let malformed = |reason: String| CryptoError::KeyRingMalformed {
            origin: origin.to_owned(),
            reason,
        };
        // serde_json's messages may quote input; report only the position.
        let file: FileFormat = serde_json::from_str(text).map_err(|e| {
            malformed(format!(
                "not the expected JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        if file.format != FORMAT {
            return Err(malformed(format!("format must be {FORMAT:?}")));
        }
        let mut keks = BTreeMap::new();
        for k in &file.keks {
            if k.version == 0 {
                return Err(malformed("KEK versions start at 1".into()));
            }
            let key = parse_hex32(origin, &format!("KEK version {}", k.version), &k.key)?;
            if keks.insert(k.version, Kek(*key)).is_some() {
                return Err(malformed(format!(
                    "KEK version {} appears twice",
                    k.version
                )));
            }
        }
        if !keks.contains_key(&file.primary_kek) {
            return Err(malformed(format!(
                "primary_kek {} is not among the KEKs",
                file.primary_kek
            )));
        }
        let index = parse_hex32(origin, "index_key", &file.index_key)?;
        let signing = parse_hex32(origin, "audit_signing_key", &file.audit_signing_key)?;
        Ok(Self::from_local(
            LocalKeks {
                keks: Arc::new(keks),
                primary: file.primary_kek,
            },
            &index,
            &signing,
            source,
        ))
    }

    fn local(&self) -> Result<&LocalKeks, CryptoError> {
        self.inner.local.as_ref().ok_or_else(|| {
            CryptoError::KeyRingChange(format!(
                "the KEKs are held by {}; change them there, not through Perimeter's key file",
                self.inner.source
            ))
        })
    }

    /// The key file's contents (also the value for the environment variable). Secret.
    pub fn to_file_string(&self) -> Result<Zeroizing<String>, CryptoError> {
        let local = self.local()?;
        let file = FileFormat {
            format: FORMAT.to_owned(),
            primary_kek: local.primary,
            keks: local
                .keks
                .iter()
                .map(|(v, k)| FileKek {
                    version: *v,
                    key: Zeroizing::new(hex::encode(k.0)),
                })
                .collect(),
            index_key: Zeroizing::new(hex::encode(self.inner.indexer_key())),
            audit_signing_key: Zeroizing::new(hex::encode(self.inner.signing.to_bytes())),
        };
        let mut text = serde_json::to_string_pretty(&file).map_err(|_| {
            CryptoError::KeyRingChange("the key ring could not be serialised".into())
        })?;
        text.push('\n');
        Ok(Zeroizing::new(text))
    }

    /// Writes a new key file (mode 0600); refuses to overwrite an existing one.
    pub fn save_file_new(&self, path: &Path) -> Result<(), CryptoError> {
        let text = self.to_file_string()?;
        let mut file = open_new_private(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                CryptoError::KeyFileExists {
                    path: path.to_owned(),
                }
            } else {
                CryptoError::KeyFileIo {
                    action: "create",
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
        let io = |source| CryptoError::KeyFileIo {
            action: "write",
            path: path.to_owned(),
            source,
        };
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(())
    }

    /// Atomically replaces the key file at `path` with this key ring (write a private
    /// temporary file beside it, sync, rename).
    pub fn replace_file(&self, path: &Path) -> Result<(), CryptoError> {
        let text = self.to_file_string()?;
        let mut suffix = [0u8; 6];
        OsRng
            .try_fill_bytes(&mut suffix)
            .map_err(|_| CryptoError::Random)?;
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(format!(".tmp-{}", hex::encode(suffix)));
        let tmp = PathBuf::from(tmp_name);
        let io = |action, source| CryptoError::KeyFileIo {
            action,
            path: path.to_owned(),
            source,
        };
        let result = (|| {
            let mut file = open_new_private(&tmp).map_err(|e| io("write", e))?;
            file.write_all(text.as_bytes())
                .map_err(|e| io("write", e))?;
            file.sync_all().map_err(|e| io("write", e))?;
            std::fs::rename(&tmp, path).map_err(|e| io("replace", e))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && let Ok(d) = std::fs::File::open(dir)
            {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// This key ring plus a new KEK, one version above the highest, as primary.
    pub fn with_new_primary_kek(&self) -> Result<KeyRing, CryptoError> {
        let local = self.local()?;
        let next = local
            .keks
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| CryptoError::KeyRingChange("no KEK versions left".into()))?;
        let mut keks: BTreeMap<u32, Kek> = local.keks.iter().map(|(v, k)| (*v, Kek(k.0))).collect();
        keks.insert(next, Kek(*random32()?));
        Ok(self.with_local(LocalKeks {
            keks: Arc::new(keks),
            primary: next,
        }))
    }

    /// This key ring without KEK `version` (refused for the primary version).
    pub fn without_kek(&self, version: u32) -> Result<KeyRing, CryptoError> {
        let local = self.local()?;
        if version == local.primary {
            return Err(CryptoError::KeyRingChange(format!(
                "KEK version {version} is the primary version; rotate to a new one before retiring it"
            )));
        }
        if !local.keks.contains_key(&version) {
            return Err(CryptoError::KekVersionMissing { version });
        }
        let keks: BTreeMap<u32, Kek> = local
            .keks
            .iter()
            .filter(|(v, _)| **v != version)
            .map(|(v, k)| (*v, Kek(k.0)))
            .collect();
        Ok(self.with_local(LocalKeks {
            keks: Arc::new(keks),
            primary: local.primary,
        }))
    }

    fn with_local(&self, local: LocalKeks) -> KeyRing {
        KeyRing {
            inner: Arc::new(Inner {
                provider: Arc::new(local.clone()),
                local: Some(local),
                indexer: self.inner.indexer.clone(),
                signing: self.inner.signing.clone(),
                source: self.inner.source.clone(),
            }),
        }
    }

    /// Where the keys came from.
    pub fn source(&self) -> &KeySource {
        &self.inner.source
    }

    /// The KEK provider.
    pub fn provider(&self) -> &dyn KeyProvider {
        self.inner.provider.as_ref()
    }

    /// The version new wraps use.
    pub fn primary_kek_version(&self) -> u32 {
        self.inner.provider.primary_version()
    }

    /// Every KEK version held, ascending.
    pub fn kek_versions(&self) -> Vec<u32> {
        self.inner.provider.versions()
    }

    /// The check value of KEK `version` ([`KeyProvider::check_value`]).
    pub fn kek_check_value(&self, version: u32) -> Result<[u8; 32], CryptoError> {
        self.inner.provider.check_value(version)
    }

    /// Wraps `dek` with the primary KEK, bound to `context`.
    pub fn wrap_dek(&self, dek: &Dek, context: &[u8]) -> Result<WrappedDek, CryptoError> {
        self.inner.provider.wrap(dek, context)
    }

    /// Unwraps a data key.
    pub fn unwrap_dek(&self, wrapped: &WrappedDek, context: &[u8]) -> Result<Dek, CryptoError> {
        self.inner.provider.unwrap(wrapped, context)
    }

    /// The blind indexer.
    pub fn indexer(&self) -> &BlindIndexer {
        &self.inner.indexer
    }

    /// The check value of the blind-index key.
    pub fn index_check_value(&self) -> [u8; 32] {
        self.inner.indexer.check_value()
    }

    /// The Ed25519 key that signs audit checkpoints.
    pub fn audit_signing_key(&self) -> &SigningKey {
        &self.inner.signing
    }

    /// The public half of [`KeyRing::audit_signing_key`].
    pub fn audit_verifying_key(&self) -> VerifyingKey {
        self.inner.signing.verifying_key()
    }
}

impl Inner {
    fn indexer_key(&self) -> [u8; 32] {
        self.indexer.key_bytes()
    }
}

impl BlindIndexer {
    pub(crate) fn key_bytes(&self) -> [u8; 32] {
        self.key_ref()
    }
}

fn open_new_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_wrap_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let ring = KeyRing::generate().unwrap();
        ring.save_file_new(&path).unwrap();
        assert!(matches!(
            ring.save_file_new(&path),
            Err(CryptoError::KeyFileExists { .. })
        ));
        let loaded = KeyRing::load_file(&path).unwrap();
        assert_eq!(
            loaded.kek_check_value(1).unwrap(),
            ring.kek_check_value(1).unwrap()
        );
        assert_eq!(loaded.index_check_value(), ring.index_check_value());
        assert_eq!(loaded.audit_verifying_key(), ring.audit_verifying_key());

        let dek = Dek::generate().unwrap();
        let wrapped = ring.wrap_dek(&dek, b"patient-1").unwrap();
        assert_eq!(wrapped.kek_version, 1);
        let back = loaded.unwrap_dek(&wrapped, b"patient-1").unwrap();
        assert_eq!(back.expose_key(), dek.expose_key());
        assert!(matches!(
            loaded.unwrap_dek(&wrapped, b"patient-2"),
            Err(CryptoError::UnwrapFailed { version: 1 })
        ));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = KeyRing::load_file(&path).unwrap_err();
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        let missing = KeyRing::load_file(&dir.path().join("nope.json")).unwrap_err();
        assert!(matches!(missing, CryptoError::KeyFileMissing { .. }));
    }

    #[test]
    fn rotation_and_retirement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let v1 = KeyRing::generate().unwrap();
        v1.save_file_new(&path).unwrap();
        let dek = Dek::generate().unwrap();
        let old = v1.wrap_dek(&dek, b"ctx").unwrap();
        let v2 = v1.with_new_primary_kek().unwrap();
        assert_eq!(v2.primary_kek_version(), 2);
        assert_eq!(v2.kek_versions(), vec![1, 2]);
        v2.replace_file(&path).unwrap();
        let reloaded = KeyRing::load_file(&path).unwrap();
        assert_eq!(reloaded.primary_kek_version(), 2);
        let rewrapped = reloaded
            .wrap_dek(&reloaded.unwrap_dek(&old, b"ctx").unwrap(), b"ctx")
            .unwrap();
        assert_eq!(rewrapped.kek_version, 2);
        assert!(reloaded.without_kek(2).is_err());
        let retired = reloaded.without_kek(1).unwrap();
        assert_eq!(retired.kek_versions(), vec![2]);
        assert!(matches!(
            retired.unwrap_dek(&old, b"ctx"),
            Err(CryptoError::KekVersionMissing { version: 1 })
        ));
        assert_eq!(
            retired.unwrap_dek(&rewrapped, b"ctx").unwrap().expose_key(),
            dek.expose_key()
        );
        assert_eq!(retired.index_check_value(), v1.index_check_value());
    }

    #[test]
    fn malformed_inputs_name_the_problem_not_the_bytes() {
        let err = KeyRing::from_env_value("{\"format\":1}").unwrap_err();
        assert!(err.to_string().contains("environment variable"));
        let ring = KeyRing::generate().unwrap();
        let text = ring.to_file_string().unwrap();
        let bad = text.replacen("\"primary_kek\": 1", "\"primary_kek\": 7", 1);
        assert!(
            KeyRing::from_env_value(&bad)
                .unwrap_err()
                .to_string()
                .contains("primary_kek 7")
        );
        let env = KeyRing::from_env_value(&text).unwrap();
        assert_eq!(env.source(), &KeySource::Environment);
        assert_eq!(
            env.kek_check_value(1).unwrap(),
            ring.kek_check_value(1).unwrap()
        );
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let ring = KeyRing::generate().unwrap();
        let shown = format!("{ring:?}");
        let file = ring.to_file_string().unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&file).unwrap();
        for key in [
            parsed["index_key"].as_str().unwrap(),
            parsed["audit_signing_key"].as_str().unwrap(),
            parsed["keks"][0]["key"].as_str().unwrap(),
        ] {
            assert!(!shown.contains(key));
        }
        assert!(shown.contains("redacted"));
    }
}

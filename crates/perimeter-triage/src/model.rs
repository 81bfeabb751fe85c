//! The intent model: multinomial logistic regression over hashed features, and its file format.
//!
//! Format (all integers little-endian), version 1:
//!
//! ```text
//! magic        8 bytes  "PTRIAGE\0"
//! version      u16      1
//! scheme       u16      the feature scheme (features::FEATURE_SCHEME)
//! hash_bits    u8       8..=20
//! classes      u8       number of intents, then per intent: u8 length + its name (ASCII)
//! scale        f32      weight = i16 * scale
//! bias         f32 × classes
//! weights      i16 × (1 << hash_bits) × classes, bucket-major
//! checksum     32 bytes SHA-256 of everything before it
//! ```
//!
//! `from_bytes` checks every field and the checksum and never panics; errors name what is
//! wrong, never echo the bytes.

use perimeter_workflows::Intent;
use sha2::{Digest, Sha256};

use crate::features::{FEATURE_SCHEME, Features};

const MAGIC: &[u8; 8] = b"PTRIAGE\0";
/// The model format version written by [`Model::to_bytes`].
pub const FORMAT_VERSION: u16 = 1;
const MIN_HASH_BITS: u8 = 8;
const MAX_HASH_BITS: u8 = 20;

/// Why model bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The bytes do not start with the model magic.
    #[error("not a triage model (bad magic)")]
    BadMagic,
    /// The format version is not one this build reads.
    #[error("unsupported model format version {found} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u16,
    },
    /// The model was trained on another feature scheme.
    #[error(
        "model uses feature scheme {found}, this build computes scheme {FEATURE_SCHEME}; retrain it"
    )]
    FeatureScheme {
        /// The scheme in the file.
        found: u16,
    },
    /// The bytes end before the named field.
    #[error("model is truncated (in {field})")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A field has a value this build cannot use.
    #[error("model field {field} is invalid: {expected}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What was expected of it.
        expected: &'static str,
    },
    /// The checksum does not match: the file is damaged.
    #[error("model checksum mismatch: the file is damaged")]
    Checksum,
    /// Bytes follow the checksum.
    #[error("model has {0} unexpected trailing bytes")]
    Trailing(usize),
}

/// A trained intent model.
#[derive(Clone, PartialEq)]
pub struct Model {
    pub(crate) hash_bits: u8,
    pub(crate) classes: Vec<Intent>,
    pub(crate) scale: f32,
    pub(crate) bias: Vec<f32>,
    /// Quantised weights, bucket-major: `weights[bucket * classes + class]`.
    pub(crate) weights: Vec<i16>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("hash_bits", &self.hash_bits)
            .field("classes", &self.classes)
            .field("nonzero_weights", &self.nonzero_weights())
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Quantises trained float weights (bucket-major) into a model.
    pub(crate) fn from_float(
        hash_bits: u8,
        classes: Vec<Intent>,
        bias: Vec<f32>,
        weights: &[f32],
    ) -> Model {
        let max = weights.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let scale = if max > 0.0 {
            max / f32::from(i16::MAX)
        } else {
            1.0
        };
        let weights = weights
            .iter()
            .map(|w| {
                let q = (w / scale).round();
                q.clamp(f32::from(i16::MIN + 1), f32::from(i16::MAX)) as i16
            })
            .collect();
        Model {
            hash_bits,
            classes,
            scale,
            bias,
            weights,
        }
    }

    /// The intents this model can output, in score order.
    pub fn classes(&self) -> &[Intent] {
        &self.classes
    }

    /// Number of hash buckets.
    pub fn buckets(&self) -> usize {
        1usize << self.hash_bits
    }

    /// Bits of the feature hash.
    pub fn hash_bits(&self) -> u8 {
        self.hash_bits
    }

    /// How many weights are not zero (buckets pruned or never seen are zero).
    pub fn nonzero_weights(&self) -> usize {
        self.weights.iter().filter(|w| **w != 0).count()
    }

    /// Class probabilities (softmax) for a feature vector, in [`Model::classes`] order.
    pub fn probabilities(&self, features: &Features) -> Vec<f32> {
        let k = self.classes.len();
        let mut acc = vec![0.0f32; k];
        for &(bucket, value) in features {
            let start = bucket as usize * k;
            if let Some(row) = self.weights.get(start..start + k) {
                for (a, w) in acc.iter_mut().zip(row) {
                    *a += f32::from(*w) * value;
                }
            }
        }
        let mut logits: Vec<f32> = acc
            .iter()
            .zip(&self.bias)
            .map(|(a, b)| a * self.scale + b)
            .collect();
        softmax(&mut logits);
        logits
    }

    /// Serialises the model (see the module documentation for the format).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.weights.len() * 2);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&FEATURE_SCHEME.to_le_bytes());
        out.push(self.hash_bits);
        out.push(self.classes.len() as u8);
        for c in &self.classes {
            let name = c.as_str().as_bytes();
            out.push(name.len() as u8);
            out.extend_from_slice(name);
        }
        out.extend_from_slice(&self.scale.to_le_bytes());
        for b in &self.bias {
            out.extend_from_slice(&b.to_le_bytes());
        }
        for w in &self.weights {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Reads a model written by [`Model::to_bytes`], checking every field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(MAGIC.len(), "magic")? != MAGIC {
            return Err(ModelError::BadMagic);
        }
        let version = r.u16("version")?;
        if version != FORMAT_VERSION {
            return Err(ModelError::UnsupportedVersion { found: version });
        }
        let scheme = r.u16("feature scheme")?;
        if scheme != FEATURE_SCHEME {
            return Err(ModelError::FeatureScheme { found: scheme });
        }
        let hash_bits = r.u8("hash_bits")?;
        if !(MIN_HASH_BITS..=MAX_HASH_BITS).contains(&hash_bits) {
            return Err(ModelError::Invalid {
                field: "hash_bits",
                expected: "between 8 and 20",
            });
        }
        let k = usize::from(r.u8("classes")?);
        if k < 2 || k > Intent::ALL.len() {
            return Err(ModelError::Invalid {
                field: "classes",
                expected: "between 2 and 8 intents",
            });
        }
        let mut classes = Vec::with_capacity(k);
        for _ in 0..k {
            let len = usize::from(r.u8("class name")?);
            let name = r.take(len, "class name")?;
            // Exactly the name `to_bytes` writes: `Intent::from_str` trims, so a padded name
            // loaded and the model no longer serialised to the bytes it was read from.
            let intent = Intent::ALL
                .into_iter()
                .find(|i| i.as_str().as_bytes() == name)
                .ok_or(ModelError::Invalid {
                    field: "class name",
                    expected: "an intent name",
                })?;
            if classes.contains(&intent) {
                return Err(ModelError::Invalid {
                    field: "class name",
                    expected: "each intent once",
                });
            }
            classes.push(intent);
        }
        let scale = r.f32("scale")?;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(ModelError::Invalid {
                field: "scale",
                expected: "a positive finite number",
            });
        }
        let mut bias = Vec::with_capacity(k);
        for _ in 0..k {
            let b = r.f32("bias")?;
            if !b.is_finite() {
                return Err(ModelError::Invalid {
                    field: "bias",
                    expected: "finite numbers",
                });
            }
            bias.push(b);
        }
        let n = (1usize << hash_bits) * k;
        let raw = r.take(n * 2, "weights")?;
        let weights = raw
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        let body_len = r.pos;
        let checksum = r.take(32, "checksum")?;
        let digest = Sha256::digest(bytes.get(..body_len).unwrap_or_default());
        if digest.as_slice() != checksum {
            return Err(ModelError::Checksum);
        }
        if r.pos != bytes.len() {
            return Err(ModelError::Trailing(bytes.len() - r.pos));
        }
        Ok(Model {
            hash_bits,
            classes,
            scale,
            bias,
            weights,
        })
    }
}

/// In-place softmax, numerically stable.
pub(crate) fn softmax(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    if sum > 0.0 && sum.is_finite() {
        for x in v.iter_mut() {
            *x /= sum;
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ModelError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(ModelError::Truncated { field })?;
        let s = self
            .bytes
            .get(self.pos..end)
            .ok_or(ModelError::Truncated { field })?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, ModelError> {
        Ok(self.take(1, field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, ModelError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn f32(&mut self, field: &'static str) -> Result<f32, ModelError> {
        let b = self.take(4, field)?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Model {
        let classes = vec![Intent::Scheduling, Intent::Emergency, Intent::General];
        let weights: Vec<f32> = (0..(256 * 3))
            .map(|i| ((i % 7) as f32 - 3.0) / 5.0)
            .collect();
        Model::from_float(8, classes, vec![0.1, -0.2, 0.3], &weights)
    }

    #[test]
    fn round_trips() {
        let m = tiny();
        let bytes = m.to_bytes();
        assert_eq!(Model::from_bytes(&bytes).unwrap(), m);
        assert_eq!(Model::from_bytes(&bytes).unwrap().to_bytes(), bytes);
    }

    #[test]
    fn refuses_damaged_bytes_with_a_clear_error() {
        let bytes = tiny().to_bytes();
        assert_eq!(
            Model::from_bytes(b"hello").unwrap_err(),
            ModelError::Truncated { field: "magic" }
        );
        assert_eq!(
            Model::from_bytes(b"PTRIAGX\0\x01\x00").unwrap_err(),
            ModelError::BadMagic
        );
        let mut v = bytes.clone();
        v[8] = 9;
        assert_eq!(
            Model::from_bytes(&v).unwrap_err(),
            ModelError::UnsupportedVersion { found: 9 }
        );
        let mut v = bytes.clone();
        v[10] = 77;
        assert_eq!(
            Model::from_bytes(&v).unwrap_err(),
            ModelError::FeatureScheme { found: 77 }
        );
        let mut v = bytes.clone();
        v[12] = 30;
        assert!(matches!(
            Model::from_bytes(&v),
            Err(ModelError::Invalid {
                field: "hash_bits",
                ..
            })
        ));
        let mut v = bytes.clone();
        let mid = v.len() / 2;
        v[mid] ^= 1;
        assert_eq!(Model::from_bytes(&v).unwrap_err(), ModelError::Checksum);
        assert!(matches!(
            Model::from_bytes(&bytes[..bytes.len() - 1]),
            Err(ModelError::Truncated { field: "checksum" })
        ));
        let mut v = bytes.clone();
        v.push(0);
        assert_eq!(Model::from_bytes(&v).unwrap_err(), ModelError::Trailing(1));
        // Messages never carry the bytes.
        assert!(!ModelError::Checksum.to_string().contains("PTRIAGE"));
    }

    /// Found by `fuzz/fuzz_targets/triage_model.rs` (regression input
    /// `fuzz/regressions/triage_model/padded-class-name`): a class name with white space
    /// around it (`"\x0bscheduling"`) loaded, and the model then serialised to other bytes.
    #[test]
    fn class_names_must_be_exact() {
        let bytes = tiny().to_bytes();
        // The first class name, "scheduling", starts at byte 15 after its length byte.
        assert_eq!(&bytes[14..25], b"\x0ascheduling");
        let mut body = bytes[..14].to_vec();
        body.extend_from_slice(b"\x0b\x0bscheduling");
        body.extend_from_slice(&bytes[25..bytes.len() - 32]);
        body.extend_from_slice(&Sha256::digest(&body));
        assert!(matches!(
            Model::from_bytes(&body),
            Err(ModelError::Invalid {
                field: "class name",
                ..
            })
        ));
    }

    /// Replays `fuzz/regressions/triage_model/` as the fuzz target does (as is, and with its
    /// checksum appended), so a bug the fuzzer found fails `cargo test` again.
    #[test]
    fn fuzz_regression_inputs_round_trip() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fuzz/regressions/triage_model"
        );
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            let mut sealed = data.clone();
            sealed.extend_from_slice(&Sha256::digest(&data));
            for bytes in [data, sealed] {
                if let Ok(model) = Model::from_bytes(&bytes) {
                    assert_eq!(model.to_bytes(), bytes);
                }
            }
            seen += 1;
        }
        assert!(seen > 0, "no regression inputs in {dir}");
    }

    #[test]
    fn probabilities_sum_to_one() {
        let m = tiny();
        let p = m.probabilities(&vec![(3, 0.5), (200, 0.5), (255, 0.7)]);
        assert_eq!(p.len(), 3);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // Buckets beyond the table are ignored, not a panic.
        let q = m.probabilities(&vec![(u32::MAX, 1.0)]);
        assert!((q.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

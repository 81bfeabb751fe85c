//! Self-contained inclusion proofs: a JSON document that anyone holding the log's verifier key
//! can check offline (`perimeter audit check-proof`).
//!
//! ```json
//! { "format": "perimeter-audit-inclusion/1", "leaf_index": 5, "tree_size": 13,
//!   "leaf_hash": "<hex>", "audit_path": ["<hex>", ...], "root": "<hex>",
//!   "checkpoint": "<signed checkpoint note>", "verifier_key": "<name>+<id>+<key>",
//!   "record": { "seq": 5, "prev_hash": "<hex>", "at_millis": 0, "event": { ... } } }
//! ```
//!
//! Checking binds every number to a signature: the tree size and root must be the signed
//! checkpoint's, the leaf hash must be the record's (when the record is included), and the
//! path must lead from the leaf at its index to that root (RFC 9162 section 2.1.3.2).

use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointError, CheckpointKey, SignedCheckpoint};
use crate::proof::{ProofError, verify_inclusion};
use crate::record::{AuditRecord, Hash32, leaf_hash};

/// The format tag of [`InclusionBundle`].
pub const BUNDLE_FORMAT: &str = "perimeter-audit-inclusion/1";

/// The record a proof is about, so a checker can recompute its leaf hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundledRecord {
    /// Position in the trail.
    pub seq: u64,
    /// Previous leaf hash, hex.
    pub prev_hash: String,
    /// Append time.
    pub at_millis: i64,
    /// The event's canonical bytes, as text (they are UTF-8 JSON).
    pub event: String,
}

/// An inclusion proof with everything needed to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionBundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The leaf's index (the record's seq).
    pub leaf_index: u64,
    /// The tree size the proof is for (the checkpoint's).
    pub tree_size: u64,
    /// The leaf hash, hex.
    pub leaf_hash: String,
    /// The audit path, leaf to root, hex.
    pub audit_path: Vec<String>,
    /// The root, hex.
    pub root: String,
    /// The signed checkpoint note for `tree_size`.
    pub checkpoint: String,
    /// The verifier key the checkpoint is signed with (for convenience; check it against the
    /// published key).
    pub verifier_key: String,
    /// The record itself, when included.
    pub record: Option<BundledRecord>,
}

/// Why a bundle does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not a bundle of a known format, or a field is malformed.
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    /// The checkpoint does not verify.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The bundle's size or root differ from the signed checkpoint's.
    #[error("proof's {0} differs from the signed checkpoint's")]
    NotSigned(&'static str),
    /// The record does not hash to the leaf hash or is not at the leaf index.
    #[error("the included record does not match the leaf hash or index")]
    RecordMismatch,
    /// The path does not verify.
    #[error("inclusion proof does not verify: {0}")]
    Proof(#[from] ProofError),
}

fn h32(s: &str) -> Result<Hash32, BundleError> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(BundleError::Malformed("hash is not 64 hex digits"))
}

impl InclusionBundle {
    /// Assembles a bundle.
    pub fn new(
        record: &AuditRecord,
        path: &[Hash32],
        checkpoint: &SignedCheckpoint,
        key: &CheckpointKey,
    ) -> Self {
        Self {
            format: BUNDLE_FORMAT.into(),
            leaf_index: record.seq,
            tree_size: checkpoint.checkpoint.size,
            leaf_hash: hex::encode(record.leaf_hash),
            audit_path: path.iter().map(hex::encode).collect(),
            root: hex::encode(checkpoint.checkpoint.root),
            checkpoint: checkpoint.text().to_owned(),
            verifier_key: key.to_vkey(),
            record: Some(BundledRecord {
                seq: record.seq,
                prev_hash: hex::encode(record.prev_hash),
                at_millis: record.at_millis,
                event: String::from_utf8_lossy(&record.event).into_owned(),
            }),
        }
    }

    /// Checks the bundle against `key` (the published verifier key; pass `None` to use the
    /// key embedded in the bundle, which proves only internal consistency). Returns the key
    /// that was used.
    pub fn check(&self, key: Option<&CheckpointKey>) -> Result<CheckpointKey, BundleError> {
        if self.format != BUNDLE_FORMAT {
            return Err(BundleError::Malformed("unknown format"));
        }
        let key = match key {
            Some(k) => k.clone(),
            None => CheckpointKey::from_vkey(&self.verifier_key)?,
        };
        let cp = SignedCheckpoint::parse(&self.checkpoint)?;
        cp.verify(&key)?;
        if cp.checkpoint.origin != key.name() {
            return Err(CheckpointError::WrongOrigin {
                got: cp.checkpoint.origin.clone(),
                expected: key.name().to_owned(),
            }
            .into());
        }
        if cp.checkpoint.size != self.tree_size {
            return Err(BundleError::NotSigned("tree size"));
        }
        let root = h32(&self.root)?;
        if cp.checkpoint.root != root {
            return Err(BundleError::NotSigned("root"));
        }
        let leaf = h32(&self.leaf_hash)?;
        if let Some(r) = &self.record {
            let prev = h32(&r.prev_hash)?;
            if r.seq != self.leaf_index
                || leaf_hash(r.seq, &prev, r.at_millis, r.event.as_bytes()) != leaf
            {
                return Err(BundleError::RecordMismatch);
            }
        }
        let path = self
            .audit_path
            .iter()
            .map(|s| h32(s))
            .collect::<Result<Vec<_>, _>>()?;
        verify_inclusion(self.leaf_index, self.tree_size, &leaf, &path, &root)?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::proof::{MemoryTree, inclusion_proof};
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    const ORIGIN: &str = "perimeter.test/audit";

    fn setup(n: u64, index: u64) -> (InclusionBundle, CheckpointKey) {
        let sk = SigningKey::from_bytes(&[4; 32]);
        let key = CheckpointKey::new(ORIGIN, sk.verifying_key()).unwrap();
        let mut recs: Vec<AuditRecord> = Vec::new();
        let mut tree = MemoryTree::new();
        for i in 0..n {
            let prev = recs.last().map(|r| (r.seq, r.leaf_hash));
            let r = AuditRecord::next(prev, i as i64, format!("{{\"i\":{i}}}").into_bytes());
            tree.push(r.leaf_hash);
            recs.push(r);
        }
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: n,
            root: tree.root(),
            at_millis: 1,
        }
        .sign(ORIGIN, &sk)
        .unwrap();
        let path = inclusion_proof(&tree, index, n).unwrap();
        (
            InclusionBundle::new(&recs[index as usize], &path, &cp, &key),
            key,
        )
    }

    #[test]
    fn a_bundle_round_trips_through_json_and_checks() {
        let (b, key) = setup(13, 6);
        let json = serde_json::to_string_pretty(&b).unwrap();
        let back: InclusionBundle = serde_json::from_str(&json).unwrap();
        back.check(Some(&key)).unwrap();
        back.check(None).unwrap();
    }

    #[test]
    fn forged_bundles_fail() {
        let (b, key) = setup(13, 6);
        let other =
            CheckpointKey::new(ORIGIN, SigningKey::from_bytes(&[5; 32]).verifying_key()).unwrap();
        assert!(b.check(Some(&other)).is_err());
        let mut x = b.clone();
        x.tree_size = 14;
        assert_eq!(
            x.check(Some(&key)),
            Err(BundleError::NotSigned("tree size"))
        );
        let mut x = b.clone();
        x.audit_path.pop();
        assert!(x.check(Some(&key)).is_err());
        let mut x = b.clone();
        x.audit_path.clear();
        assert!(x.check(Some(&key)).is_err());
        let mut x = b.clone();
        x.audit_path.swap(0, 1);
        assert!(x.check(Some(&key)).is_err());
        let mut x = b.clone();
        x.record.as_mut().unwrap().event = "{\"i\":7}".into();
        assert_eq!(x.check(Some(&key)), Err(BundleError::RecordMismatch));
        let mut x = b.clone();
        x.leaf_index = 7;
        assert!(x.check(Some(&key)).is_err());
        x.record = None;
        assert!(x.check(Some(&key)).is_err());
        let mut x = b;
        x.format = "other".into();
        assert!(x.check(Some(&key)).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any single-bit change of a path element, the leaf hash, the root, the index or the
        /// size is rejected.
        #[test]
        fn every_single_bit_flip_is_rejected(
            n in 1u64..200, idx in any::<u64>(), which in 0usize..5, bit in 0u32..256, pick in any::<usize>(),
        ) {
            let index = idx % n;
            let (b, key) = setup(n, index);
            prop_assert!(b.check(Some(&key)).is_ok());
            let mut x = b.clone();
            x.record = None;
            let flip_hex = |s: &str| {
                let mut v = hex::decode(s).unwrap();
                v[(bit / 8) as usize] ^= 1 << (bit % 8);
                hex::encode(v)
            };
            match which {
                0 if !x.audit_path.is_empty() => {
                    let i = pick % x.audit_path.len();
                    x.audit_path[i] = flip_hex(&x.audit_path[i]);
                }
                0 | 1 => x.leaf_hash = flip_hex(&x.leaf_hash),
                2 => x.root = flip_hex(&x.root),
                3 => x.leaf_index ^= 1 << (bit % 64),
                _ => x.tree_size ^= 1 << (bit % 64),
            }
            prop_assert!(x.check(Some(&key)).is_err());
        }
    }
}

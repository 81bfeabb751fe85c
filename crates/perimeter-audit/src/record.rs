//! Records: events chained by hash and numbered, the leaves of an RFC 6962 Merkle tree.
//!
//! ```text
//! leaf_input = seq (8 bytes, big-endian) || prev_hash (32) || at_millis (8, big-endian) || event bytes
//! leaf_hash  = SHA-256(0x00 || leaf_input)          (RFC 6962 section 2.1 leaf hash)
//! prev_hash  = leaf_hash of record seq-1, or 32 zero bytes for seq 0
//! ```

use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash32 = [u8; 32];

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: Hash32 = [0u8; 32];

/// One appended record, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the trail, from 0, without gaps.
    pub seq: u64,
    /// The leaf hash of the previous record ([`GENESIS_HASH`] for the first).
    pub prev_hash: Hash32,
    /// When the record was appended (milliseconds since the Unix epoch).
    pub at_millis: i64,
    /// The event's canonical bytes.
    pub event: Vec<u8>,
    /// This record's RFC 6962 leaf hash.
    pub leaf_hash: Hash32,
}

/// A stored record whose hash does not match its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The stored leaf hash is not the hash of the stored fields.
    #[error("record {seq}: stored leaf hash does not match its content")]
    LeafHashMismatch {
        /// The record.
        seq: u64,
    },
}

impl AuditRecord {
    /// The record that follows `prev` (or the first record, when `prev` is `None`).
    pub fn next(prev: Option<(u64, Hash32)>, at_millis: i64, event: Vec<u8>) -> Self {
        let (seq, prev_hash) = match prev {
            Some((seq, hash)) => (seq.saturating_add(1), hash),
            None => (0, GENESIS_HASH),
        };
        let leaf_hash = leaf_hash(seq, &prev_hash, at_millis, &event);
        Self {
            seq,
            prev_hash,
            at_millis,
            event,
            leaf_hash,
        }
    }

    /// Recomputes the leaf hash from the fields and checks it against the stored one.
    pub fn check(&self) -> Result<(), RecordError> {
        if leaf_hash(self.seq, &self.prev_hash, self.at_millis, &self.event) == self.leaf_hash {
            Ok(())
        } else {
            Err(RecordError::LeafHashMismatch { seq: self.seq })
        }
    }
}

/// The RFC 6962 leaf hash of a record's fields.
pub fn leaf_hash(seq: u64, prev_hash: &Hash32, at_millis: i64, event: &[u8]) -> Hash32 {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(seq.to_be_bytes());
    h.update(prev_hash);
    h.update(at_millis.to_be_bytes());
    h.update(event);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_chain_and_detect_changes() {
        let a = AuditRecord::next(None, 10, b"{\"a\":1}".to_vec());
        assert_eq!(a.seq, 0);
        assert_eq!(a.prev_hash, GENESIS_HASH);
        let b = AuditRecord::next(Some((a.seq, a.leaf_hash)), 11, b"{\"b\":2}".to_vec());
        assert_eq!(b.seq, 1);
        assert_eq!(b.prev_hash, a.leaf_hash);
        a.check().unwrap();
        b.check().unwrap();
        let mut tampered = b.clone();
        tampered.event[2] = b'c';
        assert_eq!(
            tampered.check(),
            Err(RecordError::LeafHashMismatch { seq: 1 })
        );
        let mut moved = b;
        moved.at_millis += 1;
        assert!(moved.check().is_err());
    }
}

//! The RFC 6962 Merkle tree over audit records (section 2.1: `MTH`, leaf prefix 0x00, node
//! prefix 0x01).
//!
//! [`Frontier`] is the compact range of a growing tree: the roots of its perfect subtrees, one per
//! set bit of the tree size. Appending a leaf costs O(1) amortised hashes, yields the interior
//! nodes that the append completed (stored by the storage crate so inclusion proofs need only
//! O(log n) node reads), and gives the root at any size.

use sha2::{Digest, Sha256};

use crate::record::Hash32;

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256()` of nothing.
pub fn empty_root() -> Hash32 {
    Sha256::digest([]).into()
}

/// A node of a perfect subtree: level 0 is a leaf, level `l` covers leaves
/// `index * 2^l .. (index + 1) * 2^l`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Height above the leaves.
    pub level: u32,
    /// Position among the nodes of that level.
    pub index: u64,
    /// The node's hash.
    pub hash: Hash32,
}

/// Bytes that are not a serialised [`Frontier`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored Merkle frontier is malformed")]
pub struct FrontierError;

/// The right edge of a growing RFC 6962 tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    /// Roots of the perfect subtrees, largest (leftmost) first.
    peaks: Vec<Hash32>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many leaves the tree has.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; returns the interior nodes (level ≥ 1) this append completed.
    pub fn push(&mut self, leaf_hash: Hash32) -> Vec<Node> {
        let mut completed = Vec::new();
        self.push_into(leaf_hash, &mut completed);
        completed
    }

    /// Appends a leaf hash, adding the interior nodes (level ≥ 1) this append completed to
    /// `completed` (no allocation of its own: for verifying millions of records).
    pub fn push_into(&mut self, leaf_hash: Hash32, completed: &mut Vec<Node>) {
        let mut hash = leaf_hash;
        let mut level = 0u32;
        let index = self.size;
        while (index >> level) & 1 == 1 {
            let Some(left) = self.peaks.pop() else {
                break;
            };
            hash = node_hash(&left, &hash);
            level += 1;
            completed.push(Node {
                level,
                index: index >> level,
                hash,
            });
        }
        self.peaks.push(hash);
        self.size = self.size.saturating_add(1);
    }

    /// The tree head `MTH` of all leaves pushed so far.
    pub fn root(&self) -> Hash32 {
        let mut iter = self.peaks.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// The perfect-subtree roots, largest first (one per set bit of the size).
    pub fn peaks(&self) -> &[Hash32] {
        &self.peaks
    }

    /// Serialises as `size (8 bytes BE) || peaks (32 bytes each)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.peaks.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for p in &self.peaks {
            out.extend_from_slice(p);
        }
        out
    }

    /// Parses [`Frontier::to_bytes`] output, checking that the peak count matches the size.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FrontierError> {
        let (size_bytes, rest) = bytes.split_first_chunk::<8>().ok_or(FrontierError)?;
        let size = u64::from_be_bytes(*size_bytes);
        if rest.len() % 32 != 0 || rest.len() / 32 != size.count_ones() as usize {
            return Err(FrontierError);
        }
        let peaks = rest
            .chunks_exact(32)
            .map(|c| <Hash32>::try_from(c).map_err(|_| FrontierError))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { size, peaks })
    }
}

/// `MTH` computed directly from the definition (RFC 6962 section 2.1), for tests and for
/// verifying small ranges.
pub fn root_of(leaves: &[Hash32]) -> Hash32 {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

/// The largest power of two strictly less than `n` (for `n ≥ 2`).
pub fn largest_power_of_two_below(n: u64) -> u64 {
    if n < 2 {
        return 0;
    }
    1u64 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Hash32 {
        let mut h = Sha256::new();
        h.update([0x00]);
        h.update(i.to_be_bytes());
        h.finalize().into()
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Frontier::new().root(), empty_root());
    }

    #[test]
    fn frontier_root_matches_the_definition_at_every_size() {
        let leaves: Vec<Hash32> = (0..70).map(leaf).collect();
        let mut f = Frontier::new();
        for (i, l) in leaves.iter().enumerate() {
            f.push(*l);
            assert_eq!(f.root(), root_of(&leaves[..=i]), "size {}", i + 1);
            assert_eq!(f.peaks().len(), (i + 1).count_ones() as usize);
        }
    }

    #[test]
    fn completed_nodes_are_the_perfect_subtrees() {
        let leaves: Vec<Hash32> = (0..16).map(leaf).collect();
        let mut f = Frontier::new();
        let mut nodes = Vec::new();
        for l in &leaves {
            nodes.extend(f.push(*l));
        }
        // 8 + 4 + 2 + 1 interior nodes for 16 leaves.
        assert_eq!(nodes.len(), 15);
        for n in nodes {
            let width = 1usize << n.level;
            let start = n.index as usize * width;
            assert_eq!(n.hash, root_of(&leaves[start..start + width]));
        }
    }

    #[test]
    fn frontier_bytes_round_trip_and_reject_garbage() {
        let mut f = Frontier::new();
        for i in 0..13 {
            f.push(leaf(i));
        }
        assert_eq!(Frontier::from_bytes(&f.to_bytes()).unwrap(), f);
        assert!(Frontier::from_bytes(&[1, 2, 3]).is_err());
        let mut bad = f.to_bytes();
        bad.truncate(bad.len() - 32);
        assert!(Frontier::from_bytes(&bad).is_err());
    }

    #[test]
    fn powers_of_two() {
        assert_eq!(largest_power_of_two_below(2), 1);
        assert_eq!(largest_power_of_two_below(3), 2);
        assert_eq!(largest_power_of_two_below(8), 4);
        assert_eq!(largest_power_of_two_below(9), 8);
    }
}

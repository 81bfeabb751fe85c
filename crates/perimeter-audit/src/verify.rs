//! Verification of a whole trail: the hash chain, every leaf hash, sequence continuity, the tree
//! against every signed checkpoint, the stored interior nodes, the stored head, and consistency
//! proofs between successive checkpoints.
//!
//! [`TrailVerifier`] is a streaming state machine without I/O: the caller feeds records in
//! `seq` order (from any source, synchronous or not) and compares the interior nodes each
//! record completes with the stored ones ([`check_stored_node`]). [`verify_trail`] drives it
//! over the synchronous [`RecordSource`] / [`NodeSource`] traits. Verification stops at the
//! first problem and names the record (or node, or checkpoint) and what is wrong with it.

use std::collections::BTreeMap;

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointKey, SignedCheckpoint};
use crate::event::AuditEvent;
use crate::merkle::{Frontier, Node, empty_root};
use crate::proof::{BuildError, NodeId, NodeSource, consistency_proof, verify_consistency};
use crate::query::IndexColumns;
use crate::record::{AuditRecord, GENESIS_HASH, Hash32};

/// A record as a store holds it: the hashed record and the query columns kept beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The hashed record.
    pub record: AuditRecord,
    /// The query columns (outside the hash; compared with the event by the verifier).
    pub index: IndexColumns,
}

/// Where a checkpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointOrigin {
    /// The database's checkpoint table.
    Database,
    /// The append-only checkpoint file outside the database.
    File,
}

impl std::fmt::Display for CheckpointOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckpointOrigin::Database => "database",
            CheckpointOrigin::File => "checkpoint file",
        })
    }
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A record is missing, duplicated or out of order.
    #[error("record {expected}: missing (next record found has seq {found})")]
    SeqGap {
        /// The seq that should come next.
        expected: u64,
        /// The seq found instead.
        found: u64,
    },
    /// A record's `prev_hash` is not the previous record's leaf hash.
    #[error("record {seq}: prev_hash does not match the leaf hash of record {}", .seq.saturating_sub(1))]
    BrokenChain {
        /// The record.
        seq: u64,
    },
    /// A record's stored leaf hash is not the hash of its fields.
    #[error("record {seq}: content does not match its stored leaf hash (altered)")]
    LeafHash {
        /// The record.
        seq: u64,
    },
    /// A record's event bytes are not an audit event.
    #[error("record {seq}: event bytes are not a valid audit event")]
    BadEvent {
        /// The record.
        seq: u64,
    },
    /// A record was inserted: it and the record after it both follow the same record (the
    /// rows after it were renumbered to make room).
    #[error(
        "record {seq}: inserted (records {seq} and {} both follow record {}; the rows from {seq} on were renumbered)",
        .seq.saturating_add(1), .seq.saturating_sub(1)
    )]
    Inserted {
        /// The inserted record.
        seq: u64,
    },
    /// A query column stored beside a record disagrees with its hashed event.
    #[error(
        "record {seq}: index column {column} does not match the hashed event (altered: the record \
         would be missing from, or wrongly included in, audit queries such as a patient's \
         accounting of disclosures)"
    )]
    IndexColumn {
        /// The record.
        seq: u64,
        /// The column (`patient_id`, `actor_id`, `action`).
        column: &'static str,
    },
    /// The records do not hash to the root of a signed checkpoint.
    #[error(
        "records {from}..{size}: tree root differs from the one signed at checkpoint size {size} \
         ({origin}); a record in this range was altered, inserted or removed and re-hashed"
    )]
    CheckpointRoot {
        /// The checkpoint's size.
        size: u64,
        /// The previous checkpoint's size (records before it matched a signed root).
        from: u64,
        /// Where the checkpoint was read.
        origin: CheckpointOrigin,
    },
    /// A signed checkpoint covers more records than the trail holds.
    #[error(
        "record {records}: missing; the trail ends after {records} records but a checkpoint \
         signed {size} (truncated)"
    )]
    Truncated {
        /// Records present.
        records: u64,
        /// Size signed.
        size: u64,
    },
    /// A checkpoint's signature or format is bad.
    #[error("checkpoint #{position} in the {origin}: {error}")]
    Checkpoint {
        /// Where.
        origin: CheckpointOrigin,
        /// Its position in that source (from 0).
        position: usize,
        /// What is wrong.
        error: CheckpointError,
    },
    /// Two validly signed checkpoints disagree about the same size (a fork).
    #[error("two signed checkpoints for size {size} have different roots")]
    Conflict {
        /// The size.
        size: u64,
    },
    /// A stored interior node differs from the recomputed one.
    #[error("stored tree node level {level} index {index} differs from the recomputed hash")]
    Node {
        /// Level.
        level: u32,
        /// Index.
        index: u64,
    },
    /// A stored interior node is missing.
    #[error("stored tree node level {level} index {index} is missing")]
    MissingNode {
        /// Level.
        level: u32,
        /// Index.
        index: u64,
    },
    /// The consistency proof between two checkpoints, built from stored nodes, fails.
    #[error("consistency proof from checkpoint size {first} to {second} fails")]
    Consistency {
        /// Older size.
        first: u64,
        /// Newer size.
        second: u64,
    },
    /// The stored head (size, last leaf hash, frontier) disagrees with the records.
    #[error("stored audit head disagrees with the records: {0}")]
    Head(&'static str),
    /// A checkpoint the database holds is missing from the checkpoint file (and is not the
    /// newest one within its grace period).
    #[error(
        "checkpoint at size {size} is in the database but not in the checkpoint file: the file \
         was truncated or edited, or the checkpointer could not write it (see its log); restore \
         the file from a shipped copy"
    )]
    MissingFromFile {
        /// The checkpoint's size.
        size: u64,
    },
    /// A signed checkpoint from the checkpoint file is missing from the database.
    #[error(
        "checkpoint at size {size} is in the {origin} but not in the database: a checkpoint row \
         was deleted, or the database was restored from an older backup"
    )]
    MissingFromDatabase {
        /// The checkpoint's size.
        size: u64,
        /// Where it was found.
        origin: CheckpointOrigin,
    },
    /// Reading from the store failed.
    #[error("reading the trail failed: {0}")]
    Source(String),
}

impl VerifyError {
    /// The first bad record, when the problem is tied to one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            VerifyError::SeqGap { expected, .. } => Some(*expected),
            VerifyError::BrokenChain { seq }
            | VerifyError::LeafHash { seq }
            | VerifyError::BadEvent { seq }
            | VerifyError::Inserted { seq }
            | VerifyError::IndexColumn { seq, .. } => Some(*seq),
            VerifyError::Truncated { records, .. } => Some(*records),
            _ => None,
        }
    }
}

/// The verified, merged checkpoints of a trail.
#[derive(Debug, Clone, Default)]
pub struct CheckpointSet {
    /// By size, each with where it was first seen.
    by_size: BTreeMap<u64, (Checkpoint, CheckpointOrigin)>,
    /// Sizes found in the file but not in the database (a crash between the two writes, or a
    /// deletion from the database).
    pub missing_from_database: Vec<u64>,
    /// Sizes found in the database but not in the file.
    pub missing_from_file: Vec<u64>,
}

impl CheckpointSet {
    /// Checks every checkpoint's signature and origin, and merges the two sources; two
    /// different roots for one size are a fork and fail.
    pub fn collect(
        key: &CheckpointKey,
        origin: &str,
        database: &[SignedCheckpoint],
        file: &[SignedCheckpoint],
    ) -> Result<Self, VerifyError> {
        let mut set = Self::default();
        let mut db_sizes = Vec::new();
        let mut file_sizes = Vec::new();
        for (src, list, sizes) in [
            (CheckpointOrigin::Database, database, &mut db_sizes),
            (CheckpointOrigin::File, file, &mut file_sizes),
        ] {
            for (position, note) in list.iter().enumerate() {
                let wrap = |error| VerifyError::Checkpoint {
                    origin: src,
                    position,
                    error,
                };
                note.verify(key).map_err(wrap)?;
                if note.checkpoint.origin != origin {
                    return Err(wrap(CheckpointError::WrongOrigin {
                        got: note.checkpoint.origin.clone(),
                        expected: origin.to_owned(),
                    }));
                }
                let cp = note.checkpoint.clone();
                sizes.push(cp.size);
                match set.by_size.get(&cp.size) {
                    Some((existing, _)) if existing.root != cp.root => {
                        return Err(VerifyError::Conflict { size: cp.size });
                    }
                    Some(_) => {}
                    None => {
                        set.by_size.insert(cp.size, (cp, src));
                    }
                }
            }
        }
        set.missing_from_database = file_sizes
            .iter()
            .filter(|s| !db_sizes.contains(s))
            .copied()
            .collect();
        set.missing_from_file = db_sizes
            .iter()
            .filter(|s| !file_sizes.contains(s))
            .copied()
            .collect();
        Ok(set)
    }

    /// Number of distinct checkpoints.
    pub fn len(&self) -> usize {
        self.by_size.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_size.is_empty()
    }

    /// The checkpoints in size order.
    pub fn iter(&self) -> impl Iterator<Item = &Checkpoint> {
        self.by_size.values().map(|(c, _)| c)
    }

    /// The largest checkpoint.
    pub fn latest(&self) -> Option<&Checkpoint> {
        self.by_size.values().next_back().map(|(c, _)| c)
    }

    /// The smallest checkpoint covering `seq` (size > seq).
    pub fn covering(&self, seq: u64) -> Option<&Checkpoint> {
        self.by_size
            .range(seq.saturating_add(1)..)
            .next()
            .map(|(_, (c, _))| c)
    }
}

/// How the database's checkpoints are compared with the checkpointer's own log file.
///
/// The checkpointer writes each checkpoint to the database first and then appends it to the
/// file, and on every tick copies to the file any database checkpoint the file lacks (one that
/// reached the database but not the file, or one another process wrote). So, when the file is
/// there to compare:
///
/// - every checkpoint of the file must be in the database (else a row was deleted);
/// - every checkpoint of the database must be in the file, except the newest one when it was
///   signed less than `grace_millis` before `now_millis` (one checkpoint period: the
///   checkpointer has not reached its next tick yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriftRule {
    /// The verifier's time (milliseconds since the Unix epoch).
    pub now_millis: i64,
    /// How long the newest database checkpoint may be missing from the file.
    pub grace_millis: i64,
}

/// Compares the database's checkpoints with those of the checkpoint file (`log`) and any other
/// copies (`extra`). Every note must already have been checked by [`CheckpointSet::collect`].
/// Returns the size of the newest database checkpoint tolerated as not yet in the file.
/// Without `rule` (no checkpoint file to compare) only `extra` is checked against the database.
pub fn check_drift(
    database: &[SignedCheckpoint],
    log: &[SignedCheckpoint],
    extra: &[SignedCheckpoint],
    rule: Option<DriftRule>,
) -> Result<Option<u64>, VerifyError> {
    let in_db = |size: u64| database.iter().any(|c| c.checkpoint.size == size);
    let mut outside: Vec<u64> = log
        .iter()
        .chain(extra.iter())
        .map(|c| c.checkpoint.size)
        .filter(|s| !in_db(*s))
        .collect();
    outside.sort_unstable();
    if let Some(size) = outside.first() {
        return Err(VerifyError::MissingFromDatabase {
            size: *size,
            origin: CheckpointOrigin::File,
        });
    }
    let Some(rule) = rule else {
        return Ok(None);
    };
    let newest = database.iter().map(|c| c.checkpoint.size).max();
    let mut missing: Vec<&Checkpoint> = database
        .iter()
        .map(|c| &c.checkpoint)
        .filter(|c| !log.iter().any(|l| l.checkpoint.size == c.size))
        .collect();
    missing.sort_by_key(|c| c.size);
    let mut pending = None;
    for c in missing {
        let young = rule.now_millis.saturating_sub(c.at_millis) < rule.grace_millis;
        if Some(c.size) == newest && young {
            pending = Some(c.size);
        } else {
            return Err(VerifyError::MissingFromFile { size: c.size });
        }
    }
    Ok(pending)
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records checked.
    pub records: u64,
    /// Signed checkpoints whose roots were recomputed and matched.
    pub checkpoints: usize,
    /// Root of the whole trail.
    pub root: Hash32,
}

/// The stored head row, as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadView {
    /// Records appended.
    pub size: u64,
    /// Leaf hash of the last record.
    pub last_leaf_hash: Hash32,
    /// Serialised [`Frontier`].
    pub frontier: Vec<u8>,
}

/// Streaming trail verifier; see the module docs.
#[derive(Debug, Clone)]
pub struct TrailVerifier {
    next_seq: u64,
    prev: Hash32,
    /// The `prev_hash` of the last record (to tell an insertion from a broken chain).
    prev_prev: Hash32,
    frontier: Frontier,
    checkpoints: Vec<(Checkpoint, CheckpointOrigin)>,
    next_cp: usize,
    last_matched: u64,
    check_events: bool,
}

impl TrailVerifier {
    /// A verifier that will check the records against `checkpoints`.
    pub fn new(checkpoints: &CheckpointSet) -> Result<Self, VerifyError> {
        let mut v = Self {
            next_seq: 0,
            prev: GENESIS_HASH,
            prev_prev: GENESIS_HASH,
            frontier: Frontier::new(),
            checkpoints: checkpoints.by_size.values().cloned().collect(),
            next_cp: 0,
            last_matched: 0,
            check_events: true,
        };
        v.match_checkpoints()?;
        Ok(v)
    }

    /// Whether to also check that every event parses (on by default).
    pub fn check_events(mut self, yes: bool) -> Self {
        self.check_events = yes;
        self
    }

    /// Records verified so far.
    pub fn records(&self) -> u64 {
        self.next_seq
    }

    fn match_checkpoints(&mut self) -> Result<(), VerifyError> {
        let size = self.frontier.size();
        while let Some((cp, origin)) = self.checkpoints.get(self.next_cp) {
            if cp.size != size {
                break;
            }
            let root = if size == 0 {
                empty_root()
            } else {
                self.frontier.root()
            };
            if root != cp.root {
                return Err(VerifyError::CheckpointRoot {
                    size,
                    from: self.last_matched,
                    origin: *origin,
                });
            }
            self.last_matched = size;
            self.next_cp += 1;
        }
        Ok(())
    }

    /// Checks the next record; returns the interior nodes it completes, to be compared with the
    /// stored ones.
    pub fn push(&mut self, rec: &AuditRecord) -> Result<Vec<Node>, VerifyError> {
        self.check_record(rec)?;
        if self.check_events && AuditEvent::from_canonical_bytes(&rec.event).is_err() {
            return Err(VerifyError::BadEvent { seq: rec.seq });
        }
        self.accept(rec)
    }

    /// Checks the next stored record, including that its query columns match its event;
    /// returns the interior nodes it completes.
    pub fn push_stored(&mut self, stored: &StoredRecord) -> Result<Vec<Node>, VerifyError> {
        let mut completed = Vec::new();
        self.push_checked(stored, local_check(stored), &mut completed)?;
        Ok(completed)
    }

    /// Checks the next page of stored records, as [`TrailVerifier::push_stored`] does one by
    /// one, with the checks that depend on a record alone (its leaf hash, its event, its query
    /// columns) spread over up to `threads` threads; returns the interior nodes the page
    /// completes, in order. The first problem reported is the one `push_stored` would report.
    pub fn push_stored_page(
        &mut self,
        page: &[StoredRecord],
        threads: usize,
    ) -> Result<Vec<Node>, VerifyError> {
        let locals = local_checks(page, threads);
        let mut completed = Vec::with_capacity(page.len().saturating_add(8));
        for (stored, local) in page.iter().zip(locals) {
            self.push_checked(stored, local, &mut completed)?;
        }
        Ok(completed)
    }

    fn push_checked(
        &mut self,
        stored: &StoredRecord,
        local: Local,
        completed: &mut Vec<Node>,
    ) -> Result<(), VerifyError> {
        let rec = &stored.record;
        self.check_order(rec)?;
        let seq = rec.seq;
        match local {
            Local::Ok => {}
            Local::LeafHash => return Err(VerifyError::LeafHash { seq }),
            Local::BadEvent => return Err(VerifyError::BadEvent { seq }),
            Local::IndexColumn(column) => return Err(VerifyError::IndexColumn { seq, column }),
        }
        self.accept_into(rec, completed)
    }

    /// Sequence continuity and the hash chain: what depends on the previous record.
    fn check_order(&self, rec: &AuditRecord) -> Result<(), VerifyError> {
        if rec.seq != self.next_seq {
            return Err(VerifyError::SeqGap {
                expected: self.next_seq,
                found: rec.seq,
            });
        }
        if rec.prev_hash != self.prev {
            // Two records claiming the same predecessor: the previous one was inserted.
            if self.next_seq > 0 && rec.prev_hash == self.prev_prev {
                return Err(VerifyError::Inserted {
                    seq: rec.seq.saturating_sub(1),
                });
            }
            return Err(VerifyError::BrokenChain { seq: rec.seq });
        }
        Ok(())
    }

    fn check_record(&self, rec: &AuditRecord) -> Result<(), VerifyError> {
        self.check_order(rec)?;
        if rec.check().is_err() {
            return Err(VerifyError::LeafHash { seq: rec.seq });
        }
        Ok(())
    }

    fn accept(&mut self, rec: &AuditRecord) -> Result<Vec<Node>, VerifyError> {
        let mut completed = Vec::new();
        self.accept_into(rec, &mut completed)?;
        Ok(completed)
    }

    fn accept_into(
        &mut self,
        rec: &AuditRecord,
        completed: &mut Vec<Node>,
    ) -> Result<(), VerifyError> {
        self.frontier.push_into(rec.leaf_hash, completed);
        self.prev_prev = rec.prev_hash;
        self.prev = rec.leaf_hash;
        self.next_seq += 1;
        self.match_checkpoints()
    }

    /// Ends the stream: every checkpoint must have been reached, and the stored head (if given)
    /// must describe exactly the records seen.
    pub fn finish(&self, head: Option<&HeadView>) -> Result<Summary, VerifyError> {
        if let Some((cp, _)) = self.checkpoints.get(self.next_cp) {
            return Err(VerifyError::Truncated {
                records: self.next_seq,
                size: cp.size,
            });
        }
        if let Some(head) = head {
            if head.size != self.next_seq {
                return Err(if head.size > self.next_seq {
                    VerifyError::Truncated {
                        records: self.next_seq,
                        size: head.size,
                    }
                } else {
                    VerifyError::Head("more records than the head's size")
                });
            }
            if self.next_seq > 0 && head.last_leaf_hash != self.prev {
                return Err(VerifyError::Head("last leaf hash"));
            }
            if head.frontier != self.frontier.to_bytes() {
                return Err(VerifyError::Head("Merkle frontier"));
            }
        }
        Ok(Summary {
            records: self.next_seq,
            checkpoints: self.next_cp,
            root: self.frontier.root(),
        })
    }
}

/// The outcome of the checks of a stored record that depend on the record alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    Ok,
    LeafHash,
    BadEvent,
    IndexColumn(&'static str),
}

/// A record's own checks, in the order [`TrailVerifier::push_stored`] reports them: the leaf
/// hash, then the event, then its query columns.
fn local_check(stored: &StoredRecord) -> Local {
    let rec = &stored.record;
    if rec.check().is_err() {
        return Local::LeafHash;
    }
    let Ok(event) = AuditEvent::from_canonical_bytes(&rec.event) else {
        return Local::BadEvent;
    };
    match stored.index.first_mismatch(&event) {
        Some(column) => Local::IndexColumn(column),
        None => Local::Ok,
    }
}

/// Pages smaller than this are checked on the calling thread.
const PARALLEL_MIN: usize = 512;

/// [`local_check`] of every record of a page, on up to `threads` threads (the calling one
/// included); a thread that cannot be started leaves its share to the calling thread.
fn local_checks(page: &[StoredRecord], threads: usize) -> Vec<Local> {
    let threads = threads.clamp(1, 64);
    if threads == 1 || page.len() < PARALLEL_MIN {
        return page.iter().map(local_check).collect();
    }
    let chunk = page.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = page.chunks(chunk);
        let first = chunks.next().unwrap_or(&[]);
        let others: Vec<_> = chunks
            .map(|c| {
                let handle = std::thread::Builder::new()
                    .name("audit-verify".into())
                    .spawn_scoped(scope, move || c.iter().map(local_check).collect::<Vec<_>>())
                    .ok();
                (c, handle)
            })
            .collect();
        let mut out: Vec<Local> = Vec::with_capacity(page.len());
        out.extend(first.iter().map(local_check));
        for (c, handle) in others {
            match handle.map(|h| h.join()) {
                Some(Ok(v)) => out.extend(v),
                _ => out.extend(c.iter().map(local_check)),
            }
        }
        out
    })
}

/// Compares a recomputed interior node with the stored one.
pub fn check_stored_node(node: &Node, stored: Option<Hash32>) -> Result<(), VerifyError> {
    match stored {
        Some(h) if h == node.hash => Ok(()),
        Some(_) => Err(VerifyError::Node {
            level: node.level,
            index: node.index,
        }),
        None => Err(VerifyError::MissingNode {
            level: node.level,
            index: node.index,
        }),
    }
}

/// Builds, from stored nodes, the consistency proof between each pair of successive
/// checkpoints and verifies it against their signed roots.
pub fn check_checkpoint_consistency<S: NodeSource>(
    nodes: &S,
    checkpoints: &CheckpointSet,
) -> Result<usize, VerifyError>
where
    S::Error: std::fmt::Display,
{
    let cps: Vec<&Checkpoint> = checkpoints.iter().filter(|c| c.size > 0).collect();
    let mut checked = 0;
    for pair in cps.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let proof = consistency_proof(nodes, a.size, b.size).map_err(|e| match e {
            BuildError::MissingNode(NodeId { level, index }) => {
                VerifyError::MissingNode { level, index }
            }
            BuildError::Proof(_) => VerifyError::Consistency {
                first: a.size,
                second: b.size,
            },
            BuildError::Source(e) => VerifyError::Source(e.to_string()),
        })?;
        verify_consistency(a.size, b.size, &a.root, &b.root, &proof).map_err(|_| {
            VerifyError::Consistency {
                first: a.size,
                second: b.size,
            }
        })?;
        checked += 1;
    }
    Ok(checked)
}

/// Where the verifier reads records, in `seq` order, a page at a time.
pub trait RecordSource {
    /// The source's error.
    type Error: std::fmt::Display;
    /// Up to `limit` records starting at `from_seq`, ascending; empty at the end.
    fn records(&mut self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>, Self::Error>;
}

/// Verifies a whole trail from synchronous sources: every record, every stored interior node,
/// the head, every checkpoint root, and consistency between successive checkpoints.
pub fn verify_trail<R: RecordSource, S: NodeSource>(
    records: &mut R,
    nodes: &S,
    head: Option<&HeadView>,
    checkpoints: &CheckpointSet,
) -> Result<Summary, VerifyError>
where
    S::Error: std::fmt::Display,
{
    const PAGE: usize = 4096;
    let mut v = TrailVerifier::new(checkpoints)?;
    loop {
        let page = records
            .records(v.records(), PAGE)
            .map_err(|e| VerifyError::Source(e.to_string()))?;
        if page.is_empty() {
            break;
        }
        // Records first, then the nodes they completed: within a page a record's own problem
        // is reported before the tree nodes it disturbs (as the store verifier does).
        let mut completed = Vec::new();
        for rec in &page {
            completed.extend(v.push(rec)?);
        }
        for node in completed {
            let stored = nodes
                .node(NodeId {
                    level: node.level,
                    index: node.index,
                })
                .map_err(|e| VerifyError::Source(e.to_string()))?;
            check_stored_node(&node, stored)?;
        }
    }
    let summary = v.finish(head)?;
    check_checkpoint_consistency(nodes, checkpoints)?;
    Ok(summary)
}

/// A record source over a slice (tests, offline tools).
#[derive(Debug)]
pub struct SliceRecords<'a>(pub &'a [AuditRecord]);

impl RecordSource for SliceRecords<'_> {
    type Error = std::convert::Infallible;

    fn records(&mut self, from_seq: u64, limit: usize) -> Result<Vec<AuditRecord>, Self::Error> {
        // Records are addressed by position, as a store addresses them by seq: gaps in the
        // slice's seqs show up as seq mismatches in the verifier.
        let start = usize::try_from(from_seq).unwrap_or(usize::MAX);
        Ok(self.0.iter().skip(start).take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::event::{Action, Actor, ObjectRef, Outcome};
    use crate::proof::MemoryTree;
    use ed25519_dalek::SigningKey;
    use perimeter_domain::{PatientId, PurposeOfUse};

    const ORIGIN: &str = "perimeter.test/audit";

    fn event(i: i64) -> AuditEvent {
        AuditEvent {
            at_millis: 1_767_225_600_000 + i,
            actor: Actor::System {
                component: "test".into(),
            },
            action: Action::Read,
            object: ObjectRef {
                kind: "patient".into(),
                id: None,
            },
            patient: Some(PatientId::new()),
            categories: vec![],
            purpose: Some(PurposeOfUse::Treatment),
            outcome: Outcome::Success,
            detail: None,
            client_addr: None,
            user_agent: None,
            request_id: None,
        }
    }

    struct Trail {
        records: Vec<AuditRecord>,
        tree: MemoryTree,
        head: HeadView,
    }

    fn build(n: u64) -> Trail {
        let mut records: Vec<AuditRecord> = Vec::new();
        let mut tree = MemoryTree::new();
        let mut frontier = Frontier::new();
        for i in 0..n {
            let prev = records.last().map(|r| (r.seq, r.leaf_hash));
            let ev = event(i as i64);
            let r = AuditRecord::next(prev, ev.at_millis, ev.canonical_bytes());
            tree.push(r.leaf_hash);
            frontier.push(r.leaf_hash);
            records.push(r);
        }
        let head = HeadView {
            size: n,
            last_leaf_hash: records.last().map(|r| r.leaf_hash).unwrap_or(GENESIS_HASH),
            frontier: frontier.to_bytes(),
        };
        Trail {
            records,
            tree,
            head,
        }
    }

    fn key() -> (SigningKey, CheckpointKey) {
        let sk = SigningKey::from_bytes(&[9; 32]);
        let ck = CheckpointKey::new(ORIGIN, sk.verifying_key()).unwrap();
        (sk, ck)
    }

    fn sign_at(records: &[AuditRecord], sizes: &[u64]) -> Vec<SignedCheckpoint> {
        let (sk, _) = key();
        sizes
            .iter()
            .map(|&s| {
                let leaves: Vec<Hash32> =
                    records[..s as usize].iter().map(|r| r.leaf_hash).collect();
                Checkpoint {
                    origin: ORIGIN.into(),
                    size: s,
                    root: crate::merkle::root_of(&leaves),
                    at_millis: s as i64,
                }
                .sign(ORIGIN, &sk)
                .unwrap()
            })
            .collect()
    }

    fn run(t: &Trail, cps: &[SignedCheckpoint]) -> Result<Summary, VerifyError> {
        let (_, ck) = key();
        let set = CheckpointSet::collect(&ck, ORIGIN, cps, cps)?;
        verify_trail(&mut SliceRecords(&t.records), &t.tree, Some(&t.head), &set)
    }

    #[test]
    fn an_untouched_trail_verifies() {
        let t = build(100);
        let cps = sign_at(&t.records, &[0, 1, 7, 64, 99, 100]);
        let s = run(&t, &cps).unwrap();
        assert_eq!(s.records, 100);
        assert_eq!(s.checkpoints, 6);
        assert_eq!(s.root, t.tree.root());
    }

    fn tampered(base: &Trail, f: impl FnOnce(&mut Vec<AuditRecord>)) -> Trail {
        let mut records = base.records.clone();
        f(&mut records);
        Trail {
            records,
            tree: base.tree.clone(),
            head: base.head.clone(),
        }
    }

    #[test]
    fn each_kind_of_tampering_is_caught_at_its_record() {
        let base = build(50);
        let cps = sign_at(&base.records, &[10, 40]);
        let check = |f: fn(&mut Vec<AuditRecord>)| run(&tampered(&base, f), &cps).unwrap_err();

        // Changed field (no re-hash).
        assert_eq!(
            check(|r| r[17].at_millis += 1),
            VerifyError::LeafHash { seq: 17 }
        );
        // Event bytes changed.
        assert_eq!(
            check(|r| r[3].event[5] ^= 1),
            VerifyError::LeafHash { seq: 3 }
        );
        // Deleted row.
        assert_eq!(
            check(|r| {
                r.remove(20);
            }),
            VerifyError::SeqGap {
                expected: 20,
                found: 21
            }
        );
        // Swapped rows.
        assert_eq!(check(|r| r.swap(30, 31)).seq(), Some(30));
        // Inserted row.
        assert_eq!(
            check(|r| {
                let mut extra = r[25].clone();
                extra.at_millis += 5;
                r.insert(26, extra);
            })
            .seq(),
            Some(26)
        );
        // Truncated tail past a checkpoint.
        assert_eq!(
            check(|r| r.truncate(35)),
            VerifyError::Truncated {
                records: 35,
                size: 40
            }
        );
        // Truncated tail after the last checkpoint: the head catches it.
        assert_eq!(check(|r| r.truncate(45)).seq(), Some(45));
        // Broken chain with a recomputed leaf hash.
        let e = check(|r| {
            let x = &mut r[12];
            x.prev_hash = [0; 32];
            x.leaf_hash = crate::record::leaf_hash(x.seq, &x.prev_hash, x.at_millis, &x.event);
        });
        assert_eq!(e, VerifyError::BrokenChain { seq: 12 });
    }

    #[test]
    fn a_rehashed_forgery_is_caught_by_the_signed_checkpoints() {
        let base = build(50);
        let cps = sign_at(&base.records, &[10, 40]);
        // Rebuild the whole trail with one event replaced; everything re-hashed, nodes and head
        // too: only the signed roots can tell.
        let mut forged = build(0);
        for (i, r) in base.records.iter().enumerate() {
            let prev = forged.records.last().map(|r| (r.seq, r.leaf_hash));
            let bytes = if i == 22 {
                event(999).canonical_bytes()
            } else {
                r.event.clone()
            };
            let nr = AuditRecord::next(prev, r.at_millis, bytes);
            forged.tree.push(nr.leaf_hash);
            forged.records.push(nr);
        }
        let mut f = Frontier::new();
        for r in &forged.records {
            f.push(r.leaf_hash);
        }
        forged.head = HeadView {
            size: 50,
            last_leaf_hash: forged.records[49].leaf_hash,
            frontier: f.to_bytes(),
        };
        assert_eq!(
            run(&forged, &cps).unwrap_err(),
            VerifyError::CheckpointRoot {
                size: 40,
                from: 10,
                origin: CheckpointOrigin::Database
            }
        );
        // And checkpoints signed with another key do not help the forger.
        let other = SigningKey::from_bytes(&[1; 32]);
        let leaves: Vec<Hash32> = forged.records.iter().map(|r| r.leaf_hash).collect();
        let fake = Checkpoint {
            origin: ORIGIN.into(),
            size: 50,
            root: crate::merkle::root_of(&leaves),
            at_millis: 0,
        }
        .sign(ORIGIN, &other)
        .unwrap();
        let (_, ck) = key();
        let err = CheckpointSet::collect(&ck, ORIGIN, &[fake], &[]).unwrap_err();
        assert!(matches!(err, VerifyError::Checkpoint { .. }));
    }

    #[test]
    fn an_insertion_in_the_middle_is_named_at_the_inserted_record() {
        let base = build(30);
        let cps = sign_at(&base.records, &[10]);
        // A well-formed record chained after record 14, put in at 15; the rows after it are
        // renumbered (their stored leaf hashes unchanged), as an attacker must to make room.
        let forged = tampered(&base, |r| {
            let ev = event(777);
            let extra = AuditRecord::next(Some((14, r[14].leaf_hash)), 5, ev.canonical_bytes());
            r.insert(15, extra);
            for x in r.iter_mut().skip(16) {
                x.seq += 1;
            }
        });
        assert_eq!(
            run(&forged, &cps).unwrap_err(),
            VerifyError::Inserted { seq: 15 }
        );
        assert_eq!(VerifyError::Inserted { seq: 15 }.seq(), Some(15));
    }

    #[test]
    fn index_columns_are_compared_with_the_hashed_event() {
        let t = build(5);
        let cps = sign_at(&t.records, &[5]);
        let (_, ck) = key();
        let set = CheckpointSet::collect(&ck, ORIGIN, &cps, &[]).unwrap();
        let stored: Vec<StoredRecord> = t
            .records
            .iter()
            .map(|r| StoredRecord {
                record: r.clone(),
                index: IndexColumns::of(&AuditEvent::from_canonical_bytes(&r.event).unwrap()),
            })
            .collect();
        let mut v = TrailVerifier::new(&set).unwrap();
        for s in &stored {
            v.push_stored(s).unwrap();
        }
        v.finish(Some(&t.head)).unwrap();
        let mut bad = stored.clone();
        bad[3].index.patient_id = None;
        let mut v = TrailVerifier::new(&set).unwrap();
        let err = bad
            .iter()
            .try_for_each(|s| v.push_stored(s).map(|_| ()))
            .unwrap_err();
        assert_eq!(
            err,
            VerifyError::IndexColumn {
                seq: 3,
                column: "patient_id"
            }
        );
        assert!(err.to_string().contains("record 3"));
    }

    fn stored_of(records: &[AuditRecord]) -> Vec<StoredRecord> {
        records
            .iter()
            .map(|r| StoredRecord {
                record: r.clone(),
                index: IndexColumns::of(&AuditEvent::from_canonical_bytes(&r.event).unwrap()),
            })
            .collect()
    }

    /// Feeds `stored` one by one and page by page (in parallel); both must agree on the first
    /// problem (or on success and the completed nodes).
    fn one_by_one_and_paged(
        set: &CheckpointSet,
        stored: &[StoredRecord],
    ) -> Result<Vec<Node>, VerifyError> {
        let mut single = TrailVerifier::new(set).unwrap();
        let mut nodes = Vec::new();
        let one = stored
            .iter()
            .try_for_each(|s| single.push_stored(s).map(|n| nodes.extend(n)))
            .map(|_| nodes);
        for (page, threads) in [(stored.len(), 4), (700, 3), (1000, 1), (513, 2)] {
            let mut paged = TrailVerifier::new(set).unwrap();
            let mut nodes = Vec::new();
            let got = stored
                .chunks(page)
                .try_for_each(|c| paged.push_stored_page(c, threads).map(|n| nodes.extend(n)))
                .map(|_| nodes);
            assert_eq!(got, one, "page {page}, {threads} threads");
            if got.is_ok() {
                assert_eq!(paged.records(), single.records());
            }
        }
        one
    }

    #[test]
    fn parallel_pages_report_what_one_by_one_reports() {
        let t = build(2_100);
        let cps = sign_at(&t.records, &[1_000, 2_100]);
        let (_, ck) = key();
        let set = CheckpointSet::collect(&ck, ORIGIN, &cps, &[]).unwrap();
        let stored = stored_of(&t.records);
        let nodes = one_by_one_and_paged(&set, &stored).unwrap();
        assert_eq!(nodes.len(), 2_100 - 2_100usize.count_ones() as usize);

        type Tamper = fn(&mut Vec<StoredRecord>);
        let cases: [(Tamper, VerifyError); 7] = [
            (
                |s| s[1_500].record.at_millis += 1,
                VerifyError::LeafHash { seq: 1_500 },
            ),
            (
                |s| s[40].index.action = "login".into(),
                VerifyError::IndexColumn {
                    seq: 40,
                    column: "action",
                },
            ),
            (
                |s| {
                    // Not an event, but correctly hashed and chained up to here.
                    let r = &mut s[900].record;
                    r.event = b"{}".to_vec();
                    r.leaf_hash =
                        crate::record::leaf_hash(r.seq, &r.prev_hash, r.at_millis, &r.event);
                },
                VerifyError::BadEvent { seq: 900 },
            ),
            (
                |s| {
                    s.remove(1_200);
                },
                VerifyError::SeqGap {
                    expected: 1_200,
                    found: 1_201,
                },
            ),
            (
                // Two problems in different threads' shares of a page: the earlier one.
                |s| {
                    s[1_999].record.event[3] ^= 1;
                    s[600].index.patient_id = None;
                },
                VerifyError::IndexColumn {
                    seq: 600,
                    column: "patient_id",
                },
            ),
            (
                // A seq problem before a content problem of the same record.
                |s| {
                    s[300].record.seq = 7;
                    s[300].record.event[0] ^= 1;
                },
                VerifyError::SeqGap {
                    expected: 300,
                    found: 7,
                },
            ),
            (
                |s| s.truncate(1_999),
                VerifyError::Truncated {
                    records: 1_999,
                    size: 2_100,
                },
            ),
        ];
        for (tamper, want) in cases {
            let mut bad = stored.clone();
            tamper(&mut bad);
            let got = one_by_one_and_paged(&set, &bad).and_then(|_| {
                let mut v = TrailVerifier::new(&set).unwrap();
                v.push_stored_page(&bad, 2)?;
                v.finish(None).map(|_| Vec::<Node>::new())
            });
            assert_eq!(got.unwrap_err(), want);
        }
        // A record whose event bytes are not an event, re-hashed and re-chained throughout.
        let mut forged: Vec<AuditRecord> = Vec::new();
        for (i, r) in t.records.iter().enumerate() {
            let prev = forged.last().map(|r| (r.seq, r.leaf_hash));
            let bytes = if i == 1_100 {
                b"not json".to_vec()
            } else {
                r.event.clone()
            };
            forged.push(AuditRecord::next(prev, r.at_millis, bytes));
        }
        let mut stored = stored_of(&forged[..1_100]);
        stored.extend(forged[1_100..].iter().map(|r| StoredRecord {
            record: r.clone(),
            index: IndexColumns::default(),
        }));
        assert_eq!(
            one_by_one_and_paged(&set, &stored).unwrap_err(),
            VerifyError::BadEvent { seq: 1_100 }
        );
    }

    #[test]
    fn checkpoint_drift_between_database_and_file() {
        let t = build(30);
        let cps = sign_at(&t.records, &[10, 20, 30]);
        // sign_at stamps each checkpoint with at_millis = size.
        let rule = |now| {
            Some(DriftRule {
                now_millis: now,
                grace_millis: 100,
            })
        };
        // In step.
        assert_eq!(check_drift(&cps, &cps, &[], rule(1000)).unwrap(), None);
        // The newest is not in the file yet, within one period: tolerated.
        assert_eq!(
            check_drift(&cps, &cps[..2], &[], rule(100)).unwrap(),
            Some(30)
        );
        // ... but not once the period has passed.
        assert_eq!(
            check_drift(&cps, &cps[..2], &[], rule(1000)).unwrap_err(),
            VerifyError::MissingFromFile { size: 30 }
        );
        // An older one missing from the file always fails.
        let file = [cps[0].clone(), cps[2].clone()];
        assert_eq!(
            check_drift(&cps, &file, &[], rule(0)).unwrap_err(),
            VerifyError::MissingFromFile { size: 20 }
        );
        // A file checkpoint missing from the database: a deleted row.
        assert_eq!(
            check_drift(&cps[..2], &cps, &[], rule(0)).unwrap_err(),
            VerifyError::MissingFromDatabase {
                size: 30,
                origin: CheckpointOrigin::File
            }
        );
        // Without a file to compare, the database's checkpoints stand alone, but copies given
        // must still be in the database.
        assert_eq!(check_drift(&cps, &[], &[], None).unwrap(), None);
        assert!(check_drift(&cps[..1], &[], &cps[1..2], None).is_err());
        let msg = VerifyError::MissingFromFile { size: 20 }.to_string();
        assert!(
            msg.contains("size 20") && msg.contains("checkpoint file"),
            "{msg}"
        );
    }

    #[test]
    fn stored_nodes_and_head_are_checked() {
        let t = build(33);
        let cps = sign_at(&t.records, &[16, 33]);
        // A wrong interior node.
        let mut bad_tree = MemoryTree::new();
        for (i, r) in t.records.iter().enumerate() {
            bad_tree.push(if i == 5 { [7; 32] } else { r.leaf_hash });
        }
        let (_, ck) = key();
        let set = CheckpointSet::collect(&ck, ORIGIN, &cps, &[]).unwrap();
        let err = verify_trail(
            &mut SliceRecords(&t.records),
            &bad_tree,
            Some(&t.head),
            &set,
        )
        .unwrap_err();
        assert_eq!(err, VerifyError::Node { level: 1, index: 2 });
        // Missing nodes.
        let empty = MemoryTree::new();
        let err =
            verify_trail(&mut SliceRecords(&t.records), &empty, Some(&t.head), &set).unwrap_err();
        assert!(matches!(
            err,
            VerifyError::MissingNode { level: 1, index: 0 }
        ));
        // Wrong head.
        let mut head = t.head.clone();
        head.last_leaf_hash = [0; 32];
        let err =
            verify_trail(&mut SliceRecords(&t.records), &t.tree, Some(&head), &set).unwrap_err();
        assert_eq!(err, VerifyError::Head("last leaf hash"));
    }

    #[test]
    fn conflicting_checkpoints_are_a_fork() {
        let a = build(10);
        let b = build(10); // different random patient ids: different roots
        let ca = sign_at(&a.records, &[10]);
        let cb = sign_at(&b.records, &[10]);
        let (_, ck) = key();
        assert_eq!(
            CheckpointSet::collect(&ck, ORIGIN, &ca, &cb).unwrap_err(),
            VerifyError::Conflict { size: 10 }
        );
        // Wrong origin.
        let (sk, _) = key();
        let other = Checkpoint {
            origin: "other.log".into(),
            size: 0,
            root: empty_root(),
            at_millis: 0,
        }
        .sign(ORIGIN, &sk)
        .unwrap();
        assert!(CheckpointSet::collect(&ck, ORIGIN, &[other], &[]).is_err());
    }

    #[test]
    fn consistency_between_checkpoints_uses_stored_nodes() {
        let t = build(40);
        let cps = sign_at(&t.records, &[3, 17, 40]);
        let (_, ck) = key();
        let set = CheckpointSet::collect(&ck, ORIGIN, &cps, &[]).unwrap();
        assert_eq!(check_checkpoint_consistency(&t.tree, &set).unwrap(), 2);
        let mut bad = MemoryTree::new();
        for (i, r) in t.records.iter().enumerate() {
            bad.push(if i == 20 { [1; 32] } else { r.leaf_hash });
        }
        assert!(check_checkpoint_consistency(&bad, &set).is_err());
        assert_eq!(set.covering(16).unwrap().size, 17);
        assert_eq!(set.covering(17).unwrap().size, 40);
        assert!(set.covering(40).is_none());
    }
}

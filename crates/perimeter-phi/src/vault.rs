//! The vault: what each pseudonym or surrogate in one conversation stands for.
//!
//! A [`Vault`] is scoped to one conversation or request and never shared across them: token
//! numbers count from 1 in every vault, so `[NAME_1]` means something different in each. It is
//! `Send + Sync` (a lock inside), serialisable so the caller can store it encrypted, and it
//! overwrites the originals it holds with zeros when dropped.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::Label;
use crate::deid::token::{self, Piece};

/// Version of the serialised form.
const FORMAT_VERSION: u32 = 1;

/// Mixed into the seed for the date shift, so it is not the surrogates' first draw.
const DATE_SALT: u64 = 0x5eed_da7e_0000_0001;

/// Domain separation for the per-patient date shift (a new version means new shifts).
const DATE_SHIFT_CONTEXT: &[u8] = b"perimeter-phi/date-shift/v1\0";

/// The secret from which per-patient date shifts are derived, so that every conversation of
/// one patient shifts dates by the same number of days (intervals between visits survive
/// across conversations) while the shift itself cannot be guessed without the key.
///
/// The shift is HMAC-SHA-256(key, context || patient reference), mapped to ±1..=365 days
/// (never zero). Keep the key like any other key (who holds it and a patient reference can
/// undo the shift); the patient reference should be an internal id, not a name. The key is
/// wiped on drop and never shown by `Debug`.
#[derive(Clone)]
pub struct DateShiftKey([u8; 32]);

impl Drop for DateShiftKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for DateShiftKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DateShiftKey(..)")
    }
}

impl DateShiftKey {
    /// A key from 32 secret bytes (e.g. derived from the deployment's key-encryption key).
    pub fn from_bytes(bytes: [u8; 32]) -> DateShiftKey {
        DateShiftKey(bytes)
    }

    /// The date shift for `patient_ref`, in days: the same for the same key and patient,
    /// within ±365 and never zero.
    pub fn shift_days(&self, patient_ref: &str) -> i32 {
        // HMAC accepts keys of any length: `new_from_slice` cannot fail here.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.0) else {
            return 1;
        };
        mac.update(DATE_SHIFT_CONTEXT);
        mac.update(patient_ref.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut word = [0u8; 8];
        for (w, t) in word.iter_mut().zip(tag.iter()) {
            *w = *t;
        }
        shift_from(u64::from_le_bytes(word))
    }
}

/// ±1..=365 days from 64 uniform bits (bias below 2^-54).
fn shift_from(bits: u64) -> i32 {
    let magnitude = i32::try_from(bits % 365).unwrap_or(0) + 1;
    if bits >> 63 == 1 {
        -magnitude
    } else {
        magnitude
    }
}

/// How many random candidates are tried before a surrogate is made unique by a suffix.
const SURROGATE_ATTEMPTS: u32 = 64;

/// What a vault entry's replacement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum EntryKind {
    /// A `[LABEL_N]` pseudonym for an identifier.
    Token,
    /// A `[LABEL_N]` standing for text of the input that itself looked like a token.
    Escape,
    /// A realistic fake value for a whole identifier.
    Surrogate,
    /// A fake word for one word of a person's name (names are replaced word by word so that
    /// `Maria Gonzalez`, `Maria` and `Gonzalez, Maria` stay consistent).
    NamePart,
}

struct Entry {
    label: Label,
    kind: EntryKind,
    original: Zeroizing<String>,
    replacement: String,
}

struct Inner {
    seed: u64,
    date_shift_days: i32,
    entries: Vec<Entry>,
    /// Normalised original to entry index, one map per kind and label that occur ([`slot`]),
    /// so that a lookup builds no composite key. The keys hold PHI: wiped on drop.
    by_key: Vec<(u8, Map<Box<str>, usize>)>,
    /// Token (its label and number) to entry index (pseudonyms and escapes): no key to
    /// allocate per token.
    by_token: Map<(Label, u32), usize>,
    /// Every surrogate handed out, to keep them unique.
    used: HashSet<Box<str>, Hasher>,
    /// Last token number per label (indexed by `label as usize`).
    counters: [u32; Label::ALL.len()],
}

impl Drop for Inner {
    fn drop(&mut self) {
        for (_, map) in &mut self.by_key {
            for (key, _) in map.drain() {
                key.into_string().zeroize();
            }
        }
        // `Entry::original` is `Zeroizing` and wipes itself.
    }
}

/// The vault's maps hash with foldhash, seeded at random per map (keys come from patients'
/// text, so the seed keeps collisions unpredictable), which costs a fraction of SipHash on
/// the short keys a vault holds.
type Hasher = foldhash::fast::RandomState;
type Map<K, V> = HashMap<K, V, Hasher>;

/// Room a new map starts with: a message's identifiers of one kind and label seldom outgrow
/// it, so the maps seldom rehash.
const MAP_ROOM: usize = 8;

/// The map of `kind` and `label` in [`Inner::by_key`].
fn slot(kind: EntryKind, label: Label) -> u8 {
    let kind = match kind {
        EntryKind::Token => 0u8,
        EntryKind::Escape => 1,
        EntryKind::Surrogate => 2,
        EntryKind::NamePart => 3,
    };
    // 4 kinds x 18 labels: fits a byte.
    kind * Label::ALL.len() as u8 + label as u8
}

/// What re-identification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reidentified {
    /// The text with every known token replaced by its original.
    pub text: String,
    /// Tokens of the `[LABEL_N]` form that this vault did not issue (left in the text as they
    /// were), in order of appearance. Tokens carry no PHI, so these may be logged.
    pub unknown_tokens: Vec<String>,
}

/// The mapping between replacements and originals for one conversation or request.
pub struct Vault {
    inner: RwLock<Inner>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the originals, nor the seed (it reveals the date shift).
        f.debug_struct("Vault")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for Vault {
    fn default() -> Self {
        Vault::new()
    }
}

impl Vault {
    /// An empty vault with a random seed (from the operating system) for surrogates and the
    /// date shift.
    pub fn new() -> Vault {
        Vault::with_seed(rand::random::<u64>())
    }

    /// An empty vault whose surrogates and date shift follow from `seed` (for reproducible
    /// output in tests and tools; production vaults should use [`Vault::new`]).
    pub fn with_seed(seed: u64) -> Vault {
        let mut rng = StdRng::seed_from_u64(seed ^ DATE_SALT);
        let magnitude: i32 = rng.random_range(1..=365);
        let date_shift_days = if rng.random_bool(0.5) {
            magnitude
        } else {
            -magnitude
        };
        Vault {
            inner: RwLock::new(Inner::new(seed, date_shift_days)),
        }
    }

    /// An empty vault for one conversation of one patient: surrogates are drawn at random,
    /// and dates are shifted by the patient's own keyed shift ([`DateShiftKey::shift_days`]),
    /// so two conversations of the same patient shift dates alike and intervals survive.
    pub fn for_patient(key: &DateShiftKey, patient_ref: &str) -> Vault {
        Vault::with_seed_and_shift(rand::random::<u64>(), key.shift_days(patient_ref))
    }

    /// Like [`Vault::for_patient`] with the surrogates following from `seed` (reproducible).
    pub fn for_patient_with_seed(key: &DateShiftKey, patient_ref: &str, seed: u64) -> Vault {
        Vault::with_seed_and_shift(seed, key.shift_days(patient_ref))
    }

    fn with_seed_and_shift(seed: u64, date_shift_days: i32) -> Vault {
        Vault {
            inner: RwLock::new(Inner::new(seed, date_shift_days)),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// True when nothing has been put in the vault.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Replaces every token this vault issued by its original; unknown tokens stay as they are.
    pub fn reidentify(&self, text: &str) -> String {
        self.reidentify_report(text).text
    }

    /// Like [`Vault::reidentify`], also reporting the unknown tokens.
    pub fn reidentify_report(&self, text: &str) -> Reidentified {
        let mut out = String::with_capacity(text.len());
        let mut unknown = Vec::new();
        let inner = self.read();
        token::scan(text, true, |p| {
            inner.restore_piece(p, &mut out, &mut unknown)
        });
        Reidentified {
            text: out,
            unknown_tokens: unknown,
        }
    }

    /// Re-identifies the scannable part of `text` into `out`; returns the bytes consumed (see
    /// [`token::scan`]).
    pub(crate) fn restore_into(
        &self,
        text: &str,
        last: bool,
        out: &mut String,
        unknown: &mut Vec<String>,
    ) -> usize {
        let inner = self.read();
        token::scan(text, last, |p| inner.restore_piece(p, out, unknown))
    }

    /// The number of days dates are moved by in surrogate mode (never zero).
    pub(crate) fn date_shift_days(&self) -> i32 {
        self.read().date_shift_days
    }

    /// Appends the token for `original` (compared by `normalised`) to `out`, issuing a new
    /// one if needed.
    pub(crate) fn token_into(
        &self,
        kind: EntryKind,
        label: Label,
        original: &str,
        normalised: &str,
        out: &mut String,
    ) {
        let slot = slot(kind, label);
        {
            let inner = self.read();
            if let Some(i) = inner.find(slot, normalised) {
                out.push_str(&inner.entries[i].replacement);
                return;
            }
        }
        let mut inner = self.write();
        let i = match inner.find(slot, normalised) {
            Some(i) => i,
            None => {
                let mut n = inner.counters[label as usize];
                let replacement = loop {
                    n = n.saturating_add(1);
                    let t = token::format_token(label, n);
                    if !inner.by_token.contains_key(&(label, n)) && !inner.used.contains(&*t) {
                        break t;
                    }
                };
                inner.counters[label as usize] = n;
                inner.insert(
                    kind,
                    label,
                    original,
                    replacement,
                    slot,
                    normalised,
                    Some((label, n)),
                )
            }
        };
        out.push_str(&inner.entries[i].replacement);
    }

    /// The token for `original` (compared by `normalised`), issuing a new one if needed.
    #[cfg(test)]
    pub(crate) fn token(
        &self,
        kind: EntryKind,
        label: Label,
        original: &str,
        normalised: &str,
    ) -> String {
        let mut out = String::new();
        self.token_into(kind, label, original, normalised, &mut out);
        out
    }

    /// The surrogate for `original` (compared by `normalised`). On first sight, `make` is
    /// called with a random generator until it returns a value not yet used in this vault and
    /// different from the original.
    pub(crate) fn surrogate(
        &self,
        kind: EntryKind,
        label: Label,
        original: &str,
        normalised: &str,
        mut make: impl FnMut(&mut StdRng) -> String,
    ) -> String {
        let slot = slot(kind, label);
        if let Some(r) = self.lookup(slot, normalised) {
            return r;
        }
        let mut inner = self.write();
        if let Some(i) = inner.find(slot, normalised) {
            return inner.entries[i].replacement.clone();
        }
        let n = inner.entries.len() as u64;
        let mut rng = StdRng::seed_from_u64(
            inner.seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((label as u64) << 56),
        );
        let mut candidate = make(&mut rng);
        let mut attempt = 0;
        while (inner.is_used(&candidate) || candidate.eq_ignore_ascii_case(original))
            && attempt < SURROGATE_ATTEMPTS
        {
            candidate = make(&mut rng);
            attempt += 1;
        }
        if inner.is_used(&candidate) || candidate.eq_ignore_ascii_case(original) {
            // The pool is exhausted: keep the shape and make it unique with a number.
            let base = candidate;
            let mut i = 2u32;
            candidate = format!("{base} {i}");
            while inner.is_used(&candidate) {
                i = i.saturating_add(1);
                candidate = format!("{base} {i}");
            }
        }
        let i = inner.insert(kind, label, original, candidate, slot, normalised, None);
        inner.entries[i].replacement.clone()
    }

    fn lookup(&self, slot: u8, normalised: &str) -> Option<String> {
        let inner = self.read();
        inner
            .find(slot, normalised)
            .map(|i| inner.entries[i].replacement.clone())
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in a way that
        // matters (insert pushes the entry before indexing it), so a poisoned lock is used as is.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn new(seed: u64, date_shift_days: i32) -> Inner {
        Inner {
            seed,
            date_shift_days,
            entries: Vec::new(),
            by_key: Vec::new(),
            by_token: Map::with_capacity_and_hasher(MAP_ROOM, Hasher::default()),
            used: HashSet::default(),
            counters: [0; Label::ALL.len()],
        }
    }

    /// The entry filed under `normalised` in map `slot`.
    fn find(&self, slot: u8, normalised: &str) -> Option<usize> {
        self.by_key
            .iter()
            .find(|(s, _)| *s == slot)
            .and_then(|(_, map)| map.get(normalised).copied())
    }

    /// True when `replacement` was handed out already (as a token or a surrogate).
    fn is_used(&self, replacement: &str) -> bool {
        token::parse_token(replacement).is_some_and(|k| self.by_token.contains_key(&k))
            || self.used.contains(replacement)
    }

    /// Adds an entry and files it (`token`: the replacement's label and number when the
    /// caller knows them); returns its index.
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        kind: EntryKind,
        label: Label,
        original: &str,
        replacement: String,
        slot: u8,
        normalised: &str,
        token: Option<(Label, u32)>,
    ) -> usize {
        let i = self.entries.len();
        self.entries.push(Entry {
            label,
            kind,
            original: Zeroizing::new(original.to_string()),
            replacement,
        });
        self.index(i, slot, normalised, token);
        i
    }

    /// Files entry `i` (`token`: its replacement's label and number, when known; otherwise
    /// read from the replacement).
    fn index(&mut self, i: usize, slot: u8, normalised: &str, token: Option<(Label, u32)>) {
        let e = &self.entries[i];
        if matches!(e.kind, EntryKind::Token | EntryKind::Escape) {
            // Issued tokens always parse; a deserialised entry whose replacement does not is
            // refused before it gets here.
            if let Some(key) = token.or_else(|| token::parse_token(&e.replacement)) {
                self.by_token.insert(key, i);
                let c = &mut self.counters[e.label as usize];
                *c = (*c).max(key.1);
            }
        } else {
            self.used.insert(e.replacement.as_str().into());
        }
        let map = match self.by_key.iter().position(|(s, _)| *s == slot) {
            Some(m) => m,
            None => {
                self.by_key.push((
                    slot,
                    Map::with_capacity_and_hasher(MAP_ROOM, Hasher::default()),
                ));
                self.by_key.len() - 1
            }
        };
        self.by_key[map].1.insert(normalised.into(), i);
    }

    fn restore_piece(&self, p: Piece<'_>, out: &mut String, unknown: &mut Vec<String>) {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Token(t) => match token::parse_token(t).and_then(|k| self.by_token.get(&k)) {
                Some(&i) => out.push_str(&self.entries[i].original),
                None => {
                    out.push_str(t);
                    unknown.push(t.to_string());
                }
            },
        }
    }
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    seed: u64,
    date_shift_days: i32,
    entries: Vec<EntryRef<'a>>,
}

#[derive(Serialize)]
struct EntryRef<'a> {
    label: Label,
    kind: EntryKind,
    original: &'a str,
    replacement: &'a str,
}

#[derive(Deserialize)]
struct Snapshot {
    version: u32,
    seed: u64,
    date_shift_days: i32,
    entries: Vec<EntryOwned>,
}

#[derive(Deserialize)]
struct EntryOwned {
    label: Label,
    kind: EntryKind,
    original: String,
    replacement: String,
}

impl Serialize for Vault {
    /// Serialises the originals in clear: encrypt the result before storing it.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let inner = self.read();
        SnapshotRef {
            version: FORMAT_VERSION,
            seed: inner.seed,
            date_shift_days: inner.date_shift_days,
            entries: inner
                .entries
                .iter()
                .map(|e| EntryRef {
                    label: e.label,
                    kind: e.kind,
                    original: &e.original,
                    replacement: &e.replacement,
                })
                .collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Vault {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let snap = Snapshot::deserialize(deserializer)?;
        if snap.version != FORMAT_VERSION {
            return Err(serde::de::Error::custom(format_args!(
                "vault: unsupported version {}, expected {FORMAT_VERSION}",
                snap.version
            )));
        }
        let mut inner = Inner::new(snap.seed, snap.date_shift_days);
        for e in snap.entries {
            if inner.is_used(&e.replacement) {
                return Err(serde::de::Error::custom(
                    "vault: entries: a replacement appears twice",
                ));
            }
            if matches!(e.kind, EntryKind::Token | EntryKind::Escape)
                && token::parse_token(&e.replacement).is_none()
            {
                return Err(serde::de::Error::custom(
                    "vault: entries: a token entry's replacement is not a [LABEL_N] token",
                ));
            }
            let normalised = Zeroizing::new(match e.kind {
                EntryKind::Escape => e.original.to_string(),
                EntryKind::NamePart => crate::deid::normalize::name_part(&e.original),
                EntryKind::Token | EntryKind::Surrogate => {
                    crate::deid::normalize::normalize(e.label, &e.original)
                }
            });
            let i = inner.entries.len();
            inner.entries.push(Entry {
                label: e.label,
                kind: e.kind,
                original: Zeroizing::new(e.original),
                replacement: e.replacement,
            });
            inner.index(i, slot(e.kind, e.label), &normalised, None);
        }
        Ok(Vault {
            inner: RwLock::new(inner),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(v: &Vault, label: Label, s: &str) -> String {
        v.token(
            EntryKind::Token,
            label,
            s,
            &crate::deid::normalize::normalize(label, s),
        )
    }

    #[test]
    fn tokens_are_per_vault_and_per_label() {
        let a = Vault::with_seed(1);
        let b = Vault::with_seed(1);
        assert_eq!(tok(&a, Label::Name, "Maria Gonzalez"), "[NAME_1]");
        assert_eq!(tok(&a, Label::Name, "maria  GONZALEZ"), "[NAME_1]");
        assert_eq!(tok(&a, Label::Name, "Ann Lee"), "[NAME_2]");
        assert_eq!(tok(&a, Label::Phone, "(555) 123-4567"), "[PHONE_1]");
        assert_eq!(tok(&a, Label::Phone, "555.123.4567"), "[PHONE_1]");
        assert_eq!(tok(&b, Label::Name, "Ann Lee"), "[NAME_1]");
        let r = a.reidentify_report("[NAME_2] and [NAME_1] at [PHONE_1], not [NAME_3] or [NAME]");
        assert_eq!(
            r.text,
            "Ann Lee and Maria Gonzalez at (555) 123-4567, not [NAME_3] or [NAME]"
        );
        assert_eq!(r.unknown_tokens, vec!["[NAME_3]".to_string()]);
    }

    #[test]
    fn round_trips_through_serde_and_hides_originals_in_debug() {
        let v = Vault::with_seed(7);
        tok(&v, Label::Name, "Maria Gonzalez");
        tok(&v, Label::Ssn, "123-45-6789");
        let json = serde_json::to_string(&v).unwrap();
        let back: Vault = serde_json::from_str(&json).unwrap();
        assert_eq!(back.date_shift_days(), v.date_shift_days());
        assert_eq!(
            back.reidentify("[SSN_1] [NAME_1]"),
            "123-45-6789 Maria Gonzalez"
        );
        // Counters continue after a restore, and equal values still get the same token.
        assert_eq!(tok(&back, Label::Name, "MARIA GONZALEZ"), "[NAME_1]");
        assert_eq!(tok(&back, Label::Name, "Bo Li"), "[NAME_2]");
        let dbg = format!("{v:?}");
        assert!(!dbg.contains("Maria") && !dbg.contains("6789"), "{dbg}");
        assert!(
            serde_json::from_str::<Vault>(&json.replace("\"version\":1", "\"version\":9")).is_err()
        );
        // A snapshot that files a token under a replacement that is no token, or one token
        // twice, is refused with a message that names the problem (and no original).
        for (from, to, why) in [
            ("\"[SSN_1]\"", "\"SSN-1\"", "not a [LABEL_N] token"),
            ("\"[SSN_1]\"", "\"[NAME_1]\"", "appears twice"),
        ] {
            assert!(json.contains(from), "{json}");
            let err = serde_json::from_str::<Vault>(&json.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{err}");
            assert!(!err.contains("6789") && !err.contains("Maria"), "{err}");
        }
    }

    #[test]
    fn is_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Vault>();
        let v = Vault::with_seed(3);
        std::thread::scope(|s| {
            for t in 0..4 {
                let v = &v;
                s.spawn(move || {
                    for i in 0..50 {
                        tok(v, Label::Mrn, &format!("MRN{}", (i * 7 + t) % 60));
                    }
                });
            }
        });
        assert_eq!(v.len(), 60);
        let mut all: Vec<String> = (0..60)
            .map(|i| tok(&v, Label::Mrn, &format!("MRN{i}")))
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 60);
    }

    #[test]
    fn patient_date_shift_is_keyed_stable_and_never_zero() {
        let key = DateShiftKey::from_bytes([7; 32]);
        let other = DateShiftKey::from_bytes([8; 32]);
        let a = key.shift_days("patient-0001");
        assert_eq!(
            a,
            key.shift_days("patient-0001"),
            "same patient, same shift"
        );
        assert_eq!(
            Vault::for_patient(&key, "patient-0001").date_shift_days(),
            a
        );
        assert_eq!(
            Vault::for_patient_with_seed(&key, "patient-0001", 99).date_shift_days(),
            a
        );
        let shifts: Vec<i32> = (0..400)
            .map(|i| key.shift_days(&format!("patient-{i}")))
            .collect();
        assert!(shifts.iter().all(|d| *d != 0 && d.abs() <= 365));
        // Spread over the range, both directions (not a constant).
        let distinct: HashSet<i32> = shifts.iter().copied().collect();
        assert!(distinct.len() > 200, "{}", distinct.len());
        assert!(shifts.iter().any(|d| *d < 0) && shifts.iter().any(|d| *d > 0));
        // Another key gives other shifts for the same patients.
        let moved = (0..50)
            .filter(|i| {
                key.shift_days(&format!("patient-{i}")) != other.shift_days(&format!("patient-{i}"))
            })
            .count();
        assert!(moved > 40);
        assert_eq!(format!("{key:?}"), "DateShiftKey(..)");
        assert_eq!(shift_from(0), 1);
        assert_eq!(shift_from(364), 365);
        assert_eq!(shift_from(1 << 63), -(((1u64 << 63) % 365) as i32 + 1));
    }

    #[test]
    fn date_shift_is_never_zero() {
        for seed in 0..200 {
            let d = Vault::with_seed(seed).date_shift_days();
            assert!(d != 0 && d.abs() <= 365);
        }
    }
}

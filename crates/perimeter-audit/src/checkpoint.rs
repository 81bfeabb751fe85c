//! Signed checkpoints: tree size, root hash and time, in the text format of C2SP
//! `tlog-checkpoint` carried in a C2SP `signed-note` with an Ed25519 signature.
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <root hash, base64>
//! time <milliseconds since the Unix epoch>
//!
//! — <key name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>
//! ```
//!
//! The signature covers every byte of the body (the lines before the blank line, each ending
//! in a newline). The key id is the first four bytes of
//! `SHA-256(key name || "\n" || 0x01 || public key)`, and a verifier key is written
//! `<name>+<key id, 8 hex digits>+<base64(0x01 || public key)>`, as in signed notes.
//!
//! The checkpoint log (`checkpoints.log`) is a sequence of such notes separated by one blank
//! line; [`parse_log`] reads it back.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::record::Hash32;

/// The log origin (first line of every checkpoint, and the checkpoint key's name) of
/// Perimeter's audit trail.
pub const ORIGIN: &str = "perimeter/audit";

/// The Ed25519 algorithm byte of signed-note keys.
const ALG_ED25519: u8 = 0x01;
/// The prefix of a signature line: an em dash and a space.
const SIG_PREFIX: &str = "\u{2014} ";

/// What a checkpoint says: after `size` records the tree's root was `root`, at `at_millis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name (first line); checkpoints of other logs are rejected.
    pub origin: String,
    /// Number of records covered.
    pub size: u64,
    /// RFC 6962 root of the first `size` records.
    pub root: Hash32,
    /// When it was made (milliseconds since the Unix epoch, from the injected clock).
    pub at_millis: i64,
}

/// A checkpoint that cannot be parsed, is signed by another key or has a bad signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The text is not a checkpoint note.
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    /// The origin or key name is not usable (empty, or contains whitespace or `+`).
    #[error("checkpoint origin and key names must be non-empty and free of spaces and '+'")]
    BadName,
    /// No signature by the expected key.
    #[error("checkpoint has no signature by key {0}")]
    NoSignatureByKey(String),
    /// The signature by the expected key does not verify.
    #[error("checkpoint signature by key {0} does not verify")]
    BadSignature(String),
    /// The origin is not the expected log's.
    #[error("checkpoint is for log {got:?}, expected {expected:?}")]
    WrongOrigin {
        /// Origin found.
        got: String,
        /// Origin expected.
        expected: String,
    },
    /// A verifier key string is malformed.
    #[error("malformed verifier key: expected <name>+<8 hex digits>+<base64 key>")]
    BadVerifierKey,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// A named Ed25519 public key that checkpoints are verified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointKey {
    name: String,
    key: VerifyingKey,
}

impl CheckpointKey {
    /// A key with the given name (conventionally the log origin).
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, CheckpointError> {
        if !valid_name(name) {
            return Err(CheckpointError::BadName);
        }
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The 4-byte signed-note key id.
    pub fn key_id(&self) -> [u8; 4] {
        key_id(&self.name, &self.key)
    }

    /// The signed-note verifier key string `<name>+<id hex>+<base64(0x01 || key)>`.
    pub fn to_vkey(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id()),
            B64.encode(k)
        )
    }

    /// Parses [`CheckpointKey::to_vkey`] output, checking the embedded key id.
    pub fn from_vkey(s: &str) -> Result<Self, CheckpointError> {
        // The key is standard base64, which may itself contain '+': split twice only.
        let mut it = s.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (it.next(), it.next(), it.next()) else {
            return Err(CheckpointError::BadVerifierKey);
        };
        let raw = B64
            .decode(key)
            .map_err(|_| CheckpointError::BadVerifierKey)?;
        let Some((&ALG_ED25519, pk)) = raw.split_first() else {
            return Err(CheckpointError::BadVerifierKey);
        };
        let pk: [u8; 32] = pk.try_into().map_err(|_| CheckpointError::BadVerifierKey)?;
        let vk = VerifyingKey::from_bytes(&pk).map_err(|_| CheckpointError::BadVerifierKey)?;
        let ck = Self::new(name, vk).map_err(|_| CheckpointError::BadVerifierKey)?;
        if hex::encode(ck.key_id()) != id.to_ascii_lowercase() {
            return Err(CheckpointError::BadVerifierKey);
        }
        Ok(ck)
    }
}

fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

impl Checkpoint {
    /// The signed body: origin, size, base64 root, time extension line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\ntime {}\n",
            self.origin,
            self.size,
            B64.encode(self.root),
            self.at_millis
        )
    }

    /// Signs the checkpoint, producing the full note text.
    pub fn sign(
        &self,
        key_name: &str,
        key: &SigningKey,
    ) -> Result<SignedCheckpoint, CheckpointError> {
        if !valid_name(&self.origin) || !valid_name(key_name) {
            return Err(CheckpointError::BadName);
        }
        let body = self.body();
        let sig = key.sign(body.as_bytes());
        let id = key_id(key_name, &key.verifying_key());
        let mut blob = id.to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        let text = format!("{body}\n{SIG_PREFIX}{key_name} {}\n", B64.encode(blob));
        Ok(SignedCheckpoint {
            checkpoint: self.clone(),
            body,
            signatures: vec![NoteSignature {
                name: key_name.to_owned(),
                key_id: id,
                signature: sig.to_bytes(),
            }],
            text,
        })
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NoteSignature {
    name: String,
    key_id: [u8; 4],
    signature: [u8; 64],
}

/// A parsed checkpoint note. Parsing does not check signatures: call
/// [`SignedCheckpoint::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    body: String,
    signatures: Vec<NoteSignature>,
    text: String,
}

impl SignedCheckpoint {
    /// The note's exact text (what is stored in the database and the log file).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Checks that the note carries a valid signature by `key` and names `key`'s log.
    pub fn verify(&self, key: &CheckpointKey) -> Result<(), CheckpointError> {
        let id = key.key_id();
        let Some(sig) = self
            .signatures
            .iter()
            .find(|s| s.name == key.name && s.key_id == id)
        else {
            return Err(CheckpointError::NoSignatureByKey(key.to_vkey()));
        };
        key.key
            .verify_strict(self.body.as_bytes(), &Signature::from_bytes(&sig.signature))
            .map_err(|_| CheckpointError::BadSignature(key.to_vkey()))
    }

    /// Parses one note.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let mut notes = parse_notes(text)?;
        match (notes.pop(), notes.is_empty()) {
            (Some(n), true) => Ok(n),
            _ => Err(CheckpointError::Malformed(
                "expected exactly one checkpoint note",
            )),
        }
    }
}

fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
    let mut lines = body.lines();
    let origin = lines
        .next()
        .filter(|o| valid_name(o))
        .ok_or(CheckpointError::Malformed("origin line"))?;
    let size_line = lines
        .next()
        .ok_or(CheckpointError::Malformed("size line"))?;
    if size_line.is_empty()
        || !size_line.bytes().all(|b| b.is_ascii_digit())
        || (size_line.len() > 1 && size_line.starts_with('0'))
    {
        return Err(CheckpointError::Malformed("size line"));
    }
    let size: u64 = size_line
        .parse()
        .map_err(|_| CheckpointError::Malformed("size line"))?;
    let root: Hash32 = lines
        .next()
        .and_then(|l| B64.decode(l).ok())
        .and_then(|v| v.try_into().ok())
        .ok_or(CheckpointError::Malformed("root hash line"))?;
    let mut at_millis = None;
    for ext in lines {
        if let Some(t) = ext.strip_prefix("time ") {
            if at_millis.is_some() {
                return Err(CheckpointError::Malformed("repeated time line"));
            }
            at_millis = Some(
                t.parse::<i64>()
                    .map_err(|_| CheckpointError::Malformed("time line"))?,
            );
        }
    }
    Ok(Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
        at_millis: at_millis.ok_or(CheckpointError::Malformed("time line"))?,
    })
}

fn parse_sig_line(line: &str) -> Result<NoteSignature, CheckpointError> {
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or(CheckpointError::Malformed("signature line"))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(CheckpointError::Malformed("signature line"))?;
    if !valid_name(name) {
        return Err(CheckpointError::Malformed("signature key name"));
    }
    let blob = B64
        .decode(b64)
        .map_err(|_| CheckpointError::Malformed("signature encoding"))?;
    if blob.len() != 68 {
        return Err(CheckpointError::Malformed("signature length"));
    }
    let mut key_id = [0u8; 4];
    key_id.copy_from_slice(&blob[..4]);
    let mut signature = [0u8; 64];
    signature.copy_from_slice(&blob[4..]);
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id,
        signature,
    })
}

/// Parses a sequence of notes separated by blank lines (the checkpoint log format).
fn parse_notes(text: &str) -> Result<Vec<SignedCheckpoint>, CheckpointError> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        // Skip blank separator lines.
        while let Some(r) = rest.strip_prefix('\n') {
            rest = r;
        }
        if rest.is_empty() {
            return Ok(out);
        }
        let Some(split) = rest.find("\n\n") else {
            return Err(CheckpointError::Malformed("note without signatures"));
        };
        let body = &rest[..split + 1];
        let mut after = &rest[split + 2..];
        let mut sigs = Vec::new();
        while after.starts_with(SIG_PREFIX) {
            let Some(end) = after.find('\n') else {
                return Err(CheckpointError::Malformed("signature line without newline"));
            };
            sigs.push(parse_sig_line(&after[..end])?);
            after = &after[end + 1..];
        }
        if sigs.is_empty() {
            return Err(CheckpointError::Malformed("note without signatures"));
        }
        let note_len = rest.len() - after.len();
        let checkpoint = parse_body(body)?;
        out.push(SignedCheckpoint {
            checkpoint,
            body: body.to_owned(),
            signatures: sigs,
            text: rest[..note_len].to_owned(),
        });
        rest = after;
    }
}

/// Parses a checkpoint log (`checkpoints.log`): notes, each followed by a blank line.
pub fn parse_log(text: &str) -> Result<Vec<SignedCheckpoint>, CheckpointError> {
    parse_notes(text)
}

/// The bytes to append to the checkpoint log for one note.
pub fn log_entry(note: &SignedCheckpoint) -> String {
    format!("{}\n", note.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn cp(size: u64) -> Checkpoint {
        Checkpoint {
            origin: "perimeter.test/audit".into(),
            size,
            root: [size as u8; 32],
            at_millis: 1_767_225_600_000 + size as i64,
        }
    }

    #[test]
    fn sign_parse_verify_round_trip() {
        let sk = key(7);
        let ck = CheckpointKey::new("perimeter.test/audit", sk.verifying_key()).unwrap();
        let signed = cp(42).sign(ck.name(), &sk).unwrap();
        assert!(signed.text().starts_with("perimeter.test/audit\n42\n"));
        assert!(signed.text().contains("\n\n\u{2014} perimeter.test/audit "));
        let parsed = SignedCheckpoint::parse(signed.text()).unwrap();
        assert_eq!(parsed, signed);
        parsed.verify(&ck).unwrap();
        let vkey = ck.to_vkey();
        assert_eq!(CheckpointKey::from_vkey(&vkey).unwrap(), ck);
    }

    #[test]
    fn verifier_keys_whose_base64_holds_a_plus_round_trip() {
        let mut found = 0;
        for seed in 0..=255u8 {
            let ck = CheckpointKey::new("perimeter/audit", key(seed).verifying_key()).unwrap();
            let vkey = ck.to_vkey();
            if vkey.matches('+').count() > 2 {
                assert_eq!(CheckpointKey::from_vkey(&vkey).unwrap(), ck, "{vkey}");
                found += 1;
            }
        }
        assert!(found > 0, "some seed gives a '+' in the base64 key");
    }

    #[test]
    fn tampering_or_wrong_key_is_rejected() {
        let sk = key(7);
        let ck = CheckpointKey::new("perimeter.test/audit", sk.verifying_key()).unwrap();
        let signed = cp(42).sign(ck.name(), &sk).unwrap();
        // Change the size: still parses, signature fails.
        let forged = signed.text().replacen("\n42\n", "\n43\n", 1);
        let parsed = SignedCheckpoint::parse(&forged).unwrap();
        assert_eq!(parsed.checkpoint.size, 43);
        assert!(matches!(
            parsed.verify(&ck),
            Err(CheckpointError::BadSignature(_))
        ));
        // Another key, same name.
        let other = CheckpointKey::new("perimeter.test/audit", key(8).verifying_key()).unwrap();
        assert!(matches!(
            signed.verify(&other),
            Err(CheckpointError::NoSignatureByKey(_))
        ));
        // A note re-signed with the attacker's key under the right name fails against the real key.
        let resigned = cp(43).sign("perimeter.test/audit", &key(8)).unwrap();
        assert!(resigned.verify(&ck).is_err());
        // Garbage.
        for bad in [
            "",
            "x\n",
            "o\n1\n\n",
            "o\n01\nAAAA\ntime 1\n\n\u{2014} o AAAA\n",
        ] {
            assert!(SignedCheckpoint::parse(bad).is_err(), "{bad:?}");
        }
        assert!(CheckpointKey::from_vkey("a+00000000+AQ==").is_err());
        let mut vk = ck.to_vkey();
        vk.replace_range(vk.find('+').unwrap() + 1..vk.find('+').unwrap() + 3, "ff");
        assert!(CheckpointKey::from_vkey(&vk).is_err() || vk == ck.to_vkey());
    }

    #[test]
    fn log_of_several_notes_parses_back() {
        let sk = key(3);
        let notes: Vec<_> = [1u64, 5, 9]
            .iter()
            .map(|s| cp(*s).sign("perimeter.test/audit", &sk).unwrap())
            .collect();
        let log: String = notes.iter().map(log_entry).collect();
        let parsed = parse_log(&log).unwrap();
        assert_eq!(parsed, notes);
        // A truncated tail is an error, not silently dropped.
        assert!(parse_log(&log[..log.len() - 20]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parser_never_panics(s in "(?s).{0,300}") {
            let _ = parse_log(&s);
            let _ = CheckpointKey::from_vkey(&s);
        }

        #[test]
        fn parser_never_panics_on_near_valid_notes(cut in 0usize..200, byte in any::<u8>(), at in 0usize..200) {
            let sk = key(1);
            let t = cp(7).sign("perimeter.test/audit", &sk).unwrap().text().to_owned();
            let mut b = t.into_bytes();
            let i = at % b.len();
            b[i] = byte;
            b.truncate(cut.min(b.len()));
            let s = String::from_utf8_lossy(&b);
            let _ = parse_log(&s);
        }
    }

    use proptest::prelude::any;
}

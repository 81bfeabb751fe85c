//! Context cues: keywords that say what the next identifier is ("DOB", "MRN", "member ID",
//! "call me at", "fax") or that a name follows ("Dr.", "my daughter", "this is", `Name:`).
//!
//! All cues are found in one ASCII-case-insensitive Aho-Corasick pass per message.

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

use super::features::class;
use super::tokens::{Kind, Token};
use crate::Label;
use crate::engine::PhiError;

/// What a cue announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cue {
    /// The next identifier-looking thing has this label.
    Ident(Label),
    /// A person's name follows (`this is`, `I'm`, `Name:`, `spoke with`).
    NameIntro,
    /// A title: a surname or full name follows (`Dr.`, `Mrs.`).
    Title,
    /// A relation: a name may follow (`my daughter`, `husband`).
    Relation,
    /// A closing: a signature follows (`Thanks,`, `Sincerely,`).
    SignOff,
    /// A birth-date or age cue (`DOB`, `born`, `age`).
    Birth,
    /// A cue that the following number is not PHI (`mg`, `BP`, `CPT`, `ICD`, `pain`).
    NotPhi,
    /// A bare `ID` or `ID #`: the number right after it is an identifier, of the kind a cue
    /// just before it names (`Medicaid ID`), else [`Label::Id`].
    GenericId,
}

/// One cue found in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CueHit {
    pub start: usize,
    pub end: usize,
    pub cue: Cue,
}

const CUES: &[(&str, Cue)] = &[
    // Identifier labels.
    ("mrn", Cue::Ident(Label::Mrn)),
    ("medical record", Cue::Ident(Label::Mrn)),
    ("med rec", Cue::Ident(Label::Mrn)),
    ("chart number", Cue::Ident(Label::Mrn)),
    ("chart no", Cue::Ident(Label::Mrn)),
    ("chart #", Cue::Ident(Label::Mrn)),
    ("chart", Cue::Ident(Label::Mrn)),
    ("patient id", Cue::Ident(Label::Mrn)),
    ("patient number", Cue::Ident(Label::Mrn)),
    ("pid", Cue::Ident(Label::Mrn)),
    ("acct", Cue::Ident(Label::Account)),
    ("account", Cue::Ident(Label::Account)),
    ("card number", Cue::Ident(Label::Account)),
    ("credit card", Cue::Ident(Label::Account)),
    ("debit card", Cue::Ident(Label::Account)),
    ("visa", Cue::Ident(Label::Account)),
    ("mastercard", Cue::Ident(Label::Account)),
    ("iban", Cue::Ident(Label::Account)),
    ("routing", Cue::Ident(Label::Account)),
    ("invoice", Cue::Ident(Label::Account)),
    ("member id", Cue::Ident(Label::HealthPlan)),
    ("member number", Cue::Ident(Label::HealthPlan)),
    ("member #", Cue::Ident(Label::HealthPlan)),
    ("medi-cal", Cue::Ident(Label::HealthPlan)),
    ("subscriber", Cue::Ident(Label::HealthPlan)),
    ("medicare", Cue::Ident(Label::HealthPlan)),
    ("medicaid", Cue::Ident(Label::HealthPlan)),
    ("mbi", Cue::Ident(Label::HealthPlan)),
    ("policy", Cue::Ident(Label::HealthPlan)),
    ("ins id", Cue::Ident(Label::HealthPlan)),
    ("insurance id", Cue::Ident(Label::HealthPlan)),
    ("insurance number", Cue::Ident(Label::HealthPlan)),
    ("insurance #", Cue::Ident(Label::HealthPlan)),
    ("health plan", Cue::Ident(Label::HealthPlan)),
    ("plan id", Cue::Ident(Label::HealthPlan)),
    ("group number", Cue::Ident(Label::HealthPlan)),
    ("group #", Cue::Ident(Label::HealthPlan)),
    ("beneficiary", Cue::Ident(Label::HealthPlan)),
    ("license", Cue::Ident(Label::License)),
    ("licence", Cue::Ident(Label::License)),
    ("lic #", Cue::Ident(Label::License)),
    ("lic.", Cue::Ident(Label::License)),
    ("dl", Cue::Ident(Label::License)),
    ("dea", Cue::Ident(Label::License)),
    ("npi", Cue::Ident(Label::License)),
    ("certificate", Cue::Ident(Label::License)),
    ("vin", Cue::Ident(Label::Vehicle)),
    ("plate", Cue::Ident(Label::Vehicle)),
    ("tag number", Cue::Ident(Label::Vehicle)),
    ("serial", Cue::Ident(Label::Device)),
    ("device id", Cue::Ident(Label::Device)),
    ("device #", Cue::Ident(Label::Device)),
    ("s/n", Cue::Ident(Label::Device)),
    ("sn", Cue::Ident(Label::Device)),
    ("imei", Cue::Ident(Label::Device)),
    ("udi", Cue::Ident(Label::Device)),
    ("model", Cue::Ident(Label::Device)),
    ("rx", Cue::Ident(Label::Id)),
    ("prescription number", Cue::Ident(Label::Id)),
    ("prescription #", Cue::Ident(Label::Id)),
    ("claim", Cue::Ident(Label::Id)),
    ("case", Cue::Ident(Label::Id)),
    ("ticket", Cue::Ident(Label::Id)),
    ("reference", Cue::Ident(Label::Id)),
    ("ref", Cue::Ident(Label::Id)),
    ("confirmation", Cue::Ident(Label::Id)),
    ("authorization", Cue::Ident(Label::Id)),
    ("auth", Cue::Ident(Label::Id)),
    ("order", Cue::Ident(Label::Id)),
    ("accession", Cue::Ident(Label::Id)),
    ("employee id", Cue::Ident(Label::Id)),
    ("employee #", Cue::Ident(Label::Id)),
    ("employee no", Cue::Ident(Label::Id)),
    ("emp #", Cue::Ident(Label::Id)),
    // `rep ID A7Q31`, `interpreter Widline ID 307714`, `interp #51190`.
    ("id", Cue::GenericId),
    ("id #", Cue::GenericId),
    ("interpreter", Cue::Ident(Label::Id)),
    ("interp", Cue::Ident(Label::Id)),
    ("tracking", Cue::Ident(Label::Id)),
    ("booking", Cue::Ident(Label::Id)),
    ("student id", Cue::Ident(Label::Id)),
    ("passport", Cue::Ident(Label::License)),
    ("ssn", Cue::Ident(Label::Ssn)),
    ("social security", Cue::Ident(Label::Ssn)),
    ("social", Cue::Ident(Label::Ssn)),
    ("ss#", Cue::Ident(Label::Ssn)),
    ("ending in", Cue::Ident(Label::Ssn)),
    // The corpus labels a card's last four after `card ending in` as SSN; so does this.
    ("card ending", Cue::Ident(Label::Ssn)),
    ("last 4", Cue::Ident(Label::Ssn)),
    ("last four", Cue::Ident(Label::Ssn)),
    ("fax", Cue::Ident(Label::Fax)),
    ("facsimile", Cue::Ident(Label::Fax)),
    ("phone", Cue::Ident(Label::Phone)),
    ("cell", Cue::Ident(Label::Phone)),
    ("mobile", Cue::Ident(Label::Phone)),
    ("tel", Cue::Ident(Label::Phone)),
    ("call", Cue::Ident(Label::Phone)),
    ("callback", Cue::Ident(Label::Phone)),
    ("text me", Cue::Ident(Label::Phone)),
    ("reach me", Cue::Ident(Label::Phone)),
    ("zip", Cue::Ident(Label::Location)),
    ("zipcode", Cue::Ident(Label::Location)),
    ("postal code", Cue::Ident(Label::Location)),
    ("ip", Cue::Ident(Label::Ip)),
    // Names.
    ("this is", Cue::NameIntro),
    ("i'm", Cue::NameIntro),
    ("i’m", Cue::NameIntro),
    ("im", Cue::NameIntro),
    ("i am", Cue::NameIntro),
    ("it's", Cue::NameIntro),
    ("it’s", Cue::NameIntro),
    ("its", Cue::NameIntro),
    ("my name is", Cue::NameIntro),
    ("name is", Cue::NameIntro),
    ("name:", Cue::NameIntro),
    ("name -", Cue::NameIntro),
    ("patient:", Cue::NameIntro),
    ("patient", Cue::NameIntro),
    ("pt:", Cue::NameIntro),
    ("pt", Cue::NameIntro),
    ("spoke with", Cue::NameIntro),
    ("spoke to", Cue::NameIntro),
    ("talked to", Cue::NameIntro),
    ("talked with", Cue::NameIntro),
    ("requested by", Cue::NameIntro),
    ("referred by", Cue::NameIntro),
    ("signed by", Cue::NameIntro),
    ("dictated by", Cue::NameIntro),
    ("attention", Cue::NameIntro),
    ("attn", Cue::NameIntro),
    ("am referring", Cue::NameIntro),
    ("referring", Cue::NameIntro),
    ("dear", Cue::NameIntro),
    ("hi", Cue::NameIntro),
    ("hello", Cue::NameIntro),
    ("hey", Cue::NameIntro),
    ("from:", Cue::NameIntro),
    ("to:", Cue::NameIntro),
    ("cc:", Cue::NameIntro),
    ("caller:", Cue::NameIntro),
    // `someone named kevin`.
    ("named", Cue::NameIntro),
    // `Re: DOE, JANE  DOB ...` on fax covers and letters.
    ("re:", Cue::NameIntro),
    ("contact:", Cue::NameIntro),
    ("emergency contact", Cue::NameIntro),
    ("guarantor", Cue::NameIntro),
    ("insured", Cue::NameIntro),
    ("provider:", Cue::NameIntro),
    ("claimant", Cue::NameIntro),
    ("ordering:", Cue::NameIntro),
    ("ordering provider", Cue::NameIntro),
    ("account holder", Cue::NameIntro),
    ("customer:", Cue::NameIntro),
    ("prescriber:", Cue::NameIntro),
    ("witness:", Cue::NameIntro),
    ("submitted by", Cue::NameIntro),
    ("first name", Cue::NameIntro),
    ("nickname:", Cue::NameIntro),
    ("preferred name", Cue::NameIntro),
    ("goes by", Cue::NameIntro),
    ("owner located:", Cue::NameIntro),
    ("name (first):", Cue::NameIntro),
    ("name (last):", Cue::NameIntro),
    ("name (middle):", Cue::NameIntro),
    ("ask for", Cue::NameIntro),
    ("tell", Cue::NameIntro),
    ("last name", Cue::NameIntro),
    ("surname", Cue::NameIntro),
    ("pcp", Cue::NameIntro),
    // Voicemail: `calling for james pruitt`, `on behalf of our client shaniqua bell`,
    // `a hundred and one year old female agnes whitcombe`.
    ("calling for", Cue::NameIntro),
    ("calling about", Cue::NameIntro),
    ("on behalf of", Cue::NameIntro),
    ("our client", Cue::NameIntro),
    ("our patient", Cue::NameIntro),
    ("your patient", Cue::NameIntro),
    ("old female", Cue::NameIntro),
    ("old male", Cue::NameIntro),
    ("dr", Cue::Title),
    ("dr.", Cue::Title),
    ("doctor", Cue::Title),
    ("mr", Cue::Title),
    ("mr.", Cue::Title),
    ("mrs", Cue::Title),
    ("mrs.", Cue::Title),
    ("ms", Cue::Title),
    ("ms.", Cue::Title),
    ("miss", Cue::Title),
    ("nurse", Cue::Title),
    ("np", Cue::Title),
    ("pa", Cue::Title),
    ("rn", Cue::Title),
    ("prof.", Cue::Title),
    ("doña", Cue::Title),
    ("dona", Cue::Title),
    ("dra", Cue::Title),
    ("dra.", Cue::Title),
    ("sra", Cue::Title),
    ("sra.", Cue::Title),
    ("sr.", Cue::Title),
    ("srta", Cue::Title),
    ("señora", Cue::Title),
    ("señor", Cue::Title),
    ("doc", Cue::Title),
    ("mister", Cue::Title),
    ("daughter", Cue::Relation),
    ("son", Cue::Relation),
    ("husband", Cue::Relation),
    ("wife", Cue::Relation),
    ("partner", Cue::Relation),
    ("spouse", Cue::Relation),
    ("mom", Cue::Relation),
    ("mum", Cue::Relation),
    ("mother", Cue::Relation),
    ("dad", Cue::Relation),
    ("father", Cue::Relation),
    ("sister", Cue::Relation),
    ("brother", Cue::Relation),
    ("grandson", Cue::Relation),
    ("granddaughter", Cue::Relation),
    ("grandma", Cue::Relation),
    ("grandpa", Cue::Relation),
    ("grandmother", Cue::Relation),
    ("grandfather", Cue::Relation),
    ("aunt", Cue::Relation),
    ("uncle", Cue::Relation),
    ("niece", Cue::Relation),
    ("nephew", Cue::Relation),
    ("cousin", Cue::Relation),
    ("caregiver", Cue::Relation),
    ("neighbor", Cue::Relation),
    ("neighbour", Cue::Relation),
    ("roommate", Cue::Relation),
    ("friend", Cue::Relation),
    ("boyfriend", Cue::Relation),
    ("girlfriend", Cue::Relation),
    ("fiance", Cue::Relation),
    ("fiancé", Cue::Relation),
    ("fiancée", Cue::Relation),
    ("child", Cue::Relation),
    ("baby", Cue::Relation),
    ("kid", Cue::Relation),
    ("stepson", Cue::Relation),
    ("stepdaughter", Cue::Relation),
    ("stepmother", Cue::Relation),
    ("stepfather", Cue::Relation),
    ("mother-in-law", Cue::Relation),
    ("daughter-in-law", Cue::Relation),
    ("son-in-law", Cue::Relation),
    ("sister-in-law", Cue::Relation),
    ("brother-in-law", Cue::Relation),
    ("moms", Cue::Relation),
    // Kin words of other languages, used before a name (`kuya Jun`, `tía Rosa`); not `lola`
    // or `tito`, which are names too.
    ("kuya", Cue::Relation),
    ("abuela", Cue::Relation),
    ("abuelo", Cue::Relation),
    ("tía", Cue::Relation),
    ("tío", Cue::Relation),
    ("tia", Cue::Relation),
    ("tio", Cue::Relation),
    ("manmi", Cue::Relation),
    ("tonton", Cue::Relation),
    ("matant", Cue::Relation),
    ("father-in-law", Cue::Relation),
    ("thanks", Cue::SignOff),
    ("thank you", Cue::SignOff),
    ("thx", Cue::SignOff),
    ("sincerely", Cue::SignOff),
    ("regards", Cue::SignOff),
    ("best", Cue::SignOff),
    ("cheers", Cue::SignOff),
    ("cordially", Cue::SignOff),
    ("respectfully", Cue::SignOff),
    ("love", Cue::SignOff),
    ("signed", Cue::SignOff),
    // Dates and ages.
    ("dob", Cue::Birth),
    ("d.o.b", Cue::Birth),
    ("date of birth", Cue::Birth),
    ("birth date", Cue::Birth),
    ("birthdate", Cue::Birth),
    ("birthday", Cue::Birth),
    ("born", Cue::Birth),
    // Not PHI.
    ("mg", Cue::NotPhi),
    ("mcg", Cue::NotPhi),
    ("bp", Cue::NotPhi),
    ("blood pressure", Cue::NotPhi),
    ("cpt", Cue::NotPhi),
    ("icd", Cue::NotPhi),
    ("icd-10", Cue::NotPhi),
    ("code", Cue::NotPhi),
    ("a1c", Cue::NotPhi),
    ("pain", Cue::NotPhi),
    ("glucose", Cue::NotPhi),
    ("sugar", Cue::NotPhi),
    ("weight", Cue::NotPhi),
    ("temp", Cue::NotPhi),
    ("pulse", Cue::NotPhi),
    ("units", Cue::NotPhi),
    ("room", Cue::NotPhi),
    ("suite", Cue::NotPhi),
];

/// The cues' texts.
pub(crate) fn cue_words() -> impl Iterator<Item = &'static str> {
    CUES.iter().map(|(k, _)| *k)
}

/// The compiled cue automaton.
pub(crate) struct Cues {
    /// All cues in one Aho-Corasick DFA, leftmost-longest, run anchored (stepped by hand:
    /// a cue is a few bytes, and the search API's set-up cost more than the steps).
    dfa: DFA,
    /// The DFA's anchored start state.
    start: StateID,
    /// Bit `tri(a, b, c)` is set when some cue starts with bytes that map to `a b c` (see
    /// [`sym`]): a word whose first three bytes are in no cue needs no automaton run, which
    /// is most words.
    starts: Vec<u64>,
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// A lower-case ASCII letter or digit is itself (1..=36); every other byte is 0.
static SYM: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            c @ b'a'..=b'z' => (c - b'a') as u16 + 1,
            c @ b'0'..=b'9' => (c - b'0') as u16 + 27,
            _ => 0,
        };
        b += 1;
    }
    t
};

#[inline]
fn tri(a: u8, b: u8, c: u8) -> usize {
    (usize::from(SYM[usize::from(a)]) * 37 + usize::from(SYM[usize::from(b)])) * 37
        + usize::from(SYM[usize::from(c)])
}

impl Cues {
    pub(crate) fn new() -> Result<Cues, PhiError> {
        let dfa = DFA::builder()
            .match_kind(MatchKind::LeftmostLongest)
            // Run anchored at word starts only, and only where the word can begin a cue
            // (an unanchored scan of every byte was a tenth of the detection time).
            .start_kind(StartKind::Anchored)
            .build(CUES.iter().map(|(k, _)| k))
            .map_err(|_| PhiError::Build { recognizer: "cues" })?;
        let start = dfa
            .start_state(Anchored::Yes)
            .map_err(|_| PhiError::Build { recognizer: "cues" })?;
        let mut starts = vec![0u64; (37 * 37 * 37) / 64 + 1];
        for (k, _) in CUES {
            let b = k.as_bytes();
            let at = |i: usize| b.get(i).copied().unwrap_or(b' ');
            let i = tri(at(0), at(1), at(2));
            if let Some(w) = starts.get_mut(i / 64) {
                *w |= 1 << (i % 64);
            }
        }
        Ok(Cues { dfa, start, starts })
    }

    /// Every cue in `text` that starts and ends on a word boundary, sorted by position, not
    /// overlapping (the longest at each start). `text` must be ASCII-lower-cased (the cues
    /// are lower case). Every cue begins with a letter, so it can only start where a token
    /// does or after a hyphen or apostrophe inside one (`ex-wife`). The hits go into `out`
    /// (cleared first).
    ///
    /// `keys` holds, for each plain word (ASCII letters and digits only, see
    /// [`super::features::word_keys`]), its hash and word classes: such a word can begin a
    /// cue only when it is the first run of letters and digits of one
    /// ([`class::CUE_START`]). A cue that matched inside a longer word would not end on a
    /// word boundary and only moves the search past positions inside that word, so skipping
    /// the word finds the same cues.
    pub(crate) fn find(
        &self,
        text: &str,
        tokens: &[Token],
        keys: &[(u64, u16)],
        out: &mut Vec<CueHit>,
    ) {
        let bytes = text.as_bytes();
        out.clear();
        let mut last_end = 0;
        let at = |i: usize| bytes.get(i).copied().unwrap_or(b' ');
        for (k, t) in tokens.iter().enumerate() {
            let may = if t.kind == Kind::Word && t.ascii && !t.joined {
                keys.get(k).is_none_or(|&(_, c)| c & class::CUE_START != 0)
            } else {
                // A cue shorter than three bytes is followed by a non-word byte, which maps
                // like the end of the cue does.
                let i = tri(at(t.start), at(t.start + 1), at(t.start + 2));
                self.starts
                    .get(i / 64)
                    .is_some_and(|w| w & (1 << (i % 64)) != 0)
            };
            if may && t.start >= last_end {
                self.try_at(text, t.start, &mut last_end, out);
            }
            if t.joined {
                for i in t.start + 1..t.end {
                    if i >= last_end && matches!(bytes.get(i - 1), Some(b'-' | b'\'')) {
                        self.try_at(text, i, &mut last_end, out);
                    }
                }
            }
        }
    }

    /// The cue starting at `s`, if any, recorded when it starts and ends on a word boundary.
    fn try_at(&self, text: &str, s: usize, last_end: &mut usize, out: &mut Vec<CueHit>) {
        let bytes = text.as_bytes();
        let at = |i: usize| bytes.get(i).copied().unwrap_or(b' ');
        let (a, b, c) = (at(s), at(s + 1), at(s + 2));
        let i = tri(a, b, c);
        if self
            .starts
            .get(i / 64)
            .is_none_or(|w| w & (1 << (i % 64)) == 0)
        {
            return;
        }
        let escaped = s >= 2
            && bytes.get(s - 2) == Some(&b'\\')
            && matches!(bytes.get(s - 1), Some(b'n' | b't' | b'r'));
        let before_ok = s == 0
            || escaped
            || !is_word_byte(a)
            || !bytes.get(s - 1).copied().is_some_and(is_word_byte);
        if !before_ok {
            return;
        }
        let Some((pid, e)) = self.longest_at(bytes, s) else {
            return;
        };
        *last_end = e;
        let last = bytes.get(e.wrapping_sub(1)).copied().unwrap_or(b' ');
        let after_ok = !is_word_byte(last) || !bytes.get(e).copied().is_some_and(is_word_byte);
        // `mg/dL`, `bg_mg_dl`: a unit after a slash, not a cue (`dl` for a driver's licence).
        let unit = s >= 2
            && matches!(bytes.get(s - 1), Some(b'/' | b'_'))
            && bytes.get(s - 2).is_some_and(u8::is_ascii_alphabetic);
        if after_ok
            && !unit
            && let Some((_, cue)) = CUES.get(pid)
        {
            out.push(CueHit {
                start: s,
                end: e,
                cue: *cue,
            });
        }
    }
}

impl Cues {
    /// The longest cue that starts at `s` (the anchored leftmost-longest search of the
    /// DFA): its index and end.
    #[inline]
    fn longest_at(&self, bytes: &[u8], s: usize) -> Option<(usize, usize)> {
        let dfa = &self.dfa;
        let mut sid = self.start;
        let mut found = None;
        for (at, &b) in bytes.iter().enumerate().skip(s) {
            sid = dfa.next_state(Anchored::Yes, sid, b);
            if dfa.is_special(sid) {
                if dfa.is_dead(sid) {
                    break;
                }
                if dfa.is_match(sid) {
                    let pid = dfa.match_pattern(sid, 0);
                    let len = dfa.pattern_len(pid);
                    // Matches that start after `s` are reachable only through failure
                    // transitions: not anchored matches.
                    if at + 1 == s + len {
                        found = Some((pid.as_usize(), at + 1));
                    }
                }
            }
        }
        found
    }
}

/// The nearest identifier cue that ends at most `window` bytes before `pos`, skipping
/// over other identifier-like material. Returns its label.
pub(crate) fn ident_label_before(cues: &[CueHit], pos: usize, window: usize) -> Option<Label> {
    let idx = cues.partition_point(|c| c.end <= pos);
    let before = &cues[..idx];
    let (k, hit, label) = before
        .iter()
        .enumerate()
        .rev()
        .take_while(|(_, c)| pos - c.end <= window)
        .find_map(|(k, c)| match c.cue {
            Cue::Ident(l) => Some((k, c, l)),
            // A bare `ID` names only what follows it closely (`rep ID A7Q31`), not a dose
            // or an amount further on.
            Cue::GenericId if pos - c.end <= 12 => Some((k, c, Label::Id)),
            _ => None,
        })?;
    // `Medicaid ID`: a generic `ID` right after a cue that says what the number is takes
    // that cue's label.
    if hit.cue == Cue::GenericId
        && let Some(prev) = k.checked_sub(1).and_then(|j| before.get(j))
        && let Cue::Ident(l) = prev.cue
        && prev.end <= hit.start
        && hit.start - prev.end <= 2
    {
        return Some(l);
    }
    Some(label)
}

/// The nearest cue of any kind that ends at most `window` bytes before `pos`.
pub(crate) fn cue_before(cues: &[CueHit], pos: usize, window: usize) -> Option<&CueHit> {
    let idx = cues.partition_point(|c| c.end <= pos);
    cues[..idx].last().filter(|c| pos - c.end <= window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::tokens::tokenize;

    fn hits(t: &str) -> Vec<(String, Cue)> {
        let lower = t.to_ascii_lowercase();
        let cues = Cues::new().unwrap();
        let mut out = Vec::new();
        cues.find(&lower, &tokenize(t), &[], &mut out);
        out.iter()
            .map(|h| (lower[h.start..h.end].to_string(), h.cue))
            .collect()
    }

    #[test]
    fn cues_start_and_end_on_word_boundaries() {
        let h = hits("My ex-wife said hi, this is Dr. Smith; his MRN: 12\\nhi Thistle");
        let has = |w: &str, c: Cue| h.iter().any(|(x, y)| x == w && *y == c);
        assert!(has("wife", Cue::Relation), "{h:?}");
        assert!(has("this is", Cue::NameIntro), "{h:?}");
        assert!(has("dr.", Cue::Title), "{h:?}");
        assert!(has("mrn", Cue::Ident(Label::Mrn)), "{h:?}");
        // `hi` after a comma-free start and after an escaped `\n`, never inside `his`/`this`.
        assert_eq!(h.iter().filter(|(x, _)| x == "hi").count(), 2, "{h:?}");
        assert!(!h.iter().any(|(x, _)| x == "this" || x == "thistle"));
        // Sorted and disjoint.
        let lower = "My ex-wife said hi, this is Dr. Smith; his MRN: 12\\nhi Thistle";
        let cues = Cues::new().unwrap();
        let mut out = Vec::new();
        cues.find(&lower.to_ascii_lowercase(), &tokenize(lower), &[], &mut out);
        assert!(out.windows(2).all(|w| w[0].end <= w[1].start));
    }
}

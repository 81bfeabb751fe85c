//! The emergency layer: rules for the signs that must never wait in a queue.
//!
//! The rules run on a normalised copy of the text (lower case, apostrophes dropped so `can't` =
//! `cant`, sentence ends as ` . `, other punctuation as spaces) with linear-time automata
//! (`regex-automata`): one pass over every rule at once finds which rules match anywhere; only
//! those (rare) are searched again for their positions. A match counts unless
//!
//! * it is **negated**: a negation (`no`, `not`, `denies`, `dont have`, `without`, ...) among the
//!   five words before it in the same clause (`no chest pain but I can't breathe` still fires on
//!   the second sign; `not sure` and `dont know` are not negations);
//! * it overlaps an **exclusion** (`cant talk right now`, `heat stroke risk`...);
//! * the rule is **contextual** (a bare mention such as `chest pain`, `stroke`, `seizure`,
//!   `passed out`) and its sentence reads as history, administration or a question about
//!   risk (`follow up`, `appointment`, `history of`, `last year`, `refill`, `signs of`, ...)
//!   with no cue that it is happening now (`now`, `today`, `just`, `suddenly`, `again`, ...).
//!
//! Strong rules (`crushing chest pain`, `face is drooping`, `cant breathe`, `took too many`,
//! `want to kill myself`, `throat is swelling`, `wont stop bleeding`, `unresponsive`...) only
//! yield to negation and exclusions.

use std::sync::OnceLock;

use regex_automata::meta::Regex;
use regex_automata::{Input, MatchKind, PatternSet};
use serde::{Deserialize, Serialize};

/// Which emergency sign a message shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmergencySign {
    /// Chest pain or pressure that may be cardiac; heart attack.
    ChestPain,
    /// Stroke signs (FAST: face drooping, arm weakness, speech trouble), sudden vision loss,
    /// the worst headache of one's life.
    Stroke,
    /// Suicidal thoughts, intent to harm oneself.
    SuicideOrSelfHarm,
    /// Overdose or poisoning.
    Overdose,
    /// Anaphylaxis: throat or tongue swelling, an epinephrine pen used.
    Anaphylaxis,
    /// Bleeding that will not stop, heavy bleeding, vomiting or coughing blood.
    SevereBleeding,
    /// Cannot breathe, not breathing, turning blue, choking.
    BreathingTrouble,
    /// Unconscious, unresponsive, collapsed.
    Unconscious,
    /// A seizure.
    Seizure,
    /// A head injury with confusion, vomiting or drowsiness.
    HeadInjury,
    /// Someone says they are calling 911 or heading to the emergency room.
    EmergencyServices,
}

impl EmergencySign {
    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EmergencySign::ChestPain => "chest_pain",
            EmergencySign::Stroke => "stroke",
            EmergencySign::SuicideOrSelfHarm => "suicide_or_self_harm",
            EmergencySign::Overdose => "overdose",
            EmergencySign::Anaphylaxis => "anaphylaxis",
            EmergencySign::SevereBleeding => "severe_bleeding",
            EmergencySign::BreathingTrouble => "breathing_trouble",
            EmergencySign::Unconscious => "unconscious",
            EmergencySign::Seizure => "seizure",
            EmergencySign::HeadInjury => "head_injury",
            EmergencySign::EmergencyServices => "emergency_services",
        }
    }
}

impl std::fmt::Display for EmergencySign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strength {
    /// Fires unless negated or excluded.
    Strong,
    /// Also yields to a history/administrative context in its sentence.
    Contextual,
}

use EmergencySign as S;
use Strength::{Contextual as C, Strong as X};

/// Up to three words.
macro_rules! gap {
    () => {
        r"(?:[^ .]+ ){0,3}"
    };
}
/// Possessives and articles.
macro_rules! poss {
    () => {
        r"(?:my|his|her|their|our|the|your|its)"
    };
}

/// The rules: sign, strength, pattern (on normalised text; word boundaries are added).
const RULES: &[(EmergencySign, Strength, &str)] = &[
    // Chest pain.
    (
        S::ChestPain,
        X,
        concat!(
            r"(?:crushing|squeezing|severe|heavy|intense|terrible|horrible|unbearable|excruciating|really bad|very bad|worst|elephant on) ",
            gap!(),
            r"chest (?:pain|pressure|tightness|hurts)"
        ),
    ),
    (
        S::ChestPain,
        X,
        r"chest (?:pain|pressure|tightness|hurts|is hurting|feels tight)[^.]{0,80}(?:left arm|arm is numb|arm numb|arm went numb|jaw|sweat|sweating|sweaty|short of breath|shortness of breath|cant breathe|nause|faint|lightheaded)[a-z]*",
    ),
    (
        S::ChestPain,
        X,
        r"(?:left arm|arm is numb|arm went numb|jaw|sweating|sweaty|short of breath|shortness of breath|cant breathe)[^.]{0,80}chest (?:pain|pressure|tightness|hurts)",
    ),
    (
        S::ChestPain,
        X,
        r"(?:elephant (?:is )?(?:sitting|standing) on (?:my|his|her) chest|chest feels like (?:an elephant|a weight|a ton|someone|something is) [^.]{0,40})",
    ),
    (
        S::ChestPain,
        X,
        r"pain (?:is )?(?:going|radiating|spreading|shooting|moving) (?:down|into|to|up) (?:my|his|her) (?:left )?(?:arm|jaw|neck)",
    ),
    (
        S::ChestPain,
        X,
        r"(?:having|think (?:im|i am|hes|he is|shes|she is) having|might be having|is having) (?:a )?heart attack",
    ),
    (S::ChestPain, X, r"cardiac arrest"),
    (S::ChestPain, C, r"heart attack"),
    (
        S::ChestPain,
        C,
        r"chest (?:pain|pains|pressure|hurts|is hurting)",
    ),
    (S::ChestPain, C, concat!(r"pain in ", poss!(), r" chest")),
    // Stroke.
    (
        S::Stroke,
        X,
        r"(?:face|mouth|smile|lip|eye|one side) (?:is |looks |seems |went |has gone |started )?(?:drooping|droopy|drooped|crooked|lopsided|sagging|uneven|numb)",
    ),
    (
        S::Stroke,
        X,
        r"(?:drooping|droopy|drooped|lopsided|crooked) (?:face|mouth|smile|lip|eye)",
    ),
    (
        S::Stroke,
        X,
        r"(?:cant|cannot|can not|unable to|couldnt|could not) (?:talk|speak) (?:right|properly|clearly|normally|straight|well)",
    ),
    (
        S::Stroke,
        X,
        r"(?:slurred speech|slurring|speech is slurred|speech (?:is|was|sounds) (?:off|weird|garbled|strange)|words are (?:slurred|jumbled|garbled))",
    ),
    (
        S::Stroke,
        X,
        concat!(
            r"(?:cant|cannot|can not|unable to|couldnt) (?:move|lift|feel) ",
            poss!(),
            r" (?:left |right )?(?:arm|leg|side)"
        ),
    ),
    (
        S::Stroke,
        X,
        r"sudden(?:ly)? (?:[^ .]+ ){0,3}(?:numb|weak|confus|vision|blind|cant see|cant speak|cant talk|cant move|slur|dizzy|trouble (?:speaking|walking|seeing))[a-z]*",
    ),
    (
        S::Stroke,
        X,
        r"(?:worst headache of (?:my|his|her|their) life|thunderclap headache)",
    ),
    (
        S::Stroke,
        X,
        r"(?:having|is having|think (?:im|i am|hes|he is|shes|she is) having|might be having) a stroke",
    ),
    (S::Stroke, C, r"stroke"),
    // Suicide and self-harm.
    (S::SuicideOrSelfHarm, X, r"suicid(?:e|al)"),
    (
        S::SuicideOrSelfHarm,
        X,
        r"(?:kill|hurt|harm|cut|cutting|hurting|harming|killing) (?:myself|himself|herself|themselves|themself)",
    ),
    (
        S::SuicideOrSelfHarm,
        X,
        concat!(r"(?:end|ending|take|taking) ", poss!(), r" (?:own )?life"),
    ),
    (
        S::SuicideOrSelfHarm,
        X,
        r"(?:dont|do not|doesnt|does not|no longer|dont even|dont really) (?:want|wanna) to (?:be alive|live|wake up|be here anymore|exist|go on)",
    ),
    (
        S::SuicideOrSelfHarm,
        X,
        r"(?:want|wants|wanna|going) to die",
    ),
    (
        S::SuicideOrSelfHarm,
        X,
        r"(?:better off dead|no reason to live|not worth living|life isnt worth|end it all|self harm|selfharm|(?:going to|gonna|want to|wanna|ready to|about to|plan to|planning to) end it)",
    ),
    // Overdose and poisoning.
    (
        S::Overdose,
        X,
        r"(?:took|taken|swallowed|gave (?:him|her|them)|given (?:him|her|them)|given) (?:way |far |a lot |like |maybe |probably )?too (?:many|much)",
    ),
    (
        S::Overdose,
        X,
        concat!(
            r"(?:took|taken|swallowed|ate|downed) (?:like |about |maybe |around |over |almost |nearly )?(?:all|a handful|a bunch|the whole|a whole|[0-9]+|ten|twenty|thirty|fifty) (?:of )?(?:",
            poss!(),
            r" )?(?:bottle|pills|tablets|meds|medication|medicine|capsules|gummies|[^ .]+ pills)"
        ),
    ),
    (
        S::Overdose,
        X,
        r"(?:overdosed|overdosing|oded|(?:took|taken|had|has taken) an overdose)",
    ),
    (
        S::Overdose,
        X,
        r"(?:drank|swallowed|ate|ingested|drinking|swallowing|got into) (?:[^ .]+ ){0,3}(?:bleach|antifreeze|poison|detergent|laundry pod|tide pod|drain cleaner|rat poison|lighter fluid|button battery|a battery|batteries|weed killer)",
    ),
    (S::Overdose, X, r"poison control"),
    (
        S::Overdose,
        X,
        r"(?:swallowed|ate|got into|chewed) (?:some of |a bunch of |some |a few of )?(?:(?:her|his|my|the|their) )?[^ .]+s (?:pills|tablets|medication|medicine|meds|vitamins|gummies)|got into (?:the|my|her|his) (?:medicine|medication|pill) (?:cabinet|bottle|box)",
    ),
    (
        S::Overdose,
        X,
        r"(?:double|triple|too much|twice (?:the|my|his|her)) (?:[^ .]+ ){0,2}insulin",
    ),
    (S::Overdose, C, r"overdose"),
    // Anaphylaxis.
    (
        S::Anaphylaxis,
        X,
        r"(?:throat|tongue|airway) (?:is |feels |keeps |started |starting )?(?:swelling|swollen|closing|tight|tightening|closing up|swelling up)",
    ),
    (S::Anaphylaxis, X, r"(?:swelling|swollen) (?:throat|tongue)"),
    (
        S::Anaphylaxis,
        X,
        r"(?:anaphyla[a-z]*|epi ?pen|epinephrine)",
    ),
    (
        S::Anaphylaxis,
        X,
        r"allergic reaction[^.]{0,80}(?:breath|throat|tongue|swell|lips|wheez)[a-z]*",
    ),
    (
        S::Anaphylaxis,
        X,
        r"(?:lips|face|tongue) (?:is |are |keep |started |starting )?(?:swelling|swelling up|blowing up|puffing up)[^.]{0,80}(?:breath|throat|wheez|hives)[a-z]*",
    ),
    // Severe bleeding.
    (
        S::SevereBleeding,
        X,
        r"(?:bleeding|blood|bleed) (?:[^ .]+ ){0,3}(?:wont|will not|doesnt|does not|cant|cannot|isnt|is not|not) (?:stop|slow|stopping|slowing)",
    ),
    (
        S::SevereBleeding,
        X,
        r"(?:wont|will not|doesnt|does not|cant|cannot|cant get it to|not) stop(?:ping)? (?:the )?bleeding",
    ),
    (
        S::SevereBleeding,
        X,
        r"(?:severe|heavy|heavily|lots of|a lot of|so much|uncontrolled|uncontrollable|profuse|gushing|spurting|pouring) (?:bleeding|blood)",
    ),
    (
        S::SevereBleeding,
        X,
        r"bleeding (?:heavily|badly|a lot|profusely|everywhere|through|like crazy|nonstop|non stop)",
    ),
    (
        S::SevereBleeding,
        X,
        r"(?:soaking|soaked|soak) (?:through )?(?:a |one |my |her )?(?:pad|pads|towel|towels)",
    ),
    (
        S::SevereBleeding,
        X,
        r"(?:vomiting|throwing up|coughing up|coughing|puking|spitting up|threw up|vomited) (?:up )?(?:blood|bright red)",
    ),
    (
        S::SevereBleeding,
        X,
        r"(?:deep cut|gash|cut (?:[^ .]+ ){0,3}to the bone)",
    ),
    // Breathing.
    (
        S::BreathingTrouble,
        X,
        concat!(
            r"(?:cant|cannot|can not|couldnt|unable to|struggling to|hard to|trouble|difficulty|difficult to|hard time|fighting to) (?:breathe|breath|breathing|catch ",
            poss!(),
            r" breath|get (?:air|a breath|enough air))"
        ),
    ),
    (
        S::BreathingTrouble,
        X,
        r"(?:not|isnt|stopped|stops|wasnt) breathing",
    ),
    (
        S::BreathingTrouble,
        X,
        r"(?:barely|hardly|can barely|can hardly) (?:breathe|breathing|breath)|(?:turning|turned|going|gone) (?:blue|purple|gray|grey)",
    ),
    (
        S::BreathingTrouble,
        X,
        r"(?:gasping|choking|struggling for air|fighting for air|wheezing badly|cant get air)",
    ),
    (
        S::BreathingTrouble,
        X,
        r"(?:lips|face|skin|fingers) (?:is |are |look |looks |turning |turned |went |going |getting )?(?:blue|gray|grey|purple)",
    ),
    (
        S::BreathingTrouble,
        C,
        r"(?:short of breath|shortness of breath|breathless|out of breath)",
    ),
    // Unconscious.
    (
        S::Unconscious,
        X,
        r"(?:unconscious|unresponsive|not responsive|not responding|wont wake up|will not wake up|wont wake|not waking up|cant wake (?:him|her|them|my [^ .]+) up|cant wake (?:him|her|them)|lost consciousness|losing consciousness)",
    ),
    (
        S::Unconscious,
        X,
        r"(?:he|she|hes|shes|they|theyre|baby) (?:wont|will not|doesnt|does not|isnt|is not|not|cant) (?:respond|responding|wake up|waking up|be woken)",
    ),
    (
        S::Unconscious,
        C,
        r"(?:passed out|fainted|collapsed|blacked out|passing out)",
    ),
    // Seizure.
    (
        S::Seizure,
        X,
        r"(?:seizing|convuls[a-z]*|(?:having|is having|has been having|keeps having) (?:a )?(?:seizure|fit)|seizure (?:[^ .]+ ){0,2}(?:wont|will not|that wont|hasnt|not) stop)",
    ),
    (S::Seizure, C, r"seizures?"),
    // Head injury.
    (
        S::HeadInjury,
        X,
        concat!(
            r"(?:hit|hurt|bumped|banged|struck|smacked|cracked|injured) (?:in |on )?",
            poss!(),
            r" head[^.]{0,100}(?:confus|throw|vomit|puk|pass|unconscious|blood|bleed|drowsy|sleepy|not making sense|wont wake|dizzy|cant remember)[a-z]*"
        ),
    ),
    (
        S::HeadInjury,
        X,
        r"(?:fell|fall|fallen) (?:[^ .]+ ){0,4}head[^.]{0,100}(?:confus|throw|vomit|puk|pass|unconscious|blood|bleed|drowsy|sleepy|not making sense|wont wake)[a-z]*",
    ),
    (S::HeadInjury, C, r"(?:head injury|head trauma|concussion)"),
    // Emergency services.
    (
        S::EmergencyServices,
        X,
        r"(?:call|called|calling|dial|dialed|dialing|phoned) (?:9 ?1 ?1|an ambulance|the ambulance|paramedics|emts)",
    ),
    (
        S::EmergencyServices,
        C,
        r"(?:(?:going|go|headed|heading|on (?:my|our|the) way|taking (?:him|her|them|me)|rushing (?:him|her|them)|driving (?:him|her|them)) to the (?:er|emergency room|emergency department|ed|hospital)|need an ambulance|send an ambulance)",
    ),
    // Meningitis-type and sepsis-type combinations.
    (
        S::Stroke,
        X,
        r"stiff neck[^.]{0,80}(?:fever|rash|confus)[a-z]*|(?:fever|rash)[^.]{0,80}stiff neck",
    ),
];

/// Overlapping one of these cancels a match.
const EXCLUSIONS: &[&str] = &[
    r"(?:cant|cannot|can not) (?:talk|speak) (?:right now|now|at the moment|at work|long|for long|today|this morning|tonight|on the phone)",
    r"heat ?stroke (?:risk|prevention|information|info)",
    r"stroke (?:of luck|of genius)",
    r"(?:back|breast|swim|swimming) ?stroke",
    r"(?:epi ?pen|epinephrine) (?:[^ .]+ ){0,3}(?:refill|prescription|renewal|renew|expired|expiring|expires|coverage|copay|cost|price)",
    r"(?:refill|renew|new|replace|replacement|prescription|script|order|cost of|price of|copay for|coverage for) (?:[^ .]+ ){0,3}(?:epi ?pen|epinephrine)",
    r"(?:cant|cannot|can not|hard to|trouble|difficulty) (?:breathe|breathing) (?:[^ .]+ ){0,2}(?:through|out of|with) (?:my|his|her|the) (?:nose|left nostril|right nostril|stuffy nose)",
    r"suicide (?:prevention|hotline|awareness|crisis line)",
    r"(?:anti ?)?(?:seizure|stroke|heart attack|chest pain|overdose|suicide|epilepsy) (?:meds|med|medication|medications|medicine|pills|prescription|rx|drugs?|clinic|doctor|specialist|prevention|risk|history|follow ?up|appointment|appt|class|test|screening|workup|work up|kit|support group)",
    r"(?:taking|take|took|taken|had) too (?:long|late|early|much time)",
    r"too many (?:calls|messages|texts|emails|voicemails|appointments|bills|questions|forms|times|people|patients)",
    r"(?:trouble|difficulty|hard time|hard) (?:breathing|breathe) (?:[^ .]+ ){0,3}(?:at night|when i (?:lie|sleep|exercise|run|walk|climb))",
];

/// Negations before a sign, in its clause.
const NEGATORS: &[&str] = &[
    "no", "not", "never", "without", "denies", "denied", "deny", "denying", "dont", "doesnt",
    "didnt", "isnt", "arent", "wasnt", "werent", "hasnt", "havent", "hadnt", "nor", "neither",
    "negative", "resolved", "free", "none",
];

/// Phrases that contain a negation word but do not negate what follows.
const PSEUDO_NEGATIONS: &[&str] = &[
    "not sure",
    "not certain",
    "dont know",
    "do not know",
    "not know",
    "no idea",
    "not only",
    "dont think",
    "no matter",
    "cant tell",
    "not kidding",
    "no joke",
    "if not",
    "whether or not",
    "not even",
    "didnt know",
];

/// A sentence with one of these reads as history or administration (for contextual rules).
const CONTEXT_CUES: &str = r"(?:follow up|followup|appointment|appt|schedule|scheduled|reschedule|book|booking|history of|hx of|h o|years ago|year ago|months ago|last year|last month|in the past|used to|past medical|refill|prescription|insurance|bill|billing|invoice|form|forms|records|referral|paperwork|class|pamphlet|information about|info about|education|screening|signs of|symptoms of|risk of|risk for|chance of|prevent|prevention|family history|my father had|my mother had|grandfather had|grandmother had|after my|since my|recovering from|recovery from|survivor|rehab|cardiologist|neurologist|what should i do if|what to do if|in case|if i ever|if he ever|if she ever|clearance|results|test|echo|ekg|ecg|stress test|mri|ct scan|eeg|medication for|medicine for|meds for|pills for|for (?:a |the |several |a few |few |two |three |many |the past |the last )?(?:weeks|months|years|week|month|year)|been like that|going up|walking up|up stairs|up hills|stairs|hills|exercise|exertion|when i walk|when i exercise)";

/// A sentence with one of these is happening now (overrides the context cues).
const ACUTE_CUES: &str = r"(?:now|right now|currently|just|suddenly|sudden|all of a sudden|again|started|starting|this morning|tonight|today|an hour ago|minutes ago|for the last hour|wont stop|getting worse|worse|severe|bad|help|please help|hurry|asap|emergency)";

/// A sentence with one of these says it is over (a contextual match yields even to "now").
const RESOLVED_CUES: &str = r"(?:(?:fine|ok|okay|better|alright|all right|normal|good) now|back to normal|it stopped|has stopped|stopped on its own|resolved|went away)";

/// Compiled rules. Build once ([`Rules::new`]) and share.
pub struct Rules {
    set: Regex,
    /// One regex per rule, compiled the first time its rule matches (most messages match none,
    /// and compiling them all would dominate start-up).
    each: Vec<OnceLock<Option<Regex>>>,
    exclusions: Regex,
    context: Regex,
    acute: Regex,
    resolved: Regex,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("rules", &self.each.len())
            .finish()
    }
}

/// A built-in rule failed to compile (a bug in this crate, never caused by input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("built-in emergency rule {index} does not compile")]
pub struct RuleError {
    /// The index of the rule (in the crate's table).
    pub index: usize,
}

fn bounded(p: &str) -> String {
    format!(r"(?-u:\b)(?:{p})(?-u:\b)")
}

/// What the rules found in one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Signs that count, in order of position.
    pub signs: Vec<EmergencySign>,
    /// Matches cancelled by a negation.
    pub negated: usize,
    /// Matches cancelled by an exclusion or a history context.
    pub suppressed: usize,
}

impl Rules {
    /// Compiles the built-in rules.
    pub fn new() -> Result<Rules, RuleError> {
        let pats: Vec<String> = RULES.iter().map(|(_, _, p)| bounded(p)).collect();
        let set = Regex::builder()
            .configure(Regex::config().match_kind(MatchKind::All))
            .build_many(&pats)
            .map_err(|_| RuleError { index: usize::MAX })?;
        let each = pats.iter().map(|_| OnceLock::new()).collect();
        let exclusions = Regex::new(&bounded(&EXCLUSIONS.join("|")))
            .map_err(|_| RuleError { index: RULES.len() })?;
        let context = Regex::new(&bounded(CONTEXT_CUES)).map_err(|_| RuleError {
            index: RULES.len() + 1,
        })?;
        let acute = Regex::new(&bounded(ACUTE_CUES)).map_err(|_| RuleError {
            index: RULES.len() + 2,
        })?;
        let resolved = Regex::new(&bounded(RESOLVED_CUES)).map_err(|_| RuleError {
            index: RULES.len() + 3,
        })?;
        Ok(Rules {
            set,
            each,
            exclusions,
            context,
            acute,
            resolved,
        })
    }

    /// The first emergency sign that counts, if any.
    pub fn detect(&self, text: &str) -> Option<EmergencySign> {
        self.findings(text).signs.first().copied()
    }

    /// Every sign that counts, and how many matches were cancelled.
    pub fn findings(&self, text: &str) -> Findings {
        self.findings_normalized(&normalize(text))
    }

    /// [`Rules::findings`] on text already normalised.
    pub(crate) fn findings_normalized(&self, norm: &str) -> Findings {
        let mut found = Findings::default();
        let mut patset = PatternSet::new(self.set.pattern_len());
        self.set
            .which_overlapping_matches(&Input::new(norm), &mut patset);
        if patset.is_empty() {
            return found;
        }
        let exclusions: Vec<(usize, usize)> = self
            .exclusions
            .find_iter(norm)
            .map(|m| (m.start(), m.end()))
            .collect();
        let mut hits: Vec<(usize, EmergencySign)> = Vec::new();
        for pid in patset.iter() {
            let i = pid.as_usize();
            let (Some(cell), Some((sign, strength, pattern))) = (self.each.get(i), RULES.get(i))
            else {
                continue;
            };
            let Some(re) = cell.get_or_init(|| Regex::new(&bounded(pattern)).ok()) else {
                // The set matched but the rule alone does not compile (cannot happen with the
                // built-in rules; a test compiles each): fail closed, count the sign.
                hits.push((0, *sign));
                continue;
            };
            for m in re.find_iter(norm) {
                let (s, e) = (m.start(), m.end());
                if exclusions.iter().any(|&(xs, xe)| xs < e && s < xe) {
                    found.suppressed += 1;
                    continue;
                }
                if negated(norm, s) {
                    found.negated += 1;
                    continue;
                }
                if *strength == Strength::Contextual && self.historical(norm, s, e) {
                    found.suppressed += 1;
                    continue;
                }
                hits.push((s, *sign));
            }
        }
        hits.sort();
        for (_, sign) in hits {
            if !found.signs.contains(&sign) {
                found.signs.push(sign);
            }
        }
        found
    }

    /// Whether the sentence around `s..e` reads as history or administration, not as now.
    fn historical(&self, norm: &str, s: usize, e: usize) -> bool {
        let start = norm
            .get(..s)
            .and_then(|p| p.rfind('.'))
            .map_or(0, |i| i + 1);
        let end = norm
            .get(e..)
            .and_then(|p| p.find('.'))
            .map_or(norm.len(), |i| e + i);
        let sentence = norm.get(start..end).unwrap_or("");
        self.resolved.is_match(sentence)
            || (self.context.is_match(sentence) && !self.acute.is_match(sentence))
    }
}

/// Words after `and` or a comma that start a new statement (ending a negation's scope).
const CLAUSE_STARTERS: &[&str] = &[
    "i", "im", "ive", "id", "he", "hes", "she", "shes", "they", "theyre", "we", "were", "my",
    "his", "her", "now", "have", "has", "had", "is", "was", "it", "its", "then", "suddenly",
    "also", "am", "feel", "feels", "started", "having", "getting", "got", "this", "today",
];

/// Words that end a negation's scope.
const TERMINATORS: &[&str] = &[
    "but", "however", "although", "though", "yet", "except", "because", "so", "until", "now",
];

/// Whether a negation stands among the five words before byte `s` within its clause (the
/// sentence, cut at `but`, `however`..., and at `and` or a comma that starts a new statement).
fn negated(norm: &str, s: usize) -> bool {
    let before = norm.get(..s).unwrap_or("");
    let sentence = before
        .rfind('.')
        .map_or(before, |i| before.get(i + 1..).unwrap_or(""));
    let mut clause = format!(" {sentence} ");
    for p in PSEUDO_NEGATIONS {
        clause = clause.replace(&format!(" {p} "), " _ ");
    }
    let words: Vec<&str> = clause.split_whitespace().collect();
    let mut seen = 0;
    for (i, w) in words.iter().enumerate().rev() {
        if TERMINATORS.contains(w) {
            return false;
        }
        if *w == "," || *w == "and" {
            let next = words.get(i + 1).copied().unwrap_or("");
            if *w == "," || CLAUSE_STARTERS.contains(&next) {
                return false;
            }
            continue;
        }
        if NEGATORS.contains(w) {
            return true;
        }
        seen += 1;
        if seen >= 5 {
            return false;
        }
    }
    false
}

/// Lower case, apostrophes dropped, sentence ends as ` . `, commas as ` , `, other punctuation
/// as spaces, single spaces. A point between digits (`101.5`) is dropped, not a sentence end.
pub(crate) fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut space = true;
    let mut prev: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        let this = prev;
        prev = Some(c);
        if matches!(c, '\'' | '\u{2019}' | '\u{2018}' | '`' | '\u{02bc}') {
            continue;
        }
        if c == '.'
            && this.is_some_and(|p| p.is_ascii_digit())
            && next.is_some_and(|n| n.is_ascii_digit())
        {
            continue;
        }
        let mark = match c {
            '.' | '!' | '?' | ';' | '\n' | '\r' | '\u{2026}' => Some('.'),
            ',' => Some(','),
            _ => None,
        };
        if let Some(mark) = mark {
            if !(out.ends_with(". ") || (mark == ',' && out.ends_with(", "))) {
                if !space {
                    out.push(' ');
                }
                out.push(mark);
                out.push(' ');
            }
            space = true;
            continue;
        }
        if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                out.push(l);
            }
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules::new().unwrap()
    }

    #[test]
    fn every_rule_compiles() {
        let r = rules();
        assert_eq!(r.each.len(), RULES.len());
        for (i, (_, _, p)) in RULES.iter().enumerate() {
            assert!(
                Regex::new(&bounded(p)).is_ok(),
                "rule {i} does not compile alone"
            );
        }
    }

    #[test]
    fn normalises_text() {
        assert_eq!(
            normalize("I CAN'T breathe!! Help..."),
            "i cant breathe . help . "
        );
        assert_eq!(normalize("chest—pain, left-arm"), "chest pain , left arm");
        assert_eq!(normalize("fever of 101.5 today"), "fever of 1015 today");
    }

    #[test]
    fn finds_the_signs() {
        let r = rules();
        let cases = [
            (
                "I have crushing chest pain and my left arm is numb",
                S::ChestPain,
            ),
            ("having chest pain right now, sweating", S::ChestPain),
            (
                "my husband can't talk right and his face is drooping",
                S::Stroke,
            ),
            (
                "moms words are slurred and she cant lift her left arm",
                S::Stroke,
            ),
            (
                "i dont want to be alive anymore. i have the pills right here",
                S::SuicideOrSelfHarm,
            ),
            ("I keep thinking about killing myself", S::SuicideOrSelfHarm),
            ("I took too many of my sertraline by accident", S::Overdose),
            ("my toddler swallowed a button battery", S::Overdose),
            ("my daughter swallowed her grandma's pills", S::Overdose),
            ("my throat is swelling after the new pill", S::Anaphylaxis),
            ("had to use my EpiPen after eating peanuts", S::Anaphylaxis),
            ("the cut on his hand won't stop bleeding", S::SevereBleeding),
            ("I'm soaking through a pad every hour", S::SevereBleeding),
            ("baby is not breathing!!", S::BreathingTrouble),
            (
                "she can't catch her breath and her lips are turning blue",
                S::BreathingTrouble,
            ),
            ("dad collapsed and is unresponsive", S::Unconscious),
            ("my son is having a seizure and it won't stop", S::Seizure),
            (
                "She fell and hit her head, she's confused and throwing up",
                S::HeadInjury,
            ),
            ("we are calling 911", S::EmergencyServices),
        ];
        for (text, sign) in cases {
            assert_eq!(r.detect(text), Some(sign), "{text}");
        }
    }

    #[test]
    fn negations_cancel() {
        let r = rules();
        for text in [
            "no chest pain, just a cough",
            "I'm not suicidal, I just feel down",
            "denies chest pain or shortness of breath",
            "I don't have any chest pain",
            "he is not having a seizure, just shaking from the cold",
            "she never passed out",
        ] {
            assert_eq!(r.detect(text), None, "{text}");
        }
        // The negation covers its clause only.
        assert_eq!(
            r.detect("no chest pain but I can't breathe"),
            Some(S::BreathingTrouble)
        );
        // Nor across a new statement.
        assert_eq!(
            r.detect("I'm not feeling well and have crushing chest pain"),
            Some(S::ChestPain)
        );
        assert_eq!(
            r.detect("not well, crushing chest pain"),
            Some(S::ChestPain)
        );
        // Pseudo-negations do not cancel.
        assert_eq!(
            r.detect("not sure but I think I'm having a stroke"),
            Some(S::Stroke)
        );
    }

    #[test]
    fn ordinary_mentions_do_not_fire() {
        let r = rules();
        for text in [
            "I need to book my chest pain follow-up appointment",
            "Can I get a refill on my seizure medication?",
            "ran out of my seizure meds this morning, can you send a refill today",
            "My father had a stroke in 2015, what are the signs of a stroke?",
            "can't talk right now, call me after 5",
            "I need a refill of my EpiPen",
            "is there a suicide prevention class?",
            "chest tightness after starting warfarin",
            "numbness in my left hand",
            "the phone line is 911-555-0000 ext 911",
            "I have too many appointments this week",
            "My mom had a seizure last year, she needs her Keppra refilled",
            "she passed out from exhaustion after the marathon, she's fine now",
            "I feel like I can't breathe through my nose with this cold",
            "I was in the ER last week for chest pain, they said to follow up with you",
            "this bill is killing me",
        ] {
            assert_eq!(r.detect(text), None, "{text}");
        }
    }

    #[test]
    fn a_history_sentence_with_an_acute_cue_still_fires() {
        let r = rules();
        assert_eq!(
            r.detect(
                "I have a follow up appointment next week but the chest pain started again now"
            ),
            Some(S::ChestPain)
        );
    }
}

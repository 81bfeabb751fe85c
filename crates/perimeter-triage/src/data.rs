//! Labelled data: the JSONL records training and evaluation read, and the held-out split.
//!
//! Parsing takes the file's text (the caller reads it); errors name the line and what is wrong,
//! never the line's content.

use perimeter_workflows::Intent;
use serde::Deserialize;

use crate::train::Example;

/// One labelled message: `{"id": "...", "text": "...", "intent": "..."}` (other fields are
/// ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LabelledRecord {
    /// The record's id.
    pub id: String,
    /// The message.
    pub text: String,
    /// The gold intent.
    pub intent: Intent,
}

/// A line that is not a labelled record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct DataError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong (never the content).
    pub problem: &'static str,
}

#[derive(Deserialize)]
struct Raw {
    id: Option<serde_json::Value>,
    text: Option<serde_json::Value>,
    intent: Option<serde_json::Value>,
}

/// Parses JSONL labelled records; blank lines are skipped.
pub fn parse_labelled_jsonl(input: &str) -> Result<Vec<LabelledRecord>, DataError> {
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let err = |problem| DataError {
            line: line_no,
            problem,
        };
        let raw: Raw = serde_json::from_str(line).map_err(|_| err("not a JSON object"))?;
        let id = match raw.id {
            Some(serde_json::Value::String(s)) => s,
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(err("missing string \"id\"")),
        };
        let Some(serde_json::Value::String(text)) = raw.text else {
            return Err(err("missing string \"text\""));
        };
        let Some(serde_json::Value::String(intent)) = raw.intent else {
            return Err(err("missing string \"intent\""));
        };
        let intent = intent
            .parse::<Intent>()
            .map_err(|_| err("\"intent\" is not one of scheduling, refill, billing, records, results, clinical, emergency, general"))?;
        out.push(LabelledRecord { id, text, intent });
    }
    Ok(out)
}

/// Whether a record belongs to the held-out split: about one in five, chosen by a hash of the
/// text, so the split is the same on every machine, does not depend on file order, and a text
/// that occurs twice is on one side only.
pub fn is_held_out(text: &str) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.is_multiple_of(5)
}

/// The training examples: `gold` (all of it, or without the held-out split) then `extra`,
/// whose examples weigh `extra_weight` (few, varied, hand-written messages).
pub fn training_examples(
    gold: &[LabelledRecord],
    extra: &[LabelledRecord],
    exclude_held_out: bool,
    extra_weight: f32,
) -> Vec<Example> {
    gold.iter()
        .filter(|r| !(exclude_held_out && is_held_out(&r.text)))
        .map(|r| Example::new(r.text.clone(), r.intent))
        .chain(extra.iter().map(|r| Example {
            text: r.text.clone(),
            intent: r.intent,
            weight: extra_weight,
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_and_ignores_other_fields() {
        let input = "{\"id\":\"A-1\",\"kind\":\"sms\",\"intent\":\"refill\",\"text\":\"refill pls\",\"spans\":[]}\n\n{\"id\":7,\"text\":\"hi\",\"intent\":\"general\"}\n";
        let r = parse_labelled_jsonl(input).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].intent, Intent::Refill);
        assert_eq!(r[1].id, "7");
    }

    #[test]
    fn errors_name_the_line_never_the_text() {
        let secret = "Maria Gonzalez 555-123-4567";
        let input = format!(
            "{{\"id\":\"a\",\"text\":\"ok\",\"intent\":\"general\"}}\n{{\"id\":\"b\",\"text\":\"{secret}\",\"intent\":\"nope\"}}\n"
        );
        let e = parse_labelled_jsonl(&input).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(!e.to_string().contains("Maria"));
        assert_eq!(
            parse_labelled_jsonl("{\"id\":1}").unwrap_err().problem,
            "missing string \"text\""
        );
        assert_eq!(
            parse_labelled_jsonl(&format!("{secret}\n"))
                .unwrap_err()
                .problem,
            "not a JSON object"
        );
        assert!(parse_labelled_jsonl("{\"id\":\"x\",\"text\":\"t\"}").is_err());
    }

    #[test]
    fn the_split_is_stable_and_about_a_fifth() {
        let held = (0..4000)
            .filter(|i| is_held_out(&format!("A-{i:05}")))
            .count();
        assert!((600..1000).contains(&held), "{held}");
        assert_eq!(is_held_out("A-00001"), is_held_out("A-00001"));
    }
}

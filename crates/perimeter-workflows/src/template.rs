//! Practice-approved reply and reminder templates: `{{placeholder}}` syntax, checked when an
//! administrator saves a template and filled locally when a draft or reminder is made.
//!
//! Only the placeholders in [`PLACEHOLDERS`] exist; a template naming anything else is refused
//! when it is saved, so a saved template always renders. Errors give a position, never the text.

use std::collections::BTreeMap;

/// The placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "given_name",
    "practice_name",
    "appointment_date",
    "appointment_time",
    "callback_number",
];

/// The longest template body accepted, in characters (ten SMS segments).
pub const MAX_TEMPLATE_CHARS: usize = 1530;

/// A template that cannot be saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Empty or only white space.
    #[error("body: expected some text")]
    Empty,
    /// Longer than [`MAX_TEMPLATE_CHARS`].
    #[error("body: expected at most {MAX_TEMPLATE_CHARS} characters")]
    TooLong,
    /// `{{` without a closing `}}`.
    #[error("body: a placeholder opened at character {at} is not closed with }}}}")]
    Unclosed {
        /// Character offset.
        at: usize,
    },
    /// A placeholder that does not exist.
    #[error(
        "body: unknown placeholder at character {at}; expected one of given_name, practice_name, appointment_date, appointment_time, callback_number"
    )]
    Unknown {
        /// Character offset.
        at: usize,
    },
    /// Control characters other than new lines.
    #[error("body: control characters are not allowed")]
    Control,
    /// A value for a used placeholder was not given at render time.
    #[error("a value for placeholder {0} is missing")]
    Missing(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Slot(&'static str),
}

/// A checked template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses and checks a template body.
    pub fn parse(body: &str) -> Result<Template, TemplateError> {
        if body.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        if body.chars().count() > MAX_TEMPLATE_CHARS {
            return Err(TemplateError::TooLong);
        }
        if body.chars().any(|c| c.is_control() && c != '\n') {
            return Err(TemplateError::Control);
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = body;
        let mut offset = 0usize;
        while let Some(open) = rest.find("{{") {
            text.push_str(&rest[..open]);
            let at = offset + rest[..open].chars().count();
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or(TemplateError::Unclosed { at })?;
            let name = after[..close].trim();
            let slot = PLACEHOLDERS
                .iter()
                .find(|p| **p == name)
                .ok_or(TemplateError::Unknown { at })?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Slot(slot));
            let consumed = open + 2 + close + 2;
            offset += rest[..consumed].chars().count();
            rest = &rest[consumed..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    /// The placeholders the template uses, each once.
    pub fn placeholders(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = self
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Slot(s) => Some(*s),
                Part::Text(_) => None,
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Fills the placeholders. Every used placeholder needs a value.
    pub fn render(&self, values: &BTreeMap<&str, String>) -> Result<String, TemplateError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Slot(s) => out.push_str(values.get(*s).ok_or(TemplateError::Missing(s))?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_render() {
        let t = Template::parse(
            "Hi {{ given_name }}, your visit at {{practice_name}} is on {{appointment_date}} at {{appointment_time}}. Reply C to confirm or R to reschedule. {x}",
        )
        .unwrap();
        assert_eq!(
            t.placeholders(),
            vec![
                "appointment_date",
                "appointment_time",
                "given_name",
                "practice_name"
            ]
        );
        let mut v = BTreeMap::new();
        v.insert("given_name", "Ada".to_owned());
        v.insert("practice_name", "Main St".to_owned());
        v.insert("appointment_date", "2026-03-02".to_owned());
        assert_eq!(
            t.render(&v),
            Err(TemplateError::Missing("appointment_time"))
        );
        v.insert("appointment_time", "09:30".to_owned());
        assert_eq!(
            t.render(&v).unwrap(),
            "Hi Ada, your visit at Main St is on 2026-03-02 at 09:30. Reply C to confirm or R to reschedule. {x}"
        );
    }

    #[test]
    fn bad_templates_are_refused_with_a_position() {
        assert_eq!(Template::parse("  "), Err(TemplateError::Empty));
        assert_eq!(
            Template::parse("Hi {{given_name"),
            Err(TemplateError::Unclosed { at: 3 })
        );
        assert_eq!(
            Template::parse("é {{ssn}}"),
            Err(TemplateError::Unknown { at: 2 })
        );
        assert_eq!(Template::parse("a\u{7}b"), Err(TemplateError::Control));
        assert_eq!(
            Template::parse(&"x".repeat(MAX_TEMPLATE_CHARS + 1)),
            Err(TemplateError::TooLong)
        );
        let e = Template::parse("{{patient_secret_value}}").unwrap_err();
        assert!(!e.to_string().contains("patient_secret_value"));
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_text_without_braces_round_trips(s in "\\PC{0,300}") {
            if let Ok(t) = Template::parse(&s)
                && !s.contains("{{")
            {
                prop_assert_eq!(t.render(&BTreeMap::new()).unwrap(), s);
            }
        }

        #[test]
        fn rendering_substitutes_every_slot(
            pre in "[a-z ]{0,20}", post in "[a-z ]{0,20}", value in "[A-Za-z]{1,10}"
        ) {
            let t = Template::parse(&format!("{pre}{{{{given_name}}}}{post}")).unwrap();
            let mut v = BTreeMap::new();
            v.insert("given_name", value.clone());
            prop_assert_eq!(t.render(&v).unwrap(), format!("{pre}{value}{post}"));
        }
    }
}

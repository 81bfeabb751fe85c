//! De-identification of every string a request carries toward the model.
//!
//! What is walked, and what is decided about each field:
//! - **De-identified** (PHI engine, `pseudonymize` mode, the call's vault): the content of
//!   every message (strings and `text`/`refusal` parts), message `name`s, function names and
//!   descriptions, tool parameter schemas (every key and string: descriptions, enums, titles,
//!   defaults, examples, property names), tool-call arguments (each string inside the JSON
//!   text, keys included; the text stays valid JSON in the same order), tool-call ids and
//!   `tool_call_id` (vendor-made ids carry nothing, and a caller's made-up id gets the same
//!   token in both places, so the pairing holds), `stop` sequences, and every string and key
//!   of every field this crate does not know, at any depth.
//! - **Kept verbatim**: `model` (the routing key, checked against the vendor's models), and
//!   enum-like values of `type`, `role`, `tool_choice`, `format`, `detail`,
//!   `reasoning_effort`, `service_tier`, `verbosity`, `modalities`, `finish_reason`, `object`
//!   when they are short lower-case identifiers (anything else in them is de-identified like
//!   any string); booleans, null; numbers in known sampling fields.
//! - **Refused** (nothing is sent): content parts other than text (an image or audio cannot
//!   be de-identified), tool-call arguments that are not valid JSON, a number in an unknown
//!   field that the engine reads as an identifier (it cannot be replaced without changing its
//!   type), and whatever the engine fails on (a field over its size limit).
//! - **Never forwarded**, in either form: `user`, `safety_identifier`, `metadata`, `store` and
//!   `prompt_cache_key` (telemetry about the caller, and a request to retain the call).
//!
//! In the as-is form nothing is rewritten; the walk only records what the request carried,
//! for the output guardrail.

use perimeter_phi::deid::{DeidOptions, Mode, deidentify};
use perimeter_phi::{Engine, Vault};
use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::guard::Originals;
use crate::json_text::{RewriteError, rewrite_strings};
use crate::wire::{ChatCompletionRequest, Content, FunctionCall, FunctionDefinition, Message};

/// Top-level fields that are never forwarded.
pub const NEVER_FORWARDED: &[&str] = &[
    "user",
    "safety_identifier",
    "metadata",
    "store",
    "prompt_cache_key",
];

/// Keys whose short lower-case identifier values are kept verbatim.
const ENUM_KEYS: &[&str] = &[
    "type",
    "role",
    "tool_choice",
    "format",
    "detail",
    "reasoning_effort",
    "service_tier",
    "verbosity",
    "modalities",
    "finish_reason",
    "object",
];

/// Numeric fields kept as they are.
const NUMERIC_KEYS: &[&str] = &[
    "temperature",
    "top_p",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "top_k",
    "min_p",
    "repetition_penalty",
    "top_logprobs",
    "logit_bias",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "multipleOf",
    "exclusiveMinimum",
    "exclusiveMaximum",
];

fn enum_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
}

#[derive(Debug, Clone, Copy)]
enum Seg {
    Key(&'static str),
    Index(usize),
    Extra,
}

/// The walk over one request.
pub(crate) struct Outbound<'a> {
    engine: &'a Engine,
    /// `None` in the as-is form.
    deid: Option<(&'a Vault, DeidOptions)>,
    pub(crate) originals: Originals,
    pub(crate) replaced: u32,
    path: Vec<Seg>,
}

impl<'a> Outbound<'a> {
    pub(crate) fn as_is(engine: &'a Engine) -> Outbound<'a> {
        Outbound {
            engine,
            deid: None,
            originals: Originals::default(),
            replaced: 0,
            path: Vec::new(),
        }
    }

    pub(crate) fn pseudonymise(
        engine: &'a Engine,
        vault: &'a Vault,
        reference_year: i32,
    ) -> Outbound<'a> {
        Outbound {
            engine,
            deid: Some((
                vault,
                DeidOptions {
                    mode: Mode::Pseudonymize,
                    reference_year,
                },
            )),
            originals: Originals::default(),
            replaced: 0,
            path: Vec::new(),
        }
    }

    fn path(&self) -> String {
        let mut s = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(k);
                }
                Seg::Index(i) => {
                    s.push('[');
                    s.push_str(&i.to_string());
                    s.push(']');
                }
                Seg::Extra => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str("<field>");
                }
            }
        }
        if s.is_empty() { "body".into() } else { s }
    }

    fn invalid(&self, reason: &'static str) -> GatewayError {
        GatewayError::InvalidRequest {
            path: self.path(),
            reason,
        }
    }

    fn with<T>(
        &mut self,
        seg: Seg,
        f: impl FnOnce(&mut Self) -> Result<T, GatewayError>,
    ) -> Result<T, GatewayError> {
        self.path.push(seg);
        let r = f(self);
        self.path.pop();
        r
    }

    /// De-identifies one string (in the as-is form, only records it).
    fn text(&mut self, s: &mut String) -> Result<(), GatewayError> {
        if s.is_empty() {
            return Ok(());
        }
        self.originals.add(s);
        let Some((vault, opts)) = self.deid else {
            return Ok(());
        };
        let spans = self
            .engine
            .detect(s)
            .map_err(|source| GatewayError::Deidentification {
                path: self.path(),
                source,
            })?;
        let d =
            deidentify(s, &spans, &opts, vault).map_err(|_| GatewayError::Deidentification {
                path: self.path(),
                source: perimeter_phi::PhiError::Build {
                    recognizer: "deidentify",
                },
            })?;
        self.replaced = self
            .replaced
            .saturating_add(u32::try_from(d.replacements.len()).unwrap_or(u32::MAX));
        *s = d.text;
        Ok(())
    }

    fn opt_text(&mut self, key: &'static str, s: &mut Option<String>) -> Result<(), GatewayError> {
        match s {
            Some(s) => self.with(Seg::Key(key), |w| w.text(s)),
            None => Ok(()),
        }
    }

    /// Tool-call arguments: each string inside the JSON text.
    fn arguments(&mut self, s: &mut Option<String>) -> Result<(), GatewayError> {
        let Some(text) = s else { return Ok(()) };
        self.with(Seg::Key("arguments"), |w| {
            if w.deid.is_none() {
                w.originals.add(text);
                return Ok(());
            }
            if text.trim().is_empty() {
                return Ok(());
            }
            let rewritten = rewrite_strings(text, |v| {
                let mut v = v.to_string();
                w.text(&mut v)?;
                Ok(v)
            });
            match rewritten {
                Ok(r) => {
                    *text = r;
                    Ok(())
                }
                Err(RewriteError::NotJson) => Err(
                    w.invalid("tool-call arguments must be a valid JSON text to be de-identified")
                ),
                Err(RewriteError::Inner(e)) => Err(e),
            }
        })
    }

    /// Any JSON value of a field this crate does not model.
    fn value(&mut self, key: Option<&str>, v: &mut Value) -> Result<(), GatewayError> {
        match v {
            Value::Null | Value::Bool(_) => Ok(()),
            Value::Number(n) => {
                if self.deid.is_none() || key.is_some_and(|k| NUMERIC_KEYS.contains(&k)) {
                    return Ok(());
                }
                // Read with its key as context ("mrn 12345678"): an identifier cannot be
                // replaced inside a number, so the call is refused.
                let digits = n.to_string();
                let probe = format!("{} {digits}", key.unwrap_or(""));
                self.originals.add(&digits);
                let spans = self.engine.detect(&probe).map_err(|source| {
                    GatewayError::Deidentification {
                        path: self.path(),
                        source,
                    }
                })?;
                let number_at = probe.len() - digits.len();
                if spans.iter().any(|s| s.end > number_at) {
                    return Err(self.invalid(
                        "a number in this field reads as an identifier; send it as a string so it can be de-identified",
                    ));
                }
                Ok(())
            }
            Value::String(s) => {
                if key.is_some_and(|k| ENUM_KEYS.contains(&k)) && enum_like(s) {
                    return Ok(());
                }
                self.text(s)
            }
            Value::Array(items) => {
                let key = key.map(str::to_string);
                for (i, item) in items.iter_mut().enumerate() {
                    self.with(Seg::Index(i), |w| w.value(key.as_deref(), item))?;
                }
                Ok(())
            }
            Value::Object(map) => self.map(map),
        }
    }

    /// Every key and value of an object.
    fn map(&mut self, map: &mut Map<String, Value>) -> Result<(), GatewayError> {
        let old = std::mem::take(map);
        for (k, mut v) in old {
            let mut new_key = k.clone();
            self.with(Seg::Extra, |w| {
                w.value(Some(&k), &mut v)?;
                if !(ENUM_KEYS.contains(&k.as_str()) || NUMERIC_KEYS.contains(&k.as_str())) {
                    w.text(&mut new_key)?;
                }
                Ok(())
            })?;
            map.insert(new_key, v);
        }
        Ok(())
    }

    fn function_call(&mut self, f: &mut FunctionCall) -> Result<(), GatewayError> {
        self.opt_text("name", &mut f.name)?;
        self.arguments(&mut f.arguments)?;
        self.map(&mut f.extra)
    }

    fn function_definition(&mut self, f: &mut FunctionDefinition) -> Result<(), GatewayError> {
        self.with(Seg::Key("name"), |w| w.text(&mut f.name))?;
        self.opt_text("description", &mut f.description)?;
        if let Some(p) = &mut f.parameters {
            self.with(Seg::Key("parameters"), |w| w.value(None, p))?;
        }
        self.map(&mut f.extra)
    }

    fn message(&mut self, m: &mut Message) -> Result<(), GatewayError> {
        if !enum_like(&m.role) {
            return Err(self.invalid("role must be system, developer, user, assistant or tool"));
        }
        match &mut m.content {
            Some(Content::Text(s)) => self.with(Seg::Key("content"), |w| w.text(s))?,
            Some(Content::Parts(parts)) => {
                for (i, part) in parts.iter_mut().enumerate() {
                    self.with(Seg::Key("content"), |w| {
                        w.with(Seg::Index(i), |w| {
                            let text_like = part.kind == "text" || part.kind == "refusal";
                            if !text_like && w.deid.is_some() {
                                return Err(w.invalid(
                                    "only text content parts can be de-identified; images, audio and files cannot be sent to this vendor",
                                ));
                            }
                            if !enum_like(&part.kind) {
                                return Err(w.invalid("a content part needs a type"));
                            }
                            w.opt_text("text", &mut part.text)?;
                            w.opt_text("refusal", &mut part.refusal)?;
                            w.map(&mut part.extra)
                        })
                    })?;
                }
            }
            None => {}
        }
        self.opt_text("name", &mut m.name)?;
        self.opt_text("refusal", &mut m.refusal)?;
        self.opt_text("tool_call_id", &mut m.tool_call_id)?;
        if let Some(calls) = &mut m.tool_calls {
            for (i, c) in calls.iter_mut().enumerate() {
                self.with(Seg::Key("tool_calls"), |w| {
                    w.with(Seg::Index(i), |w| {
                        w.opt_text("id", &mut c.id)?;
                        if let Some(k) = &mut c.kind
                            && !enum_like(k)
                        {
                            w.with(Seg::Key("type"), |w| w.text(k))?;
                        }
                        w.with(Seg::Key("function"), |w| w.function_call(&mut c.function))?;
                        w.map(&mut c.extra)
                    })
                })?;
            }
        }
        if let Some(f) = &mut m.function_call {
            self.with(Seg::Key("function_call"), |w| w.function_call(f))?;
        }
        self.map(&mut m.extra)
    }

    /// Walks the whole request, de-identifying in place (pseudonymised form) or only recording
    /// what it carries (as-is form). Fields that are never forwarded are removed first.
    pub(crate) fn request(&mut self, r: &mut ChatCompletionRequest) -> Result<(), GatewayError> {
        for k in NEVER_FORWARDED {
            r.extra.remove(*k);
        }
        if r.extra
            .get("logprobs")
            .is_some_and(|v| v != &Value::Bool(false))
            || r.extra.contains_key("top_logprobs")
        {
            return Err(GatewayError::InvalidRequest {
                path: "logprobs".into(),
                reason: "token log-probabilities cannot pass the output guardrails and are not available through the gateway",
            });
        }
        let audio = r.extra.contains_key("audio")
            || r.extra.get("modalities").is_some_and(|m| match m {
                Value::Array(items) => items.iter().any(|i| i.as_str() != Some("text")),
                _ => true,
            });
        if audio {
            return Err(GatewayError::InvalidRequest {
                path: "modalities".into(),
                reason: "only text output can pass the output guardrails",
            });
        }
        for (i, m) in r.messages.iter_mut().enumerate() {
            self.with(Seg::Key("messages"), |w| {
                w.with(Seg::Index(i), |w| w.message(m))
            })?;
        }
        if let Some(tools) = &mut r.tools {
            for (i, t) in tools.iter_mut().enumerate() {
                self.with(Seg::Key("tools"), |w| {
                    w.with(Seg::Index(i), |w| {
                        if !enum_like(&t.kind) {
                            return Err(w.invalid("a tool needs a type"));
                        }
                        if let Some(f) = &mut t.function {
                            w.with(Seg::Key("function"), |w| w.function_definition(f))?;
                        }
                        w.map(&mut t.extra)
                    })
                })?;
            }
        }
        if let Some(functions) = &mut r.functions {
            for (i, f) in functions.iter_mut().enumerate() {
                self.with(Seg::Key("functions"), |w| {
                    w.with(Seg::Index(i), |w| w.function_definition(f))
                })?;
            }
        }
        self.map(&mut r.extra)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use perimeter_phi::EngineConfig;
    use serde_json::json;

    fn engine() -> Engine {
        Engine::new(EngineConfig::default()).unwrap()
    }

    const PHI: &str = "Hi, this is Maria Gonzalez, DOB 03/02/1981, call (312) 555-8841.";

    fn request() -> ChatCompletionRequest {
        serde_json::from_value(json!({
            "model": "gpt-x",
            "user": "maria.gonzalez@example.com",
            "metadata": {"patient": "Maria Gonzalez"},
            "messages": [
                {"role": "system", "content": PHI, "name": "Maria Gonzalez"},
                {"role": "user", "content": [{"type": "text", "text": PHI}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                    "type": "function", "function": {"name": "lookup",
                    "arguments": serde_json::to_string(&json!({"note": PHI, "Maria Gonzalez": [1, PHI]})).unwrap()}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": PHI}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "description": PHI,
                "parameters": {"type": "object", "properties": {"who": {"type": "string",
                "description": PHI, "enum": [PHI, "Maria Gonzalez"]}}}}}],
            "temperature": 0.3,
            "x_future": {"deep": [PHI, {"Maria Gonzalez": "(312) 555-8841"}]},
            "stop": [PHI]
        }))
        .unwrap()
    }

    #[test]
    fn every_string_is_deidentified_and_round_trips() {
        let e = engine();
        let vault = Vault::with_seed(4);
        let mut r = request();
        let original = request();
        let mut w = Outbound::pseudonymise(&e, &vault, 2026);
        w.request(&mut r).unwrap();
        let body = serde_json::to_string(&r).unwrap();
        for needle in ["Maria", "Gonzalez", "1981", "555-8841", "maria.gonzalez"] {
            assert!(!body.contains(needle), "{needle} in {body}");
        }
        assert!(w.replaced >= 20, "{}", w.replaced);
        // Kept: model, roles, types, numbers, ids.
        assert_eq!(r.model, "gpt-x");
        assert_eq!(r.messages[1].role, "user");
        assert_eq!(r.extra["temperature"], json!(0.3));
        assert!(r.extra.get("user").is_none() && r.extra.get("metadata").is_none());
        let params = &r.tools.as_ref().unwrap()[0]
            .function
            .as_ref()
            .unwrap()
            .parameters;
        assert_eq!(params.as_ref().unwrap()["type"], json!("object"));
        // Arguments stay valid JSON and restore exactly.
        let args = r.messages[2].tool_calls.as_ref().unwrap()[0]
            .function
            .arguments
            .clone()
            .unwrap();
        let v: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(vault.reidentify(v["note"].as_str().unwrap()), PHI);
        let orig_args = original.messages[2].tool_calls.as_ref().unwrap()[0]
            .function
            .arguments
            .clone()
            .unwrap();
        let restored: Value = serde_json::from_str(&vault.reidentify(&args)).unwrap();
        assert_eq!(restored, serde_json::from_str::<Value>(&orig_args).unwrap());
        // The name in a key, in an enum and in a message name is the same token everywhere.
        let name_token = vault_token(&vault, r.messages[0].name.as_deref().unwrap());
        assert!(body.matches(&name_token).count() >= 4, "{body}");
        assert!(w.originals.allows("Maria Gonzalez"));
    }

    fn vault_token(vault: &Vault, token: &str) -> String {
        assert_eq!(vault.reidentify(token), "Maria Gonzalez");
        token.to_string()
    }

    #[test]
    fn as_is_changes_nothing_but_telemetry() {
        let e = engine();
        let mut r = request();
        let mut w = Outbound::as_is(&e);
        w.request(&mut r).unwrap();
        let mut expected = request();
        for k in NEVER_FORWARDED {
            expected.extra.remove(*k);
        }
        assert_eq!(r, expected);
        assert_eq!(w.replaced, 0);
        assert!(w.originals.allows("(312) 555-8841"));
    }

    #[test]
    fn refusals_name_the_field_and_never_the_content() {
        let e = engine();
        let cases = [
            (
                json!({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}),
                "messages[0].content[0]",
            ),
            (
                json!({"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                    "function": {"name": "f", "arguments": "{\"who\": \"Maria Gonzalez\""}}]}),
                "messages[0].tool_calls[0].function.arguments",
            ),
        ];
        for (message, path) in cases {
            let mut r: ChatCompletionRequest =
                serde_json::from_value(json!({"model": "m", "messages": [message]})).unwrap();
            let vault = Vault::with_seed(1);
            let err = Outbound::pseudonymise(&e, &vault, 2026)
                .request(&mut r)
                .unwrap_err();
            match &err {
                GatewayError::InvalidRequest { path: p, .. } => assert_eq!(p, path),
                other => panic!("{other:?}"),
            }
            assert!(!err.to_string().contains("Maria"));
        }
        // A number that reads as an identifier.
        let mut r: ChatCompletionRequest = serde_json::from_value(json!({"model": "m",
            "messages": [], "patient": {"mrn": 12345678}}))
        .unwrap();
        let vault = Vault::with_seed(1);
        let err = Outbound::pseudonymise(&e, &vault, 2026)
            .request(&mut r)
            .unwrap_err();
        assert!(
            matches!(err, GatewayError::InvalidRequest { .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains("12345678"));
        // Over the engine's size limit: refused, with sizes only.
        let small = Engine::new(EngineConfig {
            max_message_bytes: 64,
            ..EngineConfig::default()
        })
        .unwrap();
        let mut r: ChatCompletionRequest = serde_json::from_value(json!({"model": "m",
            "messages": [{"role": "user", "content": PHI.repeat(2)}]}))
        .unwrap();
        let err = Outbound::pseudonymise(&small, &vault, 2026)
            .request(&mut r)
            .unwrap_err();
        assert_eq!(err.code(), "message_too_large");
        assert!(!err.to_string().contains("Maria"));
        // logprobs and audio output are refused in every form.
        for extra in [
            json!({"logprobs": true}),
            json!({"modalities": ["text", "audio"]}),
        ] {
            let mut body = json!({"model": "m", "messages": []});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let mut r: ChatCompletionRequest = serde_json::from_value(body).unwrap();
            assert!(Outbound::as_is(&e).request(&mut r).is_err());
        }
    }
}

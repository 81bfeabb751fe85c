//! The way back: re-identification and the identifier guardrail over the vendor's answer,
//! whole or streamed.
//!
//! Every text channel of an answer goes through a [`TextPipe`]: the vault's
//! [`StreamReidentifier`] (pseudonymised calls only) and then the [`StreamGuard`]. There is one
//! pipe per choice for `content`, for `refusal` and for each other string field of the delta
//! (`reasoning_content`, ...), and one per string literal inside each tool call's (and the
//! legacy function call's) arguments, whose escapes are decoded before and re-encoded after,
//! so restored values are JSON-escaped correctly. Ids and function names are restored whole.
//! Strings in other unknown fields are restored and checked whole, event by event.
//! Token log-probabilities are dropped (the request refuses them; a vendor sending them anyway
//! does not get them past the guardrail).

use std::collections::BTreeMap;
use std::sync::Arc;

use perimeter_phi::{Engine, PhiError, StreamReidentifier, Vault};
use serde_json::{Map, Value};

use crate::error::UpstreamError;
use crate::guard::{Originals, OutputGuard, StreamGuard};
use crate::json_text::{StringsTranscoder, TextSink};
use crate::record::GuardrailHits;
use crate::sse::{SseEvent, SseParser};
use crate::wire::{
    ChatCompletion, ChatCompletionChunk, ChunkChoice, Content, Delta, ErrorBody, FunctionCall,
    ToolCallDelta, Usage,
};

/// What the way back needs: the engine, what the request carried, the vault, the hits.
pub(crate) struct Ctx {
    pub engine: Arc<Engine>,
    pub originals: Originals,
    pub vault: Option<Arc<Vault>>,
    pub hits: GuardrailHits,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("hits", &self.hits)
            .finish_non_exhaustive()
    }
}

/// Re-identification then the guardrail, for one text channel.
pub(crate) struct TextPipe {
    reid: Option<StreamReidentifier<Arc<Vault>>>,
    guard: StreamGuard,
}

impl std::fmt::Debug for TextPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextPipe").finish_non_exhaustive()
    }
}

impl TextPipe {
    pub(crate) fn new(vault: Option<&Arc<Vault>>) -> TextPipe {
        TextPipe {
            reid: vault.map(|v| StreamReidentifier::new(Arc::clone(v))),
            guard: StreamGuard::default(),
        }
    }

    pub(crate) fn push(&mut self, text: &str, ctx: &mut Ctx) -> Result<String, PhiError> {
        let restored;
        let text = match &mut self.reid {
            Some(r) => {
                restored = r.push(text);
                restored.as_str()
            }
            None => text,
        };
        let g = OutputGuard {
            engine: &ctx.engine,
            originals: &ctx.originals,
        };
        self.guard.push(text, &g, &mut ctx.hits.identifiers)
    }

    pub(crate) fn finish(&mut self, ctx: &mut Ctx) -> Result<String, PhiError> {
        let g = OutputGuard {
            engine: &ctx.engine,
            originals: &ctx.originals,
        };
        let mut out = String::new();
        if let Some(r) = &mut self.reid {
            let rest = r.finish();
            out.push_str(&self.guard.push(&rest, &g, &mut ctx.hits.identifiers)?);
            let unknown = u32::try_from(r.unknown_tokens().len()).unwrap_or(u32::MAX);
            ctx.hits.unknown_placeholders = ctx.hits.unknown_placeholders.saturating_add(unknown);
            self.reid = ctx
                .vault
                .as_ref()
                .map(|v| StreamReidentifier::new(Arc::clone(v)));
        }
        out.push_str(&self.guard.finish(&g, &mut ctx.hits.identifiers)?);
        Ok(out)
    }

    /// The whole of one text.
    pub(crate) fn once(text: &str, ctx: &mut Ctx) -> Result<String, PhiError> {
        let mut p = TextPipe::new(ctx.vault.as_ref());
        let mut out = p.push(text, ctx)?;
        out.push_str(&p.finish(ctx)?);
        Ok(out)
    }
}

struct ArgSink<'a> {
    pipe: &'a mut TextPipe,
    ctx: &'a mut Ctx,
}

impl TextSink for ArgSink<'_> {
    type Error = PhiError;
    fn begin(&mut self) {
        *self.pipe = TextPipe::new(self.ctx.vault.as_ref());
    }
    fn push(&mut self, text: &str) -> Result<String, PhiError> {
        self.pipe.push(text, self.ctx)
    }
    fn end(&mut self) -> Result<String, PhiError> {
        self.pipe.finish(self.ctx)
    }
}

/// Tool-call arguments arriving in fragments.
#[derive(Debug)]
pub(crate) struct ArgsPipe {
    transcoder: StringsTranscoder,
    pipe: TextPipe,
}

impl ArgsPipe {
    pub(crate) fn new(ctx: &Ctx) -> ArgsPipe {
        ArgsPipe {
            transcoder: StringsTranscoder::default(),
            pipe: TextPipe::new(ctx.vault.as_ref()),
        }
    }

    pub(crate) fn push(&mut self, fragment: &str, ctx: &mut Ctx) -> Result<String, PhiError> {
        self.transcoder.push(
            fragment,
            &mut ArgSink {
                pipe: &mut self.pipe,
                ctx,
            },
        )
    }

    pub(crate) fn finish(&mut self, ctx: &mut Ctx) -> Result<String, PhiError> {
        self.transcoder.finish(&mut ArgSink {
            pipe: &mut self.pipe,
            ctx,
        })
    }

    pub(crate) fn once(text: &str, ctx: &mut Ctx) -> Result<String, PhiError> {
        let mut p = ArgsPipe::new(ctx);
        let mut out = p.push(text, ctx)?;
        out.push_str(&p.finish(ctx)?);
        Ok(out)
    }
}

/// Restores an id or a name (whole, no guardrail: they are opaque or were the caller's).
fn restore_whole(s: &mut String, ctx: &mut Ctx) {
    if let Some(v) = &ctx.vault {
        let r = v.reidentify_report(s);
        let unknown = u32::try_from(r.unknown_tokens.len()).unwrap_or(u32::MAX);
        ctx.hits.unknown_placeholders = ctx.hits.unknown_placeholders.saturating_add(unknown);
        *s = r.text;
    }
}

/// Restores and checks every string of a value, each whole.
fn restore_value(v: &mut Value, ctx: &mut Ctx) -> Result<(), PhiError> {
    match v {
        Value::String(s) => {
            *s = TextPipe::once(s, ctx)?;
        }
        Value::Array(items) => {
            for i in items {
                restore_value(i, ctx)?;
            }
        }
        Value::Object(map) => restore_map(map, ctx)?,
        _ => {}
    }
    Ok(())
}

fn restore_map(map: &mut Map<String, Value>, ctx: &mut Ctx) -> Result<(), PhiError> {
    for (_, v) in map.iter_mut() {
        restore_value(v, ctx)?;
    }
    Ok(())
}

fn restore_function_call(f: &mut FunctionCall, ctx: &mut Ctx) -> Result<(), PhiError> {
    if let Some(n) = &mut f.name {
        restore_whole(n, ctx);
    }
    if let Some(a) = &mut f.arguments {
        *a = ArgsPipe::once(a, ctx)?;
    }
    restore_map(&mut f.extra, ctx)
}

/// Restores a whole answer in place; returns the texts for the clinical-advice check.
pub(crate) fn restore_completion(
    c: &mut ChatCompletion,
    ctx: &mut Ctx,
) -> Result<Vec<String>, PhiError> {
    let mut texts = Vec::new();
    for choice in &mut c.choices {
        choice.extra.remove("logprobs");
        restore_map(&mut choice.extra, ctx)?;
        let m = &mut choice.message;
        match &mut m.content {
            Some(Content::Text(s)) => {
                *s = TextPipe::once(s, ctx)?;
                texts.push(s.clone());
            }
            Some(Content::Parts(parts)) => {
                for p in parts {
                    for t in [&mut p.text, &mut p.refusal].into_iter().flatten() {
                        *t = TextPipe::once(t, ctx)?;
                        texts.push(t.clone());
                    }
                    restore_map(&mut p.extra, ctx)?;
                }
            }
            None => {}
        }
        if let Some(r) = &mut m.refusal {
            *r = TextPipe::once(r, ctx)?;
            texts.push(r.clone());
        }
        if let Some(calls) = &mut m.tool_calls {
            for call in calls {
                if let Some(id) = &mut call.id {
                    restore_whole(id, ctx);
                }
                restore_function_call(&mut call.function, ctx)?;
                restore_map(&mut call.extra, ctx)?;
            }
        }
        if let Some(f) = &mut m.function_call {
            restore_function_call(f, ctx)?;
        }
        if let Some(n) = &mut m.name {
            restore_whole(n, ctx);
        }
        restore_map(&mut m.extra, ctx)?;
    }
    restore_map(&mut c.extra, ctx)?;
    Ok(texts)
}

/// Why a stream stopped. Carries no content.
#[derive(Debug)]
pub(crate) enum StreamFault {
    /// The vendor failed.
    Upstream(UpstreamError),
    /// The PHI engine failed on the answer.
    Guard,
}

impl From<PhiError> for StreamFault {
    fn from(_: PhiError) -> Self {
        StreamFault::Guard
    }
}

#[derive(Debug)]
struct ChoiceState {
    content: TextPipe,
    refusal: TextPipe,
    extras: BTreeMap<String, TextPipe>,
    tools: BTreeMap<u32, ArgsPipe>,
    function: Option<ArgsPipe>,
    finished: bool,
}

impl ChoiceState {
    fn new(ctx: &Ctx) -> ChoiceState {
        ChoiceState {
            content: TextPipe::new(ctx.vault.as_ref()),
            refusal: TextPipe::new(ctx.vault.as_ref()),
            extras: BTreeMap::new(),
            tools: BTreeMap::new(),
            function: None,
            finished: false,
        }
    }

    /// Releases everything held back into `delta`.
    fn flush(&mut self, delta: &mut Delta, ctx: &mut Ctx) -> Result<(), PhiError> {
        append(&mut delta.content, self.content.finish(ctx)?);
        append(&mut delta.refusal, self.refusal.finish(ctx)?);
        for (k, p) in &mut self.extras {
            let rest = p.finish(ctx)?;
            if rest.is_empty() {
                continue;
            }
            match delta.extra.get_mut(k) {
                Some(Value::String(s)) => s.push_str(&rest),
                _ => {
                    delta.extra.insert(k.clone(), Value::String(rest));
                }
            }
        }
        for (index, p) in &mut self.tools {
            let rest = p.finish(ctx)?;
            if rest.is_empty() {
                continue;
            }
            let calls = delta.tool_calls.get_or_insert_with(Vec::new);
            match calls.iter_mut().find(|c| c.index == *index) {
                Some(c) => {
                    let f = c.function.get_or_insert_with(FunctionCall::default);
                    append(&mut f.arguments, rest);
                }
                None => calls.push(ToolCallDelta {
                    index: *index,
                    id: None,
                    kind: None,
                    function: Some(FunctionCall {
                        name: None,
                        arguments: Some(rest),
                        extra: Map::new(),
                    }),
                    extra: Map::new(),
                }),
            }
        }
        if let Some(p) = &mut self.function {
            let rest = p.finish(ctx)?;
            if !rest.is_empty() {
                let f = delta
                    .function_call
                    .get_or_insert_with(FunctionCall::default);
                append(&mut f.arguments, rest);
            }
        }
        Ok(())
    }
}

fn append(slot: &mut Option<String>, rest: String) {
    if rest.is_empty() {
        return;
    }
    match slot {
        Some(s) => s.push_str(&rest),
        None => *slot = Some(rest),
    }
}

fn delta_is_empty(d: &Delta) -> bool {
    d.role.is_none()
        && d.content.as_deref().is_none_or(str::is_empty)
        && d.refusal.as_deref().is_none_or(str::is_empty)
        && d.tool_calls.as_ref().is_none_or(Vec::is_empty)
        && d.function_call.is_none()
        && d.extra.is_empty()
}

/// Turns the vendor's event stream into the caller's.
#[derive(Debug)]
pub(crate) struct StreamRelay {
    parser: SseParser,
    pub(crate) ctx: Ctx,
    choices: BTreeMap<u32, ChoiceState>,
    pub(crate) usage: Option<Usage>,
    caller_wants_usage: bool,
    head: Option<ChatCompletionChunk>,
    pub(crate) done: bool,
    events: Vec<SseEvent>,
}

impl StreamRelay {
    pub(crate) fn new(ctx: Ctx, caller_wants_usage: bool, max_event_bytes: usize) -> StreamRelay {
        StreamRelay {
            parser: SseParser::new(max_event_bytes),
            ctx,
            choices: BTreeMap::new(),
            usage: None,
            caller_wants_usage,
            head: None,
            done: false,
            events: Vec::new(),
        }
    }

    /// Feeds a piece of the vendor's stream; appends the caller's bytes to `out`.
    pub(crate) fn push(&mut self, piece: &[u8], out: &mut Vec<u8>) -> Result<(), StreamFault> {
        let mut events = std::mem::take(&mut self.events);
        let parsed = self.parser.push(piece, &mut events);
        let result = (|| {
            for e in events.drain(..) {
                self.event(&e.data, out)?;
            }
            Ok(())
        })();
        self.events = events;
        parsed.map_err(|_| StreamFault::Upstream(UpstreamError::InvalidResponse))?;
        result
    }

    /// The vendor's stream ended (connection closed).
    pub(crate) fn end(&mut self, out: &mut Vec<u8>) -> Result<(), StreamFault> {
        self.parser.finish();
        if self.done {
            return Ok(());
        }
        // Without `[DONE]`, the answer is complete only if every choice said why it stopped.
        if !self.choices.is_empty() && self.choices.values().all(|c| c.finished) {
            self.flush_all(out)?;
            self.done = true;
            return Ok(());
        }
        Err(StreamFault::Upstream(UpstreamError::Truncated))
    }

    fn event(&mut self, data: &str, out: &mut Vec<u8>) -> Result<(), StreamFault> {
        if self.done {
            // Anything after `[DONE]` (a second one included) is not relayed.
            return Ok(());
        }
        if data.trim() == "[DONE]" {
            self.flush_all(out)?;
            self.done = true;
            return Ok(());
        }
        let chunk: ChatCompletionChunk = serde_json::from_str(data)
            .map_err(|_| StreamFault::Upstream(UpstreamError::InvalidResponse))?;
        if let Some(e) = chunk.extra.get("error") {
            let code = e
                .get("code")
                .and_then(Value::as_str)
                .filter(|c| {
                    c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
                .map(str::to_string);
            return Err(StreamFault::Upstream(UpstreamError::StreamError { code }));
        }
        if let Some(c) = self.chunk(chunk)? {
            write_event(&c, out);
        }
        Ok(())
    }

    fn chunk(
        &mut self,
        mut chunk: ChatCompletionChunk,
    ) -> Result<Option<ChatCompletionChunk>, PhiError> {
        let ctx = &mut self.ctx;
        if !chunk.extra.is_empty() {
            restore_map(&mut chunk.extra, ctx)?;
        }
        if let Some(u) = chunk.usage.take() {
            if self.caller_wants_usage {
                chunk.usage = Some(u.clone());
            }
            self.usage = Some(u);
        }
        let mut kept = Vec::with_capacity(chunk.choices.len());
        for mut choice in std::mem::take(&mut chunk.choices) {
            let st = self
                .choices
                .entry(choice.index)
                .or_insert_with(|| ChoiceState::new(ctx));
            let had_role = choice.delta.role.is_some();
            let d = &mut choice.delta;
            if let Some(c) = &mut d.content {
                let was_empty = c.is_empty();
                *c = st.content.push(c, ctx)?;
                if c.is_empty() && !was_empty {
                    d.content = None;
                }
            }
            if let Some(r) = &mut d.refusal {
                *r = st.refusal.push(r, ctx)?;
                if r.is_empty() {
                    d.refusal = None;
                }
            }
            if let Some(calls) = &mut d.tool_calls {
                for call in calls.iter_mut() {
                    if let Some(id) = &mut call.id {
                        restore_whole(id, ctx);
                    }
                    restore_map(&mut call.extra, ctx)?;
                    let pipe = st
                        .tools
                        .entry(call.index)
                        .or_insert_with(|| ArgsPipe::new(ctx));
                    if let Some(f) = &mut call.function {
                        if let Some(n) = &mut f.name {
                            restore_whole(n, ctx);
                        }
                        if let Some(a) = &mut f.arguments {
                            *a = pipe.push(a, ctx)?;
                        }
                        restore_map(&mut f.extra, ctx)?;
                    }
                }
                calls.retain(|c| {
                    c.id.is_some()
                        || c.kind.is_some()
                        || !c.extra.is_empty()
                        || c.function.as_ref().is_some_and(|f| {
                            f.name.is_some()
                                || f.arguments.as_deref().is_some_and(|a| !a.is_empty())
                                || !f.extra.is_empty()
                        })
                });
            }
            if d.tool_calls.as_ref().is_some_and(Vec::is_empty) {
                d.tool_calls = None;
            }
            if let Some(f) = &mut d.function_call {
                if let Some(n) = &mut f.name {
                    restore_whole(n, ctx);
                }
                let pipe = st.function.get_or_insert_with(|| ArgsPipe::new(ctx));
                if let Some(a) = &mut f.arguments {
                    *a = pipe.push(a, ctx)?;
                }
                if f.name.is_none()
                    && f.arguments.as_deref().is_none_or(str::is_empty)
                    && f.extra.is_empty()
                {
                    d.function_call = None;
                }
            }
            let keys: Vec<String> = d.extra.keys().cloned().collect();
            for k in keys {
                let Some(v) = d.extra.get_mut(&k) else {
                    continue;
                };
                if let Value::String(s) = v {
                    let pipe = st
                        .extras
                        .entry(k.clone())
                        .or_insert_with(|| TextPipe::new(ctx.vault.as_ref()));
                    *s = pipe.push(s, ctx)?;
                    if s.is_empty() {
                        d.extra.remove(&k);
                    }
                } else {
                    restore_value(v, ctx)?;
                }
            }
            if choice.finish_reason.is_some() {
                st.flush(&mut choice.delta, ctx)?;
                st.finished = true;
            }
            choice.extra.remove("logprobs");
            restore_map(&mut choice.extra, ctx)?;
            if had_role || choice.finish_reason.is_some() || !delta_is_empty(&choice.delta) {
                kept.push(choice);
            }
        }
        if self.head.is_none() {
            let mut head = chunk.clone();
            head.usage = None;
            self.head = Some(head);
        }
        chunk.choices = kept;
        let emit = !chunk.choices.is_empty() || chunk.usage.is_some();
        Ok(emit.then_some(chunk))
    }

    fn flush_all(&mut self, out: &mut Vec<u8>) -> Result<(), PhiError> {
        let mut choices = Vec::new();
        for (index, st) in &mut self.choices {
            if st.finished {
                continue;
            }
            let mut delta = Delta::default();
            st.flush(&mut delta, &mut self.ctx)?;
            if !delta_is_empty(&delta) {
                choices.push(ChunkChoice {
                    index: *index,
                    delta,
                    finish_reason: None,
                    extra: Map::new(),
                });
            }
        }
        if !choices.is_empty()
            && let Some(mut head) = self.head.clone()
        {
            head.choices = choices;
            write_event(&head, out);
        }
        Ok(())
    }
}

/// Appends one `data:` event.
pub(crate) fn write_event<T: serde::Serialize>(v: &T, out: &mut Vec<u8>) {
    out.extend_from_slice(b"data: ");
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"{}");
    }
    out.extend_from_slice(b"\n\n");
}

/// The event that ends a failed stream.
pub(crate) fn error_event(body: &ErrorBody) -> Vec<u8> {
    let mut out = Vec::new();
    write_event(body, &mut out);
    out
}

/// The caller's stream for a whole answer (patient-facing purposes are checked before
/// release, so a stream is made from the checked answer).
pub(crate) fn completion_as_events(c: &ChatCompletion, usage: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let choices = c
        .choices
        .iter()
        .map(|ch| {
            let m = &ch.message;
            let content = match &m.content {
                Some(Content::Text(s)) => Some(s.clone()),
                Some(Content::Parts(parts)) => Some(
                    parts
                        .iter()
                        .filter_map(|p| p.text.clone())
                        .collect::<String>(),
                ),
                None => None,
            };
            ChunkChoice {
                index: ch.index,
                delta: Delta {
                    role: Some(if m.role.is_empty() {
                        "assistant".into()
                    } else {
                        m.role.clone()
                    }),
                    content,
                    refusal: m.refusal.clone(),
                    tool_calls: m.tool_calls.as_ref().map(|calls| {
                        calls
                            .iter()
                            .enumerate()
                            .map(|(i, call)| ToolCallDelta {
                                index: u32::try_from(i).unwrap_or(u32::MAX),
                                id: call.id.clone(),
                                kind: call.kind.clone(),
                                function: Some(call.function.clone()),
                                extra: Map::new(),
                            })
                            .collect()
                    }),
                    function_call: m.function_call.clone(),
                    extra: Map::new(),
                },
                finish_reason: ch.finish_reason.clone(),
                extra: Map::new(),
            }
        })
        .collect();
    let chunk = ChatCompletionChunk {
        id: c.id.clone(),
        object: "chat.completion.chunk".into(),
        created: c.created,
        model: c.model.clone(),
        choices,
        usage: None,
        extra: Map::new(),
    };
    write_event(&chunk, &mut out);
    if usage && let Some(u) = &c.usage {
        let mut last = chunk;
        last.choices.clear();
        last.usage = Some(u.clone());
        write_event(&last, &mut out);
    }
    out
}

//! The built-in provider: a local GGUF model run in-process (feature `local-model`).
//!
//! It sits behind the same sealed [`Provider`] path as vendors: the gateway prepares the
//! request under a permit, [`LocalProvider`] reads the prepared OpenAI body and answers in the
//! OpenAI format (a JSON completion, or `chat.completion.chunk` events ending with
//! `data: [DONE]`), and the gateway restores, checks, records and releases it as it does any
//! vendor's answer. Nothing leaves the process. Its terms ([`LocalProvider::terms`]) say it
//! runs inside the perimeter, so the policy lets PHI go to it as is without a BAA.
//!
//! Supported request fields: `messages` (system, developer, user and assistant turns with text
//! content or text parts), `temperature`, `top_p`, `seed`, `max_tokens` /
//! `max_completion_tokens`, `stop`, `n` = 1, `stream`, `stream_options`. Tools, function
//! calls, images, log-probabilities and JSON response formats are refused with a 400 (the
//! model cannot honour them), never ignored. Other fields are ignored.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use perimeter_domain::SharedClock;
use perimeter_llm::{
    ChatMessage, Completion, GenerationParams, GenerationStream, LlmError, LocalModel, StreamEvent,
};
use serde_json::{Map, Value};

use crate::error::UpstreamError;
use crate::provider::{BoxFuture, ByteStream, Provider, UpstreamReply, UpstreamRequest, sealed};
use crate::vendor::{DataClass, VendorTerms};
use crate::wire::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Choice, ChunkChoice, Content,
    Delta, Message, Usage,
};

/// The in-process model as a provider.
pub struct LocalProvider {
    vendor: String,
    model: LocalModel,
    clock: SharedClock,
    calls: AtomicU64,
}

impl fmt::Debug for LocalProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalProvider")
            .field("vendor", &self.vendor)
            .field("model", &self.model.info().name)
            .finish_non_exhaustive()
    }
}

fn bad_request(code: &str, param: Option<&str>) -> UpstreamError {
    UpstreamError::Status {
        status: 400,
        kind: Some("invalid_request_error".into()),
        code: Some(code.into()),
        param: param.map(str::to_string),
    }
}

/// The model's errors as the gateway's (codes only; no text).
fn upstream(e: &LlmError) -> UpstreamError {
    match e {
        LlmError::ContextLength { .. } => bad_request(e.code(), Some("messages")),
        LlmError::InvalidParameter { param, .. } => bad_request(e.code(), Some(param)),
        LlmError::InvalidChoice(_) | LlmError::Template(_) => bad_request(e.code(), None),
        LlmError::Busy { .. } => UpstreamError::Status {
            status: 429,
            kind: Some("rate_limit_error".into()),
            code: Some(e.code().into()),
            param: None,
        },
        LlmError::Cancelled => UpstreamError::Interrupted,
        _ => UpstreamError::Status {
            status: 500,
            kind: Some("server_error".into()),
            code: Some(e.code().into()),
            param: None,
        },
    }
}

fn number(extra: &Map<String, Value>, key: &'static str) -> Result<Option<f64>, UpstreamError> {
    match extra.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad_request("invalid_parameter", Some(key))),
        Some(_) => Err(bad_request("invalid_parameter", Some(key))),
    }
}

fn count(extra: &Map<String, Value>, key: &'static str) -> Result<Option<u32>, UpstreamError> {
    match extra.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| bad_request("invalid_parameter", Some(key))),
    }
}

/// What the model is asked to do.
struct Call {
    messages: Vec<ChatMessage>,
    params: GenerationParams,
    stream: bool,
    include_usage: bool,
}

fn text_of(m: &Message, i: usize) -> Result<String, UpstreamError> {
    let param = || format!("messages[{i}].content");
    match &m.content {
        Some(Content::Text(s)) => Ok(s.clone()),
        Some(Content::Parts(parts)) => {
            let mut out = String::new();
            for p in parts {
                match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => out.push_str(t),
                    _ => {
                        return Err(UpstreamError::Status {
                            status: 400,
                            kind: Some("invalid_request_error".into()),
                            code: Some("unsupported_content".into()),
                            param: Some(param()),
                        });
                    }
                }
            }
            Ok(out)
        }
        None => Err(UpstreamError::Status {
            status: 400,
            kind: Some("invalid_request_error".into()),
            code: Some("missing_content".into()),
            param: Some(param()),
        }),
    }
}

fn read_call(request: &ChatCompletionRequest) -> Result<Call, UpstreamError> {
    if request.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(bad_request("tools_unsupported", Some("tools")));
    }
    if request.functions.as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(bad_request("tools_unsupported", Some("functions")));
    }
    let extra = &request.extra;
    if count(extra, "n")?.is_some_and(|n| n != 1) {
        return Err(bad_request("invalid_parameter", Some("n")));
    }
    if extra.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(bad_request("logprobs_unsupported", Some("logprobs")));
    }
    if let Some(format) = extra.get("response_format")
        && format.get("type").and_then(Value::as_str) != Some("text")
    {
        return Err(bad_request(
            "response_format_unsupported",
            Some("response_format"),
        ));
    }
    let mut messages = Vec::with_capacity(request.messages.len());
    for (i, m) in request.messages.iter().enumerate() {
        if m.tool_calls.is_some() || m.function_call.is_some() {
            return Err(bad_request("tools_unsupported", Some("messages")));
        }
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            _ => {
                return Err(UpstreamError::Status {
                    status: 400,
                    kind: Some("invalid_request_error".into()),
                    code: Some("unsupported_role".into()),
                    param: Some(format!("messages[{i}].role")),
                });
            }
        };
        messages.push(ChatMessage::new(role, text_of(m, i)?));
    }
    if messages.is_empty() {
        return Err(bad_request("invalid_parameter", Some("messages")));
    }
    let stop = match extra.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad_request("invalid_parameter", Some("stop")))?,
        Some(_) => return Err(bad_request("invalid_parameter", Some("stop"))),
    };
    let seed = match extra.get("seed") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_i64().map(|i| i as u64))
            .ok_or_else(|| bad_request("invalid_parameter", Some("seed")))?,
    };
    let params = GenerationParams {
        max_tokens: match count(extra, "max_completion_tokens")? {
            Some(n) => Some(n),
            None => count(extra, "max_tokens")?,
        },
        // OpenAI's default temperature is 1.
        temperature: number(extra, "temperature")?.unwrap_or(1.0),
        top_p: number(extra, "top_p")?,
        seed,
        stop,
    };
    let include_usage = extra
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Call {
        messages,
        params,
        stream: request.is_stream(),
        include_usage,
    })
}

fn usage(c: &Completion) -> Usage {
    Usage {
        prompt_tokens: Some(u64::from(c.usage.prompt_tokens)),
        completion_tokens: Some(u64::from(c.usage.completion_tokens)),
        total_tokens: Some(u64::from(c.usage.total_tokens())),
        extra: Map::new(),
    }
}

impl LocalProvider {
    /// A provider registered as `vendor` (its registry name, e.g. `local`) for `model`, which
    /// serves the model's configured name ([`perimeter_llm::ModelConfig::name`]). `clock` gives
    /// the `created` time of answers.
    pub fn new(vendor: impl Into<String>, model: LocalModel, clock: SharedClock) -> LocalProvider {
        LocalProvider {
            vendor: vendor.into(),
            model,
            clock,
            calls: AtomicU64::new(0),
        }
    }

    /// The model.
    pub fn model(&self) -> &LocalModel {
        &self.model
    }

    /// The model name callers put in `model`.
    pub fn model_name(&self) -> &str {
        &self.model.info().name
    }

    /// The terms the policy weighs: inside the perimeter, so PHI may go to it as is, with no
    /// BAA (nothing leaves the process).
    pub fn terms(&self) -> VendorTerms {
        VendorTerms {
            name: self.vendor.clone(),
            configured_class: DataClass::Phi,
            baa: None,
            inside_perimeter: true,
        }
    }

    fn next_id(&self) -> String {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let t = self.clock.now().unix_timestamp_nanos();
        format!("chatcmpl-local-{t:x}-{n}")
    }

    async fn run(&self, request: UpstreamRequest) -> Result<UpstreamReply, UpstreamError> {
        let parsed: ChatCompletionRequest = serde_json::from_slice(request.body())
            .map_err(|_| bad_request("invalid_body", None))?;
        let call = read_call(&parsed)?;
        let id = self.next_id();
        let created = self.clock.now().unix_timestamp();
        let model = self.model_name().to_string();
        let generation = self
            .model
            .generate(&call.messages, &call.params)
            .map_err(|e| upstream(&e))?;
        if call.stream && request.stream() {
            return Ok(UpstreamReply::Stream {
                body: Box::new(LocalStream {
                    generation,
                    id,
                    created,
                    model,
                    include_usage: call.include_usage,
                    state: StreamState::Start,
                }),
                attempts: 1,
            });
        }
        let completion = generation.collect().await.map_err(|e| upstream(&e))?;
        let body = ChatCompletion {
            id,
            object: "chat.completion".into(),
            created,
            model,
            choices: vec![Choice {
                index: 0,
                message: Message {
                    role: "assistant".into(),
                    content: Some(Content::Text(completion.text.clone())),
                    ..Message::default()
                },
                finish_reason: Some(completion.finish_reason.as_str().into()),
                extra: Map::new(),
            }],
            usage: Some(usage(&completion)),
            extra: Map::new(),
        };
        let bytes = serde_json::to_vec(&body).map_err(|_| UpstreamError::InvalidResponse)?;
        Ok(UpstreamReply::Complete {
            body: Bytes::from(bytes),
            attempts: 1,
        })
    }
}

impl sealed::Sealed for LocalProvider {}

impl Provider for LocalProvider {
    fn vendor(&self) -> &str {
        &self.vendor
    }

    fn serves(&self, model: &str) -> bool {
        model == self.model_name()
    }

    fn inside_perimeter(&self) -> bool {
        true
    }

    fn send<'a>(
        &'a self,
        request: UpstreamRequest,
    ) -> BoxFuture<'a, Result<UpstreamReply, UpstreamError>> {
        Box::pin(self.run(request))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Start,
    Running,
    Finished,
    Over,
}

/// The model's stream as OpenAI chunk events. Dropping it cancels the generation.
struct LocalStream {
    generation: GenerationStream,
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    state: StreamState,
}

impl fmt::Debug for LocalStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStream")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl LocalStream {
    fn event(&self, delta: Delta, finish: Option<&str>, usage: Option<Usage>) -> Vec<u8> {
        let choices = if usage.is_some() {
            Vec::new()
        } else {
            vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish.map(str::to_string),
                extra: Map::new(),
            }]
        };
        let chunk = ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
            extra: Map::new(),
        };
        let mut out = b"data: ".to_vec();
        // Serialising these plain structs cannot fail; an empty event would be refused by
        // the gateway's parser rather than pass as an answer.
        out.extend(serde_json::to_vec(&chunk).unwrap_or_default());
        out.extend_from_slice(b"\n\n");
        out
    }
}

impl ByteStream for LocalStream {
    fn next_piece(&mut self) -> BoxFuture<'_, Result<Option<Bytes>, UpstreamError>> {
        Box::pin(async move {
            match self.state {
                StreamState::Start => {
                    self.state = StreamState::Running;
                    let delta = Delta {
                        role: Some("assistant".into()),
                        content: Some(String::new()),
                        ..Delta::default()
                    };
                    Ok(Some(Bytes::from(self.event(delta, None, None))))
                }
                StreamState::Running => match self.generation.next().await {
                    Some(Ok(StreamEvent::Delta(text))) => {
                        let delta = Delta {
                            content: Some(text),
                            ..Delta::default()
                        };
                        Ok(Some(Bytes::from(self.event(delta, None, None))))
                    }
                    Some(Ok(StreamEvent::Done(c))) => {
                        self.state = StreamState::Finished;
                        let mut out =
                            self.event(Delta::default(), Some(c.finish_reason.as_str()), None);
                        if self.include_usage {
                            out.extend(self.event(Delta::default(), None, Some(usage(&c))));
                        }
                        Ok(Some(Bytes::from(out)))
                    }
                    Some(Err(e)) => {
                        self.state = StreamState::Over;
                        Err(UpstreamError::StreamError {
                            code: Some(e.code().into()),
                        })
                    }
                    None => {
                        self.state = StreamState::Over;
                        Err(UpstreamError::Truncated)
                    }
                },
                StreamState::Finished => {
                    self.state = StreamState::Over;
                    Ok(Some(Bytes::from_static(b"data: [DONE]\n\n")))
                }
                StreamState::Over => Ok(None),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(v: Value) -> Result<Call, UpstreamError> {
        read_call(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn requests_the_model_cannot_honour_are_refused_not_ignored() {
        let base = |extra: Value| {
            let mut v = json!({"model": "local", "messages": [{"role": "user", "content": "hi"}]});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let code = |r: Result<Call, UpstreamError>| match r {
            Err(UpstreamError::Status { code, param, .. }) => (code.unwrap(), param),
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(
            code(call(base(
                json!({"tools": [{"type": "function", "function": {"name": "f"}}]})
            )))
            .0,
            "tools_unsupported"
        );
        assert_eq!(code(call(base(json!({"n": 2})))).1.as_deref(), Some("n"));
        assert_eq!(
            code(call(base(json!({"logprobs": true})))).0,
            "logprobs_unsupported"
        );
        assert_eq!(
            code(call(base(
                json!({"response_format": {"type": "json_object"}})
            )))
            .0,
            "response_format_unsupported"
        );
        assert_eq!(
            code(call(base(json!({"temperature": "hot"})))).1.as_deref(),
            Some("temperature")
        );
        assert_eq!(
            code(call(base(json!({"stop": [1]})))).1.as_deref(),
            Some("stop")
        );
        let image = json!({"model": "local", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]});
        assert_eq!(code(call(image)).1.as_deref(), Some("messages[0].content"));
        let tool = json!({"model": "local", "messages": [{"role": "tool", "content": "x",
            "tool_call_id": "c"}]});
        assert_eq!(code(call(tool)).0, "unsupported_role");
    }

    #[test]
    fn parameters_are_read_in_openai_terms() {
        let c = call(json!({"model": "local", "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
            "temperature": 0, "top_p": 0.5, "seed": 7, "max_completion_tokens": 9, "max_tokens": 3,
            "stop": "END", "user": "ignored"}))
        .unwrap();
        assert!(c.stream && c.include_usage);
        assert_eq!(c.messages[0], ChatMessage::new("system", "be brief"));
        assert_eq!(c.messages[1].content, "ab");
        assert_eq!(c.params.temperature, 0.0);
        assert_eq!(c.params.top_p, Some(0.5));
        assert_eq!(c.params.seed, 7);
        assert_eq!(c.params.max_tokens, Some(9));
        assert_eq!(c.params.stop, vec!["END".to_string()]);
        let d = call(json!({"model": "local", "messages": [{"role": "user", "content": "x"}]}))
            .unwrap();
        assert_eq!(d.params.temperature, 1.0);
        assert_eq!(d.params.max_tokens, None);
        assert!(!d.stream);
    }

    #[test]
    fn model_errors_map_to_openai_statuses_without_text() {
        let e = upstream(&LlmError::ContextLength {
            prompt_tokens: 5000,
            requested: 0,
            context: 4096,
        });
        assert_eq!(e.http_status(), 400);
        assert_eq!(
            e.to_error_body().error.code.as_deref(),
            Some("context_length_exceeded")
        );
        assert_eq!(upstream(&LlmError::Busy { queued: 3 }).http_status(), 429);
        assert_eq!(upstream(&LlmError::WorkerGone).http_status(), 502);
    }
}

//! The OpenAI chat-completions wire format: requests, responses, streamed chunks, errors.
//!
//! Every object keeps the fields this crate does not know in a flattened `extra` map, so a
//! newer client's or vendor's fields survive the round trip (and, outbound, are de-identified
//! like everything else: see [`crate::outbound`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/chat/completions` request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model name; the server routes it to the vendor that lists it.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Whether the answer is streamed as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// Legacy functions the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<FunctionDefinition>>,
    /// Every other field (temperature, tool_choice, response_format, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatCompletionRequest {
    /// Whether the caller asked for a streamed answer.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }
}

/// One message of the conversation (also the `message` of a non-streamed answer).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant`, `tool` or `function`.
    pub role: String,
    /// The text, or a list of content parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// A participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by the assistant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// The legacy function call made by the assistant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    /// For `tool` messages: the call answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The assistant's refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Message content: a string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Typed parts (`text`, `image_url`, `input_audio`, `file`, `refusal`).
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// The part's type: `text`, `image_url`, `input_audio`, `file`, `refusal`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The refusal of a `refusal` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Every other field (`image_url`, `input_audio`, `file`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDefinition>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A function's name, description and JSON-schema parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDefinition {
    /// The function name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON schema of its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Every other field (`strict`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A tool call (in an assistant message or a non-streamed answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call id, echoed by the `tool` message that answers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The function called.
    pub function: FunctionCall,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A function call: its name and its arguments as a JSON text.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The arguments, a JSON object serialised as a string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Token counts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Tokens in the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// Both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<u64>,
    /// Every other field (token details).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A non-streamed answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// The vendor's completion id.
    #[serde(default)]
    pub id: String,
    /// `chat.completion`.
    #[serde(default = "chat_completion_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: i64,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// The answers.
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn chat_completion_object() -> String {
    "chat.completion".into()
}

fn chunk_object() -> String {
    "chat.completion.chunk".into()
}

/// One answer of a non-streamed completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Its position.
    #[serde(default)]
    pub index: u32,
    /// The answer.
    #[serde(default)]
    pub message: Message,
    /// Why the model stopped.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One streamed event's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// The completion id (the same in every chunk).
    #[serde(default)]
    pub id: String,
    /// `chat.completion.chunk`.
    #[serde(default = "chunk_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: i64,
    /// The model.
    #[serde(default)]
    pub model: String,
    /// The deltas (empty in the final usage chunk).
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Token counts (in the last chunk, when `stream_options.include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One choice's delta in a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// The choice.
    #[serde(default)]
    pub index: u32,
    /// What is new.
    #[serde(default)]
    pub delta: Delta,
    /// Set in the choice's last chunk.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What a chunk adds to a choice.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Delta {
    /// `assistant`, in the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A piece of the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// A piece of the refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Pieces of tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// A piece of the legacy function call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    /// Every other field (`reasoning_content`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A piece of one tool call in a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which tool call of the choice.
    #[serde(default)]
    pub index: u32,
    /// The call id, in its first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, in its first piece.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The name (first piece) and a piece of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCall>,
    /// Every other field.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// OpenAI's error body: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// The error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// A sentence for a person. Never contains request content.
    pub message: String,
    /// The error class (`invalid_request_error`, `rate_limit_error`, `upstream_error`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field concerned, as a path (`messages[2].content`).
    #[serde(default)]
    pub param: Option<String>,
    /// A machine-readable code.
    #[serde(default)]
    pub code: Option<String>,
}

impl ErrorBody {
    /// An error body.
    pub fn new(
        message: impl Into<String>,
        kind: &str,
        param: Option<String>,
        code: Option<&str>,
    ) -> ErrorBody {
        ErrorBody {
            error: ApiError {
                message: message.into(),
                kind: kind.to_string(),
                param,
                code: code.map(str::to_string),
            },
        }
    }

    /// The body as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#
                .to_vec()
        })
    }
}

/// `GET /v1/models` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// `list`.
    pub object: String,
    /// The models.
    pub data: Vec<Model>,
}

/// One model of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The model name callers put in `model`.
    pub id: String,
    /// `model`.
    pub object: String,
    /// Unix seconds (0 when unknown).
    pub created: i64,
    /// Who serves it (the vendor's registry name).
    pub owned_by: String,
}

impl ModelList {
    /// The list for `(model, vendor)` pairs, sorted and without duplicates.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> ModelList {
        let mut data: Vec<Model> = pairs
            .into_iter()
            .map(|(model, vendor)| Model {
                id: model.to_string(),
                object: "model".into(),
                created: 0,
                owned_by: vendor.to_string(),
            })
            .collect();
        data.sort_by(|a, b| a.id.cmp(&b.id));
        data.dedup_by(|a, b| a.id == b.id);
        ModelList {
            object: "list".into(),
            data,
        }
    }
}

/// Why a request body could not be read. Carries the position and the kind of problem, never
/// the text (serde's own messages quote the offending values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request body at line {line} column {column}: {what}")]
pub struct BodyError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What was wrong, in general terms.
    pub what: &'static str,
}

impl BodyError {
    fn from_serde(e: &serde_json::Error) -> BodyError {
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Io => "could not be read",
            Category::Syntax => "not valid JSON",
            Category::Data => {
                "a field is missing or has the wrong type (expected the OpenAI chat-completions format)"
            }
            Category::Eof => "the JSON ends too early",
        };
        BodyError {
            line: e.line(),
            column: e.column(),
            what,
        }
    }

    /// The body in OpenAI's error format.
    pub fn to_error_body(&self) -> ErrorBody {
        ErrorBody::new(
            self.to_string(),
            "invalid_request_error",
            None,
            Some("invalid_body"),
        )
    }
}

/// Reads a chat-completions request body.
pub fn parse_request(body: &[u8]) -> Result<ChatCompletionRequest, BodyError> {
    serde_json::from_slice(body).map_err(|e| BodyError::from_serde(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Numbers reach the vendor as the caller wrote them: the forwarded body parses to the
    /// same values and serialises to the same text (the default float parser was one binary
    /// digit off for some; found by the gateway_request fuzz target).
    #[test]
    fn numbers_are_forwarded_exactly() {
        for n in [
            "1.5e200",
            "0.30000000000000004",
            "9.999999999999999e-5",
            "2.2250738585072014e-308",
        ] {
            let body = format!(r#"{{"model":"m","messages":[],"temperature":{n},"x":{n}}}"#);
            let first = parse_request(body.as_bytes()).unwrap();
            let forwarded = serde_json::to_vec(&first).unwrap();
            let again = parse_request(&forwarded).unwrap();
            assert_eq!(again, first, "{n}");
            assert_eq!(serde_json::to_vec(&again).unwrap(), forwarded, "{n}");
            let expected: f64 = n.parse().unwrap();
            let sent: serde_json::Value = serde_json::from_slice(&forwarded).unwrap();
            assert_eq!(sent["x"].as_f64(), Some(expected), "{n}");
        }
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let body = json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief", "x_sys": 1},
                {"role": "user", "content": [
                    {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
                ]},
                {"role": "assistant", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}
                ], "function_call": {"name": "g", "arguments": "{}"}},
                {"role": "tool", "tool_call_id": "call_1", "content": "ok"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                "parameters": {"type": "object"}, "strict": true}}],
            "temperature": 0.2,
            "future_field": {"nested": ["x"]}
        });
        let r: ChatCompletionRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(r.extra["temperature"], json!(0.2));
        assert_eq!(r.messages[0].extra["x_sys"], json!(1));
        let Some(Content::Parts(parts)) = &r.messages[1].content else {
            panic!("parts")
        };
        assert_eq!(parts[1].kind, "image_url");
        assert_eq!(serde_json::to_value(&r).unwrap(), body);
    }

    #[test]
    fn responses_chunks_and_errors_parse() {
        let c: ChatCompletion = serde_json::from_value(json!({
            "id": "c1", "object": "chat.completion", "created": 5, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi",
                "refusal": null}, "finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4,
                "prompt_tokens_details": {"cached_tokens": 0}},
            "system_fingerprint": "fp"
        }))
        .unwrap();
        assert_eq!(c.usage.as_ref().unwrap().total_tokens, Some(4));
        assert_eq!(c.extra["system_fingerprint"], json!("fp"));
        let k: ChatCompletionChunk = serde_json::from_value(json!({
            "id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "m",
            "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
                "function": {"arguments": "{\"a"}}]}, "finish_reason": null}]
        }))
        .unwrap();
        let tc = &k.choices[0].delta.tool_calls.as_ref().unwrap()[0];
        assert_eq!(
            tc.function.as_ref().unwrap().arguments.as_deref(),
            Some("{\"a")
        );
        let e: ErrorBody = serde_json::from_value(json!({"error": {"message": "m",
            "type": "invalid_request_error", "param": null, "code": "x"}}))
        .unwrap();
        assert_eq!(e.error.code.as_deref(), Some("x"));
        let models = ModelList::from_pairs([("b", "v1"), ("a", "v2"), ("b", "v1")]);
        assert_eq!(models.data.len(), 2);
        assert_eq!(models.data[0].id, "a");
    }

    #[test]
    fn body_errors_never_quote_the_body() {
        let e = parse_request(br#"{"model": "m", "messages": "Maria Gonzalez 555-123-4567"}"#)
            .unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("Maria") && !text.contains("555"), "{text}");
        let e = parse_request(br#"{"model": 12345678, "messages": []}"#).unwrap_err();
        assert!(!e.to_string().contains("12345678"));
        let e = parse_request(b"{\"model\": \"Maria").unwrap_err();
        assert!(!e.to_string().contains("Maria"));
    }
}

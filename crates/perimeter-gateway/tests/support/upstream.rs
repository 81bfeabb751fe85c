//! An OpenAI-compatible fake vendor on loopback, speaking HTTP/1.1 by hand over a raw tokio
//! socket so the tests control every byte and every TCP write: it records every byte it
//! receives, echoes the last user message (as text and, when tools are offered, as a tool
//! call's arguments), streams it one character per event if asked, splits events across
//! writes, uses CRLF, comments and multi-line data, sends errors, stalls, and closes
//! mid-stream.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a streamed echo is written.
#[derive(Debug, Clone)]
pub struct Style {
    /// Characters of text per event.
    pub chars_per_event: usize,
    /// Write every event in small pieces (1 to 7 bytes), each its own TCP write.
    pub split_writes: bool,
    /// `\r\n` line ends.
    pub crlf: bool,
    /// A comment line between events.
    pub comments: bool,
    /// Each event's JSON spread over several `data:` lines.
    pub multiline: bool,
    /// End with `data: [DONE]`.
    pub done: bool,
    /// Send `[DONE]` twice (a hostile vendor).
    pub double_done: bool,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            chars_per_event: 1,
            split_writes: false,
            crlf: false,
            comments: false,
            multiline: false,
            done: true,
            double_done: false,
        }
    }
}

/// What the fake does with one request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Echo the last user message (streamed when the request says so).
    Echo(Style),
    /// Answer with this text instead of an echo (streamed when asked).
    Say(String, Style),
    /// An error status with this body.
    Status {
        status: u16,
        body: String,
        retry_after: Option<u64>,
    },
    /// Wait before sending anything.
    StallBeforeHeaders(Duration),
    /// Stream this many events of the echo, then stall.
    StallMidStream {
        after_events: usize,
        stall: Duration,
    },
    /// Stream this many events of the echo, then close without finishing.
    CloseMidStream { after_events: usize },
    /// Close the connection without answering.
    CloseWithoutAnswer,
    /// Send these SSE bytes as the body, each piece one write.
    Raw(Vec<Vec<u8>>),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Every byte, head and body.
    pub raw: Vec<u8>,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The request line.
    pub request_line: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Behaviour>,
    fallback: Option<Behaviour>,
    received: Vec<Received>,
}

/// The fake vendor.
#[derive(Clone)]
pub struct FakeUpstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeUpstream {
    /// Starts on an ephemeral loopback port; unscripted requests get `fallback`.
    pub async fn start(fallback: Behaviour) -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            fallback: Some(fallback),
            ..State::default()
        }));
        let s = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let _ = serve(sock, s).await;
                });
            }
        });
        FakeUpstream { addr, state }
    }

    /// The OpenAI-style base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues behaviours for the next requests.
    pub fn script(&self, b: impl IntoIterator<Item = Behaviour>) {
        self.state.lock().unwrap().script.extend(b);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.state.lock().unwrap().received.clear();
    }

    /// All bytes received so far, concatenated.
    pub fn all_bytes(&self) -> Vec<u8> {
        self.received().into_iter().flat_map(|r| r.raw).collect()
    }
}

async fn read_request(sock: &mut TcpStream) -> Option<Received> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while raw.len() < head_end + len {
        let n = sock.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let body = raw[head_end..head_end + len].to_vec();
    Some(Received {
        raw,
        headers,
        body,
        request_line,
    })
}

/// The last user message's text.
pub fn last_user_text(req: &Value) -> String {
    let messages = req["messages"].as_array().cloned().unwrap_or_default();
    let Some(m) = messages.iter().rev().find(|m| m["role"] == "user") else {
        return String::new();
    };
    match &m["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn tool_name(req: &Value) -> Option<String> {
    req["tools"][0]["function"]["name"]
        .as_str()
        .map(str::to_string)
}

async fn write_all(sock: &mut TcpStream, b: &[u8]) -> std::io::Result<()> {
    sock.write_all(b).await?;
    sock.flush().await
}

async fn chunk(sock: &mut TcpStream, b: &[u8], split: bool) -> std::io::Result<()> {
    if b.is_empty() {
        return Ok(());
    }
    if !split {
        let mut out = format!("{:x}\r\n", b.len()).into_bytes();
        out.extend_from_slice(b);
        out.extend_from_slice(b"\r\n");
        return write_all(sock, &out).await;
    }
    let mut i = 0;
    let mut step = 1;
    while i < b.len() {
        let j = (i + step).min(b.len());
        let mut out = format!("{:x}\r\n", j - i).into_bytes();
        out.extend_from_slice(&b[i..j]);
        out.extend_from_slice(b"\r\n");
        write_all(sock, &out).await?;
        tokio::task::yield_now().await;
        i = j;
        step = step % 7 + 1;
    }
    Ok(())
}

fn event(v: &Value, style: &Style) -> Vec<u8> {
    let nl = if style.crlf { "\r\n" } else { "\n" };
    let mut out = String::new();
    if style.comments {
        out.push_str(&format!(": ping{nl}{nl}"));
    }
    if style.multiline {
        let pretty = serde_json::to_string_pretty(v).unwrap();
        for line in pretty.lines() {
            out.push_str(&format!("data: {line}{nl}"));
        }
    } else {
        out.push_str(&format!("data: {}{nl}", serde_json::to_string(v).unwrap()));
    }
    out.push_str(nl);
    out.into_bytes()
}

/// The events of an echo (or of `say`).
pub fn echo_events(req: &Value, say: Option<&str>, style: &Style) -> Vec<Vec<u8>> {
    let text = say
        .map(str::to_string)
        .unwrap_or_else(|| last_user_text(req));
    let base = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": req["model"]});
    let chunk = |delta: Value, finish: Value| {
        let mut c = base.clone();
        c["choices"] = json!([{"index": 0, "delta": delta, "finish_reason": finish}]);
        c
    };
    let mut events = vec![event(
        &chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        style,
    )];
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(style.chars_per_event.max(1)) {
        let s: String = piece.iter().collect();
        events.push(event(&chunk(json!({"content": s}), Value::Null), style));
    }
    let mut finish = "stop";
    if let Some(name) = tool_name(req) {
        finish = "tool_calls";
        events.push(event(
            &chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_fake", "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ),
            style,
        ));
        let args = serde_json::to_string(&json!({"echo": text})).unwrap();
        let chars: Vec<char> = args.chars().collect();
        for piece in chars.chunks(style.chars_per_event.max(1)) {
            let s: String = piece.iter().collect();
            events.push(event(
                &chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": s}}]}),
                    Value::Null,
                ),
                style,
            ));
        }
    }
    events.push(event(&chunk(json!({}), json!(finish)), style));
    if req["stream_options"]["include_usage"] == true {
        let mut u = base.clone();
        u["choices"] = json!([]);
        u["usage"] = json!({"prompt_tokens": 11, "completion_tokens": chars.len(), "total_tokens": 11 + chars.len()});
        events.push(event(&u, style));
    }
    let nl = if style.crlf { "\r\n" } else { "\n" };
    if style.done {
        events.push(format!("data: [DONE]{nl}{nl}").into_bytes());
        if style.double_done {
            events.push(format!("data: [DONE]{nl}{nl}").into_bytes());
        }
    }
    events
}

/// The whole answer of an echo.
pub fn echo_completion(req: &Value, say: Option<&str>) -> Value {
    let text = say
        .map(str::to_string)
        .unwrap_or_else(|| last_user_text(req));
    let mut message = json!({"role": "assistant", "content": text, "refusal": null});
    let mut finish = "stop";
    if let Some(name) = tool_name(req) {
        finish = "tool_calls";
        message["tool_calls"] = json!([{"id": "call_fake", "type": "function",
            "function": {"name": name, "arguments": serde_json::to_string(&json!({"echo": text})).unwrap()}}]);
    }
    json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1,
        "model": req["model"], "choices": [{"index": 0, "message": message,
        "finish_reason": finish, "logprobs": null}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        "system_fingerprint": "fp_fake"})
}

async fn serve(mut sock: TcpStream, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let Some(req) = read_request(&mut sock).await else {
        return Ok(());
    };
    let behaviour = {
        let mut s = state.lock().unwrap();
        s.received.push(req.clone());
        s.script
            .pop_front()
            .or_else(|| s.fallback.clone())
            .unwrap_or(Behaviour::CloseWithoutAnswer)
    };
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let streaming = body["stream"] == true;
    let sse_head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    match behaviour {
        Behaviour::Echo(style) if streaming => {
            stream_events(&mut sock, &body, None, &style, sse_head).await?
        }
        Behaviour::Say(text, style) if streaming => {
            stream_events(&mut sock, &body, Some(&text), &style, sse_head).await?
        }
        Behaviour::Echo(_) => {
            let c = serde_json::to_vec(&echo_completion(&body, None)).unwrap();
            json_response(&mut sock, 200, &c, None).await?;
        }
        Behaviour::Say(text, _) => {
            let c = serde_json::to_vec(&echo_completion(&body, Some(&text))).unwrap();
            json_response(&mut sock, 200, &c, None).await?;
        }
        Behaviour::Status {
            status,
            body,
            retry_after,
        } => json_response(&mut sock, status, body.as_bytes(), retry_after).await?,
        Behaviour::StallBeforeHeaders(d) => {
            tokio::time::sleep(d).await;
            let c = serde_json::to_vec(&echo_completion(&body, None)).unwrap();
            json_response(&mut sock, 200, &c, None).await?;
        }
        Behaviour::StallMidStream {
            after_events,
            stall,
        } => {
            write_all(&mut sock, sse_head).await?;
            for e in echo_events(&body, None, &Style::default())
                .into_iter()
                .take(after_events)
            {
                chunk(&mut sock, &e, false).await?;
            }
            tokio::time::sleep(stall).await;
        }
        Behaviour::CloseMidStream { after_events } => {
            write_all(&mut sock, sse_head).await?;
            for e in echo_events(&body, None, &Style::default())
                .into_iter()
                .take(after_events)
            {
                chunk(&mut sock, &e, false).await?;
            }
        }
        Behaviour::CloseWithoutAnswer => {}
        Behaviour::Raw(pieces) => {
            write_all(&mut sock, sse_head).await?;
            for p in pieces {
                chunk(&mut sock, &p, false).await?;
            }
            write_all(&mut sock, b"0\r\n\r\n").await?;
        }
    }
    Ok(())
}

async fn stream_events(
    sock: &mut TcpStream,
    body: &Value,
    say: Option<&str>,
    style: &Style,
    head: &[u8],
) -> std::io::Result<()> {
    write_all(sock, head).await?;
    for e in echo_events(body, say, style) {
        chunk(sock, &e, style.split_writes).await?;
    }
    write_all(sock, b"0\r\n\r\n").await
}

async fn json_response(
    sock: &mut TcpStream,
    status: u16,
    body: &[u8],
    retry_after: Option<u64>,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(r) = retry_after {
        head.push_str(&format!("retry-after: {r}\r\n"));
    }
    head.push_str("\r\n");
    write_all(sock, head.as_bytes()).await?;
    write_all(sock, body).await
}

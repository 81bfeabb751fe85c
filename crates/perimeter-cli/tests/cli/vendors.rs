//! `perimeter vendors` and `perimeter tokens`, run as processes: the registry's refusals with
//! what to pass, keys never printed nor stored in clear, the token alone on stdout, and the
//! whole loop against a running `perimeter serve` with an OpenAI-compatible fake vendor:
//! registry changes and token revocation take effect without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::upstream::{Behaviour, FakeUpstream, Style};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");
const KEY: &str = "sk-cli-test-vendor-key-4242";

struct Install {
    dir: tempfile::TempDir,
}

impl Install {
    fn new() -> Install {
        let i = Install {
            dir: tempfile::tempdir().unwrap(),
        };
        let out = i.run(&["init"]);
        assert!(out.status.success(), "init: {}", stderr(&out));
        i
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(self.dir.path())
            .arg("--data-dir")
            .arg(self.data())
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    fn run_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs and expects success.
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        out
    }

    /// Runs and expects failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} should fail");
        stderr(&out)
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every byte of the data directory's files.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            out.extend(std::fs::read(&p).unwrap());
        } else if p.is_dir() {
            out.extend(all_bytes(&p));
        }
    }
    out
}

const ADD_PHI: &[&str] = &[
    "vendors",
    "add",
    "--name",
    "acme",
    "--base-url",
    "https://api.acme.example/v1",
    "--model",
    "acme-large",
    "--model",
    "acme-small",
    "--data-class",
    "phi",
    "--baa-signed",
    "2025-01-15",
    "--baa-expires",
    "2099-01-14",
    "--baa-document",
    "contracts/acme-baa.pdf",
    "--zero-retention",
    "--no-training",
    "--soc2-report-date",
    "2025-06-30",
    "--sub-processor",
    "Example Cloud",
];

#[test]
fn vendors_commands_refuse_bad_terms_and_never_print_or_store_the_key_in_clear() {
    let i = Install::new();
    // The key comes from stdin and is sealed.
    let mut args = ADD_PHI.to_vec();
    args.push("--api-key-stdin");
    let out = i.run_stdin(&args, &format!("{KEY}\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("added vendor acme"));

    let list = stdout(&i.ok(&["vendors", "list"]));
    assert!(
        list.contains("acme") && list.contains("acme-large,acme-small"),
        "{list}"
    );
    assert!(list.contains("in force until 2099-01-14"), "{list}");
    let json: Value = serde_json::from_str(&stdout(&i.ok(&["vendors", "list", "--json"]))).unwrap();
    assert_eq!(json[0]["name"], "acme");
    assert_eq!(json[0]["data_class"], "phi");
    assert_eq!(json[0]["effective_class_today"], "phi");
    assert_eq!(json[0]["api_key"], "sealed");
    assert_eq!(json[0]["sub_processors"], json!(["Example Cloud"]));
    let show = stdout(&i.ok(&["vendors", "show", "acme"]));
    assert!(show.contains("contracts/acme-baa.pdf"), "{show}");
    for out in [&list, &show, &json.to_string()] {
        assert!(!out.contains(KEY));
    }
    assert!(
        !all_bytes(&i.data())
            .windows(KEY.len())
            .any(|w| w == KEY.as_bytes()),
        "the key is stored in clear"
    );

    // Refusals, each saying what is wrong and what to pass.
    let base = |over: &[(&str, &str)]| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "vendors",
            "add",
            "--name",
            "beta",
            "--base-url",
            "https://b.example/v1",
            "--model",
            "beta-1",
            "--data-class",
            "deidentified",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        for (flag, value) in over {
            if let Some(pos) = a.iter().position(|x| x == flag) {
                a[pos + 1] = (*value).to_owned();
            } else {
                a.push((*flag).to_owned());
                if !value.is_empty() {
                    a.push((*value).to_owned());
                }
            }
        }
        a
    };
    let fails = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        i.fails(&refs)
    };
    let e = fails(base(&[("--base-url", "not a url")]));
    assert!(e.contains("base-url"), "{e}");
    let e = fails(base(&[("--base-url", "http://b.example/v1")]));
    assert!(e.contains("https"), "{e}");
    let e = fails(base(&[
        ("--baa-signed", "2025-13-01"),
        ("--baa-expires", "2026-01-01"),
    ]));
    assert!(e.contains("YYYY-MM-DD"), "{e}");
    let e = fails(base(&[
        ("--baa-signed", "2026-01-01"),
        ("--baa-expires", "2025-01-01"),
    ]));
    assert!(e.contains("baa-expires"), "{e}");
    let e = fails(base(&[("--baa-signed", "2026-01-01")]));
    assert!(e.contains("--baa-expires"), "{e}");
    let e = fails(base(&[("--data-class", "phi")]));
    assert!(
        e.contains("--baa-signed") && e.contains("--inside-perimeter"),
        "{e}"
    );
    let e = fails(base(&[("--data-class", "secret")]));
    assert!(e.contains("phi") && e.contains("deidentified"), "{e}");
    let e = fails(base(&[("--name", "acme")]));
    assert!(e.contains("already exists"), "{e}");
    let e = fails(base(&[("--model", "acme-small")]));
    assert!(e.contains("model") && e.contains("already exists"), "{e}");
    let e = fails(base(&[("--api-key-env", "1NOPE")]));
    assert!(e.contains("api-key-env"), "{e}");
    let out = i.run_stdin(
        &base(&[("--api-key-stdin", "")])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("stdin was empty"));
    // Nothing of the refused vendors was stored.
    let json: Value = serde_json::from_str(&stdout(&i.ok(&["vendors", "list", "--json"]))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);

    // Inside the perimeter: phi without a BAA, plain http.
    i.ok(&[
        "vendors",
        "add",
        "--name",
        "local",
        "--base-url",
        "http://10.0.0.5:8000/v1",
        "--model",
        "llama",
        "--data-class",
        "phi",
        "--inside-perimeter",
    ]);
    // Update: new expiry, an extra model, the key from the environment.
    i.ok(&[
        "vendors",
        "update",
        "acme",
        "--baa-expires",
        "2099-06-30",
        "--add-model",
        "acme-xl",
        "--remove-model",
        "acme-small",
        "--api-key-env",
        "ACME_KEY",
    ]);
    let v: Value =
        serde_json::from_str(&stdout(&i.ok(&["vendors", "show", "acme", "--json"]))).unwrap();
    assert_eq!(v["baa"]["expires"], "2099-06-30");
    assert_eq!(v["models"], json!(["acme-large", "acme-xl"]));
    assert_eq!(v["api_key"], "env:ACME_KEY");
    assert_eq!(v["revision"], 2);
    let e = i.fails(&["vendors", "update", "acme", "--remove-model", "nope"]);
    assert!(e.contains("does not list"), "{e}");
    let e = i.fails(&["vendors", "update", "acme", "--clear-baa"]);
    assert!(e.contains("--baa-signed"), "{e}");
    let e = i.fails(&["vendors", "update", "nobody", "--enabled", "false"]);
    assert!(e.contains("no vendor named"), "{e}");
    i.ok(&["vendors", "remove", "local"]);
    let e = i.fails(&["vendors", "remove", "local"]);
    assert!(e.contains("no vendor named"), "{e}");
    // --help teaches.
    let help = stdout(&i.ok(&["vendors", "add", "--help"]));
    assert!(
        help.contains("--baa-signed") && help.contains("Examples"),
        "{help}"
    );
}

#[test]
fn tokens_create_prints_the_token_alone_and_list_and_revoke_work() {
    let i = Install::new();
    let out = i.ok(&["tokens", "create", "--name", "scribe", "--scope", "gateway"]);
    let token = stdout(&out);
    assert_eq!(token.lines().count(), 1, "{token}");
    let token = token.trim();
    assert!(token.starts_with("pmt_") && token.len() == 47, "{token}");
    assert!(stderr(&out).contains("created token"));
    assert!(!stderr(&out).contains(token));
    let list = stdout(&i.ok(&["tokens", "list"]));
    assert!(
        list.contains("scribe") && list.contains("use_gateway") && list.contains("active"),
        "{list}"
    );
    assert!(!list.contains(token));
    let e = i.fails(&["tokens", "create", "--name", "x", "--scope", "admin"]);
    assert!(e.contains("gateway"), "{e}");
    let e = i.fails(&[
        "tokens",
        "create",
        "--name",
        "x",
        "--scope",
        "gateway",
        "--expires",
        "2020-01-01",
    ]);
    assert!(e.contains("--expires"), "{e}");
    let e = i.fails(&[
        "tokens",
        "create",
        "--name",
        "x",
        "--scope",
        "gateway",
        "--purpose",
        "emergency",
    ]);
    assert!(e.contains("treatment"), "{e}");
    i.ok(&["tokens", "revoke", "scribe"]);
    let json: Value = serde_json::from_str(&stdout(&i.ok(&["tokens", "list", "--json"]))).unwrap();
    assert_eq!(json[0]["status"], "revoked");
    let e = i.fails(&["tokens", "revoke", "scribe"]);
    assert!(e.contains("no unrevoked token"), "{e}");
}

/// A running `perimeter serve`.
struct Server {
    child: Child,
    base: String,
    _stdout: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(i: &Install) -> Server {
    serve_with(i, &[])
}

/// [`serve`] with extra environment variables (configuration overrides).
fn serve_with(i: &Install, env: &[(&str, &std::ffi::OsStr)]) -> Server {
    let mut cmd = i.cmd(&["serve", "--listen", "127.0.0.1:0"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let base = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("server printed its address");
        if let Some(addr) = line.strip_prefix("perimeter listening on ") {
            break addr.trim().to_owned();
        }
    };
    Server {
        child,
        base,
        _stdout: rx,
    }
}

/// The administrator's loop, without a console or a restart: register a vendor, create a
/// token, a tool calls the gateway; the vendor gets a BAA and then receives text as is; the
/// token is revoked and stops working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_changes_apply_to_a_running_server() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let i = Install::new();
    let fake = FakeUpstream::start(Behaviour::Echo(Style::default())).await;
    let token = stdout(&i.ok(&["tokens", "create", "--name", "scribe", "--scope", "gateway"]))
        .trim()
        .to_owned();
    let url = fake.base_url();
    let out = i.run_stdin(
        &[
            "vendors",
            "add",
            "--name",
            "acme",
            "--base-url",
            &url,
            "--model",
            "fake-model",
            "--data-class",
            "deidentified",
            "--api-key-stdin",
        ],
        KEY,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let server = serve(&i);
    let client = reqwest::Client::new();
    let text = "Please call Marleen Dossetti at 729.473.9833 about her visit.";
    let chat = |token: String| {
        let client = client.clone();
        let url = format!("{}/v1/chat/completions", server.base);
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"model": "fake-model", "messages": [{"role": "user", "content": text}]}))
                .send()
                .await
                .unwrap()
        }
    };
    let r = chat(token.clone()).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], text);
    let sent = fake.received()[0].json();
    let upstream_text = sent["messages"][0]["content"].as_str().unwrap();
    assert!(
        !upstream_text.contains("Dossetti") && !upstream_text.contains("473.9833"),
        "{upstream_text}"
    );
    assert_eq!(
        fake.received()[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );

    // The BAA is signed: `vendors update` while the server runs.
    i.ok(&[
        "vendors",
        "update",
        "acme",
        "--data-class",
        "phi",
        "--baa-signed",
        "2025-01-01",
        "--baa-expires",
        "2099-12-31",
    ]);
    fake.clear();
    let r = chat(token.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(fake.received()[0].json()["messages"][0]["content"], text);

    // Models come from the registry.
    let models: Value = client
        .get(format!("{}/v1/models", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "fake-model");
    assert_eq!(models["data"][0]["owned_by"], "acme");

    // Revoked: 401 at once, in OpenAI's format.
    i.ok(&["tokens", "revoke", "scribe"]);
    fake.clear();
    let r = chat(token.clone()).await;
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "authentication_error");
    assert!(fake.received().is_empty());

    // Removed vendor: 404 for a fresh token.
    let token2 = stdout(&i.ok(&[
        "tokens", "create", "--name", "scribe2", "--scope", "gateway",
    ]))
    .trim()
    .to_owned();
    i.ok(&["vendors", "remove", "acme"]);
    let r = chat(token2).await;
    assert_eq!(r.status(), 404);
    drop(server);
}

/// The test model file (`PERIMETER_TEST_GGUF`, set by scripts/test); `None` only when
/// `PERIMETER_TEST_SKIP_MODEL=1` says to skip the model's tests.
fn test_model() -> Option<PathBuf> {
    match std::env::var_os("PERIMETER_TEST_GGUF") {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var("PERIMETER_TEST_SKIP_MODEL").as_deref() == Ok("1") => None,
        None => panic!(
            "PERIMETER_TEST_GGUF is not set: run scripts/test, or set PERIMETER_TEST_SKIP_MODEL=1"
        ),
    }
}

/// `[local_model]` in a running server: the model inside the perimeter is listed on
/// `/v1/models` and answers `/v1/chat/completions` for its name (streamed and not) with no
/// vendor registered at all, and each call is audited under the vendor `local` with the data
/// class `phi` (nothing leaves the process, so nothing is pseudonymised).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_model_answers_on_the_gateway() {
    let Some(model) = test_model() else {
        return;
    };
    let i = Install::new();
    let token = stdout(&i.ok(&["tokens", "create", "--name", "scribe", "--scope", "gateway"]))
        .trim()
        .to_owned();
    let server = serve_with(
        &i,
        &[
            ("PERIMETER_LOCAL_MODEL_PATH", model.as_os_str()),
            (
                "PERIMETER_LOCAL_MODEL_NAME",
                std::ffi::OsStr::new("in-house"),
            ),
            ("PERIMETER_LOCAL_MODEL_THREADS", std::ffi::OsStr::new("2")),
        ],
    );
    let client = reqwest::Client::new();
    let models: Value = client
        .get(format!("{}/v1/models", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "in-house", "{models}");
    assert_eq!(models["data"][0]["owned_by"], "local", "{models}");

    let ask = |stream: bool| {
        let client = client.clone();
        let url = format!("{}/v1/chat/completions", server.base);
        let token = token.clone();
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({
                    "model": "in-house",
                    "max_tokens": 6,
                    "stream": stream,
                    "messages": [{"role": "user", "content": "Say hello to Marleen Dossetti."}]
                }))
                .send()
                .await
                .unwrap()
        }
    };
    let r = ask(false).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "in-house");
    assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
    let finish = v["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "stop" || finish == "length", "{v}");
    let completion = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=6).contains(&completion), "{v}");

    let r = ask(true).await;
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert_eq!(body.matches("data: [DONE]").count(), 1, "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");

    // A model nobody serves is still refused.
    let r = client
        .post(format!("{}/v1/chat/completions", server.base))
        .bearer_auth(&token)
        .json(&json!({"model": "nobody", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    drop(server);

    // Both calls are in the trail under the vendor `local`, with PHI sent as is.
    let out = stdout(&i.ok(&["audit", "export", "--format", "csv"]));
    let calls: Vec<&str> = out.lines().filter(|l| l.contains("in-house")).collect();
    assert!(calls.len() >= 2, "{out}");
    assert!(calls.iter().all(|l| l.contains("local")), "{out}");
}

/// `phi.max_message_bytes` reaches the running server's PHI engine: `/api/deid` refuses a text
/// over the limit with a clear error, and takes one under it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_message_limit_applies_to_the_servers_engine() {
    let i = Install::new();
    let token = stdout(&i.ok(&["tokens", "create", "--name", "deid", "--scope", "deid"]))
        .trim()
        .to_owned();
    let server = serve_with(
        &i,
        &[(
            "PERIMETER_PHI_MAX_MESSAGE_BYTES",
            std::ffi::OsStr::new("1000"),
        )],
    );
    let client = reqwest::Client::new();
    let deid = |text: String| {
        let client = client.clone();
        let url = format!("{}/api/deid", server.base);
        let token = token.clone();
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "text": text }))
                .send()
                .await
                .unwrap()
        }
    };
    let r = deid("Call Marleen Dossetti at 729.473.9833. ".repeat(40)).await;
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "message_too_large", "{v}");
    let r = deid("Call Marleen Dossetti at 729.473.9833.".into()).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(!v["text"].as_str().unwrap().contains("Dossetti"), "{v}");
}

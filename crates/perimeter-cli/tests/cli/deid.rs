//! `perimeter deid` end to end: the built binary over real stdin/stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn perimeter(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_perimeter"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_string();
    let writer = std::thread::spawn(move || {
        // The child may exit before reading everything (fail fast): ignore a broken pipe.
        let _ = input.write_all(data.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

const MESSAGE: &str = "Hi, this is Maria Gonzalez, date of birth 03/02/1981. \
Call me at (312) 555-8841 or email maria.gonzalez@gmail.com. My SSN is 123-45-6789.\n";

#[test]
fn redacts_stdin_to_stdout_by_default() {
    let o = perimeter(&["deid"], MESSAGE);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for leak in [
        "03/02/1981",
        "555-8841",
        "maria.gonzalez@gmail.com",
        "123-45-6789",
    ] {
        assert!(!out.contains(leak), "{leak} in {out}");
    }
    assert!(out.contains("[DATE]") && out.contains("[PHONE]") && out.contains("[EMAIL]"));
    assert!(out.starts_with("Hi, this is "));
}

#[test]
fn pseudonymizes_consistently_within_a_file() {
    let text = "Call (312) 555-8841 today.\nAgain: 312.555.8841.\n";
    let o = perimeter(&["deid", "--mode", "pseudonymize", "--lines"], text);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Call [PHONE_1] today.\nAgain: [PHONE_1].\n");
}

#[test]
fn safe_harbor_keeps_the_year() {
    let o = perimeter(
        &["deid", "--mode", "safe-harbor"],
        "Seen on 03/02/2021 in clinic.",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Seen on 2021 in clinic.");
}

#[test]
fn jsonl_keeps_order_fields_and_reports_char_spans() {
    let mut input = String::new();
    for i in 0..1200 {
        input.push_str(&format!(
            "{{\"id\": \"m{i}\", \"extra\": {i}, \"text\": \"the résumé ☃ call 312-555-{:04}\", \"spans\": [1]}}\n",
            1000 + i
        ));
        if i == 10 {
            input.push('\n');
        }
    }
    let o = perimeter(&["deid", "--format", "jsonl", "--threads", "0"], &input);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1200);
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["id"], format!("m{i}"));
        assert_eq!(v["extra"], i);
        assert_eq!(v["text"], "the résumé ☃ call [PHONE]");
        // Character offsets in the input text: "the résumé ☃ call " is 18 characters.
        assert_eq!(
            v["spans"],
            serde_json::json!([{"start": 18, "end": 30, "label": "PHONE"}])
        );
    }
}

#[test]
fn bad_jsonl_line_fails_fast_naming_the_line_not_the_content() {
    let input = "{\"text\": \"call 312-555-1234\"}\n{\"text\": \"secret Maria\n{\"text\": \"x\"}\n";
    let o = perimeter(&["deid", "--format", "jsonl"], input);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("line 2"), "{err}");
    assert!(!err.contains("Maria") && !err.contains("secret"), "{err}");
    // The line before it was written.
    assert_eq!(stdout(&o).lines().count(), 1);

    let o = perimeter(&["deid", "--format", "jsonl", "--skip-bad"], input);
    assert!(o.status.success(), "{}", stderr(&o));
    let out: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 3);
    assert_eq!(out[1]["line"], 2);
    assert!(out[1]["error"].as_str().unwrap().contains("JSON"));
    assert_eq!(out[2]["text"], "x");

    let o = perimeter(&["deid", "--format", "jsonl"], "[1, 2]\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("line 1"));
}

#[test]
fn eval_reports_the_corpus_metrics() {
    let dir = std::env::temp_dir().join(format!("perimeter-deid-eval-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gold = dir.join("gold.jsonl");
    let text = "Call 312-555-1234 or see Zorblat.";
    std::fs::write(
        &gold,
        format!(
            "{}\n",
            serde_json::json!({"id": "g1", "text": text, "spans": [
                {"start": 5, "end": 17, "label": "PHONE", "text": "312-555-1234"}]})
        ),
    )
    .unwrap();
    let o = perimeter(
        &["deid", "eval", "--gold", gold.to_str().unwrap(), "--json"],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["report"]["messages"], 1);
    assert_eq!(v["report"]["gold_spans"], 1);
    assert_eq!(v["report"]["entity_recall"], 1.0);
    assert!(stderr(&o).contains("warning"));
    let o = perimeter(&["deid", "eval", "--gold", gold.to_str().unwrap()], "");
    assert!(o.status.success());
    assert!(stdout(&o).contains("entity recall"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bench_measures_a_small_file() {
    let dir = std::env::temp_dir().join(format!("perimeter-deid-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("in.jsonl");
    let line = serde_json::json!({"text": "Call Maria at 312-555-1234 on 03/02/2021."});
    std::fs::write(&file, format!("{line}\n{line}\n")).unwrap();
    let o = perimeter(
        &[
            "deid",
            "bench",
            file.to_str().unwrap(),
            "--rounds",
            "1",
            "--json",
        ],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["messages"], 2);
    assert!(v["mb_per_s_1_thread"].as_f64().unwrap() > 0.0);
    assert!(v["mb_per_s_all_threads"].as_f64().unwrap() > 0.0);
    assert!(v["threads"].as_u64().unwrap() >= 1);
    assert!(v["startup_ms"].as_f64().unwrap() > 0.0);
    assert!(v["latency_p99_us"].as_f64().unwrap() >= v["latency_p50_us"].as_f64().unwrap());
    // Two short texts make one (short) "1 KB" message.
    assert_eq!(v["kb_messages"], 1);
    assert!(v["latency_1kb_p99_us"].as_f64().unwrap() > 0.0);
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 0);
    // The human-readable form names every figure.
    let o = perimeter(
        &["deid", "bench", file.to_str().unwrap(), "--rounds", "1"],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // CPU-time throughput is a number or null (a pass this short may not show CPU time).
    let cpu = &v["mb_per_s_1_thread_cpu_time"];
    assert!(
        cpu.is_null() || cpu.as_f64().is_some_and(|x| x > 0.0),
        "{cpu}"
    );
    assert!(v["loadavg_1min"].is_string());
    for want in [
        "start-up",
        "1 thread",
        "threads",
        "p99",
        "1 KB message",
        "load average",
        "peak memory",
    ] {
        assert!(out.contains(want), "{want:?} not in {out}");
    }
    // Without a file and without the default corpus next to the working directory: clear error.
    let cwd = dir.join("a/b");
    std::fs::create_dir_all(&cwd).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_perimeter"))
        .args(["deid", "bench"])
        .current_dir(&cwd)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no FILE given"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn message_size_limit_is_configurable_and_refuses_clearly() {
    let big = format!("Call 312-555-1234. {}\n", "word ".repeat(100));
    // Over the limit given by the flag: refused, named, never cut, no content in the error.
    let o = perimeter(&["deid", "--max-message-bytes", "64"], &big);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("message too large"), "{err}");
    assert!(err.contains("maximum is 64 bytes"), "{err}");
    assert!(!err.contains("312-555-1234"), "{err}");
    assert!(stdout(&o).is_empty());
    // The same limit from the environment variable of `phi.max_message_bytes`.
    let mut child = Command::new(env!("CARGO_BIN_EXE_perimeter"))
        .arg("deid")
        .env("PERIMETER_PHI_MAX_MESSAGE_BYTES", "64")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(big.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("maximum is 64 bytes"), "{}", stderr(&o));
    // A JSONL record over the limit is a bad line (exit 2) naming the line; with --skip-bad
    // an error record takes its place and the small records go through.
    let small = serde_json::json!({"id": "a", "text": "call 312-555-1234"});
    let large = serde_json::json!({"id": "b", "text": big});
    let input = format!("{small}\n{large}\n{small}\n");
    let o = perimeter(
        &["deid", "--format", "jsonl", "--max-message-bytes", "100"],
        &input,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));
    assert!(stderr(&o).contains("message too large"), "{}", stderr(&o));
    let o = perimeter(
        &[
            "deid",
            "--format",
            "jsonl",
            "--max-message-bytes",
            "100",
            "--skip-bad",
        ],
        &input,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 3);
    assert_eq!(out[1]["id"], "b");
    assert!(out[1]["error"].as_str().unwrap().contains("too large"));
    assert!(!stdout(&o).contains("word word"));
    assert_eq!(out[2]["text"], "call [PHONE]");
    // Under a generous limit the same text passes.
    let o = perimeter(&["deid", "--max-message-bytes", "100000"], &big);
    assert!(o.status.success(), "{}", stderr(&o));
    // Nonsense limits are bad arguments.
    let o = perimeter(&["deid", "--max-message-bytes", "0"], "x");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = perimeter(&["deid", "--max-message-bytes", "lots"], "x");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn threads_keep_input_order_and_match_one_thread() {
    let mut input = String::new();
    for i in 0..2000 {
        let line = match i % 3 {
            0 => {
                serde_json::json!({"n": i, "text": format!("Maria Gonzalez, MRN {:08}", 10_000 + i)})
            }
            1 => serde_json::json!({"n": i, "text": "nothing to see"}),
            _ => {
                serde_json::json!({"n": i, "text": format!("DOB 03/{:02}/1981, café ☃ {i}", 1 + i % 28)})
            }
        };
        input.push_str(&format!("{line}\n"));
    }
    let one = perimeter(&["deid", "--format", "jsonl", "--threads", "1"], &input);
    let four = perimeter(&["deid", "--format", "jsonl", "--threads", "4"], &input);
    assert!(one.status.success() && four.status.success());
    assert_eq!(stdout(&one), stdout(&four));
    for (i, l) in stdout(&four).lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["n"], i);
    }
}

#[test]
fn no_progress_bar_when_stderr_is_not_a_terminal() {
    // Larger than the progress threshold (4 MiB), stderr piped: nothing but errors on stderr.
    let line =
        serde_json::json!({"text": "Call 312-555-1234 about the visit on 03/02/2021, thanks."});
    let mut input = String::new();
    while input.len() < 5 * 1024 * 1024 {
        input.push_str(&format!("{line}\n"));
    }
    let o = perimeter(&["deid", "--format", "jsonl", "--threads", "0"], &input);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), input.lines().count());
}

#[test]
fn eval_lists_per_label_recall_misses_and_false_positives_with_context() {
    let dir = std::env::temp_dir().join(format!("perimeter-deid-eval2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gold = dir.join("gold.jsonl");
    // Gold marks "zorblat" as a NAME (the engine will not find it: a miss) and does not mark
    // the phone (a false positive).
    let text = "Please ask zorblat to call 312-555-1234 today.";
    let z = text.find("zorblat").unwrap();
    std::fs::write(
        &gold,
        format!(
            "{}\n",
            serde_json::json!({"id": "g1", "text": text, "spans": [
                {"start": z, "end": z + 7, "label": "NAME", "text": "zorblat"}]})
        ),
    )
    .unwrap();
    let o = perimeter(
        &[
            "deid",
            "eval",
            "--gold",
            gold.to_str().unwrap(),
            "--misses",
            "5",
        ],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "entity recall      0.0000",
        "char precision     0.0000",
        "label-match recall",
        "per label",
        "NAME",
        "misses (1 of 1)",
        "[zorblat] to call",
        "false positives (1 of 1)",
        "[312-555-1234] today",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    let o = perimeter(
        &["deid", "eval", "--gold", gold.to_str().unwrap(), "--json"],
        "",
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["report"]["per_label"]["NAME"]["gold"], 1);
    assert_eq!(v["misses_total"], 1);
    assert_eq!(v["false_positives_total"], 1);
    assert_eq!(v["false_positives"][0]["label"], "PHONE");
    std::fs::remove_dir_all(&dir).unwrap();
}

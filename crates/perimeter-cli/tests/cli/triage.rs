//! `perimeter triage` end to end: the built binary over real stdin/stdout and files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

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

fn lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn triage_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../perimeter-triage")
}

fn corpus() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/corpus/phi-dev.jsonl"))
        .find(|p| p.is_file())
        .or_else(|| {
            if std::env::var("PERIMETER_TEST_SKIP_CORPUS").as_deref() == Ok("1") {
                None
            } else {
                panic!("the dev corpus is missing; set PERIMETER_TEST_SKIP_CORPUS=1 to skip")
            }
        })
}

const INPUT: &str = r#"{"id":"m1","text":"Hi, I need a refill of my lisinopril, I'm out since Monday","channel":"sms"}
{"id":"m2","text":"My husband Tom Baker can't talk right and his face is drooping, call 555-201-3344"}

{"id":3,"text":"what time do you open on Saturday?"}
"#;

#[test]
fn classifies_stdin_to_jsonl_in_order() {
    let o = perimeter(&["triage"], INPUT);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = lines(&o);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0]["id"], "m1");
    assert_eq!(out[0]["intent"], "refill");
    assert_eq!(out[0]["urgency"], "urgent");
    assert_eq!(out[1]["intent"], "emergency");
    assert_eq!(out[1]["urgency"], "emergency");
    assert_eq!(out[2]["id"], 3);
    assert_eq!(out[2]["intent"], "general");
    // Exactly id, intent, urgency: the text and other fields are not echoed.
    assert_eq!(out[0].as_object().unwrap().len(), 3);
    assert!(!stdout(&o).contains("Tom Baker"));
}

#[test]
fn classify_subcommand_reads_files_and_details_add_the_sign() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    std::fs::write(&a, INPUT).unwrap();
    let o = perimeter(
        &[
            "triage",
            "classify",
            "--details",
            a.to_str().unwrap(),
            a.to_str().unwrap(),
        ],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = lines(&o);
    assert_eq!(out.len(), 6);
    assert_eq!(out[1]["emergency_sign"], "stroke");
    assert_eq!(out[1]["confidence"], 1.0);
    assert!(out[0]["emergency_sign"].is_null());
    let conf = out[0]["confidence"].as_f64().unwrap();
    assert!(conf > 0.0 && conf <= 1.0);
}

#[test]
fn a_bad_line_names_the_line_and_never_echoes_the_text() {
    let input = "{\"id\":\"a\",\"text\":\"refill please\"}\nMaria Gonzalez 312-555-8841 chest pain\n{\"id\":\"c\",\"text\":\"thanks\"}\n";
    let o = perimeter(&["triage"], input);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("stdin: line 2: not a JSON object"), "{err}");
    assert!(!err.contains("Maria") && !err.contains("555"), "{err}");
    // The line before the bad one was written.
    assert_eq!(lines(&o).len(), 1);

    let o = perimeter(&["triage", "--continue-on-error"], input);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = lines(&o);
    assert_eq!(out.len(), 3);
    assert_eq!(out[1]["line"], 2);
    assert_eq!(out[1]["error"], "not a JSON object");
    assert_eq!(out[2]["id"], "c");
    assert!(!stdout(&o).contains("Maria") && !stderr(&o).contains("Maria"));

    let o = perimeter(&["triage"], "{\"id\":\"x\",\"body\":\"Maria\"}\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("line 1: missing string \"text\""));
}

#[test]
fn a_missing_file_is_exit_status_1() {
    let o = perimeter(&["triage", "classify", "/nonexistent/in.jsonl"], "");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot open"));
}

#[test]
fn eval_prints_the_table_the_matrix_and_ids_without_text() {
    let gold = triage_dir().join("data/heldout.jsonl");
    let o = perimeter(
        &[
            "triage",
            "eval",
            "--gold",
            gold.to_str().unwrap(),
            "--misses",
            "50",
        ],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "precision",
        "recall",
        "f1",
        "macro-F1",
        "emergency recall",
        "confusion matrix",
        "scheduling",
        "general",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    // Misclassified messages are listed by id only.
    let texts: Vec<String> = std::fs::read_to_string(&gold)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for t in &texts {
        assert!(
            !out.contains(t.as_str()),
            "text printed without --show-text"
        );
    }
    let o = perimeter(
        &["triage", "eval", "--gold", gold.to_str().unwrap(), "--json"],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["emergency_recall"], 1.0);
    assert!(v["evaluation"]["macro_f1"].as_f64().unwrap() > 0.5);
    assert_eq!(v["evaluation"]["confusion"].as_array().unwrap().len(), 8);
}

#[test]
fn eval_on_a_bad_gold_file_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let g = dir.path().join("g.jsonl");
    std::fs::write(&g, "{\"id\":\"a\",\"text\":\"x\",\"intent\":\"general\"}\n{\"id\":\"b\",\"text\":\"Maria\",\"intent\":\"urgentish\"}\n").unwrap();
    let o = perimeter(&["triage", "eval", "--gold", g.to_str().unwrap()], "");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("line 2"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("Maria"));
}

#[test]
fn train_reproduces_the_committed_model_and_eval_held_out_meets_the_targets() {
    let Some(corpus) = corpus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("intent.bin");
    let extra = triage_dir().join("data/extra.jsonl");
    let o = perimeter(
        &[
            "triage",
            "train",
            "--gold",
            corpus.to_str().unwrap(),
            "--extra",
            extra.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("trained on"));
    let fresh = std::fs::read(&out).unwrap();
    let committed = std::fs::read(triage_dir().join("model/intent.bin")).unwrap();
    assert!(
        fresh == committed,
        "a fresh train differs from model/intent.bin"
    );
    // The trained file loads with --model.
    let o = perimeter(&["triage", "--model", out.to_str().unwrap()], INPUT);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = perimeter(
        &[
            "triage",
            "eval",
            "--gold",
            corpus.to_str().unwrap(),
            "--held-out",
            "--extra",
            extra.to_str().unwrap(),
            "--json",
        ],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["emergency_recall"], 1.0);
    assert!(v["emergency_precision"].as_f64().unwrap() >= 0.9);
    assert!(v["evaluation"]["macro_f1"].as_f64().unwrap() >= 0.9);
}

#[test]
fn a_damaged_model_file_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("bad.bin");
    std::fs::write(&m, b"PTRIAGE\0garbage").unwrap();
    let o = perimeter(&["triage", "--model", m.to_str().unwrap()], INPUT);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.bin"), "{}", stderr(&o));
}

#[test]
fn bench_prints_the_figures() {
    let gold = triage_dir().join("data/heldout.jsonl");
    let o = perimeter(
        &[
            "triage",
            "bench",
            gold.to_str().unwrap(),
            "--rounds",
            "1",
            "--json",
        ],
        "",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["messages"], 120);
    assert!(v["messages_per_sec"].as_f64().unwrap() > 0.0);
    assert!(v["latency_p99_us"].as_f64().unwrap() >= v["latency_p50_us"].as_f64().unwrap());
    assert!(v["model_load_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn help_teaches_with_examples() {
    let o = perimeter(&["triage", "--help"], "");
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("Examples:") && out.contains("perimeter triage eval --gold"));
    assert!(out.contains("--continue-on-error"));
}

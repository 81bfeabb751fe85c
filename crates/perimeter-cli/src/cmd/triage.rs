//! `perimeter triage`: classify messages by intent and urgency with the built-in model,
//! evaluate it against gold labels, retrain it, and benchmark it.
//!
//! Exit status: 0 success; 1 a file could not be read or written, or the model could not be
//! loaded; 2 bad input (a JSONL line that is not an object with a string `text`, a bad gold
//! file, bad arguments). Error messages name the file and line, never the content.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use perimeter_triage::{
    Classifier, Evaluation, Intent, LabelledRecord, Model, TrainConfig, is_held_out,
    parse_labelled_jsonl, train, training_examples,
};
use serde_json::{Map, Value, json};

/// The default benchmark corpus, relative to the working directory.
const DEFAULT_BENCH_FILE: &str = "../shared/corpus/phi-dev.jsonl";

/// Inputs with at least this many lines get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_LINES: u64 = 20_000;

const TRIAGE_EXAMPLES: &str = "\
Examples:
  echo '{\"id\":\"m1\",\"text\":\"I need a refill of my lisinopril\"}' | perimeter triage
  perimeter triage classify inbox.jsonl > triaged.jsonl
  perimeter triage classify --details --continue-on-error a.jsonl b.jsonl
  perimeter triage eval --gold ../shared/corpus/phi-dev.jsonl
  perimeter triage eval --gold ../shared/corpus/phi-dev.jsonl --held-out \\
      --extra crates/perimeter-triage/data/extra.jsonl
  perimeter triage eval --gold crates/perimeter-triage/data/heldout.jsonl --misses 20
  perimeter triage train --gold ../shared/corpus/phi-dev.jsonl \\
      --extra crates/perimeter-triage/data/extra.jsonl --out crates/perimeter-triage/model/intent.bin
  perimeter triage bench

Intents: scheduling, refill, billing, records, results, clinical, emergency, general.
Urgency: routine (the queue's service level), urgent (today), emergency (now).
A message is an emergency when the emergency rules find a sign (chest pain, stroke signs,
suicidal thoughts, overdose, anaphylaxis, severe bleeding, breathing trouble, unconscious,
seizure, head injury with confusion, 911) that is not negated (\"no chest pain\") or plainly
history (\"my chest pain follow-up appointment\"), or when the model gives emergency a
probability of at least 0.5.

Input: JSONL, one object per line with a string \"text\" and an \"id\" (string or number,
echoed back); other fields are ignored. Output: one line {\"id\", \"intent\", \"urgency\"} per
input line, in order (--details adds \"confidence\" and \"emergency_sign\"). A bad line stops the
run with exit status 2 and an error naming the file and line (never its text); the lines before
it have been written. With --continue-on-error it is replaced by {\"line\": N, \"error\": \"...\"}.

Exit status: 0 done; 1 a file could not be read or written, or the model could not be loaded;
2 bad input or bad arguments.";

/// `perimeter triage`: classify; `triage eval`, `triage train`, `triage bench`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, after_help = TRIAGE_EXAMPLES)]
pub struct TriageArgs {
    #[command(subcommand)]
    command: Option<TriageCommand>,
    #[command(flatten)]
    classify: ClassifyArgs,
}

#[derive(Debug, Subcommand)]
enum TriageCommand {
    /// Classify JSONL messages (the default when no subcommand is given).
    #[command(after_help = TRIAGE_EXAMPLES)]
    Classify(ClassifyArgs),
    /// Measure the classifier against a gold JSONL file: per-intent precision, recall and F1,
    /// macro-F1, emergency recall and precision, the confusion matrix and the misclassified ids.
    #[command(after_help = TRIAGE_EXAMPLES)]
    Eval(EvalArgs),
    /// Train a model from gold JSONL files, deterministically (the same files give the same
    /// bytes), and write it.
    #[command(after_help = TRIAGE_EXAMPLES)]
    Train(TrainArgs),
    /// Measure throughput (messages per second), per-message latency (p50, p99) and model load
    /// time.
    #[command(after_help = TRIAGE_EXAMPLES)]
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
struct ClassifyArgs {
    /// Also write the model's "confidence" and the "emergency_sign" the rules found.
    #[arg(long)]
    details: bool,
    /// Replace a bad line by an error record instead of stopping.
    #[arg(long)]
    continue_on_error: bool,
    /// Use this model file instead of the built-in model.
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Input JSONL files; standard input when none are given.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// Gold JSONL file (`id`, `text`, `intent`).
    #[arg(long, value_name = "FILE.jsonl")]
    gold: PathBuf,
    /// Evaluate on the held-out split of --gold (about a fifth, chosen by a hash of the text)
    /// with a model trained here on the rest of --gold plus --extra, never on the held-out
    /// records. Without it, the built-in model (or --model) is evaluated on every record.
    #[arg(long)]
    held_out: bool,
    /// Extra training data for --held-out.
    #[arg(long, value_name = "FILE.jsonl", requires = "held_out")]
    extra: Vec<PathBuf>,
    /// Use this model file instead of the built-in model.
    #[arg(long, value_name = "FILE", conflicts_with = "held_out")]
    model: Option<PathBuf>,
    /// How many misclassified ids to list (0 for none).
    #[arg(long, default_value_t = 20, value_name = "N")]
    misses: usize,
    /// Print the text of misclassified messages (it may hold PHI: only on a trusted terminal).
    #[arg(long)]
    show_text: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Gold JSONL file(s) (`id`, `text`, `intent`), e.g. the dev corpus.
    #[arg(long, value_name = "FILE.jsonl", required = true)]
    gold: Vec<PathBuf>,
    /// Hand-written extra examples; they weigh more than gold records.
    #[arg(long, value_name = "FILE.jsonl")]
    extra: Vec<PathBuf>,
    /// Leave the held-out split of --gold out of training (to measure on it afterwards).
    #[arg(long)]
    exclude_held_out: bool,
    /// Where to write the model.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// JSONL file with a string `text` per line [default: ../shared/corpus/phi-dev.jsonl].
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// Passes over the file; throughput is the median pass.
    #[arg(long, default_value_t = 3, value_name = "N")]
    rounds: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

/// Why a command failed. Never carries message content.
#[derive(Debug)]
enum CliError {
    /// Bad input: exit status 2.
    Input(String),
    /// Anything else: exit status 1.
    Run(String),
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Input(m) | CliError::Run(m) => f.write_str(m),
        }
    }
}

type Result<T, E = CliError> = std::result::Result<T, E>;

/// Runs `perimeter triage ...` and returns the process exit status.
pub fn run(args: TriageArgs) -> ExitCode {
    let result = match args.command {
        Some(TriageCommand::Classify(a)) => classify(&a),
        Some(TriageCommand::Eval(a)) => eval(&a),
        Some(TriageCommand::Train(a)) => train_cmd(&a),
        Some(TriageCommand::Bench(a)) => bench(&a),
        None => classify(&args.classify),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perimeter triage: error: {e}");
            match e {
                CliError::Input(_) => ExitCode::from(2),
                CliError::Run(_) => ExitCode::from(1),
            }
        }
    }
}

fn classifier(model: Option<&Path>) -> Result<Classifier> {
    let result = match model {
        None => Classifier::builtin(),
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| CliError::Run(format!("{}: cannot read: {e}", path.display())))?;
            let model = Model::from_bytes(&bytes)
                .map_err(|e| CliError::Run(format!("{}: {e}", path.display())))?;
            Classifier::new(model)
        }
    };
    result.map_err(|e| CliError::Run(format!("cannot load the triage model: {e}")))
}

fn write_err(e: io::Error) -> CliError {
    CliError::Run(format!("cannot write the output: {e}"))
}

fn read_labelled(path: &Path) -> Result<Vec<LabelledRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == io::ErrorKind::InvalidData {
            CliError::Input(format!("{}: not UTF-8", path.display()))
        } else {
            CliError::Run(format!("{}: cannot read: {e}", path.display()))
        }
    })?;
    parse_labelled_jsonl(&text).map_err(|e| CliError::Input(format!("{}: {e}", path.display())))
}

fn progress(lines: Option<u64>) -> ProgressBar {
    let show = lines.is_some_and(|n| n >= PROGRESS_MIN_LINES) && io::stderr().is_terminal();
    let target = if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    ProgressBar::with_draw_target(lines, target).with_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} messages ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

/// One JSONL line: `Ok(None)` for a blank line.
fn parse_line(raw: &[u8]) -> Result<Option<(Value, String)>, &'static str> {
    let Ok(line) = std::str::from_utf8(raw) else {
        return Err("not UTF-8");
    };
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(line) else {
        return Err("not a JSON object");
    };
    let id = match obj.remove("id") {
        Some(v @ (Value::String(_) | Value::Number(_))) => v,
        Some(_) => return Err("\"id\" is not a string or number"),
        None => Value::Null,
    };
    match obj.remove("text") {
        Some(Value::String(t)) => Ok(Some((id, t))),
        _ => Err("missing string \"text\""),
    }
}

fn classify(args: &ClassifyArgs) -> Result<()> {
    let classifier = classifier(args.model.as_deref())?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let inputs: Vec<(String, Box<dyn Read>)> = if args.files.is_empty() {
        vec![("stdin".to_string(), Box::new(io::stdin()))]
    } else {
        let mut v: Vec<(String, Box<dyn Read>)> = Vec::new();
        for f in &args.files {
            let file = File::open(f)
                .map_err(|e| CliError::Run(format!("{}: cannot open: {e}", f.display())))?;
            v.push((f.display().to_string(), Box::new(file)));
        }
        v
    };
    let mut result = Ok(());
    for (name, reader) in inputs {
        result = classify_input(&classifier, args, &name, reader, &mut out);
        if result.is_err() {
            break;
        }
    }
    // Whatever was classified before an error is written out.
    out.flush().map_err(write_err)?;
    result
}

fn classify_input(
    classifier: &Classifier,
    args: &ClassifyArgs,
    name: &str,
    reader: Box<dyn Read>,
    out: &mut impl Write,
) -> Result<()> {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let bar = progress(None);
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| CliError::Run(format!("{name}: cannot read: {e}")))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line_no == PROGRESS_MIN_LINES && io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        bar.inc(1);
        let record = match parse_line(&buf) {
            Ok(None) => continue,
            Ok(Some((id, text))) => {
                let c = classifier.classify(&text);
                let mut rec = Map::new();
                rec.insert("id".into(), id);
                rec.insert("intent".into(), json!(c.intent.as_str()));
                rec.insert("urgency".into(), json!(c.urgency));
                if args.details {
                    rec.insert("confidence".into(), json!(round4(c.confidence)));
                    rec.insert(
                        "emergency_sign".into(),
                        c.emergency.map_or(Value::Null, |s| json!(s.as_str())),
                    );
                }
                rec
            }
            Err(reason) if args.continue_on_error => {
                eprintln!("perimeter triage: {name}: line {line_no}: {reason} (skipped)");
                let mut rec = Map::new();
                rec.insert("line".into(), json!(line_no));
                rec.insert("error".into(), json!(reason));
                rec
            }
            Err(reason) => {
                bar.finish_and_clear();
                return Err(CliError::Input(format!(
                    "{name}: line {line_no}: {reason}; the lines before it were written (use --continue-on-error to go on past bad lines)"
                )));
            }
        };
        let s = serde_json::to_string(&Value::Object(record))
            .map_err(|e| CliError::Run(format!("cannot encode a record: {e}")))?;
        out.write_all(s.as_bytes()).map_err(write_err)?;
        out.write_all(b"\n").map_err(write_err)?;
    }
    bar.finish_and_clear();
    Ok(())
}

fn round4(x: f32) -> f64 {
    (f64::from(x) * 10_000.0).round() / 10_000.0
}

fn eval(args: &EvalArgs) -> Result<()> {
    let gold = read_labelled(&args.gold)?;
    let (classifier, records, how): (Classifier, Vec<&LabelledRecord>, String) = if args.held_out {
        let mut extra = Vec::new();
        for f in &args.extra {
            extra.extend(read_labelled(f)?);
        }
        let config = TrainConfig::default();
        let examples = training_examples(&gold, &extra, true, config.extra_weight);
        let model =
            train(&examples, &config).map_err(|e| CliError::Input(format!("cannot train: {e}")))?;
        let c = Classifier::new(model)
            .map_err(|e| CliError::Run(format!("cannot load the trained model: {e}")))?;
        let held: Vec<&LabelledRecord> = gold.iter().filter(|r| is_held_out(&r.text)).collect();
        let how = format!(
            "held-out split of {} ({} of {} records), model trained here on the other {} records + {} extra",
            args.gold.display(),
            held.len(),
            gold.len(),
            gold.len() - held.len(),
            extra.len()
        );
        (c, held, how)
    } else {
        let c = classifier(args.model.as_deref())?;
        let how = format!(
            "{} ({} records), {} model",
            args.gold.display(),
            gold.len(),
            if args.model.is_some() {
                "given"
            } else {
                "built-in"
            }
        );
        (c, gold.iter().collect(), how)
    };
    let mut pairs = Vec::with_capacity(records.len());
    let mut misses: Vec<(&LabelledRecord, Intent)> = Vec::new();
    for r in &records {
        let c = classifier.classify(&r.text);
        pairs.push((r.intent, c.intent));
        if c.intent != r.intent {
            misses.push((r, c.intent));
        }
    }
    let e = Evaluation::new(pairs);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let listed: Vec<Value> = misses
            .iter()
            .take(args.misses)
            .map(|(r, p)| {
                let mut m = json!({"id": r.id, "gold": r.intent.as_str(), "predicted": p.as_str()});
                if args.show_text {
                    m["text"] = json!(r.text);
                }
                m
            })
            .collect();
        let report = json!({
            "evaluated": how,
            "evaluation": e,
            "accuracy": e.accuracy(),
            "emergency_recall": e.emergency_recall(),
            "emergency_precision": e.emergency_precision(),
            "misclassified": misses.len(),
            "misses": listed,
        });
        writeln!(out, "{report:#}").map_err(write_err)?;
        return Ok(());
    }
    writeln!(out, "evaluated: {how}\n").map_err(write_err)?;
    write!(out, "{}", e.report()).map_err(write_err)?;
    if args.misses > 0 && !misses.is_empty() {
        writeln!(
            out,
            "\nmisclassified: {} (first {} listed{})",
            misses.len(),
            args.misses.min(misses.len()),
            if args.show_text {
                ""
            } else {
                "; --show-text prints their text"
            }
        )
        .map_err(write_err)?;
        for (r, p) in misses.iter().take(args.misses) {
            if args.show_text {
                writeln!(
                    out,
                    "  {}  gold {}  predicted {}  {:?}",
                    r.id, r.intent, p, r.text
                )
            } else {
                writeln!(out, "  {}  gold {}  predicted {}", r.id, r.intent, p)
            }
            .map_err(write_err)?;
        }
    }
    Ok(())
}

fn train_cmd(args: &TrainArgs) -> Result<()> {
    let mut gold = Vec::new();
    for f in &args.gold {
        gold.extend(read_labelled(f)?);
    }
    let mut extra = Vec::new();
    for f in &args.extra {
        extra.extend(read_labelled(f)?);
    }
    let config = TrainConfig::default();
    let examples = training_examples(&gold, &extra, args.exclude_held_out, config.extra_weight);
    let started = Instant::now();
    let model =
        train(&examples, &config).map_err(|e| CliError::Input(format!("cannot train: {e}")))?;
    let elapsed = started.elapsed();
    let bytes = model.to_bytes();
    // Write beside the target and rename, so a crash never leaves half a model.
    let tmp = args.out.with_extension("bin.tmp");
    std::fs::write(&tmp, &bytes)
        .map_err(|e| CliError::Run(format!("{}: cannot write: {e}", tmp.display())))?;
    std::fs::rename(&tmp, &args.out)
        .map_err(|e| CliError::Run(format!("{}: cannot write: {e}", args.out.display())))?;
    println!(
        "trained on {} examples ({} gold{}, {} extra) in {:.2} s; {} buckets, {} non-zero weights; wrote {} bytes to {}",
        examples.len(),
        examples.len() - extra.len(),
        if args.exclude_held_out {
            ", held-out split left out"
        } else {
            ""
        },
        extra.len(),
        elapsed.as_secs_f64(),
        model.buckets(),
        model.nonzero_weights(),
        bytes.len(),
        args.out.display()
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).copied().unwrap_or(Duration::ZERO)
}

fn bench(args: &BenchArgs) -> Result<()> {
    let path = args
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BENCH_FILE));
    let raw = std::fs::read(&path)
        .map_err(|e| CliError::Run(format!("{}: cannot read: {e}", path.display())))?;
    let mut texts = Vec::new();
    for (i, line) in raw.split(|b| *b == b'\n').enumerate() {
        match parse_line(line) {
            Ok(Some((_, t))) => texts.push(t),
            Ok(None) => {}
            Err(reason) => {
                return Err(CliError::Input(format!(
                    "{}: line {}: {reason}",
                    path.display(),
                    i + 1
                )));
            }
        }
    }
    if texts.is_empty() {
        return Err(CliError::Input(format!("{}: no messages", path.display())));
    }
    // Model load: bytes checked, weights decoded, rules compiled. Median of 5.
    let mut loads = Vec::new();
    let mut classifier = None;
    for _ in 0..5 {
        let t = Instant::now();
        let c = Classifier::builtin()
            .map_err(|e| CliError::Run(format!("cannot load the triage model: {e}")))?;
        loads.push(t.elapsed());
        classifier = Some(c);
    }
    loads.sort();
    let Some(classifier) = classifier else {
        return Err(CliError::Run("no classifier".into()));
    };
    let bytes: usize = texts.iter().map(String::len).sum();
    let rounds = args.rounds.max(1);
    let mut passes = Vec::with_capacity(rounds);
    let mut latencies = Vec::with_capacity(texts.len() * rounds);
    let mut emergencies = 0usize;
    for _ in 0..rounds {
        let start = Instant::now();
        emergencies = 0;
        for t in &texts {
            let s = Instant::now();
            let c = classifier.classify(t);
            latencies.push(s.elapsed());
            if c.intent == Intent::Emergency {
                emergencies += 1;
            }
        }
        passes.push(start.elapsed());
    }
    passes.sort();
    latencies.sort();
    let median = percentile(&passes, 0.5);
    let per_sec = texts.len() as f64 / median.as_secs_f64().max(1e-9);
    let mib_per_sec = bytes as f64 / (1024.0 * 1024.0) / median.as_secs_f64().max(1e-9);
    let p50 = percentile(&latencies, 0.5);
    let p99 = percentile(&latencies, 0.99);
    let max = latencies.last().copied().unwrap_or_default();
    let load = percentile(&loads, 0.5);
    if args.json {
        let report = json!({
            "file": path.display().to_string(),
            "messages": texts.len(),
            "bytes": bytes,
            "rounds": rounds,
            "messages_per_sec": per_sec,
            "mib_per_sec": mib_per_sec,
            "latency_p50_us": p50.as_secs_f64() * 1e6,
            "latency_p99_us": p99.as_secs_f64() * 1e6,
            "latency_max_us": max.as_secs_f64() * 1e6,
            "model_load_ms": load.as_secs_f64() * 1e3,
            "model_bytes": perimeter_triage::BUILTIN_MODEL.len(),
            "emergencies": emergencies,
        });
        println!("{report:#}");
    } else {
        println!(
            "file {}: {} messages, {} bytes, {} rounds (one thread)",
            path.display(),
            texts.len(),
            bytes,
            rounds
        );
        println!("throughput  {per_sec:.0} messages/s ({mib_per_sec:.2} MiB/s), median pass");
        println!(
            "latency     p50 {:.1} us, p99 {:.1} us, max {:.1} us",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            max.as_secs_f64() * 1e6
        );
        println!(
            "model load  {:.2} ms (median of 5; {} bytes embedded)",
            load.as_secs_f64() * 1e3,
            perimeter_triage::BUILTIN_MODEL.len()
        );
        println!("emergencies {emergencies} of {} messages", texts.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_names_the_problem() {
        assert_eq!(
            parse_line(b"{\"id\":\"a\",\"text\":\"hi\",\"x\":1}").unwrap(),
            Some((json!("a"), "hi".to_string()))
        );
        assert_eq!(parse_line(b"   \n").unwrap(), None);
        assert_eq!(
            parse_line(b"Maria 555-1234").unwrap_err(),
            "not a JSON object"
        );
        assert_eq!(
            parse_line(b"{\"id\":\"a\"}").unwrap_err(),
            "missing string \"text\""
        );
        assert_eq!(
            parse_line(b"{\"id\":[1],\"text\":\"x\"}").unwrap_err(),
            "\"id\" is not a string or number"
        );
        assert_eq!(parse_line(&[0xff, 0xfe]).unwrap_err(), "not UTF-8");
    }

    #[test]
    fn percentiles() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&d, 0.5), Duration::from_micros(51));
        assert_eq!(percentile(&d, 0.99), Duration::from_micros(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}

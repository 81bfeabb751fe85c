//! `perimeter deid`: de-identify text or JSONL, evaluate the detector against a gold file, and
//! benchmark it.
//!
//! Exit status: 0 success; 1 an input file could not be read or a message was refused by the
//! engine; 2 bad input (a JSONL line that is not a JSON object with a string `text`, text that
//! is not UTF-8, a bad command line). Error messages name the file and line, never the content.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use perimeter_domain::{Clock, SystemClock};
use perimeter_phi::deid::{DeidOptions, Mode, deidentify};
use perimeter_phi::eval::{Evaluation, GoldRecord, to_char_spans};
use perimeter_phi::{DEFAULT_MAX_MESSAGE_BYTES, Engine, EngineConfig, Span, Vault};
use rayon::prelude::*;
use serde_json::{Map, Value, json};

/// Lines handed to the worker threads at a time; output is written batch by batch, in order.
const BATCH: usize = 512;

/// Inputs at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 4 * 1024 * 1024;

/// The environment variable for `phi.max_message_bytes` (the configuration key's variable).
const MAX_MESSAGE_ENV: &str = "PERIMETER_PHI_MAX_MESSAGE_BYTES";

/// The default benchmark corpus, relative to the working directory.
const DEFAULT_BENCH_FILE: &str = "../shared/corpus/phi-dev.jsonl";

const DEID_EXAMPLES: &str = "\
Examples:
  echo 'Call Maria Gonzalez at (312) 555-8841' | perimeter deid
  perimeter deid --mode pseudonymize letter.txt notes.txt
  perimeter deid --mode safe-harbor --lines < messages.txt
  perimeter deid --format jsonl --mode surrogate --threads 0 in.jsonl > out.jsonl
  perimeter deid eval --gold ../shared/corpus/phi-dev.jsonl --misses 20
  perimeter deid bench

Modes:
  redact        every identifier becomes [LABEL]
  pseudonymize  [LABEL_N], the same value the same token within one message (JSONL) or file (text)
  surrogate     realistic fake values of the same shape; dates shifted, names replaced consistently
  safe-harbor   164.514(b)(2): dates to the year, ages over 89 to \"90 or older\", ZIP to 3 digits
                (000 for the 17 restricted prefixes), everything else [LABEL]

JSONL: each line is an object with a string \"text\"; the output line has the de-identified
\"text\" and \"spans\": [{\"start\", \"end\", \"label\"}] in character offsets of the input text;
other fields are passed through (an existing \"spans\" is replaced). A line that is not such an
object stops the run with exit status 2 and an error naming the line (everything before it has
been written); with --skip-bad it is replaced by {\"line\": N, \"error\": \"...\"} and the run goes on.
A file named like a subcommand (eval, bench) must be given as ./eval.

Exit status: 0 done; 1 a file could not be read or written, or the engine refused a message (too
large: use --lines); 2 bad input (a bad JSONL line, text that is not UTF-8) or bad arguments.";

/// `perimeter deid`: de-identify text; `deid eval`, `deid bench`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, after_help = DEID_EXAMPLES)]
pub struct DeidArgs {
    #[command(subcommand)]
    command: Option<DeidCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum DeidCommand {
    /// Measure the detector against a gold JSONL file (the corpus metrics), with its misses
    /// and false positives. Prints identifiers from the gold file to the terminal.
    Eval(EvalArgs),
    /// Measure throughput (one thread and all threads), per-message latency, peak memory and
    /// start-up time.
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    /// `[NAME]`.
    Redact,
    /// `[NAME_1]`, consistent within a message (JSONL) or file (text).
    Pseudonymize,
    /// Realistic fake values of the same shape.
    Surrogate,
    /// The Safe Harbor generalisations.
    SafeHarbor,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Redact => Mode::Redact,
            ModeArg::Pseudonymize => Mode::Pseudonymize,
            ModeArg::Surrogate => Mode::Surrogate,
            ModeArg::SafeHarbor => Mode::SafeHarbor,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Plain text: each file (or stdin) is one message, or each line with --lines.
    Text,
    /// One JSON object per line with a string `text` field.
    Jsonl,
}

/// Settings of the PHI engine shared by every `deid` command.
#[derive(Debug, Clone, Args)]
struct EngineArgs {
    /// Largest message the engine accepts, in bytes (the `phi.max_message_bytes` setting; also
    /// from PERIMETER_PHI_MAX_MESSAGE_BYTES). A larger message (a text file, a line with
    /// --lines, a JSONL record) is refused with an error naming it, never cut.
    /// [default: 262144]
    #[arg(long, value_name = "BYTES")]
    max_message_bytes: Option<usize>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// How identifiers are replaced.
    #[arg(long, value_enum, default_value_t = ModeArg::Redact)]
    mode: ModeArg,
    /// Input format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Worker threads; 0 uses every core. Output stays in input order.
    #[arg(long, default_value_t = 1, value_name = "N")]
    threads: usize,
    /// Text format: treat each line as its own message (pseudonyms stay consistent across the
    /// lines of a file).
    #[arg(long)]
    lines: bool,
    /// JSONL: replace a bad line by an error record instead of stopping.
    #[arg(long)]
    skip_bad: bool,
    /// Seed for surrogates and the date shift, for reproducible output (default: random).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Input files; standard input when none are given.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct EvalArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Gold JSONL file (`id`, `text`, `spans` with character offsets and labels).
    #[arg(long, value_name = "FILE.jsonl")]
    gold: PathBuf,
    /// How many misses and false positives to list (0 for none).
    #[arg(long, default_value_t = 10, value_name = "N")]
    misses: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Worker threads; 0 uses every core.
    #[arg(long, default_value_t = 0, value_name = "N")]
    threads: usize,
}

#[derive(Debug, Args)]
struct BenchArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// JSONL file with a string `text` per line [default: ../shared/corpus/phi-dev.jsonl].
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// De-identification mode run after detection.
    #[arg(long, value_enum, default_value_t = ModeArg::Pseudonymize)]
    mode: ModeArg,
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

/// Runs `perimeter deid ...` and returns the process exit status.
pub fn run(args: DeidArgs) -> ExitCode {
    let result = match args.command {
        Some(DeidCommand::Eval(a)) => eval(&a),
        Some(DeidCommand::Bench(a)) => bench(&a),
        None => deid(&args.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("perimeter deid: error: {e}");
            match e {
                CliError::Input(_) => ExitCode::from(2),
                CliError::Run(_) => ExitCode::from(1),
            }
        }
    }
}

/// The message size limit: the flag, else the environment variable, else the engine default.
fn max_message_bytes(args: &EngineArgs) -> Result<usize> {
    if let Some(n) = args.max_message_bytes {
        return Ok(n);
    }
    match std::env::var(MAX_MESSAGE_ENV) {
        Ok(v) => v.trim().parse::<usize>().map_err(|_| {
            CliError::Input(format!(
                "{MAX_MESSAGE_ENV}: expected a whole number of bytes"
            ))
        }),
        Err(std::env::VarError::NotPresent) => Ok(DEFAULT_MAX_MESSAGE_BYTES),
        Err(std::env::VarError::NotUnicode(_)) => Err(CliError::Input(format!(
            "{MAX_MESSAGE_ENV}: expected a whole number of bytes"
        ))),
    }
}

fn engine(args: &EngineArgs) -> Result<Engine> {
    let config = EngineConfig {
        max_message_bytes: max_message_bytes(args)?,
        ..EngineConfig::default()
    };
    Engine::new(config).map_err(|e| match e {
        perimeter_phi::PhiError::InvalidConfig { .. } => {
            CliError::Input(format!("--max-message-bytes: {e}"))
        }
        other => CliError::Run(format!("cannot start the PHI engine: {other}")),
    })
}

fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    let n = if threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        threads
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(|e| CliError::Run(format!("cannot start {n} worker threads: {e}")))
}

fn reference_year() -> i32 {
    SystemClock.now().year()
}

/// An input: a named file or standard input.
struct Input {
    name: String,
    reader: Box<dyn Read + Send>,
}

fn open_inputs(files: &[PathBuf]) -> Result<(Vec<Input>, Option<u64>)> {
    if files.is_empty() {
        let stdin = io::stdin();
        let known = None;
        return Ok((
            vec![Input {
                name: "stdin".to_string(),
                reader: Box::new(stdin),
            }],
            known,
        ));
    }
    let mut total = 0u64;
    let mut inputs = Vec::with_capacity(files.len());
    for f in files {
        let file = File::open(f)
            .map_err(|e| CliError::Run(format!("{}: cannot open: {e}", f.display())))?;
        total += file.metadata().map(|m| m.len()).unwrap_or(0);
        inputs.push(Input {
            name: f.display().to_string(),
            reader: Box::new(file),
        });
    }
    Ok((inputs, Some(total)))
}

/// A progress bar that stays hidden until the input proves large (known size or bytes read of
/// at least [`PROGRESS_MIN_BYTES`]) and only ever draws when stderr is a terminal.
fn progress(total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::hidden()).with_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()).with_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bytes} ({bytes_per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    count_input(&bar, 0);
    bar
}

/// Counts `n` more input bytes, showing the bar once the input is known to be large.
fn count_input(bar: &ProgressBar, n: u64) {
    bar.inc(n);
    let large = bar.position() >= PROGRESS_MIN_BYTES
        || bar.length().is_some_and(|l| l >= PROGRESS_MIN_BYTES);
    if large && bar.is_hidden() && io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    }
}

fn write_err(e: io::Error) -> CliError {
    CliError::Run(format!("cannot write the output: {e}"))
}

fn deid(args: &RunArgs) -> Result<()> {
    let engine = engine(&args.engine)?;
    let pool = pool(args.threads)?;
    let options = DeidOptions {
        mode: args.mode.into(),
        reference_year: reference_year(),
    };
    let (inputs, total) = open_inputs(&args.files)?;
    let bar = progress(total);
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let ctx = Ctx {
        engine: &engine,
        options,
        seed: args.seed,
        pool: &pool,
        bar: &bar,
    };
    let mut result = Ok(());
    for (i, input) in inputs.into_iter().enumerate() {
        result = match args.format {
            Format::Jsonl => jsonl(&ctx, input, args.skip_bad, &mut out),
            Format::Text => text(&ctx, input, i, args.lines, &mut out),
        };
        if result.is_err() {
            break;
        }
    }
    bar.finish_and_clear();
    // Whatever was processed before an error is written out: nothing is lost.
    out.flush().map_err(write_err)?;
    result
}

struct Ctx<'a> {
    engine: &'a Engine,
    options: DeidOptions,
    seed: Option<u64>,
    pool: &'a rayon::ThreadPool,
    bar: &'a ProgressBar,
}

impl Ctx<'_> {
    fn vault(&self, n: u64) -> Vault {
        match self.seed {
            Some(s) => Vault::with_seed(s.wrapping_add(n)),
            None => Vault::new(),
        }
    }

    fn detect(&self, where_: &str, text: &str) -> Result<Vec<Span>> {
        self.engine
            .detect(text)
            .map_err(|e| CliError::Run(format!("{where_}: {e}")))
    }
}

/// One JSONL line that is not usable.
struct BadLine {
    line: u64,
    reason: String,
    id: Option<Value>,
}

fn jsonl(ctx: &Ctx<'_>, input: Input, skip_bad: bool, out: &mut impl Write) -> Result<()> {
    let name = input.name;
    let mut reader = BufReader::with_capacity(1 << 16, input.reader);
    let mut line_no = 0u64;
    loop {
        // Read a batch of lines.
        let mut batch: Vec<(u64, Vec<u8>)> = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            let mut buf = Vec::new();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| CliError::Run(format!("{name}: cannot read: {e}")))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            count_input(ctx.bar, n as u64);
            batch.push((line_no, buf));
        }
        if batch.is_empty() {
            return Ok(());
        }
        let results: Vec<Option<Result<String, BadLine>>> = ctx.pool.install(|| {
            batch
                .par_iter()
                .map(|(n, raw)| jsonl_line(ctx, &name, *n, raw))
                .collect()
        });
        for r in results {
            match r {
                None => {}
                Some(Ok(line)) => {
                    out.write_all(line.as_bytes()).map_err(write_err)?;
                    out.write_all(b"\n").map_err(write_err)?;
                }
                Some(Err(bad)) if skip_bad => {
                    eprintln!(
                        "perimeter deid: {name}: line {}: {} (skipped)",
                        bad.line, bad.reason
                    );
                    let mut rec = Map::new();
                    rec.insert("line".into(), json!(bad.line));
                    rec.insert("error".into(), json!(bad.reason));
                    if let Some(id) = bad.id {
                        rec.insert("id".into(), id);
                    }
                    let s = serde_json::to_string(&Value::Object(rec)).map_err(|e| {
                        CliError::Run(format!("cannot encode an error record: {e}"))
                    })?;
                    out.write_all(s.as_bytes()).map_err(write_err)?;
                    out.write_all(b"\n").map_err(write_err)?;
                }
                Some(Err(bad)) => {
                    return Err(CliError::Input(format!(
                        "{name}: line {}: {}; the lines before it were written (use --skip-bad to go on past bad lines)",
                        bad.line, bad.reason
                    )));
                }
            }
        }
    }
}

/// De-identifies one JSONL line; `None` for a blank line.
fn jsonl_line(ctx: &Ctx<'_>, name: &str, n: u64, raw: &[u8]) -> Option<Result<String, BadLine>> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let bad = |reason: String, id: Option<Value>| BadLine {
        line: n,
        reason,
        id,
    };
    let mut value: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => {
            // serde_json's syntax errors name a position, never the content.
            return Some(Err(bad(
                format!(
                    "not valid JSON ({:?} error at column {})",
                    e.classify(),
                    e.column()
                ),
                None,
            )));
        }
    };
    let Some(obj) = value.as_object_mut() else {
        return Some(Err(bad("expected a JSON object".into(), None)));
    };
    let id = obj.get("id").cloned();
    let Some(text) = obj.get("text").and_then(Value::as_str).map(str::to_owned) else {
        return Some(Err(bad("expected a string field \"text\"".into(), id)));
    };
    let spans = match ctx.detect(&format!("{name}: line {n}"), &text) {
        Ok(s) => s,
        Err(e) => return Some(Err(bad(e.to_string(), id))),
    };
    let vault = ctx.vault(n);
    let d = match deidentify(&text, &spans, &ctx.options, &vault) {
        Ok(d) => d,
        Err(e) => return Some(Err(bad(e.to_string(), id))),
    };
    let inputs: Vec<std::ops::Range<usize>> =
        d.replacements.iter().map(|r| r.input.clone()).collect();
    let chars = char_ranges(&text, &inputs);
    let spans_json: Vec<Value> = chars
        .into_iter()
        .zip(&d.replacements)
        .map(|((s, e), r)| json!({"start": s, "end": e, "label": r.label}))
        .collect();
    obj.insert("text".into(), Value::String(d.text));
    obj.insert("spans".into(), Value::Array(spans_json));
    Some(
        serde_json::to_string(&value)
            .map_err(|e| bad(format!("cannot encode the output: {e}"), None)),
    )
}

/// Character offsets for sorted byte ranges of `text`, in one pass.
fn char_ranges(text: &str, ranges: &[std::ops::Range<usize>]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(ranges.len());
    let mut byte = 0;
    let mut chars = 0;
    let advance = |to: usize, byte: &mut usize, chars: &mut usize| {
        let seg = text.get(*byte..to).unwrap_or("");
        *chars += seg.chars().count();
        *byte = to.max(*byte);
    };
    for r in ranges {
        advance(r.start, &mut byte, &mut chars);
        let start = chars;
        advance(r.end, &mut byte, &mut chars);
        out.push((start, chars));
    }
    out
}

fn text(
    ctx: &Ctx<'_>,
    mut input: Input,
    file_no: usize,
    per_line: bool,
    out: &mut impl Write,
) -> Result<()> {
    let name = input.name;
    let mut bytes = Vec::new();
    input
        .reader
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::Run(format!("{name}: cannot read: {e}")))?;
    count_input(ctx.bar, bytes.len() as u64);
    let whole = String::from_utf8(bytes).map_err(|e| {
        CliError::Input(format!(
            "{name}: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    // One vault per file: a file is one conversation, so the same person keeps one token
    // across its lines.
    let vault = ctx.vault(file_no as u64);
    let messages: Vec<&str> = if per_line {
        whole.split_inclusive('\n').collect()
    } else {
        vec![whole.as_str()]
    };
    // Detection (the costly part) in parallel; de-identification in input order so that
    // token numbers follow the text.
    let detected: Vec<Result<Vec<Span>>> = ctx.pool.install(|| {
        messages
            .par_iter()
            .enumerate()
            .map(|(i, m)| {
                let where_ = if per_line {
                    format!("{name}: line {}", i + 1)
                } else {
                    name.clone()
                };
                ctx.detect(&where_, m).map_err(|e| match e {
                    CliError::Run(m) if !per_line => {
                        CliError::Run(format!("{m} (use --lines for long inputs)"))
                    }
                    other => other,
                })
            })
            .collect()
    });
    for (m, spans) in messages.iter().zip(detected) {
        let spans = spans?;
        let d = deidentify(m, &spans, &ctx.options, &vault)
            .map_err(|e| CliError::Run(format!("{name}: {e}")))?;
        out.write_all(d.text.as_bytes()).map_err(write_err)?;
    }
    Ok(())
}

/// Reads a JSONL file of records with a `text` (and for eval, gold `spans`).
fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = File::open(path)
        .map_err(|e| CliError::Run(format!("{}: cannot open: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line =
            line.map_err(|e| CliError::Input(format!("{}: line {}: {e}", path.display(), i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str(&line).map_err(|e| {
            CliError::Input(format!(
                "{}: line {}: not a record of the expected shape ({:?} error at column {})",
                path.display(),
                i + 1,
                e.classify(),
                e.column()
            ))
        })?;
        out.push(rec);
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct TextRecord {
    text: String,
}

fn eval(args: &EvalArgs) -> Result<()> {
    let records: Vec<GoldRecord> = read_jsonl(&args.gold)?;
    let engine = engine(&args.engine)?;
    let pool = pool(args.threads)?;
    let predicted: Vec<Result<Vec<Span>>> = pool.install(|| {
        records
            .par_iter()
            .map(|r| {
                engine
                    .detect(&r.text)
                    .map_err(|e| CliError::Run(format!("record {}: {e}", r.id)))
            })
            .collect()
    });
    let mut evaluation = Evaluation::new();
    for (r, p) in records.iter().zip(predicted) {
        let p = to_char_spans(&r.text, &p?);
        evaluation.add(&r.id, &r.text, &r.spans, &p);
    }
    let report = evaluation.report();
    if args.misses > 0 {
        eprintln!(
            "perimeter deid eval: warning: the misses and false positives below quote the gold file's text (PHI if the file holds real data)"
        );
    }
    let texts: HashMap<&str, &str> = records
        .iter()
        .map(|r| (r.id.as_str(), r.text.as_str()))
        .collect();
    let quote = |id: &str, start: usize, end: usize| -> (String, String) {
        let text = texts.get(id).copied().unwrap_or("");
        let chars: Vec<char> = text.chars().collect();
        let end = end.min(chars.len());
        let start = start.min(end);
        let before: String = chars[start.saturating_sub(30)..start].iter().collect();
        let inner: String = chars[start..end].iter().collect();
        let after: String = chars[end..(end + 30).min(chars.len())].iter().collect();
        let flat = |s: &str| s.replace(['\n', '\r', '\t'], " ");
        (
            flat(&inner),
            format!("…{}[{}]{}…", flat(&before), flat(&inner), flat(&after)),
        )
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        let misses: Vec<Value> = evaluation
            .misses()
            .iter()
            .take(args.misses)
            .map(|m| {
                let (t, c) = quote(&m.id, m.start, m.end);
                json!({"id": m.id, "start": m.start, "end": m.end, "label": m.label, "text": t, "context": c})
            })
            .collect();
        let fps: Vec<Value> = evaluation
            .false_positives()
            .iter()
            .take(args.misses)
            .map(|m| {
                let (t, c) = quote(&m.id, m.start, m.end);
                json!({"id": m.id, "start": m.start, "end": m.end, "label": m.label, "text": t, "context": c})
            })
            .collect();
        let v = json!({
            "report": report,
            "misses_total": evaluation.misses().len(),
            "false_positives_total": evaluation.false_positives().len(),
            "misses": misses,
            "false_positives": fps,
        });
        writeln!(out, "{v:#}").map_err(write_err)?;
    } else {
        let gold = report.gold_spans;
        let caught: usize = report.per_label.values().map(|c| c.caught).sum();
        let matched: usize = report.per_label.values().map(|c| c.label_matched).sum();
        let w = &mut out;
        let mut lines = vec![
            format!("gold file          {}", args.gold.display()),
            format!("messages           {}", report.messages),
            format!("gold spans         {gold}"),
            format!(
                "entity recall      {:.4}  ({caught}/{gold})",
                report.entity_recall
            ),
            format!("char precision     {:.4}", report.char_precision),
            format!(
                "label-match recall {:.4}  ({matched}/{gold})",
                report.label_match_recall
            ),
            "per label          recall   label-match  (caught/gold)".to_string(),
        ];
        for (label, c) in &report.per_label {
            let lm = if c.gold == 0 {
                1.0
            } else {
                c.label_matched as f64 / c.gold as f64
            };
            lines.push(format!(
                "  {:<16} {:.4}   {:.4}       ({}/{})",
                label.as_str(),
                c.recall(),
                lm,
                c.caught,
                c.gold
            ));
        }
        if args.misses > 0 {
            lines.push(format!(
                "misses ({} of {}):",
                evaluation.misses().len().min(args.misses),
                evaluation.misses().len()
            ));
            for m in evaluation.misses().iter().take(args.misses) {
                let (_, c) = quote(&m.id, m.start, m.end);
                lines.push(format!("  {:<10} {:<12} {c}", m.id, m.label.as_str()));
            }
            lines.push(format!(
                "false positives ({} of {}):",
                evaluation.false_positives().len().min(args.misses),
                evaluation.false_positives().len()
            ));
            for m in evaluation.false_positives().iter().take(args.misses) {
                let (_, c) = quote(&m.id, m.start, m.end);
                lines.push(format!("  {:<10} {:<12} {c}", m.id, m.label.as_str()));
            }
        }
        for l in lines {
            writeln!(w, "{l}").map_err(write_err)?;
        }
    }
    out.flush().map_err(write_err)
}

/// The texts joined in order into messages of at least 1,024 bytes (a trailing short one is
/// dropped unless it is the only one).
fn one_kb_messages(records: &[TextRecord]) -> Vec<TextRecord> {
    let mut out = Vec::new();
    let mut cur = String::with_capacity(1100);
    for r in records {
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(&r.text);
        if cur.len() >= 1024 {
            out.push(TextRecord {
                text: std::mem::take(&mut cur),
            });
        }
    }
    if out.is_empty() && !cur.is_empty() {
        out.push(TextRecord { text: cur });
    }
    out
}

/// CPU time this thread has run, in nanoseconds (Linux `/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Peak resident memory (VmHWM) in bytes, from /proc/self/status (Linux only).
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn bench(args: &BenchArgs) -> Result<()> {
    let path = match &args.file {
        Some(p) => p.clone(),
        None => {
            let p = PathBuf::from(DEFAULT_BENCH_FILE);
            if !p.is_file() {
                return Err(CliError::Input(format!(
                    "no FILE given and {DEFAULT_BENCH_FILE} not found from this directory; pass a JSONL file with a string \"text\" per line"
                )));
            }
            p
        }
    };
    let records: Vec<TextRecord> = read_jsonl(&path)?;
    if records.is_empty() {
        return Err(CliError::Input(format!(
            "{}: no records to measure",
            path.display()
        )));
    }
    let bytes: usize = records.iter().map(|r| r.text.len()).sum();
    let mb = bytes as f64 / 1e6;
    let started = Instant::now();
    let engine = engine(&args.engine)?;
    let startup = started.elapsed();
    let options = DeidOptions {
        mode: args.mode.into(),
        reference_year: reference_year(),
    };
    let one = |r: &TextRecord| -> Result<()> {
        let spans = engine
            .detect(&r.text)
            .map_err(|e| CliError::Run(format!("a message was refused: {e}")))?;
        let vault = Vault::with_seed(1);
        deidentify(&r.text, &spans, &options, &vault)
            .map_err(|e| CliError::Run(format!("de-identification failed: {e}")))?;
        Ok(())
    };
    let rounds = args.rounds.max(1);
    let mut single = Vec::with_capacity(rounds);
    let mut latencies = Vec::with_capacity(records.len() * rounds);
    // CPU time of this thread (Linux schedstat, updated at scheduler ticks: meaningful over a
    // whole pass, not per message), beside wall time: on a shared, loaded machine wall time
    // also counts the time other processes held the core. None when a pass is too short.
    let mut single_cpu = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let c = thread_cpu_ns();
        for r in &records {
            let m = Instant::now();
            one(r)?;
            latencies.push(m.elapsed());
        }
        single.push(mb / t.elapsed().as_secs_f64());
        if let (Some(c0), Some(c1)) = (c, thread_cpu_ns())
            && c1 > c0
        {
            single_cpu.push(mb / ((c1 - c0) as f64 / 1e9));
        }
    }
    latencies.sort_unstable();
    // 1 KB messages: the file's texts joined (in order) into messages of 1,024 bytes or a
    // little more, each measured alone (detect + de-identify), on one thread.
    let kb_messages = one_kb_messages(&records);
    let mut kb_latencies = Vec::with_capacity(kb_messages.len() * rounds);
    for _ in 0..rounds {
        for m in &kb_messages {
            let t = Instant::now();
            one(m)?;
            kb_latencies.push(t.elapsed());
        }
    }
    kb_latencies.sort_unstable();
    let all = pool(0)?;
    let threads = all.current_num_threads();
    let mut multi = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        all.install(|| records.par_iter().try_for_each(one))?;
        multi.push(mb / t.elapsed().as_secs_f64());
    }
    let single = median(single);
    let multi = median(multi);
    let p50 = percentile(&latencies, 50.0);
    let p99 = percentile(&latencies, 99.0);
    let kb_p50 = percentile(&kb_latencies, 50.0);
    let kb_p99 = percentile(&kb_latencies, 99.0);
    let single_cpu = (!single_cpu.is_empty()).then(|| median(single_cpu));
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned));
    let peak = peak_memory();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let v = json!({
            "file": path.display().to_string(),
            "messages": records.len(),
            "bytes": bytes,
            "mode": Mode::from(args.mode).as_str(),
            "rounds": rounds,
            "startup_ms": startup.as_secs_f64() * 1e3,
            "mb_per_s_1_thread": single,
            "threads": threads,
            "mb_per_s_all_threads": multi,
            "latency_p50_us": p50.as_secs_f64() * 1e6,
            "latency_p99_us": p99.as_secs_f64() * 1e6,
            "kb_messages": kb_messages.len(),
            "latency_1kb_p50_us": kb_p50.as_secs_f64() * 1e6,
            "latency_1kb_p99_us": kb_p99.as_secs_f64() * 1e6,
            "mb_per_s_1_thread_cpu_time": single_cpu,
            "loadavg_1min": load,
            "peak_rss_bytes": peak,
        });
        writeln!(out, "{v:#}").map_err(write_err)?;
    } else {
        let lines = [
            format!(
                "file          {} ({} messages, {:.2} MB of text)",
                path.display(),
                records.len(),
                mb
            ),
            format!(
                "work          detect + {} per message, median of {rounds} passes",
                Mode::from(args.mode).as_str()
            ),
            format!(
                "start-up      {:.1} ms (Engine::new)",
                startup.as_secs_f64() * 1e3
            ),
            format!(
                "1 thread      {single:.2} MB/s wall{}",
                single_cpu.map_or(String::new(), |c| format!(
                    ", {c:.2} MB/s per second of CPU time"
                ))
            ),
            format!("{threads} threads     {multi:.2} MB/s"),
            format!(
                "latency       p50 {:.0} µs, p99 {:.0} µs per message (1 thread)",
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6
            ),
            format!(
                "1 KB message  p50 {:.0} µs, p99 {:.0} µs ({} messages of ~1 KB, 1 thread)",
                kb_p50.as_secs_f64() * 1e6,
                kb_p99.as_secs_f64() * 1e6,
                kb_messages.len()
            ),
            format!(
                "load average  {} (1 min; figures on a loaded machine are lower bounds)",
                load.as_deref().unwrap_or("unknown")
            ),
            match peak {
                Some(b) => format!("peak memory   {:.1} MB (VmHWM)", b as f64 / 1e6),
                None => "peak memory   unknown (no /proc/self/status)".to_string(),
            },
        ];
        for l in lines {
            writeln!(out, "{l}").map_err(write_err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_ranges_count_code_points() {
        let t = "é Ann, ☃ Bo";
        let ann = t.find("Ann").unwrap();
        let bo = t.find("Bo").unwrap();
        assert_eq!(
            char_ranges(t, &[ann..ann + 3, bo..bo + 2]),
            vec![(2, 5), (9, 11)]
        );
    }

    #[test]
    fn percentiles_pick_ranks() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_micros(51));
        assert_eq!(percentile(&v, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}

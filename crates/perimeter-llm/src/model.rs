//! The loaded model and its worker thread.
//!
//! One model is loaded once and shared (`LocalModel` is a cheap `Clone` around an `Arc`). The
//! weights and their key-value cache live on one dedicated worker thread, which runs one
//! request at a time, in arrival order, on its own rayon pool of `threads` threads. Requests
//! wait in a bounded queue; when it is full a request fails at once with [`LlmError::Busy`]
//! instead of waiting without bound. Callers never block an async runtime: [`LocalModel::generate`]
//! only tokenizes and enqueues, and results come back over a channel.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::{self, ModelWeights};
use tokio::sync::{mpsc, oneshot};

use crate::decode::DeltaDecoder;
use crate::error::{LlmError, compute};
use crate::gguf;
use crate::template::{ChatMessage, ChatTemplate};
use crate::tokenizer::TextTokenizer;

/// How to load the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// The GGUF file.
    pub path: PathBuf,
    /// The name callers use in `model` (e.g. `local`).
    pub name: String,
    /// The context length to use; at most the model's own. `None`: the model's own (capped at
    /// what the llama implementation supports, 4096).
    pub context: Option<usize>,
    /// Compute threads; `None`: every core.
    pub threads: Option<usize>,
    /// Completion tokens when a request names no `max_tokens`.
    pub max_tokens: u32,
    /// Requests that may wait for the model; more fail with [`LlmError::Busy`].
    pub queue: usize,
}

impl ModelConfig {
    /// Defaults for a file: context from the model, every core, 512 tokens, 32 waiting.
    pub fn new(path: impl Into<PathBuf>, name: impl Into<String>) -> ModelConfig {
        ModelConfig {
            path: path.into(),
            name: name.into(),
            context: None,
            threads: None,
            max_tokens: 512,
            queue: 32,
        }
    }
}

/// What was loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The configured name.
    pub name: String,
    /// `general.architecture` (`llama`).
    pub architecture: String,
    /// `general.name` from the file, if any.
    pub file_model_name: Option<String>,
    /// The model's own context length.
    pub model_context: usize,
    /// The context length used.
    pub context: usize,
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Tensors re-quantized from Q4_1 to Q8_0 at load (candle has no fast Q4_1 kernel).
    pub requantized_tensors: u64,
    /// Compute threads.
    pub threads: usize,
    /// How long loading took.
    pub load_time: Duration,
    /// Whether the chat template came from the file (otherwise ChatML).
    pub template_from_file: bool,
}

/// Sampling and length parameters of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// Completion tokens at most; `None`: the configured default (and what fits).
    pub max_tokens: Option<u32>,
    /// 0 picks the most likely token every time (deterministic); up to 2.
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens whose probabilities add up to this.
    pub top_p: Option<f64>,
    /// The sampler's seed: the same seed, prompt and parameters give the same text.
    pub seed: u64,
    /// Up to four strings that end the completion (not included in it).
    pub stop: Vec<String>,
}

impl Default for GenerationParams {
    /// Deterministic (temperature 0), seed 0, no stop sequences, default length.
    fn default() -> Self {
        GenerationParams {
            max_tokens: None,
            temperature: 0.0,
            top_p: None,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

impl GenerationParams {
    fn validate(&self) -> Result<(), LlmError> {
        let bad = |param, reason| Err(LlmError::InvalidParameter { param, reason });
        if !self.temperature.is_finite() || !(0.0..=2.0).contains(&self.temperature) {
            return bad("temperature", "must be between 0 and 2");
        }
        if let Some(p) = self.top_p
            && (!p.is_finite() || p <= 0.0 || p > 1.0)
        {
            return bad("top_p", "must be greater than 0 and at most 1");
        }
        if self.max_tokens == Some(0) {
            return bad("max_tokens", "must be at least 1");
        }
        if self.stop.len() > 4 {
            return bad("stop", "at most 4 stop sequences");
        }
        if self.stop.iter().any(|s| s.is_empty() || s.len() > 256) {
            return bad("stop", "each stop sequence must have 1 to 256 bytes");
        }
        Ok(())
    }

    fn sampling(&self) -> Sampling {
        if self.temperature <= 0.0 {
            return Sampling::ArgMax;
        }
        match self.top_p {
            Some(p) if p < 1.0 => Sampling::TopP {
                p,
                temperature: self.temperature,
            },
            _ => Sampling::All {
                temperature: self.temperature,
            },
        }
    }
}

/// Why a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model ended its turn, or a stop sequence was produced.
    Stop,
    /// `max_tokens` (or the context) was reached.
    Length,
}

impl FinishReason {
    /// The OpenAI name (`stop`, `length`).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Token counts of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens the model produced (the end-of-turn token included).
    pub completion_tokens: u32,
}

impl Usage {
    /// Both.
    pub fn total_tokens(&self) -> u32 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The text (without a stop sequence).
    pub text: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
}

/// One event of a streamed generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// More text (whole characters; never empty).
    Delta(String),
    /// The end, with the whole text (the deltas' concatenation), the reason and the counts.
    Done(Completion),
}

/// Cancels a generation (between two tokens).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// Asks the generation to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// Whether it was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A generation in progress. Dropping it cancels the generation.
#[derive(Debug)]
pub struct GenerationStream {
    rx: mpsc::Receiver<Result<StreamEvent, LlmError>>,
    cancel: CancelToken,
    prompt_tokens: u32,
    finished: bool,
}

impl GenerationStream {
    /// The next event; `None` after [`StreamEvent::Done`] or an error.
    pub async fn next(&mut self) -> Option<Result<StreamEvent, LlmError>> {
        if self.finished {
            return None;
        }
        let ev = match self.rx.recv().await {
            Some(ev) => ev,
            // The worker went away without finishing (it failed).
            None => Err(LlmError::WorkerGone),
        };
        if !matches!(ev, Ok(StreamEvent::Delta(_))) {
            self.finished = true;
        }
        Some(ev)
    }

    /// Tokens in the prompt.
    pub fn prompt_tokens(&self) -> u32 {
        self.prompt_tokens
    }

    /// A handle that cancels this generation.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Waits for the whole completion.
    pub async fn collect(mut self) -> Result<Completion, LlmError> {
        while let Some(ev) = self.next().await {
            match ev? {
                StreamEvent::Delta(_) => {}
                StreamEvent::Done(c) => return Ok(c),
            }
        }
        Err(LlmError::WorkerGone)
    }
}

impl Drop for GenerationStream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The allowed value the model found most likely.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Its position among the allowed values.
    pub index: usize,
    /// The value.
    pub value: String,
    /// The log-likelihood of each allowed value as the whole answer (natural log).
    pub log_likelihoods: Vec<f64>,
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
}

type EventTx = mpsc::Sender<Result<StreamEvent, LlmError>>;

enum Job {
    Generate {
        prompt: Vec<u32>,
        max_new: usize,
        params: GenerationParams,
        tx: EventTx,
        cancel: CancelToken,
    },
    Choose {
        prompt: Vec<u32>,
        options: Vec<Vec<u32>>,
        tx: oneshot::Sender<Result<Vec<f64>, LlmError>>,
    },
}

struct Shared {
    info: ModelInfo,
    tokenizer: Arc<TextTokenizer>,
    template: ChatTemplate,
    jobs: SyncSender<Job>,
    queue: usize,
    max_tokens: u32,
}

/// A local GGUF model, loaded once, shared by every caller.
#[derive(Clone)]
pub struct LocalModel {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("info", &self.shared.info)
            .finish_non_exhaustive()
    }
}

/// The llama implementation's rotary tables cover this many positions.
const LLAMA_MAX_POSITIONS: usize = quantized_llama::MAX_SEQ_LEN;

fn io_err(path: &Path, e: &std::io::Error) -> LlmError {
    LlmError::Io {
        path: path.to_path_buf(),
        reason: e.kind().to_string(),
    }
}

fn md_usize(md: &std::collections::HashMap<String, Value>, key: &str) -> Option<usize> {
    match md.get(key)? {
        Value::U32(v) => usize::try_from(*v).ok(),
        Value::U64(v) => usize::try_from(*v).ok(),
        Value::I32(v) => usize::try_from(*v).ok(),
        Value::I64(v) => usize::try_from(*v).ok(),
        _ => None,
    }
}

fn md_str<'a>(md: &'a std::collections::HashMap<String, Value>, key: &str) -> Option<&'a str> {
    match md.get(key)? {
        Value::String(s) => Some(s.as_str()),
        _ => None,
    }
}

fn gguf_err(e: candle_core::Error) -> LlmError {
    LlmError::InvalidGguf(e.to_string())
}

/// Reads the weights, re-quantizing Q4_1 tensors to Q8_0 (written to an in-memory GGUF file
/// that the llama loader then reads).
fn load_weights<R: Read + Seek>(
    content: Content,
    reader: &mut R,
    requantize: bool,
    device: &Device,
) -> Result<(ModelWeights, u64), LlmError> {
    if !requantize {
        return Ok((
            ModelWeights::from_gguf(content, reader, device).map_err(gguf_err)?,
            0,
        ));
    }
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    let mut converted = 0u64;
    for name in names {
        let q = content.tensor(reader, name, device).map_err(gguf_err)?;
        let q = if q.dtype() == GgmlDType::Q4_1 {
            converted += 1;
            let f = q.dequantize(device).map_err(compute)?;
            QTensor::quantize(&f, GgmlDType::Q8_0).map_err(compute)?
        } else {
            q
        };
        tensors.push((name.clone(), q));
    }
    let metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &metadata, &refs).map_err(compute)?;
    drop(refs);
    drop(tensors);
    buf.set_position(0);
    let requantized = Content::read(&mut buf).map_err(compute)?;
    let weights = ModelWeights::from_gguf(requantized, &mut buf, device).map_err(compute)?;
    Ok((weights, converted))
}

impl LocalModel {
    /// Loads the model (blocking: seconds for a large file; call it from a blocking thread in
    /// async code). The file is checked structurally before anything trusts its lengths.
    pub fn load(config: &ModelConfig) -> Result<LocalModel, LlmError> {
        let start = Instant::now();
        let path = &config.path;
        if config.name.trim().is_empty() {
            return Err(LlmError::InvalidParameter {
                param: "name",
                reason: "must not be empty",
            });
        }
        if config.threads == Some(0) {
            return Err(LlmError::InvalidParameter {
                param: "threads",
                reason: "must be at least 1",
            });
        }
        if config.max_tokens == 0 {
            return Err(LlmError::InvalidParameter {
                param: "max_tokens",
                reason: "must be at least 1",
            });
        }
        if config.queue == 0 {
            return Err(LlmError::InvalidParameter {
                param: "queue",
                reason: "must be at least 1",
            });
        }
        let file = File::open(path).map_err(|e| io_err(path, &e))?;
        let len = file.metadata().map_err(|e| io_err(path, &e))?.len();
        let summary = gguf::check(BufReader::new(&file), len)?;
        let mut reader = BufReader::new(file);
        reader
            .seek(std::io::SeekFrom::Start(0))
            .map_err(|e| io_err(path, &e))?;
        let content = Content::read(&mut reader).map_err(gguf_err)?;
        let md = &content.metadata;
        let architecture = md_str(md, "general.architecture")
            .ok_or_else(|| LlmError::InvalidGguf("general.architecture is missing".into()))?
            .to_string();
        if architecture != "llama" {
            return Err(LlmError::Unsupported(format!(
                "the architecture {architecture:?} (this build runs llama-architecture models: Llama, SmolLM, TinyLlama, Mistral)"
            )));
        }
        let file_model_name = md_str(md, "general.name").map(str::to_string);
        let model_context = md_usize(md, "llama.context_length")
            .ok_or_else(|| LlmError::InvalidGguf("llama.context_length is missing".into()))?;
        let limit = model_context.min(LLAMA_MAX_POSITIONS);
        let context = match config.context {
            Some(c) if c == 0 || c > limit => {
                return Err(LlmError::InvalidParameter {
                    param: "context",
                    reason: "must be at least 1 and at most the model's context length (and 4096)",
                });
            }
            Some(c) => c,
            None => limit,
        };
        let tokenizer = Arc::new(TextTokenizer::from_metadata(md)?);
        let template = ChatTemplate::new(md_str(md, "tokenizer.chat_template"))?;
        let threads = config.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("perimeter-llm-{i}"))
            .build()
            .map_err(|_| LlmError::Compute("the compute threads could not be started".into()))?;
        let device = Device::Cpu;
        let (weights, requantized_tensors) =
            pool.install(|| load_weights(content, &mut reader, summary.q4_1_tensors > 0, &device))?;
        let (jobs, rx) = std::sync::mpsc::sync_channel(config.queue);
        let worker = Worker {
            weights,
            device,
            tokenizer: Arc::clone(&tokenizer),
        };
        std::thread::Builder::new()
            .name("perimeter-llm".into())
            .spawn(move || worker.run(&pool, &rx))
            .map_err(|_| LlmError::Compute("the model thread could not be started".into()))?;
        let info = ModelInfo {
            name: config.name.clone(),
            architecture,
            file_model_name,
            model_context,
            context,
            vocab_size: tokenizer.vocab_size(),
            requantized_tensors,
            threads,
            load_time: start.elapsed(),
            template_from_file: template.from_file(),
        };
        Ok(LocalModel {
            shared: Arc::new(Shared {
                info,
                tokenizer,
                template,
                jobs,
                queue: config.queue,
                max_tokens: config.max_tokens,
            }),
        })
    }

    /// What was loaded.
    pub fn info(&self) -> &ModelInfo {
        &self.shared.info
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.shared.tokenizer
    }

    /// The prompt text the chat template makes of `messages`.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, LlmError> {
        self.shared
            .template
            .render(messages, &self.shared.tokenizer)
    }

    /// The prompt tokens for `messages`.
    pub fn prompt_tokens(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, LlmError> {
        self.shared
            .template
            .tokens(messages, &self.shared.tokenizer)
    }

    fn enqueue(&self, job: Job) -> Result<(), LlmError> {
        self.shared.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => LlmError::Busy {
                queued: self.shared.queue,
            },
            TrySendError::Disconnected(_) => LlmError::WorkerGone,
        })
    }

    /// Starts generating the assistant's answer to `messages`. Checks the parameters and the
    /// context length before anything is queued.
    pub fn generate(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
    ) -> Result<GenerationStream, LlmError> {
        let prompt = self.prompt_tokens(messages)?;
        self.generate_tokens(prompt, params)
    }

    /// Starts generating from prompt tokens (already templated).
    pub fn generate_tokens(
        &self,
        prompt: Vec<u32>,
        params: &GenerationParams,
    ) -> Result<GenerationStream, LlmError> {
        params.validate()?;
        let context = self.shared.info.context;
        let requested = params.max_tokens.map_or(0, |m| m as usize);
        if prompt.is_empty() {
            return Err(LlmError::InvalidParameter {
                param: "messages",
                reason: "the prompt is empty",
            });
        }
        if prompt.len() >= context || prompt.len() + requested > context {
            return Err(LlmError::ContextLength {
                prompt_tokens: prompt.len(),
                requested,
                context,
            });
        }
        let available = context - prompt.len();
        let max_new = match params.max_tokens {
            Some(m) => m as usize,
            None => (self.shared.max_tokens as usize).min(available),
        };
        let prompt_tokens = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
        let (tx, rx) = mpsc::channel(256);
        let cancel = CancelToken::default();
        self.enqueue(Job::Generate {
            prompt,
            max_new,
            params: params.clone(),
            tx,
            cancel: cancel.clone(),
        })?;
        Ok(GenerationStream {
            rx,
            cancel,
            prompt_tokens,
            finished: false,
        })
    }

    /// The whole answer to `messages`.
    pub async fn complete(
        &self,
        messages: &[ChatMessage],
        params: &GenerationParams,
    ) -> Result<Completion, LlmError> {
        self.generate(messages, params)?.collect().await
    }

    /// Which of `allowed` the model finds most likely as its whole answer to `messages`
    /// (each value scored as the answer followed by the end of the turn). The result is always
    /// one of `allowed`, whatever the model would have written.
    pub async fn choose(
        &self,
        messages: &[ChatMessage],
        allowed: &[&str],
    ) -> Result<Choice, LlmError> {
        if allowed.is_empty() || allowed.len() > 64 {
            return Err(LlmError::InvalidChoice("give 1 to 64 allowed values"));
        }
        let mut options = Vec::with_capacity(allowed.len());
        for value in allowed {
            if value.is_empty() {
                return Err(LlmError::InvalidChoice("an allowed value is empty"));
            }
            let ids = self.shared.tokenizer.encode(value)?;
            if ids.is_empty() || ids.len() > 64 {
                return Err(LlmError::InvalidChoice(
                    "an allowed value must be 1 to 64 tokens",
                ));
            }
            if options.contains(&ids) {
                return Err(LlmError::InvalidChoice("two allowed values are the same"));
            }
            options.push(ids);
        }
        let prompt = self.prompt_tokens(messages)?;
        let longest = options.iter().map(Vec::len).max().unwrap_or(0);
        let context = self.shared.info.context;
        if prompt.len() + longest + 1 > context {
            return Err(LlmError::ContextLength {
                prompt_tokens: prompt.len(),
                requested: longest + 1,
                context,
            });
        }
        let prompt_tokens = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
        let (tx, rx) = oneshot::channel();
        self.enqueue(Job::Choose {
            prompt,
            options,
            tx,
        })?;
        let scores = rx.await.map_err(|_| LlmError::WorkerGone)??;
        let mut best = 0;
        for (i, s) in scores.iter().enumerate() {
            if *s > scores[best] {
                best = i;
            }
        }
        let value = allowed.get(best).ok_or(LlmError::WorkerGone)?.to_string();
        Ok(Choice {
            index: best,
            value,
            log_likelihoods: scores,
            prompt_tokens,
        })
    }
}

struct Worker {
    weights: ModelWeights,
    device: Device,
    tokenizer: Arc<TextTokenizer>,
}

fn log_softmax(logits: &Tensor) -> Result<Vec<f64>, LlmError> {
    let v: Vec<f32> = logits
        .to_dtype(DType::F32)
        .and_then(|t| t.to_vec1())
        .map_err(compute)?;
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = v.iter().map(|&x| (x as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    Ok(v.iter().map(|&x| x as f64 - lse).collect())
}

impl Worker {
    fn run(mut self, pool: &rayon::ThreadPool, rx: &Receiver<Job>) {
        while let Ok(job) = rx.recv() {
            pool.install(|| self.handle(job));
        }
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Generate {
                prompt,
                max_new,
                params,
                tx,
                cancel,
            } => {
                let result = self.generate(&prompt, max_new, &params, &tx, &cancel);
                let last = match result {
                    Ok(c) => Ok(StreamEvent::Done(c)),
                    Err(e) => Err(e),
                };
                // The receiver may be gone (cancelled): nothing to tell.
                let _ = tx.blocking_send(last);
            }
            Job::Choose {
                prompt,
                options,
                tx,
            } => {
                if tx.is_closed() {
                    return;
                }
                let _ = tx.send(self.choose(&prompt, &options));
            }
        }
    }

    fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Tensor, LlmError> {
        let input = Tensor::new(ids, &self.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(compute)?;
        self.weights
            .forward(&input, pos)
            .and_then(|t| t.squeeze(0))
            .map_err(compute)
    }

    fn generate(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        params: &GenerationParams,
        tx: &EventTx,
        cancel: &CancelToken,
    ) -> Result<Completion, LlmError> {
        if cancel.is_cancelled() || tx.is_closed() {
            return Err(LlmError::Cancelled);
        }
        let tokenizer = Arc::clone(&self.tokenizer);
        let mut sampler = LogitsProcessor::from_sampling(params.seed, params.sampling());
        let mut decoder = DeltaDecoder::new(&tokenizer, &params.stop);
        let mut logits = self.forward(prompt, 0)?;
        let mut pos = prompt.len();
        let mut generated = 0usize;
        let send = |delta: String| -> Result<(), LlmError> {
            if delta.is_empty() {
                return Ok(());
            }
            tx.blocking_send(Ok(StreamEvent::Delta(delta)))
                .map_err(|_| LlmError::Cancelled)
        };
        let finish = loop {
            if cancel.is_cancelled() {
                return Err(LlmError::Cancelled);
            }
            let logits32 = logits.to_dtype(DType::F32).map_err(compute)?;
            let next = sampler.sample(&logits32).map_err(compute)?;
            generated += 1;
            if tokenizer.end_of_turn().contains(&next) {
                break FinishReason::Stop;
            }
            let step = decoder.push(next)?;
            send(step.delta)?;
            if step.stopped {
                break FinishReason::Stop;
            }
            if generated >= max_new {
                break FinishReason::Length;
            }
            logits = self.forward(&[next], pos)?;
            pos += 1;
        };
        let last = decoder.finish()?;
        send(last.delta)?;
        let finish = if last.stopped {
            FinishReason::Stop
        } else {
            finish
        };
        Ok(Completion {
            text: decoder.text().to_string(),
            finish_reason: finish,
            usage: Usage {
                prompt_tokens: u32::try_from(prompt.len()).unwrap_or(u32::MAX),
                completion_tokens: u32::try_from(generated).unwrap_or(u32::MAX),
            },
        })
    }

    fn choose(&mut self, prompt: &[u32], options: &[Vec<u32>]) -> Result<Vec<f64>, LlmError> {
        let end = self
            .tokenizer
            .end_of_turn()
            .first()
            .copied()
            .ok_or_else(|| LlmError::Tokenizer("no end-of-turn token".into()))?;
        let end = self.tokenizer.eos().unwrap_or(end);
        let first = log_softmax(&self.forward(prompt, 0)?)?;
        let after_prompt = self.weights.clone();
        let mut scores = Vec::with_capacity(options.len());
        for option in options {
            self.weights = after_prompt.clone();
            let mut score = 0.0;
            let mut logp = first.clone();
            for (k, &id) in option.iter().enumerate() {
                score += logp.get(id as usize).copied().unwrap_or(f64::NEG_INFINITY);
                logp = log_softmax(&self.forward(&[id], prompt.len() + k)?)?;
                if k + 1 == option.len() {
                    score += logp.get(end as usize).copied().unwrap_or(f64::NEG_INFINITY);
                }
            }
            scores.push(score);
        }
        self.weights = after_prompt;
        Ok(scores)
    }
}

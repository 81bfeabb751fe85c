//! The detection engine: configuration, errors and the public entry point.

use std::sync::Arc;

use crate::Span;
use crate::detect::{Pipeline, Recognizer};
use crate::lexicon::Lexicon;

/// Default upper bound on the size of one message: 256 KiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// How the engine is set up.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Messages longer than this many bytes are refused with [`PhiError::MessageTooLarge`].
    pub max_message_bytes: usize,
    /// Spans whose confidence is below this are dropped (0.0 keeps everything found).
    pub min_confidence: f32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            min_confidence: 0.0,
        }
    }
}

/// Errors from the PHI engine. Messages never contain the analysed text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PhiError {
    /// The message is larger than [`EngineConfig::max_message_bytes`].
    #[error("message too large: {size} bytes, the maximum is {max} bytes")]
    MessageTooLarge {
        /// Size of the refused message in bytes.
        size: usize,
        /// The configured maximum in bytes.
        max: usize,
    },
    /// The configuration is not usable.
    #[error("invalid engine configuration: {field} {expected}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What was expected of it.
        expected: &'static str,
    },
    /// A built-in pattern or list failed to build (a bug in this crate, never caused by input).
    #[error("the built-in recognizer {recognizer} failed to build")]
    Build {
        /// The recognizer that failed.
        recognizer: &'static str,
    },
}

/// The PHI detector. Built once (it compiles the automata and loads the word lists) and shared,
/// e.g. in an `Arc`, by every thread that calls [`Engine::detect`].
#[derive(Clone)]
pub struct Engine {
    config: EngineConfig,
    pipeline: Arc<Pipeline>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds the engine: compiles the pattern automata and loads the built-in lists.
    pub fn new(config: EngineConfig) -> Result<Engine, PhiError> {
        Engine::with_recognizers(config, Vec::new())
    }

    /// Builds the engine with `extra` recognizers run after the built-in ones (a practice's
    /// own identifier formats). Their candidates go through the same overlap resolution; they
    /// can add spans but never remove what the built-in recognizers found.
    pub fn with_recognizers(
        config: EngineConfig,
        extra: Vec<Box<dyn Recognizer>>,
    ) -> Result<Engine, PhiError> {
        if config.max_message_bytes == 0 {
            return Err(PhiError::InvalidConfig {
                field: "max_message_bytes",
                expected: "must be greater than zero",
            });
        }
        if !(0.0..=1.0).contains(&config.min_confidence) {
            return Err(PhiError::InvalidConfig {
                field: "min_confidence",
                expected: "must be between 0.0 and 1.0",
            });
        }
        let pipeline = Arc::new(Pipeline::new(Arc::new(Lexicon::load()), extra)?);
        Ok(Engine { config, pipeline })
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The names of the recognizers in the pipeline, in the order they run.
    pub fn recognizers(&self) -> Vec<&'static str> {
        self.pipeline.names()
    }

    /// Finds the identifiers in `text`.
    ///
    /// The spans are sorted by start, do not overlap, and their byte offsets lie on `char`
    /// boundaries of `text`.
    pub fn detect(&self, text: &str) -> Result<Vec<Span>, PhiError> {
        if text.len() > self.config.max_message_bytes {
            return Err(PhiError::MessageTooLarge {
                size: text.len(),
                max: self.config.max_message_bytes,
            });
        }
        let mut spans = self.pipeline.run(text);
        spans.retain(|s| s.confidence >= self.config.min_confidence);
        Ok(spans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Label;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn engine_is_shared_across_threads() {
        assert_send_sync::<Engine>();
        let engine = Arc::new(Engine::new(EngineConfig::default()).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let e = Arc::clone(&engine);
                std::thread::spawn(move || {
                    let text = format!("Hi, this is Maria Gonzalez, DOB 03/0{}/1981.", i + 1);
                    e.detect(&text).unwrap()
                })
            })
            .collect();
        for h in handles {
            let spans = h.join().unwrap();
            let labels: Vec<Label> = spans.iter().map(|s| s.label).collect();
            assert_eq!(labels, [Label::Name, Label::Date]);
        }
    }

    #[test]
    fn config_is_checked() {
        let bad = EngineConfig {
            max_message_bytes: 0,
            ..EngineConfig::default()
        };
        assert!(matches!(
            Engine::new(bad),
            Err(PhiError::InvalidConfig {
                field: "max_message_bytes",
                ..
            })
        ));
        let bad = EngineConfig {
            min_confidence: 1.5,
            ..EngineConfig::default()
        };
        assert!(Engine::new(bad).is_err());
    }

    /// A practice's own chart numbers: `ZX-` and six digits, found with aho-corasick.
    struct ChartNumbers(aho_corasick::AhoCorasick);

    impl Recognizer for ChartNumbers {
        fn name(&self) -> &'static str {
            "practice-chart"
        }
        fn find(&self, text: &crate::Text<'_>, out: &mut Vec<crate::Candidate>) {
            let s = text.as_str();
            for m in self.0.find_iter(text.lowercase()) {
                let digits = s
                    .get(m.end()..)
                    .unwrap_or("")
                    .bytes()
                    .take_while(u8::is_ascii_digit)
                    .count();
                if digits == 6 {
                    out.push(crate::Candidate {
                        start: m.start(),
                        end: m.end() + digits,
                        label: Label::Mrn,
                        confidence: 0.9,
                        recognizer: self.name(),
                    });
                }
            }
            // A malformed candidate (inside a char) is dropped by the pipeline, not a panic.
            if let Some(i) = s
                .char_indices()
                .find(|(_, c)| c.len_utf8() > 1)
                .map(|(i, _)| i)
            {
                out.push(crate::Candidate {
                    start: i + 1,
                    end: s.len() + 10,
                    label: Label::Id,
                    confidence: 1.0,
                    recognizer: self.name(),
                });
            }
        }
    }

    #[test]
    fn custom_recognizers_join_the_pipeline() {
        let ac = aho_corasick::AhoCorasick::new(["zx-"]).unwrap();
        let engine =
            Engine::with_recognizers(EngineConfig::default(), vec![Box::new(ChartNumbers(ac))])
                .unwrap();
        assert_eq!(
            engine.recognizers(),
            [
                "patterns",
                "names",
                "places",
                "structured",
                "practice-chart"
            ]
        );
        let text = "chart ZX-123456 — café";
        let spans = engine.detect(text).unwrap();
        let chart = spans
            .iter()
            .find(|s| s.recognizer == "practice-chart")
            .unwrap();
        assert_eq!(chart.text(text), "ZX-123456");
        for s in &spans {
            assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
            assert!(s.end <= text.len());
        }
        // The built-in pipeline alone does not know the format as a chart number.
        let plain = Engine::new(EngineConfig::default()).unwrap();
        assert!(
            plain
                .detect(text)
                .unwrap()
                .iter()
                .all(|s| s.recognizer != "practice-chart")
        );
    }

    #[test]
    fn min_confidence_filters_weak_spans() {
        let strict = Engine::new(EngineConfig {
            min_confidence: 0.95,
            ..EngineConfig::default()
        })
        .unwrap();
        let text = "email a@b.co, then Ünek";
        let spans = strict.detect(text).unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].label, Label::Email);
    }
}

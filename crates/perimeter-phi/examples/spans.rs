//! Prints the spans found in each line of standard input (a development aid).
//!
//! `echo 'Hi, this is Maria Gonzalez' | cargo run -p perimeter-phi --example spans`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufRead;

use perimeter_phi::{Engine, EngineConfig};

fn main() {
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("line").replace("\\n", "\n");
        let spans = engine.detect(&line).expect("detect");
        let shown: Vec<String> = spans
            .iter()
            .map(|s| {
                format!(
                    "{}[{}]({:.2},{})",
                    s.label,
                    s.text(&line),
                    s.confidence,
                    s.recognizer
                )
            })
            .collect();
        println!("{}", shown.join(" "));
    }
}

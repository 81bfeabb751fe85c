//! Criterion benches for the de-identification half: rewriting a message from its spans in each
//! mode, one-shot re-identification, and streaming re-identification in small chunks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use perimeter_phi::deid::{DeidOptions, Mode, deidentify};
use perimeter_phi::{Label, Span, StreamReidentifier, Vault};

const MESSAGE: &str = "Hi, this is Maria Gonzalez, date of birth 03/02/1981, MRN 1457047. \
Please call me at (312) 555-8841 or write to maria.gonzalez@gmail.com. My husband Tom \
Gonzalez (312.555.8841) picks up the refill on March 14, 2026 at 123 Main St Apt 4B, \
Springfield 62704. ";

fn spans(text: &str) -> Vec<Span> {
    let mut out = Vec::new();
    for (needle, label) in [
        ("Maria Gonzalez", Label::Name),
        ("03/02/1981", Label::Date),
        ("1457047", Label::Mrn),
        ("(312) 555-8841", Label::Phone),
        ("maria.gonzalez@gmail.com", Label::Email),
        ("Tom Gonzalez", Label::Name),
        ("312.555.8841", Label::Phone),
        ("March 14, 2026", Label::Date),
        ("123 Main St Apt 4B", Label::Address),
        ("Springfield", Label::Location),
        ("62704", Label::Location),
    ] {
        let mut from = 0;
        while let Some(i) = text[from..].find(needle) {
            let start = from + i;
            out.push(Span {
                start,
                end: start + needle.len(),
                label,
                confidence: 1.0,
                recognizer: "bench",
            });
            from = start + needle.len();
        }
    }
    out.sort_by_key(|s| s.start);
    out
}

fn bench(c: &mut Criterion) {
    let text = MESSAGE.repeat(4);
    let spans = spans(&text);
    let mut g = c.benchmark_group("deidentify");
    g.throughput(Throughput::Bytes(text.len() as u64));
    for mode in Mode::ALL {
        let options = DeidOptions {
            mode,
            reference_year: 2026,
        };
        g.bench_function(mode.as_str(), |b| {
            b.iter(|| {
                let vault = Vault::with_seed(1);
                black_box(deidentify(black_box(&text), &spans, &options, &vault).unwrap())
            })
        });
    }
    g.finish();

    let vault = Vault::with_seed(1);
    let options = DeidOptions {
        mode: Mode::Pseudonymize,
        reference_year: 2026,
    };
    let tokens = deidentify(&text, &spans, &options, &vault).unwrap().text;
    let mut g = c.benchmark_group("reidentify");
    g.throughput(Throughput::Bytes(tokens.len() as u64));
    g.bench_function("one-shot", |b| {
        b.iter(|| black_box(vault.reidentify(black_box(&tokens))))
    });
    let chunks: Vec<&str> = {
        // Model-like chunks of about 4 bytes, cut on char boundaries.
        let mut v = Vec::new();
        let mut start = 0;
        while start < tokens.len() {
            let mut end = (start + 4).min(tokens.len());
            while !tokens.is_char_boundary(end) {
                end += 1;
            }
            v.push(&tokens[start..end]);
            start = end;
        }
        v
    };
    g.bench_function("stream-4-byte-chunks", |b| {
        b.iter(|| {
            let mut s = StreamReidentifier::new(&vault);
            let mut n = 0;
            for c in &chunks {
                n += s.push(c).len();
            }
            n += s.finish().len();
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

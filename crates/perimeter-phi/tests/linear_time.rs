//! Guard: no regex engine that can backtrack without bound may be reachable from this crate.
//!
//! The PHI engine promises linear-time matching (the `regex-automata` / `aho-corasick`
//! engines). Any backtracking engine in perimeter-phi's dependency closure would break that
//! promise for some input, so this test walks the closure recorded in the workspace's
//! `Cargo.lock` (normal, build and dev dependencies of perimeter-phi, transitively) and fails if
//! one appears. Other crates of the workspace (the local model's tokenizer) may use such
//! engines; only this crate's own closure is checked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Engines that backtrack (or may, depending on the pattern) and so have no linear bound.
const FORBIDDEN: &[&str] = &[
    "fancy-regex",
    "pcre2",
    "pcre2-sys",
    "pcre",
    "onig",
    "onig_sys",
];

/// `name` -> the names of its dependencies (every version of a name merged: conservative).
fn lock_graph() -> BTreeMap<String, BTreeSet<String>> {
    let lock = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    let text = std::fs::read_to_string(&lock).unwrap();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for block in text.split("[[package]]").skip(1) {
        let mut name = None;
        let mut deps = BTreeSet::new();
        let mut in_deps = false;
        for line in block.lines() {
            let line = line.trim();
            if let Some(v) = line.strip_prefix("name = ") {
                name = Some(v.trim_matches('"').to_string());
            } else if line.starts_with("dependencies = [") {
                in_deps = true;
            } else if in_deps && line.starts_with(']') {
                in_deps = false;
            } else if in_deps {
                // ` "rand 0.10.3",` or ` "serde",`: the name is the first word.
                let entry = line.trim_matches(|c| c == '"' || c == ',' || c == ' ');
                if let Some(dep) = entry.split(' ').next().filter(|d| !d.is_empty()) {
                    deps.insert(dep.to_string());
                }
            }
        }
        if let Some(n) = name {
            graph.entry(n).or_default().extend(deps);
        }
    }
    graph
}

fn closure(graph: &BTreeMap<String, BTreeSet<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_string()];
    while let Some(n) = todo.pop() {
        if seen.insert(n.clone())
            && let Some(ds) = graph.get(&n)
        {
            todo.extend(ds.iter().cloned());
        }
    }
    seen
}

#[test]
fn no_backtracking_regex_engine_in_the_dependency_closure() {
    let graph = lock_graph();
    let deps = closure(&graph, "perimeter-phi");
    // The walk is real: it reaches the engines the crate does use.
    for expected in ["regex-automata", "aho-corasick", "regex-syntax", "serde"] {
        assert!(
            deps.contains(expected),
            "closure lacks {expected}: {deps:?}"
        );
    }
    let bad: Vec<&&str> = FORBIDDEN.iter().filter(|f| deps.contains(**f)).collect();
    assert!(
        bad.is_empty(),
        "backtracking regex engine(s) {bad:?} reachable from perimeter-phi"
    );
}

#[test]
fn the_guard_sees_a_forbidden_engine_elsewhere_in_a_graph() {
    // The same walk over a made-up graph finds a forbidden engine two levels down.
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("root".into()).or_default().insert("mid".into());
    g.entry("mid".into())
        .or_default()
        .insert("fancy-regex".into());
    g.entry("other".into()).or_default().insert("onig".into());
    let c = closure(&g, "root");
    assert!(c.contains("fancy-regex"));
    assert!(!c.contains("onig"), "only the root's own closure counts");
}

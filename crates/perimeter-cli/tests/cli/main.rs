//! The `perimeter` binary's integration tests, one test binary for all: each module runs the
//! built binary as a process (real stdin/stdout, real SQLite and PostgreSQL, real HTTP).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../perimeter-gateway/tests/support/upstream.rs"]
mod upstream;

mod audit;
mod deid;
mod serve;
mod triage;
mod vendors;

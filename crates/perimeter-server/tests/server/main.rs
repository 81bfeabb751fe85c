//! perimeter-server's integration tests, one binary (one link) for all: each module starts the
//! application `perimeter serve` runs on loopback with a real SQLite store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../perimeter-gateway/tests/support/upstream.rs"]
mod upstream;

mod audit_api;
mod auth;
mod channels;
mod gateway_api;
mod http;
mod webchat;
mod work;

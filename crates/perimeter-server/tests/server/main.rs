//! perimeter-server's integration tests, one binary (one link) for all: each module starts the
//! application `perimeter serve` runs on loopback with a real SQLite store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../perimeter-gateway/tests/support/upstream.rs"]
mod upstream;

/// What every module's server shares.
mod support {
    use perimeter_server::{BoxFuture, PoolStats, Readiness, ReadyCheck, ReadyReport};

    /// A readiness source that always reports the database up.
    pub struct Up;

    impl Readiness for Up {
        fn check(&self) -> BoxFuture<'_, ReadyReport> {
            Box::pin(async {
                ReadyReport {
                    checks: vec![ReadyCheck::pass("database")],
                }
            })
        }
        fn pool_stats(&self) -> Option<PoolStats> {
            None
        }
    }
}

mod audit_api;
mod auth;
mod billing;
mod channels;
mod fuzz_inputs;
mod gateway_api;
mod http;
mod webchat;
mod work;

//! perimeter-server's integration tests, one binary (one link) for all: each module starts the
//! application `perimeter serve` runs on loopback with a real SQLite store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../perimeter-gateway/tests/support/upstream.rs"]
mod upstream;

/// What every module's server shares.
mod support {
    use perimeter_server::{BoxFuture, PoolStats, Readiness, ReadyCheck, ReadyReport};

    /// What the real-browser tests need: `node` on the PATH, Debian's Chromium and
    /// `tests/browser/node_modules` (`.ci/run` and `scripts/test` install them). Returns the
    /// node binary and the scripts' directory; panics naming what is missing.
    pub fn browser_prerequisites() -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        let node = std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join("node"))
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| {
                panic!("node is not installed: install Debian's nodejs package (.ci/run does)")
            });
        assert!(
            std::path::Path::new("/usr/bin/chromium").exists(),
            "/usr/bin/chromium is missing: apt-get install -y chromium (.ci/run does)"
        );
        assert!(
            dir.join("node_modules/playwright-core").is_dir(),
            "{}/node_modules is missing: run `npm ci` there (.ci/run does)",
            dir.display()
        );
        (node, dir)
    }

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

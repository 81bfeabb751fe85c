//! What `/readyz` asks: is the database reachable, are the keys loaded, are migrations current.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

/// A boxed, sendable future (keeps [`Readiness`] usable as a trait object).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The outcome of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadyCheck {
    /// Stable name: `database`, `keys`, `migrations`, ...
    pub name: &'static str,
    /// Whether the check passed.
    pub ok: bool,
    /// Why it failed. Must never contain a connection string, a key, a path with a user
    /// name in it or PHI: a fixed text such as "cannot connect".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'static, str>>,
}

impl ReadyCheck {
    /// A passing check.
    pub fn pass(name: &'static str) -> Self {
        Self {
            name,
            ok: true,
            reason: None,
        }
    }

    /// A failing check with a reason (see [`ReadyCheck::reason`] for what it may contain).
    pub fn fail(name: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            name,
            ok: false,
            reason: Some(reason.into()),
        }
    }
}

/// All checks together.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ReadyReport {
    /// Every check that ran.
    pub checks: Vec<ReadyCheck>,
}

impl ReadyReport {
    /// Ready when every check passed (and at least one ran).
    pub fn is_ready(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// Names of the failed checks.
    pub fn failed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect()
    }
}

/// Connection-pool figures for the `/metrics` gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Open connections (idle and in use).
    pub size: u32,
    /// Idle connections.
    pub idle: u32,
    /// The configured maximum.
    pub max: u32,
}

/// The source of readiness for `/readyz` and of pool figures for `/metrics`.
pub trait Readiness: Send + Sync + 'static {
    /// Runs the checks. Must finish promptly (implementations bound their own waits).
    fn check(&self) -> BoxFuture<'_, ReadyReport>;

    /// The database pool's current figures, when there is a pool.
    fn pool_stats(&self) -> Option<PoolStats>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_report_is_not_ready() {
        assert!(!ReadyReport::default().is_ready());
        let r = ReadyReport {
            checks: vec![ReadyCheck::pass("a"), ReadyCheck::fail("b", "down")],
        };
        assert!(!r.is_ready());
        assert_eq!(r.failed(), vec!["b"]);
    }
}

//! One module per subcommand. Each exposes a clap `Args` struct and an async `run`.

/// `deid` is synchronous (no runtime, no configuration): `run` returns the exit status.
pub mod deid;
pub mod serve;
/// `triage` is synchronous too (helper triage).
pub mod triage;
// The audit trail (helper audit).
pub mod audit;
// Installation, migrations, keys and patients (helper store).
pub mod init;
pub mod keys;
pub mod migrate;
pub mod patients;
// The AI vendor registry and API tokens (helper vendors).
pub mod tokens;
pub mod vendors;
// Patient channels (helper channels).
pub mod channels;

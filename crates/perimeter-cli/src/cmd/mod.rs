//! One module per subcommand. Each exposes a clap `Args` struct and an async `run`.

/// `deid` is synchronous (no runtime, no configuration): `run` returns the exit status.
pub mod deid;
pub mod serve;

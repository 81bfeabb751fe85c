//! One module per subcommand. Each exposes a clap `Args` struct and an async `run`.

pub mod serve;

//! `perimeter`: the single binary. `perimeter --help` lists the subcommands.

mod cmd;
mod config;
mod logging;
mod runtime;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, FlagOverride, LoadOptions, LogFormat};

const EXAMPLES: &str = "\
Examples:
  perimeter serve --demo                      run with an embedded database and demo data
  perimeter serve --data-dir /srv/perimeter   use (and create) another data directory
  perimeter serve --config /etc/perimeter.toml --print-config
                                              show the effective configuration, secrets masked

Configuration comes from a TOML file (--config FILE, else <data-dir>/perimeter.toml when it
exists), overridden by PERIMETER_* environment variables, overridden by flags. The README lists
every key.";

/// Perimeter: a self-hosted compliance perimeter that lets a medical practice use AI in patient
/// communication without leaking protected health information.
#[derive(Debug, Parser)]
#[command(name = "perimeter", version, after_long_help = EXAMPLES, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
struct GlobalArgs {
    /// Configuration file (TOML). Default: <data-dir>/perimeter.toml if it exists.
    /// Environment: PERIMETER_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory holding the SQLite database, the key file and perimeter.toml; created if
    /// missing. Default: ./perimeter-data. Environment: PERIMETER_DATA_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log format: human (readable lines) or json (one object per line). Logs go to stderr.
    /// Environment: PERIMETER_LOG_FORMAT.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    /// Log filter, e.g. info, debug or info,perimeter_server=debug. Default: info.
    /// Environment: PERIMETER_LOG_LEVEL.
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
}

impl GlobalArgs {
    fn overrides(&self) -> Vec<FlagOverride> {
        let mut flags = Vec::new();
        if let Some(dir) = &self.data_dir {
            flags.push(FlagOverride::path("data_dir", "--data-dir", dir));
        }
        if let Some(format) = self.log_format {
            let name = match format {
                LogFormat::Human => "human",
                LogFormat::Json => "json",
            };
            flags.push(FlagOverride::string("log_format", "--log-format", name));
        }
        if let Some(level) = &self.log_level {
            flags.push(FlagOverride::string(
                "log_level",
                "--log-level",
                level.clone(),
            ));
        }
        flags
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server: creates and migrates the data directory on first start, then
    /// serves /healthz, /readyz, /metrics and the API until SIGTERM or Ctrl-C.
    Serve(cmd::serve::ServeArgs),
    /// The tamper-evident audit trail: verify, prove, check-proof, export, checkpoint.
    Audit(cmd::audit::AuditArgs),
    /// De-identify text or JSONL (redact, pseudonymize, surrogate, safe-harbor), evaluate the
    /// PHI detector against a gold file, or benchmark it. Needs no configuration.
    Deid(cmd::deid::DeidArgs),
    /// Classify patient messages by intent and urgency with the built-in local model (no
    /// vendor), evaluate it against gold labels, retrain it, or benchmark it. Needs no
    /// configuration.
    Triage(cmd::triage::TriageArgs),
    /// Create a new installation: data directory, key file and database.
    Init(cmd::init::InitArgs),
    /// Apply the database migrations embedded in this binary (or show their status).
    Migrate(cmd::migrate::MigrateArgs),
    /// Key-encryption keys: status, rotation, retirement.
    Keys(cmd::keys::KeysArgs),
    /// Patient administration: crypto-shredding.
    Patients(cmd::patients::PatientsArgs),
    /// The AI vendor registry: add, list, show, update, remove vendors and their BAA terms.
    Vendors(cmd::vendors::VendorsArgs),
    /// API tokens for the practice's tools (gateway, de-identification): create, list, revoke.
    Tokens(cmd::tokens::TokensArgs),
    /// Patient channels (SMS, voicemail transcripts): the intake benchmark.
    Channels(cmd::channels::ChannelsArgs),
}

impl Command {
    fn overrides(&self) -> Vec<FlagOverride> {
        match self {
            Command::Serve(args) => args.overrides(),
            Command::Audit(args) => args.overrides(),
            Command::Deid(_)
            | Command::Triage(_)
            | Command::Init(_)
            | Command::Migrate(_)
            | Command::Keys(_)
            | Command::Patients(_)
            | Command::Vendors(_)
            | Command::Tokens(_)
            | Command::Channels(_) => Vec::new(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `deid` and `triage` need no configuration, data directory or async runtime.
    let cli = match cli {
        Cli {
            command: Command::Deid(args),
            ..
        } => return cmd::deid::run(args),
        Cli {
            command: Command::Triage(args),
            ..
        } => return cmd::triage::run(args),
        cli => cli,
    };
    let mut flags = cli.global.overrides();
    flags.extend(cli.command.overrides());
    let options = LoadOptions {
        config_file: cli.global.config.clone(),
        flags,
    };
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let config = match Config::load(&options, env) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => cmd::serve::run(args, &config).await,
            Command::Audit(args) => cmd::audit::run(args, &config).await,
            Command::Init(args) => cmd::init::run(args, &config).await,
            Command::Migrate(args) => cmd::migrate::run(args, &config).await,
            Command::Keys(args) => cmd::keys::run(args, &config).await,
            Command::Patients(args) => cmd::patients::run(args, &config).await,
            Command::Vendors(args) => cmd::vendors::run(args, &config).await,
            Command::Tokens(args) => cmd::tokens::run(args, &config).await,
            Command::Channels(args) => cmd::channels::run(args).await,
            // Handled at the top of main.
            Command::Deid(_) | Command::Triage(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "perimeter stopped with an error");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

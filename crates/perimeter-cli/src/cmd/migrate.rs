//! `perimeter migrate`: bring the database schema up to this build's version.

use clap::Args;
use perimeter_store::SchemaStatus;

use crate::config::Config;
use crate::runtime;

const EXAMPLES: &str = "\
Examples:
  perimeter migrate             apply pending migrations (also done by `perimeter serve` at start)
  perimeter migrate --status    show the schema version and pending migrations; change nothing";

/// Apply the database migrations embedded in this binary. Refuses a database written by a
/// newer Perimeter. Several servers may start at once: migrations take a lock.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct MigrateArgs {
    /// Only show the schema status; change nothing.
    #[arg(long)]
    pub status: bool,
}

/// Runs `perimeter migrate`.
pub async fn run(args: MigrateArgs, config: &Config) -> anyhow::Result<()> {
    let (store, _keys, _origin) = runtime::connect(config).await?;
    let status = store.schema_status().await?;
    if args.status {
        match status {
            SchemaStatus::Empty { pending } => {
                println!("schema: empty; {} migrations to apply", pending.len());
            }
            SchemaStatus::Current { version } => println!("schema: version {version}, current"),
            SchemaStatus::Pending { version, pending } => println!(
                "schema: version {version}; pending migrations: {}",
                pending
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            SchemaStatus::Newer {
                database,
                supported,
            } => {
                println!(
                    "schema: version {database}, NEWER than this build ({supported}); upgrade Perimeter"
                );
            }
        }
        store.close().await;
        return Ok(());
    }
    let report = runtime::verify_and_migrate(&store).await?;
    if report.applied.is_empty() {
        println!("schema: version {}, already current", report.to_version);
    } else {
        println!(
            "schema: version {} -> {} (applied {})",
            report.from_version,
            report.to_version,
            report
                .applied
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    store.close().await;
    Ok(())
}

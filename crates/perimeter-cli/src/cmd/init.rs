//! `perimeter init`: create the data directory, the key file and the database.

use clap::Args;

use crate::config::Config;
use crate::runtime::{self, KeyOrigin, OpenMode};

const EXAMPLES: &str = "\
Examples:
  perimeter init                               ./perimeter-data with SQLite and a new key file
  perimeter init --data-dir /srv/perimeter     another data directory
  PERIMETER_DATABASE_URL=postgres://perimeter@db/perimeter perimeter init

Back up the key file (keys.json) separately from the database: without it the data cannot be
read, and with it anyone holding a database copy can.";

/// Create a new installation: the data directory (mode 0700), the key file (mode 0600) and the
/// database, migrated to the current schema. Refuses to overwrite an existing key file.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct InitArgs {}

/// Runs `perimeter init`.
pub async fn run(_args: InitArgs, config: &Config) -> anyhow::Result<()> {
    if config.keys.master_key.is_none() && config.keys_file().exists() {
        anyhow::bail!(
            "key file {} already exists: this installation is initialised (refusing to overwrite the key file). Use `perimeter migrate` to upgrade the database",
            config.keys_file().display()
        );
    }
    let rt = runtime::open(config, OpenMode::CreateIfMissing).await?;
    match &rt.key_origin {
        KeyOrigin::File(path) if rt.created_keys => {
            println!("created key file   {}", path.display());
        }
        KeyOrigin::File(path) => println!("using key file     {}", path.display()),
        KeyOrigin::Environment => println!("using key ring     from PERIMETER_MASTER_KEY"),
    }
    println!("database           {}", config.database_url().masked());
    println!(
        "schema             version {} ({} migrations applied now)",
        rt.migration.to_version,
        rt.migration.applied.len()
    );
    println!(
        "KEK version        {} (primary)",
        rt.keys.primary_kek_version()
    );
    if rt.created_keys {
        println!();
        println!("Back up the key file now, and keep it apart from database backups.");
    }
    rt.store.close().await;
    Ok(())
}

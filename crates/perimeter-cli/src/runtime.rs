//! Opening Perimeter's state: the key ring first (before anything touches the database), then
//! the database, checked against the key ring, then migrated.
//!
//! Used by `serve` and the administration commands.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use perimeter_crypto::{CryptoError, KeyRing};
use perimeter_domain::{SharedClock, SystemClock};
use perimeter_store::{
    DatabaseUrl, MigrationReport, SchemaStatus, Store, StoreError, StoreOptions,
};
use secrecy::ExposeSecret;

use crate::config::Config;

/// Whether a missing key file and database may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// First use: create the data directory (0700), the key file (0600) and the database.
    CreateIfMissing,
    /// The installation must exist already (administration commands).
    MustExist,
}

/// Where the key ring came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A key file (which rotation rewrites).
    File(PathBuf),
    /// The `PERIMETER_MASTER_KEY` environment variable.
    Environment,
}

/// Perimeter's opened state.
#[derive(Clone)]
pub struct Runtime {
    /// The database, migrated and checked against the key ring.
    pub store: Store,
    /// The key ring.
    pub keys: KeyRing,
    /// The clock (the one the store uses), for `serve`.
    #[allow(dead_code)]
    pub clock: SharedClock,
    /// Where the key ring came from.
    pub key_origin: KeyOrigin,
    /// True when this call created the key file (first start).
    pub created_keys: bool,
    /// What migrating did.
    pub migration: MigrationReport,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("store", &self.store)
            .field("key_origin", &self.key_origin)
            .field("created_keys", &self.created_keys)
            .field("migration", &self.migration)
            .finish_non_exhaustive()
    }
}

/// The store options the configuration gives.
pub fn store_options(config: &Config) -> anyhow::Result<StoreOptions> {
    let url = config.database_url();
    let parsed = DatabaseUrl::parse(url.expose_secret())
        .with_context(|| format!("database_url {}", url.masked()))?;
    let mut opts = StoreOptions::new(parsed);
    opts.max_connections = config.database.max_connections;
    opts.busy_timeout = Duration::from_millis(config.database.busy_timeout_ms);
    opts.acquire_timeout = Duration::from_millis(config.database.acquire_timeout_ms);
    opts.sqlite_max_bytes = match config.database.sqlite_max_size_mb {
        0 => None,
        mb => Some(mb.saturating_mul(1024 * 1024)),
    };
    Ok(opts)
}

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))
}

/// Loads the key ring from `PERIMETER_MASTER_KEY` or the key file; `Ok(None)` when neither
/// exists. Never touches the database.
pub fn load_keys(config: &Config) -> anyhow::Result<Option<(KeyRing, KeyOrigin)>> {
    if let Some(value) = &config.keys.master_key {
        let ring =
            KeyRing::from_env_value(value.expose_secret()).context("PERIMETER_MASTER_KEY")?;
        return Ok(Some((ring, KeyOrigin::Environment)));
    }
    let path = config.keys_file();
    match KeyRing::load_file(&path) {
        Ok(ring) => Ok(Some((ring, KeyOrigin::File(path)))),
        Err(CryptoError::KeyFileMissing { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Loads the key ring and connects, without migrating or verifying (for `migrate --status`).
pub async fn connect(config: &Config) -> anyhow::Result<(Store, KeyRing, KeyOrigin)> {
    let (keys, origin) = load_keys(config)?.ok_or_else(|| missing_keys(config))?;
    let opts = store_options(config)?;
    if let DatabaseUrl::Sqlite(path) = &opts.url
        && !path.exists()
    {
        bail!(
            "no database at {}; run `perimeter init` (or `perimeter serve`) first",
            path.display()
        );
    }
    let store = Store::connect(&opts, keys.clone(), clock())
        .await
        .context("cannot open the database")?;
    Ok((store, keys, origin))
}

fn clock() -> SharedClock {
    Arc::new(SystemClock)
}

fn missing_keys(config: &Config) -> anyhow::Error {
    anyhow::anyhow!(
        "key file {} not found (and PERIMETER_MASTER_KEY is not set); restore the key file from your backup, or run `perimeter init` for a new installation",
        config.keys_file().display()
    )
}

/// Checks the key ring against the database (when it has Perimeter tables) before migrating,
/// then migrates and registers new key versions.
pub async fn verify_and_migrate(store: &Store) -> anyhow::Result<MigrationReport> {
    match store.schema_status().await? {
        SchemaStatus::Newer {
            database,
            supported,
        } => {
            return Err(StoreError::SchemaTooNew {
                database,
                supported,
            }
            .into());
        }
        SchemaStatus::Empty { .. } => {}
        SchemaStatus::Current { .. } | SchemaStatus::Pending { .. } => {
            // Table key_ring exists from migration 1 on: refuse a foreign key ring before
            // changing anything.
            store.verify_keys().await?;
        }
    }
    let report = store.migrate().await?;
    store.verify_keys().await?;
    Ok(report)
}

/// Opens Perimeter's state: keys first, then the database, verified and migrated.
pub async fn open(config: &Config, mode: OpenMode) -> anyhow::Result<Runtime> {
    let opts = store_options(config)?;
    let loaded = load_keys(config)?;
    let (mut keys, origin, created_keys) = match (loaded, mode) {
        (Some((keys, origin)), _) => (keys, origin, false),
        (None, OpenMode::MustExist) => return Err(missing_keys(config)),
        (None, OpenMode::CreateIfMissing) => {
            let path = config.keys_file();
            if let DatabaseUrl::Sqlite(db) = &opts.url
                && db.exists()
            {
                bail!(
                    "key file {} not found but the database {} exists: it cannot be read without its key file. Restore the key file from your backup (a new key would not open this data)",
                    path.display(),
                    db.display()
                );
            }
            (KeyRing::generate()?, KeyOrigin::File(path), true)
        }
    };
    if mode == OpenMode::MustExist
        && let DatabaseUrl::Sqlite(db) = &opts.url
        && !db.exists()
    {
        bail!(
            "no database at {}; run `perimeter init` first",
            db.display()
        );
    }
    if mode == OpenMode::CreateIfMissing {
        ensure_private_dir(&config.data_dir)?;
        if let DatabaseUrl::Sqlite(db) = &opts.url
            && let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty())
        {
            ensure_private_dir(parent)?;
        }
    }
    let clock = clock();
    let mut store = Store::connect(&opts, keys.clone(), clock.clone())
        .await
        .context("cannot open the database")?;
    if created_keys {
        // A database with Perimeter tables was initialised with a key file that is missing.
        if !matches!(store.schema_status().await?, SchemaStatus::Empty { .. }) {
            bail!(
                "key file {} not found but the database {} is initialised: restore the key file from your backup (a new key would not open this data)",
                config.keys_file().display(),
                opts.url
            );
        }
        if let KeyOrigin::File(path) = &origin {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                ensure_private_dir(parent)?;
            }
            keys.save_file_new(path)?;
            // Read back what was written: the ring now knows its file, so a running server
            // can reload it after `perimeter keys rotate` (Store::reload_keys).
            let saved = KeyRing::load_file(path)?;
            store = store.with_keys(saved.clone());
            keys = saved;
        }
    }
    let migration = verify_and_migrate(&store).await?;
    Ok(Runtime {
        store,
        keys,
        clock,
        key_origin: origin,
        created_keys,
        migration,
    })
}

#[cfg(test)]
mod tests {
    use perimeter_store::{AccessContext, PatientData};

    use super::*;

    fn config(dir: &Path) -> Config {
        let data = dir.join("data");
        let mut c = Config {
            data_dir: data.clone(),
            database_url: Some(crate::config::DatabaseUrl::new(format!(
                "sqlite://{}",
                data.join("perimeter.db").display()
            ))),
            ..Config::default()
        };
        c.keys.file = Some(data.join("keys.json"));
        c.database.acquire_timeout_ms = 3_000;
        c
    }

    fn db_bytes(c: &Config) -> Vec<u8> {
        std::fs::read(c.data_dir.join("perimeter.db")).unwrap()
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn first_open_creates_private_files_and_a_wrong_or_missing_key_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let rt = open(&c, OpenMode::CreateIfMissing).await.unwrap();
        assert!(rt.created_keys);
        // Every migration this build embeds is applied on first open, in order.
        let all: Vec<i64> = rt.store.embedded_migrations();
        assert!(all.len() >= 3, "{all:?}");
        assert_eq!(rt.migration.applied, all);
        let sys = AccessContext::system("test");
        let practice = rt.store.create_practice(&sys, "Clinic").await.unwrap();
        rt.store
            .create_patient(
                &sys,
                practice,
                &PatientData {
                    given_name: "Key".into(),
                    family_name: "Holder".into(),
                    ..PatientData::default()
                },
            )
            .await
            .unwrap();
        rt.store.close().await;
        #[cfg(unix)]
        {
            assert_eq!(mode(&c.keys_file()), 0o600);
            assert_eq!(mode(&c.data_dir), 0o700);
        }
        // A second open reuses everything.
        let again = open(&c, OpenMode::MustExist).await.unwrap();
        assert!(!again.created_keys);
        assert!(again.migration.applied.is_empty());
        again.store.close().await;
        let before = db_bytes(&c);

        // Wrong key file: refused before any write.
        let good = std::fs::read(c.keys_file()).unwrap();
        std::fs::remove_file(c.keys_file()).unwrap();
        KeyRing::generate()
            .unwrap()
            .save_file_new(&c.keys_file())
            .unwrap();
        let err = open(&c, OpenMode::MustExist).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("does not match this database"),
            "{err:#}"
        );
        assert_eq!(db_bytes(&c), before);

        // Missing key file: refused before the database is opened, in both modes.
        std::fs::remove_file(c.keys_file()).unwrap();
        let err = open(&c, OpenMode::MustExist).await.unwrap_err();
        assert!(format!("{err:#}").contains("not found"), "{err:#}");
        let err = open(&c, OpenMode::CreateIfMissing).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("key file from your backup"),
            "{err:#}"
        );
        assert!(!c.keys_file().exists());
        assert_eq!(db_bytes(&c), before);

        // Too-open permissions: refused with the fix in the message.
        std::fs::write(c.keys_file(), &good).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(c.keys_file(), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            let err = open(&c, OpenMode::MustExist).await.unwrap_err();
            assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
            std::fs::set_permissions(c.keys_file(), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        let back = open(&c, OpenMode::MustExist).await.unwrap();
        back.store.close().await;
    }

    #[tokio::test]
    async fn rotate_then_retire_through_the_commands() {
        use crate::cmd::keys::{KeysArgs, KeysCommand, RetireArgs, RotateArgs};
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        crate::cmd::init::run(crate::cmd::init::InitArgs {}, &c)
            .await
            .unwrap();
        // init refuses to run twice (the key file exists).
        assert!(
            crate::cmd::init::run(crate::cmd::init::InitArgs {}, &c)
                .await
                .is_err()
        );
        let rt = open(&c, OpenMode::MustExist).await.unwrap();
        let sys = AccessContext::system("test");
        let practice = rt.store.create_practice(&sys, "Clinic").await.unwrap();
        let pid = rt
            .store
            .create_patient(
                &sys,
                practice,
                &PatientData {
                    given_name: "Rota".into(),
                    family_name: "Tion".into(),
                    ..PatientData::default()
                },
            )
            .await
            .unwrap();
        rt.store.close().await;
        let rotate = KeysArgs {
            command: KeysCommand::Rotate(RotateArgs { batch_size: 1 }),
        };
        crate::cmd::keys::run(rotate, &c).await.unwrap();
        let ring = KeyRing::load_file(&c.keys_file()).unwrap();
        assert_eq!(ring.kek_versions(), vec![1, 2]);
        assert_eq!(ring.primary_kek_version(), 2);
        // Retiring the primary is refused; retiring version 1 drops it from the key file.
        let retire = |version| KeysArgs {
            command: KeysCommand::Retire(RetireArgs { version }),
        };
        assert!(crate::cmd::keys::run(retire(2), &c).await.is_err());
        crate::cmd::keys::run(retire(1), &c).await.unwrap();
        let ring = KeyRing::load_file(&c.keys_file()).unwrap();
        assert_eq!(ring.kek_versions(), vec![2]);
        let rt = open(&c, OpenMode::MustExist).await.unwrap();
        let p = rt.store.get_patient(&sys, pid).await.unwrap();
        assert_eq!(p.data.given_name, "Rota");
        let status = rt.store.key_status().await.unwrap();
        assert_eq!(status.pending_rewrap, 0);
        rt.store.close().await;
        crate::cmd::keys::run(
            KeysArgs {
                command: KeysCommand::Status,
            },
            &c,
        )
        .await
        .unwrap();
    }
}

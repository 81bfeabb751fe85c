//! Test databases: SQLite in a temporary directory, PostgreSQL in a uniquely named database
//! (dropped afterwards, even when the test fails).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use perimeter_crypto::KeyRing;
use perimeter_domain::{ManualClock, SharedClock};
use perimeter_store::{Backend, DatabaseUrl, Store, StoreOptions};
use sqlx::Connection;

pub const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn pg_admin_url() -> String {
    std::env::var("PERIMETER_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG.to_owned())
}

pub fn skip_postgres() -> bool {
    std::env::var("PERIMETER_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1")
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct TestDb {
    pub backend: Backend,
    pub url: DatabaseUrl,
    pub path: Option<PathBuf>,
    pub clock: ManualClock,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A fresh empty database, or `None` for PostgreSQL when skipping is allowed.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        sqlx::any::install_default_drivers();
        let clock = ManualClock::at_epoch_2026();
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("perimeter.db");
                Some(TestDb {
                    backend,
                    url: DatabaseUrl::Sqlite(path.clone()),
                    path: Some(path),
                    clock,
                    pg_name: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                if skip_postgres() {
                    eprintln!("PERIMETER_TEST_SKIP_POSTGRES=1: skipping the PostgreSQL run");
                    return None;
                }
                let admin = pg_admin_url();
                let name = format!(
                    "perimeter_t_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst),
                    uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap()
                );
                let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL at {admin} is unreachable ({e}); start it, set PERIMETER_TEST_POSTGRES_URL, or set PERIMETER_TEST_SKIP_POSTGRES=1"
                    )
                });
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
                let url = DatabaseUrl::parse(&admin)
                    .unwrap()
                    .with_database_name(&name)
                    .unwrap();
                Some(TestDb {
                    backend,
                    url,
                    path: None,
                    clock,
                    pg_name: Some(name),
                    _dir: None,
                })
            }
        }
    }

    pub fn options(&self) -> StoreOptions {
        let mut o = StoreOptions::new(self.url.clone());
        o.acquire_timeout = Duration::from_secs(5);
        o
    }

    pub fn shared_clock(&self) -> SharedClock {
        Arc::new(self.clock.clone())
    }

    /// Connects and migrates with `keys`, verifying them.
    pub async fn open(&self, keys: &KeyRing) -> Store {
        let store = Store::connect(&self.options(), keys.clone(), self.shared_clock())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store.verify_keys().await.unwrap();
        store
    }

    /// A raw connection for inspecting or tampering with rows.
    pub async fn raw(&self) -> sqlx::AnyConnection {
        let url = match &self.url {
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DatabaseUrl::Postgres(_) => {
                let admin = url::Url::parse(&pg_admin_url()).unwrap();
                let mut u = admin.clone();
                u.set_path(&format!("/{}", self.pg_name.as_deref().unwrap()));
                u.to_string()
            }
        };
        sqlx::AnyConnection::connect(&url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let admin = pg_admin_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    if let Ok(mut conn) = sqlx::AnyConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

/// Runs a storage test against both backends: `name_sqlite` and `name_postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = $crate::common::TestDb::new(perimeter_store::Backend::Sqlite).await {
                        super::$name(db).await;
                    }
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(db) = $crate::common::TestDb::new(perimeter_store::Backend::Postgres).await {
                        super::$name(db).await;
                    }
                }
            )+
        }
    };
}

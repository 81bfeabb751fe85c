//! Where the database is and how to connect to it.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::StoreError;

/// Which database engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite (one file, one host).
    Sqlite,
    /// PostgreSQL (several `perimeter serve` processes may share it).
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// A database location. `Display` masks any password.
#[derive(Clone)]
pub enum DatabaseUrl {
    /// A SQLite file (created if absent).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (may hold a password, hence secret).
    Postgres(SecretString),
}

impl DatabaseUrl {
    /// Parses `sqlite://PATH`, `sqlite:PATH`, `postgres://...` or `postgresql://...`.
    pub fn parse(s: &str) -> Result<DatabaseUrl, StoreError> {
        let s = s.trim();
        if let Some(rest) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            let path = rest.split('?').next().unwrap_or("");
            if path.is_empty() {
                return Err(StoreError::Config(
                    "database_url `sqlite://` needs a file path, e.g. sqlite:///var/lib/perimeter/perimeter.db".into(),
                ));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            url::Url::parse(s).map_err(|e| {
                StoreError::Config(format!(
                    "database_url is not a valid PostgreSQL URL ({e}); expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
                ))
            })?;
            return Ok(DatabaseUrl::Postgres(SecretString::from(s.to_owned())));
        }
        Err(StoreError::Config(
            "database_url must start with sqlite:// or postgres://".into(),
        ))
    }

    /// The backend this URL selects.
    pub fn backend(&self) -> Backend {
        match self {
            DatabaseUrl::Sqlite(_) => Backend::Sqlite,
            DatabaseUrl::Postgres(_) => Backend::Postgres,
        }
    }

    /// A URL for a uniquely named PostgreSQL database next to this one (tests, tooling).
    pub fn with_database_name(&self, name: &str) -> Result<DatabaseUrl, StoreError> {
        match self {
            DatabaseUrl::Sqlite(_) => Err(StoreError::Config(
                "a database name applies only to PostgreSQL URLs".into(),
            )),
            DatabaseUrl::Postgres(secret) => {
                let mut url = url::Url::parse(secret.expose_secret())
                    .map_err(|e| StoreError::Config(format!("database_url: {e}")))?;
                url.set_path(&format!("/{name}"));
                Ok(DatabaseUrl::Postgres(SecretString::from(String::from(url))))
            }
        }
    }

    pub(crate) fn expose(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
            DatabaseUrl::Postgres(s) => s.expose_secret().to_owned(),
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DatabaseUrl::parse(s)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            DatabaseUrl::Postgres(s) => match url::Url::parse(s.expose_secret()) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("****"));
                    }
                    // Query parameters may carry a password too.
                    if u.query().is_some() {
                        u.set_query(Some("…"));
                    }
                    f.write_str(u.as_str())
                }
                Err(_) => f.write_str("postgres://(unparseable)"),
            },
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Where.
    pub url: DatabaseUrl,
    /// Pool size.
    pub max_connections: u32,
    /// How long SQLite waits for a lock before giving up.
    pub busy_timeout: Duration,
    /// How long to wait for a pooled connection (and for PostgreSQL to answer a connect).
    pub acquire_timeout: Duration,
    /// SQLite only: the largest the database file may grow, in bytes (`PRAGMA
    /// max_page_count`); a write beyond it fails with [`crate::StoreError::Full`] and writes
    /// nothing, reads go on. `None`: limited by the disk only.
    pub sqlite_max_bytes: Option<u64>,
}

impl StoreOptions {
    /// Defaults: 10 connections (SQLite: 4), 5 s busy timeout, 10 s acquire timeout.
    pub fn new(url: DatabaseUrl) -> StoreOptions {
        let max_connections = match url.backend() {
            Backend::Sqlite => 4,
            Backend::Postgres => 10,
        };
        StoreOptions {
            url,
            max_connections,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            sqlite_max_bytes: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks() {
        let u = DatabaseUrl::parse("postgres://app:hunter2@db.internal:5432/perimeter").unwrap();
        assert_eq!(u.backend(), Backend::Postgres);
        let shown = u.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.internal"));
        assert!(!format!("{u:?}").contains("hunter2"));
        let q = DatabaseUrl::parse("postgres://db/x?password=hunter2").unwrap();
        assert!(!q.to_string().contains("hunter2"));
        let s = DatabaseUrl::parse("sqlite:///var/lib/p.db").unwrap();
        assert_eq!(s.backend(), Backend::Sqlite);
        assert_eq!(s.to_string(), "sqlite:///var/lib/p.db");
        assert!(
            matches!(DatabaseUrl::parse("sqlite:data/p.db"), Ok(DatabaseUrl::Sqlite(p)) if p == std::path::Path::new("data/p.db"))
        );
        assert!(DatabaseUrl::parse("mysql://x").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        let renamed = u.with_database_name("t_1").unwrap();
        assert!(renamed.expose().ends_with("/t_1"));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_display_never_shows_password(user in "[a-z]{1,8}", pw in "[A-Za-z0-9]{8,16}", junk in "\\PC{0,40}") {
            let _ = DatabaseUrl::parse(&junk);
            let u = DatabaseUrl::parse(&format!("postgres://{user}:{pw}@h/d")).unwrap();
            proptest::prop_assert!(!u.to_string().contains(&pw));
        }
    }
}

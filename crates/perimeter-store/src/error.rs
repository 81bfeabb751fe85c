//! Storage errors. Messages say what happened and what to do; they never carry PHI or key
//! bytes (database driver messages are reduced to their error code and constraint names).

use perimeter_crypto::CryptoError;
use perimeter_domain::PatientId;

use crate::Backend;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (server down, network, pool exhausted).
    #[error(
        "the {backend} database is unavailable ({detail}); check that it is running and reachable at {target}. Nothing was written; retry when it is back (connections are re-established automatically)"
    )]
    Unavailable {
        /// Which backend.
        backend: Backend,
        /// Where (password masked).
        target: String,
        /// What the driver reported (no data values).
        detail: String,
    },
    /// Another process holds the database lock for longer than the busy timeout.
    #[error(
        "the database is locked by another process or connection (waited longer than the busy timeout); nothing was written. Retry, raise `busy_timeout`, or stop the other process"
    )]
    Busy,
    /// The disk or the database is full.
    #[error(
        "the database or its disk is full; nothing was written. Free disk space (or raise the database's quota) and retry"
    )]
    Full,
    /// A transaction conflicted with a concurrent one.
    #[error("the operation conflicted with a concurrent one and was rolled back; retry it")]
    Conflict,
    /// The database was written by a newer Perimeter.
    #[error(
        "the database schema is at version {database} but this build of Perimeter knows only up to {supported}; upgrade Perimeter (never downgrade a database in place)"
    )]
    SchemaTooNew {
        /// Highest version applied in the database.
        database: i64,
        /// Highest version this build embeds.
        supported: i64,
    },
    /// The database schema is older than this build and was not migrated.
    #[error(
        "the database schema is at version {database}, this build needs {required}; run `perimeter migrate`"
    )]
    SchemaOutdated {
        /// Highest version applied.
        database: i64,
        /// Version this build needs.
        required: i64,
    },
    /// A migration failed (the failing migration was rolled back).
    #[error("migration failed: {0}. The database was left at the last fully applied version")]
    Migration(String),
    /// The key ring does not belong to this database.
    #[error(
        "the key ring does not match this database: {what}. Use the key file this database was created with (restore it from backup); nothing was changed"
    )]
    KeyMismatch {
        /// Which key differs (never key bytes).
        what: String,
    },
    /// The key ring lacks a KEK version that still wraps data keys.
    #[error(
        "the key ring lacks KEK version {version}, which still wraps {deks} patient data keys; use a key file that includes it (rotation keeps old versions until `perimeter keys retire`)"
    )]
    KekMissing {
        /// The version.
        version: u32,
        /// How many data keys it wraps.
        deks: u64,
    },
    /// A KEK version cannot be retired yet.
    #[error(
        "KEK version {version} still wraps {deks} patient data keys; finish `perimeter keys rotate` first"
    )]
    KekInUse {
        /// The version.
        version: u32,
        /// How many data keys it wraps.
        deks: u64,
    },
    /// A KEK operation that makes no sense in the current state.
    #[error("{0}")]
    KeyState(String),
    /// Encryption or decryption failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// No such record.
    #[error("no {kind} with id {id}")]
    NotFound {
        /// The record type.
        kind: &'static str,
        /// Its id (internal ids are not PHI).
        id: String,
    },
    /// The reader's roles do not hold the permission this read or write declares (or the
    /// reader is disabled, or a staff-facing caller used a read reserved for Perimeter itself).
    #[error("access denied: this needs the {permission} permission")]
    Forbidden {
        /// The permission the operation declares (a fixed name, never data).
        permission: &'static str,
    },
    /// The patient's data key was destroyed: their data is permanently unreadable.
    #[error("patient {patient} was crypto-shredded; their data is permanently unreadable")]
    Shredded {
        /// The patient.
        patient: PatientId,
    },
    /// A unique constraint was violated.
    #[error("{what} already exists")]
    Duplicate {
        /// What (a constraint or field name, never a value).
        what: String,
    },
    /// The recipient's number opted out (STOP): the message was refused, never sent.
    #[error("the recipient's number has opted out of text messages (STOP); nothing was sent")]
    OptedOut,
    /// A value was refused before it reached the database.
    #[error("invalid {field}: expected {expected}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is expected.
        expected: &'static str,
    },
    /// The database URL or options are wrong.
    #[error("{0}")]
    Config(String),
    /// Stored data is not what this build wrote (corruption or manual edits).
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    /// Any other database error.
    #[error("database error {code}: {message}")]
    Database {
        /// The SQLSTATE or SQLite result code.
        code: String,
        /// The driver's message (no values).
        message: String,
    },
}

impl StoreError {
    /// Whether retrying later may succeed (database down, locked, conflict).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Busy | StoreError::Conflict
        )
    }

    pub(crate) fn from_sqlx(err: sqlx::Error, backend: Backend, target: &str) -> StoreError {
        use sqlx::Error as E;
        let unavailable = |detail: String| StoreError::Unavailable {
            backend,
            target: target.to_owned(),
            detail,
        };
        match err {
            E::Io(e) => unavailable(format!("I/O error: {}", e.kind())),
            E::Tls(_) => unavailable("TLS error".into()),
            E::PoolTimedOut => unavailable("timed out waiting for a connection".into()),
            E::PoolClosed => unavailable("connection pool closed".into()),
            E::WorkerCrashed => unavailable("database worker stopped".into()),
            E::Protocol(_) => unavailable("protocol error (connection lost?)".into()),
            E::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                match (backend, code.as_str()) {
                    // SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes.
                    (Backend::Sqlite, c) if primary_sqlite(c) == Some(5) || primary_sqlite(c) == Some(6) => {
                        StoreError::Busy
                    }
                    // SQLITE_FULL (13).
                    (Backend::Sqlite, c) if primary_sqlite(c) == Some(13) => StoreError::Full,
                    (Backend::Sqlite, c) if primary_sqlite(c) == Some(10) => {
                        unavailable("disk I/O error".into())
                    }
                    (Backend::Postgres, "53100" | "53200" | "54000") => StoreError::Full,
                    (Backend::Postgres, "40001" | "40P01" | "55P03") => StoreError::Conflict,
                    (Backend::Postgres, c) if c.starts_with("08") || c.starts_with("57P") => {
                        unavailable(format!("server closed the connection (SQLSTATE {c})"))
                    }
                    (Backend::Postgres, "3D000") => StoreError::Config(
                        "the PostgreSQL database named in database_url does not exist; create it (createdb) or fix the URL".into(),
                    ),
                    (Backend::Postgres, "28000" | "28P01") => StoreError::Config(
                        "PostgreSQL refused the credentials in database_url; fix the user or password".into(),
                    ),
                    _ if db.is_unique_violation() => StoreError::Duplicate {
                        what: db
                            .constraint()
                            .map(str::to_owned)
                            .unwrap_or_else(|| "a record with that key".into()),
                    },
                    _ => StoreError::Database {
                        message: if db.is_foreign_key_violation() {
                            "a referenced record does not exist".into()
                        } else if db.is_check_violation() {
                            "a stored value failed a check constraint".into()
                        } else {
                            // Driver messages for other errors name objects, not values.
                            db.message().chars().take(200).collect()
                        },
                        code,
                    },
                }
            }
            E::RowNotFound => StoreError::Corrupt("an expected row is missing".into()),
            E::ColumnDecode { index, .. } => {
                StoreError::Corrupt(format!("column {index} has an unexpected type"))
            }
            E::ColumnNotFound(c) => StoreError::Corrupt(format!("column {c} is missing")),
            E::TypeNotFound { type_name } => {
                StoreError::Corrupt(format!("type {type_name} is missing"))
            }
            E::Decode(_) => StoreError::Corrupt("a column could not be decoded".into()),
            E::Configuration(e) => StoreError::Config(format!("database configuration: {e}")),
            E::Migrate(e) => StoreError::Migration(e.to_string()),
            other => StoreError::Database {
                code: String::new(),
                message: other.to_string().chars().take(200).collect(),
            },
        }
    }
}

fn primary_sqlite(code: &str) -> Option<i64> {
    code.parse::<i64>().ok().map(|c| c & 0xff)
}

//! Perimeter's configuration: a TOML file, overridden by `PERIMETER_*` environment variables,
//! overridden by command-line flags. Validated at start: an unknown key, a bad value or an
//! unreadable file stops the program with a message naming the key, where it was set and
//! what is expected.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Prefix of every environment variable Perimeter reads.
pub const ENV_PREFIX: &str = "PERIMETER_";
/// Variables with this prefix are reserved for tests and ignored.
pub const ENV_TEST_PREFIX: &str = "PERIMETER_TEST_";
/// The configuration file's path.
pub const ENV_CONFIG: &str = "PERIMETER_CONFIG";
/// The key ring itself (the key file's JSON), as an alternative to `keys.file`.
pub const ENV_MASTER_KEY: &str = "PERIMETER_MASTER_KEY";
/// The configuration file looked for inside the data directory.
pub const CONFIG_FILE_NAME: &str = "perimeter.toml";
/// The data directory when none is configured.
pub const DEFAULT_DATA_DIR: &str = "./perimeter-data";

/// What kind of value a key takes (for converting environment variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    Int,
}

/// Every settable key, as a dotted path. Each can also be set through the environment
/// variable `PERIMETER_` + the path upper-cased with `.` replaced by `_`.
const KEYS: &[(&str, Kind)] = &[
    ("data_dir", Kind::Str),
    ("database_url", Kind::Str),
    ("listen", Kind::Str),
    ("insecure_http", Kind::Bool),
    ("log_format", Kind::Str),
    ("log_level", Kind::Str),
    ("tls.cert_file", Kind::Str),
    ("tls.key_file", Kind::Str),
    ("keys.file", Kind::Str),
    ("database.max_connections", Kind::Int),
    ("database.busy_timeout_ms", Kind::Int),
    ("database.acquire_timeout_ms", Kind::Int),
    ("database.sqlite_max_size_mb", Kind::Int),
    ("http.max_body_bytes", Kind::Int),
    ("http.request_timeout_ms", Kind::Int),
    ("http.shutdown_grace_ms", Kind::Int),
    ("http.trusted_proxies", Kind::Str),
    ("sessions.idle_timeout_minutes", Kind::Int),
    ("sessions.absolute_timeout_hours", Kind::Int),
    ("phi.max_message_bytes", Kind::Int),
    ("audit.checkpoint_every_records", Kind::Int),
    ("audit.checkpoint_every_seconds", Kind::Int),
    ("audit.checkpoint_dir", Kind::Str),
    ("local_model.path", Kind::Str),
    ("local_model.name", Kind::Str),
    ("local_model.context", Kind::Int),
    ("local_model.threads", Kind::Int),
    ("local_model.max_tokens", Kind::Int),
    ("assist.summary_model", Kind::Str),
    ("assist.draft_model", Kind::Str),
    ("service_levels.front_desk_minutes", Kind::Int),
    ("service_levels.scheduling_minutes", Kind::Int),
    ("service_levels.refills_minutes", Kind::Int),
    ("service_levels.billing_minutes", Kind::Int),
    ("service_levels.records_minutes", Kind::Int),
    ("service_levels.nurse_triage_minutes", Kind::Int),
    ("service_levels.clinician_minutes", Kind::Int),
    ("service_levels.urgent_minutes", Kind::Int),
    ("service_levels.emergency_minutes", Kind::Int),
    ("channels.practice", Kind::Str),
    ("channels.emergency_text", Kind::Str),
    ("channels.help_text", Kind::Str),
    ("channels.chat_embed_origins", Kind::Str),
    ("channels.chat_idle_timeout_minutes", Kind::Int),
    ("channels.chat_absolute_timeout_hours", Kind::Int),
    ("channels.twilio.account_sid", Kind::Str),
    ("channels.twilio.auth_token", Kind::Str),
    ("channels.twilio.public_base_url", Kind::Str),
    ("channels.twilio.api_base_url", Kind::Str),
    ("channels.twilio.from_number", Kind::Str),
    ("channels.routing.scheduling", Kind::Str),
    ("channels.routing.refill", Kind::Str),
    ("channels.routing.billing", Kind::Str),
    ("channels.routing.records", Kind::Str),
    ("channels.routing.results", Kind::Str),
    ("channels.routing.clinical", Kind::Str),
    ("channels.routing.general", Kind::Str),
    ("channels.routing.fallback", Kind::Str),
];

/// The environment variable that sets a dotted key.
pub fn env_var_for(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines (coloured on a terminal).
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// A database URL. `Debug`, `Display` and serialization hide the password.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(SecretString::from(url.into()))
    }

    /// The full URL, password included: only for handing to the database driver.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// `sqlite` or `postgres` (the URL scheme, normalised), or `None` if unrecognised.
    pub fn backend(&self) -> Option<&'static str> {
        let url = self.expose_secret();
        if url.starts_with("sqlite:") {
            Some("sqlite")
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some("postgres")
        } else {
            None
        }
    }

    /// The URL with any password (in the user-info part or a `password=` parameter) masked.
    pub fn masked(&self) -> String {
        mask_url(self.expose_secret())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.masked())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

const MASK: &str = "********";

fn mask_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return "(unparseable database URL; hidden)".to_owned();
    };
    if url.password().is_some() && url.set_password(Some(MASK)).is_err() {
        return "(database URL with a password; hidden)".to_owned();
    }
    if url
        .query_pairs()
        .any(|(k, _)| k.eq_ignore_ascii_case("password"))
    {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                if k.eq_ignore_ascii_case("password") {
                    (k.into_owned(), MASK.to_owned())
                } else {
                    (k.into_owned(), v.into_owned())
                }
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// `[tls]`: serve HTTPS with these PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first (PEM).
    pub cert_file: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// `[keys]`: where the key ring comes from.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// The key file (default `<data_dir>/keys.json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The key ring from `PERIMETER_MASTER_KEY`, if set: takes precedence over the file.
    /// Never read from the file or flags, never printed.
    #[serde(skip)]
    pub master_key: Option<SecretString>,
}

impl fmt::Debug for KeysConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeysConfig")
            .field("file", &self.file)
            .field("master_key", &self.master_key.as_ref().map(|_| MASK))
            .finish()
    }
}

/// `[database]`: connection pool settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Most connections in the pool (1..=1000).
    pub max_connections: u32,
    /// SQLite: how long a writer waits for a lock, in milliseconds.
    pub busy_timeout_ms: u64,
    /// How long a request waits for a free pool connection, in milliseconds.
    pub acquire_timeout_ms: u64,
    /// SQLite: the largest the database file may grow, in MiB (0: no limit but the disk's).
    /// A write beyond it is refused with a clear error and writes nothing.
    pub sqlite_max_size_mb: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            busy_timeout_ms: 5_000,
            acquire_timeout_ms: 5_000,
            sqlite_max_size_mb: 0,
        }
    }
}

/// `[http]`: request limits and shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest accepted request body in bytes.
    pub max_body_bytes: u64,
    /// Longest a request may run, in milliseconds.
    pub request_timeout_ms: u64,
    /// How long in-flight requests may finish after SIGTERM/SIGINT, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Reverse proxies whose `X-Forwarded-For` gives the client address (audit records,
    /// login throttling): IP addresses and CIDR ranges, comma-separated. Empty: none.
    pub trusted_proxies: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            trusted_proxies: String::new(),
        }
    }
}

/// `[sessions]`: console session lifetimes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// A session with no activity for this long ends.
    pub idle_timeout_minutes: u32,
    /// A session ends this long after login regardless of activity.
    pub absolute_timeout_hours: u32,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            idle_timeout_minutes: 15,
            absolute_timeout_hours: 12,
        }
    }
}

/// `[service_levels]`: how long a conversation may wait for a first response, in minutes:
/// routine waits per queue, one urgent and one emergency wait for every queue. Overdue
/// conversations escalate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceLevelsConfig {
    /// Routine wait in the front desk queue.
    pub front_desk_minutes: u32,
    /// Routine wait in the scheduling queue.
    pub scheduling_minutes: u32,
    /// Routine wait in the refills queue.
    pub refills_minutes: u32,
    /// Routine wait in the billing queue.
    pub billing_minutes: u32,
    /// Routine wait in the records queue.
    pub records_minutes: u32,
    /// Routine wait in the nurse triage queue.
    pub nurse_triage_minutes: u32,
    /// Routine wait in the clinician queue.
    pub clinician_minutes: u32,
    /// Urgent wait (every queue).
    pub urgent_minutes: u32,
    /// Emergency wait (every queue).
    pub emergency_minutes: u32,
}

impl Default for ServiceLevelsConfig {
    fn default() -> Self {
        let d = perimeter_workflows::ServiceLevels::default();
        Self {
            front_desk_minutes: d.routine_minutes[0],
            scheduling_minutes: d.routine_minutes[1],
            refills_minutes: d.routine_minutes[2],
            billing_minutes: d.routine_minutes[3],
            records_minutes: d.routine_minutes[4],
            nurse_triage_minutes: d.routine_minutes[5],
            clinician_minutes: d.routine_minutes[6],
            urgent_minutes: d.urgent_minutes,
            emergency_minutes: d.emergency_minutes,
        }
    }
}

impl ServiceLevelsConfig {
    /// The routine waits in `Queue::ALL` order.
    fn routine(&self) -> [u32; 7] {
        [
            self.front_desk_minutes,
            self.scheduling_minutes,
            self.refills_minutes,
            self.billing_minutes,
            self.records_minutes,
            self.nurse_triage_minutes,
            self.clinician_minutes,
        ]
    }

    /// The service levels the work queues use.
    pub fn levels(&self) -> perimeter_workflows::ServiceLevels {
        perimeter_workflows::ServiceLevels {
            routine_minutes: self.routine(),
            urgent_minutes: self.urgent_minutes,
            emergency_minutes: self.emergency_minutes,
        }
    }
}

/// `[assist]`: AI assistance for staff, through the gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssistConfig {
    /// The model that writes coordinator summaries (served by a registered vendor or by
    /// `[local_model]`); unset: summaries are extractive and local.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary_model: Option<String>,
    /// The model that drafts administrative replies for a person to approve; unset: drafts
    /// come from approved templates only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft_model: Option<String>,
}

/// `[phi]`: limits on patient messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhiConfig {
    /// Largest accepted message body in bytes.
    pub max_message_bytes: u64,
}

impl Default for PhiConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024,
        }
    }
}

/// The checkpoint directory under the data directory, unless `audit.checkpoint_dir` is set.
pub const DEFAULT_CHECKPOINT_DIR: &str = "audit-checkpoints";

/// `[audit]`: signed checkpoints of the audit trail (`perimeter serve` writes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Write a checkpoint after this many new records...
    pub checkpoint_every_records: u64,
    /// ...or after this many seconds with new records, whichever comes first.
    pub checkpoint_every_seconds: u64,
    /// Directory of `checkpoints.log` and `checkpoint.vkey` (default
    /// `<data_dir>/audit-checkpoints`); put it where it can be shipped off the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_dir: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            checkpoint_every_records: 1000,
            checkpoint_every_seconds: 60,
            checkpoint_dir: None,
        }
    }
}

/// `[local_model]`: a GGUF model run inside the process (no vendor; PHI may go to it as is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalModelConfig {
    /// The GGUF file (llama architecture, byte-level BPE tokenizer).
    pub path: PathBuf,
    /// The model name callers put in `model` (`/v1/chat/completions`).
    #[serde(default = "default_local_model_name")]
    pub name: String,
    /// Context length in tokens (default: the model's own, at most 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<u64>,
    /// Compute threads (default: every core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u64>,
    /// Completion tokens when a request names no `max_tokens`.
    #[serde(default = "default_local_model_max_tokens")]
    pub max_tokens: u64,
}

fn default_local_model_name() -> String {
    "local".to_owned()
}

fn default_local_model_max_tokens() -> u64 {
    512
}

impl LocalModelConfig {
    /// The loader's settings.
    pub fn model_config(&self) -> perimeter_llm::ModelConfig {
        let mut m = perimeter_llm::ModelConfig::new(&self.path, &self.name);
        m.context = self.context.and_then(|c| usize::try_from(c).ok());
        m.threads = self.threads.and_then(|t| usize::try_from(t).ok());
        m.max_tokens = u32::try_from(self.max_tokens).unwrap_or(u32::MAX);
        m
    }
}

/// `[channels.twilio]`: the Twilio account for SMS (webhooks and the Messages API).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSection {
    /// The account SID (`AC...`).
    pub account_sid: String,
    /// The auth token: signs webhooks, authenticates API calls. Masked when printed.
    #[serde(serialize_with = "serialize_masked")]
    pub auth_token: SecretString,
    /// The public URL Twilio reaches this server at (webhook signatures cover it), such as
    /// `https://perimeter.example-practice.org`.
    pub public_base_url: String,
    /// The Messages API base URL.
    #[serde(default = "default_twilio_api")]
    pub api_base_url: String,
    /// The practice's number, E.164 (`+15551234567`).
    pub from_number: String,
}

fn default_twilio_api() -> String {
    "https://api.twilio.com".to_owned()
}

fn serialize_masked<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(MASK)
}

impl fmt::Debug for TwilioSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSection")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &MASK)
            .field("public_base_url", &self.public_base_url)
            .field("api_base_url", &self.api_base_url)
            .field("from_number", &self.from_number)
            .finish()
    }
}

/// `[channels]`: patient channels (SMS, voicemail transcripts) and intake routing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsConfig {
    /// The practice (id) the channels serve; default: the database's only practice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub practice: Option<String>,
    /// The practice-approved message sent at once when a message shows an emergency sign.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emergency_text: Option<String>,
    /// The reply to HELP / INFO.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help_text: Option<String>,
    /// The Twilio account; without it the SMS webhooks answer 503 and nothing is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twilio: Option<TwilioSection>,
    /// Intent to queue (`front_desk`, `scheduling`, `refills`, `billing`, `records`,
    /// `nurse_triage`, `clinician`), and `fallback`: where messages go when classification
    /// fails. Emergencies always go to nurse triage.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub routing: BTreeMap<String, String>,
    /// Web chat: the sites (comma-separated `https://host` origins) whose pages may embed
    /// the chat widget; default none (only the `/chat` page itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_embed_origins: Option<String>,
    /// Web chat: minutes without activity after which a chat session ends (default 15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_idle_timeout_minutes: Option<u32>,
    /// Web chat: hours after which a chat session ends however active (default 4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_absolute_timeout_hours: Option<u32>,
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for the SQLite database, the key file and `perimeter.toml`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Database URL (default: the SQLite file `<data_dir>/perimeter.db`). Use
    /// [`Config::database_url`] for the resolved value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<DatabaseUrl>,
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Allow plain HTTP on a non-loopback address.
    #[serde(default)]
    pub insecure_http: bool,
    /// `human` or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or
    /// tracing-subscriber directives such as `info,perimeter_server=debug`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Serve HTTPS with these files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Key ring location.
    #[serde(default)]
    pub keys: KeysConfig,
    /// Pool settings.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// Request limits.
    #[serde(default)]
    pub http: HttpConfig,
    /// Session lifetimes.
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// Message limits.
    #[serde(default)]
    pub phi: PhiConfig,
    /// Audit checkpoints.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The model inside the perimeter, if one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_model: Option<LocalModelConfig>,
    /// `[assist]`: AI assistance for staff.
    #[serde(default)]
    pub assist: AssistConfig,
    /// `[service_levels]`: queue waits.
    #[serde(default)]
    pub service_levels: ServiceLevelsConfig,
    /// Patient channels.
    #[serde(default)]
    pub channels: ChannelsConfig,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from(DEFAULT_DATA_DIR)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_log_level() -> String {
    "info".to_owned()
}

impl Default for Config {
    fn default() -> Self {
        let mut config = Self {
            data_dir: default_data_dir(),
            database_url: None,
            listen: default_listen(),
            insecure_http: false,
            log_format: LogFormat::default(),
            log_level: default_log_level(),
            tls: None,
            keys: KeysConfig::default(),
            database: DatabaseConfig::default(),
            http: HttpConfig::default(),
            sessions: SessionsConfig::default(),
            phi: PhiConfig::default(),
            audit: AuditConfig::default(),
            local_model: None,
            assist: AssistConfig::default(),
            service_levels: ServiceLevelsConfig::default(),
            channels: ChannelsConfig::default(),
        };
        config.resolve_defaults();
        config
    }
}

/// Where a value came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// A configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Flag(name) => write!(f, "flag {name}"),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("configuration file {path}: cannot read it: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("configuration file {path}: not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (line and column).
        message: String,
    },
    /// A key that Perimeter does not know.
    #[error("configuration key `{key}` (from {origin}) is not a known key; known keys: {known}")]
    UnknownKey {
        /// The dotted key.
        key: String,
        /// Where it was set.
        origin: Source,
        /// The known keys, comma separated.
        known: String,
    },
    /// An environment variable with the `PERIMETER_` prefix that Perimeter does not know.
    #[error(
        "environment variable {var} is not a Perimeter setting; known variables: {known} (variables starting with PERIMETER_TEST_ are reserved for tests)"
    )]
    UnknownEnv {
        /// The variable's name.
        var: String,
        /// The known variables, comma separated.
        known: String,
    },
    /// A value of the wrong type or out of range.
    #[error("configuration key `{key}` (from {origin}): {expected}")]
    BadValue {
        /// The dotted key.
        key: String,
        /// Where it was set.
        origin: Source,
        /// What is expected.
        expected: String,
    },
}

/// A value set on the command line.
#[derive(Debug, Clone)]
pub struct FlagOverride {
    /// The dotted key it sets.
    pub key: &'static str,
    /// The flag's name, for messages (`--listen`).
    pub flag: &'static str,
    /// The value.
    pub value: toml::Value,
}

impl FlagOverride {
    /// A string-valued flag.
    pub fn string(key: &'static str, flag: &'static str, value: impl Into<String>) -> Self {
        Self {
            key,
            flag,
            value: toml::Value::String(value.into()),
        }
    }

    /// A path-valued flag.
    pub fn path(key: &'static str, flag: &'static str, value: &Path) -> Self {
        Self::string(key, flag, value.to_string_lossy().into_owned())
    }

    /// A boolean flag.
    pub fn bool(key: &'static str, flag: &'static str, value: bool) -> Self {
        Self {
            key,
            flag,
            value: toml::Value::Boolean(value),
        }
    }
}

/// Inputs to [`Config::load`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// Flag values, highest precedence.
    pub flags: Vec<FlagOverride>,
}

impl Config {
    /// Loads file, environment (`env` is the process environment as name/value pairs) and
    /// flags, and validates the result.
    pub fn load(
        options: &LoadOptions,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && !k.starts_with(ENV_TEST_PREFIX))
            .collect();
        let known_env: BTreeMap<String, (&str, Kind)> = KEYS
            .iter()
            .map(|(key, kind)| (env_var_for(key), (*key, *kind)))
            .collect();
        for var in env.keys() {
            if var != ENV_CONFIG && var != ENV_MASTER_KEY && !known_env.contains_key(var) {
                let mut known: Vec<String> = known_env.keys().cloned().collect();
                known.push(ENV_CONFIG.to_owned());
                known.push(ENV_MASTER_KEY.to_owned());
                return Err(ConfigError::UnknownEnv {
                    var: var.clone(),
                    known: known.join(", "),
                });
            }
        }

        let mut table = toml::Table::new();
        let mut sources: BTreeMap<String, Source> = BTreeMap::new();

        // 1. The file: --config, else PERIMETER_CONFIG, else <data_dir>/perimeter.toml.
        let file = match (&options.config_file, env.get(ENV_CONFIG)) {
            (Some(path), _) => Some(path.clone()),
            (None, Some(path)) => Some(PathBuf::from(path)),
            (None, None) => {
                let data_dir = options
                    .flags
                    .iter()
                    .find(|f| f.key == "data_dir")
                    .and_then(|f| f.value.as_str().map(PathBuf::from))
                    .or_else(|| env.get(&env_var_for("data_dir")).map(PathBuf::from))
                    .unwrap_or_else(default_data_dir);
                let candidate = data_dir.join(CONFIG_FILE_NAME);
                candidate.exists().then_some(candidate)
            }
        };
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
                path: path.clone(),
                source,
            })?;
            let file_table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Syntax {
                        path: path.clone(),
                        message: e.message().to_owned() + &line_of(&text, e.span()),
                    })?;
            let mut leaves = Vec::new();
            collect_leaves(&file_table, "", &mut leaves);
            for (key, value) in leaves {
                if key == "keys.master_key" {
                    return Err(ConfigError::BadValue {
                        key,
                        origin: Source::File(path.clone()),
                        expected: format!(
                            "the key ring may only come from the key file ([keys] file) or the {ENV_MASTER_KEY} environment variable"
                        ),
                    });
                }
                set_path(&mut table, &key, value);
                sources.insert(key, Source::File(path.clone()));
            }
        }

        // 2. The environment.
        for (var, raw) in &env {
            let Some((key, kind)) = known_env.get(var) else {
                continue;
            };
            let origin = Source::Env(var.clone());
            let value = env_value(raw, *kind).map_err(|expected| ConfigError::BadValue {
                key: (*key).to_owned(),
                origin: origin.clone(),
                expected,
            })?;
            set_path(&mut table, key, value);
            sources.insert((*key).to_owned(), origin);
        }

        // 3. Flags.
        for flag in &options.flags {
            set_path(&mut table, flag.key, flag.value.clone());
            sources.insert(flag.key.to_owned(), Source::Flag(flag.flag));
        }

        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| deserialize_error(&e, &sources))?;
        config.keys.master_key = env
            .get(ENV_MASTER_KEY)
            .map(|v| SecretString::from(v.clone()));
        config.resolve_defaults();
        config.validate(&sources)?;
        Ok(config)
    }

    fn resolve_defaults(&mut self) {
        if self.database_url.is_none() {
            let path = self.data_dir.join("perimeter.db");
            self.database_url = Some(DatabaseUrl::new(format!(
                "sqlite://{}",
                path.to_string_lossy()
            )));
        }
        if self.keys.file.is_none() {
            self.keys.file = Some(self.data_dir.join("keys.json"));
        }
    }

    fn validate(&self, sources: &BTreeMap<String, Source>) -> Result<(), ConfigError> {
        let bad = |key: &str, expected: &str| ConfigError::BadValue {
            key: key.to_owned(),
            origin: sources.get(key).cloned().unwrap_or(Source::Default),
            expected: expected.to_owned(),
        };
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad(
                "data_dir",
                "expected a directory path, not an empty string",
            ));
        }
        if self.database_url().backend().is_none() {
            return Err(bad(
                "database_url",
                "expected a URL starting with sqlite:// or postgres://",
            ));
        }
        if self.database_url().backend() == Some("postgres")
            && url::Url::parse(self.database_url().expose_secret()).is_err()
        {
            return Err(bad(
                "database_url",
                "expected a URL such as postgres://user@host:5432/dbname",
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(bad(
                "log_level",
                "expected a level (error, warn, info, debug, trace) or tracing directives such as info,perimeter_server=debug",
            ));
        }
        let ranges: [(&str, u64, u64, u64); 11] = [
            (
                "database.max_connections",
                u64::from(self.database.max_connections),
                1,
                1000,
            ),
            (
                "database.busy_timeout_ms",
                self.database.busy_timeout_ms,
                0,
                600_000,
            ),
            (
                "database.acquire_timeout_ms",
                self.database.acquire_timeout_ms,
                1,
                600_000,
            ),
            (
                "http.max_body_bytes",
                self.http.max_body_bytes,
                1024,
                1 << 30,
            ),
            (
                "http.request_timeout_ms",
                self.http.request_timeout_ms,
                1,
                3_600_000,
            ),
            (
                "http.shutdown_grace_ms",
                self.http.shutdown_grace_ms,
                0,
                3_600_000,
            ),
            (
                "sessions.idle_timeout_minutes",
                u64::from(self.sessions.idle_timeout_minutes),
                1,
                24 * 60,
            ),
            (
                "sessions.absolute_timeout_hours",
                u64::from(self.sessions.absolute_timeout_hours),
                1,
                24 * 30,
            ),
            (
                "phi.max_message_bytes",
                self.phi.max_message_bytes,
                1,
                1 << 30,
            ),
            (
                "audit.checkpoint_every_records",
                self.audit.checkpoint_every_records,
                1,
                10_000_000,
            ),
            (
                "audit.checkpoint_every_seconds",
                self.audit.checkpoint_every_seconds,
                1,
                86_400,
            ),
        ];
        for (key, value, min, max) in ranges {
            if value < min || value > max {
                return Err(bad(
                    key,
                    &format!("expected an integer from {min} to {max}"),
                ));
            }
        }
        if self
            .audit
            .checkpoint_dir
            .as_ref()
            .is_some_and(|d| d.as_os_str().is_empty())
        {
            return Err(bad(
                "audit.checkpoint_dir",
                "expected a directory path, not an empty string",
            ));
        }
        if let Some(lm) = &self.local_model {
            self.validate_local_model(lm, &bad)?;
        }
        // Service levels: 1 minute to 30 days; an emergency never waits longer than urgent
        // work, and urgent work never longer than routine work in any queue.
        let sl = &self.service_levels;
        let mut waits: Vec<(String, u32)> = [
            "front_desk",
            "scheduling",
            "refills",
            "billing",
            "records",
            "nurse_triage",
            "clinician",
        ]
        .iter()
        .zip(sl.routine())
        .map(|(q, m)| (format!("service_levels.{q}_minutes"), m))
        .collect();
        waits.push(("service_levels.urgent_minutes".into(), sl.urgent_minutes));
        waits.push((
            "service_levels.emergency_minutes".into(),
            sl.emergency_minutes,
        ));
        for (key, m) in &waits {
            if !(1..=43_200).contains(m) {
                return Err(bad(key, "expected minutes from 1 to 43200 (30 days)"));
            }
        }
        if sl.emergency_minutes > sl.urgent_minutes {
            return Err(bad(
                "service_levels.emergency_minutes",
                "expected no more than service_levels.urgent_minutes (an emergency never waits longer than urgent work)",
            ));
        }
        if sl.routine().iter().any(|m| *m < sl.urgent_minutes) {
            return Err(bad(
                "service_levels.urgent_minutes",
                "expected no more than every queue's routine wait",
            ));
        }
        if perimeter_server::TrustedProxies::parse(&self.http.trusted_proxies).is_err() {
            return Err(bad(
                "http.trusted_proxies",
                "expected IP addresses or CIDR ranges separated by commas, such as \"10.0.0.0/8, 192.0.2.7\"",
            ));
        }
        for (key, model) in [
            ("assist.summary_model", &self.assist.summary_model),
            ("assist.draft_model", &self.assist.draft_model),
        ] {
            if let Some(m) = model
                && (m.trim().is_empty() || m.len() > 128 || m.chars().any(char::is_control))
            {
                return Err(bad(
                    key,
                    "expected a model name (1 to 128 characters) served by a registered vendor or [local_model]",
                ));
            }
        }
        self.validate_channels(&bad)?;
        if u64::from(self.sessions.idle_timeout_minutes)
            > u64::from(self.sessions.absolute_timeout_hours) * 60
        {
            return Err(bad(
                "sessions.idle_timeout_minutes",
                "expected at most sessions.absolute_timeout_hours (in minutes)",
            ));
        }
        Ok(())
    }

    fn validate_local_model(
        &self,
        lm: &LocalModelConfig,
        bad: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if lm.path.as_os_str().is_empty() {
            return Err(bad(
                "local_model.path",
                "expected the path of a GGUF model file, not an empty string",
            ));
        }
        if !lm.path.is_file() {
            return Err(bad(
                "local_model.path",
                &format!(
                    "expected the path of a GGUF model file; {} is not a readable file",
                    lm.path.display()
                ),
            ));
        }
        let name_ok = !lm.name.is_empty()
            && lm.name.len() <= 64
            && lm
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if !name_ok {
            return Err(bad(
                "local_model.name",
                "expected 1 to 64 letters, digits, '-', '_', '.' or ':'",
            ));
        }
        let ranges = [
            ("local_model.context", lm.context, 16, 131_072),
            ("local_model.threads", lm.threads, 1, 1024),
            ("local_model.max_tokens", Some(lm.max_tokens), 1, 131_072),
        ];
        for (key, value, min, max) in ranges {
            if value.is_some_and(|v| v < min || v > max) {
                return Err(bad(
                    key,
                    &format!("expected an integer from {min} to {max}"),
                ));
            }
        }
        if lm.context.is_some_and(|c| lm.max_tokens >= c) {
            return Err(bad(
                "local_model.max_tokens",
                "expected fewer tokens than local_model.context",
            ));
        }
        Ok(())
    }

    fn validate_channels(
        &self,
        bad: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let c = &self.channels;
        if let Some(p) = &c.practice
            && p.parse::<perimeter_domain::PracticeId>().is_err()
        {
            return Err(bad("channels.practice", "expected a practice id (UUID)"));
        }
        for (key, text) in [
            ("channels.emergency_text", &c.emergency_text),
            ("channels.help_text", &c.help_text),
        ] {
            if text
                .as_ref()
                .is_some_and(|t| t.trim().is_empty() || t.chars().count() > 1600)
            {
                return Err(bad(key, "expected a text of 1 to 1600 characters"));
            }
        }
        if let Some(text) = &c.emergency_text
            && !(text.contains("911") && text.contains("988"))
        {
            return Err(bad(
                "channels.emergency_text",
                "expected a text that tells the patient to call 911, and 988 for a suicidal crisis",
            ));
        }
        for (intent, queue) in &c.routing {
            let key = format!("channels.routing.{intent}");
            if intent != "fallback" && intent.parse::<perimeter_workflows::Intent>().is_err() {
                return Err(bad(&key, "is not an intent"));
            }
            if intent == "emergency" {
                return Err(bad(&key, "emergencies always go to nurse_triage"));
            }
            if perimeter_workflows::parse_queue(queue).is_none() {
                return Err(bad(
                    &key,
                    "expected a queue: front_desk, scheduling, refills, billing, records, nurse_triage or clinician",
                ));
            }
        }
        if let Some(t) = &c.twilio {
            let sid_ok = t.account_sid.starts_with("AC")
                && (10..=64).contains(&t.account_sid.len())
                && t.account_sid.bytes().all(|b| b.is_ascii_alphanumeric());
            if !sid_ok {
                return Err(bad(
                    "channels.twilio.account_sid",
                    "expected an account SID such as AC0123456789abcdef0123456789abcdef",
                ));
            }
            if t.auth_token.expose_secret().len() < 8 {
                return Err(bad(
                    "channels.twilio.auth_token",
                    "expected the account's auth token (at least 8 characters)",
                ));
            }
            for (key, u) in [
                ("channels.twilio.public_base_url", &t.public_base_url),
                ("channels.twilio.api_base_url", &t.api_base_url),
            ] {
                let ok = url::Url::parse(u)
                    .is_ok_and(|p| matches!(p.scheme(), "https" | "http") && p.host().is_some());
                if !ok {
                    return Err(bad(
                        key,
                        "expected an http(s) URL such as https://host.example",
                    ));
                }
            }
            let digits = t.from_number.bytes().filter(u8::is_ascii_digit).count();
            if !t.from_number.starts_with('+') || !(7..=15).contains(&digits) {
                return Err(bad(
                    "channels.twilio.from_number",
                    "expected an E.164 number such as +15551234567",
                ));
            }
        }
        Ok(())
    }

    /// The resolved database URL.
    pub fn database_url(&self) -> DatabaseUrl {
        match &self.database_url {
            Some(url) => url.clone(),
            None => DatabaseUrl::new(format!(
                "sqlite://{}",
                self.data_dir.join("perimeter.db").to_string_lossy()
            )),
        }
    }

    /// The resolved audit checkpoint directory.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.audit
            .checkpoint_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join(DEFAULT_CHECKPOINT_DIR))
    }

    /// The resolved key file path.
    pub fn keys_file(&self) -> PathBuf {
        self.keys
            .file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys.json"))
    }

    /// The effective configuration as TOML, with the database password and keys masked.
    pub fn to_masked_toml(&self) -> Result<String, toml::ser::Error> {
        let mut value = toml::Table::try_from(self)?;
        if self.keys.master_key.is_some()
            && let Some(toml::Value::Table(keys)) = value.get_mut("keys")
        {
            keys.insert(
                "master_key".to_owned(),
                toml::Value::String(format!("{MASK} (from {ENV_MASTER_KEY})")),
            );
        }
        toml::to_string_pretty(&value)
    }
}

/// " (line N)" for a byte span, for TOML syntax errors.
fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text
                .get(..span.start)
                .map_or(0, |before| before.matches('\n').count())
                + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

fn collect_leaves(table: &toml::Table, prefix: &str, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) if !inner.is_empty() => collect_leaves(inner, &key, out),
            _ => out.push((key, v.clone())),
        }
    }
}

fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts = key.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_owned(), value);
            return;
        }
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        match entry {
            toml::Value::Table(t) => current = t,
            _ => return,
        }
    }
}

fn env_value(raw: &str, kind: Kind) -> Result<toml::Value, String> {
    match kind {
        Kind::Str => Ok(toml::Value::String(raw.to_owned())),
        Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" | "" => Ok(toml::Value::Boolean(false)),
            _ => Err("expected a boolean: true or false".to_owned()),
        },
        Kind::Int => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| "expected a whole number".to_owned()),
    }
}

fn deserialize_error(
    err: &serde_path_to_error::Error<toml::de::Error>,
    sources: &BTreeMap<String, Source>,
) -> ConfigError {
    let path = err.path().to_string();
    let message = err.inner().message().to_owned();
    let known = KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
    // serde reports an unknown field as "unknown field `x`, expected ..." at the parent path.
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        // serde_path_to_error already ends the path with the unknown field.
        let key = if path == "." || path.is_empty() {
            field.to_owned()
        } else if path == field || path.ends_with(&format!(".{field}")) {
            path.clone()
        } else {
            format!("{path}.{field}")
        };
        let origin = sources.get(&key).cloned().unwrap_or(Source::Default);
        return ConfigError::UnknownKey { key, origin, known };
    }
    let key = if path == "." { String::new() } else { path };
    let origin = sources
        .get(&key)
        .cloned()
        .or_else(|| {
            sources
                .iter()
                .find(|(k, _)| k.starts_with(&format!("{key}.")))
                .map(|(_, s)| s.clone())
        })
        .unwrap_or(Source::Default);
    let expected = expected_for(&key).unwrap_or(message);
    ConfigError::BadValue {
        key,
        origin,
        expected,
    }
}

/// A fixed description of what a key expects (so the rejected value is never echoed).
fn expected_for(key: &str) -> Option<String> {
    let text = match key {
        "data_dir"
        | "tls.cert_file"
        | "tls.key_file"
        | "keys.file"
        | "audit.checkpoint_dir"
        | "local_model.path" => "expected a path (a string)",
        "local_model.name" | "assist.summary_model" | "assist.draft_model" => {
            "expected a model name (a string)"
        }
        "local_model" => {
            "expected a table with path (the GGUF file) and optionally name, context, threads, max_tokens"
        }
        "database_url" => "expected a URL string starting with sqlite:// or postgres://",
        "listen" => "expected an address and port such as 127.0.0.1:8080 or [::1]:8443",
        "insecure_http" => "expected a boolean: true or false",
        "log_format" => "expected \"human\" or \"json\"",
        "log_level" => "expected a string such as \"info\"",
        "tls" => "expected a table with cert_file and key_file",
        "keys" | "database" | "http" | "sessions" | "phi" | "audit" | "assist"
        | "service_levels" => "expected a table",
        k if KEYS
            .iter()
            .any(|(name, kind)| *name == k && *kind == Kind::Int) =>
        {
            "expected a non-negative whole number"
        }
        _ => return None,
    };
    Some(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_file(text: &str) -> Result<Config, ConfigError> {
        // A directory per call: tests run in parallel.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "perimeter-config-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("perimeter.toml");
        std::fs::write(&file, text).unwrap();
        let r = Config::load(
            &LoadOptions {
                config_file: Some(file),
                flags: Vec::new(),
            },
            Vec::new(),
        );
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    #[test]
    fn service_levels_and_trusted_proxies_are_validated() {
        let c = load_file("[service_levels]\nscheduling_minutes = 120\nemergency_minutes = 2\n")
            .unwrap();
        let l = c.service_levels.levels();
        assert_eq!(
            l.allowed_wait(
                perimeter_workflows::Queue::Scheduling,
                perimeter_workflows::Urgency::Routine
            ),
            time::Duration::minutes(120)
        );
        assert_eq!(l.emergency_minutes, 2);
        assert_eq!(
            load_file("").unwrap().service_levels.levels(),
            perimeter_workflows::ServiceLevels::default()
        );
        let err = |text: &str| load_file(text).unwrap_err().to_string();
        let e = err("[service_levels]\nbilling_minutes = 0\n");
        assert!(
            e.contains("service_levels.billing_minutes") && e.contains("43200"),
            "{e}"
        );
        let e = err("[service_levels]\nemergency_minutes = 90\n");
        assert!(e.contains("service_levels.emergency_minutes"), "{e}");
        let e = err("[service_levels]\nurgent_minutes = 500\n");
        assert!(e.contains("service_levels.urgent_minutes"), "{e}");
        let e = err("[service_levels]\nnurse_minutes = 5\n");
        assert!(e.contains("nurse_minutes"), "{e}");
        let ok = load_file("[http]\ntrusted_proxies = \"10.0.0.0/8, 192.0.2.7\"\n").unwrap();
        assert_eq!(ok.http.trusted_proxies, "10.0.0.0/8, 192.0.2.7");
        let e = err("[http]\ntrusted_proxies = \"10.0.0.0/33\"\n");
        assert!(
            e.contains("http.trusted_proxies") && e.contains("CIDR"),
            "{e}"
        );
        assert!(
            !e.contains("10.0.0.0/33"),
            "the rejected value is not echoed: {e}"
        );
        let e = err("[assist]\nsummary_model = \"\"\n");
        assert!(e.contains("assist.summary_model"), "{e}");
    }

    #[test]
    fn local_model_is_validated_at_start() {
        let model =
            std::env::temp_dir().join(format!("perimeter-model-{}.gguf", std::process::id()));
        std::fs::write(&model, b"GGUF").unwrap();
        let path = model.display().to_string().replace('\\', "/");
        let ok = load_file(&format!(
            "[local_model]\npath = \"{path}\"\nname = \"smollm\"\ncontext = 2048\nthreads = 2\nmax_tokens = 64\n"
        ))
        .unwrap();
        let lm = ok.local_model.clone().unwrap();
        assert_eq!(lm.name, "smollm");
        let m = lm.model_config();
        assert_eq!(
            (m.context, m.threads, m.max_tokens),
            (Some(2048), Some(2), 64)
        );
        let defaults = load_file(&format!("[local_model]\npath = \"{path}\"\n")).unwrap();
        let lm = defaults.local_model.unwrap();
        assert_eq!(
            (lm.name.as_str(), lm.max_tokens, lm.context),
            ("local", 512, None)
        );
        assert!(load_file("").unwrap().local_model.is_none());

        let err = |text: String| load_file(&text).unwrap_err().to_string();
        let e = err("[local_model]\npath = \"/nonexistent/model.gguf\"\n".into());
        assert!(
            e.contains("local_model.path") && e.contains("/nonexistent/model.gguf"),
            "{e}"
        );
        let e = err("[local_model]\nname = \"x\"\n".into());
        assert!(e.contains("`local_model`") && e.contains("path"), "{e}");
        let e = err(format!("[local_model]\npath = \"{path}\"\nthreads = 0\n"));
        assert!(e.contains("local_model.threads"), "{e}");
        let e = err(format!(
            "[local_model]\npath = \"{path}\"\nname = \"a b\"\n"
        ));
        assert!(e.contains("local_model.name"), "{e}");
        let e = err(format!(
            "[local_model]\npath = \"{path}\"\ncontext = 64\nmax_tokens = 64\n"
        ));
        assert!(e.contains("local_model.max_tokens"), "{e}");
        let e = err(format!("[local_model]\npath = \"{path}\"\ngpu = true\n"));
        assert!(e.contains("local_model.gpu"), "{e}");
        std::fs::remove_file(&model).unwrap();
    }
}

//! `perimeter audit`: verify the trail, prove and check inclusion, export, checkpoint.
//!
//! The store adapter ([`StoreTrail`]) and the checkpointer spawn ([`spawn_checkpointer`], which
//! `serve` calls) live here because this crate is the one that sees both the store and the
//! audit crate.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use perimeter_audit::bundle::InclusionBundle;
use perimeter_audit::checkpoint::{CheckpointKey, SignedCheckpoint};
use perimeter_audit::checkpointer::{
    CheckpointStore, Checkpointer, CheckpointerConfig, LOG_FILE, VKEY_FILE, read_log,
};
use perimeter_audit::export::{CsvWriter, FhirBundleWriter};
use perimeter_audit::merkle::Frontier;
use perimeter_audit::query::{AuditQuery, QueryKind, query_event};
use perimeter_audit::schedule::Policy;
use perimeter_audit::trail::{TrailStore, prove, verify_store};
use perimeter_audit::verify::HeadView;
use perimeter_audit::{Action, Actor, AuditRecord, Hash32, Outcome};
use perimeter_crypto::KeyRing;
use perimeter_domain::{PatientId, SharedClock, StaffId, SystemClock};
use perimeter_store::{Store, StoreError, StoreOptions};
use tokio::task::JoinHandle;

use crate::config::{Config, FlagOverride};

/// The log origin (and checkpoint key name) of Perimeter's audit trail.
pub const ORIGIN: &str = "perimeter/audit";
/// The checkpoint directory under the data directory, unless `--checkpoint-dir` is given.
pub const CHECKPOINT_DIR: &str = "audit-checkpoints";

/// Options of `perimeter audit`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  perimeter audit verify                               check the whole trail; exit status 0 = pass
  perimeter audit verify --from-checkpoint /mnt/offsite/checkpoints.log
  perimeter audit verify --database-url postgres://perimeter@db/perimeter
  perimeter audit prove 1234 > proof.json              inclusion proof of record 1234
  perimeter audit check-proof proof.json --key audit-checkpoints/checkpoint.vkey
  perimeter audit export --format fhir --patient <id> --from 2026-01-01T00:00:00Z > disclosures.json
  perimeter audit checkpoint                           sign a checkpoint now")]
pub struct AuditArgs {
    /// Database URL (default: the SQLite file in the data directory).
    /// Environment: PERIMETER_DATABASE_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Directory of checkpoints.log and checkpoint.vkey. Default: <data-dir>/audit-checkpoints.
    #[arg(long, global = true, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// `perimeter audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain, every leaf hash, seq continuity, stored tree nodes and head, every
    /// signed checkpoint (database and file) and consistency between successive checkpoints.
    /// Reports the first problem; exit status 1 when anything is wrong.
    Verify {
        /// Another checkpoint log or note to check against (e.g. a copy shipped off the host).
        #[arg(long, value_name = "FILE")]
        from_checkpoint: Vec<PathBuf>,
        /// Verifier key (`name+id+key` or a file holding it). Default: the key ring's, else
        /// <checkpoint-dir>/checkpoint.vkey.
        #[arg(long, value_name = "VKEY|FILE")]
        key: Option<String>,
        /// Records per database read.
        #[arg(long, default_value_t = 4096)]
        page: u32,
    },
    /// Print an inclusion proof (JSON) of the record with this seq.
    Prove {
        /// The record's seq.
        seq: u64,
        /// Prove against this checkpoint note instead of the smallest stored one covering it.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
    /// Check an inclusion proof offline (no database needed).
    CheckProof {
        /// The proof (JSON from `audit prove`).
        file: PathBuf,
        /// Published verifier key (`name+id+key` or a file holding it). Without it only the
        /// proof's own embedded key is used, which proves internal consistency only.
        #[arg(long, value_name = "VKEY|FILE")]
        key: Option<String>,
    },
    /// Export records as FHIR R4 AuditEvents (Bundle) or CSV. The export is itself audited.
    Export {
        /// Output format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Only events about this patient (internal id): an accounting of disclosures.
        #[arg(long, value_name = "ID")]
        patient: Option<PatientId>,
        /// Only events by this staff user or service client.
        #[arg(long, value_name = "ID")]
        user: Option<StaffId>,
        /// Only events with this action (create, read, update, delete, execute, disclose,
        /// login, logout).
        #[arg(long, value_parser = parse_action)]
        action: Option<Action>,
        /// From this instant (RFC 3339, inclusive).
        #[arg(long, value_parser = parse_time)]
        from: Option<i64>,
        /// Up to this instant (RFC 3339, exclusive).
        #[arg(long, value_parser = parse_time)]
        to: Option<i64>,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Sign and write a checkpoint of the current head now (database and checkpoint file).
    Checkpoint,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A FHIR R4 Bundle (type collection) of AuditEvent resources (IHE BALP).
    Fhir,
    /// CSV with a header row.
    Csv,
}

fn parse_action(s: &str) -> Result<Action, String> {
    serde_json::from_value(serde_json::Value::String(s.trim().to_owned())).map_err(|_| {
        "expected one of: create, read, update, delete, execute, disclose, login, logout".into()
    })
}

fn parse_time(s: &str) -> Result<i64, String> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|_| "expected an RFC 3339 instant such as 2026-01-01T00:00:00Z".to_owned())?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| "instant out of range".into())
}

impl AuditArgs {
    /// The configuration keys these flags set.
    pub fn overrides(&self) -> Vec<FlagOverride> {
        let mut flags = Vec::new();
        if let Some(url) = &self.database_url {
            flags.push(FlagOverride::string(
                "database_url",
                "--database-url",
                url.clone(),
            ));
        }
        flags
    }
}

/// The store seen by the audit crate.
#[derive(Debug, Clone)]
pub struct StoreTrail(pub Store);

impl TrailStore for StoreTrail {
    type Error = StoreError;
    async fn records(&self, from_seq: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError> {
        self.0.audit_records(from_seq, limit).await
    }
    async fn node(&self, level: u32, index: u64) -> Result<Option<Hash32>, StoreError> {
        self.0.audit_node(level, index).await
    }
    async fn head(&self) -> Result<Option<HeadView>, StoreError> {
        Ok(self.0.audit_head().await?.map(|h| HeadView {
            size: h.size,
            last_leaf_hash: h.last_leaf_hash,
            frontier: h.frontier.to_bytes(),
        }))
    }
    async fn checkpoints(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .0
            .checkpoints()
            .await?
            .into_iter()
            .map(|c| c.signed)
            .collect())
    }
}

impl CheckpointStore for StoreTrail {
    type Error = StoreError;
    async fn head(&self) -> Result<Frontier, StoreError> {
        Ok(self
            .0
            .audit_head()
            .await?
            .map(|h| h.frontier)
            .unwrap_or_default())
    }
    async fn latest_checkpoint(&self) -> Result<Option<(u64, i64)>, StoreError> {
        Ok(self
            .0
            .checkpoints()
            .await?
            .last()
            .map(|c| (c.tree_size, c.at_millis)))
    }
    async fn insert_checkpoint(
        &self,
        size: u64,
        at_millis: i64,
        signed: &[u8],
    ) -> Result<(), StoreError> {
        self.0.insert_checkpoint(size, at_millis, signed).await
    }
}

/// The checkpoint directory for a configuration.
pub fn checkpoint_dir(config: &Config, flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .unwrap_or_else(|| config.data_dir.join(CHECKPOINT_DIR))
}

/// Starts the checkpointer for `serve`: a checkpoint every `policy.every_records` records or
/// `policy.every_millis`, whichever first, into the database and `<dir>/checkpoints.log`.
/// It stops (after a final checkpoint) when `shutdown` completes.
#[allow(dead_code)] // Called by `serve` once it opens the store (see the audit helper's notes).
pub async fn spawn_checkpointer(
    store: Store,
    keys: &KeyRing,
    clock: SharedClock,
    dir: PathBuf,
    policy: Policy,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<JoinHandle<()>> {
    let config = CheckpointerConfig {
        origin: ORIGIN.to_owned(),
        policy,
        dir,
        tick: Duration::from_secs(1),
    };
    let c = Checkpointer::new(
        StoreTrail(store),
        keys.audit_signing_key().clone(),
        clock,
        config,
    )
    .await
    .context("cannot start the audit checkpointer")?;
    Ok(tokio::spawn(c.run(shutdown)))
}

fn load_keys(config: &Config) -> anyhow::Result<KeyRing> {
    if let Some(value) = &config.keys.master_key {
        use secrecy::ExposeSecret;
        return KeyRing::from_env_value(value.expose_secret())
            .context("PERIMETER_MASTER_KEY: cannot load the key ring");
    }
    let path = config.keys_file();
    KeyRing::load_file(&path)
        .with_context(|| format!("cannot load the key ring from {}", path.display()))
}

async fn open_store(config: &Config, keys: &KeyRing) -> anyhow::Result<Store> {
    let url = perimeter_store::DatabaseUrl::parse(config.database_url().expose_secret())
        .context("database_url")?;
    let mut opts = StoreOptions::new(url);
    opts.max_connections = config.database.max_connections.clamp(1, 4);
    opts.busy_timeout = Duration::from_millis(config.database.busy_timeout_ms);
    opts.acquire_timeout = Duration::from_millis(config.database.acquire_timeout_ms);
    let clock: SharedClock = Arc::new(SystemClock);
    let store = Store::connect(&opts, keys.clone(), clock)
        .await
        .context("cannot open the database")?;
    store
        .require_current_schema()
        .await
        .context("the database schema is not current (run `perimeter serve` once to migrate)")?;
    Ok(store)
}

/// Reads a verifier key given inline or as a file.
fn read_vkey(arg: &str) -> anyhow::Result<CheckpointKey> {
    let text = if Path::new(arg).exists() {
        std::fs::read_to_string(arg).with_context(|| format!("cannot read {arg}"))?
    } else {
        arg.to_owned()
    };
    CheckpointKey::from_vkey(&text).context("--key")
}

fn verifier_key(
    config: &Config,
    dir: &Path,
    arg: Option<&str>,
) -> anyhow::Result<(CheckpointKey, &'static str)> {
    if let Some(a) = arg {
        return Ok((read_vkey(a)?, "--key"));
    }
    if let Ok(keys) = load_keys(config) {
        return Ok((
            CheckpointKey::new(ORIGIN, keys.audit_verifying_key())?,
            "key ring",
        ));
    }
    let path = dir.join(VKEY_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no --key, no key ring, and cannot read {}", path.display()))?;
    Ok((CheckpointKey::from_vkey(&text)?, "checkpoint.vkey"))
}

/// Runs `perimeter audit`.
pub async fn run(args: AuditArgs, config: &Config) -> anyhow::Result<()> {
    let dir = checkpoint_dir(config, args.checkpoint_dir.as_deref());
    match args.command {
        AuditCommand::CheckProof { file, key } => check_proof(&file, key.as_deref()),
        AuditCommand::Verify {
            from_checkpoint,
            key,
            page,
        } => {
            let (key, source) = verifier_key(config, &dir, key.as_deref())?;
            let keys = load_keys(config)?;
            let store = open_store(config, &keys).await?;
            let result = verify(&store, &key, &dir, &from_checkpoint, page).await;
            store.close().await;
            let mut out = std::io::stdout().lock();
            match result {
                Ok(report) => {
                    writeln!(
                        out,
                        "PASS: audit trail verified (verifier key {}, from {source})",
                        key.to_vkey()
                    )?;
                    writeln!(out, "{report}")?;
                    Ok(())
                }
                Err(e) => {
                    writeln!(out, "FAIL: {e}")?;
                    bail!("audit verification failed")
                }
            }
        }
        AuditCommand::Prove { seq, checkpoint } => {
            let keys = load_keys(config)?;
            let key = CheckpointKey::new(ORIGIN, keys.audit_verifying_key())?;
            let cp = match checkpoint {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read {}", p.display()))?;
                    Some(SignedCheckpoint::parse(&text).context("--checkpoint")?)
                }
                None => None,
            };
            let store = open_store(config, &keys).await?;
            let bundle = prove(&StoreTrail(store.clone()), &key, seq, cp).await;
            store.close().await;
            let bundle = bundle?;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &bundle)?;
            writeln!(out)?;
            Ok(())
        }
        AuditCommand::Export {
            format,
            patient,
            user,
            action,
            from,
            to,
            out,
        } => {
            let q = AuditQuery {
                patient,
                user,
                action,
                from_millis: from,
                to_millis: to,
            };
            let keys = load_keys(config)?;
            let store = open_store(config, &keys).await?;
            let result = export(&store, &q, format, out.as_deref()).await;
            store.close().await;
            let n = result?;
            eprintln!("exported {n} audit records");
            Ok(())
        }
        AuditCommand::Checkpoint => {
            let keys = load_keys(config)?;
            let store = open_store(config, &keys).await?;
            let cfg = CheckpointerConfig {
                origin: ORIGIN.to_owned(),
                policy: Policy::default(),
                dir: dir.clone(),
                tick: Duration::from_secs(1),
            };
            let mut c = Checkpointer::new(
                StoreTrail(store.clone()),
                keys.audit_signing_key().clone(),
                Arc::new(SystemClock),
                cfg,
            )
            .await?;
            let written = c.tick(true).await;
            store.close().await;
            match written? {
                Some(cp) => println!(
                    "checkpoint written at size {} to the database and {}",
                    cp.checkpoint.size,
                    dir.join(LOG_FILE).display()
                ),
                None => println!("nothing new since the last checkpoint"),
            }
            Ok(())
        }
    }
}

async fn verify(
    store: &Store,
    key: &CheckpointKey,
    dir: &Path,
    extra: &[PathBuf],
    page: u32,
) -> anyhow::Result<String> {
    let mut file_log = read_log(dir)?;
    for p in extra {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        file_log.push('\n');
        file_log.push_str(&text);
        if !file_log.ends_with('\n') {
            file_log.push('\n');
        }
    }
    let r = verify_store(&StoreTrail(store.clone()), key, &file_log, page).await?;
    let mut s = format!(
        "  records: {}\n  checkpoints: {} roots recomputed and matched\n  consistency proofs between successive checkpoints: {}\n  stored tree nodes compared: {}\n  root: {}",
        r.summary.records,
        r.summary.checkpoints,
        r.consistency_checked,
        r.nodes_checked,
        hex_encode(&r.summary.root),
    );
    if !r.checkpoints.missing_from_database.is_empty() {
        s.push_str(&format!(
            "\n  note: checkpoints at sizes {:?} are in the file but not the database",
            r.checkpoints.missing_from_database
        ));
    }
    if !r.checkpoints.missing_from_file.is_empty() {
        s.push_str(&format!(
            "\n  note: checkpoints at sizes {:?} are in the database but not the file",
            r.checkpoints.missing_from_file
        ));
    }
    if let Some(latest) = r.checkpoints.latest()
        && latest.size < r.summary.records
    {
        s.push_str(&format!(
            "\n  note: records {}..{} are not yet covered by a signed checkpoint",
            latest.size, r.summary.records
        ));
    }
    Ok(s)
}

fn hex_encode(h: &Hash32) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_proof(file: &Path, key: Option<&str>) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let bundle: InclusionBundle =
        serde_json::from_str(&text).context("not an inclusion proof (JSON)")?;
    let key = key.map(read_vkey).transpose()?;
    let mut out = std::io::stdout().lock();
    match bundle.check(key.as_ref()) {
        Ok(used) => {
            writeln!(
                out,
                "PASS: record {} is included in the trail of {} records signed by {}",
                bundle.leaf_index,
                bundle.tree_size,
                used.to_vkey()
            )?;
            if key.is_none() {
                writeln!(
                    out,
                    "  warning: checked against the key embedded in the proof; pass --key with the published verifier key"
                )?;
            }
            Ok(())
        }
        Err(e) => {
            writeln!(out, "FAIL: {e}")?;
            bail!("inclusion proof does not verify")
        }
    }
}

async fn export(
    store: &Store,
    q: &AuditQuery,
    format: ExportFormat,
    out: Option<&Path>,
) -> anyhow::Result<u64> {
    // The export is a disclosure: record it first, so that an export that cannot be audited
    // does not happen.
    let now = store.clock().now_millis();
    let event = query_event(
        now,
        Actor::System {
            component: "cli".into(),
        },
        q,
        QueryKind::Export,
        Outcome::Success,
        None,
    );
    store
        .append_audit(&[event])
        .await
        .context("cannot record the export in the audit trail; nothing exported")?;
    let sink: Box<dyn Write> = match out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    const PAGE: u32 = 1000;
    let mut after = None;
    match format {
        ExportFormat::Fhir => {
            let mut w = FhirBundleWriter::new(sink, false, now)?;
            loop {
                let page = store.audit_query(q, after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.seq);
                for r in &page {
                    w.write(r)?;
                }
            }
            Ok(w.finish()?.1)
        }
        ExportFormat::Csv => {
            let mut w = CsvWriter::new(sink)?;
            loop {
                let page = store.audit_query(q, after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.seq);
                for r in &page {
                    w.write(r)?;
                }
            }
            Ok(w.finish()?.1)
        }
    }
}

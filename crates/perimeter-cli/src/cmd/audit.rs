//! `perimeter audit`: verify the trail, prove and check inclusion, export, checkpoint, bench;
//! and the checkpointer `serve` runs ([`ServeCheckpointer`]).
//!
//! `verify`, `prove` and `check-proof` need no key ring: they read the database read-only
//! ([`AuditReader`]) and check against the public verify key (`--verify-key`, else the key
//! ring's when it is here, else `<checkpoint-dir>/checkpoint.vkey`). `export` and `checkpoint`
//! write (the export's own audit record, the signed checkpoint) and need the key ring.

mod bench;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use perimeter_audit::bundle::InclusionBundle;
use perimeter_audit::checkpoint::{CheckpointKey, ORIGIN, SignedCheckpoint};
use perimeter_audit::checkpointer::{
    Checkpointer, CheckpointerConfig, LOG_FILE, VKEY_FILE, read_log,
};
use perimeter_audit::export::{CsvWriter, FhirBundleWriter, FhirOptions};
use perimeter_audit::query::{AuditQuery, QueryKind, query_event};
use perimeter_audit::schedule::Policy;
use perimeter_audit::trail::{OutsideCheckpoints, Report, VerifyOptions, prove, verify_store};
use perimeter_audit::{Action, Actor, Hash32, Outcome};
use perimeter_crypto::KeyRing;
use perimeter_domain::{Clock, PatientId, SharedClock, StaffId, SystemClock};
use perimeter_store::{AuditReader, Store};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{Config, FlagOverride};

/// Options of `perimeter audit`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  perimeter audit verify                               check the whole trail; exit status 0 = pass
  perimeter audit verify --from-checkpoint /mnt/offsite/checkpoints.log
  perimeter audit verify --database-url sqlite:///copy/perimeter.db --verify-key checkpoint.vkey
                                                       an outside auditor: no key ring needed
  perimeter audit verify --database-url postgres://auditor@db/perimeter --verify-key checkpoint.vkey
  perimeter audit prove 1234 > proof.json              inclusion proof of record 1234
  perimeter audit check-proof proof.json --verify-key audit-checkpoints/checkpoint.vkey
  perimeter audit export --format fhir --patient <id> --from 2026-01-01T00:00:00Z > disclosures.json
  perimeter audit checkpoint                           sign a checkpoint now
  perimeter audit bench                                measure appends, verification and proofs")]
pub struct AuditArgs {
    /// Database URL (default: the SQLite file in the data directory).
    /// Environment: PERIMETER_DATABASE_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Directory of checkpoints.log and checkpoint.vkey. Default: <data-dir>/audit-checkpoints
    /// (configuration key audit.checkpoint_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
}

/// `perimeter audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain, every leaf hash, seq continuity, every record's query columns
    /// against its hashed event, stored tree nodes and head, every signed checkpoint (database,
    /// checkpoint file, --from-checkpoint copies), consistency between successive checkpoints,
    /// and that the database and checkpoints.log hold the same checkpoints (the newest may lag
    /// the file by one audit.checkpoint_every_seconds period). Reports the first problem and
    /// the record it is at; exit status 1 when anything is wrong. Reads the database
    /// read-only and needs no key ring.
    Verify {
        /// Another checkpoint log or note to check against (e.g. a copy shipped off the host).
        #[arg(long, value_name = "FILE")]
        from_checkpoint: Vec<PathBuf>,
        /// Public verify key (`name+id+key`, or a file holding it, such as checkpoint.vkey).
        /// Default: the key ring's when it is here, else <checkpoint-dir>/checkpoint.vkey.
        #[arg(long, alias = "key", value_name = "VKEY|FILE")]
        verify_key: Option<String>,
        /// Do not compare the database's checkpoints with <checkpoint-dir>/checkpoints.log
        /// (weaker: a database rewritten by someone holding the signing key goes unnoticed).
        #[arg(long)]
        no_checkpoint_file: bool,
        /// Records per database read.
        #[arg(long, default_value_t = 4096)]
        page: u32,
    },
    /// Print an inclusion proof (JSON) of the record with this seq. Needs no key ring.
    Prove {
        /// The record's seq.
        seq: u64,
        /// Prove against this checkpoint note instead of the smallest stored one covering it.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Public verify key (as for verify).
        #[arg(long, alias = "key", value_name = "VKEY|FILE")]
        verify_key: Option<String>,
    },
    /// Check an inclusion proof offline (no database needed).
    CheckProof {
        /// The proof (JSON from `audit prove`).
        file: PathBuf,
        /// Published verify key (`name+id+key` or a file holding it). Without it only the
        /// proof's own embedded key is used, which proves internal consistency only.
        #[arg(long, alias = "key", value_name = "VKEY|FILE")]
        verify_key: Option<String>,
    },
    /// Export records as FHIR R4 AuditEvents (IHE BALP, a Bundle of type collection) or CSV.
    /// The export is itself audited (a disclosure) before anything is written.
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
    /// Sign and write a checkpoint of the current head now (database and checkpoint file),
    /// and copy to the file any database checkpoint it lacks.
    Checkpoint,
    /// Measure durable appends (SQLite, synchronous=FULL, group commit), verification from the
    /// database, and inclusion proofs in a large trail; prints the figures. Uses scratch
    /// databases, never the configured one.
    Bench(bench::BenchArgs),
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
    Action::from_code(s.trim()).ok_or_else(|| {
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
        if let Some(dir) = &self.checkpoint_dir {
            flags.push(FlagOverride::path(
                "audit.checkpoint_dir",
                "--checkpoint-dir",
                dir,
            ));
        }
        flags
    }
}

/// The checkpoint policy the configuration gives.
pub fn policy(config: &Config) -> Policy {
    Policy {
        every_records: config.audit.checkpoint_every_records,
        every_millis: i64::try_from(config.audit.checkpoint_every_seconds.saturating_mul(1000))
            .unwrap_or(i64::MAX),
    }
}

/// The checkpointer `perimeter serve` runs: a checkpoint every `audit.checkpoint_every_records`
/// records or `audit.checkpoint_every_seconds`, whichever first, into the database and
/// `<audit.checkpoint_dir>/checkpoints.log`, and a final one at shutdown ([`Self::finish`]).
/// It starts once the database is open (serve may still be retrying the database), and keeps
/// retrying (logging why) if the checkpoint directory cannot be prepared.
#[derive(Debug)]
pub struct ServeCheckpointer {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl ServeCheckpointer {
    /// Starts it; `opened` returns the store and key ring once the database is open.
    pub fn spawn(
        config: &Config,
        opened: impl Fn() -> Option<(Store, KeyRing)> + Send + Sync + 'static,
    ) -> Self {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let cfg = CheckpointerConfig {
            origin: ORIGIN.to_owned(),
            policy: policy(config),
            dir: config.checkpoint_dir(),
            tick: Duration::from_secs(1),
        };
        let task = tokio::spawn(async move {
            let clock: SharedClock = Arc::new(SystemClock);
            let checkpointer = loop {
                if let Some((store, keys)) = opened() {
                    match Checkpointer::new(
                        store,
                        keys.audit_signing_key().clone(),
                        clock.clone(),
                        cfg.clone(),
                    )
                    .await
                    {
                        Ok(c) => break c,
                        Err(e) => tracing::error!(
                            error = %e,
                            dir = %cfg.dir.display(),
                            "cannot start the audit checkpointer; retrying"
                        ),
                    }
                }
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            };
            tracing::info!(
                dir = %cfg.dir.display(),
                every_records = cfg.policy.every_records,
                every_ms = cfg.policy.every_millis,
                "audit checkpointer running"
            );
            checkpointer
                .run(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Stops it after a final checkpoint of anything new (waits at most 30 s).
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!("the final audit checkpoint did not finish within 30 s");
            self.task.abort();
        }
    }
}

fn load_keys(config: &Config) -> anyhow::Result<KeyRing> {
    crate::runtime::load_keys(config)?
        .map(|(keys, _)| keys)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no key ring: key file {} not found and PERIMETER_MASTER_KEY is not set",
                config.keys_file().display()
            )
        })
}

async fn open_store(config: &Config, keys: &KeyRing) -> anyhow::Result<Store> {
    let mut opts = crate::runtime::store_options(config)?;
    opts.max_connections = opts.max_connections.clamp(1, 4);
    if let perimeter_store::DatabaseUrl::Sqlite(path) = &opts.url
        && !path.exists()
    {
        bail!("no database at {}", path.display());
    }
    let clock: SharedClock = Arc::new(SystemClock);
    let store = Store::connect(&opts, keys.clone(), clock)
        .await
        .context("cannot open the database")?;
    store
        .require_current_schema()
        .await
        .context("the database schema is not current (run `perimeter migrate`)")?;
    Ok(store)
}

async fn open_reader(config: &Config) -> anyhow::Result<AuditReader> {
    let opts = crate::runtime::store_options(config)?;
    AuditReader::connect(&opts)
        .await
        .context("cannot open the database read-only")
}

/// Reads a verify key given inline or as a file.
fn read_vkey(arg: &str) -> anyhow::Result<CheckpointKey> {
    let text = if Path::new(arg).exists() {
        std::fs::read_to_string(arg).with_context(|| format!("cannot read {arg}"))?
    } else {
        arg.to_owned()
    };
    CheckpointKey::from_vkey(&text)
        .context("--verify-key: expected name+id+key (the content of checkpoint.vkey) or a file")
}

/// The verify key and where it came from: `--verify-key`, else the key ring's, else the
/// checkpoint directory's `checkpoint.vkey`.
fn verifier_key(
    config: &Config,
    dir: &Path,
    arg: Option<&str>,
) -> anyhow::Result<(CheckpointKey, String)> {
    if let Some(a) = arg {
        return Ok((read_vkey(a)?, "--verify-key".to_owned()));
    }
    if let Ok(Some((keys, _))) = crate::runtime::load_keys(config) {
        return Ok((
            CheckpointKey::new(ORIGIN, keys.audit_verifying_key())?,
            "the key ring".to_owned(),
        ));
    }
    let path = dir.join(VKEY_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no --verify-key, no key ring, and cannot read {}",
            path.display()
        )
    })?;
    Ok((CheckpointKey::from_vkey(&text)?, path.display().to_string()))
}

/// The host name (for the FHIR server agent's network address), if the system tells.
pub fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Runs `perimeter audit`.
pub async fn run(args: AuditArgs, config: &Config) -> anyhow::Result<()> {
    let dir = config.checkpoint_dir();
    match args.command {
        AuditCommand::CheckProof { file, verify_key } => check_proof(&file, verify_key.as_deref()),
        AuditCommand::Verify {
            from_checkpoint,
            verify_key,
            no_checkpoint_file,
            page,
        } => {
            let (key, source) = verifier_key(config, &dir, verify_key.as_deref())?;
            let reader = open_reader(config).await?;
            let result = verify(
                &reader,
                &key,
                config,
                &dir,
                &from_checkpoint,
                no_checkpoint_file,
                page,
            )
            .await;
            reader.close().await;
            let mut out = std::io::stdout().lock();
            match result {
                Ok(report) => {
                    writeln!(
                        out,
                        "PASS: audit trail verified (verify key {}, from {source})",
                        key.to_vkey()
                    )?;
                    writeln!(out, "{report}")?;
                    Ok(())
                }
                Err(e) => {
                    writeln!(out, "FAIL: {e:#}")?;
                    bail!("audit verification failed")
                }
            }
        }
        AuditCommand::Prove {
            seq,
            checkpoint,
            verify_key,
        } => {
            let (key, _) = verifier_key(config, &dir, verify_key.as_deref())?;
            let cp = match checkpoint {
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read {}", p.display()))?;
                    Some(SignedCheckpoint::parse(&text).context("--checkpoint")?)
                }
                None => None,
            };
            let reader = open_reader(config).await?;
            let bundle = prove(&reader, &key, seq, cp).await;
            reader.close().await;
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
                policy: policy(config),
                dir: dir.clone(),
                tick: Duration::from_secs(1),
            };
            let written = async {
                let mut c = Checkpointer::new(
                    store.clone(),
                    keys.audit_signing_key().clone(),
                    Arc::new(SystemClock),
                    cfg,
                )
                .await?;
                c.tick(true).await
            }
            .await;
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
        AuditCommand::Bench(args) => bench::run(args).await,
    }
}

async fn verify(
    reader: &AuditReader,
    key: &CheckpointKey,
    config: &Config,
    dir: &Path,
    extra: &[PathBuf],
    no_file: bool,
    page: u32,
) -> anyhow::Result<String> {
    // The checkpointer's own file is compared with the database when it is here; a directory
    // with the verify key but no log means the log is gone, which is compared (and fails) too.
    let log_path = dir.join(LOG_FILE);
    let log = if no_file {
        None
    } else if log_path.exists() || dir.join(VKEY_FILE).exists() {
        Some(read_log(dir)?)
    } else {
        None
    };
    let mut copies = String::new();
    for p in extra {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        copies.push('\n');
        copies.push_str(&text);
        if !copies.ends_with('\n') {
            copies.push('\n');
        }
    }
    let options = VerifyOptions {
        page,
        now_millis: SystemClock.now_millis(),
        grace_millis: policy(config).every_millis,
    };
    let outside = OutsideCheckpoints {
        log: log.as_deref(),
        copies: &copies,
    };
    let r = verify_store(reader, key, outside, options).await?;
    Ok(describe(&r, &log_path, no_file))
}

fn describe(r: &Report, log_path: &Path, no_file: bool) -> String {
    let mut s = format!(
        "  records: {}\n  checkpoints: {} roots recomputed and matched\n  consistency proofs between successive checkpoints: {}\n  stored tree nodes compared: {}\n  root: {}",
        r.summary.records,
        r.summary.checkpoints,
        r.consistency_checked,
        r.nodes_checked,
        hex_encode(&r.summary.root),
    );
    if r.file_compared {
        s.push_str(&format!(
            "\n  checkpoint file {} holds every database checkpoint",
            log_path.display()
        ));
        if let Some(size) = r.pending_in_file {
            s.push_str(&format!(
                " except the newest (size {size}), signed less than one checkpoint period ago"
            ));
        }
    } else if no_file {
        s.push_str(
            "\n  note: --no-checkpoint-file: checked against the database's checkpoints only",
        );
    } else {
        s.push_str(&format!(
            "\n  note: no checkpoint file at {}: checked against the database's checkpoints (and any --from-checkpoint copies) only",
            log_path.display()
        ));
    }
    if let Some(latest) = r.checkpoints.latest()
        && latest.size < r.summary.records
    {
        s.push_str(&format!(
            "\n  note: records {}..{} are not yet covered by a signed checkpoint (protected by the hash chain until the next one)",
            latest.size, r.summary.records
        ));
    }
    s
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
                    "  warning: checked against the key embedded in the proof; pass --verify-key with the published verify key"
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
            let opts = FhirOptions {
                server_name: "perimeter".to_owned(),
                server_address: host_name(),
            };
            let mut w = FhirBundleWriter::with_options(sink, false, now, opts)?;
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

//! The running checkpointer (feature `runtime`): every tick it asks the [`Schedule`] whether a
//! checkpoint is due (N new records or T elapsed, on the injected clock), signs one for the
//! stored head, writes it to the database and appends it to `<dir>/checkpoints.log`
//! (`O_APPEND`, then `fsync`), a directory the administrator can ship elsewhere. It also keeps
//! the verifier key in `<dir>/checkpoint.vkey`.
//!
//! The database is written first, then the file. On every tick the checkpointer also copies to
//! the file every database checkpoint the file lacks: one whose file append failed (disk full,
//! a crash between the two writes) reaches the file at the next tick instead of never, and with
//! several processes on one PostgreSQL database (each with its own directory, each running a
//! checkpointer) every directory ends up holding every checkpoint. The database keeps one
//! checkpoint per size, so a lost race for a size is skipped quietly. `perimeter audit verify`
//! fails when a database checkpoint other than the newest (within one period) is missing from
//! the file ([`crate::verify::check_drift`]).

use std::fmt::Display;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use perimeter_domain::SharedClock;

use crate::checkpoint::{CheckpointError, CheckpointKey, SignedCheckpoint, log_entry};
use crate::merkle::Frontier;
use crate::schedule::{Policy, Schedule, ScheduleError, checkpoint_for_head};

/// The name of the checkpoint log in the checkpoint directory.
pub const LOG_FILE: &str = "checkpoints.log";
/// The name of the verifier key file in the checkpoint directory.
pub const VKEY_FILE: &str = "checkpoint.vkey";

/// What the checkpointer needs from the store.
pub trait CheckpointStore: Send + Sync + 'static {
    /// The store's error.
    type Error: Display + Send;
    /// The current head's frontier (empty when the trail is empty).
    fn head(&self) -> impl Future<Output = Result<Frontier, Self::Error>> + Send;
    /// The latest stored checkpoint's size and time.
    fn latest_checkpoint(
        &self,
    ) -> impl Future<Output = Result<Option<(u64, i64)>, Self::Error>> + Send;
    /// Stores a signed checkpoint; `false` when one for this size exists already (another
    /// process won the race).
    fn insert_checkpoint(
        &self,
        size: u64,
        at_millis: i64,
        signed: &[u8],
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
    /// The stored checkpoint notes with a size of at least `min_size`, by size.
    fn checkpoints_from(
        &self,
        min_size: u64,
    ) -> impl Future<Output = Result<Vec<(u64, Vec<u8>)>, Self::Error>> + Send;
}

/// The checkpointer's settings.
#[derive(Debug, Clone)]
pub struct CheckpointerConfig {
    /// The log origin (also the key name), e.g. `perimeter.example.org/audit`.
    pub origin: String,
    /// When to checkpoint.
    pub policy: Policy,
    /// Directory of `checkpoints.log` and `checkpoint.vkey`.
    pub dir: PathBuf,
    /// How often to look.
    pub tick: Duration,
}

/// The checkpointer failed; the next tick tries again.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointerError {
    /// Reading or writing the store failed.
    #[error("audit store: {0}")]
    Store(String),
    /// Writing the checkpoint directory failed.
    #[error("checkpoint file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// The checkpoint could not be made.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The names are unusable.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The directory's verifier key is not this key.
    #[error("{path} holds a different verifier key than the key ring's")]
    KeyMismatch {
        /// The file.
        path: PathBuf,
    },
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointerError + '_ {
    move |source| CheckpointerError::File {
        path: path.to_owned(),
        source,
    }
}

/// Appends one note to the checkpoint log and fsyncs it (and the directory when the file is
/// new).
pub fn append_to_log(dir: &Path, note: &SignedCheckpoint) -> Result<(), CheckpointerError> {
    let path = dir.join(LOG_FILE);
    let new = !path.exists();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(file_err(&path))?;
    f.write_all(log_entry(note).as_bytes())
        .map_err(file_err(&path))?;
    f.sync_all().map_err(file_err(&path))?;
    if new {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), CheckpointerError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(file_err(dir))
}

/// Reads the checkpoint log (empty when the file does not exist yet).
pub fn read_log(dir: &Path) -> Result<String, CheckpointerError> {
    let path = dir.join(LOG_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(file_err(&path)(e)),
    }
}

/// Writes `<dir>/checkpoint.vkey` if absent; if present it must be this key.
pub fn ensure_vkey(dir: &Path, key: &CheckpointKey) -> Result<(), CheckpointerError> {
    std::fs::create_dir_all(dir).map_err(file_err(dir))?;
    let path = dir.join(VKEY_FILE);
    let want = format!("{}\n", key.to_vkey());
    match std::fs::read_to_string(&path) {
        Ok(have) if have.trim() == want.trim() => Ok(()),
        Ok(_) => Err(CheckpointerError::KeyMismatch { path }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut f = OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&path)
                .map_err(file_err(&path))?;
            f.write_all(want.as_bytes()).map_err(file_err(&path))?;
            f.sync_all().map_err(file_err(&path))?;
            sync_dir(dir)
        }
        Err(e) => Err(file_err(&path)(e)),
    }
}

/// The checkpointer. Build with [`Checkpointer::new`], then [`Checkpointer::run`] it in a task.
pub struct Checkpointer<S> {
    store: S,
    key: SigningKey,
    clock: SharedClock,
    config: CheckpointerConfig,
    schedule: Schedule,
    /// The largest size the checkpoint file holds (database checkpoints above it are copied
    /// to the file on the next tick).
    file_size: Option<u64>,
}

impl<S> std::fmt::Debug for Checkpointer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("origin", &self.config.origin)
            .field("dir", &self.config.dir)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

impl<S: CheckpointStore> Checkpointer<S> {
    /// Prepares the directory (verifier key file) and resumes the schedule from the latest
    /// stored checkpoint.
    pub async fn new(
        store: S,
        key: SigningKey,
        clock: SharedClock,
        config: CheckpointerConfig,
    ) -> Result<Self, CheckpointerError> {
        let ck = CheckpointKey::new(&config.origin, key.verifying_key())?;
        ensure_vkey(&config.dir, &ck)?;
        let (size, at) = store
            .latest_checkpoint()
            .await
            .map_err(|e| CheckpointerError::Store(e.to_string()))?
            .unwrap_or((0, clock.now_millis()));
        let schedule = Schedule::new(config.policy, size, at);
        let log = read_log(&config.dir)?;
        let file_size = crate::checkpoint::parse_log(&log)
            .map_err(CheckpointerError::Checkpoint)?
            .iter()
            .map(|c| c.checkpoint.size)
            .max();
        Ok(Self {
            store,
            key,
            clock,
            config,
            schedule,
            file_size,
        })
    }

    /// Appends to the checkpoint file every database checkpoint above the file's largest
    /// size; returns how many were appended.
    pub async fn reconcile(&mut self) -> Result<usize, CheckpointerError> {
        let from = self.file_size.map_or(0, |s| s.saturating_add(1));
        let pending = self
            .store
            .checkpoints_from(from)
            .await
            .map_err(|e| CheckpointerError::Store(e.to_string()))?;
        let mut appended = 0;
        for (size, bytes) in pending {
            if self.file_size.is_some_and(|f| size <= f) {
                continue;
            }
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| CheckpointError::Malformed("stored checkpoint is not UTF-8"))?;
            let note = SignedCheckpoint::parse(text)?;
            append_to_log(&self.config.dir, &note)?;
            self.file_size = Some(size);
            appended += 1;
        }
        Ok(appended)
    }

    /// Writes a checkpoint if one is due (or `force` and there are new records); returns it.
    pub async fn tick(
        &mut self,
        force: bool,
    ) -> Result<Option<SignedCheckpoint>, CheckpointerError> {
        let frontier = self
            .store
            .head()
            .await
            .map_err(|e| CheckpointerError::Store(e.to_string()))?;
        let now = self.clock.now_millis();
        let size = frontier.size();
        let due = self.schedule.due(size, now) || (force && size > self.schedule.last_size());
        if !due {
            // Checkpoints that reached the database but not the file (a failed append, or
            // another process's) are copied now.
            self.reconcile().await?;
            return Ok(None);
        }
        let note = checkpoint_for_head(&self.config.origin, &frontier.to_bytes(), now, &self.key)?;
        // Mark it handled first: a lost race for this size must not be retried forever.
        self.schedule.written(size, now);
        let inserted = self
            .store
            .insert_checkpoint(size, now, note.text().as_bytes())
            .await
            .map_err(|e| CheckpointerError::Store(e.to_string()))?;
        // The file gets it (or the race winner's note for this size) from the database.
        self.reconcile().await?;
        Ok(inserted.then_some(note))
    }

    /// Ticks until `shutdown` completes, then writes a final checkpoint for anything new.
    /// Failures are logged (no PHI: sizes, paths and store messages only) and retried.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        let mut interval = tokio::time::interval(self.config.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = interval.tick() => {
                    if let Err(e) = self.tick(false).await {
                        tracing::warn!(error = %e, "audit checkpoint failed; will retry");
                    }
                }
            }
        }
        if let Err(e) = self.tick(true).await {
            tracing::warn!(error = %e, "final audit checkpoint failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Checkpoint, parse_log};
    use perimeter_domain::{Clock, ManualClock};
    use std::sync::{Arc, Mutex};

    type Stored = Vec<(u64, i64, Vec<u8>)>;

    #[derive(Clone, Default)]
    struct Mem {
        frontier: Arc<Mutex<Frontier>>,
        cps: Arc<Mutex<Stored>>,
    }

    impl CheckpointStore for Mem {
        type Error = String;
        async fn head(&self) -> Result<Frontier, String> {
            Ok(self.frontier.lock().unwrap().clone())
        }
        async fn latest_checkpoint(&self) -> Result<Option<(u64, i64)>, String> {
            Ok(self.cps.lock().unwrap().last().map(|c| (c.0, c.1)))
        }
        async fn insert_checkpoint(&self, size: u64, at: i64, s: &[u8]) -> Result<bool, String> {
            let mut cps = self.cps.lock().unwrap();
            if cps.iter().any(|c| c.0 == size) {
                return Ok(false);
            }
            cps.push((size, at, s.to_vec()));
            cps.sort_by_key(|c| c.0);
            Ok(true)
        }
        async fn checkpoints_from(&self, min: u64) -> Result<Vec<(u64, Vec<u8>)>, String> {
            Ok(self
                .cps
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.0 >= min)
                .map(|c| (c.0, c.2.clone()))
                .collect())
        }
    }

    #[tokio::test]
    async fn writes_after_n_records_or_t_and_to_both_places() {
        let dir = tempfile::tempdir().unwrap();
        let mem = Mem::default();
        let clock = ManualClock::at_epoch_2026();
        let key = SigningKey::from_bytes(&[3; 32]);
        let cfg = CheckpointerConfig {
            origin: "perimeter.test/audit".into(),
            policy: Policy {
                every_records: 5,
                every_millis: 10_000,
            },
            dir: dir.path().to_owned(),
            tick: Duration::from_millis(10),
        };
        let mut c = Checkpointer::new(mem.clone(), key.clone(), Arc::new(clock.clone()), cfg)
            .await
            .unwrap();
        let push = |n: u8| {
            let mut f = mem.frontier.lock().unwrap();
            for i in 0..n {
                f.push([i; 32]);
            }
        };
        assert!(c.tick(false).await.unwrap().is_none(), "empty trail");
        push(4);
        assert!(c.tick(false).await.unwrap().is_none());
        push(1);
        assert_eq!(c.tick(false).await.unwrap().unwrap().checkpoint.size, 5);
        push(1);
        assert!(c.tick(false).await.unwrap().is_none());
        clock.advance(time::Duration::seconds(10));
        let cp = c.tick(false).await.unwrap().unwrap();
        assert_eq!(cp.checkpoint.size, 6);
        assert_eq!(cp.checkpoint.root, mem.frontier.lock().unwrap().root());
        assert_eq!(cp.checkpoint.at_millis, clock.now_millis());

        let log = parse_log(&read_log(dir.path()).unwrap()).unwrap();
        assert_eq!(log.len(), 2);
        let db = mem.cps.lock().unwrap().clone();
        assert_eq!(db.len(), 2);
        assert_eq!(log[1].text().as_bytes(), db[1].2.as_slice());
        let vkey = std::fs::read_to_string(dir.path().join(VKEY_FILE)).unwrap();
        let ck = CheckpointKey::from_vkey(&vkey).unwrap();
        for n in &log {
            n.verify(&ck).unwrap();
        }
        // Resuming picks up from the stored checkpoint; another key for the same directory is
        // refused.
        let cfg2 = CheckpointerConfig {
            origin: "perimeter.test/audit".into(),
            policy: Policy::default(),
            dir: dir.path().to_owned(),
            tick: Duration::from_millis(10),
        };
        let other = SigningKey::from_bytes(&[4; 32]);
        assert!(matches!(
            Checkpointer::new(mem.clone(), other, Arc::new(clock.clone()), cfg2.clone()).await,
            Err(CheckpointerError::KeyMismatch { .. })
        ));
        let mut again = Checkpointer::new(mem.clone(), key, Arc::new(clock.clone()), cfg2)
            .await
            .unwrap();
        assert!(again.tick(false).await.unwrap().is_none());
        push(1);
        assert_eq!(again.tick(true).await.unwrap().unwrap().checkpoint.size, 7);
    }

    #[tokio::test]
    async fn run_stops_on_shutdown_with_a_final_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mem = Mem::default();
        mem.frontier.lock().unwrap().push([1; 32]);
        let clock = ManualClock::at_epoch_2026();
        let cfg = CheckpointerConfig {
            origin: "perimeter.test/audit".into(),
            policy: Policy::default(),
            dir: dir.path().to_owned(),
            tick: Duration::from_millis(5),
        };
        let c = Checkpointer::new(
            mem.clone(),
            SigningKey::from_bytes(&[3; 32]),
            Arc::new(clock),
            cfg,
        )
        .await
        .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(c.run(async {
            let _ = rx.await;
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(()).unwrap();
        task.await.unwrap();
        assert_eq!(mem.cps.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_checkpoint_that_missed_the_file_reaches_it_on_the_next_tick() {
        let dir = tempfile::tempdir().unwrap();
        let mem = Mem::default();
        let clock = ManualClock::at_epoch_2026();
        let key = SigningKey::from_bytes(&[3; 32]);
        let cfg = CheckpointerConfig {
            origin: "perimeter.test/audit".into(),
            policy: Policy {
                every_records: 2,
                every_millis: 60_000,
            },
            dir: dir.path().to_owned(),
            tick: Duration::from_millis(10),
        };
        let mut c = Checkpointer::new(mem.clone(), key.clone(), Arc::new(clock.clone()), cfg)
            .await
            .unwrap();
        mem.frontier.lock().unwrap().push([1; 32]);
        mem.frontier.lock().unwrap().push([2; 32]);
        // Make the file unwritable: the database gets the checkpoint, the file does not.
        let log = dir.path().join(LOG_FILE);
        std::fs::create_dir(&log).unwrap();
        assert!(matches!(
            c.tick(false).await,
            Err(CheckpointerError::File { .. })
        ));
        assert_eq!(mem.cps.lock().unwrap().len(), 1);
        // Nothing new is due, but the next tick copies the missing checkpoint to the file.
        std::fs::remove_dir(&log).unwrap();
        assert!(c.tick(false).await.unwrap().is_none());
        let notes = parse_log(&read_log(dir.path()).unwrap()).unwrap();
        assert_eq!(notes.len(), 1);
        assert_eq!(
            notes[0].text().as_bytes(),
            mem.cps.lock().unwrap()[0].2.as_slice()
        );

        // Another process's checkpoint (same database, own directory) is copied too, once.
        let other = Checkpoint {
            origin: "perimeter.test/audit".into(),
            size: 3,
            root: [9; 32],
            at_millis: 1,
        }
        .sign("perimeter.test/audit", &key)
        .unwrap();
        mem.cps
            .lock()
            .unwrap()
            .push((3, 1, other.text().as_bytes().to_vec()));
        assert_eq!(c.reconcile().await.unwrap(), 1);
        assert_eq!(c.reconcile().await.unwrap(), 0);
        let notes = parse_log(&read_log(dir.path()).unwrap()).unwrap();
        assert_eq!(
            notes.iter().map(|n| n.checkpoint.size).collect::<Vec<_>>(),
            vec![2, 3]
        );
        // A restarted checkpointer resumes from the file and copies nothing twice.
        let cfg = CheckpointerConfig {
            origin: "perimeter.test/audit".into(),
            policy: Policy::default(),
            dir: dir.path().to_owned(),
            tick: Duration::from_millis(10),
        };
        let mut again = Checkpointer::new(mem.clone(), key, Arc::new(clock), cfg)
            .await
            .unwrap();
        assert_eq!(again.reconcile().await.unwrap(), 0);
    }
}

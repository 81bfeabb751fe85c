//! `perimeter audit`, run as a process against real SQLite and PostgreSQL databases: verify's
//! exit status, tampering found at its record, prove and check-proof, the export audited and
//! valid FHIR R4, --from-checkpoint, and --verify-key for an auditor without the key ring.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use perimeter_audit::query::AuditQuery;
use perimeter_audit::{Action, Actor, AuditEvent, ObjectRef, Outcome};
use perimeter_crypto::KeyRing;
use perimeter_domain::{Role, StaffId, SystemClock};
use perimeter_store::{AccessContext, DatabaseUrl, PatientData, Store, StoreOptions};
use sqlx::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

fn pg_admin() -> String {
    std::env::var("PERIMETER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn skip_postgres() -> bool {
    std::env::var("PERIMETER_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1")
}

/// One installation: a data directory, and the database URL (SQLite in it, or PostgreSQL).
struct Install {
    dir: tempfile::TempDir,
    url: String,
    pg_name: Option<String>,
}

impl Install {
    async fn new(postgres: bool) -> Option<Install> {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let (url, pg_name) = if postgres {
            if skip_postgres() {
                return None;
            }
            let admin = pg_admin();
            let name = format!(
                "perimeter_cli_audit_{}_{}",
                std::process::id(),
                &uuid_like()[..8]
            );
            let mut c = sqlx::AnyConnection::connect(&admin).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut c)
                .await
                .unwrap();
            c.close().await.unwrap();
            let (base, _) = admin.rsplit_once('/').unwrap();
            (format!("{base}/{name}"), Some(name))
        } else {
            (
                format!(
                    "sqlite://{}",
                    dir.path().join("data/perimeter.db").display()
                ),
                None,
            )
        };
        let i = Install { dir, url, pg_name };
        let out = i.run(&["init"]);
        assert!(out.status.success(), "init: {}", stderr(&out));
        Some(i)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .current_dir(self.dir.path())
            .env("PERIMETER_DATABASE_URL", &self.url)
            .arg("--data-dir")
            .arg(self.data())
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.data().join("audit-checkpoints")
    }

    async fn store(&self) -> Store {
        let keys = KeyRing::load_file(&self.data().join("keys.json")).unwrap();
        let store = Store::connect(
            &StoreOptions::new(DatabaseUrl::parse(&self.url).unwrap()),
            keys,
            Arc::new(SystemClock),
        )
        .await
        .unwrap();
        store.require_current_schema().await.unwrap();
        store
    }

    /// Accesses and security events, as a running server would record them.
    async fn populate(&self) {
        let store = self.store().await;
        let sys = AccessContext::system("test");
        let practice = store.create_practice(&sys, "Clinic").await.unwrap();
        // Perimeter's own intake registers them (a user would need a real account, one more
        // record than the sizes below count).
        let intake = AccessContext::system("intake");
        for i in 0..5 {
            let pid = store
                .create_patient(
                    &intake,
                    practice,
                    &PatientData {
                        given_name: format!("Given{i}"),
                        family_name: "Family".into(),
                        ..PatientData::default()
                    },
                )
                .await
                .unwrap();
            store
                .get_patient(&AccessContext::system("intake"), pid)
                .await
                .unwrap();
        }
        let logins: Vec<AuditEvent> = (0..10).map(login).collect();
        store.append_audit(&logins).await.unwrap();
        store.close().await;
    }

    async fn raw(&self) -> sqlx::AnyConnection {
        sqlx::AnyConnection::connect(&self.url).await.unwrap()
    }

    /// Tampers as an attacker with database access would: guards dropped first.
    async fn tamper(&self, sql: &str) {
        let drop = if self.pg_name.is_some() {
            "DROP TRIGGER audit_log_append_only ON audit_log;"
        } else {
            "DROP TRIGGER IF EXISTS audit_log_no_update;"
        };
        let mut c = self.raw().await;
        sqlx::raw_sql(drop).execute(&mut c).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }

    async fn done(self) {
        if let Some(name) = &self.pg_name {
            let mut c = sqlx::AnyConnection::connect(&pg_admin()).await.unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut c)
                .await;
        }
    }
}

fn uuid_like() -> String {
    format!(
        "{:032x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
    .chars()
    .rev()
    .collect()
}

fn login(i: i64) -> AuditEvent {
    AuditEvent {
        at_millis: 1_767_225_600_000 + i,
        actor: Actor::User {
            user: StaffId::new(),
            roles: vec![Role::Nurse],
            session: None,
        },
        action: Action::Login,
        object: ObjectRef {
            kind: "session".into(),
            id: None,
        },
        patient: None,
        categories: vec![],
        purpose: None,
        outcome: Outcome::Success,
        detail: None,
        client_addr: Some("127.0.0.1".into()),
        user_agent: None,
        request_id: None,
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn pass(o: &Output) -> String {
    assert!(
        o.status.success(),
        "expected success:\n{}\n{}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

fn fail(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1:\n{}\n{}",
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

async fn the_whole_cycle(postgres: bool) {
    let Some(i) = Install::new(postgres).await else {
        return;
    };
    i.populate().await;

    // An empty checkpoint directory: verify passes against the database alone, and says so.
    let out = pass(&i.run(&["audit", "verify"]));
    assert!(out.starts_with("PASS"), "{out}");
    assert!(out.contains("no checkpoint file"), "{out}");

    // A checkpoint, then verify compares the database with the file.
    let out = pass(&i.run(&["audit", "checkpoint"]));
    assert!(out.contains("checkpoint written at size 21"), "{out}");
    assert!(i.checkpoint_dir().join("checkpoints.log").exists());
    let vkey = i.checkpoint_dir().join("checkpoint.vkey");
    let out = pass(&i.run(&["audit", "verify"]));
    assert!(out.contains("records: 21"), "{out}");
    assert!(out.contains("holds every database checkpoint"), "{out}");
    assert!(out.contains("from the key ring"), "{out}");

    // prove + check-proof round trip, against the published key; a changed proof fails.
    let proof = pass(&i.run(&["audit", "prove", "7"]));
    let proof_file = i.dir.path().join("proof.json");
    write(&proof_file, &proof);
    let out = pass(&i.run(&[
        "audit",
        "check-proof",
        proof_file.to_str().unwrap(),
        "--verify-key",
        vkey.to_str().unwrap(),
    ]));
    assert!(
        out.contains("PASS: record 7 is included in the trail of 21 records"),
        "{out}"
    );
    let mut forged: serde_json::Value = serde_json::from_str(&proof).unwrap();
    forged["leaf_index"] = serde_json::json!(8);
    write(&proof_file, &forged.to_string());
    let out = fail(&i.run(&[
        "audit",
        "check-proof",
        proof_file.to_str().unwrap(),
        "--verify-key",
        vkey.to_str().unwrap(),
    ]));
    assert!(out.starts_with("FAIL"), "{out}");
    // A record not yet covered by a checkpoint cannot be proved yet.
    let out = i.run(&["audit", "prove", "21"]);
    assert!(!out.status.success());

    // --from-checkpoint: a copy shipped elsewhere is checked too; one signed by another key
    // is refused.
    let offsite = i.dir.path().join("offsite.log");
    std::fs::copy(i.checkpoint_dir().join("checkpoints.log"), &offsite).unwrap();
    pass(&i.run(&[
        "audit",
        "verify",
        "--from-checkpoint",
        offsite.to_str().unwrap(),
    ]));
    let other = KeyRing::generate().unwrap();
    let head = i.store().await.audit_head().await.unwrap().unwrap();
    let forged = perimeter_audit::schedule::checkpoint_for_head(
        perimeter_audit::checkpoint::ORIGIN,
        &head.frontier.to_bytes(),
        1,
        other.audit_signing_key(),
    )
    .unwrap();
    let forged_file = i.dir.path().join("forged.log");
    write(&forged_file, forged.text());
    let out = fail(&i.run(&[
        "audit",
        "verify",
        "--from-checkpoint",
        forged_file.to_str().unwrap(),
    ]));
    assert!(
        out.contains("in the checkpoint file: checkpoint has no signature by key"),
        "{out}"
    );

    // The export: audited before it is written, valid FHIR R4, and the same rows as CSV.
    let fhir_file = i.dir.path().join("export.json");
    let out = i.run(&[
        "audit",
        "export",
        "--format",
        "fhir",
        "--out",
        fhir_file.to_str().unwrap(),
    ]);
    pass(&out);
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&fhir_file).unwrap()).unwrap();
    assert_eq!(
        perimeter_audit::fhir_check::problems(&bundle),
        Vec::<String>::new()
    );
    assert_eq!(bundle["type"], "collection");
    assert!(bundle.get("total").is_none());
    // 21 records plus the export's own record, which is written first.
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 22);
    let store = i.store().await;
    let exports = store
        .audit_query(
            &AuditQuery {
                action: Some(Action::Disclose),
                ..AuditQuery::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(exports.len(), 1);
    let e = AuditEvent::from_canonical_bytes(&exports[0].event).unwrap();
    assert_eq!(e.detail.as_deref(), Some("audit_export"));
    store.close().await;
    let csv = pass(&i.run(&["audit", "export", "--format", "csv", "--action", "login"]));
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("seq,recorded,"));
    assert_eq!(lines.len(), 11, "header and the ten log-ins");
    let bad = i.run(&["audit", "export", "--format", "csv", "--action", "peek"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("expected one of"));

    // An outside auditor: no key ring, only the database and the public verify key.
    let auditor = tempfile::tempdir().unwrap();
    let key_copy = auditor.path().join("published.vkey");
    std::fs::copy(&vkey, &key_copy).unwrap();
    let log_copy = auditor.path().join("checkpoints.log");
    std::fs::copy(i.checkpoint_dir().join("checkpoints.log"), &log_copy).unwrap();
    let mut db_url = i.url.clone();
    if !postgres {
        // A copy of the database file, as an auditor would be handed.
        let copy = auditor.path().join("copy.db");
        std::fs::copy(i.data().join("perimeter.db"), &copy).unwrap();
        for suffix in ["-wal", "-shm"] {
            let from = i.data().join(format!("perimeter.db{suffix}"));
            if from.exists() {
                std::fs::copy(&from, auditor.path().join(format!("copy.db{suffix}"))).unwrap();
            }
        }
        db_url = format!("sqlite://{}", copy.display());
    }
    let out = Command::new(BIN)
        .env_clear()
        .current_dir(auditor.path())
        .args([
            "audit",
            "verify",
            "--database-url",
            &db_url,
            "--verify-key",
            key_copy.to_str().unwrap(),
            "--checkpoint-dir",
            auditor.path().to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = pass(&out);
    assert!(text.contains("from --verify-key"), "{text}");
    assert!(text.contains("records: 23"), "{text}");
    assert!(!auditor.path().join("keys.json").exists());
    // Without any key at all, it says what is missing.
    let out = Command::new(BIN)
        .env_clear()
        .current_dir(auditor.path())
        .args([
            "audit",
            "verify",
            "--database-url",
            &db_url,
            "--checkpoint-dir",
            "/nonexistent",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no --verify-key, no key ring"),
        "{}",
        stderr(&out)
    );

    // Tampering: a changed field fails, naming the record; so does a nulled patient id.
    i.tamper("UPDATE audit_log SET at_millis = at_millis + 1 WHERE seq = 7")
        .await;
    let out = fail(&i.run(&["audit", "verify"]));
    assert!(
        out.contains("FAIL: record 7: content does not match its stored leaf hash"),
        "{out}"
    );
    assert!(stderr(&i.run(&["audit", "verify"])).contains("audit verification failed"));
    i.done().await;
}

async fn a_nulled_patient_id_is_found(postgres: bool) {
    let Some(i) = Install::new(postgres).await else {
        return;
    };
    i.populate().await;
    pass(&i.run(&["audit", "checkpoint"]));
    pass(&i.run(&["audit", "verify"]));
    // Record 2 is the read of the first patient (record 0 created the practice, 1 the patient).
    i.tamper("UPDATE audit_log SET patient_id = NULL WHERE seq = 2")
        .await;
    let out = fail(&i.run(&["audit", "verify"]));
    assert!(
        out.contains("FAIL: record 2: index column patient_id does not match the hashed event"),
        "{out}"
    );
    i.done().await;
}

async fn a_checkpoint_missing_from_the_file_fails(postgres: bool) {
    let Some(i) = Install::new(postgres).await else {
        return;
    };
    i.populate().await;
    pass(&i.run(&["audit", "checkpoint"]));
    let store = i.store().await;
    store.append_audit(&[login(99)]).await.unwrap();
    store.close().await;
    pass(&i.run(&["audit", "checkpoint"]));
    // The file loses its first checkpoint (edited, or a failed write long ago).
    let log_path = i.checkpoint_dir().join("checkpoints.log");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let notes = perimeter_audit::checkpoint::parse_log(&log).unwrap();
    assert_eq!(notes.len(), 2);
    write(
        &log_path,
        &perimeter_audit::checkpoint::log_entry(&notes[1]),
    );
    let out = fail(&i.run(&["audit", "verify"]));
    assert!(
        out.contains(
            "FAIL: checkpoint at size 21 is in the database but not in the checkpoint file"
        ),
        "{out}"
    );
    // The newest missing is tolerated within one period, and the next checkpoint run copies
    // what the file lacks.
    write(
        &log_path,
        &perimeter_audit::checkpoint::log_entry(&notes[0]),
    );
    let out = pass(&i.run(&["audit", "verify"]));
    assert!(out.contains("except the newest (size 22)"), "{out}");
    pass(&i.run(&["audit", "checkpoint"]));
    let out = pass(&i.run(&["audit", "verify"]));
    assert!(!out.contains("except the newest"), "{out}");
    i.done().await;
}

/// `perimeter serve` runs the checkpointer on the configured schedule and writes a last
/// checkpoint at graceful shutdown.
async fn serve_checkpoints_on_schedule_and_at_shutdown(postgres: bool) {
    use std::io::{BufRead, BufReader};
    let Some(i) = Install::new(postgres).await else {
        return;
    };
    i.populate().await;
    let mut child = i
        .cmd(&["serve", "--listen", "127.0.0.1:0"])
        .env("PERIMETER_AUDIT_CHECKPOINT_EVERY_RECORDS", "5")
        .env("PERIMETER_AUDIT_CHECKPOINT_EVERY_SECONDS", "3600")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
        if line.starts_with("perimeter listening on") {
            break;
        }
    }
    let log = i.checkpoint_dir().join("checkpoints.log");
    let sizes = || -> Vec<u64> {
        std::fs::read_to_string(&log)
            .ok()
            .and_then(|t| perimeter_audit::checkpoint::parse_log(&t).ok())
            .map(|n| n.iter().map(|c| c.checkpoint.size).collect())
            .unwrap_or_default()
    };
    // 21 records are more than 5 since the last checkpoint: one within a tick or two.
    let mut waited = 0;
    while sizes().is_empty() {
        assert!(waited < 100, "no checkpoint written while serving");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(sizes(), vec![21]);
    // Two more records (fewer than 5): not due, but the shutdown checkpoint covers them.
    let store = i.store().await;
    store.append_audit(&[login(1), login(2)]).await.unwrap();
    store.close().await;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let mut exited = None;
    for _ in 0..300 {
        if let Some(s) = child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let exited = exited.expect("serve exits after SIGTERM");
    assert!(exited.success(), "{exited}");
    assert_eq!(sizes(), vec![21, 23]);
    let out = pass(&i.run(&["audit", "verify"]));
    assert!(out.contains("checkpoints: 2 roots recomputed"), "{out}");
    i.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_serve_checkpoints_on_schedule_and_at_shutdown() {
    serve_checkpoints_on_schedule_and_at_shutdown(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_serve_checkpoints_on_schedule_and_at_shutdown() {
    serve_checkpoints_on_schedule_and_at_shutdown(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_verify_prove_export_and_tamper() {
    the_whole_cycle(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verify_prove_export_and_tamper() {
    the_whole_cycle(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_nulled_patient_id_fails_verification() {
    a_nulled_patient_id_is_found(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_nulled_patient_id_fails_verification() {
    a_nulled_patient_id_is_found(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoint_drift_between_database_and_file() {
    a_checkpoint_missing_from_the_file_fails(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_checkpoint_drift_between_database_and_file() {
    a_checkpoint_missing_from_the_file_fails(true).await;
}

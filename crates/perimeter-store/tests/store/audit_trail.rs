//! The audit trail: chain, Merkle nodes, group commit, concurrency, checkpoints, queries and
//! append-only enforcement.

use perimeter_audit::merkle::root_of;
use perimeter_audit::query::AuditQuery;
use perimeter_audit::{Action, Actor, AuditEvent, GENESIS_HASH, Hash32, ObjectRef, Outcome};
use perimeter_crypto::KeyRing;
use perimeter_domain::{PatientId, StaffId};
use perimeter_store::{AccessContext, PatientData, Store};

use crate::common::TestDb;

fn login(user: StaffId, at: i64) -> AuditEvent {
    AuditEvent {
        at_millis: at,
        actor: Actor::User {
            user,
            roles: vec![],
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

async fn all_records(store: &Store) -> Vec<perimeter_audit::AuditRecord> {
    let mut out = Vec::new();
    loop {
        let page = store.audit_records(out.len() as u64, 7).await.unwrap();
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

async fn appends_chain_and_build_the_merkle_tree(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    assert!(store.audit_head().await.unwrap().is_none());
    let alice = StaffId::new();
    let bob = StaffId::new();
    let first = store
        .append_audit(&[login(alice, 1), login(bob, 2), login(alice, 3)])
        .await
        .unwrap();
    assert_eq!(first, vec![0, 1, 2]);
    for i in 0..18 {
        db.clock.advance(time::Duration::seconds(1));
        store.append_audit(&[login(bob, 10 + i)]).await.unwrap();
    }
    let records = all_records(&store).await;
    assert_eq!(records.len(), 21);
    let mut prev = GENESIS_HASH;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(r.prev_hash, prev);
        r.check().unwrap();
        prev = r.leaf_hash;
    }
    let head = store.audit_head().await.unwrap().unwrap();
    assert_eq!(head.size, 21);
    assert_eq!(head.last_leaf_hash, prev);
    let leaves: Vec<Hash32> = records.iter().map(|r| r.leaf_hash).collect();
    assert_eq!(head.frontier.root(), root_of(&leaves));
    // Interior nodes are the roots of their perfect subtrees.
    for level in 0..5u32 {
        let width = 1usize << level;
        for index in 0..(21 / width) {
            let node = store
                .audit_node(level, index as u64)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(node, root_of(&leaves[index * width..(index + 1) * width]));
        }
        assert!(
            store
                .audit_node(level, (21 / width) as u64)
                .await
                .unwrap()
                .is_none()
        );
    }
    // Queries.
    let by_alice = store
        .audit_query(
            &AuditQuery {
                user: Some(alice),
                ..AuditQuery::default()
            },
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(
        by_alice.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![0, 2]
    );
    let after = store
        .audit_query(
            &AuditQuery {
                user: Some(bob),
                from_millis: Some(records[5].at_millis),
                ..AuditQuery::default()
            },
            Some(10),
            3,
        )
        .await
        .unwrap();
    assert_eq!(
        after.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![11, 12, 13]
    );
    let logins = store
        .audit_query(
            &AuditQuery {
                action: Some(Action::Login),
                to_millis: Some(records[0].at_millis + 1),
                ..AuditQuery::default()
            },
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(logins.len(), 3);
    // Checkpoints.
    store
        .insert_checkpoint(21, 99, b"signed note")
        .await
        .unwrap();
    assert!(store.insert_checkpoint(21, 100, b"again").await.is_err());
    let cps = store.checkpoints().await.unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].tree_size, 21);
    assert_eq!(cps[0].signed, b"signed note");
}

async fn audit_rows_cannot_be_changed_or_deleted(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    store
        .append_audit(&[login(StaffId::new(), 1)])
        .await
        .unwrap();
    let mut raw = db.raw().await;
    assert!(
        sqlx::query("UPDATE audit_log SET at_millis = 5")
            .execute(&mut raw)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM audit_log")
            .execute(&mut raw)
            .await
            .is_err()
    );
    assert_eq!(all_records(&store).await.len(), 1);
}

async fn concurrent_writers_from_two_pools_get_one_gapless_sequence(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let a = db.open(&keys).await;
    // A second pool stands in for a second `perimeter serve` process.
    let b = db.open(&keys).await;
    let sys = AccessContext::system("test");
    let practice = a.create_practice(&sys, "Clinic").await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..6 {
        let store = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let sys = AccessContext::system("test");
            let mut ids: Vec<PatientId> = Vec::new();
            for i in 0..5 {
                let id = store
                    .create_patient(
                        &sys,
                        practice,
                        &PatientData {
                            given_name: format!("T{t}"),
                            family_name: format!("N{i}"),
                            ..PatientData::default()
                        },
                    )
                    .await
                    .unwrap();
                store.get_patient(&sys, id).await.unwrap();
                ids.push(id);
            }
            ids
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap().len();
    }
    assert_eq!(total, 30);
    let records = all_records(&a).await;
    // One practice creation, then a create and a read per patient.
    assert_eq!(records.len(), 1 + 60);
    let mut prev = GENESIS_HASH;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
        assert_eq!(r.prev_hash, prev);
        prev = r.leaf_hash;
    }
    let head = b.audit_head().await.unwrap().unwrap();
    let leaves: Vec<Hash32> = records.iter().map(|r| r.leaf_hash).collect();
    assert_eq!(head.frontier.root(), root_of(&leaves));
}

crate::both_backends!(
    appends_chain_and_build_the_merkle_tree,
    audit_rows_cannot_be_changed_or_deleted,
    concurrent_writers_from_two_pools_get_one_gapless_sequence,
);

//! Key verification, rotation, retirement and crypto-shredding.

use std::ops::ControlFlow;

use perimeter_audit::query::AuditQuery;
use perimeter_crypto::KeyRing;
use perimeter_domain::{DataCategory, PatientId, PracticeId};
use perimeter_store::{
    AccessContext, Channel, Direction, NewMessage, PatientData, Store, StoreError,
};
use sqlx::Row;

use crate::common::TestDb;

fn data(i: usize) -> PatientData {
    PatientData {
        given_name: format!("Given{i}"),
        family_name: format!("Family{i}"),
        phone: Some(format!("202555{:04}", 1000 + i)),
        email: Some(format!("p{i}@example.org")),
        ..PatientData::default()
    }
}

async fn populate(store: &Store, n: usize) -> (PracticeId, Vec<PatientId>) {
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Clinic").await.unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let pid = store
            .create_patient(&sys, practice, &data(i))
            .await
            .unwrap();
        let cid = store
            .create_conversation(&sys, pid, Channel::Sms, Some("subject"))
            .await
            .unwrap();
        store
            .add_message(
                &sys,
                cid,
                &NewMessage {
                    direction: Direction::Inbound,
                    author: None,
                    category: DataCategory::AdministrativeMessage,
                    body: format!("hello {i}"),
                },
            )
            .await
            .unwrap();
        ids.push(pid);
    }
    (practice, ids)
}

async fn key_ring_count(db: &TestDb) -> i64 {
    let mut raw = db.raw().await;
    sqlx::query("SELECT COUNT(*) FROM key_ring")
        .fetch_one(&mut raw)
        .await
        .unwrap()
        .get(0)
}

async fn a_foreign_key_ring_is_refused_and_changes_nothing(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    populate(&store, 2).await;
    store.close().await;
    let before = key_ring_count(&db).await;
    let other = KeyRing::generate().unwrap();
    let wrong = Store::connect(&db.options(), other, db.shared_clock())
        .await
        .unwrap();
    let err = wrong.verify_keys().await.unwrap_err();
    assert!(matches!(err, StoreError::KeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("key file"), "{err}");
    assert_eq!(key_ring_count(&db).await, before);
}

async fn rotation_rewraps_in_resumable_batches_and_retirement_follows(db: TestDb) {
    let v1 = KeyRing::generate().unwrap();
    let store = db.open(&v1).await;
    let sys = AccessContext::system("test");
    let (_, ids) = populate(&store, 7).await;

    let v2 = v1.with_new_primary_kek().unwrap();
    let store2 = store.with_keys(v2.clone());
    // A run stopped after its first batch (as after a crash) leaves a consistent mix.
    let mut calls = 0;
    let partial = store2
        .rotate_keks(3, &mut |p| {
            calls += 1;
            if p.done >= 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await
        .unwrap();
    assert!(!partial.finished);
    assert_eq!(partial.rewrapped, 3);
    let status = store2.key_status().await.unwrap();
    assert_eq!(status.primary, 2);
    assert_eq!(status.pending_rewrap, 4);
    for id in &ids {
        store2.get_patient(&sys, *id).await.unwrap();
    }
    // Retiring v1 is refused while it still wraps keys.
    let err = store2.retire_kek(1).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::KekInUse {
                version: 1,
                deks: 4
            }
        ),
        "{err}"
    );
    // Rerunning finishes.
    let mut seen = Vec::new();
    let rest = store2
        .rotate_keks(3, &mut |p| {
            seen.push(p);
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert!(rest.finished);
    assert_eq!(rest.rewrapped, 4);
    assert_eq!(rest.batches, 2);
    assert_eq!(seen.last().unwrap().done, 4);
    let status = store2.key_status().await.unwrap();
    assert_eq!(status.pending_rewrap, 0);
    let v2_status = status.versions.iter().find(|v| v.version == 2).unwrap();
    assert_eq!(v2_status.deks, 7);
    assert!(v2_status.primary && v2_status.in_key_ring);

    // Retire v1; a key ring without it still reads everything.
    assert!(store2.retire_kek(2).await.is_err());
    store2.retire_kek(1).await.unwrap();
    let only_v2 = v2.without_kek(1).unwrap();
    let store3 = store.with_keys(only_v2);
    store3.verify_keys().await.unwrap();
    for id in &ids {
        let p = store3.get_patient(&sys, *id).await.unwrap();
        assert!(p.data.given_name.starts_with("Given"));
    }
    let status = store3.key_status().await.unwrap();
    let v1_status = status.versions.iter().find(|v| v.version == 1).unwrap();
    assert!(v1_status.retired_at_millis.is_some());
    assert!(!v1_status.in_key_ring);
}

async fn a_key_ring_missing_a_version_in_use_is_refused(db: TestDb) {
    let v1 = KeyRing::generate().unwrap();
    let store = db.open(&v1).await;
    populate(&store, 1).await;
    let v2 = v1.with_new_primary_kek().unwrap();
    let store2 = store.with_keys(v2.clone());
    store2.verify_keys().await.unwrap();
    let without_v1 = v2.without_kek(1).unwrap();
    let err = store.with_keys(without_v1).verify_keys().await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::KekMissing {
                version: 1,
                deks: 1
            }
        ),
        "{err}"
    );
}

async fn shredding_makes_one_patient_unreadable_and_leaves_others(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let sys = AccessContext::system("test");
    let (practice, ids) = populate(&store, 3).await;
    let victim = ids[1];
    let report = store.shred_patient(&sys, victim).await.unwrap();
    assert!(!report.already_shredded);
    assert_eq!(report.patient_fields_unreadable, 4);
    assert_eq!(report.conversations_unreadable, 1);
    assert_eq!(report.messages_unreadable, 1);
    assert!(report.index_entries_deleted >= 3);
    assert!(report.audit_records_kept >= 4);
    assert_eq!(report.kek_versions_in_backups, vec![1]);

    assert!(matches!(
        store.get_patient(&sys, victim).await,
        Err(StoreError::Shredded { patient }) if patient == victim
    ));
    assert!(matches!(
        store.list_conversations(&sys, victim).await,
        Err(StoreError::Shredded { .. })
    ));
    assert!(
        store
            .find_patients_by_phone(&sys, practice, "2025551001")
            .await
            .unwrap()
            .is_empty()
    );
    for other in [ids[0], ids[2]] {
        let p = store.get_patient(&sys, other).await.unwrap();
        assert!(p.data.given_name.starts_with("Given"));
        let convs = store.list_conversations(&sys, other).await.unwrap();
        let msgs = store
            .list_messages(&sys, convs[0].id, None, 10)
            .await
            .unwrap();
        assert!(msgs[0].body.starts_with("hello"));
    }
    // The rows remain, as ciphertext, and the data key is gone.
    let mut raw = db.raw().await;
    let keys_left: i64 = sqlx::query("SELECT COUNT(*) FROM patient_key WHERE patient_id = $1")
        .bind(victim.to_string())
        .fetch_one(&mut raw)
        .await
        .unwrap()
        .get(0);
    assert_eq!(keys_left, 0);
    let rows_left: i64 = sqlx::query("SELECT COUNT(*) FROM message WHERE patient_id = $1")
        .bind(victim.to_string())
        .fetch_one(&mut raw)
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows_left, 1);
    // The shredding itself is in the trail; records about the patient are kept.
    let trail = store
        .audit_query(
            &AuditQuery {
                patient: Some(victim),
                action: Some(perimeter_audit::Action::Delete),
                ..AuditQuery::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(trail.len(), 1);
    let again = store.shred_patient(&sys, victim).await.unwrap();
    assert!(again.already_shredded);
    assert_eq!(store.key_status().await.unwrap().shredded_patients, 1);
    // Rotation skips nothing and trips over nothing after shredding.
    let v2 = keys.with_new_primary_kek().unwrap();
    let r = store
        .with_keys(v2)
        .rotate_keks(10, &mut |_| ControlFlow::Continue(()))
        .await
        .unwrap();
    assert_eq!(r.rewrapped, 2);
}

crate::both_backends!(
    a_foreign_key_ring_is_refused_and_changes_nothing,
    rotation_rewraps_in_resumable_batches_and_retirement_follows,
    a_key_ring_missing_a_version_in_use_is_refused,
    shredding_makes_one_patient_unreadable_and_leaves_others,
);

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

/// Rotation re-wraps every kind of data key, not only patients': staff MFA secrets, AI vendor
/// credentials and unverified contacts too, so the old version can be retired and everything
/// sealed stays readable with a key ring that no longer holds it.
async fn rotation_covers_mfa_vendor_and_contact_keys(db: TestDb) {
    use perimeter_auth::TotpSecret;

    let v1 = KeyRing::generate().unwrap();
    let store = db.open(&v1).await;
    let sys = AccessContext::system("test");
    let (practice, ids) = populate(&store, 2).await;
    let staff = crate::channels::staff(&store, practice).await;
    let secret = TotpSecret::generate().unwrap();
    store.start_mfa_enrolment(staff, &secret).await.unwrap();
    let vendor = store
        .add_vendor(&sys, &crate::vendors::input("acme", "acme-large"))
        .await
        .unwrap();
    // An unknown sender becomes a contact with its own data key.
    let first = crate::channels::inbound(
        practice,
        "SM00000000000000000000000000000091",
        "+12025550199",
        "hi",
    );
    store.record_inbound(&sys, &first).await.unwrap();
    let status = store.key_status().await.unwrap();
    let v1_keys = status
        .versions
        .iter()
        .find(|v| v.version == 1)
        .unwrap()
        .deks;
    // 2 patients + 1 MFA secret + 1 vendor key + 1 contact.
    assert_eq!(v1_keys, 5);

    let v2 = v1.with_new_primary_kek().unwrap();
    let store2 = store.with_keys(v2.clone());
    let report = store2
        .rotate_keks(2, &mut |_| ControlFlow::Continue(()))
        .await
        .unwrap();
    assert!(report.finished);
    assert_eq!(report.rewrapped, 5);
    assert_eq!(store2.key_status().await.unwrap().pending_rewrap, 0);
    store2.retire_kek(1).await.unwrap();

    // Without version 1, every sealed value still opens.
    let store3 = store.with_keys(v2.without_kek(1).unwrap());
    store3.verify_keys().await.unwrap();
    for id in &ids {
        store3.get_patient(&sys, *id).await.unwrap();
    }
    assert_eq!(
        store3.load_mfa(staff).await.unwrap().unwrap().secret,
        secret
    );
    let key = store3.vendor_api_key(vendor.id).await.unwrap().unwrap();
    assert_eq!(key.as_str(), crate::vendors::SECRET);
    // The contact's key opens: a second message from the same number reuses the contact.
    let second = crate::channels::inbound(
        practice,
        "SM00000000000000000000000000000092",
        "+12025550199",
        "again",
    );
    store3.record_inbound(&sys, &second).await.unwrap();
    assert_eq!(store3.list_contacts(practice, 10).await.unwrap().len(), 1);
    // A second rotation has nothing left on the retired version and nothing to redo.
    let again = store3
        .rotate_keks(2, &mut |_| ControlFlow::Continue(()))
        .await
        .unwrap();
    assert_eq!(again.rewrapped, 0);
}

/// Online rotation as a running server sees it: another process rotates and writes the key
/// file; the server's store reloads it before making a new data key (so nothing new lands on
/// the old version), and picks up the retirement too. A process whose ring cannot be reloaded
/// (from the environment) refuses new data keys instead of wrapping them with an outdated or
/// retired version, and stores nothing.
async fn a_running_store_follows_rotation_and_a_stale_one_refuses_new_keys(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("perimeter.key");
    KeyRing::generate().unwrap().save_file_new(&path).unwrap();
    let v1 = KeyRing::load_file(&path).unwrap();
    let server = db.open(&v1).await;
    let sys = AccessContext::system("test");
    let (practice, _) = populate(&server, 2).await;
    // A stale process: same keys, but from the environment, so it cannot reload.
    let stale = server.with_keys(KeyRing::from_env_value(&v1.to_file_string().unwrap()).unwrap());

    // `perimeter keys rotate` in another process.
    let v2 = v1.with_new_primary_kek().unwrap();
    v2.replace_file(&path).unwrap();
    let cli = server.with_keys(v2.clone());
    assert!(
        cli.rotate_keks(10, &mut |_| ControlFlow::Continue(()))
            .await
            .unwrap()
            .finished
    );
    assert_eq!(server.keys().primary_kek_version(), 1, "not reloaded yet");
    // The server's next new data key is wrapped by version 2.
    server
        .create_patient(&sys, practice, &data(10))
        .await
        .unwrap();
    assert_eq!(server.keys().primary_kek_version(), 2);
    assert_eq!(server.key_status().await.unwrap().pending_rewrap, 0);
    // The stale process refuses instead, and stores nothing.
    let err = stale
        .create_patient(&sys, practice, &data(11))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::KeyState(_)), "{err}");
    assert!(
        err.to_string().contains("install the rotated key file"),
        "{err}"
    );
    assert_eq!(
        server
            .key_status()
            .await
            .unwrap()
            .versions
            .iter()
            .map(|v| v.deks)
            .sum::<u64>(),
        3
    );

    // `perimeter keys retire --version 1`, then the file without it.
    cli.retire_kek(1).await.unwrap();
    v2.without_kek(1).unwrap().replace_file(&path).unwrap();
    assert!(server.reload_keys().await.unwrap());
    assert_eq!(server.keys().kek_versions(), vec![2]);
    assert!(
        !server.reload_keys().await.unwrap(),
        "unchanged file: nothing to do"
    );
    // A new contact from the stale process would land on the retired version: refused.
    let m = crate::channels::inbound(
        practice,
        "SM00000000000000000000000000000093",
        "+12025550177",
        "hi",
    );
    let err = stale.record_inbound(&sys, &m).await.unwrap_err();
    assert!(matches!(err, StoreError::KeyState(_)), "{err}");
    assert!(server.list_contacts(practice, 10).await.unwrap().is_empty());
    // The server takes the same message.
    server.record_inbound(&sys, &m).await.unwrap();
    assert_eq!(server.list_contacts(practice, 10).await.unwrap().len(), 1);

    // A key file that does not fit the database is refused and the loaded ring kept.
    KeyRing::generate().unwrap().replace_file(&path).unwrap();
    assert!(server.reload_keys().await.is_err());
    assert_eq!(server.keys().kek_versions(), vec![2]);
    server
        .create_patient(&sys, practice, &data(12))
        .await
        .unwrap();
}

crate::both_backends!(
    a_foreign_key_ring_is_refused_and_changes_nothing,
    rotation_rewraps_in_resumable_batches_and_retirement_follows,
    rotation_covers_mfa_vendor_and_contact_keys,
    a_running_store_follows_rotation_and_a_stale_one_refuses_new_keys,
    a_key_ring_missing_a_version_in_use_is_refused,
    shredding_makes_one_patient_unreadable_and_leaves_others,
);

//! Patients, conversations, messages: encryption at rest, lookups, the audit trail per access.

use perimeter_audit::query::AuditQuery;
use perimeter_audit::{Action, AuditEvent};
use perimeter_crypto::KeyRing;
use perimeter_domain::{DataCategory, PracticeId, PurposeOfUse, Role};
use perimeter_store::{
    AccessContext, Channel, DemoHashing, DemoOptions, Direction, NewMessage, NewStaff, PatientData,
    SchemaStatus, Store, StoreError, demo_patients,
};
use sqlx::Row;

use crate::common::TestDb;

fn sample(given: &str, family: &str, phone: &str) -> PatientData {
    PatientData {
        given_name: given.into(),
        family_name: family.into(),
        birth_date: time::Date::from_calendar_date(1980, time::Month::March, 9).ok(),
        phone: Some(phone.into()),
        email: Some(format!("{}.{}@Example.org", given, family)),
        address: Some("1 Test Road".into()),
        mrn: Some("mr 0042".into()),
        notes: Some("allergic to testing".into()),
    }
}

/// A real front-desk account of `practice` (`register_patient`), as a user context.
async fn front_desk(store: &Store, practice: PracticeId) -> AccessContext {
    let staff = store
        .create_staff(
            &AccessContext::system("test"),
            practice,
            &NewStaff {
                username: format!("front-{}", PracticeId::new().to_string().get(..8).unwrap()),
                display_name: "Front desk".into(),
                roles: vec![Role::FrontDesk],
                password_hash: None,
            },
        )
        .await
        .unwrap();
    AccessContext::user(staff, vec![Role::FrontDesk], PurposeOfUse::Operations)
}

async fn migrations_apply_once_and_report_status(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = perimeter_store::Store::connect(&db.options(), keys, db.shared_clock())
        .await
        .unwrap();
    // Every migration this build embeds, ascending from 1 (other branches add theirs under
    // reserved numbers, so the list comes from the build, not from this test).
    let SchemaStatus::Empty { pending } = store.schema_status().await.unwrap() else {
        panic!("a fresh database has no schema");
    };
    let supported = store.supported_schema_version();
    assert_eq!(pending, store.embedded_migrations());
    assert_eq!(pending.first(), Some(&1));
    assert_eq!(pending.last(), Some(&supported));
    assert!(pending.windows(2).all(|w| w[0] < w[1]));
    assert!(
        supported >= 4,
        "the audit retention migration 0004 is embedded"
    );
    assert!(store.require_current_schema().await.is_err());
    let report = store.migrate().await.unwrap();
    assert_eq!(report.from_version, 0);
    assert_eq!(report.applied, pending);
    assert_eq!(report.to_version, supported);
    assert_eq!(
        store.schema_status().await.unwrap(),
        SchemaStatus::Current { version: supported }
    );
    let again = store.migrate().await.unwrap();
    assert!(again.applied.is_empty());
    store.require_current_schema().await.unwrap();
    store.ping().await.unwrap();
    assert_eq!(store.backend(), db.backend);
}

async fn patients_round_trip_and_are_found_by_blind_index(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Clinic").await.unwrap();
    let other_practice = store.create_practice(&sys, "Elsewhere").await.unwrap();
    let ctx = front_desk(&store, practice).await;
    let data = sample("José", "O'Brien-Núñez", "(202) 555-0143");
    let id = store.create_patient(&ctx, practice, &data).await.unwrap();
    // Full reads are Perimeter's own (staff read through the minimum-necessary views).
    assert!(matches!(
        store.get_patient(&ctx, id).await,
        Err(StoreError::Forbidden { .. })
    ));
    let back = store.get_patient(&sys, id).await.unwrap();
    assert_eq!(back.data, data);
    assert_eq!(back.practice_id, practice);
    assert!(!format!("{back:?}").contains("José"));

    let by_phone = store
        .find_patients_by_phone(&sys, practice, "+1 202.555.0143")
        .await
        .unwrap();
    assert_eq!(by_phone.iter().map(|p| p.id).collect::<Vec<_>>(), vec![id]);
    let by_email = store
        .find_patients_by_email(&sys, practice, "  JOSÉ.O'BRIEN-NÚÑEZ@example.ORG ")
        .await
        .unwrap();
    assert_eq!(by_email.len(), 1);
    let by_mrn = store
        .find_patients_by_mrn(&sys, practice, "MR0042")
        .await
        .unwrap();
    assert_eq!(by_mrn.len(), 1);
    let by_name = store
        .find_patients_by_name(&sys, practice, "obrien nunez, JOSE")
        .await
        .unwrap();
    assert_eq!(by_name.len(), 1);
    assert!(
        store
            .find_patients_by_phone(&sys, other_practice, "2025550143")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .find_patients_by_phone(&sys, practice, "2025550199")
            .await
            .unwrap()
            .is_empty()
    );

    let mut changed = data.clone();
    changed.phone = Some("202-555-0177".into());
    // Replacing the whole record is Perimeter's own (no role may see every field).
    assert!(matches!(
        store.update_patient(&ctx, id, &changed).await,
        Err(StoreError::Forbidden { .. })
    ));
    store.update_patient(&sys, id, &changed).await.unwrap();
    assert!(
        store
            .find_patients_by_phone(&sys, practice, "2025550143")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .find_patients_by_phone(&sys, practice, "2025550177")
            .await
            .unwrap()[0]
            .data,
        changed
    );
    assert_eq!(
        store.list_patient_ids(practice, None, 10).await.unwrap(),
        vec![id]
    );

    // Every access above is in the trail, by patient.
    let trail = store
        .audit_query(
            &AuditQuery {
                patient: Some(id),
                ..AuditQuery::default()
            },
            None,
            100,
        )
        .await
        .unwrap();
    let actions: Vec<Action> = trail
        .iter()
        .map(|r| AuditEvent::from_canonical_bytes(&r.event).unwrap().action)
        .collect();
    assert_eq!(actions.first(), Some(&Action::Create));
    assert!(actions.iter().filter(|a| **a == Action::Read).count() >= 5);
    assert!(actions.contains(&Action::Update));

    let bad = PatientData {
        phone: Some("call me maybe".into()),
        ..sample("A", "B", "1")
    };
    let err = store
        .create_patient(&ctx, practice, &bad)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid { field: "phone", .. }));
    assert!(!err.to_string().contains("call me"));
}

async fn conversations_and_messages_round_trip(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Clinic").await.unwrap();
    let ctx = sys.clone();
    let pid = store
        .create_patient(
            &front_desk(&store, practice).await,
            practice,
            &sample("Ann", "Lee", "2025550101"),
        )
        .await
        .unwrap();
    let cid = store
        .create_conversation(&ctx, pid, Channel::Sms, Some("Refill"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (i, dir) in [Direction::Inbound, Direction::Outbound, Direction::Note]
        .into_iter()
        .enumerate()
    {
        db.clock.advance(time::Duration::seconds(1));
        ids.push(
            store
                .add_message(
                    &ctx,
                    cid,
                    &NewMessage {
                        direction: dir,
                        author: None,
                        category: DataCategory::ClinicalMessage,
                        body: format!("message body {i}"),
                    },
                )
                .await
                .unwrap(),
        );
    }
    let conv = store.get_conversation(&sys, cid).await.unwrap();
    assert_eq!(conv.subject.as_deref(), Some("Refill"));
    assert_eq!(conv.patient_id, pid);
    let list = store.list_conversations(&sys, pid).await.unwrap();
    assert_eq!(list.len(), 1);
    let msgs = store.list_messages(&sys, cid, None, 100).await.unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        vec!["message body 0", "message body 1", "message body 2"]
    );
    assert_eq!(msgs[2].direction, Direction::Note);
    let page = store
        .list_messages(&sys, cid, Some(ids[0]), 1)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, ids[1]);
    store
        .set_conversation_status(&ctx, cid, perimeter_store::ConversationStatus::Closed)
        .await
        .unwrap();
    assert_eq!(
        store.get_conversation(&sys, cid).await.unwrap().status,
        perimeter_store::ConversationStatus::Closed
    );
}

async fn ciphertext_copied_to_another_row_or_field_does_not_decrypt(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Clinic").await.unwrap();
    let a = store
        .create_patient(&sys, practice, &sample("Ann", "Lee", "2025550101"))
        .await
        .unwrap();
    let cid = store
        .create_conversation(&sys, a, Channel::Portal, None)
        .await
        .unwrap();
    let m1 = store
        .add_message(
            &sys,
            cid,
            &NewMessage {
                direction: Direction::Inbound,
                author: None,
                category: DataCategory::AdministrativeMessage,
                body: "first".into(),
            },
        )
        .await
        .unwrap();
    let m2 = store
        .add_message(
            &sys,
            cid,
            &NewMessage {
                direction: Direction::Inbound,
                author: None,
                category: DataCategory::AdministrativeMessage,
                body: "second".into(),
            },
        )
        .await
        .unwrap();
    let mut raw = db.raw().await;
    // Same patient, same key: another field of the same row.
    sqlx::query("UPDATE patient SET email_ct = phone_ct WHERE id = $1")
        .bind(a.to_string())
        .execute(&mut raw)
        .await
        .unwrap();
    let err = store.get_patient(&sys, a).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Crypto(perimeter_crypto::CryptoError::DecryptFailed { ref field }) if field == "email"),
        "{err}"
    );
    // Same patient, same key: another message's row.
    let body: Vec<u8> = sqlx::query("SELECT body_ct FROM message WHERE id = $1")
        .bind(m1.to_string())
        .fetch_one(&mut raw)
        .await
        .unwrap()
        .get(0);
    sqlx::query("UPDATE message SET body_ct = $1 WHERE id = $2")
        .bind(body)
        .bind(m2.to_string())
        .execute(&mut raw)
        .await
        .unwrap();
    assert!(matches!(
        store.list_messages(&sys, cid, None, 10).await,
        Err(StoreError::Crypto(_))
    ));
}

async fn demo_seed_is_idempotent_and_leaves_no_plaintext(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let opts = DemoOptions {
        password: None,
        patients: 12,
        hashing: DemoHashing::Fast,
    };
    let first = store.seed_demo(&opts).await.unwrap();
    assert!(first.created);
    assert_eq!(first.patients, 12);
    assert_eq!(first.users.len(), Role::ALL.len());
    assert!(first.password.is_some());
    let second = store.seed_demo(&opts).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.practice, first.practice);
    let staff = store.list_staff(first.practice).await.unwrap();
    assert_eq!(staff.len(), Role::ALL.len());
    // People have argon2id hashes; the service client has no password (API tokens only).
    assert!(staff.iter().all(|s| {
        if s.roles == [Role::Service] {
            s.password_hash.is_none()
        } else {
            s.password_hash
                .as_deref()
                .is_some_and(|h| h.starts_with("$argon2id$"))
        }
    }));
    // The demo billing user sees a coverage and an account; the demo scheduler neither.
    let pid = store
        .list_patient_ids(first.practice, None, 1)
        .await
        .unwrap()[0];
    for (role, sees) in [(Role::Billing, true), (Role::Scheduler, false)] {
        let who = staff.iter().find(|s| s.roles == [role]).unwrap().id;
        let v = store
            .view_patient(&perimeter_store::Viewer::new(who), pid)
            .await
            .unwrap();
        assert_eq!(v.coverages.is_some(), sees, "{role}");
        assert_eq!(v.account.is_some(), sees, "{role}");
    }

    let mut needles: Vec<String> = Vec::new();
    for p in demo_patients(12) {
        needles.push(p.data.given_name.clone());
        needles.push(p.data.family_name.clone());
        let phone = p.data.phone.clone().unwrap();
        needles.push(phone.clone());
        needles.push(phone.chars().filter(char::is_ascii_digit).collect());
        needles.push(p.data.email.clone().unwrap());
        needles.push(p.data.address.clone().unwrap());
        needles.push(p.coverage.member_id.as_str().to_owned());
        needles.push(p.coverage.payer.as_str().to_owned());
        needles.push(p.account.account_number.as_str().to_owned());
        for (_, subject, msgs) in p.conversations {
            needles.push(subject);
            needles.extend(msgs.into_iter().map(|(_, body)| body));
        }
    }
    let haystack: Vec<u8> = match db.backend {
        perimeter_store::Backend::Sqlite => {
            store.close().await;
            let path = db.path.clone().unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            for suffix in ["-wal", "-shm", "-journal"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                if let Ok(more) = std::fs::read(p) {
                    bytes.extend(more);
                }
            }
            bytes
        }
        perimeter_store::Backend::Postgres => {
            let mut raw = db.raw().await;
            let mut out = Vec::new();
            for table in [
                "practice",
                "staff_user",
                "patient",
                "patient_key",
                "patient_index",
                "conversation",
                "message",
                "insurance_coverage",
                "billing_account",
                "key_ring",
                "audit_log",
            ] {
                let rows = sqlx::query(&format!("SELECT CAST(t AS TEXT) FROM {table} t"))
                    .fetch_all(&mut raw)
                    .await
                    .unwrap();
                for r in rows {
                    let s: String = r.get(0);
                    out.extend(s.into_bytes());
                }
            }
            out
        }
    };
    if db.backend == perimeter_store::Backend::Postgres {
        // bytea columns render as hex in a row's text form.
        let hexed: Vec<String> = needles.iter().map(hex::encode).collect();
        needles.extend(hexed);
    }
    assert!(haystack.len() > 10_000);
    for n in &needles {
        assert!(
            !haystack.windows(n.len()).any(|w| w == n.as_bytes()),
            "plaintext found in the database: a demo value of {} bytes",
            n.len()
        );
    }
    // Sanity: the search does find what is stored in clear.
    assert!(
        haystack
            .windows(perimeter_store::DEMO_PRACTICE_NAME.len())
            .any(|w| w == perimeter_store::DEMO_PRACTICE_NAME.as_bytes())
    );
}

crate::both_backends!(
    migrations_apply_once_and_report_status,
    patients_round_trip_and_are_found_by_blind_index,
    conversations_and_messages_round_trip,
    ciphertext_copied_to_another_row_or_field_does_not_decrypt,
    demo_seed_is_idempotent_and_leaves_no_plaintext,
);

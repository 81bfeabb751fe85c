//! Channels (migration 0007): idempotent inbound receipts, who is writing, opt-outs that the
//! outbox refuses, claims and status callbacks, representatives, and no plaintext at rest.

use perimeter_audit::AuditEvent;
use perimeter_crypto::KeyRing;
use perimeter_domain::{DataCategory, PatientId, PracticeId, Role, StaffId};
use perimeter_store::{
    AccessContext, Channel, Keyword, MatchKind, NewInbound, NewRepresentative, NewSms,
    OutboxStatus, Recipient, RouteStatus, Routing, Store, StoreError,
};
use sqlx::Row;

use crate::common::TestDb;

fn routing(queue: &'static str, emergency: bool) -> Routing {
    Routing {
        intent: Some(if emergency { "emergency" } else { "scheduling" }),
        urgency: Some(if emergency { "emergency" } else { "routine" }),
        queue,
        priority: if emergency { 0 } else { 2 },
        due_at_millis: Some(1),
        emergency,
        status: RouteStatus::Routed,
        failure: None,
    }
}

pub(crate) fn inbound(practice: PracticeId, sid: &str, from: &str, body: &str) -> NewInbound {
    NewInbound {
        practice,
        channel: Channel::Sms,
        provider_id: sid.into(),
        from: from.into(),
        body: body.into(),
        category: DataCategory::AdministrativeMessage,
        keyword: None,
        routing: routing("scheduling", false),
        emergency_reply: None,
        alert_roles: Vec::new(),
    }
}

pub(crate) async fn staff(store: &Store, practice: PracticeId) -> StaffId {
    store
        .create_staff(
            &AccessContext::system("test"),
            practice,
            &perimeter_store::NewStaff {
                username: format!("s{}", uuid::Uuid::now_v7().simple()),
                display_name: "Staff".into(),
                roles: vec![Role::FrontDesk],
                password_hash: None,
            },
        )
        .await
        .unwrap()
}

async fn patient(store: &Store, practice: PracticeId, given: &str, phone: &str) -> PatientId {
    store
        .create_patient(
            &AccessContext::system("test"),
            practice,
            &perimeter_store::PatientData {
                given_name: given.into(),
                family_name: "Lovelace".into(),
                phone: Some(phone.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

/// Every byte the database holds, for plaintext scans (SQLite: the file and its WAL;
/// PostgreSQL: every text and bytea column of the channel tables, as text).
async fn raw_bytes(db: &TestDb) -> Vec<u8> {
    match &db.path {
        Some(p) => {
            let mut all = std::fs::read(p).unwrap();
            let wal = p.with_extension("db-wal");
            if let Ok(w) = std::fs::read(wal) {
                all.extend(w);
            }
            all
        }
        None => {
            let mut conn = db.raw().await;
            let mut all = Vec::new();
            for table in [
                "channel_inbound",
                "channel_outbox",
                "channel_contact",
                "channel_representative",
                "channel_opt_out",
                "message",
                "audit_log",
            ] {
                let rows = sqlx::query(&format!(
                    "SELECT CAST(row_to_json(t) AS TEXT) AS j FROM {table} t"
                ))
                .fetch_all(&mut conn)
                .await
                .unwrap();
                for r in rows {
                    let j: String = r.try_get("j").unwrap();
                    all.extend(j.into_bytes());
                }
            }
            all
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn inbound_is_stored_once_matched_and_encrypted(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Clinic").await.unwrap();
    let ada = patient(&store, practice, "Ada", "(202) 555-0101").await;
    let m = inbound(
        practice,
        "SM00000000000000000000000000000001",
        "+12025550101",
        "Can I move my Zanzibar appointment?",
    );
    let first = store.record_inbound(&sys, &m).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.match_kind, MatchKind::Patient);
    assert_eq!(first.patient, Some(ada));
    assert!(!first.needs_patient);
    let again = store.record_inbound(&sys, &m).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.receipt, first.receipt);
    assert_eq!(again.conversation, first.conversation);
    assert_eq!(again.message, first.message);
    let conversation = first.conversation.unwrap();
    let msgs = store
        .list_messages(&sys, conversation, None, 100)
        .await
        .unwrap();
    assert_eq!(msgs.len(), 1, "a repeated delivery is stored once");
    assert_eq!(msgs[0].body, "Can I move my Zanzibar appointment?");
    // A second message reuses the open conversation.
    let second = store
        .record_inbound(
            &sys,
            &inbound(
                practice,
                "SM00000000000000000000000000000002",
                "202-555-0101",
                "Thursday works",
            ),
        )
        .await
        .unwrap();
    assert_eq!(second.conversation, Some(conversation));
    let items = store.list_inbound(practice, false, 100).await.unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].queue.as_deref(), Some("scheduling"));
    // Nothing in clear at rest: neither the body nor the number.
    let raw = raw_bytes(&db).await;
    assert!(!contains(&raw, "Zanzibar"));
    assert!(!contains(&raw, "2025550101"));
    assert!(!contains(&raw, "555-0101"));
    // Audited in the same transaction: the message create and the receipt.
    let events: Vec<AuditEvent> = store
        .audit_records(0, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|r| AuditEvent::from_canonical_bytes(&r.event).unwrap())
        .filter(|e| e.patient == Some(ada))
        .collect();
    assert!(events.iter().any(|e| e.object.kind == "channel_inbound"));
    assert!(events.iter().any(|e| e.object.kind == "message"));
    // A malformed provider id or number is refused before anything is written.
    assert!(matches!(
        store
            .record_inbound(&sys, &inbound(practice, "SM bad id", "+12025550101", "x"))
            .await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        store
            .record_inbound(
                &sys,
                &inbound(practice, "SM0000000000000009", "not a phone", "x")
            )
            .await,
        Err(StoreError::Invalid { .. })
    ));
}

async fn who_is_writing_shared_representative_unknown(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Clinic").await.unwrap();
    let a = patient(&store, practice, "Ann", "+1 202 555 0111").await;
    let _b = patient(&store, practice, "Bob", "(202) 555-0111").await;
    let c = patient(&store, practice, "Cy", "+1 202 555 0122").await;
    let staff = staff(&store, practice).await;
    let rep = store
        .add_representative(
            &sys,
            practice,
            c,
            &NewRepresentative {
                name: "Dora Daughter".into(),
                phone: "+1 202 555 0133".into(),
                relationship: "child".into(),
                verified: true,
            },
            Some(staff),
        )
        .await
        .unwrap();
    let reps = store.list_representatives(&sys, practice, c).await.unwrap();
    assert_eq!(reps.len(), 1);
    assert_eq!(reps[0].name, "Dora Daughter");
    assert!(reps[0].verified_at_millis.is_some());
    assert!(
        store
            .add_representative(
                &sys,
                practice,
                c,
                &NewRepresentative {
                    name: "X".into(),
                    phone: "+1 202 555 0134".into(),
                    relationship: "landlord".into(),
                    verified: false,
                },
                None,
            )
            .await
            .is_err()
    );

    let shared = store
        .record_inbound(
            &sys,
            &inbound(
                practice,
                "SM0000000000000000000000000000A1",
                "+12025550111",
                "Hi",
            ),
        )
        .await
        .unwrap();
    assert_eq!(shared.match_kind, MatchKind::SharedNumber);
    assert!(shared.needs_patient && shared.patient.is_none() && shared.conversation.is_none());
    let by_rep = store
        .record_inbound(
            &sys,
            &inbound(
                practice,
                "SM0000000000000000000000000000A2",
                "+12025550133",
                "Dad's pills",
            ),
        )
        .await
        .unwrap();
    assert_eq!(by_rep.match_kind, MatchKind::Representative);
    assert!(by_rep.needs_patient && by_rep.patient.is_none());
    let unknown = store
        .record_inbound(
            &sys,
            &inbound(
                practice,
                "SM0000000000000000000000000000A3",
                "+12025550199",
                "Who is this",
            ),
        )
        .await
        .unwrap();
    assert_eq!(unknown.match_kind, MatchKind::Unknown);
    let contact = unknown.contact.unwrap();
    // The same unknown number again: the same contact.
    let unknown2 = store
        .record_inbound(
            &sys,
            &inbound(
                practice,
                "SM0000000000000000000000000000A4",
                "202.555.0199",
                "Hello?",
            ),
        )
        .await
        .unwrap();
    assert_eq!(unknown2.contact, Some(contact));
    let contacts = store.list_contacts(practice, 100).await.unwrap();
    assert_eq!(contacts.len(), 3);
    assert_eq!(
        contacts
            .iter()
            .find(|x| x.id == contact)
            .unwrap()
            .pending_inbound,
        2
    );
    // Staff pick the patient: the body moves into the patient's conversation.
    let conv = store
        .assign_inbound_patient(&sys, practice, shared.receipt, a)
        .await
        .unwrap();
    let msgs = store.list_messages(&sys, conv, None, 10).await.unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].body, "Hi");
    // Only once.
    assert!(
        store
            .assign_inbound_patient(&sys, practice, shared.receipt, a)
            .await
            .is_err()
    );
    assert!(
        store
            .update_representative(&sys, practice, c, rep, false, staff)
            .await
            .unwrap()
    );
    let after = store
        .record_inbound(
            &sys,
            &inbound(
                practice,
                "SM0000000000000000000000000000A5",
                "+12025550133",
                "Again",
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        after.match_kind,
        MatchKind::Unknown,
        "a revoked representative is not one"
    );
    let raw = raw_bytes(&db).await;
    assert!(!contains(&raw, "Dora Daughter"));
    assert!(!contains(&raw, "Dad's pills"));
}

async fn stop_refuses_sends_and_start_restores(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Clinic").await.unwrap();
    let p = patient(&store, practice, "Eve", "+1 202 555 0144").await;
    let mut stop = inbound(
        practice,
        "SM0000000000000000000000000000B1",
        "+12025550144",
        "STOP",
    );
    stop.keyword = Some(Keyword::Stop);
    stop.routing.status = RouteStatus::Keyword;
    let out = store.record_inbound(&sys, &stop).await.unwrap();
    assert!(out.opted_out);
    assert_eq!(out.keyword, Some(Keyword::Stop));
    assert!(store.is_opted_out(practice, "2025550144").await.unwrap());
    let conv = out.conversation.unwrap();
    assert!(matches!(
        store
            .queue_conversation_reply(
                &sys,
                conv,
                "Your appointment is confirmed",
                None,
                DataCategory::AdministrativeMessage
            )
            .await,
        Err(StoreError::OptedOut)
    ));
    assert!(matches!(
        store
            .queue_sms(
                &sys,
                &NewSms {
                    practice,
                    recipient: Recipient::Patient(p),
                    to: None,
                    body: "Reminder".into(),
                    purpose: "reminder",
                    conversation: None,
                    approved_by: None,
                }
            )
            .await,
        Err(StoreError::OptedOut)
    ));
    let refused = store
        .list_outbox(practice, Some(OutboxStatus::Refused), 10)
        .await
        .unwrap();
    assert_eq!(refused.len(), 2);
    assert!(store.claim_due_sms(&sys, 10).await.unwrap().is_empty());
    // A message queued before STOP is refused when claimed.
    let mut start = inbound(
        practice,
        "SM0000000000000000000000000000B2",
        "+12025550144",
        "START",
    );
    start.keyword = Some(Keyword::Start);
    start.routing.status = RouteStatus::Keyword;
    assert!(!store.record_inbound(&sys, &start).await.unwrap().opted_out);
    let queued = store
        .queue_conversation_reply(
            &sys,
            conv,
            "See you Friday",
            Some(staff(&store, practice).await),
            DataCategory::AdministrativeMessage,
        )
        .await
        .unwrap();
    let mut stop2 = stop.clone();
    stop2.provider_id = "SM0000000000000000000000000000B3".into();
    store.record_inbound(&sys, &stop2).await.unwrap();
    assert!(store.claim_due_sms(&sys, 10).await.unwrap().is_empty());
    assert_eq!(
        store.outbox_entry(practice, queued).await.unwrap().status,
        OutboxStatus::Refused
    );
    // START again, and a reply is claimed, sent, delivered.
    let mut start2 = start.clone();
    start2.provider_id = "SM0000000000000000000000000000B4".into();
    store.record_inbound(&sys, &start2).await.unwrap();
    let id = store
        .queue_conversation_reply(
            &sys,
            conv,
            "See you Friday",
            None,
            DataCategory::AdministrativeMessage,
        )
        .await
        .unwrap();
    let claimed = store.claim_due_sms(&sys, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].to, "+1 202 555 0144");
    assert_eq!(claimed[0].body, "See you Friday");
    assert!(
        store.claim_due_sms(&sys, 10).await.unwrap().is_empty(),
        "leased"
    );
    store
        .mark_sms_sent(id, "SM0000000000000000000000000000C1")
        .await
        .unwrap();
    assert!(
        store
            .update_sms_status(
                "SM0000000000000000000000000000C1",
                OutboxStatus::Delivered,
                None
            )
            .await
            .unwrap()
    );
    // Out of order: a late "sent" does not move it back.
    store
        .update_sms_status("SM0000000000000000000000000000C1", OutboxStatus::Sent, None)
        .await
        .unwrap();
    assert_eq!(
        store.outbox_entry(practice, id).await.unwrap().status,
        OutboxStatus::Delivered
    );
    assert!(
        !store
            .update_sms_status("SM0000000000000000000000000000FF", OutboxStatus::Sent, None)
            .await
            .unwrap()
    );
    let opt = store.list_opt_outs(practice, false, 10).await.unwrap();
    assert_eq!(opt.len(), 1);
    assert!(!opt[0].opted_out);
    assert_eq!(opt[0].keyword, "start");
}

async fn emergency_queues_reply_and_alerts(db: TestDb) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Clinic").await.unwrap();
    let mut m = inbound(
        practice,
        "SM0000000000000000000000000000D1",
        "+12025550177",
        "crushing chest pain",
    );
    m.routing = routing("nurse_triage", true);
    m.category = DataCategory::ClinicalMessage;
    m.emergency_reply = Some("Call 911. For a suicidal crisis call 988.".into());
    m.alert_roles = vec![Role::Nurse, Role::Clinician];
    let routine = inbound(
        practice,
        "SM0000000000000000000000000000D0",
        "+12025550178",
        "hi",
    );
    store.record_inbound(&sys, &routine).await.unwrap();
    let out = store.record_inbound(&sys, &m).await.unwrap();
    assert!(out.emergency);
    assert_eq!(out.match_kind, MatchKind::Unknown);
    let outbox = out.reply_outbox.unwrap();
    let claimed = store.claim_due_sms(&sys, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, outbox);
    assert_eq!(claimed[0].body, "Call 911. For a suicidal crisis call 988.");
    let notes = store
        .notifications_for(practice, &[Role::Nurse], false, 10)
        .await
        .unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].kind, "emergency_intake");
    assert!(!notes[0].payload.contains("chest"));
    let items = store.list_inbound(practice, false, 10).await.unwrap();
    assert!(
        items[0].emergency && items[0].priority == 0,
        "emergencies first"
    );
}

crate::both_backends!(
    inbound_is_stored_once_matched_and_encrypted,
    who_is_writing_shared_representative_unknown,
    stop_refuses_sends_and_start_restores,
    emergency_queues_reply_and_alerts,
);

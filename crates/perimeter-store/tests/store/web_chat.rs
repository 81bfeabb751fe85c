//! Web chat (migration 0009) on both backends: sessions by token hash, verification by name and
//! birth date and by one-time code, throttles, expiry, a verified session's messages and the
//! reply path that skips the SMS outbox.

use perimeter_crypto::KeyRing;
use perimeter_domain::{DataCategory, PatientId, PracticeId};
use perimeter_store::{
    AccessContext, Channel, ChatCodeRequest, ChatLookup, ChatPolicy, ChatSession, ChatVerification,
    NewInbound, RouteStatus, Routing, Store, chat_address_subject, chat_context, new_chat_token,
};

use crate::common::TestDb;

async fn setup(db: &TestDb) -> (Store, PracticeId, PatientId) {
    let store = db.open(&KeyRing::generate().unwrap()).await;
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Chat Practice").await.unwrap();
    let patient = store
        .create_patient(
            &sys,
            practice,
            &perimeter_store::PatientData {
                given_name: "Ada".into(),
                family_name: "Lovelace".into(),
                birth_date: Some(time::macros::date!(1815 - 12 - 10)),
                phone: Some("+1 202 555 0111".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (store, practice, patient)
}

async fn session(store: &Store, practice: PracticeId) -> ([u8; 32], ChatSession) {
    let ctx = chat_context(None);
    let (_, hash) = new_chat_token().unwrap();
    store
        .start_chat_session(
            &ctx,
            practice,
            &hash,
            &ChatPolicy::default(),
            &perimeter_store::chat_start_subject("192.0.2.1"),
        )
        .await
        .unwrap()
        .unwrap();
    match store
        .chat_session(&ctx, &ChatPolicy::default(), &hash)
        .await
        .unwrap()
    {
        ChatLookup::Live(s) => (hash, s),
        other => panic!("{other:?}"),
    }
}

fn message(practice: PracticeId, id: &str, body: &str) -> NewInbound {
    NewInbound {
        practice,
        channel: Channel::WebChat,
        provider_id: id.into(),
        from: String::new(),
        body: body.into(),
        category: DataCategory::AdministrativeMessage,
        keyword: None,
        routing: Routing {
            intent: Some("general"),
            urgency: Some("routine"),
            queue: "front_desk",
            priority: 2,
            due_at_millis: None,
            emergency: false,
            status: RouteStatus::Routed,
            failure: None,
        },
        emergency_reply: None,
        alert_roles: Vec::new(),
    }
}

async fn chat_verification_and_messages(db: TestDb) {
    let (store, practice, patient) = setup(&db).await;
    let ctx = chat_context(None);
    let policy = ChatPolicy::default();
    let addr = chat_address_subject("192.0.2.1");
    let (hash, s) = session(&store, practice).await;
    // Unverified: written as a contact, nothing readable.
    let out = store
        .record_web_chat(&ctx, &s, &message(practice, "s1_a", "before"))
        .await
        .unwrap();
    assert!(out.patient.is_none() && out.contact.is_some() && out.needs_patient);
    assert!(
        store
            .chat_messages(&ctx, &s, None)
            .await
            .unwrap()
            .is_empty()
    );
    // Wrong, then right.
    let wrong = store
        .verify_chat_identity(
            &ctx,
            &policy,
            &s,
            &addr,
            "Ada Lovelace",
            time::macros::date!(1815 - 12 - 11),
        )
        .await
        .unwrap();
    assert_eq!(wrong, ChatVerification::Failed);
    let right = store
        .verify_chat_identity(
            &ctx,
            &policy,
            &s,
            &addr,
            "ada LOVELACE",
            time::macros::date!(1815 - 12 - 10),
        )
        .await
        .unwrap();
    assert_eq!(right, ChatVerification::Verified(patient));
    let ChatLookup::Live(s) = store.chat_session(&ctx, &policy, &hash).await.unwrap() else {
        panic!()
    };
    assert_eq!(s.patient, Some(patient));
    let out = store
        .record_web_chat(&ctx, &s, &message(practice, "s1_b", "after"))
        .await
        .unwrap();
    assert_eq!(out.patient, Some(patient));
    // The message written before verification moved into the patient's conversation.
    let msgs = store.chat_messages(&ctx, &s, None).await.unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].body, "before");
    assert_eq!(msgs[1].body, "after");
    let pending = store.list_inbound(practice, false, 10).await.unwrap();
    assert!(
        pending
            .iter()
            .all(|i| !i.needs_patient && i.patient_id == Some(patient))
    );
    assert!(
        store
            .chat_messages(&ctx, &s, Some(&msgs[1].cursor))
            .await
            .unwrap()
            .is_empty()
    );
    // A code for the one patient with the number; verified in a second session.
    let (_, s2) = session(&store, practice).await;
    let sent = std::sync::Mutex::new(String::new());
    let text = |code: &str| {
        *sent.lock().unwrap() = code.to_owned();
        format!("code {code}")
    };
    let r = store
        .request_chat_code(&ctx, &policy, &s2, &addr, "202-555-0111", &text)
        .await
        .unwrap();
    assert!(matches!(r, ChatCodeRequest::Sent(_)));
    let code = sent.lock().unwrap().clone();
    let r = store
        .request_chat_code(&ctx, &policy, &s2, &addr, "202-555-0999", &text)
        .await
        .unwrap();
    assert_eq!(r, ChatCodeRequest::NotSent);
    // The unknown number's request sent nothing and replaced nothing: the code works, once.
    assert_eq!(
        store
            .verify_chat_code(&ctx, &policy, &s2, &addr, &code)
            .await
            .unwrap(),
        ChatVerification::Verified(patient)
    );
    let (_, s3) = session(&store, practice).await;
    assert_eq!(
        store
            .verify_chat_code(&ctx, &policy, &s3, &addr, &code)
            .await
            .unwrap(),
        ChatVerification::Failed
    );
}

async fn chat_sessions_expire(db: TestDb) {
    let (store, practice, _) = setup(&db).await;
    let ctx = chat_context(None);
    let policy = ChatPolicy::default();
    let (hash, s) = session(&store, practice).await;
    db.clock.advance(time::Duration::minutes(16));
    assert_eq!(
        store.chat_session(&ctx, &policy, &hash).await.unwrap(),
        ChatLookup::Ended
    );
    assert!(
        store
            .record_web_chat(&ctx, &s, &message(practice, "s2_a", "late"))
            .await
            .is_err()
    );
    let (_, unknown) = new_chat_token().unwrap();
    assert_eq!(
        store.chat_session(&ctx, &policy, &unknown).await.unwrap(),
        ChatLookup::Unknown
    );
}

/// Two patients share a name: a check decrypts both birth dates, so each is named in an audit
/// record of the attempt (the patient's accounting shows it), whichever way it ends.
async fn every_compared_candidate_is_in_the_trail(db: TestDb) {
    let (store, practice, ada) = setup(&db).await;
    let sys = AccessContext::system("test");
    let twin = store
        .create_patient(
            &sys,
            practice,
            &perimeter_store::PatientData {
                given_name: "Ada".into(),
                family_name: "Lovelace".into(),
                birth_date: Some(time::macros::date!(1990 - 01 - 01)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ctx = chat_context(None);
    let policy = ChatPolicy::default();
    let addr = chat_address_subject("192.0.2.9");
    let (_, s) = session(&store, practice).await;
    let trail = |store: Store| async move {
        store
            .audit_records(0, 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| perimeter_audit::AuditEvent::from_canonical_bytes(&r.event).unwrap())
            .filter(|e| e.detail.as_deref() == Some("verify_name_birth_date compared"))
            .filter_map(|e| e.patient)
            .collect::<Vec<_>>()
    };
    let wrong = store
        .verify_chat_identity(
            &ctx,
            &policy,
            &s,
            &addr,
            "Ada Lovelace",
            time::macros::date!(2000 - 02 - 02),
        )
        .await
        .unwrap();
    assert_eq!(wrong, ChatVerification::Failed);
    let mut compared = trail(store.clone()).await;
    compared.sort();
    let mut both = vec![ada, twin];
    both.sort();
    assert_eq!(compared, both, "both candidates of a failed check");
    let right = store
        .verify_chat_identity(
            &ctx,
            &policy,
            &s,
            &addr,
            "Ada Lovelace",
            time::macros::date!(1990 - 01 - 01),
        )
        .await
        .unwrap();
    assert_eq!(right, ChatVerification::Verified(twin));
    let compared = trail(store.clone()).await;
    assert_eq!(compared.len(), 3);
    assert_eq!(
        compared[2], ada,
        "the other candidate of the successful check"
    );
}

async fn count(db: &TestDb, table: &str) -> i64 {
    let mut c = db.raw().await;
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut c)
        .await
        .unwrap()
}

/// Housekeeping ends sessions past their limits (audited), deletes the codes that can no
/// longer be used and the closed throttle windows, and deletes ended sessions only after the
/// keep period; a live session, its code and an open window are untouched, and messages stay.
async fn housekeeping_purges_only_what_is_dead(db: TestDb) {
    let (store, practice, _) = setup(&db).await;
    let ctx = chat_context(None);
    let sys = AccessContext::system("chat_housekeeping");
    let policy = ChatPolicy::default();
    let addr = chat_address_subject("192.0.2.9");
    let (_, idle) = session(&store, practice).await;
    store
        .record_web_chat(&ctx, &idle, &message(practice, "hk_1", "kept"))
        .await
        .unwrap();
    let text = |code: &str| format!("code {code}");
    let r = store
        .request_chat_code(&ctx, &policy, &idle, &addr, "202-555-0111", &text)
        .await
        .unwrap();
    assert!(matches!(r, ChatCodeRequest::Sent(_)));
    // A failed verification opens a throttle window for the address.
    store
        .verify_chat_identity(
            &ctx,
            &policy,
            &idle,
            &addr,
            "Ada Lovelace",
            time::macros::date!(1815 - 12 - 11),
        )
        .await
        .unwrap();
    // Nothing is dead yet.
    let first = store
        .purge_chat_state(&sys, &policy, 86_400_000, 100)
        .await
        .unwrap();
    assert!(first.is_empty(), "{first:?}");
    let throttles = count(&db, "web_chat_throttle").await;
    assert!(throttles >= 1);
    // Sixteen minutes on: the first session is idle; a new one is live and has a code.
    db.clock.advance(time::Duration::minutes(16));
    let (live_hash, live) = session(&store, practice).await;
    let r = store
        .request_chat_code(
            &ctx,
            &policy,
            &live,
            &chat_address_subject("192.0.2.10"),
            "202-555-0111",
            &text,
        )
        .await
        .unwrap();
    assert!(matches!(r, ChatCodeRequest::Sent(_)));
    let before = store.audit_head().await.unwrap().map_or(0, |h| h.size);
    let second = store
        .purge_chat_state(&sys, &policy, 86_400_000, 100)
        .await
        .unwrap();
    assert_eq!(second.sessions_ended, 1);
    assert_eq!(
        second.codes_deleted, 0,
        "the idle session's code went with its end"
    );
    assert!(
        second.throttles_deleted >= 1,
        "the failure window has closed"
    );
    assert!(
        count(&db, "web_chat_throttle").await >= 1,
        "the start window reopened by the new session stays"
    );
    assert_eq!(second.sessions_deleted, 0, "kept for a day after ending");
    let after = store.audit_head().await.unwrap().map_or(0, |h| h.size);
    assert_eq!(after, before + 1, "the end is audited");
    let ended = store.audit_records(before, 1).await.unwrap();
    let event = perimeter_audit::AuditEvent::from_canonical_bytes(&ended[0].event).unwrap();
    assert_eq!(event.action, perimeter_audit::Action::Logout);
    assert_eq!(event.detail.as_deref(), Some("idle"));
    assert_eq!(
        count(&db, "web_chat_code").await,
        1,
        "the live session's code"
    );
    // Eleven minutes on the live session's code has expired; the session is still live.
    db.clock.advance(time::Duration::minutes(11));
    let third = store
        .purge_chat_state(&sys, &policy, 86_400_000, 100)
        .await
        .unwrap();
    assert_eq!((third.sessions_ended, third.codes_deleted), (0, 1));
    assert!(matches!(
        store.chat_session(&ctx, &policy, &live_hash).await.unwrap(),
        ChatLookup::Live(_)
    ));
    // A day later the first session, ended a day ago, goes; the one ended now is kept; the
    // message the first one wrote stays.
    db.clock.advance(time::Duration::hours(25));
    let fourth = store
        .purge_chat_state(&sys, &policy, 86_400_000, 100)
        .await
        .unwrap();
    assert_eq!(fourth.sessions_ended, 1, "the second session, now idle");
    assert_eq!(fourth.sessions_deleted, 1, "only the one ended a day ago");
    assert_eq!(count(&db, "web_chat_session").await, 1);
    assert_eq!(count(&db, "web_chat_code").await, 0);
    assert!(count(&db, "channel_inbound").await >= 1);
    assert!(matches!(
        store.purge_chat_state(&sys, &policy, -1, 100).await,
        Err(perimeter_store::StoreError::Invalid { .. })
    ));
    // Housekeeping is Perimeter's own: a member of staff (even an administrator) is refused.
    let admin = AccessContext::user(
        perimeter_domain::StaffId::new(),
        vec![perimeter_domain::Role::Admin],
        perimeter_domain::PurposeOfUse::Operations,
    );
    assert!(matches!(
        store
            .purge_chat_state(&admin, &policy, 86_400_000, 100)
            .await,
        Err(perimeter_store::StoreError::Forbidden { .. })
    ));
}

crate::both_backends!(
    chat_verification_and_messages,
    chat_sessions_expire,
    housekeeping_purges_only_what_is_dead,
    every_compared_candidate_is_in_the_trail
);

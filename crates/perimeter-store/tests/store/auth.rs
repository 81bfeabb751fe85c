//! Staff authentication state (migration 0003): MFA secrets sealed at rest, replay-proof TOTP
//! steps, single-use recovery codes, sessions shared through the database, throttle state,
//! API tokens and emergency access with its notification.

use perimeter_audit::{Actor, AuditEvent};
use perimeter_auth::{
    ApiTokenScope, BreakGlassPolicy, BreakGlassReason, Justification, Permission, RequestMeta,
    SecurityEvent, SessionPolicy, SessionStage, ThrottleDecision, TotpSecret, Username,
    create_api_token, generate_recovery_codes, hash_recovery_code,
};
use perimeter_crypto::KeyRing;
use perimeter_domain::{Clock, PatientId, PurposeOfUse, Role};
use perimeter_store::{
    AccessContext, AttemptStart, NewStaff, PatientData, Store, ThrottleKey, ThrottleScope,
};
use sqlx::Row;
use time::Duration;

use crate::common::TestDb;

/// An event by Perimeter itself (the CLI, the guard): the store checks user actors in the
/// database, which these tests of the stored state do not need (see `actors.rs`).
fn ev(e: SecurityEvent) -> AuditEvent {
    e.to_audit(
        Actor::System {
            component: "test".into(),
        },
        0,
        &RequestMeta::default(),
    )
}

fn by(user: perimeter_domain::StaffId, role: Role, e: SecurityEvent) -> AuditEvent {
    e.to_audit(
        Actor::User {
            user,
            roles: vec![role],
            session: None,
        },
        0,
        &RequestMeta::default(),
    )
}

async fn setup(
    db: &TestDb,
) -> (
    Store,
    perimeter_domain::PracticeId,
    perimeter_domain::StaffId,
) {
    let keys = KeyRing::generate().unwrap();
    let store = db.open(&keys).await;
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Test Practice").await.unwrap();
    let staff = store
        .create_staff(
            &sys,
            practice,
            &NewStaff {
                username: "dr.who".into(),
                display_name: "Dr Who".into(),
                roles: vec![Role::Clinician],
                password_hash: None,
            },
        )
        .await
        .unwrap();
    (store, practice, staff)
}

async fn mfa_secret_is_sealed_and_steps_only_move_forward(db: TestDb) {
    let (store, _, staff) = setup(&db).await;
    let found = store
        .find_login(&Username::parse("DR.WHO").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, staff);
    assert!(store.load_mfa(staff).await.unwrap().is_none());

    let secret = TotpSecret::generate().unwrap();
    store.start_mfa_enrolment(staff, &secret).await.unwrap();
    let pending = store.load_mfa(staff).await.unwrap().unwrap();
    assert!(!pending.confirmed);
    assert_eq!(pending.secret, secret);
    // The secret is not in the row in clear.
    let mut raw = db.raw().await;
    let row = sqlx::query("SELECT secret_ct FROM staff_mfa")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    let ct: Vec<u8> = row.try_get(0).unwrap();
    assert!(!ct.windows(20).any(|w| w == secret.as_bytes()));

    // Steps only move forward (replays across processes fail the compare-and-set).
    assert!(
        !store.accept_totp_step(staff, 10).await.unwrap(),
        "not confirmed yet"
    );
    let (codes, hashes) = generate_recovery_codes().unwrap();
    assert!(
        store
            .confirm_mfa_enrolment(
                staff,
                100,
                &hashes,
                &ev(SecurityEvent::MfaEnrolled { user: staff })
            )
            .await
            .unwrap()
    );
    assert!(store.load_mfa(staff).await.unwrap().unwrap().confirmed);
    assert!(!store.accept_totp_step(staff, 100).await.unwrap());
    assert!(!store.accept_totp_step(staff, 99).await.unwrap());
    assert!(store.accept_totp_step(staff, 101).await.unwrap());
    assert_eq!(
        store.load_mfa(staff).await.unwrap().unwrap().last_step,
        Some(101)
    );
    // Confirmed MFA cannot be replaced without a reset.
    assert!(
        store
            .start_mfa_enrolment(staff, &TotpSecret::generate().unwrap())
            .await
            .is_err()
    );

    // Recovery codes are single use.
    assert_eq!(store.recovery_codes_left(staff).await.unwrap(), 10);
    let h = hash_recovery_code(codes[3].as_str()).unwrap();
    assert!(store.consume_recovery_code(staff, &h).await.unwrap());
    assert!(!store.consume_recovery_code(staff, &h).await.unwrap());
    assert_eq!(store.recovery_codes_left(staff).await.unwrap(), 9);

    // Reset removes MFA, codes and sessions.
    let s = SessionPolicy::default()
        .start(staff, SessionStage::Authenticated, db.clock.now())
        .unwrap();
    store.insert_session(&s.record).await.unwrap();
    store
        .reset_mfa(staff, &ev(SecurityEvent::MfaReset { user: staff }))
        .await
        .unwrap();
    assert!(store.load_mfa(staff).await.unwrap().is_none());
    assert_eq!(store.recovery_codes_left(staff).await.unwrap(), 0);
    assert!(store.session(&s.record.token_hash).await.unwrap().is_none());
}

async fn sessions_rotate_and_end(db: TestDb) {
    let (store, _, staff) = setup(&db).await;
    let policy = SessionPolicy::default();
    let now = db.clock.now();
    let pending = policy.start(staff, SessionStage::MfaPending, now).unwrap();
    store.insert_session(&pending.record).await.unwrap();
    assert_eq!(
        store.session(&pending.token.hash()).await.unwrap().unwrap(),
        pending.record
    );
    let full = policy
        .rotate(&pending.record, SessionStage::Authenticated, now)
        .unwrap();
    assert!(
        store
            .rotate_session(&pending.record.token_hash, &full.record, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .session(&pending.record.token_hash)
            .await
            .unwrap()
            .is_none()
    );
    // A second rotation of the same old session fails: it is gone.
    assert!(
        !store
            .rotate_session(&pending.record.token_hash, &full.record, None)
            .await
            .unwrap()
    );
    let later = now + Duration::minutes(5);
    store
        .touch_session(&full.record.token_hash, later)
        .await
        .unwrap();
    assert_eq!(
        store
            .session(&full.record.token_hash)
            .await
            .unwrap()
            .unwrap()
            .last_seen_at,
        later
    );
    let other = policy
        .start(staff, SessionStage::Authenticated, now)
        .unwrap();
    store.insert_session(&other.record).await.unwrap();
    assert_eq!(store.count_staff_sessions(staff).await.unwrap(), 2);
    assert!(
        store
            .end_session(
                &other.record.token_hash,
                &ev(SecurityEvent::Logout { user: staff })
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .end_staff_sessions(staff, &ev(SecurityEvent::LogoutEverywhere { user: staff }))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.count_staff_sessions(staff).await.unwrap(), 0);
    // Roles change ends sessions too.
    store.insert_session(&other.record).await.unwrap();
    store
        .set_staff_roles(
            staff,
            &[Role::Nurse, Role::FrontDesk],
            &ev(SecurityEvent::RoleChanged { user: staff }),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_staff(staff).await.unwrap().roles,
        vec![Role::Nurse, Role::FrontDesk]
    );
    assert_eq!(store.count_staff_sessions(staff).await.unwrap(), 0);
}

async fn throttle_counts_atomically_and_lists_lockouts_per_practice(db: TestDb) {
    let (store, practice, staff) = setup(&db).await;
    let sys = AccessContext::system("test");
    let other = store.create_practice(&sys, "Elsewhere").await.unwrap();
    let mut now = db.clock.now();
    // An unknown username locks the same way, and lists for no practice.
    let ghost = ThrottleKey::account("nobody.here");
    for _ in 0..5 {
        now += Duration::seconds(31);
        assert_eq!(
            store.begin_attempt(&ghost, now).await.unwrap(),
            AttemptStart::Go
        );
        store.finish_attempt(&ghost, true, now).await.unwrap();
    }
    // An address lock lists for every practice.
    let addr = ThrottleKey::address("192.0.2.7");
    for _ in 0..20 {
        now += Duration::seconds(31);
        assert_eq!(
            store.begin_attempt(&addr, now).await.unwrap(),
            AttemptStart::Go
        );
        store.finish_attempt(&addr, true, now).await.unwrap();
    }
    // Five failures lock the account (keyed by username) for 15 minutes; the 6th attempt is
    // refused without checking anything.
    let key = ThrottleKey::account("dr.who");
    for i in 0..5 {
        now += Duration::minutes(1);
        assert_eq!(
            store.begin_attempt(&key, now).await.unwrap(),
            AttemptStart::Go,
            "{i}"
        );
        let locked = store.finish_attempt(&key, true, now).await.unwrap();
        assert_eq!(locked.is_some(), i == 4);
    }
    let state = store
        .throttle_state(ThrottleScope::Account, "dr.who")
        .await
        .unwrap();
    assert_eq!(state.locked_until, Some(now + Duration::minutes(15)));
    // Refusals are counted; only the first in the interval asks for an audit record.
    let audits: Vec<bool> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            match store.begin_attempt(&key, now).await.unwrap() {
                AttemptStart::Refused { decision, audit } => {
                    assert!(matches!(decision, ThrottleDecision::LockedUntil(_)));
                    v.push(audit);
                }
                AttemptStart::Go => panic!("a locked account must refuse"),
            }
        }
        v
    };
    assert_eq!(audits, vec![true, false, false]);
    let locks = store.lockouts(practice, now).await.unwrap();
    assert_eq!(locks.len(), 2, "{locks:?}");
    let account = locks
        .iter()
        .find(|l| l.scope == ThrottleScope::Account)
        .unwrap();
    assert_eq!(account.subject, "dr.who");
    assert_eq!(account.staff, Some(staff));
    assert_eq!(account.refused, 3);
    assert!(locks.iter().any(|l| l.scope == ThrottleScope::Address));
    let elsewhere = store.lockouts(other, now).await.unwrap();
    assert_eq!(elsewhere.len(), 1);
    assert_eq!(elsewhere[0].scope, ThrottleScope::Address);
    assert!(
        store
            .clear_throttle(
                ThrottleScope::Account,
                "dr.who",
                &ev(SecurityEvent::AccountUnlocked { user: staff })
            )
            .await
            .unwrap()
    );
    assert_eq!(store.lockouts(practice, now).await.unwrap().len(), 1);
    assert_eq!(
        store
            .throttle_state(ThrottleScope::Account, "dr.who")
            .await
            .unwrap(),
        Default::default()
    );
    // A completed log-in forgets the failures.
    store.begin_attempt(&key, now).await.unwrap();
    store.finish_attempt(&key, true, now).await.unwrap();
    store.clear_attempts(&key).await.unwrap();
    assert_eq!(
        store
            .throttle_state(ThrottleScope::Account, "dr.who")
            .await
            .unwrap(),
        Default::default()
    );
}

async fn parallel_attempts_cannot_overrun_the_lockout(db: TestDb) {
    let (store, _, _) = setup(&db).await;
    let now = db.clock.now();
    // One attempt at a time per account: of 16 simultaneous attempts exactly one goes ahead.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .begin_attempt(&ThrottleKey::account("dr.who"), now)
                .await
                .unwrap()
        }));
    }
    let mut went = 0;
    for t in tasks {
        if t.await.unwrap() == AttemptStart::Go {
            went += 1;
        }
    }
    assert_eq!(went, 1);
    // Many attackers, each retrying as soon as it may, while the clock moves on: the
    // failures are counted exactly (no lost update), so no more than five checks ever run
    // before the lock, however the attempts interleave.
    let clock = db.clock.clone();
    store
        .finish_attempt(&ThrottleKey::account("dr.who"), false, now)
        .await
        .unwrap();
    let checked = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let clock = clock.clone();
        let checked = checked.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..40 {
                let t = clock.now();
                if store
                    .begin_attempt(&ThrottleKey::account("dr.who"), t)
                    .await
                    .unwrap()
                    == AttemptStart::Go
                {
                    checked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    // The (wrong) password check would run here.
                    store
                        .finish_attempt(&ThrottleKey::account("dr.who"), true, t)
                        .await
                        .unwrap();
                }
                // Wait out any delay (the policy's delays are seconds; locks are minutes).
                clock.advance(Duration::seconds(5));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let state = store
        .throttle_state(ThrottleScope::Account, "dr.who")
        .await
        .unwrap();
    assert!(state.lockouts >= 1, "{state:?}");
    // 8 × 40 × 5 s is under 30 minutes: one lock of 15 minutes, then at most five more checks
    // before the second lock.
    let n = checked.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        n <= 5 * (state.lockouts + 1),
        "{n} checks for {} lockouts",
        state.lockouts
    );
}

async fn api_tokens_are_stored_hashed_and_revocable(db: TestDb) {
    let (store, practice, staff) = setup(&db).await;
    let now = db.clock.now();
    let scope = || ApiTokenScope {
        permissions: [Permission::UseGateway].into_iter().collect(),
        purposes: [PurposeOfUse::Operations].into_iter().collect(),
    };
    // A person's account gets no token: people sign in.
    let personal = create_api_token(staff, "mine", scope(), now + Duration::days(30), now).unwrap();
    assert!(matches!(
        store
            .insert_api_token(
                &personal.record,
                &ev(SecurityEvent::ApiTokenCreated {
                    token: personal.record.id,
                }),
            )
            .await,
        Err(perimeter_store::StoreError::Invalid {
            field: "client",
            ..
        })
    ));
    let bot = store
        .create_staff(
            &AccessContext::system("test"),
            practice,
            &NewStaff {
                username: "scheduling-bot".into(),
                display_name: "Scheduling bot".into(),
                roles: vec![Role::Service],
                password_hash: None,
            },
        )
        .await
        .unwrap();
    let new = create_api_token(
        bot,
        "scheduling bot",
        ApiTokenScope {
            permissions: [Permission::UseGateway].into_iter().collect(),
            purposes: [PurposeOfUse::Operations].into_iter().collect(),
        },
        now + Duration::days(30),
        now,
    )
    .unwrap();
    store
        .insert_api_token(
            &new.record,
            &ev(SecurityEvent::ApiTokenCreated {
                token: new.record.id,
            }),
        )
        .await
        .unwrap();
    let found = store
        .api_token_by_hash(&new.token.hash())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, new.record);
    assert_eq!(store.list_api_tokens(practice).await.unwrap().len(), 1);
    let sys = AccessContext::system("test");
    let other = store.create_practice(&sys, "Elsewhere").await.unwrap();
    assert!(store.list_api_tokens(other).await.unwrap().is_empty());
    // Another practice's administrator cannot revoke it.
    assert!(
        !store
            .revoke_api_token(
                other,
                new.record.id,
                now,
                &ev(SecurityEvent::ApiTokenRevoked {
                    token: new.record.id
                })
            )
            .await
            .unwrap()
    );
    let mut raw = db.raw().await;
    let rows = sqlx::query("SELECT * FROM api_token")
        .fetch_all(&mut raw)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    for i in 0..rows[0].len() {
        if let Ok(s) = rows[0].try_get::<String, _>(i) {
            assert!(!s.contains(&new.token.as_str()[4..]));
        }
    }
    let later = now + Duration::hours(1);
    assert!(
        store
            .revoke_api_token(
                practice,
                new.record.id,
                later,
                &ev(SecurityEvent::ApiTokenRevoked {
                    token: new.record.id
                })
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_api_token(
                practice,
                new.record.id,
                later,
                &ev(SecurityEvent::ApiTokenRevoked {
                    token: new.record.id
                })
            )
            .await
            .unwrap()
    );
    let revoked = store
        .api_token_by_hash(&new.token.hash())
        .await
        .unwrap()
        .unwrap();
    assert!(
        revoked
            .authorize(later, Permission::UseGateway, None)
            .is_err()
    );
}

async fn break_glass_is_sealed_audited_and_notified(db: TestDb) {
    let (store, practice, staff) = setup(&db).await;
    let sys = AccessContext::system("test");
    let patient = store
        .create_patient(
            &sys,
            practice,
            &PatientData {
                given_name: "Ada".into(),
                family_name: "Lovelace".into(),
                birth_date: None,
                phone: None,
                email: None,
                address: None,
                mrn: None,
                notes: None,
            },
        )
        .await
        .unwrap();
    let now = db.clock.now();
    let why = Justification::new("Found unresponsive, need medication history now").unwrap();
    let (grant, note) = BreakGlassPolicy::default()
        .grant(
            staff,
            &[Role::Clinician],
            patient,
            BreakGlassReason::MedicalEmergency,
            &why,
            now,
        )
        .unwrap();
    let event = SecurityEvent::BreakGlass {
        grant: grant.clone(),
    }
    .to_audit(
        Actor::User {
            user: staff,
            roles: vec![Role::Clinician],
            session: None,
        },
        db.clock.now_millis(),
        &RequestMeta::default(),
    );
    // A patient of another practice cannot be reached, by its clinicians or by naming it.
    let other = store.create_practice(&sys, "Elsewhere").await.unwrap();
    let theirs = store
        .create_staff(
            &sys,
            other,
            &NewStaff {
                username: "dr.elsewhere".into(),
                display_name: "Dr Elsewhere".into(),
                roles: vec![Role::Clinician],
                password_hash: None,
            },
        )
        .await
        .unwrap();
    let (their_grant, their_note) = BreakGlassPolicy::default()
        .grant(
            theirs,
            &[Role::Clinician],
            patient,
            BreakGlassReason::MedicalEmergency,
            &why,
            now,
        )
        .unwrap();
    assert!(matches!(
        store
            .grant_break_glass(
                other,
                &their_grant,
                &why,
                &their_note,
                &by(
                    theirs,
                    Role::Clinician,
                    SecurityEvent::BreakGlass {
                        grant: their_grant.clone()
                    }
                )
            )
            .await,
        Err(perimeter_store::StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .grant_break_glass(other, &grant, &why, &note, &event)
            .await,
        Err(perimeter_store::StoreError::NotFound { .. })
    ));
    store
        .grant_break_glass(practice, &grant, &why, &note, &event)
        .await
        .unwrap();
    assert_eq!(
        store
            .active_break_glass(staff, patient, now + Duration::minutes(59))
            .await
            .unwrap(),
        Some(grant.clone())
    );
    assert!(
        store
            .active_break_glass(staff, patient, now + Duration::minutes(60))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .active_break_glass(staff, PatientId::new(), now)
            .await
            .unwrap()
            .is_none()
    );
    let pending = store.pending_notifications().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].kind, "break_glass");
    assert!(pending[0].payload.contains(&grant.id.to_string()));
    assert!(!pending[0].payload.contains("unresponsive"));
    // The notice is for the practice's privacy officers only.
    assert_eq!(pending[0].practice, Some(practice));
    assert_eq!(pending[0].recipient_role, Some(Role::PrivacyOfficer));
    assert!(
        store
            .notifications_for(practice, &[Role::Clinician, Role::Admin], true, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .notifications_for(other, &[Role::PrivacyOfficer], true, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let officer = store
        .create_staff(
            &sys,
            practice,
            &NewStaff {
                username: "po".into(),
                display_name: "Privacy".into(),
                roles: vec![Role::PrivacyOfficer],
                password_hash: None,
            },
        )
        .await
        .unwrap();
    // Staff see what their stored roles are addressed: the clinician nothing, the officer it.
    assert!(
        store
            .staff_notifications(staff, true, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let mine = store.staff_notifications(officer, false, 10).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert!(matches!(
        store
            .staff_notifications(perimeter_domain::StaffId::new(), true, 10)
            .await,
        Err(perimeter_store::StoreError::Forbidden { .. })
    ));
    assert!(
        !store
            .mark_staff_notification_delivered(staff, mine[0].id)
            .await
            .unwrap()
    );
    // A disabled officer sees and acknowledges nothing.
    let mut raw = db.raw().await;
    sqlx::query("UPDATE staff_user SET disabled_at = 1 WHERE id = $1")
        .bind(officer.to_string())
        .execute(&mut raw)
        .await
        .unwrap();
    assert!(matches!(
        store.staff_notifications(officer, false, 10).await,
        Err(perimeter_store::StoreError::Forbidden { .. })
    ));
    assert!(matches!(
        store
            .mark_staff_notification_delivered(officer, mine[0].id)
            .await,
        Err(perimeter_store::StoreError::Forbidden { .. })
    ));
    sqlx::query("UPDATE staff_user SET disabled_at = NULL WHERE id = $1")
        .bind(officer.to_string())
        .execute(&mut raw)
        .await
        .unwrap();
    drop(raw);
    assert!(
        store
            .mark_staff_notification_delivered(officer, mine[0].id)
            .await
            .unwrap()
    );
    assert!(store.pending_notifications().await.unwrap().is_empty());
    let delivered = store
        .notifications_for(practice, &[Role::PrivacyOfficer], true, 10)
        .await
        .unwrap();
    assert_eq!(delivered[0].delivered_to, Some(officer));
    // The justification is sealed at rest and readable through the audited review.
    let mut raw = db.raw().await;
    let row = sqlx::query("SELECT reason_ct FROM break_glass_grant")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    let ct: Vec<u8> = row.try_get(0).unwrap();
    assert!(!String::from_utf8_lossy(&ct).contains("unresponsive"));
    let review = by(
        officer,
        Role::PrivacyOfficer,
        SecurityEvent::BreakGlass {
            grant: grant.clone(),
        },
    );
    let (g, text) = store
        .break_glass_justification(practice, grant.id, &review)
        .await
        .unwrap();
    assert_eq!(g, grant);
    assert_eq!(text.as_str(), why.as_str());
    assert!(
        store
            .break_glass_justification(
                other,
                grant.id,
                &ev(SecurityEvent::BreakGlass {
                    grant: grant.clone(),
                })
            )
            .await
            .is_err()
    );
    // Not by the clinician who broke the glass, nor by the officer naming another practice.
    assert!(
        store
            .break_glass_justification(practice, grant.id, &event)
            .await
            .is_err()
    );
    assert!(
        store
            .break_glass_justification(other, grant.id, &review)
            .await
            .is_err()
    );
    // The privacy officer's review: the stated reasons (each read audited), then marked once.
    let ctx = AccessContext::user(
        officer,
        vec![Role::PrivacyOfficer],
        PurposeOfUse::Operations,
    );
    let before = store.audit_records(0, 10_000).await.unwrap().len();
    let list = store
        .break_glass_review_list(&ctx, practice, true, 50)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0].justification.as_ref().unwrap().as_str(),
        why.as_str()
    );
    assert_eq!(
        store.audit_records(0, 10_000).await.unwrap().len(),
        before + 1
    );
    assert!(matches!(
        store.break_glass_review_list(&ctx, other, false, 50).await,
        Err(perimeter_store::StoreError::NotFound { .. })
    ));
    assert!(
        store
            .break_glass_review_list(&sys, other, false, 50)
            .await
            .unwrap()
            .is_empty()
    );
    let reviewed = ev(SecurityEvent::BreakGlassReviewed {
        grant: grant.id,
        patient,
        outcome: "appropriate",
    });
    assert_eq!(
        store
            .mark_break_glass_reviewed(other, grant.id, officer, "appropriate", &reviewed)
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .mark_break_glass_reviewed(practice, grant.id, officer, "maybe", &reviewed)
            .await
            .is_err()
    );
    assert_eq!(
        store
            .mark_break_glass_reviewed(practice, grant.id, officer, "appropriate", &reviewed)
            .await
            .unwrap(),
        Some(true)
    );
    assert_eq!(
        store
            .mark_break_glass_reviewed(practice, grant.id, officer, "inappropriate", &reviewed)
            .await
            .unwrap(),
        Some(false)
    );
    assert!(
        store
            .break_glass_review_list(&ctx, practice, true, 50)
            .await
            .unwrap()
            .is_empty()
    );
    let all = store
        .break_glass_review_list(&ctx, practice, false, 50)
        .await
        .unwrap();
    assert_eq!(all[0].review_outcome.as_deref(), Some("appropriate"));
    assert_eq!(all[0].reviewed_by, Some(officer));
    // The audit trail flags it, without the text.
    let records = store.audit_records(0, 1000).await.unwrap();
    let flagged: Vec<_> = records
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.event).contains("\"break_glass\""))
        .collect();
    assert!(!flagged.is_empty());
    for r in &records {
        assert!(!String::from_utf8_lossy(&r.event).contains("unresponsive"));
    }
}

crate::both_backends!(
    mfa_secret_is_sealed_and_steps_only_move_forward,
    sessions_rotate_and_end,
    throttle_counts_atomically_and_lists_lockouts_per_practice,
    parallel_attempts_cannot_overrun_the_lockout,
    api_tokens_are_stored_hashed_and_revocable,
    break_glass_is_sealed_audited_and_notified,
);

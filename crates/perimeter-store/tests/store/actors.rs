//! Every store function that takes its actor from the caller (in an `AccessContext`, or in the
//! audit event it appends) checks that actor in the database in its own transaction: a user
//! whose context claims a role they do not hold, a service client, an anonymous caller, a
//! disabled account and another practice's account are refused, and nothing changes (no row,
//! no audit record). Perimeter itself (the system actor) keeps its path.

use perimeter_audit::{Actor, AuditEvent};
use perimeter_auth::{
    ApiTokenScope, BreakGlassPolicy, BreakGlassReason, Justification, NewApiToken, Permission,
    RequestMeta, SecurityEvent, SessionPolicy, SessionStage, TotpSecret, create_api_token,
};
use perimeter_domain::{Clock, PurposeOfUse, Role, StaffId};
use perimeter_store::{
    AccessContext, Channel, ConversationStatus, Direction, NewMessage, NewRepresentative, NewStaff,
    Scope, Store, StoreError, ThrottleKey, ThrottleScope,
};
use time::Duration;

use crate::common::TestDb;
use crate::views::{World, patient_data, world};

/// A user actor claiming `claims` (the store must not believe it).
fn user(user: StaffId, claims: &[Role]) -> Actor {
    Actor::User {
        user,
        roles: claims.to_vec(),
        session: None,
    }
}

fn system() -> Actor {
    Actor::System {
        component: "test".into(),
    }
}

fn service(w: &World) -> Actor {
    Actor::Service {
        client: w.id(Role::Service),
    }
}

fn ev(actor: &Actor, e: SecurityEvent) -> AuditEvent {
    e.to_audit(actor.clone(), 0, &RequestMeta::default())
}

fn ctx(actor: &Actor) -> AccessContext {
    AccessContext {
        actor: actor.clone(),
        purpose: Some(PurposeOfUse::Operations),
        ..AccessContext::system("unused")
    }
}

/// The error of a call that must have been refused.
fn refused<T>(r: Result<T, StoreError>) -> StoreError {
    match r {
        Ok(_) => panic!("the store allowed a call it must refuse"),
        Err(e) => e,
    }
}

fn forbidden<T>(r: Result<T, StoreError>, what: &str) {
    let e = refused(r);
    assert!(matches!(e, StoreError::Forbidden { .. }), "{what}: {e}");
}

fn not_found<T>(r: Result<T, StoreError>, what: &str) {
    let e = refused(r);
    assert!(matches!(e, StoreError::NotFound { .. }), "{what}: {e}");
}

/// Refused: `NotFound` for an account of another practice (`elsewhere`: ours does not exist
/// for it, nor do our records), `Forbidden` for the others.
fn refused_as<T>(r: Result<T, StoreError>, elsewhere: bool, what: &str) {
    if elsewhere {
        not_found(r, what)
    } else {
        forbidden(r, what)
    }
}

async fn head(s: &Store) -> u64 {
    s.audit_head().await.unwrap().map_or(0, |h| h.size)
}

async fn account(
    s: &Store,
    practice: perimeter_domain::PracticeId,
    name: &str,
    role: Role,
) -> StaffId {
    s.create_staff(
        &AccessContext::system("test"),
        practice,
        &NewStaff {
            username: name.into(),
            display_name: name.into(),
            roles: vec![role],
            password_hash: None,
        },
    )
    .await
    .unwrap()
}

async fn staff_administration_checks_the_actor_in_the_database(db: TestDb) {
    let w = world(&db).await;
    let s = &w.store;
    let sys = system();
    let admin = w.id(Role::Admin);
    let nurse = w.id(Role::Nurse);
    let sched = w.id(Role::Scheduler);
    let client = w.id(Role::Service);
    let now = db.clock.now();
    // The nurse's state, which no refused call may change: a session, MFA, a lockout; and a
    // token of the practice's service client.
    let session = SessionPolicy::default()
        .start(nurse, SessionStage::Authenticated, now)
        .unwrap();
    s.insert_session(&session.record).await.unwrap();
    s.start_mfa_enrolment(nurse, &TotpSecret::generate().unwrap())
        .await
        .unwrap();
    assert!(
        s.confirm_mfa_enrolment(
            nurse,
            1,
            &[],
            &ev(&sys, SecurityEvent::MfaEnrolled { user: nurse })
        )
        .await
        .unwrap()
    );
    let nurse_name = s.get_staff(nurse).await.unwrap().username;
    let key = ThrottleKey::account(&nurse_name);
    let addr = ThrottleKey::address("192.0.2.44");
    let mut t = now;
    for _ in 0..20 {
        t += Duration::seconds(31);
        for k in [&key, &addr] {
            s.begin_attempt(k, t).await.unwrap();
            s.finish_attempt(k, true, t).await.unwrap();
        }
    }
    let locked = |scope| async move {
        s.throttle_state(
            scope,
            if scope == ThrottleScope::Account {
                "nurse"
            } else {
                "192.0.2.44"
            },
        )
        .await
        .unwrap()
        .locked_until
        .is_some()
    };
    assert!(locked(ThrottleScope::Account).await && locked(ThrottleScope::Address).await);
    let token = insert_token(s, client, "bot", Permission::UseGateway).await;
    // Another practice's administrator, and a disabled administrator of this one.
    let elsewhere = account(s, w.other_practice, "admin-elsewhere", Role::Admin).await;
    let former = account(s, w.practice, "admin-former", Role::Admin).await;
    assert!(
        s.set_staff_disabled(
            former,
            true,
            &ev(&sys, SecurityEvent::UserDisabled { user: former })
        )
        .await
        .unwrap()
    );

    let before = head(s).await;
    let second = create_api_token(
        client,
        "forged",
        ApiTokenScope {
            permissions: [Permission::UseGateway].into_iter().collect(),
            purposes: [PurposeOfUse::Operations].into_iter().collect(),
        },
        now + Duration::days(30),
        now,
    )
    .unwrap();
    // A scheduler and a privacy officer who claim to be administrators, a service client, an
    // anonymous caller and a disabled administrator.
    let privacy = w.id(Role::PrivacyOfficer);
    for actor in [
        user(sched, &[Role::Admin]),
        user(privacy, &[Role::Admin]),
        service(&w),
        Actor::Anonymous,
        user(former, &[Role::Admin]),
    ] {
        let who = format!("{actor:?}");
        forbidden(
            s.set_staff_roles(
                nurse,
                &[Role::Admin],
                &ev(&actor, SecurityEvent::RoleChanged { user: nurse }),
            )
            .await,
            &who,
        );
        forbidden(
            s.set_staff_disabled(
                nurse,
                true,
                &ev(&actor, SecurityEvent::UserDisabled { user: nurse }),
            )
            .await,
            &who,
        );
        forbidden(
            s.reset_mfa(nurse, &ev(&actor, SecurityEvent::MfaReset { user: nurse }))
                .await,
            &who,
        );
        forbidden(
            s.insert_api_token(
                &second.record,
                &ev(
                    &actor,
                    SecurityEvent::ApiTokenCreated {
                        token: second.record.id,
                    },
                ),
            )
            .await,
            &who,
        );
        forbidden(
            s.revoke_api_token(
                w.practice,
                token.record.id,
                now,
                &ev(
                    &actor,
                    SecurityEvent::ApiTokenRevoked {
                        token: token.record.id,
                    },
                ),
            )
            .await,
            &who,
        );
        for scope in [ThrottleScope::Account, ThrottleScope::Address] {
            let subject = if scope == ThrottleScope::Account {
                "nurse"
            } else {
                "192.0.2.44"
            };
            forbidden(
                s.clear_throttle(scope, subject, &ev(&actor, SecurityEvent::AddressUnlocked))
                    .await,
                &who,
            );
        }
    }
    // Ending another user's sessions needs end_user_sessions (administrators, privacy
    // officers): not a scheduler claiming it, a service client or a disabled administrator.
    for actor in [
        user(sched, &[Role::Admin]),
        service(&w),
        Actor::Anonymous,
        user(former, &[Role::Admin]),
    ] {
        forbidden(
            s.end_staff_sessions(
                nurse,
                &ev(&actor, SecurityEvent::SessionsEndedByAdmin { user: nurse }),
            )
            .await,
            &format!("{actor:?}"),
        );
    }
    // Another practice's administrator: the account is not found, and so is this practice (a
    // revocation naming it).
    let theirs = user(elsewhere, &[Role::Admin]);
    not_found(
        s.set_staff_roles(
            nurse,
            &[Role::Admin],
            &ev(&theirs, SecurityEvent::RoleChanged { user: nurse }),
        )
        .await,
        "roles",
    );
    not_found(
        s.set_staff_disabled(
            nurse,
            true,
            &ev(&theirs, SecurityEvent::UserDisabled { user: nurse }),
        )
        .await,
        "disable",
    );
    not_found(
        s.reset_mfa(nurse, &ev(&theirs, SecurityEvent::MfaReset { user: nurse }))
            .await,
        "mfa",
    );
    not_found(
        s.end_staff_sessions(
            nurse,
            &ev(&theirs, SecurityEvent::SessionsEndedByAdmin { user: nurse }),
        )
        .await,
        "sessions",
    );
    not_found(
        s.insert_api_token(
            &second.record,
            &ev(
                &theirs,
                SecurityEvent::ApiTokenCreated {
                    token: second.record.id,
                },
            ),
        )
        .await,
        "token for another practice's client",
    );
    not_found(
        s.revoke_api_token(
            w.practice,
            token.record.id,
            now,
            &ev(
                &theirs,
                SecurityEvent::ApiTokenRevoked {
                    token: token.record.id,
                },
            ),
        )
        .await,
        "revoke naming another practice",
    );
    not_found(
        s.clear_throttle(
            ThrottleScope::Account,
            "nurse",
            &ev(&theirs, SecurityEvent::AccountUnlocked { user: nurse }),
        )
        .await,
        "unlock another practice's account",
    );
    // Administrators change neither their own roles nor their own account's state.
    let real = user(admin, &[Role::Admin]);
    forbidden(
        s.set_staff_roles(
            admin,
            &[Role::Admin, Role::PrivacyOfficer],
            &ev(&real, SecurityEvent::RoleChanged { user: admin }),
        )
        .await,
        "own roles",
    );
    forbidden(
        s.set_staff_disabled(
            admin,
            true,
            &ev(&real, SecurityEvent::UserDisabled { user: admin }),
        )
        .await,
        "own account",
    );

    // Nothing changed.
    assert_eq!(head(s).await, before, "no audit record of a refused call");
    let n = s.get_staff(nurse).await.unwrap();
    assert_eq!(n.roles, vec![Role::Nurse]);
    assert!(n.disabled_at_millis.is_none());
    assert!(
        s.get_staff(admin)
            .await
            .unwrap()
            .disabled_at_millis
            .is_none()
    );
    assert!(s.load_mfa(nurse).await.unwrap().unwrap().confirmed);
    assert_eq!(s.count_staff_sessions(nurse).await.unwrap(), 1);
    let tokens = s.list_api_tokens(w.practice).await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].revoked_at.is_none());
    assert!(locked(ThrottleScope::Account).await && locked(ThrottleScope::Address).await);

    // The real administrator may do each; any practice's administrator may lift an address's
    // lockout (addresses belong to no practice).
    assert!(
        s.clear_throttle(
            ThrottleScope::Address,
            "192.0.2.44",
            &ev(&theirs, SecurityEvent::AddressUnlocked)
        )
        .await
        .unwrap()
    );
    assert!(
        s.clear_throttle(
            ThrottleScope::Account,
            "nurse",
            &ev(&real, SecurityEvent::AccountUnlocked { user: nurse })
        )
        .await
        .unwrap()
    );
    s.insert_api_token(
        &second.record,
        &ev(
            &real,
            SecurityEvent::ApiTokenCreated {
                token: second.record.id,
            },
        ),
    )
    .await
    .unwrap();
    assert!(
        s.revoke_api_token(
            w.practice,
            second.record.id,
            now,
            &ev(
                &real,
                SecurityEvent::ApiTokenRevoked {
                    token: second.record.id
                }
            ),
        )
        .await
        .unwrap()
    );
    // A user signs themselves out everywhere (own_account); a privacy officer may end
    // another's sessions (end_user_sessions); a nurse may not end a scheduler's.
    assert_eq!(
        s.end_staff_sessions(
            nurse,
            &ev(
                &user(nurse, &[Role::Nurse]),
                SecurityEvent::LogoutEverywhere { user: nurse }
            )
        )
        .await
        .unwrap(),
        1
    );
    forbidden(
        s.end_staff_sessions(
            sched,
            &ev(
                &user(nurse, &[Role::Admin]),
                SecurityEvent::SessionsEndedByAdmin { user: sched },
            ),
        )
        .await,
        "nurse ending a scheduler's sessions",
    );
    s.end_staff_sessions(
        sched,
        &ev(
            &user(privacy, &[Role::PrivacyOfficer]),
            SecurityEvent::SessionsEndedByAdmin { user: sched },
        ),
    )
    .await
    .unwrap();
    s.reset_mfa(nurse, &ev(&real, SecurityEvent::MfaReset { user: nurse }))
        .await
        .unwrap();
    assert!(s.load_mfa(nurse).await.unwrap().is_none());
    s.set_staff_roles(
        nurse,
        &[Role::Nurse, Role::FrontDesk],
        &ev(&real, SecurityEvent::RoleChanged { user: nurse }),
    )
    .await
    .unwrap();
    assert!(
        s.set_staff_disabled(
            nurse,
            true,
            &ev(&real, SecurityEvent::UserDisabled { user: nurse })
        )
        .await
        .unwrap()
    );
    // A missing account is not found, for Perimeter itself too.
    let ghost = StaffId::new();
    not_found(
        s.set_staff_roles(
            ghost,
            &[Role::Nurse],
            &ev(&sys, SecurityEvent::RoleChanged { user: ghost }),
        )
        .await,
        "ghost",
    );
}

async fn emergency_access_checks_the_actor_in_the_database(db: TestDb) {
    let w = world(&db).await;
    let s = &w.store;
    let clinician = w.id(Role::Clinician);
    let nurse = w.id(Role::Nurse);
    let sched = w.id(Role::Scheduler);
    let officer = w.id(Role::PrivacyOfficer);
    let why = Justification::new("Covering the on-call list; urgent rash follow-up").unwrap();
    let now = db.clock.now();
    let grant_for = |staff| {
        BreakGlassPolicy::default()
            .grant(
                staff,
                &[Role::Clinician],
                w.patient,
                BreakGlassReason::CoveringClinician,
                &why,
                now,
            )
            .unwrap()
    };
    let before = head(s).await;
    // A scheduler claiming to be a clinician, a service client, an anonymous caller; a
    // clinician granting a nurse; a clinician naming another practice.
    let (sg, snote) = grant_for(sched);
    for actor in [
        user(sched, &[Role::Clinician]),
        service(&w),
        Actor::Anonymous,
    ] {
        forbidden(
            s.grant_break_glass(
                w.practice,
                &sg,
                &why,
                &snote,
                &ev(&actor, SecurityEvent::BreakGlass { grant: sg.clone() }),
            )
            .await,
            &format!("{actor:?}"),
        );
    }
    let (ng, nnote) = grant_for(nurse);
    forbidden(
        s.grant_break_glass(
            w.practice,
            &ng,
            &why,
            &nnote,
            &ev(
                &user(clinician, &[Role::Clinician]),
                SecurityEvent::BreakGlass { grant: ng.clone() },
            ),
        )
        .await,
        "a grant for someone else",
    );
    let (cg, cnote) = grant_for(clinician);
    let by_clinician = ev(
        &user(clinician, &[Role::Clinician]),
        SecurityEvent::BreakGlass { grant: cg.clone() },
    );
    not_found(
        s.grant_break_glass(w.other_practice, &cg, &why, &cnote, &by_clinician)
            .await,
        "naming another practice",
    );
    assert_eq!(head(s).await, before);
    assert!(
        s.active_break_glass(sched, w.patient, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.active_break_glass(nurse, w.patient, now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.pending_notifications().await.unwrap().is_empty());
    // The clinician may.
    s.grant_break_glass(w.practice, &cg, &why, &cnote, &by_clinician)
        .await
        .unwrap();
    assert!(
        s.active_break_glass(clinician, w.patient, now)
            .await
            .unwrap()
            .is_some()
    );

    // The review: only a privacy officer of the practice, by the database.
    let before = head(s).await;
    let claims_po = user(clinician, &[Role::PrivacyOfficer]);
    let auditor = user(w.id(Role::Auditor), &[Role::PrivacyOfficer]);
    let po = user(officer, &[Role::PrivacyOfficer]);
    for actor in [claims_po.clone(), auditor, service(&w), Actor::Anonymous] {
        let who = format!("{actor:?}");
        forbidden(
            s.break_glass_review_list(&ctx(&actor), w.practice, false, 50)
                .await,
            &who,
        );
        forbidden(
            s.break_glass_justification(
                w.practice,
                cg.id,
                &ev(&actor, SecurityEvent::BreakGlass { grant: cg.clone() }),
            )
            .await,
            &who,
        );
        forbidden(
            s.mark_break_glass_reviewed(
                w.practice,
                cg.id,
                officer,
                "appropriate",
                &ev(
                    &actor,
                    SecurityEvent::BreakGlassReviewed {
                        grant: cg.id,
                        patient: w.patient,
                        outcome: "appropriate",
                    },
                ),
            )
            .await,
            &who,
        );
    }
    not_found(
        s.break_glass_review_list(&ctx(&po), w.other_practice, false, 50)
            .await,
        "naming another practice",
    );
    // The officer records their own review, not someone else's.
    forbidden(
        s.mark_break_glass_reviewed(
            w.practice,
            cg.id,
            w.id(Role::Admin),
            "appropriate",
            &ev(
                &po,
                SecurityEvent::BreakGlassReviewed {
                    grant: cg.id,
                    patient: w.patient,
                    outcome: "appropriate",
                },
            ),
        )
        .await,
        "a review in another's name",
    );
    assert_eq!(head(s).await, before, "nothing read or written");
    assert!(
        s.break_glass_review_list(&ctx(&po), w.practice, true, 50)
            .await
            .unwrap()
            .len()
            == 1
    );
    assert_eq!(
        s.mark_break_glass_reviewed(
            w.practice,
            cg.id,
            officer,
            "appropriate",
            &ev(
                &po,
                SecurityEvent::BreakGlassReviewed {
                    grant: cg.id,
                    patient: w.patient,
                    outcome: "appropriate"
                }
            ),
        )
        .await
        .unwrap(),
        Some(true)
    );
}

async fn channel_staff_calls_check_the_actor_in_the_database(db: TestDb) {
    let w = world(&db).await;
    let s = &w.store;
    let sys = AccessContext::system("test");
    let desk = w.id(Role::FrontDesk);
    let sched = w.id(Role::Scheduler);
    let clinician = w.id(Role::Clinician);
    let unknown = s
        .record_inbound(
            &sys,
            &crate::channels::inbound(
                w.practice,
                "SM00000000000000000000000000ACT1",
                "+1 202 555 0177",
                "Is this the clinic?",
            ),
        )
        .await
        .unwrap();
    let rep = NewRepresentative {
        name: "Dora Daughter".into(),
        phone: "+1 202 555 0133".into(),
        relationship: "child".into(),
        verified: true,
    };
    let existing = s
        .add_representative(&sys, w.practice, w.patient, &rep, None)
        .await
        .unwrap();
    let elsewhere = account(s, w.other_practice, "desk-elsewhere", Role::FrontDesk).await;
    let before = head(s).await;
    for actor in [
        user(clinician, &[Role::FrontDesk, Role::Scheduler]),
        user(w.id(Role::Admin), &[Role::FrontDesk, Role::Scheduler]),
        user(elsewhere, &[Role::FrontDesk]),
        service(&w),
        Actor::Anonymous,
    ] {
        let who = format!("{actor:?}");
        let theirs = actor == user(elsewhere, &[Role::FrontDesk]);
        let c = ctx(&actor);
        let me = match &actor {
            Actor::User { user, .. } => Some(*user),
            _ => None,
        };
        // register_patient (scheduler, front desk); the clinician and the admin hold it not.
        refused_as(
            s.assign_inbound_patient(&c, w.practice, unknown.receipt, w.patient)
                .await,
            theirs,
            &who,
        );
        refused_as(
            s.add_representative(&c, w.practice, w.patient, &rep, me)
                .await,
            theirs,
            &who,
        );
        refused_as(
            s.update_representative(
                &c,
                w.practice,
                w.patient,
                existing,
                false,
                me.unwrap_or(desk),
            )
            .await,
            theirs,
            &who,
        );
    }
    // triage_conversation (clinician, nurse, front desk): not a scheduler claiming nurse.
    for actor in [user(sched, &[Role::Nurse]), service(&w), Actor::Anonymous] {
        forbidden(
            s.resolve_inbound(&ctx(&actor), w.practice, unknown.receipt)
                .await,
            &format!("{actor:?}"),
        );
    }
    // view_contact_data (the queue staff): not an administrator or auditor claiming it.
    for actor in [
        user(w.id(Role::Admin), &[Role::FrontDesk]),
        user(w.id(Role::Auditor), &[Role::FrontDesk]),
        user(elsewhere, &[Role::FrontDesk]),
        service(&w),
    ] {
        refused_as(
            s.list_representatives(&ctx(&actor), w.practice, w.patient)
                .await,
            actor == user(elsewhere, &[Role::FrontDesk]),
            &format!("{actor:?}"),
        );
    }
    // A user records no one but themselves as the representative's verifier.
    let front = user(desk, &[Role::FrontDesk]);
    forbidden(
        s.add_representative(&ctx(&front), w.practice, w.patient, &rep, Some(sched))
            .await,
        "verified in another's name",
    );
    forbidden(
        s.update_representative(&ctx(&front), w.practice, w.patient, existing, true, sched)
            .await,
        "verified in another's name",
    );
    assert_eq!(head(s).await, before, "nothing read or written");
    assert!(
        s.inbound_entry(w.practice, unknown.receipt)
            .await
            .unwrap()
            .needs_patient
    );
    assert!(
        s.list_inbound(w.practice, false, 100)
            .await
            .unwrap()
            .iter()
            .any(|e| e.id == unknown.receipt),
        "still unresolved"
    );
    assert_eq!(
        s.list_representatives(&sys, w.practice, w.patient)
            .await
            .unwrap()
            .len(),
        1
    );
    // Another practice's front desk acting in its own practice: our patient is not found.
    not_found(
        s.list_representatives(
            &ctx(&user(elsewhere, &[Role::FrontDesk])),
            w.other_practice,
            w.patient,
        )
        .await,
        "another practice's patient",
    );
    // The real holders may.
    let f = ctx(&front);
    assert_eq!(
        s.list_representatives(
            &ctx(&user(w.id(Role::Billing), &[Role::Billing])),
            w.practice,
            w.patient
        )
        .await
        .unwrap()
        .len(),
        1
    );
    s.add_representative(
        &f,
        w.practice,
        w.patient,
        &NewRepresentative {
            phone: "+1 202 555 0134".into(),
            ..rep.clone()
        },
        Some(desk),
    )
    .await
    .unwrap();
    assert!(
        s.update_representative(&f, w.practice, w.patient, existing, true, desk)
            .await
            .unwrap()
    );
    s.assign_inbound_patient(&f, w.practice, unknown.receipt, w.patient)
        .await
        .unwrap();
    assert!(
        s.resolve_inbound(
            &ctx(&user(w.id(Role::Nurse), &[Role::Nurse])),
            w.practice,
            unknown.receipt
        )
        .await
        .unwrap()
    );
}

async fn patient_and_conversation_writes_check_the_actor(db: TestDb) {
    let w = world(&db).await;
    let s = &w.store;
    let sys = AccessContext::system("test");
    let desk = ctx(&user(w.id(Role::FrontDesk), &[Role::FrontDesk]));
    let patients = |p| async move { s.list_patient_ids(p, None, 1000).await.unwrap().len() };
    let (mine, theirs) = (patients(w.practice).await, patients(w.other_practice).await);
    let practices = s.list_practices().await.unwrap().len();
    let before = head(s).await;
    // register_patient: scheduler and front desk of the practice, by the database.
    for actor in [
        user(w.id(Role::Clinician), &[Role::FrontDesk]),
        user(w.id(Role::Admin), &[Role::Scheduler]),
        service(&w),
        Actor::Anonymous,
    ] {
        forbidden(
            s.create_patient(&ctx(&actor), w.practice, &patient_data())
                .await,
            &format!("{actor:?}"),
        );
    }
    not_found(
        s.create_patient(&desk, w.other_practice, &patient_data())
            .await,
        "another practice",
    );
    // Perimeter's own writes: no user, whatever they hold.
    for c in [
        &desk,
        &ctx(&user(w.id(Role::Admin), &[Role::Admin])),
        &ctx(&service(&w)),
    ] {
        forbidden(
            s.update_patient(c, w.patient, &patient_data()).await,
            "update",
        );
        forbidden(s.create_practice(c, "Rogue").await, "practice");
        forbidden(
            s.create_conversation(c, w.patient, Channel::Sms, None)
                .await,
            "conversation",
        );
        forbidden(
            s.add_message(
                c,
                w.conversation,
                &NewMessage {
                    direction: Direction::Outbound,
                    author: None,
                    category: perimeter_domain::DataCategory::AdministrativeMessage,
                    body: "forged".into(),
                },
            )
            .await,
            "message",
        );
        forbidden(
            s.set_conversation_status(c, w.conversation, ConversationStatus::Closed)
                .await,
            "status",
        );
    }
    assert_eq!(head(s).await, before, "nothing written");
    assert_eq!(patients(w.practice).await, mine);
    assert_eq!(patients(w.other_practice).await, theirs);
    assert_eq!(s.list_practices().await.unwrap().len(), practices);
    assert_eq!(
        s.list_messages(&sys, w.conversation, None, 100)
            .await
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        s.get_conversation(&sys, w.conversation)
            .await
            .unwrap()
            .status,
        ConversationStatus::Open
    );
    // The front desk registers a patient; Perimeter itself writes the rest.
    s.create_patient(&desk, w.practice, &patient_data())
        .await
        .unwrap();
    s.create_patient(
        &ctx(&user(w.id(Role::Scheduler), &[Role::Scheduler])),
        w.practice,
        &patient_data(),
    )
    .await
    .unwrap();
    assert_eq!(patients(w.practice).await, mine + 2);
    s.update_patient(&sys, w.patient, &patient_data())
        .await
        .unwrap();
    s.set_conversation_status(&sys, w.conversation, ConversationStatus::Closed)
        .await
        .unwrap();
}

/// The practice-wide metadata reads, asked for a member of staff ([`Scope::Staff`]), read the
/// account's own practice when its stored roles hold the permission the read declares, and
/// refuse unknown, unentitled and disabled accounts; Perimeter names the practice itself.
async fn metadata_reads_check_a_staff_scope_in_the_database(db: TestDb) {
    let w = world(&db).await;
    let s = &w.store;
    let now = s.clock().now();
    // Another practice's administrator: their own practice's lists only.
    let elsewhere = account(s, w.other_practice, "other-admin", Role::Admin).await;
    let admin = Scope::Staff(w.id(Role::Admin));
    let mine: Vec<_> = s
        .staff_directory(admin)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.user.practice_id)
        .collect();
    assert!(!mine.is_empty() && mine.iter().all(|p| *p == w.practice));
    let theirs = s.staff_directory(Scope::Staff(elsewhere)).await.unwrap();
    assert!(
        theirs
            .iter()
            .all(|e| e.user.practice_id == w.other_practice)
    );
    assert_eq!(
        s.staff_directory(w.practice).await.unwrap().len(),
        mine.len(),
        "Perimeter names the practice"
    );
    s.list_api_tokens(admin).await.unwrap();
    s.lockouts(admin, now).await.unwrap();
    s.list_opt_outs(admin, true, 10).await.unwrap();
    s.list_outbox(admin, None, 10).await.unwrap();
    s.is_opted_out(admin, "(202) 555-0100").await.unwrap();
    s.list_inbound(Scope::Staff(w.id(Role::Nurse)), false, 10)
        .await
        .unwrap();
    s.list_contacts(Scope::Staff(w.id(Role::FrontDesk)), 10)
        .await
        .unwrap();
    // Roles the account does not hold, an unknown account, a disabled one: refused.
    let nurse = Scope::Staff(w.id(Role::Nurse));
    forbidden(s.staff_directory(nurse).await, "staff_directory by a nurse");
    forbidden(s.list_api_tokens(nurse).await, "list_api_tokens by a nurse");
    forbidden(s.lockouts(nurse, now).await, "lockouts by a nurse");
    forbidden(
        s.list_opt_outs(nurse, true, 10).await,
        "list_opt_outs by a nurse",
    );
    forbidden(
        s.list_outbox(nurse, None, 10).await,
        "list_outbox by a nurse",
    );
    forbidden(
        s.is_opted_out(nurse, "(202) 555-0100").await,
        "is_opted_out by a nurse",
    );
    forbidden(s.list_contacts(nurse, 10).await, "list_contacts by a nurse");
    forbidden(
        s.list_inbound(Scope::Staff(w.id(Role::Auditor)), false, 10)
            .await,
        "list_inbound by an auditor",
    );
    forbidden(
        s.staff_directory(Scope::Staff(StaffId::new())).await,
        "an unknown account",
    );
    let mut raw = db.raw().await;
    sqlx::query("UPDATE staff_user SET disabled_at = 1 WHERE id = $1")
        .bind(w.id(Role::Admin).to_string())
        .execute(&mut raw)
        .await
        .unwrap();
    forbidden(s.staff_directory(admin).await, "a disabled administrator");
}

/// A service client account of `practice` holding one API token scoped to `permission`, and
/// that token's id.
async fn client_with_token(
    s: &Store,
    practice: perimeter_domain::PracticeId,
    name: &str,
    permission: Permission,
) -> (StaffId, uuid::Uuid) {
    let client = account(s, practice, name, Role::Service).await;
    let token = insert_token(s, client, name, permission).await;
    (client, token.record.id)
}

/// A new API token of `client`, scoped to `permission` for operations, valid 30 days, stored.
async fn insert_token(
    s: &Store,
    client: StaffId,
    label: &str,
    permission: Permission,
) -> NewApiToken {
    let now = s.clock().now();
    let token = create_api_token(
        client,
        label,
        ApiTokenScope {
            permissions: [permission].into_iter().collect(),
            purposes: [PurposeOfUse::Operations].into_iter().collect(),
        },
        now + Duration::days(30),
        now,
    )
    .unwrap();
    s.insert_api_token(
        &token.record,
        &ev(
            &system(),
            SecurityEvent::ApiTokenCreated {
                token: token.record.id,
            },
        ),
    )
    .await
    .unwrap();
    token
}

fn as_client(client: StaffId) -> Actor {
    Actor::Service { client }
}

/// A service client presenting the API token `token` on the request.
fn client_ctx(client: StaffId, token: uuid::Uuid) -> AccessContext {
    AccessContext {
        api_token: Some(token),
        ..ctx(&as_client(client))
    }
}

/// The channel jobs' functions: the intake (`ingest_channel`: Perimeter, or a service client
/// whose account and presented live token the database entitles, in its own practice), the intake's own
/// steps on the conversation, the outbound texts (`reply_to_patient`: Perimeter or a member of
/// staff of the practice, the approver checked too), and Perimeter's own jobs (the sender's
/// claim, the escalation sweep, the web chat). Every refusal changes nothing.
async fn channel_jobs_check_the_actor_in_the_database(db: TestDb) {
    use perimeter_store::{ChatLookup, ChatPolicy, NewSms, Recipient, chat_context};
    use perimeter_workflows::{EscalationRules, ServiceLevels};

    let w = world(&db).await;
    let s = &w.store;
    let sys = AccessContext::system("test");
    let levels = ServiceLevels::default();
    let inbound = |n: u32, body: &str| {
        crate::channels::inbound(w.practice, &format!("SM{n:030}"), "(202) 555-0188", body)
    };
    // Perimeter's intake stores the patient's first message (their number is on file).
    let first = s
        .record_inbound(&sys, &inbound(1, "Can I come Friday?"))
        .await
        .unwrap();
    let conversation = first.conversation.unwrap();
    let triage = inbound(0, "x").routing.triage().unwrap();
    // The voicemail intake's client, and clients the database must not entitle.
    let (voicemail, vm_token) =
        client_with_token(s, w.practice, "voicemail", Permission::IngestChannel).await;
    let (gateway, gateway_token) =
        client_with_token(s, w.practice, "gateway-only", Permission::UseGateway).await;
    let (revoked, revoked_token) =
        client_with_token(s, w.practice, "revoked", Permission::IngestChannel).await;
    let (disabled, disabled_token) =
        client_with_token(s, w.practice, "disabled", Permission::IngestChannel).await;
    let (elsewhere, elsewhere_token) =
        client_with_token(s, w.other_practice, "elsewhere", Permission::IngestChannel).await;
    // The voicemail client's second token, revoked (it still holds its live one), and a token
    // of its own without the scope.
    let vm_revoked = insert_token(s, voicemail, "voicemail-old", Permission::IngestChannel)
        .await
        .record
        .id;
    let vm_unscoped = insert_token(s, voicemail, "voicemail-gw", Permission::UseGateway)
        .await
        .record
        .id;
    let desk_elsewhere = account(s, w.other_practice, "desk-elsewhere", Role::FrontDesk).await;
    let desk_disabled = account(s, w.practice, "desk-disabled", Role::FrontDesk).await;
    let mut raw = db.raw().await;
    sqlx::query("UPDATE api_token SET revoked_at = 1 WHERE client_id = $1 OR id = $2")
        .bind(revoked.to_string())
        .bind(vm_revoked.to_string())
        .execute(&mut raw)
        .await
        .unwrap();
    for who in [disabled, desk_disabled] {
        sqlx::query("UPDATE staff_user SET disabled_at = 1 WHERE id = $1")
            .bind(who.to_string())
            .execute(&mut raw)
            .await
            .unwrap();
    }
    let desk = w.id(Role::FrontDesk);
    let received = s.count_inbound(w.practice).await.unwrap();
    let outbox = s.list_outbox(w.practice, None, 100).await.unwrap().len();
    let before = head(s).await;

    // ingest_channel: the intake and its steps. No member of staff (whatever they claim), no
    // client without the scope, a revoked token, a disabled account, an account that is not a
    // service client, an unknown one, an anonymous caller, another practice's client. The
    // token checked is the one presented: the entitled client presenting none, its revoked
    // one, its unscoped one or another client's is refused too, and so is another account
    // presenting the entitled client's token.
    let mut n = 100;
    for (c, who) in [
        (ctx(&user(desk, &[Role::Service])), "front desk"),
        (
            ctx(&user(w.id(Role::Admin), &[Role::Admin, Role::Service])),
            "administrator",
        ),
        (client_ctx(gateway, gateway_token), "gateway-only client"),
        (client_ctx(revoked, revoked_token), "revoked token"),
        (client_ctx(disabled, disabled_token), "disabled client"),
        (
            client_ctx(w.id(Role::Nurse), vm_token),
            "a nurse with a token",
        ),
        (client_ctx(StaffId::new(), vm_token), "unknown client"),
        (ctx(&Actor::Anonymous), "anonymous"),
        (ctx(&as_client(voicemail)), "voicemail, no token named"),
        (
            client_ctx(voicemail, vm_revoked),
            "voicemail, its revoked token",
        ),
        (
            client_ctx(voicemail, vm_unscoped),
            "voicemail, its unscoped token",
        ),
        (
            client_ctx(voicemail, revoked_token),
            "voicemail, another's token",
        ),
        (
            client_ctx(voicemail, uuid::Uuid::new_v4()),
            "voicemail, no such token",
        ),
        (client_ctx(elsewhere, elsewhere_token), "elsewhere"),
    ] {
        n += 1;
        // Entitled in its own practice, another practice's client finds neither our practice
        // nor our conversation.
        let theirs = who == "elsewhere";
        refused_as(
            s.record_inbound(&c, &inbound(n, "forged")).await,
            theirs,
            who,
        );
        let mut batch = s
            .record_inbound_batch(&[(c.clone(), inbound(n + 1000, "forged"))])
            .await;
        assert_eq!(batch.len(), 1, "{who}");
        refused_as(batch.remove(0), theirs, who);
        refused_as(s.set_triage(&c, conversation, &triage).await, theirs, who);
        refused_as(
            s.record_reminder_reply(&c, conversation, "C", &levels)
                .await,
            theirs,
            who,
        );
    }

    // reply_to_patient: the outbound texts. Not an administrator or auditor claiming a queue
    // role, not a disabled account, not a service client (even the intake's), not anonymous.
    let sms = |approved_by: Option<StaffId>| NewSms {
        practice: w.practice,
        recipient: Recipient::Patient(w.patient),
        to: None,
        body: "Your visit is Friday".into(),
        purpose: "reply",
        conversation: Some(conversation),
        approved_by,
    };
    let reply = |c: AccessContext, approved_by: Option<StaffId>| async move {
        s.queue_conversation_reply(
            &c,
            conversation,
            "Your visit is Friday",
            approved_by,
            perimeter_domain::DataCategory::AdministrativeMessage,
        )
        .await
    };
    for actor in [
        user(w.id(Role::Admin), &[Role::FrontDesk]),
        user(w.id(Role::Auditor), &[Role::Nurse]),
        user(desk_disabled, &[Role::FrontDesk]),
        as_client(voicemail),
        Actor::Anonymous,
    ] {
        let who = format!("{actor:?}");
        let me = match &actor {
            Actor::User { user, .. } => Some(*user),
            _ => None,
        };
        forbidden(s.queue_sms(&ctx(&actor), &sms(me)).await, &who);
        forbidden(reply(ctx(&actor), me).await, &who);
    }
    // Another practice's front desk: neither our practice nor our conversation is found.
    let theirs = user(desk_elsewhere, &[Role::FrontDesk]);
    not_found(
        s.queue_sms(&ctx(&theirs), &sms(Some(desk_elsewhere))).await,
        "naming another practice",
    );
    not_found(
        reply(ctx(&theirs), Some(desk_elsewhere)).await,
        "another practice's conversation",
    );
    // The approver recorded: the acting user themselves; for Perimeter, an active account of
    // the practice that holds reply_to_patient.
    let front = ctx(&user(desk, &[Role::FrontDesk]));
    forbidden(
        s.queue_sms(&front, &sms(Some(w.id(Role::Scheduler)))).await,
        "approved in another's name",
    );
    forbidden(
        reply(front.clone(), Some(w.id(Role::Scheduler))).await,
        "approved in another's name",
    );
    let e = refused(reply(front.clone(), None).await);
    assert!(matches!(e, StoreError::Invalid { .. }), "no approver: {e}");
    for approver in [w.id(Role::Admin), desk_disabled, StaffId::new()] {
        forbidden(
            s.queue_sms(&sys, &sms(Some(approver))).await,
            "an approver without reply_to_patient",
        );
        forbidden(
            reply(sys.clone(), Some(approver)).await,
            "an approver without reply_to_patient",
        );
    }
    not_found(
        reply(sys.clone(), Some(desk_elsewhere)).await,
        "another practice's approver",
    );

    // Perimeter's own jobs: no staff-facing actor, whatever it holds.
    let chat = chat_context(None);
    let (_, token) = perimeter_store::new_chat_token().unwrap();
    let start = perimeter_store::chat_start_subject("192.0.2.1");
    let policy = ChatPolicy::default();
    for actor in [
        user(w.id(Role::Admin), &[Role::Admin]),
        user(desk, &[Role::FrontDesk]),
        as_client(voicemail),
        Actor::Anonymous,
    ] {
        let who = format!("{actor:?}");
        let c = ctx(&actor);
        forbidden(s.claim_due_sms(&c, 10).await, &who);
        forbidden(
            s.escalate_overdue(&c, &EscalationRules::default(), 10)
                .await,
            &who,
        );
        forbidden(
            s.start_chat_session(&c, w.practice, &token, &policy, &start)
                .await,
            &who,
        );
        forbidden(s.chat_session(&c, &policy, &token).await, &who);
    }

    assert_eq!(head(s).await, before, "nothing read or written");
    assert_eq!(s.count_inbound(w.practice).await.unwrap(), received);
    assert_eq!(
        s.list_outbox(w.practice, None, 100).await.unwrap().len(),
        outbox
    );

    // The chat's own context works the chat; a staff-facing one is refused on a live session.
    s.start_chat_session(&chat, w.practice, &token, &policy, &start)
        .await
        .unwrap()
        .unwrap();
    let ChatLookup::Live(session) = s.chat_session(&chat, &policy, &token).await.unwrap() else {
        panic!("the session is live");
    };
    let before = head(s).await;
    let staff_ctx = ctx(&user(w.id(Role::Nurse), &[Role::Nurse]));
    forbidden(
        s.chat_messages(&staff_ctx, &session, None).await,
        "chat messages",
    );
    forbidden(s.end_chat_session(&staff_ctx, &session).await, "end chat");
    let mut chat_message = inbound(2, "Hello from the chat");
    chat_message.channel = Channel::WebChat;
    forbidden(
        s.record_web_chat(&staff_ctx, &session, &chat_message).await,
        "record web chat",
    );
    assert_eq!(head(s).await, before, "nothing read or written");
    s.record_web_chat(&chat, &session, &chat_message)
        .await
        .unwrap();

    // A batch with a refused item: that item gets its refusal, the others are stored.
    let got = s
        .record_inbound_batch(&[
            (client_ctx(gateway, gateway_token), inbound(3, "forged")),
            (sys.clone(), inbound(4, "Also, my address changed")),
            (client_ctx(elsewhere, elsewhere_token), inbound(6, "forged")),
        ])
        .await;
    assert!(
        matches!(got[0], Err(StoreError::Forbidden { .. })),
        "{got:?}"
    );
    assert!(got[1].is_ok(), "{got:?}");
    assert!(
        matches!(got[2], Err(StoreError::NotFound { .. })),
        "{got:?}"
    );
    // The real holders: the voicemail client in its practice, its intake steps, the front
    // desk replying as themselves, Perimeter with an entitled approver, Perimeter's jobs.
    let vm = client_ctx(voicemail, vm_token);
    let out = s
        .record_inbound(&vm, &inbound(5, "Please call me back"))
        .await
        .unwrap();
    assert_eq!(out.conversation, Some(conversation));
    s.set_triage(&vm, conversation, &triage).await.unwrap();
    assert_eq!(
        s.record_reminder_reply(&vm, conversation, "C", &levels)
            .await
            .unwrap(),
        None,
        "no reminder awaits a reply"
    );
    reply(front.clone(), Some(desk)).await.unwrap();
    s.queue_sms(&front, &sms(Some(desk))).await.unwrap();
    s.queue_sms(&sys, &sms(Some(w.id(Role::Nurse))))
        .await
        .unwrap();
    reply(sys.clone(), None).await.unwrap();
    assert_eq!(
        s.count_inbound(w.practice).await.unwrap(),
        received + 3,
        "the batch's second item, the voicemail, the chat message"
    );
    assert_eq!(s.claim_due_sms(&sys, 10).await.unwrap().len(), 4);
    s.escalate_overdue(&sys, &EscalationRules::default(), 10)
        .await
        .unwrap();
}

crate::both_backends!(
    channel_jobs_check_the_actor_in_the_database,
    metadata_reads_check_a_staff_scope_in_the_database,
    staff_administration_checks_the_actor_in_the_database,
    emergency_access_checks_the_actor_in_the_database,
    channel_staff_calls_check_the_actor_in_the_database,
    patient_and_conversation_writes_check_the_actor,
);

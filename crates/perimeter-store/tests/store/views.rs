//! Minimum necessary in the data layer (migration 0005): per-role patient and message views,
//! care teams, emergency grants consulted by the store, audit records that list exactly what
//! was disclosed, installation-wide usernames, staff-facing actors refused on full reads, and
//! the 0005 migration over data written before it.

use std::collections::BTreeSet;

use perimeter_audit::{Action, Actor, AuditEvent};
use perimeter_auth::{
    BreakGlassPolicy, BreakGlassReason, Justification, RequestMeta, SecurityEvent,
};
use perimeter_crypto::KeyRing;
use perimeter_domain::{
    Clock, DataCategory as C, PatientId, PracticeId, PurposeOfUse, Role, StaffId,
};
use perimeter_store::{
    AccessContext, Channel, Direction, NewMessage, NewStaff, PatientData, PatientLookup, Store,
    StoreError, Viewer,
};

use crate::common::TestDb;

pub(crate) struct World {
    pub(crate) store: Store,
    pub(crate) practice: PracticeId,
    pub(crate) other_practice: PracticeId,
    staff: Vec<(Role, StaffId)>,
    pub(crate) patient: PatientId,
    pub(crate) conversation: perimeter_domain::ConversationId,
}

impl World {
    pub(crate) fn viewer(&self, role: Role) -> Viewer {
        Viewer::new(self.staff.iter().find(|(r, _)| *r == role).unwrap().1)
    }
    pub(crate) fn id(&self, role: Role) -> StaffId {
        self.viewer(role).staff
    }
}

pub(crate) fn patient_data() -> PatientData {
    PatientData {
        given_name: "Quinn".into(),
        family_name: "Vieweg".into(),
        birth_date: time::Date::from_calendar_date(1971, time::Month::May, 4).ok(),
        phone: Some("(202) 555-0188".into()),
        email: Some("quinn.vieweg@example.org".into()),
        address: Some("9 Minimum Way".into()),
        mrn: Some("MRN-7731".into()),
        notes: Some("prefers mornings".into()),
    }
}

/// A practice with one account per role, a patient with a conversation of four messages, and
/// another practice with no one in it.
pub(crate) async fn world(db: &TestDb) -> World {
    let store = db.open(&KeyRing::generate().unwrap()).await;
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Clinic").await.unwrap();
    let other_practice = store.create_practice(&sys, "Elsewhere").await.unwrap();
    let mut staff = Vec::new();
    for role in [
        Role::Clinician,
        Role::Nurse,
        Role::Scheduler,
        Role::Billing,
        Role::FrontDesk,
        Role::Admin,
        Role::PrivacyOfficer,
        Role::Auditor,
        Role::Service,
    ] {
        let id = store
            .create_staff(
                &sys,
                practice,
                &NewStaff {
                    username: role.as_str().replace('_', "-"),
                    display_name: role.as_str().into(),
                    roles: vec![role],
                    password_hash: None,
                },
            )
            .await
            .unwrap();
        staff.push((role, id));
    }
    let patient = store
        .create_patient(&sys, practice, &patient_data())
        .await
        .unwrap();
    let conversation = store
        .create_conversation(&sys, patient, Channel::Portal, Some("Follow-up"))
        .await
        .unwrap();
    for (direction, category, body) in [
        (
            Direction::Inbound,
            C::AdministrativeMessage,
            "Can I move my visit to Friday?",
        ),
        (
            Direction::Inbound,
            C::ClinicalMessage,
            "The rash spread to my neck overnight",
        ),
        (
            Direction::Note,
            C::ClinicalMessage,
            "Suspect contact dermatitis",
        ),
        (Direction::Note, C::InternalNote, "Patient prefers SMS"),
    ] {
        db.clock.advance(time::Duration::seconds(1));
        store
            .add_message(
                &sys,
                conversation,
                &NewMessage {
                    direction,
                    author: None,
                    category,
                    body: body.into(),
                },
            )
            .await
            .unwrap();
    }
    World {
        store,
        practice,
        other_practice,
        staff,
        patient,
        conversation,
    }
}

fn cats(list: &[C]) -> BTreeSet<C> {
    list.iter().copied().collect()
}

async fn last_event(store: &Store) -> AuditEvent {
    let head = store.audit_head().await.unwrap().unwrap();
    let r = store.audit_records(head.size - 1, 1).await.unwrap();
    AuditEvent::from_canonical_bytes(&r[0].event).unwrap()
}

async fn patient_views_hold_only_the_roles_categories(db: TestDb) {
    let w = world(&db).await;
    let s = &w.store;
    // Scheduler: demographics and contact, no MRN; the audit says exactly that.
    let v = s
        .view_patient(&w.viewer(Role::Scheduler), w.patient)
        .await
        .unwrap();
    assert_eq!(v.demographics.as_ref().unwrap().given_name, "Quinn");
    assert_eq!(
        v.demographics.as_ref().unwrap().birth_date.as_deref(),
        Some("1971-05-04")
    );
    assert!(v.contact.as_ref().unwrap().phone.is_some());
    assert!(v.identifiers.is_none());
    assert_eq!(
        v.disclosed,
        cats(&[C::Demographics, C::Contact, C::InternalNote])
    );
    let json = serde_json::to_value(&v).unwrap();
    assert!(json.get("identifiers").is_none(), "{json}");
    assert!(!json.to_string().contains("MRN-7731"));
    let e = last_event(s).await;
    assert_eq!(e.action, Action::Read);
    assert_eq!(e.patient, Some(w.patient));
    assert_eq!(cats(&e.categories), v.disclosed);
    assert_eq!(e.purpose, Some(PurposeOfUse::Operations));
    // Billing: identifiers too, purpose payment.
    let v = s
        .view_patient(&w.viewer(Role::Billing), w.patient)
        .await
        .unwrap();
    assert_eq!(v.identifiers.as_ref().unwrap().mrn, "MRN-7731");
    assert_eq!(last_event(s).await.purpose, Some(PurposeOfUse::Payment));
    // Clinician: everything the record holds.
    let v = s
        .view_patient(&w.viewer(Role::Clinician), w.patient)
        .await
        .unwrap();
    assert_eq!(
        v.disclosed,
        cats(&[C::Demographics, C::Contact, C::Identifiers, C::InternalNote])
    );
    // A record with no contact data discloses no contact category.
    let sys = AccessContext::system("test");
    let bare = s
        .create_patient(
            &sys,
            w.practice,
            &PatientData {
                given_name: "Only".into(),
                family_name: "Name".into(),
                ..PatientData::default()
            },
        )
        .await
        .unwrap();
    let v = s
        .view_patient(&w.viewer(Role::FrontDesk), bare)
        .await
        .unwrap();
    assert!(v.contact.is_none());
    assert_eq!(v.disclosed, cats(&[C::Demographics]));
    assert_eq!(
        cats(&last_event(s).await.categories),
        cats(&[C::Demographics])
    );
    // Roles without patient categories are refused by the data layer itself.
    for role in [
        Role::Admin,
        Role::PrivacyOfficer,
        Role::Auditor,
        Role::Service,
    ] {
        assert!(
            matches!(
                s.view_patient(&w.viewer(role), w.patient).await,
                Err(StoreError::Forbidden { .. })
            ),
            "{role}"
        );
    }
    // Another practice's patient is not found; a disabled reader is refused.
    let theirs = s
        .create_patient(&sys, w.other_practice, &patient_data())
        .await
        .unwrap();
    assert!(matches!(
        s.view_patient(&w.viewer(Role::Clinician), theirs).await,
        Err(StoreError::NotFound { .. })
    ));
    let sched = w.id(Role::Scheduler);
    s.set_staff_disabled(
        sched,
        true,
        &SecurityEvent::UserDisabled { user: sched }.to_audit(
            Actor::System {
                component: "test".into(),
            },
            0,
            &RequestMeta::default(),
        ),
    )
    .await
    .unwrap();
    assert!(matches!(
        s.view_patient(&w.viewer(Role::Scheduler), w.patient).await,
        Err(StoreError::Forbidden { .. })
    ));
}

async fn search_goes_through_blind_indexes_and_audits_each_result(db: TestDb) {
    let w = world(&db).await;
    let s = &w.store;
    let viewer = w.viewer(Role::FrontDesk);
    for lookup in [
        PatientLookup::Phone("+1 202 555 0188".into()),
        PatientLookup::Email("QUINN.VIEWEG@example.org".into()),
        PatientLookup::Mrn("mrn-7731".into()),
        PatientLookup::Name("vieweg quinn".into()),
    ] {
        let found = s.search_patients(&viewer, &lookup).await.unwrap();
        assert_eq!(found.len(), 1, "{lookup:?}");
        assert_eq!(found[0].id, w.patient);
        let e = last_event(s).await;
        assert_eq!(e.patient, Some(w.patient));
        assert!(e.detail.unwrap().starts_with("lookup_"));
        assert!(!format!("{lookup:?}").contains("vieweg"));
    }
    // Nobody found: audited as a search, with no patient.
    assert!(
        s.search_patients(&viewer, &PatientLookup::Phone("2025550000".into()))
            .await
            .unwrap()
            .is_empty()
    );
    let e = last_event(s).await;
    assert_eq!(e.object.kind, "patient_search");
    assert!(e.patient.is_none());
    // Unusable input is refused; staff without search_patients are refused.
    assert!(matches!(
        s.search_patients(&viewer, &PatientLookup::Phone("call me".into()))
            .await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        s.search_patients(
            &w.viewer(Role::Auditor),
            &PatientLookup::Mrn("MRN-7731".into())
        )
        .await,
        Err(StoreError::Forbidden { .. })
    ));
    // Another practice's patients are never found.
    let sys = AccessContext::system("test");
    s.create_patient(&sys, w.other_practice, &patient_data())
        .await
        .unwrap();
    assert_eq!(
        s.search_patients(&viewer, &PatientLookup::Mrn("MRN-7731".into()))
            .await
            .unwrap()
            .len(),
        1
    );
}

fn bodies(page: &perimeter_store::MessagePage) -> Vec<Option<&str>> {
    page.messages.iter().map(|m| m.body.as_deref()).collect()
}

async fn clinical_bodies_need_care_or_a_grant_and_never_reach_schedulers(db: TestDb) {
    let w = world(&db).await;
    let s = &w.store;
    // Scheduler: administrative bodies and the administrative note; clinical ones withheld,
    // the subject shown.
    let page = s
        .view_messages(&w.viewer(Role::Scheduler), w.conversation, None, 100)
        .await
        .unwrap();
    assert_eq!(
        bodies(&page),
        vec![
            Some("Can I move my visit to Friday?"),
            None,
            None,
            Some("Patient prefers SMS")
        ]
    );
    assert!(page.messages[1].withheld);
    assert_eq!(page.conversation.subject.as_deref(), Some("Follow-up"));
    assert!(!page.break_glass_available);
    assert_eq!(
        page.disclosed,
        cats(&[C::AdministrativeMessage, C::InternalNote])
    );
    let json = serde_json::to_string(&page).unwrap();
    assert!(
        !json.contains("rash") && !json.contains("dermatitis"),
        "{json}"
    );
    let e = last_event(s).await;
    assert_eq!(cats(&e.categories), page.disclosed);
    // A nurse outside the care team: the same, and emergency access is offered.
    let nurse = w.viewer(Role::Nurse);
    let page = s
        .view_messages(&nurse, w.conversation, None, 100)
        .await
        .unwrap();
    assert_eq!(bodies(&page)[1], None);
    assert!(page.break_glass_available);
    assert_eq!(page.purpose, PurposeOfUse::Treatment);
    // On the care team (added by the clinician): clinical bodies, purpose treatment.
    assert!(
        s.add_to_care_team(&w.viewer(Role::Clinician), w.patient, nurse.staff)
            .await
            .unwrap()
    );
    assert!(
        !s.add_to_care_team(&w.viewer(Role::Clinician), w.patient, nurse.staff)
            .await
            .unwrap()
    );
    let page = s
        .view_messages(&nurse, w.conversation, None, 100)
        .await
        .unwrap();
    assert_eq!(
        bodies(&page)[1],
        Some("The rash spread to my neck overnight")
    );
    assert!(page.disclosed.contains(&C::ClinicalMessage));
    let e = last_event(s).await;
    assert!(e.categories.contains(&C::ClinicalMessage));
    assert_eq!(e.purpose, Some(PurposeOfUse::Treatment));
    assert_eq!(e.detail.as_deref(), Some("messages"));
    // Pages: after the first message, one at a time.
    let next = s
        .view_messages(&nurse, w.conversation, Some(page.messages[0].id), 1)
        .await
        .unwrap();
    assert_eq!(next.messages.len(), 1);
    assert_eq!(next.messages[0].id, page.messages[1].id);
    // Nobody adds themselves; schedulers cannot manage care teams; only clinicians and nurses
    // join one.
    assert!(matches!(
        s.add_to_care_team(&w.viewer(Role::Clinician), w.patient, w.id(Role::Clinician))
            .await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        s.add_to_care_team(&w.viewer(Role::Scheduler), w.patient, w.id(Role::Clinician))
            .await,
        Err(StoreError::Forbidden { .. })
    ));
    assert!(matches!(
        s.add_to_care_team(&w.viewer(Role::FrontDesk), w.patient, w.id(Role::Billing))
            .await,
        Err(StoreError::Invalid { .. })
    ));
    let team = s
        .care_team(&w.viewer(Role::FrontDesk), w.patient)
        .await
        .unwrap();
    assert_eq!(team.len(), 1);
    assert_eq!(team[0].staff_id, nurse.staff);
    assert_eq!(team[0].assigned_by, Some(w.id(Role::Clinician)));
    assert!(
        s.remove_from_care_team(&w.viewer(Role::FrontDesk), w.patient, nurse.staff)
            .await
            .unwrap()
    );
    let page = s
        .view_messages(&nurse, w.conversation, None, 100)
        .await
        .unwrap();
    assert_eq!(bodies(&page)[1], None);
    // The clinician, out of care, breaks the glass: the store consults the grant.
    let clinician = w.viewer(Role::Clinician);
    let why = Justification::new("Covering the on-call list; urgent rash follow-up").unwrap();
    let now = db.clock.now();
    let (grant, note) = BreakGlassPolicy::default()
        .grant(
            clinician.staff,
            &[Role::Clinician],
            w.patient,
            BreakGlassReason::CoveringClinician,
            &why,
            now,
        )
        .unwrap();
    let event = SecurityEvent::BreakGlass {
        grant: grant.clone(),
    }
    .to_audit(
        Actor::User {
            user: clinician.staff,
            roles: vec![Role::Clinician],
            session: None,
        },
        0,
        &RequestMeta::default(),
    );
    s.grant_break_glass(w.practice, &grant, &why, &note, &event)
        .await
        .unwrap();
    let page = s
        .view_messages(&clinician, w.conversation, None, 100)
        .await
        .unwrap();
    assert_eq!(bodies(&page)[2], Some("Suspect contact dermatitis"));
    assert_eq!(page.purpose, PurposeOfUse::Emergency);
    let e = last_event(s).await;
    assert_eq!(e.purpose, Some(PurposeOfUse::Emergency));
    assert_eq!(e.detail.as_deref(), Some("break_glass"));
    // The grant lapses after 60 minutes.
    db.clock.advance(time::Duration::minutes(61));
    let page = s
        .view_messages(&clinician, w.conversation, None, 100)
        .await
        .unwrap();
    assert_eq!(bodies(&page)[2], None);
    // Schedulers never see clinical bodies, whatever happens.
    let page = s
        .view_messages(&w.viewer(Role::Scheduler), w.conversation, None, 100)
        .await
        .unwrap();
    assert!(
        page.messages
            .iter()
            .all(|m| m.category != C::ClinicalMessage || m.body.is_none())
    );
    // Conversations list: subject only, audited as administrative.
    let list = s
        .view_conversations(&w.viewer(Role::Billing), w.patient)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].subject.as_deref(), Some("Follow-up"));
    assert_eq!(
        cats(&last_event(s).await.categories),
        cats(&[C::AdministrativeMessage])
    );
    // Another practice's staff: not found.
    let sys = AccessContext::system("test");
    let outsider = s
        .create_staff(
            &sys,
            w.other_practice,
            &NewStaff {
                username: "outsider".into(),
                display_name: "Outsider".into(),
                roles: vec![Role::Clinician],
                password_hash: None,
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        s.view_messages(&Viewer::new(outsider), w.conversation, None, 100)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    // Message categories are checked on the way in.
    assert!(matches!(
        s.add_message(
            &sys,
            w.conversation,
            &NewMessage {
                direction: Direction::Inbound,
                author: None,
                category: C::Demographics,
                body: "x".into(),
            },
        )
        .await,
        Err(StoreError::Invalid { .. })
    ));
}

async fn full_reads_refuse_staff_facing_actors(db: TestDb) {
    let w = world(&db).await;
    let s = &w.store;
    let user = AccessContext::user(
        w.id(Role::Clinician),
        vec![Role::Clinician],
        PurposeOfUse::Treatment,
    );
    let service = AccessContext {
        actor: Actor::Service {
            client: w.id(Role::Service),
        },
        ..AccessContext::system("x")
    };
    for ctx in [&user, &service] {
        assert!(matches!(
            s.get_patient(ctx, w.patient).await,
            Err(StoreError::Forbidden { .. })
        ));
        assert!(matches!(
            s.list_messages(ctx, w.conversation, None, 10).await,
            Err(StoreError::Forbidden { .. })
        ));
        assert!(matches!(
            s.list_conversations(ctx, w.patient).await,
            Err(StoreError::Forbidden { .. })
        ));
        assert!(matches!(
            s.get_conversation(ctx, w.conversation).await,
            Err(StoreError::Forbidden { .. })
        ));
        assert!(matches!(
            s.find_patients_by_mrn(ctx, w.practice, "MRN-7731").await,
            Err(StoreError::Forbidden { .. })
        ));
    }
    // Perimeter itself still reads everything (jobs, the CLI).
    let sys = AccessContext::system("job");
    assert_eq!(
        s.list_messages(&sys, w.conversation, None, 10)
            .await
            .unwrap()
            .len(),
        4
    );
}

/// Store writes that take an `AccessContext` from the caller (staff administration, the AI
/// vendor registry, crypto-shredding) do not trust the roles in it: a user context must be an active holder of
/// the permission by the database's record, in the right practice.
async fn context_writes_check_the_actor_in_the_database(db: TestDb) {
    let w = world(&db).await;
    let s = &w.store;
    let new = |name: &str| NewStaff {
        username: name.into(),
        display_name: "New".into(),
        roles: vec![Role::Admin],
        password_hash: None,
    };
    let before = s.audit_head().await.unwrap().unwrap().size;
    // A scheduler who claims to be an administrator.
    let forged = AccessContext::user(
        w.id(Role::Scheduler),
        vec![Role::Admin],
        PurposeOfUse::Operations,
    );
    let service = AccessContext {
        actor: Actor::Service {
            client: w.id(Role::Service),
        },
        ..AccessContext::system("x")
    };
    let admin = AccessContext::user(
        w.id(Role::Admin),
        vec![Role::Admin],
        PurposeOfUse::Operations,
    );
    for ctx in [&forged, &service] {
        assert!(matches!(
            s.create_staff(ctx, w.practice, &new("forged-admin")).await,
            Err(StoreError::Forbidden { .. })
        ));
        assert!(matches!(
            s.add_vendor(ctx, &crate::vendors::input("forged", "forged-model"))
                .await,
            Err(StoreError::Forbidden { .. })
        ));
        assert!(matches!(
            s.remove_vendor(ctx, "anything").await,
            Err(StoreError::Forbidden { .. })
        ));
    }
    // An administrator may not create accounts in another practice: for them it does not
    // exist (not found, like another practice's records).
    assert!(matches!(
        s.create_staff(&admin, w.other_practice, &new("elsewhere-admin"))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        s.audit_head().await.unwrap().unwrap().size,
        before,
        "nothing written"
    );
    assert!(
        s.find_staff_by_username(w.practice, "forged-admin")
            .await
            .unwrap()
            .is_none()
    );
    // The real administrator may; Perimeter itself may.
    s.create_staff(&admin, w.practice, &new("second-admin"))
        .await
        .unwrap();
    s.add_vendor(&admin, &crate::vendors::input("acme", "acme-large"))
        .await
        .unwrap();
    assert!(s.remove_vendor(&admin, "acme").await.unwrap());
    s.create_staff(
        &AccessContext::system("cli"),
        w.other_practice,
        &new("cli-admin"),
    )
    .await
    .unwrap();
    // Crypto-shredding: only a privacy officer of the patient's practice, by the database.
    let forged_po = AccessContext::user(
        w.id(Role::Clinician),
        vec![Role::PrivacyOfficer],
        PurposeOfUse::Operations,
    );
    assert!(matches!(
        s.shred_patient(&forged_po, w.patient).await,
        Err(StoreError::Forbidden { .. })
    ));
    assert!(matches!(
        s.shred_patient(&service, w.patient).await,
        Err(StoreError::Forbidden { .. })
    ));
    s.view_patient(&w.viewer(Role::Clinician), w.patient)
        .await
        .unwrap();
    let po = AccessContext::user(
        w.id(Role::PrivacyOfficer),
        vec![Role::PrivacyOfficer],
        PurposeOfUse::Operations,
    );
    let sys = AccessContext::system("test");
    let theirs = s
        .create_patient(&sys, w.other_practice, &patient_data())
        .await
        .unwrap();
    assert!(matches!(
        s.shred_patient(&po, theirs).await,
        Err(StoreError::NotFound { .. })
    ));
    // The actor is checked first: a refused caller learns nothing of which patients exist.
    assert!(matches!(
        s.shred_patient(&forged_po, PatientId::new()).await,
        Err(StoreError::Forbidden { .. })
    ));
    s.get_patient(&sys, theirs)
        .await
        .expect("another practice's patient is untouched");
    assert!(
        !s.shred_patient(&po, w.patient)
            .await
            .unwrap()
            .already_shredded
    );
    // A disabled administrator may not.
    let a = w.id(Role::Admin);
    s.set_staff_disabled(
        a,
        true,
        &SecurityEvent::UserDisabled { user: a }.to_audit(
            Actor::System {
                component: "test".into(),
            },
            0,
            &RequestMeta::default(),
        ),
    )
    .await
    .unwrap();
    assert!(matches!(
        s.create_staff(&admin, w.practice, &new("third-admin"))
            .await,
        Err(StoreError::Forbidden { .. })
    ));
}

async fn usernames_are_unique_across_the_installation(db: TestDb) {
    let w = world(&db).await;
    let sys = AccessContext::system("test");
    let err = w
        .store
        .create_staff(
            &sys,
            w.other_practice,
            &NewStaff {
                username: "clinician".into(),
                display_name: "Another".into(),
                roles: vec![Role::Clinician],
                password_hash: None,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err}");
    // The log-in still finds the one account.
    let found = w
        .store
        .find_login(&perimeter_auth::Username::parse("clinician").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, w.id(Role::Clinician));
}

/// Applies migrations 1..=3 (copied to a temporary directory), writes what an older build
/// could write (a username shared by two practices, an account throttle keyed by staff id, a
/// break-glass grant and its notification), then migrates to the current schema.
async fn migration_0005_upgrades_existing_data(db: TestDb) {
    let backend_dir = match db.backend {
        perimeter_store::Backend::Sqlite => "sqlite",
        perimeter_store::Backend::Postgres => "postgres",
    };
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend_dir);
    let early = tempfile::tempdir().unwrap();
    for name in ["0001_core.sql", "0002_audit.sql", "0003_auth.sql"] {
        std::fs::copy(src.join(name), early.path().join(name)).unwrap();
    }
    let keys = KeyRing::generate().unwrap();
    let store = Store::connect(&db.options(), keys.clone(), db.shared_clock())
        .await
        .unwrap();
    let migrator = sqlx::migrate::Migrator::new(early.path().to_path_buf())
        .await
        .unwrap();
    let mut raw = db.raw().await;
    migrator.run(&mut raw).await.unwrap();
    let (p1, p2) = (PracticeId::new(), PracticeId::new());
    for (p, at) in [(p1, 1_i64), (p2, 2)] {
        sqlx::query("INSERT INTO practice (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(p.to_string())
            .bind(format!("P{at}"))
            .bind(at)
            .execute(&mut raw)
            .await
            .unwrap();
    }
    let (older, newer) = (StaffId::new(), StaffId::new());
    for (id, p, at) in [(older, p1, 10_i64), (newer, p2, 20)] {
        sqlx::query("INSERT INTO staff_user (id, practice_id, username, display_name, roles, created_at) VALUES ($1, $2, 'dr.smith', 'Dr Smith', 'clinician', $3)")
            .bind(id.to_string())
            .bind(p.to_string())
            .bind(at)
            .execute(&mut raw)
            .await
            .unwrap();
    }
    sqlx::query("INSERT INTO auth_throttle (scope, subject, failures, last_failure_at, locked_until, lockouts) VALUES ('account', $1, 0, 1, 99999999999999, 1)")
        .bind(older.to_string())
        .execute(&mut raw)
        .await
        .unwrap();
    // A grant and its notification, as 0003 stored them (no practice, no recipient).
    let patient = PatientId::new();
    sqlx::query("INSERT INTO patient (id, practice_id, given_name_ct, family_name_ct, created_at, updated_at) VALUES ($1, $2, $3, $3, 1, 1)")
        .bind(patient.to_string())
        .bind(p1.to_string())
        .bind(vec![0u8; 4])
        .execute(&mut raw)
        .await
        .unwrap();
    let grant = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO break_glass_grant (id, staff_id, patient_id, reason_code, reason_ct, granted_at, expires_at) VALUES ($1, $2, $3, 'other', $4, 1, 2)")
        .bind(grant.to_string())
        .bind(older.to_string())
        .bind(patient.to_string())
        .bind(vec![0u8; 4])
        .execute(&mut raw)
        .await
        .unwrap();
    sqlx::query("INSERT INTO notification_outbox (id, kind, payload, created_at) VALUES ($1, 'break_glass', $2, 1)")
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(format!("{{\"id\":\"x\",\"grant\":\"{grant}\"}}"))
        .execute(&mut raw)
        .await
        .unwrap();
    drop(raw);
    // The keys were never registered (migration 0001's table is empty): verify_keys adds them.
    store.migrate().await.unwrap();
    store.verify_keys().await.unwrap();
    let a = store.get_staff(older).await.unwrap();
    let b = store.get_staff(newer).await.unwrap();
    assert_eq!(a.username, "dr.smith");
    assert_eq!(b.username, format!("dr.smith-{}", &newer.to_string()[..8]));
    assert!(perimeter_auth::Username::parse(&b.username).is_ok());
    // The old lockout now belongs to the username, and lists for its practice.
    let locks = store.lockouts(p1, db.clock.now()).await.unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].subject, "dr.smith");
    assert_eq!(locks[0].staff, Some(older));
    // The grant and its notification now belong to the patient's practice.
    assert_eq!(store.grant_patient(p1, grant).await.unwrap(), Some(patient));
    assert_eq!(store.grant_patient(p2, grant).await.unwrap(), None);
    let notes = store
        .notifications_for(p1, &[Role::PrivacyOfficer], false, 10)
        .await
        .unwrap();
    assert_eq!(notes.len(), 1);
}

crate::both_backends!(
    patient_views_hold_only_the_roles_categories,
    search_goes_through_blind_indexes_and_audits_each_result,
    clinical_bodies_need_care_or_a_grant_and_never_reach_schedulers,
    full_reads_refuse_staff_facing_actors,
    context_writes_check_the_actor_in_the_database,
    usernames_are_unique_across_the_installation,
    migration_0005_upgrades_existing_data,
);

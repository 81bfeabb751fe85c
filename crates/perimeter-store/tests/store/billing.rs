//! Insurance coverages and billing accounts (migration 0010): billing sees coverage and
//! account, the front desk coverage only, schedulers, nurses and clinicians neither; the audit
//! lists exactly the categories disclosed; member ids and account numbers are found through
//! blind indexes and never stored in clear; a shredded patient's coverage is unreadable;
//! rotation leaves nothing behind; bad input is refused and changes nothing.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use perimeter_audit::{Action, AuditEvent};
use perimeter_crypto::KeyRing;
use perimeter_domain::{DataCategory as C, PatientId, PracticeId, PurposeOfUse, Role, StaffId};
use perimeter_store::{
    AccessContext, AccountIdentifier, AccountInput, Cents, CoverageInput, InsuranceName, NewStaff,
    PatientData, PatientLookup, Store, StoreError, SubscriberRelationship, Viewer,
};
use sqlx::Row;

use crate::common::TestDb;

const MEMBER_ID: &str = "ZQW-88123-4471";
const GROUP: &str = "GRP-55120";
const PAYER: &str = "Quorvex Mutual Health";
const PLAN: &str = "Quorvex Platinum PPO";
const ACCOUNT: &str = "ACCT-771-2093";

struct World {
    store: Store,
    practice: PracticeId,
    other_practice: PracticeId,
    staff: Vec<(Role, StaffId)>,
    patient: PatientId,
}

impl World {
    fn viewer(&self, role: Role) -> Viewer {
        Viewer::new(self.staff.iter().find(|(r, _)| *r == role).unwrap().1)
    }
}

fn patient_data(mrn: &str) -> PatientData {
    PatientData {
        given_name: "Rowan".into(),
        family_name: "Ledgerly".into(),
        birth_date: time::Date::from_calendar_date(1980, time::Month::June, 2).ok(),
        phone: Some("(202) 555-0177".into()),
        email: None,
        address: None,
        mrn: Some(mrn.into()),
        notes: None,
    }
}

async fn world_with(db: &TestDb, keys: &KeyRing) -> World {
    let store = db.open(keys).await;
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
        Role::Auditor,
    ] {
        let id = store
            .create_staff(
                &sys,
                practice,
                &NewStaff {
                    username: format!("b-{}", role.as_str().replace('_', "-")),
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
        .create_patient(&sys, practice, &patient_data("MRN-B1"))
        .await
        .unwrap();
    // The clinician and nurse are in the patient's care: they still see no billing data.
    for role in [Role::Clinician, Role::Nurse] {
        let id = staff.iter().find(|(r, _)| *r == role).unwrap().1;
        store.assign_care(&sys, patient, id).await.unwrap();
    }
    World {
        store,
        practice,
        other_practice,
        staff,
        patient,
    }
}

async fn world(db: &TestDb) -> World {
    world_with(db, &KeyRing::generate().unwrap()).await
}

fn coverage(member: &str, primary: bool) -> CoverageInput {
    CoverageInput {
        payer: InsuranceName::parse("payer", PAYER).unwrap(),
        plan: Some(InsuranceName::parse("plan", PLAN).unwrap()),
        member_id: AccountIdentifier::parse("member_id", member).unwrap(),
        group_number: Some(AccountIdentifier::parse("group_number", GROUP).unwrap()),
        relationship: SubscriberRelationship::Subscriber,
        effective_from: time::Date::from_calendar_date(2026, time::Month::January, 1).ok(),
        effective_to: None,
        primary,
    }
}

fn account(balance: i64) -> AccountInput {
    AccountInput {
        account_number: AccountIdentifier::parse("account_number", ACCOUNT).unwrap(),
        balance: Cents::new("balance_cents", balance).unwrap(),
        last_statement: time::Date::from_calendar_date(2026, time::Month::February, 3).ok(),
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

async fn audit_size(store: &Store) -> u64 {
    store.audit_head().await.unwrap().map_or(0, |h| h.size)
}

async fn seed(w: &World) {
    let s = &w.store;
    s.add_coverage(
        &w.viewer(Role::FrontDesk),
        w.patient,
        &coverage(MEMBER_ID, true),
    )
    .await
    .unwrap();
    s.set_billing_account(&w.viewer(Role::Billing), w.patient, &account(12_345))
        .await
        .unwrap();
}

async fn each_role_sees_only_its_billing_categories(db: TestDb) {
    let w = world(&db).await;
    let s = &w.store;
    // Before anything is recorded, billing sees no insurance or billing group: absent.
    let v = s
        .view_patient(&w.viewer(Role::Billing), w.patient)
        .await
        .unwrap();
    assert!(v.coverages.is_none() && v.account.is_none());
    assert!(!v.disclosed.contains(&C::Insurance) && !v.disclosed.contains(&C::Billing));

    // The front desk records a coverage; the write is audited with `insurance`.
    let c = s
        .add_coverage(
            &w.viewer(Role::FrontDesk),
            w.patient,
            &coverage(MEMBER_ID, true),
        )
        .await
        .unwrap();
    assert_eq!(c.member_id, MEMBER_ID);
    assert!(c.primary);
    let e = last_event(s).await;
    assert_eq!(e.action, Action::Create);
    assert_eq!(e.patient, Some(w.patient));
    assert_eq!(cats(&e.categories), cats(&[C::Insurance]));
    assert_eq!(e.detail.as_deref(), Some("coverage_added"));
    // Billing sets the account; audited with `billing`, purpose payment.
    let a = s
        .set_billing_account(&w.viewer(Role::Billing), w.patient, &account(12_345))
        .await
        .unwrap();
    assert_eq!(a.balance_cents, 12_345);
    assert_eq!(a.last_statement.as_deref(), Some("2026-02-03"));
    let e = last_event(s).await;
    assert_eq!(cats(&e.categories), cats(&[C::Billing]));
    assert_eq!(e.purpose, Some(PurposeOfUse::Payment));

    // Billing: coverage and account, and the audit lists exactly what was disclosed.
    let v = s
        .view_patient(&w.viewer(Role::Billing), w.patient)
        .await
        .unwrap();
    let covs = v.coverages.as_ref().unwrap();
    assert_eq!(covs.len(), 1);
    assert_eq!(covs[0].payer, PAYER);
    assert_eq!(covs[0].plan.as_deref(), Some(PLAN));
    assert_eq!(covs[0].group_number.as_deref(), Some(GROUP));
    assert_eq!(covs[0].effective_from.as_deref(), Some("2026-01-01"));
    assert_eq!(v.account.as_ref().unwrap().account_number, ACCOUNT);
    assert_eq!(
        v.disclosed,
        cats(&[
            C::Demographics,
            C::Contact,
            C::Identifiers,
            C::Insurance,
            C::Billing
        ])
    );
    let e = last_event(s).await;
    assert_eq!(cats(&e.categories), v.disclosed);
    assert_eq!(e.purpose, Some(PurposeOfUse::Payment));

    // Front desk: coverage, never the account.
    let v = s
        .view_patient(&w.viewer(Role::FrontDesk), w.patient)
        .await
        .unwrap();
    assert!(v.coverages.is_some());
    assert!(v.account.is_none());
    assert!(v.disclosed.contains(&C::Insurance));
    assert!(!v.disclosed.contains(&C::Billing));
    assert_eq!(cats(&last_event(s).await.categories), v.disclosed);
    let json = serde_json::to_value(&v).unwrap();
    assert!(json.get("account").is_none(), "{json}");
    assert!(!json.to_string().contains(ACCOUNT));

    // Scheduler, nurse, clinician (in care): neither, absent from the JSON too.
    for role in [Role::Scheduler, Role::Nurse, Role::Clinician] {
        let v = s.view_patient(&w.viewer(role), w.patient).await.unwrap();
        assert!(v.coverages.is_none() && v.account.is_none(), "{role}");
        assert!(
            !v.disclosed.contains(&C::Insurance) && !v.disclosed.contains(&C::Billing),
            "{role}"
        );
        let e = last_event(s).await;
        assert_eq!(cats(&e.categories), v.disclosed, "{role}");
        let json = serde_json::to_value(&v).unwrap();
        assert!(json.get("coverages").is_none() && json.get("account").is_none());
        let text = json.to_string();
        assert!(!text.contains("ZQW") && !text.contains(ACCOUNT) && !text.contains("Quorvex"));
        // Nor through the dedicated reads.
        assert!(matches!(
            s.view_coverages(&w.viewer(role), w.patient).await,
            Err(StoreError::Forbidden { .. })
        ));
        assert!(matches!(
            s.view_billing_account(&w.viewer(role), w.patient).await,
            Err(StoreError::Forbidden { .. })
        ));
    }
    // The dedicated reads: front desk reads coverages but not the account.
    let list = s
        .view_coverages(&w.viewer(Role::FrontDesk), w.patient)
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    let e = last_event(s).await;
    assert_eq!(cats(&e.categories), cats(&[C::Insurance]));
    assert_eq!(e.detail.as_deref(), Some("coverages"));
    assert!(matches!(
        s.view_billing_account(&w.viewer(Role::FrontDesk), w.patient)
            .await,
        Err(StoreError::Forbidden { .. })
    ));
    let acct = s
        .view_billing_account(&w.viewer(Role::Billing), w.patient)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(acct.balance_cents, 12_345);
    assert_eq!(cats(&last_event(s).await.categories), cats(&[C::Billing]));

    // Billing still never gets clinical bodies (minimum necessary holds with the new data).
    let sys = AccessContext::system("test");
    let conv = s
        .create_conversation(&sys, w.patient, perimeter_store::Channel::Portal, None)
        .await
        .unwrap();
    s.add_message(
        &sys,
        conv,
        &perimeter_store::NewMessage {
            direction: perimeter_store::Direction::Inbound,
            author: None,
            category: C::ClinicalMessage,
            body: "The cough is worse at night".into(),
        },
    )
    .await
    .unwrap();
    let page = s
        .view_messages(&w.viewer(Role::Billing), conv, None, 10)
        .await
        .unwrap();
    assert!(page.messages[0].body.is_none() && page.messages[0].withheld);
    assert!(!page.disclosed.contains(&C::ClinicalMessage));

    // Another practice's staff cannot reach the patient's coverages.
    let theirs = s
        .create_staff(
            &sys,
            w.other_practice,
            &NewStaff {
                username: "b-elsewhere-billing".into(),
                display_name: "x".into(),
                roles: vec![Role::Billing],
                password_hash: None,
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        s.view_coverages(&Viewer::new(theirs), w.patient).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.set_billing_account(&Viewer::new(theirs), w.patient, &account(1))
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn who_may_change_coverages_and_accounts(db: TestDb) {
    let w = world(&db).await;
    let s = &w.store;
    // manage_insurance: billing and front desk; manage_billing: billing only.
    for role in [Role::Billing, Role::FrontDesk] {
        s.add_coverage(&w.viewer(role), w.patient, &coverage("M-1", false))
            .await
            .unwrap();
    }
    let before = audit_size(s).await;
    for role in [
        Role::Scheduler,
        Role::Nurse,
        Role::Clinician,
        Role::Admin,
        Role::Auditor,
    ] {
        assert!(
            matches!(
                s.add_coverage(&w.viewer(role), w.patient, &coverage("M-2", false))
                    .await,
                Err(StoreError::Forbidden { .. })
            ),
            "{role}"
        );
    }
    for role in [Role::FrontDesk, Role::Scheduler, Role::Clinician] {
        assert!(
            matches!(
                s.set_billing_account(&w.viewer(role), w.patient, &account(5))
                    .await,
                Err(StoreError::Forbidden { .. })
            ),
            "{role}"
        );
    }
    assert_eq!(audit_size(s).await, before, "refusals write nothing here");
    let list = s
        .view_coverages(&w.viewer(Role::Billing), w.patient)
        .await
        .unwrap();
    assert_eq!(list.len(), 2);
}

async fn one_primary_coverage_and_ending_keeps_the_record(db: TestDb) {
    let w = world(&db).await;
    let s = &w.store;
    let billing = w.viewer(Role::Billing);
    let first = s
        .add_coverage(&billing, w.patient, &coverage("FIRST-1", true))
        .await
        .unwrap();
    db.clock.advance(time::Duration::seconds(1));
    let second = s
        .add_coverage(&billing, w.patient, &coverage("SECOND-2", true))
        .await
        .unwrap();
    let list = s.view_coverages(&billing, w.patient).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, first.id);
    assert!(!list[0].primary, "the older coverage lost the primary mark");
    assert!(list[1].primary);
    // Update: the member id changes, and so does its blind index.
    let mut changed = coverage("SECOND-3", true);
    changed.relationship = SubscriberRelationship::Spouse;
    let updated = s
        .update_coverage(&billing, w.patient, second.id, &changed)
        .await
        .unwrap();
    assert_eq!(updated.member_id, "SECOND-3");
    assert_eq!(updated.relationship, SubscriberRelationship::Spouse);
    assert_eq!(
        last_event(s).await.detail.as_deref(),
        Some("coverage_updated")
    );
    assert!(
        s.search_patients(&billing, &PatientLookup::MemberId("SECOND-2".into()))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.search_patients(&billing, &PatientLookup::MemberId("second 3".into()))
            .await
            .unwrap()
            .len(),
        1
    );
    // End: the last day is set, it is no longer primary, and it stays on record.
    let end = time::Date::from_calendar_date(2026, time::Month::March, 31).unwrap();
    let ended = s
        .end_coverage(&billing, w.patient, second.id, end)
        .await
        .unwrap();
    assert_eq!(ended.effective_to.as_deref(), Some("2026-03-31"));
    assert!(!ended.primary);
    assert!(ended.ended_at_millis.is_some());
    let e = last_event(s).await;
    assert_eq!(e.detail.as_deref(), Some("coverage_ended"));
    assert_eq!(cats(&e.categories), cats(&[C::Insurance]));
    assert_eq!(
        s.view_coverages(&billing, w.patient).await.unwrap().len(),
        2
    );
    // An ended coverage cannot become primary again; ending before it began is refused.
    assert!(matches!(
        s.update_coverage(&billing, w.patient, second.id, &coverage("X-1", true))
            .await,
        Err(StoreError::Invalid {
            field: "primary",
            ..
        })
    ));
    let early = time::Date::from_calendar_date(2025, time::Month::March, 31).unwrap();
    assert!(matches!(
        s.end_coverage(&billing, w.patient, first.id, early).await,
        Err(StoreError::Invalid {
            field: "effective_to",
            ..
        })
    ));
    // A coverage of another patient is not found through this patient.
    let sys = AccessContext::system("test");
    let other = s
        .create_patient(&sys, w.practice, &patient_data("MRN-B2"))
        .await
        .unwrap();
    assert!(matches!(
        s.end_coverage(&billing, other, first.id, end).await,
        Err(StoreError::NotFound { .. })
    ));
    // Coverages are never deleted: the database refuses it.
    let mut raw = db.raw().await;
    assert!(
        sqlx::query("DELETE FROM insurance_coverage WHERE id = $1")
            .bind(first.id.to_string())
            .execute(&mut raw)
            .await
            .is_err()
    );
    // The database itself allows one primary coverage per patient.
    assert!(
        sqlx::query("UPDATE insurance_coverage SET is_primary = 1 WHERE patient_id = $1")
            .bind(w.patient.to_string())
            .execute(&mut raw)
            .await
            .is_err()
    );
}

async fn lookup_by_member_id_and_account_number_through_blind_indexes(db: TestDb) {
    let w = world(&db).await;
    seed(&w).await;
    let s = &w.store;
    // Billing finds the patient by member id (typed differently) and by account number.
    for lookup in [
        PatientLookup::MemberId("zqw 88123 4471".into()),
        PatientLookup::AccountNumber("acct7712093".into()),
    ] {
        let found = s
            .search_patients(&w.viewer(Role::Billing), &lookup)
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{lookup:?}");
        assert_eq!(found[0].id, w.patient);
        assert!(found[0].coverages.is_some() && found[0].account.is_some());
        let e = last_event(s).await;
        assert_eq!(e.patient, Some(w.patient));
        assert_eq!(cats(&e.categories), found[0].disclosed);
        assert!(e.detail.unwrap().starts_with("lookup_"));
        assert!(!format!("{lookup:?}").contains("88123"));
    }
    // Front desk: by member id yes (and sees no account), by account number no.
    let found = s
        .search_patients(
            &w.viewer(Role::FrontDesk),
            &PatientLookup::MemberId(MEMBER_ID.into()),
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert!(found[0].account.is_none());
    assert!(matches!(
        s.search_patients(
            &w.viewer(Role::FrontDesk),
            &PatientLookup::AccountNumber(ACCOUNT.into())
        )
        .await,
        Err(StoreError::Forbidden { .. })
    ));
    // A scheduler may search, but not by numbers of categories it may not see.
    for lookup in [
        PatientLookup::MemberId(MEMBER_ID.into()),
        PatientLookup::AccountNumber(ACCOUNT.into()),
    ] {
        assert!(matches!(
            s.search_patients(&w.viewer(Role::Scheduler), &lookup).await,
            Err(StoreError::Forbidden { .. })
        ));
    }
    // Unusable numbers are refused; an unknown one finds nobody (and is audited as a search).
    assert!(matches!(
        s.search_patients(
            &w.viewer(Role::Billing),
            &PatientLookup::MemberId("no/such!".into())
        )
        .await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(
        s.search_patients(
            &w.viewer(Role::Billing),
            &PatientLookup::MemberId("ZQW000".into())
        )
        .await
        .unwrap()
        .is_empty()
    );
    assert_eq!(last_event(s).await.object.kind, "patient_search");
    // Another practice's patient with the same member id is never found.
    let sys = AccessContext::system("test");
    let theirs = s
        .create_patient(&sys, w.other_practice, &patient_data("MRN-B9"))
        .await
        .unwrap();
    s.record_billing_data(&sys, theirs, Some(&coverage(MEMBER_ID, true)), None)
        .await
        .unwrap();
    assert_eq!(
        s.search_patients(
            &w.viewer(Role::Billing),
            &PatientLookup::MemberId(MEMBER_ID.into())
        )
        .await
        .unwrap()
        .len(),
        1
    );
    // Staff-facing actors may not use the internal seeding path.
    assert!(
        s.record_billing_data(
            &AccessContext::user(
                w.viewer(Role::Billing).staff,
                vec![Role::Billing],
                PurposeOfUse::Payment
            ),
            w.patient,
            None,
            Some(&account(1)),
        )
        .await
        .is_err()
    );

    // Nothing of it is stored in clear: scan the database.
    let mut needles: Vec<String> = [
        MEMBER_ID,
        GROUP,
        PAYER,
        PLAN,
        ACCOUNT,
        "ZQW88123",
        "ACCT7712093",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let haystack = database_bytes(&db, w.store).await;
    if db.backend == perimeter_store::Backend::Postgres {
        let hexed: Vec<String> = needles.iter().map(hex::encode).collect();
        needles.extend(hexed);
    }
    for n in &needles {
        assert!(
            !haystack.windows(n.len()).any(|w| w == n.as_bytes()),
            "plaintext found in the database: a value of {} bytes",
            n.len()
        );
    }
    assert!(
        haystack.windows(9).any(|w| w == b"Elsewhere"),
        "sanity: clear text is found"
    );
}

async fn database_bytes(db: &TestDb, store: Store) -> Vec<u8> {
    match db.backend {
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
                "patient",
                "patient_index",
                "insurance_coverage",
                "billing_account",
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
    }
}

async fn bad_input_is_refused_and_changes_nothing(db: TestDb) {
    let w = world(&db).await;
    seed(&w).await;
    let s = &w.store;
    let billing = w.viewer(Role::Billing);
    // The validated types refuse bad values, naming the field and never the value.
    for (field, raw) in [
        ("payer", ""),
        ("payer", "   "),
        ("payer", "Evil\u{202E}Payer"),
        ("plan", "tab\there"),
    ] {
        let e = InsuranceName::parse(field, raw).unwrap_err();
        assert!(matches!(e, StoreError::Invalid { field: f, .. } if f == field));
    }
    assert!(InsuranceName::parse("payer", &"x".repeat(101)).is_err());
    for raw in [
        "",
        "--",
        "AB/12",
        "ＡＢ12",
        "12345678901234567890123456789012345678901",
    ] {
        let e = AccountIdentifier::parse("member_id", raw).unwrap_err();
        assert!(!e.to_string().contains("AB"), "{e}");
    }
    assert!(Cents::new("balance_cents", 1_000_000_001).is_err());
    assert!(Cents::new("balance_cents", i64::MIN).is_err());
    assert!(Cents::new("balance_cents", -500).is_ok());
    assert!("parent".parse::<SubscriberRelationship>().is_err());
    // Dates out of order are refused by the store, before anything is written.
    let before = audit_size(s).await;
    let mut backwards = coverage("NEW-1", true);
    backwards.effective_to = time::Date::from_calendar_date(2025, time::Month::July, 1).ok();
    assert!(matches!(
        s.add_coverage(&billing, w.patient, &backwards).await,
        Err(StoreError::Invalid {
            field: "effective_to",
            ..
        })
    ));
    let list = s.view_coverages(&billing, w.patient).await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].primary, "the refused primary took nothing away");
    assert_eq!(audit_size(s).await, before + 1, "only the read was audited");
    // Unknown ids are not found and change nothing.
    assert!(matches!(
        s.update_coverage(
            &billing,
            w.patient,
            uuid::Uuid::now_v7(),
            &coverage("NEW-2", false)
        )
        .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.view_coverages(&billing, PatientId::new()).await,
        Err(StoreError::NotFound { .. })
    ));
    // At most MAX_COVERAGES per patient.
    for i in 1..perimeter_store::MAX_COVERAGES {
        s.add_coverage(&billing, w.patient, &coverage(&format!("MANY-{i}"), false))
            .await
            .unwrap();
    }
    assert!(matches!(
        s.add_coverage(&billing, w.patient, &coverage("ONE-TOO-MANY", false))
            .await,
        Err(StoreError::Invalid { .. })
    ));
    let n = s.view_coverages(&billing, w.patient).await.unwrap().len();
    assert_eq!(i64::try_from(n).unwrap(), perimeter_store::MAX_COVERAGES);
}

async fn shredding_makes_coverages_and_accounts_unreadable(db: TestDb) {
    let w = world(&db).await;
    seed(&w).await;
    let s = &w.store;
    let sys = AccessContext::system("test");
    let report = s.shred_patient(&sys, w.patient).await.unwrap();
    assert_eq!(report.billing_records_unreadable, 2);
    // Phone, MRN, two name orders, member id, account number.
    assert_eq!(report.index_entries_deleted, 6);
    let billing = w.viewer(Role::Billing);
    assert!(matches!(
        s.view_coverages(&billing, w.patient).await,
        Err(StoreError::Shredded { .. })
    ));
    assert!(matches!(
        s.view_billing_account(&billing, w.patient).await,
        Err(StoreError::Shredded { .. })
    ));
    assert!(matches!(
        s.add_coverage(&billing, w.patient, &coverage("AFTER-1", false))
            .await,
        Err(StoreError::Shredded { .. })
    ));
    for lookup in [
        PatientLookup::MemberId(MEMBER_ID.into()),
        PatientLookup::AccountNumber(ACCOUNT.into()),
    ] {
        assert!(
            s.search_patients(&billing, &lookup)
                .await
                .unwrap()
                .is_empty()
        );
    }
    // The rows remain as ciphertext, without their blind indexes.
    let mut raw = db.raw().await;
    let row = sqlx::query(
        "SELECT COUNT(*) AS n, COUNT(member_id_bidx) AS ix FROM insurance_coverage WHERE patient_id = $1",
    )
    .bind(w.patient.to_string())
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert_eq!(row.get::<i64, _>("n"), 1);
    assert_eq!(row.get::<i64, _>("ix"), 0);
    let ix: i64 =
        sqlx::query("SELECT COUNT(account_number_bidx) FROM billing_account WHERE patient_id = $1")
            .bind(w.patient.to_string())
            .fetch_one(&mut raw)
            .await
            .unwrap()
            .get(0);
    assert_eq!(ix, 0);
}

async fn rotation_keeps_coverages_readable_without_the_old_kek(db: TestDb) {
    let v1 = KeyRing::generate().unwrap();
    let w = world_with(&db, &v1).await;
    seed(&w).await;
    // Coverages and accounts hold no data keys of their own: rotation re-wraps the patients'.
    let v2 = v1.with_new_primary_kek().unwrap();
    let store2 = w.store.with_keys(v2.clone());
    let report = store2
        .rotate_keks(10, &mut |_| ControlFlow::Continue(()))
        .await
        .unwrap();
    assert!(report.finished);
    assert_eq!(store2.key_status().await.unwrap().pending_rewrap, 0);
    store2.retire_kek(1).await.unwrap();
    let store3 = w.store.with_keys(v2.without_kek(1).unwrap());
    store3.verify_keys().await.unwrap();
    let v = store3
        .view_patient(&w.viewer(Role::Billing), w.patient)
        .await
        .unwrap();
    assert_eq!(v.coverages.unwrap()[0].member_id, MEMBER_ID);
    assert_eq!(v.account.unwrap().balance_cents, 12_345);
    // Blind indexes do not depend on the KEK: lookups still work.
    assert_eq!(
        store3
            .search_patients(
                &w.viewer(Role::Billing),
                &PatientLookup::AccountNumber(ACCOUNT.into())
            )
            .await
            .unwrap()
            .len(),
        1
    );
}

crate::both_backends!(
    each_role_sees_only_its_billing_categories,
    who_may_change_coverages_and_accounts,
    one_primary_coverage_and_ending_keeps_the_record,
    lookup_by_member_id_and_account_number_through_blind_indexes,
    bad_input_is_refused_and_changes_nothing,
    shredding_makes_coverages_and_accounts_unreadable,
    rotation_keeps_coverages_readable_without_the_old_kek,
);

//! The human side of conversations (migration 0008): work state and queue order, assignment
//! into the care team, status, sealed and minimum-necessary notes, drafts under the
//! administrative-intent rule with approval and automatic templates, the SLA escalation sweep
//! with a manual clock, and reminders with C/R replies.

use perimeter_audit::{Action, AuditEvent, Outcome};
use perimeter_crypto::KeyRing;
use perimeter_domain::{ConversationId, DataCategory as C, PatientId, PracticeId, Role, StaffId};
use perimeter_store::{
    AccessContext, Channel, Direction, DraftOutcome, DraftRequest, NewMessage, NewStaff,
    NewTemplate, PatientData, Store, StoreError, TemplateKind, Triage, Viewer,
};
use perimeter_workflows::{
    ConversationStatus as S, DraftRefusal, EscalationRules, Intent, Queue, ReminderReply,
    ServiceLevels, Urgency,
};
use sqlx::Row;
use time::Duration;

use crate::common::TestDb;

struct World {
    store: Store,
    practice: PracticeId,
    staff: Vec<(Role, StaffId)>,
    patient: PatientId,
}

impl World {
    fn viewer(&self, role: Role) -> Viewer {
        Viewer::new(self.id(role))
    }
    fn id(&self, role: Role) -> StaffId {
        self.staff.iter().find(|(r, _)| *r == role).unwrap().1
    }
    async fn conversation(&self, db: &TestDb, body: &str, category: C) -> ConversationId {
        let sys = AccessContext::system("test");
        let c = self
            .store
            .create_conversation(&sys, self.patient, Channel::Sms, None)
            .await
            .unwrap();
        db.clock.advance(Duration::seconds(1));
        self.store
            .add_message(
                &sys,
                c,
                &NewMessage {
                    direction: Direction::Inbound,
                    author: None,
                    category,
                    body: body.into(),
                },
            )
            .await
            .unwrap();
        c
    }
    async fn triage(&self, c: ConversationId, intent: Intent, urgency: Urgency) {
        let t = Triage::with_levels(
            Some(intent),
            urgency,
            intent.default_queue(),
            &ServiceLevels::default(),
            self.store.clock().now(),
        );
        self.store
            .set_triage(&AccessContext::system("intake"), c, &t)
            .await
            .unwrap();
    }
}

async fn world(db: &TestDb) -> World {
    let store = db.open(&KeyRing::generate().unwrap()).await;
    let sys = AccessContext::system("test");
    let practice = store.create_practice(&sys, "Harbor Clinic").await.unwrap();
    let mut staff = Vec::new();
    for role in [
        Role::Clinician,
        Role::Nurse,
        Role::Scheduler,
        Role::Billing,
        Role::FrontDesk,
        Role::Admin,
    ] {
        let id = store
            .create_staff(
                &sys,
                practice,
                &NewStaff {
                    username: format!("w-{}", role.as_str()),
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
        .create_patient(
            &sys,
            practice,
            &PatientData {
                given_name: "Rosalind".into(),
                family_name: "Franklin".into(),
                phone: Some("(202) 555-0119".into()),
                ..PatientData::default()
            },
        )
        .await
        .unwrap();
    World {
        store,
        practice,
        staff,
        patient,
    }
}

async fn events(store: &Store) -> Vec<AuditEvent> {
    let head = store.audit_head().await.unwrap().unwrap();
    store
        .audit_records(0, u32::try_from(head.size).unwrap())
        .await
        .unwrap()
        .iter()
        .map(|r| AuditEvent::from_canonical_bytes(&r.event).unwrap())
        .collect()
}

async fn queue_order_assignment_and_status(db: TestDb) {
    let w = world(&db).await;
    let routine = w
        .conversation(&db, "My cough is back", C::ClinicalMessage)
        .await;
    let urgent = w
        .conversation(&db, "Fever of 39 since yesterday", C::ClinicalMessage)
        .await;
    let emergency = w
        .conversation(&db, "Crushing chest pain", C::ClinicalMessage)
        .await;
    w.triage(routine, Intent::Clinical, Urgency::Routine).await;
    w.triage(urgent, Intent::Clinical, Urgency::Urgent).await;
    w.triage(emergency, Intent::Emergency, Urgency::Emergency)
        .await;
    let nurse = w.viewer(Role::Nurse);
    let page = w
        .store
        .work_queue(&nurse, Queue::NurseTriage, false, 0, 50)
        .await
        .unwrap();
    let order: Vec<ConversationId> = page.items.iter().map(|i| i.conversation_id).collect();
    assert_eq!(order, vec![emergency, urgent, routine]);
    assert!(page.items.iter().all(|i| i.status == S::Open && !i.overdue));
    // Paging.
    let p1 = w
        .store
        .work_queue(&nurse, Queue::NurseTriage, false, 0, 2)
        .await
        .unwrap();
    assert_eq!((p1.items.len(), p1.next_offset), (2, Some(2)));
    let p2 = w
        .store
        .work_queue(&nurse, Queue::NurseTriage, false, 2, 2)
        .await
        .unwrap();
    assert_eq!((p2.items.len(), p2.next_offset), (1, None));
    // A scheduler does not work the nurse triage queue; an admin holds no view_queue.
    for role in [Role::Scheduler, Role::Admin] {
        let e = w
            .store
            .work_queue(&w.viewer(role), Queue::NurseTriage, false, 0, 50)
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Forbidden { .. }), "{role}");
    }
    // Before assignment the nurse has no care relation: the clinical body is withheld.
    let before = w
        .store
        .view_messages(&nurse, routine, None, 10)
        .await
        .unwrap();
    assert!(before.messages[0].withheld);
    // Front desk assigns the routine one to the nurse: she joins the care team and reads it.
    let fd = w.viewer(Role::FrontDesk);
    let item = w
        .store
        .assign(&fd, routine, Some(w.id(Role::Nurse)))
        .await
        .unwrap();
    assert_eq!(item.assignee, Some(w.id(Role::Nurse)));
    let after = w
        .store
        .view_messages(&nurse, routine, None, 10)
        .await
        .unwrap();
    assert_eq!(after.messages[0].body.as_deref(), Some("My cough is back"));
    // A scheduler cannot be assigned nurse triage work; unknown staff is not found.
    let e = w
        .store
        .assign(&fd, routine, Some(w.id(Role::Scheduler)))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        StoreError::Invalid {
            field: "staff_id",
            ..
        }
    ));
    let e = w
        .store
        .assign(&fd, routine, Some(StaffId::new()))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }));
    // Schedulers may not triage/assign (the matrix), and the store says so too.
    let e = w
        .store
        .assign(&w.viewer(Role::Scheduler), routine, None)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Forbidden { .. }));
    // Status: waiting, then closed; closed cannot wait; closed leaves the queue.
    let n = w
        .store
        .set_work_status(&nurse, routine, S::WaitingOnPatient)
        .await
        .unwrap();
    assert_eq!(n.status, S::WaitingOnPatient);
    w.store
        .set_work_status(&nurse, routine, S::Closed)
        .await
        .unwrap();
    let e = w
        .store
        .set_work_status(&nurse, routine, S::WaitingOnPatient)
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        StoreError::Invalid {
            field: "status",
            ..
        }
    ));
    let page = w
        .store
        .work_queue(&nurse, Queue::NurseTriage, false, 0, 50)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let all = w
        .store
        .work_queue(&nurse, Queue::NurseTriage, true, 0, 50)
        .await
        .unwrap();
    assert_eq!(all.items.len(), 3);
    // A new patient message (intake calls set_triage again) reopens it.
    w.triage(routine, Intent::Clinical, Urgency::Routine).await;
    let item = w.store.work_item(&nurse, routine).await.unwrap().unwrap();
    assert_eq!(item.status, S::Open);
    let ev = events(&w.store).await;
    for d in [
        "triage",
        "assigned",
        "care_team_added",
        "waiting_on_patient",
        "closed",
        "queue_list",
    ] {
        assert!(
            ev.iter().any(|e| e.detail.as_deref() == Some(d)),
            "missing {d}"
        );
    }
}

async fn notes_are_sealed_audited_and_minimum_necessary(db: TestDb) {
    let w = world(&db).await;
    let c = w
        .conversation(&db, "Can I move Tuesday?", C::AdministrativeMessage)
        .await;
    w.triage(c, Intent::Scheduling, Urgency::Routine).await;
    let sched = w.viewer(Role::Scheduler);
    let nurse = w.viewer(Role::Nurse);
    w.store
        .assign_care(&AccessContext::system("test"), w.patient, w.id(Role::Nurse))
        .await
        .unwrap();
    w.store
        .add_note(&sched, c, C::InternalNote, "Prefers afternoons")
        .await
        .unwrap();
    w.store
        .add_note(
            &nurse,
            c,
            C::ClinicalMessage,
            "Check inhaler technique at visit",
        )
        .await
        .unwrap();
    // A scheduler may not write a clinical note.
    let e = w
        .store
        .add_note(&sched, c, C::ClinicalMessage, "anything")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Forbidden { .. }));
    let e = w
        .store
        .add_note(&sched, c, C::InternalNote, "  ")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid { .. }));
    // The scheduler sees the internal note and not the clinical one.
    let seen = w.store.list_notes(&sched, c).await.unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body.as_deref(), Some("Prefers afternoons"));
    assert!(seen[1].withheld && seen[1].body.is_none());
    let last = events(&w.store).await.pop().unwrap();
    assert_eq!(last.categories, vec![C::InternalNote]);
    assert_eq!(last.detail.as_deref(), Some("notes"));
    // The nurse in care sees both; an admin cannot read notes at all.
    let seen = w.store.list_notes(&nurse, c).await.unwrap();
    assert!(seen.iter().all(|n| n.body.is_some()));
    let e = w
        .store
        .list_notes(&w.viewer(Role::Admin), c)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Forbidden { .. }));
    // Sealed at rest.
    let mut raw = db.raw().await;
    let rows = sqlx::query("SELECT body_ct FROM conversation_note")
        .fetch_all(&mut raw)
        .await
        .unwrap();
    for r in rows {
        let ct: Vec<u8> = r.get(0);
        assert!(!String::from_utf8_lossy(&ct).contains("afternoons"));
        assert!(!String::from_utf8_lossy(&ct).contains("inhaler"));
    }
    let created: Vec<AuditEvent> = events(&w.store)
        .await
        .into_iter()
        .filter(|e| e.object.kind == "conversation_note" && e.action == Action::Create)
        .collect();
    assert_eq!(created.len(), 2);
}

async fn template(
    w: &World,
    name: &str,
    kind: TemplateKind,
    body: &str,
    auto: Vec<Intent>,
) -> uuid::Uuid {
    let admin = w.viewer(Role::Admin);
    let t = w
        .store
        .create_template(
            &admin,
            &NewTemplate {
                name: name.into(),
                kind,
                body: body.into(),
                auto_send_intents: auto,
            },
        )
        .await
        .unwrap();
    assert!(!t.active && t.approved_by.is_none());
    let t = w.store.approve_template(&admin, t.id).await.unwrap();
    assert!(t.active);
    t.id
}

async fn drafts_follow_the_rule_and_wait_for_approval(db: TestDb) {
    let w = world(&db).await;
    let tid = template(
        &w,
        "reschedule",
        TemplateKind::Reply,
        "Hi {{given_name}}, {{practice_name}} can offer Thursday at 10. Reply YES to book.",
        vec![],
    )
    .await;
    let clinical = w
        .conversation(&db, "My chest feels tight", C::ClinicalMessage)
        .await;
    w.triage(clinical, Intent::Clinical, Urgency::Routine).await;
    let sched_conv = w
        .conversation(
            &db,
            "Can we move Tuesday's visit?",
            C::AdministrativeMessage,
        )
        .await;
    w.triage(sched_conv, Intent::Scheduling, Urgency::Routine)
        .await;
    let untriaged = w
        .conversation(&db, "hello?", C::AdministrativeMessage)
        .await;
    let nurse = w.viewer(Role::Nurse);
    let sched = w.viewer(Role::Scheduler);
    // Refused for clinical, and recorded as denied.
    let r = w
        .store
        .create_draft(&nurse, clinical, &DraftRequest::Template(tid))
        .await
        .unwrap();
    assert_eq!(r, DraftOutcome::Refused(DraftRefusal::NotAdministrative));
    let last = events(&w.store).await.pop().unwrap();
    assert_eq!(last.outcome, Outcome::Denied);
    assert_eq!(
        last.detail.as_deref(),
        Some("draft_refused_not_administrative")
    );
    let r = w
        .store
        .create_draft(&sched, untriaged, &DraftRequest::Template(tid))
        .await
        .unwrap();
    assert_eq!(r, DraftOutcome::Refused(DraftRefusal::NotTriaged));
    assert_eq!(
        w.store.draft_refusal(&nurse, clinical).await.unwrap(),
        Some(DraftRefusal::NotAdministrative)
    );
    // A scheduling draft waits for a person.
    let DraftOutcome::Done(d) = w
        .store
        .create_draft(&sched, sched_conv, &DraftRequest::Template(tid))
        .await
        .unwrap()
    else {
        panic!("refused")
    };
    assert_eq!(d.status, "pending");
    assert_eq!(
        d.body,
        "Hi Rosalind, Harbor Clinic can offer Thursday at 10. Reply YES to book."
    );
    let sys = AccessContext::system("test");
    assert!(
        w.store
            .outbound_replies(&sys, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The scheduler approves: the reply is queued with who approved it.
    let DraftOutcome::Done(sent) = w.store.approve_draft(&sched, d.id, None).await.unwrap() else {
        panic!("refused")
    };
    assert_eq!(sent.status, "sent");
    assert_eq!(sent.decided_by, Some(w.id(Role::Scheduler)));
    let out = w
        .store
        .outbound_replies(&sys, Some("queued"), 10)
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].approved_by, Some(w.id(Role::Scheduler)));
    assert_eq!(Some(out[0].message_id), sent.sent_message_id);
    let msgs = w
        .store
        .list_messages(&sys, sched_conv, None, 10)
        .await
        .unwrap();
    let reply = msgs
        .iter()
        .find(|m| m.direction == Direction::Outbound)
        .unwrap();
    assert_eq!(reply.author, Some(w.id(Role::Scheduler)));
    assert_eq!(reply.body, d.body);
    let approved = format!("outbound approved_by={}", w.id(Role::Scheduler));
    assert!(
        events(&w.store)
            .await
            .iter()
            .any(|e| e.detail.as_deref() == Some(approved.as_str()))
    );
    assert_eq!(
        w.store
            .work_item(&sched, sched_conv)
            .await
            .unwrap()
            .unwrap()
            .status,
        S::WaitingOnPatient
    );
    // Approving twice is refused; a second draft is rejected with a code.
    assert!(w.store.approve_draft(&sched, d.id, None).await.is_err());
    let DraftOutcome::Done(d2) = w
        .store
        .create_draft(&sched, sched_conv, &DraftRequest::Template(tid))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(
        w.store
            .reject_draft(&sched, d2.id, "because I said so")
            .await
            .is_err()
    );
    let rej = w.store.reject_draft(&sched, d2.id, "tone").await.unwrap();
    assert_eq!(
        (rej.status.as_str(), rej.reject_reason.as_deref()),
        ("rejected", Some("tone"))
    );
    // A conversation re-triaged as clinical after drafting: approval is refused.
    let DraftOutcome::Done(d3) = w
        .store
        .create_draft(&sched, sched_conv, &DraftRequest::Template(tid))
        .await
        .unwrap()
    else {
        panic!()
    };
    w.triage(sched_conv, Intent::Clinical, Urgency::Routine)
        .await;
    assert_eq!(
        w.store.approve_draft(&sched, d3.id, None).await.unwrap(),
        DraftOutcome::Refused(DraftRefusal::NotAdministrative)
    );
    // Drafts are sealed.
    let mut raw = db.raw().await;
    for r in sqlx::query("SELECT body_ct FROM reply_draft")
        .fetch_all(&mut raw)
        .await
        .unwrap()
    {
        let ct: Vec<u8> = r.get(0);
        assert!(!String::from_utf8_lossy(&ct).contains("Rosalind"));
    }
}

async fn auto_send_templates_go_out_only_for_their_intents(db: TestDb) {
    let w = world(&db).await;
    let admin = w.viewer(Role::Admin);
    // Automatic sending is refused for clinical intents at save time.
    let e = w
        .store
        .create_template(
            &admin,
            &NewTemplate {
                name: "bad".into(),
                kind: TemplateKind::Reply,
                body: "We will call you.".into(),
                auto_send_intents: vec![Intent::Clinical],
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        StoreError::Invalid {
            field: "auto_send_intents",
            ..
        }
    ));
    let tid = template(
        &w,
        "billing-hours",
        TemplateKind::Reply,
        "Our billing office is open 9 to 5; call us any time then.",
        vec![Intent::Billing],
    )
    .await;
    let billing = w
        .conversation(&db, "When is billing open?", C::AdministrativeMessage)
        .await;
    w.triage(billing, Intent::Billing, Urgency::Routine).await;
    let records = w
        .conversation(&db, "I need my records", C::AdministrativeMessage)
        .await;
    w.triage(records, Intent::Records, Urgency::Routine).await;
    let bi = w.viewer(Role::Billing);
    let DraftOutcome::Done(d) = w
        .store
        .create_draft(&bi, billing, &DraftRequest::Template(tid))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.status, "sent");
    assert_eq!(d.decided_by, None);
    let sys = AccessContext::system("test");
    let out = w.store.outbound_replies(&sys, None, 10).await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].approved_by, out[0].template_id), (None, Some(tid)));
    let detail = format!("outbound auto_send template={tid} v1");
    assert!(
        events(&w.store)
            .await
            .iter()
            .any(|e| e.detail.as_deref() == Some(detail.as_str()))
    );
    // Another intent waits for approval.
    let DraftOutcome::Done(d) = w
        .store
        .create_draft(
            &w.viewer(Role::FrontDesk),
            records,
            &DraftRequest::Template(tid),
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.status, "pending");
    // A new version replaces the active one; the old one no longer drafts.
    let t2 = w
        .store
        .create_template(
            &admin,
            &NewTemplate {
                name: "billing-hours".into(),
                kind: TemplateKind::Reply,
                body: "Billing: 8 to 4 now.".into(),
                auto_send_intents: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(t2.version, 2);
    w.store.approve_template(&admin, t2.id).await.unwrap();
    let e = w
        .store
        .create_draft(&bi, billing, &DraftRequest::Template(tid))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        StoreError::Invalid {
            field: "template_id",
            ..
        }
    ));
    let list = w.store.list_templates(&admin).await.unwrap();
    assert_eq!(list.iter().filter(|t| t.active).count(), 1);
    // Staff cannot manage templates.
    assert!(matches!(
        w.store.list_templates(&bi).await.unwrap_err(),
        StoreError::Forbidden { .. }
    ));
}

async fn overdue_conversations_escalate_with_a_manual_clock(db: TestDb) {
    let w = world(&db).await;
    let c = w
        .conversation(&db, "Rash is spreading", C::ClinicalMessage)
        .await;
    w.triage(c, Intent::Clinical, Urgency::Routine).await;
    let waiting = w
        .conversation(&db, "Thanks, will do", C::ClinicalMessage)
        .await;
    w.triage(waiting, Intent::Clinical, Urgency::Routine).await;
    w.store
        .set_work_status(&w.viewer(Role::Nurse), waiting, S::WaitingOnPatient)
        .await
        .unwrap();
    let sys = AccessContext::system("sla_sweep");
    let rules = EscalationRules::default();
    db.clock.advance(Duration::minutes(239));
    assert!(
        w.store
            .escalate_overdue(&sys, &rules, 100)
            .await
            .unwrap()
            .is_empty()
    );
    db.clock.advance(Duration::minutes(2));
    let overdue = w
        .store
        .work_item(&w.viewer(Role::Nurse), c)
        .await
        .unwrap()
        .unwrap();
    assert!(overdue.overdue);
    let done = w.store.escalate_overdue(&sys, &rules, 100).await.unwrap();
    assert_eq!(
        done.len(),
        1,
        "the waiting conversation is not on the practice's clock"
    );
    assert_eq!(
        (done[0].conversation_id, done[0].from, done[0].to),
        (c, Queue::NurseTriage, Queue::Clinician)
    );
    assert!(
        w.store
            .escalate_overdue(&sys, &rules, 100)
            .await
            .unwrap()
            .is_empty(),
        "once"
    );
    let item = w
        .store
        .work_item(&w.viewer(Role::Clinician), c)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (item.queue, item.escalated_from),
        (Queue::Clinician, Some(Queue::NurseTriage))
    );
    assert!(item.escalated_at_millis.is_some());
    let page = w
        .store
        .work_queue(&w.viewer(Role::Clinician), Queue::Clinician, false, 0, 10)
        .await
        .unwrap();
    assert_eq!(page.items[0].conversation_id, c);
    let notes = w
        .store
        .notifications_for(w.practice, &[Role::Clinician], false, 10)
        .await
        .unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].kind, "sla_escalation");
    assert!(notes[0].payload.contains(&c.to_string()));
    assert!(!notes[0].payload.contains("Rash"));
}

async fn reminders_are_sent_and_replies_handled(db: TestDb) {
    let w = world(&db).await;
    let tid = template(
        &w,
        "reminder",
        TemplateKind::Reminder,
        "{{given_name}}, reminder: {{practice_name}} on {{appointment_date}} at {{appointment_time}}. Reply C to confirm or R to reschedule.",
        vec![],
    )
    .await;
    let sched = w.viewer(Role::Scheduler);
    let now = w.store.clock().now();
    let appt = now + Duration::days(3);
    let r = w
        .store
        .schedule_reminder(&sched, w.patient, tid, appt, Duration::hours(24))
        .await
        .unwrap();
    assert_eq!(r.tier.name(), "first_visit");
    assert_eq!(
        r.send_at_millis,
        (appt - Duration::hours(24)).unix_timestamp() * 1000
    );
    // A past appointment is refused; billing cannot schedule.
    assert!(
        w.store
            .schedule_reminder(
                &sched,
                w.patient,
                tid,
                now - Duration::hours(1),
                Duration::hours(1)
            )
            .await
            .is_err()
    );
    assert!(matches!(
        w.store
            .schedule_reminder(
                &w.viewer(Role::Billing),
                w.patient,
                tid,
                appt,
                Duration::hours(1)
            )
            .await
            .unwrap_err(),
        StoreError::Forbidden { .. }
    ));
    let sys = AccessContext::system("reminders");
    assert!(
        w.store
            .send_due_reminders(&sys, 10)
            .await
            .unwrap()
            .is_empty()
    );
    db.clock.advance(Duration::days(2) + Duration::minutes(1));
    let sent = w.store.send_due_reminders(&sys, 10).await.unwrap();
    assert_eq!(sent.len(), 1);
    assert!(
        w.store
            .send_due_reminders(&sys, 10)
            .await
            .unwrap()
            .is_empty(),
        "once"
    );
    let msgs = w
        .store
        .list_messages(&sys, sent[0].conversation, None, 10)
        .await
        .unwrap();
    let body = &msgs.iter().find(|m| m.id == sent[0].message).unwrap().body;
    assert!(
        body.starts_with("Rosalind, reminder: Harbor Clinic on 2026-01-04 at "),
        "{body}"
    );
    // Reply C confirms.
    let ctx = AccessContext::system("intake");
    let levels = ServiceLevels::default();
    assert_eq!(
        w.store
            .record_reminder_reply(&ctx, sent[0].conversation, "maybe", &levels)
            .await
            .unwrap(),
        None
    );
    let got = w
        .store
        .record_reminder_reply(&ctx, sent[0].conversation, " c ", &levels)
        .await
        .unwrap();
    assert_eq!(got, Some((r.id, ReminderReply::Confirm)));
    let list = w.store.list_reminders(&sched, w.patient).await.unwrap();
    assert_eq!(list[0].status, "confirmed");
    // A second appointment (now a returning patient after the first passes): R reschedules.
    db.clock.advance(Duration::days(2));
    let appt2 = w.store.clock().now() + Duration::days(10);
    let r2 = w
        .store
        .schedule_reminder(&sched, w.patient, tid, appt2, Duration::days(30))
        .await
        .unwrap();
    assert_eq!(r2.tier.name(), "returning");
    let sent2 = w.store.send_due_reminders(&sys, 10).await.unwrap();
    assert_eq!(sent2.len(), 1, "a lead longer than the wait sends at once");
    let got = w
        .store
        .record_reminder_reply(&ctx, sent2[0].conversation, "R", &levels)
        .await
        .unwrap();
    assert_eq!(got, Some((r2.id, ReminderReply::Reschedule)));
    let item = w
        .store
        .work_item(&sched, sent2[0].conversation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (item.queue, item.intent),
        (Queue::Scheduling, Some(Intent::Scheduling))
    );
    // Cancel: only while scheduled.
    let r3 = w
        .store
        .schedule_reminder(&sched, w.patient, tid, appt2, Duration::hours(1))
        .await
        .unwrap();
    assert!(w.store.cancel_reminder(&sched, r3.id).await.unwrap());
    assert!(!w.store.cancel_reminder(&sched, r3.id).await.unwrap());
    // The appointment time is sealed.
    let mut raw = db.raw().await;
    let row = sqlx::query("SELECT appointment_ct FROM appointment_reminder LIMIT 1")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    let ct: Vec<u8> = row.get(0);
    assert!(!String::from_utf8_lossy(&ct).contains(&(appt.unix_timestamp() * 1000).to_string()));
}

/// An open emergency jumps every queue: each queue's listing carries it above its own work
/// (metadata only) until it is closed; its own queue lists it first as usual.
async fn emergencies_jump_every_queue(db: TestDb) {
    let w = world(&db).await;
    let emergency = w
        .conversation(&db, "Crushing chest pain", C::ClinicalMessage)
        .await;
    w.triage(emergency, Intent::Emergency, Urgency::Emergency)
        .await;
    let routine = w
        .conversation(&db, "Can I move my visit?", C::AdministrativeMessage)
        .await;
    w.triage(routine, Intent::Scheduling, Urgency::Routine)
        .await;
    let sched = w.viewer(Role::Scheduler);
    let page = w
        .store
        .work_queue(&sched, Queue::Scheduling, false, 0, 10)
        .await
        .unwrap();
    assert_eq!(
        page.items
            .iter()
            .map(|i| i.conversation_id)
            .collect::<Vec<_>>(),
        vec![routine]
    );
    assert_eq!(
        page.emergencies
            .iter()
            .map(|i| (i.conversation_id, i.queue))
            .collect::<Vec<_>>(),
        vec![(emergency, Intent::Emergency.default_queue())]
    );
    let nurse = w.viewer(Role::Nurse);
    let own = w
        .store
        .work_queue(&nurse, Intent::Emergency.default_queue(), false, 0, 10)
        .await
        .unwrap();
    assert_eq!(own.items[0].conversation_id, emergency);
    assert!(
        own.emergencies.is_empty(),
        "not listed twice in its own queue"
    );
    w.store
        .set_work_status(&nurse, emergency, S::Closed)
        .await
        .unwrap();
    let page = w
        .store
        .work_queue(&sched, Queue::Scheduling, false, 0, 10)
        .await
        .unwrap();
    assert!(
        page.emergencies.is_empty(),
        "a closed emergency no longer jumps"
    );
}

crate::both_backends!(
    queue_order_assignment_and_status,
    emergencies_jump_every_queue,
    notes_are_sealed_audited_and_minimum_necessary,
    drafts_follow_the_rule_and_wait_for_approval,
    auto_send_templates_go_out_only_for_their_intents,
    overdue_conversations_escalate_with_a_manual_clock,
    reminders_are_sent_and_replies_handled,
);

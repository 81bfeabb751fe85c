//! Examining activity: the filter the store evaluates (by patient — the accounting of
//! disclosures —, by user, by action, by time range), and the keys it indexes.
//!
//! Who may query, and recording the query itself, is the server's job; the order is fixed:
//!
//! 1. check the caller's permission (privacy officer or auditor; a patient-scoped query needs
//!    the patient in scope),
//! 2. append an audit event for the query *in the same transaction as the read*
//!    ([`query_event`] builds it: action `Execute`, object `audit_trail`, detail
//!    `audit_query`, or action `Disclose` with detail `audit_export` for an export),
//! 3. read one page with the store's `audit_query(q, after_seq, limit)`, continuing from the
//!    last seq of the previous page.
//!
//! There is deliberately no way to delete or update audit records: retention is at least six
//! years and enforced by the absence of any delete path in Perimeter.

use perimeter_domain::{PatientId, RequestId, StaffId};
use serde::{Deserialize, Serialize};

use crate::event::{Action, Actor, AuditEvent, ObjectRef, Outcome};

/// The minimum retention of audit records, in years (HIPAA 45 CFR 164.316(b)(2)).
pub const RETENTION_YEARS: u32 = 6;

/// A filter over audit events; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Events about this patient.
    pub patient: Option<PatientId>,
    /// Events by this staff user or service client, or AI calls this person initiated.
    pub user: Option<StaffId>,
    /// Events with this action.
    pub action: Option<Action>,
    /// At or after this instant (milliseconds since the Unix epoch).
    pub from_millis: Option<i64>,
    /// Before this instant.
    pub to_millis: Option<i64>,
}

/// The columns a store indexes for [`AuditQuery`], taken from the event at append time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexKeys {
    /// The patient concerned.
    pub patient: Option<PatientId>,
    /// The responsible person or client.
    pub user: Option<StaffId>,
    /// The action.
    pub action: Action,
    /// When.
    pub at_millis: i64,
}

/// The query columns a store keeps beside each record, as stored text: what
/// [`AuditQuery`] filters on. They are outside the hashed bytes, so the verifier compares them
/// with [`IndexColumns::of`] the hashed event (a nulled or changed `patient_id` would hide an
/// access from a patient's accounting of disclosures). The time filter uses the record's
/// `at_millis`, which is hashed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexColumns {
    /// `patient_id`: the patient's internal id.
    pub patient_id: Option<String>,
    /// `actor_id`: the responsible staff user or client ([`AuditEvent::responsible_user`]).
    pub actor_id: Option<String>,
    /// `action`: [`Action::as_str`].
    pub action: String,
}

impl IndexColumns {
    /// The columns a store must write for `event`.
    pub fn of(event: &AuditEvent) -> Self {
        let k = event.index_keys();
        Self {
            patient_id: k.patient.map(|p| p.to_string()),
            actor_id: k.user.map(|u| u.to_string()),
            action: k.action.as_str().to_owned(),
        }
    }

    /// The first column that differs from what `event` implies ([`IndexColumns::of`]), by its
    /// column name. Allocates nothing (the verifier calls it for every record).
    pub fn first_mismatch(&self, event: &AuditEvent) -> Option<&'static str> {
        let k = event.index_keys();
        if !same_id(self.patient_id.as_deref(), k.patient.as_ref()) {
            Some("patient_id")
        } else if !same_id(self.actor_id.as_deref(), k.user.as_ref()) {
            Some("actor_id")
        } else if self.action != k.action.as_str() {
            Some("action")
        } else {
            None
        }
    }
}

/// Whether a stored id column is the `Display` text of `id` (both absent counts as equal).
fn same_id<T: std::fmt::Display>(stored: Option<&str>, id: Option<&T>) -> bool {
    use std::fmt::Write as _;
    match (stored, id) {
        (None, None) => true,
        (Some(text), Some(id)) => {
            let mut buf = IdText::default();
            write!(buf, "{id}").is_ok() && buf.as_str() == Some(text)
        }
        _ => false,
    }
}

/// A stack buffer for an id's text (a hyphenated UUID is 36 bytes).
struct IdText {
    bytes: [u8; 64],
    len: usize,
}

impl Default for IdText {
    fn default() -> Self {
        Self {
            bytes: [0; 64],
            len: 0,
        }
    }
}

impl IdText {
    fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.bytes.get(..self.len)?).ok()
    }
}

impl std::fmt::Write for IdText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(std::fmt::Error)?;
        let dst = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl AuditEvent {
    /// The staff user or client responsible: the user, the service client, or the human who
    /// initiated an AI call.
    pub fn responsible_user(&self) -> Option<StaffId> {
        match &self.actor {
            Actor::User { user, .. } => Some(*user),
            Actor::Service { client } => Some(*client),
            Actor::Ai { initiated_by, .. } => *initiated_by,
            Actor::System { .. } | Actor::Anonymous => None,
        }
    }

    /// The keys a store indexes for queries.
    pub fn index_keys(&self) -> IndexKeys {
        IndexKeys {
            patient: self.patient,
            user: self.responsible_user(),
            action: self.action,
            at_millis: self.at_millis,
        }
    }
}

impl AuditQuery {
    /// Whether the event passes the filter.
    pub fn matches(&self, e: &AuditEvent) -> bool {
        self.matches_keys(&e.index_keys())
    }

    /// Whether events with these index keys pass the filter.
    pub fn matches_keys(&self, k: &IndexKeys) -> bool {
        self.patient.is_none_or(|p| k.patient == Some(p))
            && self.user.is_none_or(|u| k.user == Some(u))
            && self.action.is_none_or(|a| k.action == a)
            && self.from_millis.is_none_or(|f| k.at_millis >= f)
            && self.to_millis.is_none_or(|t| k.at_millis < t)
    }
}

/// Whether a query is an export (a disclosure) or an on-screen search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// Searching or viewing the trail.
    Search,
    /// Exporting records out of Perimeter (FHIR or CSV).
    Export,
}

/// The audit event recording a query of the trail (the self-audit). `at_millis` comes from the
/// injected clock.
pub fn query_event(
    at_millis: i64,
    actor: Actor,
    query: &AuditQuery,
    kind: QueryKind,
    outcome: Outcome,
    request_id: Option<RequestId>,
) -> AuditEvent {
    let (action, detail) = match kind {
        QueryKind::Search => (Action::Execute, "audit_query"),
        QueryKind::Export => (Action::Disclose, "audit_export"),
    };
    AuditEvent {
        at_millis,
        actor,
        action,
        object: ObjectRef {
            kind: "audit_trail".into(),
            id: None,
        },
        patient: query.patient,
        categories: Vec::new(),
        purpose: Some(perimeter_domain::PurposeOfUse::Operations),
        outcome,
        detail: Some(detail.into()),
        client_addr: None,
        user_agent: None,
        request_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(user: StaffId, patient: Option<PatientId>, action: Action, at: i64) -> AuditEvent {
        AuditEvent {
            at_millis: at,
            actor: Actor::User {
                user,
                roles: vec![],
                session: None,
            },
            action,
            object: ObjectRef {
                kind: "patient".into(),
                id: None,
            },
            patient,
            categories: vec![],
            purpose: None,
            outcome: Outcome::Success,
            detail: None,
            client_addr: None,
            user_agent: None,
            request_id: None,
        }
    }

    #[test]
    fn filters_combine() {
        let (u, p) = (StaffId::new(), PatientId::new());
        let e = ev(u, Some(p), Action::Read, 100);
        assert!(AuditQuery::default().matches(&e));
        let q = AuditQuery {
            patient: Some(p),
            user: Some(u),
            action: Some(Action::Read),
            from_millis: Some(100),
            to_millis: Some(101),
        };
        assert!(q.matches(&e));
        assert!(
            !AuditQuery {
                to_millis: Some(100),
                ..q.clone()
            }
            .matches(&e)
        );
        assert!(
            !AuditQuery {
                patient: Some(PatientId::new()),
                ..q.clone()
            }
            .matches(&e)
        );
        assert!(
            !AuditQuery {
                user: Some(StaffId::new()),
                ..q.clone()
            }
            .matches(&e)
        );
        assert!(
            !AuditQuery {
                action: Some(Action::Update),
                ..q
            }
            .matches(&e)
        );
        let ai = AuditEvent {
            actor: Actor::Ai {
                provider: "v".into(),
                model: "m".into(),
                initiated_by: Some(u),
            },
            ..e
        };
        assert_eq!(ai.responsible_user(), Some(u));
        let qe = query_event(
            5,
            ai.actor.clone(),
            &AuditQuery::default(),
            QueryKind::Export,
            Outcome::Success,
            None,
        );
        assert_eq!(qe.action, Action::Disclose);
    }

    #[test]
    fn index_columns_follow_the_event() {
        let (u, p) = (StaffId::new(), PatientId::new());
        let e = ev(u, Some(p), Action::Disclose, 7);
        let cols = IndexColumns::of(&e);
        assert_eq!(cols.patient_id, Some(p.to_string()));
        assert_eq!(cols.actor_id, Some(u.to_string()));
        assert_eq!(cols.action, "disclose");
        assert_eq!(cols.first_mismatch(&e), None);
        let nulled = IndexColumns {
            patient_id: None,
            ..cols.clone()
        };
        assert_eq!(nulled.first_mismatch(&e), Some("patient_id"));
        let other = IndexColumns {
            actor_id: Some(StaffId::new().to_string()),
            ..cols.clone()
        };
        assert_eq!(other.first_mismatch(&e), Some("actor_id"));
        let read = IndexColumns {
            action: "read".into(),
            ..cols
        };
        assert_eq!(read.first_mismatch(&e), Some("action"));
    }

    #[test]
    fn id_columns_must_be_the_exact_canonical_text() {
        let (u, p) = (StaffId::new(), PatientId::new());
        let e = ev(u, Some(p), Action::Read, 7);
        let cols = IndexColumns::of(&e);
        // The same UUID in another spelling would not match the store's queries.
        for text in [
            p.to_string().to_uppercase(),
            p.to_string().replace('-', ""),
            format!("{{{p}}}"),
            format!(" {p}"),
            format!("{p}{}", "0".repeat(100)),
            String::new(),
        ] {
            let bad = IndexColumns {
                patient_id: Some(text.clone()),
                ..cols.clone()
            };
            assert_eq!(bad.first_mismatch(&e), Some("patient_id"), "{text:?}");
        }
        // A column set where the event has no such id, and the reverse.
        let system = AuditEvent {
            actor: Actor::System {
                component: "x".into(),
            },
            patient: None,
            ..e.clone()
        };
        assert_eq!(cols.first_mismatch(&system), Some("patient_id"));
        let none = IndexColumns::of(&system);
        assert_eq!(none.first_mismatch(&system), None);
        let with_actor = IndexColumns {
            actor_id: Some(u.to_string()),
            ..none
        };
        assert_eq!(with_actor.first_mismatch(&system), Some("actor_id"));
    }
}

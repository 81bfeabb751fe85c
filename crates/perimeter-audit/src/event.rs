//! One event model for everything the trail records.
//!
//! Audit events hold no PHI in clear: patients appear by internal id only, and there is no
//! free-text field. The closest thing, [`AuditEvent::detail`], is a machine code chosen by the
//! program (such as `"mfa_replay"`), never text a person or patient wrote.

use perimeter_domain::{DataCategory, PatientId, PurposeOfUse, RequestId, Role, StaffId};
use serde::{Deserialize, Serialize};

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A signed-in staff user.
    User {
        /// The user's id.
        user: StaffId,
        /// The roles the user held at the time.
        roles: Vec<Role>,
        /// An opaque, non-secret session reference (never the session token itself).
        session: Option<String>,
    },
    /// A service client using an API token.
    Service {
        /// The client's id.
        client: StaffId,
    },
    /// An AI model call, with the human who initiated the work.
    Ai {
        /// Vendor (provider) name from the vendor registry.
        provider: String,
        /// Model name.
        model: String,
        /// The human on whose behalf the model was called, if any.
        initiated_by: Option<StaffId>,
    },
    /// Perimeter itself (scheduled jobs, key rotation, start-up).
    System {
        /// Which component.
        component: String,
    },
    /// Someone not (yet) authenticated, for example a failed login.
    Anonymous,
}

/// What was done (after FHIR AuditEvent action codes, extended with security events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Create.
    Create,
    /// Read or view.
    Read,
    /// Update.
    Update,
    /// Delete (or crypto-shred).
    Delete,
    /// Execute (search, query, an AI call).
    Execute,
    /// Disclose outside Perimeter (export, a message sent to a vendor or a patient).
    Disclose,
    /// Log in.
    Login,
    /// Log out, or a session ended.
    Logout,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 8] = [
        Action::Create,
        Action::Read,
        Action::Update,
        Action::Delete,
        Action::Execute,
        Action::Disclose,
        Action::Login,
        Action::Logout,
    ];

    /// The action's code: its serialised name (`read`, `disclose`, ...), also the value of the
    /// stores' `action` index column.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Execute => "execute",
            Action::Disclose => "disclose",
            Action::Login => "login",
            Action::Logout => "logout",
        }
    }

    /// Parses [`Action::as_str`] output.
    pub fn from_code(code: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == code)
    }
}

/// The record the action was on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The record type (`patient`, `conversation`, `message`, `staff_user`, `vendor`, ...).
    pub kind: String,
    /// The record id, if there is one (an internal id, never a natural key such as an MRN).
    pub id: Option<String>,
}

/// Whether it worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused by authorization or policy.
    Denied,
    /// Attempted and failed.
    Failure,
}

/// One audited event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When, in milliseconds since the Unix epoch, from the injected clock.
    pub at_millis: i64,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: Action,
    /// On what.
    pub object: ObjectRef,
    /// The patient concerned, by internal id.
    pub patient: Option<PatientId>,
    /// The categories of data touched.
    pub categories: Vec<DataCategory>,
    /// Why.
    pub purpose: Option<PurposeOfUse>,
    /// Result.
    pub outcome: Outcome,
    /// A program-chosen code refining the event (`"mfa_replay"`, `"break_glass"`); never free text.
    pub detail: Option<String>,
    /// The client's network address (staff and service clients; never a patient's).
    pub client_addr: Option<String>,
    /// The client's user agent.
    pub user_agent: Option<String>,
    /// The request that caused it.
    pub request_id: Option<RequestId>,
}

impl AuditEvent {
    /// The canonical bytes that are hashed into the trail: compact JSON in field declaration
    /// order. Stored verbatim, so verification never depends on re-serialising.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising this plain struct cannot fail: every field is a string, number, enum or
        // list of those. An empty vector would fail verification loudly rather than silently.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses canonical bytes back into an event.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_codes_are_the_serialised_names() {
        for a in Action::ALL {
            let json = serde_json::to_value(a).unwrap();
            assert_eq!(json.as_str(), Some(a.as_str()));
            assert_eq!(Action::from_code(a.as_str()), Some(a));
        }
        assert_eq!(Action::from_code("READ"), None);
    }
}

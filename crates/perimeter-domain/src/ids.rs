//! Typed record ids. They are random (UUIDv7, time-ordered for index locality) and carry no
//! information about the person they name, so they may appear in audit records, logs and metrics
//! where PHI may not.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An id string that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id: expected a UUID such as 0190c6d2-7c3e-7b7a-9d7e-2f1c3a4b5c6d")]
pub struct IdParseError {
    /// Which kind of id was expected.
    pub kind: &'static str,
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID (for example one read back from the database).
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The 16 bytes of the UUID (used as associated data in encryption).
            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s.trim())
                    .map(Self)
                    .map_err(|_| IdParseError { kind: $kind })
            }
        }
    };
}

id_type!(
    /// A practice (tenant).
    PracticeId, "practice"
);
id_type!(
    /// A patient record.
    PatientId, "patient"
);
id_type!(
    /// A staff user or service client.
    StaffId, "staff"
);
id_type!(
    /// A conversation with a patient (or an unverified contact).
    ConversationId, "conversation"
);
id_type!(
    /// One message in a conversation.
    MessageId, "message"
);
id_type!(
    /// One HTTP request or job, for correlating logs with audit records.
    RequestId, "request"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings_and_json() {
        let id = PatientId::new();
        let parsed: PatientId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<PatientId>(&json).unwrap(), id);
    }

    #[test]
    fn bad_id_names_the_kind_and_not_the_input() {
        let err = "Maria Gonzalez".parse::<PatientId>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("patient"));
        assert!(!msg.contains("Maria"));
    }

    #[test]
    fn fresh_ids_are_distinct() {
        assert_ne!(ConversationId::new(), ConversationId::new());
    }
}

//! Every storage test, run against SQLite (temporary directory) and PostgreSQL (a fresh
//! database per test; URL from PERIMETER_TEST_POSTGRES_URL, skipped only when
//! PERIMETER_TEST_SKIP_POSTGRES=1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "store/common.rs"]
mod common;

#[path = "store/actors.rs"]
mod actors;
#[path = "store/audit_trail.rs"]
mod audit_trail;
#[path = "store/auth.rs"]
mod auth;
#[path = "store/billing.rs"]
mod billing;
#[path = "store/channels.rs"]
mod channels;
#[path = "store/failures.rs"]
mod failures;
#[path = "store/keys.rs"]
mod keys;
#[path = "store/records.rs"]
mod records;
#[path = "store/vendors.rs"]
mod vendors;
#[path = "store/views.rs"]
mod views;
#[path = "store/web_chat.rs"]
mod web_chat;
#[path = "store/work.rs"]
mod work;

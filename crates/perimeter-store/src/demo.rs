//! Demo data for `perimeter serve --demo`: one practice, a user for every role and a few dozen
//! obviously fake patients with conversations, a primary insurance coverage and a billing
//! account each. Seeding twice does nothing the second time.
//!
//! Every human demo user has the same password and no authenticator yet: the first log-in
//! enrols TOTP (otpauth URI and QR code), as for any new account. The service client has no
//! password (service clients use API tokens, never the console). The demo clinician and nurse
//! are on the care team of every fourth patient, so the rest shows the withheld clinical
//! bodies and emergency access.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use perimeter_domain::{DataCategory, PracticeId, Role};
use rand_core::{OsRng, RngCore};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::billing::{
    AccountIdentifier, AccountInput, Cents, CoverageInput, InsuranceName, SubscriberRelationship,
};
use crate::model::{AccessContext, Channel, Direction, NewMessage, NewStaff, PatientData};
use crate::{Store, StoreError};

/// The demo practice's name (how seeding recognises it was done).
pub const DEMO_PRACTICE_NAME: &str = "Perimeter Demo Family Practice";

/// How expensive the demo users' password hashes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoHashing {
    /// OWASP's argon2id baseline (19 MiB, 2 passes): what real accounts use.
    Standard,
    /// A cheap argon2id (for tests only).
    Fast,
}

/// What to seed.
#[derive(Clone)]
pub struct DemoOptions {
    /// The password of every demo user (`None`: a random one, reported once).
    pub password: Option<Zeroizing<String>>,
    /// How many patients (at most 36).
    pub patients: usize,
    /// Hash cost.
    pub hashing: DemoHashing,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            password: None,
            patients: 30,
            hashing: DemoHashing::Standard,
        }
    }
}

impl std::fmt::Debug for DemoOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoOptions")
            .field("patients", &self.patients)
            .field("hashing", &self.hashing)
            .finish_non_exhaustive()
    }
}

/// What seeding did, for printing.
#[derive(Clone)]
pub struct SeedReport {
    /// The demo practice.
    pub practice: PracticeId,
    /// False when the demo data was already there (nothing was written).
    pub created: bool,
    /// Demo usernames and their roles (the `service` client has no password).
    pub users: Vec<(String, Vec<Role>)>,
    /// The demo users' password (only when `created`; print it once).
    pub password: Option<SecretString>,
    /// Patients created.
    pub patients: usize,
    /// Conversations created.
    pub conversations: usize,
    /// Messages created.
    pub messages: usize,
}

impl std::fmt::Debug for SeedReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedReport")
            .field("practice", &self.practice)
            .field("created", &self.created)
            .field("users", &self.users)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("patients", &self.patients)
            .field("conversations", &self.conversations)
            .field("messages", &self.messages)
            .finish()
    }
}

/// One demo conversation: channel, subject and messages (direction, body).
pub type DemoConversation = (Channel, String, Vec<(Direction, String)>);

/// One fake patient and their conversations (public so tests can look for these bytes).
#[derive(Clone)]
pub struct DemoPatient {
    /// Their data.
    pub data: PatientData,
    /// Their conversations.
    pub conversations: Vec<DemoConversation>,
    /// Their primary insurance coverage.
    pub coverage: CoverageInput,
    /// Their billing account.
    pub account: AccountInput,
}

const PAYERS: [(&str, &str); 3] = [
    ("Demo Mutual Health", "Demo Gold PPO"),
    ("Example Care Plan", "Example Silver HMO"),
    ("Sampleton Insurance", "Sampleton Basic"),
];

/// The demo coverage and account of demo patient `i` (obviously fake numbers).
fn demo_billing(i: usize) -> Result<(CoverageInput, AccountInput), StoreError> {
    let (payer, plan) = PAYERS[i % PAYERS.len()];
    let n = i64::try_from(i).unwrap_or(0);
    let coverage = CoverageInput {
        payer: InsuranceName::parse("payer", payer)?,
        plan: Some(InsuranceName::parse("plan", plan)?),
        member_id: AccountIdentifier::parse("member_id", &format!("DMX{:07}", 4_200_000 + n))?,
        group_number: Some(AccountIdentifier::parse(
            "group_number",
            &format!("GRP-{}", 700 + n % 4),
        )?),
        relationship: if i % 5 == 4 {
            SubscriberRelationship::Child
        } else {
            SubscriberRelationship::Subscriber
        },
        effective_from: time::Date::from_calendar_date(2026, time::Month::January, 1).ok(),
        effective_to: None,
        primary: true,
    };
    let account = AccountInput {
        account_number: AccountIdentifier::parse(
            "account_number",
            &format!("DEMO-ACCT-{:05}", 30_000 + n),
        )?,
        balance: Cents::new("balance_cents", (n * 2_375) % 48_000)?,
        last_statement: time::Date::from_calendar_date(2026, time::Month::February, 1).ok(),
    };
    Ok((coverage, account))
}

const GIVEN: [&str; 6] = ["Avery", "Blake", "Casey", "Devon", "Emery", "Finley"];
const FAMILY: [&str; 6] = [
    "Testwell",
    "Sampleby",
    "Mockridge",
    "Fakeworth",
    "Placeholt",
    "Dummondo",
];

/// The fake patients, deterministic, at most 36.
pub fn demo_patients(n: usize) -> Vec<DemoPatient> {
    (0..n.min(36))
        .map(|i| {
            let given = GIVEN[i % 6];
            let family = FAMILY[(i / 6) % 6];
            let year = 1950 + i32::try_from(i).unwrap_or(0);
            let month = time::Month::try_from(u8::try_from(i % 12 + 1).unwrap_or(1))
                .unwrap_or(time::Month::January);
            let day = u8::try_from(i % 28 + 1).unwrap_or(1);
            let data = PatientData {
                given_name: given.to_owned(),
                family_name: family.to_owned(),
                birth_date: time::Date::from_calendar_date(year, month, day).ok(),
                phone: Some(format!("(202) 555-01{i:02}")),
                email: Some(format!(
                    "{}.{}{i}@example.org",
                    given.to_lowercase(),
                    family.to_lowercase()
                )),
                address: Some(format!("{} Example Street, Springfield", 100 + i)),
                mrn: Some(format!("DEMO-{:04}", 1000 + i)),
                notes: Some(format!(
                    "Demo record {i}: prefers text messages in the afternoon."
                )),
            };
            let mut conversations = vec![(
                Channel::Sms,
                "Appointment change".to_owned(),
                vec![
                    (
                        Direction::Inbound,
                        format!(
                            "Hi, this is {given}. Could I move my appointment on the {}th to a later time?",
                            i % 20 + 3
                        ),
                    ),
                    (
                        Direction::Outbound,
                        format!(
                            "Of course, {given}. We have an opening on Thursday at {} pm. Does that work?",
                            i % 5 + 1
                        ),
                    ),
                    (
                        Direction::Inbound,
                        format!("Thursday works, thank you. Ref {given}{family}{i}."),
                    ),
                ],
            )];
            if i % 2 == 0 {
                conversations.push((
                    Channel::Portal,
                    "Question about results".to_owned(),
                    vec![
                        (
                            Direction::Inbound,
                            format!(
                                "My rash on the left arm has not improved after {} days of the cream.",
                                i + 4
                            ),
                        ),
                        (
                            Direction::Note,
                            format!("Nurse to call back {given} {family} about the rash, case {i}."),
                        ),
                    ],
                ));
            }
            let (coverage, account) = demo_billing(i)?;
            Ok(DemoPatient {
                data,
                conversations,
                coverage,
                account,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()
        // The demo values are fixed and valid (a test seeds them); never reached.
        .unwrap_or_default()
}

fn demo_users() -> Vec<(&'static str, &'static str, Role)> {
    vec![
        ("admin", "Demo Admin", Role::Admin),
        ("privacy", "Demo Privacy Officer", Role::PrivacyOfficer),
        ("clinician", "Demo Clinician", Role::Clinician),
        ("nurse", "Demo Nurse", Role::Nurse),
        ("scheduler", "Demo Scheduler", Role::Scheduler),
        ("billing", "Demo Billing", Role::Billing),
        ("frontdesk", "Demo Front Desk", Role::FrontDesk),
        ("auditor", "Demo Auditor", Role::Auditor),
        ("service", "Demo Service Client", Role::Service),
    ]
}

fn random_password() -> Result<Zeroizing<String>, StoreError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = Zeroizing::new([0u8; 16]);
    OsRng
        .try_fill_bytes(bytes.as_mut())
        .map_err(|_| StoreError::Crypto(perimeter_crypto::CryptoError::Random))?;
    Ok(Zeroizing::new(
        bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
            .collect(),
    ))
}

/// An argon2id PHC hash of `password`.
pub fn hash_password(password: &str, hashing: DemoHashing) -> Result<String, StoreError> {
    let params = match hashing {
        DemoHashing::Standard => Params::new(19 * 1024, 2, 1, None),
        DemoHashing::Fast => Params::new(256, 1, 1, None),
    }
    .map_err(|_| StoreError::Config("argon2 parameters rejected".into()))?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| StoreError::Config("argon2 hashing failed".into()))
}

impl Store {
    /// Seeds the demo data unless the demo practice exists already.
    pub async fn seed_demo(&self, opts: &DemoOptions) -> Result<SeedReport, StoreError> {
        let users: Vec<(String, Vec<Role>)> = demo_users()
            .into_iter()
            .map(|(u, _, r)| (u.to_owned(), vec![r]))
            .collect();
        if let Some(p) = self
            .list_practices()
            .await?
            .into_iter()
            .find(|p| p.name == DEMO_PRACTICE_NAME)
        {
            return Ok(SeedReport {
                practice: p.id,
                created: false,
                users,
                password: None,
                patients: 0,
                conversations: 0,
                messages: 0,
            });
        }
        let ctx = AccessContext::system("demo_seed");
        let password = match &opts.password {
            Some(p) => p.clone(),
            None => random_password()?,
        };
        let practice = self.create_practice(&ctx, DEMO_PRACTICE_NAME).await?;
        let mut author = None;
        let mut carers = Vec::new();
        for (username, display, role) in demo_users() {
            let hash = if role == Role::Service {
                None
            } else {
                Some(hash_password(&password, opts.hashing)?)
            };
            let id = self
                .create_staff(
                    &ctx,
                    practice,
                    &NewStaff {
                        username: username.to_owned(),
                        display_name: display.to_owned(),
                        roles: vec![role],
                        password_hash: hash,
                    },
                )
                .await?;
            if role == Role::Nurse {
                author = Some(id);
            }
            if matches!(role, Role::Nurse | Role::Clinician) {
                carers.push(id);
            }
        }
        let mut report = SeedReport {
            practice,
            created: true,
            users,
            password: Some(SecretString::from(password.as_str().to_owned())),
            patients: 0,
            conversations: 0,
            messages: 0,
        };
        for (i, p) in demo_patients(opts.patients).into_iter().enumerate() {
            let pid = self.create_patient(&ctx, practice, &p.data).await?;
            self.record_billing_data(&ctx, pid, Some(&p.coverage), Some(&p.account))
                .await?;
            report.patients += 1;
            if i % 4 == 0 {
                for carer in &carers {
                    self.assign_care(&ctx, pid, *carer).await?;
                }
            }
            for (channel, subject, messages) in &p.conversations {
                let cid = self
                    .create_conversation(&ctx, pid, *channel, Some(subject))
                    .await?;
                report.conversations += 1;
                for (direction, body) in messages {
                    // Clinical content is clinical whoever wrote it (a staff note about the
                    // rash included); other notes are administrative internal notes.
                    let category = if body.contains("rash") {
                        DataCategory::ClinicalMessage
                    } else if *direction == Direction::Note {
                        DataCategory::InternalNote
                    } else {
                        DataCategory::AdministrativeMessage
                    };
                    self.add_message(
                        &ctx,
                        cid,
                        &NewMessage {
                            direction: *direction,
                            author: (*direction != Direction::Inbound)
                                .then_some(author)
                                .flatten(),
                            category,
                            body: body.clone(),
                        },
                    )
                    .await?;
                    report.messages += 1;
                }
            }
        }
        Ok(report)
    }
}

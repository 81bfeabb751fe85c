//! `perimeter tokens`: API tokens for the practice's own tools (the OpenAI-compatible gateway,
//! the de-identification API). `create` prints the new token alone on stdout, so a script can
//! capture it; everything else goes to stderr.

use std::collections::BTreeSet;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use perimeter_audit::Actor;
use perimeter_auth::{
    ApiTokenCreateError, ApiTokenRecord, ApiTokenScope, Permission, RequestMeta, SecurityEvent,
    create_api_token,
};
use perimeter_domain::{PracticeId, PurposeOfUse, Role};
use perimeter_store::{AccessContext, NewStaff, Store, parse_date};
use serde_json::json;
use time::{Date, Duration, OffsetDateTime, Time};
use uuid::Uuid;

use crate::config::Config;
use crate::runtime::{self, OpenMode};

/// The longest a token may live (perimeter-auth refuses more).
const MAX_LIFETIME: Duration = Duration::days(366);

const EXAMPLES: &str = "\
Examples:
  TOKEN=$(perimeter tokens create --name scribe-app --scope gateway)
  perimeter tokens create --name intake-script --scope gateway --scope deid --expires 2026-12-31
  perimeter tokens create --name billing-bot --scope gateway --purpose payment --purpose operations
  perimeter tokens list
  perimeter tokens revoke scribe-app

A tool sends the token as `Authorization: Bearer pmt_...` to POST /v1/chat/completions,
GET /v1/models or POST /api/deid. A token with several purposes must state one per request
in the x-purpose-of-use header.";

/// API tokens for machine clients.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct TokensArgs {
    #[command(subcommand)]
    pub command: TokensCommand,
}

/// `tokens` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token: prints it alone on stdout (shown once; only its hash is stored).
    Create(CreateArgs),
    /// List tokens (never the token itself): id, name, client, scope, expiry, status.
    List(ListArgs),
    /// Revoke a token by its name or id; it stops working at once, on every server.
    Revoke(RevokeArgs),
}

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// The OpenAI-compatible endpoint: POST /v1/chat/completions, GET /v1/models.
    Gateway,
    /// The de-identification API: POST /api/deid.
    Deid,
}

impl ScopeArg {
    fn permission(self) -> Permission {
        match self {
            ScopeArg::Gateway => Permission::UseGateway,
            ScopeArg::Deid => Permission::DeidentifyText,
        }
    }
}

fn date_arg(s: &str) -> Result<Date, String> {
    parse_date(s).ok_or_else(|| "expected a date written YYYY-MM-DD, e.g. 2026-12-31".to_owned())
}

fn purpose_arg(s: &str) -> Result<PurposeOfUse, String> {
    match s.parse::<PurposeOfUse>() {
        Ok(PurposeOfUse::Emergency) | Err(_) => {
            Err("expected treatment, payment or operations".to_owned())
        }
        Ok(p) => Ok(p),
    }
}

/// `tokens create` options.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The token's name (1 to 80 printable characters; no PHI), used to list and revoke it.
    /// Unless --client is given, the token authenticates as the service account of this name,
    /// created if it does not exist.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// What it may call (repeat for several): gateway or deid.
    #[arg(long = "scope", value_enum, value_name = "SCOPE", required = true)]
    pub scopes: Vec<ScopeArg>,
    /// The purposes of use it may claim (repeat for several): treatment, payment, operations.
    /// Default: operations.
    #[arg(long = "purpose", value_name = "PURPOSE", value_parser = purpose_arg)]
    pub purposes: Vec<PurposeOfUse>,
    /// The last day it works (YYYY-MM-DD, at most 366 days ahead). Default: 90 days from now.
    #[arg(long, value_name = "DATE", value_parser = date_arg)]
    pub expires: Option<Date>,
    /// The service account (username, role service) the token authenticates as.
    #[arg(long, value_name = "USERNAME")]
    pub client: Option<String>,
    /// The practice (id) when the installation has several.
    #[arg(long, value_name = "ID")]
    pub practice: Option<PracticeId>,
}

/// `tokens list` options.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The practice (id) when the installation has several.
    #[arg(long, value_name = "ID")]
    pub practice: Option<PracticeId>,
}

/// `tokens revoke` options.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The token's name or id.
    pub token: String,
    /// The practice (id) when the installation has several.
    #[arg(long, value_name = "ID")]
    pub practice: Option<PracticeId>,
}

/// Runs `perimeter tokens`.
pub async fn run(args: TokensArgs, config: &Config) -> anyhow::Result<()> {
    let rt = runtime::open(config, OpenMode::MustExist).await?;
    let store = rt.store.clone();
    let result = match args.command {
        TokensCommand::Create(a) => create(&store, a).await,
        TokensCommand::List(a) => list(&store, a).await,
        TokensCommand::Revoke(a) => revoke(&store, a).await,
    };
    store.close().await;
    result
}

fn cli_actor() -> Actor {
    Actor::System {
        component: "cli".into(),
    }
}

/// The practice: the one given, the only one, or a new one on an installation with none.
async fn practice(
    store: &Store,
    given: Option<PracticeId>,
    create: bool,
) -> anyhow::Result<PracticeId> {
    let all = store.list_practices().await?;
    if let Some(p) = given {
        if all.iter().any(|x| x.id == p) {
            return Ok(p);
        }
        bail!("--practice {p}: no such practice");
    }
    match all.as_slice() {
        [only] => Ok(only.id),
        [] if create => {
            let p = store
                .create_practice(&AccessContext::system("cli"), "Practice")
                .await?;
            eprintln!("created the installation's practice {p}");
            Ok(p)
        }
        [] => bail!("this installation has no practice yet, so it has no tokens"),
        _ => bail!(
            "this installation has {} practices; pass --practice ID ({})",
            all.len(),
            all.iter()
                .map(|p| p.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

async fn create(store: &Store, a: CreateArgs) -> anyhow::Result<()> {
    let now = store.clock().now();
    let expires_at = match a.expires {
        // Works through the whole of its last day (UTC).
        Some(d) => d
            .next_day()
            .map(|n| n.with_time(Time::MIDNIGHT).assume_utc())
            .context("--expires: date out of range")?,
        None => now + Duration::days(90),
    };
    if expires_at <= now {
        bail!("--expires: expected a day from today on");
    }
    if expires_at - now > MAX_LIFETIME + Duration::days(1) {
        bail!(
            "--expires: expected at most 366 days ahead (tokens always expire; create a new one before)"
        );
    }
    let expires_at = expires_at.min(now + MAX_LIFETIME);
    let practice = practice(store, a.practice, true).await?;
    let username = a.client.clone().unwrap_or_else(|| a.name.trim().to_owned());
    let client = match store.find_staff_by_username(practice, &username).await? {
        Some(s) if s.roles.contains(&Role::Service) && s.disabled_at_millis.is_none() => s.id,
        Some(s) if s.roles.contains(&Role::Service) => {
            bail!("the service account {:?} is disabled", s.username)
        }
        Some(_) => bail!(
            "{username:?} is a staff account, not a service account; tokens authenticate machine clients (pass --client with a service account's name, or another --name)"
        ),
        None if a.client.is_some() => bail!("--client {username:?}: no such service account"),
        None => {
            let id = store
                .create_staff(
                    &AccessContext::system("cli"),
                    practice,
                    &NewStaff {
                        username: username.clone(),
                        display_name: format!("Service client {username}"),
                        roles: vec![Role::Service],
                        password_hash: None,
                    },
                )
                .await
                .map_err(|e| match e {
                    perimeter_store::StoreError::Invalid { .. } => anyhow::anyhow!(
                        "--name {username:?} cannot name a service account (no spaces); pass --client with an existing one"
                    ),
                    perimeter_store::StoreError::Duplicate { .. } => anyhow::anyhow!(
                        "the username {username:?} is taken in another practice; pass --client"
                    ),
                    other => other.into(),
                })?;
            eprintln!("created service account {username}");
            id
        }
    };
    let purposes: BTreeSet<PurposeOfUse> = if a.purposes.is_empty() {
        [PurposeOfUse::Operations].into_iter().collect()
    } else {
        a.purposes.iter().copied().collect()
    };
    let scope = ApiTokenScope {
        permissions: a.scopes.iter().map(|s| s.permission()).collect(),
        purposes,
    };
    let new = match create_api_token(client, &a.name, scope, expires_at, now) {
        Ok(n) => n,
        Err(ApiTokenCreateError::Scope(e)) => bail!("{e}"),
        Err(ApiTokenCreateError::Auth(e)) => return Err(e.into()),
    };
    let event = SecurityEvent::ApiTokenCreated {
        token: new.record.id,
    }
    .to_audit(
        cli_actor(),
        store.clock().now_millis(),
        &RequestMeta::default(),
    );
    store.insert_api_token(&new.record, &event).await?;
    eprintln!(
        "created token {} ({}), for {username}, expires {}; it is shown once, below",
        new.record.id,
        new.record.label,
        new.record.expires_at.date()
    );
    println!("{}", new.token.as_str());
    Ok(())
}

fn status(t: &ApiTokenRecord, now: OffsetDateTime) -> &'static str {
    if t.revoked_at.is_some_and(|r| r <= now) {
        "revoked"
    } else if now >= t.expires_at {
        "expired"
    } else {
        "active"
    }
}

fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

async fn list(store: &Store, a: ListArgs) -> anyhow::Result<()> {
    let practice = match practice(store, a.practice, false).await {
        Ok(p) => p,
        Err(_) if a.practice.is_none() && store.list_practices().await?.is_empty() => {
            if a.json {
                println!("[]");
            } else {
                eprintln!("no tokens; create one with `perimeter tokens create`");
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let now = store.clock().now();
    let tokens = store.list_api_tokens(practice).await?;
    let staff = store.list_staff(practice).await?;
    let client_name = |t: &ApiTokenRecord| {
        staff
            .iter()
            .find(|s| s.id == t.client)
            .map(|s| s.username.clone())
            .unwrap_or_else(|| t.client.to_string())
    };
    if a.json {
        let items: Vec<_> = tokens
            .iter()
            .map(|t| {
                json!({
                    "id": t.id.to_string(),
                    "name": t.label,
                    "client": client_name(t),
                    "permissions": t.scope.permissions.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                    "purposes": t.scope.purposes.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                    "created_at": t.created_at.to_string(),
                    "expires_at": t.expires_at.to_string(),
                    "status": status(t, now),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(());
    }
    if tokens.is_empty() {
        eprintln!("no tokens; create one with `perimeter tokens create`");
        return Ok(());
    }
    println!(
        "{:<36} {:<20} {:<20} {:<28} {:<12} {:<8}",
        "ID", "NAME", "CLIENT", "PERMISSIONS", "EXPIRES", "STATUS"
    );
    for t in &tokens {
        println!(
            "{:<36} {:<20} {:<20} {:<28} {:<12} {:<8}",
            t.id,
            t.label,
            client_name(t),
            join(t.scope.permissions.iter().map(|p| p.as_str())),
            t.expires_at.date(),
            status(t, now)
        );
    }
    Ok(())
}

async fn revoke(store: &Store, a: RevokeArgs) -> anyhow::Result<()> {
    let practice = practice(store, a.practice, false).await?;
    let now = store.clock().now();
    let tokens = store.list_api_tokens(practice).await?;
    let live: Vec<&ApiTokenRecord> = match a.token.parse::<Uuid>() {
        Ok(id) => tokens.iter().filter(|t| t.id == id).collect(),
        Err(_) => tokens
            .iter()
            .filter(|t| t.label == a.token.trim() && status(t, now) != "revoked")
            .collect(),
    };
    let target = match live.as_slice() {
        [one] => *one,
        [] => bail!(
            "no unrevoked token named or with id {:?}; see `perimeter tokens list`",
            a.token
        ),
        many => bail!(
            "{} tokens are named {:?}; revoke one by id: {}",
            many.len(),
            a.token,
            join(many.iter().map(|t| t.id))
        ),
    };
    let event = SecurityEvent::ApiTokenRevoked { token: target.id }.to_audit(
        cli_actor(),
        store.clock().now_millis(),
        &RequestMeta::default(),
    );
    if !store
        .revoke_api_token(practice, target.id, now, &event)
        .await?
    {
        bail!("token {} was already revoked", target.id);
    }
    eprintln!("revoked token {} ({})", target.id, target.label);
    Ok(())
}

//! `perimeter keys`: key-encryption-key status, rotation and retirement.

use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::bail;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::runtime::{self, KeyOrigin, OpenMode};

const EXAMPLES: &str = "\
Examples:
  perimeter keys status                  KEK versions and how many patient keys each wraps
  perimeter keys rotate                  new primary KEK; re-wrap every patient key (resumable)
  perimeter keys rotate --batch-size 200
  perimeter keys retire --version 1      drop KEK version 1 once nothing uses it

Rotation writes the new KEK into the key file before re-wrapping anything; if it is
interrupted, run it again to finish. Servers sharing the database need the updated key file.";

/// Manage the key-encryption keys (KEKs) that wrap each patient's data key. Key bytes are
/// never printed.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show KEK versions, which is primary, how many patient data keys each wraps, and any
    /// unfinished rotation.
    #[command(after_help = "Example:\n  perimeter keys status")]
    Status,
    /// Add a new KEK version as primary and re-wrap every patient data key with it, in
    /// committed batches, while the server keeps running. Data is not re-encrypted. If a
    /// previous rotation was interrupted, this finishes it instead of adding another version.
    #[command(after_help = "Example:\n  perimeter keys rotate --batch-size 500")]
    Rotate(RotateArgs),
    /// Remove an old KEK version from the key file. Refused while any patient data key is
    /// still wrapped by it, and for the primary version.
    #[command(after_help = "Example:\n  perimeter keys retire --version 1")]
    Retire(RetireArgs),
}

/// `keys rotate` options.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// Patient data keys re-wrapped per committed transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
}

/// `keys retire` options.
#[derive(Debug, Args)]
pub struct RetireArgs {
    /// The KEK version to retire.
    #[arg(long)]
    pub version: u32,
}

fn fmt_time(millis: Option<i64>) -> String {
    millis
        .and_then(|m| {
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1_000_000).ok()
        })
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".to_owned())
}

/// Runs `perimeter keys`.
pub async fn run(args: KeysArgs, config: &Config) -> anyhow::Result<()> {
    let rt = runtime::open(config, OpenMode::MustExist).await?;
    let result = match args.command {
        KeysCommand::Status => status(&rt).await,
        KeysCommand::Rotate(a) => rotate(&rt, a).await,
        KeysCommand::Retire(a) => retire(&rt, a).await,
    };
    rt.store.close().await;
    result
}

async fn status(rt: &runtime::Runtime) -> anyhow::Result<()> {
    let s = rt.store.key_status().await?;
    println!(
        "{:>7}  {:>7}  {:>11}  {:>10}  {:<25}  {:<25}",
        "version", "primary", "in key ring", "data keys", "registered", "retired"
    );
    for v in &s.versions {
        println!(
            "{:>7}  {:>7}  {:>11}  {:>10}  {:<25}  {:<25}",
            v.version,
            if v.primary { "yes" } else { "" },
            if v.in_key_ring { "yes" } else { "no" },
            v.deks,
            fmt_time(v.registered_at_millis),
            fmt_time(v.retired_at_millis)
        );
    }
    if s.pending_rewrap > 0 {
        println!(
            "\n{} data keys are not yet wrapped by the primary version: run `perimeter keys rotate` to finish",
            s.pending_rewrap
        );
    }
    println!("crypto-shredded patients: {}", s.shredded_patients);
    Ok(())
}

async fn rotate(rt: &runtime::Runtime, args: RotateArgs) -> anyhow::Result<()> {
    let before = rt.store.key_status().await?;
    let store = if before.pending_rewrap > 0 {
        println!(
            "finishing an unfinished rotation to KEK version {} ({} data keys left)",
            before.primary, before.pending_rewrap
        );
        rt.store.clone()
    } else {
        let KeyOrigin::File(path) = &rt.key_origin else {
            bail!(
                "the key ring comes from PERIMETER_MASTER_KEY; add a KEK version there (or use a key file) — Perimeter cannot rewrite an environment variable"
            );
        };
        let next = rt.keys.with_new_primary_kek()?;
        // The new version is durable before any data key is wrapped with it.
        next.replace_file(path)?;
        println!(
            "key file {} now holds KEK version {} as primary",
            path.display(),
            next.primary_kek_version()
        );
        rt.store.with_keys(next)
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
            }
        });
    }
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} data keys re-wrapped ({eta} left)")
        {
            bar.set_style(style);
        }
        Some(bar)
    } else {
        None
    };
    let report = store
        .rotate_keks(args.batch_size, &mut |p| {
            if let Some(bar) = &bar {
                bar.set_length(p.total);
                bar.set_position(p.done);
            }
            if stop.load(Ordering::SeqCst) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .await?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if report.finished {
        println!(
            "rotation to KEK version {} complete: {} data keys re-wrapped in {} batches",
            report.primary, report.rewrapped, report.batches
        );
        println!("older versions can now be retired with `perimeter keys retire --version N`");
    } else {
        println!(
            "rotation interrupted after {} data keys ({} batches, all committed); run `perimeter keys rotate` again to finish",
            report.rewrapped, report.batches
        );
    }
    Ok(())
}

async fn retire(rt: &runtime::Runtime, args: RetireArgs) -> anyhow::Result<()> {
    let KeyOrigin::File(path) = &rt.key_origin else {
        bail!(
            "the key ring comes from PERIMETER_MASTER_KEY; remove the version there — Perimeter cannot rewrite an environment variable"
        );
    };
    let next = rt.keys.without_kek(args.version)?;
    rt.store.retire_kek(args.version).await?;
    next.replace_file(path)?;
    println!(
        "KEK version {} retired and removed from {}; backups whose data keys it wrapped can no longer be read with this key file",
        args.version,
        path.display()
    );
    Ok(())
}

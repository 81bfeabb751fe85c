//! `perimeter patients`: administrative operations on patient records.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use clap::{Args, Subcommand};
use perimeter_domain::PatientId;
use perimeter_store::AccessContext;

use crate::config::Config;
use crate::runtime::{self, OpenMode};

/// Administrative operations on patient records.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  perimeter patients shred 0190c6d2-7c3e-7b7a-9d7e-2f1c3a4b5c6d")]
pub struct PatientsArgs {
    #[command(subcommand)]
    pub command: PatientsCommand,
}

/// `patients` subcommands.
#[derive(Debug, Subcommand)]
pub enum PatientsCommand {
    /// Crypto-shred a patient: destroy their data key so every copy of their data (this
    /// database, replicas, and backups once the KEK versions listed are retired) is
    /// permanently unreadable. Audit records, which hold ids only, are kept. Irreversible.
    #[command(after_help = "\
Examples:
  perimeter patients shred 0190c6d2-7c3e-7b7a-9d7e-2f1c3a4b5c6d          asks for confirmation
  perimeter patients shred 0190c6d2-7c3e-7b7a-9d7e-2f1c3a4b5c6d --yes    no question (scripts)")]
    Shred(ShredArgs),
}

/// `patients shred` options.
#[derive(Debug, Args)]
pub struct ShredArgs {
    /// The patient's id (a UUID).
    pub id: PatientId,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// Runs `perimeter patients`.
pub async fn run(args: PatientsArgs, config: &Config) -> anyhow::Result<()> {
    match args.command {
        PatientsCommand::Shred(a) => shred(a, config).await,
    }
}

fn confirm(id: PatientId) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to shred without confirmation: stdin is not a terminal; pass --yes");
    }
    eprint!(
        "Crypto-shredding patient {id} makes all of their data permanently unreadable.\nType the patient id to confirm: "
    );
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == id.to_string())
}

async fn shred(args: ShredArgs, config: &Config) -> anyhow::Result<()> {
    let rt = runtime::open(config, OpenMode::MustExist).await?;
    if !args.yes && !confirm(args.id)? {
        rt.store.close().await;
        bail!("not confirmed; nothing was changed");
    }
    let report = rt
        .store
        .shred_patient(&AccessContext::system("cli"), args.id)
        .await;
    rt.store.close().await;
    let r = report?;
    if r.already_shredded {
        println!("patient {} was already crypto-shredded", r.patient);
    } else {
        println!("patient {}: data key destroyed", r.patient);
    }
    println!(
        "  patient fields left as unreadable ciphertext: {}",
        r.patient_fields_unreadable
    );
    println!(
        "  conversations left as unreadable ciphertext:  {}",
        r.conversations_unreadable
    );
    println!(
        "  messages left as unreadable ciphertext:       {}",
        r.messages_unreadable
    );
    println!(
        "  coverages and billing accounts unreadable:    {}",
        r.billing_records_unreadable
    );
    println!(
        "  blind-index entries deleted:                  {}",
        r.index_entries_deleted
    );
    println!(
        "  audit records kept (ids only, no PHI):        {}",
        r.audit_records_kept
    );
    let versions = r
        .kek_versions_in_backups
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "  backups made before now stay readable for this patient until KEK version(s) {versions} are retired: run `perimeter keys rotate`, then `perimeter keys retire --version N` for each"
    );
    Ok(())
}

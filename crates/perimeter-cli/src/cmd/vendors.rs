//! `perimeter vendors`: the AI vendor registry (add, list, show, update, remove).
//!
//! The store validates (and refuses) the terms; this module parses flags, reads a key from
//! stdin when asked, and prints. Nothing here prints a key.

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use perimeter_store::{
    AccessContext, BaaTerms, KeyInput, KeySource, StoreError, Vendor, VendorClass, VendorInput,
    parse_date,
};
use serde_json::json;
use time::Date;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::runtime::{self, OpenMode};

const EXAMPLES: &str = "\
Examples:
  # A cloud vendor under a BAA, its key read from the environment of `perimeter serve`:
  perimeter vendors add --name acme --base-url https://api.acme.example/v1 \\
      --model acme-large --model acme-small --data-class phi \\
      --baa-signed 2025-01-15 --baa-expires 2027-01-14 --baa-document contracts/acme-baa.pdf \\
      --zero-retention --no-training --soc2-report-date 2025-06-30 --soc2-expires 2026-06-30 \\
      --sub-processor 'Example Cloud' --api-key-env ACME_API_KEY
  # A vendor without a BAA: it only ever receives de-identified text; key sealed in the database:
  printf '%s' \"$KEY\" | perimeter vendors add --name quick --base-url https://api.quick.example/v1 \\
      --model quick-1 --data-class deidentified --api-key-stdin
  # The practice's own OpenAI-compatible server (vLLM, llama.cpp, Ollama):
  perimeter vendors add --name local --base-url http://10.0.0.5:8000/v1 --model llama-3-8b \\
      --data-class phi --inside-perimeter
  perimeter vendors list
  perimeter vendors update acme --baa-expires 2028-01-14
  perimeter vendors remove quick

Changes take effect on a running `perimeter serve` with its next request. A vendor whose BAA
expires is downgraded to de-identified text automatically on the day after its last day.";

/// The AI vendor registry.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct VendorsArgs {
    #[command(subcommand)]
    pub command: VendorsCommand,
}

/// `vendors` subcommands.
#[derive(Debug, Subcommand)]
pub enum VendorsCommand {
    /// Register a vendor. Refused with a message saying what to pass when the terms do not
    /// hold (a bad URL or date, an expiry before its signing, class phi without a BAA in force
    /// today outside the perimeter, a name or model already registered).
    Add(AddArgs),
    /// List the vendors (a table, or --json). Never prints a key.
    List(ListArgs),
    /// Show one vendor's terms and today's effective data class.
    Show(ShowArgs),
    /// Change a vendor's terms; options not given keep their value.
    Update(UpdateArgs),
    /// Remove a vendor (requests for its models then get 404 model_not_found).
    Remove(RemoveArgs),
}

/// The data class a vendor may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClassArg {
    /// Protected health information as is (needs a BAA in force, or --inside-perimeter).
    Phi,
    /// De-identified text only: every identifier replaced by a placeholder before it leaves.
    Deidentified,
    /// Nothing derived from patient communication.
    None,
}

impl From<ClassArg> for VendorClass {
    fn from(c: ClassArg) -> Self {
        match c {
            ClassArg::Phi => VendorClass::Phi,
            ClassArg::Deidentified => VendorClass::Deidentified,
            ClassArg::None => VendorClass::None,
        }
    }
}

fn date_arg(s: &str) -> Result<Date, String> {
    parse_date(s).ok_or_else(|| "expected a date written YYYY-MM-DD, e.g. 2026-12-31".to_owned())
}

/// `vendors add` options.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct AddArgs {
    /// Registry name: 1 to 64 of a-z, 0-9, '.', '_' and '-'.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The vendor's OpenAI-compatible base URL (…/v1); https, or http for --inside-perimeter
    /// and loopback. No credentials or query in it.
    #[arg(long, value_name = "URL")]
    pub base_url: String,
    /// A model the vendor serves (repeat for several). A model belongs to one vendor: a
    /// chat-completions request goes to the vendor that lists its `model`.
    #[arg(long = "model", value_name = "MODEL", required = true)]
    pub models: Vec<String>,
    /// The most sensitive data class it may receive.
    #[arg(long, value_enum, value_name = "CLASS")]
    pub data_class: ClassArg,
    #[command(flatten)]
    pub terms: TermsArgs,
    /// Read the vendor's API key from this environment variable of `perimeter serve`, at call
    /// time (the key is never stored).
    #[arg(long, value_name = "VAR", conflicts_with = "api_key_stdin")]
    pub api_key_env: Option<String>,
    /// Read the vendor's API key from stdin and store it sealed (encrypted under a data key
    /// wrapped by the master key).
    #[arg(long)]
    pub api_key_stdin: bool,
    /// The vendor attests it retains no prompts or completions.
    #[arg(long)]
    pub zero_retention: bool,
    /// The vendor attests it does not train on the data.
    #[arg(long)]
    pub no_training: bool,
    /// A sub-processor of the vendor (repeat for several).
    #[arg(long = "sub-processor", value_name = "NAME")]
    pub sub_processors: Vec<String>,
    /// The server runs inside the practice's perimeter (its own hardware): PHI may go to it
    /// without a BAA, and plain http is allowed.
    #[arg(long)]
    pub inside_perimeter: bool,
    /// Register it disabled (no calls go to it until `vendors update NAME --enabled true`).
    #[arg(long)]
    pub disabled: bool,
}

/// BAA and SOC 2 dates, shared by add and update.
#[derive(Debug, Args)]
pub struct TermsArgs {
    /// The day the BAA was signed (YYYY-MM-DD).
    #[arg(long, value_name = "DATE", value_parser = date_arg)]
    pub baa_signed: Option<Date>,
    /// The last day the BAA is in force (YYYY-MM-DD).
    #[arg(long, value_name = "DATE", value_parser = date_arg)]
    pub baa_expires: Option<Date>,
    /// Where the signed BAA is kept (a reference such as a document id or path).
    #[arg(long, value_name = "REF")]
    pub baa_document: Option<String>,
    /// The date of the vendor's SOC 2 Type 2 report (YYYY-MM-DD).
    #[arg(long, value_name = "DATE", value_parser = date_arg)]
    pub soc2_report_date: Option<Date>,
    /// When the SOC 2 report stops being current (YYYY-MM-DD).
    #[arg(long, value_name = "DATE", value_parser = date_arg)]
    pub soc2_expires: Option<Date>,
}

/// `vendors list` options.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// JSON (an array of objects) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `vendors show` options.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The vendor's name.
    pub name: String,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `vendors update` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  perimeter vendors update acme --baa-signed 2027-01-10 --baa-expires 2029-01-09
  perimeter vendors update acme --add-model acme-xl --remove-model acme-small
  perimeter vendors update acme --data-class deidentified --clear-baa
  perimeter vendors update acme --enabled false")]
pub struct UpdateArgs {
    /// The vendor's current name.
    pub name: String,
    /// A new name.
    #[arg(long, value_name = "NAME")]
    pub rename: Option<String>,
    /// A new base URL.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Replace the model list (repeat for several).
    #[arg(long = "model", value_name = "MODEL")]
    pub models: Vec<String>,
    /// Add a model.
    #[arg(long = "add-model", value_name = "MODEL")]
    pub add_models: Vec<String>,
    /// Remove a model.
    #[arg(long = "remove-model", value_name = "MODEL")]
    pub remove_models: Vec<String>,
    /// A new data class.
    #[arg(long, value_enum, value_name = "CLASS")]
    pub data_class: Option<ClassArg>,
    #[command(flatten)]
    pub terms: TermsArgs,
    /// Remove the BAA on file.
    #[arg(long, conflicts_with_all = ["baa_signed", "baa_expires", "baa_document"])]
    pub clear_baa: bool,
    /// Read the key from this environment variable from now on.
    #[arg(long, value_name = "VAR", conflicts_with_all = ["api_key_stdin", "clear_api_key"])]
    pub api_key_env: Option<String>,
    /// Read a new key from stdin and store it sealed.
    #[arg(long, conflicts_with = "clear_api_key")]
    pub api_key_stdin: bool,
    /// Remove the key.
    #[arg(long)]
    pub clear_api_key: bool,
    /// Zero-retention attestation (true or false).
    #[arg(long, value_name = "BOOL")]
    pub zero_retention: Option<bool>,
    /// No-training attestation (true or false).
    #[arg(long, value_name = "BOOL")]
    pub no_training: Option<bool>,
    /// Replace the sub-processor list (repeat for several).
    #[arg(long = "sub-processor", value_name = "NAME")]
    pub sub_processors: Vec<String>,
    /// Remove every sub-processor.
    #[arg(long, conflicts_with = "sub_processors")]
    pub clear_sub_processors: bool,
    /// Inside the practice's perimeter (true or false).
    #[arg(long, value_name = "BOOL")]
    pub inside_perimeter: Option<bool>,
    /// Whether calls may go to it (true or false).
    #[arg(long, value_name = "BOOL")]
    pub enabled: Option<bool>,
}

/// `vendors remove` options.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The vendor's name.
    pub name: String,
}

/// Runs `perimeter vendors`.
pub async fn run(args: VendorsArgs, config: &Config) -> anyhow::Result<()> {
    // Read a key from stdin before anything else, so a refusal later leaves nothing half done.
    let stdin_key = match &args.command {
        VendorsCommand::Add(a) if a.api_key_stdin => Some(read_key()?),
        VendorsCommand::Update(a) if a.api_key_stdin => Some(read_key()?),
        _ => None,
    };
    let rt = runtime::open(config, OpenMode::MustExist).await?;
    let store = rt.store.clone();
    let result = async {
        let ctx = AccessContext::system("cli");
        match args.command {
            VendorsCommand::Add(a) => {
                let key = match (stdin_key, a.api_key_env) {
                    (Some(k), _) => KeyInput::Secret(k),
                    (None, Some(var)) => KeyInput::Env(var),
                    (None, None) => KeyInput::Clear,
                };
                let baa = baa_from(&a.terms, None)?;
                let input = VendorInput {
                    name: a.name,
                    base_url: a.base_url,
                    models: a.models,
                    data_class: a.data_class.into(),
                    baa,
                    zero_retention: a.zero_retention,
                    no_training: a.no_training,
                    soc2_report_date: a.terms.soc2_report_date,
                    soc2_expires: a.terms.soc2_expires,
                    sub_processors: a.sub_processors,
                    inside_perimeter: a.inside_perimeter,
                    enabled: !a.disabled,
                    key,
                };
                let v = store.add_vendor(&ctx, &input).await.map_err(explain)?;
                eprintln!(
                    "added vendor {} (models: {}; today it receives: {})",
                    v.name,
                    v.models.join(", "),
                    v.effective_class(today(&store)).as_str()
                );
                Ok(())
            }
            VendorsCommand::List(a) => {
                let list = store.list_vendors().await?;
                let day = today(&store);
                if a.json {
                    let items: Vec<_> = list.iter().map(|v| to_json(v, day)).collect();
                    println!("{}", serde_json::to_string_pretty(&items)?);
                } else {
                    print_table(&list, day);
                }
                Ok(())
            }
            VendorsCommand::Show(a) => {
                let v = store.vendor(&a.name).await?.with_context(|| {
                    format!("no vendor named {:?}; see `perimeter vendors list`", a.name)
                })?;
                let day = today(&store);
                if a.json {
                    println!("{}", serde_json::to_string_pretty(&to_json(&v, day))?);
                } else {
                    print_show(&v, day);
                }
                Ok(())
            }
            VendorsCommand::Update(a) => {
                let current = store.vendor(&a.name).await?.with_context(|| {
                    format!("no vendor named {:?}; see `perimeter vendors list`", a.name)
                })?;
                let mut input = current.to_input();
                if let Some(n) = a.rename {
                    input.name = n;
                }
                if let Some(u) = a.base_url {
                    input.base_url = u;
                }
                if !a.models.is_empty() {
                    input.models = a.models;
                }
                for m in a.add_models {
                    if !input.models.contains(&m) {
                        input.models.push(m);
                    }
                }
                if !a.remove_models.is_empty() {
                    for m in &a.remove_models {
                        if !input.models.contains(m) {
                            bail!("--remove-model {m:?}: the vendor does not list this model");
                        }
                    }
                    input.models.retain(|m| !a.remove_models.contains(m));
                }
                if let Some(c) = a.data_class {
                    input.data_class = c.into();
                }
                input.baa = if a.clear_baa {
                    None
                } else {
                    baa_from(&a.terms, input.baa.take())?
                };
                if let Some(d) = a.terms.soc2_report_date {
                    input.soc2_report_date = Some(d);
                }
                if let Some(d) = a.terms.soc2_expires {
                    input.soc2_expires = Some(d);
                }
                input.key = match (stdin_key, a.api_key_env, a.clear_api_key) {
                    (Some(k), _, _) => KeyInput::Secret(k),
                    (None, Some(var), _) => KeyInput::Env(var),
                    (None, None, true) => KeyInput::Clear,
                    (None, None, false) => KeyInput::Keep,
                };
                if let Some(b) = a.zero_retention {
                    input.zero_retention = b;
                }
                if let Some(b) = a.no_training {
                    input.no_training = b;
                }
                if a.clear_sub_processors {
                    input.sub_processors.clear();
                } else if !a.sub_processors.is_empty() {
                    input.sub_processors = a.sub_processors;
                }
                if let Some(b) = a.inside_perimeter {
                    input.inside_perimeter = b;
                }
                if let Some(b) = a.enabled {
                    input.enabled = b;
                }
                let v = store
                    .update_vendor(&ctx, &a.name, &input)
                    .await
                    .map_err(explain)?;
                eprintln!(
                    "updated vendor {} (revision {}; today it receives: {})",
                    v.name,
                    v.revision,
                    v.effective_class(today(&store)).as_str()
                );
                Ok(())
            }
            VendorsCommand::Remove(a) => {
                if !store.remove_vendor(&ctx, &a.name).await? {
                    bail!("no vendor named {:?}; nothing was removed", a.name);
                }
                eprintln!("removed vendor {}", a.name);
                Ok(())
            }
        }
    }
    .await;
    store.close().await;
    result
}

fn today(store: &perimeter_store::Store) -> Date {
    store.clock().now().date()
}

/// The BAA from the flags, on top of `current`: both dates are needed for a new one.
fn baa_from(t: &TermsArgs, current: Option<BaaTerms>) -> anyhow::Result<Option<BaaTerms>> {
    let any = t.baa_signed.is_some() || t.baa_expires.is_some() || t.baa_document.is_some();
    if !any {
        return Ok(current);
    }
    let signed = t.baa_signed.or(current.as_ref().map(|b| b.signed));
    let expires = t.baa_expires.or(current.as_ref().map(|b| b.expires));
    let (Some(signed), Some(expires)) = (signed, expires) else {
        bail!("a BAA needs both --baa-signed DATE and --baa-expires DATE");
    };
    Ok(Some(BaaTerms {
        signed,
        expires,
        document_ref: t
            .baa_document
            .clone()
            .or(current.and_then(|b| b.document_ref)),
    }))
}

fn read_key() -> anyhow::Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        eprint!("vendor API key, then Ctrl-D (a pipe is better: printf '%s' \"$KEY\" | ...): ");
    }
    let mut raw = Zeroizing::new(String::new());
    std::io::stdin()
        .read_to_string(&mut raw)
        .context("cannot read the API key from stdin")?;
    let key = Zeroizing::new(raw.trim().to_owned());
    if key.is_empty() {
        bail!(
            "--api-key-stdin: stdin was empty; pipe the key in, e.g. printf '%s' \"$KEY\" | perimeter vendors add ..."
        );
    }
    Ok(key)
}

/// Adds the hint for what the administrator can do to store refusals.
fn explain(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Duplicate { what } => anyhow::anyhow!(
            "{what} already exists; choose another name or model, or change the existing vendor with `perimeter vendors update`"
        ),
        StoreError::Invalid { field, expected } => {
            anyhow::anyhow!("{}: expected {expected}", field.replace('_', "-"))
        }
        other => other.into(),
    }
}

fn date_str(d: Option<Date>) -> String {
    d.map(|d| d.to_string()).unwrap_or_else(|| "-".into())
}

fn baa_status(v: &Vendor, day: Date) -> String {
    match &v.baa {
        None => "none".into(),
        Some(b) if b.in_force_on(day) => format!("in force until {}", b.expires),
        Some(b) if day < b.signed => format!("not yet in force (from {})", b.signed),
        Some(b) => format!("expired {}", b.expires),
    }
}

fn to_json(v: &Vendor, day: Date) -> serde_json::Value {
    json!({
        "id": v.id.to_string(),
        "name": v.name,
        "base_url": v.base_url,
        "models": v.models,
        "data_class": v.data_class.as_str(),
        "effective_class_today": v.effective_class(day).as_str(),
        "baa": v.baa.as_ref().map(|b| json!({
            "signed": b.signed.to_string(),
            "expires": b.expires.to_string(),
            "document": b.document_ref,
            "in_force_today": b.in_force_on(day),
        })),
        "zero_retention": v.zero_retention,
        "no_training": v.no_training,
        "soc2_report_date": v.soc2_report_date.map(|d| d.to_string()),
        "soc2_expires": v.soc2_expires.map(|d| d.to_string()),
        "sub_processors": v.sub_processors,
        "inside_perimeter": v.inside_perimeter,
        "enabled": v.enabled,
        "api_key": v.key.describe(),
        "revision": v.revision,
    })
}

fn print_table(list: &[Vendor], day: Date) {
    if list.is_empty() {
        eprintln!("no vendors registered; add one with `perimeter vendors add` (see --help)");
        return;
    }
    println!(
        "{:<16} {:<12} {:<12} {:<8} {:<28} {:<10} MODELS",
        "NAME", "CLASS", "TODAY", "ENABLED", "BAA", "KEY"
    );
    for v in list {
        let key = match &v.key {
            KeySource::Env(_) => "env".to_owned(),
            other => other.describe(),
        };
        println!(
            "{:<16} {:<12} {:<12} {:<8} {:<28} {:<10} {}",
            v.name,
            v.data_class.as_str(),
            v.effective_class(day).as_str(),
            if v.enabled { "yes" } else { "no" },
            baa_status(v, day),
            key,
            v.models.join(",")
        );
    }
}

fn print_show(v: &Vendor, day: Date) {
    println!("name               {}", v.name);
    println!("id                 {}", v.id);
    println!("base url           {}", v.base_url);
    println!("models             {}", v.models.join(", "));
    println!("data class         {}", v.data_class.as_str());
    println!("receives today     {}", v.effective_class(day).as_str());
    println!("BAA                {}", baa_status(v, day));
    if let Some(b) = &v.baa {
        println!("  signed           {}", b.signed);
        println!("  expires          {}", b.expires);
        println!(
            "  document         {}",
            b.document_ref.as_deref().unwrap_or("-")
        );
    }
    println!("zero retention     {}", v.zero_retention);
    println!("no training        {}", v.no_training);
    println!("SOC 2 report       {}", date_str(v.soc2_report_date));
    println!("SOC 2 expires      {}", date_str(v.soc2_expires));
    println!(
        "sub-processors     {}",
        if v.sub_processors.is_empty() {
            "-".to_owned()
        } else {
            v.sub_processors.join(", ")
        }
    );
    println!("inside perimeter   {}", v.inside_perimeter);
    println!("enabled            {}", v.enabled);
    println!("api key            {}", v.key.describe());
    println!("revision           {}", v.revision);
}

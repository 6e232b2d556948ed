//! The command line, as clap reads it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use uncensored::Side;
use uncensored::api::limits::generate_image_request as spec;
use uncensored_deliver::journal::JournalLocation;

use crate::limits::{GivenToken, ServerFlags, given_token};

/// Generate images with the uncensored image API, store them and announce them.
///
/// Every command works with no account through --emulator, which runs a
/// local emulator of the API in the process.
#[derive(Debug, Parser)]
#[command(name = "uncensored", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Run against an in-process emulator of the API (no account, no network).
    #[arg(long, global = true)]
    pub emulator: bool,
    /// The API key [default: from the config file]. A key given here is
    /// visible to every user of this machine (`ps`) and lands in shell
    /// history: prefer UNCENSORED_API_KEY or api_key in the config file.
    #[arg(
        long,
        env = "UNCENSORED_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub api_key: Option<String>,
    /// The API's base URL [default: the production API].
    #[arg(long, env = "UNCENSORED_BASE_URL", global = true)]
    pub base_url: Option<String>,
    /// The configuration file [default: uncensored/config.toml in the user's config directory].
    #[arg(long, env = "UNCENSORED_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Print results (and errors) as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log what happens (tracing) on stderr.
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// Allow plain http: a base URL that is not loopback, and image
    /// downloads (the key and the images then cross the network in the clear).
    #[arg(long, global = true)]
    pub allow_insecure_http: bool,
    /// A host, address or CIDR block (10.0.0.0/8) that image downloads may
    /// reach although it is not public: storage private on purpose
    /// (repeatable; default: public addresses only).
    #[arg(long = "download-allow", value_name = "HOST", global = true)]
    pub download_allow: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// Exit codes, listed under every --help.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success                      6  invalid request or input
  1  other error                  7  not found (unknown job)
  2  usage error                  8  the API or a backend is unavailable
  3  authentication or scope      9  the job failed
  4  insufficient funds          10  storing or notifying failed
  5  the prompt was moderated    11  a batch finished with failed lines
                                 12  the journal failed
                                 13  a batch reached its --max-spend
                                130  a batch stopped by SIGTERM or Ctrl-C";

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an image, store it and print where it is.
    Generate(Generate),
    /// Print a job's status.
    Status {
        /// The job id.
        job: String,
    },
    /// Wait for a job to finish and print its image URL.
    Wait {
        /// The job id.
        job: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Store a finished job's image and print where it is.
    Download {
        /// The job id.
        job: String,
        #[command(flatten)]
        output: Output,
    },
    /// Print the account's balance, the funds held and the day's and month's spend.
    ///
    /// The whole balance, the funds held for async jobs still running, what
    /// is available, and the spend of the UTC day and month, in USD. Needs a
    /// key with the billing:read scope. With --json: the same in nanos
    /// (1 USD = 1,000,000,000 nanos), the API's authoritative unit.
    Balance,
    /// Generate a batch: one prompt a line, or JSON Lines with per-line fields.
    Batch(Batch),
    /// Receive the API's job callbacks and deliver each job (store, announce) as a service.
    Webhook {
        #[command(subcommand)]
        action: WebhookAction,
    },
    /// Serve a local web page of the stored images and the batch's failures; the first line printed is its URL.
    Gallery(Gallery),
    /// Run the emulator in the foreground; the first line printed is its base URL.
    Emulator(uncensored_emulator::cli::EmulatorArgs),
    /// Serve the tools and stored images to MCP clients (stdio, or Streamable HTTP with --http).
    Mcp(crate::mcp::Mcp),
    /// Show the effective configuration (secrets masked).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// What `config` does.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective settings: flags, then environment, then the file.
    Show,
}

/// What `webhook` does.
#[derive(Debug, Subcommand)]
pub enum WebhookAction {
    /// Serve POST /callback/NONCE.TAG: URLs signed with UNCENSORED_CALLBACK_SECRET,
    /// a forged one refused before any read; each job confirmed with one read
    /// (the payload is never trusted), then stored and announced once. Point
    /// `generate --async --callback-url` at https://YOUR-HOST/callback with the
    /// same secret set.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: std::net::SocketAddr,
        /// Also serve a plain POST /callback: unsigned callbacks, each confirmed
        /// by reading its job (the only mode without UNCENSORED_CALLBACK_SECRET).
        #[arg(long)]
        accept_unsigned: bool,
        #[command(flatten)]
        output: Output,
        /// The journal that keeps deliveries exactly-once across restarts: a
        /// file, or postgres://… shared by every replica of the service
        /// [default: .uncensored/journal.sqlite beside the images].
        #[arg(long, value_name = "PATH|postgres://…")]
        journal: Option<JournalLocation>,
        /// Poll a submitted job whose callback has not come this long after
        /// its submission (every replica looks; one polls each job), then
        /// deliver it as its callback would have.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::limits::recovery_grace)]
        recovery_grace: std::time::Duration,
        #[command(flatten)]
        limits: ServerFlags,
    },
}

/// Where images go and who hears about them.
#[derive(Debug, Clone, Args)]
pub struct Output {
    /// Store images in this directory [default: ./images].
    #[arg(long, conflicts_with = "store")]
    pub out: Option<PathBuf>,
    /// Store images at this URL: file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or memory:// (credentials from AWS_*, GOOGLE_*, AZURE_* variables).
    #[arg(long)]
    pub store: Option<String>,
    /// Object names; placeholders {date}, {job_id}, {ext}, {model} [default: {date}/{job_id}.{ext}].
    #[arg(long)]
    pub name_template: Option<String>,
    /// Announce each image: slack://A/B/C, discord://ID/TOKEN, mailto://user:pass@host?to=ADDR (STARTTLS), mailtos://… (TLS), json://host/path or jsons://… (signed with UNCENSORED_WEBHOOK_SECRET); also slack:URL and webhook:URL. Repeatable: each destination is told once.
    #[arg(long = "notify", value_name = "URL")]
    pub notify: Vec<String>,
}

/// The request fields.
#[derive(Debug, Clone, Args)]
pub struct RequestFields {
    /// The model [default: from openapi.yaml].
    #[arg(long, help = model_help())]
    pub model: Option<String>,
    /// Width in pixels [limits and default: from openapi.yaml].
    #[arg(long, value_parser = width, help = side_help("Width", Side::Width))]
    pub width: Option<u32>,
    /// Height in pixels [limits and default: from openapi.yaml].
    #[arg(long, value_parser = height, help = side_help("Height", Side::Height))]
    pub height: Option<u32>,
    /// Resolution hint for variable-pricing models (1k, 2k, 4k, 8k).
    #[arg(long)]
    pub resolution: Option<String>,
    /// Quality hint for variable-pricing models (medium, high).
    #[arg(long)]
    pub quality: Option<String>,
    /// A model-specific setting, KEY=VALUE (VALUE as JSON when it parses, else text). Repeatable.
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = setting)]
    pub settings: Vec<(String, serde_json::Value)>,
}

/// `generate`.
#[derive(Debug, Args)]
pub struct Generate {
    /// The prompt [length: from openapi.yaml].
    #[arg(help = prompt_help())]
    pub prompt: String,
    #[command(flatten)]
    pub fields: RequestFields,
    #[command(flatten)]
    pub output: Output,
    /// Queue the job and return at once; the API POSTs the result to --callback-url.
    #[arg(long = "async", requires = "callback_url")]
    pub asynchronous: bool,
    /// Where the API POSTs the result of an --async job (https): the URL of
    /// `webhook serve`; with UNCENSORED_CALLBACK_SECRET set, a signed
    /// /callback/NONCE.TAG of its own is made for the job, and the submission
    /// is recorded in the journal `webhook serve` reads (which polls the job
    /// should its callback be lost).
    #[arg(long)]
    pub callback_url: Option<String>,
    /// The journal of `webhook serve` that records an --async submission
    /// [default: .uncensored/journal.sqlite beside the images].
    #[arg(long, value_name = "PATH|postgres://…", requires = "asynchronous")]
    pub journal: Option<JournalLocation>,
}

/// `batch`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Batch {
    #[command(subcommand)]
    pub action: Option<BatchAction>,
    /// The batch file: a prompt a line, or a JSON object a line with "prompt" and any of
    /// "model", "width", "height", "resolution", "quality", "settings". Blank lines and lines
    /// starting with # are skipped.
    #[arg(required = true)]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub fields: RequestFields,
    #[command(flatten)]
    pub output: Output,
    /// Jobs in flight at once [default: 4].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: Option<u16>,
    /// The journal that makes reruns resume [default: .uncensored/journal.sqlite beside the
    /// images]. With postgres://… the batch is shared: start the same command on several
    /// machines and each worker claims lines under a lease (images then go to a shared --store).
    /// Two runs of one batch on one journal, at once or not, never deliver a line twice.
    #[arg(long, value_name = "PATH|postgres://…")]
    pub journal: Option<JournalLocation>,
    /// The batch's name in the journal [default: the file's name]. A line is a job of its
    /// batch, known by its content: edit, insert, delete or reorder lines and rerun, and only
    /// new or edited lines are paid for.
    #[arg(long, value_name = "NAME", value_parser = batch_name)]
    pub name: Option<String>,
    /// Seconds a worker's claim on a line lasts unless renewed; a dead or stalled worker's
    /// lines are taken over after this long (and its late writes refused).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease: u64,
    /// Seconds the lines in flight may take to finish after SIGTERM or Ctrl-C (a second one
    /// stops at once); the rest are released unfinished for another worker or a rerun.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain: u64,
    /// Also finish single deliveries a previous run left in the journal (rerunning the same
    /// command finishes the batch's own lines anyway).
    #[arg(long)]
    pub resume: bool,
    /// Print what the lines not yet done will cost (in USD; nanos with --json), priced by the
    /// API's estimate once per distinct request shape; nothing is sent or paid.
    #[arg(long, conflicts_with_all = ["gallery", "max_spend", "resume"])]
    pub estimate: bool,
    /// The most the whole batch may spend, every worker together (USD, e.g. 25 or 0.50): each
    /// line's estimated price is reserved in the journal before it is sent, and the batch
    /// stops (exit 13) when the next line would not fit; untried lines stay pending. Kept with
    /// the batch in the journal: a rerun (or another worker) without it keeps the budget, a
    /// rerun with another value changes it.
    #[arg(long, value_name = "USD", value_parser = budget)]
    pub max_spend: Option<uncensored::Money>,
    /// Submit each line asynchronously and hand it to the callback service at this URL
    /// (`webhook serve`, on the same journal, images and notifiers): each line gets a signed
    /// /callback/NAME.TAG of its own (UNCENSORED_CALLBACK_SECRET, as for `generate --async`),
    /// the same on every resubmission, and no connection is held per job. The command ends once
    /// every line is submitted; `batch status` shows the lines handed off, not yet delivered.
    #[arg(long, value_name = "URL", conflicts_with = "estimate")]
    pub callback_url: Option<String>,
    /// With --callback-url: how long a handed-off line is left to the callback service before
    /// a worker of the batch may take it back and poll its job (as the service's recovery
    /// would); use the service's --recovery-grace.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = crate::limits::recovery_grace, requires = "callback_url")]
    pub recovery_grace: std::time::Duration,
    /// Serve the gallery of this batch (see `uncensored gallery`) while it runs, and after it until Ctrl-C.
    #[arg(long)]
    pub gallery: bool,
    /// Where --gallery listens (loopback).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8788",
        requires = "gallery"
    )]
    pub gallery_listen: std::net::SocketAddr,
}

/// `gallery`.
#[derive(Debug, Args)]
pub struct Gallery {
    /// The image directory [default: ./images].
    #[arg(long, conflicts_with = "store")]
    pub out: Option<PathBuf>,
    /// The storage URL: file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix (credentials from AWS_*, GOOGLE_*, AZURE_* variables).
    #[arg(long)]
    pub store: Option<String>,
    /// The batch's journal, for its failures and the lines in flight: a file or a postgres:// URL [default: .uncensored/journal.sqlite beside the images, when there is one].
    #[arg(long, value_name = "PATH|URL")]
    pub journal: Option<String>,
    /// Address to listen on (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8788")]
    pub listen: std::net::SocketAddr,
    /// Allow a --listen address that is not loopback: every prompt of the store becomes visible to other machines, to whoever has the access token.
    #[arg(long)]
    pub allow_remote: bool,
    /// The access token every request must carry when --listen is not loopback (at least 32 of A-Z a-z 0-9 - . _ ~; given, it is asked on loopback too) [default: a new one, printed once on stderr].
    #[arg(long, env = "UNCENSORED_GALLERY_TOKEN", hide_env_values = true, value_name = "TOKEN", value_parser = given_token)]
    pub token: Option<GivenToken>,
    #[command(flatten)]
    pub limits: ServerFlags,
}

/// A budget: a USD amount, not negative.
fn budget(text: &str) -> Result<uncensored::Money, String> {
    let money = uncensored::Money::parse_usd(text).map_err(|e| e.to_string())?;
    if money.is_negative() {
        return Err("a budget cannot be negative".into());
    }
    Ok(money)
}

/// A batch name: 1 to 200 printable characters.
fn batch_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text.chars().count() > 200 || text.chars().any(char::is_control) {
        return Err("1 to 200 characters, none of them control characters".into());
    }
    Ok(text.to_string())
}

/// What `batch` does besides running a file.
#[derive(Debug, Subcommand)]
pub enum BatchAction {
    /// Where a shared batch stands: done, failed, in flight per worker, left.
    Status {
        /// The batch's journal (postgres://… or a file).
        #[arg(long, value_name = "PATH|postgres://…")]
        journal: JournalLocation,
        /// The batch [default: the one loaded last].
        #[arg(long, value_name = "NAME", value_parser = batch_name)]
        name: Option<String>,
    },
}

fn width(text: &str) -> Result<u32, String> {
    side(text, Side::Width)
}

fn height(text: &str) -> Result<u32, String> {
    side(text, Side::Height)
}

fn side(text: &str, side: Side) -> Result<u32, String> {
    let value: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    // The SDK owns the rule; the flag names itself, so drop the API's field name.
    uncensored::validate_side(side, value)
        .map(|()| value)
        .map_err(|e| e.problem)
}

/// `--width`/`--height`'s help, with the spec's limits and default.
fn side_help(name: &str, side: Side) -> String {
    format!(
        "{name} in pixels: {} to {}, a multiple of {} [default: {}]",
        side.minimum(),
        side.maximum(),
        side.multiple_of(),
        side.default_pixels()
    )
}

/// `--model`'s help, with the spec's default.
fn model_help() -> String {
    format!("The model [default: {}]", spec::MODEL_DEFAULT)
}

/// The prompt's help, with the spec's length limits.
fn prompt_help() -> String {
    format!(
        "The prompt ({} to {} characters)",
        grouped(spec::PROMPT_MIN_LENGTH),
        grouped(spec::PROMPT_MAX_LENGTH)
    )
}

/// `2000` as `2,000`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn setting(text: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err("the KEY of KEY=VALUE is empty".into());
    }
    let value = serde_json::from_str(value)
        .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

//! The `focalpoint` command line: its commands and arguments, what each does, the log
//! settings, and the exit code each outcome maps to.

use crate::cli::output::{out, outln};
use std::path::{Path, PathBuf};

use crate::cli::client::{self, ClientError, OperatorClient};
use crate::cli::render::Series;
use crate::cli::{figures, render};
use crate::domain::model::CountryCode;
use crate::node::config::{ClientConfig, NodeConfig};
use crate::node::server::BoundNode;
use crate::pb;
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

/// Gateway between the immigration focal points of Indonesia (IDN) and Cambodia (KHM).
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node.
    Serve {
        /// The node's configuration (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Where the exchange log lives (overrides data_dir in the configuration).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Re-send logged messages to a peer (--to, with an operator's client configuration), or
    /// rebuild a stopped node's views from its log alone (--rebuild, with the node's
    /// configuration).
    Replay {
        /// Client configuration (with --to) or node configuration (with --rebuild).
        #[arg(long)]
        config: PathBuf,
        /// The peer to re-send to.
        #[arg(long, required_unless_present = "rebuild")]
        to: Option<String>,
        /// First log sequence to re-send.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Last log sequence to re-send (default: the end of the log).
        #[arg(long)]
        until: Option<u64>,
        /// Rebuild inbox, outbox and indexes from the log; the node must be stopped.
        #[arg(long, conflicts_with = "to")]
        rebuild: bool,
        /// The node's data directory, with --rebuild (overrides data_dir in the configuration).
        #[arg(long, requires = "rebuild")]
        data_dir: Option<PathBuf>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Copy a stopped node's log into a new data directory, leaving behind the bytes sled still
    /// holds for removed content (redacted messages); the copy is verified. Then move the copy
    /// in place of the data directory and destroy the old one.
    Compact {
        /// The node configuration.
        #[arg(long)]
        config: PathBuf,
        /// The data directory (overrides data_dir in the configuration).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Where to write the copy: a new or empty directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Convert a stopped node's log written in the first store layout into a new data
    /// directory in the current one. The entries, their hashes and the head stay the same;
    /// the copy passes the audit before this reports success. The old directory is not changed.
    Migrate {
        /// The node configuration (its certificates, and its log key if encrypted at rest).
        #[arg(long)]
        config: PathBuf,
        /// The data directory in the old layout (overrides data_dir in the configuration).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Where to write the converted log: a new or empty directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign this node's log head and have the peer cosign it now.
    Checkpoint {
        #[command(flatten)]
        client: ClientArgs,
        /// The peer that witnesses it.
        #[arg(long)]
        peer: String,
    },
    /// Check a node or client configuration and every certificate it names.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
        /// Warn about certificates that expire within this many days.
        #[arg(long, default_value_t = 30)]
        warn_days: i64,
    },
    /// Auditing the exchange log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Run an IDN and a KHM node in this process and exchange messages of every kind; with
    /// --countries, further nodes that agreed to statistics and one alert category only.
    Demo {
        /// IDN, KHM and any others, comma-separated (ISO 3166-1 alpha-3).
        #[arg(long, value_delimiter = ',', default_value = "IDN,KHM")]
        countries: Vec<String>,
    },
    /// Write a new random key for encrypting message content at rest (64 hexadecimal digits,
    /// readable by its owner only); name it in the node configuration's [encryption] key_file.
    LogKey {
        /// Where to write it; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
    /// Demonstration certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Traveller alerts.
    Alert {
        #[command(subcommand)]
        command: SendCommand,
    },
    /// Document-fraud notices.
    Fraud {
        #[command(subcommand)]
        command: SendCommand,
    },
    /// Statistics reports.
    Stats {
        #[command(subcommand)]
        command: StatsCommand,
    },
    /// Answer an alert or notice with a case response (JSON file).
    Respond(SendArgs),
    /// Messages received from peers.
    Inbox {
        #[command(flatten)]
        client: ClientArgs,
        /// Only this kind.
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// Only from this country.
        #[arg(long)]
        peer: Option<String>,
        /// Stored at or after (RFC 3339, UTC).
        #[arg(long, value_parser = instant_arg)]
        since: Option<String>,
        /// Stored at or before (RFC 3339, UTC).
        #[arg(long, value_parser = instant_arg)]
        until: Option<String>,
        /// At most this many, the newest.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Messages this node sent and their delivery state.
    Outbox {
        #[command(flatten)]
        client: ClientArgs,
        /// Only to this country.
        #[arg(long)]
        peer: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One message, its receipt, and everything that refers to it.
    Show {
        #[command(flatten)]
        client: ClientArgs,
        /// The message id.
        id: String,
    },
    /// Messages that name a document or a person, with their case status. Recorded in the
    /// log as a consultation, without the terms.
    Search {
        #[command(flatten)]
        client: ClientArgs,
        /// A document number, or a whole machine-readable zone (its lines separated by a line
        /// feed), whose document number is searched.
        #[arg(long)]
        document: Option<String>,
        /// A name: "FAMILY, GIVEN", "GIVEN FAMILY" or a single name; case, diacritics, hyphens
        /// and apostrophes do not matter.
        #[arg(long)]
        name: Option<String>,
        /// Narrows a name: YYYY, YYYY-MM or YYYY-MM-DD.
        #[arg(long)]
        born: Option<String>,
        /// Only people of this nationality.
        #[arg(long)]
        nationality: Option<String>,
        /// Only this kind.
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// Only alerts of this category.
        #[arg(long, value_enum)]
        category: Option<CategoryArg>,
        /// Only messages sent, or only received.
        #[arg(long, value_enum)]
        direction: Option<DirectionArg>,
        /// Also withdrawn, expired and closed cases.
        #[arg(long)]
        all: bool,
    },
    /// One case: the alert or notice, every message that refers to it, and where it stands.
    Case {
        #[command(flatten)]
        client: ClientArgs,
        /// Any message of the case.
        id: String,
    },
    /// Cases, by status, expiry and whether they await a response.
    Cases {
        #[command(flatten)]
        client: ClientArgs,
        /// Only cases in this status.
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// Only active cases whose alert expires within this many days.
        #[arg(long, value_name = "DAYS")]
        expiring_within: Option<u32>,
        /// Only cases the other side has not answered.
        #[arg(long)]
        awaiting_response: bool,
        /// Only cases with this country.
        #[arg(long)]
        peer: Option<String>,
        /// Only cases past the response time agreed with the peer, without an answer.
        #[arg(long)]
        overdue: bool,
        /// Only cases this node opened (sent) or a peer opened (received).
        #[arg(long, value_enum)]
        direction: Option<DirectionArg>,
    },
    /// Follows the node's events as they happen, one line each (JSON lines with --json), from
    /// the start of the log or after --from; reconnects by itself with backoff and resumes
    /// from the last event it printed. Runs until stopped.
    Watch {
        #[command(flatten)]
        client: ClientArgs,
        /// The last sequence already handled: events after it are printed.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Only events about these kinds of message.
        #[arg(long, value_enum, value_delimiter = ',')]
        kind: Vec<KindArg>,
    },
    /// A web console for this user on loopback, with the user's own certificate: prints a
    /// link to open once in the browser, then serves until stopped (Ctrl-C).
    Console {
        /// Client configuration: node address and your certificate.
        #[arg(long, env = "FOCALPOINT_CLIENT_CONFIG")]
        config: PathBuf,
        /// Where to listen: a loopback address only.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
    },
    /// A range of exchange-log entries.
    Log {
        #[command(flatten)]
        client: ClientArgs,
        /// First sequence number.
        #[arg(long, default_value_t = 1)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the whole log: chain, content digests, every receipt's signature. Offline on a
    /// data directory with --config NODE.toml, or online through the node with --client.
    Verify {
        /// Offline: the node configuration naming the CA certificates.
        #[arg(long, required_unless_present = "client")]
        config: Option<PathBuf>,
        /// Offline: the data directory (or a copy of it); overrides data_dir.
        #[arg(long, requires = "config")]
        data_dir: Option<PathBuf>,
        /// Online: a client configuration (auditor or operator).
        #[arg(long, conflicts_with = "config")]
        client: Option<PathBuf>,
        /// Offline: verify without the log key even if the configuration names one; content
        /// encrypted at rest is checked against its sealed digest.
        #[arg(long, requires = "config")]
        without_key: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Export entries with decoded payloads, digests and receipts (offline, on a data directory).
    Export {
        #[command(flatten)]
        log: OfflineLog,
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// First entry: a log sequence or an RFC 3339 time.
        #[arg(long, value_parser = parse_bound)]
        from: Option<Bound>,
        /// Last entry: a log sequence or an RFC 3339 time.
        #[arg(long, value_parser = parse_bound)]
        until: Option<Bound>,
    },
    /// Everything the log holds about one message: entries, envelope, receipt, chain position.
    Show {
        #[command(flatten)]
        log: OfflineLog,
        /// The message id.
        id: String,
    },
    /// Compare two countries' JSONL exports: missing messages, digest and receipt disagreements.
    Compare {
        /// This country's export.
        mine: PathBuf,
        /// The other country's export.
        theirs: PathBuf,
    },
}

/// A message kind on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    /// Traveller alerts.
    Alert,
    /// Document-fraud notices.
    Fraud,
    /// Statistics reports.
    Stats,
    /// Case responses.
    Response,
}

impl KindArg {
    fn kind(self) -> pb::MessageKind {
        match self {
            Self::Alert => pb::MessageKind::TravellerAlert,
            Self::Fraud => pb::MessageKind::DocumentFraudNotice,
            Self::Stats => pb::MessageKind::StatisticsReport,
            Self::Response => pb::MessageKind::CaseResponse,
        }
    }
}

/// An alert category on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CategoryArg {
    SuspectedNonProceduralMigrantWorker,
    SuspectedTraffickingVictim,
    SuspectedRecruiter,
    SuspectedTrafficker,
    DeparturePostponed,
    PassportIssuancePostponed,
    RepatriationRequest,
    Overstay,
}

impl CategoryArg {
    fn category(self) -> pb::AlertCategory {
        match self {
            Self::SuspectedNonProceduralMigrantWorker => {
                pb::AlertCategory::SuspectedNonProceduralMigrantWorker
            }
            Self::SuspectedTraffickingVictim => pb::AlertCategory::SuspectedTraffickingVictim,
            Self::SuspectedRecruiter => pb::AlertCategory::SuspectedRecruiter,
            Self::SuspectedTrafficker => pb::AlertCategory::SuspectedTrafficker,
            Self::DeparturePostponed => pb::AlertCategory::DeparturePostponed,
            Self::PassportIssuancePostponed => pb::AlertCategory::PassportIssuancePostponed,
            Self::RepatriationRequest => pb::AlertCategory::RepatriationRequest,
            Self::Overstay => pb::AlertCategory::Overstay,
        }
    }
}

/// A direction on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DirectionArg {
    Sent,
    Received,
}

impl DirectionArg {
    /// The direction asked for, if any, as the operator plane takes it.
    fn to_pb(arg: Option<Self>) -> i32 {
        (match arg {
            None => pb::Direction::Unspecified,
            Some(Self::Sent) => pb::Direction::Sent,
            Some(Self::Received) => pb::Direction::Received,
        }) as i32
    }
}

/// A case status on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StatusArg {
    Active,
    Withdrawn,
    Expired,
    Closed,
}

/// An RFC 3339 UTC instant on the command line, checked before anything is sent.
fn instant_arg(s: &str) -> Result<String, String> {
    crate::domain::model::parse_instant(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// The log named on the command line could not be opened: not an audit's verdict.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the log")]
pub struct Unopened;

/// Where to read a log offline.
#[derive(Debug, Args)]
pub struct OfflineLog {
    /// The node configuration (names the country and the CA certificates).
    #[arg(long)]
    config: PathBuf,
    /// The data directory, or a copy of it; overrides data_dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Read the log without its encryption key even if the configuration names one: sealed
    /// content is then checked against its sealed digest, and not shown.
    #[arg(long)]
    without_key: bool,
}

impl OfflineLog {
    fn open(&self) -> anyhow::Result<(NodeConfig, crate::log::ExchangeLog)> {
        let config = NodeConfig::load(&self.config)?;
        self.open_log(&config).map(|log| (config, log))
    }

    fn open_log(&self, config: &NodeConfig) -> anyhow::Result<crate::log::ExchangeLog> {
        let dir = self
            .data_dir
            .clone()
            .or_else(|| config.data_dir.clone())
            .context("no data directory: set data_dir or pass --data-dir")?;
        if !dir.join("db").is_file() {
            return Err(
                anyhow::anyhow!("{} holds no exchange log", dir.display()).context(Unopened)
            );
        }
        let key = match (&config.encryption, self.without_key) {
            (Some(encryption), false) => {
                Some(std::sync::Arc::new(encryption.load_key().context(
                    "the log key (--without-key reads the log without it)",
                )?))
            }
            _ => None,
        };
        let log = crate::log::ExchangeLog::open(
            &dir,
            crate::log::LogOptions {
                durability: crate::log::Durability::Flush,
                key,
                cache_mib: config.cache_mib,
                ..crate::log::LogOptions::default()
            },
        )
        .map_err(|e| {
            use crate::log::LogError;
            // A log that is there but damaged is a failed audit; only one that cannot be
            // reached at all is "cannot open".
            let damaged = matches!(
                e,
                LogError::CorruptFile { .. }
                    | LogError::Truncated { .. }
                    | LogError::Rewritten { .. }
                    | LogError::Corrupt { .. }
            );
            if damaged {
                anyhow::Error::new(e)
            } else {
                anyhow::Error::new(e).context(Unopened)
            }
        })?;
        Ok(log)
    }
}

/// A bound given as a log sequence number or an RFC 3339 instant.
#[derive(Debug, Clone, Copy)]
pub enum Bound {
    Sequence(u64),
    Micros(i64),
}

fn parse_bound(s: &str) -> Result<Bound, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Bound::Sequence(n));
    }
    crate::domain::model::parse_instant(s)
        .map(|t| Bound::Micros(i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)))
        .map_err(|e| format!("neither a log sequence nor {e}"))
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// Two exports disagree.
#[derive(Debug, thiserror::Error)]
#[error("the exports disagree in {0} places")]
pub struct Disagreements(usize);

/// The log failed verification.
#[derive(Debug, thiserror::Error)]
#[error("verification failed at entry {sequence}: {problem}")]
pub struct AuditFailed {
    sequence: u64,
    problem: String,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a fresh demonstration PKI, IDN and KHM unless --countries names others.
    Init {
        /// Output directory; gets one directory per country (idn/, khm/, ...).
        #[arg(long)]
        out: PathBuf,
        /// The countries, two or more ISO 3166-1 alpha-3 codes, comma-separated; each gets its
        /// CA, node, user certificates and a node configuration with every other as a peer.
        #[arg(long, value_delimiter = ',', default_value = "IDN,KHM")]
        countries: Vec<String>,
        /// Validity in years.
        #[arg(long, default_value_t = 10)]
        years: i64,
    },
    /// Add a certificate to a demo CA's revocation list (DIR/crl.pem), signed by that CA.
    Revoke {
        /// The CA's directory: its ca.pem and ca.key (e.g. certs-example/idn).
        #[arg(long)]
        ca: PathBuf,
        /// The certificate to revoke (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// When it counts as revoked (RFC 3339, UTC); now by default.
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SendCommand {
    /// Send one message from a JSON file.
    Send(SendArgs),
}

#[derive(Debug, Subcommand)]
pub enum StatsCommand {
    /// Push one period's figures to the peer. Safe to re-run: the same figures change nothing,
    /// changed figures become a new revision.
    Push {
        #[command(flatten)]
        client: ClientArgs,
        /// The period: YYYY-MM, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD.
        #[arg(long)]
        period: String,
        /// The figures: .csv (counter,location,value) or .json.
        #[arg(long)]
        file: PathBuf,
        /// The receiving country (default: every peer whose agreement includes statistics).
        #[arg(long)]
        to: Option<String>,
        /// Where the figures come from (overrides the file's own).
        #[arg(long)]
        source: Option<String>,
        /// Wait for the peer's signed receipt (at most 30 s).
        #[arg(long)]
        wait: bool,
    },
    /// The current figures of a country (this node's own or the peer's), per period.
    Show(StatsQuery),
    /// Every revision of a country's reports.
    History(StatsQuery),
    /// A country's current figures as CSV for spreadsheets.
    Export {
        #[command(flatten)]
        query: StatsQuery,
        /// Every revision, not only the current one.
        #[arg(long)]
        all_revisions: bool,
    },
    /// A chart (SVG) of one counter over periods, a line per country.
    Chart {
        #[command(flatten)]
        client: ClientArgs,
        /// The counter, e.g. departures_postponed.
        #[arg(long)]
        counter: String,
        /// The countries to draw; those without values are left out, legend included.
        #[arg(long, value_delimiter = ',', default_value = "IDN,KHM")]
        countries: Vec<String>,
        /// Months (default) or days; reports for other ranges of days are left out.
        #[arg(long, value_enum, default_value_t)]
        granularity: render::Granularity,
        /// Where to write the SVG.
        #[arg(long)]
        out: PathBuf,
    },
    /// What this node found comparing the peer's reports with its own log.
    Reconcile {
        #[command(flatten)]
        client: ClientArgs,
        /// The reporting peer (default: every peer).
        #[arg(long)]
        peer: Option<String>,
        #[arg(long)]
        period: Option<String>,
        /// Compare again now and record what changed (operators and the sync).
        #[arg(long)]
        recheck: bool,
    },
}

/// Which statistics reports to read.
#[derive(Debug, Args)]
pub struct StatsQuery {
    #[command(flatten)]
    client: ClientArgs,
    /// The reporting country: this node's own or the peer.
    #[arg(long)]
    peer: String,
    /// Only this period.
    #[arg(long)]
    period: Option<String>,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Client configuration: node address and your certificate.
    #[arg(long, env = "FOCALPOINT_CLIENT_CONFIG")]
    config: PathBuf,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Wait for the peer's signed receipt (at most 30 s) instead of returning once logged here.
    #[arg(long)]
    wait: bool,
    /// The receiving countries, comma-separated, in place of the file's receiver: the first
    /// gets the message as it is, each other a copy under the message id followed by
    /// "-COUNTRY", all one case.
    #[arg(long, value_delimiter = ',')]
    to: Vec<String>,
    /// The envelope, as JSON (see examples/).
    file: PathBuf,
}

/// A command line that makes no sense, found after parsing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(String);

/// Exit codes, after sysexits.h.
pub mod exit {
    /// Refused by the node.
    pub const REFUSED: u8 = 1;
    /// A configuration, certificate or usage problem.
    pub const CONFIG: u8 = 64;
    /// An unreadable or malformed input file.
    pub const INPUT: u8 = 65;
    /// A log (data directory) that cannot be opened.
    pub const NO_INPUT: u8 = 66;
    /// The node is unreachable, or cannot listen or open its data directory.
    pub const UNAVAILABLE: u8 = 69;
}

/// Sets up logging to stderr: a node's `[log]` section gives the defaults, and
/// `FOCALPOINT_LOG` and `FOCALPOINT_LOG_FORMAT` win.
pub fn init_tracing(command: &Command) {
    let configured = match command {
        Command::Serve { config, .. } => NodeConfig::load(config).map(|c| c.log).ok(),
        _ => None,
    }
    .unwrap_or_default();
    let json_logs = match std::env::var("FOCALPOINT_LOG_FORMAT") {
        Ok(v) => v == "json",
        Err(_) => configured.format == crate::node::config::LogFormat::Json,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FOCALPOINT_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&configured.filter))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Whether `e` is the command's own stdout losing its reader: the command then ends as a
/// filter does, with [`crate::cli::output::READER_GONE`] and nothing said.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<crate::cli::output::Stdout>()
            .is_some_and(crate::cli::output::Stdout::reader_gone)
    })
}

/// The exit code for a command that failed with `e`.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    use crate::node::server::NodeError;
    // A context, which anyhow finds by downcasting the error itself.
    if e.downcast_ref::<Unopened>().is_some() || e.chain().any(|c| c.is::<Unopened>()) {
        return exit::NO_INPUT;
    }
    for cause in e.chain() {
        if cause.is::<Usage>() || cause.is::<crate::cli::certs::CertsError>() {
            return exit::CONFIG;
        }
        if let Some(n) = cause.downcast_ref::<NodeError>() {
            return match n {
                NodeError::Listen { .. }
                | NodeError::Log(_)
                | NodeError::Serve { .. }
                | NodeError::Reflection(_) => exit::UNAVAILABLE,
                NodeError::Tls(_)
                | NodeError::Signer(_)
                | NodeError::LogKey(_)
                | NodeError::WrongIdentity { .. }
                | NodeError::NoDataDir => exit::CONFIG,
            };
        }
        if cause.is::<crate::node::config::ConfigError>()
            || cause.is::<crate::crypto::x509::TlsError>()
        {
            return exit::CONFIG;
        }
        if let Some(c) = cause.downcast_ref::<crate::cli::console::ConsoleError>() {
            use crate::cli::console::ConsoleError;
            return match c {
                ConsoleError::Listen { .. } | ConsoleError::Serve(_) => exit::UNAVAILABLE,
                ConsoleError::Client(ClientError::Tls(_))
                | ConsoleError::NotLoopback(_)
                | ConsoleError::Identity { .. }
                | ConsoleError::NoPages(..)
                | ConsoleError::Catalogue(_) => exit::CONFIG,
                ConsoleError::Client(_) => exit::UNAVAILABLE,
            };
        }
        if let Some(c) = cause.downcast_ref::<ClientError>() {
            return match c {
                ClientError::Tls(_) => exit::CONFIG,
                ClientError::Read { .. } | ClientError::Input { .. } => exit::INPUT,
                ClientError::Refused(s)
                    if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown) =>
                {
                    exit::UNAVAILABLE
                }
                ClientError::Refused(_) => exit::REFUSED,
            };
        }
    }
    exit::REFUSED
}

/// Runs one command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config, data_dir } => serve(config, data_dir).await,
        Command::Demo { countries } => {
            let countries = country_list(&countries)?;
            if !["IDN", "KHM"]
                .iter()
                .all(|c| countries.iter().any(|k| k.as_str() == *c))
            {
                return Err(Usage(
                    "--countries: the demo's messages are IDN's and KHM's; name both, and any others"
                        .into(),
                )
                .into());
            }
            crate::cli::demo::run(&countries).await
        }
        Command::CheckConfig { file, warn_days } => check_config(&file, warn_days),
        Command::Checkpoint { client, peer } => checkpoint(client, peer).await,
        Command::Audit { command } => match command {
            AuditCommand::Verify {
                config,
                data_dir,
                client,
                without_key,
                json,
            } => {
                let offline = config.map(|config| OfflineLog {
                    config,
                    data_dir,
                    without_key,
                });
                audit_verify(offline, client, json).await
            }
            AuditCommand::Export {
                log,
                format,
                from,
                until,
            } => audit_export(log, format, from, until),
            AuditCommand::Show { log, id } => audit_show(log, id),
            AuditCommand::Compare { mine, theirs } => audit_compare(mine, theirs),
        },
        Command::Replay {
            config,
            to: Some(to),
            from,
            until,
            rebuild: false,
            json,
            ..
        } => replay_to(config, to, from, until, json).await,
        Command::Replay {
            config,
            data_dir,
            json,
            ..
        } => rebuild(config, data_dir, json),
        Command::Compact {
            config,
            data_dir,
            out,
        } => compact(config, data_dir, out),
        Command::Migrate {
            config,
            data_dir,
            out,
        } => migrate(config, data_dir, out),
        Command::LogKey { out } => log_key(&out),
        Command::Certs { command } => match command {
            CertsCommand::Init {
                out,
                countries,
                years,
            } => certs_init(&out, &countries, years),
            CertsCommand::Revoke { ca, cert, at } => certs_revoke(&ca, &cert, at),
        },
        Command::Alert {
            command: SendCommand::Send(args),
        } => send(args, pb::MessageKind::TravellerAlert).await,
        Command::Fraud {
            command: SendCommand::Send(args),
        } => send(args, pb::MessageKind::DocumentFraudNotice).await,
        Command::Stats { command } => stats(command).await,
        Command::Respond(args) => send(args, pb::MessageKind::CaseResponse).await,
        Command::Inbox {
            client,
            kind,
            peer,
            since,
            until,
            limit,
        } => inbox(client, kind, peer, since, until, limit).await,
        Command::Outbox {
            client,
            peer,
            limit,
        } => outbox(client, peer, limit).await,
        Command::Show { client, id } => show(client, id).await,
        Command::Search {
            client,
            document,
            name,
            born,
            nationality,
            kind,
            category,
            direction,
            all,
        } => {
            let request = pb::SearchRequest {
                document: document.unwrap_or_default(),
                name: name.unwrap_or_default(),
                born: born.unwrap_or_default(),
                nationality: nationality.unwrap_or_default(),
                kind: kind.map_or(pb::MessageKind::Unspecified, KindArg::kind) as i32,
                category: category.map_or(pb::AlertCategory::Unspecified, CategoryArg::category)
                    as i32,
                direction: DirectionArg::to_pb(direction),
                all,
            };
            search(client, request).await
        }
        Command::Case { client, id } => case(client, id).await,
        Command::Watch { client, from, kind } => watch(client, from, kind).await,
        Command::Console { config, listen } => {
            crate::cli::console::check_listen(listen).map_err(|e| Usage(e.to_string()))?;
            let config = ClientConfig::load(&config)?;
            Ok(crate::cli::console::run(&config, listen).await?)
        }
        Command::Cases {
            client,
            status,
            expiring_within,
            awaiting_response,
            peer,
            overdue,
            direction,
        } => {
            let request = pb::CasesRequest {
                status: match status {
                    None => pb::CaseStatus::Unspecified,
                    Some(StatusArg::Active) => pb::CaseStatus::Active,
                    Some(StatusArg::Withdrawn) => pb::CaseStatus::Withdrawn,
                    Some(StatusArg::Expired) => pb::CaseStatus::Expired,
                    Some(StatusArg::Closed) => pb::CaseStatus::Closed,
                } as i32,
                expiring_within_days: expiring_within.unwrap_or(0),
                awaiting_response,
                peer: peer.unwrap_or_default(),
                overdue,
                direction: DirectionArg::to_pb(direction),
            };
            cases(client, request).await
        }
        Command::Log {
            client,
            from,
            limit,
        } => log(client, from, limit).await,
    }
}

/// Checks a configuration file and what it names, a line per finding.
fn check_config(file: &Path, warn_days: i64) -> anyhow::Result<()> {
    use crate::cli::check::Level;
    let findings = crate::cli::check::check(file, warn_days)?;
    for f in &findings {
        let label = match f.level {
            Level::Ok => "ok     ",
            Level::Warning => "warning",
            Level::Error => "error  ",
        };
        outln!("{label} {}", f.message);
    }
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    if errors > 0 {
        return Err(Usage(format!("{} has {errors} problems", file.display())).into());
    }
    Ok(())
}

/// Asks the node to have `peer` cosign its log head.
async fn checkpoint(client: ClientArgs, peer: String) -> anyhow::Result<()> {
    let mut c = connect(&client)?;
    let r = c.checkpoint(&peer).await?;
    print(client.json, &r, || {
        format!(
            "checkpoint of {} entries, root {}, cosigned by {peer}; logged as entry {}\n",
            r.size,
            crate::domain::model::hex(&r.root_hash),
            r.log_sequence
        )
    });
    Ok(())
}

/// Writes the entries of an offline log between two bounds, as JSON lines or CSV.
fn audit_export(
    log: OfflineLog,
    format: ExportFormat,
    from: Option<Bound>,
    until: Option<Bound>,
) -> anyhow::Result<()> {
    let (config, log) = log.open()?;
    let (mut first, mut last, mut since, mut till) = (1, u64::MAX, None, None);
    match from {
        Some(Bound::Sequence(n)) => first = n,
        Some(Bound::Micros(t)) => since = Some(t),
        None => {}
    }
    match until {
        Some(Bound::Sequence(n)) => last = n,
        Some(Bound::Micros(t)) => till = Some(t),
        None => {}
    }
    let records =
        crate::exchange::audit::export(&log, &config.audit_trust()?, first, last, (since, till))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    use std::io::Write as _;
    let written = (|| -> std::io::Result<()> {
        match format {
            ExportFormat::Jsonl => {
                for r in &records {
                    let line = serde_json::to_string(r).map_err(std::io::Error::other)?;
                    writeln!(out, "{line}")?;
                }
            }
            ExportFormat::Csv => render::audit_csv(&mut out, &records)?,
        }
        out.flush()
    })();
    written.map_err(crate::cli::output::Stdout)?;
    Ok(())
}

/// Everything an offline log holds about one message.
fn audit_show(log: OfflineLog, id: String) -> anyhow::Result<()> {
    let (config, log) = log.open()?;
    let records: Vec<_> =
        crate::exchange::audit::export(&log, &config.audit_trust()?, 1, u64::MAX, (None, None))?
            .into_iter()
            .filter(|r| r.message_id == id || r.reference == id)
            .collect();
    anyhow::ensure!(!records.is_empty(), "the log holds nothing about {id}");
    outln!("{}", serde_json::to_string_pretty(&records)?);
    Ok(())
}

/// Compares two countries' exports.
fn audit_compare(mine: PathBuf, theirs: PathBuf) -> anyhow::Result<()> {
    let read = |path: &PathBuf| -> anyhow::Result<Vec<crate::exchange::audit::ExportRecord>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .with_context(|| format!("{} line {}", path.display(), i + 1))
            })
            .collect()
    };
    let (a, b) = (read(&mine)?, read(&theirs)?);
    let findings = crate::exchange::audit::compare(&a, &b);
    if findings.is_empty() {
        outln!(
            "the exports agree: every message one side sent is in the other's log with the same digest, and every receipt matches the receiver's entry"
        );
        Ok(())
    } else {
        for f in &findings {
            outln!("{f}");
        }
        Err(Disagreements(findings.len()).into())
    }
}

/// Has the node send its messages to `to` again.
async fn replay_to(
    config: PathBuf,
    to: String,
    from: u64,
    until: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let client = ClientArgs { config, json };
    let mut c = connect(&client)?;
    let r = c.replay(&to, from, until.unwrap_or(0)).await?;
    print(client.json, &r, || {
        format!(
            "re-sent {} messages to {to}: {} already held (original receipts), {} newly stored, {} refused\n",
            r.resent, r.already_held, r.newly_stored, r.refused
        )
    });
    Ok(())
}

/// Rebuilds an offline log's views from its chain.
fn rebuild(config: PathBuf, data_dir: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let config = NodeConfig::load(&config)?;
    let dir = data_dir
        .or(config.data_dir)
        .context("no data directory: set data_dir or pass --data-dir")?;
    let log = crate::log::ExchangeLog::open(&dir, config.durability)
        .with_context(|| format!("opening the log in {}", dir.display()))?;
    let checked = log
        .verify()
        .context("the log does not verify; views not rebuilt")?;
    let replayed = log.rebuild_views()?;
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "data_dir": dir.display().to_string(),
                "entries_verified": checked,
                "entries_replayed": replayed,
            })
        );
    } else {
        outln!(
            "rebuilt the views of {} from {replayed} entries (chain verified over {checked})",
            dir.display()
        );
    }
    Ok(())
}

/// Copies an offline log into a fresh data directory, and verifies the copy.
fn compact(config: PathBuf, data_dir: Option<PathBuf>, out: PathBuf) -> anyhow::Result<()> {
    let (_, log) = OfflineLog {
        config,
        data_dir,
        without_key: false,
    }
    .open()?;
    let checked = log
        .verify()
        .context("the log does not verify; nothing was copied")?;
    let verified = log.compact_into(&out)?;
    outln!(
        "copied the log ({checked} entries) to {} and verified the copy ({verified} entries); with the node stopped, move it in place of the data directory, then destroy the old one",
        out.display()
    );
    Ok(())
}

/// Converts an offline log of the first store layout into `out`, and audits the result.
fn migrate(config: PathBuf, data_dir: Option<PathBuf>, out: PathBuf) -> anyhow::Result<()> {
    let node = NodeConfig::load(&config)?;
    let dir = data_dir
        .or_else(|| node.data_dir.clone())
        .context("no data directory: set data_dir or pass --data-dir")?;
    let key = match &node.encryption {
        Some(encryption) => Some(std::sync::Arc::new(
            encryption.load_key().context("the log key")?,
        )),
        None => None,
    };
    let migrated = crate::log::migrate::migrate(&dir, &out, key.clone())
        .with_context(|| format!("converting the log in {}", dir.display()))?;
    let audited = crate::log::ExchangeLog::open(
        &out,
        crate::log::LogOptions::from(crate::log::Durability::Flush).with_key(key),
    )
    .map_err(anyhow::Error::from)
    .and_then(|log| {
        let trust = node.audit_trust()?;
        // The finding once: its entry and what is wrong, without repeating the cause.
        crate::exchange::audit::verify(&log, &trust).map_err(|e| anyhow::anyhow!("{e}"))
    });
    let report = match audited {
        Ok(report) => report,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&out);
            return Err(e.context(format!(
                "the converted log does not pass the audit; {} was removed and the old log is unchanged",
                out.display()
            )));
        }
    };
    let (last, head) = migrated.head;
    outln!(
        "converted the log in {} ({} entries) to {}: entry hashes and the head (entry {last}, {}) are unchanged, and the audit passed ({} receipts)",
        dir.display(),
        migrated.entries,
        out.display(),
        crate::domain::model::hex(&head.0),
        report.receipts
    );
    outln!(
        "with the node stopped, point data_dir at {} (or move it in place of {}), then start the node; keep the old directory until the node runs on the new one",
        out.display(),
        dir.display()
    );
    Ok(())
}

/// Writes a new log key to `out`, never over an existing file.
fn log_key(out: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = crate::crypto::seal::LogKey::generate_hex()?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| {
            Usage(format!(
                "cannot create {}: {e} (a log key is never overwritten)",
                out.display()
            ))
        })?;
    writeln!(file, "{key}")?;
    file.sync_all()?;
    let id = crate::crypto::seal::LogKey::from_hex(&key, "just written")?.id();
    outln!(
        "wrote log key {id} to {}; keep a copy apart from the data directory",
        out.display()
    );
    Ok(())
}

/// Writes the demonstration PKI.
fn certs_init(out: &Path, countries: &[String], years: i64) -> anyhow::Result<()> {
    crate::cli::certs::init(out, &country_list(countries)?, years)?;
    outln!(
        "demonstration PKI written to {} (never use in production)",
        out.display()
    );
    Ok(())
}

/// `--countries`: two or more different country codes.
fn country_list(countries: &[String]) -> Result<Vec<CountryCode>, Usage> {
    let parsed = countries
        .iter()
        .map(|c| {
            c.trim()
                .parse::<CountryCode>()
                .map_err(|e| Usage(format!("--countries: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let distinct: std::collections::BTreeSet<_> = parsed.iter().collect();
    if parsed.len() < 2
        || distinct.len() != parsed.len()
        || parsed.len() > crate::cli::certs::MAX_COUNTRIES
    {
        return Err(Usage(format!(
            "--countries: name from 2 to {} different countries",
            crate::cli::certs::MAX_COUNTRIES
        )));
    }
    Ok(parsed)
}

/// Revokes a certificate in its CA's list.
fn certs_revoke(ca: &Path, cert: &Path, at: Option<String>) -> anyhow::Result<()> {
    let at = match at {
        Some(t) => {
            crate::domain::model::parse_instant(&t).map_err(|e| Usage(format!("--at: {e}")))?
        }
        None => time::OffsetDateTime::now_utc(),
    };
    let listed = crate::cli::certs::revoke(ca, cert, at)?;
    let list = ca.join(crate::cli::certs::CRL_FILE);
    outln!(
        "{} revoked as of {}; {} now lists {listed} certificate(s).\n\
         This node takes it with `crl = \"crl.pem\"` under [operator_listener]; each peer \
         with a copy named in `crl` of its [[peers]] block; then reload (SIGHUP).",
        cert.display(),
        crate::domain::model::format_instant(at),
        list.display()
    );
    Ok(())
}

/// Lists received messages.
async fn inbox(
    client: ClientArgs,
    kind: Option<KindArg>,
    peer: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: u32,
) -> anyhow::Result<()> {
    let kind = kind.map_or(pb::MessageKind::Unspecified, KindArg::kind);
    let mut c = connect(&client)?;
    let r = c
        .inbox(pb::InboxRequest {
            kind: kind as i32,
            peer: peer.unwrap_or_default(),
            since: since.unwrap_or_default(),
            until: until.unwrap_or_default(),
            limit,
        })
        .await?;
    print(client.json, &r, || client::messages_table(&r.messages));
    Ok(())
}

/// Lists sent messages and their delivery.
async fn outbox(client: ClientArgs, peer: Option<String>, limit: u32) -> anyhow::Result<()> {
    let mut c = connect(&client)?;
    let r = c
        .outbox(pb::OutboxRequest {
            peer: peer.unwrap_or_default(),
            limit,
        })
        .await?;
    print(client.json, &r, || client::outbox_table(&r.messages));
    Ok(())
}

/// One message, what refers to it, and its entries.
async fn show(client: ClientArgs, id: String) -> anyhow::Result<()> {
    let mut c = connect(&client)?;
    let r = c.show(&id).await?;
    print(client.json, &r, || client::show_text(&r));
    Ok(())
}

/// Messages naming a document or a person.
async fn search(client: ClientArgs, request: pb::SearchRequest) -> anyhow::Result<()> {
    let mut c = connect(&client)?;
    let r = c.search(request).await?;
    print(client.json, &r, || client::search_table(&r.hits));
    Ok(())
}

/// Prints events as they come, reconnecting with backoff; returns only on a refusal that
/// retrying cannot mend (a role that may not watch, a bad request).
async fn watch(client: ClientArgs, from: u64, kinds: Vec<KindArg>) -> anyhow::Result<()> {
    use tokio_stream::StreamExt;
    let kinds: Vec<i32> = kinds.into_iter().map(|k| k.kind() as i32).collect();
    let mut last = from;
    let mut pause = std::time::Duration::from_millis(200);
    let mut c = connect(&client)?;
    loop {
        let request = pb::WatchRequest {
            from_sequence: last,
            kinds: kinds.clone(),
        };
        let why = match c.watch(request).await {
            Ok(mut events) => loop {
                match events.next().await {
                    Some(Ok(event)) => {
                        last = event.sequence;
                        pause = std::time::Duration::from_millis(200);
                        if client.json {
                            outln!("{}", serde_json::to_string(&event).unwrap_or_default());
                        } else {
                            outln!("{}", client::event_line(&event));
                        }
                    }
                    Some(Err(status)) => break status,
                    None => break tonic::Status::unavailable("the stream ended"),
                }
            },
            Err(client::ClientError::Refused(status)) => status,
            Err(other) => return Err(other.into()),
        };
        match why.code() {
            tonic::Code::PermissionDenied
            | tonic::Code::InvalidArgument
            | tonic::Code::Unauthenticated => {
                return Err(client::ClientError::Refused(why).into());
            }
            _ => {
                tracing::warn!(after = last, retry_in_ms = pause.as_millis() as u64, reason = %why.message(), "watch interrupted; resuming");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(10));
            }
        }
    }
}

/// One case and where it stands.
async fn case(client: ClientArgs, id: String) -> anyhow::Result<()> {
    let mut c = connect(&client)?;
    let r = c.case(&id).await?;
    print(client.json, &r, || client::case_text(&r));
    Ok(())
}

/// Cases by status.
async fn cases(client: ClientArgs, request: pb::CasesRequest) -> anyhow::Result<()> {
    let mut c = connect(&client)?;
    let r = c.cases(request).await?;
    print(client.json, &r, || client::cases_table(&r.cases));
    Ok(())
}

/// Log entries from `from`.
async fn log(client: ClientArgs, from: u64, limit: u32) -> anyhow::Result<()> {
    let mut c = connect(&client)?;
    let r = c.log(from, limit).await?;
    print(client.json, &r, || {
        format!(
            "{}log size {}, head {}\n",
            client::entries_table(&r.entries),
            r.size,
            crate::domain::model::hex(&r.head_hash)
        )
    });
    Ok(())
}

async fn audit_verify(
    offline: Option<OfflineLog>,
    client: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let r = match (client, offline) {
        (Some(client), _) => {
            let mut c = connect(&ClientArgs {
                config: client,
                json,
            })?;
            c.verify().await?
        }
        (None, Some(offline)) => {
            let (config, log) = offline.open()?;
            let trust = config.audit_trust()?;
            crate::exchange::audit::response(crate::exchange::audit::verify(&log, &trust))
        }
        (None, None) => {
            return Err(Usage("give --config NODE.toml or --client CLIENT.toml".into()).into());
        }
    };
    print(json, &r, || {
        if r.ok {
            let mut text = format!(
                "verified {} entries, {} receipts and {} checkpoints: the chain is whole, every content digest, receipt, signature and cosigned root holds\n",
                r.entries, r.receipts, r.checkpoints
            );
            if r.redacted > 0 {
                text.push_str(&format!(
                    "{} messages were redacted under the retention policy; their digests and receipts still hold\n",
                    r.redacted
                ));
            }
            if r.sealed_unopened > 0 {
                text.push_str(&format!(
                    "{} messages are encrypted at rest and were checked against their sealed digests without the key\n",
                    r.sealed_unopened
                ));
            }
            if r.unknown_references > 0 {
                text.push_str(&format!(
                    "finding: {} received messages refer to a message this log never held (the first is entry {}); see `case` for each\n",
                    r.unknown_references, r.first_unknown_reference
                ));
            }
            if r.unsigned_receipts > 0 {
                text.push_str(&format!(
                    "{} received messages after the last signed receipt have their receipts stored, each describing its message, but not signed in the log, as when the node stops before answering them; the node signs them when it starts\n",
                    r.unsigned_receipts
                ));
            }
            text
        } else {
            format!(
                "FAILED at entry {}: {}\n({} entries before it verified)\n",
                r.first_bad_sequence, r.problem, r.entries
            )
        }
    });
    if r.ok {
        Ok(())
    } else {
        Err(AuditFailed {
            sequence: r.first_bad_sequence,
            problem: r.problem,
        }
        .into())
    }
}

fn print<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) {
    if json {
        outln!("{}", client::to_json(value));
    } else {
        out!("{}", text());
    }
}

fn connect(args: &ClientArgs) -> anyhow::Result<OperatorClient> {
    let config = ClientConfig::load(&args.config)?;
    Ok(OperatorClient::new(&config)?)
}

async fn send(args: SendArgs, expected: pb::MessageKind) -> anyhow::Result<()> {
    let envelope = client::read_envelope(&args.file)?;
    let kind = match &envelope.body {
        Some(pb::envelope::Body::TravellerAlert(_)) => pb::MessageKind::TravellerAlert,
        Some(pb::envelope::Body::DocumentFraudNotice(_)) => pb::MessageKind::DocumentFraudNotice,
        Some(pb::envelope::Body::StatisticsReport(_)) => pb::MessageKind::StatisticsReport,
        Some(pb::envelope::Body::CaseResponse(_)) => pb::MessageKind::CaseResponse,
        None => pb::MessageKind::Unspecified,
    };
    if kind != expected {
        return Err(ClientError::Input {
            path: args.file.clone(),
            message: format!(
                "holds a {}, not a {}",
                crate::domain::kinds::kind_label(kind as i32),
                crate::domain::kinds::kind_label(expected as i32)
            ),
        }
        .into());
    }
    let mut envelope = envelope;
    let mut to = args.to.into_iter().map(|c| c.trim().to_owned());
    if let Some(first) = to.next() {
        envelope.receiver = first;
    }
    let mut c = connect(&args.client)?;
    let r = c.send_copies(envelope, to.collect(), args.wait).await?;
    print(args.client.json, &r, || client::send_text(&r));
    Ok(())
}

fn period_arg(value: Option<&str>) -> anyhow::Result<Option<pb::Period>> {
    value
        .map(|p| {
            crate::domain::kinds::parse_period(p)
                .map_err(|e| Usage(format!("--period: {e}")).into())
        })
        .transpose()
}

async fn stats(command: StatsCommand) -> anyhow::Result<()> {
    match command {
        StatsCommand::Push {
            client,
            period,
            file,
            to,
            source,
            wait,
        } => {
            let period = period_arg(Some(&period))?;
            let figures = figures::read_figures(&file).map_err(|e| ClientError::Input {
                path: file.clone(),
                message: e.to_string(),
            })?;
            let mut c = connect(&client)?;
            let r = c
                .push_statistics(pb::PushStatisticsRequest {
                    peer: to.unwrap_or_default(),
                    period,
                    counters: figures.counters,
                    source: source.unwrap_or(figures.source),
                    wait_for_receipt: wait,
                })
                .await?;
            print(client.json, &r, || client::push_text(&r));
            if let Some(sent) = client::push_failed(&r) {
                anyhow::bail!(
                    "the peer refused {} for good: {}",
                    sent.message_id,
                    sent.detail
                );
            }
        }
        StatsCommand::Show(query) => {
            let r = statistics(&query).await?;
            let (client, peer) = (query.client, query.peer);
            let current = pb::StatisticsResponse {
                reports: render::current(&r.reports).into_iter().cloned().collect(),
            };
            print(client.json, &current, || {
                if current.reports.is_empty() {
                    return format!("no statistics from {peer} for that period\n");
                }
                current
                    .reports
                    .iter()
                    .map(render::report_text)
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        StatsCommand::History(query) => {
            let r = statistics(&query).await?;
            print(query.client.json, &r, || {
                client::statistics_history(&r.reports)
            });
        }
        StatsCommand::Export {
            query,
            all_revisions,
        } => {
            if query.client.json {
                return Err(Usage(
                    "stats export writes CSV; --json does not apply (stats history --json gives JSON)"
                        .into(),
                )
                .into());
            }
            let r = statistics(&query).await?;
            let chosen: Vec<&pb::StatisticsRecord> = if all_revisions {
                r.reports.iter().collect()
            } else {
                render::current(&r.reports)
            };
            out!("{}", render::csv(&chosen));
        }
        StatsCommand::Chart {
            client,
            counter,
            countries,
            granularity,
            out,
        } => {
            let mut series = Vec::new();
            let mut c = connect(&client)?;
            for country in &countries {
                let r = c
                    .statistics(pb::StatisticsRequest {
                        country: country.clone(),
                        period: None,
                    })
                    .await?;
                series.push(render::series(country, &r.reports, &counter, granularity));
            }
            let noun = format!("{granularity:?}").to_lowercase();
            let Some(svg) = render::chart_svg(&counter, granularity, &series) else {
                anyhow::bail!(
                    "no report of {} for a {noun} holds the counter {counter:?}",
                    countries.join(" or ")
                );
            };
            std::fs::write(&out, svg).with_context(|| format!("writing {}", out.display()))?;
            let drawn: Vec<&Series> = series.iter().filter(|s| !s.points.is_empty()).collect();
            let points: usize = drawn.iter().map(|s| s.points.len()).sum();
            if client.json {
                outln!(
                    "{}",
                    serde_json::json!({
                        "counter": counter,
                        "granularity": noun,
                        "points": points,
                        "countries": drawn.iter().map(|s| s.country.clone()).collect::<Vec<_>>(),
                        "out": out.display().to_string(),
                    })
                );
            } else {
                outln!(
                    "{counter} per {noun}: {points} points for {} written to {}",
                    drawn
                        .iter()
                        .map(|s| s.country.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    out.display()
                );
            }
        }
        StatsCommand::Reconcile {
            client,
            peer,
            period,
            recheck,
        } => {
            let mut c = connect(&client)?;
            let r = c
                .reconcile(pb::ReconcileRequest {
                    peer: peer.unwrap_or_default(),
                    period: period_arg(period.as_deref())?,
                    recheck,
                })
                .await?;
            print(client.json, &r, || {
                if r.reconciliations.is_empty() {
                    return "no reconciliation recorded (no report with exchange counts received)\n".into();
                }
                r.reconciliations
                    .iter()
                    .map(render::reconciliation_text)
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(())
}

async fn statistics(query: &StatsQuery) -> anyhow::Result<pb::StatisticsResponse> {
    let period = period_arg(query.period.as_deref())?;
    let mut c = connect(&query.client)?;
    Ok(c.statistics(pb::StatisticsRequest {
        country: query.peer.clone(),
        period,
    })
    .await?)
}

async fn serve(config_path: PathBuf, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let config = NodeConfig::load(&config_path)?;
    let country = config.country;
    let node = BoundNode::bind(config, data_dir)
        .await
        .with_context(|| format!("starting the node from {}", config_path.display()))?
        .start()
        .await?;
    // Scripts and tests wait for this line rather than for a port.
    outln!(
        "focalpoint {country} serving peer={} operator={}",
        node.peer_address,
        node.operator_address
    );
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => {
                // The configuration is read again for its peers; a bad file or certificate
                // leaves the node running as it was.
                let reloaded = NodeConfig::load(&config_path)
                    .map_err(anyhow::Error::from)
                    .and_then(|config| Ok(node.reload_config(config)?));
                if let Err(e) = reloaded {
                    tracing::error!(error = %format!("{e:#}"), "reload refused; still serving with the previous certificates and peers");
                }
            }
        }
    }
    tracing::info!("shutting down: no new connections, finishing in-flight work");
    node.stop().await?;
    Ok(())
}

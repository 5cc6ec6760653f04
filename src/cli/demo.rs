//! `focalpoint demo`: an IDN and a KHM node in one process, over real mutual TLS on loopback,
//! with the example PKI and temporary data directories, exchanging every kind of message in
//! both directions.

use crate::cli::output::{out, outln};
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;

use crate::cli::client::{self, OperatorClient};
use crate::domain::model::{CountryCode, Digest};
use crate::node::config::{ClientConfig, NodeConfig};
use crate::node::{BoundNode, RunningNode};
use crate::pb;

/// The example PKI, embedded so the demo runs from anywhere.
const FILES: &[(&str, &str)] = &[
    ("idn/ca.pem", include_str!("../../certs-example/idn/ca.pem")),
    (
        "idn/node.pem",
        include_str!("../../certs-example/idn/node.pem"),
    ),
    (
        "idn/node.key",
        include_str!("../../certs-example/idn/node.key"),
    ),
    (
        "idn/operator.pem",
        include_str!("../../certs-example/idn/operator.pem"),
    ),
    (
        "idn/operator.key",
        include_str!("../../certs-example/idn/operator.key"),
    ),
    (
        "idn/auditor.pem",
        include_str!("../../certs-example/idn/auditor.pem"),
    ),
    (
        "idn/auditor.key",
        include_str!("../../certs-example/idn/auditor.key"),
    ),
    (
        "idn/sync.pem",
        include_str!("../../certs-example/idn/sync.pem"),
    ),
    (
        "idn/sync.key",
        include_str!("../../certs-example/idn/sync.key"),
    ),
    (
        "idn/screening.pem",
        include_str!("../../certs-example/idn/screening.pem"),
    ),
    (
        "idn/screening.key",
        include_str!("../../certs-example/idn/screening.key"),
    ),
    (
        "idn/peers/khm-ca.pem",
        include_str!("../../certs-example/idn/peers/khm-ca.pem"),
    ),
    (
        "idn/node.toml",
        include_str!("../../certs-example/idn/node.toml"),
    ),
    ("khm/ca.pem", include_str!("../../certs-example/khm/ca.pem")),
    (
        "khm/node.pem",
        include_str!("../../certs-example/khm/node.pem"),
    ),
    (
        "khm/node.key",
        include_str!("../../certs-example/khm/node.key"),
    ),
    (
        "khm/operator.pem",
        include_str!("../../certs-example/khm/operator.pem"),
    ),
    (
        "khm/operator.key",
        include_str!("../../certs-example/khm/operator.key"),
    ),
    (
        "khm/auditor.pem",
        include_str!("../../certs-example/khm/auditor.pem"),
    ),
    (
        "khm/auditor.key",
        include_str!("../../certs-example/khm/auditor.key"),
    ),
    (
        "khm/sync.pem",
        include_str!("../../certs-example/khm/sync.pem"),
    ),
    (
        "khm/sync.key",
        include_str!("../../certs-example/khm/sync.key"),
    ),
    (
        "khm/screening.pem",
        include_str!("../../certs-example/khm/screening.pem"),
    ),
    (
        "khm/screening.key",
        include_str!("../../certs-example/khm/screening.key"),
    ),
    (
        "khm/peers/idn-ca.pem",
        include_str!("../../certs-example/khm/peers/idn-ca.pem"),
    ),
    (
        "khm/node.toml",
        include_str!("../../certs-example/khm/node.toml"),
    ),
];

/// The example messages, in the order the demo sends them: (from, role, file, text).
const MESSAGES: &[(&str, &str, &str, &str)] = &[
    (
        "idn",
        "operator",
        "examples/idn/alert-trafficking-victim.json",
        include_str!("../../examples/idn/alert-trafficking-victim.json"),
    ),
    (
        "khm",
        "operator",
        "examples/khm/fraud-notice-poipet.json",
        include_str!("../../examples/khm/fraud-notice-poipet.json"),
    ),
    (
        "idn",
        "sync",
        "examples/idn/statistics-2025-jan-apr.json",
        include_str!("../../examples/idn/statistics-2025-jan-apr.json"),
    ),
    (
        "khm",
        "sync",
        "examples/khm/statistics-2025-jan-apr.json",
        include_str!("../../examples/khm/statistics-2025-jan-apr.json"),
    ),
    (
        "khm",
        "operator",
        "examples/khm/response-to-alert.json",
        include_str!("../../examples/khm/response-to-alert.json"),
    ),
    (
        "idn",
        "operator",
        "examples/idn/response-to-fraud-notice.json",
        include_str!("../../examples/idn/response-to-fraud-notice.json"),
    ),
];

/// Writes the example PKI under `dir` and returns each country's node configuration with
/// loopback listeners on free ports and data under `dir`.
pub fn example_configs(dir: &Path) -> anyhow::Result<(NodeConfig, NodeConfig)> {
    for (name, text) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok((on_free_ports(dir, "idn")?, on_free_ports(dir, "khm")?))
}

/// Binds both nodes, points each at the other, and starts them.
pub async fn start_pair(
    idn: NodeConfig,
    khm: NodeConfig,
) -> anyhow::Result<(RunningNode, RunningNode)> {
    let mut nodes = start_nodes(vec![idn, khm]).await?.into_iter();
    match (nodes.next(), nodes.next()) {
        (Some(idn), Some(khm)) => Ok((idn, khm)),
        _ => anyhow::bail!("two nodes were started but fewer came back"),
    }
}

/// Writes a fresh demonstration PKI for `countries` under `dir` (`certs init --countries`)
/// and returns each country's node configuration, in the same order, with loopback listeners
/// on free ports and data under `dir`.
pub fn generated_configs(dir: &Path, countries: &[CountryCode]) -> anyhow::Result<Vec<NodeConfig>> {
    crate::cli::certs::init(dir, countries, 1)?;
    countries
        .iter()
        .map(|c| on_free_ports(dir, &c.as_str().to_ascii_lowercase()))
        .collect()
}

/// The node configuration `dir/COUNTRY/node.toml` with loopback listeners on free ports and
/// its data under `dir/COUNTRY/data`.
fn on_free_ports(dir: &Path, country: &str) -> anyhow::Result<NodeConfig> {
    let path = dir.join(country).join("node.toml");
    let mut config = NodeConfig::load(&path)?;
    let any: SocketAddr = "127.0.0.1:0".parse()?;
    config.peer_listener.address = any;
    config.operator_listener.address = any;
    config.metrics.address = any;
    config.data_dir = Some(dir.join(country).join("data"));
    Ok(config)
}

/// Binds every node, points each at the others' peer listeners, and starts them, in order.
pub async fn start_nodes(configs: Vec<NodeConfig>) -> anyhow::Result<Vec<RunningNode>> {
    let mut bound = Vec::with_capacity(configs.len());
    for config in configs {
        bound.push(BoundNode::bind(config, None).await?);
    }
    let addresses: Vec<(CountryCode, String)> = bound
        .iter()
        .map(|b| (b.country(), format!("https://{}", b.peer_address())))
        .collect();
    let mut running = Vec::with_capacity(bound.len());
    for mut node in bound {
        for (country, address) in &addresses {
            node.set_peer_address(*country, address);
        }
        running.push(node.start().await?);
    }
    Ok(running)
}

/// A client configuration for `role` of the example PKI written under `dir`.
pub fn example_client(dir: &Path, country: &str, role: &str, node: &RunningNode) -> ClientConfig {
    let base = dir.join(country);
    ClientConfig {
        node: format!("https://{}", node.operator_address),
        server_name: format!("{country}.focalpoint.example"),
        ca: base.join("ca.pem"),
        certificate: base.join(format!("{role}.pem")),
        key: base.join(format!("{role}.key")),
    }
}

/// Runs the demo and prints what happened.
pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("focalpoint-demo-")
        .tempdir()?;
    let (idn_config, khm_config) = example_configs(dir.path())?;
    let (idn, khm) = start_pair(idn_config, khm_config).await?;
    outln!(
        "focalpoint demo: two nodes over mutual TLS on loopback (example PKI, never for production)"
    );
    outln!(
        "  IDN  peer {}  operator {}",
        idn.peer_address,
        idn.operator_address
    );
    outln!(
        "  KHM  peer {}  operator {}",
        khm.peer_address,
        khm.operator_address
    );
    outln!("  data in {}\n", dir.path().display());

    for (from, role, file, text) in MESSAGES {
        let node = if *from == "idn" { &idn } else { &khm };
        let mut c = OperatorClient::new(&example_client(dir.path(), from, role, node))?;
        let envelope = crate::domain::validate::parse_envelope(text)
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let response = c.send_or_push(envelope, true).await?;
        anyhow::ensure!(
            response.state == pb::DeliveryState::Delivered as i32,
            "{file} was not delivered: {}",
            response.detail
        );
        out!(
            "{} {role} sent {file}\n  {}",
            from.to_uppercase(),
            client::send_text(&response)
        );
    }

    statistics_sync(dir.path(), &idn, &khm).await?;

    for (name, node) in [("IDN", &idn), ("KHM", &khm)] {
        let country = name.to_lowercase();
        let mut c = OperatorClient::new(&example_client(dir.path(), &country, "operator", node))?;
        let inbox = c.inbox(pb::InboxRequest::default()).await?;
        outln!("\n== {name} inbox ({} messages) ==", inbox.messages.len());
        out!("{}", client::messages_table(&inbox.messages));
    }

    outln!("\n== exchange logs ==");
    for (name, node) in [("IDN", &idn), ("KHM", &khm)] {
        let log = node.exchange().log();
        let (size, head) = log.head()?;
        let checked = log
            .verify()
            .map_err(|e| anyhow::anyhow!("{name} log does not verify: {e}"))?;
        let entries = log.range(1, usize::MAX)?;
        let count = |k: pb::EntryKind| entries.iter().filter(|e| e.kind() == k).count();
        outln!(
            "{name}: {size} entries ({} sent, {} received, {} receipts, {} refusals), chain verified over {checked}, head {}",
            count(pb::EntryKind::MessageSent),
            count(pb::EntryKind::MessageReceived),
            count(pb::EntryKind::ReceiptReceived),
            count(pb::EntryKind::Refusal),
            head.short()
        );
    }
    let matched = matching_digests(&idn, &khm)?;
    outln!(
        "{matched} messages carry the same SHA-256 in both logs; every receipt verified against the sender's peer CA"
    );

    idn.stop().await?;
    khm.stop().await?;
    Ok(())
}

/// The nightly sync, twice: IDN pushes April 2025's figures for April 2025, the second push
/// changes nothing, and KHM shows how the counts IDN attached compare with its own log.
async fn statistics_sync(dir: &Path, idn: &RunningNode, khm: &RunningNode) -> anyhow::Result<()> {
    let file = "examples/idn/figures-2025-04.csv";
    let figures = crate::cli::figures::parse_figures(
        file,
        include_str!("../../examples/idn/figures-2025-04.csv"),
    )?;
    // The figures are April 2025's, and are pushed for April 2025.
    let period = crate::domain::kinds::parse_period("2025-04").map_err(|e| anyhow::anyhow!(e))?;
    let mut sync = OperatorClient::new(&example_client(dir, "idn", "sync", idn))?;
    outln!("\n== statistics sync ==");
    for run in ["first run", "re-run"] {
        let r = sync
            .push_statistics(pb::PushStatisticsRequest {
                period: Some(period.clone()),
                counters: figures.counters.clone(),
                source: "Directorate General of Immigration, Indonesia".into(),
                wait_for_receipt: true,
                ..Default::default()
            })
            .await?;
        out!(
            "IDN sync pushed {file} for {} ({run})\n  {}",
            crate::domain::kinds::period_label(&period),
            client::push_text(&r)
                .replace('\n', "\n  ")
                .trim_end_matches(' ')
        );
    }
    let mut khm_operator = OperatorClient::new(&example_client(dir, "khm", "operator", khm))?;
    let found = khm_operator
        .reconcile(pb::ReconcileRequest {
            peer: "IDN".into(),
            period: Some(period),
            recheck: false,
        })
        .await?;
    for r in &found.reconciliations {
        out!("KHM {}", crate::cli::render::reconciliation_text(r));
    }
    Ok(())
}

/// Counts messages whose digest agrees between sender and receiver; fails on any mismatch.
fn matching_digests(a: &RunningNode, b: &RunningNode) -> anyhow::Result<usize> {
    let mut matched = 0;
    for (from, to) in [(a, b), (b, a)] {
        let sender: CountryCode = from.exchange().country();
        for e in from.exchange().log().range(1, usize::MAX)? {
            if e.kind() != pb::EntryKind::MessageSent {
                continue;
            }
            let id = &e.entry.message_id;
            let seq = to
                .exchange()
                .log()
                .received(sender, id)?
                .with_context(|| format!("{id} is missing from the receiver's log"))?;
            let theirs = to.exchange().log().entry(seq)?.context("entry vanished")?;
            anyhow::ensure!(
                Digest::from_slice(&theirs.entry.content_sha256)
                    == Digest::from_slice(&e.entry.content_sha256),
                "{id}: digests differ between the logs"
            );
            matched += 1;
        }
    }
    Ok(matched)
}

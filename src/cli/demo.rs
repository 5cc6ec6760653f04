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
    start_nodes_ahead(configs, 0).await
}

/// [`start_nodes`], with each log's clock `micros` ahead of the system's (see
/// [`BoundNode::bind_ahead`]).
pub async fn start_nodes_ahead(
    configs: Vec<NodeConfig>,
    micros: i64,
) -> anyhow::Result<Vec<RunningNode>> {
    let mut bound = Vec::with_capacity(configs.len());
    for config in configs {
        bound.push(BoundNode::bind_ahead(config, None, micros).await?);
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

/// Runs the demo for `countries` and prints what happened: IDN and KHM with the example PKI,
/// or, with more countries, a fresh PKI for all of them in which each further country has an
/// agreement with IDN and KHM covering statistics and trafficking-victim alerts only.
pub async fn run(countries: &[CountryCode]) -> anyhow::Result<()> {
    let (idn, khm): (CountryCode, CountryCode) = ("IDN".parse()?, "KHM".parse()?);
    anyhow::ensure!(
        countries.contains(&idn) && countries.contains(&khm),
        "the demo's messages are IDN's and KHM's; name both, and any others"
    );
    let dir = tempfile::Builder::new()
        .prefix("focalpoint-demo-")
        .tempdir()?;
    let others: Vec<CountryCode> = countries
        .iter()
        .copied()
        .filter(|c| *c != idn && *c != khm)
        .collect();
    let nodes = if others.is_empty() {
        let (idn_config, khm_config) = example_configs(dir.path())?;
        let (idn, khm) = start_pair(idn_config, khm_config).await?;
        outln!(
            "focalpoint demo: two nodes over mutual TLS on loopback (example PKI, never for production)"
        );
        vec![idn, khm]
    } else {
        let mut order = vec![idn, khm];
        order.extend(&others);
        let mut configs = generated_configs(dir.path(), &order)?;
        for config in configs.iter_mut().skip(2) {
            for peer in &mut config.peers {
                peer.agreement = limited_agreement();
            }
        }
        outln!(
            "focalpoint demo: {} nodes over mutual TLS on loopback (a fresh demonstration PKI, never for production)",
            order.len()
        );
        start_nodes(configs).await?
    };
    for node in &nodes {
        let country = node.exchange().country();
        outln!(
            "  {country}  peer {}  operator {}",
            node.peer_address,
            node.operator_address
        );
    }
    outln!("  data in {}\n", dir.path().display());
    let (idn, khm) = (&nodes[0], &nodes[1]);

    for (from, role, file, text) in MESSAGES {
        let node = if *from == "idn" { idn } else { khm };
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

    statistics_sync(dir.path(), idn, khm).await?;
    for other in nodes.iter().skip(2) {
        agreed_exchange(dir.path(), idn, other).await?;
    }

    for node in &nodes {
        let name = node.exchange().country();
        let country = name.as_str().to_lowercase();
        let mut c = OperatorClient::new(&example_client(dir.path(), &country, "operator", node))?;
        let inbox = c.inbox(pb::InboxRequest::default()).await?;
        outln!("\n== {name} inbox ({} messages) ==", inbox.messages.len());
        out!("{}", client::messages_table(&inbox.messages));
    }

    outln!("\n== exchange logs ==");
    for node in &nodes {
        let name = node.exchange().country();
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
    let matched = matching_digests(&nodes)?;
    outln!(
        "{matched} messages carry the same SHA-256 in the sender's and the receiver's logs; every receipt verified against the sender's peer CA"
    );

    for node in nodes {
        node.stop().await?;
    }
    Ok(())
}

/// What a further country of the demo agreed with IDN and KHM: it accepts statistics and
/// trafficking-victim alerts, and sends statistics.
fn limited_agreement() -> crate::node::config::AgreementConfig {
    let kinds = |names: &[&str]| {
        names
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect::<std::collections::BTreeSet<_>>()
    };
    crate::node::config::AgreementConfig {
        send: Some(kinds(&["stats"])),
        accept: Some(kinds(&["stats", "alert"])),
        send_alert_categories: None,
        accept_alert_categories: Some(
            ["suspected_trafficking_victim"]
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
        ),
    }
}

/// IDN and a further country within their agreement: an alert of the agreed category is
/// delivered, a fraud notice is refused on receipt, the other country's alert is refused
/// before it is logged, and the other country's statistics go to IDN and KHM.
async fn agreed_exchange(dir: &Path, idn: &RunningNode, other: &RunningNode) -> anyhow::Result<()> {
    let country = other.exchange().country();
    let lower = country.as_str().to_ascii_lowercase();
    outln!(
        "\n== IDN and {country}: {country} accepts {} ==",
        limited_agreement().agreement().accept.describe()
    );
    let mut idn_operator = OperatorClient::new(&example_client(dir, "idn", "operator", idn))?;
    let mut alert = crate::domain::validate::parse_envelope(MESSAGES[0].3)
        .map_err(|e| anyhow::anyhow!("{}: {e}", MESSAGES[0].2))?;
    alert.receiver = country.to_string();
    alert.message_id = format!("IDN-20250430-ALERT-{country}-1");
    let sent = idn_operator.send(alert.clone(), true).await?;
    out!(
        "IDN operator sent a trafficking-victim alert to {country}\n  {}",
        client::send_text(&sent)
    );
    let mut notice = crate::domain::validate::parse_envelope(MESSAGES[1].3)
        .map_err(|e| anyhow::anyhow!("{}: {e}", MESSAGES[1].2))?;
    notice.sender = "IDN".into();
    notice.receiver = country.to_string();
    notice.message_id = format!("IDN-20250501-FRAUD-{country}-1");
    let sent = idn_operator.send(notice, true).await?;
    anyhow::ensure!(
        sent.state == pb::DeliveryState::Failed as i32,
        "{country} was expected to refuse the fraud notice"
    );
    outln!(
        "IDN operator sent a fraud notice to {country}: refused on receipt\n  {}",
        sent.detail
    );
    let mut their_operator = OperatorClient::new(&example_client(dir, &lower, "operator", other))?;
    alert.sender = String::new();
    alert.receiver = "IDN".into();
    alert.message_id = format!("{country}-20250502-ALERT-1");
    match their_operator.send(alert, true).await {
        Err(client::ClientError::Refused(status)) => outln!(
            "{country} operator tried to send IDN an alert: refused before it was logged\n  {}",
            status.message()
        ),
        other => anyhow::bail!("{country}'s alert to IDN was expected to be refused: {other:?}"),
    }
    let mut sync = OperatorClient::new(&example_client(dir, &lower, "sync", other))?;
    let figures = crate::cli::figures::parse_figures(
        "examples/idn/figures-2025-04.csv",
        include_str!("../../examples/idn/figures-2025-04.csv"),
    )?;
    let pushed = sync
        .push_statistics(pb::PushStatisticsRequest {
            peer: String::new(),
            period: Some(
                crate::domain::kinds::parse_period("2025-04").map_err(|e| anyhow::anyhow!(e))?,
            ),
            counters: figures.counters,
            source: format!("immigration service of {country} (demo figures)"),
            wait_for_receipt: true,
        })
        .await?;
    out!(
        "{country} sync pushed its April 2025 figures to every peer whose agreement includes statistics\n  {}",
        client::push_text(&pushed)
            .replace('\n', "\n  ")
            .trim_end_matches(' ')
    );
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

/// Counts messages whose digest agrees between sender and receiver, across every pair of
/// nodes; fails on any mismatch, and on a message missing from its receiver's log unless its
/// delivery failed for good.
fn matching_digests(nodes: &[RunningNode]) -> anyhow::Result<usize> {
    let mut matched = 0;
    for from in nodes {
        let sender: CountryCode = from.exchange().country();
        for e in from.exchange().log().range(1, usize::MAX)? {
            if e.kind() != pb::EntryKind::MessageSent {
                continue;
            }
            let id = &e.entry.message_id;
            let Some(to) = nodes
                .iter()
                .find(|n| n.exchange().country().as_str() == e.entry.peer)
            else {
                continue;
            };
            let Some(seq) = to.exchange().log().received(sender, id)? else {
                anyhow::ensure!(
                    from.exchange().failure_reason(e.entry.sequence)?.is_some(),
                    "{id} is missing from the receiver's log"
                );
                continue;
            };
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

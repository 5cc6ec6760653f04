//! `cargo bench --bench search`: what the search index costs the receive path, and how fast a
//! search answers over a log holding many received alerts, in one run on one machine.
//!
//! 1. The log's receive write (the entry with the envelope, its receipt issued and signed in a
//!    batch, fsync per group, 512 in flight), for `FOCALPOINT_SEARCH_ALERTS` (default 100,000)
//!    alerts that each name their own person and passport: with the search index (the terms
//!    derived from the envelope, hashed and indexed in the same write), and without it (the same
//!    writes, no terms). Three rounds each, alternating; the median of each.
//! 2. A KHM node started on the log with the index, and searched over mTLS by the operator
//!    client: by document number (1,000 searches for passports it holds, 100 for ones it does
//!    not) and by name with a date of birth (200), each answer recorded as a consultation
//!    (durable) before it is given. p50 and p99.
//!
//! Run without `--bench` (as `cargo test` does) it only checks that it builds.

/// The node's own allocator, so that what is measured here is what the node runs.
#[global_allocator]
static ALLOCATOR: focalpoint::node::allocator::Allocator = focalpoint::node::allocator::Allocator;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use focalpoint::crypto::receipt::ReceiptSigner;
use focalpoint::domain::model::{CountryCode, format_instant};
use focalpoint::log::{Durability, ExchangeLog, LogOptions, NewEntry};
use focalpoint::pb;
use prost::Message;

const IN_FLIGHT: usize = 512;
const ROUNDS: usize = 3;

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A family name of its own for alert `n`: syllables from a fixed list, read as digits.
fn family_name(n: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "SU", "WI", "DA", "RA", "NI", "TO", "KA", "LE", "MA", "HA", "YU", "PRA", "SET", "WAN",
        "TRI", "ANG",
    ];
    let mut name = String::new();
    let mut rest = n;
    for _ in 0..5 {
        name.push_str(SYLLABLES[rest % 16]);
        rest /= 16;
    }
    name
}

fn passport(n: usize) -> String {
    format!("B{n:07}")
}

fn birth_date(n: usize) -> String {
    format!("{}-{:02}-{:02}", 1960 + n % 45, 1 + n % 12, 1 + n % 28)
}

/// The example alert, naming a person and a passport of its own.
fn alert(template: &pb::Envelope, n: usize) -> pb::Envelope {
    let mut e = template.clone();
    e.message_id = format!("IDN-20250430-ALERT-{n:07}");
    e.sender = "IDN".into();
    e.created_at = "2025-04-30T08:15:00Z".into();
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut e.body {
        let p = a.person.as_mut().unwrap();
        p.family_name = family_name(n);
        p.given_names = "SARI".into();
        p.date_of_birth = birth_date(n);
        a.documents[0].number = passport(n);
        a.documents[0].mrz.clear();
    }
    e
}

fn signer() -> Arc<ReceiptSigner> {
    let base = repo().join("certs-example/khm");
    let cert = focalpoint::crypto::x509::load_certs(&base.join("node.pem")).unwrap();
    let key = focalpoint::crypto::x509::load_key(&base.join("node.key")).unwrap();
    Arc::new(ReceiptSigner::new(&cert[0], &key).unwrap())
}

/// Writes `count` received alerts as the receive path does, with or without their search
/// terms. Returns messages per second.
async fn receive_writes(dir: &Path, envelopes: &[pb::Envelope], indexed: bool) -> f64 {
    let log = ExchangeLog::open(
        dir,
        LogOptions::from(Durability::Fsync).with_signer(signer()),
    )
    .unwrap();
    let idn: CountryCode = "IDN".parse().unwrap();
    let start = Instant::now();
    for (chunk_index, chunk) in envelopes.chunks(IN_FLIGHT).enumerate() {
        let mut queued = Vec::with_capacity(chunk.len());
        for (i, envelope) in chunk.iter().enumerate() {
            let n = chunk_index * IN_FLIGHT + i + 1;
            let search_terms = if indexed {
                focalpoint::domain::search::distinct_terms(envelope)
            } else {
                Vec::new()
            };
            let bytes = envelope.encode_to_vec();
            let digest = focalpoint::domain::model::Digest::of(&bytes);
            let new = NewEntry {
                kind: pb::EntryKind::MessageReceived,
                peer: Some(idn),
                message_id: envelope.message_id.clone(),
                message_kind: pb::MessageKind::TravellerAlert,
                content: Some(bytes),
                peer_sequence: n as u64,
                created_at: envelope.created_at.clone(),
                search_terms,
                ..Default::default()
            };
            let id = envelope.message_id.clone();
            queued.push(
                log.enqueue(move |t| {
                    let appended = t.append(new)?;
                    let receipt = pb::Receipt {
                        message_id: id,
                        envelope_sha256: digest.0.to_vec(),
                        sender: "IDN".into(),
                        receiver: "KHM".into(),
                        log_sequence: appended.sequence,
                        entry_hash: appended.hash.0.to_vec(),
                        stored_at: format_instant(time::OffsetDateTime::now_utc()),
                    };
                    t.issue_receipt(appended.sequence, receipt.encode_to_vec())
                })
                .unwrap(),
            );
        }
        for q in queued {
            q.await.unwrap();
        }
    }
    envelopes.len() as f64 / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

async fn timed(
    client: &mut focalpoint::cli::client::OperatorClient,
    requests: Vec<pb::SearchRequest>,
    expect_hits: bool,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(requests.len());
    for request in requests {
        let start = Instant::now();
        let r = client.search(request).await.unwrap();
        latencies.push(start.elapsed());
        assert_eq!(!r.hits.is_empty(), expect_hits, "a search answered wrongly");
    }
    latencies.sort();
    latencies
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("search benchmark: run it with `cargo bench --bench search`");
        return;
    }
    let count = std::env::var("FOCALPOINT_SEARCH_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000usize);
    let text =
        std::fs::read_to_string(repo().join("examples/idn/alert-trafficking-victim.json")).unwrap();
    let template = focalpoint::domain::validate::parse_envelope(&text).unwrap();
    let envelopes: Vec<_> = (1..=count).map(|n| alert(&template, n)).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        focalpoint::node::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let (_, mut khm) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
        khm.checkpoint_interval_secs = 0;
        let data = dir.path().join("khm/data");
        let (mut with, mut without) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let scratch = tempfile::tempdir().unwrap();
            without.push(receive_writes(scratch.path(), &envelopes, false).await);
            // The last round's indexed log is the one searched.
            let target = if round + 1 == ROUNDS {
                data.clone()
            } else {
                scratch.path().join("indexed")
            };
            with.push(receive_writes(&target, &envelopes, true).await);
        }
        let (with, without) = (median(with), median(without));
        println!(
            "search benchmark: {count} received alerts, each naming its own person and passport"
        );
        println!(
            "receive write, without the index: {without:.0}/s (median of {ROUNDS})\n\
             receive write, with the index:    {with:.0}/s (median of {ROUNDS}), {:.2} of without",
            with / without
        );

        let mut node = focalpoint::node::BoundNode::bind(khm, None).await.unwrap();
        node.set_peer_address("IDN".parse().unwrap(), "https://127.0.0.1:9");
        let node = node.start().await.unwrap();
        let config = focalpoint::cli::demo::example_client(dir.path(), "khm", "operator", &node);
        let mut client = focalpoint::cli::client::OperatorClient::new(&config).unwrap();
        // Warm the connection.
        client
            .search(pb::SearchRequest {
                document: passport(1),
                ..Default::default()
            })
            .await
            .unwrap();
        let step = (count / 1000).max(1);
        let held: Vec<_> = (0..1000)
            .map(|i| pb::SearchRequest {
                document: passport(1 + (i * step + 7) % count),
                ..Default::default()
            })
            .collect();
        let unknown: Vec<_> = (0..100)
            .map(|i| pb::SearchRequest {
                document: format!("Z{i:07}"),
                ..Default::default()
            })
            .collect();
        let names: Vec<_> = (0..200)
            .map(|i| {
                let n = 1 + (i * (count / 200).max(1) + 3) % count;
                pb::SearchRequest {
                    name: format!("{}, SARI", family_name(n)),
                    born: birth_date(n),
                    ..Default::default()
                }
            })
            .collect();
        let rows = [
            (
                "search by document, held",
                timed(&mut client, held, true).await,
            ),
            (
                "search by document, not held",
                timed(&mut client, unknown, false).await,
            ),
            (
                "search by name and date of birth",
                timed(&mut client, names, true).await,
            ),
        ];
        println!(
            "{:<36} {:>6} {:>9} {:>9}",
            "over mTLS, each recorded", "count", "p50 ms", "p99 ms"
        );
        for (name, latencies) in rows {
            println!(
                "{name:<36} {:>6} {:>9.3} {:>9.3}",
                latencies.len(),
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99)
            );
        }
        node.stop().await.unwrap();
    });
}

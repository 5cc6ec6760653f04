//! `cargo bench --bench exchange`: everything, in one run on one machine, printed as one table.
//! First a node at scale (`common::scale`, `FOCALPOINT_SCALE_ENTRIES`, default 1,000,000;
//! 0 leaves it out), while the process is fresh so that its RSS is the node's and the bench's
//! alone; then the exchange between two nodes beside its ceilings (`FOCALPOINT_BENCH_MESSAGES`,
//! default 6,400), and a node as its own process receiving over mTLS, for its RSS and start-up
//! (`FOCALPOINT_BENCH_PROCESS_MESSAGES`, default 1,000,000; 0 leaves it out). Run without
//! `--bench` (as `cargo test` does) it only checks that it builds.

/// The node's own allocator, so that what is measured here is what the node runs.
#[global_allocator]
static ALLOCATOR: focalpoint::node::allocator::Allocator = focalpoint::node::allocator::Allocator;

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use focalpoint::crypto::x509;
use focalpoint::log::{Durability, ExchangeLog, NewEntry};
use focalpoint::node::tls::{self, Admission, ClientTls};
use focalpoint::pb;
use focalpoint::pb::peer_service_client::PeerServiceClient;
use focalpoint::pb::peer_service_server::{PeerService, PeerServiceServer};
use prost::Message;

const PAYLOAD_ENVELOPE: &str = "examples/idn/alert-trafficking-victim.json";

struct Row {
    name: String,
    count: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    format!("{:.3}", sorted[i].as_secs_f64() * 1e3)
}

fn print(rows: &[Row], values: &[(String, String)]) {
    println!(
        "{:<66} {:>8} {:>16} {:>9} {:>9} {:>9}",
        "measurement", "count", "per second|value", "p50 ms", "p99 ms", "p999 ms"
    );
    for r in rows {
        let mut l = r.latencies.clone();
        l.sort();
        println!(
            "{:<66} {:>8} {:>16.0} {:>9} {:>9} {:>9}",
            r.name,
            r.count,
            r.count as f64 / r.elapsed.as_secs_f64(),
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            percentile(&l, 0.999)
        );
    }
    for (name, value) in values {
        println!(
            "{name:<66} {:>8} {value:>16} {:>9} {:>9} {:>9}",
            "-", "-", "-", "-"
        );
    }
}

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The payload with its own message id; the example file is read and parsed once, so that the
/// bench's own work stays out of what the node is measured at.
fn envelope(id: &str) -> Vec<u8> {
    static TEMPLATE: std::sync::OnceLock<pb::Envelope> = std::sync::OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        let text = std::fs::read_to_string(repo().join(PAYLOAD_ENVELOPE)).unwrap();
        focalpoint::domain::validate::parse_envelope(&text).unwrap()
    });
    let mut e = template.clone();
    e.message_id = id.into();
    e.sender = "IDN".into();
    e.created_at = "2025-04-30T08:15:00Z".into();
    e.encode_to_vec()
}

fn peer_client(address: std::net::SocketAddr) -> PeerServiceClient<tonic::transport::Channel> {
    let base = repo().join("certs-example");
    let tls = ClientTls::load(
        &base.join("khm/ca.pem"),
        &base.join("idn/node.pem"),
        &base.join("idn/node.key"),
        "khm.focalpoint.example",
    )
    .unwrap();
    PeerServiceClient::new(tls.channel(&format!("https://{address}")).unwrap())
}

/// Unary deliveries with `in_flight` concurrent callers.
async fn unary(
    name: &str,
    address: std::net::SocketAddr,
    prefix: &str,
    total: usize,
    in_flight: usize,
) -> Row {
    let client = peer_client(address);
    // Warm the connection.
    let _ = client
        .clone()
        .deliver(pb::DeliverRequest {
            envelope: envelope(&format!("{prefix}-warm")),
            ..Default::default()
        })
        .await;
    let per_task = total / in_flight;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..in_flight {
        let mut client = client.clone();
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let envelope = envelope(&format!("{prefix}-{t}-{i}"));
                let sent = Instant::now();
                client
                    .deliver(pb::DeliverRequest {
                        envelope,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Row {
        name: name.into(),
        count: per_task * in_flight,
        elapsed: start.elapsed(),
        latencies,
    }
}

/// One stream of `total` envelopes.
async fn streaming(name: &str, address: std::net::SocketAddr, prefix: &str, total: usize) -> Row {
    let mut client = peer_client(address);
    let requests: Vec<_> = (0..total)
        .map(|i| pb::DeliverRequest {
            envelope: envelope(&format!("{prefix}-{i}")),
            ..Default::default()
        })
        .collect();
    let start = Instant::now();
    let mut responses = client
        .deliver_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(r) = responses.message().await.unwrap() {
        assert!(matches!(
            r.outcome,
            Some(pb::deliver_response::Outcome::Receipt(_))
        ));
        n += 1;
    }
    Row {
        name: name.into(),
        count: n,
        elapsed: start.elapsed(),
        latencies: Vec::new(),
    }
}

/// The ceiling: the same mTLS, the same payload, answered at once with no storage or signing.
#[derive(Debug, Clone)]
struct Echo(pb::SignedReceipt);

type Responses = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::DeliverResponse, tonic::Status>> + Send>,
>;

#[tonic::async_trait]
impl PeerService for Echo {
    async fn deliver(
        &self,
        _: tonic::Request<pb::DeliverRequest>,
    ) -> Result<tonic::Response<pb::DeliverResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::DeliverResponse {
            outcome: Some(pb::deliver_response::Outcome::Receipt(self.0.clone())),
        }))
    }
    type DeliverStreamStream = Responses;
    async fn deliver_stream(
        &self,
        request: tonic::Request<tonic::Streaming<pb::DeliverRequest>>,
    ) -> Result<tonic::Response<Responses>, tonic::Status> {
        use tokio_stream::StreamExt;
        let receipt = self.0.clone();
        let out = request.into_inner().map(move |_| {
            Ok(pb::DeliverResponse {
                outcome: Some(pb::deliver_response::Outcome::Receipt(receipt.clone())),
            })
        });
        Ok(tonic::Response::new(Box::pin(out)))
    }
    async fn cursor(
        &self,
        _: tonic::Request<pb::CursorRequest>,
    ) -> Result<tonic::Response<pb::CursorResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::CursorResponse::default()))
    }
    async fn cosign(
        &self,
        _: tonic::Request<pb::CosignRequest>,
    ) -> Result<tonic::Response<pb::CosignResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("echo"))
    }
}

async fn echo_server() -> std::net::SocketAddr {
    let base = repo().join("certs-example");
    let chain = x509::load_certs(&base.join("khm/node.pem")).unwrap();
    let key = x509::load_key(&base.join("khm/node.key")).unwrap();
    let idn_ca = base.join("khm/peers/idn-ca.pem");
    let admission = Admission::Peers(
        [(
            "IDN".parse().unwrap(),
            tls::Anchor {
                path: idn_ca.clone(),
                certs: x509::load_certs(&idn_ca).unwrap(),
                revoked: focalpoint::crypto::revocation::Revocations::none(),
            },
        )]
        .into(),
    );
    let config = tls::server_config(&admission, chain, key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(config);
    let metrics = std::sync::Arc::default();
    let incoming = tls::incoming(
        listener,
        rx,
        tls::ListenerOptions::new("peer", &focalpoint::node::limits::Limits::default()),
        metrics,
        None,
    );
    // A receipt of realistic size, as the real path returns: one of a batch of 256.
    let receipt = pb::SignedReceipt {
        receipt: vec![7; 180],
        signature_scheme: "ECDSA_NISTP256_SHA256".into(),
        signature: vec![1; 72],
        signer_certificate: vec![2; 560],
        batch: Some(pb::ReceiptBatchProof {
            index: 5,
            size: 256,
            path: vec![vec![3; 32]; 8],
        }),
    };
    tokio::spawn(async move {
        std::mem::forget(_tx);
        tonic::transport::Server::builder()
            .add_service(PeerServiceServer::new(Echo(receipt)))
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    address
}

/// sled alone: append one envelope-sized value and make it durable, one at a time.
fn sled_alone(total: usize) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let file = std::fs::File::open(dir.path().join("db")).unwrap();
    let value = envelope("sled");
    let mut latencies = Vec::with_capacity(total);
    let start = Instant::now();
    for i in 0..total as u64 {
        let t = Instant::now();
        db.insert(i.to_be_bytes(), value.clone()).unwrap();
        db.flush().unwrap();
        file.sync_data().unwrap();
        latencies.push(t.elapsed());
    }
    Row {
        name: "ceiling: sled insert + flush + fdatasync, one at a time".into(),
        count: total,
        elapsed: start.elapsed(),
        latencies,
    }
}

/// sled alone doing what the receive path writes in the log's layout, 256 messages to a batch
/// and a flush as a stream's envelopes share one: what the layout allows, beside the store's
/// one-record ceiling.
fn sled_receive_pattern(total: usize) -> Row {
    let dir = tempfile::tempdir().unwrap();
    let value = envelope("sled");
    let elapsed = common::sled_receive_writes(dir.path(), total, 256, |_| value.clone());
    Row {
        name: "layout: sled alone, a received message's record + message-id index, 256 to a batch + flush + fdatasync".into(),
        count: total,
        elapsed,
        latencies: Vec::new(),
    }
}

/// The store's own ceiling: sled given one value per message (`record` bytes: the entry, the
/// envelope and the issued receipt together), `group` messages to one atomic batch, each batch
/// followed by a flush and fdatasync. Returns how long `count` messages took.
fn sled_one_record_writes(dir: &Path, count: usize, group: usize, record: &[u8]) -> Duration {
    let (db, tree, data) = common::open_sled(dir);
    let start = Instant::now();
    let mut n = 0u64;
    while (n as usize) < count {
        let mut batch = sled::Batch::default();
        for _ in 0..group.min(count - n as usize) {
            n += 1;
            let mut k = vec![b'm'];
            k.extend_from_slice(&n.to_be_bytes());
            batch.insert(k, record);
        }
        tree.apply_batch(batch).unwrap();
        db.flush().unwrap();
        data.sync_data().unwrap();
    }
    start.elapsed()
}

/// The disk's own ceiling: a plain append-only file given `record` bytes per message, `group`
/// messages to one write, each write followed by fdatasync.
fn append_file_writes(dir: &Path, count: usize, group: usize, record: &[u8]) -> Duration {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("append.log"))
        .unwrap();
    let mut buffer = Vec::with_capacity(group * (record.len() + 4));
    let start = Instant::now();
    let mut n = 0;
    while n < count {
        buffer.clear();
        for _ in 0..group.min(count - n) {
            n += 1;
            buffer.extend_from_slice(&(record.len() as u32).to_be_bytes());
            buffer.extend_from_slice(record);
        }
        file.write_all(&buffer).unwrap();
        file.sync_data().unwrap();
    }
    start.elapsed()
}

/// What the node stores for one received message, near enough: its entry, its envelope and
/// its issued receipt, as one record holds them.
fn record_bytes() -> Vec<u8> {
    let mut record = vec![0x42_u8; common::ENTRY_BYTES];
    record.extend_from_slice(&envelope("record"));
    record.extend_from_slice(&[0x43_u8; common::ISSUED_BYTES]);
    record
}

/// The store's ceilings for the streaming row, with the node's message size and group size:
/// sled given one record per message, a group to a batch and a flush; and a plain file given
/// the same bytes, a group to a write and an fdatasync.
fn store_ceilings(total: usize, values: &mut Vec<(String, String)>) -> (Row, Row) {
    let record = record_bytes();
    let dir = tempfile::tempdir().unwrap();
    let sled = sled_one_record_writes(dir.path(), total, 256, &record);
    // What sled itself puts on disk for a record: the footprint's ceiling.
    let disk = common::scale::disk_bytes(dir.path()) as f64;
    let envelope_bytes = envelope("record").len() as f64;
    values.push((
        format!(
            "ceiling: sled's disk bytes per record byte / per envelope byte, one {}-byte record per message ({} records)",
            record.len(),
            total
        ),
        format!(
            "{:.2} / {:.2}",
            disk / (total * record.len()) as f64,
            disk / (total as f64 * envelope_bytes)
        ),
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = append_file_writes(dir.path(), total, 256, &record);
    let row = |name: String, elapsed| Row {
        name,
        count: total,
        elapsed,
        latencies: Vec::new(),
    };
    (
        row(
            format!(
                "ceiling: sled, one {}-byte record per message, 256 to a batch + flush + fdatasync",
                record.len()
            ),
            sled,
        ),
        row(
            "ceiling: append-only file, the same records, 256 to a write + fdatasync".into(),
            file,
        ),
    )
}

/// `verify` over a log of `total` entries, beside raw SHA-256 over the same bytes.
fn verify(total: usize) -> (Row, Row) {
    let dir = tempfile::tempdir().unwrap();
    let log = ExchangeLog::open(dir.path(), Durability::Flush).unwrap();
    let value = envelope("verify");
    for chunk in 0..total / 1000 {
        let value = value.clone();
        log.transact_blocking(move |t| {
            for i in 0..1000 {
                t.append(NewEntry {
                    kind: pb::EntryKind::MessageReceived,
                    peer: Some("IDN".parse().unwrap()),
                    message_id: format!("V-{chunk}-{i}"),
                    content: Some(value.clone()),
                    ..Default::default()
                })?;
            }
            Ok(())
        })
        .unwrap();
    }
    let start = Instant::now();
    let checked = log.verify().unwrap();
    let verify_elapsed = start.elapsed();
    assert_eq!(checked as usize, total / 1000 * 1000);
    // The same bytes, hashed raw: every entry and every content.
    let entries: Vec<Vec<u8>> = log
        .range(1, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| e.entry.encode_to_vec())
        .collect();
    let start = Instant::now();
    for e in &entries {
        std::hint::black_box(focalpoint::domain::model::Digest::of(e));
        std::hint::black_box(focalpoint::domain::model::Digest::of(&value));
    }
    let raw_elapsed = start.elapsed();
    (
        Row {
            name: format!("audit: log.verify over {checked} entries (chain + content)"),
            count: checked as usize,
            elapsed: verify_elapsed,
            latencies: Vec::new(),
        },
        Row {
            name: "ceiling: raw SHA-256 over the same bytes".into(),
            count: checked as usize,
            elapsed: raw_elapsed,
            latencies: Vec::new(),
        },
    )
}

/// The node as its own process: a child receiving `total` envelopes over mTLS in streams of
/// the peer limit's size; its RSS after, and its start-up on the log it wrote (median of 3).
async fn child_node(total: usize, values: &mut Vec<(String, String)>) -> Row {
    let dir = tempfile::tempdir().unwrap();
    focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let config = common::khm_process_config(dir.path(), "127.0.0.1:0", &[]);
    let data = dir.path().join("khm-data");
    let (child, address, _) = common::spawn_node(&config, &data);
    let per_stream = focalpoint::node::limits::Limits::default().max_stream_messages as usize;
    let start = Instant::now();
    let mut received = 0;
    while received < total {
        let count = per_stream.min(total - received);
        let mut client = peer_client(address);
        let requests = (received..received + count).map(|i| pb::DeliverRequest {
            envelope: envelope(&format!("C-{i}")),
            ..Default::default()
        });
        let mut responses = client
            .deliver_stream(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        while let Some(r) = responses.message().await.unwrap() {
            assert!(matches!(
                r.outcome,
                Some(pb::deliver_response::Outcome::Receipt(_))
            ));
            received += 1;
        }
    }
    let elapsed = start.elapsed();
    let rss = status_kib_of(child.id(), "VmRSS:");
    // Two seconds on, idle: what the node holds once the allocator has returned the pages
    // freed by the last writes (within half a second, src/node/allocator.rs).
    std::thread::sleep(Duration::from_secs(2));
    let (settled, peak) = (
        status_kib_of(child.id(), "VmRSS:"),
        status_kib_of(child.id(), "VmHWM:"),
    );
    common::stop_node(child);
    values.push((
        format!("node process: RSS after receiving {received} messages / 2 s later, idle / peak"),
        format!(
            "{} MiB / {} MiB / {} MiB",
            rss / 1024,
            settled / 1024,
            peak / 1024
        ),
    ));
    let (mut loaded_peak, mut loaded_after) = (0, Vec::new());
    let mut startups: Vec<Duration> = (0..3)
        .map(|_| {
            let (child, _, took) = common::spawn_node(&config, &data);
            // The node is ready before its search index is loaded, on a thread of its own:
            // the peak once it has.
            let pid = child.id();
            let loading = || {
                std::fs::read_dir(format!("/proc/{pid}/task"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|task| {
                        std::fs::read_to_string(task.path().join("comm"))
                            .is_ok_and(|name| name.starts_with("search-index"))
                    })
            };
            let waited = Instant::now();
            while loading() {
                assert!(
                    waited.elapsed() < Duration::from_secs(60),
                    "the search index is still loading after a minute"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            loaded_after.push(took + waited.elapsed());
            loaded_peak = loaded_peak.max(status_kib_of(pid, "VmHWM:"));
            common::stop_node(child);
            took
        })
        .collect();
    startups.sort();
    loaded_after.sort();
    values.push((
        "node process: search index loaded after spawn (median of 3) / peak RSS until then (most of 3)".into(),
        format!(
            "{:.1} ms / {} MiB",
            loaded_after[1].as_secs_f64() * 1e3,
            loaded_peak / 1024
        ),
    ));
    values.push((
        format!(
            "node process: start-up on a log of {received} messages, spawn to ready (median of 3)"
        ),
        format!("{:.1} ms", startups[1].as_secs_f64() * 1e3),
    ));
    Row {
        name: format!(
            "exchange: node as its own process, streams of {per_stream} (fsync, signed receipts)"
        ),
        count: received,
        elapsed,
        latencies: Vec::new(),
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("exchange benchmark: run it with `cargo bench --bench exchange`");
        return;
    }
    let scale = common::env_count("FOCALPOINT_BENCH_MESSAGES", 6400);
    let (entries, catchup) = common::scale_counts();
    let mut values = Vec::new();
    if entries > 0 {
        common::scale::run(entries, catchup, |name, value| {
            eprintln!("{name}: {value}");
            values.push((format!("scale: {}", name.trim_start()), value));
        });
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rows = runtime.block_on(async {
        focalpoint::node::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let (idn, mut khm) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
        // The bench measures the exchange path, not the peer limits: raise them out of the way.
        khm.limits = focalpoint::node::limits::Limits {
            max_stream_messages: u64::MAX,
            max_connections_per_peer: 1024,
            peer_rate_per_sec: u32::MAX,
            peer_burst: u32::MAX,
            ..focalpoint::node::limits::Limits::default()
        };
        let (idn, khm) = focalpoint::cli::demo::start_pair(idn, khm).await.unwrap();
        let echo = echo_server().await;
        let mut rows = Vec::new();
        for in_flight in [1, 16, 64] {
            let n = if in_flight == 1 { scale / 8 } else { scale };
            rows.push(
                unary(
                    &format!("exchange: unary, {in_flight} in flight (fsync, signed receipt)"),
                    khm.peer_address,
                    &format!("U{in_flight}"),
                    n,
                    in_flight,
                )
                .await,
            );
            rows.push(
                unary(
                    &format!("ceiling: mTLS echo, unary, {in_flight} in flight"),
                    echo,
                    &format!("E{in_flight}"),
                    n,
                    in_flight,
                )
                .await,
            );
        }
        rows.push(
            streaming(
                "exchange: one stream (fsync, signed receipts)",
                khm.peer_address,
                "S",
                scale * 2,
            )
            .await,
        );
        rows.push(streaming("ceiling: mTLS echo, one stream", echo, "ES", scale * 2).await);
        idn.stop().await.unwrap();
        khm.stop().await.unwrap();
        let child = common::env_count("FOCALPOINT_BENCH_PROCESS_MESSAGES", 1_000_000);
        if child > 0 {
            rows.push(child_node(child, &mut values).await);
        }
        rows
    });
    let mut rows = rows;
    rows.push(sled_alone(scale / 8));
    rows.push(sled_receive_pattern(scale * 2));
    let (sled, file) = store_ceilings(scale * 4, &mut values);
    rows.push(sled);
    rows.push(file);
    let (v, raw) = verify(scale * 16);
    rows.push(v);
    rows.push(raw);
    print(&rows, &values);
}

/// A field of `/proc/PID/status`, in KiB.
fn status_kib_of(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

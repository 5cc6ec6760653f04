//! A node at scale, in one run on one machine:
//!
//! 1. a receiving node (KHM) takes `entries` envelopes through its real receive path
//!    (validation, signed receipt, durable append with content and issued receipt), without the
//!    network, beside sled alone doing the same writes;
//! 2. footprint: bytes on disk per message and per payload byte, and the process's RSS;
//! 3. start-up: binding and starting the node on that log (median of 5);
//! 4. `audit verify` over the whole log, beside sled reading every stored value and raw SHA-256
//!    over as many bytes;
//! 5. catch-up: `catchup` messages queued at IDN while KHM is away, delivered when KHM comes up
//!    as its own process, from the first receipt to the last;
//! 6. the receive path again, into a log created with zstd compression, and its footprint.

use std::path::Path;
use std::time::{Duration, Instant};

use focalpoint::domain::model::{CountryCode, Digest};
use focalpoint::node::config::NodeConfig;
use focalpoint::node::{BoundNode, RunningNode};
use prost::Message;

const PAYLOAD_ENVELOPE: &str = "examples/idn/alert-trafficking-victim.json";
const IN_FLIGHT: usize = 512;

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example() -> focalpoint::pb::Envelope {
    let text = std::fs::read_to_string(repo().join(PAYLOAD_ENVELOPE)).unwrap();
    focalpoint::domain::validate::parse_envelope(&text).unwrap()
}

fn envelope_bytes(template: &focalpoint::pb::Envelope, n: usize) -> Vec<u8> {
    let mut e = template.clone();
    e.message_id = format!("IDN-20250430-ALERT-{n:07}");
    e.sender = "IDN".into();
    e.created_at = "2025-04-30T08:15:00Z".into();
    e.encode_to_vec()
}

/// Bytes the files under `dir` occupy on disk.
pub(crate) fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                disk_bytes(&e.path())
            } else {
                m.blocks() * 512
            }
        })
        .sum()
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// sled alone doing the receive path's writes for `count` messages. Returns messages per second
/// and bytes on disk per message.
fn sled_alone(dir: &Path, template: &focalpoint::pb::Envelope, count: usize) -> (f64, u64) {
    let took = super::sled_receive_writes(dir, count, IN_FLIGHT, |n| envelope_bytes(template, n));
    (
        count as f64 / took.as_secs_f64(),
        disk_bytes(dir) / count as u64,
    )
}

/// The least a received message's record can hold beside its envelope: the link to the entry
/// before it (34 bytes), its time, kind, peer and the sender's sequence (about 20), the
/// receipt's own fields and its place in its batch (40), and the record's framing (6).
const LEAST_BESIDE_ENVELOPE: usize = 100;

/// sled alone given the least a received message needs, for `count` messages: a record of its
/// envelope and [`LEAST_BESIDE_ENVELOPE`] bytes, and its message-id index, in the node's
/// groups. Returns bytes on disk per envelope byte: the footprint's floor through sled for a
/// record that holds no more than that beside its envelope.
fn sled_least(dir: &Path, template: &focalpoint::pb::Envelope, count: usize) -> f64 {
    // Every envelope is as long as the first: the ids differ only in their digits.
    let envelopes = (envelope_bytes(template, 1).len() * count) as u64;
    super::sled_writes_beside(
        dir,
        count,
        IN_FLIGHT,
        |n| envelope_bytes(template, n),
        LEAST_BESIDE_ENVELOPE - super::ISSUED_BYTES,
        super::ISSUED_BYTES,
    );
    disk_bytes(dir) as f64 / envelopes as f64
}

/// `count` envelopes through the node's receive path, `IN_FLIGHT` at a time. Returns envelopes
/// per second and the bytes of envelope received.
async fn receive(
    exchange: &focalpoint::exchange::core::Exchange,
    template: &focalpoint::pb::Envelope,
    count: usize,
) -> (f64, u64) {
    let idn: CountryCode = "IDN".parse().unwrap();
    let mut payload_bytes = 0u64;
    let start = Instant::now();
    let mut n = 0;
    while n < count {
        let mut queued = Vec::with_capacity(IN_FLIGHT);
        for _ in 0..IN_FLIGHT.min(count - n) {
            n += 1;
            let bytes = envelope_bytes(template, n);
            payload_bytes += bytes.len() as u64;
            queued.push(exchange.receive_queued(idn, bytes, n as u64).unwrap());
        }
        for q in queued {
            q.await.unwrap();
        }
    }
    (count as f64 / start.elapsed().as_secs_f64(), payload_bytes)
}

/// Reads every key and value of a stopped node's log straight from sled, in key order. Returns
/// the bytes of the values and how long the read took.
fn sled_scan(dir: &Path) -> (u64, Duration) {
    let db = sled::Config::new().path(dir).open().unwrap();
    let tree = db.open_tree("exchange-log").unwrap();
    let start = Instant::now();
    let mut stored = 0u64;
    for kv in tree.iter() {
        let (_, v) = kv.unwrap();
        stored += std::hint::black_box(v).len() as u64;
    }
    (stored, start.elapsed())
}

/// The rows of a log's footprint: disk and payload per message, and their ratio.
fn footprint(
    row: &mut impl FnMut(&str, String),
    label: &str,
    disk: u64,
    payload_bytes: u64,
    entries: usize,
) {
    row(
        &format!("{label}disk per message"),
        format!("{} B", disk / entries as u64),
    );
    row(
        &format!("{label}payload per message (envelope)"),
        format!("{} B", payload_bytes / entries as u64),
    );
    row(
        &format!("{label}disk bytes per payload byte"),
        format!("{:.2}", disk as f64 / payload_bytes as f64),
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn start_alone(config: NodeConfig, peer_address: &str) -> RunningNode {
    let peer: CountryCode = config.peers[0].country;
    let mut bound = BoundNode::bind(config, None).await.unwrap();
    bound.set_peer_address(peer, peer_address);
    bound.start().await.unwrap()
}

fn closed_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("https://{}", l.local_addr().unwrap())
}

/// Runs every measurement of a node at scale with `entries` messages and `catchup` queued ones,
/// handing each result to `row` as a name and a value.
pub(crate) fn run(entries: usize, catchup: usize, mut row: impl FnMut(&str, String)) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        focalpoint::node::tls::install_crypto_provider();
        let base = std::env::var_os("FOCALPOINT_BENCH_DIR")
            .map_or_else(|| repo().join("target"), Into::into);
        let dir = tempfile::Builder::new()
            .prefix("focalpoint-scale-")
            .tempdir_in(base)
            .unwrap();
        let (idn_config, mut khm_config) =
            focalpoint::cli::demo::example_configs(dir.path()).unwrap();
        khm_config.limits = focalpoint::node::limits::Limits {
            max_stream_messages: u64::MAX,
            peer_rate_per_sec: u32::MAX,
            peer_burst: u32::MAX,
            ..focalpoint::node::limits::Limits::default()
        };
        khm_config.checkpoint_interval_secs = 0;
        let idn: CountryCode = "IDN".parse().unwrap();

        // 1. The receive path at scale.
        let rss_before = status_kib("VmRSS:");
        let khm = start_alone(khm_config.clone(), &closed_address()).await;
        let exchange = khm.exchange().clone();
        let template = example();
        let (rate, payload_bytes) = receive(&exchange, &template, entries).await;
        row(
            &format!("receive path: {entries} envelopes, fsync, signed receipts"),
            format!("{rate:.0}/s"),
        );
        let rss = status_kib("VmRSS:");
        let hwm = status_kib("VmHWM:");
        row(
            "RSS after, whole process (node and bench)",
            format!("{} MiB", rss / 1024),
        );
        row(
            "RSS growth over the run / peak",
            format!(
                "{} / {} MiB",
                rss.saturating_sub(rss_before) / 1024,
                hwm / 1024
            ),
        );
        khm.stop().await.unwrap();
        drop(exchange);

        // 1b. The ceiling under it: sled alone, given the same writes per message in the same
        // groups, with no decoding, validation, hashing or signing.
        let ceiling_dir = dir.path().join("sled-alone");
        let (rate, disk_per_message) = sled_alone(&ceiling_dir, &template, entries.min(200_000));
        row(
            "ceiling: sled alone, the same writes per message, flushed",
            format!("{rate:.0}/s"),
        );
        row(
            "  sled alone: disk per message",
            format!("{disk_per_message} B"),
        );
        std::fs::remove_dir_all(&ceiling_dir).unwrap();
        let floor = sled_least(&ceiling_dir, &template, entries);
        row(
            &format!("floor: sled alone, an envelope + {LEAST_BESIDE_ENVELOPE} bytes and its message-id index: disk bytes per payload byte"),
            format!("{floor:.2}"),
        );
        std::fs::remove_dir_all(&ceiling_dir).unwrap();

        // 2. Footprint.
        let data = dir.path().join("khm/data");
        footprint(&mut row, "", disk_bytes(&data), payload_bytes, entries);

        // 3. Start-up on the full log.
        let mut startups = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            let node = start_alone(khm_config.clone(), &closed_address()).await;
            startups.push(start.elapsed());
            node.stop().await.unwrap();
        }
        row(
            &format!("start-up with {entries} messages (median of 5)"),
            format!("{:.1} ms", median(startups).as_secs_f64() * 1e3),
        );

        // 4. Verify beside sled's own scan of the same values and raw SHA-256 over as many
        // bytes: verify and the scan take turns, three times each, and each row is a median.
        let trust = khm_config.audit_trust().unwrap();
        let (mut verifies, mut reads) = (Vec::new(), Vec::new());
        let mut stored = 0;
        for _ in 0..3 {
            let log = focalpoint::log::ExchangeLog::open(&data, focalpoint::log::Durability::Flush)
                .unwrap();
            let start = Instant::now();
            let report = focalpoint::exchange::audit::verify(&log, &trust).unwrap();
            verifies.push(start.elapsed());
            assert_eq!(report.entries as usize, entries);
            drop(log);
            let (bytes, read) = sled_scan(&data);
            stored = bytes;
            reads.push(read);
        }
        verifies.sort();
        reads.sort();
        let (verify, read) = (verifies[1], reads[1]);
        row(
            &format!("audit verify, {entries} entries, receipts checked (median of 3)"),
            format!("{:.0} entries/s", entries as f64 / verify.as_secs_f64()),
        );
        row(
            "  what it read: every value the log stores",
            format!("{} MB", stored / 1_000_000),
        );
        row(
            "  verify's rate over those bytes",
            format!("{:.0} MB/s", stored as f64 / verify.as_secs_f64() / 1e6),
        );
        row(
            "ceiling: sled reading every stored value in key order (median of 3)",
            format!("{:.0} MB/s", stored as f64 / read.as_secs_f64() / 1e6),
        );
        row(
            "verify / sled's scan",
            format!("{:.3}", read.as_secs_f64() / verify.as_secs_f64()),
        );
        let chunk = vec![0x5a_u8; 1 << 20];
        let start = Instant::now();
        let mut left = stored;
        while left > 0 {
            let take = left.min(chunk.len() as u64) as usize;
            std::hint::black_box(Digest::of(&chunk[..take]));
            left -= take as u64;
        }
        let raw = start.elapsed();
        row(
            "ceiling: raw SHA-256 over as many bytes",
            format!("{:.0} MB/s", stored as f64 / raw.as_secs_f64() / 1e6),
        );
        row(
            "verify / raw SHA-256",
            format!("{:.3}", raw.as_secs_f64() / verify.as_secs_f64()),
        );
        // What reading alone allows: verify reads every value through sled, so it cannot come
        // nearer to SHA-256 than sled's scan of those values does.
        row(
            "sled's scan / raw SHA-256",
            format!("{:.3}", raw.as_secs_f64() / read.as_secs_f64()),
        );

        // 5. Catch-up: IDN queues messages while KHM is away; KHM then starts as its own
        // process, as it runs in its own country, so that neither node's store waits on the
        // other's (sled serialises the atomic batches of every tree in one process).
        let khm_port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut idn_config = idn_config;
        idn_config.checkpoint_interval_secs = 0;
        let idn_node = start_alone(idn_config, &format!("https://{khm_port}")).await;
        let operator = focalpoint::domain::model::Identity {
            country: idn,
            role: focalpoint::domain::model::Role::Operator,
            name: "bench".into(),
        };
        let khm_country: CountryCode = "KHM".parse().unwrap();
        let mut i = 0;
        while i < catchup {
            let mut tasks = Vec::with_capacity(IN_FLIGHT);
            for _ in 0..IN_FLIGHT.min(catchup - i) {
                let mut e = example();
                e.message_id = format!("IDN-20250501-ALERT-{i:07}");
                i += 1;
                let (exchange, operator) = (idn_node.exchange().clone(), operator.clone());
                tasks.push(tokio::spawn(async move {
                    exchange.submit(&operator, e).await.unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
        let log = idn_node.exchange().log().clone();
        assert_eq!(log.pending(khm_country).unwrap().len(), catchup);
        // Each receipt KHM returns is one entry in IDN's log: the head counts them in one read,
        // where the pending set would be read whole each time.
        let queued_head = log.head().unwrap().0;
        let receipted = || (log.head().unwrap().0 - queued_head) as usize;
        let idn_address = format!("https://{}", idn_node.peer_address);
        let khm_toml = super::khm_process_config(
            dir.path(),
            &khm_port.to_string(),
            &[
                ("https://127.0.0.1:7443", &idn_address),
                ("checkpoint_interval_secs = 3600", "checkpoint_interval_secs = 0"),
            ],
        );
        let (khm, _, _) = super::spawn_node(&khm_toml, &dir.path().join("khm/catchup"));
        let mut first = None;
        let last = loop {
            let done = receipted();
            if done > 0 && first.is_none() {
                first = Some((Instant::now(), done));
            }
            if done >= catchup {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert!(log.pending(khm_country).unwrap().is_empty());
        let (first, done_at_first) = first.unwrap();
        let rate = (catchup - done_at_first) as f64 / (last - first).as_secs_f64();
        row(
            &format!(
                "catch-up: {catchup} queued messages delivered and receipted (KHM as its own process)"
            ),
            format!("{rate:.0}/s"),
        );
        idn_node.stop().await.unwrap();
        super::stop_node(khm);

        // 6. The same receive path into a log created with `compression = "zstd"`.
        khm_config.compression = focalpoint::log::Compression::Zstd;
        khm_config.data_dir = Some(dir.path().join("khm/zstd"));
        let khm = start_alone(khm_config.clone(), &closed_address()).await;
        let (rate, payload_bytes) = receive(khm.exchange(), &template, entries).await;
        khm.stop().await.unwrap();
        row(
            &format!("compressed log: receive path, {entries} envelopes"),
            format!("{rate:.0}/s"),
        );
        let disk = disk_bytes(&dir.path().join("khm/zstd"));
        footprint(&mut row, "compressed log: ", disk, payload_bytes, entries);
    });
}

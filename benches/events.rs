//! `cargo bench --bench events`: how soon a watcher hears of a received alert, and what a
//! watcher costs the receive path, in one run on one machine.
//!
//! 1. Latency: 2,000 alerts delivered one at a time to a KHM node over mTLS, with a watcher
//!    following KHM's events over mTLS. For each alert, from just before its delivery is sent
//!    (its durable write comes after) to its event reaching the watcher: an upper bound of the
//!    time from the durable write to the event. p50 and p99.
//! 2. Cost: the receive path for 12,800 alerts, without a watcher and with one following every
//!    event over mTLS (timed until the watcher has the last event), 21 rounds of each, a round's
//!    pair in turn order (without first in even rounds, with first in odd ones, so that what
//!    one leaves to sled weighs on either as often). The watcher runs on a thread and runtime
//!    of its own, as a program beside the node would. Printed: the medians and their ratio,
//!    the median of each round's ratio (the two cores are shared, and a round's pair sees the
//!    same machine), and the CPU time per message of each group of threads without and with a
//!    watcher (from each thread's `schedstat`), which shows where a watcher's work lands.
//!    Twice: in process (validation, durable append, signed receipt; 512 in flight, no
//!    network), and as a peer drives it, one stream over the peer plane's mTLS with the
//!    peer's client on the same two cores.
//!
//! Run without `--bench` (as `cargo test` does) it only checks that it builds.

/// The node's own allocator, so that what is measured here is what the node runs.
#[global_allocator]
static ALLOCATOR: focalpoint::node::allocator::Allocator = focalpoint::node::allocator::Allocator;

use std::time::{Duration, Instant};

use focalpoint::domain::model::CountryCode;
use focalpoint::pb;
use prost::Message;
use tokio_stream::StreamExt;

const ROUNDS: usize = 21;
const IN_FLIGHT: usize = 512;

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn envelope(template: &pb::Envelope, id: &str) -> Vec<u8> {
    let mut e = template.clone();
    e.message_id = id.into();
    e.sender = "IDN".into();
    e.created_at = "2025-04-30T08:15:00Z".into();
    e.encode_to_vec()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

async fn receive(
    exchange: &focalpoint::exchange::Exchange,
    template: &pb::Envelope,
    prefix: &str,
    count: usize,
) -> f64 {
    let idn: CountryCode = "IDN".parse().unwrap();
    let start = Instant::now();
    let mut n = 0;
    while n < count {
        let mut queued = Vec::with_capacity(IN_FLIGHT);
        for _ in 0..IN_FLIGHT.min(count - n) {
            n += 1;
            let bytes = envelope(template, &format!("IDN-{prefix}-{n:07}"));
            queued.push(exchange.receive_queued(idn, bytes, 0).unwrap());
        }
        for q in queued {
            q.await.unwrap();
        }
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// `count` alerts delivered as one stream over the peer plane's mTLS, each answered with its
/// receipt: the receive path as a peer node drives it.
async fn deliver(
    peer: &mut pb::peer_service_client::PeerServiceClient<tonic::transport::Channel>,
    template: &pb::Envelope,
    prefix: &str,
    count: usize,
) -> f64 {
    let start = Instant::now();
    let template = template.clone();
    let prefix = prefix.to_owned();
    let requests = (0..count).map(move |n| pb::DeliverRequest {
        envelope: envelope(&template, &format!("IDN-{prefix}-{n:07}")),
        ..Default::default()
    });
    let mut responses = peer
        .deliver_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut receipted = 0;
    while let Some(r) = responses.next().await {
        assert!(matches!(
            r.unwrap().outcome,
            Some(pb::deliver_response::Outcome::Receipt(_))
        ));
        receipted += 1;
    }
    assert_eq!(receipted, count);
    count as f64 / start.elapsed().as_secs_f64()
}

/// A watcher following the node's events after `from` until it has seen `count`, as a program
/// of its own: its client runs on a thread and runtime of its own, scheduled by the system
/// beside the node rather than among its tasks. Returns once it is watching; joining the
/// handle gives how many events it saw and the CPU time its thread took, in nanoseconds.
fn follower(
    config: &focalpoint::node::config::ClientConfig,
    from: u64,
    count: usize,
) -> std::thread::JoinHandle<(usize, u64)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let config = config.clone();
    let handle = std::thread::Builder::new()
        .name("watcher".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let seen = runtime.block_on(async move {
                let mut client = focalpoint::cli::client::OperatorClient::new(&config).unwrap();
                let mut stream = client
                    .watch(pb::WatchRequest {
                        from_sequence: from,
                        kinds: vec![],
                    })
                    .await
                    .unwrap();
                ready_tx.send(()).unwrap();
                let mut seen = 0usize;
                while seen < count {
                    match stream.next().await {
                        Some(Ok(_)) => seen += 1,
                        _ => break,
                    }
                }
                seen
            });
            (seen, cpu_ns("/proc/thread-self/schedstat"))
        })
        .unwrap();
    ready_rx.recv().unwrap();
    handle
}

/// The CPU time a thread has taken, in nanoseconds, from its `schedstat`.
fn cpu_ns(schedstat: impl AsRef<std::path::Path>) -> u64 {
    std::fs::read_to_string(schedstat)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The CPU time this process's threads have taken so far, in nanoseconds, summed by what
/// they do: the log's writer, the tokio workers (the node's planes and the peer's client),
/// the node's background thread (where a watch reads its events), sled's I/O threads, the
/// main thread (which drives the in-process rounds and runs their receive path's decoding
/// and validation), and the rest.
fn cpu_by_thread() -> std::collections::BTreeMap<&'static str, u64> {
    let mut by = std::collections::BTreeMap::new();
    let main = std::process::id().to_string();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let group = match comm.trim() {
            _ if task.file_name().to_str() == Some(main.as_str()) => "main thread",
            "exchange-log-wr" => "log writer",
            "tokio-rt-worker" => "tokio workers",
            "background" => "background",
            "watcher" => continue,
            c if c.starts_with("sled-io") => "sled I/O",
            _ => "other",
        };
        *by.entry(group).or_default() += cpu_ns(task.path().join("schedstat"));
    }
    by
}

/// CPU time by thread group over a round: `after` less `before`.
fn spent(
    before: &std::collections::BTreeMap<&'static str, u64>,
    after: &std::collections::BTreeMap<&'static str, u64>,
) -> std::collections::BTreeMap<&'static str, u64> {
    after
        .iter()
        .map(|(k, v)| (*k, v.saturating_sub(before.get(k).copied().unwrap_or(0))))
        .collect()
}

/// The rounds of one way of driving the receive path: each round's rate without and with a
/// watcher, and the CPU time each took by thread group.
#[derive(Default)]
struct Rounds {
    alone: Vec<f64>,
    watched: Vec<f64>,
    cpu_alone: std::collections::BTreeMap<&'static str, u64>,
    cpu_watched: std::collections::BTreeMap<&'static str, u64>,
}

/// One measurement of a round: started before the receive path is driven (with a watcher
/// following, if `watched`), ended once it is done and the watcher has every event.
struct Measured {
    count: usize,
    before: std::collections::BTreeMap<&'static str, u64>,
    watching: Option<std::thread::JoinHandle<(usize, u64)>>,
    start: Instant,
}

impl Measured {
    fn start(
        config: &focalpoint::node::config::ClientConfig,
        exchange: &focalpoint::exchange::Exchange,
        watched: bool,
        count: usize,
    ) -> Self {
        let before = cpu_by_thread();
        let watching = watched.then(|| follower(config, exchange.log().durable_head(), count));
        Self {
            count,
            before,
            watching,
            start: Instant::now(),
        }
    }

    /// The rate, and the CPU time each group of threads took (the watcher's among them).
    fn end(self) -> (f64, std::collections::BTreeMap<&'static str, u64>) {
        let mut cpu_watcher = 0;
        if let Some(watching) = self.watching {
            let (seen, ns) = watching.join().unwrap();
            assert_eq!(seen, self.count, "the watcher saw every event");
            cpu_watcher = ns;
        }
        let rate = self.count as f64 / self.start.elapsed().as_secs_f64();
        let mut cpu = spent(&self.before, &cpu_by_thread());
        cpu.insert("watcher", cpu_watcher);
        (rate, cpu)
    }
}

impl Rounds {
    fn add(
        &mut self,
        watched: bool,
        (rate, cpu): (f64, std::collections::BTreeMap<&'static str, u64>),
    ) {
        let (rates, total) = if watched {
            (&mut self.watched, &mut self.cpu_watched)
        } else {
            (&mut self.alone, &mut self.cpu_alone)
        };
        rates.push(rate);
        for (k, v) in cpu {
            *total.entry(k).or_default() += v;
        }
    }

    /// Rates without and with a watcher, round by round: the medians of each, and the median
    /// and range of each round's ratio; then the CPU per message of each thread group.
    fn report(&self, name: &str, messages: usize) -> String {
        let median = |rates: &[f64]| {
            let mut sorted = rates.to_vec();
            sorted.sort_by(f64::total_cmp);
            sorted[sorted.len() / 2]
        };
        let mut paired: Vec<f64> = self
            .watched
            .iter()
            .zip(&self.alone)
            .map(|(w, a)| w / a)
            .collect();
        paired.sort_by(f64::total_cmp);
        let (alone, watched) = (median(&self.alone), median(&self.watched));
        format!(
            "{name}: without a watcher {alone:.0}/s, with one {watched:.0}/s (medians of {}), {:.2} of without; each round's ratio: median {:.2}, from {:.2} to {:.2}\n  {}",
            paired.len(),
            watched / alone,
            paired[paired.len() / 2],
            paired[0],
            paired[paired.len() - 1],
            self.cpu_line(messages)
        )
    }

    /// CPU per message by thread group, without and with a watcher, in microseconds.
    fn cpu_line(&self, messages: usize) -> String {
        let per = |ns: u64| ns as f64 / 1000.0 / messages as f64;
        let total = |m: &std::collections::BTreeMap<&'static str, u64>| m.values().sum::<u64>();
        let mut parts = vec![format!(
            "all threads {:.1} -> {:.1}",
            per(total(&self.cpu_alone)),
            per(total(&self.cpu_watched))
        )];
        for (k, with) in &self.cpu_watched {
            let without = self.cpu_alone.get(k).copied().unwrap_or(0);
            parts.push(format!("{k} {:.2} -> {:.2}", per(without), per(*with)));
        }
        format!(
            "CPU per message, µs, without -> with a watcher: {}",
            parts.join(", ")
        )
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("events benchmark: run it with `cargo bench --bench events`");
        return;
    }
    let text =
        std::fs::read_to_string(repo().join("examples/idn/alert-trafficking-victim.json")).unwrap();
    let template = focalpoint::domain::validate::parse_envelope(&text).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        focalpoint::node::tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let (idn, mut khm) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
        khm.limits = focalpoint::node::limits::Limits {
            max_stream_messages: u64::MAX,
            peer_rate_per_sec: u32::MAX,
            peer_burst: u32::MAX,
            ..focalpoint::node::limits::Limits::default()
        };
        khm.checkpoint_interval_secs = 0;
        let (idn, khm) = focalpoint::cli::demo::start_pair(idn, khm).await.unwrap();
        let config = focalpoint::cli::demo::example_client(dir.path(), "khm", "operator", &khm);
        let mut watcher = focalpoint::cli::client::OperatorClient::new(&config).unwrap();

        // 1. Latency.
        let from = khm.exchange().log().durable_head();
        let mut events = watcher
            .watch(pb::WatchRequest {
                from_sequence: from,
                kinds: vec![],
            })
            .await
            .unwrap();
        let (cert, key) = (
            std::fs::read_to_string(dir.path().join("idn/node.pem")).unwrap(),
            std::fs::read_to_string(dir.path().join("idn/node.key")).unwrap(),
        );
        let tls = focalpoint::node::tls::ClientTls {
            ca_pem: std::fs::read(dir.path().join("khm/ca.pem")).unwrap(),
            cert_pem: cert.into_bytes(),
            key_pem: key.into_bytes(),
            server_name: "khm.focalpoint.example".into(),
        };
        let mut peer = pb::peer_service_client::PeerServiceClient::new(
            tls.channel(&format!("https://{}", khm.peer_address)).unwrap(),
        );
        let mut latencies = Vec::with_capacity(2000);
        for n in 0..2000 {
            let id = format!("IDN-LAT-{n:05}");
            let bytes = envelope(&template, &id);
            let start = Instant::now();
            peer.deliver(pb::DeliverRequest {
                envelope: bytes,
                ..Default::default()
            })
            .await
            .unwrap();
            loop {
                let event = events.next().await.unwrap().unwrap();
                if event.message_id == id {
                    latencies.push(start.elapsed());
                    break;
                }
            }
        }
        latencies.sort();
        drop(events);

        // 2. Cost to the receive path, in process and over the peer plane, each round without
        // a watcher and then with one, timed until the watcher has every event too: its work
        // is not left outside the time.
        let exchange = khm.exchange().clone();
        let (mut local, mut remote) = (Rounds::default(), Rounds::default());
        const COUNT: usize = 12_800;
        for round in 0..ROUNDS {
            // Each round's pair in turn order, so that what one leaves behind (sled's work
            // after a write) weighs on either as often.
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for watched in order {
                let measured = Measured::start(&config, &exchange, watched, COUNT);
                receive(&exchange, &template, &format!("R{round}{watched}"), COUNT).await;
                local.add(watched, measured.end());
            }
            for watched in order {
                let measured = Measured::start(&config, &exchange, watched, COUNT);
                deliver(&mut peer, &template, &format!("P{round}{watched}"), COUNT).await;
                remote.add(watched, measured.end());
            }
        }
        println!("events benchmark");
        println!(
            "latency, delivery sent to event at the watcher, 2000 alerts one at a time over mTLS: p50 {:.3} ms, p99 {:.3} ms",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
        let messages = COUNT * ROUNDS;
        println!(
            "{}",
            local.report("receive path in process, 12800 alerts, 512 in flight", messages)
        );
        println!(
            "{}",
            remote.report(
                "receive path over the peer plane (mTLS), 12800 alerts in one stream",
                messages
            )
        );
        idn.stop().await.unwrap();
        khm.stop().await.unwrap();
    });
}

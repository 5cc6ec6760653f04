//! A soak: two nodes as real processes exchange mixed traffic both ways for a while, and
//! either is SIGKILLed at random moments and started again. At the end, every acknowledged
//! message must be in the other node's log exactly once, and both logs must verify.
//!
//! `cargo bench --bench soak` (FOCALPOINT_SOAK_MINUTES, default 10; FOCALPOINT_SOAK_SEED).
//! Data lives under `target/soak` unless FOCALPOINT_BENCH_DIR says otherwise. Exits 1 if
//! anything acknowledged was lost or arrived twice.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use focalpoint::cli::client::OperatorClient;
use focalpoint::log::{Durability, ExchangeLog};
use focalpoint::node::config::ClientConfig;
use focalpoint::pb;

/// A small deterministic generator (xorshift64*), so a run can be repeated by its seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// One country's node: its configuration, data, ports and the running process.
struct Node {
    country: &'static str,
    config: PathBuf,
    data: PathBuf,
    operator: u16,
    log: PathBuf,
    child: Option<Child>,
    kills: u32,
}

impl Node {
    fn start(&mut self) {
        for attempt in 0.. {
            let mut child = Command::new(env!("CARGO_BIN_EXE_focalpoint"))
                .args(["serve", "--config"])
                .arg(&self.config)
                .arg("--data-dir")
                .arg(&self.data)
                .env("FOCALPOINT_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.log)
                        .unwrap(),
                )
                .spawn()
                .unwrap();
            let mut line = String::new();
            let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
            if line.contains("serving") {
                self.child = Some(child);
                return;
            }
            // The port may still be held a moment after a kill.
            let _ = child.wait();
            assert!(
                attempt < 50,
                "{} did not start: see {}",
                self.country,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.kills += 1;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    fn client(&self, dir: &Path) -> OperatorClient {
        let base = dir.join(self.country.to_ascii_lowercase());
        OperatorClient::new(&ClientConfig {
            node: format!("https://127.0.0.1:{}", self.operator),
            server_name: format!("{}.focalpoint.example", self.country.to_ascii_lowercase()),
            ca: base.join("ca.pem"),
            certificate: base.join("operator.pem"),
            key: base.join("operator.key"),
        })
        .unwrap()
    }
}

fn example(path: &str) -> pb::Envelope {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    focalpoint::domain::validate::parse_envelope(&std::fs::read_to_string(root.join(path)).unwrap())
        .unwrap()
}

/// The `n`th message of the mix from `from` (IDN or KHM): alerts, fraud notices, and case
/// responses naming the alert this node sent before (a node sends nothing that refers to a
/// message it never exchanged).
fn message(from: &str, n: u64) -> pb::Envelope {
    let to = if from == "IDN" { "KHM" } else { "IDN" };
    let mut e = match n % 3 {
        0 => example("idn/alert-trafficking-victim.json"),
        1 => example("khm/fraud-notice-poipet.json"),
        _ => {
            let mut r = example("khm/response-to-alert.json");
            r.reference = format!("{from}-SOAK-{}", n - 2);
            r
        }
    };
    e.message_id = format!("{from}-SOAK-{n}");
    e.receiver = to.into();
    e.sender = String::new();
    e.created_at = String::new();
    e
}

#[derive(Default)]
struct Tally {
    attempted: u64,
    acknowledged: Vec<String>,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("soak: run it with `cargo bench --bench soak` (FOCALPOINT_SOAK_MINUTES)");
        return;
    }
    let minutes: u64 = std::env::var("FOCALPOINT_SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("FOCALPOINT_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let base = std::env::var_os("FOCALPOINT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = base.join("soak");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    focalpoint::cli::demo::example_configs(&dir).unwrap();
    let ports: BTreeMap<&str, (u16, u16)> = [
        ("IDN", (free_port(), free_port())),
        ("KHM", (free_port(), free_port())),
    ]
    .into();
    let mut nodes: Vec<Node> = ["IDN", "KHM"]
        .into_iter()
        .map(|country| {
            let other = if country == "IDN" { "KHM" } else { "IDN" };
            let lower = country.to_ascii_lowercase();
            let config = dir.join(&lower).join("node.toml");
            let (peer, operator) = ports[country];
            let (their_peer, _) = ports[other];
            let text = std::fs::read_to_string(&config).unwrap();
            let mut out = String::new();
            for line in text.lines() {
                let line = if line.starts_with("address = \"127.0.0.1:") {
                    // The listeners in file order: metrics, peer, operator.
                    match out.matches("address = \"127.0.0.1:").count() {
                        0 => "address = \"127.0.0.1:0\"".to_owned(),
                        1 => format!("address = \"127.0.0.1:{peer}\""),
                        _ => format!("address = \"127.0.0.1:{operator}\""),
                    }
                } else if line.starts_with("address = \"https://") {
                    format!("address = \"https://127.0.0.1:{their_peer}\"")
                } else {
                    line.to_owned()
                };
                out.push_str(&line);
                out.push('\n');
            }
            std::fs::write(&config, out).unwrap();
            Node {
                country,
                config,
                data: dir.join(format!("{lower}-data")),
                operator,
                log: dir.join(format!("{lower}.log")),
                child: None,
                kills: 0,
            }
        })
        .collect();
    for node in &mut nodes {
        node.start();
    }
    println!(
        "soak: {minutes} min, seed {seed}, IDN and KHM as processes under {}",
        dir.display()
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Channels are made inside the runtime.
    let _context = runtime.enter();
    let tallies: Vec<Arc<Mutex<Tally>>> = (0..2).map(|_| Arc::default()).collect();
    let deadline = Instant::now() + Duration::from_secs(minutes * 60);
    let senders: Vec<_> = nodes
        .iter()
        .zip(&tallies)
        .map(|(node, tally)| {
            let (mut client, tally, from) = (node.client(&dir), tally.clone(), node.country);
            runtime.spawn(async move {
                let mut n = 0;
                while Instant::now() < deadline {
                    let e = message(from, n);
                    tally.lock().unwrap().attempted += 1;
                    match client.send(e, false).await {
                        Ok(r) => {
                            tally.lock().unwrap().acknowledged.push(r.message_id);
                            n += 1;
                        }
                        // Retried with the same id: a send that was logged before the
                        // node died is answered with its first outcome.
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        })
        .collect();

    let mut random = Random(seed);
    while Instant::now() < deadline {
        let pause = Duration::from_millis(2_000 + random.below(8_000));
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        if Instant::now() >= deadline {
            break;
        }
        let victim = random.below(2) as usize;
        nodes[victim].kill();
        std::thread::sleep(Duration::from_millis(random.below(1_500)));
        nodes[victim].start();
    }
    for sender in senders {
        runtime.block_on(sender).unwrap();
    }

    // Let delivery finish: both nodes up until neither holds anything for the other.
    let drain = Instant::now() + Duration::from_secs(300);
    loop {
        std::thread::sleep(Duration::from_secs(5));
        for node in &mut nodes {
            node.stop();
        }
        let pending: usize = nodes
            .iter()
            .map(|node| {
                let other = if node.country == "IDN" { "KHM" } else { "IDN" };
                ExchangeLog::open(&node.data, Durability::Flush)
                    .unwrap()
                    .pending(other.parse().unwrap())
                    .unwrap()
                    .len()
            })
            .sum();
        if pending == 0 || Instant::now() > drain {
            break;
        }
        for node in &mut nodes {
            node.start();
        }
    }

    let mut lost = 0;
    let mut duplicated = 0;
    let mut acknowledged = 0;
    let mut attempted = 0;
    for (i, node) in nodes.iter().enumerate() {
        let receiver = &nodes[1 - i];
        let tally = tallies[i].lock().unwrap();
        attempted += tally.attempted;
        acknowledged += tally.acknowledged.len();
        let own = ExchangeLog::open(&node.data, Durability::Flush).unwrap();
        let entries = own
            .verify()
            .unwrap_or_else(|e| panic!("{}: {e}", node.country));
        drop(own);
        let log = ExchangeLog::open(&receiver.data, Durability::Flush).unwrap();
        let sender: focalpoint::domain::model::CountryCode = node.country.parse().unwrap();
        for id in &tally.acknowledged {
            if log.received(sender, id).unwrap().is_none() {
                lost += 1;
                eprintln!("lost: {id}");
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for seq in log.inbox().unwrap() {
            let entry = log.entry(seq).unwrap().unwrap().entry;
            if entry.peer == node.country && !seen.insert(entry.message_id.clone()) {
                duplicated += 1;
                eprintln!("twice: {}", entry.message_id);
            }
        }
        println!(
            "{} -> {}: {} acknowledged of {} attempts; {} entries in {}'s log verify",
            node.country,
            receiver.country,
            tally.acknowledged.len(),
            tally.attempted,
            entries,
            node.country
        );
    }
    let kills: Vec<String> = nodes
        .iter()
        .map(|n| format!("{} {}", n.country, n.kills))
        .collect();
    println!(
        "soak: {attempted} sent, {acknowledged} acknowledged, {lost} lost, {duplicated} duplicated, kills: {}",
        kills.join(", ")
    );
    if lost > 0 || duplicated > 0 {
        std::process::exit(1);
    }
}

//! What both benchmarks share: the store's own ceiling for the receive path, the node at
//! scale, and a node as its own process.

pub(crate) mod scale;

use std::path::Path;
use std::time::{Duration, Instant};

/// sled alone, given what the exchange log writes for received messages (a record holding the
/// entry, the envelope and the issued receipt, and the message-id index; once a write, the
/// peer's cursor, the head, the last issued receipt and the receipt batch), `group` messages to
/// one atomic batch and a flush, each flush followed by fdatasync: the receive path without
/// decoding, validation, hashing, signing or the network, in the log's layout. `content(n)` is
/// the n-th envelope. Returns how long `count` messages took.
pub(crate) fn sled_receive_writes(
    dir: &Path,
    count: usize,
    group: usize,
    content: impl Fn(usize) -> Vec<u8>,
) -> Duration {
    sled_writes_beside(dir, count, group, content, ENTRY_BYTES, ISSUED_BYTES)
}

/// What a received message's record holds beside its envelope, near enough: its entry...
pub(crate) const ENTRY_BYTES: usize = 170;
/// ...and the receipt issued for it, kept without what the entry gives (the receiver, the
/// time, and its place in its batch).
pub(crate) const ISSUED_BYTES: usize = 40;

/// [`sled_receive_writes`] with an entry of `entry` bytes and a receipt of `issued` bytes in
/// each record.
pub(crate) fn sled_writes_beside(
    dir: &Path,
    count: usize,
    group: usize,
    content: impl Fn(usize) -> Vec<u8>,
    entry: usize,
    issued: usize,
) -> Duration {
    let (db, tree, data) = open_sled(dir);
    let key = |prefix: u8, n: u64| {
        let mut k = vec![prefix];
        k.extend_from_slice(&n.to_be_bytes());
        k
    };
    let entry = vec![0x42_u8; entry];
    let receipt = vec![0x43_u8; issued];
    let start = Instant::now();
    let mut n = 0u64;
    while (n as usize) < count {
        let mut batch = sled::Batch::default();
        for _ in 0..group.min(count - n as usize) {
            n += 1;
            let mut message_key = b"iIDN".to_vec();
            message_key.extend_from_slice(format!("IDN-20250430-ALERT-{n:07}").as_bytes());
            batch.insert(message_key, n.to_be_bytes().to_vec());
            let mut record = entry.clone();
            record.extend_from_slice(&content(n as usize));
            record.extend_from_slice(&receipt);
            batch.insert(key(b'e', n), record);
        }
        // Once a write: the peer's cursor, the head, the last issued receipt, the receipt batch.
        batch.insert(b"sIDN".to_vec(), n.to_be_bytes().to_vec());
        batch.insert(b"h".to_vec(), vec![0x44_u8; 40]);
        batch.insert(b"l".to_vec(), n.to_be_bytes().to_vec());
        batch.insert(key(b'b', n), vec![0x45_u8; 100 + 32 * group]);
        tree.apply_batch(batch).unwrap();
        db.flush().unwrap();
        data.sync_data().unwrap();
    }
    start.elapsed()
}

/// sled opened in `dir` as the log opens it (its page cache, its tree), with its data file for
/// fdatasync.
pub(crate) fn open_sled(dir: &Path) -> (sled::Db, sled::Tree, std::fs::File) {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(focalpoint::log::DEFAULT_CACHE_MIB * 1024 * 1024)
        .open()
        .unwrap();
    let tree = db.open_tree("exchange-log").unwrap();
    let data = std::fs::File::open(dir.join("db")).unwrap();
    (db, tree, data)
}

/// A count from the environment (`_` allowed as a separator), or `default`.
pub(crate) fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// `FOCALPOINT_SCALE_ENTRIES` (default 1,000,000) and `FOCALPOINT_SCALE_CATCHUP` (default
/// 100,000).
pub(crate) fn scale_counts() -> (usize, usize) {
    (
        env_count("FOCALPOINT_SCALE_ENTRIES", 1_000_000),
        env_count("FOCALPOINT_SCALE_CATCHUP", 100_000),
    )
}

/// A KHM node started as its own process on `data`: the child, its peer address, and how long
/// it took from spawn to its readiness line.
pub(crate) fn spawn_node(
    config: &Path,
    data: &Path,
) -> (std::process::Child, std::net::SocketAddr, Duration) {
    use std::io::BufRead as _;
    let start = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(["serve", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("FOCALPOINT_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let took = start.elapsed();
    let peer = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("peer="))
        .unwrap_or_else(|| panic!("no peer address in {line:?}"))
        .parse()
        .unwrap();
    (child, peer, took)
}

/// Stops a node started by [`spawn_node`] as its service manager would, and waits for it.
pub(crate) fn stop_node(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
}

/// KHM's example node configuration under `dir` (written by `example_configs`) for a node run
/// as its own process: its peer listener on `peer_listener`, its other listeners on free
/// ports, each of `changes` made, and the peer rate limit out of the way (the rows measure the
/// node, not that limit). Panics if the example no longer holds what is changed, rather than
/// leave a child listening where nobody connects.
pub(crate) fn khm_process_config(
    dir: &Path,
    peer_listener: &str,
    changes: &[(&str, &str)],
) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(dir.join("khm/node.toml")).unwrap();
    let listeners = [
        ("127.0.0.1:7543", peer_listener),
        ("127.0.0.1:7544", "127.0.0.1:0"),
        ("127.0.0.1:7545", "127.0.0.1:0"),
    ];
    for (from, to) in listeners.iter().chain(changes) {
        assert!(
            text.contains(from),
            "KHM's example configuration has no {from:?}"
        );
        text = text.replace(from, to);
    }
    text += "\n[limits]\npeer_rate_per_sec = 4294967295\npeer_burst = 4294967295\n";
    let path = dir.join("khm/process.toml");
    std::fs::write(&path, text).unwrap();
    path
}

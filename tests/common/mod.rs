//! Shared set-up for the integration tests: two real nodes on 127.0.0.1:0 with the example PKI.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use focalpoint::cli::certs::Authority;
use focalpoint::cli::client::OperatorClient;
use focalpoint::domain::model::{Identity, Role};
use focalpoint::node::server::RunningNode;
use focalpoint::node::tls::ClientTls;
use focalpoint::pb;
use focalpoint::pb::peer_service_client::PeerServiceClient;
use time::{Duration, OffsetDateTime};

pub struct Pair {
    pub dir: tempfile::TempDir,
    pub idn: RunningNode,
    pub khm: RunningNode,
}

pub async fn start_pair() -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let (idn, khm) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let (idn, khm) = focalpoint::cli::demo::start_pair(idn, khm).await.unwrap();
    Pair { dir, idn, khm }
}

impl Pair {
    pub fn node(&self, country: &str) -> &RunningNode {
        if country == "idn" {
            &self.idn
        } else {
            &self.khm
        }
    }

    pub fn client(&self, country: &str, role: &str) -> OperatorClient {
        let config = focalpoint::cli::demo::example_client(
            self.dir.path(),
            country,
            role,
            self.node(country),
        );
        OperatorClient::new(&config).unwrap()
    }

    pub async fn stop(self) {
        self.idn.stop().await.unwrap();
        self.khm.stop().await.unwrap();
    }
}

/// A node's metrics page, as Prometheus scrapes it.
pub async fn scrape(address: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn example(path: &str) -> pb::Envelope {
    let text = std::fs::read_to_string(repo().join("examples").join(path)).unwrap();
    focalpoint::domain::validate::parse_envelope(&text).unwrap()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The CA of `country` in the example PKI.
pub fn example_authority(country: &str) -> Authority {
    let base = repo().join("certs-example").join(country);
    Authority::load(&read(&base.join("ca.pem")), &read(&base.join("ca.key"))).unwrap()
}

pub fn identity(uri: &str) -> Identity {
    uri.parse().unwrap()
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A certificate for `identity` from `authority`, valid from `from` to `until` days from now.
pub fn issue(
    authority: &Authority,
    identity: &Identity,
    from: i64,
    until: i64,
) -> (String, String) {
    let dns = if identity.role == Role::Node {
        vec![format!(
            "{}.focalpoint.example",
            identity.country.as_str().to_ascii_lowercase()
        )]
    } else {
        vec![]
    };
    let issued = authority
        .issue(
            identity,
            &dns,
            now() + Duration::days(from),
            now() + Duration::days(until),
        )
        .unwrap();
    (issued.cert_pem, issued.key_pem)
}

/// A peer-plane client of `node` presenting `cert`/`key`, trusting the node's CA.
pub fn peer_client(
    node: &RunningNode,
    node_country: &str,
    cert_pem: String,
    key_pem: String,
) -> PeerServiceClient<tonic::transport::Channel> {
    let tls = ClientTls {
        ca_pem: read(
            &repo()
                .join("certs-example")
                .join(node_country)
                .join("ca.pem"),
        )
        .into_bytes(),
        cert_pem: cert_pem.into_bytes(),
        key_pem: key_pem.into_bytes(),
        server_name: format!("{node_country}.focalpoint.example"),
    };
    PeerServiceClient::new(
        tls.channel(&format!("https://{}", node.peer_address))
            .unwrap(),
    )
}

/// The example certificate and key of `role` in `country`.
pub fn example_cert(country: &str, role: &str) -> (String, String) {
    let base = repo().join("certs-example").join(country);
    (
        read(&base.join(format!("{role}.pem"))),
        read(&base.join(format!("{role}.key"))),
    )
}

/// An envelope from IDN to KHM, canonical bytes.
pub fn idn_alert_bytes(id: &str, summary: &str) -> Vec<u8> {
    use prost::Message;
    let mut e = example("idn/alert-trafficking-victim.json");
    e.message_id = id.into();
    e.sender = "IDN".into();
    e.created_at = "2025-04-30T08:15:00Z".into();
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut e.body {
        a.summary = summary.into();
    }
    e.encode_to_vec()
}

/// Starts `focalpoint serve` and waits for its readiness line; returns the child and the
/// addresses it printed.
pub fn serve(config: &Path, data: &Path) -> (Child, String, String) {
    serve_logging(config, data, "warn", Stdio::inherit())
}

/// [`serve`] with a log filter and a place for the node's log lines.
pub fn serve_logging(
    config: &Path,
    data: &Path,
    filter: &str,
    stderr: Stdio,
) -> (Child, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(["serve", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("FOCALPOINT_LOG", filter)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    ready(child)
}

/// Waits for a started `focalpoint serve` to print its readiness line; returns the child and
/// the peer and operator addresses the line names.
pub fn ready(mut child: Child) -> (Child, String, String) {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .to_owned()
    };
    (child, field("peer="), field("operator="))
}

/// Writes a copy of the example IDN node configuration that listens on ephemeral ports and
/// delivers to `khm_peer`; returns its path.
pub fn idn_child_config(dir: &Path, khm_peer: std::net::SocketAddr) -> PathBuf {
    let path = dir.join("idn/node.toml");
    let text = read(&path)
        .replace("127.0.0.1:7443", "127.0.0.1:0")
        .replace("127.0.0.1:7444", "127.0.0.1:0")
        .replace("127.0.0.1:7445", "127.0.0.1:0")
        .replace("https://127.0.0.1:7543", &format!("https://{khm_peer}"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A client configuration for `role` at IDN's operator listener `operator`.
pub fn idn_client(
    dir: &Path,
    role: &str,
    operator: &str,
) -> focalpoint::node::config::ClientConfig {
    focalpoint::node::config::ClientConfig {
        node: format!("https://{operator}"),
        server_name: "idn.focalpoint.example".into(),
        ca: dir.join("idn/ca.pem"),
        certificate: dir.join(format!("idn/{role}.pem")),
        key: dir.join(format!("idn/{role}.key")),
    }
}

/// Copies a directory tree (a data directory, for backups and tampering).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The log's sled database opened directly, as someone with the disk would. No background
/// flusher thread, so the directory is released as soon as the handle is dropped. A log just
/// dropped may still hold the directory for a moment (sled's flusher thread ends on its own
/// time), so the lock is tried again for a second, as the log itself does.
pub fn raw_sled(dir: &Path) -> sled::Db {
    let mut attempts = 0;
    loop {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Err(sled::Error::Io(e))
                if attempts < 50 && e.to_string().contains("could not acquire lock") =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            opened => return opened.unwrap(),
        }
    }
}

/// Removes the log's head marker, as whoever rewrites the store on purpose would: the chain
/// and the cosigned checkpoints must find the change without it.
pub fn remove_head_marker(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("head"));
}

fn record_key(sequence: u64) -> Vec<u8> {
    let mut k = vec![b'e'];
    k.extend_from_slice(&sequence.to_be_bytes());
    k
}

/// The stored record of entry `sequence` (`focalpoint.v1.StoredRecord`: the entry, its
/// content and any receipt issued for it), read from the raw store.
pub fn record(tree: &sled::Tree, sequence: u64) -> pb::StoredRecord {
    use prost::Message;
    let bytes = tree.get(record_key(sequence)).unwrap().unwrap();
    pb::StoredRecord::decode(bytes.as_ref()).unwrap()
}

/// Rewrites the stored record of entry `sequence` as `change` leaves it, as someone with the
/// disk could.
pub fn change_record(tree: &sled::Tree, sequence: u64, change: impl FnOnce(&mut pb::StoredRecord)) {
    use prost::Message;
    let mut stored = record(tree, sequence);
    change(&mut stored);
    tree.insert(record_key(sequence), stored.encode_to_vec())
        .unwrap();
}

/// Rewrites the entry (`LogEntry`) in the stored record of entry `sequence`.
pub fn change_entry(tree: &sled::Tree, sequence: u64, change: impl FnOnce(&mut pb::LogEntry)) {
    use prost::Message;
    change_record(tree, sequence, |stored| {
        let mut entry = pb::LogEntry::decode(stored.entry.as_slice()).unwrap();
        change(&mut entry);
        stored.entry = entry.encode_to_vec();
    });
}

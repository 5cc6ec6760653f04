//! Every configuration and example message in the repository parses.

mod common;

use std::path::{Path, PathBuf};

use common::repo;
use focalpoint::node::config::{ClientConfig, NodeConfig};

fn files(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "data") {
                continue;
            }
            files(&path, extension, out);
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
}

#[test]
fn every_example_config_parses() {
    let mut found = Vec::new();
    for dir in ["certs-example", "deploy"] {
        let dir = repo().join(dir);
        if dir.exists() {
            files(&dir, "toml", &mut found);
        }
    }
    let (mut nodes, mut clients) = (0, 0);
    for path in &found {
        if path.file_name().is_some_and(|n| n == "node.toml") {
            let config = NodeConfig::load(path).unwrap_or_else(|e| panic!("{e}"));
            assert!(config.node.certificate.exists(), "{}", path.display());
            nodes += 1;
        } else {
            let config = ClientConfig::load(path).unwrap_or_else(|e| panic!("{e}"));
            assert!(config.certificate.exists(), "{}", path.display());
            clients += 1;
        }
    }
    assert!(nodes >= 2, "found {nodes} node configurations");
    assert!(clients >= 6, "found {clients} client configurations");
}

#[test]
fn every_example_message_is_valid() {
    let mut found = Vec::new();
    files(&repo().join("examples"), "json", &mut found);
    assert!(found.len() >= 6, "found {} examples", found.len());
    found.retain(|p| !is_figures(p));
    for path in found {
        let mut envelope = focalpoint::cli::client::read_envelope(&path).unwrap();
        // The node fills these in on send.
        envelope.sender = if envelope.receiver == "KHM" {
            "IDN"
        } else {
            "KHM"
        }
        .into();
        envelope.created_at = "2025-04-30T00:00:00Z".into();
        focalpoint::domain::validate::validate(envelope)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

fn is_figures(path: &std::path::Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("figures-"))
}

#[test]
fn every_example_figures_file_makes_a_valid_report() {
    let mut found = Vec::new();
    files(&repo().join("examples"), "json", &mut found);
    files(&repo().join("examples"), "csv", &mut found);
    found.retain(|p| is_figures(p));
    assert!(found.len() >= 2, "found {} figures files", found.len());
    for path in found {
        let figures =
            focalpoint::cli::figures::read_figures(&path).unwrap_or_else(|e| panic!("{e}"));
        let envelope = focalpoint::pb::Envelope {
            message_id: "IDN-STATS-EXAMPLE".into(),
            sender: "IDN".into(),
            receiver: "KHM".into(),
            created_at: "2025-05-01T00:00:00Z".into(),
            handling: Some(focalpoint::pb::Handling {
                distribution: focalpoint::pb::Distribution::ImmigrationService as i32,
                onward_sharing: focalpoint::pb::OnwardSharing::Permitted as i32,
                conditions: String::new(),
                urgency: focalpoint::pb::Urgency::Routine as i32,
            }),
            body: Some(focalpoint::pb::envelope::Body::StatisticsReport(
                focalpoint::pb::StatisticsReport {
                    period: Some(focalpoint::domain::kinds::parse_period("2025-04").unwrap()),
                    revision: 1,
                    counters: figures.counters,
                    source: figures.source,
                    exchanged: Vec::new(),
                },
            )),
            ..Default::default()
        };
        focalpoint::domain::validate::validate(envelope)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// No Docker engine runs here: check that the compose file parses and that every path it names
/// exists, and that the configurations it mounts load.
#[test]
fn the_compose_file_parses_and_every_path_it_names_exists() {
    let dir = repo().join("deploy/compose");
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("compose.yaml")).unwrap()).unwrap();
    let services = compose["services"].as_mapping().unwrap();
    assert_eq!(services.len(), 2);
    let mut checked = 0;
    for (name, service) in services {
        if let Some(build) = service.get("build") {
            let context = dir.join(build["context"].as_str().unwrap());
            assert!(context.is_dir(), "{name:?}: build context");
            assert!(
                context
                    .join(build["dockerfile"].as_str().unwrap())
                    .is_file(),
                "{name:?}: Dockerfile"
            );
            checked += 1;
        }
        for volume in service["volumes"].as_sequence().unwrap() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with('.') {
                assert!(
                    dir.join(source).exists(),
                    "{name:?}: {source} does not exist"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "checked {checked} paths");
    // The Dockerfile copies what exists, and everything the manifest names: cargo refuses a
    // manifest whose targets or build script are missing, so the image builds only from a
    // copy that holds them all.
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let mut copied = Vec::new();
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let mut parts: Vec<&str> = line.split_whitespace().skip(1).collect();
        parts.pop();
        for source in parts {
            assert!(
                repo().join(source).exists(),
                "Dockerfile copies missing {source}"
            );
            copied.push(source.trim_end_matches('/').to_owned());
        }
    }
    let manifest: toml::Table = std::fs::read_to_string(repo().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let mut needed = vec!["Cargo.lock".to_owned()];
    if let Some(build) = manifest["package"].get("build").and_then(|b| b.as_str()) {
        needed.push(build.to_owned());
    } else if repo().join("build.rs").exists() {
        needed.push("build.rs".into());
    }
    for section in ["bin", "bench", "example", "test"] {
        for target in manifest
            .get(section)
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
        {
            let name = target["name"].as_str().unwrap();
            let path = match (target.get("path").and_then(|p| p.as_str()), section) {
                (Some(p), _) => p.to_owned(),
                (None, "bin") => format!("src/bin/{name}.rs"),
                (None, "bench") => format!("benches/{name}.rs"),
                (None, "example") => format!("examples/{name}.rs"),
                (None, _) => format!("tests/{name}.rs"),
            };
            needed.push(path);
        }
    }
    for path in needed {
        assert!(
            copied
                .iter()
                .any(|c| path == *c || path.starts_with(&format!("{c}/"))),
            "the Dockerfile does not copy {path}, which Cargo.toml needs"
        );
    }
}

/// Every user a systemd unit runs as is created by the shipped sysusers.d file.
#[test]
fn the_users_the_units_run_as_are_created() {
    let sysusers = std::fs::read_to_string(repo().join("deploy/focalpoint.sysusers")).unwrap();
    let created: Vec<&str> = sysusers
        .lines()
        .filter(|l| l.starts_with("u "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("deploy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "service") {
            continue;
        }
        let unit = std::fs::read_to_string(&path).unwrap();
        for user in unit.lines().filter_map(|l| l.strip_prefix("User=")) {
            assert!(
                created.contains(&user),
                "{}: {user} is never created",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "checked {checked} units");
}

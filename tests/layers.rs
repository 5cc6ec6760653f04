//! The crate's layers, read from `src/`: each layer imports only what lies below it, no two
//! files import each other (directly or through others), sled stays in the log, tonic in the
//! node and the command line, and only the command line prints. A change that breaks the
//! picture fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers from the ground up. `pb` (generated types) may be used by all.
const LAYERS: [&str; 6] = ["domain", "crypto", "log", "exchange", "node", "cli"];

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/exchange/core.rs` is `exchange::core`.
fn module_of(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The file that holds the longest prefix of `path` that is a module.
fn file_of(path: &[String]) -> Option<PathBuf> {
    for n in (1..=path.len()).rev() {
        let base = path[..n].iter().fold(src(), |p, s| p.join(s));
        for candidate in [base.with_extension("rs"), base.join("mod.rs")] {
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Paths named as `crate::a::b...`, with `use` groups expanded one level.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let mut path = Vec::new();
        let mut tail = rest;
        loop {
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            if end == 0 {
                break;
            }
            path.push(tail[..end].to_owned());
            tail = &tail[end..];
            if let Some(next) = tail.strip_prefix("::") {
                tail = next;
                if let Some(group) = tail.strip_prefix('{') {
                    let close = group.find('}').unwrap_or(group.len());
                    for item in group[..close].split(',') {
                        let first = item.trim().split("::").next().unwrap_or("").trim();
                        if !first.is_empty() && first != "self" {
                            let mut p = path.clone();
                            p.push(first.to_owned());
                            out.push(p);
                        }
                    }
                    break;
                }
            } else {
                break;
            }
        }
        if !path.is_empty() {
            out.push(path);
        }
    }
    out
}

fn layer_of(module: &[String]) -> Option<usize> {
    LAYERS
        .iter()
        .position(|l| module.first().is_some_and(|m| m == l))
}

/// Every file's imports of other files of the crate.
fn imports() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut graph = BTreeMap::new();
    for file in all {
        let text = std::fs::read_to_string(&file).unwrap();
        let targets: BTreeSet<PathBuf> = crate_paths(&text)
            .iter()
            .filter_map(|p| file_of(p))
            .filter(|target| *target != file)
            .collect();
        graph.insert(file, targets);
    }
    graph
}

fn name(file: &Path) -> String {
    file.strip_prefix(src()).unwrap().display().to_string()
}

#[test]
fn every_file_is_in_a_layer_and_imports_only_what_lies_below() {
    let graph = imports();
    assert!(graph.len() > 20, "read only {} files", graph.len());
    let top = ["lib.rs", "main.rs", "fuzzing.rs", "pb.rs"];
    let mut wrong = Vec::new();
    for (file, targets) in &graph {
        let module = module_of(file);
        if top.contains(&name(file).as_str()) {
            continue;
        }
        let Some(layer) = layer_of(&module) else {
            wrong.push(format!("{} is in no layer", name(file)));
            continue;
        };
        for target in targets {
            let target_module = module_of(target);
            if target_module == ["pb"] {
                continue;
            }
            match layer_of(&target_module) {
                Some(below) if below <= layer => {}
                _ => wrong.push(format!("{} imports {}", name(file), name(target))),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other_directly_or_through_others() {
    let graph = imports();
    // Depth-first search for a path back to where it started.
    let mut circles = Vec::new();
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if next == start {
                    let mut names: Vec<String> = path.iter().map(|p| name(p)).collect();
                    names.push(name(start));
                    circles.push(names.join(" -> "));
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    circles.sort();
    circles.dedup();
    assert!(circles.is_empty(), "circles:\n{}", circles.join("\n"));
}

#[test]
fn sled_tonic_configuration_and_printing_stay_in_their_layers() {
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut wrong = Vec::new();
    for file in &all {
        let text = std::fs::read_to_string(file).unwrap();
        let module = module_of(file);
        let first = module.first().map(String::as_str).unwrap_or("");
        let top = matches!(first, "main" | "lib" | "fuzzing" | "pb");
        if text.contains("sled::") && first != "log" {
            wrong.push(format!("{} uses sled", name(file)));
        }
        if text.contains("tonic::") && !matches!(first, "node" | "cli" | "pb") && !top {
            wrong.push(format!("{} uses tonic", name(file)));
        }
        if text.contains("toml::") && !matches!(first, "node" | "cli") && !top {
            wrong.push(format!("{} reads configuration", name(file)));
        }
        let prints = text.contains("println!(") || text.contains("print!(");
        if prints && first != "cli" && first != "main" {
            wrong.push(format!("{} prints to stdout", name(file)));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn domain_imports_only_the_generated_types_and_crypto_only_the_domain() {
    let graph = imports();
    let mut wrong = Vec::new();
    for (file, targets) in &graph {
        let layer = layer_of(&module_of(file));
        let allowed: &[&str] = match layer {
            Some(0) => &["domain", "pb"],
            Some(1) => &["domain", "crypto", "pb"],
            _ => continue,
        };
        for target in targets {
            let first = module_of(target).first().cloned().unwrap_or_default();
            if !allowed.contains(&first.as_str()) {
                wrong.push(format!("{} imports {}", name(file), name(target)));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_reader_resolves_paths_and_groups() {
    let paths = crate_paths(
        "use crate::domain::model::{CountryCode, Digest};\nlet x = crate::log::ExchangeLog::open();",
    );
    assert!(paths.contains(&vec!["domain".into(), "model".into(), "CountryCode".into()]));
    assert!(paths.contains(&vec!["log".into(), "ExchangeLog".into(), "open".into()]));
    assert_eq!(
        file_of(&["domain".into(), "model".into(), "CountryCode".into()]),
        Some(src().join("domain/model.rs"))
    );
    assert_eq!(
        file_of(&["log".into(), "ExchangeLog".into()]),
        Some(src().join("log/mod.rs"))
    );
}

//! The command line as a new user meets it: what each mistake exits with, and a reader that
//! goes away early.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

fn focalpoint(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn malformed_arguments_exit_2_before_anything_is_sent() {
    let client = repo().join("certs-example/idn/operator.toml");
    let client = client.to_str().unwrap();
    for args in [
        vec!["inbox", "--config", client, "--kind", "alerts"],
        vec!["inbox", "--config", client, "--since", "yesterday"],
        vec!["inbox", "--config", client, "--until", "2025-04-30"],
    ] {
        let out = focalpoint(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_log_key_is_never_overwritten_and_saying_so_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("log.key");
    let key = key.to_str().unwrap();
    assert_eq!(
        focalpoint(&["log-key", "--out", key]).status.code(),
        Some(0)
    );
    let first = std::fs::read(key).unwrap();
    let again = focalpoint(&["log-key", "--out", key]);
    assert_eq!(again.status.code(), Some(64), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
    assert_eq!(std::fs::read(key).unwrap(), first);
}

#[test]
fn a_log_that_cannot_be_opened_is_not_a_failed_audit() {
    let dir = tempfile::tempdir().unwrap();
    focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    let config = dir.path().join("idn/node.toml");
    let missing = dir.path().join("no-such-data");
    let out = focalpoint(&[
        "audit",
        "verify",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(66), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("holds no exchange log").count(),
        1,
        "{stderr}"
    );
}

#[tokio::test]
async fn a_reader_that_goes_away_early_ends_the_command_quietly() {
    let pair = start_pair().await;
    // More than a pipe holds (64 KiB), so that the export is still writing when its
    // reader goes away.
    let mut operator = pair.client("idn", "operator");
    for i in 0..120 {
        let mut e = example("idn/alert-trafficking-victim.json");
        e.message_id = format!("IDN-PIPE-{i}");
        operator.send(e, false).await.unwrap();
    }
    let Pair { dir, idn, khm } = pair;
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
    let config = dir.path().join("idn/node.toml");
    let whole = focalpoint(&[
        "audit",
        "export",
        "--format",
        "jsonl",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(whole.status.code(), Some(0));
    assert!(
        whole.stdout.len() > 256 * 1024,
        "the export ({} bytes) would fit in a pipe's buffer",
        whole.stdout.len()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args(["audit", "export", "--format", "jsonl", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, as `| head -1` does, and go away.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with('{'), "{line}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    // As a filter killed by SIGPIPE reports it: the shell's `$?` is 141.
    assert_eq!(out.status.code(), Some(141), "{stderr}");

    // --json is honoured where it applies, and refused where it cannot.
    let rebuilt = focalpoint(&[
        "replay",
        "--rebuild",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(rebuilt.status.code(), Some(0), "{rebuilt:?}");
    let report: serde_json::Value = serde_json::from_slice(&rebuilt.stdout).unwrap();
    assert!(
        report["entries_verified"].as_u64().unwrap() >= 120,
        "{report}"
    );
    let client = dir.path().join("idn/operator.toml");
    let export = focalpoint(&[
        "stats",
        "export",
        "--json",
        "--config",
        client.to_str().unwrap(),
        "--peer",
        "KHM",
    ]);
    assert_eq!(export.status.code(), Some(64), "{export:?}");
    assert!(String::from_utf8_lossy(&export.stderr).contains("--json does not apply"));
}

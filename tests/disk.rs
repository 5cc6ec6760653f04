//! A full disk: the node refuses what it cannot make durable, and once space is freed it takes
//! writes again by itself, with nothing acknowledged lost and the chain whole. The data
//! directory is a small tmpfs (mounting one needs root, as CI runs).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use focalpoint::pb;

/// A tmpfs of `mib` MiB mounted on a new directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    while file.write_all(&chunk[..512]).is_ok() {}
    let _ = file.sync_all();
    path
}

fn alert(id: &str) -> pb::Envelope {
    let mut e = example("idn/alert-trafficking-victim.json");
    e.message_id = id.into();
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_disk_freeing_space_is_enough_and_nothing_acknowledged_is_lost() {
    let Some(disk) = Tmpfs::mount(8) else {
        let root = rustix::process::getuid().is_root();
        assert!(!root, "running as root, but a tmpfs could not be mounted");
        eprintln!("not root: a tmpfs cannot be mounted here; the full-disk test did not run");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut idn_config, khm_config) = focalpoint::cli::demo::example_configs(dir.path()).unwrap();
    idn_config.data_dir = Some(disk.path().join("idn-data"));
    let (idn, khm) = focalpoint::cli::demo::start_pair(idn_config, khm_config)
        .await
        .unwrap();
    let client = || {
        focalpoint::cli::client::OperatorClient::new(&focalpoint::cli::demo::example_client(
            dir.path(),
            "idn",
            "operator",
            &idn,
        ))
        .unwrap()
    };
    let mut operator = client();
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let id = format!("IDN-DISK-BEFORE-{i}");
        operator.send(alert(&id), true).await.unwrap();
        acknowledged.push(id);
    }

    // The disk fills: sends go on until the log can no longer make one durable.
    let filler = fill(disk.path());
    let mut refused = None;
    for i in 0..5_000 {
        let id = format!("IDN-DISK-FULL-{i}");
        match operator.send(alert(&id), false).await {
            Ok(_) => acknowledged.push(id),
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    let refused = refused.expect("a full disk refused nothing");
    assert!(refused.contains("unavailable"), "{refused}");
    // Still full: still refused, and the node is still up.
    let still = operator.send(alert("IDN-DISK-STILL-FULL"), false).await;
    assert!(still.is_err(), "accepted while the disk is full");

    // Space is freed, and nothing else is done: the log takes writes again by itself.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut resumed = None;
    let mut i = 0;
    while Instant::now() < deadline {
        let id = format!("IDN-DISK-AFTER-{i}");
        i += 1;
        match operator.send(alert(&id), true).await {
            Ok(r) => {
                acknowledged.push(id);
                resumed = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let resumed = resumed.expect("the log did not take writes again after space was freed");
    assert_eq!(
        resumed.state,
        pb::DeliveryState::Delivered as i32,
        "{}",
        resumed.detail
    );

    // Every acknowledged send is in IDN's log once, reaches KHM once, and both chains verify.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !idn
        .exchange()
        .log()
        .pending("KHM".parse().unwrap())
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "delivery did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idn_log = idn.exchange().log();
    let khm_log = khm.exchange().log();
    for id in &acknowledged {
        assert!(idn_log.sent(id).unwrap().is_some(), "{id} lost on IDN");
        assert!(
            khm_log
                .received("IDN".parse().unwrap(), id)
                .unwrap()
                .is_some(),
            "{id} never reached KHM"
        );
    }
    let received: Vec<String> = khm_log
        .inbox()
        .unwrap()
        .into_iter()
        .map(|seq| khm_log.entry(seq).unwrap().unwrap().entry.message_id)
        .collect();
    let mut unique = received.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), received.len(), "a message arrived twice");
    idn_log.verify().unwrap();
    khm_log.verify().unwrap();
    eprintln!(
        "{} acknowledged ({} before the disk filled); refused with: {refused}",
        acknowledged.len(),
        5
    );
    idn.stop().await.unwrap();
    khm.stop().await.unwrap();
    drop(disk);
}

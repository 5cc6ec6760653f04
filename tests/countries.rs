//! Three focal points, IDN, KHM and THA, each a real node over mutual TLS with the PKI
//! `certs init --countries IDN,KHM,THA` writes: agreements per peer, statistics per peer,
//! sending to several peers as one case, and onward sharing.

mod common;

use focalpoint::cli::client::OperatorClient;
use focalpoint::domain::model::CountryCode;
use focalpoint::node::config::NodeConfig;
use focalpoint::node::server::RunningNode;
use focalpoint::pb;

struct Three {
    dir: tempfile::TempDir,
    nodes: Vec<RunningNode>,
}

const COUNTRIES: [&str; 3] = ["IDN", "KHM", "THA"];

/// IDN, KHM and THA from a fresh three-country PKI; `agree` may write agreements into each
/// configuration first.
async fn start_three(agree: impl FnOnce(&mut [NodeConfig])) -> Three {
    focalpoint::node::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let countries: Vec<CountryCode> = COUNTRIES.iter().map(|c| c.parse().unwrap()).collect();
    let mut configs = focalpoint::cli::demo::generated_configs(dir.path(), &countries).unwrap();
    agree(&mut configs);
    let nodes = focalpoint::cli::demo::start_nodes(configs).await.unwrap();
    Three { dir, nodes }
}

impl Three {
    fn node(&self, country: &str) -> &RunningNode {
        let i = COUNTRIES.iter().position(|c| *c == country).unwrap();
        &self.nodes[i]
    }

    fn client(&self, country: &str, role: &str) -> OperatorClient {
        let config = focalpoint::cli::demo::example_client(
            self.dir.path(),
            &country.to_ascii_lowercase(),
            role,
            self.node(country),
        );
        OperatorClient::new(&config).unwrap()
    }

    fn entries(&self, country: &str) -> Vec<focalpoint::log::StoredEntry> {
        self.node(country)
            .exchange()
            .log()
            .range(1, usize::MAX)
            .unwrap()
    }

    async fn stop(self) {
        for node in self.nodes {
            node.stop().await.unwrap();
        }
    }
}

/// Sets the agreement of `config` with `peer` from TOML text (`[peers.agreement]`'s keys).
fn agreement(config: &mut NodeConfig, peer: &str, toml: &str) {
    let peer: CountryCode = peer.parse().unwrap();
    let parsed: focalpoint::node::config::AgreementConfig = toml::from_str(toml).unwrap();
    config
        .peers
        .iter_mut()
        .find(|p| p.country == peer)
        .unwrap()
        .agreement = parsed;
}

/// An example envelope addressed to `to` under a fresh id.
fn addressed(path: &str, id: &str, to: &str) -> pb::Envelope {
    let mut e = common::example(path);
    e.message_id = id.into();
    e.receiver = to.into();
    e.created_at = String::new();
    e
}

/// The status a call was refused with.
fn refused<T: std::fmt::Debug>(
    result: Result<T, focalpoint::cli::client::ClientError>,
) -> tonic::Status {
    match result {
        Err(focalpoint::cli::client::ClientError::Refused(status)) => status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn set_category(e: &mut pb::Envelope, category: pb::AlertCategory) {
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut e.body {
        a.category = category as i32;
    }
}

/// THA accepts statistics and trafficking-victim alerts from IDN and sends it statistics only.
fn tha_agreement(configs: &mut [NodeConfig]) {
    agreement(
        &mut configs[2],
        "IDN",
        r#"
send = ["stats"]
accept = ["stats", "alert"]
accept_alert_categories = ["suspected_trafficking_victim"]
"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agreements_refuse_what_they_do_not_cover_in_each_direction_and_both_sides_log_it() {
    let three = start_three(tha_agreement).await;
    let mut idn = three.client("IDN", "operator");
    let mut tha = three.client("THA", "operator");

    // Within the agreement: a trafficking-victim alert from IDN reaches THA.
    let alert = addressed(
        "idn/alert-trafficking-victim.json",
        "IDN-2025-TV-7001",
        "THA",
    );
    let sent = idn.send(alert, true).await.unwrap();
    assert_eq!(sent.state, pb::DeliveryState::Delivered as i32, "{sent:?}");

    // Outside it, on receipt: a recruiter alert and a fraud notice. IDN's own agreement with
    // THA is unwritten, so IDN logs and sends them; THA refuses each with PERMISSION_DENIED
    // and a refusal entry; IDN marks each failed with THA's reason.
    let mut recruiter = addressed(
        "idn/alert-trafficking-victim.json",
        "IDN-2025-RC-7002",
        "THA",
    );
    set_category(&mut recruiter, pb::AlertCategory::SuspectedRecruiter);
    let mut fraud = addressed("khm/fraud-notice-poipet.json", "IDN-2025-FN-7003", "THA");
    fraud.sender = String::new();
    for (envelope, covers) in [(recruiter, "not suspected_recruiter"), (fraud, "not fraud")] {
        let id = envelope.message_id.clone();
        let sent = idn.send(envelope, true).await.unwrap();
        assert_eq!(sent.state, pb::DeliveryState::Failed as i32, "{sent:?}");
        assert!(sent.detail.contains("refused by THA"), "{}", sent.detail);
        assert!(
            sent.detail
                .contains("outside the agreement with IDN: what this node accepts from IDN"),
            "{}",
            sent.detail
        );
        assert!(sent.detail.contains(covers), "{}", sent.detail);
        let refused = three
            .entries("THA")
            .into_iter()
            .find(|e| e.kind() == pb::EntryKind::Refusal && e.entry.message_id == id)
            .unwrap_or_else(|| panic!("THA logged no refusal of {id}"));
        assert_eq!(refused.entry.peer, "IDN");
        assert!(refused.entry.reason.contains(covers));
        assert!(
            three
                .entries("IDN")
                .iter()
                .any(|e| e.kind() == pb::EntryKind::DeliveryFailed
                    && e.entry.reason.contains("outside the agreement")),
            "IDN logged no failure for {id}"
        );
        assert!(
            three
                .node("THA")
                .exchange()
                .log()
                .received("IDN".parse().unwrap(), &id)
                .unwrap()
                .is_none()
        );
    }

    // Outside it, on sending: THA may send IDN statistics only. Its operator's alert is refused
    // before anything is logged, naming the peer and the agreement.
    let before = three.node("THA").exchange().log().head().unwrap().0;
    let mut alert = addressed(
        "idn/alert-trafficking-victim.json",
        "THA-2025-TV-0001",
        "IDN",
    );
    alert.sender = String::new();
    let status = refused(tha.send(alert, true).await);
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status
            .message()
            .contains("outside the agreement with IDN: what this node may send IDN covers stats, not alert (peers.agreement.send)"),
        "{}",
        status.message()
    );
    assert_eq!(three.node("THA").exchange().log().head().unwrap().0, before);

    // KHM, with no agreement written, exchanges with THA as before.
    let mut khm = three.client("KHM", "operator");
    let mut fraud = addressed("khm/fraud-notice-poipet.json", "KHM-2025-FN-7004", "THA");
    fraud.sender = String::new();
    let sent = khm.send(fraud, true).await.unwrap();
    assert_eq!(sent.state, pb::DeliveryState::Delivered as i32, "{sent:?}");

    // Every log still verifies whole.
    for country in COUNTRIES {
        three.node(country).exchange().log().verify().unwrap();
    }
    three.stop().await;
}

fn figures(value: u64) -> Vec<pb::Counter> {
    vec![pb::Counter {
        name: "departures_postponed".into(),
        value,
        breakdown: vec![],
    }]
}

fn push_request(value: u64, peer: &str) -> pb::PushStatisticsRequest {
    pb::PushStatisticsRequest {
        peer: peer.into(),
        period: Some(focalpoint::domain::kinds::parse_period("2025-04").unwrap()),
        counters: figures(value),
        source: "national immigration system".into(),
        wait_for_receipt: true,
    }
}

/// (peer, message id, revision, unchanged) of each push in a response.
fn pushes(r: &pb::PushStatisticsResponse) -> Vec<(String, String, u32, bool)> {
    r.pushes
        .iter()
        .map(|p| {
            let sent = p.sent.clone().unwrap();
            assert_eq!(sent.state, pb::DeliveryState::Delivered as i32, "{sent:?}");
            (p.peer.clone(), sent.message_id, p.revision, p.unchanged)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_go_to_every_agreed_peer_with_revisions_numbered_per_peer() {
    let three = start_three(|configs| {
        tha_agreement(configs);
        // KHM sends THA alerts only: its statistics go to IDN alone.
        agreement(&mut configs[1], "THA", r#"send = ["alert"]"#);
    })
    .await;
    let mut idn = three.client("IDN", "sync");

    // Without a peer: one report to each peer, each named for its receiver.
    let r = idn.push_statistics(push_request(10, "")).await.unwrap();
    assert_eq!(
        pushes(&r),
        vec![
            (
                "KHM".into(),
                "IDN-STATS-KHM-2025-04-01-2025-04-30-R1".into(),
                1,
                false
            ),
            (
                "THA".into(),
                "IDN-STATS-THA-2025-04-01-2025-04-30-R1".into(),
                1,
                false
            ),
        ]
    );
    // Corrected figures to KHM alone: KHM's second revision; THA's stays the first.
    let r = idn.push_statistics(push_request(11, "KHM")).await.unwrap();
    assert_eq!(
        pushes(&r),
        vec![(
            "KHM".into(),
            "IDN-STATS-KHM-2025-04-01-2025-04-30-R2".into(),
            2,
            false
        )]
    );
    // The same figures to both: unchanged for KHM, THA's second revision.
    let r = idn.push_statistics(push_request(11, "")).await.unwrap();
    assert_eq!(
        pushes(&r),
        vec![
            (
                "KHM".into(),
                "IDN-STATS-KHM-2025-04-01-2025-04-30-R2".into(),
                2,
                true
            ),
            (
                "THA".into(),
                "IDN-STATS-THA-2025-04-01-2025-04-30-R2".into(),
                2,
                false
            ),
        ]
    );

    // IDN's own history says which peer each revision went to, superseded per peer.
    let mut operator = three.client("IDN", "operator");
    let history = operator
        .statistics(pb::StatisticsRequest {
            country: "IDN".into(),
            period: None,
        })
        .await
        .unwrap();
    let rows: Vec<(String, u32, bool)> = history
        .reports
        .iter()
        .map(|r| {
            (
                r.peer.clone(),
                r.report.clone().unwrap().revision,
                r.superseded,
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("KHM".into(), 1, true),
            ("THA".into(), 1, true),
            ("KHM".into(), 2, false),
            ("THA".into(), 2, false),
        ]
    );
    let text = focalpoint::cli::client::statistics_history(&history.reports);
    assert!(text.contains("to THA"), "{text}");
    let current = focalpoint::cli::render::current(&history.reports);
    let csv = focalpoint::cli::render::csv(&current);
    assert!(
        csv.contains("IDN,KHM,2025-04-01,2025-04-30,2,departures_postponed,,11"),
        "{csv}"
    );
    assert!(
        csv.contains("IDN,THA,2025-04-01,2025-04-30,2,departures_postponed,,11"),
        "{csv}"
    );

    // THA holds IDN's reports, each from IDN.
    let mut tha = three.client("THA", "operator");
    let received = tha
        .statistics(pb::StatisticsRequest {
            country: "IDN".into(),
            period: None,
        })
        .await
        .unwrap();
    let revisions: Vec<(String, u32)> = received
        .reports
        .iter()
        .map(|r| (r.peer.clone(), r.report.clone().unwrap().revision))
        .collect();
    assert_eq!(revisions, vec![("IDN".into(), 1), ("IDN".into(), 2)]);
    assert!(focalpoint::cli::client::statistics_history(&received.reports).contains("from IDN"));

    // KHM's agreement with THA leaves statistics out: its push goes to IDN only.
    let mut khm = three.client("KHM", "sync");
    let r = khm.push_statistics(push_request(3, "")).await.unwrap();
    assert_eq!(
        pushes(&r),
        vec![(
            "IDN".into(),
            "KHM-STATS-IDN-2025-04-01-2025-04-30-R1".into(),
            1,
            false
        )]
    );
    // And named, THA is refused before anything is logged.
    let status = refused(khm.push_statistics(push_request(3, "THA")).await);
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("outside the agreement with THA"));

    // Reconcile without a peer reads every peer's reports: IDN holds KHM's.
    let found = operator
        .reconcile(pb::ReconcileRequest {
            peer: String::new(),
            period: None,
            recheck: true,
        })
        .await
        .unwrap();
    let peers: Vec<&str> = found
        .reconciliations
        .iter()
        .map(|r| r.peer.as_str())
        .collect();
    assert_eq!(peers, vec!["KHM"]);
    three.stop().await;
}

/// The deployed nightly job, unchanged, on a node with two peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nightly_job_pushes_to_both_peers_of_a_node_with_two() {
    let three = start_three(tha_agreement).await;
    let work = tempfile::tempdir().unwrap();
    let stats_dir = work.path().join("stats");
    std::fs::create_dir_all(&stats_dir).unwrap();
    std::fs::copy(
        common::repo().join("examples/idn/figures-2025-04.csv"),
        stats_dir.join("2025-04.csv"),
    )
    .unwrap();
    let mut job = std::process::Command::new("sh");
    job.arg(common::repo().join("deploy/focalpoint-stats-sync"))
        .env(
            "FOCALPOINT_CLIENT_CONFIG",
            client_file(&three, "IDN", "sync"),
        )
        .env("STATS_DIR", stats_dir)
        .env("FOCALPOINT", env!("CARGO_BIN_EXE_focalpoint"))
        .env("SYNC_DATE", "2025-05-01");
    let text = succeeds(job).await;
    for peer in ["KHM", "THA"] {
        assert!(
            text.contains(&format!(
                "to {peer}: revision 1 logged as IDN-STATS-{peer}-2025-04-01-2025-04-30-R1"
            )),
            "{text}"
        );
        let received = three
            .node(peer)
            .exchange()
            .log()
            .received(
                "IDN".parse().unwrap(),
                &format!("IDN-STATS-{peer}-2025-04-01-2025-04-30-R1"),
            )
            .unwrap();
        assert!(received.is_some(), "{peer} did not receive the month");
    }
    three.stop().await;
}

fn set_sharing(e: &mut pb::Envelope, sharing: pb::OnwardSharing) {
    e.handling
        .get_or_insert_with(Default::default)
        .onward_sharing = sharing as i32;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_not_to_be_passed_on_cannot_be_referenced_towards_a_third_country() {
    let three = start_three(|_| {}).await;
    let mut idn = three.client("IDN", "operator");
    let mut khm = three.client("KHM", "operator");
    for (id, sharing) in [
        ("IDN-2025-TV-8001", pb::OnwardSharing::Prohibited),
        ("IDN-2025-TV-8002", pb::OnwardSharing::Permitted),
    ] {
        let mut alert = addressed("idn/alert-trafficking-victim.json", id, "KHM");
        set_sharing(&mut alert, sharing);
        let sent = idn.send(alert, true).await.unwrap();
        assert_eq!(sent.state, pb::DeliveryState::Delivered as i32, "{sent:?}");
    }
    let response = |id: &str, to: &str, reference: &str| {
        let mut r = addressed("khm/response-to-alert.json", id, to);
        r.sender = String::new();
        r.reference = reference.into();
        set_sharing(&mut r, pb::OnwardSharing::Permitted);
        r
    };
    // KHM answers IDN: the originator, so nothing is passed on.
    let sent = khm
        .send(response("KHM-2025-R-8001", "IDN", "IDN-2025-TV-8001"), true)
        .await
        .unwrap();
    assert_eq!(sent.state, pb::DeliveryState::Delivered as i32, "{sent:?}");
    // KHM tells THA about it, directly or through its own response to it: refused, naming the
    // handling code, and nothing reaches THA.
    for (id, reference) in [
        ("KHM-2025-R-8002", "IDN-2025-TV-8001"),
        ("KHM-2025-R-8003", "KHM-2025-R-8001"),
    ] {
        let status = refused(khm.send(response(id, "THA", reference), true).await);
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("reference")
                && status.message().contains("ONWARD_SHARING_PROHIBITED")
                && status.message().contains("may not be passed on to THA"),
            "{}",
            status.message()
        );
        assert!(
            three
                .node("KHM")
                .exchange()
                .log()
                .sent(id)
                .unwrap()
                .is_none()
        );
    }
    // An alert IDN released for onward sharing may be referenced towards THA.
    let sent = khm
        .send(response("KHM-2025-R-8004", "THA", "IDN-2025-TV-8002"), true)
        .await
        .unwrap();
    assert_eq!(sent.state, pb::DeliveryState::Delivered as i32, "{sent:?}");
    three.stop().await;
}

/// `focalpoint demo --countries IDN,KHM,THA`, as a user runs it; and the default demo, which
/// stays the two-country one.
#[test]
fn the_demo_runs_three_countries_and_shows_a_refused_kind_with_its_reason() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_focalpoint"))
            .arg("demo")
            .args(args)
            .env("FOCALPOINT_LOG", "error")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let text = run(&["--countries", "IDN,KHM,THA"]);
    for expected in [
        "3 nodes over mutual TLS",
        "THA accepts alert (suspected_trafficking_victim), stats",
        "IDN operator sent a fraud notice to THA: refused on receipt",
        "what this node accepts from IDN covers alert, stats, not fraud",
        "THA operator tried to send IDN an alert: refused before it was logged",
        "what this node may send IDN covers stats, not alert (peers.agreement.send)",
        "to KHM: revision 1 logged as THA-STATS-KHM-2025-04-01-2025-04-30-R1",
        "== THA inbox",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let tha = text
        .lines()
        .find(|l| l.starts_with("THA: "))
        .unwrap_or_else(|| panic!("no THA log line in:\n{text}"));
    assert!(
        tha.contains("1 refusals") && tha.contains("chain verified"),
        "{tha}"
    );
    let text = run(&[]);
    assert!(text.contains("two nodes over mutual TLS"), "{text}");
    assert!(!text.contains("THA"), "{text}");
}

/// The points of `country`'s line in `svg`, as (x, y), in the order drawn.
fn line(svg: &str, country: &str) -> Vec<(f64, f64)> {
    let start = svg
        .find(&format!("data-country=\"{country}\""))
        .unwrap_or_else(|| panic!("no line for {country}"));
    let rest = &svg[start..];
    let rest = &rest[rest.find("points=\"").unwrap() + 8..];
    rest[..rest.find('"').unwrap()]
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

/// The values of `country`'s points in `svg`, from their titles, in the order drawn.
fn values(svg: &str, country: &str) -> Vec<(String, u64)> {
    svg.match_indices(&format!("<title>{country} "))
        .map(|(i, m)| {
            let rest = &svg[i + m.len()..];
            let text = &rest[..rest.find("</title>").unwrap()];
            let (period, value) = text.rsplit_once(' ').unwrap();
            (period.to_owned(), value.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_draws_one_granularity_in_time_order_for_the_countries_with_data() {
    use focalpoint::cli::render::{Granularity, chart_svg, series};
    let three = start_three(|_| {}).await;
    let mut idn = three.client("IDN", "sync");
    let mut khm = three.client("KHM", "sync");
    // As the nightly job does: days and months for the same counter, pushed out of order, to
    // both peers; and a range of days, which no chart draws.
    for (period, value) in [
        ("2025-04", 4120),
        ("2025-04-30", 150),
        ("2025-03", 3900),
        ("2025-04-29", 130),
        ("2025-05-01", 170),
        ("2025-04-01..2025-04-15", 2000),
    ] {
        let mut request = push_request(value, "");
        request.period = Some(focalpoint::domain::kinds::parse_period(period).unwrap());
        idn.push_statistics(request).await.unwrap();
    }
    for (period, value) in [("2025-04", 800), ("2025-03", 700)] {
        let mut request = push_request(value, "IDN");
        request.period = Some(focalpoint::domain::kinds::parse_period(period).unwrap());
        khm.push_statistics(request).await.unwrap();
    }
    let mut reader = three.client("IDN", "auditor");
    let mut records = Vec::new();
    for country in COUNTRIES {
        records.push(
            reader
                .statistics(pb::StatisticsRequest {
                    country: country.into(),
                    period: None,
                })
                .await
                .unwrap()
                .reports,
        );
    }
    let draw = |granularity| {
        let all: Vec<_> = COUNTRIES
            .iter()
            .zip(&records)
            .map(|(c, r)| series(c, r, "departures_postponed", granularity))
            .collect();
        chart_svg("departures_postponed", granularity, &all).unwrap()
    };

    // Months, the default: IDN's two months once each though they went to two peers, and KHM's;
    // THA reported nothing and has no line and no legend.
    let months = draw(Granularity::default());
    assert_eq!(
        values(&months, "IDN"),
        vec![("2025-03".into(), 3900), ("2025-04".into(), 4120)]
    );
    assert_eq!(
        values(&months, "KHM"),
        vec![("2025-03".into(), 700), ("2025-04".into(), 800)]
    );
    assert!(!months.contains("THA"), "{months}");
    assert!(!months.contains("2025-04-30") && !months.contains("2025-04-01.."));
    assert!(months.contains("departures_postponed (number per month)"));
    assert!(months.contains(">month (UTC)</text>"));
    // Points run left to right, and the larger value is higher (a smaller y).
    let idn_line = line(&months, "IDN");
    assert_eq!(idn_line.len(), 2);
    assert!(idn_line[0].0 < idn_line[1].0 && idn_line[0].1 > idn_line[1].1);
    assert_eq!(line(&months, "KHM")[0].0, idn_line[0].0);

    // Days: IDN's three days in time order, nothing else.
    let days = draw(Granularity::Day);
    assert_eq!(
        values(&days, "IDN"),
        vec![
            ("2025-04-29".into(), 130),
            ("2025-04-30".into(), 150),
            ("2025-05-01".into(), 170)
        ]
    );
    let xs: Vec<f64> = line(&days, "IDN").iter().map(|p| p.0).collect();
    assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
    assert!(!days.contains("data-country=\"KHM\""), "{days}");
    assert!(days.contains("departures_postponed (number per day)"));
    three.stop().await;
}

/// Runs `command` off the runtime's threads and returns its output, once it has succeeded.
async fn succeeds(mut command: std::process::Command) -> String {
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A client configuration file for `role` of `country`, pointing at the node's real port.
fn client_file(three: &Three, country: &str, role: &str) -> std::path::PathBuf {
    let lower = country.to_ascii_lowercase();
    let c =
        focalpoint::cli::demo::example_client(three.dir.path(), &lower, role, three.node(country));
    let path = three
        .dir
        .path()
        .join(&lower)
        .join(format!("{role}-on-free-port.toml"));
    std::fs::write(
        &path,
        format!(
            "node = {:?}\nserver_name = {:?}\nca = {:?}\ncertificate = {:?}\nkey = {:?}\n",
            c.node, c.server_name, c.ca, c.certificate, c.key
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_sent_to_two_peers_is_one_case_with_each_peers_answer() {
    let three = start_three(|configs| {
        // THA takes trafficking-victim alerts from IDN and answers them.
        agreement(
            &mut configs[2],
            "IDN",
            r#"
send = ["stats", "response"]
accept = ["stats", "alert"]
accept_alert_categories = ["suspected_trafficking_victim"]
"#,
        );
        // IDN's side of the same agreement.
        agreement(
            &mut configs[0],
            "THA",
            r#"
send = ["stats", "alert"]
send_alert_categories = ["suspected_trafficking_victim"]
"#,
        );
    })
    .await;
    let idn_file = client_file(&three, "IDN", "operator");
    let mut idn = three.client("IDN", "operator");

    // A recruiter alert to both: THA's copy is outside the agreement, so neither is logged.
    let before = three.node("IDN").exchange().log().head().unwrap().0;
    let mut recruiter = addressed(
        "idn/alert-trafficking-victim.json",
        "IDN-2025-RC-9000",
        "KHM",
    );
    set_category(&mut recruiter, pb::AlertCategory::SuspectedRecruiter);
    let status = refused(idn.send_copies(recruiter, vec!["THA".into()], true).await);
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status.message().contains("outside the agreement with THA"),
        "{}",
        status.message()
    );
    assert_eq!(three.node("IDN").exchange().log().head().unwrap().0, before);

    // A copy's id already used for other content: refused before any copy is logged.
    let taken = addressed(
        "idn/alert-trafficking-victim.json",
        "IDN-2025-TV-9100-THA",
        "THA",
    );
    idn.send(taken, true).await.unwrap();
    let before = three.node("IDN").exchange().log().head().unwrap().0;
    let mut other = addressed(
        "idn/alert-trafficking-victim.json",
        "IDN-2025-TV-9100",
        "KHM",
    );
    if let Some(pb::envelope::Body::TravellerAlert(a)) = &mut other.body {
        a.summary = "other content".into();
    }
    let status = refused(idn.send_copies(other, vec!["THA".into()], true).await);
    assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
    assert_eq!(three.node("IDN").exchange().log().head().unwrap().0, before);

    // The operator's command line: `alert send --to KHM,THA`.
    let alert = three.dir.path().join("alert.json");
    let mut envelope = addressed(
        "idn/alert-trafficking-victim.json",
        "IDN-2025-TV-9001",
        "KHM",
    );
    envelope.created_at = String::new();
    std::fs::write(&alert, focalpoint::cli::client::to_json(&envelope)).unwrap();
    let mut send = std::process::Command::new(env!("CARGO_BIN_EXE_focalpoint"));
    send.args(["alert", "send", "--wait", "--to", "KHM,THA", "--config"])
        .arg(&idn_file)
        .arg(&alert)
        .env("FOCALPOINT_LOG", "error");
    let text = succeeds(send).await;
    assert!(
        text.contains("IDN-2025-TV-9001 logged") && text.contains("delivered; KHM logged it"),
        "{text}"
    );
    assert!(
        text.contains("IDN-2025-TV-9001-THA logged") && text.contains("delivered; THA logged it"),
        "{text}"
    );

    // Each peer answers its own copy.
    for (country, id, reference) in [
        ("KHM", "KHM-2025-R-9001", "IDN-2025-TV-9001"),
        ("THA", "THA-2025-R-9001", "IDN-2025-TV-9001-THA"),
    ] {
        let mut r = addressed("khm/response-to-alert.json", id, "IDN");
        r.sender = String::new();
        r.reference = reference.into();
        let sent = three
            .client(country, "operator")
            .send(r, true)
            .await
            .unwrap();
        assert_eq!(sent.state, pb::DeliveryState::Delivered as i32, "{sent:?}");
    }

    // IDN's case, from either copy: both copies and each peer's answer, answered.
    for id in ["IDN-2025-TV-9001", "IDN-2025-TV-9001-THA"] {
        let case = idn.case(id).await.unwrap();
        let rows: Vec<(String, String)> = case
            .messages
            .iter()
            .map(|m| {
                let e = m.entry.clone().unwrap().entry.unwrap();
                (e.peer, e.message_id)
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("KHM".into(), "IDN-2025-TV-9001".into()),
                ("THA".into(), "IDN-2025-TV-9001-THA".into()),
                ("KHM".into(), "KHM-2025-R-9001".into()),
                ("THA".into(), "THA-2025-R-9001".into()),
            ],
            "{id}"
        );
        let state = case.state.unwrap();
        assert_eq!(state.case_id, "IDN-2025-TV-9001");
        assert!(state.answered);
    }
    // The link is in the log entry, chained: the copy names the first.
    let copy = three
        .node("IDN")
        .exchange()
        .log()
        .sent("IDN-2025-TV-9001-THA")
        .unwrap()
        .unwrap();
    let entry = three
        .node("IDN")
        .exchange()
        .log()
        .entry(copy)
        .unwrap()
        .unwrap();
    assert_eq!(entry.entry.copy_of, "IDN-2025-TV-9001");
    let audit = three.client("IDN", "auditor").verify().await.unwrap();
    assert!(audit.ok, "{audit:?}");
    three.stop().await;
}

/// IDN's configuration text with its listeners on free ports and only the peers named, at
/// their real addresses.
fn idn_config_text(base: &str, peers: &[(&str, std::net::SocketAddr)]) -> String {
    let mut blocks = base.split("\n[[peers]]\n");
    let head = blocks
        .next()
        .unwrap()
        .replace("127.0.0.1:7443", "127.0.0.1:0")
        .replace("127.0.0.1:7444", "127.0.0.1:0")
        .replace("127.0.0.1:7445", "127.0.0.1:0");
    let mut text = head;
    for block in blocks {
        for (country, address) in peers {
            if block.contains(&format!("country = \"{country}\"")) {
                let port = match *country {
                    "KHM" => "7543",
                    _ => "7643",
                };
                text.push_str("\n[[peers]]\n");
                text.push_str(&block.replace(
                    &format!("https://127.0.0.1:{port}"),
                    &format!("https://{address}"),
                ));
            }
        }
    }
    text
}

/// Retries `attempt` every 100 ms for at most ten seconds until it gives `Some`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> T {
    for _ in 0..100 {
        if let Some(t) = attempt().await {
            return t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what}: not within ten seconds");
}

/// A `focalpoint serve` process, killed when dropped.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hangup(child: &Stopped) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A peer added, then one removed, by SIGHUP to a running `focalpoint serve`, without a restart;
/// the removed peer's undelivered message stays queued, is reported, and is delivered when the
/// peer is added again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_are_added_and_removed_by_sighup_and_a_removed_peers_messages_stay_queued() {
    focalpoint::node::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let countries: Vec<CountryCode> = COUNTRIES.iter().map(|c| c.parse().unwrap()).collect();
    let mut configs = focalpoint::cli::demo::generated_configs(dir.path(), &countries).unwrap();
    for c in &mut configs {
        c.metrics.enabled = false;
    }
    let tha_config = configs.pop().unwrap();
    let khm_config = configs.pop().unwrap();
    let mut others = focalpoint::cli::demo::start_nodes(vec![khm_config.clone(), tha_config])
        .await
        .unwrap();
    let tha = others.pop().unwrap();
    let khm = others.pop().unwrap();

    // IDN as a real process, with KHM as its only peer.
    let config = dir.path().join("idn/node.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        idn_config_text(&base, &[("KHM", khm.peer_address)]),
    )
    .unwrap();
    let log_file = dir.path().join("idn-serve.log");
    let (child, _, operator) = common::serve_logging(
        &config,
        &dir.path().join("idn/data"),
        "info",
        std::process::Stdio::from(std::fs::File::create(&log_file).unwrap()),
    );
    // Stopped when the test ends, however it ends.
    let child = Stopped(child);
    let client = common::idn_client(dir.path(), "operator", &operator);
    let mut idn = OperatorClient::new(&client).unwrap();
    let alert = |id: &str, to: &str| addressed("idn/alert-trafficking-victim.json", id, to);
    let sent = idn
        .send(alert("IDN-2025-TV-H000", "KHM"), true)
        .await
        .unwrap();
    assert_eq!(sent.state, pb::DeliveryState::Delivered as i32, "{sent:?}");
    let status = refused(idn.send(alert("IDN-2025-TV-H001", "THA"), false).await);
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);

    // THA added: the next send to it is delivered, with no restart.
    std::fs::write(
        &config,
        idn_config_text(
            &base,
            &[("KHM", khm.peer_address), ("THA", tha.peer_address)],
        ),
    )
    .unwrap();
    hangup(&child);
    let sent = eventually("THA added", || {
        let mut idn = idn.clone();
        async move { idn.send(alert("IDN-2025-TV-H001", "THA"), true).await.ok() }
    })
    .await;
    assert_eq!(sent.state, pb::DeliveryState::Delivered as i32, "{sent:?}");

    // KHM away, a message for it waits; then KHM retired: the message stays queued and is
    // reported, KHM is no longer a peer, and its CA still serves the audit of its receipt.
    let khm_address = khm.peer_address;
    khm.stop().await.unwrap();
    let pending = idn
        .send(alert("IDN-2025-TV-H002", "KHM"), false)
        .await
        .unwrap();
    assert_eq!(pending.state, pb::DeliveryState::Pending as i32);
    std::fs::write(
        &config,
        idn_config_text(&base, &[("KHM", khm_address), ("THA", tha.peer_address)])
            .replace("country = \"KHM\"\n", "country = \"KHM\"\nretired = true\n"),
    )
    .unwrap();
    hangup(&child);
    let log_text = log_file.clone();
    eventually("KHM removed", || {
        let log_text = log_text.clone();
        async move {
            std::fs::read_to_string(&log_text)
                .unwrap()
                .contains("peer removed")
                .then_some(())
        }
    })
    .await;
    let status = refused(idn.send(alert("IDN-2025-TV-H003", "KHM"), false).await);
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let outbox = idn
        .outbox(pb::OutboxRequest {
            peer: String::new(),
            limit: 10,
        })
        .await
        .unwrap();
    let waiting = outbox
        .messages
        .iter()
        .find(|m| m.entry.clone().unwrap().entry.unwrap().message_id == "IDN-2025-TV-H002")
        .expect("the message for KHM is still in the outbox");
    assert_eq!(waiting.state, pb::DeliveryState::Pending as i32);
    let audit = idn.verify().await.unwrap();
    assert!(audit.ok, "{audit:?}");
    assert!(audit.receipts >= 2, "{audit:?}");
    let logged = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        logged.contains("peer removed") && logged.contains("queued=1"),
        "{logged}"
    );

    // KHM back, at a new address: the queued message is delivered.
    let khm = focalpoint::cli::demo::start_nodes(vec![khm_config])
        .await
        .unwrap()
        .pop()
        .unwrap();
    std::fs::write(
        &config,
        idn_config_text(
            &base,
            &[("KHM", khm.peer_address), ("THA", tha.peer_address)],
        ),
    )
    .unwrap();
    hangup(&child);
    eventually("the queued message delivered to KHM", || {
        let khm = &khm;
        async move {
            khm.exchange()
                .log()
                .received("IDN".parse().unwrap(), "IDN-2025-TV-H002")
                .unwrap()
        }
    })
    .await;
    drop(child);
    khm.stop().await.unwrap();
    tha.stop().await.unwrap();
}

/// A message logged before a reload narrowed the agreement is not sent: it is marked failed,
/// naming the agreement in force now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_queued_before_an_agreement_narrowed_is_failed_not_sent() {
    let mut three = start_three(|_| {}).await;
    let tha_config = {
        let tha = three.nodes.pop().unwrap();
        let config = tha.config();
        tha.stop().await.unwrap();
        config
    };
    let mut idn = three.client("IDN", "operator");
    let queued = idn
        .send(
            addressed(
                "idn/alert-trafficking-victim.json",
                "IDN-2025-TV-N001",
                "THA",
            ),
            false,
        )
        .await
        .unwrap();
    assert_eq!(queued.state, pb::DeliveryState::Pending as i32);

    // THA back at a new address; IDN's agreement with it now covers statistics only.
    let tha = focalpoint::cli::demo::start_nodes(vec![tha_config])
        .await
        .unwrap()
        .pop()
        .unwrap();
    let mut config = three.node("IDN").config();
    let peer = config
        .peers
        .iter_mut()
        .find(|p| p.country.as_str() == "THA")
        .unwrap();
    peer.address = format!("https://{}", tha.peer_address);
    peer.agreement = toml::from_str(r#"send = ["stats"]"#).unwrap();
    let report = three.node("IDN").reload_config(config).unwrap();
    assert!(
        report.added.is_empty() && report.removed.is_empty(),
        "{report:?}"
    );

    let failed = eventually("the queued alert failed", || {
        let mut idn = idn.clone();
        async move {
            let shown = idn
                .outbox(pb::OutboxRequest {
                    peer: "THA".into(),
                    limit: 10,
                })
                .await
                .unwrap();
            shown
                .messages
                .into_iter()
                .find(|m| m.state == pb::DeliveryState::Failed as i32)
        }
    })
    .await;
    assert!(
        failed
            .detail
            .contains("outside the agreement with THA in force now")
            && failed.detail.contains("covers stats, not alert"),
        "{}",
        failed.detail
    );
    assert!(
        tha.exchange()
            .log()
            .received("IDN".parse().unwrap(), "IDN-2025-TV-N001")
            .unwrap()
            .is_none()
    );
    tha.stop().await.unwrap();
    three.stop().await;
}

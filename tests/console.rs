//! The web console in a real browser: Debian's Chromium, driven over WebDriver by chromedriver,
//! against consoles talking to two real nodes over mTLS. Screenshots of the main pages are
//! saved under `target/console-screenshots/`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process and one headless Chromium session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: ureq::Agent,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client that opens a connection for each request: a refusal may close its connection,
/// which a pooled connection would only find out on the request after it.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(0)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

impl Browser {
    fn start() -> Self {
        assert!(
            std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists(),
            "the console's browser tests need Debian's Chromium: apt-get install -y chromium chromium-driver fonts-khmeros (scripts/test does it)"
        );
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = agent();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut r) = http.get(&format!("{base}/status")).call()
                && r.body_mut()
                    .read_json::<Value>()
                    .is_ok_and(|v| v["value"]["ready"] == true)
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1500", "--lang=en-US",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut r = http
            .post(&format!("{base}/session"))
            .send_json(&caps)
            .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {v}"))
            .to_owned();
        Self {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|v| panic!("WebDriver {method} {path}: {v}"))
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut r = match (method, body) {
            ("GET", _) => self.http.get(&url).call(),
            (_, Some(b)) => self.http.post(&url).send_json(&b),
            (_, None) => self.http.post(&url).send_json(json!({})),
        }
        .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        if v["value"].get("error").is_some() {
            Err(v)
        } else {
            Ok(v["value"].clone())
        }
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap().to_owned()
    }

    fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn try_find(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/elements", self.base, self.session);
        let mut r = self
            .http
            .post(&url)
            .send_json(json!({"using": "css selector", "value": css}))
            .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        v["value"].as_array()?.first().map(|e| {
            e.as_object()
                .unwrap()
                .values()
                .next()
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
    }

    /// The element `css` selects; when there is none, the page is saved as
    /// `failure.png` and its text is in the panic message.
    fn find(&self, css: &str) -> String {
        self.try_find(css).unwrap_or_else(|| {
            self.screenshot("failure");
            let body = self.try_find("body").map(|id| {
                self.call("GET", &format!("/element/{id}/text"), None)
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            });
            panic!("no element {css} on {}: {body:?}", self.url())
        })
    }

    fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.call("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.call("POST", &format!("/element/{id}/click"), None);
    }

    /// Clicks what submits a form or follows a link, and returns once the page it leads to has
    /// replaced this one: a click returns when the browser has taken it, which may be before
    /// the next page is there.
    fn follow(&self, css: &str) {
        let page = self.find("html");
        self.click(css);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self
            .try_call("GET", &format!("/element/{page}/name"), None)
            .is_ok()
        {
            if Instant::now() > deadline {
                self.screenshot("failure");
                panic!("{css} led to no new page from {}", self.url());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_in(&self, name: &str, text: &str) {
        let id = self.find(&format!("[name='{name}']"));
        self.call("POST", &format!("/element/{id}/clear"), None);
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn choose(&self, name: &str, value: &str) {
        self.click(&format!("select[name='{name}'] option[value='{value}']"));
    }

    fn cookie(&self, name: &str) -> String {
        self.call("GET", &format!("/cookie/{name}"), None)["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Saves the page as `target/console-screenshots/NAME.png`.
    fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    /// Waits, without reloading, until `css` holds `text`: a click that submits a form returns
    /// before the page it leads to has replaced the old one.
    fn shows(&self, css: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = self.try_find(css).and_then(|id| {
                self.try_call("GET", &format!("/element/{id}/text"), None)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
            });
            if now.is_some_and(|t| t.contains(text)) {
                return;
            }
            if Instant::now() > deadline {
                self.screenshot("failure");
                panic!("{css} never showed {text:?} on {}", self.url());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Reloads `url` until `css` holds `text`.
    fn wait_for(&self, url: &str, css: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.go(url);
            if self.try_find(css).is_some() && self.text(css).contains(text) {
                return;
            }
            if Instant::now() > deadline {
                self.screenshot("failure");
                panic!("{css} on {url} never showed {text:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(&format!("{}/session/{}", self.base, self.session))
            .call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A console for one user of the pair, on its own loopback port; returns its address and the
/// one-time link.
async fn console(pair: &common::Pair, country: &str, role: &str) -> (SocketAddr, String) {
    let config =
        focalpoint::cli::demo::example_client(pair.dir.path(), country, role, pair.node(country));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = focalpoint::cli::console::access::random_token();
    let console = focalpoint::cli::console::console(&config, addr, token.clone()).unwrap();
    tokio::spawn(focalpoint::cli::console::serve(
        console,
        listener,
        std::future::pending(),
    ));
    (addr, format!("http://{addr}/?token={token}"))
}

const MRZ_LINE_2: &str = "X2217845<8IDN0103141F3401099<<<<<<<<<<<<<<<4";

fn mrz(line_2: &str) -> String {
    format!("{:<44}\n{line_2}", "P<IDNSUKARNI").replace(' ', "<")
}

/// Runs blocking browser steps off the runtime that serves the nodes and consoles.
async fn in_browser<T: Send + 'static>(steps: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(steps).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_sent_answered_and_seen_answered_through_the_consoles() {
    let pair = common::start_pair().await;
    let (idn_addr, idn_link) = console(&pair, "idn", "operator").await;
    let (khm_addr, khm_link) = console(&pair, "khm", "operator").await;
    let (_, auditor_link) = console(&pair, "idn", "auditor").await;
    let mut idn_client = pair.client("idn", "operator");

    let alert_id = in_browser(move || {
        let b = Browser::start();
        // IDN's operator opens the console through its one-time link.
        b.go(&idn_link);
        assert!(b.url().ends_with("/inbox"), "{}", b.url());
        assert!(
            !b.url().contains("token"),
            "the token leaves the address bar"
        );
        b.screenshot("idn-inbox-empty");

        // The alert form, filled in as a tired officer might: no family name, a date of birth
        // in the wrong order, a country code in lower case, and a broken MRZ check digit.
        b.follow("a[href='/send/alert']");
        b.type_in("receiver", "khm");
        b.choose(
            "traveller_alert.category",
            "ALERT_CATEGORY_SUSPECTED_TRAFFICKING_VICTIM",
        );
        b.choose(
            "traveller_alert.action_requested",
            "REQUESTED_ACTION_LOCATE_AND_PROTECT",
        );
        b.type_in("traveller_alert.valid_until", "2030-04-30");
        b.type_in(
            "traveller_alert.summary",
            "Family reports her held in a compound near Sihanoukville.",
        );
        // An Indonesian single name, and a Khmer alias.
        b.type_in("traveller_alert.person.date_of_birth", "14/03/2001");
        b.choose("traveller_alert.person.sex", "SEX_FEMALE");
        b.type_in("traveller_alert.person.nationalities", "IDN");
        b.type_in("traveller_alert.person.aliases", "សុខា");
        b.choose(
            "traveller_alert.documents[0].type",
            "DOCUMENT_TYPE_PASSPORT",
        );
        b.type_in("traveller_alert.documents[0].number", "X2217845");
        b.type_in("traveller_alert.documents[0].issuing_state", "IDN");
        b.type_in(
            "traveller_alert.documents[0].mrz",
            &mrz(&MRZ_LINE_2.replace("<8IDN", "<7IDN")),
        );
        b.choose(
            "traveller_alert.indicators[0].code",
            "INDICATOR_CODE_RECRUITED_THROUGH_SOCIAL_MEDIA",
        );
        b.type_in(
            "traveller_alert.indicators[0].detail",
            "Job advert seen on a social-media page.",
        );
        b.follow("#submit");
        // Every mistake the console can see is shown at once, at its field; the code is
        // taken in capitals.
        b.shows("#traveller_alert-person-family_name-error", "is required");
        b.shows("#traveller_alert-person-date_of_birth-error", "YYYY-MM-DD");
        b.shows("#form-refusals", "Date of birth");
        b.screenshot("idn-alert-form-mistakes");
        assert_eq!(
            b.call(
                "GET",
                &format!("/element/{}/property/value", b.find("[name='receiver']")),
                None
            ),
            "KHM"
        );
        b.type_in("traveller_alert.person.family_name", "SUKARNI");
        b.type_in("traveller_alert.person.date_of_birth", "2001-03-14");
        b.follow("#submit");
        b.shows("#traveller_alert-documents-0--mrz-error", "check digit");
        assert!(
            b.try_find(".field.invalid #traveller_alert-documents-0--mrz")
                .is_some(),
            "the MRZ field is marked"
        );
        // What was typed is still there.
        assert_eq!(
            b.call(
                "GET",
                &format!(
                    "/element/{}/property/value",
                    b.find("[name='traveller_alert.person.family_name']")
                ),
                None
            ),
            "SUKARNI"
        );
        b.screenshot("idn-alert-form-refused");

        // Corrected, it is sent; the console shows the sent message.
        b.type_in("traveller_alert.documents[0].mrz", &mrz(MRZ_LINE_2));
        b.follow("#submit");
        let url = b.url();
        let id = url.rsplit('/').next().unwrap().to_owned();
        assert!(url.contains("/message/IDN-"), "{url}");
        assert!(b.source().contains("SUKARNI"));
        b.screenshot("idn-alert-sent");

        // KHM's operator finds it in the inbox, reads it, and answers it.
        b.go(&khm_link);
        b.wait_for(&format!("http://{khm_addr}/inbox"), "#messages", &id);
        b.screenshot("khm-inbox");
        b.follow(&format!("a[href='/message/{id}']"));
        let page = b.source();
        assert!(
            page.contains("SUKARNI") && page.contains("សុខា"),
            "names shown"
        );
        assert!(b.text("main").contains("Locate and protect"));
        b.screenshot("khm-alert");
        b.follow("#respond");
        b.choose("case_response.status", "RESPONSE_STATUS_LOCATED");
        b.type_in(
            "case_response.details",
            "Located at Poipet and referred to victim services.",
        );
        b.type_in(
            "case_response.office",
            "Immigration focal point, Phnom Penh",
        );
        b.type_in(
            "case_response.encounter.place",
            "Poipet international checkpoint",
        );
        b.type_in("case_response.encounter.country", "KHM");
        b.type_in("case_response.encounter.encountered_at", "2025-05-02T10:30");
        b.type_in(
            "case_response.encounter.action_taken",
            "Referred to victim services",
        );
        b.screenshot("khm-response-form");
        b.follow("#submit");
        if !b.url().contains("/message/KHM-") {
            b.find("#no-such-element-the-answer-was-not-sent");
        }
        let answer = b.url();
        b.wait_for(&answer, "#timeline tr.this", "delivered");
        b.screenshot("khm-answer-sent");

        // IDN's console shows the case answered.
        b.go(&format!("http://{idn_addr}/inbox"));
        b.wait_for(
            &format!("http://{idn_addr}/message/{id}"),
            "#case-status",
            "answered",
        );
        assert!(b.text("#timeline").contains("Person located"));
        b.screenshot("idn-case-answered");

        // Bahasa Indonesia, chosen in the page.
        b.choose("lang", "id");
        b.follow("form.lang button");
        b.shows("nav.menu", "Kotak masuk");
        b.shows("#case-status", "sudah dijawab");
        b.screenshot("idn-case-answered-id");

        // The auditor's console: no send form, and a verify page that reports the log whole.
        b.go(&auditor_link);
        assert!(b.try_find("a[href='/send/alert']").is_none());
        b.go(&format!("{}/send/alert", auditor_base(&auditor_link)));
        assert!(
            b.try_find("form.send").is_none(),
            "no send form for an auditor"
        );
        b.go(&format!("{}/verify", auditor_base(&auditor_link)));
        b.follow("#verify");
        b.shows("#verdict", "whole");
        b.screenshot("auditor-verify");
        b.go(&format!("{}/log", auditor_base(&auditor_link)));
        assert!(b.text("#entries").contains(&id));
        b.screenshot("auditor-log");
        id
    })
    .await;

    // Both logs hold the alert and the answer.
    let shown = idn_client.show(&alert_id).await.unwrap();
    assert!(shown.messages.len() >= 2, "the alert and KHM's answer");
    pair.stop().await;
}

fn auditor_base(link: &str) -> String {
    link.split("/?token=").next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_what_does_not_come_from_its_own_pages() {
    let pair = common::start_pair().await;
    let (addr, link) = console(&pair, "idn", "operator").await;
    let mut idn = pair.client("idn", "operator");
    let browser = in_browser(move || {
        let http = agent();
        let base = format!("http://{addr}");
        // Nothing without the token, not even the stylesheet.
        for path in ["/", "/inbox", "/console.css", "/send/alert"] {
            let r = http.get(&format!("{base}{path}")).call().unwrap();
            assert_eq!(r.status(), 401, "{path}");
            assert!(
                r.headers()
                    .get("content-security-policy")
                    .is_some_and(|v| v.to_str().unwrap().contains("default-src 'none'")),
                "{path}"
            );
        }
        // A wrong token opens nothing.
        let r = http.get(&format!("{base}/?token=00")).call().unwrap();
        assert_eq!(r.status(), 403);

        // The browser opens the link; the token is then spent.
        let b = Browser::start();
        b.go(&link);
        assert!(b.url().ends_with("/inbox"));
        let r = http.get(&link).call().unwrap();
        assert_eq!(r.status(), 403, "a spent link opens nothing");

        // With the browser's session cookie but without the form's CSRF token: refused,
        // and nothing is sent.
        let name = format!("focalpoint_session_{}", addr.port());
        let session = b.cookie(&name);
        let cookie = format!("{name}={session}");
        let form = "receiver=KHM&traveller_alert.category=ALERT_CATEGORY_OVERSTAY\
            &traveller_alert.person.family_name=SUKARNI";
        let own_origin = format!("http://{addr}");
        let post = |origin: Option<&str>, body: String| {
            let mut request = http
                .post(&format!("{base}/send/alert"))
                .header("cookie", &cookie)
                .header("content-type", "application/x-www-form-urlencoded");
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            let mut r = request.send(body).unwrap();
            (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
        };
        let (status, page) = post(Some(&own_origin), form.to_owned());
        assert_eq!(status, 403, "no CSRF token");
        assert!(page.contains("expired"), "{page}");
        let (status, _) = post(Some(&own_origin), format!("{form}&csrf=0123"));
        assert_eq!(status, 403, "a wrong CSRF token");
        // A post from another site, even one that carried the right token, is refused.
        b.go(&format!("{base}/send/alert"));
        let csrf = b.call(
            "GET",
            &format!("/element/{}/property/value", b.find("input[name='csrf']")),
            None,
        );
        let with_token = format!("{form}&csrf={}", csrf.as_str().unwrap());
        let (status, _) = post(Some("http://evil.example"), with_token.clone());
        assert_eq!(status, 403, "another origin");
        let (status, _) = post(None, with_token.clone());
        assert_eq!(status, 403, "a post that names no origin");
        // A page of another port on this host (the browser says same-site) reaches nothing,
        // though the browser sends the cookie along.
        let r = http
            .get(&format!("{base}/inbox"))
            .header("cookie", &cookie)
            .header("sec-fetch-site", "same-site")
            .call()
            .unwrap();
        assert_eq!(r.status(), 403);
        // Another account on the workstation, even holding the session cookie, is refused.
        if rustix::process::getuid().is_root() {
            let request = format!(
                "exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET /inbox HTTP/1.1\\r\\nHost: {addr}\\r\\nCookie: {cookie}\\r\\nConnection: close\\r\\n\\r\\n' >&3; head -1 <&3",
                port = addr.port()
            );
            let out = Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c"])
                .arg(&request)
                .output()
                .unwrap();
            let status_line = String::from_utf8_lossy(&out.stdout);
            assert!(status_line.contains(" 403 "), "{status_line:?} {out:?}");
        } else {
            eprintln!("not root: another account's request is not tried here");
        }
        // Another host name (DNS rebinding) reaches nothing.
        let r = http
            .get(&format!("{base}/inbox"))
            .header("host", "evil.example")
            .header("cookie", &cookie)
            .call()
            .unwrap();
        assert_eq!(r.status(), 421);
        // The session's pages carry the policy too, and are not cached.
        let r = http
            .get(&format!("{base}/inbox"))
            .header("cookie", &cookie)
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers().get("cache-control").unwrap(), "no-store");
        assert_eq!(r.headers().get("x-frame-options").unwrap(), "DENY");
        b
    })
    .await;
    let outbox = idn
        .outbox(focalpoint::pb::OutboxRequest {
            peer: String::new(),
            limit: 10,
        })
        .await
        .unwrap();
    assert!(outbox.messages.is_empty(), "nothing was sent");

    // The node goes away while a form is being filled in: the form stays as typed, with its
    // message id, and says so.
    let common::Pair {
        dir: _dir,
        idn,
        khm,
    } = pair;
    idn.stop().await.unwrap();
    in_browser(move || {
        let b = browser;
        b.go(&format!("http://{addr}/send/alert"));
        let id_before = b.call(
            "GET",
            &format!(
                "/element/{}/property/value",
                b.find("input[name='message_id']")
            ),
            None,
        );
        b.type_in("receiver", "KHM");
        b.choose("traveller_alert.category", "ALERT_CATEGORY_OVERSTAY");
        b.choose(
            "traveller_alert.action_requested",
            "REQUESTED_ACTION_INFORMATION_ONLY",
        );
        b.type_in("traveller_alert.valid_until", "2030-01-31");
        b.type_in("traveller_alert.person.family_name", "SUKARNI");
        b.type_in("traveller_alert.person.date_of_birth", "2001-03-14");
        b.choose("traveller_alert.person.sex", "SEX_FEMALE");
        b.type_in("traveller_alert.person.nationalities", "IDN");
        b.follow("#submit");
        b.shows("#form-refusals", "did not answer");
        let value = |name: &str| {
            b.call(
                "GET",
                &format!(
                    "/element/{}/property/value",
                    b.find(&format!("[name='{name}']"))
                ),
                None,
            )
        };
        assert_eq!(value("message_id"), id_before, "the same message id");
        assert_eq!(value("traveller_alert.person.family_name"), "SUKARNI");
        b.screenshot("idn-node-away");
    })
    .await;
    khm.stop().await.unwrap();
}

#[test]
fn a_console_for_a_certificate_with_no_pages_does_not_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args([
            "console",
            "--config",
            "certs-example/idn/sync.toml",
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no pages"), "{err}");
    assert!(out.stdout.is_empty(), "no link is printed");
}

#[test]
fn a_console_on_a_non_loopback_address_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_focalpoint"))
        .args([
            "console",
            "--config",
            "certs-example/idn/operator.toml",
            "--listen",
            "0.0.0.0:8080",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}

fn push(peer: &str, month: &str, value: u64) -> focalpoint::pb::PushStatisticsRequest {
    use focalpoint::pb;
    pb::PushStatisticsRequest {
        peer: peer.into(),
        period: Some(focalpoint::domain::kinds::parse_period(month).unwrap()),
        counters: vec![pb::Counter {
            name: "departures_postponed".into(),
            value,
            breakdown: Vec::new(),
        }],
        source: "nightly sync".into(),
        wait_for_receipt: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_cases_statistics_changes_and_each_role_s_pages_work_in_the_browser() {
    let pair = common::start_pair().await;
    // What the pages will show: an alert IDN sent, and two months of IDN's figures.
    let mut idn = pair.client("idn", "operator");
    let alert = common::example("idn/alert-trafficking-victim.json");
    let alert_id = alert.message_id.clone();
    idn.send(alert, true).await.unwrap();
    let mut sync = pair.client("idn", "sync");
    sync.push_statistics(push("KHM", "2025-03", 1200))
        .await
        .unwrap();
    sync.push_statistics(push("KHM", "2025-04", 1310))
        .await
        .unwrap();
    // IDN's log head, cosigned by KHM: KHM logs it as witnessed.
    idn.checkpoint("KHM").await.unwrap();
    let (idn_addr, idn_link) = console(&pair, "idn", "operator").await;
    let (khm_addr, khm_link) = console(&pair, "khm", "operator").await;
    let (screening_addr, screening_link) = console(&pair, "khm", "screening").await;
    let (auditor_addr, auditor_link) = console(&pair, "khm", "auditor").await;
    let (_, sync_link) = console(&pair, "idn", "sync").await;

    let id = alert_id.clone();
    in_browser(move || {
        let b = Browser::start();
        let khm = format!("http://{khm_addr}");
        b.go(&khm_link);
        // Search by the passport number finds the alert, and says where it matched; what was
        // searched for stays out of the address.
        b.go(&format!("{khm}/search"));
        b.type_in("document", "X2217845");
        b.follow("form.filters button");
        b.shows("#hits", &id);
        assert!(!b.url().contains("X2217845"), "{}", b.url());
        assert!(
            b.text("#hits")
                .contains("traveller_alert.documents[0].number")
        );
        b.screenshot("khm-search");
        // By name and year of birth, in the other order.
        b.go(&format!("{khm}/search"));
        b.type_in("name", "SARI WULANDARI");
        b.type_in("born", "2001");
        b.follow("form.filters button");
        b.shows("#hits", &id);
        // The whole zone, pasted as a reader gives it.
        b.go(&format!("{khm}/search"));
        b.type_in(
            "document",
            "P<IDNWULANDARI<<SARI<<<<<<<<<<<<<<<<<<<<<<<<\nX2217845<8IDN0103141F3401099<<<<<<<<<<<<<<<4",
        );
        b.follow("form.filters button");
        b.shows("#hits", &id);
        // A date of birth the node cannot read is said by the form, which stays.
        b.type_in("born", "14/03/2001");
        b.follow("form.filters button");
        b.shows("#search-refused", "born");
        assert!(b.try_find("textarea#document").is_some());
        // The active cases, and the inbox filtered by kind.
        b.go(&format!("{khm}/cases"));
        b.shows("#cases", &id);
        b.screenshot("khm-cases");
        b.go(&format!("{khm}/inbox?kind=MESSAGE_KIND_STATISTICS_REPORT"));
        b.shows("#messages", "IDN-STATS-KHM-2025-04-01-2025-04-30-R1");
        assert!(!b.text("#messages").contains(&id), "only statistics");
        // Statistics per peer and period, with the chart of the counter.
        b.go(&format!("{khm}/statistics"));
        b.shows("#reports", "IDN-STATS-KHM-2025-03-01-2025-03-31-R1");
        b.screenshot("khm-statistics");
        b.go(&format!(
            "{khm}/statistics/chart.svg?counter=departures_postponed&granularity=month"
        ));
        let svg = b.source();
        assert!(svg.contains("<svg") && svg.contains("2025-04"), "the chart");
        // As the statistics page asks for it: with the countries it found.
        b.go(&format!("{khm}/statistics"));
        let src = b.call(
            "GET",
            &format!("/element/{}/attribute/src", b.find("p.chart img")),
            None,
        );
        assert!(src.as_str().unwrap().contains("countries=IDN%2CKHM"), "{src}");
        b.go(&format!(
            "{khm}/statistics/chart.svg?counter=departures_postponed&granularity=month&countries=IDN,KHM"
        ));
        assert!(b.source().contains("2025-03"), "the chart for the countries named");

        // IDN updates its alert from the form filled with the version in effect, then
        // withdraws it.
        let idn_base = format!("http://{idn_addr}");
        b.go(&idn_link);
        b.go(&format!("{idn_base}/outbox"));
        b.shows("#messages", &id);
        b.screenshot("idn-outbox");
        b.go(&format!("{idn_base}/message/{id}/change?to=update"));
        let family = b.call(
            "GET",
            &format!(
                "/element/{}/property/value",
                b.find("[name='traveller_alert.person.family_name']")
            ),
            None,
        );
        assert_eq!(family, "WULANDARI", "the form holds the version in effect");
        b.type_in(
            "traveller_alert.summary",
            "Seen at Poipet on 2025-05-01; still in danger.",
        );
        b.screenshot("idn-update-form");
        b.follow("#submit");
        b.shows("#timeline", "Updated");
        b.go(&format!("{idn_base}/message/{id}/change?to=withdraw"));
        b.type_in(
            "traveller_alert.summary",
            "She returned home with the embassy's help.",
        );
        b.follow("#submit");
        b.shows("#case-status", "withdrawn");
        // An ended case cannot be changed again.
        b.go(&format!("{idn_base}/message/{id}/change?to=update"));
        b.shows("main", "the case has ended");

        // A fraud notice through its form; a peer the node does not know is refused by the
        // node, shown above the form, and nothing is sent.
        b.go(&format!("{idn_base}/send/fraud"));
        b.type_in("receiver", "THA");
        b.choose("document_fraud_notice.fraud_type", "FRAUD_TYPE_COUNTERFEIT");
        b.type_in(
            "document_fraud_notice.detection.place",
            "Soekarno-Hatta (CGK)",
        );
        b.type_in("document_fraud_notice.detection.country", "IDN");
        b.type_in(
            "document_fraud_notice.detection.detected_at",
            "2025-05-02T08:15",
        );
        b.choose(
            "document_fraud_notice.document.type",
            "DOCUMENT_TYPE_PASSPORT",
        );
        b.type_in("document_fraud_notice.document.number", "KH0412977");
        b.type_in("document_fraud_notice.document.issuing_state", "KHM");
        b.type_in("document_fraud_notice.presented_by.family_name", "សុខ");
        b.type_in("document_fraud_notice.presented_by.given_names", "ចាន់ថា");
        b.type_in(
            "document_fraud_notice.presented_by.date_of_birth",
            "1994-11-02",
        );
        b.choose("document_fraud_notice.presented_by.sex", "SEX_MALE");
        b.type_in("document_fraud_notice.presented_by.nationalities", "KHM");
        b.follow("#submit");
        b.shows("#form-refusals", "THA");
        b.type_in("receiver", "KHM");
        b.follow("#submit");
        b.shows("h1", "IDN-");
        let page = b.source();
        assert!(
            page.contains("សុខ") && page.contains("ចាន់ថា"),
            "a Khmer name shown"
        );
        b.screenshot("idn-fraud-sent");

        // The screening role: search only.
        b.go(&screening_link);
        assert!(b.url().ends_with("/search"), "{}", b.url());
        assert!(b.try_find("a[href='/inbox']").is_none());
        // The case is withdrawn now: left out, unless ended cases are asked for.
        b.type_in("document", "X2217845");
        b.follow("form.filters button");
        b.shows("main", "No message matches");
        b.type_in("document", "X2217845");
        b.click("input[name='all']");
        b.follow("form.filters button");
        b.shows("#hits", &id);
        b.shows("#hits", "withdrawn");
        assert!(
            b.try_find("#hits a").is_none(),
            "no message page to link to"
        );
        b.go(&format!("http://{screening_addr}/inbox"));
        assert!(b.try_find("#messages").is_none());
        b.screenshot("screening-inbox-refused");

        // The nightly sync's certificate has no pages at all.
        b.go(&sync_link);
        b.shows("main", "no pages");
        assert!(b.try_find("nav.menu a").is_none());

        // The auditor pages through the log from its first entry.
        b.go(&auditor_link);
        b.go(&format!("http://{auditor_addr}/log?from=1"));
        b.shows("#entries", &id);
        b.screenshot("khm-auditor-log");
        b.follow("a[href='/checkpoints']");
        b.shows("#checkpoints", "peer checkpoint witnessed");
        b.screenshot("khm-auditor-checkpoints");
        // The export: every entry as CSV, a download, without content.
        let name = format!("focalpoint_session_{}", auditor_addr.port());
        let mut r = agent()
            .get(&format!("http://{auditor_addr}/export.csv"))
            .header("cookie", &format!("{name}={}", b.cookie(&name)))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()
                .get("content-disposition")
                .is_some_and(|v| v.to_str().unwrap().starts_with("attachment"))
        );
        let csv = r.body_mut().read_to_string().unwrap();
        assert!(csv.starts_with("sequence,recorded_at,kind,peer,message_id"));
        assert!(
            csv.contains(&id) && !csv.contains("WULANDARI"),
            "ids, not content"
        );
    })
    .await;

    // KHM received the update, the withdrawal and the notice; nothing went to THA.
    let mut khm = pair.client("khm", "operator");
    let case = khm.case(&alert_id).await.unwrap();
    // The update KHM received keeps what the form did not show: the example's fourth indicator.
    let update = case
        .messages
        .iter()
        .filter_map(
            |m| match m.envelope.as_ref().and_then(|e| e.body.as_ref()) {
                Some(focalpoint::pb::envelope::Body::TravellerAlert(a))
                    if a.lifecycle == focalpoint::pb::AlertLifecycle::Update as i32 =>
                {
                    Some(a.clone())
                }
                _ => None,
            },
        )
        .next()
        .expect("KHM holds the update");
    assert_eq!(update.indicators.len(), 4);
    assert!(update.summary.contains("still in danger"));
    assert_eq!(
        case.state.unwrap().status,
        focalpoint::pb::CaseStatus::Withdrawn as i32
    );
    let sent = idn
        .outbox(focalpoint::pb::OutboxRequest {
            peer: "THA".into(),
            limit: 10,
        })
        .await
        .unwrap();
    assert!(sent.messages.is_empty());
    pair.stop().await;
}

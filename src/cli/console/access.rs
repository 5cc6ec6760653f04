//! Who may use the console, and what its pages tell the browser.
//!
//! Trust model: the console listens on loopback only, but anyone with an account on the
//! workstation can reach that port. So it answers only connections whose socket belongs to the
//! account that started it (read from the kernel's socket table), and it serves nothing until
//! a browser presents the random token it printed once at start-up (as Jupyter does); the first
//! request with that token gets a session cookie (HttpOnly, SameSite=Strict) and the token is
//! spent. Browsers send a cookie to every port of a host, so the cookie alone proves little: a
//! request a page of another port or site made (`Sec-Fetch-Site`) is refused, a form post must
//! name this console as its `Origin` and carry the session's CSRF token, every response carries
//! a strict Content-Security-Policy, and a request naming another host (DNS rebinding) is
//! refused. What the session may then do is what the user's own
//! certificate may do on the node: the console adds no rights of its own.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::Console;
use super::catalogue::Lang;

/// The session cookie's name, before the console's port: browsers keep cookies per host, not
/// per port, so two consoles on one workstation (an operator's and an auditor's) each need
/// their own name or the second would sign the first out.
pub const SESSION_COOKIE: &str = "focalpoint_session_";

/// How long a session lasts without being used: a duty shift.
const IDLE: Duration = Duration::from_secs(12 * 60 * 60);

/// Sent with every page: nothing is loaded from anywhere else, nothing runs, nothing frames it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A signed-in browser.
#[derive(Clone)]
pub struct Session {
    /// Every form of this session carries it.
    pub csrf: String,
    /// The language the user chose.
    pub lang: Lang,
    last_used: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("csrf", &"MASKED")
            .field("lang", &self.lang)
            .finish_non_exhaustive()
    }
}

/// The start-up token and the sessions it opened.
pub struct Access {
    /// Spent by the first request that presents it.
    token: Mutex<Option<String>>,
    sessions: Mutex<HashMap<String, Session>>,
    /// The `Host` values a request may carry: the listening address, or `localhost` at its port.
    hosts: Vec<String>,
    /// This console's session cookie.
    cookie: String,
    /// Where it listens.
    addr: std::net::SocketAddr,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &"MASKED")
            .field("sessions", &"MASKED")
            .field("addr", &self.addr)
            .finish()
    }
}

/// 32 random bytes, hexadecimal.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // SystemRandom reads the kernel's generator; it fails only if that is unavailable, and a
    // console without randomness must not start.
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system's random generator is unavailable");
    crate::domain::model::hex(&bytes)
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Access {
    /// Access for a console listening on `addr`, opened by `token`.
    pub fn new(addr: std::net::SocketAddr, token: String) -> Self {
        let port = addr.port();
        Self {
            token: Mutex::new(Some(token)),
            sessions: Mutex::new(HashMap::new()),
            hosts: vec![addr.to_string(), format!("localhost:{port}")],
            cookie: format!("{SESSION_COOKIE}{port}"),
            addr,
        }
    }

    /// Spends the start-up token if `offered` is it, and opens a session.
    fn open(&self, offered: &str, lang: Lang) -> Option<String> {
        let mut token = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if !token.as_deref().is_some_and(|t| same_secret(t, offered)) {
            return None;
        }
        *token = None;
        let id = random_token();
        let session = Session {
            csrf: random_token(),
            lang,
            last_used: Instant::now(),
        };
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), session);
        Some(id)
    }

    /// The session a cookie names, if it is open and was used within [`IDLE`].
    fn session(&self, id: &str) -> Option<Session> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.last_used.elapsed() < IDLE);
        let session = sessions.get_mut(id)?;
        session.last_used = Instant::now();
        Some(session.clone())
    }

    /// Sets the language of a session.
    pub fn set_lang(&self, id: &str, lang: Lang) {
        if let Some(s) = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(id)
        {
            s.lang = lang;
        }
    }

    /// Whether `host` (as a `Host` header or URL writes it) is this console.
    pub fn is_own_host(&self, host: &str) -> bool {
        self.hosts.iter().any(|allowed| allowed == host)
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| self.hosts.iter().any(|allowed| allowed == h))
    }

    /// A form post must come from one of the console's own pages: browsers name the page's
    /// origin on every post.
    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::ORIGIN)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|origin| self.hosts.iter().any(|h| origin == format!("http://{h}")))
    }
}

/// The session of a request, as the access layer found it.
#[derive(Clone, Debug)]
pub struct SessionId(pub String);

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_owned())
}

/// The language a browser asks for first, of those the console has.
fn preferred_lang(headers: &HeaderMap) -> Lang {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            h.split(',')
                .map(|tag| tag.split(';').next().unwrap_or("").trim())
                .find_map(Lang::from_tag)
        })
        .unwrap_or(Lang::En)
}

/// Whether a browser says another site or another port's page made the request
/// (`Sec-Fetch-Site`): only the console's own pages, and the user typing or pasting its address
/// (`none`), may reach it.
fn fetched_from_elsewhere(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|site| site != "same-origin" && site != "none")
}

/// The account that owns the loopback socket at `peer` connected to `own`, from the kernel's
/// socket table.
#[cfg(target_os = "linux")]
pub fn socket_owner(peer: std::net::SocketAddr, own: std::net::SocketAddr) -> Option<u32> {
    fn in_table(a: std::net::SocketAddr) -> String {
        let ip = match a.ip() {
            std::net::IpAddr::V4(ip) => format!("{:08X}", u32::from_le_bytes(ip.octets())),
            std::net::IpAddr::V6(ip) => ip
                .octets()
                .chunks_exact(4)
                .map(|w| format!("{:08X}", u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
                .collect(),
        };
        format!("{ip}:{:04X}", a.port())
    }
    let table = if peer.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let text = std::fs::read_to_string(table).ok()?;
    let (local, remote) = (in_table(peer), in_table(own));
    text.lines().skip(1).find_map(|line| {
        let columns: Vec<&str> = line.split_whitespace().collect();
        (columns.len() > 7 && columns[1] == local && columns[2] == remote)
            .then(|| columns[7].parse().ok())
            .flatten()
    })
}

/// Whether the connection from `peer` is the console's own account's.
fn own_account(access: &Access, peer: Option<std::net::SocketAddr>) -> bool {
    #[cfg(target_os = "linux")]
    {
        let me = rustix::process::getuid().as_raw();
        peer.and_then(|p| socket_owner(p, access.addr)) == Some(me)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (access, peer);
        true
    }
}

fn refused(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// Checks every request, then adds the security headers to every response, refusals included.
pub async fn guard(State(console): State<Console>, mut request: Request, next: Next) -> Response {
    let mut response = match admit(&console.access, &mut request) {
        None => next.run(request).await,
        Some(answer) => answer,
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Same-origin, not no-referrer: under no-referrer a browser posts forms with `Origin: null`,
    // and the origin check below needs the real one. Nothing leaves for another site anyway.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Pages carry personal data: no copy is kept by the browser or anything between.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Lets a request through (`None`), or answers it here: the token's redirect, or a refusal.
fn admit(access: &Access, request: &mut Request) -> Option<Response> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    if !own_account(access, peer) {
        return Some(refused(
            StatusCode::FORBIDDEN,
            "this console answers only the account that started it",
        ));
    }
    if fetched_from_elsewhere(request.headers()) {
        return Some(refused(
            StatusCode::FORBIDDEN,
            "a page of another site or port asked for this: open the console's own pages",
        ));
    }
    if !access.host_allowed(request.headers()) {
        return Some(refused(
            StatusCode::MISDIRECTED_REQUEST,
            "this console answers only to its own loopback address",
        ));
    }
    if let Some(offered) = query_token(request.uri().query()) {
        // The link opened again by a browser that is signed in already: home, not a refusal.
        if cookie(request.headers(), &access.cookie).is_some_and(|id| access.session(&id).is_some())
        {
            return Some(Redirect::to("/").into_response());
        }
        let lang = preferred_lang(request.headers());
        let Some(id) = access.open(&offered, lang) else {
            return Some(refused(
                StatusCode::FORBIDDEN,
                "this link is not valid, or was already used: restart the console for a new one",
            ));
        };
        // The token leaves the address bar and the history at once.
        let mut response = Redirect::to("/").into_response();
        let cookie = format!("{}={id}; HttpOnly; SameSite=Strict; Path=/", access.cookie);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        return Some(response);
    }
    let Some(id) = cookie(request.headers(), &access.cookie) else {
        return Some(refused(
            StatusCode::UNAUTHORIZED,
            "open the console through the link it printed when it started",
        ));
    };
    let Some(session) = access.session(&id) else {
        return Some(refused(
            StatusCode::UNAUTHORIZED,
            "this session has ended: restart the console and open the link it prints",
        ));
    };
    if request.method() != axum::http::Method::GET && !access.origin_allowed(request.headers()) {
        return Some(refused(
            StatusCode::FORBIDDEN,
            "a form was posted from another site",
        ));
    }
    request.extensions_mut().insert(session);
    request.extensions_mut().insert(SessionId(id));
    None
}

/// Whether a posted form carries its session's CSRF token.
pub fn csrf_ok(session: &Session, fields: &[(String, String)]) -> bool {
    fields
        .iter()
        .any(|(k, v)| k == "csrf" && same_secret(v, &session.csrf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access::new("127.0.0.1:8080".parse().unwrap(), "secret".into())
    }

    #[test]
    fn the_token_opens_one_session_and_is_spent() {
        let a = access();
        assert!(a.open("wrong", Lang::En).is_none());
        let id = a
            .open("secret", Lang::Id)
            .expect("the token opens a session");
        assert_eq!(a.session(&id).map(|s| s.lang), Some(Lang::Id));
        assert!(
            a.open("secret", Lang::En).is_none(),
            "a spent token opens nothing"
        );
        assert!(a.session("another").is_none());
    }

    #[test]
    fn the_socket_owner_is_read_from_the_kernel_table() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let own = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(own).unwrap();
        let peer = client.local_addr().unwrap();
        let me = rustix::process::getuid().as_raw();
        assert_eq!(socket_owner(peer, own), Some(me));
        // A socket that is not connected to the console has no owner here.
        let elsewhere: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(socket_owner(elsewhere, own), None);
    }

    #[test]
    fn a_request_from_another_site_or_port_is_told_apart() {
        let mut h = HeaderMap::new();
        assert!(
            !fetched_from_elsewhere(&h),
            "not a browser: judged by the rest"
        );
        for (site, elsewhere) in [
            ("none", false),
            ("same-origin", false),
            ("same-site", true),
            ("cross-site", true),
        ] {
            h.insert("sec-fetch-site", HeaderValue::from_static(site));
            assert_eq!(fetched_from_elsewhere(&h), elsewhere, "{site}");
        }
    }

    #[test]
    fn only_the_loopback_host_and_its_own_origin_are_accepted() {
        let a = access();
        let mut h = HeaderMap::new();
        assert!(!a.host_allowed(&h));
        h.insert(header::HOST, HeaderValue::from_static("evil.example:8080"));
        assert!(!a.host_allowed(&h));
        h.insert(header::HOST, HeaderValue::from_static("localhost:8080"));
        assert!(a.host_allowed(&h));
        assert!(!a.origin_allowed(&h), "a post names its origin");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!a.origin_allowed(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(a.origin_allowed(&h));
    }

    #[test]
    fn a_form_needs_its_session_csrf_token() {
        let a = access();
        let id = a.open("secret", Lang::En).unwrap();
        let s = a.session(&id).unwrap();
        assert!(!csrf_ok(&s, &[("csrf".into(), "guess".into())]));
        assert!(!csrf_ok(&s, &[]));
        assert!(csrf_ok(&s, &[("csrf".into(), s.csrf.clone())]));
    }

    #[test]
    fn the_browser_language_is_taken_when_the_console_has_it() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_LANGUAGE,
            HeaderValue::from_static("id-ID,id;q=0.9,en;q=0.8"),
        );
        assert_eq!(preferred_lang(&h), Lang::Id);
        h.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("fr-FR"));
        assert_eq!(preferred_lang(&h), Lang::En);
    }
}

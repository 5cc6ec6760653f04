//! The web console: pages for duty officers and auditors, served on loopback, talking to the
//! node over the operator plane with the user's own certificate. It keeps no data of its own:
//! every page is read from the node when it is asked for, and every form becomes one operator
//! call, so the node's rights, validation and log stay the only ones.

pub mod access;
pub mod catalogue;
pub mod forms;
pub mod pages;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::cli::client::{ClientError, OperatorClient};
use crate::domain::model::{Identity, Role};
use crate::node::config::ClientConfig;

use self::access::Access;
use self::catalogue::{Catalogue, CatalogueError};

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(
        "--listen {0}: the console listens on loopback only (127.0.0.1 or ::1), since its pages carry personal data"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("the certificate {path} names no focalpoint identity")]
    Identity {
        path: std::path::PathBuf,
        #[source]
        source: crate::crypto::x509::TlsError,
    },
    #[error(
        "{0} has no pages in the console: a {1} certificate's work is done from the command line"
    )]
    NoPages(String, Role),
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    #[error("the console stopped")]
    Serve(#[source] std::io::Error),
}

/// What every page handler shares: the node, who the user is, the sessions and the labels.
#[derive(Clone, Debug)]
pub struct Console {
    client: OperatorClient,
    me: Arc<Identity>,
    access: Arc<Access>,
    catalogue: Arc<Catalogue>,
}

impl Console {
    /// What the user's role may see and do in the console.
    fn may(&self) -> Rights {
        Rights::of(self.me.role)
    }
}

/// The parts of the console a role gets: what its certificate may do on the node.
#[derive(Clone, Copy, Debug)]
pub struct Rights {
    /// Inbox, outbox, messages, cases and statistics.
    pub read: bool,
    /// The alert, fraud-notice and response forms.
    pub send: bool,
    /// Search by document and name.
    pub search: bool,
    /// The log, its verification and the export.
    pub audit: bool,
}

impl Rights {
    fn of(role: Role) -> Self {
        match role {
            Role::Operator => Self {
                read: true,
                send: true,
                search: true,
                audit: false,
            },
            Role::Auditor => Self {
                read: true,
                send: false,
                search: true,
                audit: true,
            },
            Role::Screening => Self {
                read: false,
                send: false,
                search: true,
                audit: false,
            },
            Role::Sync | Role::Node => Self {
                read: false,
                send: false,
                search: false,
                audit: false,
            },
        }
    }
}

/// Checks that `addr` is a loopback address.
pub fn check_listen(addr: SocketAddr) -> Result<(), ConsoleError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(ConsoleError::NotLoopback(addr))
    }
}

/// A console for the user `config` names, reached at `addr` through `token`.
pub fn console(
    config: &ClientConfig,
    addr: SocketAddr,
    token: String,
) -> Result<Console, ConsoleError> {
    let client = OperatorClient::new(config)?;
    let identity = crate::crypto::x509::load_certs(&config.certificate)
        .map_err(|source| ConsoleError::Identity {
            path: config.certificate.clone(),
            source,
        })
        .and_then(|certs| {
            let first = certs
                .first()
                .ok_or(crate::crypto::x509::TlsError::NoIdentity)
                .map_err(|source| ConsoleError::Identity {
                    path: config.certificate.clone(),
                    source,
                })?;
            crate::crypto::x509::identity_of(first).map_err(|source| ConsoleError::Identity {
                path: config.certificate.clone(),
                source,
            })
        })?;
    Ok(Console {
        client,
        me: Arc::new(identity),
        access: Arc::new(Access::new(addr, token)),
        catalogue: Arc::new(Catalogue::load()?),
    })
}

/// The console's routes, each behind the access guard.
pub fn router(console: Console) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/console.css", get(pages::stylesheet))
        .route("/language", post(pages::language))
        .route("/inbox", get(pages::inbox))
        .route("/outbox", get(pages::outbox))
        .route("/message/{id}", get(pages::message))
        .route("/search", get(pages::search_form).post(pages::search))
        .route("/cases", get(pages::cases))
        .route("/statistics", get(pages::statistics))
        .route("/statistics/chart.svg", get(pages::chart))
        .route("/log", get(pages::log))
        .route("/verify", get(pages::verify).post(pages::verify_now))
        .route("/checkpoints", get(pages::checkpoints))
        .route("/export.csv", get(pages::export))
        .route(
            "/send/alert",
            get(forms::alert_form).post(forms::alert_submit),
        )
        .route(
            "/send/fraud",
            get(forms::fraud_form).post(forms::fraud_submit),
        )
        .route(
            "/message/{id}/respond",
            get(forms::response_form).post(forms::response_submit),
        )
        .route(
            "/message/{id}/change",
            get(forms::change_form).post(forms::change_submit),
        )
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            access::guard,
        ))
        .with_state(console)
}

/// Serves `console` on `listener` until `stop` completes.
pub async fn serve(
    console: Console,
    listener: tokio::net::TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ConsoleError> {
    axum::serve(
        listener,
        router(console).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await
    .map_err(ConsoleError::Serve)
}

/// `focalpoint console`: listens on `listen`, prints the one-time link, serves until Ctrl-C.
pub async fn run(config: &ClientConfig, listen: SocketAddr) -> Result<(), ConsoleError> {
    check_listen(listen)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ConsoleError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ConsoleError::Listen {
            addr: listen,
            source,
        })?;
    let token = access::random_token();
    let console = console(config, addr, token.clone())?;
    let may = console.may();
    if !(may.read || may.search) {
        return Err(ConsoleError::NoPages(console.me.uri(), console.me.role));
    }
    crate::cli::output::outln!(
        "focalpoint console for {} ({}); open this link once, in the browser you will use:",
        console.me.uri(),
        console.me.role
    );
    crate::cli::output::outln!("    http://{addr}/?token={token}");
    crate::cli::output::outln!("It is spent when used. Stop the console with Ctrl-C.");
    serve(console, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

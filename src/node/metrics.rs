//! The metrics listener: OpenMetrics text served over plain HTTP (loopback by default), and the
//! labels the listeners give TLS refusals.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::exchange::metrics::{Gauges, Metrics};

/// Why a TLS handshake failed, as a metric label.
pub fn handshake_reason(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    if e.contains("timeout") {
        "timeout"
    } else if e.contains("peer sent no certificates") || e.contains("no certificate") {
        "no_client_certificate"
    } else if e.contains("unknownissuer") || e.contains("unknown issuer") {
        "unknown_ca"
    } else if e.contains("expired") || e.contains("notvalidyet") {
        "certificate_not_valid_now"
    } else if e.contains("not allowed on this listener")
        || e.contains("not trusted on this listener")
        || e.contains("identity")
    {
        "identity_refused"
    } else {
        "other"
    }
}

/// Serves `GET /metrics` over HTTP/1.1 (axum) on `listener` until `stop` completes; `gauges` is read per scrape.
pub async fn serve(
    listener: TcpListener,
    metrics: std::sync::Arc<Metrics>,
    gauges: impl Fn() -> Gauges + Send + Sync + 'static,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let gauges = std::sync::Arc::new(gauges);
    let scrape = move || {
        let (metrics, gauges) = (metrics.clone(), gauges.clone());
        async move {
            // The gauges read the log: off the runtime's threads.
            let body = tokio::task::spawn_blocking(move || metrics.render(&gauges()))
                .await
                .unwrap_or_default();
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    crate::exchange::metrics::CONTENT_TYPE,
                )],
                body,
            )
        }
    };
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape.clone()))
        .route("/", axum::routing::get(scrape));
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::warn!(error = %e, "metrics listener stopped");
    }
}

/// The address the metrics listener binds to when the configuration names none.
pub fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

//! The metrics listener: Prometheus text served over plain HTTP (loopback by default), and the
//! labels the listeners give TLS refusals.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// Serves `GET /metrics` on `listener` until `stop` completes; `gauges` is read per scrape.
pub async fn serve(
    listener: TcpListener,
    metrics: std::sync::Arc<Metrics>,
    gauges: impl Fn() -> Gauges + Send + Sync + 'static,
    stop: impl std::future::Future<Output = ()>,
) {
    let gauges = std::sync::Arc::new(gauges);
    tokio::pin!(stop);
    loop {
        let (mut stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
            () = &mut stop => return,
        };
        let metrics = metrics.clone();
        let gauges = gauges.clone();
        tokio::spawn(async move {
            let mut request = vec![0u8; 4096];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut request))
                    .await;
            let Ok(Ok(n)) = read else { return };
            let head = String::from_utf8_lossy(&request[..n]);
            let response = if head.starts_with("GET /metrics ") || head.starts_with("GET / ") {
                let body = metrics.render(&gauges());
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// The address the metrics listener binds to when the configuration names none.
pub fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

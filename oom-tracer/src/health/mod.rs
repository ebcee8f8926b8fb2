//! `/healthz` and `/readyz` for the DaemonSet's probes, and `/metrics` for
//! Prometheus.
//!
//! Liveness: the event loop ticked in the last 10 s. Readiness: the
//! programs are attached and the existing containers were discovered.
//! Metrics: [`Metrics::encode`], as OpenMetrics text.
//!
//! A tiny HTTP/1.1 responder: one `GET` per connection, the request head
//! read until its blank line (at most 8 KiB, within 2 s), then the
//! response with `connection: close`. Unknown paths get 404, other
//! methods 405.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpListener,
};

use crate::{host::clock::BootClock, sinks::metrics::Metrics};

#[derive(Debug, Default)]
pub(crate) struct Health {
    ready: AtomicBool,
    last_tick_ns: AtomicU64,
}

const STALE: Duration = Duration::from_secs(10);

impl Health {
    pub(crate) fn tick(&self) {
        self.last_tick_ns
            .store(BootClock::boot_now_ns(), Ordering::Relaxed);
    }

    pub(crate) fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub(crate) fn live(&self) -> bool {
        let last = self.last_tick_ns.load(Ordering::Relaxed);
        BootClock::boot_now_ns().saturating_sub(last) < STALE.as_nanos() as u64
    }

    pub(crate) fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.live()
    }

    /// The response to a request line such as `GET /healthz HTTP/1.1`:
    /// the probes, and `/metrics` when `metrics` is given.
    pub(crate) fn respond(&self, request_line: &str, metrics: Option<&Metrics>) -> Response {
        let mut parts = request_line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if method != "GET" {
            return Response::text("405 Method Not Allowed", "method not allowed\n");
        }
        // Probes and scrapers may add a query string; none is used.
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        let ok = match (path, metrics) {
            ("/healthz" | "/livez", _) => self.live(),
            ("/readyz", _) => self.ready(),
            ("/metrics", Some(metrics)) => {
                return Response {
                    status: "200 OK",
                    content_type: METRICS_CONTENT_TYPE,
                    body: metrics.encode(),
                };
            }
            _ => return Response::text("404 Not Found", "not found\n"),
        };
        if ok {
            Response::text("200 OK", "ok\n")
        } else {
            Response::text("503 Service Unavailable", "not ready\n")
        }
    }
}

/// `Content-Type` of `GET /metrics`.
pub(crate) const METRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An HTTP response, sent with `connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
        }
    }

    /// Status line, headers and body.
    fn to_bytes(&self) -> Vec<u8> {
        let allow = if self.status.starts_with("405") {
            "allow: GET\r\n"
        } else {
            ""
        };
        let mut out = format!(
            "HTTP/1.1 {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n{allow}connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// Largest request head (request line and headers) read.
const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a client has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    TooLarge,
    Timeout,
    /// The peer closed (or failed) before the end of the head.
    Closed,
}

/// Reads until the blank line that ends the request head (`\r\n\r\n`, or
/// `\n\n` from lenient clients), however the request is split across
/// reads. Returns the head without any bytes read past it; fails when the
/// head is over `limit` bytes or does not arrive within `timeout`.
async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, HeadError> {
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        loop {
            let room = limit - buf.len();
            if room == 0 {
                return Err(HeadError::TooLarge);
            }
            let want = room.min(chunk.len());
            let n = match reader.read(&mut chunk[..want]).await {
                Ok(0) | Err(_) => return Err(HeadError::Closed),
                Ok(n) => n,
            };
            // The terminator may straddle the previous read.
            let from = buf.len().saturating_sub(3);
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = head_end(&buf[from..]) {
                buf.truncate(from + end);
                return Ok(buf);
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(HeadError::Timeout))
}

/// The length up to and including the first blank line in `buf`.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Answers one request on `stream`, then closes it.
async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    health: &Health,
    metrics: Option<&Metrics>,
) {
    let response = match read_head(&mut stream, MAX_HEAD, READ_TIMEOUT).await {
        Ok(head) => {
            let head = String::from_utf8_lossy(&head);
            health.respond(head.lines().next().unwrap_or(""), metrics)
        }
        Err(HeadError::TooLarge) => Response::text(
            "431 Request Header Fields Too Large",
            "request head too large\n",
        ),
        Err(HeadError::Timeout) => Response::text("408 Request Timeout", "request timeout\n"),
        Err(HeadError::Closed) => return,
    };
    let write = async {
        stream.write_all(&response.to_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, write).await;
}

#[derive(Debug, thiserror::Error)]
#[error("listening on {addr}")]
pub(crate) struct ListenError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Serves `/healthz`, `/livez`, `/readyz` and, when `metrics` is given,
/// `/metrics` until the runtime ends. Returns the bound address.
pub(crate) async fn serve_with_metrics(
    addr: SocketAddr,
    health: Arc<Health>,
    metrics: Option<Arc<Metrics>>,
) -> Result<SocketAddr, ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tokio::spawn(async move {
        loop {
            let sock = match listener.accept().await {
                Ok((sock, _)) => sock,
                Err(e) => {
                    // E.g. out of file descriptors: do not spin.
                    tracing::debug!("health endpoint: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let health = health.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move { handle(sock, &health, metrics.as_deref()).await });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests;

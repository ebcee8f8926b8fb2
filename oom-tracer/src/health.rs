//! `/healthz` and `/readyz` for the DaemonSet's probes.
//!
//! Liveness: the event loop ticked in the last 10 s. Readiness: the
//! programs are attached and the existing containers were discovered.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use crate::clock::BootClock;

#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    last_tick_ns: AtomicU64,
}

const STALE: Duration = Duration::from_secs(10);

impl Health {
    pub fn tick(&self) {
        self.last_tick_ns
            .store(BootClock::boot_now_ns(), Ordering::Relaxed);
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    pub fn live(&self) -> bool {
        let last = self.last_tick_ns.load(Ordering::Relaxed);
        BootClock::boot_now_ns().saturating_sub(last) < STALE.as_nanos() as u64
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.live()
    }

    /// (status line, body) for a request line such as `GET /healthz HTTP/1.1`.
    pub fn respond(&self, request_line: &str) -> (&'static str, &'static str) {
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if method != "GET" {
            return ("405 Method Not Allowed", "method not allowed\n");
        }
        let ok = match path {
            "/healthz" | "/livez" => self.live(),
            "/readyz" => self.ready(),
            _ => return ("404 Not Found", "not found\n"),
        };
        if ok {
            ("200 OK", "ok\n")
        } else {
            ("503 Service Unavailable", "not ready\n")
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("listening on {addr}")]
pub struct ListenError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Serves the probes until the runtime ends.
pub async fn serve(addr: SocketAddr, health: Arc<Health>) -> Result<SocketAddr, ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let health = health.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let n =
                    match tokio::time::timeout(Duration::from_secs(2), sock.read(&mut buf)).await {
                        Ok(Ok(n)) => n,
                        _ => return,
                    };
                let text = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = health.respond(text.lines().next().unwrap_or(""));
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes() {
        let h = Health::default();
        assert_eq!(
            h.respond("GET /healthz HTTP/1.1").0,
            "503 Service Unavailable"
        );
        h.tick();
        assert_eq!(h.respond("GET /healthz HTTP/1.1").0, "200 OK");
        assert_eq!(
            h.respond("GET /readyz HTTP/1.1").0,
            "503 Service Unavailable"
        );
        h.set_ready();
        assert_eq!(h.respond("GET /readyz HTTP/1.1").0, "200 OK");
        assert_eq!(h.respond("GET /nope HTTP/1.1").0, "404 Not Found");
        assert_eq!(
            h.respond("POST /healthz HTTP/1.1").0,
            "405 Method Not Allowed"
        );
        assert_eq!(h.respond("").0, "405 Method Not Allowed");
    }
}

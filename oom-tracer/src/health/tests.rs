//! Probes and /metrics, in-process and over real TCP.
use tokio::{io::AsyncWriteExt as _, net::TcpStream};

use super::*;
use crate::sinks::metrics::testing;

#[test]
fn probes() {
    let h = Health::default();
    let status = |line| h.respond(line, None).status;
    assert_eq!(status("GET /healthz HTTP/1.1"), "503 Service Unavailable");
    h.tick();
    assert_eq!(status("GET /healthz HTTP/1.1"), "200 OK");
    assert_eq!(status("GET /healthz?verbose HTTP/1.1"), "200 OK");
    assert_eq!(status("GET /readyz HTTP/1.1"), "503 Service Unavailable");
    h.set_ready();
    assert_eq!(status("GET /readyz HTTP/1.1"), "200 OK");
    assert_eq!(h.respond("GET /readyz HTTP/1.1", None).body, "ok\n");
    assert_eq!(status("GET /nope HTTP/1.1"), "404 Not Found");
    assert_eq!(status("POST /healthz HTTP/1.1"), "405 Method Not Allowed");
    assert_eq!(status(""), "405 Method Not Allowed");
    // No metrics given: no /metrics.
    assert_eq!(status("GET /metrics HTTP/1.1"), "404 Not Found");
}

#[test]
fn metrics_route() {
    let h = Health::default();
    let m = Metrics::new();
    m.oom_kill("ns", "pod", "app", "memcg_oom");
    let r = h.respond("GET /metrics HTTP/1.1", Some(&m));
    assert_eq!(r.status, "200 OK");
    assert_eq!(r.content_type, METRICS_CONTENT_TYPE);
    assert_eq!(r.body, m.encode());
    let s = testing::parse(&r.body);
    let labels = [
        ("namespace", "ns"),
        ("pod", "pod"),
        ("container", "app"),
        ("verdict", "memcg_oom"),
    ];
    assert_eq!(testing::value(&s, "oom_kills_total", &labels), Some(1.0));
    assert_eq!(
        h.respond("GET /metrics?name[]=x HTTP/1.1", Some(&m)).status,
        "200 OK"
    );
    assert_eq!(
        h.respond("POST /metrics HTTP/1.1", Some(&m)).status,
        "405 Method Not Allowed"
    );
    assert_eq!(
        h.respond("GET /metricsz HTTP/1.1", Some(&m)).status,
        "404 Not Found"
    );
}

/// Feeds `parts` to `read_head` through an in-memory pipe, one write each.
async fn head_of(parts: &[&[u8]], limit: usize) -> Result<Vec<u8>, HeadError> {
    let (mut client, mut server) = tokio::io::duplex(64);
    let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
    let writer = tokio::spawn(async move {
        for p in parts {
            if client.write_all(&p).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        // Keep the pipe open a while, as a slow client would.
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    let head = read_head(&mut server, limit, Duration::from_millis(500)).await;
    writer.abort();
    head
}

#[tokio::test]
async fn head_split_across_reads() {
    let head = head_of(
        &[
            b"GET /metr",
            b"ics HTTP/1.1\r\nHost: x\r",
            b"\n\r",
            b"\nrest",
        ],
        MAX_HEAD,
    )
    .await;
    assert_eq!(
        head.as_deref(),
        Ok(&b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"[..])
    );
    let head = head_of(&[b"GET / HTTP/1.0\n", b"\n"], MAX_HEAD).await;
    assert_eq!(head.as_deref(), Ok(&b"GET / HTTP/1.0\n\n"[..]));
}

#[tokio::test]
async fn head_limits() {
    // Exactly at the limit is fine; one byte more is not.
    let line = b"GET / HTTP/1.1\r\n\r\n";
    assert!(head_of(&[line], line.len()).await.is_ok());
    assert_eq!(
        head_of(&[line], line.len() - 1).await,
        Err(HeadError::TooLarge)
    );
    let big = [b'a'; 100];
    let parts: Vec<&[u8]> = std::iter::repeat_n(&big[..], 100).collect();
    assert_eq!(head_of(&parts, MAX_HEAD).await, Err(HeadError::TooLarge));
    // Never finished: times out.
    assert_eq!(
        head_of(&[b"GET / HTTP/1.1\r\n"], MAX_HEAD).await,
        Err(HeadError::Timeout)
    );
    // Peer closed first.
    let (client, mut server) = tokio::io::duplex(64);
    drop(client);
    assert_eq!(
        read_head(&mut server, MAX_HEAD, READ_TIMEOUT).await,
        Err(HeadError::Closed)
    );
}

/// One request over TCP, sent in `parts`; returns (status line,
/// lower-cased headers, body).
async fn fetch(addr: SocketAddr, parts: &[&[u8]]) -> (String, Vec<(String, String)>, String) {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    for p in parts {
        sock.write_all(p).await.unwrap();
        sock.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut raw = String::new();
    sock.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header");
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn serves_metrics_over_tcp() {
    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::new());
    let addr = serve_with_metrics(
        "127.0.0.1:0".parse().unwrap(),
        health.clone(),
        Some(metrics.clone()),
    )
    .await
    .unwrap();
    // Updated after the server started: the scrape sees live values.
    metrics.oom_kill("shop", "cart", "", "global_oom");
    metrics.sigkill("shop", "cart", "", "global_oom");
    metrics.restart("shop", "cart", "app");
    metrics.lost_events(3);
    metrics.hook("oom_kill_process", true);
    metrics.records("oom_kill");

    // The request arrives in three segments.
    let (status, headers, body) = fetch(
        addr,
        &[
            b"GET /metrics HT",
            b"TP/1.1\r\nHost: localhost\r\n",
            b"\r\n",
        ],
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&headers, "content-type"), Some(METRICS_CONTENT_TYPE));
    assert_eq!(
        header(&headers, "content-length"),
        Some(body.len().to_string().as_str())
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    let s = testing::parse(&body);
    let kill = [
        ("namespace", "shop"),
        ("pod", "cart"),
        ("container", ""),
        ("verdict", "global_oom"),
    ];
    assert_eq!(testing::value(&s, "oom_kills_total", &kill), Some(1.0));
    assert_eq!(
        testing::value(&s, "container_kills_total", &kill),
        Some(1.0)
    );
    assert_eq!(
        testing::value(
            &s,
            "container_restarts_total",
            &[("namespace", "shop"), ("pod", "cart"), ("container", "app")]
        ),
        Some(1.0)
    );
    assert_eq!(
        testing::value(&s, "oom_tracer_lost_events_total", &[]),
        Some(3.0)
    );
    assert_eq!(
        testing::value(&s, "oom_tracer_decode_errors_total", &[]),
        Some(0.0)
    );
    assert_eq!(
        testing::value(
            &s,
            "oom_tracer_hook_attached",
            &[("hook", "oom_kill_process")]
        ),
        Some(1.0)
    );
    assert_eq!(
        testing::value(&s, "oom_tracer_records_total", &[("event", "oom_kill")]),
        Some(1.0)
    );

    // The probes on the same listener.
    let (status, _, body) = fetch(addr, &[b"GET /readyz HTTP/1.1\r\n\r\n"]).await;
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 503 Service Unavailable", "not ready\n")
    );
    health.tick();
    let (status, headers, _) = fetch(addr, &[b"GET /healthz HTTP/1.1\r\n\r\n"]).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/plain; charset=utf-8")
    );
    let (status, _, _) = fetch(addr, &[b"GET /nope HTTP/1.1\r\n\r\n"]).await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, headers, _) = fetch(addr, &[b"PUT /metrics HTTP/1.1\r\n\r\n"]).await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(header(&headers, "allow"), Some("GET"));
    let big = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(MAX_HEAD)
    );
    let (status, _, _) = fetch(addr, &[big.as_bytes()]).await;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
}

#[tokio::test]
async fn no_metrics_without_registry() {
    let addr = serve_with_metrics(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(Health::default()),
        None,
    )
    .await
    .unwrap();
    let (status, _, _) = fetch(addr, &[b"GET /metrics HTTP/1.1\r\n\r\n"]).await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
}

//! The Prometheus endpoint of a real run, scraped while the container waits
//! in back-off, and parsed with a real exposition parser.
mod common;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;

fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    body.to_owned()
}

fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn metrics_of_a_real_oom_cycle() {
    require_root();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let parent = parent("metrics");
    let mut child = Command::new(TRACER)
        .args([
            "run",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cgroup-parent",
            &parent,
        ])
        .args([
            "--backoff-initial",
            "3s",
            "--max-restarts",
            "1",
            "--pod-name",
            "metrics-pod",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait for the first back-off: one kill has happened, the restart has not.
    for line in lines.by_ref() {
        let r: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if r["event"] == "backoff" {
            break;
        }
    }
    let text = scrape(port);
    let parsed =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let kill = [
        ("namespace", "default"),
        ("pod", "metrics-pod"),
        ("container", "stress"),
        ("verdict", "memcg_oom"),
    ];
    assert_eq!(
        sample(&parsed, "oom_kills_total", &kill),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&parsed, "container_kills_total", &kill),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &parsed,
            "oom_tracer_hook_attached",
            &[("hook", "tp_btf/mark_victim")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&parsed, "oom_tracer_lost_events_total", &[]),
        Some(0.0)
    );
    assert!(
        sample(&parsed, "oom_tracer_records_total", &[("event", "alloc")]).unwrap_or(0.0) >= 3.0
    );
    assert!(text.contains("# TYPE oom_kills counter"), "{text}");
    // After the restart and the second kill.
    for _ in lines.by_ref() {}
    assert!(child.wait().unwrap().success());
}

//! Test helpers shared with `health`'s tests: parse an exposition with the
//! `prometheus-parse` crate and look samples up.
use prometheus_parse::{Scrape, Value};

pub(crate) fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parsing the exposition")
}

/// The value of the sample `name` whose labels are exactly `labels`.
///
/// prometheus-parse reads the Prometheus 0.0.4 text format: it skips
/// `# EOF` as a comment but keys `# TYPE` by the family name, so
/// OpenMetrics counter samples (`foo_total` under `# TYPE foo counter`)
/// come back as `Value::Untyped`. Both are accepted here.
pub(crate) fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = scrape.samples.iter().filter(|s| {
        s.metric == name
            && s.labels.len() == labels.len()
            && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
    });
    let sample = found.next()?;
    assert!(found.next().is_none(), "duplicate sample {name} {labels:?}");
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
        ref other => panic!("{name}: unexpected value {other:?}"),
    }
}

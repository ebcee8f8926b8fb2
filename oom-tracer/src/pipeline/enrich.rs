//! Enrichment of one record: the pod and container of the cgroup it is
//! about, and the limit an allocation grows towards. (An `oom_kill` is
//! assembled whole in `translate/kill.rs`.)
use crate::{
    pods::Container,
    schema::{Body, Record},
};

/// Fills in what `c`, the container of the record's cgroup, tells about `r`.
pub(super) fn enrich(r: &mut Record, c: Option<&Container>) {
    let Some(c) = c else { return };
    let ids = || (Some(c.pod.clone()), Some(c.container.clone()));
    match &mut r.body {
        Body::Exec(e) => (e.pod, e.container) = ids(),
        Body::Alloc(a) => {
            (a.pod, a.container) = ids();
            a.limit_bytes = c.limit_bytes.or(c.pod_limit_bytes);
        }
        Body::Signal(s) => (s.pod, s.container) = ids(),
        Body::Exit(e) => (e.pod, e.container) = ids(),
        _ => {}
    }
}

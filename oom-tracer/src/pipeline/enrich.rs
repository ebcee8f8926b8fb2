//! Enrichment of one record: the pod and container of the cgroup it is
//! about, the limit an allocation grows towards, and which level's limit
//! an OOM kill hit.
use crate::{
    pods::Container,
    schema::{Body, LimitLevel, Record},
};

/// Fills in what `c`, the container of the record's cgroup `memcg` (the
/// victim's for an OOM kill), tells about `r`.
pub(super) fn enrich(r: &mut Record, memcg: u64, c: Option<&Container>) {
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
        Body::OomKill(o) => {
            (o.pod, o.container) = ids();
            if let Some(m) = &mut o.memcg {
                m.level = Some(if m.id == memcg {
                    LimitLevel::Container
                } else if m.id == c.pod_cgroup_id {
                    LimitLevel::Pod
                } else {
                    LimitLevel::Ancestor
                });
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use oom_tracer_common::decode::RawEvent;

    use super::*;
    use crate::{
        cgroup::index::CgroupIndex,
        host::clock::BootClock,
        pipeline::translate::{Translator, tests::oom_event},
        pods::fake::example_container,
    };

    fn container() -> Container {
        example_container(0, 100)
    }

    #[test]
    fn the_level_of_the_limit_that_was_hit() {
        let mut t = Translator::new(BootClock::from_offset(0), CgroupIndex::new(None));
        let mut level = |oom_memcg: u64| {
            let mut r = t
                .translate(&RawEvent::Oom(Box::new(oom_event(42, 101, oom_memcg))))
                .unwrap();
            enrich(&mut r, 101, Some(&container()));
            let v = serde_json::to_value(&r).unwrap();
            assert_eq!(v["container"]["name"], "stress");
            assert_eq!(v["pod"]["namespace"], "default");
            v["memcg"]["level"].clone()
        };
        assert_eq!(level(101), "container");
        assert_eq!(level(100), "pod");
        assert_eq!(level(7), "ancestor");
        let mut r = t
            .translate(&RawEvent::Oom(Box::new(oom_event(42, 101, 101))))
            .unwrap();
        enrich(&mut r, 101, None);
        let v = serde_json::to_value(&r).unwrap();
        assert!(v["container"].is_null() && v["memcg"]["level"].is_null());
    }
}

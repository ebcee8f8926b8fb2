//! Kill records written before their pod's names were known (the runtime
//! and the API had not answered within the pipeline's short wait), kept by
//! the sinks that need the names (Events, metrics) until the pipeline says
//! the names came ([`super::Sink::named`]) or a longer bound passes.
use std::time::{Duration, Instant};

use crate::{
    pods::same_uid,
    schema::{ContainerRef, PodRef},
};

/// Whether a record's pod and container carry every name.
pub(crate) fn is_named(pod: Option<&PodRef>, c: Option<&ContainerRef>) -> bool {
    pod.is_some_and(|p| p.name.is_some() && p.namespace.is_some())
        && c.is_some_and(|c| c.name.is_some())
}

struct Entry<T> {
    uid: String,
    container_id: String,
    since: Instant,
    item: T,
}

/// What a sink keeps for containers still without names.
pub(crate) struct Unnamed<T> {
    wait: Duration,
    cap: usize,
    entries: Vec<Entry<T>>,
}

impl<T> Unnamed<T> {
    /// Keeps at most `cap` items, each at most `wait`.
    pub(crate) fn new(wait: Duration, cap: usize) -> Self {
        Self {
            wait,
            cap,
            entries: Vec::new(),
        }
    }

    /// Keeps `item` until the names of `pod`/`c` come. Gives it back when
    /// there is nothing to wait for (no container) or no room.
    pub(crate) fn keep(
        &mut self,
        pod: Option<&PodRef>,
        c: Option<&ContainerRef>,
        item: T,
    ) -> Result<(), T> {
        let (Some(p), Some(c)) = (pod, c) else {
            return Err(item);
        };
        if self.entries.len() >= self.cap {
            return Err(item);
        }
        self.entries.push(Entry {
            uid: p.uid.clone(),
            container_id: c.id.clone(),
            since: Instant::now(),
            item,
        });
        Ok(())
    }

    /// The items kept for container `c` of pod `pod`, whose names came.
    pub(crate) fn named(&mut self, pod: &PodRef, c: &ContainerRef) -> Vec<T> {
        self.take(|e| e.container_id == c.id && (e.uid == pod.uid || same_uid(&e.uid, &pod.uid)))
    }

    /// The items that waited longer than the bound.
    pub(crate) fn expired(&mut self) -> Vec<T> {
        let wait = self.wait;
        self.take(|e| e.since.elapsed() >= wait)
    }

    fn take(&mut self, mut pick: impl FnMut(&Entry<T>) -> bool) -> Vec<T> {
        let (out, keep): (Vec<_>, Vec<_>) = self.entries.drain(..).partition(|e| pick(e));
        self.entries = keep;
        out.into_iter().map(|e| e.item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(name: Option<&str>) -> (PodRef, ContainerRef) {
        (
            PodRef {
                namespace: name.map(Into::into),
                name: name.map(Into::into),
                uid: "0123456789abcdef0123456789abcdef".into(),
            },
            ContainerRef {
                name: name.map(Into::into),
                id: "c1".into(),
                restart_count: None,
            },
        )
    }

    #[test]
    fn kept_until_named_or_expired() {
        let mut u = Unnamed::new(Duration::from_millis(30), 2);
        let (p, c) = refs(None);
        assert!(!is_named(Some(&p), Some(&c)));
        assert_eq!(
            u.keep(None, None, 0),
            Err(0),
            "no container: nothing to wait for"
        );
        u.keep(Some(&p), Some(&c), 1).unwrap();
        u.keep(Some(&p), Some(&c), 2).unwrap();
        assert_eq!(u.keep(Some(&p), Some(&c), 3), Err(3), "bounded");
        let (mut named_p, named_c) = refs(Some("x"));
        assert!(is_named(Some(&named_p), Some(&named_c)));
        named_p.uid = "01234567-89ab-cdef-0123-456789abcdef".into();
        assert_eq!(u.named(&named_p, &named_c), [1, 2]);
        u.keep(Some(&p), Some(&c), 4).unwrap();
        assert!(u.expired().is_empty());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(u.expired(), [4]);
    }
}

//! Sinks: the only consumers of records. Every record the pipeline makes
//! goes to every sink, in order: the stdout writer (`stdout.rs`, NDJSON or
//! the `pretty.rs` timeline), the Prometheus metrics (`metrics.rs`) and the
//! Kubernetes Events (`events.rs`). A new consumer is one new [`Sink`],
//! added where the mode builds its [`Sinks`].
use crate::schema::{Body, ContainerRef, PodRef, Record};

#[cfg(feature = "agent")]
pub(crate) mod events;
pub(crate) mod metrics;
mod pretty;
pub(crate) mod stdout;
mod unnamed;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkError {
    #[error("writing to stdout")]
    Write(#[source] std::io::Error),
    #[error("serialising a {event} record")]
    Serialise {
        event: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// A consumer of records. An error stops the tracer: only a sink that
/// cannot do its job at all (stdout closed) returns one; the others log
/// and count their troubles.
pub(crate) trait Sink {
    fn write(&mut self, r: &Record) -> Result<(), SinkError>;

    /// Hands on what `write` held back (one batch: a drain of the ring
    /// buffer). A sink that holds nothing back needs no `flush`.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// The names of container `container` of `pod` are known now: records
    /// written before without them (an `oom_kill` while the runtime was
    /// slow) may be completed.
    fn named(&mut self, _pod: &PodRef, _container: &ContainerRef) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Every sink of one tracer, and how many records went to them.
///
/// Outside a batch every record is flushed at once. Inside one (a drain of
/// the ring buffer, see [`Sinks::batch`]) the sinks are flushed once at
/// its end: one `write(2)` for all of a drain's lines, so that the reader
/// of stdout is woken once per drain. An `oom_kill` does not wait for the
/// end: it is flushed at once, with the lines before it, and the rest of
/// the drain (its victim's exit, the restart) follows in a second write.
#[derive(Default)]
pub(crate) struct Sinks {
    sinks: Vec<Box<dyn Sink>>,
    written: u64,
    /// Batches open (they nest: a drain inside `emit`).
    batches: u32,
}

impl Sinks {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with(mut self, sink: impl Sink + 'static) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// Hands `r` to every sink.
    pub(crate) fn write(&mut self, r: &Record) -> Result<(), SinkError> {
        self.written += 1;
        for s in &mut self.sinks {
            s.write(r)?;
        }
        if self.batches == 0 || matches!(r.body, Body::OomKill(_)) {
            self.flush()?;
        }
        Ok(())
    }

    /// Tells every sink that a container's names came.
    pub(crate) fn named(&mut self, pod: &PodRef, c: &ContainerRef) -> Result<(), SinkError> {
        for s in &mut self.sinks {
            s.named(pod, c)?;
        }
        Ok(())
    }

    /// Opens a batch; records written until [`Sinks::end_batch`] are
    /// flushed together.
    pub(crate) fn batch(&mut self) {
        self.batches += 1;
    }

    /// Closes a batch; the outermost one flushes.
    pub(crate) fn end_batch(&mut self) -> Result<(), SinkError> {
        self.batches = self.batches.saturating_sub(1);
        if self.batches == 0 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        for s in &mut self.sinks {
            s.flush()?;
        }
        Ok(())
    }

    /// Records written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, rc::Rc};

    use super::*;

    struct Collect(Rc<RefCell<Vec<String>>>);

    impl Sink for Collect {
        fn write(&mut self, r: &Record) -> Result<(), SinkError> {
            self.0.borrow_mut().push(r.event().to_owned());
            Ok(())
        }

        fn flush(&mut self) -> Result<(), SinkError> {
            self.0.borrow_mut().push("flush".to_owned());
            Ok(())
        }
    }

    #[test]
    fn a_batch_is_flushed_at_its_end_and_at_a_kill() {
        let seen = Rc::default();
        let mut sinks = Sinks::new().with(Collect(Rc::clone(&seen)));
        let samples = crate::schema::tests::samples();
        let of = |name: &str| samples.iter().find(|r| r.event() == name).unwrap();
        sinks.batch();
        for name in ["exec", "oom_kill", "exit", "restart"] {
            sinks.write(of(name)).unwrap();
        }
        assert_eq!(
            *seen.borrow(),
            ["exec", "oom_kill", "flush", "exit", "restart"]
        );
        sinks.end_batch().unwrap();
        assert_eq!(seen.borrow().last().unwrap(), "flush");
        assert_eq!(seen.borrow().len(), 6);
    }

    #[test]
    fn every_sink_sees_every_record_in_order() {
        let (a, b) = (Rc::default(), Rc::default());
        let mut sinks = Sinks::new()
            .with(Collect(Rc::clone(&a)))
            .with(Collect(Rc::clone(&b)));
        for r in crate::schema::tests::samples() {
            sinks.write(&r).unwrap();
        }
        let names: Vec<String> = a
            .borrow()
            .iter()
            .filter(|n| *n != "flush")
            .cloned()
            .collect();
        assert_eq!(names, Body::NAMES);
        assert_eq!(a, b);
        assert_eq!(sinks.written(), Body::NAMES.len() as u64);
    }
}

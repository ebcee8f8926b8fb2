//! Records the pipeline could not handle: malformed ones it dropped, and
//! the kernel's own losses, reported as `lost` records.
use oom_tracer_common::decode::DecodeError;

use super::{Kernel, Pipeline, PipelineError};
use crate::{
    pods::PodAccessor,
    schema::{Lost, Record},
};

impl<K: Kernel, P: PodAccessor> Pipeline<K, P> {
    pub(super) fn decode_error(&mut self, e: &DecodeError) {
        self.decode_errors += 1;
        let n = self.decode_errors;
        // The first few, then every thousandth: a bad stream must not flood stderr.
        if n <= 5 || n.is_multiple_of(1000) {
            tracing::warn!("dropped a malformed ring-buffer record ({e}); {n} so far");
        }
    }

    /// A `lost` record when the kernel dropped or mangled records since the last one.
    pub(super) fn report_losses(&mut self) -> Result<(), PipelineError> {
        let k = self.kernel.counters();
        let total = Lost {
            ringbuf_full: k.ringbuf_full,
            read_errors: k.read_errors,
            decode_errors: self.decode_errors,
        };
        if total == self.reported {
            return Ok(());
        }
        let was = std::mem::replace(&mut self.reported, total.clone());
        if total.ringbuf_full > was.ringbuf_full {
            tracing::warn!(
                "ring buffer full: {} records lost so far (--ring-buffer-size)",
                total.ringbuf_full
            );
        }
        let lost = Lost {
            ringbuf_full: total.ringbuf_full.saturating_sub(was.ringbuf_full),
            read_errors: total.read_errors.saturating_sub(was.read_errors),
            decode_errors: total.decode_errors.saturating_sub(was.decode_errors),
        };
        let now = self.translator.now();
        self.write(&mut Record::new(now, lost), 0)
    }
}

//! The kernel's reclaim sums, polled: `pressure` and `near_miss` records.
use super::{Kernel, Pipeline, PipelineError};
use crate::{
    analyse::pressure::Finding,
    pods::PodAccessor,
    schema::{Body, NearMiss, Record},
};

impl<K: Kernel, P: PodAccessor> Pipeline<K, P> {
    /// Reads the kernel's reclaim sums: `pressure` records while a cgroup
    /// reclaims at its limit, `near_miss` when it stalled and survived.
    pub(super) async fn poll_pressure(&mut self) -> Result<(), PipelineError> {
        // Written after the record held back (kernel order), next time.
        if self.held.is_some() {
            return Ok(());
        }
        let sums = self.kernel.pressure();
        if sums.is_empty() {
            return Ok(());
        }
        self.pump().await?;
        let now = self.translator.now();
        for (memcg, stat) in sums {
            let last = (stat.last_ns > 0).then(|| self.translator.time(stat.last_ns));
            for finding in self.analysis.pressure_sample(memcg, now, stat, last) {
                let cgroup = self.translator.index.resolve(memcg);
                let c = self.pods.container(memcg);
                let (pod, container) = (c.map(|c| c.pod.clone()), c.map(|c| c.container.clone()));
                let body: Body = match finding {
                    Finding::Pressure { pressure, .. } => crate::schema::PressureRecord {
                        cgroup,
                        pod,
                        container,
                        pressure,
                    }
                    .into(),
                    Finding::NearMiss {
                        since, pressure, ..
                    } => NearMiss {
                        cgroup,
                        pod,
                        container,
                        since,
                        pressure,
                    }
                    .into(),
                };
                self.write(&mut Record::new(now, body), memcg)?;
            }
        }
        Ok(())
    }
}

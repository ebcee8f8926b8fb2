//! The kubelet's waits and loops over a container's life: its exit (or
//! how the runtime failed it), a crash loop with back-off, one pod run to
//! its container's exit; and the sandboxes of a namespace, for clean-up.
use std::time::Duration;

use k8s_cri::v1::{ContainerStatusRequest, ListPodSandboxRequest, PodSandboxFilter};

use super::{ContainerSpec, Kubelet, Pod};

/// ContainerState CONTAINER_CREATED, CONTAINER_RUNNING, CONTAINER_EXITED.
const CREATED: i32 = 0;
const RUNNING: i32 = 1;
const EXITED: i32 = 2;

impl Kubelet {
    /// Polls ContainerStatus until the container exited: (exit code, reason).
    pub(crate) async fn wait_exit(&mut self, id: &str, timeout: Duration) -> (i32, String) {
        self.try_wait_exit(id, timeout)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Kubelet::wait_exit`], saying how the runtime failed instead: the
    /// status call failed, the container never left CREATED (its start
    /// went wrong in the runtime), or it did not exit within `timeout`.
    pub(crate) async fn try_wait_exit(
        &mut self,
        id: &str,
        timeout: Duration,
    ) -> Result<(i32, String), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let st = self
                .rt
                .container_status(ContainerStatusRequest {
                    container_id: id.into(),
                    verbose: false,
                })
                .await
                .map_err(|e| format!("ContainerStatus {id}: {}", e.message()))?
                .into_inner()
                .status
                .ok_or_else(|| format!("ContainerStatus {id}: no status"))?;
            if st.state == EXITED {
                return Ok((st.exit_code, st.reason));
            }
            if tokio::time::Instant::now() >= deadline {
                let state = match st.state {
                    CREATED => "never started (still CREATED)",
                    RUNNING => "still running",
                    _ => "in state UNKNOWN",
                };
                return Err(format!("container {id} {state} after {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The ids of the pod sandboxes the runtime has in `namespace` (the
    /// `io.kubernetes.pod.namespace` label), with their pod uids.
    pub(crate) async fn sandboxes_in(
        &mut self,
        namespace: &str,
    ) -> Result<Vec<(String, String)>, tonic::Status> {
        let filter = PodSandboxFilter {
            label_selector: [(
                "io.kubernetes.pod.namespace".to_owned(),
                namespace.to_owned(),
            )]
            .into(),
            ..Default::default()
        };
        Ok(self
            .rt
            .list_pod_sandbox(ListPodSandboxRequest {
                filter: Some(filter),
            })
            .await?
            .into_inner()
            .items
            .into_iter()
            .map(|s| {
                let uid = s.metadata.map(|m| m.uid).unwrap_or_default();
                (s.id, uid)
            })
            .collect())
    }

    /// The kubelet's loop for one container: start, wait for the exit,
    /// back off (initial, doubling), restart; `starts` times in all.
    /// Returns each attempt's (container id, exit code, reason).
    pub(crate) async fn crash_loop(
        &mut self,
        pod: &Pod,
        spec: &ContainerSpec<'_>,
        starts: u32,
        initial_backoff: Duration,
    ) -> Vec<(String, i32, String)> {
        let mut out = Vec::new();
        let mut backoff = initial_backoff;
        for attempt in 0..starts {
            let id = self.start(pod, spec, attempt).await;
            let (code, reason) = self.wait_exit(&id, Duration::from_secs(60)).await;
            out.push((id.clone(), code, reason));
            if attempt + 1 < starts {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            // The kubelet keeps the last dead container; removing it at
            // once is enough here and keeps the runtime clean.
            self.remove_container(&id).await;
        }
        out
    }
}

/// One pod with one container, run to the container's exit, as most tests
/// need it: returns the pod and the container's id, exit code and reason.
/// `started` runs once the container runs (e.g. to publish it to a
/// stand-in API server, as the kubelet would).
pub(crate) fn run_to_exit(
    namespace: &str,
    name: &str,
    spec: &ContainerSpec<'_>,
    started: impl FnOnce(&Pod, &str),
) -> (Pod, String, i32, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut k = Kubelet::connect().await;
        let pod = k.run_pod(namespace, name).await;
        let id = k.start(&pod, spec, 0).await;
        started(&pod, &id);
        let (code, reason) = k.wait_exit(&id, Duration::from_secs(60)).await;
        k.remove_container(&id).await;
        k.remove_pod(&pod).await;
        (pod, id, code, reason)
    })
}

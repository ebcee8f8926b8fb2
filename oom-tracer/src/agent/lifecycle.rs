//! Container lifecycles from kernel records: a container starts with the
//! first exec in its cgroup, its metadata is completed as sources learn
//! it, and containers already running at startup are rediscovered.
use super::{
    Agent, AgentError,
    containers::{CgroupRole, Tracked, role},
    read_limit,
};
use crate::{
    cgroup::pod::procs, clock::BootClock, kubepath, record::Body, translate::ContainerMeta,
};

/// A container cgroup seen for the first time.
pub(super) struct Sighting<'a> {
    pub cgroup_id: u64,
    pub path: &'a str,
    pub pod_uid: &'a str,
    /// The runtime's container id.
    pub id: &'a str,
    /// Its main process (the first exec, or the lowest pid when discovered).
    pub pid: u32,
    pub comm: &'a str,
    pub at_ns: u64,
    /// Found running at the agent's start.
    pub discovered: bool,
}

impl Agent<'_> {
    /// Starts tracking a container cgroup, once.
    pub(super) async fn track(&mut self, c: Sighting<'_>) -> Result<(), AgentError> {
        let Sighting {
            cgroup_id,
            path,
            pod_uid,
            id,
            pid,
            comm,
            at_ns,
            discovered,
        } = c;
        self.meta.refresh_for(id).await;
        // The pod sandbox runs `pause`: the runtime says so, or its comm does.
        if self.meta.is_sandbox(id) || comm == "pause" {
            self.ctrs.skip(cgroup_id);
            return Ok(());
        }
        let info = self.meta.container(pod_uid, id);
        let pod_path = kubepath::pod_path(path).unwrap_or("").to_owned();
        let pod_cgroup_id = self.tr.index.id_of(&pod_path).unwrap_or(0);
        let t = Tracked {
            cgroup_id,
            path: path.to_owned(),
            info,
            main_pid: pid,
            started_ns: at_ns,
            exited: false,
        };
        let limit = read_limit(&self.hierarchy, path);
        let pod_limit = read_limit(&self.hierarchy, &pod_path);
        self.tr.add_container(
            cgroup_id,
            path,
            ContainerMeta {
                pod: t.pod_ref(),
                container: t.container_ref(),
                pod_cgroup_id,
                limit_bytes: limit,
                pod_limit_bytes: pod_limit,
            },
        );
        let time = self.tr.time(at_ns);
        self.emit(
            time.clone(),
            Body::ContainerStart {
                pod: t.pod_ref(),
                container: t.container_ref(),
                cgroup: path.to_owned(),
                pid,
                command: Vec::new(),
                memory_limit_bytes: limit,
                pod_memory_limit_bytes: pod_limit,
                discovered,
            },
        )?;
        if !discovered
            && let Some(prev) = self
                .ctrs
                .take_previous(&t.info.pod.uid, t.info.name.as_deref())
        {
            self.emit(
                time,
                Body::Restart {
                    pod: t.pod_ref(),
                    container: t.container_ref(),
                    restart_count: t.info.restart_count.unwrap_or(0),
                    backoff_ms: at_ns.saturating_sub(prev.at_ns) / 1_000_000,
                    last_reason: prev.reason,
                },
            )?;
        }
        self.ctrs.track(t);
        Ok(())
    }

    /// Containers running before the agent started.
    pub(super) async fn discover(&mut self) -> Result<(), AgentError> {
        self.meta.refresh().await;
        let found: Vec<(u64, String)> = self
            .tr
            .index
            .entries()
            .map(|(id, p)| (id, p.to_owned()))
            .collect();
        for (id, path) in found {
            if let CgroupRole::Container { pod_uid, id: cid } = role(&path) {
                let mut pids = procs(&self.hierarchy.dir(&path));
                pids.sort_unstable();
                let Some(&pid) = pids.first() else { continue };
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                self.track(Sighting {
                    cgroup_id: id,
                    path: &path,
                    pod_uid: &pod_uid,
                    id: &cid,
                    pid: pid as u32,
                    comm: comm.trim(),
                    at_ns: BootClock::boot_now_ns(),
                    discovered: true,
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Completes a tracked container's metadata if a source learnt it since
    /// (the kubelet writes a container's id into the pod status only after
    /// it started, so the API often knows a container later than the kernel).
    pub(super) fn complete_meta(&mut self, memcg: u64) {
        let Some(t) = self.ctrs.get(memcg) else {
            return;
        };
        if t.info.name.is_some() && t.info.pod.name.is_some() {
            return;
        }
        let info = self.meta.container(&t.info.pod.uid, &t.info.id);
        if info == t.info {
            return;
        }
        let mut t = t.clone();
        t.info = info;
        if let Some(m) = self.tr.container_meta(memcg) {
            let mut m = m.clone();
            m.pod = t.pod_ref();
            m.container = t.container_ref();
            self.tr.add_container(memcg, &t.path, m);
        }
        self.ctrs.track(t);
    }
}

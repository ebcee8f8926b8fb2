//! A Pod's spec, translated into CRI requests the way the kubelet does it
//! (pkg/kubelet/kuberuntime: the sandbox config, the container config, the
//! security context, the pod cgroup; pkg/kubelet/prober: the probes).
//!
//! Every field of the manifest is read through [`Fields`], which remembers
//! what was read: a field that the translation does not handle is reported
//! by its path (`spec.containers[0].lifecycle`), so the manifests and this
//! translation cannot drift apart silently. Fields that are not the
//! kubelet's business (the scheduler's `tolerations`, the DaemonSet
//! controller's `updateStrategy`) are read too, each with the reason it
//! needs no translation here, or with the check that stands in for it.
//!
//! Where each part is:
//! - `fields`: the [`Fields`] reader and its [`Ledger`];
//! - `pod`: the pod as a whole: scheduling checks, the sandbox config,
//!   the [`PodPlan`];
//! - `volumes`: hostPath volumes, the service account volume, each
//!   container's mounts and its termination message file;
//! - `container`: one container's config, the [`ContainerPlan`];
//! - `env`: a container's environment;
//! - `security`: namespaces, the security context (capabilities, seccomp,
//!   masked and read-only paths, users);
//! - `resources`: the QoS class, container and pod cgroup limits, and the
//!   quantities (`milli`, `bytes`, `mem_total`);
//! - `probe`: readiness and liveness probes.

mod container;
mod env;
mod fields;
mod pod;
mod probe;
mod resources;
mod security;
mod volumes;

use std::{collections::HashMap, net::SocketAddr, path::PathBuf};

use serde_json::{Value, json};

pub(crate) use self::{
    container::ContainerPlan,
    fields::{Fields, Ledger},
    pod::{PodFile, PodPlan},
    probe::Probe,
    resources::{PodCgroup, bytes, mem_total, milli},
    volumes::SERVICE_ACCOUNT_DIR,
};

/// What the node offers the pod: the kubelet's settings and paths.
pub(crate) struct Node {
    pub name: String,
    /// The labels the scheduler matches `nodeSelector` against.
    pub labels: HashMap<String, String>,
    /// The API server as pods reach it (the `kubernetes` service):
    /// KUBERNETES_SERVICE_HOST and _PORT.
    pub api: SocketAddr,
    /// The cluster CA, PEM (`ca.crt` in every service account volume).
    pub ca_pem: String,
    /// hostPath volumes whose path on this machine differs from the
    /// manifest's (the node's runtime directory), and why.
    pub host_paths: Vec<(&'static str, PathBuf, &'static str)>,
    /// The kubelet's pod directories (/var/lib/kubelet/pods).
    pub pods_dir: PathBuf,
    /// The kubelet's pod log directories (/var/log/pods).
    pub logs_dir: PathBuf,
    /// MemTotal, for the burstable oom_score_adj.
    pub memory_capacity: i64,
    /// Whether the runtime makes read-only mounts recursively read-only
    /// (its RuntimeStatus handler feature `recursive_read_only_mounts`).
    pub recursive_read_only: bool,
}

impl Node {
    /// The token the API server issues for a service account on this node
    /// (the stand-in checks it on every request).
    pub(crate) fn token(&self, namespace: &str, service_account: &str) -> String {
        format!("test-token.{}.{namespace}.{service_account}", self.name)
    }

    /// Where a hostPath volume's `path` is on this machine.
    pub(crate) fn host_path(&self, path: &str) -> PathBuf {
        self.host_paths
            .iter()
            .find(|(p, _, _)| *p == path)
            .map_or_else(|| PathBuf::from(path), |(_, here, _)| here.clone())
    }
}

/// The Pod object a controller would create from a pod template, on `node`.
pub(crate) fn pod_from_template(
    template: &Value,
    namespace: &str,
    generate_name: &str,
    owner: &Value,
) -> Value {
    let mut metadata = template["metadata"].clone();
    let suffix = &super::kubelet::new_uid()[..5];
    metadata["name"] = json!(format!("{generate_name}{suffix}"));
    metadata["generateName"] = json!(generate_name);
    metadata["namespace"] = json!(namespace);
    metadata["ownerReferences"] = json!([{
        "apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": "00000000-0000-4000-8000-000000000000",
        "controller": true, "blockOwnerDeletion": true,
    }]);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template["spec"].clone(),
    })
}

/// Translates `pod` (a Pod object) for `node`: `Err` lists every field the
/// translation does not handle, by path.
pub(crate) fn translate(
    pod: &Value,
    node: &Node,
    where_from: &str,
) -> Result<PodPlan, Vec<String>> {
    let sink = Ledger::default();
    let plan = pod::translate_pod(pod, node, &sink, where_from);
    let unhandled = sink.unhandled();
    if unhandled.is_empty() {
        Ok(plan)
    } else {
        Err(unhandled)
    }
}

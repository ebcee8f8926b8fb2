//! The pod as a whole: its metadata, the scheduler's checks, its
//! lifecycle settings, the sandbox config, and the [`PodPlan`] that holds
//! it all.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use k8s_cri::v1::{
    LinuxPodSandboxConfig, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PortMapping,
};
use serde_json::{Value, json};

use super::{
    ContainerPlan, Fields, Ledger, Node, PodCgroup,
    container::{ContainerContext, translate_container},
    resources::{self, Qos},
    security, volumes,
};

/// Files the kubelet writes for the pod and mounts into its containers.
pub(crate) struct PodFile {
    pub path: PathBuf,
    pub contents: String,
}

/// A pod, translated.
pub(crate) struct PodPlan {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub sandbox: PodSandboxConfig,
    pub cgroup: PodCgroup,
    pub containers: Vec<ContainerPlan>,
    pub restart_policy: String,
    pub grace_period: Duration,
    /// The kubelet's directory for this pod (service account volume,
    /// termination logs, etc-hosts).
    pub dir: PathBuf,
    pub files: Vec<PodFile>,
    /// The Pod as the API server holds it (for the stand-in API server).
    pub object: Value,
    /// The service account token the pod's requests carry.
    pub token: Option<String>,
}

/// The pod's identity: its metadata, with the uid the API server gives it.
struct PodMeta {
    name: String,
    namespace: String,
    uid: String,
    /// The sandbox's labels: the pod's, and its identity
    /// (`io.kubernetes.pod.*`).
    labels: HashMap<String, String>,
    /// The sandbox's annotations: the pod's, and where it came from.
    annotations: HashMap<String, String>,
}

/// The whole pod, its fields read through `sink`.
pub(super) fn translate_pod(pod: &Value, node: &Node, sink: &Ledger, where_from: &str) -> PodPlan {
    let top = Fields::new(pod, "", sink);
    top.skip("apiVersion", "v1: the Pod's API version");
    assert_eq!(top.str("kind"), Some("Pod"), "{where_from}: not a Pod");
    let meta = metadata(&top);
    let spec = top.obj("spec").expect("spec");
    check_scheduling(&spec, node, where_from);
    let (restart_policy, grace_period) = lifecycle(&spec);
    let (namespaces, host_network) = security::pod_namespaces(&spec);
    let dir = node.pods_dir.join(&meta.uid);
    let mut files = Vec::new();
    let service_account = volumes::service_account(&spec, node, &meta.namespace, &dir, &mut files);
    let volumes = volumes::host_path_volumes(&spec, node, where_from);

    let cx = ContainerContext {
        node,
        namespace: &meta.namespace,
        pod_name: &meta.name,
        uid: &meta.uid,
        labels: &meta.labels,
        namespaces: &namespaces,
        volumes: &volumes,
        sa_dir: service_account.mounted(),
        dir: &dir,
        grace_period,
        where_from,
    };
    let (mut containers, port_mappings, qos) = translate_containers(&spec, &cx, &mut files);
    assert!(!containers.is_empty(), "{where_from}: no containers");
    let cgroup = resources::pod_cgroup(&meta.uid, &qos, &containers);
    // The kubelet fills in the oom_score_adj once the QoS class is known.
    for c in &mut containers {
        let res = c.config.linux.as_mut().unwrap().resources.as_mut().unwrap();
        res.oom_score_adj = qos.oom_score_adj(node);
    }
    let sandbox = sandbox_config(
        &meta,
        node,
        host_network,
        &namespaces,
        &cgroup,
        port_mappings,
    );
    PodPlan {
        object: scheduled(pod, &meta, node),
        uid: meta.uid,
        name: meta.name,
        namespace: meta.namespace,
        sandbox,
        cgroup,
        containers,
        restart_policy,
        grace_period,
        dir,
        files,
        token: service_account.token,
    }
}

/// Every entry of `spec.containers`, translated, with the sandbox's port
/// mappings and the pod's QoS class, which they all make up.
fn translate_containers(
    spec: &Fields<'_>,
    cx: &ContainerContext<'_>,
    files: &mut Vec<PodFile>,
) -> (Vec<ContainerPlan>, Vec<PortMapping>, Qos) {
    let mut containers = Vec::new();
    let mut port_mappings = Vec::new();
    let mut qos = Qos::default();
    for c in spec.list("containers") {
        containers.push(translate_container(
            &c,
            cx,
            &mut port_mappings,
            &mut qos,
            files,
        ));
    }
    (containers, port_mappings, qos)
}

/// `metadata`, and the uid the pod gets.
fn metadata(top: &Fields<'_>) -> PodMeta {
    let md = top.obj("metadata").expect("metadata");
    let name = md.str("name").expect("metadata.name").to_owned();
    let namespace = md.str("namespace").unwrap_or("default").to_owned();
    let mut labels = md.string_map("labels");
    let mut annotations = md.string_map("annotations");
    md.skip(
        "generateName",
        "the controller's name prefix; `name` is set",
    );
    md.skip(
        "ownerReferences",
        "the owning controller; the kubelet ignores it",
    );
    let uid = crate::common::kubelet::new_uid();
    for (k, v) in [
        ("io.kubernetes.pod.name", name.as_str()),
        ("io.kubernetes.pod.namespace", namespace.as_str()),
        ("io.kubernetes.pod.uid", uid.as_str()),
    ] {
        labels.insert(k.into(), v.into());
    }
    annotations.insert("kubernetes.io/config.source".into(), "api".into());
    PodMeta {
        name,
        namespace,
        uid,
        labels,
        annotations,
    }
}

/// The scheduler's part: this node must be one the pod may run on.
fn check_scheduling(spec: &Fields<'_>, node: &Node, where_from: &str) {
    let selector = spec.string_map("nodeSelector");
    for (k, v) in &selector {
        assert_eq!(
            node.labels.get(k),
            Some(v),
            "{where_from}: nodeSelector {k}={v} does not match the node's labels {:?}",
            node.labels
        );
    }
    spec.skip(
        "tolerations",
        "the scheduler's: taints decide where a pod may go; the node has none",
    );
}

/// `restartPolicy` and `terminationGracePeriodSeconds`.
fn lifecycle(spec: &Fields<'_>) -> (String, Duration) {
    let restart_policy = spec.str("restartPolicy").unwrap_or("Always").to_owned();
    if !["Always", "OnFailure", "Never"].contains(&restart_policy.as_str()) {
        spec.unhandled("restartPolicy", &restart_policy);
    }
    let grace_period = Duration::from_secs(
        spec.i64("terminationGracePeriodSeconds")
            .unwrap_or(30)
            .try_into()
            .unwrap(),
    );
    (restart_policy, grace_period)
}

/// The sandbox config: the pod's identity, its logs, ports and namespaces,
/// and the pod cgroup as its parent.
fn sandbox_config(
    meta: &PodMeta,
    node: &Node,
    host_network: bool,
    namespaces: &NamespaceOption,
    cgroup: &PodCgroup,
    port_mappings: Vec<PortMapping>,
) -> PodSandboxConfig {
    let log_directory = node
        .logs_dir
        .join(format!("{}_{}_{}", meta.namespace, meta.name, meta.uid))
        .display()
        .to_string();
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            namespace: meta.namespace.clone(),
            attempt: 0,
        }),
        // The kubelet sets no hostname for host-network pods.
        hostname: if host_network {
            String::new()
        } else {
            meta.name.clone()
        },
        log_directory,
        port_mappings,
        labels: meta.labels.clone(),
        annotations: meta.annotations.clone(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup.path.clone(),
            security_context: Some(security::sandbox_security(namespaces)),
            resources: Some(cgroup.sandbox_resources()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Pod as the API server stores it once scheduled.
fn scheduled(pod: &Value, meta: &PodMeta, node: &Node) -> Value {
    let mut object = pod.clone();
    object["metadata"]["uid"] = json!(meta.uid);
    object["metadata"]["namespace"] = json!(meta.namespace);
    object["spec"]["nodeName"] = json!(node.name);
    object
}

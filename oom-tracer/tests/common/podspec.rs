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
#![allow(dead_code)]

use std::{
    cell::RefCell,
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use k8s_cri::v1::{
    Capability, ContainerConfig, ContainerMetadata, ImageSpec, Int64Value, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PortMapping, SecurityProfile, security_profile::ProfileType,
};
use serde_json::{Map, Value, json};

/// CRI NamespaceMode.
const POD: i32 = 0;
const CONTAINER: i32 = 1;
const NODE: i32 = 2;
/// The kubelet's CFS period (100 ms) and its share arithmetic.
const QUOTA_PERIOD: i64 = 100_000;
const MIN_SHARES: i64 = 2;
const SHARES_PER_CPU: i64 = 1024;
/// What the kubelet masks and makes read-only in /proc and /sys of every
/// unprivileged container (pkg/securitycontext: procMount Default).
const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];
/// Where the service account admission plugin mounts the token volume.
pub(crate) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What the translation read of a manifest: every field present, every
/// field read, and values it does not handle. Several [`Fields`] views of
/// the same object share it.
#[derive(Default)]
pub(crate) struct Ledger {
    seen: RefCell<BTreeSet<String>>,
    read: RefCell<BTreeSet<String>>,
    values: RefCell<Vec<String>>,
}

impl Ledger {
    /// The paths of the fields nobody read, and the values not handled.
    pub(crate) fn unhandled(&self) -> Vec<String> {
        let read = self.read.borrow();
        let mut out: Vec<String> = self
            .seen
            .borrow()
            .iter()
            .filter(|p| !read.contains(*p))
            .cloned()
            .collect();
        out.extend(self.values.borrow().iter().cloned());
        out
    }
}

/// One object of the manifest, read field by field through the [`Ledger`].
pub(crate) struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
    sink: &'a Ledger,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(value: &'a Value, path: impl Into<String>, sink: &'a Ledger) -> Self {
        let path = path.into();
        let map = value
            .as_object()
            .unwrap_or_else(|| panic!("{path}: not an object"));
        let fields = Self { path, map, sink };
        for key in map.keys() {
            sink.seen.borrow_mut().insert(fields.path(key));
        }
        fields
    }

    pub(crate) fn path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        let v = self.map.get(key)?;
        self.sink.read.borrow_mut().insert(self.path(key));
        Some(v)
    }

    /// Marks a field handled without translating it; `_why` says why it
    /// needs no translation (it is for the reader of the code).
    pub(crate) fn skip(&self, key: &str, _why: &str) -> Option<&'a Value> {
        self.get(key)
    }

    pub(crate) fn str(&self, key: &str) -> Option<&'a str> {
        self.get(key).map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("{}: not a string", self.path(key)))
        })
    }

    pub(crate) fn i64(&self, key: &str) -> Option<i64> {
        self.get(key).map(|v| {
            v.as_i64()
                .unwrap_or_else(|| panic!("{}: not an integer", self.path(key)))
        })
    }

    pub(crate) fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| {
            v.as_bool()
                .unwrap_or_else(|| panic!("{}: not a boolean", self.path(key)))
        })
    }

    pub(crate) fn obj(&self, key: &str) -> Option<Fields<'a>> {
        self.get(key)
            .map(|v| Fields::new(v, self.path(key), self.sink))
    }

    /// A list of objects (empty when absent).
    pub(crate) fn list(&self, key: &str) -> Vec<Fields<'a>> {
        let path = self.path(key);
        self.get(key)
            .map(|v| {
                v.as_array()
                    .unwrap_or_else(|| panic!("{path}: not a list"))
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Fields::new(item, format!("{path}[{i}]"), self.sink))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A list of strings (empty when absent).
    pub(crate) fn strings(&self, key: &str) -> Vec<String> {
        let path = self.path(key);
        self.get(key)
            .map(|v| {
                v.as_array()
                    .unwrap_or_else(|| panic!("{path}: not a list"))
                    .iter()
                    .map(|s| {
                        s.as_str()
                            .unwrap_or_else(|| panic!("{path}: not strings"))
                            .to_owned()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A map of strings (empty when absent).
    pub(crate) fn string_map(&self, key: &str) -> HashMap<String, String> {
        let path = self.path(key);
        self.get(key)
            .map(|v| {
                v.as_object()
                    .unwrap_or_else(|| panic!("{path}: not a map"))
                    .iter()
                    .map(|(k, v)| {
                        let v = v
                            .as_str()
                            .unwrap_or_else(|| panic!("{path}.{k}: not a string"));
                        (k.clone(), v.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records a value the translation does not handle.
    pub(crate) fn unhandled(&self, key: &str, value: impl std::fmt::Display) {
        self.sink
            .values
            .borrow_mut()
            .push(format!("{} = {value}", self.path(key)));
    }
}

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

/// An HTTP probe, as the kubelet's prober runs it.
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    pub path: String,
    pub port: u16,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

/// One container of the pod, ready to be created.
pub(crate) struct ContainerPlan {
    pub name: String,
    pub image: String,
    /// The container config; `metadata.attempt`, the restart count
    /// annotation and `log_path` are set per attempt by [`ContainerPlan::attempt`].
    pub config: ContainerConfig,
    /// runAsNonRoot: the kubelet checks the uid against the image's user.
    pub run_as_non_root: bool,
    pub run_as_user: Option<i64>,
    pub pull_policy: String,
    pub readiness: Option<Probe>,
    pub liveness: Option<Probe>,
    pub memory_limit: Option<i64>,
}

impl ContainerPlan {
    /// The config for restart number `attempt`.
    pub(crate) fn attempt(&self, attempt: u32) -> ContainerConfig {
        let mut c = self.config.clone();
        c.metadata.as_mut().unwrap().attempt = attempt;
        c.annotations.insert(
            "io.kubernetes.container.restartCount".into(),
            attempt.to_string(),
        );
        c.log_path = format!("{}/{attempt}.log", self.name);
        c
    }
}

/// The pod cgroup's limits (the kubelet's pod container manager).
#[derive(Clone, Debug, Default)]
pub(crate) struct PodCgroup {
    /// e.g. /kubepods/burstable/pod<uid>
    pub path: String,
    pub memory_limit: Option<i64>,
    pub cpu_shares: i64,
    pub cpu_quota: Option<i64>,
}

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
    let plan = translate_pod(pod, node, &sink, where_from);
    let unhandled = sink.unhandled();
    if unhandled.is_empty() {
        Ok(plan)
    } else {
        Err(unhandled)
    }
}

fn translate_pod(pod: &Value, node: &Node, sink: &Ledger, where_from: &str) -> PodPlan {
    let top = Fields::new(pod, "", sink);
    top.skip("apiVersion", "v1: the Pod's API version");
    assert_eq!(top.str("kind"), Some("Pod"), "{where_from}: not a Pod");
    let md = top.obj("metadata").expect("metadata");
    let name = md.str("name").expect("metadata.name").to_owned();
    let namespace = md.str("namespace").unwrap_or("default").to_owned();
    let labels = md.string_map("labels");
    let annotations = md.string_map("annotations");
    md.skip(
        "generateName",
        "the controller's name prefix; `name` is set",
    );
    md.skip(
        "ownerReferences",
        "the owning controller; the kubelet ignores it",
    );
    let uid = super::kubelet::new_uid();
    let spec = top.obj("spec").expect("spec");

    // The scheduler's part: this node must be one the pod may run on.
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
    let host_network = spec.bool("hostNetwork").unwrap_or(false);
    let host_pid = spec.bool("hostPID").unwrap_or(false);
    let host_ipc = spec.bool("hostIPC").unwrap_or(false);
    let namespaces = NamespaceOption {
        network: if host_network { NODE } else { POD },
        pid: if host_pid { NODE } else { CONTAINER },
        ipc: if host_ipc { NODE } else { POD },
        ..Default::default()
    };

    // The service account admission plugin: a token volume in every
    // container unless automounting is off.
    let service_account = spec
        .str("serviceAccountName")
        .unwrap_or("default")
        .to_owned();
    let automount = spec.bool("automountServiceAccountToken").unwrap_or(true);
    let dir = node.pods_dir.join(&uid);
    let mut files = Vec::new();
    let token = automount.then(|| node.token(&namespace, &service_account));
    let sa_dir = dir.join("volumes/kube-api-access");
    if let Some(token) = &token {
        for (file, contents) in [
            ("token", token.clone()),
            ("ca.crt", node.ca_pem.clone()),
            ("namespace", namespace.clone()),
        ] {
            files.push(PodFile {
                path: sa_dir.join(file),
                contents,
            });
        }
    }

    // Volumes: hostPath only; the kubelet checks the type before mounting.
    let mut volumes: HashMap<String, (PathBuf, String)> = HashMap::new();
    for v in spec.list("volumes") {
        let vname = v.str("name").expect("volume name").to_owned();
        let Some(hp) = v.obj("hostPath") else {
            continue; // any other volume source stays unread: unhandled
        };
        let path = hp.str("path").expect("hostPath.path");
        let here = node.host_path(path);
        let kind = hp.str("type").unwrap_or("");
        match kind {
            "" => {}
            "Directory" => assert!(
                here.is_dir(),
                "{where_from}: volume {vname}: hostPath type check failed: {} is not a \
                 directory (the kubelet would not start the pod)",
                here.display()
            ),
            other => hp.unhandled("type", other),
        }
        volumes.insert(vname, (here, path.to_owned()));
    }

    let mut pod_labels = labels.clone();
    for (k, v) in [
        ("io.kubernetes.pod.name", name.as_str()),
        ("io.kubernetes.pod.namespace", namespace.as_str()),
        ("io.kubernetes.pod.uid", uid.as_str()),
    ] {
        pod_labels.insert(k.into(), v.into());
    }
    let mut pod_annotations = annotations.clone();
    pod_annotations.insert("kubernetes.io/config.source".into(), "api".into());

    let mut containers = Vec::new();
    let mut port_mappings = Vec::new();
    let mut qos = Qos::default();
    let mut pod_memory: Option<i64> = Some(0);
    let mut pod_quota: Option<i64> = Some(0);
    let mut pod_shares = 0;
    for c in spec.list("containers") {
        let plan = translate_container(
            &c,
            &ContainerContext {
                node,
                namespace: &namespace,
                pod_name: &name,
                uid: &uid,
                labels: &pod_labels,
                namespaces: &namespaces,
                volumes: &volumes,
                sa_dir: token.as_ref().map(|_| sa_dir.as_path()),
                dir: &dir,
                grace_period,
                where_from,
            },
            &mut port_mappings,
            &mut qos,
            &mut files,
        );
        pod_memory = pod_memory.zip(plan.memory_limit).map(|(a, b)| a + b);
        let res = &plan
            .config
            .linux
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap();
        pod_quota = pod_quota
            .zip((res.cpu_quota > 0).then_some(res.cpu_quota))
            .map(|(a, b)| a + b);
        pod_shares += res.cpu_shares;
        containers.push(plan);
    }
    assert!(!containers.is_empty(), "{where_from}: no containers");
    let qos_dir = match qos.class() {
        QosClass::Guaranteed => String::new(),
        QosClass::Burstable => "/burstable".into(),
        QosClass::BestEffort => "/besteffort".into(),
    };
    let cgroup = PodCgroup {
        path: format!("/kubepods{qos_dir}/pod{uid}"),
        memory_limit: pod_memory,
        cpu_shares: pod_shares.max(MIN_SHARES),
        cpu_quota: pod_quota,
    };
    // The kubelet fills in the oom_score_adj once the QoS class is known.
    for c in &mut containers {
        let res = c.config.linux.as_mut().unwrap().resources.as_mut().unwrap();
        res.oom_score_adj = qos.oom_score_adj(node);
    }
    let log_directory = node
        .logs_dir
        .join(format!("{namespace}_{name}_{uid}"))
        .display()
        .to_string();
    let sandbox = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: namespace.clone(),
            attempt: 0,
        }),
        // The kubelet sets no hostname for host-network pods.
        hostname: if host_network {
            String::new()
        } else {
            name.clone()
        },
        log_directory,
        port_mappings,
        labels: pod_labels,
        annotations: pod_annotations,
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup.path.clone(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces.clone()),
                // No pod-level seccompProfile, and the kubelet's
                // --seccomp-default is off: unconfined, as the kubelet does.
                seccomp: Some(SecurityProfile {
                    profile_type: ProfileType::Unconfined as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            resources: Some(LinuxContainerResources {
                cpu_period: if cgroup.cpu_quota.is_some() {
                    QUOTA_PERIOD
                } else {
                    0
                },
                cpu_quota: cgroup.cpu_quota.unwrap_or(0),
                cpu_shares: cgroup.cpu_shares,
                memory_limit_in_bytes: cgroup.memory_limit.unwrap_or(0),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    // The Pod as the API server stores it once scheduled.
    let mut object = pod.clone();
    object["metadata"]["uid"] = json!(uid);
    object["metadata"]["namespace"] = json!(namespace);
    object["spec"]["nodeName"] = json!(node.name);
    PodPlan {
        uid,
        name,
        namespace,
        sandbox,
        cgroup,
        containers,
        restart_policy,
        grace_period,
        dir,
        files,
        object,
        token,
    }
}

struct ContainerContext<'a> {
    node: &'a Node,
    namespace: &'a str,
    pod_name: &'a str,
    uid: &'a str,
    labels: &'a HashMap<String, String>,
    namespaces: &'a NamespaceOption,
    volumes: &'a HashMap<String, (PathBuf, String)>,
    sa_dir: Option<&'a Path>,
    dir: &'a Path,
    grace_period: Duration,
    where_from: &'a str,
}

fn translate_container(
    c: &Fields<'_>,
    cx: &ContainerContext<'_>,
    port_mappings: &mut Vec<PortMapping>,
    qos: &mut Qos,
    files: &mut Vec<PodFile>,
) -> ContainerPlan {
    let name = c.str("name").expect("container name").to_owned();
    let image = c.str("image").expect("container image").to_owned();
    let pull_policy = c
        .str("imagePullPolicy")
        .unwrap_or("IfNotPresent")
        .to_owned();
    if !["IfNotPresent", "Never"].contains(&pull_policy.as_str()) {
        // Always (or :latest) would pull, and there is no registry here.
        c.unhandled("imagePullPolicy", &pull_policy);
    }
    let command = c.strings("command");
    let args = c.strings("args");
    let working_dir = c.str("workingDir").unwrap_or("").to_owned();
    for s in command.iter().chain(&args) {
        if s.contains("$(") {
            c.unhandled("args", format!("{s} (variable expansion)"));
        }
    }

    // Ports: the sandbox's port mappings, and names for the probes.
    let mut ports = HashMap::new();
    for p in c.list("ports") {
        let port = p.i64("containerPort").expect("containerPort");
        let protocol = match p.str("protocol").unwrap_or("TCP") {
            "TCP" => 0,
            "UDP" => 1,
            "SCTP" => 2,
            other => {
                p.unhandled("protocol", other);
                0
            }
        };
        if let Some(n) = p.str("name") {
            ports.insert(n.to_owned(), port);
        }
        if let Some(h) = p.i64("hostPort") {
            p.unhandled("hostPort", h);
        }
        port_mappings.push(PortMapping {
            protocol,
            container_port: port.try_into().unwrap(),
            ..Default::default()
        });
    }

    // Environment: the `kubernetes` service's variables (always injected),
    // then the container's own, with the downward API resolved.
    let api = cx.node.api;
    let mut envs: Vec<KeyValue> = [
        ("KUBERNETES_SERVICE_HOST", api.ip().to_string()),
        ("KUBERNETES_SERVICE_PORT", api.port().to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", api.port().to_string()),
        ("KUBERNETES_PORT", format!("tcp://{api}")),
        (
            &format!("KUBERNETES_PORT_{}_TCP", api.port()),
            format!("tcp://{api}"),
        ),
        (
            &format!("KUBERNETES_PORT_{}_TCP_PROTO", api.port()),
            "tcp".into(),
        ),
        (
            &format!("KUBERNETES_PORT_{}_TCP_PORT", api.port()),
            api.port().to_string(),
        ),
        (
            &format!("KUBERNETES_PORT_{}_TCP_ADDR", api.port()),
            api.ip().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| KeyValue {
        key: k.to_owned(),
        value: v,
    })
    .collect();
    for e in c.list("env") {
        let key = e.str("name").expect("env name").to_owned();
        let value = if let Some(v) = e.str("value") {
            if v.contains("$(") {
                e.unhandled("value", format!("{v} (variable expansion)"));
            }
            v.to_owned()
        } else if let Some(from) = e.obj("valueFrom") {
            let Some(field) = from.obj("fieldRef") else {
                continue; // other sources stay unread: unhandled
            };
            field.skip("apiVersion", "v1");
            match field.str("fieldPath").expect("fieldPath") {
                "spec.nodeName" => cx.node.name.clone(),
                "metadata.name" => cx.pod_name.to_owned(),
                "metadata.namespace" => cx.namespace.to_owned(),
                "metadata.uid" => cx.uid.to_owned(),
                other => {
                    field.unhandled("fieldPath", other);
                    continue;
                }
            }
        } else {
            String::new()
        };
        envs.retain(|kv| kv.key != key);
        envs.push(KeyValue { key, value });
    }

    // Mounts: volumeMounts, then what the kubelet adds to every container.
    let mut mounts = Vec::new();
    for m in c.list("volumeMounts") {
        let vname = m.str("name").expect("volumeMount name");
        let path = m.str("mountPath").expect("mountPath");
        let readonly = m.bool("readOnly").unwrap_or(false);
        if let Some(p) = m.str("mountPropagation")
            && p != "None"
        {
            m.unhandled("mountPropagation", p);
        }
        // The kubelet: Enabled needs the runtime's support or the pod
        // fails; IfPossible uses it when there and falls back otherwise.
        let recursive_read_only = match m.str("recursiveReadOnly").unwrap_or("Disabled") {
            "Disabled" => false,
            "IfPossible" => readonly && cx.node.recursive_read_only,
            "Enabled" => {
                assert!(
                    readonly && cx.node.recursive_read_only,
                    "{}: recursiveReadOnly Enabled, but the runtime cannot (or readOnly is \
                     false): the kubelet would not start the container",
                    m.path("recursiveReadOnly")
                );
                true
            }
            other => {
                m.unhandled("recursiveReadOnly", other);
                false
            }
        };
        let (host, _) = cx
            .volumes
            .get(vname)
            .unwrap_or_else(|| panic!("{}: volumeMount {vname}: no such volume", cx.where_from));
        mounts.push(Mount {
            container_path: path.to_owned(),
            host_path: host.display().to_string(),
            readonly,
            recursive_read_only,
            ..Default::default()
        });
    }
    if let Some(sa) = cx.sa_dir {
        mounts.push(Mount {
            container_path: SERVICE_ACCOUNT_DIR.into(),
            host_path: sa.display().to_string(),
            readonly: true,
            ..Default::default()
        });
    }
    // The termination message file (terminationMessagePath, default
    // /dev/termination-log), one per container, writable.
    let termination = c
        .str("terminationMessagePath")
        .unwrap_or("/dev/termination-log")
        .to_owned();
    c.skip(
        "terminationMessagePolicy",
        "read by the kubelet after the exit; the file is mounted either way",
    );
    let termination_file = cx.dir.join("containers").join(&name).join("termination");
    files.push(PodFile {
        path: termination_file.clone(),
        contents: String::new(),
    });
    mounts.push(Mount {
        container_path: termination.clone(),
        host_path: termination_file.display().to_string(),
        ..Default::default()
    });

    // Resources: the container's cgroup, and the pod's QoS class.
    let res = c.obj("resources");
    let quantity = |section: &str, what: &str| -> Option<i64> {
        let r = res.as_ref()?;
        let s = r.obj(section)?;
        let v = s.get(what)?;
        let text = match v {
            Value::String(t) => t.clone(),
            Value::Number(n) => n.to_string(),
            _ => panic!("{}: not a quantity", s.path(what)),
        };
        Some(if what == "cpu" {
            milli(&text)
        } else {
            bytes(&text)
        })
    };
    let mem_limit = quantity("limits", "memory");
    let cpu_limit = quantity("limits", "cpu");
    // Requests default to the limits (the API server's defaulting).
    let mem_request = quantity("requests", "memory").or(mem_limit);
    let cpu_request = quantity("requests", "cpu").or(cpu_limit);
    qos.add(cpu_request, cpu_limit, mem_request, mem_limit);
    let cpu_shares =
        cpu_request.map_or(MIN_SHARES, |m| (m * SHARES_PER_CPU / 1000).max(MIN_SHARES));
    let (cpu_period, cpu_quota) = cpu_limit.map_or((0, 0), |m| {
        (QUOTA_PERIOD, (m * QUOTA_PERIOD / 1000).max(1000))
    });
    let resources = LinuxContainerResources {
        cpu_period,
        cpu_quota,
        cpu_shares,
        memory_limit_in_bytes: mem_limit.unwrap_or(0),
        ..Default::default()
    };

    // The security context (no pod-level one to merge: a pod-level
    // securityContext would stay unread and be reported).
    let sc = c.obj("securityContext");
    let mut ctx = LinuxContainerSecurityContext {
        namespace_options: Some(cx.namespaces.clone()),
        masked_paths: MASKED_PATHS.iter().map(|s| (*s).to_owned()).collect(),
        readonly_paths: READONLY_PATHS.iter().map(|s| (*s).to_owned()).collect(),
        seccomp: Some(SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut run_as_non_root = false;
    let mut run_as_user = None;
    if let Some(sc) = &sc {
        ctx.privileged = sc.bool("privileged").unwrap_or(false);
        if ctx.privileged {
            // A privileged container sees everything: nothing is masked.
            ctx.masked_paths.clear();
            ctx.readonly_paths.clear();
        }
        run_as_user = sc.i64("runAsUser");
        ctx.run_as_user = run_as_user.map(|value| Int64Value { value });
        ctx.run_as_group = sc.i64("runAsGroup").map(|value| Int64Value { value });
        run_as_non_root = sc.bool("runAsNonRoot").unwrap_or(false);
        ctx.readonly_rootfs = sc.bool("readOnlyRootFilesystem").unwrap_or(false);
        // The kubelet sets no_new_privs only for an explicit false.
        ctx.no_new_privs = sc.bool("allowPrivilegeEscalation") == Some(false);
        if let Some(caps) = sc.obj("capabilities") {
            // Names as written ("BPF"); the runtime adds the CAP_ prefix.
            ctx.capabilities = Some(Capability {
                add_capabilities: caps.strings("add"),
                drop_capabilities: caps.strings("drop"),
                ..Default::default()
            });
        }
        if let Some(profile) = sc.obj("seccompProfile") {
            match profile.str("type").expect("seccompProfile.type") {
                "RuntimeDefault" => {
                    ctx.seccomp = Some(SecurityProfile {
                        profile_type: ProfileType::RuntimeDefault as i32,
                        ..Default::default()
                    });
                }
                "Unconfined" => {}
                other => profile.unhandled("type", other),
            }
        }
    }

    let readiness = c.obj("readinessProbe").map(|p| probe(&p, &ports));
    let liveness = c.obj("livenessProbe").map(|p| probe(&p, &ports));

    let mut labels = cx.labels.clone();
    labels.retain(|k, _| k.starts_with("io.kubernetes.pod."));
    labels.insert("io.kubernetes.container.name".into(), name.clone());
    let annotations: HashMap<String, String> = [
        (
            "io.kubernetes.container.terminationMessagePath",
            termination.clone(),
        ),
        (
            "io.kubernetes.pod.terminationGracePeriod",
            cx.grace_period.as_secs().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    ContainerPlan {
        name: name.clone(),
        image: image.clone(),
        config: ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.clone(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image,
                ..Default::default()
            }),
            command,
            args,
            working_dir,
            envs,
            mounts,
            labels,
            annotations,
            linux: Some(LinuxContainerConfig {
                resources: Some(resources),
                security_context: Some(ctx),
            }),
            ..Default::default()
        },
        run_as_non_root,
        run_as_user,
        pull_policy,
        readiness,
        liveness,
        memory_limit: mem_limit,
    }
}

fn probe(p: &Fields<'_>, ports: &HashMap<String, i64>) -> Probe {
    let http = p
        .obj("httpGet")
        .unwrap_or_else(|| panic!("{}: only httpGet probes are translated", p.path("httpGet")));
    let path = http.str("path").unwrap_or("/").to_owned();
    let port = match http.get("port").expect("httpGet.port") {
        Value::Number(n) => n.as_i64().unwrap(),
        Value::String(name) => *ports
            .get(name)
            .unwrap_or_else(|| panic!("{}: no container port named {name}", http.path("port"))),
        other => panic!("{}: {other}", http.path("port")),
    };
    if let Some(s) = http.str("scheme")
        && s != "HTTP"
    {
        http.unhandled("scheme", s);
    }
    let secs = |k: &str, default: i64| Duration::from_secs(p.i64(k).unwrap_or(default) as u64);
    Probe {
        path,
        port: port.try_into().unwrap(),
        initial_delay: secs("initialDelaySeconds", 0),
        period: secs("periodSeconds", 10),
        timeout: secs("timeoutSeconds", 1),
        failure_threshold: p.i64("failureThreshold").unwrap_or(3) as u32,
        success_threshold: p.i64("successThreshold").unwrap_or(1) as u32,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// The pod's QoS class, from every container's requests and limits.
#[derive(Default)]
struct Qos {
    any_request_or_limit: bool,
    all_guaranteed: bool,
    containers: usize,
    memory_request: i64,
}

impl Qos {
    fn add(
        &mut self,
        cpu_req: Option<i64>,
        cpu_lim: Option<i64>,
        mem_req: Option<i64>,
        mem_lim: Option<i64>,
    ) {
        if self.containers == 0 {
            self.all_guaranteed = true;
        }
        self.containers += 1;
        self.any_request_or_limit |=
            cpu_req.is_some() || cpu_lim.is_some() || mem_req.is_some() || mem_lim.is_some();
        self.all_guaranteed &=
            cpu_lim.is_some() && mem_lim.is_some() && cpu_req == cpu_lim && mem_req == mem_lim;
        self.memory_request += mem_req.unwrap_or(0);
    }

    fn class(&self) -> QosClass {
        if !self.any_request_or_limit {
            QosClass::BestEffort
        } else if self.all_guaranteed {
            QosClass::Guaranteed
        } else {
            QosClass::Burstable
        }
    }

    /// pkg/kubelet/qos: -997 guaranteed, 1000 best effort, and for
    /// burstable 1000 - 1000 * request / capacity, kept within [3, 999].
    fn oom_score_adj(&self, node: &Node) -> i64 {
        match self.class() {
            QosClass::Guaranteed => -997,
            QosClass::BestEffort => 1000,
            QosClass::Burstable => {
                let adj = 1000 - (1000 * self.memory_request) / node.memory_capacity;
                adj.clamp(3, 999)
            }
        }
    }
}

/// A CPU quantity in millicores ("20m", "1", "0.5").
pub(crate) fn milli(q: &str) -> i64 {
    if let Some(m) = q.strip_suffix('m') {
        m.parse().unwrap_or_else(|_| panic!("bad cpu quantity {q}"))
    } else {
        (q.parse::<f64>()
            .unwrap_or_else(|_| panic!("bad cpu quantity {q}"))
            * 1000.0)
            .round() as i64
    }
}

/// A memory quantity in bytes ("50Mi", "128M", "1024").
pub(crate) fn bytes(q: &str) -> i64 {
    const SUFFIXES: [(&str, i64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in SUFFIXES {
        if let Some(n) = q.strip_suffix(suffix) {
            return n
                .parse::<i64>()
                .unwrap_or_else(|_| panic!("bad memory quantity {q}"))
                * factor;
        }
    }
    q.parse()
        .unwrap_or_else(|_| panic!("bad memory quantity {q}"))
}

/// MemTotal of this machine, bytes.
pub(crate) fn mem_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
        .expect("MemTotal in /proc/meminfo")
        * 1024
}

//! One container of the pod: its config (image, command, ports, labels and
//! annotations), built from the parts the other modules translate (`env`,
//! `volumes`, `resources`, `security`, `probe`).

use std::{collections::HashMap, path::Path, time::Duration};

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ImageSpec, LinuxContainerConfig, NamespaceOption,
    PortMapping,
};

use super::{
    Fields, Node, PodFile, Probe, env,
    probe::probe,
    resources::{self, Qos},
    security,
    volumes::{self, Volumes},
};

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

/// What the pod gives each of its containers.
pub(super) struct ContainerContext<'a> {
    pub(super) node: &'a Node,
    pub(super) namespace: &'a str,
    pub(super) pod_name: &'a str,
    pub(super) uid: &'a str,
    pub(super) labels: &'a HashMap<String, String>,
    pub(super) namespaces: &'a NamespaceOption,
    pub(super) volumes: &'a Volumes,
    /// The service account volume's directory, when it is mounted.
    pub(super) sa_dir: Option<&'a Path>,
    /// The kubelet's directory for the pod.
    pub(super) dir: &'a Path,
    pub(super) grace_period: Duration,
    pub(super) where_from: &'a str,
}

/// One entry of `spec.containers`: its ports join the sandbox's
/// `port_mappings`, its requests and limits the pod's `qos`, and the files
/// the kubelet writes for it `files`.
pub(super) fn translate_container(
    c: &Fields<'_>,
    cx: &ContainerContext<'_>,
    port_mappings: &mut Vec<PortMapping>,
    qos: &mut Qos,
    files: &mut Vec<PodFile>,
) -> ContainerPlan {
    let name = c.str("name").expect("container name").to_owned();
    let image = c.str("image").expect("container image").to_owned();
    let pull_policy = pull_policy(c);
    let (command, args, working_dir) = process(c);
    let ports = ports(c, port_mappings);
    let envs = env::envs(c, cx);
    let (mounts, termination) = volumes::container_mounts(c, cx, &name, files);
    let (resources, memory_limit) = resources::container_resources(c, qos);
    let security = security::container_security(c, cx.namespaces);
    let readiness = c.obj("readinessProbe").map(|p| probe(&p, &ports));
    let liveness = c.obj("livenessProbe").map(|p| probe(&p, &ports));
    let (labels, annotations) = labels_and_annotations(cx, &name, &termination);
    ContainerPlan {
        name: name.clone(),
        image: image.clone(),
        config: ContainerConfig {
            metadata: Some(ContainerMetadata { name, attempt: 0 }),
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
                security_context: Some(security.context),
            }),
            ..Default::default()
        },
        run_as_non_root: security.run_as_non_root,
        run_as_user: security.run_as_user,
        pull_policy,
        readiness,
        liveness,
        memory_limit,
    }
}

/// `imagePullPolicy`: IfNotPresent (the default) or Never.
fn pull_policy(c: &Fields<'_>) -> String {
    let pull_policy = c
        .str("imagePullPolicy")
        .unwrap_or("IfNotPresent")
        .to_owned();
    if !["IfNotPresent", "Never"].contains(&pull_policy.as_str()) {
        // Always (or :latest) would pull, and there is no registry here.
        c.unhandled("imagePullPolicy", &pull_policy);
    }
    pull_policy
}

/// The process: (command, args, workingDir), without variable expansion.
fn process(c: &Fields<'_>) -> (Vec<String>, Vec<String>, String) {
    let command = c.strings("command");
    let args = c.strings("args");
    let working_dir = c.str("workingDir").unwrap_or("").to_owned();
    for s in command.iter().chain(&args) {
        if s.contains("$(") {
            c.unhandled("args", format!("{s} (variable expansion)"));
        }
    }
    (command, args, working_dir)
}

/// Ports: the sandbox's port mappings, and names for the probes (returned,
/// name to port).
fn ports(c: &Fields<'_>, port_mappings: &mut Vec<PortMapping>) -> HashMap<String, i64> {
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
    ports
}

/// The container's labels (the pod's identity and its name) and
/// annotations (termination message path, grace period).
fn labels_and_annotations(
    cx: &ContainerContext<'_>,
    name: &str,
    termination: &str,
) -> (HashMap<String, String>, HashMap<String, String>) {
    let mut labels = cx.labels.clone();
    labels.retain(|k, _| k.starts_with("io.kubernetes.pod."));
    labels.insert("io.kubernetes.container.name".into(), name.to_owned());
    let annotations: HashMap<String, String> = [
        (
            "io.kubernetes.container.terminationMessagePath",
            termination.to_owned(),
        ),
        (
            "io.kubernetes.pod.terminationGracePeriod",
            cx.grace_period.as_secs().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    (labels, annotations)
}

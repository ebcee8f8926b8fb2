//! Volumes and mounts: the pod's hostPath volumes, the service account
//! token volume, and each container's mounts (its volumeMounts, the
//! service account volume, the termination message file).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use k8s_cri::v1::Mount;

use super::{Fields, Node, PodFile, container::ContainerContext};

/// Where the service account admission plugin mounts the token volume.
pub(crate) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The pod's volumes by name: (the path on this machine, the manifest's
/// path).
pub(super) type Volumes = HashMap<String, (PathBuf, String)>;

/// The service account admission plugin's token volume.
pub(super) struct ServiceAccount {
    /// The token the pod's requests carry; none when automounting is off.
    pub(super) token: Option<String>,
    /// The volume's directory on the node.
    pub(super) dir: PathBuf,
}

impl ServiceAccount {
    /// The directory to mount into every container: none without a token.
    pub(super) fn mounted(&self) -> Option<&Path> {
        self.token.as_ref().map(|_| self.dir.as_path())
    }
}

/// The service account admission plugin: a token volume in every
/// container unless automounting is off. `pod_dir` is the kubelet's
/// directory for the pod; the volume's files (token, ca.crt, namespace)
/// are added to `files`.
pub(super) fn service_account(
    spec: &Fields<'_>,
    node: &Node,
    namespace: &str,
    pod_dir: &Path,
    files: &mut Vec<PodFile>,
) -> ServiceAccount {
    let service_account = spec
        .str("serviceAccountName")
        .unwrap_or("default")
        .to_owned();
    let automount = spec.bool("automountServiceAccountToken").unwrap_or(true);
    let token = automount.then(|| node.token(namespace, &service_account));
    let dir = pod_dir.join("volumes/kube-api-access");
    if let Some(token) = &token {
        for (file, contents) in [
            ("token", token.clone()),
            ("ca.crt", node.ca_pem.clone()),
            ("namespace", namespace.to_owned()),
        ] {
            files.push(PodFile {
                path: dir.join(file),
                contents,
            });
        }
    }
    ServiceAccount { token, dir }
}

/// Volumes: hostPath only; the kubelet checks the type before mounting.
pub(super) fn host_path_volumes(spec: &Fields<'_>, node: &Node, where_from: &str) -> Volumes {
    let mut volumes = Volumes::new();
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
    volumes
}

/// The container's mounts: its volumeMounts, then what the kubelet adds to
/// every container. Returns them with the termination message path (its
/// file is added to `files`).
pub(super) fn container_mounts(
    c: &Fields<'_>,
    cx: &ContainerContext<'_>,
    name: &str,
    files: &mut Vec<PodFile>,
) -> (Vec<Mount>, String) {
    let mut mounts: Vec<Mount> = c
        .list("volumeMounts")
        .iter()
        .map(|m| volume_mount(m, cx))
        .collect();
    if let Some(sa) = cx.sa_dir {
        mounts.push(Mount {
            container_path: SERVICE_ACCOUNT_DIR.into(),
            host_path: sa.display().to_string(),
            readonly: true,
            ..Default::default()
        });
    }
    let (termination, mount) = termination_message(c, cx, name, files);
    mounts.push(mount);
    (mounts, termination)
}

/// One of the container's `volumeMounts`.
fn volume_mount(m: &Fields<'_>, cx: &ContainerContext<'_>) -> Mount {
    let vname = m.str("name").expect("volumeMount name");
    let path = m.str("mountPath").expect("mountPath");
    let readonly = m.bool("readOnly").unwrap_or(false);
    if let Some(p) = m.str("mountPropagation")
        && p != "None"
    {
        m.unhandled("mountPropagation", p);
    }
    let recursive_read_only = recursive_read_only(m, readonly, cx.node.recursive_read_only);
    let (host, _) = cx
        .volumes
        .get(vname)
        .unwrap_or_else(|| panic!("{}: volumeMount {vname}: no such volume", cx.where_from));
    Mount {
        container_path: path.to_owned(),
        host_path: host.display().to_string(),
        readonly,
        recursive_read_only,
        ..Default::default()
    }
}

/// `recursiveReadOnly`, as the kubelet decides it: Enabled needs the
/// runtime's support or the pod fails; IfPossible uses it when there and
/// falls back otherwise.
fn recursive_read_only(m: &Fields<'_>, readonly: bool, runtime_can: bool) -> bool {
    match m.str("recursiveReadOnly").unwrap_or("Disabled") {
        "Disabled" => false,
        "IfPossible" => readonly && runtime_can,
        "Enabled" => {
            assert!(
                readonly && runtime_can,
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
    }
}

/// The termination message file (terminationMessagePath, default
/// /dev/termination-log), one per container, writable: its path in the
/// container and its mount (the file is added to `files`).
fn termination_message(
    c: &Fields<'_>,
    cx: &ContainerContext<'_>,
    name: &str,
    files: &mut Vec<PodFile>,
) -> (String, Mount) {
    let termination = c
        .str("terminationMessagePath")
        .unwrap_or("/dev/termination-log")
        .to_owned();
    c.skip(
        "terminationMessagePolicy",
        "read by the kubelet after the exit; the file is mounted either way",
    );
    let termination_file = cx.dir.join("containers").join(name).join("termination");
    files.push(PodFile {
        path: termination_file.clone(),
        contents: String::new(),
    });
    let mount = Mount {
        container_path: termination.clone(),
        host_path: termination_file.display().to_string(),
        ..Default::default()
    };
    (termination, mount)
}

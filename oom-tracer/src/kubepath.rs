//! Kubelet memory-cgroup paths → pod and container identity.
//!
//! Paths are relative to the cgroup hierarchy root and look the same under
//! cgroup v1 (memory hierarchy) and v2. The kubelet lays pods out in one of
//! two ways, Guaranteed pods having no QoS level of their own:
//!
//! * cgroupfs driver: `kubepods[/burstable|/besteffort]/pod<uid>[/<ctr>]`,
//!   the uid with dashes; `<ctr>` is the runtime's bare id (containerd,
//!   docker) or `crio-<id>`.
//! * systemd driver: `kubepods.slice[/kubepods-<qos>.slice]/kubepods[-<qos>]-pod<uid>.slice[/<ctr>]`,
//!   the uid with `_` for `-`; `<ctr>` is `cri-containerd-<id>.scope`,
//!   `crio-<id>.scope` or `docker-<id>.scope`. Nodes run by kind prefix
//!   every name with `kubelet-` (`kubelet.slice/kubelet-kubepods.slice/…`).
//! * containerd's systemd `slice:prefix:name` form, taken literally as one
//!   directory below containerd's own cgroup:
//!   `…/containerd.service/kubepods-<qos>-pod<uid>.slice:cri-containerd:<id>`.
//!
//! Runtime helpers that share the pod cgroup (cri-o's `crio-conmon-<id>`,
//! podman's bare `conmon`) come back as [`Kind::RuntimeHelper`] so callers
//! can skip them. The kubepods part may sit below other components (nodes
//! running in docker, kind), so it is looked for anywhere in the path; what
//! follows it must match one of the layouts exactly.
#![allow(dead_code)]

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    /// The path does not name the runtime (cgroupfs layout, pod cgroups).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Pod,
    Container,
    /// conmon and the like: not a container, lives in the pod's cgroup.
    RuntimeHelper,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeCgroup {
    pub qos: QosClass,
    /// Always with dashes, lowercase (static pods' 32-digit config hashes
    /// are reformatted the same way).
    pub pod_uid: String,
    /// The id the runtime gave the container; None for [`Kind::Pod`] and for
    /// a bare `conmon` helper.
    pub container_id: Option<String>,
    pub runtime: Runtime,
    pub kind: Kind,
}

/// Longest directory name Linux allows.
const NAME_MAX: usize = 255;
/// Name prefixes of the kubelet's systemd slices (plain, kind).
const SLICE_PREFIXES: [&str; 2] = ["kubepods", "kubelet-kubepods"];
/// Container name prefixes; `crio-conmon-` must come before `crio-`.
const CONTAINER_PREFIXES: [(&str, Runtime, Kind); 4] = [
    ("cri-containerd-", Runtime::Containerd, Kind::Container),
    ("crio-conmon-", Runtime::CriO, Kind::RuntimeHelper),
    ("crio-", Runtime::CriO, Kind::Container),
    ("docker-", Runtime::Docker, Kind::Container),
];

/// Maps a memory-cgroup path to Kubernetes identity; None for anything that
/// is not a pod or container cgroup written by the kubelet and its runtimes.
pub fn parse(path: &str) -> Option<KubeCgroup> {
    parse_with_end(path).map(|(kube, _)| kube)
}

/// The pod cgroup path prefix of a container path (the path up to and
/// including the pod component), if `path` is a Kubernetes path. A pod path
/// gives itself back (less any trailing `/`). In containerd's
/// `slice:prefix:name` form, the pod has no cgroup of its own: this gives
/// the text before the first `:`.
pub fn pod_path(path: &str) -> Option<&str> {
    let (_, end) = parse_with_end(path)?;
    path.get(..end)
}

/// The parsed path and the byte offset where its pod component ends.
fn parse_with_end(path: &str) -> Option<(KubeCgroup, usize)> {
    let comps = components(path);
    (0..comps.len()).find_map(|i| parse_at(&comps, i))
}

/// Non-empty components with their byte offsets.
fn components(path: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = 0usize;
    for comp in path.split('/') {
        if !comp.is_empty() {
            out.push((start, comp));
        }
        start = start.saturating_add(comp.len()).saturating_add(1);
    }
    out
}

/// Tries the layouts with the kubepods part starting at component `i`.
fn parse_at(comps: &[(usize, &str)], i: usize) -> Option<(KubeCgroup, usize)> {
    let (_, anchor) = *comps.get(i)?;
    if anchor == "kubepods" {
        return cgroupfs(comps, i + 1);
    }
    if let Some(prefix) = anchor.strip_suffix(".slice") {
        if SLICE_PREFIXES.contains(&prefix) {
            return systemd(comps, i + 1, prefix);
        }
    }
    if i + 1 == comps.len() {
        return colon_form(comps[i]);
    }
    None
}

fn qos_name(name: &str) -> Option<QosClass> {
    match name {
        "burstable" => Some(QosClass::Burstable),
        "besteffort" => Some(QosClass::BestEffort),
        _ => None,
    }
}

/// `[burstable/|besteffort/]pod<uid>[/<ctr>]`, from component `i`.
fn cgroupfs(comps: &[(usize, &str)], mut i: usize) -> Option<(KubeCgroup, usize)> {
    let qos = match qos_name(comps.get(i)?.1) {
        Some(qos) => {
            i += 1;
            qos
        }
        None => QosClass::Guaranteed,
    };
    let (start, pod) = *comps.get(i)?;
    let pod_uid = uid(pod.strip_prefix("pod")?)?;
    finish(comps, i + 1, start + pod.len(), qos, pod_uid, false)
}

/// `[<prefix>-<qos>.slice/]<prefix>[-<qos>]-pod<uid>.slice[/<ctr>]`, from
/// component `i`.
fn systemd(comps: &[(usize, &str)], mut i: usize, prefix: &str) -> Option<(KubeCgroup, usize)> {
    let qos_slice = comps
        .get(i)?
        .1
        .strip_prefix(prefix)
        .and_then(|rest| qos_name(rest.strip_prefix('-')?.strip_suffix(".slice")?));
    let qos = match qos_slice {
        Some(qos) => {
            i += 1;
            qos
        }
        None => QosClass::Guaranteed,
    };
    let (start, pod) = *comps.get(i)?;
    let (pod_qos, pod_uid) = pod_slice(pod, prefix)?;
    if pod_qos != qos {
        return None;
    }
    finish(comps, i + 1, start + pod.len(), qos, pod_uid, true)
}

/// `<prefix>[-burstable|-besteffort]-pod<uid>.slice`.
fn pod_slice(name: &str, prefix: &str) -> Option<(QosClass, String)> {
    let rest = name
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .strip_suffix(".slice")?;
    let (qos, rest) = if let Some(rest) = rest.strip_prefix("burstable-") {
        (QosClass::Burstable, rest)
    } else if let Some(rest) = rest.strip_prefix("besteffort-") {
        (QosClass::BestEffort, rest)
    } else {
        (QosClass::Guaranteed, rest)
    };
    Some((qos, uid(rest.strip_prefix("pod")?)?))
}

/// `<slice>:<prefix>:<id>` as the last component, whatever is above it.
fn colon_form((start, name): (usize, &str)) -> Option<(KubeCgroup, usize)> {
    let mut parts = name.splitn(3, ':');
    let (slice, prefix, id) = (parts.next()?, parts.next()?, parts.next()?);
    let (qos, pod_uid) = SLICE_PREFIXES.iter().find_map(|p| pod_slice(slice, p))?;
    let runtime = match prefix {
        "cri-containerd" => Runtime::Containerd,
        "crio" => Runtime::CriO,
        "docker" => Runtime::Docker,
        _ => return None,
    };
    let kube = KubeCgroup {
        qos,
        pod_uid,
        container_id: Some(container_id(id)?),
        runtime,
        kind: Kind::Container,
    };
    Some((kube, start + slice.len()))
}

/// What follows the pod component (components `i..`): nothing, or one
/// container or helper.
fn finish(
    comps: &[(usize, &str)],
    i: usize,
    pod_end: usize,
    qos: QosClass,
    pod_uid: String,
    systemd: bool,
) -> Option<(KubeCgroup, usize)> {
    let (runtime, kind, container_id) = match comps.get(i..)? {
        [] => (Runtime::Unknown, Kind::Pod, None),
        [(_, name)] => container(name, systemd)?,
        _ => return None,
    };
    let kube = KubeCgroup {
        qos,
        pod_uid,
        container_id,
        runtime,
        kind,
    };
    Some((kube, pod_end))
}

/// A container or helper component: `<prefix><id>.scope` under systemd,
/// `<prefix><id>` or a bare `<id>` under cgroupfs, or `conmon`.
fn container(name: &str, systemd: bool) -> Option<(Runtime, Kind, Option<String>)> {
    if name == "conmon" {
        return Some((Runtime::Unknown, Kind::RuntimeHelper, None));
    }
    let stem = if systemd {
        name.strip_suffix(".scope")?
    } else {
        name
    };
    let known = CONTAINER_PREFIXES
        .iter()
        .find_map(|&(prefix, runtime, kind)| Some((runtime, kind, stem.strip_prefix(prefix)?)));
    let (runtime, kind, id) = match known {
        Some(known) => known,
        None if !systemd => (Runtime::Unknown, Kind::Container, stem),
        None => return None,
    };
    Some((runtime, kind, Some(container_id(id)?)))
}

/// Non-empty, ASCII letters and digits only.
fn container_id(id: &str) -> Option<String> {
    let ok =
        !id.is_empty() && id.len() <= NAME_MAX && id.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| id.to_owned())
}

/// Hex digits with `-` or `_` anywhere, 32 digits in all; gives them back
/// lowercase in the usual 8-4-4-4-12 groups.
fn uid(raw: &str) -> Option<String> {
    if raw.len() > NAME_MAX {
        return None;
    }
    let mut digits = Vec::with_capacity(32);
    for b in raw.bytes() {
        match b {
            b'-' | b'_' => {}
            b if b.is_ascii_hexdigit() && digits.len() < 32 => digits.push(b.to_ascii_lowercase()),
            _ => return None,
        }
    }
    if digits.len() != 32 {
        return None;
    }
    let mut out = String::with_capacity(36);
    for (n, &d) in digits.iter().enumerate() {
        if matches!(n, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(char::from(d));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;

    const U: &str = "6b3b4a5e-1f2d-4c3b-9a8e-0d1c2b3a4f5e";
    const U_: &str = "6b3b4a5e_1f2d_4c3b_9a8e_0d1c2b3a4f5e";
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    use Kind::{Container as C, Pod as P, RuntimeHelper as H};
    use Runtime::{Containerd, CriO, Docker, Unknown};

    /// Layouts filled in for each QoS class: `{d}` the cgroupfs QoS dir,
    /// `{s}` the systemd QoS slice, `{q}` the QoS part of a pod slice name.
    /// The bool says whether the container id is `ID`.
    const LAYOUTS: &[(&str, Runtime, Kind, bool)] = &[
        ("/kubepods/{d}pod{U}", Unknown, P, false),
        ("/kubepods/{d}pod{U}/{ID}", Unknown, C, true),
        ("/kubepods/{d}pod{U}/crio-{ID}", CriO, C, true),
        ("/kubepods/{d}pod{U}/crio-conmon-{ID}", CriO, H, true),
        ("/kubepods/{d}pod{U}/conmon", Unknown, H, false),
        (
            "/kubepods.slice/{s}kubepods{q}-pod{U_}.slice",
            Unknown,
            P,
            false,
        ),
        (
            "/kubepods.slice/{s}kubepods{q}-pod{U_}.slice/cri-containerd-{ID}.scope",
            Containerd,
            C,
            true,
        ),
        (
            "/kubepods.slice/{s}kubepods{q}-pod{U_}.slice/crio-{ID}.scope",
            CriO,
            C,
            true,
        ),
        (
            "/kubepods.slice/{s}kubepods{q}-pod{U_}.slice/docker-{ID}.scope",
            Docker,
            C,
            true,
        ),
        (
            "/kubepods.slice/{s}kubepods{q}-pod{U_}.slice/crio-conmon-{ID}.scope",
            CriO,
            H,
            true,
        ),
        (
            "/kubepods.slice/{s}kubepods{q}-pod{U_}.slice/conmon",
            Unknown,
            H,
            false,
        ),
        ("/docker/{ID}/kubepods/{d}pod{U}/{ID}", Unknown, C, true),
        ("/docker/{ID}/kubepods/{d}pod{U}", Unknown, P, false),
        (
            "/kubelet.slice/kubelet-kubepods.slice/{ks}kubelet-kubepods{q}-pod{U_}.slice/cri-containerd-{ID}.scope",
            Containerd,
            C,
            true,
        ),
        (
            "/kubelet.slice/kubelet-kubepods.slice/{ks}kubelet-kubepods{q}-pod{U_}.slice",
            Unknown,
            P,
            false,
        ),
        (
            "/system.slice/containerd.service/kubepods{q}-pod{U_}.slice:cri-containerd:{ID}",
            Containerd,
            C,
            true,
        ),
        ("kubepods/{d}pod{U}/{ID}/", Unknown, C, true),
    ];

    fn fill(template: &str, qos: QosClass) -> String {
        let (d, q) = match qos {
            QosClass::Guaranteed => ("", ""),
            QosClass::Burstable => ("burstable/", "-burstable"),
            QosClass::BestEffort => ("besteffort/", "-besteffort"),
        };
        let s = if q.is_empty() {
            String::new()
        } else {
            format!("kubepods{q}.slice/")
        };
        template
            .replace("{d}", d)
            .replace("{s}", &s)
            .replace("{ks}", &s.replace("kubepods", "kubelet-kubepods"))
            .replace("{q}", q)
            .replace("{U}", U)
            .replace("{U_}", U_)
            .replace("{ID}", ID)
    }

    fn want(qos: QosClass, runtime: Runtime, kind: Kind, id: Option<&str>) -> Option<KubeCgroup> {
        let container_id = id.map(str::to_owned);
        Some(KubeCgroup {
            qos,
            pod_uid: U.into(),
            container_id,
            runtime,
            kind,
        })
    }

    fn fixtures() -> Vec<(String, Option<KubeCgroup>)> {
        let mut table = Vec::new();
        for qos in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            for &(template, runtime, kind, has_id) in LAYOUTS {
                let id = has_id.then_some(ID);
                table.push((fill(template, qos), want(qos, runtime, kind, id)));
            }
        }
        let upper = U.to_uppercase();
        let hash = U.replace('-', "");
        let bu = QosClass::Burstable;
        table.extend([
            (
                format!("/kubepods/burstable/pod{upper}/abc"),
                want(bu, Unknown, C, Some("abc")),
            ),
            (
                format!("/kubepods/burstable/pod{hash}"),
                want(bu, Unknown, P, None),
            ),
            (
                format!("/a/kubepods/b/kubepods/burstable/pod{U}"),
                want(bu, Unknown, P, None),
            ),
            (
                format!("/system.slice/crio.service/kubepods-burstable-pod{U_}.slice:crio:{ID}"),
                want(bu, CriO, C, Some(ID)),
            ),
        ]);
        let negatives = [
            String::new(),
            "/".into(),
            "garbage".into(),
            "/kubepods".into(),
            "/kubepods/burstable".into(),
            "/kubepods.slice/kubepods-burstable.slice".into(),
            "/user.slice/user-1000.slice/session-2.scope".into(),
            "/system.slice/containerd.service".into(),
            format!("/oom-tracer/pod{U}/x"),
            format!("/kubepods/guaranteed/pod{U}/{ID}"),
            format!("/kubepods/burstable/pod{U}/{ID}/extra"),
            format!("/kubepods/burstable/pod{}/{ID}", &U[1..]),
            format!("/kubepods/burstable/pod{}g/{ID}", &U[1..]),
            format!("/kubepods/burstable/pod{U}0/{ID}"),
            format!("/kubepods/burstable/pod{U}/cri-containerd-{ID}.scope"),
            format!("/kubepods/burstable/pod{U}/{ID}.scope"),
            format!("/kubepods/burstable/pod{U}/{}", "a".repeat(300)),
            format!("/kubepods/burstable/pod{U}/crio-"),
            format!("/kubepods/burstable/{U}/{ID}"),
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-burstable-pod{U_}.slice"),
            format!("/kubepods.slice/kubepods-burstable-pod{U_}.slice/crio-{ID}.scope/x"),
            format!("/kubepods.slice/kubepods-pod{U_}.slice/foo-{ID}.scope"),
            format!("/kubepods.slice/kubepods-pod{U_}.slice/docker-{ID}"),
            format!("/kubepods.slice/kubepods-pod{U_}.slice/cri-containerd-.scope"),
            format!("/kubepods.slice/kubelet-kubepods-pod{U_}.slice"),
            format!("/kubepods.slice/kubepods-pod{U_}.scope"),
            format!("/system.slice/containerd.service/kubepods-pod{U_}.slice:runc:{ID}"),
            format!(
                "/system.slice/containerd.service/kubepods-pod{U_}.slice:cri-containerd:{ID}/x"
            ),
            format!("/system.slice/containerd.service/kubepods-pod{U_}.slice:cri-containerd:a:b"),
            format!("/system.slice/containerd.service/kubepods-pod{U_}.slice"),
            String::from_utf8_lossy(b"/kubepods/burstable/pod\xff\xfe/\xc3").into_owned(),
            format!("/kubepods/burstable/pod{U}\u{fffd}/{ID}"),
            "/kubepods".repeat(50_000),
            "a".repeat(1 << 20),
            format!("/kubepods/pod{}", "-".repeat(100_000)),
        ];
        table.extend(negatives.into_iter().map(|path| (path, None)));
        table
    }

    #[test]
    fn fixture_table() {
        for (path, want) in fixtures() {
            let short: String = path.chars().take(160).collect();
            assert_eq!(parse(&path), want, "parse({short:?})");
            check(&path);
        }
    }

    #[test]
    fn pod_paths() {
        let cases = [
            (
                format!("/kubepods/burstable/pod{U}/{ID}"),
                Some(format!("/kubepods/burstable/pod{U}")),
            ),
            (
                format!("/kubepods/pod{U}/"),
                Some(format!("/kubepods/pod{U}")),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{U_}.slice/crio-conmon-{ID}.scope"),
                Some(format!("/kubepods.slice/kubepods-pod{U_}.slice")),
            ),
            (
                format!(
                    "/system.slice/containerd.service/kubepods-pod{U_}.slice:cri-containerd:{ID}"
                ),
                Some(format!(
                    "/system.slice/containerd.service/kubepods-pod{U_}.slice"
                )),
            ),
            ("/user.slice".into(), None),
        ];
        for (path, want) in cases {
            assert_eq!(pod_path(&path), want.as_deref(), "pod_path({path:?})");
        }
    }

    #[test]
    fn serializes_snake_case() {
        let kube = want(QosClass::BestEffort, CriO, H, Some("ab"));
        let json = serde_json::to_value(kube).unwrap();
        assert_eq!(json["qos"], "best_effort");
        assert_eq!(json["runtime"], "cri_o");
        assert_eq!(json["kind"], "runtime_helper");
    }

    /// Invariants of any answer.
    fn check(path: &str) {
        let parsed = parse(path);
        let pod = pod_path(path);
        assert_eq!(parsed.is_some(), pod.is_some());
        let (Some(kube), Some(pod)) = (parsed, pod) else {
            return;
        };
        let uid = kube.pod_uid.as_bytes();
        assert_eq!(uid.len(), 36, "{:?}", kube.pod_uid);
        for (n, &b) in uid.iter().enumerate() {
            if matches!(n, 8 | 13 | 18 | 23) {
                assert_eq!(b, b'-', "{:?}", kube.pod_uid);
            } else {
                assert!(matches!(b, b'0'..=b'9' | b'a'..=b'f'), "{:?}", kube.pod_uid);
            }
        }
        match kube.kind {
            Kind::Pod => assert_eq!(kube.container_id, None),
            Kind::Container => assert!(kube.container_id.is_some()),
            Kind::RuntimeHelper => {}
        }
        assert!(path.starts_with(pod));
        if !path.contains(':') {
            let of_pod = parse(pod).expect("pod path parses");
            assert_eq!((of_pod.kind, of_pod.qos), (Kind::Pod, kube.qos));
            assert_eq!(of_pod.pod_uid, kube.pod_uid);
        }
    }

    /// Valid and invalid path components, mixed.
    fn component() -> impl Strategy<Value = String> {
        let uid = prop_oneof![
            Just(U.to_owned()),
            Just(U_.to_owned()),
            "[0-9a-f]{32}",
            "[0-9a-fA-F_-]{0,40}",
        ];
        let id = prop_oneof![Just(ID.to_owned()), "[0-9a-zA-Z]{0,70}", ".{0,8}"];
        let prefix = select(vec!["kubepods", "kubelet-kubepods", "kube", ""]);
        let qos = select(vec!["", "-burstable", "-besteffort", "-guaranteed"]);
        let fixed = [
            "kubepods",
            "burstable",
            "besteffort",
            "kubepods.slice",
            "kubelet-kubepods.slice",
            "kubepods-burstable.slice",
            "kubepods-besteffort.slice",
            "kubelet.slice",
            "conmon",
            "docker",
            "system.slice",
            "containerd.service",
            "..",
        ];
        let ctr = select(vec![
            "cri-containerd-",
            "crio-",
            "crio-conmon-",
            "docker-",
            "",
            "x-",
        ]);
        prop_oneof![
            select(fixed.to_vec()).prop_map(str::to_owned),
            uid.clone().prop_map(|u| format!("pod{u}")),
            (prefix.clone(), qos.clone(), uid.clone())
                .prop_map(|(p, q, u)| format!("{p}{q}-pod{u}.slice")),
            (ctr, id.clone(), select(vec![".scope", ""]))
                .prop_map(|(c, i, s)| format!("{c}{i}{s}")),
            (
                prefix,
                qos,
                uid,
                select(vec!["cri-containerd", "crio", "docker", "x"]),
                id
            )
                .prop_map(|(p, q, u, r, i)| format!("{p}{q}-pod{u}.slice:{r}:{i}")),
            ".{0,12}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_strings(s in any::<String>()) {
            check(&s);
        }

        #[test]
        fn arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            check(&String::from_utf8_lossy(&b));
        }

        #[test]
        fn component_mixes(parts in proptest::collection::vec(component(), 0..7), lead in any::<bool>()) {
            let joined = parts.join("/");
            check(&if lead { format!("/{joined}") } else { joined });
        }
    }
}

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

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Runtime {
    Containerd,
    CriO,
    Docker,
    /// The path does not name the runtime (cgroupfs layout, pod cgroups).
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Pod,
    Container,
    /// conmon and the like: not a container, lives in the pod's cgroup.
    RuntimeHelper,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct KubeCgroup {
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
pub(crate) fn parse(path: &str) -> Option<KubeCgroup> {
    parse_with_end(path).map(|(kube, _)| kube)
}

/// The pod cgroup path prefix of a container path (the path up to and
/// including the pod component), if `path` is a Kubernetes path. A pod path
/// gives itself back (less any trailing `/`). In containerd's
/// `slice:prefix:name` form the pod has no cgroup of its own: this gives the
/// text before the first `:`.
pub(crate) fn pod_path(path: &str) -> Option<&str> {
    let (_, end) = parse_with_end(path)?;
    path.get(..end)
}

/// The parsed path and the byte offset where its pod component ends.
fn parse_with_end(path: &str) -> Option<(KubeCgroup, usize)> {
    // Non-empty components with their byte offsets.
    let mut comps = Vec::new();
    let mut start = 0usize;
    for comp in path.split('/') {
        if !comp.is_empty() {
            comps.push((start, comp));
        }
        start = start.saturating_add(comp.len()).saturating_add(1);
    }
    (0..comps.len()).find_map(|i| parse_at(&comps, i))
}

/// What follows the pod: runtime, kind and container id.
type Member = (Runtime, Kind, Option<String>);
/// QoS class, pod uid, where the pod component ends, and what follows it.
type Found = (QosClass, String, usize, Member);

/// Tries the layouts with the kubepods part at component `i`.
fn parse_at(comps: &[(usize, &str)], i: usize) -> Option<(KubeCgroup, usize)> {
    let &(start, anchor) = comps.get(i)?;
    // The slice name prefix under the systemd driver.
    let slice = anchor
        .strip_suffix(".slice")
        .filter(|p| SLICE_PREFIXES.contains(p));
    let (qos, pod_uid, pod_end, (runtime, kind, container_id)) = match (anchor, slice) {
        ("kubepods", _) | (_, Some(_)) => below_kubepods(comps.get(i + 1..)?, slice)?,
        _ if i + 1 == comps.len() => colon_form(start, anchor)?,
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

/// `[<qos>/]<pod>[/<ctr>]` below `kubepods` (`slice` None) or a
/// `<slice>.slice`.
fn below_kubepods(comps: &[(usize, &str)], slice: Option<&str>) -> Option<Found> {
    let level = |name: &str| match slice {
        None => qos_name(name),
        Some(p) => qos_name(
            name.strip_prefix(p)?
                .strip_prefix('-')?
                .strip_suffix(".slice")?,
        ),
    };
    let level = comps.first().and_then(|&(_, name)| level(name));
    let comps = comps.get(usize::from(level.is_some())..)?;
    let qos = level.unwrap_or(QosClass::Guaranteed);
    let (&(pod_start, pod), rest) = comps.split_first()?;
    let (pod_qos, pod_uid) = match slice {
        None => (qos, uid(pod.strip_prefix("pod")?)?),
        Some(p) => pod_slice(pod, p)?,
    };
    let member = match rest {
        [] => (Runtime::Unknown, Kind::Pod, None),
        [(_, name)] => container(name, slice.is_some())?,
        _ => return None,
    };
    (pod_qos == qos).then_some((qos, pod_uid, pod_start + pod.len(), member))
}

/// containerd's `<pod slice>:<runtime prefix>:<id>`.
fn colon_form(start: usize, name: &str) -> Option<Found> {
    let mut parts = name.splitn(3, ':');
    let (slice, prefix, id) = (parts.next()?, parts.next()?, parts.next()?);
    let (qos, pod_uid) = SLICE_PREFIXES.iter().find_map(|p| pod_slice(slice, p))?;
    let runtime = match prefix {
        "cri-containerd" => Runtime::Containerd,
        "crio" => Runtime::CriO,
        "docker" => Runtime::Docker,
        _ => return None,
    };
    let member = (runtime, Kind::Container, Some(container_id(id)?));
    Some((qos, pod_uid, start + slice.len(), member))
}

fn qos_name(name: &str) -> Option<QosClass> {
    match name {
        "burstable" => Some(QosClass::Burstable),
        "besteffort" => Some(QosClass::BestEffort),
        _ => None,
    }
}

/// `<prefix>[-burstable|-besteffort]-pod<uid>.slice`.
fn pod_slice(name: &str, prefix: &str) -> Option<(QosClass, String)> {
    let rest = name
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .strip_suffix(".slice")?;
    let (qos, rest) = match rest.split_once('-') {
        Some((level, rest)) if !level.starts_with("pod") => (qos_name(level)?, rest),
        _ => (QosClass::Guaranteed, rest),
    };
    Some((qos, uid(rest.strip_prefix("pod")?)?))
}

/// A container or helper component: `<prefix><id>.scope` under systemd,
/// `<prefix><id>` or a bare `<id>` under cgroupfs, or `conmon`.
fn container(name: &str, systemd: bool) -> Option<Member> {
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
    let mut out = String::with_capacity(36);
    let mut digits = 0;
    for b in raw.bytes() {
        match b {
            b'-' | b'_' => continue,
            _ if !b.is_ascii_hexdigit() || digits == 32 => return None,
            _ => {}
        }
        if matches!(digits, 8 | 12 | 16 | 20) {
            out.push('-');
        }
        out.push(char::from(b.to_ascii_lowercase()));
        digits += 1;
    }
    (digits == 32 && raw.len() <= NAME_MAX).then_some(out)
}

#[cfg(test)]
mod tests {
    use Kind::{Container as C, Pod as P, RuntimeHelper as H};
    use QosClass::{BestEffort, Burstable, Guaranteed};
    use Runtime::{Containerd, CriO, Docker, Unknown};
    use proptest::{collection::vec, prelude::*, sample::select};

    use super::*;

    const U: &str = "6b3b4a5e-1f2d-4c3b-9a8e-0d1c2b3a4f5e";
    const U_: &str = "6b3b4a5e_1f2d_4c3b_9a8e_0d1c2b3a4f5e";
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const CTRD: &str = "/system.slice/containerd.service";

    /// Layouts, filled in for each QoS class by `fill`. Containers have the
    /// id `ID`, bare `conmon` none.
    const LAYOUTS: &[(&str, Runtime, Kind)] = &[
        ("{F}", Unknown, P),
        ("{F}/{ID}", Unknown, C),
        ("{F}/crio-{ID}", CriO, C),
        ("{F}/crio-conmon-{ID}", CriO, H),
        ("{F}/conmon", Unknown, H),
        ("{S}", Unknown, P),
        ("{S}/cri-containerd-{ID}.scope", Containerd, C),
        ("{S}/crio-{ID}.scope", CriO, C),
        ("{S}/docker-{ID}.scope", Docker, C),
        ("{S}/crio-conmon-{ID}.scope", CriO, H),
        ("{S}/conmon", Unknown, H),
        ("/docker/{ID}{F}", Unknown, P),
        ("/docker/{ID}{F}/{ID}", Unknown, C),
        ("/kubelet.slice{K}", Unknown, P),
        ("/kubelet.slice{K}/cri-containerd-{ID}.scope", Containerd, C),
        ("{CTRD}/{N}:cri-containerd:{ID}", Containerd, C),
        ("/system.slice/crio.service/{N}:crio:{ID}", CriO, C),
        ("{F}/{ID}/", Unknown, C),
        ("{FU}/{ID}", Unknown, C),
        ("{FH}", Unknown, P),
        ("/kubepods/x{F}", Unknown, P),
    ];

    /// `{F}`: cgroupfs pod path (`{FU}` with the uid in capitals, `{FH}`
    /// without dashes, as static pods have it); `{S}`: systemd pod path;
    /// `{K}`: the same with kind's `kubelet-` names; `{N}`: systemd pod
    /// slice name.
    fn fill(template: &str, qos: QosClass) -> String {
        let level = ["", "-burstable", "-besteffort"][qos as usize];
        let name = format!("kubepods{level}-pod{U_}.slice");
        // Guaranteed pods have no QoS slice.
        let qos_slice = format!("kubepods{level}.slice/").replace("kubepods.slice/", "");
        let systemd = format!("/kubepods.slice/{qos_slice}{name}");
        let cgroupfs = format!("/kubepods{}/pod{U}", level.replace('-', "/"));
        template
            .replace("{FU}", &cgroupfs.replace(U, &U.to_uppercase()))
            .replace("{FH}", &cgroupfs.replace(U, &U.replace('-', "")))
            .replace("{F}", &cgroupfs)
            .replace("{S}", &systemd)
            .replace("{K}", &systemd.replace("kubepods", "kubelet-kubepods"))
            .replace("{N}", &name)
            .replace("{CTRD}", CTRD)
            .replace("{ID}", ID)
    }

    fn want(qos: QosClass, runtime: Runtime, kind: Kind, id: Option<&str>) -> Option<KubeCgroup> {
        let (pod_uid, container_id) = (U.to_owned(), id.map(str::to_owned));
        Some(KubeCgroup {
            qos,
            pod_uid,
            container_id,
            runtime,
            kind,
        })
    }

    fn fixtures() -> Vec<(String, Option<KubeCgroup>)> {
        let mut table = Vec::new();
        for qos in [Guaranteed, Burstable, BestEffort] {
            for &(template, rt, kind) in LAYOUTS {
                let id = (kind != P && !template.ends_with("conmon")).then_some(ID);
                table.push((fill(template, qos), want(qos, rt, kind, id)));
            }
        }
        let negatives = [
            String::new(),
            "/".into(),
            "garbage".into(),
            "/kubepods".into(),
            "/kubepods/burstable".into(),
            "/kubepods.slice/kubepods-burstable.slice".into(),
            "/user.slice/user-1000.slice/session-2.scope".into(),
            CTRD.into(),
            format!("/oom-tracer/pod{U}/x"),
            format!("/kubepods/guaranteed/pod{U}/{ID}"),
            format!("/kubepods/burstable/pod{U}/{ID}/extra"),
            format!("/kubepods/burstable/pod{}/{ID}", &U[1..]),
            format!("/kubepods/burstable/pod{}g/{ID}", &U[1..]),
            format!("/kubepods/burstable/pod{U}0/{ID}"),
            format!("/kubepods/burstable/{U}/{ID}"),
            format!("/kubepods/burstable/pod{U}/cri-containerd-{ID}.scope"),
            format!("/kubepods/burstable/pod{U}/{ID}.scope"),
            format!("/kubepods/burstable/pod{U}/{}", "a".repeat(300)),
            format!("/kubepods/burstable/pod{U}/crio-"),
            format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-burstable-pod{U_}.slice"),
            format!("/kubepods.slice/kubepods-guaranteed-pod{U_}.slice"),
            format!("/kubepods.slice/kubepods-burstable-pod{U_}.slice/crio-{ID}.scope/x"),
            format!("/kubepods.slice/kubepods-pod{U_}.slice/foo-{ID}.scope"),
            format!("/kubepods.slice/kubepods-pod{U_}.slice/docker-{ID}"),
            format!("/kubepods.slice/kubepods-pod{U_}.slice/cri-containerd-.scope"),
            format!("/kubepods.slice/kubelet-kubepods-pod{U_}.slice"),
            format!("/kubepods.slice/kubepods-pod{U_}.scope"),
            format!("{CTRD}/kubepods-pod{U_}.slice"),
            format!("{CTRD}/kubepods-pod{U_}.slice:runc:{ID}"),
            format!("{CTRD}/kubepods-pod{U_}.slice:crio:{ID}/x"),
            format!("{CTRD}/kubepods-pod{U_}.slice:crio:a:b"),
            String::from_utf8_lossy(b"/kubepods/burstable/pod\xff\xfe/\xc3").into_owned(),
            format!("/kubepods/burstable/pod{U}\u{fffd}/{ID}"),
            "/kubepods".repeat(50_000),
            "a".repeat(1 << 20),
            format!("/kubepods/pod{U}{}", "-".repeat(100_000)),
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
        let pod = format!("/kubepods/burstable/pod{U}");
        assert_eq!(pod_path(&format!("{pod}/{ID}")), Some(&*pod));
        assert_eq!(pod_path(&format!("{pod}/")), Some(&*pod));
        let pod = format!("/kubepods.slice/kubepods-pod{U_}.slice");
        assert_eq!(pod_path(&format!("{pod}/conmon")), Some(&*pod));
        let pod = format!("{CTRD}/kubepods-pod{U_}.slice");
        assert_eq!(pod_path(&format!("{pod}:crio:{ID}")), Some(&*pod));
        assert_eq!(pod_path("/user.slice"), None);
    }

    #[test]
    fn serializes_snake_case() {
        let json = serde_json::to_value(want(BestEffort, CriO, H, None)).unwrap();
        assert_eq!(json["qos"], "best_effort");
        assert_eq!(json["runtime"], "cri_o");
        assert_eq!(json["kind"], "runtime_helper");
    }

    /// Invariants of any answer.
    fn check(path: &str) {
        let (parsed, pod) = (parse(path), pod_path(path));
        assert_eq!(parsed.is_some(), pod.is_some());
        let (Some(kube), Some(pod)) = (parsed, pod) else {
            return;
        };
        let uid = &kube.pod_uid;
        let dashes: Vec<_> = uid.match_indices('-').map(|(n, _)| n).collect();
        let ok = |b: u8| matches!(b, b'-' | b'0'..=b'9' | b'a'..=b'f');
        assert!(
            uid.len() == 36 && dashes == [8, 13, 18, 23] && uid.bytes().all(ok),
            "{uid}"
        );
        match kube.kind {
            P => assert_eq!((&kube.container_id, kube.runtime), (&None, Unknown)),
            C => assert!(kube.container_id.is_some()),
            H => {}
        }
        assert!(path.starts_with(pod));
        if !path.contains(':') {
            let of_pod = parse(pod).expect("pod path parses");
            assert_eq!((of_pod.kind, of_pod.qos), (P, kube.qos));
            assert_eq!(of_pod.pod_uid, kube.pod_uid);
        }
    }

    /// The components of a layout, each valid or not: prefix, kubepods,
    /// QoS level, pod (maybe in `slice:prefix:id` form), container, junk.
    fn slots() -> impl Strategy<Value = Vec<String>> {
        let s = |v: &'static str| select(v.split('|').collect::<Vec<_>>()).prop_map(str::to_owned);
        let re = |v: String| proptest::string::string_regex(&v).unwrap();
        let uid = || re(format!("{U}|{U_}|[0-9a-f]{{32}}|[0-9a-fA-F_-]{{0,40}}"));
        let id = || re(format!("{ID}|[0-9a-zA-Z]{{0,70}}|.{{0,8}}"));
        let prefix = s("|/docker/ab12|/kubelet.slice|/system.slice/x.service|:");
        let anchor = s("kubepods|kubepods.slice|kubelet-kubepods.slice||pods");
        let qos = s("|burstable|besteffort|guaranteed|kubepods-burstable.slice\
            |kubepods-besteffort.slice|kubelet-kubepods-burstable.slice|kubepods-x.slice");
        let slice =
            s("kubepods|kubelet-kubepods|kube|kubepods-burstable|kubelet-kubepods-besteffort");
        let colon = (s(":cri-containerd:|:crio:|:docker:|:x:"), id()).prop_map(|(c, i)| c + &i);
        let colon = prop_oneof![Just(String::new()), colon];
        let pod = prop_oneof![
            uid().prop_map(|u| format!("pod{u}")),
            (slice, uid(), colon).prop_map(|(p, u, c)| format!("{p}-pod{u}.slice{c}")),
        ];
        let ctr = s("cri-containerd-|crio-|crio-conmon-|docker-||x-");
        let container = (ctr, id(), s(".scope|")).prop_map(|(r, i, s)| format!("{r}{i}{s}"));
        let container = prop_oneof![s("|conmon"), container];
        let junk = prop_oneof![3 => Just(String::new()), 1 => ".{0,12}"];
        (prefix, anchor, qos, pod, container, junk)
            .prop_map(|(a, b, c, d, e, f)| vec![a, b, c, d, e, f])
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 2000, failure_persistence: None, ..Default::default()
        })]

        #[test]
        fn arbitrary_strings(s in any::<String>()) {
            check(&s);
        }

        #[test]
        fn arbitrary_bytes(b in vec(any::<u8>(), 0..300)) {
            check(&String::from_utf8_lossy(&b));
        }

        #[test]
        fn layout_slots(parts in slots()) {
            check(&parts.join("/"));
        }

        #[test]
        fn shuffled_slots(parts in slots().prop_shuffle(), lead in any::<bool>()) {
            check(&format!("{}{}", if lead { "/" } else { "" }, parts.join("/")));
        }
    }
}

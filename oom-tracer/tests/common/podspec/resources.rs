//! Resources: the pod's QoS class, the container and pod cgroup limits
//! (the kubelet's CFS share and quota arithmetic), and the quantities they
//! are written in.

use k8s_cri::v1::LinuxContainerResources;
use serde_json::Value;

use super::{ContainerPlan, Fields, Node};

/// The kubelet's CFS period (100 ms) and its share arithmetic.
const QUOTA_PERIOD: i64 = 100_000;
const MIN_SHARES: i64 = 2;
const SHARES_PER_CPU: i64 = 1024;

/// The pod cgroup's limits (the kubelet's pod container manager).
#[derive(Clone, Debug, Default)]
pub(crate) struct PodCgroup {
    /// e.g. /kubepods/burstable/pod<uid>
    pub path: String,
    pub memory_limit: Option<i64>,
    pub cpu_shares: i64,
    pub cpu_quota: Option<i64>,
}

impl PodCgroup {
    /// The sandbox's resources: the pod cgroup's limits.
    pub(super) fn sandbox_resources(&self) -> LinuxContainerResources {
        LinuxContainerResources {
            cpu_period: if self.cpu_quota.is_some() {
                QUOTA_PERIOD
            } else {
                0
            },
            cpu_quota: self.cpu_quota.unwrap_or(0),
            cpu_shares: self.cpu_shares,
            memory_limit_in_bytes: self.memory_limit.unwrap_or(0),
            ..Default::default()
        }
    }
}

/// The pod cgroup (the kubelet's pod container manager): under its QoS
/// class's cgroup, its limits the sums of its containers' (none where a
/// container has none).
pub(super) fn pod_cgroup(uid: &str, qos: &Qos, containers: &[ContainerPlan]) -> PodCgroup {
    let mut memory_limit: Option<i64> = Some(0);
    let mut cpu_quota: Option<i64> = Some(0);
    let mut cpu_shares = 0;
    for plan in containers {
        memory_limit = memory_limit.zip(plan.memory_limit).map(|(a, b)| a + b);
        let res = &plan
            .config
            .linux
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap();
        cpu_quota = cpu_quota
            .zip((res.cpu_quota > 0).then_some(res.cpu_quota))
            .map(|(a, b)| a + b);
        cpu_shares += res.cpu_shares;
    }
    let qos_dir = match qos.class() {
        QosClass::Guaranteed => String::new(),
        QosClass::Burstable => "/burstable".into(),
        QosClass::BestEffort => "/besteffort".into(),
    };
    PodCgroup {
        path: format!("/kubepods{qos_dir}/pod{uid}"),
        memory_limit,
        cpu_shares: cpu_shares.max(MIN_SHARES),
        cpu_quota,
    }
}

/// The container's cgroup limits, from its `resources`, and its memory
/// limit; counts its requests and limits into the pod's QoS class.
pub(super) fn container_resources(
    c: &Fields<'_>,
    qos: &mut Qos,
) -> (LinuxContainerResources, Option<i64>) {
    let res = c.obj("resources");
    let res = res.as_ref();
    let mem_limit = quantity(res, "limits", "memory");
    let cpu_limit = quantity(res, "limits", "cpu");
    // Requests default to the limits (the API server's defaulting).
    let mem_request = quantity(res, "requests", "memory").or(mem_limit);
    let cpu_request = quantity(res, "requests", "cpu").or(cpu_limit);
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
    (resources, mem_limit)
}

/// `resources.<section>.<what>` (e.g. `limits.memory`): millicores for
/// `cpu`, bytes for the rest.
fn quantity(res: Option<&Fields<'_>>, section: &str, what: &str) -> Option<i64> {
    let r = res?;
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
}

#[derive(Debug, PartialEq, Eq)]
enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// The pod's QoS class, from every container's requests and limits.
#[derive(Default)]
pub(super) struct Qos {
    any_request_or_limit: bool,
    all_guaranteed: bool,
    containers: usize,
    memory_request: i64,
}

impl Qos {
    pub(super) fn add(
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
    pub(super) fn oom_score_adj(&self, node: &Node) -> i64 {
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

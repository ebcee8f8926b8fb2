//! `oom-tracer agent`'s flags.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

use super::{
    trace::{BackoffArgs, OutputArgs, PressureArgs, TraceArgs},
    values::parse_duration,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum KubeApi {
    /// Use the API when a configuration is found (in-cluster or KUBECONFIG).
    Auto,
    Off,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct AgentArgs {
    /// This node's name (from the downward API): the API source lists only its pods.
    #[arg(long, env = "OOM_TRACER_NODE_NAME")]
    pub node_name: Option<String>,
    /// CRI socket (default: the first of containerd, cri-o, k3s, cri-dockerd that exists).
    #[arg(long, env = "OOM_TRACER_CRI_SOCKET")]
    pub cri_socket: Option<PathBuf>,
    /// Do not use the CRI.
    #[arg(long, env = "OOM_TRACER_NO_CRI", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_cri: bool,
    /// Whether to use the Kubernetes API.
    #[arg(long, env = "OOM_TRACER_KUBE_API", value_enum, default_value = "auto")]
    pub kube_api: KubeApi,
    /// A kubeconfig file for the API (default: in-cluster config, then $KUBECONFIG).
    #[arg(long, env = "OOM_TRACER_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Post a Kubernetes Event on the pod for each OOM kill (needs the API
    /// source and RBAC `create` on events).
    #[arg(long, env = "OOM_TRACER_POST_EVENTS", value_parser = clap::builder::BoolishValueParser::new())]
    pub post_events: bool,
    /// How often to look for new kubepods roots and re-list the runtime.
    #[arg(long, env = "OOM_TRACER_RESCAN_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub rescan_interval: Duration,
    /// Address of /healthz, /readyz and /metrics (e.g. 0.0.0.0:9090).
    #[arg(long, env = "OOM_TRACER_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub backoff: BackoffArgs,
    #[command(flatten)]
    pub(crate) pressure: PressureArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub trace: TraceArgs,
}

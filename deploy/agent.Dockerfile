# The node agent's image: one static binary (`oom-tracer`, musl, the eBPF
# object embedded in it) on an empty base. No shell, no libc, nothing else.
#
# The binary is built on the host, not in the image: `cargo xtask images`
# builds it (cargo build --release --target x86_64-unknown-linux-musl) and
# stages a build context target/images/agent/ holding this Dockerfile and
# the binary, then builds the image from it (buildah, or docker when an
# engine answers) and writes target/images/agent.tar (an OCI archive).
# `cargo xtask minikube images` builds the same context inside minikube.
# By hand, after `cargo xtask images`:
#   docker build -t oom-tracer/agent:dev target/images/agent
FROM scratch
COPY oom-tracer /oom-tracer
# Root (uid 0), on purpose: the CRI socket (/run/containerd/containerd.sock,
# srw-rw---- root root) and the tracefs files are owned by root, and the
# agent reaches them as their owner, with no CAP_DAC_OVERRIDE. Being root
# grants nothing else: the DaemonSet drops every capability and adds back
# only BPF and PERFMON, with allowPrivilegeEscalation false and a read-only
# root filesystem (deploy/daemonset.yaml sets runAsUser/runAsGroup 0 too).
USER 0:0
ENTRYPOINT ["/oom-tracer", "agent"]

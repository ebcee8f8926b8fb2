#!/usr/bin/env python3
"""CRI smoke check of the test runtime that setup.sh prepares (developer tool).

It plays the kubelet's part over CRI gRPC, as the Rust integration tests do:
one pod sandbox (host network, cgroup_parent /kubepods/burstable/pod<uid>)
with one container of localhost/oom-tracer/stress:test under a 50Mi memory
limit. It waits for the kernel's OOM kill and checks that ContainerStatus says
exit code 137, reason "OOMKilled", and that the container's cgroup was
/sys/fs/cgroup/memory/kubepods/burstable/pod<uid>/<container id> while it ran.
Then it removes the container and the sandbox. Exit status 0 when all holds.

Nothing in the project depends on this script, nor on grpcio. Usage, as root:

    tests/containerd/setup.sh
    python3 -m venv /tmp/cri-venv
    /tmp/cri-venv/bin/pip install grpcio grpcio-tools
    (cd /work/main && cargo fetch)   # brings the k8s-cri crate and its proto
    /tmp/cri-venv/bin/python tests/containerd/cri_smoke.py [--socket PATH] [--proto PATH]

The CRI v1 client is generated at start-up, into a temporary directory, from
the api proto of the k8s-cri crate in the cargo registry
(~/.cargo/registry/src/*/k8s-cri-*/proto/v1.proto) unless --proto names one.
"""

import argparse
import atexit
import glob
import json
import os
import shutil
import sys
import tempfile
import time
import uuid

SOCK = "/run/oom-tracer-test/containerd.sock"
IMAGE = "localhost/oom-tracer/stress:test"
LIMIT = 50 * 1024 * 1024  # 50Mi
MEMCG = "/sys/fs/cgroup/memory"


def find_proto() -> str:
    home = os.path.expanduser("~")
    found = sorted(glob.glob(f"{home}/.cargo/registry/src/*/k8s-cri-*/proto/v1.proto"))
    if not found:
        sys.exit("cri_smoke: no k8s-cri proto in the cargo registry: run `cargo fetch` in the workspace, or pass --proto")
    return found[-1]


def load_client(proto: str):
    """Compiles `proto` with grpc_tools into a temp dir and imports it."""
    try:
        from grpc_tools import protoc
    except ImportError:
        sys.exit("cri_smoke: needs grpcio and grpcio-tools (pip install them into a virtualenv; see the usage above)")
    import importlib.resources

    out = tempfile.mkdtemp(prefix="cri-smoke-pb-")
    atexit.register(shutil.rmtree, out, True)
    src = os.path.join(out, "proto")
    os.makedirs(src)
    # Name the module "cri_v1" whatever the file is called.
    with open(proto) as f, open(os.path.join(src, "cri_v1.proto"), "w") as g:
        g.write(f.read())
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    rc = protoc.main(["protoc", f"-I{src}", f"-I{well_known}", f"--python_out={out}",
                      f"--grpc_python_out={out}", os.path.join(src, "cri_v1.proto")])
    if rc != 0:
        sys.exit(f"cri_smoke: protoc failed on {proto}")
    sys.path.insert(0, out)
    import cri_v1_pb2 as pb  # noqa: E402
    import cri_v1_pb2_grpc as pb_grpc  # noqa: E402
    return pb, pb_grpc


def main() -> int:
    ap = argparse.ArgumentParser(description="CRI OOM smoke check against the oom-tracer test containerd")
    ap.add_argument("--socket", default=SOCK)
    ap.add_argument("--proto", default=None)
    ap.add_argument("--image", default=IMAGE)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the OOM kill")
    a = ap.parse_args()

    import grpc

    pb, pb_grpc = load_client(a.proto or find_proto())
    channel = grpc.insecure_channel(f"unix://{a.socket}")
    rt = pb_grpc.RuntimeServiceStub(channel)
    img = pb_grpc.ImageServiceStub(channel)
    t0 = time.monotonic()
    ms = lambda: round((time.monotonic() - t0) * 1000)  # noqa: E731
    log = lambda *m: print(f"[{ms():6d} ms]", *m, flush=True)  # noqa: E731

    v = rt.Version(pb.VersionRequest(version="v1"), timeout=10)
    log(f"runtime {v.runtime_name} {v.runtime_version}, CRI {v.runtime_api_version}")
    st = img.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=a.image)), timeout=10)
    if not st.image.id:
        sys.exit(f"cri_smoke: the CRI does not know {a.image}: run setup.sh")
    log(f"image {a.image}: {st.image.id}")

    uid = str(uuid.uuid4())
    name, namespace = "oom-smoke", "default"
    cgroup_parent = f"/kubepods/burstable/pod{uid}"
    logdir = tempfile.mkdtemp(prefix="cri-smoke-logs-")
    labels = {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
              "io.kubernetes.pod.uid": uid}
    sandbox_config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
        # No hostname: with host networking the pod shares the node's UTS.
        log_directory=logdir,
        labels=labels,
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE)),
        ),
    )
    result = {"pod_uid": uid, "cgroup_parent": cgroup_parent}
    sandbox_id = container_id = None
    ok = False
    try:
        sandbox_id = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=sandbox_config), timeout=60).pod_sandbox_id
        log(f"RunPodSandbox -> {sandbox_id[:12]}")
        result["sandbox_id"] = sandbox_id
        result["pause_cgroup_exists"] = os.path.isdir(f"{MEMCG}{cgroup_parent}/{sandbox_id}")

        cconfig = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="stress", attempt=0),
            image=pb.ImageSpec(image=a.image),
            args=["--step", "5Mi", "--interval", "50ms"],
            log_path="stress/0.log",
            labels={**labels, "io.kubernetes.container.name": "stress"},
            linux=pb.LinuxContainerConfig(resources=pb.LinuxContainerResources(memory_limit_in_bytes=LIMIT)),
        )
        container_id = rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sandbox_id, config=cconfig, sandbox_config=sandbox_config), timeout=60).container_id
        log(f"CreateContainer -> {container_id[:12]}")
        cg = f"{MEMCG}{cgroup_parent}/{container_id}"
        result["container_id"] = container_id
        result["container_cgroup"] = cg

        rt.StartContainer(pb.StartContainerRequest(container_id=container_id), timeout=60)
        log("StartContainer")
        seen = limit = None
        deadline = time.monotonic() + a.timeout
        while True:
            if seen is None and os.path.isdir(cg):
                seen = ms()
                try:
                    with open(f"{cg}/memory.limit_in_bytes") as f:
                        limit = int(f.read())
                except OSError:
                    pass
                log(f"cgroup seen while running: {cg} (memory.limit_in_bytes {limit})")
            s = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=container_id), timeout=10).status
            if s.state == pb.CONTAINER_EXITED:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"cri_smoke: container still {pb.ContainerState.Name(s.state)} after {a.timeout}s")
            time.sleep(0.01)
        result.update(state=pb.ContainerState.Name(s.state), exit_code=s.exit_code, reason=s.reason,
                      message=s.message, ran_ms=round((s.finished_at - s.started_at) / 1e6),
                      cgroup_seen_while_running=seen is not None, cgroup_memory_limit=limit)
        log(f"ContainerStatus: {result['state']} exit_code={s.exit_code} reason={s.reason!r} "
            f"(ran {result['ran_ms']} ms)")
        try:
            with open(os.path.join(logdir, "stress/0.log")) as f:
                lines = f.read().splitlines()
            result["log_lines"] = len(lines)
            for line in lines[-3:]:
                log(f"  log: {line}")
        except OSError as e:
            log(f"  (no container log: {e})")
        ok = (s.exit_code == 137 and s.reason == "OOMKilled" and seen is not None and limit == LIMIT)
    finally:
        if container_id:
            rt.StopContainer(pb.StopContainerRequest(container_id=container_id, timeout=0), timeout=30)
            rt.RemoveContainer(pb.RemoveContainerRequest(container_id=container_id), timeout=30)
            log("StopContainer, RemoveContainer")
        if sandbox_id:
            rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=30)
            rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=30)
            log("StopPodSandbox, RemovePodSandbox")
        if container_id:
            result["container_cgroup_removed"] = not os.path.exists(result["container_cgroup"])
        # The kubelet removes the pod cgroup it made; here runc made it, and
        # nobody else will: remove it (it is empty now) in every hierarchy.
        for pod_cg in glob.glob(f"/sys/fs/cgroup/*{cgroup_parent}"):
            try:
                os.rmdir(pod_cg)
            except OSError:
                pass
        left = rt.ListPodSandbox(pb.ListPodSandboxRequest(
            filter=pb.PodSandboxFilter(label_selector={"io.kubernetes.pod.uid": uid})), timeout=10).items
        result["sandboxes_left"] = len(left)
        shutil.rmtree(logdir, ignore_errors=True)

    result["ok"] = ok and result.get("sandboxes_left") == 0
    result["total_ms"] = ms()
    print(json.dumps(result, indent=2))
    print("PASS" if result["ok"] else "FAIL")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# v2-cycle.sh — the OOM cycle on a real cgroup v2 machine, from prebuilt binaries.
#
# Usage (as root, on a cgroup v2 machine; no Rust needed there):
#
#   sudo scripts/v2-cycle.sh [BIN_DIR]          # BIN_DIR holds oom-tracer and stress
#                                               # (default: target/release)
#   sudo OUT=/tmp/v2 scripts/v2-cycle.sh ./bin  # records go to $OUT (default: ./v2-out)
#
# What it does:
#   1. checks the machine: kernel (uname -r), /sys/fs/cgroup is cgroup2fs, the
#      root's cgroup.controllers offers `memory`, we are root; mounts tracefs at
#      /sys/kernel/tracing if it is missing;
#   2. `oom-tracer check --format json`                            -> $OUT/check.json
#   3. container-level limit:
#      `oom-tracer run --memory-limit 50Mi --backoff-initial 500ms --max-restarts 2
#       --cgroup-parent /oom-tracer-v2`                             -> $OUT/container.ndjson
#   4. pod-level limit:
#      `oom-tracer run --memory-limit none --pod-memory-limit 50Mi --max-restarts 0
#       --cgroup-parent /oom-tracer-v2`                             -> $OUT/pod.ndjson
#   5. the container-level run once more with `--format pretty --max-restarts 1`
#                                                                   -> $OUT/pretty.txt
#   6. verifies the records with python3 (stdlib only), the same things the v1
#      integration tests (oom-tracer/tests/run_cycle.rs) check: per attempt
#      exec -> alloc (>= 3, growing) -> oom_kill (memcg, victim stress,
#      memcg.path = the container cgroup, level container, limit 52428800,
#      failcnt non-null: on v2 the `max` count of memory.events) -> SIGKILL from
#      the kernel -> exit (signal 9, verdict memcg_oom) -> container_exit (137,
#      OOMKilled) -> restart, with back-off 500 ms then 1000 ms; for the pod
#      limit, memcg.path = the pod cgroup and level pod; no cgroup left behind.
#      Writes $OUT/summary.txt and prints an excerpt of the pretty timeline and
#      PASS or FAIL.
#
# It creates cgroups only through oom-tracer, under <memory hierarchy root>/oom-tracer-v2
# (the root is taken from `oom-tracer check`, never hard-coded), and writes
# files only in $OUT. The only other change it may make is mounting tracefs.
#
# Exit status: 0 PASS; 1 FAIL (a run or a check failed); 2 this machine cannot
# run it (not cgroup v2, no memory controller, not root, binaries or python3 missing).
#
# Environment:
#   OUT                  output directory (default: ./v2-out)
#   V2_CYCLE_ALLOW_V1=1  rehearsal on a cgroup v1 machine: skips only the v2
#                        machine checks and expects cgroup_version v1 from
#                        oom-tracer; everything else runs and is verified as on v2
#   V2_CYCLE_TIMEOUT     seconds each oom-tracer run may take (default: 120)

set -uo pipefail

PARENT=/oom-tracer-v2
LIMIT_BYTES=52428800
BIN_DIR=${1:-target/release}
OUT_DIR=${OUT:-./v2-out}
ALLOW_V1=${V2_CYCLE_ALLOW_V1:-0}
RUN_TIMEOUT=${V2_CYCLE_TIMEOUT:-120}

say() { printf 'v2-cycle: %s\n' "$*"; }
die() {
    local code=$1
    shift
    printf 'v2-cycle: %s\n' "$*" >&2
    exit "$code"
}

# ---------------------------------------------------------------- the machine
kernel=$(uname -r)
fstype=$(stat -fc %T /sys/fs/cgroup 2>/dev/null || echo "missing")
say "kernel $kernel; /sys/fs/cgroup is $fstype"
expect_version=v2
if [ "$fstype" = cgroup2fs ]; then
    controllers=$(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null || true)
    case " $controllers " in
    *" memory "*) say "cgroup.controllers: $controllers" ;;
    *) die 2 "the cgroup v2 root offers no memory controller (cgroup.controllers: '${controllers}')" ;;
    esac
elif [ "$ALLOW_V1" = 1 ]; then
    controllers="(not cgroup v2)"
    expect_version=v1
    say "V2_CYCLE_ALLOW_V1=1: not a cgroup v2 machine ($fstype); skipping the v2 machine checks, expecting cgroup v1 records"
else
    die 2 "not a cgroup v2 machine: /sys/fs/cgroup is $fstype, not cgroup2fs (set V2_CYCLE_ALLOW_V1=1 to rehearse on cgroup v1)"
fi

[ "$(id -u)" = 0 ] || die 2 "must run as root (it loads eBPF programs and creates memory cgroups)"
command -v python3 >/dev/null || die 2 "python3 is needed to verify the records"
command -v timeout >/dev/null || die 2 "timeout (coreutils) is needed"

[ -d "$BIN_DIR" ] || die 2 "binary directory $BIN_DIR does not exist (build with: cargo xtask build)"
BIN_DIR=$(cd "$BIN_DIR" && pwd)
TRACER=$BIN_DIR/oom-tracer
STRESS=$BIN_DIR/stress
for b in "$TRACER" "$STRESS"; do
    [ -x "$b" ] || die 2 "$b is missing or not executable (oom-tracer and stress must be side by side)"
done

if [ -d /sys/kernel/tracing/events ]; then
    tracefs="already mounted"
else
    mount -t tracefs nodev /sys/kernel/tracing || die 2 "could not mount tracefs at /sys/kernel/tracing"
    tracefs="mounted by this script"
fi
say "tracefs at /sys/kernel/tracing: $tracefs"

# Only our settings reach oom-tracer: an OOM_TRACER_FORMAT=pretty in root's
# environment would otherwise change what we parse.
while read -r v; do unset "$v"; done < <(compgen -e | grep '^OOM_TRACER_' || true)
export OOM_TRACER_LOG=info

mkdir -p "$OUT_DIR" || die 2 "cannot create $OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
rm -f "$OUT_DIR"/{check.json,check.stderr,container.ndjson,container.stderr,pod.ndjson,pod.stderr,pretty.txt,pretty.stderr,summary.txt,machine.txt,*.rc}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "uname: $(uname -a)"
    # shellcheck source=/dev/null
    [ -r /etc/os-release ] && (. /etc/os-release && echo "os: ${PRETTY_NAME:-unknown}")
    echo "cgroup fs: $fstype"
    echo "cgroup.controllers: $controllers"
    [ -r /sys/fs/cgroup/cgroup.subtree_control ] &&
        echo "root cgroup.subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
    echo "tracefs: $tracefs"
    echo "V2_CYCLE_ALLOW_V1: $ALLOW_V1"
    echo "binaries: $TRACER, $STRESS"
} >"$OUT_DIR/machine.txt"

# ---------------------------------------------------------------- check
"$TRACER" check --format json >"$OUT_DIR/check.json" 2>"$OUT_DIR/check.stderr"
echo $? >"$OUT_DIR/check.rc"
read -r mem_root check_version check_ok < <(python3 - "$OUT_DIR/check.json" <<'PY'
import json, sys
try:
    c = json.load(open(sys.argv[1]))
except Exception:
    print("- - -")
    sys.exit()
print(c.get("memory_mount") or "-", c.get("cgroup_version") or "-", str(c.get("ok")).lower())
PY
)
say "oom-tracer check: ok=$check_ok cgroup_version=$check_version memory hierarchy root=$mem_root (rc $(cat "$OUT_DIR/check.rc"))"
if [ "$mem_root" = - ] || [ ! -d "$mem_root" ]; then
    cat "$OUT_DIR/check.stderr" >&2
    die 1 "FAIL: oom-tracer check gave no memory hierarchy root (see $OUT_DIR/check.json, check.stderr)"
fi

# A parent left by an interrupted earlier run: remove its empty cgroups only.
if [ -e "$mem_root$PARENT" ]; then
    say "$mem_root$PARENT exists from an earlier run; removing its empty cgroups"
    find "$mem_root$PARENT" -depth -type d -exec rmdir {} \; 2>/dev/null
    [ -e "$mem_root$PARENT" ] && die 2 "$mem_root$PARENT is still in use; remove it by hand first"
fi

# ---------------------------------------------------------------- the runs
run_tracer() { # name, format args...
    local name=$1 file=$2
    shift 2
    say "run ($name): oom-tracer run $*"
    timeout -s TERM -k 15 "$RUN_TIMEOUT" "$TRACER" run "$@" >"$OUT_DIR/$file" 2>"$OUT_DIR/$name.stderr"
    local rc=$?
    echo $rc >"$OUT_DIR/$name.rc"
    say "run ($name): exit $rc, $(wc -l <"$OUT_DIR/$file") lines -> $OUT_DIR/$file"
}

run_tracer container container.ndjson \
    --memory-limit 50Mi --backoff-initial 500ms --max-restarts 2 --cgroup-parent "$PARENT"
run_tracer pod pod.ndjson \
    --memory-limit none --pod-memory-limit 50Mi --max-restarts 0 --cgroup-parent "$PARENT"
run_tracer pretty pretty.txt \
    --memory-limit 50Mi --backoff-initial 500ms --max-restarts 1 --cgroup-parent "$PARENT" --format pretty \
    --workload-output stderr # the workload's lines in pretty.stderr, not in a file of /tmp

# ---------------------------------------------------------------- verify
python3 - "$OUT_DIR" "$mem_root" "$PARENT" "$expect_version" "$LIMIT_BYTES" <<'PY'
import json, os, re, sys

out, mem_root, parent, expect_version, limit = sys.argv[1:6]
limit = int(limit)
MiB = 1 << 20
failures = []
passes = 0
summary = []


def check(cond, what):
    global passes
    if cond:
        passes += 1
    else:
        failures.append(what)
        print(f"  FAIL {what}")
    return cond


def note(line):
    print(f"  {line}")
    summary.append(line)


def rc(name):
    try:
        return int(open(os.path.join(out, f"{name}.rc")).read().strip())
    except Exception:
        return None


def load(name):
    recs = []
    path = os.path.join(out, name)
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        try:
            recs.append(json.loads(line))
        except ValueError as e:
            check(False, f"{name}:{n} is not JSON ({e}): {line[:120]!r}")
    return recs


def events(recs, name):
    return [r for r in recs if r.get("event") == name]


def find_from(recs, start, pred):
    for i in range(start, len(recs)):
        if pred(recs[i]):
            return i
    return None


def exists(path):
    rel = path.lstrip("/")
    return bool(rel) and os.path.exists(os.path.join(mem_root, rel))


TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def envelope(name, recs):
    check(len(recs) > 0, f"{name}: records on stdout")
    if not recs:
        return False
    bad = [r for r in recs if r.get("v") != 1 or not isinstance(r.get("event"), str)
           or not TIME.match(str(r.get("time")))]
    check(not bad, f"{name}: every record has v=1, event and an RFC 3339 time (bad: {bad[:1]})")
    check(recs[0].get("event") == "start", f"{name}: first record is start")
    check(recs[-1].get("event") == "stop", f"{name}: last record is stop")
    start = recs[0]
    # The startup check runs beside the tracing: `start` says `checking`,
    # and a `breakdown_check` record gives the verdict.
    bc = start.get("breakdown") or {}
    if bc.get("checking"):
        bc = next((r for r in recs if r.get("event") == "breakdown_check"), {})
    check(bc.get("enabled") is True, f"{name}: the breakdown check passed (detail: {bc.get('detail')})")
    note(f"{name}: startup check: {bc.get('detail')}")
    check(start.get("cgroup_version") == expect_version,
          f"{name}: start.cgroup_version is {expect_version} (got {start.get('cgroup_version')})")
    stop = recs[-1]
    check(stop.get("lost_events") == 0, f"{name}: stop.lost_events 0 (got {stop.get('lost_events')})")
    check(stop.get("decode_errors") == 0, f"{name}: stop.decode_errors 0 (got {stop.get('decode_errors')})")
    return True


def attempt(name, recs, at, cgroup, memcg_path, level, n):
    """exec -> alloc (>=3) -> oom_kill -> exit -> container_exit, from index at.
    Returns (index of container_exit, oom_kill record) or (None, None)."""
    tag = f"{name} attempt {n}"
    exec_i = find_from(recs, at, lambda r: r.get("event") == "exec" and r.get("cgroup") == cgroup)
    if not check(exec_i is not None, f"{tag}: exec in {cgroup}"):
        return None, None
    check(recs[exec_i].get("comm") == "stress", f"{tag}: exec comm stress")
    pid = recs[exec_i].get("pid")
    oom_i = find_from(recs, exec_i, lambda r: r.get("event") == "oom_kill")
    if not check(oom_i is not None, f"{tag}: oom_kill after exec"):
        return None, None
    allocs = [r["anon_rss_bytes"] for r in recs[exec_i:oom_i]
              if r.get("event") == "alloc" and r.get("kind", "anon") == "anon" and r.get("pid") == pid]
    check(len(allocs) >= 3, f"{tag}: allocation ramp has >= 3 alloc records before the kill (got {len(allocs)})")
    check(all(a < b for a, b in zip(allocs, allocs[1:])), f"{tag}: ramp grows ({allocs})")
    o = recs[oom_i]
    m = o.get("memcg") or {}
    v = o.get("victim") or {}
    check(o.get("kind") == "memcg", f"{tag}: oom_kill kind memcg (got {o.get('kind')})")
    check(v.get("comm") == "stress" and v.get("pid") == pid, f"{tag}: victim is stress[{pid}] (got {v.get('comm')}[{v.get('pid')}])")
    check((v.get("anon_rss_bytes") or 0) > 40 * MiB, f"{tag}: victim anon RSS > 40Mi (got {v.get('anon_rss_bytes')})")
    check(isinstance(v.get("oom_score_adj"), int), f"{tag}: victim oom_score_adj is an integer")
    check((o.get("trigger") or {}).get("comm") == "stress", f"{tag}: trigger is stress")
    check(m.get("path") == memcg_path, f"{tag}: memcg.path is {memcg_path} (got {m.get('path')})")
    check(m.get("level") == level, f"{tag}: memcg.level {level} (got {m.get('level')})")
    check(m.get("limit_bytes") == limit, f"{tag}: memcg.limit_bytes {limit} (got {m.get('limit_bytes')})")
    usage = m.get("usage_bytes") or 0
    check(limit - MiB < usage <= limit, f"{tag}: memcg.usage_bytes at the limit (got {usage})")
    check(isinstance(m.get("failcnt"), int) and m["failcnt"] > 0,
          f"{tag}: memcg.failcnt non-null and > 0 (got {m.get('failcnt')})")
    check(o.get("victim_cgroup") == cgroup, f"{tag}: victim_cgroup is the container cgroup")
    b = o.get("breakdown") or {}
    if check(bool(b), f"{tag}: breakdown present (the startup check passed)"):
        parts = sum((b.get(k) or 0) for k in ("anon_bytes", "file_bytes", "shmem_bytes", "kernel_bytes", "sock_bytes"))
        check(abs(parts - usage) <= 2 * MiB,
              f"{tag}: breakdown parts add up to usage within 2Mi (parts {parts}, usage {usage})")
        check((b.get("anon_bytes") or 0) > 40 * MiB, f"{tag}: breakdown anon > 40Mi (got {b.get('anon_bytes')})")
        ev = b.get("events") or {}
        # The memcg that OOMed counts the OOM; the kill counts at the
        # victim's memcg, and on v2 (only) at its ancestors too.
        check((ev.get("oom") or 0) >= 1 and (expect_version == "v1" and level == "pod" or (ev.get("oom_kill") or 0) >= 1),
              f"{tag}: breakdown events oom >= 1 and oom_kill >= 1 (v1 pod level: 0) (got {ev})")
        note(f"{tag}: breakdown anon {b.get('anon_bytes')} file {b.get('file_bytes')} shmem {b.get('shmem_bytes')} "
             f"kernel {b.get('kernel_bytes')} sock {b.get('sock_bytes')} = {parts} vs usage {usage}; "
             f"pending {b.get('pending_updates')}")
    cause = o.get("cause") or {}
    check(cause.get("part") == "anon", f"{tag}: cause anon (got {cause.get('part')}: {cause.get('text')})")
    tasks = o.get("tasks")
    check(isinstance(tasks, list) and any(t.get("victim") and t.get("pid") == pid for t in tasks),
          f"{tag}: task list names the victim (got {tasks})")
    sig_i = find_from(recs, exec_i, lambda r: r.get("event") == "signal"
                      and (r.get("target") or {}).get("pid") == pid)
    check(sig_i is not None and sig_i < oom_i + 2 and recs[sig_i].get("from_kernel") is True,
          f"{tag}: SIGKILL from the kernel next to the kill")
    exit_i = find_from(recs, oom_i, lambda r: r.get("event") == "exit" and r.get("pid") == pid)
    if not check(exit_i is not None, f"{tag}: exit of stress[{pid}] after the kill"):
        return None, o
    e = recs[exit_i]
    check(e.get("signal") == 9 and e.get("exit_code") is None, f"{tag}: exit by signal 9 (got {e.get('signal')}/{e.get('exit_code')})")
    check(e.get("verdict") == "memcg_oom", f"{tag}: exit verdict memcg_oom (got {e.get('verdict')})")
    cexit_i = find_from(recs, exit_i, lambda r: r.get("event") == "container_exit")
    if not check(cexit_i is not None, f"{tag}: container_exit"):
        return None, o
    c = recs[cexit_i]
    check(c.get("exit_code") == 137 and c.get("reason") == "OOMKilled",
          f"{tag}: container_exit 137 OOMKilled (got {c.get('exit_code')} {c.get('reason')})")
    check(c.get("verdict") == "memcg_oom", f"{tag}: container_exit verdict memcg_oom")
    note(f"{tag}: exec stress[{pid}] -> {len(allocs)} alloc -> oom_kill {m.get('level')} "
         f"{m.get('path')} usage {usage} / limit {m.get('limit_bytes')}, failcnt {m.get('failcnt')}, "
         f"source {o.get('source')} -> exit signal 9 ({e.get('verdict')}) -> 137 OOMKilled")
    return cexit_i, o


# check
print("oom-tracer check")
try:
    c = json.load(open(os.path.join(out, "check.json")))
except Exception as e:
    c = {}
    check(False, f"check.json is JSON ({e})")
check(rc("check") == 0, f"check: exit 0 (got {rc('check')})")
check(c.get("ok") is True, "check: ok true")
check(c.get("cgroup_version") == expect_version, f"check: cgroup_version {expect_version} (got {c.get('cgroup_version')})")
hooks = c.get("hooks") or {}
note(f"check: kernel {c.get('kernel')}, cgroup {c.get('cgroup_version')} at {c.get('memory_mount')}, "
     f"{len(hooks.get('active') or [])} hooks active, missing {[m.get('hook') for m in hooks.get('missing') or []]}")

# container-level limit
print("container-level limit (--memory-limit 50Mi --backoff-initial 500ms --max-restarts 2)")
recs = load("container.ndjson")
check(rc("container") == 0, f"container: exit 0 (got {rc('container')})")
cgroups = []
if envelope("container", recs):
    starts = events(recs, "container_start")
    check(len(starts) == 3, f"container: 3 container_start (first run + 2 restarts; got {len(starts)})")
    at = 0
    for n, s in enumerate(starts):
        cg = s.get("cgroup")
        cgroups.append(cg)
        check(s.get("memory_limit_bytes") == limit, f"container attempt {n}: memory_limit_bytes {limit}")
        check((s.get("container") or {}).get("restart_count") == n, f"container attempt {n}: restart_count {n}")
        idx, o = attempt("container", recs, at, cg, cg, "container", n)
        if o is not None:
            check((o.get("container") or {}).get("restart_count") == n, f"container attempt {n}: oom_kill names restart_count {n}")
        if idx is None:
            break
        at = idx
        if n < 2:
            r_i = find_from(recs, at, lambda r: r.get("event") == "restart")
            if check(r_i is not None, f"container attempt {n}: restart follows"):
                check(recs[r_i].get("restart_count") == n + 1, f"container attempt {n}: restart_count {n + 1}")
                check(recs[r_i].get("last_reason") == "OOMKilled", f"container attempt {n}: restart last_reason OOMKilled")
                at = r_i
    restarts = [r.get("backoff_ms") for r in events(recs, "restart")]
    check(restarts == [500, 1000], f"container: restart backoff_ms doubles [500, 1000] (got {restarts})")
    waits = [(r.get("state"), r.get("backoff_ms")) for r in events(recs, "backoff")]
    check(waits[:2] == [("CrashLoopBackOff", 500), ("CrashLoopBackOff", 1000)],
          f"container: backoff CrashLoopBackOff 500 then 1000 (got {waits})")
    stop = recs[-1]
    check(stop.get("reason") == "max_restarts" and stop.get("restarts") == 2 and stop.get("oom_kills") == 3,
          f"container: stop max_restarts, 2 restarts, 3 OOM kills (got {stop.get('reason')}, {stop.get('restarts')}, {stop.get('oom_kills')})")
    note(f"container: restarts after {restarts} ms back-off; stop {stop.get('reason')}, "
         f"{stop.get('oom_kills')} OOM kills, {stop.get('records')} records")
    pods = {cg.rsplit("/", 1)[0] for cg in cgroups if cg}
    cgroups.extend(pods)

# pod-level limit
print("pod-level limit (--memory-limit none --pod-memory-limit 50Mi --max-restarts 0)")
recs = load("pod.ndjson")
check(rc("pod") == 0, f"pod: exit 0 (got {rc('pod')})")
if envelope("pod", recs):
    starts = events(recs, "container_start")
    check(len(starts) == 1, f"pod: 1 container_start (got {len(starts)})")
    if starts:
        s = starts[0]
        ctr = s.get("cgroup") or ""
        pod = ctr.rsplit("/", 1)[0]
        cgroups.extend([ctr, pod])
        check(s.get("memory_limit_bytes") is None and s.get("pod_memory_limit_bytes") == limit,
              f"pod: container limit none, pod limit {limit} (got {s.get('memory_limit_bytes')}, {s.get('pod_memory_limit_bytes')})")
        attempt("pod", recs, 0, ctr, pod, "pod", 0)
    check(len(events(recs, "oom_kill")) == 1, "pod: exactly 1 oom_kill")
    check(not events(recs, "restart"), "pod: no restart (--max-restarts 0)")
    stop = recs[-1]
    check(stop.get("reason") == "max_restarts", f"pod: stop max_restarts (got {stop.get('reason')})")

# pretty
print("pretty timeline (--format pretty --max-restarts 1)")
check(rc("pretty") == 0, f"pretty: exit 0 (got {rc('pretty')})")
text = open(os.path.join(out, "pretty.txt"), encoding="utf-8", errors="replace").read()
for needle in ("OOM KILL stress", "exit code 137, reason OOMKilled", "CrashLoopBackOff: back-off 0.5s",
               "restarted (restart #1, after 0.5s back-off)", "stopped (max_restarts)"):
    check(needle in text, f"pretty: timeline has {needle!r}")
check("\x1b[" not in text, "pretty: no colour escapes in a file")

# nothing left behind
print("clean-up")
left = [p for p in sorted(set(cgroups)) + [parent] if p and exists(p)]
check(not left, f"no cgroup left behind under {mem_root}{parent} (left: {left})")
note(f"clean-up: {len(set(cgroups))} cgroups of the runs and {mem_root}{parent} are gone" if not left
     else f"clean-up: left behind {left}")

with open(os.path.join(out, "summary.txt"), "w") as f:
    f.write("\n".join(summary) + "\n")
    f.write(f"{passes} checks passed, {len(failures)} failed\n")
    for what in failures:
        f.write(f"FAIL {what}\n")
print(f"{passes} checks passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
PY
verify_rc=$?

# ---------------------------------------------------------------- excerpt
echo
say "pretty timeline, first attempt (full: $OUT_DIR/pretty.txt):"
python3 - "$OUT_DIR/pretty.txt" <<'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8", errors="replace").read().splitlines()
run = skipped = 0  # consecutive alloc lines; those not shown
for line in lines:
    if " alloc " in line[:32]:
        run += 1
        if run > 2:
            skipped += 1
            continue
    else:
        run = 0
        if skipped:
            print(f"  …            ({skipped} more alloc lines)")
            skipped = 0
    print("  " + line)
    if " restart " in line[:32]:
        break
print(f"  … ({len(lines)} lines in all)")
PY

echo
if [ "$verify_rc" = 0 ]; then
    if [ "$expect_version" = v2 ]; then
        say "PASS: cgroup v2 cycle on kernel $kernel verified (records and summary in $OUT_DIR)"
    else
        say "PASS (v1 rehearsal, V2_CYCLE_ALLOW_V1=1: this is NOT cgroup v2 evidence): cycle on kernel $kernel verified (records and summary in $OUT_DIR)"
    fi
    exit 0
fi
say "FAIL: see the FAIL lines above and $OUT_DIR (summary.txt, *.stderr)"
exit 1

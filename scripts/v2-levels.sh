#!/usr/bin/env bash
# v2-levels.sh — which memcg an OOM kill is attributed to, on cgroup v2, in
# three shapes; for the guest of scripts/qemu-v2.sh:
#   QEMU_V2_CMD="$PWD/scripts/v2-levels.sh" scripts/qemu-v2.sh target/debug
# Prints one line per shape: the wanted `memcg.level` and, per oom_kill
# record, the level, the path and the memcg's memory.events at the kill.
#   both:      pod and container limited to 50Mi (the pod also holds the
#              pause process): the pod cgroup hits its limit -> pod
#   podonly:   only the pod limited to 50Mi -> pod
#   container: container 30Mi below the pod's 50Mi -> container
# Exit status: 0 when every kill has the wanted level, 1 otherwise.
set -u
T=${BIN_DIR:-target/release}/oom-tracer
OUT=$(mktemp -d)
PARENT=/oom-tracer-levels
echo +memory >/sys/fs/cgroup/cgroup.subtree_control
mkdir -p /sys/fs/cgroup$PARENT && echo +memory >/sys/fs/cgroup$PARENT/cgroup.subtree_control
"$T" check >"$OUT/check.txt" 2>&1
echo "oom-tracer check: exit $?; $(grep -c attached "$OUT/check.txt") hooks attached"
grep missing "$OUT/check.txt"
rc=0
for c in "both:--memory-limit 50Mi --pod-memory-limit 50Mi:pod" \
    "podonly:--memory-limit none --pod-memory-limit 50Mi:pod" \
    "container:--memory-limit 30Mi --pod-memory-limit 50Mi:container"; do
    name=${c%%:*} rest=${c#*:}
    args=${rest%%:*} want=${rest##*:}
    # shellcheck disable=SC2086 # the flags split on purpose
    timeout -s TERM -k 10 120 "$T" run $args --max-restarts 1 --backoff-initial 300ms \
        --cgroup-parent "$PARENT" >"$OUT/$name.ndjson" 2>"$OUT/$name.stderr"
    got=$(python3 - "$OUT/$name.ndjson" "$want" <<'PY'
import json, sys
kills = [r for r in map(json.loads, open(sys.argv[1])) if r.get("event") == "oom_kill"]
for r in kills:
    m = r["memcg"]
    print(f'{m["level"]} {m["path"]} {(r.get("breakdown") or {}).get("events")};', end=" ")
sys.exit(0 if kills and all(r["memcg"]["level"] == sys.argv[2] for r in kills) else 1)
PY
    ) || rc=1
    echo "$name: want $want, got: $got"
done
rmdir /sys/fs/cgroup$PARENT 2>/dev/null
echo "v2-levels: $([ $rc = 0 ] && echo PASS || echo FAIL)"
exit $rc

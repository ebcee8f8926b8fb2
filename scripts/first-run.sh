#!/usr/bin/env bash
# A new user's first run, timed: `cargo xtask demo` (or another xtask
# command) from a fresh clone, with a fresh cargo home (crate index and
# downloads) and a fresh ~/.cache (bpf-linker), as on a machine that has
# only rustup. Prints the time from the start to each milestone, and for
# the demo to its first timeline line (its first line on stdout).
#
#   sudo scripts/first-run.sh                 # cargo xtask demo, as root
#   scripts/first-run.sh demo --no-run        # to the built demo binaries (no root)
#   sudo scripts/first-run.sh test            # cargo xtask test
#
# What stays from this machine: rustup's toolchains (stable, nightly) and
# their components; a machine with nothing but rustup also downloads
# nightly's rust-src (a few seconds). FIRST_RUN_CARGO_HOME=shared keeps
# ~/.cargo's crate downloads (no network for crates; not a first run).
# The clone, its target directory and the caches are in FIRST_RUN_DIR
# (default: a new directory under /var/tmp), removed at the end unless
# FIRST_RUN_KEEP=1. The log of every line, with its time, is
# $FIRST_RUN_DIR/first-run.log (kept when FIRST_RUN_KEEP=1).
set -euo pipefail

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(demo)

dir=${FIRST_RUN_DIR:-$(mktemp -d /var/tmp/oom-tracer-first-run.XXXXXX)}
mkdir -p "$dir"
cleanup() {
    if [ "${FIRST_RUN_KEEP:-0}" != 1 ]; then
        rm -rf "$dir"
    fi
}
trap cleanup EXIT

# The committed tree, as `git clone` gives it to a user.
git clone --quiet --no-hardlinks "$repo" "$dir/clone"
export XDG_CACHE_HOME="$dir/cache"
if [ "${FIRST_RUN_CARGO_HOME:-fresh}" != shared ]; then
    export CARGO_HOME="$dir/cargo-home"
fi
unset CARGO_TARGET_DIR OOM_TRACER_TOOLS_DIR RUSTC_WRAPPER
echo "first-run: $(git -C "$dir/clone" log -1 --format='%h %s' | cut -c1-72)"
echo "first-run: cargo xtask ${args[*]} in $dir/clone; CARGO_HOME=${CARGO_HOME:-~/.cargo}, XDG_CACHE_HOME=$XDG_CACHE_HOME"
echo "first-run: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

log="$dir/first-run.log"
start=$(date +%s.%N)
since() { awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { t = n - s; printf "%dm%04.1fs", t / 60, t % 60 }'; }

# Every line with its time since the start: the command's stderr as
# `err`, its stdout (the timeline) as `out`.
set +e
(
    cd "$dir/clone"
    cargo xtask "${args[@]}" 2> >(while IFS= read -r l; do echo "$(since) err $l"; done >>"$log")
) | while IFS= read -r l; do
    echo "$(since) out $l" >>"$log"
    printf '%s\n' "$l"
done
rc=${PIPESTATUS[0]}
set -e
sleep 0.2 # the stderr reader's last lines

echo "first-run: milestones (time since the start):"
first() { grep -m1 -E "$1" "$log" | cut -c1-150 | sed 's/^/  /'; }
last() { sed -n '/ out /q;p' "$log" | grep -E "$1" | tail -1 | cut -c1-150 | sed 's/^/  /'; }
first '^[^ ]+ err xtask: ' || true                       # xtask compiled, its first step
first '^[^ ]+ err +Installed package `bpf-linker' || true
first '^[^ ]+ err warning: oom-tracer@[^ ]+ +Finished ' || true  # the eBPF object
last '^[^ ]+ err +Finished `(dev|release)` profile' || true  # the last build before the run
first '^[^ ]+ err +Finished `test` profile' || true
first '^[^ ]+ out ' || true                               # the first line of the timeline
first '^[^ ]+ out .*(oom_kill|OOM KILL)' || true
first '^[^ ]+ err test result' || true
# CPU time of everything it ran (the shell's reaped children): on a busy
# machine the wall times above stretch, this does not much; a quiet
# machine with N CPUs needs at least this divided by N.
# (`times` in this shell, not in a pipeline's subshell, which has no children.)
times >"$dir/times"
cpu=$(tail -1 "$dir/times" | awk '{ split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.0f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }')
echo "first-run: CPU time (user + sys) of all it ran: ${cpu}s"
echo "first-run: cargo xtask ${args[*]} exited $rc after $(since)"
if [ "${FIRST_RUN_KEEP:-0}" = 1 ]; then
    echo "first-run: kept $dir (log: $log)"
fi
exit "$rc"

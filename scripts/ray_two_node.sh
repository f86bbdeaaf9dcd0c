#!/usr/bin/env bash
# Two Ray nodes on this machine, both on loopback, and `srt score --executor ray` across them.
#
#   scripts/ray_two_node.sh PAIRS.jsonl > scores.jsonl
#
# Both nodes bind 127.0.0.1 (`--node-ip-address=127.0.0.1`). `ray start` would rewrite
# 127.0.0.1 to the machine's network address; scripts/ray_loopback_node.py is `ray start`
# without that rewrite. Each node has one CPU, so the two student actors land one on each.
#
# At the end both nodes are stopped by their process groups, not with `ray stop`, which stops
# every Ray process on the machine, other people's clusters included.
set -euo pipefail

pairs=${1:?usage: ray_two_node.sh PAIRS.jsonl}
python=${PYTHON:-.venv/bin/python}
node=("$python" "$(dirname "$0")/ray_loopback_node.py")
export RAY_USAGE_STATS_ENABLED=0
export OMP_WAIT_POLICY=PASSIVE

port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
tmp=$(mktemp -d /tmp/srt-ray2.XXXXXX)
# Ray's token authentication, with a token of this cluster's own (not ~/.ray's): the nodes and
# the srt driver all read it from here.
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$tmp/auth_token"
"$python" -c 'import secrets; print(secrets.token_hex(32))' >"$RAY_AUTH_TOKEN_PATH"
head_pid="" worker_pid=""

stop_nodes() {
    for pid in $worker_pid $head_pid; do
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for _ in $(seq 1 50); do
        alive=0
        for pid in $worker_pid $head_pid; do
            if pgrep -g "$pid" >/dev/null 2>&1; then alive=1; fi
        done
        [ "$alive" = 0 ] && break
        sleep 0.2
    done
    for pid in $worker_pid $head_pid; do
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
    echo "stopped both nodes" >&2
}
trap stop_nodes EXIT

# setsid: each node in a process group of its own, so that it can be stopped whole.
setsid "${node[@]}" start --head --block \
    --node-ip-address=127.0.0.1 --port="$port" --num-cpus=1 --include-dashboard=false \
    --temp-dir="$tmp/ray" >"$tmp.head.log" 2>&1 &
head_pid=$!

"$python" - "$port" <<'PY'
import socket, sys, time
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit("the head node did not come up")
PY

setsid "${node[@]}" start --block --address="127.0.0.1:$port" \
    --node-ip-address=127.0.0.1 --num-cpus=1 \
    >"$tmp.worker.log" 2>&1 &
worker_pid=$!

# Wait until both nodes are alive, and check that both announce loopback.
"$python" - "$port" <<'PY'
import sys, time, ray
from ray._private import ray_constants
ray_constants.ENABLE_RAY_CLUSTER = False  # this driver's own address: loopback, as srt's
ray.init(address=f"127.0.0.1:{sys.argv[1]}", log_to_driver=False, logging_level="ERROR")
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    nodes = [n for n in ray.nodes() if n["Alive"]]
    if len(nodes) == 2:
        break
    time.sleep(0.5)
ips = sorted(n["NodeManagerAddress"] for n in nodes)
if ips != ["127.0.0.1", "127.0.0.1"]:
    sys.exit(f"nodes up: {ips} (want two on 127.0.0.1)")
print(f"two nodes on 127.0.0.1:{sys.argv[1]}", file=sys.stderr)
PY

"$python" -m srt_local.cli score "$pairs" --no-cache --executor ray \
    --ray-address "127.0.0.1:$port" --workers 2
rm -f "$tmp.head.log" "$tmp.worker.log"

#!/usr/bin/env bash
# `make e2e`: the quickstart's flow the way a cluster runs it. Starts the local stack (S3 +
# MLflow server, infra/local/stack.py) and a local Ray head, submits the flow with
# `ray job submit --working-dir .`, with samples, checkpoints, sweep state, MLflow artifacts
# and upscaled images in the stack's bucket, checks the results, and tears everything down.
#   infra/local/e2e.sh [--quick]      (arguments go to python -m pipeline.quickstart)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
export PATH="$VENV/bin:$PATH"   # the job's `python` is this venv's
STATE=${SRGAN_STACK_DIR:-$PWD/.stack}
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
# Keep Ray Data's task workers alive between tasks (see pipeline/cluster.py).
export RAY_num_workers_soft_limit=12 RAY_idle_worker_killing_time_threshold_ms=600000

port() { python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

RAY_PID=
cleanup() {
    # Stop only the head started here (`ray stop` would stop every Ray on the machine).
    if [ -n "$RAY_PID" ]; then
        kill -TERM "$RAY_PID" 2>/dev/null || true
        for _ in $(seq 60); do kill -0 "$RAY_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL -- "-$RAY_PID" 2>/dev/null || true
        # What `ray stop` would also do: forget this head, now dead, as the machine's current cluster.
        python -c 'from pipeline.cluster import forget_dead_cluster; forget_dead_cluster()' || true
    fi
    python infra/local/stack.py down --dir "$STATE" || true
}
trap cleanup EXIT

python infra/local/stack.py up --dir "$STATE"
# shellcheck disable=SC1091
source "$STATE/env.sh"

GCS=$(port); DASH=$(port)
# --block keeps the head's processes tied to this one process (a group leader), so cleanup
# can stop exactly this head. No drain on SIGTERM: by then the job has ended (the default
# would wait up to 30 s for idle workers).
RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0 ray start --head --block --node-ip-address 127.0.0.1 --port "$GCS" --num-cpus 2 \
    --include-dashboard true --dashboard-host 127.0.0.1 --dashboard-port "$DASH" \
    --dashboard-agent-listen-port "$(port)" --dashboard-agent-grpc-port "$(port)" \
    --metrics-export-port "$(port)" --ray-client-server-port "$(port)" --runtime-env-agent-port "$(port)" \
    --min-worker-port 20000 --max-worker-port 29999 --disable-usage-stats >"$STATE/ray-head.log" 2>&1 &
RAY_PID=$!
python infra/local/stack.py wait-http "http://127.0.0.1:$DASH/api/version" --pid "$RAY_PID" --log "$STATE/ray-head.log"
echo "local Ray head: dashboard http://127.0.0.1:$DASH"

ROOT="s3://$SRGAN_BUCKET/e2e"
OUT="$STATE/e2e-out"
ray job submit --address "http://127.0.0.1:$DASH" --working-dir . -- \
    python -m pipeline.quickstart --root "$ROOT" --out "$OUT" "$@"

python infra/local/check_e2e.py --root "$ROOT" --out "$OUT"

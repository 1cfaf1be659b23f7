#!/usr/bin/env bash
# Local Triton (the server bundled in the nvidia-pytriton wheel) for inferstream.
#
#   deploy/triton/triton.sh start    start and wait until /v2/health/ready (exit 0 if already up)
#   deploy/triton/triton.sh stop     SIGTERM, wait, SIGKILL fallback; check no port is left open
#   deploy/triton/triton.sh status   exit 0 when ready, 1 otherwise
#
# Environment (defaults in brackets):
#   INFERSTREAM_VENV                 [<repo>/.venv]   venv holding nvidia-pytriton
#   INFERSTREAM_MODEL_REPO           [<repo>/model_repo]
#   INFERSTREAM_TRITON_HTTP_PORT     [18000]
#   INFERSTREAM_TRITON_GRPC_PORT     [18001]
#   INFERSTREAM_TRITON_METRICS_PORT  [18002]
#   INFERSTREAM_TRITON_ADDRESS       [127.0.0.1]      bind address of all three (0.0.0.0: all hosts)
#   INFERSTREAM_RUN_DIR              [<repo>/.run]    log + pid in $RUN_DIR/triton-<grpc port>/
#   INFERSTREAM_TRITON_START_TIMEOUT [120] seconds;  INFERSTREAM_TRITON_STOP_TIMEOUT [30] seconds
#   INFERSTREAM_TRITON_LOG_VERBOSE   [0]
# CUDA/NVML/DCGM errors in the log are expected (and harmless) on a CPU-only host.
# Models are loaded explicitly: every model folder with a built version folder, except the
# KIND_GPU / tensorrt_plan ones when nvidia-smi finds no GPU (so readiness here is not spoiled).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv=${INFERSTREAM_VENV:-$repo/.venv}
model_repo=${INFERSTREAM_MODEL_REPO:-$repo/model_repo}
http_port=${INFERSTREAM_TRITON_HTTP_PORT:-18000}
grpc_port=${INFERSTREAM_TRITON_GRPC_PORT:-18001}
metrics_port=${INFERSTREAM_TRITON_METRICS_PORT:-18002}
address=${INFERSTREAM_TRITON_ADDRESS:-127.0.0.1}
probe_host=$([ "$address" = 0.0.0.0 ] && echo 127.0.0.1 || echo "$address")
run_dir=${INFERSTREAM_RUN_DIR:-$repo/.run}/triton-$grpc_port
start_timeout=${INFERSTREAM_TRITON_START_TIMEOUT:-120}
stop_timeout=${INFERSTREAM_TRITON_STOP_TIMEOUT:-30}
log_file=$run_dir/triton.log
pid_file=$run_dir/triton.pid

say() { echo "[triton] $*"; }
die() { echo "[triton] error: $*" >&2; exit 1; }

ready() {
  curl -fsS -o /dev/null --noproxy '*' --max-time 2 \
    "http://$probe_host:$http_port/v2/health/ready" 2>/dev/null
}
listening() { (exec 3<>"/dev/tcp/$probe_host/$1") 2>/dev/null; }
any_listening() {
  local p
  for p in "$http_port" "$grpc_port" "$metrics_port"; do listening "$p" && { echo "$p"; return 0; }; done
  return 1
}
read_pid() { [ -f "$pid_file" ] && cat "$pid_file" 2>/dev/null || true; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null && grep -qa tritonserver "/proc/$1/cmdline" 2>/dev/null; }
# While starting: the process we launched exists and is no zombie. Not `alive`: right after
# `setsid nohup ... &` the pid may still be the forked shell that has not exec'd tritonserver yet,
# and `alive` would call that dead (seen under load: "exited before becoming ready", empty log).
started() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}
log_tail() {
  [ -f "$log_file" ] || return 0
  echo "----- last 30 lines of $log_file -----" >&2
  tail -n 30 "$log_file" >&2
  echo "----- errors in $log_file (CUDA/NVML/DCGM ones are harmless on CPU) -----" >&2
  grep -E '^E[0-9]|UNAVAILABLE|[Ee]rror:' "$log_file" | grep -vE 'CUDA|NVML|DCGM|CudaDriver' | tail -n 10 >&2 || true
}

site_packages() {
  [ -x "$venv/bin/python" ] || die "no venv at $venv (run deploy/setup.sh or set INFERSTREAM_VENV)"
  "$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
}

have_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; }

# Names of the models to load: built (a numeric version folder) and runnable on this host.
loadable_models() {
  local dir name
  for dir in "$model_repo"/*/; do
    name=$(basename "$dir")
    [ -f "$dir/config.pbtxt" ] || continue
    find "$dir" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*' | grep -q . || continue
    if grep -qE 'KIND_GPU|tensorrt_plan' "$dir/config.pbtxt" && ! have_gpu; then continue; fi
    echo "$name"
  done
}

wait_ready() {
  local pid=$1 deadline=$((SECONDS + start_timeout))
  until ready; do
    if ! started "$pid"; then log_tail; die "tritonserver (pid $pid) exited before becoming ready"; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail; die "not ready after ${start_timeout}s (pid $pid still running; '$0 stop' ends it)"
    fi
    sleep 0.5
  done
}

cmd_start() {
  local pid; pid=$(read_pid)
  if ready; then
    say "already running: http $http_port, grpc $grpc_port${pid:+ (pid $pid)}"; return 0
  fi
  if alive "$pid"; then
    say "pid $pid is starting; waiting for readiness"; wait_ready "$pid"; say "ready"; return 0
  fi
  local busy; if busy=$(any_listening); then
    die "port $busy is in use by another process (set INFERSTREAM_TRITON_*_PORT)"
  fi
  local site; site=$(site_packages)
  local server=$site/pytriton/tritonserver/bin/tritonserver
  local backends=$site/pytriton/tritonserver/backends
  [ -x "$server" ] || die "no tritonserver at $server (pip install --no-deps nvidia-pytriton)"
  [ -x "$backends/python/triton_python_backend_stub" ] || die "python-backend stub missing (run deploy/setup.sh)"
  [ -d "$model_repo" ] || die "no model repository at $model_repo"
  local versions; versions=$(find "$model_repo" -mindepth 2 -maxdepth 2 -type d -name '[0-9]*' | head -1)
  [ -n "$versions" ] || die "no built model version under $model_repo (run: inferstream build-models)"

  local loads=() m
  while IFS= read -r m; do loads+=("--load-model=$m"); done < <(loadable_models)
  [ "${#loads[@]}" -gt 0 ] || die "no loadable model under $model_repo"
  mkdir -p "$run_dir"
  say "models: ${loads[*]#--load-model=}"
  say "starting on http $http_port, grpc $grpc_port, metrics $metrics_port; log $log_file"
  local started=$SECONDS
  # --model-config-name=built: a model whose build wrote configs/built.pbtxt (inferstream_cpu
  # where FP32 is served, labelled so) loads that; every other model its config.pbtxt.
  # setsid: own session/process group (stubs included), immune to the caller's terminal.
  # The python-backend stub runs the first python3 on PATH, hence the venv's bin/ first.
  LD_LIBRARY_PATH="$site/nvidia_pytriton.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
  PATH="$venv/bin:$PATH" \
    setsid nohup "$server" \
      --model-repository="$model_repo" \
      --backend-directory="$backends" \
      --model-control-mode=explicit "${loads[@]}" \
      --model-config-name=built \
      --exit-on-error=true \
      --strict-readiness=true \
      --http-address="$address" --grpc-address="$address" --metrics-address="$address" \
      --http-port="$http_port" --grpc-port="$grpc_port" --metrics-port="$metrics_port" \
      --log-verbose="${INFERSTREAM_TRITON_LOG_VERBOSE:-0}" \
      >"$log_file" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$pid_file"
  wait_ready "$pid"
  say "ready in $((SECONDS - started))s (pid $pid)"
}

cmd_stop() {
  local pid; pid=$(read_pid)
  if ! alive "$pid"; then
    rm -f "$pid_file"
    local busy; if busy=$(any_listening); then
      die "no tritonserver started here, but port $busy is still listening"
    fi
    say "not running"; return 0
  fi
  say "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + stop_timeout))
  while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
  if alive "$pid"; then
    say "still running after ${stop_timeout}s: SIGKILL to its process group"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    sleep 1
  fi
  # Python-backend stubs share the server's process group; none may outlive it.
  pkill_group "$pid"
  rm -f "$pid_file"
  deadline=$((SECONDS + 10))
  local busy
  while busy=$(any_listening); do
    [ "$SECONDS" -lt "$deadline" ] || die "port $busy still listening after stop"
    sleep 0.5
  done
  say "stopped"
}

pkill_group() {
  local pgid=$1 pids
  pids=$(pgrep -g "$pgid" 2>/dev/null || true)
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
}

cmd_status() {
  local pid; pid=$(read_pid)
  if ready; then say "ready: http $http_port, grpc $grpc_port${pid:+ (pid $pid)}"; return 0; fi
  if alive "$pid"; then say "running but not ready (pid $pid)"; return 1; fi
  say "not running"; return 1
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 {start|stop|status}" >&2; exit 2 ;;
esac

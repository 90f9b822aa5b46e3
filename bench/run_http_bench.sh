#!/usr/bin/env bash
# Measures a local Carewire over HTTPS with carewire-loadgen.
#
# Usage: bench/run_http_bench.sh [BUILD_DIR]     (default build/release)
#
# Builds nothing: BUILD_DIR must already hold apps/carewire/carewire and
# bench/carewire-loadgen. Starts the server with the write probe enabled in a
# fresh temporary data directory on 127.0.0.1 (a port the kernel picks), runs
# the load generator against GET /healthz and POST
# /api/v1/diagnostics/write-probe at each concurrency, stops the server with
# SIGTERM and checks that it exited 0. The server is stopped and the data
# directory removed on any exit.
#
# Environment (all optional):
#   CONNECTIONS     concurrency levels to run, default "16 128"
#   DURATION        measured seconds per run, default 10
#   WARMUP          uncounted seconds per run, default 1
#   LOADGEN_THREADS io threads of the load generator, default 1
#   BENCH_TMPDIR    where the data directory is made, default ${TMPDIR:-/tmp};
#                   it must be on the disk being measured, not tmpfs

set -euo pipefail

build_dir=${1:-build/release}
connections=${CONNECTIONS:-"16 128"}
duration=${DURATION:-10}
warmup=${WARMUP:-1}
loadgen_threads=${LOADGEN_THREADS:-1}

server_bin=$build_dir/apps/carewire/carewire
loadgen_bin=$build_dir/bench/carewire-loadgen
for bin in "$server_bin" "$loadgen_bin"; do
  if [[ ! -x $bin ]]; then
    echo "run_http_bench: $bin not found; build the 'carewire' and 'bench' targets first" >&2
    exit 2
  fi
done

# Seconds to wait for the server to print its address, and to stop.
readonly start_timeout=30
readonly stop_timeout=20

work_dir=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/carewire-http-bench.XXXXXX")
server_pid=""
loadgen_pid=""

# True while the process runs. (kill -0 is not enough: it succeeds on a child
# that has exited but not yet been waited for.)
alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $state != Z* ]]
}

# Sends SIGTERM and waits up to stop_timeout for the server to exit.
stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || true
  for ((i = 0; i < stop_timeout * 10; i++)); do
    alive "$server_pid" || return 0
    sleep 0.1
  done
  return 1
}

# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
  # Nothing may cut the clean-up short, not even a closed output pipe.
  trap '' HUP INT PIPE TERM
  if [[ -n $loadgen_pid ]]; then
    kill -TERM "$loadgen_pid" 2>/dev/null || true
  fi
  if [[ -n $server_pid ]] && alive "$server_pid"; then
    stop_server || kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work_dir"
}
trap cleanup EXIT
# A signal that would end the shell without running the EXIT trap becomes an
# exit, so the server is never left behind (SIGKILL aside).
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

: >"$work_dir/stdout"
# Stderr carries the server's JSON log lines, one per request: not wanted here.
CAREWIRE_DIAGNOSTICS_WRITE_PROBE=true "$server_bin" serve \
  --data-dir "$work_dir/data" --listen 127.0.0.1:0 >"$work_dir/stdout" 2>/dev/null &
server_pid=$!

port=""
for ((i = 0; i < start_timeout * 10; i++)); do
  port=$(sed -n 's#^listening on https://127\.0\.0\.1:\([0-9][0-9]*\)$#\1#p' "$work_dir/stdout")
  [[ -n $port ]] && break
  if ! alive "$server_pid"; then
    echo "run_http_bench: the server exited before listening" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z $port ]]; then
  echo "run_http_bench: the server did not report a port within ${start_timeout} s" >&2
  exit 1
fi

echo "carewire $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo '?') on 127.0.0.1:$port"
echo "machine: $(nproc) cpus, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "runs: ${duration} s measured after ${warmup} s warm-up, loadgen io threads ${loadgen_threads}"
echo

status=0
# Runs the load generator in the background and waits for it, so that a
# signal to this script is handled at once rather than after the run.
run() {
  local conns=$1
  shift
  "$loadgen_bin" --host 127.0.0.1 --port "$port" --connections "$conns" \
    --threads "$loadgen_threads" --duration "$duration" --warmup "$warmup" "$@" &
  loadgen_pid=$!
  wait "$loadgen_pid" || status=1
  loadgen_pid=""
  echo
}

for conns in $connections; do
  run "$conns" --method GET --path /healthz
done
for conns in $connections; do
  run "$conns" --method POST --path /api/v1/diagnostics/write-probe \
    --content-type application/json --body '{}'
done

server_rc=0
if ! stop_server; then
  echo "run_http_bench: the server did not stop within ${stop_timeout} s of SIGTERM" >&2
  exit 1  # the EXIT trap kills it
fi
wait "$server_pid" || server_rc=$?
server_pid=""
if [[ $server_rc -ne 0 ]]; then
  echo "run_http_bench: the server exited with status $server_rc after SIGTERM" >&2
  exit 1
fi
echo "server stopped cleanly (exit 0)"
exit "$status"

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

bench_name=run_http_bench
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

bench_start_server CAREWIRE_DIAGNOSTICS_WRITE_PROBE=true "$server_bin" serve \
  --data-dir "$work_dir/data" --listen 127.0.0.1:0

echo "carewire $(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo '?') on 127.0.0.1:$port"
bench_machine
echo "runs: ${duration} s measured after ${warmup} s warm-up, loadgen io threads ${loadgen_threads}"
echo

status=0
run() {
  local conns=$1
  shift
  bench_run_load "$loadgen_bin" --host 127.0.0.1 --port "$port" --connections "$conns" \
    --threads "$loadgen_threads" --duration "$duration" --warmup "$warmup" "$@"
}

for conns in $connections; do
  run "$conns" --method GET --path /healthz
done
for conns in $connections; do
  run "$conns" --method POST --path /api/v1/diagnostics/write-probe \
    --content-type application/json --body '{}'
done

bench_stop_server
exit "$status"

#!/usr/bin/env bash
# Measures secure messaging on a local Carewire with carewire-messaging-load.
#
# Usage: bench/run_messaging_bench.sh [BUILD_DIR]     (default build/release)
#
# Builds nothing: BUILD_DIR must already hold apps/carewire/carewire and
# bench/carewire-messaging-load. In a fresh temporary data directory it runs
# `carewire init`, starts `carewire serve` on 127.0.0.1 (a port the kernel
# picks) with limits.max_connections above IDLE_CONNECTIONS, and prepares
# the organization with bench/messaging_setup.py (owner's password and TOTP,
# MFA then turned off for the organization, USERS users signed in,
# CONVERSATIONS group conversations of MEMBERS members). Then, in MODES
# order:
#
#   idle        IDLE_CONNECTIONS authenticated WebSockets held open; the
#               server's VmRSS (/proc/PID/status) before, while held (after
#               IDLE_SETTLE s) and after they closed; the difference divided
#               by the sockets open is the memory per idle connection.
#   throughput  closed loop, for each count in CLIENTS: acknowledged
#               messages/s with one WebSocket per member user reading.
#   latency     open loop, for each rate in RATES: delivery latency from the
#               send to another member's socket, p50/p99/p99.9/max.
#
# Every command is printed before it runs. The server is stopped with
# SIGTERM at the end (it must exit 0 within 20 s); on any exit the server
# and the load generator are stopped and the data directory removed.
#
# Environment (all optional):
#   MODES            default "idle throughput latency"
#   USERS            bench users, default 40 (each sign-in costs Argon2id time)
#   CONVERSATIONS    group conversations, default 10
#   MEMBERS          members per conversation, default 4
#   DURATION         measured seconds per throughput/latency run, default 10
#   WARMUP           uncounted seconds before each, default 2
#   CLIENTS          throughput client counts, default "64"
#   PIPELINE         requests in flight per throughput connection, default 1
#   CONNECTIONS_PER_CLIENT  default 1
#   RATES            latency-mode rates in messages/s, default "5000"
#   SENDERS          latency-mode sending connections, default 16
#   BODY_BYTES       message body length, default 100
#   IDLE_CONNECTIONS default 10000
#   IDLE_SETTLE      seconds between the last socket opening and the RSS reading, default 5
#   LOADGEN_THREADS  io threads of the load generator, default 1
#   EXTRA_ARGS       appended to every throughput and latency command (e.g. --no-listen)
#   BENCH_TMPDIR     where the data directory is made, default ${TMPDIR:-/tmp};
#                    it must be on the disk being measured, not tmpfs
# CAREWIRE_* variables in the environment reach the server as settings.

set -euo pipefail

build_dir=${1:-build/release}
modes=${MODES:-"idle throughput latency"}
users=${USERS:-40}
conversations=${CONVERSATIONS:-10}
members=${MEMBERS:-4}
duration=${DURATION:-10}
warmup=${WARMUP:-2}
clients_list=${CLIENTS:-"64"}
pipeline=${PIPELINE:-1}
connections_per_client=${CONNECTIONS_PER_CLIENT:-1}
rates=${RATES:-"5000"}
senders=${SENDERS:-16}
body_bytes=${BODY_BYTES:-100}
idle_connections=${IDLE_CONNECTIONS:-10000}
idle_settle=${IDLE_SETTLE:-5}
loadgen_threads=${LOADGEN_THREADS:-1}
extra_args=${EXTRA_ARGS:-}

here=$(cd "$(dirname "$0")" && pwd)
server_bin=$build_dir/apps/carewire/carewire
load_bin=$build_dir/bench/carewire-messaging-load
setup_py=$here/messaging_setup.py
for bin in "$server_bin" "$load_bin"; do
  if [[ ! -x $bin ]]; then
    echo "run_messaging_bench: $bin not found; build the 'carewire' and 'carewire-messaging-load' targets first" >&2
    exit 2
  fi
done
if ! /usr/bin/python3 -c 'import pyotp' 2>/dev/null; then
  echo "run_messaging_bench: /usr/bin/python3 needs pyotp (apt-get install python3-pyotp)" >&2
  exit 2
fi

bench_name=run_messaging_bench
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

# Kilobytes of a process's resident memory (VmRSS or another status field).
status_kb() {
  awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"
}

show() {
  echo "+ $*"
}

# Both programs hold one descriptor per connection.
ulimit -n "$(ulimit -Hn)"

data_dir=$work_dir/data
show "$server_bin" init --data-dir "$data_dir" --org bench --org-name Bench --owner owner
init_out=$("$server_bin" init --data-dir "$data_dir" --org bench --org-name Bench --owner owner)
owner_password=$(sed -n 's/^owner owner one-time password: //p' <<<"$init_out")
if [[ -z $owner_password ]]; then
  echo "run_messaging_bench: no one-time password in the output of carewire init:" >&2
  echo "$init_out" >&2
  exit 1
fi

max_connections=$((idle_connections + 1000))
show CAREWIRE_LIMITS_MAX_CONNECTIONS=$max_connections "$server_bin" serve \
  --data-dir "$data_dir" --listen 127.0.0.1:0 "2>/dev/null"
bench_start_server CAREWIRE_LIMITS_MAX_CONNECTIONS=$max_connections "$server_bin" serve \
  --data-dir "$data_dir" --listen 127.0.0.1:0

echo "carewire $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?') (binary built $(date -r "$server_bin" '+%F %T')) on 127.0.0.1:$port (pid $server_pid)"
bench_machine
echo

setup_file=$work_dir/setup.txt
show /usr/bin/python3 "$setup_py" --port "$port" --org bench --owner owner \
  --owner-password '<one-time>' --users "$users" --conversations "$conversations" \
  --members "$members" --out "$setup_file"
/usr/bin/python3 "$setup_py" --port "$port" --org bench --owner owner \
  --owner-password "$owner_password" --users "$users" --conversations "$conversations" \
  --members "$members" --out "$setup_file"
echo

common=(--port "$port" --setup "$setup_file" --threads "$loadgen_threads" --server-pid "$server_pid")
status=0

run_load() {
  show "$load_bin" "$@"
  bench_run_load "$load_bin" "$@"
}

run_idle() {
  local out=$work_dir/idle.out rss0 rss1 rss2 anon0 anon1 ready kib
  sleep 1
  rss0=$(status_kb "$server_pid" VmRSS)
  anon0=$(status_kb "$server_pid" RssAnon)
  show "$load_bin" "${common[@]}" idle --connections "$idle_connections"
  : >"$out"
  "$load_bin" "${common[@]}" idle --connections "$idle_connections" >"$out" &
  load_pid=$!
  while ! grep -q '^IDLE READY$' "$out"; do
    if ! alive "$load_pid"; then
      cat "$out"
      echo "run_messaging_bench: the idle run ended early" >&2
      status=1
      load_pid=""
      return
    fi
    sleep 0.2
  done
  sleep "$idle_settle"
  rss1=$(status_kb "$server_pid" VmRSS)
  anon1=$(status_kb "$server_pid" RssAnon)
  local load_rss
  load_rss=$(status_kb "$load_pid" VmRSS)
  kill -TERM "$load_pid"
  wait "$load_pid" || status=1
  load_pid=""
  sleep "$idle_settle"
  rss2=$(status_kb "$server_pid" VmRSS)
  grep -v '^IDLE READY$' "$out"
  ready=$(sed -n 's/^idle: \([0-9][0-9]*\) WebSockets open.*/\1/p' "$out")
  if [[ -z $ready || $ready -eq 0 ]]; then
    echo "run_messaging_bench: no idle socket opened" >&2
    status=1
    return
  fi
  kib=$(awk -v a="$rss0" -v b="$rss1" -v n="$ready" 'BEGIN {printf "%.1f", (b - a) / n}')
  echo "server VmRSS: ${rss0} KiB before, ${rss1} KiB with ${ready} idle WebSockets" \
    "(after ${idle_settle} s), ${rss2} KiB ${idle_settle} s after they closed"
  echo "server RssAnon: ${anon0} KiB before, ${anon1} KiB with them"
  echo "load generator VmRSS while held: ${load_rss} KiB"
  echo "server memory per idle connection: ${kib} KiB (VmRSS delta / ${ready})" \
    "$(awk -v a="$anon0" -v b="$anon1" -v n="$ready" 'BEGIN {printf "[RssAnon: %.1f KiB]", (b - a) / n}')"
  echo
}

for mode in $modes; do
  echo "== $mode (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  case $mode in
    idle)
      run_idle
      ;;
    throughput)
      for clients in $clients_list; do
        # shellcheck disable=SC2086  # EXTRA_ARGS is a list of words
        run_load "${common[@]}" throughput --clients "$clients" --pipeline "$pipeline" \
          --connections "$connections_per_client" --duration "$duration" --warmup "$warmup" \
          --body-bytes "$body_bytes" $extra_args
      done
      ;;
    latency)
      for rate in $rates; do
        # shellcheck disable=SC2086
        run_load "${common[@]}" latency --rate "$rate" --senders "$senders" \
          --duration "$duration" --warmup "$warmup" --body-bytes "$body_bytes" $extra_args
      done
      ;;
    *)
      echo "run_messaging_bench: unknown mode $mode" >&2
      exit 2
      ;;
  esac
done

bench_stop_server
exit "$status"

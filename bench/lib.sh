# shellcheck shell=bash
# Shared by the bench/run_*.sh scripts: a server started in a temporary
# directory, found by the port it prints, and always stopped. Sourced, not
# run. The sourcing script sets `bench_name` (for messages) first, and after
# sourcing may use:
#
#   work_dir      a fresh temporary directory, removed on exit
#   server_pid    the server, once bench_start_server has started it
#   load_pid      set while a load generator runs, so an exit stops it too
#   port          the server's port, once bench_start_server returns
#
# Every exit (a signal included) stops the load generator and the server
# and removes the directory.

# Seconds to wait for the server to print its address, and to stop.
readonly start_timeout=30
readonly stop_timeout=20

# shellcheck disable=SC2154  # bench_name is set by the sourcing script
work_dir=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/carewire-$bench_name.XXXXXX")
server_pid=""
load_pid=""
port=""

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
bench_cleanup() {
  # Nothing may cut the clean-up short, not even a closed output pipe.
  trap '' HUP INT PIPE TERM
  if [[ -n $load_pid ]]; then
    kill -TERM "$load_pid" 2>/dev/null || true
  fi
  if [[ -n $server_pid ]] && alive "$server_pid"; then
    stop_server || kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work_dir"
}
trap bench_cleanup EXIT
# A signal that would end the shell without running the EXIT trap becomes an
# exit, so the server is never left behind (SIGKILL aside).
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# Starts `"$@"` (a `carewire serve ... --listen 127.0.0.1:0` command, with
# any VAR=value settings passed through env) in the background and waits for
# it to print its address; sets server_pid and port. Its stderr (the JSON log
# lines, one per request) is dropped.
bench_start_server() {
  : >"$work_dir/stdout"
  env "$@" >"$work_dir/stdout" 2>/dev/null &
  server_pid=$!
  for ((i = 0; i < start_timeout * 10; i++)); do
    port=$(sed -n 's#^listening on https://127\.0\.0\.1:\([0-9][0-9]*\)$#\1#p' "$work_dir/stdout")
    [[ -n $port ]] && return 0
    if ! alive "$server_pid"; then
      echo "$bench_name: the server exited before listening" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$bench_name: the server did not report a port within ${start_timeout} s" >&2
  exit 1
}

# The machine, for the head of a report.
bench_machine() {
  echo "machine: $(nproc) cpus, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# Runs a load generator command in the background and waits for it, so that a
# signal to the script is handled at once rather than after the run. Sets
# `status` to 1 when the command fails.
bench_run_load() {
  "$@" &
  load_pid=$!
  # shellcheck disable=SC2034  # status is the sourcing script's
  wait "$load_pid" || status=1
  load_pid=""
  echo
}

# Stops the server with SIGTERM and exits 1 unless it exited 0 in time.
bench_stop_server() {
  local rc=0
  if ! stop_server; then
    echo "$bench_name: the server did not stop within ${stop_timeout} s of SIGTERM" >&2
    exit 1  # the EXIT trap kills it
  fi
  wait "$server_pid" || rc=$?
  server_pid=""
  if [[ $rc -ne 0 ]]; then
    echo "$bench_name: the server exited with status $rc after SIGTERM" >&2
    exit 1
  fi
  echo "server stopped cleanly (exit 0)"
}

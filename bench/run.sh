#!/usr/bin/env bash
# The proxy benchmark (issue 9): direct vs nginx vs ollama-tap, side by side in one run.
#
#   bench/run.sh            # release build, ROUNDS=3 interleaved rounds of DURATION=10 s per run
#   bench/run.sh --smoke    # each case once for ~1 s with tiny sizes, debug build; checks only
#                           # that every figure is a number (CI runs this from scripts/test.sh)
#
# Env: ROUNDS, DURATION (seconds per wrk run), PROFILE (release|profiling|debug; --smoke
# defaults to debug, the build `cargo test` already made; profiling is release with symbols,
# for `perf record -p` on the agent while it runs), SYSCALLS=0 to skip the perf syscall pass,
# KEEP=1 to keep the temp dir (logs, configs, raw results), CASES="A C" to run only those cases
# (of A B C D E push; the table then shows "—" for the others).
#
# Processes (each its own, on free loopback ports, under one temp dir, all killed on exit):
#   bench_backend (examples/bench_backend.rs)  the backend, 2 tokio workers
#   nginx                                      1 worker, proxy_buffering off, keepalive pool
#   ollama-tap                                 the agent, one passive instance, no writers
#   wrk (bench/wrk.lua), bench/ttfb.py         the load
# Needs wrk, nginx, python3 (and perf for the syscall pass). See BENCH.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SMOKE=0
case "${1:-}" in
  --smoke) SMOKE=1 ;;
  "") ;;
  *) echo "usage: bench/run.sh [--smoke]" >&2; exit 2 ;;
esac

if [ "$SMOKE" = 1 ]; then
  ROUNDS=${ROUNDS:-1}; DURATION=${DURATION:-1}; PROFILE=${PROFILE:-debug}
  A_CONN=4; C_CONN=4; C_LINES=20; D_CONN=8; D_LINES=5; D_DELAY=10
  E_COUNT=10; E_LINES=3; E_DELAY=5; PUSH_ITER=3; WARMUP=0; SYSCALLS=0
else
  ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10}; PROFILE=${PROFILE:-release}
  A_CONN=32; C_CONN=64; C_LINES=200; D_CONN=200; D_LINES=100; D_DELAY=10
  E_COUNT=200; E_LINES=3; E_DELAY=5; PUSH_ITER=50; WARMUP=1; SYSCALLS=${SYSCALLS:-1}
fi
PUSH_SERIES=10000

PATH=$PATH:/usr/sbin:/sbin # nginx, for a user whose PATH lacks sbin
for tool in wrk nginx python3 cargo; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench/run.sh: needs $tool (apt-get install -y nginx wrk)" >&2; exit 1; }
done
if [ "$SYSCALLS" = 1 ] && ! perf stat -e syscalls:sys_enter_writev -- true >/dev/null 2>&1; then
  echo "bench/run.sh: perf with syscall tracepoints unavailable: skipping the syscall pass" >&2
  SYSCALLS=0
fi

# --- build ---
case "$PROFILE" in
  release) PROFILE_FLAG=(--release); PROFILE_DIR=release ;;
  profiling) PROFILE_FLAG=(--profile profiling); PROFILE_DIR=profiling ;;
  debug) PROFILE_FLAG=(); PROFILE_DIR=debug ;;
  *) echo "bench/run.sh: PROFILE is release, profiling or debug" >&2; exit 2 ;;
esac
cargo build --locked --quiet "${PROFILE_FLAG[@]}" --bin ollama-tap --example bench_backend --example bench_push
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE_DIR
START_S=$(date +%s)

# --- processes ---
TMP=$(mktemp -d /tmp/ollama-tap-bench.XXXXXX)
chmod 755 "$TMP" # nginx's worker may run as nobody
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "bench/run.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

listens() { # port pid: true once something accepts on the port, false if pid exits first
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# Three free ports, then the three servers on them. A port can be taken between the pick and
# the server's bind (another process's outgoing connection gets it as its ephemeral port): then
# the servers are stopped and started again on new ports, up to three times.
for attempt in 1 2 3; do
read -r BPORT NPORT TPORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')

"$BIN/examples/bench_backend" --listen "127.0.0.1:$BPORT" >"$TMP/backend.log" 2>&1 &
BACKEND_PID=$!; PIDS+=("$BACKEND_PID")

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<EOF
# bench/run.sh's nginx: one worker, streaming pass-through, keep-alive both sides.
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    upstream backend {
        server 127.0.0.1:$BPORT;
        keepalive 100;                 # idle upstream connections kept (ollama-tap keeps 100)
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NPORT;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;       # pass each chunk on as it arrives, as ollama-tap does
        }
    }
}
EOF
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" >"$TMP/nginx.log" 2>&1 &
NGINX_PID=$!; PIDS+=("$NGINX_PID")

mkdir -p "$TMP/tap/input.ollama"
printf '[global]\nhostname = "bench"\ninterval = 15\n[log]\nfile_name = "stderr"\nlevel = "info"\n' \
  >"$TMP/tap/config.toml"
printf '[[instances]]\nollama_url = "http://127.0.0.1:%s"\nproxy_listen_addr = "127.0.0.1:%s"\ntimeout = "30s"\npassive = true\n' \
  "$BPORT" "$TPORT" >"$TMP/tap/input.ollama/ollama.toml"
"$BIN/ollama-tap" --configs "$TMP/tap" >"$TMP/tap.log" 2>&1 &
TAP_PID=$!; PIDS+=("$TAP_PID")

# Each port accepts, and half a second later each server still runs (one that lost its port
# to another listener has exited by then).
down=""
listens "$BPORT" "$BACKEND_PID" || down+=" bench_backend:$BPORT"
listens "$NPORT" "$NGINX_PID" || down+=" nginx:$NPORT"
listens "$TPORT" "$TAP_PID" || down+=" ollama-tap:$TPORT"
sleep 0.5
kill -0 "$BACKEND_PID" 2>/dev/null || down+=" bench_backend(exited)"
kill -0 "$NGINX_PID" 2>/dev/null || down+=" nginx(exited)"
kill -0 "$TAP_PID" 2>/dev/null || down+=" ollama-tap(exited)"
[ -z "$down" ] && break
if [ "$attempt" = 3 ]; then
  echo "bench/run.sh: not serving:$down; the logs:" >&2
  cat "$TMP"/*.log "$TMP"/nginx/error.log >&2 || true
  exit 1
fi
echo "bench/run.sh: not serving:$down (a port taken before its server bound it?); starting again on new ports" >&2
for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
PIDS=()
done

# --- measuring ---
CLK_TCK=$(getconf CLK_TCK)
RESULTS=$TMP/results.txt
: >"$RESULTS"

nginx_pids() { echo "$NGINX_PID" $(pgrep -P "$NGINX_PID" || true); }
target_pids() { # target -> the proxy's pids (none for direct)
  case "$1" in direct) ;; nginx) nginx_pids ;; tap) echo "$TAP_PID" ;; esac
}
target_port() { case "$1" in direct) echo "$BPORT" ;; nginx) echo "$NPORT" ;; tap) echo "$TPORT" ;; esac; }
cpu_ticks() { # pids... -> utime+stime summed (clock ticks)
  local sum=0 p f
  for p in "$@"; do
    f=$(sed 's/.*) //' "/proc/$p/stat")
    sum=$((sum + $(awk '{print $12 + $13}' <<<"$f")))
  done
  echo "$sum"
}
kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
sum_kb() { # key pids...
  local k=$1 s=0 p; shift
  for p in "$@"; do s=$((s + $(kb "$p" "$k"))); done
  echo "$s"
}

# NDJSON lines the backend has sent since it started (GET /bench/stats, over bash's /dev/tcp).
backend_lines() {
  local reply
  exec 3<>"/dev/tcp/127.0.0.1/$BPORT"
  printf 'GET /bench/stats HTTP/1.0\r\nHost: bench\r\n\r\n' >&3
  reply=$(cat <&3)
  exec 3<&-
  sed -n 's/^lines=\([0-9]*\) .*/\1/p' <<<"$reply"
}

# One wrk run against one target; appends a RESULT line.
run_wrk() { # round case target threads conns path body
  local round=$1 case=$2 target=$3 threads=$4 conns=$5 path=$6 body=$7
  local port pids c0 c1 b0 b1 l0 l1 others out line wcpu
  port=$(target_port "$target"); pids=$(target_pids "$target")
  python3 "$ROOT/bench/others.py" snap "$TMP/others"
  l0=$(backend_lines)
  c0=$(cpu_ticks $pids); b0=$(cpu_ticks "$BACKEND_PID")
  out=$( { TIMEFORMAT='WRKCPU %U %S'; time BENCH_PATH=$path BENCH_BODY=$body \
      wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 30s -s "$ROOT/bench/wrk.lua" \
      "http://127.0.0.1:$port" ; } 2>&1 ) || true
  c1=$(cpu_ticks $pids); b1=$(cpu_ticks "$BACKEND_PID")
  l1=$(backend_lines)
  others=$(python3 "$ROOT/bench/others.py" diff "$TMP/others" "$BACKEND_PID" $(nginx_pids) "$TAP_PID" $$)
  line=$(grep '^WRK ' <<<"$out") || { echo "bench/run.sh: wrk failed ($case $target):" >&2; echo "$out" >&2; exit 1; }
  wcpu=$(awk '/^WRKCPU/{printf "%d", ($2 + $3) * 1000000}' <<<"$out")
  echo "RESULT round=$round case=$case target=$target proxy_ticks=$((c1 - c0)) backend_ticks=$((b1 - b0)) backend_lines=$((l1 - l0)) wrk_cpu_us=$wcpu $others ${line#WRK }" >>"$RESULTS"
}

run_ttfb() { # round target
  local out
  out=$(python3 "$ROOT/bench/ttfb.py" 127.0.0.1 "$(target_port "$2")" "$E_COUNT" \
    "/api/generate?lines=$E_LINES&delay_ms=$E_DELAY" "$STREAM")
  echo "RESULT round=$1 case=E target=$2 ${out#TTFB }" >>"$RESULTS"
}

STREAM='{"model":"bench","prompt":"hi"}'
NONSTREAM='{"model":"bench","prompt":"hi","stream":false}'
TARGETS=(direct nginx tap)

echo "RSS idle tap_rss_kb=$(kb "$TAP_PID" VmRSS) nginx_rss_kb=$(sum_kb VmRSS $(nginx_pids))" >>"$RESULTS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)
STRESS_BEFORE=$(pgrep -c stress-ng || true)

if [ "$WARMUP" = 1 ]; then
  SAVED=$DURATION; DURATION=1
  for t in "${TARGETS[@]}"; do
    run_wrk 0 A "$t" 2 "$A_CONN" /api/generate "$NONSTREAM"
    run_wrk 0 C "$t" 2 "$C_CONN" "/api/generate?lines=$C_LINES" "$STREAM"
  done
  DURATION=$SAVED
  sed -i '/^RESULT round=0 /d' "$RESULTS"
fi

CASES=" ${CASES:-A B C D E push} "
want() { [[ "$CASES" == *" $1 "* ]]; }
for round in $(seq 1 "$ROUNDS"); do
  echo "bench/run.sh: round $round/$ROUNDS" >&2
  if want A; then for t in "${TARGETS[@]}"; do run_wrk "$round" A "$t" 2 "$A_CONN" /api/generate "$NONSTREAM"; done; fi
  if want B; then for t in "${TARGETS[@]}"; do run_wrk "$round" B "$t" 1 1 /api/generate "$NONSTREAM"; done; fi
  if want C; then for t in "${TARGETS[@]}"; do run_wrk "$round" C "$t" 2 "$C_CONN" "/api/generate?lines=$C_LINES" "$STREAM"; done; fi
  if want D; then
    for t in "${TARGETS[@]}"; do
      run_wrk "$round" D "$t" 2 "$D_CONN" "/api/generate?lines=$D_LINES&delay_ms=$D_DELAY" "$STREAM"
    done
  fi
  if want E; then for t in "${TARGETS[@]}"; do run_ttfb "$round" "$t"; done; fi
  if want push; then
    # target tap: encode + compress one request; memory / disk: Writers::enqueue_families into
    # a memory queue, or into the disk queue (record written and fdatasync'ed).
    for path in bytes memory disk; do
      target=$path; [ "$path" = bytes ] && target=tap
      echo "RESULT round=$round case=push target=$target $("$BIN/examples/bench_push" --series "$PUSH_SERIES" --iterations "$PUSH_ITER" --path "$path" | sed 's/^push_encode //')" >>"$RESULTS"
    done
  fi
done
echo "RSS peak tap_hwm_kb=$(kb "$TAP_PID" VmHWM) tap_rss_after_kb=$(kb "$TAP_PID" VmRSS) nginx_hwm_kb=$(sum_kb VmHWM $(nginx_pids))" >>"$RESULTS"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg | tr ' ' /)
STRESS_AFTER=$(pgrep -c stress-ng || true)

# The syscall picture of case C (not part of the measured rounds: perf slows what it counts).
if [ "$SYSCALLS" = 1 ] && want C; then
  EVENTS=syscalls:sys_enter_writev,syscalls:sys_enter_write,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_readv,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,context-switches
  for t in nginx tap; do
    pids=$(target_pids "$t" | tr ' ' ',')
    perf stat -x, -e "$EVENTS" -p "$pids" -o "$TMP/perf-$t.csv" &
    PERF_PID=$!
    sleep 0.2
    before=$(wc -l <"$RESULTS")
    run_wrk 1 C "$t" 2 "$C_CONN" "/api/generate?lines=$C_LINES" "$STREAM"
    kill -INT "$PERF_PID"; wait "$PERF_PID" || true
    reqs=$(tail -n +"$((before + 1))" "$RESULTS" | sed -n 's/.* requests=\([0-9]*\).*/\1/p')
    sed -i "\$d" "$RESULTS" # the perf-slowed run is not a measurement
    awk -F, -v t="$t" -v r="$reqs" '$1 ~ /^[0-9]+$/ {printf "SYSCALL target=%s requests=%s event=%s count=%s\n", t, r, $3, $1}' \
      "$TMP/perf-$t.csv" >>"$RESULTS"
  done
fi

{
  echo "META smoke=$SMOKE profile=$PROFILE rounds=$ROUNDS duration=$DURATION clk_tck=$CLK_TCK a_conn=$A_CONN c_conn=$C_CONN c_lines=$C_LINES d_conn=$D_CONN d_lines=$D_LINES d_delay=$D_DELAY e_count=$E_COUNT e_lines=$E_LINES e_delay=$E_DELAY push_series=$PUSH_SERIES push_iter=$PUSH_ITER nproc=$(nproc) elapsed_s=$(( $(date +%s) - START_S ))"
  echo "LOAD before=$LOAD_BEFORE after=$LOAD_AFTER stress_ng_before=$STRESS_BEFORE stress_ng_after=$STRESS_AFTER"
} >>"$RESULTS"
python3 "$ROOT/bench/table.py" "$RESULTS" $([ "$SMOKE" = 1 ] && echo --check)

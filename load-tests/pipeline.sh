#!/usr/bin/env bash
# What the gateway's request pipeline costs, in one run on 127.0.0.1: req/s and CPU time per
# request of four TLS reverse proxies in front of the same tiny upstream:
#   nginx      nginx as a TLS reverse proxy (one worker process)
#   minimal    the smallest Pingora proxy (examples/minimal_proxy.rs: same Pingora, same rustls)
#   gw-bare    tiktok-gateway, one `auth: none` route (access log: default stdout, to /dev/null)
#   gw-chain   tiktok-gateway, the whole chain: TLS, RS256 JWT with a required scope, a rate limit
#              far above the load, head inspection limits, access log to a file
# CPU per request = (utime + stime of the proxy's processes, from /proc/PID/stat, over the wrk
# run) / requests wrk completed, also shown as its user and system parts; the ratio column
# divides by the minimal proxy's figure. Each round runs every path once; the summary is the
# median over ROUNDS rounds. A run fails if any answer is not 2xx or any socket error happens,
# so a refusal can never pass for a fast request.
#
# Everything is bounded: ROUNDS x 5 wrk runs of DURATION seconds, CONNS connections.
# Needs nginx, wrk, openssl, curl (apt-get install nginx-light wrk) and a release build:
#   cargo build --release --examples --bins
# Usage: bash load-tests/pipeline.sh            (env: DURATION CONNS THREADS ROUNDS BASE_PORT,
#        GATEWAY_BIN MINIMAL_BIN; PERF_PATH=gw-chain [PERF_OUT=file] adds a perf profile of a path)
# PIN=1 runs every measured proxy on the last CPU and the upstream and wrk on the others, so the
# scheduler moving them about is not part of the figure (needs 2 cores or more, and taskset).
# The summary's ratio divides medians; "round ratios" gives the lowest and highest of the
# rounds' own ratios (each round measures every path back to back), which shows the spread.
#
# MEASURE=instructions runs the three Pingora proxies under valgrind's callgrind instead and
# reports user-space instructions per request (nginx is left out). Unlike CPU seconds, the count
# does not depend on what else the machine runs, so it compares builds on a busy machine; it
# leaves out the kernel's share (TCP, epoll), which is about the same for every proxy.
# CALLGRIND_OUT=dir keeps each measured run's dump there (PATH-rROUND.out) for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
CONNS="${CONNS:-32}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-3}"
BASE_PORT="${BASE_PORT:-28100}"
GW="${GATEWAY_BIN:-target/release/tiktok-gateway}"
MINIMAL="${MINIMAL_BIN:-target/release/examples/minimal_proxy}"

UP_PORT=$BASE_PORT
NGINX_PORT=$((BASE_PORT + 1))
MIN_PORT=$((BASE_PORT + 2))
BARE_PORT=$((BASE_PORT + 3))
CHAIN_PORT=$((BASE_PORT + 4))

MEASURE="${MEASURE:-cpu}"
WRAP=()
if [ "$MEASURE" = instructions ]; then
  command -v callgrind_control >/dev/null || { echo "missing valgrind: apt-get install valgrind" >&2; exit 1; }
fi
for tool in nginx wrk openssl curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install nginx-light wrk openssl curl" >&2; exit 1; }
done
for bin in "$GW" "$MINIMAL"; do
  [ -x "$bin" ] || { echo "missing $bin: cargo build --release --examples --bins" >&2; exit 1; }
done

# CPU sets for PIN=1: the proxies on the last CPU, everything else on the rest.
ON_PROXY_CPU=()
ON_LOAD_CPUS=()
if [ "${PIN:-0}" = 1 ]; then
  cpus=$(nproc)
  [ "$cpus" -ge 2 ] || { echo "PIN=1 needs 2 cores or more" >&2; exit 1; }
  command -v taskset >/dev/null || { echo "missing taskset: apt-get install util-linux" >&2; exit 1; }
  ON_PROXY_CPU=(taskset -c "$((cpus - 1))")
  ON_LOAD_CPUS=(taskset -c "0-$((cpus - 2))")
fi

work=$(mktemp -d)
if [ "$MEASURE" = instructions ]; then
  WRAP=(valgrind -q --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg-%p.out")
fi
PIDS=()
cleanup() {
  for f in "$work"/nginx-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  # SIGINT: Pingora's fast shutdown (SIGTERM would wait out its 5-minute grace period).
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$GW" certs --out "$work" >/dev/null

# --- upstream and nginx: two nginx instances, so the proxy's CPU is its own ---------------------
nginx_conf() { # name, server block (the upstream runs beside the load, the proxy with the proxies)
  cat > "$work/nginx-$1.conf" <<NGINX
worker_processes 1;
pid $work/nginx-$1.pid;
error_log $work/nginx-$1-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  $2
}
NGINX
  if [ "$1" = upstream ]; then
    "${ON_LOAD_CPUS[@]}" nginx -c "$work/nginx-$1.conf" -e "$work/nginx-$1-error.log"
  else
    "${ON_PROXY_CPU[@]}" nginx -c "$work/nginx-$1.conf" -e "$work/nginx-$1-error.log"
  fi
}
# The upstream answers a 2-byte 200 from memory: it must never be what limits the proxies.
nginx_conf upstream "server { listen 127.0.0.1:$UP_PORT; location / { return 200 \"ok\"; } }"
nginx_conf proxy "
  upstream backend { server 127.0.0.1:$UP_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    ssl_certificate $work/gateway.crt; ssl_certificate_key $work/gateway.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }"

# --- minimal Pingora proxy ---------------------------------------------------------------------
"${ON_PROXY_CPU[@]}" "${WRAP[@]}" "$MINIMAL" "127.0.0.1:$MIN_PORT" "127.0.0.1:$UP_PORT" "$work/gateway.crt" "$work/gateway.key" \
  >"$work/minimal.out" 2>&1 &
MIN_PID=$!; PIDS+=("$MIN_PID")

# --- RS256 issuer: a fresh key, its JWKS, and one token with the route's scope -----------------
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/jwt.key" 2>/dev/null
modulus=$(openssl rsa -in "$work/jwt.key" -noout -modulus | cut -d= -f2 | xxd -r -p | b64url)
printf '{"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"load-test","n":"%s","e":"AQAB"}]}\n' \
  "$modulus" > "$work/jwks.json"
now=$(date +%s)
header=$(printf '{"alg":"RS256","typ":"JWT","kid":"load-test"}' | b64url)
claims=$(printf '{"iss":"https://idp.load-test","aud":"tiktok-gateway","sub":"load-test-client","scope":"orders:read","iat":%d,"exp":%d}' \
  "$now" "$((now + 3600))" | b64url)
signature=$(printf '%s.%s' "$header" "$claims" | openssl dgst -sha256 -sign "$work/jwt.key" -binary | b64url)
TOKEN="$header.$claims.$signature"

# --- the two gateways (one worker thread each, like the minimal proxy and nginx) ---------------
cat > "$work/gw-bare.yaml" <<YAML
version: load-test-bare
listeners:
  public:
    address: "127.0.0.1:$BARE_PORT"
    tls: { cert: gateway.crt, key: gateway.key }
upstreams:
  backend: { targets: ["127.0.0.1:$UP_PORT"] }
routes:
  - name: bare
    listener: public
    match: { path_prefix: / }
    auth: none
    upstream: backend
logging: { level: warn }
server: { threads: 1 }
YAML
cat > "$work/gw-chain.yaml" <<YAML
version: load-test-chain
listeners:
  public:
    address: "127.0.0.1:$CHAIN_PORT"
    tls: { cert: gateway.crt, key: gateway.key }
    connections: { header_timeout: 10s, max: 10000 }
identity:
  jwt:
    - name: lt
      issuer: "https://idp.load-test"
      audiences: ["tiktok-gateway"]
      jwks: { file: jwks.json }
      algorithms: [RS256]
upstreams:
  backend: { targets: ["127.0.0.1:$UP_PORT"] }
routes:
  - name: chain
    listener: public
    match: { path_prefix: /, methods: [GET] }
    auth: { jwt: lt, scopes: ["orders:read"] }
    # Far above the offered load: this measures the stage, every request is admitted.
    rate_limit: { key: caller, rate: 1000000/s, burst: 1000000 }
    limits: { max_headers: 100, max_header_bytes: 32KiB, max_uri: 8KiB, max_query_params: 100 }
    upstream: backend
logging: { access_log: $work/gw-chain-access.log, level: warn }
server: { threads: 1 }
YAML
for cfg in gw-bare gw-chain; do
  "$GW" validate --config "$work/$cfg.yaml" >/dev/null
  "${ON_PROXY_CPU[@]}" "${WRAP[@]}" "$GW" run --config "$work/$cfg.yaml" >/dev/null 2>"$work/$cfg.err" &
  PIDS+=("$!")
  eval "${cfg//-/_}_PID=$!"
done

# Waits until a TLS port answers HTTP (any status).
wait_https() {
  for _ in $(seq 1 900); do
    code=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$1/" || true)
    [ "$code" != "000" ] && return 0
    sleep 0.1
  done
  echo "nothing answers on port $1" >&2; cat "$work"/*.err "$work"/*.out >&2 2>/dev/null; exit 1
}
for port in "$NGINX_PORT" "$MIN_PORT" "$BARE_PORT" "$CHAIN_PORT"; do wait_https "$port"; done
# The chain is really on: no token is refused, the token is accepted, the line is logged.
[ "$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$CHAIN_PORT/")" = 401 ] \
  || { echo "gw-chain did not refuse a request without a token" >&2; exit 1; }
[ "$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$CHAIN_PORT/")" = 200 ] \
  || { echo "gw-chain refused the load-test token" >&2; cat "$work/gw-chain.err" >&2; exit 1; }

NGINX_MASTER=$(cat "$work/nginx-proxy.pid")
# CPU clock ticks of the given processes (and, for nginx, its workers): "user system".
cpu_ticks() {
  local user=0 system=0 pid stat rest
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat") || { echo "process $pid is gone" >&2; exit 1; }
    rest=${stat##*) }             # fields from the 3rd on; the name may hold spaces
    read -r -a f <<<"$rest"
    user=$((user + f[11]))
    system=$((system + f[12]))
  done
  echo "$user $system"
}
pids_of() {
  case $1 in
    nginx) echo "$NGINX_MASTER $(pgrep -P "$NGINX_MASTER" | tr '\n' ' ')" ;;
    minimal) echo "$MIN_PID" ;;
    gw-bare) echo "$gw_bare_PID" ;;
    gw-chain) echo "$gw_chain_PID" ;;
  esac
}
port_of() {
  case $1 in
    nginx) echo "$NGINX_PORT" ;; minimal) echo "$MIN_PORT" ;;
    gw-bare) echo "$BARE_PORT" ;; gw-chain) echo "$CHAIN_PORT" ;;
  esac
}

# One bounded wrk run against a path; prints "path rps requests cpu_seconds user_seconds
# system_seconds" (in instructions mode the last two are 0: callgrind sees user space only).
measure() {
  local path=$1 duration=$2 url pids before after out requests rps errors user=0 system=0
  url="https://127.0.0.1:$(port_of "$path")/"
  pids=$(pids_of "$path")
  if [ "$MEASURE" = instructions ]; then
    callgrind_control -z "$pids" >/dev/null 2>&1 && callgrind_control -i on "$pids" >/dev/null 2>&1
  fi
  before=$(cpu_ticks $pids)
  if [ "$path" = gw-chain ]; then
    out=$("${ON_LOAD_CPUS[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${duration}s" -H "Authorization: Bearer $TOKEN" "$url")
  else
    out=$("${ON_LOAD_CPUS[@]}" wrk -t"$THREADS" -c"$CONNS" -d"${duration}s" "$url")
  fi
  after=$(cpu_ticks $pids)
  read -r user system <<<"$(awk -v b="$before" -v a="$after" \
    'BEGIN { split(b, x, " "); split(a, y, " "); print y[1] - x[1], y[2] - x[2] }')"
  after=$((user + system))
  before=0
  if [ "$MEASURE" = instructions ]; then
    callgrind_control -i off "$pids" >/dev/null 2>&1
    rm -f "$work/cg-$pids.out".*
    callgrind_control -d "$pids" >/dev/null 2>&1
    # The dump holds only what ran between zeroing and now: the wrk run. Valgrind writes it when
    # the process next runs, so wait for it (bounded).
    local dump=""
    for _ in $(seq 1 100); do
      dump=$(ls -t "$work/cg-$pids.out".* 2>/dev/null | head -1)
      [ -n "$dump" ] && grep -q '^totals:' "$dump" && break
      dump=""
      sleep 0.1
    done
    [ -n "$dump" ] || { echo "$path: no callgrind dump" >&2; exit 1; }
    if [ -n "${CALLGRIND_OUT:-}" ] && [ -n "${ROUND:-}" ]; then
      mkdir -p "$CALLGRIND_OUT" && cp "$dump" "$CALLGRIND_OUT/$path-r$ROUND.out"
    fi
    after=$(awk '/^totals:/ { print $2; exit }' "$dump")
    user=0
    system=0
  fi
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")
  if [ "$errors" != 0 ] || [ -z "$requests" ] || [ "$requests" = 0 ]; then
    echo "$path: $errors failed answers or socket errors, $requests requests:" >&2
    echo "$out" >&2
    exit 1
  fi
  local hz
  hz=$(getconf CLK_TCK)
  # In instructions mode "CPU s" is millions of instructions (divided below as if seconds).
  [ "$MEASURE" = instructions ] && hz=1000000
  awk -v p="$path" -v r="$rps" -v n="$requests" -v t=$((after - before)) -v hz="$hz" \
    -v u="$user" -v s="$system" \
    'BEGIN { printf "%s %s %d %.2f %.2f %.2f\n", p, r, n, t / hz, u / hz, s / hz }'
}

PATHS=(nginx minimal gw-bare gw-chain)
UNIT="CPU µs"
if [ "$MEASURE" = instructions ]; then
  PATHS=(minimal gw-bare gw-chain)
  UNIT="instructions"
fi
echo "# pipeline.sh: wrk -t$THREADS -c$CONNS -d${DURATION}s, $ROUNDS rounds, $(nproc) cores, $(date -u '+%F %H:%M UTC')${PIN:+, PIN=$PIN}"
echo "# gateway $($GW --version 2>/dev/null || echo "$GW"), $(nginx -v 2>&1), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
direct=$("${ON_LOAD_CPUS[@]}" wrk -t"$THREADS" -c"$CONNS" -d3s "http://127.0.0.1:$UP_PORT/" | awk '/Requests\/sec/ {print $2}')
echo "# upstream alone (plain HTTP, 3 s): $direct req/s"
for path in "${PATHS[@]}"; do measure "$path" 2 >/dev/null; done   # warm-up: pools, caches

results="$work/results.txt"
: > "$results"
for round in $(seq 1 "$ROUNDS"); do
  ROUND=$round
  echo "# round $round, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  for path in "${PATHS[@]}"; do
    line=$(measure "$path" "$DURATION")
    echo "$round $line" >> "$results"
  done
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
if [ "$MEASURE" = instructions ]; then
  echo "Per round (instructions per request = callgrind's count over the run / requests; req/s under valgrind means nothing):"
  echo
  echo "| round | path | req/s | requests | M instructions | instructions/req |"
else
  echo "Per round (CPU µs per request = proxy CPU seconds / requests completed; user and system"
  echo "are its two parts, from /proc/PID/stat):"
  echo
  echo "| round | path | req/s | requests | CPU s | CPU µs/req | user µs/req | system µs/req |"
fi
if [ "$MEASURE" = instructions ]; then
  echo "|---|---|---|---|---|---|"
  awk '{ printf "| %s | %s | %s | %s | %s | %.1f |\n", $1, $2, $3, $4, $5, $5 * 1e6 / $4 }' "$results"
else
  echo "|---|---|---|---|---|---|---|---|"
  awk '{ printf "| %s | %s | %s | %s | %s | %.1f | %.1f | %.1f |\n", $1, $2, $3, $4, $5,
         $5 * 1e6 / $4, $6 * 1e6 / $4, $7 * 1e6 / $4 }' "$results"
fi
echo
echo "Median over $ROUNDS rounds (ratio = $UNIT per request divided by the minimal Pingora proxy's):"
echo
if [ "$MEASURE" = instructions ]; then
  echo "| path | req/s | $UNIT/req | ratio to minimal | round ratios |"
  echo "|---|---|---|---|---|"
else
  echo "| path | req/s | $UNIT/req | ratio to minimal | round ratios | user µs/req | system µs/req |"
  echo "|---|---|---|---|---|---|---|"
fi
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
min_cpu=$(awk '$2 == "minimal" { print $5 * 1e6 / $4 }' "$results" | median)
for path in "${PATHS[@]}"; do
  rps=$(awk -v p="$path" '$2 == p { print $3 }' "$results" | median)
  cpu=$(awk -v p="$path" '$2 == p { print $5 * 1e6 / $4 }' "$results" | median)
  user=$(awk -v p="$path" '$2 == p { print $6 * 1e6 / $4 }' "$results" | median)
  system=$(awk -v p="$path" '$2 == p { print $7 * 1e6 / $4 }' "$results" | median)
  # Each round's own ratio: this path's figure over the minimal proxy's in the same round.
  spread=$(awk -v p="$path" '
    $2 == "minimal" { m[$1] = $5 / $4 }
    $2 == p { v[$1] = $5 / $4 }
    END { lo = ""; for (r in v) { x = v[r] / m[r]; if (lo == "" || x < lo) lo = x; if (hi == "" || x > hi) hi = x }
          printf "%.2f-%.2fx", lo, hi }' "$results")
  awk -v p="$path" -v r="$rps" -v c="$cpu" -v m="$min_cpu" -v u="$user" -v s="$system" \
    -v spread="$spread" -v split_cols="$([ "$MEASURE" = instructions ] && echo 0 || echo 1)" \
    'BEGIN { printf "| %s | %.0f | %.1f | %.2fx | %s |", p, r, c, c / m, spread
             if (split_cols) printf " %.1f | %.1f |", u, s
             printf "\n" }'
done
echo
echo "Targets: gw-bare <= 1.15x, gw-chain <= 1.25x the minimal proxy's CPU per request."

# Optional profile of one path under the same load: PERF_PATH=gw-chain PERF_OUT=/tmp/chain.data
if [ -n "${PERF_PATH:-}" ]; then
  command -v perf >/dev/null || { echo "missing perf: apt-get install linux-perf" >&2; exit 1; }
  out="${PERF_OUT:-$PWD/perf-$PERF_PATH.data}"
  perf record -q -F 499 --call-graph dwarf,16384 -o "$out" \
    -p "$(pids_of "$PERF_PATH" | xargs | tr ' ' ',')" -- sleep "$DURATION" 2>/dev/null &
  perf_pid=$!
  sleep 0.5
  measure "$PERF_PATH" "$DURATION" >/dev/null
  wait "$perf_pid" || true
  echo
  echo "Profile of $PERF_PATH under load: $out (perf report -i $out --no-children)"
fi

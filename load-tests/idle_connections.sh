#!/usr/bin/env bash
# Memory per idle TLS keep-alive connection, in one run on 127.0.0.1, for:
#   nginx      nginx as a TLS reverse proxy (one worker process; its worker's RSS is measured)
#   minimal    the smallest Pingora proxy (examples/minimal_proxy.rs: same Pingora, same rustls)
#   gw1, gw2   tiktok-gateway with `server.threads: 1` and `2`, one `auth: none` route
# Each server is started fresh for each protocol (h1: HTTP/1.1 over TLS; h2: HTTP/2 by ALPN).
# load-tests/idle_client.py opens STEPS connections in total (default 1000, then 5000, then
# 10000); every connection makes one request and then stays idle. After each step (and SETTLE
# seconds) the server's RSS is sampled; KiB per connection = (RSS - idle RSS) / connections
# the server still holds. Then the client closes everything and RSS is sampled again AFTER
# seconds later (target: within 1.5x of the idle RSS). "Idle RSS" is taken after 20 warm-up
# requests on separate connections, so lazily built state (TLS config, upstream pool) is in it.
#
# Bounded: at most max(STEPS) <= 20000 connections per run, 127.0.0.1 only.
# Needs nginx (nginx-light), curl, python3, and release builds:
#   cargo build --release --bin tiktok-gateway --example minimal_proxy
# Usage: bash load-tests/idle_connections.sh
#   env: STEPS=1000,5000,10000 TARGETS="nginx minimal gw1 gw2" PROTOS="h1 h2" AFTER=30
#        SETTLE=3 BASE_PORT=28200 GATEWAY_BIN=... MINIMAL_BIN=... OUT=dir (keeps raw results)
#        GW_ENV="NAME=value ..." extra environment for the gateway (allocator experiments)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${STEPS:-1000,5000,10000}"
TARGETS="${TARGETS:-nginx minimal gw1 gw2}"
PROTOS="${PROTOS:-h1 h2}"
AFTER="${AFTER:-30}"
SETTLE="${SETTLE:-3}"
BASE_PORT="${BASE_PORT:-28200}"
GW="${GATEWAY_BIN:-target/release/tiktok-gateway}"
MINIMAL="${MINIMAL_BIN:-target/release/examples/minimal_proxy}"
GW_ENV="${GW_ENV:-}"

UP_PORT=$BASE_PORT
PORT=$((BASE_PORT + 1))        # the server under test (one at a time)
METRICS_PORT=$((BASE_PORT + 2))

for tool in nginx curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install nginx-light curl python3" >&2; exit 1; }
done
for bin in "$GW" "$MINIMAL"; do
  [ -x "$bin" ] || { echo "missing $bin: cargo build --release --bin tiktok-gateway --example minimal_proxy" >&2; exit 1; }
done

# Every connection is a descriptor in the client and one in the server (plus one upstream).
MAX_STEP=$(tr ',' '\n' <<<"$STEPS" | sort -n | tail -1)
want=$((MAX_STEP + 512))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
  echo "ulimit -Hn is $hard; $want descriptors are needed for $MAX_STEP connections" >&2
  exit 1
fi
ulimit -n "$want"

work=$(mktemp -d)
OUT="${OUT:-$work/results}"
mkdir -p "$OUT"
SERVER_PIDS=()
cleanup() {
  stop_server
  [ -f "$work/nginx-upstream.pid" ] && kill "$(cat "$work/nginx-upstream.pid")" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
stop_server() {
  if [ -f "$work/nginx-proxy.pid" ]; then
    kill "$(cat "$work/nginx-proxy.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do [ -f "$work/nginx-proxy.pid" ] || break; sleep 0.1; done
    rm -f "$work/nginx-proxy.pid"
  fi
  # Measured already: no graceful shutdown (Pingora would wait out its grace period).
  for p in "${SERVER_PIDS[@]}"; do
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  SERVER_PIDS=()
}
trap cleanup EXIT

"$GW" certs --out "$work" >/dev/null
AUDIT_SIGNING_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export AUDIT_SIGNING_KEY

nginx_conf() { # name, http block body
  cat > "$work/nginx-$1.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile $want;
pid $work/nginx-$1.pid;
error_log $work/nginx-$1-error.log warn;
events { worker_connections $want; }
http {
  access_log off;
  $2
}
NGINX
  nginx -c "$work/nginx-$1.conf" -e "$work/nginx-$1-error.log"
}
# The upstream answers a 2-byte 200 from memory, in its own nginx so it is not measured.
nginx_conf upstream "server { listen 127.0.0.1:$UP_PORT; location / { return 200 \"ok\"; } }"

start_server() { # target -> sets SERVER_PIDS (the processes whose RSS is measured)
  case "$1" in
    nginx)
      nginx_conf proxy "
  keepalive_timeout 600s; keepalive_requests 100000;
  upstream backend { server 127.0.0.1:$UP_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$PORT ssl http2;
    ssl_certificate $work/gateway.crt; ssl_certificate_key $work/gateway.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
  }"
      for _ in $(seq 1 50); do [ -s "$work/nginx-proxy.pid" ] && break; sleep 0.1; done
      # Only the worker holds connections; the master's RSS does not move.
      MEASURED=$(pgrep -P "$(cat "$work/nginx-proxy.pid")" | paste -sd,)
      ;;
    minimal)
      "$MINIMAL" "127.0.0.1:$PORT" "127.0.0.1:$UP_PORT" "$work/gateway.crt" "$work/gateway.key" \
        >"$work/minimal.out" 2>&1 &
      SERVER_PIDS=($!)
      MEASURED=$!
      ;;
    gw1 | gw2)
      cat > "$work/gateway.yaml" <<YAML
version: idle-connections
listeners:
  public:
    address: "127.0.0.1:$PORT"
    tls: { cert: gateway.crt, key: gateway.key }
    # Above the largest step; idle connections must outlive the measurement.
    connections: { max: $want, idle_timeout: 600s }
  metrics:
    address: "127.0.0.1:$METRICS_PORT"
upstreams:
  backend: { targets: ["127.0.0.1:$UP_PORT"] }
routes:
  - name: all
    listener: public
    match: { path_prefix: / }
    auth: none
    upstream: backend
logging: { access_log: $work/access.log, level: warn }
server: { threads: ${1#gw} }
# Signed audit checkpoints, as in production (without a key the gateway warns at start-up).
audit: { signing_key: "\${env:AUDIT_SIGNING_KEY}" }
YAML
      # shellcheck disable=SC2086
      env $GW_ENV "$GW" run --config "$work/gateway.yaml" >"$work/gateway.out" 2>&1 &
      SERVER_PIDS=($!)
      MEASURED=$!
      ;;
    *) echo "unknown target $1" >&2; exit 1 ;;
  esac
  for _ in $(seq 1 100); do
    curl -ksf -o /dev/null "https://127.0.0.1:$PORT/" && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2
  tail -5 "$work"/*.out "$work"/nginx-proxy-error.log 2>/dev/null >&2
  exit 1
}

echo "# idle_connections.sh: steps $STEPS, $(nproc) cores, $(date -u '+%F %H:%M UTC')"
echo "# $("$GW" --version 2>/dev/null || echo tiktok-gateway), $(nginx -v 2>&1), $(python3 --version)"
[ -n "$GW_ENV" ] && echo "# gateway environment: $GW_ENV"
for proto in $PROTOS; do
  curl_proto=--http1.1
  [ "$proto" = h2 ] && curl_proto=--http2
  for target in $TARGETS; do
    start_server "$target"
    for _ in $(seq 1 20); do curl -ksf $curl_proto -o /dev/null "https://127.0.0.1:$PORT/warm-up"; done
    sleep 2
    python3 load-tests/idle_client.py --port "$PORT" --proto "$proto" --steps "$STEPS" \
      --pids "$MEASURED" --settle "$SETTLE" --after "$AFTER" >"$OUT/$target-$proto.jsonl"
    if [ "$target" = gw1 ] || [ "$target" = gw2 ]; then
      grep -E '"level":"(WARN|ERROR)"|WARN|ERROR' "$work/gateway.out" | head -5 >"$OUT/$target-$proto.log" || true
    fi
    stop_server
  done
done

python3 - "$OUT" "$TARGETS" "$PROTOS" "$AFTER" <<'PY'
import json, sys, os
out, targets, protos, after = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
mib = lambda k: f"{k / 1024:.1f}" if k is not None else "-"
for proto in protos:
    print(f"\n{proto}: RSS in MiB; KiB/conn = (RSS - idle) / connections still open")
    rows = []
    for t in targets:
        path = os.path.join(out, f"{t}-{proto}.jsonl")
        if not os.path.exists(path):
            continue
        ev = [json.loads(l) for l in open(path) if l.startswith("{")]
        idle = next(e["rss_kib"] for e in ev if e["step"] == "idle")
        opens = [e for e in ev if e["step"] == "open"]
        after_ev = next((e for e in ev if e["step"] == "after"), None)
        closed = next((e for e in ev if e["step"] == "closed"), None)
        if not rows:
            cols = " | ".join(f"{o['target']} open: RSS, KiB/conn" for o in opens)
            print(f"| server | idle | {cols} | at close | {after}s after | after/idle | failed |")
            print("|---" * (6 + len(opens)) + "|")
        cells = []
        for o in opens:
            per = (o["rss_kib"] - idle) / o["open"] if o["open"] else float("nan")
            note = "" if o["open"] == o["target"] else f" ({o['open']} open)"
            cells.append(f"{mib(o['rss_kib'])}, {per:.1f}{note}")
        errs = opens[-1]["errors"] if opens else {}
        ratio = after_ev["rss_kib"] / idle if after_ev and idle else float("nan")
        log = os.path.join(out, f"{t}-{proto}.log")
        logged = os.path.getsize(log) if os.path.exists(log) else 0
        failed = (", ".join(f"{k} {v}" for k, v in errs.items()) or "0") + (" + log lines" if logged else "")
        rows.append(t)
        print(f"| {t} | {mib(idle)} | {' | '.join(cells)} | {mib(closed and closed['rss_kib'])} "
              f"| {mib(after_ev and after_ev['rss_kib'])} | {ratio:.2f}x | {failed} |")
PY

#!/usr/bin/env bash
# Throughput and latency of the same upstream reached three ways, in one run:
#   direct (plain HTTP to the upstream), nginx (TLS reverse proxy), tiktok-gateway (TLS, one route).
# Everything is on 127.0.0.1; every load run is bounded (DURATION seconds, CONNS connections).
# Needs: nginx and wrk (apt-get install nginx-light wrk); a release build is made if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
CONNS="${CONNS:-32}"
THREADS="${THREADS:-2}"
UP_PORT=18081; NGINX_PORT=18443; GW_PORT=18444; GW_METRICS=18090; GWR_PORT=18445; GWR_METRICS=18091
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/}"

for tool in nginx wrk; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install nginx-light wrk" >&2; exit 1; }
done
GW="${GATEWAY_BIN:-target/release/tiktok-gateway}"
[ -x "$GW" ] || { cargo build --release --bin tiktok-gateway; GW=target/release/tiktok-gateway; }

work=$(mktemp -d)
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  [ -n "${GW_PID:-}" ] && kill "$GW_PID" 2>/dev/null
  [ -n "${GWR_PID:-}" ] && kill "$GWR_PID" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$GW" certs --out "$work" >/dev/null

# One nginx process serves both the upstream (plain, 2-byte answer) and the TLS reverse proxy.
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backend { server 127.0.0.1:$UP_PORT; keepalive 64; }
  server { listen 127.0.0.1:$UP_PORT; location / { return 200 "ok"; } }
  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    ssl_certificate $work/gateway.crt; ssl_certificate_key $work/gateway.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
nginx -c "$work/nginx.conf"

cat > "$work/gateway.yaml" <<YAML
version: load-test
listeners:
  public:
    address: "127.0.0.1:$GW_PORT"
    tls: { cert: gateway.crt, key: gateway.key }
  metrics:
    address: "127.0.0.1:$GW_METRICS"
upstreams:
  backend: { targets: ["127.0.0.1:$UP_PORT"] }
routes:
  # The limit is far above the offered load: this measures the stage's cost, not refusals.
  - name: limited
    listener: public
    match: { path_prefix: /limited/ }
    auth: none
    rate_limit: { key: client_ip, rate: 1000000/s, burst: 1000000 }
    upstream: backend
  - name: all
    listener: public
    match: { path_prefix: / }
    auth: none
    upstream: backend
logging: { access_log: $work/access.log, level: warn }
server: { threads: 1 }
YAML
# The same gateway with the fleet (Redis) backend for its limits.
sed -e "s/$GW_PORT/$GWR_PORT/; s/$GW_METRICS/$GWR_METRICS/; s|access\.log|access-redis.log|" "$work/gateway.yaml" > "$work/gateway-redis.yaml"
printf 'rate_limits: { backend: redis, url: "%s" }\n' "$REDIS_URL" >> "$work/gateway-redis.yaml"
"$GW" run --config "$work/gateway.yaml" >"$work/gateway.out" 2>&1 &
GW_PID=$!
"$GW" run --config "$work/gateway-redis.yaml" >"$work/gateway-redis.out" 2>&1 &
GWR_PID=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$GW_METRICS/healthz" >/dev/null 2>&1 && curl -fsS "http://127.0.0.1:$GWR_METRICS/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

run() {
  local name=$1 url=$2
  local out; out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$url")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  printf '| %-16s | %10s | %8s | %8s |\n' "$name" "$rps" "$p50" "$p99"
}

echo "wrk -t$THREADS -c$CONNS -d${DURATION}s, $(nproc) cores, $(date -u +%F)"
echo "| path             |    req/s   |   p50    |   p99    |"
echo "|------------------|------------|----------|----------|"
run "upstream direct" "http://127.0.0.1:$UP_PORT/"
run "nginx (TLS)" "https://127.0.0.1:$NGINX_PORT/"
run "tiktok-gateway" "https://127.0.0.1:$GW_PORT/"
run "gw + limit local" "https://127.0.0.1:$GW_PORT/limited/"
if curl -fsS "http://127.0.0.1:$GWR_METRICS/healthz" >/dev/null 2>&1; then
  run "gw + limit redis" "https://127.0.0.1:$GWR_PORT/limited/"
else
  echo "gateway with the Redis backend did not start:" >&2
  tail -5 "$work/gateway-redis.out" >&2
fi

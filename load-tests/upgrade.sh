#!/usr/bin/env bash
# Zero-downtime upgrade under steady load, on 127.0.0.1: wrk sends proxied GETs and signed TikTok
# webhooks (POST) through the gateway for DURATION seconds; UPGRADE_AT seconds in, a second
# gateway starts with `run --upgrade` and the first gets SIGQUIT (the handover README describes).
# Prints what wrk counted: requests, non-2xx answers, socket errors. Exit 1 if any request failed.
#
# wrk keeps its connections alive: the old gateway closes its idle ones when it stops, and wrk
# reconnects (to the new one). A request written on a connection at the moment the old gateway
# closes it fails in any HTTP/1.1 server (clients retry those); the run counts such failures
# honestly as socket errors.
#
# Needs nginx, wrk, curl and openssl (apt-get install nginx-light wrk); a release build is made if
# missing (GATEWAY_BIN chooses another binary). Env: DURATION, UPGRADE_AT, CONNS, BASE_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-15}"
UPGRADE_AT="${UPGRADE_AT:-5}"
CONNS="${CONNS:-16}"
BASE="${BASE_PORT:-18600}"
UP_PORT=$BASE; GW_PORT=$((BASE + 1)); GW_METRICS=$((BASE + 2))
for tool in nginx wrk curl openssl; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
GW="${GATEWAY_BIN:-target/release/tiktok-gateway}"
[ -x "$GW" ] || { cargo build --release --bin tiktok-gateway; GW=target/release/tiktok-gateway; }

work=$(mktemp -d)
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  for p in ${OLD_PID:-} ${NEW_PID:-}; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:$UP_PORT; location / { return 200 "ok"; } }
}
NGINX
nginx -c "$work/nginx.conf"

APP_KEY=loadtestkey; APP_SECRET=loadtestsecret
printf '%s' "$APP_SECRET" > "$work/app_secret"
printf '%s' "order-service-secret" > "$work/forward_secret"
cat > "$work/gateway.yaml" <<YAML
version: upgrade-load-test
listeners:
  public: { address: "127.0.0.1:$GW_PORT" }
  metrics: { address: "127.0.0.1:$GW_METRICS" }
upstreams:
  orders: { targets: ["127.0.0.1:$UP_PORT"] }
tiktok:
  apps:
    main:
      app_key: "$APP_KEY"
      app_secret: "\${file:app_secret}"
      api_base: "http://127.0.0.1:1"
      auth_base: "http://127.0.0.1:1"
webhooks:
  queue_path: queue.redb
  forward_secret: "\${file:forward_secret}"
routes:
  - { name: orders, listener: public, match: { path_prefix: /orders/ }, auth: none, upstream: orders }
  - name: webhooks
    listener: public
    match: { path: /webhooks/tiktok, methods: [POST] }
    auth: { tiktok_webhook: main }
    upstream: orders
    rewrite: { path: /internal/events }
logging: { access_log: access.log, application_log: app.log, level: info }
server: { threads: 1, grace_period: 20s, state_dir: state }
YAML

# One signed webhook (the gateway deduplicates the repeats and acknowledges each with 200).
BODY='{"type":1,"tts_notification_id":"load-1","shop_id":"1","timestamp":1,"data":{}}'
SIG=$(printf '%s%s' "$APP_KEY" "$BODY" | openssl dgst -sha256 -hmac "$APP_SECRET" | awk '{print $NF}')
cat > "$work/webhook.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "$SIG"
LUA

"$GW" run --config "$work/gateway.yaml" >"$work/old.out" 2>&1 &
OLD_PID=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$GW_METRICS/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$GW_PORT/orders/1" >"$work/get.txt" &
GET_WRK=$!
wrk -t1 -c4 -d"${DURATION}s" -s "$work/webhook.lua" "http://127.0.0.1:$GW_PORT/webhooks/tiktok" >"$work/post.txt" &
POST_WRK=$!

sleep "$UPGRADE_AT"
"$GW" run --upgrade --config "$work/gateway.yaml" >"$work/new.out" 2>&1 &
NEW_PID=$!
sleep 0.3
kill -QUIT "$OLD_PID"
wait "$OLD_PID" && old_exit=0 || old_exit=$?
wait "$GET_WRK" "$POST_WRK"

failed=0
report() {
  local name=$1 file=$2
  local reqs non2xx errors
  reqs=$(awk '/requests in/ {print $1}' "$file")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$file"); non2xx=${non2xx:-0}
  errors=$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' "$file"); errors=${errors:-0}
  printf '| %-18s | %9s | %8s | %13s |\n' "$name" "$reqs" "$non2xx" "$errors"
  failed=$((failed + non2xx + errors))
}
echo "upgrade at ${UPGRADE_AT}s of ${DURATION}s, $(nproc) cores, $(date -u +%F); old gateway exited with $old_exit"
echo "| load               |  requests |  non-2xx | socket errors |"
echo "|--------------------|-----------|----------|---------------|"
report "GET /orders/1" "$work/get.txt"
report "POST webhook" "$work/post.txt"
curl -fsS "http://127.0.0.1:$GW_METRICS/readyz" >/dev/null && echo "new gateway (pid $NEW_PID) ready after the upgrade"
if [ "$failed" -ne 0 ] || [ "$old_exit" -ne 0 ]; then
  echo "FAILED: $failed failed requests" >&2
  tail -20 "$work/old.out" "$work/new.out" >&2
  exit 1
fi

#!/usr/bin/env bash
# Soak: does the gateway's RSS keep growing under steady mixed traffic?
#
# One gateway (`server.threads: THREADS`, one `auth: none` route, TLS with HTTP/2 by ALPN) in
# front of a 2-byte nginx upstream, on 127.0.0.1. For DURATION seconds:
#   - HTTP/1.1 keep-alive: h2load --h1, H1_CONNS connections at H1_RPS requests/s each;
#   - HTTP/2: h2load, H2_CONNS connections with H2_STREAMS streams, H2_RPS requests/s each;
#   - connection churn: every CHURN_EVERY seconds, CHURN new TLS connections (half HTTP/1.1,
#     half HTTP/2), one request each, then closed.
# RSS is sampled every SAMPLE seconds. Reported: RSS at the end of the warm-up (WARMUP seconds),
# at the end, the least-squares slope over the samples after the warm-up (MiB/hour), the growth
# over the post-warm-up period as a percentage of the warm-up RSS (target < 2%), every request
# that failed, and the gateway's WARN/ERROR log lines.
#
# Bounded: fixed connection counts and rates, DURATION seconds, 127.0.0.1 only.
# Needs nginx, h2load (apt-get install nginx-light nghttp2-client), python3, curl and
#   cargo build --release --bin tiktok-gateway
# Usage: THREADS=1 bash load-tests/soak.sh      (defaults: DURATION=1800 WARMUP=300 SAMPLE=10,
#        ~800 req/s HTTP/1.1 + ~700 req/s HTTP/2). Two runs with different THREADS and
#        BASE_PORT may run at the same time. OUT=dir keeps the samples and tool outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-1}"
DURATION="${DURATION:-1800}"
WARMUP="${WARMUP:-300}"
SAMPLE="${SAMPLE:-10}"
H1_CONNS="${H1_CONNS:-16}"
H1_RPS="${H1_RPS:-50}"
H2_CONNS="${H2_CONNS:-4}"
H2_STREAMS="${H2_STREAMS:-8}"
H2_RPS="${H2_RPS:-175}"
CHURN_EVERY="${CHURN_EVERY:-60}"
CHURN="${CHURN:-200}"
BASE_PORT="${BASE_PORT:-28300}"
GW="${GATEWAY_BIN:-target/release/tiktok-gateway}"
UP_PORT=$BASE_PORT
PORT=$((BASE_PORT + 1))
METRICS_PORT=$((BASE_PORT + 2))

for tool in nginx h2load curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install nginx-light nghttp2-client curl python3" >&2; exit 1; }
done
[ -x "$GW" ] || { echo "missing $GW: cargo build --release --bin tiktok-gateway" >&2; exit 1; }
[ "$WARMUP" -lt "$DURATION" ] || { echo "WARMUP must be shorter than DURATION" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
OUT="${OUT:-$work/out}"
mkdir -p "$OUT"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$GW" certs --out "$work" >/dev/null
AUDIT_SIGNING_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export AUDIT_SIGNING_KEY
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:$UP_PORT; location / { return 200 "ok"; } } }
NGINX
nginx -c "$work/nginx.conf" -e "$work/nginx-error.log"

cat > "$work/gateway.yaml" <<YAML
version: soak
listeners:
  public:
    address: "127.0.0.1:$PORT"
    tls: { cert: gateway.crt, key: gateway.key }
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
# The access log is written (the batching writer runs) but not kept: 1500 lines/s for 30 min.
logging: { access_log: /dev/null, level: warn }
server: { threads: $THREADS }
# Signed audit checkpoints, as in production (without a key the gateway warns at start-up).
audit: { signing_key: "\${env:AUDIT_SIGNING_KEY}" }
YAML
"$GW" run --config "$work/gateway.yaml" >"$OUT/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
for _ in $(seq 1 100); do curl -ksf -o /dev/null "https://127.0.0.1:$PORT/" && break; sleep 0.1; done
URL="https://127.0.0.1:$PORT/soak"

echo "# soak.sh: threads $THREADS, ${DURATION}s (warm-up ${WARMUP}s), $(nproc) cores, $(date -u '+%F %H:%M UTC')"
echo "# h1: $H1_CONNS conns x $H1_RPS req/s; h2: $H2_CONNS conns x $H2_STREAMS streams, $H2_RPS req/s per conn; churn $CHURN conns every ${CHURN_EVERY}s"

h2load --h1 -c "$H1_CONNS" --rps "$H1_RPS" -D "$DURATION" "$URL" >"$OUT/h1.txt" 2>&1 &
PIDS+=($!)
H1_PID=$!
h2load -c "$H2_CONNS" -m "$H2_STREAMS" --rps "$H2_RPS" -D "$DURATION" "$URL" >"$OUT/h2.txt" 2>&1 &
PIDS+=($!)
H2_PID=$!

start=$(date +%s)
next_churn=$((start + CHURN_EVERY))
churn_runs=0
: >"$OUT/churn.txt"
: >"$OUT/rss.tsv"
while :; do
  now=$(date +%s)
  elapsed=$((now - start))
  [ "$elapsed" -ge "$DURATION" ] && break
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$GW_PID/status")
  printf '%s\t%s\n' "$elapsed" "$rss" >>"$OUT/rss.tsv"
  if [ "$now" -ge "$next_churn" ]; then
    half=$((CHURN / 2))
    h2load --h1 -c "$half" -n "$half" "$URL" >>"$OUT/churn.txt" 2>&1 || true
    h2load -c "$half" -n "$half" "$URL" >>"$OUT/churn.txt" 2>&1 || true
    churn_runs=$((churn_runs + 1))
    next_churn=$((next_churn + CHURN_EVERY))
  fi
  sleep "$SAMPLE"
done
wait "$H1_PID" "$H2_PID" || true
sleep 2
rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$GW_PID/status")
printf '%s\t%s\n' "$(( $(date +%s) - start ))" "$rss" >>"$OUT/rss.tsv"

python3 - "$OUT" "$WARMUP" "$churn_runs" <<'PY'
import re, sys
out, warmup, churn_runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
samples = [tuple(map(int, l.split())) for l in open(f"{out}/rss.tsv") if l.strip()]
post = [(t, r) for t, r in samples if t >= warmup]
n = len(post)
mt = sum(t for t, _ in post) / n
mr = sum(r for _, r in post) / n
slope = sum((t - mt) * (r - mr) for t, r in post) / max(sum((t - mt) ** 2 for t, _ in post), 1)
fit = lambda t: mr + slope * (t - mt)
t0, t1 = post[0][0], post[-1][0]
growth = (fit(t1) - fit(t0)) / fit(t0) * 100
peak = max(r for _, r in samples)
print(f"| RSS at start | at warm-up end ({t0}s) | at end ({t1}s) | peak | slope after warm-up | growth after warm-up (fit) |")
print("|---|---|---|---|---|---|")
print(f"| {samples[0][1]/1024:.1f} MiB | {post[0][1]/1024:.1f} MiB | {post[-1][1]/1024:.1f} MiB "
      f"| {peak/1024:.1f} MiB | {slope*3600/1024:+.2f} MiB/h | {growth:+.2f}% |")

def h2load_totals(path):
    text = open(path).read()
    tot = {"done": 0, "succeeded": 0, "failed": 0, "errored": 0, "timeout": 0, "non2xx": 0}
    for m in re.finditer(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                         r"(\d+) failed, (\d+) errored, (\d+) timeout", text):
        tot["done"] += int(m[3]); tot["succeeded"] += int(m[4]); tot["failed"] += int(m[5])
        tot["errored"] += int(m[6]); tot["timeout"] += int(m[7])
    for m in re.finditer(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text):
        tot["non2xx"] += int(m[2]) + int(m[3]) + int(m[4])
    rps = re.findall(r"finished in [^,]+, ([\d.]+) req/s", text)
    return tot, rps
print()
for name, path in (("h1 steady", "h1.txt"), ("h2 steady", "h2.txt"), (f"churn ({churn_runs} bursts)", "churn.txt")):
    tot, rps = h2load_totals(f"{out}/{path}")
    rate = f", {rps[0]} req/s" if len(rps) == 1 else ""
    print(f"{name}: {tot['done']} done, {tot['succeeded']} succeeded, {tot['failed']} failed, "
          f"{tot['errored']} errored, {tot['timeout']} timeout, {tot['non2xx']} non-2xx{rate}")
lines = [l.rstrip() for l in open(f"{out}/gateway.log") if re.search(r"WARN|ERROR", l)]
print(f"gateway WARN/ERROR log lines: {len(lines)}")
for l in lines[:5]:
    print("  " + l[:200])
PY

#!/usr/bin/env bash
# Renders the dashboard from a real run: a release gateway (embedded mode), a real Prometheus
# scraping it every 2 s (with the alert rules loaded), and the load tester for DURATION seconds
# (turns, notifications, 30 % SSE, chaos reconnects, users over 25 tenants); then every panel of
# deploy/grafana/gateway.json is evaluated by that Prometheus and drawn (render.py).
#
#   deploy/render/run.sh [OUT.png]      (default docs/dashboard.png; DURATION=90 by default)
#
# Needs: prometheus (Debian package), python3 with matplotlib (a venv is made under target/).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-docs/dashboard.png}
DURATION=${DURATION:-90}
PROM_PORT=${PROM_PORT:-19090}
SECRET=render-secret-0123456789abcdef
WORK=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

VENV=target/render-venv
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q matplotlib; }
cargo build -q --release -p gateway -p loadtest

GATEWAY_LISTEN=127.0.0.1:0 GATEWAY_DATA_DIR="$WORK/data" GATEWAY_AUTH_HS256_SECRET=$SECRET \
  GATEWAY_LOG=warn target/release/gateway >"$WORK/gw.out" &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$WORK/gw.out" && break; sleep 0.1; done
ADDR=$(sed -n 's|listening on http://||p' "$WORK/gw.out" | head -1)
[ -n "$ADDR" ] || { echo "the gateway did not start" >&2; exit 1; }

cat >"$WORK/prometheus.yml" <<EOF
global: {scrape_interval: 2s, evaluation_interval: 2s}
rule_files: ["$PWD/deploy/prometheus/alerts.yml"]
scrape_configs:
  - job_name: gateway
    static_configs: [{targets: ["$ADDR"]}]
EOF
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address=127.0.0.1:$PROM_PORT --log.level=warn >"$WORK/prom.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PROM_PORT/-/ready" >/dev/null && break; sleep 0.2; done

START=$(date +%s)
target/release/loadtest run --url "http://$ADDR" --secret "$SECRET" --tenants 25 \
  --users 300 --devices 2 --sse-ratio 0.3 --duration-s "$DURATION" --turn-rate 8 \
  --max-turns 100 --tokens-per-turn 120 --token-rate 20 --notification-rate 20 \
  --chaos-rate 0.01 --settle-s 20 --quiet >"$WORK/load.txt"
sleep 6 # two more scrapes after the producer stops
END=$(date +%s)
tail -5 "$WORK/load.txt"
"$VENV/bin/python" deploy/render/render.py --prom "http://127.0.0.1:$PROM_PORT" \
  --start "$START" --end "$END" --out "$OUT"

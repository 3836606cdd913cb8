#!/usr/bin/env bash
# Runs the standard scenarios on this machine and writes docs/benchmarks.md:
# our gateway (embedded mode) and, when Node.js is here, the Node peer of
# ../shared/peers/node-gateway, both driven by the same load client in one run.
# Extra arguments go to `loadtest bench` (e.g. --only idle,stream20k --scale 0.2).
set -euo pipefail
cd "$(dirname "$0")/.."
# Thousands of sockets on each side: raise the descriptor limit here, not in the user's shell.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
cargo build --release -p gateway -p loadtest
args=()
peer=../shared/peers/node-gateway
if command -v node >/dev/null && command -v npm >/dev/null && [ -f "$peer/server.js" ]; then
  mkdir -p target/node-peer
  cp "$peer/server.js" "$peer/package.json" "$peer/package-lock.json" target/node-peer/
  (cd target/node-peer && npm ci --no-audit --no-fund --silent) && args+=(--node-peer target/node-peer)
else
  echo "bench: Node.js or the peer is missing; measuring this gateway only" >&2
fi
exec ./target/release/loadtest bench "${args[@]}" --json-dir target/bench "$@"

#!/usr/bin/env bash
# graphql-http's audit against `costgraph serve` (embedded PostgreSQL in a temporary data
# directory, a free loopback port, a platform_admin token), from .ci/run. Needs node and npm
# and the package installed (`pip install -e .`); installs the audit's npm packages from the
# lock file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
npm ci --no-audit --no-fund --loglevel=error

data="$(mktemp -d)"
port="$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export COSTGRAPH_DATA_DIR="$data"
unset COSTGRAPH_DATABASE_URL
costgraph serve --host 127.0.0.1 --port "$port" --log-level warning >"$data/serve.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT

for _ in $(seq 1 120); do
  if python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$server" 2>/dev/null; then
    cat "$data/serve.log"
    exit 1
  fi
  sleep 0.5
done

token="$(costgraph token --role platform_admin)"
node audit.mjs "http://127.0.0.1:$port/graphql" "$token" || { tail -50 "$data/serve.log"; exit 1; }

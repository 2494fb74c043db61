#!/usr/bin/env bash
# Cache ↔ server sync, measured twice on real MiniLM vectors (Debian package descriptions):
# `proxima bench sync` (server in-process, the cache side native) and the Node package's own
# client against a separate server process (wasm/bench/sync.mjs).
#
#   bash scripts/bench-sync.sh [--sizes 10000,50000] [--dataset DIR] [--writes 300] [--no-build]
#
#   --dataset  a dataset directory (default: $PROXIMA_HOME/datasets/debian-packages-50000,
#              built with `proxima dataset build debian-packages --limit 50000 --out …` if absent)
set -euo pipefail
cd "$(dirname "$0")/.."
cmdline="bash scripts/bench-sync.sh${*:+ $*}"
sizes=10000,50000
dataset="${PROXIMA_HOME:-$HOME/.cache/proxima}/datasets/debian-packages-50000"
writes=300
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes="$2"; shift 2 ;;
    --dataset) dataset="$2"; shift 2 ;;
    --writes) writes="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "bench-sync: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ "$build" = 1 ]; then
  cargo build --release -p proxima-server --bin proxima
  bash scripts/build-wasm.sh
fi
bin=target/release/proxima
[ -f "$dataset/manifest.json" ] || "$bin" dataset build debian-packages --limit 50000 --out "$dataset"

echo "# Sync benchmark"
echo "command: $cmdline"
echo "build: release; machine: $(nproc) CPUs (nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sm); node $(node --version)"
echo
echo "## proxima bench sync (in-process server, native cache side)"
"$bin" bench sync --dataset "$dataset" --sizes "$sizes" --writes "$writes"

echo
echo "## The Node package against a server process (loopback)"
data=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"' EXIT
"$bin" serve --listen 127.0.0.1:0 --data-dir "$data" --no-demo --no-embed > "$data/out" 2> "$data/err" &
pid=$!
for _ in $(seq 100); do grep -q http:// "$data/out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$data/out" | head -1)
names=()
IFS=, read -ra ns <<< "$sizes"
for n in "${ns[@]}"; do
  "$bin" import "$dataset" --collection "sync-$n" --limit "$n" --server "$url" > /dev/null 2>&1
  names+=("sync-$n")
done
node wasm/bench/sync.mjs "$url" "$PWD/target/wasm-pkg/node" "$(IFS=,; echo "${names[*]}")" "$writes"

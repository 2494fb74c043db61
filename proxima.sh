#!/usr/bin/env bash
# Proxima's two entry points. Both install whatever is missing first (idempotently).
#   ./proxima.sh serve [args]   build and run the server on ./data (prints where it listens)
#   ./proxima.sh test           the whole suite: fmt, clippy, unit + end-to-end tests, wasm in Node and Chromium,
#                               the npm packages (size check, installed and used in Node and Chromium)
set -euo pipefail
cd "$(dirname "$0")"
cmd="${1:-help}"
shift || true
step() { printf '\n== %s\n' "$*"; }

case "$cmd" in
  serve)
    bash scripts/setup.sh native
    step "cargo build --release (first build compiles FAISS: ~5 minutes)"
    cargo build --release -p proxima-server --bin proxima
    # The page at / imports the web package from /pkg/: (re)build it when its sources changed.
    pkg=target/wasm-pkg/web/index.js
    if [ ! -f "$pkg" ] || [ -n "$(find core/src core/Cargo.toml wasm/src wasm/js wasm/Cargo.toml scripts/build-wasm.sh -newer "$pkg" -print -quit)" ]; then
      step "the web package for the page (scripts/build-wasm.sh)"
      bash scripts/build-wasm.sh
    fi
    exec ./target/release/proxima serve --data-dir "${PROXIMA_DATA_DIR:-./data}" "$@"
    ;;
  test)
    start=$(date +%s)
    bash scripts/setup.sh
    step "cargo fmt --check"
    cargo fmt --all -- --check
    step "cargo clippy (native, all targets, -D warnings)"
    cargo clippy --workspace --all-targets -- -D warnings
    step "cargo clippy (wasm32)"
    bash scripts/wasm-cargo.sh clippy -p proxima-wasm --all-targets -- -D warnings
    step "build the server binary the end-to-end tests spawn"
    cargo build -p proxima-server --bins
    step "cargo test (unit, property and end-to-end tests)"
    cargo test --workspace
    step "wasm: build, then the same tests in Node and in headless Chromium"
    export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
    bash scripts/wasm-cargo.sh build -p proxima-wasm --release
    step "wasm tests in Node"
    bash scripts/wasm-cargo.sh test -p proxima-wasm
    step "wasm tests in headless Chromium"
    WASM_BINDGEN_USE_BROWSER=1 CHROMEDRIVER="$(command -v chromedriver)" bash scripts/wasm-cargo.sh test -p proxima-wasm
    step "wasm packages: build (size check) and install test in Node"
    bash scripts/build-wasm.sh
    node --test tests/wasm-node/*.test.mjs
    step "all green in $(( $(date +%s) - start )) s"
    ;;
  *)
    sed -n '2,5p' "$0"
    exit 2
    ;;
esac

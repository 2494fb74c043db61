#!/usr/bin/env bash
# Runs cargo for the wasm32 target with whichever toolchain scripts/setup.sh installed.
set -euo pipefail
cd "$(dirname "$0")/.."
route="$(cat target/.wasm-route 2>/dev/null || echo rustup)"
sub="$1"; shift
if [ "$route" = debian ]; then
  exec env PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
    CARGO_TARGET_DIR=target/wasm-debian \
    /usr/bin/cargo "$sub" -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown "$@"
fi
exec cargo "$sub" --target wasm32-unknown-unknown "$@"

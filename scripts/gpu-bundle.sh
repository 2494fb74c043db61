#!/usr/bin/env bash
# Packs the `gpu` feature's test binary with the shared libraries it links besides CUDA's, so the
# GPU tests run on a machine with a CUDA 13 driver and runtime but no Rust toolchain:
#
#   bash scripts/gpu-bundle.sh        # builds (~15 min the first time) → target/gpu-bundle.tar.xz
#   # on the GPU machine (default test filter: index::gpu):
#   tar -xJf gpu-bundle.tar.xz -C /tmp && /tmp/gpu-bundle/run-tests.sh
#
# The archive is about 20 MB (77 MB unpacked). CUDA's own libraries (libcudart.so.13,
# libcublas.so.13, libcublasLt.so.13) must come from the GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/gpu-toolkit.sh)"
# The archive always lands in the repository's target/ (a path the device runner can carry),
# whatever CARGO_TARGET_DIR the build uses.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
out="$stage/gpu-bundle"
archive="target/gpu-bundle.tar.xz"
mkdir -p target

cargo test --release -p proxima-server --features gpu --no-run
bin="$(cargo test --release -p proxima-server --features gpu --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    t = m.get("target", {})
    if m.get("reason") == "compiler-artifact" and t.get("name") == "proxima_server" \
            and "lib" in t.get("kind", []) and m.get("executable"):
        print(m["executable"])')"
[ -x "$bin" ] || { echo "no test binary found" >&2; exit 1; }

mkdir -p "$out/lib"
cp "$bin" "$out/proxima-server-tests"
strip "$out/proxima-server-tests"
# BLAS/LAPACK (OpenBLAS), Fortran and OpenMP runtimes: not on every GPU machine.
ldd "$bin" | awk '/openblas|libblas|liblapack|gfortran|quadmath|gomp/ { print $3 }' |
  while read -r lib; do cp -L "$lib" "$out/lib/"; done
cat > "$out/run-tests.sh" <<'RUN'
#!/usr/bin/env bash
# Runs the bundled proxima-server tests (default: the GPU ones) with the bundled libraries.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# CUDA 13's runtime and cuBLAS: a CUDA install, or NVIDIA's Python wheels (as PyTorch images
# carry them).
cuda_libs=""
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13; do
  if ! ldconfig -p 2>/dev/null | grep -q "$lib"; then
    found="$(find /usr/local /opt /usr/lib -maxdepth 9 -name "$lib" 2>/dev/null | head -n 1)"
    [ -n "$found" ] && cuda_libs="$cuda_libs:$(dirname "$found")"
  fi
done
export LD_LIBRARY_PATH="$here/lib${cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [ $# -eq 0 ]; then set -- index::gpu; fi
exec "$here/proxima-server-tests" "$@" --test-threads 1 --nocapture
RUN
chmod +x "$out/run-tests.sh"
tar -cJf "$archive" -C "$stage" gpu-bundle
du -sh "$out" "$archive" >&2
echo "$archive"

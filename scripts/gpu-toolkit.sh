#!/usr/bin/env bash
# Assembles a CUDA 13.0 toolkit from NVIDIA's PyPI wheels, for building the `gpu` feature
# (FAISS's GPU indexes) on a machine without a CUDA install, then prints the environment the
# build needs. Idempotent: an existing toolkit is reused. CI does not run it (no GPU there).
#
#   eval "$(bash scripts/gpu-toolkit.sh)"
#   cargo build --release -p proxima-server --features gpu     # ~15 min on 2 CPUs (FAISS + CUDA)
#
# The binary then needs libcudart.so.13, libcublas.so.13 and libcublasLt.so.13 at run time:
# those of the GPU machine's own CUDA 13 install (cuBLASLt alone is 540 MB).
set -euo pipefail
dest="${PROXIMA_CUDA:-${PROXIMA_HOME:-$HOME/.cache/proxima}/cuda-13.0}"
log() { echo "[gpu-toolkit] $*" >&2; }

if [ ! -x "$dest/bin/nvcc" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  log "downloading the CUDA 13.0 wheels into $work"
  # nvcc, its crt headers and NVVM; the runtime; CCCL (thrust, cub); cuBLAS; and the two
  # headers FAISS's GPU sources include besides (curand_kernel.h, cuda_profiler_api.h).
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work/wheels" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14 \
    nvidia-curand==10.4.0.35 nvidia-cuda-profiler-api==13.0.85
  mkdir -p "$work/unpacked"
  for w in "$work"/wheels/*.whl; do
    python3 -m zipfile -e "$w" "$work/unpacked" >/dev/null
  done
  chmod -R u+rwX,go+rX "$work/unpacked"
  chmod +x "$work"/unpacked/nvidia/cu13/bin/* "$work"/unpacked/nvidia/cu13/nvvm/bin/*
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest.partial"
  mv "$work/unpacked/nvidia/cu13" "$dest.partial"
  (
    cd "$dest.partial/lib"
    ln -sfn libcudart.so.13 libcudart.so
    ln -sfn libcublas.so.13 libcublas.so
    ln -sfn libcublasLt.so.13 libcublasLt.so
    ln -sfn libnvvm.so.4 libnvvm.so
  )
  ln -sfn lib "$dest.partial/lib64"
  mv "$dest.partial" "$dest"
  log "toolkit ready: $dest"
else
  log "toolkit present: $dest"
fi
"$dest/bin/nvcc" --version | tail -n 2 >&2

# CUDAARCHS=90-real: machine code for H100/H200 only (sm_90), half the size and build time of
# adding PTX. The faiss-sys build does not watch it: change it only with a fresh target dir.
cat <<ENV
export PATH="$dest/bin:\$PATH"
export CUDA_PATH="$dest" CUDAToolkit_ROOT="$dest" CUDACXX="$dest/bin/nvcc"
export CUDAARCHS="\${CUDAARCHS:-90-real}"
ENV

//! Build script: with the `gpu` feature, compiles `src/index/gpu/shim.cpp` (the GPU calls FAISS's
//! C API lacks) against the FAISS headers `faiss-sys` installed and the CUDA toolkit's.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "gpu")]
    gpu_shim();
}

#[cfg(feature = "gpu")]
fn gpu_shim() {
    use std::path::PathBuf;

    println!("cargo:rerun-if-changed=src/index/gpu/shim.cpp");
    println!("cargo:rerun-if-env-changed=CUDA_PATH");
    println!("cargo:rerun-if-env-changed=CUDAARCHS");
    // faiss-sys (links = "faiss_c") builds FAISS with CMake, which reports its install
    // prefix as `root`; the headers are under include/.
    let faiss_root = std::env::var("DEP_FAISS_C_ROOT")
        .expect("faiss-sys with the `static` feature reports DEP_FAISS_C_ROOT");
    let cuda = std::env::var("CUDA_PATH")
        .expect("the gpu feature needs CUDA_PATH (a CUDA toolkit; see scripts/gpu-toolkit.sh)");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("src/index/gpu/shim.cpp")
        .include(PathBuf::from(&faiss_root).join("include"))
        .include(PathBuf::from(&cuda).join("include"))
        .warnings(false)
        .compile("proxima_gpu_shim");
    // The kernels FAISS was built for, so the server can refuse a device they cannot run on
    // (a kernel launch without a matching image aborts inside FAISS).
    let archs = std::env::var("CUDAARCHS").expect(
        "the gpu feature needs CUDAARCHS, the CUDA architectures to build for (e.g. 90-real for \
         H100/H200; scripts/gpu-toolkit.sh sets it)",
    );
    println!("cargo:rustc-env=PROXIMA_CUDA_ARCHS={archs}");
}

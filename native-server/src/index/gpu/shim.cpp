// The few GPU operations FAISS's C API lacks or gets wrong for a server that must not leak
// device memory (built only with the `gpu` feature; see gpu/mod.rs).
//
// * `faiss_index_cpu_to_gpu` news the GPU IVF index and then copies the lists into it: when
//   the copy runs out of device memory the half-filled index is never freed. Here every new
//   index lives in a unique_ptr until it is complete, so a failure frees what was allocated.
// * `faiss_get_num_gpus` aborts the process on CUDA errors other than "no device" (FAISS's
//   CUDA_VERIFY). Device queries here return the CUDA error instead.
//
// Every function returns 0 on success, 1 when the GPU ran out of memory, 2 on any other error,
// with a message in `err` (always NUL-terminated). No C++ exception crosses into Rust.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/gpu/GpuIndexFlat.h>
#include <faiss/gpu/GpuIndexIVFFlat.h>
#include <faiss/gpu/GpuIndexIVFPQ.h>
#include <faiss/gpu/GpuIndexIVFScalarQuantizer.h>
#include <faiss/gpu/StandardGpuResources.h>

namespace {

constexpr int kOk = 0;
constexpr int kOutOfMemory = 1;
constexpr int kError = 2;

void write_error(char* err, size_t err_len, const std::string& message) {
    if (err == nullptr || err_len == 0) {
        return;
    }
    size_t n = message.size() < err_len - 1 ? message.size() : err_len - 1;
    std::memcpy(err, message.data(), n);
    err[n] = '\0';
}

// FAISS reports a failed cudaMalloc as "StandardGpuResources: alloc fail ... (cudaMalloc
// error out of memory [2])"; cuBLAS and the caching allocator say "out of memory".
bool is_out_of_memory(const std::string& message) {
    return message.find("alloc fail") != std::string::npos ||
            message.find("out of memory") != std::string::npos ||
            message.find("cudaErrorMemoryAllocation") != std::string::npos;
}

template <typename F>
int guarded(char* err, size_t err_len, F&& body) {
    try {
        body();
        return kOk;
    } catch (const std::bad_alloc&) {
        write_error(err, err_len, "host out of memory");
        return kOutOfMemory;
    } catch (const std::exception& e) {
        std::string message = e.what();
        write_error(err, err_len, message);
        return is_out_of_memory(message) ? kOutOfMemory : kError;
    } catch (...) {
        write_error(err, err_len, "unknown C++ exception");
        return kError;
    }
}

int cuda_error(char* err, size_t err_len, const char* what, cudaError_t e) {
    cudaGetLastError(); // reset the calling thread's last CUDA error
    write_error(
            err,
            err_len,
            std::string(what) + ": " + cudaGetErrorName(e) + " (" +
                    cudaGetErrorString(e) + ")");
    return e == cudaErrorMemoryAllocation ? kOutOfMemory : kError;
}

// Restores the calling thread's current device on scope exit.
struct DeviceGuard {
    int previous = -1;
    cudaError_t status = cudaSuccess;
    explicit DeviceGuard(int device) {
        if (cudaGetDevice(&previous) != cudaSuccess) {
            previous = -1;
        }
        status = cudaSetDevice(device);
    }
    ~DeviceGuard() {
        if (previous >= 0) {
            cudaSetDevice(previous);
        }
    }
};

} // namespace

extern "C" {

// Number of CUDA devices; 0 without a device or a driver (never aborts).
int proxima_gpu_device_count(int* out, char* err, size_t err_len) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver) {
        cudaGetLastError();
        *out = 0;
        return kOk;
    }
    if (e != cudaSuccess) {
        return cuda_error(err, err_len, "cudaGetDeviceCount", e);
    }
    *out = n;
    return kOk;
}

// Free and total bytes of `device`.
int proxima_gpu_memory(
        int device,
        size_t* free_bytes,
        size_t* total_bytes,
        char* err,
        size_t err_len) {
    DeviceGuard guard(device);
    if (guard.status != cudaSuccess) {
        return cuda_error(err, err_len, "cudaSetDevice", guard.status);
    }
    cudaError_t e = cudaMemGetInfo(free_bytes, total_bytes);
    if (e != cudaSuccess) {
        return cuda_error(err, err_len, "cudaMemGetInfo", e);
    }
    return kOk;
}

// Compute capability of `device`.
int proxima_gpu_capability(
        int device,
        int* major,
        int* minor,
        char* err,
        size_t err_len) {
    cudaError_t e =
            cudaDeviceGetAttribute(major, cudaDevAttrComputeCapabilityMajor, device);
    if (e == cudaSuccess) {
        e = cudaDeviceGetAttribute(
                minor, cudaDevAttrComputeCapabilityMinor, device);
    }
    if (e != cudaSuccess) {
        return cuda_error(err, err_len, "cudaDeviceGetAttribute", e);
    }
    return kOk;
}

// Initialises `res` for `device` now (streams, cuBLAS handle, temporary memory), so that a
// device that cannot be used fails at start-up rather than in the middle of a search. FAISS
// aborts the process when it cannot create a stream or a cuBLAS handle there, so both are
// tried here first, where a failure is an error code.
int proxima_gpu_init(void* res, int device, char* err, size_t err_len) {
    {
        DeviceGuard guard(device);
        if (guard.status != cudaSuccess) {
            return cuda_error(err, err_len, "cudaSetDevice", guard.status);
        }
        cudaStream_t stream = nullptr;
        cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
        if (e != cudaSuccess) {
            return cuda_error(err, err_len, "cudaStreamCreateWithFlags", e);
        }
        cudaStreamDestroy(stream);
        cublasHandle_t handle = nullptr;
        cublasStatus_t status = cublasCreate(&handle);
        if (status != CUBLAS_STATUS_SUCCESS) {
            write_error(
                    err,
                    err_len,
                    std::string("cublasCreate failed with status ") +
                            std::to_string(static_cast<int>(status)));
            return status == CUBLAS_STATUS_ALLOC_FAILED ? kOutOfMemory : kError;
        }
        cublasDestroy(handle);
    }
    auto* resources = static_cast<faiss::gpu::StandardGpuResources*>(res);
    return guarded(err, err_len, [&] {
        resources->getResources()->initializeForDevice(device);
    });
}

// Copies a CPU index (IndexFlat, IndexIVFFlat, IndexIVFScalarQuantizer, IndexIVFPQ) to
// `device`. On failure nothing stays allocated on the device and `*out` is null.
int proxima_gpu_clone(
        void* res,
        int device,
        const void* cpu_index,
        void** out,
        char* err,
        size_t err_len) {
    *out = nullptr;
    auto* provider = static_cast<faiss::gpu::StandardGpuResources*>(res);
    auto* index = static_cast<const faiss::Index*>(cpu_index);
    return guarded(err, err_len, [&] {
        std::unique_ptr<faiss::Index> gpu;
        if (auto flat = dynamic_cast<const faiss::IndexFlat*>(index)) {
            faiss::gpu::GpuIndexFlatConfig config;
            config.device = device;
            config.use_cuvs = false;
            auto g = std::make_unique<faiss::gpu::GpuIndexFlat>(
                    provider, flat->d, flat->metric_type, config);
            g->copyFrom(flat);
            gpu = std::move(g);
        } else if (auto ivf = dynamic_cast<const faiss::IndexIVFFlat*>(index)) {
            faiss::gpu::GpuIndexIVFFlatConfig config;
            config.device = device;
            config.use_cuvs = false;
            auto g = std::make_unique<faiss::gpu::GpuIndexIVFFlat>(
                    provider, ivf->d, ivf->nlist, ivf->metric_type, config);
            g->copyFrom(ivf);
            gpu = std::move(g);
        } else if (
                auto sq = dynamic_cast<const faiss::IndexIVFScalarQuantizer*>(
                        index)) {
            faiss::gpu::GpuIndexIVFScalarQuantizerConfig config;
            config.device = device;
            config.use_cuvs = false;
            auto g = std::make_unique<faiss::gpu::GpuIndexIVFScalarQuantizer>(
                    provider,
                    sq->d,
                    sq->nlist,
                    sq->sq.qtype,
                    sq->metric_type,
                    sq->by_residual,
                    config);
            g->copyFrom(sq);
            gpu = std::move(g);
        } else if (auto pq = dynamic_cast<const faiss::IndexIVFPQ*>(index)) {
            faiss::gpu::GpuIndexIVFPQConfig config;
            config.device = device;
            config.use_cuvs = false;
            // The constructor copies; if it throws, the new-expression frees the object
            // and the destructors of its completed parts free their device memory.
            gpu = std::make_unique<faiss::gpu::GpuIndexIVFPQ>(provider, pq, config);
        } else {
            throw std::runtime_error(
                    "this index type has no GPU implementation");
        }
        *out = gpu.release();
    });
}

// A GPU flat index holding `n` rows of `d` floats (metric: 0 inner product, 1 L2, as
// faiss::MetricType).
int proxima_gpu_flat(
        void* res,
        int device,
        int d,
        int metric,
        int64_t n,
        const float* rows,
        void** out,
        char* err,
        size_t err_len) {
    *out = nullptr;
    auto* provider = static_cast<faiss::gpu::StandardGpuResources*>(res);
    return guarded(err, err_len, [&] {
        faiss::gpu::GpuIndexFlatConfig config;
        config.device = device;
        config.use_cuvs = false;
        auto g = std::make_unique<faiss::gpu::GpuIndexFlat>(
                provider, d, static_cast<faiss::MetricType>(metric), config);
        // One call: FAISS grows a GPU flat index by reallocating it whole, so adding in
        // blocks would need twice the memory and copy the rows over and over.
        g->add(n, rows);
        *out = g.release();
    });
}

// Frees an index made by the functions above (or any FAISS index).
int proxima_gpu_free(void* index, char* err, size_t err_len) {
    return guarded(err, err_len, [&] {
        delete static_cast<faiss::Index*>(index);
    });
}

// Test support: holds `bytes` of device memory (to provoke out-of-memory). Returns the
// pointer through `out`; release it with proxima_gpu_release.
int proxima_gpu_hold(int device, size_t bytes, void** out, char* err, size_t err_len) {
    *out = nullptr;
    DeviceGuard guard(device);
    if (guard.status != cudaSuccess) {
        return cuda_error(err, err_len, "cudaSetDevice", guard.status);
    }
    cudaError_t e = cudaMalloc(out, bytes);
    if (e != cudaSuccess) {
        *out = nullptr;
        return cuda_error(err, err_len, "cudaMalloc", e);
    }
    return kOk;
}

int proxima_gpu_release(int device, void* p, char* err, size_t err_len) {
    DeviceGuard guard(device);
    if (guard.status != cudaSuccess) {
        return cuda_error(err, err_len, "cudaSetDevice", guard.status);
    }
    cudaError_t e = cudaFree(p);
    if (e != cudaSuccess) {
        return cuda_error(err, err_len, "cudaFree", e);
    }
    return kOk;
}

} // extern "C"

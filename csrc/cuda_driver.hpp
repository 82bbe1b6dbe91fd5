#pragma once
// Run-time binding to the CUDA driver API: no CUDA headers or toolkit at build time. The library is
// dlopen'ed from $LLMPROF_CUDA_DRIVER (tests point it at a stand-in) or libcuda.so.1.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace llmprof::cuda {

// The few driver types used, ABI-compatible with cuda.h.
struct CUctx_st;
struct CUevent_st;
struct CUstream_st;
using CUresult = int;
using CUdevice = int;
using CUcontext = CUctx_st*;
using CUevent = CUevent_st*;
using CUstream = CUstream_st*;
using CUdeviceptr = unsigned long long;

constexpr CUresult CUDA_SUCCESS = 0;
constexpr CUresult CUDA_ERROR_NOT_READY = 600;

constexpr const char* kDriverEnv = "LLMPROF_CUDA_DRIVER";
constexpr const char* kDefaultDriver = "libcuda.so.1";

// Every driver failure, including a library or symbol that cannot be loaded.
class CudaError : public std::runtime_error {
 public:
    using std::runtime_error::runtime_error;
};

// Entry points of one loaded driver library. cuGetErrorName/cuGetErrorString, cuCtxSynchronize and
// cuProfilerStart/Stop are optional (may be null).
struct Driver {
    std::string path;
    CUresult (*cuInit)(unsigned flags) = nullptr;
    CUresult (*cuDriverGetVersion)(int* version) = nullptr;
    CUresult (*cuDeviceGet)(CUdevice* dev, int ordinal) = nullptr;
    CUresult (*cuDevicePrimaryCtxRetain)(CUcontext* ctx, CUdevice dev) = nullptr;
    CUresult (*cuDevicePrimaryCtxRelease)(CUdevice dev) = nullptr;
    CUresult (*cuCtxPushCurrent)(CUcontext ctx) = nullptr;
    CUresult (*cuCtxPopCurrent)(CUcontext* ctx) = nullptr;
    CUresult (*cuEventCreate)(CUevent* ev, unsigned flags) = nullptr;
    CUresult (*cuEventDestroy)(CUevent ev) = nullptr;
    CUresult (*cuEventRecord)(CUevent ev, CUstream stream) = nullptr;
    CUresult (*cuEventSynchronize)(CUevent ev) = nullptr;
    CUresult (*cuEventElapsedTime)(float* ms, CUevent start, CUevent end) = nullptr;
    CUresult (*cuStreamSynchronize)(CUstream stream) = nullptr;
    CUresult (*cuMemHostAlloc)(void** host, std::size_t bytes, unsigned flags) = nullptr;
    CUresult (*cuMemFreeHost)(void* host) = nullptr;
    CUresult (*cuMemcpyDtoHAsync)(void* dst, CUdeviceptr src, std::size_t bytes, CUstream stream) = nullptr;
    CUresult (*cuGetErrorName)(CUresult err, const char** name) = nullptr;
    CUresult (*cuGetErrorString)(CUresult err, const char** text) = nullptr;
    CUresult (*cuCtxSynchronize)() = nullptr;  // optional, as the profiler-range calls
    CUresult (*cuProfilerStart)() = nullptr;
    CUresult (*cuProfilerStop)() = nullptr;

    // "CUDA_ERROR_INVALID_HANDLE (400): invalid resource handle"; "CUDA error 400" without the name calls.
    std::string describe(CUresult err) const;
    [[noreturn]] void fail(const char* call, CUresult err) const;
    void check(CUresult err, const char* call) const {
        if (err != CUDA_SUCCESS) fail(call, err);
    }
};

// The driver named by $LLMPROF_CUDA_DRIVER (else libcuda.so.1), loaded on first use of that path and kept
// for the life of the process. Thread-safe. Throws CudaError.
const Driver& driver();

// (true, "CUDA driver 12.4 (libcuda.so.1)") if the driver loads and cuInit(0) succeeds, else (false, why).
// Never throws.
std::pair<bool, std::string> driver_status();

// cuProfilerStart() (start) or cuProfilerStop() after cuCtxSynchronize() (so the steps' kernels are in the
// range), in the primary context of device `ordinal`: what `nsys profile --capture-range=cudaProfilerApi`
// captures between. Throws CudaError (a driver without these entry points included).
void profiler_range(int ordinal, bool start);

}  // namespace llmprof::cuda

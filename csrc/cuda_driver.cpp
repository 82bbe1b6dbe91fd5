#include "cuda_driver.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <type_traits>

namespace llmprof::cuda {
namespace {

using GetProcAddressV2 = CUresult (*)(const char* symbol, void** pfn, int cuda_version, std::uint64_t flags,
                                      int* symbol_status);  // CUDA 12.0+
using GetProcAddress = CUresult (*)(const char* symbol, void** pfn, int cuda_version,
                                    std::uint64_t flags);  // 11.3+
constexpr int kApiVersion = 12000;  // the ABI version of the entry points we ask cuGetProcAddress for

const char* last_dlerror() {
    const char* err = dlerror();
    return err ? err : "unknown dlerror";
}

std::unique_ptr<Driver> load(const std::string& path) {
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) throw CudaError("cannot load the CUDA driver '" + path + "': " + last_dlerror());
    auto get_v2 = reinterpret_cast<GetProcAddressV2>(dlsym(lib, "cuGetProcAddress_v2"));
    auto get_v1 = get_v2 ? nullptr : reinterpret_cast<GetProcAddress>(dlsym(lib, "cuGetProcAddress"));

    auto drv = std::make_unique<Driver>();
    drv->path = path;
    // Resolves `name` through cuGetProcAddress[_v2] when exported, else (or if that fails) by dlsym. For
    // dlsym, `v2_abi` marks entry points that cuda.h maps to "<name>_v2" (drivers older than 11.3).
    auto bind = [&](auto& slot, const char* name, bool required, bool v2_abi = false) {
        void* fn = nullptr;
        int status = 0;
        if (get_v2 && get_v2(name, &fn, kApiVersion, 0, &status) != CUDA_SUCCESS) fn = nullptr;
        if (get_v1 && get_v1(name, &fn, kApiVersion, 0) != CUDA_SUCCESS) fn = nullptr;
        if (!fn && v2_abi) fn = dlsym(lib, (std::string(name) + "_v2").c_str());
        if (!fn) fn = dlsym(lib, name);
        if (!fn && required)
            throw CudaError("CUDA driver '" + path + "' has no " + name + ": " + last_dlerror());
        slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(fn);
    };
    try {
        bind(drv->cuInit, "cuInit", true);
        bind(drv->cuDriverGetVersion, "cuDriverGetVersion", true);
        bind(drv->cuDeviceGet, "cuDeviceGet", true);
        bind(drv->cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", true);
        bind(drv->cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease", true, true);
        bind(drv->cuCtxPushCurrent, "cuCtxPushCurrent", true, true);
        bind(drv->cuCtxPopCurrent, "cuCtxPopCurrent", true, true);
        bind(drv->cuEventCreate, "cuEventCreate", true);
        bind(drv->cuEventDestroy, "cuEventDestroy", true, true);
        bind(drv->cuEventRecord, "cuEventRecord", true);
        bind(drv->cuEventSynchronize, "cuEventSynchronize", true);
        bind(drv->cuEventElapsedTime, "cuEventElapsedTime", true);
        bind(drv->cuStreamSynchronize, "cuStreamSynchronize", true);
        bind(drv->cuMemHostAlloc, "cuMemHostAlloc", true);
        bind(drv->cuMemFreeHost, "cuMemFreeHost", true);
        bind(drv->cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync", true, true);
        bind(drv->cuGetErrorName, "cuGetErrorName", false);
        bind(drv->cuGetErrorString, "cuGetErrorString", false);
        bind(drv->cuCtxSynchronize, "cuCtxSynchronize", false);
        bind(drv->cuProfilerStart, "cuProfilerStart", false);
        bind(drv->cuProfilerStop, "cuProfilerStop", false);
    } catch (...) {
        dlclose(lib);
        throw;
    }
    return drv;
}

}  // namespace

std::string Driver::describe(CUresult err) const {
    const char* name = nullptr;
    const char* text = nullptr;
    if (cuGetErrorName && cuGetErrorName(err, &name) != CUDA_SUCCESS) name = nullptr;
    if (cuGetErrorString && cuGetErrorString(err, &text) != CUDA_SUCCESS) text = nullptr;
    std::string out =
        name ? std::string(name) + " (" + std::to_string(err) + ")" : "CUDA error " + std::to_string(err);
    if (text) out += std::string(": ") + text;
    return out;
}

void Driver::fail(const char* call, CUresult err) const {
    throw CudaError(std::string(call) + " failed: " + describe(err));
}

// Drivers are cached per path rather than once per process, so that a process (a test session) can switch
// libraries through the environment variable; Timelines keep a pointer to the Driver they were built with.
// Libraries are never unloaded and the cache is never freed, so those pointers stay valid even during exit.
// A failed load is not cached: the next call tries again.
const Driver& driver() {
    const char* env = std::getenv(kDriverEnv);
    const std::string path = env && *env ? env : kDefaultDriver;
    static std::mutex mutex;
    static auto* cache = new std::map<std::string, std::unique_ptr<Driver>>();
    std::lock_guard<std::mutex> lock(mutex);
    auto it = cache->find(path);
    if (it == cache->end()) it = cache->emplace(path, load(path)).first;
    return *it->second;
}

std::pair<bool, std::string> driver_status() {
    try {
        const Driver& drv = driver();
        drv.check(drv.cuInit(0), "cuInit");
        int version = 0;
        drv.check(drv.cuDriverGetVersion(&version), "cuDriverGetVersion");
        return {true, "CUDA driver " + std::to_string(version / 1000) + "." +
                          std::to_string(version % 1000 / 10) + " (" + drv.path + ")"};
    } catch (const std::exception& e) {
        return {false, e.what()};
    }
}

void profiler_range(int ordinal, bool start) {
    const Driver& drv = driver();
    if (!drv.cuProfilerStart || !drv.cuProfilerStop || !drv.cuCtxSynchronize)
        throw CudaError("CUDA driver '" + drv.path + "' has no cuProfilerStart/cuProfilerStop/cuCtxSynchronize");
    drv.check(drv.cuInit(0), "cuInit");
    CUdevice dev = 0;
    CUcontext ctx = nullptr;
    drv.check(drv.cuDeviceGet(&dev, ordinal), "cuDeviceGet");
    drv.check(drv.cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
    CUresult err = drv.cuCtxPushCurrent(ctx);
    const char* call = "cuCtxPushCurrent";
    if (err == CUDA_SUCCESS) {
        if (!start) err = drv.cuCtxSynchronize(), call = "cuCtxSynchronize";
        if (err == CUDA_SUCCESS)
            err = start ? drv.cuProfilerStart() : drv.cuProfilerStop(),
            call = start ? "cuProfilerStart" : "cuProfilerStop";
        CUcontext popped;
        drv.cuCtxPopCurrent(&popped);
    }
    drv.cuDevicePrimaryCtxRelease(dev);
    drv.check(err, call);
}

}  // namespace llmprof::cuda

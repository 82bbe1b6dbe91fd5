/* A stand-in for the CUDA driver (libcuda.so.1) for llmprof's tests, built by tests/conftest.py:
 *     cc -shared -fPIC -O2 -o libfake_cuda.so fake_cuda.c
 * Variants (-D...): FAKE_NO_EVENT_ELAPSED omits cuEventElapsedTime; FAKE_NO_ERROR_STRINGS omits
 * cuGetErrorName/cuGetErrorString; FAKE_NO_PROC_ADDRESS_V2 omits cuGetProcAddress_v2 (the loader falls back
 * to the 4-argument cuGetProcAddress); FAKE_NO_PROC_ADDRESS omits both (the loader falls back to dlsym);
 * FAKE_NO_PROFILER omits cuProfilerStart/cuProfilerStop.
 *
 * Model: two devices (ordinals 0 and 1), each with one primary context, its own queue and its own clock; streams
 * are opaque handles (fake_set_stream_device ties one to a device). An event belongs to the device of the context
 * current when it was created. A recorded event completes at its record time + its device's queue delay
 * (fake_set_queue_delay_ns for both, fake_set_device_queue_delay_ns for one: work queued ahead of it, until a
 * cuStreamSynchronize drains that device's queue, as a real one does, or the delay is set again); its device
 * timestamp is that completion time on CLOCK_MONOTONIC plus a large offset (device 1's clock reads 3.7 s ahead
 * of device 0's), optionally skewed (fake_set_clock_skew_ppm), so the extension's host <-> device mapping, per
 * device, is really exercised. Recording an event on a stream of another device (a registered stream, or the
 * legacy stream 0 of the current context) and timing two events of different devices fail with
 * CUDA_ERROR_INVALID_HANDLE, as on a real driver. Entry points other than cuInit and the
 * version/error/lookup ones return CUDA_ERROR_NOT_INITIALIZED before a successful cuInit, and
 * cuEventCreate wants a context current, as the real driver does. Not thread-safe.
 * The fake_* functions are the tests' controls (through ctypes, which shares this instance's state). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUresult;
typedef int CUdevice;
typedef struct fake_ctx* CUcontext;
typedef struct fake_event* CUevent;
typedef struct fake_stream* CUstream;

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_NOT_READY = 600,
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    CUDA_ERROR_UNKNOWN = 999,
};

#define DEVICE_CLOCK_OFFSET_NS 1000000000000LL
#define DEVICE_1_CLOCK_AHEAD_NS 3700000000LL
#define N_DEVICES 2
#define N_STREAMS 16

struct fake_ctx {
    int device;
};
struct fake_event {
    int recorded, device;
    long long done_ns, device_ns;
};

/* One device's state: its queue, its clock and what was recorded on it. */
static struct fake_device {
    struct fake_ctx ctx;
    int refcount, records;
    long long queue_delay_ns, last_done_ns;
    int drained; /* a cuStreamSynchronize emptied the queue since the delay was set */
    uintptr_t last_record_stream;
} devices[N_DEVICES] = {{.ctx = {0}}, {.ctx = {1}}};

static struct {
    uintptr_t stream;
    int device;
} stream_devices[N_STREAMS]; /* registered streams (fake_set_stream_device) */
static int n_stream_devices;

static CUcontext ctx_stack[16];
static int ctx_depth, initialized, live_events, live_host_buffers;
static long long skew_epoch_ns;
static int elapsed_bits; /* > 0: cuEventElapsedTime keeps this many significant bits (float has 24) */
static double skew_ppm;
static uintptr_t last_record_stream;
static long long record_stall_ns; /* fake_set_record_stall: how long a stalled cuEventRecord waits on its way in */
static int record_stall_every, record_count;

static int valid_device(int dev) { return dev >= 0 && dev < N_DEVICES; }

/* The device a stream belongs to: registered, else the current context's (-1: none current). */
static int stream_device(CUstream stream) {
    for (int i = 0; i < n_stream_devices; i++)
        if (stream_devices[i].stream == (uintptr_t)stream) return stream_devices[i].device;
    return ctx_depth ? ctx_stack[ctx_depth - 1]->device : -1;
}

/* Every counted entry point, once: call counts and injected failures are indexed by F_<name>. */
#define FAKE_FUNCS(X)                                                                                   \
    X(cuInit) X(cuDriverGetVersion) X(cuDeviceGet) X(cuDevicePrimaryCtxRetain) X(cuDevicePrimaryCtxRelease) \
    X(cuCtxPushCurrent) X(cuCtxPopCurrent) X(cuEventCreate) X(cuEventDestroy) X(cuEventRecord)             \
    X(cuEventQuery) X(cuEventSynchronize) X(cuEventElapsedTime) X(cuStreamSynchronize) X(cuGetErrorName)   \
    X(cuGetErrorString) X(cuGetProcAddress) X(cuGetProcAddress_v2) X(cuMemHostAlloc) X(cuMemFreeHost)         \
    X(cuMemcpyDtoHAsync) X(cuCtxSynchronize) X(cuProfilerStart) X(cuProfilerStop)
#define AS_ENUM(f) F_##f,
#define AS_NAME(f) #f,
enum { FAKE_FUNCS(AS_ENUM) F_COUNT };
static const char* const fn_names[F_COUNT] = {FAKE_FUNCS(AS_NAME)};
static int calls[F_COUNT], fail_code[F_COUNT], fail_skip[F_COUNT];

static int fn_index(const char* name) {
    for (int i = 0; i < F_COUNT; i++)
        if (strcmp(fn_names[i], name) == 0) return i;
    return -1;
}

/* Counts a call; returns the injected failure once its skip count is used up, else CUDA_SUCCESS. */
static CUresult injected(int f) {
    calls[f]++;
    if (!fail_code[f]) return CUDA_SUCCESS;
    if (fail_skip[f] > 0) {
        fail_skip[f]--;
        return CUDA_SUCCESS;
    }
    return fail_code[f];
}
#define ENTER(f)                        \
    do {                                \
        CUresult rc_ = injected(F_##f); \
        if (rc_) return rc_;            \
    } while (0)
#define REQUIRE_INIT()                                       \
    do {                                                     \
        if (!initialized) return CUDA_ERROR_NOT_INITIALIZED; \
    } while (0)

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(long long t_ns) {
    struct timespec ts = {t_ns / 1000000000LL, t_ns % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

/* ---- driver API ---- */

CUresult cuInit(unsigned flags) {
    ENTER(cuInit);
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    initialized = 1;
    return CUDA_SUCCESS;
}

CUresult cuDriverGetVersion(int* version) {
    ENTER(cuDriverGetVersion);
    *version = 12040;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGet(CUdevice* dev, int ordinal) {
    ENTER(cuDeviceGet);
    REQUIRE_INIT();
    if (!valid_device(ordinal)) return CUDA_ERROR_INVALID_DEVICE;
    *dev = ordinal;
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice dev) {
    ENTER(cuDevicePrimaryCtxRetain);
    REQUIRE_INIT();
    if (!valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    devices[dev].refcount++;
    *ctx = &devices[dev].ctx;
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRelease(CUdevice dev) {
    ENTER(cuDevicePrimaryCtxRelease);
    REQUIRE_INIT();
    if (!valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    if (devices[dev].refcount == 0) return CUDA_ERROR_INVALID_CONTEXT;
    devices[dev].refcount--;
    return CUDA_SUCCESS;
}

CUresult cuCtxPushCurrent(CUcontext ctx) {
    ENTER(cuCtxPushCurrent);
    REQUIRE_INIT();
    if (!ctx || ctx != &devices[ctx->device].ctx || ctx_depth == (int)(sizeof ctx_stack / sizeof *ctx_stack))
        return CUDA_ERROR_INVALID_CONTEXT;
    ctx_stack[ctx_depth++] = ctx;
    return CUDA_SUCCESS;
}

CUresult cuCtxPopCurrent(CUcontext* ctx) {
    ENTER(cuCtxPopCurrent);
    REQUIRE_INIT();
    if (ctx_depth == 0) return CUDA_ERROR_INVALID_CONTEXT;
    *ctx = ctx_stack[--ctx_depth];
    return CUDA_SUCCESS;
}

CUresult cuEventCreate(CUevent* ev, unsigned flags) {
    ENTER(cuEventCreate);
    REQUIRE_INIT();
    if (ctx_depth == 0) return CUDA_ERROR_INVALID_CONTEXT;
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE; /* the fake only knows timing events */
    *ev = calloc(1, sizeof **ev);
    (*ev)->device = ctx_stack[ctx_depth - 1]->device;
    live_events++;
    return CUDA_SUCCESS;
}

CUresult cuEventDestroy(CUevent ev) {
    ENTER(cuEventDestroy);
    REQUIRE_INIT();
    if (!ev) return CUDA_ERROR_INVALID_HANDLE;
    free(ev);
    live_events--;
    return CUDA_SUCCESS;
}

CUresult cuEventRecord(CUevent ev, CUstream stream) {
    ENTER(cuEventRecord);
    REQUIRE_INIT();
    if (!ev) return CUDA_ERROR_INVALID_HANDLE;
    int on = stream_device(stream);
    if (on >= 0 && on != ev->device) return CUDA_ERROR_INVALID_HANDLE; /* a stream of another device */
    struct fake_device* d = &devices[ev->device];
    if (record_stall_every > 0 && ++record_count % record_stall_every == 0) sleep_until(now_ns() + record_stall_ns);
    long long done = now_ns() + (d->drained ? 0 : d->queue_delay_ns);
    ev->recorded = 1;
    ev->done_ns = done;
    ev->device_ns = DEVICE_CLOCK_OFFSET_NS + (ev->device ? DEVICE_1_CLOCK_AHEAD_NS : 0) + done +
                    (long long)((double)(done - skew_epoch_ns) * skew_ppm * 1e-6);
    if (done > d->last_done_ns) d->last_done_ns = done;
    d->records++;
    d->last_record_stream = last_record_stream = (uintptr_t)stream;
    return CUDA_SUCCESS;
}

CUresult cuEventQuery(CUevent ev) {
    ENTER(cuEventQuery);
    REQUIRE_INIT();
    if (!ev) return CUDA_ERROR_INVALID_HANDLE;
    return !ev->recorded || now_ns() >= ev->done_ns ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

CUresult cuEventSynchronize(CUevent ev) {
    ENTER(cuEventSynchronize);
    REQUIRE_INIT();
    if (!ev) return CUDA_ERROR_INVALID_HANDLE;
    if (ev->recorded) sleep_until(ev->done_ns);
    return CUDA_SUCCESS;
}

#ifndef FAKE_NO_EVENT_ELAPSED
CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
    ENTER(cuEventElapsedTime);
    REQUIRE_INIT();
    if (!start || !end || !start->recorded || !end->recorded || start->device != end->device)
        return CUDA_ERROR_INVALID_HANDLE;
    long long now = now_ns();
    if (now < start->done_ns || now < end->done_ns) return CUDA_ERROR_NOT_READY;
    *ms = (float)((double)(end->device_ns - start->device_ns) / 1e6);
    if (elapsed_bits > 0 && *ms != 0) { /* keep the top elapsed_bits bits of the magnitude */
        double magnitude = *ms < 0 ? -*ms : *ms, unit = 1;
        while (unit * 2 <= magnitude) unit *= 2;
        while (unit > magnitude) unit /= 2;
        double step = unit / (double)(1LL << (elapsed_bits - 1));
        *ms = (float)((long long)(*ms / step + (*ms < 0 ? -0.5 : 0.5)) * step);
    }
    return CUDA_SUCCESS;
}
#endif

/* Drains one device's queue (every device's when the stream's device is unknown). */
static void drain(int dev) {
    for (int i = 0; i < N_DEVICES; i++)
        if (dev < 0 || i == dev) {
            sleep_until(devices[i].last_done_ns);
            devices[i].drained = 1;
        }
}

CUresult cuStreamSynchronize(CUstream stream) {
    ENTER(cuStreamSynchronize);
    REQUIRE_INIT();
    drain(stream_device(stream));
    return CUDA_SUCCESS;
}

CUresult cuCtxSynchronize(void) {
    ENTER(cuCtxSynchronize);
    REQUIRE_INIT();
    if (!ctx_depth) return CUDA_ERROR_INVALID_CONTEXT;
    drain(ctx_stack[ctx_depth - 1]->device);
    return CUDA_SUCCESS;
}

/* The profiler range: each call's host time is kept (fake_profiler_stamp), in a context as the real one wants. */
static long long profiler_stamps[2];

#ifndef FAKE_NO_PROFILER
CUresult cuProfilerStart(void) {
    ENTER(cuProfilerStart);
    REQUIRE_INIT();
    if (!ctx_depth) return CUDA_ERROR_INVALID_CONTEXT;
    profiler_stamps[0] = now_ns();
    return CUDA_SUCCESS;
}

CUresult cuProfilerStop(void) {
    ENTER(cuProfilerStop);
    REQUIRE_INIT();
    if (!ctx_depth) return CUDA_ERROR_INVALID_CONTEXT;
    profiler_stamps[1] = now_ns();
    return CUDA_SUCCESS;
}
#endif

/* Pinned host memory is plain heap memory here; a device pointer is a host address (the tests copy from host
 * tensors), copied at once rather than in stream order. */
CUresult cuMemHostAlloc(void** host, size_t bytes, unsigned flags) {
    (void)flags;
    ENTER(cuMemHostAlloc);
    REQUIRE_INIT();
    if (!ctx_depth) return CUDA_ERROR_INVALID_CONTEXT;
    if (!(*host = malloc(bytes ? bytes : 1))) return CUDA_ERROR_OUT_OF_MEMORY;
    live_host_buffers++;
    return CUDA_SUCCESS;
}

CUresult cuMemFreeHost(void* host) {
    ENTER(cuMemFreeHost);
    REQUIRE_INIT();
    if (!host) return CUDA_ERROR_INVALID_VALUE;
    free(host);
    live_host_buffers--;
    return CUDA_SUCCESS;
}

static int last_copy_device = -1;

CUresult cuMemcpyDtoHAsync(void* dst, unsigned long long src, size_t bytes, CUstream stream) {
    ENTER(cuMemcpyDtoHAsync);
    REQUIRE_INIT();
    if (!dst || !src) return CUDA_ERROR_INVALID_VALUE;
    last_copy_device = stream_device(stream);
    memcpy(dst, (const void*)(uintptr_t)src, bytes);
    return CUDA_SUCCESS;
}

#ifndef FAKE_NO_ERROR_STRINGS
static const struct {
    CUresult code;
    const char *name, *text;
} errors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static CUresult error_info(CUresult code, const char** out, int text) {
    for (size_t i = 0; i < sizeof errors / sizeof *errors; i++)
        if (errors[i].code == code) {
            *out = text ? errors[i].text : errors[i].name;
            return CUDA_SUCCESS;
        }
    *out = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorName(CUresult code, const char** name) {
    ENTER(cuGetErrorName);
    return error_info(code, name, 0);
}

CUresult cuGetErrorString(CUresult code, const char** text) {
    ENTER(cuGetErrorString);
    return error_info(code, text, 1);
}
#endif

#ifndef FAKE_NO_PROC_ADDRESS
/* Looks the symbol up in this very library (not through a global dlsym, which could find another driver
 * loaded RTLD_GLOBAL in the process), so a variant's omitted entry points are not found either. */
static CUresult lookup(const char* symbol, void** pfn, int* status) {
    static void* self;
    Dl_info info;
    if (!self && dladdr(&self, &info)) self = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    *pfn = self && strncmp(symbol, "cu", 2) == 0 ? dlsym(self, symbol) : NULL;
    if (status) *status = *pfn ? 0 : 1; /* CU_GET_PROC_ADDRESS_SUCCESS / _SYMBOL_NOT_FOUND */
    return *pfn ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

CUresult cuGetProcAddress(const char* symbol, void** pfn, int cuda_version, uint64_t flags) {
    (void)cuda_version, (void)flags;
    ENTER(cuGetProcAddress);
    return lookup(symbol, pfn, NULL);
}

#ifndef FAKE_NO_PROC_ADDRESS_V2
CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int cuda_version, uint64_t flags, int* status) {
    (void)cuda_version, (void)flags;
    ENTER(cuGetProcAddress_v2);
    return lookup(symbol, pfn, status);
}
#endif
#endif

/* ---- test controls ---- */

/* A coarser float in cuEventElapsedTime: its precision loss far from the origin, as after hours, in seconds. */
void fake_set_elapsed_bits(int bits) { elapsed_bits = bits; }

/* One device's queue delay (-1: both devices). */
void fake_set_device_queue_delay_ns(int dev, long long ns) {
    for (int i = 0; i < N_DEVICES; i++)
        if (dev < 0 || i == dev) {
            devices[i].queue_delay_ns = ns;
            devices[i].drained = 0;
        }
}

void fake_set_queue_delay_ns(long long ns) { fake_set_device_queue_delay_ns(-1, ns); }

/* Every `every`-th cuEventRecord from now on (0: none) waits `ns` before the event enters the queue, as a thread
 * descheduled on its way into the driver: the host's stamp before the call then runs `ns` ahead of the event. */
void fake_set_record_stall(long long ns, int every) {
    record_stall_ns = ns;
    record_stall_every = every;
    record_count = 0;
}

/* Ties a stream handle to a device: an event of another device recorded on it fails. 0 if registered. */
int fake_set_stream_device(uintptr_t stream, int dev) {
    if (!valid_device(dev) || n_stream_devices == N_STREAMS) return -1;
    stream_devices[n_stream_devices].stream = stream;
    stream_devices[n_stream_devices++].device = dev;
    return 0;
}

/* Device clock runs fast (ppm > 0) or slow relative to the host clock, from now on. */
void fake_set_clock_skew_ppm(double ppm) {
    skew_ppm = ppm;
    skew_epoch_ns = now_ns();
}

/* The named entry point succeeds `skip` more times, then returns `code` until fake_reset(). -1: unknown. */
int fake_fail_after(const char* fn, int skip, int code) {
    int f = fn_index(fn);
    if (f < 0) return -1;
    fail_code[f] = code;
    fail_skip[f] = skip;
    return 0;
}

int fake_fail(const char* fn, int code) { return fake_fail_after(fn, 0, code); }

/* Clears injected failures, call counts, queue delays, record stalls, registered streams and skew; live objects are left
 * alone. */
void fake_reset(void) {
    memset(calls, 0, sizeof calls);
    memset(fail_code, 0, sizeof fail_code);
    memset(fail_skip, 0, sizeof fail_skip);
    fake_set_queue_delay_ns(0);
    for (int i = 0; i < N_DEVICES; i++) devices[i].records = 0;
    n_stream_devices = 0;
    elapsed_bits = 0;
    skew_ppm = 0;
    fake_set_record_stall(0, 0);
}

int fake_count(const char* fn) {
    int f = fn_index(fn);
    return f < 0 ? -1 : calls[f];
}

/* The host time (CLOCK_MONOTONIC ns) of the last cuProfilerStart (0) or cuProfilerStop (1). */
long long fake_profiler_stamp(int stop) { return profiler_stamps[stop != 0]; }

int fake_live_events(void) { return live_events; }
int fake_live_host_buffers(void) { return live_host_buffers; }
int fake_ctx_refcount(void) {
    int n = 0;
    for (int i = 0; i < N_DEVICES; i++) n += devices[i].refcount;
    return n;
}
int fake_device_ctx_refcount(int dev) { return valid_device(dev) ? devices[dev].refcount : -1; }
/* Events recorded on a device since fake_reset(), and the stream of its last one. */
int fake_device_records(int dev) { return valid_device(dev) ? devices[dev].records : -1; }
/* The device of the stream of the last cuMemcpyDtoHAsync (-1: unknown). */
int fake_last_copy_device(void) { return last_copy_device; }
uintptr_t fake_device_last_record_stream(int dev) { return valid_device(dev) ? devices[dev].last_record_stream : 0; }
int fake_ctx_depth(void) { return ctx_depth; }
uintptr_t fake_last_record_stream(void) { return last_record_stream; }

#include "timeline.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <limits>
#include <new>
#include <stdexcept>
#include <utility>

namespace llmprof {
namespace {

constexpr int kCalibrationTries = 5;
constexpr double kMinRateSpanNs = 1e6;  // two calibrations closer than 1 ms tell no drift
constexpr double kMaxDrift = 0.02;       // clocks drift by ppm: a 2% difference is no drift to correct

// Makes a context current for a scope (pop errors are ignored: a destructor must not throw).
class CtxScope {
 public:
    CtxScope(const cuda::Driver& drv, cuda::CUcontext ctx) : drv_(drv) {
        drv_.check(drv_.cuCtxPushCurrent(ctx), "cuCtxPushCurrent");
    }
    ~CtxScope() {
        cuda::CUcontext popped;
        drv_.cuCtxPopCurrent(&popped);
    }
    CtxScope(const CtxScope&) = delete;
    CtxScope& operator=(const CtxScope&) = delete;

 private:
    const cuda::Driver& drv_;
};

}  // namespace

Timeline::Timeline(std::int64_t capacity, int device) {
    if (capacity <= 0)
        throw std::invalid_argument("Timeline capacity must be > 0, got " + std::to_string(capacity));
    marks_.resize(std::size_t(capacity));
    if (device < 0) return;

    const cuda::Driver& drv = cuda::driver();
    drv.check(drv.cuInit(0), "cuInit");
    drv.check(drv.cuDriverGetVersion(&driver_version_), "cuDriverGetVersion");
    drv.check(drv.cuDeviceGet(&dev_, device), "cuDeviceGet");
    drv.check(drv.cuDevicePrimaryCtxRetain(&ctx_, dev_), "cuDevicePrimaryCtxRetain");
    drv_ = &drv;  // from here on, release() undoes what was acquired
    try {
        CtxScope scope(drv, ctx_);
        for (auto& ev : cal_) ev = create_event();
        anchor_ = create_event();
        events_.reserve(marks_.size());
        while (events_.size() < marks_.size()) events_.push_back(create_event());
    } catch (...) {
        release();
        throw;
    }
}

Timeline::~Timeline() {
    free_flags();
    release();
}

void Timeline::release() noexcept {
    if (!drv_) return;
    const bool pushed = drv_->cuCtxPushCurrent(ctx_) == cuda::CUDA_SUCCESS;
    for (cuda::CUevent ev : cal_)
        if (ev) drv_->cuEventDestroy(ev);
    if (anchor_) drv_->cuEventDestroy(anchor_);
    for (cuda::CUevent ev : events_) drv_->cuEventDestroy(ev);
    if (pushed) {
        cuda::CUcontext popped;
        drv_->cuCtxPopCurrent(&popped);
    }
    drv_->cuDevicePrimaryCtxRelease(dev_);
    drv_ = nullptr;
}

cuda::CUevent Timeline::create_event() const {
    cuda::CUevent ev = nullptr;
    drv_->check(drv_->cuEventCreate(&ev, 0), "cuEventCreate");  // flags 0: timing enabled
    return ev;
}

void Timeline::reserve(std::size_t n) {
    if (n <= marks_.size()) return;
    if (drv_) {
        CtxScope scope(*drv_, ctx_);
        events_.reserve(n);
        while (events_.size() < n) events_.push_back(create_event());
    }
    marks_.resize(n);
}

void Timeline::free_flags() noexcept {
    if (!flags_) return;
    if (drv_) {
        const bool pushed = drv_->cuCtxPushCurrent(ctx_) == cuda::CUDA_SUCCESS;
        drv_->cuMemFreeHost(flags_);
        if (pushed) {
            cuda::CUcontext popped;
            drv_->cuCtxPopCurrent(&popped);
        }
    } else {
        std::free(flags_);
    }
    flags_ = nullptr;
    flags_capacity_ = 0;
}

void Timeline::grow_flags(std::size_t bytes) {
    if (bytes <= flags_capacity_) return;
    free_flags();
    void* p = nullptr;
    if (drv_) {
        CtxScope scope(*drv_, ctx_);
        drv_->check(drv_->cuMemHostAlloc(&p, bytes, 0), "cuMemHostAlloc");  // pinned: async device copies
    } else if (!(p = std::malloc(bytes))) {
        throw std::bad_alloc();
    }
    flags_ = static_cast<std::uint8_t*>(p);
    flags_capacity_ = bytes;
}

void Timeline::begin_request(std::size_t max_steps, std::size_t flag_row_bytes) {
    clear();
    open_ = true;
    max_steps_ = 0;
    batch_ = flag_row_bytes;
    reserve_steps(max_steps, flag_row_bytes);
    anchor();  // before t0: recording it is not the request's time
    mark_host(kRequestStart, 0);
    if (step_observer) step_observer(kRequestStart, 0);
}

void Timeline::reserve_steps(std::size_t max_steps, std::size_t flag_row_bytes) {
    if (flag_rows_ > 0) return;
    max_steps_ = std::max(max_steps_, max_steps);
    tokens_.reserve(max_steps_ + 1);
    if (flag_row_bytes) grow_flags(max_steps_ * flag_row_bytes);
}

void Timeline::end_request() {
    const bool was_open = open_;
    if (open_) mark_host(kRequestEnd, step_);
    open_ = armed_ = in_forward_ = false;
    if (was_open && step_observer) step_observer(kRequestEnd, step_);
}

void Timeline::keep(std::uintptr_t src, std::size_t nbytes, bool on_device) {
    if (!armed_ || !flags_error_.empty()) return;
    auto at = [this] { return " (step " + std::to_string(step_) + ")"; };  // for errors only: no allocation
    if (step_ < 1 || std::size_t(step_) - 1 != flag_rows_) {
        flags_error_ = step_ < 1 || std::size_t(step_) - 1 > flag_rows_
                           ? "finished flags were not given at every step" + at()
                           : "finished flags were given twice in one step" + at();
        return;
    }
    if (flag_rows_ == 0) {
        if (nbytes == 0) {
            flags_error_ = "finished flags hold no flag";
            return;
        }
        flag_row_bytes_ = nbytes;
        grow_flags(std::max<std::size_t>(max_steps_, 1) * nbytes);  // once, where the guess was too small
    } else if (nbytes != flag_row_bytes_) {
        flags_error_ = "finished flags changed size from " + std::to_string(flag_row_bytes_) + " to " +
                       std::to_string(nbytes) + at();
        return;
    }
    if ((flag_rows_ + 1) * nbytes > flags_capacity_) {
        flags_error_ = "more steps than the " + std::to_string(max_steps_) + " reserved" + at();
        return;
    }
    std::uint8_t* dst = flags_ + flag_rows_ * nbytes;
    if (!on_device) {
        std::memcpy(dst, reinterpret_cast<const void*>(src), nbytes);
    } else if (!drv_) {
        flags_error_ = "finished flags on a GPU, but this timeline records host stamps only";
        return;
    } else {
        drv_->check(drv_->cuMemcpyDtoHAsync(dst, cuda::CUdeviceptr(src), nbytes, stream_), "cuMemcpyDtoHAsync");
    }
    ++flag_rows_;
}

void Timeline::calibrate() {
    if (!drv_) return;
    CtxScope scope(*drv_, ctx_);
    drv_->check(drv_->cuStreamSynchronize(stream_), "cuStreamSynchronize");
    // The current reference becomes the previous one; the other two events take turns as candidates.
    const int keep = ref_;
    int best = (keep + 1) % 3, scratch = (keep + 2) % 3;
    prev_ = -1;  // the old previous reference is about to be overwritten
    std::int64_t best_host = 0, best_uncertainty = std::numeric_limits<std::int64_t>::max();
    for (int i = 0; i < kCalibrationTries; ++i) {
        const std::int64_t h0 = host_now_ns();
        drv_->check(drv_->cuEventRecord(cal_[scratch], stream_), "cuEventRecord");
        drv_->check(drv_->cuEventSynchronize(cal_[scratch]), "cuEventSynchronize");
        const std::int64_t h1 = host_now_ns();
        // The event completed within [h0, h1]; keep the tightest bracket, stamped at its end.
        if (h1 - h0 < best_uncertainty) {
            best_uncertainty = h1 - h0;
            best_host = h1;
            std::swap(best, scratch);
        }
    }
    prev_ = keep;
    prev_host_ns_ = ref_host_ns_;
    ref_ = best;
    ref_host_ns_ = best_host;
    uncertainty_ns_ = best_uncertainty;
}

void Timeline::anchor() {
    if (!drv_) return;
    drv_->check(drv_->cuEventRecord(anchor_, stream_), "cuEventRecord");
    anchored_ = true;
}

namespace {

// Milliseconds from `from` to `to` (negative when `to` completed first), waiting for `to` if it was recorded
// on another stream than the last mark and is not complete yet.
double elapsed_ms(const cuda::Driver& drv, cuda::CUevent from, cuda::CUevent to) {
    float ms = 0;
    cuda::CUresult rc = drv.cuEventElapsedTime(&ms, from, to);
    if (rc == cuda::CUDA_ERROR_NOT_READY) {
        drv.check(drv.cuEventSynchronize(to), "cuEventSynchronize");
        rc = drv.cuEventElapsedTime(&ms, from, to);
    }
    drv.check(rc, "cuEventElapsedTime");
    return double(ms);
}

}  // namespace

Resolved Timeline::resolve() {
    Resolved out;
    out.backend = backend();
    out.dropped = dropped_;
    out.sync_uncertainty_ns = uncertainty_ns_;
    out.label.reserve(size_);
    out.step.reserve(size_);
    out.host_ns.reserve(size_);
    out.device_ns.reserve(size_);
    std::optional<CtxScope> scope;
    if (drv_) {
        if (ref_ < 0)
            throw std::runtime_error("Timeline.resolve(): call calibrate() first on the CUDA backend");
        scope.emplace(*drv_, ctx_);
        if (n_events_ > 0)
            drv_->check(drv_->cuEventSynchronize(events_[n_events_ - 1]), "cuEventSynchronize");
    }
    // Host ns per device ns, from the two last calibrations: 1 until there are two, or if they are too close.
    double rate = 1.0;
    if (drv_ && prev_ >= 0) {
        const double device_ns = elapsed_ms(*drv_, cal_[prev_], cal_[ref_]) * 1e6;
        const double host_ns = double(ref_host_ns_ - prev_host_ns_);
        if (device_ns > kMinRateSpanNs && host_ns > kMinRateSpanNs) rate = host_ns / device_ns;
        if (std::abs(rate - 1.0) > kMaxDrift) rate = 1.0;  // not a drift: a clock that jumped
    }
    // The anchor's host time, through the reference: events nearer the anchor are mapped from it.
    double anchor_host_ns = 0;
    if (drv_ && anchored_)
        anchor_host_ns = double(ref_host_ns_) + rate * elapsed_ms(*drv_, cal_[ref_], anchor_) * 1e6;
    for (std::size_t i = 0; i < size_; ++i) {
        const Mark& m = marks_[i];
        out.label.push_back(m.label);
        out.step.push_back(m.step);
        out.host_ns.push_back(m.host_ns);
        if (m.event < 0) {
            out.device_ns.emplace_back();
            continue;
        }
        const cuda::CUevent ev = events_[std::size_t(m.event)];
        // ms is a float: resolution ~0.5 us near its origin, coarser far from it (~4 us at 60 s): map each
        // event from the nearer of the reference and the anchor.
        const double from_ref = elapsed_ms(*drv_, cal_[ref_], ev) * 1e6;
        double host = double(ref_host_ns_) + rate * from_ref;
        if (anchored_) {
            const double from_anchor = elapsed_ms(*drv_, anchor_, ev) * 1e6;
            if (std::abs(from_anchor) < std::abs(from_ref)) host = anchor_host_ns + rate * from_anchor;
        }
        out.device_ns.emplace_back(std::llround(host));
    }
    return out;
}

std::optional<std::int64_t> Timeline::drift_ns() const {
    if (!drv_ || prev_ < 0) return std::nullopt;
    CtxScope scope(*drv_, ctx_);
    float ms = 0;
    drv_->check(drv_->cuEventElapsedTime(&ms, cal_[prev_], cal_[ref_]), "cuEventElapsedTime");
    return (ref_host_ns_ - prev_host_ns_) - std::llround(double(ms) * 1e6);
}

}  // namespace llmprof

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

Timeline::Timeline(std::int64_t capacity, int device)
    : Timeline(capacity, device < 0 ? std::vector<int>{} : std::vector<int>{device}) {}

Timeline::Timeline(std::int64_t capacity, const std::vector<int>& devices) {
    if (capacity <= 0)
        throw std::invalid_argument("Timeline capacity must be > 0, got " + std::to_string(capacity));
    for (std::size_t i = 0; i < devices.size(); ++i)
        if (devices[i] < 0 || std::find(devices.begin(), devices.begin() + i, devices[i]) != devices.begin() + i)
            throw std::invalid_argument("Timeline devices must be distinct ordinals >= 0");
    marks_.resize(std::size_t(capacity));
    if (!devices.empty()) init_lanes(devices);
}

void Timeline::init_lanes(const std::vector<int>& devices) {
    const cuda::Driver& drv = cuda::driver();
    drv.check(drv.cuInit(0), "cuInit");
    drv.check(drv.cuDriverGetVersion(&driver_version_), "cuDriverGetVersion");
    drv_ = &drv;  // from here on, release() undoes what was acquired
    try {
        lanes_.reserve(devices.size());
        for (int ordinal : devices) {
            Lane lane;
            drv.check(drv.cuDeviceGet(&lane.dev, ordinal), "cuDeviceGet");
            drv.check(drv.cuDevicePrimaryCtxRetain(&lane.ctx, lane.dev), "cuDevicePrimaryCtxRetain");
            lanes_.push_back(std::move(lane));
            Lane& added = lanes_.back();
            CtxScope scope(drv, added.ctx);
            for (auto& ev : added.cal) ev = create_event();
            added.anchor = create_event();
            added.events.reserve(marks_.size());
            while (added.events.size() < marks_.size()) added.events.push_back(create_event());
        }
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
    for (Lane& lane : lanes_) {
        const bool pushed = drv_->cuCtxPushCurrent(lane.ctx) == cuda::CUDA_SUCCESS;
        for (cuda::CUevent ev : lane.cal)
            if (ev) drv_->cuEventDestroy(ev);
        if (lane.anchor) drv_->cuEventDestroy(lane.anchor);
        for (cuda::CUevent ev : lane.events) drv_->cuEventDestroy(ev);
        if (pushed) {
            cuda::CUcontext popped;
            drv_->cuCtxPopCurrent(&popped);
        }
        drv_->cuDevicePrimaryCtxRelease(lane.dev);
    }
    lanes_.clear();
    drv_ = nullptr;
}

cuda::CUevent Timeline::create_event() const {
    cuda::CUevent ev = nullptr;
    drv_->check(drv_->cuEventCreate(&ev, 0), "cuEventCreate");  // flags 0: timing enabled
    return ev;
}

std::vector<int> Timeline::devices() const {
    std::vector<int> out;
    for (const Lane& lane : lanes_) out.push_back(lane.dev);
    return out;
}

void Timeline::set_streams(const std::vector<std::uintptr_t>& handles) {
    if (handles.size() != lanes_.size())
        throw std::invalid_argument("set_streams(): " + std::to_string(handles.size()) + " streams for " +
                                    std::to_string(lanes_.size()) + " lanes");
    for (std::size_t i = 0; i < handles.size(); ++i) lanes_[i].stream = reinterpret_cast<cuda::CUstream>(handles[i]);
}

void Timeline::record_lanes(Mark& m) {
    const std::size_t n = opens_span(m.label) ? 1 : lanes_.size();
    for (std::size_t i = 0; i < n; ++i) {
        Lane& lane = lanes_[i];
        drv_->check(drv_->cuCtxPushCurrent(lane.ctx), "cuCtxPushCurrent");
        const cuda::CUresult rc = drv_->cuEventRecord(lane.events[n_events_], lane.stream);
        cuda::CUcontext popped;
        drv_->cuCtxPopCurrent(&popped);
        drv_->check(rc, "cuEventRecord");
        lane.recorded = n_events_ + 1;
    }
    m.lanes = std::int64_t(n);
}

void Timeline::reserve(std::size_t n) {
    if (n <= marks_.size()) return;
    for (Lane& lane : lanes_) {
        CtxScope scope(*drv_, lane.ctx);
        lane.events.reserve(n);
        while (lane.events.size() < n) lane.events.push_back(create_event());
    }
    marks_.resize(n);
}

void Timeline::free_flags() noexcept {
    if (!flags_) return;
    if (drv_) {
        const bool pushed = drv_->cuCtxPushCurrent(lanes_[0].ctx) == cuda::CUDA_SUCCESS;
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
        constexpr unsigned kPortable = 0x01;  // CU_MEMHOSTALLOC_PORTABLE: pinned for every lane's context
        CtxScope scope(*drv_, lanes_[0].ctx);
        drv_->check(drv_->cuMemHostAlloc(&p, bytes, kPortable), "cuMemHostAlloc");  // pinned: async copies
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

void Timeline::keep(std::uintptr_t src, std::size_t nbytes, bool on_device, int device) {
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
    } else if (lanes_.size() == 1) {
        drv_->check(drv_->cuMemcpyDtoHAsync(dst, cuda::CUdeviceptr(src), nbytes, lanes_[0].stream),
                    "cuMemcpyDtoHAsync");
    } else {
        auto lane = std::find_if(lanes_.begin(), lanes_.end(), [&](const Lane& l) { return l.dev == device; });
        if (lane == lanes_.end()) {
            flags_error_ = "finished flags on cuda:" + std::to_string(device) + ", a device this timeline does not record";
            return;
        }
        CtxScope scope(*drv_, lane->ctx);
        drv_->check(drv_->cuMemcpyDtoHAsync(dst, cuda::CUdeviceptr(src), nbytes, lane->stream),
                    "cuMemcpyDtoHAsync");
    }
    ++flag_rows_;
}

void Timeline::calibrate() {
    for (Lane& lane : lanes_) calibrate_lane(lane);
}

void Timeline::calibrate_lane(Lane& lane) {
    CtxScope scope(*drv_, lane.ctx);
    drv_->check(drv_->cuStreamSynchronize(lane.stream), "cuStreamSynchronize");
    // The current reference becomes the previous one; the other two events take turns as candidates.
    const int keep = lane.ref;
    int best = (keep + 1) % 3, scratch = (keep + 2) % 3;
    lane.prev = -1;  // the old previous reference is about to be overwritten
    std::int64_t best_host = 0, best_uncertainty = std::numeric_limits<std::int64_t>::max();
    for (int i = 0; i < kCalibrationTries; ++i) {
        const std::int64_t h0 = host_now_ns();
        drv_->check(drv_->cuEventRecord(lane.cal[scratch], lane.stream), "cuEventRecord");
        drv_->check(drv_->cuEventSynchronize(lane.cal[scratch]), "cuEventSynchronize");
        const std::int64_t h1 = host_now_ns();
        // The event completed within [h0, h1]; keep the tightest bracket, stamped at its end.
        if (h1 - h0 < best_uncertainty) {
            best_uncertainty = h1 - h0;
            best_host = h1;
            std::swap(best, scratch);
        }
    }
    lane.prev = keep;
    lane.prev_host_ns = lane.ref_host_ns;
    lane.ref = best;
    lane.ref_host_ns = best_host;
    lane.uncertainty_ns = best_uncertainty;
}

void Timeline::anchor() {
    if (!drv_) return;
    if (lanes_.size() == 1) {
        drv_->check(drv_->cuEventRecord(lanes_[0].anchor, lanes_[0].stream), "cuEventRecord");
    } else {
        for (Lane& lane : lanes_) {
            CtxScope scope(*drv_, lane.ctx);
            drv_->check(drv_->cuEventRecord(lane.anchor, lane.stream), "cuEventRecord");
        }
    }
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
    out.label.reserve(size_);
    out.step.reserve(size_);
    out.host_ns.reserve(size_);
    out.lanes.reserve(size_);
    for (std::size_t i = 0; i < size_; ++i) {
        const Mark& m = marks_[i];
        out.label.push_back(m.label);
        out.step.push_back(m.step);
        out.host_ns.push_back(m.host_ns);
        out.lanes.push_back(m.lanes);
    }
    out.device_ns.assign(size_, std::nullopt);
    const std::size_t n_lanes = lanes_.size();
    if (n_lanes > 1) out.lane_ns.assign(size_ * n_lanes, 0);
    for (std::size_t l = 0; l < n_lanes; ++l) {
        const Lane& lane = lanes_[l];
        if (lane.ref < 0)
            throw std::runtime_error("Timeline.resolve(): call calibrate() first on the CUDA backend");
        out.sync_uncertainty_ns = std::max(out.sync_uncertainty_ns, lane.uncertainty_ns);
        CtxScope scope(*drv_, lane.ctx);
        if (lane.recorded > 0)
            drv_->check(drv_->cuEventSynchronize(lane.events[lane.recorded - 1]), "cuEventSynchronize");
        // Host ns per device ns, from the two last calibrations: 1 until there are two, or if they are too close.
        double rate = 1.0;
        if (lane.prev >= 0) {
            const double device_ns = elapsed_ms(*drv_, lane.cal[lane.prev], lane.cal[lane.ref]) * 1e6;
            const double host_ns = double(lane.ref_host_ns - lane.prev_host_ns);
            if (device_ns > kMinRateSpanNs && host_ns > kMinRateSpanNs) rate = host_ns / device_ns;
            if (std::abs(rate - 1.0) > kMaxDrift) rate = 1.0;  // not a drift: a clock that jumped
        }
        const cuda::CUevent ref = lane.cal[lane.ref];
        // The anchor's host time, through the reference: events nearer the anchor are mapped from it.
        const double anchor_host_ns =
            anchored_ ? double(lane.ref_host_ns) + rate * elapsed_ms(*drv_, ref, lane.anchor) * 1e6 : 0;
        for (std::size_t i = 0; i < size_; ++i) {
            const Mark& m = marks_[i];
            if (m.event < 0 || std::size_t(m.lanes) <= l) continue;
            const cuda::CUevent ev = lane.events[std::size_t(m.event)];
            // ms is a float: resolution ~0.5 us near its origin, coarser far from it (~4 us at 60 s): map each
            // event from the nearer of the reference and the anchor.
            const double from_ref = elapsed_ms(*drv_, ref, ev) * 1e6;
            double host = double(lane.ref_host_ns) + rate * from_ref;
            if (anchored_) {
                const double from_anchor = elapsed_ms(*drv_, lane.anchor, ev) * 1e6;
                if (std::abs(from_anchor) < std::abs(from_ref)) host = anchor_host_ns + rate * from_anchor;
            }
            const std::int64_t t = std::llround(host);
            if (n_lanes > 1) out.lane_ns[i * n_lanes + l] = t;
            if (!out.device_ns[i] || t > *out.device_ns[i]) out.device_ns[i] = t;  // the latest lane
        }
    }
    return out;
}

std::optional<std::int64_t> Timeline::drift_ns() const {
    if (!drv_ || lanes_[0].prev < 0) return std::nullopt;
    const Lane& lane = lanes_[0];
    CtxScope scope(*drv_, lane.ctx);
    float ms = 0;
    drv_->check(drv_->cuEventElapsedTime(&ms, lane.cal[lane.prev], lane.cal[lane.ref]), "cuEventElapsedTime");
    return (lane.ref_host_ns - lane.prev_host_ns) - std::llround(double(ms) * 1e6);
}

}  // namespace llmprof

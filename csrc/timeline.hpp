#pragma once
// A preallocated timeline of marks (label, step, host_ns, device event). Host backend: host stamps only.
// CUDA backend: each mark also records the next event of a pool on the current stream; resolve() maps the
// events' device times onto the host clock through the last reference event (calibrate()), or through the
// request's anchor (anchor()) when an event is nearer to it, scaled by the device clock's rate against the
// host clock between the last two calibrations (drift).
// Not thread-safe: use a Timeline from one thread (the binding releases the GIL in calibrate/resolve).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "clock.hpp"
#include "cuda_driver.hpp"

namespace llmprof {

struct Mark {
    std::int64_t label;
    std::int64_t step;
    std::int64_t host_ns;
    std::int64_t event;  // index into the event pool, -1 for a host-only mark
};

struct Resolved {
    std::vector<std::int64_t> label, step, host_ns;
    std::vector<std::optional<std::int64_t>> device_ns;  // nullopt for host-only marks
    std::int64_t sync_uncertainty_ns = 0;
    std::string backend;
    std::uint64_t dropped = 0;
};

class Timeline {
 public:
    // device < 0: host backend; else the CUDA backend on that device ordinal, in its primary context.
    explicit Timeline(std::int64_t capacity, int device);
    ~Timeline();
    Timeline(const Timeline&) = delete;
    Timeline& operator=(const Timeline&) = delete;

    const char* backend() const { return drv_ ? "cuda" : "host"; }
    std::size_t capacity() const { return marks_.size(); }
    std::size_t size() const { return size_; }
    std::uint64_t dropped() const { return dropped_; }
    std::optional<int> driver_version() const {
        return drv_ ? std::optional<int>(driver_version_) : std::nullopt;
    }

    void reserve(std::size_t n);  // grows marks and the event pool; not for the hot path
    void set_stream(std::uintptr_t handle) { stream_ = reinterpret_cast<cuda::CUstream>(handle); }

    // Hot path: no allocation, no lock. With a stream handle of 0 (the legacy default stream) the calling
    // thread must have this device's primary context current, as torch leaves it on the thread using it.
    void mark(std::int64_t label, std::int64_t step) {
        Mark* m = next(label, step);
        if (!m) return;
        if (drv_) {
            drv_->check(drv_->cuEventRecord(events_[n_events_], stream_), "cuEventRecord");
            m->event = std::int64_t(n_events_++);
        }
        ++size_;
    }
    void mark_host(std::int64_t label, std::int64_t step) {
        if (next(label, step)) ++size_;
    }

    void clear() {
        size_ = n_events_ = 0;
        dropped_ = 0;
        anchored_ = false;
    }
    // Records the anchor event on the current stream (no sync): the start of a request, so that its early
    // events are mapped through a nearby event rather than a far reference (float ms lose precision).
    void anchor();
    void calibrate();
    Resolved resolve();
    std::optional<std::int64_t> drift_ns() const;

 private:
    // Fills the next free slot (host stamp, no event) without committing it; if full, counts a drop: nullptr.
    Mark* next(std::int64_t label, std::int64_t step) {
        if (size_ == marks_.size()) {
            ++dropped_;
            return nullptr;
        }
        Mark* m = &marks_[size_];
        *m = Mark{label, step, host_now_ns(), -1};
        return m;
    }
    cuda::CUevent create_event() const;
    void release() noexcept;

    std::vector<Mark> marks_;
    std::size_t size_ = 0;
    std::uint64_t dropped_ = 0;

    // CUDA backend only (drv_ == nullptr on the host backend).
    const cuda::Driver* drv_ = nullptr;
    cuda::CUdevice dev_ = 0;
    cuda::CUcontext ctx_ = nullptr;
    cuda::CUstream stream_ = nullptr;
    int driver_version_ = 0;
    std::vector<cuda::CUevent> events_;  // the pool: at least capacity() events, used in order
    std::size_t n_events_ = 0;           // pool events recorded since clear()

    // Calibration: three events rotate so that the previous reference survives a new calibrate() (drift).
    std::array<cuda::CUevent, 3> cal_{};
    cuda::CUevent anchor_ = nullptr;
    bool anchored_ = false;  // anchor_ recorded since clear()
    int ref_ = -1, prev_ = -1;  // indices into cal_, -1 = none
    std::int64_t ref_host_ns_ = 0, prev_host_ns_ = 0, uncertainty_ns_ = 0;
};

}  // namespace llmprof

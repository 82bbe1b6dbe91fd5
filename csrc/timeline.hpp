#pragma once
// A preallocated timeline of marks (label, step, host_ns, device event). Host backend: host stamps only.
// CUDA backend: each mark also records the next event of a pool on the current stream; resolve() maps the
// events' device times onto the host clock through the last reference event (calibrate()), or through the
// request's anchor (anchor()) when an event is nearer to it, scaled by the device clock's rate against the
// host clock between the last two calibrations (drift).
// Several devices (a device_map model in one process): one lane per device, each with its own context,
// stream, event pool, anchor and calibration. A mark that opens a span (a forward, vision, encoder or draft
// begin) records on the first lane (where the work starts); any other mark on every lane, and its device time
// is the latest of them (the step is done when every device has done its part); resolve() maps each lane
// through its own reference and also gives every lane's time.
// It also keeps the state of the request being recorded, which the per-step calls read (armed, the step
// counter, an open forward), and each step's per-sequence finished flags, copied without a sync into one
// preallocated buffer (pinned host memory on the CUDA backend) and read once after the request.
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
    std::int64_t event;  // index into the lanes' event pools, -1 for a host-only mark
    std::int64_t lanes;  // the event was recorded on this many lanes, from the first
};

struct Resolved {
    std::vector<std::int64_t> label, step, host_ns;
    std::vector<std::optional<std::int64_t>> device_ns;  // nullopt for host-only marks
    std::vector<std::int64_t> lanes;    // per mark, the lanes its event was recorded on (0: host-only)
    std::vector<std::int64_t> lane_ns;  // with several lanes: marks x lanes, row-major (0 where not recorded)
    std::int64_t sync_uncertainty_ns = 0;
    std::string backend;
    std::uint64_t dropped = 0;
};

// Mark labels the timeline itself stamps, and those that open a span (the Python side's Label enum holds
// them all, with the same values).
enum Label : std::int64_t {
    kRequestStart = 0,
    kRequestEnd = 1,
    kForwardBegin = 2,
    kForwardEnd = 3,
    kToken = 4,
    kVisionBegin = 5,
    kEncoderBegin = 7,
    kDraftBegin = 9,
};
constexpr bool opens_span(std::int64_t label) {
    return label == kForwardBegin || label == kVisionBegin || label == kEncoderBegin || label == kDraftBegin;
}

// One device of the CUDA backend: its primary context, the stream its events go on, its event pool (at least
// the timeline's capacity, indexed as the marks' events), its anchor and its calibration.
struct Lane {
    cuda::CUdevice dev = 0;
    cuda::CUcontext ctx = nullptr;
    cuda::CUstream stream = nullptr;
    std::vector<cuda::CUevent> events;
    std::size_t recorded = 0;  // pool events recorded on this lane since clear() (the last one + 1)
    // Calibration: three events rotate so that the previous reference survives a new calibrate() (drift).
    std::array<cuda::CUevent, 3> cal{};
    cuda::CUevent anchor = nullptr;
    int ref = -1, prev = -1;  // indices into cal, -1 = none
    std::int64_t ref_host_ns = 0, prev_host_ns = 0, uncertainty_ns = 0;
};

// Called right after each mark where a step opens or closes (REQUEST_START, an armed FORWARD_BEGIN or TOKEN,
// REQUEST_END) with its label and step, while set: one call's NVTX ranges and profiler range. Unset, it
// costs a step one test. Process-wide; set and read with the GIL held.
using StepObserver = void (*)(std::int64_t label, std::int64_t step);
inline StepObserver step_observer = nullptr;

class Timeline {
 public:
    // device < 0: host backend; else the CUDA backend on that device ordinal, in its primary context.
    explicit Timeline(std::int64_t capacity, int device);
    // The CUDA backend on these device ordinals, one lane each, the first where a forward starts (none: host).
    Timeline(std::int64_t capacity, const std::vector<int>& devices);
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

    std::vector<int> devices() const;  // the lanes' device ordinals (none on the host backend)
    std::size_t lanes() const { return lanes_.size(); }

    void reserve(std::size_t n);  // grows marks and the event pools; not for the hot path
    // The first lane's stream; set_streams() sets every lane's (one handle per lane).
    void set_stream(std::uintptr_t handle) {
        if (!lanes_.empty()) lanes_[0].stream = reinterpret_cast<cuda::CUstream>(handle);
    }
    void set_streams(const std::vector<std::uintptr_t>& handles);

    // Hot path: no allocation, no lock. With one lane and a stream handle of 0 (the legacy default stream) the
    // calling thread must have this device's primary context current, as torch leaves it on the thread using
    // it; with several, each lane's context is made current around its record.
    void mark(std::int64_t label, std::int64_t step) {
        Mark* m = next(label, step);
        if (!m) return;
        if (drv_) {
            if (lanes_.size() == 1) {
                Lane& lane = lanes_[0];
                drv_->check(drv_->cuEventRecord(lane.events[n_events_], lane.stream), "cuEventRecord");
                lane.recorded = n_events_ + 1;
                m->lanes = 1;
            } else {
                record_lanes(*m);
            }
            m->event = std::int64_t(n_events_++);
        }
        // Stamped after the record: an event on an idle queue then runs no later than its stamp, however long the
        // thread was descheduled before the record (the host-bound verdict compares the two).
        m->host_ns = host_now_ns();
        ++size_;
    }
    void mark_host(std::int64_t label, std::int64_t step) {
        if (Mark* m = next(label, step)) {
            m->host_ns = host_now_ns();
            ++size_;
        }
    }

    void clear() {
        size_ = n_events_ = 0;
        for (Lane& lane : lanes_) lane.recorded = 0;
        dropped_ = 0;
        anchored_ = false;
        open_ = armed_ = in_forward_ = false;
        step_ = 0;
        tokens_.clear();
        flag_rows_ = flag_row_bytes_ = 0;
        flags_error_.clear();
    }

    // -- the request being recorded: its state lives here so that the per-step calls are one call each --
    // Starts a request (clears the marks, anchors, stamps REQUEST_START), with room for max_steps steps of
    // flag_row_bytes flags each (grown on the first flags if they are larger; not for the hot path).
    void begin_request(std::size_t max_steps, std::size_t flag_row_bytes);
    // More room before the first flags of the open request (a no-op once flags were kept).
    void reserve_steps(std::size_t max_steps, std::size_t flag_row_bytes);
    // Stamps REQUEST_END and stops recording (the marks stay until the next begin_request()/clear()).
    void end_request();
    bool open() const { return open_; }
    bool armed() const { return armed_; }
    void arm(bool on) { armed_ = on && open_; }
    bool in_forward() const { return in_forward_; }
    std::int64_t step() const { return step_; }
    std::size_t batch() const { return batch_; }  // the flag_row_bytes given to begin_request() (0: any)

    // Hot path, each a no-op unless armed: a forward span of the current step, and step k's token(s).
    void forward_begin() {
        in_forward_ = true;
        if (!armed_) return;
        mark(kForwardBegin, step_);
        if (step_observer) step_observer(kForwardBegin, step_);
    }
    void forward_end() {
        in_forward_ = false;
        if (armed_) mark(kForwardEnd, step_);
    }
    void forward_abort() { in_forward_ = false; }  // the forward raised: no end mark
    void token(std::int64_t tokens = 1) {
        if (!armed_) return;
        mark(kToken, ++step_);
        if (tokens_.size() < tokens_.capacity()) tokens_.push_back(std::int32_t(tokens));
        if (step_observer) step_observer(kToken, step_);
    }
    // Step `step()`'s per-sequence flags (one byte each): copied from host memory, or from device memory
    // without a sync on the stream of the lane of `device` (the ordinal; with one lane, that lane's stream).
    // No-op unless armed; problems are kept for flags_error().
    void keep(std::uintptr_t src, std::size_t nbytes, bool on_device, int device = -1);

    // After the request: the tokens each step appended, the flags kept (rows x row bytes, row-major; complete
    // once resolve() has waited for the events), and why the flags cannot be used ("" when they can).
    const std::vector<std::int32_t>& step_tokens() const { return tokens_; }
    std::size_t flag_rows() const { return flag_rows_; }
    std::size_t flag_row_bytes() const { return flag_row_bytes_; }
    const std::uint8_t* flags() const { return flags_; }
    const std::string& flags_error() const { return flags_error_; }
    // Records the anchor event on the current stream (no sync): the start of a request, so that its early
    // events are mapped through a nearby event rather than a far reference (float ms lose precision).
    void anchor();
    void calibrate();
    Resolved resolve();
    std::optional<std::int64_t> drift_ns() const;

 private:
    // Fills the next free slot (no stamp, no event) without committing it; if full, counts a drop: nullptr.
    Mark* next(std::int64_t label, std::int64_t step) {
        if (size_ == marks_.size()) {
            ++dropped_;
            return nullptr;
        }
        Mark* m = &marks_[size_];
        *m = Mark{label, step, 0, -1, 0};
        return m;
    }
    void record_lanes(Mark& m);  // the event of pool slot n_events_ on each lane the mark goes on
    void init_lanes(const std::vector<int>& devices);
    void calibrate_lane(Lane& lane);
    cuda::CUevent create_event() const;
    void release() noexcept;
    void grow_flags(std::size_t bytes);  // flags_ holds at least `bytes` (contents not kept)
    void free_flags() noexcept;

    std::vector<Mark> marks_;
    std::size_t size_ = 0;
    std::uint64_t dropped_ = 0;

    // The request being recorded.
    bool open_ = false, armed_ = false, in_forward_ = false;
    std::int64_t step_ = 0;
    std::vector<std::int32_t> tokens_;  // tokens per step, reserved in begin_request()
    std::size_t max_steps_ = 0, batch_ = 0;
    std::uint8_t* flags_ = nullptr;  // flags buffer: pinned on the CUDA backend, malloc'ed on the host one
    std::size_t flags_capacity_ = 0;  // bytes
    std::size_t flag_rows_ = 0, flag_row_bytes_ = 0;  // rows kept in this request, bytes per row
    std::string flags_error_;

    // CUDA backend only (drv_ == nullptr and no lanes on the host backend).
    const cuda::Driver* drv_ = nullptr;
    int driver_version_ = 0;
    std::vector<Lane> lanes_;
    std::size_t n_events_ = 0;  // pool slots used since clear()
    bool anchored_ = false;     // the lanes' anchors recorded since clear()
};

}  // namespace llmprof

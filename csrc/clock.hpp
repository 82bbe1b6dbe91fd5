#pragma once
// The one host clock of llmprof: CLOCK_MONOTONIC in ns, the clock behind time.monotonic_ns() and
// time.perf_counter_ns() on Linux, so stamps taken here and in Python compare directly.
#include <cstdint>
#include <ctime>

namespace llmprof {

inline std::int64_t host_now_ns() noexcept {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

}  // namespace llmprof

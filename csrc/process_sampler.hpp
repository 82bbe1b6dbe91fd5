#pragma once
// The process's CPU time and resident memory, sampled by a native thread at a fixed interval: the thread never
// takes Python's GIL, so its wake-ups do not delay the profiled loop's Python code. Samples are stamped on the
// timeline's host clock (CLOCK_MONOTONIC) and kept until read.
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace llmprof {

struct ProcessSample {
    std::int64_t t_ns;       // host clock
    std::int64_t cpu_ns;     // CPU time of the process so far (user + system, all threads)
    std::int64_t rss_bytes;  // resident set size; -1 when /proc cannot be read
};

class ProcessSampler {
 public:
    explicit ProcessSampler(std::int64_t interval_ns);
    ~ProcessSampler();
    ProcessSampler(const ProcessSampler&) = delete;
    ProcessSampler& operator=(const ProcessSampler&) = delete;

    void start();  // a first sample now, then one every interval (idempotent)
    void stop();   // joins the thread, then a last sample (idempotent)
    bool running() const { return thread_.joinable(); }
    std::int64_t interval_ns() const { return interval_ns_; }
    ProcessSample probe() const;                  // one sample, now, from the calling thread
    std::vector<ProcessSample> take();            // the samples kept since the last take()

 private:
    void loop();
    void keep(const ProcessSample& s);

    std::int64_t interval_ns_;
    int statm_fd_ = -1;
    std::thread thread_;
    mutable std::mutex mu_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::vector<ProcessSample> samples_;
};

}  // namespace llmprof

#include "process_sampler.hpp"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "clock.hpp"

namespace llmprof {

ProcessSampler::ProcessSampler(std::int64_t interval_ns) : interval_ns_(interval_ns) {
    if (interval_ns <= 0)
        throw std::invalid_argument("ProcessSampler interval must be > 0 ns, got " + std::to_string(interval_ns));
    statm_fd_ = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);  // -1 off Linux: rss_bytes -1
}

ProcessSampler::~ProcessSampler() {
    stop();
    if (statm_fd_ >= 0) ::close(statm_fd_);
}

ProcessSample ProcessSampler::probe() const {
    ProcessSample s{host_now_ns(), 0, -1};
    timespec cpu{};
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu) == 0) s.cpu_ns = std::int64_t(cpu.tv_sec) * 1000000000 + cpu.tv_nsec;
    char buf[128];
    const ssize_t n = statm_fd_ >= 0 ? ::pread(statm_fd_, buf, sizeof buf - 1, 0) : -1;
    if (n > 0) {
        buf[n] = '\0';
        char* end = nullptr;
        std::strtoll(buf, &end, 10);                         // size
        const long long resident = std::strtoll(end, &end, 10);  // resident pages
        s.rss_bytes = resident * std::int64_t(::sysconf(_SC_PAGESIZE));
    }
    return s;
}

void ProcessSampler::keep(const ProcessSample& s) {
    std::lock_guard<std::mutex> lock(mu_);
    samples_.push_back(s);
}

void ProcessSampler::start() {
    if (running()) return;
    stopping_ = false;
    keep(probe());
    thread_ = std::thread([this] { loop(); });
}

void ProcessSampler::stop() {
    if (!running()) return;
    {
        std::lock_guard<std::mutex> lock(mu_);
        stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
    keep(probe());
}

void ProcessSampler::loop() {
    auto next = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
        next += std::chrono::nanoseconds(interval_ns_);
        if (wake_.wait_until(lock, next, [this] { return stopping_; })) return;
        lock.unlock();
        const ProcessSample s = probe();
        lock.lock();
        samples_.push_back(s);
    }
}

std::vector<ProcessSample> ProcessSampler::take() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<ProcessSample> out;
    out.swap(samples_);
    return out;
}

}  // namespace llmprof

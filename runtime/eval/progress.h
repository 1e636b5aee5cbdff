// Progress lines on stderr for long evaluation runs: at most one every few seconds, plus the
// last, so short runs (tests) stay quiet and long ones show they are alive.
#ifndef CHAI_RUNTIME_EVAL_PROGRESS_H_
#define CHAI_RUNTIME_EVAL_PROGRESS_H_

#include <chrono>
#include <cstdio>
#include <functional>
#include <string>

namespace chai {

class Progress {
 public:
  // `enabled` false (non-zero ranks, --quiet) prints nothing.
  Progress(std::string label, std::string unit, bool enabled, double every_seconds = 5.0)
      : label_(std::move(label)), unit_(std::move(unit)), enabled_(enabled), every_(every_seconds) {}

  void Update(int done, int total) {
    if (!enabled_) return;
    const double now = Seconds();
    if (now - last_ < every_ && !(done == total && printed_)) return;
    last_ = now;
    printed_ = true;
    std::fprintf(stderr, "%s: %d/%d %s (%.1f s)\n", label_.c_str(), done, total, unit_.c_str(), now);
  }

  std::function<void(int, int)> Callback() {
    return [this](int done, int total) { Update(done, total); };
  }

 private:
  double Seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

  std::string label_, unit_;
  bool enabled_;
  double every_;
  double last_ = 0;
  bool printed_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace chai

#endif  // CHAI_RUNTIME_EVAL_PROGRESS_H_

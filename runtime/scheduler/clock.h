// The time source of the scheduler: a steady clock in production, a clock the test moves by hand.
#ifndef CHAI_RUNTIME_SCHEDULER_CLOCK_H_
#define CHAI_RUNTIME_SCHEDULER_CLOCK_H_

#include <chrono>

namespace chai {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual double Now() const = 0;  // seconds
};

class SteadyClock : public Clock {
 public:
  double Now() const override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
};

class FakeClock : public Clock {
 public:
  double Now() const override { return now_; }
  void Set(double t) { now_ = t; }
  void Advance(double dt) { now_ += dt; }

 private:
  double now_ = 0;
};

}  // namespace chai

#endif  // CHAI_RUNTIME_SCHEDULER_CLOCK_H_

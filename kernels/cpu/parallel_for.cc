#include "kernels/cpu/parallel_for.h"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace chai::cpu {
namespace {

class ThreadPool {
 public:
  // Runs with as many of `threads` as the system starts (a container's task limit can refuse some):
  // a warning names how many, rather than an abort on the first refusal.
  explicit ThreadPool(int threads) {
    for (int i = 1; i < threads; ++i) {
      try {
        workers_.emplace_back([this] { WorkerLoop(); });
      } catch (const std::system_error& e) {
        std::fprintf(stderr, "chai: warning: started %d of %d CPU threads (%s); running with %d\n", i, threads,
                     e.what(), i);
        break;
      }
    }
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
  }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Splits [0, n) into one chunk per thread; the calling thread takes chunk 0.
  void Run(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
    std::unique_lock<std::mutex> run_lock(run_mu_);  // one parallel region at a time
    int chunks = static_cast<int>(std::min<int64_t>(size(), n));
    {
      std::lock_guard<std::mutex> lock(mu_);
      fn_ = &fn;
      n_ = n;
      chunks_ = chunks;
      next_chunk_ = 1;
      pending_ = chunks - 1;
      ++generation_;
    }
    cv_.notify_all();
    RunChunk(0);
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void RunChunk(int c) {
    int64_t begin = n_ * c / chunks_, end = n_ * (c + 1) / chunks_;
    if (begin < end) (*fn_)(begin, end);
  }

  void WorkerLoop() {
    uint64_t seen = 0;
    while (true) {
      int chunk;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || (generation_ != seen && next_chunk_ < chunks_); });
        if (stop_) return;
        chunk = next_chunk_++;
        if (next_chunk_ >= chunks_) seen = generation_;
      }
      RunChunk(chunk);
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int chunks_ = 0, next_chunk_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

int ConfiguredThreads() {
  if (const char* env = std::getenv("CHAI_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool& Pool() {
  static ThreadPool* pool = new ThreadPool(ConfiguredThreads());  // never destroyed: used until exit
  return *pool;
}

}  // namespace

int NumThreads() { return Pool().size(); }

void ParallelFor(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (n < 2 * std::max<int64_t>(min_chunk, 1) || Pool().size() == 1) {
    fn(0, n);
    return;
  }
  Pool().Run(n, fn);
}

}  // namespace chai::cpu

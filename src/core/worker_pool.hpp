#pragma once

// A fixed pool of threads for CPU-heavy work that must not run on an I/O
// thread, such as Argon2id password hashing. The queue is bounded: when it is
// full, Submit refuses at once, so a burst of sign-ins cannot pile up memory
// or latency without limit (the caller answers 503).

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cw::core {

class WorkerPool {
 public:
  WorkerPool(int threads, std::size_t max_queued);
  ~WorkerPool();  // runs what is queued, then joins
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `work`; false when the queue is full or the pool is stopping.
  bool Submit(std::function<void()> work);

 private:
  void Run();

  const std::size_t max_queued_;
  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace cw::core

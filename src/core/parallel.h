// OpenMP helpers. Work is always split into chunks whose boundaries do not
// depend on the thread count, and every output element is written by exactly
// one chunk, so results are bitwise identical for any number of threads.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

#include <exception>
#include <mutex>

namespace mh {

// Runs body(i) for i in [0, n) on up to `threads` threads. Exceptions thrown
// by body are captured and the first one is rethrown after the loop (an
// exception must never leave an OpenMP region).
template <class F>
void parallel_for(long n, int threads, F body) {
  if (n <= 0) return;
  if (threads <= 1 || n == 1) {
    for (long i = 0; i < n; ++i) body(i);
    return;
  }
  std::exception_ptr error = nullptr;
  std::mutex error_lock;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
#endif
  for (long i = 0; i < n; ++i) {
    try {
      body(i);
    } catch (...) {
      std::lock_guard<std::mutex> guard(error_lock);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace mh

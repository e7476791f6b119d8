// OpenMP helpers. Work is always split into chunks whose boundaries do not
// depend on the thread count, and every output element is written by exactly
// one chunk, so results are bitwise identical for any number of threads.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <exception>
#include <mutex>

namespace mh {

// Below these amounts of work a kernel runs on one thread. Opening a
// parallel region costs microseconds on an idle machine, but when other
// processes keep the cores busy a region waits until each of its threads has
// been scheduled (libgomp's threads spin, then sleep), which can cost a
// scheduler time slice: small calls must not pay that. The counts are
// functions of the shapes only, so they never change results.
//   kMinParallelMacs: multiply-adds (GEMMs, attention);
//   kMinParallelElements: elements read or written (element-wise kernels,
//   copies).
constexpr double kMinParallelMacs = double(1 << 21);
constexpr double kMinParallelElements = double(1 << 18);

inline int threads_for_macs(double macs, int threads) {
  return macs < kMinParallelMacs ? 1 : threads;
}
inline int threads_for_elements(double elements, int threads) {
  return elements < kMinParallelElements ? 1 : threads;
}

// The calling thread's number in a parallel_for() run on `threads` threads:
// an index (< threads) into per-thread scratch buffers, never into results.
// (A loop that parallel_for() runs serially may be inside someone else's
// parallel region, whose thread numbers can be larger: clamped. Only one
// thread uses a serial loop's scratch.)
inline int thread_index(int threads) {
#ifdef _OPENMP
  return threads > 1 ? std::min(omp_get_thread_num(), threads - 1) : 0;
#else
  (void)threads;
  return 0;
#endif
}

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

// parallel_for with a side job: one thread runs side() once, then joins the
// others on body(i). The loop is scheduled dynamically anyway, so which
// thread runs which i never changes results. With one thread, side() runs
// first. (Used to map in the caller's fresh output array, kernel work that
// needs memory bandwidth, while the other thread computes attention tiles.)
template <class S, class F>
void parallel_for_alongside(long n, int threads, S side, F body) {
  if (threads <= 1 || n <= 1) {
    side();
    for (long i = 0; i < n; ++i) body(i);
    return;
  }
  std::exception_ptr error = nullptr;
  std::mutex error_lock;
  auto run = [&](auto&& f) {
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> guard(error_lock);
      if (!error) error = std::current_exception();
    }
  };
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    if (omp_get_thread_num() == omp_get_num_threads() - 1) run(side);
#pragma omp for schedule(dynamic, 1) nowait
    for (long i = 0; i < n; ++i) run([&] { body(i); });
  }
#else
  run(side);
  for (long i = 0; i < n; ++i) run([&] { body(i); });
#endif
  if (error) std::rethrow_exception(error);
}

}  // namespace mh

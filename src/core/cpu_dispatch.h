// Which float kernels run: the hand-written AVX2 + FMA ones (simd_kernels.h)
// or the portable ones (plain C++ and Eigen at the compiler's baseline,
// SSE2 on x86-64). Decided once per process, at the first call of
// simd_info(), and then CACHED for the life of the process (a function-local
// static: thread-safe initialisation, never changed afterwards), so every
// kernel of every call takes the same path and results do not change within
// a session. This cache and the large-buffer cache (large_buffers.h) are the
// core's only process-wide state.
//
// The decision: AVX2 + FMA when this build has the kernels (MH_AVX2_KERNELS:
// x86 with GCC or Clang, not installed with MULTIHEAD_PORTABLE=1) and
// __builtin_cpu_supports reports both "avx2" and "fma" (which includes the
// operating system's support for the AVX registers), unless the environment
// variable MULTIHEAD_SIMD is "portable" at that moment (forces the portable
// path, for tests and comparisons). Any other value of MULTIHEAD_SIMD is
// ignored.
#pragma once

namespace mh {

enum class SimdPath { portable, avx2_fma };

struct SimdInfo {
  SimdPath path;
  bool compiled;  // the AVX2 + FMA kernels exist in this build
  bool cpu;       // the CPU (and OS) support AVX2 and FMA
  bool forced;    // MULTIHEAD_SIMD=portable chose the portable path
};

// The cached decision (see above).
const SimdInfo& simd_info();

// True when the AVX2 + FMA kernels run (float only; double always takes
// the portable path).
inline bool use_avx2() { return simd_info().path == SimdPath::avx2_fma; }

// "avx2+fma" or "portable".
const char* simd_path_name(SimdPath path);

}  // namespace mh

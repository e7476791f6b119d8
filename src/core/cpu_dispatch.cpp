// The SIMD dispatch decision: see cpu_dispatch.h.
#include "cpu_dispatch.h"

#include <cstdlib>
#include <cstring>

#include "simd_kernels.h"

namespace mh {

namespace {

bool cpu_has_avx2_fma() {
#if MH_AVX2_KERNELS
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

SimdInfo decide() {
  SimdInfo info;
  info.compiled = MH_AVX2_KERNELS != 0;
  info.cpu = cpu_has_avx2_fma();
  const char* env = std::getenv("MULTIHEAD_SIMD");
  info.forced = env != nullptr && std::strcmp(env, "portable") == 0;
  info.path = info.compiled && info.cpu && !info.forced ? SimdPath::avx2_fma : SimdPath::portable;
  return info;
}

}  // namespace

const SimdInfo& simd_info() {
  static const SimdInfo info = decide();
  return info;
}

const char* simd_path_name(SimdPath path) {
  return path == SimdPath::avx2_fma ? "avx2+fma" : "portable";
}

}  // namespace mh

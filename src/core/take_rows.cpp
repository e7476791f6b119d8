// Gathering samples along the first axis of a column-major array; see
// take_rows.h. A run of consecutive rows is one memcpy per column (fit()
// without shuffling takes contiguous batches); otherwise one load per entry.
#include "take_rows.h"

#include <algorithm>
#include <cstring>

#include "parallel.h"

namespace mh {

template <class T>
void take_rows_colmajor(const T* x, idx n, idx cols, const int32_t* rows, idx k, T* out,
                        int threads) {
  if (k <= 0 || cols <= 0) return;
  bool contiguous = true;
  for (idx j = 1; j < k && contiguous; ++j) contiguous = rows[j] == rows[j - 1] + 1;
  // Columns per task: about 64K elements copied per task.
  const idx block = std::max<idx>(1, (idx(1) << 16) / k);
  const long tasks = static_cast<long>((cols + block - 1) / block);
  parallel_for(tasks, threads_for_elements(static_cast<double>(k) * static_cast<double>(cols), threads),
               [&](long t) {
                 const idx c0 = t * block, c1 = std::min(cols, c0 + block);
                 for (idx c = c0; c < c1; ++c) {
                   const T* col = x + n * c;
                   T* dst = out + k * c;
                   if (contiguous) {
                     std::memcpy(dst, col + rows[0], static_cast<size_t>(k) * sizeof(T));
                   } else {
                     for (idx j = 0; j < k; ++j) dst[j] = col[rows[j]];
                   }
                 }
               });
}

template void take_rows_colmajor<double>(const double*, idx, idx, const int32_t*, idx, double*, int);
template void take_rows_colmajor<int>(const int*, idx, idx, const int32_t*, idx, int*, int);

}  // namespace mh

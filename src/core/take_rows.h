// Taking samples (rows of the first axis) of a column-major array: the
// batches of fit(), evaluate() and predict().
#pragma once

#include <cstdint>

#include "layout.h"

namespace mh {

// x is column-major with `n` entries on its first axis and `cols` = the
// product of its other axes (so x[i + n * c] is sample i of column c); out
// receives k = length of `rows` samples, column-major (out[j + k * c] =
// x[rows[j] + n * c]). rows are 0-based and must be in [0, n) (checked by the
// caller). Parallel over fixed blocks of columns: identical for any thread
// count (a copy).
template <class T>
void take_rows_colmajor(const T* x, idx n, idx cols, const int32_t* rows, idx k, T* out,
                        int threads);

}  // namespace mh

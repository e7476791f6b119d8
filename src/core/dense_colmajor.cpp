// Dense products on R's column-major arrays: see dense_colmajor.h.
#include "dense_colmajor.h"

#include <Eigen/Dense>
#include <algorithm>
#include <stdexcept>
#include <type_traits>

#include "dense_common.h"
#include "packed_gemm.h"
#include "parallel.h"

namespace mh {

using namespace dense_detail;

namespace {

// Block `blk` of a column-major product (see dense_forward_blocks_colmajor).
// Returns false if p.finite is set and the block held a non-finite value.
// `packed`: the product's packed weights when the packed kernel runs it,
// with the calling thread's scratch.
template <class T>
bool colmajor_block(const ColMajorProduct<T>& p, idx rb, long blk, const PackedWeights* packed,
                    float* scratch) {
  const idx r0 = blk * rb, nr = std::min(rb, p.rows - r0);
  if (packed) {
    bool ok = true;
    const float* b = reinterpret_cast<const float*>(p.b);
    if (p.direct_rows && p.direct_strip) {  // y straight into its place
      ok = pack_panels(p.x, p.ldx, r0, nr, p.in, scratch, p.finite != nullptr);
      std::vector<T*> rows(static_cast<size_t>(nr));
      p.direct_rows(r0, nr, rows.data());
      packed_multiply_rows(scratch, nr, *packed, b, reinterpret_cast<float* const*>(rows.data()),
                           p.direct_strip);
      return ok;
    }
    const float* y = packed_projection_block(p.x, p.ldx, r0, nr, *packed, b, scratch,
                                             p.finite != nullptr, &ok);
    p.store(r0, nr, reinterpret_cast<const T*>(y));
    return ok;
  }
  Eigen::Map<const RowMat<T>> W(p.w, p.in, p.out);
  // The block of x, converted: column-major (nr, in), each column a
  // contiguous run of the source.
  Buffer<T> xbuf(static_cast<size_t>(nr * p.in));
  bool ok = true;
  for (idx f = 0; f < p.in; ++f)
    ok &= convert_run(p.x + f * p.ldx + r0, nr, xbuf.data() + f * nr, p.finite != nullptr);
  Eigen::Map<const ColMat<T>> X(xbuf.data(), nr, p.in);
  Buffer<T> ybuf(static_cast<size_t>(nr * p.out));
  Eigen::Map<RowMat<T>> Y(ybuf.data(), nr, p.out);
  product_plus_bias(X, W, p.b, Y);
  p.store(r0, nr, ybuf.data());
  return ok;
}

}  // namespace

template <class T>
void dense_forward_blocks_colmajor(const std::vector<ColMajorProduct<T>>& products, int threads) {
  // Task list: (product, block), products in order.
  std::vector<std::pair<size_t, long>> tasks;
  std::vector<idx> rbs;
  std::vector<PackedWeights> packed;  // one per product with the packed kernel
  const bool use_packed = avx2_float<T>();
  double macs = 0;
  for (size_t k = 0; k < products.size(); ++k) {
    const ColMajorProduct<T>& p = products[k];
    if (use_packed) {
      packed.push_back(pack_weights(reinterpret_cast<const float*>(p.w), p.in, p.out));
      rbs.push_back(packed_row_block(p.in, p.out));
    } else {
      rbs.push_back(row_block(p.rows, p.in, p.out));
    }
    for (long blk = 0; blk < n_blocks(p.rows, rbs.back()); ++blk) tasks.emplace_back(k, blk);
    macs += static_cast<double>(p.rows) * p.in * p.out;
  }
  std::vector<char> task_ok(tasks.size(), 1);  // one flag per task: no shared writes
  const int used = threads_for_macs(macs, threads);
  // The packed kernel's scratch: one area per thread, allocated once per call
  // (per block, the heap would hand out freshly faulted pages again and again).
  std::vector<Buffer<float>> scratch(use_packed ? static_cast<size_t>(used) : 0);
  if (use_packed) {
    idx floats = 0;
    for (size_t k = 0; k < products.size(); ++k)
      floats = std::max(floats, packed_scratch_floats(std::min(rbs[k], products[k].rows),
                                                      products[k].in, products[k].out));
    for (Buffer<float>& b : scratch) b.resize(static_cast<size_t>(floats));
  }
  parallel_for(static_cast<long>(tasks.size()), used, [&](long i) {
    const size_t k = tasks[i].first;
    task_ok[static_cast<size_t>(i)] =
        colmajor_block(products[k], rbs[k], tasks[i].second, use_packed ? &packed[k] : nullptr,
                       use_packed ? scratch[static_cast<size_t>(thread_index(used))].data() : nullptr);
  });
  for (const ColMajorProduct<T>& p : products)
    if (p.finite) *p.finite = true;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const ColMajorProduct<T>& p = products[tasks[i].first];
    if (p.finite && !task_ok[i]) *p.finite = false;
  }
}

template <class T>
void dense_forward_blocks_colmajor(const double* x, idx ldx, idx rows, idx in, const T* w,
                                   const T* b, idx out, int threads,
                                   const std::function<void(idx, idx, const T*)>& store) {
  dense_forward_blocks_colmajor<T>({ColMajorProduct<T>{x, ldx, rows, in, w, b, out, store}},
                                   threads);
}

template <class T>
void dense_forward_gather_colmajor(const T* x, const idx* x_row, idx rows, idx in, const T* w,
                                   const T* b, idx out, double* y, idx ldy, const idx* y_col,
                                   int threads) {
  const int used = threads_for_macs(static_cast<double>(rows) * in * out, threads);
  if (avx2_float<T>()) {
    // The packed kernel: one packing of w, per-thread scratch (panels, y).
    const PackedWeights pw = pack_weights(reinterpret_cast<const float*>(w), in, out);
    const idx rb = packed_row_block(in, out);
    std::vector<Buffer<float>> scratch(static_cast<size_t>(used));
    const idx floats = packed_scratch_floats(std::min(rb, rows), in, out);  // a block at most
    for (Buffer<float>& s : scratch) s.resize(static_cast<size_t>(floats));
    parallel_for(n_blocks(rows, rb), used, [&](long blk) {
      const idx r0 = blk * rb, nr = std::min(rb, rows - r0);
      float* a = scratch[static_cast<size_t>(thread_index(used))].data();
      float* yb = a + (nr + kPanelRows - 1) / kPanelRows * kPanelRows * in;
      pack_panels_gather(reinterpret_cast<const float*>(x), x_row, r0, nr, in, a);
      packed_multiply(a, nr, pw, reinterpret_cast<const float*>(b), yb);
      store_columns(yb, nr, out, y_col, y + r0, ldy);
    });
    return;
  }
  Eigen::Map<const RowMat<T>> W(w, in, out);
  const idx rb = row_block(rows, in, out);
  parallel_for(n_blocks(rows, rb), used, [&](long blk) {
    const idx r0 = blk * rb, nr = std::min(rb, rows - r0);
    Buffer<T> xbuf(static_cast<size_t>(nr * in));
    for (idx i = 0; i < nr; ++i) {
      const T* src = x + x_row[r0 + i] * in;
      std::copy(src, src + in, xbuf.data() + i * in);
    }
    Eigen::Map<const RowMat<T>> X(xbuf.data(), nr, in);
    Buffer<T> ybuf(static_cast<size_t>(nr * out));
    Eigen::Map<ColMat<T>> Y(ybuf.data(), nr, out);  // each column a run of the destination
    product_plus_bias(X, W, b, Y);
    for (idx j = 0; j < out; ++j) {
      convert_run(ybuf.data() + j * nr, nr, y + (y_col ? y_col[j] : j) * ldy + r0);
    }
  });
}

template <class T>
void dense_backward_colmajor_dy(const double* dy, idx ldy, const idx* y_col, const idx* x_row,
                                idx rows, const T* x, idx in, const T* w, idx out, T* dx, T* dw,
                                T* db, int threads, bool* dy_finite) {
  Eigen::Map<const RowMat<T>> W(w, in, out);
  if (dy_finite) *dy_finite = true;
  const idx rb = backward_row_block(rows, in, out);
  const long nb = n_blocks(rows, rb);
  // Groups of consecutive blocks, each with its own dw and db partial sums;
  // their number depends on the shapes only.
  const long groups = std::min<long>(nb, kWeightGroups);
  if (groups == 0) {
    std::fill(dw, dw + in * out, T(0));
    if (db) std::fill(db, db + out, T(0));
    return;
  }
  Buffer<T> part(static_cast<size_t>(groups * (in * out + out)));
  std::vector<char> group_ok(static_cast<size_t>(groups), 1);
  const int used = threads_for_macs(2.0 * rows * in * out, threads);
  parallel_for(groups, used, [&](long grp) {
    Eigen::Map<RowMat<T>> dW(part.data() + grp * (in * out + out), in, out);
    Eigen::Map<RowVec<T>> dB(part.data() + grp * (in * out + out) + in * out, out);
    Buffer<T> ybuf(static_cast<size_t>(rb * out)), xbuf(static_cast<size_t>(rb * in)),
        dxbuf(static_cast<size_t>(rb * in));
    const long b0 = grp * nb / groups, b1 = (grp + 1) * nb / groups;
    for (long blk = b0; blk < b1; ++blk) {
      const idx r0 = blk * rb, nr = std::min(rb, rows - r0);
      bool ok = true;
      for (idx j = 0; j < out; ++j)
        ok &= convert_run(dy + (y_col ? y_col[j] : j) * ldy + r0, nr, ybuf.data() + j * nr,
                          dy_finite != nullptr);
      if (!ok) group_ok[static_cast<size_t>(grp)] = 0;
      Eigen::Map<const ColMat<T>> dY(ybuf.data(), nr, out);
      for (idx i = 0; i < nr; ++i) {
        const T* src = x + x_row[r0 + i] * in;
        std::copy(src, src + in, xbuf.data() + i * in);
      }
      Eigen::Map<const RowMat<T>> X(xbuf.data(), nr, in);
      Eigen::Map<RowMat<T>> dX(dxbuf.data(), nr, in);
      if (avx2_float<T>()) {
        // dW (+)= X^T dY, dX = dY W^T (dY column-major: ybuf[r + j * nr])
        gemm(in, out, nr, xbuf.data(), 1, in, ybuf.data(), 1, nr, dW.data(), out, blk != b0);
        if (blk == b0) dB = dY.colwise().sum(); else dB += dY.colwise().sum();
        gemm(nr, in, out, ybuf.data(), 1, nr, w, 1, out, dxbuf.data(), in, false);
      } else {
        add_weight_grads(X, dY, blk == b0, dW, dB);
        dX.noalias() = dY * W.transpose();
      }
      for (idx i = 0; i < nr; ++i)
        std::copy(dxbuf.data() + i * in, dxbuf.data() + (i + 1) * in, dx + x_row[r0 + i] * in);
    }
  });
  if (dy_finite) *dy_finite = std::find(group_ok.begin(), group_ok.end(), 0) == group_ok.end();
  // Sum the groups in order, each element by one task.
  const idx n = in * out + out;
  const idx chunk = 4096;
  parallel_for(n_blocks(n, chunk), threads_for_elements(double(groups) * n, threads), [&](long c) {
    const idx e0 = c * chunk, e1 = std::min(n, e0 + chunk);
    for (idx e = e0; e < e1; ++e) {
      T s = part[static_cast<size_t>(e)];
      for (long grp = 1; grp < groups; ++grp) s += part[static_cast<size_t>(grp * n + e)];
      if (e < in * out) {
        dw[e] = s;
      } else if (db) {
        db[e - in * out] = s;
      }
    }
  });
}

template <class T>
void dense_backward_weights_colmajor(const double* x, idx ldx, const idx* x_row, idx rows,
                                     idx in, const T* dy, idx out, T* dw, T* db, int threads) {
  Eigen::Map<const RowMat<T>> dY(dy, rows, out);
  Eigen::Map<RowMat<T>> dW(dw, in, out);
  const int used = threads_for_macs(static_cast<double>(rows) * in * out, threads);
  parallel_for(n_blocks(in, kFeatureBlock), used, [&](long blk) {
    const idx f0 = blk * kFeatureBlock, nf = std::min(kFeatureBlock, in - f0);
    // Columns f0 .. f0 + nf - 1 of x, rows in dy's order: (rows, nf) column-major.
    Buffer<T> xbuf(static_cast<size_t>(rows * nf));
    for (idx j = 0; j < nf; ++j) {
      const double* src = x + (f0 + j) * ldx;
      T* dst = xbuf.data() + j * rows;
      for (idx r = 0; r < rows; ++r) dst[x_row[r]] = static_cast<T>(src[r]);
    }
    if (avx2_float<T>()) {
      gemm(nf, out, rows, xbuf.data(), rows, 1, dy, out, 1, dw + f0 * out, out, false);
      return;
    }
    Eigen::Map<const ColMat<T>> X(xbuf.data(), rows, nf);
    dW.middleRows(f0, nf).noalias() = X.transpose() * dY;
  });
  if (db) {
    Eigen::Map<RowVec<T>> dB(db, out);
    dB.setZero();
    for (idx r = 0; r < rows; ++r) dB += dY.row(r);
  }
}

template <class T>
void dense_backward_input_colmajor(const std::vector<BackwardInputTerm<T>>& terms,
                                   const idx* dy_row, idx rows, idx in, double* dx, idx ldx,
                                   int threads) {
  if (terms.empty() || !dx) return;
  idx out_max = 0;
  double macs = 0;
  for (const BackwardInputTerm<T>& t : terms) {
    out_max = std::max(out_max, t.out);
    macs += static_cast<double>(rows) * in * t.out;
  }
  const idx rb = backward_row_block(rows, in, terms[0].out);
  parallel_for(n_blocks(rows, rb), threads_for_macs(macs, threads), [&](long blk) {
    const idx r0 = blk * rb, nr = std::min(rb, rows - r0);
    Buffer<T> ybuf(static_cast<size_t>(nr * out_max)), xbuf(static_cast<size_t>(nr * in));
    Eigen::Map<ColMat<T>> dX(xbuf.data(), nr, in);  // each column a run of the destination
    for (size_t k = 0; k < terms.size(); ++k) {
      const BackwardInputTerm<T>& t = terms[k];
      for (idx i = 0; i < nr; ++i) {
        const T* src = t.dy + dy_row[r0 + i] * t.out;
        std::copy(src, src + t.out, ybuf.data() + i * t.out);
      }
      if (avx2_float<T>()) {
        // dX column-major = (W dY^T) row-major (in, nr)
        gemm(in, nr, t.out, t.w, t.out, 1, ybuf.data(), 1, t.out, xbuf.data(), nr, k > 0);
        continue;
      }
      Eigen::Map<const RowMat<T>> dY(ybuf.data(), nr, t.out);
      Eigen::Map<const RowMat<T>> W(t.w, in, t.out);
      if (k == 0) {
        dX.noalias() = dY * W.transpose();
      } else {
        dX.noalias() += dY * W.transpose();
      }
    }
    for (idx f = 0; f < in; ++f) convert_run(xbuf.data() + f * nr, nr, dx + f * ldx + r0);
  });
}

namespace {

// Partial weight gradients of dense_backward_colmajor_x: at most this many
// elements per problem (all groups and terms), so wide kernels do not
// multiply their memory by the number of groups.
constexpr double kMaxPartialElements = double(1 << 23);

// Row-block groups of one problem of dense_backward_colmajor_x (a function of
// the shapes only), 0 when it must use the unfused functions.
template <class T>
long backward_groups(const ColMajorBackward<T>& p) {
  const idx rb = backward_row_block(p.rows, p.in, p.terms.empty() ? 1 : p.terms[0].out);
  const long nb = n_blocks(p.rows, rb);
  double per_group = 0;
  for (const BackwardTerm<T>& t : p.terms) per_group += double(p.in) * t.out + t.out;
  const long fit = static_cast<long>(kMaxPartialElements / std::max(1.0, per_group));
  const long groups = std::min<long>(std::min<long>(nb, kWeightGroups), fit);
  return groups >= 2 || nb <= 1 ? std::max<long>(groups, nb > 0 ? 1 : 0) : 0;
}

}  // namespace

template <class T>
void dense_backward_colmajor_x(const std::vector<ColMajorBackward<T>>& problems, int threads,
                               const std::function<void()>& alongside) {
  auto side = [&] {
    if (alongside) alongside();
  };
  bool side_done = false;
  auto side_now = [&] {
    if (!side_done) side();
    side_done = true;
  };
  struct Task {
    size_t p;
    long grp;
  };
  std::vector<Task> tasks;
  std::vector<long> groups(problems.size());
  std::vector<std::vector<size_t>> offset(problems.size());  // partials of (term, group)
  size_t partial_size = 0;
  double macs = 0;
  for (size_t k = 0; k < problems.size(); ++k) {
    const ColMajorBackward<T>& p = problems[k];
    if (p.terms.empty()) continue;
    groups[k] = backward_groups(p);
    if (groups[k] == 0) {  // too wide for partial sums: feature bands instead
      side_now();
      for (const BackwardTerm<T>& t : p.terms)
        dense_backward_weights_colmajor<T>(p.x, p.ldx, p.x_row, p.rows, p.in, t.dy, t.out, t.dw,
                                           t.db, threads);
      std::vector<BackwardInputTerm<T>> in_terms;
      for (const BackwardTerm<T>& t : p.terms) in_terms.push_back({t.dy, t.out, t.w});
      dense_backward_input_colmajor<T>(in_terms, p.x_row, p.rows, p.in, p.dx, p.lddx, threads);
      continue;
    }
    for (size_t t = 0; t < p.terms.size(); ++t) {
      for (long g = 0; g < groups[k]; ++g) {
        offset[k].push_back(partial_size);
        partial_size += static_cast<size_t>(p.in * p.terms[t].out + p.terms[t].out);
      }
      macs += 2.0 * p.rows * p.in * p.terms[t].out;
    }
    for (long g = 0; g < groups[k]; ++g) tasks.push_back({k, g});
  }
  if (tasks.empty()) {
    side_now();
    return;
  }
  Buffer<T> part(partial_size);
  auto body = [&](long i) {
    const ColMajorBackward<T>& p = problems[tasks[i].p];
    const long grp = tasks[i].grp, ng = groups[tasks[i].p];
    idx out_max = 0;
    for (const BackwardTerm<T>& t : p.terms) out_max = std::max(out_max, t.out);
    const idx rb = backward_row_block(p.rows, p.in, p.terms[0].out);
    const long nb = n_blocks(p.rows, rb);
    const long b0 = grp * nb / ng, b1 = (grp + 1) * nb / ng;
    Buffer<T> xbuf(static_cast<size_t>(rb * p.in)), ybuf(static_cast<size_t>(rb * out_max)),
        dxbuf(static_cast<size_t>(p.dx ? rb * p.in : 0));
    for (long blk = b0; blk < b1; ++blk) {
      const idx r0 = blk * rb, nr = std::min(rb, p.rows - r0);
      // x's block, column-major (nr, in): each column a contiguous run of x.
      for (idx f = 0; f < p.in; ++f) convert_run(p.x + f * p.ldx + r0, nr, xbuf.data() + f * nr);
      Eigen::Map<const ColMat<T>> X(xbuf.data(), nr, p.in);
      Eigen::Map<ColMat<T>> dX(dxbuf.data(), nr, p.in);  // each column a run of dx
      for (size_t k = 0; k < p.terms.size(); ++k) {
        const BackwardTerm<T>& t = p.terms[k];
        for (idx i = 0; i < nr; ++i) {
          const T* src = t.dy + p.x_row[r0 + i] * t.out;
          std::copy(src, src + t.out, ybuf.data() + i * t.out);
        }
        Eigen::Map<const RowMat<T>> dY(ybuf.data(), nr, t.out);
        T* pw = part.data() + offset[tasks[i].p][k * static_cast<size_t>(ng) + grp];
        Eigen::Map<RowMat<T>> dW(pw, p.in, t.out);
        Eigen::Map<RowVec<T>> dB(pw + p.in * t.out, t.out);
        if (avx2_float<T>()) {
          // dW (+)= X^T dY (X column-major), dX column-major (+)= (W dY^T) row-major
          gemm(p.in, t.out, nr, xbuf.data(), nr, 1, ybuf.data(), t.out, 1, pw, t.out, blk != b0);
          if (blk == b0) dB = dY.colwise().sum(); else dB += dY.colwise().sum();
          if (p.dx) gemm(p.in, nr, t.out, t.w, t.out, 1, ybuf.data(), 1, t.out, dxbuf.data(), nr, k > 0);
          continue;
        }
        add_weight_grads(X, dY, blk == b0, dW, dB);
        if (!p.dx) continue;
        Eigen::Map<const RowMat<T>> W(t.w, p.in, t.out);
        if (k == 0) {
          dX.noalias() = dY * W.transpose();
        } else {
          dX.noalias() += dY * W.transpose();
        }
      }
      if (!p.dx) continue;
      for (idx f = 0; f < p.in; ++f) convert_run(dxbuf.data() + f * nr, nr, p.dx + f * p.lddx + r0);
    }
  };
  const long n_tasks = static_cast<long>(tasks.size());
  const int used = threads_for_macs(macs, threads);
  if (side_done) {
    parallel_for(n_tasks, used, body);
  } else {
    parallel_for_alongside(n_tasks, used, side, body);
  }
  // Sum each term's groups in order, each element by one task.
  struct Sum {
    size_t p, t;
  };
  std::vector<Sum> sums;
  for (size_t k = 0; k < problems.size(); ++k)
    if (groups[k] > 0)
      for (size_t t = 0; t < problems[k].terms.size(); ++t) sums.push_back({k, t});
  const idx chunk = 4096;
  std::vector<std::pair<size_t, long>> jobs;  // (sum, chunk)
  for (size_t j = 0; j < sums.size(); ++j) {
    const BackwardTerm<T>& t = problems[sums[j].p].terms[sums[j].t];
    const idx n = problems[sums[j].p].in * t.out + t.out;
    for (long c = 0; c < n_blocks(n, chunk); ++c) jobs.emplace_back(j, c);
  }
  parallel_for(static_cast<long>(jobs.size()),
               threads_for_elements(static_cast<double>(partial_size), threads), [&](long q) {
    const Sum& sm = sums[jobs[q].first];
    const ColMajorBackward<T>& p = problems[sm.p];
    const BackwardTerm<T>& t = p.terms[sm.t];
    const long ng = groups[sm.p];
    const idx n = p.in * t.out + t.out, nw = p.in * t.out;
    const idx e0 = jobs[q].second * chunk, e1 = std::min(n, e0 + chunk);
    const size_t base = sm.t * static_cast<size_t>(ng);
    for (idx e = e0; e < e1; ++e) {
      T s = part[offset[sm.p][base] + static_cast<size_t>(e)];
      for (long g = 1; g < ng; ++g) s += part[offset[sm.p][base + g] + static_cast<size_t>(e)];
      if (e < nw) {
        t.dw[e] = s;
      } else if (t.db) {
        t.db[e - nw] = s;
      }
    }
  });
}
#define MH_INSTANTIATE_DENSE_COLMAJOR(T)                                                      \
  template void dense_forward_blocks_colmajor<T>(const double*, idx, idx, idx, const T*,        \
                                                 const T*, idx, int,                             \
                                                 const std::function<void(idx, idx, const T*)>&); \
  template void dense_forward_blocks_colmajor<T>(const std::vector<ColMajorProduct<T>>&, int); \
  template void dense_forward_gather_colmajor<T>(const T*, const idx*, idx, idx, const T*,       \
                                                 const T*, idx, double*, idx, const idx*, int);  \
  template void dense_backward_colmajor_dy<T>(const double*, idx, const idx*, const idx*, idx,  \
                                              const T*, idx, const T*, idx, T*, T*, T*, int,    \
                                              bool*);                                           \
  template void dense_backward_weights_colmajor<T>(const double*, idx, const idx*, idx, idx,    \
                                                   const T*, idx, T*, T*, int);                 \
  template void dense_backward_input_colmajor<T>(const std::vector<BackwardInputTerm<T>>&,     \
                                                 const idx*, idx, idx, double*, idx, int);      \
  template void dense_backward_colmajor_x<T>(const std::vector<ColMajorBackward<T>>&, int,   \
                                             const std::function<void()>&);

MH_INSTANTIATE_DENSE_COLMAJOR(float)
MH_INSTANTIATE_DENSE_COLMAJOR(double)

}  // namespace mh

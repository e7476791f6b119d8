// Linear-algebra ops: see ops_linalg.h for the layouts and the plan of a
// contraction.
#include "ops_linalg.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "parallel.h"
#include "permute.h"

namespace mh {

namespace {

template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;  // column-major
template <class T>
using CMap = Eigen::Map<const Mat<T>>;
template <class T>
using MMap = Eigen::Map<Mat<T>>;
template <class T>
using StridedMap = Eigen::Map<Mat<T>, 0, Eigen::OuterStride<>>;

idx ceil_div(idx a, idx b) { return (a + b - 1) / b; }

// ---- strided copies -----------------------------------------------------

// The axes of a strided copy without size-1 axes, neighbours merged where
// both sides are contiguous across them.
struct CopyAxes {
  std::vector<idx> dims, s, d;
};

CopyAxes simplify(const std::vector<idx>& dims, const std::vector<idx>& sstep,
                  const std::vector<idx>& dstep) {
  CopyAxes r;
  for (size_t k = 0; k < dims.size(); ++k) {
    if (dims[k] == 1) continue;
    if (!r.dims.empty() && r.s.back() * r.dims.back() == sstep[k] &&
        r.d.back() * r.dims.back() == dstep[k]) {
      r.dims.back() *= dims[k];
      continue;
    }
    r.dims.push_back(dims[k]);
    r.s.push_back(sstep[k]);
    r.d.push_back(dstep[k]);
  }
  return r;
}

// Copies the index block lo <= i < hi: splits the longest axis in halves
// until the block is small (reads and writes stay in cache whatever the
// steps), then runs an odometer with axis 0 innermost.
template <class S, class D>
void copy_block(const S* src, D* dst, const CopyAxes& ax, std::vector<idx>& lo,
                std::vector<idx>& hi) {
  const int rank = static_cast<int>(lo.size());
  idx count = 1, longest = 0;
  int axis = 0;
  for (int k = 0; k < rank; ++k) {
    const idx n = hi[k] - lo[k];
    count *= n;
    if (n > longest) {
      longest = n;
      axis = k;
    }
  }
  if (count == 0) return;
  if (count > 4096 && longest > 1) {
    const idx mid = lo[axis] + longest / 2, old_hi = hi[axis], old_lo = lo[axis];
    hi[axis] = mid;
    copy_block(src, dst, ax, lo, hi);
    hi[axis] = old_hi;
    lo[axis] = mid;
    copy_block(src, dst, ax, lo, hi);
    lo[axis] = old_lo;
    return;
  }
  idx soff = 0, doff = 0;
  for (int k = 0; k < rank; ++k) {
    soff += lo[k] * ax.s[k];
    doff += lo[k] * ax.d[k];
  }
  const idx n0 = hi[0] - lo[0], s0 = ax.s[0], d0 = ax.d[0];
  std::vector<idx> counter(lo);
  for (idx done = 0; done < count; done += n0) {
    const S* p = src + soff;
    D* q = dst + doff;
    if (s0 == 1 && d0 == 1) {
      for (idx i = 0; i < n0; ++i) q[i] = static_cast<D>(p[i]);
    } else if (d0 == 1) {
      for (idx i = 0; i < n0; ++i) q[i] = static_cast<D>(p[i * s0]);
    } else {
      for (idx i = 0; i < n0; ++i) q[i * d0] = static_cast<D>(p[i * s0]);
    }
    for (int k = 1; k < rank; ++k) {  // odometer over axes 1 .. rank-1
      soff += ax.s[k];
      doff += ax.d[k];
      if (++counter[k] < hi[k]) break;
      soff -= ax.s[k] * (hi[k] - lo[k]);
      doff -= ax.d[k] * (hi[k] - lo[k]);
      counter[k] = lo[k];
    }
  }
}

std::vector<idx> contiguous_steps(const std::vector<idx>& dims) {
  std::vector<idx> s(dims.size());
  idx step = 1;
  for (size_t k = 0; k < dims.size(); ++k) {
    s[k] = step;
    step *= dims[k];
  }
  return s;
}

idx product(const std::vector<idx>& dims) {
  idx n = 0;
  if (!count_fits(dims.begin(), dims.end(), &n)) {
    throw std::length_error("multihead core: a tensor has a negative size or more than 2^52 elements");
  }
  return n;
}

// Whether (dims, steps) is a permutation of a contiguous array of n
// elements: the axes sorted by step must tile it exactly.
bool is_permutation_of_contiguous(const std::vector<idx>& dims, const std::vector<idx>& steps,
                                  idx n) {
  std::vector<std::pair<idx, idx>> ax;
  for (size_t k = 0; k < dims.size(); ++k) {
    if (dims[k] == 0) return n == 0;
    if (dims[k] != 1) ax.emplace_back(steps[k], dims[k]);
  }
  std::sort(ax.begin(), ax.end());
  idx expected = 1;
  for (const auto& a : ax) {
    if (a.first != expected) return false;
    expected *= a.second;
  }
  return expected == n;
}

// ---- sums -------------------------------------------------------------------

// out[j] = sum over i < reps of src[j + n*i], added in increasing i; column
// bands of fixed width run in parallel.
template <class T>
void sum_blocks(const T* src, idx n, idx reps, T* out, int threads) {
  constexpr idx kBand = 1024;
  const int used = threads_for_elements(static_cast<double>(n) * reps, threads);
  parallel_for(static_cast<long>(ceil_div(n, kBand)), used, [&](long blk) {
    const idx j0 = blk * kBand, j1 = std::min(n, j0 + kBand);
    std::copy(src + j0, src + j1, out + j0);
    for (idx i = 1; i < reps; ++i) {
      const T* s = src + i * n;
      for (idx j = j0; j < j1; ++j) out[j] += s[j];
    }
  });
}

// ---- GEMM blocks --------------------------------------------------------------

// C(r0:r0+nr, c0:c0+nc) = (or +=, when accumulate) op(A)(r0.., k0:k0+nk) *
// op(B)(k0.., c0..), C column-major with leading dimension ldc.
template <bool TA, bool TB, class T>
void gemm_block(const T* a, const T* b, T* c, idx ldc, idx rows, idx cols, idx inner, idx r0,
                idx nr, idx c0, idx nc, idx k0, idx nk, bool accumulate) {
  StridedMap<T> C(c + r0 + c0 * ldc, nr, nc, Eigen::OuterStride<>(ldc));
  auto run = [&](const auto& A, const auto& B) {
    if (accumulate) {
      C.noalias() += A * B;
    } else {
      C.noalias() = A * B;
    }
  };
  auto with_b = [&](const auto& A) {
    if constexpr (TB) {
      run(A, CMap<T>(b, cols, inner).block(c0, k0, nc, nk).transpose());
    } else {
      run(A, CMap<T>(b, inner, cols).block(k0, c0, nk, nc));
    }
  };
  if constexpr (TA) {
    with_b(CMap<T>(a, inner, rows).block(k0, r0, nk, nr).transpose());
  } else {
    with_b(CMap<T>(a, rows, inner).block(r0, k0, nr, nk));
  }
}

template <class T>
void gemm_block_any(bool ta, bool tb, const T* a, const T* b, T* c, idx ldc, idx rows, idx cols,
                    idx inner, idx r0, idx nr, idx c0, idx nc, idx k0, idx nk, bool accumulate) {
  if (ta) {
    if (tb) {
      gemm_block<true, true>(a, b, c, ldc, rows, cols, inner, r0, nr, c0, nc, k0, nk, accumulate);
    } else {
      gemm_block<true, false>(a, b, c, ldc, rows, cols, inner, r0, nr, c0, nc, k0, nk, accumulate);
    }
  } else if (tb) {
    gemm_block<false, true>(a, b, c, ldc, rows, cols, inner, r0, nr, c0, nc, k0, nk, accumulate);
  } else {
    gemm_block<false, false>(a, b, c, ldc, rows, cols, inner, r0, nr, c0, nc, k0, nk, accumulate);
  }
}

// The task grid of a batched product, from the shapes only.
struct GemmSplit {
  idx rb, cb, kb;    // block sizes (rows, cols, inner)
  idx nrb, ncb, nkb; // block counts
};

GemmSplit gemm_split(idx rows, idx cols, idx inner, idx batch) {
  GemmSplit g{rows, cols, inner, 1, 1, 1};
  const double macs = static_cast<double>(rows) * cols * inner * batch;
  if (macs < kMinParallelMacs) return g;
  // About 16 tasks: whole matrices when the batch is large, else row and
  // column blocks of at least 32 (rows rounded to multiples of 8).
  const idx want = batch >= 16 ? 1 : ceil_div(16, batch);
  auto parts = [](idx n, idx p) { return std::max<idx>(1, std::min(p, n / 32)); };
  idx pr = 1, pc = 1;
  if (cols >= rows) {
    pc = parts(cols, want);
    pr = parts(rows, ceil_div(want, pc));
  } else {
    pr = parts(rows, want);
    pc = parts(cols, ceil_div(want, pr));
  }
  g.rb = std::min(rows, ceil_div(ceil_div(rows, pr), 8) * 8);
  g.cb = ceil_div(cols, pc);
  g.nrb = ceil_div(rows, g.rb);
  g.ncb = ceil_div(cols, g.cb);
  // A small output of a long inner dimension (a weight gradient summed over
  // many rows): chunks of the inner dimension, added in order afterwards.
  if (batch * g.nrb * g.ncb < 4 && inner >= 8192) {
    g.nkb = std::min<idx>(16, inner / 4096);
    g.kb = ceil_div(inner, g.nkb);
    g.nkb = ceil_div(inner, g.kb);
  }
  return g;
}

}  // namespace

template <class S, class D>
void strided_copy(const S* src, const std::vector<idx>& sstep, D* dst,
                  const std::vector<idx>& dstep, const std::vector<idx>& dims, int threads) {
  if (sstep.size() != dims.size() || dstep.size() != dims.size())
    throw std::invalid_argument("strided_copy: steps and dims differ in length");
  for (idx d : dims)
    if (d <= 0) {
      if (d < 0) throw std::invalid_argument("strided_copy: negative dim");
      return;
    }
  CopyAxes ax = simplify(dims, sstep, dstep);
  if (ax.dims.empty()) {
    dst[0] = static_cast<D>(src[0]);
    return;
  }
  const int rank = static_cast<int>(ax.dims.size());
  idx total = 1;
  int axis = 0;
  for (int k = 0; k < rank; ++k) {
    total *= ax.dims[k];
    if (ax.dims[k] > ax.dims[axis]) axis = k;
  }
  const int used = threads_for_elements(static_cast<double>(total), threads);
  const idx parts = used > 1 ? std::min<idx>(ax.dims[axis], 16) : 1;
  parallel_for(static_cast<long>(parts), used, [&](long part) {
    std::vector<idx> lo(rank, 0), hi(ax.dims);
    lo[axis] = ax.dims[axis] * part / parts;
    hi[axis] = ax.dims[axis] * (part + 1) / parts;
    copy_block(src, dst, ax, lo, hi);
  });
}

// ---- gather plans -------------------------------------------------------------

bool GatherPlan::identity() const {
  if (summed != 1 || kept != source_size) return false;
  idx expected = 1;
  for (size_t k = 0; k < dims.size(); ++k) {
    if (dims[k] == 1) continue;
    if (steps[k] != expected) return false;
    expected *= dims[k];
  }
  return expected == source_size;
}

void GatherPlan::check(const char* what) const {
  const std::string w(what);
  if (dims.size() != steps.size()) throw std::invalid_argument(w + ": dims and steps differ in length");
  const idx n = product(dims);
  if (kept < 0 || summed < 0 || (n != kept * summed))
    throw std::invalid_argument(w + ": kept * summed is not the gathered size");
  if (n == 0) return;
  idx last = 0;
  for (size_t k = 0; k < dims.size(); ++k) {
    if (steps[k] < 0) throw std::invalid_argument(w + ": negative step");
    last += (dims[k] - 1) * steps[k];
  }
  if (last >= source_size) throw std::invalid_argument(w + ": the plan reads outside the operand");
}

template <class T>
void gather_reduce(const double* src, const GatherPlan& plan, T* out, int threads) {
  const idx n = plan.kept * plan.summed;
  if (plan.kept == 0) return;
  if (n == 0) {  // a summed axis of size 0
    std::fill(out, out + plan.kept, T(0));
    return;
  }
  const std::vector<idx> dsteps = contiguous_steps(plan.dims);
  if (plan.summed == 1) {
    strided_copy(src, plan.steps, out, dsteps, plan.dims, threads);
    return;
  }
  Buffer<T> tmp(static_cast<size_t>(n));
  strided_copy(src, plan.steps, tmp.data(), dsteps, plan.dims, threads);
  sum_blocks(tmp.data(), plan.kept, plan.summed, out, threads);
}

template <class T>
void gather_reduce_backward(const T* g, const GatherPlan& plan, double* dsrc, int threads) {
  if (!plan.covers()) std::fill(dsrc, dsrc + plan.source_size, 0.0);
  if (plan.kept * plan.summed == 0) return;
  // g's steps: contiguous over the kept axes, 0 along the summed ones.
  std::vector<idx> gsteps(plan.dims.size(), 0);
  idx step = 1, covered = 1;
  for (size_t k = 0; k < plan.dims.size() && covered < plan.kept; ++k) {
    gsteps[k] = step;
    step *= plan.dims[k];
    covered *= plan.dims[k];
  }
  strided_copy(g, gsteps, dsrc, plan.steps, plan.dims, threads);
}

// ---- batched GEMM -------------------------------------------------------------

template <class T>
void batched_gemm(const T* a, bool ta, const T* b, bool tb, T* c, idx rows, idx cols, idx inner,
                  idx batch, int threads) {
  if (rows <= 0 || cols <= 0 || batch <= 0) return;
  const idx csize = rows * cols;
  if (inner <= 0) {
    std::fill(c, c + csize * batch, T(0));
    return;
  }
  const GemmSplit g = gemm_split(rows, cols, inner, batch);
  const int used = threads_for_macs(static_cast<double>(csize) * inner * batch, threads);
  const idx asize = rows * inner, bsize = inner * cols;
  const idx per_matrix = g.nrb * g.ncb;
  if (g.nkb == 1) {
    parallel_for(static_cast<long>(batch * per_matrix), used, [&](long task) {
      const idx p = task / per_matrix, blk = task % per_matrix;
      const idx r0 = (blk % g.nrb) * g.rb, c0 = (blk / g.nrb) * g.cb;
      gemm_block_any(ta, tb, a + p * asize, b + p * bsize, c + p * csize, rows, rows, cols, inner,
                     r0, std::min(g.rb, rows - r0), c0, std::min(g.cb, cols - c0), idx(0), inner,
                     false);
    });
    return;
  }
  // Inner chunks: partial products, then added in chunk order.
  Buffer<T> partial(static_cast<size_t>(checked_count({g.nkb, csize, batch}, "partial products")));
  const idx tasks = batch * per_matrix * g.nkb;
  parallel_for(static_cast<long>(tasks), used, [&](long task) {
    const idx kblk = task % g.nkb, rest = task / g.nkb;
    const idx p = rest / per_matrix, blk = rest % per_matrix;
    const idx r0 = (blk % g.nrb) * g.rb, c0 = (blk / g.nrb) * g.cb, k0 = kblk * g.kb;
    gemm_block_any(ta, tb, a + p * asize, b + p * bsize, partial.data() + (kblk * batch + p) * csize,
                   rows, rows, cols, inner, r0, std::min(g.rb, rows - r0), c0,
                   std::min(g.cb, cols - c0), k0, std::min(g.kb, inner - k0), false);
  });
  sum_blocks(partial.data(), csize * batch, g.nkb, c, threads);
}

// ---- contractions -------------------------------------------------------------

bool ContractionPlan::out_identity() const {
  idx expected = 1;
  for (size_t k = 0; k < out_dims.size(); ++k) {
    if (out_dims[k] == 1) continue;
    if (out_steps[k] != expected) return false;
    expected *= out_dims[k];
  }
  return expected == out_size();
}

void ContractionPlan::check() const {
  a.check("contraction plan of x1");
  b.check("contraction plan of x2");
  if (rows < 0 || inner < 0 || cols < 0 || batch < 0)
    throw std::invalid_argument("contraction plan: negative size");
  if (a.kept != checked_count({rows, inner, batch}, "x1's gathered stack") ||
      b.kept != checked_count({inner, cols, batch}, "x2's gathered stack"))
    throw std::invalid_argument("contraction plan: the gathered operands do not fit the product");
  checked_count({rows, cols, batch}, "the contraction's output");
  if (out_dims.size() != out_steps.size() ||
      !is_permutation_of_contiguous(out_dims, out_steps, out_size()) ||
      product(out_dims) != out_size())
    throw std::invalid_argument("contraction plan: the output axes are not a permutation of the product");
}

namespace {

// The gathered stack of an operand: the caller's array itself when the
// gather is the identity in double, else a converted copy (kept in `own`).
template <class T>
const T* gathered(const double* x, const GatherPlan& plan, Buffer<T>& own, int threads) {
  if constexpr (std::is_same<T, double>::value) {
    if (plan.identity()) return x;
  }
  own.resize(static_cast<size_t>(plan.kept));
  gather_reduce(x, plan, own.data(), threads);
  return own.data();
}

}  // namespace

template <class T>
void contraction_forward(const double* x1, const double* x2, const ContractionPlan& plan,
                         double* out, int threads) {
  plan.check();
  const idx n = plan.out_size();
  if (n == 0) return;
  Buffer<T> a_own, b_own, c_own;
  const T* a = gathered(x1, plan.a, a_own, threads);
  const T* b = gathered(x2, plan.b, b_own, threads);
  T* c = nullptr;
  bool direct = false;
  if constexpr (std::is_same<T, double>::value) {
    direct = plan.out_identity();
    if (direct) c = out;
  }
  if (!direct) {
    c_own.resize(static_cast<size_t>(n));
    c = c_own.data();
  }
  batched_gemm(a, false, b, false, c, plan.rows, plan.cols, plan.inner, plan.batch, threads);
  if (!direct) {
    strided_copy(static_cast<const T*>(c), plan.out_steps, out, contiguous_steps(plan.out_dims),
                 plan.out_dims, threads);
  }
}

template <class T>
void contraction_backward(const double* x1, const double* x2, const double* grad,
                          const ContractionPlan& plan, double* dx1, double* dx2, int threads) {
  plan.check();
  const idx n = plan.out_size();
  if (n == 0) {  // nothing flows back: zero gradients
    if (dx1) std::fill(dx1, dx1 + plan.a.source_size, 0.0);
    if (dx2) std::fill(dx2, dx2 + plan.b.source_size, 0.0);
    return;
  }
  // G in C's layout (rows, cols, batch).
  Buffer<T> g_own;
  const T* g = nullptr;
  bool direct_g = false;
  if constexpr (std::is_same<T, double>::value) {
    direct_g = plan.out_identity();
    if (direct_g) g = grad;
  }
  if (!direct_g) {
    g_own.resize(static_cast<size_t>(n));
    strided_copy(grad, contiguous_steps(plan.out_dims), g_own.data(), plan.out_steps,
                 plan.out_dims, threads);
    g = g_own.data();
  }
  auto input_gradient = [&](const GatherPlan& gp, double* dx, auto&& product) {
    if (!dx) return;
    if (gp.kept == 0 || (gp.source_size == 0)) {
      std::fill(dx, dx + gp.source_size, 0.0);
      return;
    }
    if constexpr (std::is_same<T, double>::value) {
      if (gp.identity()) {
        product(dx);
        return;
      }
    }
    Buffer<T> d(static_cast<size_t>(gp.kept));
    product(d.data());
    gather_reduce_backward(static_cast<const T*>(d.data()), gp, dx, threads);
  };
  Buffer<T> a_own, b_own;
  if (dx1) {
    const T* b = gathered(x2, plan.b, b_own, threads);
    // dA (rows, inner) = G (rows, cols) B^T
    input_gradient(plan.a, dx1, [&](T* da) {
      batched_gemm(g, false, b, true, da, plan.rows, plan.inner, plan.cols, plan.batch, threads);
    });
  }
  if (dx2) {
    const T* a = gathered(x1, plan.a, a_own, threads);
    // dB (inner, cols) = A^T G
    input_gradient(plan.b, dx2, [&](T* db) {
      batched_gemm(a, true, g, false, db, plan.inner, plan.cols, plan.rows, plan.batch, threads);
    });
  }
}

// ---- dot-product attention ------------------------------------------------------

namespace {

void check_dpa(const DpaShape& s) {
  if (s.B < 0 || s.T < 0 || s.S < 0 || s.N < 0 || s.K < 0 || s.H < 0)
    throw std::invalid_argument("dot_product_attention: negative size");
  if (s.N > 0 && (s.K <= 0 || s.N % s.K != 0))
    throw std::invalid_argument("dot_product_attention: query heads are not a multiple of key heads");
  checked_count({s.B, s.T, s.N, s.H}, "the query");
  checked_count({s.B, s.S, s.K, s.H}, "the key");
  checked_count({s.B, s.N, s.T, s.S}, "the attention probabilities");
}

// The per-head stacks of one call (see the header).
template <class T>
struct DpaStacks {
  Buffer<T> q, k, v;  // (T, H, B, N), (S, H, B, K), (S, H, B, K)
  DpaStacks(const double* qr, const double* kr, const double* vr, const DpaShape& s, int threads)
      : q(static_cast<size_t>(s.T * s.H * s.B * s.N)),
        k(static_cast<size_t>(s.S * s.H * s.B * s.K)),
        v(static_cast<size_t>(s.S * s.H * s.B * s.K)) {
    // R (B, T, N, H) -> (T, H, B, N): dst axis j is src axis perm[j].
    const std::vector<int> perm = {1, 3, 0, 2};
    permute_copy(qr, {s.B, s.T, s.N, s.H}, perm, q.data(), threads);
    permute_copy(kr, {s.B, s.S, s.K, s.H}, perm, k.data(), threads);
    permute_copy(vr, {s.B, s.S, s.K, s.H}, perm, v.data(), threads);
  }
};

// The probabilities of head (b, n), transposed: pt (S, T) column-major, each
// column one query's softmax over the keys. Also reports the masked
// positions through masked(s, t) (used by the backward).
template <class T>
class DpaHead {
 public:
  DpaHead(const DpaShape& s, const DpaExtras& e, idx b, idx n)
      : s_(s), e_(e), b_(b), n_(n) {}

  bool masked(idx t, idx sk) const {
    if (e_.causal && sk > t) return true;
    if (e_.mask) {
      const idx off = b_ * e_.mask_step[0] + n_ * e_.mask_step[1] + t * e_.mask_step[2] +
                      sk * e_.mask_step[3];
      if (e_.mask[off] == 0) return true;
    }
    return false;
  }

  void probs(const T* q, const T* k, T* pt) const {
    const idx S = s_.S, T_ = s_.T, H = s_.H;
    MMap<T> Pt(pt, S, T_);
    Pt.noalias() = CMap<T>(k, S, H) * CMap<T>(q, T_, H).transpose();
    const T scale = static_cast<T>(e_.scale), low = static_cast<T>(kDpaMaskedLogit);
    for (idx t = 0; t < T_; ++t) {
      T* col = pt + t * S;
      for (idx sk = 0; sk < S; ++sk) {
        T l = col[sk] * scale;
        if (e_.bias) {
          const idx off = b_ * e_.bias_step[0] + n_ * e_.bias_step[1] + t * e_.bias_step[2] +
                          sk * e_.bias_step[3];
          l += static_cast<T>(e_.bias[off]);
        }
        col[sk] = masked(t, sk) ? low : l;
      }
      if (S == 0) continue;
      T mx = col[0];
      for (idx sk = 1; sk < S; ++sk) mx = std::max(mx, col[sk]);
      T sum = 0;
      for (idx sk = 0; sk < S; ++sk) {
        col[sk] = std::exp(col[sk] - mx);
        sum += col[sk];
      }
      for (idx sk = 0; sk < S; ++sk) col[sk] /= sum;
    }
  }

 private:
  const DpaShape& s_;
  const DpaExtras& e_;
  idx b_, n_;
};

}  // namespace

template <class T>
void dpa_forward(const double* q, const double* k, const double* v, const DpaShape& s,
                 const DpaExtras& e, double* out, int threads) {
  check_dpa(s);
  const idx out_n = s.B * s.T * s.N * s.H;
  if (out_n == 0) return;
  if (s.S == 0) {
    std::fill(out, out + out_n, 0.0);
    return;
  }
  DpaStacks<T> st(q, k, v, s, threads);
  const idx G = s.N / s.K, heads = s.B * s.N, TH = s.T * s.H, SH = s.S * s.H, ST = s.S * s.T;
  Buffer<T> o(static_cast<size_t>(out_n));
  const int used = threads_for_macs(2.0 * heads * ST * s.H, threads);
  Buffer<T> scratch(static_cast<size_t>(checked_count({idx(used), ST}, "attention scratch")));
  parallel_for(static_cast<long>(heads), used, [&](long p) {
    const idx b = p % s.B, n = p / s.B, kv = b + s.B * (n / G);
    T* pt = scratch.data() + thread_index(used) * ST;
    DpaHead<T>(s, e, b, n).probs(st.q.data() + p * TH, st.k.data() + kv * SH, pt);
    MMap<T>(o.data() + p * TH, s.T, s.H).noalias() =
        CMap<T>(pt, s.S, s.T).transpose() * CMap<T>(st.v.data() + kv * SH, s.S, s.H);
  });
  // (T, H, B, N) -> R's (B, T, N, H).
  permute_copy(o.data(), {s.T, s.H, s.B, s.N}, {2, 0, 3, 1}, out, threads);
}

template <class T>
void dpa_backward(const double* q, const double* k, const double* v, const DpaShape& s,
                  const DpaExtras& e, const double* grad, double* dq, double* dk, double* dv,
                  double* dbias, int threads) {
  check_dpa(s);
  const idx q_n = s.B * s.T * s.N * s.H, kv_n = s.B * s.S * s.K * s.H;
  const idx bias_n = e.bias_dims[0] * e.bias_dims[1] * e.bias_dims[2] * e.bias_dims[3];
  std::fill(dq, dq + q_n, 0.0);
  std::fill(dk, dk + kv_n, 0.0);
  std::fill(dv, dv + kv_n, 0.0);
  if (dbias) std::fill(dbias, dbias + bias_n, 0.0);
  if (q_n == 0 || s.S == 0) return;
  DpaStacks<T> st(q, k, v, s, threads);
  const idx G = s.N / s.K, heads = s.B * s.N, TH = s.T * s.H, SH = s.S * s.H, ST = s.S * s.T;
  Buffer<T> go(static_cast<size_t>(q_n));
  permute_copy(grad, {s.B, s.T, s.N, s.H}, {1, 3, 0, 2}, go.data(), threads);
  Buffer<T> probs(static_cast<size_t>(heads * ST)), dlog(static_cast<size_t>(heads * ST));
  Buffer<T> dqc(static_cast<size_t>(q_n));
  const T scale = static_cast<T>(e.scale);
  const int used = threads_for_macs(4.0 * heads * ST * s.H, threads);
  // Per head: probabilities, d(logits) (zero where masked), dq.
  parallel_for(static_cast<long>(heads), used, [&](long p) {
    const idx b = p % s.B, n = p / s.B, kv = b + s.B * (n / G);
    const DpaHead<T> head(s, e, b, n);
    T* pt = probs.data() + p * ST;
    T* dl = dlog.data() + p * ST;
    head.probs(st.q.data() + p * TH, st.k.data() + kv * SH, pt);
    const CMap<T> V(st.v.data() + kv * SH, s.S, s.H), K(st.k.data() + kv * SH, s.S, s.H);
    const CMap<T> dO(go.data() + p * TH, s.T, s.H);
    MMap<T>(dl, s.S, s.T).noalias() = V * dO.transpose();  // dP^T (S, T)
    for (idx t = 0; t < s.T; ++t) {
      T* d = dl + t * s.S;
      const T* pc = pt + t * s.S;
      T dot = 0;
      for (idx sk = 0; sk < s.S; ++sk) dot += pc[sk] * d[sk];
      for (idx sk = 0; sk < s.S; ++sk) d[sk] = head.masked(t, sk) ? T(0) : pc[sk] * (d[sk] - dot);
    }
    MMap<T> dQ(dqc.data() + p * TH, s.T, s.H);
    dQ.noalias() = CMap<T>(dl, s.S, s.T).transpose() * K;
    dQ *= scale;
  });
  // Per key/value head: sums over the query heads of its group, in order.
  Buffer<T> dkc(static_cast<size_t>(kv_n)), dvc(static_cast<size_t>(kv_n));
  parallel_for(static_cast<long>(s.B * s.K), used, [&](long kvp) {
    const idx b = kvp % s.B, kh = kvp / s.B;
    MMap<T> dK(dkc.data() + kvp * SH, s.S, s.H), dV(dvc.data() + kvp * SH, s.S, s.H);
    for (idx g = 0; g < G; ++g) {
      const idx p = b + s.B * (kh * G + g);
      const CMap<T> P(probs.data() + p * ST, s.S, s.T), dL(dlog.data() + p * ST, s.S, s.T);
      const CMap<T> dO(go.data() + p * TH, s.T, s.H), Q(st.q.data() + p * TH, s.T, s.H);
      if (g == 0) {
        dV.noalias() = P * dO;
        dK.noalias() = dL * Q;
      } else {
        dV.noalias() += P * dO;
        dK.noalias() += dL * Q;
      }
    }
    dK *= scale;
  });
  permute_copy(dqc.data(), {s.T, s.H, s.B, s.N}, {2, 0, 3, 1}, dq, threads);
  permute_copy(dkc.data(), {s.S, s.H, s.B, s.K}, {2, 0, 3, 1}, dk, threads);
  permute_copy(dvc.data(), {s.S, s.H, s.B, s.K}, {2, 0, 3, 1}, dv, threads);
  if (!dbias || bias_n == 0) return;
  // dbias: d(logits) summed over the bias's broadcast axes, in a fixed order
  // (n, b, t, s). dlog's steps along (B, N, T, S):
  const idx full[4] = {s.B, s.N, s.T, s.S};
  const idx lstep[4] = {ST, ST * s.B, s.S, 1};
  const idx* bd = e.bias_dims;
  const int used_b = threads_for_elements(static_cast<double>(heads) * ST, threads);
  constexpr idx kBlock = 256;
  parallel_for(static_cast<long>(ceil_div(bias_n, kBlock)), used_b, [&](long blk) {
    const idx j0 = blk * kBlock, j1 = std::min(bias_n, j0 + kBlock);
    for (idx j = j0; j < j1; ++j) {
      idx r = j, at[4];
      for (int a = 0; a < 4; ++a) {  // column-major over (B, N, T, S)
        at[a] = r % bd[a];
        r /= bd[a];
      }
      idx lo[4], hi[4];
      for (int a = 0; a < 4; ++a) {
        const bool spread = bd[a] == 1 && full[a] != 1;
        lo[a] = spread ? 0 : at[a];
        hi[a] = spread ? full[a] : at[a] + 1;
      }
      T acc = 0;
      for (idx n = lo[1]; n < hi[1]; ++n)
        for (idx b = lo[0]; b < hi[0]; ++b)
          for (idx t = lo[2]; t < hi[2]; ++t) {
            const T* row = dlog.data() + b * lstep[0] + n * lstep[1] + t * lstep[2];
            for (idx sk = lo[3]; sk < hi[3]; ++sk) acc += row[sk];
          }
      dbias[j] = static_cast<double>(acc);
    }
  });
}

#define MH_INSTANTIATE_LINALG(T)                                                                   \
  template void gather_reduce<T>(const double*, const GatherPlan&, T*, int);                       \
  template void gather_reduce_backward<T>(const T*, const GatherPlan&, double*, int);              \
  template void batched_gemm<T>(const T*, bool, const T*, bool, T*, idx, idx, idx, idx, int);      \
  template void contraction_forward<T>(const double*, const double*, const ContractionPlan&,       \
                                       double*, int);                                              \
  template void contraction_backward<T>(const double*, const double*, const double*,               \
                                        const ContractionPlan&, double*, double*, int);            \
  template void dpa_forward<T>(const double*, const double*, const double*, const DpaShape&,       \
                               const DpaExtras&, double*, int);                                    \
  template void dpa_backward<T>(const double*, const double*, const double*, const DpaShape&,      \
                                const DpaExtras&, const double*, double*, double*, double*,        \
                                double*, int);

MH_INSTANTIATE_LINALG(float)
MH_INSTANTIATE_LINALG(double)

template void strided_copy<double, double>(const double*, const std::vector<idx>&, double*,
                                           const std::vector<idx>&, const std::vector<idx>&, int);
template void strided_copy<double, float>(const double*, const std::vector<idx>&, float*,
                                          const std::vector<idx>&, const std::vector<idx>&, int);
template void strided_copy<float, double>(const float*, const std::vector<idx>&, double*,
                                          const std::vector<idx>&, const std::vector<idx>&, int);

}  // namespace mh

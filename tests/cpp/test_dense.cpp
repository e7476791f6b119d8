// dense_forward / dense_backward_* (dense.h) against naive loops, and the
// backward pass against finite differences of the forward pass (double).
#include <cmath>

#include "dense.h"
#include "dense_colmajor.h"
#include "test_util.h"

namespace {

using mh::idx;
using mhtest::expect_close;
using mhtest::random_values;

struct Shape {
  idx rows, in, out;
};
// Single element, small, several row blocks (and threaded), more than one
// feature block, no rows.
const Shape kShapes[] = {{1, 1, 1}, {5, 3, 4}, {600, 70, 9}, {0, 3, 4}};

template <class T>
void check_forward(double tol) {
  for (const Shape& s : kShapes) {
    for (bool with_bias : {false, true}) {
      const auto x = random_values<T>(s.rows * s.in, 1), w = random_values<T>(s.in * s.out, 2),
                 b = random_values<T>(s.out, 3);
      std::vector<T> y(static_cast<size_t>(s.rows * s.out), T(99));
      const T* bias = with_bias ? b.data() : nullptr;
      mh::dense_forward(x.data(), s.rows, s.in, w.data(), bias, s.out, y.data(), 2);
      expect_close(y, mhtest::naive_dense(x.data(), s.rows, s.in, w.data(), bias, s.out), tol,
                   "dense_forward rows=" + std::to_string(s.rows));
    }
  }
}

TEST(Dense, ForwardMatchesNaiveLoopsDouble) { check_forward<double>(1e-12); }
TEST(Dense, ForwardMatchesNaiveLoopsFloat) { check_forward<float>(1e-5); }

template <class T>
void check_backward_naive(double tol) {
  for (const Shape& s : kShapes) {
    const auto x = random_values<T>(s.rows * s.in, 4), w = random_values<T>(s.in * s.out, 5),
               dy = random_values<T>(s.rows * s.out, 6), dx0 = random_values<T>(s.rows * s.in, 7);
    // dx = dy w^T, and dx0 + dy w^T when accumulating.
    std::vector<double> dx_ref(static_cast<size_t>(s.rows * s.in), 0.0);
    for (idx r = 0; r < s.rows; ++r)
      for (idx i = 0; i < s.in; ++i)
        for (idx o = 0; o < s.out; ++o)
          dx_ref[r * s.in + i] += static_cast<double>(dy[r * s.out + o]) * w[i * s.out + o];
    std::vector<T> dx(dx0.size(), T(99));
    mh::dense_backward_input(dy.data(), s.rows, s.out, w.data(), s.in, dx.data(), false, 2);
    expect_close(dx, dx_ref, tol, "dense_backward_input");
    std::vector<T> dxa = dx0;
    mh::dense_backward_input(dy.data(), s.rows, s.out, w.data(), s.in, dxa.data(), true, 2);
    for (size_t i = 0; i < dx_ref.size(); ++i) dx_ref[i] += dx0[i];
    expect_close(dxa, dx_ref, tol, "dense_backward_input accumulate");

    // dw = x^T dy, db = column sums of dy.
    std::vector<double> dw_ref(static_cast<size_t>(s.in * s.out), 0.0),
        db_ref(static_cast<size_t>(s.out), 0.0);
    for (idx r = 0; r < s.rows; ++r)
      for (idx o = 0; o < s.out; ++o) {
        db_ref[o] += dy[r * s.out + o];
        for (idx i = 0; i < s.in; ++i)
          dw_ref[i * s.out + o] += static_cast<double>(x[r * s.in + i]) * dy[r * s.out + o];
      }
    std::vector<T> dw(dw_ref.size(), T(99)), db(db_ref.size(), T(99));
    mh::dense_backward_weights(x.data(), dy.data(), s.rows, s.in, s.out, dw.data(), db.data(), 2);
    expect_close(dw, dw_ref, tol, "dense_backward_weights dw");
    expect_close(db, db_ref, tol, "dense_backward_weights db");
    // Without db only dw is written.
    std::vector<T> dw2(dw_ref.size(), T(99));
    mh::dense_backward_weights(x.data(), dy.data(), s.rows, s.in, s.out, dw2.data(),
                               static_cast<T*>(nullptr), 1);
    expect_close(dw2, dw_ref, tol, "dense_backward_weights without db");
  }
}

TEST(Dense, BackwardMatchesNaiveLoopsDouble) { check_backward_naive<double>(1e-12); }
TEST(Dense, BackwardMatchesNaiveLoopsFloat) { check_backward_naive<float>(2e-5); }

TEST(Dense, BackwardMatchesFiniteDifferences) {
  const idx rows = 4, in = 3, out = 5;
  auto x = random_values<double>(rows * in, 8), w = random_values<double>(in * out, 9),
       b = random_values<double>(out, 10);
  const auto g = random_values<double>(rows * out, 11);  // dL/dy, L = sum(g * y)
  auto loss = [&] {
    std::vector<double> y(static_cast<size_t>(rows * out));
    mh::dense_forward(x.data(), rows, in, w.data(), b.data(), out, y.data(), 1);
    return mhtest::weighted_sum(y.data(), g);
  };
  std::vector<double> dx(x.size()), dw(w.size()), db(b.size());
  mh::dense_backward_input(g.data(), rows, out, w.data(), in, dx.data(), false, 1);
  mh::dense_backward_weights(x.data(), g.data(), rows, in, out, dw.data(), db.data(), 1);
  expect_close(dx, mhtest::numeric_gradient(x, loss), 1e-7, "dx");
  expect_close(dw, mhtest::numeric_gradient(w, loss), 1e-7, "dw");
  expect_close(db, mhtest::numeric_gradient(b, loss), 1e-7, "db");
}

}  // namespace

// dense_forward_blocks_colmajor (x as R stores it: column-major doubles)
// against naive loops: rows that are not a multiple of any block or panel,
// outputs that are not a multiple of a register strip, more inputs than one
// pass of the packed float kernel covers (256), with and without a bias,
// two products in one call, 1 and 2 threads bitwise equal; and the
// finite-value check (a NaN, an Inf, in a panel body, in the last column's
// first panel -- columns past a multiple of 8 are packed one by one -- and in
// the last, partial panel).
template <class T>
void check_forward_colmajor(idx rows, idx in, idx out, double tol) {
  SCOPED_TRACE("rows " + std::to_string(rows) + ", in " + std::to_string(in) + ", out " +
               std::to_string(out));
  const auto x1 = random_values<double>(rows * in, 31), x2 = random_values<double>(rows * in, 32);
  const auto w1 = random_values<T>(in * out, 33), w2 = random_values<T>(in * out, 34),
             b1 = random_values<T>(out, 35);
  // core layout (rows, in) of the column-major sources, for the naive product
  std::vector<T> x1c(x1.size()), x2c(x2.size());
  for (idx r = 0; r < rows; ++r)
    for (idx f = 0; f < in; ++f) {
      x1c[r * in + f] = static_cast<T>(x1[r + f * rows]);
      x2c[r * in + f] = static_cast<T>(x2[r + f * rows]);
    }
  std::vector<std::vector<T>> runs;
  for (int threads : {1, 2}) {
    std::vector<T> y1(static_cast<size_t>(rows * out), T(99)), y2(y1);
    auto store = [&](std::vector<T>& y) {
      return [&y, out](idx r0, idx nr, const T* block) {
        std::copy(block, block + nr * out, y.begin() + r0 * out);
      };
    };
    bool finite1 = false, finite2 = false;
    mh::dense_forward_blocks_colmajor<T>(
        {mh::ColMajorProduct<T>{x1.data(), rows, rows, in, w1.data(), b1.data(), out, store(y1),
                                &finite1},
         mh::ColMajorProduct<T>{x2.data(), rows, rows, in, w2.data(), nullptr, out, store(y2),
                                &finite2}},
        threads);
    EXPECT_TRUE(finite1 && finite2);
    expect_close(y1, mhtest::naive_dense(x1c.data(), rows, in, w1.data(), b1.data(), out), tol, "y1");
    expect_close(y2, mhtest::naive_dense(x2c.data(), rows, in, w2.data(), static_cast<const T*>(nullptr), out), tol, "y2");
    y1.insert(y1.end(), y2.begin(), y2.end());
    runs.push_back(y1);
  }
  EXPECT_TRUE(mhtest::bitwise_equal(runs[0], runs[1]));
  // A non-finite value anywhere is reported (and only for its product).
  for (idx at : {idx(0), rows * in / 2, rows * (in - 1), rows * in - 1}) {
    for (double bad : {std::nan(""), static_cast<double>(INFINITY)}) {
      std::vector<double> xb = x1;
      xb[static_cast<size_t>(at)] = bad;
      bool finite1 = true, finite2 = false;
      auto discard = [](idx, idx, const T*) {};
      mh::dense_forward_blocks_colmajor<T>(
          {mh::ColMajorProduct<T>{xb.data(), rows, rows, in, w1.data(), b1.data(), out, discard,
                                  &finite1},
           mh::ColMajorProduct<T>{x2.data(), rows, rows, in, w2.data(), nullptr, out, discard,
                                  &finite2}},
          2);
      EXPECT_FALSE(finite1) << "value " << at;
      EXPECT_TRUE(finite2) << "value " << at;
    }
  }
}

TEST(Dense, ColumnMajorForwardMatchesNaiveLoops) {
  check_forward_colmajor<float>(1000, 40, 37, 1e-5);
  check_forward_colmajor<float>(301, 300, 16, 1e-5);
  check_forward_colmajor<float>(7, 3, 5, 1e-5);
  check_forward_colmajor<float>(1, 600, 20, 1e-5);
  check_forward_colmajor<double>(1000, 40, 37, 1e-12);
  check_forward_colmajor<double>(301, 300, 16, 1e-12);
}

// ColMajorProduct::direct_rows: the packed float kernel writes y in place,
// each row at its own address (a shuffled row order with gaps) and each
// 16-column run at its own offset (runs out of order, a partial last run),
// more than one pass over the inputs (> 256: the kernel reads back what it
// wrote), 1 and 2 threads bitwise equal; the finite check still works; the
// Eigen builds and double call `store` instead, which must give the same y.
template <class T>
void check_direct_colmajor(idx rows, idx in, idx out, double tol) {
  SCOPED_TRACE("rows " + std::to_string(rows) + ", in " + std::to_string(in) + ", out " +
               std::to_string(out));
  const auto x = random_values<double>(rows * in, 51);
  const auto w = random_values<T>(in * out, 52), b = random_values<T>(out, 53);
  std::vector<T> xc(static_cast<size_t>(rows * in));
  for (idx r = 0; r < rows; ++r)
    for (idx f = 0; f < in; ++f) xc[r * in + f] = static_cast<T>(x[r + f * rows]);
  const auto ref = mhtest::naive_dense(xc.data(), rows, in, w.data(), b.data(), out);
  const idx strips = (out + 15) / 16, ld = strips * 17 + 5;  // a destination row: ld values
  std::vector<idx> strip(static_cast<size_t>(strips));  // reversed, gaps, odd offsets
  for (idx s = 0; s < strips; ++s) strip[s] = (strips - 1 - s) * 17 + (s % 2);
  auto dest_row = [rows](idx r) { return (r * 7) % rows; };  // a permutation if rows % 7 != 0
  std::vector<std::vector<T>> runs;
  for (int threads : {1, 2}) {
    std::vector<T> y(static_cast<size_t>(rows * ld), T(99));
    bool finite = false;
    mh::ColMajorProduct<T> p{x.data(), rows, rows, in, w.data(), b.data(), out,
                             [&](idx r0, idx nr, const T* block) {  // the fallback
                               for (idx i = 0; i < nr; ++i)
                                 for (idx j = 0; j < out; ++j)
                                   y[dest_row(r0 + i) * ld + strip[j / 16] + j % 16] =
                                       block[i * out + j];
                             },
                             &finite};
    p.direct_rows = [&](idx r0, idx nr, T** dst) {
      for (idx i = 0; i < nr; ++i) dst[i] = y.data() + dest_row(r0 + i) * ld;
    };
    p.direct_strip = strip.data();
    mh::dense_forward_blocks_colmajor<T>({p}, threads);
    EXPECT_TRUE(finite);
    std::vector<T> got(static_cast<size_t>(rows * out));
    for (idx r = 0; r < rows; ++r)
      for (idx j = 0; j < out; ++j) got[r * out + j] = y[dest_row(r) * ld + strip[j / 16] + j % 16];
    expect_close(got, ref, tol, "y");
    // nothing outside the rows' columns was touched
    std::vector<char> used(static_cast<size_t>(ld), 0);
    for (idx j = 0; j < out; ++j) used[strip[j / 16] + j % 16] = 1;
    int touched = 0;
    for (idx r = 0; r < rows; ++r)
      for (idx c = 0; c < ld; ++c) touched += !used[c] && y[r * ld + c] != T(99);
    EXPECT_EQ(touched, 0);
    runs.push_back(y);
  }
  EXPECT_TRUE(mhtest::bitwise_equal(runs[0], runs[1]));
  std::vector<double> xb = x;
  xb[static_cast<size_t>(rows * in / 2)] = std::nan("");
  bool finite = true;
  std::vector<T> y(static_cast<size_t>(rows * ld));
  mh::ColMajorProduct<T> p{xb.data(), rows, rows, in, w.data(), b.data(), out,
                           [](idx, idx, const T*) {}, &finite};
  p.direct_rows = [&](idx r0, idx nr, T** dst) {
    for (idx i = 0; i < nr; ++i) dst[i] = y.data() + dest_row(r0 + i) * ld;
  };
  p.direct_strip = strip.data();
  mh::dense_forward_blocks_colmajor<T>({p}, 2);
  EXPECT_FALSE(finite);
}

TEST(Dense, ColumnMajorForwardWritesRowsInPlace) {
  check_direct_colmajor<float>(1000, 40, 48, 1e-5);
  check_direct_colmajor<float>(305, 300, 40, 1e-5);
  check_direct_colmajor<float>(9, 3, 16, 1e-5);
  check_direct_colmajor<double>(305, 300, 40, 1e-12);
}

// dense_forward_gather_colmajor against naive loops: rows gathered through a
// row map, the result written as column-major doubles with a leading
// dimension larger than the rows and through a column map (and without);
// rows and outputs that are not multiples of 8 (the transposing store) or
// of a panel or strip, more inputs than one pass of the packed kernel.
template <class T>
void check_gather_colmajor(idx rows, idx in, idx out, bool map_cols, double tol) {
  SCOPED_TRACE("rows " + std::to_string(rows) + ", in " + std::to_string(in) + ", out " +
               std::to_string(out));
  const auto x = random_values<T>(rows * in, 41), w = random_values<T>(in * out, 42),
             b = random_values<T>(out, 43);
  std::vector<idx> x_row(static_cast<size_t>(rows)), y_col(static_cast<size_t>(out));
  for (idx r = 0; r < rows; ++r) x_row[r] = rows - 1 - r;
  for (idx j = 0; j < out; ++j) y_col[j] = (j * 3 + 1) % out;  // a permutation if out % 3 != 0
  std::vector<T> xg(x.size());  // the gathered rows, for the naive product
  for (idx r = 0; r < rows; ++r)
    std::copy(x.begin() + x_row[r] * in, x.begin() + (x_row[r] + 1) * in, xg.begin() + r * in);
  const auto ref = mhtest::naive_dense(xg.data(), rows, in, w.data(), b.data(), out);
  const idx ldy = rows + 3;
  std::vector<std::vector<double>> runs;
  for (int threads : {1, 2}) {
    std::vector<double> y(static_cast<size_t>(ldy * out), 99.0);
    mh::dense_forward_gather_colmajor<T>(x.data(), x_row.data(), rows, in, w.data(), b.data(),
                                         out, y.data(), ldy, map_cols ? y_col.data() : nullptr,
                                         threads);
    std::vector<double> got(static_cast<size_t>(rows * out));
    for (idx r = 0; r < rows; ++r)
      for (idx j = 0; j < out; ++j) got[r * out + j] = y[(map_cols ? y_col[j] : j) * ldy + r];
    expect_close(got, ref, tol, "y");
    for (idx j = 0; j < out; ++j)
      for (idx r = rows; r < ldy; ++r) EXPECT_EQ(y[j * ldy + r], 99.0) << "padding written";
    runs.push_back(y);
  }
  EXPECT_TRUE(mhtest::bitwise_equal(runs[0], runs[1]));
}

TEST(Dense, GatherColumnMajorForwardMatchesNaiveLoops) {
  check_gather_colmajor<float>(1000, 40, 37, true, 1e-5);
  check_gather_colmajor<float>(301, 300, 16, false, 1e-5);
  check_gather_colmajor<float>(7, 3, 5, true, 1e-5);
  check_gather_colmajor<double>(301, 300, 16, true, 1e-12);
}

namespace {

// dense_backward_colmajor_x against dense_backward_weights +
// dense_backward_input on the core's layout (double): x given as R stores it
// (column-major, rows in a shuffled order), two terms (as the query with a
// gate), several row blocks; and a kernel so wide that its per-group partial
// sums would be too large, which takes the unfused feature-band path.
template <class T>
void check_backward_colmajor_x(idx rows, idx in, idx out1, idx out2, double tol) {
  const auto x = random_values<T>(rows * in, 21);  // core layout (rows, in)
  const auto dy1 = random_values<T>(rows * out1, 22), dy2 = random_values<T>(rows * out2, 23);
  const auto w1 = random_values<T>(in * out1, 24), w2 = random_values<T>(in * out2, 25);
  std::vector<idx> x_row(static_cast<size_t>(rows));  // R row r is core row x_row[r]
  for (idx r = 0; r < rows; ++r) x_row[r] = (r * 7 + 3) % rows;  // a permutation (rows % 7 != 0)
  std::vector<double> xr(x.size());
  for (idx r = 0; r < rows; ++r)
    for (idx f = 0; f < in; ++f) xr[r + f * rows] = x[x_row[r] * in + f];
  std::vector<T> dw1(in * out1), db1(out1), dw2(in * out2), db2(out2);
  std::vector<double> dx(rows * in, 99.0);
  std::vector<std::vector<double>> runs;
  for (int threads : {1, 2}) {
    int side_runs = 0;  // the side job runs exactly once, on every path
    mh::dense_backward_colmajor_x<T>(
        {mh::ColMajorBackward<T>{xr.data(), rows, x_row.data(), rows, in,
                                      {{dy1.data(), out1, w1.data(), dw1.data(), db1.data()},
                                       {dy2.data(), out2, w2.data(), dw2.data(), db2.data()}},
                                      dx.data(), rows}},
        threads, [&] { ++side_runs; });
    EXPECT_EQ(side_runs, 1) << threads << " threads";
    std::vector<double> all(dw1.begin(), dw1.end());
    for (const auto* v : {&db1, &dw2, &db2}) all.insert(all.end(), v->begin(), v->end());
    all.insert(all.end(), dx.begin(), dx.end());
    runs.push_back(all);
  }
  EXPECT_TRUE(mhtest::bitwise_equal(runs[0], runs[1]));
  std::vector<T> rdw1(dw1.size()), rdb1(out1), rdw2(dw2.size()), rdb2(out2), rdx(dx.size());
  mh::dense_backward_weights<T>(x.data(), dy1.data(), rows, in, out1, rdw1.data(), rdb1.data(), 1);
  mh::dense_backward_weights<T>(x.data(), dy2.data(), rows, in, out2, rdw2.data(), rdb2.data(), 1);
  mh::dense_backward_input<T>(dy1.data(), rows, out1, w1.data(), in, rdx.data(), false, 1);
  mh::dense_backward_input<T>(dy2.data(), rows, out2, w2.data(), in, rdx.data(), true, 1);
  std::vector<T> dx_core(dx.size());
  for (idx r = 0; r < rows; ++r)
    for (idx f = 0; f < in; ++f) dx_core[x_row[r] * in + f] = static_cast<T>(dx[r + f * rows]);
  auto wide = [](const std::vector<T>& v) { return std::vector<double>(v.begin(), v.end()); };
  expect_close(dw1, wide(rdw1), tol, "dw1");
  expect_close(db1, wide(rdb1), tol, "db1");
  expect_close(dw2, wide(rdw2), tol, "dw2");
  expect_close(db2, wide(rdb2), tol, "db2");
  expect_close(dx_core, wide(rdx), tol, "dx");
}

TEST(Dense, FusedColumnMajorBackwardMatchesUnfused) {
  check_backward_colmajor_x<double>(1300, 40, 24, 16, 1e-12);  // 6 row blocks in groups
  check_backward_colmajor_x<double>(5, 3, 2, 4, 1e-12);        // one block
  check_backward_colmajor_x<double>(600, 2100, 2000, 8, 1e-10);  // too wide for partials: feature bands
  // float (Eigen products after the same conversions)
  check_backward_colmajor_x<float>(1300, 40, 24, 16, 2e-5);
  check_backward_colmajor_x<float>(5, 3, 2, 4, 2e-5);
  check_backward_colmajor_x<float>(701, 300, 37, 9, 2e-5);
}

}  // namespace

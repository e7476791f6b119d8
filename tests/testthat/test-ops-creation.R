# Tensor-creation ops (R/ops-creation.R): eager results against plain-R
# references, dtypes, symbolic `*_like` shapes with NA sizes, the graph runner
# equal to eager, gradients (fill values, triangles), bad input.

err <- "multihead_error"

ref_f32 <- function(x) {
  out <- readBin(writeBin(as.double(x), raw(), size = 4), "double", n = length(x), size = 4)
  attributes(out) <- attributes(x)
  out
}

sym <- function(shape, dtype = "float32") multihead:::new_placeholder_tensor(shape, dtype, "p")

# ---- op_arange -------------------------------------------------------------------------

test_that("op_arange() follows keras3's R convention (1-based, end included)", {
  expect_identical(op_arange(3L), array(1:3, 3))
  expect_identical(op_arange(3), array(c(1, 2, 3), 3))
  expect_identical(op_arange(3, dtype = "int32"), array(1:3, 3))
  expect_identical(op_arange(3L, 7L), array(3:7, 5))
  expect_identical(op_arange(3L, 7L, 2L), array(c(3L, 5L, 7L), 3))
  expect_identical(op_arange(3L, 8L, 2L), array(c(3L, 5L, 7L), 3))                   # within [start, end]
  expect_identical(op_arange(8L, 3L, -2L), array(c(8L, 6L, 4L), 3))
  expect_identical(op_arange(0, 0.3, 0.1, dtype = "float64"), array((0:3) * 0.1, 4))   # 0.3 * (1 + 1e-16) kept
  expect_identical(op_arange(0, 1, 0.3, dtype = "float64"), array((0:3) * 0.3, 4))
  expect_identical(op_arange(1L, 8L, 3L, include_end = FALSE), array(c(1L, 4L, 7L), 3))
  expect_identical(op_arange(1L, 7L, 3L, include_end = FALSE), array(c(1L, 4L), 2))
  expect_identical(op_arange(7L, 3L, -2L), array(c(7L, 5L, 3L), 3))
  expect_identical(op_arange(5, 1, -1), array(c(5, 4, 3, 2, 1), 5))
  expect_identical(op_arange(0, 1, 0.25), array(seq(0, 1, by = 0.25), 5))
  expect_identical(op_arange(0L, 5L, include_end = FALSE), array(0:4, 5))
  expect_identical(op_arange(2L, include_end = FALSE), array(1L, 1))
  expect_identical(op_arange(5L, 1L), array(integer(0), 0))
  # dtypes from R types: any double gives float32; an integer dtype truncates start and end (keras3)
  expect_type(op_arange(1L, 3L, 0.5), "double")
  expect_identical(op_arange(1L, 3L, 0.5), array(seq(1, 3, by = 0.5), 5))
  expect_identical(op_arange(1.7, 4.2, dtype = "int32"), array(1:4, 4))
  expect_identical(op_arange(2, 4, dtype = "int64"), array(c(2, 3, 4), 3))          # int64: whole doubles
  # float32 values are held rounded; float64 not; NumPy's length rule (end + step, half-open)
  y <- op_arange(0, 1, 0.1)
  expect_identical(as.vector(y), ref_f32((0:10) * 0.1))
  expect_identical(as.vector(op_arange(0, 1, 0.1, dtype = "float64")), (0:10) * 0.1)
  expect_identical(as.vector(op_arange(1, 1.2, 0.1, dtype = "float64")), 1 + (0:2) * 0.1)
  expect_identical(as.vector(op_arange(1, 1.3, 0.1, dtype = "float64", include_end = FALSE)), 1 + (0:3) * 0.1)
  expect_identical(as.vector(op_arange(0.5, 2.5)), c(0.5, 1.5, 2.5))
})

test_that("op_arange() is a constant inside traced code", {
  x <- keras_input(shape = 3)
  y <- x + op_arange(3)
  expect_identical(y$shape, c(NA, 3L))
  r <- graph_run_op(function(p) p * op_arange(3), list(matrix(1, 2, 3)))
  expect_identical(r$output, matrix(c(1, 1, 2, 2, 3, 3), 2))
  # inside a traced call() a graph constant, so keras-style code can index it with newaxis
  t4 <- multihead:::with_trace_frame(op_arange(4L))
  expect_true(multihead:::is_symbolic(t4))
  expect_identical(t4$dtype, "int32")
  expect_identical(as.vector(graph_run_op(function(p) p + op_arange(0L, 2L, include_end = FALSE), list(1L))$output), c(1L, 2L))
})

test_that("op_arange() rejects bad input, naming the argument", {
  expect_error(op_arange(), "`start` must be supplied", class = err)
  expect_error(op_arange("3"), "`start` must be a single finite number", class = err)
  expect_error(op_arange(NA), "`start` must be a single finite number", class = err)
  expect_error(op_arange(c(1, 2)), "`start` must be a single finite number", class = err)
  expect_error(op_arange(Inf), "`start` must be a single finite number", class = err)
  expect_error(op_arange(1, NA_real_), "`end` must be a single finite number", class = err)
  expect_error(op_arange(1, keras_input(shape = 1)), "`end` must be a single finite number", class = err)
  expect_error(op_arange(1, 5, 0), "`step` must be a number other than 0", class = err)
  expect_error(op_arange(1, 5, "1"), "`step` must be a single finite number", class = err)
  expect_error(op_arange(1, 5, 0.5, dtype = "int32"), "`step` must be a whole number", class = err)
  expect_error(op_arange(3, dtype = "bool"), "`dtype` must be a numeric dtype", class = err)
  expect_error(op_arange(3, dtype = "float16"), "`dtype` must be NULL or one of", class = err)
  expect_error(op_arange(3, include_end = NA), "`include_end` must be TRUE or FALSE", class = err)
  expect_error(op_arange(1e15), "`start` must be small enough", class = err)
  expect_error(op_arange(1, 1e15), "`end` must be small enough", class = err)
  expect_error(op_arange(3e9, 3e9, dtype = "int32"), "`end` must be within the range of int32", class = err)
})

# ---- op_ones, op_zeros, op_full -----------------------------------------------------------

test_that("op_ones(), op_zeros(), op_full() make arrays of a known shape", {
  expect_identical(op_ones(c(2, 3)), matrix(1, 2, 3))
  expect_identical(op_zeros(c(2, 3, 4)), array(0, c(2, 3, 4)))
  expect_identical(op_ones(3, dtype = "int32"), array(1L, 3))
  expect_identical(op_zeros(c(2, 2), dtype = "bool"), matrix(FALSE, 2, 2))
  expect_identical(op_ones(list(2L, 1L), dtype = "float64"), matrix(1, 2, 1))
  expect_identical(op_ones(integer(0)), 1)
  expect_identical(op_zeros(c(0, 3)), matrix(0, 0, 3))
  expect_identical(op_full(c(2, 2), 7), matrix(7, 2, 2))
  expect_identical(op_full(c(2, 3), c(1, 2, 3)), matrix(c(1, 1, 2, 2, 3, 3), 2))      # broadcast on the last axis
  expect_identical(op_full(c(2, 3), matrix(c(5, 6), 2, 1)), matrix(c(5, 6), 2, 3))
  expect_identical(op_full(3, 2.7, dtype = "int32"), array(2L, 3))
  expect_identical(op_full(2, 0.1), array(ref_f32(c(0.1, 0.1)), 2))                    # float32 default
  expect_identical(op_full(2, 0.1, dtype = "float64"), array(0.1, 2))
  expect_identical(op_full(c(1, 2), 3, dtype = "bool"), matrix(TRUE, 1, 2))
  expect_identical(op_full(integer(0), 4), 4)
  # constants inside traced code
  z <- multihead:::with_trace_frame(list(op_ones(2), op_zeros(2), op_full(2, 1)))
  expect_true(all(vapply(z, multihead:::is_symbolic, logical(1))))   # graph constants
})

test_that("op_full() with a symbolic fill value records a node with gradients", {
  f <- keras_input(shape = 3)
  y <- op_full(c(2, 3), f)
  expect_identical(y$shape, c(2L, 3L))
  expect_identical(y$dtype, "float32")
  expect_identical(op_full(c(4, 2, 3), f, dtype = "float64")$dtype, "float64")
  set.seed(1)
  v <- c(0.5, -1, 2)
  r <- graph_run_op(function(p) op_full(c(2, 3), p), list(v))
  expect_identical(r$output, op_full(c(2, 3), v, dtype = "float64"))
  check_op_gradient(function(p) op_full(c(4, 3), p, dtype = "float64"), list(v))
  check_op_gradient(function(p) op_full(c(2, 3), p, dtype = "float64"), list(matrix(rnorm(2), 2, 1)))
  check_op_gradient(function(p) op_full(c(2, 2), p, dtype = "float64"), list(1.5))
  # a fill value whose size is known only at run time, and does not fit
  ph <- sym(NA_integer_, "float64")
  g <- multihead:::build_graph(list(ph), list(op_full(c(2, 3), ph)))
  expect_identical(multihead:::run_graph_forward(g, list(c(1, 2, 3)))$outputs[[1]], matrix(rep(1:3, each = 2), 2) * 1)
  expect_error(multihead:::run_graph_forward(g, list(c(1, 2))), "op_full\\(\\): `fill_value` does not broadcast",
               class = err)
})

test_that("op_ones(), op_zeros(), op_full() reject bad input", {
  for (f in list(op_ones, op_zeros)) {
    expect_error(f(), "`shape` must be supplied", class = err)
    expect_error(f(c(2, NA)), "`shape` must be known sizes.*_like\\(\\)", class = err)
    expect_error(f(list(NULL, 2)), "`shape` must be known sizes", class = err)
    expect_error(f(c(2, -1)), "`shape` must be a shape of whole numbers >= 0", class = err)
    expect_error(f(1.5), "`shape` must be a shape of whole numbers", class = err)
    expect_error(f("a"), "`shape` must be a shape", class = err)
    expect_error(f(list("a")), "`shape` must be a shape", class = err)
    expect_error(f(keras_input(shape = 2)), "`shape` must be a shape", class = err)
    expect_error(f(c(1e6, 1e6, 1e6)), "`shape` must be small enough", class = err)
    expect_error(f(2, dtype = "float16"), "`dtype` must be NULL or one of", class = err)
    expect_error(f(2, dtype = 1), "`dtype` must be NULL or one of", class = err)
  }
  expect_error(op_ones(keras_input(shape = 2)$shape), "`shape` must be known sizes in op_ones\\(\\).*op_ones_like",
               class = err)
  expect_error(op_full(c(2, 3)), "`fill_value` must be supplied", class = err)
  expect_error(op_full(fill_value = 1), "`shape` must be supplied", class = err)
  expect_error(op_full(c(2, 3), c(1, 2)), "op_full\\(\\): `fill_value` does not broadcast to `shape` \\(2, 3\\)",
               class = "multihead_error_shape")
  expect_error(op_full(2, c(1, 2, 3)), "`fill_value` does not broadcast", class = err)
  expect_error(op_full(2, "a"), "`fill_value` must be a tensor", class = err)
  expect_error(op_full(2, NA), "`fill_value` must be free of NA", class = err)
  expect_error(op_full(2, NULL), "`fill_value` must be a tensor", class = err)
  expect_error(op_full(2, 3e9, dtype = "int32"), "`fill_value` must be within the range of int32", class = err)
  expect_error(op_full(2, NaN, dtype = "int32"), "`fill_value` must be finite", class = err)
})

# ---- *_like -------------------------------------------------------------------------------------

test_that("op_ones_like(), op_zeros_like(), op_full_like() follow x's shape and dtype", {
  m <- matrix(rnorm(6), 2)
  expect_identical(op_ones_like(m), matrix(1, 2, 3))
  expect_identical(op_zeros_like(m), matrix(0, 2, 3))
  expect_identical(op_ones_like(matrix(1:6, 2)), matrix(1L, 2, 3))
  expect_identical(op_zeros_like(c(TRUE, FALSE)), array(FALSE, 2))
  expect_identical(op_zeros_like(m, dtype = "int32"), matrix(0L, 2, 3))
  expect_identical(op_ones_like(5), 1)
  expect_identical(op_full_like(m, 4), matrix(4, 2, 3))
  expect_identical(op_full_like(matrix(1:6, 2), 2.9), matrix(2L, 2, 3))            # int32 like x: truncated
  expect_identical(op_full_like(m, 0.1), matrix(ref_f32(0.1), 2, 3))               # float32 like x
  expect_identical(op_full_like(m, c(1, 2, 3), dtype = "float64"), matrix(rep(1:3, each = 2), 2) * 1)
  expect_identical(op_full_like(m, 1, dtype = "bool"), matrix(TRUE, 2, 3))
  x <- keras_input(shape = c(NA, 4))
  for (f in list(op_ones_like, op_zeros_like)) {
    y <- f(x)
    expect_identical(y$shape, c(NA, NA, 4L))
    expect_identical(y$dtype, "float32")
    expect_identical(f(x, dtype = "int64")$dtype, "int64")
    expect_identical(f(sym(c(2L, NA), "int32"))$dtype, "int32")
  }
  expect_identical(op_full_like(x, 3)$shape, c(NA, NA, 4L))
  expect_identical(op_full_like(x, c(1, 2, 3, 4), dtype = "float64")$dtype, "float64")
  expect_identical(op_full_like(sym(3L, "bool"), 1)$dtype, "bool")
})

test_that("*_like ops run in graphs, pass no gradient to x and do not block other paths", {
  set.seed(2)
  a <- array(rnorm(12), c(2, 3, 2))
  r <- graph_run_op(function(p) op_ones_like(p), list(a))
  expect_identical(r$output, array(1, c(2, 3, 2)))
  r2 <- graph_run_op(function(p) op_full_like(p, 2.5), list(a))
  expect_identical(r2$output, array(2.5, c(2, 3, 2)))
  check_op_gradient(function(p) p * 3 + op_zeros_like(p) + op_ones_like(p), list(a))
  check_op_gradient(function(p) p * op_full_like(p, 2), list(a))
  # the fill value of op_full_like() is differentiated
  check_op_gradient(function(p, f) op_full_like(p, f) * p, list(a, c(0.5, -2)))
  ph <- sym(c(NA, 3L), "float64")
  g <- multihead:::build_graph(list(ph), list(op_full_like(ph, c(1, 2, 3))))
  expect_identical(multihead:::run_graph_forward(g, list(matrix(0, 4, 3)))$outputs[[1]],
                   matrix(rep(c(1, 2, 3), each = 4), 4))
})

test_that("*_like ops reject bad input", {
  for (f in list(op_ones_like, op_zeros_like)) {
    expect_error(f(), "`x` must be supplied", class = err)
    expect_error(f("a"), "`x` must be a tensor", class = err)
    expect_error(f(list(1)), "`x` must be a tensor", class = err)
    expect_error(f(c(1, NA)), "`x` must be free of NA", class = err)
    expect_error(f(1, dtype = "float16"), "`dtype` must be NULL or one of", class = err)
  }
  expect_error(op_full_like(matrix(0, 2, 3)), "`fill_value` must be supplied", class = err)
  expect_error(op_full_like(fill_value = 1), "`x` must be supplied", class = err)
  expect_error(op_full_like(matrix(0, 2, 3), c(1, 2)), "op_full_like\\(\\): `fill_value` does not broadcast",
               class = "multihead_error_shape")
  expect_error(op_full_like(keras_input(shape = 3), c(1, 2)), "`fill_value` does not broadcast", class = err)
  expect_error(op_full_like(1, "a"), "`fill_value` must be a tensor", class = err)
  expect_error(op_full_like(1, 2, dtype = "string"), "`dtype` must be NULL or one of", class = err)
})

# ---- op_eye, op_identity ---------------------------------------------------------------------------

test_that("op_eye() and op_identity() make (shifted) identity matrices", {
  expect_identical(op_eye(3), diag(3))
  expect_identical(op_identity(4), diag(4))
  for (k in -3:4) {
    ref <- outer(1:3, 1:5, function(i, j) as.double(j - i == k))
    expect_identical(op_eye(3, 5, k = k), ref, info = k)
  }
  expect_identical(op_eye(4, 2, k = -1), outer(1:4, 1:2, function(i, j) as.double(j - i == -1)))
  expect_identical(op_eye(2, dtype = "int32"), diag(1L, 2))
  expect_identical(op_eye(2, dtype = "bool"), diag(2) == 1)
  expect_identical(op_identity(2, dtype = "int64"), diag(2))
  expect_identical(op_eye(0), matrix(0, 0, 0))
  expect_identical(op_eye(2, 0), matrix(0, 2, 0))
  expect_identical(op_eye(2, k = .Machine$integer.max), matrix(0, 2, 2))
  expect_identical(op_eye(2, k = -.Machine$integer.max), matrix(0, 2, 2))
  expect_true(multihead:::is_symbolic(multihead:::with_trace_frame(op_eye(2))))
})

test_that("op_eye() and op_identity() reject bad input", {
  expect_error(op_eye(), "`N` must be supplied", class = err)
  expect_error(op_eye(-1), "`N` must be a whole number >= 0", class = err)
  expect_error(op_eye(1.5), "`N` must be a whole number", class = err)
  expect_error(op_eye(NA), "`N` must be a whole number", class = err)
  expect_error(op_eye("2"), "`N` must be a whole number", class = err)
  expect_error(op_eye(2, M = -2), "`M` must be a whole number >= 0", class = err)
  expect_error(op_eye(2, M = c(1, 2)), "`M` must be a whole number", class = err)
  expect_error(op_eye(2, k = 0.5), "`k` must be a whole number", class = err)
  expect_error(op_eye(2, k = NA), "`k` must be a whole number", class = err)
  expect_error(op_eye(2, dtype = "complex64"), "`dtype` must be NULL or one of", class = err)
  expect_error(op_eye(1e6), "`N` must be small enough", class = err)
  expect_error(op_identity(), "`n` must be supplied", class = err)
  expect_error(op_identity(-3), "`n` must be a whole number >= 0", class = err)
  expect_error(op_identity(2, dtype = "x"), "`dtype` must be NULL or one of", class = err)
})

# ---- op_tril, op_triu --------------------------------------------------------------------------

test_that("op_tril() and op_triu() keep triangles of the last two axes", {
  set.seed(3)
  m <- matrix(rnorm(12), 3, 4)
  for (k in -3:4) {
    expect_identical(op_tril(m, k), ifelse(col(m) - row(m) <= k, m, 0), info = k)
    expect_identical(op_triu(m, k), ifelse(col(m) - row(m) >= k, m, 0), info = k)
  }
  a <- array(rnorm(2 * 2 * 3 * 4), c(2, 2, 3, 4))
  lo <- op_tril(a, -1); up <- op_triu(a, 1)
  for (i in 1:2) for (j in 1:2) {
    s <- a[i, j, , ]
    expect_identical(lo[i, j, , ], ifelse(col(s) - row(s) <= -1, s, 0))
    expect_identical(up[i, j, , ], ifelse(col(s) - row(s) >= 1, s, 0))
  }
  expect_identical(op_tril(matrix(1:4, 2)), matrix(c(1L, 2L, 0L, 4L), 2))
  expect_identical(op_triu(matrix(TRUE, 2, 2)), matrix(c(TRUE, FALSE, TRUE, TRUE), 2))
  expect_identical(op_tril(matrix(c(1, NaN, Inf, 2), 2)), matrix(c(1, NaN, 0, 2), 2))   # Inf masked, not NaN
  x <- keras_input(shape = c(NA, 5))
  expect_identical(op_tril(x)$shape, c(NA, NA, 5L))
  expect_identical(op_triu(sym(c(3L, 3L), "int32"))$dtype, "int32")
  r <- graph_run_op(function(p) op_tril(p, 1), list(a))
  expect_identical(r$output, op_tril(a, 1))
  check_op_gradient(function(p) op_tril(p), list(a))
  check_op_gradient(function(p) op_triu(p, -1), list(matrix(rnorm(12), 4, 3)))
})

test_that("op_tril() and op_triu() reject bad input", {
  for (f in list(op_tril, op_triu)) {
    expect_error(f(c(1, 2, 3)), "op_tri[lu]\\(\\): `x` must have rank >= 2.*`x` \\(3\\)",
                 class = "multihead_error_shape")
    expect_error(f(sym(3L)), "`x` must have rank >= 2", class = err)
    expect_error(f(matrix(0, 2, 2), k = 0.5), "`k` must be a whole number", class = err)
    expect_error(f(matrix(0, 2, 2), k = NA), "`k` must be a whole number", class = err)
    expect_error(f(matrix(0, 2, 2), k = "1"), "`k` must be a whole number", class = err)
    expect_error(f(), "`x` must be supplied", class = err)
    expect_error(f("a"), "`x` must be a tensor", class = err)
    expect_error(f(matrix(NA_real_, 2, 2)), "`x` must be free of NA", class = err)
  }
})

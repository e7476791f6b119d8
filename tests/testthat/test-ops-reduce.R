# Reductions, softmax family, cumulative ops and norms (R/ops-reduce.R):
# eager results against plain-R references written here (apply() over the
# kept axes, explicit loops), symbolic shapes and dtypes, the graph runner
# against eager, gradients by finite differences, thread-count determinism,
# and bad input.

# ---- plain-R references --------------------------------------------------------

# f applied to every group of `x` over 1-based `axes` (NULL = all); the result
# shaped like keras3's (kept axes, or size-1 axes with keepdims).
ref_reduce <- function(x, axes, f, keepdims = FALSE) {
  d <- dim(x) %||% length(x)
  r <- length(d)
  if (is.null(axes)) axes <- seq_len(r)
  axes <- ifelse(axes < 0, r + 1 + axes, axes)
  kept <- setdiff(seq_len(r), axes)
  out <- if (length(kept)) apply(array(x, d), kept, f) else f(as.vector(x))
  shape <- if (keepdims) replace(d, axes, 1L) else d[kept]
  if (length(shape)) array(out, shape) else out
}

# softmax over `axes` via sweep() over the kept axes.
ref_softmax <- function(x, axes) {
  d <- dim(x)
  kept <- setdiff(seq_along(d), ifelse(axes < 0, length(d) + 1 + axes, axes))
  if (!length(kept)) {
    e <- exp(x - max(x))
    return(e / sum(e))
  }
  m <- apply(x, kept, max)
  e <- exp(sweep(x, kept, m))
  sweep(e, kept, apply(e, kept, sum), "/")
}

rand_array <- function(shape, lo = -2, hi = 2) array(runif(prod(shape), lo, hi), shape)

# check_op_gradient() (helper-ops.R), which cannot weight a rank-0 output
# (array() with zero dims), with the same central differences written out for
# rank-0 outputs (full reductions).
check_grad <- function(fn, inputs, ...) {
  r <- graph_run_op(fn, inputs)
  if (length(r$symbolic$shape)) return(check_op_gradient(fn, inputs, ...))
  # rank 0: weight the scalar output directly
  set.seed(1)
  w <- rnorm(1)
  back <- multihead:::run_graph_backward(r$graph, r$run, list(w))
  x <- inputs[[1]]
  fd <- x
  loss <- function(v) w * multihead:::run_graph_forward(r$graph, list(v), keep = FALSE)$outputs[[1L]]
  for (k in seq_along(x)) {
    up <- x; dn <- x
    up[k] <- x[k] + 1e-6
    dn[k] <- x[k] - 1e-6
    fd[k] <- (loss(up) - loss(dn)) / 2e-6
  }
  expect_equal(as.vector(back$inputs[[1]]), as.vector(fd), tolerance = list(...)$tolerance %||% 1e-6)
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# ---- eager results ------------------------------------------------------------------

test_that("reductions match plain-R references over axis sets, with keepdims", {
  set.seed(1)
  x <- rand_array(c(3, 4, 2, 5))
  refs <- list(
    op_sum = sum, op_prod = prod, op_mean = mean, op_max = max, op_min = min,
    op_var = function(v) mean((v - mean(v))^2), op_std = function(v) sqrt(mean((v - mean(v))^2)),
    op_logsumexp = function(v) log(sum(exp(v))))
  axis_sets <- list(NULL, 1, 2, -1, c(1, 3), c(2, 4), c(4, 1), c(1, 2, 3, 4), c(-2, 2))
  for (nm in names(refs)) {
    fun <- get(nm, asNamespace("multihead"))
    for (ax in axis_sets) {
      for (kd in c(FALSE, TRUE)) {
        expect_equal(fun(x, axis = ax, keepdims = kd), ref_reduce(x, ax, refs[[nm]], kd), tolerance = 1e-12,
                     info = sprintf("%s axis = %s keepdims = %s", nm, paste(ax, collapse = ","), kd))
      }
    }
  }
  # a full reduction without keepdims is a plain number; rank-1 results keep a 1-d dim
  expect_null(dim(op_sum(x)))
  expect_identical(dim(op_sum(x, axis = c(1, 2, 3))), 5L)
  # rank 0 and rank 1 inputs
  expect_identical(op_sum(3), 3)
  expect_equal(op_mean(c(1, 2, 6)), 3)
  expect_equal(op_max(c(1, 5, 2), axis = 1, keepdims = TRUE), array(5, 1))
})

test_that("any, all, count_nonzero and boolean/integer dtypes", {
  x <- array(c(0, 1, 0, 0, 2, 0, 3, 0, 0, 0, 0, 0), c(3, 4))
  expect_identical(op_any(x, axis = 1), apply(x != 0, 2, any) |> array(4))
  expect_identical(op_all(x != 5), TRUE)
  expect_identical(op_all(x, axis = 2, keepdims = TRUE), array(apply(x != 0, 1, all), c(3, 1)))
  expect_identical(op_count_nonzero(x), 3L)
  expect_identical(op_count_nonzero(x, axis = 2), array(as.integer(rowSums(x != 0)), 3))
  expect_identical(op_any(c(0, NaN)), TRUE)  # NaN is nonzero (NumPy)
  # integer and logical inputs
  xi <- array(1:12, c(3, 4))
  expect_identical(op_sum(xi, axis = 1), array(as.integer(colSums(xi)), 4))
  expect_identical(op_sum(c(TRUE, FALSE, TRUE)), 2L)
  expect_identical(op_max(xi), 12L)
  expect_identical(op_max(c(TRUE, FALSE)), TRUE)
  expect_identical(op_mean(xi), 6.5)
  expect_identical(op_prod(1:5), 120L)
  expect_identical(op_prod(c(1.5, 2), dtype = "int32"), 2L)   # cast first, as Keras
  # an integer sum beyond R's integer range is returned exactly (as a double)
  big <- c(.Machine$integer.max, 10L)
  expect_equal(op_sum(big), .Machine$integer.max + 10)
})

test_that("max/min with initial, and NaN", {
  x <- array(c(1, 5, 3, 2, 8, 4), c(3, 2))
  expect_equal(op_max(x, axis = 1, initial = 6), array(c(6, 8), 2))
  expect_equal(op_min(x, axis = 1, initial = 2), array(c(1, 2), 2))
  expect_equal(op_max(array(numeric(0), c(0, 2)), axis = 1, initial = -1), array(c(-1, -1), 2))
  expect_true(is.nan(op_max(c(1, NaN, 3))))
  expect_true(is.nan(op_min(c(1, NaN, 3))))
  expect_identical(op_sum(array(numeric(0), c(0, 3)), axis = 1), array(c(0, 0, 0), 3))
})

test_that("argmax/argmin: first occurrence, 1-based, C order without axis", {
  x <- rbind(c(1, 9, 3, 9), c(7, 2, 9, 0), c(7, 1, 1, 0))
  expect_identical(op_argmax(x, axis = 2), array(apply(x, 1, which.max), 3))
  expect_identical(op_argmin(x, axis = 1), array(apply(x, 2, which.min), 4))
  expect_identical(op_argmax(x, axis = -1, zero_indexed = TRUE), array(apply(x, 1, which.max) - 1L, 3))
  expect_identical(op_argmax(x, axis = 2, keepdims = TRUE), array(apply(x, 1, which.max), c(3, 1)))
  # axis = NULL: the position in the row-major flattening (the first 9 of row 1)
  c_order_first <- function(x, v) {
    w <- which(x == v, arr.ind = TRUE)
    d <- dim(x)
    pos <- apply(w, 1, function(i) sum((i - 1) * rev(cumprod(rev(c(d[-1], 1))))))
    as.integer(min(pos) + 1)
  }
  expect_identical(op_argmax(x), c_order_first(x, 9))
  expect_identical(op_argmin(x), c_order_first(x, 0))
  set.seed(2)
  y <- rand_array(c(3, 4, 5))
  expect_identical(op_argmax(y), c_order_first(y, max(y)))
  expect_identical(op_argmax(y, axis = 3), array(apply(y, c(1, 2), which.max), c(3, 4)))
  expect_identical(op_argmin(c(3L, 1L, 1L)), 2L)
  expect_identical(op_argmax(c(TRUE, FALSE, TRUE)), 1L)
  expect_identical(op_argmax(c(1, NaN, 5, NaN)), 2L)   # the first NaN (NumPy)
})

test_that("cumsum and cumprod along an axis and flattened in C order", {
  set.seed(3)
  x <- rand_array(c(3, 4, 2))
  ref <- x
  for (i in 1:3) for (k in 1:2) ref[i, , k] <- cumsum(x[i, , k])
  expect_equal(op_cumsum(x, axis = 2), ref, tolerance = 1e-14)
  ref <- x
  for (j in 1:4) for (k in 1:2) ref[, j, k] <- cumprod(x[, j, k])
  expect_equal(op_cumprod(x, axis = 1), ref, tolerance = 1e-14)
  ref <- x
  for (i in 1:3) for (j in 1:4) ref[i, j, ] <- cumsum(x[i, j, ])
  expect_equal(op_cumsum(x, axis = -1), ref, tolerance = 1e-14)
  flat <- as.vector(aperm(x, 3:1))   # row-major order
  expect_equal(op_cumsum(x), array(cumsum(flat), 24), tolerance = 1e-14)
  expect_equal(op_cumprod(x), array(cumprod(flat), 24), tolerance = 1e-14)
  expect_identical(op_cumsum(c(TRUE, TRUE, FALSE)), array(c(1L, 2L, 2L), 3))
  expect_identical(op_cumsum(1:4), array(c(1L, 3L, 6L, 10L), 4))
  expect_identical(op_cumsum(c(1.7, 2.2), dtype = "int32"), array(c(1L, 3L), 2))
})

test_that("softmax and log_softmax match references; rows sum to 1; stable and masked", {
  set.seed(4)
  x <- rand_array(c(2, 3, 4), -3, 3)
  for (ax in list(-1L, 1L, 2L, c(1L, 3L), c(2L, 3L))) {
    expect_equal(op_softmax(x, axis = ax), ref_softmax(x, ax), tolerance = 1e-12)
    expect_equal(op_log_softmax(x, axis = ax), log(ref_softmax(x, ax)), tolerance = 1e-12)
  }
  expect_equal(op_softmax(x, axis = NULL), ref_softmax(x, 1:3), tolerance = 1e-12)
  p <- op_softmax(x)
  expect_equal(apply(p, c(1, 2), sum), matrix(1, 2, 3), tolerance = 1e-14)
  # large inputs: no overflow
  big <- matrix(c(1e4, 1e4 + 1, 1e4 - 2, -1e4, -1e4 + 1, -1e4 - 2), 2, byrow = TRUE)
  e <- exp(c(0, 1, -2))
  expect_equal(op_softmax(big), rbind(e / sum(e), e / sum(e)), tolerance = 1e-14)
  expect_equal(op_log_softmax(big), rbind(log(e / sum(e)), log(e / sum(e))), tolerance = 1e-12)
  expect_equal(op_logsumexp(c(1e4, 1e4)), 1e4 + log(2))
  # -Inf (masked) entries get 0; a row of -Inf gives NaN (as NumPy/Keras)
  m <- rbind(c(1, -Inf, 1), c(-Inf, -Inf, -Inf))
  out <- op_softmax(m)
  expect_identical(out[1, ], c(0.5, 0, 0.5))
  expect_true(all(is.nan(out[2, ])))
  expect_identical(op_logsumexp(m, axis = 2), array(c(1 + log(2), -Inf), 2))
  expect_identical(op_softmax(1:3 * 0L), array(rep(1 / 3, 3), 3))   # integers give floats
})

test_that("op_norm: vector and matrix norms", {
  set.seed(5)
  x <- rand_array(c(3, 4, 2))
  vec <- list(`2` = function(v) sqrt(sum(v^2)), `1` = function(v) sum(abs(v)),
              `Inf` = function(v) max(abs(v)), `-Inf` = function(v) min(abs(v)),
              `0` = function(v) sum(v != 0), `3.5` = function(v) sum(abs(v)^3.5)^(1 / 3.5),
              `-1` = function(v) sum(abs(v)^-1)^-1)
  for (o in names(vec)) {
    for (ax in list(1, 2, -1)) {
      expect_equal(op_norm(x, ord = as.numeric(o), axis = ax), ref_reduce(x, ax, vec[[o]]), tolerance = 1e-12,
                   info = sprintf("ord %s axis %s", o, ax))
    }
  }
  expect_equal(op_norm(x), sqrt(sum(x^2)), tolerance = 1e-14)
  expect_equal(op_norm(x, axis = 2, keepdims = TRUE), ref_reduce(x, 2, vec[["2"]], TRUE), tolerance = 1e-14)
  # matrix norms over axes (2, 3) of each x[i, , ]
  mats <- list(fro = function(M) sqrt(sum(M^2)), nuc = function(M) sum(svd(M)$d),
               `1` = function(M) max(colSums(abs(M))), `-1` = function(M) min(colSums(abs(M))),
               `Inf` = function(M) max(rowSums(abs(M))), `-Inf` = function(M) min(rowSums(abs(M))),
               `2` = function(M) max(svd(M)$d), `-2` = function(M) min(svd(M)$d))
  for (o in names(mats)) {
    ord <- if (o %in% c("fro", "nuc")) o else as.numeric(o)
    ref <- vapply(1:3, function(i) mats[[o]](x[i, , ]), numeric(1))
    expect_equal(op_norm(x, ord = ord, axis = c(2, 3)), array(ref, 3), tolerance = 1e-12, info = o)
    # axes given the other way round: the transposed matrices
    reft <- vapply(1:3, function(i) mats[[o]](t(x[i, , ])), numeric(1))
    expect_equal(op_norm(x, ord = ord, axis = c(3, 2)), array(reft, 3), tolerance = 1e-12, info = o)
  }
  M <- x[, , 1]
  expect_equal(op_norm(M, ord = 1), max(colSums(abs(M))))          # axis NULL, rank 2: matrix norm
  expect_equal(op_norm(M, ord = "nuc", keepdims = TRUE), array(sum(svd(M)$d), c(1, 1)))
  expect_equal(op_norm(c(3, -4), ord = 1), 7)                       # rank 1: vector norm
  expect_equal(op_norm(c(3e200, 4e200)), 5e200)                      # no overflow
  expect_equal(op_norm(c(3e-200, 4e-200)), 5e-200)                   # no underflow
  expect_identical(op_norm(1:2 * 0L), 0)
  expect_identical(op_norm(matrix(c(1, Inf, 2, 3), 2), ord = "nuc"), NaN)   # no SVD of Inf
  expect_identical(op_norm(matrix(c(1, Inf, 2, 3), 2)), Inf)
})

# ---- symbolic shapes and dtypes ------------------------------------------------------

test_that("symbolic shapes (NA sizes, keepdims) and dtypes", {
  x <- keras_input(shape = c(NA, 3, 4))
  expect_identical(op_sum(x)$shape, integer())
  expect_identical(op_sum(x, axis = c(2, -1))$shape, c(NA, 3L))
  expect_identical(op_mean(x, axis = c(2, -1), keepdims = TRUE)$shape, c(NA, 1L, 3L, 1L))
  expect_identical(op_max(x, axis = 1)$shape, c(NA, 3L, 4L))
  expect_identical(op_argmax(x, axis = -1, keepdims = TRUE)$shape, c(NA, NA, 3L, 1L))
  expect_identical(op_argmax(x)$shape, integer())
  expect_identical(op_count_nonzero(x, axis = 3)$shape, c(NA, NA, 4L))
  expect_identical(op_softmax(x, axis = c(2, 3))$shape, c(NA, NA, 3L, 4L))
  expect_identical(op_cumsum(x, axis = 2)$shape, c(NA, NA, 3L, 4L))
  expect_identical(op_cumsum(x)$shape, NA_integer_)
  expect_identical(op_cumsum(keras_input(shape = c(3, 4), batch_size = 2))$shape, 24L)
  expect_identical(op_norm(x, axis = c(3, 4), keepdims = TRUE)$shape, c(NA, NA, 1L, 1L))
  expect_identical(op_norm(x, ord = Inf, axis = 2)$shape, c(NA, 3L, 4L))
  expect_identical(op_logsumexp(x, axis = 1)$shape, c(NA, 3L, 4L))
  expect_identical(sum(x)$shape, integer())
  expect_identical(mean(x)$shape, integer())
  expect_identical(op_std(x)$dtype, "float32")
  xi <- keras_input(shape = c(5), dtype = "int32")
  xb <- keras_input(shape = c(5), dtype = "bool")
  xd <- keras_input(shape = c(5), dtype = "float64")
  expect_identical(op_sum(xi)$dtype, "int32")
  expect_identical(op_sum(xb)$dtype, "int32")
  expect_identical(op_prod(xb)$dtype, "int32")
  expect_identical(op_prod(xi, dtype = "float64")$dtype, "float64")
  expect_identical(op_max(xb)$dtype, "bool")
  expect_identical(op_max(xi)$dtype, "int32")
  expect_identical(op_mean(xi)$dtype, "float32")
  expect_identical(op_var(xd)$dtype, "float64")
  expect_identical(op_logsumexp(xi)$dtype, "float32")
  expect_identical(op_argmin(xd)$dtype, "int32")
  expect_identical(op_any(xi)$dtype, "bool")
  expect_identical(op_all(xd, axis = 2)$dtype, "bool")
  expect_identical(op_count_nonzero(xd)$dtype, "int32")
  expect_identical(op_softmax(xi)$dtype, "float32")
  expect_identical(op_log_softmax(xd)$dtype, "float64")
  expect_identical(op_norm(xi)$dtype, "float32")
  expect_identical(op_cumsum(xb)$dtype, "int32")
  expect_identical(op_cumprod(xd)$dtype, "float64")
  expect_identical(op_cumsum(xd, dtype = "int32")$dtype, "int32")
  expect_identical(cumsum(xd)$shape, c(NA_integer_))
})

# ---- the graph runner ------------------------------------------------------------------

test_that("graph runs equal eager results", {
  set.seed(6)
  x <- rand_array(c(2, 3, 4))
  fns <- list(
    function(a) op_sum(a, axis = c(1, 3)), function(a) op_prod(a, axis = 2, keepdims = TRUE),
    function(a) op_mean(a, axis = -1), function(a) op_max(a, axis = 2), function(a) op_min(a),
    function(a) op_max(a, axis = 1, initial = 0.5),
    function(a) op_var(a, axis = c(1, 2)), function(a) op_std(a, axis = 3), function(a) op_logsumexp(a, axis = 2),
    function(a) op_argmax(a, axis = 2), function(a) op_argmin(a), function(a) op_any(a, axis = 1),
    function(a) op_count_nonzero(a, axis = 3), function(a) op_cumsum(a, axis = 2), function(a) op_cumprod(a),
    function(a) op_softmax(a), function(a) op_log_softmax(a, axis = c(1, 2)),
    function(a) op_norm(a, axis = 3), function(a) op_norm(a, ord = 1, axis = c(1, 2)),
    function(a) op_norm(a, ord = "nuc", axis = c(3, 2)), function(a) sum(a), function(a) mean(a),
    function(a) max(a), function(a) prod(a))
  for (i in seq_along(fns)) {
    r <- graph_run_op(fns[[i]], list(a = x))
    expect_equal(r$output, fns[[i]](x), tolerance = 1e-12, info = i)
    expect_identical(length(dim(r$output)), length(r$symbolic$shape), info = i)
  }
  # cumsum() on a tensor is op_cumsum() (C-order flattening), unlike base cumsum() on arrays
  expect_equal(graph_run_op(function(a) cumsum(a), list(a = x))$output, op_cumsum(x), tolerance = 1e-14)
  xb <- array(c(TRUE, FALSE, TRUE, TRUE), c(2, 2))
  expect_identical(graph_run_op(function(a) all(a), list(a = xb))$output, FALSE)
  expect_identical(graph_run_op(function(a) any(a), list(a = xb))$output, TRUE)
})

# ---- gradients --------------------------------------------------------------------------------

test_that("gradients of reductions match finite differences", {
  set.seed(7)
  shapes <- list(c(2, 3, 2), c(3, 4), c(5))
  for (s in shapes) {
    x <- rand_array(s)   # continuous: no ties for max/min
    r <- length(s)
    axis_sets <- unique(list(NULL, 1L, r, if (r > 1) c(1L, r) else 1L))
    for (ax in axis_sets) {
      for (f in list(function(a) op_sum(a, axis = ax), function(a) op_mean(a, axis = ax, keepdims = TRUE),
                     function(a) op_prod(a, axis = ax), function(a) op_max(a, axis = ax),
                     function(a) op_min(a, axis = ax, keepdims = TRUE), function(a) op_var(a, axis = ax),
                     function(a) op_std(a, axis = ax), function(a) op_logsumexp(a, axis = ax),
                     function(a) op_softmax(a, axis = ax), function(a) op_log_softmax(a, axis = ax))) {
        check_grad(f, list(a = x))
      }
    }
  }
  x <- rand_array(c(3, 4))
  check_op_gradient(function(a) op_max(a, axis = 1, initial = 0.5), list(a = x))
  check_grad(function(a) sum(a) + mean(a), list(a = x))
  check_op_gradient(function(a) op_prod(a, axis = 2), list(a = replace(x, 2, 0)))   # one zero
})

test_that("gradients of cumsum, cumprod and norms match finite differences", {
  set.seed(8)
  x <- rand_array(c(3, 4))
  x[1, 2] <- 0   # cumprod's gradient through a zero
  for (f in list(function(a) op_cumsum(a, axis = 2), function(a) op_cumsum(a),
                 function(a) op_cumprod(a, axis = 1), function(a) op_cumprod(a, axis = -1),
                 function(a) op_cumprod(a))) {
    check_grad(f, list(a = x))
  }
  y <- rand_array(c(3, 4), 0.2, 2) * sample(c(-1, 1), 12, replace = TRUE)   # no zeros, no ties
  norms <- list(function(a) op_norm(a), function(a) op_norm(a, axis = 1), function(a) op_norm(a, ord = 1, axis = 2),
                function(a) op_norm(a, ord = Inf, axis = 2), function(a) op_norm(a, ord = -Inf, axis = 1),
                function(a) op_norm(a, ord = 3, axis = 2, keepdims = TRUE), function(a) op_norm(a, ord = 0.5, axis = 1),
                function(a) op_norm(a, ord = "fro"), function(a) op_norm(a, ord = 1), function(a) op_norm(a, ord = -1),
                function(a) op_norm(a, ord = Inf), function(a) op_norm(a, ord = -Inf),
                function(a) op_norm(a, ord = "nuc"), function(a) op_norm(a, ord = 2), function(a) op_norm(a, ord = -2))
  for (i in seq_along(norms)) check_grad(norms[[i]], list(a = y), tolerance = 1e-5)
  z <- rand_array(c(2, 3, 2))
  check_op_gradient(function(a) op_norm(a, ord = "nuc", axis = c(3, 1)), list(a = z), tolerance = 1e-5)
  check_op_gradient(function(a) op_norm(a, ord = Inf, axis = c(1, 3), keepdims = TRUE), list(a = z))
})

test_that("max/min gradients are split evenly among ties; none through initial", {
  grad_of <- function(fn, x) {
    r <- graph_run_op(fn, list(a = x))
    s <- multihead:::value_shape(r$output)
    g <- if (length(s)) array(1, s) else 1
    multihead:::run_graph_backward(r$graph, r$run, list(g))$inputs[[1]]
  }
  x <- array(c(1, 3, 3, 2, 5, 5, 5, 0), c(4, 2))
  expect_equal(grad_of(function(a) op_max(a, axis = 1), x), array(c(0, 0.5, 0.5, 0, 1 / 3, 1 / 3, 1 / 3, 0), c(4, 2)))
  expect_equal(grad_of(function(a) op_min(a, axis = 1), x), array(c(1, 0, 0, 0, 0, 0, 0, 1), c(4, 2)))
  expect_equal(grad_of(function(a) op_max(a, axis = 1, initial = 4), x), array(c(0, 0, 0, 0, 1 / 3, 1 / 3, 1 / 3, 0), c(4, 2)))
  expect_equal(grad_of(function(a) op_std(a), array(2, c(2, 2))), array(0, c(2, 2)))   # 0, not NaN
  expect_equal(grad_of(function(a) op_norm(a), array(0, c(2, 2))), array(0, c(2, 2)))
  for (nm in c("argmax", "argmin", "any", "all", "count_nonzero")) expect_null(multihead:::op_def(nm)$backward)
})

# ---- determinism across thread counts -------------------------------------------------------

test_that("results are bitwise identical for 1 and 2 threads on large inputs", {
  set.seed(9)
  x <- rand_array(c(300, 1000))
  run_all <- function() {
    g <- graph_run_op(function(a) op_softmax(a, axis = 1), list(a = x))
    list(op_sum(x), op_sum(x, axis = 2), op_mean(x, axis = 1), op_var(x, axis = 2), op_max(x, axis = 2),
         op_logsumexp(x, axis = 1), op_norm(x, axis = 2), op_softmax(x), op_log_softmax(x, axis = c(1, 2)),
         op_cumsum(x, axis = 2), op_argmax(x, axis = 1),
         multihead:::run_graph_backward(g$graph, g$run, list(x))$inputs[[1]])
  }
  old <- set_num_threads(1)
  on.exit(set_num_threads(old))
  one <- run_all()
  set_num_threads(2)
  two <- run_all()
  for (i in seq_along(one)) expect_identical(one[[i]], two[[i]], info = i)
})

# ---- Summary group and mean() on tensors and variables ----------------------------------------

test_that("sum(), max(), mean() ... on symbolic tensors and variables", {
  x <- keras_input(shape = c(3))
  expect_s3_class(sum(x), "multihead_tensor")
  expect_identical(max(x)$dtype, "float32")
  v <- array(c(1, -2, 4, 0.5, 3, 2), c(2, 3))
  expect_equal(graph_run_op(function(a) sum(a, 2), list(a = v))$output, sum(v) + 2)
  expect_equal(graph_run_op(function(a) min(a), list(a = v))$output, min(v))
  expect_equal(graph_run_op(function(a) prod(a), list(a = v))$output, prod(v))
  expect_equal(graph_run_op(function(a) mean(a, na.rm = FALSE), list(a = v))$output, mean(v))
  d <- layer_dense(units = 2)
  invisible(d(array(1, c(1, 3))))
  var <- multihead:::new_variable(multihead:::layer_self(d), "kernel")
  k <- multihead:::variable_value(var)
  expect_equal(sum(var), sum(k))
  expect_equal(max(var, 10), 10)
  expect_equal(mean(var), mean(k))
  expect_equal(op_sum(var, axis = 1), array(colSums(k), 2))
  expect_error(sum(x, na.rm = TRUE), "`na.rm`", class = "multihead_error")
  expect_error(range(x), "range", class = "multihead_error_unsupported")
  expect_error(mean(x, trim = 0.1), class = "multihead_error")
})

# ---- bad input ------------------------------------------------------------------------------------

test_that("bad arguments give errors naming them", {
  x <- array(1, c(2, 3, 4))
  for (f in list(op_sum, op_mean, op_max, op_min, op_prod, op_var, op_std, op_logsumexp, op_any, op_all)) {
    expect_error(f(x, axis = 0), "`axis`", class = "multihead_error")
    expect_error(f(x, axis = 4), "`axis`", class = "multihead_error")
    expect_error(f(x, axis = -4), "`axis`", class = "multihead_error")
    expect_error(f(x, axis = c(1, -3)), "`axis`", class = "multihead_error")    # the same axis twice
    expect_error(f(x, axis = NA), "`axis`", class = "multihead_error")
    expect_error(f(x, axis = 1.5), "`axis`", class = "multihead_error")
    expect_error(f(x, axis = "a"), "`axis`", class = "multihead_error")
    expect_error(f(x, axis = 1e10), "`axis`", class = "multihead_error")
    expect_error(f(x, keepdims = NA), "`keepdims`", class = "multihead_error")
    expect_error(f(), "`x`", class = "multihead_error")
    expect_error(f("a"), "`x`", class = "multihead_error")
    expect_error(f(c(1, NA)), "`x`", class = "multihead_error")
    expect_error(f(list(1, 2)), "`x`", class = "multihead_error")
  }
  for (f in list(op_argmax, op_argmin, op_cumsum, op_cumprod)) {
    expect_error(f(x, axis = c(1, 2)), "`axis`", class = "multihead_error")
    expect_error(f(x, axis = 0), "`axis`", class = "multihead_error")
    expect_error(f(x, axis = 5), "`axis`", class = "multihead_error")
    expect_error(f(), "`x`", class = "multihead_error")
    expect_error(f(c(NA_integer_, 1L)), "`x`", class = "multihead_error")
  }
  for (f in list(op_softmax, op_log_softmax)) {
    expect_error(f(x, axis = 0), "`axis`", class = "multihead_error")
    expect_error(f(x, axis = c(2, 2)), "`axis`", class = "multihead_error")
    expect_error(f(3), "`axis`", class = "multihead_error")                  # rank 0 has no last axis
    expect_error(f(), "`x`", class = "multihead_error")
    expect_error(f(c("a", "b")), "`x`", class = "multihead_error")
  }
  expect_error(op_argmax(x, zero_indexed = "yes"), "`zero_indexed`", class = "multihead_error")
  expect_error(op_max(x, initial = "a"), "`initial`", class = "multihead_error")
  expect_error(op_max(x, initial = c(1, 2)), "`initial`", class = "multihead_error")
  expect_error(op_max(array(numeric(0), c(0, 2)), axis = 1), "`x`", class = "multihead_error")
  expect_error(op_argmin(numeric(0)), "`x`", class = "multihead_error")
  expect_error(op_cumsum(x, dtype = "bool"), "`dtype`", class = "multihead_error")
  expect_error(op_prod(x, dtype = 3), "`dtype`", class = "multihead_error")
  expect_error(op_norm(x, ord = "fro", axis = 1), "`ord`", class = "multihead_error")
  expect_error(op_norm(x, ord = 3, axis = c(1, 2)), "`ord`", class = "multihead_error")
  expect_error(op_norm(x, ord = "max"), "`ord`", class = "multihead_error")
  expect_error(op_norm(x, ord = NA), "`ord`", class = "multihead_error")
  expect_error(op_norm(x, ord = 1), "`axis`", class = "multihead_error")    # rank 3 needs axes with ord
  expect_error(op_norm(x, axis = c(1, 2, 3)), "`axis`", class = "multihead_error")
  expect_error(op_norm(x, axis = c(2, -2)), "`axis`", class = "multihead_error")
  expect_error(op_norm(), "`x`", class = "multihead_error")
  # symbolic: checked when recorded
  s <- keras_input(shape = c(3, 4))
  expect_error(op_sum(s, axis = 4), "`axis`", class = "multihead_error")
  expect_error(op_argmax(s, axis = c(1, 2)), "`axis`", class = "multihead_error")
  expect_error(op_norm(s, ord = "nuc", axis = 2), "`ord`", class = "multihead_error")
  expect_error(op_max(keras_input(shape = c(0, 2)), axis = 2), "`x`", class = "multihead_error")
})

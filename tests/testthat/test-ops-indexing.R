# Indexing ops: op_take(), op_take_along_axis(), op_slice(),
# op_slice_update(), op_one_hot(), op_subset() and `[` on symbolic tensors
# and variables. References are written here in plain R, element by element
# (arrayInd()), independent of the implementation's (pre, n, post) views.

# ---- plain-R references ---------------------------------------------------------

# 1-based / 0-based keras3 indices (negative from the end) -> positions.
ref_pos <- function(i, n, zero = FALSE) {
  i <- as.vector(i)
  ifelse(i < 0, n + 1 + i, if (zero) i + 1 else i)
}

# Keras's take, one output element at a time.
ref_take <- function(x, idx, axis = NULL, zero = FALSE) {
  x <- if (is.null(dim(x))) array(x, length(x)) else x
  d <- dim(x)
  ishape <- if (is.null(dim(idx))) (if (length(idx) == 1L) integer() else length(idx)) else dim(idx)
  if (is.null(axis)) {
    flat <- as.vector(aperm(x))            # C order: the last axis fastest
    out <- flat[ref_pos(idx, length(flat), zero)]
    if (length(ishape)) dim(out) <- ishape
    return(out)
  }
  a <- if (axis < 0) length(d) + 1 + axis else axis
  od <- c(d[seq_len(a - 1)], ishape, d[-seq_len(a)])
  out <- vector(typeof(x), prod(od))
  p <- ref_pos(idx, d[a], zero)
  ni <- length(ishape)
  for (k in seq_along(out)) {
    o <- if (length(od)) arrayInd(k, od) else integer()
    before <- o[seq_len(a - 1)]
    mid <- o[a - 1 + seq_len(ni)]
    after <- o[seq_along(o) > a - 1 + ni]
    j <- if (ni) (if (ni == 1L) mid else sum((mid - 1) * cumprod(c(1, ishape))[seq_len(ni)]) + 1) else 1
    out[k] <- x[matrix(c(before, p[j], after), 1)]
  }
  if (length(od)) dim(out) <- od
  out
}

# NumPy's take_along_axis with broadcasting of the other axes.
ref_take_along <- function(x, idx, axis, zero = FALSE) {
  d <- dim(x); di <- dim(idx)
  a <- if (axis < 0) length(d) + 1 + axis else axis
  od <- pmax(d, di); od[a] <- di[a]
  out <- numeric(prod(od))
  for (k in seq_along(out)) {
    o <- arrayInd(k, od)
    oi <- ifelse(di == 1, 1, o)
    j <- idx[matrix(oi, 1)]
    ox <- ifelse(d == 1, 1, o)
    ox[a] <- ref_pos(j, d[a], zero)
    out[k] <- x[matrix(ox, 1)]
  }
  array(out, od)
}

# Same shape (rank 1 = a vector or a 1-d array; rank 0 = one number) and
# values.
expect_same <- function(got, ref, ...) {
  expect_identical(multihead:::value_shape(got), multihead:::value_shape(ref), ...)
  expect_equal(as.vector(got), as.vector(ref), ...)
}

# Runs fn on a placeholder of `shape` (NA allowed) fed with `value`.
run_with_shape <- function(fn, value, shape, dtype = "float64") {
  ph <- multihead:::new_placeholder_tensor(shape, dtype, "in")
  out <- fn(ph)
  g <- multihead:::build_graph(list(ph), list(out))
  list(symbolic = out, value = multihead:::run_graph_forward(g, list(value))$outputs[[1L]])
}

# ---- op_take ------------------------------------------------------------------------

test_that("op_take() matches a plain-R reference along every axis and flattened in C order", {
  set.seed(1)
  x <- array(rnorm(24), c(2, 3, 4))
  # axis = NULL flattens row-major (Keras), not column-major (R)
  expect_same(op_take(x, c(1, 2, 5, -1)), as.vector(aperm(x))[c(1, 2, 5, 24)])
  expect_same(op_take(x, 2), x[1, 1, 2])
  expect_same(op_take(x, 5), x[1, 2, 1])
  m <- matrix(1:6, 2, 3, byrow = TRUE)
  expect_same(op_take(m, c(2, 4)), c(2L, 4L))
  idx_m <- matrix(c(1, 24, 7, -3, 2, 2), 2)
  expect_same(op_take(x, idx_m), ref_take(x, idx_m))
  expect_identical(dim(op_take(x, idx_m)), c(2L, 3L))
  for (axis in list(1, 2, 3, -1, -2)) {
    n <- dim(x)[if (axis < 0) 4 + axis else axis]
    for (idx in list(c(1, n, 1), -1, 2, matrix(c(1, -1, 2, 1), 2), array(c(n, 1, 1, n), c(1, 2, 2)))) {
      got <- op_take(x, idx, axis = axis)
      expect_same(got, ref_take(x, idx, axis), info = paste("axis", axis, "idx", deparse(idx)))
    }
  }
  expect_identical(dim(op_take(x, 2, axis = 2)), c(2L, 4L))            # scalar index drops the axis
  expect_identical(dim(op_take(x, c(2, 2), axis = 2)), c(2L, 2L, 4L))
  expect_same(op_take(x, c(0, 3, -1), axis = 3, zero_indexed = TRUE), x[, , c(1, 4, 4)])
  expect_same(op_take(x, c(0L, 23L), zero_indexed = TRUE), as.vector(aperm(x))[c(1, 24)])
  # vectors, integer and logical tensors keep their dtype
  expect_same(op_take(c(10L, 20L, 30L), c(3, 1)), c(30L, 10L))
  expect_identical(typeof(op_take(c(10L, 20L, 30L), c(3, 1))), "integer")
  expect_identical(op_take(c(TRUE, FALSE, TRUE), -2), FALSE)
  expect_identical(dim(op_take(array(1:3, 3), integer(0))), 0L)
})

test_that("op_take() on symbolic tensors: shapes with NA, dtypes, graph equals eager", {
  x <- keras_input(shape = c(NA, 6))
  expect_identical(op_take(x, c(1, 2, 2), axis = 3)$shape, c(NA, NA, 3L))
  expect_identical(op_take(x, 2, axis = -1)$shape, c(NA_integer_, NA_integer_))
  expect_identical(op_take(x, matrix(1, 2, 5), axis = 2)$shape, c(NA, 2L, 5L, 6L))
  expect_identical(op_take(x, matrix(1, 2, 5))$shape, c(2L, 5L))
  expect_identical(op_take(x, 1, axis = 3)$dtype, "float32")
  expect_identical(op_take(keras_input(shape = 3, dtype = "int32"), 1, axis = 2)$dtype, "int32")
  ids <- keras_input(shape = c(7), dtype = "int32")
  emb <- op_take(array(0, c(10, 4)), ids, axis = 1)
  expect_identical(emb$shape, c(NA, 7L, 4L))
  expect_identical(emb$dtype, "float32")
  expect_identical(op_take(x, ids, axis = 3)$shape, c(NA, NA, NA, 7L))

  set.seed(2)
  v <- array(rnorm(30), c(2, 3, 5))
  for (axis in list(NULL, 1, 2, 3)) {
    r <- graph_run_op(function(x) op_take(x, c(2, -1, 1, 2), axis = axis), list(v))
    expect_same(r$output, op_take(v, c(2, -1, 1, 2), axis = axis))
    expect_identical(r$symbolic$shape, multihead:::value_shape(r$output))
  }
  # indices as a symbolic integer tensor (token ids in a custom embedding)
  table <- array(rnorm(12), c(6, 2))
  ids_v <- matrix(c(1L, 6L, 3L, 3L, -1L, 2L), 2)
  r <- graph_run_op(function(t, i) op_take(t, i, axis = 1), list(table, ids_v))
  expect_same(r$output, ref_take(table, ids_v, 1))
  r0 <- graph_run_op(function(t, i) op_take(t, i, axis = 1, zero_indexed = TRUE), list(table, ids_v - 1L * (ids_v > 0)))
  expect_same(r0$output, ref_take(table, ids_v, 1))
  # NA sizes resolved when the graph runs
  rs <- run_with_shape(function(x) op_take(x, c(-1, 1), axis = 2), v, c(NA, NA, 5))
  expect_identical(rs$symbolic$shape, c(NA, 2L, 5L))
  expect_same(rs$value, v[, c(3, 1), ])
})

test_that("op_take() gradients scatter back, repeated indices adding up", {
  set.seed(3)
  x <- array(rnorm(24), c(2, 3, 4))
  check_op_gradient(function(x) op_take(x, c(1, 3, 1, -1), axis = 2), list(x))
  check_op_gradient(function(x) op_take(x, matrix(c(4, 4, 1, 2), 2), axis = 3), list(x))
  check_op_gradient(function(x) op_take(x, c(1, 1), axis = 1), list(x))
  check_op_gradient(function(x) op_take(x, c(5, 5, 24, 1)), list(x))
  check_op_gradient(function(x) op_take(x, 2, axis = -1), list(x))
  # with symbolic indices, only x is differentiated
  tbl <- array(rnorm(10), c(5, 2))
  back <- check_op_gradient(function(t, i) op_take(t, i, axis = 1), list(tbl, c(2L, 2L, 5L)), wrt = 1)
  expect_null(back$inputs[[2]])
  # the analytic gradient: ones at the taken rows, counted
  r <- graph_run_op(function(t) op_take(t, c(2, 2, 5), axis = 1), list(tbl))
  b <- multihead:::run_graph_backward(r$graph, r$run, list(array(1, c(3, 2))))
  expect_equal(b$inputs[[1]], array(c(0, 2, 0, 0, 1), c(5, 2)))
})

test_that("op_take() rejects bad input, naming the argument", {
  x <- matrix(1:6, 2)
  expect_error(op_take(), "`x` must be supplied", class = "multihead_error_argument")
  expect_error(op_take(x), "`indices` must be supplied", class = "multihead_error_argument")
  expect_error(op_take("a", 1), "`x` must be a tensor", class = "multihead_error_argument")
  expect_error(op_take(list(1, 2), 1), "`x` must be a tensor", class = "multihead_error_argument")
  expect_error(op_take(x, "1"), "`indices` must be whole numbers", class = "multihead_error_argument")
  expect_error(op_take(x, TRUE), "`indices` must be whole numbers", class = "multihead_error_argument")
  expect_error(op_take(x, 1.5), "`indices` must be whole numbers without NA", class = "multihead_error_argument")
  expect_error(op_take(x, c(1, NA)), "`indices` must be whole numbers without NA", class = "multihead_error_argument")
  expect_error(op_take(x, 7), "`indices` holds 7, out of range .* size 6", class = "multihead_error_index")
  expect_error(op_take(x, -7), "`indices` holds -7", class = "multihead_error_index")
  expect_error(op_take(x, 0, axis = 1), "holds 0.*1-based.*zero_indexed = TRUE", class = "multihead_error_index")
  expect_error(op_take(x, 2, axis = 1, zero_indexed = TRUE), "holds 2.*valid: 0 to 1", class = "multihead_error_index")
  expect_error(op_take(x, 1, axis = 3), "`axis` must be axes between 1 and 2", class = "multihead_error_argument")
  expect_error(op_take(x, 1, axis = 0), "`axis`", class = "multihead_error_argument")
  expect_error(op_take(x, 1, axis = c(1, 2)), "`axis` must be a single whole number", class = "multihead_error_argument")
  expect_error(op_take(x, 1, axis = NA), "`axis`", class = "multihead_error_argument")
  expect_error(op_take(x, 1, zero_indexed = NA), "`zero_indexed` must be TRUE or FALSE", class = "multihead_error_argument")
  expect_error(op_take(x, 1, zero_indexed = "yes"), "`zero_indexed`", class = "multihead_error_argument")
  expect_error(op_take(array(c(1, NA), 2), 1), "`x` must be free of NA", class = "multihead_error_argument")
  xs <- keras_input(shape = 4)
  expect_error(op_take(xs, 5, axis = 2), "holds 5, out of range for axis 2 of `x` of size 4", class = "multihead_error_index")
  expect_error(op_take(xs, keras_input(shape = 2, dtype = "bool")), "`indices` must be an integer tensor",
               class = "multihead_error_argument")
  # symbolic indices out of range: an error naming the op when the graph runs
  expect_error(graph_run_op(function(t, i) op_take(t, i, axis = 1), list(array(1, c(3, 2)), c(1L, 4L))),
               "op_take\\(\\): `indices` holds 4, out of range for axis 1 of `x` of size 3", class = "multihead_error_index")
  expect_error(graph_run_op(function(t, i) op_take(t, i, axis = 1), list(array(1, c(3, 2)), c(1L, 0L))),
               "op_take\\(\\): `indices` holds 0.*zero_indexed = TRUE", class = "multihead_error_index")
  expect_error(graph_run_op(function(t, i) op_take(t, i, axis = 1), list(array(1, c(3, 2)), c(1.5, 2)),
                            dtypes = c("float64", "float32")),
               "op_take\\(\\): `indices` must hold whole numbers", class = "multihead_error_argument")
})

# ---- op_take_along_axis -----------------------------------------------------------

test_that("op_take_along_axis() matches NumPy's take_along_axis, with broadcasting", {
  set.seed(4)
  x <- array(rnorm(24), c(2, 3, 4))
  for (axis in list(1, 2, 3, -1)) {
    a <- if (axis < 0) 4 + axis else axis
    di <- dim(x); di[a] <- 5
    n <- dim(x)[a]
    idx <- array(sample(c(seq_len(n), -seq_len(n)), prod(di), replace = TRUE), di)
    expect_same(op_take_along_axis(x, idx, axis = axis), ref_take_along(x, idx, axis), info = paste("axis", axis))
  }
  # the other axes broadcast: indices (1, 2, 4) against x (2, 3, 4)
  idx <- array(c(1, 3, 2, 2, 1, 1, 3, -1), c(1, 2, 4))
  expect_same(op_take_along_axis(x, idx, axis = 2), ref_take_along(x, idx, 2))
  idx2 <- array(c(1, 2, 2, 1, 1, 2), c(2, 3, 1))
  expect_same(op_take_along_axis(array(1:8, c(2, 1, 4)), idx2 * 2, axis = 3),
               ref_take_along(array(1:8, c(2, 1, 4)), idx2 * 2, 3))
  # the argmax-style use: pick one element per row
  m <- matrix(c(5, 1, 2, 9, 3, 7), 2, 3)
  expect_same(op_take_along_axis(m, matrix(c(1, 2), 2), axis = 2), matrix(c(5, 9), 2))
  expect_same(op_take_along_axis(m, matrix(c(0, 1), 2), axis = 2, zero_indexed = TRUE), matrix(c(5, 9), 2))
  # axis = NULL: flattened in C order, 1-D indices
  expect_same(op_take_along_axis(m, c(2, 4)), as.vector(t(m))[c(2, 4)])
})

test_that("op_take_along_axis() symbolic shapes, graph run and gradient", {
  x <- keras_input(shape = c(NA, 5))
  expect_identical(op_take_along_axis(x, array(1L, c(1, 1, 3)), axis = 3)$shape, c(NA, NA, 3L))
  expect_identical(op_take_along_axis(x, array(1L, c(4, 2, 5)), axis = 2)$shape, c(4L, 2L, 5L))
  i <- keras_input(shape = c(6, 1), dtype = "int32")
  expect_identical(op_take_along_axis(x, i, axis = 3)$shape, c(NA, 6L, 1L))
  set.seed(5)
  v <- array(rnorm(24), c(2, 3, 4))
  idx <- array(c(1, 3, 3, 2, 1, 3, 2, 2), c(2, 1, 4))
  r <- graph_run_op(function(x) op_take_along_axis(x, idx, axis = 2), list(v))
  expect_same(r$output, op_take_along_axis(v, idx, axis = 2))
  r2 <- graph_run_op(function(x, i) op_take_along_axis(x, i, axis = 2), list(v, array(as.integer(idx), dim(idx))))
  expect_same(r2$output, ref_take_along(v, idx, 2))
  check_op_gradient(function(x) op_take_along_axis(x, idx, axis = 2), list(v))
  # x broadcast along axis 1: its gradient sums over the broadcast
  xb <- array(rnorm(12), c(1, 3, 4))
  check_op_gradient(function(x) op_take_along_axis(x, array(c(1, 1, 2, 3, 3, 3), c(2, 3, 1)), axis = 3), list(xb))
  check_op_gradient(function(x) op_take_along_axis(x, c(1, 1, 24)), list(v))
})

test_that("op_take_along_axis() rejects bad input, naming the argument", {
  x <- array(1, c(2, 3))
  expect_error(op_take_along_axis(), "`x` must be supplied", class = "multihead_error_argument")
  expect_error(op_take_along_axis(x), "`indices` must be supplied", class = "multihead_error_argument")
  expect_error(op_take_along_axis(x, c(1, 2), axis = 2), "`x` and `indices` must have the same rank",
               class = "multihead_error_shape")
  expect_error(op_take_along_axis(x, matrix(1, 3, 3), axis = 2), "other than `axis` \\(2\\) do not broadcast",
               class = "multihead_error_shape")
  expect_error(op_take_along_axis(x, matrix(1, 2, 2)), "with `axis = NULL`.*must be 1-D", class = "multihead_error_shape")
  expect_error(op_take_along_axis(x, matrix(4, 2, 1), axis = 2), "`indices` holds 4", class = "multihead_error_index")
  expect_error(op_take_along_axis(x, matrix(NA, 2, 1), axis = 2), "`indices` must be whole numbers",
               class = "multihead_error_argument")
  expect_error(op_take_along_axis(x, matrix(1, 2, 1), axis = 5), "`axis`", class = "multihead_error_argument")
  expect_error(op_take_along_axis(x, matrix(1, 2, 1), axis = 2, zero_indexed = 1), "`zero_indexed`",
               class = "multihead_error_argument")
  expect_error(op_take_along_axis(factor("a"), 1), "`x` must be a tensor", class = "multihead_error_argument")
})

# ---- op_slice / op_slice_update -------------------------------------------------------

test_that("op_slice() and op_slice_update() match base R blocks", {
  set.seed(6)
  x <- array(rnorm(60), c(3, 4, 5))
  expect_same(op_slice(x, c(2, 1, 3), c(2, 3, 2)), x[2:3, 1:3, 3:4, drop = FALSE])
  expect_same(op_slice(x, c(1, 2, 2), c(-1, 1, -1)), x[1:3, 2, 2:5, drop = FALSE])
  expect_same(op_slice(x, c(-1, -2, 1), c(1, 2, 5)), x[3, 3:4, , drop = FALSE])
  expect_identical(dim(op_slice(x, c(1, 1, 1), c(0, 4, 5))), c(0L, 4L, 5L))
  expect_same(op_slice(matrix(1:25, 5), list(3, 3), list(2, 2)), matrix(1:25, 5)[3:4, 3:4])
  expect_same(op_slice(1:5, 2, 3), 2:4)
  u <- array(-(1:6), c(1, 2, 3))
  ref <- x; ref[3, 2:3, 3:5] <- u
  expect_same(op_slice_update(x, c(3, 2, 3), u), ref)
  ref2 <- x; ref2[1:3, 4, 1:5] <- 0
  expect_same(op_slice_update(x, c(1, -1, 1), array(0, c(3, 1, 5))), ref2)
  # the result keeps the dtype of `inputs`
  expect_identical(op_slice_update(matrix(0L, 2, 2), c(1, 1), matrix(7, 1, 1)), matrix(c(7L, 0L, 0L, 0L), 2))
})

test_that("op_slice() / op_slice_update() on symbolic tensors and their gradients", {
  x <- keras_input(shape = c(NA, 8))
  expect_identical(op_slice(x, c(1, 2, 3), c(2, 3, 4))$shape, c(2L, 3L, 4L))
  expect_identical(op_slice(x, c(1, 2, 3), c(-1, -1, -1))$shape, c(NA, NA, 6L))
  expect_identical(op_slice_update(x, c(1, 1, 5), array(0, c(1, 1, 4)))$shape, c(NA, NA, 8L))
  expect_identical(op_slice_update(x, c(1, 1, 5), keras_input(shape = c(2, 4)))$shape, c(NA, NA, 8L))
  expect_identical(op_slice(keras_input(shape = 3, dtype = "int32"), c(1, 2), c(1, 2))$dtype, "int32")
  set.seed(7)
  v <- array(rnorm(24), c(2, 3, 4))
  r <- graph_run_op(function(x) op_slice(x, c(1, 2, 2), c(2, 2, -1)), list(v))
  expect_same(r$output, v[, 2:3, 2:4])
  u <- array(rnorm(6), c(1, 2, 3))
  r2 <- graph_run_op(function(x, u) op_slice_update(x, c(2, 1, 2), u), list(v, u))
  expect_same(r2$output, op_slice_update(v, c(2, 1, 2), u))
  # start indices computed in the model (a 1-D integer tensor)
  r3 <- graph_run_op(function(x, s) op_slice(x, s, c(1, 2, 2)), list(v, c(2L, -2L, 3L)))
  expect_same(r3$output, v[2, 2:3, 3:4, drop = FALSE])
  r4 <- graph_run_op(function(x, s, u) op_slice_update(x, s, u), list(v, c(1L, 2L, 1L), u))
  expect_same(r4$output, op_slice_update(v, c(1, 2, 1), u))
  rs <- run_with_shape(function(x) op_slice(x, c(2, 1, 1), c(-1, 2, 4)), v, c(NA, 3, 4))
  expect_identical(rs$symbolic$shape, c(NA, 2L, 4L))
  expect_same(rs$value, v[2, 1:2, , drop = FALSE])
  check_op_gradient(function(x) op_slice(x, c(1, 2, 2), c(2, 2, 3)), list(v))
  check_op_gradient(function(x, u) op_slice_update(x, c(2, 1, 2), u), list(v, u))
  back <- check_op_gradient(function(x, s) op_slice(x, s, c(1, 2, 2)), list(v, c(2L, 2L, 3L)), wrt = 1)
  expect_null(back$inputs[[2]])
})

test_that("op_slice() / op_slice_update() reject bad input, naming the argument", {
  x <- array(1, c(3, 4))
  expect_error(op_slice(), "`inputs` must be supplied", class = "multihead_error_argument")
  expect_error(op_slice(x), "`start_indices` must be supplied", class = "multihead_error_argument")
  expect_error(op_slice(x, c(1, 1)), "`shape` must be supplied", class = "multihead_error_argument")
  expect_error(op_slice("x", c(1, 1), c(1, 1)), "`inputs` must be a tensor", class = "multihead_error_argument")
  expect_error(op_slice(x, c(1, 1, 1), c(1, 1)), "`start_indices` must be 2 whole numbers", class = "multihead_error_argument")
  expect_error(op_slice(x, c(1, NA), c(1, 1)), "`start_indices` must be 2 whole numbers", class = "multihead_error_argument")
  expect_error(op_slice(x, c(0, 1), c(1, 1)), "`start_indices` must be 1-based", class = "multihead_error_argument")
  expect_error(op_slice(x, c(1, 1), c(1, 1, 1)), "`shape` must be 2 whole numbers", class = "multihead_error_argument")
  expect_error(op_slice(x, c(1, 1), c(1, -2)), "`shape` must be 2 whole numbers", class = "multihead_error_argument")
  expect_error(op_slice(x, c(1, 1), c(1.5, 1)), "`shape`", class = "multihead_error_argument")
  expect_error(op_slice(x, c(1, 1), c(NA, 1)), "`shape`", class = "multihead_error_argument")
  expect_error(op_slice(x, c(3, 1), c(2, 1)), "does not fit along axis 1: it starts at 3 and has size 2",
               class = "multihead_error_index")
  expect_error(op_slice(x, c(5, 1), c(0, 1)), "`start_indices` entry 1 is 5, out of range", class = "multihead_error_index")
  expect_error(op_slice(x, c(1, -5), c(1, 1)), "`start_indices` entry 2 is -5", class = "multihead_error_index")
  s <- keras_input(shape = NULL, batch_shape = 2, dtype = "int32")
  expect_error(op_slice(x, s, c(1, -1)), "`shape` must be whole numbers >= 0 when `start_indices` is a symbolic",
               class = "multihead_error_argument")
  expect_error(op_slice(x, keras_input(shape = 3, dtype = "int32"), c(1, 1)), "`start_indices` must be a 1-D integer tensor",
               class = "multihead_error_argument")
  expect_error(graph_run_op(function(x, s) op_slice(x, s, c(2, 2)), list(x, c(3L, 1L))),
               "op_slice\\(\\): the block does not fit along axis 1", class = "multihead_error_index")
  expect_error(op_slice_update(x), "`start_indices` must be supplied", class = "multihead_error_argument")
  expect_error(op_slice_update(x, c(1, 1)), "`updates` must be supplied", class = "multihead_error_argument")
  expect_error(op_slice_update(x, c(1, 1), "a"), "`updates` must be a tensor", class = "multihead_error_argument")
  expect_error(op_slice_update(x, c(1, 1), c(1, 2)), "`updates` must have the rank of `inputs`", class = "multihead_error_shape")
  expect_error(op_slice_update(x, c(2, 1), matrix(0, 3, 1)), "does not fit along axis 1", class = "multihead_error_index")
  expect_error(op_slice_update(x, c(1, 1), matrix(NA, 1, 1)), "`updates` must be free of NA", class = "multihead_error_argument")
  expect_error(op_slice_update(x, 1, matrix(0, 1, 1)), "`start_indices` must be 2 whole numbers", class = "multihead_error_argument")
  expect_error(op_slice_update(keras_input(shape = 3), c(1, 1), keras_input(shape = 4)),
               "does not fit along axis 2: it starts at 1 and has size 4", class = "multihead_error_index")
  expect_error(op_slice_update(keras_input(shape = 3), keras_input(batch_shape = 2, dtype = "int32"),
                               keras_input(shape = 4)),
               "`updates` is larger than `inputs`", class = "multihead_error_shape")
})

# ---- op_one_hot ----------------------------------------------------------------------

test_that("op_one_hot() matches a plain-R reference (1-based, 0-based, axes, dtypes)", {
  ref_one_hot <- function(x, C, zero = FALSE) {
    cls <- as.vector(x) + zero
    out <- matrix(0, length(cls), C)
    for (k in seq_along(cls)) if (cls[k] >= 1 && cls[k] <= C) out[k, cls[k]] <- 1
    array(out, c(if (is.null(dim(x))) length(x) else dim(x), C))
  }
  expect_same(op_one_hot(c(2, 4, 3, 1), 4), ref_one_hot(c(2, 4, 3, 1), 4))
  expect_same(op_one_hot(c(1, 3, 2, 0), 4, zero_indexed = TRUE), ref_one_hot(c(1, 3, 2, 0), 4, TRUE))
  x <- matrix(c(1, 2, 3, 3, 1, 2), 2)
  expect_same(op_one_hot(x, 3), ref_one_hot(x, 3))
  expect_same(op_one_hot(x, 3, axis = 1), aperm(ref_one_hot(x, 3), c(3, 1, 2)))
  expect_same(op_one_hot(x, 3, axis = 2), aperm(ref_one_hot(x, 3), c(1, 3, 2)))
  expect_same(op_one_hot(x, 3, axis = -2), aperm(ref_one_hot(x, 3), c(1, 3, 2)))
  # out of range (0 when 1-based, negative, above num_classes): all-zero rows
  expect_same(op_one_hot(c(0, -1, 5, 2), 4), rbind(0, 0, 0, c(0, 1, 0, 0)))
  expect_same(op_one_hot(c(4, -1), 4, zero_indexed = TRUE), matrix(0, 2, 4))
  expect_identical(op_one_hot(c(1L, 2L), 2, dtype = "int32"), matrix(c(1L, 0L, 0L, 1L), 2))
  expect_identical(op_one_hot(c(1L, 2L), 2, dtype = "bool"), matrix(c(TRUE, FALSE, FALSE, TRUE), 2))
  expect_same(op_one_hot(3, 3), c(0, 0, 1))
  f <- factor(c("b", "a", "c", "b"))
  expect_same(op_one_hot(f), ref_one_hot(c(2, 1, 3, 2), 3))
  expect_same(op_one_hot(f, num_classes = 5), ref_one_hot(c(2, 1, 3, 2), 5))
})

test_that("op_one_hot() symbolic shapes, graph run, no gradient to the ids", {
  ids <- keras_input(shape = c(NA), dtype = "int32")
  expect_identical(op_one_hot(ids, 7)$shape, c(NA, NA, 7L))
  expect_identical(op_one_hot(ids, 7, axis = 1)$shape, c(7L, NA, NA))
  expect_identical(op_one_hot(ids, 7)$dtype, "float32")
  expect_identical(op_one_hot(ids, 7, dtype = "int64")$dtype, "int64")
  v <- matrix(c(1L, 3L, 0L, 2L, 5L, 3L), 2)
  r <- graph_run_op(function(i) op_one_hot(i, 4), list(v))
  expect_same(r$output, op_one_hot(v, 4))
  r0 <- graph_run_op(function(i) op_one_hot(i, 4, zero_indexed = TRUE, axis = 2), list(v))
  expect_same(r0$output, op_one_hot(v, 4, zero_indexed = TRUE, axis = 2))
  # a loss through one_hot(labels) * logits: the logits get their gradient, the ids none
  set.seed(8)
  logits <- matrix(rnorm(8), 2, 4)
  back <- check_op_gradient(function(z, i) z * op_one_hot(i, 4), list(logits, c(2L, 4L)), wrt = 1)
  expect_null(back$inputs[[2]])
  expect_error(graph_run_op(function(i) op_one_hot(i, 3), list(c(1.5, 2)), dtypes = "float32"),
               "op_one_hot\\(\\): `x` must hold whole class ids", class = "multihead_error_argument")
})

test_that("op_one_hot() rejects bad input, naming the argument", {
  expect_error(op_one_hot(), "`x` must be supplied", class = "multihead_error_argument")
  expect_error(op_one_hot(1:3), "`num_classes` must be supplied", class = "multihead_error_argument")
  expect_error(op_one_hot(1:3, 0), "`num_classes` must be a positive whole number", class = "multihead_error_argument")
  expect_error(op_one_hot(1:3, NA), "`num_classes`", class = "multihead_error_argument")
  expect_error(op_one_hot(1:3, 2.5), "`num_classes`", class = "multihead_error_argument")
  expect_error(op_one_hot(c(1, NA), 3), "`x` must be whole numbers without NA", class = "multihead_error_argument")
  expect_error(op_one_hot(c(1, 1.5), 3), "`x` must be whole numbers", class = "multihead_error_argument")
  expect_error(op_one_hot("a", 3), "`x` must be a tensor", class = "multihead_error_argument")
  expect_error(op_one_hot(c(TRUE, FALSE), 3), "`x` must be whole numbers", class = "multihead_error_argument")
  expect_error(op_one_hot(1:3, 3, axis = 3), "`axis` must be axes between 1 and 2", class = "multihead_error_argument")
  expect_error(op_one_hot(1:3, 3, axis = "last"), "`axis`", class = "multihead_error_argument")
  expect_error(op_one_hot(1:3, 3, dtype = "float16"), "`dtype` must be one of", class = "multihead_error_argument")
  expect_error(op_one_hot(1:3, 3, sparse = TRUE), "`sparse` must be FALSE", class = "multihead_error_argument")
  expect_error(op_one_hot(1:3, 3, sparse = NA), "`sparse`", class = "multihead_error_argument")
  expect_error(op_one_hot(factor("a"), zero_indexed = TRUE), "`zero_indexed` must be FALSE when `x` is a factor",
               class = "multihead_error_argument")
  expect_error(op_one_hot(1:3, 3, zero_indexed = NA), "`zero_indexed`", class = "multihead_error_argument")
  expect_error(op_one_hot(keras_input(shape = 2, dtype = "bool"), 3), "`x` must be class ids",
               class = "multihead_error_argument")
})

# ---- `[` on symbolic tensors ------------------------------------------------------------

test_that("x[...] on symbolic tensors equals base R subsetting of the same array run through a graph", {
  set.seed(9)
  a <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  n <- 4
  cases <- list(
    list(function(x) x[, -1, ], a[, 3, ]),                         # negative: from the end
    list(function(x) x[, 1:2, ], a[, 1:2, ]),
    list(function(x) x[, 1:(n - 2)], a[, 1:2, ]),
    list(function(x) x[.., 1:2], a[, , 1:2]),
    list(function(x) x[.., -1], a[, , 4]),
    list(function(x) x[1, .., 2], a[1, , 2]),
    list(function(x) x[, newaxis, ], array(a, c(2, 1, 3, 4))),
    list(function(x) x[, , newaxis, ], array(a, c(2, 3, 1, 4))),
    list(function(x) x[newaxis], array(a, c(1, 2, 3, 4))),
    list(function(x) x[.., newaxis], array(a, c(2, 3, 4, 1))),
    list(function(x) x[NULL, 2, ], array(a[2, , ], c(1, 3, 4))),
    list(function(x) x[2], a[2, , ]),                                # trailing axes taken whole
    list(function(x) x[], a),
    list(function(x) x[..], a),
    list(function(x) x[, 2:2, ], a[, 2, , drop = FALSE]),            # a range keeps the axis
    list(function(x) x[, 2, , drop = FALSE], a[, 2, , drop = FALSE]),
    list(function(x) x[, c(3, 1, 3), c(-1, 1)], a[, c(3, 1, 3), c(4, 1)]),
    list(function(x) x[, c(TRUE, FALSE, TRUE), ], a[, c(1, 3), ]),
    list(function(x) x[, 3:1, ], a[, 3:1, ]),                        # descending, as R's `:`
    list(function(x) x[, -1:-2, ], a[, 3:2, ]),
    list(function(x) x[, , 2:-1], a[, , 2:4]),                       # mixed signs: a slice to the end
    list(function(x) x[, , 1:-2], a[, , 1:3]),
    list(function(x) x[, , NA:2], a[, , 1:2]),
    list(function(x) x[, , 3:NA], a[, , 3:4]),
    list(function(x) x[, , 1:4:2], a[, , c(1, 3)]),
    list(function(x) x[, , NA:NA:-1], a[, , 4:1]),
    list(function(x) x[-1, -1, -1], a[2, 3, 4]),
    list(function(x) x[, 2:NA, 1][, newaxis], array(a[, 2:3, 1], c(2, 1, 2)))
  )
  for (k in seq_along(cases)) {
    fn <- cases[[k]][[1]]
    expected <- cases[[k]][[2]]
    r <- graph_run_op(fn, list(a))
    expect_same(r$output, expected, info = paste("case", k, deparse(body(fn))))
    expect_identical(r$symbolic$shape, multihead:::value_shape(expected), info = paste("shape, case", k))
  }
  expect_same(op_subset(a, 1), a[1, , ])   # op_subset() on arrays: the same semantics, eagerly
  expect_same(op_subset(a, , -1, 2:NA), a[, 3, 2:4])
})

test_that("x[...] handles NA sizes, masks, coordinate matrices and integer tensor indices", {
  x <- keras_input(shape = c(NA, 6))
  expect_identical(x[, -1, ]$shape, c(NA, 6L))
  expect_identical(x[, 2:NA, ]$shape, c(NA, NA, 6L))
  expect_identical(x[, -3:-1, ]$shape, c(NA, 3L, 6L))
  expect_identical(x[, 1:3:2]$shape, c(NA, 2L, 6L))
  expect_identical(x[, , 2:5]$shape, c(NA, NA, 4L))
  expect_identical(x[, newaxis, , 1:2]$shape, c(NA, 1L, NA, 2L))
  expect_identical(x[.., 1]$shape, c(NA_integer_, NA_integer_))
  expect_identical(x[, , 1]$dtype, "float32")
  set.seed(10)
  v <- array(rnorm(2 * 5 * 6), c(2, 5, 6))
  rs <- run_with_shape(function(x) x[, 2:-2, -1], v, c(NA, NA, 6))
  expect_identical(rs$symbolic$shape, c(NA_integer_, NA_integer_))
  expect_same(rs$value, v[, 2:4, 6])
  # a logical array of x's shape: the TRUE elements in row-major order (keras3)
  m <- matrix(c(1, 5, 2, 6, 3, 7), 2, 3)
  mask <- m > 2
  r <- graph_run_op(function(x) x[mask], list(m))
  expect_same(r$output, t(m)[t(mask)])
  expect_identical(r$symbolic$shape, 4L)
  # a bool symbolic mask: the size is known only when the graph runs
  rb <- graph_run_op(function(x, k) x[k], list(m, mask))
  expect_same(rb$output, t(m)[t(mask)])
  expect_identical(rb$symbolic$shape, NA_integer_)
  # an integer matrix: one element per row (coordinates)
  coords <- rbind(c(1, 1), c(2, 3), c(-1, -2))
  expect_same(graph_run_op(function(x) x[coords], list(m))$output, c(m[1, 1], m[2, 3], m[2, 2]))
  # integer symbolic tensors index an axis (1-based, negative from the end)
  ri <- graph_run_op(function(x, i) x[, i, ], list(v, c(5L, 1L, -1L)))
  expect_same(ri$output, v[, c(5, 1, 5), ])
  rj <- graph_run_op(function(x, i) x[1, newaxis, 2:3, i], list(v, 2L))
  expect_same(rj$output, array(v[1, 2:3, 2], c(1, 2)))
})

test_that("x[...] gradients scatter back (repeated positions add up)", {
  set.seed(11)
  a <- array(rnorm(24), c(2, 3, 4))
  check_op_gradient(function(x) x[, -1, ], list(a))
  check_op_gradient(function(x) x[, c(1, 1, 3), c(2, 2)], list(a))
  check_op_gradient(function(x) x[newaxis, 2, 3:1, 1:4:2], list(a))
  check_op_gradient(function(x) x[a > 0], list(a))
  check_op_gradient(function(x) x[rbind(c(1, 1, 1), c(1, 1, 1), c(2, 3, 4))], list(a))
  check_op_gradient(function(x, i) x[.., i], list(a, c(2L, 2L, -1L)), wrt = 1)
})

test_that("x[...] on variables: eager on the value, recorded inside a trace", {
  d <- layer_dense(units = 3)
  invisible(d(array(1, c(2, 4))))
  k <- multihead:::new_variable(multihead:::layer_self(d), "kernel")
  w <- k$value
  expect_same(k[-1, ], w[4, ])
  expect_same(k[, 2:3], w[, 2:3])
  expect_same(k[newaxis, 1], array(w[1, ], c(1, 3)))
  expect_same(k[], w)
  y <- multihead:::with_trace_frame(k[-1, c(2, 2)])
  expect_s3_class(y, "multihead_tensor")
  expect_identical(y$shape, 2L)
  g <- multihead:::build_graph(list(), list(y))
  run <- multihead:::run_graph_forward(g, list(), keep = TRUE)
  expect_same(run$outputs[[1]], w[4, c(2, 2)], tolerance = 1e-6)
  back <- multihead:::run_graph_backward(g, run, list(c(1, 10)))
  gw <- as.list(back$weights)[[1]]
  expect_equal(gw, matrix(c(0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0, 0), 4, 3))
  expect_error(k[1, 1] <- 0, "Variables cannot be changed with `v\\[...\\] <- value`.*assign",
               class = "multihead_error_immutable")
})

test_that("a custom embedding: op_take() of a variable by symbolic token ids, inside a trace", {
  d <- layer_dense(units = 3)
  invisible(d(array(1, c(2, 5))))
  emb <- multihead:::new_variable(multihead:::layer_self(d), "kernel")   # a 5 x 3 table
  w <- emb$value
  ids <- multihead:::new_placeholder_tensor(c(NA, 4), "int32", "ids")
  out <- multihead:::with_trace_frame(op_take(emb, ids, axis = 1, zero_indexed = TRUE))
  expect_identical(out$shape, c(NA, 4L, 3L))
  g <- multihead:::build_graph(list(ids), list(out))
  v <- matrix(c(0L, 4L, 2L, 2L, 1L, 2L, 0L, 3L), 2)
  run <- multihead:::run_graph_forward(g, list(v), keep = TRUE)
  expect_same(run$outputs[[1]], ref_take(w, v, 1, zero = TRUE), tolerance = 1e-6)
  back <- multihead:::run_graph_backward(g, run, list(array(1, c(2, 4, 3))))
  counts <- tabulate(as.vector(v) + 1L, 5)
  expect_equal(as.list(back$weights)[[1]], matrix(counts, 5, 3))     # repeated ids add up
  expect_error(multihead:::run_graph_forward(g, list(v + 1L)), "op_take\\(\\): `indices` holds 5",
               class = "multihead_error_index")
})

test_that("bool tensors: mask[, newaxis, ] and friends keep the dtype", {
  mask <- keras_input(shape = 5, dtype = "bool")
  expect_identical(mask[, newaxis, ]$shape, c(NA, 1L, 5L))
  expect_identical(mask[, newaxis, ]$dtype, "bool")
  expect_identical(mask[, newaxis, newaxis, ]$shape, c(NA, 1L, 1L, 5L))
  m <- matrix(c(TRUE, FALSE, TRUE, TRUE, FALSE, FALSE), 2)
  r <- graph_run_op(function(m) m[, newaxis, -1], list(m))
  expect_identical(r$output, array(m[, 3], c(2, 1)))
  expect_identical(op_take(m, 2, axis = 2), array(m[, 2], 2))
})

test_that("x[...] rejects bad indices and `[<-`, with clear errors", {
  x <- keras_input(shape = c(3, 4))
  expect_error(x[, 0, ], "index 2 \\(`0`\\) holds 0; indices are 1-based", class = "multihead_error_argument")
  expect_error(x[, 0:2], "index 2 \\(`0:2`\\) has 0 as its start", class = "multihead_error_argument")
  expect_error(x[, 1.5], "must hold whole numbers", class = "multihead_error_argument")
  expect_error(x[, NA_real_], "must hold whole numbers without NA", class = "multihead_error_argument")
  expect_error(x[, c(TRUE, NA, FALSE)], "holds NA", class = "multihead_error_argument")
  expect_error(x[, "a"], "must be a number, a vector", class = "multihead_error_argument")
  expect_error(x[, integer(0)], "is empty", class = "multihead_error_argument")
  expect_error(x[, 1, 1, 1, 1], "5 indices for a tensor of rank 3", class = "multihead_error_argument")
  expect_error(x[.., 1, ..], "`..` may appear only once", class = "multihead_error_argument")
  expect_error(x[, 4, ], "index 2 \\(`4`\\) selects position 4, but axis 2 has size 3", class = "multihead_error_index")
  expect_error(x[, -4, ], "selects position -4", class = "multihead_error_index")
  expect_error(x[, 2:5, ], "selects position 5", class = "multihead_error_index")
  expect_error(x[, c(TRUE, FALSE), ], "logical vector of length 2, but axis 2 has size 3", class = "multihead_error_index")
  expect_error(x[, 1:2:0], "has 0 as its step", class = "multihead_error_argument")
  expect_error(x[, matrix(1, 2, 2)], "is a 2 x 2 array", class = "multihead_error_argument")
  expect_error(x[array(TRUE, c(2, 4, 4))], "logical index .* has shape \\(2, 4, 4\\), not the shape of `x` \\(NA, 3, 4\\)",
               class = "multihead_error_argument")
  expect_error(x[, keras_input(shape = 3, dtype = "bool")], "bool tensor must be the only index",
               class = "multihead_error_argument")
  expect_error(x[, 1, foo = 2], "unknown named argument `foo`", class = "multihead_error_argument")
  expect_error(x[, 1, drop = NA], "`drop` must be TRUE or FALSE", class = "multihead_error_argument")
  expect_error(op_subset(), "`x` must be supplied", class = "multihead_error_argument")
  expect_error(op_subset("a", 1), "`x` must be a tensor", class = "multihead_error_argument")
  # unknown sizes: checked when the graph runs, naming the index
  expect_error(run_with_shape(function(x) x[, 5], array(0, c(2, 3)), c(NA, NA)),
               "index 2 \\(`5`\\) selects position 5, but axis 2 has size 3", class = "multihead_error_index")
  expect_error(graph_run_op(function(x, i) x[, i], list(array(0, c(2, 3)), 4L)),
               "op_subset\\(\\): `index tensor` holds 4", class = "multihead_error_index")
  # tensors are immutable
  expect_error(x[, 1, 1] <- 0, "Symbolic tensors are immutable.*op_slice_update.*op_where",
               class = "multihead_error_immutable")
  # base R's `[` on arrays is untouched
  a <- array(1:24, c(2, 3, 4))
  expect_identical(a[, -1, ], a[, 2:3, ])
  expect_identical(a[1], 1L)
})

test_that("eager indexing ops have a small R overhead", {
  x <- matrix(rnorm(12), 3, 4)
  f <- function() for (i in 1:200) op_take(x, c(1, 3), axis = 2)
  t <- system.time(f())[["elapsed"]]
  expect_lt(t / 200, 1e-3)   # generous bound: a regression guard, not a benchmark
})

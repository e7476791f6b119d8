# Shape-manipulation and dtype ops (R/ops-shape.R): eager results against
# plain-R references written here, symbolic shapes and dtypes (NA sizes),
# the graph runner equal to eager, finite-difference gradients, bad input.

err <- "multihead_error"

# ---- independent references ---------------------------------------------------------

# Row-major (C-order) position -> 1-based index vector, by arithmetic.
c_index <- function(p, d) {
  idx <- integer(length(d))
  for (a in rev(seq_along(d))) {
    idx[a] <- p %% d[a]
    p <- p %/% d[a]
  }
  idx + 1L
}

# Keras's reshape, element by element: the row-major p-th element of x goes
# to the row-major p-th place of the result.
ref_reshape_loop <- function(x, to) {
  d <- if (is.null(dim(x))) length(x) else dim(x)
  out <- array(x[1], to)
  for (p in seq_along(x) - 1L) {
    out[matrix(c_index(p, to), 1)] <- x[matrix(c_index(p, d), 1)]
  }
  out
}

# The same through base R: reversed axes are row-major storage.
ref_reshape_aperm <- function(x, to) {
  d <- if (is.null(dim(x))) length(x) else dim(x)
  v <- if (length(d) > 1L) aperm(x, rev(seq_along(d))) else x
  y <- array(v, rev(to))
  if (length(to) > 1L) aperm(y, rev(seq_along(to))) else y
}

# float32 rounding through R's own 4-byte conversion.
ref_f32 <- function(x) {
  out <- readBin(writeBin(as.double(x), raw(), size = 4), "double", n = length(x), size = 4)
  attributes(out) <- attributes(x)
  out
}

sym <- function(shape, dtype = "float32") multihead:::new_placeholder_tensor(shape, dtype, "p")

make_variable <- function() {
  d <- layer_dense(units = 3)
  invisible(d(matrix(1, 2, 4)))
  multihead:::new_variable(multihead:::layer_self(d), "kernel")
}

# ---- op_shape ----------------------------------------------------------------------

test_that("op_shape() gives integer shapes with NA for unknown sizes", {
  expect_identical(op_shape(array(0, c(2, 3, 4))), c(2L, 3L, 4L))
  expect_identical(op_shape(matrix(1:6, 2)), c(2L, 3L))
  expect_identical(op_shape(1:5), 5L)
  expect_identical(op_shape(3.5), integer(0))
  expect_identical(op_shape(TRUE), integer(0))
  x <- keras_input(shape = c(10, 16))
  expect_identical(op_shape(x), c(NA, 10L, 16L))
  expect_identical(op_shape(x)[[2]], 10L)
  s <- op_shape(x)
  b <- s[1]; t <- s[2]
  expect_true(is.na(b)); expect_identical(t, 10L)
  expect_identical(as.list(op_shape(x)), list(NA_integer_, 10L, 16L))   # what destructuring sees
  v <- make_variable()
  expect_identical(op_shape(v), c(4L, 3L))
  expect_error(op_shape(), "`x` must be supplied", class = err)
  expect_error(op_shape("a"), "`x` must be a tensor", class = err)
  expect_error(op_shape(list(1, 2)), "`x` must be a tensor", class = err)
  expect_error(op_shape(NULL), "`x` must be a tensor", class = err)
})

# ---- op_reshape ----------------------------------------------------------------------

test_that("op_reshape() keeps Keras's row-major order", {
  set.seed(1)
  x <- array(rnorm(24), c(2, 3, 4))
  for (to in list(c(6, 4), c(4, 6), c(24), c(2, 12), c(3, 2, 4), c(4, 3, 2), c(1, 24, 1), c(2, 3, 4),
                  c(2, 2, 3, 2))) {
    y <- op_reshape(x, to)
    expect_identical(y, ref_reshape_loop(x, to), info = paste(to, collapse = ","))
    expect_identical(y, ref_reshape_aperm(x, to), info = paste(to, collapse = ","))
  }
  m <- matrix(1:6, 2, 3, byrow = TRUE)
  expect_identical(as.vector(op_reshape(m, 6)), 1:6)
  expect_identical(op_reshape(m, 6), array(1:6, 6))
  expect_identical(op_reshape(m, c(3, 2)), matrix(1:6, 3, 2, byrow = TRUE))
  # inferred sizes: -1, NA, NULL in a list
  expect_identical(op_reshape(x, c(-1, 4)), ref_reshape_aperm(x, c(6, 4)))
  expect_identical(op_reshape(x, c(2, NA)), ref_reshape_aperm(x, c(2, 12)))
  expect_identical(op_reshape(x, list(NULL, 3L, 2L)), ref_reshape_aperm(x, c(4, 3, 2)))
  # vectors, scalars, integers and logicals
  expect_identical(op_reshape(1:6, c(2, 3)), matrix(1:6, 2, 3, byrow = TRUE))
  expect_identical(op_reshape(array(5, c(1, 1)), integer(0)), 5)
  expect_identical(op_reshape(7, c(1, 1)), array(7, c(1, 1)))
  l <- matrix(c(TRUE, FALSE, FALSE, TRUE, TRUE, FALSE), 2)
  expect_identical(op_reshape(l, c(3, 2)), ref_reshape_loop(l, c(3, 2)))
  # a size-1 reshuffle keeps the element order either way
  expect_identical(op_reshape(x, c(2, 1, 3, 4)), array(x, c(2, 1, 3, 4)))
})

test_that("op_reshape() infers symbolic shapes with unknown sizes", {
  x <- keras_input(shape = c(4, 8))
  y <- op_reshape(x, c(-1, 32))
  expect_identical(y$shape, c(NA, 32L))
  expect_identical(y$dtype, "float32")
  expect_identical(op_reshape(x, c(-1, 4, 2, 4))$shape, c(NA, 4L, 2L, 4L))
  expect_identical(op_reshape(sym(c(2L, 4L, 8L), "int32"), c(8, -1))$shape, c(8L, 8L))
  expect_identical(op_reshape(sym(c(2L, 4L, 8L), "int32"), c(8, -1))$dtype, "int32")
  # with NA sizes and no -1, the new size must be a multiple of the known ones
  expect_identical(op_reshape(sym(c(NA, 4L)), c(2, 8))$shape, c(2L, 8L))
  expect_error(op_reshape(sym(c(NA, 4L)), c(3, 5)), "op_reshape\\(\\).*not a multiple.*`x` \\(NA, 4\\)",
               class = "multihead_error_shape")
  expect_error(op_reshape(keras_input(shape = c(4, 8)), c(-1, 0)), "size 0", class = err)
})

test_that("op_reshape() through the graph equals eager and has exact gradients", {
  set.seed(2)
  x <- array(rnorm(24), c(2, 3, 4))
  r <- graph_run_op(function(a) op_reshape(a, c(4, -1)), list(x))
  expect_identical(r$output, op_reshape(x, c(4, 6)))
  expect_identical(r$symbolic$shape, c(4L, 6L))
  check_op_gradient(function(a) op_reshape(a, c(4, -1)), list(x))
  check_op_gradient(function(a) op_reshape(a, c(3, 2, 2, 2)), list(array(rnorm(24), c(6, 4))))
  check_op_gradient(function(a) op_reshape(a, 12) * 2, list(matrix(rnorm(12), 3)))
  # NA batch at run time: the inferred size is resolved from the value
  ph <- sym(c(NA, 4L, 2L), "float64")
  out <- op_reshape(ph, c(-1, 8))
  g <- multihead:::build_graph(list(ph), list(out))
  v <- array(rnorm(24), c(3, 4, 2))
  expect_identical(multihead:::run_graph_forward(g, list(v))$outputs[[1]], ref_reshape_aperm(v, c(3, 8)))
  # a run-time size that does not fit is an error naming the op
  ph2 <- sym(c(NA, 4L), "float64")
  out2 <- op_reshape(ph2, c(2, 8))
  g2 <- multihead:::build_graph(list(ph2), list(out2))
  expect_error(multihead:::run_graph_forward(g2, list(matrix(0, 3, 4))), "op_reshape\\(\\).*16 elements",
               class = err)
})

test_that("op_reshape() rejects bad input, naming the argument", {
  x <- array(0, c(2, 3))
  expect_error(op_reshape(x, c(4, 2)), "op_reshape\\(\\): the new shape has 8 elements.*`x` \\(2, 3\\)",
               class = "multihead_error_shape")
  expect_error(op_reshape(x, c(-1, 4)), "cannot infer the size marked -1", class = err)
  expect_error(op_reshape(x, c(-1, -1)), "`newshape` must be .*2 sizes to infer", class = err)
  expect_error(op_reshape(x, c(NA, NA, 3)), "`newshape` must be", class = err)
  expect_error(op_reshape(x, c(2, 1.5)), "`newshape` must be a shape", class = err)
  expect_error(op_reshape(x, c(-2, 3)), "`newshape` must be a shape", class = err)
  expect_error(op_reshape(x, "a"), "`newshape` must be a shape", class = err)
  expect_error(op_reshape(x, list("a", 2)), "`newshape` must be a shape", class = err)
  expect_error(op_reshape(x, c(Inf, 2)), "`newshape` must be a shape", class = err)
  expect_error(op_reshape(x), "`newshape` must be supplied", class = err)
  expect_error(op_reshape(newshape = 6), "`x` must be supplied", class = err)
  expect_error(op_reshape("a", 1), "`x` must be a tensor", class = err)
  expect_error(op_reshape(c(1, NA), 2), "`x` must be free of NA", class = err)
})

# ---- op_transpose, t() ---------------------------------------------------------------

test_that("op_transpose() permutes axes as keras3 (1-based, NULL reverses)", {
  set.seed(3)
  x <- array(rnorm(24), c(2, 3, 4))
  y <- op_transpose(x)
  expect_identical(dim(y), c(4L, 3L, 2L))
  for (i in 1:2) for (j in 1:3) for (k in 1:4) expect_identical(y[k, j, i], x[i, j, k])
  z <- op_transpose(x, c(3, 1, 2))
  expect_identical(dim(z), c(4L, 2L, 3L))
  for (i in 1:2) for (j in 1:3) for (k in 1:4) expect_identical(z[k, i, j], x[i, j, k])
  expect_identical(op_transpose(x, c(-1, 1, -2)), z)
  expect_identical(op_transpose(x, list(3, 1, 2)), z)
  m <- matrix(1:6, 2)
  expect_identical(op_transpose(m), t(m))
  expect_identical(op_transpose(1:3), 1:3)
  expect_identical(op_transpose(5), 5)
  expect_identical(op_transpose(x, 1:3), x)
})

test_that("op_transpose() and t() on symbolic tensors and variables", {
  x <- keras_input(shape = c(3, 4))
  expect_identical(op_transpose(x)$shape, c(4L, 3L, NA))
  expect_identical(op_transpose(x, c(1, 3, 2))$shape, c(NA, 4L, 3L))
  expect_identical(op_transpose(sym(c(2L, 3L), "int32"))$dtype, "int32")
  expect_identical(t(keras_input(shape = 3))$shape, c(3L, NA))
  expect_error(t(x), "`x` must be a rank-2 tensor for t\\(\\).*\\(NA, 3, 4\\)", class = err)
  v <- make_variable()
  expect_identical(t(v), t(multihead:::variable_value(v)))
  expect_identical(op_transpose(v), t(multihead:::variable_value(v)))
  tv <- multihead:::with_trace_frame(t(v))
  expect_true(multihead:::is_symbolic(tv))
  expect_identical(tv$shape, c(3L, 4L))
  set.seed(4)
  a <- array(rnorm(24), c(2, 3, 4))
  r <- graph_run_op(function(p) op_transpose(p, c(2, 3, 1)), list(a))
  expect_identical(r$output, op_transpose(a, c(2, 3, 1)))
  check_op_gradient(function(p) op_transpose(p, c(2, 3, 1)), list(a))
  check_op_gradient(function(p) op_transpose(p), list(array(rnorm(24), c(2, 3, 2, 2))))
  check_op_gradient(function(p) t(p) * 3, list(matrix(rnorm(6), 2)))
})

test_that("op_transpose() rejects bad axes, naming them", {
  x <- array(0, c(2, 3, 4))
  expect_error(op_transpose(x, c(1, 2)), "`axes` must be a permutation of the 3 axes", class = err)
  expect_error(op_transpose(x, c(0, 1, 2)), "`axes` must be axes between 1 and 3", class = err)
  expect_error(op_transpose(x, c(1, 1, 2)), "`axes` must be distinct", class = err)
  expect_error(op_transpose(x, c(1, 2, 4)), "`axes` must be axes between", class = err)
  expect_error(op_transpose(x, c(1, NA, 2)), "`axes` must be whole numbers", class = err)
  expect_error(op_transpose(x, "a"), "`axes` must be whole numbers", class = err)
  expect_error(op_transpose(x, c(1, Inf, 2)), "`axes` must be whole numbers", class = err)
  expect_error(op_transpose(x, c(1, 2^53, 2)), "`axes` must be whole numbers", class = err)
  expect_error(op_transpose(), "`x` must be supplied", class = err)
  expect_error(op_transpose(list(1)), "`x` must be a tensor", class = err)
})

# ---- op_expand_dims, op_squeeze ----------------------------------------------------------

test_that("op_expand_dims() and op_squeeze() insert and remove size-1 axes", {
  x <- array(1:6, c(2, 3))
  expect_identical(op_expand_dims(x, 1), array(1:6, c(1, 2, 3)))
  expect_identical(op_expand_dims(x, 2), array(1:6, c(2, 1, 3)))
  expect_identical(op_expand_dims(x, -1), array(1:6, c(2, 3, 1)))
  expect_identical(op_expand_dims(x, 3), array(1:6, c(2, 3, 1)))
  expect_identical(op_expand_dims(x, c(1, -1)), array(1:6, c(1, 2, 3, 1)))
  expect_identical(op_expand_dims(x, list(1, 4)), array(1:6, c(1, 2, 3, 1)))
  expect_identical(op_expand_dims(5, 1), array(5, 1))
  expect_identical(op_expand_dims(1:3, 1), array(1:3, c(1, 3)))
  y <- array(1:6, c(1, 2, 1, 3))
  expect_identical(op_squeeze(y), array(1:6, c(2, 3)))
  expect_identical(op_squeeze(y, 1), array(1:6, c(2, 1, 3)))
  expect_identical(op_squeeze(y, c(3, 1)), array(1:6, c(2, 3)))
  expect_identical(op_squeeze(y, -2), array(1:6, c(1, 2, 3)))
  expect_identical(op_squeeze(array(4, c(1, 1))), 4)
  expect_identical(op_squeeze(x), x)
})

test_that("op_expand_dims() / op_squeeze(): symbolic shapes, graph and gradients", {
  x <- keras_input(shape = c(1, 4))
  expect_identical(op_expand_dims(x, 2)$shape, c(NA, 1L, 1L, 4L))
  expect_identical(op_expand_dims(x, -1)$shape, c(NA, 1L, 4L, 1L))
  expect_identical(op_squeeze(x)$shape, c(NA, 4L))          # only known 1s
  expect_identical(op_squeeze(x, 2)$shape, c(NA, 4L))
  expect_identical(op_squeeze(x, 1)$shape, c(1L, 4L))        # NA: checked when run
  expect_identical(op_squeeze(sym(c(1L, 3L), "bool"))$dtype, "bool")
  set.seed(5)
  a <- array(rnorm(6), c(2, 1, 3))
  r <- graph_run_op(function(p) op_squeeze(op_expand_dims(p, 1)), list(a))
  expect_identical(r$output, array(a, c(2, 3)))
  check_op_gradient(function(p) op_expand_dims(p, c(1, 3)), list(a))
  check_op_gradient(function(p) op_squeeze(p, 2), list(a))
  # a squeezed axis of unknown size that is not 1 at run time
  ph <- sym(c(NA, 3L), "float64")
  g <- multihead:::build_graph(list(ph), list(op_squeeze(ph, 1)))
  expect_identical(multihead:::run_graph_forward(g, list(matrix(1:3, 1)))$outputs[[1]], array(as.double(1:3), 3))
  expect_error(multihead:::run_graph_forward(g, list(matrix(0, 2, 3))), "op_squeeze\\(\\): cannot squeeze axis 1",
               class = err)
})

test_that("op_expand_dims() / op_squeeze() reject bad input", {
  x <- array(0, c(2, 1, 3))
  expect_error(op_expand_dims(x), "`axis` must be supplied", class = err)
  expect_error(op_expand_dims(x, 0), "`axis` must be axes between 1 and 4", class = err)
  expect_error(op_expand_dims(x, 5), "`axis` must be axes between 1 and 4", class = err)
  expect_error(op_expand_dims(x, NA), "`axis` must be", class = err)
  expect_error(op_expand_dims(x, Inf), "`axis` must be whole numbers", class = err)
  expect_error(op_expand_dims(x, -2^31), "`axis` must be whole numbers", class = err)
  expect_error(op_expand_dims(x, "1"), "`axis` must be", class = err)
  expect_error(op_expand_dims(x, c(1, 1)), "`axis` must be distinct", class = err)
  expect_error(op_expand_dims(axis = 1), "`x` must be supplied", class = err)
  expect_error(op_squeeze(x, 1), "`axis` must be axes of `x` of size 1.*\\(2, 1, 3\\)", class = err)
  expect_error(op_squeeze(x, 0), "`axis` must be axes between 1 and 3", class = err)
  expect_error(op_squeeze(x, 4), "`axis` must be", class = err)
  expect_error(op_squeeze(x, 1.5), "`axis` must be whole numbers", class = err)
  expect_error(op_squeeze(keras_input(shape = c(1, 4)), 3), "`axis` must be axes of `x` of size 1", class = err)
  expect_error(op_squeeze(), "`x` must be supplied", class = err)
  expect_error(op_squeeze(letters), "`x` must be a tensor", class = err)
})

# ---- op_concatenate, op_stack ------------------------------------------------------------

test_that("op_concatenate() joins along an axis (keras3: default axis 1)", {
  set.seed(6)
  a <- array(rnorm(24), c(2, 3, 4)); b <- array(rnorm(12), c(1, 3, 4)); c3 <- array(rnorm(8), c(2, 1, 4))
  ref <- array(0, c(3, 3, 4)); ref[1:2, , ] <- a; ref[3, , ] <- b
  expect_identical(op_concatenate(list(a, b)), ref)
  ref2 <- array(0, c(2, 4, 4)); ref2[, 1:3, ] <- a; ref2[, 4, ] <- c3
  expect_identical(op_concatenate(list(a, c3), axis = 2), ref2)
  d <- array(rnorm(4), c(2, 3, 2))
  ref3 <- array(0, c(2, 3, 6)); ref3[, , 1:4] <- a; ref3[, , 5:6] <- d
  expect_identical(op_concatenate(list(a, d), axis = -1), ref3)
  expect_identical(op_concatenate(list(a, d, a), axis = 3)[, , 7:10], a)
  expect_identical(op_concatenate(list(1:2, 3:5)), array(1:5, 5))
  # dtypes promote: int + double -> double, bool + int -> int
  expect_identical(op_concatenate(list(matrix(1:2, 1), matrix(0.5, 1, 1)), axis = 2), matrix(c(1, 2, 0.5), 1))
  expect_identical(op_concatenate(list(c(TRUE, FALSE), 2:3)), array(c(1L, 0L, 2L, 3L), 4))
  expect_identical(op_concatenate(list(a)), a)
})

test_that("op_concatenate(): symbolic shapes with NA, graph, gradients", {
  x <- keras_input(shape = c(4, 8)); y <- keras_input(shape = c(2, 8))
  expect_identical(op_concatenate(list(x, y), axis = 2)$shape, c(NA, 6L, 8L))
  expect_identical(op_concatenate(list(x, x))$shape, c(NA, 4L, 8L))   # NA + NA
  expect_identical(op_concatenate(list(sym(c(NA, 3L)), sym(c(2L, NA))), axis = 1)$shape, c(NA, 3L))
  expect_identical(op_concatenate(list(sym(c(2L, NA)), sym(c(2L, 5L))), axis = 2)$shape, c(2L, NA))
  z <- op_concatenate(list(sym(c(2L, 3L), "int32"), sym(c(2L, 3L))), axis = 1)
  expect_identical(z$dtype, "float32")
  expect_identical(op_concatenate(list(sym(c(2L, 3L), "int32"), array(1L, c(2, 3))))$dtype, "int32")
  expect_identical(op_concatenate(list(x, array(0, c(1, 4, 8))))$shape, c(NA, 4L, 8L))
  set.seed(7)
  a <- array(rnorm(24), c(2, 3, 4)); b <- array(rnorm(16), c(2, 2, 4))
  r <- graph_run_op(function(p, q) op_concatenate(list(p, q), axis = 2), list(a, b))
  expect_identical(r$output, op_concatenate(list(a, b), axis = 2))
  check_op_gradient(function(p, q) op_concatenate(list(p, q), axis = 2), list(a, b))
  check_op_gradient(function(p, q) op_concatenate(list(q, p, q), axis = -1), list(array(rnorm(6), c(2, 3)),
                                                                                  array(rnorm(4), c(2, 2))))
  check_op_gradient(function(p) op_concatenate(list(p, matrix(1, 1, 3))), list(matrix(rnorm(6), 2)))
  # a size known only at run time that disagrees
  p1 <- sym(c(NA, 3L), "float64"); p2 <- sym(c(2L, 3L), "float64")
  g <- multihead:::build_graph(list(p1, p2), list(op_concatenate(list(p1, p2), axis = 2)))
  expect_error(multihead:::run_graph_forward(g, list(matrix(0, 3, 3), matrix(0, 2, 3))),
               "op_concatenate\\(\\).*same shape except on axis 2", class = err)
})

test_that("op_concatenate() rejects bad input", {
  a <- array(0, c(2, 3))
  expect_error(op_concatenate(list(a, array(0, c(3, 3))), axis = 2),
               "op_concatenate\\(\\): the tensors in `xs` must have the same shape except on axis 2.*`xs\\[\\[1\\]\\]` \\(2, 3\\)",
               class = "multihead_error_shape")
  expect_error(op_concatenate(list(a, array(0, c(2, 3, 1)))), "same rank", class = err)
  expect_error(op_concatenate(list(keras_input(shape = 3), keras_input(shape = 4))), "same shape except on axis 1",
               class = err)
  expect_error(op_concatenate(list(a, a), axis = 0), "`axis` must be axes between 1 and 2", class = err)
  expect_error(op_concatenate(list(a, a), axis = 3), "`axis` must be axes between 1 and 2", class = err)
  expect_error(op_concatenate(list(a, a), axis = c(1, 2)), "`axis` must be a single whole number", class = err)
  expect_error(op_concatenate(list(a, a), axis = NULL), "`axis` must be a single whole number", class = err)
  expect_error(op_concatenate(list(a, a), axis = NA), "`axis` must be", class = err)
  expect_error(op_concatenate(a), "`xs` must be a non-empty list of tensors", class = err)
  expect_error(op_concatenate(keras_input(shape = 3)), "`xs` must be a non-empty list", class = err)
  expect_error(op_concatenate(list()), "`xs` must be a non-empty list", class = err)
  expect_error(op_concatenate(list(a, "b")), "`xs\\[\\[2\\]\\]` must be a tensor", class = err)
  expect_error(op_concatenate(list(1, 2)), "`xs\\[\\[1\\]\\]` must be a tensor of rank >= 1", class = err)
  expect_error(op_concatenate(list(a, array(NA_real_, c(2, 3)))), "`xs\\[\\[2\\]\\]` must be free of NA", class = err)
  expect_error(op_concatenate(), "`xs` must be supplied", class = err)
})

test_that("op_stack() stacks along a new axis", {
  set.seed(8)
  a <- matrix(rnorm(6), 2); b <- matrix(rnorm(6), 2); c3 <- matrix(rnorm(6), 2)
  s1 <- op_stack(list(a, b, c3))
  expect_identical(dim(s1), c(3L, 2L, 3L))
  expect_identical(s1[1, , ], a); expect_identical(s1[2, , ], b); expect_identical(s1[3, , ], c3)
  s2 <- op_stack(list(a, b), axis = 2)
  expect_identical(dim(s2), c(2L, 2L, 3L))
  expect_identical(s2[, 1, ], a); expect_identical(s2[, 2, ], b)
  s3 <- op_stack(list(a, b), axis = -1)
  expect_identical(dim(s3), c(2L, 3L, 2L))
  expect_identical(s3[, , 1], a); expect_identical(s3[, , 2], b)
  expect_identical(op_stack(list(1, 2, 3)), array(c(1, 2, 3), 3))
  expect_identical(op_stack(list(1:2, 3:4)), matrix(1:4, 2, byrow = TRUE))
  x <- keras_input(shape = 4)
  expect_identical(op_stack(list(x, x))$shape, c(2L, NA, 4L))
  expect_identical(op_stack(list(x, x), axis = -1)$shape, c(NA, 4L, 2L))
  expect_identical(op_stack(list(sym(c(NA, 4L)), sym(c(3L, NA))), axis = 2)$shape, c(3L, 2L, 4L))
  expect_identical(op_stack(list(sym(3L, "int32"), sym(3L, "int32")))$dtype, "int32")
  r <- graph_run_op(function(p, q) op_stack(list(p, q), axis = 2), list(a, b))
  expect_identical(r$output, s2)
  check_op_gradient(function(p, q) op_stack(list(p, q, p), axis = 2), list(a, b))
  check_op_gradient(function(p) op_stack(list(p, p * 2)), list(array(rnorm(8), c(2, 2, 2))))
  expect_error(op_stack(list(a, matrix(0, 3, 2))), "op_stack\\(\\): the tensors in `x` must all have the same shape",
               class = "multihead_error_shape")
  expect_error(op_stack(list(a, b), axis = 0), "`axis` must be axes between 1 and 3", class = err)
  expect_error(op_stack(list(a, b), axis = 4), "`axis` must be axes between 1 and 3", class = err)
  expect_error(op_stack(a), "`x` must be a non-empty list of tensors", class = err)
  expect_error(op_stack(list(a, NULL)), "`x\\[\\[2\\]\\]` must be a tensor", class = err)
  expect_error(op_stack(), "`x` must be supplied", class = err)
})

# ---- op_split ------------------------------------------------------------------------------

test_that("op_split() cuts into sections or at 1-based indices (keras3's as_py_index)", {
  x <- matrix(1:12, 2, 6)
  s <- op_split(x, 3, axis = 2)
  expect_length(s, 3)
  expect_identical(s[[1]], x[, 1:2]); expect_identical(s[[2]], x[, 3:4]); expect_identical(s[[3]], x[, 5:6])
  s1 <- op_split(x, 2)
  expect_identical(s1[[1]], x[1, , drop = FALSE]); expect_identical(s1[[2]], x[2, , drop = FALSE])
  v <- 1:10
  p <- op_split(v, c(3, 5))
  expect_identical(lapply(p, as.vector), list(1:2, 3:4, 5:10))
  p2 <- op_split(v, array(4))                     # a 1-d array: one index
  expect_identical(lapply(p2, as.vector), list(1:3, 4:10))
  p3 <- op_split(v, c(2, -3))                     # negative from the end (NumPy)
  expect_identical(lapply(p3, as.vector), list(1L, 2:7, 8:10))
  p4 <- op_split(x, c(2, 2), axis = -1)           # an empty piece, as NumPy
  expect_identical(dim(p4[[2]]), c(2L, 0L))
  expect_identical(p4[[3]], x[, 2:6])
  expect_identical(op_split(x, 1), list(x))
  a <- array(1:24, c(2, 3, 4))
  q <- op_split(a, c(2, 4), axis = 3)
  expect_identical(q[[1]], a[, , 1, drop = FALSE]); expect_identical(q[[2]], a[, , 2:3])
  expect_identical(q[[3]], a[, , 4, drop = FALSE])
})

test_that("op_split(): symbolic shapes, graph and gradients", {
  x <- keras_input(shape = c(6, 4))
  s <- op_split(x, 3, axis = 2)
  expect_length(s, 3)
  expect_identical(s[[1]]$shape, c(NA, 2L, 4L))
  expect_identical(lapply(op_split(x, 2), function(t) t$shape), list(c(NA, 6L, 4L), c(NA, 6L, 4L)))
  expect_identical(lapply(op_split(x, c(2, 5), axis = 2), function(t) t$shape),
                   list(c(NA, 1L, 4L), c(NA, 3L, 4L), c(NA, 2L, 4L)))
  expect_identical(lapply(op_split(x, c(3, -1), axis = 1), function(t) t$shape),
                   list(c(2L, 6L, 4L), c(NA, 6L, 4L), c(NA, 6L, 4L)))
  expect_identical(op_split(sym(c(4L, 2L), "int64"), 2)[[2]]$dtype, "int64")
  one <- op_split(x, 1)
  expect_length(one, 1)
  set.seed(9)
  a <- array(rnorm(24), c(2, 6, 2))
  r <- graph_run_op(function(p) op_split(p, 3, axis = 2)[[2]], list(a))
  expect_identical(r$output, a[, 3:4, ])
  check_op_gradient(function(p) op_split(p, 3, axis = 2)[[2]], list(a))
  check_op_gradient(function(p) {
    s <- op_split(p, c(2, 5), axis = 2)
    op_concatenate(list(s[[3]] * 2, s[[1]]), axis = 2)
  }, list(a))
  check_op_gradient(function(p) op_split(p, 1)[[1]] * 3, list(a))
  ph <- sym(c(NA, 2L), "float64")
  g <- multihead:::build_graph(list(ph), list(op_split(ph, 2)[[1]]))
  expect_error(multihead:::run_graph_forward(g, list(matrix(0, 3, 2))), "op_split\\(\\): axis 1 of size 3", class = err)
})

test_that("op_split() rejects bad input", {
  x <- matrix(0, 2, 6)
  expect_error(op_split(x, 4, axis = 2), "op_split\\(\\): axis 2 of size 6 cannot be split into 4 equal sections",
               class = "multihead_error_shape")
  expect_error(op_split(x, c(5, 3), axis = 2), "must be increasing positions", class = err)
  expect_error(op_split(x, c(3, 9), axis = 2), "must be increasing positions within axis 2 of size 6", class = err)
  expect_error(op_split(keras_input(shape = 6), c(5, 3), axis = 2), "must be increasing positions", class = err)
  expect_error(op_split(keras_input(shape = 6), c(5, 3), axis = 1), "increasing order", class = err)
  expect_error(op_split(x, 0), "`indices_or_sections` must be a positive number of sections", class = err)
  expect_error(op_split(x, 1.5), "`indices_or_sections` must be a whole number", class = err)
  expect_error(op_split(x, NA), "`indices_or_sections` must be", class = err)
  expect_error(op_split(x, "2"), "`indices_or_sections` must be", class = err)
  expect_error(op_split(x, list(1, 2)), "`indices_or_sections` must be", class = err)
  expect_error(op_split(x, numeric(0)), "`indices_or_sections` must be", class = err)
  expect_error(op_split(x), "`indices_or_sections` must be supplied", class = err)
  expect_error(op_split(x, 2, axis = 0), "`axis` must be axes between 1 and 2", class = err)
  expect_error(op_split(x, 2, axis = 3), "`axis` must be axes between 1 and 2", class = err)
  expect_error(op_split(5, 1), "`x` must be a tensor of rank >= 1", class = err)
  expect_error(op_split(indices_or_sections = 2), "`x` must be supplied", class = err)
})

# ---- op_tile, op_repeat --------------------------------------------------------------------

test_that("op_tile() repeats the whole tensor (NumPy's tile)", {
  m <- matrix(as.double(1:6), 2)
  expect_identical(op_tile(m, c(2, 3)), kronecker(matrix(1, 2, 3), m))
  expect_identical(op_tile(m, 2), kronecker(matrix(1, 1, 2), m))          # last axis
  expect_identical(op_tile(c(1, 2), 3), array(c(1, 2, 1, 2, 1, 2), 6))
  t3 <- op_tile(m, c(2, 1, 1))                                               # new leading axis
  expect_identical(dim(t3), c(2L, 2L, 3L))
  expect_identical(t3[1, , ], m); expect_identical(t3[2, , ], m)
  a <- array(1:24, c(2, 3, 4))
  t4 <- op_tile(a, c(2, 1, 3))
  for (i in 1:4) for (j in 1:3) for (k in 1:12) {
    expect_identical(t4[i, j, k], a[(i - 1) %% 2 + 1, j, (k - 1) %% 4 + 1])
  }
  expect_identical(dim(op_tile(m, c(0, 1))), c(0L, 3L))
  expect_identical(dim(op_tile(m, c(0, 5, 5, 5, 1))), c(0L, 5L, 5L, 10L, 3L))
  check_op_gradient(function(p) op_tile(p, c(0, 2)) + 1, list(matrix(rnorm(4), 2)))
  expect_identical(op_tile(5, c(2, 2)), matrix(5, 2, 2))
  x <- keras_input(shape = c(3, 4))
  expect_identical(op_tile(x, c(1, 2, 3))$shape, c(NA, 6L, 12L))
  expect_identical(op_tile(x, 2)$shape, c(NA, 3L, 8L))
  expect_identical(op_tile(x, c(2, 1, 1, 1))$shape, c(2L, NA, 3L, 4L))
  set.seed(10)
  b <- array(rnorm(12), c(2, 3, 2))
  r <- graph_run_op(function(p) op_tile(p, c(2, 1, 3)), list(b))
  expect_identical(r$output, op_tile(b, c(2, 1, 3)))
  check_op_gradient(function(p) op_tile(p, c(2, 1, 3)), list(b))
  check_op_gradient(function(p) op_tile(p, c(3, 2)), list(matrix(rnorm(4), 2)))
  check_op_gradient(function(p) op_tile(p, c(2, 1, 1)), list(matrix(rnorm(4), 2)))
  expect_error(op_tile(m, -1), "`repeats` must be whole numbers >= 0 in op_tile\\(\\)", class = err)
  expect_error(op_tile(m, c(1e5, 1e5)), "`repeats` must be small enough that the result of op_tile", class = err)
  expect_error(op_tile(keras_input(shape = c(100, 100)), c(1e4, 1e4)), "`repeats` must be small enough", class = err)
  expect_error(op_tile(m, 1.5), "`repeats` must be whole numbers", class = err)
  expect_error(op_tile(m, NA), "`repeats` must be whole numbers", class = err)
  expect_error(op_tile(m, "2"), "`repeats` must be whole numbers", class = err)
  expect_error(op_tile(m), "`repeats` must be supplied", class = err)
  expect_error(op_tile(repeats = 2), "`x` must be supplied", class = err)
  expect_error(op_tile(list(1), 2), "`x` must be a tensor", class = err)
})

test_that("op_repeat() repeats elements along an axis or the row-major flattening", {
  m <- matrix(1:4, 2)            # rows (1, 3), (2, 4)
  expect_identical(op_repeat(m, 2), array(c(1L, 1L, 3L, 3L, 2L, 2L, 4L, 4L), 8))
  expect_identical(op_repeat(m, c(1, 0, 2, 1)), array(c(1L, 2L, 2L, 4L), 4))
  expect_identical(op_repeat(m, c(1, 2), axis = 2), m[, c(1, 2, 2)])
  expect_identical(op_repeat(m, 3, axis = 1), m[c(1, 1, 1, 2, 2, 2), ])
  expect_identical(op_repeat(m, c(0, 2), axis = -2), m[c(2, 2), ])
  a <- array(1:24, c(2, 3, 4))
  expect_identical(op_repeat(a, c(2, 0, 1), axis = 2), a[, c(1, 1, 3), ])
  expect_identical(op_repeat(c(1, 2), 3), array(c(1, 1, 1, 2, 2, 2), 6))
  expect_identical(op_repeat(7, 2), array(c(7, 7), 2))
  x <- keras_input(shape = c(3, 4))
  expect_identical(op_repeat(x, 2, axis = 2)$shape, c(NA, 6L, 4L))
  expect_identical(op_repeat(x, c(1, 2, 3), axis = 2)$shape, c(NA, 6L, 4L))
  expect_identical(op_repeat(x, 2, axis = 1)$shape, c(NA, 3L, 4L))
  expect_identical(op_repeat(x, 2)$shape, NA_integer_)
  expect_identical(op_repeat(sym(c(2L, 3L), "int32"), 2)$shape, 12L)
  expect_identical(op_repeat(sym(c(2L, 3L), "int32"), 2)$dtype, "int32")
  set.seed(11)
  b <- array(rnorm(12), c(2, 3, 2))
  r <- graph_run_op(function(p) op_repeat(p, c(2, 0, 3), axis = 2), list(b))
  expect_identical(r$output, op_repeat(b, c(2, 0, 3), axis = 2))
  check_op_gradient(function(p) op_repeat(p, c(2, 0, 3), axis = 2), list(b))
  check_op_gradient(function(p) op_repeat(p, 3, axis = 1), list(b))
  check_op_gradient(function(p) op_repeat(p, 2, axis = -1), list(b))
  check_op_gradient(function(p) op_repeat(p, 2), list(b))
  check_op_gradient(function(p) op_repeat(p, c(1, 3, 0, 2)), list(matrix(rnorm(4), 2)))
  ph <- sym(c(NA, 2L), "float64")
  g <- multihead:::build_graph(list(ph), list(op_repeat(ph, c(1, 2), axis = 1)))
  expect_error(multihead:::run_graph_forward(g, list(matrix(0, 3, 2))), "op_repeat\\(\\): `repeats` has 2 values",
               class = err)
})

test_that("op_repeat() rejects bad input", {
  m <- matrix(1:4, 2)
  expect_error(op_repeat(m, c(1, 2, 3), axis = 2), "op_repeat\\(\\): `repeats` has 3 values for axis 2 of size 2",
               class = "multihead_error_shape")
  expect_error(op_repeat(m, c(1, 2)), "`repeats` has 2 values for the 4 elements", class = err)
  expect_error(op_repeat(m, -1), "`repeats` must be whole numbers >= 0 in op_repeat\\(\\)", class = err)
  expect_error(op_repeat(m, 1e9), "`repeats` must be small enough that the result of op_repeat", class = err)
  expect_error(op_repeat(m, 1e9, axis = 1), "`repeats` must be small enough", class = err)
  expect_error(op_repeat(m, NA), "`repeats` must be", class = err)
  expect_error(op_repeat(m, 2, axis = 0), "`axis` must be axes between 1 and 2", class = err)
  expect_error(op_repeat(m, 2, axis = 3), "`axis` must be axes between 1 and 2", class = err)
  expect_error(op_repeat(m, 2, axis = c(1, 2)), "`axis` must be a single whole number", class = err)
  expect_error(op_repeat(5, 2, axis = 1), "`axis` must be NULL for a scalar", class = err)
  expect_error(op_repeat(m), "`repeats` must be supplied", class = err)
  expect_error(op_repeat(repeats = 1), "`x` must be supplied", class = err)
})

# ---- op_cast, conversion ---------------------------------------------------------------------

test_that("op_cast() converts as NumPy's astype", {
  x <- c(-2.7, -0.5, 0, 0.5, 1.9, 3)
  expect_identical(op_cast(x, "int32"), c(-2L, 0L, 0L, 0L, 1L, 3L))
  expect_identical(op_cast(x, "int64"), c(-2, 0, 0, 0, 1, 3))
  expect_identical(op_cast(matrix(x, 2), "int32"), matrix(c(-2L, 0L, 0L, 0L, 1L, 3L), 2))
  y <- c(0.1, 1 / 3, 1e10, -2.5e-8)
  expect_identical(op_cast(y, "float32"), ref_f32(y))
  expect_identical(op_cast(array(y, c(2, 2)), "float32"), ref_f32(array(y, c(2, 2))))
  expect_identical(op_cast(y, "float64"), y)
  expect_identical(op_cast(1:3, "float64"), c(1, 2, 3))
  expect_identical(op_cast(c(TRUE, FALSE), "float32"), c(1, 0))
  expect_identical(op_cast(c(TRUE, FALSE), "int32"), c(1L, 0L))
  expect_identical(op_cast(c(TRUE, FALSE), "int64"), c(1, 0))
  expect_identical(op_cast(2:3, "int64"), c(2, 3))
  expect_identical(op_cast(c(0, -1, 0.1, NaN, Inf), "bool"), c(FALSE, TRUE, TRUE, TRUE, TRUE))
  expect_identical(op_cast(c(0L, 3L), "bool"), c(FALSE, TRUE))
  expect_identical(op_cast(c(NaN, Inf), "float32"), c(NaN, Inf))
  x3 <- keras_input(shape = c(NA, 4))
  for (dt in c("float64", "int32", "int64", "bool")) {
    z <- op_cast(x3, dt)
    expect_identical(z$dtype, dt)
    expect_identical(z$shape, c(NA, NA, 4L))
  }
  r <- graph_run_op(function(p) op_cast(p, "int32"), list(x))
  expect_identical(r$output, op_cast(x, "int32"))
  r2 <- graph_run_op(function(p) op_cast(p, "float32"), list(y))
  expect_identical(r2$output, ref_f32(y))
  check_op_gradient(function(p) op_cast(p, "float64") * 2, list(matrix(rnorm(6), 2)))
  # through a float32 rounding: steps far above float32's resolution
  check_op_gradient(function(p) op_cast(op_cast(p, "float32"), "float64"), list(c(0.5, 0.25, -1)), eps = 1e-2,
                    tolerance = 1e-4)
})

test_that("op_cast() rejects bad input, naming the argument", {
  expect_error(op_cast(c(1, NaN), "int32"), "`x` must be finite to be cast to int32", class = err)
  expect_error(op_cast(Inf, "int64"), "`x` must be finite", class = err)
  expect_error(op_cast(3e9, "int32"), "`x` must be within the range of int32", class = err)
  expect_error(op_cast(1, "float16"), "`dtype` must be one of \"float32\"", class = err)
  expect_error(op_cast(1, NULL), "`dtype` must be one of", class = err)
  expect_error(op_cast(1, c("float32", "int32")), "`dtype` must be one of", class = err)
  expect_error(op_cast(1), "`dtype` must be supplied", class = err)
  expect_error(op_cast(dtype = "int32"), "`x` must be supplied", class = err)
  expect_error(op_cast("1", "int32"), "`x` must be a tensor", class = err)
  expect_error(op_cast(c(1, NA), "int32"), "`x` must be free of NA", class = err)
  ph <- sym(2L, "float64")
  g <- multihead:::build_graph(list(ph), list(op_cast(ph, "int32")))
  expect_error(multihead:::run_graph_forward(g, list(c(1, NaN))), "`x` must be finite", class = err)
})

test_that("op_convert_to_tensor() / op_convert_to_numpy() give arrays, symbolic tensors pass", {
  expect_identical(op_convert_to_tensor(c(1, 3, 2, 0)), array(c(1, 3, 2, 0), 4))
  expect_identical(op_convert_to_tensor(c(1, 3, 2, 0), "int32"), array(c(1L, 3L, 2L, 0L), 4))
  expect_identical(op_convert_to_tensor(0.1, "float32"), ref_f32(0.1))
  expect_identical(op_convert_to_tensor(5L), 5L)
  m <- matrix(1:4, 2)
  expect_identical(op_convert_to_tensor(m), m)
  x <- keras_input(shape = 3)
  expect_identical(op_convert_to_tensor(x), x)
  expect_identical(op_convert_to_tensor(x, "float32"), x)
  y <- op_convert_to_tensor(x, "int32")
  expect_identical(y$dtype, "int32"); expect_identical(y$shape, c(NA, 3L))
  v <- make_variable()
  expect_identical(op_convert_to_tensor(v), multihead:::variable_value(v))
  expect_true(multihead:::is_symbolic(multihead:::with_trace_frame(op_convert_to_tensor(v))))
  expect_identical(op_convert_to_numpy(m), m)
  expect_identical(op_convert_to_numpy(1:3), array(1:3, 3))
  expect_identical(op_convert_to_numpy(2), 2)
  expect_identical(op_convert_to_numpy(v), multihead:::variable_value(v))
  expect_identical(op_convert_to_array(m), m)
  expect_error(op_convert_to_numpy(x), "`x` must be an array or a variable.*symbolic tensor has no values", class = err)
  expect_error(op_convert_to_array(x), "`x` must be an array or a variable", class = err)
  expect_error(op_convert_to_numpy("a"), "`x` must be a tensor", class = err)
  expect_error(op_convert_to_numpy(), "`x` must be supplied", class = err)
  expect_error(op_convert_to_tensor("a"), "`x` must be a tensor", class = err)
  expect_error(op_convert_to_tensor(c(1, NA)), "`x` must be free of NA", class = err)
  expect_error(op_convert_to_tensor(1, "double"), "`dtype` must be NULL or one of", class = err)
  expect_error(op_convert_to_tensor(1, sparse = TRUE), "`sparse` must be NULL or FALSE", class = err)
  expect_error(op_convert_to_tensor(1, ragged = TRUE), "`ragged` must be NULL or FALSE", class = err)
  expect_error(op_convert_to_tensor(), "`x` must be supplied", class = err)
  expect_identical(op_convert_to_tensor(1, sparse = FALSE, ragged = FALSE), 1)
})

test_that("a traced layer-style computation mixes the shape ops (multi-head split and merge)", {
  # (B, T, E) -> (B, N, T, H) -> back, as custom attention layers do
  set.seed(12)
  B <- 2; Tn <- 3; N <- 2; H <- 2
  a <- array(rnorm(B * Tn * N * H), c(B, Tn, N * H))
  fn <- function(p) {
    h <- op_transpose(op_reshape(p, c(-1, Tn, N, H)), c(1, 3, 2, 4))
    op_reshape(op_transpose(h, c(1, 3, 2, 4)), c(-1, Tn, N * H))
  }
  r <- graph_run_op(fn, list(a))
  expect_identical(r$output, a)
  check_op_gradient(function(p) op_transpose(op_reshape(p, c(-1, Tn, N, H)), c(1, 3, 2, 4)), list(a))
  # the Keras reference of the split: out[b, n, t, h] = x[b, t, (n - 1) * H + h]
  h <- op_transpose(op_reshape(a, c(-1, Tn, N, H)), c(1, 3, 2, 4))
  for (b in 1:B) for (n in 1:N) for (t in 1:Tn) for (hh in 1:H) {
    expect_identical(h[b, n, t, hh], a[b, t, (n - 1) * H + hh])
  }
  x <- keras_input(shape = c(Tn, N * H))
  expect_identical(fn(x)$shape, as.integer(c(NA, Tn, N * H)))
})

test_that("variables in traced shape ops receive their gradients", {
  v <- make_variable()                           # a (4, 3) float32 kernel
  kv <- multihead:::variable_value(v)
  ph <- sym(12L, "float64")
  out <- multihead:::with_trace_frame(ph * op_reshape(t(v), 12) + op_reshape(op_tile(v, c(1, 1)), -1))
  expect_identical(out$shape, 12L)
  g <- multihead:::build_graph(list(ph), list(out))
  set.seed(13)
  p <- rnorm(12)
  run <- multihead:::run_graph_forward(g, list(p), keep = TRUE)
  expect_equal(as.vector(run$outputs[[1]]), p * as.vector(kv) + as.vector(t(kv)), tolerance = 1e-6)  # row-major of t(kv)
  w <- rnorm(12)
  back <- multihead:::run_graph_backward(g, run, list(w))
  key <- multihead:::var_key(multihead:::variable_state(v), multihead:::variable_name(v))
  # d/dK of sum(w * (p * vec_rowmajor(t(K)) + vec_rowmajor(K))): vec_rowmajor(t(K)) = as.vector(K)
  ref <- matrix(w * p, 4, 3) + matrix(w, 4, 3, byrow = TRUE)
  expect_equal(back$weights[[key]], ref, tolerance = 1e-12)
  expect_equal(as.vector(back$inputs[[1]]), w * as.vector(kv), tolerance = 1e-12)
})

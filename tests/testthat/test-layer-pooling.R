# layer_global_average_pooling_1d(): means over steps, masks, data formats,
# keepdims, gradients, errors.

test_that("averages over steps, over unmasked steps only with a mask", {
  set.seed(61)
  x <- array(rnorm(3 * 5 * 4), c(3, 5, 4))
  pool <- layer_global_average_pooling_1d(dtype = "float64")
  expect_lt(rel_err(pool(x), ref_average_pool(x)), 1e-14)
  m <- matrix(TRUE, 3, 5); m[1, 3:5] <- FALSE; m[2, ] <- FALSE
  y <- pool(x, mask = m)
  expect_lt(rel_err(y, ref_average_pool(x, m)), 1e-14)
  expect_equal(y[2, ], rep(0, 4))                      # all masked: zeros, not NaN
  expect_equal(pool(x, mask = m * 1), y)               # 0/1 masks work too
  xf <- aperm(x, c(1, 3, 2))
  pf <- layer_global_average_pooling_1d(data_format = "channels_first", dtype = "float64")
  expect_equal(pf(xf, mask = m), y)
  kd <- layer_global_average_pooling_1d(keepdims = TRUE, dtype = "float64")
  expect_equal(dim(kd(x)), c(3L, 1L, 4L))
  expect_equal(as.vector(kd(x)), as.vector(pool(x)))
  kf <- layer_global_average_pooling_1d(data_format = "channels_first", keepdims = TRUE)
  expect_equal(dim(kf(xf)), c(3L, 4L, 1L))
})

test_that("gradients match finite differences, with and without masks", {
  set.seed(62)
  x <- array(rnorm(2 * 4 * 3), c(2, 4, 3))
  m <- matrix(c(TRUE, TRUE, FALSE, TRUE, FALSE, TRUE, FALSE, FALSE), 2)
  check_layer_gradients(layer_global_average_pooling_1d(dtype = "float64"), x)
  g <- check_layer_gradients(layer_global_average_pooling_1d(dtype = "float64"), x, mask = m)
  expect_true(all(g$grads$inputs[1, 3, ] == 0))
  check_layer_gradients(layer_global_average_pooling_1d(data_format = "channels_first", keepdims = TRUE,
                                                        dtype = "float64"), aperm(x, c(1, 3, 2)), mask = m)
})

test_that("the mask is consumed; dispatch, config, errors", {
  x <- array(1, c(2, 4, 3))
  pool <- layer_global_average_pooling_1d()
  res <- layer_protocol(pool)$forward(layer_state(pool), x, list(), FALSE, list(matrix(TRUE, 2, 4)))
  expect_null(res$mask)
  expect_equal(dim(layer_global_average_pooling_1d(x)), c(2, 3))
  expect_s3_class(layer_global_average_pooling_1d(NULL), "GlobalAveragePooling1D")
  expect_match(pool$name, "^global_average_pooling1d(_[0-9]+)?$")
  expect_equal(pool$compute_output_shape(c(NA, NA, 3)), c(NA, 3L))
  expect_identical(layer_global_average_pooling_1d(data_format = NULL)$data_format, "channels_last")
  expect_config_round_trip(layer_global_average_pooling_1d(data_format = "channels_first", keepdims = TRUE))
  expect_arg_error(pool(array(1, c(2, 3))), "inputs")
  expect_arg_error(pool(array(1, c(2, 3, 4, 5))), "inputs")
  expect_arg_error(pool(x, mask = matrix(TRUE, 2, 3)), "mask")
  expect_arg_error(pool(x, mask = matrix(NA, 2, 4)), "mask")
  for (bad in list("nchw", 1, NA, c("channels_last", "channels_first"))) {
    expect_arg_error(layer_global_average_pooling_1d(data_format = bad), "data_format")
  }
  for (bad in list(NA, 1, "no")) expect_arg_error(layer_global_average_pooling_1d(keepdims = bad), "keepdims")
  expect_error(layer_global_average_pooling_1d(pool_size = 2), "`pool_size`")
})

test_that("global max pooling: plain-R reference, channels_first, keepdims, symbolic shapes, gradient", {
  set.seed(21)
  x <- array(rnorm(3 * 5 * 4), c(3, 5, 4))
  pool <- layer_global_max_pooling_1d(dtype = "float64")
  expect_equal(pool(x), apply(x, c(1, 3), max))
  xf <- aperm(x, c(1, 3, 2))
  expect_equal(layer_global_max_pooling_1d(data_format = "channels_first", dtype = "float64")(xf),
               apply(x, c(1, 3), max))
  expect_identical(dim(layer_global_max_pooling_1d(keepdims = TRUE)(x)), c(3L, 1L, 4L))
  inp <- keras_input(shape = c(NA, 4))
  expect_identical(layer_global_max_pooling_1d(inp)$shape, c(NA, 4L))
  # gradient: to the maximal step; ties split equally
  w <- array(rnorm(12), c(3, 4))
  g <- backprop(pool, x, grad_output = w)$grads$inputs
  fd <- x
  for (k in seq_along(x)) {
    up <- x; up[k] <- x[k] + 1e-6; dn <- x; dn[k] <- x[k] - 1e-6
    fd[k] <- (sum(w * pool(up)) - sum(w * pool(dn))) / 2e-6
  }
  expect_equal(g, fd, tolerance = 1e-6)
  tie <- array(c(1, 1, 0), c(1, 3, 1))
  expect_equal(as.vector(backprop(pool, tie, grad_output = array(1, c(1, 1)))$grads$inputs), c(0.5, 0.5, 0))
  expect_error(pool(array(1, c(2, 3))), "`inputs` must be a numeric array with at least 3 axes",
               class = "multihead_error_argument")
  expect_error(layer_global_max_pooling_1d(data_format = "x"), "`data_format`", class = "multihead_error_argument")
  expect_error(layer_global_max_pooling_1d(keepdims = NA), "`keepdims`", class = "multihead_error_argument")
})

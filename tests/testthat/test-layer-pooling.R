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

# ---- AveragePooling1D, MaxPooling1D ------------------------------------------------

# Windowed pooling from its definition: x (B, L, C) channels last; windows
# of the padded input ("same": TensorFlow's split, left half rounded down),
# padding never counted.
ref_window_pool <- function(x, pool, strides, padding, fun) {
  L <- dim(x)[2]
  if (padding == "valid") {
    Lout <- (L - pool) %/% strides + 1
    pad <- 0
  } else {
    Lout <- ceiling(L / strides)
    pad <- max((Lout - 1) * strides + pool - L, 0) %/% 2
  }
  y <- array(0, c(dim(x)[1], Lout, dim(x)[3]))
  for (t in seq_len(Lout)) {
    steps <- (t - 1) * strides - pad + seq_len(pool)
    steps <- steps[steps >= 1 & steps <= L]
    y[, t, ] <- apply(x[, steps, , drop = FALSE], c(1, 3), fun)
  }
  y
}

test_that("windowed pooling matches the plain-R reference for every pool, stride, padding and data format", {
  set.seed(71)
  n <- 0
  for (cls in c("average", "max")) for (pool in 1:4) for (strides in 1:3) for (padding in c("valid", "same"))
    for (L in c(5, 6)) for (cf in c(FALSE, TRUE)) {
      x <- rand_array(2, L, 3)
      ctor <- if (cls == "average") layer_average_pooling_1d else layer_max_pooling_1d
      layer <- ctor(pool_size = pool, strides = strides, padding = padding,
                    data_format = if (cf) "channels_first" else NULL, dtype = "float64")
      ref <- ref_window_pool(x, pool, strides, padding, if (cls == "average") mean else max)
      got <- layer(if (cf) aperm(x, c(1, 3, 2)) else x)
      if (cf) got <- aperm(got, c(1, 3, 2))
      label <- sprintf("%s pool=%d strides=%d %s L=%d cf=%s", cls, pool, strides, padding, L, cf)
      expect_identical(dim(got), dim(ref), label = label)
      expect_lt(rel_err(got, ref), 1e-14, label = label)
      expect_identical(layer$compute_output_shape(c(NA, if (cf) c(3, L) else c(L, 3))), c(NA, dim(layer(
        if (cf) aperm(x, c(1, 3, 2)) else x))[-1]), label = label)
      n <- n + 1
    }
  expect_equal(n, 192)
})

test_that("Keras's documented examples; strides default to pool_size", {
  x <- array(c(1, 2, 3, 4, 5), c(1, 5, 1))
  expect_equal(as.vector(layer_average_pooling_1d(x, pool_size = 2, strides = 1)), c(1.5, 2.5, 3.5, 4.5))
  expect_equal(as.vector(layer_average_pooling_1d(x, pool_size = 2, strides = 2)), c(1.5, 3.5))
  expect_equal(as.vector(layer_average_pooling_1d(x, pool_size = 2, strides = 1, padding = "same")),
               c(1.5, 2.5, 3.5, 4.5, 5))
  expect_equal(as.vector(layer_max_pooling_1d(x, pool_size = 2, strides = 1)), c(2, 3, 4, 5))
  expect_equal(as.vector(layer_max_pooling_1d(x, pool_size = 2, strides = 2)), c(2, 4))
  expect_equal(as.vector(layer_max_pooling_1d(x, pool_size = 2, strides = 1, padding = "same")), c(2, 3, 4, 5, 5))
  expect_identical(layer_max_pooling_1d()$strides, 2L)
  expect_identical(layer_average_pooling_1d(pool_size = 3)$strides, 3L)
  y32 <- layer_average_pooling_1d(rand_array(2, 7, 3), pool_size = 3, padding = "same")
  expect_identical(y32, multihead:::round_float32(y32))
})

test_that("gradients: finite differences; max pooling sends each window's gradient to its first maximum", {
  set.seed(72)
  for (pool in c(2, 3)) for (strides in c(1, 2)) for (padding in c("valid", "same")) {
    x <- rand_array(2, 7, 3)
    check_layer_gradients(layer_average_pooling_1d(pool_size = pool, strides = strides, padding = padding,
                                                   dtype = "float64"), x)
    check_layer_gradients(layer_max_pooling_1d(pool_size = pool, strides = strides, padding = padding,
                                               dtype = "float64"), x)
  }
  check_layer_gradients(layer_max_pooling_1d(pool_size = 3, strides = 1, data_format = "channels_first",
                                             dtype = "float64"), rand_array(2, 3, 6))
  tie <- array(c(1, 3, 3, 0, 3), c(1, 5, 1))
  mp <- layer_max_pooling_1d(pool_size = 3, strides = 1, dtype = "float64")
  g <- backprop(mp, tie, grad_output = array(c(1, 10, 100), c(1, 3, 1)))$grads$inputs
  # windows (1 3 3), (3 3 0), (3 0 3): first maxima at steps 2, 2, 3
  expect_equal(as.vector(g), c(0, 11, 100, 0, 0))
})

test_that("windowed pooling is identical with 1 and 2 threads", {
  set.seed(73)
  x <- rand_array(8, 400, 100)
  run <- function(threads, ctor, ...) {
    old <- set_num_threads(threads)
    on.exit(set_num_threads(old))
    layer <- ctor(pool_size = 5, strides = 2, padding = "same", name = "p", ...)
    y <- layer(x)
    backprop(layer, x, grad_output = array(sin(seq_along(y)), dim(y)))
  }
  for (ctor in list(layer_average_pooling_1d, layer_max_pooling_1d)) {
    expect_identical(run(1, ctor), run(2, ctor))
    expect_identical(run(1, ctor, dtype = "float64"), run(2, ctor, dtype = "float64"))
  }
})

test_that("windowed pooling: config, masks dropped, symbolic shapes, errors", {
  ap <- layer_average_pooling_1d(pool_size = 3, strides = 2, padding = "SAME", data_format = "channels_first",
                                 name = "ap")
  cfg <- get_config(ap)
  expect_identical(names(cfg), c("name", "trainable", "dtype", "pool_size", "padding", "strides", "data_format"))
  expect_identical(cfg[4:7], list(pool_size = 3L, padding = "same", strides = 2L, data_format = "channels_first"))
  expect_config_round_trip(ap)
  expect_config_round_trip(layer_max_pooling_1d(pool_size = list(2)))
  expect_s3_class(layer_max_pooling_1d(NULL), "MaxPooling1D")
  expect_match(layer_average_pooling_1d(pool_size = 2)$name, "^average_pooling1d(_[0-9]+)?$")
  expect_match(layer_max_pooling_1d()$name, "^max_pooling1d(_[0-9]+)?$")
  expect_output(print(ap), "<AveragePooling1D \"ap\": pool_size=3, strides=2, padding=same, channels_first", fixed = TRUE)
  mp <- layer_max_pooling_1d()
  res <- layer_protocol(mp)$forward(layer_state(mp), array(1, c(2, 4, 3)), list(), FALSE, list(matrix(TRUE, 2, 4)))
  expect_null(res$mask)
  expect_identical(layer_max_pooling_1d(keras_input(shape = c(NA, 4)))$shape, c(NA, NA, 4L))
  expect_identical(layer_max_pooling_1d(keras_input(shape = c(9, 4)), 3, 2)$shape, c(NA, 4L, 4L))
  # a model with them trains
  set.seed(74)
  x <- rand_array(32, 8, 2); y <- matrix(apply(x, 1, function(m) max(m[, 1]) - mean(m[, 2])), 32)
  model <- keras_model_sequential(input_shape = c(8, 2)) |> layer_max_pooling_1d(2) |>
    layer_average_pooling_1d(2, padding = "same") |> layer_flatten() |>
    layer_dense(1, kernel_initializer = initializer_glorot_uniform(seed = 3))
  compile(model, optimizer = optimizer_adam(0.05), loss = "mse")
  h <- fit(model, x, y, epochs = 25, batch_size = 8, verbose = 0, shuffle = FALSE)
  expect_lt(tail(h$metrics$loss, 1), 0.5 * h$metrics$loss[1])
  # errors
  x <- array(1, c(2, 3, 4))
  expect_arg_error(layer_average_pooling_1d(x, pool_size = 4), "inputs")      # window longer than the input
  expect_error(layer_max_pooling_1d(x, pool_size = 4), "at least 4 steps")
  expect_identical(dim(layer_max_pooling_1d(x, pool_size = 4, padding = "same")), c(2L, 1L, 4L))
  expect_arg_error(layer_average_pooling_1d(), "pool_size")
  for (bad in list(0, -1, 1.5, NA, "a", c(2, 2))) {
    expect_arg_error(layer_average_pooling_1d(pool_size = bad), "pool_size")
    expect_arg_error(layer_max_pooling_1d(strides = bad), "strides")
  }
  for (bad in list("causal", "full", NA, 2)) expect_arg_error(layer_max_pooling_1d(padding = bad), "padding")
  expect_arg_error(layer_max_pooling_1d(data_format = "nwc"), "data_format")
  expect_arg_error(layer_max_pooling_1d()(array(1, c(2, 3))), "inputs")
  expect_arg_error(layer_max_pooling_1d()(array(1, c(2, 3, 4, 5))), "inputs")
  expect_arg_error(layer_max_pooling_1d()$compute_output_shape(c(NA, 1, 3)), "input_shape")
  expect_error(layer_max_pooling_1d(foo = 1), "`foo`")
})

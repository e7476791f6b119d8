# layer_conv_1d(): a plain-R convolution over every padding / stride /
# dilation / groups / data format combination, float32 rounding, gradients
# by finite differences, thread-count determinism, configs, weights files,
# training, symbolic use and bad input.

# The convolution from its definition, in double: x (B, L, C) channels last,
# kernel (K, C / groups, F). Padding as Keras / TensorFlow define it.
ref_conv1d <- function(x, kernel, bias = NULL, strides = 1, padding = "valid", dilation = 1, groups = 1,
                       activation = identity) {
  B <- dim(x)[1]; L <- dim(x)[2]; K <- dim(kernel)[1]; Cg <- dim(kernel)[2]; F <- dim(kernel)[3]
  Fg <- F / groups
  span <- (K - 1) * dilation + 1
  if (padding == "valid") {
    Lout <- (L - span) %/% strides + 1
    pad <- 0
  } else {
    Lout <- ceiling(L / strides)
    pad <- if (padding == "causal") span - 1 else max((Lout - 1) * strides + span - L, 0) %/% 2
  }
  y <- array(0, c(B, Lout, F))
  for (t in seq_len(Lout)) {
    for (k in seq_len(K)) {
      p <- (t - 1) * strides + (k - 1) * dilation - pad + 1   # 1-based input step
      if (p < 1 || p > L) next
      for (g in seq_len(groups)) {
        ch <- (g - 1) * Cg + seq_len(Cg)
        fo <- (g - 1) * Fg + seq_len(Fg)
        y[, t, fo] <- y[, t, fo] + matrix(x[, p, ch], B) %*% matrix(kernel[k, , fo], Cg)
      }
    }
  }
  if (!is.null(bias)) for (o in seq_len(F)) y[, , o] <- y[, , o] + bias[o]
  activation(y)
}

# A float64 conv layer with random weights (bias too).
random_conv <- function(x_dims, filters, kernel_size, channels_first = FALSE, ...) {
  layer <- layer_conv_1d(filters = filters, kernel_size = kernel_size,
                         data_format = if (channels_first) "channels_first" else "channels_last",
                         dtype = "float64", bias_initializer = "random_normal", ...)
  layer$build(c(NA, x_dims[-1]))
  layer
}

test_that("every padding, stride, dilation, groups and data format matches the plain-R convolution", {
  set.seed(101)
  n <- 0
  for (padding in c("valid", "same", "causal")) for (strides in 1:3) for (dilation in 1:2) {
    if (strides > 1 && dilation > 1) next
    for (groups in c(1, 2)) for (K in c(1, 3, 4)) for (L in c(7, 8)) for (cf in c(FALSE, TRUE)) {
      x <- rand_array(2, L, 4)
      conv <- random_conv(if (cf) c(2, 4, L) else c(2, L, 4), filters = 6, kernel_size = K, channels_first = cf,
                          strides = strides, padding = padding, dilation_rate = dilation, groups = groups)
      w <- get_weights(conv)
      expect_identical(dim(w[[1]]), as.integer(c(K, 4 / groups, 6)))
      ref <- ref_conv1d(x, w[[1]], w[[2]], strides, padding, dilation, groups)
      got <- conv(if (cf) aperm(x, c(1, 3, 2)) else x)
      if (cf) got <- aperm(got, c(1, 3, 2))
      label <- sprintf("%s strides=%d dilation=%d groups=%d K=%d L=%d cf=%s", padding, strides, dilation,
                       groups, K, L, cf)
      expect_identical(dim(got), dim(ref), label = label)
      expect_lt(rel_err(got, ref), 1e-13, label = label)
      expect_identical(conv$compute_output_shape(c(NA, if (cf) c(4, L) else c(L, 4))),
                       c(NA, if (cf) c(6L, dim(ref)[2]) else c(dim(ref)[2], 6L)))
      n <- n + 1
    }
  }
  expect_gt(n, 100)
})

test_that("known small cases: same padding splits the padding, causal pads on the left", {
  x <- array(1:5, c(1, 5, 1))
  ones <- function(...) {
    l <- layer_conv_1d(filters = 1, kernel_size = 2, use_bias = FALSE, dtype = "float64", ...)
    l$build(c(NA, 5, 1)); set_weights(l, list(array(c(1, 10), c(2, 1, 1)))); l
  }
  expect_equal(as.vector(ones()(x)), c(21, 32, 43, 54))
  expect_equal(as.vector(ones(padding = "same")(x)), c(21, 32, 43, 54, 5))     # right padding of 1
  expect_equal(as.vector(ones(padding = "causal")(x)), c(10, 21, 32, 43, 54))  # left padding of 1
  expect_equal(as.vector(ones(padding = "same", strides = 2)(x)), c(21, 43, 5))
})

test_that("float32 layers round to float32 and agree with the float64 result", {
  set.seed(102)
  x <- rand_array(3, 9, 5)
  c64 <- random_conv(dim(x), 4, 3, padding = "same", activation = "gelu")
  c32 <- layer_conv_1d(filters = 4, kernel_size = 3, padding = "same", activation = "gelu")
  c32$build(c(NA, 9, 5)); set_weights(c32, get_weights(c64))
  y32 <- c32(x)
  expect_identical(y32, multihead:::round_float32(y32))
  expect_lt(max(abs(y32 - c64(x))), 1e-5)
  g <- backprop(c32, x, grad_output = array(1, dim(y32)))
  expect_identical(g$grads$inputs, multihead:::round_float32(g$grads$inputs))
})

test_that("gradients match finite differences (input, kernel, bias), with activations", {
  set.seed(103)
  cases <- list(
    list(dims = c(2, 7, 4), args = list(filters = 3, kernel_size = 3)),
    list(dims = c(2, 8, 4), args = list(filters = 4, kernel_size = 2, strides = 3, padding = "same",
                                        groups = 2, activation = "tanh")),
    list(dims = c(2, 6, 4), args = list(filters = 2, kernel_size = 3, padding = "causal", dilation_rate = 2,
                                        activation = "softmax")),
    list(dims = c(3, 4, 9), args = list(filters = 6, kernel_size = 4, padding = "same", groups = 2,
                                        channels_first = TRUE, use_bias = FALSE)))
  for (case in cases) {
    x <- rand_array(case$dims)
    conv <- do.call(random_conv, c(list(case$dims), case$args))
    check_layer_gradients(conv, x)
  }
})

test_that("outputs and gradients are bitwise identical with 1 and 2 threads", {
  set.seed(104)
  x <- rand_array(6, 300, 32)
  run <- function(threads, ...) {
    old <- set_num_threads(threads)
    on.exit(set_num_threads(old))
    set.seed(5)
    conv <- layer_conv_1d(filters = 48, kernel_size = 5, bias_initializer = "random_normal", name = "c", ...)
    y <- conv(x)
    backprop(conv, x, grad_output = array(cos(seq_along(y)), dim(y)))
  }
  for (args in list(list(padding = "same"), list(strides = 2, groups = 4), list(padding = "causal", dilation_rate = 3))) {
    expect_identical(do.call(run, c(list(1), args)), do.call(run, c(list(2), args)))
    expect_identical(do.call(run, c(list(1, dtype = "float64"), args)),
                     do.call(run, c(list(2, dtype = "float64"), args)))
  }
})

test_that("config has Keras's keys and round-trips; weights in Keras's order", {
  conv <- layer_conv_1d(filters = 4, kernel_size = list(3), strides = 1, padding = "CAUSAL", dilation_rate = 2,
                        groups = 2, activation = "relu", use_bias = TRUE, kernel_regularizer = "l2",
                        bias_constraint = "non_neg", name = "c1")
  cfg <- get_config(conv)
  expect_identical(names(cfg), c("name", "trainable", "dtype", "filters", "kernel_size", "strides", "padding",
                                 "data_format", "dilation_rate", "groups", "activation", "use_bias",
                                 "kernel_initializer", "bias_initializer", "kernel_regularizer",
                                 "bias_regularizer", "activity_regularizer", "kernel_constraint",
                                 "bias_constraint"))
  expect_identical(cfg[c("kernel_size", "padding", "data_format", "dilation_rate")],
                   list(kernel_size = 3L, padding = "causal", data_format = "channels_last", dilation_rate = 2L))
  expect_config_round_trip(conv)
  conv(array(1, c(1, 5, 6)))
  expect_identical(names(get_weights(conv)), NULL)
  expect_identical(vapply(conv$weights, function(w) w$path, "", USE.NAMES = FALSE), c("c1/kernel", "c1/bias"))
  expect_identical(lapply(get_weights(conv), dim), list(c(3L, 3L, 4L), 4L))
  expect_length(conv$losses, 1)                                   # the kernel's l2 penalty
  expect_s3_class(layer_conv_1d(NULL, 2, 2), "Conv1D")
  expect_match(layer_conv_1d(filters = 2, kernel_size = 2)$name, "^conv1d(_[0-9]+)?$")
  expect_output(print(conv), "<Conv1D \"c1\": filters=4, kernel_size=3, padding=causal, dilation_rate=2, groups=2, activation=relu",
                fixed = TRUE)
})

test_that("weights round-trip through a Keras .weights.h5 file at Keras's path and shape", {
  inp <- keras_input(shape = c(6, 4))
  out <- inp |> layer_conv_1d(3, 2, bias_initializer = "random_normal", name = "c") |>
    layer_global_average_pooling_1d()
  m <- keras_model(inp, out)
  expect_output(summary(m), "c \\(Conv1D\\) .*\\(NA, 5, 3\\) .* 27 ")
  path <- tempfile(fileext = ".weights.h5")
  save_model_weights(m, path)
  f <- hdf5r::H5File$new(path, mode = "r")
  expect_identical(rev(f[["layers/conv1d/vars/0"]]$dims), c(2L, 4L, 3L))
  expect_identical(f[["layers/conv1d/vars/1"]]$dims, 3L)
  f$close_all()
  m2 <- keras_model(inp2 <- keras_input(shape = c(6, 4)),
                    inp2 |> layer_conv_1d(3, 2, name = "c") |> layer_global_average_pooling_1d())
  load_model_weights(m2, path)
  expect_identical(get_weights(m2), get_weights(m))
})

test_that("in functional and sequential models: shapes, masks dropped, training", {
  inp <- keras_input(shape = c(NA, 5))
  y <- layer_conv_1d(inp, 4, 3, strides = 2)
  expect_identical(y$shape, c(NA, NA, 4L))
  y2 <- layer_conv_1d(keras_input(shape = c(9, 5)), 4, 3, strides = 2)
  expect_identical(y2$shape, c(NA, 4L, 4L))
  conv <- layer_conv_1d(filters = 2, kernel_size = 2)
  res <- layer_protocol(conv)$forward(layer_state(conv), array(1, c(2, 4, 3)), list(), FALSE,
                                      list(matrix(TRUE, 2, 4)))
  expect_null(res$mask)
  # a small model learns a shift detector
  set.seed(105)
  n <- 64
  x <- array(rnorm(n * 12), c(n, 12, 1))
  yv <- matrix(as.numeric(apply(x[, , 1], 1, function(r) max(diff(r)) > 1.5)), n)
  model <- keras_model_sequential(input_shape = c(12, 1)) |>
    layer_conv_1d(8, 2, activation = "relu", kernel_initializer = initializer_glorot_uniform(seed = 1)) |>
    layer_global_max_pooling_1d() |>
    layer_dense(1, activation = "sigmoid", kernel_initializer = initializer_glorot_uniform(seed = 2))
  compile(model, optimizer = optimizer_adam(0.03), loss = "binary_crossentropy")
  h <- fit(model, x, yv, epochs = 30, batch_size = 16, verbose = 0, shuffle = FALSE)
  expect_lt(tail(h$metrics$loss, 1), 0.7 * h$metrics$loss[1])
})

test_that("bad arguments and inputs give errors naming the argument", {
  x <- array(1, c(2, 4, 6))
  expect_arg_error(layer_conv_1d(x, filters = 2, kernel_size = 5), "inputs")     # window longer than input
  expect_error(layer_conv_1d(x, filters = 2, kernel_size = 3, dilation_rate = 2), "at least 5 steps")
  expect_identical(dim(layer_conv_1d(x, filters = 2, kernel_size = 5, padding = "same")), c(2L, 4L, 2L))
  expect_arg_error(layer_conv_1d(x, filters = 4, kernel_size = 2, groups = 4), "groups")  # 6 channels
  expect_arg_error(layer_conv_1d(filters = 3, kernel_size = 2, groups = 2), "groups")
  expect_arg_error(layer_conv_1d(filters = 2, kernel_size = 2, strides = 2, dilation_rate = 2), "strides")
  expect_arg_error(layer_conv_1d(kernel_size = 2), "filters")
  expect_arg_error(layer_conv_1d(filters = 2), "kernel_size")
  for (bad in list(0, -1, 1.5, NA, "a", c(1, 2))) {
    expect_arg_error(layer_conv_1d(filters = bad, kernel_size = 2), "filters")
    expect_arg_error(layer_conv_1d(filters = 2, kernel_size = bad), "kernel_size")
    expect_arg_error(layer_conv_1d(filters = 2, kernel_size = 2, strides = bad), "strides")
    expect_arg_error(layer_conv_1d(filters = 2, kernel_size = 2, dilation_rate = bad), "dilation_rate")
    expect_arg_error(layer_conv_1d(filters = 2, kernel_size = 2, groups = bad), "groups")
  }
  for (bad in list("full", NA, 1, c("same", "valid"))) expect_arg_error(layer_conv_1d(filters = 2, kernel_size = 2, padding = bad), "padding")
  expect_arg_error(layer_conv_1d(filters = 2, kernel_size = 2, data_format = "nwc"), "data_format")
  expect_arg_error(layer_conv_1d(filters = 2, kernel_size = 2, activation = "nope"), "activation")
  conv <- layer_conv_1d(filters = 2, kernel_size = 2)
  conv(x)
  expect_arg_error(conv(array(1, c(2, 4, 5))), "inputs")                # channels differ from the build
  expect_arg_error(conv(array(1, c(2, 4))), "inputs")
  expect_arg_error(conv(array(1, c(2, 4, 6, 1))), "inputs")
  expect_arg_error(conv(array(NA_real_, c(2, 4, 6))), "inputs")
  expect_arg_error(backprop(conv, x, grad_output = array(1, c(2, 4, 2))), "grad_output")
  expect_arg_error(layer_conv_1d(filters = 2, kernel_size = 2)$build(c(NA, 4, NA)), "input_shape")
  expect_arg_error(layer_conv_1d(filters = 2, kernel_size = 3)$compute_output_shape(c(NA, 2, 3)), "input_shape")
  expect_error(layer_conv_1d(filters = 2, kernel_size = 2, foo = 1), "`foo`")
})

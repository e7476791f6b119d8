# layer_time_distributed(): the wrapped layer applied per time step against a
# plain-R loop, gradients by finite differences (inputs and the shared
# weights), masks handed to each step, models, weights files, configs and
# bad input.

test_that("each time step goes through the wrapped layer (Dense, against a loop; rank 4 inputs)", {
  set.seed(91)
  x <- rand_array(2, 3, 4)
  td <- layer_time_distributed(layer = layer_dense(units = 2, activation = "tanh", dtype = "float64"),
                               dtype = "float64")
  y <- td(x)
  w <- get_weights(td)
  ref <- array(0, c(2, 3, 2))
  for (t in 1:3) ref[, t, ] <- tanh(x[, t, ] %*% w[[1]] + matrix(w[[2]], 2, 2, byrow = TRUE))
  expect_equal(y, ref, tolerance = 1e-12)
  expect_length(get_weights(td), 2)
  expect_equal(count_params(td), 4 * 2 + 2)
  x4 <- rand_array(2, 3, 5, 4)
  ln <- layer_layer_normalization(dtype = "float64")
  td4 <- layer_time_distributed(layer = ln, dtype = "float64")
  y4 <- td4(x4)
  for (t in 1:3) {
    xt <- array(x4[, t, , ], c(2, 5, 4))
    expect_equal(array(y4[, t, , ], c(2, 5, 4)), ln(xt))
  }
  expect_equal(td$compute_output_shape(c(NA, 7, 4)), c(NA, 7L, 2L))
  expect_equal(td4$compute_output_shape(c(NA, NA, 5, 4)), c(NA, NA, 5L, 4L))
  expect_identical(td$layer$name, layer_state(td$layer)$name)
})

test_that("gradients: inputs and the weights shared by every step, by finite differences", {
  set.seed(92)
  x <- rand_array(2, 3, 4)
  check_layer_gradients(layer_time_distributed(layer = layer_dense(units = 3, activation = "gelu", dtype = "float64",
                                                                   bias_initializer = "random_normal"),
                                               dtype = "float64"), x)
  check_layer_gradients(layer_time_distributed(layer = layer_layer_normalization(dtype = "float64"),
                                               dtype = "float64"), rand_array(2, 3, 2, 4))
  # a custom layer inside
  layer_scale <- Layer("TdScale",
    build = function(input_shape) {
      self$s <- self$add_weight(shape = shape(input_shape[[length(input_shape)]]), initializer = "random_normal")
    },
    call = function(x) op_tanh(x * self$s))
  check_layer_gradients(layer_time_distributed(layer = layer_scale(dtype = "float64"), dtype = "float64"), x)
})

test_that("masks: each step gets its slice; the output has none (Keras's TimeDistributed does not support masking)", {
  x <- array(as.double(1:24), c(2, 3, 2, 2))   # (batch, time, steps, features)
  m <- array(TRUE, c(2, 3, 2)); m[1, 2, 2] <- FALSE; m[2, 3, 1] <- FALSE
  td <- layer_time_distributed(layer = layer_global_average_pooling_1d(dtype = "float64"), dtype = "float64")
  fw <- layer_protocol(td)$forward(layer_state(td), x, list(), FALSE, m)
  ref <- array(0, c(2, 3, 2))
  for (b in 1:2) for (t in 1:3) {
    keep <- which(m[b, t, ])
    ref[b, t, ] <- colMeans(matrix(x[b, t, keep, ], length(keep)))
  }
  expect_equal(fw$output, ref)
  expect_null(fw$mask)
  expect_false(td$supports_masking)
  # in a model, a Masking layer's mask reaches the steps
  inp <- keras_input(shape = c(3, 2, 2), dtype = "float64")
  out <- inp |> layer_masking(dtype = "float64") |>
    layer_time_distributed(layer = layer_global_average_pooling_1d(dtype = "float64"), dtype = "float64")
  model <- keras_model(inp, out)
  xz <- x; xz[1, 2, 2, ] <- 0; xz[2, 3, 1, ] <- 0
  ref_z <- array(0, c(2, 3, 2))
  for (b in 1:2) for (t in 1:3) {
    keep <- which(m[b, t, ])
    ref_z[b, t, ] <- colMeans(matrix(xz[b, t, keep, ], length(keep)))
  }
  expect_equal(model(xz), ref_z)
})

test_that("in models: summary, gradients, training, weights files with Keras's `layer` sub-group, configs", {
  set.seed(93)
  inp <- keras_input(shape = c(3, 4), dtype = "float64")
  h <- inp |> layer_time_distributed(layer_dense(units = 5, activation = "relu", dtype = "float64",
                                                 bias_initializer = "random_normal"), dtype = "float64") |>
    layer_flatten(dtype = "float64") |> layer_dense(1, dtype = "float64")
  model <- keras_model(inp, h)
  expect_output(summary(model), "TimeDistributed")
  check_model_gradients(model, rand_array(4, 3, 4))
  make <- function() {
    keras_model_sequential(input_shape = c(3, 4)) |> layer_time_distributed(layer_dense(units = 3)) |>
      layer_flatten() |> layer_dense(1)
  }
  seqm <- make()
  xs <- rand_array(32, 3, 4); y <- matrix(rowSums(matrix(xs, 32)^2), 32)
  seqm |> compile(optimizer = optimizer_adam(0.05), loss = "mse")
  hist <- seqm |> fit(xs, y, epochs = 20, batch_size = 8, verbose = 0)
  expect_lt(tail(hist$metrics$loss, 1), hist$metrics$loss[1] / 2)
  skip_if_not_installed("hdf5r")
  path <- tempfile(fileext = ".weights.h5")
  save_model_weights(seqm, path)
  expect_identical(h5_group_paths(path),
                   c("layers", "layers/dense", "layers/dense/vars", "layers/dense/vars/0", "layers/dense/vars/1",
                     "layers/flatten", "layers/flatten/vars", "layers/time_distributed",
                     "layers/time_distributed/layer", "layers/time_distributed/layer/vars",
                     "layers/time_distributed/layer/vars/0", "layers/time_distributed/layer/vars/1",
                     "layers/time_distributed/vars", "vars"))
  other <- make()
  load_model_weights(other, path)
  expect_identical(get_weights(other), get_weights(seqm))
  expect_identical(other(xs), seqm(xs))
  p2 <- tempfile(fileext = ".rds")
  save_model(seqm, p2)
  expect_identical(load_model(p2)(xs), seqm(xs))
  td <- layer_time_distributed(layer = layer_dense(units = 2, name = "inner"), name = "td")
  cfg <- get_config(td)
  expect_identical(names(cfg), c("name", "trainable", "dtype", "layer"))
  expect_identical(cfg$layer$class_name, "Dense")
  expect_identical(cfg$layer$config$name, "inner")
  expect_config_round_trip(td)
})

test_that("bad input: a missing or non-layer `layer`, inputs without a time axis", {
  expect_arg_error(layer_time_distributed(), "layer")
  expect_arg_error(layer_time_distributed(layer = 3), "layer")
  expect_arg_error(layer_time_distributed(layer = function(x) x), "layer")
  expect_arg_error(layer_time_distributed(layer = layer_dense(units = 2))(matrix(1, 2, 3)), "inputs")
  expect_arg_error(layer_time_distributed(layer = layer_dense(units = 2))$compute_output_shape(c(NA, 3)),
                   "input_shape")
  expect_arg_error(layer_time_distributed(array(NA_real_, c(2, 3, 4)), layer_dense(units = 2)), "inputs")
  expect_arg_error(layer_time_distributed(layer = layer_dense(units = 2))(array(1, c(2, 3, 4)),
                                                                           mask = matrix(TRUE, 2, 4)), "mask")
  td <- layer_time_distributed(layer = layer_dense(units = 2))
  td(array(1, c(2, 3, 4)))
  expect_error(td(array(1, c(2, 3, 5))), "`inputs`", class = "multihead_error_argument")
  expect_arg_error(backprop(td, array(1, c(2, 3, 4)), grad_output = array(1, c(2, 3, 3))), "grad_output")
  expect_error(layer_time_distributed(layer = layer_dense(units = 2), foo = 1), "`foo`")
})

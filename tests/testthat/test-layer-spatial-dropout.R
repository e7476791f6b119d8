# layer_spatial_dropout_1d(): whole channels dropped while training,
# identity otherwise, reproducible counter-based masks, gradients from the
# regenerated mask, thread-count determinism, config, masks, errors.

test_that("training drops whole channels with probability `rate` and rescales; inference is the identity", {
  x <- array(1, c(200, 7, 30))
  d <- layer_spatial_dropout_1d(rate = 0.3, seed = 7, dtype = "float64")
  expect_identical(d(x), x)
  expect_identical(d(x, training = FALSE), x)
  y <- d(x, training = TRUE)
  expect_true(all(y == 0 | abs(y - 1 / 0.7) < 1e-12))
  for (t in 2:7) expect_identical(y[, t, ], y[, 1, ])           # the same for every step
  expect_equal(mean(y[, 1, ] == 0), 0.3, tolerance = 0.03)
  expect_false(identical(y, d(x, training = TRUE)))            # a new mask per training call
  expect_identical(layer_spatial_dropout_1d(rate = 0, seed = 1)(x, training = TRUE), x)
  expect_identical(layer_spatial_dropout_1d(rate = 1, seed = 1)(x, training = TRUE), x * 0)
  y32 <- layer_spatial_dropout_1d(rate = 0.3, seed = 7)(rand_array(3, 4, 5), training = TRUE)
  expect_identical(y32, multihead:::round_float32(y32))
})

test_that("masks are reproducible from the seed or set.seed(), and equal Dropout's with noise shape (B, 1, C)", {
  x <- rand_array(5, 6, 8)
  a <- layer_spatial_dropout_1d(rate = 0.5, seed = 3)
  b <- layer_spatial_dropout_1d(rate = 0.5, seed = 3)
  expect_identical(a(x, training = TRUE), b(x, training = TRUE))
  set.seed(99); c1 <- layer_spatial_dropout_1d(rate = 0.5)
  set.seed(99); c2 <- layer_spatial_dropout_1d(rate = 0.5)
  expect_identical(c1(x, training = TRUE), c2(x, training = TRUE))
  d <- layer_dropout(rate = 0.5, noise_shape = c(NA, 1, NA), seed = 3)
  expect_identical(layer_spatial_dropout_1d(rate = 0.5, seed = 3)(x, training = TRUE), d(x, training = TRUE))
})

test_that("backprop regenerates the forward mask; gradients match finite differences; threads", {
  set.seed(91)
  x <- rand_array(3, 4, 5)
  d <- layer_spatial_dropout_1d(rate = 0.4, seed = 5, dtype = "float64")
  R <- array(rnorm(length(x)), dim(x))
  g <- backprop(d, x, training = TRUE, grad_output = R)
  expect_equal(g$grads$inputs, R * (g$output != 0) / 0.6)
  expect_length(g$grads$weights, 0)
  check_layer_gradients(NULL, x, training = TRUE, make_layer = function() {
    layer_spatial_dropout_1d(rate = 0.4, seed = 5, dtype = "float64", name = "sd")
  })
  expect_equal(backprop(d, x, grad_output = R)$grads$inputs, R)    # inference: identity
  big <- rand_array(40, 200, 64)
  run <- function(threads) {
    old <- set_num_threads(threads)
    on.exit(set_num_threads(old))
    backprop(layer_spatial_dropout_1d(rate = 0.5, seed = 2, name = "sd"), big, training = TRUE,
             grad_output = big)
  }
  expect_identical(run(1), run(2))
})

test_that("config with Keras's keys, masks pass, models, bad arguments", {
  d <- layer_spatial_dropout_1d(rate = 0.25, seed = 4, name = "sd")
  expect_identical(get_config(d), structure(list(rate = 0.25, seed = 4L, name = "sd", dtype = "float32"),
                                            class_name = "SpatialDropout1D"))
  expect_config_round_trip(d)
  expect_config_round_trip(layer_spatial_dropout_1d(rate = 0.1, dtype = "float64"))
  expect_s3_class(layer_spatial_dropout_1d(NULL, rate = 0.1), "SpatialDropout1D")
  expect_match(layer_spatial_dropout_1d(rate = 0.1)$name, "^spatial_dropout1d(_[0-9]+)?$")
  expect_output(print(d), "<SpatialDropout1D \"sd\": rate=0.25", fixed = TRUE)
  m <- matrix(c(TRUE, FALSE), 2, 3)
  res <- layer_protocol(d)$forward(layer_state(d), array(1, c(2, 3, 4)), list(), TRUE, m)
  expect_identical(res$mask, m)
  inp <- keras_input(shape = c(NA, 4))
  expect_identical(layer_spatial_dropout_1d(inp, rate = 0.5)$shape, c(NA, NA, 4L))
  # in a model: dropout while fitting, identity in predict()
  set.seed(92)
  x <- rand_array(16, 5, 4); y <- matrix(rowMeans(x), 16)
  model <- keras_model_sequential(input_shape = c(5, 4)) |> layer_spatial_dropout_1d(0.2, seed = 1) |>
    layer_global_average_pooling_1d() |> layer_dense(1)
  compile(model, optimizer = "adam", loss = "mse")
  h <- fit(model, x, y, epochs = 2, verbose = 0)
  expect_length(h$metrics$loss, 2)
  expect_identical(predict(model, x, verbose = 0), predict(model, x, verbose = 0))
  expect_arg_error(layer_spatial_dropout_1d(), "rate")
  for (bad in list(-0.1, 1.1, NA, "a", c(0.1, 0.2))) expect_arg_error(layer_spatial_dropout_1d(rate = bad), "rate")
  for (bad in list(1.5, "a", NA, c(1, 2))) expect_arg_error(layer_spatial_dropout_1d(rate = 0.1, seed = bad), "seed")
  expect_arg_error(layer_spatial_dropout_1d(rate = 0.1, dtype = "int8"), "dtype")
  expect_arg_error(layer_spatial_dropout_1d(rate = 0.1)(array(1, c(2, 3)), training = TRUE), "inputs")
  expect_arg_error(layer_spatial_dropout_1d(rate = 0.1)(array(1, c(2, 3, 4, 5))), "inputs")
  expect_arg_error(d(array(1, c(2, 3, 4)), training = "yes"), "training")
  expect_error(layer_spatial_dropout_1d(rate = 0.1, noise_shape = c(NA, 1, NA)), "noise_shape")
})

# layer_dropout(): inference identity, inverted dropout statistics, noise
# shapes, reproducibility, gradients from the regenerated mask, errors.

test_that("inference is the identity; training drops about `rate` and rescales", {
  x <- array(1, c(100, 50))
  d <- layer_dropout(rate = 0.3, seed = 7, dtype = "float64")
  expect_identical(d(x), x)
  expect_identical(d(x, training = FALSE), x)
  y <- d(x, training = TRUE)
  expect_true(all(y == 0 | abs(y - 1 / 0.7) < 1e-12))
  expect_equal(mean(y == 0), 0.3, tolerance = 0.03)
  expect_false(identical(y, d(x, training = TRUE)))        # a new mask per training call
  expect_identical(layer_dropout(rate = 0, seed = 1)(x, training = TRUE), x)
  expect_identical(layer_dropout(rate = 1, seed = 1)(x, training = TRUE), x * 0)
  y32 <- layer_dropout(rate = 0.3, seed = 7)(x, training = TRUE)
  expect_identical(y32, multihead:::round_float32(y32))
})

test_that("masks are reproducible from the seed or from set.seed()", {
  x <- array(rnorm(20 * 6), c(20, 6))
  a <- layer_dropout(rate = 0.5, seed = 3)
  b <- layer_dropout(rate = 0.5, seed = 3)
  expect_identical(a(x, training = TRUE), b(x, training = TRUE))
  set.seed(99); c1 <- layer_dropout(rate = 0.5)
  set.seed(99); c2 <- layer_dropout(rate = 0.5)
  expect_identical(c1(x, training = TRUE), c2(x, training = TRUE))
})

test_that("noise_shape shares the mask along axes of size 1", {
  x <- array(1, c(4, 30, 8))
  d <- layer_dropout(rate = 0.5, noise_shape = c(NA, 1, NA), seed = 11, dtype = "float64")
  y <- d(x, training = TRUE)
  for (t in 2:30) expect_identical(y[, t, ], y[, 1, ])
  expect_true(any(y == 0) && any(y == 2))
  d2 <- layer_dropout(rate = 0.5, noise_shape = list(NULL, 30, 1), seed = 11, dtype = "float64")
  y2 <- d2(x, training = TRUE)
  for (f in 2:8) expect_identical(y2[, , f], y2[, , 1])
  expect_arg_error(layer_dropout(rate = 0.5, noise_shape = c(NA, 2, NA))(x, training = TRUE), "noise_shape")
  expect_arg_error(layer_dropout(rate = 0.5, noise_shape = c(NA, 1))(x, training = TRUE), "noise_shape")
})

test_that("backprop regenerates the forward mask; gradients match finite differences", {
  set.seed(41)
  x <- array(rnorm(3 * 4 * 5), c(3, 4, 5))
  d <- layer_dropout(rate = 0.4, seed = 5, dtype = "float64")
  R <- array(rnorm(length(x)), dim(x))
  g <- backprop(d, x, training = TRUE, grad_output = R)
  kept <- g$output != 0
  expect_equal(g$grads$inputs, R * kept / 0.6)
  expect_length(g$grads$weights, 0)
  # fresh layers with the same seed replay the same first mask
  check_layer_gradients(NULL, x, training = TRUE,
                        make_layer = function() layer_dropout(rate = 0.4, seed = 5, dtype = "float64", name = "d"))
  check_layer_gradients(NULL, x, training = TRUE, make_layer = function() {
    layer_dropout(rate = 0.5, noise_shape = c(NA, 1, NA), seed = 2, dtype = "float64", name = "d")
  })
  gi <- backprop(d, x, grad_output = R)                     # inference: identity
  expect_equal(gi$grads$inputs, R)
})

test_that("dispatch, config, masks and bad arguments", {
  expect_s3_class(layer_dropout(rate = 0.1), c("Dropout", "multihead_layer"))
  x <- array(2, c(2, 3))
  expect_identical(layer_dropout(x, rate = 0.5), x)
  d <- layer_dropout(rate = 0.25, noise_shape = c(NA, 1), seed = 4, name = "drop")
  cfg <- get_config(d)
  expect_identical(cfg[c("name", "rate", "seed", "noise_shape")],
                   list(name = "drop", rate = 0.25, seed = 4L, noise_shape = c(NA, 1L)))
  expect_config_round_trip(d)
  expect_match(layer_dropout(rate = 0.1)$name, "^dropout(_[0-9]+)?$")
  m <- array(c(TRUE, FALSE), 2)
  res <- layer_protocol(d)$forward(layer_state(d), array(1, c(2, 3)), list(), TRUE, m)
  expect_identical(res$mask, m)
  expect_arg_error(layer_dropout(), "rate")
  for (bad in list(-0.1, 1.1, NA, "a", c(0.1, 0.2))) expect_arg_error(layer_dropout(rate = bad), "rate")
  for (bad in list("a", c(0, 1), 1.5, matrix(1, 1, 1))) expect_arg_error(layer_dropout(rate = 0.1, noise_shape = bad), "noise_shape")
  for (bad in list(1.5, "a", NA, c(1, 2))) expect_arg_error(layer_dropout(rate = 0.1, seed = bad), "seed")
  expect_error(layer_dropout(rate = 0.1, foo = 2), "`foo`")
  expect_arg_error(d(x, training = "yes"), "training")
  expect_output(print(d), "<Dropout \"drop\": rate=0.25, noise_shape=(NA, 1), built for input (NA, 3), 0 params>", fixed = TRUE)
})

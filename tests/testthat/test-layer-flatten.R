# layer_flatten(): Keras's row-major order, channels_first, gradients, masks.

test_that("flattens in Keras's row-major order", {
  x <- array(1:24, c(2, 3, 4))
  y <- layer_flatten(x, dtype = "float64")
  expect_equal(dim(y), c(2, 12))
  expect_equal(y, ref_flatten(x))
  expect_equal(y[1, 1:5], c(x[1, 1, 1], x[1, 1, 2], x[1, 1, 3], x[1, 1, 4], x[1, 2, 1]))
  x4 <- array(rnorm(2 * 3 * 2 * 2), c(2, 3, 2, 2))
  expect_equal(layer_flatten(x4, dtype = "float64"), ref_flatten(x4))
  expect_equal(layer_flatten(x4, data_format = "channels_first", dtype = "float64"), ref_flatten(x4, TRUE))
  expect_equal(layer_flatten(array(1:3, 3)), matrix(1:3, ncol = 1))
  expect_equal(layer_flatten(matrix(1:6, 2)), matrix(1:6, 2))
})

test_that("gradients match finite differences; the mask is dropped", {
  set.seed(71)
  x <- array(rnorm(2 * 3 * 2 * 2), c(2, 3, 2, 2))
  check_layer_gradients(layer_flatten(dtype = "float64"), x)
  check_layer_gradients(layer_flatten(data_format = "channels_first", dtype = "float64"), x)
  f <- layer_flatten()
  res <- layer_protocol(f)$forward(layer_state(f), x, list(), FALSE, array(TRUE, c(2, 3, 2)))
  expect_null(res$mask)
})

test_that("dispatch, shapes, config, errors", {
  f <- layer_flatten()
  expect_s3_class(f, c("Flatten", "multihead_layer"))
  expect_match(f$name, "^flatten(_[0-9]+)?$")
  expect_equal(f$compute_output_shape(c(NA, 3, 4)), c(NA, 12L))
  expect_equal(f$compute_output_shape(c(NA, NA, 4)), c(NA_integer_, NA_integer_))
  expect_equal(f$compute_output_shape(NA), c(NA, 1L))
  expect_config_round_trip(layer_flatten(data_format = "channels_first", name = "fl"))
  expect_arg_error(layer_flatten(data_format = "nhwc"), "data_format")
  expect_arg_error(f("a"), "inputs")
  expect_arg_error(f$build(list("a")), "input_shape")
})

# layer_layer_normalization(): forward against the plain-R reference over one
# or several axes, finite-difference gradients, weights, masks, errors.

test_that("normalizes over the last axis with gamma and beta", {
  set.seed(91)
  ln <- layer_layer_normalization(dtype = "float64", gamma_initializer = "random_normal",
                                  beta_initializer = "random_normal")
  x <- array(rnorm(2 * 3 * 5, mean = 3, sd = 2), c(2, 3, 5))
  y <- ln(x)
  w <- get_weights(ln)
  expect_named(ln$weights, paste0(ln$name, c("/gamma", "/beta")))
  expect_equal(lapply(w, dim), list(5L, 5L))
  expect_lt(rel_err(y, ref_layer_norm(x, 3, w[[1]], w[[2]])), 1e-13)
  plain <- layer_layer_normalization(dtype = "float64")
  z <- plain(x)
  expect_equal(apply(z, c(1, 2), mean), matrix(0, 2, 3), tolerance = 1e-12)
  expect_equal(apply(z, c(1, 2), function(v) mean(v^2)), matrix(1, 2, 3), tolerance = 1e-3)  # epsilon
  x2 <- matrix(rnorm(4 * 6), 4)
  expect_lt(rel_err(plain_2d <- layer_layer_normalization(x2, dtype = "float64"), ref_layer_norm(x2, 2)), 1e-13)
  y32 <- layer_layer_normalization(x)
  expect_lt(rel_err(y32, ref_layer_norm(x, 3)), 1e-5)
  expect_identical(y32, multihead:::round_float32(y32))
})

test_that("other axes and several axes (keras3's 1-based numbering)", {
  set.seed(92)
  x <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  for (axis in list(2, -2, c(2, 3), c(-1, -2), 3)) {
    ln <- layer_layer_normalization(axis = axis, dtype = "float64", gamma_initializer = "random_normal",
                                    beta_initializer = "random_normal")
    y <- ln(x)
    axes <- sort(ifelse(axis < 0, 4 + axis, axis))
    w <- get_weights(ln)
    expect_equal(dim(w[[1]]), dim(x)[axes])
    expect_lt(rel_err(y, ref_layer_norm(x, axes, w[[1]], w[[2]])), 1e-13, label = paste(axis, collapse = ","))
  }
})

test_that("gradients match finite differences (float64), with and without gamma/beta", {
  set.seed(93)
  x <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  gi <- "random_normal"
  check_layer_gradients(layer_layer_normalization(dtype = "float64", gamma_initializer = gi, beta_initializer = gi), x)
  check_layer_gradients(layer_layer_normalization(axis = c(2, 3), dtype = "float64", gamma_initializer = gi,
                                                  beta_initializer = gi), x)
  check_layer_gradients(layer_layer_normalization(axis = 2, dtype = "float64", gamma_initializer = gi,
                                                  beta_initializer = gi), x)
  g <- check_layer_gradients(layer_layer_normalization(scale = FALSE, dtype = "float64", beta_initializer = gi), x)
  expect_true(endsWith(names(g$grads$weights), "/beta"))
  g <- check_layer_gradients(layer_layer_normalization(center = FALSE, dtype = "float64", gamma_initializer = gi), x)
  expect_length(g$grads$weights, 1)
  g <- check_layer_gradients(layer_layer_normalization(center = FALSE, scale = FALSE, dtype = "float64"), x)
  expect_length(g$grads$weights, 0)
})

test_that("weights order, counts, config, masks", {
  ln <- layer_layer_normalization(name = "norm")
  ln$build(c(NA, 5, 8))
  expect_named(ln$weights, c("norm/gamma", "norm/beta"))
  expect_equal(get_weights(ln), list(array(1, 8), array(0, 8)))
  expect_equal(count_params(ln), 16)
  no_center <- layer_layer_normalization(center = FALSE)
  no_center$build(c(NA, 3))
  expect_length(get_weights(no_center), 1)
  expect_equal(ln$compute_output_shape(c(NA, 5, 8)), c(NA, 5L, 8L))
  cfg <- get_config(ln)
  expect_identical(cfg[c("axis", "epsilon", "center", "scale")],
                   list(axis = -1L, epsilon = 0.001, center = TRUE, scale = TRUE))
  expect_config_round_trip(layer_layer_normalization(axis = c(2, 3), epsilon = 1e-5, center = FALSE,
                                                     gamma_regularizer = "l2", dtype = "float64"))
  expect_match(layer_layer_normalization()$name, "^layer_normalization(_[0-9]+)?$")
  m <- matrix(c(TRUE, FALSE, TRUE, TRUE, TRUE, FALSE, TRUE, TRUE, TRUE, TRUE), 2)
  res <- layer_protocol(ln)$forward(layer_state(ln), array(rnorm(80), c(2, 5, 8)), list(), FALSE, m)
  expect_identical(res$mask, m)
  expect_output(print(ln), "<LayerNormalization \"norm\": axis=-1, epsilon=0.001, built for input (NA, 5, 8), 16 params>",
                fixed = TRUE)
})

test_that("bad arguments and shapes are errors naming them", {
  for (bad in list(0, 1.5, NA, "a", c(2, 2))) expect_arg_error(layer_layer_normalization(axis = bad), "axis")
  for (bad in list(0, -1, NA, "a", c(1, 2))) expect_arg_error(layer_layer_normalization(epsilon = bad), "epsilon")
  for (arg in c("center", "scale", "rms_scaling")) {
    for (bad in list(NA, 1, "yes")) expect_arg_error(do.call(layer_layer_normalization, stats::setNames(list(bad), arg)), arg)
  }
  expect_error(layer_layer_normalization(rms_scaling = TRUE), "rms_scaling", class = "multihead_error_unsupported")
  expect_arg_error(layer_layer_normalization(beta_initializer = "nope"), "beta_initializer")
  expect_arg_error(layer_layer_normalization(gamma_initializer = 2), "gamma_initializer")
  expect_arg_error(layer_layer_normalization(beta_regularizer = "nope"), "beta_regularizer")
  expect_arg_error(layer_layer_normalization(gamma_regularizer = 1), "gamma_regularizer")
  expect_arg_error(layer_layer_normalization(beta_constraint = "nope"), "beta_constraint")
  expect_arg_error(layer_layer_normalization(gamma_constraint = 1), "gamma_constraint")
  expect_error(layer_layer_normalization(groups = 2), "`groups`")
  ln <- layer_layer_normalization()
  x <- array(rnorm(24), c(2, 3, 4))
  ln(x)
  expect_error(ln(array(0, c(2, 3, 5))), "size 4 on axis 3.*got 5", class = "multihead_error_argument")
  expect_error(ln(array(0, c(2, 4))), "rank 3", class = "multihead_error_argument")
  expect_arg_error(layer_layer_normalization(axis = 1)(x), "inputs")          # the batch axis
  expect_arg_error(layer_layer_normalization(axis = 5)(x), "inputs")
  expect_arg_error(layer_layer_normalization()$build(c(NA, NA)), "input_shape")
})

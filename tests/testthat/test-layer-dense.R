# layer_dense(): forward against the plain-R reference for every activation,
# finite-difference gradients, dispatch, weights, config, errors, masks.

test_that("forward matches the reference for every activation and input rank", {
  set.seed(1)
  for (act in all_activations) {
    d <- layer_dense(units = 3, activation = act, dtype = "float64", bias_initializer = "random_normal")
    for (shape in list(c(4, 5), c(2, 3, 5), c(2, 2, 3, 5))) {
      x <- array(rnorm(prod(shape)), shape)
      y <- d(x)
      w <- get_weights(d)
      expect_lt(rel_err(y, ref_dense(x, w[[1]], w[[2]], act)), 1e-13, label = act)
    }
  }
})

test_that("gradients of every activation match finite differences (float64)", {
  set.seed(2)
  for (act in all_activations) {
    d <- layer_dense(units = 3, activation = act, dtype = "float64", bias_initializer = "random_normal")
    x <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
    check_layer_gradients(d, x)
  }
  nb <- layer_dense(units = 2, use_bias = FALSE, dtype = "float64")
  g <- check_layer_gradients(nb, array(rnorm(6 * 3), c(6, 3)))
  expect_named(g$grads$weights, paste0(nb$name, "/kernel"))
})

test_that("float32 is the default and rounds weights and outputs to float32", {
  set.seed(3)
  d <- layer_dense(units = 4, activation = "tanh")
  x <- array(rnorm(3 * 5), c(3, 5))
  y <- d(x)
  expect_identical(d$dtype, "float32")
  w <- get_weights(d)
  expect_identical(w[[1]], multihead:::round_float32(w[[1]]))
  expect_identical(y, multihead:::round_float32(y))
  expect_lt(rel_err(y, ref_dense(x, w[[1]], w[[2]], "tanh")), 1e-6)
})

test_that("dispatch: missing or NULL gives the layer, an array applies it", {
  expect_s3_class(layer_dense(units = 2), c("Dense", "multihead_layer"))
  expect_s3_class(layer_dense(NULL, 2), "Dense")
  x <- array(rnorm(12), c(3, 4))
  y <- layer_dense(x, units = 2)
  expect_true(is.array(y))
  expect_equal(dim(y), c(3, 2))
})

test_that("weights have Keras's names, shapes, order and count", {
  d <- layer_dense(units = 3, name = "proj")
  expect_false(d$built)
  expect_identical(get_weights(d), list())
  d$build(c(NA, 7, 5))
  expect_true(d$built)
  expect_named(d$weights, c("proj/kernel", "proj/bias"))
  expect_equal(lapply(get_weights(d), dim), list(c(5L, 3L), 3L))
  expect_equal(count_params(d), 5 * 3 + 3)
  expect_equal(as.array(d$bias), array(0, 3))
  expect_error(d$build(c(NA, 5)), "already built")
  expect_equal(d$compute_output_shape(c(NA, 9, 5)), c(NA, 9L, 3L))
  expect_equal(layer_protocol(d)$compute_output_shape(layer_state(d), c(2, 5)), c(2L, 3L))
  nb <- layer_dense(units = 3, use_bias = FALSE)
  nb$build(c(NA, 4))
  expect_length(get_weights(nb), 1)
  # Glorot uniform on (in, units): limit sqrt(6 / (in + units))
  big <- layer_dense(units = 50)
  big$build(c(NA, 50))
  k <- get_weights(big)[[1]]
  expect_lte(max(abs(k)), sqrt(6 / 100))
  expect_gt(max(abs(k)), 0.9 * sqrt(6 / 100))
})

test_that("default names follow Keras's prefixes", {
  a <- layer_dense(units = 1)
  b <- layer_dense(units = 1)
  expect_match(a$name, "^dense(_[0-9]+)?$")
  na <- if (a$name == "dense") 0L else as.integer(sub("dense_", "", a$name))
  expect_identical(b$name, paste0("dense_", na + 1L))
})

test_that("get_config / from_config round-trip", {
  d <- layer_dense(units = 4, activation = "relu", use_bias = FALSE, kernel_initializer = "he_normal",
                   kernel_regularizer = regularizer_l2(0.1), activity_regularizer = "l1",
                   kernel_constraint = "non_neg", dtype = "float64", trainable = FALSE, name = "dd")
  cfg <- get_config(d)
  expect_identical(attr(cfg, "class_name"), "Dense")
  expect_identical(cfg[c("name", "units", "activation", "use_bias", "dtype", "trainable")],
                   list(name = "dd", units = 4L, activation = "relu", use_bias = FALSE,
                        dtype = "float64", trainable = FALSE))
  expect_identical(get_config(layer_dense(units = 2))$activation, "linear")
  expect_config_round_trip(d)
})

test_that("regularizer losses and constraints", {
  set.seed(4)
  d <- layer_dense(units = 2, kernel_regularizer = regularizer_l2(0.5), activity_regularizer = regularizer_l1(0.1),
                   kernel_constraint = "non_neg", dtype = "float64")
  x <- array(rnorm(3 * 4), c(3, 4))
  y <- d(x)
  l <- d$losses
  expect_length(l, 2)
  expect_equal(l[[1]], 0.5 * sum(get_weights(d)[[1]]^2))
  expect_equal(l[[2]], 0.1 * sum(abs(y)) / 3)
  d$apply_constraints()
  expect_true(all(get_weights(d)[[1]] >= 0))
})

test_that("masks pass through unchanged", {
  d <- layer_dense(units = 2)
  x <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  m <- matrix(c(TRUE, TRUE, FALSE, TRUE, FALSE, FALSE), 2)
  res <- layer_protocol(d)$forward(layer_state(d), x, list(), FALSE, m)
  expect_identical(res$mask, m)
  expect_identical(layer_protocol(d)$forward(layer_state(d), x, list(), FALSE, list(m))$mask, m)
  expect_null(layer_protocol(d)$forward(layer_state(d), x, list(), FALSE, NULL)$mask)
  expect_equal(d(x, mask = m), d(x), ignore_attr = TRUE)
  expect_identical(get_keras_mask(d(x, mask = m)), m)  # an eager output carries its mask
  expect_arg_error(d(x, mask = matrix(TRUE, 3, 2)), "mask")
  expect_arg_error(d(x, mask = list(m, m)), "mask")
})

test_that("bad constructor arguments are errors naming the argument", {
  expect_arg_error(layer_dense(), "units")
  for (bad in list(0, 1.5, NA, "a", c(1, 2), -1)) expect_arg_error(layer_dense(units = bad), "units")
  for (bad in list("nope", 1, NA, c("relu", "tanh"), function(x) x)) {
    expect_arg_error(layer_dense(units = 1, activation = bad), "activation")
  }
  for (bad in list(NA, 1, "yes", c(TRUE, FALSE))) expect_arg_error(layer_dense(units = 1, use_bias = bad), "use_bias")
  expect_arg_error(layer_dense(units = 1, kernel_initializer = "nope"), "kernel_initializer")
  expect_arg_error(layer_dense(units = 1, bias_initializer = 3), "bias_initializer")
  expect_arg_error(layer_dense(units = 1, kernel_regularizer = "nope"), "kernel_regularizer")
  expect_arg_error(layer_dense(units = 1, bias_regularizer = NA), "bias_regularizer")
  expect_arg_error(layer_dense(units = 1, activity_regularizer = 2), "activity_regularizer")
  expect_arg_error(layer_dense(units = 1, kernel_constraint = "nope"), "kernel_constraint")
  expect_arg_error(layer_dense(units = 1, bias_constraint = 1), "bias_constraint")
  expect_arg_error(layer_dense(units = 1, name = 1), "name")
  expect_arg_error(layer_dense(units = 1, name = NA_character_), "name")
  expect_arg_error(layer_dense(units = 1, dtype = "int8"), "dtype")
  expect_arg_error(layer_dense(units = 1, trainable = NA), "trainable")
  expect_error(layer_dense(units = 1, foo = 1), "Unknown argument passed to layer_dense(): `foo`", fixed = TRUE)
  expect_arg_error(layer_dense(NULL, 1, "relu", TRUE, "zeros", "zeros", NULL, NULL, NULL, NULL, NULL, 5), "...")
})

test_that("bad inputs and shapes after build explain what was expected", {
  d <- layer_dense(units = 2)
  x <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  d(x)
  expect_error(d(array(0, c(2, 3, 5))), "4 features on its last axis.*got 5", class = "multihead_error_argument")
  expect_equal(dim(d(array(0, c(6, 4)))), c(6, 2))        # any rank with the same features
  expect_arg_error(d(1:4), "inputs")
  expect_arg_error(d("a"), "inputs")
  xn <- x; xn[1] <- NA
  expect_arg_error(d(xn), "inputs")
  expect_arg_error(d(x, training = NA), "training")
  expect_error(d(x, foo = 1), "Unknown argument in a call of Dense layer")
  expect_arg_error(backprop(d, x, grad_output = array(0, c(2, 3, 3))), "grad_output")
  expect_arg_error(backprop(d, x, grad_output = array(NA_real_, c(2, 3, 2))), "grad_output")
  expect_arg_error(d$build("a"), "input_shape")
  expect_arg_error(layer_dense(units = 2)$build(c(NA, NA)), "input_shape")
})

test_that("print shows the configuration", {
  d <- layer_dense(units = 3, activation = "relu", name = "pr")
  expect_output(print(d), "<Dense \"pr\": units=3, activation=relu, not built>", fixed = TRUE)
  d$build(c(NA, 2))
  expect_output(print(d), "built for input (NA, 2), 9 params", fixed = TRUE)
})

test_that("float32 gradients agree with float64 ones; trainable = FALSE moves weights", {
  set.seed(5)
  x <- array(rnorm(3 * 4 * 5), c(3, 4, 5))
  d64 <- layer_dense(units = 3, activation = "gelu", dtype = "float64", bias_initializer = "random_normal")
  d64(x)
  d32 <- layer_dense(units = 3, activation = "gelu")
  d32$build(c(NA, 4, 5))
  set_weights(d32, get_weights(d64))
  set_weights(d64, get_weights(d32))                   # the same (float32-representable) values
  R <- array(rnorm(3 * 4 * 3), c(3, 4, 3))
  g64 <- backprop(d64, x, grad_output = R)$grads
  g32 <- backprop(d32, x, grad_output = R)$grads
  expect_lt(rel_err(g32$inputs, g64$inputs), 1e-5)
  for (i in 1:2) expect_lt(rel_err(g32$weights[[i]], g64$weights[[i]]), 1e-5)
  frozen <- layer_dense(units = 2, trainable = FALSE)
  frozen$build(c(NA, 3))
  expect_false(frozen$trainable)
  expect_length(frozen$trainable_weights, 0)
  expect_length(frozen$non_trainable_weights, 2)
  expect_length(get_weights(frozen, trainable = FALSE), 2)
})

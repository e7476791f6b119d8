# layer_activation(): every activation against the plain-R definitions,
# finite-difference gradients, dispatch, config, errors, masks.

test_that("every activation matches its definition, elementwise or over the last axis", {
  set.seed(31)
  x <- array(rnorm(2 * 3 * 4) * 3, c(2, 3, 4))
  for (act in all_activations) {
    l <- layer_activation(activation = act, dtype = "float64")
    expect_lt(rel_err(l(x), ref_activation(act, x)), 1e-14, label = act)
  }
  expect_equal(apply(layer_activation(x, "softmax", dtype = "float64"), c(1, 2), sum), matrix(1, 2, 3))
  expect_identical(layer_activation(activation = "swish")$activation, "silu")
  expect_identical(layer_activation(activation = NULL)$activation, "linear")
  # float32: rounded outputs close to the reference
  y32 <- layer_activation(x, "gelu")
  expect_identical(y32, multihead:::round_float32(y32))
  expect_lt(rel_err(y32, ref_activation("gelu", x)), 1e-6)
})

test_that("gradients of every activation match finite differences (float64)", {
  set.seed(32)
  x <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  x[abs(x) < 0.05] <- 0.3                  # stay away from the kinks of relu and friends
  for (act in all_activations) {
    g <- check_layer_gradients(layer_activation(activation = act, dtype = "float64"), x)
    expect_length(g$grads$weights, 0)
  }
  # relu6 and hard_sigmoid: both flat regions and the slope
  wide <- array(c(-5, -3.5, -1, 1, 3.5, 7), c(2, 3))
  for (act in c("relu6", "hard_sigmoid")) check_layer_gradients(layer_activation(activation = act, dtype = "float64"), wide)
})

test_that("dispatch, names, config, masks and errors", {
  expect_s3_class(layer_activation(activation = "relu"), c("Activation", "multihead_layer"))
  expect_s3_class(layer_activation(NULL, "relu"), "Activation")
  expect_equal(layer_activation(array(c(-1, 2), c(1, 2)), "relu"), array(c(0, 2), c(1, 2)))
  l <- layer_activation(activation = "tanh")
  expect_match(l$name, "^activation(_[0-9]+)?$")
  expect_false(l$built)
  l(array(1, c(2, 2)))
  expect_true(l$built)
  expect_equal(count_params(l), 0)
  expect_identical(get_weights(l), list())
  expect_identical(get_config(l)$activation, "tanh")
  expect_config_round_trip(l)
  expect_equal(l$compute_output_shape(c(NA, 3, 4)), c(NA, 3L, 4L))
  m <- c(TRUE, FALSE)
  expect_identical(layer_protocol(l)$forward(layer_state(l), array(1, c(2, 5)), list(), FALSE, m)$mask,
                   array(m, 2))
  expect_arg_error(layer_activation(), "activation")
  for (bad in list("nope", 1, NA, c("relu", "tanh"))) expect_arg_error(layer_activation(activation = bad), "activation")
  expect_error(layer_activation(activation = "relu", units = 2), "`units`")
  expect_arg_error(l(list(1, 2)), "inputs")
  expect_arg_error(backprop(l, array(1, c(2, 2)), grad_output = array(1, c(2, 3))), "grad_output")
  expect_output(print(l), "<Activation \"activation(_[0-9]+)?\": activation=tanh, built for input \\(NA, 2\\), 0 params>")
})

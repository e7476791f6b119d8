# layer_einsum_dense(): dense-like equations against a brute-force einsum,
# Keras's bias shapes, finite-difference gradients, errors, config.

einsum_cases <- list(
  list(eq = "abc,cd->abd", out = c(NA, 4), bias = "d", x = c(2, 3, 5), bias_dim = 4),
  list(eq = "abc,cde->abde", out = c(NA, 2, 3), bias = "de", x = c(2, 3, 5), bias_dim = c(2, 3)),
  list(eq = "abcd,cde->abe", out = c(NA, 4), bias = "e", x = c(2, 3, 2, 3), bias_dim = 4),
  list(eq = "ab,bc->ac", out = 4, bias = "c", x = c(3, 5), bias_dim = 4),
  list(eq = "abc,dc->abd", out = c(NA, 4), bias = "bd", x = c(2, 3, 5), bias_dim = c(3, 4)),
  list(eq = "abc,cd->abd", out = c(3, 4), bias = "b", x = c(2, 3, 5), bias_dim = c(3, 1)),
  list(eq = "abc,cd->adb", out = c(4, NA), bias = "d", x = c(2, 3, 5), bias_dim = c(4, 1))
)

# The reference: brute-force einsum plus the bias broadcast over the output's
# trailing axes.
einsum_reference <- function(case, x, w) {
  y <- ref_einsum(case$eq, x, w[[1]])
  if (length(w) > 1) y <- ref_add_trailing_bias(y, w[[2]])
  y
}

test_that("dense-like equations match a brute-force einsum, with Keras's bias shapes", {
  set.seed(21)
  for (case in einsum_cases) {
    l <- layer_einsum_dense(equation = case$eq, output_shape = case$out, bias_axes = case$bias,
                            dtype = "float64", bias_initializer = "random_normal")
    x <- array(rnorm(prod(case$x)), case$x)
    y <- l(x)
    w <- get_weights(l)
    expect_equal(dim(w[[2]]), as.integer(case$bias_dim), label = paste(case$eq, case$bias))
    expect_lt(rel_err(y, einsum_reference(case, x, w)), 1e-13, label = case$eq)
    expect_equal(l$compute_output_shape(c(NA, case$x[-1])), c(NA, dim(y)[-1]))
  }
})

test_that("gradients match finite differences for every equation (float64)", {
  set.seed(22)
  for (case in einsum_cases) {
    l <- layer_einsum_dense(equation = case$eq, output_shape = case$out, bias_axes = case$bias,
                            dtype = "float64", bias_initializer = "random_normal")
    check_layer_gradients(l, array(rnorm(prod(case$x)), case$x))
  }
  act <- layer_einsum_dense(equation = "abc,cde->abde", output_shape = c(NA, 2, 2), activation = "gelu",
                            dtype = "float64")
  check_layer_gradients(act, array(rnorm(2 * 3 * 4), c(2, 3, 4)))
})

test_that("a leading ellipsis covers any number of leading axes", {
  set.seed(23)
  l <- layer_einsum_dense(equation = "...b,bc->...c", output_shape = 3, bias_axes = "c", dtype = "float64")
  x <- array(rnorm(2 * 4 * 5), c(2, 4, 5))
  y <- l(x)
  w <- get_weights(l)
  expect_equal(dim(w[[1]]), c(5L, 3L))
  expect_lt(rel_err(y, ref_dense(x, w[[1]], w[[2]])), 1e-13)
  check_layer_gradients(l, x)
  expect_arg_error(l(array(0, c(2, 5))), "inputs")        # rank fixed once built
  l2 <- layer_einsum_dense(equation = "...b,bc->...c", output_shape = 3)
  expect_equal(dim(l2(array(1, c(6, 5)))), c(6, 3))
})

test_that("activations apply after the bias", {
  set.seed(24)
  l <- layer_einsum_dense(equation = "abc,cd->abd", output_shape = c(NA, 3), bias_axes = "d",
                          activation = "softmax", dtype = "float64", bias_initializer = "random_normal")
  x <- array(rnorm(2 * 4 * 5), c(2, 4, 5))
  y <- l(x)
  w <- get_weights(l)
  expect_lt(rel_err(y, ref_dense(x, w[[1]], w[[2]], "softmax")), 1e-13)
})

test_that("kernel fans follow Keras >= 3.15 (products of input and output axes)", {
  set.seed(25)
  l <- layer_einsum_dense(equation = "abc,cde->abde", output_shape = c(NA, 2, 2))
  l$build(c(NA, 8, 16))
  k <- get_weights(l)[[1]]
  expect_equal(dim(k), c(16L, 2L, 2L))
  expect_lte(max(abs(k)), sqrt(6 / 20))
  expect_gt(max(abs(k)), sqrt(6 / 64))   # the older conv-style fans would cap it here
})

test_that("dispatch, names, weights, config", {
  expect_s3_class(layer_einsum_dense(equation = "ab,bc->ac", output_shape = 2), "EinsumDense")
  expect_s3_class(layer_einsum_dense(NULL, "ab,bc->ac", 2), "EinsumDense")
  y <- layer_einsum_dense(array(1, c(3, 4)), "ab,bc->ac", 2)
  expect_equal(dim(y), c(3, 2))
  l <- layer_einsum_dense(equation = "abc,cde->abde", output_shape = list(NULL, 2, 3), bias_axes = "de")
  expect_match(l$name, "^einsum_dense(_[0-9]+)?$")
  l$build(c(NA, 4, 5))
  expect_named(l$weights, paste0(l$name, c("/kernel", "/bias")))
  expect_equal(count_params(l), 5 * 6 + 6)
  expect_identical(l$equation, "abc,cde->abde")
  expect_identical(l$output_shape, c(NA, 2L, 3L))
  cfg <- get_config(l)
  expect_identical(cfg$bias_axes, "de")
  expect_identical(cfg$activation, "linear")
  expect_config_round_trip(layer_einsum_dense(equation = "abc,cd->abd", output_shape = c(NA, 4),
                                              activation = "relu", bias_axes = "d", name = "e1",
                                              activity_regularizer = "l2", dtype = "float64"))
  expect_output(print(l), "equation=abc,cde->abde, kernel (5, 2, 3), built for input (NA, 4, 5)", fixed = TRUE)
})

test_that("the layer does not propagate masks", {
  l <- layer_einsum_dense(equation = "abc,cd->abd", output_shape = c(NA, 2))
  x <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
  res <- layer_protocol(l)$forward(layer_state(l), x, list(), FALSE, matrix(TRUE, 2, 3))
  expect_null(res$mask)
})

test_that("unsupported equations and bad arguments are clear errors", {
  for (eq in list("abc,bcd->abd", "ab,cd->ad", "ab,bc->c", "abc,cd->bad", "a...b,bc->a...c",
                  "ab,bc", "abb,bc->ac", "abc,cd->abcd", 1, NA, c("ab,bc->ac", "ab,bc->ac"))) {
    expect_arg_error(layer_einsum_dense(equation = eq, output_shape = 2), "equation")
  }
  expect_error(layer_einsum_dense(equation = "abc,bcd->abd", output_shape = c(NA, 2)),
               "letter \"b\" is in the input, kernel and output")
  expect_arg_error(layer_einsum_dense(output_shape = 2), "equation")
  expect_arg_error(layer_einsum_dense(equation = "ab,bc->ac"), "output_shape")
  for (bad in list(c(2, 3, 4), 4, c(NA, 0), c(NA, "a"), c(NA, NA), c(NA, 1.5), NA, list(NULL, NULL))) {
    expect_arg_error(layer_einsum_dense(equation = "abc,cd->abd", output_shape = bad), "output_shape")
  }
  for (bad in list("z", 1, "dd", NA, "a")) {
    expect_arg_error(layer_einsum_dense(equation = "abc,cd->abd", output_shape = c(NA, 2), bias_axes = bad),
                     "bias_axes")
  }
  expect_arg_error(layer_einsum_dense(equation = "ab,bc->ac", output_shape = 2, activation = "nope"), "activation")
  expect_arg_error(layer_einsum_dense(equation = "ab,bc->ac", output_shape = 2, kernel_initializer = 1),
                   "kernel_initializer")
  for (arg in c("bias_initializer", "kernel_regularizer", "bias_regularizer", "activity_regularizer",
                "kernel_constraint", "bias_constraint")) {
    args <- list(equation = "ab,bc->ac", output_shape = 2)
    args[[arg]] <- "nope"
    expect_arg_error(do.call(layer_einsum_dense, args), arg)
  }
  for (arg in c("name", "dtype", "trainable")) {
    args <- list(equation = "ab,bc->ac", output_shape = 2)
    args[[arg]] <- NA
    expect_arg_error(do.call(layer_einsum_dense, args), arg)
  }
  expect_error(layer_einsum_dense(equation = "ab,bc->ac", output_shape = 2, foo = 1), "`foo`")
  expect_error(layer_einsum_dense(equation = "abc,cd->abd", output_shape = c(5, 2))(array(0, c(2, 3, 4))),
               "gives size 5 to letter \"b\"", class = "multihead_error_shape")
  l <- layer_einsum_dense(equation = "abc,cd->abd", output_shape = c(NA, 2))
  l(array(0, c(2, 3, 4)))
  expect_error(l(array(0, c(2, 3, 5))), "size 4 on axis 3 \\(letter \"c\"", class = "multihead_error_argument")
  expect_error(l(array(0, c(2, 4))), "rank 3", class = "multihead_error_argument")
  expect_equal(dim(l(array(0, c(5, 7, 4)))), c(5, 7, 2))   # free axes may change
})

# layer_add(): sums, gradients, mask combination, dispatch forms, errors.

test_that("adds any number of same-shape arrays; gradients are the identity", {
  set.seed(51)
  a <- array(rnorm(24), c(2, 3, 4)); b <- array(rnorm(24), c(2, 3, 4)); c3 <- array(rnorm(24), c(2, 3, 4))
  add <- layer_add(dtype = "float64")
  expect_equal(add(list(a, b, c3)), a + b + c3)
  expect_equal(add(list(a)), a)
  g <- check_layer_gradients(add, list(a, b, c3))
  expect_length(g$grads$weights, 0)
  expect_equal(layer_add(a, b, dtype = "float64"), a + b)
  expect_equal(layer_add(list(a, b), c3, dtype = "float64"), a + b + c3)
  y32 <- layer_add(a, b)
  expect_identical(y32, multihead:::round_float32(multihead:::round_float32(a) + multihead:::round_float32(b)))
})

test_that("masks combine as Keras's Merge.compute_mask: OR when every input has one, else none", {
  a <- array(1, c(2, 3, 4))
  m1 <- matrix(c(TRUE, TRUE, FALSE, TRUE, TRUE, TRUE), 2)
  m2 <- matrix(c(TRUE, FALSE, TRUE, TRUE, TRUE, TRUE), 2)
  add <- layer_add()
  fw <- function(masks) layer_protocol(add)$forward(layer_state(add), list(a, a), list(), FALSE, masks)$mask
  expect_identical(fw(list(m1, m2)), m1 | m2)
  expect_null(fw(list(NULL, m2)))
  expect_null(fw(list(NULL, NULL)))
  expect_null(fw(NULL))
  expect_arg_error(fw(list(m1)), "mask")
  expect_arg_error(fw(list(m1, matrix(TRUE, 3, 2))), "mask[[2]]")
})

test_that("dispatch, build, config and errors", {
  expect_s3_class(layer_add(), c("Add", "multihead_layer"))
  expect_s3_class(layer_add(NULL), "Add")
  expect_s3_class(layer_add(name = "sum"), "Add")
  add <- layer_add(name = "sum")
  expect_equal(add$compute_output_shape(list(c(NA, 3), c(5, NA))), c(5L, 3L))
  add$build(list(c(NA, 3), c(NA, 3)))
  expect_true(add$built)
  expect_equal(count_params(add), 0)
  expect_identical(get_config(add)$name, "sum")
  expect_config_round_trip(add)
  expect_match(layer_add()$name, "^add(_[0-9]+)?$")
  expect_error(layer_add()(list(array(1, c(2, 3)), array(1, c(2, 4)))),
               "arrays of one shape, or of shapes that broadcast .*; got shapes \\(2, 3\\), \\(2, 4\\)",
               class = "multihead_error_argument")
  expect_arg_error(layer_add()(array(1, c(2, 2))), "inputs")
  expect_arg_error(layer_add()(list()), "inputs")
  expect_arg_error(layer_add()(list(array(1, c(2, 2)), "a")), "inputs[[2]]")
  expect_arg_error(layer_add()$build(list(c(NA, 3), c(NA, 4))), "input_shape")
  expect_error(layer_add(foo = 1), "`foo`")
  expect_arg_error(layer_add(dtype = "int32"), "dtype")
})

# The merge layers: layer_subtract(), layer_multiply(), layer_average(),
# layer_concatenate() (layer_add() has its own file): values against plain R,
# Keras's broadcasting and masks, gradients by finite differences, models,
# configs and errors.

r32 <- function(x) multihead:::round_float32(x)

test_that("subtract, multiply, average against plain R, float64 and float32's rounding sequence", {
  set.seed(61)
  a <- rand_array(2, 3, 4); b <- rand_array(2, 3, 4); c3 <- rand_array(2, 3, 4)
  expect_equal(layer_subtract(a, b, dtype = "float64"), a - b)
  expect_equal(layer_multiply(a, b, c3, dtype = "float64"), a * b * c3)
  expect_equal(layer_average(list(a, b, c3), dtype = "float64"), (a + b + c3) / 3)
  expect_equal(layer_multiply(list(a), dtype = "float64"), a)
  # float32: inputs rounded, each binary operation rounded (Keras's float32 ops)
  expect_identical(layer_subtract(a, b), r32(r32(a) - r32(b)))
  expect_identical(layer_multiply(a, b, c3), r32(r32(r32(a) * r32(b)) * r32(c3)))
  expect_identical(layer_average(a, b, c3), r32(r32(r32(r32(a) + r32(b)) + r32(c3)) / 3))
  expect_identical(dim(layer_average(a, b)), c(2L, 3L, 4L))
})

test_that("elementwise merges broadcast as Keras: size 1 against any size, lower ranks get axes after the batch axis", {
  set.seed(62)
  a <- rand_array(2, 3, 4)
  gate <- rand_array(2, 3, 1)
  v <- rand_array(2, 4)          # rank 2: becomes (2, 1, 4)
  ref_gate <- a * gate[, , rep(1, 4)]
  ref_v <- a + aperm(array(v, c(2, 4, 3)), c(1, 3, 2))
  expect_equal(layer_multiply(a, gate, dtype = "float64"), ref_gate)
  expect_equal(layer_multiply(gate, a, dtype = "float64"), ref_gate)
  expect_equal(layer_add(a, v, dtype = "float64"), ref_v)
  expect_equal(layer_subtract(v, a, dtype = "float64"), -ref_v + 2 * aperm(array(v, c(2, 4, 3)), c(1, 3, 2)))
  expect_equal(layer_average(a, v, dtype = "float64"), ref_v / 2)
  expect_equal(layer_add()$compute_output_shape(list(c(NA, 3, 4), c(NA, 4))), c(NA, 3L, 4L))
  expect_equal(layer_multiply()$compute_output_shape(list(c(NA, 3, 1), c(5, 3, 4))), c(5L, 3L, 4L))
  expect_equal(layer_multiply()$compute_output_shape(list(c(NA, NA, 4), c(NA, 1, 4))), c(NA, NA, 4L))
  # gradients sum over the broadcast axes
  check_layer_gradients(layer_multiply(dtype = "float64"), list(a, gate, v))
  check_layer_gradients(layer_subtract(dtype = "float64"), list(v, a))
  check_layer_gradients(layer_average(dtype = "float64"), list(a, gate, v))
  check_layer_gradients(layer_add(dtype = "float64"), list(a, v))
})

test_that("gradients of every merge by finite differences (same shapes)", {
  set.seed(63)
  a <- rand_array(2, 3, 4); b <- rand_array(2, 3, 4); c3 <- rand_array(2, 3, 4)
  check_layer_gradients(layer_subtract(dtype = "float64"), list(a, b))
  check_layer_gradients(layer_multiply(dtype = "float64"), list(a, b, c3))
  b0 <- b; b0[1, 2, 3] <- 0   # a zero factor: the others' products still give the gradient
  check_layer_gradients(layer_multiply(dtype = "float64"), list(a, b0, c3))
  check_layer_gradients(layer_average(dtype = "float64"), list(a, b, c3))
  check_layer_gradients(layer_concatenate(dtype = "float64"), list(a, b, c3))
  check_layer_gradients(layer_concatenate(axis = 2, dtype = "float64"), list(a, rand_array(2, 1, 4)))
  check_layer_gradients(layer_concatenate(axis = 1, dtype = "float64"), list(a, rand_array(3, 3, 4)))
})

test_that("concatenate against plain R on every axis; axis numbering of keras3 and Keras's config", {
  set.seed(64)
  a <- rand_array(2, 3, 4); b <- rand_array(2, 3, 5); c2 <- rand_array(2, 2, 4)
  out <- layer_concatenate(a, b, dtype = "float64")
  ref <- array(0, c(2, 3, 9)); ref[, , 1:4] <- a; ref[, , 5:9] <- b
  expect_identical(out, ref)
  ref2 <- array(0, c(2, 5, 4)); ref2[, 1:3, ] <- a; ref2[, 4:5, ] <- c2
  expect_identical(layer_concatenate(list(a, c2), axis = 2, dtype = "float64"), ref2)
  expect_identical(layer_concatenate(list(a, c2), axis = -2, dtype = "float64"), ref2)
  ref1 <- array(0, c(4, 3, 4)); ref1[1:2, , ] <- a; ref1[3:4, , ] <- a
  expect_identical(layer_concatenate(a, a, axis = 1, dtype = "float64"), ref1)
  m <- matrix(1:6, 2)
  expect_identical(layer_concatenate(m, m), cbind(m, m) + 0)
  expect_identical(layer_concatenate(a, b), r32(ref))
  expect_equal(layer_concatenate(axis = 2)$compute_output_shape(list(c(NA, 3, 4), c(NA, 2, 4))), c(NA, 5L, 4L))
  expect_equal(layer_concatenate()$compute_output_shape(list(c(NA, 3, 4), c(NA, NA, 5))), c(NA, 3L, 9L))
  expect_equal(layer_concatenate(axis = 2)$compute_output_shape(list(c(NA, NA, 4), c(NA, 2, 4))), c(NA, NA, 4L))
  # get_config() holds Keras's axis (0-based when non-negative): keras3's axis 2 is Keras's 1
  expect_identical(get_config(layer_concatenate(axis = 2))$axis, 1L)
  expect_identical(get_config(layer_concatenate())$axis, -1L)
  cfg <- get_config(layer_concatenate(axis = 3, name = "cc"))
  expect_identical(names(cfg), c("name", "trainable", "dtype", "axis"))
  expect_identical(from_config(cfg)$axis, 3L)
  expect_config_round_trip(layer_concatenate(axis = 2))
  expect_config_round_trip(layer_concatenate(axis = -2))
  for (ctor in list(layer_subtract, layer_multiply, layer_average)) {
    l <- ctor(name = "m1", dtype = "float64")
    expect_identical(names(get_config(l)), c("name", "trainable", "dtype"))
    expect_config_round_trip(l)
  }
})

test_that("masks as Keras 3: OR of all masks for the elementwise merges, Multiply reads them, Concatenate joins them", {
  a <- array(c(1, 2, 3, 4, 5, 6), c(2, 3, 1)); b <- array(10, c(2, 3, 1))
  m1 <- matrix(c(TRUE, TRUE, FALSE, TRUE, TRUE, FALSE), 2)
  m2 <- matrix(c(TRUE, FALSE, FALSE, TRUE, TRUE, TRUE), 2)
  fw <- function(layer, inputs, masks) layer_protocol(layer)$forward(layer_state(layer), inputs, list(), FALSE, masks)
  for (ctor in list(layer_add, layer_subtract, layer_average, layer_multiply)) {
    l <- ctor(dtype = "float64")
    expect_identical(fw(l, list(a, b), list(m1, m2))$mask, m1 | m2)
    expect_null(fw(l, list(a, b), list(m1, NULL))$mask)
    expect_null(fw(l, list(a, b), NULL)$mask)
  }
  # Add/Subtract/Average compute on every position whatever the masks
  expect_identical(fw(layer_add(dtype = "float64"), list(a, b), list(m1, m2))$output, a + b)
  # Multiply: masked positions count as 1; all inputs masked -> 0 where all are masked
  r <- fw(layer_multiply(dtype = "float64"), list(a, b), list(m1, m2))$output
  ref <- ifelse(array(m1, dim(a)), a, 1) * ifelse(array(m2, dim(b)), b, 1)
  ref[!array(m1 | m2, dim(a))] <- 0
  expect_identical(r, array(ref, dim(a)))
  r <- fw(layer_multiply(dtype = "float64"), list(a, b), list(m1, NULL))$output
  expect_identical(r, array(ifelse(array(m1, dim(a)), a, 1) * b, dim(a)))
  check_layer_gradients(layer_multiply(dtype = "float64"), list(rand_array(2, 3, 2), rand_array(2, 3, 2)),
                        mask = list(m1, m2))
  # Concatenate: a missing mask counts as all present
  c2 <- array(1, c(2, 2, 1)); mc <- matrix(c(FALSE, TRUE, TRUE, FALSE), 2)
  cat2 <- layer_concatenate(axis = 2)
  expect_identical(fw(cat2, list(a, c2), list(m1, mc))$mask, cbind(m1, mc))
  expect_identical(fw(cat2, list(a, c2), list(NULL, mc))$mask, cbind(matrix(TRUE, 2, 3), mc))
  expect_null(fw(cat2, list(a, c2), list(NULL, NULL))$mask)
  cat3 <- layer_concatenate()   # along the features: the OR
  expect_identical(fw(cat3, list(a, b), list(m1, m2))$mask, m1 | m2)
  expect_identical(fw(cat3, list(a, b), list(m1, NULL))$mask, matrix(TRUE, 2, 3))
  expect_arg_error(fw(cat3, list(a, b), list(m1)), "mask")
  expect_arg_error(fw(cat3, list(a, b), list(m1, matrix(TRUE, 3, 2))), "mask[[2]]")
})

test_that("masks flow through merges in a functional model (Embedding mask_zero)", {
  ids <- keras_input(shape = 4, dtype = "int32")
  e1 <- layer_embedding(ids, input_dim = 10, output_dim = 3, mask_zero = TRUE)
  e2 <- layer_embedding(ids, input_dim = 10, output_dim = 3)
  pooled <- layer_global_average_pooling_1d(layer_multiply(e1, e2))
  model <- keras_model(ids, pooled)
  x <- matrix(c(1, 2, 0, 0, 3, 4, 5, 0), 2, byrow = TRUE)
  out <- model(x)
  # e2 has no mask: the merged output has none, so the pooling averages all 4 steps;
  # Multiply replaces e1's masked steps by 1 (Keras), so those steps contribute e2's values
  w1 <- get_weights(model)[[1]]; w2 <- get_weights(model)[[2]]
  ref <- t(sapply(1:2, function(b) {
    steps <- sapply(1:4, function(t) {
      id <- x[b, t] + 1
      (if (x[b, t] != 0) w1[id, ] else 1) * w2[id, ]
    })
    rowMeans(steps)
  }))
  expect_equal(out, ref, tolerance = 1e-6)
})

test_that("merges in functional models: shapes, summary, gradients, training", {
  set.seed(65)
  i1 <- keras_input(shape = c(3, 4), dtype = "float64"); i2 <- keras_input(shape = c(3, 2), dtype = "float64")
  d1 <- layer_dense(i1, 2, dtype = "float64")
  s <- layer_subtract(d1, i2, dtype = "float64")
  p <- layer_multiply(s, layer_dense(i2, 1, dtype = "float64"), dtype = "float64")   # (NA, 3, 2) * (NA, 3, 1)
  a <- layer_average(p, d1, dtype = "float64")
  cc <- layer_concatenate(a, i2, axis = 2, dtype = "float64")
  expect_identical(cc$shape, c(NA, 6L, 2L))
  out <- layer_dense(cc, 1, dtype = "float64")
  model <- keras_model(list(i1, i2), out)
  expect_output(summary(model), "Concatenate")
  x <- list(rand_array(4, 3, 4), rand_array(4, 3, 2))
  check_model_gradients(model, x)
  # training reduces the loss
  set.seed(66)
  xs <- list(rand_array(32, 3, 4), rand_array(32, 3, 2))
  y <- array(rnorm(32 * 6), c(32, 6, 1))
  model |> compile(optimizer = optimizer_adam(0.05), loss = "mse")
  h <- model |> fit(xs, y, epochs = 15, batch_size = 8, verbose = 0)
  expect_lt(tail(h$metrics$loss, 1), h$metrics$loss[1])
  # own model files, and Keras's weights layout: each merge layer has its (empty) vars group
  p <- tempfile(fileext = ".rds")
  save_model(model, p)
  expect_identical(load_model(p)(xs), model(xs))
  skip_if_not_installed("hdf5r")
  path <- tempfile(fileext = ".weights.h5")
  save_model_weights(model, path)
  expect_true(all(c("layers/subtract/vars", "layers/multiply/vars", "layers/average/vars",
                    "layers/concatenate/vars") %in% h5_group_paths(path)))
  other <- load_model(p)
  set_weights(other, lapply(get_weights(other), function(w) w * 0))
  load_model_weights(other, path)
  expect_identical(other(xs), model(xs))
})

test_that("bad input: mismatched shapes, counts, axes, with errors naming the argument", {
  a <- array(1, c(2, 3, 4))
  expect_error(layer_subtract(a, a, a), "exactly 2", class = "multihead_error_argument")
  expect_arg_error(layer_subtract()(list(a)), "inputs")
  expect_arg_error(layer_multiply(a, array(1, c(2, 3, 5))), "inputs")
  expect_arg_error(layer_average(a, array(1, c(3, 3, 4))), "inputs")   # batch sizes differ
  expect_error(layer_multiply(a, array(1, c(2, 2, 4))), "got shapes \\(2, 3, 4\\), \\(2, 2, 4\\)")
  expect_arg_error(layer_concatenate(a, array(1, c(2, 4, 4))), "inputs")
  expect_arg_error(layer_concatenate(a, array(1, c(2, 3))), "inputs")
  expect_arg_error(layer_concatenate(a, a, axis = 4), "inputs")
  expect_arg_error(layer_concatenate(axis = 0), "axis")
  expect_arg_error(layer_concatenate(axis = 1.5), "axis")
  expect_arg_error(layer_concatenate(axis = "a"), "axis")
  expect_arg_error(layer_concatenate()$compute_output_shape(list(c(NA, 3, 4), c(NA, 2, 4))), "input_shape")
  expect_arg_error(layer_multiply()$build(list(c(NA, 3), c(NA, 4))), "input_shape")
  expect_arg_error(layer_subtract()$build(list(c(NA, 3))), "input_shape")
  expect_arg_error(layer_average()(list(a, "x")), "inputs[[2]]")
  expect_arg_error(layer_average()(list(a, a * NA)), "inputs[[2]]")
  expect_error(layer_multiply(foo = 1), "`foo`")
  expect_arg_error(layer_average(dtype = "int32"), "dtype")
  expect_arg_error(layer_concatenate(keras_model_sequential(input_shape = 3)), "inputs")
  expect_error(layer_multiply(list(keras_input(shape = c(3, 4)), keras_input(shape = c(3, 5)))),
               "must be arrays of one shape", class = "multihead_error_argument")
  expect_arg_error(backprop(layer_subtract(), list(a, a), grad_output = array(1, c(2, 3))), "grad_output")
})

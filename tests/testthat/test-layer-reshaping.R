# layer_reshape(), layer_permute(), layer_repeat_vector(), layer_identity(),
# layer_masking(): values against plain-R references, gradients, masks as
# Keras propagates them, models, configs, weights files and bad input.

r32 <- function(x) multihead:::round_float32(x)

test_that("reshape: Keras's row-major order against index arithmetic, -1 / NA inferred, float32 rounding", {
  set.seed(71)
  x <- rand_array(2, 3, 4)
  expect_identical(layer_reshape(x, c(4, 3), dtype = "float64"), ref_reshape(x, c(4, 3)))
  expect_identical(layer_reshape(x, c(2, -1, 3), dtype = "float64"), ref_reshape(x, c(2, 2, 3)))
  expect_identical(layer_reshape(x, c(NA, 6), dtype = "float64"), ref_reshape(x, c(2, 6)))
  expect_identical(layer_reshape(x, list(NULL, 2), dtype = "float64"), ref_reshape(x, c(6, 2)))
  expect_identical(layer_reshape(x, 12, dtype = "float64"), ref_reshape(x, 12))
  m <- matrix(1:12, 2)
  expect_identical(layer_reshape(m, c(2, 3))[2, , ], rbind(m[2, 1:3], m[2, 4:6]) + 0)
  expect_identical(layer_reshape(x, c(4, 3)), r32(ref_reshape(x, c(4, 3))))
  x5 <- rand_array(2, 2, 3, 2)
  expect_identical(layer_reshape(x5, c(3, 4), dtype = "float64"), ref_reshape(x5, c(3, 4)))
  check_layer_gradients(layer_reshape(target_shape = c(3, 4), dtype = "float64"), x5)
  check_layer_gradients(layer_reshape(target_shape = c(-1, 2), dtype = "float64"), x)
  l <- layer_reshape(target_shape = c(-1, 4))
  expect_equal(l$compute_output_shape(c(NA, 3, 8)), c(NA, 6L, 4L))
  expect_equal(l$compute_output_shape(c(NA, NA, 8)), c(NA, NA, 4L))
  expect_identical(l$target_shape, c(-1L, 4L))
  cfg <- get_config(l)
  expect_identical(names(cfg), c("name", "trainable", "dtype", "target_shape"))
  expect_identical(cfg$target_shape, c(-1L, 4L))   # Keras keeps -1 in its config
  expect_config_round_trip(l)
})

test_that("permute: 1-based dims over the axes after the batch axis, against explicit indexing", {
  set.seed(72)
  x <- rand_array(2, 3, 4, 5)
  dims <- c(3, 1, 2)
  y <- layer_permute(x, dims, dtype = "float64")
  expect_identical(dim(y), c(2L, 5L, 3L, 4L))
  ref <- array(0, c(2, 5, 3, 4))
  for (b in 1:2) for (i in 1:3) for (j in 1:4) for (k in 1:5) ref[b, k, i, j] <- x[b, i, j, k]
  expect_identical(y, ref)
  m <- rand_array(2, 3, 4)
  y2 <- layer_permute(m, c(2, 1))
  for (b in 1:2) expect_identical(y2[b, , ], r32(t(m[b, , ])))
  expect_identical(layer_permute(m, c(1, 2), dtype = "float64"), m)
  check_layer_gradients(layer_permute(dims = dims, dtype = "float64"), x)
  l <- layer_permute(dims = c(2, 1))
  expect_equal(l$compute_output_shape(c(NA, 3, 7)), c(NA, 7L, 3L))
  cfg <- get_config(l)
  expect_identical(names(cfg), c("name", "trainable", "dtype", "dims"))
  expect_identical(cfg$dims, c(2L, 1L))
  expect_config_round_trip(l)
})

test_that("repeat_vector: (batch, features) -> (batch, n, features) against a loop; gradient sums the copies", {
  set.seed(73)
  x <- rand_array(3, 4)
  y <- layer_repeat_vector(x, 5, dtype = "float64")
  ref <- array(0, c(3, 5, 4))
  for (b in 1:3) for (i in 1:5) ref[b, i, ] <- x[b, ]
  expect_identical(y, ref)
  expect_identical(layer_repeat_vector(x, 1, dtype = "float64"), array(x, c(3, 1, 4)))
  g <- check_layer_gradients(layer_repeat_vector(n = 3, dtype = "float64"), x)
  l <- layer_repeat_vector(n = 2)
  expect_equal(l$compute_output_shape(c(NA, 6)), c(NA, 2L, 6L))
  expect_identical(names(get_config(l)), c("name", "trainable", "dtype", "n"))
  expect_identical(get_config(l)$n, 2L)
  expect_config_round_trip(l)
})

test_that("identity returns its input unchanged and passes the mask", {
  x <- rand_array(2, 3, 4)
  expect_identical(layer_identity(x), x)
  ids <- matrix(1:6, 2)
  expect_identical(layer_identity(ids), ids)  # no cast, as Keras
  check_layer_gradients(layer_identity(dtype = "float64"), x)
  m <- matrix(c(TRUE, FALSE, TRUE, TRUE, FALSE, TRUE), 2)
  l <- layer_identity()
  expect_identical(layer_protocol(l)$forward(layer_state(l), x, list(), FALSE, m)$mask, m)
  expect_identical(names(get_config(l)), c("name", "trainable", "dtype"))
  expect_config_round_trip(l)
})

test_that("masking: steps whose features all equal mask_value are zeroed and masked; the gradient skips them", {
  x <- array(c(1, 0, 0, 2,  0, 0, 0, 5,  0.5, 0, 0, 0), c(2, 2, 3))  # [b, t, f]
  y <- layer_masking(x, mask_value = 0, dtype = "float64")
  keep <- matrix(FALSE, 2, 2)
  ref <- x
  for (b in 1:2) for (t in 1:2) {
    keep[b, t] <- any(x[b, t, ] != 0)
    if (!keep[b, t]) ref[b, t, ] <- 0
  }
  expect_identical(set_keras_mask(y, NULL), ref)
  expect_identical(get_keras_mask(y), keep)  # the eager output carries the mask it made
  l <- layer_masking(mask_value = 0, dtype = "float64")
  fw <- layer_protocol(l)$forward(layer_state(l), x, list(), FALSE, NULL)
  expect_identical(fw$mask, keep)
  # the incoming mask is replaced (Keras's Masking ignores it)
  fw2 <- layer_protocol(l)$forward(layer_state(l), x, list(), FALSE, matrix(FALSE, 2, 2))
  expect_identical(fw2$mask, keep)
  # another mask value; positions where only some features equal it stay
  x2 <- x; x2[x2 == 0] <- -1; x2[1, 1, 2] <- 3
  y2 <- layer_masking(x2, mask_value = -1, dtype = "float64")
  expect_identical(y2[1, 1, ], x2[1, 1, ])
  expect_identical(y2[1, 2, ], c(0, 0, 0))
  # float32 compares the rounded values
  x3 <- array(0.1, c(1, 2, 2)); x3[1, 2, ] <- 1
  expect_identical(layer_masking(x3, mask_value = 0.1)[1, 1, ], c(0, 0))
  set.seed(74)
  check_layer_gradients(layer_masking(dtype = "float64"), rand_array(2, 3, 4))
  # a masked step gets no gradient (Keras's where()); the others pass it unchanged
  xr <- rand_array(2, 3, 4); xr[1, 2, ] <- 0.5
  go <- rand_array(2, 3, 4)
  g <- backprop(layer_masking(mask_value = 0.5, dtype = "float64"), xr, grad_output = go)
  ref <- go; ref[1, 2, ] <- 0
  expect_identical(g$grads$inputs, ref)
  expect_identical(names(get_config(l)), c("name", "trainable", "dtype", "mask_value"))
  expect_config_round_trip(layer_masking(mask_value = -1))
})

test_that("masks in models: Masking feeds pooling; Reshape, Permute, RepeatVector drop masks; Identity keeps them", {
  inp <- keras_input(shape = c(4, 2))
  pooled <- inp |> layer_masking() |> layer_identity() |> layer_global_average_pooling_1d()
  model <- keras_model(inp, pooled)
  x <- array(0, c(2, 4, 2)); x[1, 1:2, ] <- c(1, 3, 2, 4); x[2, , ] <- 1
  out <- model(x)
  expect_equal(out[1, ], c(mean(c(1, 3)), mean(c(2, 4))))
  expect_equal(out[2, ], c(1, 1))
  # after a Permute (or Reshape) the mask is gone: the pooling averages every step
  for (make in list(function(t) layer_permute(t, c(1, 2)), function(t) layer_reshape(t, c(4, 2)))) {
    m2 <- keras_model(inp, inp |> layer_masking() |> make() |> layer_global_average_pooling_1d())
    expect_equal(m2(x)[1, ], c(mean(c(1, 3, 0, 0)), mean(c(2, 4, 0, 0))))
  }
  l <- layer_repeat_vector(n = 2)
  expect_null(layer_protocol(l)$forward(layer_state(l), matrix(1, 2, 3), list(), FALSE, c(TRUE, FALSE))$mask)
})

test_that("reshaping layers in models: summary, gradients, training, weights files", {
  set.seed(75)
  inp <- keras_input(shape = c(3, 4), dtype = "float64")
  h <- inp |> layer_dense(6, dtype = "float64") |> layer_reshape(c(6, 3), dtype = "float64") |>
    layer_permute(c(2, 1), dtype = "float64") |> layer_masking(mask_value = 123, dtype = "float64") |>
    layer_identity(dtype = "float64") |> layer_global_average_pooling_1d(dtype = "float64") |>
    layer_repeat_vector(2, dtype = "float64") |> layer_flatten(dtype = "float64") |>
    layer_dense(1, dtype = "float64")
  model <- keras_model(inp, h)
  expect_output(summary(model), "Reshape")
  expect_output(summary(model), "\\(NA, 3, 6\\)")
  x <- rand_array(4, 3, 4)
  check_model_gradients(model, x)
  seqm <- keras_model_sequential(input_shape = c(3, 4)) |> layer_reshape(c(12)) |> layer_repeat_vector(2) |>
    layer_permute(c(2, 1)) |> layer_flatten() |> layer_dense(1)
  xs <- rand_array(32, 3, 4); y <- matrix(rowSums(matrix(xs, 32)), 32)
  seqm |> compile(optimizer = optimizer_adam(0.05), loss = "mse")
  hist <- seqm |> fit(xs, y, epochs = 20, batch_size = 8, verbose = 0)
  expect_lt(tail(hist$metrics$loss, 1), hist$metrics$loss[1] / 2)
  # weightless layers have their empty vars groups in Keras's weights layout
  skip_if_not_installed("hdf5r")
  path <- tempfile(fileext = ".weights.h5")
  save_model_weights(seqm, path)
  expect_identical(h5_group_paths(path),
                   c("layers", "layers/dense", "layers/dense/vars", "layers/dense/vars/0", "layers/dense/vars/1",
                     "layers/flatten", "layers/flatten/vars", "layers/permute", "layers/permute/vars",
                     "layers/repeat_vector", "layers/repeat_vector/vars", "layers/reshape", "layers/reshape/vars",
                     "vars"))
  other <- keras_model_sequential(input_shape = c(3, 4)) |> layer_reshape(c(12)) |> layer_repeat_vector(2) |>
    layer_permute(c(2, 1)) |> layer_flatten() |> layer_dense(1)
  load_model_weights(other, path)
  expect_identical(other(xs), seqm(xs))
  # own format, whole model
  p2 <- tempfile(fileext = ".rds")
  save_model(model, p2)
  expect_identical(load_model(p2)(x), model(x))
})

test_that("bad input: sizes that differ, bad target shapes and dims, wrong ranks, each naming the argument", {
  x <- array(1, c(2, 3, 4))
  expect_arg_error(layer_reshape(x, c(5, 2)), "inputs")
  expect_error(layer_reshape(x, c(5, 2)), "12 elements per sample")
  expect_arg_error(layer_reshape(x, c(-1, 5)), "inputs")
  expect_arg_error(layer_reshape(target_shape = c(-1, -1)), "target_shape")
  expect_arg_error(layer_reshape(target_shape = c(2, -3)), "target_shape")
  expect_arg_error(layer_reshape(target_shape = c(2.5)), "target_shape")
  expect_arg_error(layer_reshape(target_shape = "a"), "target_shape")
  expect_arg_error(layer_reshape(target_shape = numeric()), "target_shape")
  expect_arg_error(layer_reshape(), "target_shape")
  expect_arg_error(layer_reshape(target_shape = c(5, 2))$compute_output_shape(c(NA, 3, 4)), "input_shape")
  expect_arg_error(layer_reshape(keras_input(shape = c(3, 4)), c(5, 2)), "input_shape")
  expect_arg_error(layer_permute(dims = c(1, 3)), "dims")
  expect_arg_error(layer_permute(dims = c(0, 1)), "dims")
  expect_arg_error(layer_permute(dims = c(1, 1)), "dims")
  expect_arg_error(layer_permute(dims = c(1.5, 2)), "dims")
  expect_arg_error(layer_permute(dims = NA), "dims")
  expect_arg_error(layer_permute(), "dims")
  expect_arg_error(layer_permute(x, c(1, 2, 3)), "inputs")
  expect_arg_error(layer_permute(dims = c(2, 1))$compute_output_shape(c(NA, 3)), "input_shape")
  expect_arg_error(layer_repeat_vector(n = 0), "n")
  expect_arg_error(layer_repeat_vector(n = 1.5), "n")
  expect_arg_error(layer_repeat_vector(n = NA), "n")
  expect_arg_error(layer_repeat_vector(), "n")
  expect_arg_error(layer_repeat_vector(x, 2), "inputs")
  expect_arg_error(layer_repeat_vector(n = 2)$compute_output_shape(c(NA, 3, 4)), "input_shape")
  expect_arg_error(layer_repeat_vector(matrix(NA_real_, 2, 2), 2), "inputs")
  expect_arg_error(layer_repeat_vector(n = 2)(matrix(1, 2, 3), mask = c(TRUE, FALSE, TRUE)), "mask")
  expect_arg_error(layer_masking(mask_value = "a"), "mask_value")
  expect_arg_error(layer_masking(mask_value = NA), "mask_value")
  expect_arg_error(layer_masking(mask_value = c(1, 2)), "mask_value")
  expect_arg_error(layer_masking(1:3), "inputs")
  expect_arg_error(layer_identity("a"), "inputs")
  expect_arg_error(backprop(layer_reshape(target_shape = 12), x, grad_output = array(1, c(2, 3, 4))), "grad_output")
  expect_arg_error(backprop(layer_permute(dims = c(2, 1)), x, grad_output = x), "grad_output")
  expect_error(layer_identity(foo = 1), "`foo`")
})

# layer_rms_normalization() and layer_unit_normalization(): plain-R
# references over one and several axes, float32 rounding, gradients by
# finite differences, thread-count determinism, configs, masks, weights
# files, training and bad input.

# Normalization of x over `axes` (1-based) from the definitions.
ref_rms_norm <- function(x, axes, scale = NULL, epsilon = 1e-6) {
  keep <- setdiff(seq_along(dim(x)), axes)
  ms <- apply(x^2, keep, mean)
  y <- sweep(x, keep, 1 / sqrt(ms + epsilon), "*")
  if (!is.null(scale)) y <- sweep(y, axes, scale, "*")
  y
}
ref_unit_norm <- function(x, axes) {
  keep <- setdiff(seq_along(dim(x)), axes)
  if (!length(keep)) return(x * min(1 / sqrt(sum(x^2)), 1e12))
  ss <- apply(x^2, keep, sum)
  sweep(x, keep, pmin(1 / sqrt(ss), 1e12), "*")
}

test_that("RMS normalization matches the plain-R reference over one or several axes", {
  set.seed(81)
  x <- rand_array(3, 4, 5) * 3
  for (axis in list(-1, 3, 2, c(2, 3), c(-1, -2), c(2, 4))) {
    xx <- if (any(axis == 4)) rand_array(2, 3, 2, 4) else x
    rms <- layer_rms_normalization(axis = axis, epsilon = 1e-3, dtype = "float64")
    rms(xx)
    axes <- sort(ifelse(axis < 0, length(dim(xx)) + 1 + axis, axis))
    scale <- array(rnorm(prod(dim(xx)[axes])), dim(xx)[axes])
    set_weights(rms, list(scale))
    expect_identical(dim(get_weights(rms)[[1]]), dim(xx)[axes])
    expect_lt(rel_err(rms(xx), ref_rms_norm(xx, axes, scale, 1e-3)), 1e-13, label = paste(axis, collapse = ","))
  }
  y32 <- layer_rms_normalization()(x)
  expect_identical(y32, multihead:::round_float32(y32))
  expect_lt(max(abs(y32 - ref_rms_norm(x, 3))), 1e-6)
  # Keras's documented property: with the default scale, mean(y^2) = ms / (ms + eps)
  m <- matrix(c(3, 4, 0, 0), 1)
  expect_equal(as.vector(layer_rms_normalization(dtype = "float64")(m)), c(3, 4, 0, 0) / sqrt(25 / 4 + 1e-6))
})

test_that("unit normalization matches the plain-R reference, zero rows stay zero", {
  set.seed(82)
  x <- rand_array(3, 4, 5)
  for (axis in list(-1, 2, c(2, 3), 1, c(1, 2, 3))) {
    axes <- sort(ifelse(axis < 0, 3 + 1 + axis, axis))
    got <- layer_unit_normalization(axis = axis, dtype = "float64")(x)
    expect_lt(rel_err(got, ref_unit_norm(x, axes)), 1e-14, label = paste(axis, collapse = ","))
  }
  d <- matrix(0:5, 2, 3, byrow = TRUE)
  expect_equal(rowSums(layer_unit_normalization(d)^2), c(1, 1), tolerance = 1e-6)  # Keras's example
  z <- rbind(0, c(1e-30, 0, 0))
  expect_identical(layer_unit_normalization(z, dtype = "float64")[1, ], c(0, 0, 0))
  expect_equal(layer_unit_normalization(z, dtype = "float64")[2, ], c(1e-18, 0, 0))     # capped at 1e12
  y32 <- layer_unit_normalization()(x)
  expect_identical(y32, multihead:::round_float32(y32))
})

test_that("gradients match finite differences", {
  set.seed(83)
  x <- rand_array(2, 3, 4)
  for (axis in list(-1, 2, c(2, 3))) {
    rms <- layer_rms_normalization(axis = axis, epsilon = 0.01, dtype = "float64")
    rms(x)
    set_weights(rms, list(array(rnorm(length(get_weights(rms)[[1]])), dim(get_weights(rms)[[1]]))))
    check_layer_gradients(rms, x)
    check_layer_gradients(layer_unit_normalization(axis = axis, dtype = "float64"), x)
  }
  check_layer_gradients(layer_unit_normalization(axis = 1, dtype = "float64"), x)
  # where the cap binds the factor is a constant: dx = dy * 1e12
  z <- rbind(0, c(1, 2))
  g <- backprop(layer_unit_normalization(dtype = "float64"), z, grad_output = matrix(1, 2, 2))$grads$inputs
  expect_equal(g[1, ], c(1e12, 1e12))
})

test_that("identical with 1 and 2 threads", {
  set.seed(84)
  x <- rand_array(64, 100, 48)
  run <- function(threads, ctor, ...) {
    old <- set_num_threads(threads)
    on.exit(set_num_threads(old))
    layer <- ctor(name = "n", ...)
    y <- layer(x)
    backprop(layer, x, grad_output = array(cos(seq_along(y)), dim(y)))
  }
  for (ctor in list(layer_rms_normalization, layer_unit_normalization)) {
    expect_identical(run(1, ctor), run(2, ctor))
    expect_identical(run(1, ctor, axis = c(2, 3), dtype = "float64"), run(2, ctor, axis = c(2, 3), dtype = "float64"))
  }
})

test_that("configs, masks, symbolic use, weights file and training", {
  rms <- layer_rms_normalization(axis = c(-1, -2), epsilon = 1e-5, name = "rms")
  expect_identical(get_config(rms), structure(list(name = "rms", trainable = TRUE, dtype = "float32",
                                                   axis = c(-1L, -2L), epsilon = 1e-5),
                                              class_name = "RMSNormalization"))
  expect_config_round_trip(rms)
  un <- layer_unit_normalization(axis = 2, name = "un")
  expect_identical(names(get_config(un)), c("name", "trainable", "dtype", "axis"))
  expect_config_round_trip(un)
  expect_s3_class(layer_rms_normalization(NULL), "RMSNormalization")
  expect_match(layer_unit_normalization()$name, "^unit_normalization(_[0-9]+)?$")
  expect_match(layer_rms_normalization()$name, "^rms_normalization(_[0-9]+)?$")
  expect_output(print(rms), "<RMSNormalization \"rms\": axis=-1,-2, epsilon=1e-05", fixed = TRUE)
  m <- matrix(c(TRUE, FALSE), 2, 3)
  st <- function(l) layer_protocol(l)$forward(layer_state(l), array(1, c(2, 3, 4)), list(), FALSE, m)$mask
  expect_null(st(layer_rms_normalization()))                    # Keras's RMSNormalization drops masks
  expect_identical(st(layer_unit_normalization()), m)            # UnitNormalization passes them
  inp <- keras_input(shape = c(NA, 6))
  expect_identical(layer_rms_normalization(inp)$shape, c(NA, NA, 6L))
  expect_identical(layer_unit_normalization(inp, axis = c(2, 3))$shape, c(NA, NA, 6L))
  out <- inp |> layer_rms_normalization(name = "r") |> layer_global_average_pooling_1d()
  model <- keras_model(inp, out)
  set_weights(model, list(seq(0.5, 3, by = 0.5)))
  path <- tempfile(fileext = ".weights.h5")
  save_model_weights(model, path)
  f <- hdf5r::H5File$new(path, mode = "r")
  expect_equal(f[["layers/rms_normalization/vars/0"]][], seq(0.5, 3, by = 0.5))
  f$close_all()
  model2 <- keras_model(i2 <- keras_input(shape = c(NA, 6)),
                        i2 |> layer_rms_normalization() |> layer_global_average_pooling_1d())
  load_model_weights(model2, path)
  expect_identical(get_weights(model2), get_weights(model))
  # training: the scale learns to fit targets
  set.seed(85)
  x <- rand_array(64, 6)
  target <- sweep(ref_rms_norm(x, 2), 2, c(1, 2, 3, -1, 0.5, 2), "*")
  seqm <- keras_model_sequential(input_shape = 6) |> layer_rms_normalization() |> layer_unit_normalization()
  compile(seqm, optimizer = optimizer_adam(0.05), loss = "mse")
  h <- fit(seqm, x, ref_unit_norm(target, 2), epochs = 40, batch_size = 16, verbose = 0, shuffle = FALSE)
  expect_lt(tail(h$metrics$loss, 1), 0.2 * h$metrics$loss[1])
})

test_that("bad arguments and inputs give errors naming the argument", {
  for (bad in list(0, 1.5, NA, "a", c(-1, -1), list())) {
    expect_arg_error(layer_rms_normalization(axis = bad), "axis")
    expect_arg_error(layer_unit_normalization(axis = bad), "axis")
  }
  for (bad in list(-1, NA, "a", c(1, 2), Inf)) expect_arg_error(layer_rms_normalization(epsilon = bad), "epsilon")
  x <- array(1, c(2, 3, 4))
  expect_arg_error(layer_rms_normalization(axis = 4)(x), "inputs")          # beyond the rank
  expect_arg_error(layer_rms_normalization(axis = 1)(x), "inputs")          # the batch axis has no known size
  expect_arg_error(layer_unit_normalization(axis = 4)(x), "inputs")
  expect_arg_error(layer_unit_normalization(axis = -4)(x), "inputs")
  expect_arg_error(layer_unit_normalization(axis = 3)$compute_output_shape(c(NA, 2)), "input_shape")
  rms <- layer_rms_normalization()
  rms(x)
  expect_arg_error(rms(array(1, c(2, 3, 5))), "inputs")
  expect_arg_error(rms(array(Inf, c(2, 3, 4))), "inputs")
  expect_arg_error(backprop(rms, x, grad_output = array(1, c(2, 3))), "grad_output")
  expect_arg_error(layer_rms_normalization()$build(c(NA, 3, NA)), "input_shape")
  expect_arg_error(layer_unit_normalization()(x, mask = matrix(TRUE, 2, 2)), "mask")
  expect_error(layer_rms_normalization(center = TRUE), "`center`")
})

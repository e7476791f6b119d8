# save_model() / load_model() and the own weights format (R/model-save.R).

# TRUE when `x` is plain data all the way down: no functions, environments
# or external pointers.
is_plain_data <- function(x) {
  if (is.function(x) || is.environment(x) || typeof(x) %in% c("externalptr", "closure", "S4")) return(FALSE)
  if (!is.null(attributes(x)) && !all(vapply(attributes(x), is_plain_data, logical(1)))) return(FALSE)
  if (is.list(x)) return(all(vapply(x, is_plain_data, logical(1))))
  TRUE
}

# Functional: attention with dropout (so the dropout stream must be
# restored), a residual, layer normalization and a dense head.
attention_regressor <- function() {
  x <- keras_input(shape = c(4, 6))
  y <- layer_multi_head_attention(num_heads = 2, key_dim = 3, dropout = 0.2, use_gate = TRUE)(x, x)
  y <- layer_layer_normalization(y + x)
  y <- layer_dropout(y, rate = 0.1)
  keras_model(x, layer_dense(y, 2))
}

test_that("save_model()/load_model() round trip a functional model: config, weights, predictions", {
  set.seed(11)
  model <- attention_regressor()
  path <- tempfile(fileext = ".rds")
  expect_identical(save_model(model, path), model)  # keras3 returns the model
  loaded <- load_model(path)
  expect_s3_class(loaded, "Functional")
  # from_config() names elementwise ops anew ("add_1"); everything else is identical
  drop_op_names <- function(cfg) {
    cfg$nodes <- lapply(cfg$nodes, function(n) { n$name <- NULL; n })
    cfg
  }
  expect_identical(drop_op_names(get_config(loaded)), drop_op_names(get_config(model)))
  expect_identical(get_weights(loaded), get_weights(model))
  x <- array(rnorm(3 * 4 * 6), c(3, 4, 6))
  expect_identical(loaded(x), model(x))
  expect_false(loaded$compiled)
  # the file is plain data, versioned
  rec <- readRDS(path)
  expect_true(is_plain_data(rec))
  expect_identical(rec[c("format", "format_version", "class_name")],
                   list(format = "multihead.model", format_version = 1L, class_name = "Functional"))
  expect_identical(names(rec$layers[[2]]$weights)[1:2],
                   c(sprintf("%s/query/kernel", model$layers[[2]]$name), sprintf("%s/query/bias", model$layers[[2]]$name)))
})

test_that("sequential and nested models round trip; unbuilt ones too", {
  set.seed(12)
  seq <- keras_model_sequential(input_shape = c(5, 4)) |>
    layer_multi_head_attention(num_heads = 2, key_dim = 2) |>
    layer_global_average_pooling_1d() |>
    layer_dense(3, activation = "relu")
  x <- keras_input(shape = c(5, 4))
  outer <- keras_model(x, layer_dense(seq(x), 1))
  path <- tempfile(fileext = ".rds")
  save_model(outer, path)
  loaded <- load_model(path)
  xs <- array(rnorm(2 * 5 * 4), c(2, 5, 4))
  expect_identical(loaded(xs), outer(xs))
  expect_s3_class(loaded$layers[[2]], "Sequential")
  unbuilt <- keras_model_sequential() |> layer_dense(2)
  save_model(unbuilt, path, overwrite = TRUE)
  again <- load_model(path)
  expect_false(again$built)
  expect_identical(dim(again(matrix(1, 2, 3))), c(2L, 2L))
})

test_that("a compiled model continues training exactly as the unsaved twin", {
  set.seed(13)
  model <- attention_regressor()
  sched <- learning_rate_schedule_exponential_decay(0.01, decay_steps = 2, decay_rate = 0.5)
  model |> compile(optimizer = optimizer_adam(learning_rate = sched, amsgrad = TRUE), loss = "mse",
                   metrics = list("mae", metric_mean_squared_error(name = "my_mse")))
  x <- array(rnorm(6 * 4 * 6), c(6, 4, 6))
  y <- array(rnorm(6 * 4 * 2), c(6, 4, 2))
  fit(model, x, y, epochs = 1, batch_size = 3, verbose = 0)   # 2 steps: moments, iterations, dropout counters
  path <- tempfile(fileext = ".rds")
  save_model(model, path)
  rec <- readRDS(path)
  expect_true(is_plain_data(rec))
  expect_identical(rec$compile$optimizer$iterations, 2L)
  expect_setequal(names(rec$compile$optimizer$slots), c("momentum", "velocity", "velocity_hat"))
  loaded <- load_model(path)
  expect_true(loaded$compiled)
  expect_identical(loaded$optimizer$iterations, 2L)
  set.seed(99)
  h1 <- fit(model, x, y, epochs = 1, batch_size = 3, verbose = 0)
  set.seed(99)
  h2 <- fit(loaded, x, y, epochs = 1, batch_size = 3, verbose = 0)
  expect_identical(get_weights(loaded), get_weights(model))
  expect_identical(h2$metrics, h1$metrics)
  expect_identical(loaded$optimizer$iterations, 4L)
  # compile = FALSE drops the compile state
  expect_false(load_model(path, compile = FALSE)$compiled)
})

test_that("files of a newer format version, and files that are not ours, are clear errors", {
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(2)
  path <- tempfile(fileext = ".rds")
  save_model(model, path)
  rec <- readRDS(path)
  rec$format_version <- 2L
  future <- tempfile(fileext = ".rds")
  saveRDS(rec, future)
  expect_error(load_model(future),
               "written in multihead's multihead.model format version 2 .* reads format version 1 only",
               class = "multihead_error_file_version")
  text <- tempfile(fileext = ".rds")
  writeLines("not a model", text)
  expect_error(load_model(text), "is not a multihead model file", class = "multihead_error_file")
  other <- tempfile(fileext = ".rds")
  saveRDS(list(a = 1), other)
  expect_error(load_model(other), "is not a multihead model file", class = "multihead_error_file")
  wpath <- tempfile(fileext = ".rds")
  save_model_weights(model, wpath)
  expect_error(load_model(wpath), "is not a multihead model file")   # a weights file is not a model
  expect_error(load_model(tempfile()), "`model` must be the path of an existing file")
})

test_that("paths: overwrite, Keras archives and the arguments are checked", {
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(2)
  path <- tempfile(fileext = ".rds")
  save_model(model, path)
  expect_error(save_model(model, path), sprintf("`filepath` must be .*overwrite = TRUE; got \"%s\", which exists",
                                               gsub("([.\\\\])", "\\\\\\1", path)),
               class = "multihead_error_argument")
  expect_error(save_model_weights(model, path), "overwrite = TRUE")
  set_weights(model, lapply(get_weights(model), function(w) w + 1))
  save_model(model, path, overwrite = TRUE)
  expect_identical(get_weights(load_model(path)), get_weights(model))
  expect_error(save_model(model, "m.h5"), "not a legacy Keras HDF5 file")
  expect_error(save_model(model, "m.weights.h5"), "not a Keras weights file .*save_model_weights")
  expect_error(load_model("m.keras"), "`model` must be the path of an existing file")
  expect_error(save_model_weights(model, "w.keras"), "not a Keras model archive")
  expect_error(load_model_weights(model, "w.h5"), "not a legacy Keras HDF5 file")
  expect_error(save_model(get_layer(model, index = 1), path), "`model` must be a model")
  expect_error(save_model(model, file.path(tempfile(), "x.rds")), "a path in an existing directory")
  expect_error(load_model(3), "`model` must be the path of a file to read")
  expect_error(load_model_weights(model, path, skip_mismatch = NA), "`skip_mismatch` must be TRUE or FALSE")
  expect_error(save_model_weights(keras_model_sequential() |> layer_dense(2), tempfile()), "is not built yet")
})

test_that("own weights format: round trip, model files, mismatches, skip_mismatch, versions", {
  set.seed(14)
  make <- function(units = 2) {
    keras_model_sequential(input_shape = c(3, 4)) |>
      layer_multi_head_attention(num_heads = 2, key_dim = 2) |>
      layer_dense(units)
  }
  a <- make()
  b <- make()
  path <- tempfile(fileext = ".mhw")
  expect_identical(save_model_weights(a, path), path)
  rec <- readRDS(path)
  expect_true(is_plain_data(rec))
  expect_identical(rec[c("format", "format_version")], list(format = "multihead.weights", format_version = 1L))
  expect_identical(load_model_weights(b, path), b)
  expect_identical(get_weights(b), get_weights(a))
  # a model file holds weights too
  c2 <- make()
  mpath <- tempfile(fileext = ".rds")
  save_model(a, mpath)
  load_model_weights(c2, mpath)
  expect_identical(get_weights(c2), get_weights(a))
  # mismatches
  d <- make(units = 3)
  before <- get_weights(d)
  expect_error(load_model_weights(d, path),
               "weight \"dense[_0-9]*/kernel\" of layer \"dense[_0-9]*\" has shape \\(4, 3\\) but the file's \"dense[_0-9]*/kernel\" \\(layers\\[\\[2\\]\\]\\) has shape \\(4, 2\\)",
               class = "multihead_error_weights")
  expect_identical(get_weights(d), before)
  expect_warning(load_model_weights(d, path, skip_mismatch = TRUE), "Skipping layer \"dense[_0-9]*\"")
  expect_identical(get_weights(d)[1:8], get_weights(a)[1:8])
  expect_identical(get_weights(d)[9:10], before[9:10])
  other <- keras_model_sequential(input_shape = c(3, 4)) |> layer_dense(2)
  expect_error(load_model_weights(other, path), "holds weights for 2 layers but model .* has 1 layers")
  # a layer with one weight, and values that are not finite
  nb <- function(units) keras_model_sequential(input_shape = 4) |> layer_dense(units, use_bias = FALSE)
  one <- tempfile(fileext = ".rds")
  save_model_weights(nb(2), one)
  expect_error(load_model_weights(nb(3), one),
               "has shape \\(4, 3\\) but the file's \"dense[_0-9]*/kernel\" \\(layers\\[\\[1\\]\\]\\) has shape \\(4, 2\\)")
  bad <- readRDS(one)
  bad$layers[[1]]$weights[[1]][2, 1] <- NaN
  saveRDS(bad, one)
  expect_error(load_model_weights(nb(2), one), "the file's \"dense[_0-9]*/kernel\" \\(layers\\[\\[1\\]\\]\\) .*contains NA, NaN or Inf")
  # newer version
  rec$format_version <- 3L
  saveRDS(rec, path)
  expect_error(load_model_weights(b, path), "format version 3 .* reads format version 1 only",
               class = "multihead_error_file_version")
})

test_that("records that are not plain data are refused, naming the place", {
  bad <- list(format = "multihead.model", layers = list(list(name = "a", f = function() 1)))
  expect_error(multihead:::write_rds_file(bad, tempfile()),
               "Cannot save: `record\\$layers\\[\\[1\\]\\]\\$f` is a function", class = "multihead_error_unsupported")
  bad2 <- list(x = structure(1, extra = new.env()))
  expect_error(multihead:::write_rds_file(bad2, tempfile()), "`attr\\(record\\$x, \"extra\"\\)` is an environment")
  expect_null(multihead:::first_non_plain(list(a = 1, b = list(structure(list(), class_name = "Dense")))))
})

test_that("a cached attention plan without the fields this version adds (older saved layers) is rebuilt", {
  set.seed(7)
  x <- array(rnorm(2 * 5 * 8), c(2, 5, 8))
  mha <- layer_multi_head_attention(num_heads = 2, key_dim = 2)
  out <- mha(x, x)
  self <- multihead:::layer_self(mha)
  old_plan <- self$plan
  old_plan[c("core_dims", "core_sizes", "core_max_size")] <- NULL
  self$plan <- old_plan
  expect_identical(mha(x, x), out)
  expect_identical(self$plan$core_dims, c(2L, 5L, 5L, 8L, 8L, 8L, 2L, 2L, 2L, 8L))
})

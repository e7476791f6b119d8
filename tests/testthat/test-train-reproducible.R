# set.seed() before building and fitting reproduces a run exactly (weights,
# shuffling, dropout, losses), with one thread and with two.

# Builds, compiles and fits a small transformer-style model with dropout
# (attention dropout and a dropout layer), shuffling and validation under
# set.seed(seed) with `threads` threads; returns its weights and history.
reproducible_run <- function(seed, threads) {
  old <- set_num_threads(threads)
  on.exit(set_num_threads(old))
  set.seed(seed)
  n <- 48
  ids <- matrix(sample(0:9, n * 6, replace = TRUE), n, 6)
  y <- as.numeric(ids[, 1] > ids[, 6])
  inp <- keras_input(shape = 6, dtype = "int32")
  h <- layer_embedding(inp, input_dim = 10, output_dim = 8)
  a <- layer_multi_head_attention(h, num_heads = 2, key_dim = 4, dropout = 0.2)
  out <- layer_layer_normalization(h + a) |> layer_global_average_pooling_1d() |> layer_dropout(0.3) |>
    layer_dense(1, activation = "sigmoid")
  model <- keras_model(inp, out)
  model |> compile(optimizer = "adam", loss = "binary_crossentropy", metrics = "accuracy")
  h <- fit(model, ids, y, epochs = 2, batch_size = 8, validation_split = 0.25, verbose = 0)
  list(weights = get_weights(model), history = h$metrics)
}

test_that("set.seed() reproduces a fit bitwise, with 1 and with 2 threads", {
  a <- reproducible_run(51, threads = 1)
  b <- reproducible_run(51, threads = 1)
  c2 <- reproducible_run(51, threads = 2)
  expect_identical(b$weights, a$weights)
  expect_identical(b$history, a$history)
  expect_identical(c2$weights, a$weights)
  expect_identical(c2$history, a$history)
  other <- reproducible_run(52, threads = 2)
  expect_false(identical(other$weights, a$weights))
})

test_that("shuffling follows R's seed; dropout masks follow the layers' seeds and call counters", {
  set.seed(53)
  d <- regression_data(32)
  build <- function() {
    model <- keras_model_sequential(input_shape = 3) |> layer_dense(8) |> layer_dropout(0.5) |> layer_dense(1)
    model |> compile(optimizer = "sgd", loss = "mse")
    model
  }
  run <- function(seed, shuffle, model = NULL) {
    set.seed(seed)
    if (is.null(model)) model <- build()
    fit(model, d$x, d$y, epochs = 1, batch_size = 8, shuffle = shuffle, verbose = 0)
    get_weights(model)
  }
  expect_identical(run(1, TRUE), run(1, TRUE))
  expect_false(identical(run(1, TRUE), run(2, TRUE)))
  # same weights, no shuffling, same R seed: the dropout layer's call counter has moved on
  set.seed(1)
  model <- build()
  w0 <- get_weights(model)
  first <- run(3, FALSE, model)
  set_weights(model, w0)
  expect_false(identical(run(3, FALSE, model), first))
})

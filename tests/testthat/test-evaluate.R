# evaluate(): the loss and metrics against plain-R formulas, independence
# from the batch size, sample weights and weighted metrics, regularization
# losses included, "accuracy" resolved from the shapes, argument errors.

test_that("evaluate() returns the named loss and metrics of the whole data", {
  set.seed(41)
  d <- regression_data(50)
  model <- dense64_model(units = 2)
  y <- cbind(d$y, 2 * d$y)
  model |> compile(optimizer = "sgd", loss = "mae", metrics = c("mse", "mae"))
  res <- evaluate(model, d$x, y, batch_size = 7, verbose = 0)
  p <- predict(model, d$x)
  expect_identical(names(res), c("loss", "mse", "mae"))
  expect_equal(unname(res), c(mean(abs(p - y)), mean((p - y)^2), mean(abs(p - y))), tolerance = 1e-12)
  # the batch size does not matter (batch losses are weighted by batch size)
  expect_equal(evaluate(model, d$x, y, batch_size = 50, verbose = 0), res, tolerance = 1e-12)
  expect_equal(evaluate(model, d$x, y, batch_size = 1, verbose = 0), res, tolerance = 1e-12)
})

test_that("\"accuracy\" becomes binary, sparse or categorical accuracy from the shapes", {
  set.seed(42)
  x <- matrix(rnorm(40 * 4), 40)
  binary <- keras_model_sequential(input_shape = 4) |> layer_dense(1, activation = "sigmoid", dtype = "float64")
  binary |> compile(optimizer = "sgd", loss = "binary_crossentropy", metrics = "accuracy")
  yb <- matrix(rbinom(40, 1, 0.5), 40)
  res <- evaluate(binary, x, yb, verbose = 0)
  p <- predict(binary, x)
  expect_equal(unname(res), c(mean(-(yb * log(p) + (1 - yb) * log(1 - p))), mean((p > 0.5) == yb)),
               tolerance = 1e-10)

  multi <- keras_model_sequential(input_shape = 4) |> layer_dense(3, activation = "softmax", dtype = "float64")
  labels <- sample(0:2, 40, replace = TRUE)
  multi |> compile(optimizer = "sgd", loss = "sparse_categorical_crossentropy", metrics = "accuracy")
  p <- predict(multi, x)
  expect_equal(unname(evaluate(multi, x, labels, verbose = 0)),
               c(mean(-log(p[cbind(1:40, labels + 1)])), mean(max.col(p) - 1 == labels)), tolerance = 1e-10)
  multi |> compile(optimizer = "sgd", loss = "categorical_crossentropy", metrics = "acc")
  onehot <- diag(3)[labels + 1, ]
  res <- evaluate(multi, x, onehot, verbose = 0)
  expect_identical(names(res), c("loss", "acc"))
  expect_equal(unname(res[2]), mean(max.col(p) - 1 == labels))
})

test_that("sample_weight weights the loss and weighted_metrics, not metrics", {
  set.seed(43)
  d <- regression_data(12)
  model <- dense64_model()
  model |> compile(optimizer = "sgd", loss = "mse", metrics = "mae", weighted_metrics = c("mae", "mse"))
  sw <- c(rep(0, 6), rep(2, 6))
  res <- evaluate(model, d$x, d$y, sample_weight = sw, batch_size = 5, verbose = 0)
  expect_identical(names(res), c("loss", "mae", "weighted_mae", "mse"))
  e <- predict(model, d$x) - d$y
  expect_equal(unname(res), c(sum(sw * e^2) / 12, mean(abs(e)), sum(sw * abs(e)) / sum(sw), sum(sw * e^2) / sum(sw)),
               tolerance = 1e-12)
})

test_that("the evaluated loss includes regularization losses; dropout is inactive", {
  set.seed(44)
  d <- regression_data(10)
  model <- keras_model_sequential(input_shape = 3) |>
    layer_dense(4, kernel_regularizer = regularizer_l2(0.1), activity_regularizer = regularizer_l1(0.01),
                dtype = "float64", name = "h") |>
    layer_dropout(0.5) |>
    layer_dense(1, dtype = "float64")
  model |> compile(optimizer = "sgd", loss = "mse")
  k <- get_weights(model)[[1]]
  b <- get_weights(model)[[2]]
  hidden <- d$x %*% k + rep(b, each = 10)
  expected <- mean((predict(model, d$x) - d$y)^2) + 0.1 * sum(k^2) + 0.01 * sum(abs(hidden)) / 10
  expect_equal(unname(evaluate(model, d$x, d$y, batch_size = 10, verbose = 0)), expected, tolerance = 1e-12)
})

test_that("evaluate() errors name the argument", {
  set.seed(45)
  d <- regression_data(10)
  model <- dense64_model()
  expect_error(evaluate(model, d$x, d$y), "must be compiled before evaluate\\(\\)")
  model |> compile(optimizer = "sgd", loss = "mse")
  expect_arg_error(evaluate(model, d$x), "y")
  expect_arg_error(evaluate(model, d$x, d$y[1:3, , drop = FALSE]), "y")
  expect_arg_error(evaluate(model, d$x, d$y, batch_size = 1.5), "batch_size")
  expect_arg_error(evaluate(model, d$x, d$y, verbose = "yes"), "verbose")
  expect_arg_error(evaluate(model, d$x, d$y, sample_weight = "a"), "sample_weight")
  expect_arg_error(evaluate(model, d$x, d$y, steps = 0), "steps")
  expect_arg_error(evaluate(model, d$x, d$y, epochs = 3), "...")
  expect_arg_error(evaluate(model, d$x[, 1:2], d$y), "x")
  expect_error(evaluate(model, d$x, matrix(0, 10, 2), verbose = 0), "`y` does not fit the loss \"mse\"")
  expect_error(evaluate(model, d$x, d$y * NA), "`y` must be finite")
})

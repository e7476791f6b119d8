# fit()'s arguments beyond x / y / epochs (steps_per_epoch, validation_steps,
# validation_batch_size, validation_freq, class_weight, initial_epoch,
# shuffle = "batch"), compile(jit_compile =, loss_weights =), and data as
# keras3 users give it (generator functions, data frames, named lists,
# vectors for inputs of shape (NA, 1)) to fit(), evaluate() and predict().
# Each effect is checked exactly against an equivalent run on plain arrays.

sgd_model <- function(seed = 1, p = 3, units = 1) {
  set.seed(seed)
  m <- dense64_model(p, units)
  m |> compile(optimizer = optimizer_sgd(learning_rate = 0.05), loss = "mse", metrics = "mae")
  m
}

test_that("steps_per_epoch with arrays: an epoch takes the next batches of the same pass", {
  set.seed(20)
  d <- regression_data(40)
  a <- sgd_model()
  seen <- integer()
  cb <- callback_lambda(on_batch_end = function(batch, logs) seen[length(seen) + 1L] <<- batch)
  h <- fit(a, d$x, d$y, batch_size = 8, steps_per_epoch = 2, epochs = 2, shuffle = FALSE, verbose = 0,
           callbacks = cb)
  expect_identical(seen, c(1L, 2L, 1L, 2L))
  expect_identical(h$params$steps, 2L)
  # epoch 2 continued with batches 3 and 4: the same as one epoch over samples 1..32
  b <- sgd_model()
  fit(b, d$x[1:32, ], d$y[1:32, , drop = FALSE], batch_size = 8, epochs = 1, shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(a), get_weights(b))
  # the third epoch finds one batch left: it ends early with a warning, and the pass is used up
  a <- sgd_model()
  seen <- integer()
  expect_warning(h <- fit(a, d$x, d$y, batch_size = 8, steps_per_epoch = 2, epochs = 3, shuffle = FALSE,
                          verbose = 0, callbacks = cb),
                 "ran out in epoch 3 after 1 of the 2 batches asked by `steps_per_epoch`")
  expect_identical(seen, c(1L, 2L, 1L, 2L, 1L))
  b <- sgd_model()
  fit(b, d$x, d$y, batch_size = 8, epochs = 1, shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(a), get_weights(b))
  expect_length(h$metrics$loss, 3L)
  # the epoch's logs are the means over its own batches
  expect_equal(h$metrics$loss[3], {
    c2 <- sgd_model()
    fit(c2, d$x[1:32, ], d$y[1:32, , drop = FALSE], batch_size = 8, epochs = 1, shuffle = FALSE, verbose = 0)
    mean((predict(c2, d$x[33:40, ], verbose = 0) - d$y[33:40, ])^2)
  }, tolerance = 1e-12)
  # a fourth epoch starts a new pass
  a <- sgd_model()
  expect_warning(fit(a, d$x, d$y, batch_size = 8, steps_per_epoch = 2, epochs = 4, shuffle = FALSE, verbose = 0),
                 "ran out")
  b <- sgd_model()
  fit(b, d$x, d$y, batch_size = 8, epochs = 1, shuffle = FALSE, verbose = 0)
  fit(b, d$x[1:16, ], d$y[1:16, , drop = FALSE], batch_size = 8, epochs = 1, shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(a), get_weights(b))
})

test_that("batch_size = NULL is 32, or the samples divided by steps_per_epoch", {
  set.seed(21)
  d <- regression_data(40)
  a <- sgd_model()
  fit(a, d$x, d$y, steps_per_epoch = 4, epochs = 1, shuffle = FALSE, verbose = 0)   # batches of 10
  b <- sgd_model()
  fit(b, d$x, d$y, batch_size = 10, epochs = 1, shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(a), get_weights(b))
  a <- sgd_model()
  h <- fit(a, d$x, d$y, epochs = 1, shuffle = FALSE, verbose = 0)
  expect_identical(h$params$steps, 2L)   # 40 samples in batches of 32
})

test_that("shuffle = \"batch\" keeps the batches and shuffles the samples within each", {
  set.seed(22)
  d <- regression_data(30)
  src <- multihead:::new_array_source(list(n = 30L), 8L, "batch", NULL)
  set.seed(5)
  got <- multihead:::array_pass_batches(src)
  set.seed(5)
  expected <- lapply(list(1:8, 9:16, 17:24, 25:30), function(b) b[sample.int(length(b))])
  expect_identical(got, expected)
  # within-batch order only changes the order of sums: same training up to rounding
  a <- sgd_model()
  fit(a, d$x, d$y, batch_size = 8, epochs = 2, shuffle = "batch", verbose = 0)
  b <- sgd_model()
  fit(b, d$x, d$y, batch_size = 8, epochs = 2, shuffle = FALSE, verbose = 0)
  expect_equal(get_weights(a), get_weights(b), tolerance = 1e-12)
  expect_arg_error(fit(a, d$x, d$y, shuffle = "epoch"), "shuffle")
})

test_that("class_weight equals the sample_weight of each sample's class", {
  set.seed(23)
  n <- 24
  x <- matrix(rnorm(n * 3), n)
  labels <- rep(0:2, length.out = n)
  cw <- c("0" = 1, "1" = 3, "2" = 0.5)
  sw <- unname(cw[as.character(labels)])
  make <- function(loss) {
    set.seed(3)
    m <- keras_model_sequential(input_shape = 3) |> layer_dense(3, activation = "softmax", dtype = "float64")
    m |> compile(optimizer = optimizer_sgd(learning_rate = 0.1), loss = loss, metrics = "accuracy",
                 weighted_metrics = "accuracy")
    m
  }
  val <- list(x[1:6, ], labels[1:6])
  a <- make("sparse_categorical_crossentropy")
  set.seed(9)
  ha <- fit(a, x, labels, batch_size = 5, epochs = 2, class_weight = cw, validation_data = val, verbose = 0)
  b <- make("sparse_categorical_crossentropy")
  set.seed(9)
  hb <- fit(b, x, labels, batch_size = 5, epochs = 2, sample_weight = sw, validation_data = val, verbose = 0)
  expect_identical(get_weights(a), get_weights(b))
  expect_identical(ha$metrics, hb$metrics)
  # validation is not weighted
  expect_equal(ha$metrics$val_loss[2], unname(evaluate(a, val[[1]], val[[2]], verbose = 0)["loss"]),
               tolerance = 1e-12)
  # one-hot targets: the class is the largest entry; a list and an unnamed vector (classes 0, 1, ...)
  onehot <- diag(3)[labels + 1, ]
  a <- make("categorical_crossentropy")
  set.seed(9)
  fit(a, x, onehot, batch_size = 5, epochs = 2, class_weight = list("1" = 3, "2" = 0.5, "0" = 1), verbose = 0)
  b <- make("categorical_crossentropy")
  set.seed(9)
  fit(b, x, onehot, batch_size = 5, epochs = 2, class_weight = c(1, 3, 0.5), verbose = 0)
  c2 <- make("categorical_crossentropy")
  set.seed(9)
  fit(c2, x, onehot, batch_size = 5, epochs = 2, sample_weight = sw, verbose = 0)
  expect_identical(get_weights(a), get_weights(c2))
  expect_identical(get_weights(b), get_weights(c2))
  # classes not named weigh 1; labels of shape (n, 1) are dropped to (n)
  expect_identical(multihead:::class_weight_sample_weights(c("2" = 4), matrix(c(0, 2, 1, 2), 4)),
                   array(c(1, 4, 1, 4), 4))
  # errors name the argument
  m <- make("sparse_categorical_crossentropy")
  expect_arg_error(fit(m, x, labels, class_weight = cw, sample_weight = sw, verbose = 0), "class_weight")
  expect_arg_error(fit(m, x, labels, class_weight = c(a = 1), verbose = 0), "class_weight")
  expect_arg_error(fit(m, x, labels, class_weight = c("0" = -1), verbose = 0), "class_weight")
  expect_arg_error(fit(m, x, labels, class_weight = c("0.5" = 1), verbose = 0), "class_weight")
  expect_arg_error(fit(m, x, labels, class_weight = "a", verbose = 0), "class_weight")
  inp <- keras_input(3)
  two <- keras_model(inp, list(layer_dense(inp, 1), layer_dense(inp, 1)))
  two |> compile(optimizer = "sgd", loss = "mse")
  expect_arg_error(fit(two, x, list(labels, labels), class_weight = cw, verbose = 0), "class_weight")
})

test_that("initial_epoch numbers the epochs in the history, the callbacks and the display", {
  set.seed(24)
  d <- regression_data(16)
  m <- sgd_model()
  epochs <- integer()
  h <- fit(m, d$x, d$y, batch_size = 8, epochs = 5, initial_epoch = 3, verbose = 0,
           callbacks = callback_lambda(on_epoch_end = function(epoch, logs) epochs[length(epochs) + 1L] <<- epoch))
  expect_identical(epochs, 3:5)
  expect_length(h$metrics$loss, 3L)
  expect_identical(h$params$epochs, 5L)
  out <- capture.output(fit(m, d$x, d$y, batch_size = 8, epochs = 4, initial_epoch = 4, verbose = 2))
  expect_identical(out[1], "Epoch 4/4")
  # initial_epoch after epochs: nothing runs
  h <- fit(m, d$x, d$y, epochs = 2, initial_epoch = 3, verbose = 0)
  expect_length(h$metrics, 0L)
})

test_that("validation_steps, validation_batch_size and validation_freq", {
  set.seed(25)
  d <- regression_data(40)
  v <- regression_data(20)
  m <- sgd_model()
  h <- fit(m, d$x, d$y, batch_size = 8, epochs = 1, verbose = 0, validation_data = list(v$x, v$y),
           validation_batch_size = 5, validation_steps = 2)
  # the first 2 batches of 5 validation samples
  expect_identical(h$metrics$val_loss, unname(evaluate(m, v$x[1:10, ], v$y[1:10, , drop = FALSE],
                                                        batch_size = 5, verbose = 0)["loss"]))
  expect_identical(h$metrics$val_mae, unname(evaluate(m, v$x[1:10, ], v$y[1:10, , drop = FALSE],
                                                       batch_size = 5, verbose = 0)["mae"]))
  # validation_batch_size defaults to batch_size; validation restarts at every epoch
  m <- sgd_model()
  val_batches <- integer()
  h <- fit(m, d$x, d$y, batch_size = 8, epochs = 2, verbose = 0, validation_data = list(v$x, v$y),
           validation_steps = 1)
  expect_identical(h$metrics$val_loss[2], unname(evaluate(m, v$x[1:8, ], v$y[1:8, , drop = FALSE],
                                                          verbose = 0)["loss"]))
  expect_warning(fit(m, d$x, d$y, batch_size = 8, epochs = 1, verbose = 0, validation_data = list(v$x, v$y),
                     validation_steps = 4), "ran out in validation after 3 of the 4 batches asked by `validation_steps`")
  # validation_split with validation_steps
  m <- sgd_model()
  h <- fit(m, d$x, d$y, batch_size = 8, epochs = 1, verbose = 0, validation_split = 0.5, validation_steps = 1,
           validation_batch_size = 4)
  expect_identical(h$metrics$val_loss, unname(evaluate(m, d$x[21:24, ], d$y[21:24, , drop = FALSE],
                                                        verbose = 0)["loss"]))
  # validation_freq: every 2nd epoch
  m <- sgd_model()
  h <- fit(m, d$x, d$y, batch_size = 8, epochs = 4, verbose = 0, validation_data = list(v$x, v$y),
           validation_freq = 2)
  expect_identical(is.na(h$metrics$val_loss), c(TRUE, FALSE, TRUE, FALSE))
  expect_arg_error(fit(m, d$x, d$y, validation_steps = 0), "validation_steps")
  expect_arg_error(fit(m, d$x, d$y, validation_batch_size = 1.5), "validation_batch_size")
  expect_arg_error(fit(m, d$x, d$y, validation_freq = "a"), "validation_freq")
})

test_that("a generator function: fit(), evaluate() and predict() as on the same batches of arrays", {
  set.seed(26)
  d <- regression_data(40)
  batches_of <- function(size, weights = NULL) {
    i <- 0
    function() {
      if (i * size >= 40) return(NULL)
      idx <- i * size + seq_len(size)
      i <<- i + 1
      if (is.null(weights)) list(d$x[idx, ], d$y[idx, , drop = FALSE]) else
        list(d$x[idx, ], d$y[idx, , drop = FALSE], weights[idx])
    }
  }
  # without steps_per_epoch an epoch runs until NULL; the next epoch calls it again
  calls <- 0
  gen <- batches_of(8)
  restart <- function() {
    calls <<- calls + 1
    b <- gen()
    if (is.null(b)) gen <<- batches_of(8)
    b
  }
  a <- sgd_model()
  h <- fit(a, restart, epochs = 2, verbose = 0)
  expect_identical(calls, 12)   # 5 batches and a NULL per epoch
  expect_true(is.na(h$params$steps))
  b <- sgd_model()
  hb <- fit(b, d$x, d$y, batch_size = 8, epochs = 2, shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(a), get_weights(b))
  expect_identical(h$metrics, hb$metrics)
  # with steps_per_epoch the epochs continue through the generator; sample weights as a third element
  w <- runif(40)
  a <- sgd_model()
  h <- fit(a, batches_of(8, w), steps_per_epoch = 2, epochs = 2, verbose = 0)
  expect_identical(h$params$steps, 2L)
  b <- sgd_model()
  fit(b, d$x[1:32, ], d$y[1:32, , drop = FALSE], sample_weight = w[1:32], batch_size = 8, epochs = 1,
      shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(a), get_weights(b))
  # running out with steps_per_epoch: a warning, and training stops
  a <- sgd_model()
  expect_warning(h <- fit(a, batches_of(8), steps_per_epoch = 3, epochs = 5, verbose = 0),
                 "ran out in epoch 2 after 2 of the 3 batches")
  expect_length(h$metrics$loss, 2L)
  # validation from a generator
  a <- sgd_model()
  h <- fit(a, d$x, d$y, batch_size = 8, epochs = 1, shuffle = FALSE, verbose = 0,
           validation_data = batches_of(10), validation_steps = 2)
  expect_identical(h$metrics$val_loss, unname(evaluate(a, d$x[1:20, ], d$y[1:20, , drop = FALSE],
                                                        batch_size = 10, verbose = 0)["loss"]))
  # evaluate() and predict()
  expect_identical(evaluate(a, batches_of(8), verbose = 0), evaluate(a, d$x, d$y, batch_size = 8, verbose = 0))
  expect_identical(evaluate(a, batches_of(8), steps = 2, verbose = 0),
                   evaluate(a, d$x[1:16, ], d$y[1:16, , drop = FALSE], batch_size = 8, verbose = 0))
  expect_identical(predict(a, batches_of(8), verbose = 0), predict(a, d$x, verbose = 0))
  xs <- function() { k <- 0; function() { k <<- k + 1; if (k > 2) NULL else d$x[(k - 1) * 5 + 1:5, ] } }
  expect_identical(predict(a, xs(), verbose = 0), predict(a, d$x[1:10, ], verbose = 0))
  expect_identical(predict(a, batches_of(8), steps = 1, verbose = 0), predict(a, d$x[1:8, ], verbose = 0))
  # errors name the argument
  expect_arg_error(fit(a, batches_of(8), d$y, verbose = 0), "y")
  expect_arg_error(fit(a, batches_of(8), batch_size = 8, verbose = 0), "batch_size")
  expect_arg_error(fit(a, batches_of(8), class_weight = c(1, 2), verbose = 0), "class_weight")
  expect_arg_error(fit(a, batches_of(8), validation_split = 0.2, verbose = 0), "validation_split")
  expect_arg_error(fit(a, function() NULL, verbose = 0), "x")
  expect_arg_error(fit(a, function() 1:3, verbose = 0), "x")
  expect_arg_error(fit(a, function() list(d$x[1:4, ]), verbose = 0), "x")
  expect_arg_error(fit(a, function() list(d$x[1:4, 1:2], d$y[1:4]), verbose = 0), "x()[[1]]")
  expect_arg_error(evaluate(a, function() NULL, verbose = 0), "x")
  expect_arg_error(predict(a, function() NULL, verbose = 0), "x")
  expect_warning(fit(a, batches_of(8), shuffle = TRUE, verbose = 0), "`shuffle` is ignored")
})

test_that("evaluate(steps =) and predict(steps =) on arrays take the first batches", {
  set.seed(27)
  d <- regression_data(30)
  m <- sgd_model()
  expect_identical(evaluate(m, d$x, d$y, batch_size = 7, steps = 2, verbose = 0),
                   evaluate(m, d$x[1:14, ], d$y[1:14, , drop = FALSE], batch_size = 7, verbose = 0))
  # batch_size NULL with steps: the samples divided by steps
  expect_identical(evaluate(m, d$x, d$y, steps = 3, verbose = 0),
                   evaluate(m, d$x, d$y, batch_size = 10, verbose = 0))
  expect_identical(predict(m, d$x, batch_size = 4, steps = 2, verbose = 0), predict(m, d$x[1:8, ], verbose = 0))
  expect_warning(p <- predict(m, d$x, batch_size = 20, steps = 3, verbose = 0), "ran out")
  expect_identical(p, predict(m, d$x, verbose = 0))
  expect_arg_error(predict(m, d$x, steps = -1), "steps")
})

test_that("data frames: columns by input name, or the numeric columns as the features", {
  set.seed(28)
  d <- regression_data(20)
  df <- data.frame(a = d$x[, 1], b = d$x[, 2], c = d$x[, 3])
  a <- sgd_model()
  fit(a, df, d$y, batch_size = 5, epochs = 2, shuffle = FALSE, verbose = 0)
  b <- sgd_model()
  fit(b, d$x, d$y, batch_size = 5, epochs = 2, shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(a), get_weights(b))
  expect_identical(evaluate(a, df, d$y, verbose = 0), evaluate(b, d$x, d$y, verbose = 0))
  expect_identical(predict(a, df, verbose = 0), predict(b, d$x, verbose = 0))
  # targets as a one-column data frame
  expect_identical(evaluate(a, df, data.frame(y = d$y[, 1]), verbose = 0), evaluate(b, d$x, d$y, verbose = 0))
  # inputs named after columns (a factor column as its 0-based codes; other columns ignored)
  ia <- keras_input(1, name = "size")
  ib <- keras_input(1, name = "group")
  set.seed(6)
  out <- layer_add(list(layer_dense(ia, 1, dtype = "float64"), layer_dense(ib, 1, dtype = "float64")))
  fm <- keras_model(list(ia, ib), out)
  grp <- factor(sample(c("lo", "mid", "hi"), 20, replace = TRUE), levels = c("lo", "mid", "hi"))
  frame <- data.frame(note = letters[1:20], group = grp, size = d$x[, 1])
  expect_identical(predict(fm, frame, verbose = 0),
                   predict(fm, list(matrix(d$x[, 1]), matrix(as.integer(grp) - 1)), verbose = 0))
  # a named list in any order, matched to the input names
  expect_identical(predict(fm, list(group = as.integer(grp) - 1, size = d$x[, 1], other = 1), verbose = 0),
                   predict(fm, list(matrix(d$x[, 1]), matrix(as.integer(grp) - 1)), verbose = 0))
  # errors name the argument
  expect_arg_error(fit(a, data.frame(a = d$x[, 1], b = letters[1:20], c = 1), d$y, verbose = 0), "x$b")
  expect_arg_error(predict(fm, data.frame(size = 1:3), verbose = 0), "x")
  expect_arg_error(fit(a, data.frame(f = grp, b = 1, c = 2), d$y, verbose = 0), "x")
  expect_arg_error(fit(a, df[0, ], d$y, verbose = 0), "x")
})

test_that("a vector for an input of shape (NA, 1) gets its axis, as Keras adjusts input ranks", {
  set.seed(29)
  x <- rnorm(20)
  y <- 2 * x + 1
  make <- function() {
    set.seed(4)
    m <- keras_model_sequential(input_shape = 1) |> layer_dense(1, dtype = "float64")
    m |> compile(optimizer = optimizer_sgd(0.1), loss = "mse")
    m
  }
  a <- make()
  fit(a, x, y, batch_size = 5, epochs = 1, shuffle = FALSE, verbose = 0)
  b <- make()
  fit(b, matrix(x), matrix(y), batch_size = 5, epochs = 1, shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(a), get_weights(b))
  expect_identical(predict(a, x, verbose = 0), predict(b, matrix(x), verbose = 0))
})

test_that("compile(jit_compile =) is accepted and ignored; loss_weights by output name", {
  set.seed(30)
  m <- dense64_model()
  expect_invisible(compile(m, optimizer = "sgd", loss = "mse", jit_compile = TRUE))
  expect_identical(compile(m, optimizer = "sgd", loss = "mse", jit_compile = "auto"), m)
  expect_arg_error(compile(m, optimizer = "sgd", loss = "mse", jit_compile = "xla"), "jit_compile")
  expect_arg_error(compile(m, optimizer = "sgd", loss = "mse", jit_compile = NA), "jit_compile")
  inp <- keras_input(3)
  make <- function(loss_weights) {
    set.seed(5)
    two <- keras_model(inp, list(a = layer_dense(inp, 1, dtype = "float64"), b = layer_dense(inp, 1, dtype = "float64")))
    two |> compile(optimizer = optimizer_sgd(0.1), loss = "mse", loss_weights = loss_weights)
    two
  }
  d <- regression_data(12)
  m1 <- make(list(b = 2, a = 0.5))
  m2 <- make(c(0.5, 2))
  h1 <- fit(m1, d$x, list(a = d$y, b = -d$y), batch_size = 4, epochs = 1, shuffle = FALSE, verbose = 0)
  h2 <- fit(m2, d$x, list(d$y, -d$y), batch_size = 4, epochs = 1, shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(m1), get_weights(m2))
  # the loss is the weighted sum of the output losses
  expect_equal(h1$metrics$loss, 0.5 * h1$metrics$a_loss + 2 * h1$metrics$b_loss, tolerance = 1e-12)
})

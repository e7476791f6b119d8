# compile() and fit(): in-place compilation, the training step against a
# hand computation (model backprop + optimizer rule), regularization and
# constraints, trainable = FALSE, callbacks and early stopping in real fits,
# the history, sample weights, validation, interrupts, verbosity, several
# inputs and outputs, saveRDS(), and argument errors.

test_that("compile() changes the model in place and returns it invisibly", {
  set.seed(1)
  model <- dense64_model()
  expect_false(model$compiled)
  expect_invisible(ret <- compile(model, optimizer = "adam", loss = "mse", metrics = c("mae", "mse")))
  expect_identical(ret, model)
  expect_true(model$compiled)
  expect_s3_class(model$optimizer, "Adam")
  expect_s3_class(model$loss, "MeanSquaredError")
  expect_identical(model$loss$name, "mse")
  # an optimizer object is used as is (its state continues); the default is rmsprop
  opt <- optimizer_sgd(learning_rate = 0.05)
  model |> compile(optimizer = opt, loss = loss_mean_absolute_error())
  expect_identical(model$optimizer, opt)
  model |> compile(loss = "mse")
  expect_s3_class(model$optimizer, "RMSprop")
  # the generics' generics, as keras3: fit/compile coexist with other packages
  expect_identical(multihead::fit, generics::fit)
  expect_identical(multihead::compile, generics::compile)
})

test_that("evaluate() dispatches on the model, and coexists with generics::evaluate()", {
  set.seed(1)
  d <- regression_data(8)
  model <- dense64_model()
  model |> compile(optimizer = "sgd", loss = "mse")
  res <- multihead::evaluate(model, d$x, d$y, verbose = 0)
  expect_identical(multihead::evaluate(model, x = d$x, y = d$y, verbose = 0), res)
  expect_identical(multihead::evaluate(object = model, y = d$y, x = d$x, verbose = 0), res)
  # the method is registered on generics' generic too (for when it masks ours)
  expect_identical(generics::evaluate(model, d$x, d$y, verbose = 0), res)
  # other objects go to generics::evaluate() and the methods other packages register there
  registerS3method("evaluate", "multihead_test_other", function(x, ...) "other package's method",
                   envir = asNamespace("generics"))
  expect_identical(multihead::evaluate(structure(1, class = "multihead_test_other")), "other package's method")
})

test_that("a dense regression's loss falls over a few epochs", {
  set.seed(2)
  d <- regression_data(128)
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(1)
  model |> compile(optimizer = optimizer_sgd(learning_rate = 0.1), loss = "mse", metrics = "mae")
  h <- fit(model, d$x, d$y, epochs = 4, batch_size = 16, verbose = 0)
  expect_s3_class(h, "keras_training_history")
  expect_true(all(diff(h$metrics$loss) < 0))
  expect_lt(h$metrics$loss[4], h$metrics$loss[1] / 20)
  expect_equal(unname(evaluate(model, d$x, d$y, verbose = 0)["loss"]), mean((predict(model, d$x) - d$y)^2),
               tolerance = 1e-6)
})

test_that("a tiny attention model's loss falls", {
  set.seed(3)
  n <- 96
  x <- array(rnorm(n * 5 * 4), c(n, 5, 4))
  y <- matrix(apply(x, 1, function(s) max(s[, 1]) - mean(s[, 2])), n, 1)   # needs to look across time
  inp <- keras_input(shape = c(5, 4))
  h <- layer_multi_head_attention(inp, num_heads = 2, key_dim = 4)
  out <- (h + inp) |> layer_global_average_pooling_1d() |> layer_dense(8, activation = "relu") |> layer_dense(1)
  model <- keras_model(inp, out)
  model |> compile(optimizer = optimizer_adam(learning_rate = 0.01), loss = "mse")
  h <- fit(model, x, y, epochs = 8, batch_size = 16, verbose = 0)
  expect_lt(h$metrics$loss[8], h$metrics$loss[1] * 0.6)
})

test_that("one SGD step equals the model's backprop and the SGD rule by hand", {
  set.seed(4)
  d <- regression_data(16)
  model <- dense64_model(units = 2, bias_initializer = "random_normal")
  y <- cbind(d$y, -d$y)
  lr <- 0.05
  expected <- sgd_step_by_hand(model, d$x, mse_by_hand(predict(model, d$x), y)$grad, lr)
  model |> compile(optimizer = optimizer_sgd(learning_rate = lr), loss = "mse")
  fit(model, d$x, y, batch_size = 16, epochs = 1, shuffle = FALSE, verbose = 0)
  expect_equal(get_weights(model), expected, tolerance = 1e-12)
  expect_identical(model$optimizer$iterations, 1L)

  # an attention model with a residual connection and SGD with momentum over two batches
  inp <- keras_input(shape = c(3, 4))
  att <- mha64(inp, num_heads = 2, key_dim = 3)
  model <- keras_model(inp, layer_dense(att + inp, 2, dtype = "float64"))
  x <- rand_array(8, 3, 4)
  y <- rand_array(8, 3, 2)
  w0 <- get_weights(model)
  b1 <- 1:4; b2 <- 5:8
  g1 <- unname(backprop(model, x[b1, , ], grad_output = mse_by_hand(model(x[b1, , ]), y[b1, , ])$grad)$grads$weights)
  v1 <- lapply(g1, function(g) -lr * g)                       # v <- momentum * v - lr * g, with v = 0
  set_weights(model, Map(`+`, w0, v1))
  g2 <- unname(backprop(model, x[b2, , ], grad_output = mse_by_hand(model(x[b2, , ]), y[b2, , ])$grad)$grads$weights)
  v2 <- Map(function(v, g) 0.9 * v - lr * g, v1, g2)
  expected <- Map(function(w, a, b) w + a + b, w0, v1, v2)
  set_weights(model, w0)
  model |> compile(optimizer = optimizer_sgd(learning_rate = lr, momentum = 0.9), loss = "mse")
  fit(model, x, y, batch_size = 4, epochs = 1, shuffle = FALSE, verbose = 0)
  expect_equal(get_weights(model), expected, tolerance = 1e-10)
})

test_that("regularization adds its formula to the loss and its gradient to the update", {
  set.seed(5)
  d <- regression_data(8)
  l1 <- 0.03; l2 <- 0.2; lr <- 0.1
  model <- dense64_model(kernel_regularizer = regularizer_l1_l2(l1 = l1, l2 = l2),
                         bias_regularizer = regularizer_l2(l2), bias_initializer = "random_normal")
  w <- get_weights(model)
  pred <- predict(model, d$x)
  m <- mse_by_hand(pred, d$y)
  reg_loss <- l1 * sum(abs(w[[1]])) + l2 * sum(w[[1]]^2) + l2 * sum(w[[2]]^2)
  extra <- list(l1 * sign(w[[1]]) + 2 * l2 * w[[1]], 2 * l2 * w[[2]])
  expected <- sgd_step_by_hand(model, d$x, m$grad, lr, extra)
  model |> compile(optimizer = optimizer_sgd(learning_rate = lr), loss = "mse")
  expect_equal(unname(evaluate(model, d$x, d$y, verbose = 0)), m$value + reg_loss, tolerance = 1e-12)
  h <- fit(model, d$x, d$y, batch_size = 8, epochs = 1, verbose = 0)
  expect_equal(h$metrics$loss, m$value + reg_loss, tolerance = 1e-12)
  expect_equal(get_weights(model), expected, tolerance = 1e-12)

  # an activity regularizer on a Dense output: penalty(output) / batch, its gradient flows into the output
  model <- dense64_model(units = 2, activity_regularizer = regularizer_l2(l2))
  y <- cbind(d$y, d$y)
  pred <- predict(model, d$x)
  m <- mse_by_hand(pred, y)
  expected <- sgd_step_by_hand(model, d$x, m$grad + 2 * l2 * pred / 8, lr)
  model |> compile(optimizer = optimizer_sgd(learning_rate = lr), loss = "mse")
  h <- fit(model, d$x, y, batch_size = 8, epochs = 1, verbose = 0)
  expect_equal(h$metrics$loss, m$value + l2 * sum(pred^2) / 8, tolerance = 1e-12)
  expect_equal(get_weights(model), expected, tolerance = 1e-12)
})

test_that("the training gradient of attention with activity and weight regularizers matches finite differences", {
  set.seed(6)
  x <- rand_array(3, 3, 4)
  y <- rand_array(3, 3, 2)
  inp <- keras_input(shape = c(3, 4))
  att <- mha64(inp, num_heads = 1, key_dim = 2, use_gate = TRUE, activity_regularizer = regularizer_l2(0.3),
               kernel_regularizer = regularizer_l1(0.05))
  out <- layer_dense(att, 2, dtype = "float64", activity_regularizer = regularizer_l1_l2(0.1, 0.2))
  model <- keras_model(inp, out)
  model |> compile(optimizer = optimizer_sgd(learning_rate = 1), loss = "mse")
  w0 <- get_weights(model)
  total_loss <- function(w) {
    set_weights(model, w)
    unname(evaluate(model, x, y, batch_size = 3, verbose = 0))
  }
  numeric <- lapply(seq_along(w0), function(i) fd_grad(function(v) total_loss(replace(w0, i, list(v))), w0[[i]]))
  set_weights(model, w0)
  fit(model, x, y, batch_size = 3, epochs = 1, verbose = 0)
  step <- Map(`-`, w0, get_weights(model))          # = lr * gradient, lr = 1
  for (i in seq_along(w0)) expect_lt(rel_err(step[[i]], numeric[[i]]), 1e-6)
})

test_that("constraints hold after training and frozen layers are not updated", {
  set.seed(7)
  d <- regression_data(64, beta = c(-1, -2, 3))    # the data pull two weights below zero
  inp <- keras_input(shape = 3)
  frozen <- layer_dense(units = 1, trainable = FALSE, kernel_initializer = "zeros", name = "frozen")
  constrained <- layer_dense(units = 1, kernel_constraint = "non_neg", name = "constrained")
  model <- keras_model(inp, constrained(inp) + frozen(inp))
  model |> compile(optimizer = optimizer_sgd(learning_rate = 0.1), loss = "mse")
  fit(model, d$x, d$y, epochs = 3, batch_size = 8, verbose = 0)
  k <- get_weights(constrained)[[1]]
  expect_true(all(k >= 0))
  expect_identical(k[1:2], c(0, 0))
  expect_gt(k[3], 1)
  expect_identical(get_weights(frozen), list(array(0, c(3, 1)), array(0, 1)))
})

test_that("early stopping stops a real fit and restores the best weights", {
  set.seed(8)
  d <- regression_data(32)
  model <- dense64_model()
  model |> compile(optimizer = optimizer_sgd(learning_rate = 0.1), loss = "mse")
  seen <- list()
  keep <- callback_lambda(on_epoch_end = function(epoch, logs) seen[[epoch]] <<- get_weights(model))
  # validation targets of the opposite sign: the validation loss rises once training starts to fit
  stop <- callback_early_stopping(monitor = "val_loss", patience = 1, restore_best_weights = TRUE)
  h <- fit(model, d$x, d$y, epochs = 20, batch_size = 8, verbose = 0, callbacks = list(keep, stop),
           validation_data = list(d$x, -d$y))
  n <- length(h$metrics$loss)
  expect_lt(n, 20)
  best <- which.min(h$metrics$val_loss)
  expect_identical(n, best + 1L)                       # patience 1: one epoch without improvement
  expect_identical(get_weights(model), seen[[best]])
  expect_false(identical(seen[[n]], seen[[best]]))
})

test_that("callback_lambda hooks are called in order with 1-based indices and logs", {
  set.seed(9)
  d <- regression_data(10)
  model <- dense64_model()
  model |> compile(optimizer = "sgd", loss = "mse", metrics = "mae")
  calls <- character()
  rec <- function(...) calls <<- c(calls, paste(...))
  cb <- callback_lambda(
    on_train_begin = function(logs) rec("train_begin", length(logs)),
    on_epoch_begin = function(epoch, logs) rec("epoch_begin", epoch),
    on_batch_begin = function(batch, logs) rec("batch_begin", batch),
    on_batch_end = function(batch, logs) rec("batch_end", batch, paste(names(logs), collapse = ",")),
    on_epoch_end = function(epoch, logs) rec("epoch_end", epoch, paste(names(logs), collapse = ",")),
    on_train_end = function(logs) rec("train_end", paste(names(logs), collapse = ",")))
  fit(model, d$x, d$y, epochs = 2, batch_size = 4, validation_split = 0.2, verbose = 0, callbacks = cb)
  batches <- c("batch_begin 1", "batch_end 1 loss,mae", "batch_begin 2", "batch_end 2 loss,mae")
  expect_identical(calls, c("train_begin 0",
                            "epoch_begin 1", batches, "epoch_end 1 loss,mae,val_loss,val_mae",
                            "epoch_begin 2", batches, "epoch_end 2 loss,mae,val_loss,val_mae",
                            "train_end loss,mae,val_loss,val_mae"))
  # initial_epoch: epochs are numbered on from it
  calls <- character()
  fit(model, d$x, d$y, epochs = 4, initial_epoch = 3, batch_size = 8, verbose = 0,
      callbacks = callback_lambda(on_epoch_begin = function(epoch, logs) rec(epoch)))
  expect_identical(calls, c("3", "4"))
})

test_that("the history has keras3's layout, print() and as.data.frame()", {
  set.seed(10)
  d <- regression_data(40)
  model <- dense64_model()
  model |> compile(optimizer = "sgd", loss = "mse", metrics = "mae")
  expect_invisible(h <- fit(model, d$x, d$y, epochs = 3, batch_size = 16, validation_split = 0.25, verbose = 0))
  expect_identical(h$params, list(verbose = 0L, epochs = 3L, steps = 2L))   # 30 training samples
  expect_identical(names(h$metrics), c("loss", "mae", "val_loss", "val_mae"))
  expect_true(all(lengths(h$metrics) == 3L))
  df <- as.data.frame(h)
  expect_identical(names(df), c("epoch", "value", "metric", "data"))
  expect_identical(nrow(df), 12L)
  expect_identical(levels(df$metric), c("loss", "mae"))
  expect_equal(df$value[df$metric == "mae" & df$data == "validation"], h$metrics$val_mae)
  expect_output(print(h), "Final epoch \\(plot to see history\\):")
  expect_output(print(h), "val_mae: ")
})

test_that("validation_split holds out the last samples; validation_data gives val_ metrics", {
  set.seed(11)
  d <- regression_data(20)
  model <- dense64_model()
  model |> compile(optimizer = optimizer_sgd(learning_rate = 0.05), loss = "mse", metrics = "mae")
  calls <- 0
  h <- fit(model, d$x, d$y, epochs = 1, batch_size = 4, validation_split = 0.3, verbose = 0,
           callbacks = callback_lambda(on_batch_end = function(batch, logs) calls <<- calls + 1))
  expect_identical(calls, 4)                              # 14 training samples in batches of 4
  val <- evaluate(model, d$x[15:20, , drop = FALSE], d$y[15:20, , drop = FALSE], verbose = 0)
  expect_equal(c(h$metrics$val_loss, h$metrics$val_mae), unname(val), tolerance = 1e-12)
  # the held-out samples are not trained on: the same as training on the first 14 only
  make <- function() {
    set.seed(30)
    m <- dense64_model()
    m |> compile(optimizer = optimizer_sgd(learning_rate = 0.05), loss = "mse")
    m
  }
  a <- make(); b <- make()
  set.seed(12); fit(a, d$x, d$y, epochs = 2, batch_size = 4, validation_split = 0.3, verbose = 0)
  set.seed(12); fit(b, d$x[1:14, ], d$y[1:14, , drop = FALSE], epochs = 2, batch_size = 4, verbose = 0)
  expect_identical(get_weights(a), get_weights(b))
  xv <- regression_data(6)
  h <- fit(model, d$x, d$y, epochs = 2, batch_size = 8, verbose = 0, validation_data = list(xv$x, xv$y))
  expect_equal(h$metrics$val_loss[2], unname(evaluate(model, xv$x, xv$y, verbose = 0)["loss"]), tolerance = 1e-12)
  # with validation sample weights
  sw <- c(1, 0, 1, 0, 2, 0)
  h <- fit(model, d$x, d$y, epochs = 1, batch_size = 8, verbose = 0, validation_data = list(xv$x, xv$y, sw))
  expect_equal(h$metrics$val_loss, unname(evaluate(model, xv$x, xv$y, sample_weight = sw, verbose = 0)["loss"]),
               tolerance = 1e-12)
})

test_that("sample_weight weights each sample's loss in the step", {
  set.seed(13)
  d <- regression_data(8)
  model <- dense64_model(bias_initializer = "random_normal")
  sw <- c(2, 0, 1, 0.5, 0, 1, 3, 1)
  lr <- 0.1
  m <- mse_by_hand(predict(model, d$x), d$y, sw)
  expected <- sgd_step_by_hand(model, d$x, m$grad, lr)
  model |> compile(optimizer = optimizer_sgd(learning_rate = lr), loss = "mse")
  h <- fit(model, d$x, d$y, batch_size = 8, epochs = 1, sample_weight = sw, verbose = 0)
  expect_equal(h$metrics$loss, m$value, tolerance = 1e-12)
  expect_equal(get_weights(model), expected, tolerance = 1e-12)
})

test_that("dropout is active in fit() and inactive in evaluate()", {
  set.seed(14)
  d <- regression_data(32)
  model <- keras_model_sequential(input_shape = 3) |>
    layer_dense(16, dtype = "float64") |> layer_dropout(0.5) |> layer_dense(1, dtype = "float64")
  model |> compile(optimizer = optimizer_sgd(learning_rate = 0), loss = "mse")
  ev <- evaluate(model, d$x, d$y, verbose = 0)
  expect_identical(evaluate(model, d$x, d$y, verbose = 0), ev)
  expect_equal(unname(ev), mean((predict(model, d$x) - d$y)^2), tolerance = 1e-12)
  h <- fit(model, d$x, d$y, epochs = 1, batch_size = 32, verbose = 0)   # learning rate 0: weights unchanged
  expect_false(isTRUE(all.equal(h$metrics$loss, unname(ev))))
  expect_identical(evaluate(model, d$x, d$y, verbose = 0), ev)
})

test_that("an interrupt stops between steps and keeps the last finished step's weights", {
  set.seed(15)
  d <- regression_data(16)
  make <- function() {
    set.seed(16)
    m <- dense64_model()
    m |> compile(optimizer = optimizer_adam(learning_rate = 0.1), loss = "mse")
    m
  }
  model <- make()
  cb <- callback_lambda(on_batch_end = function(batch, logs) if (batch == 2) signal_interrupt())
  expect_message(h <- fit(model, d$x, d$y, epochs = 3, batch_size = 4, shuffle = FALSE, verbose = 0, callbacks = cb),
                 "interrupted in epoch 1 after 2 of 4 steps")
  expect_identical(length(h$metrics), 0L)
  reference <- make()
  fit(reference, d$x[1:8, ], d$y[1:8, , drop = FALSE], epochs = 1, batch_size = 4, shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(model), get_weights(reference))
  expect_identical(model$optimizer$iterations, 2L)
})

test_that("verbose = 2 prints a line per epoch, 1 a progress bar and the line, 0 nothing", {
  set.seed(17)
  d <- regression_data(12)
  model <- dense64_model()
  model |> compile(optimizer = "sgd", loss = "mse", metrics = "mae")
  out <- capture.output(fit(model, d$x, d$y, epochs = 2, batch_size = 4, verbose = 2))
  expect_identical(out[c(1, 3)], c("Epoch 1/2", "Epoch 2/2"))
  expect_match(out[2], "^3/3 - [0-9]+s - [0-9]+[mu]?s/step - loss: [0-9.e-]+ - mae: [0-9.e-]+$")
  expect_identical(capture.output(fit(model, d$x, d$y, epochs = 2, verbose = 0)), character())
  out <- capture.output(suppressMessages(fit(model, d$x, d$y, epochs = 1, batch_size = 4, verbose = 1)))
  expect_identical(out[1], "Epoch 1/1")
  expect_match(out[length(out)], "^3/3 - .* - loss: .* - mae: ")
  withr_verbose <- capture.output(ev <- evaluate(model, d$x, d$y, verbose = 2))
  expect_match(withr_verbose, "^1/1 - .* - loss: ")
})

test_that("models with several inputs and outputs train with per-output losses and logs", {
  set.seed(18)
  n <- 24
  a <- keras_input(shape = 3, name = "a")
  b <- keras_input(shape = 2, name = "b")
  h <- layer_dense(a, 4, dtype = "float64") + layer_dense(b, 4, dtype = "float64")
  reg <- layer_dense(h, 1, dtype = "float64", name = "reg")
  cls <- layer_dense(h, 3, activation = "softmax", dtype = "float64", name = "cls")
  model <- keras_model(list(a, b), list(reg, cls))
  xa <- matrix(rnorm(n * 3), n); xb <- matrix(rnorm(n * 2), n)
  y_reg <- matrix(rnorm(n), n); y_cls <- sample(0:2, n, replace = TRUE)
  model |> compile(optimizer = optimizer_sgd(learning_rate = 0.1),
                   loss = list(reg = "mse", cls = "sparse_categorical_crossentropy"),
                   loss_weights = c(reg = 0.5, cls = 2), metrics = list(cls = "accuracy"))
  ev <- evaluate(model, list(xa, xb), list(y_reg, y_cls), verbose = 0)
  expect_identical(names(ev), c("loss", "reg_loss", "cls_loss", "cls_accuracy"))
  p <- predict(model, list(xa, xb))
  l_reg <- mean((p[[1]] - y_reg)^2)
  l_cls <- mean(-log(p[[2]][cbind(1:n, y_cls + 1)]))
  expect_equal(unname(ev), c(0.5 * l_reg + 2 * l_cls, l_reg, l_cls, mean(max.col(p[[2]]) - 1 == y_cls)),
               tolerance = 1e-10)
  h <- fit(model, list(xa, xb), list(y_reg, y_cls), epochs = 3, batch_size = 8, verbose = 0)
  expect_identical(names(h$metrics), c("loss", "reg_loss", "cls_loss", "cls_accuracy"))
  expect_lt(h$metrics$loss[3], h$metrics$loss[1])
})

test_that("a saved and restored model continues training exactly", {
  set.seed(19)
  d <- regression_data(32)
  inp <- keras_input(shape = c(4, 3))
  out <- inp |> layer_multi_head_attention(num_heads = 2, key_dim = 2) |> layer_dropout(0.2) |>
    layer_global_average_pooling_1d() |> layer_dense(1)
  model <- keras_model(inp, out)
  x <- rand_array(32, 4, 3)
  model |> compile(optimizer = "adam", loss = "mse", metrics = "mae")
  fit(model, x, d$y, epochs = 1, batch_size = 8, verbose = 0)
  path <- tempfile(fileext = ".rds")
  saveRDS(model, path)
  copy <- readRDS(path)
  expect_true(copy$compiled)
  expect_identical(copy$optimizer$iterations, 4L)
  set.seed(20); h1 <- fit(model, x, d$y, epochs = 2, batch_size = 8, verbose = 0)
  set.seed(20); h2 <- fit(copy, x, d$y, epochs = 2, batch_size = 8, verbose = 0)
  expect_identical(h2$metrics, h1$metrics)
  expect_identical(get_weights(copy), get_weights(model))
  expect_identical(copy$optimizer$slots, model$optimizer$slots)
})

test_that("bad arguments to compile() and fit() are errors naming them", {
  set.seed(21)
  d <- regression_data(10)
  model <- dense64_model()
  expect_error(fit(model, d$x, d$y), "must be compiled before fit\\(\\)")
  expect_error(compile(model, optimizer = "adadelta", loss = "mse"),
               "`optimizer` must be an optimizer object or one of \"sgd\", \"adam\", \"adamw\", \"rmsprop\"")
  expect_error(compile(model, loss = "hinge"),
               "`loss` must be a loss object or one of \"mse\", \"mean_squared_error\", \"mae\"")
  expect_arg_error(compile(model, loss = "mse", metrics = "f1_score"), "metrics")
  expect_arg_error(compile(model, loss = loss_mean_squared_error(reduction = "none")), "loss")
  expect_error(compile(model, loss = "mse", metrics = list("mae", 3)), "`metrics\\[\\[2\\]\\]` must be a metric")
  expect_arg_error(compile(model, loss = "mse", loss_weights = -1), "loss_weights")
  expect_arg_error(compile(model, loss = "mse", run_eagerly = TRUE), "run_eagerly")
  model |> compile(optimizer = "sgd")
  expect_arg_error(fit(model, d$x, d$y, verbose = 0), "loss")
  model |> compile(optimizer = "sgd", loss = "mse")
  expect_arg_error(fit(model, d$x), "y")
  expect_arg_error(fit(model, d$x, d$y[1:9, , drop = FALSE]), "y")
  expect_error(fit(model, d$x, d$y[1:9, , drop = FALSE]), "targets for the 10 samples of `x`")
  expect_arg_error(fit(model, d$x[, 1:2], d$y), "x")
  expect_error(fit(model, d$x, cbind(d$y, d$y, d$y), verbose = 0),
               "`y` does not fit the loss \"mse\" for the model's output of shape \\(NA, 1\\)")
  expect_arg_error(fit(model, d$x, d$y, batch_size = 0), "batch_size")
  expect_arg_error(fit(model, d$x, d$y, epochs = -1), "epochs")
  expect_arg_error(fit(model, d$x, d$y, verbose = 3), "verbose")
  expect_arg_error(fit(model, d$x, d$y, validation_split = 1), "validation_split")
  expect_arg_error(fit(model, d$x, d$y, validation_split = 0.95, verbose = 0), "validation_split")
  expect_arg_error(fit(model, d$x, d$y, validation_data = list(d$x)), "validation_data")
  expect_arg_error(fit(model, d$x, d$y, validation_data = list(d$x[, 1:2], d$y)), "validation_data[[1]]")
  expect_arg_error(fit(model, d$x, d$y, sample_weight = rep(1, 3)), "sample_weight")
  expect_arg_error(fit(model, d$x, d$y, sample_weight = rep(-1, 10)), "sample_weight")
  expect_arg_error(fit(model, d$x, d$y, shuffle = NA), "shuffle")
  expect_arg_error(fit(model, d$x, d$y, callbacks = list(1)), "callbacks[[1]]")
  expect_arg_error(fit(model, d$x, d$y, steps_per_epoch = 0), "steps_per_epoch")
  expect_arg_error(fit(model, d$x, d$y, steps = 2), "...")
  # class labels for a sparse loss
  clf <- keras_model_sequential(input_shape = 3) |> layer_dense(3, activation = "softmax")
  clf |> compile(optimizer = "sgd", loss = "sparse_categorical_crossentropy", metrics = "accuracy")
  expect_error(fit(clf, d$x, rep(5, 10), verbose = 0),
               "`y` does not fit the loss \"sparse_categorical_crossentropy\".*labels from 0 to 2")
  expect_error(fit(clf, d$x, matrix(0, 10, 2), verbose = 0),
               "`y` does not fit the loss \"sparse_categorical_crossentropy\".*class labels of shape \\(")
  expect_silent(fit(clf, d$x, sample(0:2, 10, replace = TRUE), verbose = 0))
})

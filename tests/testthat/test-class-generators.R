# keras3's class generators: Callback(), Metric(), Loss(),
# LearningRateSchedule() (and their new_*_class() aliases). keras3
# vignette-style classes run with fit() / evaluate(); results are compared
# with plain-R computations and with the built-in equivalents; instances
# round-trip through saveRDS(); bad definitions are errors naming the
# argument.

ns <- asNamespace("multihead")
err <- "multihead_error_argument"

# x (64, 3), y = x %*% beta (64, 1), a float64 one-unit dense model with fixed
# initial weights (the same for two models to compare).
class_data <- function(n = 64, seed = 42) {
  set.seed(seed)
  x <- matrix(rnorm(n * 3), n, 3)
  list(x = x, y = x %*% c(1, -2, 0.5) + 0.25)
}

dense64 <- function(kernel = c(0.1, -0.2, 0.3), bias = 0.05) {
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(1, dtype = "float64")
  set_weights(model, list(matrix(kernel, 3, 1), bias))
  model
}

roundtrip <- function(x) {
  f <- tempfile(fileext = ".rds")
  on.exit(unlink(f))
  saveRDS(x, f)
  readRDS(f)
}

# ---- Callback -----------------------------------------------------------------

test_that("a callback records every hook with 1-based epochs and batches and stops training", {
  d <- class_data()
  model <- dense64()
  model |> compile(optimizer = optimizer_sgd(0.05), loss = "mse", metrics = "mae")
  callback_recorder <- Callback(
    "Recorder",
    initialize = function(stop_below) {
      super$initialize()
      self$stop_below <- stop_below
      self$events <- character()
      self$epoch_logs <- list()
      self$batches <- integer()
    },
    on_train_begin = function(logs = NULL) self$events <- c(self$events, "train_begin"),
    on_epoch_begin = function(epoch, logs = NULL) self$events <- c(self$events, paste0("epoch_begin_", epoch)),
    on_train_batch_begin = function(batch, logs = NULL) self$batches <- c(self$batches, batch),
    on_train_batch_end = function(batch, logs = NULL) {
      self$last_batch_logs <- logs
    },
    on_epoch_end = function(epoch, logs = NULL) {
      self$events <- c(self$events, paste0("epoch_end_", epoch))
      self$epoch_logs[[epoch]] <- logs
      if (logs$loss < self$stop_below) {
        self$stopped_epoch <- epoch
        self$model$stop_training <- TRUE
      }
    },
    on_train_end = function(logs = NULL) {
      self$events <- c(self$events, "train_end")
      self$final_logs <- logs
    }
  )
  expect_identical(names(formals(callback_recorder)), "stop_below")
  cb <- callback_recorder(stop_below = 1)
  expect_s3_class(cb, c("Recorder", "Callback", "multihead_class_instance", "multihead_callback"))
  expect_null(cb$model)
  h <- model |> fit(d$x, d$y, batch_size = 16, epochs = 100, shuffle = FALSE, verbose = 0,
                    callbacks = list(cb))
  n_epochs <- length(h$metrics$loss)
  # training stopped at the first epoch whose loss is below 1, well before 100
  expect_gt(n_epochs, 1)
  expect_lt(n_epochs, 100)
  expect_identical(cb$stopped_epoch, n_epochs)
  expect_true(h$metrics$loss[n_epochs] < 1)
  expect_true(all(h$metrics$loss[-n_epochs] >= 1))
  expect_identical(cb$events, c("train_begin", as.vector(rbind(paste0("epoch_begin_", seq_len(n_epochs)),
                                                                paste0("epoch_end_", seq_len(n_epochs)))),
                                "train_end"))
  expect_identical(cb$batches, rep(1:4, n_epochs))
  for (e in seq_len(n_epochs)) {
    expect_equal(cb$epoch_logs[[e]]$loss, h$metrics$loss[[e]])
    expect_equal(cb$epoch_logs[[e]]$mae, h$metrics$mae[[e]])
  }
  expect_identical(cb$final_logs, cb$epoch_logs[[n_epochs]])
  expect_identical(cb$last_batch_logs, cb$epoch_logs[[n_epochs]])
  expect_identical(cb$params, list(verbose = 0L, epochs = 100L, steps = 4L))
  # self$model is the model: same weights, and it keeps its final stop flag
  expect_true(inherits(cb$model, "multihead_model"))
  expect_identical(get_weights(cb$model), get_weights(model))
  expect_true(cb$model$stop_training)
  expect_identical(cb$model$name, model$name)
  # the optimizer is changed in place through the model, as keras3 code does
  cb$model$optimizer$learning_rate <- 0.125
  expect_identical(model$optimizer$learning_rate, 0.125)
  expect_error(cb$model$name <- "other", "read-only", class = "multihead_error_readonly")
  # a second fit() with the same callback sees a fresh stop flag
  cb$stop_below <- -1
  h2 <- model |> fit(d$x, d$y, batch_size = 16, epochs = 2, verbose = 0, callbacks = cb)
  expect_length(h2$metrics$loss, 2)
  expect_false(cb$model$stop_training)
})

test_that("stop_training set in a batch hook stops after that batch; on_batch_end is the older hook", {
  d <- class_data()
  model <- dense64()
  model |> compile(optimizer = optimizer_sgd(0.01), loss = "mse")
  callback_batch_stopper <- new_callback_class(
    "BatchStopper",
    on_batch_end = function(batch, logs = NULL) {
      self$seen <- c(self$seen, batch)
      if (batch == 2) self$model$stop_training <- TRUE
    },
    public = list(seen = integer())
  )
  cb <- callback_batch_stopper()
  w0 <- get_weights(model)
  h <- model |> fit(d$x, d$y, batch_size = 16, epochs = 5, shuffle = FALSE, verbose = 0, callbacks = list(cb))
  expect_identical(cb$seen, 1:2)
  expect_length(h$metrics$loss, 1)
  # exactly two SGD steps were taken: redo them by hand
  w <- w0
  for (b in 1:2) {
    idx <- (b - 1) * 16 + 1:16
    m2 <- dense64(w[[1]], w[[2]])
    pred <- predict(m2, d$x[idx, ], verbose = 0)
    g <- mse_by_hand(pred, d$y[idx, , drop = FALSE])$grad
    w <- sgd_step_by_hand(m2, d$x[idx, ], g, 0.01)
  }
  expect_equal(get_weights(model), w, tolerance = 1e-12)
})

test_that("the keras3 vignette's EarlyStoppingAtMinLoss and learning-rate scheduler callbacks run unchanged", {
  `add<-` <- `+`
  callback_early_stopping_at_min_loss <- Callback(
    "EarlyStoppingAtMinLoss",
    `__doc__` = "Stop training when the loss is at its min, i.e. the loss stops decreasing.",
    initialize = function(patience = 0) {
      super$initialize()
      self$patience <- patience
      self$best_weights <- NULL
    },
    on_train_begin = function(logs = NULL) {
      self$wait <- 0
      self$stopped_epoch <- 0
      self$best <- Inf
    },
    on_epoch_end = function(epoch, logs = NULL) {
      current <- logs$loss
      if (current < self$best) {
        self$best <- current
        self$wait <- 0L
        self$best_weights <- get_weights(self$model)
        self$best_epoch <- epoch
      } else {
        add(self$wait) <- 1L
        if (self$wait >= self$patience) {
          self$stopped_epoch <- epoch
          self$model$stop_training <- TRUE
          self$model$set_weights(self$best_weights)
        }
      }
    }
  )
  callback_custom_learning_rate_scheduler <- Callback(
    "CustomLearningRateScheduler",
    initialize = function(schedule) {
      super$initialize()
      self$schedule <- schedule
      self$lrs <- NULL
    },
    on_epoch_begin = function(epoch, logs = NULL) {
      if (!"learning_rate" %in% names(self$model$optimizer))
        stop('Optimizer must have a "learning_rate" attribute.')
      lr <- as.numeric(self$model$optimizer$learning_rate)
      scheduled_lr <- self$schedule(epoch, lr)
      optimizer <- self$model$optimizer
      optimizer$learning_rate <- scheduled_lr
      self$lrs <- c(self$lrs, scheduled_lr)
    }
  )
  expect_identical(callback_early_stopping_at_min_loss()$`__doc__`,
                   "Stop training when the loss is at its min, i.e. the loss stops decreasing.")
  d <- class_data()
  model <- dense64()
  # a learning rate far too large: the loss rises after the first epochs
  model |> compile(optimizer = optimizer_sgd(0.05), loss = "mse")
  es <- callback_early_stopping_at_min_loss(patience = 1)
  sched <- callback_custom_learning_rate_scheduler(function(epoch, lr) if (epoch <= 2) 0.05 else 1.5)
  h <- model |> fit(d$x, d$y, batch_size = 16, epochs = 30, shuffle = FALSE, verbose = 0,
                    callbacks = list(sched, es))
  n <- length(h$metrics$loss)
  expect_lt(n, 30)
  expect_identical(sched$lrs, c(0.05, 0.05, rep(1.5, n - 2)))
  expect_identical(model$optimizer$learning_rate, 1.5)
  expect_identical(es$stopped_epoch, n)
  expect_identical(es$best, min(h$metrics$loss))
  expect_identical(es$best_epoch, which.min(h$metrics$loss))
  expect_identical(get_weights(model), es$best_weights)
})

test_that("methods see self, super, private, __class__ and the class name; subclasses and active properties work", {
  Base <- Callback(
    "Base",
    initialize = function(step = 1) {
      super()$initialize()
      self$step <- step
      self$trail <- character()
      private$count <- 0
    },
    on_epoch_end = function(epoch, logs = NULL) {
      private$count <- private$count + self$step
      self$trail <- c(self$trail, paste0("base", epoch))
    },
    count = active_property(function(value) {
      if (!missing(value)) stop("`count` is read-only")
      private$count
    }),
    who = function() c(class(self)[[1]], class(`__class__`())[[1]], class(Base())[[1]])
  )
  Child <- Callback(
    "Child",
    inherit = Base,
    initialize = function(step = 10, tag = "c") {
      super$initialize(step = step)
      self$tag <- tag
    },
    on_epoch_end = function(self, epoch, logs = NULL) {
      super$on_epoch_end(epoch, logs)
      self$trail <- c(self$trail, paste0(self$tag, epoch))
    }
  )
  expect_identical(names(formals(Child)), c("step", "tag"))
  a <- Base(step = 2)
  b <- Child(tag = "k")
  expect_s3_class(b, c("Child", "Base", "Callback"))
  expect_identical(a$who(), c("Base", "Base", "Base"))
  d <- class_data()
  model <- dense64()
  model |> compile(optimizer = "sgd", loss = "mse")
  model |> fit(d$x, d$y, epochs = 3, verbose = 0, callbacks = list(a, b))
  expect_identical(a$count, 6)
  expect_identical(b$count, 30)
  expect_identical(b$trail, c("base1", "k1", "base2", "k2", "base3", "k3"))
  expect_error(a$count <- 1, "read-only")
  expect_error(a$no_such_thing, "no attribute or method `no_such_thing`", class = "multihead_error_attribute")
  expect_error(b$on_epoch_end(1, NULL), NA)
  # each instance has its own state and private environment
  expect_identical(Base()$count, 0)
  expect_true(all(c("count", "on_epoch_end", "step", "who") %in% names(a)))
  expect_identical(a[["step"]], 2)
})

test_that("a callback method returning a named list updates the logs the next callbacks see", {
  d <- class_data()
  model <- dense64()
  model |> compile(optimizer = "sgd", loss = "mse")
  Adder <- Callback("Adder", on_epoch_end = function(epoch, logs = NULL) list(double_loss = 2 * logs$loss))
  Reader <- Callback("Reader", on_epoch_end = function(epoch, logs = NULL) self$got <- c(self$got, logs$double_loss),
                     public = list(got = NULL))
  r <- Reader()
  h <- model |> fit(d$x, d$y, epochs = 2, verbose = 0, callbacks = list(Adder(), r))
  expect_equal(r$got, 2 * h$metrics$loss)
})

test_that("custom callbacks run through the callback protocol with a context that names the model", {
  d <- class_data()
  model <- dense64()
  Stopper <- Callback("Stopper", on_epoch_end = function(epoch, logs = NULL) {
    self$model$stop_training <- epoch >= 2
  })
  cb <- Stopper()
  ctx <- ns$new_callback_context(params = list(epochs = 3), model = model)
  ns$callbacks_call(list(cb), "on_epoch_end", 1L, list(loss = 1), ctx)
  expect_false(ctx$stop_training)
  ns$callbacks_call(list(cb), "on_epoch_end", 2L, list(loss = 1), ctx)
  expect_true(ctx$stop_training)
  expect_identical(cb$params, list(epochs = 3))
  # test and predict hooks are accepted by the protocol
  Tester <- Callback("Tester", on_test_batch_end = function(batch, logs = NULL) self$b <- batch,
                     on_predict_end = function(logs = NULL) self$p <- TRUE)
  t <- Tester()
  ns$callback_call(t, "on_test_batch_end", 3L, list(loss = 1), ctx)
  ns$callback_call(t, "on_predict_end", context = ctx)
  expect_identical(t$b, 3L)
  expect_true(t$p)
  expect_error(ns$callback_call(t, "on_predict_end", 1L, NULL, ctx), "`index`", class = err)
  expect_error(ns$new_callback_context(model = "m"), "`model`", class = err)
  expect_error(cb$model$stop_training <- "yes", "`stop_training`", class = err)
})

test_that("a callback survives saveRDS() with its state and methods, and trains again", {
  Counter <- Callback("Counter",
                      initialize = function(start = 0) self$n <- start,
                      on_epoch_end = function(epoch, logs = NULL) self$n <- self$n + 1)
  d <- class_data()
  model <- dense64()
  model |> compile(optimizer = "sgd", loss = "mse")
  cb <- Counter(start = 5)
  model |> fit(d$x, d$y, epochs = 2, verbose = 0, callbacks = cb)
  expect_identical(cb$n, 7)
  cb2 <- roundtrip(cb)
  expect_identical(cb2$n, 7)
  model |> fit(d$x, d$y, epochs = 3, verbose = 0, callbacks = cb2)
  expect_identical(cb2$n, 10)
  expect_identical(cb$n, 7)
  expect_output(print(cb2), "<Counter \\(Callback\\)>")
  expect_output(print(Counter), "Callback class generator \"Counter\"")
})

test_that("bad callback classes are errors naming the argument", {
  expect_error(Callback(), "`classname`", class = err)
  expect_error(Callback(1), "`classname`", class = err)
  expect_error(Callback("has space"), "`classname`", class = err)
  expect_error(Callback("X", on_epoch_end = 1), "`on_epoch_end`", class = err)
  expect_error(Callback("X", on_train_begin = "f"), "`on_train_begin`", class = err)
  expect_error(Callback("X", initialize = 3), "`initialize`", class = err)
  expect_error(Callback("X", public = list(on_epoch_end = TRUE)), "`public\\$on_epoch_end`", class = err)
  expect_error(Callback("X", public = list(function() 1)), "`public`", class = err)
  expect_error(Callback("X", public = "a"), "`public`", class = err)
  expect_error(Callback("X", private = list(1)), "`private`", class = err)
  expect_error(Loss("X", NULL, function() 1), "`...`", class = err)
  expect_error(Callback("X", parent_env = list()), "`parent_env`", class = err)
  expect_error(Callback("X", inherit = "Base"), "`inherit`", class = err)
  expect_error(Callback("X", inherit = Metric("M")), "`inherit`", class = err)
  expect_error(Callback("X", initialize = function() 1, `__init__` = function() 1), "`__init__`", class = err)
  X <- Callback("X")
  d <- class_data()
  model <- dense64()
  model |> compile(optimizer = "sgd", loss = "mse")
  expect_error(fit(model, d$x, d$y, verbose = 0, callbacks = list(X)), "`callbacks\\[\\[1\\]\\]`.*constructor",
               class = err)
  expect_error(fit(model, d$x, d$y, verbose = 0, callbacks = X), "`callbacks\\[\\[1\\]\\]`", class = err)
  expect_error(X()(1), "cannot be called", class = err)
  expect_error(X(1), "unused argument")
  # arguments reach initialize() as values (a call object is not evaluated)
  Keep <- Callback("Keep", initialize = function(what) self$what <- what)
  expect_identical(Keep(quote(f(1)))$what, quote(f(1)))
  expect_identical(Keep(what = as.name("a"))$what, as.name("a"))
})

# ---- Metric -------------------------------------------------------------------

# keras3's BinaryTruePositives example, with the ops available to these tests.
metric_binary_true_positives <- Metric(
  classname = "BinaryTruePositives",
  initialize = function(name = "binary_true_positives", ...) {
    super$initialize(name = name, ...)
    self$true_positives <- self$add_weight(shape = shape(), initializer = "zeros", name = "true_positives")
  },
  update_state = function(y_true, y_pred, sample_weight = NULL) {
    values <- op_multiply(y_true > 0.5, y_pred > 0.5) + 0
    if (!is.null(sample_weight)) values <- op_multiply(values, sample_weight)
    self$true_positives$assign(self$true_positives + sum(values))
  },
  result = function() self$true_positives
)

test_that("a custom metric's variables accumulate across updates and reset", {
  m <- metric_binary_true_positives()
  expect_identical(m$name, "binary_true_positives")
  expect_identical(m$dtype, "float32")
  expect_identical(names(m$variables), "true_positives")
  expect_identical(m$true_positives$shape, integer())
  y_true <- c(1, 1, 0, 1, 0)
  y_pred <- c(0.9, 0.2, 0.8, 0.7, 0.1)
  expect_equal(as.array(m(y_true, y_pred)), array(2))
  m$update_state(y_true, y_pred, sample_weight = c(0.5, 1, 1, 2, 1))
  expect_equal(as.numeric(m$result()), 2 + 0.5 + 2)
  expect_identical(ns$metric_result(m), 4.5)
  m$reset_state()
  expect_identical(ns$metric_result(m), 0)
  # the default name is the class's in snake case
  Plain <- Metric("MyPlainCounter", update_state = function(y_true, y_pred, sample_weight = NULL) NULL,
                  result = function() 1)
  expect_identical(Plain()$name, "my_plain_counter")
  expect_identical(names(formals(Plain)), c("dtype", "name"))
  expect_identical(Plain(name = "pc", dtype = "float64")$dtype, "float64")
})

test_that("a custom metric in compile() is counted per epoch in fit() and over all samples in evaluate()", {
  set.seed(7)
  x <- matrix(rnorm(100 * 3), 100, 3)
  y <- matrix(as.double(x %*% c(1, 1, -1) > 0), ncol = 1)
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(1, activation = "sigmoid", dtype = "float64")
  m <- metric_binary_true_positives()
  # learning rate 0: the predictions stay fixed, so every epoch counts the same samples
  model |> compile(optimizer = optimizer_sgd(0), loss = "binary_crossentropy", metrics = list(m))
  tp_by_hand <- function(x, y) sum(y > 0.5 & predict(model, x, verbose = 0) > 0.5)
  h <- model |> fit(x, y, batch_size = 16, epochs = 3, validation_split = 0.2, verbose = 0)
  expect_identical(names(h$metrics), c("loss", "binary_true_positives", "val_loss", "val_binary_true_positives"))
  expect_equal(h$metrics$binary_true_positives, rep(tp_by_hand(x[1:80, ], y[1:80, , drop = FALSE]), 3))
  expect_equal(h$metrics$val_binary_true_positives, rep(tp_by_hand(x[81:100, ], y[81:100, , drop = FALSE]), 3))
  ev <- evaluate(model, x, y, batch_size = 7, verbose = 0)
  expect_equal(ev[["binary_true_positives"]], tp_by_hand(x, y))
  # the object given to compile() is the model's metric, as in Keras
  expect_equal(as.numeric(m$result()), tp_by_hand(x, y))
  # a constructor instead of an instance is an error naming the argument
  expect_error(compile(model, loss = "mse", metrics = list(metric_binary_true_positives)),
               "`metrics`.*constructor", class = err)
})

test_that("a custom weighted mean metric matches the built-in weighted MAE, and a repeated instance is copied", {
  metric_weighted_mae <- Metric(
    "WeightedMAE",
    initialize = function(name = "wmae", dtype = "float64") {
      super$initialize(name = name, dtype = dtype)
      self$total <- self$add_variable(shape = shape(), initializer = "zeros", name = "total")
      self$count <- self$add_variable(shape = shape(), initializer = "zeros", name = "count")
    },
    update_state = function(y_true, y_pred, sample_weight = NULL) {
      per_sample <- rowMeans(abs(op_subtract(y_true, y_pred)))
      w <- if (is.null(sample_weight)) rep(1, length(per_sample)) else sample_weight
      self$total$assign_add(sum(op_multiply(per_sample, w)))
      self$count$assign_add(sum(w))
    },
    result = function() op_divide(self$total, self$count),
    reset_state = function() {
      self$resets <- self$resets + 1
      for (v in self$variables) v$assign(0)
    },
    public = list(resets = 0)
  )
  d <- class_data()
  y2 <- cbind(d$y, -d$y)
  sw <- seq(0.5, 2, length.out = 64)
  model <- keras_model_sequential(input_shape = 3) |> layer_dense(2, dtype = "float64")
  m <- metric_weighted_mae()
  model |> compile(optimizer = optimizer_sgd(0.01), loss = "mse", metrics = list("mae", m),
                   weighted_metrics = list("mae", m))
  h <- model |> fit(d$x, y2, sample_weight = sw, batch_size = 10, epochs = 2, verbose = 0)
  expect_identical(names(h$metrics), c("loss", "mae", "wmae", "weighted_mae", "weighted_wmae"))
  expect_equal(h$metrics$wmae, h$metrics$mae, tolerance = 1e-12)
  expect_equal(h$metrics$weighted_wmae, h$metrics$weighted_mae, tolerance = 1e-12)
  metrics <- ns$layer_self(model)$compiled$metrics
  # the weighted one is a copy: its own state
  expect_false(identical(environment(metrics[[2]]$metric), environment(metrics[[4]]$metric)))
  expect_identical(metrics[[2]]$metric$resets, 2)
})

test_that("early stopping's mode = \"auto\" needs a direction for a custom metric", {
  d <- class_data()
  Score <- Metric("Score",
                  initialize = function(name = "score", up = NULL) {
                    super$initialize(name = name)
                    self$direction <- up
                    self$s <- self$add_variable(shape(), "zeros")
                  },
                  update_state = function(y_true, y_pred, sample_weight = NULL) self$s$assign_add(1),
                  result = function() self$s$value)
  model <- dense64()
  model |> compile(optimizer = "sgd", loss = "mse", metrics = list(Score()))
  expect_error(fit(model, d$x, d$y, epochs = 3, verbose = 0,
                   callbacks = callback_early_stopping(monitor = "score")),
               "cannot tell whether `monitor` \"score\"", class = err)
  # the score (the number of batches, 2) never improves when larger is better: stop at epoch 2
  model |> compile(optimizer = "sgd", loss = "mse", metrics = list(Score(up = "up")))
  h <- model |> fit(d$x, d$y, batch_size = 32, epochs = 5, verbose = 0,
                    callbacks = callback_early_stopping(monitor = "score"))
  expect_identical(h$metrics$score, c(2, 2))
  expect_error(Score(up = "sideways"), "`direction`", class = err)
})

test_that("a custom metric survives saveRDS() with its variables", {
  m <- metric_binary_true_positives()
  m$update_state(c(1, 1), c(0.9, 0.8))
  m2 <- roundtrip(m)
  expect_identical(ns$metric_result(m2), 2)
  m2$update_state(c(1, 0), c(0.9, 0.8))
  expect_identical(ns$metric_result(m2), 3)
  expect_identical(ns$metric_result(m), 2)
  expect_output(print(m2), "<BinaryTruePositives \\(Metric\\) name=\"binary_true_positives\">")
})

test_that("bad metric classes and variables are errors naming the argument", {
  expect_error(Metric(), "`classname`", class = err)
  expect_error(Metric("M", update_state = 1), "`update_state`", class = err)
  expect_error(Metric("M", result = list()), "`result`", class = err)
  expect_error(Metric("M", reset_state = "no"), "`reset_state`", class = err)
  expect_error(Metric("M", public = list(result = 2)), "`public\\$result`", class = err)
  V <- function(...) {
    args <- list(...)
    Metric("V", initialize = function() {
      super$initialize()
      do.call(self$add_variable, args)
    })()
  }
  expect_error(V(shape = c(2, -1), initializer = "zeros"), "`shape`", class = err)
  expect_error(V(shape = "a", initializer = "zeros"), "`shape`", class = err)
  expect_error(V(shape = 2, initializer = "nope"), "`initializer`", class = err)
  expect_error(V(shape = 2, initializer = function(shape, dtype) c(1, 2, 3)), "`initializer`", class = err)
  expect_error(V(shape = 2, initializer = function(shape, dtype) stop("no")), "`initializer`.*failed: no",
               class = err)
  expect_error(V(shape = 2, initializer = "zeros", dtype = "complex"), "`dtype`", class = err)
  expect_error(V(shape = 2, initializer = "zeros", aggregation = "max"), "`aggregation`", class = err)
  expect_error(V(shape = 2, initializer = "zeros", name = 1), "`name`", class = err)
  expect_error(V(shape = 2), "`initializer`", class = err)
  expect_error(V(shape = c(2^30, 2^30), initializer = "zeros"), "`shape`", class = err)
  expect_error(Metric("M", initialize = function() super$initialize(name = 3))(), "`name`", class = err)
  expect_error(Metric("M", initialize = function() super$initialize(dtype = "int8"))(), "`dtype`", class = err)
  # an initializer function and a vector variable
  W <- Metric("W", initialize = function() {
    super$initialize()
    self$v <- self$add_variable(c(2, 2), function(shape, dtype) seq_len(prod(shape)))
  })
  expect_identical(as.array(W()$v), matrix(c(1, 2, 3, 4), 2))
  # update_state / result left out: clear errors when used
  Empty <- Metric("Empty")
  expect_error(Empty()(1, 1), "must implement update_state", class = "multihead_error_not_implemented")
  Bad <- Metric("Bad", update_state = function(y_true, y_pred, sample_weight = NULL) NULL,
                result = function() c(1, 2))
  expect_error(ns$metric_result(Bad()), "result\\(\\) of metric \"bad\".*single number", class = err)
})

# ---- Loss ---------------------------------------------------------------------

# Mean squared error written with ops: per-sample values of shape (n, units);
# with the "sum_over_batch_size" reduction this is Keras's MSE.
loss_ops_mse <- Loss("OpsMSE", call = function(y_true, y_pred) {
  d <- op_subtract(y_pred, y_true)
  op_multiply(d, d)
})

# A loss that is not quadratic: d^2 / (1 + y_pred^2), d = y_pred - y_true.
loss_ratio <- Loss("Ratio", call = function(y_true, y_pred) {
  d <- op_subtract(y_pred, y_true)
  op_divide(op_multiply(d, d), op_add(op_multiply(y_pred, y_pred), 1))
})

fd_gradient <- function(f, x, eps = 1e-6) {
  g <- x
  for (k in seq_along(x)) {
    up <- x; dn <- x
    up[k] <- x[k] + eps
    dn[k] <- x[k] - eps
    g[k] <- (f(up) - f(dn)) / (2 * eps)
  }
  g
}

test_that("a custom loss reduces as Keras's Loss and equals the built-in MSE", {
  set.seed(3)
  y_true <- matrix(rnorm(12), 6)
  y_pred <- matrix(rnorm(12), 6)
  sw <- c(1, 0.5, 2, 0, 1, 3)
  mse <- loss_mean_squared_error()
  l <- loss_ops_mse()
  expect_identical(l$name, "ops_mse")
  expect_identical(l$reduction, "sum_over_batch_size")
  expect_equal(l(y_true, y_pred), mse(y_true, y_pred), tolerance = 1e-14)
  expect_equal(l(y_true, y_pred, sample_weight = sw), mse(y_true, y_pred, sample_weight = sw), tolerance = 1e-14)
  for (red in c("sum", "mean_with_sample_weight", "mean")) {
    a <- loss_ops_mse(reduction = red)
    expect_equal(a(y_true, y_pred, sample_weight = sw), sum(sw * (y_pred - y_true)^2) /
                   switch(red, sum = 1, mean_with_sample_weight = 2 * sum(sw), mean = 12), tolerance = 1e-14)
  }
  expect_equal(loss_ops_mse(reduction = NULL)(y_true, y_pred, sample_weight = sw), sw * (y_pred - y_true)^2,
               tolerance = 1e-14)
  expect_equal(loss_ratio()(y_true, y_pred), mean((y_pred - y_true)^2 / (1 + y_pred^2)), tolerance = 1e-14)
  # the traced graph (what a training step runs) agrees with the direct call
  l64 <- loss_ratio(dtype = "float64")
  expect_equal(ns$loss_evaluate(l64, y_true, y_pred, sw, grad = TRUE)$value,
               l64(y_true, y_pred, sample_weight = sw), tolerance = 1e-14)
})

test_that("a custom loss's gradient (traced graph, backward) matches finite differences and the built-in MSE", {
  set.seed(4)
  y_true <- matrix(rnorm(15), 5)
  y_pred <- matrix(rnorm(15), 5)
  sw <- c(0.5, 1, 2, 1.5, 0.25)
  for (red in c("sum_over_batch_size", "sum", "mean_with_sample_weight")) {
    l <- loss_ratio(reduction = red, dtype = "float64")
    r <- ns$loss_evaluate(l, y_true, y_pred, sw, grad = TRUE)
    expect_identical(dim(r$grad), dim(y_pred))
    f <- function(p) ns$loss_evaluate(l, y_true, p, sw, grad = FALSE)$value
    expect_equal(r$grad, fd_gradient(f, y_pred), tolerance = 1e-7, info = red)
  }
  l <- loss_ops_mse(dtype = "float64")
  mine <- ns$loss_evaluate(l, y_true, y_pred, sw, grad = TRUE)
  builtin <- ns$loss_value_and_grad(loss_mean_squared_error(), y_true, y_pred, sw)
  expect_equal(mine$value, builtin$value, tolerance = 1e-14)
  expect_equal(mine$grad, builtin$grad, tolerance = 1e-14)
  # one graph per pair of shapes, cached in the instance
  ns$loss_evaluate(l, y_true[1:2, ], y_pred[1:2, ], NULL, grad = TRUE)
  ns$loss_evaluate(l, y_true, y_pred, NULL, grad = TRUE)
  expect_length(environment(l)$.graphs, 2)
  # a loss that ignores y_pred has a zero gradient
  const <- Loss("Const", call = function(y_true, y_pred) op_multiply(y_true, 2))(dtype = "float64")
  expect_identical(ns$loss_evaluate(const, y_true, y_pred, NULL, grad = TRUE)$grad, array(0, dim(y_pred)))
})

test_that("fit() with a custom loss trains exactly as with the built-in loss", {
  d <- class_data()
  train <- function(loss, ...) {
    model <- dense64()
    model |> compile(optimizer = optimizer_sgd(0.05, momentum = 0.5), loss = loss)
    h <- model |> fit(d$x, d$y, batch_size = 16, epochs = 4, shuffle = FALSE, verbose = 0, ...)
    list(loss = h$metrics$loss, weights = get_weights(model), model = model)
  }
  sw <- seq(0.2, 2, length.out = 64)
  ref <- train("mse", sample_weight = sw)
  mine <- train(loss_ops_mse(dtype = "float64"), sample_weight = sw)
  expect_equal(mine$loss, ref$loss, tolerance = 1e-12)
  expect_equal(mine$weights, ref$weights, tolerance = 1e-12)
  expect_equal(evaluate(mine$model, d$x, d$y, verbose = 0), evaluate(ref$model, d$x, d$y, verbose = 0),
               tolerance = 1e-12)
  # the default float32 loss computes in float32: the same to float32 precision
  mine32 <- train(loss_ops_mse(), sample_weight = sw)
  expect_equal(mine32$loss, ref$loss, tolerance = 1e-5)
  expect_equal(mine32$weights, ref$weights, tolerance = 1e-5)
  # a plain R function (y is (64, 1); y[, 1] has rank 1 and is brought to the predictions' rank)
  fun <- function(y_true, y_pred) op_multiply(op_subtract(y_true, y_pred), op_subtract(y_true, y_pred))
  model <- dense64()
  model |> compile(optimizer = optimizer_sgd(0.05, momentum = 0.5), loss = fun)
  h <- model |> fit(d$x, d$y[, 1], batch_size = 16, epochs = 4, shuffle = FALSE, verbose = 0, sample_weight = sw)
  expect_equal(h$metrics$loss, ref$loss, tolerance = 1e-5)
  expect_equal(get_weights(model), ref$weights, tolerance = 1e-5)
  wrapped <- ns$layer_self(model)$compiled$losses[[1]]
  expect_s3_class(wrapped, "LossFunctionWrapper")
  expect_identical(wrapped$name, "loss_function_wrapper")
})

test_that("the keras3 guide's CustomMSE loss (initialize with a parameter) trains", {
  loss_custom_mse <- Loss(
    classname = "CustomMSE",
    initialize = function(regularization_factor = 0.1, name = "custom_mse") {
      super$initialize(name = name, dtype = "float64")
      self$regularization_factor <- regularization_factor
    },
    call = function(y_true, y_pred) {
      d <- y_true - y_pred
      r <- 0.5 - y_pred
      mse <- d * d
      reg <- r * r
      mse + reg * self$regularization_factor
    }
  )
  expect_identical(names(formals(loss_custom_mse)), c("regularization_factor", "name"))
  l <- loss_custom_mse(regularization_factor = 0.2)
  expect_identical(l$name, "custom_mse")
  d <- class_data()
  model <- dense64()
  model |> compile(optimizer = optimizer_sgd(0.05), loss = l)
  h <- model |> fit(d$x, d$y, batch_size = 64, epochs = 1, verbose = 0)
  p <- predict(dense64(), d$x, verbose = 0)
  expect_equal(h$metrics$loss, mean((d$y - p)^2 + 0.2 * (0.5 - p)^2), tolerance = 1e-12)
  # one SGD step from the gradient of the same expression, by hand
  g <- (2 * (p - d$y) - 0.4 * (0.5 - p)) / 64
  expect_equal(get_weights(model), sgd_step_by_hand(dense64(), d$x, g, 0.05), tolerance = 1e-12)
})

test_that("a custom loss survives saveRDS() and keeps computing", {
  l <- loss_ratio(name = "r", reduction = "sum")
  y_true <- matrix(c(0, 1, 2, 3), 2)
  y_pred <- matrix(c(1, 1, 1, 1), 2)
  v <- l(y_true, y_pred)
  ns$loss_evaluate(l, y_true, y_pred, NULL, grad = TRUE)
  l2 <- roundtrip(l)
  expect_identical(l2(y_true, y_pred), v)
  expect_equal(ns$loss_evaluate(l2, y_true, y_pred, NULL, grad = TRUE),
               ns$loss_evaluate(l, y_true, y_pred, NULL, grad = TRUE))
  expect_identical(l2$get_config(), list(name = "r", reduction = "sum", dtype = "float32"))
  expect_output(print(l2), "<Ratio \\(Loss\\) name=\"r\">")
})

test_that("bad losses are errors naming the argument or saying what to change", {
  expect_error(Loss(), "`classname`", class = err)
  expect_error(Loss("L", call = "mse"), "`call`", class = err)
  expect_error(Loss("L", public = list(call = 1)), "`public\\$call`", class = err)
  expect_error(loss_ops_mse(reduction = "avg"), "`reduction`", class = err)
  expect_error(loss_ops_mse(name = ""), "`name`", class = err)
  expect_error(loss_ops_mse(dtype = "int32"), "`dtype`", class = err)
  l <- loss_ops_mse()
  expect_error(l(matrix(1:2)), "`y_pred`", class = err)
  expect_error(l(y_pred = matrix(1:2)), "`y_true`", class = err)
  expect_error(l(matrix(c(1, NA)), matrix(1:2)), "`y_true`", class = err)
  expect_error(l("a", matrix(1:2)), "`y_true`", class = err)
  expect_error(l(matrix(1:2), matrix(1:2), sample_weight = c(1, 2, 3)), "`sample_weight`", class = err)
  d <- class_data()
  model <- dense64()
  expect_error(compile(model, loss = loss_ops_mse), "`loss`.*constructor", class = err)
  expect_error(compile(model, loss = loss_ops_mse(reduction = "none")), "`loss`", class = err)
  expect_error(compile(model, loss = metric_binary_true_positives()), "`loss`", class = err)
  # call() that cannot be traced: base R on symbolic tensors
  Untraceable <- Loss("Untraceable", call = function(y_true, y_pred) as.numeric(y_pred) - as.numeric(y_true))
  model |> compile(optimizer = "sgd", loss = Untraceable())
  expect_error(fit(model, d$x, d$y, verbose = 0), "call\\(\\) of loss \"untraceable\".*symbolic tensors",
               class = "multihead_error_trace")
  ShapeTrace <- Loss("ShapeTrace", call = function(y_true, y_pred) op_add(y_pred, matrix(1, 3, 3)))
  expect_error(ns$loss_evaluate(ShapeTrace(), matrix(1, 2, 1), matrix(1, 2, 1), NULL, grad = TRUE),
               "^op_add\\(\\)", class = "multihead_error_shape")
  Constant <- Loss("Constant", call = function(y_true, y_pred) 1)
  model |> compile(optimizer = "sgd", loss = Constant())
  expect_error(fit(model, d$x, d$y, verbose = 0), "must return a tensor computed from y_true and y_pred",
               class = "multihead_error_trace")
  # an R error in call() (here base R arithmetic on arrays that do not conform) names the loss and the shapes
  BaseR <- Loss("BaseR", call = function(y_true, y_pred) y_true - y_pred)
  expect_error(BaseR()(matrix(1, 2, 3), matrix(1, 2, 2)),
               "call\\(\\) of loss \"base_r\" \\(BaseR\\) failed on y_true \\(2, 3\\) and y_pred \\(2, 2\\)",
               class = "multihead_error_call")
  NoCall <- Loss("NoCall")
  expect_error(NoCall()(1, 1), "^Loss class \"NoCall\" must implement call", class = "multihead_error_not_implemented")
  model |> compile(optimizer = "sgd", loss = NoCall())
  expect_error(fit(model, d$x, d$y, verbose = 0), "must implement call", class = "multihead_error")
  # shape errors of the ops: the targets do not fit the loss
  Mismatch <- Loss("Mismatch", call = function(y_true, y_pred) op_multiply(y_true, y_pred))
  model |> compile(optimizer = "sgd", loss = Mismatch())
  expect_error(fit(model, d$x, array(1, c(64, 2, 2)), verbose = 0),
               "`y` does not fit the loss \"mismatch\".*op_multiply", class = err)
})

# ---- LearningRateSchedule ------------------------------------------------------

test_that("a custom schedule gives the optimizer's learning rate at each 0-based step", {
  schedule_halving <- LearningRateSchedule(
    "Halving",
    initialize = function(initial_learning_rate) {
      self$initial_learning_rate <- initial_learning_rate
      self$steps <- integer()
    },
    call = function(step) {
      self$steps <- c(self$steps, step)
      self$initial_learning_rate * 0.5^step
    },
    get_config = function() list(initial_learning_rate = self$initial_learning_rate)
  )
  s <- schedule_halving(0.1)
  expect_identical(s(0:3), 0.1 * 0.5^(0:3))
  expect_identical(s$get_config(), list(initial_learning_rate = 0.1))
  expect_identical(ns$lr_schedule_config(s), list(initial_learning_rate = 0.1))
  s$steps <- integer()
  d <- class_data()
  train <- function(lr) {
    model <- dense64()
    model |> compile(optimizer = optimizer_sgd(lr), loss = "mse")
    model |> fit(d$x, d$y, batch_size = 16, epochs = 2, shuffle = FALSE, verbose = 0)
    get_weights(model)
  }
  w <- train(s)
  # eight steps, numbered from 0
  expect_identical(s$steps, 0:7)
  ref <- train(learning_rate_schedule_exponential_decay(0.1, decay_steps = 1, decay_rate = 0.5))
  expect_equal(w, ref, tolerance = 1e-14)
  expect_output(print(optimizer_sgd(s)), "learning_rate=<Halving>")
  s2 <- roundtrip(s)
  expect_identical(s2(2), 0.025)
  expect_identical(tail(s2$steps, 1), 2L)
  expect_output(print(s2), "<Halving \\(LearningRateSchedule\\)>")
})

test_that("a schedule written with ops, and the keras3 example's division by step + 1", {
  Inverse <- new_learning_rate_schedule_class(
    "Inverse",
    initialize = function(initial_learning_rate) self$initial_learning_rate <- initial_learning_rate,
    call = function(step) op_divide(self$initial_learning_rate, op_add(step, 1))
  )
  s <- Inverse(0.3)
  expect_equal(s(c(0, 1, 2, 5)), 0.3 / c(1, 2, 3, 6))
  opt <- optimizer_sgd(s)
  d <- class_data()
  model <- dense64()
  model |> compile(optimizer = opt, loss = "mse")
  model |> fit(d$x, d$y, batch_size = 32, epochs = 1, shuffle = FALSE, verbose = 0)
  expect_identical(opt$iterations, 2L)
  expect_equal(ns$optimizer_current_learning_rate(opt), 0.1)
  expect_error(s$get_config(), "must override get_config", class = "multihead_error_not_implemented")
})

test_that("bad schedules are errors naming the argument", {
  expect_error(LearningRateSchedule(), "`classname`", class = err)
  expect_error(LearningRateSchedule("S", call = 0.1), "`call`", class = err)
  expect_error(LearningRateSchedule("S", get_config = list()), "`get_config`", class = err)
  expect_error(LearningRateSchedule("S", call = function(step) 1, `__call__` = function(step) 2), "`__call__`",
               class = err)
  S <- LearningRateSchedule("S", call = function(step) "fast")
  expect_error(S()(0), "call\\(\\) of learning rate schedule \"S\" must return the learning rate", class = err)
  expect_error(LearningRateSchedule("T", call = function(step) 1)()(-1), "`step`", class = err)
  expect_error(LearningRateSchedule("T", call = function(step) 1)()(), "`step`", class = err)
  expect_error(LearningRateSchedule("N")()(0), "must implement call", class = "multihead_error_not_implemented")
  expect_error(optimizer_sgd(learning_rate = LearningRateSchedule("T")), "`learning_rate`", class = err)
})

test_that("save_model() refuses a model compiled with custom code, saying why and what to do", {
  loss_half_mse <- Loss("HalfMse", call = function(y_true, y_pred) op_mean(op_square(y_pred - y_true), axis = -1) / 2)
  inp <- keras_input(shape = 2)
  model <- keras_model(inp, layer_dense(inp, 1))
  model |> compile(optimizer = "sgd", loss = loss_half_mse())
  path <- tempfile(fileext = ".rds")
  expect_error(save_model(model, path), "writes data only.*loss HalfMse.*saveRDS", class = "multihead_error_unsupported")
  expect_false(file.exists(path))
})

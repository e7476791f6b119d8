# The callbacks beyond early stopping and lambda: reduce_lr_on_plateau,
# learning_rate_scheduler, csv_logger, terminate_on_nan, model_checkpoint
# (with Python's str.format() templates) and backup_and_restore (an exact
# resume), each checked against a hand computation or an equivalent run.

sgd_reg_model <- function(seed = 1, lr = 0.05, optimizer = optimizer_sgd(learning_rate = lr)) {
  set.seed(seed)
  m <- dense64_model()
  m |> compile(optimizer = optimizer, loss = "mse", metrics = "mae")
  m
}

test_that("reduce_lr_on_plateau follows Keras's rule: patience, min_delta, cooldown, min_lr", {
  m <- sgd_reg_model(lr = 1)
  ctx <- multihead:::new_callback_context(model = m)
  cb <- callback_reduce_lr_on_plateau(monitor = "val_loss", factor = 0.5, patience = 2, min_delta = 0.1,
                                      cooldown = 1, min_lr = 0.2)
  multihead:::callback_call(cb, "on_train_begin", context = ctx)
  values <- c(10, 9.95, 9.92, 9.0, 9.5, 9.4, 9.3, 9.2, 9.1, 9.05)
  lrs <- logged <- numeric()
  for (e in seq_along(values)) {
    logs <- multihead:::callback_call(cb, "on_epoch_end", e, list(val_loss = values[e]), ctx)
    logged[e] <- logs$learning_rate
    lrs[e] <- m$optimizer$learning_rate
  }
  # by hand (Keras: the cooldown counts down first, then an epoch without improvement counts unless
  # still cooling down): e1 best 10; e2, e3 no improvement by 0.1 -> wait 2 -> lr 0.5, cooldown 1;
  # e4 cooldown -> 0, improves (9.0); e5 wait 1; e6 wait 2 -> lr 0.25, cooldown 1; e7 cooldown -> 0 and
  # wait 1; e8 wait 2 -> lr max(0.125, 0.2) = 0.2; e9 wait 1; e10 wait 2, but 0.2 is not above
  # float32(min_lr) = 0.2000000030: no change. The logs carry the rate before the epoch's change.
  expect_identical(lrs, c(1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2))
  expect_identical(logged, c(1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2))
  # mode "max"
  m <- sgd_reg_model(lr = 1)
  ctx <- multihead:::new_callback_context(model = m)
  cb <- callback_reduce_lr_on_plateau(monitor = "acc", mode = "max", patience = 1, factor = 0.1)
  for (e in 1:3) multihead:::callback_call(cb, "on_epoch_end", e, list(acc = c(0.5, 0.4, 0.6)[e]), ctx)
  expect_identical(m$optimizer$learning_rate, 0.1)
  # a missing monitored value warns
  expect_warning(multihead:::callback_call(cb, "on_epoch_end", 4, list(loss = 1), ctx),
                 "conditioned on metric `acc` which is not available")
})

test_that("reduce_lr_on_plateau in fit(): the optimizer steps with the reduced learning rate", {
  set.seed(40)
  d <- regression_data(24)
  a <- sgd_reg_model(lr = 0.1)
  never <- callback_reduce_lr_on_plateau(monitor = "loss", patience = 2, min_delta = 1e300, factor = 0.1)
  h <- fit(a, d$x, d$y, batch_size = 8, epochs = 5, shuffle = FALSE, verbose = 0, callbacks = never)
  expect_equal(h$metrics$learning_rate, c(0.1, 0.1, 0.1, 0.01, 0.01))
  expect_equal(a$optimizer$learning_rate, 0.001)
  # the same as 3 epochs at 0.1 and 2 at 0.01
  b <- sgd_reg_model(lr = 0.1)
  fit(b, d$x, d$y, batch_size = 8, epochs = 3, shuffle = FALSE, verbose = 0)
  opt <- b$optimizer
  opt$learning_rate <- 0.1 * 0.1
  fit(b, d$x, d$y, batch_size = 8, epochs = 5, initial_epoch = 4, shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(a), get_weights(b))
  expect_message(fit(sgd_reg_model(), d$x, d$y, epochs = 2, verbose = 0,
                     callbacks = callback_reduce_lr_on_plateau("loss", patience = 0, min_delta = 1e300, verbose = 1)),
                 "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.00500")
  # a learning rate schedule cannot be changed
  sch <- sgd_reg_model(optimizer = optimizer_sgd(learning_rate_schedule_exponential_decay(0.1, 10, 0.5)))
  now <- callback_reduce_lr_on_plateau(monitor = "loss", patience = 0, min_delta = 1e300)
  expect_error(fit(sch, d$x, d$y, epochs = 2, verbose = 0, callbacks = now), "learning rate schedule",
               class = "multihead_error_argument")
  expect_arg_error(callback_reduce_lr_on_plateau(factor = 1), "factor")
  expect_arg_error(callback_reduce_lr_on_plateau(cooldown = -1), "cooldown")
  expect_arg_error(callback_reduce_lr_on_plateau(min_lr = -1), "min_lr")
  expect_arg_error(callback_reduce_lr_on_plateau(mode = "up"), "mode")
  expect_arg_error(callback_reduce_lr_on_plateau(foo = 1), "...")
})

test_that("learning_rate_scheduler calls schedule(epoch counted from 0, lr) at each epoch's start", {
  set.seed(41)
  d <- regression_data(16)
  a <- sgd_reg_model(lr = 0.1)
  calls <- list()
  sched <- function(epoch, lr) {
    calls[[length(calls) + 1L]] <<- c(epoch, lr)
    lr * (epoch + 2)
  }
  h <- fit(a, d$x, d$y, batch_size = 8, epochs = 4, initial_epoch = 3, shuffle = FALSE, verbose = 0,
           callbacks = callback_learning_rate_scheduler(sched))
  expect_identical(calls, list(c(2, 0.1), c(3, 0.1 * 4)))
  expect_identical(h$metrics$learning_rate, c(0.1 * 4, 0.1 * 4 * 5))
  # the weights: epoch 3 at 0.4, epoch 4 at 2
  b <- sgd_reg_model(lr = 0.4)
  fit(b, d$x, d$y, batch_size = 8, epochs = 1, shuffle = FALSE, verbose = 0)
  opt <- b$optimizer
  opt$learning_rate <- 0.1 * 4 * 5
  fit(b, d$x, d$y, batch_size = 8, epochs = 1, shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(a), get_weights(b))
  # a one-argument schedule; verbose
  a <- sgd_reg_model()
  expect_message(fit(a, d$x, d$y, epochs = 1, verbose = 0,
                     callbacks = callback_learning_rate_scheduler(function(epoch) 0.25, verbose = 1)),
                 "Epoch 1: LearningRateScheduler setting learning rate to 0.25.")
  expect_identical(a$optimizer$learning_rate, 0.25)
  expect_error(fit(a, d$x, d$y, epochs = 1, verbose = 0,
                   callbacks = callback_learning_rate_scheduler(function(epoch, lr) "fast")),
               "`schedule` must return the learning rate", class = "multihead_error_argument")
  expect_error(fit(a, d$x, d$y, epochs = 1, verbose = 0,
                   callbacks = callback_learning_rate_scheduler(function(epoch, lr) -1)),
               "in epoch 1 it returned", class = "multihead_error_argument")
  expect_arg_error(callback_learning_rate_scheduler("exp"), "schedule")
  expect_arg_error(callback_learning_rate_scheduler(), "schedule")
  expect_arg_error(callback_learning_rate_scheduler(function(e, lr) lr, verbose = -1), "verbose")
})

test_that("numbers are written as Python's repr() writes them", {
  py <- c("0.1" = 0.1, "1e-05" = 1e-05, "0.0001" = 1e-04, "1e+16" = 1e16, "1234567.0" = 1234567,
          "0.30000000000000004" = 0.1 + 0.2, "0.3333333333333333" = 1 / 3, "0.6666666666666666" = 2 / 3,
          "-2.5e-07" = -2.5e-07, "1.2345678901234568e+17" = 123456789012345678, "1e+22" = 1e22,
          "5e-324" = 5e-324, "1.7976931348623157e+308" = .Machine$double.xmax, "100.0" = 100,
          "9999999999999998.0" = 9999999999999998, "0.0" = 0, "-0.0" = -0, "-1.5" = -1.5,
          "nan" = NaN, "inf" = Inf, "-inf" = -Inf)
  got <- vapply(unname(py), multihead:::format_py_float, character(1))
  expect_identical(got, names(py))
})

test_that("csv_logger writes keras3's CSV: sorted keys, epochs from 0, val_ columns, CRLF", {
  set.seed(42)
  d <- regression_data(20)
  path <- tempfile(fileext = ".csv")
  on.exit(unlink(path))
  a <- sgd_reg_model()
  h <- fit(a, d$x, d$y, batch_size = 8, epochs = 3, verbose = 0, validation_split = 0.2,
           callbacks = list(callback_reduce_lr_on_plateau("loss"), callback_csv_logger(path)))
  raw <- readChar(path, file.size(path), useBytes = TRUE)
  lines <- strsplit(raw, "\r\n", fixed = TRUE)[[1]]
  expect_true(endsWith(raw, "\r\n"))
  expect_identical(lines[1], "epoch,learning_rate,loss,mae,val_loss,val_mae")
  expect_length(lines, 4L)
  expect_identical(lines[2], paste("0", "0.05", multihead:::format_py_float(h$metrics$loss[1]),
                                   multihead:::format_py_float(h$metrics$mae[1]),
                                   multihead:::format_py_float(h$metrics$val_loss[1]),
                                   multihead:::format_py_float(h$metrics$val_mae[1]), sep = ","))
  back <- utils::read.csv(path)
  expect_identical(back$epoch, 0:2)
  for (k in c("loss", "mae", "val_loss", "val_mae")) expect_identical(back[[k]], h$metrics[[k]])   # exact round trip
  # append: more rows, no second header; initial_epoch numbers the rows; no validation -> val_ columns of NA
  fit(a, d$x, d$y, epochs = 5, initial_epoch = 4, verbose = 0, callbacks = callback_csv_logger(path, append = TRUE))
  back <- utils::read.csv(path)
  expect_identical(back$epoch, c(0:2, 3:4))
  path2 <- tempfile(fileext = ".csv")
  on.exit(unlink(path2), add = TRUE)
  fit(a, d$x, d$y, epochs = 1, verbose = 0, callbacks = callback_csv_logger(path2, separator = ";"))
  lines <- strsplit(readChar(path2, file.size(path2), useBytes = TRUE), "\r\n", fixed = TRUE)[[1]]
  expect_identical(lines[1], "epoch;loss;mae;val_loss;val_mae")
  expect_match(lines[2], "^0;[^;]+;[^;]+;NA;NA$")
  # without append the file is overwritten
  fit(a, d$x, d$y, epochs = 1, verbose = 0, callbacks = callback_csv_logger(path2, separator = ";"))
  expect_length(readLines(path2, warn = FALSE), 2L)
  expect_arg_error(callback_csv_logger(), "filename")
  expect_arg_error(callback_csv_logger(1), "filename")
  expect_arg_error(callback_csv_logger("a.csv", separator = ",,"), "separator")
  expect_arg_error(callback_csv_logger("a.csv", append = NA), "append")
})

test_that("terminate_on_nan stops at the first non-finite loss and keeps the last finished step", {
  set.seed(43)
  d <- regression_data(40)
  d$x[13:16, ] <- 1e200   # the 4th batch's loss overflows to Inf
  a <- sgd_reg_model(lr = 0.01)
  w_after <- list()
  cb <- callback_lambda(on_batch_end = function(batch, logs) w_after[[length(w_after) + 1L]] <<- get_weights(a))
  expect_message(h <- fit(a, d$x, d$y, batch_size = 4, epochs = 3, shuffle = FALSE, verbose = 0,
                          callbacks = list(cb, callback_terminate_on_nan())),
                 "Batch [0-9]+: Invalid loss, terminating training")
  n <- length(w_after)
  expect_identical(n, 4L)   # stopped after the 4th batch of the first epoch
  expect_length(h$metrics$loss, 1L)
  expect_false(is.finite(h$metrics$loss))
  # the failing step was not applied: the weights are those after step n - 1, finite
  expect_identical(get_weights(a), w_after[[n]])
  expect_identical(w_after[[n]], w_after[[n - 1L]])
  b <- sgd_reg_model(lr = 0.01)
  fit(b, d$x[1:12, ], d$y[1:12, , drop = FALSE], batch_size = 4, epochs = 1, shuffle = FALSE, verbose = 0)
  expect_identical(get_weights(a), get_weights(b))
  # without the callback, the same run is an error
  b <- sgd_reg_model(lr = 0.01)
  expect_error(fit(b, d$x, d$y, batch_size = 4, epochs = 3, shuffle = FALSE, verbose = 0),
               class = "multihead_error_training")
})

test_that("Python's format specifications for checkpoint paths", {
  f <- function(v, spec) multihead:::format_py_value(v, spec, function(why) stop(why))
  # values from Python's format(value, spec)
  expect_identical(f(3L, "02d"), "03")
  expect_identical(f(0.41234, ".2f"), "0.41")
  expect_identical(f(1234567.891, ",.2f"), "1,234,567.89")
  expect_identical(f(0.5, "%"), "50.000000%")
  expect_identical(f(0.5, ".1%"), "50.0%")
  expect_identical(f(12, "g"), "12")
  expect_identical(f(1e-5, "g"), "1e-05")
  expect_identical(f(123456789, "g"), "1.23457e+08")
  expect_identical(f(3L, ">5"), "    3")
  expect_identical(f(3L, "<5d"), "3    ")
  expect_identical(f(3L, "^5"), "  3  ")
  expect_identical(f(-3L, "05d"), "-0003")
  expect_identical(f(3L, "+d"), "+3")
  expect_identical(f(0.1234, ".3"), "0.123")
  expect_identical(f(1234.5, ".3"), "1.23e+03")
  expect_identical(f(2, ".3"), "2.0")
  expect_identical(f(0.5, "e"), "5.000000e-01")
  expect_identical(f(0.5, "E"), "5.000000E-01")
  expect_identical(f(NaN, ".2f"), "nan")
  expect_identical(f(1.5, ""), "1.5")
  expect_identical(f(3L, "*^7"), "***3***")
  expect_identical(f(1234567L, "_d"), "1_234_567")
  expect_identical(f(2.5, "=+8.2f"), "+   2.50")
  expect_identical(f(0.000123, ".2e"), "1.23e-04")
  expect_identical(f(3L, ".2f"), "3.00")
  expect_error(f(0.5, "d"), "for integers")
  tpl <- function(t, v) multihead:::fill_format_template(t, v, "filepath")
  expect_identical(tpl("m-{epoch:03d}-{val_loss:.3f}{{x}}.rds", list(epoch = 7L, val_loss = 0.12345)),
                   "m-007-0.123{x}.rds")
  expect_error(tpl("m-{acc}.rds", list(epoch = 1L, loss = 1)), "`filepath`.*\\{acc\\} is not among the logged values",
               class = "multihead_error_argument")
  expect_arg_error(callback_model_checkpoint("m-{epoch.rds"), "filepath")
  expect_arg_error(callback_model_checkpoint("m-{epoch:q}.rds"), "filepath")
  expect_arg_error(callback_model_checkpoint("m-}.rds"), "filepath")
})

test_that("model_checkpoint: paths from templates, save_best_only with mode, weights only, thresholds", {
  set.seed(44)
  d <- regression_data(24)
  dir <- tempfile()
  on.exit(unlink(dir, recursive = TRUE))
  a <- sgd_reg_model()
  saved <- list()
  rec <- callback_lambda(on_epoch_end = function(epoch, logs) saved[[epoch]] <<- get_weights(a))
  h <- fit(a, d$x, d$y, batch_size = 8, epochs = 3, verbose = 0, validation_split = 0.25,
           callbacks = list(rec, callback_model_checkpoint(file.path(dir, "all", "m-{epoch:02d}-{val_loss:.2f}.rds"),
                                                           monitor = "val_loss")))
  expect_identical(sort(list.files(file.path(dir, "all"))),
                   sort(sprintf("m-%02d-%.2f.rds", 1:3, h$metrics$val_loss)))
  # each file is the model at the end of its epoch, loadable with load_model()
  m2 <- load_model(file.path(dir, "all", sprintf("m-02-%.2f.rds", h$metrics$val_loss[2])))
  expect_identical(get_weights(m2), saved[[2]])
  # save_best_only, mode "min" and "max": files only at improvements
  vals <- h$metrics$val_loss
  losses <- c(3, 2, 2.5, 1, 1.2)
  ctx <- multihead:::new_callback_context(model = a)
  for (mode in c("min", "max")) {
    cb <- callback_model_checkpoint(file.path(dir, mode, "e{epoch}.rds"), monitor = "val_loss", mode = mode,
                                    save_best_only = TRUE)
    multihead:::callback_call(cb, "on_train_begin", context = ctx)
    for (e in seq_along(losses)) {
      multihead:::callback_call(cb, "on_epoch_begin", e, context = ctx)
      multihead:::callback_call(cb, "on_epoch_end", e, list(loss = 1, val_loss = losses[e]), ctx)
    }
    expected <- if (mode == "min") c(1, 2, 4) else 1
    expect_identical(sort(list.files(file.path(dir, mode))), sprintf("e%d.rds", expected))
  }
  # initial_value_threshold: the first save must beat it; verbose messages
  cb <- callback_model_checkpoint(file.path(dir, "thr", "e{epoch}.rds"), monitor = "val_loss",
                                  save_best_only = TRUE, initial_value_threshold = 1.5, verbose = 1)
  multihead:::callback_call(cb, "on_train_begin", context = ctx)
  for (e in 1:3) {
    msg <- capture_messages(multihead:::callback_call(cb, "on_epoch_end", e, list(val_loss = losses[e]), ctx))
    if (e == 1) expect_match(msg, "Epoch 1: val_loss did not improve from 1.50000")
  }
  expect_false(dir.exists(file.path(dir, "thr")))
  msg <- capture_messages(multihead:::callback_call(cb, "on_epoch_end", 4, list(val_loss = 1), ctx))
  expect_match(msg, "Epoch 4: val_loss improved from 1.50000 to 1.00000, saving model to .*e4.rds")
  # a missing monitor saves with a warning
  expect_warning(multihead:::callback_call(cb, "on_epoch_end", 5, list(loss = 1), ctx),
                 "Can save best model only with `val_loss` available")
  expect_true(file.exists(file.path(dir, "thr", "e5.rds")))
  # weights only, in Keras's .weights.h5 layout and in the own format
  cb <- callback_model_checkpoint(file.path(dir, "w-{epoch}.weights.h5"), save_weights_only = TRUE)
  fit(a, d$x, d$y, epochs = 1, verbose = 0, callbacks = cb)
  b <- sgd_reg_model(seed = 99)
  load_model_weights(b, file.path(dir, "w-1.weights.h5"))
  expect_equal(get_weights(b), get_weights(a), tolerance = 1e-7)   # the .weights.h5 file holds float32
  cb <- callback_model_checkpoint(file.path(dir, "w-{epoch}.rds"), save_weights_only = TRUE)
  fit(a, d$x, d$y, epochs = 1, verbose = 0, callbacks = cb)
  load_model_weights(b, file.path(dir, "w-1.rds"))
  expect_identical(get_weights(b), get_weights(a))
  # whole models as Keras 3 .keras archives
  cb <- callback_model_checkpoint(file.path(dir, "k-{epoch}.keras"))
  fit(a, d$x, d$y, epochs = 1, verbose = 0, callbacks = cb)
  k <- load_model(file.path(dir, "k-1.keras"))
  expect_equal(get_weights(k), get_weights(a), tolerance = 1e-7)
  expect_arg_error(callback_model_checkpoint(file.path(dir, "m.weights.h5")), "filepath")
  expect_arg_error(callback_model_checkpoint(), "filepath")
  expect_arg_error(callback_model_checkpoint("m.rds", save_freq = 0), "save_freq")
  expect_arg_error(callback_model_checkpoint("m.rds", save_freq = "batch"), "save_freq")
  expect_arg_error(callback_model_checkpoint("m.rds", mode = "up"), "mode")
  expect_arg_error(callback_model_checkpoint("m.rds", initial_value_threshold = "a"), "initial_value_threshold")
})

test_that("model_checkpoint(save_freq = n) saves every n batches, counted across epochs", {
  set.seed(45)
  d <- regression_data(40)
  dir <- tempfile()
  on.exit(unlink(dir, recursive = TRUE))
  a <- sgd_reg_model()
  w <- list()
  rec <- callback_lambda(on_batch_end = function(batch, logs) w[[length(w) + 1L]] <<- get_weights(a))
  fit(a, d$x, d$y, batch_size = 8, epochs = 2, verbose = 0, shuffle = FALSE,
      callbacks = list(rec, callback_model_checkpoint(file.path(dir, "e{epoch}-b{batch}_{loss:.1e}.rds"),
                                                      save_freq = 3)))
  # 5 batches per epoch: saves after batches 3, 6 (epoch 2 batch 1) and 9 (epoch 2 batch 4)
  files <- list.files(dir)
  expect_identical(sort(sub("_.*$", "", files)), c("e1-b3", "e2-b1", "e2-b4"))
  m <- load_model(file.path(dir, files[startsWith(files, "e2-b1")]))
  expect_identical(get_weights(m), w[[6]])
})

test_that("backup_and_restore resumes an interrupted fit() exactly", {
  make <- function() {
    set.seed(46)
    inp <- keras_input(3)
    out <- inp |> layer_dense(8, activation = "relu", dtype = "float64") |> layer_dropout(0.3) |>
      layer_dense(1, dtype = "float64")
    m <- keras_model(inp, out)
    m |> compile(optimizer = optimizer_adam(0.01), loss = "mse", metrics = "mae")
    m
  }
  set.seed(47)
  d <- regression_data(30)
  dir <- tempfile()
  on.exit(unlink(dir, recursive = TRUE))
  # the uninterrupted run
  a <- make()
  set.seed(48)
  ha <- fit(a, d$x, d$y, batch_size = 8, epochs = 5, verbose = 0)
  # interrupted at the start of epoch 4, then resumed (after other draws from R's generator)
  b <- make()
  set.seed(48)
  stop_at_4 <- callback_lambda(on_epoch_begin = function(epoch, logs) if (epoch == 4) stop("power cut"))
  expect_error(fit(b, d$x, d$y, batch_size = 8, epochs = 5, verbose = 0,
                   callbacks = list(callback_backup_and_restore(dir), stop_at_4)), "power cut")
  expect_true(file.exists(file.path(dir, "latest.rds")))
  expect_identical(readRDS(file.path(dir, "training_metadata.rds"))$epoch, 4L)
  runif(3)
  fresh <- make()   # a new session: the same architecture, other weights
  set_weights(fresh, lapply(get_weights(fresh), function(w) w + 1))
  epochs <- integer()
  hb <- fit(fresh, d$x, d$y, batch_size = 8, epochs = 5, verbose = 0,
            callbacks = list(callback_backup_and_restore(dir),
                             callback_lambda(on_epoch_begin = function(epoch, logs) epochs[length(epochs) + 1L] <<- epoch)))
  expect_identical(epochs, 4:5)
  expect_identical(get_weights(fresh), get_weights(a))
  expect_identical(fresh$optimizer$iterations, a$optimizer$iterations)
  expect_identical(hb$metrics$loss, ha$metrics$loss[4:5])
  expect_identical(hb$metrics$mae, ha$metrics$mae[4:5])
  # finished: the backup is deleted (with its directory, now empty)
  expect_false(dir.exists(dir))
  # delete_checkpoint = FALSE keeps it; a finished backup makes the next fit() run nothing new
  c2 <- make()
  fit(c2, d$x, d$y, epochs = 2, verbose = 0, callbacks = callback_backup_and_restore(dir, delete_checkpoint = FALSE))
  expect_identical(sort(list.files(dir)), c("latest.rds", "training_metadata.rds"))
  h <- fit(c2, d$x, d$y, epochs = 2, verbose = 0, callbacks = callback_backup_and_restore(dir))
  expect_length(h$metrics, 0L)
  expect_false(dir.exists(dir))
  # other files in the directory are left alone
  dir.create(dir)
  writeLines("keep", file.path(dir, "notes.txt"))
  fit(c2, d$x, d$y, epochs = 1, verbose = 0, callbacks = callback_backup_and_restore(dir))
  expect_identical(list.files(dir), "notes.txt")
})

test_that("backup_and_restore every n batches restarts the interrupted epoch from the last backup", {
  set.seed(49)
  d <- regression_data(32)
  dir <- tempfile()
  on.exit(unlink(dir, recursive = TRUE))
  a <- sgd_reg_model()
  w <- list()
  rec <- callback_lambda(on_batch_end = function(batch, logs) w[[length(w) + 1L]] <<- get_weights(a),
                         on_batch_begin = function(batch, logs) if (length(w) == 7L) stop("crash"))
  # 4 batches per epoch; backups after batches 2 and 4 of epoch 1, batch 2 of epoch 2; crash before batch 8
  expect_error(fit(a, d$x, d$y, batch_size = 8, epochs = 3, verbose = 0, shuffle = FALSE,
                   callbacks = list(callback_backup_and_restore(dir, save_freq = 2), rec)), "crash")
  b <- sgd_reg_model(seed = 2)
  restored <- NULL
  epochs <- integer()
  fit(b, d$x, d$y, batch_size = 8, epochs = 2, verbose = 0, shuffle = FALSE,
      callbacks = list(callback_backup_and_restore(dir, save_freq = 2),
                       callback_lambda(on_train_begin = function(logs) restored <<- get_weights(b),
                                       on_epoch_begin = function(epoch, logs) epochs[length(epochs) + 1L] <<- epoch)))
  expect_identical(restored, w[[6]])
  expect_identical(epochs, 2L)
})

test_that("backup_and_restore with double_checkpoint falls back on the previous backup", {
  set.seed(50)
  d <- regression_data(16)
  dir <- tempfile()
  on.exit(unlink(dir, recursive = TRUE))
  a <- sgd_reg_model()
  w <- list()
  stop_at_3 <- callback_lambda(on_epoch_end = function(epoch, logs) w[[epoch]] <<- get_weights(a),
                               on_epoch_begin = function(epoch, logs) if (epoch == 3) stop("crash"))
  expect_error(fit(a, d$x, d$y, epochs = 4, verbose = 0,
                   callbacks = list(callback_backup_and_restore(dir, double_checkpoint = TRUE), stop_at_3)), "crash")
  expect_true(file.exists(file.path(dir, "latest.rds.bkp")))
  writeLines("garbage", file.path(dir, "latest.rds"))
  b <- sgd_reg_model(seed = 3)
  restored <- NULL
  epochs <- integer()
  fit(b, d$x, d$y, epochs = 2, verbose = 0,
      callbacks = list(callback_backup_and_restore(dir, double_checkpoint = TRUE),
                       callback_lambda(on_train_begin = function(logs) restored <<- get_weights(b),
                                       on_epoch_begin = function(epoch, logs) epochs[length(epochs) + 1L] <<- epoch)))
  expect_identical(restored, w[[1]])   # the backup of epoch 1
  expect_identical(epochs, 2L)
  # without a previous backup an unreadable one is an error
  dir.create(dir)
  writeLines("garbage", file.path(dir, "latest.rds"))
  expect_error(fit(b, d$x, d$y, epochs = 1, verbose = 0, callbacks = callback_backup_and_restore(dir)),
               "could not restore the backup", class = "multihead_error_file")
  expect_arg_error(callback_backup_and_restore(), "backup_dir")
  expect_arg_error(callback_backup_and_restore(""), "backup_dir")
  expect_arg_error(callback_backup_and_restore(dir, save_freq = FALSE), "save_freq")
  expect_arg_error(callback_backup_and_restore(dir, double_checkpoint = "yes"), "double_checkpoint")
  expect_arg_error(callback_backup_and_restore(dir, delete_checkpoint = NA), "delete_checkpoint")
  file <- tempfile()
  writeLines("x", file)
  on.exit(unlink(file), add = TRUE)
  expect_arg_error(callback_backup_and_restore(file), "backup_dir")
})

test_that("print() describes the new callbacks", {
  expect_output(print(callback_reduce_lr_on_plateau()), "ReduceLROnPlateau")
  expect_output(print(callback_csv_logger("log.csv")), "CSVLogger")
  expect_output(print(callback_terminate_on_nan()), "TerminateOnNaN")
  expect_output(print(callback_model_checkpoint("m-{epoch}.rds")), "ModelCheckpoint")
  expect_output(print(callback_backup_and_restore("backup")), "BackupAndRestore")
  expect_output(print(callback_learning_rate_scheduler(function(epoch, lr) lr)), "LearningRateScheduler")
})

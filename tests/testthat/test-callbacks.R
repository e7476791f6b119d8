# Callbacks: early stopping driven by scripted per-epoch values through the
# protocol fit() uses (stop epoch, restored weights, modes, min_delta,
# baseline, patience, start_from_epoch), the lambda callback's calls, and
# argument errors. Expected stop epochs are worked out by hand in comments.

ns <- asNamespace("multihead")
err <- "multihead_error_argument"

# A stand-in for fit(): one batch per epoch; the "model" weights are
# list(w = e) after epoch e; `values[e]` is the monitored quantity at the
# end of epoch e. Returns the number of epochs run, the final weights and the
# context.
simulate_fit <- function(callbacks, values, monitor = "val_loss", metric_directions = character()) {
  model <- new.env()
  model$weights <- list(w = 0)
  ctx <- ns$new_callback_context(get_weights = function() model$weights,
                                 set_weights = function(w) model$weights <- w,
                                 params = list(epochs = length(values), steps = 1L, verbose = 0L),
                                 metric_directions = metric_directions)
  cbs <- ns$as_callback_list(callbacks)
  ns$callbacks_call(cbs, "on_train_begin", context = ctx)
  logs <- NULL
  ran <- 0L
  for (epoch in seq_along(values)) {
    ns$callbacks_call(cbs, "on_epoch_begin", epoch, context = ctx)
    ns$callbacks_call(cbs, "on_train_batch_begin", 1L, context = ctx)
    model$weights <- list(w = epoch)
    ns$callbacks_call(cbs, "on_train_batch_end", 1L, list(loss = 1), ctx)
    logs <- list(loss = 1)
    logs[[monitor]] <- values[[epoch]]
    ns$callbacks_call(cbs, "on_epoch_end", epoch, logs, ctx)
    ran <- epoch
    if (ctx$stop_training) break
  }
  ns$callbacks_call(cbs, "on_train_end", logs = logs, context = ctx)
  list(epochs = ran, w = model$weights$w, context = ctx)
}

test_that("patience: stops after `patience` epochs without improvement, never at the first", {
  # best 1 (e1), 0.9 (e2); e3 does not improve: wait 1 >= 0 -> stop at 3.
  expect_identical(simulate_fit(callback_early_stopping(), c(1, 0.9, 0.95, 0.8))$epochs, 3L)
  # patience 0 but the first epoch never stops, even when it does not
  # improve (a NaN loss): e1 NaN, e2 1 improves, e3 does not -> stop at 3.
  expect_identical(simulate_fit(callback_early_stopping(), c(1, 1.5))$epochs, 2L)
  expect_identical(simulate_fit(callback_early_stopping(), c(NaN, 1, 2, 0))$epochs, 3L)
  expect_identical(simulate_fit(callback_early_stopping(), c(1, NaN, 0))$epochs, 2L)
  # e2 best 0.8; e3 wait 1; e4 wait 2 -> stop at 4.
  out <- simulate_fit(callback_early_stopping(patience = 2), c(1, 0.8, 0.85, 0.9, 0.7, 0.6))
  expect_identical(out$epochs, 4L)
  expect_identical(out$w, 4L)                 # no restore: last weights
  expect_true(out$context$stop_training)
  # An improvement resets the count: e4 improves; e5, e6 do not -> stop at 6.
  expect_identical(simulate_fit(callback_early_stopping(patience = 2),
                                c(1, 0.9, 0.95, 0.85, 0.9, 0.92, 0.5))$epochs, 6L)
  # Always improving: runs to the end.
  out <- simulate_fit(callback_early_stopping(patience = 1), c(5, 4, 3, 2))
  expect_identical(out$epochs, 4L)
  expect_false(out$context$stop_training)
})

test_that("restore_best_weights puts back the best epoch's weights", {
  out <- simulate_fit(callback_early_stopping(patience = 2, restore_best_weights = TRUE),
                      c(1, 0.8, 0.85, 0.9, 0.7, 0.6))
  expect_identical(out$epochs, 4L)
  expect_identical(out$w, 2L)
  # Also when training ends without stopping (as Keras 3 does).
  out <- simulate_fit(callback_early_stopping(patience = 5, restore_best_weights = TRUE), c(1, 0.5, 0.7))
  expect_identical(out$epochs, 3L)
  expect_identical(out$w, 2L)
  # With verbose = 1 both events are reported.
  cb <- callback_early_stopping(patience = 2, restore_best_weights = TRUE, verbose = 1)
  expect_message(expect_message(simulate_fit(cb, c(1, 0.8, 0.85, 0.9)), "Epoch 4: early stopping"),
                 "Restoring model weights from the end of the best epoch: 2\\.")
  expect_identical(cb$stopped_epoch, 4L)
  expect_identical(cb$best_epoch, 2L)
  expect_identical(cb$best, 0.8)
  # Silent by default.
  expect_silent(simulate_fit(callback_early_stopping(restore_best_weights = TRUE), c(1, 2)))
})

test_that("min_delta: smaller changes do not count as improvements", {
  # 0.95 + 0.1 is not below 1: wait 1 >= 1 at e2 -> stop at 2.
  expect_identical(simulate_fit(callback_early_stopping(patience = 1, min_delta = 0.1),
                                c(1, 0.95, 0.92, 0.85, 0.84))$epochs, 2L)
  # With 0.01: e2, e3, e4 improve; 0.84 + 0.01 is not below 0.85 -> stop at 5.
  expect_identical(simulate_fit(callback_early_stopping(patience = 1, min_delta = 0.01),
                                c(1, 0.95, 0.92, 0.85, 0.84))$epochs, 5L)
  # The sign of min_delta does not matter (Keras takes abs()).
  expect_identical(simulate_fit(callback_early_stopping(patience = 1, min_delta = -0.1),
                                c(1, 0.95, 0.92))$epochs, 2L)
  # For a quantity to maximise: 0.62 - 0.05 is not above 0.6 -> stop at 3.
  expect_identical(simulate_fit(callback_early_stopping("val_accuracy", patience = 1, min_delta = 0.05),
                                c(0.5, 0.6, 0.62, 0.9), monitor = "val_accuracy")$epochs, 3L)
})

test_that("mode: auto from the name, min, max, and compiled metric directions", {
  acc <- c(0.5, 0.6, 0.55, 0.58, 0.7)
  # auto: accuracy increases; e3 0.55 is not above 0.6 -> stop at 3.
  expect_identical(simulate_fit(callback_early_stopping("val_accuracy"), acc, "val_accuracy")$epochs, 3L)
  expect_identical(simulate_fit(callback_early_stopping("val_accuracy", mode = "max"), acc,
                                "val_accuracy")$epochs, 3L)
  # min on an accuracy: e2 0.6 is not below 0.5 -> stop at 2.
  expect_identical(simulate_fit(callback_early_stopping("val_accuracy", mode = "min"), acc,
                                "val_accuracy")$epochs, 2L)
  # max on a loss: e2 0.9 is not above 1 -> stop at 2.
  expect_identical(simulate_fit(callback_early_stopping(mode = "max"), c(1, 0.9, 2))$epochs, 2L)
  # auto: "loss", "mae" decrease; "acc" increases.
  expect_identical(simulate_fit(callback_early_stopping("loss"), c(1, 0.9, 0.95), "loss")$epochs, 3L)
  expect_identical(simulate_fit(callback_early_stopping("val_mae"), c(1, 0.9, 0.95), "val_mae")$epochs, 3L)
  expect_identical(simulate_fit(callback_early_stopping("acc"), c(0.1, 0.2, 0.15), "acc")$epochs, 3L)
  # Keras's AUC, precision and recall increase
  expect_identical(simulate_fit(callback_early_stopping("val_auc"), c(0.5, 0.6, 0.55), "val_auc")$epochs, 3L)
  expect_identical(simulate_fit(callback_early_stopping("recall"), c(0.5, 0.6, 0.55), "recall")$epochs, 3L)
  expect_identical(simulate_fit(callback_early_stopping("precision"), c(0.5, 0.4, 0.3), "precision")$epochs, 2L)
  # A name it cannot place is an error unless the compiled metrics say.
  expect_error(simulate_fit(callback_early_stopping("val_my_score"), c(0.5, 0.6), "val_my_score"),
               "mode = \"max\"", class = err)
  expect_identical(simulate_fit(callback_early_stopping("val_my_score"), c(0.5, 0.6, 0.55), "val_my_score",
                                metric_directions = c(my_score = "up"))$epochs, 3L)
  expect_identical(simulate_fit(callback_early_stopping("val_my_score"), c(0.5, 0.6, 0.55), "val_my_score",
                                metric_directions = c(my_score = "down"))$epochs, 2L)
})

test_that("baseline: only values that beat it reset the count", {
  # Flat above the baseline: e1 improves on Inf but not the baseline (wait
  # 1); e2 does not improve, wait 2 >= 2 -> stop at 2.
  expect_identical(simulate_fit(callback_early_stopping(patience = 2, baseline = 0.5),
                                c(0.8, 0.8, 0.8, 0.8))$epochs, 2L)
  # Improving every epoch but above the baseline: an improvement never
  # stops (as in Keras) -> runs all 5.
  expect_identical(simulate_fit(callback_early_stopping(patience = 2, baseline = 0.5),
                                c(0.9, 0.8, 0.7, 0.6, 0.55))$epochs, 5L)
  # e2 beats the baseline (wait 0); e3 wait 1; e4 wait 2 -> stop at 4.
  expect_identical(simulate_fit(callback_early_stopping(patience = 2, baseline = 0.5),
                                c(0.9, 0.4, 0.45, 0.46, 0.47))$epochs, 4L)
  # No epoch beats the baseline: the best of those seen is restored.
  # e1 wait 1; e2 improves (wait 2, not reset); e3 wait 3 -> stop at 3.
  out <- simulate_fit(callback_early_stopping(patience = 2, baseline = 0.5, restore_best_weights = TRUE),
                      c(0.8, 0.7, 0.75, 0.9))
  expect_identical(out$epochs, 3L)
  expect_identical(out$w, 2L)
})

test_that("start_from_epoch: the first epochs are not monitored", {
  # Without it: e2 (2) does not improve on 1 -> stop at 2.
  expect_identical(simulate_fit(callback_early_stopping(), c(1, 2, 3, 2.5, 2.6, 2.7))$epochs, 2L)
  # Epochs 1 and 2 skipped; e3 best 3, e4 best 2.5, e5 no -> stop at 5.
  out <- simulate_fit(callback_early_stopping(start_from_epoch = 2, restore_best_weights = TRUE),
                      c(1, 2, 3, 2.5, 2.6, 2.7))
  expect_identical(out$epochs, 5L)
  expect_identical(out$w, 4L)
})

test_that("a missing monitored value warns and never stops; callbacks can be reused", {
  warns <- capture_warnings(out <- simulate_fit(callback_early_stopping(), c(1, 2, 3), monitor = "val_acc"))
  expect_length(warns, 3)                     # one per epoch, as in Keras
  expect_match(warns[[1]], "`val_loss`.*Available metrics are: loss,val_acc")
  expect_identical(out$epochs, 3L)
  cb <- callback_early_stopping(patience = 1, restore_best_weights = TRUE)
  first <- simulate_fit(cb, c(1, 0.8, 0.9, 0.95))
  second <- simulate_fit(cb, c(1, 0.8, 0.9, 0.95))
  expect_identical(first[c("epochs", "w")], second[c("epochs", "w")])
  expect_identical(first$epochs, 3L)
  # A second fit with other values starts afresh (best reset to Inf).
  expect_identical(simulate_fit(cb, c(5, 4, 3, 2))$epochs, 4L)
})

test_that("several callbacks run in order; the lambda callback gets every call", {
  calls <- character()
  rec <- function(tag) function(...) {
    args <- list(...)
    calls <<- c(calls, paste(tag, if (length(args) == 2L) args[[1]] else "-"))
  }
  lam <- callback_lambda(on_epoch_begin = rec("epoch_begin"), on_epoch_end = rec("epoch_end"),
                         on_batch_begin = rec("batch_begin"), on_batch_end = rec("batch_end"),
                         on_train_begin = rec("train_begin"), on_train_end = rec("train_end"))
  out <- simulate_fit(list(callback_early_stopping(), lam), c(1, 2, 3))
  expect_identical(out$epochs, 2L)
  expect_identical(calls, c("train_begin -", "epoch_begin 1", "batch_begin 1", "batch_end 1", "epoch_end 1",
                            "epoch_begin 2", "batch_begin 1", "batch_end 1", "epoch_end 2", "train_end -"))
  # Logs reach the functions; Keras 3's batch hook names work too.
  seen <- list()
  lam2 <- callback_lambda(on_epoch_end = function(epoch, logs) seen[[paste0("e", epoch)]] <<- logs$val_loss,
                          on_train_batch_end = function(batch, logs) seen$batch <<- logs$loss,
                          on_train_end = function(logs) seen$end <<- logs)
  simulate_fit(lam2, c(0.3, 0.2))
  expect_identical(seen$e1, 0.3)
  expect_identical(seen$e2, 0.2)
  expect_identical(seen$batch, 1)
  expect_identical(seen$end, list(loss = 1, val_loss = 0.2))
  # A lambda may stop nothing; an empty one is fine.
  expect_identical(simulate_fit(callback_lambda(), c(1, 2))$epochs, 2L)
})

test_that("print() describes the callback", {
  expect_output(print(callback_early_stopping()),
                paste0("^<callback EarlyStopping monitor=\"val_loss\" min_delta=0 patience=0 verbose=0 ",
                       "mode=\"auto\" baseline=NULL restore_best_weights=FALSE start_from_epoch=0>$"))
  expect_output(print(callback_lambda(on_epoch_end = function(epoch, logs) NULL)),
                "^<callback LambdaCallback on_epoch_end>$")
})

test_that("bad arguments are errors naming them", {
  es <- callback_early_stopping
  expect_error(es(monitor = ""), "`monitor`", class = err)
  expect_error(es(monitor = c("a", "b")), "`monitor`", class = err)
  expect_error(es(min_delta = NA), "`min_delta`", class = err)
  expect_error(es(patience = -1), "`patience`", class = err)
  expect_error(es(patience = 1.5), "`patience`", class = err)
  expect_error(es(verbose = "yes"), "`verbose`", class = err)
  expect_error(es(mode = "biggest"), "`mode`.*\"auto\", \"min\", \"max\"", class = err)
  expect_error(es(baseline = "0.5"), "`baseline`", class = err)
  expect_error(es(restore_best_weights = NA), "`restore_best_weights`", class = err)
  expect_error(es(start_from_epoch = -2), "`start_from_epoch`", class = err)
  expect_error(callback_lambda(on_epoch_end = 1), "`on_epoch_end`", class = err)
  expect_error(callback_lambda(on_train_begin = "f"), "`on_train_begin`", class = err)
  expect_error(callback_lambda(on_batch_end = list()), "`on_batch_end`", class = err)
  expect_error(callback_lambda(on_train_batch_begin = 2), "`on_train_batch_begin`", class = err)
  expect_error(callback_lambda(on_batch_begin = identity, on_train_batch_begin = identity),
               "`on_train_batch_begin`", class = err)
  # The internal protocol checks what fit() passes.
  ctx <- ns$new_callback_context()
  cb <- es()
  expect_error(ns$as_callback_list("early"), "`callbacks`", class = err)
  expect_error(ns$as_callback_list(list(cb, 3)), "`callbacks\\[\\[2\\]\\]`", class = err)
  expect_identical(ns$as_callback_list(NULL), list())
  expect_identical(ns$as_callback_list(cb), list(cb))
  expect_error(ns$callback_call(cb, "on_epoch_ending", 1, NULL, ctx), "`hook`", class = err)
  expect_error(ns$callback_call(cb, "on_epoch_end", NULL, list(val_loss = 1), ctx), "`index`", class = err)
  expect_error(ns$callback_call(cb, "on_train_begin", 1, NULL, ctx), "`index`", class = err)
  expect_error(ns$callback_call(cb, "on_epoch_end", 1, list(1), ctx), "`logs`", class = err)
  expect_error(ns$callback_call(cb, "on_epoch_end", 1, list(val_loss = 1)), "`context`", class = err)
  expect_error(ns$callback_call("cb", "on_epoch_end", 1, NULL, ctx), "`cb`", class = err)
  expect_error(ns$new_callback_context(get_weights = 1), "`get_weights`", class = err)
  expect_error(ns$new_callback_context(set_weights = "f"), "`set_weights`", class = err)
  expect_error(ns$new_callback_context(metric_directions = c(acc = "sideways")), "`metric_directions`",
               class = err)
  # restore_best_weights without access to the weights is a clear error.
  restore <- es(restore_best_weights = TRUE)
  ns$callback_call(restore, "on_train_begin", context = ctx)
  expect_error(ns$callback_call(restore, "on_epoch_end", 1, list(val_loss = 1), ctx), "get_weights")
})

# Callbacks with Keras 3's semantics and keras3's R names.
#
# A callback is an environment of class c(<Keras class name>,
# "multihead_callback") holding its configuration and state as plain R data.
# Its behaviour is the table callback_methods()[[class_name]]: hook name ->
# function(cb, index, logs, context).
#
# The protocol fit() follows (epochs and batches are numbered from 1, as in
# keras3's R callbacks; `logs` is a named list of numbers):
#
#   context <- new_callback_context(model = <the model>,
#                                   get_weights = function() <the model's
#                                     weights>,
#                                   set_weights = function(weights) <set them>,
#                                   params = list(epochs =, steps =, verbose =),
#                                   metric_directions = c(accuracy = "up"))
#   callbacks <- as_callback_list(callbacks)
#   callbacks_call(callbacks, "on_train_begin", context = context)
#   initial_epoch <- context$initial_epoch %||% initial_epoch   # set by a
#                                      # callback that resumes training
#   for (epoch in initial_epoch:epochs) {
#     callbacks_call(callbacks, "on_epoch_begin", epoch, context = context)
#     for (batch in seq_len(steps)) {
#       callbacks_call(callbacks, "on_train_batch_begin", batch, context = context)
#       <one optimizer step>
#       callbacks_call(callbacks, "on_train_batch_end", batch,
#                      <running loss and metrics>, context)
#       if (context$stop_training) break
#     }
#     logs <- callbacks_call(callbacks, "on_epoch_end", epoch,
#                            <epoch loss and metrics, then val_ ones>, context)
#     <the history records these logs (with what callbacks added, e.g.
#      learning_rate), as Keras's History callback, which runs last>
#     if (context$stop_training) break
#   }
#   callbacks_call(callbacks, "on_train_end", logs = <last epoch's logs>,
#                  context = context)
#
# A hook returns the logs the next callback sees: custom callbacks may update
# them, and a built-in method returns them with class "multihead_updated_logs"
# when it adds to them (learning-rate callbacks add `learning_rate`).
# A callback asks training to stop by setting context$stop_training to TRUE;
# early stopping reads and restores the model's weights through
# context$get_weights() / context$set_weights(). metric_directions names the
# compiled metrics ("up" when larger is better, NA when unknown, as for a
# custom metric) so that mode = "auto" can tell which way a monitored metric
# should go. Custom callbacks (Callback(), callback-class.R) see the model
# as `self$model` (its `stop_training` is the context's) and the params as
# `self$params`.

#' Stop training when a monitored quantity has stopped improving
#'
#' Keras 3's `EarlyStopping`. At the end of each epoch the value of `monitor`
#' in the epoch's logs is compared with the best so far: it improves when it
#' is lower by more than `min_delta` (or higher, for a quantity to maximise).
#' Training stops when `patience` epochs in a row have not improved (never
#' at the first epoch). With `baseline`, the count of epochs without
#' improvement is only reset by values that also beat the baseline. Epochs
#' up to `start_from_epoch` are not monitored. With `restore_best_weights =
#' TRUE` the weights of the best epoch are put back when training ends.
#'
#' @param monitor A string: the quantity to monitor, a name in the epoch's
#'   logs such as `"val_loss"`, `"loss"` or `"val_accuracy"`.
#' @param min_delta A number: the smallest change that counts as an
#'   improvement (its absolute value is used).
#' @param patience A whole number >= 0: epochs without improvement before
#'   stopping.
#' @param verbose 0 or 1: whether to print a message when stopping and when
#'   restoring weights.
#' @param mode `"auto"`, `"min"` or `"max"`: whether the quantity should
#'   decrease or increase. `"auto"` decides from the name: losses decrease,
#'   accuracies increase, and other compiled metrics go their own way.
#' @param baseline `NULL` or a number the quantity must beat.
#' @param restore_best_weights `TRUE` or `FALSE`: whether to restore the
#'   weights of the best epoch at the end of training (an epoch is restored
#'   even when none beat `baseline`).
#' @param start_from_epoch A whole number >= 0: the number of epochs to wait
#'   before monitoring.
#' @returns A callback (an environment of class `"multihead_callback"`) to
#'   pass in `fit()`'s `callbacks`.
#' @examples
#' callback_early_stopping(monitor = "val_loss", patience = 3,
#'                         restore_best_weights = TRUE)
#' @family callbacks
#' @export
callback_early_stopping <- function(monitor = "val_loss", min_delta = 0, patience = 0, verbose = 0,
                                    mode = "auto", baseline = NULL, restore_best_weights = FALSE,
                                    start_from_epoch = 0) {
  config <- list(monitor = check_string(monitor, "monitor"),
                 min_delta = abs(check_number(min_delta, "min_delta")),
                 patience = check_whole(patience, "patience", min = 0L),
                 verbose = check_whole(verbose, "verbose", min = 0L),
                 mode = check_choice(mode, "mode", c("auto", "min", "max")),
                 baseline = check_number(baseline, "baseline", null_ok = TRUE),
                 restore_best_weights = check_flag(restore_best_weights, "restore_best_weights"),
                 start_from_epoch = check_whole(start_from_epoch, "start_from_epoch", min = 0L))
  cb <- new_callback("EarlyStopping", config)
  early_stopping_reset(cb)
  cb
}

#' Create a callback from R functions
#'
#' Keras 3's `LambdaCallback`: each argument is `NULL` or a function run at
#' that point of training. Epoch and batch numbers start at 1, as in keras3.
#' `on_epoch_begin` and `on_epoch_end` are called as `f(epoch, logs)`,
#' `on_batch_begin` and `on_batch_end` (also accepted under Keras 3's names
#' `on_train_batch_begin` and `on_train_batch_end`) as `f(batch, logs)`,
#' `on_train_begin` and `on_train_end` as `f(logs)`. `logs` is a named list:
#' the loss and metrics so far (and, at the end of an epoch, the `val_`
#' ones).
#'
#' @param on_epoch_begin,on_epoch_end `NULL` or `function(epoch, logs)`.
#' @param on_batch_begin,on_batch_end `NULL` or `function(batch, logs)`.
#' @param on_train_begin,on_train_end `NULL` or `function(logs)`.
#' @param on_train_batch_begin,on_train_batch_end Keras 3's names for
#'   `on_batch_begin` and `on_batch_end` (give one or the other).
#' @inherit callback_early_stopping return
#' @examples
#' losses <- c()
#' cb <- callback_lambda(on_epoch_end = function(epoch, logs) {
#'   losses[epoch] <<- logs$loss
#' })
#' cb
#' @family callbacks
#' @export
callback_lambda <- function(on_epoch_begin = NULL, on_epoch_end = NULL, on_batch_begin = NULL,
                            on_batch_end = NULL, on_train_begin = NULL, on_train_end = NULL,
                            on_train_batch_begin = NULL, on_train_batch_end = NULL) {
  for (pair in list(c("on_batch_begin", "on_train_batch_begin"), c("on_batch_end", "on_train_batch_end"))) {
    if (!is.null(get(pair[[1L]])) && !is.null(get(pair[[2L]]))) {
      abort_arg(pair[[2L]], sprintf("NULL when `%s` is given (they are the same hook)", pair[[1L]]),
                "a function")
    }
  }
  fns <- list(on_epoch_begin = on_epoch_begin, on_epoch_end = on_epoch_end,
              on_train_batch_begin = if (is.null(on_batch_begin)) on_train_batch_begin else on_batch_begin,
              on_train_batch_end = if (is.null(on_batch_end)) on_train_batch_end else on_batch_end,
              on_train_begin = on_train_begin, on_train_end = on_train_end)
  given <- c(on_batch_begin = "on_train_batch_begin", on_batch_end = "on_train_batch_end")
  for (nm in names(fns)) {
    f <- fns[[nm]]
    if (!is.null(f) && !is.function(f)) {
      arg <- nm
      alias <- names(given)[given == nm]
      if (length(alias) && !is.null(get(alias))) arg <- alias
      abort_arg(arg, "NULL or a function", describe_value(f))
    }
  }
  new_callback("LambdaCallback", list(functions = Filter(Negate(is.null), fns)))
}

#' @export
print.multihead_callback <- function(x, ...) {
  cfg <- x$config
  if (identical(x$class_name, "LambdaCallback")) {
    cat(sprintf("<callback LambdaCallback %s>\n", paste(names(cfg$functions), collapse = " ")))
  } else {
    cat(format_spec(list(class_name = x$class_name, config = cfg), "callback"), "\n", sep = "")
  }
  invisible(x)
}

# --- internal API for fit() -------------------------------------------------

# The hooks, in the order fit() calls them (see the protocol above).
#' @noRd
callback_hooks <- function() {
  c("on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_train_batch_end",
    "on_epoch_end", "on_train_end")
}

# The hooks a custom callback may have (fit() calls callback_hooks(); the
# test and predict hooks are for evaluate() and predict()).
#' @noRd
callback_all_hooks <- function() {
  c(callback_hooks(), "on_test_begin", "on_test_batch_begin", "on_test_batch_end", "on_test_end",
    "on_predict_begin", "on_predict_batch_begin", "on_predict_batch_end", "on_predict_end")
}

# What fit() passes to every callback: an environment with
#   model              NULL or the model being trained (custom callbacks'
#                      self$model)
#   stop_training      FALSE; a callback sets TRUE to stop after this batch
#                      or epoch
#   get_weights()      -> the model's weights (any R value set_weights takes)
#   set_weights(w)     sets them
#   params             list(epochs =, steps =, verbose =, ...)
#   metric_directions  named character: compiled metric name -> "up"/"down"
#                      (NA: unknown)
#' @noRd
new_callback_context <- function(get_weights = NULL, set_weights = NULL, params = list(),
                                 metric_directions = character(), model = NULL) {
  for (nm in c("get_weights", "set_weights")) {
    f <- get(nm)
    if (!is.null(f) && !is.function(f)) abort_arg(nm, "NULL or a function", describe_value(f))
  }
  if (!is.list(params)) abort_arg("params", "a list", describe_value(params))
  ok <- is.character(metric_directions) && all(metric_directions %in% c("up", "down", NA)) &&
    (length(metric_directions) == 0L || !is.null(names(metric_directions)))
  if (!ok) abort_arg("metric_directions", "a named character vector of \"up\", \"down\" and NA",
                     describe_value(metric_directions))
  if (!is.null(model) && !inherits(model, "multihead_model")) {
    abort_arg("model", "NULL or a model", describe_value(model))
  }
  ctx <- new.env(parent = emptyenv())
  ctx$model <- model
  ctx$stop_training <- FALSE
  ctx$get_weights <- get_weights
  ctx$set_weights <- set_weights
  ctx$params <- params
  ctx$metric_directions <- metric_directions
  ctx$initial_epoch <- NULL
  class(ctx) <- "multihead_callback_context"
  ctx
}

# fit()'s `callbacks` -> a list of callbacks: NULL, one callback, or a list
# of them.
#' @noRd
as_callback_list <- function(x, arg = "callbacks") {
  if (is.null(x)) return(list())
  if (is_callback(x)) return(list(x))
  if (is_class_constructor(x)) x <- list(x)
  if (!is.list(x) || is.object(x)) abort_arg(arg, "NULL, a callback or a list of callbacks", describe_value(x))
  for (i in seq_along(x)) {
    if (is_class_constructor(x[[i]])) {
      abort_arg(sprintf("%s[[%d]]", arg, i), "a callback: call the class's constructor to create one",
                sprintf("the constructor of class \"%s\"", class_constructor_def(x[[i]])$classname))
    }
    if (!is_callback(x[[i]])) {
      abort_arg(sprintf("%s[[%d]]", arg, i), "a callback (e.g. from callback_early_stopping())",
                describe_value(x[[i]]))
    }
  }
  unname(x)
}

#' @noRd
is_callback <- function(x) inherits(x, "multihead_callback")

# Runs one hook of one callback. `index` is the epoch or batch number (NULL
# for on_train_begin / on_train_end and the other begin / end hooks);
# `context` is fit()'s callback context. Returns the logs (invisibly), which a
# custom callback may have updated.
#' @noRd
callback_call <- function(cb, hook, index = NULL, logs = NULL, context) {
  if (!is_callback(cb)) abort_arg("cb", "a callback", describe_value(cb))
  check_choice(hook, "hook", callback_all_hooks())
  indexed <- !hook %in% c("on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
                          "on_predict_begin", "on_predict_end")
  if (indexed) index <- check_whole(index, "index") else if (!is.null(index)) {
    abort_arg("index", sprintf("NULL for %s", hook), describe_value(index))
  }
  if (!is.null(logs) && !(is.list(logs) && (length(logs) == 0L || !is.null(names(logs))))) {
    abort_arg("logs", "NULL or a named list", describe_value(logs))
  }
  if (missing(context) || !inherits(context, "multihead_callback_context")) {
    abort_arg("context", "a callback context from new_callback_context()",
              if (missing(context)) "missing" else describe_value(context))
  }
  if (is_class_instance(cb)) return(invisible(custom_callback_call(cb, hook, index, logs, context)))
  method <- callback_methods()[[cb$class_name]][[hook]]
  if (!is.null(method)) {
    res <- method(cb, index, logs, context)
    # a built-in callback that adds to the logs (e.g. learning_rate) returns them so marked
    if (inherits(res, "multihead_updated_logs")) logs <- unclass(res)
  }
  invisible(logs)
}

# Runs one hook of every callback in the list, in order (each sees the logs
# as the custom callbacks before it updated them); returns the logs
# (invisibly).
#' @noRd
callbacks_call <- function(callbacks, hook, index = NULL, logs = NULL, context) {
  for (cb in callbacks) logs <- callback_call(cb, hook, index, logs, context)
  invisible(logs)
}

# --- construction -----------------------------------------------------------

#' @noRd
new_callback <- function(class_name, config) {
  cb <- new.env(parent = emptyenv())
  cb$class_name <- class_name
  cb$config <- config
  class(cb) <- c(class_name, "multihead_callback")
  cb
}

# Class name -> hook -> function(cb, index, logs, context).
#' @noRd
callback_methods <- function() {
  lambda <- function(hook) function(cb, index, logs, context) {
    f <- cb$config$functions[[hook]]
    if (is.null(f)) return(invisible(NULL))
    if (is.null(index)) f(logs) else f(index, logs)
  }
  list(
    EarlyStopping = list(on_train_begin = function(cb, index, logs, context) early_stopping_reset(cb),
                         on_epoch_end = early_stopping_epoch_end,
                         on_train_end = early_stopping_train_end),
    LambdaCallback = stats::setNames(lapply(callback_hooks(), lambda), callback_hooks()),
    ReduceLROnPlateau = list(on_train_begin = function(cb, index, logs, context) reduce_lr_reset(cb),
                             on_epoch_end = reduce_lr_epoch_end),
    LearningRateScheduler = list(on_epoch_begin = lr_scheduler_epoch_begin,
                                 on_epoch_end = function(cb, index, logs, context) {
                                   logs_with_learning_rate(logs, context, cb)
                                 }),
    CSVLogger = list(on_train_begin = csv_logger_train_begin, on_epoch_end = csv_logger_epoch_end),
    TerminateOnNaN = list(on_train_batch_end = terminate_on_nan_batch_end),
    ModelCheckpoint = list(on_train_begin = function(cb, index, logs, context) checkpoint_reset(cb),
                           on_epoch_begin = function(cb, index, logs, context) cb$current_epoch <- index,
                           on_train_batch_end = checkpoint_batch_end,
                           on_epoch_end = checkpoint_epoch_end),
    BackupAndRestore = list(on_train_begin = backup_train_begin, on_epoch_begin = backup_epoch_begin,
                            on_train_batch_end = backup_batch_end, on_epoch_end = backup_epoch_end,
                            on_train_end = backup_train_end)
  )
}

# --- early stopping ---------------------------------------------------------
# State (in the callback): wait, stopped_epoch (0 = not stopped), best,
# best_epoch, best_weights, direction ("min"/"max", NULL until the first
# epoch end, when the compiled metrics are known).

#' @noRd
early_stopping_reset <- function(cb) {
  cb$wait <- 0L
  cb$stopped_epoch <- 0L
  cb$best <- NULL
  cb$best_epoch <- 0L
  cb$best_weights <- NULL
  cb$direction <- NULL
  invisible(cb)
}

#' @noRd
early_stopping_direction <- function(cb, context) {
  cfg <- cb$config
  if (cfg$mode != "auto") return(cfg$mode)
  name <- sub("^val_", "", cfg$monitor)
  if (name == "loss") return("min")
  known <- context$metric_directions[!is.na(context$metric_directions)]
  dirs <- c(known, default_metric_directions())
  if (name %in% names(dirs)) return(if (dirs[[name]] == "up") "max" else "min")
  abort_msg(sprintf(paste0("%s cannot tell whether `monitor` \"%s\" should be maximized ",
                           "or minimized; give `mode = \"max\"` or `mode = \"min\"`."), cb$class_name, cfg$monitor),
            class = "multihead_error_argument")
}

# Directions of the metric names known without a model.
#' @noRd
default_metric_directions <- function() {
  nms <- metric_names()
  # Keras's metrics with direction "up": the accuracies, AUC, Precision and Recall
  stats::setNames(ifelse(nms == "auto" | grepl("Accuracy$|^AUC$|^Precision$|^Recall$", nms), "up", "down"),
                  names(nms))
}

#' @noRd
early_stopping_improves <- function(cb, value, reference) {
  # NaN never improves (Keras's comparisons are then false).
  isTRUE(if (cb$direction == "min") value + cb$config$min_delta < reference
         else value - cb$config$min_delta > reference)
}

#' @noRd
early_stopping_epoch_end <- function(cb, epoch, logs, context) {
  cfg <- cb$config
  if (is.null(cb$direction)) {
    cb$direction <- early_stopping_direction(cb, context)
    cb$best <- if (cb$direction == "min") Inf else -Inf
  }
  current <- logs[[cfg$monitor]]
  if (is.null(current)) {
    warning(sprintf("Early stopping conditioned on metric `%s` which is not available. Available metrics are: %s",
                    cfg$monitor, paste(names(logs), collapse = ",")), call. = FALSE)
    return(invisible(NULL))
  }
  if (epoch - 1L < cfg$start_from_epoch) return(invisible(NULL))
  if (cfg$restore_best_weights && is.null(cb$best_weights)) {
    cb$best_weights <- early_stopping_weights(context)
    cb$best_epoch <- epoch
  }
  cb$wait <- cb$wait + 1L
  if (early_stopping_improves(cb, current, cb$best)) {
    cb$best <- current
    cb$best_epoch <- epoch
    if (cfg$restore_best_weights) cb$best_weights <- early_stopping_weights(context)
    if (is.null(cfg$baseline) || early_stopping_improves(cb, current, cfg$baseline)) cb$wait <- 0L
    return(invisible(NULL))
  }
  if (cb$wait >= cfg$patience && epoch > 1L) {
    cb$stopped_epoch <- epoch
    context$stop_training <- TRUE
  }
  invisible(NULL)
}

#' @noRd
early_stopping_train_end <- function(cb, index, logs, context) {
  cfg <- cb$config
  if (cb$stopped_epoch > 0L && cfg$verbose > 0L) {
    message(sprintf("Epoch %d: early stopping", cb$stopped_epoch))
  }
  if (cfg$restore_best_weights && !is.null(cb$best_weights)) {
    if (cfg$verbose > 0L) {
      message(sprintf("Restoring model weights from the end of the best epoch: %d.", cb$best_epoch))
    }
    if (is.null(context$set_weights)) {
      abort_msg("restore_best_weights = TRUE needs the callback context's set_weights().")
    }
    context$set_weights(cb$best_weights)
  }
  invisible(NULL)
}

#' @noRd
early_stopping_weights <- function(context) {
  if (is.null(context$get_weights)) {
    abort_msg("restore_best_weights = TRUE needs the callback context's get_weights().")
  }
  context$get_weights()
}

# --- learning rate callbacks ------------------------------------------------

#' Reduce the learning rate when a monitored quantity has stopped improving
#'
#' Keras 3's `ReduceLROnPlateau`. At the end of each epoch the value of
#' `monitor` is compared with the best so far: it improves when it is lower
#' by more than `min_delta` (higher, for a quantity to maximise; the first
#' value always improves). After `patience` epochs in a row without
#' improvement the optimizer's learning rate becomes `max(lr * factor,
#' min_lr)` (when it is above `min_lr`), and the count starts again after
#' `cooldown` epochs in which epochs without improvement are not counted.
#' The epoch's logs (and so the history) get the learning rate as
#' `learning_rate`.
#'
#' The optimizer's learning rate must be a number (not a learning rate
#' schedule), as in Keras.
#'
#' @param monitor A string: the quantity to monitor, a name in the epoch's
#'   logs such as `"val_loss"`.
#' @param factor A number in \[0, 1): the factor the learning rate is
#'   multiplied by.
#' @param patience A whole number >= 0: epochs without improvement before the
#'   learning rate is reduced.
#' @param verbose 0 or 1: whether to print a message when reducing.
#' @param mode `"auto"`, `"min"` or `"max"`, as in [callback_early_stopping()].
#' @param min_delta A number: the smallest change that counts as an
#'   improvement (its absolute value is used).
#' @param cooldown A whole number >= 0: epochs to wait after a reduction
#'   before counting epochs without improvement again.
#' @param min_lr A number >= 0: the lower bound of the learning rate.
#' @param ... Must be empty.
#' @inherit callback_early_stopping return
#' @examples
#' callback_reduce_lr_on_plateau(monitor = "val_loss", factor = 0.2,
#'                               patience = 5, min_lr = 0.001)
#' @family callbacks
#' @export
callback_reduce_lr_on_plateau <- function(monitor = "val_loss", factor = 0.1, patience = 10, verbose = 0,
                                          mode = "auto", min_delta = 1e-04, cooldown = 0, min_lr = 0, ...) {
  if (...length()) abort_arg("...", "empty", sprintf("%d more argument(s)", ...length()))
  factor <- check_number(factor, "factor", lower = 0)
  if (factor >= 1) abort_arg("factor", "a number in [0, 1) (the learning rate is multiplied by it)", format(factor))
  config <- list(monitor = check_string(monitor, "monitor"), factor = factor,
                 patience = check_whole(patience, "patience", min = 0L),
                 verbose = check_whole(verbose, "verbose", min = 0L),
                 mode = check_choice(mode, "mode", c("auto", "min", "max")),
                 min_delta = abs(check_number(min_delta, "min_delta")),
                 cooldown = check_whole(cooldown, "cooldown", min = 0L),
                 min_lr = check_number(min_lr, "min_lr", lower = 0))
  cb <- new_callback("ReduceLROnPlateau", config)
  reduce_lr_reset(cb)
  cb
}

#' @noRd
reduce_lr_reset <- function(cb) {
  cb$best <- NULL
  cb$wait <- 0L
  cb$cooldown_counter <- 0L
  cb$direction <- NULL
  invisible(cb)
}

# Keras's monitor comparison: improves on `best` (NULL: always) by more than
# min_delta in the callback's direction.
#' @noRd
monitor_improves <- function(cb, current, best, min_delta) {
  if (is.null(best)) return(TRUE)
  isTRUE(if (cb$direction == "min") current + min_delta < best else current - min_delta > best)
}

#' @noRd
reduce_lr_epoch_end <- function(cb, epoch, logs, context) {
  cfg <- cb$config
  if (is.null(cb$direction)) cb$direction <- early_stopping_direction(cb, context)
  opt <- callback_optimizer(cb, context)
  logs <- logs_with_learning_rate(logs, context, cb)
  current <- logs[[cfg$monitor]]
  if (is.null(current)) {
    warning(sprintf("Learning rate reduction is conditioned on metric `%s` which is not available. Available metrics are: %s",
                    cfg$monitor, paste(names(logs), collapse = ",")), call. = FALSE)
    return(logs)
  }
  if (cb$cooldown_counter > 0L) {
    cb$cooldown_counter <- cb$cooldown_counter - 1L
    cb$wait <- 0L
  }
  if (monitor_improves(cb, current, cb$best, cfg$min_delta)) {
    cb$best <- current
    cb$wait <- 0L
  } else if (cb$cooldown_counter == 0L) {
    cb$wait <- cb$wait + 1L
    if (cb$wait >= cfg$patience) {
      old <- callback_learning_rate(cb, opt)
      # Keras compares with min_lr in float32
      if (old > round_float32(cfg$min_lr)) {
        new <- max(old * cfg$factor, cfg$min_lr)
        opt$learning_rate <- new
        if (cfg$verbose > 0L) message(sprintf("Epoch %d: ReduceLROnPlateau reducing learning rate to %s.", epoch,
                                              format_py_float(new)))
        cb$cooldown_counter <- cfg$cooldown
        cb$wait <- 0L
      }
    }
  }
  logs
}

#' Set the learning rate at the start of each epoch from a function
#'
#' Keras 3's `LearningRateScheduler`: at the start of each epoch
#' `schedule(epoch, lr)` is called with the epoch's index counted from 0
#' (as keras3 passes it: the first epoch is 0, and with `initial_epoch = 3`
#' the first epoch run is 2) and the optimizer's current learning rate; the
#' number it returns becomes the learning rate. A `schedule` with a single
#' argument is called as `schedule(epoch)`. The epoch's logs (and so the
#' history) get the learning rate as `learning_rate`.
#'
#' The optimizer's learning rate must be a number (not a learning rate
#' schedule), as in Keras.
#'
#' @param schedule A function `function(epoch, lr)` (or `function(epoch)`)
#'   returning the new learning rate, a non-negative number.
#' @param verbose 0 or 1: whether to print the learning rate set at each
#'   epoch.
#' @inherit callback_early_stopping return
#' @examples
#' # keep the learning rate for 10 epochs, then decrease it exponentially
#' scheduler <- function(epoch, lr) if (epoch < 10) lr else lr * exp(-0.1)
#' callback_learning_rate_scheduler(scheduler)
#' @family callbacks
#' @export
callback_learning_rate_scheduler <- function(schedule, verbose = 0) {
  if (missing(schedule) || !is.function(schedule) || inherits(schedule, "multihead_layer")) {
    abort_arg("schedule", "a function(epoch, lr) returning the learning rate",
              if (missing(schedule)) "missing" else describe_value(schedule))
  }
  new_callback("LearningRateScheduler", list(schedule = schedule,
                                             verbose = check_whole(verbose, "verbose", min = 0L)))
}

#' @noRd
lr_scheduler_epoch_begin <- function(cb, epoch, logs, context) {
  opt <- callback_optimizer(cb, context)
  lr <- callback_learning_rate(cb, opt)
  f <- cb$config$schedule
  fmls <- names(formals(f))
  two <- length(fmls) >= 2L || "..." %in% fmls
  new <- if (two) f(epoch - 1L, lr) else f(epoch - 1L)
  if (!(is.numeric(new) && length(new) == 1L && is.null(dim(new)) && !is.na(new) && is.finite(new) && new >= 0)) {
    abort_msg(sprintf(paste0("`schedule` must return the learning rate, a non-negative number; in epoch %d it ",
                             "returned %s."), epoch, describe_value(new)), class = "multihead_error_argument")
  }
  opt$learning_rate <- as.double(new)
  if (cb$config$verbose > 0L) {
    message(sprintf("Epoch %d: LearningRateScheduler setting learning rate to %s.", epoch,
                    format_py_float(as.double(new))))
  }
  invisible(NULL)
}

# The compiled optimizer of the model being trained.
#' @noRd
callback_optimizer <- function(cb, context) {
  model <- context$model
  opt <- if (!is.null(model)) layer_self(model)$compiled$optimizer
  if (is.null(opt)) {
    abort_msg(sprintf("%s needs the compiled model being trained (the callback context's model).", cb$class_name),
              class = "multihead_error_argument")
  }
  opt
}

# The optimizer's learning rate as a number; a learning rate schedule cannot
# be set by a callback (as in Keras).
#' @noRd
callback_learning_rate <- function(cb, opt) {
  if (is_lr_schedule(opt$learning_rate)) {
    abort_msg(sprintf(paste0("%s cannot change the learning rate of an optimizer whose learning_rate is a ",
                             "learning rate schedule; give the optimizer a number as learning_rate."),
                      cb$class_name), class = "multihead_error_argument")
  }
  opt$learning_rate
}

#' @noRd
logs_with_learning_rate <- function(logs, context, cb) {
  opt <- callback_optimizer(cb, context)
  if (is.null(logs)) logs <- list()
  if (!is_lr_schedule(opt$learning_rate)) logs[["learning_rate"]] <- opt$learning_rate
  structure(logs, class = "multihead_updated_logs")
}

# --- CSV logger -------------------------------------------------------------

#' Write each epoch's logs to a CSV file
#'
#' Keras 3's `CSVLogger`: at the end of each epoch a row with the epoch and
#' the logged quantities is written (and flushed) to `filename`. The columns
#' are `epoch` and the names in the first epoch's logs in sorted order (when
#' there is no validation, the `val_` names are added and filled with
#' `NA`). As in the files keras3 writes, the epoch column counts from 0,
#' numbers are written as Python prints them (the shortest digits that read
#' back to the same double, e.g. `0.1`, `1e-05`), a quantity missing from a
#' later epoch is `NA`, and lines end in `"\r\n"`.
#'
#' @param filename The path of the CSV file, a string.
#' @param separator The field separator, a single character.
#' @param append `TRUE` or `FALSE`: append to an existing file (without
#'   writing the header again unless the file is empty) instead of
#'   overwriting it.
#' @inherit callback_early_stopping return
#' @examples
#' path <- tempfile(fileext = ".csv")
#' model <- keras_model_sequential(input_shape = 2) |> layer_dense(1)
#' model |> compile(optimizer = "sgd", loss = "mse")
#' model |> fit(matrix(runif(20), 10), runif(10), epochs = 2, verbose = 0,
#'              callbacks = callback_csv_logger(path))
#' read.csv(path)
#' @family callbacks
#' @export
callback_csv_logger <- function(filename, separator = ",", append = FALSE) {
  if (missing(filename)) abort_arg("filename", "the path of the CSV file, a string", "missing")
  filename <- check_string(filename, "filename")
  if (!nzchar(filename)) abort_arg("filename", "the path of the CSV file, a non-empty string", "\"\"")
  separator <- check_string(separator, "separator")
  if (nchar(separator) != 1L || separator %in% c("\"", "\r", "\n")) {
    abort_arg("separator", "a single character (not a quote or a line break)", sprintf("\"%s\"", separator))
  }
  new_callback("CSVLogger", list(filename = path.expand(filename), separator = separator,
                                 append = check_flag(append, "append")))
}

#' @noRd
csv_logger_train_begin <- function(cb, index, logs, context) {
  cfg <- cb$config
  cb$keys <- NULL
  cb$write_header <- TRUE
  if (cfg$append && file.exists(cfg$filename)) {
    first <- readLines(cfg$filename, n = 1L, warn = FALSE)
    cb$write_header <- !(length(first) == 1L && nzchar(first))
  } else {
    con <- file(cfg$filename, open = "wb")   # creates or truncates the file
    close(con)
  }
  invisible(NULL)
}

#' @noRd
csv_logger_epoch_end <- function(cb, epoch, logs, context) {
  cfg <- cb$config
  if (is.null(cb$keys)) {
    keys <- sort(names(logs), method = "radix")
    if (!any(startsWith(keys, "val_")) && length(keys)) keys <- c(keys, paste0("val_", keys))
    cb$keys <- keys
  }
  field <- function(v) {
    s <- if (is.null(v)) "NA" else if (is.character(v) && length(v) == 1L) v else
      if (is.numeric(v) && length(v) == 1L) {
        if (is.integer(v)) as.character(v) else format_py_float(v)
      } else sprintf("\"[%s]\"", paste(vapply(v, function(e) format_py_float(as.double(e)), ""), collapse = ", "))
    if (grepl(cfg$separator, s, fixed = TRUE) || grepl("[\"\r\n]", s)) {
      s <- paste0("\"", gsub("\"", "\"\"", s, fixed = TRUE), "\"")
    }
    s
  }
  lines <- character()
  if (cb$write_header) {
    lines <- paste(vapply(c("epoch", cb$keys), field, character(1)), collapse = cfg$separator)
    cb$write_header <- FALSE
  }
  row <- c(as.character(epoch - 1L), vapply(cb$keys, function(k) field(logs[[k]]), character(1)))
  lines <- c(lines, paste(row, collapse = cfg$separator))
  con <- file(cfg$filename, open = "ab")
  on.exit(close(con))
  writeChar(paste0(lines, "\r\n", collapse = ""), con, eos = NULL, useBytes = TRUE)
  invisible(NULL)
}

# Python's repr() of a float: the shortest decimal digits that read back to
# the same double, fixed notation for exponents in [-4, 16) (with ".0" for
# whole numbers), else "1.5e-05" / "1e+16"; "nan", "inf", "-inf".
#' @noRd
format_py_float <- function(x) {
  if (is.na(x)) return("nan")
  if (is.infinite(x)) return(if (x > 0) "inf" else "-inf")
  if (x == 0) return(if (1 / x < 0) "-0.0" else "0.0")
  for (d in 1:17) {
    s <- sprintf("%.*e", d - 1L, x)
    if (as.double(s) == x) break
  }
  m <- regmatches(s, regexec("^(-?)([0-9])(\\.([0-9]+))?e([-+][0-9]+)$", s))[[1L]]
  sign <- m[[2L]]
  digits <- sub("0+$", "", paste0(m[[3L]], m[[5L]]))
  if (!nzchar(digits)) digits <- "0"
  e <- as.integer(m[[6L]])
  nd <- nchar(digits)
  if (e < -4L || e >= 16L) {
    mant <- if (nd > 1L) paste0(substr(digits, 1L, 1L), ".", substring(digits, 2L)) else digits
    return(sprintf("%s%se%s%02d", sign, mant, if (e < 0L) "-" else "+", abs(e)))
  }
  if (e < 0L) return(paste0(sign, "0.", strrep("0", -e - 1L), digits))
  if (nd <= e + 1L) return(paste0(sign, digits, strrep("0", e + 1L - nd), ".0"))
  paste0(sign, substr(digits, 1L, e + 1L), ".", substring(digits, e + 2L))
}

# --- terminate on NaN -------------------------------------------------------

#' Stop training when the loss is not a number
#'
#' Keras 3's `TerminateOnNaN`: after a batch whose loss is `NaN` or
#' infinite, training stops (the epoch ends, its logs and the history record
#' the non-finite loss). With this callback such a step is not applied: the
#' model keeps the weights of its last finished step (without it, a
#' non-finite loss or gradient is an error, which also keeps them).
#'
#' @inherit callback_early_stopping return
#' @examples
#' callback_terminate_on_nan()
#' @family callbacks
#' @export
callback_terminate_on_nan <- function() new_callback("TerminateOnNaN", list())

#' @noRd
terminate_on_nan_batch_end <- function(cb, batch, logs, context) {
  loss <- logs[["loss"]]
  if (is.numeric(loss) && length(loss) == 1L && !is.finite(loss)) {
    message(sprintf("Batch %d: Invalid loss, terminating training", batch))
    context$stop_training <- TRUE
  }
  invisible(NULL)
}

# --- model checkpoint -------------------------------------------------------

#' Save the model or its weights during training
#'
#' Keras 3's `ModelCheckpoint`: at the end of each epoch (or every
#' `save_freq` batches) the model is written with [save_model()] (or its
#' weights with [save_model_weights()] when `save_weights_only = TRUE`); both
#' choose the file format from the path's extension (e.g. `".rds"` for
#' multihead's own format, `".weights.h5"` for Keras's weights layout).
#'
#' `filepath` may hold fields filled as Python's `str.format()` fills them:
#' `{epoch}` (the epoch, counted from 1), `{batch}` (when saving every
#' `save_freq` batches: the batch in the epoch, from 1) and any name in the
#' logs, such as `{loss}` or `{val_loss}`, with an optional format
#' specification: `"weights-{epoch:02d}-{val_loss:.2f}.rds"` gives
#' `"weights-03-0.41.rds"`. Supported specifications: fill and alignment
#' (`<`, `>`, `^`, `=`), sign (`+`, `-`, space), `0`, width, grouping (`,`
#' or `_`), precision and the types `d`, `f`, `F`, `e`, `E`, `g`, `G`, `%`,
#' `s` and none (`{{` and `}}` are braces). A field not in the logs is an
#' error naming `filepath`. Missing directories are created.
#'
#' With `save_best_only = TRUE` the model is saved only when `monitor`
#' improves on the best value so far (or on `initial_value_threshold`); when
#' `monitor` is not in the logs it is saved with a warning, as Keras does.
#'
#' @param filepath The path to write, a string, optionally with the fields
#'   above.
#' @param monitor A string: the quantity compared with `save_best_only`, a
#'   name in the logs such as `"val_loss"`.
#' @param verbose 0 or 1: whether to print a message when saving (or not).
#' @param save_best_only `TRUE` or `FALSE`: whether to save only when
#'   `monitor` improves.
#' @param save_weights_only `TRUE` or `FALSE`: whether to save the weights
#'   only ([save_model_weights()]) rather than the whole model
#'   ([save_model()]).
#' @param mode `"auto"`, `"min"` or `"max"`: whether `monitor` should
#'   decrease or increase, as in [callback_early_stopping()].
#' @param save_freq `"epoch"` (save at the end of each epoch) or a positive
#'   whole number: save after that many batches (counted across epochs).
#' @param initial_value_threshold `NULL` or a number: the value `monitor`
#'   must beat for the first save with `save_best_only = TRUE`.
#' @inherit callback_early_stopping return
#' @examples
#' dir <- tempfile()
#' cb <- callback_model_checkpoint(file.path(dir, "model-{epoch:02d}-{loss:.3f}.rds"),
#'                                 monitor = "loss", save_best_only = TRUE)
#' model <- keras_model_sequential(input_shape = 2) |> layer_dense(1)
#' model |> compile(optimizer = "sgd", loss = "mse")
#' model |> fit(matrix(runif(20), 10), runif(10), epochs = 2, verbose = 0, callbacks = cb)
#' list.files(dir)
#' @family callbacks
#' @export
callback_model_checkpoint <- function(filepath, monitor = "val_loss", verbose = 0, save_best_only = FALSE,
                                      save_weights_only = FALSE, mode = "auto", save_freq = "epoch",
                                      initial_value_threshold = NULL) {
  if (missing(filepath)) abort_arg("filepath", "the path to write, a string", "missing")
  filepath <- check_string(filepath, "filepath")
  if (!nzchar(filepath)) abort_arg("filepath", "the path to write, a non-empty string", "\"\"")
  save_weights_only <- check_flag(save_weights_only, "save_weights_only")
  if (!save_weights_only && grepl("\\.weights\\.h5$", filepath, ignore.case = TRUE)) {
    abort_arg("filepath", paste0("a model file path (a \".weights.h5\" path holds weights only: use ",
                                 "save_weights_only = TRUE)"), sprintf("\"%s\"", filepath))
  }
  parse_format_template(filepath, "filepath")   # checks the template's syntax now
  config <- list(filepath = path.expand(filepath), monitor = check_string(monitor, "monitor"),
                 verbose = check_whole(verbose, "verbose", min = 0L),
                 save_best_only = check_flag(save_best_only, "save_best_only"),
                 save_weights_only = save_weights_only,
                 mode = check_choice(mode, "mode", c("auto", "min", "max")),
                 save_freq = check_save_freq(save_freq),
                 initial_value_threshold = check_number(initial_value_threshold, "initial_value_threshold",
                                                        null_ok = TRUE))
  cb <- new_callback("ModelCheckpoint", config)
  checkpoint_reset(cb)
  cb
}

#' @noRd
check_save_freq <- function(save_freq) {
  if (identical(save_freq, "epoch")) return("epoch")
  if (!(is.numeric(save_freq) && length(save_freq) == 1L && !is.na(save_freq) && is.finite(save_freq) &&
        save_freq == round(save_freq) && save_freq >= 1 && save_freq <= .Machine$integer.max)) {
    abort_arg("save_freq", "\"epoch\" or a positive whole number of batches", describe_value(save_freq))
  }
  as.integer(save_freq)
}

#' @noRd
checkpoint_reset <- function(cb) {
  cb$best <- cb$config$initial_value_threshold
  cb$direction <- NULL
  cb$current_epoch <- 1L
  cb$since_save <- 0L
  cb$last_batch <- NULL
  invisible(cb)
}

# Keras's count of batches between saves: batches are counted across epochs
# (a batch number not above the last one starts a new epoch).
#' @noRd
batch_save_due <- function(cb, batch) {
  if (identical(cb$config$save_freq, "epoch")) return(FALSE)
  add <- if (is.null(cb$last_batch) || batch <= cb$last_batch) batch else batch - cb$last_batch
  cb$since_save <- cb$since_save + add
  cb$last_batch <- batch
  if (cb$since_save >= cb$config$save_freq) {
    cb$since_save <- 0L
    return(TRUE)
  }
  FALSE
}

#' @noRd
checkpoint_batch_end <- function(cb, batch, logs, context) {
  if (batch_save_due(cb, batch)) checkpoint_save(cb, cb$current_epoch, batch, logs, context)
  invisible(NULL)
}

#' @noRd
checkpoint_epoch_end <- function(cb, epoch, logs, context) {
  if (is.null(cb$direction)) cb$direction <- early_stopping_direction(cb, context)
  if (identical(cb$config$save_freq, "epoch")) checkpoint_save(cb, epoch, NULL, logs, context)
  invisible(NULL)
}

#' @noRd
checkpoint_save <- function(cb, epoch, batch, logs, context) {
  cfg <- cb$config
  fields <- c(list(epoch = epoch), if (!is.null(batch) && is.null(logs[["batch"]])) list(batch = batch),
              logs[setdiff(names(logs), c("epoch", if (!is.null(batch)) "batch"))])
  path <- fill_format_template(cfg$filepath, fields, "filepath")
  if (cfg$save_best_only) {
    current <- logs[[cfg$monitor]]
    if (is.null(current)) {
      warning(sprintf("Can save best model only with `%s` available; saving.", cfg$monitor), call. = FALSE)
    } else {
      if (is.null(cb$direction)) cb$direction <- early_stopping_direction(cb, context)
      best_str <- if (is.null(cb$best)) "None" else sprintf("%.5f", cb$best)
      if (!monitor_improves(cb, current, cb$best, 0)) {
        if (cfg$verbose > 0L) message(sprintf("Epoch %d: %s did not improve from %s", epoch, cfg$monitor, best_str))
        return(invisible(NULL))
      }
      if (cfg$verbose > 0L) {
        message(sprintf("Epoch %d: %s improved from %s to %.5f, saving model to %s", epoch, cfg$monitor,
                        best_str, current, path))
      }
      cb$best <- current
    }
  } else if (cfg$verbose > 0L) message(sprintf("Epoch %d: saving model to %s", epoch, path))
  if (is.null(context$model)) abort_msg("ModelCheckpoint needs the model being trained (the callback context's model).")
  dir <- dirname(path)
  if (!dir.exists(dir)) dir.create(dir, recursive = TRUE)
  if (dir.exists(path)) {
    abort_arg("filepath", "the path of a file, not of an existing directory", sprintf("\"%s\"", path))
  }
  if (cfg$save_weights_only) save_model_weights(context$model, path, overwrite = TRUE) else
    save_model(context$model, path, overwrite = TRUE)
  invisible(NULL)
}

# ---- Python's str.format() for file names ----------------------------------
# parse_format_template() splits a template into literal text and fields
# list(name =, spec =); fill_format_template() fills the fields from a named
# list of numbers with format_py_value(), Python's format(value, spec).

#' @noRd
parse_format_template <- function(template, arg) {
  chars <- strsplit(template, "", fixed = TRUE)[[1L]]
  parts <- list()
  text <- character()
  i <- 1L
  n <- length(chars)
  bad <- function(why) abort_arg(arg, sprintf("a valid format template (%s)", why), sprintf("\"%s\"", template))
  while (i <= n) {
    ch <- chars[[i]]
    if (ch == "{" && i < n && chars[[i + 1L]] == "{") {
      text <- c(text, "{")
      i <- i + 2L
    } else if (ch == "}" && i < n && chars[[i + 1L]] == "}") {
      text <- c(text, "}")
      i <- i + 2L
    } else if (ch == "}") {
      bad("a single \"}\" must be doubled")
    } else if (ch == "{") {
      close <- which(chars[seq.int(i + 1L, length.out = n - i)] == "}")
      if (!length(close)) bad("a \"{\" is not closed")
      inner <- paste(chars[seq.int(i + 1L, length.out = close[[1L]] - 1L)], collapse = "")
      if (grepl("{", inner, fixed = TRUE)) bad("nested fields are not supported")
      colon <- regexpr(":", inner, fixed = TRUE)
      name <- if (colon > 0L) substr(inner, 1L, colon - 1L) else inner
      spec <- if (colon > 0L) substring(inner, colon + 1L) else ""
      name <- sub("![rsa]$", "", name)
      if (!grepl("^[A-Za-z_][A-Za-z0-9_]*$", name)) bad(sprintf("\"{%s}\" does not name a field", inner))
      parse_format_spec(spec, function(why) bad(sprintf("in \"{%s}\": %s", inner, why)))
      parts[[length(parts) + 1L]] <- paste(text, collapse = "")
      parts[[length(parts) + 1L]] <- list(name = name, spec = spec)
      text <- character()
      i <- i + close[[1L]] + 1L
    } else {
      text <- c(text, ch)
      i <- i + 1L
    }
  }
  parts[[length(parts) + 1L]] <- paste(text, collapse = "")
  parts
}

#' @noRd
fill_format_template <- function(template, values, arg) {
  parts <- parse_format_template(template, arg)
  out <- vapply(parts, function(p) {
    if (is.character(p)) return(p)
    v <- values[[p$name]]
    if (is.null(v)) {
      abort_msg(sprintf("Cannot fill `%s` \"%s\": its field {%s} is not among the logged values (%s).", arg,
                        template, p$name, paste(names(values), collapse = ", ")), class = "multihead_error_argument")
    }
    format_py_value(v, p$spec, function(why) {
      abort_msg(sprintf("Cannot fill `%s` \"%s\": field {%s}: %s.", arg, template, p$name, why),
                class = "multihead_error_argument")
    })
  }, character(1))
  paste(out, collapse = "")
}

#' @noRd
parse_format_spec <- function(spec, fail) {
  m <- regmatches(spec, regexec(paste0("^(([^{}])?([<>=^]))?([-+ ])?(z)?(#)?(0)?([0-9]+)?([,_])?",
                                       "(\\.([0-9]+))?([deEfFgGs%])?$"), spec))[[1L]]
  if (!length(m)) fail(sprintf("unsupported format specification \"%s\"", spec))
  list(fill = m[[3L]], align = m[[4L]], sign = m[[5L]], alt = nzchar(m[[7L]]), zero = nzchar(m[[8L]]),
       width = if (nzchar(m[[9L]])) as.integer(m[[9L]]) else 0L, grouping = m[[10L]],
       precision = if (nzchar(m[[12L]])) as.integer(m[[12L]]) else NA_integer_, type = m[[13L]])
}

# Python's format(value, spec) for an integer (R integer or whole double
# given as the epoch/batch) or a float.
#' @noRd
format_py_value <- function(v, spec, fail) {
  if (is.character(v) && length(v) == 1L) {
    s <- parse_format_spec(spec, fail)
    if (!s$type %in% c("", "s")) fail(sprintf("format code \"%s\" is for numbers", s$type))
    return(pad_py(v, s, numeric = FALSE))
  }
  if (!(is.numeric(v) && length(v) == 1L)) fail("not a single number")
  s <- parse_format_spec(spec, fail)
  is_int <- is.integer(v)
  type <- s$type
  if (type == "s") fail("format code \"s\" is for strings")
  if (is_int && type == "d" && !is.na(s$precision)) fail("precision is not allowed with format code \"d\"")
  if (!is_int && type == "d") fail("format code \"d\" is for integers, and this value is a float")
  neg <- !is.na(v) && (v < 0 || (v == 0 && !is_int && 1 / v < 0))
  a <- abs(v)
  p <- s$precision
  upper <- type %in% c("F", "E", "G")
  body <- if (is.na(a) || is.infinite(a)) {
    r <- if (is.na(a)) "nan" else "inf"
    if (type == "%") r <- paste0(r, "%")
    if (upper) toupper(r) else r
  } else if (is_int && type %in% c("", "d")) {
    as.character(a)
  } else {
    a <- as.double(a)
    switch(EXPR = type,
           f = , F = sprintf("%.*f", if (is.na(p)) 6L else p, a),
           e = , E = sprintf(if (upper) "%.*E" else "%.*e", if (is.na(p)) 6L else p, a),
           g = , G = py_general(a, if (is.na(p)) 6L else p, s$alt, upper),
           "%" = paste0(sprintf("%.*f", if (is.na(p)) 6L else p, a * 100), "%"),
           if (is.na(p)) format_py_float(a) else py_general(a, p, s$alt, FALSE, keep_point = TRUE))
  }
  if (nzchar(s$grouping) && !is.na(a) && is.finite(a)) body <- group_digits(body, s$grouping)
  sign <- if (neg) "-" else if (s$sign == "+") "+" else if (s$sign == " ") " " else ""
  pad_py(body, s, numeric = TRUE, sign = sign)
}

# Python's "g" presentation: precision p significant digits, scientific
# when the exponent is < -4 or >= p, trailing zeros removed (unless `alt`);
# `keep_point`: the no-type presentation with a precision, which keeps one
# digit after the point in fixed notation.
#' @noRd
py_general <- function(a, p, alt, upper, keep_point = FALSE) {
  if (p == 0L) p <- 1L
  if (a == 0) e <- 0L else {
    e <- as.integer(sub("^.*e", "", sprintf("%.*e", p - 1L, a)))
  }
  if (e < -4L || e >= p) {
    out <- sprintf("%.*e", p - 1L, a)
    if (!alt) out <- sub("\\.?0+e", "e", out)
    if (upper) out <- toupper(out)
    return(out)
  }
  out <- sprintf("%.*f", p - 1L - e, a)
  if (!alt && grepl(".", out, fixed = TRUE)) out <- sub("\\.?0+$", "", out)
  if (keep_point && !grepl(".", out, fixed = TRUE)) out <- paste0(out, ".0")
  out
}

#' @noRd
group_digits <- function(body, sep) {
  m <- regmatches(body, regexec("^([0-9]+)(.*)$", body))[[1L]]
  if (!length(m)) return(body)
  int <- m[[2L]]
  groups <- character()
  while (nchar(int) > 3L) {
    groups <- c(substring(int, nchar(int) - 2L), groups)
    int <- substr(int, 1L, nchar(int) - 3L)
  }
  paste0(paste(c(int, groups), collapse = sep), m[[3L]])
}

#' @noRd
pad_py <- function(body, s, numeric, sign = "") {
  fill <- if (nzchar(s$fill)) s$fill else if (s$zero && !nzchar(s$align)) "0" else " "
  align <- if (nzchar(s$align)) s$align else if (s$zero) "=" else if (numeric) ">" else "<"
  n <- s$width - nchar(sign) - nchar(body)
  if (n <= 0L) return(paste0(sign, body))
  pad <- strrep(fill, n)
  switch(align,
         "<" = paste0(sign, body, pad),
         ">" = paste0(pad, sign, body),
         "=" = paste0(sign, pad, body),
         "^" = paste0(strrep(fill, n %/% 2L), sign, body, strrep(fill, n - n %/% 2L)))
}

# --- backup and restore -----------------------------------------------------

#' Back up training so that an interrupted fit() can resume
#'
#' Keras 3's `BackupAndRestore`. At the end of each epoch (or every
#' `save_freq` batches) the model is written with [save_model()] to
#' `backup_dir` (its weights, the random state of its dropout layers and the
#' optimizer with its state) together with the training position (the next
#' epoch) and R's random number generator state. When `fit()` starts with
#' this callback and a backup exists (the earlier run was interrupted: an
#' error, Ctrl-C or the end of the R session), the model's weights, dropout
#' state and optimizer state are restored, R's random state is set back to
#' the backup's, and training continues with the epoch after the last one
#' backed up: the epochs before are not run again and are not in the
#' returned history. With `save_freq = "epoch"` the resumed run computes
#' exactly what the uninterrupted run would have (same shuffles, dropout
#' masks and weights, bit for bit). With a number of batches, training
#' resumes at the start of the epoch that was interrupted, from the weights
#' of the last backup, as in Keras.
#'
#' When `fit()` finishes, the backup is deleted (unless `delete_checkpoint =
#' FALSE`): only the files this callback writes are removed, and
#' `backup_dir` itself when it is then empty. The model must be the one
#' (same architecture and compile configuration) that was backed up, and the
#' compiled loss, metrics and learning rate schedule must be ones
#' [save_model()] can write (not custom R classes).
#'
#' Files in `backup_dir`: `latest.rds` (a [save_model()] file) and
#' `training_metadata.rds` (a list: `format` `"multihead.backup"`, `epoch`,
#' the next epoch to run, and `random_seed`, R's `.Random.seed` or `NULL`);
#' with `double_checkpoint = TRUE` also the previous backup as
#' `latest.rds.bkp` and `training_metadata.rds.bkp`, used when the latest
#' cannot be read.
#'
#' @param backup_dir The directory of the backup, a string (created when
#'   needed). Do not share it with other callbacks or training runs.
#' @param save_freq `"epoch"` or a positive whole number: back up at the end
#'   of each epoch, or every that many batches.
#' @param double_checkpoint `TRUE` or `FALSE`: keep the previous backup too,
#'   to fall back on when the latest cannot be read.
#' @param delete_checkpoint `TRUE` or `FALSE`: delete the backup when `fit()`
#'   finishes.
#' @inherit callback_early_stopping return
#' @examples
#' dir <- tempfile()
#' model <- keras_model_sequential(input_shape = 2) |> layer_dense(1)
#' model |> compile(optimizer = "adam", loss = "mse")
#' x <- matrix(runif(20), 10)
#' y <- runif(10)
#' stop_in_3 <- callback_lambda(on_epoch_begin = function(epoch, logs) {
#'   if (epoch == 3) stop("interrupted")
#' })
#' try(fit(model, x, y, epochs = 5, verbose = 0,
#'         callbacks = list(callback_backup_and_restore(dir), stop_in_3)))
#' # resumes at epoch 3
#' history <- fit(model, x, y, epochs = 5, verbose = 0,
#'                callbacks = callback_backup_and_restore(dir))
#' length(history$metrics$loss)
#' @family callbacks
#' @export
callback_backup_and_restore <- function(backup_dir, save_freq = "epoch", double_checkpoint = FALSE,
                                        delete_checkpoint = TRUE) {
  if (missing(backup_dir)) abort_arg("backup_dir", "the backup directory, a string", "missing")
  backup_dir <- check_string(backup_dir, "backup_dir")
  if (!nzchar(backup_dir)) abort_arg("backup_dir", "the backup directory, a non-empty string", "\"\"")
  backup_dir <- path.expand(backup_dir)
  if (file.exists(backup_dir) && !dir.exists(backup_dir)) {
    abort_arg("backup_dir", "a directory (or a path where one can be created)",
              sprintf("\"%s\", an existing file", backup_dir))
  }
  cb <- new_callback("BackupAndRestore", list(
    backup_dir = backup_dir, save_freq = check_save_freq(save_freq),
    double_checkpoint = check_flag(double_checkpoint, "double_checkpoint"),
    delete_checkpoint = check_flag(delete_checkpoint, "delete_checkpoint")))
  checkpoint_reset(cb)
  cb$epoch_seed <- NULL
  cb
}

#' @noRd
backup_files <- function(cb) {
  dir <- cb$config$backup_dir
  c(model = file.path(dir, "latest.rds"), meta = file.path(dir, "training_metadata.rds"))
}

#' @noRd
backup_train_begin <- function(cb, index, logs, context) {
  checkpoint_reset(cb)
  files <- backup_files(cb)
  if (!file.exists(files[["model"]])) return(invisible(NULL))
  ok <- tryCatch({
    backup_restore(cb, context, files)
    TRUE
  }, multihead_error_file = function(e) e, error = function(e) e)
  if (isTRUE(ok)) return(invisible(NULL))
  bkp <- paste0(files, ".bkp")
  if (!file.exists(bkp[[1L]])) {
    abort_msg(sprintf("BackupAndRestore could not restore the backup in \"%s\": %s", cb$config$backup_dir,
                      conditionMessage(ok)), class = "multihead_error_file")
  }
  file.copy(bkp[[1L]], files[["model"]], overwrite = TRUE)
  if (file.exists(bkp[[2L]])) file.copy(bkp[[2L]], files[["meta"]], overwrite = TRUE) else unlink(files[["meta"]])
  backup_restore(cb, context, files)
  invisible(NULL)
}

# Restores weights, dropout state, optimizer state, the next epoch and R's
# random state from the backup files.
#' @noRd
backup_restore <- function(cb, context, files) {
  model <- context$model
  if (is.null(model)) abort_msg("BackupAndRestore needs the model being trained (the callback context's model).")
  saved <- load_model(files[["model"]], compile = TRUE)
  self <- layer_self(model)
  set_weights(model, get_weights(saved))
  leaves <- model_leaf_layers(self)
  saved_leaves <- model_leaf_layers(layer_self(saved))
  for (i in seq_along(leaves)) {
    if (!is.null(leaves[[i]]$dropout_seed) && !is.null(saved_leaves[[i]]$dropout_seed)) {
      leaves[[i]]$dropout_seed <- saved_leaves[[i]]$dropout_seed
      leaves[[i]]$call_counter <- saved_leaves[[i]]$call_counter
    }
  }
  src <- layer_self(saved)$compiled$optimizer
  dst <- self$compiled$optimizer
  if (!is.null(src) && !is.null(dst)) {
    for (nm in ls(src, all.names = TRUE)) assign(nm, get(nm, envir = src), envir = dst)
    # the optimizer's slots are keyed by weight path: the saved model's paths (its layer names) -> this
    # model's, by position
    from <- names(model_variables(layer_self(saved)))
    to <- names(model_variables(self))
    if (length(from) == length(to)) {
      dst$slots <- lapply(dst$slots, function(kind) {
        at <- match(names(kind), from)
        names(kind)[!is.na(at)] <- to[at[!is.na(at)]]
        kind
      })
    }
  }
  if (file.exists(files[["meta"]])) {
    meta <- readRDS(files[["meta"]])
    if (!(is.list(meta) && identical(meta$format, "multihead.backup") && is.numeric(meta$epoch) &&
          length(meta$epoch) == 1L && !is.na(meta$epoch) && meta$epoch >= 1)) {
      abort_msg(sprintf("\"%s\" is not a BackupAndRestore metadata file.", files[["meta"]]),
                class = "multihead_error_file")
    }
    context$initial_epoch <- as.integer(meta$epoch)
    if (is.integer(meta$random_seed)) assign(".Random.seed", meta$random_seed, envir = globalenv())
  }
  invisible(NULL)
}

#' @noRd
backup_epoch_begin <- function(cb, epoch, logs, context) {
  cb$current_epoch <- epoch
  cb$epoch_seed <- get0(".Random.seed", envir = globalenv(), inherits = FALSE)
  invisible(NULL)
}

#' @noRd
backup_batch_end <- function(cb, batch, logs, context) {
  # resuming from a batch backup restarts this epoch, with this epoch's random state
  if (batch_save_due(cb, batch)) backup_save(cb, context, cb$current_epoch, cb$epoch_seed)
  invisible(NULL)
}

#' @noRd
backup_epoch_end <- function(cb, epoch, logs, context) {
  if (identical(cb$config$save_freq, "epoch")) {
    backup_save(cb, context, epoch + 1L, get0(".Random.seed", envir = globalenv(), inherits = FALSE))
  }
  invisible(NULL)
}

#' @noRd
backup_save <- function(cb, context, next_epoch, seed) {
  dir <- cb$config$backup_dir
  if (!dir.exists(dir)) dir.create(dir, recursive = TRUE)
  files <- backup_files(cb)
  if (cb$config$double_checkpoint) {
    for (f in files) if (file.exists(f)) file.copy(f, paste0(f, ".bkp"), overwrite = TRUE)
  }
  save_model(context$model, files[["model"]], overwrite = TRUE)
  tmp <- tempfile(tmpdir = dir, fileext = ".rds")
  saveRDS(list(format = "multihead.backup", epoch = as.integer(next_epoch), random_seed = seed), tmp)
  if (!file.rename(tmp, files[["meta"]])) {
    file.copy(tmp, files[["meta"]], overwrite = TRUE)
    unlink(tmp)
  }
  invisible(NULL)
}

#' @noRd
backup_train_end <- function(cb, index, logs, context) {
  if (!cb$config$delete_checkpoint) return(invisible(NULL))
  files <- backup_files(cb)
  unlink(c(files, paste0(files, ".bkp")))
  dir <- cb$config$backup_dir
  if (dir.exists(dir) && !length(list.files(dir, all.files = TRUE, no.. = TRUE))) unlink(dir, recursive = TRUE)
  invisible(NULL)
}

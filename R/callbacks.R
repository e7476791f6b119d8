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
#   for (epoch in initial_epoch:epochs) {
#     callbacks_call(callbacks, "on_epoch_begin", epoch, context = context)
#     for (batch in seq_len(steps)) {
#       callbacks_call(callbacks, "on_train_batch_begin", batch, context = context)
#       <one optimizer step>
#       callbacks_call(callbacks, "on_train_batch_end", batch,
#                      <running loss and metrics>, context)
#       if (context$stop_training) break
#     }
#     callbacks_call(callbacks, "on_epoch_end", epoch,
#                    <epoch loss and metrics, then val_ ones>, context)
#     if (context$stop_training) break
#   }
#   callbacks_call(callbacks, "on_train_end", logs = <last epoch's logs>,
#                  context = context)
#
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
  if (!is.null(method)) method(cb, index, logs, context)
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
    LambdaCallback = stats::setNames(lapply(callback_hooks(), lambda), callback_hooks())
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
  abort_msg(sprintf(paste0("EarlyStopping cannot tell whether `monitor` \"%s\" should be maximized ",
                           "or minimized; give `mode = \"max\"` or `mode = \"min\"`."), cfg$monitor),
            class = "multihead_error_argument")
}

# Directions of the metric names known without a model.
#' @noRd
default_metric_directions <- function() {
  nms <- metric_names()
  stats::setNames(ifelse(nms == "auto" | grepl("Accuracy$", nms), "up", "down"), names(nms))
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

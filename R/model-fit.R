# fit(): trains a compiled model with minibatch gradient steps.
#
# One training step (train_step()), as Keras 3's:
#   1. forward through the graph with training = TRUE (dropout active),
#      keeping what the backward pass needs;
#   2. the compiled loss of the outputs plus the regularization losses
#      (model-regularization.R);
#   3. backward through the graph from dLoss/dy_pred (with the activity
#      regularizers' gradients), giving every weight's gradient; the weight
#      regularizers' gradients are added;
#   4. optimizer_apply() on the trainable weights, then each weight's
#      constraint. Step 4 runs with interrupts suspended, so the model and the
#      optimizer always hold the result of a whole step.
# The loop follows the callback protocol in callbacks.R.

#' Train a model
#'
#' Trains a compiled model on arrays for a number of epochs, as keras3's
#' `fit()`: each epoch visits the training samples in batches of
#' `batch_size` (in a new random order when `shuffle = TRUE`), taking one
#' optimizer step per batch, then computes the validation loss and metrics.
#' The model is changed in place.
#'
#' Each step runs the model with dropout active, adds the regularization
#' losses of its layers to the compiled loss (weight regularizers of the
#' trainable weights; activity regularizers, each call of a layer adding
#' `penalty(output) / batch size`), back-propagates through the model, updates
#' the trainable weights with the optimizer and then applies the weights'
#' constraints. Layers with `trainable = FALSE` are not updated.
#'
#' Randomness comes from R's generator (shuffling) and from the layers' seeds
#' (dropout; drawn from R's generator when layers are created), so
#' `set.seed()` before building and fitting a model reproduces the weights,
#' the order of the samples, the dropout masks and the losses exactly, with
#' any number of threads.
#'
#' Pressing Ctrl-C (an interrupt) stops training between steps: the model
#' keeps the weights of the last finished step, a message says where
#' training stopped, and the history of the finished epochs is returned
#' (callbacks' `on_train_end` is not run).
#'
#' @param object A compiled model (see [compile.multihead_model()]).
#' @param x The model's input: an array, or a (named) list of arrays for a
#'   model with several inputs; samples on the first axis.
#' @param y The targets: an array (samples first), or for several outputs a
#'   list of them (in output order or named by output). Their shape must fit
#'   the loss (e.g. integer class labels for sparse categorical
#'   cross-entropy, one-hot arrays for categorical cross-entropy).
#' @param batch_size Samples per step, a positive whole number.
#' @param epochs The index of the last epoch, a whole number (with
#'   `initial_epoch`, training runs epochs `initial_epoch` to `epochs`).
#' @param verbose `"auto"`, 0, 1 or 2: `1` shows a progress bar per epoch
#'   with the running loss and metrics, `2` one line per epoch, `0` nothing;
#'   `"auto"` is 1 in an interactive session and 2 otherwise (and in knitr
#'   documents), as keras3.
#' @param callbacks `NULL`, a callback or a list of callbacks
#'   ([callback_early_stopping()], [callback_lambda()]).
#' @param validation_split A number in \[0, 1): the fraction of the samples,
#'   taken from the end of `x` and `y` before any shuffling, held out to
#'   compute validation loss and metrics after each epoch.
#' @param validation_data `NULL`, or `list(x_val, y_val)` or `list(x_val,
#'   y_val, sample_weight_val)`: data to validate on after each epoch
#'   (overrides `validation_split`).
#' @param shuffle `TRUE` or `FALSE`: whether to visit the training samples
#'   in a new random order each epoch.
#' @param sample_weight `NULL`, or one non-negative weight per sample (or an
#'   array with the samples on its first axis, as the loss accepts),
#'   weighting the loss and the `weighted_metrics`.
#' @param initial_epoch The epoch to start from (1 for a new run; useful to
#'   resume training).
#' @param ... Must be empty.
#' @returns Invisibly, the training history: a `keras_training_history`
#'   object (`params`: `verbose`, `epochs`, `steps`; `metrics`: one vector per
#'   logged quantity, `loss`, the metrics, then `val_loss` and the `val_`
#'   metrics), with `print()`, `plot()` and `as.data.frame()` methods.
#' @seealso [compile.multihead_model()], [evaluate.multihead_model()],
#'   [predict.multihead_model()], [plot.keras_training_history()].
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(256 * 3), 256)
#' y <- x %*% c(1, -2, 0.5) + 0.1
#' model <- keras_model_sequential(input_shape = 3) |> layer_dense(1)
#' model |> compile(optimizer = optimizer_sgd(learning_rate = 0.1), loss = "mse", metrics = "mae")
#' history <- model |> fit(x, y, epochs = 5, batch_size = 32, validation_split = 0.2, verbose = 0)
#' history
#' as.data.frame(history)
fit.multihead_model <- function(object, x, y, batch_size = 32, epochs = 1, verbose = "auto", callbacks = NULL,
                                validation_split = 0, validation_data = NULL, shuffle = TRUE,
                                sample_weight = NULL, initial_epoch = 1, ...) {
  if (...length()) {
    abort_arg("...", paste0("empty (fit() takes x, y, batch_size, epochs, verbose, callbacks, validation_split, ",
                            "validation_data, shuffle, sample_weight and initial_epoch)"),
              sprintf("%d more argument(s)", ...length()))
  }
  if (missing(x)) abort_arg("x", "supplied: the model's input array(s)")
  if (missing(y)) abort_arg("y", "supplied: the targets")
  batch_size <- check_whole(batch_size, "batch_size")
  epochs <- check_whole(epochs, "epochs", min = 0L)
  initial_epoch <- check_whole(initial_epoch, "initial_epoch")
  verbose <- resolve_verbose(verbose)
  callbacks <- as_callback_list(callbacks)
  validation_split <- check_number(validation_split, "validation_split", lower = 0, upper = 1)
  if (validation_split >= 1) abort_arg("validation_split", "a number in [0, 1)", format(validation_split))
  shuffle <- check_flag(shuffle, "shuffle")
  self <- layer_self(object)
  compiled <- model_compiled(self, "fit")

  data <- model_data(self, x, y, sample_weight)
  shapes <- check_targets_fit_loss(self, data, compiled, "y")
  split <- fit_validation_data(self, data, compiled, validation_split, validation_data)
  train <- split$train
  val <- split$val
  metrics <- compiled_metrics(self, lapply(train$y, shape_of), shapes)
  steps <- as.integer(ceiling(train$n / batch_size))

  params <- list(verbose = verbose, epochs = epochs, steps = steps)
  history <- new_training_history(params)
  directions <- vapply(metrics, function(e) e$metric$direction, character(1))
  names(directions) <- vapply(metrics, function(e) e$metric$name, character(1))
  context <- new_callback_context(get_weights = function() model_get_weights(self),
                                  set_weights = function(w) layer_set_weights(self, w),
                                  params = params, metric_directions = directions, model = object)
  state <- new.env(parent = emptyenv())
  state$epoch <- NA_integer_
  state$batch <- 0L
  state$logs <- NULL
  state$progress <- NULL

  callbacks_call(callbacks, "on_train_begin", context = context)
  interrupted <- tryCatch({
    # a compact sequence: epochs = .Machine$integer.max (with early stopping) allocates nothing
    for (epoch in if (epochs >= initial_epoch) seq.int(initial_epoch, epochs) else integer()) {
      state$epoch <- epoch
      state$batch <- 0L
      callbacks_call(callbacks, "on_epoch_begin", epoch, context = context)
      logs <- fit_epoch(self, compiled, metrics, train, batch_size, shuffle, callbacks, context, state,
                        epochs)
      if (!is.null(val)) {
        val_logs <- evaluate_batches(self, compiled, metrics, val, batch_size)
        logs <- c(logs, stats::setNames(val_logs, paste0("val_", names(val_logs))))
      }
      progress_end(state$progress, logs)
      state$progress <- NULL
      history <- history_add_epoch(history, logs)
      state$logs <- logs
      callbacks_call(callbacks, "on_epoch_end", epoch, logs, context)
      if (isTRUE(context$stop_training)) break
    }
    FALSE
  }, interrupt = function(e) TRUE)
  if (interrupted) {
    progress_abort(state$progress)
    message(sprintf(paste0("Training interrupted in epoch %d after %d of %d steps; the model keeps the weights ",
                           "of its last finished step."), state$epoch, state$batch, steps))
    return(invisible(history))
  }
  callbacks_call(callbacks, "on_train_end", logs = state$logs, context = context)
  invisible(history)
}

# One epoch of training; returns its logs. `state` records the progress (for
# the interrupt message) and the epoch's progress display.
#' @noRd
fit_epoch <- function(self, compiled, metrics, train, batch_size, shuffle, callbacks, context, state, epochs) {
  tracker <- new_loss_tracker(length(compiled$losses))
  for (e in metrics) metric_reset(e$metric)
  order <- if (shuffle) sample.int(train$n) else seq_len(train$n)
  batches <- batch_indices(order, batch_size)
  slots <- model_trainable_slots(self)
  state$progress <- progress_start(context$params$verbose, state$epoch, epochs, length(batches))
  logs <- current_logs(tracker, compiled, metrics)
  for (b in seq_along(batches)) {
    callbacks_call(callbacks, "on_train_batch_begin", b, context = context)
    batch <- data_subset(train, batches[[b]])
    step <- train_step(self, compiled, batch, slots, state)
    state$batch <- b
    tracker_update(tracker, step, batch$n)
    update_metrics(metrics, batch, step$outputs)
    logs <- current_logs(tracker, compiled, metrics)
    progress_update(state$progress, b, logs)
    callbacks_call(callbacks, "on_train_batch_end", b, logs, context)
    if (isTRUE(context$stop_training)) break
  }
  logs
}

# One optimizer step on a batch (see the header). Returns list(loss =,
# output_losses =, outputs = the model's outputs in training mode).
#' @noRd
train_step <- function(self, compiled, batch, slots, state = NULL) {
  graph <- self$graph
  run <- run_graph_forward(graph, batch$x, NULL, training = TRUE, keep = TRUE)
  step <- batch_loss(compiled, batch, run$outputs, grad = TRUE)
  step$loss <- step$loss + regularization_loss(graph, run, slots)
  step$outputs <- run$outputs
  back <- run_graph_backward(graph, run, step$grads, activity = TRUE)
  if (!length(slots)) return(step)
  wgrads <- model_weight_grads(self, back$weights)
  weights <- list()
  grads <- list()
  for (s in slots) {
    w <- s$self$variables[[s$name]]
    g <- wgrads[[s$path]]
    if (!is.null(s$regularizer)) g <- g + regularizer_gradient(s$regularizer, w)
    weights[[s$path]] <- w
    grads[[s$path]] <- g
  }
  if (!is.finite(step$loss) || !all(vapply(grads, function(g) all(is.finite(g)), logical(1)))) {
    where <- if (is.null(state)) "" else sprintf(" in epoch %d, step %d", state$epoch, state$batch + 1L)
    abort_msg(sprintf(paste0("Training diverged%s: the loss or a gradient is not finite (loss %s). The model ",
                             "keeps the weights of the last finished step; try a lower learning rate or ",
                             "gradient clipping."), where, format(step$loss)),
              class = "multihead_error_training")
  }
  suspendInterrupts({
    updated <- optimizer_apply(compiled$optimizer, weights, grads)
    for (s in slots) {
      old <- s$self$variables[[s$name]]
      dims <- if (is.null(dim(old))) length(old) else dim(old)
      v <- store_weight(updated[[s$path]], dims, s$self$dtype)
      if (!is.null(s$constraint)) v <- store_weight(apply_constraint(s$constraint, v), dims, s$self$dtype)
      if (is.null(dim(old))) dim(v) <- NULL  # a scalar weight (shape ()) stays a plain number
      s$self$variables[[s$name]] <- v
    }
    layer_weights_changed(self)
  })
  step
}

# Training and validation sets: validation_data wins; else the last
# `validation_split` of the samples (before shuffling), as Keras 3.
#' @noRd
fit_validation_data <- function(self, data, compiled, validation_split, validation_data) {
  if (!is.null(validation_data)) {
    ok <- is.list(validation_data) && !is.object(validation_data) && length(validation_data) %in% 2:3
    if (!ok) {
      abort_arg("validation_data", "NULL, list(x_val, y_val) or list(x_val, y_val, sample_weight_val)",
                describe_value(validation_data))
    }
    val <- model_data(self, validation_data[[1L]], validation_data[[2L]],
                      if (length(validation_data) == 3L) validation_data[[3L]],
                      args = c(x = "validation_data[[1]]", y = "validation_data[[2]]",
                               sample_weight = "validation_data[[3]]"))
    check_targets_fit_loss(self, val, compiled, "validation_data[[2]]")
    return(list(train = data, val = val))
  }
  if (validation_split == 0) return(list(train = data, val = NULL))
  split_at <- floor(data$n * (1 - validation_split))
  if (split_at == 0 || split_at == data$n) {
    abort_arg("validation_split", sprintf(paste0("a fraction that leaves samples for both training and ",
                                                 "validation (the data has %d samples)"), data$n),
              format(validation_split))
  }
  list(train = data_subset(data, seq_len(split_at)), val = data_subset(data, (split_at + 1L):data$n))
}

# ---- progress display ------------------------------------------------------------
# verbose 1: "Epoch e/E", a cli progress bar with the running logs, then
# Keras's end-of-epoch line; verbose 2: "Epoch e/E" and that line; 0: nothing.

#' @noRd
progress_start <- function(verbose, epoch, epochs, steps) {
  if (verbose == 0L) return(NULL)
  cat(sprintf("Epoch %d/%d\n", epoch, epochs))
  p <- new.env(parent = baseenv())
  p$verbose <- verbose
  p$steps <- steps
  p$start <- proc.time()[["elapsed"]]
  p$status <- ""
  p$bar <- NULL
  if (verbose == 1L && steps > 0L) {
    old <- options(cli.progress_show_after = 0)
    on.exit(options(old))
    p$bar <- cli::cli_progress_bar(
      total = steps, clear = TRUE, .auto_close = FALSE, .envir = p,
      format = "{cli::pb_current}/{cli::pb_total} {cli::pb_bar} {cli::pb_elapsed} - {status}")
  }
  p
}

#' @noRd
progress_update <- function(p, batch, logs) {
  if (is.null(p) || is.null(p$bar)) return(invisible())
  p$status <- format_logs(logs)
  cli::cli_progress_update(id = p$bar, set = batch, .envir = p)
}

#' @noRd
progress_end <- function(p, logs) {
  if (is.null(p)) return(invisible())
  if (!is.null(p$bar)) cli::cli_progress_done(id = p$bar, .envir = p)
  cat(format_epoch_line(p$steps, proc.time()[["elapsed"]] - p$start, logs), "\n", sep = "")
}

#' @noRd
progress_abort <- function(p) {
  if (!is.null(p) && !is.null(p$bar)) cli::cli_progress_done(id = p$bar, .envir = p, result = "failed")
}

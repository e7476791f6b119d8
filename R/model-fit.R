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
#' @param x The model's input: an array; for a model with several inputs a
#'   list of arrays in input order, or a list named by the inputs' names
#'   (other elements are ignored); a data frame (its columns by input name,
#'   factors as their 0-based codes; for a single input that no column is
#'   named after, its numeric columns are the input's features); or a
#'   generator: an R function called with no arguments that returns one
#'   batch, `list(x, y)` or `list(x, y, sample_weight)`, per call and `NULL`
#'   when it has no more data (then `y`, `sample_weight`, `class_weight`,
#'   `batch_size` and `validation_split` are not given). Samples on the first
#'   axis; an input with one axis fewer than the model's input whose last
#'   size is 1 (a vector for an input of shape `(NA, 1)`) gets that axis.
#' @param y The targets: an array (samples first), or for several outputs a
#'   list of them (in output order or named by output); a data frame (a
#'   column per output, or for one output its column(s)). Their shape must
#'   fit the loss (e.g. integer class labels for sparse categorical
#'   cross-entropy, one-hot arrays for categorical cross-entropy).
#' @param ... Must be empty: the other arguments are given by name, as in
#'   keras3.
#' @param batch_size `NULL` or samples per step, a positive whole number.
#'   `NULL` means 32, or with `steps_per_epoch` the number of samples divided
#'   by `steps_per_epoch` (rounded up), as in Keras.
#' @param epochs The index of the last epoch, a whole number (with
#'   `initial_epoch`, training runs epochs `initial_epoch` to `epochs`).
#' @param verbose `"auto"`, 0, 1 or 2: `1` shows a progress bar per epoch
#'   with the running loss and metrics, `2` one line per epoch, `0` nothing;
#'   `"auto"` is 1 in an interactive session and 2 otherwise (and in knitr
#'   documents), as keras3.
#' @param callbacks `NULL`, a callback or a list of callbacks
#'   ([callback_early_stopping()], [callback_model_checkpoint()], ...).
#' @param validation_split A number in \[0, 1): the fraction of the samples,
#'   taken from the end of `x` and `y` before any shuffling, held out to
#'   compute validation loss and metrics after each epoch (arrays and data
#'   frames only).
#' @param validation_data `NULL`, `list(x_val, y_val)` or `list(x_val,
#'   y_val, sample_weight_val)`, or a generator function as for `x`: data to
#'   validate on after each epoch (overrides `validation_split`).
#' @param shuffle `TRUE`, `FALSE` or `"batch"`: whether to visit the
#'   training samples in a new random order each epoch; `"batch"`, as Keras
#'   3, keeps the batches in order and shuffles the samples within each
#'   batch. Ignored for a generator.
#' @param sample_weight `NULL`, or one non-negative weight per sample (or an
#'   array with the samples on its first axis, as the loss accepts),
#'   weighting the loss and the `weighted_metrics`.
#' @param initial_epoch The epoch to start from (1 for a new run; useful to
#'   resume training): epochs are numbered from it in the history's
#'   printout, the callbacks and the progress display.
#' @param class_weight `NULL`, or weights by class for a model with one
#'   output: a numeric vector or list named by 0-based class index (e.g.
#'   `c("0" = 1, "1" = 5)`; an unnamed vector gives classes 0, 1, ... in
#'   order). Each training sample's weight is the weight of its class (its
#'   label, or the position of the largest value of a one-hot target), 1 for
#'   classes not named; used as `sample_weight` (which must then be `NULL`).
#'   Validation is not weighted.
#' @param steps_per_epoch `NULL` or a positive whole number: the batches per
#'   epoch. With arrays, the next epoch continues where the last stopped (a
#'   new pass over the data starts when one is used up; an epoch that finds
#'   the pass used up ends early with a warning). With a generator, `NULL`
#'   runs each epoch until the generator returns `NULL`.
#' @param validation_steps `NULL` or a positive whole number: the batches of
#'   the validation data used at each validation (from its start for arrays;
#'   the next ones for a generator).
#' @param validation_batch_size `NULL` (`batch_size`) or samples per
#'   validation batch.
#' @param validation_freq A positive whole number: validate after every
#'   `validation_freq`-th epoch.
#' @returns Invisibly, the training history: a `keras_training_history`
#'   object (`params`: `verbose`, `epochs`, `steps`; `metrics`: one vector per
#'   logged quantity, `loss`, the metrics, then `val_loss` and the `val_`
#'   metrics, and what callbacks add, such as `learning_rate`), with
#'   `print()`, `plot()` and `as.data.frame()` methods.
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
#' # a generator: an R function returning one batch per call
#' next_batch <- function() {
#'   i <- sample.int(256, 32)
#'   list(x[i, ], y[i, , drop = FALSE])
#' }
#' model |> fit(next_batch, steps_per_epoch = 8, epochs = 2, verbose = 0)
fit.multihead_model <- function(object, x = NULL, y = NULL, ..., batch_size = NULL, epochs = 1,
                                callbacks = NULL, validation_split = 0, validation_data = NULL, shuffle = TRUE,
                                class_weight = NULL, sample_weight = NULL, initial_epoch = 1,
                                steps_per_epoch = NULL, validation_steps = NULL, validation_batch_size = NULL,
                                validation_freq = 1, verbose = "auto") {
  if (...length()) {
    abort_arg("...", paste0("empty (fit() takes x, y, batch_size, epochs, verbose, callbacks, validation_split, ",
                            "validation_data, shuffle, sample_weight, initial_epoch, class_weight, ",
                            "steps_per_epoch, validation_steps, validation_batch_size and validation_freq)"),
              sprintf("%d more argument(s)", ...length()))
  }
  generator <- is_generator_data(x)
  if (is.null(x)) abort_arg("x", "supplied: the model's input array(s) or a generator function")
  if (is.null(y) && !generator) abort_arg("y", "supplied: the targets")
  batch_size <- check_whole(batch_size, "batch_size", null_ok = TRUE)
  epochs <- check_whole(epochs, "epochs", min = 0L)
  initial_epoch <- check_whole(initial_epoch, "initial_epoch")
  verbose <- resolve_verbose(verbose)
  callbacks <- as_callback_list(callbacks)
  validation_split <- check_number(validation_split, "validation_split", lower = 0, upper = 1)
  if (validation_split >= 1) abort_arg("validation_split", "a number in [0, 1)", format(validation_split))
  shuffle_given <- !missing(shuffle)
  shuffle <- check_shuffle(shuffle)
  steps_per_epoch <- check_whole(steps_per_epoch, "steps_per_epoch", null_ok = TRUE)
  validation_steps <- check_whole(validation_steps, "validation_steps", null_ok = TRUE)
  validation_batch_size <- check_whole(validation_batch_size, "validation_batch_size", null_ok = TRUE)
  validation_freq <- check_whole(validation_freq, "validation_freq")
  self <- layer_self(object)
  compiled <- model_compiled(self, "fit")

  if (generator) {
    for (a in c("y", "sample_weight", "class_weight", "batch_size")) {
      if (!is.null(get(a))) {
        abort_arg(a, sprintf("NULL when `x` is a generator function (its batches %s)",
                             if (a == "batch_size") "have their own size" else "carry the targets and weights"),
                  describe_value(get(a)))
      }
    }
    if (validation_split > 0) {
      abort_arg("validation_split", "0 when `x` is a generator function (give validation_data instead)",
                format(validation_split))
    }
    if (shuffle_given && !isFALSE(shuffle)) {
      warning("`shuffle` is ignored when `x` is a generator function: its batches come in its own order.",
              call. = FALSE)
    }
    src <- new_generator_source(x, steps_per_epoch, "x")
    first <- generator_batch_data(self, generator_peek(src), "x")
    shapes <- check_targets_fit_loss(self, first, compiled, "x()[[2]]")
    y_shapes <- lapply(first$y, shape_of)
    val_src <- fit_validation_source(self, compiled, validation_data, validation_steps,
                                     validation_batch_size %||% 32L)
    samples <- NULL
  } else {
    x <- normalize_model_x(self, x, "x")
    y <- normalize_model_y(self, y, "y")
    data <- model_data(self, x, y, sample_weight)
    if (!is.null(class_weight)) {
      if (!is.null(sample_weight)) {
        abort_arg("class_weight", "NULL when `sample_weight` is given (give one or the other)",
                  describe_value(class_weight))
      }
      if (length(data$y) > 1L) {
        abort_arg("class_weight", "NULL for a model with several outputs (class weights need a single output)",
                  describe_value(class_weight))
      }
      check_class_weight(class_weight)
    }
    shapes <- check_targets_fit_loss(self, data, compiled, "y")
    split <- fit_validation_data(self, data, compiled, validation_split, validation_data)
    train <- split$train
    if (!is.null(class_weight)) train$sw <- class_weight_sample_weights(class_weight, train$y[[1L]])
    bs <- batch_size %||% if (is.null(steps_per_epoch)) 32L else as.integer(ceiling(train$n / steps_per_epoch))
    src <- new_array_source(train, bs, shuffle, steps_per_epoch)
    y_shapes <- lapply(train$y, shape_of)
    val_src <- if (!is.null(split$val)) {
      new_array_source(split$val, validation_batch_size %||% batch_size %||%
                         if (is.null(validation_steps)) 32L else
                           as.integer(ceiling(split$val$n / validation_steps)),
                       FALSE, validation_steps)
    } else fit_validation_source(self, compiled, validation_data, validation_steps,
                                 validation_batch_size %||% bs)
    samples <- train$n
  }
  metrics <- compiled_metrics(self, y_shapes, shapes)
  steps <- source_steps(src)

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
  state$steps <- steps
  state$logs <- NULL
  state$progress <- NULL
  nan_ok <- any(vapply(callbacks, function(cb) inherits(cb, "TerminateOnNaN") && !is_class_instance(cb), logical(1)))

  callbacks_call(callbacks, "on_train_begin", context = context)
  # a callback (backup and restore) may resume from a later epoch
  if (!is.null(context$initial_epoch)) initial_epoch <- context$initial_epoch
  interrupted <- tryCatch({
    # a compact sequence: epochs = .Machine$integer.max (with early stopping) allocates nothing
    for (epoch in if (epochs >= initial_epoch) seq.int(initial_epoch, epochs) else integer()) {
      state$epoch <- epoch
      state$batch <- 0L
      callbacks_call(callbacks, "on_epoch_begin", epoch, context = context)
      logs <- fit_epoch(self, compiled, metrics, src, callbacks, context, state, epochs, nan_ok)
      if (is.null(logs)) {
        # a generator with no data left: the epoch did not happen
        progress_abort(state$progress)
        state$progress <- NULL
        break
      }
      if (!is.null(val_src) && epoch %% validation_freq == 0L) {
        val_logs <- evaluate_source(self, compiled, metrics, val_src, "validation")
        if (!is.null(val_logs)) logs <- c(logs, stats::setNames(val_logs, paste0("val_", names(val_logs))))
      }
      progress_end(state$progress, logs, state$batch)
      state$progress <- NULL
      logs <- callbacks_call(callbacks, "on_epoch_end", epoch, logs, context)
      history <- history_add_epoch(history, Filter(function(v) is.numeric(v) && length(v) == 1L, logs))
      state$logs <- logs
      if (isTRUE(context$stop_training)) break
    }
    FALSE
  }, interrupt = function(e) TRUE)
  if (interrupted) {
    progress_abort(state$progress)
    message(sprintf(paste0("Training interrupted in epoch %d after %d%s steps; the model keeps the weights ",
                           "of its last finished step."), state$epoch, state$batch,
                    if (is.na(state$steps)) "" else sprintf(" of %d", state$steps)))
    return(invisible(history))
  }
  callbacks_call(callbacks, "on_train_end", logs = state$logs, context = context)
  invisible(history)
}

#' @noRd
check_shuffle <- function(shuffle) {
  if (identical(shuffle, "batch")) return("batch")
  if (!(is.logical(shuffle) && length(shuffle) == 1L && !is.na(shuffle))) {
    abort_arg("shuffle", "TRUE, FALSE or \"batch\"", describe_value(shuffle))
  }
  shuffle
}

# One epoch of training from the source `src`; returns its logs. `state`
# records the progress (for the interrupt message) and the epoch's progress
# display. With `nan_ok` (a TerminateOnNaN callback is given) a step whose
# loss or gradients are not finite is not applied and logs a non-finite
# loss for the callback to stop on; otherwise it is an error.
#' @noRd
fit_epoch <- function(self, compiled, metrics, src, callbacks, context, state, epochs, nan_ok = FALSE) {
  tracker <- new_loss_tracker(length(compiled$losses))
  for (e in metrics) metric_reset(e$metric)
  slots <- model_trainable_slots(self)
  arrays <- identical(src$kind, "arrays")
  if (arrays) {
    batches <- array_epoch_batches(src)
    n_steps <- length(batches)
    native_x <- graph_native_inputs(self$graph)
  } else n_steps <- if (is.null(src$steps)) NA_integer_ else src$steps
  state$progress <- progress_start(context$params$verbose, state$epoch, epochs, n_steps)
  logs <- current_logs(tracker, compiled, metrics)
  b <- 0L
  repeat {
    if (!is.na(n_steps) && b >= n_steps) break
    if (arrays) {
      batch <- data_subset(src$data, batches[[b + 1L]], native_x)
    } else {
      raw <- generator_draw(src)
      if (is.null(raw)) {
        if (b == 0L || !is.null(src$steps)) {
          # with steps_per_epoch, NULL means the data ran out: training stops
          if (b > 0L) warn_ran_out(sprintf("epoch %d", state$epoch), b, src$steps, "steps_per_epoch")
          else warning(sprintf("The generator `x` gave no data for epoch %d; training stops.", state$epoch),
                       call. = FALSE)
          context$stop_training <- TRUE
        } else {
          # without steps_per_epoch, NULL ends the epoch; the next epoch calls `x` again
          src$exhausted <- FALSE
        }
        break
      }
      batch <- generator_batch_data(self, raw, "x")
    }
    b <- b + 1L
    callbacks_call(callbacks, "on_train_batch_begin", b, context = context)
    step <- train_step(self, compiled, batch, slots, state, nan_ok = nan_ok)
    state$batch <- b
    tracker_update(tracker, step, batch$n)
    update_metrics(metrics, batch, step$outputs)
    logs <- current_logs(tracker, compiled, metrics)
    progress_update(state$progress, b, logs)
    logs <- callbacks_call(callbacks, "on_train_batch_end", b, logs, context)
    if (isTRUE(context$stop_training)) break
  }
  if (b == 0L && !arrays) return(NULL)
  if (arrays && isTRUE(attr(batches, "ran_out")) && !isTRUE(context$stop_training)) {
    warn_ran_out(sprintf("epoch %d", state$epoch), n_steps, src$steps, "steps_per_epoch")
  }
  current_logs(tracker, compiled, metrics)
}

# One optimizer step on a batch (see the header). Returns list(loss =,
# output_losses =, outputs = the model's outputs in training mode).
#' @noRd
train_step <- function(self, compiled, batch, slots, state = NULL, nan_ok = FALSE) {
  graph <- self$graph
  run <- run_graph_forward(graph, batch$x, NULL, training = TRUE, keep = TRUE, native = TRUE)
  on.exit(release_natives(), add = TRUE)  # (also when the step fails)
  step <- batch_loss(compiled, batch, run$outputs, grad = TRUE)
  step$loss <- step$loss + regularization_loss(graph, run, slots)
  step$outputs <- run$outputs
  back <- run_graph_backward(graph, run, step$grads, activity = TRUE, input_grads = FALSE)
  release_natives()
  if (!length(slots)) return(step)
  weights <- list()
  grads <- list()
  for (s in slots) {
    w <- s$self$variables[[s$name]]
    g <- as_weight_grad(back$weights[[var_key(s$self, s$name)]], w)
    if (!is.null(s$regularizer)) g <- g + regularizer_gradient(s$regularizer, w)
    weights[[s$path]] <- w
    grads[[s$path]] <- g
  }
  if (!is.finite(step$loss) || !all(vapply(grads, cpp_all_finite, logical(1), threads = mh_threads()))) {
    if (nan_ok) {
      if (is.finite(step$loss)) step$loss <- NaN
      return(step)
    }
    where <- if (is.null(state)) "" else sprintf(" in epoch %d, step %d", state$epoch, state$batch + 1L)
    abort_msg(sprintf(paste0("Training diverged%s: the loss or a gradient is not finite (loss %s). The model ",
                             "keeps the weights of the last finished step; try a lower learning rate or ",
                             "gradient clipping."), where, format(step$loss)),
              class = "multihead_error_training")
  }
  suspendInterrupts({
    updated <- optimizer_apply(compiled$optimizer, weights, grads,
                               float32 = vapply(slots, function(s) identical(s$self$dtype, "float32"), logical(1)))
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
    if (is_generator_data(validation_data)) return(list(train = data, val = NULL))
    return(list(train = data, val = validation_list_data(self, compiled, validation_data)))
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

# validation_data given as list(x_val, y_val[, sample_weight_val]) -> a
# checked data set.
#' @noRd
validation_list_data <- function(self, compiled, validation_data) {
  ok <- is.list(validation_data) && !is.object(validation_data) && length(validation_data) %in% 2:3
  if (!ok) {
    abort_arg("validation_data", paste0("NULL, list(x_val, y_val), list(x_val, y_val, sample_weight_val) or a ",
                                        "generator function"), describe_value(validation_data))
  }
  val <- model_data(self, normalize_model_x(self, validation_data[[1L]], "validation_data[[1]]"),
                    normalize_model_y(self, validation_data[[2L]], "validation_data[[2]]"),
                    if (length(validation_data) == 3L) validation_data[[3L]],
                    args = c(x = "validation_data[[1]]", y = "validation_data[[2]]",
                             sample_weight = "validation_data[[3]]"))
  check_targets_fit_loss(self, val, compiled, "validation_data[[2]]")
  val
}

# The source of validation batches when validation_data is a generator
# function or (training from a generator) a list of arrays; NULL without
# validation data.
#' @noRd
fit_validation_source <- function(self, compiled, validation_data, validation_steps, batch_size) {
  if (is.null(validation_data)) return(NULL)
  if (is_generator_data(validation_data)) {
    src <- new_generator_source(validation_data, validation_steps, "validation_data")
    first <- generator_batch_data(self, generator_peek(src), "validation_data")
    check_targets_fit_loss(self, first, compiled, "validation_data()[[2]]")
    return(src)
  }
  val <- validation_list_data(self, compiled, validation_data)
  if (is.null(batch_size) && !is.null(validation_steps)) batch_size <- as.integer(ceiling(val$n / validation_steps))
  new_array_source(val, batch_size, FALSE, validation_steps)
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
  if (verbose == 1L && (is.na(steps) || steps > 0L)) {
    old <- options(cli.progress_show_after = 0)
    on.exit(options(old))
    p$bar <- cli::cli_progress_bar(
      total = steps, clear = TRUE, .auto_close = FALSE, .envir = p,
      format = if (is.na(steps)) "{cli::pb_current} {cli::pb_spin} {cli::pb_elapsed} - {status}" else
        "{cli::pb_current}/{cli::pb_total} {cli::pb_bar} {cli::pb_elapsed} - {status}")
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
progress_end <- function(p, logs, done = p$steps) {
  if (is.null(p)) return(invisible())
  if (!is.null(p$bar)) cli::cli_progress_done(id = p$bar, .envir = p)
  steps <- if (is.na(p$steps)) done else p$steps
  cat(format_epoch_line(steps, proc.time()[["elapsed"]] - p$start, logs), "\n", sep = "")
}

#' @noRd
progress_abort <- function(p) {
  if (!is.null(p) && !is.null(p$bar)) cli::cli_progress_done(id = p$bar, .envir = p, result = "failed")
}

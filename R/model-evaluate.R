# evaluate(), and what it shares with fit(): the compiled loss of a batch,
# the running loss and metrics of an epoch (Keras 3's loss tracker and
# compiled metrics), the evaluation loop (also fit()'s validation) and the
# formatting of logs.
#
# The evaluate() generic: keras3 uses one whose first argument is `object`
# (tensorflow's), which its signature evaluate(object, x, y, ...) needs.
# generics::evaluate(x, ...) names its first argument `x`, so a method
# (object, x, y, ...) on it fails R CMD check's generic/method consistency
# and evaluate(model, x = ..., y = ...) would dispatch on the data. So
# multihead has its own generic evaluate(object, ...), whose default method
# hands everything else to generics::evaluate (so other packages' methods
# keep working through it), and registers its method on generics::evaluate
# as well (so evaluate(model, x, y) also works when generics' generic masks
# this one).

#' Evaluate an object
#'
#' A generic whose first argument is the object evaluated, as in keras3. The
#' method for models is [evaluate.multihead_model()]; for other objects the
#' call is passed on to [generics::evaluate()].
#'
#' @param object The object to evaluate (a compiled model).
#' @param ... Passed to the method.
#' @returns What the method returns.
#' @export
#' @keywords internal
evaluate <- function(object, ...) UseMethod("evaluate")

#' @export
evaluate.default <- function(object, ...) {
  # generics::evaluate() would find this method again for classes it has no
  # method for, and recurse until the C stack overflows
  generics_ns <- asNamespace("generics")
  has_method <- any(vapply(.class2(object), function(cl) {
    !is.null(utils::getS3method("evaluate", cl, optional = TRUE, envir = generics_ns))
  }, logical(1)))
  if (!has_method) {
    abort_arg("object", "a compiled model (or an object with a generics::evaluate() method)",
              describe_value(object))
  }
  generics::evaluate(object, ...)
}

#' Evaluate a model's loss and metrics
#'
#' Runs the compiled model on `x` in batches (dropout inactive) and returns
#' the loss and the compiled metrics over all samples, as keras3's
#' `evaluate()`. The loss is the mean of the batch losses weighted by the
#' batch sizes and includes the regularization losses, as in Keras 3.
#'
#' The method is also registered for [generics::evaluate()], so that
#' `evaluate(model, x, y)` works when that generic masks this package's.
#'
#' @param object A compiled model.
#' @param x The model's input, in the forms [fit()][fit.multihead_model]
#'   takes: an array, a (named) list of arrays for several inputs, a data
#'   frame, or a generator function returning `list(x, y)` or `list(x, y,
#'   sample_weight)` per call and `NULL` when done (then `y`,
#'   `sample_weight` and `batch_size` are not given).
#' @param y The targets: an array (samples first), or for several outputs a
#'   list of them (in output order or named by output), or a data frame.
#' @param ... Must be empty: the other arguments are given by name, as in
#'   keras3.
#' @param batch_size `NULL` or samples per batch, a positive whole number.
#'   `NULL` means 32, or with `steps` the number of samples divided by
#'   `steps` (rounded up).
#' @param verbose `"auto"`, 0, 1 or 2: `1` shows a progress bar, `2` one
#'   line when done, `0` nothing; `"auto"` is 1 in an interactive session and
#'   2 otherwise (and in knitr documents), as keras3.
#' @param sample_weight `NULL`, or one non-negative weight per sample (or an
#'   array with the samples on its first axis, as the loss accepts), applied
#'   to the loss and to `weighted_metrics`.
#' @param steps `NULL` or a positive whole number: evaluate the first
#'   `steps` batches only (for a generator: draw `steps` batches; `NULL`
#'   draws until it returns `NULL`).
#' @returns A named numeric vector: `loss` (with several outputs also
#'   `<output>_loss`), then each compiled metric.
#' @seealso [compile.multihead_model()], [fit.multihead_model()].
#' @export
#' @rawNamespace S3method(generics::evaluate, multihead_model)
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(64 * 3), 64)
#' y <- x %*% c(1, -2, 0.5)
#' model <- keras_model_sequential(input_shape = 3) |> layer_dense(1)
#' model |> compile(optimizer = "sgd", loss = "mse", metrics = "mae")
#' evaluate(model, x, y, verbose = 0)
#' evaluate(model, x, y, batch_size = 16, steps = 2, verbose = 0)  # the first 32 samples
evaluate.multihead_model <- function(object, x = NULL, y = NULL, ..., batch_size = NULL, verbose = "auto",
                                     sample_weight = NULL, steps = NULL) {
  if (...length()) {
    abort_arg("...", "empty (evaluate() takes x, y, batch_size, verbose, sample_weight and steps)",
              sprintf("%d more argument(s)", ...length()))
  }
  generator <- is_generator_data(x)
  if (is.null(x)) abort_arg("x", "supplied: the model's input array(s) or a generator function")
  if (is.null(y) && !generator) abort_arg("y", "supplied: the targets")
  batch_size <- check_whole(batch_size, "batch_size", null_ok = TRUE)
  steps <- check_whole(steps, "steps", null_ok = TRUE)
  verbose <- resolve_verbose(verbose)
  self <- layer_self(object)
  compiled <- model_compiled(self, "evaluate")
  if (generator) {
    for (a in c("y", "sample_weight", "batch_size")) {
      if (!is.null(get(a))) {
        abort_arg(a, "NULL when `x` is a generator function (its batches carry the targets and weights)",
                  describe_value(get(a)))
      }
    }
    src <- new_generator_source(x, steps, "x")
    first <- generator_batch_data(self, generator_peek(src), "x")
    shapes <- check_targets_fit_loss(self, first, compiled, "x()[[2]]")
    y_shapes <- lapply(first$y, shape_of)
  } else {
    data <- model_data(self, normalize_model_x(self, x, "x"), normalize_model_y(self, y, "y"), sample_weight)
    shapes <- check_targets_fit_loss(self, data, compiled, "y")
    y_shapes <- lapply(data$y, shape_of)
    bs <- batch_size %||% if (is.null(steps)) 32L else as.integer(ceiling(data$n / steps))
    src <- new_array_source(data, bs, FALSE, steps)
  }
  metrics <- compiled_metrics(self, y_shapes, shapes)
  start <- proc.time()[["elapsed"]]
  logs <- evaluate_source(self, compiled, metrics, src, "evaluate()", progress = verbose == 1)
  if (is.null(logs)) abort_arg("x", "a generator function that yields at least one batch", "NULL at once")
  if (verbose > 0) {
    cat(format_epoch_line(attr(logs, "steps"), proc.time()[["elapsed"]] - start, logs), "\n", sep = "")
  }
  unlist(logs)
}

# "auto" -> 1 in an interactive session outside knitr, else 2 (keras3).
#' @noRd
resolve_verbose <- function(verbose) {
  if (identical(verbose, "auto")) {
    return(if (interactive() && !isTRUE(getOption("knitr.in.progress"))) 1L else 2L)
  }
  if (!(is.numeric(verbose) && length(verbose) == 1L && !is.na(verbose) && verbose %in% 0:2)) {
    abort_arg("verbose", "\"auto\", 0, 1 or 2", describe_value(verbose))
  }
  as.integer(verbose)
}

# Runs the batches of a source (model-data.R) in inference mode and returns
# the logs (loss, per-output losses, metrics) as a named list, with the
# number of batches run as attribute "steps"; NULL when a generator gave no
# batch. The metrics are reset first. An array source runs its first
# `steps` batches (all without), in order, from the start at every call; a
# generator source draws `steps` batches (or until it returns NULL, and is
# called again at the next evaluation). `what` names the run in warnings.
#' @noRd
evaluate_source <- function(self, compiled, metrics, src, what, progress = FALSE) {
  tracker <- new_loss_tracker(length(compiled$losses))
  for (e in metrics) metric_reset(e$metric)
  slots <- model_trainable_slots(self)
  arrays <- identical(src$kind, "arrays")
  if (arrays) {
    batches <- unname(batch_indices(seq_len(src$data$n), src$batch_size))
    if (!is.null(src$steps)) {
      if (src$steps > length(batches)) {
        warn_ran_out(what, length(batches), src$steps, if (what == "validation") "validation_steps" else "steps")
      }
      batches <- batches[seq_len(min(src$steps, length(batches)))]
    }
    total <- length(batches)
    native_x <- graph_native_inputs(self$graph)
  } else total <- if (is.null(src$steps)) NA_integer_ else src$steps
  bar <- NULL
  if (progress && (is.na(total) || total > 1L)) {
    bar <- cli::cli_progress_bar("Evaluating", total = total, .auto_close = FALSE)
    on.exit(cli::cli_progress_done(id = bar), add = TRUE)
  }
  b <- 0L
  repeat {
    if (!is.na(total) && b >= total) break
    if (arrays) {
      batch <- data_subset(src$data, batches[[b + 1L]], native_x)
    } else {
      raw <- generator_draw(src)
      if (is.null(raw)) {
        if (!is.null(src$steps) && b > 0L) {
          warn_ran_out(what, b, src$steps, if (what == "validation") "validation_steps" else "steps")
        }
        if (is.null(src$steps)) src$exhausted <- FALSE
        break
      }
      batch <- generator_batch_data(self, raw, src$arg)
    }
    b <- b + 1L
    run <- run_graph_forward(self$graph, batch$x, NULL, training = FALSE, keep = TRUE, native = TRUE)
    step <- batch_loss(compiled, batch, run$outputs, grad = FALSE)
    step$loss <- step$loss + regularization_loss(self$graph, run, slots)
    release_natives()
    tracker_update(tracker, step, batch$n)
    update_metrics(metrics, batch, run$outputs)
    if (!is.null(bar)) cli::cli_progress_update(id = bar)
  }
  if (b == 0L) {
    warning(sprintf("The generator `%s` gave no data for %s; it is skipped.", src$arg, what), call. = FALSE)
    return(NULL)
  }
  structure(current_logs(tracker, compiled, metrics), steps = b)
}

# Runs every batch of `data` in inference mode and returns the logs.
#' @noRd
evaluate_batches <- function(self, compiled, metrics, data, batch_size, progress = FALSE) {
  logs <- evaluate_source(self, compiled, metrics, new_array_source(data, batch_size, FALSE, NULL), "evaluation",
                          progress)
  attr(logs, "steps") <- NULL
  logs
}

# The compiled loss of a batch from the model's outputs `outs`: list(loss =
# sum of the weighted output losses, output_losses =, grads = <per output
# dLoss/dy_pred, NULL for outputs without a loss> when grad = TRUE).
#' @noRd
batch_loss <- function(compiled, batch, outs, grad) {
  n_out <- length(outs)
  values <- numeric(n_out)
  grads <- vector("list", n_out)
  for (k in seq_len(n_out)) {
    loss <- compiled$losses[[k]]
    if (is.null(loss)) next
    r <- loss_evaluate(loss, batch$y[[k]], outs[[k]], batch$sw, grad = grad)
    values[[k]] <- r$value
    if (grad) {
      g <- r$grad * compiled$loss_weights[[k]]
      if (is.null(dim(g))) dim(g) <- shape_of(outs[[k]])
      grads[[k]] <- g
    }
  }
  list(loss = sum(values * compiled$loss_weights), output_losses = values, grads = grads)
}

#' @noRd
update_metrics <- function(metrics, batch, outs) {
  for (e in metrics) {
    metric_update(e$metric, batch$y[[e$output]], outs[[e$output]], if (e$weighted) batch$sw)
  }
}

# Keras 3's loss tracker: the mean of the batch losses weighted by the batch
# sizes (and the same per output).
#' @noRd
new_loss_tracker <- function(n_out) {
  t <- new.env(parent = emptyenv())
  t$total <- 0
  t$outputs <- numeric(n_out)
  t$count <- 0
  t
}

#' @noRd
tracker_update <- function(tracker, step, n) {
  tracker$total <- tracker$total + step$loss * n
  tracker$outputs <- tracker$outputs + step$output_losses * n
  tracker$count <- tracker$count + n
  invisible(tracker)
}

# The logs so far: list(loss =, <output>_loss = (several outputs), <metric> =).
#' @noRd
current_logs <- function(tracker, compiled, metrics) {
  mean_of <- function(v) if (tracker$count == 0) 0 else v / tracker$count
  logs <- list(loss = mean_of(tracker$total))
  labels <- compiled$output_labels
  if (length(labels) > 1L) {
    for (k in seq_along(labels)) logs[[paste0(labels[[k]], "loss")]] <- mean_of(tracker$outputs[[k]])
  }
  for (e in metrics) logs[[e$metric$name]] <- metric_result(e$metric)
  logs
}

# Keras's number format in logs: 4 decimals, or scientific when small.
#' @noRd
format_log_value <- function(v) {
  if (is.na(v)) return("nan")
  if (v != 0 && abs(v) < 1e-3) sprintf("%.4e", v) else sprintf("%.4f", v)
}

#' @noRd
format_logs <- function(logs) {
  paste(vapply(names(logs), function(nm) paste0(nm, ": ", format_log_value(logs[[nm]])), character(1)),
        collapse = " - ")
}

# Keras 3's end-of-epoch line: "32/32 - 1s - 12ms/step - loss: 0.1234 - ...".
#' @noRd
format_epoch_line <- function(steps, seconds, logs) {
  per_step <- if (steps > 0) seconds / steps else 0
  step_time <- if (per_step >= 1) sprintf("%.0fs/step", per_step) else
    if (per_step >= 1e-3) sprintf("%.0fms/step", per_step * 1e3) else sprintf("%.0fus/step", per_step * 1e6)
  sprintf("%d/%d - %.0fs - %s - %s", steps, steps, seconds, step_time, format_logs(logs))
}

# The data of fit() and evaluate(): inputs, targets and sample weights
# checked against a model and its compiled loss, split and cut into batches.
#
# A data set is list(x = <list of input arrays aligned with the model's
# inputs>, y = <list of target arrays, one per output>, sw = <NULL or sample
# weights, first axis = samples>, n = <number of samples>). Every array has
# the samples on its first axis.

# Checks and converts x / y / sample_weight; `args` names them in errors
# (e.g. c(x = "validation_data[[1]]", ...)). Builds a sequential model that
# has not seen data yet.
#' @noRd
model_data <- function(self, x, y, sample_weight = NULL,
                       args = c(x = "x", y = "y", sample_weight = "sample_weight")) {
  rename_arg_errors(model_ensure_built(self, x), "inputs", args[["x"]])
  vals <- rename_arg_errors(model_input_values(self, x), "inputs", args[["x"]])
  present <- Filter(Negate(is.null), vals)
  counts <- vapply(present, function(v) dim(v)[1L], integer(1))
  if (length(unique(counts)) > 1L) {
    abort_arg(args[["x"]], "arrays with the same number of samples (first axis)",
              sprintf("sample counts %s", paste(counts, collapse = ", ")))
  }
  n <- counts[[1L]]
  ys <- model_target_list(self, y, args[["y"]])
  for (k in seq_along(ys)) {
    arg <- if (length(ys) == 1L) args[["y"]] else sprintf("%s[[%d]]", args[["y"]], k)
    yk <- ys[[k]]
    if (!(is.numeric(yk) || is.logical(yk)) || is.object(yk) || length(yk) == 0L) {
      abort_arg(arg, "a numeric array of targets (samples on the first axis)", describe_value(yk))
    }
    if (anyNA(yk) || (is.double(yk) && !all(is.finite(yk)))) {
      abort_arg(arg, "finite: it contains NA, NaN or Inf")
    }
    ny <- shape_of(yk)[[1L]]
    if (ny != n) {
      abort_arg(arg, sprintf("targets for the %d samples of `%s` (first axis)", n, args[["x"]]),
                sprintf("%d samples", ny))
    }
    if (is.null(dim(yk))) dim(yk) <- length(yk)
    ys[[k]] <- yk
  }
  sw <- sample_weight
  if (is.logical(sw) && !is.object(sw)) storage.mode(sw) <- "double"   # a mask (e.g. labels != 0), as Keras casts it
  if (!is.null(sw)) {
    if (!is.numeric(sw) || is.object(sw) || length(sw) == 0L || anyNA(sw) || !all(is.finite(sw)) ||
        any(sw < 0)) {
      abort_arg(args[["sample_weight"]], "NULL or non-negative finite numbers, one per sample",
                describe_value(sw))
    }
    if (shape_of(sw)[[1L]] != n) {
      abort_arg(args[["sample_weight"]], sprintf("one weight per sample of `%s` (%d)", args[["x"]], n),
                sprintf("%d weights (first axis)", shape_of(sw)[[1L]]))
    }
    storage.mode(sw) <- "double"
    if (is.null(dim(sw))) dim(sw) <- length(sw)
  }
  list(x = vals, y = ys, sw = sw, n = n)
}

# Runs `expr`; an argument error about `from` (e.g. "`inputs[[2]]` must be")
# is re-raised naming `to` instead.
#' @noRd
rename_arg_errors <- function(expr, from, to) {
  tryCatch(expr, multihead_error_argument = function(e) {
    prefix <- paste0("`", from)
    if (startsWith(conditionMessage(e), prefix)) {
      e$message <- paste0("`", to, substring(conditionMessage(e), nchar(prefix) + 1L))
    }
    stop(e)
  })
}

# The targets as a list aligned with the model's outputs.
#' @noRd
model_target_list <- function(self, y, arg) {
  n_out <- length(self$graph$outputs)
  if (n_out == 1L) {
    if (is.list(y) && !is.object(y) && length(y) == 1L) y <- y[[1L]]
    return(list(y))
  }
  labels <- model_output_labels(self)
  if (!is.list(y) || is.object(y) || length(y) != n_out) {
    abort_arg(arg, sprintf("a list of %d target arrays, one per output (%s)", n_out, quote_names(labels)),
              describe_value(y))
  }
  per_output(y, labels, arg)
}

# The samples `idx` of a data set.
#' @noRd
data_subset <- function(data, idx) {
  take <- function(v) if (is.null(v)) NULL else slice_first_axis(v, idx)
  list(x = lapply(data$x, take), y = lapply(data$y, take), sw = take(data$sw), n = length(idx))
}

# The batches of `order` (sample indices), `batch_size` at a time.
#' @noRd
batch_indices <- function(order, batch_size) {
  split(order, ceiling(seq_along(order) / batch_size))
}

# Checks, on the first few samples, that the targets fit each output's loss
# (and the output's shape); the loss's complaint is reported naming `arg`.
# Returns the output shapes (batch included) for these inputs.
#' @noRd
check_targets_fit_loss <- function(self, data, compiled, arg) {
  shapes <- graph_output_shapes(self$graph, lapply(data$x, function(v) if (is.null(v)) NULL else dim(v)))
  for (k in seq_along(shapes)) {
    loss <- compiled$losses[[k]]
    if (is.null(loss)) next
    out_shape <- shapes[[k]]
    # all samples unless the predictions would be large
    idx <- seq_len(if (prod(out_shape) <= 1e6) data$n else min(data$n, 256L))
    dummy <- array(0.5, c(length(idx), out_shape[-1L]))
    yk <- slice_first_axis(data$y[[k]], idx)
    what <- if (length(shapes) == 1L) arg else sprintf("%s[[%d]]", arg, k)
    tryCatch(loss_evaluate(loss, yk, dummy, NULL, grad = FALSE),
             multihead_error = function(e) {
               msg <- sub("^`y_true` must be ", "expected ", conditionMessage(e))
               msg <- gsub("`y_pred`", "the predictions", msg, fixed = TRUE)
               abort_msg(sprintf("`%s` does not fit the loss \"%s\" for the model's output of shape %s: %s",
                                 what, loss_self(loss)$config$name, fmt_shape(c(NA, out_shape[-1L])), msg),
                         class = "multihead_error_argument")
             })
  }
  shapes
}

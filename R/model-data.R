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

# The samples `idx` of a data set. `native_x`: NULL, or a logical per input
# (graph_native_inputs()): those inputs are taken as native tensors.
#' @noRd
data_subset <- function(data, idx, native_x = NULL) {
  take <- function(v, native = FALSE) if (is.null(v)) NULL else slice_first_axis(v, idx, native)
  x <- if (is.null(native_x)) lapply(data$x, take) else Map(take, data$x, native_x)
  list(x = x, y = lapply(data$y, take), sw = take(data$sw), n = length(idx))
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

# ---- data as keras3 users give it -------------------------------------------------
# Before the checks above, `x` is brought to what model_input_values() takes,
# as keras3 (which hands R lists to Keras as Python lists and dicts) and
# Keras 3's Functional._standardize_inputs() do:
#   * a data frame is a named list of its columns (factor columns become
#     their 0-based codes, as keras3 converts factors); when the model has a
#     single input that no column is named after, the data frame's columns
#     (all numeric or logical) are the features of that input, a matrix
#     (samples, columns);
#   * a named list whose names include the names of the model's inputs (the
#     names of its input tensors) gives the inputs by name; other elements
#     are ignored, as Keras ignores extra keys of a dict;
#   * an input given with one axis fewer than the input's rank, whose last
#     size is 1, gets that axis (a vector for an input of shape (NA, 1)), and
#     one with an extra last axis of size 1 loses it (Keras's input rank
#     adjustment).

#' @noRd
normalize_model_x <- function(self, x, arg = "x") {
  if (is.data.frame(x)) x <- data_frame_inputs(self, x, arg)
  if (!isTRUE(self$built)) return(x)
  tensors <- self$graph$inputs
  form <- self$input_form
  names_in <- vapply(tensors, function(t) t$name, character(1))
  nms <- names(x)
  if (is.list(x) && !is.object(x) && !is.null(nms) && !identical(form, "named") && all(names_in %in% nms)) {
    x <- unname(x[names_in])
    if (identical(form, "single")) x <- x[[1L]]
  } else if (is.list(x) && !is.object(x) && !is.null(nms) && identical(form, "named") &&
             all(self$input_names %in% nms)) {
    x <- x[self$input_names]
  }
  adjust <- function(v, t) {
    if (!(is.numeric(v) || is.logical(v)) || is.object(v)) return(v)
    d <- shape_of(v)
    spec <- t$shape
    if (length(d) == length(spec) - 1L && identical(spec[[length(spec)]], 1L)) {
      dim(v) <- c(d, 1L)
    } else if (length(d) == length(spec) + 1L && length(d) > 1L && d[[length(d)]] == 1L) {
      dim(v) <- d[-length(d)]
    }
    v
  }
  if (identical(form, "single")) {
    if (is.list(x) && !is.object(x) && length(x) == 1L) x <- x[[1L]]
    return(adjust(x, tensors[[1L]]))
  }
  if (is.list(x) && !is.object(x) && length(x) == length(tensors)) {
    keys <- if (identical(form, "named") && !is.null(names(x))) match(names(x), self$input_names) else
      seq_along(x)
    for (i in seq_along(x)) {
      if (!is.na(keys[[i]]) && !is.null(x[[i]])) x[[i]] <- adjust(x[[i]], tensors[[keys[[i]]]])
    }
  }
  x
}

# A data frame -> a named list of its columns, or (a single input that no
# column is named after) a numeric matrix of its columns.
#' @noRd
data_frame_inputs <- function(self, df, arg) {
  if (nrow(df) == 0L || ncol(df) == 0L) abort_arg(arg, "a data frame with rows and columns", describe_value(df))
  column <- function(nm, numeric_only) {
    v <- df[[nm]]
    if (is.factor(v)) return(as.integer(v) - 1L)
    ok <- is.null(dim(v)) && (is.numeric(v) || is.logical(v) || (!numeric_only && is.character(v)))
    if (!ok) {
      abort_arg(sprintf("%s$%s", arg, nm), sprintf("a numeric, logical%s or factor column",
                                                   if (numeric_only) "" else ", character"), describe_value(v))
    }
    as.vector(v)
  }
  if (isTRUE(self$built)) {
    names_in <- if (identical(self$input_form, "named")) self$input_names else
      vapply(self$graph$inputs, function(t) t$name, character(1))
    # the inputs by column name; the other columns are not used (Keras ignores extra keys)
    if (all(names_in %in% names(df))) return(stats::setNames(lapply(names_in, column, numeric_only = FALSE), names_in))
    if (!identical(self$input_form, "single")) {
      abort_arg(arg, sprintf("a data frame with a column for each input of model \"%s\" (%s)", self$name,
                             quote_names(names_in)), sprintf("columns %s", quote_names(names(df))))
    }
  }
  if (any(vapply(df, is.factor, logical(1)))) {
    abort_arg(arg, sprintf(paste0("a data frame of numeric columns (the features of the model's input), or ",
                                  "with a column named after the input%s"),
                           if (isTRUE(self$built)) sprintf(" (\"%s\")", self$graph$inputs[[1L]]$name) else ""),
              "a data frame with factor columns")
  }
  m <- do.call(cbind, lapply(names(df), function(nm) as.double(column(nm, numeric_only = TRUE))))
  dimnames(m) <- NULL
  m
}

# `y` as a data frame: its columns by output name, or (one output) its only
# column or its columns as a matrix.
#' @noRd
normalize_model_y <- function(self, y, arg = "y") {
  if (!is.data.frame(y)) return(y)
  cols <- lapply(y, function(v) if (is.factor(v)) as.integer(v) - 1L else v)
  labels <- model_output_labels(self)
  if (length(labels) > 1L || all(labels %in% names(cols))) {
    if (!all(labels %in% names(cols))) {
      abort_arg(arg, sprintf("a data frame with a column per output (%s)", quote_names(labels)),
                sprintf("columns %s", quote_names(names(y))))
    }
    return(if (length(labels) == 1L) cols[[labels]] else cols[labels])
  }
  if (length(cols) == 1L) return(cols[[1L]])
  m <- do.call(cbind, lapply(cols, as.double))
  dimnames(m) <- NULL
  m
}

# ---- data sources: arrays or a generator function --------------------------------
# fit(), evaluate() and predict() draw batches from a source:
#   kind        "arrays" or "generator"
#   arrays:     data (a data set, above), batch_size, shuffle (TRUE, FALSE or
#               "batch"), steps (NULL or the batches per epoch), and the
#               iterator state: batches (the index vectors of the current
#               pass over the data, NULL before a pass), pos (batches of it
#               used)
#   generator:  fn (called with no arguments; returns list(x, y) or list(x,
#               y, sample_weight), or NULL when it has no more data), steps,
#               peeked (the first batch, drawn to build and check the model,
#               handed out first), exhausted
# Keras 3's EpochIterator: with `steps` the same pass continues over epochs
# (an epoch takes the next `steps` batches; when the pass runs out, the epoch
# ends early with a warning and the next epoch starts a new pass); without,
# an epoch is one pass (arrays) or runs until the generator returns NULL.

#' @noRd
is_generator_data <- function(x) is.function(x) && !inherits(x, "multihead_layer")

#' @noRd
new_array_source <- function(data, batch_size, shuffle, steps) {
  src <- new.env(parent = emptyenv())
  src$kind <- "arrays"
  src$data <- data
  src$batch_size <- batch_size
  src$shuffle <- shuffle
  src$steps <- steps
  src$batches <- NULL
  src$pos <- 0L
  src$num_batches <- as.integer(ceiling(data$n / batch_size))
  src
}

#' @noRd
new_generator_source <- function(fn, steps, arg) {
  src <- new.env(parent = emptyenv())
  src$kind <- "generator"
  src$fn <- fn
  src$steps <- steps
  src$arg <- arg
  src$peeked <- NULL
  src$exhausted <- FALSE
  src$count <- 0L
  src
}

# The batches per epoch a source announces (NA: unknown, a generator
# without steps).
#' @noRd
source_steps <- function(src) {
  if (!is.null(src$steps)) return(src$steps)
  if (identical(src$kind, "arrays")) src$num_batches else NA_integer_
}

# One raw draw of a generator: NULL (no more data) or list(x, y, sw).
#' @noRd
generator_draw <- function(src) {
  if (!is.null(src$peeked)) {
    b <- src$peeked
    src$peeked <- NULL
    return(b)
  }
  if (src$exhausted) return(NULL)
  src$count <- src$count + 1L
  b <- call_generator(src$fn, src$arg, src$count)
  if (is.null(b)) {
    src$exhausted <- TRUE
    return(NULL)
  }
  ok <- is.list(b) && !is.object(b) && length(b) %in% 1:3
  if (!ok) {
    abort_arg(src$arg, sprintf(paste0("a function returning list(x, y) or list(x, y, sample_weight) per batch, ",
                                      "or NULL when done (call %d returned %s)"), src$count, describe_value(b)))
  }
  list(x = b[[1L]], y = if (length(b) >= 2L) b[[2L]], sw = if (length(b) == 3L) b[[3L]])
}

# Calls a generator function given as `arg`: it must be callable without
# arguments; an error inside it is reported naming `arg` and the call.
#' @noRd
call_generator <- function(fn, arg, count) {
  fmls <- formals(fn)
  required <- names(fmls)[vapply(fmls, function(f) identical(f, quote(expr = )), logical(1))]
  required <- setdiff(required, "...")
  if (length(required)) {
    abort_arg(arg, "a generator function that can be called with no arguments",
              sprintf("a function with required argument%s %s", if (length(required) > 1L) "s" else "",
                      quote_names(required)))
  }
  tryCatch(fn(), error = function(e) {
    abort_msg(sprintf("The generator `%s` failed in call %d: %s", arg, count, conditionMessage(e)),
              class = "multihead_error_generator")
  })
}

# The first batch of a generator, drawn and kept to build and check the model.
#' @noRd
generator_peek <- function(src) {
  if (is.null(src$peeked)) {
    b <- generator_draw(src)
    if (is.null(b)) abort_arg(src$arg, "a generator function that yields at least one batch", "NULL at once")
    src$peeked <- b
  }
  src$peeked
}

# The index vectors of the batches of one epoch of an array source.
#' @noRd
array_epoch_batches <- function(src) {
  if (is.null(src$steps)) return(array_pass_batches(src))
  if (is.null(src$batches)) {
    src$batches <- array_pass_batches(src)
    src$pos <- 0L
  }
  take <- min(src$steps, length(src$batches) - src$pos)
  out <- src$batches[src$pos + seq_len(take)]
  src$pos <- src$pos + take
  if (src$pos >= length(src$batches)) src$batches <- NULL
  attr(out, "ran_out") <- take < src$steps
  out
}

# One pass over the samples: batches in a new random order (shuffle =
# TRUE), in order with the samples of each batch in a new random order
# (shuffle = "batch", as Keras 3's array adapter), or in order.
#' @noRd
array_pass_batches <- function(src) {
  n <- src$data$n
  if (isTRUE(src$shuffle)) return(unname(batch_indices(sample.int(n), src$batch_size)))
  batches <- unname(batch_indices(seq_len(n), src$batch_size))
  if (identical(src$shuffle, "batch")) batches <- lapply(batches, function(b) b[sample.int(length(b))])
  batches
}

# Warns that a source ran out of data before `steps` batches.
#' @noRd
warn_ran_out <- function(what, done, steps, arg) {
  warning(sprintf(paste0("The data ran out in %s after %d of the %d batches asked by `%s`; that epoch ends ",
                         "early. Give data for at least `%s` times the number of epochs batches."),
                  what, done, steps, arg, arg), call. = FALSE)
}

# A data set from one generator batch, checked against the model.
#' @noRd
generator_batch_data <- function(self, b, arg, need_y = TRUE) {
  if (need_y && is.null(b$y)) {
    abort_arg(arg, "a function returning list(x, y) or list(x, y, sample_weight) (the targets are missing)",
              "a batch without targets")
  }
  x <- normalize_model_x(self, b$x, sprintf("%s()[[1]]", arg))
  if (!need_y) {
    model_ensure_built(self, x)
    vals <- rename_arg_errors(model_input_values(self, x), "inputs", sprintf("%s()[[1]]", arg))
    n <- unique(vapply(Filter(Negate(is.null), vals), function(v) dim(v)[1L], integer(1)))
    if (length(n) != 1L) {
      abort_arg(sprintf("%s()[[1]]", arg), "arrays with the same number of samples (first axis)",
                sprintf("sample counts %s", paste(n, collapse = ", ")))
    }
    return(list(x = vals, y = NULL, sw = NULL, n = n))
  }
  y <- normalize_model_y(self, b$y, sprintf("%s()[[2]]", arg))
  model_data(self, x, y, b$sw, args = c(x = sprintf("%s()[[1]]", arg), y = sprintf("%s()[[2]]", arg),
                                        sample_weight = sprintf("%s()[[3]]", arg)))
}

# Keras 3's class_weight: each sample's weight is the weight of its class
# (the target's value, rounded; the index of the largest value of a one-hot
# or probability target; a last axis of size 1 is dropped); classes not
# named get 1. `class_weight`: a numeric vector or list named by 0-based
# class index, or an unnamed numeric vector giving classes 0, 1, ... in order.
#' @noRd
class_weight_sample_weights <- function(class_weight, y) {
  cw <- check_class_weight(class_weight)
  d <- shape_of(y)
  if (length(d) > 1L) {
    if (d[[length(d)]] != 1L) {
      # rows: the positions before the last axis (column-major), columns: the classes
      labels <- max.col(matrix(as.double(y), ncol = d[[length(d)]]), ties.method = "first") - 1L
      d <- d[-length(d)]
    } else {
      labels <- as.vector(y)
      d <- d[-length(d)]
    }
  } else labels <- as.vector(y)
  if (length(d) > 1L && prod(d[-1L]) != 1) {
    abort_arg("class_weight", paste0("used with one class per sample (targets of shape (samples), ",
                                     "(samples, 1) or one-hot (samples, classes))"),
              sprintf("targets of shape %s", fmt_shape(shape_of(y))))
  }
  labels <- round(as.double(labels))
  w <- cw[match(labels, as.double(names(cw)))]
  w[is.na(w)] <- 1
  array(as.double(w), length(w))
}

#' @noRd
check_class_weight <- function(x) {
  expected <- "a numeric vector or list of non-negative weights named by class index (\"0\", \"1\", ...)"
  if (is.list(x) && !is.object(x)) {
    if (!all(vapply(x, function(v) is.numeric(v) && length(v) == 1L, logical(1)))) {
      abort_arg("class_weight", expected, describe_value(x))
    }
    x <- stats::setNames(vapply(x, as.double, numeric(1)), names(x))
  }
  if (!is.numeric(x) || is.object(x) || length(x) == 0L || anyNA(x) || !all(is.finite(x)) || any(x < 0)) {
    abort_arg("class_weight", expected, describe_value(x))
  }
  nms <- names(x)
  if (is.null(nms)) nms <- as.character(seq_along(x) - 1L)
  keys <- suppressWarnings(as.double(nms))
  if (anyNA(keys) || any(keys != round(keys)) || any(keys < 0) || anyDuplicated(keys)) {
    abort_arg("class_weight", expected, sprintf("names %s", quote_names(nms)))
  }
  stats::setNames(as.double(x), format(keys, scientific = FALSE, trim = TRUE))
}

# Metrics with Keras 3's formulas and accumulation, keras3's R names.
#
# A metric is an environment of class c(<Keras class name>,
# "multihead_metric") holding plain R data, updated in place batch by batch:
#   class_name   "BinaryAccuracy", "CategoricalAccuracy",
#                "SparseCategoricalAccuracy", "MeanAbsoluteError",
#                "MeanSquaredError"
#   name         the name shown in logs and history ("accuracy", "mae", ...)
#   config       the class's options (threshold for BinaryAccuracy)
#   direction    "up" (larger is better) or "down"
#   total, count the running weighted sum of per-sample values and the
#                running sum of sample weights (or of samples)
# As in Keras 3's MeanMetricWrapper: the class's function gives values
# shaped like y_pred without its last axis; metric_update() reduces them to
# one value per sample (the mean over the other axes), adds their (weighted)
# sum to `total` and the number of samples (or the sum of the weights) to
# `count`; metric_result() is total / count (0 before any update).
#
# Custom metrics (Metric(), metric-class.R) are also "multihead_metric"
# objects; metric_reset(), metric_update() and metric_result() call their
# reset_state(), update_state() and result().

#' Binary accuracy metric
#'
#' Keras 3's `BinaryAccuracy`: how often `y_pred > threshold` equals the 0/1
#' target, averaged over the last axis per sample and then over samples
#' (weighted by `sample_weight` when given). `"accuracy"` given to
#' `compile()` means this metric when the model's output has one unit.
#'
#' Called with `y_true` and `y_pred`, the metric's function is applied and
#' the per-sample values are returned. Called without them, a metric object
#' is returned, to pass to `compile()`'s `metrics`; `fit()` and `evaluate()`
#' accumulate it over batches.
#'
#' @param y_true,y_pred Numeric arrays (batch first) of targets and
#'   predictions, or both missing to create a metric object.
#' @param threshold A number strictly between 0 and 1.
#' @param ... Must be empty (kept for keras3's signature).
#' @param name A string: the metric's name in logs and history.
#' @param dtype `NULL`, `"float32"` or `"float64"`: recorded for keras3
#'   compatibility; metrics are computed in double precision.
#' @returns A metric object (an environment of class `"multihead_metric"`),
#'   or, with `y_true` and `y_pred`, the per-sample values: an array shaped
#'   like `y_pred` without its last axis.
#' @examples
#' metric_binary_accuracy(matrix(c(1, 1, 0, 0)), matrix(c(0.98, 1, 0, 0.6)))
#' metric_binary_accuracy(threshold = 0.7)
#' @family metrics
#' @export
metric_binary_accuracy <- function(y_true, y_pred, threshold = 0.5, ..., name = "binary_accuracy",
                                   dtype = NULL) {
  threshold <- check_number(threshold, "threshold")
  if (threshold <= 0 || threshold >= 1) {
    abort_arg("threshold", "a number strictly between 0 and 1", format(threshold))
  }
  metric_entry("BinaryAccuracy", list(threshold = threshold), name, dtype, list(...))
}

#' Categorical accuracy metric
#'
#' Keras 3's `CategoricalAccuracy`: how often the index of the largest
#' prediction along the last axis equals that of the one-hot target (ties go
#' to the first), averaged over samples (weighted by `sample_weight` when
#' given). `"accuracy"` given to `compile()` means this metric when targets
#' are one-hot arrays shaped like the output.
#'
#' @inherit metric_binary_accuracy details
#' @inheritParams metric_binary_accuracy
#' @inherit metric_binary_accuracy return
#' @examples
#' metric_categorical_accuracy(rbind(c(0, 0, 1), c(0, 1, 0)),
#'                             rbind(c(0.1, 0.9, 0.8), c(0.05, 0.95, 0)))
#' metric_categorical_accuracy()
#' @family metrics
#' @export
metric_categorical_accuracy <- function(y_true, y_pred, ..., name = "categorical_accuracy", dtype = NULL) {
  metric_entry("CategoricalAccuracy", list(), name, dtype, list(...))
}

#' Sparse categorical accuracy metric
#'
#' Keras 3's `SparseCategoricalAccuracy`: how often the index (0-based, as in
#' Keras) of the largest prediction along the last axis equals the integer
#' label (ties go to the first), averaged over samples (weighted by
#' `sample_weight` when given). `"accuracy"` given to `compile()` means this
#' metric when targets are labels (one axis fewer than the output, or a last
#' axis of size 1).
#'
#' @inherit metric_binary_accuracy details
#' @inheritParams metric_binary_accuracy
#' @param y_true,y_pred Labels shaped like `y_pred` without its last axis (a
#'   trailing axis of size 1 is allowed) and predictions, or both missing to
#'   create a metric object.
#' @inherit metric_binary_accuracy return
#' @examples
#' metric_sparse_categorical_accuracy(c(2, 1), rbind(c(0.1, 0.6, 0.3), c(0.05, 0.95, 0)))
#' metric_sparse_categorical_accuracy()
#' @family metrics
#' @export
metric_sparse_categorical_accuracy <- function(y_true, y_pred, ..., name = "sparse_categorical_accuracy",
                                               dtype = NULL) {
  metric_entry("SparseCategoricalAccuracy", list(), name, dtype, list(...))
}

#' Mean absolute error metric
#'
#' Keras 3's `MeanAbsoluteError` metric: `mean(abs(y_true - y_pred))` over
#' the last axis per sample, averaged over samples (weighted by
#' `sample_weight` when given). `"mae"` given to `compile()`'s `metrics`
#' means this metric.
#'
#' @inherit metric_binary_accuracy details
#' @inheritParams metric_binary_accuracy
#' @inherit metric_binary_accuracy return
#' @examples
#' metric_mean_absolute_error(rbind(c(0, 1), c(0, 0)), rbind(c(1, 1), c(0, 0)))
#' metric_mean_absolute_error()
#' @family metrics
#' @export
metric_mean_absolute_error <- function(y_true, y_pred, ..., name = "mean_absolute_error", dtype = NULL) {
  metric_entry("MeanAbsoluteError", list(), name, dtype, list(...))
}

#' Mean squared error metric
#'
#' Keras 3's `MeanSquaredError` metric: `mean((y_true - y_pred)^2)` over the
#' last axis per sample, averaged over samples (weighted by `sample_weight`
#' when given). `"mse"` given to `compile()`'s `metrics` means this metric.
#'
#' @inherit metric_binary_accuracy details
#' @inheritParams metric_binary_accuracy
#' @inherit metric_binary_accuracy return
#' @examples
#' metric_mean_squared_error(rbind(c(0, 1), c(0, 0)), rbind(c(1, 1), c(0, 0)))
#' metric_mean_squared_error()
#' @family metrics
#' @export
metric_mean_squared_error <- function(y_true, y_pred, ..., name = "mean_squared_error", dtype = NULL) {
  metric_entry("MeanSquaredError", list(), name, dtype, list(...))
}

#' @export
print.multihead_metric <- function(x, ...) {
  spec <- list(class_name = x$class_name,
               config = c(list(name = x$name), x$config, list(result = metric_result(x))))
  cat(format_spec(spec, "metric"), "\n", sep = "")
  invisible(x)
}

# --- internal API for compile() / fit() / evaluate() -------------------------

#' @noRd
is_metric <- function(x) inherits(x, "multihead_metric")

# Names resolve_metric() accepts -> class ("auto" for accuracy, resolved from
# the shapes or the loss). The names up to "mean_squared_error" are listed in
# errors.
#' @noRd
metric_names <- function() {
  c(accuracy = "auto", acc = "auto", binary_accuracy = "BinaryAccuracy",
    categorical_accuracy = "CategoricalAccuracy",
    sparse_categorical_accuracy = "SparseCategoricalAccuracy",
    mae = "MeanAbsoluteError", mean_absolute_error = "MeanAbsoluteError",
    mse = "MeanSquaredError", mean_squared_error = "MeanSquaredError",
    MAE = "MeanAbsoluteError", MSE = "MeanSquaredError",
    BinaryAccuracy = "BinaryAccuracy", CategoricalAccuracy = "CategoricalAccuracy",
    SparseCategoricalAccuracy = "SparseCategoricalAccuracy",
    MeanAbsoluteError = "MeanAbsoluteError", MeanSquaredError = "MeanSquaredError")
}

# One entry of compile()'s `metrics` -> a metric object. A metric object is
# returned as is. A name makes a new metric named by that name (as Keras
# does); "accuracy" / "acc" becomes binary, sparse categorical or
# categorical accuracy as Keras 3 decides from the shapes (batch first,
# NA allowed for unknown sizes): binary when y_pred's last axis has size 1,
# else sparse when y_true has fewer axes than y_pred or a last axis of size
# 1, else categorical. Without shapes (before any data is seen) the loss
# decides: binary, categorical or sparse categorical cross-entropy.
#' @noRd
resolve_metric <- function(name, loss = NULL, y_true_shape = NULL, y_pred_shape = NULL, arg = "metrics") {
  if (is_metric(name)) return(name)
  nms <- metric_names()
  if (!(is.character(name) && length(name) == 1L && !is.na(name) && name %in% names(nms))) {
    listed <- names(nms)[seq_len(which(names(nms) == "MAE") - 1L)]
    abort_arg(arg, sprintf("a metric object or one of %s", quote_names(listed)), describe_value(name))
  }
  class_name <- nms[[name]]
  if (class_name == "auto") class_name <- accuracy_class(loss, y_true_shape, y_pred_shape)
  ctor <- list(BinaryAccuracy = metric_binary_accuracy, CategoricalAccuracy = metric_categorical_accuracy,
               SparseCategoricalAccuracy = metric_sparse_categorical_accuracy,
               MeanAbsoluteError = metric_mean_absolute_error,
               MeanSquaredError = metric_mean_squared_error)[[class_name]]
  ctor(name = name)
}

#' @noRd
accuracy_class <- function(loss, y_true_shape, y_pred_shape) {
  if (!is.null(y_true_shape) && !is.null(y_pred_shape)) {
    yt <- check_metric_shape(y_true_shape, "y_true_shape")
    yp <- check_metric_shape(y_pred_shape, "y_pred_shape")
    yt_last <- yt[[length(yt)]]
    yp_last <- yp[[length(yp)]]
    if (identical(yp_last, 1L)) return("BinaryAccuracy")
    sparse <- length(yt) < length(yp) || (identical(yt_last, 1L) && !is.na(yp_last) && yp_last > 1L)
    return(if (sparse) "SparseCategoricalAccuracy" else "CategoricalAccuracy")
  }
  cls <- if (is.null(loss)) NULL else loss_self(as_loss(loss))$class_name
  switch(if (is.null(cls)) "" else cls,
         BinaryCrossentropy = "BinaryAccuracy",
         CategoricalCrossentropy = "CategoricalAccuracy",
         SparseCategoricalCrossentropy = "SparseCategoricalAccuracy",
         abort_msg(paste0("Cannot tell which accuracy \"accuracy\" means without the shapes of y_true and ",
                          "y_pred or a cross-entropy loss; give a metric object such as ",
                          "metric_sparse_categorical_accuracy()."),
                   class = "multihead_error_argument"))
}

#' @noRd
check_metric_shape <- function(x, arg) {
  ok <- (is.numeric(x) || (is.logical(x) && all(is.na(x)))) && length(x) >= 1L && is.null(dim(x)) &&
    all(is.na(x) | (x >= 0 & x == round(x)))
  if (!ok) abort_arg(arg, "a shape: a vector of whole numbers (NA for unknown)", describe_value(x))
  as.integer(x)
}

# Sets the running total and count to 0.
#' @noRd
metric_reset <- function(m) {
  check_metric_object(m)
  if (is_class_instance(m)) {
    m$reset_state()
    return(invisible(m))
  }
  m$total <- 0
  m$count <- 0
  invisible(m)
}

# Adds one batch. sample_weight: NULL, a number, one weight per sample, or
# one per value of the metric's function (y_pred's shape without its last
# axis).
#' @noRd
metric_update <- function(m, y_true, y_pred, sample_weight = NULL) {
  check_metric_object(m)
  if (is_class_instance(m)) return(custom_metric_update(m, y_true, y_pred, sample_weight))
  values <- metric_values(m, y_true, y_pred)
  add <- samplewise_sums(values, sample_weight)
  m$total <- m$total + add[["total"]]
  m$count <- m$count + add[["count"]]
  invisible(m)
}

# The weighted mean so far (0 before any update, as Keras's divide_no_nan).
#' @noRd
metric_result <- function(m) {
  check_metric_object(m)
  if (is_class_instance(m)) return(custom_metric_result(m))
  if (m$count == 0) 0 else m$total / m$count
}

# --- construction -----------------------------------------------------------

#' @noRd
metric_entry <- function(class_name, config, name, dtype, dots) {
  caller <- parent.frame()
  given <- y_pair_given(caller, dots, "metric")
  m <- new.env(parent = emptyenv())
  m$class_name <- class_name
  m$name <- check_string(name, "name")
  m$dtype <- check_loss_dtype(dtype)
  m$config <- config
  m$direction <- if (grepl("Accuracy$", class_name)) "up" else "down"
  m$total <- 0
  m$count <- 0
  class(m) <- c(class_name, "multihead_metric")
  if (!given) return(m)
  metric_values(m, caller$y_true, caller$y_pred)
}

#' @noRd
check_metric_object <- function(m) {
  if (!is_metric(m)) abort_arg("m", "a metric object", describe_value(m))
  invisible(m)
}

# --- values -----------------------------------------------------------------

# The class's function: values shaped like y_pred without its last axis (a
# plain number when y_pred has one axis).
#' @noRd
metric_values <- function(m, y_true, y_pred) {
  switch(m$class_name,
         MeanAbsoluteError = loss_mean_absolute_error(y_true, y_pred),
         MeanSquaredError = loss_mean_squared_error(y_true, y_pred),
         BinaryAccuracy = accuracy_values(y_true, y_pred, "binary", m$config$threshold),
         CategoricalAccuracy = accuracy_values(y_true, y_pred, "categorical"),
         SparseCategoricalAccuracy = accuracy_values(y_true, y_pred, "sparse"))
}

#' @noRd
accuracy_values <- function(y_true, y_pred, kind, threshold = NULL) {
  check_loss_array(y_pred, "y_pred")
  if (is.logical(y_true)) y_true <- y_true + 0
  check_loss_array(y_true, "y_true")
  st <- same_rank_shapes(shape_of(y_true), shape_of(y_pred))
  pred_shape <- st$x2
  rank <- length(pred_shape)
  n_class <- pred_shape[[rank]]
  out_shape <- pred_shape[-rank]
  yp <- matrix(as.double(y_pred), ncol = n_class)
  true_shape <- st$x1
  if (kind == "sparse") {
    if (length(true_shape) == rank && true_shape[[rank]] == 1L) true_shape <- true_shape[-rank]
    expected <- out_shape
  } else {
    expected <- pred_shape
  }
  if (!same_shape(true_shape, expected)) {
    abort_arg("y_true", sprintf("an array of shape (%s) for %s accuracy with `y_pred` of shape (%s)",
                                format_shape(expected), kind,
                                format_shape(shape_of(y_pred))),
              sprintf("shape (%s)", format_shape(shape_of(y_true))))
  }
  values <- switch(kind,
    binary = rowMeans(matrix(as.double(y_true), ncol = n_class) == (yp > threshold)),
    categorical = as.double(argmax_rows(matrix(as.double(y_true), ncol = n_class)) == argmax_rows(yp)),
    sparse = as.double(as.double(y_true) == argmax_rows(yp) - 1L))
  shape_values(values, out_shape)
}

# Column of each row's largest value (the first on ties, as numpy's argmax).
#' @noRd
argmax_rows <- function(x) max.col(x, ties.method = "first")

# Keras 3's reduce_to_samplewise_values() followed by Mean.update_state():
# c(total = , count = ) to add.
#' @noRd
samplewise_sums <- function(values, sample_weight) {
  shape <- if (is.null(dim(values))) integer(0) else dim(values)
  per_sample <- function(v) {
    if (length(shape) <= 1L) return(as.vector(v))
    rowMeans(matrix(v, nrow = shape[[1L]]))
  }
  if (length(shape) == 0L) {
    w <- if (is.null(sample_weight)) 1 else check_scalar_weight(sample_weight)
    return(c(total = sum(values) * w, count = w))
  }
  if (is.null(sample_weight)) {
    return(c(total = sum(per_sample(values)), count = shape[[1L]]))
  }
  if (length(sample_weight) == 1L && is.null(dim(sample_weight))) {
    # Keras reduces the values to one number weighted once.
    w <- check_scalar_weight(sample_weight)
    return(c(total = mean(values) * w, count = w))
  }
  w <- broadcast_sample_weight(sample_weight, shape)
  c(total = sum(per_sample(values * w)), count = sum(per_sample(w)))
}

#' @noRd
check_scalar_weight <- function(w) {
  if (!(is.numeric(w) && length(w) == 1L && !is.na(w) && is.finite(w))) {
    abort_arg("sample_weight", "NULL or a finite number here", describe_value(w))
  }
  as.double(w)
}

# Metrics with Keras 3's formulas and accumulation, keras3's R names.
#
# A metric is an environment of class c(<Keras class name>,
# "multihead_metric") holding plain R data, updated in place batch by batch:
#   class_name   "BinaryAccuracy", "CategoricalAccuracy",
#                "SparseCategoricalAccuracy", "TopKCategoricalAccuracy",
#                "SparseTopKCategoricalAccuracy", "MeanAbsoluteError",
#                "MeanSquaredError" (the mean metrics), "AUC", "Precision",
#                "Recall" (the confusion-matrix metrics)
#   name         the name shown in logs and history ("accuracy", "mae", ...)
#   config       the class's options under Keras's names (threshold for
#                BinaryAccuracy, k for the top-k accuracies, ...)
#   direction    "up" (larger is better) or "down"
#   total, count the accumulated state. Mean metrics: the running weighted
#                sum of per-sample values and the running sum of sample
#                weights (or of samples). Confusion-matrix metrics: `total`
#                is a named list of Keras's state variables (AUC:
#                true_positives, false_positives, true_negatives,
#                false_negatives; Precision: true_positives,
#                false_positives; Recall: true_positives, false_negatives),
#                each a vector over the thresholds (a (thresholds, labels)
#                matrix for a multi-label AUC; an empty list until a
#                multi-label AUC without `num_labels` sees its first batch),
#                and `count` the number of batches accumulated.
# Mean metrics, as in Keras 3's MeanMetricWrapper: the class's function gives values
# shaped like y_pred without its last axis; metric_update() reduces them to
# one value per sample (the mean over the other axes), adds their (weighted)
# sum to `total` and the number of samples (or the sum of the weights) to
# `count`; metric_result() is total / count (0 before any update).
#
# Confusion-matrix metrics follow Keras 3's
# update_confusion_matrix_variables() (the thresholded counts, its
# bucketed form for evenly spaced thresholds, top_k and class_id) and the
# classes' result() (AUC's Riemann sums and PR interpolation): metric
# objects are made by confusion_metric_entry(), updated by confusion_update()
# and read by confusion_result().
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
#' accumulate it over batches. As in keras3, a metric object can also be used
#' on its own: `m$update_state(y_true, y_pred, sample_weight = NULL)` adds a
#' batch, `m$result()` gives the value so far and `m$reset_state()` starts
#' again.
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

#' Top-k categorical accuracy metric
#'
#' Keras 3's `TopKCategoricalAccuracy`: whether the class of the one-hot
#' target (its largest entry, the first on ties) is among the `k` largest
#' predictions, averaged over samples (weighted by `sample_weight` when
#' given). Ties count in the target's favour, as Keras's `in_top_k()`: the
#' target is in the top `k` when fewer than `k` predictions are strictly
#' larger than its own. The name `"top_k_categorical_accuracy"` given to
#' `compile()` means this metric (with `k = 5`).
#'
#' @inherit metric_binary_accuracy details
#' @inheritParams metric_binary_accuracy
#' @param y_true,y_pred One-hot targets and predictions of the same shape
#'   (batch first, classes last), or both missing to create a metric object.
#' @param k A whole number >= 1: how many of the largest predictions count.
#' @inherit metric_binary_accuracy return
#' @examples
#' metric_top_k_categorical_accuracy(rbind(c(0, 0, 1), c(0, 1, 0)),
#'                                   rbind(c(0.1, 0.9, 0.8), c(0.05, 0.95, 0)), k = 1)
#' metric_top_k_categorical_accuracy(k = 3)
#' @family metrics
#' @export
metric_top_k_categorical_accuracy <- function(y_true, y_pred, k = 5L, ..., name = "top_k_categorical_accuracy",
                                              dtype = NULL) {
  metric_entry("TopKCategoricalAccuracy", list(k = check_whole(k, "k", min = 1L)), name, dtype, list(...))
}

#' Sparse top-k categorical accuracy metric
#'
#' Keras 3's `SparseTopKCategoricalAccuracy`: whether the integer label
#' (0-based, as in Keras) is among the `k` largest predictions, with ties in
#' the label's favour as in [metric_top_k_categorical_accuracy()], averaged
#' over samples (weighted by `sample_weight` when given). With
#' `from_sorted_ids = TRUE`, `y_pred` holds class ids sorted from the highest
#' score down, and a sample counts when its label is among the first `k`.
#' The name `"sparse_top_k_categorical_accuracy"` given to `compile()` means
#' this metric (with `k = 5`).
#'
#' @inherit metric_binary_accuracy details
#' @inheritParams metric_top_k_categorical_accuracy
#' @param y_true,y_pred Labels shaped like `y_pred` without its last axis (a
#'   trailing axis of size 1 is allowed) and predictions (or sorted ids), or
#'   both missing to create a metric object.
#' @param from_sorted_ids `TRUE` or `FALSE`: whether `y_pred` holds the ids
#'   of the top categories, best first, instead of scores.
#' @inherit metric_binary_accuracy return
#' @examples
#' metric_sparse_top_k_categorical_accuracy(c(2, 1), rbind(c(0.1, 0.9, 0.8), c(0.05, 0.95, 0)), k = 1)
#' metric_sparse_top_k_categorical_accuracy(c(2, 1), rbind(c(1, 0, 3), c(1, 2, 3)), k = 1,
#'                                          from_sorted_ids = TRUE)
#' metric_sparse_top_k_categorical_accuracy(k = 3)
#' @family metrics
#' @export
metric_sparse_top_k_categorical_accuracy <- function(y_true, y_pred, k = 5L, ...,
                                                     name = "sparse_top_k_categorical_accuracy",
                                                     dtype = NULL, from_sorted_ids = FALSE) {
  metric_entry("SparseTopKCategoricalAccuracy",
               list(k = check_whole(k, "k", min = 1L), from_sorted_ids = check_flag(from_sorted_ids,
                                                                                    "from_sorted_ids")),
               name, dtype, list(...))
}

#' Area under the ROC or precision-recall curve
#'
#' Keras 3's `AUC`: predictions are compared with a grid of thresholds and
#' the weighted counts of true/false positives/negatives at each threshold
#' are accumulated over batches (a prediction is positive at threshold `u`
#' when it is strictly greater than `u`; a target is positive when it is not
#' 0). The result is a Riemann sum over the thresholds: for `curve = "ROC"`
#' the true positive rate against the false positive rate, for `"PR"`
#' precision against recall (with `summation_method = "interpolation"`,
#' Davis & Goadrich's interpolation of the counts), for `"PRGAIN"` precision
#' gain against recall gain. `"interpolation"` uses the mean of the two
#' heights of each interval, `"minoring"` the smaller and `"majoring"` the
#' larger.
#'
#' The thresholds are `num_thresholds` evenly spaced points from 0 to 1 (or
#' the given `thresholds`, sorted), with the end points replaced by `-1e-7`
#' and `1 + 1e-7` so that predictions of exactly 0 or 1 fall inside; when the
#' thresholds are evenly spaced the predictions are clipped to `[0, 1]` and
#' counted by bucket, as in Keras. With `multi_label = TRUE` the AUC of each
#' label (column of a `(batch, labels)` prediction) is computed separately and
#' the AUCs are averaged (weighted by `label_weights` when given); otherwise
#' all entries are pooled, each weighted by its label's weight.
#'
#' The metric object is given to `compile()`'s `metrics`; `fit()` and
#' `evaluate()` accumulate it over batches. On its own, as in keras3,
#' `m$update_state(y_true, y_pred, sample_weight = NULL)` adds a batch,
#' `m$result()` gives the value so far and `m$reset_state()` starts again.
#' The names `"auc"` and `"AUC"` given to `compile()` mean this metric with
#' its defaults.
#'
#' @param ... Must be empty (kept for keras3's signature).
#' @param num_thresholds A whole number > 1: the number of thresholds (used
#'   when `thresholds` is `NULL`).
#' @param curve `"ROC"`, `"PR"` or `"PRGAIN"` (lower case accepted).
#' @param summation_method `"interpolation"`, `"minoring"` or `"majoring"`.
#' @param name `NULL` (the name `"auc"`) or a string: the metric's name in
#'   logs and history.
#' @param dtype `NULL`, `"float32"` or `"float64"`: recorded for keras3
#'   compatibility; metrics are computed in double precision.
#' @param thresholds `NULL` or a numeric vector of thresholds in `[0, 1]`
#'   (the end points are added).
#' @param multi_label `TRUE` or `FALSE`: whether each label of a `(batch,
#'   labels)` prediction gets its own AUC.
#' @param num_labels `NULL` or a whole number: the number of labels, with
#'   `multi_label = TRUE` (otherwise taken from the first batch).
#' @param label_weights `NULL` or a vector of non-negative weights, one per
#'   label (the last axis of the predictions).
#' @param from_logits `TRUE` or `FALSE`: whether the predictions are logits
#'   (a sigmoid is applied first).
#' @returns A metric object (an environment of class `"multihead_metric"`).
#' @examples
#' m <- metric_auc(num_thresholds = 3)
#' m$update_state(c(0, 0, 1, 1), c(0, 0.5, 0.3, 0.9))
#' m$result()
#' metric_auc(num_thresholds = 3, curve = "PR")
#' metric_auc(multi_label = TRUE, num_labels = 4, from_logits = TRUE)
#' @family metrics
#' @export
metric_auc <- function(..., num_thresholds = 200L, curve = "ROC", summation_method = "interpolation",
                       name = NULL, dtype = NULL, thresholds = NULL, multi_label = FALSE, num_labels = NULL,
                       label_weights = NULL, from_logits = FALSE) {
  check_empty_metric_dots(list(...))
  if (is.null(thresholds)) {
    num_thresholds <- check_whole(num_thresholds, "num_thresholds", min = 2L)
  } else {
    thresholds <- sort(check_thresholds(thresholds, "thresholds"))
    num_thresholds <- length(thresholds) + 2L
  }
  curve <- check_choice_aliases(curve, "curve", c(ROC = "ROC", roc = "ROC", PR = "PR", pr = "PR",
                                                  PRGAIN = "PRGAIN", prgain = "PRGAIN"))
  summation_method <- check_choice_aliases(summation_method, "summation_method",
                                           c(interpolation = "interpolation", Interpolation = "interpolation",
                                             majoring = "majoring", Majoring = "majoring",
                                             minoring = "minoring", Minoring = "minoring"))
  multi_label <- check_flag(multi_label, "multi_label")
  num_labels <- check_whole(num_labels, "num_labels", min = 1L, null_ok = TRUE)
  if (!is.null(num_labels) && !multi_label) {
    abort_arg("num_labels", "NULL when `multi_label` is FALSE (it is needed only for multi-label data)",
              format(num_labels))
  }
  if (!is.null(label_weights)) {
    ok <- is.numeric(label_weights) && length(label_weights) >= 1L && !anyNA(label_weights) &&
      all(is.finite(label_weights)) && all(label_weights >= 0)
    if (!ok) abort_arg("label_weights", "NULL or a vector of non-negative numbers", describe_value(label_weights))
    label_weights <- as.double(label_weights)
    if (multi_label && !is.null(num_labels) && length(label_weights) != num_labels) {
      abort_arg("label_weights", sprintf("%d weights, one per label (`num_labels`)", num_labels),
                sprintf("%d", length(label_weights)))
    }
  }
  config <- list(num_thresholds = num_thresholds, curve = curve, summation_method = summation_method,
                 multi_label = multi_label, num_labels = num_labels, label_weights = label_weights,
                 from_logits = check_flag(from_logits, "from_logits"), thresholds = thresholds)
  confusion_metric_entry("AUC", config, if (is.null(name)) "auc" else name, dtype)
}

#' Precision metric
#'
#' Keras 3's `Precision`: the weighted count of true positives divided by
#' that of predicted positives, accumulated over batches. A prediction is
#' positive when it is strictly greater than the threshold, a target when it
#' is not 0. With `top_k`, only the `k` largest predictions along the last
#' axis of each sample can be positive (ties go to the first); with
#' `class_id` (0-based, as in Keras), only the predictions and targets of
#' that class (last axis) are counted. The default threshold is 0.5, or,
#' with `top_k`, none (every prediction in the top `k` is positive). With
#' several thresholds the result has one value per threshold.
#'
#' The metric object is given to `compile()`'s `metrics`; `fit()` and
#' `evaluate()` accumulate it over batches. On its own, as in keras3,
#' `m$update_state(y_true, y_pred, sample_weight = NULL)` adds a batch,
#' `m$result()` gives the value so far and `m$reset_state()` starts again.
#' The names `"precision"` and `"Precision"` given to `compile()` mean this
#' metric with its defaults.
#'
#' @inheritParams metric_auc
#' @param thresholds `NULL` or a number or vector of numbers in `[0, 1]`.
#' @param top_k `NULL` or a whole number >= 1 (at most the number of classes).
#' @param class_id `NULL` or a whole number from 0 to the number of classes
#'   minus 1.
#' @param name `NULL` (the class's name in snake case) or a string: the
#'   metric's name in logs and history.
#' @returns A metric object (an environment of class `"multihead_metric"`).
#' @examples
#' m <- metric_precision()
#' m$update_state(c(0, 1, 1, 1), c(1, 0, 1, 1))
#' m$result()
#' metric_precision(top_k = 2, class_id = 1)
#' @family metrics
#' @export
metric_precision <- function(..., thresholds = NULL, top_k = NULL, class_id = NULL, name = NULL, dtype = NULL) {
  check_empty_metric_dots(list(...))
  confusion_metric_entry("Precision", precision_recall_config(thresholds, top_k, class_id),
                         if (is.null(name)) "precision" else name, dtype)
}

#' Recall metric
#'
#' Keras 3's `Recall`: the weighted count of true positives divided by that
#' of actual positives (true positives plus false negatives), accumulated
#' over batches, with thresholds, `top_k` and `class_id` as in
#' [metric_precision()]. The names `"recall"` and `"Recall"` given to
#' `compile()` mean this metric with its defaults.
#'
#' @inheritParams metric_precision
#' @inherit metric_precision return
#' @examples
#' metric_recall()
#' metric_recall(thresholds = c(0.3, 0.7))
#' @family metrics
#' @export
metric_recall <- function(..., thresholds = NULL, top_k = NULL, class_id = NULL, name = NULL, dtype = NULL) {
  check_empty_metric_dots(list(...))
  confusion_metric_entry("Recall", precision_recall_config(thresholds, top_k, class_id),
                         if (is.null(name)) "recall" else name, dtype)
}

#' @export
print.multihead_metric <- function(x, ...) {
  spec <- list(class_name = x$class_name,
               config = c(list(name = x$name), x$config, list(result = metric_result(x))))
  cat(format_spec(spec, "metric"), "\n", sep = "")
  invisible(x)
}

# keras3's standalone use of a metric object: m$update_state(y_true, y_pred,
# sample_weight = NULL), m$result(), m$reset_state(); every other name reads
# the metric's field (NULL when absent). Custom metrics (Metric()) have their
# own `$` method (their class comes first).
#' @export
`$.multihead_metric` <- function(x, name) {
  if (!is.environment(x)) return(NextMethod())
  if (exists(name, envir = x, inherits = FALSE)) return(get(name, envir = x, inherits = FALSE))
  switch(name,
         update_state = function(y_true, y_pred, sample_weight = NULL) {
           metric_update(x, y_true, y_pred, sample_weight)
           invisible(x)
         },
         result = function() metric_result(x),
         reset_state = function() {
           metric_reset(x)
           invisible(x)
         },
         NULL)
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
    top_k_categorical_accuracy = "TopKCategoricalAccuracy",
    sparse_top_k_categorical_accuracy = "SparseTopKCategoricalAccuracy",
    auc = "AUC", precision = "Precision", recall = "Recall",
    MAE = "MeanAbsoluteError", MSE = "MeanSquaredError",
    BinaryAccuracy = "BinaryAccuracy", CategoricalAccuracy = "CategoricalAccuracy",
    SparseCategoricalAccuracy = "SparseCategoricalAccuracy",
    MeanAbsoluteError = "MeanAbsoluteError", MeanSquaredError = "MeanSquaredError",
    TopKCategoricalAccuracy = "TopKCategoricalAccuracy",
    SparseTopKCategoricalAccuracy = "SparseTopKCategoricalAccuracy",
    AUC = "AUC", Precision = "Precision", Recall = "Recall")
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
               MeanSquaredError = metric_mean_squared_error,
               TopKCategoricalAccuracy = metric_top_k_categorical_accuracy,
               SparseTopKCategoricalAccuracy = metric_sparse_top_k_categorical_accuracy,
               AUC = metric_auc, Precision = metric_precision, Recall = metric_recall)[[class_name]]
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
  if (is_confusion_metric(m)) return(invisible(confusion_reset(m)))
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
  if (is_confusion_metric(m)) return(invisible(confusion_update(m, y_true, y_pred, sample_weight)))
  values <- metric_values(m, y_true, y_pred)
  add <- samplewise_sums(values, sample_weight)
  m$total <- m$total + add[["total"]]
  m$count <- m$count + add[["count"]]
  invisible(m)
}

# How many numbers metric_result() gives: one per threshold for Precision and
# Recall, one for every other metric.
#' @noRd
metric_n_values <- function(m) {
  if (!is_class_instance(m) && m$class_name %in% c("Precision", "Recall")) {
    return(length(confusion_thresholds(m)))
  }
  1L
}

# The weighted mean so far (0 before any update, as Keras's divide_no_nan).
#' @noRd
metric_result <- function(m) {
  check_metric_object(m)
  if (is_class_instance(m)) return(custom_metric_result(m))
  if (is_confusion_metric(m)) return(confusion_result(m))
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
  m$direction <- metric_class_direction(class_name)
  m$total <- 0
  m$count <- 0
  class(m) <- c(class_name, "multihead_metric")
  if (!given) return(m)
  metric_values(m, caller$y_true, caller$y_pred)
}

# "up" for the accuracies and the confusion-matrix metrics, "down" for the
# errors.
#' @noRd
metric_class_direction <- function(class_name) {
  if (grepl("Accuracy$", class_name) || class_name %in% confusion_metric_classes()) "up" else "down"
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
         SparseCategoricalAccuracy = accuracy_values(y_true, y_pred, "sparse"),
         TopKCategoricalAccuracy = top_k_values(y_true, y_pred, m$config$k, sparse = FALSE),
         SparseTopKCategoricalAccuracy = top_k_values(y_true, y_pred, m$config$k, sparse = TRUE,
                                                      from_sorted_ids = m$config$from_sorted_ids))
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

# --- top-k accuracies ---------------------------------------------------------

# Keras's in_top_k(): the target's prediction has fewer than k strictly larger
# predictions in its row. `yp` (rows, classes), `target` 1-based columns.
#' @noRd
in_top_k_rows <- function(yp, target, k) {
  at_target <- yp[cbind(seq_len(nrow(yp)), target)]
  rowSums(yp > at_target) < k
}

#' @noRd
top_k_values <- function(y_true, y_pred, k, sparse, from_sorted_ids = FALSE) {
  check_loss_array(y_pred, "y_pred")
  if (is.logical(y_true)) y_true <- y_true + 0
  check_loss_array(y_true, "y_true")
  st <- same_rank_shapes(shape_of(y_true), shape_of(y_pred))
  pred_shape <- st$x2
  rank <- length(pred_shape)
  if (rank < 2L) {
    abort_arg("y_pred", "an array with a class axis last (batch, ..., classes)",
              sprintf("shape (%s)", format_shape(shape_of(y_pred))))
  }
  n_class <- pred_shape[[rank]]
  out_shape <- pred_shape[-rank]
  yp <- matrix(as.double(y_pred), ncol = n_class)
  true_shape <- st$x1
  if (sparse) {
    if (length(true_shape) == rank && true_shape[[rank]] == 1L) true_shape <- true_shape[-rank]
    expected <- out_shape
  } else {
    expected <- pred_shape
  }
  what <- if (sparse) "sparse top-k" else "top-k"
  if (!same_shape(true_shape, expected)) {
    abort_arg("y_true", sprintf("an array of shape (%s) for %s accuracy with `y_pred` of shape (%s)",
                                format_shape(expected), what, format_shape(shape_of(y_pred))),
              sprintf("shape (%s)", format_shape(shape_of(y_true))))
  }
  if (!sparse) {
    target <- argmax_rows(matrix(as.double(y_true), ncol = n_class))
    return(shape_values(as.double(in_top_k_rows(yp, target, k)), out_shape))
  }
  labels <- as.double(y_true)
  if (from_sorted_ids) {
    top <- yp[, seq_len(min(k, n_class)), drop = FALSE]
    return(shape_values(as.double(rowSums(top == labels) > 0), out_shape))
  }
  bad <- labels != round(labels) | labels < 0 | labels > n_class - 1
  if (any(bad)) {
    abort_arg("y_true", sprintf("whole-number class labels from 0 to %d (the classes of `y_pred`)",
                                n_class - 1L), sprintf("a label %s", format(labels[bad][[1L]])))
  }
  shape_values(as.double(in_top_k_rows(yp, labels + 1, k)), out_shape)
}

# --- confusion-matrix metrics: construction -----------------------------------

#' @noRd
confusion_metric_classes <- function() c("AUC", "Precision", "Recall")

#' @noRd
is_confusion_metric <- function(m) !is.null(m$class_name) && m$class_name %in% confusion_metric_classes()

#' @noRd
check_empty_metric_dots <- function(dots) {
  if (length(dots) > 0L) {
    nm <- names(dots)[[1L]]
    abort_arg(if (is.null(nm) || !nzchar(nm)) "..." else nm, "a known metric argument",
              "an argument that is not recognized")
  }
  invisible(NULL)
}

# A string among the names of `choices` (aliases -> Keras's value).
#' @noRd
check_choice_aliases <- function(x, arg, choices) {
  if (!(is.character(x) && length(x) == 1L && !is.na(x) && x %in% names(choices))) {
    abort_arg(arg, sprintf("one of %s", quote_names(unique(choices))), describe_value(x))
  }
  choices[[x]]
}

# Thresholds: finite numbers in [0, 1].
#' @noRd
check_thresholds <- function(x, arg) {
  if (is.list(x) && !is.object(x) && all(lengths(x) == 1L)) x <- unlist(x)
  ok <- is.numeric(x) && length(x) >= 1L && !anyNA(x) && all(is.finite(x)) && all(x >= 0 & x <= 1)
  if (!ok) abort_arg(arg, "NULL or numbers between 0 and 1", describe_value(x))
  as.double(x)
}

#' @noRd
precision_recall_config <- function(thresholds, top_k, class_id) {
  list(thresholds = if (is.null(thresholds)) NULL else check_thresholds(thresholds, "thresholds"),
       top_k = check_whole(top_k, "top_k", min = 1L, null_ok = TRUE),
       class_id = check_whole(class_id, "class_id", min = 0L, null_ok = TRUE))
}

# The state variables of each class (Keras's names).
#' @noRd
confusion_variables <- function(class_name) {
  switch(class_name,
         AUC = c("true_positives", "false_positives", "true_negatives", "false_negatives"),
         Precision = c("true_positives", "false_positives"),
         Recall = c("true_positives", "false_negatives"))
}

#' @noRd
confusion_metric_entry <- function(class_name, config, name, dtype) {
  m <- new.env(parent = emptyenv())
  m$class_name <- class_name
  m$name <- check_string(name, "name")
  m$dtype <- check_loss_dtype(dtype)
  m$config <- config
  m$direction <- metric_class_direction(class_name)
  m$total <- list()
  m$count <- 0
  class(m) <- c(class_name, "multihead_metric")
  confusion_reset(m)
}

# The thresholds the counts are kept at, in the order of the state vectors:
# AUC's sorted grid with the end points -1e-7 and 1 + 1e-7; Precision /
# Recall's thresholds as given (0.5 by default, -1e10 with top_k).
#' @noRd
confusion_thresholds <- function(m) {
  cfg <- m$config
  if (m$class_name == "AUC") {
    inner <- if (is.null(cfg$thresholds)) {
      n <- cfg$num_thresholds
      seq_len(n - 2L) * 1 / (n - 1)
    } else {
      cfg$thresholds
    }
    return(c(0 - loss_epsilon(), inner, 1 + loss_epsilon()))
  }
  if (!is.null(cfg$thresholds)) cfg$thresholds else if (is.null(cfg$top_k)) 0.5 else -1e10
}

# Keras's is_evenly_distributed_thresholds() (for AUC applied to the inner
# thresholds with 0 and 1 added): at least 3 values, each within 1e-7 of
# (i - 1) / (n - 1).
#' @noRd
evenly_distributed <- function(thresholds) {
  n <- length(thresholds)
  if (n < 3L) return(FALSE)
  even <- as.double(as.single_float(seq(0, n - 1) / (n - 1)))
  all(abs(thresholds - even) <= 1e-7 + 1e-5 * abs(even))
}

# numpy's float32 rounding of the even grid (np.arange(n, dtype=float32) / (n - 1)).
#' @noRd
as.single_float <- function(x) {
  bits <- writeBin(x, raw(), size = 4L)
  readBin(bits, "double", n = length(x), size = 4L)
}

#' @noRd
confusion_uses_buckets <- function(m) {
  cfg <- m$config
  if (m$class_name == "AUC") {
    return(is.null(cfg$thresholds) || evenly_distributed(c(0, cfg$thresholds, 1)))
  }
  evenly_distributed(confusion_thresholds(m))
}

# Zeros of the state's shape; a multi-label AUC without num_labels stays
# unbuilt (empty state) until its first batch, and keeps its size after.
#' @noRd
confusion_reset <- function(m) {
  n <- length(confusion_thresholds(m))
  labels <- if (isTRUE(m$config$multi_label)) {
    if (!is.null(m$config$num_labels)) m$config$num_labels else if (length(m$total)) ncol(m$total[[1L]])
  }
  if (isTRUE(m$config$multi_label) && is.null(labels)) {
    m$total <- list()
  } else {
    zero <- if (is.null(labels)) numeric(n) else matrix(0, n, labels)
    vars <- confusion_variables(m$class_name)
    m$total <- stats::setNames(rep(list(zero), length(vars)), vars)
  }
  m$count <- 0
  m
}

# --- confusion-matrix metrics: accumulation -----------------------------------

# Keras's update_confusion_matrix_variables() for one batch.
#' @noRd
confusion_update <- function(m, y_true, y_pred, sample_weight) {
  cfg <- m$config
  check_loss_array(y_pred, "y_pred")
  if (is.logical(y_true)) y_true <- y_true + 0
  check_loss_array(y_true, "y_true")
  st <- same_rank_shapes(shape_of(y_true), shape_of(y_pred))
  if (!same_shape(st$x1, st$x2)) {
    abort_arg("y_true", sprintf("an array of the shape of `y_pred` (%s) for %s",
                                format_shape(shape_of(y_pred)), m$class_name),
              sprintf("shape (%s)", format_shape(shape_of(y_true))))
  }
  shape <- st$x2
  rank <- length(shape)
  yp <- as.double(y_pred)
  yt <- as.double(y_true) != 0
  if (isTRUE(cfg$from_logits)) yp <- stats::plogis(yp)
  n_last <- shape[[rank]]
  if (!is.null(cfg$top_k) || !is.null(cfg$class_id) || isTRUE(cfg$multi_label)) {
    # (rows, last axis) views
    yp <- matrix(yp, ncol = n_last)
    yt <- matrix(yt, ncol = n_last)
  }
  if (!is.null(cfg$top_k)) {
    if (cfg$top_k > n_last) {
      abort_arg("top_k", sprintf("at most the size of the last axis of `y_pred` (shape (%s))",
                                 format_shape(shape_of(y_pred))), format(cfg$top_k))
    }
    yp <- filter_top_k(yp, cfg$top_k)
  }
  sw <- confusion_sample_weight(sample_weight, shape)
  if (!is.null(cfg$class_id)) {
    if (rank < 2L) {
      abort_arg("y_pred", "an array of shape (samples, classes) when `class_id` is given",
                sprintf("shape (%s)", format_shape(shape_of(y_pred))))
    }
    if (cfg$class_id > n_last - 1L) {
      abort_arg("class_id", sprintf("a class of `y_pred`: from 0 to %d", n_last - 1L), format(cfg$class_id))
    }
    yp <- yp[, cfg$class_id + 1L]
    yt <- yt[, cfg$class_id + 1L]
    if (!is.null(sw)) sw <- matrix(sw, ncol = n_last)[, cfg$class_id + 1L]
  }
  multi <- isTRUE(cfg$multi_label)
  lw <- cfg$label_weights
  if (multi) {
    if (rank != 2L) {
      abort_arg("y_pred", "an array of rank 2 (samples, labels) for a multi-label AUC",
                sprintf("shape (%s)", format_shape(shape_of(y_pred))))
    }
    if (length(m$total) == 0L) {
      m$total <- stats::setNames(rep(list(matrix(0, length(confusion_thresholds(m)), n_last)), 4L),
                                 confusion_variables("AUC"))
    }
    built <- ncol(m$total[[1L]])
    if (n_last != built) {
      abort_arg("y_pred", sprintf("%d labels (its last axis), as the metric was built with", built),
                sprintf("shape (%s)", format_shape(shape_of(y_pred))))
    }
    if (!is.null(lw) && length(lw) != n_last) {
      abort_arg("label_weights", sprintf("%d weights, one per label of `y_pred`", n_last),
                sprintf("%d", length(lw)))
    }
  } else if (!is.null(lw)) {
    if (!(length(lw) == 1L || (rank >= 2L && length(lw) == n_last))) {
      abort_arg("label_weights", sprintf("one weight per label (the last axis of `y_pred`, shape (%s))",
                                         format_shape(shape_of(y_pred))), sprintf("%d weights", length(lw)))
    }
    # broadcast along the last axis of the flattened (rows, last axis) layout
    lw_full <- rep(lw, each = length(yp) / length(lw))
    sw <- if (is.null(sw)) lw_full else sw * lw_full
  }
  weights <- if (is.null(sw)) rep(1, length(yp)) else sw
  thresholds <- confusion_thresholds(m)
  counts <- if (multi) {
    per <- lapply(seq_len(ncol(yp)), function(j) {
      confusion_counts(yt[, j], yp[, j], weights[(j - 1L) * nrow(yp) + seq_len(nrow(yp))], thresholds,
                       confusion_uses_buckets(m))
    })
    lapply(stats::setNames(nm = names(per[[1L]])), function(v) do.call(cbind, lapply(per, `[[`, v)))
  } else {
    confusion_counts(as.vector(yt), as.vector(yp), weights, thresholds, confusion_uses_buckets(m))
  }
  total <- m$total
  for (v in names(total)) total[[v]] <- total[[v]] + counts[[v]]
  m$total <- total
  m$count <- m$count + 1
  m
}

# Keras's _filter_top_k(): rows keep their k largest values (ties to the
# lower column, as top_k), the others become -1e10.
#' @noRd
filter_top_k <- function(yp, k) {
  keep <- matrix(0, nrow(yp), ncol(yp))
  for (i in seq_len(nrow(yp))) {
    keep[i, order(-yp[i, ], seq_len(ncol(yp)))[seq_len(k)]] <- 1
  }
  yp * keep + -1e10 * (1 - keep)
}

# sample_weight as one weight per value of y_pred (shape `shape`): a number,
# one per sample (length the batch size, or shape (batch, 1)), or y_pred's
# shape. NULL stays NULL.
#' @noRd
confusion_sample_weight <- function(sw, shape) {
  if (is.null(sw)) return(NULL)
  if (!is.numeric(sw) || anyNA(sw) || !all(is.finite(sw))) {
    abort_arg("sample_weight", "NULL or a numeric array of finite values", describe_value(sw))
  }
  n <- prod(shape)
  if (length(sw) == 1L) return(rep(as.double(sw), n))
  sw_shape <- shape_of(sw)
  r <- length(sw_shape)
  squeezed <- if (r > 1L && sw_shape[[r]] == 1L) sw_shape[-r] else sw_shape
  if (same_shape(sw_shape, shape) || same_shape(squeezed, shape)) return(as.double(sw))
  if (length(squeezed) == 1L && squeezed == shape[[1L]]) return(rep(as.double(sw), times = n / shape[[1L]]))
  abort_arg("sample_weight", sprintf("a number, one weight per sample (%d) or an array of shape (%s)",
                                     shape[[1L]], format_shape(shape)),
            sprintf("shape (%s)", format_shape(sw_shape)))
}

# The counts of one batch at each threshold: list(true_positives,
# false_positives, true_negatives, false_negatives), vectors over
# `thresholds`. `label` logical, `pred` and `w` numeric, same length.
# buckets = TRUE is Keras's evenly-spaced form: predictions clipped to [0, 1]
# and counted at thresholds 1..b with b = ceil(p * (n - 1)) (at least 1 when
# the end thresholds lie outside [0, 1]); otherwise the direct comparison
# p > threshold.
#' @noRd
confusion_counts <- function(label, pred, w, thresholds, buckets) {
  n <- length(thresholds)
  true_w <- label * w
  false_w <- (1 - label) * w
  if (buckets) {
    with_epsilon <- thresholds[[1L]] < 0 || thresholds[[n]] > 1
    p <- pmin(pmax(pred, 0), 1)
    idx <- ceiling(p * (n - 1)) - 1
    if (with_epsilon) idx <- pmax(idx, 0)
    keep <- idx >= 0
    b <- bucket_sums(cbind(true_w[keep], false_w[keep]), idx[keep], n)
    tp <- rev(cumsum(rev(b[, 1L])))
    fp <- rev(cumsum(rev(b[, 2L])))
    return(list(true_positives = tp, false_positives = fp,
                true_negatives = sum(false_w) - fp, false_negatives = sum(true_w) - tp))
  }
  # above[j]: how many thresholds lie strictly below pred[j]; with the
  # thresholds sorted, pred[j] is positive at the first above[j] of them and
  # negative at the others.
  ord <- order(thresholds)
  above <- findInterval(pred, thresholds[ord], left.open = TRUE)
  b <- bucket_sums(cbind(true_w, false_w), above, n + 1L)
  true_b <- b[, 1L]
  false_b <- b[, 2L]
  pos <- function(b) rev(cumsum(rev(b)))[-1L]       # sum of b[a] over a >= i, i = 1..n
  neg <- function(b) cumsum(b)[-(n + 1L)]           # sum of b[a] over a < i
  out <- list(true_positives = pos(true_b), false_positives = pos(false_b),
              true_negatives = neg(false_b), false_negatives = neg(true_b))
  lapply(out, function(v) {
    r <- numeric(n)
    r[ord] <- v
    r
  })
}

# Column sums of the matrix `x` by 0-based bucket `idx` (one per row) into
# an (n, ncol(x)) matrix.
#' @noRd
bucket_sums <- function(x, idx, n) {
  out <- matrix(0, n, ncol(x))
  if (nrow(x) == 0L) return(out)
  s <- rowsum(x, as.integer(idx), reorder = FALSE)
  out[as.integer(rownames(s)) + 1L, ] <- s
  out
}

# --- confusion-matrix metrics: results ----------------------------------------

# Keras's divide_no_nan().
#' @noRd
divide_no_nan <- function(a, b) {
  out <- a / b
  out[b == 0] <- 0
  out
}

#' @noRd
confusion_result <- function(m) {
  tot <- m$total
  switch(m$class_name,
         Precision = ,
         Recall = {
           other <- if (m$class_name == "Precision") tot$false_positives else tot$false_negatives
           divide_no_nan(tot$true_positives, tot$true_positives + other)
         },
         AUC = auc_result(m))
}

#' @noRd
auc_result <- function(m) {
  cfg <- m$config
  if (length(m$total) == 0L) return(0)
  tp <- as.matrix(m$total$true_positives)
  fp <- as.matrix(m$total$false_positives)
  tn <- as.matrix(m$total$true_negatives)
  fn <- as.matrix(m$total$false_negatives)
  n <- nrow(tp)
  lo <- seq_len(n - 1L)
  hi <- lo + 1L
  if (cfg$curve == "PR" && cfg$summation_method == "interpolation") {
    terms <- interpolate_pr_auc_terms(tp, fp, fn)
  } else {
    recall <- divide_no_nan(tp, tp + fn)
    if (cfg$curve == "ROC") {
      x <- divide_no_nan(fp, fp + tn)
      y <- recall
    } else if (cfg$curve == "PR") {
      x <- recall
      y <- divide_no_nan(tp, tp + fp)
    } else {
      scaling <- divide_no_nan(tp + fn, tn + fp)
      recall_gain <- 1 - scaling * divide_no_nan(fn, tp)
      precision_gain <- 1 - scaling * divide_no_nan(fp, tp)
      recall_gain[tp == 0] <- 0
      precision_gain[tp == 0] <- 1
      x <- pmax(recall_gain, 0)
      y <- precision_gain
    }
    y_lo <- y[lo, , drop = FALSE]
    y_hi <- y[hi, , drop = FALSE]
    heights <- switch(cfg$summation_method,
                      interpolation = (y_lo + y_hi) / 2,
                      minoring = pmin(y_lo, y_hi),
                      majoring = pmax(y_lo, y_hi))
    terms <- (x[lo, , drop = FALSE] - x[hi, , drop = FALSE]) * heights
  }
  if (!isTRUE(cfg$multi_label)) return(sum(terms))
  by_label <- colSums(terms)
  lw <- cfg$label_weights
  if (is.null(lw)) return(mean(by_label))
  divide_no_nan(sum(by_label * lw), sum(lw))
}

# Keras's AUC.interpolate_pr_auc() increments (Davis & Goadrich), one row
# per interval between consecutive thresholds.
#' @noRd
interpolate_pr_auc_terms <- function(tp, fp, fn) {
  n <- nrow(tp)
  lo <- seq_len(n - 1L)
  hi <- lo + 1L
  tp_lo <- tp[lo, , drop = FALSE]
  tp_hi <- tp[hi, , drop = FALSE]
  dtp <- tp_lo - tp_hi
  p <- tp + fp
  p_lo <- p[lo, , drop = FALSE]
  p_hi <- p[hi, , drop = FALSE]
  dp <- p_lo - p_hi
  slope <- divide_no_nan(dtp, pmax(dp, 0))
  intercept <- tp_hi - slope * p_hi
  ratio <- ifelse(p_lo > 0 & p_hi > 0, divide_no_nan(p_lo, pmax(p_hi, 0)), 1)
  divide_no_nan(slope * (dtp + intercept * log(ratio)), pmax(tp_hi + fn[hi, , drop = FALSE], 0))
}

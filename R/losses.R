# Losses with Keras 3's formulas, reductions and sample weights, keras3's R
# names, and their exact gradients with respect to the predictions.
#
# A loss object is an R function(y_true, y_pred, sample_weight = NULL)
# returning the reduced loss, with class c(<Keras class name>,
# "multihead_loss", "function"). Its environment holds `self`, a plain list
# (class_name, config = list(name, reduction, dtype and the class's options
# under Keras's names)), so saveRDS() round-trips it; `loss$name` etc. read
# the config.
#
# Computation (loss_evaluate()), following Keras 3's LossFunctionWrapper and
# reduce_weighted_values():
#   1. y_true and y_pred are brought to the same rank where they differ by a
#      trailing axis of size 1 (Keras's squeeze_or_expand_to_same_rank);
#   2. the class's kernel maps them to per-sample `values` (y_pred's shape
#      without the loss axis) and d values / d y_pred (sparse categorical
#      cross-entropy with ignore_class also gives a mask of the kept entries);
#   3. the mask and sample_weight become weights (with the mask rescaled by
#      total / valid for the mean reductions, so the mean is over the kept
#      entries) and the reduction is applied.
# Arrays are R arrays whose dim is the Keras shape (batch first); the loss
# axis is the last one unless `axis` says otherwise. Probabilities are
# clipped to [1e-7, 1 - 1e-7] as Keras does; the gradient is that of the
# clipped expression (zero where the clip is active).
#
# Custom losses (Loss(), and plain R functions, loss-class.R) are also
# "multihead_loss" objects; loss_evaluate() hands them to
# custom_loss_evaluate().

#' Mean squared error loss
#'
#' `mean((y_true - y_pred)^2)` over the last axis, per sample, then reduced
#' as Keras 3's `MeanSquaredError`. The name `"mse"` (or
#' `"mean_squared_error"`) given to `compile()` means this loss.
#'
#' Called with `y_true` and `y_pred`, the loss function itself is applied:
#' the per-sample values are returned, unreduced. Called without them, a loss
#' object is returned, to pass to `compile()` or to call as `loss(y_true,
#' y_pred, sample_weight = NULL)`, which returns the reduced loss.
#'
#' Reductions, as in Keras 3: `"sum_over_batch_size"` (and its synonym
#' `"mean"`) divides the weighted sum by the number of per-sample values;
#' `"sum"` returns the weighted sum; `"mean_with_sample_weight"` divides by
#' the sum of the weights; `"none"` (or `NULL`) returns the weighted
#' per-sample values. `sample_weight` is a number, or an array with one
#' weight per sample (length the batch size) or per value.
#'
#' @param y_true,y_pred Numeric arrays (batch first) of true values and
#'   predictions, or both missing to create a loss object.
#' @param ... Must be empty (kept for keras3's signature).
#' @param reduction One of `"sum_over_batch_size"`, `"sum"`, `"mean"`,
#'   `"mean_with_sample_weight"`, `"none"` (or `NULL`).
#' @param name A string: the loss's name.
#' @param dtype `NULL`, `"float32"` or `"float64"`: recorded for keras3
#'   compatibility; losses are computed in double precision.
#' @returns A loss object (a function of class `"multihead_loss"`), or, with
#'   `y_true` and `y_pred`, the per-sample loss values: an array shaped like
#'   `y_pred` without its last axis.
#' @examples
#' y_true <- matrix(c(0, 1, 1, 0), 2)
#' y_pred <- matrix(c(0.1, 0.8, 0.6, 0.3), 2)
#' loss_mean_squared_error(y_true, y_pred)
#' mse <- loss_mean_squared_error()
#' mse(y_true, y_pred)
#' mse(y_true, y_pred, sample_weight = c(1, 0))
#' @family losses
#' @export
loss_mean_squared_error <- function(y_true, y_pred, ..., reduction = "sum_over_batch_size",
                                    name = "mean_squared_error", dtype = NULL) {
  loss_entry("MeanSquaredError", list(), reduction, name, dtype, list(...))
}

#' Mean absolute error loss
#'
#' `mean(abs(y_true - y_pred))` over the last axis, per sample, then reduced
#' as Keras 3's `MeanAbsoluteError`; the gradient at `y_pred == y_true` is 0.
#' The name `"mae"` (or `"mean_absolute_error"`) means this loss.
#'
#' @inherit loss_mean_squared_error details
#' @inheritParams loss_mean_squared_error
#' @inherit loss_mean_squared_error return
#' @examples
#' loss_mean_absolute_error(matrix(c(0, 1, 1, 0), 2), matrix(c(0.1, 0.8, 0.6, 0.3), 2))
#' loss_mean_absolute_error(reduction = "sum")
#' @family losses
#' @export
loss_mean_absolute_error <- function(y_true, y_pred, ..., reduction = "sum_over_batch_size",
                                     name = "mean_absolute_error", dtype = NULL) {
  loss_entry("MeanAbsoluteError", list(), reduction, name, dtype, list(...))
}

#' Binary cross-entropy loss
#'
#' Keras 3's `BinaryCrossentropy`: per element `-(t * log(p) + (1 - t) *
#' log(1 - p))` with `p` the prediction clipped to `[1e-7, 1 - 1e-7]` (or,
#' with `from_logits = TRUE`, the numerically stable `max(x, 0) - x * t +
#' log(1 + exp(-abs(x)))` of the logit `x`), averaged over `axis`. With
#' `label_smoothing = s` the targets become `t * (1 - s) + 0.5 * s`.
#'
#' @inherit loss_mean_squared_error details
#' @inheritParams loss_mean_squared_error
#' @param y_true,y_pred Arrays of the same shape (batch first): targets in
#'   `[0, 1]` and predicted probabilities (or logits), or both missing to
#'   create a loss object.
#' @param from_logits `TRUE` or `FALSE`: whether `y_pred` holds logits.
#' @param label_smoothing A number between 0 and 1.
#' @param axis A whole number: the axis averaged over (`-1`, the default, is
#'   the last; positive numbers count from 1 = the batch axis, as in keras3).
#' @returns A loss object (a function of class `"multihead_loss"`), or, with
#'   `y_true` and `y_pred`, the per-sample loss values: an array shaped like
#'   `y_pred` without `axis`.
#' @examples
#' y_true <- matrix(c(0, 1, 0, 0), 2)
#' y_pred <- matrix(c(0.6, 0.4, 0.4, 0.6), 2)
#' loss_binary_crossentropy(y_true, y_pred)
#' bce <- loss_binary_crossentropy(from_logits = TRUE, label_smoothing = 0.1)
#' bce(y_true, matrix(c(2, -1, 0.5, 3), 2))
#' @family losses
#' @export
loss_binary_crossentropy <- function(y_true, y_pred, from_logits = FALSE, label_smoothing = 0,
                                     axis = -1L, ..., reduction = "sum_over_batch_size",
                                     name = "binary_crossentropy", dtype = NULL) {
  loss_entry("BinaryCrossentropy", crossentropy_config(from_logits, label_smoothing, axis),
             reduction, name, dtype, list(...))
}

#' Categorical cross-entropy loss
#'
#' Keras 3's `CategoricalCrossentropy` for one-hot (or soft) targets: per
#' sample `-sum(t * log(p))` over `axis`, where `p` is `y_pred` divided by its
#' sum over `axis` and clipped to `[1e-7, 1 - 1e-7]`, or, with `from_logits =
#' TRUE`, `softmax(y_pred)` (computed as a log-softmax). With
#' `label_smoothing = s` the targets become `t * (1 - s) + s / C` for `C`
#' classes.
#'
#' @inherit loss_mean_squared_error details
#' @inheritParams loss_binary_crossentropy
#' @param y_true,y_pred Arrays of the same shape (batch first, classes along
#'   `axis`): one-hot targets and predicted probabilities (or logits), or both
#'   missing to create a loss object.
#' @param axis A whole number: the class axis (`-1`, the default, is the last;
#'   positive numbers count from 1 = the batch axis, as in keras3).
#' @inherit loss_binary_crossentropy return
#' @examples
#' y_true <- rbind(c(0, 1, 0), c(0, 0, 1))
#' y_pred <- rbind(c(0.05, 0.95, 0), c(0.1, 0.8, 0.1))
#' loss_categorical_crossentropy(y_true, y_pred)
#' cce <- loss_categorical_crossentropy(from_logits = TRUE)
#' cce(y_true, rbind(c(1, 3, -1), c(0, 2, 0.5)))
#' @family losses
#' @export
loss_categorical_crossentropy <- function(y_true, y_pred, from_logits = FALSE, label_smoothing = 0,
                                          axis = -1L, ..., reduction = "sum_over_batch_size",
                                          name = "categorical_crossentropy", dtype = NULL) {
  loss_entry("CategoricalCrossentropy", crossentropy_config(from_logits, label_smoothing, axis),
             reduction, name, dtype, list(...))
}

#' Sparse categorical cross-entropy loss
#'
#' Keras 3's `SparseCategoricalCrossentropy` for integer class labels
#' (0-based, as in Keras): per sample `-log(p[label])`, where `p` is `y_pred`
#' divided by its sum over `axis` and clipped to `[1e-7, 1 - 1e-7]`, or, with
#' `from_logits = TRUE`, `softmax(y_pred)` (computed as a log-softmax).
#' Entries whose label is `ignore_class` contribute 0 and are left out of the
#' mean: with the mean reductions the loss is averaged over the other
#' entries only.
#'
#' @inherit loss_mean_squared_error details
#' @inheritParams loss_binary_crossentropy
#' @param y_true,y_pred `y_true`: whole-number labels in `0, ..., C - 1`
#'   (or `ignore_class`), shaped like `y_pred` without its class axis (a
#'   trailing axis of size 1 is allowed); `y_pred`: probabilities or logits
#'   with `C` classes along `axis`. Both missing to create a loss object.
#' @param ignore_class `NULL` or a whole number: a label to ignore (for
#'   example padding).
#' @param axis A whole number: the class axis (`-1`, the default, is the last;
#'   positive numbers count from 1 = the batch axis, as in keras3).
#' @inherit loss_binary_crossentropy return
#' @examples
#' y_true <- c(1, 2)
#' y_pred <- rbind(c(0.05, 0.95, 0), c(0.1, 0.8, 0.1))
#' loss_sparse_categorical_crossentropy(y_true, y_pred)
#' scce <- loss_sparse_categorical_crossentropy(from_logits = TRUE, ignore_class = -1)
#' scce(c(1, -1), rbind(c(1, 3, -1), c(0, 2, 0.5)))
#' @family losses
#' @export
loss_sparse_categorical_crossentropy <- function(y_true, y_pred, from_logits = FALSE,
                                                 ignore_class = NULL, axis = -1L, ...,
                                                 reduction = "sum_over_batch_size",
                                                 name = "sparse_categorical_crossentropy",
                                                 dtype = NULL) {
  config <- list(from_logits = check_flag(from_logits, "from_logits"),
                 ignore_class = check_whole(ignore_class, "ignore_class", min = -.Machine$integer.max,
                                            null_ok = TRUE),
                 axis = check_loss_axis(axis))
  loss_entry("SparseCategoricalCrossentropy", config, reduction, name, dtype, list(...))
}

#' Huber loss
#'
#' Keras 3's `Huber`: per element, with `e = y_pred - y_true`, `0.5 * e^2`
#' where `abs(e) <= delta`, else `delta * abs(e) - 0.5 * delta^2`; averaged
#' over the last axis per sample, then reduced. The names `"huber"` and
#' `"huber_loss"` given to `compile()` mean this loss.
#'
#' @inherit loss_mean_squared_error details
#' @inheritParams loss_mean_squared_error
#' @param delta A non-negative number: where the loss turns from quadratic to
#'   linear.
#' @inherit loss_mean_squared_error return
#' @examples
#' y_true <- matrix(c(0, 1, 1, 0), 2)
#' y_pred <- matrix(c(0.6, 0.4, 0.4, 2.6), 2)
#' loss_huber(y_true, y_pred)
#' loss_huber(delta = 0.5)(y_true, y_pred)
#' @family losses
#' @export
loss_huber <- function(y_true, y_pred, delta = 1, ..., reduction = "sum_over_batch_size",
                       name = "huber_loss", dtype = NULL) {
  loss_entry("Huber", list(delta = check_number(delta, "delta", lower = 0)), reduction, name, dtype,
             list(...))
}

#' Kullback-Leibler divergence loss
#'
#' Keras 3's `KLDivergence`: per sample `sum(t * log(t / p))` over the last
#' axis, with `t` and `p` the targets and predictions clipped to `[1e-7, 1]`
#' (the gradient is zero where the prediction is clipped). The names
#' `"kl_divergence"` and `"kld"` given to `compile()` mean this loss.
#'
#' @inherit loss_mean_squared_error details
#' @inheritParams loss_mean_squared_error
#' @param y_true,y_pred Arrays of the same shape (batch first) holding
#'   probability distributions along the last axis, or both missing to create
#'   a loss object.
#' @inherit loss_mean_squared_error return
#' @examples
#' y_true <- rbind(c(0.2, 0.8), c(1, 0))
#' y_pred <- rbind(c(0.4, 0.6), c(0.7, 0.3))
#' loss_kl_divergence(y_true, y_pred)
#' loss_kl_divergence(reduction = "sum")(y_true, y_pred)
#' @family losses
#' @export
loss_kl_divergence <- function(y_true, y_pred, ..., reduction = "sum_over_batch_size",
                               name = "kl_divergence", dtype = NULL) {
  loss_entry("KLDivergence", list(), reduction, name, dtype, list(...))
}

#' Categorical focal cross-entropy loss
#'
#' Keras 3's `CategoricalFocalCrossentropy` (Lin et al., 2018) for one-hot
#' targets: with `p` the predictions divided by their sum over `axis` (after
#' a softmax when `from_logits = TRUE`) and clipped to `[1e-7, 1 - 1e-7]`,
#' per sample `sum(-alpha * (1 - p)^gamma * t * log(p))` over `axis`. With
#' `label_smoothing = s` the targets become `t * (1 - s) + s / C` for `C`
#' classes. `gamma = 0` and `alpha = 1` give the categorical cross-entropy.
#'
#' @inherit loss_mean_squared_error details
#' @inheritParams loss_categorical_crossentropy
#' @param alpha A number: the weighting factor of every class.
#' @param gamma A non-negative number: the focusing parameter (larger values
#'   weigh well-classified samples down more).
#' @inherit loss_binary_crossentropy return
#' @examples
#' y_true <- rbind(c(0, 1, 0), c(0, 0, 1))
#' y_pred <- rbind(c(0.05, 0.95, 0), c(0.1, 0.8, 0.1))
#' loss_categorical_focal_crossentropy(y_true, y_pred)
#' focal <- loss_categorical_focal_crossentropy(alpha = 0.5, gamma = 1, from_logits = TRUE)
#' focal(y_true, rbind(c(1, 3, -1), c(0, 2, 0.5)))
#' @family losses
#' @export
loss_categorical_focal_crossentropy <- function(y_true, y_pred, alpha = 0.25, gamma = 2, from_logits = FALSE,
                                                label_smoothing = 0, axis = -1L, ...,
                                                reduction = "sum_over_batch_size",
                                                name = "categorical_focal_crossentropy", dtype = NULL) {
  config <- c(list(alpha = check_number(alpha, "alpha"), gamma = check_number(gamma, "gamma", lower = 0)),
              crossentropy_config(from_logits, label_smoothing, axis))
  loss_entry("CategoricalFocalCrossentropy", config, reduction, name, dtype, list(...))
}

#' @export
print.multihead_loss <- function(x, ...) {
  cat(format_spec(loss_self(x), "loss"), "\n", sep = "")
  invisible(x)
}

#' @export
`$.multihead_loss` <- function(x, name) {
  self <- loss_self(x)
  if (identical(name, "class_name")) self$class_name else self$config[[name]]
}

# --- internal API for compile() / fit() -------------------------------------

# Names accepted by as_loss() -> list(class, its default name); the names
# before the class names are listed in errors.
#' @noRd
loss_names <- function() {
  c(mse = "MeanSquaredError", mean_squared_error = "MeanSquaredError",
    mae = "MeanAbsoluteError", mean_absolute_error = "MeanAbsoluteError",
    binary_crossentropy = "BinaryCrossentropy",
    categorical_crossentropy = "CategoricalCrossentropy",
    sparse_categorical_crossentropy = "SparseCategoricalCrossentropy",
    huber = "Huber", huber_loss = "Huber", kl_divergence = "KLDivergence", kld = "KLDivergence",
    categorical_focal_crossentropy = "CategoricalFocalCrossentropy",
    MSE = "MeanSquaredError", MAE = "MeanAbsoluteError", KLD = "KLDivergence",
    MeanSquaredError = "MeanSquaredError", MeanAbsoluteError = "MeanAbsoluteError",
    BinaryCrossentropy = "BinaryCrossentropy", CategoricalCrossentropy = "CategoricalCrossentropy",
    SparseCategoricalCrossentropy = "SparseCategoricalCrossentropy", Huber = "Huber",
    KLDivergence = "KLDivergence", CategoricalFocalCrossentropy = "CategoricalFocalCrossentropy")
}

# Turns compile()'s `loss` into a loss object: a loss object is returned as
# is; a name makes the loss with its defaults, named by the name given (as
# Keras does).
#' @noRd
as_loss <- function(x, arg = "loss") {
  if (is_loss(x)) return(x)
  if (is_class_constructor(x)) {
    abort_arg(arg, "a loss object: call the class's constructor to create one",
              sprintf("the constructor of class \"%s\"", class_constructor_def(x)$classname))
  }
  nms <- loss_names()
  if (is.character(x) && length(x) == 1L && !is.na(x) && x %in% names(nms)) {
    return(new_loss(nms[[x]], loss_default_config(nms[[x]]), "sum_over_batch_size", x, NULL))
  }
  listed <- names(nms)[seq_len(which(names(nms) == "MSE") - 1L)]
  abort_arg(arg, sprintf("a loss object or one of %s", quote_names(listed)), describe_value(x))
}

#' @noRd
is_loss <- function(x) inherits(x, "multihead_loss")

# The reduced loss and its gradient with respect to y_pred:
# list(value = the loss (a number, or for reduction "none" the weighted
# per-sample values), grad = an array shaped like y_pred: d value / d y_pred,
# or, for reduction "none", d sum(value) / d y_pred).
#' @noRd
loss_value_and_grad <- function(loss, y_true, y_pred, sample_weight = NULL) {
  loss_evaluate(as_loss(loss), y_true, y_pred, sample_weight, grad = TRUE)
}

# --- construction -----------------------------------------------------------

#' @noRd
loss_default_config <- function(class_name) {
  switch(class_name,
         BinaryCrossentropy = ,
         CategoricalCrossentropy = list(from_logits = FALSE, label_smoothing = 0, axis = -1L),
         SparseCategoricalCrossentropy = list(from_logits = FALSE, ignore_class = NULL, axis = -1L),
         Huber = list(delta = 1),
         CategoricalFocalCrossentropy = list(alpha = 0.25, gamma = 2, from_logits = FALSE, label_smoothing = 0,
                                             axis = -1L),
         list())
}

#' @noRd
crossentropy_config <- function(from_logits, label_smoothing, axis) {
  list(from_logits = check_flag(from_logits, "from_logits"),
       label_smoothing = check_number(label_smoothing, "label_smoothing", lower = 0, upper = 1),
       axis = check_loss_axis(axis))
}

# Shared body of the loss_*() functions, called from them: an object when
# the caller's y_true and y_pred are both missing, the per-sample values when
# both are given.
#' @noRd
loss_entry <- function(class_name, config, reduction, name, dtype, dots) {
  caller <- parent.frame()
  given <- y_pair_given(caller, dots, "loss")
  loss <- new_loss(class_name, config, reduction, name, dtype)
  if (!given) return(loss)
  loss_evaluate(loss, caller$y_true, caller$y_pred, NULL, grad = FALSE, reduce = FALSE)$value
}

# For the loss_*() and metric_*() functions: `...` (dots) must be empty, and
# the caller's y_true and y_pred both given (TRUE) or both missing (FALSE).
#' @noRd
y_pair_given <- function(caller, dots, kind) {
  if (length(dots) > 0L) {
    nm <- names(dots)[[1L]]
    abort_arg(if (is.null(nm) || !nzchar(nm)) "..." else nm, sprintf("a known %s argument", kind),
              "an argument that is not recognized")
  }
  missing_true <- eval(quote(missing(y_true)), caller)
  missing_pred <- eval(quote(missing(y_pred)), caller)
  if (missing_true && !missing_pred) abort_arg("y_true", "given together with `y_pred`", "missing")
  if (missing_pred && !missing_true) abort_arg("y_pred", "given together with `y_true`", "missing")
  !missing_true
}

#' @noRd
new_loss <- function(class_name, config, reduction, name, dtype) {
  self <- list(class_name = class_name,
               config = c(list(name = check_string(name, "name"),
                               reduction = check_reduction(reduction),
                               dtype = check_loss_dtype(dtype)),
                          config))
  env <- new.env(parent = asNamespace("multihead"))
  env$self <- self
  fun <- function(y_true, y_pred, sample_weight = NULL) {
    loss_evaluate(self, y_true, y_pred, sample_weight, grad = FALSE)$value
  }
  environment(fun) <- env
  structure(fun, class = c(class_name, "multihead_loss", "function"))
}

# A custom loss's description is list(class_name, config = list(name,
# reduction, dtype)).
#' @noRd
loss_self <- function(x) {
  if (is_class_instance(x)) {
    return(list(class_name = class(x)[[1L]],
                config = list(name = x$name, reduction = x$reduction, dtype = x$dtype)))
  }
  get("self", envir = environment(unclass(x)), inherits = FALSE)
}

#' @noRd
loss_reduction <- function(x) if (is_class_instance(x)) x$reduction else loss_self(x)$config$reduction

#' @noRd
reduction_choices <- function() {
  c("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none")
}

#' @noRd
check_reduction <- function(x) {
  if (is.null(x)) return("none")
  if (!(is.character(x) && length(x) == 1L && !is.na(x) && x %in% reduction_choices())) {
    abort_arg("reduction", sprintf("NULL or one of %s", quote_names(reduction_choices())),
              describe_value(x))
  }
  x
}

#' @noRd
check_loss_dtype <- function(x) {
  if (is.null(x)) return(NULL)
  if (!(is.character(x) && length(x) == 1L && !is.na(x) && x %in% c("float32", "float64"))) {
    abort_arg("dtype", "NULL, \"float32\" or \"float64\"", describe_value(x))
  }
  x
}

#' @noRd
check_loss_axis <- function(axis) {
  axis <- check_whole(axis, "axis", min = -.Machine$integer.max)
  if (axis == 0L) abort_arg("axis", "a non-zero whole number (-1 is the last axis, 1 the batch axis)", "0")
  axis
}

# --- evaluation -------------------------------------------------------------

# `loss` is a loss object or its `self` list. reduce = FALSE gives the
# per-sample values (the loss function itself, no weights).
#' @noRd
loss_evaluate <- function(loss, y_true, y_pred, sample_weight, grad, reduce = TRUE) {
  if (is_class_instance(loss)) {
    return(custom_loss_evaluate(loss, y_true, y_pred, sample_weight, grad = grad, reduce = reduce))
  }
  self <- if (is_loss(loss)) loss_self(loss) else loss
  cfg <- self$config
  sparse <- identical(self$class_name, "SparseCategoricalCrossentropy")
  prep <- loss_prepare(y_true, y_pred, cfg, sparse, self$class_name)
  kernel <- loss_kernels()[[self$class_name]]
  if (is.null(kernel)) {
    abort_msg(sprintf(paste0("Unknown loss class \"%s\" (a custom loss restored from a file cannot be ",
                             "computed: compile the model again with the loss object)."), self$class_name))
  }
  k <- kernel(prep$y_true, prep$y_pred, cfg, grad)
  values <- shape_values(k$values, prep$values_shape)
  if (!reduce) {
    if (!is.null(k$mask)) values[!k$mask] <- 0
    return(list(value = values))
  }
  red <- reduce_weighted_values(values, sample_weight, k$mask, cfg$reduction)
  out <- list(value = red$value)
  if (grad) {
    # d loss / d y_pred = dvalues * (d loss / d values), per row of the
    # (values, classes) working matrix.
    g <- k$dvalues * as.vector(red$coef)
    out$grad <- restore_layout(g, prep)
  }
  out
}

# Checks y_true / y_pred and brings them to the working layout: y_pred a
# matrix (values, classes) with the loss axis last, y_true the same matrix
# (or, for sparse labels, a vector of one label per value).
#' @noRd
loss_prepare <- function(y_true, y_pred, cfg, sparse, class_name) {
  check_loss_array(y_pred, "y_pred")
  if (is.logical(y_true) && !sparse) y_true <- y_true + 0
  check_loss_array(y_true, "y_true")
  pred_shape <- shape_of(y_pred)
  st <- same_rank_shapes(shape_of(y_true), pred_shape)
  true_shape <- st$x1
  work_shape <- st$x2
  rank <- length(work_shape)
  axis <- if (is.null(cfg$axis)) -1L else cfg$axis
  k <- if (axis < 0L) rank + 1L + axis else axis
  if (k < 1L || k > rank) {
    abort_arg("axis", sprintf("an axis of `y_pred` (which has %d)", rank), as.character(axis))
  }
  perm <- c(setdiff(seq_len(rank), k), k)
  yp <- array(as.double(y_pred), work_shape)
  if (k != rank) yp <- aperm(yp, perm)
  n_class <- work_shape[[k]]
  values_shape <- work_shape[-k]
  if (sparse) {
    if (length(true_shape) == rank && true_shape[[rank]] == 1L) true_shape <- true_shape[-rank]
    if (!same_shape(true_shape, values_shape)) {
      abort_arg("y_true", sprintf(paste("class labels of shape (%s), the shape of `y_pred` (%s)",
                                        "without its class axis, for %s"),
                                  format_shape(values_shape), format_shape(pred_shape),
                                  class_name),
                sprintf("shape (%s)", format_shape(shape_of(y_true))))
    }
    yt <- as.double(y_true)
  } else {
    if (!same_shape(true_shape, work_shape)) {
      abort_arg("y_true", sprintf("an array of the shape of `y_pred` (%s) for %s",
                                  format_shape(pred_shape), class_name),
                sprintf("shape (%s)", format_shape(shape_of(y_true))))
    }
    yt <- array(as.double(y_true), work_shape)
    if (k != rank) yt <- aperm(yt, perm)
    yt <- matrix(yt, ncol = n_class)
  }
  list(y_true = yt, y_pred = matrix(yp, ncol = n_class), values_shape = values_shape,
       perm = perm, work_shape = work_shape, pred_dim = dim(y_pred), rotated = k != rank)
}

#' @noRd
check_loss_array <- function(x, arg) {
  if (!is.numeric(x) || length(x) == 0L || anyNA(x) || !all(is.finite(x))) {
    abort_arg(arg, "a non-empty numeric array of finite values", describe_value(x))
  }
  invisible(x)
}

# Keras's squeeze_or_expand_to_same_rank() on shapes: where the ranks differ
# by one and the longer shape ends in 1, that axis is dropped (or, if the
# shorter shape has rank 1, added to it).
#' @noRd
same_rank_shapes <- function(x1, x2) {
  r1 <- length(x1)
  r2 <- length(x2)
  if (r1 == r2 + 1L && x1[[r1]] == 1L) {
    if (r2 == 1L) x2 <- c(x2, 1L) else x1 <- x1[-r1]
  } else if (r2 == r1 + 1L && x2[[r2]] == 1L) {
    if (r1 == 1L) x1 <- c(x1, 1L) else x2 <- x2[-r2]
  }
  list(x1 = x1, x2 = x2)
}

#' @noRd
same_shape <- function(a, b) identical(as.integer(a), as.integer(b))

# Per-sample values as an array of `shape` (a plain number for shape ()).
#' @noRd
shape_values <- function(v, shape) {
  if (length(shape) == 0L) return(v)
  array(v, shape)
}

# The working-layout gradient (values, classes) back to y_pred's layout.
#' @noRd
restore_layout <- function(g, prep) {
  shape <- prep$work_shape
  if (prep$rotated) {
    g <- aperm(array(g, shape[prep$perm]), order(prep$perm))
  }
  g <- as.vector(g)
  if (!is.null(prep$pred_dim)) dim(g) <- prep$pred_dim
  g
}

# --- reduction --------------------------------------------------------------

# Keras 3's reduce_weighted_values(): returns list(value, coef) where coef
# (shaped like `values`) is d value / d values.
#' @noRd
reduce_weighted_values <- function(values, sample_weight, mask, reduction) {
  shape <- if (is.null(dim(values))) (if (length(values) == 1L) integer(0) else length(values)) else dim(values)
  n <- length(values)
  weights <- if (is.null(sample_weight)) NULL else broadcast_sample_weight(sample_weight, shape)
  if (!is.null(mask)) {
    m <- as.double(mask)
    if (reduction %in% c("mean", "sum_over_batch_size")) {
      valid <- sum(m)
      m <- m * (if (valid > 0) n / valid else 0)
    }
    weights <- if (is.null(weights)) m else weights * m
  }
  weighted <- if (is.null(weights)) values else values * weights
  coef <- if (is.null(weights)) rep(1, n) else weights
  if (reduction == "none" || length(shape) == 0L || n == 0L) {
    return(list(value = weighted, coef = coef))
  }
  total <- sum(weighted)
  if (reduction == "sum") return(list(value = total, coef = coef))
  divisor <- if (reduction == "mean_with_sample_weight" && !is.null(weights)) sum(weights) else n
  if (divisor == 0) return(list(value = 0, coef = coef * 0))
  list(value = total / divisor, coef = coef / divisor)
}

# `sample_weight` as a vector over the values of `shape`: a single number,
# one weight per value (the same shape), or one per sample (length the
# batch size, or shape (batch, 1)), repeated over the other axes.
#' @noRd
broadcast_sample_weight <- function(sw, shape) {
  if (!is.numeric(sw) || anyNA(sw) || !all(is.finite(sw))) {
    abort_arg("sample_weight", "NULL or a numeric array of finite values", describe_value(sw))
  }
  storage.mode(sw) <- "double"
  sw_shape <- shape_of(sw)
  n <- prod(shape)
  if (length(sw) == 1L) return(rep(sw, n))
  rank <- length(sw_shape)
  squeezed <- if (rank > 1L && sw_shape[[rank]] == 1L) sw_shape[-rank] else sw_shape
  if (same_shape(squeezed, shape) || same_shape(sw_shape, shape)) {
    return(as.vector(sw))
  }
  if (length(shape) >= 1L && length(squeezed) == 1L && squeezed == shape[[1L]]) {
    return(rep(as.vector(sw), times = n / shape[[1L]]))
  }
  abort_arg("sample_weight", sprintf("a number, one weight per sample (%d) or an array of shape (%s)",
                                     if (length(shape)) shape[[1L]] else 1L, format_shape(shape)),
            sprintf("shape (%s)", format_shape(sw_shape)))
}

# --- kernels ----------------------------------------------------------------
# Each kernel takes yt (a matrix like yp, or for sparse a label vector) and yp
# (values x classes) and returns list(values = one per row, dvalues = d
# values / d yp (same shape as yp; NULL unless grad), mask = NULL or logical
# per row).

#' @noRd
loss_kernels <- function() {
  list(MeanSquaredError = mse_kernel, MeanAbsoluteError = mae_kernel,
       BinaryCrossentropy = binary_crossentropy_kernel,
       CategoricalCrossentropy = categorical_crossentropy_kernel,
       SparseCategoricalCrossentropy = sparse_categorical_crossentropy_kernel,
       Huber = huber_kernel, KLDivergence = kl_divergence_kernel,
       CategoricalFocalCrossentropy = categorical_focal_crossentropy_kernel)
}

#' @noRd
loss_epsilon <- function() 1e-7

#' @noRd
mse_kernel <- function(yt, yp, cfg, grad) {
  d <- yp - yt
  list(values = rowMeans(d^2), dvalues = if (grad) 2 * d / ncol(yp))
}

#' @noRd
mae_kernel <- function(yt, yp, cfg, grad) {
  d <- yp - yt
  list(values = rowMeans(abs(d)), dvalues = if (grad) sign(d) / ncol(yp))
}

# Clipped probabilities and where the clip lets the gradient through.
#' @noRd
clip_probabilities <- function(p) {
  eps <- loss_epsilon()
  list(p = pmin(pmax(p, eps), 1 - eps), pass = p >= eps & p <= 1 - eps)
}

#' @noRd
binary_crossentropy_kernel <- function(yt, yp, cfg, grad) {
  s <- cfg$label_smoothing
  t <- if (s > 0) yt * (1 - s) + 0.5 * s else yt
  if (cfg$from_logits) {
    l <- pmax(yp, 0) - yp * t + log1p(exp(-abs(yp)))
    dl <- if (grad) stats::plogis(yp) - t
  } else {
    cp <- clip_probabilities(yp)
    p <- cp$p
    l <- -(t * log(p) + (1 - t) * log(1 - p))
    dl <- if (grad) (-t / p + (1 - t) / (1 - p)) * cp$pass
  }
  list(values = rowMeans(l), dvalues = if (grad) dl / ncol(yp))
}

# Row-wise log-softmax of a matrix.
#' @noRd
log_softmax_rows <- function(x) {
  z <- x - apply(x, 1L, max)
  z - log(rowSums(exp(z)))
}

#' @noRd
categorical_crossentropy_kernel <- function(yt, yp, cfg, grad) {
  s <- cfg$label_smoothing
  t <- if (s > 0) yt * (1 - s) + s / ncol(yp) else yt
  if (cfg$from_logits) {
    logp <- log_softmax_rows(yp)
    return(list(values = -rowSums(t * logp),
                dvalues = if (grad) rowSums(t) * exp(logp) - t))
  }
  total <- rowSums(yp)
  o <- yp / total
  cp <- clip_probabilities(o)
  values <- -rowSums(t * log(cp$p))
  if (!grad) return(list(values = values))
  g <- -t / cp$p * cp$pass                     # d values / d o
  list(values = values, dvalues = (g - rowSums(g * o)) / total)
}

#' @noRd
sparse_categorical_crossentropy_kernel <- function(yt, yp, cfg, grad) {
  n_class <- ncol(yp)
  keep <- if (is.null(cfg$ignore_class)) rep(TRUE, length(yt)) else yt != cfg$ignore_class
  labels <- yt[keep]
  if (any(labels != round(labels)) || any(labels < 0) || any(labels > n_class - 1)) {
    bad <- labels[labels != round(labels) | labels < 0 | labels > n_class - 1][[1L]]
    abort_arg("y_true", sprintf("whole-number class labels from 0 to %d (the classes of `y_pred`)%s",
                                n_class - 1L,
                                if (is.null(cfg$ignore_class)) "" else sprintf(" or %d", cfg$ignore_class)),
              sprintf("a label %s", format(bad)))
  }
  idx <- cbind(seq_along(yt), ifelse(keep, yt, 0) + 1)
  if (cfg$from_logits) {
    logp <- log_softmax_rows(yp)
    values <- -logp[idx]
    if (grad) {
      dvalues <- exp(logp)
      dvalues[idx] <- dvalues[idx] - 1
    }
  } else {
    total <- rowSums(yp)
    o <- yp / total
    cp <- clip_probabilities(o[idx])
    values <- -log(cp$p)
    if (grad) {
      g <- -1 / cp$p * cp$pass                 # d values / d o[label]
      dvalues <- -(g * o[idx]) / total * matrix(1, nrow(yp), n_class)
      dvalues[idx] <- dvalues[idx] + g / total
    }
  }
  values[!keep] <- 0
  if (grad) dvalues[!keep, ] <- 0
  list(values = values, dvalues = if (grad) dvalues,
       mask = if (!is.null(cfg$ignore_class)) keep)
}

#' @noRd
huber_kernel <- function(yt, yp, cfg, grad) {
  delta <- cfg$delta
  e <- yp - yt
  a <- abs(e)
  quadratic <- a <= delta
  l <- ifelse(quadratic, 0.5 * e^2, delta * a - 0.5 * delta^2)
  dl <- if (grad) ifelse(quadratic, e, delta * sign(e))
  list(values = rowMeans(matrix(l, nrow(yp))), dvalues = if (grad) matrix(dl, nrow(yp)) / ncol(yp))
}

# Both sides clipped to [1e-7, 1]; the gradient passes where y_pred is inside.
#' @noRd
kl_divergence_kernel <- function(yt, yp, cfg, grad) {
  eps <- loss_epsilon()
  t <- pmin(pmax(yt, eps), 1)
  p <- pmin(pmax(yp, eps), 1)
  values <- rowSums(t * log(t / p))
  list(values = values, dvalues = if (grad) -t / p * (yp >= eps & yp <= 1))
}

# o = y_pred / rowSums(y_pred) (of softmax(y_pred) with from_logits), clipped;
# per class f = -alpha * (1 - o)^gamma * t * log(o), summed over classes.
#' @noRd
categorical_focal_crossentropy_kernel <- function(yt, yp, cfg, grad) {
  s <- cfg$label_smoothing
  t <- if (s > 0) yt * (1 - s) + s / ncol(yp) else yt
  alpha <- cfg$alpha
  gamma <- cfg$gamma
  if (cfg$from_logits) {
    soft <- exp(log_softmax_rows(yp))
    probs <- soft
  } else {
    probs <- yp
  }
  total <- rowSums(probs)
  o <- probs / total
  cp <- clip_probabilities(o)
  oc <- cp$p
  log_o <- log(oc)
  values <- rowSums(alpha * (1 - oc)^gamma * (-t * log_o))
  if (!grad) return(list(values = values))
  # d f / d oc = alpha * t * (gamma * (1 - oc)^(gamma - 1) * log(oc) - (1 - oc)^gamma / oc)
  focus_slope <- if (gamma == 0) 0 else gamma * (1 - oc)^(gamma - 1) * log_o
  g <- alpha * t * (focus_slope - (1 - oc)^gamma / oc) * cp$pass  # d values / d o
  dprobs <- (g - rowSums(g * o)) / total                           # through o = probs / total
  dvalues <- if (cfg$from_logits) soft * (dprobs - rowSums(dprobs * soft)) else dprobs
  list(values = values, dvalues = dvalues)
}

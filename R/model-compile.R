# compile(): configures a model for training, in place.
#
# The compiled state lives in the model's `self$compiled` as plain R data
# (so saveRDS() keeps it and training continues after readRDS()):
#   optimizer         an optimizer (optimizers.R), updated in place by fit()
#   losses            one loss object per model output (NULL: no loss given)
#   loss_weights      one number per output
#   metric_specs      per output, a list of metric names / metric objects
#   weighted_specs    the same for weighted_metrics
#   metrics           NULL until the first fit() / evaluate() sees data; then
#                     the resolved metrics (see compiled_metrics())
#   output_labels     per output, the prefix of its logs ("" for one output)

#' @importFrom generics compile
#' @export
generics::compile

#' @importFrom generics fit
#' @export
generics::fit

#' Configure a model for training
#'
#' Sets the optimizer, loss and metrics that [fit()][fit.multihead_model]
#' and [evaluate()][evaluate.multihead_model] use, as keras3's `compile()`.
#' The model is changed in place (and returned invisibly, so `model |>
#' compile(...)` works without reassignment). Compiling again replaces the
#' configuration; the weights are kept, and the optimizer's state is kept
#' when the same optimizer object is passed.
#'
#' Models with several outputs take a loss per output (an unnamed list in
#' output order, or a list named by output), or one loss for all of them;
#' the minimised loss is the sum of the output losses weighted by
#' `loss_weights`. Metrics given as a vector or unnamed list apply to every
#' output; a list named by output gives each output its own. With several
#' outputs the logs name each output's loss `<output>_loss` and its metrics
#' `<output>_<metric>`, where `<output>` is the output's name (the name in a
#' named `outputs` list, else the name of the layer producing it).
#'
#' `metrics` are computed without sample weights, `weighted_metrics` with
#' them, as in Keras 3. `"accuracy"` (or `"acc"`) becomes binary, sparse
#' categorical or categorical accuracy from the shapes of the targets and the
#' output, decided when the model first sees data.
#'
#' @param object A model (from [keras_model()] or [keras_model_sequential()]).
#' @param optimizer An optimizer object ([optimizer_sgd()],
#'   [optimizer_adam()], [optimizer_adamw()], [optimizer_rmsprop()]) or one of
#'   their names `"sgd"`, `"adam"`, `"adamw"`, `"rmsprop"` (with Keras's
#'   defaults).
#' @param loss A loss object (`loss_*()`, or made by a [Loss()] class), a
#'   loss name (`"mse"`, `"mae"`, `"binary_crossentropy"`,
#'   `"categorical_crossentropy"`, `"sparse_categorical_crossentropy"`, ...),
#'   a function `function(y_true, y_pred)` returning per-sample losses
#'   computed with `op_*()` functions, or for several outputs a list of them.
#'   `NULL` leaves the model without a loss (fit() then errors).
#' @param metrics `NULL`, or a character vector or list of metric names
#'   (`"accuracy"`, `"mae"`, `"mse"`, ...) and metric objects (`metric_*()`,
#'   or made by a [Metric()] class);
#'   for several outputs optionally a list named by (some of the) outputs.
#' @param ... Must be empty except for the named arguments below (keras3's
#'   other `compile()` options are not supported).
#' @param loss_weights `NULL` (all 1) or one non-negative number per output
#'   (a vector or list in output order, or named by output).
#' @param weighted_metrics Like `metrics`, for metrics weighted by
#'   `fit()`'s and `evaluate()`'s `sample_weight`. A weighted metric whose
#'   name is also in `metrics` is logged as `weighted_<name>`.
#' @param jit_compile `"auto"`, `TRUE` or `FALSE`: accepted for keras3
#'   compatibility and ignored (multihead runs compiled C++ kernels; there is
#'   no XLA).
#' @returns `object`, invisibly, now compiled.
#' @seealso [fit.multihead_model()], [evaluate.multihead_model()].
#' @export
#' @examples
#' model <- keras_model_sequential(input_shape = 3) |> layer_dense(1)
#' model |> compile(optimizer = optimizer_sgd(learning_rate = 0.1), loss = "mse",
#'                  metrics = "mae")
#' model$optimizer
compile.multihead_model <- function(object, optimizer = "rmsprop", loss = NULL, metrics = NULL, ...,
                                    loss_weights = NULL, weighted_metrics = NULL, jit_compile = "auto") {
  dots <- list(...)
  if (length(dots)) {
    nms <- names(dots)
    nm <- if (is.null(nms) || !nzchar(nms[[1L]])) "..." else nms[[1L]]
    abort_arg(nm, paste0("a known compile() argument (optimizer, loss, metrics, loss_weights, weighted_metrics, ",
                         "jit_compile)"), "an argument that is not recognized")
  }
  if (!(identical(jit_compile, "auto") || (is.logical(jit_compile) && length(jit_compile) == 1L &&
                                           !is.na(jit_compile)))) {
    abort_arg("jit_compile", "\"auto\", TRUE or FALSE (accepted and ignored)", describe_value(jit_compile))
  }
  self <- layer_self(object)
  labels <- model_output_labels(self)
  n_out <- length(labels)
  compiled <- list(
    optimizer = as_optimizer(optimizer, "optimizer"),
    losses = compile_losses(loss, labels),
    loss_weights = compile_loss_weights(loss_weights, labels),
    metric_specs = compile_metric_specs(metrics, labels, "metrics"),
    weighted_specs = compile_metric_specs(weighted_metrics, labels, "weighted_metrics"),
    metrics = NULL,
    output_labels = if (n_out == 1L) "" else paste0(labels, "_")
  )
  self$compiled <- compiled
  invisible(object)
}

# The names of a model's outputs (a model not built yet has one output).
#' @noRd
model_output_labels <- function(self) {
  if (!isTRUE(self$built)) return("output")
  outs <- self$graph$outputs
  if (identical(self$output_form, "named")) return(self$output_names)
  labels <- vapply(outs, function(t) {
    if (identical(t$node$kind, "input")) t$name else callee_name(t$node$callee)
  }, character(1))
  if (anyDuplicated(labels)) labels <- make.unique(labels, sep = "_")
  labels
}

# One loss object per output (NULL entries when no loss was given).
#' @noRd
compile_losses <- function(loss, labels) {
  n <- length(labels)
  if (is.null(loss)) return(vector("list", n))
  if (is_loss(loss) || is.function(loss) || (is.character(loss) && length(loss) == 1L)) {
    return(rep(list(compiled_loss(loss, "loss")), n))
  }
  if (!(is.list(loss) || is.character(loss)) || is.object(loss) || length(loss) != n) {
    abort_arg("loss", sprintf(paste0("a loss object, a loss name, or a list of %d of them (one per output: ",
                                     "%s)"), n, quote_names(labels)), describe_value(loss))
  }
  loss <- as.list(loss)
  loss <- per_output(loss, labels, "loss")
  lapply(seq_len(n), function(k) {
    if (is.null(loss[[k]])) NULL else compiled_loss(loss[[k]], sprintf("loss[[%d]]", k))
  })
}

# A loss for compile(): training needs a reduced (scalar) loss. A plain
# function(y_true, y_pred) becomes a loss object (loss-class.R).
#' @noRd
compiled_loss <- function(x, arg) {
  if (is.function(x) && !is.object(x)) x <- loss_function_wrapper(x)
  loss <- as_loss(x, arg)
  if (identical(loss_reduction(loss), "none")) {
    abort_arg(arg, "a loss with a reduction to a single number (not reduction = \"none\")",
              "a loss with reduction \"none\"")
  }
  loss
}

# A list given per output, by position or by output name, in output order.
#' @noRd
per_output <- function(x, labels, arg) {
  nms <- names(x)
  if (is.null(nms)) return(unname(x))
  if (!setequal(nms, labels) || anyDuplicated(nms)) {
    abort_arg(arg, sprintf("named by the model's outputs (%s)", quote_names(labels)),
              sprintf("names %s", quote_names(nms)))
  }
  unname(x[labels])
}

#' @noRd
compile_loss_weights <- function(loss_weights, labels) {
  n <- length(labels)
  if (is.null(loss_weights)) return(rep(1, n))
  if (!(is.numeric(loss_weights) || is.list(loss_weights)) || length(loss_weights) != n) {
    abort_arg("loss_weights", sprintf("NULL or %d non-negative number%s, one per output", n,
                                      if (n == 1L) "" else "s"), describe_value(loss_weights))
  }
  w <- per_output(as.list(loss_weights), labels, "loss_weights")
  vapply(seq_len(n), function(k) {
    check_number(w[[k]], if (n == 1L) "loss_weights" else sprintf("loss_weights[[%d]]", k), lower = 0)
  }, numeric(1))
}

# Per output, a list of metric specs (names or metric objects), checked.
#' @noRd
compile_metric_specs <- function(metrics, labels, arg) {
  n <- length(labels)
  if (is.null(metrics)) return(rep(list(list()), n))
  by_output <- is.list(metrics) && !is.object(metrics) && !is.null(names(metrics)) && n > 1L
  if (!by_output) return(rep(list(as_metric_spec_list(metrics, arg)), n))
  nms <- names(metrics)
  if (!all(nms %in% labels) || anyDuplicated(nms)) {
    abort_arg(arg, sprintf("a list named by some of the model's outputs (%s)", quote_names(labels)),
              sprintf("names %s", quote_names(nms)))
  }
  lapply(labels, function(l) as_metric_spec_list(metrics[[l]], sprintf("%s$%s", arg, l)))
}

#' @noRd
as_metric_spec_list <- function(x, arg) {
  if (is.null(x)) return(list())
  if (is_metric(x)) return(list(x))
  if (is_class_constructor(x)) x <- list(x)
  if (!(is.character(x) || is.list(x)) || is.object(x)) {
    abort_arg(arg, "NULL, a metric name, a metric object, or a vector or list of them", describe_value(x))
  }
  x <- as.list(x)
  nms <- metric_names()
  listed <- names(nms)[seq_len(which(names(nms) == "MAE") - 1L)]
  for (i in seq_along(x)) {
    m <- x[[i]]
    if (is_class_constructor(m)) {
      abort_arg(if (length(x) == 1L) arg else sprintf("%s[[%d]]", arg, i),
                "a metric object: call the class's constructor to create one",
                sprintf("the constructor of class \"%s\"", class_constructor_def(m)$classname))
    }
    ok <- is_metric(m) || (is.character(m) && length(m) == 1L && !is.na(m) && m %in% names(nms))
    if (!ok) {
      abort_arg(if (length(x) == 1L) arg else sprintf("%s[[%d]]", arg, i),
                sprintf("a metric object or one of %s", quote_names(listed)), describe_value(m))
    }
    if (is_metric(m) && metric_n_values(m) != 1L) {  # logs hold one number per metric
      abort_arg(if (length(x) == 1L) arg else sprintf("%s[[%d]]", arg, i),
                "metrics of one value each (logs hold numbers): one Precision or Recall object per threshold",
                sprintf("metric \"%s\" with %d thresholds", m$name, metric_n_values(m)))
    }
  }
  unname(x)
}

# The model's compiled state, or an error naming what is missing.
#' @noRd
model_compiled <- function(self, what) {
  compiled <- self$compiled
  if (is.null(compiled)) {
    abort_msg(sprintf(paste0("Model \"%s\" must be compiled before %s(): call compile(model, optimizer = , ",
                             "loss = ) first."), self$name, what), class = "multihead_error_argument")
  }
  if (all(vapply(compiled$losses, is.null, logical(1)))) {
    abort_arg("loss", sprintf("given to compile() before %s() (model \"%s\" was compiled without a loss)",
                              what, self$name))
  }
  compiled
}

# The resolved metrics, created on the first data: a list of
# list(metric =, output = k, weighted = TRUE/FALSE), each metric a fresh
# object named as it appears in the logs. `y_shapes` / `pred_shapes`: per
# output, the shapes of the targets and the predictions.
#' @noRd
compiled_metrics <- function(self, y_shapes, pred_shapes) {
  compiled <- self$compiled
  if (!is.null(compiled$metrics)) return(compiled$metrics)
  out <- list()
  used <- character()
  instances <- list()
  for (weighted in c(FALSE, TRUE)) {
    specs <- if (weighted) compiled$weighted_specs else compiled$metric_specs
    for (k in seq_along(specs)) {
      for (spec in specs[[k]]) {
        m <- if (is_class_instance(spec)) {
          # a custom metric is used as it is (as Keras does), copied when given again
          again <- any(vapply(instances, function(i) identical(environment(i), environment(spec)), logical(1)))
          instances[[length(instances) + 1L]] <- spec
          if (again) class_instance_clone(spec) else spec
        } else if (is_metric(spec)) clone_metric(spec) else {
          resolve_metric(spec, compiled$losses[[k]], y_shapes[[k]], pred_shapes[[k]],
                         arg = if (weighted) "weighted_metrics" else "metrics")
        }
        name <- paste0(compiled$output_labels[[k]], m$name)
        if (weighted && name %in% used) name <- paste0(compiled$output_labels[[k]], "weighted_", m$name)
        m$name <- name
        used <- c(used, name)
        out[[length(out) + 1L]] <- list(metric = m, output = k, weighted = weighted)
      }
    }
  }
  dup <- used[duplicated(used)]
  if (length(dup)) {
    abort_arg("metrics", "metrics with distinct names", sprintf("%s twice", quote_names(dup[[1L]])))
  }
  compiled$metrics <- out
  self$compiled <- compiled
  out
}

# A fresh copy of a metric object (metrics accumulate in place).
#' @noRd
clone_metric <- function(m) {
  # as.list.environment: a metric's class hides the environment from as.list()
  copy <- list2env(as.list.environment(m, all.names = TRUE), parent = emptyenv())
  class(copy) <- class(m)
  metric_reset(copy)
  copy
}

# The names of the logged quantities: loss, per-output losses, metrics.
#' @noRd
compiled_log_names <- function(compiled, metrics) {
  labels <- compiled$output_labels
  c("loss", if (length(labels) > 1L) paste0(labels, "loss"),
    vapply(metrics, function(e) e$metric$name, character(1)))
}

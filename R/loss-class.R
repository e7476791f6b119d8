# keras3's Loss(): custom loss classes, and plain R functions used as losses
# (the class machinery is in callback-class.R).
#
# A custom loss's call(y_true, y_pred) returns per-sample losses computed with
# op_*() functions (and + - * /); the instance reduces them as Keras's
# Loss.__call__ (reduce_weighted_values() in losses.R: sample weights, then
# "sum_over_batch_size", "sum", "mean", "mean_with_sample_weight" or "none").
#
# Called directly, loss(y_true, y_pred, sample_weight = NULL) runs call()
# eagerly on the arrays, and so do evaluate() and fit()'s check of the
# targets (loss_evaluate() hands custom losses to custom_loss_evaluate()).
# For a training step, which needs the gradient, call() is traced once per
# pair of input shapes on symbolic placeholders of the loss's dtype
# (new_placeholder_tensor()) inside a trace frame; the graph (build_graph())
# is cached in the instance (`.graphs`). Each batch runs it forward
# (run_graph_forward(keep = TRUE)); the reduction gives d loss / d values,
# which run_graph_backward() carries back to y_pred: the gradient fit()
# needs. A plain function(y_true, y_pred) given as a loss becomes an
# instance of the internal class LossFunctionWrapper, which first brings
# y_true and y_pred to the same rank as Keras does (a trailing axis of size
# 1 dropped or added).

#' Define a custom loss class
#'
#' keras3's `Loss()` (also `new_loss_class()`): returns a constructor of
#' losses to pass in `compile()`'s `loss` or to call as `loss(y_true, y_pred,
#' sample_weight = NULL)`.
#'
#' `call(y_true, y_pred)` computes the per-sample losses (for example
#' `op_mean(op_square(y_pred - y_true), axis = -1)`); the loss object then
#' weights them by `sample_weight` and reduces them by its `reduction`, as
#' Keras's `Loss`. The base class's `initialize(name = NULL, reduction =
#' "sum_over_batch_size", dtype = NULL)` sets `self$name` (by default the
#' class name in snake case), `self$reduction` and `self$dtype`; a custom
#' `initialize()` calls `super$initialize(...)`.
#'
#' For training, `call()` must be written with `op_*()` functions and the
#' operators `+ - * /` (which also work on symbolic tensors): `fit()` traces
#' it once per shape of `y_true` and `y_pred` on symbolic tensors of the
#' loss's `dtype` and differentiates the recorded graph. Attributes of
#' `self` read in `call()` are fixed when it is traced (as in a compiled
#' Keras function). Called directly, the loss runs `call()` on the arrays.
#'
#' `compile()` also takes a plain `function(y_true, y_pred)` as a loss; it is
#' wrapped in such a class (with Keras's rank adjustment of `y_true` and
#' `y_pred`).
#'
#' Methods see `self`, `super`, `private` and the class as for [Callback()].
#'
#' @inheritParams Callback
#' @param call `NULL` or `function(y_true, y_pred)` returning the per-sample
#'   losses.
#' @param inherit `NULL` (subclass Keras's `Loss`) or a constructor made by
#'   `Loss()` to subclass.
#' @returns A constructor: a function whose arguments are those of
#'   `initialize` (`name = NULL, reduction = "sum_over_batch_size", dtype =
#'   NULL` by default) returning a loss object.
#' @examples
#' loss_scaled_mse <- Loss("ScaledMSE",
#'   initialize = function(scale = 2, name = "scaled_mse", ...) {
#'     super$initialize(name = name, ...)
#'     self$scale <- scale
#'   },
#'   call = function(y_true, y_pred) {
#'     d <- op_subtract(y_pred, y_true)
#'     op_multiply(op_multiply(d, d), self$scale)
#'   }
#' )
#' loss <- loss_scaled_mse(scale = 0.5)
#' loss(matrix(c(0, 1, 2)), matrix(c(1, 1, 1)))
#' loss(matrix(c(0, 1, 2)), matrix(c(1, 1, 1)), sample_weight = c(1, 0, 0))
#'
#' set.seed(1)
#' x <- matrix(rnorm(64 * 3), 64)
#' y <- x %*% c(1, -2, 0.5)
#' model <- keras_model_sequential(input_shape = 3) |> layer_dense(1)
#' model |> compile(optimizer = optimizer_sgd(0.1), loss = loss)
#' model |> fit(x, y, epochs = 2, verbose = 0)
#' @family losses
#' @export
Loss <- function(classname, call = NULL, ..., public = list(), private = list(), inherit = NULL,
                 parent_env = parent.frame()) {
  if (missing(classname)) abort_arg("classname", "supplied: the name of the new class (a string)")
  new_class_generator("loss", classname, list(call = call), list(...), public, private, inherit,
                      parent_env)
}

#' @rdname Loss
#' @export
new_loss_class <- Loss

# Keras's Loss base class.
#' @noRd
loss_base_members <- function() {
  members <- list(
    initialize = function(name = NULL, reduction = "sum_over_batch_size", dtype = NULL) {
      self$name <- if (is.null(name)) keras_snake_case(class(self)[[1L]]) else check_string(name, "name")
      self$reduction <- check_reduction(reduction)
      self$dtype <- if (is.null(dtype)) "float32" else check_loss_dtype(dtype)
      invisible(NULL)
    },
    call = function(y_true, y_pred) {
      abort_msg(sprintf("Loss class \"%s\" must implement call(y_true, y_pred).", class(self)[[1L]]),
                class = "multihead_error_not_implemented")
    },
    `__call__` = function(y_true, y_pred, sample_weight = NULL) {
      custom_loss_evaluate(self, y_true, y_pred, sample_weight, grad = FALSE)$value
    },
    get_config = function() list(name = self$name, reduction = self$reduction, dtype = self$dtype)
  )
  list(members = members,
       formals = as.pairlist(alist(name = NULL, reduction = "sum_over_batch_size", dtype = NULL)),
       handle = function(y_true, y_pred, sample_weight = NULL) {
         if (missing(y_true)) abort_arg("y_true", "supplied: the targets")
         if (missing(y_pred)) abort_arg("y_pred", "supplied: the predictions")
         .self$`__call__`(y_true, y_pred, sample_weight = sample_weight)
       })
}

#' @noRd
loss_instance_setup <- function(handle) {
  env <- environment(handle)
  env$.graphs <- list()
  env$.state$name <- keras_snake_case(class(handle)[[1L]])
  env$.state$reduction <- "sum_over_batch_size"
  env$.state$dtype <- "float32"
  invisible(handle)
}

#' @noRd
loss_instance_check <- function(handle) {
  state <- environment(handle)$.state
  check_string(state$name, "name")
  state$reduction <- check_reduction(state$reduction)
  check_loss_dtype(state$dtype)
  invisible(handle)
}

# The internal class of plain functions used as losses (Keras's
# LossFunctionWrapper), made once per session.
#' @noRd
loss_function_wrapper_def <- function() {
  def <- .class_bases$LossFunctionWrapper
  if (is.null(def)) {
    members <- list(
      initialize = function(fn, reduction = "sum_over_batch_size", name = NULL, dtype = NULL) {
        super$initialize(name = name, reduction = reduction, dtype = dtype)
        self$fn <- fn
        invisible(NULL)
      },
      call = function(y_true, y_pred) self$fn(y_true, y_pred)
    )
    def <- new_class_def("LossFunctionWrapper", "loss", members, list(), class_base_def("loss"),
                         asNamespace("multihead"))
    assign("LossFunctionWrapper", def, envir = .class_bases)
  }
  def
}

#' @noRd
loss_function_wrapper <- function(fn) class_instantiate(loss_function_wrapper_def(), list(fn = fn))

# ---- evaluation ------------------------------------------------------------------

# The reduced loss (or with reduce = FALSE the per-sample values) and, with
# grad = TRUE, its gradient with respect to y_pred (shaped like y_pred), as
# loss_evaluate() returns them. Without a gradient call() runs on the arrays
# (eager; direct calls, evaluate(), the targets' check), with one it runs as
# the traced graph (fit()).
#' @noRd
custom_loss_evaluate <- function(loss, y_true, y_pred, sample_weight = NULL, grad = FALSE, reduce = TRUE,
                                 eager = !grad) {
  y_true <- custom_loss_input(y_true, "y_true")
  y_pred <- custom_loss_input(y_pred, "y_pred")
  pred_dim <- dim(y_pred)
  pred_len <- length(y_pred)
  if (inherits(loss, "LossFunctionWrapper")) {
    st <- same_rank_shapes(shape_of(y_true), shape_of(y_pred))
    y_true <- with_shape(y_true, st$x1)
    y_pred <- with_shape(y_pred, st$x2)
  }
  reduction <- check_reduction(loss$reduction)
  if (eager) {
    values <- tryCatch(loss$call(y_true, y_pred),
                       error = function(e) {
                         if (inherits(e, "multihead_error")) stop(e)
                         abort_msg(sprintf("call() of loss \"%s\" (%s) failed on y_true %s and y_pred %s: %s",
                                           loss$name, class(loss)[[1L]], fmt_shape(shape_of(y_true)),
                                           fmt_shape(shape_of(y_pred)), conditionMessage(e)),
                                   class = "multihead_error_call")
                       })
    if (is_variable(values)) values <- variable_value(values)
    if (!is.numeric(values) || is.object(values) || length(values) == 0L) {
      abort_msg(sprintf("call() of loss \"%s\" (%s) must return the per-sample losses, a numeric array; it returned %s.",
                        loss$name, class(loss)[[1L]], describe_value(values)), class = "multihead_error_argument")
    }
    if (!reduce) return(list(value = values))
    return(list(value = reduce_weighted_values(values, sample_weight, NULL, reduction)$value))
  }
  dtype <- check_loss_dtype(loss$dtype)
  if (is.null(dtype)) dtype <- "float32"
  graph <- custom_loss_graph(loss, shape_of(y_true), shape_of(y_pred), dtype)
  run <- run_graph_forward(graph, list(as_dtype_value(y_true, dtype), as_dtype_value(y_pred, dtype)),
                           keep = grad)
  values <- run$outputs[[1L]]
  if (!reduce) return(list(value = values))
  red <- reduce_weighted_values(values, sample_weight, NULL, reduction)
  out <- list(value = red$value)
  if (grad) {
    coef <- as.double(red$coef)
    if (!is.null(dim(values))) dim(coef) <- dim(values)
    back <- run_graph_backward(graph, run, list(coef))
    g <- back$inputs[[2L]]
    g <- if (is.null(g)) numeric(pred_len) else as.double(g)
    if (!is.null(pred_dim)) dim(g) <- pred_dim
    out$grad <- g
  }
  out
}

#' @noRd
custom_loss_input <- function(x, arg) {
  if (is_variable(x)) x <- variable_value(x)
  if (is_symbolic(x)) {
    abort_arg(arg, "an array (a loss object computes on arrays; use its call() method on symbolic tensors)",
              describe_value(x))
  }
  if (is.logical(x)) x <- x + 0
  if (!is.numeric(x) || is.object(x) && !is.array(x) || length(x) == 0L || anyNA(x)) {
    abort_arg(arg, "a non-empty numeric array without NA", describe_value(x))
  }
  if (!is.double(x)) storage.mode(x) <- "double"
  x
}

# x with the shape `shape` (same number of elements): rank 1 a plain vector.
#' @noRd
with_shape <- function(x, shape) {
  if (identical(as.integer(shape), as.integer(shape_of(x)))) return(x)
  dim(x) <- if (length(shape) > 1L) shape else NULL
  x
}

# The graph of call() for these input shapes and dtype (cached in the
# instance, at most 16 shapes).
#' @noRd
custom_loss_graph <- function(loss, true_shape, pred_shape, dtype) {
  env <- environment(loss)
  key <- paste(dtype, paste(true_shape, collapse = ","), paste(pred_shape, collapse = ","), sep = "|")
  graphs <- env$.graphs
  hit <- graphs[[key]]
  if (!is.null(hit)) return(hit)
  yt <- new_placeholder_tensor(true_shape, dtype, "y_true")
  yp <- new_placeholder_tensor(pred_shape, dtype, "y_pred")
  what <- sprintf("call() of loss \"%s\" (%s)", loss$name, class(loss)[[1L]])
  shapes <- sprintf("y_true %s and y_pred %s %s", fmt_shape(true_shape), fmt_shape(pred_shape), dtype)
  out <- tryCatch(with_trace_frame(loss$call(yt, yp)),
                  error = function(e) {
                    if (inherits(e, "multihead_error")) stop(e)
                    abort_msg(sprintf(paste0("%s failed on symbolic tensors (%s), traced so that training can ",
                                             "differentiate it: %s. Compute the loss with op_*() functions and ",
                                             "the operators + - * /."), what, shapes, conditionMessage(e)),
                              class = "multihead_error_trace")
                  })
  if (is_variable(out)) out <- with_trace_frame(variable_tensor(out))
  if (!is_symbolic(out)) {
    abort_msg(sprintf(paste0("%s must return a tensor computed from y_true and y_pred with op_*() functions ",
                             "(traced on symbolic tensors %s); it returned %s."), what, shapes,
                      describe_value(out)), class = "multihead_error_trace")
  }
  if (!is_float_dtype(out$dtype)) {
    abort_msg(sprintf("%s must return floating-point losses; it returned a %s tensor.", what, out$dtype),
              class = "multihead_error_trace")
  }
  graph <- build_graph(list(yt, yp), list(out), model_name = sprintf("loss \"%s\"", loss$name))
  if (length(graphs) >= 16L) graphs <- graphs[-1L]
  graphs[[key]] <- graph
  env$.graphs <- graphs
  graph
}

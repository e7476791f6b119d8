# keras3's Metric(): custom metric classes (the class machinery is in
# callback-class.R).
#
# A custom metric keeps its state in variables made by self$add_variable()
# (or add_weight()): variables (variable.R) over a state environment of the
# instance (`.variables` in its environment: name, dtype, variables,
# variable_names, variable_dtypes, trainable = FALSE), so their values persist
# across batches and saveRDS() keeps them. compile() takes metric instances;
# fit() and evaluate() call reset_state() at the start of each epoch / run,
# update_state(y_true, y_pred, sample_weight) per batch (with R arrays) and
# result() for the logs (metrics.R: metric_reset(), metric_update(),
# metric_result()).

#' Define a custom metric class
#'
#' keras3's `Metric()` (also `new_metric_class()`): returns a constructor of
#' metrics to pass in `compile()`'s `metrics`.
#'
#' * `initialize()` creates the state variables with `self$add_variable()`
#'   (or `self$add_weight()`) after calling `super$initialize(name = name,
#'   ...)`.
#' * `update_state(y_true, y_pred, sample_weight = NULL)` updates them, for
#'   example `self$total$assign_add(op_sum(values))` or
#'   `self$total$assign(self$total + ...)`.
#' * `result()` returns the metric's value: a number, an array of one value
#'   or a variable.
#' * `reset_state()` (optional) resets them; by default every variable is
#'   set to zeros.
#'
#' The base class provides `initialize(dtype = NULL, name = NULL)` (the
#' name defaults to the class name in snake case), `add_variable(shape,
#' initializer, dtype = NULL, aggregation = "sum", name = NULL)`,
#' `add_weight(shape = shape(), initializer = "zeros", dtype = NULL, name =
#' NULL)`, `reset_state()`, `get_config()` and the read-only property
#' `variables`. Calling a metric, `m(y_true, y_pred)`, updates its state and
#' returns its result. `y_true` and `y_pred` are R arrays (batch first);
#' compute with `op_*()` functions, R's arithmetic and the variables.
#'
#' In `compile()` a metric object is used as it is (its state is that of the
#' model's metric); the same object given twice (for example for two outputs)
#' is copied. `fit()` resets it at the start of each epoch and `evaluate()`
#' at the start. To tell `callback_early_stopping(mode = "auto")` which way
#' the metric should go, set `self$direction <- "up"` (larger is better) or
#' `"down"` in `initialize()`.
#'
#' Methods see `self`, `super`, `private` and the class as for [Callback()].
#'
#' @inheritParams Callback
#' @param initialize `NULL` or a function: creates the state (its arguments
#'   become the constructor's).
#' @param update_state `NULL` or `function(y_true, y_pred, sample_weight =
#'   NULL)`.
#' @param result `NULL` or `function()` returning the metric's value.
#' @param inherit `NULL` (subclass Keras's `Metric`) or a constructor made by
#'   `Metric()` to subclass.
#' @returns A constructor: a function whose arguments are those of
#'   `initialize` (`dtype = NULL, name = NULL` by default) returning a metric
#'   object.
#' @examples
#' metric_sum_of_errors <- Metric("SumOfErrors",
#'   initialize = function(name = "sum_of_errors", ...) {
#'     super$initialize(name = name, ...)
#'     self$total <- self$add_variable(shape = integer(), initializer = "zeros", name = "total")
#'   },
#'   update_state = function(y_true, y_pred, sample_weight = NULL) {
#'     err <- op_subtract(y_true, y_pred)
#'     self$total$assign_add(sum(abs(err)))
#'   },
#'   result = function() self$total
#' )
#' m <- metric_sum_of_errors()
#' m(c(1, 2, 3), c(1, 2, 5))
#' m$update_state(c(0, 0), c(1, 1))
#' m$result()
#' m$reset_state()
#' m$result()
#' @family metrics
#' @export
Metric <- function(classname, initialize = NULL, update_state = NULL, result = NULL, ...,
                   public = list(), private = list(), inherit = NULL, parent_env = parent.frame()) {
  if (missing(classname)) abort_arg("classname", "supplied: the name of the new class (a string)")
  new_class_generator("metric", classname,
                      list(initialize = initialize, update_state = update_state, result = result),
                      list(...), public, private, inherit, parent_env)
}

#' @rdname Metric
#' @export
new_metric_class <- Metric

# Keras's Metric base class.
#' @noRd
metric_base_members <- function() {
  members <- list(
    initialize = function(dtype = NULL, name = NULL) {
      self$name <- if (is.null(name)) keras_snake_case(class(self)[[1L]]) else check_string(name, "name")
      self$dtype <- check_metric_class_dtype(dtype, "dtype")
      vars <- environment(self)$.variables
      vars$dtype <- self$dtype
      invisible(NULL)
    },
    add_variable = function(shape, initializer, dtype = NULL, aggregation = "sum", name = NULL) {
      if (missing(shape)) abort_arg("shape", "supplied: the variable's shape (e.g. shape() for a number)")
      if (missing(initializer)) abort_arg("initializer", "supplied (e.g. \"zeros\")")
      metric_add_variable(self, shape, initializer, dtype, aggregation, name)
    },
    add_weight = function(shape = integer(), initializer = "zeros", dtype = NULL, name = NULL) {
      metric_add_variable(self, shape, initializer, dtype, "sum", name)
    },
    reset_state = function() {
      metric_zero_variables(self)
      invisible(NULL)
    },
    update_state = function(...) {
      abort_msg(sprintf("Metric class \"%s\" must implement update_state(y_true, y_pred, sample_weight = NULL).",
                        class(self)[[1L]]), class = "multihead_error_not_implemented")
    },
    result = function() {
      abort_msg(sprintf("Metric class \"%s\" must implement result().", class(self)[[1L]]),
                class = "multihead_error_not_implemented")
    },
    get_config = function() list(name = self$name, dtype = self$dtype),
    `__call__` = function(...) {
      self$update_state(...)
      self$result()
    },
    variables = active_property(function(value) {
      if (!missing(value)) {
        abort_msg("`variables` of a metric is read-only; use add_variable().", class = "multihead_error_readonly")
      }
      metric_variable_list(self)
    }),
    direction = active_property(function(value) {
      env <- environment(self)
      if (!missing(value)) {
        ok <- is.null(value) || (is.character(value) && length(value) == 1L && value %in% c("up", "down"))
        if (!ok) abort_arg("direction", "\"up\", \"down\" or NULL", describe_value(value))
        env$.direction <- value
        return(invisible(value))
      }
      if (is.null(env$.direction)) NA_character_ else env$.direction
    })
  )
  list(members = members, formals = as.pairlist(alist(dtype = NULL, name = NULL)),
       handle = function(...) .self$`__call__`(...))
}

#' @noRd
check_metric_class_dtype <- function(dtype, arg) {
  if (is.null(dtype)) return("float32")
  if (!(is.character(dtype) && length(dtype) == 1L && !is.na(dtype) && dtype %in% c("float32", "float64"))) {
    abort_arg(arg, "NULL, \"float32\" or \"float64\"", describe_value(dtype))
  }
  dtype
}

#' @noRd
metric_instance_setup <- function(handle) {
  env <- environment(handle)
  vars <- new.env(parent = emptyenv())
  vars$name <- keras_snake_case(class(handle)[[1L]])
  vars$dtype <- "float32"
  vars$variables <- list()
  vars$variable_names <- character()
  vars$variable_dtypes <- list()
  vars$trainable <- FALSE
  env$.variables <- vars
  env$.state$name <- vars$name
  env$.state$dtype <- "float32"
  env$.direction <- NULL
  invisible(handle)
}

#' @noRd
metric_instance_check <- function(handle) {
  name <- environment(handle)$.state$name
  if (!(is.character(name) && length(name) == 1L && !is.na(name) && nzchar(name))) {
    abort_msg(sprintf("Metric %s must have a name (a non-empty string) after initialize(); it has %s.",
                      class(handle)[[1L]], describe_value(name)), class = "multihead_error_argument")
  }
  invisible(handle)
}

# Keras's Metric.add_variable(): a variable of `shape` (integer() or NULL for
# a number) initialised by `initializer` (a name, an initializer object or a
# function(shape, dtype)). Integer dtypes are kept as float64 (exact counts).
#' @noRd
metric_add_variable <- function(self, shape, initializer, dtype, aggregation, name) {
  vars <- environment(self)$.variables
  shape <- if (is.null(shape) || length(shape) == 0L) integer() else
    check_whole_vector(shape, "shape", min = 0L)
  if (is.null(dtype)) dtype <- self$dtype
  if (!(is.character(dtype) && length(dtype) == 1L && !is.na(dtype) &&
        dtype %in% c("float32", "float64", "int32", "int64"))) {
    abort_arg("dtype", "NULL, \"float32\", \"float64\", \"int32\" or \"int64\"", describe_value(dtype))
  }
  store_dtype <- if (is_float_dtype(dtype)) dtype else "float64"
  check_choice(aggregation, "aggregation", c("none", "mean", "sum", "only_first_replica"))
  name <- if (is.null(name)) "variable" else check_string(name, "name")
  if (name %in% vars$variable_names) {
    k <- 1L
    while (paste0(name, "_", k) %in% vars$variable_names) k <- k + 1L
    name <- paste0(name, "_", k)
  }
  check_size(shape, "shape", sprintf("variable \"%s\" of metric \"%s\"", name, self$name))
  n <- prod(shape)
  dims <- if (length(shape)) shape else 1L
  if (is.function(initializer) && !inherits(initializer, "multihead_initializer")) {
    value <- tryCatch(initializer(shape, dtype), error = function(e) {
      abort_arg("initializer", "an initializer, its name, or a function(shape, dtype) giving the initial values",
                sprintf("a function that failed: %s", conditionMessage(e)))
    })
    if (is_variable(value)) value <- variable_value(value)
    if (!is.numeric(value) && !is.logical(value) || !(length(value) == n || length(value) == 1L)) {
      abort_arg("initializer", sprintf("a function(shape, dtype) returning %d number%s", n,
                                       if (n == 1L) "" else "s"), describe_value(value))
    }
    value <- rep_len(as.double(value), n)
  } else {
    init <- as_initializer(initializer, "initializer")
    value <- tryCatch(as.double(initializer_sample(init, dims)),
                      error = function(e) {
                        if (inherits(e, "multihead_error")) stop(e)
                        abort_arg("shape", "a shape whose values fit in memory", fmt_shape(shape))
                      })
  }
  if (!cpp_all_finite(value)) abort_arg("initializer", "giving finite values", "NA, NaN or Inf")
  value <- store_weight(value, dims, store_dtype)
  if (!length(shape)) dim(value) <- NULL
  vars$name <- self$name
  vars$variables[[name]] <- value
  vars$variable_dtypes[[name]] <- store_dtype
  vars$variable_names <- c(vars$variable_names, name)
  new_variable(vars, name)
}

#' @noRd
metric_variable_list <- function(self) {
  vars <- environment(self)$.variables
  lapply(stats::setNames(vars$variable_names, vars$variable_names), function(nm) new_variable(vars, nm))
}

#' @noRd
metric_zero_variables <- function(self) {
  vars <- environment(self)$.variables
  for (nm in vars$variable_names) {
    v <- vars$variables[[nm]]
    v[] <- 0
    vars$variables[[nm]] <- v
  }
  invisible(self)
}

# ---- what metrics.R calls for custom metrics -----------------------------------

#' @noRd
custom_metric_update <- function(m, y_true, y_pred, sample_weight) {
  update <- m$update_state
  if (is.null(sample_weight)) {
    fmls <- if (is.primitive(update)) NULL else names(formals(update))
    if ("sample_weight" %in% fmls || "..." %in% fmls) update(y_true, y_pred, sample_weight = NULL)
    else update(y_true, y_pred)
  } else {
    update(y_true, y_pred, sample_weight = sample_weight)
  }
  invisible(m)
}

# result() as one number for the logs.
#' @noRd
custom_metric_result <- function(m) {
  res <- m$result()
  if (is.list(res) && !is.object(res) && length(res) == 1L) res <- res[[1L]]
  if (is_variable(res)) res <- variable_value(res)
  if (!(is.numeric(res) || is.logical(res)) || length(res) != 1L) {
    abort_msg(sprintf(paste0("result() of metric \"%s\" (%s) must return a single number, an array of ",
                             "one value or a variable holding one; it returned %s."),
                      m$name, class(m)[[1L]], describe_value(res)), class = "multihead_error_argument")
  }
  as.double(res)
}

# Variables (keras3's KerasVariable): a handle on one weight of a layer.
#
# A variable is a list(state = <the owning layer's state environment>, name =
# <the weight's name in that layer>) of class "multihead_variable"; the value
# itself stays where the layer keeps it (state$variables[[name]], a double
# array holding values of the layer's dtype), so get_weights(), set_weights(),
# optimizers and saveRDS() see one copy. `layer$kernel` and what
# `self$add_weight()` returns are variables.
#
# Used in computations a variable is its value: eagerly (op_*(), arithmetic,
# %*%, as.array()) it is the array; while a custom layer's call() is traced
# (or next to a symbolic tensor) it becomes a "variable" node of the graph,
# whose forward reads the current value and whose backward adds the
# gradient to the weight's (run_graph_backward()), so a weight used twice
# (tied embeddings) gets both uses' gradients.

#' @noRd
new_variable <- function(state, name) structure(list(state = state, name = name), class = "multihead_variable")

#' @noRd
variable_state <- function(v) .subset2(v, "state")

#' @noRd
variable_name <- function(v) .subset2(v, "name")

#' @noRd
variable_value <- function(v) {
  value <- .subset2(v, "state")$variables[[.subset2(v, "name")]]
  if (is.null(value)) {
    abort_msg(sprintf("Variable \"%s\" no longer exists in layer \"%s\".", .subset2(v, "name"),
                      .subset2(v, "state")$name))
  }
  value
}

#' @noRd
variable_dtype <- function(v) {
  s <- variable_state(v)
  d <- s$variable_dtypes[[variable_name(v)]]
  if (is.null(d)) d <- s$dtype
  if (is.null(d) || !is_float_dtype(d)) "float32" else d
}

#' @noRd
variable_trainable <- function(v) {
  s <- variable_state(v)
  own <- s$variable_trainable[[variable_name(v)]]
  isTRUE(s$trainable) && !identical(own, FALSE)
}

# A layer state's identifier, made on first use (states saved by earlier
# versions get one when they are first differentiated).
#' @noRd
state_uid <- function(state) {
  u <- state$uid
  if (is.null(u)) {
    u <- next_graph_id()
    state$uid <- u
  }
  u
}

# The key of a weight in gradient accumulators: "<state uid>/<name>".
#' @noRd
var_key <- function(state, name) paste0(state_uid(state), "/", name)

#' @noRd
is_variable <- function(x) inherits(x, "multihead_variable")

# ---- the variable's interface -----------------------------------------------

.variable_fields <- c("shape", "dtype", "trainable", "name", "path", "constraint", "regularizer", "value",
                      "numpy", "assign", "assign_add", "assign_sub", "ndim", "size")

#' @export
`$.multihead_variable` <- function(x, name) {
  s <- variable_state(x)
  nm <- variable_name(x)
  switch(name,
    shape = value_shape(variable_value(x)),
    ndim = length(value_shape(variable_value(x))),
    size = length(variable_value(x)),
    dtype = variable_dtype(x),
    trainable = variable_trainable(x),
    name = nm,
    path = paste0(s$name, "/", nm),
    constraint = s$constraints[[nm]],
    regularizer = s$regularizers[[nm]],
    value = variable_value(x),
    numpy = function() variable_value(x),
    assign = function(value) variable_assign(x, value, "value"),
    assign_add = function(delta) variable_assign(x, variable_value(x) + as_variable_input(delta, "delta"),
                                                 "delta"),
    assign_sub = function(delta) variable_assign(x, variable_value(x) - as_variable_input(delta, "delta"),
                                                 "delta"),
    abort_msg(sprintf("A variable has no property or method `%s`. Available: %s.", name,
                      paste(sort(.variable_fields), collapse = ", ")))
  )
}

#' @export
`$<-.multihead_variable` <- function(x, name, value) {
  if (identical(name, "trainable")) {
    value <- check_flag(value, "trainable")
    s <- variable_state(x)
    flags <- s$variable_trainable
    if (is.null(flags)) flags <- list()
    flags[[variable_name(x)]] <- value
    s$variable_trainable <- flags
    return(x)
  }
  abort_msg(sprintf(paste0("`%s` of a variable cannot be set (only `trainable` can); use $assign() to change ",
                           "its value."), name), class = "multihead_error_readonly")
}

#' @export
`[[.multihead_variable` <- function(x, i, ...) {
  if (is.character(i) && length(i) == 1L) return(`$.multihead_variable`(x, i))
  variable_value(x)[[i, ...]]
}

#' @exportS3Method utils::.DollarNames
.DollarNames.multihead_variable <- function(x, pattern = "") grep(pattern, sort(.variable_fields), value = TRUE)

#' @noRd
as_variable_input <- function(value, arg) {
  if (is_variable(value)) value <- variable_value(value)
  if (is_symbolic(value)) {
    abort_arg(arg, "an array (a variable is assigned concrete values, not a symbolic tensor)",
              describe_value(value))
  }
  value
}

# Assigns new values (same shape; rounded to the variable's dtype; finite).
#' @noRd
variable_assign <- function(x, value, arg = "value") {
  value <- as_variable_input(value, arg)
  s <- variable_state(x)
  nm <- variable_name(x)
  current <- variable_value(x)
  dims <- value_shape(current)
  got <- value_shape(value)
  if (!(is.numeric(value) || is.logical(value)) || is.object(value) ||
      !(identical(got, dims) || length(value) == length(current) && prod(got) == prod(dims))) {
    abort_arg(arg, sprintf("a numeric array of shape %s for variable \"%s/%s\"", fmt_shape(dims), s$name, nm),
              if (is.numeric(value)) sprintf("shape %s", fmt_shape(got)) else describe_value(value))
  }
  if (!cpp_all_finite(as.double(value))) {
    abort_arg(arg, sprintf("finite (variable \"%s/%s\"): it contains NA, NaN or Inf", s$name, nm))
  }
  stored <- store_weight(value, if (is.null(dim(current))) length(current) else dim(current), variable_dtype(x))
  if (is.null(dim(current))) dim(stored) <- NULL
  s$variables[[nm]] <- stored
  layer_weights_changed(s)
  invisible(x)
}

#' @export
as.array.multihead_variable <- function(x, ...) {
  v <- variable_value(x)
  if (is.null(dim(v))) array(v, length(v)) else v
}

#' @export
as.double.multihead_variable <- function(x, ...) as.double(variable_value(x))

#' @export
as.numeric.multihead_variable <- function(x, ...) as.double(variable_value(x))

#' @export
as.vector.multihead_variable <- function(x, mode = "any") as.vector(variable_value(x), mode)

#' @export
dim.multihead_variable <- function(x) {
  d <- dim(variable_value(x))
  if (is.null(d)) length(variable_value(x)) else d
}

#' @export
format.multihead_variable <- function(x, ...) {
  sprintf("<Variable path=%s, shape=%s, dtype=%s>", x$path, fmt_shape(x$shape), x$dtype)
}

#' @export
print.multihead_variable <- function(x, ...) {
  cat(format(x), "\n", sep = "")
  print(variable_value(x))
  invisible(x)
}

#' @exportS3Method utils::str
str.multihead_variable <- function(object, ...) cat(" ", format(object), "\n", sep = "")

# ---- variables in graphs ---------------------------------------------------

# The symbolic tensor of a variable: inside a trace, one "variable" node per
# variable and trace; outside, a fresh node.
#' @noRd
variable_tensor <- function(v) {
  s <- variable_state(v)
  nm <- variable_name(v)
  frame <- trace_frame()
  key <- NULL
  if (!is.null(frame)) {
    key <- var_key(s, nm)
    t <- frame$variables[[key]]
    if (!is.null(t)) return(t)
  }
  node <- new_graph_node("variable", v, output_shapes = list(value_shape(variable_value(v))),
                         output_dtypes = list(variable_dtype(v)))
  t <- new_symbolic_tensor(node, 1L, name = paste0(s$name, "/", nm))
  if (!is.null(frame)) assign(key, t, envir = frame$variables)
  t
}

# ---- the trace context --------------------------------------------------------

# While a custom layer's call() runs on symbolic tensors, a trace frame is
# active: variables used in ops become graph nodes (once per trace).
.trace_state <- new.env(parent = emptyenv())
.trace_state$stack <- list()

#' @noRd
trace_active <- function() length(.trace_state$stack) > 0L

#' @noRd
trace_frame <- function() {
  n <- length(.trace_state$stack)
  if (n) .trace_state$stack[[n]] else NULL
}

# Runs `expr` with no trace active (a layer's build() or initialize() run
# while an enclosing call() is traced computes on arrays).
#' @noRd
without_trace <- function(expr) {
  saved <- .trace_state$stack
  .trace_state$stack <- list()
  on.exit(.trace_state$stack <- saved, add = TRUE)
  expr
}

# Runs `expr` with a new trace frame.
#' @noRd
with_trace_frame <- function(expr) {
  frame <- new.env(parent = emptyenv())
  frame$variables <- new.env(parent = emptyenv())
  n <- length(.trace_state$stack)
  .trace_state$stack[[n + 1L]] <- frame
  on.exit(.trace_state$stack <- .trace_state$stack[seq_len(n)], add = TRUE)
  expr
}

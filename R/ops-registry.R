# The op registry: what every op_* function, the arithmetic operators on
# symbolic tensors and variables, and the graph runner share.
#
# An op is registered once with register_op() and then used two ways:
#   * eagerly, on R arrays: op_call() checks the operands, asks the op's
#     infer() for the result's shape and dtype (which validates them) and
#     runs its forward(); the result is an R array.
#   * symbolically: when an operand is a symbolic tensor, or a variable
#     while a custom layer's call() is being traced, op_call() records an op
#     node (kind "op") whose outputs are symbolic tensors; the graph runner
#     (model-graph.R) later runs forward() on arrays and backward() for the
#     gradients.
#
# Operands and params. An op takes `operands`, a named list of tensors (the
# names are the op_* function's argument names, used in messages), and
# `params`, a list of plain R constants (axes, shapes, flags). An operand is
# a symbolic tensor, a variable, an R array or number, or NULL (an optional
# operand left out). In a recorded node the symbolic operands are the node's
# inputs, the others are kept as constants.
#
# Values. R arrays carry the data: doubles for float32/float64, integers or
# whole doubles for int32/int64, logicals for bool. Rank 0 is a plain vector
# of length 1, rank 1 a vector or a 1-d array, higher ranks arrays (dims in
# Keras's axis order, batch first). Eager results are not rounded to float32
# (R's doubles are the user's data); in a graph, float32 outputs are rounded
# by the runner so a model computes what a float32 Keras model computes.
#
# The definition (a list):
#   name        the op's key in the registry (e.g. "add")
#   class_name  Keras's operation class (e.g. "Add"), shown by summary()
#   prefix      default node name prefix (snake case of class_name)
#   fun         the user-facing function named in messages ("op_add")
#   infer(specs, params)
#               specs: list aligned with operands of list(shape =, dtype =,
#               weak =) (NULL for an absent operand; weak = TRUE for R
#               constants in a symbolic call, which do not promote dtypes).
#               Returns op_spec(shape, dtype), or a list of them for an op
#               with several outputs. Errors name the op, the arguments and
#               their shapes (abort_op()).
#   forward(values, params)
#               values: list aligned with operands (R values, NULL allowed).
#               An eager call sets attr(params, "out_shape"), infer()'s
#               shape, when forward() may use it (graph runs do not).
#               Returns list(output = <value, or list of values>, cache =).
#   backward(grad, cache, params)
#               grad: the output's gradient (a list aligned with the outputs
#               for several outputs; zeros where none flowed). Returns a list
#               aligned with operands: each operand's gradient or NULL. NULL
#               for the whole function: the op has no gradient (an error if a
#               float gradient must pass through it).
#   mask        "none" or "elementwise" (the output carries the AND of the
#               inputs' implicit masks, as the arithmetic operators do)

.op_defs <- new.env(parent = emptyenv())

#' @noRd
register_op <- function(name, class_name, infer, forward, backward = NULL, mask = "none",
                        prefix = keras_snake_case(class_name), fun = paste0("op_", name)) {
  stopifnot(is.function(infer), is.function(forward), is.null(backward) || is.function(backward),
            mask %in% c("none", "elementwise"))
  assign(name, list(name = name, class_name = class_name, prefix = prefix, fun = fun, infer = infer,
                    forward = forward, backward = backward, mask = mask), envir = .op_defs)
  invisible(name)
}

# Registers every op family: each ops file defines register_<family>_ops(),
# called here (from .onLoad()) in name order.
#' @noRd
register_all_ops <- function() {
  ns <- environment(register_all_ops)
  for (f in setdiff(sort(ls(ns, pattern = "^register_.+_ops$")), "register_all_ops")) get(f, envir = ns)()
}

#' @noRd
op_def <- function(name) {
  def <- .op_defs[[name]]
  if (is.null(def)) abort_msg(sprintf("Unknown operation \"%s\".", name))
  def
}

# The result description infer() returns.
#' @noRd
op_spec <- function(shape, dtype) {
  out <- list(shape = as.integer(shape), dtype = dtype)
  class(out) <- "op_spec"
  out
}

# ---- dtypes ----------------------------------------------------------------

#' @noRd
is_float_dtype <- function(dtype) dtype %in% c("float32", "float64")

#' @noRd
is_int_dtype <- function(dtype) dtype %in% c("int32", "int64")

# The dtype of an R value taken as a tensor: doubles are Keras's floatx
# (float32), integers int32, logicals bool.
#' @noRd
r_value_dtype <- function(x) {
  if (is.logical(x)) "bool" else if (is.integer(x)) "int32" else "float32"
}

# The dtype of an arithmetic result (NumPy/Keras promotion): float64 >
# float32 > int64 > int32 > bool over the tensors; weak constants (R values
# in a symbolic call) count only when all operands are constants, except
# that a weak float constant with integer tensors gives float32 (x + 0.5).
# One pass: this runs in every eager op.
.dtype_order <- c("float64", "float32", "int64", "int32", "bool")

#' @noRd
result_dtype <- function(specs) {
  strong <- 6L; any_rank <- 6L; weak_float <- FALSE; has_strong <- FALSE
  for (s in specs) {
    if (is.null(s)) next
    r <- match(s$dtype, .dtype_order)
    if (r < any_rank) any_rank <- r
    if (isTRUE(s$weak)) {
      if (r <= 2L) weak_float <- TRUE
    } else {
      has_strong <- TRUE
      if (r < strong) strong <- r
    }
  }
  if (!has_strong) return(.dtype_order[any_rank])
  if (strong > 2L && weak_float) return("float32")
  .dtype_order[strong]
}

# The float dtype of a result that is always floating (divide, exp, mean).
#' @noRd
float_result_dtype <- function(specs) {
  d <- result_dtype(specs)
  if (is_float_dtype(d)) d else "float32"
}

# ---- operands ----------------------------------------------------------------

# The shape of an R value: integer() for a single number, its length for a
# plain vector, else its dims.
#' @noRd
value_shape <- function(x) {
  d <- dim(x)
  if (!is.null(d)) return(as.integer(d))
  if (length(x) == 1L) integer() else length(x)
}

# The spec of a constant operand, checked: numeric or logical, no NA.
#' @noRd
constant_spec <- function(x, arg, op, weak = FALSE) {
  if (is.null(x)) return(NULL)
  if (!(is.numeric(x) || is.logical(x)) || (is.object(x) && !is.array(x) && !is.numeric(x))) {
    abort_arg(arg, sprintf("a tensor (a numeric or logical array, a symbolic tensor or a variable) in %s()",
                           op), describe_value(x))
  }
  if (anyNA(x)) {
    if (is.double(x) && !any(is.na(x) & !is.nan(x))) {
      # NaN is a value (as in Keras); R's NA is a missing value.
    } else {
      abort_arg(arg, sprintf("free of NA (missing values) in %s()", op), "NA values")
    }
  }
  list(shape = value_shape(x), dtype = r_value_dtype(x), weak = weak)
}

#' @noRd
symbolic_spec <- function(t) list(shape = t$shape, dtype = t$dtype, weak = FALSE)

# TRUE when a call with these operands must be recorded: while a custom
# layer's call() is traced every op is (constants become graph constants, so
# keras-style indexing, variables and random draws work on them and sub-layers
# called on them are recorded); otherwise when an operand is a symbolic tensor.
#' @noRd
operands_symbolic <- function(operands) {
  if (length(.trace_state$stack)) return(TRUE)
  for (x in operands) {
    if (is.object(x) && is_symbolic(x)) return(TRUE)
  }
  FALSE
}

# A graph constant holding an array (a node without inputs); `dtype`
# overrides the dtype read off the R value (int64 values are whole doubles).
#' @noRd
constant_tensor <- function(x, arg = "x", dtype = NULL) {
  if (is_symbolic(x)) return(x)
  if (is_variable(x)) return(variable_tensor(x))
  op_record(op_def("constant"), stats::setNames(list(x), arg), if (is.null(dtype)) list() else list(dtype = dtype))
}

# A value a creation op made: inside a traced call() a graph constant (so
# keras-style indexing and ops on it are recorded), else the array itself.
#' @noRd
traced_constant <- function(x, dtype = NULL) if (length(.trace_state$stack)) constant_tensor(x, dtype = dtype) else x

#' @noRd
register_constant_ops <- function() {
  register_op("constant", "Constant",
              infer = function(specs, params) {
                op_spec(specs[[1L]]$shape, if (is.null(params$dtype)) specs[[1L]]$dtype else params$dtype)
              },
              forward = function(values, params) list(output = values[[1L]], cache = NULL),
              fun = "constant")
}

# ---- calling an op -----------------------------------------------------------

# Runs op `name` on `operands` (named list) with `params`: eagerly on arrays,
# or recorded when an operand is symbolic (see the header).
#' @noRd
op_call <- function(name, operands, params = list()) {
  def <- .op_defs[[name]]
  if (is.null(def)) abort_msg(sprintf("Unknown operation \"%s\".", name), class = "multihead_error_unsupported")
  if (operands_symbolic(operands)) return(op_record(def, operands, params))
  nms <- names(operands)
  specs <- vector("list", length(operands))
  names(specs) <- nms
  for (i in seq_along(operands)) {
    x <- operands[[i]]
    if (is.object(x) && inherits(x, "multihead_variable")) {
      x <- variable_value(x)
      operands[i] <- list(x)
    }
    if (!is.null(x)) specs[[i]] <- constant_spec(x, nms[i], def$fun)
  }
  spec <- def$infer(specs, params)
  if (inherits(spec, "op_spec")) attr(params, "out_shape") <- spec$shape  # spares forward() the shape work
  def$forward(operands, params)$output
}

# Records an op node; returns its output tensor(s).
#' @noRd
op_record <- function(def, operands, params) {
  n <- length(operands)
  nms <- names(operands)
  sym <- logical(n)
  specs <- vector("list", n)
  names(specs) <- nms
  for (i in seq_len(n)) {
    x <- operands[[i]]
    if (inherits(x, "multihead_variable")) {
      x <- variable_tensor(x)
      operands[[i]] <- x
    }
    if (is_symbolic(x)) {
      sym[i] <- TRUE
      specs[[i]] <- symbolic_spec(x)
    } else if (!is.null(x)) {
      if (contains_symbolic(x)) {
        abort_arg(nms[i], sprintf("a tensor in %s(), not a list holding symbolic tensors", def$fun),
                  describe_value(x))
      }
      specs[[i]] <- constant_spec(x, nms[i], def$fun, weak = TRUE)
    }
  }
  out <- def$infer(specs, params)
  several <- !inherits(out, "op_spec")
  outs <- if (several) out else list(out)
  constants <- operands
  constants[sym] <- list(NULL)
  callee <- structure(list(class_name = def$class_name, name = unique_layer_name(def$prefix), op = def$name),
                      class = "multihead_op")
  node <- new_graph_node("op", callee, inputs = unname(operands[sym]), single = FALSE,
                         args = list(op = def$name, params = params, symbolic = sym, constants = constants,
                                     operand_names = nms),
                         output_shapes = lapply(outs, function(o) o$shape),
                         output_dtypes = lapply(outs, function(o) o$dtype))
  if (several) {
    return(lapply(seq_along(outs), function(i) new_symbolic_tensor(node, i, name = paste0(callee$name, "/", i))))
  }
  new_symbolic_tensor(node, 1L)
}

# ---- op nodes in the graph runner ------------------------------------------

# The old arithmetic nodes (saved by earlier versions) name their op by its
# operator.
.op_aliases <- c("+" = "add", "-" = "subtract", "*" = "multiply", "/" = "divide")

#' @noRd
node_op_def <- function(node) {
  name <- node$args$op
  alias <- .op_aliases[name]
  op_def(if (is.na(alias)) name else unname(alias))
}

# Forward of an op node: list(output, cache, mask) as the layer protocol.
#' @noRd
op_node_forward <- function(node, in_vals, in_masks) {
  a <- node$args
  def <- node_op_def(node)
  vals <- a$constants
  vals[a$symbolic] <- in_vals
  params <- if (is.null(a$params)) list() else a$params
  res <- def$forward(vals, params)
  dtypes <- node$output_dtypes
  several <- length(node$output_shapes) > 1L || !is.null(node$output_names)
  out <- if (several) res$output else list(res$output)
  for (i in seq_along(out)) out[[i]] <- as_dtype_value(out[[i]], dtypes[[i]])
  mask <- if (identical(def$mask, "elementwise")) elementwise_output_mask(in_masks) else NULL
  list(output = if (several) out else out[[1L]], cache = res$cache, mask = mask)
}

# A value as a graph tensor of `dtype`: float32 rounded, ints whole, bools
# logical.
#' @noRd
as_dtype_value <- function(x, dtype) {
  if (is.null(x)) return(x)
  if (identical(dtype, "float32")) {
    if (!is.double(x)) storage.mode(x) <- "double"
    return(round_float32(x))
  }
  if (identical(dtype, "float64")) {
    if (!is.double(x)) storage.mode(x) <- "double"
    return(x)
  }
  if (identical(dtype, "bool")) {
    if (!is.logical(x)) storage.mode(x) <- "logical"
    return(x)
  }
  x
}

# Backward of an op node: list(inputs = <list aligned with node$inputs>).
#' @noRd
op_node_backward <- function(node, cache, grad_output) {
  a <- node$args
  def <- node_op_def(node)
  if (is.null(def$backward)) {
    abort_msg(sprintf(paste0("Operation \"%s\" (%s) has no gradient, but the loss depends on its float ",
                             "output. Compute it outside the differentiated path (e.g. on constants), or ",
                             "use a differentiable op."), node$callee$name, def$class_name),
              class = "multihead_error_no_gradient")
  }
  params <- if (is.null(a$params)) list() else a$params
  grads <- def$backward(grad_output, cache, params)
  list(inputs = grads[a$symbolic])
}

# The output shapes of an op node for new input shapes (graph_output_shapes()).
#' @noRd
op_node_output_shapes <- function(node, in_shapes) {
  a <- node$args
  def <- node_op_def(node)
  nms <- if (is.null(a$operand_names)) paste0("x", seq_along(a$constants)) else a$operand_names
  specs <- vector("list", length(a$constants))
  names(specs) <- nms
  k <- 0L
  for (i in seq_along(a$constants)) {
    if (isTRUE(a$symbolic[i])) {
      k <- k + 1L
      specs[[i]] <- list(shape = in_shapes[[k]], dtype = node$inputs[[k]]$dtype, weak = FALSE)
    } else if (!is.null(a$constants[[i]])) {
      specs[[i]] <- constant_spec(a$constants[[i]], nms[i], def$fun, weak = TRUE)
    }
  }
  out <- def$infer(specs, if (is.null(a$params)) list() else a$params)
  if (inherits(out, "op_spec")) list(out$shape) else lapply(out, function(o) o$shape)
}

# ---- shared checks ----------------------------------------------------------

# An error about an op's operands: names the op, the arguments and their
# shapes.
#' @noRd
abort_op <- function(op, problem, specs = NULL, args = names(specs)) {
  where <- ""
  if (length(specs)) {
    parts <- character()
    for (i in seq_along(specs)) {
      s <- specs[[i]]
      if (is.null(s)) next
      parts <- c(parts, sprintf("`%s` %s %s", args[i], fmt_shape(s$shape), s$dtype))
    }
    if (length(parts)) where <- paste0(" (", paste(parts, collapse = ", "), ")")
  }
  abort_msg(sprintf("%s(): %s%s.", op, problem, where), class = c("multihead_error_shape",
                                                                    "multihead_error_argument"))
}

# keras3's axis convention: 1-based, negative counts from the end (-1 is the
# last axis). Returns 0-based non-negative axes for a tensor of rank `rank`;
# errors name the argument.
#' @noRd
normalize_axis <- function(axis, rank, arg = "axis", op = "op", allow_new = 0L) {
  n <- rank + allow_new
  if (length(axis) == 1L && is.numeric(axis) && !is.object(axis) && !is.na(axis) &&
      axis == as.integer(axis) && axis != 0 && axis <= n && axis >= -n) {  # one valid axis: the common case
    return(if (axis > 0) as.integer(axis) - 1L else as.integer(n + axis))
  }
  if (!is.numeric(axis) || length(axis) == 0L || anyNA(axis) || is.object(axis) || any(!is.finite(axis)) ||
      any(abs(axis) > .Machine$integer.max) || any(axis != round(axis))) {
    abort_arg(arg, sprintf("whole numbers (1-based axes; -1 is the last) in %s()", op), describe_value(axis))
  }
  axis <- as.integer(axis)
  if (any(axis == 0L) || any(axis > n) || any(axis < -n)) {
    abort_arg(arg, sprintf("axes between 1 and %d, or -%d to -1, in %s() (1-based; the tensor has rank %d)",
                           n, n, op, rank), paste(axis, collapse = ", "))
  }
  out <- axis - 1L
  neg <- axis < 0L
  out[neg] <- n + axis[neg]
  if (anyDuplicated(out)) abort_arg(arg, sprintf("distinct axes in %s()", op), paste(axis, collapse = ", "))
  out
}

#' @noRd
`%||%` <- function(a, b) if (is.null(a)) b else a

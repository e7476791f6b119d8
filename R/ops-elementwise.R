# Elementwise ops with NumPy/Keras broadcasting, the machinery the other
# elementwise ops (ops-math.R) are registered with, and the R operators on
# symbolic tensors and variables (Ops / Math groups, %*%, t()).
#
# Layout. Values are R arrays whose dims are Keras's axes in order, stored
# column-major: the FIRST axis varies fastest. Broadcasting aligns shapes on
# the last axis, so a bias of shape (E) against (B, T, E) is repeated "each"
# B*T times; a (B, T, 1) factor against (B, T, E) is repeated E "times".
# broadcast_value() takes those two patterns without indexing and falls back
# to index vectors otherwise; reduce_to_shape() is its adjoint (the sum over
# the broadcast axes), used by every backward.

# Expands `x` (shape `from`) to shape `to` (from broadcasts to to).
#' @noRd
broadcast_value <- function(x, from, to) {
  n_to <- prod(to)
  if (length(x) == n_to) {
    if (length(to)) dim(x) <- to else dim(x) <- NULL
    return(x)
  }
  if (length(x) == 1L) {
    out <- rep.int(as.vector(x), n_to)
    if (length(to)) dim(out) <- to
    return(out)
  }
  r <- length(to)
  lf <- length(from)
  if (lf < r && identical(as.integer(from), to[(r - lf + 1L):r])) {  # a trailing block, repeated
    out <- rep(as.vector(x), each = prod(to[seq_len(r - lf)]))
    dim(out) <- to
    return(out)
  }
  full <- c(rep(1L, r - lf), from)
  stretched <- full != to
  k <- which(!stretched)
  if (length(k) && all(stretched[seq_len(min(k) - 1L)]) && !any(stretched[min(k):r])) {
    out <- rep(as.vector(x), each = prod(to[seq_len(min(k) - 1L)]))   # leading axes stretched
  } else if (length(k) && !any(stretched[seq_len(max(k))]) && all(stretched[-seq_len(max(k))])) {
    out <- rep.int(as.vector(x), prod(to[-seq_len(max(k))]))            # trailing axes stretched
  } else {
    out <- broadcast_array(array(x, full), full, to)
  }
  dim(out) <- to
  out
}

# Sums `g` (shape `to`) over the axes along which `from` was broadcast, the
# adjoint of broadcast_value(); the result has shape `from`.
#' @noRd
reduce_to_shape <- function(g, from) {
  to <- value_shape(g)
  if (length(from) == length(to) && all(from == to)) return(g)
  if (length(from) == 0L || prod(from) == 1) {
    out <- sum(g)
    return(if (length(from)) array(out, from) else out)
  }
  r <- length(to)
  full <- c(rep(1L, r - length(from)), from)
  stretched <- full != to
  k <- which(!stretched)
  if (all(stretched[seq_len(min(k) - 1L)]) && !any(stretched[min(k):r])) {
    lead <- prod(to[seq_len(min(k) - 1L)])
    out <- colSums(matrix(g, nrow = lead))
  } else if (!any(stretched[seq_len(max(k))]) && all(stretched[-seq_len(max(k))])) {
    out <- rowSums(matrix(g, ncol = prod(to[-seq_len(max(k))])))
  } else {
    keep <- which(!(full == 1L & to != 1L))
    out <- apply(array(g, to), keep, sum)
  }
  if (length(from) > 1L || !is.null(dim(g))) array(out, from) else out
}

# ---- registering elementwise ops ---------------------------------------------

# A binary op out = f(x1, x2) with broadcasting.
#   fun(x, y)            the computation on arrays of the output's shape
#   grad(g, x, y, out)   -> list(dx, dy) of the output's shape, or NULL for
#                        an op without a gradient (comparisons)
#   dtype                "promote" (result_dtype), "float" (always
#                        floating), "bool", or a function(specs)
#' @noRd
register_binary_op <- function(name, class_name, fun, grad = NULL, dtype = "promote", args = c("x1", "x2"),
                               mask = "elementwise") {
  force(fun); force(grad); force(dtype); force(args)
  register_op(
    name, class_name,
    infer = function(specs, params) {
      a <- specs[[1L]]; b <- specs[[2L]]
      nms <- if (is.null(names(specs))) args else names(specs)
      if (is.null(a) || is.null(b)) {
        abort_arg(nms[if (is.null(a)) 1L else 2L], sprintf("supplied: a tensor in op_%s()", name))
      }
      shape <- if (identical(a$shape, b$shape) || !length(b$shape)) a$shape
        else if (!length(a$shape)) b$shape else broadcast_shapes_or_null(a$shape, b$shape)
      if (is.null(shape)) {
        abort_op(paste0("op_", name), "the shapes of its operands do not broadcast together", specs, nms)
      }
      op_spec(shape, elementwise_dtype(dtype, specs))
    },
    forward = function(values, params) {
      x <- values[[1L]]; y <- values[[2L]]
      sx <- value_shape(x); sy <- value_shape(y)
      if (identical(sx, sy)) {
        out <- fun(x, y)
        if (length(sx)) dim(out) <- sx
        return(list(output = out, cache = list(x = x, y = y, out = out, sx = sx, sy = sy)))
      }
      to <- attr(params, "out_shape")
      if (is.null(to)) to <- if (!length(sy)) sx else if (!length(sx)) sy else broadcast_shapes(sx, sy)
      xb <- broadcast_value(x, sx, to)
      yb <- broadcast_value(y, sy, to)
      out <- fun(xb, yb)
      if (length(to)) dim(out) <- to
      list(output = out, cache = list(x = xb, y = yb, out = out, sx = sx, sy = sy))
    },
    backward = if (!is.null(grad)) function(grad_output, cache, params) {
      gr <- grad(grad_output, cache$x, cache$y, cache$out)
      list(if (!is.null(gr[[1L]])) reduce_to_shape(gr[[1L]], cache$sx),
           if (!is.null(gr[[2L]])) reduce_to_shape(gr[[2L]], cache$sy))
    },
    mask = mask)
}

# A unary op out = f(x).
#   grad(g, x, out) -> dx, or NULL (no gradient)
#   dtype           "same", "float" (floating result: ints become float32),
#                   "bool", or a function(specs)
#' @noRd
register_unary_op <- function(name, class_name, fun, grad = NULL, dtype = "same", arg = "x", params_check = NULL) {
  force(fun); force(grad); force(dtype); force(arg)
  register_op(
    name, class_name,
    infer = function(specs, params) {
      a <- specs[[1L]]
      if (is.null(a)) abort_arg(arg, sprintf("supplied: a tensor in op_%s()", name))
      if (!is.null(params_check)) params_check(specs, params)
      d <- if (is.function(dtype)) dtype(specs) else switch(dtype, same = a$dtype,
        float = if (is_float_dtype(a$dtype)) a$dtype else "float32", bool = "bool")
      op_spec(a$shape, d)
    },
    forward = function(values, params) {
      x <- values[[1L]]
      out <- fun(x, params)
      d <- dim(x)
      if (!is.null(d)) dim(out) <- d
      list(output = out, cache = list(x = x, out = out))
    },
    backward = if (!is.null(grad)) function(grad_output, cache, params) {
      list(grad(grad_output, cache$x, cache$out, params))
    },
    mask = "elementwise")
}

#' @noRd
elementwise_dtype <- function(rule, specs) {
  if (is.function(rule)) return(rule(specs))
  if (length(specs) == 2L && identical(specs[[1L]]$dtype, specs[[2L]]$dtype)) {  # the common case, fast
    d <- specs[[1L]]$dtype
    return(switch(rule, promote = d, float = if (is_float_dtype(d)) d else "float32", bool = "bool"))
  }
  switch(rule, promote = result_dtype(specs), float = float_result_dtype(specs), bool = "bool")
}

# ---- the four arithmetic ops ---------------------------------------------------

#' @noRd
register_arithmetic_ops <- function() {
  register_binary_op("add", "Add", function(x, y) x + y, function(g, x, y, out) list(g, g))
  register_binary_op("subtract", "Subtract", function(x, y) x - y, function(g, x, y, out) list(g, -g))
  register_binary_op("multiply", "Multiply", function(x, y) x * y, function(g, x, y, out) list(g * y, g * x))
  register_binary_op("divide", "Divide", function(x, y) as.double(x) / y,
                     function(g, x, y, out) list(g / y, -g * out / y), dtype = "float")
  register_unary_op("negative", "Negative", function(x, params) -x, function(g, x, out, params) -g)
}

#' Elementwise arithmetic
#'
#' `op_add()`, `op_subtract()`, `op_multiply()`, `op_divide()` and
#' `op_negative()` as in keras3: on R arrays they compute at once and
#' return an array; on symbolic tensors (inside [keras_model()] or a custom
#' layer's `call()`, see [Layer()]) they record an operation that models
#' run and differentiate. Shapes broadcast as in NumPy (aligned on the last
#' axis; sizes 1 stretch). The R operators `+`, `-`, `*`, `/` do the same on
#' symbolic tensors and variables.
#'
#' @param x1,x2 Tensors: arrays, numbers, symbolic tensors or variables.
#' @param x A tensor.
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' op_add(array(1:6, c(2, 3)), c(10, 20, 30))   # broadcast on the last axis
#' op_divide(1, 4)
op_add <- function(x1, x2) op_call("add", list(x1 = x1, x2 = x2))

#' @rdname op_add
#' @export
op_subtract <- function(x1, x2) op_call("subtract", list(x1 = x1, x2 = x2))

#' @rdname op_add
#' @export
op_multiply <- function(x1, x2) op_call("multiply", list(x1 = x1, x2 = x2))

#' @rdname op_add
#' @export
op_divide <- function(x1, x2) op_call("divide", list(x1 = x1, x2 = x2))

#' @rdname op_add
#' @export
op_negative <- function(x) op_call("negative", list(x = x))

# ---- R operators on symbolic tensors and variables ------------------------------

# The op behind each R operator (unary minus and plus are handled first).
.ops_generics <- c("+" = "add", "-" = "subtract", "*" = "multiply", "/" = "divide", "^" = "power",
                   "%%" = "mod", "%/%" = "floor_divide", "==" = "equal", "!=" = "not_equal",
                   "<" = "less", "<=" = "less_equal", ">" = "greater", ">=" = "greater_equal",
                   "&" = "logical_and", "|" = "logical_or")

#' Operators on symbolic tensors and variables
#'
#' The arithmetic (`+ - * / ^ %% %/%`), comparison (`== != < <= > >=`) and
#' logical (`& | !`) operators, the math functions (`exp()`, `log()`,
#' `sqrt()`, `abs()`, `sin()`, `cos()`, `tanh()`, ...), `%*%` and `t()`
#' work on symbolic tensors and on variables as the corresponding `op_*()`
#' functions ([op_add()], [op_matmul()], ...): between a symbolic tensor and
#' an array they record an operation; on a variable outside a traced
#' `call()` they compute with its value.
#'
#' @param e1,e2,x Symbolic tensors, variables, arrays or numbers.
#' @returns A symbolic tensor, or an array.
#' @name tensor-operators
#' @examples
#' x <- keras_input(shape = c(4, 8))
#' y <- layer_multi_head_attention(x, num_heads = 2, key_dim = 4)
#' x + y          # a residual connection
#' (x * 2)$shape
NULL

#' @rdname tensor-operators
#' @export
Ops.multihead_tensor <- function(e1, e2) {
  g <- .Generic
  if (missing(e2)) {
    if (g == "+") return(e1)
    if (g == "-") return(op_call("negative", list(x = e1)))
    if (g == "!") return(op_call("logical_not", list(x = e1)))
  }
  name <- .ops_generics[g]
  if (is.na(name)) {
    abort_msg(sprintf("`%s` is not supported on tensors.", g), class = "multihead_error_unsupported")
  }
  op_call(unname(name), list(e1 = e1, e2 = e2))
}

#' @rdname tensor-operators
#' @export
Ops.multihead_variable <- Ops.multihead_tensor

# The op behind each function of R's Math group.
.math_generics <- c(abs = "abs", sign = "sign", sqrt = "sqrt", floor = "floor", ceiling = "ceil",
                    round = "round", exp = "exp", log = "log", expm1 = "expm1", log1p = "log1p",
                    cos = "cos", sin = "sin", tan = "tan", tanh = "tanh", cosh = "cosh", sinh = "sinh",
                    acos = "arccos", asin = "arcsin", atan = "arctan", cumsum = "cumsum", cumprod = "cumprod",
                    log2 = "log2", log10 = "log10", trunc = "trunc")

#' @rdname tensor-operators
#' @param ... Further arguments of the Math function (e.g. `base` of `log()`).
#' @export
Math.multihead_tensor <- function(x, ...) {
  g <- .Generic
  name <- .math_generics[g]
  if (is.na(name) || is.null(.op_defs[[unname(name)]])) {
    abort_msg(sprintf("`%s()` is not supported on tensors.", g), class = "multihead_error_unsupported")
  }
  if (g == "round" && ...length()) return(op_round(x, decimals = ..1))
  if (g == "log" && ...length()) {
    base <- list(...)[[1L]]
    return(op_call("log", list(x = x)) / log(base))
  }
  op_call(unname(name), list(x = x))
}

#' @rdname tensor-operators
#' @export
Math.multihead_variable <- Math.multihead_tensor

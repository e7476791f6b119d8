# Elementwise math, activation, comparison and logical ops (keras3's
# op_power() ... op_where()), registered with the machinery of
# ops-elementwise.R: register_unary_op() / register_binary_op() for the
# one- and two-operand ops, and two three-operand ops (clip, where)
# registered here with register_op() the same way (broadcasting in
# forward(), reduce_to_shape() in backward()). The R operators and Math
# functions on symbolic tensors and variables (`x^2`, `x > 0`, `!m`,
# `exp(x)`, ...) reach these ops through `.ops_generics` / `.math_generics`.
#
# Numerics and dtypes follow Keras 3 (its TensorFlow backend, the one whose
# gradients Keras users train with):
#   * exp, log, sqrt, trig, floor, ceil ... of int/bool tensors give float32
#     (Keras's result_type(x, float)); float64 stays float64.
#   * abs, sign, round, trunc keep the dtype (identity on bool); square,
#     clip, mod, floor_divide, power of bools compute in int32.
#   * the activations (sigmoid, gelu, silu, softplus, softsign, elu, selu,
#     leaky_relu, erf, rsqrt) give float32 for int/bool inputs (Keras's
#     symbolic spec says x's dtype, but its backends cannot compute them on
#     integers; an integer tensor holding fractions would be wrong); relu
#     and relu6 keep integer dtypes (bool -> int32).
#   * comparisons, logical ops, isnan/isfinite/isinf give bool and have no
#     gradient. Logical ops take any dtype as "non-zero" (NaN is TRUE, as a
#     cast to bool in Keras); comparisons with NaN are FALSE (`!=`: TRUE).
#   * outside a function's domain (sqrt(-1), log(-1), sin(Inf)) the result
#     is NaN without R's "NaNs produced" warning, as in Keras.
#   * integer arithmetic never wraps or gives NA silently: an int32 result
#     beyond +/-2147483647 (square, power), an integer division by zero
#     (mod, floor_divide) or an integer raised to a negative integer power
#     is an error.
#
# Gradients, where the function has no derivative, are TensorFlow's:
#   * relu at 0: 0; relu6 at 0 and 6: 0; leaky_relu at 0: negative_slope;
#     elu at 0: alpha; selu at 0: scale; abs at 0: 0 (sign(0)).
#   * maximum / minimum on ties: the whole gradient goes to x1 (TF selects
#     x1 where x1 >= x2, resp. x1 <= x2).
#   * clip at a bound (x == x_min or x == x_max): the gradient goes to x;
#     x_min / x_max get it where x is strictly beyond them.
#   * power: d/dx2 uses log(x1) where x1 > 0 and 0 elsewhere.
#   * floor, ceil, round, trunc, sign, floor_divide: no gradient flows
#     (TensorFlow's None, which tape.gradient treats as zero; JAX's zeros
#     are the same numbers). A loss such as x - floor(x) still differentiates
#     through its other terms; the backward returns NULL for these operands.
#   * where: x1 gets the gradient where the condition holds, x2 elsewhere;
#     the condition gets none.

# ---- helpers ---------------------------------------------------------------

# R storage holding an integer dtype (int32/int64) or bool: the op follows
# integer semantics.
#' @noRd
math_int_storage <- function(x) is.integer(x) || is.logical(x)

# A logical mask with NA (from NaN) as FALSE.
#' @noRd
math_clean_mask <- function(m) {
  if (anyNA(m)) m[is.na(m)] <- FALSE
  m
}

# The gradient `g` kept where `m` holds and 0 elsewhere (TensorFlow's
# select, not a product: an infinite gradient where m is FALSE gives 0).
#' @noRd
math_select_grad <- function(g, m) {
  g[!m] <- 0
  g
}

# A value cast to bool as Keras does: non-zero (NaN included) is TRUE.
#' @noRd
math_as_bool <- function(x) {
  if (is.logical(x)) return(x)
  b <- x != 0
  if (anyNA(b)) b[is.na(b)] <- TRUE
  b
}

# An integer-valued double result stored as an R integer (int32); an error
# when it does not fit rather than wrapping around or giving NA.
#' @noRd
math_int32_result <- function(out, fun) {
  if (length(out) && any(abs(out) > .Machine$integer.max, na.rm = TRUE)) {
    abort_msg(sprintf(paste0("%s(): the result overflows int32 (a value beyond +/-2147483647). Use float ",
                             "operands for results this large."), fun), class = "multihead_error_overflow")
  }
  storage.mode(out) <- "integer"
  out
}

# f(x) without R's "NaNs produced" warning: Keras returns NaN quietly
# outside a function's domain (sqrt(-1), log(-1), sin(Inf)). The warning is
# muffled only when `outside` (x's values outside the domain) has a TRUE.
#' @noRd
math_quiet <- function(f, x, outside) {
  if (any(outside, na.rm = TRUE)) suppressWarnings(f(x)) else f(x)
}

#' @noRd
math_abort_missing <- function(arg, fun) abort_arg(arg, sprintf("supplied: a tensor in %s()", fun))

# Integer division by zero: an error, as in TensorFlow (R would give NA).
#' @noRd
math_check_divisor <- function(y, fun) {
  if (any(y == 0L)) {
    abort_msg(sprintf("%s(): integer division by zero (`x2` has zeros). Use float operands to get Inf/NaN.", fun),
              class = c("multihead_error_argument"))
  }
}

# Broadcast shape of two shapes, with the common cases (equal shapes, a
# scalar) first.
#' @noRd
math_broadcast <- function(a, b) {
  if (identical(a, b) || length(b) == 0L) return(a)
  if (length(a) == 0L) return(b)
  broadcast_shapes(a, b)
}

# `x` with the R storage able to hold the elementwise choice between x and
# y (double > integer > logical).
#' @noRd
math_promote_storage <- function(x, y) {
  if (is.double(x) || is.logical(y)) return(x)
  if (is.double(y)) {
    storage.mode(x) <- "double"
  } else if (is.logical(x)) {
    storage.mode(x) <- "integer"
  }
  x
}

# Elementwise max / min of two vectors of one length, propagating NaN (as
# NumPy and pmax()), without pmax()'s overhead.
#' @noRd
math_max <- function(x, y, larger = TRUE) {
  out <- math_promote_storage(y, x)
  i <- which(if (larger) x >= y else x <= y)  # NA (a NaN) leaves y
  out[i] <- x[i]
  if (anyNA(x)) {
    j <- which(is.na(x))
    out[j] <- x[j]
  }
  out
}

# dtype rules (functions of the operands' specs).
#' @noRd
math_dtype_int_for_bool <- function(specs) {
  d <- result_dtype(specs)
  if (identical(d, "bool")) "int32" else d
}

#' @noRd
math_dtype_float <- function(specs) {
  d <- specs[[1L]]$dtype
  if (is_float_dtype(d)) d else "float32"
}

#' @noRd
math_erf <- function(x) {
  # erf(x) = sign(x) * P(chi^2_1 <= 2 x^2), accurate in relative terms also
  # for tiny |x| (where 2 * pnorm() - 1 cancels); below 1e-8, the series.
  out <- stats::pchisq(2 * x * x, 1)
  small <- which(abs(x) < 1e-8)
  neg <- which(x < 0)
  out[neg] <- -out[neg]
  if (length(small)) out[small] <- x[small] * 1.1283791670955126
  out
}

.math_selu_alpha <- 1.6732632423543772848170429916717
.math_selu_scale <- 1.0507009873554804934193349852946
.math_gelu_c <- 0.7978845608028654  # sqrt(2 / pi)

#' @noRd
math_round <- function(x, params) {
  d <- params$decimals
  if (is.null(d)) d <- 0L
  if (math_int_storage(x)) {
    if (d >= 0L || is.logical(x)) return(x)
    f <- 10^(-d)
    return(math_int32_result(round(x / f) * f, "op_round"))
  }
  if (d == 0L) return(round(x))
  if (d > 0L) {
    f <- 10^d
    out <- round(x * f) / f
    big <- which(!is.finite(out) & is.finite(x))  # x * f overflowed: x has no such decimals
    if (length(big)) out[big] <- x[big]
    return(out)
  }
  f <- 10^(-d)
  round(x / f) * f
}

# ---- registration ------------------------------------------------------------

#' @noRd
register_math_ops <- function() {
  no_grad <- function(g, x, out, params) NULL

  # powers, roots, exponentials, logarithms
  register_binary_op("power", "Power", function(x, y) {
    if (math_int_storage(x) && math_int_storage(y)) {
      if (any(y < 0L)) {
        abort_msg(paste0("op_power(): integers cannot be raised to negative integer powers (`x2` has negative ",
                         "values). Use float operands."), class = "multihead_error_argument")
      }
      return(math_int32_result(x^y, "op_power"))
    }
    x^y
  }, function(g, x, y, out) {
    lx <- x
    lx[!math_clean_mask(x > 0)] <- 1
    list(g * y * x^(y - 1), g * out * log(lx))
  }, dtype = math_dtype_int_for_bool)
  register_unary_op("square", "Square", function(x, params) {
    if (math_int_storage(x)) math_int32_result(as.double(x) * x, "op_square") else x * x
  }, function(g, x, out, params) 2 * g * x,
  dtype = function(specs) if (identical(specs[[1L]]$dtype, "bool")) "int32" else specs[[1L]]$dtype)
  register_unary_op("sqrt", "Sqrt", function(x, params) math_quiet(sqrt, x, x < 0),
                    function(g, x, out, params) 0.5 * g / out, dtype = "float")
  register_unary_op("rsqrt", "Rsqrt", function(x, params) 1 / math_quiet(sqrt, x, x < 0),
                    function(g, x, out, params) -0.5 * g * out * out * out, dtype = math_dtype_float)
  register_unary_op("exp", "Exp", function(x, params) exp(x),
                    function(g, x, out, params) g * out, dtype = "float")
  register_unary_op("expm1", "Expm1", function(x, params) expm1(x),
                    function(g, x, out, params) g * (out + 1), dtype = "float")
  register_unary_op("log", "Log", function(x, params) math_quiet(log, x, x < 0),
                    function(g, x, out, params) g / x, dtype = "float")
  register_unary_op("log1p", "Log1p", function(x, params) math_quiet(log1p, x, x < -1),
                    function(g, x, out, params) g / (1 + x), dtype = "float")
  register_unary_op("log2", "Log2", function(x, params) math_quiet(log2, x, x < 0),
                    function(g, x, out, params) g / (x * log(2)), dtype = "float")
  register_unary_op("log10", "Log10", function(x, params) math_quiet(log10, x, x < 0),
                    function(g, x, out, params) g / (x * log(10)), dtype = "float")

  # sign, magnitude, rounding
  register_unary_op("abs", "Absolute", function(x, params) if (is.logical(x)) x else abs(x),
                    function(g, x, out, params) g * sign(x))
  register_unary_op("sign", "Sign", function(x, params) {
    if (is.logical(x)) return(x)
    out <- sign(x)
    if (is.integer(x)) storage.mode(out) <- "integer"
    out
  }, no_grad)
  register_unary_op("floor", "Floor", function(x, params) floor(x), no_grad, dtype = "float")
  register_unary_op("ceil", "Ceil", function(x, params) ceiling(x), no_grad, dtype = "float")
  register_unary_op("round", "Round", math_round, no_grad)
  register_unary_op("trunc", "Trunc", function(x, params) if (math_int_storage(x)) x else trunc(x), no_grad)

  # trigonometric and hyperbolic
  register_unary_op("sin", "Sin", function(x, params) math_quiet(sin, x, is.infinite(x)),
                    function(g, x, out, params) g * math_quiet(cos, x, is.infinite(x)), dtype = "float")
  register_unary_op("cos", "Cos", function(x, params) math_quiet(cos, x, is.infinite(x)),
                    function(g, x, out, params) -g * math_quiet(sin, x, is.infinite(x)), dtype = "float")
  register_unary_op("tan", "Tan", function(x, params) math_quiet(tan, x, is.infinite(x)),
                    function(g, x, out, params) g * (1 + out * out), dtype = "float")
  register_unary_op("arcsin", "Arcsin", function(x, params) math_quiet(asin, x, abs(x) > 1),
                    function(g, x, out, params) g * (1 - x * x)^-0.5, dtype = "float")
  register_unary_op("arccos", "Arccos", function(x, params) math_quiet(acos, x, abs(x) > 1),
                    function(g, x, out, params) -g * (1 - x * x)^-0.5, dtype = "float")
  register_unary_op("arctan", "Arctan", function(x, params) atan(x),
                    function(g, x, out, params) g / (1 + x * x), dtype = "float")
  register_unary_op("sinh", "Sinh", function(x, params) sinh(x),
                    function(g, x, out, params) g * cosh(x), dtype = "float")
  register_unary_op("cosh", "Cosh", function(x, params) cosh(x),
                    function(g, x, out, params) g * sinh(x), dtype = "float")
  register_unary_op("tanh", "Tanh", function(x, params) tanh(x),
                    function(g, x, out, params) g * (1 - out * out), dtype = "float")
  register_unary_op("erf", "Erf", function(x, params) math_erf(x),
                    function(g, x, out, params) g * 1.1283791670955126 * exp(-x * x),
                    dtype = math_dtype_float)

  # activations
  relu_dtype <- function(specs) if (identical(specs[[1L]]$dtype, "bool")) "int32" else specs[[1L]]$dtype
  register_unary_op("relu", "Relu", function(x, params) {
    if (is.logical(x)) storage.mode(x) <- "integer"
    x[which(x < 0L)] <- 0L
    x
  },
                    function(g, x, out, params) math_select_grad(g, math_clean_mask(x > 0)), dtype = relu_dtype)
  register_unary_op("relu6", "Relu6", function(x, params) {
    if (is.logical(x)) storage.mode(x) <- "integer"
    x[which(x < 0L)] <- 0L
    x[which(x > 6L)] <- 6L
    x
  },
                    function(g, x, out, params) math_select_grad(g, math_clean_mask(x > 0 & x < 6)), dtype = relu_dtype)
  register_unary_op("leaky_relu", "LeakyRelu", function(x, params) {
    out <- as.double(x)
    n <- which(!(x > 0))
    out[n] <- out[n] * params$negative_slope
    out
  }, function(g, x, out, params) {
    d <- rep.int(params$negative_slope, length(x))
    d[which(x > 0)] <- 1
    g * d
  }, dtype = math_dtype_float)
  register_unary_op("elu", "Elu", function(x, params) {
    out <- as.double(x)
    n <- which(x <= 0)
    out[n] <- params$alpha * expm1(out[n])
    out
  }, function(g, x, out, params) {
    d <- rep.int(1, length(x))
    n <- which(x <= 0)
    d[n] <- params$alpha * exp(x[n])
    g * d
  }, dtype = math_dtype_float)
  register_unary_op("selu", "Selu", function(x, params) {
    out <- as.double(x)
    n <- which(x <= 0)
    out[n] <- .math_selu_alpha * expm1(out[n])
    .math_selu_scale * out
  }, function(g, x, out, params) {
    d <- rep.int(.math_selu_scale, length(x))
    n <- which(x < 0)
    d[n] <- .math_selu_scale * .math_selu_alpha * exp(x[n])
    g * d
  }, dtype = math_dtype_float)
  register_unary_op("gelu", "Gelu", function(x, params) {
    if (isFALSE(params$approximate)) return(x * stats::pnorm(x))
    0.5 * x * (1 + tanh(.math_gelu_c * (x + 0.044715 * x * x * x)))
  }, function(g, x, out, params) {
    if (isFALSE(params$approximate)) return(g * (stats::pnorm(x) + x * stats::dnorm(x)))
    t <- tanh(.math_gelu_c * (x + 0.044715 * x * x * x))
    g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * .math_gelu_c * (1 + 3 * 0.044715 * x * x))
  }, dtype = math_dtype_float)
  register_unary_op("sigmoid", "Sigmoid", function(x, params) stats::plogis(x),
                    function(g, x, out, params) g * out * (1 - out), dtype = math_dtype_float)
  register_unary_op("silu", "Silu", function(x, params) x * stats::plogis(x), function(g, x, out, params) {
    s <- stats::plogis(x)
    g * s * (1 + x * (1 - s))
  }, dtype = math_dtype_float)
  register_unary_op("softplus", "Softplus", function(x, params) {
    out <- log1p(exp(-abs(x)))  # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))
    i <- which(x > 0)
    out[i] <- out[i] + x[i]
    out
  },
                    function(g, x, out, params) g * stats::plogis(x), dtype = math_dtype_float)
  register_unary_op("softsign", "Softsign", function(x, params) x / (1 + abs(x)), function(g, x, out, params) {
    d <- 1 + abs(x)
    g / (d * d)
  }, dtype = math_dtype_float)

  # binary arithmetic
  register_binary_op("maximum", "Maximum", function(x, y) {
    if (is.logical(x) && is.logical(y)) x | y else math_max(x, y)
  }, function(g, x, y, out) {
    m <- math_clean_mask(x >= y)
    list(math_select_grad(g, m), math_select_grad(g, !m))
  }, dtype = result_dtype)
  register_binary_op("minimum", "Minimum", function(x, y) {
    if (is.logical(x) && is.logical(y)) x & y else math_max(x, y, larger = FALSE)
  }, function(g, x, y, out) {
    m <- math_clean_mask(x <= y)
    list(math_select_grad(g, m), math_select_grad(g, !m))
  }, dtype = result_dtype)
  register_binary_op("mod", "Mod", function(x, y) {
    if (math_int_storage(x) && math_int_storage(y)) {
      math_check_divisor(y, "op_mod")
      return(x %% y)
    }
    # R warns of lost precision where |x1 / x2| > 2^52; Keras computes quietly
    if (any(abs(x) > 4503599627370496 * abs(y), na.rm = TRUE)) suppressWarnings(x %% y) else x %% y
  }, function(g, x, y, out) list(g, -g * floor(x / y)), dtype = math_dtype_int_for_bool)
  register_binary_op("floor_divide", "FloorDivide", function(x, y) {
    if (math_int_storage(x) && math_int_storage(y)) {
      math_check_divisor(y, "op_floor_divide")
      return(x %/% y)
    }
    floor(x / y)
  }, function(g, x, y, out) list(NULL, NULL), dtype = math_dtype_int_for_bool)

  # comparisons (NaN compares FALSE, != TRUE)
  compare <- function(name, class_name, f, nan_value = FALSE) {
    register_binary_op(name, class_name, function(x, y) {
      out <- f(x, y)
      if (anyNA(out)) out[is.na(out)] <- nan_value
      out
    }, dtype = "bool")
  }
  compare("equal", "Equal", `==`)
  compare("not_equal", "NotEqual", `!=`, TRUE)
  compare("less", "Less", `<`)
  compare("less_equal", "LessEqual", `<=`)
  compare("greater", "Greater", `>`)
  compare("greater_equal", "GreaterEqual", `>=`)

  # logical
  register_binary_op("logical_and", "LogicalAnd", function(x, y) math_as_bool(x) & math_as_bool(y), dtype = "bool")
  register_binary_op("logical_or", "LogicalOr", function(x, y) math_as_bool(x) | math_as_bool(y), dtype = "bool")
  register_binary_op("logical_xor", "LogicalXor", function(x, y) math_as_bool(x) != math_as_bool(y),
                     dtype = "bool")
  register_unary_op("logical_not", "LogicalNot", function(x, params) !math_as_bool(x), dtype = "bool")
  register_unary_op("isnan", "Isnan", function(x, params) if (is.double(x)) is.nan(x) else rep.int(FALSE, length(x)),
                    dtype = "bool")
  register_unary_op("isfinite", "Isfinite", function(x, params) is.finite(x), dtype = "bool")
  register_unary_op("isinf", "Isinf", function(x, params) is.infinite(x), dtype = "bool")

  math_register_clip()
  math_register_where()
}

# ---- clip: three operands, the bounds broadcast into x's shape -----------------

# Keras's Clip keeps x's shape (TensorFlow's clip_by_value: the bounds must
# broadcast to x without enlarging it) and x's dtype (bool -> int32). For an
# integer x with fractional bounds the bounds are taken inward (ceiling of
# x_min, floor of x_max) so the result stays a whole number inside them. A
# NaN bound leaves x as it is there (TensorFlow's maximum/minimum).
#' @noRd
math_register_clip <- function() {
  fits_into <- function(s, into) {
    if (length(s) == 0L || identical(s, into)) return(TRUE)
    b <- tryCatch(broadcast_shapes(into, s), multihead_error_shape = function(e) NULL)
    !is.null(b) && length(b) == length(into) && all(is.na(into) | b == into)
  }
  register_op(
    "clip", "Clip",
    infer = function(specs, params) {
      nms <- names(specs)
      x <- specs[[1L]]
      if (is.null(x)) math_abort_missing(nms[1L], "op_clip")
      for (i in 2:3) {
        s <- specs[[i]]
        if (is.null(s)) math_abort_missing(nms[i], "op_clip")
        if (!fits_into(s$shape, x$shape)) {
          abort_op("op_clip", sprintf("`%s` must broadcast to the shape of `%s` (the result has the shape of `%s`)",
                                      nms[i], nms[1L], nms[1L]), specs, nms)
        }
      }
      op_spec(x$shape, if (identical(x$dtype, "bool")) "int32" else x$dtype)
    },
    forward = function(values, params) {
      x <- values[[1L]]; lo <- values[[2L]]; hi <- values[[3L]]
      sx <- value_shape(x); sl <- value_shape(lo); sh <- value_shape(hi)
      if (length(lo) != 1L && !identical(sl, sx)) lo <- math_clip_bound(lo, sl, sx, "x_min")
      if (length(hi) != 1L && !identical(sh, sx)) hi <- math_clip_bound(hi, sh, sx, "x_max")
      if (length(lo) == 1L) lo <- as.vector(lo)  # a one-element array bound: R's `<` refuses its dims
      if (length(hi) == 1L) hi <- as.vector(hi)
      out <- x
      if (math_int_storage(x)) {
        if (is.logical(x)) storage.mode(out) <- "integer"
        big <- .Machine$integer.max
        if (!is.integer(lo)) lo <- as.integer(pmin(pmax(ceiling(lo), -big), big))
        if (!is.integer(hi)) hi <- as.integer(pmin(pmax(floor(hi), -big), big))
      } else if (!is.double(x)) {
        storage.mode(out) <- "double"
      }
      below <- which(out < lo)
      out[below] <- if (length(lo) == 1L) lo else lo[below]
      above <- which(out > hi)
      out[above] <- if (length(hi) == 1L) hi else hi[above]
      if (length(sx)) dim(out) <- sx else dim(out) <- NULL
      list(output = out, cache = list(below = below, above = above, sl = sl, sh = sh))
    },
    backward = function(grad_output, cache, params) {
      g <- grad_output
      below <- setdiff(cache$below, cache$above)
      gx <- g
      gx[c(below, cache$above)] <- 0
      glo <- g
      glo[] <- 0
      glo[below] <- g[below]
      ghi <- g
      ghi[] <- 0
      ghi[cache$above] <- g[cache$above]
      list(gx, reduce_to_shape(glo, cache$sl), reduce_to_shape(ghi, cache$sh))
    },
    mask = "elementwise")
}

#' @noRd
math_clip_bound <- function(b, from, to, arg) {
  ok <- tryCatch(identical(broadcast_shapes(to, from), as.integer(to)), multihead_error_shape = function(e) FALSE)
  if (!ok) {
    abort_msg(sprintf("op_clip(): `%s` of shape %s does not broadcast to the shape of `x` %s.", arg,
                      fmt_shape(from), fmt_shape(to)), class = c("multihead_error_shape", "multihead_error_argument"))
  }
  broadcast_value(b, from, to)
}

# ---- where: select with broadcasting over condition, x1, x2 -----------------

#' @noRd
math_register_where <- function() {
  register_op(
    "where", "Where",
    infer = function(specs, params) {
      nms <- names(specs)
      for (i in 1:3) if (is.null(specs[[i]])) math_abort_missing(nms[i], "op_where")
      shape <- tryCatch(math_broadcast(math_broadcast(specs[[1L]]$shape, specs[[2L]]$shape), specs[[3L]]$shape),
                        multihead_error_shape = function(e) {
                          abort_op("op_where", "the shapes of its operands do not broadcast together", specs, nms)
                        })
      op_spec(shape, result_dtype(specs[2:3]))
    },
    forward = function(values, params) {
      cnd <- values[[1L]]; a <- values[[2L]]; b <- values[[3L]]
      sc <- value_shape(cnd); sa <- value_shape(a); sb <- value_shape(b)
      to <- math_broadcast(math_broadcast(sc, sa), sb)
      if (!identical(sc, to)) cnd <- broadcast_value(cnd, sc, to)
      cnd <- math_as_bool(cnd)
      if (!identical(sa, to)) a <- broadcast_value(a, sa, to)
      out <- if (identical(sb, to)) b else broadcast_value(b, sb, to)
      out <- math_promote_storage(out, a)
      idx <- which(cnd)
      out[idx] <- a[idx]
      if (length(to)) dim(out) <- to else dim(out) <- NULL
      list(output = out, cache = list(cond = cnd, sa = sa, sb = sb))
    },
    backward = function(grad_output, cache, params) {
      g <- grad_output
      cnd <- cache$cond
      list(NULL, reduce_to_shape(math_select_grad(g, cnd), cache$sa), reduce_to_shape(math_select_grad(g, !cnd), cache$sb))
    },
    mask = "elementwise")
}

# ---- user-facing functions ----------------------------------------------------

#' Powers and roots
#'
#' `op_power()` raises `x1` to the power `x2` elementwise (with NumPy
#' broadcasting); `op_square()`, `op_sqrt()` and `op_rsqrt()` (`1 / sqrt(x)`)
#' as in keras3. On R arrays they compute at once; on symbolic tensors they
#' record an operation that models run and differentiate. `x^y` on symbolic
#' tensors and variables is `op_power()`, `sqrt(x)` is `op_sqrt()`.
#'
#' Integer operands give integer results for `op_power()` and `op_square()`
#' (bool computes as int32); a result beyond the int32 range, or an integer
#' raised to a negative integer power, is an error. `op_sqrt()` and
#' `op_rsqrt()` give floats.
#'
#' @param x1,x2 Tensors: arrays, numbers, symbolic tensors or variables.
#' @param x A tensor.
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' op_power(array(1:6, c(2, 3)), 2)
#' op_square(c(-2, 3))
#' op_sqrt(c(4, 9))
#' op_rsqrt(4)
op_power <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_power")
  if (missing(x2)) math_abort_missing("x2", "op_power")
  op_call("power", list(x1 = x1, x2 = x2))
}

#' @rdname op_power
#' @export
op_square <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_square")
  op_call("square", list(x = x))
}

#' @rdname op_power
#' @export
op_sqrt <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_sqrt")
  op_call("sqrt", list(x = x))
}

#' @rdname op_power
#' @export
op_rsqrt <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_rsqrt")
  op_call("rsqrt", list(x = x))
}

#' Exponentials and logarithms
#'
#' `op_exp()`, `op_expm1()` (`exp(x) - 1`, accurate near 0), `op_log()`
#' (natural logarithm), `op_log1p()` (`log(1 + x)`), `op_log2()` and
#' `op_log10()`, elementwise, as in keras3. Integer and bool inputs give
#' float32 results. The R functions `exp()`, `expm1()`, `log()`, `log1p()`,
#' `log2()`, `log10()` on symbolic tensors and variables call these.
#'
#' @param x A tensor: an array, a number, a symbolic tensor or a variable.
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' op_exp(c(0, 1))
#' op_log1p(1e-10)
#' op_log2(8)
op_exp <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_exp")
  op_call("exp", list(x = x))
}

#' @rdname op_exp
#' @export
op_expm1 <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_expm1")
  op_call("expm1", list(x = x))
}

#' @rdname op_exp
#' @export
op_log <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_log")
  op_call("log", list(x = x))
}

#' @rdname op_exp
#' @export
op_log1p <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_log1p")
  op_call("log1p", list(x = x))
}

#' @rdname op_exp
#' @export
op_log2 <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_log2")
  op_call("log2", list(x = x))
}

#' @rdname op_exp
#' @export
op_log10 <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_log10")
  op_call("log10", list(x = x))
}

#' Absolute value and sign
#'
#' `op_abs()` (also `op_absolute()`) and `op_sign()` (-1, 0 or 1)
#' elementwise, as in keras3; the dtype is kept (bool inputs are returned
#' as they are). The gradient of `op_abs()` at 0 is 0 (TensorFlow's);
#' `op_sign()` passes no gradient. `abs()` and `sign()` on symbolic tensors
#' and variables call these.
#'
#' @param x A tensor: an array, a number, a symbolic tensor or a variable.
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' op_abs(c(-1.5, 0, 2))
#' op_sign(c(-1.5, 0, 2))
op_abs <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_abs")
  op_call("abs", list(x = x))
}

#' @rdname op_abs
#' @export
op_absolute <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_absolute")
  op_call("abs", list(x = x))
}

#' @rdname op_abs
#' @export
op_sign <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_sign")
  op_call("sign", list(x = x))
}

#' Rounding
#'
#' `op_floor()`, `op_ceil()`, `op_round()` and `op_trunc()` (towards zero)
#' elementwise, as in keras3. `op_round()` rounds halves to even (as NumPy,
#' TensorFlow and R's `round()`); with `decimals` it computes
#' `round(x * 10^decimals) / 10^decimals` (for negative `decimals`, to tens,
#' hundreds, ...). `op_floor()` and `op_ceil()` of integers give float32
#' (Keras's rule); `op_round()` and `op_trunc()` keep the dtype. These ops
#' pass no gradient (TensorFlow's `None`): a loss such as `x - op_floor(x)`
#' differentiates through its other terms only. `floor()`, `ceiling()`,
#' `round()` and `trunc()` on symbolic tensors and variables call these.
#'
#' @param x A tensor: an array, a number, a symbolic tensor or a variable.
#' @param decimals A whole number between -308 and 308: the number of
#'   decimal places to round to (negative: to the left of the point).
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' op_floor(c(-1.5, 1.5))
#' op_round(c(0.5, 1.5, 2.5))
#' op_round(3.14159, decimals = 2)
#' op_trunc(c(-1.7, 1.7))
op_floor <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_floor")
  op_call("floor", list(x = x))
}

#' @rdname op_floor
#' @export
op_ceil <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_ceil")
  op_call("ceil", list(x = x))
}

#' @rdname op_floor
#' @export
op_round <- function(x, decimals = 0) {
  if (missing(x)) math_abort_missing("x", "op_round")
  if (!(is.numeric(decimals) && length(decimals) == 1L && is.null(dim(decimals)) && !is.na(decimals) &&
        is.finite(decimals) && decimals == round(decimals) && abs(decimals) <= 308)) {
    abort_arg("decimals", "a whole number between -308 and 308 in op_round()", describe_value(decimals))
  }
  op_call("round", list(x = x), list(decimals = as.integer(decimals)))
}

#' @rdname op_floor
#' @export
op_trunc <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_trunc")
  op_call("trunc", list(x = x))
}

#' Trigonometric, hyperbolic and error functions
#'
#' `op_sin()`, `op_cos()`, `op_tan()`, `op_arcsin()`, `op_arccos()`,
#' `op_arctan()`, `op_sinh()`, `op_cosh()`, `op_tanh()` and `op_erf()`
#' elementwise, as in keras3. Integer and bool inputs give float32. The R
#' functions `sin()`, `cos()`, `tan()`, `asin()`, `acos()`, `atan()`,
#' `sinh()`, `cosh()`, `tanh()` on symbolic tensors and variables call these.
#'
#' @param x A tensor: an array, a number, a symbolic tensor or a variable.
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' op_sin(pi / 2)
#' op_tanh(c(-1, 0, 1))
#' op_erf(c(-1, 0, 1))
op_sin <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_sin")
  op_call("sin", list(x = x))
}

#' @rdname op_sin
#' @export
op_cos <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_cos")
  op_call("cos", list(x = x))
}

#' @rdname op_sin
#' @export
op_tan <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_tan")
  op_call("tan", list(x = x))
}

#' @rdname op_sin
#' @export
op_arcsin <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_arcsin")
  op_call("arcsin", list(x = x))
}

#' @rdname op_sin
#' @export
op_arccos <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_arccos")
  op_call("arccos", list(x = x))
}

#' @rdname op_sin
#' @export
op_arctan <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_arctan")
  op_call("arctan", list(x = x))
}

#' @rdname op_sin
#' @export
op_sinh <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_sinh")
  op_call("sinh", list(x = x))
}

#' @rdname op_sin
#' @export
op_cosh <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_cosh")
  op_call("cosh", list(x = x))
}

#' @rdname op_sin
#' @export
op_tanh <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_tanh")
  op_call("tanh", list(x = x))
}

#' @rdname op_sin
#' @export
op_erf <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_erf")
  op_call("erf", list(x = x))
}

#' Activation functions as ops
#'
#' Keras's activations applied elementwise, as in keras3:
#' * `op_relu()`: `max(x, 0)`; `op_relu6()`: `min(max(x, 0), 6)`;
#' * `op_leaky_relu()`: `x` for `x > 0`, `negative_slope * x` otherwise;
#' * `op_elu()`: `x` for `x > 0`, `alpha * (exp(x) - 1)` otherwise;
#' * `op_selu()`: `scale * elu(x, alpha)` with Keras's constants
#'   (`alpha = 1.6732632423543772`, `scale = 1.0507009873554805`);
#' * `op_gelu()`: with `approximate = TRUE` (the default, as in Keras)
#'   `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))`; with
#'   `approximate = FALSE` the exact `x * pnorm(x)` (`0.5 * x * (1 + erf(x /
#'   sqrt(2)))`);
#' * `op_sigmoid()`: `1 / (1 + exp(-x))`; `op_silu()` (also `op_swish()`):
#'   `x * sigmoid(x)`; `op_softplus()`: `log(1 + exp(x))` (computed
#'   without overflow); `op_softsign()`: `x / (1 + abs(x))`.
#'
#' Gradients where the function has a kink are TensorFlow's: `op_relu()` at
#' 0 and `op_relu6()` at 0 and 6 pass 0, `op_leaky_relu()` at 0 passes
#' `negative_slope`, `op_elu()` at 0 `alpha`, `op_selu()` at 0 `scale`.
#' Integer inputs give float32 (except `op_relu()` and `op_relu6()`, which
#' keep integer dtypes).
#'
#' @param x A tensor: an array, a number, a symbolic tensor or a variable.
#' @param negative_slope A number: the slope for `x <= 0`.
#' @param alpha A number: the scale of the negative part.
#' @param approximate `TRUE` or `FALSE`: the tanh approximation or the exact
#'   form.
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' x <- c(-2, -0.5, 0, 0.5, 2)
#' op_relu(x)
#' op_leaky_relu(x)
#' op_gelu(x)
#' op_gelu(x, approximate = FALSE)
#' op_sigmoid(x)
op_relu <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_relu")
  op_call("relu", list(x = x))
}

#' @rdname op_relu
#' @export
op_relu6 <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_relu6")
  op_call("relu6", list(x = x))
}

#' @rdname op_relu
#' @export
op_leaky_relu <- function(x, negative_slope = 0.2) {
  if (missing(x)) math_abort_missing("x", "op_leaky_relu")
  negative_slope <- check_number(negative_slope, "negative_slope")
  op_call("leaky_relu", list(x = x), list(negative_slope = negative_slope))
}

#' @rdname op_relu
#' @export
op_elu <- function(x, alpha = 1) {
  if (missing(x)) math_abort_missing("x", "op_elu")
  alpha <- check_number(alpha, "alpha")
  op_call("elu", list(x = x), list(alpha = alpha))
}

#' @rdname op_relu
#' @export
op_selu <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_selu")
  op_call("selu", list(x = x))
}

#' @rdname op_relu
#' @export
op_gelu <- function(x, approximate = TRUE) {
  if (missing(x)) math_abort_missing("x", "op_gelu")
  approximate <- check_flag(approximate, "approximate")
  op_call("gelu", list(x = x), list(approximate = approximate))
}

#' @rdname op_relu
#' @export
op_sigmoid <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_sigmoid")
  op_call("sigmoid", list(x = x))
}

#' @rdname op_relu
#' @export
op_silu <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_silu")
  op_call("silu", list(x = x))
}

#' @rdname op_relu
#' @export
op_swish <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_swish")
  op_call("silu", list(x = x))
}

#' @rdname op_relu
#' @export
op_softplus <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_softplus")
  op_call("softplus", list(x = x))
}

#' @rdname op_relu
#' @export
op_softsign <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_softsign")
  op_call("softsign", list(x = x))
}

#' Elementwise maximum, minimum and clipping
#'
#' `op_maximum()` and `op_minimum()` (also `op_pmax()` and `op_pmin()`, as in
#' keras3) compare two tensors elementwise with NumPy broadcasting; on ties
#' the gradient goes to `x1` (TensorFlow's rule). `op_clip()` limits `x` to
#' `[x_min, x_max]`; the bounds may be numbers or tensors that broadcast to
#' `x`'s shape, and the result has `x`'s shape and dtype (bool: int32). At a
#' bound the gradient goes to `x`; `x_min` and `x_max` receive it where `x`
#' lies strictly beyond them.
#'
#' @param x1,x2 Tensors: arrays, numbers, symbolic tensors or variables.
#' @param x A tensor.
#' @param x_min,x_max The bounds: numbers or tensors broadcasting to `x`.
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' op_maximum(c(1, 5, 3), 2)
#' op_minimum(array(1:6, c(2, 3)), c(2, 2, 5))
#' op_clip(c(-3, 0.5, 9), 0, 1)
op_maximum <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_maximum")
  if (missing(x2)) math_abort_missing("x2", "op_maximum")
  op_call("maximum", list(x1 = x1, x2 = x2))
}

#' @rdname op_maximum
#' @export
op_pmax <- op_maximum

#' @rdname op_maximum
#' @export
op_minimum <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_minimum")
  if (missing(x2)) math_abort_missing("x2", "op_minimum")
  op_call("minimum", list(x1 = x1, x2 = x2))
}

#' @rdname op_maximum
#' @export
op_pmin <- op_minimum

#' @rdname op_maximum
#' @export
op_clip <- function(x, x_min, x_max) {
  if (missing(x)) math_abort_missing("x", "op_clip")
  if (missing(x_min) || is.null(x_min)) abort_arg("x_min", "a number or a tensor in op_clip()", "nothing")
  if (missing(x_max) || is.null(x_max)) abort_arg("x_max", "a number or a tensor in op_clip()", "nothing")
  op_call("clip", list(x = x, x_min = x_min, x_max = x_max))
}

#' Remainder and floor division
#'
#' `op_mod()` is the remainder of floor division (its sign is the sign of
#' `x2`, as R's `%%` and NumPy's `mod`); `op_floor_divide()` is
#' `floor(x1 / x2)`, elementwise with NumPy broadcasting, as in keras3.
#' Integer operands give integer results (bool computes as int32); an
#' integer division by zero is an error. `op_mod()` is differentiable
#' (`d/dx1 = 1`, `d/dx2 = -floor(x1 / x2)`); `op_floor_divide()` passes no
#' gradient. `%%` and `%/%` on symbolic tensors and variables call these.
#'
#' @param x1,x2 Tensors: arrays, numbers, symbolic tensors or variables.
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' op_mod(c(-7, 7), 3)
#' op_floor_divide(c(-7L, 7L), 2L)
op_mod <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_mod")
  if (missing(x2)) math_abort_missing("x2", "op_mod")
  op_call("mod", list(x1 = x1, x2 = x2))
}

#' @rdname op_mod
#' @export
op_floor_divide <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_floor_divide")
  if (missing(x2)) math_abort_missing("x2", "op_floor_divide")
  op_call("floor_divide", list(x1 = x1, x2 = x2))
}

#' Elementwise comparisons
#'
#' `op_equal()`, `op_not_equal()`, `op_less()`, `op_less_equal()`,
#' `op_greater()` and `op_greater_equal()` compare with NumPy broadcasting
#' and return bool tensors (R logical arrays), as in keras3. A comparison
#' with NaN is `FALSE` (`op_not_equal()`: `TRUE`). They have no gradient.
#' The operators `==`, `!=`, `<`, `<=`, `>`, `>=` on symbolic tensors and
#' variables call these.
#'
#' @param x1,x2 Tensors: arrays, numbers, symbolic tensors or variables.
#' @returns A logical array, or a symbolic tensor of dtype bool.
#' @family ops
#' @export
#' @examples
#' op_greater(c(1, 2, 3), 2)
#' op_equal(array(1:4, c(2, 2)), c(1, 4))
op_equal <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_equal")
  if (missing(x2)) math_abort_missing("x2", "op_equal")
  op_call("equal", list(x1 = x1, x2 = x2))
}

#' @rdname op_equal
#' @export
op_not_equal <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_not_equal")
  if (missing(x2)) math_abort_missing("x2", "op_not_equal")
  op_call("not_equal", list(x1 = x1, x2 = x2))
}

#' @rdname op_equal
#' @export
op_less <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_less")
  if (missing(x2)) math_abort_missing("x2", "op_less")
  op_call("less", list(x1 = x1, x2 = x2))
}

#' @rdname op_equal
#' @export
op_less_equal <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_less_equal")
  if (missing(x2)) math_abort_missing("x2", "op_less_equal")
  op_call("less_equal", list(x1 = x1, x2 = x2))
}

#' @rdname op_equal
#' @export
op_greater <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_greater")
  if (missing(x2)) math_abort_missing("x2", "op_greater")
  op_call("greater", list(x1 = x1, x2 = x2))
}

#' @rdname op_equal
#' @export
op_greater_equal <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_greater_equal")
  if (missing(x2)) math_abort_missing("x2", "op_greater_equal")
  op_call("greater_equal", list(x1 = x1, x2 = x2))
}

#' Elementwise logical operations
#'
#' `op_logical_and()`, `op_logical_or()`, `op_logical_xor()` (with NumPy
#' broadcasting) and `op_logical_not()`, as in keras3. Numeric inputs count
#' as `TRUE` where non-zero (NaN included); the result is bool (an R logical
#' array). The operators `&`, `|` and `!` on symbolic tensors and variables
#' call these.
#'
#' @param x1,x2,x Tensors: arrays, numbers, symbolic tensors or variables.
#' @returns A logical array, or a symbolic tensor of dtype bool.
#' @family ops
#' @export
#' @examples
#' op_logical_and(c(TRUE, TRUE, FALSE), c(TRUE, FALSE, FALSE))
#' op_logical_xor(c(0, 1, 2), 1)
#' op_logical_not(c(0, 3))
op_logical_and <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_logical_and")
  if (missing(x2)) math_abort_missing("x2", "op_logical_and")
  op_call("logical_and", list(x1 = x1, x2 = x2))
}

#' @rdname op_logical_and
#' @export
op_logical_or <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_logical_or")
  if (missing(x2)) math_abort_missing("x2", "op_logical_or")
  op_call("logical_or", list(x1 = x1, x2 = x2))
}

#' @rdname op_logical_and
#' @export
op_logical_xor <- function(x1, x2) {
  if (missing(x1)) math_abort_missing("x1", "op_logical_xor")
  if (missing(x2)) math_abort_missing("x2", "op_logical_xor")
  op_call("logical_xor", list(x1 = x1, x2 = x2))
}

#' @rdname op_logical_and
#' @export
op_logical_not <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_logical_not")
  op_call("logical_not", list(x = x))
}

#' Tests for NaN and infinite values
#'
#' `op_isnan()`, `op_isfinite()` and `op_isinf()` elementwise, as in keras3;
#' the result is bool (an R logical array). Integer and bool inputs are
#' finite.
#'
#' @param x A tensor: an array, a number, a symbolic tensor or a variable.
#' @returns A logical array, or a symbolic tensor of dtype bool.
#' @family ops
#' @export
#' @examples
#' op_isnan(c(1, NaN, Inf))
#' op_isfinite(c(1, NaN, Inf))
#' op_isinf(c(1, NaN, -Inf))
op_isnan <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_isnan")
  op_call("isnan", list(x = x))
}

#' @rdname op_isnan
#' @export
op_isfinite <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_isfinite")
  op_call("isfinite", list(x = x))
}

#' @rdname op_isnan
#' @export
op_isinf <- function(x) {
  if (missing(x)) math_abort_missing("x", "op_isinf")
  op_call("isinf", list(x = x))
}

#' Select elements by a condition
#'
#' `op_where(condition, x1, x2)` takes `x1` where `condition` holds and `x2`
#' elsewhere, with NumPy broadcasting over all three (as in keras3).
#' `condition` is cast to bool (non-zero is `TRUE`); the result's dtype
#' promotes `x1` and `x2`. It is differentiable in `x1` and `x2` (each gets
#' the gradient where it was selected).
#'
#' The one-argument form of Keras (`op_where(condition)`: the indices of
#' the non-zero elements) is not supported; use `which(condition, arr.ind =
#' TRUE)` on arrays.
#'
#' @param condition A tensor: where `TRUE` (non-zero), take `x1`.
#' @param x1,x2 Tensors: the values where `condition` holds, and elsewhere.
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' x <- c(-2, -1, 0, 1, 2)
#' op_where(x > 0, x, 0)
#' op_where(array(c(TRUE, FALSE), c(2, 1)), array(1:6, c(2, 3)), -1L)
op_where <- function(condition, x1 = NULL, x2 = NULL) {
  if (missing(condition)) math_abort_missing("condition", "op_where")
  if (is.null(x1) && is.null(x2)) {
    abort_msg(paste0("op_where(condition) without `x1` and `x2` (the indices of the non-zero elements) is not ",
                     "supported; supply both `x1` and `x2`, or use which(condition, arr.ind = TRUE) on an array."),
              class = c("multihead_error_unsupported", "multihead_error_argument"))
  }
  if (is.null(x1)) abort_arg("x1", "a tensor in op_where() when `x2` is supplied (both or neither)", "NULL")
  if (is.null(x2)) abort_arg("x2", "a tensor in op_where() when `x1` is supplied (both or neither)", "NULL")
  op_call("where", list(condition = condition, x1 = x1, x2 = x2))
}

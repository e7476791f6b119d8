# Reductions (op_sum, op_mean, op_max, ..., op_argmax, op_norm), the
# softmax family (op_softmax, op_log_softmax, op_logsumexp), cumulative ops
# (op_cumsum, op_cumprod) and R's Summary group and mean() on symbolic
# tensors and variables.
#
# Layout. Values are R arrays, column-major with dims in Keras's axis order
# (the FIRST axis varies fastest). The C++ kernels (src/core/ops_reduce.h)
# read them in place: a reduction over any set of axes is planned as
# (outer, reduced, inner) runs of R's own memory (the kept axes before the
# first reduced one are "inner", contiguous in x and in the result), so no
# transposing copy is made and the result comes out in the column-major order
# of the kept axes: it only needs its dim attribute. Cumulative ops work on
# (outer, len, inner) around their axis the same way.
#
# Semantics (Keras 3 / NumPy unless stated):
#   * axes are keras3's: 1-based, negative from the end, NULL = every axis;
#     duplicates, 0 and out-of-range axes are errors naming `axis`.
#   * dtypes: sum/prod of bool give int32; mean, var, std, logsumexp, norm
#     and softmax of integer/bool tensors give float32; max/min keep the
#     dtype; any/all give bool; argmax/argmin/count_nonzero give int32.
#     Eager integer results are R integers (doubles when a sum leaves R's
#     integer range, so it is never wrong).
#   * op_max()/op_min() over an empty axis need `initial` (as NumPy); NaN
#     propagates through max/min/argmax/argmin (argmax returns the first NaN,
#     as NumPy).
#   * op_argmax()/op_argmin() return the FIRST extreme position; with
#     `axis = NULL` the position in the row-major (C-order) flattening of x,
#     exactly what keras3 returns (NumPy flattens in C order), 1-based unless
#     `zero_indexed`. op_cumsum()/op_cumprod() with `axis = NULL` flatten in
#     C order too (a 1-d result, as keras3).
#   * var/std are population statistics (ddof = 0), computed in two passes
#     (mean, then squared deviations).
#   * softmax/log_softmax/logsumexp subtract the maximum first; -Inf entries
#     (masked) get probability 0; a group of only -Inf gives NaN (as NumPy
#     and every Keras backend) and logsumexp of only -Inf is -Inf.
#
# Gradients (all in C++ except the SVD matrix norms):
#   * max/min (and the Inf/-Inf norms): the gradient is split EVENLY among
#     the elements equal to the result, as Keras's TensorFlow backend
#     (reduce_max) and JAX do; with `initial` winning, x gets none; a tie
#     with `initial` goes to x.
#   * prod: exact with zeros (one zero gets the product of the others).
#   * std and the 2-norm at 0, p-norms at x = 0: 0 (a subgradient, as
#     PyTorch), not NaN.
#   * cumprod: exact with zeros, no division.
#   * any/all/argmax/argmin/count_nonzero have no gradient; the 0-"norm" has
#     gradient 0.

# The codes of mh::ReduceOp (src/core/ops_reduce.h), in order.
.reduce_codes <- c(sum = 0L, prod = 1L, max = 2L, min = 3L, any = 4L, all = 5L, count_nonzero = 6L,
                   mean = 7L, var = 8L, std = 9L, logsumexp = 10L, norm2 = 11L, sum_abs = 12L,
                   max_abs = 13L, min_abs = 14L, norm_p = 15L, argmax = 16L, argmin = 17L)

# ---- argument checks (before the rank is known) -------------------------------

# `axis`: NULL (when allowed) or whole numbers, none 0; `single`: one axis.
#' @noRd
reduce_axis_arg <- function(axis, op, null_ok = TRUE, single = FALSE, max_len = Inf) {
  if (is.null(axis)) {
    if (null_ok) return(NULL)
    abort_arg("axis", sprintf("an axis (a whole number; 1-based, -1 is the last) in %s()", op), "NULL")
  }
  what <- if (single) "a single whole number" else "NULL or whole numbers"
  if (!is.numeric(axis) || is.object(axis) || length(axis) == 0L || anyNA(axis) ||
      any(!is.finite(axis)) || any(axis != round(axis))) {
    abort_arg("axis", sprintf("%s (1-based axes; -1 is the last) in %s()", what, op), describe_value(axis))
  }
  if (any(abs(axis) > 1e6)) {
    abort_arg("axis", sprintf("axes of the tensor in %s() (1-based; -1 is the last)", op), paste(axis, collapse = ", "))
  }
  if (single && length(axis) != 1L) {
    abort_arg("axis", sprintf("a single axis in %s()", op), paste(axis, collapse = ", "))
  }
  if (length(axis) > max_len) {
    abort_arg("axis", sprintf("one or two axes in %s()", op), paste(axis, collapse = ", "))
  }
  if (any(axis == 0)) {
    abort_arg("axis", sprintf("1-based in %s() (1 is the first axis, -1 the last; 0 is not an axis)", op),
              paste(axis, collapse = ", "))
  }
  as.integer(axis)
}

#' @noRd
reduce_flag_arg <- function(x, arg, op) {
  if (!is.logical(x) || length(x) != 1L || is.na(x)) {
    abort_arg(arg, sprintf("TRUE or FALSE in %s()", op), describe_value(x))
  }
  x
}

#' @noRd
reduce_x_supplied <- function(missing_x, op) {
  if (missing_x) abort_arg("x", sprintf("supplied: a tensor in %s()", op))
}

# `dtype` of op_cumsum()/op_cumprod()/op_prod(): NULL or a numeric dtype.
#' @noRd
reduce_dtype_arg <- function(dtype, op) {
  if (is.null(dtype)) return(NULL)
  ok <- c("float32", "float64", "int32", "int64")
  if (!is.character(dtype) || length(dtype) != 1L || is.na(dtype) || !dtype %in% ok) {
    abort_arg("dtype", sprintf("NULL or one of %s in %s()", quote_names(ok), op), describe_value(dtype))
  }
  dtype
}

# ---- shapes, values --------------------------------------------------------------

# 0-based reduced axes of a rank-`rank` tensor (all for NULL).
#' @noRd
reduce_axes <- function(axis, rank, op) {
  if (is.null(axis)) return(seq_len(rank) - 1L)
  normalize_axis(axis, rank, "axis", op)
}

#' @noRd
reduce_out_shape <- function(shape, axes0, keepdims) {
  if (!length(axes0)) return(shape)
  if (keepdims) {
    shape[axes0 + 1L] <- 1L
    shape
  } else {
    shape[-(axes0 + 1L)]
  }
}

#' @noRd
reduce_flags <- function(rank, axes0) {
  f <- integer(rank)
  f[axes0 + 1L] <- 1L
  f
}

#' @noRd
reduce_with_shape <- function(v, shape) {
  if (length(shape)) dim(v) <- shape else dim(v) <- NULL
  v
}

# An eager integer result: R integers when they fit (else whole doubles).
#' @noRd
reduce_int_result <- function(v) {
  if (length(v) && !anyNA(v) && max(abs(v)) <= .Machine$integer.max) storage.mode(v) <- "integer"
  v
}

# The double gradient of an output.
#' @noRd
reduce_grad_double <- function(g) {
  if (!is.double(g)) storage.mode(g) <- "double"
  g
}

#' @noRd
reduce_x_spec <- function(specs, op) {
  s <- specs[[1L]]
  if (is.null(s)) abort_arg("x", sprintf("supplied: a tensor in %s()", op))
  s
}

#' @noRd
reduce_float_dtype <- function(dtype) if (is_float_dtype(dtype)) dtype else "float32"

# Errors for reductions without an identity over an empty axis.
#' @noRd
reduce_check_nonempty <- function(shape, axes0, op) {
  red <- shape[axes0 + 1L]
  if (length(red) && any(!is.na(red) & red == 0L) && !any(!is.na(shape[-(axes0 + 1L)]) &
                                                           shape[-(axes0 + 1L)] == 0L)) {
    abort_arg("x", sprintf("non-empty along the reduced axes in %s() (no identity; give `initial` for op_max()/op_min())",
                           op), sprintf("shape %s", fmt_shape(shape)))
  }
}

# ---- registering reductions ---------------------------------------------------------

# A reduction op `name` with params (axis, keepdims, ...):
#   code    the kernel (a name of .reduce_codes)
#   dtype   function(x_dtype, params) -> the output dtype
#   grad    TRUE: the C++ backward of `code`
#   post    function(out, x, params) applied to the eager output (before the dim)
#   pre     function(x, params) applied to x first (a dtype cast)
#' @noRd
register_reduce_op <- function(name, class_name, code, dtype, grad = TRUE, post = NULL, pre = NULL) {
  force(code); force(dtype); force(post); force(pre)
  fun <- paste0("op_", name)
  k <- .reduce_codes[[code]]
  register_op(
    name, class_name,
    infer = function(specs, params) {
      s <- reduce_x_spec(specs, fun)
      axes0 <- reduce_axes(params$axis, length(s$shape), fun)
      op_spec(reduce_out_shape(s$shape, axes0, isTRUE(params$keepdims)), dtype(s$dtype, params))
    },
    forward = function(values, params) {
      x <- values[[1L]]
      if (!is.null(pre)) x <- pre(x, params)
      shape <- value_shape(x)
      axes0 <- reduce_axes(params$axis, length(shape), fun)
      flags <- reduce_flags(length(shape), axes0)
      out <- cpp_reduce(x, shape, flags, k, 0, mh_threads())
      raw <- out
      if (!is.null(post)) out <- post(out, x, params)
      list(output = reduce_with_shape(out, reduce_out_shape(shape, axes0, isTRUE(params$keepdims))),
           cache = list(x = x, out = raw, shape = shape, flags = flags))
    },
    backward = if (grad) function(grad_output, cache, params) {
      x <- cache$x
      if (!is.double(x)) storage.mode(x) <- "double"
      dx <- cpp_reduce_backward(x, cache$shape, cache$flags, k, 0, cache$out, reduce_grad_double(grad_output),
                                mh_threads())
      list(reduce_with_shape(dx, cache$shape))
    })
}

# max/min: with `initial` (the result is max(reduction, initial)).
#' @noRd
register_extreme_op <- function(name, class_name) {
  code <- .reduce_codes[[name]]
  is_max <- name == "max"
  fun <- paste0("op_", name)
  register_op(
    name, class_name,
    infer = function(specs, params) {
      s <- reduce_x_spec(specs, fun)
      axes0 <- reduce_axes(params$axis, length(s$shape), fun)
      if (is.null(params$initial)) reduce_check_nonempty(s$shape, axes0, fun)
      op_spec(reduce_out_shape(s$shape, axes0, isTRUE(params$keepdims)), s$dtype)
    },
    forward = function(values, params) {
      x <- values[[1L]]
      shape <- value_shape(x)
      axes0 <- reduce_axes(params$axis, length(shape), fun)
      if (is.null(params$initial)) reduce_check_nonempty(shape, axes0, fun)
      flags <- reduce_flags(length(shape), axes0)
      out <- cpp_reduce(x, shape, flags, code, 0, mh_threads())
      if (!is.null(params$initial)) out <- if (is_max) pmax(out, params$initial) else pmin(out, params$initial)
      raw <- out
      if (is.logical(x)) out <- out != 0 else if (is.integer(x)) out <- reduce_int_result(out)
      list(output = reduce_with_shape(out, reduce_out_shape(shape, axes0, isTRUE(params$keepdims))),
           cache = list(x = x, out = raw, shape = shape, flags = flags))
    },
    backward = function(grad_output, cache, params) {
      x <- cache$x
      if (!is.double(x)) storage.mode(x) <- "double"
      dx <- cpp_reduce_backward(x, cache$shape, cache$flags, code, 0, cache$out, reduce_grad_double(grad_output),
                                mh_threads())
      list(reduce_with_shape(dx, cache$shape))
    })
}

# argmax/argmin: one axis, or NULL (the C-order flattening, as keras3).
#' @noRd
register_arg_op <- function(name, class_name) {
  code <- .reduce_codes[[name]]
  fun <- paste0("op_", name)
  register_op(
    name, class_name,
    infer = function(specs, params) {
      s <- reduce_x_spec(specs, fun)
      axes0 <- reduce_axes(params$axis, length(s$shape), fun)
      reduce_check_nonempty(s$shape, axes0, fun)
      op_spec(reduce_out_shape(s$shape, axes0, isTRUE(params$keepdims)), "int32")
    },
    forward = function(values, params) {
      x <- values[[1L]]
      shape <- value_shape(x)
      axes0 <- reduce_axes(params$axis, length(shape), fun)
      reduce_check_nonempty(shape, axes0, fun)
      xr <- x
      dims <- shape
      if (is.null(params$axis) && length(shape) > 1L) {
        xr <- aperm(array(x, shape))  # C order: the last axis fastest
        dims <- rev(shape)
      }
      out <- cpp_reduce(xr, dims, reduce_flags(length(dims), if (is.null(params$axis)) seq_along(dims) - 1L else axes0),
                        code, 0, mh_threads())
      if (!isTRUE(params$zero_indexed)) out <- out + 1
      storage.mode(out) <- "integer"
      list(output = reduce_with_shape(out, reduce_out_shape(shape, axes0, isTRUE(params$keepdims))), cache = NULL)
    },
    backward = NULL)
}

#' @noRd
register_reduce_ops <- function() {
  sum_dtype <- function(d, params) if (identical(d, "bool")) "int32" else d
  int_post <- function(out, x, params) if (is.double(x)) out else reduce_int_result(out)
  register_reduce_op("sum", "Sum", "sum", sum_dtype, post = int_post)
  register_reduce_op("prod", "Prod", "prod", function(d, params) {
    if (!is.null(params$dtype)) params$dtype else sum_dtype(d, params)
  }, post = function(out, x, params) {
    d <- params$dtype
    if (is.null(d)) d <- if (is.double(x)) "float32" else "int32"
    if (is_int_dtype(d)) reduce_int_result(out) else out
  }, pre = function(x, params) {
    if (!is.null(params$dtype) && is_int_dtype(params$dtype) && is.double(x)) trunc(x) else x   # cast first
  })
  float_dtype <- function(d, params) reduce_float_dtype(d)
  register_reduce_op("mean", "Mean", "mean", float_dtype)
  register_reduce_op("var", "Var", "var", float_dtype)
  register_reduce_op("std", "Std", "std", float_dtype)
  register_reduce_op("logsumexp", "Logsumexp", "logsumexp", float_dtype)
  register_extreme_op("max", "Max")
  register_extreme_op("min", "Min")
  register_reduce_op("any", "Any", "any", function(d, params) "bool", grad = FALSE,
                     post = function(out, x, params) out != 0)
  register_reduce_op("all", "All", "all", function(d, params) "bool", grad = FALSE,
                     post = function(out, x, params) out != 0)
  register_reduce_op("count_nonzero", "CountNonzero", "count_nonzero", function(d, params) "int32",
                     grad = FALSE, post = function(out, x, params) reduce_int_result(out))
  register_arg_op("argmax", "Argmax")
  register_arg_op("argmin", "Argmin")
  register_softmax_op("softmax", "Softmax", log = FALSE)
  register_softmax_op("log_softmax", "LogSoftmax", log = TRUE)
  register_cumulative_op("cumsum", "Cumsum", prod = FALSE)
  register_cumulative_op("cumprod", "Cumprod", prod = TRUE)
  register_norm_op()
}

# ---- softmax ------------------------------------------------------------------------

#' @noRd
register_softmax_op <- function(name, class_name, log) {
  fun <- paste0("op_", name)
  axes_of <- function(params, rank) {
    axis <- if ("axis" %in% names(params)) params$axis else -1L
    reduce_axes(axis, rank, fun)
  }
  register_op(
    name, class_name,
    infer = function(specs, params) {
      s <- reduce_x_spec(specs, fun)
      axes_of(params, length(s$shape))
      op_spec(s$shape, reduce_float_dtype(s$dtype))
    },
    forward = function(values, params) {
      x <- values[[1L]]
      shape <- value_shape(x)
      flags <- reduce_flags(length(shape), axes_of(params, length(shape)))
      if (!is.double(x)) storage.mode(x) <- "double"
      y <- reduce_with_shape(cpp_softmax(x, shape, flags, log, mh_threads()), shape)
      list(output = y, cache = list(y = y, shape = shape, flags = flags))
    },
    backward = function(grad_output, cache, params) {
      dx <- cpp_softmax_backward(cache$y, reduce_grad_double(grad_output), cache$shape, cache$flags, log, mh_threads())
      list(reduce_with_shape(dx, cache$shape))
    },
    mask = "elementwise")
}

# ---- cumulative ops -------------------------------------------------------------------

#' @noRd
register_cumulative_op <- function(name, class_name, prod) {
  fun <- paste0("op_", name)
  out_dtype <- function(d, params) {
    if (!is.null(params$dtype)) return(params$dtype)
    if (identical(d, "bool")) "int32" else d
  }
  register_op(
    name, class_name,
    infer = function(specs, params) {
      s <- reduce_x_spec(specs, fun)
      if (is.null(params$axis)) {
        n <- if (anyNA(s$shape)) NA_integer_ else prod(s$shape)
        return(op_spec(n, out_dtype(s$dtype, params)))
      }
      normalize_axis(params$axis, length(s$shape), "axis", fun)
      op_spec(s$shape, out_dtype(s$dtype, params))
    },
    forward = function(values, params) {
      x <- values[[1L]]
      shape <- value_shape(x)
      d <- params$dtype
      if (!is.null(d) && is_int_dtype(d) && is.double(x)) x <- trunc(x)   # cast first, as Keras
      if (is.null(params$axis)) {
        xr <- if (length(shape) > 1L) aperm(array(x, shape)) else x   # C order, as keras3
        dims <- length(x)
        axis0 <- 0L
        out_shape <- length(x)
      } else {
        xr <- x
        dims <- shape
        axis0 <- normalize_axis(params$axis, length(shape), "axis", fun)
        out_shape <- shape
      }
      y <- cpp_cumulative(xr, dims, axis0, prod, mh_threads())
      int_out <- if (is.null(d)) !is.double(x) else is_int_dtype(d)
      out <- if (int_out) reduce_int_result(y) else y
      list(output = reduce_with_shape(out, out_shape),
           cache = list(x = xr, y = y, dims = dims, axis0 = axis0, shape = shape))
    },
    backward = function(grad_output, cache, params) {
      if (!is.null(params$dtype) && is_int_dtype(params$dtype)) return(list(NULL))
      x <- cache$x
      if (!is.double(x)) storage.mode(x) <- "double"
      dx <- cpp_cumulative_backward(x, cache$y, reduce_grad_double(grad_output), cache$dims, cache$axis0, prod,
                                    mh_threads())
      shape <- cache$shape
      if (is.null(params$axis) && length(shape) > 1L) dx <- aperm(array(dx, rev(shape)))
      list(reduce_with_shape(dx, shape))
    })
}

# ---- norms ------------------------------------------------------------------------------

# The plan of op_norm(): list(kind = "vector"/"matrix", axes0, ord) from the
# rank; errors name `ord` or `axis`.
#' @noRd
norm_plan <- function(ord, axis, rank) {
  fun <- "op_norm"
  if (is.null(axis)) {
    if (is.null(ord)) return(list(kind = "vector", axes0 = seq_len(rank) - 1L, ord = 2))
    if (rank == 1L) {
      axes0 <- 0L
    } else if (rank == 2L) {
      axes0 <- c(0L, 1L)
    } else {
      abort_arg("axis", sprintf(paste0("one or two axes in %s() when `ord` is given for a tensor of rank %d ",
                                       "(NULL means a vector norm for rank 1, a matrix norm for rank 2)"),
                                fun, rank), "NULL")
    }
  } else {
    axes0 <- normalize_axis(axis, rank, "axis", fun)
  }
  if (length(axes0) == 1L) {
    if (is.character(ord)) {
      abort_arg("ord", sprintf("a number (the order of a vector norm) in %s() for one axis", fun),
                describe_value(ord))
    }
    return(list(kind = "vector", axes0 = axes0, ord = if (is.null(ord)) 2 else ord))
  }
  if (length(axes0) != 2L) abort_arg("axis", sprintf("one or two axes in %s()", fun), paste(axis, collapse = ", "))
  ok <- is.null(ord) || (is.character(ord) && ord %in% c("fro", "nuc")) ||
    (is.numeric(ord) && ord %in% c(Inf, -Inf, 1, -1, 2, -2))
  if (!ok) {
    abort_arg("ord", sprintf("NULL, \"fro\", \"nuc\", Inf, -Inf, 1, -1, 2 or -2 for a matrix norm in %s()", fun),
              describe_value(ord))
  }
  list(kind = "matrix", axes0 = axes0, ord = if (is.null(ord)) "fro" else ord)
}

#' @noRd
norm_ord_arg <- function(ord) {
  if (is.null(ord)) return(NULL)
  if (is.character(ord) && length(ord) == 1L && !is.na(ord) && ord %in% c("fro", "nuc")) return(ord)
  if (is.numeric(ord) && !is.object(ord) && length(ord) == 1L && !is.na(ord)) return(as.double(ord))
  abort_arg("ord", "NULL, a number (Inf and -Inf included), \"fro\" or \"nuc\" in op_norm()", describe_value(ord))
}

# The vector-norm kernel of an order.
#' @noRd
vector_norm_code <- function(ord) {
  if (ord == 2) "norm2" else if (ord == Inf) "max_abs" else if (ord == -Inf) "min_abs" else if (ord == 0) {
    "count_nonzero"
  } else if (ord == 1) "sum_abs" else "norm_p"
}

#' @noRd
register_norm_op <- function() {
  register_op(
    "norm", "Norm",
    infer = function(specs, params) {
      s <- reduce_x_spec(specs, "op_norm")
      pl <- norm_plan(params$ord, params$axis, length(s$shape))
      op_spec(reduce_out_shape(s$shape, pl$axes0, isTRUE(params$keepdims)), reduce_float_dtype(s$dtype))
    },
    forward = function(values, params) {
      x <- values[[1L]]
      if (!is.double(x)) storage.mode(x) <- "double"
      shape <- value_shape(x)
      pl <- norm_plan(params$ord, params$axis, length(shape))
      out_shape <- reduce_out_shape(shape, pl$axes0, isTRUE(params$keepdims))
      if (pl$kind == "vector" || identical(pl$ord, "fro")) {
        code <- if (pl$kind == "vector") vector_norm_code(pl$ord) else "norm2"
        if (pl$kind == "vector" && code %in% c("max_abs", "min_abs")) reduce_check_nonempty(shape, pl$axes0, "op_norm")
        flags <- reduce_flags(length(shape), pl$axes0)
        p <- if (is.numeric(pl$ord)) pl$ord else 2
        out <- cpp_reduce(x, shape, flags, .reduce_codes[[code]], p, mh_threads())
        return(list(output = reduce_with_shape(out, out_shape),
                    cache = list(kind = "reduce", x = x, out = out, shape = shape, flags = flags, code = code,
                                 p = p)))
      }
      if (is.numeric(pl$ord) && abs(pl$ord) %in% c(1, Inf)) {
        # max/min over one axis of the sums of |x| over the other
        rows <- pl$axes0[1L]; cols <- pl$axes0[2L]
        sum_axis <- if (abs(pl$ord) == 1) rows else cols
        ext_axis <- if (abs(pl$ord) == 1) cols else rows
        reduce_check_nonempty(shape, ext_axis, "op_norm")
        f1 <- reduce_flags(length(shape), sum_axis)
        s1 <- cpp_reduce(x, shape, f1, .reduce_codes[["sum_abs"]], 0, mh_threads())
        shape1 <- shape
        shape1[sum_axis + 1L] <- 1L
        f2 <- reduce_flags(length(shape), ext_axis)
        code2 <- if (pl$ord > 0) "max" else "min"
        out <- cpp_reduce(s1, shape1, f2, .reduce_codes[[code2]], 0, mh_threads())
        return(list(output = reduce_with_shape(out, out_shape),
                    cache = list(kind = "two", x = x, s1 = s1, out = out, shape = shape, shape1 = shape1,
                                 f1 = f1, f2 = f2, code2 = code2)))
      }
      res <- svd_norm(x, shape, pl$axes0, pl$ord)
      list(output = reduce_with_shape(res$out, out_shape), cache = c(list(kind = "svd", shape = shape), res))
    },
    backward = function(grad_output, cache, params) {
      g <- reduce_grad_double(grad_output)
      if (cache$kind == "reduce") {
        dx <- cpp_reduce_backward(cache$x, cache$shape, cache$flags, .reduce_codes[[cache$code]], cache$p,
                                  cache$out, g, mh_threads())
      } else if (cache$kind == "two") {
        ds1 <- cpp_reduce_backward(cache$s1, cache$shape1, cache$f2, .reduce_codes[[cache$code2]], 0, cache$out,
                                   g, mh_threads())
        dx <- cpp_reduce_backward(cache$x, cache$shape, cache$f1, .reduce_codes[["sum_abs"]], 0, cache$s1, ds1,
                                  mh_threads())
      } else {
        dx <- svd_norm_backward(cache, g)
      }
      list(reduce_with_shape(dx, cache$shape))
    })
}

# Matrix norms from singular values ("nuc", 2, -2): the two axes are moved
# first (each matrix contiguous, rows = the first given axis), one svd() per
# matrix (NaN for a matrix holding Inf or NaN). Returns list(out, dmat, perm):
# dmat[, , b] is d norm / d matrix b (U diag(w) V^T).
#' @noRd
svd_norm <- function(x, shape, axes0, ord) {
  rank <- length(shape)
  perm <- c(axes0 + 1L, setdiff(seq_len(rank), axes0 + 1L))
  xp <- aperm(array(x, shape), perm)
  m <- shape[axes0[1L] + 1L]
  n <- shape[axes0[2L] + 1L]
  batch <- length(x) %/% max(1, m * n)
  if (m * n == 0) batch <- prod(shape[-(axes0 + 1L)])
  out <- numeric(batch)
  dmat <- array(0, c(m, n, batch))
  for (b in seq_len(batch)) {
    if (m * n == 0) next
    M <- matrix(xp[((b - 1) * m * n + 1):(b * m * n)], m, n)
    if (!all(is.finite(M))) {   # Inf/NaN: no SVD (NumPy fails to converge); NaN, gradient NaN
      out[b] <- NaN
      dmat[, , b] <- NaN
      next
    }
    sv <- svd(M)
    d <- sv$d
    w <- numeric(length(d))
    if (identical(ord, "nuc")) {
      out[b] <- sum(d)
      w[d > 0] <- 1
    } else if (ord == 2) {
      out[b] <- d[1L]
      w[1L] <- 1
    } else {
      out[b] <- d[length(d)]
      w[length(d)] <- 1
    }
    dmat[, , b] <- sv$u %*% (w * t(sv$v))
  }
  list(out = out, dmat = dmat, perm = perm)
}

#' @noRd
svd_norm_backward <- function(cache, g) {
  shape <- cache$shape
  d <- dim(cache$dmat)
  scaled <- cache$dmat * rep(as.vector(g), each = d[1L] * d[2L])
  dxp <- array(scaled, shape[cache$perm])
  as.vector(aperm(dxp, order(cache$perm)))
}

# ---- the exported functions ------------------------------------------------------------

#' Reductions over axes
#'
#' As in keras3: reduce `x` over `axis` (1-based; negative values count from
#' the end; `NULL` reduces over every axis). On R arrays the result is
#' computed at once; on symbolic tensors (inside [keras_model()] or a custom
#' layer's `call()`) an operation is recorded that models run and
#' differentiate. The work is done in C++ on R's own memory layout, in
#' parallel with bitwise identical results for any thread count.
#'
#' `op_sum()`, `op_prod()`, `op_mean()`, `op_max()`, `op_min()`: the sum,
#' product, mean, maximum and minimum. `op_var()` and `op_std()`: the
#' population variance and standard deviation (divisor N, as Keras; computed
#' in two passes). `op_any()` and `op_all()`: whether any / all elements are
#' nonzero (`TRUE`); `op_count_nonzero()` counts them.
#'
#' Dtypes follow Keras: sums and products of booleans are int32; means,
#' variances and standard deviations of integers are float32; `op_max()`
#' and `op_min()` keep the dtype; `op_any()`/`op_all()` give bool and
#' `op_count_nonzero()` int32.
#'
#' Gradients: the gradient of `op_max()`/`op_min()` is split evenly among
#' tied maximal (minimal) elements, as Keras's TensorFlow backend and JAX
#' do; when `initial` is the result, `x` gets none. The gradient of
#' `op_prod()` is exact with zeros; that of `op_std()` is 0 where the
#' standard deviation is 0. `op_any()`, `op_all()` and `op_count_nonzero()`
#' have none.
#'
#' @param x A tensor: an array, a number, a symbolic tensor or a variable.
#' @param axis `NULL` (every axis) or the axes to reduce (whole numbers,
#'   1-based; -1 is the last axis).
#' @param keepdims If `TRUE`, the reduced axes are kept with size 1.
#' @param initial `NULL` or a number: the result is at least (`op_max()`) or
#'   at most (`op_min()`) `initial`; required to reduce an empty axis.
#' @param dtype `NULL` or the dtype of the result of `op_prod()`
#'   (`"float32"`, `"float64"`, `"int32"`, `"int64"`).
#' @returns An array (a plain number for a full reduction without
#'   `keepdims`), or a symbolic tensor.
#' @family ops
#' @family reduction ops
#' @export
#' @examples
#' x <- array(1:24, c(2, 3, 4))
#' op_sum(x)
#' op_sum(x, axis = 1)                   # shape (3, 4)
#' op_mean(x, axis = c(1, 3), keepdims = TRUE)
#' op_max(x, axis = -1)
#' op_std(c(1, 2, 3, 4))
op_sum <- function(x, axis = NULL, keepdims = FALSE) {
  reduce_x_supplied(missing(x), "op_sum")
  op_call("sum", list(x = x), list(axis = reduce_axis_arg(axis, "op_sum"),
                                   keepdims = reduce_flag_arg(keepdims, "keepdims", "op_sum")))
}

#' @rdname op_sum
#' @export
op_prod <- function(x, axis = NULL, keepdims = FALSE, dtype = NULL) {
  reduce_x_supplied(missing(x), "op_prod")
  op_call("prod", list(x = x), list(axis = reduce_axis_arg(axis, "op_prod"),
                                    keepdims = reduce_flag_arg(keepdims, "keepdims", "op_prod"),
                                    dtype = reduce_dtype_arg(dtype, "op_prod")))
}

#' @rdname op_sum
#' @export
op_mean <- function(x, axis = NULL, keepdims = FALSE) {
  reduce_x_supplied(missing(x), "op_mean")
  op_call("mean", list(x = x), list(axis = reduce_axis_arg(axis, "op_mean"),
                                    keepdims = reduce_flag_arg(keepdims, "keepdims", "op_mean")))
}

#' @rdname op_sum
#' @export
op_max <- function(x, axis = NULL, keepdims = FALSE, initial = NULL) {
  reduce_x_supplied(missing(x), "op_max")
  op_call("max", list(x = x), list(axis = reduce_axis_arg(axis, "op_max"),
                                   keepdims = reduce_flag_arg(keepdims, "keepdims", "op_max"),
                                   initial = reduce_initial_arg(initial, "op_max")))
}

#' @rdname op_sum
#' @export
op_min <- function(x, axis = NULL, keepdims = FALSE, initial = NULL) {
  reduce_x_supplied(missing(x), "op_min")
  op_call("min", list(x = x), list(axis = reduce_axis_arg(axis, "op_min"),
                                   keepdims = reduce_flag_arg(keepdims, "keepdims", "op_min"),
                                   initial = reduce_initial_arg(initial, "op_min")))
}

#' @noRd
reduce_initial_arg <- function(initial, op) {
  if (is.null(initial)) return(NULL)
  if (!is.numeric(initial) || is.object(initial) || length(initial) != 1L || is.na(initial)) {
    abort_arg("initial", sprintf("NULL or a single number in %s()", op), describe_value(initial))
  }
  as.double(initial)
}

#' @rdname op_sum
#' @export
op_var <- function(x, axis = NULL, keepdims = FALSE) {
  reduce_x_supplied(missing(x), "op_var")
  op_call("var", list(x = x), list(axis = reduce_axis_arg(axis, "op_var"),
                                   keepdims = reduce_flag_arg(keepdims, "keepdims", "op_var")))
}

#' @rdname op_sum
#' @export
op_std <- function(x, axis = NULL, keepdims = FALSE) {
  reduce_x_supplied(missing(x), "op_std")
  op_call("std", list(x = x), list(axis = reduce_axis_arg(axis, "op_std"),
                                   keepdims = reduce_flag_arg(keepdims, "keepdims", "op_std")))
}

#' @rdname op_sum
#' @export
op_any <- function(x, axis = NULL, keepdims = FALSE) {
  reduce_x_supplied(missing(x), "op_any")
  op_call("any", list(x = x), list(axis = reduce_axis_arg(axis, "op_any"),
                                   keepdims = reduce_flag_arg(keepdims, "keepdims", "op_any")))
}

#' @rdname op_sum
#' @export
op_all <- function(x, axis = NULL, keepdims = FALSE) {
  reduce_x_supplied(missing(x), "op_all")
  op_call("all", list(x = x), list(axis = reduce_axis_arg(axis, "op_all"),
                                   keepdims = reduce_flag_arg(keepdims, "keepdims", "op_all")))
}

#' @rdname op_sum
#' @export
op_count_nonzero <- function(x, axis = NULL) {
  reduce_x_supplied(missing(x), "op_count_nonzero")
  op_call("count_nonzero", list(x = x), list(axis = reduce_axis_arg(axis, "op_count_nonzero"), keepdims = FALSE))
}

#' Positions of the maximum and minimum
#'
#' As keras3: the position of the first maximal (minimal) element along
#' `axis`, 1-based unless `zero_indexed = TRUE`, as int32 (R integers). With
#' `axis = NULL` the position is in `x` flattened in row-major (C) order,
#' the last axis fastest, exactly as keras3 returns it (not R's
#' column-major order: use `which.max()` for that). NaN counts as the
#' extreme value (the first NaN is returned, as NumPy). No gradient.
#'
#' @inheritParams op_sum
#' @param axis `NULL` (the flattened tensor) or one axis (1-based; -1 is the
#'   last).
#' @param zero_indexed If `TRUE`, positions start at 0 (as in Python).
#' @returns An integer array (a single integer without `axis`), or a
#'   symbolic tensor.
#' @family ops
#' @family reduction ops
#' @export
#' @examples
#' x <- rbind(c(1, 9, 3), c(7, 2, 9))
#' op_argmax(x, axis = 2)                 # 2 3
#' op_argmin(x, axis = 1)                 # 1 2 1
#' op_argmax(x)                           # 2: the first 9 in row-major order
op_argmax <- function(x, axis = NULL, keepdims = FALSE, zero_indexed = FALSE) {
  reduce_x_supplied(missing(x), "op_argmax")
  op_call("argmax", list(x = x), list(axis = reduce_axis_arg(axis, "op_argmax", single = TRUE),
                                      keepdims = reduce_flag_arg(keepdims, "keepdims", "op_argmax"),
                                      zero_indexed = reduce_flag_arg(zero_indexed, "zero_indexed", "op_argmax")))
}

#' @rdname op_argmax
#' @export
op_argmin <- function(x, axis = NULL, keepdims = FALSE, zero_indexed = FALSE) {
  reduce_x_supplied(missing(x), "op_argmin")
  op_call("argmin", list(x = x), list(axis = reduce_axis_arg(axis, "op_argmin", single = TRUE),
                                      keepdims = reduce_flag_arg(keepdims, "keepdims", "op_argmin"),
                                      zero_indexed = reduce_flag_arg(zero_indexed, "zero_indexed", "op_argmin")))
}

#' Cumulative sums and products
#'
#' As keras3: `op_cumsum()` and `op_cumprod()` along `axis`; with
#' `axis = NULL` along `x` flattened in row-major (C) order (the last axis
#' fastest, as keras3), giving a 1-d result. Booleans give int32. The
#' gradient of `op_cumprod()` is exact with zeros.
#'
#' @inheritParams op_sum
#' @param axis `NULL` (the flattened tensor) or one axis (1-based; -1 is the
#'   last).
#' @param dtype `NULL` (the dtype of `x`; int32 for bool) or the dtype of the
#'   result: `"float32"`, `"float64"`, `"int32"` or `"int64"` (floats are
#'   truncated first, as Keras casts).
#' @returns An array of the shape of `x` (1-d for `axis = NULL`), or a
#'   symbolic tensor.
#' @family ops
#' @export
#' @examples
#' op_cumsum(c(1, 2, 3, 4))
#' op_cumprod(matrix(1:6, 2), axis = 2)
op_cumsum <- function(x, axis = NULL, dtype = NULL) {
  reduce_x_supplied(missing(x), "op_cumsum")
  op_call("cumsum", list(x = x), list(axis = reduce_axis_arg(axis, "op_cumsum", single = TRUE),
                                      dtype = reduce_dtype_arg(dtype, "op_cumsum")))
}

#' @rdname op_cumsum
#' @export
op_cumprod <- function(x, axis = NULL, dtype = NULL) {
  reduce_x_supplied(missing(x), "op_cumprod")
  op_call("cumprod", list(x = x), list(axis = reduce_axis_arg(axis, "op_cumprod", single = TRUE),
                                       dtype = reduce_dtype_arg(dtype, "op_cumprod")))
}

#' Softmax, log-softmax and log-sum-exp
#'
#' As keras3. `op_softmax()` computes `exp(x - max) / sum(exp(x - max))`
#' over `axis` (one axis or several, treated as one group; `NULL` = every
#' axis), `op_log_softmax()` its logarithm `x - max - log(sum(exp(x - max)))`,
#' and `op_logsumexp()` reduces `x` to `log(sum(exp(x)))`, all computed
#' after subtracting the maximum so that large inputs (1e4) do not overflow.
#' Entries of `-Inf` (masked) get probability 0; a group of only `-Inf`
#' gives `NaN` (as NumPy and Keras), and its log-sum-exp is `-Inf`.
#' Integer inputs give float32. (Keras also warns about a softmax over an
#' axis of size 1, which is always 1; multihead does not.)
#'
#' @inheritParams op_sum
#' @param axis The axes of each softmax group (default the last axis);
#'   `NULL` for every axis.
#' @returns An array (of the shape of `x` for the softmaxes), or a symbolic
#'   tensor.
#' @family ops
#' @export
#' @examples
#' op_softmax(c(-1, 0, 1))
#' op_log_softmax(matrix(1:6, 2))          # over the last axis (rows)
#' op_logsumexp(c(1000, 1000))              # 1000 + log(2)
op_softmax <- function(x, axis = -1L) {
  reduce_x_supplied(missing(x), "op_softmax")
  op_call("softmax", list(x = x), list(axis = reduce_axis_arg(axis, "op_softmax")))
}

#' @rdname op_softmax
#' @export
op_log_softmax <- function(x, axis = -1L) {
  reduce_x_supplied(missing(x), "op_log_softmax")
  op_call("log_softmax", list(x = x), list(axis = reduce_axis_arg(axis, "op_log_softmax")))
}

#' @rdname op_softmax
#' @export
op_logsumexp <- function(x, axis = NULL, keepdims = FALSE) {
  reduce_x_supplied(missing(x), "op_logsumexp")
  op_call("logsumexp", list(x = x), list(axis = reduce_axis_arg(axis, "op_logsumexp"),
                                         keepdims = reduce_flag_arg(keepdims, "keepdims", "op_logsumexp")))
}

#' Vector and matrix norms
#'
#' As keras3 (Keras 3's `ops.norm`, NumPy's `linalg.norm`). With one axis,
#' vector norms: `ord = NULL` or `2` the Euclidean norm, `1` the sum of
#' absolute values, `Inf`/`-Inf` the largest/smallest absolute value, `0`
#' the number of nonzero elements, any other `p` `sum(abs(x)^p)^(1/p)`.
#' With two axes (rows, then columns), matrix norms: `NULL` or `"fro"`
#' Frobenius, `"nuc"` nuclear (sum of singular values), `1`/`-1` the
#' largest/smallest column sum of absolute values, `Inf`/`-Inf` the
#' largest/smallest row sum, `2`/`-2` the largest/smallest singular value.
#' With `axis = NULL`: the 2-norm of every element when `ord` is `NULL`,
#' otherwise a vector norm for rank 1 and a matrix norm for rank 2.
#'
#' Unlike keras3, which truncates a fractional `ord` to an integer, `ord`
#' is used as given (as Keras 3 and NumPy do). The 2-norm is rescaled when
#' the sum of squares would overflow or underflow. Gradients: 0 at a zero
#' vector for the 2-norm, 0 at zero elements for p-norms, split evenly
#' among ties for `Inf`/`-Inf` and the matrix `1`/`Inf` norms; through the
#' singular vectors for `"nuc"`, `2`, `-2` (whose value is `NaN` for a
#' matrix holding `Inf` or `NaN`: it has no singular value decomposition).
#'
#' @inheritParams op_sum
#' @param ord `NULL`, a number (`Inf`, `-Inf` included), `"fro"` or `"nuc"`.
#' @param axis `NULL`, one axis (vector norms) or two axes (matrix norms).
#' @returns An array, or a symbolic tensor; float32 for integer input.
#' @family ops
#' @export
#' @examples
#' x <- matrix(c(3, 4, 0, -12), 2)
#' op_norm(x)                   # Frobenius: 13
#' op_norm(x, axis = 1)         # each column's 2-norm: 5 12
#' op_norm(x, ord = 1, axis = c(1, 2))
op_norm <- function(x, ord = NULL, axis = NULL, keepdims = FALSE) {
  reduce_x_supplied(missing(x), "op_norm")
  op_call("norm", list(x = x), list(ord = norm_ord_arg(ord), axis = reduce_axis_arg(axis, "op_norm", max_len = 2L),
                                    keepdims = reduce_flag_arg(keepdims, "keepdims", "op_norm")))
}

# ---- R's Summary group and mean() on symbolic tensors and variables -----------------------

# The op behind each Summary function, and the elementwise op combining the
# reductions of several arguments.
.summary_ops <- list(sum = c("sum", "add"), prod = c("prod", "multiply"), max = c("max", "maximum"),
                     min = c("min", "minimum"), any = c("any", "logical_or"), all = c("all", "logical_and"))

#' Summaries of symbolic tensors and variables
#'
#' `sum()`, `prod()`, `max()`, `min()`, `any()` and `all()` (R's Summary
#' group) and `mean()` reduce a symbolic tensor over every axis as
#' [op_sum()], [op_prod()], [op_max()], [op_min()], [op_any()], [op_all()]
#' and [op_mean()] do (recording an operation); on a variable outside a
#' traced `call()` they compute with its value. Several arguments are each
#' reduced and then combined. `range()` is not supported.
#'
#' @param x A symbolic tensor or a variable.
#' @param ... Tensors, variables, arrays or numbers (for `mean()`: nothing
#'   else than `na.rm = FALSE`).
#' @param na.rm Must be `FALSE`: tensors have no missing values (NaN is a
#'   value).
#' @returns A symbolic tensor of rank 0, or a number.
#' @name tensor-summaries
#' @family ops
#' @examples
#' x <- keras_input(shape = c(4, 8))
#' sum(x)
#' mean(x)$shape
NULL

#' @rdname tensor-summaries
#' @export
Summary.multihead_tensor <- function(..., na.rm = FALSE) {
  g <- .Generic
  ops <- .summary_ops[[g]]
  if (is.null(ops)) {
    abort_msg(sprintf("`%s()` is not supported on tensors.", g), class = "multihead_error_unsupported")
  }
  if (!identical(na.rm, FALSE)) {
    abort_arg("na.rm", sprintf("FALSE in %s() on tensors (tensors have no NA; NaN is a value)", g),
              describe_value(na.rm))
  }
  args <- list(...)
  parts <- lapply(args, function(a) op_call(ops[[1L]], list(x = a), list(axis = NULL, keepdims = FALSE)))
  out <- parts[[1L]]
  if (length(parts) > 1L && !any(vapply(parts, is_symbolic, logical(1)))) {
    return(do.call(g, unname(parts)))   # eager values: R's own summary of the reductions
  }
  if (length(parts) > 1L) {
    if (is.null(.op_defs[[ops[[2L]]]])) {
      abort_msg(sprintf("`%s()` of several tensors needs op \"%s\"; reduce each tensor on its own.", g, ops[[2L]]),
                class = "multihead_error_unsupported")
    }
    for (p in parts[-1L]) out <- op_call(ops[[2L]], list(x1 = out, x2 = p))
  }
  out
}

#' @rdname tensor-summaries
#' @export
Summary.multihead_variable <- Summary.multihead_tensor

#' @rdname tensor-summaries
#' @export
mean.multihead_tensor <- function(x, ...) {
  dots <- list(...)
  if (length(dots) && !(identical(names(dots), "na.rm") && identical(dots$na.rm, FALSE))) {
    abort_arg("...", "empty (or na.rm = FALSE) in mean() on tensors; use op_mean() for axes",
              paste(names(dots), collapse = ", "))
  }
  op_mean(x)
}

#' @rdname tensor-summaries
#' @export
mean.multihead_variable <- mean.multihead_tensor

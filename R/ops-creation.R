# Tensor-creation ops: op_arange(), op_ones(), op_zeros(), op_full(),
# op_ones_like(), op_zeros_like(), op_full_like(), op_eye(), op_identity(),
# and op_tril() / op_triu() (which keep a triangle of a tensor).
#
# Creation from plain numbers (op_arange(), op_ones(), op_zeros(), op_eye(),
# op_identity(), op_full() with a number) computes at once; inside a traced
# call() the result is a graph constant (traced_constant()), so indexing it
# with `newaxis`, or a layer called on it, is recorded as in keras3. The `*_like` ops follow their tensor: on a symbolic
# tensor (whose shape may have unknown sizes) they record a node; their
# result does not depend on the tensor's values, so no gradient flows to it
# (op_full()/op_full_like() pass a gradient to a float `fill_value`).
# Values are held in the result's dtype as op_cast() does (float32 rounded
# to single precision, int32 as integers, int64 as whole doubles since R has
# no 64-bit integers, bools as logicals).

# ---- helpers -------------------------------------------------------------------

# A shape for a new array: whole numbers >= 0, all known.
#' @noRd
shp_check_new_shape <- function(shape, fun) {
  what <- sprintf("a shape of whole numbers >= 0 in %s()", fun)
  if (is.list(shape) && !is.object(shape)) {
    if (!all(vapply(shape, function(v) is.null(v) || length(v) == 1L && (is.numeric(v) || is.logical(v)),
                    logical(1)))) {
      abort_arg("shape", what, describe_value(shape))
    }
    shape <- vapply(shape, function(v) if (is.null(v)) NA_real_ else as.double(v), double(1))
  }
  if (is.logical(shape) && length(shape) && all(is.na(shape))) shape <- as.double(shape)
  if (!is.numeric(shape) || is.object(shape) || length(dim(shape)) > 1L) {
    abort_arg("shape", what, describe_value(shape))
  }
  if (anyNA(shape)) {
    abort_arg("shape", sprintf(paste0("known sizes in %s(), which makes an array (NA or NULL is an unknown ",
                                      "size; %s_like() follows a tensor whose size is unknown)"),
                               fun, fun), fmt_shape(shape))
  }
  if (any(!is.finite(shape)) || any(shape != round(shape)) || any(shape < 0) ||
      any(shape > .Machine$integer.max)) {
    abort_arg("shape", what, fmt_shape(shape))
  }
  shape <- as.integer(shape)
  check_size(shape, "shape", sprintf("the result of %s()", fun))
  shape
}

# The dtype of a tensor operand (symbolic, variable or R value).
#' @noRd
shp_operand_dtype <- function(x) {
  if (is_symbolic(x)) return(x$dtype)
  if (is_variable(x)) return(variable_dtype(x))
  r_value_dtype(x)
}

# `n` copies of `value` (a number) in `dtype`, with shape `shape`.
#' @noRd
shp_filled <- function(value, shape, dtype, arg = "shape") {
  v <- switch(dtype, float32 = , float64 = , int64 = as.double(value), int32 = as.integer(value),
              bool = as.logical(value))
  shp_set_shape(shp_alloc(rep.int(v, prod(shape)), arg, shape), shape)
}

# Evaluates `expr` (which allocates a result of `shape`), turning R's
# allocation failure into an error naming `arg`.
#' @noRd
shp_alloc <- function(expr, arg, shape) {
  tryCatch(expr, error = function(e) {
    if (!grepl("cannot allocate|vector memory", conditionMessage(e))) stop(e)
    abort_arg(arg, sprintf("small enough to allocate a result of shape %s", fmt_shape(shape)),
              conditionMessage(e))
  })
}

# TRUE when a fill value of shape `fill` broadcasts to `target` (NA sizes
# are taken to fit).
#' @noRd
shp_fill_fits <- function(fill, target) {
  r <- length(target)
  n <- length(fill)
  if (n > r) return(FALSE)
  t <- target[seq_len(n) + r - n]
  all(is.na(fill) | is.na(t) | fill == 1L | fill == t)
}

# A single number argument (start, end, step of op_arange()).
#' @noRd
shp_check_scalar <- function(x, arg, fun) {
  if (!is.numeric(x) || is.object(x) || length(x) != 1L || is.na(x) || !is.finite(x)) {
    abort_arg(arg, sprintf("a single finite number in %s()", fun), describe_value(x))
  }
  x
}

# The triangle mask of the last two axes (TRUE = kept), as long as the value.
#' @noRd
shp_tri_mask <- function(shape, k, lower) {
  r <- length(shape)
  d <- shape[c(r - 1L, r)]
  off <- .col(d) - .row(d)
  keep <- if (lower) off <= k else off >= k
  lead <- prod(shape[seq_len(r - 2L)])
  if (lead == 1) as.vector(keep) else rep(as.vector(keep), each = lead)
}

# ---- registration ------------------------------------------------------------------

#' @noRd
register_creation_ops <- function() {
  register_op("full", "Full",
    infer = function(specs, params) {
      f <- specs$fill_value
      if (!shp_fill_fits(f$shape, params$shape)) {
        abort_op("op_full", sprintf("`fill_value` does not broadcast to `shape` %s", fmt_shape(params$shape)),
                 specs)
      }
      op_spec(params$shape, params$dtype)
    },
    forward = function(values, params) {
      f <- values$fill_value
      fs <- value_shape(f)
      if (!shp_fill_fits(fs, params$shape)) {
        abort_op("op_full", sprintf("`fill_value` does not broadcast to `shape` %s", fmt_shape(params$shape)),
                 shp_value_specs(values))
      }
      out <- shp_alloc(broadcast_value(f, fs, params$shape), "shape", params$shape)
      list(output = shp_cast_value(out, params$dtype, "fill_value", "op_full"), cache = fs)
    },
    backward = function(grad, cache, params) list(reduce_to_shape(grad, cache)))

  register_op("full_like", "FullLike",
    infer = function(specs, params) {
      s <- specs$x$shape
      if (!shp_fill_fits(specs$fill_value$shape, s)) {
        abort_op("op_full_like", "`fill_value` does not broadcast to the shape of `x`", specs)
      }
      op_spec(s, params$dtype)
    },
    forward = function(values, params) {
      f <- values$fill_value
      fs <- value_shape(f)
      s <- value_shape(values$x)
      if (!shp_fill_fits(fs, s)) {
        abort_op("op_full_like", "`fill_value` does not broadcast to the shape of `x`", shp_value_specs(values))
      }
      out <- broadcast_value(f, fs, s)
      list(output = shp_cast_value(out, params$dtype, "fill_value", "op_full_like"), cache = fs)
    },
    backward = function(grad, cache, params) list(NULL, reduce_to_shape(grad, cache)))

  for (kind in c("ones", "zeros")) local({
    what <- kind
    value <- if (what == "ones") 1 else 0
    register_op(paste0(what, "_like"), if (what == "ones") "OnesLike" else "ZerosLike",
      infer = function(specs, params) op_spec(specs$x$shape, params$dtype),
      forward = function(values, params) {
        list(output = shp_filled(value, value_shape(values$x), params$dtype), cache = NULL)
      },
      backward = function(grad, cache, params) list(NULL))
  })

  for (lower_tri in c(TRUE, FALSE)) local({
    lower <- lower_tri   # fixed now: the closures below run later
    name <- if (lower) "tril" else "triu"
    fun <- paste0("op_", name)
    register_op(name, if (lower) "Tril" else "Triu",
      infer = function(specs, params) {
        if (length(specs$x$shape) < 2L) {
          abort_op(fun, "`x` must have rank >= 2 (the triangle is taken on its last two axes)", specs)
        }
        op_spec(specs$x$shape, specs$x$dtype)
      },
      forward = function(values, params) {
        x <- values$x
        keep <- shp_tri_mask(value_shape(x), params$k, lower)
        x[!keep] <- if (is.logical(x)) FALSE else 0L
        list(output = x, cache = keep)
      },
      backward = function(grad, cache, params) {
        grad[!cache] <- 0
        list(grad)
      })
  })
}

# ---- op_arange -------------------------------------------------------------------------

#' Evenly spaced values
#'
#' `op_arange()` follows keras3's R convention, not Python's: with one
#' argument, `op_arange(n)` is `1, 2, ..., n`; the `end` is included
#' (`include_end = TRUE`, the default): `op_arange(start, end, step)` is
#' `start, start + step, ...`, the values of the interval `[start, end]` as
#' keras3 documents it (like `seq(start, end, by = step)`; keras3 itself
#' computes NumPy's `arange(start, end + step, step)`, which also yields
#' `start + k * step` past `end` when `step` does not divide `end - start`:
#' `op_arange(3L, 8L, 2L)` is `3 5 7` here). With `include_end = FALSE` the
#' interval is half-open, `[start, end)`, of NumPy's length
#' `ceiling((end - start) / step)`. `step` may be negative.
#'
#' The dtype, when not given, follows the R types as keras3 does (R integers
#' become int32, doubles float32): `op_arange(5L)` and `op_arange(2L, 8L)`
#' are int32; `op_arange(5)` or any double `start`, `end` or `step` give
#' float32. An integer `dtype` truncates a double `start` and `end` (as
#' keras3); `step` must then be whole.
#'
#' @param start The first value; alone, the end of `1, ..., start`.
#' @param end The last value (included when `include_end` is `TRUE`).
#' @param step The spacing (not 0); default `1L`.
#' @param dtype `NULL` (inferred, see above), `"float32"`, `"float64"`,
#'   `"int32"` or `"int64"`.
#' @param include_end `TRUE` (keras3's default) or `FALSE` (`end` excluded,
#'   Python's convention).
#' @returns A 1-d array (doubles for floats, float32 values rounded to single
#'   precision; integers for int32, whole doubles for int64).
#' @family ops
#' @export
#' @examples
#' op_arange(3L)                       # 1 2 3 (int32)
#' op_arange(3)                        # 1 2 3 (float32)
#' op_arange(3L, 7L, 2L)               # 3 5 7
#' op_arange(0, 1, 0.25)
#' op_arange(0L, 5L, include_end = FALSE)
op_arange <- function(start, end, step = 1L, dtype = NULL, include_end = TRUE) {
  fun <- "op_arange"
  shp_require(missing(start), "start", fun, "a number")
  shp_check_scalar(start, "start", fun)
  size_arg <- if (missing(end)) "start" else "end"
  if (missing(end)) {
    end <- start
    start <- if (is.double(end)) 1 else 1L
  } else {
    shp_check_scalar(end, "end", fun)
  }
  shp_check_scalar(step, "step", fun)
  if (step == 0) abort_arg("step", "a number other than 0 in op_arange()", "0")
  dtype <- shp_check_dtype(dtype, fun)
  if (identical(dtype, "bool")) abort_arg("dtype", "a numeric dtype in op_arange()", "\"bool\"")
  include_end <- check_flag(include_end, "include_end")
  if (!is.null(dtype) && is_int_dtype(dtype)) {
    if (is.double(start)) start <- trunc(start)
    if (is.double(end)) end <- trunc(end)
    if (step != round(step)) {
      abort_arg("step", sprintf("a whole number in op_arange() with dtype \"%s\"", dtype), format(step))
    }
  }
  if (is.null(dtype)) dtype <- if (is.double(start) || is.double(end) || is.double(step)) "float32" else "int32"
  start <- as.double(start)
  step <- as.double(step)
  span <- (as.double(end) - start) / step
  # include_end: the values of [start, end] (keras3 calls arange(start, end + step, step), which can pass
  # `end` when step does not divide end - start; the fuzz is seq()'s); else NumPy's half-open length
  n <- if (include_end) max(0, floor(span + 1e-10) + 1) else max(0, ceiling(span))
  check_size(n, size_arg, "the result of op_arange()")
  out <- shp_alloc(start + (seq_len(n) - 1) * step, size_arg, n)
  out <- shp_cast_value(out, dtype, size_arg, fun)
  dim(out) <- length(out)
  traced_constant(out, dtype)
}

# ---- ones, zeros, full --------------------------------------------------------------------

#' Arrays filled with a value
#'
#' `op_ones(shape)`, `op_zeros(shape)` and `op_full(shape, fill_value)` make
#' an array of `shape` (known sizes) filled with 1, 0 or `fill_value`
#' (which may be an array that broadcasts to `shape`, or a symbolic tensor
#' or variable: then a node is recorded, and a float `fill_value` receives
#' gradients). `op_ones_like(x)`, `op_zeros_like(x)` and
#' `op_full_like(x, fill_value)` make a tensor of the shape (and, unless
#' `dtype` is given, the dtype) of `x`; on a symbolic tensor they record a
#' node, its unknown sizes included, and pass no gradient to `x`.
#'
#' The default dtype is float32 (Keras's floatx) for `op_ones()`,
#' `op_zeros()` and `op_full()`; values are held in the result's dtype
#' (float32 rounded to single precision, ints truncated, as [op_cast()]).
#'
#' @param shape The shape: whole numbers >= 0 (`integer(0)` for a scalar).
#' @param fill_value The value: a number, an array broadcasting to the
#'   shape, a symbolic tensor or a variable.
#' @param x A tensor: an array, a symbolic tensor or a variable.
#' @param dtype `NULL` or `"float32"`, `"float64"`, `"int32"`, `"int64"`,
#'   `"bool"`.
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' op_ones(c(2, 3))
#' op_zeros(3, dtype = "int32")
#' op_full(c(2, 2), 7)
#' op_zeros_like(keras_input(shape = 4))
op_ones <- function(shape, dtype = NULL) {
  shp_require(missing(shape), "shape", "op_ones", "a shape")
  shape <- shp_check_new_shape(shape, "op_ones")
  dtype <- shp_check_dtype(dtype, "op_ones") %||% "float32"
  traced_constant(shp_filled(1, shape, dtype), dtype)
}

#' @rdname op_ones
#' @export
op_zeros <- function(shape, dtype = NULL) {
  shp_require(missing(shape), "shape", "op_zeros", "a shape")
  shape <- shp_check_new_shape(shape, "op_zeros")
  dtype <- shp_check_dtype(dtype, "op_zeros") %||% "float32"
  traced_constant(shp_filled(0, shape, dtype), dtype)
}

#' @rdname op_ones
#' @export
op_full <- function(shape, fill_value, dtype = NULL) {
  shp_require(missing(shape), "shape", "op_full", "a shape")
  shp_require(missing(fill_value), "fill_value", "op_full", "a value")
  shape <- shp_check_new_shape(shape, "op_full")
  dtype <- shp_check_dtype(dtype, "op_full") %||% "float32"
  shp_operand_shape(fill_value, "fill_value", "op_full")
  op_call("full", list(fill_value = fill_value), list(shape = shape, dtype = dtype))
}

#' @rdname op_ones
#' @export
op_ones_like <- function(x, dtype = NULL) {
  shp_require(missing(x), "x", "op_ones_like")
  dtype <- shp_check_dtype(dtype, "op_ones_like")
  shp_operand_shape(x, "x", "op_ones_like")
  op_call("ones_like", list(x = x), list(dtype = dtype %||% shp_operand_dtype(x)))
}

#' @rdname op_ones
#' @export
op_zeros_like <- function(x, dtype = NULL) {
  shp_require(missing(x), "x", "op_zeros_like")
  dtype <- shp_check_dtype(dtype, "op_zeros_like")
  shp_operand_shape(x, "x", "op_zeros_like")
  op_call("zeros_like", list(x = x), list(dtype = dtype %||% shp_operand_dtype(x)))
}

#' @rdname op_ones
#' @export
op_full_like <- function(x, fill_value, dtype = NULL) {
  shp_require(missing(x), "x", "op_full_like")
  shp_require(missing(fill_value), "fill_value", "op_full_like", "a value")
  dtype <- shp_check_dtype(dtype, "op_full_like")
  shp_operand_shape(x, "x", "op_full_like")
  shp_operand_shape(fill_value, "fill_value", "op_full_like")
  op_call("full_like", list(x = x, fill_value = fill_value), list(dtype = dtype %||% shp_operand_dtype(x)))
}

# ---- eye, identity --------------------------------------------------------------------------

#' Identity matrices
#'
#' `op_eye(N, M, k)` is an `N` x `M` matrix with ones on diagonal `k` (0 the
#' main diagonal, positive above it, negative below) and zeros elsewhere;
#' `op_identity(n)` is the `n` x `n` identity matrix. The default dtype is
#' float32.
#'
#' @param N,n The number of rows.
#' @param M The number of columns; `NULL` for `N`.
#' @param k The diagonal's offset (a whole number; keras3 does not shift it).
#' @param dtype `NULL` or `"float32"`, `"float64"`, `"int32"`, `"int64"`,
#'   `"bool"`.
#' @returns A matrix.
#' @family ops
#' @export
#' @examples
#' op_eye(3)
#' op_eye(2, 4, k = 1)
#' op_identity(2, dtype = "int32")
op_eye <- function(N, M = NULL, k = 0L, dtype = NULL) {
  shp_require(missing(N), "N", "op_eye", "a number of rows")
  N <- check_whole(N, "N", min = 0L)
  M <- if (is.null(M)) N else check_whole(M, "M", min = 0L)
  k <- check_whole(k, "k", min = -.Machine$integer.max)
  dtype <- shp_check_dtype(dtype, "op_eye") %||% "float32"
  check_size(c(N, M), "N", "the result of op_eye()")
  out <- shp_filled(0, c(N, M), dtype, "N")
  i <- seq_len(N)
  j <- i + as.double(k)
  keep <- j >= 1 & j <= M
  if (any(keep)) out[i[keep] + (j[keep] - 1) * N] <- shp_filled(1, integer(), dtype)
  traced_constant(out, dtype)
}

#' @rdname op_eye
#' @export
op_identity <- function(n, dtype = NULL) {
  shp_require(missing(n), "n", "op_identity", "a number of rows")
  n <- check_whole(n, "n", min = 0L)
  op_eye(n, dtype = dtype)
}

# ---- tril, triu ------------------------------------------------------------------------------

#' Lower and upper triangles
#'
#' `op_tril(x, k)` keeps the elements on and below diagonal `k` of the last
#' two axes of `x` (a batch of matrices), `op_triu(x, k)` those on and above
#' it; the others become 0 (`FALSE` for booleans). `k` = 0 is the main
#' diagonal, positive above it, negative below. Gradients flow to the kept
#' elements.
#'
#' @param x A tensor of rank >= 2: an array, a symbolic tensor or a variable.
#' @param k The diagonal's offset (a whole number).
#' @returns A tensor of the shape and dtype of `x`.
#' @family ops
#' @export
#' @examples
#' m <- matrix(1:9, 3)
#' op_tril(m)
#' op_triu(m, k = 1)
op_tril <- function(x, k = 0L) {
  shp_require(missing(x), "x", "op_tril")
  shp_operand_shape(x, "x", "op_tril")
  op_call("tril", list(x = x), list(k = check_whole(k, "k", min = -.Machine$integer.max)))
}

#' @rdname op_tril
#' @export
op_triu <- function(x, k = 0L) {
  shp_require(missing(x), "x", "op_triu")
  shp_operand_shape(x, "x", "op_triu")
  op_call("triu", list(x = x), list(k = check_whole(k, "k", min = -.Machine$integer.max)))
}

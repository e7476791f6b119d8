# Indexing ops: op_take(), op_take_along_axis(), op_slice(),
# op_slice_update(), op_one_hot(), op_subset() and `[` on symbolic tensors
# and variables (keras3's R-style subsetting), `newaxis`.
#
# Index conventions (keras3's). Index values are 1-based by default: 1 is
# the first element, negative values count from the end (-1 is the last),
# 0 is an error (keras3 maps 0 to the first element by accident: its
# conversion only shifts positive values). With `zero_indexed = TRUE` they
# are 0-based (negative values still count from the end). Out-of-range
# indices are errors, eagerly and when a graph runs (Keras's backends
# differ: TensorFlow errors, JAX clips); op_one_hot() is the exception: an
# out-of-range class gives an all-zero row, as in TensorFlow and JAX.
#
# Layout. Values are column-major R arrays with Keras's axes in order (the
# FIRST axis varies fastest), so an axis `a` (0-based) splits an array into
# (pre, n, post) = (prod of the axes before a, size of a, prod of the axes
# after a): taking along `a` is `[, p, ]` of that 3-d view. Keras flattens in
# C order (the LAST axis fastest) when `axis = NULL`; a flat C-order
# position is mapped to R's linear index (idx_corder_to_colmajor()) rather
# than permuting the array.
#
# Constant indices (R numbers) are kept in the op's params, so shape
# inference checks their range when the axis size is known (and again, for
# unknown sizes, when the graph runs); indices given as symbolic tensors are
# operands (not differentiated) and are checked when the graph runs.

# ---- registration ------------------------------------------------------------

#' @noRd
register_indexing_ops <- function() {
  register_op("take", "Take", infer = idx_take_infer, forward = idx_take_forward,
              backward = idx_take_backward)
  register_op("take_along_axis", "TakeAlongAxis", infer = idx_tal_infer, forward = idx_tal_forward,
              backward = idx_tal_backward)
  register_op("slice", "Slice", infer = idx_slice_infer, forward = idx_slice_forward,
              backward = idx_slice_backward)
  register_op("slice_update", "SliceUpdate", infer = idx_slice_update_infer,
              forward = idx_slice_update_forward, backward = idx_slice_update_backward)
  register_op("one_hot", "OneHot", infer = idx_one_hot_infer, forward = idx_one_hot_forward,
              backward = function(grad, cache, params) list(NULL))
  register_op("get_item", "GetItem", infer = idx_get_item_infer, forward = idx_get_item_forward,
              backward = idx_get_item_backward, fun = "op_subset")
  register_op("boolean_mask", "GetItem", infer = idx_bmask_infer, forward = idx_bmask_forward,
              backward = idx_bmask_backward, prefix = "get_item", fun = "op_subset")
}

# ---- shared helpers ------------------------------------------------------------

# Checks that `x` can be a tensor operand; returns its shape (NA = unknown).
#' @noRd
idx_tensor_shape <- function(x, arg, fun) {
  if (is_symbolic(x)) return(x$shape)
  if (is_variable(x)) return(value_shape(variable_value(x)))
  if (is.null(x) || !(is.numeric(x) || is.logical(x)) || (is.object(x) && !is.array(x) && !is.numeric(x)) ||
      is.factor(x)) {
    abort_arg(arg, sprintf("a tensor (a numeric or logical array, a symbolic tensor or a variable) in %s()", fun),
              describe_value(x))
  }
  value_shape(x)
}

# An axis argument (one axis, keras3's 1-based convention) -> 0-based.
#' @noRd
idx_one_axis <- function(axis, rank, fun, allow_new = 0L) {
  if (!is.numeric(axis) || length(axis) != 1L || (!is.na(axis) && abs(axis) > .Machine$integer.max)) {
    abort_arg("axis", sprintf("a single whole number (1-based; -1 is the last axis) or NULL in %s()", fun),
              describe_value(axis))
  }
  normalize_axis(axis, rank, "axis", fun, allow_new = allow_new)
}

# Index values given as R numbers: whole, finite, no NA. Keeps dims.
#' @noRd
idx_constant_values <- function(v, arg, fun) {
  if (is.logical(v) || !is.numeric(v) || is.factor(v) || (is.object(v) && !is.array(v))) {
    abort_arg(arg, sprintf("whole numbers (an integer array or vector, or an integer tensor) in %s()", fun),
              describe_value(v))
  }
  if (length(v) && (anyNA(v) || any(!is.finite(v)) || any(v != round(v)) || any(abs(v) > .Machine$integer.max))) {
    bad <- v[is.na(v) | !is.finite(v) | v != round(v) | abs(v) > .Machine$integer.max][1L]
    abort_arg(arg, sprintf("whole numbers without NA in %s()", fun), paste("a value", format(bad)))
  }
  d <- dim(v)
  v <- as.integer(v)
  if (!is.null(d)) dim(v) <- d
  v
}

# An index operand: list(operand = <symbolic tensor or NULL>, const = <integer
# array or NULL>).
#' @noRd
idx_index_operand <- function(v, arg, fun) {
  if (is_symbolic(v)) {
    if (identical(v$dtype, "bool")) {
      abort_arg(arg, sprintf("an integer tensor in %s() (bool tensors are masks, not indices)", fun),
                describe_value(v))
    }
    return(list(operand = v, const = NULL))
  }
  if (is_variable(v)) {
    abort_arg(arg, sprintf("integer indices in %s(), not a variable (variables hold float weights)", fun),
              describe_value(v))
  }
  list(operand = NULL, const = idx_constant_values(v, arg, fun))
}

# Integer index values (1-based, or 0-based with zero_based = TRUE; negative
# from the end) -> 1-based positions in 1..n. Errors name the op and `arg`.
#' @noRd
idx_resolve <- function(v, n, zero_based, fun, arg, what) {
  if (is.double(v)) {
    if (anyNA(v) || any(v != round(v))) {
      bad <- v[is.na(v) | v != round(v)][1L]
      abort_msg(sprintf("%s(): `%s` must hold whole numbers; got %s.", fun, arg, format(bad)),
                class = "multihead_error_argument")
    }
  } else if (anyNA(v)) {
    abort_msg(sprintf("%s(): `%s` must not hold NA.", fun, arg), class = "multihead_error_argument")
  }
  p <- as.vector(v)
  neg <- p < 0
  if (zero_based) p[!neg] <- p[!neg] + 1
  if (any(neg)) p[neg] <- n + 1 + p[neg]
  bad <- p < 1 | p > n
  if (any(bad)) {
    got <- as.vector(v)[bad][1L]
    valid <- if (n == 0) "none (it is empty)"
      else if (zero_based) sprintf("0 to %d, or -%d to -1 from the end", n - 1, n)
      else sprintf("1 to %d, or -%d to -1 from the end", n, n)
    hint <- if (!zero_based && got == 0) " (indices are 1-based; pass `zero_indexed = TRUE` for 0-based indices)"
      else ""
    abort_msg(sprintf("%s(): `%s` holds %s, out of range for %s of size %d; valid: %s%s.", fun, arg,
                      format(got), what, n, valid, hint),
              class = c("multihead_error_index", "multihead_error_argument"))
  }
  as.integer(p)
}

# Flat C-order positions (1-based; the last axis fastest, as Keras flattens)
# of an array with dims `d` -> R's column-major linear indices.
#' @noRd
idx_corder_to_colmajor <- function(p, d) {
  r <- length(d)
  if (r <= 1L) return(p)
  k <- as.double(p) - 1
  lin <- numeric(length(p))
  stride <- cumprod(c(1, as.double(d)))[seq_len(r)]
  for (j in r:1) {
    dj <- d[j]
    i <- k %% dj
    k <- (k - i) / dj
    lin <- lin + i * stride[j]
  }
  lin + 1
}

# Sizes (pre, n, post) of the 3-d view around 0-based axis `a`.
#' @noRd
idx_split <- function(d, a) {
  c(prod(d[seq_len(a)]), d[a + 1L], prod(d[-seq_len(a + 1L)]))
}

# x[, p, ] in the (pre, n, post) view around axis `a` (positions p).
#' @noRd
idx_take_axis <- function(x, d, a, p) {
  s <- idx_split(d, a)
  if (s[1L] == 1 && s[3L] == 1) return(as.vector(x)[p])
  if (s[1L] == 1) return(matrix(x, s[2L], s[3L])[p, , drop = FALSE])
  if (s[3L] == 1) return(matrix(x, s[1L], s[2L])[, p, drop = FALSE])
  array(x, s)[, p, , drop = FALSE]
}

# The adjoint of idx_take_axis(): scatter-adds `g` (shaped (pre, m, post))
# into zeros of dims `d`; repeated positions add up.
#' @noRd
idx_scatter_axis <- function(g, d, a, p) {
  s <- idx_split(d, a)
  m <- length(p)
  dup <- anyDuplicated(p) > 0L
  if (s[1L] == 1) {
    gm <- matrix(as.double(g), m, s[3L])
    out <- matrix(0, s[2L], s[3L])
    if (dup) out[sort(unique(p)), ] <- rowsum(gm, p, reorder = TRUE) else out[p, ] <- gm
  } else {
    g3 <- array(as.double(g), c(s[1L], m, s[3L]))
    if (!dup) {
      out <- array(0, s)
      out[, p, ] <- g3
    } else {
      gp <- matrix(aperm(g3, c(2L, 1L, 3L)), m)
      t <- matrix(0, s[2L], s[1L] * s[3L])
      t[sort(unique(p)), ] <- rowsum(gp, p, reorder = TRUE)
      out <- aperm(array(t, c(s[2L], s[1L], s[3L])), c(2L, 1L, 3L))
    }
  }
  if (length(d)) dim(out) <- d else dim(out) <- NULL
  out
}

# Scatter-adds `g` at linear indices `lin` into zeros of dims `d`.
#' @noRd
idx_scatter_linear <- function(g, d, lin) {
  out <- numeric(prod(d))
  if (anyDuplicated(lin)) {
    out[sort(unique(lin))] <- rowsum(as.double(g), lin, reorder = TRUE)
  } else {
    out[lin] <- as.double(g)
  }
  if (length(d)) dim(out) <- d
  out
}

#' @noRd
idx_set_dim <- function(x, d) {
  if (length(d)) dim(x) <- d else dim(x) <- NULL
  x
}

#' @noRd
idx_axis_label <- function(a, d) sprintf("axis %d of `x`", a + 1L)

# ---- op_take -----------------------------------------------------------------

#' Take elements of a tensor
#'
#' `op_take()` gathers elements of `x` at `indices` along an axis (as
#' NumPy's and Keras's `take`); `op_take_along_axis()` picks, for every
#' position of the other axes, the elements at `indices` along one axis
#' (NumPy's `take_along_axis`). As in keras3, indices are 1-based by default
#' and negative indices count from the end (`-1` is the last element);
#' `zero_indexed = TRUE` takes 0-based indices (token ids, class ids).
#' Indices may be R numbers or an integer symbolic tensor (e.g. token ids
#' inside a custom embedding layer's `call()`). An index out of range is an
#' error (also when a model runs), and so is `0` with 1-based indices.
#'
#' With `axis = NULL`, `x` is flattened first in Keras's (C) order: the last
#' axis varies fastest, so `op_take(x, 2)` of a 2 x 3 matrix is `x[1, 2]`
#' (not R's `x[2]`). With an axis, the result has shape
#' `x.shape[before axis] + indices.shape + x.shape[after axis]`: a single
#' number as index removes the axis, a vector keeps it.
#'
#' Both are differentiable in `x`: the gradient is scattered back to the
#' taken positions (indices repeated add up).
#'
#' @param x A tensor: an array, a symbolic tensor or a variable.
#' @param indices Whole numbers: a number, a vector or an array (for
#'   `op_take_along_axis()` of the same rank as `x`, its other axes
#'   broadcasting against `x`'s), or an integer symbolic tensor.
#' @param axis `NULL` (flatten `x` first) or the axis to take along
#'   (1-based; `-1` is the last).
#' @param zero_indexed `FALSE` (default): `indices` are 1-based. `TRUE`:
#'   0-based.
#' @returns An array (or a symbolic tensor) of `x`'s dtype.
#' @family ops
#' @export
#' @examples
#' x <- matrix(1:6, 2, 3, byrow = TRUE)   # rows (1, 2, 3) and (4, 5, 6)
#' op_take(x, c(1, 3), axis = 2)          # the first and last columns
#' op_take(x, -1, axis = 1)               # the last row, as a vector
#' op_take(x, c(2, 4))                    # flattened row by row: 2 and 4
#' op_take(x, c(0, 2), axis = 2, zero_indexed = TRUE)
#' op_take_along_axis(x, matrix(c(3, 1), 2, 1), axis = 2)  # 3 and 4
op_take <- function(x, indices, axis = NULL, zero_indexed = FALSE) {
  fun <- "op_take"
  if (missing(x)) abort_arg("x", "supplied: a tensor in op_take()")
  if (missing(indices)) abort_arg("indices", "supplied: the indices to take, in op_take()")
  zero_indexed <- check_flag(zero_indexed, "zero_indexed")
  shape <- idx_tensor_shape(x, "x", fun)
  ax <- if (is.null(axis)) NULL else idx_one_axis(axis, length(shape), fun)
  ind <- idx_index_operand(indices, "indices", fun)
  op_call("take", list(x = x, indices = ind$operand),
          list(axis = ax, indices = ind$const, zero_indexed = zero_indexed, fun = fun, arg = "indices"))
}

#' @noRd
idx_take_infer <- function(specs, params) {
  fun <- params$fun %||% "op_take"
  xs <- specs[[1L]]
  is <- specs[[2L]]
  if (is.null(xs)) abort_arg("x", sprintf("supplied: a tensor in %s()", fun))
  if (!is.null(is) && identical(is$dtype, "bool")) {
    abort_op(fun, "`indices` must be an integer tensor, not a bool tensor", specs)
  }
  ishape <- if (is.null(is)) value_shape(params$indices) else is$shape
  d <- xs$shape
  if (is.null(params$axis)) {
    n <- prod(d)
    out <- ishape
    what <- if (length(d) > 1L) sprintf("`x` flattened (shape %s)", fmt_shape(d)) else "`x`"
  } else {
    a <- params$axis
    if (a >= length(d)) abort_op(fun, sprintf("`axis` %d is out of range for `x`", a + 1L), specs)
    n <- d[a + 1L]
    out <- c(d[seq_len(a)], ishape, d[-seq_len(a + 1L)])
    what <- idx_axis_label(a, d)
  }
  if (!is.null(params$indices) && !is.na(n)) {
    idx_resolve(params$indices, n, isTRUE(params$zero_indexed), fun, params$arg %||% "indices", what)
  }
  op_spec(out, xs$dtype)
}

#' @noRd
idx_take_forward <- function(values, params) {
  fun <- params$fun %||% "op_take"
  x <- values[[1L]]
  idx <- values[[2L]]
  if (is.null(idx)) idx <- params$indices
  d <- value_shape(x)
  ishape <- value_shape(idx)
  zero <- isTRUE(params$zero_indexed)
  arg <- params$arg %||% "indices"
  if (is.null(params$axis)) {
    what <- if (length(d) > 1L) sprintf("`x` flattened (shape %s)", fmt_shape(d)) else "`x`"
    p <- idx_resolve(idx, length(x), zero, fun, arg, what)
    lin <- idx_corder_to_colmajor(p, d)
    out <- idx_set_dim(as.vector(x)[lin], ishape)
    return(list(output = out, cache = list(lin = lin, d = d)))
  }
  a <- params$axis
  p <- idx_resolve(idx, d[a + 1L], zero, fun, arg, idx_axis_label(a, d))
  out <- idx_set_dim(idx_take_axis(x, d, a, p), c(d[seq_len(a)], ishape, d[-seq_len(a + 1L)]))
  list(output = out, cache = list(p = p, d = d, a = a))
}

#' @noRd
idx_take_backward <- function(grad, cache, params) {
  if (is.null(params$axis)) return(list(idx_scatter_linear(grad, cache$d, cache$lin), NULL))
  list(idx_scatter_axis(grad, cache$d, cache$a, cache$p), NULL)
}

# ---- op_take_along_axis ----------------------------------------------------------

#' @rdname op_take
#' @export
op_take_along_axis <- function(x, indices, axis = NULL, zero_indexed = FALSE) {
  fun <- "op_take_along_axis"
  if (missing(x)) abort_arg("x", "supplied: a tensor in op_take_along_axis()")
  if (missing(indices)) abort_arg("indices", "supplied: the indices to take, in op_take_along_axis()")
  zero_indexed <- check_flag(zero_indexed, "zero_indexed")
  shape <- idx_tensor_shape(x, "x", fun)
  ax <- if (is.null(axis)) NULL else idx_one_axis(axis, length(shape), fun)
  ind <- idx_index_operand(indices, "indices", fun)
  op_call("take_along_axis", list(x = x, indices = ind$operand),
          list(axis = ax, indices = ind$const, zero_indexed = zero_indexed))
}

#' @noRd
idx_tal_infer <- function(specs, params) {
  fun <- "op_take_along_axis"
  xs <- specs[[1L]]
  is <- specs[[2L]]
  if (is.null(xs)) abort_arg("x", "supplied: a tensor in op_take_along_axis()")
  if (!is.null(is) && identical(is$dtype, "bool")) {
    abort_op(fun, "`indices` must be an integer tensor, not a bool tensor", specs)
  }
  ishape <- if (is.null(is)) value_shape(params$indices) else is$shape
  ispecs <- specs
  if (is.null(is)) ispecs$indices <- list(shape = ishape, dtype = "int32")
  d <- xs$shape
  if (is.null(params$axis)) {
    if (length(ishape) != 1L) {
      abort_op(fun, "with `axis = NULL` (`x` flattened), `indices` must be 1-D", ispecs)
    }
    n <- prod(d)
    out <- ishape
    what <- "`x` flattened"
  } else {
    a <- params$axis
    if (length(ishape) != length(d)) {
      abort_op(fun, "`x` and `indices` must have the same rank", ispecs)
    }
    other <- tryCatch(broadcast_shapes(d[-(a + 1L)], ishape[-(a + 1L)]), multihead_error_shape = function(e) {
      abort_op(fun, sprintf("the axes of `x` and `indices` other than `axis` (%d) do not broadcast", a + 1L),
               ispecs)
    })
    n <- d[a + 1L]
    out <- append(other, ishape[a + 1L], after = a)
    what <- idx_axis_label(a, d)
  }
  if (!is.null(params$indices) && !is.na(n)) {
    idx_resolve(params$indices, n, isTRUE(params$zero_indexed), fun, "indices", what)
  }
  op_spec(out, xs$dtype)
}

#' @noRd
idx_tal_forward <- function(values, params) {
  fun <- "op_take_along_axis"
  x <- values[[1L]]
  idx <- values[[2L]]
  if (is.null(idx)) idx <- params$indices
  zero <- isTRUE(params$zero_indexed)
  d <- value_shape(x)
  di <- value_shape(idx)
  if (is.null(params$axis)) {
    p <- idx_resolve(idx, length(x), zero, fun, "indices", "`x` flattened")
    lin <- idx_corder_to_colmajor(p, d)
    return(list(output = idx_set_dim(as.vector(x)[lin], di), cache = list(lin = lin, d = d, flat = TRUE)))
  }
  a <- params$axis
  a1 <- a + 1L
  other <- broadcast_shapes(d[-a1], di[-a1])
  tx <- append(other, d[a1], after = a)
  ti <- append(other, di[a1], after = a)
  xb <- if (identical(tx, d)) x else broadcast_value(x, d, tx)
  ib <- if (identical(ti, di)) idx else broadcast_value(idx, di, ti)
  p <- idx_resolve(ib, d[a1], zero, fun, "indices", idx_axis_label(a, d))
  s <- idx_split(tx, a)
  m <- ti[a1]
  ipre <- rep.int(seq_len(s[1L]) - 1, m * s[3L])
  ipost <- rep(seq_len(s[3L]) - 1, each = s[1L] * m)
  lin <- ipre + s[1L] * (p - 1) + s[1L] * s[2L] * ipost + 1
  out <- idx_set_dim(as.vector(xb)[lin], ti)
  list(output = out, cache = list(lin = lin, d = d, tx = tx, flat = FALSE))
}

#' @noRd
idx_tal_backward <- function(grad, cache, params) {
  if (isTRUE(cache$flat)) return(list(idx_scatter_linear(grad, cache$d, cache$lin), NULL))
  g <- idx_scatter_linear(grad, cache$tx, cache$lin)
  if (!identical(cache$tx, cache$d)) g <- reduce_to_shape(g, cache$d)
  list(g, NULL)
}

# ---- op_slice / op_slice_update ------------------------------------------------

#' Slices of a tensor
#'
#' `op_slice()` returns the block of `inputs` that starts at
#' `start_indices` and has shape `shape` (Keras's `ops.slice()`);
#' `op_slice_update()` returns a copy of `inputs` with the block starting at
#' `start_indices` replaced by `updates` (Keras's `ops.slice_update()`;
#' tensors are never modified in place). As in keras3, `start_indices` are
#' 1-based (negative values count from the end); they may be R numbers or a
#' 1-D integer symbolic tensor (computed in the model). A block that does
#' not fit in `inputs` is an error.
#'
#' Both are differentiable: `op_slice()` in `inputs`, `op_slice_update()`
#' in `inputs` (zero gradient inside the block) and `updates`.
#'
#' @param inputs A tensor: an array, a symbolic tensor or a variable.
#' @param start_indices One start per axis of `inputs`: whole numbers
#'   (1-based), or a 1-D integer symbolic tensor.
#' @param shape The block's shape, one size per axis; `-1` takes every
#'   element from the start to the end of that axis (only with constant
#'   `start_indices`).
#' @param updates A tensor of the same rank as `inputs`, written at
#'   `start_indices` (converted to `inputs`'s dtype).
#' @returns An array or a symbolic tensor of `inputs`'s dtype: for
#'   `op_slice()` of shape `shape`, for `op_slice_update()` of `inputs`'s
#'   shape.
#' @family ops
#' @export
#' @examples
#' x <- matrix(1:25, 5, 5)
#' op_slice(x, c(3, 3), c(2, 2))         # x[3:4, 3:4]
#' op_slice(x, c(2, 4), c(-1, 2))        # x[2:5, 4:5]
#' op_slice_update(matrix(0, 5, 5), c(4, 4), matrix(1, 2, 2))
op_slice <- function(inputs, start_indices, shape) {
  fun <- "op_slice"
  if (missing(inputs)) abort_arg("inputs", "supplied: a tensor in op_slice()")
  if (missing(start_indices)) abort_arg("start_indices", "supplied: one start per axis, in op_slice()")
  if (missing(shape)) abort_arg("shape", "supplied: the shape of the slice, in op_slice()")
  d <- idx_tensor_shape(inputs, "inputs", fun)
  r <- length(d)
  if (is.list(shape) && !is.object(shape) && all(lengths(shape) == 1L)) shape <- unlist(shape)
  ok <- is.numeric(shape) && is.null(dim(shape)) && length(shape) == r && !anyNA(shape) &&
    all(is.finite(shape)) && all(shape == round(shape)) && all(shape >= -1) &&
    all(shape <= .Machine$integer.max)
  if (!ok) {
    abort_arg("shape", sprintf(paste0("%d whole number%s >= 0 (one size per axis of `inputs`, shape %s; ",
                                      "-1 for all elements to the end of the axis) in op_slice()"),
                               r, if (r == 1L) "" else "s", fmt_shape(d)),
              describe_value(shape))
  }
  shape <- as.integer(shape)
  st <- idx_start_operand(start_indices, r, d, fun)
  if (!is.null(st$operand) && any(shape == -1L)) {
    abort_arg("shape", paste0("whole numbers >= 0 when `start_indices` is a symbolic tensor in op_slice() ",
                              "(-1 needs known start indices)"), describe_value(shape))
  }
  op_call("slice", list(inputs = inputs, start_indices = st$operand), list(start = st$const, shape = shape))
}

# start_indices: list(operand = <symbolic> or NULL, const = <integer> or NULL).
#' @noRd
idx_start_operand <- function(start, r, d, fun) {
  if (is_symbolic(start)) {
    if (identical(start$dtype, "bool") || length(start$shape) != 1L ||
        (!is.na(start$shape) && start$shape != r)) {
      abort_arg("start_indices", sprintf("a 1-D integer tensor of length %d (the rank of `inputs`) in %s()",
                                         r, fun), describe_value(start))
    }
    return(list(operand = start, const = NULL))
  }
  if (is.list(start) && !is.object(start) && all(lengths(start) == 1L)) start <- unlist(start)
  ok <- is.numeric(start) && !is.object(start) && length(start) == r && length(dim(start)) <= 1L &&
    !anyNA(start) && all(is.finite(start)) && all(start == round(start)) &&
    all(abs(start) <= .Machine$integer.max)
  if (!ok) {
    abort_arg("start_indices", sprintf(paste0("%d whole number%s (1-based starts, one per axis of `inputs`, ",
                                              "shape %s) in %s()"), r, if (r == 1L) "" else "s",
                                       fmt_shape(d), fun),
              describe_value(start))
  }
  start <- as.integer(start)
  if (any(start == 0L)) {
    abort_arg("start_indices", sprintf("1-based (the first element is 1; negative values count from the end) in %s()",
                                       fun), paste(start, collapse = ", "))
  }
  list(operand = NULL, const = start)
}

# 1-based start positions and block sizes, checked against dims `d`
# (entries of d may be NA at inference: those axes are skipped). Returns
# list(start, size) with NA where unknown.
#' @noRd
idx_block <- function(start, size, d, fun, what_size) {
  r <- length(d)
  s <- integer(r)
  out <- integer(r)
  for (i in seq_len(r)) {
    n <- d[i]
    v <- start[i]
    s[i] <- if (v > 0L) v else if (is.na(n)) NA_integer_ else n + 1L + v
    out[i] <- if (size[i] != -1L) size[i] else if (is.na(n) || is.na(s[i])) NA_integer_ else n - s[i] + 1L
    if (is.na(n) || is.na(s[i])) next
    # a start may be one past the end only for an empty block
    if (s[i] < 1L || s[i] > n + 1L || (s[i] == n + 1L && !identical(out[i], 0L))) {
      abort_msg(sprintf("%s(): `start_indices` entry %d is %d, out of range for axis %d of size %d.",
                        fun, i, v, i, n), class = c("multihead_error_index", "multihead_error_argument"))
    }
    if (!is.na(out[i]) && as.double(s[i]) + out[i] - 1 > n) {
      abort_msg(sprintf(paste0("%s(): the block does not fit along axis %d: it starts at %d and has size %d ",
                               "(%s), but the axis has size %d."), fun, i, s[i], out[i], what_size, n),
                class = c("multihead_error_index", "multihead_error_argument"))
    }
  }
  list(start = s, size = out)
}

#' @noRd
idx_block_ranges <- function(b) lapply(seq_along(b$start), function(i) seq.int(b$start[i], length.out = b$size[i]))

#' @noRd
idx_runtime_start <- function(v, r, fun) {
  if (length(v) != r) {
    abort_msg(sprintf("%s(): `start_indices` has %d values; `inputs` has rank %d.", fun, length(v), r),
              class = "multihead_error_argument")
  }
  if (anyNA(v) || any(v != round(v))) {
    abort_msg(sprintf("%s(): `start_indices` must hold whole numbers without NA.", fun),
              class = "multihead_error_argument")
  }
  v <- as.integer(v)
  if (any(v == 0L)) {
    abort_msg(sprintf("%s(): `start_indices` holds 0; start indices are 1-based.", fun),
              class = c("multihead_error_index", "multihead_error_argument"))
  }
  v
}

#' @noRd
idx_slice_infer <- function(specs, params) {
  xs <- specs[[1L]]
  if (is.null(xs)) abort_arg("inputs", "supplied: a tensor in op_slice()")
  d <- xs$shape
  ss <- specs[[2L]]
  if (!is.null(ss) && (identical(ss$dtype, "bool") || length(ss$shape) != 1L ||
                       (!is.na(ss$shape) && ss$shape != length(d)))) {
    abort_op("op_slice", sprintf("`start_indices` must be a 1-D integer tensor of length %d", length(d)), specs)
  }
  if (length(params$shape) != length(d)) {
    abort_op("op_slice", sprintf("`shape` has %d entries for `inputs` of rank %d", length(params$shape),
                                 length(d)), specs)
  }
  if (is.null(params$start)) return(op_spec(params$shape, xs$dtype))
  b <- idx_block(params$start, params$shape, d, "op_slice", "`shape`")
  op_spec(b$size, xs$dtype)
}

#' @noRd
idx_slice_forward <- function(values, params) {
  x <- values[[1L]]
  d <- value_shape(x)
  start <- if (is.null(params$start)) idx_runtime_start(values[[2L]], length(d), "op_slice") else params$start
  b <- idx_block(start, params$shape, d, "op_slice", "`shape`")
  ranges <- idx_block_ranges(b)
  out <- if (length(d)) idx_set_dim(do.call(`[`, c(list(x), ranges, list(drop = FALSE))), b$size) else x
  list(output = out, cache = list(d = d, ranges = ranges))
}

#' @noRd
idx_slice_backward <- function(grad, cache, params) {
  d <- cache$d
  if (!length(d)) return(list(grad, NULL))
  dx <- array(0, d)
  dx <- do.call(`[<-`, c(list(dx), cache$ranges, list(value = as.double(grad))))
  list(dx, NULL)
}

#' @rdname op_slice
#' @export
op_slice_update <- function(inputs, start_indices, updates) {
  fun <- "op_slice_update"
  if (missing(inputs)) abort_arg("inputs", "supplied: a tensor in op_slice_update()")
  if (missing(start_indices)) abort_arg("start_indices", "supplied: one start per axis, in op_slice_update()")
  if (missing(updates)) abort_arg("updates", "supplied: the values to write, in op_slice_update()")
  d <- idx_tensor_shape(inputs, "inputs", fun)
  du <- idx_tensor_shape(updates, "updates", fun)
  st <- idx_start_operand(start_indices, length(d), d, fun)
  op_call("slice_update", list(inputs = inputs, start_indices = st$operand, updates = updates),
          list(start = st$const))
}

#' @noRd
idx_slice_update_infer <- function(specs, params) {
  fun <- "op_slice_update"
  xs <- specs[[1L]]
  us <- specs[[3L]]
  if (is.null(xs)) abort_arg("inputs", "supplied: a tensor in op_slice_update()")
  if (is.null(us)) abort_arg("updates", "supplied: a tensor in op_slice_update()")
  d <- xs$shape
  if (length(us$shape) != length(d)) abort_op(fun, "`updates` must have the rank of `inputs`", specs)
  ss <- specs[[2L]]
  if (!is.null(ss) && (identical(ss$dtype, "bool") || length(ss$shape) != 1L ||
                       (!is.na(ss$shape) && ss$shape != length(d)))) {
    abort_op(fun, sprintf("`start_indices` must be a 1-D integer tensor of length %d", length(d)), specs)
  }
  if (!is.null(params$start)) {
    size <- us$shape
    known <- !is.na(size)
    if (any(!known)) size[!known] <- 0L
    idx_block(params$start, size, d, fun, "the shape of `updates`")
  } else {
    bad <- !is.na(us$shape) & !is.na(d) & us$shape > d
    if (any(bad)) abort_op(fun, "`updates` is larger than `inputs`", specs)
  }
  op_spec(d, xs$dtype)
}

#' @noRd
idx_slice_update_forward <- function(values, params) {
  fun <- "op_slice_update"
  x <- values[[1L]]
  u <- values[[3L]]
  d <- value_shape(x)
  du <- value_shape(u)
  if (length(du) != length(d)) {
    abort_msg(sprintf("%s(): `updates` (shape %s) must have the rank of `inputs` (shape %s).", fun,
                      fmt_shape(du), fmt_shape(d)), class = "multihead_error_shape")
  }
  start <- if (is.null(params$start)) idx_runtime_start(values[[2L]], length(d), fun) else params$start
  b <- idx_block(start, du, d, fun, "the shape of `updates`")
  ranges <- idx_block_ranges(b)
  if (!length(d)) {
    out <- u
    storage.mode(out) <- storage.mode(x)
    return(list(output = out, cache = list(d = d, ranges = ranges, du = du)))
  }
  if (typeof(u) != typeof(x)) {
    if (is.integer(x) && is.double(u)) u <- trunc(u)
    storage.mode(u) <- storage.mode(x)
  }
  out <- do.call(`[<-`, c(list(x), ranges, list(value = u)))
  list(output = out, cache = list(d = d, ranges = ranges, du = du))
}

#' @noRd
idx_slice_update_backward <- function(grad, cache, params) {
  d <- cache$d
  if (!length(d)) return(list(0 * grad, NULL, grad))
  g <- idx_set_dim(as.double(grad), d)
  du <- idx_set_dim(do.call(`[`, c(list(g), cache$ranges, list(drop = FALSE))), cache$du)
  dx <- do.call(`[<-`, c(list(g), cache$ranges, list(value = 0)))
  list(dx, NULL, du)
}

# ---- op_one_hot ------------------------------------------------------------------

#' One-hot encoding
#'
#' `op_one_hot()` turns integer class ids into one-hot vectors of length
#' `num_classes` along a new axis (Keras's `ops.one_hot()`). As in keras3,
#' ids are 1-based by default (`1` encodes to the first position); with
#' `zero_indexed = TRUE` they are 0-based. A factor is encoded by its codes,
#' `num_classes` defaulting to its number of levels. An id outside the
#' classes (`0` or above `num_classes` when 1-based, negative values) gives
#' an all-zero vector, as TensorFlow's and JAX's one_hot do (keras3 itself
#' encodes a 1-based `0` as the first class, an accident of its index
#' conversion). `op_one_hot()` has no gradient (class ids are not
#' differentiable).
#'
#' @param x Class ids: whole numbers (an array or a vector), a factor, or an
#'   integer symbolic tensor.
#' @param num_classes The number of classes (a positive whole number).
#' @param axis Where the new axis goes among the result's axes (1-based;
#'   `-1`, the default, makes it the last axis).
#' @param dtype The result's dtype: `NULL` (`"float32"`), `"float64"`,
#'   `"int32"`, `"int64"` or `"bool"`.
#' @param sparse `FALSE`; sparse tensors are not supported.
#' @param zero_indexed `FALSE` (default): ids are 1-based. `TRUE`: 0-based.
#' @returns An array (or a symbolic tensor) of `x`'s shape with an axis of
#'   size `num_classes` inserted at `axis`.
#' @family ops
#' @export
#' @examples
#' op_one_hot(c(2, 4, 3, 1), num_classes = 4)
#' op_one_hot(c(1, 3, 2, 0), num_classes = 4, zero_indexed = TRUE)
#' op_one_hot(factor(c("b", "a", "c")))
op_one_hot <- function(x, num_classes, axis = -1L, dtype = NULL, sparse = FALSE, zero_indexed = FALSE) {
  fun <- "op_one_hot"
  if (missing(x)) abort_arg("x", "supplied: class ids in op_one_hot()")
  zero_indexed <- check_flag(zero_indexed, "zero_indexed")
  sparse <- check_flag(sparse, "sparse")
  if (sparse) abort_arg("sparse", "FALSE in op_one_hot() (sparse tensors are not supported)", "TRUE")
  if (is.factor(x)) {
    if (zero_indexed) {
      abort_arg("zero_indexed", "FALSE when `x` is a factor in op_one_hot() (factor codes are 1-based)", "TRUE")
    }
    if (missing(num_classes) || is.null(num_classes)) num_classes <- nlevels(x)
    d <- dim(x)
    x <- as.integer(unclass(x))
    if (anyNA(x)) abort_arg("x", "a factor without NA in op_one_hot()", "NA values")
    if (!is.null(d)) dim(x) <- d
  }
  if (missing(num_classes)) abort_arg("num_classes", "supplied: the number of classes, in op_one_hot()")
  num_classes <- check_whole(num_classes, "num_classes")
  dtype <- if (is.null(dtype)) "float32" else check_tensor_dtype(dtype, "dtype")
  shape <- idx_tensor_shape(x, "x", fun)
  ax <- idx_one_axis(axis, length(shape), fun, allow_new = 1L)
  if (is_variable(x)) {
    abort_arg("x", "class ids (whole numbers or an integer tensor) in op_one_hot(), not a variable",
              describe_value(x))
  }
  if (is_symbolic(x)) {
    if (identical(x$dtype, "bool")) {
      abort_arg("x", "class ids (an integer tensor) in op_one_hot(), not a bool tensor", describe_value(x))
    }
  } else {
    x <- idx_constant_values(x, "x", fun)
  }
  op_call("one_hot", list(x = x), list(num_classes = num_classes, axis = ax, dtype = dtype,
                                       zero_indexed = zero_indexed))
}

#' @noRd
idx_one_hot_infer <- function(specs, params) {
  xs <- specs[[1L]]
  if (is.null(xs)) abort_arg("x", "supplied: class ids in op_one_hot()")
  if (identical(xs$dtype, "bool")) abort_op("op_one_hot", "`x` must hold integer class ids, not bools", specs)
  op_spec(append(xs$shape, params$num_classes, after = params$axis), params$dtype)
}

#' @noRd
idx_one_hot_forward <- function(values, params) {
  x <- values[[1L]]
  d <- value_shape(x)
  if (anyNA(x) || (is.double(x) && any(x != round(x)))) {
    abort_msg("op_one_hot(): `x` must hold whole class ids without NA.", class = "multihead_error_argument")
  }
  C <- params$num_classes
  cls <- as.vector(x) + if (isTRUE(params$zero_indexed)) 1 else 0
  a <- params$axis
  pre <- prod(d[seq_len(a)])
  N <- length(x)
  i <- seq_len(N) - 1
  ipre <- i %% pre
  ipost <- (i - ipre) / pre
  ok <- cls >= 1 & cls <= C
  dtype <- params$dtype
  zero <- switch(dtype, bool = FALSE, int32 = , int64 = 0L, 0)
  one <- switch(dtype, bool = TRUE, int32 = , int64 = 1L, 1)
  out <- rep(zero, N * C)
  out[(ipre + pre * (cls - 1) + pre * C * ipost)[ok] + 1] <- one
  list(output = idx_set_dim(out, append(d, C, after = a)), cache = NULL)
}

# ---- `[` on tensors: op_subset() ---------------------------------------------------

#' New axis
#'
#' `newaxis` is `NULL`, as in keras3: inside `[` on a tensor, `NULL` (or
#' `newaxis`) inserts an axis of size 1 (see [op_subset()]).
#'
#' @format `NULL`.
#' @export
#' @examples
#' x <- keras_input(shape = c(5, 3))
#' x[, newaxis, ]$shape    # NA 1 5 3
newaxis <- NULL

#' Subset a tensor with R-style indices
#'
#' `x[...]` on a symbolic tensor or a variable, and `op_subset(x, ...)` on
#' any tensor (arrays included), subset with keras3's R-style semantics
#' (keras3's `op_subset()` / `x@r[...]`), recorded as an operation that
#' models run and differentiate. On plain R arrays `[` stays base R's.
#'
#' * Indices are 1-based; negative indices count from the end (`-1` is the
#'   last element), as in keras3 (not R's "all but").
#' * A missing index (`x[, 1]`) takes the whole axis; if fewer indices than
#'   axes are given, the remaining trailing axes are taken whole (`x[1]` of
#'   a matrix is its first row).
#' * A single number selects one element and drops the axis; a range or a
#'   vector keeps it (`x[, 2]` is a vector, `x[, 2:2]` a 1-column matrix).
#'   `drop = FALSE` keeps the axes of single numbers too.
#' * `a:b` is inclusive. With `a` and `b` of the same sign it is R's
#'   sequence (descending when `a > b`: `-1:-3` is the last three elements
#'   in reverse). `NA` for `a` or `b` means the start or the end of the axis
#'   (`2:NA` drops the first element), and with signs that differ `a:b` is
#'   an ascending slice (`1:-2` drops the last element, `1:-1` takes all).
#'   `a:b:step` takes every `step`-th element.
#' * An integer or logical vector selects those elements (a logical vector
#'   must have the axis's length); several vectors on different axes select
#'   the intersection (R's outer indexing).
#' * `NULL` or `newaxis` inserts an axis of size 1; `..` (or `all_dims()`)
#'   stands for all the axes not otherwise indexed (`x[.., 1]` is the first
#'   element of the last axis).
#' * As the only index: a logical array of `x`'s shape (a constant or a bool
#'   symbolic tensor) selects the elements where it is `TRUE`, in row-major
#'   order (the last axis fastest), as a 1-D tensor; an integer matrix with
#'   one column per axis of `x` selects one element per row.
#' * An integer symbolic tensor (rank 0 or 1) indexes an axis with values
#'   computed in the model.
#'
#' Tensors cannot be modified: `x[...] <- value` is an error; use
#' [op_slice_update()] (or `op_where()`), which return a new tensor.
#'
#' @param x A symbolic tensor, a variable, or (for `op_subset()`) an array.
#' @param ... Indices, one per axis (see above).
#' @param drop `TRUE` (default): axes indexed by a single number are
#'   dropped. `FALSE`: they are kept with size 1.
#' @param value Not supported: tensors are immutable.
#' @returns A symbolic tensor (or, eagerly, an array) of `x`'s dtype.
#' @family ops
#' @export
#' @examples
#' x <- keras_input(shape = c(10, 16))
#' x[, 1:5, ]$shape          # NA 5 16
#' x[, -1, ]$shape           # NA 16: the last step
#' x[.., 1:2]$shape          # NA 10 2
#' x[, newaxis, , ]$shape    # NA 1 10 16
#' a <- matrix(1:6, 2, 3)
#' op_subset(a, -1)          # the last row: 2 4 6
#' op_subset(a, , 2:NA)      # columns 2 to 3
op_subset <- function(x, ..., drop = TRUE) {
  if (missing(x)) abort_arg("x", "supplied: a tensor in op_subset()")
  idx_subset(x, eval(substitute(alist(...))), parent.frame(), drop)
}

#' @rdname op_subset
#' @export
`[.multihead_tensor` <- function(x, ..., drop = TRUE) {
  idx_subset(x, eval(substitute(alist(...))), parent.frame(), drop)
}

#' @rdname op_subset
#' @export
`[.multihead_variable` <- function(x, ..., drop = TRUE) {
  idx_subset(x, eval(substitute(alist(...))), parent.frame(), drop)
}

#' @rdname op_subset
#' @export
`[<-.multihead_tensor` <- function(x, ..., value) {
  abort_msg(paste0("Symbolic tensors are immutable: `x[...] <- value` cannot change one. Use ",
                   "op_slice_update(x, start_indices, updates) to write a block, or op_where(condition, ",
                   "new_values, x) to replace elements; both return a new tensor."),
            class = c("multihead_error_immutable", "multihead_error_unsupported"))
}

#' @rdname op_subset
#' @export
`[<-.multihead_variable` <- function(x, ..., value) {
  abort_msg(paste0("Variables cannot be changed with `v[...] <- value`. Compute the new value with ",
                   "op_slice_update(v$value, start_indices, updates) (or op_where()) and set it with ",
                   "v$assign(new_value)."),
            class = c("multihead_error_immutable", "multihead_error_unsupported"))
}

# An error about index `i` (expression `expr`) of x[...].
#' @noRd
idx_key_error <- function(i, expr, problem) {
  abort_msg(sprintf("x[...] on a tensor: index %d (`%s`) %s.", i, idx_deparse(expr), problem),
            class = "multihead_error_argument")
}

# An index expression as written (kept unevaluated until an error needs it).
#' @noRd
idx_deparse <- function(e) deparse1(e, width.cutoff = 60L)

# A colon expression's part: NULL (open) or a nonzero whole number.
#' @noRd
idx_colon_part <- function(v, i, expr, what) {
  if (is.null(v) || (length(v) == 1L && is.atomic(v) && is.na(v) && !is.nan(v))) return(NA_integer_)
  if (!is.numeric(v) || length(v) != 1L || !is.finite(v) || v != round(v) || abs(v) > .Machine$integer.max) {
    idx_key_error(i, expr, sprintf("must have a whole number (or NA) as its %s; got %s", what, describe_value(v)))
  }
  if (v == 0) {
    idx_key_error(i, expr, sprintf("has 0 as its %s; indices are 1-based (negative ones count from the end)",
                                   what))
  }
  as.integer(v)
}

# Parses the index expressions of x[...] into the get_item op's items.
# Returns list(items, tensors = list of list(pos, tensor) for symbolic
# indices, mode = "axes" | "coords" | "mask" | "tensor_mask", ...).
#' @noRd
idx_parse_key <- function(exprs, env, shape) {
  rank <- length(shape)
  n_args <- length(exprs)
  # (the empty symbol of a missing index cannot be stored in a variable)
  if (n_args == 1L && identical(exprs[[1L]], quote(expr = ))) return(list(mode = "identity"))
  items <- vector("list", n_args)
  for (i in seq_len(n_args)) {
    if (identical(exprs[[i]], quote(expr = ))) {
      items[[i]] <- list(kind = "all")
      next
    }
    e <- exprs[[i]]
    if (identical(e, quote(..)) || (is.call(e) && identical(e[[1L]], quote(all_dims)) && length(e) == 1L)) {
      items[[i]] <- list(kind = "ellipsis")
      next
    }
    if (identical(e, quote(newaxis))) {
      items[[i]] <- list(kind = "new")
      next
    }
    if (is.call(e) && identical(e[[1L]], quote(`:`))) {
      parts <- as.list(e)[-1L]
      if (is.call(parts[[1L]]) && identical(parts[[1L]][[1L]], quote(`:`))) {
        parts <- c(as.list(parts[[1L]])[-1L], parts[-1L])
      }
      if (length(parts) > 3L) idx_key_error(i, e, "has more than 3 parts (start:end:step)")
      vals <- lapply(parts, eval, envir = env)
      start <- idx_colon_part(vals[[1L]], i, e, "start")
      end <- idx_colon_part(vals[[2L]], i, e, "end")
      step <- if (length(vals) == 3L) idx_colon_part(vals[[3L]], i, e, "step") else NA_integer_
      pure <- !is.na(start) && !is.na(end) && is.na(step) && (start > 0L) == (end > 0L)
      items[[i]] <- list(kind = "range", start = start, end = end, step = step, pure = pure,
                         label = e, pos = i)
      next
    }
    v <- eval(e, envir = env)
    if (is.null(v)) {
      items[[i]] <- list(kind = "new")
      next
    }
    if (is_symbolic(v)) {
      if (identical(v$dtype, "bool")) {
        if (n_args == 1L) return(list(mode = "tensor_mask", mask = v))
        idx_key_error(i, e, paste0("is a bool tensor; a bool tensor must be the only index (a mask of `x`'s ",
                                   "shape); index an axis with an integer tensor"))
      }
      if (length(v$shape) > 1L) idx_key_error(i, e, "must be a tensor of rank 0 or 1")
      items[[i]] <- list(kind = "tensor", tensor = v, label = e, pos = i)
      next
    }
    if (is_variable(v)) idx_key_error(i, e, "is a variable; index with numbers or an integer tensor")
    d <- dim(v)
    if (is.logical(v) && !is.object(v)) {
      if (anyNA(v)) idx_key_error(i, e, "holds NA")
      if (length(d) > 1L) {
        if (n_args == 1L) return(list(mode = "mask", mask = v, label = e))
        idx_key_error(i, e, "is a logical array; only a single index may be a mask of `x`'s shape")
      }
      items[[i]] <- list(kind = "gather", v = which(v), bool_len = length(v),
                         label = e, pos = i)
      next
    }
    if (!is.numeric(v) || is.object(v)) {
      idx_key_error(i, e, sprintf("must be a number, a vector, a range (a:b), NULL/newaxis, `..` or a tensor; got %s",
                                  describe_value(v)))
    }
    if (length(v) == 0L) idx_key_error(i, e, "is empty")
    if (anyNA(v) || any(!is.finite(v)) || any(v != round(v)) || any(abs(v) > .Machine$integer.max)) {
      idx_key_error(i, e, "must hold whole numbers without NA")
    }
    if (length(d) == 2L && n_args == 1L && d[2L] == rank && rank >= 1L) {
      if (any(v == 0)) idx_key_error(i, e, "holds 0; indices are 1-based")
      m <- matrix(as.integer(v), d[1L])
      return(list(mode = "coords", coords = m, label = e))
    }
    if (length(d) > 1L) {
      idx_key_error(i, e, sprintf(paste0("is a %s array; an index array must be 1-D, or (alone) a matrix ",
                                         "with one column per axis of `x` (%d)"),
                                  paste(d, collapse = " x "), rank))
    }
    if (any(v == 0)) idx_key_error(i, e, "holds 0; indices are 1-based (negative ones count from the end)")
    v <- as.integer(v)
    items[[i]] <- if (length(v) == 1L && is.null(d)) {
      list(kind = "index", i = v, label = e, pos = i)
    } else {
      list(kind = "gather", v = v, label = e, pos = i)
    }
  }
  kinds <- vapply(items, function(it) it$kind, character(1))
  ell <- which(kinds == "ellipsis")
  if (length(ell) > 1L) {
    abort_msg("x[...] on a tensor: `..` may appear only once.", class = "multihead_error_argument")
  }
  consuming <- sum(!kinds %in% c("new", "ellipsis"))
  if (consuming > rank) {
    abort_msg(sprintf("x[...] on a tensor: %d indices for a tensor of rank %d (shape %s).", consuming, rank,
                      fmt_shape(shape)), class = "multihead_error_argument")
  }
  fill <- rep(list(list(kind = "all")), rank - consuming)
  if (length(ell)) {
    items <- c(items[seq_len(ell - 1L)], fill, items[-seq_len(ell)])
  } else {
    items <- c(items, fill)
  }
  list(mode = "axes", items = items)
}

# The 1-based positions an item selects on an axis of size n (n known).
#' @noRd
idx_item_positions <- function(it, n) {
  where <- function(p) {
    sprintf("x[...] on a tensor: index %d (`%s`) selects position %s, but axis %d has size %d.",
            it$pos, idx_deparse(it$label), p, it$axis, n)
  }
  res <- function(v) if (v > 0L) v else n + 1L + v
  check <- function(p, v) {
    bad <- p < 1L | p > n
    if (any(bad)) abort_msg(where(v[bad][1L]), class = c("multihead_error_index", "multihead_error_argument"))
    p
  }
  switch(it$kind,
    all = seq_len(n),
    index = check(res(it$i), it$i),
    gather = {
      if (!is.null(it$bool_len) && it$bool_len != n) {
        abort_msg(sprintf("x[...] on a tensor: index %d (`%s`) is a logical vector of length %d, but axis %d has size %d.",
                          it$pos, idx_deparse(it$label), it$bool_len, it$axis, n),
                  class = c("multihead_error_index", "multihead_error_argument"))
      }
      v <- it$v
      p <- v
      neg <- v < 0L
      p[neg] <- n + 1L + v[neg]
      check(p, v)
    },
    range = {
      if (it$pure) {
        s <- check(res(it$start), it$start)
        e <- check(res(it$end), it$end)
        seq.int(s, e)
      } else {
        step <- if (is.na(it$step)) 1L else it$step
        s <- if (is.na(it$start)) (if (step > 0L) 1L else n) else check(res(it$start), it$start)
        e <- if (is.na(it$end)) (if (step > 0L) n else 1L) else check(res(it$end), it$end)
        if (n == 0L || (step > 0L && e < s) || (step < 0L && e > s)) integer() else seq.int(s, e, by = step)
      }
    },
    tensor = seq_len(n))
}

# The size an item leaves on its axis (NA if unknown); validates what it can.
#' @noRd
idx_item_size <- function(it, n) {
  if (!is.na(n)) return(length(idx_item_positions(it, n)))
  switch(it$kind,
    all = , tensor = NA_integer_,
    index = 1L,
    gather = length(it$v),
    range = if (it$pure) abs(it$end - it$start) + 1L
      else if (!is.na(it$start) && !is.na(it$end) && !is.na(it$step) && (it$start > 0L) == (it$end > 0L)) {
        k <- (it$end - it$start) %/% it$step
        if (k < 0L) 0L else k + 1L
      } else NA_integer_)
}

# x[...] and op_subset(): parse, then record/run the get_item op (and op_take
# for axes indexed by tensors).
#' @noRd
idx_subset <- function(x, exprs, env, drop) {
  drop <- check_flag(drop, "drop")
  shape <- idx_tensor_shape(x, "x", "op_subset")
  nm <- names(exprs)
  if (!is.null(nm) && any(nzchar(nm))) {
    abort_msg(sprintf("x[...] on a tensor: unknown named argument `%s` (indices are positional; only `drop` is named).",
                      nm[nzchar(nm)][1L]), class = "multihead_error_argument")
  }
  key <- idx_parse_key(exprs, env, shape)
  if (identical(key$mode, "identity")) return(if (is_variable(x)) op_call_identity(x) else x)
  if (identical(key$mode, "tensor_mask")) {
    return(op_call("boolean_mask", list(x = x, mask = key$mask)))
  }
  if (identical(key$mode, "mask")) {
    return(op_call("get_item", list(x = x), list(mode = "mask", mask = key$mask, label = key$label)))
  }
  if (identical(key$mode, "coords")) {
    return(op_call("get_item", list(x = x), list(mode = "coords", coords = key$coords, label = key$label)))
  }
  items <- key$items
  # axis numbers (1-based) for messages, and output positions of tensor-indexed axes
  tensors <- list()
  ax <- 0L
  out_pos <- 0L
  trivial <- TRUE
  for (k in seq_along(items)) {
    it <- items[[k]]
    if (identical(it$kind, "new")) {
      out_pos <- out_pos + 1L
      trivial <- FALSE
      next
    }
    ax <- ax + 1L
    items[[k]]$axis <- ax
    if (identical(it$kind, "tensor")) {
      tensors[[length(tensors) + 1L]] <- list(pos = out_pos, tensor = it$tensor)
      items[[k]] <- list(kind = "all", axis = ax)
    } else if (!identical(it$kind, "all")) {
      trivial <- FALSE
    }
    if (!(identical(it$kind, "index") && drop)) out_pos <- out_pos + 1L
  }
  res <- x
  if (!trivial) res <- op_call("get_item", list(x = x), list(mode = "axes", items = items, drop = drop))
  else if (is_variable(x) && !length(tensors)) res <- op_call_identity(x)
  for (t in rev(tensors)) {
    ind <- t$tensor
    res <- op_call("take", list(x = res, indices = ind),
                   list(axis = t$pos, indices = NULL, zero_indexed = FALSE, fun = "op_subset",
                        arg = "index tensor"))
  }
  res
}

# x[] of a variable: its value (eagerly) or its tensor (in a trace).
#' @noRd
op_call_identity <- function(x) {
  if (operands_symbolic(list(x = x))) variable_tensor(x) else variable_value(x)
}

#' @noRd
idx_get_item_infer <- function(specs, params) {
  xs <- specs[[1L]]
  d <- xs$shape
  if (identical(params$mode, "mask")) {
    md <- value_shape(params$mask)
    if (length(md) != length(d) || any(!is.na(d) & d != md)) {
      abort_msg(sprintf("x[...] on a tensor: the logical index `%s` has shape %s, not the shape of `x` %s.",
                        idx_deparse(params$label), fmt_shape(md), fmt_shape(d)), class = "multihead_error_argument")
    }
    return(op_spec(sum(params$mask), xs$dtype))
  }
  if (identical(params$mode, "coords")) {
    cm <- params$coords
    for (j in seq_len(ncol(cm))) {
      if (!is.na(d[j])) {
        idx_item_positions(list(kind = "gather", v = cm[, j], pos = 1L, label = params$label, axis = j), d[j])
      }
    }
    return(op_spec(nrow(cm), xs$dtype))
  }
  out <- integer()
  for (it in params$items) {
    if (identical(it$kind, "new")) {
      out <- c(out, 1L)
      next
    }
    size <- idx_item_size(it, d[it$axis])
    if (identical(it$kind, "index") && isTRUE(params$drop)) next
    out <- c(out, size)
  }
  op_spec(out, xs$dtype)
}

#' @noRd
idx_get_item_forward <- function(values, params) {
  x <- values[[1L]]
  d <- value_shape(x)
  if (identical(params$mode, "mask")) {
    if (!identical(value_shape(params$mask), d)) {
      abort_msg(sprintf("x[...] on a tensor: the logical index `%s` has shape %s, not the shape of `x` %s.",
                        idx_deparse(params$label), fmt_shape(value_shape(params$mask)), fmt_shape(d)),
                class = "multihead_error_argument")
    }
    m <- params$mask
    lin <- idx_corder_to_colmajor(which(as.vector(if (length(d) > 1L) aperm(m) else m)), d)
    return(list(output = as.vector(x)[lin], cache = list(d = d, lin = lin)))
  }
  if (identical(params$mode, "coords")) {
    cm <- params$coords
    lin <- 1
    stride <- 1
    for (j in seq_len(ncol(cm))) {
      p <- idx_item_positions(list(kind = "gather", v = cm[, j], pos = 1L, label = params$label, axis = j), d[j])
      lin <- lin + (p - 1) * stride
      stride <- stride * d[j]
    }
    return(list(output = as.vector(x)[lin], cache = list(d = d, lin = lin)))
  }
  idx <- vector("list", length(d))
  out <- integer()
  all_axes <- logical(length(d))
  for (it in params$items) {
    if (identical(it$kind, "new")) {
      out <- c(out, 1L)
      next
    }
    a <- it$axis
    if (identical(it$kind, "all")) {
      idx[a] <- list(quote(expr = ))
      all_axes[a] <- TRUE
      if (d[a] >= 0L) out <- c(out, d[a])
      next
    }
    p <- idx_item_positions(it, d[a])
    idx[[a]] <- p
    if (!(identical(it$kind, "index") && isTRUE(params$drop))) out <- c(out, length(p))
  }
  y <- if (all(all_axes)) x else do.call(`[`, c(list(x), idx, list(drop = FALSE)))
  list(output = idx_set_dim(as.vector(y), out), cache = list(d = d, idx = idx, all_axes = all_axes))
}

#' @noRd
idx_get_item_backward <- function(grad, cache, params) {
  d <- cache$d
  if (!is.null(cache$lin)) return(list(idx_scatter_linear(grad, d, cache$lin)))
  if (all(cache$all_axes)) return(list(idx_set_dim(as.double(grad), d)))
  # undo the selection axis by axis (repeated positions add up)
  sizes <- vapply(seq_along(d), function(a) if (cache$all_axes[a]) d[a] else length(cache$idx[[a]]), numeric(1))
  g <- idx_set_dim(as.double(grad), sizes)
  dups <- vapply(seq_along(d), function(a) !cache$all_axes[a] && anyDuplicated(cache$idx[[a]]) > 0L, logical(1))
  if (!any(dups)) {
    dx <- array(0, d)
    return(list(do.call(`[<-`, c(list(dx), cache$idx, list(value = g)))))
  }
  cur <- sizes
  for (a in seq_along(d)) {
    if (cache$all_axes[a]) next
    target <- cur
    target[a] <- d[a]
    g <- idx_scatter_axis(g, target, a - 1L, cache$idx[[a]])
    cur <- target
  }
  list(idx_set_dim(g, d))
}

# x[mask] with a bool symbolic tensor mask: the selected elements in C order.
#' @noRd
idx_bmask_infer <- function(specs, params) {
  xs <- specs[[1L]]
  ms <- specs[[2L]]
  if (!identical(ms$dtype, "bool")) abort_op("op_subset", "a mask index must be a bool tensor", specs)
  if (length(ms$shape) != length(xs$shape) ||
      any(!is.na(ms$shape) & !is.na(xs$shape) & ms$shape != xs$shape)) {
    abort_op("op_subset", "a bool tensor index (a mask) must have the shape of `x`", specs)
  }
  op_spec(NA_integer_, xs$dtype)
}

#' @noRd
idx_bmask_forward <- function(values, params) {
  x <- values[[1L]]
  m <- values[[2L]]
  d <- value_shape(x)
  if (!identical(value_shape(m), d)) {
    abort_msg(sprintf("op_subset(): the mask has shape %s, not the shape of `x` %s.",
                      fmt_shape(value_shape(m)), fmt_shape(d)), class = "multihead_error_shape")
  }
  lin <- idx_corder_to_colmajor(which(as.vector(if (length(d) > 1L) aperm(m) else m)), d)
  list(output = as.vector(x)[lin], cache = list(d = d, lin = lin))
}

#' @noRd
idx_bmask_backward <- function(grad, cache, params) list(idx_scatter_linear(grad, cache$d, cache$lin), NULL)

# Shape-manipulation and dtype ops: op_shape(), op_reshape(), op_transpose()
# (and t() on symbolic tensors and variables), op_expand_dims(),
# op_squeeze(), op_concatenate(), op_stack(), op_split(), op_tile(),
# op_repeat(), op_cast(), op_convert_to_tensor(), op_convert_to_numpy().
#
# Layout. Values are R arrays whose dims are Keras's axes in order, stored
# column-major (the FIRST axis varies fastest). Keras's reshape, the flattening
# of op_repeat(axis = NULL) and every other "order of elements" are row-major
# (C order: the LAST axis varies fastest). A row-major tensor of shape d holds
# its elements exactly as a column-major array of dims rev(d), so a C-order
# reshape is: reverse the axes (aperm), set the reversed new dims, reverse the
# axes again (shp_reshape_c()); when only size-1 axes are inserted or removed
# both orders agree and dim<- suffices.
#
# Axis blocks. For an axis k (0-based) of a column-major array with dims d,
# element (i_0, ..., i_{r-1}) sits at inner + P * (i_k + d_k * outer), where
# P = prod(d[axes before k]) and outer indexes the axes after k. Viewed as a
# matrix with P * d_k rows and prod(d[axes after k]) columns, each column is
# the contiguous run of one outer index: concatenating along k is rbind() of
# those matrices, splitting is selecting rows, tiling is repeating rows
# (shp_axis_blocks()).
#
# Axes follow keras3: 1-based, negative from the end; the op_* functions
# convert them (normalize_axis()) to 0-based params before op_call(), so
# forward() and backward() use them directly.

# ---- helpers -------------------------------------------------------------------

# `x` with shape `shape`: dims set for rank >= 1, dropped for rank 0.
#' @noRd
shp_set_shape <- function(x, shape) {
  if (length(shape)) dim(x) <- shape else dim(x) <- NULL
  x
}

# The shape of an operand given to an op_* function, checked to be a tensor
# (symbolic tensor, variable, numeric or logical array); errors name `arg`.
#' @noRd
shp_operand_shape <- function(x, arg, fun) {
  if (is.object(x)) {
    if (is_symbolic(x)) return(x$shape)
    if (inherits(x, "multihead_variable")) return(value_shape(variable_value(x)))
  }
  if (!(is.numeric(x) || is.logical(x)) || (is.object(x) && !is.array(x))) {
    abort_arg(arg, sprintf("a tensor (a numeric or logical array, a symbolic tensor or a variable) in %s()",
                           fun), describe_value(x))
  }
  value_shape(x)
}

# Errors naming `arg` when it was not supplied.
#' @noRd
shp_require <- function(is_missing, arg, fun, what = "a tensor") {
  if (is_missing) abort_arg(arg, sprintf("supplied: %s in %s()", what, fun))
  invisible()
}

# One axis (keras3: 1-based, negative from the end) -> 0-based; the usual
# case is checked here, anything else goes to normalize_axis() (which
# raises the error).
#' @noRd
shp_one_axis <- function(axis, rank, fun, arg = "axis", allow_new = 0L) {
  if (is.numeric(axis) && length(axis) == 1L && !is.object(axis) && !is.na(axis) && axis == round(axis)) {
    n <- rank + allow_new
    if (axis >= 1 && axis <= n) return(as.integer(axis) - 1L)
    if (axis <= -1 && axis >= -n) return(as.integer(n + axis))
  }
  if (!is.numeric(axis) || length(axis) != 1L || is.object(axis)) {
    abort_arg(arg, sprintf("a single whole number (a 1-based axis; -1 is the last) in %s()", fun),
              describe_value(axis))
  }
  shp_normalize(axis, rank, fun, arg, allow_new)
}

# normalize_axis() after a check that the axes are finite whole numbers in
# integer range (normalize_axis() itself would fail on Inf or 2^53 with R's
# "missing value" error).
#' @noRd
shp_normalize <- function(axis, rank, fun, arg = "axis", allow_new = 0L) {
  if (is.numeric(axis) && !is.object(axis) && length(axis) &&
      !all(is.na(axis) | is.finite(axis) & abs(axis) <= .Machine$integer.max)) {
    abort_arg(arg, sprintf("whole numbers (1-based axes; -1 is the last) in %s()", fun),
              paste(axis, collapse = ", "))
  }
  normalize_axis(axis, rank, arg = arg, op = fun, allow_new = allow_new)
}

# Several axes: one through shp_one_axis(), more through normalize_axis().
#' @noRd
shp_axes <- function(axis, rank, fun, arg = "axis", allow_new = 0L) {
  if (is.list(axis) && !is.object(axis) && all(lengths(axis) == 1L)) axis <- unlist(axis)
  if (length(axis) == 1L) return(shp_one_axis(axis, rank, fun, arg, allow_new))
  shp_normalize(axis, rank, fun, arg, allow_new)
}

# The promoted dtype of several operands (result_dtype(), quicker when they
# all have one dtype).
#' @noRd
shp_result_dtype <- function(specs) {
  d <- specs[[1L]]$dtype
  for (s in specs) if (!identical(s$dtype, d)) return(result_dtype(specs))
  d
}

# Specs describing runtime values (for errors raised by forward()).
#' @noRd
shp_value_specs <- function(values) {
  lapply(values, function(v) if (!is.null(v)) list(shape = value_shape(v), dtype = r_value_dtype(v)))
}

# TRUE when reshaping between these shapes keeps the element order in both
# the row-major and the column-major sense (only size-1 axes differ).
#' @noRd
shp_same_order <- function(from, to) {
  a <- from[from != 1L]
  b <- to[to != 1L]
  length(a) == length(b) && all(a == b)
}

# C-order (row-major) reshape of `x` (shape `from`) to shape `to`.
#' @noRd
shp_reshape_c <- function(x, from, to) {
  if (length(from) <= 1L && length(to) <= 1L || shp_same_order(from, to)) return(shp_set_shape(x, to))
  r1 <- length(from)
  if (r1 > 1L) {
    dim(x) <- from
    x <- aperm.default(x, r1:1L)
  }
  r2 <- length(to)
  if (r2 > 1L) {
    dim(x) <- rev(to)
    return(aperm.default(x, r2:1L))
  }
  shp_set_shape(x, to)
}

# The elements of `x` (shape `shape`) in row-major order, as a plain vector.
#' @noRd
shp_flatten_c <- function(x, shape) {
  r <- length(shape)
  if (r > 1L) {
    dim(x) <- shape
    x <- aperm.default(x, r:1L)
  }
  as.vector(x)
}

# Block sizes around axis k (0-based) of `shape`: P (axes before k), the
# axis size n and Q (axes after k).
#' @noRd
shp_axis_blocks <- function(shape, k) {
  r <- length(shape)
  c(p = prod(shape[seq_len(k)]), n = shape[k + 1L], q = if (k + 1L < r) prod(shape[(k + 2L):r]) else 1)
}

# Concatenates values along axis k; `shapes` their shapes (same rank).
#' @noRd
shp_concat_values <- function(vals, shapes, k) {
  sizes <- vapply(shapes, function(s) s[k + 1L], integer(1))
  b <- shp_axis_blocks(shapes[[1L]], k)
  out_shape <- shapes[[1L]]
  out_shape[k + 1L] <- sum(sizes)
  if (b[["q"]] == 1) {
    out <- unlist(lapply(vals, as.vector), use.names = FALSE)
  } else {
    mats <- lapply(seq_along(vals), function(i) {
      v <- vals[[i]]
      dim(v) <- c(b[["p"]] * sizes[i], b[["q"]])
      v
    })
    out <- do.call(rbind, mats)
  }
  shp_set_shape(out, out_shape)
}

# Splits `x` (shape `shape`) along axis k into pieces of `sizes`.
#' @noRd
shp_split_values <- function(x, shape, k, sizes) {
  b <- shp_axis_blocks(shape, k)
  p <- b[["p"]]
  starts <- cumsum(c(0, sizes))
  if (b[["q"]] != 1) dim(x) <- c(p * shape[k + 1L], b[["q"]])
  lapply(seq_along(sizes), function(i) {
    rows <- p * starts[i] + seq_len(p * sizes[i])
    piece <- if (b[["q"]] == 1) x[rows] else x[rows, , drop = FALSE]
    s <- shape
    s[k + 1L] <- sizes[i]
    shp_set_shape(piece, s)
  })
}

# Sums `g`, viewed as (a, r, q) column-major, over its middle axis -> a * q
# values.
#' @noRd
shp_sum_middle <- function(g, a, r, q) {
  if (r == 1) return(as.vector(g))
  if (q == 1) return(rowSums(matrix(g, nrow = a, ncol = r)))
  if (a == 1) return(colSums(matrix(g, nrow = r, ncol = q)))
  dim(g) <- c(a, r, q)
  as.vector(rowSums(aperm.default(g, c(1L, 3L, 2L)), dims = 2L))
}

# Merges two shapes that must agree (NA = unknown matches anything); NULL if
# they do not.
#' @noRd
shp_merge_shapes <- function(a, b) {
  if (length(a) != length(b)) return(NULL)
  known <- !is.na(a) & !is.na(b)
  if (any(a[known] != b[known])) return(NULL)
  out <- a
  out[is.na(a)] <- b[is.na(a)]
  out
}

# ---- dtypes ---------------------------------------------------------------------

# A dtype argument: one of tensor_dtypes (NULL allowed when null_ok).
#' @noRd
shp_check_dtype <- function(dtype, fun, arg = "dtype", null_ok = TRUE) {
  if (is.null(dtype) && null_ok) return(NULL)
  if (!(is.character(dtype) && length(dtype) == 1L && !is.na(dtype) && dtype %in% tensor_dtypes)) {
    abort_arg(arg, sprintf("%sone of %s in %s()", if (null_ok) "NULL or " else "",
                           paste0("\"", tensor_dtypes, "\"", collapse = ", "), fun), describe_value(dtype))
  }
  dtype
}

# Values of `x` as `dtype`, as NumPy's astype: float32 rounded to float32,
# ints truncated toward zero (NaN, Inf and values out of range are errors
# naming `arg`; int32 held as integers, int64 as whole doubles: R has no
# 64-bit integers), bool TRUE where non-zero (NaN included). Dims are kept.
#' @noRd
shp_cast_value <- function(x, dtype, arg = "x", fun = "op_cast") {
  switch(dtype,
    float32 = {
      if (!is.double(x)) storage.mode(x) <- "double"
      round_float32(x)
    },
    float64 = {
      if (!is.double(x)) storage.mode(x) <- "double"
      x
    },
    int32 = , int64 = {
      if (is.double(x)) {
        if (length(x) && !cpp_all_finite(x)) {
          abort_arg(arg, sprintf("finite to be cast to %s in %s() (it holds NaN or Inf)", dtype, fun))
        }
        x <- trunc(x)
        lim <- if (dtype == "int32") .Machine$integer.max else 2^63
        if (length(x) && (max(x) > lim || min(x) < -lim)) {
          abort_arg(arg, sprintf("within the range of %s in %s()", dtype, fun),
                    sprintf("values from %s to %s", format(min(x)), format(max(x))))
        }
        if (dtype == "int32") storage.mode(x) <- "integer"
      } else {
        storage.mode(x) <- if (dtype == "int32") "integer" else "double"
      }
      x
    },
    bool = {
      if (is.logical(x)) return(x)
      out <- x != 0
      if (is.double(x)) out[is.nan(x)] <- TRUE
      out
    })
}

# ---- registration ----------------------------------------------------------------

#' @noRd
register_shape_ops <- function() {
  # -- reshape: params$newshape, integer, -1 for the inferred size
  register_op("reshape", "Reshape",
    infer = function(specs, params) {
      x <- specs$x
      s <- x$shape
      ns <- params$newshape
      k <- which(ns == -1L)
      known_out <- prod(as.double(ns[ns != -1L]))
      bad <- function(problem) abort_op("op_reshape", sprintf("%s (`newshape` %s)", problem, fmt_shape(ns)), specs)
      if (!anyNA(s)) {
        total <- prod(as.double(s))
        if (!length(k)) {
          if (known_out != total) bad(sprintf("the new shape has %s elements, `x` has %s", format(known_out),
                                              format(total)))
        } else {
          if (known_out == 0 || total %% known_out != 0) {
            bad(sprintf("cannot infer the size marked -1: %s elements are not a multiple of %s", format(total),
                        format(known_out)))
          }
          ns[k] <- as.integer(total / known_out)
        }
      } else {
        known_in <- prod(as.double(s[!is.na(s)]))
        if (!length(k)) {
          # the unknown sizes multiply known_in: the new total must be a multiple of it
          if (known_in == 0 && known_out != 0 || known_in != 0 && known_out %% known_in != 0) {
            bad(sprintf("the new shape has %s elements, not a multiple of the %s elements of `x`'s known axes",
                        format(known_out), format(known_in)))
          }
        } else {
          if (known_out == 0) bad("cannot infer the size marked -1 next to a size 0")
          ns[k] <- NA_integer_
        }
      }
      op_spec(ns, x$dtype)
    },
    forward = function(values, params) {
      x <- values$x
      from <- value_shape(x)
      ns <- params$newshape
      k <- which(ns == -1L)
      total <- length(x)
      known_out <- prod(as.double(ns[ns != -1L]))
      if (length(k)) {
        if (known_out == 0 || total %% known_out != 0) {
          abort_op("op_reshape", sprintf("cannot infer the size marked -1 (`newshape` %s)", fmt_shape(ns)),
                   shp_value_specs(values))
        }
        ns[k] <- as.integer(total / known_out)
      } else if (known_out != total) {
        abort_op("op_reshape", sprintf("the new shape %s has %s elements, `x` has %d", fmt_shape(ns),
                                       format(known_out), total), shp_value_specs(values))
      }
      list(output = shp_reshape_c(x, from, ns), cache = list(from = from, to = ns))
    },
    backward = function(grad, cache, params) list(shp_reshape_c(grad, cache$to, cache$from)))

  # -- transpose: params$perm, 0-based permutation
  register_op("transpose", "Transpose",
    infer = function(specs, params) {
      s <- specs$x$shape
      if (length(params$perm) != length(s)) {
        abort_op("op_transpose", sprintf("`axes` has %d entries for a tensor of rank %d", length(params$perm),
                                         length(s)), specs)
      }
      op_spec(s[params$perm + 1L], specs$x$dtype)
    },
    forward = function(values, params) {
      x <- values$x
      p <- params$perm
      if (length(p) < 2L || all(p == seq_along(p) - 1L)) return(list(output = x, cache = NULL))
      list(output = aperm.default(x, p + 1L), cache = NULL)
    },
    backward = function(grad, cache, params) {
      p <- params$perm
      if (length(p) < 2L || all(p == seq_along(p) - 1L)) return(list(grad))
      list(aperm.default(grad, order(p)))
    })

  # -- expand_dims: params$axis, 0-based positions in the output
  register_op("expand_dims", "ExpandDims",
    infer = function(specs, params) op_spec(shp_expanded_shape(specs$x$shape, params$axis), specs$x$dtype),
    forward = function(values, params) {
      x <- values$x
      from <- value_shape(x)
      list(output = shp_set_shape(x, shp_expanded_shape(from, params$axis)), cache = from)
    },
    backward = function(grad, cache, params) list(shp_set_shape(grad, cache)))

  # -- squeeze: params$axis, 0-based (explicit even when the user gave NULL)
  register_op("squeeze", "Squeeze",
    infer = function(specs, params) {
      s <- specs$x$shape
      a <- params$axis + 1L
      if (any(a > length(s))) abort_op("op_squeeze", "an axis to squeeze is beyond the tensor's rank", specs)
      bad <- !is.na(s[a]) & s[a] != 1L
      if (any(bad)) {
        abort_op("op_squeeze", sprintf("cannot squeeze axis %s: its size is not 1", paste(a[bad], collapse = ", ")),
                 specs)
      }
      op_spec(if (length(a)) s[-a] else s, specs$x$dtype)
    },
    forward = function(values, params) {
      x <- values$x
      from <- value_shape(x)
      a <- params$axis + 1L
      if (any(from[a] != 1L)) {
        abort_op("op_squeeze", sprintf("cannot squeeze axis %s: its size is not 1",
                                       paste(a[from[a] != 1L], collapse = ", ")), shp_value_specs(values))
      }
      list(output = shp_set_shape(x, if (length(a)) from[-a] else from), cache = from)
    },
    backward = function(grad, cache, params) list(shp_set_shape(grad, cache)))

  # -- concatenate: operands xs[[1]], xs[[2]], ...; params$axis 0-based
  register_op("concatenate", "Concatenate",
    infer = function(specs, params) {
      k1 <- params$axis + 1L
      out <- specs[[1L]]$shape
      r <- length(out)
      total <- 0
      for (s in specs) {
        sh <- s$shape
        if (!identical(sh[-k1], out[-k1])) {
          if (length(sh) != r) abort_op("op_concatenate", "the tensors in `xs` must have the same rank", specs)
          m <- shp_merge_shapes(out[-k1], sh[-k1])
          if (is.null(m)) {
            abort_op("op_concatenate", sprintf("the tensors in `xs` must have the same shape except on axis %d",
                                               k1), specs)
          }
          out[-k1] <- m
        }
        total <- total + sh[k1]
      }
      out[k1] <- total
      op_spec(out, shp_result_dtype(specs))
    },
    forward = function(values, params) {
      shapes <- lapply(values, value_shape)
      k <- params$axis
      r <- length(shapes[[1L]])
      for (s in shapes) {
        if (length(s) != r || any(s[-(k + 1L)] != shapes[[1L]][-(k + 1L)])) {
          abort_op("op_concatenate", sprintf("the tensors in `xs` must have the same shape except on axis %d",
                                             k + 1L), shp_value_specs(values))
        }
      }
      list(output = shp_concat_values(values, shapes, k), cache = shapes)
    },
    backward = function(grad, cache, params) {
      k <- params$axis
      sizes <- vapply(cache, function(s) s[k + 1L], integer(1))
      out_shape <- cache[[1L]]
      out_shape[k + 1L] <- sum(sizes)
      shp_split_values(grad, out_shape, k, sizes)
    })

  # -- stack: operands x[[1]], ...; params$axis 0-based position of the new axis
  register_op("stack", "Stack",
    infer = function(specs, params) {
      out <- specs[[1L]]$shape
      for (s in specs) {
        if (identical(s$shape, out)) next
        m <- shp_merge_shapes(out, s$shape)
        if (is.null(m)) abort_op("op_stack", "the tensors in `x` must all have the same shape", specs)
        out <- m
      }
      op_spec(append(out, length(specs), after = params$axis), shp_result_dtype(specs))
    },
    forward = function(values, params) {
      shapes <- lapply(values, value_shape)
      for (s in shapes) {
        if (!identical(s, shapes[[1L]])) {
          abort_op("op_stack", "the tensors in `x` must all have the same shape", shp_value_specs(values))
        }
      }
      k <- params$axis
      one <- append(shapes[[1L]], 1L, after = k)
      out <- shp_concat_values(values, rep(list(one), length(values)), k)
      list(output = out, cache = shapes[[1L]])
    },
    backward = function(grad, cache, params) {
      k <- params$axis
      out_shape <- value_shape(grad)
      pieces <- shp_split_values(grad, out_shape, k, rep(1L, out_shape[k + 1L]))
      lapply(pieces, shp_set_shape, cache)
    })

  # -- split: params$sections (number of equal pieces) or params$indices
  #    (0-based split points as NumPy, negative from the end); params$axis
  register_op("split", "Split",
    infer = function(specs, params) {
      s <- specs$x$shape
      k <- params$axis
      if (k + 1L > length(s)) abort_op("op_split", "`axis` is beyond the tensor's rank", specs)
      size <- s[k + 1L]
      sizes <- shp_split_sizes(size, params, specs)
      lapply(sizes, function(n) {
        out <- s
        out[k + 1L] <- n
        op_spec(out, specs$x$dtype)
      })
    },
    forward = function(values, params) {
      x <- values$x
      s <- value_shape(x)
      k <- params$axis
      sizes <- shp_split_sizes(s[k + 1L], params, shp_value_specs(values))
      pieces <- shp_split_values(x, s, k, sizes)
      list(output = if (length(pieces) == 1L) pieces[[1L]] else pieces, cache = list(shape = s, sizes = sizes))
    },
    backward = function(grad, cache, params) {
      if (!is.list(grad)) grad <- list(grad)
      list(shp_concat_values(grad, lapply(cache$sizes, function(n) {
        s <- cache$shape
        s[params$axis + 1L] <- n
        s
      }), params$axis))
    })

  # -- tile: params$repeats, integer
  register_op("tile", "Tile",
    infer = function(specs, params) {
      a <- shp_tile_align(specs$x$shape, params$repeats)
      out <- a$shape * as.double(a$repeats)
      check_size(out, "repeats", "the result of op_tile()")
      op_spec(out, specs$x$dtype)
    },
    forward = function(values, params) {
      x <- values$x
      from <- value_shape(x)
      a <- shp_tile_align(from, params$repeats)
      s <- a$shape
      cache <- list(from = from, aligned = a$shape, repeats = a$repeats)
      if (any(a$repeats == 0L)) {   # an empty result (tiling axis by axis first could grow without bound)
        out <- s * a$repeats
        return(list(output = shp_set_shape(x[0L], out), cache = cache))
      }
      for (k in rev(seq_along(s)) - 1L) {
        r <- a$repeats[k + 1L]
        if (r == 1L) next
        b <- shp_axis_blocks(s, k)
        rows <- b[["p"]] * b[["n"]]
        if (b[["q"]] == 1) {
          x <- rep.int(as.vector(x), r)
        } else {
          dim(x) <- c(rows, b[["q"]])
          x <- x[rep.int(seq_len(rows), r), , drop = FALSE]
        }
        s[k + 1L] <- s[k + 1L] * r
      }
      list(output = shp_set_shape(x, s), cache = cache)
    },
    backward = function(grad, cache, params) {
      s <- cache$aligned * cache$repeats
      g <- grad
      for (k in seq_along(s) - 1L) {
        r <- cache$repeats[k + 1L]
        if (r == 1L) next
        if (r == 0L) return(list(shp_set_shape(rep(0, prod(cache$from)), cache$from)))
        b <- shp_axis_blocks(s, k)
        n <- cache$aligned[k + 1L]
        g <- shp_sum_middle(g, b[["p"]] * n, r, b[["q"]])
        s[k + 1L] <- n
      }
      list(shp_set_shape(g, cache$from))
    })

  # -- repeat: params$repeats (integer, length 1 or the axis' size), params$axis (0-based or NULL)
  register_op("repeat", "Repeat",
    infer = function(specs, params) {
      s <- specs$x$shape
      reps <- params$repeats
      k <- params$axis
      if (is.null(k)) {
        if (anyNA(s)) return(op_spec(NA_integer_, specs$x$dtype))
        n <- prod(as.double(s))
        if (length(reps) != 1L && length(reps) != n) {
          abort_op("op_repeat", sprintf("`repeats` has %d values for the %s elements of the flattened `x`",
                                        length(reps), format(n)), specs)
        }
        out <- if (length(reps) == 1L) n * reps else sum(as.double(reps))
        check_size(out, "repeats", "the result of op_repeat()")
        return(op_spec(out, specs$x$dtype))
      }
      if (k + 1L > length(s)) abort_op("op_repeat", "`axis` is beyond the tensor's rank", specs)
      n <- s[k + 1L]
      if (!is.na(n)) {
        if (length(reps) != 1L && length(reps) != n) {
          abort_op("op_repeat", sprintf("`repeats` has %d values for axis %d of size %d", length(reps), k + 1L, n),
                   specs)
        }
        s[k + 1L] <- if (length(reps) == 1L) n * as.double(reps) else sum(as.double(reps))
      } else if (length(reps) > 1L) {
        s[k + 1L] <- sum(as.double(reps))
      }
      check_size(s, "repeats", "the result of op_repeat()")
      op_spec(s, specs$x$dtype)
    },
    forward = function(values, params) {
      x <- values$x
      from <- value_shape(x)
      reps <- params$repeats
      k <- params$axis
      n <- if (is.null(k)) length(x) else from[k + 1L]
      if (length(reps) != 1L && length(reps) != n) {
        abort_op("op_repeat", sprintf("`repeats` has %d values for %d elements", length(reps), n),
                 shp_value_specs(values))
      }
      idx <- if (length(reps) == 1L) rep(seq_len(n), each = reps) else rep.int(seq_len(n), reps)
      if (is.null(k)) {
        out <- shp_flatten_c(x, from)[idx]
        return(list(output = array(out, length(out)), cache = list(from = from, idx = idx)))
      }
      b <- shp_axis_blocks(from, k)
      if (b[["p"]] == 1 && b[["q"]] == 1) {
        out <- as.vector(x)[idx]
      } else {
        dim(x) <- c(b[["p"]], n, b[["q"]])
        out <- x[, idx, , drop = FALSE]
      }
      s <- from
      s[k + 1L] <- length(idx)
      list(output = shp_set_shape(out, s), cache = list(from = from, idx = idx))
    },
    backward = function(grad, cache, params) {
      from <- cache$from
      k <- params$axis
      idx <- cache$idx
      n <- if (is.null(k)) prod(from) else from[k + 1L]
      b <- if (is.null(k)) c(p = 1, n = n, q = 1) else shp_axis_blocks(from, k)
      m <- length(idx)
      g <- grad
      if (b[["p"]] != 1) {
        dim(g) <- c(b[["p"]], m, b[["q"]])
        g <- aperm.default(g, c(2L, 1L, 3L))
      }
      dim(g) <- c(m, b[["p"]] * b[["q"]])
      summed <- matrix(0, n, b[["p"]] * b[["q"]])
      if (m) {
        present <- unique(idx)
        summed[present, ] <- rowsum(g, idx, reorder = TRUE)
      }
      if (b[["p"]] != 1) {
        dim(summed) <- c(n, b[["p"]], b[["q"]])
        summed <- aperm.default(summed, c(2L, 1L, 3L))
      }
      if (is.null(k)) return(list(shp_reshape_c(as.vector(summed), n, from)))
      list(shp_set_shape(summed, from))
    })

  # -- cast: params$dtype
  register_op("cast", "Cast",
    infer = function(specs, params) op_spec(specs$x$shape, params$dtype),
    forward = function(values, params) list(output = shp_cast_value(values$x, params$dtype), cache = NULL),
    backward = function(grad, cache, params) {
      # only float -> float casts pass gradients (the runner drops them for int/bool inputs)
      if (is_float_dtype(params$dtype)) list(grad) else list(NULL)
    })
}

# The shape after inserting size-1 axes at 0-based output positions `axis`.
#' @noRd
shp_expanded_shape <- function(shape, axis) {
  out <- rep(1L, length(shape) + length(axis))
  out[-(axis + 1L)] <- shape
  out
}

# Piece sizes of a split along an axis of `size` (NA: unknown).
#' @noRd
shp_split_sizes <- function(size, params, specs) {
  if (!is.null(params$sections)) {
    n <- params$sections
    if (is.na(size)) return(rep(NA_integer_, n))
    if (size %% n != 0L) {
      abort_op("op_split", sprintf("axis %d of size %d cannot be split into %d equal sections", params$axis + 1L,
                                   size, n), specs)
    }
    return(rep(as.integer(size %/% n), n))
  }
  idx <- params$indices
  if (is.na(size)) {
    # negative indices count from an unknown end
    idx[idx < 0L] <- NA_integer_
    pts <- c(0L, idx, NA_integer_)
    known <- pts[!is.na(pts)]
    if (is.unsorted(known)) {
      abort_op("op_split", sprintf("the split indices must be in increasing order (`indices_or_sections` %s)",
                                   shp_r_indices(params$indices)), specs)
    }
    return(as.integer(diff(pts)))
  }
  idx[idx < 0L] <- idx[idx < 0L] + size
  if (any(idx < 0L | idx > size) || is.unsorted(idx)) {
    abort_op("op_split", sprintf(paste0("the split indices (`indices_or_sections` %s) must be increasing ",
                                        "positions within axis %d of size %d"),
                                 shp_r_indices(params$indices), params$axis + 1L, size), specs)
  }
  as.integer(diff(c(0L, idx, size)))
}

# The split indices as the user wrote them (1-based).
#' @noRd
shp_r_indices <- function(idx) fmt_shape(ifelse(idx >= 0L, idx + 1L, idx))

# Tile's alignment (np.tile): repeats shorter than the rank get leading 1s;
# a rank lower than length(repeats) gets leading size-1 axes.
#' @noRd
shp_tile_align <- function(shape, repeats) {
  r <- length(shape)
  n <- length(repeats)
  if (n < r) repeats <- c(rep(1L, r - n), repeats)
  if (r < n) shape <- c(rep(1L, n - r), shape)
  list(shape = as.integer(shape), repeats = as.integer(repeats))
}

# ---- op_shape ----------------------------------------------------------------------

#' Shape of a tensor
#'
#' `op_shape(x)` is the shape of a tensor as an integer vector, batch axis
#' first: `NA` marks the sizes a symbolic tensor does not know yet (such as
#' the batch size of a [keras_input()]). It works on symbolic tensors,
#' variables, arrays (their `dim()`), plain vectors (their length) and single
#' numbers (`integer(0)`, a scalar has no axes).
#'
#' Being an integer vector, the result destructures as in keras3 code:
#' `op_shape(x)[[2]]`, `c(batch, steps, features) %<-% op_shape(x)` (zeallot)
#' or `.[batch, steps, ..] <- op_shape(x)` (dotty).
#'
#' @param x A tensor: an array, a number, a symbolic tensor or a variable.
#' @returns An integer vector (`NA` for unknown sizes).
#' @family ops
#' @export
#' @examples
#' op_shape(array(0, c(2, 3, 4)))
#' op_shape(keras_input(shape = c(10, 16)))
#' op_shape(3.5)
op_shape <- function(x) {
  shp_require(missing(x), "x", "op_shape")
  shp_operand_shape(x, "x", "op_shape")
}

# ---- reshape, transpose --------------------------------------------------------------

#' Reshape a tensor
#'
#' `op_reshape(x, newshape)` gives `x` a new shape with the same number of
#' elements. As in keras3 (and NumPy, Keras), the elements keep their
#' **row-major** (C) order: the last axis varies fastest. This is not what
#' `dim<-` does on an R array (column-major, first axis fastest): for a
#' matrix `m`, `op_reshape(m, length(m))` reads it row by row, like
#' `as.vector(t(m))`.
#'
#' One size of `newshape` may be left for op_reshape() to infer, written
#' `-1`, `NA`, or `NULL` in a list (keras3's conventions); on a symbolic
#' tensor with unknown sizes the inferred size is unknown (`NA`) too, e.g.
#' `(NA, 4, 8)` reshaped to `c(-1, 32)` has shape `(NA, 32)`.
#'
#' @param x A tensor: an array, a symbolic tensor or a variable.
#' @param newshape The new shape: whole numbers, at most one of them `-1` or
#'   `NA` (a list may hold `NULL` for it).
#' @returns A tensor of shape `newshape` (an array, or a symbolic tensor).
#' @family ops
#' @export
#' @examples
#' m <- matrix(1:6, 2, 3, byrow = TRUE)   # rows 1 2 3 / 4 5 6
#' op_reshape(m, 6)                         # 1 2 3 4 5 6
#' op_reshape(m, c(3, -1))
#' op_reshape(keras_input(shape = c(4, 8)), c(-1, 32))
op_reshape <- function(x, newshape) {
  shp_require(missing(x), "x", "op_reshape")
  shp_require(missing(newshape), "newshape", "op_reshape", "a shape")
  shp_operand_shape(x, "x", "op_reshape")
  op_call("reshape", list(x = x), list(newshape = shp_check_newshape(newshape)))
}

# keras3's newshape: whole numbers >= 0, one inferred size (-1, NA or NULL).
#' @noRd
shp_check_newshape <- function(newshape) {
  what <- "a shape: whole numbers >= 0, at most one of them -1, NA or NULL (the size to infer)"
  if (is.list(newshape) && !is.object(newshape)) {
    ok <- vapply(newshape, function(v) is.null(v) || (is.numeric(v) || identical(v, NA)) && length(v) == 1L,
                 logical(1))
    if (!all(ok)) abort_arg("newshape", what, describe_value(newshape))
    newshape <- vapply(newshape, function(v) if (is.null(v)) -1 else as.double(v), double(1))
  } else if (is.logical(newshape) && length(newshape) && all(is.na(newshape))) {
    newshape <- as.double(newshape)
  }
  if (!is.numeric(newshape) || is.object(newshape) || length(dim(newshape)) > 1L) {
    abort_arg("newshape", what, describe_value(newshape))
  }
  newshape <- as.double(newshape)
  newshape[is.na(newshape)] <- -1
  if (any(!is.finite(newshape)) || any(newshape != round(newshape)) || any(newshape < -1) ||
      any(newshape > .Machine$integer.max)) {
    abort_arg("newshape", what, paste0("c(", paste(newshape, collapse = ", "), ")"))
  }
  if (sum(newshape == -1) > 1L) {
    abort_arg("newshape", paste0(what, " (when a size comes from op_shape() of a symbolic tensor and is NA, ",
                                 "write -1 for one size and known sizes elsewhere)"),
              sprintf("%d sizes to infer", sum(newshape == -1)))
  }
  as.integer(newshape)
}

#' Transpose a tensor
#'
#' `op_transpose(x, axes)` permutes the axes of `x`: axis `i` of the result
#' is axis `axes[i]` of `x`. Axes are 1-based as in keras3 (negative numbers
#' count from the end); `NULL` reverses them. On symbolic tensors and
#' variables, `t()` transposes a rank-2 tensor.
#'
#' @param x A tensor: an array, a symbolic tensor or a variable.
#' @param axes `NULL`, or a permutation of the axes (1-based).
#' @returns A tensor (an array, or a symbolic tensor).
#' @family ops
#' @export
#' @examples
#' x <- array(1:24, c(2, 3, 4))
#' dim(op_transpose(x))               # 4 3 2
#' dim(op_transpose(x, c(1, 3, 2)))   # 2 4 3
op_transpose <- function(x, axes = NULL) {
  shp_require(missing(x), "x", "op_transpose")
  s <- shp_operand_shape(x, "x", "op_transpose")
  r <- length(s)
  if (is.null(axes)) {
    perm <- rev(seq_len(r)) - 1L
  } else {
    if (is.list(axes) && !is.object(axes) && all(lengths(axes) == 1L)) axes <- unlist(axes)
    perm <- shp_normalize(axes, r, "op_transpose", arg = "axes")
    if (length(perm) != r) {
      abort_arg("axes", sprintf("a permutation of the %d axes of `x` (1-based) in op_transpose()", r),
                paste(axes, collapse = ", "))
    }
  }
  op_call("transpose", list(x = x), list(perm = perm))
}

#' @rdname tensor-operators
#' @export
t.multihead_tensor <- function(x) {
  s <- shp_operand_shape(x, "x", "t")
  if (length(s) != 2L) {
    abort_arg("x", "a rank-2 tensor for t() (op_transpose() permutes the axes of other ranks)",
              sprintf("shape %s", fmt_shape(s)))
  }
  op_call("transpose", list(x = x), list(perm = c(1L, 0L)))
}

#' @rdname tensor-operators
#' @export
t.multihead_variable <- t.multihead_tensor

# ---- expand_dims, squeeze ----------------------------------------------------------

#' Insert or remove size-1 axes
#'
#' `op_expand_dims(x, axis)` inserts axes of size 1 at positions `axis` of
#' the result; `op_squeeze(x, axis)` removes axes of size 1 (all of them when
#' `axis` is `NULL`; on a symbolic tensor, those known to be 1). Axes are
#' 1-based as in keras3, negative from the end.
#'
#' @param x A tensor: an array, a symbolic tensor or a variable.
#' @param axis Axes (1-based): for `op_expand_dims()`, positions in the
#'   result; for `op_squeeze()`, `NULL` or axes of `x` of size 1.
#' @returns A tensor (an array, or a symbolic tensor).
#' @family ops
#' @export
#' @examples
#' dim(op_expand_dims(matrix(1:6, 2), 1))    # 1 2 3
#' dim(op_expand_dims(matrix(1:6, 2), -1))   # 2 3 1
#' dim(op_squeeze(array(1:6, c(1, 2, 1, 3))))
op_expand_dims <- function(x, axis) {
  shp_require(missing(x), "x", "op_expand_dims")
  shp_require(missing(axis), "axis", "op_expand_dims", "an axis")
  s <- shp_operand_shape(x, "x", "op_expand_dims")
  if (is.list(axis) && !is.object(axis) && all(lengths(axis) == 1L)) axis <- unlist(axis)
  a <- shp_axes(axis, length(s), "op_expand_dims", allow_new = if (is.numeric(axis)) length(axis) else 0L)
  op_call("expand_dims", list(x = x), list(axis = a))
}

#' @rdname op_expand_dims
#' @export
op_squeeze <- function(x, axis = NULL) {
  shp_require(missing(x), "x", "op_squeeze")
  s <- shp_operand_shape(x, "x", "op_squeeze")
  if (is.null(axis)) {
    a <- which(!is.na(s) & s == 1L) - 1L
  } else {
    if (is.list(axis) && !is.object(axis) && all(lengths(axis) == 1L)) axis <- unlist(axis)
    a <- shp_axes(axis, length(s), "op_squeeze")
    bad <- !is.na(s[a + 1L]) & s[a + 1L] != 1L
    if (any(bad)) {
      abort_arg("axis", sprintf("axes of `x` of size 1 in op_squeeze() (`x` has shape %s)", fmt_shape(s)),
                paste(axis[bad], collapse = ", "))
    }
  }
  if (length(a) > 1L && is.unsorted(a)) a <- sort.int(a, method = "quick")
  op_call("squeeze", list(x = x), list(axis = a))
}

# ---- concatenate, stack, split -------------------------------------------------------

# A list of tensors (xs of op_concatenate(), x of op_stack()) as named operands.
#' @noRd
shp_tensor_list <- function(xs, arg, fun) {
  if (!is.list(xs) || is.object(xs) || length(xs) == 0L) {
    abort_arg(arg, sprintf("a non-empty list of tensors in %s()", fun), describe_value(xs))
  }
  names(xs) <- sprintf("%s[[%d]]", arg, seq_along(xs))
  shapes <- lapply(seq_along(xs), function(i) shp_operand_shape(xs[[i]], names(xs)[i], fun))
  list(operands = xs, shapes = shapes)
}

#' Join tensors along an axis
#'
#' `op_concatenate(xs, axis)` joins the tensors of the list `xs` along an
#' existing axis (their other sizes must agree); `op_stack(x, axis)` stacks
#' tensors of one shape along a new axis at position `axis` of the result.
#' Axes are 1-based as in keras3 (the default 1 is the first axis, the batch
#' axis); negative numbers count from the end. Mixed dtypes are promoted as
#' in arithmetic.
#'
#' @param xs,x A list of tensors (arrays, symbolic tensors, variables).
#' @param axis The axis (1-based; -1 is the last).
#' @returns A tensor (an array, or a symbolic tensor).
#' @family ops
#' @export
#' @examples
#' a <- matrix(1:4, 2); b <- matrix(5:10, 2)
#' op_concatenate(list(a, b), axis = 2)
#' dim(op_stack(list(a, a, a), axis = 1))    # 3 2 2
#' op_concatenate(list(keras_input(shape = 4), keras_input(shape = 3)), axis = -1)
op_concatenate <- function(xs, axis = 1L) {
  shp_require(missing(xs), "xs", "op_concatenate", "a list of tensors")
  l <- shp_tensor_list(xs, "xs", "op_concatenate")
  r <- length(l$shapes[[1L]])
  if (r == 0L) {
    abort_arg("xs[[1]]", "a tensor of rank >= 1 in op_concatenate() (op_stack() stacks scalars)", "a scalar")
  }
  k <- shp_one_axis(axis, r, "op_concatenate")
  op_call("concatenate", l$operands, list(axis = k))
}

#' @rdname op_concatenate
#' @export
op_stack <- function(x, axis = 1L) {
  shp_require(missing(x), "x", "op_stack", "a list of tensors")
  l <- shp_tensor_list(x, "x", "op_stack")
  k <- shp_one_axis(axis, length(l$shapes[[1L]]), "op_stack", allow_new = 1L)
  op_call("stack", l$operands, list(axis = k))
}

#' Split a tensor
#'
#' `op_split(x, indices_or_sections, axis)` cuts `x` along `axis` into
#' several tensors, returned in a list. A single number `n` makes `n` equal
#' sections (the axis' size must be a multiple of `n`). A vector (or a 1-d
#' array, for a single index) gives the positions where new pieces start,
#' 1-based as in keras3: `c(3, 5)` on an axis of size 10 gives the
#' elements 1-2, 3-4 and 5-10 (keras3 subtracts 1 from positive indices;
#' negative ones count from the end as in NumPy).
#'
#' @param x A tensor: an array, a symbolic tensor or a variable.
#' @param indices_or_sections A whole number of equal sections, or a
#'   vector (or 1-d array) of increasing 1-based start positions.
#' @param axis The axis to split (1-based; -1 is the last).
#' @returns A list of tensors (arrays, or symbolic tensors).
#' @family ops
#' @export
#' @examples
#' x <- matrix(1:12, 2, 6)
#' lapply(op_split(x, 3, axis = 2), dim)
#' lapply(op_split(1:10, c(3, 5)), as.vector)
op_split <- function(x, indices_or_sections, axis = 1L) {
  fun <- "op_split"
  shp_require(missing(x), "x", fun)
  shp_require(missing(indices_or_sections), "indices_or_sections", fun, "a number of sections or indices")
  s <- shp_operand_shape(x, "x", fun)
  if (length(s) == 0L) abort_arg("x", "a tensor of rank >= 1 in op_split()", "a scalar")
  k <- shp_one_axis(axis, length(s), fun)
  n <- indices_or_sections
  what <- paste0("a whole number of sections, or a vector (or 1-d array) of whole-number ",
                 "indices (1-based) in op_split()")
  if (!is.numeric(n) || is.object(n) || length(dim(n)) > 1L || length(n) == 0L || anyNA(n) ||
      any(!is.finite(n)) || any(n != round(n)) || any(abs(n) > .Machine$integer.max)) {
    abort_arg("indices_or_sections", what, describe_value(n))
  }
  params <- list(axis = k)
  if (length(n) == 1L && !is.array(n)) {
    if (n < 1) abort_arg("indices_or_sections", "a positive number of sections in op_split()", format(n))
    params$sections <- as.integer(n)
  } else {
    idx <- as.integer(n)
    idx[idx > 0L] <- idx[idx > 0L] - 1L   # keras3's as_py_index()
    params$indices <- idx
  }
  out <- op_call("split", list(x = x), params)
  if (!is.list(out) || is_symbolic(out)) out <- list(out)
  out
}

# ---- tile, repeat ----------------------------------------------------------------------

#' Repeat a tensor's elements
#'
#' `op_tile(x, repeats)` repeats the whole of `x` `repeats[i]` times along
#' axis `i` (as NumPy's `tile()`: `repeats` shorter than the rank applies to
#' the last axes; longer, and `x` gains leading size-1 axes).
#' `op_repeat(x, repeats, axis)` repeats each element: along `axis`
#' (1-based, as keras3), or over the row-major flattened `x` when `axis` is
#' `NULL` (the result is then 1-d). `repeats` is one number, or one per
#' element along the axis.
#'
#' @param x A tensor: an array, a symbolic tensor or a variable.
#' @param repeats Whole numbers >= 0.
#' @param axis `NULL` or an axis (1-based; -1 is the last).
#' @returns A tensor (an array, or a symbolic tensor).
#' @family ops
#' @export
#' @examples
#' op_tile(c(1, 2), 3)                       # 1 2 1 2 1 2
#' dim(op_tile(matrix(1:4, 2), c(2, 3)))      # 4 6
#' op_repeat(c(1, 2), 3)                     # 1 1 1 2 2 2
#' op_repeat(matrix(1:4, 2), c(1, 2), axis = 2)
op_tile <- function(x, repeats) {
  shp_require(missing(x), "x", "op_tile")
  shp_require(missing(repeats), "repeats", "op_tile", "whole numbers")
  shp_operand_shape(x, "x", "op_tile")
  op_call("tile", list(x = x), list(repeats = shp_check_repeats(repeats, "op_tile")))
}

#' @noRd
shp_check_repeats <- function(repeats, fun) {
  if (is.list(repeats) && !is.object(repeats) && all(lengths(repeats) == 1L)) repeats <- unlist(repeats)
  if (!is.numeric(repeats) || is.object(repeats) || length(dim(repeats)) > 1L || length(repeats) == 0L ||
      anyNA(repeats) || any(!is.finite(repeats)) || any(repeats != round(repeats)) || any(repeats < 0) ||
      any(repeats > .Machine$integer.max)) {
    abort_arg("repeats", sprintf("whole numbers >= 0 in %s()", fun), describe_value(repeats))
  }
  as.integer(repeats)
}

#' @rdname op_tile
#' @export
op_repeat <- function(x, repeats, axis = NULL) {
  shp_require(missing(x), "x", "op_repeat")
  shp_require(missing(repeats), "repeats", "op_repeat", "whole numbers")
  s <- shp_operand_shape(x, "x", "op_repeat")
  reps <- shp_check_repeats(repeats, "op_repeat")
  k <- NULL
  if (!is.null(axis)) {
    if (length(s) == 0L) abort_arg("axis", "NULL for a scalar `x` in op_repeat()", describe_value(axis))
    k <- shp_one_axis(axis, length(s), "op_repeat")
  }
  op_call("repeat", list(x = x), list(repeats = reps, axis = k))
}

# ---- cast, conversion --------------------------------------------------------------------

#' Cast a tensor to a dtype
#'
#' `op_cast(x, dtype)` converts the values of `x` as NumPy's `astype()`:
#' to `"float32"` they are rounded to single precision (also on arrays),
#' to `"int32"` / `"int64"` truncated toward zero (NaN, Inf and values out
#' of range are errors), to `"bool"` `TRUE` where non-zero. Casts between
#' float dtypes pass gradients; casts to integers or booleans do not.
#'
#' @param x A tensor: an array, a number, a symbolic tensor or a variable.
#' @param dtype `"float32"`, `"float64"`, `"int32"`, `"int64"` or `"bool"`.
#' @returns A tensor of that dtype (an array: doubles for floats, integers
#'   for int32, whole doubles for int64 (R has no 64-bit integers), logicals
#'   for bool; or a symbolic tensor).
#' @family ops
#' @export
#' @examples
#' op_cast(c(-1.7, 0, 2.9), "int32")   # -1 0 2
#' op_cast(0.1, "float32") - 0.1       # float32 rounding
#' op_cast(c(0, 2, NaN), "bool")
op_cast <- function(x, dtype) {
  shp_require(missing(x), "x", "op_cast")
  shp_require(missing(dtype), "dtype", "op_cast", "a dtype")
  shp_operand_shape(x, "x", "op_cast")
  op_call("cast", list(x = x), list(dtype = shp_check_dtype(dtype, "op_cast", null_ok = FALSE)))
}

#' Convert between arrays and tensors
#'
#' `op_convert_to_tensor(x, dtype)` checks that `x` is a tensor and returns
#' it: an array (a plain vector becomes a 1-d array; cast with [op_cast()]
#' when `dtype` is given), or, for a symbolic tensor, the tensor itself
#' (cast when `dtype` differs). A variable gives its value (inside a traced
#' `call()`, its symbolic tensor). `op_convert_to_numpy(x)` (alias
#' `op_convert_to_array()`) returns the values of an array or a variable as
#' an R array; a symbolic tensor has no values, and is an error.
#'
#' @param x A tensor: an array, a number, a symbolic tensor or a variable.
#' @param dtype `NULL` (keep the dtype) or a dtype: `"float32"`,
#'   `"float64"`, `"int32"`, `"int64"`, `"bool"`.
#' @param sparse `NULL` or `FALSE` (sparse tensors are not supported).
#' @param ragged `NULL` or `FALSE` (ragged tensors are not supported).
#' @returns An array, or a symbolic tensor.
#' @family ops
#' @export
#' @examples
#' op_convert_to_tensor(c(1, 3, 2, 0), "int32")
#' op_convert_to_numpy(matrix(1:4, 2))
op_convert_to_tensor <- function(x, dtype = NULL, sparse = NULL, ragged = NULL) {
  fun <- "op_convert_to_tensor"
  shp_require(missing(x), "x", fun)
  dtype <- shp_check_dtype(dtype, fun)
  if (!is.null(sparse) && !identical(sparse, FALSE)) {
    abort_arg("sparse", "NULL or FALSE in op_convert_to_tensor() (sparse tensors are not supported)",
              describe_value(sparse))
  }
  if (!is.null(ragged) && !identical(ragged, FALSE)) {
    abort_arg("ragged", "NULL or FALSE in op_convert_to_tensor() (ragged tensors are not supported)",
              describe_value(ragged))
  }
  shp_operand_shape(x, "x", fun)
  if (is_variable(x)) x <- if (trace_active()) variable_tensor(x) else variable_value(x)
  if (is_symbolic(x)) {
    if (is.null(dtype) || identical(dtype, x$dtype)) return(x)
    return(op_call("cast", list(x = x), list(dtype = dtype)))
  }
  constant_spec(x, "x", fun)
  if (is.null(dim(x)) && length(x) != 1L) x <- array(x, length(x))
  if (!is.null(dtype)) x <- shp_cast_value(x, dtype, "x", fun)
  x
}

#' @rdname op_convert_to_tensor
#' @export
op_convert_to_numpy <- function(x) {
  fun <- "op_convert_to_numpy"
  shp_require(missing(x), "x", fun)
  if (is_symbolic(x)) {
    abort_arg("x", paste0("an array or a variable in op_convert_to_numpy(): a symbolic tensor has no values ",
                          "until a model runs (call the model on arrays, e.g. predict())"), describe_value(x))
  }
  shp_operand_shape(x, "x", fun)
  if (is_variable(x)) x <- variable_value(x)
  if (is.null(dim(x)) && length(x) != 1L) x <- array(x, length(x))
  x
}

#' @rdname op_convert_to_tensor
#' @export
op_convert_to_array <- function(x) {
  shp_require(missing(x), "x", "op_convert_to_array")
  if (is_symbolic(x)) {
    abort_arg("x", paste0("an array or a variable in op_convert_to_array(): a symbolic tensor has no values ",
                          "until a model runs (call the model on arrays, e.g. predict())"), describe_value(x))
  }
  op_convert_to_numpy(x)
}

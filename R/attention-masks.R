# Masks of an attention call, converted to the core's layout (see
# src/core/layout.h): int vectors, nonzero = may attend.

# Logical, or numeric holding only 0 and 1, with no NA. Returns an integer
# array with the same dims.
#' @noRd
as_mask_values <- function(mask, arg) {
  if (is.logical(mask)) {
    if (anyNA(mask)) abort_arg(arg, "a logical or 0/1 array without NA", "an array containing NA")
    return(array(as.integer(mask), dim = mask_dims(mask)))
  }
  if (is.numeric(mask)) {
    if (!cpp_all_finite(mask) || any(mask != 0 & mask != 1)) {
      abort_arg(arg, paste0("a logical or 0/1 array (TRUE/1 = may attend); additive masks such as ",
                            "0/-Inf are not accepted"), "other values")
    }
    return(array(as.integer(mask), dim = mask_dims(mask)))
  }
  abort_arg(arg, "a logical or 0/1 array", describe_value(mask))
}

# A mask's dims; a vector without dim is one axis.
#' @noRd
mask_dims <- function(mask) if (is.null(dim(mask))) length(mask) else dim(mask)

# Broadcasts array `x` (dims `from`, each 1 or equal to `to`) to dims `to`.
#' @noRd
broadcast_array <- function(x, from, to) {
  dim(x) <- from
  if (identical(as.integer(from), as.integer(to))) return(x)
  idx <- lapply(seq_along(to), function(i) if (from[i] == to[i]) seq_len(to[i]) else rep.int(1L, to[i]))
  do.call(`[`, c(list(x), idx, list(drop = FALSE)))
}

# Row-major flattening of an array (last axis fastest).
#' @noRd
row_major <- function(x) {
  d <- dim(x)
  if (length(d) <= 1L) return(as.vector(x))
  as.vector(aperm(x, rev(seq_along(d))))
}

# attention_mask -> list(data = (Bm, Nm, T, S) row-major ints, bn = c(Bm, Nm)).
# Keras's broadcasting: a mask of lower rank than the scores gets size-1 axes
# inserted just before the query attention axes (the heads position) until
# the ranks agree; then every axis must be 1 or match the scores.
#' @noRd
canonical_attention_mask <- function(mask, plan, num_heads) {
  sd <- plan$scores_dims
  L <- length(plan$t_dims)
  nb <- length(plan$batch_axes)
  md <- mask_dims(mask)
  vals <- as_mask_values(mask, "attention_mask")
  shape_error <- function() {
    expected <- if (nb == 1L && L == 1L) {
      sprintf("(T, S) = %s, (B, T, S) = %s or (B, N, T, S) = %s",
              fmt_shape(sd[3:4]), fmt_shape(sd[c(1, 3, 4)]), fmt_shape(sd))
    } else {
      sprintf("broadcastable to the attention scores' shape %s", fmt_shape(sd))
    }
    abort_arg("attention_mask", sprintf("of shape %s (each axis 1 or full size)", expected),
              sprintf("shape %s", fmt_shape(md)))
  }
  full <- md
  if (length(full) > length(sd)) shape_error()
  while (length(full) < length(sd)) {
    pos <- length(full) - 2L * L
    if (pos < 0L) shape_error()
    full <- append(full, 1L, after = pos)
  }
  if (any(full != 1L & full != sd)) shape_error()
  bm_full <- any(full[seq_len(nb)] != 1L)
  nm <- full[nb + 1L]
  target <- c(if (bm_full) plan$bl_dims else rep.int(1L, nb), nm, plan$t_dims, plan$s_dims)
  # a small mask, e.g. (B, 1, 1, S), expands to (B or 1, N or 1, T, S)
  check_size(target, "attention_mask", "the mask expanded to its (batch or 1, heads or 1, T, S) layout")
  x <- broadcast_array(vals, full, target)
  list(data = row_major(x), bn = as.integer(c(if (bm_full) plan$B else 1L, nm)))
}

# query_mask (B, T...) or value/key mask (B, S...) -> (B, T) / (B, S)
# row-major ints in the core's order.
#' @noRd
canonical_position_mask <- function(mask, expected_dims, plan, arg) {
  md <- mask_dims(mask)
  if (length(md) != length(expected_dims) || any(md != expected_dims)) {
    abort_arg(arg, sprintf("an array of shape %s (the input's shape without its last axis)",
                           fmt_shape(expected_dims)),
              sprintf("shape %s", fmt_shape(md)))
  }
  vals <- as_mask_values(mask, arg)
  dim(vals) <- expected_dims
  order <- plan$order[-length(plan$order)] + 1L
  as.vector(aperm(vals, rev(order)))
}

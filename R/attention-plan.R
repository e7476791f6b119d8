# How an attention call maps onto the core's (B, T, S) layout.
#
# Keras numbers axes from 0 (the batch axis) to r-1 (the features). The
# attention axes A are attended over jointly; every other axis except the
# features is "batch-like". The core sees:
#   query  (B, T, E) with B = prod(batch-like axes), T = prod(A of query)
#   value  (B, S, Dv), key (B, S, Dk), S = prod(A of value)
# obtained by reading the axes in the order c(batch-like, A, features) in
# row-major order. Scores come back as (batch-like..., N, A of query...,
# A of value...), which is Keras's layout, and the output keeps the query's
# axis order with the features replaced by output_shape.

# Keras's resolution of `attention_axes` for inputs of rank r (0-based,
# negative counts from the end of the input). Returns integer axes or errors.
#' @noRd
resolve_attention_axes <- function(attention_axes, rank) {
  if (is.null(attention_axes)) return(seq_len(rank - 2L))
  axes <- ifelse(attention_axes < 0L, rank + attention_axes, attention_axes)
  bad <- axes < 1L | axes > rank - 2L
  if (any(bad)) {
    abort_arg("attention_axes",
              sprintf(paste0("axes of the inputs in Keras's numbering (0 = batch axis, %d = features, ",
                             "negative values count from the end), between 1 and %d (or -%d and -2) ",
                             "for inputs of rank %d"),
                      rank - 1L, rank - 2L, rank - 1L, rank),
              paste(attention_axes, collapse = ", "))
  }
  if (anyDuplicated(axes)) {
    abort_arg("attention_axes", "distinct axes", paste(attention_axes, collapse = ", "))
  }
  as.integer(axes)
}

#' @noRd
fmt_shape <- function(x) {
  if (is.null(x)) return("()")
  paste0("(", paste(ifelse(is.na(x), "NA", x), collapse = ", "), ")")
}

# Keras's key/value check: all dimensions but the last must be equal (Keras
# compares the axes between batch and features; batch sizes, when both are
# known, must agree too).
#' @noRd
check_key_value_shapes <- function(value_shape, key_shape) {
  rv <- length(value_shape); rk <- length(key_shape)
  v_mid <- value_shape[-c(1L, rv)]; k_mid <- key_shape[-c(1L, rk)]
  batch_differs <- isTRUE(value_shape[1L] != key_shape[1L])
  if (rv < 2L || rk < 2L || length(v_mid) != length(k_mid) || batch_differs ||
      !identical(is.na(v_mid), is.na(k_mid)) || any(v_mid != k_mid, na.rm = TRUE)) {
    abort_msg(sprintf(paste0("All dimensions of `value` and `key`, except the last one, must be equal. ",
                             "Received: value_shape=%s and key_shape=%s"),
                      fmt_shape(value_shape), fmt_shape(key_shape)),
              class = "multihead_error_shape")
  }
}

# Query and value must agree on every axis but the attention axes and the
# features (sizes NA, unknown, agree with anything).
#' @noRd
check_batch_like_axes <- function(query_shape, value_shape, axes) {
  batch_axes <- setdiff(seq_len(length(query_shape) - 1L) - 1L, axes)
  if (any(query_shape[batch_axes + 1L] != value_shape[batch_axes + 1L], na.rm = TRUE)) {
    abort_msg(sprintf(paste0("`query` and `value` must agree on the batch axis and every axis that is not ",
                             "an attention axis (axes %s in Keras's numbering); got query shape %s and ",
                             "value shape %s."),
                      paste(batch_axes, collapse = ", "), fmt_shape(query_shape), fmt_shape(value_shape)),
              class = "multihead_error_shape")
  }
}

# The plan of one call. Shapes include the batch axis.
#' @noRd
attention_plan <- function(query_shape, value_shape, axes, num_heads, output_shape) {
  r <- length(query_shape)
  batch_axes <- setdiff(seq_len(r - 1L) - 1L, axes)  # includes 0
  bl_q <- query_shape[batch_axes + 1L]
  check_batch_like_axes(query_shape, value_shape, axes)
  t_dims <- query_shape[axes + 1L]
  s_dims <- value_shape[axes + 1L]
  out_feat <- if (is.null(output_shape)) query_shape[r] else output_shape
  list(
    order = as.integer(c(batch_axes, axes, r - 1L)),
    B = prod(bl_q), T = prod(t_dims), S = prod(s_dims),
    batch_axes = batch_axes, t_dims = t_dims, s_dims = s_dims, bl_dims = bl_q,
    out_dims = as.integer(c(query_shape[-r], out_feat)),
    out_order = as.integer(c(batch_axes, axes, (r - 1L) + seq_along(out_feat) - 1L)),
    scores_dims = as.integer(c(bl_q, num_heads, t_dims, s_dims))
  )
}

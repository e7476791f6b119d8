# Cached (key/value) attention: a call of a MultiHeadAttention or
# GroupedQueryAttention layer with `cache`, with the semantics of keras_hub's
# CachedMultiHeadAttention. The cache (B, 2, S_max, num_kv_heads, head_dim)
# holds the projected keys ([, 1, , , ]) and values ([, 2, , , ]) of the
# positions decoded so far. With `cache_update_index` the call projects its
# key/value inputs, writes them at positions cache_update_index + 0, 1, ...
# (0-based, as Keras) of a copy of the cache and attends over it; without,
# the cache is used as it is (e.g. an encoder's keys for cross-attention).
# The call returns list(output, cache). Inference only: no dropout, no
# gradient; the core runs it (src/core/mha_cached.h) on the flash kernel.

#' @noRd
mha_cached_run <- function(self, query, value, key, cache, cache_update_index, attention_mask,
                           use_causal_mask, training, query_mask, return_attention_scores) {
  cfg <- self$config
  if (isTRUE(return_attention_scores)) {
    abort_arg("return_attention_scores", "FALSE in a call with `cache` (cached attention returns no scores)")
  }
  training <- check_flag(training, "training", null_ok = TRUE)
  if (isTRUE(training) && cfg$dropout > 0) {
    abort_arg("training", sprintf(paste0("FALSE or NULL in a call with `cache`: cached decoding is inference ",
                                         "(layer \"%s\" has dropout %g)"), self$name, cfg$dropout))
  }
  use_causal_mask <- check_causal_flag(use_causal_mask)
  check_numeric_array(query, "query", check_finite = FALSE)
  check_numeric_array(value, "value", check_finite = FALSE)
  key_given <- !is.null(key)
  if (key_given) check_numeric_array(key, "key", check_finite = FALSE) else key <- value
  qd <- dim(query); vd <- dim(value); kd <- dim(key)
  for (x in list(list("query", qd), list("value", vd), list("key", kd))) {
    if (length(x[[2L]]) != 3L) {
      abort_arg(x[[1L]], "a 3-D array (batch, positions, features) in a call with `cache`",
                sprintf("shape %s", fmt_shape(x[[2L]])))
    }
  }
  mha_build_for_inputs(self, query, value, key, key_given)
  if (length(self$axes) != 1L) {
    abort_arg("cache", sprintf("used with a single attention axis (layer \"%s\" attends over axes %s)",
                               self$name, paste(self$axes, collapse = ", ")))
  }
  if (cfg$value_dim != cfg$key_dim) {
    abort_arg("cache", sprintf(paste0("used with key_dim == value_dim (one cache holds keys and values; ",
                                      "layer \"%s\" has key_dim %d, value_dim %d)"),
                               self$name, cfg$key_dim, cfg$value_dim))
  }
  B <- qd[1L]; Tq <- qd[2L]; U <- vd[2L]
  if (vd[1L] != B) {
    abort_arg("value", sprintf("an array with the query's batch size %d", B), sprintf("shape %s", fmt_shape(vd)))
  }
  nkv <- mha_kv_heads(self)
  cd <- dim(cache)
  if (!(is.numeric(cache) && length(cd) == 5L) || is.object(cache)) {
    abort_arg("cache", sprintf("a numeric array of shape (batch, 2, max_length, %d, %d) (keys and values)",
                               nkv, cfg$key_dim),
              describe_value(cache))
  }
  if (cd[1L] != B || cd[2L] != 2L || cd[4L] != nkv || cd[5L] != cfg$key_dim) {
    abort_arg("cache", sprintf("an array of shape (%d, 2, max_length, %d, %d) for layer \"%s\"",
                               B, nkv, cfg$key_dim, self$name),
              sprintf("shape %s", fmt_shape(cd)))
  }
  s_max <- cd[3L]
  update <- !is.null(cache_update_index)
  if (update) {
    ok <- is.numeric(cache_update_index) && length(cache_update_index) == 1L &&
      is.null(dim(cache_update_index)) && !is.na(cache_update_index) &&
      cache_update_index == round(cache_update_index) && cache_update_index >= 0 &&
      cache_update_index + U <= s_max
    if (!ok) {
      abort_arg("cache_update_index",
                sprintf(paste0("NULL or a whole number in [0, %d]: the 0-based position where the %d new ",
                               "key/value positions go in the cache of length %d"), s_max - U, U, s_max),
                describe_value(cache_update_index))
    }
    cache_update_index <- as.integer(cache_update_index)
  } else if (use_causal_mask) {
    abort_arg("cache_update_index", paste0("given with use_causal_mask = TRUE and a cache (it places the ",
                                           "query among the cached positions)"))
  }
  offset <- if (update) cache_update_index else 0L
  # keys beyond the last query's position are all masked by the causal flag
  s_eff <- if (use_causal_mask) min(s_max, offset + Tq) else s_max

  plan <- list(scores_dims = c(B, cfg$num_heads, Tq, s_max), t_dims = Tq, s_dims = s_max,
               batch_axes = 1L, bl_dims = B, B = B)
  mask <- NULL; mask_bn <- c(1L, 1L)
  if (!is.null(attention_mask)) {
    m <- canonical_attention_mask(attention_mask, plan, cfg$num_heads)
    rows <- matrix(m$data, nrow = s_max)  # row-major (rows, S_max): a column per row
    mask <- as.vector(rows[seq_len(s_eff), , drop = FALSE])
    mask_bn <- m$bn
  }
  qmask <- NULL
  if (!is.null(query_mask)) {
    if (!identical(as.integer(mask_dims(query_mask)), as.integer(c(B, Tq)))) {
      abort_arg("query_mask", sprintf("an array of shape %s (the query's shape without its last axis)",
                                      fmt_shape(c(B, Tq))),
                sprintf("shape %s", fmt_shape(mask_dims(query_mask))))
    }
    qmask <- as.vector(t(matrix(as_mask_values(query_mask, "query_mask"), B, Tq)))
  }
  out_dims <- as.integer(c(B, Tq, if (is.null(cfg$output_shape)) qd[3L] else cfg$output_shape))
  dims <- as.integer(c(B, Tq, s_eff, qd[3L], kd[3L], vd[3L], cfg$num_heads, cfg$key_dim, cfg$value_dim,
                       prod(out_dims[-(1:2)]), nkv))
  float64 <- identical(self$dtype, "float64")
  slots <- mha_weight_slots(self)
  res <- cpp_mha_cached_call(query, key, value, cache, if (update) cache_update_index else -1L, dims,
                             slots, mha_core_weights(self, slots, float64), mask, mask_bn, qmask,
                             use_causal_mask, if (is.null(cfg$sliding_window)) 0L else cfg$sliding_window,
                             offset, float64, mh_threads(), out_dims)
  if (!is.null(res$nonfinite)) {
    if (res$nonfinite == 5L) {
      if (identical(self$dtype, "float32") && cpp_all_finite(cache, mh_threads())) {
        abort_arg("cache", sprintf("values within float32's range for layer \"%s\" of dtype \"float32\"",
                                   self$name), "a finite value beyond it")
      }
      abort_arg("cache", "finite: it contains NA, NaN or Inf")
    }
    mha_abort_nonfinite(self, res$nonfinite, list(query, value, key)[[res$nonfinite]])
  }
  if (!is.null(res$overflow)) mha_abort_overflow(self)
  self$activity_losses <- list()
  list(output = res$output, cache = res$cache)
}

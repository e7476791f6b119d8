# The MultiHeadAttention layer object: constructor, build, call, properties.
# The numerics are in src/core (mha.cpp, attention.cpp, dense.cpp); this file
# validates, plans the layout (attention-plan.R, attention-masks.R) and calls
# cpp_mha_call().

#' Multi-head attention layer
#'
#' Creates a multi-head attention layer with the keras3 signature and Keras 3
#' semantics, computed natively in C++. Attention computes, per head,
#' `softmax(q k^T / sqrt(key_dim)) v` from projections of the query, key and
#' value, then projects the concatenated heads back to the query's feature
#' size (or to `output_shape`).
#'
#' @section Calling the layer:
#' The layer is an R function:
#' `layer(query, value, key = NULL, attention_mask = NULL,
#' return_attention_scores = FALSE, training = NULL, use_causal_mask = FALSE,
#' ..., query_mask = NULL, value_mask = NULL, key_mask = NULL, cache = NULL,
#' cache_update_index = NULL)`.
#' * `query` (B, T..., E), `value` (B, S..., Dv) and `key` (B, S..., Dk) are
#'   numeric R arrays in Keras's axis order (batch first, features last).
#'   `key` defaults to `value`. Query and value may have different feature
#'   sizes and lengths.
#' * `attention_mask`: logical or 0/1 array, `TRUE` where a query position may
#'   attend to a key position, of shape (T, S), (B, T, S) or (B, N, T, S) for
#'   3-D inputs (broadcast as in Keras). `query_mask` (B, T...) and
#'   `value_mask` / `key_mask` (B, S...) mark padding positions. All masks and
#'   `use_causal_mask` (query `t` sees keys `s <= t`, top-left aligned when
#'   T != S) are combined with AND. A query row with every key masked gets
#'   all-zero attention probabilities, so its output is the output bias.
#' * `return_attention_scores = TRUE` returns `list(output = , scores = )`
#'   with the softmax probabilities (before dropout) of shape (B, N, T, S)
#'   (for other ranks, Keras's layout: batch-like axes, heads, query attention
#'   axes, key attention axes).
#' * `training = TRUE` applies dropout to the attention probabilities
#'   (inverted scaling); otherwise dropout is inactive.
#' * Cached decoding (keras_hub's `CachedMultiHeadAttention`): `cache` is an
#'   array (B, 2, S_max, N, key_dim) of projected keys (`[, 1, , , ]`) and
#'   values (`[, 2, , , ]`); it needs 3-D inputs, one attention axis and
#'   `key_dim == value_dim`. With `cache_update_index` (0-based, as in Keras)
#'   the call projects `key`/`value` (B, U, ...) and writes them at positions
#'   `cache_update_index + 0:(U - 1)` of a copy of the cache, and query row
#'   `t` sits at position `cache_update_index + t` for `use_causal_mask` and
#'   `sliding_window`; without it the cache is used as it is (e.g. an
#'   encoder's keys for cross-attention). `attention_mask` may then be (B, T,
#'   S_max). The call returns `list(output = , cache = )`. Cached calls are
#'   inference: no scores, no dropout, no gradients.
#'
#' The output has shape (B, T..., E), or (B, T..., output_shape...).
#'
#' @section Attention axes:
#' `attention_axes` uses **Keras's numbering**, so keras3 code ports
#' unchanged: axis 0 is the batch axis, the last axis holds the features, and
#' negative values count from the end. For a query of shape
#' `c(B, 3, 4, E)` (rank 4), `attention_axes = 2` (or `-2`) attends over the
#' axis of length 4, treating the axis of length 3 as another batch axis;
#' `attention_axes = c(1, 2)` (the default for rank 4) attends over all 12
#' positions jointly (one softmax over the key positions of both axes).
#'
#' @section Properties and methods:
#' Read-only properties: `num_heads`, `key_dim`, `value_dim`, `dropout`,
#' `use_bias`, `output_shape`, `attention_axes`, `query_dense`, `key_dense`,
#' `value_dense`, `output_dense` (EinsumDense sub-layers with `$kernel`,
#' `$bias`, `$equation`, `$get_weights()`, available once built), `name`,
#' `built`, `dtype`, `weights`, `trainable_weights`, `losses`, `use_gate`,
#' `sliding_window`, `seed`, `flash_attention`.
#' Methods: `$build(query_shape, value_shape, key_shape = NULL)`,
#' `$compute_output_shape(query_shape, value_shape, key_shape = NULL)`,
#' `$get_weights()`, `$set_weights(weights)`, `$count_params()`,
#' `$get_config()`, `$apply_constraints()`.
#'
#' Weights, in Keras's order and shapes: query kernel (E, N, H), query bias
#' (N, H), key kernel (Dk, N, H), key bias (N, H), (gate kernel (E, N, Hv) and
#' bias (N, Hv) with `use_gate = TRUE`), value kernel (Dv, N, Hv), value bias
#' (N, Hv), output kernel (N, Hv, out...), output bias (out...); no biases
#' with `use_bias = FALSE`.
#'
#' @section Differences from keras3:
#' * A single array as `inputs` means self-attention (keras3 errors).
#' * Integer arguments accept whole numbers given as doubles (`8` or `8L`);
#'   `1.5`, `0`, negatives and `NA` are errors naming the argument.
#' * A fully masked query row gives zero probabilities on every code path.
#' * An explicit `query_mask` is applied (Keras silently ignores it).
#' * `layer$output_shape` exists and returns the configured output shape.
#' * `flash_attention = FALSE` turns the flash path off for this layer; `NULL`
#'   follows [config_is_flash_attention_enabled()] at call time.
#' * Inputs or weights containing `NA`, `NaN` or `Inf` are an error, and so
#'   are inputs with a zero-length axis.
#'
#' @param inputs `NULL` or missing: return the layer. An array: self-attention
#'   on it (`layer(x, x)`). An unnamed list: `list(query, value)` or
#'   `list(query, value, key)` (note the order: value before key). A named
#'   list: call arguments by name, e.g.
#'   `list(query = q, value = v, attention_mask = m)`.
#' @param num_heads Number of attention heads (N), a positive whole number.
#' @param key_dim Size of each head for query and key (H).
#' @param value_dim Size of each head for value (Hv); `NULL` uses `key_dim`.
#' @param dropout Dropout rate on the attention probabilities, in \[0, 1\].
#' @param use_bias Whether the projections have biases.
#' @param output_shape `NULL` (the query's feature size), a positive whole
#'   number, or a vector of them for a multi-axis output.
#' @param attention_axes `NULL` (all axes except batch and features) or
#'   whole numbers in Keras's numbering (see the section above).
#' @param flash_attention `NULL` (follow the global switch), `TRUE` or
#'   `FALSE`. `TRUE` cannot be combined with `dropout > 0` or with
#'   `return_attention_scores = TRUE`, as in Keras.
#' @param kernel_initializer,bias_initializer Initializers: a name such as
#'   `"glorot_uniform"` or an `initializer_*()` object.
#' @param kernel_regularizer,bias_regularizer,activity_regularizer
#'   Regularizers: `NULL`, `"l1"`, `"l2"`, `"l1_l2"` or a `regularizer_*()`
#'   object. Their losses appear in `layer$losses`.
#' @param kernel_constraint,bias_constraint Constraints: `NULL`, a name such
#'   as `"non_neg"` or a `constraint_*()` object, applied by
#'   `layer$apply_constraints()` (optimizers call it after each update).
#' @param seed `NULL` or a whole number: the seed of the dropout stream. With
#'   `NULL` a seed is drawn from R's RNG when the layer is created, so
#'   [set.seed()] makes runs reproducible.
#' @param ... Named layer options: `name`, `dtype` (`"float32"`, the default,
#'   or `"float64"`), `trainable`, `use_gate` (gate the attention output with
#'   a sigmoid of a projection of the query), `sliding_window` (a positive
#'   whole number w: query `t` only sees keys with `|t - s| < w`).
#'
#' @returns A layer object (a function) if `inputs` is `NULL` or missing;
#'   otherwise the layer's output for `inputs`: an array, or
#'   `list(output = , scores = )` when the call asks for the scores.
#' @seealso [backprop()] for gradients, [get_weights()], [get_config()].
#' @export
#' @examples
#' mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4)
#' query <- array(rnorm(2 * 5 * 8), c(2, 5, 8))   # (batch, time, features)
#' value <- array(rnorm(2 * 3 * 6), c(2, 3, 6))
#' out <- mha(query, value)
#' dim(out)                                          # 2 5 8
#' res <- mha(query, value, return_attention_scores = TRUE)
#' dim(res$scores)                                   # 2 2 5 3
#'
#' # self-attention with a causal mask, created and applied at once
#' y <- layer_multi_head_attention(
#'   list(query = query, value = query, use_causal_mask = TRUE),
#'   num_heads = 2, key_dim = 4)
#'
#' # attention over axis 2 of a rank-4 input (Keras's numbering)
#' x <- array(rnorm(2 * 3 * 4 * 8), c(2, 3, 4, 8))
#' mha2 <- layer_multi_head_attention(num_heads = 2, key_dim = 4, attention_axes = 2)
#' dim(mha2(x, x, return_attention_scores = TRUE)$scores)  # 2 3 2 4 4
layer_multi_head_attention <- function(inputs, num_heads, key_dim, value_dim = NULL, dropout = 0,
                                       use_bias = TRUE, output_shape = NULL,
                                       attention_axes = NULL, flash_attention = NULL,
                                       kernel_initializer = "glorot_uniform",
                                       bias_initializer = "zeros", kernel_regularizer = NULL,
                                       bias_regularizer = NULL, activity_regularizer = NULL,
                                       kernel_constraint = NULL, bias_constraint = NULL,
                                       seed = NULL, ...) {
  if (!missing(inputs)) force(inputs)  # pipe order: earlier layers are created (and named) first
  if (missing(num_heads)) abort_arg("num_heads", "supplied: a positive whole number")
  if (missing(key_dim)) abort_arg("key_dim", "supplied: a positive whole number")
  extra <- check_layer_dots(list(...), c("name", "dtype", "trainable", "use_gate", "sliding_window"),
                            "layer_multi_head_attention()")
  layer <- new_multi_head_attention(
    num_heads = num_heads, key_dim = key_dim, value_dim = value_dim, dropout = dropout,
    use_bias = use_bias, output_shape = output_shape, attention_axes = attention_axes,
    flash_attention = flash_attention, kernel_initializer = kernel_initializer,
    bias_initializer = bias_initializer, kernel_regularizer = kernel_regularizer,
    bias_regularizer = bias_regularizer, activity_regularizer = activity_regularizer,
    kernel_constraint = kernel_constraint, bias_constraint = bias_constraint, seed = seed,
    name = extra$name, dtype = extra$dtype, trainable = extra$trainable,
    use_gate = extra$use_gate, sliding_window = extra$sliding_window)
  if (missing(inputs) || is.null(inputs)) return(layer)
  apply_attention_to_inputs(layer, inputs)
}

# Named options passed through `...`: all named, all known.
#' @noRd
check_layer_dots <- function(dots, allowed, fun) {
  if (length(dots) == 0L) return(list())
  nms <- names(dots)
  if (is.null(nms) || any(!nzchar(nms))) {
    abort_arg("...", sprintf("named options of %s (%s)", fun, paste(allowed, collapse = ", ")),
              "an unnamed argument")
  }
  unknown <- setdiff(nms, allowed)
  if (length(unknown)) {
    abort_msg(sprintf("Unknown argument%s passed to %s: %s. Accepted through `...`: %s.",
                      if (length(unknown) > 1L) "s" else "", fun,
                      paste0("`", unknown, "`", collapse = ", "), paste(allowed, collapse = ", ")),
              class = "multihead_error_argument")
  }
  if (anyDuplicated(nms)) abort_arg("...", "given each option once", paste(nms[duplicated(nms)], collapse = ", "))
  dots
}

# keras3's dispatch on `inputs` (see ?layer_multi_head_attention), extended
# as GUIDE.md decides: a sequential model gets the layer added (it then does
# self-attention on the previous layer's output), a single tensor (symbolic
# or array) means self-attention.
#' @noRd
apply_attention_to_inputs <- function(layer, inputs, arg = "inputs") {
  if (inherits(inputs, "multihead_sequential")) {
    compose_layer(inputs, layer, call_layer = attention_self_call)
    return(invisible(inputs))
  }
  if (is_symbolic(inputs)) return(layer(inputs, inputs))
  if (is.list(inputs) && !is.object(inputs)) {
    nms <- names(inputs)
    if (length(inputs) == 0L || (is.null(nms) && length(inputs) < 2L)) {
      abort_arg(arg, "a list holding at least query and value: list(query, value[, key])",
                sprintf("a list of length %d", length(inputs)))
    }
    if (is.null(nms) && length(inputs) > 3L) {
      abort_arg(arg, "an unnamed list of length 2 or 3: list(query, value[, key])",
                sprintf("a list of length %d", length(inputs)))
    }
    return(do.call(layer, inputs, quote = TRUE))
  }
  if (is.numeric(inputs) && !is.null(dim(inputs)) && !is.object(inputs)) return(layer(inputs, inputs))
  abort_arg(arg, paste0("NULL, a sequential model, a symbolic tensor or numeric array (self-attention), ",
                             "an unnamed list(query, value[, key]) or a named list of call arguments"),
            describe_value(inputs))
}

# How a sequential model applies the layer to the previous output.
#' @noRd
attention_self_call <- function(layer, x) layer(x, x)

# ---- constructor -------------------------------------------------------------

#' @noRd
new_multi_head_attention <- function(num_heads, key_dim, value_dim = NULL, dropout = 0,
                                     use_bias = TRUE, output_shape = NULL, attention_axes = NULL,
                                     flash_attention = NULL, kernel_initializer = "glorot_uniform",
                                     bias_initializer = "zeros", kernel_regularizer = NULL,
                                     bias_regularizer = NULL, activity_regularizer = NULL,
                                     kernel_constraint = NULL, bias_constraint = NULL, seed = NULL,
                                     name = NULL, dtype = NULL, trainable = NULL, use_gate = NULL,
                                     sliding_window = NULL, class_name = "MultiHeadAttention",
                                     default_name = "multi_head_attention") {
  cfg <- list()
  cfg$num_heads <- check_whole(num_heads, "num_heads")
  cfg$key_dim <- check_whole(key_dim, "key_dim")
  cfg$value_dim <- check_whole(value_dim, "value_dim", null_ok = TRUE)
  if (is.null(cfg$value_dim)) cfg$value_dim <- cfg$key_dim
  cfg$dropout <- check_number(dropout, "dropout", lower = 0, upper = 1)
  cfg$use_bias <- check_flag(use_bias, "use_bias")
  cfg$output_shape <- check_whole_vector(output_shape, "output_shape", null_ok = TRUE)
  if (!is.null(attention_axes)) {
    attention_axes <- check_whole_vector(attention_axes, "attention_axes", allow_negative = TRUE)
    if (any(attention_axes == 0L)) {
      abort_arg("attention_axes", paste0("axes in Keras's numbering other than 0 (axis 0 is the batch ",
                                         "axis; the first time axis is 1)"),
                paste(attention_axes, collapse = ", "))
    }
    if (anyDuplicated(attention_axes)) {
      abort_arg("attention_axes", "distinct axes", paste(attention_axes, collapse = ", "))
    }
  }
  cfg$attention_axes <- attention_axes
  cfg$flash_attention <- check_flag(flash_attention, "flash_attention", null_ok = TRUE)
  cfg$kernel_initializer <- as_initializer(kernel_initializer, "kernel_initializer")
  cfg$bias_initializer <- as_initializer(bias_initializer, "bias_initializer")
  cfg$kernel_regularizer <- as_regularizer(kernel_regularizer, "kernel_regularizer")
  cfg$bias_regularizer <- as_regularizer(bias_regularizer, "bias_regularizer")
  cfg$activity_regularizer <- as_regularizer(activity_regularizer, "activity_regularizer")
  cfg$kernel_constraint <- as_constraint(kernel_constraint, "kernel_constraint")
  cfg$bias_constraint <- as_constraint(bias_constraint, "bias_constraint")
  cfg$seed <- check_seed(seed, "seed")
  cfg$use_gate <- if (is.null(use_gate)) FALSE else check_flag(use_gate, "use_gate")
  cfg$sliding_window <- check_whole(sliding_window, "sliding_window", null_ok = TRUE)
  dtype <- check_dtype(dtype)
  if (isTRUE(cfg$flash_attention) && cfg$dropout > 0) {
    abort_msg(paste0("Dropout is not supported when flash attention is enabled. ",
                     "Please set dropout to 0.0 to use flash attention."),
              class = "multihead_error_argument")
  }

  self <- new_layer_state(class_name, default_name, name = name, dtype = dtype,
                          trainable = trainable, config = cfg)
  # Dropout stream: the user's seed, or one drawn from R's RNG now.
  self$dropout_seed <- if (is.null(cfg$seed)) draw_seed() else cfg$seed
  self$call_counter <- 0
  new_layer_object(self, mha_layer_function)
}

# The body of every MultiHeadAttention layer object (`self` is bound in its
# environment by new_layer_object()).
#' @noRd
mha_layer_function <- function(query, value, key = NULL, attention_mask = NULL,
                               return_attention_scores = FALSE, training = NULL,
                               use_causal_mask = FALSE, ..., query_mask = NULL, value_mask = NULL,
                               key_mask = NULL, cache = NULL, cache_update_index = NULL) {
  if (...length()) reject_call_dots(list(...), self$class_name)
  if (missing(query)) abort_arg("query", "supplied: a numeric array (B, T..., E)")
  if (missing(value)) {
    abort_arg("value", "supplied: call the layer as layer(query, value), or layer(x, x) for self-attention")
  }
  if (!is.null(cache)) {  # cached decoding (layer-attention-cache.R)
    if (!is.null(value_mask) || !is.null(key_mask)) {
      abort_arg(if (is.null(value_mask)) "key_mask" else "value_mask",
                "NULL in a call with `cache` (mask cached positions with attention_mask)")
    }
    carried <- if (is.null(query_mask)) get_keras_mask(query)
    res <- mha_cached_run(self, drop_implicit_masks(query), drop_implicit_masks(value),
                          if (!is.null(key)) drop_implicit_masks(key), cache, cache_update_index,
                          attention_mask, use_causal_mask, training,
                          if (is.null(query_mask)) carried else query_mask, return_attention_scores)
    res$output <- attach_implicit_mask(res$output, carried)
    return(res)
  }
  if (!is.null(cache_update_index)) abort_arg("cache_update_index", "NULL in a call without `cache`")
  # implicit masks carried by eager arrays (keras-mask.R), as Keras's _keras_mask
  carried <- if (is.null(query_mask)) get_keras_mask(query)  # passed on to the output
  if (is.null(query_mask)) query_mask <- carried
  if (is.null(value_mask)) value_mask <- get_keras_mask(value)
  if (is.null(key_mask) && !is.null(key)) key_mask <- get_keras_mask(key)
  query <- drop_implicit_masks(query)
  value <- drop_implicit_masks(value)
  if (!is.null(key)) key <- drop_implicit_masks(key)
  res <- mha_run(self, query, value, key, attention_mask, return_attention_scores, training,
                 use_causal_mask, query_mask, value_mask, key_mask, grad_output = NULL)
  if (is.list(res)) {  # the output carries the query's mask, as in Keras
    res$output <- attach_implicit_mask(res$output, carried)
    return(res)
  }
  attach_implicit_mask(res, carried)
}

#' @noRd
reject_call_dots <- function(dots, class_name = "MultiHeadAttention") {
  nms <- names(dots)
  if (is.null(nms)) nms <- rep("", length(dots))
  shown <- ifelse(nzchar(nms), paste0("`", nms, "`"), "an unnamed argument")
  abort_msg(sprintf(paste0("Unknown argument%s in a call of a %s layer: %s. Accepted: ",
                           "query, value, key, attention_mask, return_attention_scores, training, ",
                           "use_causal_mask, query_mask, value_mask, key_mask."),
                    if (length(dots) > 1L) "s" else "", class_name, paste(unique(shown), collapse = ", ")),
            class = "multihead_error_argument")
}

#' @noRd
check_dtype <- function(dtype) {
  if (is.null(dtype)) return(current_default_dtype())
  half <- c("float16", "bfloat16", "mixed_float16", "mixed_bfloat16")
  if (!(is.character(dtype) && length(dtype) == 1L && !is.na(dtype) &&
        dtype %in% c("float32", "float64", half))) {
    abort_arg("dtype", "\"float32\" or \"float64\" (or \"float16\" / \"bfloat16\", computed in float32)",
              describe_value(dtype))
  }
  if (dtype %in% half) {  # keras3 code asks for half precision; we have float32 kernels
    if (!isTRUE(.dtype_notes$half)) {
      .dtype_notes$half <- TRUE
      message(sprintf(paste0("dtype = \"%s\": multihead has no half-precision kernels; the layer computes and ",
                             "keeps its weights in float32. (This note is shown once per session.)"), dtype))
    }
    dtype <- "float32"
  }
  dtype
}

.dtype_notes <- new.env(parent = emptyenv())

# A 31-bit seed from R's RNG.
#' @noRd
draw_seed <- function() as.integer(floor(stats::runif(1) * .Machine$integer.max))

# ---- build -------------------------------------------------------------------

#' @noRd
check_shape_arg <- function(shape, arg, min_rank = 3L) {
  if (is.list(shape)) shape <- unlist(lapply(shape, function(x) if (is.null(x)) NA else x))
  ok <- (is.numeric(shape) || (is.logical(shape) && all(is.na(shape)))) && is.null(dim(shape)) &&
    length(shape) >= min_rank && !any(is.nan(shape))
  if (ok) {
    known <- shape[!is.na(shape)]
    ok <- all(is.finite(known)) && all(known == round(known)) && all(known >= 1) &&
      all(known <= .Machine$integer.max) && !is.na(shape[length(shape)])
  }
  if (!ok) {
    abort_arg(arg, sprintf(paste0("a shape: a vector of %d or more positive whole numbers (batch first, ",
                                  "features last; NA for an unknown size)"), min_rank),
              describe_value(shape))
  }
  as.integer(shape)
}

#' @noRd
check_same_rank <- function(query_shape, value_shape) {
  if (length(value_shape) != length(query_shape)) {
    abort_msg(sprintf(paste0("`query` and `value` must have the same rank; got query shape %s and value ",
                             "shape %s."), fmt_shape(query_shape), fmt_shape(value_shape)),
              class = "multihead_error_shape")
  }
}

#' @noRd
mha_build <- function(self, query_shape, value_shape, key_shape = NULL) {
  query_shape <- check_shape_arg(query_shape, "query_shape")
  value_shape <- check_shape_arg(value_shape, "value_shape")
  # any rank: a key of another rank than the value fails Keras's "must be equal" check
  key_shape <- if (is.null(key_shape)) value_shape else
    check_shape_arg(key_shape, "key_shape", min_rank = 1L)
  if (isTRUE(self$built)) {
    abort_msg(sprintf("Layer \"%s\" is already built (for query shape %s).", self$name,
                      fmt_shape(self$build_shapes$query)))
  }
  check_key_value_shapes(value_shape, key_shape)
  check_same_rank(query_shape, value_shape)
  r <- length(query_shape)
  cfg <- self$config
  grouped <- mha_is_grouped(self)
  if (grouped) gqa_check_rank(query_shape, "query_shape")
  axes <- resolve_attention_axes(cfg$attention_axes, r)
  E <- query_shape[r]; Dk <- key_shape[r]; Dv <- value_shape[r]
  N <- cfg$num_heads; H <- cfg$key_dim; Hv <- cfg$value_dim; Nkv <- mha_kv_heads(self)
  out <- if (is.null(cfg$output_shape)) E else cfg$output_shape
  bias <- function(shape) if (cfg$use_bias) shape else NULL
  kernel_what <- function(which, shape) sprintf("the %s kernel %s of layer \"%s\"", which, shape, self$name)
  check_size(c(max(E, Dk), N, H), "key_dim", kernel_what("query/key", "(features, num_heads, key_dim)"))
  check_size(c(max(E, Dv), N, Hv), "value_dim", kernel_what("value", "(features, num_heads, value_dim)"))
  check_size(c(N, Hv, out), "output_shape", kernel_what("output", "(num_heads, value_dim, output_shape)"))
  # Keras's equations: GroupedQueryAttention's own (3-D inputs), else the
  # general ones of MultiHeadAttention
  equations <- if (grouped) c(query = "bqm,muh->bquh", key = "bkm,mvh->bkvh", gate = "bqm,muh->bquh",
                              value = "bkm,mvh->bkvh", attention_output = "bquh,uhm->bqm")
  sub <- function(name, kernel_shape, n_contract, salt, free, activation = NULL) {
    new_einsum_dense(
      name = name,
      equation = if (grouped) equations[[name]] else
        projection_equation(free, n_contract, length(kernel_shape) - n_contract),
      kernel_shape = kernel_shape, bias_shape = bias(kernel_shape[-seq_len(n_contract)]),
      n_contract = n_contract, kernel_initializer = cfg$kernel_initializer,
      bias_initializer = cfg$bias_initializer, kernel_regularizer = cfg$kernel_regularizer,
      bias_regularizer = cfg$bias_regularizer, kernel_constraint = cfg$kernel_constraint,
      bias_constraint = cfg$bias_constraint, activation = activation, dtype = self$dtype,
      trainable = self$trainable, salt = salt)
  }
  subs <- list(query = sub("query", c(E, N, H), 1L, 1L, r - 1L),
               key = sub("key", c(Dk, Nkv, H), 1L, 2L, r - 1L))
  if (cfg$use_gate) subs$gate <- sub("gate", c(E, N, Hv), 1L, 3L, r - 1L, activation = "sigmoid")
  subs$value <- sub("value", c(Dv, Nkv, Hv), 1L, 4L, r - 1L)
  subs$attention_output <- sub("attention_output", c(N, Hv, out), 2L, 5L, r - 1L)
  self$sublayers <- subs
  self$axes <- axes
  self$build_shapes <- list(query = query_shape, value = value_shape, key = key_shape)
  self$built <- TRUE
  self$weight_cache <- NULL
  self$plan_key <- NULL  # mha_run's cached attention plan
  invisible(NULL)
}

# Grouped-query attention (layer-group-query-attention.R) runs on this
# layer's code with fewer key/value heads: its config holds
# num_key_value_heads.
#' @noRd
mha_is_grouped <- function(self) !is.null(self$config$num_key_value_heads)

# The number of key/value heads (the core's Nkv).
#' @noRd
mha_kv_heads <- function(self) {
  cfg <- self$config
  if (is.null(cfg$num_key_value_heads)) cfg$num_heads else cfg$num_key_value_heads
}

#' @noRd
mha_compute_output_shape <- function(self, query_shape, value_shape, key_shape = NULL) {
  query_shape <- check_shape_arg(query_shape, "query_shape")
  value_shape <- check_shape_arg(value_shape, "value_shape")
  # any rank: a key of another rank than the value fails Keras's "must be equal" check
  key_shape <- if (is.null(key_shape)) value_shape else
    check_shape_arg(key_shape, "key_shape", min_rank = 1L)
  check_key_value_shapes(value_shape, key_shape)
  check_same_rank(query_shape, value_shape)
  if (mha_is_grouped(self)) gqa_check_output_shapes(query_shape, value_shape)
  axes <- resolve_attention_axes(self$config$attention_axes, length(query_shape))
  check_batch_like_axes(query_shape, value_shape, axes)
  out <- self$config$output_shape
  if (is.null(out)) query_shape else c(query_shape[-length(query_shape)], out)
}

# ---- call --------------------------------------------------------------------

#' @noRd
check_numeric_array <- function(x, arg, min_rank = 3L, check_finite = TRUE) {
  if (is_native_tensor(x) && length(dim(x)) >= min_rank && all(dim(x) > 0L)) return(invisible(x))  # the runner's
  if (!(is.numeric(x) && !is.null(dim(x)) && length(dim(x)) >= min_rank) || is.object(x)) {
    abort_arg(arg, sprintf("a numeric array with %d or more axes (batch first, features last)", min_rank),
              describe_value(x))
  }
  if (check_finite && !cpp_all_finite(x, mh_threads())) abort_arg(arg, "finite: it contains NA, NaN or Inf")
  if (any(dim(x) == 0L)) {
    abort_arg(arg, "an array without zero-length axes", sprintf("shape %s", fmt_shape(dim(x))))
  }
  invisible(x)
}

# `use_causal_mask`: TRUE or FALSE, or 1 / 0 as keras3 accepts them.
#' @noRd
check_causal_flag <- function(x) {
  if (is.numeric(x) && length(x) == 1L && is.null(dim(x)) && !is.na(x) && x %in% c(0, 1)) return(x == 1)
  check_flag(x, "use_causal_mask")
}

#' @noRd
check_built_input <- function(self, x, arg, built_shape) {
  d <- dim(x)
  if (length(d) != length(built_shape)) {
    abort_arg(arg, sprintf("an array of rank %d, as when layer \"%s\" was built (shape %s)",
                           length(built_shape), self$name, fmt_shape(built_shape)),
              sprintf("rank %d (shape %s)", length(d), fmt_shape(d)))
  }
  if (d[length(d)] != built_shape[length(built_shape)]) {
    abort_arg(arg, sprintf("an array with %d features on its last axis, as when layer \"%s\" was built",
                           built_shape[length(built_shape)], self$name),
              sprintf("%d (shape %s)", d[length(d)], fmt_shape(d)))
  }
}

# The weight slots of cpp_mha_call(), "<sub-layer>/<variable>" in the order
# the glue states (cpp_mha_weight_slots(): Keras's weight order).
#' @noRd
mha_slot_names <- function() cpp_mha_weight_slots()

# The layer's weights as the slots of cpp_mha_call() (NULL where absent).
#' @noRd
mha_weight_slots <- function(self) {
  if (!is.null(self$weight_cache)) return(self$weight_cache)
  s <- self$sublayers
  slots <- lapply(strsplit(mha_slot_names(), "/", fixed = TRUE), function(p) {
    if (is.null(s[[p[1L]]])) NULL else layer_self(s[[p[1L]]])$variables[[p[2L]]]
  })
  self$weight_cache <- slots
  slots
}

# The weight slots converted once for the core (cpp_mha_core_weights(): an
# external pointer), kept as an attribute of the slot cache: whatever clears
# self$weight_cache (new weights) drops them too. A layer read back by
# readRDS() holds a null pointer, rebuilt here on its first call.
#' @noRd
mha_core_weights <- function(self, slots, float64) {
  key <- if (float64) "core_float64" else "core_float32"
  cw <- attr(slots, key, exact = TRUE)
  if (is.null(cw) || !cpp_core_weights_alive(cw)) {
    mha_check_weights_finite(self, slots)
    cw <- cpp_mha_core_weights(slots, float64)
    attr(slots, key) <- cw
    self$weight_cache <- slots
  }
  cw
}

# Weights holding Inf or NaN (in a float32 layer, a value beyond float32's
# range stored by set_weights() or an update becomes Inf) are refused,
# naming the weight; checked when the converted weights are made, i.e. once
# per change of the weights.
#' @noRd
mha_check_weights_finite <- function(self, slots) {
  nms <- mha_slot_names()
  for (i in seq_along(slots)) {
    if (is.null(slots[[i]]) || cpp_all_finite(slots[[i]], 1L)) next
    abort_arg("weights", sprintf(paste0("finite weights: `%s/%s` of layer \"%s\" holds Inf or NaN%s"),
                                 self$name, nms[i], self$name,
                                 if (identical(self$dtype, "float32"))
                                   paste0(" (a value beyond float32's range becomes Inf in a float32 layer; ",
                                          "create the layer with dtype = \"float64\" for larger values)") else ""))
  }
}

# One call of the layer: validation, the plan, the masks, cpp_mha_call().
# With grad_output: list(output, grads[, scores]). With `record` (a graph
# forward in training): list(output, scores, record), the record being the
# core's kept forward for mha_record_backward(). Otherwise the output, or
# list(output, scores).
#' @noRd
mha_run <- function(self, query, value, key, attention_mask, return_attention_scores, training,
                    use_causal_mask, query_mask, value_mask, key_mask, grad_output, record = FALSE) {
  # NA/NaN/Inf in the inputs or grad_output: found by cpp_mha_call() (while
  # it converts them), reported below naming the argument.
  check_numeric_array(query, "query", check_finite = FALSE)
  check_numeric_array(value, "value", check_finite = FALSE)
  key_given <- !is.null(key)
  if (!is.null(self$config$activity_regularizer)) {  # regularized in R: R arrays
    query <- native_as_array(query)
    value <- native_as_array(value)
    key <- native_as_array(key)
  }
  if (key_given) {
    check_numeric_array(key, "key", min_rank = 1L, check_finite = FALSE)
  } else {
    key <- value
  }
  return_attention_scores <- check_flag(return_attention_scores, "return_attention_scores")
  use_causal_mask <- check_causal_flag(use_causal_mask)
  training <- check_flag(training, "training", null_ok = TRUE)
  cfg <- self$config
  if (return_attention_scores && isTRUE(cfg$flash_attention)) {
    abort_msg(paste0("Returning attention scores is not supported when flash attention is enabled. ",
                     "Please disable flash attention to access attention scores."),
              class = "multihead_error_argument")
  }
  qd <- dim(query); vd <- dim(value); kd <- dim(key)
  mha_build_for_inputs(self, query, value, key, key_given)

  axes <- self$axes
  # The plan depends only on the two shapes once the layer is built: reuse it.
  plan_key <- c(qd, -1L, vd)
  # (a plan without core_dims comes from a layer saved by an older version)
  if (identical(self$plan_key, plan_key) && !is.null(self$plan$core_dims)) {
    plan <- self$plan
  } else {
    plan <- attention_plan(qd, vd, axes, cfg$num_heads, cfg$output_shape)
    # Shape-only quantities of the core call, kept with the plan (the key's
    # feature size is the built one: check_built_input() above).
    nh <- cfg$num_heads * max(cfg$key_dim, cfg$value_dim)
    plan$core_sizes <- list(c(plan$B, plan$T, nh), c(plan$B, plan$S, nh), plan$out_dims)
    plan$core_max_size <- max(vapply(plan$core_sizes, function(x) prod(as.double(x)), 0))
    plan$core_dims <- as.integer(c(plan$B, plan$T, plan$S, qd[length(qd)], kd[length(kd)],
                                   vd[length(vd)], cfg$num_heads, cfg$key_dim, cfg$value_dim,
                                   prod(plan$out_dims[-seq_len(length(qd) - 1L)]),
                                   # grouped-query attention: its key/value heads (Nkv)
                                   if (mha_is_grouped(self)) mha_kv_heads(self)))
    self$plan <- plan
    self$plan_key <- plan_key
  }
  if ((use_causal_mask || !is.null(cfg$sliding_window)) && length(axes) > 1L) {
    abort_arg(if (use_causal_mask) "use_causal_mask" else "sliding_window",
              sprintf("used with a single attention axis (this layer attends over axes %s jointly)",
                      paste(axes, collapse = ", ")))
  }
  mask <- NULL; mask_bn <- c(1L, 1L)
  if (!is.null(attention_mask)) {
    m <- canonical_attention_mask(attention_mask, plan, cfg$num_heads)
    mask <- m$data; mask_bn <- m$bn
  }
  qmask <- if (is.null(query_mask)) NULL else
    canonical_position_mask(query_mask, qd[-length(qd)], plan, "query_mask")
  kmask <- NULL
  if (!is.null(value_mask)) kmask <- canonical_position_mask(value_mask, vd[-length(vd)], plan, "value_mask")
  if (!is.null(key_mask)) {
    km <- canonical_position_mask(key_mask, kd[-length(kd)], plan, "key_mask")
    kmask <- if (is.null(kmask)) km else kmask * km
  }

  rate <- if (isTRUE(training)) cfg$dropout else 0
  if (rate > 0) self$call_counter <- self$call_counter + 1
  backward <- !is.null(grad_output)
  if (backward) {
    if (!(is.numeric(grad_output) && identical(as.integer(dim(grad_output)), plan$out_dims))) {
      abort_arg("grad_output", sprintf("a numeric array of the output's shape %s", fmt_shape(plan$out_dims)),
                describe_value(grad_output))
    }
  }
  # The flash kernel never stores (T, S) matrices; scores need the materialised one.
  flash <- !return_attention_scores &&
    (isTRUE(cfg$flash_attention) || (is.null(cfg$flash_attention) && config_is_flash_attention_enabled()))
  if (!flash) check_attention_memory(plan, cfg$num_heads, self$dtype, return_attention_scores || backward)

  # the core's buffers: projections (B, T or S, N, H or Hv) and the output
  limit <- max_tensor_elements()
  if (plan$core_max_size > limit) {  # name the first one too large
    proj <- "its projection (batch, positions, num_heads * max(key_dim, value_dim))"
    check_size(plan$core_sizes[[1L]], "query", proj, limit)
    check_size(plan$core_sizes[[2L]], "value", proj, limit)
    check_size(plan$core_sizes[[3L]], "query", "the attention output", limit)
  }
  slots <- mha_weight_slots(self)
  float64 <- identical(self$dtype, "float64")
  res <- cpp_mha_call(query, key, value, plan$order, plan$order, plan$core_dims,
                      slots, mha_core_weights(self, slots, float64), mask, mask_bn, qmask, kmask, use_causal_mask,
                      if (is.null(cfg$sliding_window)) 0L else cfg$sliding_window,
                      rate, self$dropout_seed, self$call_counter, return_attention_scores,
                      flash, float64, mh_threads(), plan$out_dims, plan$out_order,
                      plan$scores_dims, grad_output, record && !backward)
  if (!is.null(res$nonfinite)) {
    mha_abort_nonfinite(self, res$nonfinite, list(query, value, key, grad_output)[[res$nonfinite]])
  }
  if (!is.null(res$overflow)) mha_abort_overflow(self)
  mha_set_activity_memo(self, NULL)
  self$activity_losses <- if (is.null(cfg$activity_regularizer)) list() else
    mha_activity_losses(self, query, key, value, res$output, qd[1L])
  if (record && !backward) {
    return(list(output = res$output, scores = res$scores,
                record = list(ptr = res$record, key_given = key_given)))
  }
  if (backward) {
    out <- list(output = res$output, grads = mha_input_weight_grads(self, res$grads, key_given))
    if (return_attention_scores) out$scores <- res$scores
    return(out)
  }
  if (return_attention_scores) return(list(output = res$output, scores = res$scores))
  res$output
}

# Builds the layer on its first call and checks a call's inputs against the
# built shapes (`key` is the value when the call gave none).
#' @noRd
mha_build_for_inputs <- function(self, query, value, key, key_given) {
  check_key_value_shapes(dim(value), dim(key))
  if (!isTRUE(self$built)) mha_build(self, dim(query), dim(value), if (key_given) dim(key) else NULL)
  bs <- self$build_shapes
  check_built_input(self, query, "query", bs$query)
  check_built_input(self, value, "value", bs$value)
  check_built_input(self, key, "key", bs$key)
}

# The error for an input the core found not finite (k: 1 query, 2 value,
# 3 key, 4 grad_output): NA/NaN/Inf, or in a float32 layer a finite value
# beyond float32's range.
#' @noRd
mha_abort_nonfinite <- function(self, k, x) {
  arg <- c("query", "value", "key", "grad_output")[k]
  x <- native_as_array(x)
  if (identical(self$dtype, "float32") && cpp_all_finite(x, mh_threads())) {
    abort_arg(arg, sprintf(paste0("values within float32's range (|x| <= 3.4e38) for layer \"%s\" of dtype ",
                                  "\"float32\"; create the layer with dtype = \"float64\" for larger values"),
                           self$name),
              "a finite value beyond it")
  }
  abort_arg(arg, "finite: it contains NA, NaN or Inf")
}

# The error for attention logits beyond the range of the layer's dtype (the
# core refuses to return the NaN or zero probabilities they would give).
#' @noRd
mha_abort_overflow <- function(self) {
  f32 <- identical(self$dtype, "float32")
  abort_msg(sprintf(paste0("The attention logits of layer \"%s\" (query . key / sqrt(key_dim)) are beyond ",
                           "the range of %s: the inputs or weights are too large.%s"),
                    self$name, self$dtype,
                    if (f32) " Create the layer with dtype = \"float64\", or scale the inputs down." else
                      " Scale the inputs down."),
            class = c("multihead_error_overflow", "multihead_error_argument"))
}

# The gradients of a call from the glue's list(query, key, value, weights):
# list(query, value, key, weights), key NULL (and its gradient added to the
# value's) when the call had no separate key.
#' @noRd
mha_input_weight_grads <- function(self, g, key_given) {
  grads <- list(query = g$query, value = g$value, key = g$key,
                weights = mha_named_weight_grads(self, g$weights))
  if (!key_given) {  # the key was the value: its gradient is the sum (either may be NULL: not wanted)
    grads["value"] <- list(if (is.null(grads$key)) grads$value
                           else if (is.null(grads$value)) grads$key
                           else if (is_native_tensor(grads$value)) native_sum_of_fresh(grads$value, grads$key)
                           else grads$value + grads$key)
    grads["key"] <- list(NULL)
  }
  grads
}

# The backward pass of a recorded forward (mha_run(record = TRUE)) for the
# output gradient `grad_output`: list(query, value, key, weights) as
# mha_input_weight_grads(). need: the input gradients wanted, logical
# c(query, key, value) (the others are NULL and not computed).
#' @noRd
mha_record_backward <- function(self, record, grad_output, need = c(TRUE, TRUE, TRUE)) {
  if (!is_native_tensor(grad_output) && !(is.numeric(grad_output) && !is.null(dim(grad_output)))) {
    abort_arg("grad_output", "a numeric array of the output's shape", describe_value(grad_output))
  }
  g <- cpp_mha_backward(record$ptr, grad_output, need)
  if (!is.null(g$nonfinite)) mha_abort_nonfinite(self, 4L, grad_output)
  mha_input_weight_grads(self, g, record$key_given)
}

# Weight gradients from the slots, named by weight path, in get_weights()
# order.
#' @noRd
mha_named_weight_grads <- function(self, slot_grads) {
  names(slot_grads) <- mha_slot_names()
  keep <- !vapply(slot_grads, is.null, logical(1))
  out <- slot_grads[keep]
  names(out) <- paste0(self$name, "/", names(out))
  out
}

# Keras gives the activity regularizer to each sub-layer: one loss each on the
# projected query, key, (gate,) value and the final output, each divided by
# the batch size (Keras >= 3.14).
#' @noRd
# The projections are computed once per call and kept with the inputs they
# were computed from (mha_set_activity_memo()) for the training step's
# activity terms (mha_activity_terms()), which find them there instead of
# projecting again.
mha_activity_losses <- function(self, query, key, value, output, batch) {
  reg <- self$config$activity_regularizer
  proj <- mha_projections(self, query, key, value)
  mha_set_activity_memo(self, list(query = query, key = key, value = value, projections = proj))
  lapply(c(unname(proj), list(output)), function(o) regularizer_loss(reg, o) / max(1, batch))
}

# The last call's projections and inputs, kept as an attribute of the weight
# slots (self$weight_cache) so that new weights drop them.
#' @noRd
mha_set_activity_memo <- function(self, memo) {
  slots <- mha_weight_slots(self)
  if (is.null(memo) && is.null(attr(slots, "activity_memo", exact = TRUE))) return(invisible())
  attr(slots, "activity_memo") <- memo
  self$weight_cache <- slots
  invisible()
}

#' @noRd
mha_activity_memo <- function(self) {
  if (is.null(self$weight_cache)) NULL else attr(self$weight_cache, "activity_memo", exact = TRUE)
}

# The outputs of the query, key, (gate,) value projections of a call, named
# by sub-layer, in Keras's order.
#' @noRd
mha_projections <- function(self, query, key, value) {
  subs <- self$sublayers
  which <- intersect(c("query", "key", "gate", "value"), names(subs))
  inputs <- list(query = query, key = key, gate = query, value = value)
  stats::setNames(lapply(which, function(w) einsum_dense_call(layer_self(subs[[w]]), inputs[[w]])), which)
}

# The materialised path (used when scores are requested or flash attention is
# off) holds B*N*T*S probabilities (when scores or gradients are needed) or
# T*S per thread; refuse sizes beyond the configured limit with a clear error
# instead of failing to allocate. The flash path needs no such check.
#' @noRd
check_attention_memory <- function(plan, num_heads, dtype, full) {
  bytes_per <- if (identical(dtype, "float64")) 8 else 4
  need <- if (full) as.double(plan$B) * num_heads * plan$T * plan$S * bytes_per
    else as.double(plan$T) * plan$S * bytes_per * mh_threads()
  limit <- getOption("multihead.max_attention_bytes", 8 * 1024^3)
  if (need > limit) {
    abort_msg(sprintf(paste0("This attention call would need %s for its (T, S) = (%s, %s) attention matrices ",
                             "(over the limit of %s set by options(multihead.max_attention_bytes)). ",
                             "Use the flash path, which never stores them: do not request attention ",
                             "scores, and leave flash_attention at NULL or TRUE."),
                      format_bytes(need), plan$T, plan$S, format_bytes(limit)),
              class = "multihead_error_memory")
  }
}

#' @noRd
format_bytes <- function(x) {
  units <- c("B", "KiB", "MiB", "GiB", "TiB", "PiB")
  i <- max(1L, min(length(units), floor(log(max(x, 1), 1024)) + 1L))
  sprintf("%.1f %s", x / 1024^(i - 1L), units[i])
}

# ---- properties, methods, config ---------------------------------------------

#' @noRd
mha_sublayer_property <- function(which) {
  force(which)
  function(self) {
    if (!isTRUE(self$built)) {
      abort_msg(sprintf("`%s_dense` exists once layer \"%s\" is built: call it on data or call $build() first.",
                        if (which == "attention_output") "output" else which, self$name))
    }
    self$sublayers[[which]]
  }
}

#' @noRd
mha_properties <- function() c(common_layer_properties, list(
  num_heads = function(self) self$config$num_heads,
  key_dim = function(self) self$config$key_dim,
  value_dim = function(self) self$config$value_dim,
  dropout = function(self) self$config$dropout,
  use_bias = function(self) self$config$use_bias,
  output_shape = function(self) self$config$output_shape,
  attention_axes = function(self) if (isTRUE(self$built)) self$axes else self$config$attention_axes,
  use_gate = function(self) self$config$use_gate,
  sliding_window = function(self) self$config$sliding_window,
  seed = function(self) self$config$seed,
  flash_attention = function(self) self$config$flash_attention,
  query_dense = mha_sublayer_property("query"),
  key_dense = mha_sublayer_property("key"),
  value_dense = mha_sublayer_property("value"),
  gate_dense = mha_sublayer_property("gate"),
  output_dense = mha_sublayer_property("attention_output")
))

#' @noRd
mha_methods <- function() c(common_layer_methods, list(
  build = function(self, query_shape, value_shape, key_shape = NULL) {
    check_shapes_supplied(missing(query_shape), missing(value_shape))
    mha_build(self, query_shape, value_shape, key_shape)
  },
  compute_output_shape = function(self, query_shape, value_shape, key_shape = NULL) {
    check_shapes_supplied(missing(query_shape), missing(value_shape))
    mha_compute_output_shape(self, query_shape, value_shape, key_shape)
  }
))

#' @noRd
check_shapes_supplied <- function(query_missing, value_missing) {
  if (query_missing) abort_arg("query_shape", "supplied: a shape such as c(NA, T, E)")
  if (value_missing) abort_arg("value_shape", "supplied: a shape such as c(NA, S, Dv)")
}

#' @noRd
mha_get_config <- function(self) {
  cfg <- self$config
  list(name = self$name, trainable = self$trainable, dtype = self$dtype,
       num_heads = cfg$num_heads, key_dim = cfg$key_dim, value_dim = cfg$value_dim,
       dropout = cfg$dropout, use_bias = cfg$use_bias, use_gate = cfg$use_gate,
       output_shape = cfg$output_shape, attention_axes = cfg$attention_axes,
       sliding_window = cfg$sliding_window, flash_attention = cfg$flash_attention,
       kernel_initializer = config_or_null(cfg$kernel_initializer, initializer_config),
       bias_initializer = config_or_null(cfg$bias_initializer, initializer_config),
       kernel_regularizer = config_or_null(cfg$kernel_regularizer, regularizer_config),
       bias_regularizer = config_or_null(cfg$bias_regularizer, regularizer_config),
       activity_regularizer = config_or_null(cfg$activity_regularizer, regularizer_config),
       kernel_constraint = config_or_null(cfg$kernel_constraint, constraint_config),
       bias_constraint = config_or_null(cfg$bias_constraint, constraint_config),
       seed = cfg$seed)
}

#' @noRd
mha_from_config <- function(config) {
  known <- c("num_heads", "key_dim", "value_dim", "dropout", "use_bias", "output_shape", "attention_axes",
             "flash_attention", "kernel_initializer", "bias_initializer", "kernel_regularizer",
             "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint", "seed",
             "name", "dtype", "trainable", "use_gate", "sliding_window")
  unknown <- setdiff(names(config), known)
  if (is.null(names(config)) || length(unknown)) {
    abort_arg("config", "a list returned by get_config() of a MultiHeadAttention layer",
              if (is.null(names(config))) "an unnamed list" else
                sprintf("unknown entries %s", paste0("`", unknown, "`", collapse = ", ")))
  }
  for (required in c("num_heads", "key_dim")) {
    if (is.null(config[[required]])) abort_arg(required, "in the config (a positive whole number)")
  }
  do.call(new_multi_head_attention, unclass(config), quote = TRUE)
}

# The groups of the projections in Keras's ".weights.h5" layout (the class's
# `h5_children`, see keras-weights-h5.R): Keras's attribute names in its
# visiting order (public properties first, then private attributes), with
# the name tried when reading (the private attribute, which older Keras
# visited first).
#' @noRd
mha_h5_children <- function(self) {
  subs <- self$sublayers
  child <- function(path, sub, alt) if (!is.null(subs[[sub]])) list(list(path = path, layer = subs[[sub]], alt = alt))
  c(child("key_dense", "key", "_key_dense"),
    child("output_dense", "attention_output", "_output_dense"),
    child("query_dense", "query", "_query_dense"),
    child("value_dense", "value", "_value_dense"),
    list(list(path = "_dropout_layer", name = "dropout")),
    child("_gate_dense", "gate", "gate_dense"),  # in case a property is added
    list(list(path = "_softmax", name = "softmax")))
}

#' @noRd
register_multi_head_attention <- function() {
  register_layer_class(
    "MultiHeadAttention",
    properties = mha_properties(),
    methods = mha_methods(),
    describe = function(self) {
      cfg <- self$config
      s <- sprintf("num_heads=%d, key_dim=%d", cfg$num_heads, cfg$key_dim)
      if (cfg$value_dim != cfg$key_dim) s <- paste0(s, sprintf(", value_dim=%d", cfg$value_dim))
      if (cfg$dropout > 0) s <- paste0(s, sprintf(", dropout=%g", cfg$dropout))
      if (!is.null(cfg$output_shape)) s <- paste0(s, ", output_shape=", fmt_shape(cfg$output_shape))
      if (isTRUE(self$built)) {
        s <- paste0(s, sprintf(", built for query %s, value %s", fmt_shape(self$build_shapes$query),
                               fmt_shape(self$build_shapes$value)))
      }
      if (self$dtype != "float32") s <- paste0(s, ", ", self$dtype)
      s
    },
    get_config = mha_get_config,
    from_config = mha_from_config,
    build = mha_graph_build,                       # graph protocol:
    compute_output_shape = mha_graph_output_shape, # layer-multi-head-attention-graph.R
    forward = mha_graph_forward,
    backward = mha_graph_backward,
    backward_skips_inputs = TRUE,
    native_tensors = TRUE,                    # float32: native tensors in a fit()/predict() run
    input_args = c("query", "value", "key"),  # a call's tensor inputs, by name
    sequential_call = attention_self_call,    # self-attention in a sequential model
    activity_terms = mha_activity_terms,      # the projections' outputs are regularized too
    h5_children = mha_h5_children,
    backprop = mha_backprop
  )
  register_group_query_attention()  # layer-group-query-attention.R: the same code, grouped heads
}

# The GroupedQueryAttention layer: multi-head attention whose key and value
# projections have fewer heads (num_key_value_heads), each shared by a group
# of num_query_heads / num_key_value_heads query heads (Keras repeats them;
# the core reads each shared head in place, see MhaDims::Nkv in
# src/core/layout.h). Everything after the constructor is the code of
# MultiHeadAttention (layer-multi-head-attention.R and its graph protocol),
# with key_dim = value_dim = head_dim, the output projected back to the
# query's feature size and 3-D inputs (batch, positions, features); this file
# holds what differs: the constructor, properties, config and weights layout.

#' Grouped-query attention layer
#'
#' Creates a grouped-query attention layer (Ainslie et al., 2023) with the
#' keras3 signature and Keras 3 semantics, computed natively in C++. The
#' query is projected to `num_query_heads` heads, the key and value to
#' `num_key_value_heads` heads; each key/value head serves a group of
#' `num_query_heads / num_key_value_heads` consecutive query heads (one
#' key/value head is multi-query attention; as many as query heads is
#' multi-head attention). Per query head the layer computes
#' `softmax(q k^T / sqrt(head_dim)) v`, then projects the concatenated heads
#' back to the query's feature size.
#'
#' @section Calling the layer:
#' The layer is an R function:
#' `layer(query, value, key = NULL, attention_mask = NULL,
#' return_attention_scores = FALSE, training = NULL, use_causal_mask = FALSE,
#' ..., query_mask = NULL, value_mask = NULL, key_mask = NULL, cache = NULL,
#' cache_update_index = NULL)`, as for [layer_multi_head_attention()], with
#' 3-D inputs: `query` (B, T, E),
#' `value` (B, S, Dv), `key` (B, S, Dk) (default: `value`). Masks as in
#' [layer_multi_head_attention()]; `return_attention_scores = TRUE` returns
#' `list(output = , scores = )` with scores of shape (B, num_query_heads, T,
#' S). The output has the query's shape (B, T, E). Cached decoding as for
#' [layer_multi_head_attention()], with a cache of shape (B, 2, S_max,
#' num_key_value_heads, head_dim).
#'
#' @section Properties and methods:
#' Read-only properties: `head_dim`, `num_query_heads`,
#' `num_key_value_heads`, `num_repeats`, `dropout`, `use_bias`, `use_gate`,
#' `sliding_window`, `seed`, `flash_attention`, `name`, `built`, `dtype`,
#' `weights`, `trainable_weights`, `losses`. Methods as for
#' [layer_multi_head_attention()].
#'
#' Weights, in Keras's order and shapes: query kernel (E, Nq, H), query bias
#' (Nq, H), key kernel (Dk, Nkv, H), key bias (Nkv, H), (gate kernel (E, Nq,
#' H) and bias (Nq, H) with `use_gate = TRUE`), value kernel (Dv, Nkv, H),
#' value bias (Nkv, H), output kernel (Nq, H, E), output bias (E); no biases
#' with `use_bias = FALSE`.
#'
#' @section Differences from keras3:
#' As for [layer_multi_head_attention()]: a single array as `inputs` means
#' self-attention, whole numbers may be given as doubles, inputs or weights
#' holding `NA`, `NaN` or `Inf` are an error.
#'
#' @param object `NULL` or missing: return the layer. An array: self-attention
#'   on it. An unnamed list `list(query, value[, key])` or a named list of
#'   call arguments. A sequential model: the layer is added to it.
#' @param head_dim Size of each attention head (H), a positive whole number.
#' @param num_query_heads Number of query heads (Nq), a positive whole number.
#' @param num_key_value_heads Number of key and value heads (Nkv), a positive
#'   whole number dividing `num_query_heads`.
#' @param dropout Dropout rate on the attention probabilities, in \[0, 1\].
#' @param use_bias Whether the projections have biases.
#' @param flash_attention `NULL` (follow the global switch), `TRUE` or
#'   `FALSE`. `TRUE` cannot be combined with `dropout > 0` or with
#'   `return_attention_scores = TRUE`, as in Keras.
#' @param kernel_initializer,bias_initializer Initializers: a name such as
#'   `"glorot_uniform"` or an `initializer_*()` object.
#' @param kernel_regularizer,bias_regularizer,activity_regularizer
#'   Regularizers: `NULL`, `"l1"`, `"l2"`, `"l1_l2"` or a `regularizer_*()`
#'   object.
#' @param kernel_constraint,bias_constraint Constraints: `NULL`, a name such
#'   as `"non_neg"` or a `constraint_*()` object.
#' @param seed `NULL` or a whole number: the seed of the dropout stream (drawn
#'   from R's RNG when `NULL`).
#' @param ... Named layer options: `name`, `dtype` (`"float32"`, the default,
#'   or `"float64"`), `trainable`, `use_gate` (gate the attention output with
#'   a sigmoid of a projection of the query), `sliding_window` (a positive
#'   whole number w: query `t` only sees keys with `|t - s| < w`).
#'
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @seealso [layer_multi_head_attention()], [backprop()].
#' @export
#' @examples
#' gqa <- layer_group_query_attention(head_dim = 4, num_query_heads = 4,
#'                                    num_key_value_heads = 2)
#' x <- array(rnorm(2 * 5 * 8), c(2, 5, 8))   # (batch, time, features)
#' dim(gqa(x, x))                              # 2 5 8
#' dim(gqa(x, x, return_attention_scores = TRUE)$scores)  # 2 4 5 5
layer_group_query_attention <- function(object, head_dim, num_query_heads, num_key_value_heads,
                                        dropout = 0, use_bias = TRUE, flash_attention = NULL,
                                        kernel_initializer = "glorot_uniform",
                                        bias_initializer = "zeros", kernel_regularizer = NULL,
                                        bias_regularizer = NULL, activity_regularizer = NULL,
                                        kernel_constraint = NULL, bias_constraint = NULL,
                                        seed = NULL, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(head_dim)) abort_arg("head_dim", "supplied: a positive whole number")
  if (missing(num_query_heads)) abort_arg("num_query_heads", "supplied: a positive whole number")
  if (missing(num_key_value_heads)) {
    abort_arg("num_key_value_heads", "supplied: a positive whole number dividing num_query_heads")
  }
  extra <- check_layer_dots(list(...), c("name", "dtype", "trainable", "use_gate", "sliding_window"),
                            "layer_group_query_attention()")
  layer <- new_group_query_attention(
    head_dim = head_dim, num_query_heads = num_query_heads,
    num_key_value_heads = num_key_value_heads, dropout = dropout, use_bias = use_bias,
    flash_attention = flash_attention, kernel_initializer = kernel_initializer,
    bias_initializer = bias_initializer, kernel_regularizer = kernel_regularizer,
    bias_regularizer = bias_regularizer, activity_regularizer = activity_regularizer,
    kernel_constraint = kernel_constraint, bias_constraint = bias_constraint, seed = seed,
    name = extra$name, dtype = extra$dtype, trainable = extra$trainable,
    use_gate = extra$use_gate, sliding_window = extra$sliding_window)
  if (missing(object) || is.null(object)) return(layer)
  apply_attention_to_inputs(layer, object, "object")
}

#' @noRd
new_group_query_attention <- function(head_dim, num_query_heads, num_key_value_heads, dropout = 0,
                                      use_bias = TRUE, flash_attention = NULL,
                                      kernel_initializer = "glorot_uniform", bias_initializer = "zeros",
                                      kernel_regularizer = NULL, bias_regularizer = NULL,
                                      activity_regularizer = NULL, kernel_constraint = NULL,
                                      bias_constraint = NULL, seed = NULL, name = NULL, dtype = NULL,
                                      trainable = NULL, use_gate = NULL, sliding_window = NULL) {
  head_dim <- check_whole(head_dim, "head_dim")
  nq <- check_whole(num_query_heads, "num_query_heads")
  nkv <- check_whole(num_key_value_heads, "num_key_value_heads")
  if (nq %% nkv != 0L) {
    abort_arg("num_query_heads", sprintf("a multiple of num_key_value_heads (%d)", nkv), nq)
  }
  # MultiHeadAttention's state with key_dim = value_dim = head_dim; the key
  # and value projections get num_key_value_heads heads (mha_kv_heads())
  layer <- new_multi_head_attention(
    num_heads = nq, key_dim = head_dim, value_dim = head_dim, dropout = dropout,
    use_bias = use_bias, output_shape = NULL, attention_axes = NULL,
    flash_attention = flash_attention, kernel_initializer = kernel_initializer,
    bias_initializer = bias_initializer, kernel_regularizer = kernel_regularizer,
    bias_regularizer = bias_regularizer, activity_regularizer = activity_regularizer,
    kernel_constraint = kernel_constraint, bias_constraint = bias_constraint, seed = seed,
    name = name, dtype = dtype, trainable = trainable, use_gate = use_gate,
    sliding_window = sliding_window,
    class_name = "GroupedQueryAttention", default_name = "grouped_query_attention")
  self <- layer_self(layer)
  self$config$num_key_value_heads <- nkv
  layer
}

# GroupedQueryAttention works on (batch, positions, features) inputs only.
#' @noRd
gqa_check_rank <- function(shape, arg) {
  if (length(shape) != 3L) {
    abort_arg(arg, "a shape of rank 3 (batch, positions, features): grouped-query attention attends over one axis",
              sprintf("rank %d (%s)", length(shape), fmt_shape(shape)))
  }
}

# Keras's compute_output_shape() of the class: the query's and the value's
# feature sizes must agree.
#' @noRd
gqa_check_output_shapes <- function(query_shape, value_shape) {
  r <- length(query_shape)
  if (!identical(query_shape[r], value_shape[length(value_shape)])) {
    abort_msg(sprintf(paste0("The last dimension of `query_shape` and `value_shape` must be equal for ",
                             "grouped-query attention; got query shape %s and value shape %s."),
                      fmt_shape(query_shape), fmt_shape(value_shape)),
              class = "multihead_error_shape")
  }
}

#' @noRd
gqa_properties <- function() c(common_layer_properties, list(
  head_dim = function(self) self$config$key_dim,
  num_query_heads = function(self) self$config$num_heads,
  num_key_value_heads = function(self) self$config$num_key_value_heads,
  num_repeats = function(self) self$config$num_heads %/% self$config$num_key_value_heads,
  dropout = function(self) self$config$dropout,
  use_bias = function(self) self$config$use_bias,
  use_gate = function(self) self$config$use_gate,
  sliding_window = function(self) self$config$sliding_window,
  seed = function(self) self$config$seed,
  flash_attention = function(self) self$config$flash_attention
))

# Keras 3.15's get_config() keys of GroupedQueryAttention (no flash_attention:
# Keras does not save it).
#' @noRd
gqa_get_config <- function(self) {
  cfg <- self$config
  list(name = self$name, trainable = self$trainable, dtype = self$dtype,
       head_dim = cfg$key_dim, num_query_heads = cfg$num_heads,
       num_key_value_heads = cfg$num_key_value_heads, use_bias = cfg$use_bias,
       use_gate = cfg$use_gate, sliding_window = cfg$sliding_window, dropout = cfg$dropout,
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
gqa_from_config <- function(config) {
  known <- c("head_dim", "num_query_heads", "num_key_value_heads", "dropout", "use_bias",
             "flash_attention", "kernel_initializer", "bias_initializer", "kernel_regularizer",
             "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint", "seed",
             "name", "dtype", "trainable", "use_gate", "sliding_window")
  unknown <- setdiff(names(config), known)
  if (is.null(names(config)) || length(unknown)) {
    abort_arg("config", "a list returned by get_config() of a GroupedQueryAttention layer",
              if (is.null(names(config))) "an unnamed list" else
                sprintf("unknown entries %s", paste0("`", unknown, "`", collapse = ", ")))
  }
  for (required in c("head_dim", "num_query_heads", "num_key_value_heads")) {
    if (is.null(config[[required]])) abort_arg(required, "in the config (a positive whole number)")
  }
  do.call(new_group_query_attention, unclass(config), quote = TRUE)
}

# Keras's ".weights.h5" groups of the class: its private attributes
# `_query_dense`, `_key_dense`, (`_gate_dense`,) `_value_dense`,
# `_output_dense`, and the weightless `_dropout_layer` and `_softmax`, in
# Keras's visiting order (sorted names).
#' @noRd
gqa_h5_children <- function(self) {
  subs <- self$sublayers
  child <- function(path, sub) if (!is.null(subs[[sub]])) list(list(path = path, layer = subs[[sub]]))
  c(list(list(path = "_dropout_layer", name = "dropout")),
    child("_gate_dense", "gate"),
    child("_key_dense", "key"),
    child("_output_dense", "attention_output"),
    child("_query_dense", "query"),
    list(list(path = "_softmax", name = "softmax")),
    child("_value_dense", "value"))
}

#' @noRd
register_group_query_attention <- function() {
  def <- layer_class_def("MultiHeadAttention")
  register_layer_class(
    "GroupedQueryAttention",
    properties = gqa_properties(),
    methods = mha_methods(),
    describe = function(self) {
      cfg <- self$config
      s <- sprintf("head_dim=%d, num_query_heads=%d, num_key_value_heads=%d", cfg$key_dim,
                   cfg$num_heads, cfg$num_key_value_heads)
      if (cfg$dropout > 0) s <- paste0(s, sprintf(", dropout=%g", cfg$dropout))
      if (isTRUE(self$built)) {
        s <- paste0(s, sprintf(", built for query %s, value %s", fmt_shape(self$build_shapes$query),
                               fmt_shape(self$build_shapes$value)))
      }
      if (self$dtype != "float32") s <- paste0(s, ", ", self$dtype)
      s
    },
    get_config = gqa_get_config,
    from_config = gqa_from_config,
    build = def$build,
    compute_output_shape = def$compute_output_shape,
    forward = def$forward,
    backward = def$backward,
    backward_skips_inputs = def$backward_skips_inputs,
    native_tensors = def$native_tensors,
    input_args = def$input_args,
    sequential_call = def$sequential_call,
    activity_terms = def$activity_terms,
    h5_children = gqa_h5_children,
    backprop = def$backprop,
    keras_class_name = "GroupQueryAttention"  # Keras's config.json name (its h5 groups use the class's)
  )
}

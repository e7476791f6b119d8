# The Attention (Luong) and AdditiveAttention (Bahdanau) layers: keras3's
# layer_attention() and layer_additive_attention(). Both attend from a query
# (B, Tq, D) over a value (B, Tv, Dv) with keys (B, Tv, D) (the value when
# no key is given); they differ only in the scores and their weights:
#   Attention "dot"      s = q . k (times the scalar `scale` with use_scale)
#   Attention "concat"   s = concat_score_weight * sum(tanh(scale * (q + k)))
#   AdditiveAttention    s = sum(scale * tanh(q + k)), scale of shape (D)
# then Keras's _apply_scores(): masked scores minus 1e9, softmax over keys,
# dropout on the weights while training, output = weights . value, output
# rows of absent query positions zero; the output's mask is the query mask.
# The numerics are in C++ (src/core/attention_score_layers.h); this file
# validates, reshapes leading batch axes into one and registers both
# classes with the graph protocol (register_protocol_layer()).
#
# Inputs are list(query, value[, key]) (or named by those names); masks
# list(query_mask, value_mask[, key_mask]) (the key mask is ignored, as in
# Keras), from the call's `mask` or, in models, the inputs' implicit masks.
# With return_attention_scores = TRUE the layer has two outputs, `output`
# and `scores` (the weights after dropout, as Keras returns them); the
# backward pass takes gradients for both.

#' Dot-product attention layer (Luong-style attention)
#'
#' Attention of a `query` over a `value` (and `key`, which defaults to the
#' value) without projections, as Keras's `Attention` layer computes it:
#' 1. scores of shape (batch, Tq, Tv): with `score_mode = "dot"` the dot
#'    products `query . key` (times the scalar weight `scale` when
#'    `use_scale = TRUE`); with `score_mode = "concat"`,
#'    `concat_score_weight * sum(tanh(scale * (query + key)))` over the
#'    features (without `scale` when `use_scale = FALSE`);
#' 2. masked keys (a `FALSE` value mask, or a later position with
#'    `use_causal_mask = TRUE`) get `1e9` subtracted from their scores, then
#'    a softmax over the keys gives the attention weights;
#' 3. with `training = TRUE` and `dropout > 0` the weights are dropped out
#'    (inverted scaling);
#' 4. the output (batch, Tq, value features) is the weighted sum of the
#'    values; rows at query positions whose query mask is `FALSE` are zero.
#'
#' @section Calling the layer:
#' `layer(inputs, mask = NULL, training = NULL, return_attention_scores =
#' FALSE, use_causal_mask = FALSE)`.
#' * `inputs`: `list(query, value)` or `list(query, value, key)` of numeric
#'   arrays: query (batch, Tq, dim), value (batch, Tv, value_dim), key
#'   (batch, Tv, dim). The query and key need the same number of features.
#'   Arrays of rank above 3 treat all axes but the last two as batch axes.
#'   Symbolic tensors record a call in a model.
#' * `mask`: `NULL` or `list(query_mask, value_mask)`: logical arrays (batch,
#'   Tq) and (batch, Tv) (entries may be `NULL`; a third entry, a key mask,
#'   is ignored as in Keras). In a model, the inputs' implicit masks (e.g.
#'   from [layer_embedding()] with `mask_zero = TRUE`) are used unless `mask`
#'   is given; the output carries the query's mask.
#' * `return_attention_scores = TRUE` returns `list(output = , scores = )`,
#'   the scores being the attention weights (batch, Tq, Tv) after masking,
#'   softmax and dropout.
#' * `use_causal_mask = TRUE`: query position `i` only attends to key
#'   positions `j <= i`.
#' * `training = TRUE` applies dropout to the weights.
#'
#' Weights, in Keras's order: `scale` (a scalar, initialised to 1) when
#' `use_scale = TRUE`, then `concat_score_weight` (a scalar, initialised to
#' 1) when `score_mode = "concat"`.
#'
#' Dropout randomness is a function of the layer's seed and a counter of its
#' training calls: with `seed = NULL` the seed is drawn from R's RNG when the
#' layer is created, so [set.seed()] reproduces a run, and [backprop()]
#' regenerates the mask of its own forward pass.
#'
#' @param object What to compose the layer with: `NULL` or missing returns the
#'   layer; a list of arrays or symbolic tensors (`list(query, value[, key])`)
#'   applies the layer to it; a sequential model gets the layer added (it
#'   then attends from the previous output over itself).
#' @param use_scale If `TRUE`, the layer has a trainable scalar `scale`
#'   applied to the scores.
#' @param score_mode `"dot"` (dot products of query and key) or `"concat"`
#'   (the hyperbolic tangent of their sum, summed over the features).
#' @param dropout Fraction of the attention weights to drop while training,
#'   in \[0, 1).
#' @param seed `NULL` or a whole number: the seed of the dropout stream.
#' @param ... Named layer options: `name` (default `"attention"`,
#'   `"attention_1"`, ...), `dtype` (`"float32"`, the default, or
#'   `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @seealso [layer_additive_attention()], [layer_multi_head_attention()],
#'   [backprop()].
#' @export
#' @examples
#' query <- array(rnorm(2 * 3 * 4), c(2, 3, 4))   # (batch, Tq, dim)
#' value <- array(rnorm(2 * 5 * 4), c(2, 5, 4))   # (batch, Tv, dim)
#' att <- layer_attention(use_scale = TRUE)
#' dim(att(list(query, value)))                   # 2 3 4
#' res <- att(list(query, value), return_attention_scores = TRUE,
#'            mask = list(NULL, array(c(TRUE, TRUE, TRUE, TRUE, FALSE), c(2, 5))))
#' dim(res$scores)                                # 2 3 5
#'
#' # in a model
#' q <- keras_input(shape = c(3, 4))
#' v <- keras_input(shape = c(5, 4))
#' model <- keras_model(list(q, v), layer_attention(list(q, v), score_mode = "concat"))
layer_attention <- function(object, use_scale = FALSE, score_mode = "dot", dropout = 0, seed = NULL, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_attention()")
  cfg <- list(use_scale = check_flag(use_scale, "use_scale"),
              score_mode = check_choice(score_mode, "score_mode", c("dot", "concat")),
              dropout = check_attention_dropout(dropout), seed = check_seed(seed, "seed"))
  layer <- new_score_attention("Attention", "attention", cfg, extra)
  compose_layer(object, layer)
}

#' Additive attention layer (Bahdanau-style attention)
#'
#' Attention of a `query` over a `value` (and `key`, which defaults to the
#' value) without projections, as Keras's `AdditiveAttention` layer computes
#' it: the scores (batch, Tq, Tv) are `sum(scale * tanh(query + key))` over
#' the features, where `scale` is a trainable vector of one weight per
#' feature (glorot-uniform initialised) with `use_scale = TRUE` and 1
#' otherwise. Masking, softmax, dropout, the output and the call's arguments
#' are those of [layer_attention()] (see its "Calling the layer" section).
#'
#' Weights: `scale` of shape (dim) when `use_scale = TRUE`, created when the
#' layer is first called (dim = the query's number of features).
#'
#' @inheritParams layer_attention
#' @param use_scale If `TRUE`, the layer has a trainable vector `scale`, one
#'   weight per feature, multiplying the `tanh` terms.
#' @param ... Named layer options: `seed` (`NULL` or a whole number: the
#'   seed of the dropout stream, as in [layer_attention()]), `name` (default
#'   `"additive_attention"`, ...), `dtype` (`"float32"`, the default, or
#'   `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @seealso [layer_attention()], [backprop()].
#' @export
#' @examples
#' query <- array(rnorm(2 * 3 * 4), c(2, 3, 4))
#' value <- array(rnorm(2 * 5 * 4), c(2, 5, 4))
#' add_att <- layer_additive_attention()
#' dim(add_att(list(query, value)))               # 2 3 4
#' dim(get_weights(add_att)[[1]])                 # 4
layer_additive_attention <- function(object, use_scale = TRUE, dropout = 0, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  extra <- check_layer_dots(list(...), c("seed", base_layer_options()), "layer_additive_attention()")
  cfg <- list(use_scale = check_flag(use_scale, "use_scale"), score_mode = "additive",
              dropout = check_attention_dropout(dropout), seed = check_seed(extra$seed, "seed"))
  layer <- new_score_attention("AdditiveAttention", "additive_attention", cfg, extra)
  compose_layer(object, layer)
}

#' @noRd
check_attention_dropout <- function(dropout) {
  rate <- check_number(dropout, "dropout", lower = 0, upper = 1)
  if (rate >= 1) abort_arg("dropout", "a number in [0, 1) (the fraction of weights dropped)", describe_value(rate))
  rate
}

#' @noRd
new_score_attention <- function(class_name, prefix, cfg, extra) {
  self <- new_layer_state(class_name, prefix, extra$name, extra$dtype, extra$trainable, cfg)
  self$dropout_seed <- if (is.null(cfg$seed)) draw_seed() else cfg$seed
  self$call_counter <- 0
  new_layer_object(self, score_attention_function)
}

# The body of every Attention / AdditiveAttention layer object.
#' @noRd
score_attention_function <- function(inputs, mask = NULL, training = NULL, return_attention_scores = FALSE,
                                     use_causal_mask = FALSE, ...) {
  if (...length()) reject_score_attention_args(self, list(...))
  if (missing(inputs)) abort_arg("inputs", "supplied: list(query, value) or list(query, value, key)")
  training <- check_flag(training, "training", null_ok = TRUE)
  args <- list(return_attention_scores = return_attention_scores, use_causal_mask = use_causal_mask)
  implicit <- NULL
  if (is.null(mask) && is.list(inputs) && !is.object(inputs)) {  # implicit masks of eager arrays
    implicit <- implicit_masks_of(inputs)
    if (!is.null(implicit)) mask <- implicit[seq_len(min(2L, length(implicit)))]
    inputs <- drop_implicit_masks(inputs)
  }
  fw <- score_attention_run(self, inputs, args, isTRUE(training), mask, keep = FALSE)
  out <- fw$output
  out_mask <- if (is.null(implicit)) NULL else if (is.list(fw$mask)) fw$mask[[1L]] else fw$mask
  if (is.list(out) && !is.object(out)) {
    out[[1L]] <- attach_implicit_mask(out[[1L]], out_mask)
    return(out)
  }
  attach_implicit_mask(out, out_mask)
}

#' @noRd
score_attention_call_args <- c("return_attention_scores", "use_causal_mask")

#' @noRd
reject_score_attention_args <- function(self, dots) {
  nms <- names(dots)
  if (is.null(nms)) nms <- rep("", length(dots))
  shown <- ifelse(nzchar(nms), paste0("`", nms, "`"), "an unnamed argument")
  abort_msg(sprintf(paste0("Unknown argument%s in a call of %s layer \"%s\": %s. Accepted: inputs, mask, ",
                           "training, return_attention_scores, use_causal_mask."),
                    if (length(dots) > 1L) "s" else "", self$class_name, self$name,
                    paste(unique(shown), collapse = ", ")),
            class = "multihead_error_argument")
}

# ---- inputs, masks, shapes -----------------------------------------------------

# (query, value, key) of an input list (also of input shapes or masks), by
# position or by the names query / value / key; `names`: the list's names.
#' @noRd
score_attention_parts <- function(x, arg = "inputs", what = "arrays") {
  if (!is.list(x) || is.object(x) || length(x) < 2L || length(x) > 3L) {
    abort_arg(arg, sprintf("a list of 2 or 3 %s: list(query, value) or list(query, value, key)", what),
              describe_value(x))
  }
  nms <- names(x)
  if (is.null(nms) || all(!nzchar(nms))) {
    return(list(query = x[[1L]], value = x[[2L]], key = if (length(x) == 3L) x[[3L]], names = NULL))
  }
  if (!all(nms %in% c("query", "value", "key")) || anyDuplicated(nms) || !all(c("query", "value") %in% nms)) {
    abort_arg(arg, sprintf("a list of %s named query, value and (optionally) key, or an unnamed list", what),
              paste("names", paste0("\"", nms, "\"", collapse = ", ")))
  }
  list(query = x$query, value = x$value, key = x$key, names = nms)
}

# The query and value masks from `masks`: NULL, or a list of 2 or 3 masks
# (NULL entries allowed; the third, a key mask, is ignored as in Keras).
#' @noRd
score_attention_masks <- function(masks, qd, vd, arg = "mask") {
  if (is.null(masks)) return(list(query = NULL, value = NULL))
  if (!is.list(masks) || is.object(masks) || length(masks) < 2L || length(masks) > 3L) {
    abort_arg(arg, "NULL or a list of 2 or 3 masks: list(query_mask, value_mask) (NULL entries allowed)",
              describe_value(masks))
  }
  p <- score_attention_parts(masks, arg, "masks")
  list(query = if (!is.null(p$query)) check_position_mask(p$query, qd[-length(qd)], paste0(arg, "[[1]]")),
       value = if (!is.null(p$value)) check_position_mask(p$value, vd[-length(vd)], paste0(arg, "[[2]]")))
}

# Shapes (or array dims) of query, value and key agree: same rank >= 3, the
# same batch axes (all but the last two), key and value of the same length,
# query and key of the same number of features. NA (unknown) matches anything.
#' @noRd
check_score_attention_shapes <- function(q, v, k, key_given) {
  r <- length(q)
  karg <- if (key_given) "key" else "value"
  for (x in list(list("value", v), list("key", k))) {
    if (length(x[[2L]]) != r) {
      abort_arg(x[[1L]], sprintf("of the query's rank %d (query shape %s)", r, fmt_shape(q)),
                sprintf("rank %d (shape %s)", length(x[[2L]]), fmt_shape(x[[2L]])))
    }
  }
  differ <- function(a, b) !is.na(a) & !is.na(b) & a != b
  nb <- r - 2L
  for (x in list(list("value", v), list("key", k))) {
    if (any(differ(q[seq_len(nb)], x[[2L]][seq_len(nb)]))) {
      abort_arg(x[[1L]], sprintf("of the query's batch size%s %s", if (nb > 1L) "s" else "",
                                 paste(q[seq_len(nb)], collapse = ", ")),
                sprintf("shape %s for query shape %s", fmt_shape(x[[2L]]), fmt_shape(q)))
    }
  }
  if (key_given && differ(k[r - 1L], v[r - 1L])) {
    abort_arg("key", sprintf("as long as the value (%s positions on axis %d)", v[r - 1L], r - 1L),
              sprintf("shape %s for value shape %s", fmt_shape(k), fmt_shape(v)))
  }
  if (differ(q[r], k[r])) {
    abort_arg(karg, sprintf("an array with the query's number of features (%s) on its last axis", q[r]),
              sprintf("shape %s for query shape %s", fmt_shape(k), fmt_shape(q)))
  }
  invisible(NULL)
}

#' @noRd
check_score_attention_input <- function(self, x, arg) {
  x <- check_layer_input(x, arg, min_rank = 3L)
  if (any(dim(x) == 0L)) abort_arg(arg, "an array without zero-length axes", sprintf("shape %s", fmt_shape(dim(x))))
  if (!is_float64(self) && length(x) && max(abs(range(x))) > 3.4028234663852886e38) {
    abort_arg(arg, paste0("within float32's range (|x| <= 3.4e38) for a float32 layer; use dtype = ",
                          "\"float64\" for larger values"))
  }
  x
}

# `x` (dims d, rank >= 3) as a rank-3 array (batch axes flattened, T, F).
#' @noRd
as_rank3 <- function(x, d = dim(x)) {
  r <- length(d)
  dim(x) <- c(prod(d[seq_len(r - 2L)]), d[r - 1L], d[r])
  x
}

#' @noRd
as_rank2_mask <- function(m, d) {
  if (is.null(m)) return(NULL)
  r <- length(d)
  dim(m) <- c(prod(d[seq_len(r - 2L)]), d[r - 1L])
  m
}

# ---- build and shapes ------------------------------------------------------------

#' @noRd
score_attention_shapes <- function(input_shape, arg = "input_shape") {
  p <- score_attention_parts(input_shape, arg, "shapes")
  q <- as_input_shape(p$query, arg, min_rank = 3L)
  v <- as_input_shape(p$value, arg, min_rank = 3L)
  k <- if (is.null(p$key)) v else as_input_shape(p$key, arg, min_rank = 3L)
  check_score_attention_shapes(q, v, k, !is.null(p$key))
  list(query = q, value = v, key = k)
}

#' @noRd
score_attention_build <- function(self, input_shape) {
  s <- score_attention_shapes(input_shape)
  check_not_built(self)
  cfg <- self$config
  if (cfg$score_mode == "additive") {
    if (cfg$use_scale) {
      dim_q <- s$query[length(s$query)]
      if (is.na(dim_q)) abort_arg("input_shape", "a query shape whose last axis is known", fmt_shape(s$query))
      add_layer_weight(self, "scale", dim_q, as_initializer("glorot_uniform", "initializer"))
    }
  } else {
    if (cfg$use_scale) add_scalar_weight(self, "scale")
    if (cfg$score_mode == "concat") add_scalar_weight(self, "concat_score_weight")
  }
  self$build_shapes <- list(s$query, s$value)
  self$built <- TRUE
  invisible(NULL)
}

# A scalar weight (shape (), as Keras's), initialised to 1; stored as a
# plain number.
#' @noRd
add_scalar_weight <- function(self, name) {
  add_layer_weight(self, name, 1L, as_initializer("ones", "initializer"))
  dim(self$variables[[name]]) <- NULL
}

#' @noRd
score_attention_output_shape <- function(self, input_shape, args = list()) {
  check_score_attention_args(self, args)
  s <- score_attention_shapes(input_shape)
  check_built_features(self, s$query, "query")
  q <- s$query; r <- length(q)
  out <- c(q[-r], s$value[r])
  if (!isTRUE(args$return_attention_scores)) return(out)
  list(output = out, scores = c(q[-r], s$key[r - 1L]))
}

#' @noRd
check_score_attention_args <- function(self, args) {
  unknown <- setdiff(names(args), score_attention_call_args)
  if (length(unknown)) reject_score_attention_args(self, args[unknown])
  for (nm in score_attention_call_args) if (!is.null(args[[nm]])) check_flag(args[[nm]], nm)
}

# AdditiveAttention's scale has one entry per query feature.
#' @noRd
check_built_features <- function(self, q, arg) {
  w <- self$variables$scale
  if (identical(self$config$score_mode, "additive") && !is.null(w) && !is.na(q[length(q)]) &&
      q[length(q)] != length(w)) {
    abort_arg(arg, sprintf("an array with %d features on its last axis, as when layer \"%s\" was built",
                           length(w), self$name),
              sprintf("%d (shape %s)", q[length(q)], fmt_shape(q)))
  }
}

# ---- forward and backward --------------------------------------------------------

#' @noRd
score_attention_mode <- function(self) match(self$config$score_mode, c("dot", "concat", "additive")) - 1L

# Forward of a call: inputs, the call's args (return_attention_scores,
# use_causal_mask), training, masks. `keep`: keep what backward needs.
#' @noRd
score_attention_run <- function(self, inputs, args, training, masks, keep = TRUE) {
  check_score_attention_args(self, args)
  ras <- isTRUE(args$return_attention_scores)
  causal <- isTRUE(args$use_causal_mask)
  p <- score_attention_parts(inputs)
  key_given <- !is.null(p$key)
  q <- check_score_attention_input(self, p$query, "query")
  v <- check_score_attention_input(self, p$value, "value")
  k <- if (key_given) check_score_attention_input(self, p$key, "key") else v
  qd <- dim(q); vd <- dim(v); kd <- dim(k)
  check_score_attention_shapes(qd, vd, kd, key_given)
  m <- score_attention_masks(masks, qd, vd)
  if (!isTRUE(self$built)) {
    score_attention_build(self, c(list(batchless_shape(qd), batchless_shape(vd)),
                                  if (key_given) list(batchless_shape(kd))))
  }
  check_built_features(self, qd, "query")
  r <- length(qd)
  out_dims <- c(qd[-r], vd[r])
  scores_dims <- c(qd[-r], vd[r - 1L])
  check_size(scores_dims, "inputs", sprintf("the attention weights of layer \"%s\"", self$name))
  check_size(out_dims, "inputs", sprintf("the output of layer \"%s\"", self$name))
  rate <- if (training) self$config$dropout else 0
  if (rate > 0) self$call_counter <- self$call_counter + 1
  call <- list(query = as_rank3(q), key = if (key_given) as_rank3(k), value = as_rank3(v),
               mode = score_attention_mode(self), scale = self$variables$scale,
               concat_weight = if (is.null(self$variables$concat_score_weight)) 1 else
                 self$variables$concat_score_weight,
               query_mask = as_rank2_mask(m$query, qd), value_mask = as_rank2_mask(m$value, vd),
               causal = causal, rate = rate, seed = self$dropout_seed %% 4294967296,
               counter = self$call_counter)
  res <- cpp_score_attention_forward(call$query, call$key, call$value, call$mode, call$scale, call$concat_weight,
                                     call$query_mask, call$value_mask, call$causal, call$rate, call$seed,
                                     call$counter, ras, keep, is_float64(self), mh_threads())
  output <- res$output
  dim(output) <- out_dims
  out_mask <- m$query
  cache <- if (keep) list(call = call, probs = res$probs, several = ras, names = p$names,
                          key_given = key_given, in_dims = list(qd, vd, kd), out_dims = out_dims,
                          scores_dims = scores_dims)
  if (!ras) return(list(output = output, cache = cache, mask = out_mask))
  scores <- res$weights
  dim(scores) <- scores_dims
  list(output = list(output = output, scores = scores), cache = cache,
       mask = list(output = out_mask, scores = NULL))
}

#' @noRd
score_attention_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  score_attention_run(self, inputs, args, isTRUE(training), masks, keep = TRUE)
}

# grad_output: the output's gradient, or with two outputs list(output =,
# scores =) (NULL entries are zero).
#' @noRd
score_attention_backward <- function(self, cache, grad_output) {
  g <- grad_output; gs <- NULL
  if (cache$several && is.list(g) && !is.object(g)) {
    if (length(g) != 2L) {
      abort_arg("grad_output", "an array of the output's shape or list(output = , scores = )", describe_value(g))
    }
    gs <- if (!is.null(names(g)) && all(names(g) %in% c("output", "scores"))) g$scores else g[[2L]]
    g <- if (!is.null(names(g)) && all(names(g) %in% c("output", "scores"))) g$output else g[[1L]]
    if (is.null(g)) g <- array(0, cache$out_dims)
  }
  g <- check_grad_output(g, cache$out_dims)
  if (!is.null(gs)) {
    gs <- check_grad_output(gs, cache$scores_dims)
    if (all(gs == 0)) gs <- NULL
  }
  call <- cache$call
  res <- cpp_score_attention_backward(call$query, call$key, call$value, call$mode, call$scale,
                                      call$concat_weight, call$query_mask, call$value_mask, call$causal,
                                      call$rate, call$seed, call$counter, cache$probs, as_rank3(g),
                                      if (!is.null(gs)) as_rank3(gs), is_float64(self), mh_threads())
  d <- cache$in_dims
  grads <- list(query = array(res$query, d[[1L]]), value = array(res$value, d[[2L]]))
  if (cache$key_given) grads$key <- array(res$key, d[[3L]])
  if (is.null(cache$names)) grads <- unname(grads) else grads <- grads[cache$names]
  w <- list()
  if (!is.null(res$scale)) {
    w$scale <- if (is.null(dim(self$variables$scale))) res$scale else array(res$scale, dim(self$variables$scale))
  }
  if (!is.null(res$concat_weight)) w$concat_score_weight <- res$concat_weight
  list(inputs = grads, weights = named_weight_grads(self, w))
}

# backprop(<Attention or AdditiveAttention>, inputs, mask, training,
# return_attention_scores, use_causal_mask, grad_output =).
#' @noRd
score_attention_backprop <- function(object, args, grad_output) {
  if (!missing(grad_output)) args["grad_output"] <- list(grad_output)
  do.call(score_attention_backprop_call, c(list(object), args), quote = TRUE)
}

#' @noRd
score_attention_backprop_call <- function(object, inputs, mask = NULL, training = NULL,
                                          return_attention_scores = FALSE, use_causal_mask = FALSE, ...,
                                          grad_output) {
  self <- layer_self(object)
  if (...length()) reject_score_attention_args(self, list(...))
  if (missing(inputs)) abort_arg("inputs", "supplied: list(query, value) or list(query, value, key)")
  if (missing(grad_output) || is.null(grad_output)) {
    abort_arg("grad_output", "supplied: an array of the output's shape", if (!missing(grad_output)) "NULL")
  }
  training <- check_flag(training, "training", null_ok = TRUE)
  args <- list(return_attention_scores = return_attention_scores, use_causal_mask = use_causal_mask)
  fw <- score_attention_run(self, inputs, args, isTRUE(training), mask, keep = TRUE)
  list(output = fw$output, grads = score_attention_backward(self, fw$cache, grad_output))
}

# ---- registration ----------------------------------------------------------------

#' @noRd
score_attention_describe <- function(self) {
  cfg <- self$config
  s <- if (cfg$score_mode == "additive") "" else sprintf("score_mode=%s", cfg$score_mode)
  if (cfg$use_scale) s <- paste0(s, if (nzchar(s)) ", " else "", "use_scale")
  if (cfg$dropout > 0) s <- paste0(s, if (nzchar(s)) ", " else "", sprintf("dropout=%g", cfg$dropout))
  if (isTRUE(self$built)) {
    s <- paste0(s, if (nzchar(s)) ", " else "", sprintf("built for query %s, value %s",
                                                         fmt_shape(self$build_shapes[[1L]]),
                                                         fmt_shape(self$build_shapes[[2L]])))
  }
  if (!identical(self$dtype, "float32")) s <- paste0(s, ", ", self$dtype)
  s
}

#' @noRd
register_score_attention <- function(class_name, config_keys, ctor) {
  force(config_keys); force(ctor)
  register_layer_class(
    class_name,
    properties = c(common_layer_properties, list(
      use_scale = function(self) self$config$use_scale,
      score_mode = function(self) self$config$score_mode,
      dropout = function(self) self$config$dropout,
      seed = function(self) self$config$seed,
      scale = function(self) layer_variable_handle(self, "scale"),
      concat_score_weight = function(self) layer_variable_handle(self, "concat_score_weight")
    )[c(names(common_layer_properties), "use_scale", if ("score_mode" %in% config_keys) "score_mode",
        "dropout", "seed", "scale", if ("score_mode" %in% config_keys) "concat_score_weight")]),
    methods = c(common_layer_methods, list(
      build = function(self, input_shape) score_attention_build(self, input_shape),
      compute_output_shape = function(self, input_shape) score_attention_output_shape(self, input_shape)
    )),
    describe = score_attention_describe,
    get_config = function(self) c(base_layer_config(self), self$config[config_keys]),
    from_config = function(config) layer_from_config(ctor, config, config_keys),
    build = score_attention_build,
    compute_output_shape = score_attention_output_shape,
    forward = score_attention_forward,
    backward = score_attention_backward,
    sequential_call = function(layer, x) layer(list(x, x)),  # self-attention in a sequential model
    backprop = score_attention_backprop)
}

#' @noRd
register_attention_layers <- function() {
  register_score_attention("Attention", c("use_scale", "score_mode", "dropout", "seed"), layer_attention)
  register_score_attention("AdditiveAttention", c("use_scale", "dropout", "seed"), layer_additive_attention)
}

# The graph protocol of MultiHeadAttention (see register_layer_class() in
# layer.R): what models use to build, shape, run and differentiate the layer.
# Inputs are a list (query, value[, key]), named as recorded by a symbolic
# call; the implicit masks of those inputs (e.g. from an embedding with
# mask_zero = TRUE) become query_mask, value_mask and key_mask unless the
# call passed them explicitly, and the output carries the query's mask, as in
# Keras. With return_attention_scores = TRUE the layer has two outputs,
# `output` and `scores` (B, N, T, S); gradients do not flow into the scores.
# Also here: the class's `activity_terms` (the projections' outputs) and
# `backprop` (backprop() of the layer) registry fields.

#' @noRd
mha_call_args <- c("attention_mask", "return_attention_scores", "training", "use_causal_mask",
                   "query_mask", "value_mask", "key_mask")

# (query, value, key) of a protocol input list, by name or position.
#' @noRd
mha_input_parts <- function(x, what = "input_shape") {
  if (!is.list(x) || is.object(x) || length(x) < 2L || length(x) > 3L) {
    abort_arg(what, "a list (query, value[, key])", describe_value(x))
  }
  nms <- names(x)
  if (is.null(nms)) return(list(query = x[[1L]], value = x[[2L]], key = if (length(x) == 3L) x[[3L]]))
  bad <- setdiff(nms, c("query", "value", "key"))
  if (length(bad)) abort_arg(what, "a list with elements query, value and (optionally) key",
                             paste("names", paste(bad, collapse = ", ")))
  list(query = x$query, value = x$value, key = x$key)
}

#' @noRd
mha_graph_build <- function(self, input_shape) {
  p <- mha_input_parts(input_shape)
  mha_build(self, p$query, p$value, p$key)
}

#' @noRd
mha_check_call_args <- function(self, args) {
  unknown <- setdiff(names(args), mha_call_args)
  if (length(unknown)) reject_call_dots(args[unknown], self$class_name)
}

# The output shape(s) of a call; checks what can be checked without values.
#' @noRd
mha_graph_output_shape <- function(self, input_shape, args = list()) {
  mha_check_call_args(self, args)
  p <- mha_input_parts(input_shape)
  q <- check_shape_arg(p$query, "query")
  v <- check_shape_arg(p$value, "value")
  k <- if (is.null(p$key)) NULL else check_shape_arg(p$key, "key")
  ras <- if (is.null(args$return_attention_scores)) FALSE else
    check_flag(args$return_attention_scores, "return_attention_scores")
  if (!is.null(args$use_causal_mask)) check_causal_flag(args$use_causal_mask)
  cfg <- self$config
  if (ras && isTRUE(cfg$flash_attention)) {
    abort_msg(paste0("Returning attention scores is not supported when flash attention is enabled. ",
                     "Please disable flash attention to access attention scores."),
              class = "multihead_error_argument")
  }
  if (isTRUE(self$built)) {
    bs <- self$build_shapes
    mha_check_built_shape(self, q, "query", bs$query)
    mha_check_built_shape(self, v, "value", bs$value)
    mha_check_built_shape(self, if (is.null(k)) v else k, "key", bs$key)
  }
  r <- length(q)
  if (length(v) != r) {
    abort_msg(sprintf(paste0("`query` and `value` must have the same rank; got query shape %s and value ",
                             "shape %s."), fmt_shape(q), fmt_shape(v)), class = "multihead_error_shape")
  }
  out <- mha_compute_output_shape(self, q, v, k)
  axes <- if (isTRUE(self$built)) self$axes else resolve_attention_axes(cfg$attention_axes, r)
  batch_axes <- setdiff(seq_len(r - 1L) - 1L, axes)
  bq <- q[batch_axes + 1L]; bv <- v[batch_axes + 1L]
  if (any(!is.na(bq) & !is.na(bv) & bq != bv)) {
    abort_msg(sprintf(paste0("`query` and `value` must agree on the batch axis and every axis that is not ",
                             "an attention axis (axes %s in Keras's numbering); got query shape %s and ",
                             "value shape %s."),
                      paste(batch_axes, collapse = ", "), fmt_shape(q), fmt_shape(v)),
              class = "multihead_error_shape")
  }
  if (!ras) return(out)
  batch_dims <- ifelse(is.na(bq), bv, bq)
  list(output = out, scores = as.integer(c(batch_dims, cfg$num_heads, q[axes + 1L], v[axes + 1L])))
}

# A symbolic input against the shape the layer was built for: same rank and
# feature size.
#' @noRd
mha_check_built_shape <- function(self, shape, arg, built_shape) {
  r <- length(shape); rb <- length(built_shape)
  if (r != rb) {
    abort_arg(arg, sprintf("a tensor of rank %d, as when layer \"%s\" was built (shape %s)",
                           rb, self$name, fmt_shape(built_shape)),
              sprintf("rank %d (shape %s)", r, fmt_shape(shape)))
  }
  if (!identical(shape[r], built_shape[rb])) {
    abort_arg(arg, sprintf("a tensor with %d features on its last axis, as when layer \"%s\" was built",
                           built_shape[rb], self$name),
              sprintf("%s (shape %s)", shape[r], fmt_shape(shape)))
  }
}

# An explicit query/value/key mask of the call wins over the input's implicit
# mask (Keras fills these arguments from the implicit masks only when absent).
#' @noRd
mha_position_mask <- function(explicit, implicit) if (is.null(explicit)) implicit else explicit

#' @noRd
mha_graph_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  mha_check_call_args(self, args)
  p <- mha_input_parts(inputs, "inputs")
  implicit <- if (is.null(masks)) list() else mha_input_parts(masks, "masks")
  qm <- mha_position_mask(args$query_mask, implicit$query)
  vm <- mha_position_mask(args$value_mask, implicit$value)
  km <- mha_position_mask(args$key_mask, if (is.null(p$key)) NULL else implicit$key)
  ras <- isTRUE(args$return_attention_scores)
  causal <- !is.null(args$use_causal_mask) && check_causal_flag(args$use_causal_mask)
  # In training the core keeps what its backward pass needs (the record, with
  # this call's dropout stream); otherwise the backward pass (rare: backprop()
  # of a model in inference mode, no dropout) runs the call again.
  record <- isTRUE(training)
  res <- mha_run(self, query = p$query, value = p$value, key = p$key,
                 attention_mask = args$attention_mask, return_attention_scores = ras,
                 training = training, use_causal_mask = causal, query_mask = qm, value_mask = vm,
                 key_mask = km, grad_output = NULL, record = record)
  out_mask <- if (is.null(qm)) NULL else array(as.logical(qm), dim(qm))
  cache <- if (record) list(record = res$record, several = ras) else
    list(query = p$query, value = p$value, key = p$key, attention_mask = args$attention_mask,
         use_causal_mask = causal, query_mask = qm, value_mask = vm, key_mask = km, several = ras)
  if (record) res <- if (ras) res[c("output", "scores")] else res$output
  if (!ras) return(list(output = res, cache = cache, mask = out_mask))
  list(output = list(output = res$output, scores = res$scores), cache = cache,
       mask = list(output = out_mask, scores = NULL))
}

# From the forward's record (training), or by running the call again with
# its output gradient (inference mode: no dropout, so nothing random to
# reproduce).
# need_inputs: the runner's flags per node input (named query, value, key;
# NULL: all wanted); the record's backward skips the unwanted ones.
#' @noRd
mha_graph_backward <- function(self, cache, grad_output, need_inputs = NULL) {
  g <- grad_output
  if (cache$several) {
    if (!is.null(g$scores) && any(g$scores != 0)) {
      abort_msg(paste0("Gradients with respect to attention scores are not supported: give a zero ",
                       "gradient for the scores output."), class = "multihead_error_unsupported")
    }
    g <- g$output
  }
  if (!is.null(cache$record)) {
    key_given <- cache$record$key_given
    wanted <- function(nm) is.null(need_inputs) || is.na(need_inputs[nm]) || isTRUE(need_inputs[[nm]])
    need_v <- wanted("value")
    need <- c(wanted("query"), if (key_given) wanted("key") else need_v, need_v)
    gr <- mha_record_backward(self, cache$record, g, need)
  } else {
    gr <- mha_run(self, query = cache$query, value = cache$value, key = cache$key,
                  attention_mask = cache$attention_mask, return_attention_scores = FALSE,
                  training = FALSE, use_causal_mask = cache$use_causal_mask,
                  query_mask = cache$query_mask, value_mask = cache$value_mask,
                  key_mask = cache$key_mask, grad_output = g)$grads
    key_given <- !is.null(cache$key)
  }
  inputs <- list(query = gr$query, value = gr$value)
  if (key_given) inputs$key <- gr$key
  list(inputs = inputs, weights = gr$weights)
}

# ---- activity regularization (the class's `activity_terms`) ---------------------

# Keras regularizes the outputs of the query, key, (gate) and value
# projections besides the layer's output (model-regularization.R). Each
# projection is one matrix product, `x %*% kernel + bias` (then the sigmoid
# for the gate), differentiated here in plain R; its gradient goes to the
# node input it reads and to its kernel and bias.
#' @noRd
mha_activity_terms <- function(self, node_input_values, node_input_names) {
  ins <- node_input_values
  nms <- node_input_names
  parts <- if (is.null(nms)) list(query = ins[[1L]], value = ins[[2L]], key = if (length(ins) > 2L) ins[[3L]])
    else stats::setNames(ins, nms)
  # the input each projection reads, as a position in the node's inputs
  pos <- function(what) if (is.null(nms)) match(what, c("query", "value", "key")) else match(what, nms)
  key_pos <- if (is.null(parts$key)) pos("value") else pos("key")
  key <- if (is.null(parts$key)) parts$value else parts$key
  # the projections of the forward call on these inputs, else computed here
  memo <- mha_activity_memo(self)
  proj <- if (!is.null(memo) && identical(memo$query, parts$query) && identical(memo$value, parts$value) &&
              identical(memo$key, key)) memo$projections else mha_projections(self, parts$query, key, parts$value)
  subs <- self$sublayers
  terms <- list()
  for (which in names(proj)) {
    input_pos <- switch(which, query = , gate = pos("query"), key = key_pos, value = pos("value"))
    terms[[length(terms) + 1L]] <- mha_projection_term(self, layer_self(subs[[which]]), ins, input_pos,
                                                       proj[[which]])
  }
  terms
}

#' @noRd
mha_projection_term <- function(self, sub, ins, input_pos, y) {
  force(sub)  # the gradient closure below runs after the caller's loop has moved on
  force(y)
  x <- ins[[input_pos]]
  n_inputs <- length(ins)
  list(value = y, gradient = function(g) {
    p <- projection_backward_plain(sub, x, y, g)
    inputs <- vector("list", n_inputs)
    inputs[[input_pos]] <- p$x
    prefix <- paste0(self$name, "/", sub$name, "/")
    weights <- list()
    weights[[paste0(prefix, "kernel")]] <- p$kernel
    if (!is.null(p$bias)) weights[[paste0(prefix, "bias")]] <- p$bias
    list(inputs = inputs, weights = weights)
  })
}

# Backward of an attention projection y = act(x %*% kernel + bias), where x's
# last axis is contracted with the kernel's first (n_contract = 1) and act is
# the identity or (the gate) the sigmoid. `y` is the forward output, `g` =
# dLoss/dy. Returns list(x =, kernel =, bias =).
#' @noRd
projection_backward_plain <- function(sub, x, y, g) {
  kernel <- sub$variables$kernel
  kd <- dim(kernel)
  if (identical(sub$activation, "sigmoid")) g <- g * y * (1 - y)
  xm <- matrix(as.double(x), ncol = kd[1L])
  gm <- matrix(as.double(g), ncol = prod(kd[-1L]))
  km <- matrix(kernel, nrow = kd[1L])
  out <- list(x = array(gm %*% t(km), dim(x)), kernel = array(crossprod(xm, gm), kd))
  bias <- sub$variables$bias
  if (!is.null(bias)) out$bias <- array(colSums(gm), if (is.null(dim(bias))) length(bias) else dim(bias))
  out
}

# ---- backprop() (the class's `backprop`) ------------------------------------------

# backprop(<MultiHeadAttention>, ...): the arguments are those of a call of
# the layer, matched by mha_backprop_call()'s formals.
#' @noRd
mha_backprop <- function(object, args, grad_output) {
  if (!missing(grad_output)) args["grad_output"] <- list(grad_output)
  do.call(mha_backprop_call, c(list(object), args), quote = TRUE)
}

#' @noRd
mha_backprop_call <- function(object, query, value, key = NULL, attention_mask = NULL,
                              return_attention_scores = FALSE, training = NULL,
                              use_causal_mask = FALSE, ..., query_mask = NULL,
                              value_mask = NULL, key_mask = NULL, grad_output) {
  if (...length()) reject_call_dots(list(...), layer_self(object)$class_name)
  if (missing(grad_output) || is.null(grad_output)) {
    abort_arg("grad_output", "supplied: an array of the output's shape", if (!missing(grad_output)) "NULL")
  }
  if (missing(query)) abort_arg("query", "supplied: a numeric array (B, T..., E)")
  if (missing(value)) abort_arg("value", "supplied")
  mha_run(layer_self(object), query, value, key, attention_mask, return_attention_scores, training,
          use_causal_mask, query_mask, value_mask, key_mask, grad_output = grad_output)
}

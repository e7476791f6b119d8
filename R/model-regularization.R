# Regularization in a training step: the losses Keras 3 adds to the loss
# being minimised (its `model.losses`), with their exact gradients.
#
#   * Weight regularizers: l1 * sum(|w|) + l2 * sum(w^2) for every trainable
#     weight that has one (Keras 3 only regularizes trainable weights). Their
#     gradients (regularizer_gradient()) are added to the weight gradients.
#   * Activity regularizers: every call of a layer with an
#     `activity_regularizer` adds reg(output) / batch size, as Keras >= 3.14.
#     For Dense and EinsumDense the regularized tensor is the layer's output:
#     its gradient is added to the gradient flowing into that output, so the
#     layer's own backward pass carries it to the weights and inputs. For
#     multi-head attention Keras regularizes the output and the outputs of the
#     query, key, (gate) and value projections; the output's term flows
#     through the layer's backward pass like the others, and the projection
#     terms are differentiated here in plain R (each projection is one matrix
#     product, `x %*% kernel + bias`), their gradients added to the layer's
#     inputs and projection weights.
# Each call of a shared layer adds its own activity loss (as Keras does,
# rather than only the last call's, which is what `layer$losses` shows).

# The activity regularizer of a layer's state, or NULL.
#' @noRd
layer_activity_regularizer <- function(self) {
  reg <- self$config$activity_regularizer
  if (is.null(reg)) reg <- self$activity_regularizer
  reg
}

# The regularized tensors of one layer node of a forward run: a list of
# list(value =, kind = "output" | "projection", ...) entries, or NULL.
#' @noRd
node_activity_terms <- function(node, run) {
  if (!identical(node$kind, "layer") || inherits(node$callee, "multihead_model")) return(NULL)
  self <- layer_self(node$callee)
  reg <- layer_activity_regularizer(self)
  if (is.null(reg)) return(NULL)
  out <- run$values[[node_output_ids(node)[1L]]]
  batch <- max(1, dim(out)[1L])
  terms <- list(list(value = out, kind = "output"))
  if (identical(self$class_name, "MultiHeadAttention")) {
    ins <- lapply(node$inputs, function(t) run$values[[t$id]])
    nms <- names(node$inputs)
    parts <- if (is.null(nms)) list(query = ins[[1L]], value = ins[[2L]], key = if (length(ins) > 2L) ins[[3L]])
      else stats::setNames(ins, nms)
    # the input each projection reads, as a position in node$inputs
    pos <- function(what) if (is.null(nms)) match(what, c("query", "value", "key")) else match(what, nms)
    key_pos <- if (is.null(parts$key)) pos("value") else pos("key")
    subs <- self$sublayers
    for (which in intersect(c("query", "key", "gate", "value"), names(subs))) {
      input_pos <- switch(which, query = , gate = pos("query"), key = key_pos, value = pos("value"))
      sub <- layer_self(subs[[which]])
      x <- ins[[input_pos]]
      terms[[length(terms) + 1L]] <- list(value = einsum_dense_call(sub, x), kind = "projection",
                                          sub = sub, x = x, input_pos = input_pos)
    }
  }
  list(self = self, reg = reg, batch = batch, terms = terms)
}

# The activity losses of a forward run (with keep = TRUE), nested models
# included: a number.
#' @noRd
graph_activity_loss <- function(graph, run) {
  total <- 0
  for (node in graph$nodes) {
    if (identical(node$kind, "layer") && inherits(node$callee, "multihead_model")) {
      total <- total + graph_activity_loss(layer_self(node$callee)$graph, run$caches[[node$id]])
      next
    }
    if (identical(node$kind, "layer") && inherits(node$callee, "multihead_custom_layer")) {
      total <- total + custom_activity_loss(run$caches[[node$id]])
      next
    }
    a <- node_activity_terms(node, run)
    for (t in a$terms) total <- total + regularizer_loss(a$reg, t$value) / a$batch
  }
  total
}

# Gradients of one node's activity losses: NULL, or list(outputs = <list
# aligned with the node's outputs: gradient to add to each>, inputs = <list
# aligned with node$inputs>, weights = <named by weight path>). Called by
# run_graph_backward(activity = TRUE).
#' @noRd
node_activity_gradients <- function(node, run) {
  a <- node_activity_terms(node, run)
  if (is.null(a)) return(NULL)
  res <- list(outputs = list(), inputs = vector("list", length(node$inputs)), weights = list())
  for (t in a$terms) {
    g <- regularizer_gradient(a$reg, t$value) / a$batch
    if (identical(t$kind, "output")) {
      res$outputs[[1L]] <- g
      next
    }
    p <- projection_backward_plain(t$sub, t$x, t$value, g)
    j <- t$input_pos
    res$inputs[[j]] <- if (is.null(res$inputs[[j]])) p$x else res$inputs[[j]] + p$x
    prefix <- paste0(a$self$name, "/", t$sub$name, "/")
    res$weights[[paste0(prefix, "kernel")]] <- p$kernel
    if (!is.null(p$bias)) res$weights[[paste0(prefix, "bias")]] <- p$bias
  }
  res
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

# The trainable weights of a model with what a training step needs: a list
# of list(path, self (the layer state holding it), name (its variable name),
# regularizer, constraint), in get_weights() order.
#' @noRd
model_trainable_slots <- function(self) {
  slots <- layer_variable_slots(self)
  paths <- names(model_variables(self))
  trainable <- vapply(model_variable_trainable(self), isTRUE, logical(1))
  if (anyDuplicated(paths)) {
    abort_msg(sprintf(paste0("Model \"%s\" has two weights with the same path %s; give its layers distinct ",
                             "names to train it."), self$name, quote_names(paths[anyDuplicated(paths)])))
  }
  out <- list()
  for (i in which(trainable)) {
    s <- slots[[i]]
    out[[length(out) + 1L]] <- list(path = paths[[i]], self = s$self, name = s$name,
                                    regularizer = s$self$regularizers[[s$name]],
                                    constraint = s$self$constraints[[s$name]])
  }
  out
}

# The weight regularization loss of the trainable weights.
#' @noRd
weight_regularization_loss <- function(slots) {
  total <- 0
  for (s in slots) {
    if (!is.null(s$regularizer)) total <- total + regularizer_loss(s$regularizer, s$self$variables[[s$name]])
  }
  total
}

# The regularization losses of a forward run: weights + activity.
#' @noRd
regularization_loss <- function(graph, run, slots) {
  weight_regularization_loss(slots) + graph_activity_loss(graph, run)
}

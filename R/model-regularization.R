# Regularization in a training step: the losses Keras 3 adds to the loss
# being minimised (its `model.losses`), with their exact gradients.
#
#   * Weight regularizers: l1 * sum(|w|) + l2 * sum(w^2) for every trainable
#     weight that has one (Keras 3 only regularizes trainable weights). Their
#     gradients (regularizer_gradient()) are added to the weight gradients.
#   * Activity regularizers: every call of a layer with an
#     `activity_regularizer` adds reg(output) / batch size, as Keras >= 3.14.
#     The regularized tensor is the layer's output: its gradient is added to
#     the gradient flowing into that output, so the layer's own backward pass
#     carries it to the weights and inputs. A class may regularize further
#     tensors of a call: its `activity_terms` (register_layer_class()) gives
#     them with their gradients with respect to the node's inputs and the
#     layer's weights (multi-head attention: the outputs of the query, key,
#     (gate) and value projections, as Keras; mha_activity_terms() in
#     layer-multi-head-attention-graph.R).
# Each call of a shared layer adds its own activity loss (as Keras does,
# rather than only the last call's, which is what `layer$losses` shows).

# The activity regularizer of a layer's state, or NULL.
#' @noRd
layer_activity_regularizer <- function(self) {
  reg <- self$config$activity_regularizer
  if (is.null(reg)) reg <- self$activity_regularizer
  reg
}

# The regularized tensors of one layer node of a forward run: NULL, or
# list(self, reg, batch, terms): terms[[1]] is list(value = <the output>,
# kind = "output"), then the class's `activity_terms`, each list(value =,
# gradient = function(g) list(inputs =, weights =)).
#' @noRd
node_activity_terms <- function(node, run) {
  if (!identical(node$kind, "layer") || inherits(node$callee, "multihead_model")) return(NULL)
  self <- layer_self(node$callee)
  reg <- layer_activity_regularizer(self)
  if (is.null(reg)) return(NULL)
  out <- native_as_array(run$values[[node_output_ids(node)[1L]]])
  batch <- max(1, dim(out)[1L])
  terms <- list(list(value = out, kind = "output"))
  extra <- layer_class_def(self)$activity_terms
  if (!is.null(extra)) {
    ins <- lapply(node$inputs, function(t) native_as_array(run$values[[t$id]]))
    terms <- c(terms, extra(self, ins, names(node$inputs)))
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
    p <- t$gradient(g)
    for (j in seq_along(p$inputs)) {
      gj <- p$inputs[[j]]
      if (!is.null(gj)) res$inputs[[j]] <- if (is.null(res$inputs[[j]])) gj else res$inputs[[j]] + gj
    }
    for (path in names(p$weights)) {
      gw <- p$weights[[path]]
      res$weights[[path]] <- if (is.null(res$weights[[path]])) gw else res$weights[[path]] + gw
    }
  }
  res
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

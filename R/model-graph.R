# The graph runner behind models.
#
# A graph is list(inputs = <tensors>, outputs = <tensors>, nodes = <nodes in
# topological order>): the nodes needed to compute the outputs from the
# inputs (see tensor-symbolic.R for tensors and nodes). Forward runs each
# node's forward (the layer's graph protocol, or an elementwise op), passing
# the implicit masks of its inputs along; backward runs the nodes in reverse
# and sums gradients where a tensor feeds several nodes (residual
# connections) and where a layer is called several times (shared weights).

# Collects the nodes between `inputs` and `outputs` (lists of tensors), in an
# order where every node comes after the nodes producing its inputs.
#' @noRd
build_graph <- function(inputs, outputs, model_name = "model") {
  input_ids <- vapply(inputs, function(t) t$id, character(1))
  seen <- new.env(hash = TRUE, parent = emptyenv())
  order <- list()
  visit_tensor <- function(t, consumer) {
    if (t$id %in% input_ids) return(invisible())
    node <- t$node
    if (identical(node$kind, "input")) {
      abort_msg(sprintf(paste0("Graph disconnected: model \"%s\" cannot compute tensor %s (needed by %s) from ",
                               "its inputs. Add it to `inputs`, or build the outputs from the given inputs ",
                               "(%s)."),
                        model_name, format(t), consumer,
                        paste(vapply(inputs, format, character(1)), collapse = ", ")),
                class = "multihead_error_graph")
    }
    visit_node(node)
  }
  visit_node <- function(node) {
    if (!is.null(seen[[node$id]])) return(invisible())
    assign(node$id, TRUE, envir = seen)
    consumer <- sprintf("%s \"%s\"", if (identical(node$kind, "op")) "operation" else "layer",
                        callee_name(node$callee))
    for (t in c(node$inputs, node$arg_tensors)) visit_tensor(t, consumer)
    order[[length(order) + 1L]] <<- node
  }
  for (t in outputs) visit_tensor(t, "the model's outputs")
  list(inputs = inputs, outputs = outputs, nodes = order)
}

#' @noRd
node_output_ids <- function(node) paste0(node$id, ":", seq_along(node$output_shapes))

#' @noRd
node_has_several_outputs <- function(node) {
  length(node$output_shapes) > 1L || !is.null(node$output_names)
}

# Runs the graph. `input_values` / `input_masks`: lists aligned with
# graph$inputs (NULL entries allowed). `keep`: keep each node's cache for
# run_graph_backward(). Returns list(values, masks, caches) (environments
# keyed by tensor or node id) and `outputs` / `output_masks` (lists aligned
# with graph$outputs, R arrays). `native`: float32 layers that take native
# tensors (native-tensor.R) exchange them; with `keep` the caller ends the
# run with release_natives() after its backward pass.
#' @noRd
run_graph_forward <- function(graph, input_values, input_masks = NULL, training = FALSE, keep = FALSE,
                              native = FALSE) {
  values <- new.env(hash = TRUE, parent = emptyenv())
  masks <- new.env(hash = TRUE, parent = emptyenv())
  caches <- new.env(hash = TRUE, parent = emptyenv())
  native <- isTRUE(native) && native_tensors_enabled()
  conv <- new.env(hash = TRUE, parent = emptyenv())  # values converted to the other form, by id
  for (i in seq_along(graph$inputs)) {
    id <- graph$inputs[[i]]$id
    assign(id, input_values[[i]], envir = values)
    if (!is.null(input_masks) && !is.null(input_masks[[i]])) assign(id, input_masks[[i]], envir = masks)
  }
  for (node in graph$nodes) {
    takes <- native && node_takes_native(node)
    in_vals <- lapply(node$inputs, function(t) value_in_form(values[[t$id]], t$id, takes, conv))
    in_masks <- lapply(node$inputs, function(t) masks[[t$id]])
    args <- node$args
    for (nm in names(node$arg_tensors)) {
      t <- node$arg_tensors[[nm]]
      args[nm] <- list(value_in_form(values[[t$id]], t$id, FALSE, conv))
    }
    tr <- if (is.null(node$training)) training else node$training
    res <- if (identical(node$kind, "variable")) list(output = variable_value(node$callee))
      else node_forward(node, in_vals, args, tr, in_masks)
    ids <- node_output_ids(node)
    several <- node_has_several_outputs(node)
    outs <- if (several) res$output else list(res$output)
    out_masks <- if (several && is.list(res$mask) && !is.object(res$mask)) res$mask else list(res$mask)
    for (i in seq_along(ids)) {
      assign(ids[i], outs[[i]], envir = values)
      if (i <= length(out_masks) && !is.null(out_masks[[i]])) assign(ids[i], out_masks[[i]], envir = masks)
    }
    if (keep) assign(node$id, res$cache, envir = caches)
  }
  outputs <- lapply(graph$outputs, function(t) value_in_form(values[[t$id]], t$id, FALSE, conv))
  run <- list(values = values, masks = masks, caches = caches, outputs = outputs,
              output_masks = lapply(graph$outputs, function(t) masks[[t$id]]), native = native, conv = conv)
  if (native && !keep) release_natives()
  run
}

#' @noRd
node_forward <- function(node, in_vals, args, training, in_masks) {
  has_mask <- any(!vapply(in_masks, is.null, logical(1)))
  if (identical(node$kind, "op")) return(op_node_forward(node, in_vals, if (has_mask) in_masks))
  self <- layer_self(node$callee)
  def <- layer_class_def(self)
  inputs <- if (node$single) in_vals[[1L]] else in_vals
  m <- if (!has_mask) NULL else if (node$single) in_masks[[1L]] else in_masks
  if ("mask" %in% names(args)) {  # an explicit `mask =` of the call replaces the implicit masks
    m <- args$mask
    args$mask <- NULL
  }
  def$forward(self, inputs, args, training, m)
}

# need_inputs: logical, one per node input: whether the runner uses that
# input's gradient (passed on to classes declaring backward_skips_inputs).
#' @noRd
node_backward <- function(node, cache, grad_output, need_inputs = NULL) {
  if (identical(node$kind, "op")) return(op_node_backward(node, cache, grad_output))
  self <- layer_self(node$callee)
  def <- layer_class_def(self)
  if (isTRUE(def$backward_skips_inputs) && !is.null(need_inputs)) {
    return(def$backward(self, cache, grad_output, need_inputs = need_inputs))
  }
  def$backward(self, cache, grad_output)
}

# Which tensors' gradients a backward pass needs: those of graph inputs as
# `input_grads` says (TRUE, FALSE or one flag per input), and every tensor
# that depends on one of them or on a layer or variable node (any layer may
# hold weights; op nodes hold none). Returns an environment keyed by tensor
# id (TRUE / FALSE).
#' @noRd
graph_grads_needed <- function(graph, input_grads = TRUE) {
  need <- new.env(hash = TRUE, parent = emptyenv())
  flags <- rep_len(as.logical(input_grads), length(graph$inputs))
  for (i in seq_along(graph$inputs)) assign(graph$inputs[[i]]$id, isTRUE(flags[i]), envir = need)
  for (node in graph$nodes) {
    needed <- !identical(node$kind, "op") ||
      any(vapply(node$inputs, function(t) isTRUE(need[[t$id]]), logical(1)))
    for (id in node_output_ids(node)) assign(id, needed, envir = need)
  }
  need
}

# Backward through the graph from `grad_outputs` (aligned with
# graph$outputs) using the forward `run` (made with keep = TRUE). Returns
# list(inputs = <list aligned with graph$inputs; NULL for inputs that are not
# differentiable>, weights = <environment: var_key(state, name) -> the
# gradient of that weight, summed over every layer call and variable node
# that uses it>); model_weight_grads() orders them as get_weights().
# activity = TRUE (training) also adds the gradients of the layers' activity
# regularization losses (node_activity_gradients(), model-regularization.R),
# in nested models too. input_grads: whether the gradients of the graph's
# inputs are wanted (TRUE, FALSE or one flag per input; FALSE in a training
# step): without them, layers that can skip an input's gradient do
# (graph_grads_needed(), node_backward()) and the inputs' entries are NULL.
#' @noRd
run_graph_backward <- function(graph, run, grad_outputs, activity = FALSE, input_grads = TRUE) {
  needed <- graph_grads_needed(graph, input_grads)
  grads <- new.env(hash = TRUE, parent = emptyenv())
  summed <- list()  # native gradients replaced by their sum (freed after the node, release_spent_natives())
  add_grad <- function(id, g) {
    if (is.null(g)) return(invisible())
    old <- grads[[id]]
    if (!is.null(old) && (is_native_tensor(old) || is_native_tensor(g))) {
      summed[[length(summed) + 1L]] <<- list(old, g)
      assign(id, cpp_native_add(old, g, mh_threads()), envir = grads)
    } else {
      assign(id, if (is.null(old)) g else old + g, envir = grads)
    }
  }
  for (i in seq_along(graph$outputs)) add_grad(graph$outputs[[i]]$id, grad_outputs[[i]])
  wgrads <- new.env(hash = TRUE, parent = emptyenv())
  add_wgrad <- function(key, g) {
    old <- wgrads[[key]]
    assign(key, if (is.null(old)) g else old + g, envir = wgrads)
  }
  release <- if (isTRUE(run$native)) native_release_plan(graph) else NULL
  for (k in rev(seq_along(graph$nodes))) {
    node <- graph$nodes[[k]]
    ids <- node_output_ids(node)
    gs <- lapply(ids, function(id) grads[[id]])
    extra <- if (activity) node_activity_gradients(node, run) else NULL
    if (all(vapply(gs, is.null, logical(1))) && is.null(extra)) next
    for (i in seq_along(ids)) {
      if (is.null(gs[[i]])) {
        v <- run$values[[ids[i]]]
        gs[[i]] <- array(0, if (is.null(dim(v))) length(v) else dim(v))
      }
      if (!is.null(extra$outputs[[i]])) gs[[i]] <- native_as_array(gs[[i]]) + extra$outputs[[i]]
    }
    if (identical(node$kind, "variable")) {
      v <- node$callee
      add_wgrad(var_key(variable_state(v), variable_name(v)), native_as_array(gs[[1L]]))  # weights: R arrays
      next
    }
    several <- node_has_several_outputs(node)
    if (!node_takes_native(node)) gs <- lapply(gs, native_as_array)
    g <- if (several) stats::setNames(gs, node$output_names) else gs[[1L]]
    cache <- run$caches[[node$id]]
    if (activity && (inherits(node$callee, "multihead_model") || inherits(node$callee, "multihead_custom_layer"))) {
      cache$activity <- TRUE
    }
    need_in <- vapply(node$inputs, function(t) isTRUE(needed[[t$id]]), logical(1))
    res <- node_backward(node, cache, g, need_in)
    in_grads <- if (node$single && !identical(node$kind, "op")) list(res$inputs) else res$inputs
    nms <- names(node$inputs)
    for (j in seq_along(node$inputs)) {
      if (!need_in[j]) next
      gj <- if (!is.null(nms) && nzchar(nms[j])) in_grads[[nms[j]]] else in_grads[[j]]
      if (!is_float_dtype(node$inputs[[j]]$dtype)) next  # ids, masks: no gradient
      add_grad(node$inputs[[j]]$id, gj)
      if (!is.null(extra$inputs[[j]])) add_grad(node$inputs[[j]]$id, extra$inputs[[j]])
    }
    if (is.environment(res$weights)) {  # keyed by var_key() already (custom layers)
      for (key in ls(res$weights, all.names = TRUE, sorted = FALSE)) add_wgrad(key, res$weights[[key]])
    } else if (identical(node$kind, "layer") && length(res$weights)) {
      w <- res$weights
      for (path in names(extra$weights)) w[[path]] <- w[[path]] + extra$weights[[path]]
      slots <- layer_variable_slots(layer_self(node$callee))
      if (length(slots) != length(w)) {
        abort_msg(sprintf("Layer \"%s\" returned %d weight gradients for %d weights.",
                          layer_self(node$callee)$name, length(w), length(slots)))
      }
      for (i in seq_along(slots)) {
        if (!is.null(w[[i]])) add_wgrad(var_key(slots[[i]]$self, slots[[i]]$name), w[[i]])
      }
    }
    if (!is.null(release)) {
      release_node_natives(release, k, ids, run, grads)
      summed <- release_spent_natives(list(summed, in_grads), run, grads)
    }
  }
  list(inputs = lapply(graph$inputs, function(t) native_as_array(grads[[t$id]])), weights = wgrads)
}

# Output shapes of the graph for new input shapes (a list aligned with
# graph$inputs), by running each node's compute_output_shape().
#' @noRd
graph_output_shapes <- function(graph, input_shapes) {
  shapes <- new.env(hash = TRUE, parent = emptyenv())
  for (i in seq_along(graph$inputs)) assign(graph$inputs[[i]]$id, input_shapes[[i]], envir = shapes)
  for (node in graph$nodes) {
    in_shapes <- lapply(node$inputs, function(t) shapes[[t$id]])
    ids <- node_output_ids(node)
    if (identical(node$kind, "variable")) {
      out <- list(value_shape(variable_value(node$callee)))
    } else if (identical(node$kind, "op")) {
      out <- op_node_output_shapes(node, in_shapes)
    } else {
      self <- layer_self(node$callee)
      def <- layer_class_def(self)
      res <- def$compute_output_shape(self, if (node$single) in_shapes[[1L]] else in_shapes, node$args)
      out <- if (is.list(res)) res else list(res)
    }
    for (i in seq_along(ids)) assign(ids[i], as.integer(out[[i]]), envir = shapes)
  }
  lapply(graph$outputs, function(t) shapes[[t$id]])
}

# Native tensors: float32 buffers kept in C++ between the layers of a
# training step, an evaluation batch or a predict() batch
# (src/glue_native.cpp), so that float32 layers pass their results to each
# other without converting them to R's column-major doubles and back. Only
# the graph runner creates them (run_graph_forward(native = TRUE)): a node
# whose layer class declares `native_tensors = TRUE` and whose dtype is
# float32 gets its float inputs as native tensors and returns native tensors
# (its backward likewise); every other node, and every caller, sees R arrays.
# A native tensor lives for one run: when the run (and its backward pass) is
# over, release_natives() frees them all; nothing that outlives a run holds
# one.
# `options(multihead.native_tensors = FALSE)` runs everything on R arrays.

#' @noRd
is_native_tensor <- function(x) inherits(x, "multihead_native_tensor")

#' @export
dim.multihead_native_tensor <- function(x) attr(x, "shape", exact = TRUE)

#' @export
length.multihead_native_tensor <- function(x) prod(attr(x, "shape", exact = TRUE))

#' @export
print.multihead_native_tensor <- function(x, ...) {
  cat(sprintf("<multihead native float32 tensor of shape %s>\n", fmt_shape(dim(x))))
  invisible(x)
}

# The R array of x (x itself unless it is a native tensor).
#' @noRd
native_as_array <- function(x) if (is_native_tensor(x)) cpp_native_to_array(x, mh_threads()) else x

# Whether the runner passes native tensors to a layer node: its class says it
# takes them and the layer computes in float32.
#' @noRd
node_takes_native <- function(node) {
  if (!identical(node$kind, "layer")) return(FALSE)
  self <- layer_self(node$callee)
  isTRUE(layer_class_def(self)$native_tensors) && identical(self$dtype, "float32")
}

#' @noRd
native_tensors_enabled <- function() !isFALSE(getOption("multihead.native_tensors"))

# A value in the form a node wants: `native` TRUE gives double arrays as
# native tensors, FALSE gives native tensors as R arrays. `conv` (an
# environment) keeps each converted value by tensor id, so a value read by
# several nodes is converted once.
#' @noRd
value_in_form <- function(v, id, native, conv) {
  if (is.null(v)) return(v)
  if (native) {
    if (is_native_tensor(v) || !is.double(v) || is.null(dim(v)) || is.object(v)) return(v)
  } else if (!is_native_tensor(v)) {
    return(v)
  }
  out <- conv[[id]]
  if (is.null(out)) {
    out <- if (native) cpp_native_from_array(v, mh_threads()) else cpp_native_to_array(v, mh_threads())
    assign(id, out, envir = conv)
  }
  out
}

# Which graph inputs a run can take as native tensors straight from the data
# (fit(), evaluate() and predict() batches, slice_first_axis(native =)):
# those read only as the float inputs of nodes that take native tensors (not
# as a node's argument, not as a graph output, which the caller must get
# back as given). A logical per graph input.
#' @noRd
graph_native_inputs <- function(graph) {
  ids <- vapply(graph$inputs, function(t) t$id, character(1))
  ok <- rep(native_tensors_enabled(), length(ids))
  for (t in graph$outputs) ok[ids == t$id] <- FALSE
  used <- rep(FALSE, length(ids))
  for (node in graph$nodes) {
    takes <- NULL
    for (t in node$inputs) {
      hit <- ids == t$id
      if (!any(hit)) next
      if (is.null(takes)) takes <- node_takes_native(node) && is_float_dtype(t$dtype)
      used[hit] <- TRUE
      if (!takes) ok[hit] <- FALSE
    }
    for (t in node$arg_tensors) ok[ids == t$id] <- FALSE
  }
  ok & used
}

# ---- release during a backward pass ----------------------------------------------
# A backward pass runs the nodes in reverse order; once node k's backward has
# run, nothing later needs its cache or its outputs' values and gradients,
# so their native tensors are freed at once (the peak memory of a step is
# then that of the forward's activations, not activations plus every
# gradient). What nodes 1..k-1 still hold (their caches, the values, converted
# forms and gradients of their outputs and of the graph's inputs) is kept: a
# tensor can be in both (a layer that passes its input through, a gradient
# passed on to several inputs). Lists are searched, environments are not:
# tensors only an environment holds (a nested model's run) wait for
# release_natives().

# The ids release_node_natives() looks up: `ids` all tensor ids (the graph's
# inputs, then each node's outputs in node order), `upto[k]` how many of
# them exist before node k, `node_ids` the node ids in order.
#' @noRd
native_release_plan <- function(graph) {
  in_ids <- vapply(graph$inputs, function(t) t$id, character(1))
  out_ids <- lapply(graph$nodes, node_output_ids)
  list(ids = c(in_ids, unlist(out_ids)),
       upto = length(in_ids) + c(0L, cumsum(lengths(out_ids)))[seq_along(graph$nodes)],
       node_ids = vapply(graph$nodes, function(n) n$id, character(1)))
}

# After node k's backward (`own`: its output ids; `grads` the pass's
# gradients by tensor id): frees what only node k and later nodes held.
#' @noRd
release_node_natives <- function(plan, k, own, run, grads) {
  get_all <- function(ids, env) mget(ids, envir = env, ifnotfound = list(NULL))
  before <- plan$ids[seq_len(plan$upto[k])]
  keep <- list(get_all(plan$node_ids[seq_len(k - 1L)], run$caches), get_all(before, run$values),
               get_all(before, run$conv), get_all(before, grads))
  gone <- list(run$caches[[plan$node_ids[k]]], get_all(own, run$values), get_all(own, run$conv),
               get_all(own, grads))
  # the outputs' gradients are spent: dropped, so that a tensor they share
  # with a later gradient (a pass-through) is not kept alive by them
  rm(list = intersect(own, ls(grads, all.names = TRUE, sorted = FALSE)), envir = grads)
  invisible(cpp_native_release_unshared(gone, keep))
}

# After a node's backward: the native gradients in `spent` (a list: those
# summed into a new one, and the node's input gradients, some of which the
# runner does not keep) are freed unless a gradient, value or cache of the
# run still holds them (a layer may pass one gradient to several inputs);
# returns the empty list.
#' @noRd
release_spent_natives <- function(spent, run, grads) {
  cpp_native_release_unshared(spent, list(as.list(grads), as.list(run$values), as.list(run$conv),
                                          as.list(run$caches)))
  list()
}

# a + b for two native tensors only the caller holds (fresh results of one
# kernel call), freeing both: the sum as a native tensor.
#' @noRd
native_sum_of_fresh <- function(a, b) {
  s <- cpp_native_add(a, b, mh_threads())
  cpp_native_release_unshared(list(a, b), list())
  s
}

# Frees the buffers of every native tensor (a run and its backward pass are
# over; native tensors never outlive one).
#' @noRd
release_natives <- function() invisible(cpp_native_release_all())

# Custom layers in graphs: recording a call on symbolic tensors, tracing
# call() into a sub-graph, and the graph protocol (forward, backward, output
# shapes) that runs it.
#
# A symbolic call of a custom layer records ONE layer node in the caller's
# graph (so summary() shows one row): its inputs are every symbolic tensor
# among the call's arguments, in order (lists of tensors flattened), and
# its args hold `custom_call`, the call's arguments with each tensor
# replaced by a slot marker (constants such as `reverse = TRUE` stay), and
# `input_dtypes`.
#
# Running the node traces call(): placeholders of the concrete input shapes
# (and the mask, when call() has a `mask` argument the caller left out and
# the first input has an implicit mask) are passed to call() while a trace
# frame is active, so sub-layers record nodes, op_*() functions record op
# nodes and variables become variable nodes. The trace is a graph
# (build_graph()) that run_graph_forward() / run_graph_backward() execute;
# traces are cached per (input shapes, dtypes, mask shape, training, call
# arguments), the last 16 kept, and dropped when an attribute of the layer
# is assigned (call() may read it); eager calls trace afresh, so call()'s
# side effects happen on every call. At construction (keras_model()) the
# trace uses the symbolic shapes; if call() cannot run with unknown (NA)
# sizes (e.g. op_arange() of an unknown length), it is traced with two probe
# sizes in their place and the sizes that differ are unknown in the output,
# as Keras's JAX backend does.

.custom_trace_limit <- 16L
.probe_sizes <- c(83L, 89L)

# ---- flattening the call's arguments ---------------------------------------------

#' @noRd
trace_slot <- function(k) structure(list(k = k), class = "multihead_trace_slot")

# list(struct = <args with tensors replaced by slots>, tensors = <list>).
# `is_tensor(x)` decides what is a tensor.
#' @noRd
custom_flatten_args <- function(args, is_tensor = is_symbolic) {
  tensors <- list()
  walk <- function(x) {
    if (is_tensor(x)) {
      tensors[[length(tensors) + 1L]] <<- x
      return(trace_slot(length(tensors)))
    }
    if (is.list(x) && !is.object(x) && length(x)) {
      out <- lapply(x, walk)
      attributes(out) <- attributes(x)
      return(out)
    }
    x
  }
  struct <- walk(args)
  list(struct = struct, tensors = tensors)
}

# The arguments back from a struct and the values of its slots; with
# constants = FALSE the other arguments become NULL (a gradient structure).
#' @noRd
custom_unflatten <- function(struct, values, constants = TRUE) {
  walk <- function(x) {
    if (inherits(x, "multihead_trace_slot")) return(values[[x$k]])
    if (is.list(x) && !is.object(x) && length(x)) {
      out <- vector("list", length(x))
      for (i in seq_along(x)) {
        v <- walk(x[[i]])
        if (!is.null(v)) out[[i]] <- v
      }
      attributes(out) <- attributes(x)
      return(out)
    }
    if (constants) x else NULL
  }
  walk(struct)
}

# ---- recording a symbolic call -------------------------------------------------------

#' @noRd
custom_record_call <- function(state, matched) {
  fl <- custom_flatten_args(matched)
  custom_maybe_build(state, matched)
  specs <- lapply(fl$tensors, function(t) list(shape = t$shape, dtype = t$dtype))
  out <- custom_output_specs(state, fl$struct, specs)
  node <- new_graph_node("layer", state$object, inputs = unname(fl$tensors), single = FALSE,
                         args = list(custom_call = fl$struct,
                                     input_dtypes = vapply(specs, function(s) s$dtype, character(1))),
                         output_shapes = out$shapes, output_names = out$names, output_dtypes = out$dtypes)
  node_output_tensors(node)
}

# Output shapes, names and dtypes of a call with inputs `specs`: from the
# user's compute_output_shape() when the class has one, else by tracing.
#' @noRd
custom_output_specs <- function(state, struct, specs) {
  owner <- custom_lookup_class(state$custom, "compute_output_shape")
  if (!is.null(owner)) {
    shapes <- lapply(specs, function(s) s$shape)
    first <- shapes[[1L]]
    res <- custom_bind(state, owner, owner$methods$compute_output_shape)(if (length(shapes) == 1L) first else first)
    several <- is.list(res) && !is.object(res)
    outs <- if (several) res else list(res)
    outs <- lapply(outs, function(s) as_input_shape(s, "compute_output_shape()", min_rank = 0L))
    return(list(shapes = outs, names = if (several) names(res), dtypes = as.list(rep(state$dtype, length(outs)))))
  }
  tr <- custom_trace_for_specs(state, struct, specs)
  list(shapes = tr$out_shapes, names = tr$out_names, dtypes = tr$out_dtypes)
}

# A trace for specs that may hold unknown sizes; falls back to probe sizes.
#' @noRd
custom_trace_for_specs <- function(state, struct, specs) {
  has_na <- any(vapply(specs, function(s) anyNA(s$shape), logical(1)))
  first <- tryCatch(custom_make_trace(state, struct, specs, training = NULL, mask_spec = NULL),
                    error = function(e) e)
  if (!inherits(first, "error")) return(first)
  if (!has_na) stop(first)
  probe <- function(size) {
    ps <- lapply(specs, function(s) { s$shape[is.na(s$shape)] <- size; s })
    saved <- .trace_state$probing
    .trace_state$probing <- TRUE  # models built now must not take the probe sizes as their input shape
    on.exit(.trace_state$probing <- saved, add = TRUE)
    tryCatch(custom_make_trace(state, struct, ps, training = NULL, mask_spec = NULL), error = function(e) NULL)
  }
  a <- probe(.probe_sizes[1L])
  b <- probe(.probe_sizes[2L])
  if (is.null(a) || is.null(b) || length(a$out_shapes) != length(b$out_shapes)) stop(first)
  a$out_shapes <- Map(function(x, y) {
    if (length(x) != length(y)) stop(first)
    x[x != y] <- NA_integer_
    x
  }, a$out_shapes, b$out_shapes)
  a
}

# ---- tracing -------------------------------------------------------------------

# Traces call() on placeholders. `training`: NULL (left to call()'s default)
# or TRUE/FALSE passed when call() takes `training` and the caller did not
# give it. `mask_spec`: NULL, or list(struct, shapes): the implicit masks of
# the first argument's tensors, passed as `mask` in that argument's structure
# (when call() takes `mask` and the caller did not give it).
#' @noRd
custom_make_trace <- function(state, struct, specs, training, mask_spec) {
  m <- custom_call_method(state)
  fmls <- names(formals(m$fn))
  phs <- lapply(seq_along(specs), function(i) new_placeholder_tensor(specs[[i]]$shape, specs[[i]]$dtype,
                                                                      paste0(state$name, "/input_", i)))
  args <- custom_unflatten(struct, phs)
  mask_phs <- list()
  if (!is.null(mask_spec) && "mask" %in% fmls && !("mask" %in% names(args))) {
    mask_phs <- lapply(seq_along(mask_spec$shapes), function(i) {
      new_placeholder_tensor(mask_spec$shapes[[i]], "bool", paste0(state$name, "/mask_", i))
    })
    args["mask"] <- list(custom_unflatten(mask_spec$struct, mask_phs))
  }
  if (!is.null(training) && "training" %in% fmls && !("training" %in% names(args))) args$training <- training
  res <- with_trace_frame({
    frame <- trace_frame()
    frame$losses <- list()
    outs <- do.call(custom_bind(state, m$cls, m$fn), args)
    owner <- custom_lookup_class(state$custom, "compute_mask")
    masks <- NULL
    if (!is.null(owner)) {
      first <- if (length(args)) args[[1L]] else NULL
      given_mask <- if (!is.null(args$mask)) args$mask else NULL
      masks <- custom_bind(state, owner, owner$methods$compute_mask)(first, mask = given_mask)
    }
    list(outs = outs, masks = masks, losses = frame$losses)
  })
  outs <- custom_output_tensors(state, res$outs)
  n_out <- length(outs$tensors)
  graph_outputs <- outs$tensors
  mask_index <- NULL
  if (!is.null(res$masks)) {
    mlist <- if (is_symbolic(res$masks)) list(res$masks) else if (is.list(res$masks)) res$masks else list(NULL)
    mask_index <- rep(NA_integer_, n_out)
    for (i in seq_len(min(n_out, length(mlist)))) {
      mk <- mlist[[i]]
      if (is_variable(mk)) mk <- variable_tensor(mk)
      if (is_symbolic(mk)) {
        graph_outputs[[length(graph_outputs) + 1L]] <- mk
        mask_index[i] <- length(graph_outputs)
      }
    }
  }
  loss_index <- integer()
  for (l in res$losses) {
    graph_outputs[[length(graph_outputs) + 1L]] <- l
    loss_index <- c(loss_index, length(graph_outputs))
  }
  graph <- build_graph(c(phs, mask_phs), graph_outputs, state$name)
  list(graph = graph, n_inputs = length(phs), n_mask_inputs = length(mask_phs), n_out = n_out,
       several = outs$several, out_names = outs$names, mask_index = mask_index, loss_index = loss_index,
       out_shapes = lapply(outs$tensors, function(t) t$shape),
       out_dtypes = lapply(outs$tensors, function(t) t$dtype))
}

# call()'s result as a list of symbolic tensors.
#' @noRd
custom_output_tensors <- function(state, outs) {
  conv <- function(t) {
    if (is_variable(t)) t <- variable_tensor(t)
    if (!is_symbolic(t)) {
      abort_msg(sprintf(paste0("call() of layer \"%s\" (%s) must return tensors computed from its inputs (or a ",
                               "list of them); it returned %s."), state$name, state$class_name,
                        describe_value(t)), class = "multihead_error_argument")
    }
    t
  }
  if (is_symbolic(outs) || is_variable(outs)) return(list(tensors = list(conv(outs)), several = FALSE, names = NULL))
  if (!is.list(outs) || is.object(outs) || !length(outs)) conv(outs)
  list(tensors = lapply(unname(outs), conv), several = TRUE, names = names(outs))
}

# The cached trace for a key, or a new one.
#' @noRd
custom_cached_trace <- function(state, key, struct, specs, training, mask_spec) {
  for (t in state$traces) if (identical(t$key, key)) return(t$trace)
  tr <- custom_make_trace(state, struct, specs, training, mask_spec)
  traces <- c(state$traces, list(list(key = key, trace = tr)))
  if (length(traces) > .custom_trace_limit) traces <- traces[-1L]
  state$traces <- traces
  tr
}

# Drops the cached traces (when an attribute of the layer changes: call()
# may read it).
#' @noRd
custom_forget_traces <- function(state) {
  state$traces <- list()
  invisible(NULL)
}

# ---- the graph protocol -------------------------------------------------------

# `fresh = TRUE` (eager calls, backprop()) traces call() anew instead of
# using the cache, so call()'s side effects happen on every call as in
# keras3's eager mode.
#' @noRd
custom_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL, fresh = FALSE) {
  struct <- args$custom_call
  dtypes <- args$input_dtypes
  if (!is.list(inputs) || is.object(inputs)) inputs <- list(inputs)
  if (!is.null(masks) && (!is.list(masks) || is.object(masks))) masks <- list(masks)
  shapes <- lapply(inputs, value_shape)
  fmls <- names(formals(custom_call_method(self)$fn))
  mask_spec <- NULL
  mask_values <- list()
  first_mask <- NULL
  if (length(masks) && length(struct)) {
    # the implicit masks of the first argument's tensors, in its structure
    fm <- custom_flatten_args(custom_unflatten(struct[[1L]], masks, constants = FALSE),
                              function(x) is.logical(x) || is.numeric(x))
    first_mask <- custom_unflatten(fm$struct, fm$tensors)
    if (length(fm$tensors) && "mask" %in% fmls && !("mask" %in% names(struct))) {
      mask_spec <- list(struct = fm$struct, shapes = lapply(fm$tensors, value_shape))
      mask_values <- fm$tensors
    }
  }
  train_val <- if ("training" %in% fmls && !("training" %in% names(struct))) isTRUE(training)
  key <- list(shapes, dtypes, mask_spec, train_val, struct)
  specs <- lapply(seq_along(inputs), function(i) list(shape = shapes[[i]], dtype = dtypes[[i]]))
  tr <- if (fresh) custom_make_trace(self, struct, specs, train_val, mask_spec)
    else custom_cached_trace(self, key, struct, specs, train_val, mask_spec)
  vals <- c(inputs, mask_values)
  in_masks <- vector("list", length(vals))
  for (i in seq_len(min(length(masks), length(inputs)))) in_masks[i] <- list(masks[[i]])
  run <- run_graph_forward(tr$graph, vals, in_masks, training = isTRUE(training), keep = TRUE)
  outs <- run$outputs[seq_len(tr$n_out)]
  out_masks <- custom_output_masks(self, tr, run, first_mask)
  self$activity_losses <- lapply(run$outputs[tr$loss_index], function(l) sum(l))
  output <- if (tr$several) stats::setNames(outs, tr$out_names) else outs[[1L]]
  mask <- if (tr$several) stats::setNames(out_masks, tr$out_names) else out_masks[[1L]]
  list(output = output, cache = list(run = run, trace = tr), mask = mask)
}

# The output masks: compute_mask()'s when the class defines it; else, for a
# layer that supports masking, the masks the sub-graph carried to the
# outputs, or the first input's mask.
#' @noRd
custom_output_masks <- function(self, tr, run, first_mask) {
  n <- tr$n_out
  if (!is.null(tr$mask_index)) {
    return(lapply(seq_len(n), function(i) if (is.na(tr$mask_index[i])) NULL else as.logical_array(run$outputs[[tr$mask_index[i]]])))
  }
  if (!isTRUE(self$supports_masking)) return(vector("list", n))
  passed <- if (is.list(first_mask)) NULL else first_mask  # a list of masks is not one output's mask
  lapply(seq_len(n), function(i) {
    m <- run$output_masks[[i]]
    if (is.null(m)) passed else m
  })
}

#' @noRd
as.logical_array <- function(x) {
  if (is.null(x)) return(NULL)
  d <- dim(x)
  x <- as.logical(x)
  if (!is.null(d)) dim(x) <- d
  x
}

#' @noRd
custom_backward <- function(self, cache, grad_output) {
  tr <- cache$trace
  g <- if (tr$several) unname(as.list(grad_output)) else list(grad_output)
  n_graph_out <- length(tr$graph$outputs)
  grads <- c(g, vector("list", n_graph_out - length(g)))
  activity <- isTRUE(cache$activity)  # training: the add_loss() terms are part of the loss
  if (activity) {
    for (i in tr$loss_index) {
      v <- cache$run$outputs[[i]]
      grads[[i]] <- if (is.null(dim(v))) rep(1, length(v)) else array(1, dim(v))
    }
  }
  back <- withCallingHandlers(run_graph_backward(tr$graph, cache$run, grads, activity = activity),
    multihead_error_no_gradient = function(e) {
      abort_msg(sprintf("%s (inside layer \"%s\", %s)", conditionMessage(e), self$name, self$class_name),
                class = "multihead_error_no_gradient")
    })
  list(inputs = back$inputs[seq_len(tr$n_inputs)], weights = back$weights)
}

# The add_loss() terms of a forward run of a custom layer (its cache), those
# of the layers inside it included: a number.
#' @noRd
custom_activity_loss <- function(cache) {
  tr <- cache$trace
  total <- 0
  for (i in tr$loss_index) total <- total + sum(cache$run$outputs[[i]])
  total + graph_activity_loss(tr$graph, cache$run)
}

# compute_output_shape() of the protocol: shapes of the node's inputs.
#' @noRd
custom_protocol_output_shape <- function(self, input_shape, args = list()) {
  struct <- args$custom_call
  shapes <- if (is.list(input_shape)) input_shape else list(input_shape)
  dtypes <- args$input_dtypes
  if (is.null(struct)) {
    struct <- list(trace_slot(1L))
    dtypes <- self$dtype
  }
  specs <- lapply(seq_along(shapes), function(i) list(shape = as.integer(shapes[[i]]),
                                                        dtype = if (i <= length(dtypes)) dtypes[[i]] else self$dtype))
  out <- custom_output_specs(self, struct, specs)
  if (length(out$shapes) == 1L && is.null(out$names)) return(out$shapes[[1L]])
  stats::setNames(out$shapes, out$names)
}

# layer$compute_output_shape(input_shape): the user's method, or a trace.
#' @noRd
custom_output_shape_method <- function(self, args) {
  if (!length(args)) abort_arg("input_shape", "supplied: a shape, batch first")
  shape <- as_input_shape(args[[1L]], "input_shape", min_rank = 0L)
  custom_protocol_output_shape(self, shape, list())
}

#' @noRd
custom_traced_output_shape <- function(state, args) {
  if (!length(args)) abort_arg("input_shape", "supplied: a shape, batch first")
  shape <- as_input_shape(args[[1L]], "input_shape", min_rank = 0L)
  tr <- custom_trace_for_specs(state, list(trace_slot(1L)), list(list(shape = shape, dtype = state$dtype)))
  if (length(tr$out_shapes) == 1L && !tr$several) tr$out_shapes[[1L]] else tr$out_shapes
}

# ---- backprop() of a custom layer -------------------------------------------------

#' @noRd
custom_backprop <- function(object, args, grad_output) {
  state <- layer_self(object)
  matched <- custom_match_call_args(state, args)
  custom_maybe_build(state, matched)
  fl <- custom_flatten_args(matched, is_value_tensor)
  dtypes <- vapply(fl$tensors, function(x) eager_tensor_dtype(x, state$dtype), character(1))
  training <- isTRUE(matched$training)
  fw <- custom_forward(state, fl$tensors, list(custom_call = fl$struct, input_dtypes = dtypes), training, NULL,
                       fresh = TRUE)
  back <- custom_backward(state, fw$cache, grad_output)
  slots <- layer_variable_slots(state)
  vars <- layer_variables(state)
  weights <- lapply(seq_along(slots), function(i) {
    g <- back$weights[[var_key(slots[[i]]$self, slots[[i]]$name)]]
    v <- vars[[i]]
    d <- if (is.null(dim(v))) length(v) else dim(v)
    if (is.null(g)) array(0, d) else array(as.double(g), d)
  })
  names(weights) <- names(vars)
  in_grads <- custom_unflatten(fl$struct, back$inputs, constants = FALSE)
  list(output = fw$output, grads = list(inputs = in_grads, weights = weights))
}

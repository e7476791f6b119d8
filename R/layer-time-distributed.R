# The TimeDistributed wrapper (keras3's layer_time_distributed(), Keras's
# keras/src/layers/rnn/time_distributed.py): applies a layer to every time
# step of a (batch, time, ...) input, the steps one after another as Keras's
# loop over a known time axis does (so a layer whose result depends on the
# batch sees batches of `batch` samples).
#
# The wrapped layer is a tracked sub-layer (its weights are this layer's,
# in its order; Keras's ".weights.h5" keeps them in the sub-group `layer`).
# Each step runs a one-node graph: the wrapped layer called symbolically on
# a placeholder of a step's shape (cached per step shape and dtype), so any
# layer the graph runner can run (built-in, custom, a model) can be wrapped;
# the backward pass runs each step's graph backward and sums the weight
# gradients over the steps. The input mask (batch, time, ...) is given to
# each step as its mask (batch, ...); the output has no mask (Keras's
# TimeDistributed does not support masking).

#' Time-distributed wrapper
#'
#' Applies `layer` to every time step (axis 2) of its input, as Keras's
#' `TimeDistributed`: for an input of shape (batch, time, ...) the layer
#' gets each (batch, ...) slice, and the outputs are stacked back along
#' axis 2. The weights are the wrapped layer's (shared by all steps). The
#' input's mask, if any, is given to each step (its slice); the output has
#' no mask.
#'
#' @inheritParams layer_dense
#' @param layer The layer to apply (a layer object, e.g. `layer_dense(units
#'   = 8)`).
#' @param ... Named layer options: `name` (default `"time_distributed"`,
#'   ...), `dtype` (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- array(rnorm(2 * 5 * 3), c(2, 5, 3))
#' td <- layer_time_distributed(layer = layer_dense(units = 4))
#' dim(td(x))   # 2 5 4
layer_time_distributed <- function(object, layer, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(layer)) abort_arg("layer", "supplied: the layer to apply to each time step")
  if (!is_layer(layer) || identical(layer_self(layer)$class_name, "InputLayer") ||
      is.null(layer_class_def(layer_self(layer))$forward)) {
    abort_arg("layer", "a layer object that can be called on tensors (e.g. layer_dense(units = 8))",
              describe_value(layer))
  }
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_time_distributed()")
  self <- new_layer_state("TimeDistributed", "time_distributed", extra$name, extra$dtype, extra$trainable)
  self$sublayers <- list(layer)
  self$step_graphs <- list()
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

#' @noRd
td_inner <- function(self) self$sublayers[[1L]]

# The wrapped layer's input shape for an input shape: the time axis removed.
#' @noRd
td_child_shape <- function(self, shape, arg) {
  if (length(shape) < 3L) {
    abort_arg(arg, "an array of rank 3 or more (batch, time, ...): TimeDistributed applies its layer per time step",
              sprintf("rank %d (shape %s)", length(shape), fmt_shape(shape)))
  }
  shape[-2L]
}

#' @noRd
td_build <- function(self, input_shape) {
  input_shape <- as_input_shape(input_shape)
  child <- td_child_shape(self, input_shape, "input_shape")
  check_not_built(self)
  inner <- layer_self(td_inner(self))
  if (!isTRUE(inner$built)) layer_class_def(inner)$build(inner, child)
  self$build_shapes <- input_shape
  self$built <- TRUE
  invisible(NULL)
}

#' @noRd
td_output_shape <- function(self, input_shape, args = list()) {
  input_shape <- as_input_shape(input_shape)
  child <- td_child_shape(self, input_shape, "input_shape")
  inner <- layer_self(td_inner(self))
  out <- layer_class_def(inner)$compute_output_shape(inner, child, list())
  if (is.list(out)) {
    abort_msg(sprintf("TimeDistributed layer \"%s\": the wrapped layer \"%s\" has several outputs; one is needed.",
                      self$name, inner$name), class = "multihead_error_unsupported")
  }
  as.integer(c(out[1L], input_shape[2L], out[-1L]))
}

# The one-node graph of a step: the wrapped layer called on a placeholder of
# the step's shape (batch unknown) and dtype, cached per (shape, dtype).
#' @noRd
td_step_graph <- function(self, step_shape, dtype) {
  key <- list(as.integer(step_shape[-1L]), dtype)
  for (g in self$step_graphs) if (identical(g$key, key)) return(g$graph)
  graph <- without_trace({
    ph <- new_placeholder_tensor(c(NA_integer_, step_shape[-1L]), dtype, paste0(self$name, "/step"))
    out <- td_inner(self)(ph)
    if (!is_symbolic(out)) {
      abort_msg(sprintf("TimeDistributed layer \"%s\": the wrapped layer must give one output per step.",
                        self$name), class = "multihead_error_unsupported")
    }
    build_graph(list(ph), list(out), self$name)
  })
  graphs <- c(self$step_graphs, list(list(key = key, graph = graph)))
  if (length(graphs) > 8L) graphs <- graphs[-1L]
  self$step_graphs <- graphs
  graph
}

#' @noRd
td_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs, min_rank = 3L)
  d <- dim(x)
  mask <- single_input_mask(masks, d)
  if (!isTRUE(self$built)) td_build(self, batchless_shape(d))
  B <- d[1L]; Tn <- d[2L]; rest <- d[-(1:2)]
  step_dims <- c(B, rest)
  dtype <- if (is.integer(x)) "int32" else self$dtype
  graph <- td_step_graph(self, step_dims, dtype)
  # steps as the middle index of a (B, T, P) view: x[, t, ] is step t
  dim(x) <- c(B, Tn, prod(rest))
  if (!is.null(mask)) {
    md <- dim(mask)
    dim(mask) <- c(B, Tn, prod(md[-(1:2)]))
  }
  runs <- vector("list", Tn)
  out <- NULL
  out_rest <- NULL
  for (t in seq_len(Tn)) {
    xt <- x[, t, , drop = TRUE]
    dim(xt) <- step_dims
    mt <- NULL
    if (!is.null(mask)) {
      mt <- mask[, t, , drop = TRUE]
      dim(mt) <- step_dims[-length(step_dims)]
    }
    run <- run_graph_forward(graph, list(xt), list(mt), training = isTRUE(training), keep = TRUE)
    y <- run$outputs[[1L]]
    yd <- value_shape(y)
    if (is.null(out)) {
      out_rest <- yd[-1L]
      out <- array(0, c(B, Tn, prod(out_rest)))
    }
    out[, t, ] <- y
    runs[[t]] <- run
  }
  if (is.null(out)) {  # no time steps: the shape from the wrapped layer's output shape
    out_dims <- td_output_shape(self, d)
    out <- array(0, out_dims)
  } else {
    out_dims <- as.integer(c(B, Tn, out_rest))
    dim(out) <- out_dims
  }
  list(output = out, mask = NULL,
       cache = list(runs = runs, graph = graph, x_dims = d, out_dims = out_dims, float_input = is.double(x)))
}

#' @noRd
td_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  d <- cache$x_dims
  od <- cache$out_dims
  B <- d[1L]; Tn <- d[2L]
  dim(g) <- c(B, Tn, prod(od[-(1:2)]))
  dx <- if (cache$float_input) array(0, c(B, Tn, prod(d[-(1:2)])))
  slots <- layer_variable_slots(self)
  keys <- vapply(slots, function(s) var_key(s$self, s$name), character(1))
  wsum <- vector("list", length(slots))
  for (t in seq_len(Tn)) {
    gt <- g[, t, , drop = TRUE]
    dim(gt) <- c(B, od[-(1:2)])
    back <- run_graph_backward(cache$graph, cache$runs[[t]], list(gt))
    if (!is.null(dx) && !is.null(back$inputs[[1L]])) dx[, t, ] <- back$inputs[[1L]]
    for (k in seq_along(keys)) {
      gw <- back$weights[[keys[k]]]
      if (!is.null(gw)) wsum[[k]] <- if (is.null(wsum[[k]])) gw else wsum[[k]] + gw
    }
  }
  if (!is.null(dx)) dim(dx) <- d
  vals <- layer_variables(self)
  weights <- lapply(seq_along(slots), function(k) {
    v <- vals[[k]]
    if (is.null(wsum[[k]])) array(0, value_shape(v)) else array(as.double(wsum[[k]]), value_shape(v))
  })
  names(weights) <- names(vals)
  list(inputs = dx, weights = weights)
}

#' @noRd
td_get_config <- function(self) {
  inner <- layer_self(td_inner(self))
  c(base_layer_config(self), list(layer = list(class_name = inner$class_name, config = layer_get_config(inner))))
}

#' @noRd
td_from_config <- function(config) {
  lc <- config$layer
  args <- config[intersect(names(config), base_layer_options())]
  if (is_layer(lc)) return(do.call(layer_time_distributed, c(list(NULL, layer = lc), args), quote = TRUE))
  if (!is.list(lc) || !is.list(lc$config)) {
    abort_arg("config$layer", "the wrapped layer's list(class_name =, config =)", describe_value(lc))
  }
  inner_cfg <- lc$config
  if (is.null(attr(inner_cfg, "class_name"))) attr(inner_cfg, "class_name") <- lc$class_name
  do.call(layer_time_distributed, c(list(NULL, layer = from_config(inner_cfg)), args), quote = TRUE)
}

#' @noRd
register_time_distributed <- function() {
  register_layer_class(
    "TimeDistributed",
    properties = utils::modifyList(common_layer_properties, list(
      layer = function(self) td_inner(self),
      supports_masking = function(self) FALSE)),
    methods = c(common_layer_methods, list(
      build = function(self, input_shape) td_build(self, input_shape),
      compute_output_shape = function(self, input_shape) td_output_shape(self, input_shape))),
    describe = function(self) {
      describe_built(self, sprintf("layer=%s \"%s\"", layer_self(td_inner(self))$class_name,
                                   layer_self(td_inner(self))$name))
    },
    get_config = td_get_config, from_config = td_from_config,
    build = td_build, compute_output_shape = td_output_shape,
    forward = td_forward, backward = td_backward,
    h5_children = function(self) list(list(path = "layer", layer = td_inner(self))),
    backprop = protocol_layer_backprop,
    # in a .keras config the wrapped layer is a whole serialized layer
    keras_object = function(self, obj) {
      obj$config$layer <- keras_layer_object(layer_self(td_inner(self)))
      obj
    },
    keras_config = function(cfg, raw, custom_objects) {
      cfg$layer <- keras_layer_from_object(raw$layer, custom_objects, "the layer of a TimeDistributed")
      cfg
    })
}

# Sequential models: a stack of layers, each applied to the previous one's
# output. Internally a sequential model is a functional graph with one input
# (created from `input_shape`, or from the first call's data) and one
# output; `self$entries` keeps each layer with how it is applied
# (`call(layer, x)`): the `sequential_call` its class declares
# (register_layer_class(); multi-head attention's is layer(x, x),
# self-attention), else layer(x).

#' Sequential models
#'
#' `keras_model_sequential()` creates a model that applies its layers one
#' after the other. Layers are added in place by piping the model into layer
#' functions: `model |> layer_dense(8)` adds the layer and returns the model
#' invisibly. Inside a sequential model, [layer_multi_head_attention()] is
#' self-attention on the previous layer's output. Without `input_shape` the
#' model is built by its first call (or when called on a symbolic tensor).
#'
#' @param input_shape `NULL`, or the input's shape without the batch axis
#'   (`NA` for unknown sizes), as in [keras_input()].
#' @param name `NULL` (a unique name such as `"sequential"`) or a string.
#' @param ... Named options: `input_dtype`, `input_batch_size`,
#'   `input_batch_shape`, `input_name`, `input_sparse`, `input_tensor`,
#'   `input_optional` (the arguments of [keras_input()]) and `trainable`.
#' @param layers A list of layers to add, in order.
#' @returns A sequential model (see [keras_model()] for what models can do).
#' @export
#' @examples
#' model <- keras_model_sequential(input_shape = c(6, 8))
#' model |>
#'   layer_multi_head_attention(num_heads = 2, key_dim = 4)
#' model
#' dim(model(array(rnorm(2 * 6 * 8), c(2, 6, 8))))
keras_model_sequential <- function(input_shape = NULL, name = NULL, ..., layers = list()) {
  input_args <- c("input_dtype", "input_batch_size", "input_batch_shape", "input_name", "input_sparse",
                  "input_tensor", "input_optional")
  extra <- check_layer_dots(list(...), c(input_args, "trainable"), "keras_model_sequential()")
  name <- check_string(name, "name", null_ok = TRUE)
  trainable <- if (is.null(extra$trainable)) TRUE else check_flag(extra$trainable, "trainable")
  if (is_layer(layers)) layers <- list(layers)
  if (!is.list(layers) || is.object(layers)) abort_arg("layers", "a list of layers", describe_value(layers))
  for (i in seq_along(layers)) {
    if (!is_layer(layers[[i]])) abort_arg(sprintf("layers[[%d]]", i), "a layer", describe_value(layers[[i]]))
  }
  self <- new_model_self("Sequential", if (is.null(name)) unique_layer_name("sequential") else name, trainable)
  self$entries <- list()
  model <- new_model_object(self)
  given <- !vapply(extra[intersect(names(extra), input_args)], is.null, logical(1))
  if (!is.null(input_shape) || any(given)) {
    x <- keras_input(shape = input_shape, batch_size = extra$input_batch_size, dtype = extra$input_dtype,
                     sparse = extra$input_sparse, batch_shape = extra$input_batch_shape,
                     name = extra$input_name, tensor = extra$input_tensor,
                     optional = if (is.null(extra$input_optional)) FALSE else extra$input_optional)
    sequential_set_input(self, x)
  }
  for (l in layers) sequential_add(model, l)
  model
}

#' @noRd
sequential_set_input <- function(self, x) {
  self$input_tensor <- x
  self$output_tensor <- x
  ins <- list(tensors = list(x), form = "single", names = NULL)
  model_set_graph(self, build_graph(list(x), list(x), self$name), ins, ins, include_input_layers = FALSE)
}

# Applies one entry to the previous output; the result must be one tensor.
#' @noRd
sequential_apply <- function(self, entry, x) {
  out <- entry$call(entry$layer, x)
  if (!is_symbolic(out)) {
    abort_msg(sprintf(paste0("Layers in a sequential model must have one output; layer \"%s\" in model \"%s\" ",
                             "returned %s."), layer_self(entry$layer)$name, self$name, describe_value(out)),
              class = "multihead_error_argument")
  }
  out
}

# Adds `layer` to the sequential `model` in place (compose_layer() calls this
# for `model |> layer_xxx()`).
#' @noRd
sequential_add <- function(model, layer, call_layer = default_call_layer) {
  sequential_add_self(layer_self(model), layer, call_layer)
  invisible(model)
}

#' @noRd
sequential_add_self <- function(self, layer, call_layer = default_call_layer) {
  if (!is_layer(layer)) abort_arg("layer", "a layer", describe_value(layer))
  s <- layer_self(layer)
  if (identical(call_layer, default_call_layer)) call_layer <- sequential_call_of(s)
  if (identical(s, self)) abort_msg(sprintf("Model \"%s\" cannot contain itself.", self$name),
                                    class = "multihead_error_argument")
  if (inherits(layer, "InputLayer")) {
    if (length(self$entries) || !is.null(self$input_tensor)) {
      abort_arg("layer", sprintf("not an input (model \"%s\" already has an input or layers)", self$name))
    }
    sequential_set_input(self, s$output)
    return(invisible(NULL))
  }
  for (e in self$entries) {
    es <- layer_self(e$layer)
    if (identical(es, s)) {
      abort_msg(sprintf("Layer \"%s\" is already in sequential model \"%s\".", s$name, self$name),
                class = "multihead_error_argument")
    }
    if (identical(es$name, s$name)) {
      abort_msg(sprintf(paste0("All layer names in a model must be unique; model \"%s\" already has a layer ",
                               "named \"%s\"."), self$name, s$name), class = "multihead_error_argument")
    }
  }
  entry <- list(layer = layer, call = call_layer)
  if (isTRUE(self$built)) {
    out <- sequential_apply(self, entry, self$output_tensor)
    self$entries <- c(self$entries, list(entry))
    self$output_tensor <- out
    sequential_refresh_graph(self)
  } else {
    self$entries <- c(self$entries, list(entry))
    self$layers <- lapply(self$entries, function(e) e$layer)
    self$sublayers <- self$layers
  }
  invisible(NULL)
}

# How a sequential model applies a layer: its class's `sequential_call`, or
# layer(x).
#' @noRd
sequential_call_of <- function(s) {
  call <- layer_class_def(s)$sequential_call
  if (is.null(call)) default_call_layer else call
}

#' @noRd
sequential_refresh_graph <- function(self) {
  x <- self$input_tensor
  ins <- list(tensors = list(x), form = "single", names = NULL)
  outs <- list(tensors = list(self$output_tensor), form = "single", names = NULL)
  model_set_graph(self, build_graph(list(x), list(self$output_tensor), self$name), ins, outs,
                  include_input_layers = FALSE)
}

# Builds a sequential model for inputs of shape `input_shape` (batch
# included): creates its input and applies the layers added so far.
#' @noRd
sequential_build <- function(self, input_shape, dtype = "float32") {
  if (isTRUE(.trace_state$probing) && length(input_shape)) {
    # built by a call traced with probe sizes standing for unknown ones (layer-custom-trace.R):
    # only the feature axis is known
    input_shape[-length(input_shape)] <- NA_integer_
  }
  if (length(self$entries) == 0L) {
    abort_msg(sprintf("Sequential model \"%s\" has no layers: add layers before calling it.", self$name),
              class = "multihead_error_argument")
  }
  x <- keras_input(batch_shape = input_shape, dtype = dtype)
  out <- x
  for (e in self$entries) out <- sequential_apply(self, e, out)
  self$input_tensor <- x
  self$output_tensor <- out
  sequential_refresh_graph(self)
}

# Each layer's entry records `self_attention`: TRUE when the model applies
# the layer with its class's `sequential_call` rather than layer(x) (the
# name is that of the earlier versions' flag, when multi-head attention's
# self-attention was the only such call). from_config() applies each layer
# as its class declares, so configs of earlier versions load alike.
#' @noRd
sequential_get_config <- function(self) {
  input <- if (is.null(self$input_tensor)) NULL else {
    s <- layer_self(self$input_tensor$node$callee)
    list(batch_shape = s$batch_shape, dtype = s$dtype, name = s$name, optional = s$optional)
  }
  list(name = self$name, trainable = self$trainable, input = input,
       layers = lapply(self$entries, function(e) {
         s <- layer_self(e$layer)
         list(name = s$name, class_name = s$class_name, config = layer_get_config(s),
              self_attention = !identical(e$call, default_call_layer) &&
                identical(e$call, layer_class_def(s)$sequential_call))
       }))
}

#' @noRd
sequential_from_config <- function(config) {
  in_cfg <- config$input
  model <- if (is.null(in_cfg)) {
    keras_model_sequential(name = config$name, trainable = config$trainable)
  } else {
    keras_model_sequential(name = config$name, trainable = config$trainable,
                           input_batch_shape = in_cfg$batch_shape, input_dtype = in_cfg$dtype,
                           input_name = in_cfg$name, input_optional = in_cfg$optional)
  }
  for (lc in config$layers) sequential_add(model, from_config(lc$config))
  model
}

# keras3's dispatch on the first argument of every layer constructor
# (`inputs` for layer_multi_head_attention(), `object` for the others):
#   missing / NULL       -> the layer object
#   a sequential model   -> the layer is added to it in place; the model is
#                           returned invisibly. `call_layer` is how the model
#                           applies the layer to the previous layer's output.
#   a symbolic tensor    -> the layer is called on it (a graph node is
#                           recorded) and the symbolic output is returned
#   an array (or list)   -> the layer is called on it and the result returned
# `call_layer(layer, object)` performs the call for the last two cases; it
# defaults to layer(object).

#' @noRd
compose_layer <- function(object, layer, call_layer = default_call_layer) {
  if (missing(object) || is.null(object)) return(layer)
  if (inherits(object, "multihead_sequential")) {
    sequential_add(object, layer, call_layer)
    return(invisible(object))
  }
  call_layer(layer, object)
}

#' @noRd
default_call_layer <- function(layer, x) layer(x)

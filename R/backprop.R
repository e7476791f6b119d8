#' Gradients of a layer call
#'
#' Runs the layer forward on the same arguments as a call of it and then
#' backward from `grad_output`, the gradient of a scalar loss with respect to
#' the layer's output. For the built-in layers the backward pass is computed
#' in C++, in the layer's dtype (use `dtype = "float64"` for gradient checks).
#'
#' With `training = TRUE` the dropout mask of the forward pass is used in the
#' backward pass (it is regenerated from the layer's seed, never stored).
#'
#' For [layer_multi_head_attention()] the arguments after `object` are those
#' of a call of the layer (`query`, `value`, `key`, `attention_mask`, ...).
#' For the other layers ([layer_dense()], [layer_einsum_dense()],
#' [layer_embedding()], [layer_layer_normalization()], [layer_dropout()],
#' [layer_add()], [layer_global_average_pooling_1d()], [layer_flatten()],
#' [layer_activation()]) they are `inputs` (an array; a list of arrays for
#' [layer_add()]), `training = NULL` and `mask = NULL`. For a custom layer
#' made with [Layer()] they are those of a call of the layer: arrays with
#' dims are its tensor inputs, other arguments are passed as given.
#'
#' @param object A layer.
#' @param ... The arguments of a call of `object`, e.g. `query`, `value`,
#'   `key`, `attention_mask`, `use_causal_mask`, `training` for multi-head
#'   attention, or `inputs`, `training`, `mask` for the other layers.
#' @param grad_output Array of the output's shape: dLoss/dOutput.
#' @returns For multi-head attention, `list(output = , grads = list(query = ,
#'   value = , key = , weights = list(...)))`: the gradient with respect to
#'   each input array and each weight (named by weight path, in
#'   [get_weights()] order). When `key` is not passed, `grads$key` is `NULL`
#'   and `grads$value` includes the value's use as key. With
#'   `return_attention_scores = TRUE` the result also has `scores`.
#'
#'   For the other layers, `list(output = , grads = list(inputs = ,
#'   weights = list(...)))`: `inputs` is the gradient with respect to the
#'   input array (a list of them for [layer_add()]; `NULL` for the integer
#'   ids of [layer_embedding()]) and `weights` the weight gradients, named by
#'   weight path, in [get_weights()] order.
#'
#'   For a custom layer, `list(output = , grads = list(inputs = ,
#'   weights = list(...)))`: `inputs` is a list named like the call's
#'   arguments holding the gradient with respect to each array argument
#'   (nested as the arguments are; `NULL` for the others) and `weights` the
#'   weight gradients, named by weight path, in [get_weights()] order.
#' @export
#' @examples
#' mha <- layer_multi_head_attention(num_heads = 2, key_dim = 4, dtype = "float64")
#' x <- array(rnorm(2 * 5 * 8), c(2, 5, 8))
#' g <- backprop(mha, x, x, grad_output = array(1, c(2, 5, 8)))
#' dim(g$grads$query)
#' names(g$grads$weights)
#'
#' dense <- layer_dense(units = 3, dtype = "float64")
#' g <- backprop(dense, x, grad_output = array(1, c(2, 5, 3)))
#' dim(g$grads$inputs)
#' names(g$grads$weights)   # "dense.../kernel" "dense.../bias"
backprop <- function(object, ..., grad_output) {
  UseMethod("backprop")
}

# The one method for layers: what backprop() does is the `backprop` of the
# layer's class (register_layer_class()), given backprop()'s other
# arguments as a list (those of a call of the layer) and grad_output
# (possibly missing, as the class decides what that means).
#' @export
backprop.multihead_layer <- function(object, ..., grad_output) {
  def <- layer_class_def(layer_self(object))
  if (is.null(def$backprop)) abort_arg("object", "a layer with a graph protocol", describe_value(object))
  def$backprop(object, list(...), grad_output)
}

#' @export
backprop.default <- function(object, ..., grad_output) {
  abort_arg("object", "a layer", describe_value(object))
}

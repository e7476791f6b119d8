# The Activation layer (keras3's layer_activation()): an activation function
# applied to its input, forward and backward in C++ (src/core/activations.h).

#' Activation layer
#'
#' Applies an activation function to its input, elementwise or (softmax and
#' log-softmax) along the last axis, with Keras 3's definitions. The layer has
#' no weights and passes the input mask through.
#'
#' The activations: `"linear"` (identity), `"relu"` \eqn{max(x, 0)},
#' `"gelu"` \eqn{x \Phi(x)} (the exact form with the normal CDF, Keras's
#' default), `"sigmoid"`, `"tanh"`, `"softmax"` (over the last axis),
#' `"silu"` or `"swish"` \eqn{x \, sigmoid(x)}, `"elu"` (alpha 1), `"selu"`,
#' `"softplus"` \eqn{log(1 + e^x)}, `"softsign"` \eqn{x / (1 + |x|)},
#' `"exponential"`, `"relu6"` \eqn{min(max(x, 0), 6)}, `"leaky_relu"`
#' (negative slope 0.2), `"hard_sigmoid"` \eqn{relu6(x + 3) / 6}, `"mish"`
#' \eqn{x \, tanh(softplus(x))}, `"log_softmax"` (over the last axis).
#'
#' @inheritParams layer_dense
#' @param activation An activation name (see above); `NULL` means linear.
#' @param ... Named layer options: `name` (default `"activation"`, ...),
#'   `dtype` (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- array(rnorm(2 * 3), c(2, 3))
#' layer_activation(x, "relu")
#' softmax <- layer_activation(activation = "softmax")
#' rowSums(softmax(x))   # 1 1
layer_activation <- function(object, activation, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  if (missing(activation)) abort_arg("activation", "supplied: the name of an activation such as \"relu\"")
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_activation()")
  cfg <- list(activation = as_activation(activation))
  self <- new_layer_state("Activation", "activation", extra$name, extra$dtype, extra$trainable, cfg)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

#' @noRd
activation_layer_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs)
  d <- dim(x)
  mask <- single_input_mask(masks, d)
  ensure_built(self, d)
  act <- self$config$activation
  res <- cpp_activation_forward(x, activation_code(act), is_float64(self), mh_threads())
  list(output = res$output, cache = list(saved = res$saved, out_dims = d), mask = mask)
}

#' @noRd
activation_layer_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  dx <- cpp_activation_backward(cache$saved, g, activation_code(self$config$activation),
                                is_float64(self), mh_threads())
  list(inputs = dx, weights = named_weight_grads(self, list()))
}

#' @noRd
register_activation_layer <- function() {
  register_protocol_layer(
    "Activation",
    properties = list(activation = function(self) self$config$activation),
    describe = function(self) describe_built(self, paste0("activation=", self$config$activation)),
    get_config = function(self) c(base_layer_config(self), list(activation = self$config$activation)),
    from_config = function(config) layer_from_config(layer_activation, config, "activation"),
    build = weightless_build(),
    compute_output_shape = function(self, input_shape, args = list()) as_input_shape(input_shape),
    forward = activation_layer_forward, backward = activation_layer_backward)
}

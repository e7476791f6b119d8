# The Identity layer (keras3's layer_identity(), Keras's
# keras/src/layers/core/identity.py): returns its input unchanged (no cast)
# and passes the input mask on. No weights.

#' Identity layer
#'
#' Returns its input unchanged, as Keras's `Identity` (a placeholder where a
#' layer is expected, e.g. an optional projection that is switched off). The
#' input mask passes through. The layer has no weights.
#'
#' @inheritParams layer_dense
#' @param ... Named layer options: `name` (default `"identity"`, ...),
#'   `dtype` (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise `object` itself.
#' @export
#' @examples
#' x <- array(rnorm(6), c(2, 3))
#' identical(layer_identity(x), x)
layer_identity <- function(object, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_identity()")
  self <- new_layer_state("Identity", "identity", extra$name, extra$dtype, extra$trainable)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

#' @noRd
identity_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs)
  d <- dim(x)
  mask <- single_input_mask(masks, d)
  ensure_built(self, d)
  list(output = inputs, cache = list(out_dims = d), mask = mask)
}

#' @noRd
identity_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  list(inputs = g, weights = named_weight_grads(self, list()))
}

#' @noRd
register_identity_layer <- function() {
  register_protocol_layer(
    "Identity",
    properties = list(),
    describe = function(self) describe_built(self, ""),
    get_config = base_layer_config,
    from_config = function(config) layer_from_config(layer_identity, config, character()),
    build = weightless_build(),
    compute_output_shape = function(self, input_shape, args = list()) as_input_shape(input_shape),
    forward = identity_forward, backward = identity_backward)
}

# The Flatten layer (keras3's layer_flatten()): every axis after the batch
# axis flattened into one, in Keras's (row-major) order, so a Dense layer
# after it takes weights exported from Keras unchanged. The permutation runs
# in C++ (src/core/permute.h).

#' Flatten layer
#'
#' Flattens every axis after the batch axis: a (batch, d1, d2, ...) input
#' becomes (batch, d1 * d2 * ...), a (batch) input becomes (batch, 1). The
#' order of the elements is Keras's (row-major: the last axis varies
#' fastest), not R's `dim<-` order, so models ported from Keras give the same
#' numbers. The layer has no weights and drops the input mask.
#'
#' @inheritParams layer_dense
#' @param data_format `NULL` or `"channels_last"` (the default), or
#'   `"channels_first"`: the input's axis 2 (channels) is moved last before
#'   flattening, as Keras does for inputs of rank 3 or more.
#' @param ... Named layer options: `name` (default `"flatten"`, ...), `dtype`
#'   (`"float32"` or `"float64"`), `trainable`.
#' @returns A layer object (a function) if `object` is `NULL` or missing;
#'   otherwise the layer's output for `object`.
#' @export
#' @examples
#' x <- array(1:12, c(2, 3, 2))
#' layer_flatten(x)   # row 1: x[1, 1, 1], x[1, 1, 2], x[1, 2, 1], ...
layer_flatten <- function(object, data_format = NULL, ...) {
  if (!missing(object)) force(object)  # pipe order: earlier layers are created (and named) first
  extra <- check_layer_dots(list(...), base_layer_options(), "layer_flatten()")
  cfg <- list(data_format = check_data_format(data_format))
  self <- new_layer_state("Flatten", "flatten", extra$name, extra$dtype, extra$trainable, cfg)
  compose_layer(object, new_layer_object(self, protocol_layer_function))
}

# The axis order whose row-major traversal is the flattened order.
#' @noRd
flatten_order <- function(self, r) {
  if (self$config$data_format == "channels_first" && r > 2L) c(0L, seq.int(2L, r - 1L), 1L) else seq_len(r) - 1L
}

#' @noRd
flatten_forward <- function(self, inputs, args = list(), training = FALSE, masks = NULL) {
  x <- check_layer_input(inputs)
  d <- dim(x)
  single_input_mask(masks, d)
  ensure_built(self, d)
  order <- flatten_order(self, length(d))
  y <- cpp_flatten(x, order, is_float64(self))
  list(output = y, cache = list(x_dims = d, order = order, out_dims = dim(y)), mask = NULL)
}

#' @noRd
flatten_backward <- function(self, cache, grad_output) {
  g <- check_grad_output(grad_output, cache$out_dims)
  dx <- cpp_unflatten(g, cache$x_dims, cache$order, is_float64(self))
  list(inputs = dx, weights = named_weight_grads(self, list()))
}

#' @noRd
register_flatten <- function() {
  register_protocol_layer(
    "Flatten",
    properties = list(data_format = function(self) self$config$data_format),
    describe = function(self) {
      describe_built(self, if (self$config$data_format == "channels_first") "channels_first" else "")
    },
    get_config = function(self) c(base_layer_config(self), self$config["data_format"]),
    from_config = function(config) layer_from_config(layer_flatten, config, "data_format"),
    build = weightless_build(),
    compute_output_shape = function(self, input_shape, args = list()) {
      input_shape <- as_input_shape(input_shape)
      check_size(input_shape[-1L], "inputs", "each flattened sample")
      as.integer(c(input_shape[1L], if (length(input_shape) == 1L) 1L else prod(input_shape[-1L])))
    },
    forward = flatten_forward, backward = flatten_backward)
}
